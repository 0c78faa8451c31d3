//! [`UnixStream`]: a connected Unix-domain stream socket with async reads and writes.
//!
//! Reads and writes go through `crate::stream_io`, shared with `TcpStream`, which
//! has the readiness rules; its short-read rule holds here too (a Unix stream
//! `recv` copies from every queued buffer until `buf` is full).
//!
//! Connecting differs from TCP: a non-blocking Unix `connect` never says
//! `EINPROGRESS`; it either succeeds at once (the connection waits in the
//! listener's queue until accepted) or, when that queue is full, fails with
//! `EAGAIN` and leaves nothing pending. An unconnected socket polls writable at
//! once, so epoll cannot say when the queue has room: [`UnixStream::connect`]
//! retries after a pause that doubles from 1 ms up to 64 ms.
//!
//! A Linux limit to know: when the peer calls `shutdown(Read)` while this side's
//! writes wait for room, epoll reports nothing (the kernel's poll for Unix sockets
//! has no "peer stopped reading" bit), so a pending `write`/`write_all` waits until
//! the peer closes or reads again, where a blocking write would fail with `EPIPE`.
//! Bound such writes with [`edgeloop_runtime::time::timeout`] if the peer may do
//! that.

use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::task::{Context, Poll};
use std::time::Duration;

use edgeloop_runtime::{AsyncFd, Direction};

use super::split::{self, OwnedReadHalf, OwnedWriteHalf, ReadHalf, WriteHalf};
use super::{SocketAddr, UCred};
use crate::sys::unix::UnixAddr;
use crate::sys::{self, retry};

/// The first pause before retrying a connect that found the listener's queue full.
const CONNECT_RETRY_FIRST: Duration = Duration::from_millis(1);

/// The longest pause between connect attempts; keeps a long wait responsive.
const CONNECT_RETRY_MAX: Duration = Duration::from_millis(64);

/// A connected Unix-domain stream socket.
///
/// Make one with [`connect`](Self::connect), [`UnixListener::accept`] or
/// [`pair`](Self::pair). Read and write with the async methods here
/// ([`read`](Self::read), [`write_all`](Self::write_all), ...), or through the
/// `futures-io` [`AsyncRead`](futures_io::AsyncRead) /
/// [`AsyncWrite`](futures_io::AsyncWrite) traits, which both `UnixStream` and
/// `&UnixStream` implement. To read and write from two tasks at once, use
/// [`into_split`](Self::into_split) (or [`split`](Self::split) within one task).
///
/// Writes use `MSG_NOSIGNAL`: writing to a closed connection gives `BrokenPipe`,
/// never `SIGPIPE`.
///
/// [`UnixListener::accept`]: super::UnixListener::accept
///
/// # Examples
///
/// ```
/// use edgeloop_net::{UnixListener, UnixStream};
///
/// edgeloop_runtime::block_on(async {
///     let path = std::env::temp_dir().join(format!("edgeloop-doc-{}-stream.sock", std::process::id()));
/// #   let _ = std::fs::remove_file(&path);
///     let listener = UnixListener::bind(&path)?;
///     let mut client = UnixStream::connect(&path).await?;
///     let (mut server, _) = listener.accept().await?;
///     client.write_all(b"ping").await?;
///     let mut buf = [0u8; 16];
///     let n = server.read(&mut buf).await?;
///     assert_eq!(&buf[..n], b"ping");
///     assert_eq!(client.peer_addr()?.as_pathname(), Some(path.as_path()));
///     std::fs::remove_file(&path)?;
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UnixStream {
    /// The connected socket, registered with the runtime.
    io: AsyncFd<OwnedFd>,
}

