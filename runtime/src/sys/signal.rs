//! The async-signal-safe half of [`crate::signal`]: the process-wide handler, the two
//! pieces of static state it touches, and the libc calls that set it up (`pipe2`,
//! `sigaction`; `raise` for tests).
//!
//! # What the handler may do
//!
//! A handler runs between any two instructions of whichever thread the kernel picked,
//! possibly while that thread holds the allocator's lock or a `Mutex`, so it may only
//! touch lock-free atomics and call async-signal-safe functions. [`on_signal`] does
//! exactly three things:
//!
//! 1. adds 1 to the signal's delivery counter ([`DELIVERIES`], a lock-free `AtomicU64`);
//! 2. `write`s one byte to the self-pipe's write end ([`PIPE_WRITE_FD`]), ignoring every
//!    error: `EAGAIN` means the pipe is full, so a wake-up is pending already;
//! 3. saves `errno` first and restores it last: the interrupted code may sit between a
//!    failing call and its read of `errno`, and `write` could overwrite it.
//!
//! No allocation, no lock, no panic (indices go through `get`).
//!
//! The counter is bumped *before* the byte is written. Whoever reads the byte (the
//! drivers in `crate::signal`) is therefore guaranteed to see the new count.
//!
//! Who calls it: `crate::signal::registry` (pipe, installation, counters).

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use super::cvt;

/// Number of slots in [`DELIVERIES`]: Linux's `_NSIG` (signals are 1 to 64; slot 0 is
/// unused so a signal number is its own index).
pub(crate) const SIGNAL_SLOTS: usize = 65;

/// Deliveries so far, per signal number, counted by [`on_signal`]. Only ever grows.
static DELIVERIES: [AtomicU64; SIGNAL_SLOTS] = [const { AtomicU64::new(0) }; SIGNAL_SLOTS];

/// Write end of the self-pipe, or -1 before [`set_pipe_write_end`].
///
/// # Invariant
///
/// Once set, the fd is never closed and the value never changes: a handler may be
/// writing to it on another thread at any moment.
static PIPE_WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// The handler installed by [`sigaction`] for every signal listened for. See the
/// module docs for why it does so little.
extern "C" fn on_signal(signum: c_int) {
    // SAFETY: `__errno_location` has no preconditions; it returns the calling
    // thread's errno slot, valid for as long as the thread lives.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: `errno` points to this thread's errno, which is always initialised.
    let saved_errno = unsafe { errno.read() };
    if let Some(counter) = usize::try_from(signum)
        .ok()
        .and_then(|slot| DELIVERIES.get(slot))
    {
        counter.fetch_add(1, Ordering::SeqCst);
    }
    let fd = PIPE_WRITE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1_u8;
        // SAFETY: `write` is async-signal-safe; `byte` is one readable byte for the
        // whole call; `fd` is the pipe's write end, never closed once stored
        // (invariant of PIPE_WRITE_FD). The result is ignored: `EAGAIN` means the
        // pipe is full (a wake-up is pending), and a handler can report nothing.
        let _ = unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
    // SAFETY: as for the read above.
    unsafe { errno.write(saved_errno) };
}

/// Deliveries of `signum` counted so far (0 for a number with no slot).
pub(crate) fn deliveries(signum: c_int) -> u64 {
    usize::try_from(signum)
        .ok()
        .and_then(|slot| DELIVERIES.get(slot))
        .map_or(0, |counter| counter.load(Ordering::SeqCst))
}

/// Hands the self-pipe's write end to the handler, for the life of the process.
/// Only the first call stores its fd; a later one closes the fd it was given.
pub(crate) fn set_pipe_write_end(fd: OwnedFd) {
    let raw: RawFd = fd.into_raw_fd();
    if PIPE_WRITE_FD
        .compare_exchange(-1, raw, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // SAFETY: `raw` came from `into_raw_fd` just above and was not stored, so
        // this is its only owner again.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    }
}

/// `pipe2(O_NONBLOCK | O_CLOEXEC)`: `(read end, write end)`.
pub(crate) fn pipe2() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [c_int; 2] = [-1, -1];
    // SAFETY: `fds` is two writable c_ints, as pipe2 requires; the flags are valid.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so fds[0] is a new descriptor that nothing else owns.
    let read_end = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: likewise for fds[1].
    let write_end = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((read_end, write_end))
}

