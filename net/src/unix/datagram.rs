//! [`UnixDatagram`]: a Unix-domain datagram socket. Datagrams keep their
//! boundaries, are never reordered, and are reliable on Linux: a sender waits
//! (here: its future is pending) while the receiver's queue is full, instead of
//! the datagram being dropped.
//!
//! Reads do not use the stream's short-read rule: a datagram shorter than the
//! buffer says nothing about whether more are queued, so the read direction is
//! cleared only when `recv` says `EAGAIN`.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use edgeloop_runtime::{AsyncFd, Direction};

use super::SocketAddr;

/// First pause of [`UnixDatagram::send_to`] after `EAGAIN`, and the longest.
const SEND_TO_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(1);
const SEND_TO_RETRY_MAX: std::time::Duration = std::time::Duration::from_millis(16);
use super::addr::explain_bind_error;
use crate::sys::unix::UnixAddr;
use crate::sys::{self, retry};

/// A Unix-domain datagram socket.
///
/// Make one bound to a path with [`bind`](Self::bind), without an address with
/// [`unbound`](Self::unbound), or as a connected pair with [`pair`](Self::pair).
/// Send with [`send_to`](Self::send_to), or [`connect`](Self::connect) once and
/// then [`send`](Self::send); receive with [`recv`](Self::recv) or
/// [`recv_from`](Self::recv_from). Each call sends or receives exactly one
/// datagram; one longer than the receiving buffer is cut to fit and the rest is
/// lost.
///
/// Like [`UnixListener`](super::UnixListener), a bound socket never removes its
/// socket file; the caller does.
///
/// # Examples
///
/// ```
/// use edgeloop_net::UnixDatagram;
///
/// edgeloop_runtime::block_on(async {
///     let path = std::env::temp_dir().join(format!("edgeloop-doc-{}-datagram.sock", std::process::id()));
/// #   let _ = std::fs::remove_file(&path);
///     let server = UnixDatagram::bind(&path)?;
///     let client = UnixDatagram::unbound()?;
///     client.send_to(b"one", &path).await?;
///     client.send_to(b"two", &path).await?;
///     let mut buf = [0u8; 16];
///     let (n, from) = server.recv_from(&mut buf).await?;
///     assert_eq!(&buf[..n], b"one"); // boundaries are kept
///     assert!(from.is_unnamed()); // an unbound sender cannot be answered
///     let n = server.recv(&mut buf).await?;
///     assert_eq!(&buf[..n], b"two");
///     std::fs::remove_file(&path)?;
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UnixDatagram {
    /// The socket, registered with the runtime.
    io: AsyncFd<OwnedFd>,
}

