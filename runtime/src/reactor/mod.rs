//! The epoll reactor: one epoll instance and a table of registrations.
//!
//! The reactor knows fds and wakers, nothing of tasks. Its whole contract with the
//! executor is to store a [`Waker`] per direction and call `wake()` on it.
//!
//! # Readiness with `EPOLLET | EPOLLONESHOT`
//!
//! - An fd is added once (`EPOLL_CTL_ADD`) with `EPOLLET|EPOLLONESHOT|EPOLLRDHUP` and
//!   no direction: a new registration is assumed ready both ways, so the first syscall
//!   is tried optimistically. Re-arms carry `EPOLLRDHUP` only with `EPOLLIN`.
//! - When a syscall says `EAGAIN`, the caller clears that direction
//!   ([`Registration::clear_ready`]) and polls it ([`Registration::poll_ready`]), which
//!   stores the waker and, if the kernel is not already armed for that direction,
//!   re-arms with `EPOLL_CTL_MOD` for the union of directions that have waiters. MOD
//!   re-checks the file's state, so data that arrived in between still gives an event.
//! - Each direction keeps a list of waiters (deduplicated with `will_wake`), so two
//!   tasks accepting on one listener, or a reader and a writer, never steal each
//!   other's wakeups.
//! - An event disarms the fd in the kernel. The reactor records readiness, wakes the
//!   directions that became ready and, if the other direction still has waiters,
//!   re-arms for it at once.
//! - With [`Builder::oneshot(false)`](crate::Builder::oneshot) (an experiment that
//!   measures what ONESHOT costs) an fd is added once with
//!   `EPOLLET|EPOLLIN|EPOLLOUT|EPOLLRDHUP` and never modified: `armed` is both
//!   directions for good, so nothing above ever re-arms. The readiness rules are the
//!   same; an edge for a direction nobody waits on just sets its readiness.
//! - `EPOLLHUP` and `EPOLLERR` make both directions ready, so each waiter sees EOF or
//!   the error from its next syscall. `EPOLLRDHUP` (the peer shut down its write side)
//!   makes only the read direction ready but wakes both: a writer then finds out for
//!   itself whether it can still write. Were RDHUP to mark writes ready, a writer
//!   blocked on a full buffer to a half-closed peer would spin.
//! - Those conditions last: after RDHUP (or HUP) a read gives EOF for good, after
//!   HUP a write fails for good. So they make their direction ready *for good*
//!   (`Slot::closed`): clearing it (an `EAGAIN`, a short read that drained the last
//!   bytes before the EOF) leaves it ready. Without that, a short read that took
//!   the last data after a FIN already reported would wait for an edge that never
//!   comes (with ONESHOT it would cost a re-arm that reports the FIN again).
//! - A registration made with [`register_deferred`](Reactor::register_deferred) (what
//!   [`AsyncFd::new_deferred`](super::AsyncFd::new_deferred) uses, e.g. for accepted
//!   sockets) takes a slot without any syscall. Its first arm is the
//!   `EPOLL_CTL_ADD` (with the directions wanted, like a MOD would carry), so a
//!   connection whose first read finds data costs no epoll call until it has to
//!   wait, and one that never waits costs none at all (no ADD, no DEL).
//! - The token in `epoll_event.u64` is `generation << 32 | slot`. A slot released and
//!   reused gets a new generation, so an event queued for the old fd wakes nobody.
//!
//! Who calls it: `runtime.rs` turns the reactor once per loop iteration
//! ([`Reactor::turn`]); `net` and users reach it through [`AsyncFd`].

mod async_fd;
mod fd_release;
mod registration;

pub use async_fd::AsyncFd;
pub use fd_release::wait_for_fd_release;
pub use registration::Direction;
pub(crate) use registration::Registration;

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::task::Waker;
use std::time::Duration;

use crate::sys::epoll::{self, Event, Op};

