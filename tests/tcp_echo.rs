//! Echo over TCP: many concurrent connections with random message sizes, a large
//! transfer in both directions at once, and the `futures-io` trait impls.

mod support;

use std::io;
use std::net::Shutdown;
use std::sync::{Arc, Barrier};

use edgeloop::net::{TcpListener, TcpStream};
use futures_util::future::join;
use futures_util::io::AsyncWriteExt;
use support::{
    EventLog, XorShift, assert_same_bytes, echo, echo_server, joined, pattern, read_to_eof,
    roundtrip, std_connect, std_roundtrip, with_timeout,
};

/// Concurrent connections in the many-clients tests.
const CONNECTIONS: usize = 200;
/// Largest message: 64 KiB.
const MAX_MESSAGE: usize = 64 * 1024;
/// Size of the big transfer, each way.
const BIG: usize = 8 * 1024 * 1024;

/// The messages client `id` sends: 2 to 4 of them, each 1..=64 KiB of random bytes.
fn messages_for(id: usize) -> Vec<Vec<u8>> {
    let mut rng = XorShift::new(0x5EED_0000 + u64::try_from(id).expect("usize fits in u64"));
    let count = rng.in_range(2, 4);
    (0..count)
        .map(|_| {
            let len = rng.in_range(1, MAX_MESSAGE);
            rng.bytes(len)
        })
        .collect()
}

/// Sorted per-connection byte totals, to compare server and client views.
fn sorted(mut totals: Vec<u64>) -> Vec<u64> {
    totals.sort_unstable();
    totals
}

fn total_len(messages: &[Vec<u8>]) -> u64 {
    messages
        .iter()
        .map(|m| u64::try_from(m.len()).expect("usize fits in u64"))
        .sum()
}

#[test]
fn two_hundred_concurrent_task_clients_in_the_same_runtime_get_every_byte_echoed_in_order()
-> io::Result<()> {
    with_timeout(60, "200 task clients", || {
        edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let server = edgeloop::spawn(echo_server(listener, CONNECTIONS));
            // Every client connects, then waits until all are connected before
            // sending: all 200 connections are open at the same time.
            let connected = EventLog::<usize>::default();
            let mut clients = Vec::with_capacity(CONNECTIONS);
            for id in 0..CONNECTIONS {
                let connected = connected.clone();
                clients.push(edgeloop::spawn(async move {
                    let mut stream = TcpStream::connect(addr).await?;
                    connected.push(id);
                    connected.wait_len(CONNECTIONS).await;
                    let messages = messages_for(id);
                    for (i, msg) in messages.iter().enumerate() {
                        let echoed = roundtrip(&mut stream, msg).await?;
                        assert_same_bytes(&echoed, msg, &format!("client {id}, message {i}"));
                    }
                    stream.shutdown(Shutdown::Write)?;
                    let rest = read_to_eof(&mut stream).await?;
                    assert!(
                        rest.is_empty(),
                        "client {id}: {} unexpected bytes after the last echo",
                        rest.len()
                    );
                    Ok::<u64, io::Error>(total_len(&messages))
                }));
            }
            let mut client_totals = Vec::with_capacity(CONNECTIONS);
            for client in clients {
                client_totals.push(joined(client.await)??);
            }
            let server_totals = joined(server.await)??;
            assert_eq!(
                connected.snapshot().len(),
                CONNECTIONS,
                "connections open at once"
            );
            assert_eq!(
                sorted(server_totals),
                sorted(client_totals),
                "bytes echoed per connection (server view vs client view, sorted)"
            );
            Ok(())
        })
    })
}

#[test]
fn two_hundred_concurrent_std_thread_clients_get_every_byte_echoed_in_order() -> io::Result<()> {
    with_timeout(60, "200 std clients", || {
        let mut client_threads = Vec::with_capacity(CONNECTIONS);
        let server_totals = edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let barrier = Arc::new(Barrier::new(CONNECTIONS));
            for id in 0..CONNECTIONS {
                let barrier = barrier.clone();
                client_threads.push(std::thread::spawn(move || {
                    // Everyone reaches the barrier, even a client that failed to
                    // connect, so no thread is left waiting for it.
                    let connected = std_connect(addr);
                    barrier.wait();
                    let mut stream = connected?;
                    let messages = messages_for(id);
                    for (i, msg) in messages.iter().enumerate() {
                        let echoed = std_roundtrip(&mut stream, msg)?;
                        assert_same_bytes(&echoed, msg, &format!("client {id}, message {i}"));
                    }
                    stream.shutdown(Shutdown::Write)?;
                    let mut rest = Vec::new();
                    io::Read::read_to_end(&mut stream, &mut rest)?;
                    assert!(
                        rest.is_empty(),
                        "client {id}: {} unexpected bytes after the last echo",
                        rest.len()
                    );
                    Ok::<u64, io::Error>(total_len(&messages))
                }));
            }
            echo_server(listener, CONNECTIONS).await
        })?;
        let mut client_totals = Vec::with_capacity(CONNECTIONS);
        for thread in client_threads {
            client_totals.push(thread.join().expect("client thread panicked")?);
        }
        assert_eq!(
            sorted(server_totals),
            sorted(client_totals),
            "bytes echoed per connection (server view vs client view, sorted)"
        );
        Ok(())
    })
}

