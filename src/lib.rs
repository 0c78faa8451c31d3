//! edgeloop: a single-threaded async runtime for Linux, written from scratch on raw
//! epoll (`EPOLLET | EPOLLONESHOT`), small enough to read in an afternoon.
//!
//! This crate only re-exports: the executor, reactor and timers live in
//! `edgeloop-runtime`, the sockets in `edgeloop-net`. With the feature `hyper`, the
//! module `hyper` adds what hyper 1.x needs to run on edgeloop.
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
    Builder, Handle, JoinError, JoinHandle, RemoteJoinHandle, Runtime, RuntimeMetrics, SlowPoll,
    UnhandledPanic, YieldNow, block_on, spawn, spawn_blocking, yield_now,
};

/// The runtime and its handle, at tokio's paths (`edgeloop::runtime::Builder`, ...).
pub mod runtime {
    pub use edgeloop_runtime::{
        Builder, Handle, RemoteJoinHandle, Runtime, RuntimeMetrics, SlowPoll, UnhandledPanic,
    };
}

/// Networking: TCP (`TcpListener`, `TcpStream`, `TcpSocket`), UDP (`UdpSocket`),
/// Unix-domain sockets (`UnixListener`, `UnixStream`, `UnixDatagram`, and the
/// `unix` module), and `lookup_host`.
pub mod net {
    pub use edgeloop_net::*;
}

/// Timers.
pub mod time {
    pub use edgeloop_runtime::time::*;
}

/// Task utilities: `JoinSet`, and the cooperative budget's `consume_budget` and
/// `unconstrained`.
pub mod task {
    pub use edgeloop_runtime::task::*;
}

/// Unix signals as async streams: [`ctrl_c`](signal::ctrl_c), [`signal`](signal::signal).
pub mod signal {
    pub use edgeloop_runtime::signal::*;
}

/// The readiness API that sockets are built on, for wrapping other fds, and how to
/// use the ecosystem's I/O helpers with edgeloop.
///
/// [`AsyncFd`](crate::io::AsyncFd) makes any fd that epoll can watch (a pipe, an eventfd, a timerfd,
/// inotify, a serial port, a child's stdout) async: it sets `O_NONBLOCK`, registers
/// the fd, and offers `readable().await`, `writable().await`, and
/// `read_with(|inner| ...)` / `write_with(...)`, which retry the closure after each
/// `WouldBlock` once the fd is ready again. Every socket in [`net`] is
/// built on it.
///
/// edgeloop has no I/O helpers of its own: its types implement `futures-io`'s
/// `AsyncRead` and `AsyncWrite` (TCP and Unix streams and their halves, and
/// `AsyncFd<T>` for `T: Read`/`Write`), so `futures-util`'s `AsyncReadExt`,
/// `AsyncWriteExt`, `BufReader`, `lines` and `copy` work on them as they are:
///
/// ```
/// use futures_util::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
/// use futures_util::stream::StreamExt;
/// use edgeloop::net::{TcpListener, TcpStream};
///
/// edgeloop::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await?;
///     let addr = listener.local_addr()?;
///     // The server copies each connection back to itself with `futures_util::io::copy`.
///     edgeloop::spawn(async move {
///         let (stream, _) = listener.accept().await?;
///         let (reader, mut writer) = stream.into_split();
///         futures_util::io::copy(reader, &mut writer).await?;
///         writer.close().await // shuts down writing: the client sees EOF
///     });
///     let stream = TcpStream::connect(addr).await?;
///     let (reader, mut writer) = stream.into_split();
///     writer.write_all(b"first line\nsecond line\n").await?;
///     writer.close().await?;
///     let lines: Vec<String> = BufReader::new(reader)
///         .lines()
///         .map(|line| line.expect("a line"))
///         .collect()
///         .await;
///     assert_eq!(lines, ["first line", "second line"]);
///
///     // `AsyncFd` over a pipe, read with `AsyncReadExt::read_to_string`.
///     let (r, mut w) = std::io::pipe()?;
///     std::io::Write::write_all(&mut w, b"through a pipe")?;
///     drop(w);
///     let mut text = String::new();
///     edgeloop::io::AsyncFd::new(r)?.read_to_string(&mut text).await?;
///     assert_eq!(text, "through a pipe");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub mod io {
    pub use edgeloop_runtime::{AsyncFd, Direction, wait_for_fd_release};
}

// hyper 1.x on edgeloop (feature `hyper`): an I/O adapter, a timer, an executor.
#[cfg(feature = "hyper")]
pub mod hyper;

/// Compiles the README's examples as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
