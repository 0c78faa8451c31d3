//! [`JoinHandle`] and [`JoinError`]: how a spawned task's result gets back.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use super::task::JoinRef;

/// An owned permission to await a spawned task's result.
///
/// A future of `Result<T, JoinError>`: `Ok` with the task's output, or `Err` if the
/// task panicked or was aborted. Dropping the handle detaches the task: it keeps
/// running and its output is dropped.
///
/// The handle stays on the runtime's thread (`!Send`), like the task:
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<edgeloop_runtime::JoinHandle<()>>();
/// ```
///
/// # Examples
///
/// ```
/// let n = edgeloop_runtime::block_on(async {
///     let handle = edgeloop_runtime::spawn(async { 6 * 7 });
///     handle.await
/// });
/// assert_eq!(n.unwrap(), 42);
/// ```
pub struct JoinHandle<T> {
    /// The task itself, which fills in the output (and which `abort` wakes, to
    /// make it drop its future).
    cell: JoinRef<T>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(cell: JoinRef<T>) -> Self {
        JoinHandle { cell }
    }

    /// Cancels the task. Its future is dropped the next time the runtime gets to it
    /// (inside the runtime, so its destructors may still use I/O), and awaiting the
    /// handle then gives a [`JoinError`] for which
    /// [`is_cancelled`](JoinError::is_cancelled) is true. Aborting a task that has
    /// already finished does nothing: its result stays available.
    ///
    /// # Examples
    ///
    /// ```
    /// edgeloop_runtime::block_on(async {
    ///     let handle = edgeloop_runtime::spawn(std::future::pending::<()>());
    ///     handle.abort();
    ///     assert!(handle.await.unwrap_err().is_cancelled());
    /// });
    /// ```
    pub fn abort(&self) {
        let finished = {
            let mut state = self.cell.state().borrow_mut();
            state.cancel_requested = true;
            state.finished
        };
        if !finished {
            self.cell.wake_task();
        }
    }

    /// Whether the task has finished: returned, panicked, or been cancelled.
    pub fn is_finished(&self) -> bool {
        self.cell.state().borrow().finished
    }
}

impl<T> Drop for JoinHandle<T> {
    /// Detaches the task. A panic it already stored, which now nobody will see,
    /// goes to the runtime's panic policy; an output is dropped here, on the
    /// runtime's thread (the task's block may be freed by a waker elsewhere).
    fn drop(&mut self) {
        let unseen = {
            let mut state = self.cell.state().borrow_mut();
            state.detached = true;
            state.output.take()
        };
        match unseen {
            Some(Err(e)) if e.is_panic() => super::report_unhandled_panic(e),
            // Dropped outside the borrow: its destructor is user code.
            other => drop(other),
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let stored = {
            let mut state = self.cell.state().borrow_mut();
            if let Some(output) = state.output.take() {
                return Poll::Ready(output);
            }
            assert!(
                !state.finished,
                "`JoinHandle` polled after it returned its result; await it only once"
            );
            state
                .join_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        };
        if !stored {
            // Cloned, and the old one dropped, outside the borrow: a foreign waker's
            // clone or drop may run arbitrary code.
            let new = cx.waker().clone();
            let old = self.cell.state().borrow_mut().join_waker.replace(new);
            drop(old);
        }
        Poll::Pending
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

/// Why a task did not produce its output: it was cancelled or it panicked.
pub struct JoinError {
    /// The panic payload; `None` for a cancelled task. Behind a mutex only so the
    /// error is `Sync` and fits in an `io::Error`.
    panic: Option<Mutex<Box<dyn Any + Send + 'static>>>,
}

impl JoinError {
    pub(crate) fn cancelled() -> Self {
        JoinError { panic: None }
    }

    pub(crate) fn panic(payload: Box<dyn Any + Send + 'static>) -> Self {
        JoinError {
            panic: Some(Mutex::new(payload)),
        }
    }

    /// The task was aborted, or dropped when its runtime shut down.
    pub fn is_cancelled(&self) -> bool {
        self.panic.is_none()
    }

    /// The task panicked.
    pub fn is_panic(&self) -> bool {
        self.panic.is_some()
    }

    /// The panic payload, to re-raise with [`std::panic::resume_unwind`].
    ///
    /// # Panics
    ///
    /// If the task was cancelled, not panicked; check [`is_panic`](Self::is_panic) or
    /// use [`try_into_panic`](Self::try_into_panic).
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic().unwrap_or_else(|_| {
            panic!("`JoinError::into_panic` called on a cancelled task; check `is_panic` first")
        })
    }

    /// The panic payload, or the error back if the task was cancelled.
    ///
    /// # Errors
    ///
    /// Returns `self` when the task was cancelled.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.panic {
            Some(m) => Ok(m.into_inner().unwrap_or_else(|p| p.into_inner())),
            None => Err(self),
        }
    }

    fn panic_message(&self) -> Option<String> {
        let m = self.panic.as_ref()?;
        let payload = m.lock().unwrap_or_else(|p| p.into_inner());
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.panic, self.panic_message()) {
            (None, _) => f.write_str("task was cancelled"),
            (Some(_), Some(msg)) => write!(f, "task panicked with message {msg:?}"),
            (Some(_), None) => f.write_str("task panicked"),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.panic, self.panic_message()) {
            (None, _) => f.write_str("JoinError::Cancelled"),
            (Some(_), Some(msg)) => write!(f, "JoinError::Panic({msg:?}, ..)"),
            (Some(_), None) => f.write_str("JoinError::Panic(..)"),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for std::io::Error {
    fn from(e: JoinError) -> Self {
        std::io::Error::other(e)
    }
}
