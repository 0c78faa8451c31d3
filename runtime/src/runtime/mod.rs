//! The event loop: ties the executor, the reactor and the timers together.
//! This is the only module that knows all three.
//!
//! ```text
//! loop {
//!     poll the block_on future if it was woken
//!     poll up to BUDGET queued tasks (FIFO)
//!     timeout = 0 if work is queued, else time to the next timer, else forever
//!     epoll_pwait2(timeout)          // the one place the thread sleeps
//!     drain the cross-thread inbox
//!     paused clock and nothing to do? jump it to the next deadline
//!     fire expired timers
//! }
//! ```

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::blocking::BlockingPool;
use crate::context;
use crate::executor::waker::{Inbox, TaskId, TaskWaker};
use crate::executor::{Executor, JoinHandle};
use crate::reactor::Reactor;
use crate::sys::{eventfd, prctl};
use crate::time::Timers;

mod builder;
mod handle;
pub(crate) mod metrics;

pub use builder::Builder;
pub(crate) use builder::Config;
pub use handle::{Handle, RemoteJoinHandle};
use metrics::Published;
pub use metrics::RuntimeMetrics;

/// The default number of tasks polled between two looks at epoll (tests use it).
#[cfg(test)]
pub(crate) const BUDGET: usize = builder::DEFAULT_EVENT_INTERVAL;

/// Timer slack of the thread while it runs the loop, in nanoseconds: the kernel's
/// default of 50 µs would make every timed wait up to 50 µs late; 1 µs matches the
/// timer wheel's tick.
const TIMER_SLACK_NS: u64 = 1_000;

/// One runtime's parts.
#[derive(Debug)]
pub(crate) struct Core {
    /// Tasks and run queue.
    pub(crate) executor: Executor,
    /// epoll and registrations; shared with every `Registration`.
    pub(crate) reactor: Rc<Reactor>,
    /// Pending timers; shared with every registered `Sleep`.
    pub(crate) timers: Rc<Timers>,
    /// Threads for `spawn_blocking`; shared with every `Handle`.
    pub(crate) blocking: Arc<BlockingPool>,
    /// Unique per runtime in this process (never reused).
    pub(crate) id: u64,
    /// Tasks polled between two looks at epoll.
    event_interval: usize,
    /// The loop's own totals, for [`RuntimeMetrics`].
    counters: LoopCounters,
    /// The snapshot [`Handle::metrics`] reads on other threads.
    published: Arc<Published>,
}

/// The event loop's totals since the runtime was created (see [`RuntimeMetrics`]).
#[derive(Debug, Default)]
struct LoopCounters {
    empty_wakeups: Cell<u64>,
    remote_wakes: Cell<u64>,
    remote_jobs: Cell<u64>,
}

impl Core {
    fn new(config: &Config) -> io::Result<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let notifier = eventfd::eventfd()?;
        let reactor = Reactor::new(notifier.as_fd(), config.max_io_events, config.oneshot)?;
        let timers = Timers::new();
        if config.start_paused {
            timers.pause();
        }
        let inbox = Arc::new(Inbox::new(notifier));
        Ok(Core {
            blocking: Arc::new(BlockingPool::new(config, inbox.clone())),
            executor: Executor::new(inbox, config.unhandled_panic, config.slow_poll()),
            reactor: Rc::new(reactor),
            timers: Rc::new(timers),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            event_interval: config.event_interval,
            counters: LoopCounters::default(),
            published: Arc::new(Published::default()),
        })
    }

    /// A snapshot of every counter.
    pub(crate) fn metrics(&self) -> RuntimeMetrics {
        let mut m = RuntimeMetrics::default();
        self.executor.fill_metrics(&mut m);
        self.reactor.fill_metrics(&mut m);
        self.timers.fill_metrics(&mut m);
        m.empty_wakeups = self.counters.empty_wakeups.get();
        m.remote_wakes = self.counters.remote_wakes.get();
        m.remote_jobs = self.counters.remote_jobs.get();
        m.blocking_threads = self.blocking.threads();
        m.blocking_queue = self.blocking.queued();
        m
    }

    /// Publishes a snapshot for [`Handle::metrics`] on other threads.
    pub(crate) fn publish_metrics(&self, running: bool) {
        self.published.publish(self.metrics(), running);
    }

    /// A `Send` handle to this runtime.
    pub(crate) fn handle(&self) -> Handle {
        Handle {
            inbox: self.executor.inbox().clone(),
            blocking: self.blocking.clone(),
            published: self.published.clone(),
            runtime_id: self.id,
        }
    }

    /// Drops every task and timer inside this runtime's context (destructors may
    /// deregister I/O), closes the epoll fd and the eventfd, and shuts the blocking
    /// pool down, waiting for running jobs until `deadline` (`None`: for ever).
    /// Returns the first panic of a task's destructor, for the caller to re-raise.
    fn shutdown(
        self: &Rc<Self>,
        deadline: Option<Instant>,
    ) -> Option<Box<dyn std::any::Any + Send>> {
        /// Puts the outer context back, also if dropping the timers unwinds.
        struct Restore(Option<Option<Rc<Core>>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                if let Some(outer) = self.0.take() {
                    drop(context::swap(outer));
                }
            }
        }
        let outer = context::swap(Some(self.clone()));
        // Inside another runtime's `block_on`, waiting for our blocking jobs would
        // stall that runtime's loop (a job may wait for one of its tasks): leave
        // them to finish on their own. (tokio panics here instead.)
        let deadline = if outer.is_some() {
            Some(Instant::now())
        } else {
            deadline
        };
        let restore = Restore(Some(outer));
        let task_panic = self.executor.shutdown();
        self.timers.clear();
        drop(restore);
        self.reactor.shutdown();
        self.executor.inbox().close();
        self.blocking.shutdown(deadline);
        // The final counts, for handles that outlive the runtime.
        self.publish_metrics(false);
        task_panic
    }
}

