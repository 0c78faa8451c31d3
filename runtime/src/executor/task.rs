//! What the executor stores per spawned task: the user's future wrapped in
//! [`Spawned`], which catches panics, honours `abort`, and hands the output to the
//! [`JoinHandle`](super::JoinHandle) through a shared [`JoinState`].

use std::cell::RefCell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
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
}

/// Shared pointer to a [`JoinState`].
pub(crate) type SharedState<T> = Rc<RefCell<JoinState<T>>>;

pub(crate) fn new_state<T>() -> SharedState<T> {
    Rc::new(RefCell::new(JoinState {
        output: None,
        finished: false,
        cancel_requested: false,
        join_waker: None,
    }))
}

/// Records `result` (unless something finished first) and wakes the joiner.
fn complete<T>(state: &SharedState<T>, result: Result<T, JoinError>) {
    let waker = {
        let mut s = state.borrow_mut();
        if s.finished {
            return;
        }
        s.finished = true;
        s.output = Some(result);
        s.join_waker.take()
    };
    // Woken outside the borrow: the joiner may be polled from inside `wake`.
    if let Some(w) = waker {
        w.wake();
    }
}

/// Records "cancelled" when the task is dropped before it finished (by `abort`, or
/// at shutdown). It is the last field of [`Spawned`], so it runs after the future's
/// own destructor.
#[derive(Debug)]
struct CancelOnDrop<T>(SharedState<T>);

impl<T> Drop for CancelOnDrop<T> {
    fn drop(&mut self) {
        complete(&self.0, Err(JoinError::cancelled()));
    }
}

pin_project! {
    #[project = StageProj]
    enum Stage<F> {
        Running { #[pin] future: F },
        Done,
    }
}

pin_project! {
    /// A spawned future, type-erased by the executor to `Future<Output = ()>`.
    pub(crate) struct Spawned<F: Future> {
        #[pin]
        stage: Stage<F>,
        state: CancelOnDrop<F::Output>,
    }
}

impl<F: Future> Spawned<F> {
    pub(crate) fn new(future: F, state: SharedState<F::Output>) -> Self {
        Spawned {
            stage: Stage::Running { future },
            state: CancelOnDrop(state),
        }
    }
}

impl<F: Future> Future for Spawned<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let state = &this.state.0;
        if state.borrow().cancel_requested {
            // Drop the future here, inside the runtime, where its destructors may
            // still deregister I/O. A destructor that panics is the task's panic,
            // reported through its handle like any other.
            let result = match catch_unwind(AssertUnwindSafe(|| this.stage.set(Stage::Done))) {
                Ok(()) => JoinError::cancelled(),
                Err(payload) => JoinError::panic(payload),
            };
            complete(state, Err(result));
            return Poll::Ready(());
        }
        let StageProj::Running { future } = this.stage.as_mut().project() else {
            return Poll::Ready(());
        };
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                this.stage.set(Stage::Done);
                complete(state, Ok(output));
                Poll::Ready(())
            }
            Err(payload) => {
                // A destructor that panics too loses its payload; the first panic is
                // the one worth reporting.
                let _ = catch_unwind(AssertUnwindSafe(|| this.stage.set(Stage::Done)));
                complete(state, Err(JoinError::panic(payload)));
                Poll::Ready(())
            }
        }
    }
}
