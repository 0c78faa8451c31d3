//! `UdpSocket` on loopback: exact bytes and senders, connected sockets, datagram
//! boundaries and truncation, `peek_from`, wakeups across tasks, errors the kernel
//! reports (`ConnectionRefused`, `AddrInUse`, bad options), IPv6, multicast, a
//! 20,000-datagram echo, and the fd's flags.
//!
//! Every test runs under `with_timeout`. Loopback never loses a datagram while the
//! receive buffer has room, so the tests that send many keep a window small enough
//! for the default buffer (212,992 bytes) and treat any loss as a failure.

mod support;

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use edgeloop::net::UdpSocket;
use support::{XorShift, assert_same_bytes, fd_flags, joined, pattern, with_timeout};

/// Where every socket binds unless a test says otherwise.
const LOCAL: &str = "127.0.0.1:0";

/// How long a datagram that must arrive on loopback may take before the test calls
/// it lost (generous: a loaded CI machine, a debug build).
const ARRIVAL: Duration = Duration::from_secs(5);

/// Runs `test` in a fresh runtime on its own thread, failing after `secs` seconds.
fn run<F, Fut>(secs: u64, what: &str, test: F) -> io::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<()>>,
{
    with_timeout(secs, what, move || edgeloop::block_on(test()))
}

/// `recv_from` that fails (instead of hanging) if nothing arrives within `ARRIVAL`.
async fn recv_from_within(
    socket: &UdpSocket,
    buf: &mut [u8],
    what: &str,
) -> io::Result<(usize, SocketAddr)> {
    match edgeloop::time::timeout(ARRIVAL, socket.recv_from(buf)).await {
        Ok(received) => received,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what}: no datagram within {ARRIVAL:?}"),
        )),
    }
}

/// An address on 127.0.0.1 where no UDP socket is bound (one was, a moment ago).
fn closed_udp_port() -> io::Result<SocketAddr> {
    let socket = std::net::UdpSocket::bind(LOCAL)?;
    socket.local_addr()
}

fn assert_kind(result: io::Result<impl std::fmt::Debug>, kind: io::ErrorKind, what: &str) {
    match result {
        Err(e) => assert_eq!(e.kind(), kind, "{what}: {e:?}"),
        Ok(value) => panic!("{what}: expected {kind:?}, got Ok({value:?})"),
    }
}

fn assert_errno(result: io::Result<impl std::fmt::Debug>, errno: i32, what: &str) {
    match result {
        Err(e) => assert_eq!(e.raw_os_error(), Some(errno), "{what}: {e:?}"),
        Ok(value) => panic!("{what}: expected errno {errno}, got Ok({value:?})"),
    }
}

#[test]
fn send_to_and_recv_from_carry_exact_bytes_and_the_senders_address() -> io::Result<()> {
    run(10, "send_to/recv_from", || async {
        let a = UdpSocket::bind(LOCAL).await?;
        let b = UdpSocket::bind(LOCAL).await?;
        let (a_addr, b_addr) = (a.local_addr()?, b.local_addr()?);
        assert!(a_addr.ip().is_loopback() && a_addr.port() != 0, "{a_addr}");

        let msg = pattern(1200, 1);
        let sent = a.send_to(&msg, b_addr).await?;
        assert_eq!(sent, msg.len(), "bytes sent");
        let mut buf = vec![0u8; 2048];
        let (n, from) = b.recv_from(&mut buf).await?;
        assert_eq!(from, a_addr, "sender of the datagram");
        assert_same_bytes(&buf[..n], &msg, "a -> b");

        // And back, naming the target as text.
        let sent = b.send_to(b"reply", a_addr.to_string()).await?;
        assert_eq!(sent, 5, "bytes sent");
        let (n, from) = a.recv_from(&mut buf).await?;
        assert_eq!((&buf[..n], from), (&b"reply"[..], b_addr), "b -> a");
        Ok(())
    })
}

