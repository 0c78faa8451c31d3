//! The task block (`task.rs`): one allocation per task, reference-counted by hand,
//! whose waker points at it. These pin down what makes a waker that outlives its
//! task (and its runtime), maybe on another thread, sound: the `!Send` future and
//! output are dropped on the runtime's thread, never by the last waker; and the
//! block is freed once (Miri runs these and reports a leak or a double free).

use super::*;

use std::thread::ThreadId;

/// Records the thread it is dropped on.
struct DropThread(Rc<RefCell<Option<ThreadId>>>);

impl Drop for DropThread {
    fn drop(&mut self) {
        *self.0.borrow_mut() = Some(thread::current().id());
    }
}

/// Records the thread it is dropped on, and is `Send` (an output for a task).
struct SendDropThread(Arc<Mutex<Option<ThreadId>>>);

impl Drop for SendDropThread {
    fn drop(&mut self) {
        *self.0.lock().expect("not poisoned") = Some(thread::current().id());
    }
}

/// A thread that holds a waker until [`let_go`](Self::let_go), then drops it (or
/// wakes it, by value): the last reference, on a thread that is not the runtime's.
struct Holder {
    tx: mpsc::Sender<()>,
    thread: thread::JoinHandle<()>,
}

/// Hands `waker` to a new [`Holder`] thread.
fn hold_waker(waker: Waker, wake: bool) -> Holder {
    let (tx, rx) = mpsc::channel::<()>();
    let thread = thread::spawn(move || {
        rx.recv_timeout(TIMEOUT).expect("told to let go");
        if wake {
            waker.wake();
        } else {
            drop(waker);
        }
    });
    Holder { tx, thread }
}

impl Holder {
    /// Lets go of the waker and waits until the thread has: a crash there (a
    /// double free, a future dropped on the wrong thread) fails the test.
    fn let_go(self) {
        self.tx.send(()).expect("holder alive");
        self.thread
            .join()
            .expect("the holder dropped its waker cleanly");
    }
}

#[test]
fn the_last_waker_on_another_thread_frees_a_block_whose_future_is_gone() {
    bounded(
        "the_last_waker_on_another_thread_frees_a_block_whose_future_is_gone",
        || {
            let runtime_thread = thread::current().id();
            let dropped_on = Rc::new(RefCell::new(None));
            let holder = {
                let rt = crate::Runtime::new().expect("runtime");
                let held = rt.block_on(async {
                    let guard = DropThread(dropped_on.clone());
                    // A `!Send` future (it holds an `Rc`) that gives its waker away.
                    let task = spawn(poll_fn(move |cx| {
                        let _keep = &guard;
                        Poll::Ready(cx.waker().clone())
                    }));
                    task.await.expect("task returns its waker")
                });
                let pair = hold_waker(held, false);
                drop(rt);
                pair
            };
            assert_eq!(
                *dropped_on.borrow(),
                Some(runtime_thread),
                "the future is dropped on the runtime's thread, when the task ends"
            );
            holder.let_go();
        },
    );
}

#[test]
fn a_waker_woken_after_its_runtime_is_gone_does_nothing() {
    bounded(
        "a_waker_woken_after_its_runtime_is_gone_does_nothing",
        || {
            let runtime_thread = thread::current().id();
            let dropped_on = Rc::new(RefCell::new(None));
            let holder = {
                let rt = crate::Runtime::new().expect("runtime");
                let held = rt.block_on(async {
                    // Never finishes: cancelled when the runtime drops.
                    let guard = DropThread(dropped_on.clone());
                    let waker = Rc::new(RefCell::new(None));
                    let w = waker.clone();
                    drop(spawn(poll_fn(move |cx| {
                        let _keep = &guard;
                        *w.borrow_mut() = Some(cx.waker().clone());
                        Poll::<()>::Pending
                    })));
                    yield_now().await;
                    let held = waker.borrow_mut().take();
                    held.expect("the task stored its waker")
                });
                let pair = hold_waker(held, true);
                drop(rt);
                pair
            };
            assert_eq!(
                *dropped_on.borrow(),
                Some(runtime_thread),
                "the unfinished future is dropped by the runtime's shutdown, on its thread"
            );
            holder.let_go();
        },
    );
}