/// Bit in [`Slot::ready`]: the read direction is ready.
const READ: u8 = 0b01;
/// Bit in [`Slot::ready`]: the write direction is ready.
const WRITE: u8 = 0b10;

/// Token of the cross-thread notifier (the eventfd); never a slot token, because slot
/// indices are below `u32::MAX`.
const NOTIFY_TOKEN: u64 = u64::MAX;

/// Flags every arm carries, whatever its directions.
const BASE_FLAGS: u32 = epoll::ET | epoll::ONESHOT;

/// The `epoll_ctl` event mask for the directions in `want` (`EPOLLIN`/`EPOLLOUT`).
///
/// RDHUP only with IN: it is a read-side condition, and the kernel reports it on
/// every re-arm once the peer has shut down, so asking for it on a write-only arm
/// would wake a blocked writer in a loop.
fn arm_mask(want: u32) -> u32 {
    let rdhup = if want & epoll::IN != 0 {
        epoll::RDHUP
    } else {
        0
    };
    want | rdhup | BASE_FLAGS
}

/// The epoll instance and its registration table.
#[derive(Debug)]
pub(crate) struct Reactor {
    /// Everything mutable. Borrowed only for short, non-reentrant stretches: never
    /// while a waker runs.
    state: RefCell<State>,
    /// `EPOLLONESHOT` registrations, re-armed per wait (the default), or plain
    /// `EPOLLET` ones armed for both directions for good.
    oneshot: bool,
}

/// `epoll_ctl` flags of a plain edge-triggered registration: both directions, for
/// good (see [`Builder::oneshot`](crate::Builder::oneshot)).
const ET_ONLY_FLAGS: u32 = epoll::ET | epoll::IN | epoll::OUT | epoll::RDHUP;

#[derive(Debug)]
struct State {
    /// The epoll fd; `None` once the runtime has shut down (then every operation on a
    /// surviving registration fails with a clear error).
    epoll: Option<OwnedFd>,
    /// Registration table; a slot's index is the low half of its token.
    slots: Vec<Slot>,
    /// Indices of free slots, reused LIFO.
    free: Vec<u32>,
    /// Buffer `epoll_wait` fills; kept to avoid an allocation per turn.
    events: Vec<Event>,
    /// Wakers collected during a turn, woken after the borrow is released; kept to
    /// avoid an allocation per turn.
    to_wake: Vec<Waker>,
    /// Live registrations.
    live: usize,
    /// Registrations released so far (what [`wait_for_fd_release`] watches).
    releases: u64,
    /// Tasks in [`wait_for_fd_release`], woken at the next release.
    release_waiters: Vec<Waker>,
    /// Totals for [`RuntimeMetrics`](crate::RuntimeMetrics).
    counters: Counters,
}

/// Buckets of [`RuntimeMetrics::events_per_wait`](crate::RuntimeMetrics::events_per_wait).
pub(crate) const EVENTS_PER_WAIT_BUCKETS: usize = 12;

/// The reactor's totals since the runtime was created.
#[derive(Debug, Default)]
struct Counters {
    /// `epoll_wait` calls.
    waits: u64,
    /// Events dispatched to live registrations.
    events_dispatched: u64,
    /// `epoll_wait` calls by how many events they returned (power-of-two buckets).
    events_per_wait: [u64; EVENTS_PER_WAIT_BUCKETS],
    /// `EPOLL_CTL_ADD` calls that succeeded.
    ctl_add: u64,
    /// `EPOLL_CTL_MOD` calls (re-arms) that succeeded.
    ctl_mod: u64,
    /// `EPOLL_CTL_DEL` calls.
    ctl_del: u64,
    /// Operations that returned `WouldBlock`, by direction (read, write).
    would_block: [u64; 2],
    /// Calls of [`wait_for_fd_release`].
    fd_release_waits: u64,
}

/// The [`Counters::events_per_wait`] bucket of a wait that returned `n` events:
/// 0 for none, then `b` for `2^(b-1) <= n < 2^b`, the last bucket open-ended.
fn events_bucket(n: usize) -> usize {
    let bits = (usize::BITS - n.leading_zeros()) as usize;
    bits.min(EVENTS_PER_WAIT_BUCKETS - 1)
}

