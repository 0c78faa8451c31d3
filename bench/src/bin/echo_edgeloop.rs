//! `echo_edgeloop`: the echo benchmark's edgeloop server (see bench/README.md).
//!
//! One task per connection, a 16 KiB buffer each: read, then `write_all` of what was
//! read, until EOF. `TCP_NODELAY` on every connection, as in every peer server.
//!
//! Usage: `echo_edgeloop [ADDR] [--no-oneshot]` (default 127.0.0.1:7000; port 0
//! picks a free one). Prints `listening on ADDR` on stdout once bound, then serves
//! until killed. By default it runs on `edgeloop::block_on`, the runtime as it
//! ships (`EPOLLET | EPOLLONESHOT`, one `EPOLL_CTL_MOD` per wait); `--no-oneshot`
//! builds it with `Builder::oneshot(false)` (`EPOLLET` only, no re-arming), to
//! measure what ONESHOT costs (`compare` calls that server `edgeloop-et`).
#![deny(unsafe_code, missing_docs)]

use std::io;

use edgeloop::net::{TcpListener, TcpStream};
use edgeloop_bench::echo::{BUFFER_SIZE, server_command_line};

/// Echoes until EOF or an error.
async fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; BUFFER_SIZE];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Accepts connections for ever, one echo task each.
async fn accept_loop(addr: String) -> io::Result<()> {
    let listener = TcpListener::bind(addr.as_str()).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        // A connection's error (e.g. a reset) ends only that connection.
        drop(edgeloop::spawn(serve(stream)));
    }
}

fn main() -> io::Result<()> {
    let (addr, flags) = server_command_line("echo_edgeloop", &["no-oneshot"]);
    if flags.iter().any(|f| f == "no-oneshot") {
        let runtime = edgeloop::Builder::new_current_thread()
            .oneshot(false)
            .build()?;
        runtime.block_on(accept_loop(addr))
    } else {
        edgeloop::block_on(accept_loop(addr))
    }
}
