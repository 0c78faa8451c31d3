//! Executor tests: run-queue order, join results, abort, panics, the waker table's
//! dedupe and generations, cross-thread wakes, shutdown, misuse panics, fd hygiene
//! and fairness against I/O.
//!
//! Every test that drives a runtime runs its body on a thread of its own through
//! [`bounded`], so a runtime that hangs fails the test after [`TIMEOUT`] instead of
//! hanging the suite. Internals (`run_queue`, `tasks`) are read through the current
//! runtime's `Core` to assert exact queue contents.

use super::*;

use std::cell::{Cell, RefCell};
use std::fs;
use std::future::{pending, poll_fn};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread;
use std::time::Duration;

use crate::runtime::BUDGET;
use crate::test_support::*;
use crate::{Direction, Registration, block_on, spawn, yield_now};

/// Increments its counter when dropped.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Wraps `future` so that each poll increments `polls`.
fn count_polls<F: Future>(polls: Rc<Cell<usize>>, future: F) -> impl Future<Output = F::Output> {
    let mut future = Box::pin(future);
    poll_fn(move |cx| {
        polls.set(polls.get() + 1);
        future.as_mut().poll(cx)
    })
}

/// Runs `f` on the executor of the runtime running on this thread.
fn with_executor<R>(f: impl FnOnce(&Executor) -> R) -> R {
    crate::context::with_core(|core| f(&core.executor))
        .expect("`with_executor` must be called inside `block_on`")
}

/// The ids in the run queue, front first.
fn queued_ids() -> Vec<TaskId> {
    with_executor(|e| e.run_queue.borrow().iter().copied().collect())
}

/// Number of entries in `/proc/self/fd`.
fn open_fds() -> io::Result<usize> {
    Ok(fs::read_dir("/proc/self/fd")?.count())
}

// ---------------------------------------------------------------------------------
// Run-queue order
// ---------------------------------------------------------------------------------

#[test]
fn spawned_tasks_run_in_fifo_order() {
    let log = bounded("spawned_tasks_run_in_fifo_order", || {
        block_on(async {
            let log = Rc::new(RefCell::new(Vec::new()));
            let handles: Vec<_> = ["A", "B", "C"]
                .into_iter()
                .map(|name| {
                    let log = log.clone();
                    spawn(async move { log.borrow_mut().push(name) })
                })
                .collect();
            let queued: Vec<(u32, u32)> = queued_ids()
                .iter()
                .map(|id| (id.index, id.generation))
                .collect();
            assert_eq!(queued, [(0, 0), (1, 0), (2, 0)], "run queue after 3 spawns");
            for handle in handles {
                handle.await.expect("task must not fail");
            }
            log.take()
        })
    });
    assert_eq!(log, ["A", "B", "C"], "tasks ran out of spawn order");
}

#[test]
fn yielding_task_goes_to_the_back_of_the_queue() {
    let log = bounded("yielding_task_goes_to_the_back_of_the_queue", || {
        block_on(async {
            let log = Rc::new(RefCell::new(Vec::new()));
            let l = log.clone();
            let a = spawn(async move {
                l.borrow_mut().push("A1");
                yield_now().await;
                l.borrow_mut().push("A2");
            });
            let l = log.clone();
            let b = spawn(async move { l.borrow_mut().push("B") });
            let l = log.clone();
            let c = spawn(async move { l.borrow_mut().push("C") });
            a.await.expect("A must not fail");
            b.await.expect("B must not fail");
            c.await.expect("C must not fail");
            log.take()
        })
    });
    assert_eq!(
        log,
        ["A1", "B", "C", "A2"],
        "a yield did not requeue at the back"
    );
}

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

/// The output of the first task in
/// [`queued_wake_of_a_finished_task_is_skipped_after_its_slot_is_reused`]: dropped
/// once the finished task's slot is free, it spawns a task into that very slot.
struct SpawnOnDrop {
    /// Polls of the task spawned on drop.
    polls: Rc<Cell<usize>>,
    /// Where the spawned task's handle goes.
    handle: Rc<RefCell<Option<JoinHandle<()>>>>,
    /// The run queue right after that spawn.
    queue: Rc<RefCell<Vec<TaskId>>>,
}

