//! Unix-domain sockets: `UnixListener`/`UnixStream` round trips, many clients,
//! large transfers, half-close, split halves, `pair`, `UnixDatagram` boundaries and
//! addresses, abstract names, the errors of bind and connect, `peer_cred`, fd
//! flags, a full listener backlog, and the `unix_echo` example run as a user would.
//!
//! Every test uses its own socket paths (pid + counter) under the temp dir and
//! removes them, even when it fails ([`TempPath`]).

mod support;

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use edgeloop::net::unix::{ReuniteError, SocketAddr};
use edgeloop::net::{UnixDatagram, UnixListener, UnixStream};
use futures_util::future::join;
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use support::{
    ChildGuard, XorShift, assert_same_bytes, fd_flags, first_line_within, joined, pattern,
    roundtrip, with_timeout,
};

/// A socket path under the temp dir, unique in this run (pid + counter), removed
/// (if it exists) when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> TempPath {
        TempPath(std::env::temp_dir().join(format!(
            "edgeloop-{}-{}-{tag}.sock",
            std::process::id(),
            next_id()
        )))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        // Ignored: the file may never have been created, or a test removed it.
        let _ = std::fs::remove_file(&self.0);
    }
}

fn next_id() -> usize {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// An abstract address unique in this run, as a path: NUL, then the name.
fn abstract_path(tag: &str) -> String {
    format!("\0edgeloop-test-{}-{}-{tag}", std::process::id(), next_id())
}

/// Reads until EOF.
async fn read_to_eof(stream: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Reads exactly `len` bytes; `UnexpectedEof` (saying how far it got) if EOF comes
/// first.
async fn read_exactly(stream: &mut UnixStream, len: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let n = stream.read(&mut out[filled..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("EOF after {filled} of {len} bytes"),
            ));
        }
        filled += n;
    }
    Ok(out)
}

/// Echoes until EOF, then shuts down the write side; returns the bytes echoed.
async fn echo(mut stream: UnixStream) -> io::Result<usize> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            stream.shutdown(Shutdown::Write)?;
            return Ok(total);
        }
        stream.write_all(&buf[..n]).await?;
        total += n;
    }
}

/// A connected pair made through a listener bound at a fresh temp path:
/// (client, accepted server side, the path guard).
async fn connected(tag: &str) -> io::Result<(UnixStream, UnixStream, TempPath)> {
    let path = TempPath::new(tag);
    let listener = UnixListener::bind(path.path())?;
    let client = UnixStream::connect(path.path()).await?;
    let (server, _) = listener.accept().await?;
    Ok((client, server, path))
}

#[test]
fn stream_round_trip_carries_exact_bytes_and_reports_both_addresses() -> io::Result<()> {
    with_timeout(30, "unix stream round trip", || {
        edgeloop::block_on(async {
            let path = TempPath::new("roundtrip");
            let listener = UnixListener::bind(path.path())?;
            let bound = listener.local_addr()?;
            assert_eq!(bound.as_pathname(), Some(path.path()), "{bound:?}");
            assert_eq!(bound.to_string(), path.path().display().to_string());

            let mut client = UnixStream::connect(path.path()).await?;
            let (mut server, peer) = listener.accept().await?;
            assert!(peer.is_unnamed(), "accepted peer address {peer:?}");
            assert!(
                client.local_addr()?.is_unnamed(),
                "{:?}",
                client.local_addr()
            );
            assert_eq!(client.peer_addr()?.as_pathname(), Some(path.path()));
            assert_eq!(server.local_addr()?.as_pathname(), Some(path.path()));
            assert!(server.peer_addr()?.is_unnamed(), "{:?}", server.peer_addr());

            client.write_all(b"hello, server").await?;
            let got = read_exactly(&mut server, 13).await?;
            assert_same_bytes(&got, b"hello, server", "client to server");
            let reply = pattern(100 * 1024, 1);
            server.write_all(&reply).await?;
            let got = read_exactly(&mut client, reply.len()).await?;
            assert_same_bytes(&got, &reply, "server to client");

            // Peek shows the bytes without taking them.
            server.write_all(b"peeked").await?;
            let mut buf = [0u8; 16];
            let n = client.peek(&mut buf).await?;
            assert_eq!(&buf[..n], b"peeked", "peek");
            let got = read_exactly(&mut client, 6).await?;
            assert_same_bytes(&got, b"peeked", "read after peek");
            Ok(())
        })
    })
}

