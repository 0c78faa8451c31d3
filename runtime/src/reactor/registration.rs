//! [`Registration`]: one fd's slot in the reactor, without owning the fd; the core of
//! [`AsyncFd`](super::AsyncFd).

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

/// An fd's slot in the current runtime's reactor, with per-direction readiness:
/// added to the epoll set at once ([`new`](Self::new)) or at its first wait
/// ([`new_deferred`](Self::new_deferred)).
///
/// The non-owning core of [`AsyncFd`](super::AsyncFd), which is the public face:
/// it does not own the fd, so its owner must drop it *before* closing the fd.
/// Dropping it deletes the fd from the epoll set (`EPOLL_CTL_DEL`) if it was added.
pub(crate) struct Registration {
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
    pub(crate) fn new(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let reactor = current_reactor();
        let index = reactor.register(fd)?;
        Ok(Registration {
            reactor,
            index,
            fd: fd.as_raw_fd(),
        })
    }

    /// Takes a slot in the current runtime's reactor for `fd` without adding it to the
    /// epoll set yet: that happens (`EPOLL_CTL_ADD`) the first time a task has to wait
    /// on it. Both directions start out ready.
    ///
    /// # Errors
    ///
    /// If the runtime has shut down.
    ///
    /// # Panics
    ///
    /// If called outside [`block_on`](crate::block_on).
    pub(crate) fn new_deferred(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let reactor = current_reactor();
        let index = reactor.register_deferred(fd)?;
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
    pub(crate) fn poll_ready(&self, dir: Direction, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if crate::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        let polled = self.reactor.poll_ready(self.index, dir, cx);
        if polled.is_ready() {
            crate::coop::spend();
        }
        polled
    }

    /// Forgets that `dir` is ready. Call it when a syscall returned `WouldBlock` (or a
    /// read on a stream came back short, which means the socket is drained); the next
    /// [`poll_ready`](Self::poll_ready) then re-arms the fd and waits.
    pub(crate) fn clear_ready(&self, dir: Direction) {
        self.reactor.clear_ready(self.index, dir);
    }

    /// Runs `op` once `dir` is ready, and again after each `WouldBlock` once the fd
    /// is ready again. `WouldBlock` never escapes: it means "wait".
    ///
    /// # Errors
    ///
    /// Whatever `op` returns other than `WouldBlock`, or an error from
    /// [`poll_ready`](Self::poll_ready).
    pub(crate) fn poll_io<R>(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        // One unit of the cooperative budget per completed operation, however many
        // `WouldBlock`s it took.
        if crate::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        loop {
            match self.reactor.poll_ready(self.index, dir, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.reactor.note_would_block(self.index, dir);
                }
                result => {
                    crate::coop::spend();
                    return Poll::Ready(result);
                }
            }
        }
    }

    /// Runs `op` once without waiting: `WouldBlock` if `dir` is not known to be
    /// ready, or if `op` says so (then `dir` is cleared).
    ///
    /// # Errors
    ///
    /// `WouldBlock`, whatever `op` returns, or an error if the runtime has shut down.
    pub(crate) fn try_io<R>(
        &self,
        dir: Direction,
        op: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        if !self.reactor.is_ready(self.index, dir)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let result = op();
        if let Err(e) = &result
            && e.kind() == io::ErrorKind::WouldBlock
        {
            self.reactor.note_would_block(self.index, dir);
        }
        result
    }
}

/// The current runtime's reactor.
///
/// # Panics
///
/// Outside `block_on`, with a message that says what to do.
fn current_reactor() -> Rc<Reactor> {
    crate::context::current_reactor().unwrap_or_else(|| {
        panic!(
            "an I/O object (socket, `AsyncFd`) was created outside `block_on`; create I/O \
             objects inside the future passed to `edgeloop::block_on`"
        )
    })
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the reactor: its whole table is no one's business here.
        f.debug_struct("Registration")
            .field("fd", &self.fd)
            .field("slot", &self.index)
            .finish()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.reactor.deregister(self.index, self.fd);
    }
}
