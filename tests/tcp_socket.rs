//! `TcpSocket`: options set before `bind`, `listen` and `connect`, and what the
//! kernel does with them (port reuse, buffer sizes, errors, fd flags). Loopback only.

mod support;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use edgeloop::net::{TcpListener, TcpSocket, TcpStream};
use support::{
    EventLog, assert_same_bytes, fd_flags, free_port, joined, pattern, read_to_eof, roundtrip,
    wait_until, with_timeout,
};

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A listener on `addr` built from a `TcpSocket` with `SO_REUSEADDR` set.
fn listen_reusing_addr(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

/// Accepts one connection on `listener` and echoes it until EOF.
async fn accept_and_echo(listener: &TcpListener) -> io::Result<u64> {
    let (stream, _peer) = listener.accept().await?;
    support::echo(stream).await
}

/// Accepts connections on `listener` until an error, recording `index` in `log` for
/// each one.
async fn accept_forever(
    listener: TcpListener,
    index: usize,
    log: EventLog<usize>,
) -> io::Result<()> {
    loop {
        let (stream, _peer) = listener.accept().await?;
        log.push(index);
        drop(stream);
    }
}

/// Panics unless `result` failed with `kind`; `what` names the operation.
fn expect_error_kind<T: std::fmt::Debug>(result: io::Result<T>, kind: io::ErrorKind, what: &str) {
    match result {
        Err(e) => assert_eq!(e.kind(), kind, "{what}: {e:?}"),
        Ok(value) => panic!("{what} succeeded ({value:?}); expected {kind:?}"),
    }
}

#[test]
fn bound_listener_and_bound_client_exchange_exact_bytes() -> io::Result<()> {
    with_timeout(20, "bind + listen + connect round trip", || {
        edgeloop::block_on(async {
            let server = TcpSocket::new_v4()?;
            server.bind(loopback(0))?;
            let bound = server.local_addr()?;
            assert!(bound.port() != 0, "bind to port 0 left port 0: {bound}");
            let listener = server.listen(16)?;
            assert_eq!(listener.local_addr()?, bound, "listener address vs bound");

            // The client is bound too: the stream must keep that local address.
            let client = TcpSocket::new_v4()?;
            client.bind(loopback(0))?;
            let client_addr = client.local_addr()?;
            let echo = edgeloop::spawn(async move { accept_and_echo(&listener).await });
            let mut stream = client.connect(bound).await?;
            assert_eq!(stream.local_addr()?, client_addr, "client local address");
            assert_eq!(stream.peer_addr()?, bound, "client peer address");

            for (i, len) in [1, 1000, 64 * 1024 + 3, 300 * 1024].into_iter().enumerate() {
                let msg = pattern(len, 10 + i as u64);
                let echoed = roundtrip(&mut stream, &msg).await?;
                assert_same_bytes(&echoed, &msg, &format!("message {i} ({len} bytes)"));
            }
            stream.shutdown(std::net::Shutdown::Write)?;
            let rest = read_to_eof(&mut stream).await?;
            assert!(rest.is_empty(), "{} bytes after the last echo", rest.len());
            let echoed = joined(echo.await)??;
            assert_eq!(
                echoed,
                1 + 1000 + 64 * 1024 + 3 + 300 * 1024,
                "bytes echoed"
            );
            Ok(())
        })
    })
}

/// The TCP states (`st` column, hex: 06 is TIME_WAIT) of every IPv4 socket whose
/// local port is `port`, from `/proc/net/tcp`.
fn tcp_states_on_port(port: u16) -> io::Result<Vec<u8>> {
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let mut states = Vec::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
            continue;
        };
        let local_port = local
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        if local_port == Some(port) {
            states.push(u8::from_str_radix(state, 16).map_err(io::Error::other)?);
        }
    }
    Ok(states)
}

const TIME_WAIT: u8 = 0x06;