#[test]
fn connected_sockets_send_and_recv_only_with_their_peer() -> io::Result<()> {
    run(10, "connect + send/recv", || async {
        let a = UdpSocket::bind(LOCAL).await?;
        let b = UdpSocket::bind(LOCAL).await?;
        let stranger = UdpSocket::bind(LOCAL).await?;
        a.connect(b.local_addr()?).await?;
        b.connect(a.local_addr()?.to_string()).await?;

        // Sent first: were it not filtered, `b` would receive it first.
        stranger
            .send_to(b"from a stranger", b.local_addr()?)
            .await?;
        assert_eq!(a.send(b"hello b").await?, 7, "bytes sent");
        let mut buf = [0u8; 64];
        let n = b.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"hello b", "b received");
        assert_kind(b.try_recv(&mut buf), io::ErrorKind::WouldBlock, "b's queue");

        assert_eq!(b.send(b"hello a").await?, 7, "bytes sent");
        let (n, from) = a.recv_from(&mut buf).await?;
        assert_eq!((&buf[..n], from), (&b"hello a"[..], b.local_addr()?));
        Ok(())
    })
}

#[test]
fn peer_addr_is_not_connected_until_connect() -> io::Result<()> {
    run(10, "peer_addr", || async {
        let a = UdpSocket::bind(LOCAL).await?;
        let b = UdpSocket::bind(LOCAL).await?;
        assert_kind(a.peer_addr(), io::ErrorKind::NotConnected, "before connect");
        a.connect(b.local_addr()?).await?;
        assert_eq!(a.peer_addr()?, b.local_addr()?, "after connect");
        // Connecting again replaces the peer.
        let c = UdpSocket::bind(LOCAL).await?;
        a.connect(c.local_addr()?).await?;
        assert_eq!(a.peer_addr()?, c.local_addr()?, "after a second connect");
        Ok(())
    })
}

#[test]
fn send_without_a_peer_or_to_a_bad_target_fails_with_the_os_error() -> io::Result<()> {
    run(10, "send errors", || async {
        let a = UdpSocket::bind(LOCAL).await?;
        assert_errno(a.send(b"x").await, libc::EDESTADDRREQ, "send unconnected");
        let v6: SocketAddr = "[::1]:9".parse().expect("literal");
        assert_errno(a.send_to(b"x", v6).await, libc::EAFNOSUPPORT, "v6 from v4");
        assert_errno(a.connect(v6).await, libc::EAFNOSUPPORT, "v6 peer for v4");
        assert_kind(
            a.peer_addr(),
            io::ErrorKind::NotConnected,
            "after failed connect",
        );
        assert_kind(
            a.send_to(b"x", "not an address").await,
            io::ErrorKind::InvalidInput,
            "unparsable target",
        );
        let nowhere: &[SocketAddr] = &[];
        assert_kind(
            a.send_to(b"x", nowhere).await,
            io::ErrorKind::InvalidInput,
            "no target",
        );
        assert_errno(
            a.send_to(&vec![0u8; 70_000], a.local_addr()?).await,
            libc::EMSGSIZE,
            "a datagram over UDP's limit",
        );
        Ok(())
    })
}

/// Senders in `datagrams_from_several_tasks_each_arrive_once_and_intact`.
const SENDERS: usize = 6;
/// Datagrams each of them sends.
const PER_SENDER: usize = 300;
/// Datagrams a sender may have unacknowledged: small enough that the receiver's
/// buffer can never overflow (which would drop datagrams).
const SENDER_WINDOW: usize = 4;
/// Bytes of the (sender, sequence) header at the start of every such datagram.
const HEADER: usize = 8;

/// Datagram `seq` of sender `id`: the header, then `len - HEADER` bytes that depend
/// on both.
fn datagram(id: usize, seq: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&u32::try_from(id).expect("small").to_le_bytes());
    out.extend_from_slice(&u32::try_from(seq).expect("small").to_le_bytes());
    out.extend(pattern(len - HEADER, (id * 100_000 + seq) as u64));
    out
}