/// What one [`Reactor::turn`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Turn {
    /// The cross-thread notifier fired.
    pub(crate) notified: bool,
    /// Events dispatched to live registrations.
    pub(crate) io_events: usize,
}

/// Per-fd state.
///
/// # Invariant
/// `armed` is the set of directions the kernel will report next; it is reset to 0
/// whenever an event for this slot is delivered (ONESHOT disarmed it).
#[derive(Debug, Default)]
struct Slot {
    /// Bumped when the slot is released; the high half of the token.
    generation: u32,
    /// Whether a live [`Registration`] owns this slot.
    in_use: bool,
    /// Whether the fd is in the epoll set (a deferred registration is not until its
    /// first arm; see [`Reactor::register_deferred`]).
    added: bool,
    /// The registered fd, for `EPOLL_CTL_MOD`.
    fd: RawFd,
    /// `READ`/`WRITE` bits: the last event said ready and no syscall has said
    /// `EAGAIN` since.
    ready: u8,
    /// `READ`/`WRITE` bits that can never become unready again: the peer shut down
    /// its write side (`EPOLLRDHUP`: reads give EOF for good) or the connection
    /// hung up (`EPOLLHUP`: both). Clearing readiness leaves them set, so a read
    /// after EOF never waits for an edge that will not come (and, with ONESHOT,
    /// costs no re-arm).
    closed: u8,
    /// `EPOLLIN`/`EPOLLOUT` bits currently armed in the kernel.
    armed: u32,
    /// Tasks waiting to read; emptied when they are woken.
    readers: Waiters,
    /// Tasks waiting to write; emptied when they are woken.
    writers: Waiters,
}

/// The tasks waiting on one direction of an fd. Almost always one, held inline so
/// that a connection's first wait allocates nothing; a second one (two tasks
/// accepting on one listener, say) moves them to a `Vec`, kept for reuse.
#[derive(Debug, Default)]
enum Waiters {
    #[default]
    None,
    One(Waker),
    Many(Vec<Waker>),
}

impl Waiters {
    fn is_empty(&self) -> bool {
        match self {
            Waiters::None => true,
            Waiters::One(_) => false,
            Waiters::Many(all) => all.is_empty(),
        }
    }

    /// Whether a waiter would wake the same task as `waker`.
    fn contains(&self, waker: &Waker) -> bool {
        match self {
            Waiters::None => false,
            Waiters::One(w) => w.will_wake(waker),
            Waiters::Many(all) => all.iter().any(|w| w.will_wake(waker)),
        }
    }

    fn push(&mut self, waker: Waker) {
        *self = match std::mem::take(self) {
            Waiters::None => Waiters::One(waker),
            Waiters::One(first) => Waiters::Many(vec![first, waker]),
            Waiters::Many(mut all) => {
                all.push(waker);
                Waiters::Many(all)
            }
        };
    }

    /// Moves every waiter to the end of `out`, leaving none (a `Vec` keeps its
    /// capacity).
    fn drain_into(&mut self, out: &mut Vec<Waker>) {
        match std::mem::take(self) {
            Waiters::None => {}
            Waiters::One(w) => out.push(w),
            Waiters::Many(mut all) => {
                out.append(&mut all);
                *self = Waiters::Many(all);
            }
        }
    }
}

impl Slot {
    /// The epoll directions that have a waiter and are not ready.
    fn wanted(&self) -> u32 {
        let mut want = 0;
        if !self.readers.is_empty() && self.ready & READ == 0 {
            want |= epoll::IN;
        }
        if !self.writers.is_empty() && self.ready & WRITE == 0 {
            want |= epoll::OUT;
        }
        want
    }
}

