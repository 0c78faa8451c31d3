//! Errors: refused connections, ports in use, bad addresses, `spawn` outside the
//! runtime, and a server that keeps serving while some clients misbehave.

mod support;

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;

use edgeloop::net::{TcpListener, TcpStream};
use futures_util::io::AsyncWrite;
use support::{
    EventLog, XorShift, assert_same_bytes, free_port, joined, roundtrip, set_linger_zero,
    with_timeout,
};

#[test]
fn connect_to_a_port_with_nothing_listening_fails_with_connection_refused() -> io::Result<()> {
    with_timeout(10, "connection refused", || {
        let port = free_port()?;
        edgeloop::block_on(async {
            let result = TcpStream::connect(("127.0.0.1", port)).await;
            match result {
                Err(e) => assert_eq!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused,
                    "connect to 127.0.0.1:{port}: {e:?}"
                ),
                Ok(s) => panic!("connect to 127.0.0.1:{port} succeeded: {s:?}"),
            }
            Ok(())
        })
    })
}

#[test]
fn bind_to_a_port_in_use_fails_with_addr_in_use() -> io::Result<()> {
    with_timeout(10, "address in use", || {
        // Held by a std listener ...
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let std_addr = std_listener.local_addr()?;
        edgeloop::block_on(async {
            match TcpListener::bind(std_addr).await {
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "bind {std_addr}: {e:?}"),
                Ok(l) => panic!("bind {std_addr} (held by std) succeeded: {l:?}"),
            }
            // ... and by an edgeloop listener (both set SO_REUSEADDR, which must
            // not let a second socket listen on the same port).
            let first = TcpListener::bind("127.0.0.1:0").await?;
            let addr = first.local_addr()?;
            match TcpListener::bind(addr).await {
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "bind {addr}: {e:?}"),
                Ok(l) => panic!("second bind of {addr} succeeded: {l:?}"),
            }
            Ok(())
        })
    })
}

#[test]
fn unparsable_addresses_fail_with_invalid_input_naming_the_text() -> io::Result<()> {
    with_timeout(10, "invalid addresses", || {
        edgeloop::block_on(async {
            for text in ["not an address", "127.0.0.1:notaport"] {
                let errors = [
                    ("bind &str", TcpListener::bind(text).await.err()),
                    (
                        "bind String",
                        TcpListener::bind(text.to_owned()).await.err(),
                    ),
                    ("connect &str", TcpStream::connect(text).await.err()),
                    (
                        "connect String",
                        TcpStream::connect(text.to_owned()).await.err(),
                    ),
                ];
                for (what, error) in errors {
                    let e = error.unwrap_or_else(|| panic!("{what} `{text}` succeeded"));
                    assert_eq!(
                        e.kind(),
                        io::ErrorKind::InvalidInput,
                        "{what} `{text}`: {e:?}"
                    );
                    let message = e.to_string();
                    assert!(
                        message.contains(text),
                        "{what} `{text}`: the message does not name the text: {message:?}"
                    );
                }
            }
            Ok(())
        })
    })
}

#[test]
fn spawn_outside_block_on_panics_with_a_message_naming_block_on() -> io::Result<()> {
    with_timeout(10, "spawn outside block_on", || {
        let payload = std::panic::catch_unwind(|| {
            drop(edgeloop::spawn(async {}));
        })
        .expect_err("`spawn` outside `block_on` returned instead of panicking");
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .ok_or_else(|| io::Error::other("the panic payload is not a string"))?;
        assert!(
            message.contains("block_on"),
            "panic message does not mention `block_on`: {message:?}"
        );
        // The failed `spawn` left nothing behind: a runtime still starts and runs.
        let answer = edgeloop::block_on(async { edgeloop::spawn(async { 42 }).await });
        assert_eq!(joined(answer)?, 42, "task output after the panic");
        Ok(())
    })
}

/// What the instrumented server saw, per peer address.
#[derive(Debug, Clone)]
enum Seen {
    Accepted(SocketAddr),
    /// A write to this peer could not complete at once (send buffer full).
    WriteBlocked(SocketAddr),
    /// The connection's task ended: bytes echoed, or the error's kind.
    Finished(SocketAddr, Result<u64, io::ErrorKind>),
    AcceptFailed(io::ErrorKind),
}

/// Echoes `stream` until EOF, recording in `log` when a write blocks and how the
/// connection ended.
async fn instrumented_echo(mut stream: TcpStream, peer: SocketAddr, log: EventLog<Seen>) {
    let result = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0u64;
        let mut reported_block = false;
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(total);
            }
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let written = poll_fn(|cx| {
                    let poll = Pin::new(&mut stream).poll_write(cx, rest);
                    if poll.is_pending() && !reported_block {
                        reported_block = true;
                        log.push(Seen::WriteBlocked(peer));
                    }
                    poll
                })
                .await?;
                rest = &rest[written..];
            }
            total += n as u64;
        }
    }
    .await;
    log.push(Seen::Finished(
        peer,
        result.map_err(|e: io::Error| e.kind()),
    ));
}

