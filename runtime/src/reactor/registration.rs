//! [`Registration`]: the public readiness API that sockets are built on.
//!
//! Every I/O operation has the same shape: try the syscall; on `WouldBlock`, call
//! [`Registration::clear_ready`], await [`Registration::poll_ready`], and loop.
//! [`Registration::poll_io`] is that loop, written once.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::rc::Rc;
use std::task::{Context, Poll};

use super::Reactor;

/// One direction of readiness on an fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The fd can be read (or accepted from), or has hit EOF or an error.
    Read,
    /// The fd can be written (or a connect finished), or has hit an error.
    Write,
}

/// An fd added to the current runtime's epoll set, with per-direction readiness.
///
/// Created with [`Registration::new`] inside [`block_on`](crate::block_on); dropping it
/// deletes the fd from the epoll set (`EPOLL_CTL_DEL`). It does not own the fd: the
/// owner must drop the registration *before* closing the fd (declare the registration
/// field first, since fields drop in declaration order).
///
/// Each direction keeps one waiter: the task that polled it last. Two tasks may wait
/// at once if one reads and the other writes; two tasks reading the same fd at once
/// would steal each other's wakeups.
///
/// A registration is tied to the thread and runtime that created it (`!Send`). If it
/// outlives that runtime, its operations fail with an error that says so.
///
/// # Examples
///
/// ```
/// use std::future::poll_fn;
/// use std::io::{Read, Write};
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// use edgeloop_runtime::{Direction, Registration};
///
/// edgeloop_runtime::block_on(async {
///     let (a, mut b) = UnixStream::pair()?;
///     a.set_nonblocking(true)?;
///     let reg = Registration::new(a.as_fd())?;
///     b.write_all(b"hi")?;
///     let mut buf = [0u8; 8];
///     let n = poll_fn(|cx| reg.poll_io(Direction::Read, cx, || (&a).read(&mut buf))).await?;
///     assert_eq!(&buf[..n], b"hi");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Registration {
    /// The reactor holding the slot; kept alive so drop can always release it.
    reactor: Rc<Reactor>,
    /// Slot index in the reactor's table.
    index: u32,
    /// The registered fd, for `EPOLL_CTL_DEL` on drop.
    fd: RawFd,
}

impl Registration {
    /// Adds `fd` to the current runtime's epoll set (`EPOLL_CTL_ADD` with
    /// `EPOLLET|EPOLLONESHOT|EPOLLRDHUP`). The fd should be non-blocking. Both
    /// directions start out ready, so the first syscall is simply tried.
    ///
    /// # Errors
    ///
    /// What `epoll_ctl` returns, e.g. `EPERM` for a regular file, which epoll cannot
    /// watch, or `EEXIST` if this fd is already registered.
    ///
    /// # Panics
    ///
    /// If called outside [`block_on`](crate::block_on).
    pub fn new(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let reactor = crate::context::current_reactor().unwrap_or_else(|| {
            panic!(
                "`Registration::new` called outside `block_on`; create I/O objects inside \
                 the future passed to `edgeloop::block_on`"
            )
        });
        let (index, _generation) = reactor.register(fd)?;
        Ok(Registration {
            reactor,
            index,
            fd: fd.as_raw_fd(),
        })
    }

    /// Polls `dir` for readiness.
    ///
    /// `Ready(Ok(()))` means the last event said ready and no syscall has said
    /// `EAGAIN` since: try the operation. `Pending` means the waker is stored and the
    /// fd is armed (`EPOLL_CTL_MOD`, only if not armed already for `dir`); the task is
    /// woken when the kernel reports `dir`, a hang-up or an error.
    ///
    /// # Errors
    ///
    /// If re-arming fails, or the runtime has shut down.
    pub fn poll_ready(&self, dir: Direction, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.reactor.poll_ready(self.index, dir, cx)
    }

    /// Forgets that `dir` is ready. Call it when a syscall returned `WouldBlock` (or a
    /// read on a stream came back short, which means the socket is drained); the next
    /// [`poll_ready`](Self::poll_ready) then re-arms the fd and waits.
    pub fn clear_ready(&self, dir: Direction) {
        self.reactor.clear_ready(self.index, dir);
    }

    /// Runs `op` once `dir` is ready, and again after each `WouldBlock` once the fd
    /// is ready again. `WouldBlock` never escapes: it means "wait".
    ///
    /// # Errors
    ///
    /// Whatever `op` returns other than `WouldBlock`, or an error from
    /// [`poll_ready`](Self::poll_ready).
    pub fn poll_io<R>(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            match self.poll_ready(dir, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear_ready(dir),
                result => return Poll::Ready(result),
            }
        }
    }

    /// Runs `op` once without waiting: `WouldBlock` if `dir` is not known to be
    /// ready, or if `op` says so (then `dir` is cleared).
    ///
    /// # Errors
    ///
    /// `WouldBlock`, whatever `op` returns, or an error if the runtime has shut down.
    pub fn try_io<R>(&self, dir: Direction, op: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        if !self.reactor.is_ready(self.index, dir)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let result = op();
        if let Err(e) = &result
            && e.kind() == io::ErrorKind::WouldBlock
        {
            self.clear_ready(dir);
        }
        result
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.reactor.deregister(self.index, self.fd);
    }
}
