//! Time: [`sleep`], [`timeout`], [`interval`], and a clock that tests can pause.
//!
//! Every runtime has one timer driver (`Timers`): a hierarchical timing wheel with
//! microsecond ticks (`wheel.rs`) and the runtime's clock. The event loop asks it for
//! the next deadline, which becomes the `epoll_pwait2` timeout (nanoseconds; on old
//! kernels `epoll_wait`, rounded up to the millisecond), and fires what has expired
//! after each turn. A runtime with no timer and no ready task sleeps in epoll without
//! a timeout: no periodic wakeups.
//!
//! Timers never fire early: a deadline is rounded *up* to the microsecond tick, the
//! current time *down*, and a [`Sleep`] checks the clock itself before completing.
//!
//! Timers close together share a wakeup: the loop sleeps until the latest deadline
//! that lies within 50 µs of the next one (and within the same
//! 64 µs block of the wheel), so each of them fires at most that much late, never
//! early. A lone timer wakes the loop at its own deadline. With a million timers a
//! second this cuts the wakeups several times over at a small cost in precision
//! (tokio rounds every timer to the millisecond).
//!
//! # The paused clock
//!
//! [`pause`] freezes this runtime's clock. Time then moves only by [`advance`], or,
//! when every task is idle, no I/O event is waiting and no
//! [`spawn_blocking`](crate::spawn_blocking) job is out, by jumping straight to the
//! next timer's deadline, so a test that sleeps an hour finishes at once. Read the
//! clock with [`now`] (not `Instant::now()`, which keeps running).
//!
//! Who calls it: `runtime.rs` (next deadline, fire, auto-advance); [`Sleep`] and the
//! types built on it (insert, reschedule, remove).

mod interval;
mod sleep;
mod timeout;
mod wheel;

pub use interval::{Interval, MissedTickBehavior, interval, interval_at};
pub use sleep::{Sleep, sleep, sleep_until};
pub use timeout::{Elapsed, Timeout, timeout, timeout_at};

pub(crate) use wheel::TimerKey;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;
use std::time::{Duration, Instant};

use wheel::{MAX_TICK, Wheel};

/// How late a timer may fire so that it shares the wakeup of an earlier one (see
/// the module docs).
const WAKEUP_SLACK_MICROS: u64 = 50;