#[test]
fn hundred_concurrent_clients_each_get_their_random_size_echo_exactly() -> io::Result<()> {
    with_timeout(120, "unix, 100 concurrent clients", || {
        edgeloop::block_on(async {
            const CLIENTS: usize = 100;
            let path = TempPath::new("many");
            let listener = UnixListener::bind(path.path())?;
            let server = edgeloop::spawn(async move {
                let mut tasks = Vec::new();
                for _ in 0..CLIENTS {
                    let (stream, _) = listener.accept().await?;
                    tasks.push(edgeloop::spawn(echo(stream)));
                }
                let mut totals = Vec::new();
                for task in tasks {
                    totals.push(joined(task.await)??);
                }
                Ok::<_, io::Error>(totals)
            });
            let mut rng = XorShift::new(7);
            let clients: Vec<_> = (0..CLIENTS)
                .map(|i| {
                    let size = rng.in_range(1, 256 * 1024);
                    let target = path.path().to_owned();
                    edgeloop::spawn(async move {
                        let msg = pattern(size, 1000 + i as u64);
                        let mut stream = UnixStream::connect(&target).await?;
                        let echoed = roundtrip(&mut stream, &msg).await?;
                        assert_same_bytes(&echoed, &msg, &format!("client {i} ({size} bytes)"));
                        stream.shutdown(Shutdown::Write)?;
                        let rest = read_to_eof(&mut stream).await?;
                        assert!(
                            rest.is_empty(),
                            "client {i}: {} bytes after the echo",
                            rest.len()
                        );
                        Ok::<_, io::Error>(size)
                    })
                })
                .collect();
            let mut sent = 0;
            for client in clients {
                sent += joined(client.await)??;
            }
            let totals = joined(server.await)??;
            assert_eq!(totals.len(), CLIENTS, "connections served");
            assert_eq!(
                totals.iter().sum::<usize>(),
                sent,
                "bytes echoed: {totals:?}"
            );
            Ok(())
        })
    })
}

/// Writes `out` while reading as many bytes from the peer, on one stream.
async fn exchange(stream: &mut UnixStream, out: &[u8]) -> io::Result<Vec<u8>> {
    let (mut reader, mut writer) = UnixStream::split(stream);
    let read = async {
        let mut got = vec![0u8; out.len()];
        let mut filled = 0;
        while filled < got.len() {
            let n = reader.read(&mut got[filled..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF after {filled} of {} bytes", got.len()),
                ));
            }
            filled += n;
        }
        Ok(got)
    };
    let (written, got) = join(writer.write_all(out), read).await;
    written?;
    got
}

#[test]
fn eight_mib_each_way_at_once_arrive_intact() -> io::Result<()> {
    with_timeout(120, "unix, 8 MiB each way", || {
        edgeloop::block_on(async {
            const LEN: usize = 8 * 1024 * 1024;
            let (mut client, mut server, _path) = connected("large").await?;
            let to_server = pattern(LEN, 11);
            let to_client = pattern(LEN, 12);
            let (at_client, at_server) = join(
                exchange(&mut client, &to_server),
                exchange(&mut server, &to_client),
            )
            .await;
            assert_same_bytes(&at_server?, &to_server, "8 MiB client to server");
            assert_same_bytes(&at_client?, &to_client, "8 MiB server to client");
            Ok(())
        })
    })
}

#[test]
fn half_close_each_way_gives_eof_while_the_other_direction_still_works() -> io::Result<()> {
    with_timeout(30, "unix half close", || {
        edgeloop::block_on(async {
            let (mut client, mut server, _path) = connected("half-close").await?;
            client.write_all(b"request").await?;
            client.shutdown(Shutdown::Write)?;
            let got = read_to_eof(&mut server).await?;
            assert_same_bytes(&got, b"request", "bytes before the client's EOF");
            let mut buf = [0u8; 8];
            assert_eq!(server.read(&mut buf).await?, 0, "EOF is sticky");

            // The server can still write after reading EOF, and the client read.
            server.write_all(b"reply after EOF").await?;
            let got = read_exactly(&mut client, 15).await?;
            assert_same_bytes(&got, b"reply after EOF", "reply after half-close");

            // Now the other way: the server shuts down writing too.
            server.write_all(b"bye").await?;
            server.shutdown(Shutdown::Write)?;
            let got = read_to_eof(&mut client).await?;
            assert_same_bytes(&got, b"bye", "bytes before the server's EOF");

            let error = client
                .write_all(b"x")
                .await
                .expect_err("write after own shutdown(Write) succeeded");
            assert_eq!(error.kind(), io::ErrorKind::BrokenPipe, "{error}");
            Ok(())
        })
    })
}

#[test]
fn owned_halves_serve_a_reader_task_and_a_writer_task_at_once() -> io::Result<()> {
    with_timeout(60, "unix into_split tasks", || {
        edgeloop::block_on(async {
            const LEN: usize = 2 * 1024 * 1024;
            let (client, server, _path) = connected("into-split").await?;
            let server = edgeloop::spawn(echo(server));
            let (mut reader, mut writer) = client.into_split();
            let sent = pattern(LEN, 21);
            let to_send = sent.clone();
            let writer_task = edgeloop::spawn(async move {
                for chunk in to_send.chunks(100_000) {
                    writer.write_all(chunk).await?;
                }
                Ok::<_, io::Error>(writer)
            });
            let reader_task = edgeloop::spawn(async move {
                let mut got = Vec::with_capacity(LEN);
                let mut buf = vec![0u8; 32 * 1024];
                while got.len() < LEN {
                    let n = reader.read(&mut buf).await?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("EOF after {} bytes", got.len()),
                        ));
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                Ok((reader, got))
            });
            let writer = joined(writer_task.await)??;
            let (mut reader, got) = joined(reader_task.await)??;
            assert_same_bytes(&got, &sent, "echo through owned halves");

            drop(writer); // shuts down writing: the server sees EOF and does the same
            let mut buf = [0u8; 8];
            assert_eq!(reader.read(&mut buf).await?, 0, "EOF after the echo");
            assert_eq!(joined(server.await)??, LEN, "bytes the server echoed");
            Ok(())
        })
    })
}

