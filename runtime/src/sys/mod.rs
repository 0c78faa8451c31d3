//! Thin, safe wrappers over the libc calls the runtime makes: one function per
//! syscall, named after it.
//!
//! Contract for every function here:
//! - arguments are typed (`BorrowedFd<'_>`, slices, `Option<Duration>`), so a caller
//!   outside this module never needs `unsafe`;
//! - a new fd becomes an [`OwnedFd`](std::os::fd::OwnedFd) at once, created with
//!   `CLOEXEC` (and `NONBLOCK` where the call takes it), so it is closed exactly once;
//! - `-1`/errno becomes [`io::Error::last_os_error`], untouched, so `raw_os_error()`
//!   survives; `EINTR` is returned as it came and retried by the caller that knows
//!   whether a retry is right.

pub(crate) mod epoll;
pub(crate) mod eventfd;
pub(crate) mod fcntl;
pub(crate) mod prctl;
pub(crate) mod signal;

use std::io;
use std::os::raw::c_int;

/// Turns the C convention (`-1` and `errno`) into an `io::Result`.
pub(crate) fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Same as [`cvt`] for calls that return `ssize_t`.
pub(crate) fn cvt_size(ret: isize) -> io::Result<usize> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        // A non-negative ssize_t always fits in usize.
        Ok(ret.unsigned_abs())
    }
}
