//! Sockets for the edgeloop runtime, built only on its public readiness API
//! ([`edgeloop_runtime::AsyncFd`]).
//!
//! - [`TcpListener`]: `bind`, `accept`, `incoming`.
//! - [`TcpStream`]: `connect`, async `read`/`write`/`write_all`/`peek`, the
//!   `futures-io` `AsyncRead`/`AsyncWrite` traits, and `split`/`into_split` to read and
//!   write from two tasks.
//! - [`TcpSocket`]: a builder for the socket options to set before `bind`, `listen`
//!   or `connect` (reuse address and port, buffer sizes, no-delay, keep-alive).
//! - [`UdpSocket`]: datagrams (`send_to`/`recv_from`, or `connect` then
//!   `send`/`recv`), broadcast, TTL, multicast on IPv4 and IPv6.
//! - [`UnixListener`], [`UnixStream`] and [`UnixDatagram`]: Unix-domain sockets, with
//!   pathname and Linux abstract addresses, `pair()`s and peer credentials; their
//!   halves and address type live in [`unix`].
//! - [`lookup_host`]: DNS on the blocking pool.
//!
//! Every socket is created `SOCK_NONBLOCK | SOCK_CLOEXEC` and registered once with the
//! runtime's epoll (`EPOLLET | EPOLLONESHOT`); streams (TCP and Unix, accepted or
//! connected) are added to the epoll set only when they first have to wait
//! ([`AsyncFd::new_deferred`](edgeloop_runtime::AsyncFd::new_deferred)). Types are
//! `!Send`, tied to the runtime that created them:
//!
//! ```compile_fail
//! fn assert_send<T: Send>() {}
//! assert_send::<edgeloop_net::TcpStream>();
//! ```
//!
//! # Examples
//!
//! ```
//! use edgeloop_net::{TcpListener, TcpStream};
//!
//! edgeloop_runtime::block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0").await?;
//!     let addr = listener.local_addr()?;
//!     let server = edgeloop_runtime::spawn(async move {
//!         let (mut stream, _) = listener.accept().await?;
//!         let mut buf = [0u8; 64];
//!         let n = stream.read(&mut buf).await?;
//!         stream.write_all(&buf[..n]).await
//!     });
//!     let mut client = TcpStream::connect(addr).await?;
//!     client.write_all(b"echo me").await?;
//!     let mut buf = [0u8; 64];
//!     let n = client.read(&mut buf).await?;
//!     assert_eq!(&buf[..n], b"echo me");
//!     server.await??;
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    missing_docs,
    missing_debug_implementations
)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
#![doc(test(attr(deny(warnings))))]

/// Implements `futures_io::AsyncRead` (`read`), `AsyncWrite` (`write`) or both
/// (`io`) for a type that reaches a stream (a `&TcpStream` or `&UnixStream`, anything
/// with `poll_read_priv`, `poll_write_priv` and `shutdown`) as `$stream`, written in
/// terms of `$s: &Self`. Defined here, before the modules, so both stream families
/// use this one copy. Nothing is buffered in user space, so flush does nothing; close shuts
/// down the write side.
macro_rules! impl_async_io {
    (io $ty:ty, |$s:ident| $stream:expr) => {
        impl_async_io!(read $ty, |$s| $stream);
        impl_async_io!(write $ty, |$s| $stream);
    };
    (read $ty:ty, |$s:ident| $stream:expr) => {
        impl futures_io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let $s: &Self = &self;
                $stream.poll_read_priv(cx, buf)
            }
        }
    };
    (write $ty:ty, |$s:ident| $stream:expr) => {
        impl futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let $s: &Self = &self;
                $stream.poll_write_priv(cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let $s: &Self = &self;
                std::task::Poll::Ready($stream.shutdown(std::net::Shutdown::Write))
            }
        }
    };
}

mod accept;
mod addr;
mod stream_io;
#[allow(unsafe_code)] // every libc call of this crate; contract in sys/mod.rs
mod sys;
mod tcp;
mod udp;
pub mod unix;

pub use addr::{__private, ToSocketAddrs, lookup_host};
pub use tcp::{
    Incoming, OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, TcpListener, TcpSocket,
    TcpStream, WriteHalf,
};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};