/// Every datagram's length, per sender, decided up front.
fn datagram_lengths() -> Vec<Vec<usize>> {
    (0..SENDERS)
        .map(|id| {
            let mut rng = XorShift::new(id as u64);
            (0..PER_SENDER)
                .map(|_| rng.in_range(HEADER, 1200))
                .collect()
        })
        .collect()
}

/// Receives datagrams for ever, checks each against what its header says it is,
/// counts it in `seen` and sends the header back as the acknowledgement.
async fn receive_and_ack(
    socket: Rc<UdpSocket>,
    seen: Rc<RefCell<HashMap<(usize, usize), usize>>>,
    lengths: Rc<Vec<Vec<usize>>>,
    sender_addrs: Rc<Vec<SocketAddr>>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        assert!(n >= HEADER, "a {n}-byte datagram from {from}");
        let word = |at: usize| {
            let bytes = buf[at..at + 4].try_into().expect("4 bytes");
            u32::from_le_bytes(bytes) as usize
        };
        let (id, seq) = (word(0), word(4));
        assert!(id < SENDERS && seq < PER_SENDER, "header {id}/{seq}");
        assert_eq!(from, sender_addrs[id], "sender of {id}/{seq}");
        let expected = datagram(id, seq, lengths[id][seq]);
        assert_same_bytes(&buf[..n], &expected, &format!("datagram {id}/{seq}"));
        *seen.borrow_mut().entry((id, seq)).or_default() += 1;
        socket.send_to(&buf[..HEADER], from).await?;
    }
}

/// Waits for one acknowledgement from `receiver`: a bare header.
async fn await_ack(socket: &UdpSocket, receiver: SocketAddr) -> io::Result<()> {
    let mut ack = [0u8; 64];
    let (n, from) = recv_from_within(socket, &mut ack, "ack").await?;
    assert_eq!((n, from), (HEADER, receiver), "acknowledgement");
    Ok(())
}

#[test]
fn datagrams_from_several_tasks_each_arrive_once_and_intact() -> io::Result<()> {
    run(60, "several senders", || async {
        let receiver = Rc::new(UdpSocket::bind(LOCAL).await?);
        let target = receiver.local_addr()?;
        let lengths = Rc::new(datagram_lengths());
        // (sender, sequence) -> how many times it arrived.
        let seen: Rc<RefCell<HashMap<(usize, usize), usize>>> = Rc::default();
        let mut senders = Vec::new();
        let mut sender_addrs = Vec::new();
        for id in 0..SENDERS {
            let socket = UdpSocket::bind(LOCAL).await?;
            sender_addrs.push(socket.local_addr()?);
            let lengths = lengths.clone();
            senders.push(edgeloop::spawn(async move {
                let mut acks_due = 0;
                for seq in 0..PER_SENDER {
                    if acks_due == SENDER_WINDOW {
                        await_ack(&socket, target).await?;
                        acks_due -= 1;
                    }
                    let msg = datagram(id, seq, lengths[id][seq]);
                    let n = socket.send_to(&msg, target).await?;
                    assert_eq!(n, msg.len(), "sender {id}, datagram {seq}: bytes sent");
                    acks_due += 1;
                }
                for _ in 0..acks_due {
                    await_ack(&socket, target).await?;
                }
                Ok::<(), io::Error>(())
            }));
        }
        let sender_addrs = Rc::new(sender_addrs);
        // Two receiving tasks share one socket: each datagram goes to one of them.
        let receivers: Vec<_> = (0..2)
            .map(|_| {
                edgeloop::spawn(receive_and_ack(
                    receiver.clone(),
                    seen.clone(),
                    lengths.clone(),
                    sender_addrs.clone(),
                ))
            })
            .collect();
        let mut sent = Vec::new();
        for sender in senders {
            sent.push(joined(sender.await)?);
        }
        for task in receivers {
            if task.is_finished() {
                // Its error explains the senders' (missing acks).
                joined(task.await)??;
                panic!("a receiving task ended without an error");
            }
            task.abort();
        }
        for (id, result) in sent.into_iter().enumerate() {
            result.map_err(|e| io::Error::new(e.kind(), format!("sender {id}: {e}")))?;
        }
        let seen = seen.borrow();
        assert_eq!(
            seen.len(),
            SENDERS * PER_SENDER,
            "distinct datagrams received"
        );
        let repeated: Vec<_> = seen.iter().filter(|(_, count)| **count != 1).collect();
        assert!(repeated.is_empty(), "received more than once: {repeated:?}");
        Ok(())
    })
}