impl Drop for SpawnOnDrop {
    fn drop(&mut self) {
        let handle = spawn(count_polls(self.polls.clone(), pending::<()>()));
        *self.handle.borrow_mut() = Some(handle);
        *self.queue.borrow_mut() = queued_ids();
    }
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
                let mut output = Some(SpawnOnDrop {
                    polls: polls.clone(),
                    handle: handle.clone(),
                    queue: queue.clone(),
                });
                // Wakes itself, then finishes. Its handle is dropped, so its output
                // is dropped with the task, after the slot has been freed.
                drop(spawn(poll_fn(move |cx| {
                    cx.waker().wake_by_ref();
                    Poll::Ready(output.take().expect("polled once"))
                })));
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
                assert_eq!(polls.get(), 1, "task in the reused slot: polls");
                for _ in 0..3 {
                    yield_now().await;
                }
                assert_eq!(polls.get(), 1, "task in the reused slot: polls");

                let handle = handle.take().expect("the output's destructor spawned");
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

// ---------------------------------------------------------------------------------
// Fairness
// ---------------------------------------------------------------------------------

#[test]
fn always_ready_task_does_not_starve_io_from_another_thread() -> io::Result<()> {
    bounded(
        "always_ready_task_does_not_starve_io_from_another_thread",
        || {
            block_on(async {
                let (a, b) = UnixStream::pair()?;
                a.set_nonblocking(true)?;
                let spins = Rc::new(Cell::new(0_u64));
                let s = spins.clone();
                let spinner = spawn(async move {
                    loop {
                        s.set(s.get() + 1);
                        yield_now().await;
                    }
                });

                let (waiting_tx, waiting_rx) = mpsc::channel::<()>();
                let writer = thread::spawn(move || -> io::Result<UnixStream> {
                    waiting_rx.recv_timeout(TIMEOUT).map_err(io::Error::other)?;
                    (&b).write_all(b"ping")?;
                    Ok(b)
                });
                let reader = spawn(async move {
                    let reg = Registration::new(a.as_fd())?;
                    let mut buf = [0_u8; 16];
                    let mut waiting_tx = Some(waiting_tx);
                    let n = poll_fn(|cx| {
                        let poll = reg.poll_io(Direction::Read, cx, || (&a).read(&mut buf));
                        if poll.is_pending()
                            && let Some(tx) = waiting_tx.take()
                        {
                            // Ignored: the writer gives up only after a timeout.
                            let _ = tx.send(());
                        }
                        poll
                    })
                    .await?;
                    drop(reg);
                    io::Result::Ok(buf[..n].to_vec())
                });

                let got = reader.await??;
                let spins_at_read = spins.get();
                spinner.abort();
                let err = spinner.await.expect_err("the spinner never ends by itself");
                assert!(err.is_cancelled(), "got {err:?}");
                let _b = writer.join().expect("writer thread panicked")?;
                assert_eq!(got, b"ping", "read {:?}", String::from_utf8_lossy(&got));
                assert!(spins_at_read > 0, "the spinner never ran");
                Ok(())
            })
        },
    )
}

#[test]
fn io_is_checked_within_one_budget_of_always_ready_tasks() -> io::Result<()> {
    bounded(
        "io_is_checked_within_one_budget_of_always_ready_tasks",
        || {
            block_on(async {
                let (a, mut b) = UnixStream::pair()?;
                a.set_nonblocking(true)?;
                let spins = Rc::new(Cell::new(0_usize));
                let s = spins.clone();
                let reader = spawn(async move {
                    let reg = Registration::new(a.as_fd())?;
                    let mut buf = [0_u8; 16];
                    let n = poll_fn(|cx| reg.poll_io(Direction::Read, cx, || (&a).read(&mut buf)))
                        .await?;
                    io::Result::Ok((buf[..n].to_vec(), s.get()))
                });
                let s = spins.clone();
                let spinner = spawn(async move {
                    loop {
                        s.set(s.get() + 1);
                        yield_now().await;
                    }
                });
                // One loop turn: the reader finds nothing and waits on epoll.
                yield_now().await;
                assert!(!reader.is_finished(), "reader finished without data");

                let spins_at_write = spins.get();
                b.write_all(b"ping")?;
                let (got, spins_at_read) = reader.await??;
                let waited = spins_at_read - spins_at_write;
                // The event is seen at the end of the budget in which it arrived; the
                // woken reader is queued behind the spinner, hence the + 1.
                assert!(
                    waited <= BUDGET + 1,
                    "spinner polled {waited} times while data waited (budget {BUDGET})"
                );
                assert_eq!(got, b"ping", "read {:?}", String::from_utf8_lossy(&got));

                spinner.abort();
                let err = spinner.await.expect_err("the spinner never ends by itself");
                assert!(err.is_cancelled(), "got {err:?}");
                Ok(())
            })
        },
    )
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
