//! Halves of a [`TcpStream`], to read and write at the same time: borrowed
//! ([`TcpStream::split`]) or owned, movable into separate tasks
//! ([`TcpStream::into_split`]).
//!
//! The reactor keeps one waiter per direction, so one reader and one writer never
//! steal each other's wakeups; that is exactly what a pair of halves is.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;

use super::TcpStream;

/// The reading half of a borrowed [`TcpStream::split`].
#[derive(Debug)]
pub struct ReadHalf<'a>(&'a TcpStream);

/// The writing half of a borrowed [`TcpStream::split`].
#[derive(Debug)]
pub struct WriteHalf<'a>(&'a TcpStream);

/// The reading half of [`TcpStream::into_split`]; may move into its own task.
#[derive(Debug)]
pub struct OwnedReadHalf {
    /// Shared with the write half.
    inner: Rc<TcpStream>,
}

/// The writing half of [`TcpStream::into_split`]; may move into its own task.
/// Dropping it shuts down the write side, so the peer sees EOF.
#[derive(Debug)]
pub struct OwnedWriteHalf {
    /// Shared with the read half.
    inner: Rc<TcpStream>,
    /// Whether drop shuts down the write side (not after `reunite` or `forget`).
    shutdown_on_drop: bool,
}

pub(super) fn split_owned(stream: TcpStream) -> (OwnedReadHalf, OwnedWriteHalf) {
    let inner = Rc::new(stream);
    (
        OwnedReadHalf {
            inner: inner.clone(),
        },
        OwnedWriteHalf {
            inner,
            shutdown_on_drop: true,
        },
    )
}

impl<'a> ReadHalf<'a> {
    pub(super) fn new(stream: &'a TcpStream) -> Self {
        ReadHalf(stream)
    }

    /// Reads into `buf`, as [`TcpStream::read`].
    ///
    /// # Errors
    ///
    /// As [`TcpStream::read`].
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.0.poll_read_priv(cx, buf)).await
    }
}

impl<'a> WriteHalf<'a> {
    pub(super) fn new(stream: &'a TcpStream) -> Self {
        WriteHalf(stream)
    }

    /// Writes some of `buf`, as [`TcpStream::write`].
    ///
    /// # Errors
    ///
    /// As [`TcpStream::write`].
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.0.poll_write_priv(cx, buf)).await
    }

    /// Writes all of `buf`, as [`TcpStream::write_all`].
    ///
    /// # Errors
    ///
    /// As [`TcpStream::write_all`].
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all_priv(buf).await
    }
}

impl OwnedReadHalf {
    /// Reads into `buf`, as [`TcpStream::read`].
    ///
    /// # Errors
    ///
    /// As [`TcpStream::read`].
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.inner.poll_read_priv(cx, buf)).await
    }

    /// Peeks into `buf`, as [`TcpStream::peek`].
    ///
    /// # Errors
    ///
    /// As [`TcpStream::peek`].
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.peek(buf).await
    }

    /// The remote address.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::peer_addr`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Puts the halves back together.
    ///
    /// # Errors
    ///
    /// [`ReuniteError`], holding both halves, if they came from different streams.
    pub fn reunite(self, mut other: OwnedWriteHalf) -> Result<TcpStream, ReuniteError> {
        if !Rc::ptr_eq(&self.inner, &other.inner) {
            return Err(ReuniteError(self, other));
        }
        other.shutdown_on_drop = false;
        drop(other);
        Ok(Rc::try_unwrap(self.inner)
            .expect("a stream has exactly two halves, and the other was just dropped"))
    }
}

impl OwnedWriteHalf {
    /// Writes some of `buf`, as [`TcpStream::write`].
    ///
    /// # Errors
    ///
    /// As [`TcpStream::write`].
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.inner.poll_write_priv(cx, buf)).await
    }

    /// Writes all of `buf`, as [`TcpStream::write_all`].
    ///
    /// # Errors
    ///
    /// As [`TcpStream::write_all`].
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all_priv(buf).await
    }

    /// Drops the half without shutting down the write side.
    pub fn forget(mut self) {
        self.shutdown_on_drop = false;
    }

    /// The remote address.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::peer_addr`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            // Ignored: the peer may be gone already (ENOTCONN), and drop cannot report.
            let _ = self.inner.shutdown(Shutdown::Write);
        }
    }
}

/// The halves given to [`OwnedReadHalf::reunite`] came from different streams.
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl fmt::Debug for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReuniteError(..)")
    }
}

impl fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite halves that are not from the same stream")
    }
}

impl std::error::Error for ReuniteError {}

// Each half implements only its own direction's trait, like tokio's halves.
impl_async_io!(read ReadHalf<'_>, |s| s.0);
impl_async_io!(read OwnedReadHalf, |s| s.inner);
impl_async_io!(write WriteHalf<'_>, |s| s.0);
impl_async_io!(write OwnedWriteHalf, |s| s.inner);