/// Accepts forever, one `instrumented_echo` task per connection; accept errors are
/// recorded and skipped.
async fn instrumented_server(listener: TcpListener, log: EventLog<Seen>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                log.push(Seen::Accepted(peer));
                edgeloop::spawn(instrumented_echo(stream, peer, log.clone()));
            }
            Err(e) => log.push(Seen::AcceptFailed(e.kind())),
        }
    }
}

#[test]
fn server_keeps_echoing_well_behaved_clients_exactly_while_others_misbehave() -> io::Result<()> {
    with_timeout(60, "misbehaving clients", || {
        edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let log = EventLog::<Seen>::default();
            let _server = edgeloop::spawn(instrumented_server(listener, log.clone()));
            let accepted = |who: SocketAddr| {
                let log = log.clone();
                async move {
                    log.wait_for(|e| matches!(e, Seen::Accepted(p) if *p == who).then_some(()))
                        .await;
                }
            };

            // 1. Connects, then sends nothing and never reads, until the end.
            let silent = TcpStream::connect(addr).await?;
            let silent_addr = silent.local_addr()?;
            accepted(silent_addr).await;

            // 2. Sends half a message, then resets the connection (RST, not FIN).
            let mut resetter = TcpStream::connect(addr).await?;
            let reset_addr = resetter.local_addr()?;
            accepted(reset_addr).await;
            resetter.write_all(&[0xAB; 5 * 1024]).await?;
            set_linger_zero(resetter.as_raw_fd())?;
            drop(resetter);
            let reset_outcome = log
                .wait_for(|e| match e {
                    Seen::Finished(p, outcome) if *p == reset_addr => Some(*outcome),
                    _ => None,
                })
                .await;
            assert!(
                matches!(
                    reset_outcome,
                    Ok(_) | Err(io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
                ),
                "outcome of the reset connection on the server: {reset_outcome:?}"
            );

            // 3. Connects and closes at once, without sending anything.
            let quitter = TcpStream::connect(addr).await?;
            let quit_addr = quitter.local_addr()?;
            drop(quitter);

            // 4. Sends without end and never reads: the server's echo to it blocks.
            let flooder = TcpStream::connect(addr).await?;
            let flood_addr = flooder.local_addr()?;
            let flood = edgeloop::spawn(async move {
                let mut flooder = flooder;
                let chunk = vec![0xF1; 64 * 1024];
                loop {
                    if let Err(e) = flooder.write_all(&chunk).await {
                        return e;
                    }
                }
            });
            log.wait_for(|e| matches!(e, Seen::WriteBlocked(p) if *p == flood_addr).then_some(()))
                .await;

            // Well-behaved clients, while all of the above are still connected.
            let mut good = Vec::new();
            for id in 0..10u64 {
                good.push(edgeloop::spawn(async move {
                    let mut stream = TcpStream::connect(addr).await?;
                    let mut rng = XorShift::new(1000 + id);
                    for i in 0..3 {
                        let len = rng.in_range(1, 64 * 1024);
                        let msg = rng.bytes(len);
                        let echoed = roundtrip(&mut stream, &msg).await?;
                        assert_same_bytes(&echoed, &msg, &format!("good client {id}, message {i}"));
                    }
                    Ok::<(), io::Error>(())
                }));
            }
            for client in good {
                joined(client.await)??;
            }

            let quit_outcome = log
                .wait_for(|e| match e {
                    Seen::Finished(p, outcome) if *p == quit_addr => Some(*outcome),
                    _ => None,
                })
                .await;
            assert_eq!(
                quit_outcome,
                Ok(0),
                "outcome of the connect-and-close client"
            );
            let events = log.snapshot();
            let finished = |who: SocketAddr| {
                events
                    .iter()
                    .any(|e| matches!(e, Seen::Finished(p, _) if *p == who))
            };
            assert!(
                !finished(silent_addr) && !finished(flood_addr),
                "the silent and flooding connections should still be open; events: {events:?}"
            );
            assert!(
                !flood.is_finished(),
                "the flooding client stopped writing: {:?}",
                flood.await
            );
            let accept_errors: Vec<io::ErrorKind> = events
                .iter()
                .filter_map(|e| match e {
                    Seen::AcceptFailed(kind) => Some(*kind),
                    _ => None,
                })
                .collect();
            assert!(accept_errors.is_empty(), "accept errors: {accept_errors:?}");
            drop(silent);
            Ok(())
        })
    })
}
