//! Join handles, abort and panics, including panicking destructors.

use super::*;

// ---------------------------------------------------------------------------------
// Join handles and abort
// ---------------------------------------------------------------------------------

#[test]
fn join_handle_gives_the_output_and_tracks_finished() {
    bounded("join_handle_gives_the_output_and_tracks_finished", || {
        block_on(async {
            assert_eq!(spawn(async { 6 * 7 }).await.ok(), Some(42));

            assert_eq!(with_executor(Executor::live_tasks), 0);
            let mut handle = spawn(async { String::from("done") });
            assert!(!handle.is_finished(), "finished before it was polled");
            assert_eq!(with_executor(Executor::live_tasks), 1);
            let out = (&mut handle).await;
            assert_eq!(out.ok().as_deref(), Some("done"));
            assert!(
                handle.is_finished(),
                "not finished after its output was taken"
            );
            assert_eq!(with_executor(Executor::live_tasks), 0);

            // Finished before anyone awaits it: the result waits in the handle.
            let early = spawn(async { 7_u8 });
            yield_now().await;
            assert!(early.is_finished(), "task did not run during one yield");
            assert_eq!(early.await.ok(), Some(7));
        });
    });
}

#[test]
fn join_handle_polled_after_its_result_panics_with_a_clear_message() {
    bounded(
        "join_handle_polled_after_its_result_panics_with_a_clear_message",
        || {
            block_on(async {
                let mut handle = spawn(async { 1 });
                assert_eq!((&mut handle).await.ok(), Some(1));
                let payload = catch_unwind(AssertUnwindSafe(|| {
                    let mut cx = Context::from_waker(Waker::noop());
                    Pin::new(&mut handle).poll(&mut cx)
                }))
                .expect_err("a second poll after the result must panic");
                let message = panic_message(&*payload);
                assert!(
                    message.contains("await it only once"),
                    "message: {message:?}"
                );
            });
        },
    );
}

#[test]
fn abort_cancels_a_pending_task_and_drops_its_future_once() {
    bounded(
        "abort_cancels_a_pending_task_and_drops_its_future_once",
        || {
            block_on(async {
                let drops = Arc::new(AtomicUsize::new(0));
                let polls = Rc::new(Cell::new(0));
                let guard = DropCounter(drops.clone());
                let mut handle = spawn(count_polls(polls.clone(), async move {
                    let _guard = guard;
                    pending::<()>().await;
                }));
                yield_now().await;
                assert_eq!(polls.get(), 1, "task polls before abort");
                assert_eq!(drops.load(Ordering::SeqCst), 0, "drops before abort");

                handle.abort();
                handle.abort(); // a second abort must not drop or poll anything again
                let err = (&mut handle)
                    .await
                    .expect_err("an aborted pending task must not give a result");
                assert!(err.is_cancelled(), "expected cancelled, got {err:?}");
                assert!(!err.is_panic(), "expected cancelled, got {err:?}");
                assert_eq!(err.to_string(), "task was cancelled");
                let err = err
                    .try_into_panic()
                    .expect_err("a cancelled task has no panic payload");
                assert!(
                    err.is_cancelled(),
                    "try_into_panic changed the error: {err:?}"
                );
                assert!(handle.is_finished(), "aborted task not finished");
                assert_eq!(drops.load(Ordering::SeqCst), 1, "future destructor runs");
                assert_eq!(polls.get(), 1, "an aborted task's future was polled again");
                assert_eq!(with_executor(Executor::live_tasks), 0);
            });
        },
    );
}

#[test]
fn abort_before_first_poll_never_runs_the_future() {
    bounded("abort_before_first_poll_never_runs_the_future", || {
        block_on(async {
            let drops = Arc::new(AtomicUsize::new(0));
            let polls = Rc::new(Cell::new(0));
            let guard = DropCounter(drops.clone());
            let handle = spawn(count_polls(polls.clone(), async move {
                drop(guard);
                1
            }));
            handle.abort();
            let err = handle.await.expect_err("aborted before it ran");
            assert!(err.is_cancelled(), "expected cancelled, got {err:?}");
            assert_eq!(polls.get(), 0, "polls of a task aborted before it ran");
            assert_eq!(drops.load(Ordering::SeqCst), 1, "future destructor runs");
        });
    });
}

#[test]
fn abort_after_completion_keeps_the_result() {
    bounded("abort_after_completion_keeps_the_result", || {
        block_on(async {
            let handle = spawn(async { 5 });
            yield_now().await;
            assert!(handle.is_finished(), "task did not run during one yield");
            handle.abort();
            assert!(handle.is_finished());
            let out = handle.await;
            assert_eq!(out.as_ref().ok(), Some(&5), "got {out:?}");
        });
    });
}

// ---------------------------------------------------------------------------------
// Panics
// ---------------------------------------------------------------------------------

fn explode() -> u32 {
    panic!("task exploded")
}

fn explode_main() -> u32 {
    panic!("main future exploded")
}

#[test]
fn panicking_task_reports_its_payload_and_others_keep_running() {
    let out = bounded(
        "panicking_task_reports_its_payload_and_others_keep_running",
        || {
            block_on(async {
                let before = spawn(async {
                    yield_now().await;
                    1
                });
                let bad = spawn(async { explode() });
                let after = spawn(async {
                    yield_now().await;
                    yield_now().await;
                    2
                });
                let err = bad.await.expect_err("a panicking task must give an error");
                assert!(err.is_panic(), "expected a panic, got {err:?}");
                assert!(!err.is_cancelled(), "expected a panic, got {err:?}");
                assert_eq!(
                    err.to_string(),
                    "task panicked with message \"task exploded\""
                );
                let payload = err.into_panic();
                assert_eq!(
                    payload.downcast_ref::<&str>(),
                    Some(&"task exploded"),
                    "payload: {}",
                    panic_message(&*payload)
                );
                assert_eq!(before.await.ok(), Some(1));
                assert_eq!(after.await.ok(), Some(2));
                "main done"
            })
        },
    );
    assert_eq!(out, "main done");
}

