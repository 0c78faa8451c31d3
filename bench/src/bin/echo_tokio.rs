//! `echo_tokio`: the echo benchmark's tokio server (see bench/README.md), on a
//! `current_thread` runtime built with `enable_all`.
//!
//! One task per connection, a 16 KiB buffer each: read, then `write_all` of what was
//! read, until EOF. `TCP_NODELAY` on every connection, as in every peer server.
//!
//! Usage: `echo_tokio [ADDR]` (default 127.0.0.1:7000; port 0 picks a free one).
//! Prints `listening on ADDR` on stdout once bound, then serves until killed.
#![deny(unsafe_code, missing_docs)]

use std::io;

use edgeloop_bench::echo::{BUFFER_SIZE, listen_address};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

fn main() -> io::Result<()> {
    let addr = listen_address("echo_tokio");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(addr.as_str()).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _peer) = listener.accept().await?;
            stream.set_nodelay(true)?;
            // A connection's error (e.g. a reset) ends only that connection.
            drop(tokio::spawn(serve(stream)));
        }
    })
}
