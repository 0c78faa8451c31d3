//! `http_edgeloop`: the HTTP benchmark's edgeloop server for the ONESHOT
//! experiment (see `http_compare --with-et true`): the same hyper service as the
//! `http_hello` example and `http_tokio`, through `edgeloop::hyper`'s `HyperIo` and
//! `HyperTimer`, with `--no-oneshot` building the runtime with
//! `Builder::oneshot(false)` (`EPOLLET` registrations, never re-armed) to measure
//! what the re-arm costs per request. Without the flag it is the runtime as it
//! ships, like `http_hello`.
//!
//! One task per connection, HTTP/1.1 keep-alive, `TCP_NODELAY`, every request
//! answered with `Hello, world!`, a 5 s header-read timeout. Errors of a
//! connection end only that connection, silently.
//!
//! Usage: `http_edgeloop [ADDR] [--no-oneshot]` (default 127.0.0.1:8080; port 0
//! picks a free one). Prints `listening on ADDR` once bound, then serves until
//! killed.
#![deny(unsafe_code, missing_docs)]

use std::convert::Infallible;
use std::io::{self, Write};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use edgeloop::hyper::{HyperIo, HyperTimer};
use edgeloop::net::TcpListener;
use edgeloop_bench::echo::server_command_line;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};

/// The body of every response.
const HELLO: &[u8] = b"Hello, world!";

async fn serve(addr: String) -> io::Result<()> {
    let listener = TcpListener::bind(addr.as_str()).await?;
    let mut stdout = io::stdout();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    let mut builder = http1::Builder::new();
    builder
        .timer(HyperTimer)
        .header_read_timeout(Duration::from_secs(5))
        .keep_alive(true);
    let builder = Rc::new(builder);
    loop {
        let (stream, _peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let builder = Rc::clone(&builder);
        drop(edgeloop::spawn(async move {
            let hello = service_fn(|_request: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(HELLO))))
            });
            // A connection's error (a reset, a timeout) ends only that connection.
            let _ = builder.serve_connection(HyperIo::new(stream), hello).await;
        }));
    }
}

fn main() -> io::Result<()> {
    let (addr, flags) = server_command_line("http_edgeloop", &["no-oneshot"]);
    let runtime = edgeloop::Builder::new_current_thread()
        .oneshot(!flags.iter().any(|f| f == "no-oneshot"))
        .build()?;
    runtime.block_on(serve(addr))
}