#[test]
fn datagram_boundaries_are_preserved() -> io::Result<()> {
    run(10, "boundaries", || async {
        let a = UdpSocket::bind(LOCAL).await?;
        let b = UdpSocket::bind(LOCAL).await?;
        a.connect(b.local_addr()?).await?;
        let sizes = [300, 1, 0, 1400];
        for (i, &size) in sizes.iter().enumerate() {
            assert_eq!(
                a.send(&pattern(size, 10 + i as u64)).await?,
                size,
                "send {i}"
            );
        }
        let mut buf = vec![0u8; 4096];
        for (i, &size) in sizes.iter().enumerate() {
            let (n, from) = b.recv_from(&mut buf).await?;
            assert_eq!(from, a.local_addr()?, "sender of datagram {i}");
            assert_same_bytes(
                &buf[..n],
                &pattern(size, 10 + i as u64),
                &format!("datagram {i}"),
            );
        }
        assert_kind(b.try_recv(&mut buf), io::ErrorKind::WouldBlock, "after all");
        Ok(())
    })
}

#[test]
fn a_long_datagram_is_truncated_and_its_rest_discarded() -> io::Result<()> {
    run(10, "truncation", || async {
        let a = UdpSocket::bind(LOCAL).await?;
        let b = UdpSocket::bind(LOCAL).await?;
        let long = pattern(100, 20);
        a.send_to(&long, b.local_addr()?).await?;
        a.send_to(b"next!", b.local_addr()?).await?;

        let mut small = [0u8; 10];
        let (n, _) = b.recv_from(&mut small).await?;
        assert_eq!(n, 10, "bytes of the cut datagram");
        assert_same_bytes(&small, &long[..10], "the cut datagram");
        // The next receive gets the next datagram, not the other 90 bytes.
        let mut buf = [0u8; 200];
        let n = b.recv(&mut buf).await?;
        assert_same_bytes(&buf[..n], b"next!", "the datagram after");
        Ok(())
    })
}

#[test]
fn peek_from_does_not_consume() -> io::Result<()> {
    run(10, "peek_from", || async {
        let a = UdpSocket::bind(LOCAL).await?;
        let b = UdpSocket::bind(LOCAL).await?;
        let msg = pattern(64, 30);
        a.send_to(&msg, b.local_addr()?).await?;

        let mut buf = [0u8; 128];
        for i in 0..2 {
            let (n, from) = b.peek_from(&mut buf).await?;
            assert_eq!(from, a.local_addr()?, "peek {i}: sender");
            assert_same_bytes(&buf[..n], &msg, &format!("peek {i}"));
        }
        // A short peek copies a prefix and leaves the datagram whole.
        let mut small = [0u8; 4];
        let (n, _) = b.peek_from(&mut small).await?;
        assert_same_bytes(&small[..n], &msg[..4], "short peek");
        let (n, from) = b.recv_from(&mut buf).await?;
        assert_eq!(from, a.local_addr()?, "recv: sender");
        assert_same_bytes(&buf[..n], &msg, "recv after peeks");
        assert_kind(
            b.try_recv(&mut buf),
            io::ErrorKind::WouldBlock,
            "after recv",
        );
        Ok(())
    })
}