/// Makes a runtime current for one `block_on`: sets the thread-local context and
/// the timer slack, and puts both back when `block_on` returns or unwinds. Also
/// tells [`Handle::metrics`] readers whether the runtime is being driven.
struct Enter {
    /// The thread's timer slack before `block_on`, restored when it returns.
    saved_slack: Option<u64>,
}

impl Enter {
    fn new(core: Rc<Core>) -> Self {
        let published = core.published.clone();
        context::enter(core);
        // Only once entered: were `enter` to panic, `Drop` would not run to undo it.
        published.set_running();
        // Best effort: where prctl is refused, timers are merely up to 50 µs later.
        let saved_slack = prctl::timer_slack()
            .ok()
            .filter(|_| prctl::set_timer_slack(TIMER_SLACK_NS).is_ok());
        Enter { saved_slack }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        if let Some(core) = context::leave() {
            // Readers on other threads get this snapshot until the next `block_on`.
            core.publish_metrics(false);
        }
        if let Some(slack) = self.saved_slack {
            // Ignored: setting back a value the kernel gave us cannot fail.
            let _ = prctl::set_timer_slack(slack);
        }
    }
}

/// A runtime: an executor, an epoll reactor, timers and a blocking pool, driven by
/// [`block_on`](Runtime::block_on) on the thread that calls it.
///
/// Tasks live in the runtime between `block_on` calls: a task spawned during one
/// call keeps its state and runs again during the next. Dropping the runtime drops
/// the remaining tasks (inside the runtime, so their destructors may still use
/// I/O), closes its fds, drops blocking jobs that have not started and waits for
/// the running ones (like tokio; see [`shutdown_timeout`](Runtime::shutdown_timeout)
/// to bound that wait). Dropped inside another runtime's `block_on`, it does not
/// wait: that would stall the other runtime's loop (tokio panics there instead).
///
/// Unlike tokio's, this runtime is not `Send`: its tasks need not be `Send`, so they
/// and the runtime stay on the thread that created it. Reach it from other threads
/// through a [`Handle`].
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<edgeloop_runtime::Runtime>();
/// ```
///
/// # Examples
///
/// ```
/// let rt = edgeloop_runtime::Runtime::new()?;
/// let task = rt.spawn(async { 1 });
/// let two = rt.block_on(async { task.await.unwrap() + 1 });
/// assert_eq!(two, 2);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Runtime {
    core: Rc<Core>,
}

impl Runtime {
    /// A runtime with the default settings (see [`Builder`]).
    ///
    /// # Errors
    ///
    /// If the epoll fd or the eventfd cannot be created (for example at the fd
    /// limit: `EMFILE`).
    pub fn new() -> io::Result<Runtime> {
        Builder::new_current_thread().build()
    }

