//! Unix signals as async values: [`ctrl_c`] and [`signal`], shaped like tokio's
//! `tokio::signal::ctrl_c` and `tokio::signal::unix::signal`.
//!
//! # Examples
//!
//! ```no_run
//! use edgeloop_runtime::signal::{SignalKind, ctrl_c, signal};
//!
//! edgeloop_runtime::block_on(async {
//!     let mut hangups = signal(SignalKind::hangup())?;
//!     edgeloop_runtime::spawn(async move {
//!         while hangups.recv().await.is_some() {
//!             println!("SIGHUP: reloading");
//!         }
//!     });
//!     ctrl_c().await?;
//!     println!("Ctrl-C: exiting");
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # How a delivery reaches a task
//!
//! ```text
//! kernel ──> handler (any thread)          count[signum] += 1; write 1 byte to the pipe
//!               │
//!               ▼ self-pipe (one per process, O_NONBLOCK | O_CLOEXEC)
//! driver task of each runtime               readable: drain it, wake every listener
//!               │
//!               ▼
//! Signal::poll_recv                          count > seen? then seen = count: Ready
//! ```
//!
//! - **Handler.** The first [`signal`] for a number installs one process-wide handler
//!   with `sigaction` (`SA_RESTART`, empty mask). It is async-signal-safe: it bumps the
//!   signal's `AtomicU64` delivery counter, writes one byte to the self-pipe (a full
//!   pipe is fine: a wake-up is pending already) and restores `errno`; no allocation,
//!   no lock. Installation is serialised by a per-signal `Mutex`.
//! - **Driver.** Each runtime with signal listeners runs one driver task, which owns
//!   an [`AsyncFd`](crate::AsyncFd) over its own duplicate of the pipe's read end.
//!   When the pipe is readable it drains it and wakes every listener in the process,
//!   of every signal and every runtime: the byte does not say which signal came, and
//!   signals are rare, so a listener with nothing new pays one poll. Because
//!   whichever runtime drains the pipe wakes everyone, no listener misses a delivery
//!   because another runtime's driver took the byte. The driver ends with its runtime;
//!   the next runtime on the thread starts its own.
//! - **Listener.** A [`Signal`] remembers the count it has consumed (`seen`, starting
//!   at the count when [`signal`] returned). Polling compares it with the counter; if
//!   nothing is new, it stores the task's waker and checks the counter again, so a
//!   delivery dispatched between the check and the store is not lost. Several
//!   `Signal`s for one signal share the counter and each keep their own `seen`, so each
//!   sees every delivery. Deliveries between two polls are coalesced into one (so
//!   does the kernel for a standard signal that is already pending; tokio behaves the
//!   same).
//!
//! # Why a handler and a self-pipe, not `signalfd`
//!
//! `signalfd` only receives a signal that is *blocked* in every thread of the
//! process; a thread that has it unblocked (a blocking-pool thread, a thread created
//! by some library) takes the signal with its default action instead, killing the
//! process on `SIGTERM`. And the blocked mask is inherited across `fork` and `exec`,
//! so every child process would start with those signals blocked and ignore, say,
//! `SIGTERM` or `SIGINT` without knowing why. A handler works whatever threads exist,
//! and `exec` resets handled signals to their default action in the child.
//!
//! # Caveats
//!
//! - **A handler is never uninstalled** (tokio does the same): once a signal has been
//!   listened for, its default action no longer happens for the life of the process,
//!   even after every [`Signal`] is dropped. After the first `signal(terminate())`,
//!   `SIGTERM` no longer terminates the process; after [`ctrl_c`], neither does
//!   Ctrl-C. Exit explicitly when that is what you want. Child processes are not
//!   affected.
//! - The handler replaces whatever handler was installed before for that signal (by
//!   the program or a library); it does not call it.
//! - `SIGKILL`, `SIGSTOP`, `SIGILL`, `SIGFPE`, `SIGSEGV` and the numbers the C library
//!   keeps for its threads are refused with `InvalidInput`.
//! - The driver is started by the first [`signal`] in a runtime and runs until that
//!   runtime shuts down, even if every `Signal` is dropped earlier: it costs one fd
//!   and one idle task.
//!
//! Who calls what: `stream.rs` is the public API; `registry.rs` holds the
//! process-wide state (pipe, installed handlers, listeners); `driver.rs` the
//! per-runtime task; `crate::sys::signal` the handler and the libc calls.

mod driver;
mod kind;
mod registry;
mod stream;
#[cfg(test)]
mod tests;

pub use kind::SignalKind;
pub use stream::{Signal, ctrl_c, signal};