impl UnixStream {
    /// Wraps a connected (or connecting), non-blocking socket.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<UnixStream> {
        // Every stream this crate makes is non-blocking already (`SOCK_NONBLOCK`, or
        // `from_std`'s `set_nonblocking`): no `fcntl`, and no `EPOLL_CTL_ADD` until
        // the stream first has to wait.
        Ok(UnixStream {
            io: AsyncFd::new_deferred(fd)?,
        })
    }

    /// Connects to the listener at `path`; a path whose first byte is NUL
    /// (`"\0name"`) names an abstract address (see the [module docs](super)).
    ///
    /// When the listener's queue of connections not yet accepted is full, the
    /// kernel refuses at once with `EAGAIN` and keeps nothing pending; this future
    /// then tries again after a pause (1 ms, doubling up to 64 ms) until the
    /// connect succeeds or fails otherwise. Wrap it in a timeout to bound the wait.
    ///
    /// # Errors
    ///
    /// `NotFound` if nothing exists at `path`, `ConnectionRefused` if it is a
    /// socket file nobody listens on (for example one left by a dropped listener),
    /// `PermissionDenied` without write permission on the file, `InvalidInput` for
    /// a path that cannot be a socket address (empty, too long, holding a NUL).
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop_net::{UnixListener, UnixStream};
    ///
    /// edgeloop_runtime::block_on(async {
    ///     // An abstract address: no file to clean up.
    ///     let name = format!("\0edgeloop-doc-{}-connect", std::process::id());
    ///     let listener = UnixListener::bind(&name)?;
    ///     let client = UnixStream::connect(&name).await?;
    ///     let (_server, _) = listener.accept().await?;
    ///     let peer = client.peer_addr()?;
    ///     assert_eq!(peer.as_abstract_name(), Some(&name.as_bytes()[1..]));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let addr = UnixAddr::new(&SocketAddr::from_path(path.as_ref())?)?;
        let stream = UnixStream::from_fd(sys::socket(libc::AF_UNIX, libc::SOCK_STREAM)?)?;
        let mut pause = CONNECT_RETRY_FIRST;
        loop {
            match retry(|| sys::unix::connect(stream.io.as_fd(), &addr)) {
                Ok(()) => return Ok(stream),
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    edgeloop_runtime::time::sleep(pause).await;
                    pause = (pause * 2).min(CONNECT_RETRY_MAX);
                }
                // Not returned by Linux for Unix sockets today; handled as for TCP in
                // case that changes: wait until writable, then read SO_ERROR.
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                    stream.io.clear_ready(Direction::Write);
                    poll_fn(|cx| stream.io.poll_ready(Direction::Write, cx)).await?;
                    let error =
                        sys::getsockopt_int(stream.io.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR)?;
                    if error != 0 {
                        return Err(io::Error::from_raw_os_error(error));
                    }
                    return Ok(stream);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates a pair of connected, unnamed sockets (`socketpair`), for example to
    /// talk between two tasks, or with a child process.
    ///
    /// # Errors
    ///
    /// What `socketpair` returns, e.g. `EMFILE` at the fd limit.
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop_net::UnixStream;
    ///
    /// edgeloop_runtime::block_on(async {
    ///     let (mut a, mut b) = UnixStream::pair()?;
    ///     a.write_all(b"hello").await?;
    ///     let mut buf = [0u8; 8];
    ///     let n = b.read(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"hello");
    ///     assert!(a.local_addr()?.is_unnamed());
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = sys::unix::socketpair(libc::SOCK_STREAM)?;
        Ok((UnixStream::from_fd(a)?, UnixStream::from_fd(b)?))
    }

    /// Reads into `buf`; returns how many bytes were read, `0` at EOF (or if `buf` is
    /// empty).
    ///
    /// Cancel-safe: if the future is dropped before it completes, no data was read.
    ///
    /// # Errors
    ///
    /// What `recv` returns, e.g. `ConnectionReset`.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read_priv(cx, buf)).await
    }

    /// Writes some of `buf`; returns how many bytes were written.
    ///
    /// Cancel-safe: if the future is dropped before it completes, nothing was written.
    ///
    /// # Errors
    ///
    /// What `send` returns, e.g. `BrokenPipe` after the peer closed.
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_write_priv(cx, buf)).await
    }

    /// Writes all of `buf`.
    ///
    /// Not cancel-safe: if the future is dropped before it completes, part of `buf`
    /// may have been written.
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write); `WriteZero` if the socket accepted nothing.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_all_priv(buf).await
    }

    /// Reads into `buf` without removing the data from the socket's queue.
    ///
    /// # Errors
    ///
    /// What `recv(MSG_PEEK)` returns.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| {
            self.io.poll_io(Direction::Read, cx, |fd| {
                retry(|| sys::recv(fd.as_fd(), buf, libc::MSG_PEEK))
            })
        })
        .await
    }

    /// Reads without waiting: `WouldBlock` if no data is known to be there.
    ///
    /// A read that fills less than `buf` means the socket is drained: readiness is
    /// cleared, so the next [`readable`](Self::readable) waits for new data instead
    /// of the next `try_read` paying a `recv` that says `EAGAIN`.
    ///
    /// # Errors
    ///
    /// `WouldBlock`, or what `recv` returns.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        crate::stream_io::try_read(&self.io, buf)
    }

    /// Writes without waiting: `WouldBlock` if the socket is not known to be writable.
    ///
    /// # Errors
    ///
    /// `WouldBlock`, or what `send` returns.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        crate::stream_io::try_write(&self.io, buf)
    }

    /// Waits until the socket may be readable (data, EOF or an error is there).
    ///
    /// Readiness can be a false positive (a new stream starts out "ready"): follow
    /// it with [`try_read`](Self::try_read) and wait again on `WouldBlock`.
    ///
    /// # Errors
    ///
    /// If the runtime is gone or re-arming fails.
    pub async fn readable(&self) -> io::Result<()> {
        poll_fn(|cx| self.io.poll_ready(Direction::Read, cx)).await
    }

    /// Waits until the socket may be writable.
    ///
    /// Readiness can be a false positive: follow it with
    /// [`try_write`](Self::try_write) and wait again on `WouldBlock`.
    ///
    /// # Errors
    ///
    /// If the runtime is gone or re-arming fails.
    pub async fn writable(&self) -> io::Result<()> {
        poll_fn(|cx| self.io.poll_ready(Direction::Write, cx)).await
    }

    /// Shuts down the read side, the write side, or both (`shutdown(2)`). After
    /// `Shutdown::Write` the peer reads EOF once it has read everything sent before,
    /// and can still write back.
    ///
    /// # Errors
    ///
    /// What `shutdown` returns, e.g. `NotConnected`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        sys::shutdown(self.io.as_fd(), how)
    }

    /// The address of the other end: the listener's path (or abstract name) for a
    /// client, usually unnamed for an accepted stream or a [`pair`](Self::pair).
    ///
    /// # Errors
    ///
    /// What `getpeername` returns, e.g. `NotConnected`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sys::unix::getpeername(self.io.as_fd())
    }

    /// The address of this end: unnamed for a client, the listener's address for
    /// an accepted stream.
    ///
    /// # Errors
    ///
    /// What `getsockname` returns.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::unix::getsockname(self.io.as_fd())
    }

    /// The credentials (user, group, process) of the peer, as recorded when the
    /// connection was made (`SO_PEERCRED`).
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn peer_cred(&self) -> io::Result<UCred> {
        sys::unix::peer_cred(self.io.as_fd())
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

    /// Wraps a connected stream from the standard library, making it non-blocking.
    ///
    /// # Errors
    ///
    /// If the socket cannot be made non-blocking. (It is added to the runtime's epoll
    /// set when it first has to wait; an error from that comes from that wait.)
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        Self::from_fd(OwnedFd::from(stream))
    }

    /// Deregisters the stream and returns it as a standard-library stream. It stays
    /// non-blocking; call `set_nonblocking(false)` for blocking use.
    ///
    /// # Errors
    ///
    /// None today; kept fallible like tokio's.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixStream> {
        Ok(std::os::unix::net::UnixStream::from(self.io.into_inner()))
    }

    /// Borrows the stream as a read half and a write half, to read and write
    /// concurrently within one task (for example with a `join`).
    ///
    /// With `futures::AsyncReadExt` in scope, `stream.split()` calls that trait's
    /// `split(self)` instead: method lookup tries the by-value receiver before
    /// `&mut`. Write `UnixStream::split(&mut stream)` to be sure.
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (ReadHalf::new(self), WriteHalf::new(self))
    }

    /// Splits the stream into halves that can move into two tasks. Dropping the
    /// write half shuts down the write side; [`OwnedReadHalf::reunite`] puts them
    /// back together.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        split::split_owned(self)
    }

    /// `recv` into `buf`, waiting while there is nothing to read.
    pub(crate) fn poll_read_priv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        crate::stream_io::poll_read(&self.io, cx, buf)
    }

    /// `send` from `buf`, waiting while the send buffer is full.
    pub(crate) fn poll_write_priv(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        crate::stream_io::poll_write(&self.io, cx, buf)
    }

    /// Writes all of `buf`.
    pub(crate) async fn write_all_priv(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = poll_fn(|cx| self.poll_write_priv(cx, buf)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }
}

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

impl_async_io!(io UnixStream, |s| s);
impl_async_io!(io & UnixStream, |s| s);
