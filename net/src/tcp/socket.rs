//! [`TcpSocket`]: a TCP socket not yet connected or listening, to set options and
//! bind before it becomes a [`TcpStream`] ([`connect`](TcpSocket::connect)) or a
//! [`TcpListener`] ([`listen`](TcpSocket::listen)).
//!
//! The socket is created `SOCK_NONBLOCK | SOCK_CLOEXEC` and is not registered with
//! the runtime until it is connected or listening, so creating, configuring and
//! binding one works outside `block_on`. Every option is a plain
//! `setsockopt`/`getsockopt` (through `sys`); errors come back as the kernel gave
//! them.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::raw::c_int;
use std::time::Duration;

use super::{TcpListener, TcpStream};
use crate::sys;

/// A TCP socket that is neither connected nor listening yet: set options, maybe
/// [`bind`](Self::bind), then turn it into a [`TcpStream`] with
/// [`connect`](Self::connect) or a [`TcpListener`] with [`listen`](Self::listen).
///
/// Use it when the defaults of [`TcpStream::connect`] and [`TcpListener::bind`] do
/// not fit: to bind a client to a local address, to share a port between listeners
/// with `SO_REUSEPORT`, to size the socket buffers before the handshake (the TCP
/// window scale is fixed then), and so on.
///
/// Unlike [`TcpListener::bind`], a new `TcpSocket` has no option set:
/// `SO_REUSEADDR` is off until [`set_reuseaddr`](Self::set_reuseaddr). Dropping it
/// closes the socket.
///
/// # Examples
///
/// A listener and a client, each built from a `TcpSocket`:
///
/// ```
/// use edgeloop_net::TcpSocket;
///
/// edgeloop_runtime::block_on(async {
///     let server = TcpSocket::new_v4()?;
///     server.set_reuseaddr(true)?;
///     server.bind("127.0.0.1:0".parse().expect("a literal address"))?;
///     let listener = server.listen(128)?;
///     let addr = listener.local_addr()?;
///
///     let client = TcpSocket::new_v4()?;
///     client.set_nodelay(true)?;
///     let mut stream = client.connect(addr).await?;
///     assert!(stream.nodelay()?);
///
///     let (mut accepted, peer) = listener.accept().await?;
///     assert_eq!(peer, stream.local_addr()?);
///     stream.write_all(b"hello").await?;
///     let mut buf = [0u8; 5];
///     let mut filled = 0;
///     while filled < buf.len() {
///         filled += accepted.read(&mut buf[filled..]).await?;
///     }
///     assert_eq!(&buf, b"hello");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TcpSocket {
    /// The socket: `SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC`, not registered
    /// with any runtime (that happens in `connect` or `listen`).
    fd: OwnedFd,
}

impl TcpSocket {
    /// Creates an IPv4 TCP socket (`AF_INET`).
    ///
    /// # Errors
    ///
    /// What `socket` returns, e.g. `EMFILE` at the fd limit.
    pub fn new_v4() -> io::Result<TcpSocket> {
        Self::new(libc::AF_INET)
    }

    /// Creates an IPv6 TCP socket (`AF_INET6`). `IPV6_V6ONLY` is left as the system
    /// sets it (`net.ipv6.bindv6only`, off by default on Linux: a socket bound to
    /// `[::]` then also accepts IPv4 connections).
    ///
    /// # Errors
    ///
    /// What `socket` returns, e.g. `EAFNOSUPPORT` on a kernel without IPv6.
    pub fn new_v6() -> io::Result<TcpSocket> {
        Self::new(libc::AF_INET6)
    }

    fn new(domain: c_int) -> io::Result<TcpSocket> {
        Ok(TcpSocket {
            fd: sys::socket(domain, libc::SOCK_STREAM)?,
        })
    }

    /// Sets `SO_REUSEADDR`. On Linux it lets this socket bind a local port that
    /// other sockets still hold without listening on it, typically a connection in
    /// `TIME_WAIT` after a server restart, provided those sockets had it set too.
    /// It never lets two sockets listen on one port: see
    /// [`set_reuseport`](Self::set_reuseport). Set it before [`bind`](Self::bind).
    ///
    /// # Errors
    ///
    /// What `setsockopt` returns.
    pub fn set_reuseaddr(&self, reuseaddr: bool) -> io::Result<()> {
        self.set_int(libc::SOL_SOCKET, libc::SO_REUSEADDR, c_int::from(reuseaddr))
    }

