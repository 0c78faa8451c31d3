//! `eventfd`, and the 8-byte `read`/`write` that drive it: the cross-thread wake-up
//! line into a sleeping `epoll_wait`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{cvt, cvt_size};

/// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; the flags are valid constants.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to the counter, which makes the eventfd readable.
pub(crate) fn eventfd_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: `fd` is open (borrowed) and `one` is 8 readable bytes, as eventfd requires.
    cvt_size(unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), 8) })?;
    Ok(())
}

/// Reads and resets the counter; `WouldBlock` when it was already zero.
pub(crate) fn eventfd_read(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut value: u64 = 0;
    // SAFETY: `fd` is open (borrowed) and `value` is 8 writable bytes, as eventfd requires.
    cvt_size(unsafe { libc::read(fd.as_raw_fd(), (&raw mut value).cast(), 8) })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn write_then_read_resets_counter() -> io::Result<()> {
        let fd = eventfd()?;
        let err = eventfd_read(fd.as_fd()).expect_err("fresh eventfd must be empty");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "got {err:?}");
        eventfd_write(fd.as_fd())?;
        eventfd_write(fd.as_fd())?;
        assert_eq!(eventfd_read(fd.as_fd())?, 2);
        let err = eventfd_read(fd.as_fd()).expect_err("counter must be reset by the read");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "got {err:?}");
        Ok(())
    }
}