#[test]
fn reunite_gives_back_a_stream_whose_write_side_is_still_open() -> io::Result<()> {
    with_timeout(30, "unix reunite", || {
        edgeloop::block_on(async {
            let (client, mut server, _path) = connected("reunite").await?;
            let (reader, writer) = client.into_split();
            let mut client = reader
                .reunite(writer)
                .map_err(|e| io::Error::other(e.to_string()))?;
            client.write_all(b"still open").await?;
            client.shutdown(Shutdown::Write)?;
            let got = read_to_eof(&mut server).await?;
            assert_same_bytes(&got, b"still open", "write after reunite");
            Ok(())
        })
    })
}

#[test]
fn reunite_of_halves_from_different_streams_gives_both_halves_back() -> io::Result<()> {
    with_timeout(30, "unix reunite mismatch", || {
        edgeloop::block_on(async {
            let (a, mut peer_a) = UnixStream::pair()?;
            let (b, mut peer_b) = UnixStream::pair()?;
            let (read_a, write_a) = a.into_split();
            let (read_b, write_b) = b.into_split();
            let error: ReuniteError = read_a
                .reunite(write_b)
                .expect_err("halves of two streams were reunited");
            assert!(
                error.to_string().contains("not from the same"),
                "message: {error}"
            );
            let ReuniteError(read_a, mut write_b): ReuniteError = error;

            // The halves given back are intact: `write_b` still writes to `peer_b`.
            write_b.write_all(b"from b").await?;
            let got = read_exactly(&mut peer_b, 6).await?;
            assert_same_bytes(&got, b"from b", "write through a returned half");
            // And each pairs with its own other half.
            let mut a = read_a
                .reunite(write_a)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let b = read_b
                .reunite(write_b)
                .map_err(|e| io::Error::other(e.to_string()))?;
            a.write_all(b"from a").await?;
            let got = read_exactly(&mut peer_a, 6).await?;
            assert_same_bytes(&got, b"from a", "write after reuniting a");
            drop(b);
            assert_eq!(
                read_to_eof(&mut peer_b).await?,
                b"",
                "peer of b after b closed"
            );
            Ok(())
        })
    })
}

#[test]
fn dropping_the_owned_write_half_makes_the_peer_read_eof() -> io::Result<()> {
    with_timeout(30, "unix drop OwnedWriteHalf", || {
        edgeloop::block_on(async {
            let (client, mut server, _path) = connected("drop-write-half").await?;
            let (mut reader, mut writer) = client.into_split();
            writer.write_all(b"last words").await?;
            drop(writer);
            let got = read_to_eof(&mut server).await?;
            assert_same_bytes(&got, b"last words", "bytes before EOF");
            // Only writing was shut down: the read half still receives.
            server.write_all(b"answer").await?;
            let mut buf = [0u8; 16];
            let n = reader.read(&mut buf).await?;
            assert_eq!(
                &buf[..n],
                b"answer",
                "read half after the write half dropped"
            );
            Ok(())
        })
    })
}

#[test]
fn forgotten_write_half_does_not_shut_down_writing() -> io::Result<()> {
    with_timeout(30, "unix OwnedWriteHalf::forget", || {
        edgeloop::block_on(async {
            let (a, mut b) = UnixStream::pair()?;
            let (_reader, writer) = a.into_split();
            writer.forget();
            // The stream is still whole (the read half holds it), so no EOF yet:
            // `b` writes, and nothing is readable on `b`.
            b.write_all(b"x").await?;
            let mut buf = [0u8; 4];
            let error = b.try_read(&mut buf).expect_err("b read something");
            assert_eq!(error.kind(), io::ErrorKind::WouldBlock, "{error}");
            Ok(())
        })
    })
}

#[test]
fn futures_io_traits_read_write_and_close_streams_and_halves() -> io::Result<()> {
    with_timeout(30, "unix futures-io", || {
        edgeloop::block_on(async {
            let (mut a, mut b) = UnixStream::pair()?;
            AsyncWriteExt::write_all(&mut a, b"via the trait").await?;
            AsyncWriteExt::close(&mut a).await?; // shuts down writing
            let mut got = Vec::new();
            AsyncReadExt::read_to_end(&mut b, &mut got).await?;
            assert_same_bytes(&got, b"via the trait", "AsyncRead on UnixStream");

            let (c, d) = UnixStream::pair()?;
            let (mut c_read, mut c_write) = c.into_split();
            let (mut d_read, mut d_write) = d.into_split();
            AsyncWriteExt::write_all(&mut c_write, b"half to half").await?;
            AsyncWriteExt::close(&mut c_write).await?;
            let mut got = Vec::new();
            AsyncReadExt::read_to_end(&mut d_read, &mut got).await?;
            assert_same_bytes(&got, b"half to half", "AsyncRead on OwnedReadHalf");
            AsyncWriteExt::write_all(&mut d_write, b"back").await?;
            let mut back = [0u8; 4];
            AsyncReadExt::read_exact(&mut c_read, &mut back).await?;
            assert_eq!(&back, b"back", "AsyncRead on the other read half");
            Ok(())
        })
    })
}

