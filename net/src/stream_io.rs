//! Reads and writes of a connected stream socket (TCP or Unix), shared by
//! [`TcpStream`](crate::TcpStream) and [`UnixStream`](crate::UnixStream).
//!
//! Every operation has the same shape (see `AsyncFd::poll_io`): try the syscall; on
//! `WouldBlock`, clear that direction and wait for it. A read that returns fewer
//! bytes than asked for means the socket is drained, so the read direction is
//! cleared at once: the next read waits (re-arming) instead of paying a `recv` that
//! returns `EAGAIN`. A short write likewise means the send buffer is full.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::task::{Context, Poll, ready};

use edgeloop_runtime::{AsyncFd, Direction};

use crate::sys::{self, retry};

/// `recv` into `buf`, waiting while there is nothing to read.
pub(crate) fn poll_read(
    io: &AsyncFd<OwnedFd>,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    if buf.is_empty() {
        return Poll::Ready(Ok(0));
    }
    let n = ready!(io.poll_io(Direction::Read, cx, |fd| {
        retry(|| sys::recv(fd.as_fd(), buf, 0))
    }))?;
    Poll::Ready(Ok(after_read(io, n, buf.len())))
}

/// `send` from `buf`, waiting while the send buffer is full.
pub(crate) fn poll_write(
    io: &AsyncFd<OwnedFd>,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    if buf.is_empty() {
        return Poll::Ready(Ok(0));
    }
    let n = ready!(io.poll_io(Direction::Write, cx, |fd| {
        retry(|| sys::send(fd.as_fd(), buf))
    }))?;
    Poll::Ready(Ok(after_write(io, n, buf.len())))
}

/// `recv` into `buf` without waiting: `WouldBlock` if no data is known to be there.
pub(crate) fn try_read(io: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    let n = io.try_io(Direction::Read, |fd| {
        retry(|| sys::recv(fd.as_fd(), buf, 0))
    })?;
    Ok(after_read(io, n, buf.len()))
}

/// `send` from `buf` without waiting: `WouldBlock` if the socket is not known to be
/// writable.
pub(crate) fn try_write(io: &AsyncFd<OwnedFd>, buf: &[u8]) -> io::Result<usize> {
    let n = io.try_io(Direction::Write, |fd| retry(|| sys::send(fd.as_fd(), buf)))?;
    Ok(after_write(io, n, buf.len()))
}

/// The short-read rule: `n` of `asked` bytes read; fewer (but some) means drained.
fn after_read(io: &AsyncFd<OwnedFd>, n: usize, asked: usize) -> usize {
    if n > 0 && n < asked {
        io.clear_ready(Direction::Read);
    }
    n
}

/// The short-write rule: `n` of `offered` bytes written; fewer means the send
/// buffer is full.
fn after_write(io: &AsyncFd<OwnedFd>, n: usize, offered: usize) -> usize {
    if n < offered {
        io.clear_ready(Direction::Write);
    }
    n
}
