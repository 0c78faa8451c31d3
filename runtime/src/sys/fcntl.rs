//! `fcntl(F_GETFL/F_SETFL)`: putting an fd into non-blocking mode.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

/// Sets `O_NONBLOCK` on `fd`'s open file description, if it is not set already.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and `fd` is open (borrowed).
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: F_SETFL takes an int of flags and `fd` is open (borrowed).
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// Whether `O_NONBLOCK` is set on `fd` (for debug assertions and tests).
pub(crate) fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFL takes no argument and `fd` is open (borrowed).
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn set_nonblocking_sets_the_flag_once_and_keeps_the_others() -> io::Result<()> {
        let (r, _w) = std::io::pipe()?;
        assert!(!is_nonblocking(r.as_fd())?, "a fresh pipe is blocking");
        set_nonblocking(r.as_fd())?;
        assert!(is_nonblocking(r.as_fd())?);
        set_nonblocking(r.as_fd())?; // already set: no change, no error
        assert!(is_nonblocking(r.as_fd())?);
        Ok(())
    }
}