fn token(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn split_token(token: u64) -> (u32, u32) {
    // Truncation is the point: the low half is the index, the high half the generation.
    ((token & 0xffff_ffff) as u32, (token >> 32) as u32)
}

/// Which readiness bits an event's flags set.
/// Which directions an event's flags close for good (see [`Slot::closed`]).
/// `EPOLLERR` is not among them: a UDP socket's ICMP error is read and gone.
fn closed_by(events: u32) -> u8 {
    let mut closed = 0;
    if events & (epoll::RDHUP | epoll::HUP) != 0 {
        closed |= READ;
    }
    if events & epoll::HUP != 0 {
        closed |= WRITE;
    }
    closed
}

fn readiness_of(events: u32) -> u8 {
    let mut ready = 0;
    if events & (epoll::IN | epoll::RDHUP) != 0 {
        ready |= READ;
    }
    if events & epoll::OUT != 0 {
        ready |= WRITE;
    }
    if events & (epoll::HUP | epoll::ERR) != 0 {
        ready |= READ | WRITE;
    }
    ready
}

const SHUT_DOWN: &str = "the runtime this I/O object was registered with has shut down; \
     create I/O objects inside the `block_on` that uses them";

fn shut_down_error() -> io::Error {
    io::Error::other(SHUT_DOWN)
}

impl Reactor {
    /// Creates the epoll instance and adds `notifier` (an eventfd) edge-triggered,
    /// without ONESHOT: it never needs re-arming, each write is one edge.
    /// `max_events` is how many events one `epoll_wait` may return.
    pub(crate) fn new(
        notifier: BorrowedFd<'_>,
        max_events: usize,
        oneshot: bool,
    ) -> io::Result<Self> {
        let ep = epoll::epoll_create1()?;
        epoll::epoll_ctl(
            ep.as_fd(),
            Op::Add,
            notifier.as_raw_fd(),
            epoll::IN | epoll::ET,
            NOTIFY_TOKEN,
        )?;
        Ok(Reactor {
            state: RefCell::new(State {
                epoll: Some(ep),
                slots: Vec::new(),
                free: Vec::new(),
                events: Vec::with_capacity(max_events),
                to_wake: Vec::new(),
                live: 0,
                releases: 0,
                release_waiters: Vec::new(),
                counters: Counters::default(),
            }),
            oneshot,
        })
    }

    /// Waits for events (at most `timeout`; `None` is forever), records readiness and
    /// wakes waiters. Returns whether the cross-thread notifier fired and how many
    /// I/O events were dispatched.
    ///
    /// `EINTR` returns an empty [`Turn`] with nothing woken: the event loop goes round
    /// again and recomputes its timeout, which is the retry.
    pub(crate) fn turn(&self, timeout: Option<Duration>) -> io::Result<Turn> {
        let mut turn = Turn::default();
        let mut to_wake = {
            let mut guard = self.state.borrow_mut();
            let state = &mut *guard;
            let Some(ep) = state.epoll.as_ref() else {
                return Err(shut_down_error());
            };
            state.counters.waits += 1;
            match epoll::epoll_wait(ep.as_fd(), &mut state.events, timeout) {
                Ok(n) => state.counters.events_per_wait[events_bucket(n)] += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    state.counters.events_per_wait[0] += 1;
                    return Ok(turn);
                }
                Err(e) => return Err(e),
            }
            let mut to_wake = std::mem::take(&mut state.to_wake);
            for ev in &state.events {
                // Copy out of the (packed) kernel struct before use.
                let (bits, tok) = (ev.events, ev.u64);
                if tok == NOTIFY_TOKEN {
                    turn.notified = true;
                    continue;
                }
                let (index, generation) = split_token(tok);
                let Some(slot) = state.slots.get_mut(index as usize) else {
                    continue;
                };
                if !slot.in_use || slot.generation != generation {
                    continue; // stale: the fd was deregistered after the event was queued
                }
                if self.oneshot {
                    slot.armed = 0;
                }
                turn.io_events += 1;
                let ready = readiness_of(bits);
                slot.ready |= ready;
                slot.closed |= closed_by(bits);
                if ready & READ != 0 {
                    slot.readers.drain_into(&mut to_wake);
                }
                if ready & WRITE != 0 || bits & epoll::RDHUP != 0 {
                    slot.writers.drain_into(&mut to_wake);
                }
                let want = if self.oneshot { slot.wanted() } else { 0 };
                if want != 0
                    && arm(ep.as_fd(), slot, index, want, true, &mut state.counters).is_err()
                {
                    // The remaining waiter cannot be armed for: wake it anyway, so its
                    // own syscall (or its next poll_ready) reports the error instead
                    // of it waiting forever.
                    slot.ready |= READ | WRITE;
                    slot.readers.drain_into(&mut to_wake);
                    slot.writers.drain_into(&mut to_wake);
                }
            }
            state.counters.events_dispatched += turn.io_events as u64;
            to_wake
        };
        // Wake outside the borrow: a waker may re-enter the reactor.
        for waker in to_wake.drain(..) {
            waker.wake();
        }
        let mut state = self.state.borrow_mut();
        if state.to_wake.capacity() < to_wake.capacity() {
            state.to_wake = to_wake;
        }
        Ok(turn)
    }

    /// Adds `fd` to the epoll set; returns its slot index.
    pub(crate) fn register(&self, fd: BorrowedFd<'_>) -> io::Result<u32> {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        if state.epoll.is_none() {
            return Err(shut_down_error());
        }
        let index = take_slot(state)?;
        let State {
            epoll,
            slots,
            free,
            live,
            counters,
            ..
        } = state;
        let ep = epoll.as_ref().ok_or_else(shut_down_error)?;
        let slot = &mut slots[index as usize];
        let flags = if self.oneshot {
            BASE_FLAGS | epoll::RDHUP
        } else {
            ET_ONLY_FLAGS
        };
        if let Err(e) = epoll::epoll_ctl(
            ep.as_fd(),
            Op::Add,
            fd.as_raw_fd(),
            flags,
            token(index, slot.generation),
        ) {
            free.push(index);
            return Err(e);
        }
        counters.ctl_add += 1;
        *live += 1;
        slot.in_use = true;
        slot.added = true;
        slot.fd = fd.as_raw_fd();
        slot.ready = READ | WRITE;
        slot.closed = 0;
        // Without ONESHOT the kernel reports both directions for good: never re-arm.
        slot.armed = if self.oneshot {
            0
        } else {
            epoll::IN | epoll::OUT
        };
        Ok(index)
    }

    /// Takes a slot for `fd` without adding it to the epoll set: the first time a
    /// task has to wait on it, [`arm`] adds it (`EPOLL_CTL_ADD` instead of the MOD).
    /// Until then both directions count as ready, so every operation is tried.
    pub(crate) fn register_deferred(&self, fd: BorrowedFd<'_>) -> io::Result<u32> {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        if state.epoll.is_none() {
            return Err(shut_down_error());
        }
        let index = take_slot(state)?;
        let slot = &mut state.slots[index as usize];
        state.live += 1;
        slot.in_use = true;
        slot.added = false;
        slot.fd = fd.as_raw_fd();
        slot.ready = READ | WRITE;
        slot.closed = 0;
        slot.armed = 0;
        Ok(index)
    }

    /// Removes the fd from the epoll set (before its owner closes it) and releases the
    /// slot under a new generation.
    fn deregister(&self, index: u32, fd: RawFd) {
        let (readers, writers, release_waiters) = {
            let mut guard = self.state.borrow_mut();
            let state = &mut *guard;
            let added = state.slots[index as usize].added;
            if let Some(ep) = state.epoll.as_ref().filter(|_| added) {
                // Ignored: DEL only fails if the fd is not in the set (EBADF/ENOENT),
                // and the fd is closed right after, which removes it in any case.
                let _ = epoll::epoll_ctl(ep.as_fd(), Op::Delete, fd, 0, 0);
                state.counters.ctl_del += 1;
            }
            state.live -= 1;
            state.releases += 1;
            // Usually empty: taking an empty Vec neither allocates nor frees.
            let release_waiters = std::mem::take(&mut state.release_waiters);
            let slot = &mut state.slots[index as usize];
            slot.in_use = false;
            slot.added = false;
            slot.generation = slot.generation.wrapping_add(1);
            slot.ready = 0;
            slot.closed = 0;
            slot.armed = 0;
            state.free.push(index);
            (
                std::mem::take(&mut slot.readers),
                std::mem::take(&mut slot.writers),
                release_waiters,
            )
        };
        // Woken and dropped outside the borrow: a foreign waker may run arbitrary
        // code. The woken tasks run after this fd's owner has closed it.
        for waker in release_waiters {
            waker.wake();
        }
        drop((readers, writers));
    }

    /// See [`Registration::poll_ready`].
    fn poll_ready(
        &self,
        index: u32,
        dir: Direction,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::task::Poll;
        let (bit, event_bit) = match dir {
            Direction::Read => (READ, epoll::IN),
            Direction::Write => (WRITE, epoll::OUT),
        };
        let known = {
            let state = self.state.borrow();
            if state.epoll.is_none() {
                return Poll::Ready(Err(shut_down_error()));
            }
            let slot = &state.slots[index as usize];
            if slot.ready & bit != 0 {
                return Poll::Ready(Ok(()));
            }
            let waiters = match dir {
                Direction::Read => &slot.readers,
                Direction::Write => &slot.writers,
            };
            waiters.contains(cx.waker())
        };
        // Cloned outside the borrow: a foreign waker's clone may run arbitrary code.
        let new_waiter = (!known).then(|| cx.waker().clone());
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        let Some(ep) = state.epoll.as_ref() else {
            return Poll::Ready(Err(shut_down_error()));
        };
        let slot = &mut state.slots[index as usize];
        if slot.ready & bit != 0 {
            return Poll::Ready(Ok(())); // became ready while the waker was cloned
        }
        if let Some(waker) = new_waiter {
            match dir {
                Direction::Read => slot.readers.push(waker),
                Direction::Write => slot.writers.push(waker),
            }
        }
        if slot.armed & event_bit == 0 {
            let want = slot.armed | slot.wanted();
            if let Err(e) = arm(
                ep.as_fd(),
                slot,
                index,
                want,
                self.oneshot,
                &mut state.counters,
            ) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Pending
    }

    /// See [`Registration::clear_ready`].
    fn clear_ready(&self, index: u32, dir: Direction) {
        clear(&mut self.state.borrow_mut(), index, dir);
    }

    /// Clears `dir` after an operation said `WouldBlock`, and counts it.
    fn note_would_block(&self, index: u32, dir: Direction) {
        let mut state = self.state.borrow_mut();
        clear(&mut state, index, dir);
        state.counters.would_block[dir as usize] += 1;
    }

    /// Whether `dir` is known ready (see [`Registration::try_io`]).
    fn is_ready(&self, index: u32, dir: Direction) -> io::Result<bool> {
        let state = self.state.borrow();
        if state.epoll.is_none() {
            return Err(shut_down_error());
        }
        let bit = match dir {
            Direction::Read => READ,
            Direction::Write => WRITE,
        };
        Ok(state.slots[index as usize].ready & bit != 0)
    }

    /// Closes the epoll fd and drops every stored waker. Registrations that outlive
    /// the runtime then fail with a clear error instead of touching a reused fd.
    pub(crate) fn shutdown(&self) {
        let (ep, wakers) = {
            let mut state = self.state.borrow_mut();
            let wakers: Vec<Waker> = state
                .slots
                .iter_mut()
                .flat_map(|s| {
                    let mut both = Vec::new();
                    s.readers.drain_into(&mut both);
                    s.writers.drain_into(&mut both);
                    both
                })
                .collect();
            (state.epoll.take(), wakers)
        };
        drop(wakers);
        drop(ep);
    }

    /// Whether [`shutdown`](Self::shutdown) has run.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.state.borrow().epoll.is_none()
    }

    /// Counts a [`wait_for_fd_release`] and returns the release count it waits to
    /// see change.
    fn note_fd_release_wait(&self) -> u64 {
        let mut state = self.state.borrow_mut();
        state.counters.fd_release_waits += 1;
        state.releases
    }

    /// Registrations released so far.
    fn releases(&self) -> u64 {
        self.state.borrow().releases
    }

    /// Wakes `waker` at the next release (once).
    fn wake_on_release(&self, waker: &Waker) {
        let known = {
            let state = self.state.borrow();
            state.release_waiters.iter().any(|w| w.will_wake(waker))
        };
        if !known {
            // Cloned outside the borrow: a foreign waker's clone may run arbitrary code.
            let waker = waker.clone();
            self.state.borrow_mut().release_waiters.push(waker);
        }
    }

    /// Copies the reactor's counters into `m`.
    pub(crate) fn fill_metrics(&self, m: &mut crate::RuntimeMetrics) {
        let state = self.state.borrow();
        let c = &state.counters;
        m.epoll_waits = c.waits;
        m.io_events = c.events_dispatched;
        m.events_per_wait = c.events_per_wait;
        m.registered_fds = state.live;
        m.epoll_ctl_add = c.ctl_add;
        m.epoll_ctl_mod = c.ctl_mod;
        m.epoll_ctl_del = c.ctl_del;
        m.read_would_block = c.would_block[Direction::Read as usize];
        m.write_would_block = c.would_block[Direction::Write as usize];
        m.fd_release_waits = c.fd_release_waits;
    }

    /// Number of live registrations (for tests).
    #[cfg(test)]
    pub(crate) fn registrations(&self) -> usize {
        self.state.borrow().live
    }
}