#[test]
fn eight_mib_each_way_at_once_through_borrowed_halves_arrives_intact() -> io::Result<()> {
    with_timeout(60, "8 MiB via split", || {
        edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let mut client = TcpStream::connect(listener.local_addr()?).await?;
            let (server_side, _) = listener.accept().await?;
            let server = edgeloop::spawn(echo(server_side));
            let sent = pattern(BIG, 8);
            // Called by path: with the futures traits in scope, `client.split()`
            // would pick `AsyncReadExt::split` (by value) over the inherent one.
            let (mut reader, mut writer) = TcpStream::split(&mut client);
            let send = async {
                writer.write_all(&sent).await?;
                // AsyncWriteExt::close shuts down the write side: the server sees
                // EOF, finishes echoing and closes its side too.
                AsyncWriteExt::close(&mut writer).await
            };
            let receive = async {
                let mut received = Vec::with_capacity(BIG);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = reader.read(&mut buf).await?;
                    if n == 0 {
                        return Ok::<_, io::Error>(received);
                    }
                    received.extend_from_slice(&buf[..n]);
                }
            };
            let (sent_result, received) = join(send, receive).await;
            sent_result?;
            let received = received?;
            assert_eq!(received.len(), BIG, "echoed length");
            assert_same_bytes(&received, &sent, "8 MiB echo");
            let echoed = joined(server.await)??;
            assert_eq!(echoed, BIG as u64, "bytes the server echoed");
            Ok(())
        })
    })
}

#[test]
fn eight_mib_each_way_at_once_through_owned_halves_in_two_tasks_arrives_intact() -> io::Result<()> {
    with_timeout(60, "8 MiB via into_split", || {
        edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let client = TcpStream::connect(listener.local_addr()?).await?;
            let (server_side, _) = listener.accept().await?;
            let server = edgeloop::spawn(echo(server_side));
            let (mut reader, mut writer) = TcpStream::into_split(client);
            let sender = edgeloop::spawn(async move {
                let sent = pattern(BIG, 88);
                // Uneven chunks, so writes and reads never line up.
                let mut rng = XorShift::new(88);
                let mut rest = &sent[..];
                while !rest.is_empty() {
                    let n = rng.in_range(1, 200_000).min(rest.len());
                    writer.write_all(&rest[..n]).await?;
                    rest = &rest[n..];
                }
                // Dropping the write half shuts down the write side.
                drop(writer);
                Ok::<_, io::Error>(())
            });
            let mut received = Vec::with_capacity(BIG);
            let mut buf = vec![0u8; 50_000];
            loop {
                let n = reader.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buf[..n]);
            }
            joined(sender.await)??;
            assert_eq!(received.len(), BIG, "echoed length");
            assert_same_bytes(&received, &pattern(BIG, 88), "8 MiB echo");
            let echoed = joined(server.await)??;
            assert_eq!(echoed, BIG as u64, "bytes the server echoed");
            Ok(())
        })
    })
}

/// Echoes with `futures_util::io::copy` between the halves of `stream`: owned halves
/// if `owned`, borrowed ones otherwise. Returns the number of bytes copied.
async fn copy_echo(stream: TcpStream, owned: bool) -> io::Result<u64> {
    if owned {
        let (reader, mut writer) = stream.into_split();
        let copied = futures_util::io::copy(reader, &mut writer).await?;
        writer.close().await?;
        Ok(copied)
    } else {
        let mut stream = stream;
        let (reader, mut writer) = TcpStream::split(&mut stream);
        let copied = futures_util::io::copy(reader, &mut writer).await?;
        writer.close().await?;
        Ok(copied)
    }
}

#[test]
fn futures_io_traits_read_exact_write_all_and_copy_between_halves_echo_exactly() -> io::Result<()> {
    use futures_util::io::AsyncReadExt;
    with_timeout(30, "futures-io traits", || {
        edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            // Small enough that writing a whole message before reading its echo
            // fits in the socket buffers.
            let sizes = [1usize, 7, 1000, 4096, 16 * 1024, 32 * 1024 - 3];

            // Connection 1: `TcpStream` through the traits, served by `copy` between
            // owned halves.
            let mut client = TcpStream::connect(addr).await?;
            let (server_side, _) = listener.accept().await?;
            let server = edgeloop::spawn(copy_echo(server_side, true));
            let mut sent = 0u64;
            for (i, &size) in sizes.iter().enumerate() {
                let msg = pattern(size, 100 + i as u64);
                AsyncWriteExt::write_all(&mut client, &msg).await?;
                AsyncWriteExt::flush(&mut client).await?;
                let mut echoed = vec![0u8; size];
                AsyncReadExt::read_exact(&mut client, &mut echoed).await?;
                assert_same_bytes(&echoed, &msg, &format!("owned-halves copy, message {i}"));
                sent += size as u64;
            }
            AsyncWriteExt::close(&mut client).await?;
            let mut rest = Vec::new();
            AsyncReadExt::read_to_end(&mut client, &mut rest).await?;
            assert!(rest.is_empty(), "{} bytes after the echoes", rest.len());
            let copied = joined(server.await)??;
            assert_eq!(copied, sent, "bytes copied by the owned-halves server");

            // Connection 2: `&TcpStream` through the traits, served by `copy`
            // between borrowed halves.
            let client = TcpStream::connect(addr).await?;
            let (server_side, _) = listener.accept().await?;
            let server = edgeloop::spawn(copy_echo(server_side, false));
            let mut sent = 0u64;
            for (i, &size) in sizes.iter().enumerate() {
                let msg = pattern(size, 200 + i as u64);
                (&client).write_all(&msg).await?;
                let mut echoed = vec![0u8; size];
                (&client).read_exact(&mut echoed).await?;
                assert_same_bytes(&echoed, &msg, &format!("borrowed-halves copy, message {i}"));
                sent += size as u64;
            }
            (&client).close().await?;
            let mut rest = Vec::new();
            let n = (&client).read_to_end(&mut rest).await?;
            assert_eq!(n, 0, "bytes after the echoes: {rest:02x?}");
            let copied = joined(server.await)??;
            assert_eq!(copied, sent, "bytes copied by the borrowed-halves server");
            Ok(())
        })
    })
}
