//! An echo server on edgeloop: one task per connection, each echoing what it reads
//! until EOF, then shutting down its write side.
//!
//! ```text
//! cargo run --release --example echo -- [ADDR]     # default 127.0.0.1:6888
//! ```
//!
//! Prints `listening on ADDR` once bound. A connection's error is logged to stderr
//! and ends only that connection. An `accept` that fails for lack of resources
//! (EMFILE, ENFILE, ENOBUFS, ENOMEM) is logged and backed off for 50 ms instead of
//! spinning; ECONNABORTED (and the other per-connection errors that accept(2)
//! says to retry) is skipped.

use std::io::{self, Write};
use std::net::Shutdown;
use std::time::Duration;

use edgeloop::net::{TcpListener, TcpStream};

/// How long to pause accepting after running out of fds or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6888".to_owned());
    edgeloop::block_on(serve(addr))
}

async fn serve(addr: String) -> io::Result<()> {
    let listener = TcpListener::bind(addr.as_str()).await?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                edgeloop::spawn(async move {
                    if let Err(e) = echo(stream).await {
                        eprintln!("connection {peer}: {e}");
                    }
                });
            }
            Err(e) if is_transient(&e) => eprintln!("accept: {e}; skipped"),
            Err(e) if is_resource_exhausted(&e) => {
                eprintln!("accept: {e}; pausing {} ms", ACCEPT_BACKOFF.as_millis());
                edgeloop::time::sleep(ACCEPT_BACKOFF).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Errors that concern one pending connection, not the listener: accept(2) says to
/// treat them like EAGAIN and accept again.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
        )
    )
}

fn is_resource_exhausted(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        // ENOSPC: epoll's `max_user_watches` is reached when registering the socket.
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ENOSPC)
    )
}

async fn echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown(Shutdown::Write);
        }
        stream.write_all(&buf[..n]).await?;
    }
}
