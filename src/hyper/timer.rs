//! [`HyperTimer`] and its `Send + Sync` [`HyperSleep`], on edgeloop's timers.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ::hyper::rt::{Sleep as HyperSleepTrait, Timer};

/// A [`hyper::rt::Timer`] on edgeloop's timers: give it to a builder's `.timer(...)`
/// and `header_read_timeout` (HTTP/1 servers), keep-alive and other timeouts work.
///
/// Its sleeps are [`HyperSleep`]s, its clock is [`time::now`](crate::time::now), and
/// `reset` moves a pending timer in the wheel instead of allocating a new one.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use edgeloop::hyper::HyperTimer;
/// use hyper::rt::Timer;
///
/// edgeloop::block_on(async {
///     edgeloop::time::pause();
///     let start = HyperTimer.now();
///     HyperTimer.sleep(Duration::from_secs(30)).await; // no real time passes
///     assert_eq!(HyperTimer.now() - start, Duration::from_secs(30));
/// });
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HyperTimer;

impl Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn HyperSleepTrait>> {
        let now = crate::time::now();
        // A duration too large to add is as good as forever (about 30 years).
        let deadline = now
            .checked_add(duration)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
        Box::pin(HyperSleep::until(deadline))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn HyperSleepTrait>> {
        Box::pin(HyperSleep::until(deadline))
    }

    fn now(&self) -> Instant {
        crate::time::now()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn HyperSleepTrait>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(ours) => ours.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// The `Send + Sync` sleep of [`HyperTimer`]: an edgeloop
/// [`Sleep`](crate::time::Sleep) kept on the thread that polls it (see the
/// [module docs](super) for why and how).
///
/// # Panics
///
/// Polled, or [`reset`](Self::reset) once polled, on a thread other than the one
/// that first polled it; polled outside [`block_on`](crate::block_on).
pub struct HyperSleep {
    /// When it completes.
    deadline: Instant,
    /// Where its edgeloop timer lives, once polled.
    ticket: Option<Ticket>,
}

/// A slot in one thread's [`SleepTable`].
#[derive(Debug, Clone, Copy)]
struct Ticket {
    /// The thread's number ([`SleepTable::thread`]).
    thread: u64,
    /// The slot.
    slot: usize,
}

impl HyperSleep {
    /// A sleep that completes at `deadline` on the runtime's clock
    /// ([`time::now`](crate::time::now)). Nothing is registered until it is polled.
    pub fn until(deadline: Instant) -> Self {
        HyperSleep {
            deadline,
            ticket: None,
        }
    }

    /// When it completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline, earlier or later; a pending timer is moved in the wheel and
    /// wakes its task at the new deadline.
    ///
    /// # Panics
    ///
    /// Once polled, on a thread other than the one that polled it.
    pub fn reset(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if let Some(ticket) = self.ticket {
            let mut sleep = SleepTable::take(ticket, "reset");
            // Outside the table's borrow, as every use of an edgeloop `Sleep` here.
            Pin::new(&mut sleep).reset(deadline);
            SleepTable::put_back(ticket, sleep);
        }
    }
}

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let (ticket, mut sleep) = match this.ticket {
            Some(ticket) => (Some(ticket), SleepTable::take(ticket, "polled")),
            None => (None, crate::time::sleep_until(this.deadline)),
        };
        // Outside the table's borrow: polling may drop a waker, and a foreign waker's
        // drop may run code that drops another `HyperSleep`.
        let polled = Pin::new(&mut sleep).poll(cx);
        match (polled, ticket) {
            (Poll::Pending, Some(ticket)) => SleepTable::put_back(ticket, sleep),
            (Poll::Pending, None) => this.ticket = Some(SleepTable::insert(sleep)),
            (Poll::Ready(()), Some(ticket)) => {
                this.ticket = None;
                SleepTable::free(ticket);
            }
            (Poll::Ready(()), None) => {}
        }
        polled
    }
}

impl HyperSleepTrait for HyperSleep {}

impl Drop for HyperSleep {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            // Cancels the timer, outside the table's borrow.
            drop(SleepTable::release(ticket));
        }
    }
}

impl fmt::Debug for HyperSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperSleep")
            .field("deadline", &self.deadline)
            .field("registered", &self.ticket.is_some())
            .finish()
    }
}

/// Numbers threads for [`Ticket`]s (never reused; 0 means "not numbered yet").
static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

/// The edgeloop `Sleep`s of this thread's polled [`HyperSleep`]s.
///
/// # Invariant
///
/// A slot is in `free` or held by exactly one `HyperSleep`'s ticket. A held slot is
/// `None` only while its owner has taken the `Sleep` out to use it, never across a
/// call into code outside this module; the `RefCell` is borrowed only for the
/// table's own bookkeeping (no `Sleep` is polled, reset or dropped inside a borrow).
struct SleepTable {
    /// This thread's number, set at first use.
    thread: u64,
    slots: Vec<Option<crate::time::Sleep>>,
    free: Vec<usize>,
}

thread_local! {
    static SLEEPS: RefCell<SleepTable> = const {
        RefCell::new(SleepTable { thread: 0, slots: Vec::new(), free: Vec::new() })
    };
}

impl SleepTable {
    /// This thread's number.
    fn thread(&mut self) -> u64 {
        if self.thread == 0 {
            self.thread = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
        }
        self.thread
    }

