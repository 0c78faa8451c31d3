//! [`TcpListener`]: accepts connections; [`Incoming`]: the same as a `Stream`.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use edgeloop_runtime::{AsyncFd, Direction};
use futures_core::Stream;

use super::TcpStream;
use crate::accept::{AcceptPause, poll_skipping_per_connection_errors};
use crate::addr::ToSocketAddrs;
use crate::sys;

/// Backlog of pending connections passed to `listen` (the kernel caps it at
/// `net.core.somaxconn`).
const BACKLOG: i32 = 1024;

/// A TCP socket server, listening for connections.
///
/// Created with [`bind`](TcpListener::bind); sockets are `SOCK_NONBLOCK |
/// SOCK_CLOEXEC`, the listener has `SO_REUSEADDR` and a backlog of 1024.
///
/// # Examples
///
/// ```
/// use edgeloop_net::{TcpListener, TcpStream};
///
/// edgeloop_runtime::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await?;
///     let addr = listener.local_addr()?;
///     let client = TcpStream::connect(addr).await?;
///     let (server_side, peer) = listener.accept().await?;
///     assert_eq!(peer, client.local_addr()?);
///     assert_eq!(server_side.peer_addr()?, client.local_addr()?);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TcpListener {
    /// The listening socket, registered with the runtime.
    io: AsyncFd<OwnedFd>,
}

impl TcpListener {
    /// Binds to `addr` and listens. If `addr` names several addresses, each is tried in
    /// turn and the first that binds is used.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if the port is taken, `InvalidInput` (naming the text) for an
    /// address that does not parse, or the last error of the addresses tried.
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let mut last_error = None;
        for addr in crate::addr::resolve(&addr).await? {
            match Self::bind_one(&addr) {
                Ok(listener) => return Ok(listener),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            )
        }))
    }

    fn bind_one(addr: &SocketAddr) -> io::Result<TcpListener> {
        let fd = sys::socket(sys::domain_of(addr), libc::SOCK_STREAM)?;
        sys::setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        sys::bind(fd.as_fd(), addr)?;
        sys::listen(fd.as_fd(), BACKLOG)?;
        Self::from_fd(fd)
    }

    /// Wraps a listening, non-blocking socket.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<TcpListener> {
        Ok(TcpListener {
            io: AsyncFd::new(fd)?,
        })
    }

    /// Waits for a connection; returns the new stream and the peer's address.
    ///
    /// Cancel-safe: if the future is dropped before it completes, no connection was
    /// taken from the queue. Several tasks may await `accept` on one listener at once.
    ///
    /// At the fd limit it does not fail, nor spin: when `accept4` says `EMFILE` or
    /// `ENFILE` (or `ENOBUFS`/`ENOMEM`), it waits until the runtime closes an fd (a
    /// connection ends) or a back-off passes (1 ms, doubling up to 100 ms while the
    /// shortage lasts), then tries again; the connection waits in the kernel's
    /// queue meanwhile. Each pause counts one
    /// [`fd_release_waits`](edgeloop_runtime::RuntimeMetrics::fd_release_waits).
    /// Errors that concern one pending connection (`ECONNABORTED` for one reset
    /// before it was accepted, and the network errors accept(2) says to treat like
    /// `EAGAIN`) are skipped, so `listener.accept().await?` in a loop never ends a
    /// server over one client.
    ///
    /// # Errors
    ///
    /// Only errors that concern the listener itself (e.g. `EINVAL` if it is not
    /// listening), or registering the new socket with the runtime.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let mut pause = AcceptPause::new();
        poll_fn(|cx| pause.poll(cx, |cx| self.poll_accept(cx))).await
    }

    /// Polls for a connection. On `Pending`, the task is woken when one arrives.
    ///
    /// The low-level path: unlike [`accept`](Self::accept) it does not pause at the
    /// fd limit.
    ///
    /// # Errors
    ///
    /// What `accept4` returns other than the per-connection errors that
    /// [`accept`](Self::accept) skips too, e.g. `EMFILE` at
    /// the fd limit, which does not break the listener: wait for an fd to be
    /// released ([`wait_for_fd_release`](edgeloop_runtime::wait_for_fd_release)) and
    /// poll again.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let (fd, peer) = ready!(poll_skipping_per_connection_errors(cx, |cx| {
            self.io.poll_io(Direction::Read, cx, |fd| {
                sys::retry(|| sys::accept4(fd.as_fd()))
            })
        }))?;
        Poll::Ready(TcpStream::from_fd(fd).map(|s| (s, peer)))
    }

    /// The address this listener is bound to (with the port the kernel picked, for
    /// port 0).
    ///
    /// # Errors
    ///
    /// What `getsockname` returns.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::getsockname(self.io.as_fd())
    }

    /// A [`Stream`] of accepted connections, which never ends. It pauses at the fd
    /// limit as [`accept`](Self::accept) does.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming {
            listener: self,
            pause: AcceptPause::new(),
        }
    }

    /// Wraps a listener from the standard library, making it non-blocking.
    ///
    /// # Errors
    ///
    /// If the socket cannot be made non-blocking or registered.
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        Self::from_fd(OwnedFd::from(listener))
    }

    /// Deregisters the listener and returns it as a standard-library listener (still
    /// non-blocking).
    ///
    /// # Errors
    ///
    /// None today; kept fallible like tokio's.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        Ok(std::net::TcpListener::from(self.io.into_inner()))
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

/// Stream of accepted connections, from [`TcpListener::incoming`].
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct Incoming<'a> {
    /// The listener accepted from.
    listener: &'a TcpListener,
    /// The pause at the fd limit, if one is in progress.
    pause: AcceptPause,
}

impl Stream for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Incoming { listener, pause } = self.get_mut();
        pause
            .poll(cx, |cx| listener.poll_accept(cx))
            .map(|r| Some(r.map(|(stream, _peer)| stream)))
    }
}
