//! [`UnixListener`]: accepts connections on a Unix-domain stream socket.

use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::task::{Context, Poll, ready};

use edgeloop_runtime::{AsyncFd, Direction};

use super::addr::explain_bind_error;
use super::{SocketAddr, UnixStream};
use crate::accept::{AcceptPause, poll_skipping_per_connection_errors};
use crate::sys::unix::UnixAddr;
use crate::sys::{self, retry};

/// Backlog of connections not yet accepted, passed to `listen` (the kernel caps it
/// at `net.core.somaxconn`). Past it, a non-blocking connect gets `EAGAIN`.
const BACKLOG: i32 = 1024;

/// A Unix-domain stream socket server, listening for connections.
///
/// Created with [`bind`](UnixListener::bind), which creates the socket file (or
/// takes the abstract name; see the [module docs](super)). **Dropping the listener
/// does not remove its socket file**: remove it yourself once done, or before
/// binding again (binding over an existing file fails with `AddrInUse`).
///
/// # Examples
///
/// ```
/// use edgeloop_net::{UnixListener, UnixStream};
///
/// edgeloop_runtime::block_on(async {
///     let path = std::env::temp_dir().join(format!("edgeloop-doc-{}-listener.sock", std::process::id()));
/// #   let _ = std::fs::remove_file(&path);
///     let listener = UnixListener::bind(&path)?;
///     assert_eq!(listener.local_addr()?.as_pathname(), Some(path.as_path()));
///     let client = UnixStream::connect(&path).await?;
///     let (server_side, peer) = listener.accept().await?;
///     assert!(peer.is_unnamed()); // the client never bound an address
///     assert_eq!(server_side.peer_cred()?.pid(), client.peer_cred()?.pid());
///     drop(listener);
///     assert!(path.exists(), "the socket file outlives the listener");
///     std::fs::remove_file(&path)?;
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UnixListener {
    /// The listening socket, registered with the runtime.
    io: AsyncFd<OwnedFd>,
}

impl UnixListener {
    /// Creates a socket bound to `path` and listens on it, with a backlog of 1024.
    /// A path whose first byte is NUL (`"\0name"`) names an abstract address.
    ///
    /// This never removes an existing file at `path`: if a previous server left its
    /// socket file behind, remove it first (after making sure nothing listens on
    /// it).
    ///
    /// # Errors
    ///
    /// `AddrInUse` if `path` exists (a socket file, perhaps stale, or any other
    /// file) or the abstract name is taken; its message names the address, and the
    /// existing file is left as it was. `NotFound` if the directory does not exist,
    /// `PermissionDenied` if it is not writable, `InvalidInput` for a path that
    /// cannot be a socket address (empty, 108 bytes or longer, holding a NUL).
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let addr = SocketAddr::from_path(path.as_ref())?;
        let raw = UnixAddr::new(&addr)?;
        // Registered before binding, so that calling this outside a runtime panics
        // before a socket file is created.
        let listener = UnixListener::from_fd(sys::socket(libc::AF_UNIX, libc::SOCK_STREAM)?)?;
        sys::unix::bind(listener.io.as_fd(), &raw).map_err(|e| explain_bind_error(e, &addr))?;
        if let Err(e) = sys::listen(listener.io.as_fd(), BACKLOG) {
            // The file is ours (bind just made it): do not leave it behind.
            if let Some(created) = addr.as_pathname() {
                let _ = std::fs::remove_file(created);
            }
            return Err(e);
        }
        Ok(listener)
    }

    fn from_fd(fd: OwnedFd) -> io::Result<UnixListener> {
        Ok(UnixListener {
            io: AsyncFd::new(fd)?,
        })
    }

    /// Waits for a connection; returns the new stream and the client's address
    /// (unnamed unless the client bound one before connecting).
    ///
    /// Cancel-safe: if the future is dropped before it completes, no connection was
    /// taken from the queue. Several tasks may await `accept` on one listener at once.
    ///
    /// At the fd limit it pauses instead of failing or spinning, exactly as
    /// [`TcpListener::accept`](crate::TcpListener::accept) does (until the runtime
    /// closes an fd, or a back-off of 1 ms doubling up to 100 ms passes), and it
    /// skips the errors that concern one pending connection.
    ///
    /// # Errors
    ///
    /// Any other error of `accept4`, or of registering the new socket.
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let mut pause = AcceptPause::new();
        poll_fn(|cx| pause.poll(cx, |cx| self.poll_accept(cx))).await
    }

    /// Polls for a connection. On `Pending`, the task is woken when one arrives.
    ///
    /// The low-level path: unlike [`accept`](Self::accept) it does not pause at the
    /// fd limit.
    ///
    /// # Errors
    ///
    /// What `accept4` returns other than per-connection errors (skipped), e.g.
    /// `EMFILE` at
    /// the fd limit.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(UnixStream, SocketAddr)>> {
        let (fd, peer) = ready!(poll_skipping_per_connection_errors(cx, |cx| {
            self.io.poll_io(Direction::Read, cx, |fd| {
                retry(|| sys::unix::accept4(fd.as_fd()))
            })
        }))?;
        Poll::Ready(UnixStream::from_fd(fd).map(|s| (s, peer)))
    }

    /// The address this listener is bound to: the path as given to
    /// [`bind`](Self::bind) (relative if that was), or the abstract name.
    ///
    /// # Errors
    ///
    /// What `getsockname` returns.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sys::unix::getsockname(self.io.as_fd())
    }

    /// The socket's pending error (`SO_ERROR`), cleared by reading it.
    ///
    /// # Errors
    ///
    /// What `getsockopt` returns.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let error = sys::getsockopt_int(self.io.as_fd(), libc::SOL_SOCKET, libc::SO_ERROR)?;
        Ok((error != 0).then(|| io::Error::from_raw_os_error(error)))
    }

    /// Wraps a listener from the standard library, making it non-blocking.
    ///
    /// # Errors
    ///
    /// If the socket cannot be made non-blocking or registered.
    ///
    /// # Panics
    ///
    /// If called outside `block_on`.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        Self::from_fd(OwnedFd::from(listener))
    }

    /// Deregisters the listener and returns it as a standard-library listener (still
    /// non-blocking).
    ///
    /// # Errors
    ///
    /// None today; kept fallible like tokio's.
    pub fn into_std(self) -> io::Result<std::os::unix::net::UnixListener> {
        Ok(std::os::unix::net::UnixListener::from(self.io.into_inner()))
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}
