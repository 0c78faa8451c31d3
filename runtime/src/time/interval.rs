//! [`Interval`]: ticks at a fixed period.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use futures_core::Stream;

use super::{Sleep, sleep_until};

/// An interval whose first tick completes at once, then every `period`.
///
/// # Panics
///
/// If `period` is zero.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use edgeloop_runtime::time;
///
/// edgeloop_runtime::block_on(async {
///     time::pause(); // no real waiting in this example
///     let mut ticks = time::interval(Duration::from_secs(10));
///     let first = ticks.tick().await;
///     let second = ticks.tick().await;
///     assert_eq!(second - first, Duration::from_secs(10));
/// });
/// ```
pub fn interval(period: Duration) -> Interval {
    interval_at(super::now(), period)
}

/// An interval whose first tick completes at `start`, then every `period`.
///
/// # Panics
///
/// If `period` is zero.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "`interval` needs a period above zero; a zero period would tick without end"
    );
    Interval {
        sleep: sleep_until(start),
        period,
        missed_tick_behavior: MissedTickBehavior::default(),
    }
}

/// What an [`Interval`] does when a tick is missed: when it is polled so late that
/// the next tick is already due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedTickBehavior {
    /// Catch up: the missed ticks complete back to back, each at its own scheduled
    /// instant, until the interval is on schedule again.
    #[default]
    Burst,
    /// Start over: the next tick comes one period after the late one.
    Delay,
    /// Drop the missed ticks: the next tick is the next one on the original schedule
    /// that is still in the future.
    Skip,
}

impl MissedTickBehavior {
    /// The tick after one scheduled at `scheduled` that completed at `now`.
    fn next(self, scheduled: Instant, now: Instant, period: Duration) -> Instant {
        let on_schedule = scheduled + period;
        if now < on_schedule {
            return on_schedule; // nothing missed
        }
        match self {
            MissedTickBehavior::Burst => on_schedule,
            MissedTickBehavior::Delay => now + period,
            MissedTickBehavior::Skip => {
                let late = now.duration_since(scheduled).as_nanos();
                let periods = late / period.as_nanos() + 1;
                let periods = u32::try_from(periods).unwrap_or(u32::MAX);
                scheduled + period.saturating_mul(periods)
            }
        }
    }
}

/// Ticks at a fixed period; see [`interval`]. Also a [`Stream`] of tick instants.
#[derive(Debug)]
pub struct Interval {
    /// Waits for the next tick; its deadline is that tick's scheduled instant.
    sleep: Sleep,
    /// Time between ticks.
    period: Duration,
    /// What to do after a missed tick.
    missed_tick_behavior: MissedTickBehavior,
}

impl Interval {
    /// Waits for the next tick; returns the instant it was scheduled for.
    pub async fn tick(&mut self) -> Instant {
        poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick; see [`tick`](Self::tick).
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        ready!(Pin::new(&mut self.sleep).poll(cx));
        let scheduled = self.sleep.deadline();
        let next = self
            .missed_tick_behavior
            .next(scheduled, super::now(), self.period);
        Pin::new(&mut self.sleep).reset(next);
        Poll::Ready(scheduled)
    }

    /// Restarts the schedule: the next tick comes one period from now.
    pub fn reset(&mut self) {
        let next = super::now() + self.period;
        Pin::new(&mut self.sleep).reset(next);
    }

    /// The period between ticks.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// What the interval does after a missed tick.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed_tick_behavior
    }

    /// Sets what the interval does after a missed tick.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed_tick_behavior = behavior;
    }
}

impl Stream for Interval {
    type Item = Instant;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Instant>> {
        self.get_mut().poll_tick(cx).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_tick_for_each_behavior() {
        let t0 = Instant::now();
        let p = Duration::from_millis(10);
        let ms = Duration::from_millis;
        for b in [
            MissedTickBehavior::Burst,
            MissedTickBehavior::Delay,
            MissedTickBehavior::Skip,
        ] {
            // On time, or late by less than a period: nothing missed.
            assert_eq!(b.next(t0, t0, p), t0 + p, "{b:?} on time");
            assert_eq!(b.next(t0, t0 + ms(9), p), t0 + p, "{b:?} 9 ms late");
        }
        // 25 ms late with a 10 ms period: ticks at 10 and 20 were missed.
        let now = t0 + ms(25);
        assert_eq!(MissedTickBehavior::Burst.next(t0, now, p), t0 + ms(10));
        assert_eq!(MissedTickBehavior::Delay.next(t0, now, p), t0 + ms(35));
        assert_eq!(MissedTickBehavior::Skip.next(t0, now, p), t0 + ms(30));
        // Exactly one period late: the next tick is due now.
        assert_eq!(MissedTickBehavior::Skip.next(t0, t0 + p, p), t0 + ms(20));
    }
}
