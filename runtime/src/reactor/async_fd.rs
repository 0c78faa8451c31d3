//! [`AsyncFd`]: the public readiness API. It owns an I/O object and its
//! registration in the current runtime's epoll set, so the fd cannot be closed
//! while the reactor still refers to it by number.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Direction, Registration};

/// An I/O object (anything [`AsFd`]: a socket, a pipe, an eventfd...) registered with
/// the current runtime's epoll, with per-direction readiness.
///
/// Every operation has the same shape: try the syscall; on `WouldBlock`, call
/// [`clear_ready`](Self::clear_ready), await [`poll_ready`](Self::poll_ready), and
/// loop. [`poll_io`](Self::poll_io) is that loop written once, and
/// [`read_with`](Self::read_with) / [`write_with`](Self::write_with) are its `async`
/// forms. [`new`](Self::new) puts the fd in non-blocking mode (`O_NONBLOCK` is a
/// property of the open file, so a shared one, such as a terminal's stdin, turns
/// non-blocking for every process using it, as with tokio and smol).
///
/// With `T: Read` / `T: Write`, it implements `futures-io`'s `AsyncRead` /
/// `AsyncWrite`, so `futures-util`'s `AsyncReadExt`, `BufReader`, `lines` and
/// `copy` work on it. This is edgeloop's answer to smol's `Async<T>`: one type,
/// tokio's name.
///
/// Dropping an `AsyncFd` deletes the fd from the epoll set (`EPOLL_CTL_DEL`) and then
/// drops the object, which closes it; [`into_inner`](Self::into_inner) deregisters
/// and gives the object back instead. Several tasks may wait on one direction at once
/// (two acceptors on one listener, say): all are woken.
///
/// An `AsyncFd` is tied to the thread and runtime that created it (`!Send`). If it
/// outlives that runtime, its operations fail with an error that says so. Like
/// tokio's `AsyncFd`, it must not be used on an object whose fd changes.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
/// use edgeloop_runtime::{AsyncFd, Direction};
///
/// edgeloop_runtime::block_on(async {
///     let (a, mut b) = UnixStream::pair()?;
///     a.set_nonblocking(true)?;
///     let a = AsyncFd::new(a)?;
///     b.write_all(b"hi")?;
///     let mut buf = [0u8; 8];
///     let n = a.io(Direction::Read, |mut s| s.read(&mut buf)).await?;
///     assert_eq!(&buf[..n], b"hi");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct AsyncFd<T: AsFd> {
    /// Declared before `io`: fields drop in order, so the fd leaves the epoll set
    /// before the object closes it.
    registration: Registration,
    /// The registered object.
    io: T,
}

impl<T: AsFd> AsyncFd<T> {
    /// Registers `io` with the current runtime's epoll set (`EPOLL_CTL_ADD` with
    /// `EPOLLET|EPOLLONESHOT`). Both directions start out ready, so the first syscall
    /// is simply tried.
    ///
    /// # Errors
    ///
    /// What `epoll_ctl` returns, e.g. `EPERM` for a regular file, which epoll cannot
    /// watch, or `EEXIST` if this fd is registered already.
    ///
    /// # Panics
    ///
    /// If called outside [`block_on`](crate::block_on).
    pub fn new(io: T) -> io::Result<Self> {
        // Registered first: if epoll refuses the fd (or this panics outside a
        // runtime), its shared `O_NONBLOCK` flag is left as it was.
        let registration = Registration::new(io.as_fd())?;
        crate::sys::fcntl::set_nonblocking(io.as_fd())?;
        Ok(AsyncFd { registration, io })
    }

    /// Like [`new`](Self::new), for an object that is non-blocking already (a socket
    /// from `accept4(SOCK_NONBLOCK)`, say), without any syscall (in release builds:
    /// debug builds check `O_NONBLOCK` with one `fcntl`): the fd is added to
    /// the epoll set (`EPOLL_CTL_ADD`, armed for what the task waits for) the first
    /// time a task has to wait on it. A connection whose data is there when it is
    /// first read costs no epoll call until it must wait, and one that never waits
    /// costs neither an ADD nor a DEL. `edgeloop-net` uses it for accepted sockets.
    ///
    /// The object must be in non-blocking mode: this does not set `O_NONBLOCK`
    /// (debug builds check it and panic if not). A blocking object would block the
    /// whole runtime in its first read or write.
    ///
    /// # Errors
    ///
    /// If the runtime has shut down. What `epoll_ctl` would refuse (`EPERM` for a
    /// regular file, `EEXIST` for an fd registered already) is reported by the
    /// first wait instead of here.
    ///
    /// # Panics
    ///
    /// If called outside [`block_on`](crate::block_on); in debug builds, if the object
    /// is not in non-blocking mode.
    pub fn new_deferred(io: T) -> io::Result<Self> {
        debug_assert!(
            crate::sys::fcntl::is_nonblocking(io.as_fd()).unwrap_or(true),
            "`AsyncFd::new_deferred` needs a non-blocking object; use `AsyncFd::new`, \
             which sets O_NONBLOCK"
        );
        let registration = Registration::new_deferred(io.as_fd())?;
        Ok(AsyncFd { registration, io })
    }