/// One runtime's timers and clock.
#[derive(Debug)]
pub(crate) struct Timers {
    /// Pending timers.
    wheel: RefCell<Wheel>,
    /// The instant of tick 0.
    base: Instant,
    /// The frozen time while the clock is paused.
    paused: Cell<Option<Instant>>,
    /// How far the clock runs ahead of `Instant::now()`: what `advance` and
    /// auto-advance added while paused, kept after `resume` so time never goes back.
    offset: Cell<Duration>,
    /// Buffer for the wakers of one `fire`; kept to avoid an allocation per turn.
    fired: RefCell<Vec<Waker>>,
    /// Timers fired so far.
    fired_total: Cell<u64>,
    /// Timers added so far.
    armed_total: Cell<u64>,
    /// Timers removed before they fired so far.
    cancelled_total: Cell<u64>,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Timers {
            wheel: RefCell::new(Wheel::default()),
            base: Instant::now(),
            paused: Cell::new(None),
            offset: Cell::new(Duration::ZERO),
            fired: RefCell::new(Vec::new()),
            fired_total: Cell::new(0),
            armed_total: Cell::new(0),
            cancelled_total: Cell::new(0),
        }
    }

    /// Freezes the clock.
    pub(crate) fn pause(&self) {
        // Frozen on a whole tick (rounded up, so time does not go back): deadlines of
        // whole microseconds from it are exact ticks, and auto-advance lands on them
        // exactly.
        let tick = self.tick_ceil(self.now());
        self.paused
            .set(Some(self.base + Duration::from_micros(tick)));
    }

    /// Copies the timers' counters into `m`.
    pub(crate) fn fill_metrics(&self, m: &mut crate::RuntimeMetrics) {
        m.timers_pending = self.len();
        m.timers_armed = self.armed_total.get();
        m.timers_fired = self.fired_total.get();
        m.timers_cancelled = self.cancelled_total.get();
    }

    /// This runtime's time: the real clock, or the frozen one while paused.
    pub(crate) fn now(&self) -> Instant {
        self.paused
            .get()
            .unwrap_or_else(|| Instant::now() + self.offset.get())
    }

    /// The tick of `deadline`, rounded up: a timer must not fire before it.
    #[inline]
    fn tick_ceil(&self, deadline: Instant) -> u64 {
        let d = deadline.saturating_duration_since(self.base);
        // No u128 arithmetic: this runs for every timer.
        let us = u64::from(d.subsec_nanos().div_ceil(1000));
        d.as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(us)
            .min(MAX_TICK)
    }

    /// The tick of `now`, rounded down: only what is due by then fires.
    fn tick_floor(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.base);
        d.as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros()))
            .min(MAX_TICK)
    }

    /// Adds a timer for `waker`, unless `deadline` had passed when the timers were
    /// last fired (each loop turn): then `None`, and the sleep is over without a
    /// clock read.
    #[inline]
    pub(crate) fn insert_unless_passed(
        &self,
        deadline: Instant,
        waker: &Waker,
    ) -> Option<TimerKey> {
        let tick = self.tick_ceil(deadline);
        if self.wheel.borrow().len() == 0 {
            // `fire` skips an empty wheel (no clock read), so its "now" may be old:
            // bring it up to date before comparing. Nothing is pending, so nothing
            // fires.
            let now = self.tick_floor(self.now());
            self.wheel.borrow_mut().advance(now, &mut Vec::new());
        }
        if tick <= self.wheel.borrow().elapsed() {
            return None;
        }
        // Cloned outside the borrow: a foreign waker's clone may run arbitrary code.
        let waker = waker.clone();
        self.armed_total.set(self.armed_total.get() + 1);
        Some(self.wheel.borrow_mut().insert(tick, waker))
    }

    /// Whether the timer `key` is still pending (not fired, not removed).
    pub(crate) fn is_pending(&self, key: TimerKey) -> bool {
        self.wheel.borrow().contains(key)
    }

    /// Makes the pending timer `key` wake `waker`'s task.
    pub(crate) fn update_waker(&self, key: TimerKey, waker: &Waker) {
        if self.wheel.borrow().will_wake(key, waker) {
            return;
        }
        // Cloned, and the old waker dropped, outside the borrow: a foreign waker's
        // clone or drop may run arbitrary code.
        let new = waker.clone();
        let old = self.wheel.borrow_mut().set_waker(key, new);
        drop(old);
    }

    /// Moves the timer `key` to `deadline`; false if it is no longer pending.
    pub(crate) fn reschedule(&self, key: TimerKey, deadline: Instant) -> bool {
        let tick = self.tick_ceil(deadline);
        self.wheel.borrow_mut().reschedule(key, tick)
    }

    /// Cancels a timer and frees its entry.
    #[inline]
    pub(crate) fn remove(&self, key: TimerKey) {
        let waker = self.wheel.borrow_mut().remove(key);
        if waker.is_some() {
            self.cancelled_total.set(self.cancelled_total.get() + 1);
        }
        // Dropped outside the borrow: a foreign waker's drop may run arbitrary code.
        drop(waker);
    }

    /// When the loop must next look at the timers (at or before the earliest
    /// deadline); `None` without timers.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let tick = self.wheel.borrow().next_wakeup(WAKEUP_SLACK_MICROS)?;
        Some(self.base + Duration::from_micros(tick))
    }

    /// Whether a timer is due by now (exactly, without the wakeup slack).
    pub(crate) fn has_due(&self) -> bool {
        let now = self.tick_floor(self.now());
        self.wheel
            .borrow()
            .next_expiration()
            .is_some_and(|tick| tick <= now)
    }

    /// Wakes every timer due by now, in deadline order; returns how many. Without
    /// pending timers it returns at once, without reading the clock: an I/O-only
    /// loop pays nothing for time.
    pub(crate) fn fire(&self) -> usize {
        if self.wheel.borrow().len() == 0 {
            return 0;
        }
        let now = self.tick_floor(self.now());
        // Also when nothing is due: moving `elapsed` up is what lets new sleeps
        // decide "over already" without reading the clock.
        let mut fired = std::mem::take(&mut *self.fired.borrow_mut());
        self.wheel.borrow_mut().advance(now, &mut fired);
        let count = fired.len();
        self.fired_total.set(self.fired_total.get() + count as u64);
        for waker in fired.drain(..) {
            waker.wake();
        }
        *self.fired.borrow_mut() = fired;
        count
    }

    /// Number of pending timers.
    pub(crate) fn len(&self) -> usize {
        self.wheel.borrow().len()
    }

    /// Drops every pending timer (at shutdown).
    pub(crate) fn clear(&self) {
        let wheel = std::mem::take(&mut *self.wheel.borrow_mut());
        drop(wheel);
    }

    /// Whether the clock is paused.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.get().is_some()
    }

    /// With the clock paused and nothing else to do: jumps to the next deadline.
    pub(crate) fn auto_advance(&self) {
        // To the exact next deadline: a paused clock has no wakeups to save.
        let next = self.wheel.borrow().next_expiration();
        let next = next.map(|tick| self.base + Duration::from_micros(tick));
        if let (Some(now), Some(next)) = (self.paused.get(), next) {
            self.paused.set(Some(now.max(next)));
        }
    }
}

