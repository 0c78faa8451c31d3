//! Tests of the cooperative budget: a task that never runs out of ready I/O yields
//! anyway, `consume_budget` yields every `TASK_BUDGET` units, `unconstrained` never
//! does, and a spent budget makes even a finished sleep wait its turn.

use super::*;

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::test_support::{bounded, socket_pair};
use crate::{AsyncFd, Direction, Runtime, spawn};

/// Wraps `future` so that `polls` counts its polls.
fn counted<F: Future>(polls: Rc<Cell<u32>>, future: F) -> impl Future<Output = F::Output> {
    let mut future = Box::pin(future);
    std::future::poll_fn(move |cx| {
        polls.set(polls.get() + 1);
        future.as_mut().poll(cx)
    })
}

#[test]
fn consume_budget_yields_once_per_task_budget() {
    bounded("consume_budget_yields_once_per_task_budget", || {
        crate::block_on(async {
            let polls = Rc::new(Cell::new(0));
            let units = u32::from(TASK_BUDGET) * 3 + 5;
            spawn(counted(polls.clone(), async move {
                for _ in 0..units {
                    consume_budget().await;
                }
            }))
            .await
            .unwrap();
            // 128 units per poll, then a yield: 4 polls for 3 budgets and a bit.
            assert_eq!(polls.get(), 4, "polls of a task spending {units} units");
        });
    });
}

#[test]
fn unconstrained_never_yields_on_the_budget() {
    bounded("unconstrained_never_yields_on_the_budget", || {
        crate::block_on(async {
            let polls = Rc::new(Cell::new(0));
            spawn(counted(
                polls.clone(),
                unconstrained(async {
                    for _ in 0..1000 {
                        consume_budget().await;
                    }
                }),
            ))
            .await
            .unwrap();
            assert_eq!(polls.get(), 1, "an unconstrained task was interrupted");
        });
    });
}

#[test]
fn a_spent_budget_makes_a_finished_sleep_yield() {
    bounded("a_spent_budget_makes_a_finished_sleep_yield", || {
        crate::block_on(async {
            let polls = Rc::new(Cell::new(0));
            spawn(counted(polls.clone(), async {
                for _ in 0..300 {
                    crate::time::sleep(Duration::ZERO).await;
                }
            }))
            .await
            .unwrap();
            assert!(
                polls.get() >= 3,
                "300 finished sleeps in {} polls: the budget did not apply",
                polls.get()
            );
        });
    });
}

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn a_task_reading_a_flooding_peer_does_not_starve_a_timer() {
    bounded(
        "a_task_reading_a_flooding_peer_does_not_starve_a_timer",
        || {
            let rt = Runtime::new().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let (ours, mut theirs) = socket_pair().unwrap();
            // The peer keeps the socket readable for as long as the test runs.
            let flooder = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let chunk = [7u8; 4096];
                    while !stop.load(Ordering::Relaxed) {
                        if theirs.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                })
            };
            let timer_fired = rt.block_on(async {
                let fd = AsyncFd::new(ours).unwrap();
                let reader = spawn(async move {
                    let mut buf = [0u8; 64];
                    let mut total = 0usize;
                    // Always ready: without the budget this loop would never return to
                    // the executor.
                    loop {
                        let n = fd
                            .io(Direction::Read, |s| std::io::Read::read(&mut &*s, &mut buf))
                            .await
                            .unwrap();
                        total += n;
                        if n == 0 {
                            return total;
                        }
                    }
                });
                let fired = Rc::new(Cell::new(false));
                let flag = fired.clone();
                let timer = spawn(async move {
                    crate::time::sleep(Duration::from_millis(10)).await;
                    flag.set(true);
                });
                timer.await.unwrap();
                reader.abort();
                fired.get()
            });
            stop.store(true, Ordering::Relaxed);
            drop(rt); // closes our end, so the flooder's write fails and it ends
            flooder.join().unwrap();
            assert!(timer_fired, "the timer task never ran");
        },
    );
}

#[test]
fn budget_yields_are_counted_in_the_metrics() {
    bounded("budget_yields_are_counted_in_the_metrics", || {
        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            spawn(async {
                for _ in 0..(u32::from(TASK_BUDGET) * 2 + 1) {
                    consume_budget().await;
                }
            })
            .await
            .unwrap();
        });
        assert_eq!(rt.metrics().budget_yields, 2);
    });
}
