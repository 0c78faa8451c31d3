//! [`wait_for_fd_release`]: the pause an accept loop takes when the process is out
//! of file descriptors.
//!
//! `accept` failing with `EMFILE` leaves the connection in the kernel's queue and
//! the listener readable, so retrying at once spins (tokio issue 3529). The fd
//! that lets the next `accept` succeed is usually one the same runtime closes: a
//! connection that ends. The reactor sees each such close first (it deregisters the
//! fd just before its owner closes it), so it wakes the paused tasks then; a timer
//! covers fds released elsewhere (files, other threads).

use std::future::poll_fn;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// Waits until this runtime releases a registered fd (an I/O object such as a
/// connection is dropped) or `timeout` passes, whichever comes first; returns
/// `true` for a release, `false` for the timeout. Each call counts one
/// [`fd_release_waits`](crate::RuntimeMetrics::fd_release_waits).
///
/// This is the pause for an accept loop that got `EMFILE` or `ENFILE` (or
/// `ENOBUFS`/`ENOMEM`): retrying at once would spin, since the connection stays
/// queued and the listener readable; waiting a fixed time leaves fds unused. The
/// listeners of `edgeloop-net` call it themselves in `accept` and `incoming`.
///
/// # Panics
///
/// If called outside `block_on`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// edgeloop_runtime::block_on(async {
///     // Nothing is released here: the timeout ends the wait.
///     let released = edgeloop_runtime::wait_for_fd_release(Duration::from_millis(5)).await;
///     assert!(!released);
/// });
/// ```
pub async fn wait_for_fd_release(timeout: Duration) -> bool {
    let reactor = crate::context::current_reactor().unwrap_or_else(|| {
        panic!(
            "`wait_for_fd_release` called outside `block_on`; call it from inside the \
             future passed to `edgeloop::block_on`"
        )
    });
    let seen = reactor.note_fd_release_wait();
    let mut timer = pin!(crate::time::sleep(timeout));
    poll_fn(|cx| {
        if reactor.releases() != seen {
            return Poll::Ready(true);
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        reactor.wake_on_release(cx.waker());
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{bounded, socket_pair};
    use crate::{AsyncFd, Builder, Runtime, spawn, yield_now};

    #[test]
    #[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
    fn a_release_ends_every_wait_at_once() {
        bounded("a_release_ends_every_wait_at_once", || {
            let rt = Runtime::new().expect("runtime");
            rt.block_on(async {
                let (a, _b) = socket_pair().expect("socket pair");
                let registered = AsyncFd::new(a).expect("register");
                let waiters: Vec<_> = (0..2)
                    .map(|_| spawn(wait_for_fd_release(Duration::from_secs(3600))))
                    .collect();
                yield_now().await; // both wait now
                assert!(waiters.iter().all(|w| !w.is_finished()), "ended early");
                drop(registered);
                for waiter in waiters {
                    assert!(waiter.await.expect("waiter"), "woken by the timeout");
                }
            });
            let m = rt.metrics();
            assert_eq!(
                (m.fd_release_waits, m.timers_cancelled, m.timers_fired),
                (2, 2, 0),
                "{m}"
            );
        });
    }

    #[test]
    fn without_a_release_the_timeout_ends_the_wait() {
        bounded("without_a_release_the_timeout_ends_the_wait", || {
            let rt = Builder::new_current_thread()
                .start_paused(true)
                .build()
                .expect("runtime");
            let released = rt.block_on(async {
                let start = crate::time::now();
                let released = wait_for_fd_release(Duration::from_millis(100)).await;
                // The paused clock jumped to the deadline, and only to it.
                assert_eq!(crate::time::now() - start, Duration::from_millis(100));
                released
            });
            assert!(!released);
            assert_eq!(rt.metrics().fd_release_waits, 1);
        });
    }

    #[test]
    fn a_wait_outside_a_runtime_panics_naming_the_function() {
        let panic = std::panic::catch_unwind(|| {
            let wait = std::pin::pin!(wait_for_fd_release(Duration::ZERO));
            let _ = wait.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        })
        .expect_err("polled outside block_on");
        let message = crate::test_support::panic_message(&*panic);
        assert!(
            message.contains("`wait_for_fd_release` called outside `block_on`"),
            "{message}"
        );
    }
}
