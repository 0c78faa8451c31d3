//! The waker table: dedupe, generations, wakes from other threads.

use super::*;

// ---------------------------------------------------------------------------------
// Waker table: dedupe, generations
// ---------------------------------------------------------------------------------

#[test]
fn wake_burst_queues_a_task_once() {
    bounded("wake_burst_queues_a_task_once", || {
        block_on(async {
            let polls = Rc::new(Cell::new(0));
            let queue_after_burst = Rc::new(Cell::new(usize::MAX));
            let (p, q) = (polls.clone(), queue_after_burst.clone());
            // Never completes by itself, so every extra queue entry would be an
            // extra poll.
            let handle = spawn(poll_fn(move |cx| {
                p.set(p.get() + 1);
                if p.get() == 1 {
                    let waker = cx.waker().clone();
                    for _ in 0..5 {
                        waker.wake_by_ref();
                    }
                    q.set(queued_ids().len());
                }
                Poll::<()>::Pending
            }));
            for _ in 0..3 {
                yield_now().await;
            }
            assert_eq!(queue_after_burst.get(), 1, "run queue length after 5 wakes");
            assert_eq!(polls.get(), 2, "polls after a burst of 5 wakes");
            assert!(queued_ids().is_empty(), "queue: {:?}", queued_ids());

            handle.abort();
            let err = handle.await.expect_err("aborted");
            assert!(err.is_cancelled(), "got {err:?}");
            assert_eq!(polls.get(), 2, "polls after abort");
        });
    });
}

#[test]
fn remote_wake_burst_queues_a_task_once() {
    bounded("remote_wake_burst_queues_a_task_once", || {
        block_on(async {
            let (waker_tx, waker_rx) = mpsc::channel::<Waker>();
            let (burst_done_tx, burst_done_rx) = mpsc::channel::<()>();
            let remote = thread::spawn(move || -> Result<(), RecvTimeoutError> {
                let waker = waker_rx.recv_timeout(TIMEOUT)?;
                for _ in 0..5 {
                    waker.wake_by_ref();
                }
                // Ignored: the task gives up waiting only after a timeout.
                let _ = burst_done_tx.send(());
                Ok(())
            });
            let polls = Rc::new(Cell::new(0));
            let p = polls.clone();
            let mut waker_tx = Some(waker_tx);
            // Never completes by itself, so every extra queue entry would be an
            // extra poll.
            let handle = spawn(poll_fn(move |cx| {
                p.set(p.get() + 1);
                if let Some(tx) = waker_tx.take() {
                    tx.send(cx.waker().clone())
                        .expect("the waking thread ended early");
                    // Blocks the runtime on purpose: all five wakes (and the eventfd
                    // write) land while the task is being polled, so the next loop
                    // turn drains them all at once.
                    burst_done_rx
                        .recv_timeout(TIMEOUT)
                        .expect("the waking thread did not finish its burst");
                }
                Poll::<()>::Pending
            }));
            // Turn 1 polls the task and drains the inbox; turn 2 polls what the
            // inbox held; turn 3 would show any leftover.
            for _ in 0..3 {
                yield_now().await;
            }
            remote
                .join()
                .expect("waking thread panicked")
                .expect("waking thread timed out");
            assert_eq!(polls.get(), 2, "polls after 5 remote wakes");
            assert!(queued_ids().is_empty(), "queue: {:?}", queued_ids());

            handle.abort();
            let err = handle.await.expect_err("aborted");
            assert!(err.is_cancelled(), "got {err:?}");
            assert_eq!(polls.get(), 2, "polls after abort");
        });
    });
}

#[test]
fn wake_after_completion_is_a_no_op_and_reused_slot_is_not_polled() {
    bounded(
        "wake_after_completion_is_a_no_op_and_reused_slot_is_not_polled",
        || {
            block_on(async {
                let stale = Rc::new(RefCell::new(None::<Waker>));
                let first_polls = Rc::new(Cell::new(0));
                let s = stale.clone();
                let first = spawn(count_polls(
                    first_polls.clone(),
                    poll_fn(move |cx| {
                        *s.borrow_mut() = Some(cx.waker().clone());
                        Poll::Ready(())
                    }),
                ));
                let first_id = queued_ids();
                assert_eq!(
                    first_id,
                    [TaskId {
                        index: 0,
                        generation: 0
                    }]
                );
                first.await.expect("first task must not fail");

                let (slots, generation, occupied, free) = with_executor(|e| {
                    let tasks = e.tasks.borrow();
                    let slot = &tasks.slots[0];
                    (
                        tasks.slots.len(),
                        slot.generation,
                        slot.task.is_some(),
                        tasks.free.clone(),
                    )
                });
                assert_eq!(
                    (slots, generation, occupied),
                    (1, 1, false),
                    "slot 0 after finish"
                );
                assert_eq!(free, [0], "free list after finish");

                let stale = stale.take().expect("first task stored its waker");
                stale.wake_by_ref();
                assert!(
                    queued_ids().is_empty(),
                    "stale wake queued {:?}",
                    queued_ids()
                );

                let second_polls = Rc::new(Cell::new(0));
                let second = spawn(count_polls(second_polls.clone(), pending::<()>()));
                assert_eq!(
                    queued_ids(),
                    [TaskId {
                        index: 0,
                        generation: 1
                    }],
                    "second task must reuse slot 0 under the next generation"
                );
                yield_now().await;
                assert_eq!(second_polls.get(), 1, "second task polls after spawn");

                stale.wake_by_ref();
                stale.wake();
                assert!(
                    queued_ids().is_empty(),
                    "stale wake queued {:?}",
                    queued_ids()
                );
                for _ in 0..3 {
                    yield_now().await;
                }
                assert_eq!(second_polls.get(), 1, "stale wakes polled the reused slot");
                assert_eq!(first_polls.get(), 1, "first task polled after it finished");

                second.abort();
                let err = second.await.expect_err("aborted");
                assert!(err.is_cancelled(), "got {err:?}");
            });
        },
    );
}