    /// Whether `SO_REUSEADDR` is set.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn reuseaddr(&self) -> io::Result<bool> {
        self.get_bool(libc::SOL_SOCKET, libc::SO_REUSEADDR)
    }

    /// Sets `SO_REUSEPORT`: several sockets may bind the same address and port if
    /// every one of them sets it before [`bind`](Self::bind) (and they belong to
    /// the same user). For listeners, the kernel spreads incoming connections
    /// across them.
    ///
    /// # Errors
    ///
    /// What `setsockopt` returns.
    pub fn set_reuseport(&self, reuseport: bool) -> io::Result<()> {
        self.set_int(libc::SOL_SOCKET, libc::SO_REUSEPORT, c_int::from(reuseport))
    }

    /// Whether `SO_REUSEPORT` is set.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn reuseport(&self) -> io::Result<bool> {
        self.get_bool(libc::SOL_SOCKET, libc::SO_REUSEPORT)
    }

    /// Asks for a send buffer of `size` bytes (`SO_SNDBUF`). The kernel caps the
    /// request at `net.core.wmem_max` (sizes past `i32::MAX` are sent as
    /// `i32::MAX`), then doubles it to leave room for its own bookkeeping, and
    /// enforces a minimum: see [`send_buffer_size`](Self::send_buffer_size).
    ///
    /// # Errors
    ///
    /// What `setsockopt` returns.
    pub fn set_send_buffer_size(&self, size: u32) -> io::Result<()> {
        self.set_int(libc::SOL_SOCKET, libc::SO_SNDBUF, saturating_int(size))
    }

    /// The send buffer size (`SO_SNDBUF`) as the kernel reports it. After
    /// [`set_send_buffer_size`](Self::set_send_buffer_size)`(n)` that is normally
    /// *twice* `n` (Linux doubles the request; see `socket(7)`), or less if `n`
    /// was above `net.core.wmem_max`.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn send_buffer_size(&self) -> io::Result<u32> {
        self.get_size(libc::SO_SNDBUF)
    }

    /// Asks for a receive buffer of `size` bytes (`SO_RCVBUF`). As with the send
    /// buffer, the kernel caps the request (at `net.core.rmem_max`) and doubles it:
    /// see [`recv_buffer_size`](Self::recv_buffer_size). Set it before
    /// [`connect`](Self::connect) or [`listen`](Self::listen): the window scale
    /// is chosen during the handshake.
    ///
    /// # Errors
    ///
    /// What `setsockopt` returns.
    pub fn set_recv_buffer_size(&self, size: u32) -> io::Result<()> {
        self.set_int(libc::SOL_SOCKET, libc::SO_RCVBUF, saturating_int(size))
    }

    /// The receive buffer size (`SO_RCVBUF`) as the kernel reports it: normally
    /// twice what was asked with
    /// [`set_recv_buffer_size`](Self::set_recv_buffer_size).
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn recv_buffer_size(&self) -> io::Result<u32> {
        self.get_size(libc::SO_RCVBUF)
    }

    /// Sets `TCP_NODELAY`: when true, small writes are sent at once instead of being
    /// coalesced (Nagle's algorithm). The setting carries over to the
    /// [`TcpStream`] that [`connect`](Self::connect) returns.
    ///
    /// # Errors
    ///
    /// What `setsockopt` returns.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.set_int(libc::IPPROTO_TCP, libc::TCP_NODELAY, c_int::from(nodelay))
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.get_bool(libc::IPPROTO_TCP, libc::TCP_NODELAY)
    }

    /// Sets `SO_KEEPALIVE`: when true, the kernel probes an idle connection and
    /// reports a dead peer as an error (timings from `net.ipv4.tcp_keepalive_*`).
    ///
    /// # Errors
    ///
    /// What `setsockopt` returns.
    pub fn set_keepalive(&self, keepalive: bool) -> io::Result<()> {
        self.set_int(libc::SOL_SOCKET, libc::SO_KEEPALIVE, c_int::from(keepalive))
    }

    /// Whether `SO_KEEPALIVE` is set.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn keepalive(&self) -> io::Result<bool> {
        self.get_bool(libc::SOL_SOCKET, libc::SO_KEEPALIVE)
    }

    /// Sets `SO_LINGER`. `None` (the default): closing returns at once and the
    /// kernel sends unsent data in the background. `Some(Duration::ZERO)`: closing
    /// resets the connection (RST) instead of the orderly FIN, dropping unsent data.
    /// `Some(timeout)`: closing waits up to `timeout` for unsent data to be
    /// acknowledged.
    ///
    /// Beware of that last case. Linux makes `close` (and `shutdown`) wait even on
    /// a non-blocking socket, so dropping a stream that has a non-zero linger
    /// blocks the thread, and with it every task of the runtime, for up to
    /// `timeout` (tokio deprecated `set_linger` for this reason). To know that the
    /// peer got everything, shut down the write side and read until EOF instead.
    ///
    /// The kernel counts whole seconds: a fraction of a second is rounded *up*, so
    /// a short linger never turns into a reset.
    ///
    /// # Errors
    ///
    /// What `setsockopt` returns.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        sys::socket::setsockopt_linger(self.fd.as_fd(), linger)
    }

    /// The `SO_LINGER` setting, in whole seconds; `None` if lingering is off.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        sys::socket::getsockopt_linger(self.fd.as_fd())
    }

    /// Binds the socket to `addr`; port 0 lets the kernel pick a free port (read it
    /// back with [`local_addr`](Self::local_addr)).
    ///
    /// # Errors
    ///
    /// What `bind` returns, untouched, for example:
    /// - `AddrInUse` if another socket holds the port (see
    ///   [`set_reuseaddr`](Self::set_reuseaddr) and
    ///   [`set_reuseport`](Self::set_reuseport));
    /// - `AddrNotAvailable` for an IP address that is not local;
    /// - `InvalidInput` (`EINVAL`) for an IPv4 address on an IPv6 socket, or a
    ///   socket that is bound already;
    /// - `EAFNOSUPPORT` (check `raw_os_error()`) for an IPv6 address on an IPv4
    ///   socket;
    /// - `PermissionDenied` for a port below 1024 without the capability.
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        sys::bind(self.fd.as_fd(), &addr)
    }

    /// The address the socket is bound to: the unspecified address and port 0
    /// (`0.0.0.0:0` or `[::]:0`) before [`bind`](Self::bind).
    ///
    /// # Errors
    ///
    /// What `getsockname` returns.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::getsockname(self.fd.as_fd())
    }

    /// Takes the pending socket error (`SO_ERROR`), clearing it: `None` if there is
    /// none.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let error = sys::getsockopt_int(self.fd.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR)?;
        Ok((error != 0).then(|| io::Error::from_raw_os_error(error)))
    }

    /// Starts listening and returns the listener. `backlog` bounds the queue of
    /// connections not yet accepted; the kernel caps it at `net.core.somaxconn`
    /// (values past `i32::MAX` are sent as `i32::MAX`). An unbound socket is first
    /// bound by the kernel to a free port on the unspecified address, that is on
    /// every interface: call [`bind`](Self::bind) first to choose.
    ///
    /// # Errors
    ///
    /// What `listen` returns (e.g. `AddrInUse` if an unbound socket finds no free
    /// port, or another socket listens on the port it shares through
    /// `SO_REUSEADDR`), or an error registering the socket with the runtime.
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    pub fn listen(self, backlog: u32) -> io::Result<TcpListener> {
        sys::listen(self.fd.as_fd(), saturating_int(backlog))?;
        TcpListener::from_fd(self.fd)
    }

    /// Connects to `addr` and returns the stream once the handshake is done. The
    /// connect is non-blocking: `EINPROGRESS`, then wait until writable, then read
    /// `SO_ERROR`. If the socket was not bound, the kernel binds it to a free port.
    ///
    /// Consumes the socket: if the connect fails, it is closed.
    ///
    /// # Errors
    ///
    /// What `connect` reports, untouched: `ConnectionRefused` when nothing listens
    /// there, `TimedOut`, `NetworkUnreachable`, `EAFNOSUPPORT` for an IPv6 address
    /// on an IPv4 socket, ...
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect_fd(self.fd, &addr).await
    }

    fn set_int(&self, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
        sys::setsockopt_int(self.fd.as_fd(), level, name, value)
    }

    fn get_bool(&self, level: c_int, name: c_int) -> io::Result<bool> {
        Ok(sys::getsockopt_int(self.fd.as_fd(), level, name)? != 0)
    }

    fn get_size(&self, name: c_int) -> io::Result<u32> {
        let size = sys::getsockopt_int(self.fd.as_fd(), libc::SOL_SOCKET, name)?;
        u32::try_from(size).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the kernel reported a negative buffer size ({size})"),
            )
        })
    }
}