    /// Stores a polled edgeloop `Sleep` in a slot of this thread's table.
    fn insert(sleep: crate::time::Sleep) -> Ticket {
        SLEEPS.with_borrow_mut(|table| {
            let thread = table.thread();
            let slot = match table.free.pop() {
                Some(slot) => {
                    table.slots[slot] = Some(sleep);
                    slot
                }
                None => {
                    table.slots.push(Some(sleep));
                    table.slots.len() - 1
                }
            };
            Ticket { thread, slot }
        })
    }

    /// Takes the `Sleep` of `ticket` out of its slot (the slot stays held).
    fn take(ticket: Ticket, what: &str) -> crate::time::Sleep {
        let sleep = SLEEPS.with_borrow_mut(|table| {
            assert!(
                table.thread() == ticket.thread,
                "a `HyperSleep` was {what} on a thread other than the one that first polled \
                 it: its edgeloop timer belongs to that thread's runtime (serve hyper \
                 connections that use `HyperTimer` on the edgeloop thread that polls them)"
            );
            table.slots[ticket.slot].take()
        });
        // Empty only if an earlier use panicked with the `Sleep` taken out.
        sleep.unwrap_or_else(|| panic!("a `HyperSleep` was {what} after a panic in its last use"))
    }

    /// Releases the slot of a dropped `HyperSleep` and returns its `Sleep`, to be
    /// dropped outside the borrow; on another thread, does nothing (the slot stays
    /// held until this thread ends: see the module docs).
    fn release(ticket: Ticket) -> Option<crate::time::Sleep> {
        SLEEPS.with_borrow_mut(|table| {
            if table.thread() != ticket.thread {
                return None;
            }
            table.free.push(ticket.slot);
            table.slots[ticket.slot].take()
        })
    }

    /// Puts a taken `Sleep` back.
    fn put_back(ticket: Ticket, sleep: crate::time::Sleep) {
        SLEEPS.with_borrow_mut(|table| table.slots[ticket.slot] = Some(sleep));
    }

    /// Releases a slot whose `Sleep` was taken out.
    fn free(ticket: Ticket) {
        SLEEPS.with_borrow_mut(|table| table.free.push(ticket.slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `sleep` once inside the runtime.
    async fn poll_once(sleep: &mut Pin<Box<dyn HyperSleepTrait>>) -> Poll<()> {
        std::future::poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx))).await
    }

    fn held_slots() -> usize {
        SLEEPS.with_borrow(|table| table.slots.len() - table.free.len())
    }

    #[test]
    fn sleeps_fire_at_their_deadline_and_free_their_slots() {
        crate::block_on(async {
            crate::time::pause();
            let start = crate::time::now();
            let mut sleep = HyperTimer.sleep(Duration::from_secs(10));
            assert!(poll_once(&mut sleep).await.is_pending());
            assert_eq!(held_slots(), 1);
            sleep.await;
            assert_eq!(crate::time::now() - start, Duration::from_secs(10));
            assert_eq!(held_slots(), 0);
        });
    }

    #[test]
    fn reset_moves_a_pending_timer_earlier_and_later() {
        crate::block_on(async {
            crate::time::pause();
            let start = crate::time::now();
            let mut sleep = HyperTimer.sleep(Duration::from_secs(10));
            assert!(poll_once(&mut sleep).await.is_pending());
            HyperTimer.reset(&mut sleep, start + Duration::from_secs(3));
            sleep.as_mut().await;
            assert_eq!(crate::time::now() - start, Duration::from_secs(3));
            // Reset after it fired: it waits again, for the new deadline.
            HyperTimer.reset(&mut sleep, start + Duration::from_secs(20));
            assert!(poll_once(&mut sleep).await.is_pending());
            sleep.await;
            assert_eq!(crate::time::now() - start, Duration::from_secs(20));
            assert_eq!(held_slots(), 0);
        });
    }

    #[test]
    fn dropping_a_pending_sleep_cancels_it_and_frees_its_slot() {
        crate::block_on(async {
            let slots_before = held_slots();
            let mut sleeps: Vec<_> = (1..=5)
                .map(|s| HyperTimer.sleep(Duration::from_secs(s)))
                .collect();
            for sleep in &mut sleeps {
                assert!(poll_once(sleep).await.is_pending());
            }
            assert_eq!(held_slots(), slots_before + 5);
            drop(sleeps);
            assert_eq!(held_slots(), slots_before);
        });
    }

    #[test]
    fn a_passed_deadline_is_ready_at_once_without_a_slot() {
        crate::block_on(async {
            let mut sleep = HyperTimer.sleep_until(crate::time::now() - Duration::from_millis(1));
            assert!(poll_once(&mut sleep).await.is_ready());
            assert_eq!(held_slots(), 0);
        });
    }

    #[test]
    #[expect(
        clippy::async_yields_async,
        reason = "the sleep is handed out of the runtime on purpose"
    )]
    fn polling_on_another_thread_panics_and_says_why() {
        let mut sleep = crate::block_on(async {
            let mut sleep = HyperTimer.sleep(Duration::from_secs(60));
            assert!(poll_once(&mut sleep).await.is_pending());
            sleep
        });
        let message = std::thread::spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::block_on(async { poll_once(&mut sleep).await })
            }));
            // Dropped here, on the wrong thread: its slot stays taken, nothing breaks.
            drop(sleep);
            let payload = result.expect_err("polling on another thread must panic");
            payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default()
        })
        .join()
        .expect("the thread itself does not panic");
        assert!(
            message.contains("on a thread other than the one that first polled it"),
            "{message}"
        );
    }

    #[test]
    fn hyper_sleep_is_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<HyperSleep>();
        send_sync::<HyperTimer>();
        send_sync::<crate::hyper::HyperExecutor>();
    }
}