#[test]
fn a_pending_recv_is_woken_by_a_send_from_another_task() -> io::Result<()> {
    run(10, "wakeup", || async {
        let receiver = Rc::new(UdpSocket::bind(LOCAL).await?);
        let target = receiver.local_addr()?;
        let waiting = {
            let receiver = receiver.clone();
            edgeloop::spawn(async move {
                let mut buf = [0u8; 64];
                let (n, from) = receiver.recv_from(&mut buf).await?;
                Ok::<_, io::Error>((buf[..n].to_vec(), from))
            })
        };
        // Let the task run: it finds the queue empty and parks on the socket.
        for _ in 0..3 {
            edgeloop::yield_now().await;
        }
        assert!(!waiting.is_finished(), "recv finished with nothing sent");

        let sender = edgeloop::spawn(async move {
            let socket = UdpSocket::bind(LOCAL).await?;
            socket.send_to(b"wake up", target).await?;
            socket.local_addr()
        });
        let sender_addr = joined(sender.await)??;
        let (bytes, from) = joined(waiting.await)??;
        assert_eq!((bytes.as_slice(), from), (&b"wake up"[..], sender_addr));
        Ok(())
    })
}

#[test]
fn a_closed_peer_port_gives_connection_refused_on_recv_and_send() -> io::Result<()> {
    run(10, "connection refused", || async {
        let closed = closed_udp_port()?;
        let socket = UdpSocket::bind(LOCAL).await?;
        socket.connect(closed).await?;
        // UDP has no handshake: the first send succeeds, and the ICMP port
        // unreachable it causes comes back as an error on the socket.
        assert_eq!(socket.send(b"anyone?").await?, 7, "first send");
        let mut buf = [0u8; 16];
        assert_kind(
            socket.recv(&mut buf).await,
            io::ErrorKind::ConnectionRefused,
            "recv after sending to a closed port",
        );
        // The error was reported once; the next send goes out, and its refusal
        // shows up on a later send (loopback answers within a send or two).
        let mut refused = None;
        for attempt in 0..1000 {
            match socket.send(b"again?").await {
                Ok(n) => assert_eq!(n, 6, "send {attempt}"),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
            edgeloop::time::sleep(Duration::from_millis(1)).await;
        }
        let e = refused.expect("no send reported the refusal within 1000 attempts");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "send: {e:?}");
        Ok(())
    })
}

#[test]
fn binding_a_port_twice_fails_with_addr_in_use() -> io::Result<()> {
    run(10, "address in use", || async {
        let first = UdpSocket::bind(LOCAL).await?;
        let addr = first.local_addr()?;
        assert_kind(
            UdpSocket::bind(addr).await,
            io::ErrorKind::AddrInUse,
            "second bind",
        );
        let held = std::net::UdpSocket::bind(LOCAL)?;
        let held_addr = held.local_addr()?;
        assert_kind(
            UdpSocket::bind(held_addr).await,
            io::ErrorKind::AddrInUse,
            "bind of a port std holds",
        );
        assert_kind(
            UdpSocket::bind("127.0.0.1").await,
            io::ErrorKind::InvalidInput,
            "address without a port",
        );
        Ok(())
    })
}

#[test]
fn ipv6_loopback_round_trip() -> io::Result<()> {
    run(10, "ipv6", || async {
        let a = match UdpSocket::bind("[::1]:0").await {
            Ok(socket) => socket,
            Err(e) => {
                println!("skipped: cannot bind [::1]:0 ({e}); IPv6 loopback unavailable");
                return Ok(());
            }
        };
        let b = UdpSocket::bind("[::1]:0").await?;
        let (a_addr, b_addr) = (a.local_addr()?, b.local_addr()?);
        assert_eq!(a_addr.ip(), Ipv6Addr::LOCALHOST, "{a_addr}");
        let msg = pattern(900, 40);
        a.send_to(&msg, b_addr).await?;
        let mut buf = [0u8; 2048];
        let (n, from) = b.recv_from(&mut buf).await?;
        assert_eq!(from, a_addr, "sender");
        assert_same_bytes(&buf[..n], &msg, "[::1] a -> b");
        b.connect(a_addr).await?;
        b.send(b"six").await?;
        let n = a.recv(&mut buf).await?;
        assert_eq!(&buf[..n], b"six", "[::1] b -> a");
        a.set_multicast_loop_v6(false)?;
        assert!(
            !a.multicast_loop_v6()?,
            "multicast_loop_v6 after setting false"
        );
        Ok(())
    })
}