fn current() -> Rc<Timers> {
    crate::context::current_timers().unwrap_or_else(|| {
        panic!(
            "a time function was called outside `block_on`; call it inside the future \
             passed to `edgeloop::block_on`"
        )
    })
}

/// The current runtime's time: `Instant::now()`, or the frozen time while the clock
/// is [paused](pause). Outside a runtime, `Instant::now()`.
pub fn now() -> Instant {
    crate::context::current_timers().map_or_else(Instant::now, |t| t.now())
}

/// Freezes the current runtime's clock, for tests. While paused, time moves only by
/// [`advance`], or jumps to the next timer's deadline when every task is idle, no
/// I/O event is waiting and no [`spawn_blocking`](crate::spawn_blocking) job is out. The clock stays paused until [`resume`] or the end of the
/// runtime.
///
/// # Panics
///
/// Outside `block_on`, or if the clock is paused already.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use edgeloop_runtime::time;
///
/// edgeloop_runtime::block_on(async {
///     time::pause();
///     let start = time::now();
///     time::sleep(Duration::from_secs(3600)).await; // returns at once
///     assert_eq!(time::now() - start, Duration::from_secs(3600));
/// });
/// ```
pub fn pause() {
    let timers = current();
    assert!(
        !timers.is_paused(),
        "`time::pause` called while the clock is paused already"
    );
    timers.pause();
}

/// Lets the current runtime's clock run again from where it stands (it never goes
/// back, even after [`advance`]); timers keep their deadlines.
///
/// # Panics
///
/// Outside `block_on`, or if the clock is not paused.
pub fn resume() {
    let timers = current();
    let frozen = timers
        .paused
        .take()
        .unwrap_or_else(|| panic!("`time::resume` called while the clock is not paused"));
    timers
        .offset
        .set(frozen.saturating_duration_since(Instant::now()));
}

/// Moves the paused clock forward by `duration`, wakes the timers that became due,
/// and yields so that they run before the caller continues.
///
/// # Panics
///
/// Outside `block_on`, or if the clock is not paused (call [`pause`] first).
pub async fn advance(duration: Duration) {
    let timers = current();
    let now = timers.paused.get().unwrap_or_else(|| {
        panic!("`time::advance` needs a paused clock; call `time::pause` first")
    });
    timers.paused.set(Some(now + duration));
    timers.fire();
    crate::yield_now().await;
}

#[cfg(test)]
mod tests;
