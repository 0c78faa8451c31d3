//! [`Sleep`]: a future that completes at a deadline.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{TimerKey, Timers};

/// Waits until `duration` has elapsed.
///
/// Never completes early. The runtime wakes with millisecond granularity (rounded
/// up), so expect up to about a millisecond of lateness plus scheduling delay.
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
///     edgeloop_runtime::time::sleep(Duration::from_millis(5)).await;
///     assert!(start.elapsed() >= Duration::from_millis(5));
/// });
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    // A duration too large to add is as good as forever.
    let deadline = Instant::now()
        .checked_add(duration)
        .unwrap_or_else(far_future);
    sleep_until(deadline)
}

/// Waits until `deadline`.
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

fn far_future() -> Instant {
    // About 30 years: far enough to never fire, near enough to never overflow.
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// Future returned by [`sleep`] and [`sleep_until`]. Dropping it cancels the timer.
#[derive(Debug)]
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

    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            if let Some((timers, key)) = self.entry.take() {
                timers.remove(key);
            }
            return Poll::Ready(());
        }
        match &self.entry {
            Some((timers, key)) => timers.update(*key, cx.waker()),
            None => {
                let timers = crate::context::current_timers().unwrap_or_else(|| {
                    panic!(
                        "`Sleep` polled outside `block_on`; await it inside the future \
                         passed to `edgeloop::block_on`"
                    )
                });
                let key = timers.insert(self.deadline, cx.waker().clone());
                self.entry = Some((timers, key));
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((timers, key)) = self.entry.take() {
            timers.remove(key);
        }
    }
}