#[test]
fn reuseaddr_lets_a_new_listener_bind_a_port_held_in_time_wait() -> io::Result<()> {
    with_timeout(20, "SO_REUSEADDR and TIME_WAIT", || {
        edgeloop::block_on(async {
            let listener = listen_reusing_addr(loopback(0))?;
            let addr = listener.local_addr()?;
            let mut client = TcpStream::connect(addr).await?;
            let (server_side, _) = listener.accept().await?;
            drop(listener);
            // The server side closes first, so it is the one left in TIME_WAIT,
            // holding the listener's port.
            drop(server_side);
            let rest = read_to_eof(&mut client).await?;
            assert!(rest.is_empty(), "client read {} bytes", rest.len());
            drop(client);
            wait_until(Duration::from_secs(5), "server side in TIME_WAIT", || {
                Ok(tcp_states_on_port(addr.port())?.contains(&TIME_WAIT))
            })?;

            // Without SO_REUSEADDR the port is still taken ...
            let plain = TcpSocket::new_v4()?;
            assert!(!plain.reuseaddr()?, "SO_REUSEADDR on a new socket");
            expect_error_kind(
                plain.bind(addr),
                io::ErrorKind::AddrInUse,
                &format!("bind {addr} without SO_REUSEADDR, port in TIME_WAIT"),
            );
            // ... with it, a new listener binds and serves.
            let again = TcpSocket::new_v4()?;
            again.set_reuseaddr(true)?;
            assert!(again.reuseaddr()?, "SO_REUSEADDR after setting it");
            again.bind(addr)?;
            let listener = again.listen(16)?;
            let states = tcp_states_on_port(addr.port())?;
            assert!(
                states.contains(&TIME_WAIT),
                "the TIME_WAIT entry is gone, so the test proved nothing: states {states:02x?}"
            );
            let echo = edgeloop::spawn(async move { accept_and_echo(&listener).await });
            let mut stream = TcpStream::connect(addr).await?;
            let echoed = roundtrip(&mut stream, b"after restart").await?;
            assert_same_bytes(&echoed, b"after restart", "echo from the new listener");
            drop(stream);
            joined(echo.await)??;
            Ok(())
        })
    })
}

#[test]
fn reuseport_lets_two_listeners_share_a_port_and_both_accept() -> io::Result<()> {
    with_timeout(20, "SO_REUSEPORT", || {
        edgeloop::block_on(async {
            let reusing = || -> io::Result<TcpSocket> {
                let socket = TcpSocket::new_v4()?;
                socket.set_reuseport(true)?;
                assert!(socket.reuseport()?, "SO_REUSEPORT after setting it");
                Ok(socket)
            };
            let first = reusing()?;
            first.bind(loopback(0))?;
            let addr = first.local_addr()?;
            let second = reusing()?;
            second.bind(addr)?;
            // A socket without the option may not join them.
            let outsider = TcpSocket::new_v4()?;
            assert!(!outsider.reuseport()?, "SO_REUSEPORT on a new socket");
            expect_error_kind(
                outsider.bind(addr),
                io::ErrorKind::AddrInUse,
                &format!("bind {addr} without SO_REUSEPORT"),
            );

            let accepted: EventLog<usize> = EventLog::default();
            let listeners = [first.listen(128)?, second.listen(128)?];
            let mut acceptors = Vec::new();
            for (index, listener) in listeners.into_iter().enumerate() {
                acceptors.push(edgeloop::spawn(accept_forever(
                    listener,
                    index,
                    accepted.clone(),
                )));
            }
            // The kernel picks a listener by hashing each connection's addresses:
            // with 64 connections, all landing on one listener has odds of 2^-63.
            const CONNECTIONS: usize = 64;
            let mut clients = Vec::new();
            for _ in 0..CONNECTIONS {
                clients.push(TcpStream::connect(addr).await?);
            }
            accepted.wait_len(CONNECTIONS).await;
            let log = accepted.snapshot();
            let per_listener = [0, 1].map(|i| log.iter().filter(|&&l| l == i).count());
            assert!(
                per_listener.iter().all(|&n| n > 0),
                "accepts per listener: {per_listener:?} (of {CONNECTIONS})"
            );
            for acceptor in &acceptors {
                assert!(!acceptor.is_finished(), "an acceptor ended early");
                acceptor.abort();
            }
            Ok(())
        })
    })
}

