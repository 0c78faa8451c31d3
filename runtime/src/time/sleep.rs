//! [`Sleep`]: a future that completes at a deadline.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{TimerKey, Timers};

/// Waits until `duration` has elapsed on the runtime's clock.
///
/// Never completes early. The timer has microsecond resolution; the wakeup comes
/// from `epoll_pwait2` with a nanosecond timeout, so lateness is the kernel's
/// scheduling delay (tens of microseconds), not a rounded-up millisecond.
///
/// # Panics
///
/// When polled outside [`block_on`](crate::block_on).
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// edgeloop_runtime::block_on(async {
///     let start = Instant::now();
///     edgeloop_runtime::time::sleep(Duration::from_micros(300)).await;
///     assert!(start.elapsed() >= Duration::from_micros(300));
/// });
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    // A duration too large to add is as good as forever.
    let deadline = super::now()
        .checked_add(duration)
        .unwrap_or_else(far_future);
    sleep_until(deadline)
}

/// Waits until `deadline` on the runtime's clock (see [`now`](super::now)). A
/// deadline that passed before the event loop's last turn completes at the first
/// poll; a later one (as with `sleep(Duration::ZERO)`) at the loop's next turn.
///
/// # Panics
///
/// When polled outside [`block_on`](crate::block_on).
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        entry: None,
    }
}

pub(super) fn far_future() -> Instant {
    // About 30 years: far enough to never fire, near enough to never overflow.
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// Future returned by [`sleep`] and [`sleep_until`]. Dropping it cancels the timer
/// and frees its entry at once.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Sleep {
    /// When it completes.
    deadline: Instant,
    /// The runtime's timers and this sleep's key there, once polled.
    entry: Option<(Rc<Timers>, TimerKey)>,
}

impl Sleep {
    /// The instant at which this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed on the runtime's clock.
    pub fn is_elapsed(&self) -> bool {
        super::now() >= self.deadline
    }

    /// Moves the deadline, earlier or later. A task already waiting on this sleep is
    /// woken at the new deadline without polling it again.
    pub fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.deadline = deadline;
        if let Some((timers, key)) = &self.entry
            && !timers.reschedule(*key, deadline)
        {
            self.entry = None; // it fired already; the next poll adds it again
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The cooperative budget (see `coop`): a sleep that is over still yields
        // when the task has used up its budget.
        if crate::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        let polled = self.poll_timer(cx);
        if polled.is_ready() {
            crate::coop::spend();
        }
        polled
    }
}

impl Sleep {
    fn poll_timer(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let current = crate::context::current_timers().unwrap_or_else(|| {
            panic!(
                "`Sleep` polled outside `block_on`; await it inside the future passed to \
                 `edgeloop::block_on`"
            )
        });
        let deadline = self.deadline;
        if let Some((timers, key)) = &mut self.entry
            && Rc::ptr_eq(timers, &current)
        {
            // Registered here: the wheel fires the timer when it is due and never
            // before, so no clock read is needed. A key that is no longer pending
            // fired (only this sleep removes or moves its own timer).
            if timers.is_pending(*key) {
                timers.update_waker(*key, cx.waker());
                return Poll::Pending;
            }
            self.entry = None;
            return Poll::Ready(());
        }
        // First poll, or first poll in this runtime (a timer left in an earlier
        // runtime's wheel would never fire).
        if let Some((old, key)) = self.entry.take() {
            old.remove(key);
        }
        // Compared with the time of the loop's last turn, not the clock: a deadline
        // that passed since then (`sleep(ZERO)`, say) is simply fired by the wheel
        // at the next turn, which saves a clock read per timer.
        match current.insert_unless_passed(deadline, cx.waker()) {
            None => Poll::Ready(()),
            Some(key) => {
                self.entry = Some((current, key));
                Poll::Pending
            }
        }
    }
}

impl std::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("registered", &self.entry.is_some())
            .finish()
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((timers, key)) = self.entry.take() {
            timers.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;
    use crate::test_support::{bounded, panic_message};
    use std::future::poll_fn;
    use std::panic::catch_unwind;

    /// Polls `sleep` exactly once, inside the current runtime.
    async fn poll_once(sleep: &mut Pin<Box<Sleep>>) -> Poll<()> {
        poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx))).await
    }

    fn pending_timers() -> usize {
        crate::context::current_timers()
            .expect("inside block_on")
            .len()
    }

    #[test]
    fn sleep_never_fires_early() {
        bounded("sleep_never_fires_early", || {
            block_on(async {
                for ms in [1, 3, 10] {
                    let wanted = Duration::from_millis(ms);
                    let start = Instant::now();
                    sleep(wanted).await;
                    let took = start.elapsed();
                    assert!(took >= wanted, "sleep({wanted:?}) returned after {took:?}");
                    assert!(
                        took < wanted + Duration::from_secs(5),
                        "sleep({wanted:?}) took {took:?}"
                    );
                }
                assert_eq!(pending_timers(), 0, "timers left after completed sleeps");
            });
        });
    }

    #[test]
    fn dropping_a_pending_sleep_removes_its_timer() {
        bounded("dropping_a_pending_sleep_removes_its_timer", || {
            block_on(async {
                let mut s = Box::pin(sleep(Duration::from_secs(60)));
                assert!(poll_once(&mut s).await.is_pending());
                assert_eq!(pending_timers(), 1, "timers while the sleep waits");
                drop(s);
                assert_eq!(pending_timers(), 0, "timers after the sleep was dropped");
            });
        });
    }

    #[test]
    #[expect(
        clippy::async_yields_async,
        reason = "the sleep is returned on purpose, to be awaited in the next runtime"
    )]
    fn sleep_first_polled_in_an_earlier_runtime_fires_in_the_next() {
        bounded(
            "sleep_first_polled_in_an_earlier_runtime_fires_in_the_next",
            || {
                // Under Miri, whose clock advances 5 µs per interpreted basic block,
                // starting the second runtime alone takes longer than 20 ms.
                let period = Duration::from_millis(if cfg!(miri) { 20_000 } else { 20 });
                let mut s = block_on(async {
                    let mut s = Box::pin(sleep(period));
                    assert!(poll_once(&mut s).await.is_pending());
                    s
                });
                let start = Instant::now();
                block_on(async {
                    assert!(poll_once(&mut s).await.is_pending(), "fired at once");
                    assert_eq!(pending_timers(), 1, "the sleep moved into this runtime");
                    s.await;
                });
                let bound =
                    Duration::from_secs(5) + if cfg!(miri) { period } else { Duration::ZERO };
                assert!(start.elapsed() < bound, "took {:?}", start.elapsed());
            },
        );
    }

    #[test]
    fn sleep_polled_outside_block_on_panics_with_a_clear_message() {
        let mut s = Box::pin(sleep(Duration::from_secs(1)));
        let waker = std::task::Waker::noop();
        let result = catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.as_mut().poll(&mut Context::from_waker(waker))
        }));
        let payload = result.expect_err("polling outside block_on must panic");
        let message = panic_message(&*payload);
        assert!(message.contains("block_on"), "panic message: {message}");
    }
}
