//! The blocking pool and [`spawn_blocking`]: where code that blocks runs, off the
//! event loop's thread.
//!
//! A pool of OS threads per runtime, started on demand: a job goes to an idle
//! thread if there is one, else to a new thread while there are fewer than the cap
//! (512 by default), else it waits in a FIFO queue. A thread idle for the keep-alive
//! (10 s by default) exits. The job's result goes into a slot shared with a small
//! task on the runtime; storing it wakes that task through its waker, which from a
//! pool thread is the cross-thread path (inbox + eventfd).
//!
//! Who calls it: [`spawn_blocking`] and `Handle::spawn_blocking`; the runtime shuts
//! the pool down when it is dropped.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use crate::executor::JoinHandle;
use crate::executor::waker::Inbox;
use crate::runtime::{Config, Handle};

/// A job for a pool thread.
type Job = Box<dyn FnOnce() + Send>;

/// One runtime's pool of blocking threads.
pub(crate) struct BlockingPool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Jobs of `spawn_blocking` submitted and not yet done: while any is, a paused
    /// clock does not jump (the job's result may be what the runtime waits for).
    in_flight: AtomicUsize,
    /// The runtime's inbox, to wake its loop when `in_flight` drops to 0.
    inbox: Arc<Inbox>,
    /// Signalled when a job is queued (for idle threads) and when a thread exits
    /// (for `shutdown`).
    cond: Condvar,
    max_threads: usize,
    keep_alive: Duration,
    thread_name: Arc<str>,
}

struct State {
    queue: VecDeque<Job>,
    /// Threads alive.
    threads: usize,
    /// Threads waiting for a job.
    idle: usize,
    /// Jobs handed to an idle thread by `notify_one` but not yet taken: keeps two
    /// jobs from both counting on the same idle thread.
    notified: usize,
    shutdown: bool,
}

impl BlockingPool {
    pub(crate) fn new(config: &Config, inbox: Arc<Inbox>) -> Self {
        BlockingPool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                    notified: 0,
                    shutdown: false,
                }),
                in_flight: AtomicUsize::new(0),
                inbox,
                cond: Condvar::new(),
                max_threads: config.max_blocking_threads,
                keep_alive: config.keep_alive,
                thread_name: config.thread_name.clone(),
            }),
        }
    }

    /// Runs `job` on a pool thread. After shutdown the job is dropped unrun.
    ///
    /// # Panics
    ///
    /// If no thread is alive and the OS refuses to start one.
    pub(crate) fn spawn(&self, job: Job) {
        let mut state = self.shared.lock();
        if state.shutdown {
            drop(state);
            drop(job);
            return;
        }
        state.queue.push_back(job);
        if state.idle > state.notified {
            state.notified += 1;
            self.shared.cond.notify_one();
            return;
        }
        if state.threads >= self.shared.max_threads {
            return; // a busy thread takes it when done
        }
        state.threads += 1;
        drop(state);
        let shared = self.shared.clone();
        let started = thread::Builder::new()
            .name(self.shared.thread_name.to_string())
            .spawn(move || shared.work());
        if let Err(e) = started {
            let mut state = self.shared.lock();
            state.threads -= 1;
            if state.threads == 0 {
                let jobs = std::mem::take(&mut state.queue);
                drop(state);
                drop(jobs);
                panic!("`spawn_blocking` could not start a thread and none is running: {e}");
            }
        }
    }

    /// Runs `f` on a pool thread, counted in [`in_flight`](Self::in_flight) until
    /// `done` has had its outcome: `Some` with `f`'s result (or panic), or `None` if
    /// the job was dropped unrun (at shutdown, or when no thread could start).
    /// While `f` runs, [`Handle::current`] on that thread gives `handle`.
    pub(crate) fn spawn_tracked<R, D>(
        &self,
        handle: Handle,
        f: impl FnOnce() -> R + Send + 'static,
        done: D,
    ) where
        R: Send + 'static,
        D: FnOnce(Option<thread::Result<R>>) + Send + 'static,
    {
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let mut tracked = Tracked {
            done: Some(done),
            _in_flight: InFlight(self.shared.clone()),
            _result: std::marker::PhantomData,
        };
        self.spawn(Box::new(move || {
            let result = {
                let _current = crate::context::enter_blocking(handle);
                catch_unwind(AssertUnwindSafe(f))
            };
            if let Some(done) = tracked.done.take() {
                done(Some(result));
            }
            // `tracked` drops last: the job counts as in flight until whoever it
            // woke can see its result.
            drop(tracked);
        }));
    }

    /// `spawn_blocking` jobs submitted and not yet returned.
    pub(crate) fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Threads alive.
    pub(crate) fn threads(&self) -> usize {
        self.shared.lock().threads
    }

    /// Jobs waiting for a thread.
    pub(crate) fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Drops the jobs not started yet and waits for the running ones, at most until
    /// `deadline` (forever with `None`). Returns whether every thread exited.
    pub(crate) fn shutdown(&self, deadline: Option<Instant>) -> bool {
        let mut state = self.shared.lock();
        state.shutdown = true;
        let jobs = std::mem::take(&mut state.queue);
        self.shared.cond.notify_all();
        drop(state);
        drop(jobs);
        let mut state = self.shared.lock();
        while state.threads > 0 {
            match deadline {
                None => {
                    state = self
                        .shared
                        .cond
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    state = self
                        .shared
                        .cond
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        true
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock and nothing else panics under it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pool thread: runs jobs until the pool shuts down or it has been idle for
    /// the keep-alive.
    fn work(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                // Jobs catch their own panics (see `spawn_blocking`); a job that
                // panicked anyway must not take the thread's bookkeeping with it.
                let _ = catch_unwind(AssertUnwindSafe(job));
                state = self.lock();
                continue;
            }
            if state.shutdown {
                break;
            }
            state.idle += 1;
            let idle_since = Instant::now();
            let mut timed_out = false;
            loop {
                let left = self.keep_alive.saturating_sub(idle_since.elapsed());
                if left.is_zero() {
                    timed_out = true;
                    break;
                }
                state = self
                    .cond
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                if state.notified > 0 || state.shutdown || !state.queue.is_empty() {
                    break;
                }
            }
            state.idle -= 1;
            if state.notified > 0 {
                state.notified -= 1;
            }
            if timed_out && state.queue.is_empty() {
                break;
            }
        }
        state.threads -= 1;
        drop(state);
        // Wakes a `shutdown` waiting for the last thread (idle threads that wake
        // up from this go back to waiting).
        self.cond.notify_all();
    }
}

/// A tracked job's completion callback, called with `None` if the job is dropped
/// unrun.
struct Tracked<R, D: FnOnce(Option<thread::Result<R>>)> {
    done: Option<D>,
    /// Dropped after `done` ran (fields drop after `Drop::drop`).
    _in_flight: InFlight,
    _result: std::marker::PhantomData<fn(R)>,
}

impl<R, D: FnOnce(Option<thread::Result<R>>)> Drop for Tracked<R, D> {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(None); // dropped unrun
        }
    }
}

