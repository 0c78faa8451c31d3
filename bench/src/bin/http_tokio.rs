//! `http_tokio`: the HTTP benchmark's tokio peer of edgeloop's `http_hello` example
//! (see `http_compare`): the same hyper service on a tokio `current_thread` runtime
//! built with `enable_all`, through hyper-util's `TokioIo` and `TokioTimer`.
//!
//! As `http_hello`: one task per connection, HTTP/1.1 keep-alive, `TCP_NODELAY`,
//! every request answered with `Hello, world!`, a 5 s header-read timeout
//! (`--header-timeout SECS`, 0 turns it off) on the runtime's timer. Errors of a
//! connection end only that connection, silently.
//!
//! Usage: `http_tokio [ADDR] [--header-timeout SECS]` (default 127.0.0.1:8080; port
//! 0 picks a free one). Prints `listening on ADDR` once bound, then serves until
//! killed.
#![deny(unsafe_code, missing_docs)]

use std::convert::Infallible;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// The body of every response.
const HELLO: &[u8] = b"Hello, world!";

const USAGE: &str = "usage: http_tokio [ADDR] [--header-timeout SECS]";

/// `(address, header timeout)` from the command line; exits 2 on a bad one.
fn parse_args() -> (String, Option<Duration>) {
    let mut addr = "127.0.0.1:8080".to_owned();
    let mut header_timeout = Some(Duration::from_secs(5));
    let mut args = std::env::args().skip(1);
    let fail = |message: String| -> ! {
        eprintln!("http_tokio: {message}\n{USAGE}");
        std::process::exit(2)
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--header-timeout" => {
                let value = args.next().unwrap_or_default();
                let secs: f64 = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s < 1e9)
                    .unwrap_or_else(|| fail(format!("`--header-timeout {value}`: not seconds")));
                header_timeout = (secs > 0.0).then(|| Duration::from_secs_f64(secs));
            }
            flag if flag.starts_with('-') => fail(format!("unknown option `{flag}`")),
            other => other.clone_into(&mut addr),
        }
    }
    (addr, header_timeout)
}

fn main() -> io::Result<()> {
    let (addr, header_timeout) = parse_args();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr.as_str()).await?;
        let mut stdout = io::stdout();
        writeln!(stdout, "listening on {}", listener.local_addr()?)?;
        stdout.flush()?;
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true);
        let builder = Arc::new(builder);
        loop {
            let (stream, _peer) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let builder = Arc::clone(&builder);
            drop(tokio::spawn(async move {
                let hello = service_fn(|_request: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(HELLO))))
                });
                // A connection's error (a reset, a timeout) ends only that connection.
                let _ = builder.serve_connection(TokioIo::new(stream), hello).await;
            }));
        }
    })
}