impl UnixDatagram {
    fn from_fd(fd: OwnedFd) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            io: AsyncFd::new(fd)?,
        })
    }

    /// Creates a socket bound to `path`, which others can send to. A path whose
    /// first byte is NUL (`"\0name"`) names an abstract address.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if `path` exists or the abstract name is taken, with the address
    /// in the message (the existing file is left as it was); `NotFound`,
    /// `PermissionDenied` or `InvalidInput` as for
    /// [`UnixListener::bind`](super::UnixListener::bind).
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        let addr = SocketAddr::from_path(path.as_ref())?;
        let raw = UnixAddr::new(&addr)?;
        // Registered before binding, so that calling this outside a runtime panics
        // before a socket file is created.
        let socket = UnixDatagram::unbound()?;
        sys::unix::bind(socket.io.as_fd(), &raw).map_err(|e| explain_bind_error(e, &addr))?;
        Ok(socket)
    }

    /// Creates a socket with no address. It can send (with
    /// [`send_to`](Self::send_to), or [`send`](Self::send) after
    /// [`connect`](Self::connect)), but receivers see it as unnamed and cannot
    /// answer unless it is connected to them.
    ///
    /// # Errors
    ///
    /// What `socket` returns, e.g. `EMFILE` at the fd limit.
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop_net::UnixDatagram;
    ///
    /// edgeloop_runtime::block_on(async {
    ///     let socket = UnixDatagram::unbound()?;
    ///     assert!(socket.local_addr()?.is_unnamed());
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_fd(sys::socket(libc::AF_UNIX, libc::SOCK_DGRAM)?)
    }

    /// Creates a pair of unnamed sockets connected to each other (`socketpair`).
    ///
    /// # Errors
    ///
    /// What `socketpair` returns.
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop_net::UnixDatagram;
    ///
    /// edgeloop_runtime::block_on(async {
    ///     let (a, b) = UnixDatagram::pair()?;
    ///     a.send(b"hello").await?;
    ///     let mut buf = [0u8; 8];
    ///     let n = b.recv(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"hello");
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = sys::unix::socketpair(libc::SOCK_DGRAM)?;
        Ok((UnixDatagram::from_fd(a)?, UnixDatagram::from_fd(b)?))
    }

    /// Sets the default destination to `path` (a path whose first byte is NUL names
    /// an abstract address): [`send`](Self::send) then sends there, and only
    /// datagrams from that address are received. It does not wait: a datagram
    /// `connect` only records the address.
    ///
    /// # Errors
    ///
    /// `NotFound` if nothing exists at `path`, `ConnectionRefused` if it is a
    /// socket file nobody is bound to, `InvalidInput` for a path that cannot be a
    /// socket address.
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let addr = UnixAddr::new(&SocketAddr::from_path(path.as_ref())?)?;
        retry(|| sys::unix::connect(self.io.as_fd(), &addr))
    }

    /// Sends `buf` as one datagram to the connected address; returns its length.
    ///
    /// Cancel-safe: if the future is dropped before it completes, nothing was sent.
    ///
    /// # Errors
    ///
    /// `NotConnected` if not connected; `ConnectionRefused` if the peer has closed
    /// (once; `NotConnected` after that); `EMSGSIZE` for a datagram larger than the
    /// send buffer.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io
            .io(Direction::Write, |fd| retry(|| sys::send(fd.as_fd(), buf)))
            .await
    }

    /// Sends `buf` as one datagram to `path` (a path whose first byte is NUL names
    /// an abstract address); returns its length.
    ///
    /// Cancel-safe: if the future is dropped before it completes, nothing was sent.
    ///
    /// While the receiver's queue is full the kernel says `EAGAIN`, yet an
    /// unconnected socket still polls writable, so epoll cannot say when to retry:
    /// this future then retries after a pause (1 ms, doubling up to 16 ms) instead
    /// of spinning (tokio's spins). [`connect`](Self::connect) and
    /// [`send`](Self::send) are woken precisely instead.
    ///
    /// # Errors
    ///
    /// `NotFound` if nothing exists at `path`, `ConnectionRefused` if nothing is
    /// bound there (any more), `InvalidInput` for a path that cannot be a socket
    /// address, `EMSGSIZE` for a datagram larger than the send buffer.
    pub async fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        let addr = UnixAddr::new(&SocketAddr::from_path(path.as_ref())?)?;
        let mut pause = SEND_TO_RETRY_FIRST;
        loop {
            self.io.writable().await?;
            match retry(|| sys::unix::sendto(self.io.as_fd(), buf, &addr)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Full: the receiver's queue (most likely), for which no
                    // readiness event will come, or our own send buffer. Pausing
                    // covers both without spinning.
                    edgeloop_runtime::time::sleep(pause).await;
                    pause = (pause * 2).min(SEND_TO_RETRY_MAX);
                }
                other => return other,
            }
        }
    }

    /// Receives one datagram into `buf`; returns how many bytes were stored. A
    /// datagram longer than `buf` is cut to `buf.len()` bytes and the rest is lost.
    ///
    /// Cancel-safe: if the future is dropped before it completes, nothing was
    /// received.
    ///
    /// # Errors
    ///
    /// What `recv` returns.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .io(Direction::Read, |fd| {
                retry(|| sys::recv(fd.as_fd(), buf, 0))
            })
            .await
    }

    /// Receives one datagram into `buf`, as [`recv`](Self::recv); also returns the
    /// sender's address (unnamed for an unbound sender).
    ///
    /// # Errors
    ///
    /// What `recvfrom` returns.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .io(Direction::Read, |fd| {
                retry(|| sys::unix::recvfrom(fd.as_fd(), buf, 0))
            })
            .await
    }

    /// Copies the next datagram into `buf` without removing it from the queue.
    ///
    /// # Errors
    ///
    /// What `recv(MSG_PEEK)` returns.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .io(Direction::Read, |fd| {
                retry(|| sys::recv(fd.as_fd(), buf, libc::MSG_PEEK))
            })
            .await
    }

    /// Copies the next datagram into `buf` without removing it from the queue, and
    /// returns its sender's address too.
    ///
    /// # Errors
    ///
    /// What `recvfrom(MSG_PEEK)` returns.
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .io(Direction::Read, |fd| {
                retry(|| sys::unix::recvfrom(fd.as_fd(), buf, libc::MSG_PEEK))
            })
            .await
    }

    /// The address this socket is bound to (unnamed if it is not).
    ///
    /// # Errors
    ///
    /// What `getsockname` returns.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::unix::getsockname(self.io.as_fd())
    }

    /// The address this socket is connected to.
    ///
    /// # Errors
    ///
    /// `NotConnected` if it is not connected.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sys::unix::getpeername(self.io.as_fd())
    }

    /// Shuts down the read side, the write side, or both (`shutdown(2)`).
    ///
    /// # Errors
    ///
    /// What `shutdown` returns.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        sys::shutdown(self.io.as_fd(), how)
    }

    /// The socket's pending error (`SO_ERROR`), cleared by reading it.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let error = sys::getsockopt_int(self.io.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR)?;
        Ok((error != 0).then(|| io::Error::from_raw_os_error(error)))
    }

    /// Wraps a socket from the standard library, making it non-blocking.
    ///
    /// # Errors
    ///
    /// If the socket cannot be made non-blocking or registered.
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    pub fn from_std(socket: std::os::unix::net::UnixDatagram) -> io::Result<UnixDatagram> {
        socket.set_nonblocking(true)?;
        Self::from_fd(OwnedFd::from(socket))
    }

    /// Deregisters the socket and returns it as a standard-library socket (still
    /// non-blocking).
    ///
    /// # Errors
    ///
    /// None today; kept fallible like tokio's.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixDatagram> {
        Ok(std::os::unix::net::UnixDatagram::from(self.io.into_inner()))
    }
}

impl AsFd for UnixDatagram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl AsRawFd for UnixDatagram {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}
