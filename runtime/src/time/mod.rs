//! Timers: a deadline-ordered map from `(deadline, id)` to the waker of the
//! [`Sleep`] waiting for it. The event loop asks it for the next deadline (its
//! `epoll_wait` timeout) and fires what has expired after each turn.
//!
//! Timers never fire early: `epoll_wait` timeouts are rounded up, and a `Sleep`
//! checks the clock itself before it completes.
//!
//! Who calls it: `runtime.rs` (next deadline, fire); [`Sleep`] (insert, remove).

mod sleep;

pub use sleep::{Sleep, sleep, sleep_until};

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::task::Waker;
use std::time::Instant;

/// Key of one timer entry; the id breaks ties between equal deadlines.
pub(crate) type TimerKey = (Instant, u64);

/// The pending timers of one runtime.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// Pending timers, earliest first.
    entries: RefCell<BTreeMap<TimerKey, Waker>>,
    /// Next tie-breaking id.
    next_id: Cell<u64>,
    /// Buffer for the wakers of one `fire`; kept to avoid an allocation per turn.
    expired: RefCell<Vec<Waker>>,
}

impl Timers {
    /// Adds a timer; returns the key to update or remove it with.
    pub(crate) fn insert(&self, deadline: Instant, waker: Waker) -> TimerKey {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        self.entries.borrow_mut().insert((deadline, id), waker);
        (deadline, id)
    }

    /// Replaces the waker of a pending timer; re-inserts it if it fired meanwhile.
    pub(crate) fn update(&self, key: TimerKey, waker: &Waker) {
        let stored = self
            .entries
            .borrow()
            .get(&key)
            .is_some_and(|w| w.will_wake(waker));
        if stored {
            return;
        }
        // Cloned, and the old one dropped, outside the borrow: a foreign waker's
        // clone or drop may run arbitrary code.
        let old = self.entries.borrow_mut().insert(key, waker.clone());
        drop(old);
    }

    /// Removes a timer (a dropped or completed `Sleep`).
    pub(crate) fn remove(&self, key: TimerKey) {
        let waker = self.entries.borrow_mut().remove(&key);
        // Dropped outside the borrow: a foreign waker's drop may run arbitrary code.
        drop(waker);
    }

    /// The earliest pending deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.entries
            .borrow()
            .first_key_value()
            .map(|((d, _), _)| *d)
    }

    /// Wakes and removes every timer whose deadline is at or before `now`.
    pub(crate) fn fire(&self, now: Instant) {
        let mut expired = std::mem::take(&mut *self.expired.borrow_mut());
        {
            let mut entries = self.entries.borrow_mut();
            while let Some(entry) = entries.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                expired.push(entry.remove());
            }
        }
        for waker in expired.drain(..) {
            waker.wake();
        }
        *self.expired.borrow_mut() = expired;
    }

    /// Number of pending timers.
    pub(crate) fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// Drops every pending timer's waker (at shutdown).
    pub(crate) fn clear(&self) {
        let entries = std::mem::take(&mut *self.entries.borrow_mut());
        drop(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn fire_wakes_expired_in_deadline_order_only() {
        let timers = Timers::default();
        let base = Instant::now();
        let (early, w_early) = counter();
        let (late, w_late) = counter();
        timers.insert(base + Duration::from_millis(20), w_late);
        timers.insert(base + Duration::from_millis(10), w_early);
        assert_eq!(
            timers.next_deadline(),
            Some(base + Duration::from_millis(10))
        );
        timers.fire(base + Duration::from_millis(9));
        assert_eq!(early.0.load(Ordering::SeqCst), 0, "fired 1 ms early");
        timers.fire(base + Duration::from_millis(10));
        assert_eq!(early.0.load(Ordering::SeqCst), 1);
        assert_eq!(late.0.load(Ordering::SeqCst), 0);
        assert_eq!(timers.len(), 1);
        timers.fire(base + Duration::from_millis(30));
        assert_eq!(late.0.load(Ordering::SeqCst), 1);
        timers.fire(base + Duration::from_millis(40));
        assert_eq!(
            late.0.load(Ordering::SeqCst),
            1,
            "a fired timer fired twice"
        );
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn removed_timer_never_fires() {
        let timers = Timers::default();
        let base = Instant::now();
        let (c, w) = counter();
        let key = timers.insert(base, w);
        timers.remove(key);
        timers.fire(base + Duration::from_secs(1));
        assert_eq!(c.0.load(Ordering::SeqCst), 0);
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn equal_deadlines_are_distinct_entries() {
        let timers = Timers::default();
        let at = Instant::now();
        let (a, wa) = counter();
        let (b, wb) = counter();
        timers.insert(at, wa);
        timers.insert(at, wb);
        assert_eq!(timers.len(), 2);
        timers.fire(at);
        assert_eq!(
            (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
            (1, 1)
        );
    }
}