#[test]
fn broadcast_ttl_and_multicast_options_round_trip() -> io::Result<()> {
    run(10, "options", || async {
        let socket = UdpSocket::bind(LOCAL).await?;
        assert!(!socket.broadcast()?, "SO_BROADCAST is off by default");
        socket.set_broadcast(true)?;
        assert!(socket.broadcast()?, "broadcast after setting true");
        socket.set_broadcast(false)?;
        assert!(!socket.broadcast()?, "broadcast after setting false");

        for ttl in [1, 42, 255] {
            socket.set_ttl(ttl)?;
            assert_eq!(socket.ttl()?, ttl, "ttl");
        }
        for bad in [0, 256, u32::MAX] {
            assert_kind(socket.set_ttl(bad), io::ErrorKind::InvalidInput, "set_ttl");
        }

        assert!(
            socket.multicast_loop_v4()?,
            "IP_MULTICAST_LOOP is on by default"
        );
        socket.set_multicast_loop_v4(false)?;
        assert!(!socket.multicast_loop_v4()?, "multicast loop after false");
        socket.set_multicast_loop_v4(true)?;
        assert!(socket.multicast_loop_v4()?, "multicast loop after true");

        assert_eq!(socket.multicast_ttl_v4()?, 1, "default multicast ttl");
        for ttl in [0, 7, 255] {
            socket.set_multicast_ttl_v4(ttl)?;
            assert_eq!(socket.multicast_ttl_v4()?, ttl, "multicast ttl");
        }
        assert_kind(
            socket.set_multicast_ttl_v4(256),
            io::ErrorKind::InvalidInput,
            "set_multicast_ttl_v4(256)",
        );
        assert_errno(
            socket.set_multicast_loop_v6(true),
            libc::ENOPROTOOPT,
            "an IPv6 option on an IPv4 socket",
        );
        assert_eq!(
            socket.take_error()?.map(|e| e.kind()),
            None,
            "pending error"
        );
        Ok(())
    })
}

/// Errnos with which the kernel refuses multicast where the host has no route or
/// interface for it: the multicast tests skip on these.
fn multicast_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV | libc::ENETUNREACH | libc::EADDRNOTAVAIL | libc::EHOSTUNREACH)
    )
}

#[test]
fn multicast_v4_on_loopback_delivers_to_a_member() -> io::Result<()> {
    run(20, "multicast v4", || async {
        let group = Ipv4Addr::new(239, 255, 77, 41);
        // Bound to the group itself: only datagrams for the group reach it.
        let receiver = match UdpSocket::bind((group, 0)).await {
            Ok(socket) => socket,
            Err(e) => {
                println!("skipped: cannot bind {group}:0 ({e})");
                return Ok(());
            }
        };
        if let Err(e) = receiver.join_multicast_v4(group, Ipv4Addr::LOCALHOST) {
            if multicast_unsupported(&e) {
                println!("skipped: the kernel refused to join {group} on 127.0.0.1 ({e})");
                return Ok(());
            }
            return Err(e);
        }
        assert_kind(
            receiver.join_multicast_v4(group, Ipv4Addr::LOCALHOST),
            io::ErrorKind::AddrInUse,
            "joining twice",
        );
        assert_kind(
            receiver.join_multicast_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::UNSPECIFIED),
            io::ErrorKind::InvalidInput,
            "joining a unicast address",
        );

        // A sender bound to 127.0.0.1 sends multicast out of `lo`: the kernel picks
        // the interface that owns the source address.
        let sender = UdpSocket::bind(LOCAL).await?;
        sender.set_multicast_loop_v4(true)?;
        assert!(sender.multicast_loop_v4()?, "multicast loop");
        let port = receiver.local_addr()?.port();
        let msg = pattern(333, 50);
        if let Err(e) = sender.send_to(&msg, (group, port)).await {
            if multicast_unsupported(&e) {
                println!("skipped: the kernel refused to send to {group} from 127.0.0.1 ({e})");
                return Ok(());
            }
            return Err(e);
        }
        let mut buf = [0u8; 1024];
        let (n, from) = recv_from_within(&receiver, &mut buf, "multicast v4").await?;
        assert_eq!(from, sender.local_addr()?, "sender");
        assert_same_bytes(&buf[..n], &msg, "multicast datagram");

        receiver.leave_multicast_v4(group, Ipv4Addr::LOCALHOST)?;
        assert_kind(
            receiver.leave_multicast_v4(group, Ipv4Addr::LOCALHOST),
            io::ErrorKind::AddrNotAvailable,
            "leaving twice",
        );
        Ok(())
    })
}

