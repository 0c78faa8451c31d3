//! [hyper](https://docs.rs/hyper/1) 1.x on edgeloop (feature `hyper`): the three
//! pieces of glue hyper asks its runtime for.
//!
//! | hyper wants | edgeloop gives | notes |
//! | --- | --- | --- |
//! | [`hyper::rt::Read`] + [`hyper::rt::Write`] | [`HyperIo<T>`](HyperIo) | wraps any `futures-io` stream: [`TcpStream`](crate::net::TcpStream), [`UnixStream`](crate::net::UnixStream), their halves, [`AsyncFd`](crate::io::AsyncFd); and the other way round, `futures-io` over a hyper stream |
//! | [`hyper::rt::Timer`] | [`HyperTimer`] | edgeloop's timing wheel, so `header_read_timeout` and keep-alive timers work; its clock is [`time::now`](crate::time::now) (a paused clock included) |
//! | [`hyper::rt::Executor`] | [`HyperExecutor`] | [`spawn`](crate::spawn)s on the current runtime; any future, `Send` or not |
//!
//! hyper's HTTP/1 connections need no executor: a server spawns one task per
//! connection that awaits `serve_connection`, and a client spawns the connection
//! future that `handshake` returns. [`HyperExecutor`] is for the APIs that spawn on
//! their own (HTTP/2, if you enable it in hyper, and hyper-util's pooled client).
//!
//! hyper's protocol upgrades (`with_upgrades`, `hyper::upgrade::on`) are not
//! available on edgeloop streams: hyper keeps an upgraded connection as a
//! `Box<dyn ... + Send>`, and edgeloop's I/O objects are `!Send` (they belong to the
//! thread of their runtime).
//!
//! # Why one executor, not a `Send` one and a local one
//!
//! edgeloop's [`spawn`](crate::spawn) needs no `Send`: tasks never leave the thread
//! that runs [`block_on`](crate::block_on). So one executor takes every future,
//! including hyper's `!Send` ones (a service holding an `Rc`). `HyperExecutor` itself
//! is a `Send + Sync` unit type, as hyper's builders ask, and like `spawn` it panics
//! when called outside `block_on`.
//!
//! # Why [`HyperSleep`] is `Send + Sync`, and how
//!
//! hyper boxes its timers as `Pin<Box<dyn hyper::rt::Sleep>>`, and that trait requires
//! `Send + Sync`. edgeloop's [`Sleep`](crate::time::Sleep) is neither: it holds an
//! `Rc` to its runtime's timer wheel. Rather than assert `Send` with `unsafe`,
//! `HyperSleep` holds only its deadline and, once polled, a ticket (thread number,
//! slot) to an edgeloop `Sleep` kept in a table local to the thread that polled it.
//! Everything else happens on that thread: polling and [`reset`](HyperSleep::reset)
//! on another thread panic with a message that says so; a `HyperSleep` never polled
//! may go anywhere. Dropping a polled one frees its slot (and cancels the timer) on
//! its own thread; dropped on another thread, it cannot reach the table, so its slot
//! stays taken until that thread exits (hyper never does this here: a connection
//! that holds an edgeloop stream is `!Send` and stays on its thread). No `unsafe`
//! anywhere.
//!
//! # Reads without uninitialised memory
//!
//! hyper hands [`Read::poll_read`](hyper::rt::Read::poll_read) a cursor into memory
//! that may be uninitialised, while a `futures-io` stream reads into `&mut [u8]`. Rather than
//! zero the cursor's space on every read (hyper offers at least 8 KiB each time),
//! `HyperIo` reads into a per-thread 64 KiB scratch buffer, zeroed once, and copies
//! only the bytes that arrived with
//! [`put_slice`](hyper::rt::ReadBufCursor::put_slice): for requests of a few hundred
//! bytes that copy costs less than the zeroing would.
//!
//! # Examples
//!
//! A server and a client on one runtime, talking HTTP/1.1 over loopback (hyper with
//! its `http1`, `server` and `client` features, `http-body-util` and `bytes`):
//!
//! ```
//! use std::convert::Infallible;
//! use std::io;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use edgeloop::hyper::{HyperIo, HyperTimer};
//! use edgeloop::net::{TcpListener, TcpStream};
//! use http_body_util::{BodyExt, Empty, Full};
//! use hyper::{Request, Response, server::conn::http1, service::service_fn};
//!
//! edgeloop::block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0").await?;
//!     let addr = listener.local_addr()?;
//!     let server = edgeloop::spawn(async move {
//!         let (stream, _peer) = listener.accept().await?;
//!         let hello = service_fn(|_request| async {
//!             Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"Hello, world!"))))
//!         });
//!         http1::Builder::new()
//!             .timer(HyperTimer)
//!             .header_read_timeout(Duration::from_secs(5))
//!             .serve_connection(HyperIo::new(stream), hello)
//!             .await
//!             .map_err(io::Error::other)
//!     });
//!
//!     let stream = TcpStream::connect(addr).await?;
//!     let (mut sender, connection) = hyper::client::conn::http1::handshake(HyperIo::new(stream))
//!         .await
//!         .map_err(io::Error::other)?;
//!     let connection = edgeloop::spawn(connection);
//!     let request = Request::get("/")
//!         .header("host", addr.to_string())
//!         .body(Empty::<Bytes>::new())
//!         .expect("a valid request");
//!     let response = sender.send_request(request).await.map_err(io::Error::other)?;
//!     assert_eq!(response.status(), 200);
//!     let body = response.into_body().collect().await.map_err(io::Error::other)?;
//!     assert_eq!(body.to_bytes(), "Hello, world!");
//!
//!     // Closing the client's side ends both connections cleanly.
//!     drop(sender);
//!     connection.await.expect("no panic").map_err(io::Error::other)?;
//!     server.await.expect("no panic")
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod executor;
mod io;
mod timer;

pub use executor::HyperExecutor;
pub use io::HyperIo;
pub use timer::{HyperSleep, HyperTimer};