    /// The registered object.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The registered object, mutably. Do not replace its fd.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.io
    }

    /// Waits until the fd is readable (see [`ready`](Self::ready)).
    ///
    /// # Errors
    ///
    /// As [`poll_ready`](Self::poll_ready).
    pub async fn readable(&self) -> io::Result<()> {
        self.ready(Direction::Read).await
    }

    /// Waits until the fd is writable (see [`ready`](Self::ready)).
    ///
    /// # Errors
    ///
    /// As [`poll_ready`](Self::poll_ready).
    pub async fn writable(&self) -> io::Result<()> {
        self.ready(Direction::Write).await
    }

    /// Runs `op` until it does not say `WouldBlock`, waiting for readability before
    /// each retry (smol's name; [`io`](Self::io) with [`Direction::Read`]).
    ///
    /// # Errors
    ///
    /// Whatever `op` returns other than `WouldBlock`.
    pub async fn read_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.io(Direction::Read, op).await
    }

    /// [`read_with`](Self::read_with) with the object borrowed mutably.
    ///
    /// # Errors
    ///
    /// Whatever `op` returns other than `WouldBlock`.
    pub async fn read_with_mut<R>(
        &mut self,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        poll_fn(|cx| {
            let AsyncFd { registration, io } = &mut *self;
            registration.poll_io(Direction::Read, cx, || op(io))
        })
        .await
    }

    /// Runs `op` until it does not say `WouldBlock`, waiting for writability before
    /// each retry ([`io`](Self::io) with [`Direction::Write`]).
    ///
    /// # Errors
    ///
    /// Whatever `op` returns other than `WouldBlock`.
    pub async fn write_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        self.io(Direction::Write, op).await
    }

    /// [`write_with`](Self::write_with) with the object borrowed mutably.
    ///
    /// # Errors
    ///
    /// Whatever `op` returns other than `WouldBlock`.
    pub async fn write_with_mut<R>(
        &mut self,
        mut op: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        poll_fn(|cx| {
            let AsyncFd { registration, io } = &mut *self;
            registration.poll_io(Direction::Write, cx, || op(io))
        })
        .await
    }

    /// Deregisters and returns the object, still open.
    pub fn into_inner(self) -> T {
        let AsyncFd { registration, io } = self;
        drop(registration);
        io
    }

    /// Polls `dir` for readiness.
    ///
    /// `Ready(Ok(()))` means the last event said ready and no syscall has said
    /// `EAGAIN` since: try the operation. `Pending` means the task is stored as a
    /// waiter and the fd is armed (`EPOLL_CTL_MOD`, or `EPOLL_CTL_ADD` for the first
    /// wait of a [`new_deferred`](Self::new_deferred) one; only if not armed already
    /// for `dir`); the task is woken when the kernel reports `dir`, a hang-up or an error.
    ///
    /// # Errors
    ///
    /// If re-arming fails, or the runtime has shut down.
    pub fn poll_ready(&self, dir: Direction, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.registration.poll_ready(dir, cx)
    }

    /// Waits until `dir` is ready. Readiness can be spurious: the operation may still
    /// say `WouldBlock`, after which call [`clear_ready`](Self::clear_ready) and wait
    /// again (or use [`io`](Self::io), which does all of it).
    ///
    /// # Errors
    ///
    /// As [`poll_ready`](Self::poll_ready).
    pub async fn ready(&self, dir: Direction) -> io::Result<()> {
        poll_fn(|cx| self.poll_ready(dir, cx)).await
    }

    /// Forgets that `dir` is ready. Call it when a syscall returned `WouldBlock` (or a
    /// read on a stream came back short, which means the socket is drained); the next
    /// [`poll_ready`](Self::poll_ready) then re-arms the fd and waits.
    pub fn clear_ready(&self, dir: Direction) {
        self.registration.clear_ready(dir);
    }

    /// Runs `op` on the object once `dir` is ready, and again after each
    /// `WouldBlock` once the fd is ready again. `WouldBlock` never escapes: it means
    /// "wait".
    ///
    /// # Errors
    ///
    /// Whatever `op` returns other than `WouldBlock`, or an error from
    /// [`poll_ready`](Self::poll_ready).
    pub fn poll_io<R>(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.registration.poll_io(dir, cx, || op(&self.io))
    }

    /// [`poll_io`](Self::poll_io) as an `async fn`.
    ///
    /// # Errors
    ///
    /// As [`poll_io`](Self::poll_io).
    pub async fn io<R>(
        &self,
        dir: Direction,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        poll_fn(|cx| self.poll_io(dir, cx, &mut op)).await
    }

    /// Runs `op` once without waiting: `WouldBlock` if `dir` is not known to be
    /// ready, or if `op` says so (then `dir` is cleared).
    ///
    /// # Errors
    ///
    /// `WouldBlock`, whatever `op` returns, or an error if the runtime has shut down.
    pub fn try_io<R>(&self, dir: Direction, op: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R> {
        self.registration.try_io(dir, || op(&self.io))
    }
}