#[test]
fn panic_in_block_on_future_propagates_and_runtime_is_reusable() {
    bounded(
        "panic_in_block_on_future_propagates_and_runtime_is_reusable",
        || {
            let drops = Arc::new(AtomicUsize::new(0));
            let guard = DropCounter(drops.clone());
            let caught = catch_unwind(AssertUnwindSafe(|| {
                block_on(async move {
                    spawn(async move {
                        let _guard = guard;
                        pending::<()>().await;
                    });
                    yield_now().await;
                    explode_main()
                })
            }));
            let payload = caught.expect_err("the block_on future's panic must propagate");
            assert_eq!(panic_message(&*payload), "main future exploded");
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "pending task not dropped while the panic unwound"
            );

            let out = block_on(async { spawn(async { 3 }).await });
            assert_eq!(out.ok(), Some(3), "block_on after a panicked block_on");
        },
    );
}

// ---------------------------------------------------------------------------------
// Panicking destructors (regressions: both once broke the runtime)
// ---------------------------------------------------------------------------------

/// Panics with its message when dropped.
struct PanicOnDrop(&'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{}", self.0);
    }
}

#[test]
fn block_on_works_after_a_task_destructor_panicked_at_shutdown() {
    bounded(
        "block_on_works_after_a_task_destructor_panicked_at_shutdown",
        || {
            let first = catch_unwind(|| {
                block_on(async {
                    spawn(async {
                        let _bomb = PanicOnDrop("destructor exploded at shutdown");
                        pending::<()>().await;
                    });
                    yield_now().await;
                })
            });
            let payload = first.expect_err("the destructor's panic leaves block_on");
            assert_eq!(panic_message(&*payload), "destructor exploded at shutdown");

            assert!(
                crate::context::with_core(|_| ()).is_none(),
                "the runtime is still current on this thread after its block_on returned"
            );
            let spawned = catch_unwind(|| spawn(async {}));
            assert!(spawned.is_err(), "`spawn` outside `block_on` succeeded");
            match catch_unwind(|| block_on(async { 2 })) {
                Ok(out) => assert_eq!(out, 2),
                Err(payload) => panic!(
                    "block_on after the panicked shutdown: {}",
                    panic_message(&*payload)
                ),
            }
        },
    );
}

#[test]
fn abort_keeps_a_panicking_destructor_inside_the_task() {
    bounded("abort_keeps_a_panicking_destructor_inside_the_task", || {
        let out = catch_unwind(|| {
            block_on(async {
                let sibling = spawn(async {
                    yield_now().await;
                    yield_now().await;
                    3
                });
                let bomb = spawn(async {
                    let _bomb = PanicOnDrop("destructor exploded on abort");
                    pending::<()>().await;
                });
                yield_now().await;
                bomb.abort();
                let err = bomb.await.expect_err("an aborted task gives no output");
                let message = err.is_panic().then(|| panic_message(&*err.into_panic()));
                (message, sibling.await.ok())
            })
        });
        match out {
            Ok((message, sibling)) => {
                assert_eq!(
                    message.as_deref(),
                    Some("destructor exploded on abort"),
                    "the destructor's panic is the task's panic"
                );
                assert_eq!(sibling, Some(3), "sibling task result");
            }
            Err(payload) => panic!(
                "the aborted task's destructor panic escaped block_on: {}",
                panic_message(&*payload)
            ),
        }
    });
}

// ---------------------------------------------------------------------------------
// The task cell: the future is pinned in place and dropped as soon as it finishes
// ---------------------------------------------------------------------------------

/// A `!Unpin` future that records its own address at each poll.
struct AddressProbe {
    polls: u32,
    seen: Rc<RefCell<Vec<usize>>>,
    _pin: std::marker::PhantomPinned,
}

impl Future for AddressProbe {
    type Output = u32;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<u32> {
        let this: &Self = self.as_ref().get_ref();
        let addr = std::ptr::from_ref(this) as usize;
        this.seen.borrow_mut().push(addr);
        if this.seen.borrow().len() < 3 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(this.polls + 3)
    }
}

#[test]
fn a_task_future_stays_at_one_address_across_polls() {
    bounded("a_task_future_stays_at_one_address_across_polls", || {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let probe = AddressProbe {
            polls: 0,
            seen: seen.clone(),
            _pin: std::marker::PhantomPinned,
        };
        let out = block_on(async move { spawn(probe).await.unwrap() });
        assert_eq!(out, 3);
        let seen = seen.borrow();
        assert_eq!(seen.len(), 3, "polled three times: {seen:?}");
        assert!(
            seen.iter().all(|&a| a == seen[0]),
            "the pinned future moved between polls: {seen:?}"
        );
    });
}

#[test]
fn a_finished_task_drops_its_future_before_the_handle_is_awaited() {
    bounded(
        "a_finished_task_drops_its_future_before_the_handle_is_awaited",
        || {
            block_on(async {
                let marker = Rc::new(());
                let held = marker.clone();
                let handle = spawn(async move {
                    let _keep = held;
                    7
                });
                yield_now().await;
                assert!(handle.is_finished());
                assert_eq!(
                    Rc::strong_count(&marker),
                    1,
                    "the finished future (and what it captured) is dropped at once"
                );
                assert_eq!(handle.await.unwrap(), 7);
            });
        },
    );
}
