//! Shutdown, misuse outside a runtime, and resources (fds) across runtimes.

use super::*;

// ---------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------

/// Counts its drops, and separately those that happen while a runtime is current
/// on this thread (where a destructor can still deregister I/O).
struct ShutdownProbe {
    /// All drops.
    drops: Arc<AtomicUsize>,
    /// Drops with a runtime current.
    inside: Arc<AtomicUsize>,
}

impl Drop for ShutdownProbe {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
        if crate::context::with_core(|_| ()).is_some() {
            self.inside.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn remaining_tasks_are_dropped_inside_the_runtime_at_shutdown() {
    bounded(
        "remaining_tasks_are_dropped_inside_the_runtime_at_shutdown",
        || {
            let drops = Arc::new(AtomicUsize::new(0));
            let inside = Arc::new(AtomicUsize::new(0));
            let (d, i) = (drops.clone(), inside.clone());
            let probe = move || ShutdownProbe {
                drops: d.clone(),
                inside: i.clone(),
            };
            let handles = block_on(async move {
                let mut handles = Vec::new();
                // Three tasks that start and wait forever...
                for _ in 0..3 {
                    let guard = probe();
                    handles.push(spawn(async move {
                        let _guard = guard;
                        pending::<()>().await;
                    }));
                }
                yield_now().await;
                // ...and two that never get polled.
                for _ in 0..2 {
                    let guard = probe();
                    handles.push(spawn(async move {
                        let _guard = guard;
                    }));
                }
                assert_eq!(with_executor(Executor::live_tasks), 5);
                assert!(handles.iter().all(|h| !h.is_finished()), "{handles:?}");
                handles
            });
            assert_eq!(drops.load(Ordering::SeqCst), 5, "tasks dropped at shutdown");
            assert_eq!(
                inside.load(Ordering::SeqCst),
                5,
                "tasks dropped while their runtime was still current"
            );
            for (i, handle) in handles.iter().enumerate() {
                assert!(handle.is_finished(), "handle {i} not finished: {handle:?}");
            }
            // The handles still give their (cancelled) results in a later runtime.
            block_on(async move {
                for (i, handle) in handles.into_iter().enumerate() {
                    let err = handle.await.expect_err("dropped tasks give no output");
                    assert!(err.is_cancelled(), "handle {i}: {err:?}");
                }
            });
        },
    );
}

/// Spawns a task holding a [`DropCounter`] when dropped, and stores its handle.
struct SpawnAtShutdown {
    /// Drops of the task spawned by this destructor.
    drops: Arc<AtomicUsize>,
    /// Where that task's handle goes.
    handle: Rc<RefCell<Option<JoinHandle<()>>>>,
}

impl Drop for SpawnAtShutdown {
    fn drop(&mut self) {
        let guard = DropCounter(self.drops.clone());
        *self.handle.borrow_mut() = Some(spawn(async move {
            let _guard = guard;
            pending::<()>().await;
        }));
    }
}

#[test]
fn task_spawned_by_a_destructor_at_shutdown_is_dropped_at_once() {
    bounded(
        "task_spawned_by_a_destructor_at_shutdown_is_dropped_at_once",
        || {
            let drops = Arc::new(AtomicUsize::new(0));
            let handle = Rc::new(RefCell::new(None));
            let spawner = SpawnAtShutdown {
                drops: drops.clone(),
                handle: handle.clone(),
            };
            block_on(async move {
                spawn(async move {
                    let _spawner = spawner;
                    pending::<()>().await;
                });
                yield_now().await;
            });
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "task spawned during shutdown was not dropped"
            );
            let handle = handle.take().expect("the destructor ran at shutdown");
            assert!(handle.is_finished(), "{handle:?}");
            let err = block_on(handle).expect_err("a task dropped at once has no output");
            assert!(err.is_cancelled(), "got {err:?}");
        },
    );
}

// ---------------------------------------------------------------------------------
// Misuse
// ---------------------------------------------------------------------------------

#[test]
fn spawn_outside_block_on_panics_with_a_clear_message() {
    bounded("spawn_outside_block_on_panics_with_a_clear_message", || {
        let payload = catch_unwind(|| spawn(async {})).expect_err("spawn outside block_on");
        let message = panic_message(&*payload);
        assert!(message.contains("block_on"), "message: {message:?}");

        // Also after a runtime has come and gone on this thread.
        block_on(async {});
        let payload = catch_unwind(|| spawn(async {})).expect_err("spawn after block_on");
        let message = panic_message(&*payload);
        assert!(message.contains("block_on"), "message: {message:?}");
    });
}

#[test]
fn nested_block_on_panics_with_a_clear_message() {
    bounded("nested_block_on_panics_with_a_clear_message", || {
        let inner_ran = Arc::new(AtomicBool::new(false));
        let ran = inner_ran.clone();
        let out = block_on(async move {
            let payload = catch_unwind(AssertUnwindSafe(|| {
                block_on(async { ran.store(true, Ordering::SeqCst) })
            }))
            .expect_err("nested block_on must panic");
            let message = panic_message(&*payload);
            assert!(
                message.contains("inside a running runtime"),
                "message: {message:?}"
            );
            // The outer runtime is untouched.
            spawn(async { 9 }).await
        });
        assert_eq!(out.ok(), Some(9));
        assert!(
            !inner_ran.load(Ordering::SeqCst),
            "nested future was polled"
        );
    });
}

// ---------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------

/// One short-lived runtime with a task that finishes, one left pending, a pending
/// timer and a registered socket pair. Returns `i` through a task, and the waker of
/// a task, which outlives the runtime.
fn one_busy_runtime(i: usize) -> io::Result<(usize, Waker)> {
    block_on(async move {
        let (a, b) = UnixStream::pair()?;
        a.set_nonblocking(true)?;
        let reg = Registration::new(a.as_fd())?;
        spawn(crate::time::sleep(Duration::from_secs(3600)));
        spawn(pending::<()>());
        let waker = spawn(poll_fn(|cx| Poll::Ready(cx.waker().clone()))).await?;
        let out = spawn(async move {
            yield_now().await;
            i
        })
        .await?;
        drop(reg);
        drop((a, b));
        Ok((out, waker))
    })
}

#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn repeated_block_on_leaks_no_fd() -> io::Result<()> {
    const MARKER: &str = "edgeloop fd count unchanged after 100 block_on calls";
    if std::env::var_os(OWN_PROCESS_ENV).is_none() {
        let out = rerun_in_own_process(module_path!(), "repeated_block_on_leaks_no_fd")?;
        assert!(
            out.contains(MARKER),
            "child did not report its count:\n{out}"
        );
        return Ok(());
    }
    // In the child: the only test running in this process.
    one_busy_runtime(0)?; // warm-up, in case std opens something lazily
    let before = open_fds()?;
    let mut stale_wakers = Vec::new();
    for i in 0..100 {
        let (out, waker) = one_busy_runtime(i)?;
        assert_eq!(out, i);
        stale_wakers.push(waker);
    }
    // Wakers that outlive their runtime must not keep its eventfd open, and waking
    // them is a no-op.
    let after = open_fds()?;
    for waker in stale_wakers {
        waker.wake();
    }
    assert_eq!(
        after, before,
        "open fds before and after 100 block_on calls"
    );
    assert_eq!(open_fds()?, before, "open fds after waking stale wakers");
    println!("{MARKER}: {before} -> {after}");
    Ok(())
}

#[test]
#[cfg_attr(miri, ignore = "needs prctl(PR_SET_TIMERSLACK), which Miri lacks")]
fn block_on_tightens_timer_slack_and_restores_it() -> io::Result<()> {
    bounded("block_on_tightens_timer_slack_and_restores_it", || {
        use crate::sys::prctl;
        prctl::set_timer_slack(123_000)?;
        let inside = block_on(async { prctl::timer_slack() })?;
        assert_eq!(inside, 1_000, "timer slack inside block_on (ns)");
        assert_eq!(
            prctl::timer_slack()?,
            123_000,
            "timer slack after block_on (ns)"
        );
        Ok(())
    })
}
