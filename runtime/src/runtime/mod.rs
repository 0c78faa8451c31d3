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

use std::future::Future;
use std::os::fd::AsFd;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::context;
use crate::executor::waker::{Inbox, TaskId, TaskWaker};
use crate::executor::{Executor, JoinHandle};
use crate::reactor::Reactor;
use crate::sys::{eventfd, prctl};
use crate::time::Timers;

/// Tasks polled between two looks at epoll: a task that is always ready cannot
/// starve I/O for longer than this many polls.
pub(crate) const BUDGET: usize = 61;

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
}

impl Core {
    fn new() -> std::io::Result<Self> {
        let notifier = eventfd::eventfd()?;
        let reactor = Reactor::new(notifier.as_fd())?;
        Ok(Core {
            executor: Executor::new(Arc::new(Inbox::new(notifier))),
            reactor: Rc::new(reactor),
            timers: Rc::new(Timers::new()),
        })
    }
}

/// Leaves the runtime when `block_on` returns or unwinds: drops the remaining tasks
/// inside the context (their destructors may deregister I/O), then clears the
/// context and closes the epoll fd and the eventfd.
struct Enter {
    core: Rc<Core>,
    /// The thread's timer slack before `block_on`, restored when it returns.
    saved_slack: Option<u64>,
}

impl Enter {
    fn new(core: Rc<Core>) -> Self {
        context::enter(core.clone());
        // Best effort: where prctl is refused, timers are merely up to 50 µs later.
        let saved_slack = prctl::timer_slack()
            .ok()
            .filter(|_| prctl::set_timer_slack(TIMER_SLACK_NS).is_ok());
        Enter { core, saved_slack }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        let task_panic = self.core.executor.shutdown();
        self.core.timers.clear();
        let current = context::leave();
        self.core.reactor.shutdown();
        self.core.executor.inbox().close();
        drop(current);
        if let Some(slack) = self.saved_slack {
            // Ignored: setting back a value the kernel gave us cannot fail.
            let _ = prctl::set_timer_slack(slack);
        }
        // Re-raised only now, with the thread out of the runtime and its fds closed,
        // so a panicking destructor leaves nothing half torn down. While unwinding
        // already, the first panic is the one that propagates.
        if let Some(payload) = task_panic
            && !std::thread::panicking()
        {
            std::panic::resume_unwind(payload);
        }
    }
}

/// Runs `future` to completion on the current thread, driving every task spawned
/// meanwhile, and returns its output.
///
/// When the future completes, the tasks still running are dropped (inside the
/// runtime, so their destructors may use I/O), and the epoll fd and the eventfd are
/// closed. `block_on` may be called again afterwards, each time with a fresh runtime.
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
    let core =
        Rc::new(Core::new().unwrap_or_else(|e| {
            panic!("`block_on` could not create its epoll fd or eventfd: {e}")
        }));
    let _enter = Enter::new(core.clone());
    // Declared after `_enter`, so dropped before it: the future's destructors run
    // inside the runtime too.
    let mut future = pin!(future);
    let main = Arc::new(TaskWaker::new(TaskId::MAIN, core.executor.inbox().clone()));
    let waker = Waker::from(main.clone());
    let mut cx = Context::from_waker(&waker);
    let mut woken_remotely = Vec::new();
    loop {
        if main.take_queued()
            && let Poll::Ready(output) = future.as_mut().poll(&mut cx)
        {
            return output;
        }
        core.executor.run(BUDGET);
        let busy = core.executor.has_ready() || main.is_queued();
        let next_timer = core.timers.next_deadline();
        let paused = core.timers.is_paused();
        let timeout = match next_timer {
            _ if busy => Some(Duration::ZERO),
            // Paused: never wait for a timer, look at I/O and then jump the clock.
            Some(_) if paused => Some(Duration::ZERO),
            Some(deadline) => Some(deadline.saturating_duration_since(core.timers.now())),
            None => None,
        };
        let notified = core
            .reactor
            .turn(timeout)
            .unwrap_or_else(|e| panic!("`epoll_wait` failed, the runtime cannot go on: {e}"));
        if notified {
            core.executor.inbox().drain(&mut woken_remotely);
            for id in woken_remotely.drain(..) {
                core.executor.schedule(id);
            }
        }
        if next_timer.is_some()
            && paused
            && !busy
            && !core.executor.has_ready()
            && !main.is_queued()
        {
            core.timers.auto_advance();
        }
        // Every turn, timers or not: it also brings the wheel's notion of "now" up
        // to date, against which new sleeps check whether they are over already.
        core.timers.fire();
    }
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
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    context::with_core(|core| core.executor.spawn(future)).unwrap_or_else(|| {
        panic!(
            "`spawn` called outside `block_on`; call it from inside the future passed to \
             `edgeloop::block_on`"
        )
    })
}