    pub(crate) fn with_config(config: Config) -> io::Result<Runtime> {
        Ok(Runtime {
            core: Rc::new(Core::new(&config)?),
        })
    }

    /// Runs `future` to completion on this thread, driving the runtime's tasks
    /// meanwhile, and returns its output. Tasks still running when it returns stay
    /// in the runtime, for the next `block_on`.
    ///
    /// While it runs, the thread's timer slack (`PR_SET_TIMERSLACK`) is 1 µs instead
    /// of the kernel's 50 µs, so timers wake on time; the old value is restored on
    /// return.
    ///
    /// # Panics
    ///
    /// - If called while a runtime is running on this thread (`.await` the future
    ///   or `spawn` it instead).
    /// - If `future` panics: the panic propagates; the runtime stays usable.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        if context::with_core(|_| ()).is_some() {
            panic!(
                "`block_on` called inside a running runtime; `.await` the future or \
                 `spawn` it instead"
            );
        }
        let _enter = Enter::new(self.core.clone());
        // Declared after `_enter`, so dropped before it: the future's destructors
        // run inside the runtime too.
        let future = pin!(future);
        run(&self.core, future)
    }

    /// Spawns `future` on this runtime, from outside `block_on`; it first runs at the
    /// next `block_on`. Inside, [`spawn`] does the same.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        self.core
            .executor
            .spawn(future, std::panic::Location::caller())
    }

    /// A handle to this runtime, to spawn onto it from other threads.
    pub fn handle(&self) -> Handle {
        self.core.handle()
    }

    /// A snapshot of the runtime's counters (see [`RuntimeMetrics`]). From other
    /// threads, use [`Handle::metrics`].
    pub fn metrics(&self) -> RuntimeMetrics {
        self.core.metrics()
    }

    /// Shuts the runtime down like dropping it does, but waits for running blocking
    /// jobs at most `timeout`; those still running then are left to finish on their
    /// own threads.
    ///
    /// # Panics
    ///
    /// If a task's destructor panicked (after the shutdown is complete).
    pub fn shutdown_timeout(self, timeout: Duration) {
        // An overflowing timeout is "for ever", like dropping.
        finish(&self.core, Instant::now().checked_add(timeout));
    }

    /// Shuts the runtime down without waiting for running blocking jobs.
    ///
    /// # Panics
    ///
    /// If a task's destructor panicked (after the shutdown is complete).
    pub fn shutdown_background(self) {
        finish(&self.core, Some(Instant::now()));
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        finish(&self.core, None);
    }
}

/// Shuts `core` down once; re-raises a task destructor's panic unless unwinding.
fn finish(core: &Rc<Core>, deadline: Option<Instant>) {
    if core.reactor.is_shut_down() {
        return;
    }
    let task_panic = core.shutdown(deadline);
    // Re-raised only now, with the runtime fully torn down. While unwinding
    // already, the first panic is the one that propagates.
    if let Some(payload) = task_panic
        && !std::thread::panicking()
    {
        std::panic::resume_unwind(payload);
    }
}

