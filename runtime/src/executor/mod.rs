//! The executor: a FIFO run queue and a waker table (a slab of tasks with
//! generations). It knows tasks and wakers, nothing of fds.
//!
//! # Invariants
//! - A task is in the run queue at most once: only the wake that flips its
//!   `queued` flag enqueues it ([`waker`]).
//! - An id in the queue whose slot has since been freed (generation moved on) is
//!   skipped, so a queued wake of a finished task is harmless.
//! - No `RefCell` borrow is held while a future is polled or dropped: both may wake
//!   or spawn tasks, which re-enters the executor.
//!
//! Who calls it: `runtime.rs` runs it ([`Executor::run`]) and shuts it down;
//! [`crate::spawn`] adds tasks; wakers schedule them.

mod join_handle;
// The second place `unsafe` is allowed in the runtime (besides `sys`): the task
// block and its waker, reference-counted by hand (see the module's docs).
#[allow(unsafe_code)]
mod task;
pub(crate) mod waker;

pub use join_handle::{JoinError, JoinHandle};
pub(crate) use task::Outcome;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use task::TaskRef;
use waker::{Inbox, TaskId};

/// What to do with a task's panic that nobody will see (its `JoinHandle` was
/// dropped, or dropped without taking the result).
///
/// Set with [`Builder::unhandled_panic`](crate::Builder::unhandled_panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnhandledPanic {
    /// Drop it (the panic message was printed by the panic hook when it happened).
    #[default]
    Ignore,
    /// End the runtime's `block_on` with that panic (it propagates from
    /// `block_on`), so a test fails loudly instead of hanging on a dead task.
    ShutdownRuntime,
}

/// Hands a panic nobody will see to the current runtime's policy.
pub(crate) fn report_unhandled_panic(error: JoinError) {
    crate::context::with_core(|core| {
        let executor = &core.executor;
        if executor.panic_policy == UnhandledPanic::ShutdownRuntime {
            let mut slot = executor.unhandled_panic.borrow_mut();
            if slot.is_none() {
                *slot = error.try_into_panic().ok();
            }
        }
    });
}

/// Run queue and task table of one runtime.
#[derive(Debug)]
pub(crate) struct Executor {
    /// The waker table.
    tasks: RefCell<Tasks>,
    /// Tasks to poll, in wake order.
    run_queue: RefCell<VecDeque<TaskId>>,
    /// Where other threads' wakes arrive; shared with every task's waker.
    inbox: Arc<Inbox>,
    /// Set during shutdown: a task spawned then (by a destructor) is dropped at once.
    shutting_down: Cell<bool>,
    /// Totals for [`RuntimeMetrics`](crate::RuntimeMetrics).
    counters: Counters,
    /// How the task being polled says it ended, if it hands its outcome over itself
    /// (a `Handle::spawn` task catches its own panic and abort, so to the cell it
    /// looks completed): see [`Executor::override_outcome`].
    outcome_override: Cell<Option<Outcome>>,
    /// What to do with a panic nobody will see.
    pub(crate) panic_policy: UnhandledPanic,
    /// The first such panic under `ShutdownRuntime`, for `block_on` to raise.
    unhandled_panic: RefCell<Option<Box<dyn std::any::Any + Send>>>,
    /// Slow-poll detection, if on (off: no clock read per poll).
    slow_poll: Option<SlowPollConfig>,
}

/// The executor's totals since the runtime was created: plain cells, bumped on the
/// runtime's thread only.
#[derive(Debug, Default)]
struct Counters {
    polls: Cell<u64>,
    spawned: Cell<u64>,
    budget_yields: Cell<u64>,
    completed: Cell<u64>,
    panicked: Cell<u64>,
    aborted: Cell<u64>,
}

/// Adds one to a counter.
#[inline]
fn bump(counter: &Cell<u64>) {
    counter.set(counter.get() + 1);
}

#[derive(Default)]
struct Tasks {
    /// Slots, indexed by `TaskId::index`.
    slots: Vec<Slot>,
    /// Free slot indices, reused LIFO (warm in cache).
    free: Vec<u32>,
    /// Number of occupied slots.
    live: usize,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("slots", &self.slots.len())
            .field("live", &self.live)
            .finish()
    }
}

