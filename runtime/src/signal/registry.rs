//! The process-wide half of signal handling: the self-pipe, which signals have the
//! handler installed, and the listeners to wake, one list per signal number.
//!
//! # Invariants
//!
//! - The self-pipe is created before any handler is installed, so every delivery
//!   that a listener can wait for writes its wake-up byte.
//! - A signal's handler is installed at most once (under its slot's lock) and never
//!   removed.
//! - No lock here is held while a waker is woken or dropped, nor while another lock
//!   of this module is taken, so no lock order exists to get wrong.
//!
//! Who calls it: [`Signal`](super::Signal) registers its [`Listener`]; the per-runtime
//! drivers (`driver.rs`) take a copy of the pipe's read end and [`dispatch`] after
//! draining it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::raw::c_int;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Waker;

use crate::sys::signal::{self as sys, SIGNAL_SLOTS};

/// One `Signal`'s mailbox: the waker of the task that last polled it and found
/// nothing new. Shared with the registry, which holds it weakly.
#[derive(Debug, Default)]
pub(crate) struct Listener {
    /// Taken by [`dispatch`]; set again by the next `poll_recv` that finds nothing.
    waker: Mutex<Option<Waker>>,
}

impl Listener {
    /// Stores `waker` unless the stored one would wake the same task.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let old = {
            let mut slot = lock(&self.waker);
            if slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                return;
            }
            slot.replace(waker.clone())
        };
        // Dropped outside the lock: a waker's destructor may run arbitrary code.
        drop(old);
    }

    /// Removes the stored waker, if any.
    fn take_waker(&self) -> Option<Waker> {
        lock(&self.waker).take()
    }
}

/// The state of one signal number.
#[derive(Debug)]
struct Slot {
    /// Whether `sys::sigaction` has installed the handler (never undone).
    installed: bool,
    /// Every live `Signal` for this number, plus dead ones not yet pruned.
    listeners: Vec<Weak<Listener>>,
}

/// One slot per signal number (index 0 unused).
static SLOTS: [Mutex<Slot>; SIGNAL_SLOTS] = [const {
    Mutex::new(Slot {
        installed: false,
        listeners: Vec::new(),
    })
}; SIGNAL_SLOTS];

/// The self-pipe's read end, once created. Each driver reads through its own
/// duplicate (so each can register it with its own epoll); this one stays open for
/// the life of the process, like the write end the handler uses.
static PIPE_READ_END: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Locks `mutex`, ignoring poisoning: no code here panics while holding a lock with
/// its data half-updated, so the data is consistent whatever happened elsewhere.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The slot of `signum`, which [`super::kind::check`] has accepted.
fn slot(signum: c_int) -> &'static Mutex<Slot> {
    usize::try_from(signum)
        .ok()
        .and_then(|index| SLOTS.get(index))
        .expect("signal number checked by `kind::check` before use")
}

/// Locks the self-pipe's read end, creating the pipe on first use.
///
/// # Errors
///
/// From `pipe2`, typically `EMFILE`; the next call tries again.
fn pipe() -> io::Result<MutexGuard<'static, Option<OwnedFd>>> {
    let mut read_end = lock(&PIPE_READ_END);
    if read_end.is_none() {
        let (reader, writer) = sys::pipe2()?;
        sys::set_pipe_write_end(writer);
        *read_end = Some(reader);
    }
    Ok(read_end)
}

/// A new fd on the self-pipe's read end (`F_DUPFD_CLOEXEC`; non-blocking, since
/// that flag belongs to the pipe, not the fd), creating the pipe on first use.
///
/// # Errors
///
/// From `pipe2` or `fcntl`, typically `EMFILE`.
pub(crate) fn pipe_reader() -> io::Result<OwnedFd> {
    pipe()?
        .as_ref()
        .expect("`pipe` returns the read end or an error")
        .as_fd()
        .try_clone_to_owned()
}

/// Installs the handler for `signum` if this is the first listener ever, and adds a
/// listener. The caller reads the delivery counter *after* this returns, so every
/// delivery it counts as new has its handler's byte on the pipe.
///
/// # Errors
///
/// From creating the pipe or from `sigaction`; nothing is installed then, and the
/// next call tries again.
pub(crate) fn register(signum: c_int) -> io::Result<Arc<Listener>> {
    // The pipe first: a handler installed before it exists would count deliveries
    // but wake nobody.
    drop(pipe()?);
    let listener = Arc::new(Listener::default());
    let mut slot = lock(slot(signum));
    if !slot.installed {
        sys::sigaction(signum)?;
        slot.installed = true;
    }
    // Pruned here too, not only in `dispatch`: a program that makes and drops
    // `Signal`s while no signal ever arrives must not grow the list forever.
    slot.listeners.retain(|weak| weak.strong_count() > 0);
    slot.listeners.push(Arc::downgrade(&listener));
    Ok(listener)
}

/// Deliveries of `signum` counted so far by the handler.
pub(crate) fn deliveries(signum: c_int) -> u64 {
    sys::deliveries(signum)
}

/// Wakes every listener of every signal (the caller has just drained the pipe, so
/// some signal arrived, and the pipe does not say which) and prunes dead ones.
///
/// Waking a listener with nothing new costs it one poll; signals are rare enough
/// that this beats keeping track of who has seen what.
pub(crate) fn dispatch() {
    let mut wakers = Vec::new();
    for slot in &SLOTS {
        let live: Vec<Arc<Listener>> = {
            let mut slot = lock(slot);
            slot.listeners.retain(|weak| weak.strong_count() > 0);
            slot.listeners.iter().filter_map(Weak::upgrade).collect()
        };
        wakers.extend(live.iter().filter_map(|listener| listener.take_waker()));
    }
    for waker in wakers {
        waker.wake();
    }
}

/// Entries in `signum`'s listener list, dead ones included.
#[cfg(test)]
pub(crate) fn listener_entries(signum: c_int) -> usize {
    lock(slot(signum)).listeners.len()
}