#[test]
fn stream_pair_is_connected_and_unnamed_both_ways() -> io::Result<()> {
    with_timeout(30, "unix stream pair", || {
        edgeloop::block_on(async {
            let (mut a, mut b) = UnixStream::pair()?;
            for (name, addr) in [
                ("a local", a.local_addr()?),
                ("a peer", a.peer_addr()?),
                ("b local", b.local_addr()?),
                ("b peer", b.peer_addr()?),
            ] {
                assert!(addr.is_unnamed(), "{name} address: {addr:?}");
                assert_eq!(addr.to_string(), "(unnamed)", "{name}");
            }
            let msg = pattern(300 * 1024, 31);
            let (written, got) = join(a.write_all(&msg), read_exactly(&mut b, msg.len())).await;
            written?;
            assert_same_bytes(&got?, &msg, "a to b");
            b.write_all(b"pong").await?;
            let got = read_exactly(&mut a, 4).await?;
            assert_same_bytes(&got, b"pong", "b to a");
            Ok(())
        })
    })
}

#[test]
fn datagram_pair_sends_both_ways() -> io::Result<()> {
    with_timeout(30, "unix datagram pair", || {
        edgeloop::block_on(async {
            let (a, b) = UnixDatagram::pair()?;
            assert_eq!(a.send(b"ping").await?, 4, "bytes sent");
            let mut buf = [0u8; 16];
            let (n, from) = b.recv_from(&mut buf).await?;
            assert_eq!(&buf[..n], b"ping");
            assert!(from.is_unnamed(), "sender of a pair: {from:?}");
            b.send(b"pong").await?;
            let n = a.recv(&mut buf).await?;
            assert_eq!(&buf[..n], b"pong");
            assert!(a.peer_addr()?.is_unnamed(), "{:?}", a.peer_addr());
            Ok(())
        })
    })
}

#[test]
fn datagrams_keep_their_boundaries_and_truncate_into_a_small_buffer() -> io::Result<()> {
    with_timeout(30, "unix datagram boundaries", || {
        edgeloop::block_on(async {
            let server_path = TempPath::new("dgram-server");
            let client_path = TempPath::new("dgram-client");
            let server = UnixDatagram::bind(server_path.path())?;
            let client = UnixDatagram::bind(client_path.path())?;
            let long = pattern(100, 41);
            let messages: [&[u8]; 5] = [b"a", b"bb", &long, b"", b"last"];
            for msg in messages {
                let n = client.send_to(msg, server_path.path()).await?;
                assert_eq!(n, msg.len(), "bytes sent of {msg:02x?}");
            }
            let mut buf = [0u8; 256];
            for (i, msg) in messages[..2].iter().enumerate() {
                let (n, from) = server.recv_from(&mut buf).await?;
                assert_eq!(&buf[..n], *msg, "datagram {i}");
                assert_eq!(
                    from.as_pathname(),
                    Some(client_path.path()),
                    "sender {from:?}"
                );
            }
            // Peeking leaves the 100-byte datagram queued.
            let mut peeked = [0u8; 256];
            let (n, from) = server.peek_from(&mut peeked).await?;
            assert_eq!(&peeked[..n], &long[..], "peek_from");
            assert_eq!(
                from.as_pathname(),
                Some(client_path.path()),
                "peeked sender"
            );
            let n = server.peek(&mut peeked).await?;
            assert_eq!(n, long.len(), "peek again");
            // Into 10 bytes: its first 10 bytes arrive, the other 90 are lost.
            let mut small = [0u8; 10];
            let n = server.recv(&mut small).await?;
            assert_eq!(n, 10, "truncated length");
            assert_eq!(&small[..], &long[..10], "truncated bytes");
            let n = server.recv(&mut buf).await?;
            assert_eq!(n, 0, "the empty datagram, next in line");
            let n = server.recv(&mut buf).await?;
            assert_eq!(&buf[..n], b"last", "the datagram after the truncated one");
            Ok(())
        })
    })
}

#[test]
fn unbound_sender_shows_as_unnamed_in_recv_from_and_connect_sets_the_peer() -> io::Result<()> {
    with_timeout(30, "unix datagram unbound + connect", || {
        edgeloop::block_on(async {
            let server_path = TempPath::new("dgram-unbound");
            let server = UnixDatagram::bind(server_path.path())?;
            let client = UnixDatagram::unbound()?;
            assert!(
                client.local_addr()?.is_unnamed(),
                "{:?}",
                client.local_addr()
            );
            client.send_to(b"anonymous", server_path.path()).await?;
            let mut buf = [0u8; 32];
            let (n, from) = server.recv_from(&mut buf).await?;
            assert_eq!(&buf[..n], b"anonymous");
            assert!(from.is_unnamed(), "unbound sender: {from:?}");
            assert_eq!(from.as_pathname(), None);
            assert_eq!(from.as_abstract_name(), None);

            let error = client.peer_addr().expect_err("unconnected peer_addr");
            assert_eq!(error.kind(), io::ErrorKind::NotConnected, "{error}");
            let error = client.send(b"x").await.expect_err("send unconnected");
            assert_eq!(error.kind(), io::ErrorKind::NotConnected, "{error}");
            client.connect(server_path.path())?;
            assert_eq!(client.peer_addr()?.as_pathname(), Some(server_path.path()));
            client.send(b"connected").await?;
            let n = server.recv(&mut buf).await?;
            assert_eq!(&buf[..n], b"connected");
            Ok(())
        })
    })
}

#[test]
fn connected_datagram_send_after_the_peer_closed_is_refused() -> io::Result<()> {
    with_timeout(30, "unix datagram peer closed", || {
        edgeloop::block_on(async {
            let path = TempPath::new("dgram-closed");
            let server = UnixDatagram::bind(path.path())?;
            let client = UnixDatagram::unbound()?;
            client.connect(path.path())?;
            drop(server);
            let error = client.send(b"x").await.expect_err("send to a closed peer");
            assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");
            // The kernel dropped the dead peer: the socket is no longer connected.
            let error = client.send(b"x").await.expect_err("second send");
            assert_eq!(error.kind(), io::ErrorKind::NotConnected, "{error}");
            Ok(())
        })
    })
}

