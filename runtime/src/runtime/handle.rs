//! [`Handle`]: a `Send + Sync` way into a runtime from any thread, and the
//! [`RemoteJoinHandle`] that [`Handle::spawn`] returns.
//!
//! A remote spawn is a job in the runtime's inbox (mutex + eventfd, the same line
//! as a cross-thread wake): the runtime's thread takes it at its next turn and
//! spawns the future there as an ordinary task, wrapped in [`RemoteTask`], which
//! hands the outcome over through a mutex-guarded [`RemoteState`].

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use crate::blocking::BlockingPool;
use crate::executor::waker::{Inbox, Job};
use crate::executor::{JoinError, Outcome};
use crate::runtime::RuntimeMetrics;
use crate::runtime::metrics::Published;

/// A handle to a runtime, to spawn onto it from any thread.
///
/// `Send + Sync + Clone`: clone it freely and move it to other threads. Get one with
/// [`Runtime::handle`](crate::Runtime::handle) or, inside the runtime,
/// [`Handle::current`].
///
/// # Examples
///
/// ```
/// use edgeloop_runtime::{Handle, Runtime};
///
/// let rt = Runtime::new()?;
/// let handle: Handle = rt.handle();
/// let worker = std::thread::spawn(move || {
///     // On another thread: the future runs on `rt`'s thread.
///     handle.spawn(async { 6 * 7 })
/// });
/// let task = worker.join().unwrap();
/// assert_eq!(rt.block_on(task).unwrap(), 42);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) blocking: Arc<BlockingPool>,
    /// The snapshot the runtime publishes for [`Handle::metrics`].
    pub(crate) published: Arc<Published>,
    /// The runtime's `Core::id`, to tell whether this thread is running it.
    pub(crate) runtime_id: u64,
}

impl Handle {
    /// The handle of the runtime running on this thread, or, inside a
    /// [`spawn_blocking`](crate::spawn_blocking) closure, of the runtime that
    /// spawned it.
    ///
    /// # Panics
    ///
    /// Outside [`block_on`](crate::block_on) (or [`Runtime::block_on`](crate::Runtime::block_on))
    /// and outside a blocking job.
    pub fn current() -> Handle {
        crate::context::with_core(|core| core.handle())
            .or_else(crate::context::blocking_handle)
            .unwrap_or_else(|| {
                panic!(
                    "`Handle::current` called outside `block_on`; call it from inside the \
                 future passed to `edgeloop::block_on`, or use `Runtime::handle`"
                )
            })
    }

    /// Spawns `future` on the handle's runtime, from any thread. The future runs on
    /// the runtime's thread (so it must be `Send` to get there), starting at the
    /// runtime's next turn; the returned handle may be awaited on any thread, in any
    /// runtime or executor.
    ///
    /// If the runtime has shut down, the future is dropped and the handle reports a
    /// cancelled [`JoinError`].
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> RemoteJoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let spawned_at = std::panic::Location::caller();
        let state = Arc::new(RemoteState::new());
        let task = RemoteTask {
            future: Some(future),
            state: state.clone(),
        };
        let job: Job = Box::new(move || {
            drop(crate::runtime::spawn_at(task, spawned_at));
        });
        if let Err(job) = self.inbox.push_job(job) {
            // Dropping the unrun task records "cancelled".
            drop(job);
        }
        RemoteJoinHandle { state }
    }

    /// Runs `f` on the runtime's blocking pool, from any thread; see
    /// [`spawn_blocking`](crate::spawn_blocking). If the runtime has shut down, `f`
    /// is dropped unrun and the handle reports a cancelled [`JoinError`].
    pub fn spawn_blocking<F, R>(&self, f: F) -> RemoteJoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let state = Arc::new(RemoteState::new());
        let aborted = state.clone();
        // Aborted before a thread picks it up: not run.
        let job = move || (!aborted.lock().cancel_requested).then(f);
        let done = state.clone();
        self.blocking
            .spawn_tracked(self.clone(), job, move |outcome| match outcome {
                Some(Ok(Some(value))) => done.complete(Ok(value)),
                Some(Err(payload)) => done.complete(Err(JoinError::panic(payload))),
                // Skipped after `abort`, or dropped unrun at shutdown.
                Some(Ok(None)) | None => done.complete(Err(JoinError::cancelled())),
            });
        RemoteJoinHandle { state }
    }
}

