//! [`TcpStream`]: a connected TCP socket with async reads and writes (through
//! `crate::stream_io`, shared with `UnixStream`, which has the readiness rules).

use std::future::poll_fn;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::task::{Context, Poll};

use edgeloop_runtime::{AsyncFd, Direction};

use super::split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, WriteHalf};
use crate::addr::ToSocketAddrs;
use crate::sys::{self, retry};

/// A TCP connection.
///
/// Read and write with the async methods here ([`read`](Self::read),
/// [`write_all`](Self::write_all), ...), or through the `futures-io`
/// [`AsyncRead`](futures_io::AsyncRead)/[`AsyncWrite`](futures_io::AsyncWrite) traits, which both `TcpStream` and `&TcpStream`
/// implement. To read and write from two tasks at once, use
/// [`into_split`](Self::into_split) (or [`split`](Self::split) within one task).
///
/// Writes use `MSG_NOSIGNAL`: writing to a closed connection gives `BrokenPipe`,
/// never `SIGPIPE`.
///
/// # Examples
///
/// ```
/// use edgeloop_net::{TcpListener, TcpStream};
///
/// edgeloop_runtime::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await?;
///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
///     let (mut server, _) = listener.accept().await?;
///     client.write_all(b"ping").await?;
///     let mut buf = [0u8; 16];
///     let n = server.read(&mut buf).await?;
///     assert_eq!(&buf[..n], b"ping");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TcpStream {
    /// The connected socket, registered with the runtime.
    io: AsyncFd<OwnedFd>,
}

impl TcpStream {
    /// Wraps a connected, non-blocking socket.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<TcpStream> {
        // Every stream this crate makes is non-blocking already (`SOCK_NONBLOCK`, or
        // `from_std`'s `set_nonblocking`): no `fcntl`, and no `EPOLL_CTL_ADD` until
        // the stream first has to wait.
        Ok(TcpStream {
            io: AsyncFd::new_deferred(fd)?,
        })
    }

    /// Opens a connection to `addr`. If `addr` names several addresses, each is tried
    /// in turn and the first that connects is returned.
    ///
    /// The connect is non-blocking: `EINPROGRESS`, then wait until writable, then
    /// read `SO_ERROR`.
    ///
    /// # Errors
    ///
    /// `ConnectionRefused` when nothing listens there, `InvalidInput` (naming the
    /// text) for an address that does not parse, or the last error of the addresses
    /// tried.
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let mut last_error = None;
        for addr in crate::addr::resolve(&addr).await? {
            match Self::connect_one(&addr).await {
                Ok(stream) => return Ok(stream),
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

    async fn connect_one(addr: &SocketAddr) -> io::Result<TcpStream> {
        let fd = sys::socket(sys::domain_of(addr), libc::SOCK_STREAM)?;
        Self::connect_fd(fd, addr).await
    }

    /// Connects `fd`, a fresh non-blocking TCP socket (maybe bound, with options
    /// set: see `TcpSocket::connect`), to `addr` and wraps it once connected.
    pub(crate) async fn connect_fd(fd: OwnedFd, addr: &SocketAddr) -> io::Result<TcpStream> {
        // EINTR, like EINPROGRESS, means the handshake goes on in the background;
        // calling connect again would only say EALREADY.
        let in_progress = match sys::connect(fd.as_fd(), addr) {
            Ok(()) => false,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EINTR)) => true,
            Err(e) => return Err(e),
        };
        let stream = TcpStream::from_fd(fd)?;
        if in_progress {
            stream.io.clear_ready(Direction::Write);
            loop {
                poll_fn(|cx| stream.io.poll_ready(Direction::Write, cx)).await?;
                let error =
                    sys::getsockopt_int(stream.io.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR)?;
                if error != 0 {
                    return Err(io::Error::from_raw_os_error(error));
                }
                match sys::getpeername(stream.io.as_fd()) {
                    Ok(_) => break,
                    // Woken before the handshake finished: wait again.
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                        stream.io.clear_ready(Direction::Write);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(stream)
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
    /// Readiness can be a false positive (a new stream starts out "ready", and data
    /// may be gone by the time you read): follow it with [`try_read`](Self::try_read)
    /// and wait again on `WouldBlock`.
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
    /// `Shutdown::Write` the peer reads EOF once it has read everything sent before.
    ///
    /// # Errors
    ///
    /// What `shutdown` returns, e.g. `NotConnected`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        sys::shutdown(self.io.as_fd(), how)
    }

    /// The remote address.
    ///
    /// # Errors
    ///
    /// What `getpeername` returns, e.g. `NotConnected`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sys::getpeername(self.io.as_fd())
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// What `getsockname` returns.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::getsockname(self.io.as_fd())
    }

    /// Sets `TCP_NODELAY`: when true, small writes are sent at once instead of being
    /// coalesced (Nagle's algorithm).
    ///
    /// # Errors
    ///
    /// What `setsockopt` returns.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        sys::setsockopt_int(
            self.io.as_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            i32::from(nodelay),
        )
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(sys::getsockopt_int(self.io.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY)? != 0)
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
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        Self::from_fd(OwnedFd::from(stream))
    }

    /// Deregisters the stream and returns it as a standard-library stream. It stays
    /// non-blocking; call `set_nonblocking(false)` for blocking use.
    ///
    /// # Errors
    ///
    /// None today; kept fallible like tokio's.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        Ok(std::net::TcpStream::from(self.io.into_inner()))
    }

    /// Borrows the stream as a read half and a write half, to read and write
    /// concurrently within one task (for example with a `join`).
    ///
    /// With `futures::AsyncReadExt` in scope, `stream.split()` calls that trait's
    /// `split(self)` instead: method lookup tries the by-value receiver before
    /// `&mut`. Write `TcpStream::split(&mut stream)` to be sure.
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (ReadHalf::new(self), WriteHalf::new(self))
    }

    /// Splits the stream into halves that can move into two tasks. Dropping the write
    /// half shuts down the write side; [`OwnedReadHalf::reunite`] puts them back
    /// together.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        super::split::split_owned(self)
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

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

impl_async_io!(io TcpStream, |s| s);
impl_async_io!(io & TcpStream, |s| s);
