//! The `proxy` example, built and run as a user would: start the binary on
//! `127.0.0.1:0` in front of an upstream run by the test (blocking std servers on
//! their own threads), read the address it prints, talk to it with blocking std
//! sockets.

mod support;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use edgeloop::net::TcpSocket;
use support::{
    ChildGuard, IO_TIMEOUT, XorShift, assert_same_bytes, built_example, first_line_within,
    lines_of, pattern, std_connect, std_roundtrip, with_timeout,
};

/// A running proxy: the guard that kills it, the address it listens on, and its
/// stderr, line by line.
struct Proxy {
    child: ChildGuard,
    addr: SocketAddr,
    stderr: Receiver<String>,
}

impl Proxy {
    /// Starts the example as `proxy 127.0.0.1:0 UPSTREAM` and reads its first line,
    /// which must be exactly `listening on 127.0.0.1:PORT`.
    fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        let mut child = ChildGuard::spawn(
            Command::new(built_example("proxy")?)
                .arg("127.0.0.1:0")
                .arg(upstream.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )?;
        let stdout = child.child_mut().stdout.take().expect("stdout is piped");
        let stderr = child.child_mut().stderr.take().expect("stderr is piped");
        let stderr = lines_of(stderr);
        let line = first_line_within(stdout, Duration::from_secs(30))?;
        let port: u16 = line
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("first line is not `listening on 127.0.0.1:PORT`: {line:?}"));
        assert_ne!(port, 0, "the proxy printed port 0: {line:?}");
        Ok(Proxy {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stderr,
        })
    }

    /// Waits up to `limit` for a stderr line containing every one of `parts`.
    fn expect_log(&self, parts: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if parts.iter().all(|p| line.contains(p)) => return line,
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "no stderr line containing {parts:?} within {limit:?}; lines seen: {seen:#?}"
                ),
            }
        }
    }

    /// Kills the proxy, failing if it had exited on its own, and returns every line
    /// it wrote on stderr that was not consumed yet.
    fn stop(mut self) -> io::Result<Vec<String>> {
        self.child.kill_expecting_running()?;
        // The pipe is closed now, so the reader thread ends and the channel closes.
        Ok(self.stderr.iter().collect())
    }
}

/// An echo upstream: std threads, one per connection, each echoing until EOF and
/// then shutting down its write side. Each connection's result (bytes echoed)
/// arrives on the returned channel once it ends.
fn start_echo_upstream() -> io::Result<(SocketAddr, Receiver<io::Result<u64>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    Ok((addr, serve_echo(listener)))
}

/// Serves `listener` as in [`start_echo_upstream`], on a detached thread that
/// ends with the test process.
fn serve_echo(listener: TcpListener) -> Receiver<io::Result<u64>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let tx = tx.clone();
            thread::spawn(move || {
                // Ignored: the receiver is gone once its test has finished.
                let _ = tx.send(stream.and_then(echo_until_eof));
            });
        }
    });
    rx
}

fn echo_until_eof(mut stream: TcpStream) -> io::Result<u64> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0u8; 32 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            stream.shutdown(Shutdown::Write)?;
            return Ok(total);
        }
        stream.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Waits up to 10 s for the next finished upstream connection.
fn next_upstream_result(results: &Receiver<io::Result<u64>>) -> io::Result<u64> {
    results
        .recv_timeout(Duration::from_secs(10))
        .map_err(|e| io::Error::other(format!("no upstream connection ended: {e}")))?
}

/// Reads `stream` to EOF; fails on a read error or after `IO_TIMEOUT`.
fn read_all(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out)?;
    Ok(out)
}

/// Writes `data` then shuts down the write side, on a new thread.
fn send_then_shutdown(stream: &TcpStream, data: Vec<u8>) -> io::Result<thread::JoinHandle<()>> {
    let mut writer = stream.try_clone()?;
    Ok(thread::spawn(move || {
        writer.write_all(&data).expect("writing to the proxy");
        writer
            .shutdown(Shutdown::Write)
            .expect("shutting down writing");
    }))
}