/// `sigaction(signum, {on_signal, SA_RESTART, empty mask}, NULL)`: from now on every
/// delivery of `signum` runs [`on_signal`] instead of the previous disposition.
///
/// `SA_RESTART` so that a blocking call interrupted by the handler on some other
/// thread (a `read` in a blocking pool, say) resumes instead of failing with
/// `EINTR`; `epoll_wait` is never restarted by the kernel, and the reactor retries it.
///
/// # Errors
///
/// `EINVAL` for a number the kernel or libc refuses (`SIGKILL`, `SIGSTOP`, the
/// real-time signals glibc keeps for itself).
pub(crate) fn sigaction(signum: c_int) -> io::Result<()> {
    // SAFETY: `libc::sigaction` is a plain C struct of integers and a bit set, for
    // which all-zero bytes are a valid value (SIG_DFL, no flags, empty mask).
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    let handler: extern "C" fn(c_int) = on_signal;
    action.sa_sigaction = handler as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action.sa_mask` is a valid, writable sigset_t.
    cvt(unsafe { libc::sigemptyset(&raw mut action.sa_mask) })?;
    // SAFETY: `action` is a valid sigaction that outlives the call, whose handler is
    // async-signal-safe (module docs); a null `oldact` is allowed.
    cvt(unsafe { libc::sigaction(signum, &raw const action, std::ptr::null_mut()) })?;
    Ok(())
}

/// `raise(signum)`: delivers `signum` to the calling thread; when it is not blocked,
/// its handler has run by the time this returns.
#[cfg(test)]
pub(crate) fn raise(signum: c_int) -> io::Result<()> {
    // SAFETY: raise takes no pointers; the tests call it only for signals whose
    // handler is installed, so the default action (terminating) cannot happen.
    if unsafe { libc::raise(signum) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A real-time signal that no other test uses, so counts are exact.
    fn own_signal() -> c_int {
        libc::SIGRTMAX() - 1
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs sigemptyset and sigaction, which Miri lacks")]
    fn handler_counts_each_raise() -> io::Result<()> {
        let signum = own_signal();
        sigaction(signum)?;
        let before = deliveries(signum);
        raise(signum)?;
        raise(signum)?;
        let after = deliveries(signum);
        assert_eq!(
            after - before,
            2,
            "deliveries before {before}, after {after}"
        );
        Ok(())
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs sigemptyset and sigaction, which Miri lacks")]
    fn handler_leaves_errno_untouched() -> io::Result<()> {
        let signum = own_signal() - 1;
        sigaction(signum)?;
        // SAFETY: sets this thread's errno slot, valid for the thread's life.
        unsafe { libc::__errno_location().write(libc::ENOTTY) };
        // Direct libc call so nothing between the store and the check touches errno
        // on success (raise returns 0 and leaves errno alone).
        // SAFETY: the handler for `signum` is installed just above.
        let ret = unsafe { libc::raise(signum) };
        assert_eq!(ret, 0, "raise failed");
        // SAFETY: reads this thread's errno slot.
        let errno = unsafe { libc::__errno_location().read() };
        assert_eq!(errno, libc::ENOTTY, "errno after the handler ran");
        Ok(())
    }

    #[test]
    fn pipe2_ends_are_non_blocking() -> io::Result<()> {
        let (read_end, write_end) = pipe2()?;
        let mut reader = std::io::PipeReader::from(read_end);
        let err = reader
            .read(&mut [0_u8; 1])
            .expect_err("a fresh pipe must be empty");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "got {err:?}");
        drop(write_end);
        Ok(())
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs sigemptyset and sigaction, which Miri lacks")]
    fn sigaction_refuses_sigkill() {
        let err = sigaction(libc::SIGKILL).expect_err("SIGKILL cannot be caught");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "got {err:?}");
    }
}