#[test]
fn a_detached_tasks_output_is_dropped_on_the_runtime_thread_when_it_finishes() {
    bounded(
        "a_detached_tasks_output_is_dropped_on_the_runtime_thread_when_it_finishes",
        || {
            let runtime_thread = thread::current().id();
            let dropped_on = Arc::new(Mutex::new(None));
            let d = dropped_on.clone();
            let dropped_on_inner = dropped_on.clone();
            let holder = block_on(async move {
                let waker = Rc::new(RefCell::new(None));
                let w = waker.clone();
                let mut first = true;
                let handle = spawn(poll_fn(move |cx| {
                    if std::mem::take(&mut first) {
                        *w.borrow_mut() = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                    Poll::Ready(SendDropThread(d.clone()))
                }));
                drop(handle); // detached before it finishes
                yield_now().await; // the first poll: Pending
                let stored = waker.borrow_mut().take().expect("first poll ran");
                let pair = hold_waker(stored.clone(), false);
                assert_eq!(
                    *dropped_on_probe(&dropped_on_inner),
                    None,
                    "not finished yet"
                );
                stored.wake();
                yield_now().await; // the second poll: Ready, nobody to take the output
                pair
            });
            assert_eq!(
                *dropped_on.lock().expect("not poisoned"),
                Some(runtime_thread),
                "dropped as the task finished, not kept for the last waker"
            );
            holder.let_go();
        },
    );
}

/// The recorded thread, locked.
fn dropped_on_probe(slot: &Mutex<Option<ThreadId>>) -> std::sync::MutexGuard<'_, Option<ThreadId>> {
    slot.lock().expect("not poisoned")
}

#[test]
fn an_unread_output_is_dropped_with_its_handle() {
    bounded("an_unread_output_is_dropped_with_its_handle", || {
        let runtime_thread = thread::current().id();
        let dropped_on = Arc::new(Mutex::new(None));
        let d = dropped_on.clone();
        block_on(async move {
            let waker = Rc::new(RefCell::new(None));
            let w = waker.clone();
            let handle = spawn(poll_fn(move |cx| {
                *w.borrow_mut() = Some(cx.waker().clone());
                Poll::Ready(SendDropThread(d.clone()))
            }));
            yield_now().await;
            assert!(handle.is_finished());
            let holder = hold_waker(waker.borrow_mut().take().expect("ran"), false);
            assert_eq!(
                *dropped_on.lock().expect("not poisoned"),
                None,
                "still held"
            );
            drop(handle);
            assert_eq!(
                *dropped_on.lock().expect("not poisoned"),
                Some(runtime_thread),
                "the handle drops what nobody read"
            );
            holder.let_go();
        });
    });
}

#[test]
fn wakers_count_references_exactly() {
    bounded("wakers_count_references_exactly", || {
        let freed = Arc::new(AtomicUsize::new(0));
        let f = freed.clone();
        block_on(async move {
            let base = with_executor(|e| Arc::strong_count(e.inbox()));
            let guard = DropCounter(f);
            let wakers = Rc::new(RefCell::new(Vec::new()));
            let w = wakers.clone();
            let handle = spawn(poll_fn(move |cx| {
                let _keep = &guard;
                // Ten clones, some cloned from clones, and one `wake` by value of a
                // clone: each owns its reference.
                let first = cx.waker().clone();
                for _ in 0..9 {
                    let next = first.clone();
                    w.borrow_mut().push(next);
                }
                w.borrow_mut().push(first);
                // Deliberately a clone woken by value: that path gives up its own
                // reference.
                #[allow(clippy::waker_clone_wake)]
                cx.waker().clone().wake();
                Poll::Ready(())
            }));
            handle.await.expect("ran");
            // The future (and its guard) went when the task finished, whatever the
            // wakers still hold.
            assert_eq!(wakers.borrow().len(), 10);
            // Every task block holds a clone of the runtime's inbox, so its count
            // says whether the block is still there.
            let blocks_alive = || with_executor(|e| Arc::strong_count(e.inbox())) - base;
            assert_eq!(blocks_alive(), 1, "ten wakers keep the block");
            let last = wakers.borrow_mut().pop().expect("ten");
            for waker in wakers.borrow_mut().drain(..) {
                waker.wake_by_ref(); // a finished task: no-op
                drop(waker);
            }
            assert_eq!(blocks_alive(), 1, "one waker keeps the block");
            drop(last);
            assert_eq!(blocks_alive(), 0, "the last waker freed it");
            assert_eq!(
                queued_ids(),
                Vec::<TaskId>::new(),
                "no wake queued it again"
            );
        });
        assert_eq!(freed.load(Ordering::SeqCst), 1, "future dropped once");
    });
}