/// Sends `COUNT` datagrams of 8 KiB from `sender` in a task while this one
/// receives them: far more than the kernel queues, so the sender must wait for
/// room (and be woken) many times. Checks every datagram, in order.
async fn flood(sender: UnixDatagram, receiver: &UnixDatagram) -> io::Result<()> {
    const COUNT: u64 = 600;
    const LEN: usize = 8 * 1024;
    let sending = edgeloop::spawn(async move {
        for i in 0..COUNT {
            let n = sender.send(&pattern(LEN, i)).await?;
            assert_eq!(n, LEN, "datagram {i}: bytes sent");
        }
        Ok::<_, io::Error>(())
    });
    // Let the sender run ahead and fill the queue before anything is read.
    for _ in 0..5 {
        edgeloop::yield_now().await;
    }
    assert!(
        !sending.is_finished(),
        "all {COUNT} datagrams fit in the queue"
    );
    let mut buf = vec![0u8; LEN + 1];
    for i in 0..COUNT {
        let n = receiver.recv(&mut buf).await?;
        assert_same_bytes(&buf[..n], &pattern(LEN, i), &format!("datagram {i}"));
    }
    joined(sending.await)?
}

#[test]
fn datagram_senders_wait_for_room_and_every_datagram_arrives_in_order() -> io::Result<()> {
    with_timeout(60, "unix datagram backpressure", || {
        edgeloop::block_on(async {
            // A pair: bounded by the sender's buffer.
            let (a, b) = UnixDatagram::pair()?;
            flood(a, &b).await?;
            // Connected to a bound socket: bounded by the receiver's queue length.
            let path = TempPath::new("dgram-flood");
            let server = UnixDatagram::bind(path.path())?;
            let client = UnixDatagram::unbound()?;
            client.connect(path.path())?;
            flood(client, &server).await
        })
    })
}

#[test]
fn abstract_names_bind_connect_and_free_themselves_for_streams_and_datagrams() -> io::Result<()> {
    with_timeout(30, "unix abstract names", || {
        edgeloop::block_on(async {
            let name = abstract_path("stream");
            let bare = &name.as_bytes()[1..];
            let listener = UnixListener::bind(&name)?;
            let bound = listener.local_addr()?;
            assert_eq!(bound.as_abstract_name(), Some(bare), "{bound:?}");
            assert_eq!(bound.as_pathname(), None, "{bound:?}");
            assert!(!bound.is_unnamed());
            assert_eq!(bound.to_string(), format!("@{}", &name[1..]), "Display");
            assert_eq!(bound, SocketAddr::from_abstract_name(bare)?, "equality");

            let mut client = UnixStream::connect(&name).await?;
            let (mut server, _) = listener.accept().await?;
            assert_eq!(client.peer_addr()?.as_abstract_name(), Some(bare));
            client.write_all(b"abstract").await?;
            let got = read_exactly(&mut server, 8).await?;
            assert_same_bytes(&got, b"abstract", "over an abstract address");

            let error = UnixListener::bind(&name).expect_err("bound one abstract name twice");
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
            assert!(
                error.to_string().contains(&format!("@{}", &name[1..])),
                "message does not name @name: {error}"
            );
            // The name is freed with the last socket bound to it.
            drop((listener, server));
            let again = UnixListener::bind(&name)?;
            drop(again);

            let server_name = abstract_path("dgram-server");
            let client_name = abstract_path("dgram-client");
            let server = UnixDatagram::bind(&server_name)?;
            let client = UnixDatagram::bind(&client_name)?;
            client.send_to(b"hi", &server_name).await?;
            let mut buf = [0u8; 8];
            let (n, from) = server.recv_from(&mut buf).await?;
            assert_eq!(&buf[..n], b"hi");
            assert_eq!(from.as_abstract_name(), Some(&client_name.as_bytes()[1..]));
            Ok(())
        })
    })
}

#[test]
fn binding_an_existing_path_is_addr_in_use_naming_it_and_leaves_the_file() -> io::Result<()> {
    with_timeout(30, "unix bind over an existing path", || {
        edgeloop::block_on(async {
            // A live listener's path.
            let path = TempPath::new("taken");
            let listener = UnixListener::bind(path.path())?;
            let error = UnixListener::bind(path.path()).expect_err("bound a taken path");
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
            let shown = path.path().display().to_string();
            assert!(
                error.to_string().contains(&shown),
                "message lacks {shown}: {error}"
            );
            let error = UnixDatagram::bind(path.path()).expect_err("datagram on a taken path");
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
            assert!(
                error.to_string().contains(&shown),
                "message lacks {shown}: {error}"
            );
            // The first listener still works.
            let _client = UnixStream::connect(path.path()).await?;
            listener.accept().await?;

            // A regular file: left exactly as it was.
            let file = TempPath::new("regular-file");
            std::fs::write(file.path(), b"not a socket")?;
            let error = UnixListener::bind(file.path()).expect_err("bound over a file");
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
            let shown = file.path().display().to_string();
            assert!(
                error.to_string().contains(&shown),
                "message lacks {shown}: {error}"
            );
            assert_eq!(
                std::fs::read(file.path())?,
                b"not a socket",
                "file contents"
            );
            Ok(())
        })
    })
}

