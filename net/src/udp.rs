//! [`UdpSocket`]: a UDP socket with async `send_to`/`recv_from` (and `send`/`recv`
//! once connected), its options, and multicast membership.
//!
//! Every operation has the shape of `AsyncFd::poll_io`: try the syscall; on
//! `WouldBlock`, clear that direction and wait for it. Unlike a stream, a datagram
//! read that fills less than the buffer says nothing about what is left in the
//! queue (each `recv` takes exactly one datagram), so readiness is cleared only when
//! the kernel says `EAGAIN`.

use std::future::poll_fn;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::raw::c_int;
use std::task::{Context, Poll};

use edgeloop_runtime::{AsyncFd, Direction};

use crate::addr::ToSocketAddrs;
use crate::sys::{self, retry};

/// A UDP socket: sends and receives datagrams, whole.
///
/// Create one with [`bind`](Self::bind). Without [`connect`](Self::connect) it talks
/// to anyone with [`send_to`](Self::send_to) and [`recv_from`](Self::recv_from);
/// once connected, [`send`](Self::send) and [`recv`](Self::recv) use the peer, and the
/// kernel drops datagrams from anyone else.
///
/// Datagrams are never split or merged: each send is one datagram and each receive
/// returns one. A datagram longer than the receive buffer is cut to the buffer's
/// length and **the rest of it is discarded**, as the OS does; size the buffer for
/// the largest datagram you expect (65,507 bytes is UDP's limit over IPv4).
///
/// The socket is `SOCK_NONBLOCK | SOCK_CLOEXEC` from creation, registered with the
/// runtime that created it, and `!Send`. Methods take `&self`, so several tasks can
/// share one socket (in an `Rc`): each datagram goes to exactly one receiver.
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<edgeloop_net::UdpSocket>();
/// ```
///
/// # Examples
///
/// ```
/// use edgeloop_net::UdpSocket;
///
/// edgeloop_runtime::block_on(async {
///     let server = UdpSocket::bind("127.0.0.1:0").await?;
///     let client = UdpSocket::bind("127.0.0.1:0").await?;
///     client.send_to(b"ping", server.local_addr()?).await?;
///
///     let mut buf = [0u8; 1500];
///     let (n, from) = server.recv_from(&mut buf).await?;
///     assert_eq!((&buf[..n], from), (&b"ping"[..], client.local_addr()?));
///     server.send_to(b"pong", from).await?;
///
///     client.connect(server.local_addr()?).await?;
///     let n = client.recv(&mut buf).await?;
///     assert_eq!(&buf[..n], b"pong");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UdpSocket {
    /// The datagram socket, registered with the runtime.
    io: AsyncFd<OwnedFd>,
}

