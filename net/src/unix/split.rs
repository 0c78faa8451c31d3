//! Halves of a [`UnixStream`], to read and write at the same time: borrowed
//! ([`UnixStream::split`]) or owned, movable into separate tasks
//! ([`UnixStream::into_split`]).
//!
//! The reactor keeps one waiter per direction, so one reader and one writer never
//! steal each other's wakeups; that is exactly what a pair of halves is.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::rc::Rc;

use super::{SocketAddr, UnixStream};

/// The reading half of a borrowed [`UnixStream::split`].
///
/// # Examples
///
/// ```
/// use edgeloop_net::UnixStream;
///
/// edgeloop_runtime::block_on(async {
///     let (mut a, mut b) = UnixStream::pair()?;
///     let (mut reader, mut writer) = UnixStream::split(&mut a);
///     b.write_all(b"in").await?;
///     writer.write_all(b"out").await?;
///     let mut buf = [0u8; 8];
///     let n = reader.read(&mut buf).await?;
///     assert_eq!(&buf[..n], b"in");
///     let n = b.read(&mut buf).await?;
///     assert_eq!(&buf[..n], b"out");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ReadHalf<'a>(&'a UnixStream);

/// The writing half of a borrowed [`UnixStream::split`]. Dropping it does nothing
/// to the stream.
///
/// # Examples
///
/// ```
/// use edgeloop_net::UnixStream;
///
/// edgeloop_runtime::block_on(async {
///     let (mut a, mut b) = UnixStream::pair()?;
///     let (_reader, mut writer) = UnixStream::split(&mut a);
///     writer.write_all(b"out").await?;
///     let mut buf = [0u8; 8];
///     let n = b.read(&mut buf).await?;
///     assert_eq!(&buf[..n], b"out");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct WriteHalf<'a>(&'a UnixStream);

/// The reading half of [`UnixStream::into_split`]; may move into its own task.
///
/// # Examples
///
/// ```
/// use edgeloop_net::UnixStream;
///
/// edgeloop_runtime::block_on(async {
///     let (a, mut b) = UnixStream::pair()?;
///     let (mut reader, writer) = a.into_split();
///     let task = edgeloop_runtime::spawn(async move {
///         let mut buf = [0u8; 8];
///         let n = reader.read(&mut buf).await?;
///         Ok::<_, std::io::Error>(buf[..n].to_vec())
///     });
///     b.write_all(b"to task").await?;
///     assert_eq!(task.await??, b"to task");
///     drop(writer);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct OwnedReadHalf {
    /// Shared with the write half.
    inner: Rc<UnixStream>,
}

/// The writing half of [`UnixStream::into_split`]; may move into its own task.
/// Dropping it shuts down the write side, so the peer reads EOF (unless it was
/// [`forget`](Self::forget)-ten or reunited).
///
/// # Examples
///
/// ```
/// use edgeloop_net::UnixStream;
///
/// edgeloop_runtime::block_on(async {
///     let (a, mut b) = UnixStream::pair()?;
///     let (_reader, mut writer) = a.into_split();
///     writer.write_all(b"last words").await?;
///     drop(writer); // shuts down writing
///     let mut got = Vec::new();
///     let mut buf = [0u8; 64];
///     loop {
///         let n = b.read(&mut buf).await?;
///         if n == 0 {
///             break; // EOF
///         }
///         got.extend_from_slice(&buf[..n]);
///     }
///     assert_eq!(got, b"last words");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct OwnedWriteHalf {
    /// Shared with the read half.
    inner: Rc<UnixStream>,
    /// Whether drop shuts down the write side (not after `reunite` or `forget`).
    shutdown_on_drop: bool,
}

pub(super) fn split_owned(stream: UnixStream) -> (OwnedReadHalf, OwnedWriteHalf) {
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
    pub(super) fn new(stream: &'a UnixStream) -> Self {
        ReadHalf(stream)
    }

    /// Reads into `buf`, as [`UnixStream::read`].
    ///
    /// # Errors
    ///
    /// As [`UnixStream::read`].
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.0.poll_read_priv(cx, buf)).await
    }

    /// Peeks into `buf`, as [`UnixStream::peek`].
    ///
    /// # Errors
    ///
    /// As [`UnixStream::peek`].
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.peek(buf).await
    }
}