/// The index of the loopback interface, if `/sys` says.
fn loopback_index() -> Option<u32> {
    std::fs::read_to_string("/sys/class/net/lo/ifindex")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn multicast_v6_interface_local_delivers_to_a_member() -> io::Result<()> {
    run(20, "multicast v6", || async {
        // Interface-local scope (ff01::/16): the kernel never puts these datagrams on
        // a wire, so even the interface the routing table picks keeps them on-host.
        let group: Ipv6Addr = "ff01::4567:41".parse().expect("literal");
        let mut refusals = Vec::new();
        for interface in loopback_index().into_iter().chain([0]) {
            let receiver = match UdpSocket::bind("[::]:0").await {
                Ok(socket) => socket,
                Err(e) => {
                    println!("skipped: cannot bind [::]:0 ({e}); no IPv6");
                    return Ok(());
                }
            };
            if let Err(e) = receiver.join_multicast_v6(&group, interface) {
                if multicast_unsupported(&e) {
                    refusals.push(format!("join on interface {interface}: {e}"));
                    continue;
                }
                return Err(e);
            }
            let sender = UdpSocket::bind("[::]:0").await?;
            sender.set_multicast_loop_v6(true)?;
            assert!(sender.multicast_loop_v6()?, "multicast loop v6");
            let target = SocketAddrV6::new(group, receiver.local_addr()?.port(), 0, interface);
            let msg = pattern(444, 60);
            if let Err(e) = sender.send_to(&msg, target).await {
                if multicast_unsupported(&e) {
                    refusals.push(format!("send on interface {interface}: {e}"));
                    continue;
                }
                return Err(e);
            }
            let mut buf = [0u8; 1024];
            let (n, from) = recv_from_within(&receiver, &mut buf, "multicast v6").await?;
            assert_eq!(from.port(), sender.local_addr()?.port(), "sender port");
            assert_same_bytes(&buf[..n], &msg, "multicast v6 datagram");
            receiver.leave_multicast_v6(&group, interface)?;
            assert_kind(
                receiver.leave_multicast_v6(&group, interface),
                io::ErrorKind::AddrNotAvailable,
                "leaving twice",
            );
            return Ok(());
        }
        println!("skipped: the kernel refused IPv6 multicast: {refusals:?}");
        Ok(())
    })
}

/// Sends every datagram back to its sender, for ever.
async fn echo_forever(socket: UdpSocket) -> io::Result<()> {
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        socket.send_to(&buf[..n], from).await?;
    }
}