/// The event loop.
fn run<F: Future>(core: &Core, mut future: std::pin::Pin<&mut F>) -> F::Output {
    let main = Arc::new(TaskWaker::new(TaskId::MAIN, core.executor.inbox().clone()));
    let waker = Waker::from(main.clone());
    let mut cx = Context::from_waker(&waker);
    let mut woken_remotely = Vec::new();
    let mut jobs = Vec::new();
    loop {
        if main.take_queued() {
            let _budget = crate::coop::start_poll();
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
        core.executor.run(core.event_interval);
        if let Some(payload) = core.executor.take_unhandled_panic() {
            // `UnhandledPanic::ShutdownRuntime`: a task's panic nobody will see.
            std::panic::resume_unwind(payload);
        }
        let busy = core.executor.has_ready() || main.is_queued();
        let next_timer = core.timers.next_deadline();
        let paused = core.timers.is_paused();
        // A paused clock jumps only when nothing else can happen first: no blocking
        // job is out (its result may be what a task waits for), as in tokio.
        let may_jump = paused && core.blocking.in_flight() == 0;
        let timeout = match next_timer {
            _ if busy => Some(Duration::ZERO),
            // Paused: never wait for a timer, look at I/O and then jump the clock.
            Some(_) if may_jump => Some(Duration::ZERO),
            // Paused, a blocking job is out, and a timer is due on the paused clock.
            Some(_) if paused && core.timers.has_due() => Some(Duration::ZERO),
            // Paused, but a blocking job is out: wait for it (or for I/O).
            Some(_) if paused => None,
            Some(deadline) => Some(deadline.saturating_duration_since(core.timers.now())),
            None => None,
        };
        let turn = core
            .reactor
            .turn(timeout)
            .unwrap_or_else(|e| panic!("`epoll_wait` failed, the runtime cannot go on: {e}"));
        let mut found_work = turn.io_events > 0;
        if turn.notified {
            core.executor.inbox().drain(&mut woken_remotely, &mut jobs);
            let counters = &core.counters;
            counters
                .remote_wakes
                .set(counters.remote_wakes.get() + woken_remotely.len() as u64);
            counters
                .remote_jobs
                .set(counters.remote_jobs.get() + jobs.len() as u64);
            found_work |= !woken_remotely.is_empty() || !jobs.is_empty();
            for id in woken_remotely.drain(..) {
                core.executor.schedule(id);
            }
            for job in jobs.drain(..) {
                job();
            }
        }
        if next_timer.is_some()
            && may_jump
            && !busy
            && !core.executor.has_ready()
            && !main.is_queued()
        {
            core.timers.auto_advance();
        }
        // Free without timers (no clock read); a sleep registered into an empty
        // wheel brings the wheel's "now" up to date itself.
        found_work |= core.timers.fire() > 0;
        if !found_work && timeout != Some(Duration::ZERO) {
            let empty = &core.counters.empty_wakeups;
            empty.set(empty.get() + 1);
        }
    }
}

/// Runs `future` to completion on the current thread, driving every task spawned
/// meanwhile, and returns its output: [`Runtime::new`], then
/// [`Runtime::block_on`], then drop the runtime.
///
/// When the future completes, the tasks still running are dropped (inside the
/// runtime, so their destructors may use I/O), the epoll fd and the eventfd are
/// closed, and the blocking pool's running jobs are waited for. `block_on` may be
/// called again afterwards, each time with a fresh runtime.
///
/// While it runs, the thread's timer slack (`PR_SET_TIMERSLACK`) is 1 µs instead of
/// the kernel's 50 µs, so timers wake on time; the old value is restored on return.
///
/// # Panics
///
/// - If called while a runtime is running on this thread (`.await` the future or
///   `spawn` it instead).
/// - If `future` panics: the panic propagates after the remaining tasks are dropped.
/// - If the epoll fd or eventfd cannot be created (for example at the fd limit).
///
/// # Examples
///
/// ```
/// let answer = edgeloop_runtime::block_on(async {
///     let task = edgeloop_runtime::spawn(async { 40 });
///     task.await.unwrap() + 2
/// });
/// assert_eq!(answer, 42);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    if context::with_core(|_| ()).is_some() {
        panic!(
            "`block_on` called inside a running runtime; `.await` the future or `spawn` \
             it instead"
        );
    }
    let rt = Runtime::new()
        .unwrap_or_else(|e| panic!("`block_on` could not create its epoll fd or eventfd: {e}"));
    rt.block_on(future)
}

/// Spawns `future` as a new task on the current runtime and returns a handle to
/// await its output. The task starts at the back of the run queue.
///
/// The future need not be `Send`: tasks never leave the thread that runs
/// `block_on`. Dropping the handle detaches the task.
///
/// # Panics
///
/// If called outside [`block_on`].
///
/// # Examples
///
/// ```
/// edgeloop_runtime::block_on(async {
///     let shared = std::rc::Rc::new(5); // !Send is fine
///     let s = shared.clone();
///     let handle = edgeloop_runtime::spawn(async move { *s * 2 });
///     assert_eq!(handle.await.unwrap(), 10);
/// });
/// ```
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    spawn_at(future, std::panic::Location::caller())
}

/// [`spawn`] with the call site given (for spawns made on the user's behalf, such
/// as `Handle::spawn`'s, whose task starts on the runtime's thread later).
pub(crate) fn spawn_at<F>(
    future: F,
    spawned_at: &'static std::panic::Location<'static>,
) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    context::with_core(|core| core.executor.spawn(future, spawned_at)).unwrap_or_else(|| {
        panic!(
            "`spawn` called outside `block_on`; call it from inside the future passed to \
             `edgeloop::block_on`"
        )
    })
}

#[cfg(test)]
mod tests;
