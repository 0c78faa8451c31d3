//! `edgeloop::task::JoinSet` through the facade: results in completion order,
//! abort, detach, shutdown, panics, `join_all`, `try_join_next`, ten thousand tasks
//! through one set, and one poll of the joiner per finished task.
//!
//! Every test runs under [`with_timeout`], so a lost wakeup fails instead of hanging;
//! timed tests pause the clock and take no real time.

mod support;

use std::cell::Cell;
use std::future::{Future, pending, poll_fn};
use std::panic::catch_unwind;
use std::rc::Rc;
use std::time::Duration;

use edgeloop::task::JoinSet;
use edgeloop::{block_on, spawn, time, yield_now};
use support::with_timeout;

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

/// The message of a panic payload.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".to_owned())
}

#[test]
fn results_come_back_in_deadline_order_whatever_the_spawn_order() {
    with_timeout(10, "deadline_order", || {
        block_on(async {
            time::pause();
            let start = time::now();
            let mut set = JoinSet::new();
            for ms in [300, 100, 500, 200, 400] {
                set.spawn(sleep_ms(ms));
            }
            let mut order = Vec::new();
            while let Some(result) = set.join_next().await {
                let ms = result.expect("a sleeping task ends normally");
                let elapsed = time::now() - start;
                assert_eq!(elapsed, Duration::from_millis(ms), "{ms} ms task");
                order.push(ms);
            }
            assert_eq!(order, [100, 200, 300, 400, 500], "join order {order:?}");
        });
    });
}

#[test]
fn join_next_on_an_empty_set_is_none_without_waiting() {
    with_timeout(10, "empty", || {
        let polls = Rc::new(Cell::new(0));
        block_on(count_polls(polls.clone(), async {
            let mut set = JoinSet::<u8>::new();
            assert!(set.join_next().await.is_none());
            assert!(set.is_empty());
        }));
        assert_eq!(polls.get(), 1, "polled {} times", polls.get());
    });
}

#[test]
fn len_tracks_spawns_and_joins() {
    with_timeout(10, "len", || {
        block_on(async {
            let mut set = JoinSet::new();
            for i in 0..4 {
                set.spawn(async move { i });
            }
            assert_eq!(set.len(), 4);
            yield_now().await;
            assert_eq!(set.len(), 4, "ended tasks stay until joined");
            let mut sum = 0;
            while let Some(result) = set.join_next().await {
                sum += result.expect("no task fails");
                assert!(set.len() < 4);
            }
            assert_eq!(sum, 6);
            assert_eq!(set.len(), 0);
        });
    });
}

#[test]
fn a_panicking_task_comes_back_as_an_error_with_its_message() {
    with_timeout(10, "panic", || {
        block_on(async {
            let mut set = JoinSet::new();
            set.spawn(async {
                yield_now().await;
                panic!("exploded on purpose")
            });
            set.spawn(async { "fine" });
            assert_eq!(set.join_next().await.unwrap().unwrap(), "fine");
            let error = set.join_next().await.unwrap().unwrap_err();
            assert!(error.is_panic(), "{error:?}");
            assert!(!error.is_cancelled());
            assert_eq!(message(&*error.into_panic()), "exploded on purpose");
        });
    });
}

#[test]
fn abort_all_cancels_every_pending_task_and_drops_its_future() {
    with_timeout(10, "abort_all", || {
        block_on(async {
            let drops = Rc::new(Cell::new(0));
            let mut set = JoinSet::new();
            for _ in 0..8 {
                let guard = DropCounter(drops.clone());
                set.spawn(async move {
                    let _guard = guard;
                    pending::<()>().await
                });
            }
            yield_now().await;
            set.abort_all();
            let mut cancelled = 0;
            while let Some(result) = set.join_next().await {
                let error = result.expect_err("a pending task cannot succeed");
                assert!(error.is_cancelled(), "{error:?}");
                cancelled += 1;
            }
            assert_eq!(cancelled, 8);
            assert_eq!(drops.get(), 8, "futures dropped");
        });
    });
}

#[test]
fn dropping_the_set_aborts_its_tasks_within_one_turn() {
    with_timeout(10, "drop", || {
        block_on(async {
            let drops = Rc::new(Cell::new(0));
            let mut set = JoinSet::new();
            for _ in 0..3 {
                let guard = DropCounter(drops.clone());
                set.spawn(async move {
                    let _guard = guard;
                    pending::<()>().await
                });
            }
            yield_now().await;
            drop(set);
            yield_now().await;
            assert_eq!(drops.get(), 3, "futures dropped one turn after the set");
        });
    });
}

