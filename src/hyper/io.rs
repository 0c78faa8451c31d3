//! [`HyperIo`]: hyper's `Read`/`Write` over `futures-io` streams, and back.

use std::cell::Cell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ::hyper::rt::{ReadBuf, ReadBufCursor};

pin_project_lite::pin_project! {
    /// An edgeloop stream seen by hyper, or a hyper stream seen by `futures-io`.
    ///
    /// - For `T: futures_io::AsyncRead` / `AsyncWrite` (every edgeloop stream:
    ///   [`TcpStream`](crate::net::TcpStream), [`UnixStream`](crate::net::UnixStream),
    ///   their halves, [`AsyncFd`](crate::io::AsyncFd)), `HyperIo<T>` implements
    ///   [`hyper::rt::Read`] and [`hyper::rt::Write`], to hand to `serve_connection`
    ///   or `handshake`.
    /// - For `T: hyper::rt::Read` / `Write`, it implements `futures-io`'s
    ///   `AsyncRead` and `AsyncWrite`, so `futures-util`'s helpers work on a hyper
    ///   stream.
    ///
    /// Writes are not vectored (edgeloop streams send one buffer per call), so hyper
    /// gathers a response's head and a small body into one buffer and one `send`.
    /// `poll_shutdown` is `futures-io`'s `poll_close`: a TCP stream shuts down its
    /// write side.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop::hyper::HyperIo;
    /// use edgeloop::net::UnixStream;
    ///
    /// edgeloop::block_on(async {
    ///     let (a, _b) = UnixStream::pair()?;
    ///     let io = HyperIo::new(a);
    ///     let _a: &UnixStream = io.inner();
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[derive(Debug)]
    pub struct HyperIo<T> {
        #[pin]
        inner: T,
    }
}

impl<T> HyperIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        HyperIo { inner }
    }

    /// The wrapped stream.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The wrapped stream, pinned.
    pub fn inner_pin_mut(self: Pin<&mut Self>) -> Pin<&mut T> {
        self.project().inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

/// Size of the per-thread buffer that reads go through (see the module docs).
const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    /// The read scratch buffer, taken while a read uses it (a nested `HyperIo` read
    /// finds it gone and uses a buffer of its own).
    static SCRATCH: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

impl<T: futures_io::AsyncRead> ::hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let want = buf.remaining().min(SCRATCH_LEN);
        let mut scratch = SCRATCH
            .take()
            .unwrap_or_else(|| vec![0u8; SCRATCH_LEN].into_boxed_slice());
        let polled = self.project().inner.poll_read(cx, &mut scratch[..want]);
        if let Poll::Ready(Ok(n)) = polled {
            let read = scratch.get(..n).filter(|_| n <= want).unwrap_or_else(|| {
                panic!("a `futures_io::AsyncRead` said it read {n} bytes into a buffer of {want}")
            });
            buf.put_slice(read);
        }
        SCRATCH.set(Some(scratch));
        polled.map_ok(|_| ())
    }
}

impl<T: futures_io::AsyncWrite> ::hyper::rt::Write for HyperIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_close(cx)
    }
}

impl<T: ::hyper::rt::Read> futures_io::AsyncRead for HyperIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut read = ReadBuf::new(buf);
        ready!(self.project().inner.poll_read(cx, read.unfilled()))?;
        Poll::Ready(Ok(read.filled().len()))
    }
}

impl<T: ::hyper::rt::Write> futures_io::AsyncWrite for HyperIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