#[test]
fn proxy_forwards_concurrent_clients_with_random_sizes_exactly_and_logs_nothing() -> io::Result<()>
{
    with_timeout(300, "proxy, concurrent clients", || {
        let (upstream, finished) = start_echo_upstream()?;
        let proxy = Proxy::start(upstream)?;
        const CLIENTS: u64 = 8;
        const MESSAGES: usize = 4;
        let mut expected_total = 0u64;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let mut rng = XorShift::new(1000 + client);
                let sizes: Vec<usize> = (0..MESSAGES).map(|_| rng.in_range(1, 1 << 20)).collect();
                expected_total += sizes.iter().sum::<usize>() as u64;
                let addr = proxy.addr;
                thread::spawn(move || -> io::Result<()> {
                    let mut stream = std_connect(addr)?;
                    for (i, &size) in sizes.iter().enumerate() {
                        let msg = pattern(size, client * 100 + i as u64);
                        let echoed = std_roundtrip(&mut stream, &msg)?;
                        assert_same_bytes(
                            &echoed,
                            &msg,
                            &format!("client {client}, message {i} ({size} bytes)"),
                        );
                    }
                    stream.shutdown(Shutdown::Write)?;
                    let rest = read_all(&mut stream)?;
                    assert!(
                        rest.is_empty(),
                        "client {client}: {} bytes after the last echo",
                        rest.len()
                    );
                    Ok(())
                })
            })
            .collect();
        for (i, client) in clients.into_iter().enumerate() {
            client
                .join()
                .unwrap_or_else(|_| panic!("client {i} panicked"))?;
        }
        let mut upstream_total = 0;
        for _ in 0..CLIENTS {
            upstream_total += next_upstream_result(&finished)?;
        }
        assert_eq!(
            upstream_total, expected_total,
            "bytes echoed by the upstream"
        );
        let log = proxy.stop()?;
        assert!(
            log.is_empty(),
            "the proxy logged for clean connections: {log:#?}"
        );
        Ok(())
    })
}

#[test]
fn client_half_close_still_gets_the_full_echo_then_eof() -> io::Result<()> {
    with_timeout(120, "proxy, client half-close", || {
        let (upstream, finished) = start_echo_upstream()?;
        let proxy = Proxy::start(upstream)?;
        for (i, len) in [0, 1, 700 * 1024 + 7].into_iter().enumerate() {
            let msg = pattern(len, 70 + i as u64);
            let mut stream = std_connect(proxy.addr)?;
            // Everything is sent, and the write side shut, before reading anything:
            // the echo must still come back whole, and then EOF.
            let writer = send_then_shutdown(&stream, msg.clone())?;
            let echoed = read_all(&mut stream)?;
            writer.join().expect("writer thread panicked");
            assert_same_bytes(
                &echoed,
                &msg,
                &format!("echo after half-close ({len} bytes)"),
            );
            // The upstream ends a connection only after reading EOF: so the
            // half-close reached it.
            let echoed_upstream = next_upstream_result(&finished)?;
            assert_eq!(echoed_upstream, len as u64, "bytes the upstream echoed");
        }
        proxy.stop()?;
        Ok(())
    })
}

#[test]
fn upstream_half_close_reaches_the_client_and_the_client_can_still_send() -> io::Result<()> {
    with_timeout(120, "proxy, upstream half-close", || {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let upstream_addr = listener.local_addr()?;
        let proxy = Proxy::start(upstream_addr)?;
        // The upstream greets, shuts down its write side at once, then reads to EOF.
        let upstream = thread::spawn(move || -> io::Result<Vec<u8>> {
            let (mut stream, _) = listener.accept()?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.write_all(b"hello, then EOF")?;
            stream.shutdown(Shutdown::Write)?;
            read_all(&mut stream)
        });
        let mut client = std_connect(proxy.addr)?;
        let greeting = read_all(&mut client)?;
        assert_same_bytes(&greeting, b"hello, then EOF", "greeting before EOF");
        // The other direction is still open.
        let msg = pattern(500 * 1024, 9);
        client.write_all(&msg)?;
        client.shutdown(Shutdown::Write)?;
        let received = upstream.join().expect("upstream thread panicked")?;
        assert_same_bytes(
            &received,
            &msg,
            "bytes the upstream read after its half-close",
        );
        proxy.stop()?;
        Ok(())
    })
}

