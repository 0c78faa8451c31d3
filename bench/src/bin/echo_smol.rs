//! `echo_smol`: the echo benchmark's smol server (see bench/README.md):
//! `async-io`'s `Async<TcpListener>` and `async-executor`'s `LocalExecutor`, run by
//! `async_io::block_on` on this one thread.
//!
//! One task per connection, a 16 KiB buffer each: read, then `write_all` of what was
//! read, until EOF. `TCP_NODELAY` on every connection, as in every peer server.
//!
//! Usage: `echo_smol [ADDR]` (default 127.0.0.1:7000; port 0 picks a free one).
//! Prints `listening on ADDR` on stdout once bound, then serves until killed.
#![deny(unsafe_code, missing_docs)]

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};

use async_executor::LocalExecutor;
use async_io::Async;
use edgeloop_bench::echo::{BUFFER_SIZE, listen_address};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

/// Echoes until EOF or an error.
async fn serve(mut stream: Async<TcpStream>) -> io::Result<()> {
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
    let text = listen_address("echo_smol");
    let addr: SocketAddr = text.parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{text}`: not an IP:PORT address ({e})"),
        )
    })?;
    let executor = LocalExecutor::new();
    async_io::block_on(executor.run(async {
        let listener = Async::<TcpListener>::bind(addr)?;
        println!("listening on {}", listener.get_ref().local_addr()?);
        loop {
            let (stream, _peer) = listener.accept().await?;
            stream.get_ref().set_nodelay(true)?;
            // A connection's error (e.g. a reset) ends only that connection.
            executor.spawn(serve(stream)).detach();
        }
    }))
}
