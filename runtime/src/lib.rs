//! The core of edgeloop: a single-threaded executor, an `EPOLLET|EPOLLONESHOT` epoll
//! reactor with a public readiness API, and timers.
//!
//! - [`block_on`] runs an async `main` and the event loop on the calling thread;
//!   [`spawn`] adds tasks (no `Send` needed); [`JoinHandle`] awaits their results.
//! - [`AsyncFd`] is the readiness API that sockets (the `edgeloop-net` crate) and
//!   users build on: register an fd, poll a [`Direction`], clear it on `EAGAIN`.
//! - [`time::sleep`] waits without blocking the thread.
//!
//! # Examples
//!
//! ```
//! let out = edgeloop_runtime::block_on(async {
//!     let a = edgeloop_runtime::spawn(async { 1 });
//!     let b = edgeloop_runtime::spawn(async { 2 });
//!     a.await.unwrap() + b.await.unwrap()
//! });
//! assert_eq!(out, 3);
//! ```
#![deny(
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    missing_docs,
    missing_debug_implementations
)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
#![doc(test(attr(deny(warnings))))]

mod blocking;
mod context;
mod coop;
mod executor;
mod reactor;
mod runtime;
pub mod signal;
pub mod task;
// `unsafe` is allowed in two places only: `sys` (every libc call of the runtime;
// contract in sys/mod.rs) and `executor/task.rs` (the task block and its waker,
// counted by hand; see runtime/UNSAFE.md).
#[allow(unsafe_code)]
mod sys;
#[cfg(test)]
mod test_support;
pub mod time;
mod yield_now;

pub use blocking::spawn_blocking;
pub use executor::{JoinError, JoinHandle, SlowPoll, UnhandledPanic};
#[cfg(test)]
pub(crate) use reactor::Registration;
pub use reactor::{AsyncFd, Direction, wait_for_fd_release};
pub use runtime::{Builder, Handle, RemoteJoinHandle, Runtime, RuntimeMetrics, block_on, spawn};
pub use yield_now::{YieldNow, yield_now};