/// Counts a job in flight until dropped (run, or dropped unrun at shutdown). The
/// last one out wakes the runtime, whose paused clock may now jump.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.inbox.notify();
        }
    }
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("BlockingPool")
            .field("threads", &state.threads)
            .field("idle", &state.idle)
            .field("queued", &state.queue.len())
            .field("max_threads", &self.shared.max_threads)
            .finish()
    }
}

/// Where a blocking job leaves its result for the task awaiting it.
struct ResultSlot<T> {
    inner: Mutex<SlotState<T>>,
}

struct SlotState<T> {
    result: Option<thread::Result<T>>,
    waker: Option<Waker>,
}

impl<T> ResultSlot<T> {
    fn lock(&self) -> MutexGuard<'_, SlotState<T>> {
        // Nothing panics while this lock is held.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The task side of a blocking job: ready once the job has stored its result.
struct AwaitBlocking<T> {
    slot: Arc<ResultSlot<T>>,
}

impl<T> Future for AwaitBlocking<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut state = self.slot.lock();
        match state.result.take() {
            Some(Ok(value)) => Poll::Ready(value),
            // Re-raised in the task, whose handle reports it as a `JoinError`.
            Some(Err(payload)) => {
                drop(state);
                resume_unwind(payload)
            }
            None => {
                if !state
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    // Our own task's waker: cloning it runs no foreign code.
                    state.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// Runs `f` on the current runtime's blocking pool and returns a handle to its
/// result. Use it for anything that would block the event loop: file system calls,
/// CPU-heavy work, a blocking library.
///
/// The pool grows on demand up to [`Builder::max_blocking_threads`] (512 by
/// default); an idle thread exits after [`Builder::thread_keep_alive`] (10 s).
/// The handle is a [`JoinHandle`]: awaiting it gives `f`'s return value, or a
/// [`JoinError`](crate::JoinError) if `f` panicked. `abort` stops the wait, not
/// `f`: a started job always runs to the end. Dropping the runtime drops jobs
/// that have not started and waits for the running ones.
///
/// [`Builder::max_blocking_threads`]: crate::Builder::max_blocking_threads
/// [`Builder::thread_keep_alive`]: crate::Builder::thread_keep_alive
///
/// # Panics
///
/// If called outside [`block_on`](crate::block_on), or if no pool thread is alive
/// and the OS refuses to start one.
///
/// # Examples
///
/// ```
/// edgeloop_runtime::block_on(async {
///     let len = edgeloop_runtime::spawn_blocking(|| {
///         std::fs::read_to_string("/proc/self/status").map(|s| s.len())
///     });
///     assert!(len.await.unwrap().unwrap() > 0);
/// });
/// ```
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let Some((pool, runtime)) =
        crate::context::with_core(|core| (core.blocking.clone(), core.handle()))
    else {
        panic!(
            "`spawn_blocking` called outside `block_on`; call it from inside the future \
             passed to `edgeloop::block_on`, or use `Handle::spawn_blocking`"
        );
    };
    let slot = Arc::new(ResultSlot {
        inner: Mutex::new(SlotState {
            result: None,
            waker: None,
        }),
    });
    let handle = crate::spawn(AwaitBlocking { slot: slot.clone() });
    let watched = slot.clone();
    // Not run if the awaiting task is gone already (aborted, or its runtime shut
    // down) by the time a thread picks the job up.
    let job = move || (Arc::strong_count(&watched) > 2).then(f);
    pool.spawn_tracked(runtime, job, move |outcome| {
        let result = match outcome {
            Some(Ok(Some(value))) => Ok(value),
            Some(Ok(None)) => return, // skipped: nobody waits
            Some(Err(payload)) => Err(payload),
            None => Err(Box::new(
                "the `spawn_blocking` job was dropped before it ran: the runtime shut down, \
                 or no pool thread could be started",
            ) as Box<dyn std::any::Any + Send>),
        };
        let waker = {
            let mut state = slot.lock();
            state.result = Some(result);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    });
    handle
}

#[cfg(test)]
mod tests;
