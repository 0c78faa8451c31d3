//! Half-close: `shutdown(Write)` on one side, EOF on the other, the reverse direction
//! still working; dropping an `OwnedWriteHalf`; and writing to a closed peer.

mod support;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgeloop::net::{TcpListener, TcpStream};
use support::{ChildGuard, joined, pattern, read_to_eof, std_connect, with_timeout};

/// What the server sends once it has read EOF, after the echo.
fn trailer(total: u64) -> Vec<u8> {
    format!("server read EOF after {total} bytes\n").into_bytes()
}

/// Echoes until EOF (read returns 0), then writes `trailer` and shuts down its write
/// side. Returns the number of bytes read before EOF.
async fn echo_then_trailer(mut stream: TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; 8 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await?;
        total += n as u64;
    }
    // A second read after EOF must say EOF again, not block or fail.
    let again = stream.read(&mut buf).await?;
    assert_eq!(again, 0, "read after EOF returned {again} bytes");
    stream.write_all(&trailer(total)).await?;
    stream.shutdown(Shutdown::Write)?;
    Ok(total)
}

#[test]
fn task_client_after_shutdown_write_receives_every_echo_and_trailer_then_eof() -> io::Result<()> {
    with_timeout(30, "half close, task client", || {
        edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let mut client = TcpStream::connect(listener.local_addr()?).await?;
            let (server_side, _) = listener.accept().await?;
            let server = edgeloop::spawn(echo_then_trailer(server_side));
            // 60 KiB in several writes: small enough to sit in the socket buffers
            // while the client has not started reading.
            let sent = pattern(60 * 1024, 1);
            for chunk in sent.chunks(7 * 1024) {
                client.write_all(chunk).await?;
            }
            client.shutdown(Shutdown::Write)?;
            let received = read_to_eof(&mut client).await?;
            let mut expected = sent.clone();
            expected.extend_from_slice(&trailer(sent.len() as u64));
            support::assert_same_bytes(&received, &expected, "echo + trailer after half-close");
            // EOF is sticky.
            let mut buf = [0u8; 16];
            let again = client.read(&mut buf).await?;
            assert_eq!(again, 0, "second read after EOF returned {again} bytes");
            let server_read = joined(server.await)??;
            assert_eq!(
                server_read,
                sent.len() as u64,
                "bytes the server read before EOF"
            );
            Ok(())
        })
    })
}

#[test]
fn std_client_after_shutdown_write_receives_one_mib_echo_and_trailer_then_eof() -> io::Result<()> {
    with_timeout(30, "half close, std client", || {
        let sent = pattern(1024 * 1024, 2);
        let (server_read, received) = edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let to_send = sent.clone();
            let client = std::thread::spawn(move || {
                let mut stream = std_connect(addr)?;
                let mut writer = stream.try_clone()?;
                // Writes (and half-closes) on its own thread while this one reads,
                // so 1 MiB cannot deadlock on full buffers.
                let sender = std::thread::spawn(move || {
                    writer.write_all(&to_send)?;
                    writer.shutdown(Shutdown::Write)
                });
                let mut received = Vec::new();
                stream.read_to_end(&mut received)?;
                sender.join().expect("sender thread panicked")?;
                Ok::<_, io::Error>(received)
            });
            let (server_side, _) = listener.accept().await?;
            let server_read = echo_then_trailer(server_side).await?;
            let received = client.join().expect("client thread panicked")?;
            Ok::<_, io::Error>((server_read, received))
        })?;
        assert_eq!(
            server_read,
            sent.len() as u64,
            "bytes the server read before EOF"
        );
        let mut expected = sent.clone();
        expected.extend_from_slice(&trailer(sent.len() as u64));
        support::assert_same_bytes(&received, &expected, "echo + trailer after half-close");
        Ok(())
    })
}

#[test]
fn writing_after_own_shutdown_write_fails_with_broken_pipe() -> io::Result<()> {
    with_timeout(10, "write after own shutdown", || {
        edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let mut client = TcpStream::connect(listener.local_addr()?).await?;
            let (_server_side, _) = listener.accept().await?;
            client.shutdown(Shutdown::Write)?;
            let result = client.write(b"too late").await;
            match result {
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "error: {e:?}"),
                Ok(n) => panic!("write after shutdown(Write) succeeded with {n} bytes"),
            }
            Ok(())
        })
    })
}

