//! TCP: [`TcpListener`], [`TcpStream`] and the halves of a split stream.

/// Implements `futures_io::AsyncRead` (`read`), `AsyncWrite` (`write`) or both
/// (`io`) for a type that reaches a `&TcpStream` as `$stream`, written in terms of
/// `$s: &Self`. Nothing is buffered in user space, so flush does nothing; close shuts
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

mod listener;
mod socket;
mod split;
mod stream;

pub use listener::{Incoming, TcpListener};
pub use socket::TcpSocket;
pub use split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};
pub use stream::TcpStream;