#[test]
fn buffer_sizes_read_back_at_least_what_was_asked() -> io::Result<()> {
    with_timeout(10, "buffer sizes", || {
        // Below the default `net.core.[rw]mem_max` (212992), so the kernel keeps
        // the request and doubles it.
        const ASKED: u32 = 48 * 1024;
        let socket = TcpSocket::new_v4()?;
        socket.set_send_buffer_size(ASKED)?;
        socket.set_recv_buffer_size(ASKED)?;
        let send = socket.send_buffer_size()?;
        let recv = socket.recv_buffer_size()?;
        assert!(send >= ASKED, "send buffer {send} < asked {ASKED}");
        assert!(recv >= ASKED, "receive buffer {recv} < asked {ASKED}");
        // Past `i32::MAX` the request saturates, then the kernel caps it: no error.
        socket.set_send_buffer_size(u32::MAX)?;
        let capped = socket.send_buffer_size()?;
        assert!(capped >= send, "send buffer after u32::MAX: {capped}");
        // A larger request gives a larger buffer (both under the cap).
        let small = TcpSocket::new_v4()?;
        small.set_recv_buffer_size(8 * 1024)?;
        let small_size = small.recv_buffer_size()?;
        assert!(
            small_size < recv,
            "8 KiB asked gave {small_size}, 48 KiB asked gave {recv}"
        );
        Ok(())
    })
}

#[test]
fn boolean_options_and_linger_round_trip_and_nodelay_reaches_the_stream() -> io::Result<()> {
    with_timeout(10, "option round trips", || {
        edgeloop::block_on(async {
            let socket = TcpSocket::new_v4()?;
            for value in [true, false, true] {
                socket.set_reuseaddr(value)?;
                assert_eq!(
                    socket.reuseaddr()?,
                    value,
                    "SO_REUSEADDR after set({value})"
                );
                socket.set_reuseport(value)?;
                assert_eq!(
                    socket.reuseport()?,
                    value,
                    "SO_REUSEPORT after set({value})"
                );
                socket.set_nodelay(value)?;
                assert_eq!(socket.nodelay()?, value, "TCP_NODELAY after set({value})");
                socket.set_keepalive(value)?;
                assert_eq!(
                    socket.keepalive()?,
                    value,
                    "SO_KEEPALIVE after set({value})"
                );
            }
            for (set, expected) in [
                (Some(Duration::from_secs(3)), Some(Duration::from_secs(3))),
                (
                    Some(Duration::from_millis(200)),
                    Some(Duration::from_secs(1)),
                ),
                (Some(Duration::ZERO), Some(Duration::ZERO)),
                (None, None),
            ] {
                socket.set_linger(set)?;
                assert_eq!(socket.linger()?, expected, "SO_LINGER after set({set:?})");
            }

            let listener = TcpListener::bind(loopback(0)).await?;
            let stream = socket.connect(listener.local_addr()?).await?;
            assert!(stream.nodelay()?, "TCP_NODELAY lost by connect");
            Ok(())
        })
    })
}

#[test]
fn binding_a_taken_port_fails_with_addr_in_use() -> io::Result<()> {
    with_timeout(10, "address in use", || {
        let held = std::net::TcpListener::bind(loopback(0))?;
        let addr = held.local_addr()?;
        let socket = TcpSocket::new_v4()?;
        expect_error_kind(
            socket.bind(addr),
            io::ErrorKind::AddrInUse,
            &format!("bind {addr} (held by a std listener)"),
        );
        // SO_REUSEADDR does not let a second socket take a listening port.
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        expect_error_kind(
            socket.bind(addr),
            io::ErrorKind::AddrInUse,
            &format!("bind {addr} with SO_REUSEADDR (held by a listener)"),
        );
        // A socket binds once.
        let socket = TcpSocket::new_v4()?;
        socket.bind(loopback(0))?;
        expect_error_kind(
            socket.bind(loopback(0)),
            io::ErrorKind::InvalidInput,
            "second bind of one socket",
        );
        Ok(())
    })
}

#[test]
fn addresses_of_the_wrong_family_fail_with_the_kernel_error() -> io::Result<()> {
    with_timeout(10, "wrong address family", || {
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 0));
        let socket = TcpSocket::new_v4()?;
        match socket.bind(v6) {
            Err(e) => assert_eq!(
                e.raw_os_error(),
                Some(libc::EAFNOSUPPORT),
                "bind {v6} on an IPv4 socket: {e:?}"
            ),
            Ok(()) => panic!("bind {v6} on an IPv4 socket succeeded"),
        }
        // The IPv6 socket only exists where the kernel has IPv6; that is all this
        // half needs (no address is used).
        match TcpSocket::new_v6() {
            Ok(socket) => expect_error_kind(
                socket.bind(loopback(0)),
                io::ErrorKind::InvalidInput,
                "bind 127.0.0.1:0 on an IPv6 socket",
            ),
            Err(e) => eprintln!("skipped the IPv6 half: no IPv6 socket ({e})"),
        }
        edgeloop::block_on(async {
            let socket = TcpSocket::new_v4()?;
            match socket
                .connect(SocketAddr::from((Ipv6Addr::LOCALHOST, 9)))
                .await
            {
                Err(e) => assert_eq!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT),
                    "connect to [::1]:9 from an IPv4 socket: {e:?}"
                ),
                Ok(s) => panic!("connect to [::1]:9 from an IPv4 socket succeeded: {s:?}"),
            }
            Ok(())
        })
    })
}