impl Handle {
    /// A snapshot of the runtime's counters (see [`RuntimeMetrics`]), from any thread.
    ///
    /// - On the runtime's own thread, inside its `block_on`, it reads the counters
    ///   directly, like [`Runtime::metrics`](crate::Runtime::metrics).
    /// - On a thread that runs no runtime (a plain thread, a
    ///   [`spawn_blocking`](crate::spawn_blocking) job), it asks the runtime's thread
    ///   for a snapshot (a job in its inbox, like [`spawn`](Self::spawn)) and blocks
    ///   until the next turn of its loop publishes one; if a task is blocking that
    ///   thread, this waits as long.
    /// - Inside another runtime it does not wait (two runtimes asking each other
    ///   would wait for ever): it returns the latest snapshot published, which may be
    ///   old. For a fresh one from there, call it in `spawn_blocking`.
    /// - When no `block_on` is driving the runtime, it returns at once with the
    ///   snapshot taken when the last one returned (all zeros before the first; the
    ///   final counts once the runtime has shut down).
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = edgeloop_runtime::Runtime::new()?;
    /// let handle = rt.handle();
    /// let spawned = rt.block_on(async move {
    ///     edgeloop_runtime::spawn(async {}).await.unwrap();
    ///     // Another thread asks; this runtime's loop answers.
    ///     let asked = edgeloop_runtime::spawn_blocking(move || handle.metrics());
    ///     asked.await.unwrap().spawned_tasks
    /// });
    /// assert_eq!(spawned, 2, "the empty task and the one awaiting the blocking job");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn metrics(&self) -> RuntimeMetrics {
        let here =
            crate::context::with_core(|core| (core.id == self.runtime_id).then(|| core.metrics()));
        match here {
            Some(Some(metrics)) => return metrics,
            // Another runtime runs on this thread: waiting could deadlock it.
            Some(None) => return self.published.latest(),
            None => {}
        }
        self.published.fetch(|| {
            let job: Job = Box::new(|| {
                crate::context::with_core(|core| core.publish_metrics(true));
            });
            self.inbox.push_job(job).is_ok()
        })
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

/// The outcome of a remote task, shared between the task and its handle.
struct RemoteState<T> {
    inner: Mutex<RemoteInner<T>>,
}

struct RemoteInner<T> {
    output: Option<Result<T, JoinError>>,
    finished: bool,
    cancel_requested: bool,
    /// Who awaits the handle.
    join_waker: Option<Waker>,
    /// The task, to make it run (and drop its future) after `abort`.
    task_waker: Option<Waker>,
}

impl<T> RemoteState<T> {
    fn new() -> Self {
        RemoteState {
            inner: Mutex::new(RemoteInner {
                output: None,
                finished: false,
                cancel_requested: false,
                join_waker: None,
                task_waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RemoteInner<T>> {
        // Nothing panics while the lock is held.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `result` unless something finished first, and wakes the joiner.
    fn complete(&self, result: Result<T, JoinError>) {
        let (waker, task_waker) = {
            let mut inner = self.lock();
            if inner.finished {
                return;
            }
            inner.finished = true;
            inner.output = Some(result);
            (inner.join_waker.take(), inner.task_waker.take())
        };
        drop(task_waker);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

pin_project! {
    /// The wrapper a remote future runs in on the runtime's thread: catches its
    /// panic, honours `abort`, and reports through the shared state. Dropped
    /// unfinished (at shutdown, or unrun in the inbox), it reports "cancelled".
    struct RemoteTask<F: Future> {
        #[pin]
        future: Option<F>,
        state: Arc<RemoteState<F::Output>>,
    }

    impl<F: Future> PinnedDrop for RemoteTask<F> {
        fn drop(this: Pin<&mut Self>) {
            this.state.complete(Err(JoinError::cancelled()));
        }
    }
}

/// Tells the runtime how this remote task ended: it catches its own panic and
/// abort, so its cell sees it complete either way.
fn report_outcome(outcome: Outcome) {
    crate::context::with_core(|core| core.executor.override_outcome(outcome));
}

impl<F: Future> Future for RemoteTask<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        // The flag is read and the waker stored under one lock, so an `abort` on
        // another thread either is seen here or finds the waker to wake.
        let cancel = {
            let mut inner = this.state.lock();
            let stored = inner
                .task_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()));
            if !stored && !inner.cancel_requested {
                // Our own task's waker: cloning it under the lock runs no foreign code.
                inner.task_waker = Some(cx.waker().clone());
            }
            inner.cancel_requested
        };
        if cancel {
            let dropped = catch_unwind(AssertUnwindSafe(|| this.future.set(None)));
            let (error, outcome) = match dropped {
                Ok(()) => (JoinError::cancelled(), Outcome::Aborted),
                Err(payload) => (JoinError::panic(payload), Outcome::Panicked),
            };
            report_outcome(outcome);
            this.state.complete(Err(error));
            return Poll::Ready(());
        }
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        let result = match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => Ok(output),
            Err(payload) => {
                report_outcome(Outcome::Panicked);
                Err(JoinError::panic(payload))
            }
        };
        let _ = catch_unwind(AssertUnwindSafe(|| this.future.set(None)));
        this.state.complete(result);
        Poll::Ready(())
    }
}

/// The handle to a task spawned with [`Handle::spawn`] (or a job of
/// [`Handle::spawn_blocking`]): like [`JoinHandle`](crate::JoinHandle), but
/// `Send + Sync` (when the output is `Send`), so it may be awaited on any thread.
///
/// A future of `Result<T, JoinError>`. Dropping it detaches the task.
pub struct RemoteJoinHandle<T> {
    state: Arc<RemoteState<T>>,
}

impl<T> RemoteJoinHandle<T> {
    /// Cancels the task: its future is dropped on the runtime's thread at its next
    /// turn, and awaiting the handle gives a cancelled [`JoinError`]. Does nothing
    /// once the task has finished. A blocking job is cancelled only if it has not
    /// started; one that has started runs to its end and delivers its result.
    pub fn abort(&self) {
        let task = {
            let mut inner = self.state.lock();
            if inner.finished {
                return;
            }
            inner.cancel_requested = true;
            inner.task_waker.clone()
        };
        // Without a waker the task has not been polled yet (it is still in the
        // inbox, or a blocking job still in the pool's queue): it sees the flag
        // when it starts.
        if let Some(waker) = task {
            waker.wake();
        }
    }

    /// Whether the task has finished: returned, panicked, or been cancelled.
    pub fn is_finished(&self) -> bool {
        self.state.lock().finished
    }
}

impl<T> Future for RemoteJoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let stored = {
            let mut inner = self.state.lock();
            if let Some(output) = inner.output.take() {
                return Poll::Ready(output);
            }
            assert!(
                !inner.finished,
                "`RemoteJoinHandle` polled after it returned its result; await it only once"
            );
            inner
                .join_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        };
        if !stored {
            // Cloned, and the old one dropped, outside the lock: a foreign waker's
            // clone or drop may run arbitrary code.
            let new = cx.waker().clone();
            let old = self.state.lock().join_waker.replace(new);
            drop(old);
            // The task may have finished between the two locks.
            if let Some(output) = self.state.lock().output.take() {
                return Poll::Ready(output);
            }
        }
        Poll::Pending
    }
}

impl<T> fmt::Debug for RemoteJoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJoinHandle")
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}
