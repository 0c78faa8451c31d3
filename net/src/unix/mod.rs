//! Unix-domain sockets (unix(7)): [`UnixListener`], [`UnixStream`] and
//! [`UnixDatagram`], with the same shapes as tokio's `tokio::net::unix`.
//!
//! Besides the three socket types (also re-exported at the crate root), this module
//! holds the [`SocketAddr`] they report, the peer credentials [`UCred`], and the
//! halves of a split stream with [`ReuniteError`].
//!
//! # Addresses
//!
//! Every function that takes an address takes a path (`impl AsRef<Path>`):
//!
//! - a **file path** such as `/run/app.sock`. Binding creates a socket file there;
//!   the path must not exist yet (`AddrInUse` otherwise, with the path in the
//!   message). **Nothing here ever removes a socket file**, not even when the
//!   listener is dropped: the caller removes it, typically after dropping the
//!   socket, and removes a stale one left by an earlier run before binding.
//!   Paths must be shorter than 108 bytes.
//! - an **abstract name** (Linux only): a path whose first byte is NUL, such as
//!   `"\0app"`, names the abstract address `app` (what std's
//!   `SocketAddr::from_abstract_name(b"app")` names). No file is created, and the
//!   name is freed when the last socket bound to it closes. [`SocketAddr`] shows it
//!   as `@app`.
//!
//! Sockets that were never bound have an unnamed address
//! ([`SocketAddr::is_unnamed`]): stream clients, both ends of a `pair`, and
//! [`UnixDatagram::unbound`].
//!
//! Every socket is created `SOCK_NONBLOCK | SOCK_CLOEXEC` (by `socket`,
//! `socketpair` or `accept4`) and registered with the runtime's epoll; the types
//! are `!Send`, tied to the runtime that created them:
//!
//! ```compile_fail
//! fn assert_send<T: Send>() {}
//! assert_send::<edgeloop_net::UnixStream>();
//! ```
//!
//! ```compile_fail
//! fn assert_send<T: Send>() {}
//! assert_send::<edgeloop_net::UnixDatagram>();
//! ```
//!
//! # Examples
//!
//! ```
//! use edgeloop_net::{UnixListener, UnixStream};
//!
//! edgeloop_runtime::block_on(async {
//!     let path = std::env::temp_dir().join(format!("edgeloop-doc-{}-mod.sock", std::process::id()));
//! #   let _ = std::fs::remove_file(&path);
//!     let listener = UnixListener::bind(&path)?;
//!     let server = edgeloop_runtime::spawn(async move {
//!         let (mut stream, _peer) = listener.accept().await?;
//!         let mut buf = [0u8; 64];
//!         let n = stream.read(&mut buf).await?;
//!         stream.write_all(&buf[..n]).await
//!     });
//!     let mut client = UnixStream::connect(&path).await?;
//!     client.write_all(b"echo me").await?;
//!     let mut buf = [0u8; 64];
//!     let n = client.read(&mut buf).await?;
//!     assert_eq!(&buf[..n], b"echo me");
//!     server.await??;
//!     std::fs::remove_file(&path)?; // the listener left its socket file behind
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod addr;
mod datagram;
mod listener;
mod split;
mod stream;
mod ucred;

pub use addr::SocketAddr;
pub use datagram::UnixDatagram;
pub use listener::UnixListener;
pub use split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};
pub use stream::UnixStream;
pub use ucred::{UCred, gid_t, pid_t, uid_t};
