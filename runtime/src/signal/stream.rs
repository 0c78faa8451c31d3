//! [`Signal`], the stream of deliveries of one signal, and the functions that make
//! one: [`signal`] and [`ctrl_c`].

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::driver;
use super::kind::{self, SignalKind};
use super::registry::{self, Listener};
use crate::context;

/// Listens for deliveries of one signal.
///
/// Made by [`signal`]. Each delivery after `signal` returned completes a
/// [`recv`](Self::recv); deliveries that arrive between two `recv`s are *coalesced*
/// into one, as in tokio: the operating system itself merges a standard signal that
/// arrives while another copy is pending, so no count of deliveries is reliable.
/// Several `Signal`s for the same signal each see every delivery.
///
/// Also a [`Stream`] of `()`, one item per (coalesced) delivery, which never ends.
///
/// Dropping a `Signal` does not restore the signal's default action: see the
/// [module docs](super).
///
/// # Examples
///
/// Reload a configuration on every `SIGHUP`:
///
/// ```no_run
/// use edgeloop_runtime::signal::{SignalKind, signal};
///
/// edgeloop_runtime::block_on(async {
///     let mut hangups = signal(SignalKind::hangup())?;
///     while hangups.recv().await.is_some() {
///         println!("reloading");
///     }
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Signal {
    /// The signal listened for.
    kind: SignalKind,
    /// Where the runtime's driver finds this `Signal`'s waker.
    listener: Arc<Listener>,
    /// The signal's delivery count already reported by `poll_recv` (or, before the
    /// first report, the count when `signal` was called): a higher count means news.
    seen: u64,
}

/// Starts listening for `kind`.
///
/// The first call for a signal number installs a process-wide handler for it, which
/// stays for the life of the process: from then on the signal's default action (for
/// `SIGTERM`, terminating) no longer happens. The first call in a runtime also starts
/// that runtime's signal driver.
///
/// Deliveries that happen after this returns are seen by the returned `Signal`;
/// earlier ones are not.
///
/// # Errors
///
/// - `InvalidInput`, naming the signal, for `SIGKILL`, `SIGSTOP`, `SIGILL`, `SIGFPE`,
///   `SIGSEGV`, the numbers the C library keeps for itself, and numbers out of range.
/// - What `pipe2`, `sigaction` or registering the pipe with epoll return (e.g.
///   `EMFILE`).
///
/// # Panics
///
/// If called outside [`block_on`](crate::block_on).
///
/// # Examples
///
/// ```no_run
/// use edgeloop_runtime::signal::{SignalKind, signal};
///
/// edgeloop_runtime::block_on(async {
///     let mut terminate = signal(SignalKind::terminate())?;
///     terminate.recv().await;
///     println!("SIGTERM: shutting down");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Refused signals:
///
/// ```
/// use edgeloop_runtime::signal::{SignalKind, signal};
///
/// edgeloop_runtime::block_on(async {
///     let err = signal(SignalKind::from_raw(libc::SIGKILL)).unwrap_err();
///     assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// });
/// ```
pub fn signal(kind: SignalKind) -> io::Result<Signal> {
    if context::runtime_id().is_none() {
        panic!(
            "`signal` called outside `block_on`; call it from inside the future passed to \
             `edgeloop::block_on`"
        );
    }
    kind::check(kind)?;
    let signum = kind.as_raw_value();
    // The driver first: if it cannot start (say at the fd limit), no handler is
    // installed, and the signal keeps its default action.
    driver::ensure_driver()?;
    let listener = registry::register(signum)?;
    // Read after `register`, so the handler is in place: every delivery from here on
    // raises the count above `seen`.
    let seen = registry::deliveries(signum);
    Ok(Signal {
        kind,
        listener,
        seen,
    })
}

/// Completes on the next `SIGINT` (Ctrl-C in a terminal).
///
/// Like any `async fn` it does nothing until first polled: the handler is installed
/// then, and `SIGINT`s delivered before that are not seen. From that first poll on,
/// `SIGINT` no longer terminates the process, for the life of the process (see the
/// [module docs](super)); to stop on a second Ctrl-C, exit explicitly.
///
/// # Errors
///
/// As [`signal`].
///
/// # Panics
///
/// If first polled outside [`block_on`](crate::block_on).
///
/// # Examples
///
/// ```no_run
/// edgeloop_runtime::block_on(async {
///     edgeloop_runtime::signal::ctrl_c().await?;
///     println!("interrupted, exiting");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn ctrl_c() -> io::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    // `recv` never returns `None`; either way the wait is over.
    let _: Option<()> = interrupt.recv().await;
    Ok(())
}

/// Takes the news in the delivery count `deliveries`: true if it moved past `seen`
/// (any number of deliveries counts as one), and `seen` then catches up.
pub(crate) fn consume(seen: &mut u64, deliveries: u64) -> bool {
    if deliveries > *seen {
        *seen = deliveries;
        true
    } else {
        false
    }
}

impl Signal {
    /// The signal this listens for.
    pub fn kind(&self) -> SignalKind {
        self.kind
    }

    /// Waits for the next delivery: completes at once if one arrived since the last
    /// `recv` (or since [`signal`], for the first), coalescing any number of them
    /// into one.
    ///
    /// Returns `Some(())`; never `None` (the `Option` matches tokio's API).
    ///
    /// Cancel safe: dropping the future loses nothing, the next call sees the
    /// delivery.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use edgeloop_runtime::signal::{SignalKind, signal};
    ///
    /// edgeloop_runtime::block_on(async {
    ///     let mut usr1 = signal(SignalKind::user_defined1())?;
    ///     for n in 1..=3 {
    ///         usr1.recv().await;
    ///         println!("SIGUSR1 #{n}");
    ///     }
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn recv(&mut self) -> Option<()> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next delivery: `Ready(Some(()))` if one arrived since the last
    /// `Ready` (all of them reported as one), else `Pending`, and the task is woken
    /// by the next delivery. Never `Ready(None)`.
    ///
    /// Polled in a runtime without a signal driver (the `Signal` was moved to
    /// another thread's runtime, or outlived the one it was made in), it starts one
    /// there. Polled outside any runtime, it is woken only if some runtime in the
    /// process has a driver.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::future::poll_fn;
    /// use edgeloop_runtime::signal::{SignalKind, signal};
    ///
    /// edgeloop_runtime::block_on(async {
    ///     let mut sig = signal(SignalKind::user_defined2())?;
    ///     poll_fn(|cx| sig.poll_recv(cx)).await;
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let signum = self.kind.as_raw_value();
        if consume(&mut self.seen, registry::deliveries(signum)) {
            return Poll::Ready(Some(()));
        }
        // Ignored: `poll_recv` cannot report an error; without a driver here the
        // task may still be woken by another runtime's, and the next poll retries.
        let _ = driver::ensure_driver();
        self.listener.set_waker(cx.waker());
        // Checked again: a delivery dispatched between the first check and storing
        // the waker found no waker to wake, and would otherwise be missed until the
        // next one.
        if consume(&mut self.seen, registry::deliveries(signum)) {
            return Poll::Ready(Some(()));
        }
        Poll::Pending
    }
}

impl Stream for Signal {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.get_mut().poll_recv(cx)
    }
}