#[test]
fn shutdown_leaves_an_empty_set_and_no_future_alive() {
    with_timeout(10, "shutdown", || {
        block_on(async {
            time::pause();
            let drops = Rc::new(Cell::new(0));
            let mut set = JoinSet::new();
            for ms in [0, 10, 3_600_000] {
                let guard = DropCounter(drops.clone());
                set.spawn(async move {
                    let _guard = guard;
                    sleep_ms(ms).await
                });
            }
            let start = time::now();
            set.shutdown().await;
            assert_eq!(set.len(), 0);
            assert_eq!(drops.get(), 3);
            assert_eq!(time::now(), start, "shutdown waited for a sleeping task");
            assert!(set.join_next().await.is_none());
        });
    });
}

#[test]
fn detached_tasks_keep_running_after_the_set_is_dropped() {
    with_timeout(10, "detach_all", || {
        block_on(async {
            time::pause();
            let ended = Rc::new(Cell::new(0));
            let mut set = JoinSet::new();
            for ms in [10, 20, 30] {
                let ended = ended.clone();
                set.spawn(async move {
                    sleep_ms(ms).await;
                    ended.set(ended.get() + 1);
                });
            }
            set.detach_all();
            assert!(set.is_empty());
            drop(set);
            time::sleep(Duration::from_millis(40)).await;
            assert_eq!(ended.get(), 3, "detached tasks ended");
        });
    });
}

#[test]
fn join_all_returns_outputs_in_completion_order() {
    with_timeout(10, "join_all", || {
        let outputs = block_on(async {
            time::pause();
            let mut set = JoinSet::new();
            for ms in [30, 10, 20] {
                set.spawn(sleep_ms(ms));
            }
            set.join_all().await
        });
        assert_eq!(outputs, [10, 20, 30]);
    });
}

#[test]
fn join_all_reraises_a_task_panic() {
    with_timeout(10, "join_all_panic", || {
        let caught = catch_unwind(|| {
            block_on(async {
                let mut set = JoinSet::new();
                set.spawn(async { 1 });
                set.spawn(async { panic!("join_all must see this") });
                set.join_all().await
            })
        });
        let payload = caught.expect_err("the task's panic is re-raised");
        assert_eq!(message(&*payload), "join_all must see this");
    });
}

#[test]
fn try_join_next_is_none_while_tasks_run_and_some_once_one_ended() {
    with_timeout(10, "try_join_next", || {
        block_on(async {
            time::pause();
            let mut set = JoinSet::new();
            assert!(set.try_join_next().is_none());
            set.spawn(sleep_ms(50));
            yield_now().await;
            assert!(set.try_join_next().is_none(), "the task still sleeps");
            time::sleep(Duration::from_millis(60)).await;
            let result = set.try_join_next().expect("the task has ended");
            assert_eq!(result.unwrap(), 50);
            assert!(set.try_join_next().is_none());
        });
    });
}

#[test]
fn ten_thousand_tasks_are_each_joined_exactly_once() {
    with_timeout(10, "ten_thousand", || {
        block_on(async {
            const TOTAL: usize = 10_000;
            let mut set = JoinSet::new();
            for i in 0..TOTAL {
                set.spawn(async move {
                    for _ in 0..i % 4 {
                        yield_now().await;
                    }
                    i
                });
            }
            assert_eq!(set.len(), TOTAL);
            let mut seen = vec![0u32; TOTAL];
            while let Some(result) = set.join_next().await {
                seen[result.expect("no task fails")] += 1;
            }
            let wrong: Vec<_> = (0..TOTAL).filter(|&i| seen[i] != 1).collect();
            assert!(wrong.is_empty(), "not joined exactly once: {wrong:?}");
            assert!(set.is_empty());
        });
    });
}

#[test]
fn the_joiner_is_polled_once_per_finished_task() {
    with_timeout(10, "one_poll_per_task", || {
        let polls = Rc::new(Cell::new(0));
        block_on(count_polls(polls.clone(), async {
            time::pause();
            let mut set = JoinSet::new();
            for ms in [30, 10, 20] {
                set.spawn(sleep_ms(ms));
            }
            while let Some(result) = set.join_next().await {
                result.expect("no task fails");
            }
        }));
        // One poll to spawn and wait, then one per task that ended.
        assert_eq!(
            polls.get(),
            4,
            "the joiner was polled {} times",
            polls.get()
        );
    });
}

#[test]
fn a_set_can_be_driven_from_a_spawned_task() {
    with_timeout(10, "spawned_owner", || {
        block_on(async {
            time::pause();
            let owner = spawn(async {
                let mut set = JoinSet::new();
                let slow = set.spawn(sleep_ms(1000));
                set.spawn(sleep_ms(10));
                let first = set.join_next().await.unwrap().unwrap();
                slow.abort();
                let second = set.join_next().await.unwrap();
                (first, second.unwrap_err().is_cancelled())
            });
            assert_eq!(owner.await.unwrap(), (10, true));
        });
    });
}