#[test]
fn dropped_listener_leaves_its_socket_file_which_refuses_connections() -> io::Result<()> {
    with_timeout(30, "unix stale socket file", || {
        edgeloop::block_on(async {
            let path = TempPath::new("stale");
            drop(UnixListener::bind(path.path())?);
            let kind = std::fs::symlink_metadata(path.path())?.file_type();
            assert!(
                kind.is_socket(),
                "after drop, {:?} is {kind:?}",
                path.path()
            );

            let error = UnixStream::connect(path.path())
                .await
                .expect_err("connected to a stale socket file");
            assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");
            let error = UnixDatagram::unbound()?
                .send_to(b"x", path.path())
                .await
                .expect_err("sent to a stale socket file");
            assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");

            let error = UnixListener::bind(path.path()).expect_err("bound over a stale file");
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
            // Removing it is the caller's job; then the path binds again.
            std::fs::remove_file(path.path())?;
            let listener = UnixListener::bind(path.path())?;
            let _client = UnixStream::connect(path.path()).await?;
            listener.accept().await?;
            Ok(())
        })
    })
}

#[test]
fn connecting_to_a_missing_path_is_not_found() -> io::Result<()> {
    with_timeout(30, "unix connect to a missing path", || {
        edgeloop::block_on(async {
            let path = TempPath::new("missing");
            let error = UnixStream::connect(path.path())
                .await
                .expect_err("connected to nothing");
            assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
            let socket = UnixDatagram::unbound()?;
            let error = socket.connect(path.path()).expect_err("datagram connect");
            assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
            let error = socket
                .send_to(b"x", path.path())
                .await
                .expect_err("send_to");
            assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
            // No abstract name bound: refused, there being no file to miss.
            let error = UnixStream::connect(abstract_path("missing"))
                .await
                .expect_err("connected to an unbound abstract name");
            assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");
            Ok(())
        })
    })
}

#[test]
fn paths_that_cannot_be_socket_addresses_are_invalid_input() -> io::Result<()> {
    with_timeout(30, "unix invalid paths", || {
        edgeloop::block_on(async {
            let long = std::env::temp_dir().join("x".repeat(120));
            let error = UnixListener::bind(&long).expect_err("bound a 120+ byte path");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
            assert!(error.to_string().contains("108"), "message: {error}");
            let error = UnixStream::connect(&long).await.expect_err("connect long");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
            let error = UnixDatagram::bind("a\0b").expect_err("bound a path with a NUL");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
            let error = UnixListener::bind("").expect_err("bound an empty path");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
            assert!(!long.exists(), "a file was created at the long path");
            Ok(())
        })
    })
}

/// This process's effective uid and gid.
fn effective_ids() -> (u32, u32) {
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    // SAFETY: as above, for getegid.
    let gid = unsafe { libc::getegid() };
    (uid, gid)
}

#[test]
fn peer_cred_reports_this_process_on_both_ends() -> io::Result<()> {
    with_timeout(30, "unix peer_cred", || {
        edgeloop::block_on(async {
            let (uid, gid) = effective_ids();
            let pid = i32::try_from(std::process::id()).expect("pids fit in i32");
            let (client, server, _path) = connected("cred").await?;
            let (a, _b) = UnixStream::pair()?;
            for (name, stream) in [("client", &client), ("server", &server), ("pair", &a)] {
                let cred = stream.peer_cred()?;
                assert_eq!(cred.uid(), uid, "{name}: {cred:?}");
                assert_eq!(cred.gid(), gid, "{name}: {cred:?}");
                assert_eq!(cred.pid(), Some(pid), "{name}: {cred:?}");
            }
            Ok(())
        })
    })
}

#[test]
fn every_unix_socket_is_created_nonblocking_and_cloexec() -> io::Result<()> {
    with_timeout(30, "unix fd flags", || {
        edgeloop::block_on(async {
            let path = TempPath::new("flags");
            let listener = UnixListener::bind(path.path())?;
            let client = UnixStream::connect(path.path()).await?;
            let (accepted, _) = listener.accept().await?;
            let (pair_a, pair_b) = UnixStream::pair()?;
            let dgram_path = TempPath::new("flags-dgram");
            let bound = UnixDatagram::bind(dgram_path.path())?;
            let unbound = UnixDatagram::unbound()?;
            let (dgram_a, dgram_b) = UnixDatagram::pair()?;
            let fds = [
                ("listener", listener.as_raw_fd()),
                ("connected client", client.as_raw_fd()),
                ("accepted stream", accepted.as_raw_fd()),
                ("stream pair a", pair_a.as_raw_fd()),
                ("stream pair b", pair_b.as_raw_fd()),
                ("bound datagram", bound.as_raw_fd()),
                ("unbound datagram", unbound.as_raw_fd()),
                ("datagram pair a", dgram_a.as_raw_fd()),
                ("datagram pair b", dgram_b.as_raw_fd()),
            ];
            for (name, fd) in fds {
                let (descriptor_flags, status_flags) = fd_flags(fd)?;
                assert_ne!(
                    descriptor_flags & libc::FD_CLOEXEC,
                    0,
                    "{name}: fd flags {descriptor_flags:#x}"
                );
                assert_ne!(
                    status_flags & libc::O_NONBLOCK,
                    0,
                    "{name}: status flags {status_flags:#x}"
                );
            }
            Ok(())
        })
    })
}

