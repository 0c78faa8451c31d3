//! edgeloop: a single-threaded async runtime for Linux, written from scratch on raw
//! epoll (`EPOLLET | EPOLLONESHOT`), small enough to read in an afternoon.
//!
//! This crate only re-exports: the executor, reactor and timers live in
//! `edgeloop-runtime`, the sockets in `edgeloop-net`.
//!
//! # Examples
//!
//! An echo server (see `examples/echo.rs` for the full one):
//!
//! ```no_run
//! fn main() -> std::io::Result<()> {
//!     edgeloop::block_on(async {
//!         let listener = edgeloop::net::TcpListener::bind("127.0.0.1:6888").await?;
//!         loop {
//!             let (mut stream, _peer) = listener.accept().await?;
//!             edgeloop::spawn(async move {
//!                 let mut buf = vec![0u8; 16 * 1024];
//!                 loop {
//!                     let n = stream.read(&mut buf).await?;
//!                     if n == 0 {
//!                         return Ok::<_, std::io::Error>(());
//!                     }
//!                     stream.write_all(&buf[..n]).await?;
//!                 }
//!             });
//!         }
//!     })
//! }
//! ```
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub use edgeloop_runtime::{
    Builder, Handle, JoinError, JoinHandle, RemoteJoinHandle, Runtime, RuntimeMetrics, YieldNow,
    block_on, spawn, spawn_blocking, yield_now,
};

/// The runtime and its handle, at tokio's paths (`edgeloop::runtime::Builder`, ...).
pub mod runtime {
    pub use edgeloop_runtime::{Builder, Handle, RemoteJoinHandle, Runtime, RuntimeMetrics};
}

/// Networking: TCP listeners and streams.
pub mod net {
    pub use edgeloop_net::*;
}

/// Timers.
pub mod time {
    pub use edgeloop_runtime::time::*;
}

/// Unix signals as async streams: [`ctrl_c`](signal::ctrl_c), [`signal`](signal::signal).
pub mod signal {
    pub use edgeloop_runtime::signal::*;
}

/// The readiness API that sockets are built on, for wrapping other fds.
pub mod io {
    pub use edgeloop_runtime::{AsyncFd, Direction};
}

/// Compiles the README's examples as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