#[derive(Default)]
struct Slot {
    /// Bumped each time the slot is freed.
    generation: u32,
    /// The task, while it lives.
    task: Option<Task>,
}

struct Task {
    /// The task's block (future, join state, waker state); `None` while it is
    /// being polled (taken out so no borrow is held).
    cell: Option<TaskRef>,
    /// Where the task was spawned (`#[track_caller]`), for slow-poll reports.
    spawned_at: &'static Location<'static>,
    /// Whether a slow poll of this task was reported already (once per task).
    slow_reported: bool,
}

/// A poll that took longer than the runtime's
/// [`slow_poll_threshold`](crate::Builder::slow_poll_threshold): what
/// [`on_slow_poll`](crate::Builder::on_slow_poll) hooks receive. Its `Display` is the
/// line the default hook prints on stderr.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SlowPoll {
    /// The task's id in its runtime (slot and generation; unique among live tasks).
    pub task_id: u64,
    /// Where the task was spawned.
    pub spawned_at: &'static Location<'static>,
    /// How long the poll took.
    pub duration: Duration,
    /// The threshold it crossed.
    pub threshold: Duration,
}

impl std::fmt::Display for SlowPoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "edgeloop: task {} (spawned at {}) blocked the runtime for {:.1?} in one poll \
             (slow-poll threshold {:?}); move blocking work to `spawn_blocking`",
            self.task_id, self.spawned_at, self.duration, self.threshold
        )
    }
}

/// A hook for slow polls.
pub(crate) type SlowPollHook = Arc<dyn Fn(&SlowPoll) + Send + Sync>;

/// Slow-poll detection settings: threshold and hook.
#[derive(Clone)]
pub(crate) struct SlowPollConfig {
    pub(crate) threshold: Duration,
    pub(crate) hook: SlowPollHook,
}

impl std::fmt::Debug for SlowPollConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlowPollConfig")
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// The task being polled, out of its slot; put back if a panic unwinds out of
/// [`Executor::poll_task`] before it is done with it.
struct PutBack<'a> {
    executor: &'a Executor,
    id: TaskId,
    cell: Option<TaskRef>,
}

impl Drop for PutBack<'_> {
    fn drop(&mut self) {
        let Some(cell) = self.cell.take() else {
            return; // the normal path: `poll_task` took it back
        };
        let mut tasks = self.executor.tasks.borrow_mut();
        let slot = &mut tasks.slots[self.id.index as usize];
        // The slot is still this task's: only `poll_task` (this one, which has not
        // got that far) and shutdown (never during a poll) free it. Were it not, the
        // panic below, during unwinding, would abort: better than letting a live
        // future go to the last waker.
        match slot.task.as_mut() {
            Some(task) if slot.generation == self.id.generation => task.cell = Some(cell),
            _ => unreachable!("task slot freed while its task was being polled"),
        }
    }
}

impl Drop for Task {
    /// A task dropped before it finished (at shutdown) drops its future now and
    /// records "cancelled" for its handle.
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            cell.cancel();
        }
    }
}

impl Executor {
    pub(crate) fn new(
        inbox: Arc<Inbox>,
        panic_policy: UnhandledPanic,
        slow_poll: Option<SlowPollConfig>,
    ) -> Self {
        Executor {
            tasks: RefCell::new(Tasks::default()),
            run_queue: RefCell::new(VecDeque::new()),
            inbox,
            shutting_down: Cell::new(false),
            counters: Counters::default(),
            outcome_override: Cell::new(None),
            panic_policy,
            unhandled_panic: RefCell::new(None),
            slow_poll,
        }
    }

    /// The inbox that this executor's wakers use from other threads.
    pub(crate) fn inbox(&self) -> &Arc<Inbox> {
        &self.inbox
    }

