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

/// A thread that holds `waker` until told, then drops it (or wakes it, by value).
fn hold_waker(waker: Waker, wake: bool) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let holder = thread::spawn(move || {
        rx.recv_timeout(TIMEOUT).expect("told to let go");
        if wake {
            waker.wake();
        } else {
            drop(waker);
        }
    });
    (tx, holder)
}

#[test]
fn the_last_waker_on_another_thread_frees_a_block_whose_future_is_gone() {
    bounded(
        "the_last_waker_on_another_thread_frees_a_block_whose_future_is_gone",
        || {
            let runtime_thread = thread::current().id();
            let dropped_on = Rc::new(RefCell::new(None));
            let (tx, holder) = {
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
            tx.send(()).expect("holder alive");
            holder
                .join()
                .expect("the last waker's drop frees the block");
        },
    );
}

#[test]
fn a_waker_woken_after_its_runtime_is_gone_does_nothing() {
    bounded(
        "a_waker_woken_after_its_runtime_is_gone_does_nothing",
        || {
            let (tx, holder) = {
                let rt = crate::Runtime::new().expect("runtime");
                let held = rt.block_on(async {
                    // Never finishes: cancelled when the runtime drops.
                    let waker = Rc::new(RefCell::new(None));
                    let w = waker.clone();
                    drop(spawn(poll_fn(move |cx| {
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
            tx.send(()).expect("holder alive");
            holder.join().expect("a late wake, then the last drop");
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
            let (tx, holder) = block_on(async move {
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
            tx.send(()).expect("holder alive");
            holder.join().expect("last drop");
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
            let (tx, holder) = hold_waker(waker.borrow_mut().take().expect("ran"), false);
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
            tx.send(()).expect("holder alive");
            holder.join().expect("last drop");
        });
    });
}

#[test]
fn wakers_count_references_exactly() {
    bounded("wakers_count_references_exactly", || {
        let freed = Arc::new(AtomicUsize::new(0));
        let f = freed.clone();
        block_on(async move {
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
            for waker in wakers.borrow_mut().drain(..) {
                waker.wake_by_ref(); // a finished task: no-op
                drop(waker);
            }
            assert_eq!(
                queued_ids(),
                Vec::<TaskId>::new(),
                "no wake queued it again"
            );
        });
        assert_eq!(freed.load(Ordering::SeqCst), 1, "future dropped once");
    });
}
