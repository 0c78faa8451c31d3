#![cfg(feature = "hyper")]
//! The `http_hello` example, built and run as a user would (`cargo build --example
//! http_hello --features hyper`, started on `127.0.0.1:0`), talked to by a hyper
//! client on edgeloop, by raw std sockets (pipelining, a stalled head) and, if it is
//! installed, by `wrk`.

mod support;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeloop::hyper::HyperIo;
use edgeloop::net::TcpStream;
use http_body_util::Empty;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use support::{ChildGuard, IO_TIMEOUT, lines_of, signal_child, std_connect, with_timeout};

const HELLO: &str = "Hello, world!";

/// A running `http_hello`: the guard that kills it, its address, and its stdout
/// after the first line.
struct Server {
    guard: ChildGuard,
    addr: SocketAddr,
    stdout: Receiver<String>,
}

impl Server {
    /// Starts the example on `127.0.0.1:0` with `args`, and reads its address from
    /// its first line, which must be exactly `listening on 127.0.0.1:PORT`.
    fn start(args: &[&str]) -> io::Result<Server> {
        let binary = support::built_example_with_features("http_hello", "hyper")?;
        let mut guard = ChildGuard::spawn(
            Command::new(binary)
                .arg("127.0.0.1:0")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )?;
        let stdout = lines_of(guard.child_mut().stdout.take().expect("stdout is piped"));
        let line = stdout
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| io::Error::other(format!("no `listening on` line: {e}")))?;
        let port: u16 = line
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("first line is not `listening on 127.0.0.1:PORT`: {line:?}"));
        assert_ne!(port, 0, "the example printed port 0: {line:?}");
        Ok(Server {
            guard,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stdout,
        })
    }

    /// Stops the server with SIGTERM and returns `(connections, requests)` from its
    /// last line, `served N connections, M requests`; it must exit 0.
    fn stop(mut self) -> io::Result<(u64, u64)> {
        signal_child(&mut self.guard, "TERM")?;
        let line = self
            .stdout
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| io::Error::other(format!("no summary line after SIGTERM: {e}")))?;
        let counts: Vec<u64> = line
            .strip_prefix("served ")
            .and_then(|rest| rest.strip_suffix(" requests"))
            .and_then(|rest| rest.split_once(" connections, "))
            .and_then(|(c, r)| Some(vec![c.parse().ok()?, r.parse().ok()?]))
            .unwrap_or_else(|| panic!("not a `served N connections, M requests` line: {line:?}"));
        let (status, _, _) = self.guard.output_within(Duration::from_secs(10))?;
        assert!(
            status.success(),
            "http_hello exited with {status} after SIGTERM"
        );
        Ok((counts[0], counts[1]))
    }
}

/// An HTTP/1.1 connection of a hyper client on edgeloop; the connection task is
/// detached and ends when the sender is dropped.
async fn connect(addr: SocketAddr) -> io::Result<SendRequest<Empty<Bytes>>> {
    let stream = edgeloop::time::timeout(IO_TIMEOUT, TcpStream::connect(addr)).await??;
    let (sender, connection) = hyper::client::conn::http1::handshake(HyperIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    edgeloop::spawn(async move {
        // The requests on it fail too, and say why.
        if let Err(e) = connection.await {
            eprintln!("client connection failed: {e}");
        }
    });
    Ok(sender)
}

/// `GET path` on `sender`'s connection: the status and the whole body.
async fn get(
    sender: &mut SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> io::Result<(StatusCode, Bytes)> {
    let request = Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::new())
        .map_err(io::Error::other)?;
    support::hyper_exchange(sender, request).await
}

#[test]
fn http_hello_answers_a_hyper_client_with_hello_world() -> io::Result<()> {
    with_timeout(300, "http_hello, one request", || {
        let server = Server::start(&[])?;
        let addr = server.addr;
        let (status, body) = edgeloop::block_on(async move {
            let mut sender = connect(addr).await?;
            get(&mut sender, addr, "/").await
        })?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, HELLO);
        assert_eq!(server.stop()?, (1, 1), "(connections, requests)");
        Ok(())
    })
}

#[test]
fn http_hello_keeps_one_connection_alive_for_100_requests() -> io::Result<()> {
    with_timeout(300, "http_hello, keep-alive", || {
        let server = Server::start(&[])?;
        let addr = server.addr;
        edgeloop::block_on(async move {
            let mut sender = connect(addr).await?;
            for i in 0..100 {
                let path = format!("/request/{i}");
                let (status, body) = get(&mut sender, addr, &path).await?;
                assert_eq!(status, StatusCode::OK, "request {i}");
                assert_eq!(body, HELLO, "request {i}");
            }
            Ok::<_, io::Error>(())
        })?;
        // The server's own count: one accepted connection served all of them.
        assert_eq!(server.stop()?, (1, 100), "(connections, requests)");
        Ok(())
    })
}

/// Splits `raw` into HTTP/1.1 responses: each one's status line and body (by its
/// `content-length`). Panics on anything else.
fn parse_responses(mut raw: &[u8]) -> Vec<(String, Vec<String>, String)> {
    let mut responses = Vec::new();
    while !raw.is_empty() {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(raw)));
        let head = std::str::from_utf8(&raw[..end]).expect("a UTF-8 head");
        let mut lines = head.split("\r\n");
        let status = lines.next().expect("a status line").to_owned();
        let headers: Vec<String> = lines.map(str::to_ascii_lowercase).collect();
        let length: usize = headers
            .iter()
            .find_map(|h| h.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no content-length in {head:?}"));
        let body = &raw[end + 4..end + 4 + length];
        responses.push((status, headers, String::from_utf8_lossy(body).into_owned()));
        raw = &raw[end + 4 + length..];
    }
    responses
}