#[test]
fn connect_waits_while_the_listener_backlog_is_full_then_completes() -> io::Result<()> {
    with_timeout(60, "unix connect with a full backlog", || {
        edgeloop::block_on(async {
            const CLIENTS: usize = 4;
            let path = TempPath::new("backlog");
            let std_listener = std::os::unix::net::UnixListener::bind(path.path())?;
            // SAFETY: the fd is open (owned by `std_listener`); listen takes no
            // pointers. Listening again only changes the backlog, here to 0: one
            // connection may wait, the next connect gets EAGAIN.
            if unsafe { libc::listen(std_listener.as_raw_fd(), 0) } == -1 {
                return Err(io::Error::last_os_error());
            }
            let listener = UnixListener::from_std(std_listener)?;
            let finished = Rc::new(Cell::new(0));
            let clients: Vec<_> = (0..CLIENTS)
                .map(|i| {
                    let target = path.path().to_owned();
                    let finished = finished.clone();
                    edgeloop::spawn(async move {
                        let mut stream = UnixStream::connect(&target).await?;
                        finished.set(finished.get() + 1);
                        stream
                            .write_all(&[u8::try_from(i).expect("few clients")])
                            .await?;
                        Ok::<_, io::Error>(stream)
                    })
                })
                .collect();
            // Let every client try (and the refused ones start their pauses).
            for _ in 0..10 {
                edgeloop::yield_now().await;
            }
            assert!(
                finished.get() <= 1,
                "{} of {CLIENTS} connects completed with a backlog of 0 and no accept",
                finished.get()
            );
            let mut seen = Vec::new();
            for _ in 0..CLIENTS {
                let (mut stream, _) = listener.accept().await?;
                let got = read_exactly(&mut stream, 1).await?;
                seen.push(got[0]);
            }
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2, 3], "client ids read by the server");
            for client in clients {
                joined(client.await)??;
            }
            assert_eq!(finished.get(), CLIENTS, "connects completed");
            Ok(())
        })
    })
}

#[test]
fn std_conversions_keep_the_socket_working() -> io::Result<()> {
    with_timeout(30, "unix from_std/into_std", || {
        edgeloop::block_on(async {
            let (a, b) = std::os::unix::net::UnixStream::pair()?;
            let mut a = UnixStream::from_std(a)?;
            let mut b = b;
            b.write_all(b"from std")?;
            let got = read_exactly(&mut a, 8).await?;
            assert_same_bytes(&got, b"from std", "std to edgeloop");
            let mut a = a.into_std()?;
            a.set_nonblocking(false)?;
            a.write_all(b"back")?;
            let mut buf = [0u8; 4];
            b.read_exact(&mut buf)?;
            assert_eq!(&buf, b"back", "after into_std");

            let (x, y) = std::os::unix::net::UnixDatagram::pair()?;
            let x = UnixDatagram::from_std(x)?;
            y.send(b"dgram")?;
            let n = x.recv(&mut buf).await?;
            assert_eq!(&buf[..n], b"dgra", "truncated into 4 bytes");
            Ok(())
        })
    })
}

// --- The `unix_echo` example, built and run as a user would. ---

/// The example, built once per test binary.
fn built_example() -> io::Result<PathBuf> {
    support::built_example("unix_echo")
}

/// Starts the example with `args`; returns its guard once its first line is
/// exactly `listening on {shown}`.
fn start_example(args: &[&Path], shown: &str) -> io::Result<ChildGuard> {
    let mut guard = ChildGuard::spawn(
        Command::new(built_example()?)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )?;
    let stdout = guard
        .child_mut()
        .stdout
        .take()
        .expect("stdout was set to piped");
    let line = first_line_within(stdout, Duration::from_secs(30))?;
    assert_eq!(
        line,
        format!("listening on {shown}"),
        "first line of stdout"
    );
    Ok(guard)
}