#[test]
fn twenty_thousand_datagrams_echo_intact_with_a_window() -> io::Result<()> {
    const TOTAL: usize = 20_000;
    /// Datagrams in flight at once: with both queues holding at most this many
    /// (each under 3 KiB of kernel memory), neither default buffer can overflow.
    const WINDOW: usize = 32;

    run(120, "20,000 datagrams", || async {
        let server = UdpSocket::bind(LOCAL).await?;
        let server_addr = server.local_addr()?;
        let echo = edgeloop::spawn(echo_forever(server));

        let client = UdpSocket::bind(LOCAL).await?;
        client.connect(server_addr).await?;
        let mut rng = XorShift::new(70);
        // Sent and not yet echoed, as (sequence number, bytes).
        let mut in_flight: Vec<(usize, Vec<u8>)> = Vec::with_capacity(WINDOW);
        let (mut sent, mut echoed, mut bytes) = (0, 0, 0);
        let mut buf = vec![0u8; 2048];
        while echoed < TOTAL {
            while sent < TOTAL && in_flight.len() < WINDOW {
                let len = rng.in_range(1, 1400);
                let msg = rng.bytes(len);
                assert_eq!(client.send(&msg).await?, len, "datagram {sent}: bytes sent");
                in_flight.push((sent, msg));
                sent += 1;
            }
            let n = match edgeloop::time::timeout(ARRIVAL, client.recv(&mut buf)).await {
                Ok(received) => received?,
                Err(_) => panic!(
                    "lost: {} datagrams unanswered after {ARRIVAL:?} (sequence numbers \
                     {:?}); {echoed} of {TOTAL} echoed",
                    in_flight.len(),
                    in_flight.iter().map(|(seq, _)| seq).collect::<Vec<_>>()
                ),
            };
            // Matched by content, not order: identical datagrams are interchangeable.
            let Some(at) = in_flight.iter().position(|(_, msg)| msg[..] == buf[..n]) else {
                panic!(
                    "an echo of {n} bytes matches none of the {} datagrams in flight \
                     (corrupted, duplicated or truncated); {echoed} echoed so far",
                    in_flight.len()
                );
            };
            in_flight.swap_remove(at);
            echoed += 1;
            bytes += n;
        }
        assert!(!echo.is_finished(), "the echo task ended early");
        echo.abort();
        assert_kind(
            client.try_recv(&mut buf),
            io::ErrorKind::WouldBlock,
            "extra echo",
        );
        println!("{TOTAL} datagrams, {bytes} bytes echoed intact");
        Ok(())
    })
}

#[test]
fn socket_fd_is_cloexec_and_nonblocking_from_every_constructor() -> io::Result<()> {
    run(10, "fd flags", || async {
        let bound = UdpSocket::bind(LOCAL).await?;
        let v6 = UdpSocket::bind("[::1]:0").await.ok();
        // std sockets are blocking; `from_std` must make them non-blocking.
        let from_std = UdpSocket::from_std(std::net::UdpSocket::bind(LOCAL)?)?;
        let sockets = [Some(&bound), v6.as_ref(), Some(&from_std)];
        for (i, socket) in sockets.into_iter().flatten().enumerate() {
            let (fd_bits, status) = fd_flags(socket.as_raw_fd())?;
            assert_ne!(
                fd_bits & libc::FD_CLOEXEC,
                0,
                "socket {i}: fd flags {fd_bits:#x}"
            );
            assert_ne!(
                status & libc::O_NONBLOCK,
                0,
                "socket {i}: status {status:#x}"
            );
        }
        Ok(())
    })
}

#[test]
fn from_std_and_into_std_keep_the_socket_and_its_queue() -> io::Result<()> {
    run(10, "from_std/into_std", || async {
        let std_socket = std::net::UdpSocket::bind(LOCAL)?;
        let addr = std_socket.local_addr()?;
        let socket = UdpSocket::from_std(std_socket)?;
        assert_eq!(socket.local_addr()?, addr, "local address after from_std");
        let peer = UdpSocket::bind(LOCAL).await?;
        peer.send_to(b"one", addr).await?;
        peer.send_to(b"two", addr).await?;
        let mut buf = [0u8; 16];
        let (n, from) = socket.recv_from(&mut buf).await?;
        assert_eq!((&buf[..n], from), (&b"one"[..], peer.local_addr()?));

        let back = socket.into_std()?;
        back.set_nonblocking(false)?;
        back.set_read_timeout(Some(ARRIVAL))?;
        let (n, from) = back.recv_from(&mut buf)?;
        assert_eq!((&buf[..n], from), (&b"two"[..], peer.local_addr()?));
        Ok(())
    })
}
