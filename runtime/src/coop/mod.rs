//! Cooperative budget: how many I/O and timer operations a task may complete in
//! one poll before they start saying `Pending` (after waking the task), so one task
//! looping over an always-ready socket cannot starve the others.
//!
//! Each task poll (and each poll of the `block_on` future) starts with
//! [`TASK_BUDGET`] units, tokio's 128. Every readiness poll, `poll_io` and `Sleep`
//! poll first checks the budget ([`poll_proceed`]); one that completes spends a unit
//! ([`spend`]). An operation that finds the budget spent wakes its task and returns
//! `Pending`: the task goes to the back of the run queue and gets a fresh budget
//! at its next poll. [`unconstrained`] lifts the limit for a future;
//! [`consume_budget`] spends a unit explicitly (for CPU-bound loops).
//!
//! The budget lives in a thread-local cell: one read and one write per operation.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

/// Units per task poll (tokio's number).
pub(crate) const TASK_BUDGET: u8 = 128;

thread_local! {
    /// The running task's budget; `None` outside a task or inside [`unconstrained`].
    static BUDGET: Cell<Option<u8>> = const { Cell::new(None) };
}

/// Gives the task about to be polled a full budget until the guard drops, which
/// puts back what was there.
pub(crate) fn start_poll() -> impl Drop {
    struct Restore(Option<u8>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = BUDGET.try_with(|b| b.set(self.0));
        }
    }
    Restore(BUDGET.with(|b| b.replace(Some(TASK_BUDGET))))
}

/// `Ready` if the current task may do one more operation; else wakes it (so it
/// runs again after the others) and returns `Pending`.
#[inline]
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    if BUDGET.with(Cell::get) == Some(0) {
        crate::context::with_core(|core| core.executor.note_budget_yield());
        cx.waker().wake_by_ref();
        return Poll::Pending;
    }
    Poll::Ready(())
}

/// Spends one unit (an operation completed).
#[inline]
pub(crate) fn spend() {
    BUDGET.with(|b| {
        if let Some(n) = b.get() {
            b.set(Some(n.saturating_sub(1)));
        }
    });
}

/// Spends one unit of the current task's budget, yielding first (to the back of the
/// run queue) if it is used up. Put it in a long CPU-bound loop so the loop shares
/// the thread like I/O-bound tasks do.
///
/// # Examples
///
/// ```
/// edgeloop_runtime::block_on(async {
///     let mut sum = 0u64;
///     for i in 0..10_000u64 {
///         edgeloop_runtime::task::consume_budget().await;
///         sum += i;
///     }
///     assert_eq!(sum, 49_995_000);
/// });
/// ```
pub async fn consume_budget() {
    std::future::poll_fn(|cx| {
        if poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        spend();
        Poll::Ready(())
    })
    .await;
}

pin_project! {
    /// The future returned by [`unconstrained`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Unconstrained<F> {
        #[pin]
        inner: F,
    }
}

/// Runs `future` without the cooperative budget: its I/O and timer operations
/// never yield on their own. For the rare future that must not be interrupted;
/// it can then starve other tasks, so keep it short.
///
/// # Examples
///
/// ```
/// use edgeloop_runtime::task::{consume_budget, unconstrained};
///
/// edgeloop_runtime::block_on(async {
///     // 1,000 units in one poll: no yield inside `unconstrained`.
///     unconstrained(async {
///         for _ in 0..1_000 {
///             consume_budget().await;
///         }
///     })
///     .await;
/// });
/// ```
pub fn unconstrained<F: Future>(future: F) -> Unconstrained<F> {
    Unconstrained { inner: future }
}

impl<F: Future> Future for Unconstrained<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let previous = BUDGET.with(|b| b.replace(None));
        struct Restore(Option<u8>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let _ = BUDGET.try_with(|b| b.set(self.0));
            }
        }
        let _restore = Restore(previous);
        self.project().inner.poll(cx)
    }
}

#[cfg(test)]
mod tests;
