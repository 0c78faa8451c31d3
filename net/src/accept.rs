//! [`AcceptPause`]: what `accept` does when the process is out of file descriptors,
//! shared by the TCP and Unix listeners.
//!
//! `accept4` failing with `EMFILE`/`ENFILE` (or `ENOBUFS`/`ENOMEM`) leaves the
//! connection queued and the listener readable: an accept loop that retries at
//! once spins at 100% CPU, and one that gives up ends the server. So `accept` and
//! `incoming` hide these errors: they pause in
//! [`wait_for_fd_release`](edgeloop_runtime::wait_for_fd_release), which ends when
//! the runtime releases an fd (a connection closes) or after a back-off of 1 ms,
//! doubling up to 100 ms while the shortage lasts, and then try again. Each pause
//! shows in [`RuntimeMetrics::fd_release_waits`](edgeloop_runtime::RuntimeMetrics::fd_release_waits).
//! The `poll_accept` methods, the low-level path, still return the errors.
//!
//! The errors that concern one pending connection, not the listener, are skipped
//! everywhere (`poll_accept` too): `ECONNABORTED` (reset before it was accepted, as
//! Go's `net` skips it) and the network errors that accept(2) says to "treat like
//! `EAGAIN` by retrying" (`ENETDOWN`, `EPROTO`, `ENOPROTOOPT`, `EHOSTDOWN`,
//! `ENONET`, `EHOSTUNREACH`, `ENETUNREACH`), plus `EPERM` (a firewall rule refused
//! that connection). Each consumed its connection, so retrying cannot spin, and a
//! caller could do nothing with them but accept again, while a `?` on one would end
//! a server over one client. (`EOPNOTSUPP`, also on that list, is left out: on
//! Linux it means the socket is not a stream socket, which retrying never fixes.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

/// The first pause after an out-of-fds error.
const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// The longest pause, however long the shortage lasts.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// Whether `accept` failed because the process or the system is out of fds or
/// memory: nothing succeeds until something is released. (`ENOSPC` comes from
/// registering the new socket: epoll's `max_user_watches` is reached.)
pub(crate) fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::ENOSPC)
    )
}

/// Whether `accept` failed over one pending connection, which it consumed (see the
/// module docs).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
        )
    )
}

/// Runs `accept` (one non-blocking `accept4` through the readiness API) until it
/// gives anything but a per-connection error.
pub(crate) fn poll_skipping_per_connection_errors<T>(
    cx: &mut Context<'_>,
    mut accept: impl FnMut(&mut Context<'_>) -> Poll<io::Result<T>>,
) -> Poll<io::Result<T>> {
    loop {
        match ready!(accept(cx)) {
            Err(e) if is_per_connection(&e) => {}
            result => return Poll::Ready(result),
        }
    }
}

/// The state of one accepting caller (an `accept` future or an `Incoming`): the
/// current pause, if any, and the next back-off.
pub(crate) struct AcceptPause {
    /// The pause in progress; boxed because it is rare and its type is unnameable.
    wait: Option<Pin<Box<dyn Future<Output = bool>>>>,
    /// The back-off for the next pause.
    next: Duration,
}

impl AcceptPause {
    pub(crate) fn new() -> Self {
        AcceptPause {
            wait: None,
            next: FIRST_PAUSE,
        }
    }

    /// Polls `accept`, pausing while it says the process is out of fds.
    pub(crate) fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut accept: impl FnMut(&mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        loop {
            if let Some(wait) = &mut self.wait {
                ready!(wait.as_mut().poll(cx));
                self.wait = None;
            }
            match ready!(accept(cx)) {
                Err(e) if is_out_of_resources(&e) => {
                    let pause = self.next;
                    self.wait = Some(Box::pin(edgeloop_runtime::wait_for_fd_release(pause)));
                    self.next = (pause * 2).min(MAX_PAUSE);
                }
                result => {
                    self.next = FIRST_PAUSE;
                    return Poll::Ready(result);
                }
            }
        }
    }
}

impl std::fmt::Debug for AcceptPause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptPause")
            .field("paused", &self.wait.is_some())
            .field("next", &self.next)
            .finish()
    }
}
