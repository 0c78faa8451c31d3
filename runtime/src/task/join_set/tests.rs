//! `JoinSet` tests: completion order, exact poll and drop counts, abort, detach,
//! shutdown, panics, slot reuse and the O(1) wake per finished task.
//!
//! Every test runs its body on a thread of its own through [`bounded`], so a lost
//! wakeup fails the test after [`TIMEOUT`](crate::test_support::TIMEOUT) instead of
//! hanging the suite. Timed tests pause the clock, so they take no real time.

use super::*;

use std::cell::Cell;
use std::future::pending;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::test_support::{bounded, panic_message};
use crate::{block_on, time, yield_now};

/// Increments its counter when dropped.
struct DropCounter(Rc<Cell<usize>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
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

/// Sleeps `ms` milliseconds on the (paused) clock, then returns `ms`.
async fn sleep_ms(ms: u64) -> u64 {
    time::sleep(Duration::from_millis(ms)).await;
    ms
}

#[test]
fn results_come_back_in_completion_order_not_spawn_order() {
    bounded("completion_order", || {
        block_on(async {
            time::pause();
            let start = time::now();
            let mut set = JoinSet::new();
            for ms in [30, 10, 50, 20, 40] {
                set.spawn(sleep_ms(ms));
            }
            let mut order = Vec::new();
            while let Some(result) = set.join_next().await {
                let ms = result.expect("a sleeping task ends normally");
                let elapsed = time::now() - start;
                assert_eq!(
                    elapsed,
                    Duration::from_millis(ms),
                    "task of {ms} ms joined at {elapsed:?}"
                );
                order.push(ms);
            }
            assert_eq!(order, [10, 20, 30, 40, 50], "join order {order:?}");
        });
    });
}

#[test]
fn join_next_on_an_empty_set_is_none_at_once() {
    bounded("empty_join_next", || {
        let polls = Rc::new(Cell::new(0));
        block_on(count_polls(polls.clone(), async {
            let mut set = JoinSet::<()>::new();
            assert!(set.join_next().await.is_none());
            assert!(set.try_join_next().is_none());
            assert!(set.is_empty(), "len {}", set.len());
            let mut cx = Context::from_waker(Waker::noop());
            assert!(matches!(set.poll_join_next(&mut cx), Poll::Ready(None)));
        }));
        assert_eq!(
            polls.get(),
            1,
            "the owner waited: polled {} times",
            polls.get()
        );
    });
}

#[test]
fn len_counts_spawned_tasks_until_joined() {
    bounded("len", || {
        block_on(async {
            let mut set = JoinSet::new();
            assert_eq!(set.len(), 0);
            for i in 0..3 {
                set.spawn(async move { i });
                assert_eq!(set.len(), i + 1, "after spawn {i}");
            }
            // Ended but not joined: still in the set.
            yield_now().await;
            assert_eq!(set.len(), 3, "ended tasks left before being joined");
            for left in (0..3).rev() {
                set.join_next()
                    .await
                    .expect("a task is left")
                    .expect("no error");
                assert_eq!(set.len(), left);
            }
            assert!(set.is_empty());
        });
    });
}

#[test]
fn a_panicking_task_comes_back_as_a_panic_with_its_message() {
    bounded("panic", || {
        block_on(async {
            let mut set = JoinSet::<()>::new();
            set.spawn(async { panic!("task exploded") });
            let error = set.join_next().await.expect("one task").unwrap_err();
            assert!(error.is_panic(), "{error:?}");
            let message = panic_message(&*error.into_panic());
            assert_eq!(message, "task exploded");
            assert!(set.is_empty());
        });
    });
}

#[test]
fn abort_all_cancels_pending_tasks_and_drops_their_futures() {
    bounded("abort_all", || {
        block_on(async {
            let drops = Rc::new(Cell::new(0));
            let mut set = JoinSet::new();
            for _ in 0..5 {
                let guard = DropCounter(drops.clone());
                set.spawn(async move {
                    let _guard = guard;
                    pending::<()>().await;
                });
            }
            yield_now().await; // every task has started and is pending
            assert_eq!(drops.get(), 0);
            set.abort_all();
            assert_eq!(set.len(), 5, "aborted tasks stay until joined");
            let mut joined = 0;
            while let Some(result) = set.join_next().await {
                joined += 1;
                let error = result.unwrap_err();
                assert!(error.is_cancelled(), "{error:?}");
                // The guard fires after the user's future is gone.
                assert!(
                    drops.get() >= joined,
                    "{joined} joined but {} futures dropped",
                    drops.get()
                );
            }
            assert_eq!(joined, 5);
            assert_eq!(drops.get(), 5);
        });
    });
}

#[test]
fn abort_all_leaves_results_of_ended_tasks() {
    bounded("abort_all_ended", || {
        block_on(async {
            let mut set = JoinSet::new();
            set.spawn(async { 1 });
            yield_now().await;
            set.abort_all();
            assert_eq!(set.join_next().await.unwrap().unwrap(), 1);
        });
    });
}

#[test]
fn dropping_the_set_aborts_its_tasks_within_one_turn() {
    bounded("drop_aborts", || {
        block_on(async {
            let drops = Rc::new(Cell::new(0));
            let mut set = JoinSet::new();
            for _ in 0..3 {
                let guard = DropCounter(drops.clone());
                set.spawn(async move {
                    let _guard = guard;
                    pending::<()>().await;
                });
            }
            yield_now().await;
            drop(set);
            assert_eq!(
                drops.get(),
                0,
                "futures are dropped by the runtime, not in `drop`"
            );
            yield_now().await;
            assert_eq!(drops.get(), 3, "after one turn");
        });
    });
}

#[test]
fn shutdown_empties_the_set_and_drops_every_future() {
    bounded("shutdown", || {
        block_on(async {
            time::pause();
            let drops = Rc::new(Cell::new(0));
            let mut set = JoinSet::new();
            for i in 0..4 {
                let guard = DropCounter(drops.clone());
                set.spawn(async move {
                    let _guard = guard;
                    if i % 2 == 0 {
                        pending::<()>().await;
                    }
                });
            }
            yield_now().await; // the odd ones have ended
            assert_eq!(drops.get(), 2);
            set.shutdown().await;
            assert_eq!(set.len(), 0);
            assert_eq!(drops.get(), 4);
            assert!(set.join_next().await.is_none());
        });
    });
}

#[test]
fn detached_tasks_run_on_after_the_set_is_dropped() {
    bounded("detach_all", || {
        let polls = Rc::new(Cell::new(0));
        block_on(count_polls(polls.clone(), async {
            time::pause();
            let ended = Rc::new(Cell::new(0));
            let mut set = JoinSet::new();
            for ms in [10, 20] {
                let ended = ended.clone();
                set.spawn(async move {
                    sleep_ms(ms).await;
                    ended.set(ended.get() + 1);
                });
            }
            // Registers this task's waker in the set: detached tasks must not wake it.
            let mut cx = Context::from_waker(Waker::noop());
            assert!(set.poll_join_next(&mut cx).is_pending());
            set.detach_all();
            assert!(set.is_empty(), "len {}", set.len());
            assert!(set.join_next().await.is_none());
            drop(set);
            let before = polls.get();
            time::sleep(Duration::from_millis(30)).await;
            assert_eq!(ended.get(), 2, "detached tasks did not run to the end");
            // One wake for our own sleep, none from the detached tasks ending.
            assert_eq!(
                polls.get() - before,
                1,
                "polls {} -> {}",
                before,
                polls.get()
            );
        }));
    });
}

#[test]
fn detach_all_then_spawn_reuses_nothing_stale() {
    bounded("detach_then_spawn", || {
        block_on(async {
            time::pause();
            let mut set = JoinSet::new();
            let old = set.spawn(sleep_ms(10));
            set.detach_all();
            set.spawn(sleep_ms(20));
            old.abort(); // no longer reaches anything
            // The detached task ends first; its key must not come back.
            let ms = set.join_next().await.unwrap().unwrap();
            assert_eq!(ms, 20);
            assert!(set.join_next().await.is_none());
        });
    });
}

#[test]
fn join_all_returns_outputs_in_completion_order() {
    bounded("join_all", || {
        block_on(async {
            time::pause();
            let mut set = JoinSet::new();
            for ms in [40, 10, 30, 20] {
                set.spawn(sleep_ms(ms));
            }
            assert_eq!(set.join_all().await, [10, 20, 30, 40]);
        });
    });
}

#[test]
fn join_all_reraises_the_first_panic_and_aborts_the_rest() {
    bounded("join_all_panic", || {
        block_on(async {
            time::pause();
            let start = time::now();
            let drops = Rc::new(Cell::new(0));
            let mut set = JoinSet::new();
            let guard = DropCounter(drops.clone());
            set.spawn(async move {
                let _guard = guard;
                pending::<u64>().await
            });
            set.spawn(async {
                sleep_ms(10).await;
                panic!("first failure")
            });
            set.spawn(async {
                sleep_ms(20).await;
                panic!("second failure")
            });
            // Caught here, inside the runtime, to watch the pending task's fate.
            let mut join = Box::pin(set.join_all());
            let caught =
                poll_fn(
                    |cx| match catch_unwind(AssertUnwindSafe(|| join.as_mut().poll(cx))) {
                        Ok(Poll::Pending) => Poll::Pending,
                        Ok(Poll::Ready(outputs)) => Poll::Ready(Ok(outputs)),
                        Err(payload) => Poll::Ready(Err(payload)),
                    },
                )
                .await;
            let payload = caught.expect_err("`join_all` must re-raise the panic");
            assert_eq!(panic_message(&*payload), "first failure");
            let elapsed = time::now() - start;
            assert_eq!(
                elapsed,
                Duration::from_millis(10),
                "re-raised at {elapsed:?}"
            );
            yield_now().await;
            assert_eq!(drops.get(), 1, "the pending task was not aborted");
        });
    });
}

#[test]
fn join_all_panics_on_a_cancelled_task() {
    bounded("join_all_cancelled", || {
        let caught = catch_unwind(|| {
            block_on(async {
                let mut set = JoinSet::new();
                set.spawn(pending::<()>()).abort();
                set.join_all().await
            })
        });
        let message = panic_message(&*caught.expect_err("a cancelled task must panic"));
        assert!(message.contains("task was cancelled"), "{message}");
    });
}

#[test]
fn try_join_next_is_none_until_a_task_has_ended() {
    bounded("try_join_next", || {
        block_on(async {
            time::pause();
            let mut set = JoinSet::new();
            assert!(set.try_join_next().is_none(), "empty set");
            set.spawn(sleep_ms(10));
            assert!(set.try_join_next().is_none(), "not started");
            yield_now().await;
            assert!(set.try_join_next().is_none(), "still sleeping");
            assert_eq!(set.len(), 1);
            time::sleep(Duration::from_millis(10)).await;
            yield_now().await;
            let result = set.try_join_next().expect("the task has ended");
            assert_eq!(result.unwrap(), 10);
            assert!(set.try_join_next().is_none());
            assert!(set.is_empty());
        });
    });
}

#[test]
fn ten_thousand_tasks_are_each_joined_once_and_slots_are_reused() {
    bounded("ten_thousand", || {
        block_on(async {
            // 10 000 would take many minutes under Miri; 300 still outnumbers LIVE.
            const TOTAL: usize = if cfg!(miri) { 300 } else { 10_000 };
            const LIVE: usize = 100;
            let mut set = JoinSet::new();
            let mut seen = vec![0u8; TOTAL];
            let mut spawned = 0;
            let spawn_one = |set: &mut JoinSet<usize>, i: usize| {
                set.spawn(async move {
                    // Different lengths, so tasks end out of spawn order.
                    for _ in 0..i % 3 {
                        yield_now().await;
                    }
                    i
                });
            };
            while spawned < LIVE {
                spawn_one(&mut set, spawned);
                spawned += 1;
            }
            while let Some(result) = set.join_next().await {
                let i = result.expect("no task fails");
                seen[i] += 1;
                if spawned < TOTAL {
                    spawn_one(&mut set, spawned);
                    spawned += 1;
                }
                assert!(set.len() <= LIVE, "len {}", set.len());
            }
            let wrong: Vec<_> = (0..TOTAL).filter(|&i| seen[i] != 1).collect();
            assert!(wrong.is_empty(), "joined not exactly once: {wrong:?}");
            let capacity = set.slot_capacity();
            assert!(
                capacity <= LIVE,
                "slab grew to {capacity} slots for {LIVE} live"
            );
            assert!(set.ready.borrow().keys.is_empty());
            assert_eq!(set.slab.borrow().free.len(), capacity, "slots not all free");

            // All at once: the slab grows to the peak, then is reused as is.
            for round in 0..2 {
                for i in 0..TOTAL {
                    set.spawn(async move { i });
                }
                let mut count = 0;
                while let Some(result) = set.join_next().await {
                    result.expect("no task fails");
                    count += 1;
                }
                assert_eq!(count, TOTAL, "round {round}");
                let capacity = set.slot_capacity();
                assert_eq!(capacity, TOTAL, "round {round}: {capacity} slots");
            }
        });
    });
}

#[test]
fn the_joiner_is_polled_once_per_finished_task() {
    bounded("wakes_per_completion", || {
        let polls = Rc::new(Cell::new(0));
        let order = block_on(count_polls(polls.clone(), async {
            time::pause();
            let mut set = JoinSet::new();
            for ms in [30, 10, 20] {
                set.spawn(sleep_ms(ms));
            }
            let mut order = Vec::new();
            while let Some(result) = set.join_next().await {
                order.push(result.expect("no task fails"));
            }
            order
        }));
        assert_eq!(order, [10, 20, 30]);
        // First poll: spawn and wait; then one poll per task that ended.
        assert_eq!(
            polls.get(),
            4,
            "the joiner was polled {} times",
            polls.get()
        );
    });
}

#[test]
fn tasks_ending_together_wake_the_joiner_once() {
    bounded("burst_one_wake", || {
        let polls = Rc::new(Cell::new(0));
        block_on(count_polls(polls.clone(), async {
            time::pause();
            let mut set = JoinSet::new();
            for _ in 0..50 {
                set.spawn(sleep_ms(10));
            }
            let mut count = 0;
            while let Some(result) = set.join_next().await {
                result.expect("no task fails");
                count += 1;
            }
            assert_eq!(count, 50);
        }));
        assert_eq!(
            polls.get(),
            2,
            "the joiner was polled {} times",
            polls.get()
        );
    });
}

#[test]
fn an_abort_handle_reaches_only_its_own_task() {
    bounded("abort_handle", || {
        block_on(async {
            let mut set = JoinSet::new();
            let first = set.spawn(async { 1 });
            assert_eq!(set.join_next().await.unwrap().unwrap(), 1);
            // The second task reuses the first one's slot.
            let second = set.spawn(async {
                yield_now().await;
                2
            });
            assert_eq!(set.slot_capacity(), 1);
            first.abort();
            assert_eq!(
                set.join_next().await.unwrap().unwrap(),
                2,
                "wrong task aborted"
            );
            drop(second);

            let third = set.spawn(pending::<i32>());
            third.abort();
            assert!(set.join_next().await.unwrap().unwrap_err().is_cancelled());
            assert!(format!("{third:?}").contains("AbortHandle"));
        });
    });
}

#[test]
fn spawn_outside_a_runtime_panics_and_leaves_the_set_usable() {
    bounded("spawn_outside", || {
        let mut set = JoinSet::new();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            set.spawn(async { 1 });
        }));
        let message = panic_message(&*caught.expect_err("no runtime to spawn on"));
        assert!(message.contains("outside `block_on`"), "{message}");
        assert_eq!(set.len(), 0);
        block_on(async {
            assert!(set.join_next().await.is_none());
            set.spawn(async { 2 });
            assert_eq!(set.join_next().await.unwrap().unwrap(), 2);
            assert!(set.join_next().await.is_none());
        });
        assert_eq!(set.slot_capacity(), 1, "the reserved slot was not reused");
    });
}

#[test]
fn debug_and_default() {
    let set = JoinSet::<u8>::default();
    assert!(set.is_empty());
    assert_eq!(format!("{set:?}"), "JoinSet { len: 0, .. }");
}