/// Runs the example with `args` to its exit (10 s at most): status, stdout, stderr.
fn run_example_to_exit(args: &[&Path]) -> io::Result<(std::process::ExitStatus, String, String)> {
    let mut child = ChildGuard::spawn(
        Command::new(built_example()?)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    child.output_within(Duration::from_secs(10))
}

/// A blocking std client with timeouts, so a silent server fails the test.
fn std_client(path: &Path) -> io::Result<std::os::unix::net::UnixStream> {
    let stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

/// Sends `msg` from a helper thread while this one reads the echo.
fn std_roundtrip(stream: &mut std::os::unix::net::UnixStream, msg: &[u8]) -> io::Result<Vec<u8>> {
    let mut writer = stream.try_clone()?;
    let mut echoed = vec![0u8; msg.len()];
    std::thread::scope(|s| {
        let sender = s.spawn(move || writer.write_all(msg));
        let read = stream.read_exact(&mut echoed);
        let written = sender.join().expect("writer thread panicked");
        written.and(read)
    })?;
    Ok(echoed)
}

#[test]
fn unix_echo_example_echoes_messages_exactly_then_eof_and_leaves_its_file() -> io::Result<()> {
    with_timeout(300, "unix_echo example", || {
        let path = TempPath::new("example");
        let mut server = start_example(&[path.path()], &path.path().display().to_string())?;
        let mut stream = std_client(path.path())?;
        let sizes = [1, 5, 1000, 64 * 1024, 300 * 1024, 3];
        for (i, &size) in sizes.iter().enumerate() {
            let msg = pattern(size, 600 + i as u64);
            let echoed = std_roundtrip(&mut stream, &msg)?;
            assert_same_bytes(&echoed, &msg, &format!("message {i} ({size} bytes)"));
        }
        // A second client at the same time.
        let mut other = std_client(path.path())?;
        let echoed = std_roundtrip(&mut other, b"second client")?;
        assert_same_bytes(&echoed, b"second client", "second client");
        for client in [&mut stream, &mut other] {
            client.shutdown(Shutdown::Write)?;
            let mut rest = Vec::new();
            client.read_to_end(&mut rest)?;
            assert!(rest.is_empty(), "bytes after the last echo: {rest:02x?}");
        }
        server.kill_expecting_running()?;
        assert!(path.path().exists(), "the example removed its socket file");
        Ok(())
    })
}

#[test]
fn unix_echo_example_refuses_an_existing_path_unless_forced_to_replace_a_socket() -> io::Result<()>
{
    with_timeout(300, "unix_echo example, existing path", || {
        // A stale socket file, left by a listener that is gone.
        let path = TempPath::new("example-stale");
        drop(std::os::unix::net::UnixListener::bind(path.path())?);
        let (status, stdout, stderr) = run_example_to_exit(&[path.path()])?;
        assert_eq!(status.code(), Some(1), "exit status; stderr:\n{stderr}");
        assert_eq!(stdout, "", "stdout of a refused start");
        let shown = path.path().display().to_string();
        assert!(stderr.contains(&shown), "stderr lacks {shown}:\n{stderr}");
        assert!(
            stderr.contains("--force"),
            "stderr lacks `--force`:\n{stderr}"
        );
        assert!(path.path().exists(), "the refused start removed the file");

        let mut server = start_example(&[path.path(), Path::new("--force")], &shown)?;
        let mut stream = std_client(path.path())?;
        let echoed = std_roundtrip(&mut stream, b"after --force")?;
        assert_same_bytes(&echoed, b"after --force", "echo after --force");
        server.kill_expecting_running()?;

        // --force never removes something that is not a socket.
        let file = TempPath::new("example-file");
        std::fs::write(file.path(), b"keep me")?;
        let (status, _, stderr) = run_example_to_exit(&[file.path(), Path::new("--force")])?;
        assert_eq!(status.code(), Some(1), "exit status; stderr:\n{stderr}");
        assert!(stderr.contains("not a socket"), "stderr:\n{stderr}");
        assert_eq!(std::fs::read(file.path())?, b"keep me", "file contents");
        Ok(())
    })
}

#[test]
fn unix_echo_example_help_exits_0_and_bad_arguments_exit_2() -> io::Result<()> {
    with_timeout(300, "unix_echo example --help", || {
        let (status, stdout, stderr) = run_example_to_exit(&[Path::new("--help")])?;
        assert!(
            status.success(),
            "--help exited with {status}; stderr:\n{stderr}"
        );
        for word in ["PATH", "--force", "--help", "@NAME"] {
            assert!(
                stdout.contains(word),
                "--help does not mention `{word}`:\n{stdout}"
            );
        }
        let (status, stdout, stderr) = run_example_to_exit(&[Path::new("--nope")])?;
        assert_eq!(status.code(), Some(2), "--nope exited with {status}");
        assert_eq!(stdout, "", "stdout for a bad argument");
        assert!(
            stderr.contains("--nope"),
            "stderr does not name `--nope`:\n{stderr}"
        );
        Ok(())
    })
}

#[test]
fn send_to_a_full_receiver_waits_without_spinning_and_completes_once_it_reads() {
    with_timeout(30, "send_to_a_full_receiver_waits_without_spinning", || {
        let path = TempPath::new("full");
        let rt = edgeloop::Runtime::new().unwrap();
        let delivered = rt
            .block_on(async {
                let receiver = UnixDatagram::bind(path.path())?;
                // Another sender fills the receiver's queue until the kernel says
                // EAGAIN.
                let filler = std::os::unix::net::UnixDatagram::unbound()?;
                filler.set_nonblocking(true)?;
                let mut queued = 0;
                loop {
                    match filler.send_to(b"x", path.path()) {
                        Ok(_) => queued += 1,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                let sender = UnixDatagram::unbound()?;
                let target = path.path().to_owned();
                let task = edgeloop::spawn(async move { sender.send_to(b"late", &target).await });
                edgeloop::time::sleep(Duration::from_millis(200)).await;
                assert!(!task.is_finished(), "sent into a full queue?");
                // Drain: the queued datagrams, then the late one arrives.
                let mut buf = [0u8; 8];
                for _ in 0..queued {
                    receiver.recv(&mut buf).await?;
                }
                assert_eq!(task.await??, 4);
                let n = receiver.recv(&mut buf).await?;
                Ok::<_, io::Error>(buf[..n].to_vec())
            })
            .unwrap();
        assert_eq!(delivered, b"late");
        // 200 ms of waiting with a backoff that doubles from 1 ms to 16 ms is about
        // 20 polls; a busy loop is tens of thousands.
        let polls = rt.metrics().polls;
        assert!(
            polls < 200,
            "the runtime polled {polls} times: send_to spun"
        );
    });
}