impl<'a> WriteHalf<'a> {
    pub(super) fn new(stream: &'a UnixStream) -> Self {
        WriteHalf(stream)
    }

    /// Writes some of `buf`, as [`UnixStream::write`].
    ///
    /// # Errors
    ///
    /// As [`UnixStream::write`].
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.0.poll_write_priv(cx, buf)).await
    }

    /// Writes all of `buf`, as [`UnixStream::write_all`].
    ///
    /// # Errors
    ///
    /// As [`UnixStream::write_all`].
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all_priv(buf).await
    }
}

impl OwnedReadHalf {
    /// Reads into `buf`, as [`UnixStream::read`].
    ///
    /// # Errors
    ///
    /// As [`UnixStream::read`].
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.inner.poll_read_priv(cx, buf)).await
    }

    /// Peeks into `buf`, as [`UnixStream::peek`].
    ///
    /// # Errors
    ///
    /// As [`UnixStream::peek`].
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.peek(buf).await
    }

    /// The address of the other end, as [`UnixStream::peer_addr`].
    ///
    /// # Errors
    ///
    /// As [`UnixStream::peer_addr`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The address of this end, as [`UnixStream::local_addr`].
    ///
    /// # Errors
    ///
    /// As [`UnixStream::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Puts the halves back together; the write side stays open.
    ///
    /// # Errors
    ///
    /// [`ReuniteError`], holding both halves unchanged, if they came from different
    /// streams.
    pub fn reunite(self, mut other: OwnedWriteHalf) -> Result<UnixStream, ReuniteError> {
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
    /// Writes some of `buf`, as [`UnixStream::write`].
    ///
    /// # Errors
    ///
    /// As [`UnixStream::write`].
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.inner.poll_write_priv(cx, buf)).await
    }

    /// Writes all of `buf`, as [`UnixStream::write_all`].
    ///
    /// # Errors
    ///
    /// As [`UnixStream::write_all`].
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all_priv(buf).await
    }

    /// Drops the half without shutting down the write side.
    pub fn forget(mut self) {
        self.shutdown_on_drop = false;
    }

    /// The address of the other end, as [`UnixStream::peer_addr`].
    ///
    /// # Errors
    ///
    /// As [`UnixStream::peer_addr`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The address of this end, as [`UnixStream::local_addr`].
    ///
    /// # Errors
    ///
    /// As [`UnixStream::local_addr`].
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

/// The halves given to [`OwnedReadHalf::reunite`] came from different streams; both
/// are given back, unchanged, as `.0` (read) and `.1` (write).
///
/// # Examples
///
/// ```
/// use edgeloop_net::UnixStream;
///
/// edgeloop_runtime::block_on(async {
///     let (a, _peer_a) = UnixStream::pair()?;
///     let (b, _peer_b) = UnixStream::pair()?;
///     let (read_a, write_a) = a.into_split();
///     let (read_b, write_b) = b.into_split();
///     let error = read_a.reunite(write_b).unwrap_err();
///     let (read_a, write_b) = (error.0, error.1);
///     assert!(read_a.reunite(write_a).is_ok());
///     assert!(read_b.reunite(write_b).is_ok());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl fmt::Debug for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReuniteError(..)")
    }
}

impl fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite halves that are not from the same Unix stream")
    }
}

impl std::error::Error for ReuniteError {}

// Each half implements only its own direction's trait, like tokio's halves.
impl_async_io!(read ReadHalf<'_>, |s| s.0);
impl_async_io!(read OwnedReadHalf, |s| s.inner);
impl_async_io!(write WriteHalf<'_>, |s| s.0);
impl_async_io!(write OwnedWriteHalf, |s| s.inner);