#[test]
fn sixteen_mib_each_way_at_once_arrive_byte_for_byte() -> io::Result<()> {
    with_timeout(300, "proxy, 16 MiB both ways", || {
        const LEN: usize = 16 << 20;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let proxy = Proxy::start(listener.local_addr()?)?;
        // The upstream sends its own 16 MiB while it reads the client's.
        let upstream = thread::spawn(move || -> io::Result<Vec<u8>> {
            let (mut stream, _) = listener.accept()?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.set_write_timeout(Some(IO_TIMEOUT))?;
            let writer = send_then_shutdown(&stream, pattern(LEN, 2))?;
            let received = read_all(&mut stream)?;
            writer.join().expect("upstream writer panicked");
            Ok(received)
        });
        let mut client = std_connect(proxy.addr)?;
        let writer = send_then_shutdown(&client, pattern(LEN, 1))?;
        let to_client = read_all(&mut client)?;
        writer.join().expect("client writer panicked");
        let to_upstream = upstream.join().expect("upstream thread panicked")?;
        assert_same_bytes(&to_client, &pattern(LEN, 2), "upstream -> client");
        assert_same_bytes(&to_upstream, &pattern(LEN, 1), "client -> upstream");
        let log = proxy.stop()?;
        assert!(log.is_empty(), "the proxy logged: {log:#?}");
        Ok(())
    })
}

/// Whether the proxy closed `stream`: EOF, or a reset.
fn assert_closed_by_proxy(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{what}: read {n} bytes, expected EOF or a reset"),
        Err(e) => panic!("{what}: {e:?}, expected EOF or a reset"),
    }
}

#[test]
fn unreachable_upstream_closes_the_client_and_the_proxy_keeps_serving() -> io::Result<()> {
    with_timeout(120, "proxy, upstream down", || {
        // Bound but not listening: connections to it are refused, and no other
        // program can take the port before the test listens on it.
        let reserved = TcpSocket::new_v4()?;
        reserved.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let upstream = reserved.local_addr()?;
        let proxy = Proxy::start(upstream)?;
        for attempt in 0..2 {
            let mut client = std_connect(proxy.addr)?;
            assert_closed_by_proxy(&mut client, &format!("client {attempt}, upstream down"));
            proxy.expect_log(
                &["cannot reach upstream", &upstream.to_string()],
                Duration::from_secs(10),
            );
        }

        // The upstream comes up on the same port: the same proxy now serves.
        let listener = edgeloop::block_on(async { reserved.listen(16)?.into_std() })?;
        listener.set_nonblocking(false)?;
        let finished = serve_echo(listener);
        let mut client = std_connect(proxy.addr)?;
        let msg = pattern(200 * 1024, 3);
        let echoed = std_roundtrip(&mut client, &msg)?;
        assert_same_bytes(&echoed, &msg, "echo once the upstream is up");
        client.shutdown(Shutdown::Write)?;
        assert!(read_all(&mut client)?.is_empty(), "bytes after the echo");
        assert_eq!(
            next_upstream_result(&finished)?,
            msg.len() as u64,
            "bytes echoed"
        );
        let log = proxy.stop()?;
        assert!(
            log.is_empty(),
            "the proxy logged for a clean connection: {log:#?}"
        );
        Ok(())
    })
}