/// The `!Send` future of [`a_panicking_slow_poll_hook_leaves_the_future_to_the_runtime`].
struct Slow {
    guard: DropThread,
    waker_out: Rc<RefCell<Option<Waker>>>,
}

impl Future for Slow {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let _keep = &self.guard;
        *self.waker_out.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[test]
fn a_panicking_slow_poll_hook_leaves_the_future_to_the_runtime() {
    // The hook runs after the poll, while the executor holds the task out of its
    // slot: a panic there must not drop the executor's reference, or the last
    // waker (here on another thread) would drop the live `!Send` future.
    bounded(
        "a_panicking_slow_poll_hook_leaves_the_future_to_the_runtime",
        || {
            let runtime_thread = thread::current().id();
            let dropped_on = Rc::new(RefCell::new(None));
            let waker_out = Rc::new(RefCell::new(None));
            let rt = crate::Builder::new_current_thread()
                .slow_poll_threshold(Duration::ZERO)
                .on_slow_poll(|_| panic!("slow-poll hook fails"))
                .build()
                .expect("runtime");
            let (d, w) = (dropped_on.clone(), waker_out.clone());
            let escaped = catch_unwind(AssertUnwindSafe(|| {
                rt.block_on(async move {
                    drop(spawn(Slow {
                        guard: DropThread(d),
                        waker_out: w,
                    }));
                    yield_now().await;
                    unreachable!("the hook's panic ends block_on first");
                })
            }));
            assert!(
                escaped.is_err(),
                "the hook's panic propagates from block_on"
            );
            assert_eq!(*dropped_on.borrow(), None, "the task is still alive");
            let held = waker_out.borrow_mut().take().expect("polled once");
            let holder = hold_waker(held, false);
            assert_eq!(rt.metrics().live_tasks, 1, "the task is back in its slot");
            drop(rt);
            assert_eq!(
                *dropped_on.borrow(),
                Some(runtime_thread),
                "dropped by the runtime's shutdown, not by the last waker"
            );
            holder.let_go();
        },
    );
}

/// A future that is ready at once and whose destructor panics.
struct PanicsOnDrop;

impl Future for PanicsOnDrop {
    type Output = u32;

    fn poll(self: Pin<&mut Self>, _cx: &mut std::task::Context<'_>) -> Poll<u32> {
        Poll::Ready(7)
    }
}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("destructor of a finished future");
    }
}

#[test]
fn a_future_whose_destructor_panics_after_ready_is_a_panicked_task() {
    bounded(
        "a_future_whose_destructor_panics_after_ready_is_a_panicked_task",
        || {
            let rt = crate::Runtime::new().expect("runtime");
            rt.block_on(async {
                let err = spawn(PanicsOnDrop)
                    .await
                    .expect_err("the destructor's panic is the task's");
                assert!(err.is_panic(), "{err:?}");
                assert_eq!(
                    err.to_string(),
                    "task panicked with message \"destructor of a finished future\""
                );
                // The runtime goes on, and the task is gone from its table.
                assert_eq!(spawn(async { 1 }).await.expect("ran"), 1);
            });
            let m = rt.metrics();
            assert_eq!((m.live_tasks, m.panicked_tasks), (0, 1), "{m}");
        },
    );
}