#[test]
fn dropping_owned_write_half_makes_peer_read_eof_while_read_half_keeps_working() -> io::Result<()> {
    with_timeout(10, "drop OwnedWriteHalf", || {
        edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let mut client = TcpStream::connect(listener.local_addr()?).await?;
            let (server_side, _) = listener.accept().await?;
            let (mut server_read, mut server_write) = server_side.into_split();
            server_write.write_all(b"last words").await?;
            drop(server_write);

            let received = read_to_eof(&mut client).await?;
            assert_eq!(
                received,
                b"last words",
                "client received {:?}",
                String::from_utf8_lossy(&received)
            );

            // The server's read half still works after its write half is gone.
            client.write_all(b"still listening?").await?;
            client.shutdown(Shutdown::Write)?;
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            loop {
                let n = server_read.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(
                got,
                b"still listening?",
                "server read {:?}",
                String::from_utf8_lossy(&got)
            );
            Ok(())
        })
    })
}

/// Set in the child process of the SIGPIPE test.
const SIGPIPE_CHILD_ENV: &str = "EDGELOOP_TEST_SIGPIPE_CHILD";
/// The test's own name, to re-run just it in a child process.
const SIGPIPE_TEST: &str =
    "writing_to_a_closed_peer_fails_with_broken_pipe_or_reset_and_no_sigpipe";

/// Writes to a peer that closed until the write fails; returns that error. Run with
/// SIGPIPE at its default action (terminate), so a `send` without `MSG_NOSIGNAL`
/// would kill the process.
fn write_to_closed_peer() -> io::Result<io::Error> {
    edgeloop::block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut client = TcpStream::connect(listener.local_addr()?).await?;
        let (server_side, _) = listener.accept().await?;
        drop(server_side);
        // The peer's FIN has arrived once this read says EOF.
        let mut buf = [0u8; 16];
        let n = client.read(&mut buf).await?;
        assert_eq!(n, 0, "read from a closed peer returned {n} bytes");
        // The first write usually succeeds (the peer answers it with RST); a later
        // one fails. Bounded in time, yielding to the runtime between tries.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut writes = 0u32;
        loop {
            match client.write(&[0x55; 1024]).await {
                Ok(_) => writes += 1,
                Err(e) => return Ok(e),
            }
            assert!(
                Instant::now() < deadline,
                "{writes} writes to a closed peer all succeeded"
            );
            edgeloop::yield_now().await;
        }
    })
}

#[test]
fn writing_to_a_closed_peer_fails_with_broken_pipe_or_reset_and_no_sigpipe() -> io::Result<()> {
    if std::env::var_os(SIGPIPE_CHILD_ENV).is_some() {
        // Child: Rust starts programs with SIGPIPE ignored; restore the default so a
        // missing MSG_NOSIGNAL would kill this process.
        // SAFETY: setting a signal disposition to SIG_DFL installs no handler code.
        let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        assert_ne!(previous, libc::SIG_ERR, "signal(SIGPIPE, SIG_DFL) failed");
        let error = with_timeout(10, "write to closed peer", write_to_closed_peer)?;
        println!(
            "write to closed peer failed with {:?}: {error}",
            error.kind()
        );
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "error: {error:?}"
        );
        return Ok(());
    }
    // Parent: run this same test in a child process with SIGPIPE at its default.
    let mut child = ChildGuard::spawn(
        Command::new(std::env::current_exe()?)
            .args(["--exact", SIGPIPE_TEST, "--nocapture", "--test-threads=1"])
            .env(SIGPIPE_CHILD_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    let (status, stdout, stderr) = child.output_within(Duration::from_secs(30))?;
    assert_ne!(
        status.signal(),
        Some(libc::SIGPIPE),
        "the child was killed by SIGPIPE; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        status.success(),
        "child exited with {status}; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("write to closed peer failed with") && stdout.contains("1 passed"),
        "the child did not run the check; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    Ok(())
}