#[test]
fn queued_wake_of_a_finished_task_is_skipped_after_its_slot_is_reused() {
    bounded(
        "queued_wake_of_a_finished_task_is_skipped_after_its_slot_is_reused",
        || {
            block_on(async {
                let polls = Rc::new(Cell::new(0));
                let handle = Rc::new(RefCell::new(None));
                let queue = Rc::new(RefCell::new(Vec::new()));
                // Task A (slot 0) wakes itself, then finishes: its wake stays queued
                // and its slot is freed.
                drop(spawn(poll_fn(move |cx| {
                    cx.waker().wake_by_ref();
                    Poll::Ready(())
                })));
                // Task B (slot 1), polled next, spawns C, which takes slot 0.
                let (p, h, q) = (polls.clone(), handle.clone(), queue.clone());
                drop(spawn(async move {
                    *h.borrow_mut() = Some(spawn(count_polls(p, pending::<()>())));
                    *q.borrow_mut() = queued_ids();
                }));
                yield_now().await;

                assert_eq!(
                    *queue.borrow(),
                    [
                        TaskId {
                            index: 0,
                            generation: 0
                        },
                        TaskId {
                            index: 0,
                            generation: 1
                        }
                    ],
                    "run queue must hold the finished task's wake, then the new task"
                );
                for _ in 0..3 {
                    yield_now().await;
                }
                assert_eq!(polls.get(), 1, "task in the reused slot: polls");

                let handle = handle.take().expect("task B spawned");
                handle.abort();
                let err = handle.await.expect_err("aborted");
                assert!(err.is_cancelled(), "got {err:?}");
            });
        },
    );
}

// ---------------------------------------------------------------------------------
// Wakes from other threads
// ---------------------------------------------------------------------------------

#[test]
fn task_woken_from_another_thread_completes() {
    bounded("task_woken_from_another_thread_completes", || {
        block_on(async {
            let slot: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
            let done = Arc::new(AtomicBool::new(false));
            let (stored_tx, stored_rx) = mpsc::channel::<()>();
            let (s, d) = (slot.clone(), done.clone());
            let remote = thread::spawn(move || -> Result<(), RecvTimeoutError> {
                stored_rx.recv_timeout(TIMEOUT)?;
                d.store(true, Ordering::Release);
                let waker = s.lock().expect("waker mutex poisoned").take();
                waker.expect("waker stored before the signal").wake();
                Ok(())
            });

            let polls = Rc::new(Cell::new(0));
            let handle = spawn(count_polls(
                polls.clone(),
                poll_fn(move |cx| {
                    if done.load(Ordering::Acquire) {
                        return Poll::Ready("woken");
                    }
                    *slot.lock().expect("waker mutex poisoned") = Some(cx.waker().clone());
                    // Ignored: a second send (there is none) would find the thread gone.
                    let _ = stored_tx.send(());
                    Poll::Pending
                }),
            ));
            let out = handle.await;
            remote
                .join()
                .expect("waking thread panicked")
                .expect("waking thread timed out");
            assert_eq!(out.ok(), Some("woken"));
            assert_eq!(polls.get(), 2, "polls of a task woken once from afar");
        });
    });
}

#[test]
fn block_on_future_woken_from_another_thread_completes() {
    bounded(
        "block_on_future_woken_from_another_thread_completes",
        || {
            let done = Arc::new(AtomicBool::new(false));
            let (waker_tx, waker_rx) = mpsc::channel::<Waker>();
            let d = done.clone();
            let remote = thread::spawn(move || -> Result<(), RecvTimeoutError> {
                let waker = waker_rx.recv_timeout(TIMEOUT)?;
                d.store(true, Ordering::Release);
                waker.wake();
                Ok(())
            });
            let mut polls = 0;
            let mut waker_tx = Some(waker_tx);
            // No task, no timer: the loop sleeps in `epoll_wait` with no timeout until
            // the eventfd fires.
            let out = block_on(poll_fn(|cx| {
                polls += 1;
                if done.load(Ordering::Acquire) {
                    return Poll::Ready("woken");
                }
                if let Some(tx) = waker_tx.take() {
                    tx.send(cx.waker().clone())
                        .expect("the waking thread ended early");
                }
                Poll::Pending
            }));
            remote
                .join()
                .expect("waking thread panicked")
                .expect("waking thread timed out");
            assert_eq!(out, "woken");
            assert_eq!(
                polls, 2,
                "polls of the block_on future woken once from afar"
            );
        },
    );
}