/// A free slot's index (a released one, most recent first, or a new one).
fn take_slot(state: &mut State) -> io::Result<u32> {
    if let Some(i) = state.free.pop() {
        return Ok(i);
    }
    let i = u32::try_from(state.slots.len())
        .ok()
        .filter(|&i| i < u32::MAX)
        .ok_or_else(|| io::Error::other("too many registrations in one reactor"))?;
    state.slots.push(Slot::default());
    Ok(i)
}

/// Forgets that `dir` of slot `index` is ready.
fn clear(state: &mut State, index: u32, dir: Direction) {
    if let Some(slot) = state.slots.get_mut(index as usize) {
        slot.ready &= match dir {
            Direction::Read => !READ,
            Direction::Write => !WRITE,
        };
        slot.ready |= slot.closed;
    }
}

/// Arms the slot's fd for `want` and records it: `EPOLL_CTL_MOD` (plus the base
/// flags), or, for a deferred registration not in the epoll set yet,
/// `EPOLL_CTL_ADD` (with ONESHOT: for `want`, like the MOD; without: for both
/// directions for good, as [`Reactor::register`] would have).
fn arm(
    ep: BorrowedFd<'_>,
    slot: &mut Slot,
    index: u32,
    want: u32,
    oneshot: bool,
    counters: &mut Counters,
) -> io::Result<()> {
    let tok = token(index, slot.generation);
    if slot.added {
        epoll::epoll_ctl(ep, Op::Modify, slot.fd, arm_mask(want), tok)?;
        counters.ctl_mod += 1;
        slot.armed = want;
        return Ok(());
    }
    let (flags, armed) = if oneshot {
        (arm_mask(want), want)
    } else {
        (ET_ONLY_FLAGS, epoll::IN | epoll::OUT)
    };
    epoll::epoll_ctl(ep, Op::Add, slot.fd, flags, tok)?;
    counters.ctl_add += 1;
    slot.added = true;
    slot.armed = armed;
    Ok(())
}

#[cfg(test)]
mod tests;