/// Runs the example with `args` to its exit (10 s at most): status, stdout, stderr.
fn run_to_exit(args: &[&str]) -> io::Result<(ExitStatus, String, String)> {
    let mut child = ChildGuard::spawn(
        Command::new(built_example("proxy")?)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    child.output_within(Duration::from_secs(10))
}

#[test]
fn help_prints_usage_and_exits_0() -> io::Result<()> {
    with_timeout(300, "proxy --help", || {
        for flag in ["--help", "-h"] {
            let (status, stdout, stderr) = run_to_exit(&[flag])?;
            assert!(
                status.success(),
                "`proxy {flag}` exited with {status}; stderr:\n{stderr}"
            );
            for word in [
                "usage: proxy LISTEN UPSTREAM",
                "LISTEN",
                "UPSTREAM",
                "--help",
            ] {
                assert!(
                    stdout.contains(word),
                    "`proxy {flag}` does not mention `{word}`:\n{stdout}"
                );
            }
        }
        Ok(())
    })
}

#[test]
fn bad_arguments_exit_2_with_a_message_naming_them() -> io::Result<()> {
    with_timeout(300, "proxy, bad arguments", || {
        // The arguments, and what the message must name.
        let cases: [(&[&str], &[&str]); 7] = [
            (&[], &["LISTEN", "UPSTREAM"]),
            (&["127.0.0.1:0"], &["127.0.0.1:0", "UPSTREAM"]),
            (&["127.0.0.1:0", "127.0.0.1:1", "extra"], &["extra"]),
            (&["--nope", "127.0.0.1:0", "127.0.0.1:1"], &["--nope"]),
            (&["localhost:0", "127.0.0.1:1"], &["LISTEN", "localhost:0"]),
            (&["127.0.0.1:0", "no-port"], &["UPSTREAM", "no-port"]),
            (&["127.0.0.1:0", "host:99999"], &["UPSTREAM", "host:99999"]),
        ];
        for (args, named) in cases {
            let (status, stdout, stderr) = run_to_exit(args)?;
            let command = format!("proxy {}", args.join(" "));
            assert_eq!(
                status.code(),
                Some(2),
                "`{command}` exited with {status}; stderr:\n{stderr}"
            );
            assert_eq!(stdout, "", "`{command}` printed on stdout");
            for name in named {
                assert!(
                    stderr.contains(name),
                    "`{command}`: stderr does not name `{name}`:\n{stderr}"
                );
            }
        }
        Ok(())
    })
}

/// Bytes the kernel still holds unacknowledged in `stream`'s send queue.
fn unacked_bytes(stream: &TcpStream) -> i32 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) on an open TCP socket writes one int to `n`.
    let r = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &raw mut n) };
    assert_eq!(r, 0, "SIOCOUTQ: {}", io::Error::last_os_error());
    n
}

/// A blocking client whose receive buffer is 4 KiB, set before it connects, so the
/// proxy has to hold most of a response for it.
fn slow_reader_client(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = edgeloop::block_on(async {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        socket.connect(addr).await
    })?;
    // The edgeloop stream handed back as a std one, now used blocking.
    let stream = socket.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

#[test]
fn a_failed_upload_does_not_cut_off_the_response_still_flowing_down() -> io::Result<()> {
    with_timeout(60, "a_failed_upload_does_not_cut_off_the_response", || {
        const RESPONSE: usize = 150 * 1024;
        let upstream = TcpListener::bind("127.0.0.1:0")?;
        let proxy = Proxy::start(upstream.local_addr()?)?;
        // The upstream answers early and closes, as a server rejecting an upload
        // does, once the proxy's kernel has acknowledged the whole answer.
        let server = thread::spawn(move || -> io::Result<()> {
            let (mut s, _) = upstream.accept()?;
            let mut request = [0u8; 5];
            s.read_exact(&mut request)?;
            s.write_all(&vec![b'R'; RESPONSE])?;
            let start = Instant::now();
            while unacked_bytes(&s) != 0 {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "never acknowledged"
                );
                thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        });
        let mut client = slow_reader_client(proxy.addr)?;
        client.write_all(b"hello")?;
        server.join().expect("upstream thread")?;
        // Keep uploading after the upstream closed: it resets, and the proxy's next
        // write upstream fails, while the response still waits in the proxy.
        for _ in 0..10 {
            thread::sleep(Duration::from_millis(20));
            if client.write_all(&[b'u'; 1024]).is_err() {
                break;
            }
        }
        client.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut got = 0usize;
        let mut buf = [0u8; 8192];
        let end = loop {
            match client.read(&mut buf) {
                Ok(0) => break "EOF".to_owned(),
                Ok(n) => got += n,
                Err(e) => break format!("error {e}"),
            }
        };
        assert_eq!(
            got, RESPONSE,
            "response bytes lost by the proxy (then {end})"
        );
        proxy.stop()?;
        Ok(())
    })
}