    /// Stores `future` as a new task at the back of the run queue; `spawned_at` is
    /// the user's call site, for slow-poll reports.
    pub(crate) fn spawn<F>(
        &self,
        future: F,
        spawned_at: &'static Location<'static>,
    ) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        bump(&self.counters.spawned);
        if self.shutting_down.get() {
            let (cell, joinable) = task::new_task(future, TaskId::MAIN, self.inbox.clone());
            cell.retire();
            cell.cancel();
            return JoinHandle::new(joinable);
        }
        let (id, joinable) = {
            let mut tasks = self.tasks.borrow_mut();
            let index = match tasks.free.pop() {
                Some(i) => i,
                None => {
                    let i = u32::try_from(tasks.slots.len())
                        .ok()
                        .filter(|&i| i < TaskId::MAIN.index)
                        .expect("more than u32::MAX - 1 live tasks in one runtime");
                    tasks.slots.push(Slot::default());
                    i
                }
            };
            let slot = &mut tasks.slots[index as usize];
            let id = TaskId {
                index,
                generation: slot.generation,
            };
            let (cell, joinable) = task::new_task(future, id, self.inbox.clone());
            slot.task = Some(Task {
                cell: Some(cell),
                spawned_at,
                slow_reported: false,
            });
            tasks.live += 1;
            (id, joinable)
        };
        self.run_queue.borrow_mut().push_back(id);
        JoinHandle::new(joinable)
    }

    /// Puts a woken task at the back of the run queue. The `block_on` future is not
    /// queued: its own flag says it was woken.
    pub(crate) fn schedule(&self, id: TaskId) {
        if id != TaskId::MAIN {
            self.run_queue.borrow_mut().push_back(id);
        }
    }

    /// Whether any task is waiting to be polled.
    pub(crate) fn has_ready(&self) -> bool {
        !self.run_queue.borrow().is_empty()
    }

    /// Polls up to `budget` queued tasks in FIFO order. A task woken while this runs
    /// goes to the back and may be polled in the same call, within the budget.
    pub(crate) fn run(&self, budget: usize) {
        for _ in 0..budget {
            let Some(id) = self.run_queue.borrow_mut().pop_front() else {
                return;
            };
            self.poll_task(id);
        }
    }

    fn poll_task(&self, id: TaskId) {
        let cell = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(slot) = tasks.slots.get_mut(id.index as usize) else {
                return;
            };
            if slot.generation != id.generation {
                return; // the task finished after this wake was queued
            }
            let Some(cell) = slot.task.as_mut().and_then(|task| task.cell.take()) else {
                return;
            };
            // Cleared before the poll: a wake during it queues the task again.
            cell.take_queued();
            cell
        };
        // Until the end of the bookkeeping, a panic that unwinds out of it (a
        // slow-poll hook, a join waker's `wake`, an unseen output's destructor)
        // puts the task back in its slot rather than dropping this reference: the
        // executor must let go of a task only once its future is gone, or the
        // last waker, maybe on another thread, would drop it (see `task.rs`).
        let mut polling = PutBack {
            executor: self,
            id,
            cell: Some(cell),
        };
        let cell = polling.cell.as_ref().expect("just stored");
        bump(&self.counters.polls);
        let started = self.slow_poll.as_ref().map(|_| Instant::now());
        let outcome = cell.with_waker(|waker| {
            let _budget = crate::coop::start_poll();
            cell.run(&mut Context::from_waker(waker))
        });
        // Taken after every poll, so a stale value never reaches another task.
        let outcome = outcome.map(|o| self.outcome_override.take().unwrap_or(o));
        if let Some(started) = started {
            self.check_slow_poll(id, started.elapsed());
        }
        let cell = polling.cell.take().expect("taken only here");
        let mut tasks = self.tasks.borrow_mut();
        let slot = &mut tasks.slots[id.index as usize];
        let Poll::Ready(outcome) = outcome else {
            let task = slot
                .task
                .as_mut()
                .expect("task slot freed while its task was being polled");
            task.cell = Some(cell);
            return;
        };
        bump(match outcome {
            Outcome::Completed => &self.counters.completed,
            Outcome::Panicked => &self.counters.panicked,
            Outcome::Aborted => &self.counters.aborted,
        });
        let task = slot.task.take();
        slot.generation = slot.generation.wrapping_add(1);
        tasks.free.push(id.index);
        tasks.live -= 1;
        drop(tasks);
        cell.retire();
        // The finished task's block (its stage is `Done`) and the emptied slot
        // entry are dropped outside the borrow.
        drop((task, cell));
    }

    /// Reports the poll of task `id` that took `took`, if it crossed the threshold
    /// and is the task's first such poll.
    #[cold]
    fn check_slow_poll(&self, id: TaskId, took: Duration) {
        let Some(config) = &self.slow_poll else {
            return;
        };
        if took < config.threshold {
            return;
        }
        let report = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(task) = tasks.slots[id.index as usize].task.as_mut() else {
                return; // not reached: the slot is freed only after this check
            };
            if std::mem::replace(&mut task.slow_reported, true) {
                return;
            }
            SlowPoll {
                task_id: u64::from(id.generation) << 32 | u64::from(id.index),
                spawned_at: task.spawned_at,
                duration: took,
                threshold: config.threshold,
            }
        };
        // Outside the borrow: the hook is user code.
        (config.hook)(&report);
    }

    /// Drops every task, inside the runtime context so destructors may still
    /// deregister I/O. Tasks spawned by those destructors are dropped at once.
    ///
    /// A destructor that panics does not stop the others: every task is dropped,
    /// and the first panic's payload is returned for the caller to re-raise once the
    /// runtime is fully torn down.
    pub(crate) fn shutdown(&self) -> Option<Box<dyn std::any::Any + Send>> {
        let mut first_panic = None;
        self.shutting_down.set(true);
        loop {
            let taken: Vec<Task> = {
                let mut tasks = self.tasks.borrow_mut();
                let mut taken = Vec::with_capacity(tasks.live);
                let Tasks { slots, free, live } = &mut *tasks;
                for (index, slot) in slots.iter_mut().enumerate() {
                    if let Some(task) = slot.task.take() {
                        if let Some(cell) = &task.cell {
                            cell.retire();
                        }
                        slot.generation = slot.generation.wrapping_add(1);
                        free.push(u32::try_from(index).expect("slot index fits in u32"));
                        *live -= 1;
                        taken.push(task);
                    }
                }
                taken
            };
            if taken.is_empty() {
                break;
            }
            for task in taken {
                let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(task)));
                if let Err(payload) = dropped {
                    first_panic.get_or_insert(payload);
                }
            }
        }
        self.run_queue.borrow_mut().clear();
        first_panic
    }

    /// Number of live tasks (for leak tests and metrics).
    pub(crate) fn live_tasks(&self) -> usize {
        self.tasks.borrow().live
    }

    /// The panic that ends `block_on` under `UnhandledPanic::ShutdownRuntime`.
    pub(crate) fn take_unhandled_panic(&self) -> Option<Box<dyn std::any::Any + Send>> {
        self.unhandled_panic.borrow_mut().take()
    }

    /// Makes the task being polled, which is finishing, count as `outcome` rather
    /// than as what its cell saw (for tasks that catch their own panic or abort).
    pub(crate) fn override_outcome(&self, outcome: Outcome) {
        self.outcome_override.set(Some(outcome));
    }

    /// Counts an operation that yielded because its task's budget was spent.
    pub(crate) fn note_budget_yield(&self) {
        bump(&self.counters.budget_yields);
    }

    /// Copies the executor's counters into `m`.
    pub(crate) fn fill_metrics(&self, m: &mut crate::RuntimeMetrics) {
        let c = &self.counters;
        m.live_tasks = self.live_tasks();
        m.spawned_tasks = c.spawned.get();
        m.completed_tasks = c.completed.get();
        m.panicked_tasks = c.panicked.get();
        m.aborted_tasks = c.aborted.get();
        m.polls = c.polls.get();
        m.queued_tasks = self.run_queue.borrow().len();
        m.budget_yields = c.budget_yields.get();
    }
}

#[cfg(test)]
mod tests;
