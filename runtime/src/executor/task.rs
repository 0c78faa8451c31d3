//! What the executor stores per spawned task: one reference-counted [`TaskCell`]
//! holding both the user's future and the [`JoinState`] its
//! [`JoinHandle`](super::JoinHandle) reads, so a task costs one allocation (plus its
//! waker) and a poll touches one block of memory.
//!
//! The executor sees the cell as a [`Runnable`], the handle as a [`Joinable`]. The
//! cell catches panics, honours `abort`, and drops the future in place as soon as the
//! task finishes or is cancelled; the memory itself goes when the last of the two
//! references does.

use std::cell::RefCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use super::JoinError;

/// State shared by a task and its `JoinHandle`.
#[derive(Debug)]
pub(crate) struct JoinState<T> {
    /// The result, until the handle takes it.
    pub(crate) output: Option<Result<T, JoinError>>,
    /// Set once the task has finished, been cancelled or dropped.
    pub(crate) finished: bool,
    /// Set by `abort`; the task drops its future the next time it is run.
    pub(crate) cancel_requested: bool,
    /// The task awaiting the handle.
    pub(crate) join_waker: Option<Waker>,
    /// Set when the handle is dropped: nobody will ever see the output.
    pub(crate) detached: bool,
}

pin_project! {
    #[project = StageProj]
    enum Stage<F> {
        Running { #[pin] future: F },
        Done,
    }
}

/// A spawned task: its join state and its future, in one allocation.
struct TaskCell<F: Future> {
    state: RefCell<JoinState<F::Output>>,
    /// Structurally pinned: the cell lives in a `Pin<Rc<..>>`, and the stage is only
    /// ever changed in place through `Pin::set` (which drops the old value where it
    /// lies), never moved out.
    stage: RefCell<Stage<F>>,
}

/// How a task ended (for the runtime's metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Its future returned.
    Completed,
    /// Its future (or, when aborted, the future's destructor) panicked.
    Panicked,
    /// It was aborted and its future dropped.
    Aborted,
}

/// The executor's view of a task.
pub(crate) trait Runnable {
    /// Polls the future once (or drops it, if `abort` was called). `Ready` means the
    /// task is over and its outcome has been handed to the `JoinHandle`.
    fn run(self: Pin<&Self>, cx: &mut Context<'_>) -> Poll<Outcome>;

    /// Drops the future now, if it has not finished, and records "cancelled" for the
    /// handle. Re-raises a panic from the future's destructor after recording.
    fn cancel(self: Pin<&Self>);
}

/// The `JoinHandle`'s view of a task.
pub(crate) trait Joinable<T> {
    /// The state the handle reads and the task fills in.
    fn state(&self) -> &RefCell<JoinState<T>>;
}

/// A task as the executor holds it.
pub(crate) type RunnableRef = Pin<Rc<dyn Runnable>>;
/// A task as its handle holds it.
pub(crate) type JoinableRef<T> = Pin<Rc<dyn Joinable<T>>>;

/// Makes the cell for `future`: one reference for the executor, one for the handle.
pub(crate) fn new_task<F>(future: F) -> (RunnableRef, JoinableRef<F::Output>)
where
    F: Future + 'static,
    F::Output: 'static,
{
    let cell = Rc::pin(TaskCell {
        state: RefCell::new(JoinState {
            output: None,
            finished: false,
            cancel_requested: false,
            join_waker: None,
            detached: false,
        }),
        stage: RefCell::new(Stage::Running { future }),
    });
    (cell.clone(), cell)
}

impl<F: Future> TaskCell<F> {
    /// The stage, pinned.
    ///
    /// The returned guard must not be held while anything could reach this same
    /// cell's stage again; only `run` and `cancel` use it, and neither re-enters.
    // The runtime's one `unsafe` outside `sys`: a pin projection through `RefCell`.
    #[allow(unsafe_code)]
    fn with_stage<R>(self: Pin<&Self>, f: impl FnOnce(Pin<&mut Stage<F>>) -> R) -> R {
        let mut guard = self.get_ref().stage.borrow_mut();
        // `stage` is structurally pinned (see the field's doc): nothing moves a
        // `Stage` out of this cell or swaps it, the `RefCell` is never replaced, and
        // the value is dropped in place (by `Pin::set` or with the cell).
        // SAFETY: `self` is pinned and, by the above, the `Stage` stays at this
        // address until it is dropped, which is what `Pin` requires.
        let pinned = unsafe { Pin::new_unchecked(&mut *guard) };
        f(pinned)
    }

    /// Records `result` (unless something finished first) and wakes the joiner.
    fn complete(&self, result: Result<F::Output, JoinError>) {
        let waker = {
            let mut s = self.state.borrow_mut();
            if s.finished {
                return;
            }
            s.finished = true;
            match result {
                // Nobody will see it: the runtime's panic policy decides.
                Err(e) if s.detached && e.is_panic() => super::report_unhandled_panic(e),
                result => s.output = Some(result),
            }
            s.join_waker.take()
        };
        // Woken outside the borrow: the joiner may be polled from inside `wake`.
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<F: Future> Runnable for TaskCell<F> {
    fn run(self: Pin<&Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        if self.state.borrow().cancel_requested {
            // Drop the future here, inside the runtime, where its destructors may
            // still deregister I/O. A destructor that panics is the task's panic,
            // reported through its handle like any other.
            let dropped = catch_unwind(AssertUnwindSafe(|| {
                self.with_stage(|mut stage| stage.set(Stage::Done));
            }));
            let (error, outcome) = match dropped {
                Ok(()) => (JoinError::cancelled(), Outcome::Aborted),
                Err(payload) => (JoinError::panic(payload), Outcome::Panicked),
            };
            self.complete(Err(error));
            return Poll::Ready(outcome);
        }
        let polled = self.with_stage(|mut stage| {
            let StageProj::Running { future } = stage.as_mut().project() else {
                return None;
            };
            let result = catch_unwind(AssertUnwindSafe(|| future.poll(cx)));
            match result {
                Ok(Poll::Pending) => Some(Poll::Pending),
                Ok(Poll::Ready(output)) => {
                    stage.set(Stage::Done);
                    Some(Poll::Ready(Ok(output)))
                }
                Err(payload) => {
                    // A destructor that panics too loses its payload; the first panic
                    // is the one worth reporting.
                    let _ = catch_unwind(AssertUnwindSafe(|| stage.set(Stage::Done)));
                    Some(Poll::Ready(Err(JoinError::panic(payload))))
                }
            }
        });
        match polled {
            // Not reached: a finished task is not polled again.
            None => Poll::Ready(Outcome::Aborted),
            Some(Poll::Pending) => Poll::Pending,
            Some(Poll::Ready(result)) => {
                let outcome = if result.is_ok() {
                    Outcome::Completed
                } else {
                    Outcome::Panicked
                };
                // Handed over after the stage borrow ended: waking the joiner may run
                // code that looks at this task again.
                self.complete(result);
                Poll::Ready(outcome)
            }
        }
    }

    fn cancel(self: Pin<&Self>) {
        let dropped = catch_unwind(AssertUnwindSafe(|| {
            self.with_stage(|mut stage| stage.set(Stage::Done));
        }));
        self.complete(Err(JoinError::cancelled()));
        if let Err(payload) = dropped {
            resume_unwind(payload);
        }
    }
}

impl<F: Future> Joinable<F::Output> for TaskCell<F> {
    fn state(&self) -> &RefCell<JoinState<F::Output>> {
        &self.state
    }
}