impl UdpSocket {
    /// Creates a socket bound to `addr` (port 0 lets the kernel pick one). If `addr`
    /// names several addresses, each is tried in turn and the first that binds is
    /// used. `SO_REUSEADDR` is not set.
    ///
    /// # Errors
    ///
    /// `AddrInUse` if the port is taken, `AddrNotAvailable` for an address that is
    /// not local, `InvalidInput` (naming the text) for one that does not parse, or
    /// the last error of the addresses tried.
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let mut last_error = None;
        for addr in crate::addr::resolve(&addr).await? {
            match Self::bind_one(&addr) {
                Ok(socket) => return Ok(socket),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| no_address("bind to")))
    }

    fn bind_one(addr: &SocketAddr) -> io::Result<UdpSocket> {
        let fd = sys::socket(sys::domain_of(addr), libc::SOCK_DGRAM)?;
        sys::bind(fd.as_fd(), addr)?;
        Ok(UdpSocket {
            io: AsyncFd::new(fd)?,
        })
    }

    /// Sets the default peer: [`send`](Self::send) goes there, and only datagrams
    /// from it are received. If `addr` names several addresses, each is tried in turn
    /// until one connects. Nothing is sent: UDP has no handshake, so an absent peer
    /// shows up later, as `ConnectionRefused` from a send or receive. Connecting
    /// again replaces the peer.
    ///
    /// # Errors
    ///
    /// What `connect` returns (e.g. `NetworkUnreachable`, or `EAFNOSUPPORT` for an
    /// IPv6 peer on an IPv4 socket), `InvalidInput` for text that does not parse, or
    /// the last error of the addresses tried.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let mut last_error = None;
        for addr in crate::addr::resolve(&addr).await? {
            // A datagram connect only records the peer: it never says EINPROGRESS.
            match sys::connect(self.io.as_fd(), &addr) {
                Ok(()) => return Ok(()),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| no_address("connect to")))
    }

    /// Sends `buf` as one datagram to the connected peer; returns `buf.len()`. An
    /// empty `buf` sends an empty datagram.
    ///
    /// Cancel-safe: if the future is dropped before it completes, nothing was sent.
    ///
    /// # Errors
    ///
    /// `EDESTADDRREQ` (see `raw_os_error()`) without [`connect`](Self::connect);
    /// `ConnectionRefused` once the peer's host said no one listens there;
    /// `EMSGSIZE` for a datagram too long for UDP.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_send(cx, buf)).await
    }

    /// Polls to send `buf` as one datagram to the connected peer. On `Pending`, the
    /// task is woken when the socket may be writable.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.io.poll_io(Direction::Write, cx, |fd| {
            retry(|| sys::send(fd.as_fd(), buf))
        })
    }

    /// Sends to the connected peer without waiting: `WouldBlock` if the socket is not
    /// known to be writable.
    ///
    /// # Errors
    ///
    /// `WouldBlock`, or as [`send`](Self::send).
    pub fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io
            .try_io(Direction::Write, |fd| retry(|| sys::send(fd.as_fd(), buf)))
    }

    /// Receives one datagram from the connected peer (unconnected: from anyone) into
    /// `buf`; returns its length. A datagram longer than `buf` is cut to `buf.len()`
    /// bytes and the rest of it is discarded.
    ///
    /// Cancel-safe: if the future is dropped before it completes, no datagram was
    /// taken.
    ///
    /// # Errors
    ///
    /// `ConnectionRefused` once a datagram sent to the peer was refused (the error is
    /// reported once; the socket stays usable).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_recv(cx, buf)).await
    }

    /// Polls to receive one datagram from the connected peer. On `Pending`, the task
    /// is woken when one may have arrived.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.io.poll_io(Direction::Read, cx, |fd| {
            retry(|| sys::recv(fd.as_fd(), buf, 0))
        })
    }

    /// Receives without waiting: `WouldBlock` if no datagram is known to be there.
    ///
    /// # Errors
    ///
    /// `WouldBlock`, or as [`recv`](Self::recv).
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.try_io(Direction::Read, |fd| {
            retry(|| sys::recv(fd.as_fd(), buf, 0))
        })
    }

    /// Sends `buf` as one datagram to `target`; returns `buf.len()`. If `target`
    /// names several addresses, only the first is used (as in tokio).
    ///
    /// Cancel-safe: if the future is dropped before it completes, nothing was sent.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `target` does not parse or names no address;
    /// `EAFNOSUPPORT` (see `raw_os_error()`) for an IPv6 target from an IPv4 socket;
    /// `PermissionDenied` for a broadcast address without
    /// [`set_broadcast`](Self::set_broadcast); `EMSGSIZE` for a datagram too long for
    /// UDP; `NetworkUnreachable` without a route.
    pub async fn send_to(&self, buf: &[u8], target: impl ToSocketAddrs) -> io::Result<usize> {
        let target = crate::addr::resolve(&target)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| no_address("send data to"))?;
        poll_fn(|cx| self.poll_send_to(cx, buf, target)).await
    }

    /// Polls to send `buf` as one datagram to `target`. On `Pending`, the task is
    /// woken when the socket may be writable.
    ///
    /// # Errors
    ///
    /// As [`send_to`](Self::send_to).
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.io.poll_io(Direction::Write, cx, |fd| {
            retry(|| sys::udp::sendto(fd.as_fd(), buf, &target))
        })
    }

    /// Receives one datagram into `buf`; returns its length and its sender. A
    /// datagram longer than `buf` is cut to `buf.len()` bytes and the rest of it is
    /// discarded: the next call returns the next datagram.
    ///
    /// Cancel-safe: if the future is dropped before it completes, no datagram was
    /// taken. Several tasks may wait on one socket; each datagram goes to one of them.
    ///
    /// # Errors
    ///
    /// What `recvfrom` returns, e.g. `ConnectionRefused` on a connected socket.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.poll_recv_from(cx, buf)).await
    }

    /// Polls to receive one datagram and its sender. On `Pending`, the task is woken
    /// when one may have arrived.
    ///
    /// # Errors
    ///
    /// As [`recv_from`](Self::recv_from).
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        self.io.poll_io(Direction::Read, cx, |fd| {
            retry(|| sys::udp::recvfrom(fd.as_fd(), buf, 0))
        })
    }

    /// Copies the next datagram into `buf` without taking it from the queue; returns
    /// how many bytes were copied and the sender. A datagram longer than `buf` is
    /// copied in part and stays whole in the queue.
    ///
    /// # Errors
    ///
    /// What `recvfrom(MSG_PEEK)` returns.
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| {
            self.io.poll_io(Direction::Read, cx, |fd| {
                retry(|| sys::udp::recvfrom(fd.as_fd(), buf, libc::MSG_PEEK))
            })
        })
        .await
    }

    /// Waits until the socket may be readable (a datagram or an error is there).
    ///
    /// Readiness can be a false positive (another task may take the datagram
    /// first): follow it with [`try_recv`](Self::try_recv) and wait again on
    /// `WouldBlock`.
    ///
    /// # Errors
    ///
    /// If the runtime is gone or re-arming fails.
    pub async fn readable(&self) -> io::Result<()> {
        self.io.readable().await
    }

    /// Waits until the socket may be writable.
    ///
    /// # Errors
    ///
    /// If the runtime is gone or re-arming fails.
    pub async fn writable(&self) -> io::Result<()> {
        self.io.writable().await
    }

    /// The local address (with the port the kernel picked, for port 0).
    ///
    /// # Errors
    ///
    /// What `getsockname` returns.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::getsockname(self.io.as_fd())
    }

    /// The connected peer's address.
    ///
    /// # Errors
    ///
    /// `NotConnected` before [`connect`](Self::connect).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sys::getpeername(self.io.as_fd())
    }

    /// Takes the socket's pending error (`SO_ERROR`), e.g. a `ConnectionRefused` not
    /// yet reported by a send or receive; `None` if there is none.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let errno = self.get_int(libc::SOL_SOCKET, libc::SO_ERROR)?;
        Ok((errno != 0).then(|| io::Error::from_raw_os_error(errno)))
    }

    /// Sets `SO_BROADCAST`: when true, datagrams may be sent to broadcast addresses.
    ///
    /// # Errors
    ///
    /// What `setsockopt` returns.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.set_int(libc::SOL_SOCKET, libc::SO_BROADCAST, c_int::from(on))
    }

    /// Whether `SO_BROADCAST` is set.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn broadcast(&self) -> io::Result<bool> {
        Ok(self.get_int(libc::SOL_SOCKET, libc::SO_BROADCAST)? != 0)
    }

    /// Sets `IP_TTL`, the time-to-live of outgoing unicast IPv4 datagrams (1 to 255).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for 0 or above 255.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.set_int(libc::IPPROTO_IP, libc::IP_TTL, to_c_int(ttl, "ttl")?)
    }

    /// The `IP_TTL` of outgoing unicast IPv4 datagrams.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn ttl(&self) -> io::Result<u32> {
        self.get_u32(libc::IPPROTO_IP, libc::IP_TTL)
    }

    /// Joins the IPv4 multicast group `multiaddr` on the interface whose address is
    /// `interface` (`Ipv4Addr::UNSPECIFIED`: the kernel picks one from the routing
    /// table). Datagrams sent to the group and this socket's port are then received.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `multiaddr` is not multicast; `AddrInUse` if already a
    /// member; `ENODEV` when no interface fits (no multicast route).
    pub fn join_multicast_v4(&self, multiaddr: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        let fd = self.io.as_fd();
        sys::udp::setsockopt_ip_mreq(fd, libc::IP_ADD_MEMBERSHIP, multiaddr, interface)
    }

    /// Leaves an IPv4 multicast group joined with
    /// [`join_multicast_v4`](Self::join_multicast_v4).
    ///
    /// # Errors
    ///
    /// `AddrNotAvailable` if not a member.
    pub fn leave_multicast_v4(&self, multiaddr: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        let fd = self.io.as_fd();
        sys::udp::setsockopt_ip_mreq(fd, libc::IP_DROP_MEMBERSHIP, multiaddr, interface)
    }

    /// Joins the IPv6 multicast group `multiaddr` on the interface with index
    /// `interface` (0: the kernel picks one from the routing table).
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `multiaddr` is not multicast; `AddrInUse` if already a
    /// member; `ENODEV` or `NetworkUnreachable` when no interface fits.
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        let fd = self.io.as_fd();
        sys::udp::setsockopt_ipv6_mreq(fd, libc::IPV6_ADD_MEMBERSHIP, multiaddr, interface)
    }

    /// Leaves an IPv6 multicast group joined with
    /// [`join_multicast_v6`](Self::join_multicast_v6).
    ///
    /// # Errors
    ///
    /// `AddrNotAvailable` if not a member.
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        let fd = self.io.as_fd();
        sys::udp::setsockopt_ipv6_mreq(fd, libc::IPV6_DROP_MEMBERSHIP, multiaddr, interface)
    }

    /// Sets `IP_MULTICAST_LOOP`: when true (the default), IPv4 multicast sent from
    /// this host is also delivered to this host's members of the group.
    ///
    /// # Errors
    ///
    /// What `setsockopt` returns.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.set_int(libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, c_int::from(on))
    }

    /// Whether `IP_MULTICAST_LOOP` is set.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        Ok(self.get_int(libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP)? != 0)
    }

    /// Sets `IP_MULTICAST_TTL`, the time-to-live of outgoing IPv4 multicast (0 to
    /// 255; the default, 1, keeps it on the local network).
    ///
    /// # Errors
    ///
    /// `InvalidInput` above 255.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        let ttl = to_c_int(ttl, "multicast ttl")?;
        self.set_int(libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, ttl)
    }

    /// The `IP_MULTICAST_TTL` of outgoing IPv4 multicast.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.get_u32(libc::IPPROTO_IP, libc::IP_MULTICAST_TTL)
    }

    /// Sets `IPV6_MULTICAST_LOOP`: when true (the default), IPv6 multicast sent from
    /// this host is also delivered to this host's members of the group.
    ///
    /// # Errors
    ///
    /// What `setsockopt` returns, e.g. `ENOPROTOOPT` on an IPv4 socket.
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.set_int(
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_LOOP,
            c_int::from(on),
        )
    }

    /// Whether `IPV6_MULTICAST_LOOP` is set.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        Ok(self.get_int(libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP)? != 0)
    }

    /// Wraps a socket from the standard library, making it non-blocking (std sockets
    /// are already close-on-exec).
    ///
    /// # Errors
    ///
    /// If the socket cannot be made non-blocking or registered.
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        Ok(UdpSocket {
            io: AsyncFd::new(OwnedFd::from(socket))?,
        })
    }

    /// Deregisters the socket and returns it as a standard-library socket. It stays
    /// non-blocking; call `set_nonblocking(false)` for blocking use.
    ///
    /// # Errors
    ///
    /// None today; kept fallible like tokio's.
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        Ok(std::net::UdpSocket::from(self.io.into_inner()))
    }

    fn set_int(&self, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
        sys::setsockopt_int(self.io.as_fd(), level, name, value)
    }

    fn get_int(&self, level: c_int, name: c_int) -> io::Result<c_int> {
        sys::getsockopt_int(self.io.as_fd(), level, name)
    }

    fn get_u32(&self, level: c_int, name: c_int) -> io::Result<u32> {
        let value = self.get_int(level, name)?;
        u32::try_from(value).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the kernel reported a negative value {value} for option {name}"),
            )
        })
    }
}

/// `value` as a C `int`; past `c_int::MAX` it could only wrap to a negative value,
/// which some options read as "use the default", so it is refused here.
fn to_c_int(value: u32, what: &str) -> io::Result<c_int> {
    c_int::try_from(value).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} {value} is out of range: at most 255"),
        )
    })
}

/// The error for an address that resolved to nothing.
fn no_address(action: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("no addresses to {action}: the address resolved to nothing"),
    )
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}
