//! Timer behaviour through the public API, inside `block_on`: ordering, reset,
//! zero and past deadlines, `timeout` both ways, each `MissedTickBehavior`, the
//! paused clock, and sleeps racing I/O.
//!
//! Most tests pause the clock: they are then exact and take no real time.

use super::*;

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::pin::pin;
use std::task::Poll;

use crate::test_support::{bounded, socket_pair};
use crate::{AsyncFd, Direction, block_on, spawn, yield_now};

fn pending_timers() -> usize {
    crate::context::current_timers()
        .expect("inside block_on")
        .len()
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn many_deadlines_fire_in_order_and_equal_ones_all_fire() {
    bounded(
        "many_deadlines_fire_in_order_and_equal_ones_all_fire",
        || {
            block_on(async {
                pause();
                let start = now();
                let log = Rc::new(RefCell::new(Vec::new()));
                // 40 tasks; deadlines repeat (i % 7), so several share each deadline.
                let tasks: Vec<_> = (0..40_u32)
                    .map(|i| {
                        let log = log.clone();
                        let at = start + MS * ((i * 13) % 7 + 1);
                        spawn(async move {
                            sleep_until(at).await;
                            log.borrow_mut().push((now() - start, i));
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("sleeping task");
                }
                let log = log.borrow();
                assert_eq!(log.len(), 40, "fired: {log:?}");
                for (elapsed, i) in log.iter() {
                    let wanted = MS * ((i * 13) % 7 + 1);
                    assert_eq!(*elapsed, wanted, "task {i} woke at {elapsed:?}");
                }
                assert!(
                    log.windows(2).all(|w| w[0].0 <= w[1].0),
                    "out of deadline order: {log:?}"
                );
                assert_eq!(pending_timers(), 0);
            });
        },
    );
}

#[test]
fn past_deadlines_complete_at_the_first_poll_and_zero_ones_at_the_next_turn() {
    bounded(
        "past_deadlines_complete_at_the_first_poll_and_zero_ones_at_the_next_turn",
        || {
            block_on(async {
                yield_now().await; // one loop turn: the wheel's "now" is current
                let mut past = Box::pin(sleep_until(now() - Duration::from_secs(1)));
                let first = poll_fn(|cx| Poll::Ready(past.as_mut().poll(cx))).await;
                assert!(
                    first.is_ready(),
                    "past deadline not ready at once: {past:?}"
                );
                assert!(past.is_elapsed());

                // Due now: no clock read at the poll, so the wheel fires it at the
                // loop's next turn, never before its deadline.
                let start = std::time::Instant::now();
                let mut zero = Box::pin(sleep(Duration::ZERO));
                let deadline = zero.deadline();
                zero.as_mut().await;
                assert!(zero.is_elapsed());
                assert!(now() >= deadline, "fired before its deadline");
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "took {:?}",
                    start.elapsed()
                );
                assert_eq!(pending_timers(), 0, "a finished sleep left a timer behind");
            });
        },
    );
}

#[test]
fn reset_moves_a_waiting_sleep_earlier_and_later() {
    bounded("reset_moves_a_waiting_sleep_earlier_and_later", || {
        block_on(async {
            pause();
            let start = now();
            for (first, reset_to) in [(10_000, 1_000), (1_000, 20_000)] {
                let start = now();
                let sleep = Rc::new(RefCell::new(Box::pin(sleep(MS * first))));
                let s = sleep.clone();
                let waiter = spawn(async move {
                    poll_fn(|cx| s.borrow_mut().as_mut().poll(cx)).await;
                    now()
                });
                yield_now().await; // the waiter is registered now
                sleep.borrow_mut().as_mut().reset(start + MS * reset_to);
                let woke = waiter.await.expect("waiter");
                assert_eq!(
                    woke - start,
                    MS * reset_to,
                    "sleep of {first} ms reset to {reset_to} ms"
                );
            }
            assert!(now() - start >= MS * 21_000);
        });
    });
}

#[test]
fn timeout_gives_the_value_or_elapsed() {
    bounded("timeout_gives_the_value_or_elapsed", || {
        block_on(async {
            pause();
            // Ready at once: the value, even with a zero timeout.
            assert_eq!(timeout(Duration::ZERO, async { 5 }).await, Ok(5));
            // Finishes first.
            let quick = timeout(MS * 10, async {
                sleep(MS * 3).await;
                "done"
            });
            assert_eq!(quick.await, Ok("done"));
            // Too slow.
            let start = now();
            let slow = timeout_at(start + MS * 10, sleep(MS * 50));
            let err = slow.await.expect_err("the sleep outlasts the timeout");
            assert_eq!(now() - start, MS * 10, "elapsed at the deadline");
            assert_eq!(err.to_string(), "deadline has elapsed");
            let io_err: io::Error = err.into();
            assert_eq!(io_err.kind(), io::ErrorKind::TimedOut);
            assert_eq!(pending_timers(), 0, "the loser's timer is gone");
        });
    });
}

/// Ticks of an interval with a 10 ms period when the task stops ticking for 25 ms
/// after the first tick; as offsets from the start, in ms.
fn ticks_after_a_stall(behavior: MissedTickBehavior) -> Vec<u64> {
    block_on(async {
        pause();
        let start = now();
        let mut ticks = interval(MS * 10);
        ticks.set_missed_tick_behavior(behavior);
        let mut seen = vec![ticks.tick().await];
        sleep(MS * 25).await;
        for _ in 0..3 {
            seen.push(ticks.tick().await);
        }
        seen.iter()
            .map(|t| u64::try_from((*t - start).as_millis()).expect("small"))
            .collect()
    })
}

#[test]
fn each_missed_tick_behavior() {
    bounded("each_missed_tick_behavior", || {
        assert_eq!(
            ticks_after_a_stall(MissedTickBehavior::Burst),
            [0, 10, 20, 30],
            "Burst catches up"
        );
        assert_eq!(
            ticks_after_a_stall(MissedTickBehavior::Delay),
            [0, 10, 35, 45],
            "Delay restarts one period after the late tick"
        );
        assert_eq!(
            ticks_after_a_stall(MissedTickBehavior::Skip),
            [0, 10, 30, 40],
            "Skip drops the missed ticks"
        );
    });
}

#[test]
fn interval_reset_and_stream() {
    bounded("interval_reset_and_stream", || {
        block_on(async {
            use futures_core::Stream;
            pause();
            let start = now();
            let mut ticks = interval_at(start + MS * 5, MS * 10);
            assert_eq!(ticks.tick().await - start, MS * 5, "first tick at `start`");
            sleep(MS * 2).await;
            ticks.reset();
            assert_eq!(
                ticks.tick().await - start,
                MS * 17,
                "one period after reset"
            );
            let mut stream = pin!(ticks);
            let next = poll_fn(|cx| stream.as_mut().poll_next(cx)).await;
            assert_eq!(next.map(|t| t - start), Some(MS * 27), "as a stream");
        });
    });
}

#[test]
fn an_hour_of_paused_sleep_takes_no_real_time() {
    let real = std::time::Instant::now();
    bounded("an_hour_of_paused_sleep_takes_no_real_time", || {
        block_on(async {
            pause();
            let start = now();
            sleep(Duration::from_secs(3600)).await;
            assert_eq!(now() - start, Duration::from_secs(3600));
        });
    });
    assert!(
        real.elapsed() < Duration::from_secs(10),
        "a paused hour took {:?} of real time",
        real.elapsed()
    );
}

#[test]
fn advance_wakes_due_timers_before_the_caller_continues() {
    bounded(
        "advance_wakes_due_timers_before_the_caller_continues",
        || {
            block_on(async {
                pause();
                let woke = Rc::new(RefCell::new(Vec::new()));
                for ms in [5_u32, 10, 30] {
                    let woke = woke.clone();
                    spawn(async move {
                        sleep(MS * ms).await;
                        woke.borrow_mut().push(ms);
                    });
                }
                yield_now().await; // all three sleeps are registered
                advance(MS * 10).await;
                assert_eq!(*woke.borrow(), [5, 10], "after advancing 10 ms");
                advance(MS * 19).await;
                assert_eq!(*woke.borrow(), [5, 10], "29 ms: the 30 ms timer waits");
                advance(MS).await;
                assert_eq!(*woke.borrow(), [5, 10, 30], "after 30 ms");
            });
        },
    );
}

#[test]
fn resumed_clock_never_goes_back() {
    bounded("resumed_clock_never_goes_back", || {
        block_on(async {
            pause();
            let frozen = now();
            advance(Duration::from_secs(60)).await;
            resume();
            let after = now();
            assert!(
                after >= frozen + Duration::from_secs(60),
                "clock went back by {:?}",
                (frozen + Duration::from_secs(60)) - after
            );
            // And real sleeps work again.
            let before = now();
            sleep(MS).await;
            assert!(now() - before >= MS);
        });
    });
}

#[test]
fn pause_misuse_panics_with_clear_messages() {
    let twice = std::panic::catch_unwind(|| {
        block_on(async {
            pause();
            pause();
        })
    });
    let message = crate::test_support::panic_message(&*twice.expect_err("second pause"));
    assert!(message.contains("paused already"), "{message}");
    let not_paused = std::panic::catch_unwind(|| block_on(advance(MS)));
    let message = crate::test_support::panic_message(&*not_paused.expect_err("advance"));
    assert!(message.contains("time::pause"), "{message}");
    let outside = std::panic::catch_unwind(pause);
    let message = crate::test_support::panic_message(&*outside.expect_err("outside"));
    assert!(message.contains("block_on"), "{message}");
}

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn io_wins_the_race_with_a_timeout_and_the_timer_is_gone() -> io::Result<()> {
    bounded(
        "io_wins_the_race_with_a_timeout_and_the_timer_is_gone",
        || {
            block_on(async {
                let (a, mut b) = socket_pair()?;
                let a = AsyncFd::new(a)?;
                a.clear_ready(Direction::Read);
                let writer = std::thread::spawn(move || b.write_all(b"data").map(|()| b));
                let mut buf = [0_u8; 8];
                let n = timeout(Duration::from_secs(30), async {
                    a.io(Direction::Read, |mut s| s.read(&mut buf)).await
                })
                .await
                .expect("data arrives long before 30 s")?;
                assert_eq!(&buf[..n], b"data");
                assert_eq!(pending_timers(), 0, "the timeout's timer outlived it");
                drop(writer.join().expect("writer thread")?);
                Ok(())
            })
        },
    )
}

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn timeout_wins_the_race_with_io_and_the_socket_still_works() -> io::Result<()> {
    bounded(
        "timeout_wins_the_race_with_io_and_the_socket_still_works",
        || {
            block_on(async {
                let (a, mut b) = socket_pair()?;
                let a = AsyncFd::new(a)?;
                a.clear_ready(Direction::Read);
                let mut buf = [0_u8; 8];
                let start = std::time::Instant::now();
                let lost = timeout(MS * 20, a.io(Direction::Read, |mut s| s.read(&mut buf))).await;
                assert!(lost.is_err(), "nothing was written, yet: {lost:?}");
                assert!(
                    start.elapsed() >= MS * 20,
                    "timed out early: {:?}",
                    start.elapsed()
                );
                assert_eq!(pending_timers(), 0);
                // The abandoned read left the fd usable: a new read gets new data.
                b.write_all(b"later")?;
                let n = a.io(Direction::Read, |mut s| s.read(&mut buf)).await?;
                assert_eq!(&buf[..n], b"later");
                Ok(())
            })
        },
    )
}