#[test]
fn http_hello_answers_pipelined_requests_in_order() -> io::Result<()> {
    with_timeout(300, "http_hello, pipelined", || {
        let server = Server::start(&[])?;
        let mut stream = std_connect(server.addr)?;
        // Three requests in one write; the last asks the server to close, so the
        // responses end with EOF.
        let requests = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
                        GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
                        GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        stream.write_all(requests.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let responses = parse_responses(&raw);
        assert_eq!(responses.len(), 3, "{:?}", String::from_utf8_lossy(&raw));
        for (i, (status, headers, body)) in responses.iter().enumerate() {
            assert_eq!(status, "HTTP/1.1 200 OK", "response {i}");
            assert_eq!(body, HELLO, "response {i}");
            let closes = headers.iter().any(|h| h == "connection: close");
            assert_eq!(
                closes,
                i == 2,
                "`connection: close` on response {i}: {headers:?}"
            );
        }
        assert_eq!(server.stop()?, (1, 3), "(connections, requests)");
        Ok(())
    })
}

/// Waits for EOF or a reset (the server sends nothing else); returns when it came,
/// measured from `start`.
fn wait_for_close(stream: &mut std::net::TcpStream, start: Instant) -> io::Result<Duration> {
    let mut buf = [0u8; 1024];
    match stream.read(&mut buf) {
        Ok(0) => Ok(start.elapsed()),
        Ok(n) => panic!(
            "the server sent {:?} instead of closing",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(start.elapsed()),
        Err(e) => Err(e),
    }
}

#[test]
fn http_hello_closes_a_connection_whose_head_stalls_past_the_header_timeout() -> io::Result<()> {
    with_timeout(300, "http_hello, header timeout", || {
        let timeout = Duration::from_secs(1);
        let margin = Duration::from_secs(4);
        let server = Server::start(&["--header-timeout", "1"])?;

        // Half a head, then nothing: closed once the timeout passes, not before.
        // Measured from before `connect`: the server's timer starts after it.
        let start = Instant::now();
        let mut stalled = std_connect(server.addr)?;
        stalled.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")?;
        let closed_after = wait_for_close(&mut stalled, start)?;
        assert!(
            closed_after >= timeout,
            "closed after {closed_after:?}, before the timeout"
        );
        assert!(
            closed_after < timeout + margin,
            "closed only after {closed_after:?}"
        );

        // A request answered, then an idle keep-alive connection: the timeout for
        // the next head closes it too.
        let mut idle = std_connect(server.addr)?;
        idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut response = vec![0u8; 4096];
        let n = idle.read(&mut response)?;
        let start = Instant::now();
        let answered = String::from_utf8_lossy(&response[..n]).into_owned();
        assert!(
            answered.starts_with("HTTP/1.1 200 OK\r\n") && answered.ends_with(HELLO),
            "{answered:?}"
        );
        let closed_after = wait_for_close(&mut idle, start)?;
        // The timer started when the response went out, a moment before `start`.
        assert!(
            closed_after >= timeout - Duration::from_millis(100),
            "idle connection closed after {closed_after:?}"
        );
        assert!(
            closed_after < timeout + margin,
            "idle connection closed only after {closed_after:?}"
        );

        assert_eq!(server.stop()?, (2, 1), "(connections, requests)");
        Ok(())
    })
}

/// The path of `name` in a directory of `$PATH`, if it is there.
fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// From wrk's report: the number in `N requests in 2.00s, ...`.
fn wrk_requests(report: &str) -> Option<u64> {
    report.lines().find_map(|line| {
        let (n, rest) = line.trim().split_once(' ')?;
        rest.starts_with("requests in ").then(|| n.parse().ok())?
    })
}

#[test]
fn wrk_gets_answers_without_socket_errors() -> io::Result<()> {
    let Some(wrk) = on_path("wrk") else {
        println!(
            "skipped: `wrk` is not on PATH (install it, e.g. `apt-get install wrk`, to run this test)"
        );
        return Ok(());
    };
    with_timeout(300, "http_hello under wrk", move || {
        let server = Server::start(&[])?;
        let url = format!("http://{}/", server.addr);
        let mut run = ChildGuard::spawn(
            Command::new(wrk)
                .args(["-t1", "-c50", "-d2s", &url])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )?;
        let (status, report, errors) = run.output_within(Duration::from_secs(60))?;
        assert!(
            status.success(),
            "wrk exited with {status}\n{report}\n{errors}"
        );
        let requests = wrk_requests(&report)
            .unwrap_or_else(|| panic!("no `N requests in` line in wrk's report:\n{report}"));
        assert!(requests > 0, "wrk completed no request:\n{report}");
        // wrk prints these lines only when there is something to report.
        assert!(
            !report.contains("Socket errors"),
            "wrk saw socket errors:\n{report}"
        );
        assert!(
            !report.contains("Non-2xx"),
            "wrk saw error responses:\n{report}"
        );
        let (connections, served) = server.stop()?;
        assert!(
            served >= requests,
            "served {served} < wrk's {requests} requests"
        );
        assert!(connections >= 50, "{connections} connections for wrk's 50");
        println!("wrk: {requests} requests in 2 s on {connections} connections");
        Ok(())
    })
}