/// `value` as a C `int`, saturating at `c_int::MAX`: the kernel caps buffer sizes
/// and backlogs far below it anyway.
fn saturating_int(value: u32) -> c_int {
    c_int::try_from(value).unwrap_or(c_int::MAX)
}

impl AsFd for TcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for TcpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_past_int_max_saturate() {
        for (value, expected) in [
            (0, 0),
            (1, 1),
            (65_536, 65_536),
            (c_int::MAX.unsigned_abs(), c_int::MAX),
            (c_int::MAX.unsigned_abs() + 1, c_int::MAX),
            (u32::MAX, c_int::MAX),
        ] {
            assert_eq!(saturating_int(value), expected, "c_int for {value}");
        }
    }

    #[test]
    fn options_work_outside_a_runtime_and_start_off() -> io::Result<()> {
        let socket = TcpSocket::new_v4()?;
        assert!(!socket.reuseaddr()?, "SO_REUSEADDR on a new socket");
        assert!(!socket.reuseport()?, "SO_REUSEPORT on a new socket");
        assert!(!socket.nodelay()?, "TCP_NODELAY on a new socket");
        assert!(!socket.keepalive()?, "SO_KEEPALIVE on a new socket");
        assert_eq!(socket.linger()?, None, "SO_LINGER on a new socket");
        assert!(socket.take_error()?.is_none(), "SO_ERROR on a new socket");
        let unbound = socket.local_addr()?;
        assert_eq!(unbound, SocketAddr::from(([0, 0, 0, 0], 0)), "before bind");
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let bound = socket.local_addr()?;
        assert!(
            bound.ip().is_loopback() && bound.port() != 0,
            "after bind: {bound}"
        );
        Ok(())
    }
}