/// Reads through `T`'s [`Read`](io::Read), waiting for readability on `WouldBlock`.
impl<T: AsFd + io::Read + Unpin> futures_io::AsyncRead for AsyncFd<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let AsyncFd { registration, io } = self.get_mut();
        registration.poll_io(Direction::Read, cx, || io.read(buf))
    }
}

/// Writes through `T`'s [`Write`](io::Write), waiting for writability on
/// `WouldBlock`. `poll_close` flushes; closing the fd is dropping the `AsyncFd`.
impl<T: AsFd + io::Write + Unpin> futures_io::AsyncWrite for AsyncFd<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let AsyncFd { registration, io } = self.get_mut();
        registration.poll_io(Direction::Write, cx, || io.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let AsyncFd { registration, io } = self.get_mut();
        registration.poll_io(Direction::Write, cx, || io.flush())
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl<T: AsFd> AsFd for AsyncFd<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl<T: AsFd> AsRawFd for AsyncFd<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_fd().as_raw_fd()
    }
}

impl<T: AsFd + fmt::Debug> fmt::Debug for AsyncFd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFd")
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{bounded, socket_pair};
    use crate::{block_on, spawn, yield_now};
    use std::io::{Read, Write};
    use std::rc::Rc;

    fn registrations() -> usize {
        crate::context::current_reactor()
            .expect("inside block_on")
            .registrations()
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
    fn into_inner_deregisters_and_leaves_the_fd_open() -> io::Result<()> {
        bounded("into_inner_deregisters_and_leaves_the_fd_open", || {
            block_on(async {
                let (a, mut b) = socket_pair()?;
                let a = AsyncFd::new(a)?;
                assert_eq!(registrations(), 1);
                let mut a = a.into_inner();
                assert_eq!(registrations(), 0, "registrations after into_inner");
                b.write_all(b"still open")?;
                let mut buf = [0_u8; 10];
                a.set_nonblocking(false)?;
                a.read_exact(&mut buf)?;
                assert_eq!(&buf, b"still open");
                // It can be registered again: EPOLL_CTL_DEL really happened.
                let again = AsyncFd::new(a)?;
                assert_eq!(registrations(), 1);
                drop(again);
                assert_eq!(registrations(), 0, "registrations after drop");
                Ok(())
            })
        })
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
    fn every_task_waiting_on_one_direction_is_woken() -> io::Result<()> {
        bounded("every_task_waiting_on_one_direction_is_woken", || {
            block_on(async {
                let (a, mut b) = socket_pair()?;
                let a = Rc::new(AsyncFd::new(a)?);
                a.clear_ready(Direction::Read);
                let waiters: Vec<_> = (0..3)
                    .map(|_| {
                        let a = a.clone();
                        spawn(async move { a.ready(Direction::Read).await })
                    })
                    .collect();
                yield_now().await; // all three are now waiting
                assert!(
                    waiters.iter().all(|w| !w.is_finished()),
                    "woken before data"
                );
                b.write_all(b"x")?;
                for (i, w) in waiters.into_iter().enumerate() {
                    w.await
                        .unwrap_or_else(|e| panic!("waiter {i}: {e}"))
                        .unwrap_or_else(|e| panic!("waiter {i}: {e}"));
                }
                let n = a
                    .io(Direction::Read, |mut s| s.read(&mut [0_u8; 4]))
                    .await?;
                assert_eq!(n, 1, "bytes read");
                Ok(())
            })
        })
    }

    #[test]
    #[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
    fn io_reads_what_another_thread_writes() -> io::Result<()> {
        bounded("io_reads_what_another_thread_writes", || {
            block_on(async {
                let (a, b) = socket_pair()?;
                let a = AsyncFd::new(a)?;
                let writer = std::thread::spawn(move || {
                    let mut b = b;
                    // Ignored: the reader asserts on what arrives.
                    let _ = b.write_all(b"late");
                });
                let mut buf = [0_u8; 4];
                let mut got = 0;
                while got < 4 {
                    got += a
                        .io(Direction::Read, |mut s| s.read(&mut buf[got..]))
                        .await?;
                }
                assert_eq!(&buf, b"late");
                writer.join().expect("writer thread");
                Ok(())
            })
        })
    }
}