#[test]
fn connect_to_a_closed_port_fails_with_connection_refused() -> io::Result<()> {
    with_timeout(10, "connection refused", || {
        let port = free_port()?;
        edgeloop::block_on(async {
            let socket = TcpSocket::new_v4()?;
            expect_error_kind(
                socket.connect(loopback(port)).await,
                io::ErrorKind::ConnectionRefused,
                &format!("connect to 127.0.0.1:{port}"),
            );
            Ok(())
        })
    })
}

#[test]
fn v6_socket_on_loopback_round_trips() -> io::Result<()> {
    with_timeout(20, "IPv6 loopback", || {
        let v6_loopback = SocketAddr::from((Ipv6Addr::LOCALHOST, 0));
        if let Err(e) = std::net::TcpListener::bind(v6_loopback) {
            eprintln!("skipped: [::1] is not available here ({e})");
            return Ok(());
        }
        edgeloop::block_on(async {
            let server = TcpSocket::new_v6()?;
            assert_eq!(
                server.local_addr()?,
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
                "IPv6 socket before bind"
            );
            server.bind(v6_loopback)?;
            let listener = server.listen(16)?;
            let addr = listener.local_addr()?;
            assert!(
                addr.is_ipv6() && addr.ip().is_loopback() && addr.port() != 0,
                "IPv6 listener address {addr}"
            );
            let echo = edgeloop::spawn(async move { accept_and_echo(&listener).await });
            let mut stream = TcpSocket::new_v6()?.connect(addr).await?;
            assert_eq!(stream.peer_addr()?, addr, "peer address");
            let msg = pattern(100 * 1024, 6);
            let echoed = roundtrip(&mut stream, &msg).await?;
            assert_same_bytes(&echoed, &msg, "echo over [::1]");
            drop(stream);
            joined(echo.await)??;
            Ok(())
        })
    })
}

/// Panics unless `fd` has `FD_CLOEXEC` and `O_NONBLOCK`; `what` names it.
fn assert_cloexec_nonblock(fd: RawFd, what: &str) -> io::Result<()> {
    let (fd_flags, status_flags) = fd_flags(fd)?;
    assert_ne!(
        fd_flags & libc::FD_CLOEXEC,
        0,
        "{what} (fd {fd}) lacks FD_CLOEXEC: fd flags {fd_flags:#x}"
    );
    assert_ne!(
        status_flags & libc::O_NONBLOCK,
        0,
        "{what} (fd {fd}) lacks O_NONBLOCK: status flags {status_flags:#x}"
    );
    Ok(())
}

#[test]
fn sockets_listeners_and_streams_are_cloexec_and_nonblocking() -> io::Result<()> {
    with_timeout(10, "fd flags", || {
        edgeloop::block_on(async {
            let server = TcpSocket::new_v4()?;
            assert_cloexec_nonblock(server.as_raw_fd(), "new IPv4 socket")?;
            server.bind(loopback(0))?;
            // `u32::MAX` is past `i32::MAX`: it saturates, and the kernel caps it.
            let listener = server.listen(u32::MAX)?;
            assert_cloexec_nonblock(listener.as_raw_fd(), "listener from listen")?;
            let client = TcpSocket::new_v4()?;
            assert_cloexec_nonblock(client.as_raw_fd(), "client socket")?;
            let stream = client.connect(listener.local_addr()?).await?;
            assert_cloexec_nonblock(stream.as_raw_fd(), "stream from connect")?;
            let (accepted, _) = listener.accept().await?;
            assert_cloexec_nonblock(accepted.as_raw_fd(), "accepted stream")?;
            if let Ok(v6) = TcpSocket::new_v6() {
                assert_cloexec_nonblock(v6.as_raw_fd(), "new IPv6 socket")?;
            }
            Ok(())
        })
    })
}
