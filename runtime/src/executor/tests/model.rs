//! A property test of the executor's waker table and run queue against a model.
//!
//! # What runs
//!
//! Each case drives a real [`Executor`] from inside one poll of a `block_on` future
//! (so the runtime is current and a wake on this thread takes the local path) with a
//! random list of [`Op`]s. Its tasks are [`ProbeFuture`]s: when polled, a probe counts
//! the poll and does what its shared [`Script`] says (wake itself, spawn a child task,
//! then stay pending, complete with a value, or panic). The harness wakes tasks
//! through their wakers (several times in a row, by reference or by value, and from
//! another thread, which goes through the [`Inbox`]); drains the inbox and schedules
//! what it held, as the runtime's loop does; aborts, drops and polls `JoinHandle`s;
//! and runs the executor for a budget of polls. Wakers of finished tasks are kept and
//! woken again, so stale wakes hit slots that a newer task may occupy. Each case ends
//! with [`Executor::shutdown`], stale wakes after it, and a spawn after it.
//!
//! # The model
//!
//! [`Model`] is a plain simulation: per task, whether it is queued, whether an abort
//! is pending, its polls and how it ended; the run queue and the inbox as lists of
//! tasks (a finished task's entry stays in the queue and is skipped, using up one
//! unit of the budget, like the executor's); the slab as generations, occupants and a
//! LIFO free list, so the model predicts each task's [`TaskId`]; and the metrics
//! counters.
//!
//! # Invariants checked after every operation
//!
//! - Queued at most once: the run queue equals the model's entry by entry, and holds
//!   each live task at most once; a burst of wakes makes exactly one poll.
//! - Generation bumps on reuse: slot generations, occupants and the free list equal
//!   the model's, every spawn gets the predicted id, and a stale wake leaves the run
//!   queue untouched (so the slot's new occupant is not polled for it).
//! - Each task's future is polled exactly as often as the model says, and dropped
//!   exactly once, when the task ends; its `queued` flag matches the model (and stays
//!   set once it has ended).
//! - `live_tasks` and the metrics (`spawned_tasks`, `completed_tasks`,
//!   `panicked_tasks`, `aborted_tasks`, `polls`, `live_tasks`, `queued_tasks`) equal
//!   the model's.
//! - `JoinHandle`s: `is_finished` follows the task; a poll gives `Pending` while the
//!   task lives, then the output, a panic (`is_panic`, with the task's payload) or a
//!   cancellation (`is_cancelled`, for aborts and shutdown); a handle that was polled
//!   while pending has its waker woken exactly once when the task ends.
//! - Shutdown drops every task, records "cancelled" for them without counting aborts,
//!   and afterwards wakes queue nothing and a new spawn is cancelled at once.
//!
//! Tasks panic with [`resume_unwind`], which skips the panic hook, so the many
//! panicking tasks print nothing.

use super::*;

use std::collections::VecDeque;
use std::panic::{Location, resume_unwind};
use std::task::Context;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

use crate::RuntimeMetrics;

// ---------------------------------------------------------------------------------
// Controllable tasks
// ---------------------------------------------------------------------------------

/// The payload of a task that panics on purpose.
const TASK_PANIC: &str = "model task panic";

/// How a poll of a probe task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Return `Pending`.
    Pending,
    /// Return `Ready` with this output.
    Complete(u32),
    /// Panic (without the panic hook) with [`TASK_PANIC`].
    Panic,
}

/// What a probe task does each time it is polled, until the harness changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Script {
    /// Wake its own waker during the poll, first thing.
    wake_self: bool,
    /// Spawn one child task (with [`IDLE`]) during the poll, after any self-wake;
    /// cleared once done, so a script spawns one child.
    spawn_child: bool,
    /// How the poll ends.
    end: End,
}

/// A task that stays pending and does nothing else.
const IDLE: Script = Script {
    wake_self: false,
    spawn_child: false,
    end: End::Pending,
};

/// Where probe futures leave the tasks they spawn, for the harness to adopt after
/// the run.
type Sink = Rc<RefCell<Vec<Probe>>>;

/// A controllable task: follows its [`Script`], counts its polls and its drops.
struct ProbeFuture {
    /// What to do when polled; shared with the harness.
    script: Rc<Cell<Script>>,
    /// Polls so far.
    polls: Rc<Cell<u32>>,
    /// Drops so far (0 or 1).
    drops: Rc<Cell<u32>>,
    /// Where children spawned by this task go.
    sink: Sink,
}

impl Future for ProbeFuture {
    type Output = u32;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        self.polls.set(self.polls.get() + 1);
        let script = self.script.get();
        if script.wake_self {
            cx.waker().wake_by_ref();
        }
        if script.spawn_child {
            self.script.set(Script {
                spawn_child: false,
                ..script
            });
            let child = with_executor(|e| spawn_probe(e, IDLE, &self.sink));
            self.sink.borrow_mut().push(child);
        }
        match script.end {
            End::Pending => Poll::Pending,
            End::Complete(output) => Poll::Ready(output),
            End::Panic => resume_unwind(Box::new(TASK_PANIC)),
        }
    }
}

impl Drop for ProbeFuture {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
    }
}

/// The harness's side of one spawned probe task.
struct Probe {
    /// Id the executor gave the task (read from the back of the run queue).
    id: TaskId,
    /// A waker of the task, taken from its slot: stays valid (and wakeable) after
    /// the task ends, as a stale waker.
    task_waker: Waker,
    /// The task's script.
    script: Rc<Cell<Script>>,
    /// Polls of the task's future.
    polls: Rc<Cell<u32>>,
    /// Drops of the task's future.
    drops: Rc<Cell<u32>>,
    /// The handle, until the harness drops it.
    handle: Option<JoinHandle<u32>>,
    /// Counts the wakes of [`join_waker`](Self::join_waker).
    join_wakes: Arc<WakeCounter>,
    /// The waker the harness polls the handle with.
    join_waker: Waker,
}

impl Probe {
    /// A new waker for the task (same task state, as a clone would be).
    fn waker(&self) -> Waker {
        self.task_waker.clone()
    }
}

/// A probe future with `script`, and the cells the harness reads it through.
fn probe_future(script: Script, sink: &Sink) -> (ProbeFuture, [Rc<Cell<u32>>; 2]) {
    let polls = Rc::new(Cell::new(0));
    let drops = Rc::new(Cell::new(0));
    let future = ProbeFuture {
        script: Rc::new(Cell::new(script)),
        polls: polls.clone(),
        drops: drops.clone(),
        sink: sink.clone(),
    };
    (future, [polls, drops])
}

/// Spawns a probe task with `script` on `e` (not shut down) and returns its side.
fn spawn_probe(e: &Executor, script: Script, sink: &Sink) -> Probe {
    let (future, [polls, drops]) = probe_future(script, sink);
    let script = future.script.clone();
    let handle = e.spawn(future, Location::caller());
    let id = *e
        .run_queue
        .borrow()
        .back()
        .expect("a new task is at the back of the run queue");
    let task_waker = e.tasks.borrow().slots[id.index as usize]
        .task
        .as_ref()
        .and_then(|task| task.cell.as_ref())
        .expect("a new task's slot is occupied")
        .waker();
    let (join_wakes, join_waker) = counting_waker();
    Probe {
        id,
        task_waker,
        script,
        polls,
        drops,
        handle: Some(handle),
        join_wakes,
        join_waker,
    }
}

// ---------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Its future returned this.
    Completed(u32),
    /// Its future panicked.
    Panicked,
    /// It was aborted through its handle.
    Aborted,
    /// It was dropped by the executor's shutdown.
    Cancelled,
}

/// Where a task's `JoinHandle` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandleState {
    /// Held, result not taken.
    Held,
    /// Held, result taken (polling it again would panic).
    Joined,
    /// Dropped.
    Dropped,
}

/// The model of one task.
#[derive(Debug, Clone)]
struct ModelTask {
    /// The id the executor must give it.
    id: TaskId,
    /// Its script, as the harness last set it.
    script: Script,
    /// In the run queue or the inbox (a live task only).
    queued: bool,
    /// `abort` was called; the next run drops it.
    abort_requested: bool,
    /// Polls of its future.
    polls: u32,
    /// How it ended; `None` while it lives.
    fate: Option<Fate>,
    /// Its handle.
    handle: HandleState,
    /// The handle was polled while the task lived, so its waker is stored.
    join_registered: bool,
    /// Wakes of the handle's waker.
    join_wakes: usize,
}

/// The executor as the test expects it to behave.
#[derive(Debug, Default)]
struct Model {
    /// Every task spawned, in spawn order (the harness's probes have the same order).
    tasks: Vec<ModelTask>,
    /// The run queue, front first; an entry of a task that has ended is stale.
    queue: VecDeque<usize>,
    /// Tasks woken from another thread since the last drain.
    inbox: Vec<usize>,
    /// Generation of each slot.
    generations: Vec<u32>,
    /// Task in each slot.
    occupants: Vec<Option<usize>>,
    /// Free slots, reused last in, first out.
    free: Vec<u32>,
    /// Tasks that have not ended.
    live: usize,
    /// Tasks spawned.
    spawned: u64,
    /// Tasks that completed.
    completed: u64,
    /// Tasks that panicked.
    panicked: u64,
    /// Tasks aborted.
    aborted: u64,
    /// Polls in all (an aborted task's last run counts as one).
    polls: u64,
}

impl Model {
    /// A task spawned with `script`: at the back of the queue, in the most recently
    /// freed slot (or a new one). Returns its number.
    fn spawn(&mut self, script: Script) -> usize {
        let index = self.free.pop().unwrap_or_else(|| {
            self.generations.push(0);
            self.occupants.push(None);
            u32::try_from(self.generations.len() - 1).expect("few slots")
        });
        let t = self.tasks.len();
        self.occupants[index as usize] = Some(t);
        self.tasks.push(ModelTask {
            id: TaskId {
                index,
                generation: self.generations[index as usize],
            },
            script,
            queued: true,
            abort_requested: false,
            polls: 0,
            fate: None,
            handle: HandleState::Held,
            join_registered: false,
            join_wakes: 0,
        });
        self.queue.push_back(t);
        self.live += 1;
        self.spawned += 1;
        t
    }

    /// A wake of task `t` from this thread (`remote`: from another one). Returns
    /// whether it queued the task.
    fn wake(&mut self, t: usize, remote: bool) -> bool {
        let task = &mut self.tasks[t];
        if task.fate.is_some() || task.queued {
            return false;
        }
        task.queued = true;
        if remote {
            self.inbox.push(t);
        } else {
            self.queue.push_back(t);
        }
        true
    }

    /// `JoinHandle::abort` on task `t`.
    fn abort(&mut self, t: usize) {
        if self.tasks[t].fate.is_none() {
            self.tasks[t].abort_requested = true;
            self.wake(t, false);
        }
    }

    /// Moves the inbox to the back of the run queue; returns what it held.
    fn drain(&mut self) -> Vec<usize> {
        let drained = std::mem::take(&mut self.inbox);
        self.queue.extend(drained.iter().copied());
        drained
    }

    /// `Executor::run(budget)`.
    fn run(&mut self, budget: usize) {
        for _ in 0..budget {
            let Some(t) = self.queue.pop_front() else {
                return;
            };
            if self.tasks[t].fate.is_none() {
                self.poll(t);
            }
        }
    }

    /// One poll of live task `t`, as its script says.
    fn poll(&mut self, t: usize) {
        self.polls += 1;
        let task = &mut self.tasks[t];
        task.queued = false;
        if task.abort_requested {
            self.aborted += 1;
            self.end(t, Fate::Aborted);
            return;
        }
        task.polls += 1;
        let script = task.script;
        task.script.spawn_child = false;
        if script.wake_self {
            self.wake(t, false);
        }
        if script.spawn_child {
            self.spawn(IDLE);
        }
        match script.end {
            End::Pending => {}
            End::Complete(output) => {
                self.completed += 1;
                self.end(t, Fate::Completed(output));
            }
            End::Panic => {
                self.panicked += 1;
                self.end(t, Fate::Panicked);
            }
        }
    }

    /// Task `t` ends with `fate`: its slot is freed under the next generation.
    fn end(&mut self, t: usize, fate: Fate) {
        let task = &mut self.tasks[t];
        task.fate = Some(fate);
        task.queued = false;
        if task.join_registered {
            task.join_wakes += 1;
        }
        let index = task.id.index;
        let generation = &mut self.generations[index as usize];
        *generation = generation.wrapping_add(1);
        self.occupants[index as usize] = None;
        self.free.push(index);
        self.live -= 1;
    }

    /// `Executor::shutdown`: every live task ends, in slot order, as cancelled.
    fn shutdown(&mut self) {
        for index in 0..self.occupants.len() {
            if let Some(t) = self.occupants[index] {
                self.end(t, Fate::Cancelled);
            }
        }
        self.queue.clear();
    }
}

// ---------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------

/// One step of a case. A `task` field names the task `task % tasks spawned`; with no
/// task spawned yet, the step does nothing.
#[derive(Debug, Clone)]
enum Op {
    /// Spawn a task with this script.
    Spawn(Script),
    /// Change what a task does at its next polls.
    SetScript { task: usize, script: Script },
    /// Wake a task `times` times in a row from this thread, through one waker by
    /// reference or through a fresh waker by value each time.
    Wake {
        task: usize,
        times: u8,
        by_value: bool,
    },
    /// Wake a task `times` times from another thread (through the inbox); joined
    /// before the next step.
    WakeRemote { task: usize, times: u8 },
    /// Drain the inbox and schedule what it held, as the runtime's loop does.
    DrainInbox,
    /// `JoinHandle::abort`, if the handle is still held.
    Abort { task: usize },
    /// Drop the handle, if still held.
    DropHandle { task: usize },
    /// Poll the handle once, if its result was not taken yet.
    Join { task: usize },
    /// `Executor::run` with this budget.
    Run(usize),
}

/// How a poll ends: pending mostly, so that tasks live across steps.
fn end_strategy() -> impl Strategy<Value = End> {
    prop_oneof![
        5 => Just(End::Pending),
        3 => any::<u32>().prop_map(End::Complete),
        2 => Just(End::Panic),
    ]
}

/// A task's script.
fn script_strategy() -> impl Strategy<Value = Script> {
    (
        prop::bool::weighted(0.25),
        prop::bool::weighted(0.15),
        end_strategy(),
    )
        .prop_map(|(wake_self, spawn_child, end)| Script {
            wake_self,
            spawn_child,
            end,
        })
}

/// One step. Small run budgets, so queues build up; now and then a large one.
fn op_strategy() -> impl Strategy<Value = Op> {
    let task = 0..128_usize;
    prop_oneof![
        4 => script_strategy().prop_map(Op::Spawn),
        3 => (task.clone(), script_strategy())
            .prop_map(|(task, script)| Op::SetScript { task, script }),
        4 => (task.clone(), 1..=8_u8, any::<bool>())
            .prop_map(|(task, times, by_value)| Op::Wake { task, times, by_value }),
        2 => (task.clone(), 1..=4_u8).prop_map(|(task, times)| Op::WakeRemote { task, times }),
        2 => Just(Op::DrainInbox),
        1 => task.clone().prop_map(|task| Op::Abort { task }),
        1 => task.clone().prop_map(|task| Op::DropHandle { task }),
        2 => task.prop_map(|task| Op::Join { task }),
        4 => prop_oneof![4 => 1..=4_usize, 1 => Just(64_usize)].prop_map(Op::Run),
    ]
}

/// A case: up to 64 steps (fewer under Miri).
fn ops_strategy() -> impl Strategy<Value = Vec<Op>> {
    let max = if cfg!(miri) { 24 } else { 64 };
    prop::collection::vec(op_strategy(), 0..=max)
}

// ---------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------

/// Applies [`Op`]s to a real executor and to the model, and compares them.
struct Harness<'e> {
    /// The executor of the runtime running this case.
    e: &'e Executor,
    /// What it should look like.
    model: Model,
    /// The real tasks, in the model's order.
    probes: Vec<Probe>,
    /// Children spawned by tasks during a run, not adopted yet.
    sink: Sink,
}

impl<'e> Harness<'e> {
    /// A harness for `e`, which has no task yet.
    fn new(e: &'e Executor) -> Self {
        Harness {
            e,
            model: Model::default(),
            probes: Vec::new(),
            sink: Sink::default(),
        }
    }

    /// Runs a whole case: every step, each followed by the checks, then shutdown.
    fn replay(mut self, ops: &[Op]) -> Result<(), TestCaseError> {
        for (step, op) in ops.iter().enumerate() {
            self.apply(op)
                .and_then(|()| self.check())
                .map_err(|e| TestCaseError::fail(format!("step {step} ({op:?}): {e}")))?;
        }
        self.shut_down()
            .map_err(|e| TestCaseError::fail(format!("at shutdown: {e}")))
    }

    /// The task a step names, if any task was spawned.
    fn pick(&self, task: usize) -> Option<usize> {
        (!self.probes.is_empty()).then(|| task % self.probes.len())
    }

    /// Applies `op` to the executor and to the model; checks what is specific to
    /// the step (ids of new tasks, drained ids, stale wakes, join results).
    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Spawn(script) => {
                let probe = spawn_probe(self.e, script, &self.sink);
                let t = self.model.spawn(script);
                prop_assert_eq!(probe.id, self.model.tasks[t].id, "id of spawned task {}", t);
                self.probes.push(probe);
            }
            Op::SetScript { task, script } => {
                if let Some(t) = self.pick(task) {
                    self.probes[t].script.set(script);
                    self.model.tasks[t].script = script;
                }
            }
            Op::Wake {
                task,
                times,
                by_value,
            } => {
                if let Some(t) = self.pick(task) {
                    self.wake_local(t, times, by_value)?;
                }
            }
            Op::WakeRemote { task, times } => {
                if let Some(t) = self.pick(task) {
                    let waker = self.probes[t].waker();
                    thread::spawn(move || {
                        for _ in 0..times {
                            waker.wake_by_ref();
                        }
                    })
                    .join()
                    .map_err(|_| TestCaseError::fail("the waking thread panicked"))?;
                    self.model.wake(t, true);
                }
            }
            Op::DrainInbox => self.drain_inbox()?,
            Op::Abort { task } => {
                if let Some(t) = self.pick(task)
                    && let Some(handle) = &self.probes[t].handle
                {
                    handle.abort();
                    self.model.abort(t);
                }
            }
            Op::DropHandle { task } => {
                if let Some(t) = self.pick(task) {
                    drop(self.probes[t].handle.take());
                    self.model.tasks[t].handle = HandleState::Dropped;
                }
            }
            Op::Join { task } => {
                if let Some(t) = self.pick(task) {
                    self.join(t)?;
                }
            }
            Op::Run(budget) => {
                self.e.run(budget);
                self.model.run(budget);
                self.adopt_children()?;
            }
        }
        Ok(())
    }

    /// Wakes task `t` `times` times from this thread. A task that has ended must
    /// leave the run queue as it was, whoever occupies its slot now.
    fn wake_local(&mut self, t: usize, times: u8, by_value: bool) -> Result<(), TestCaseError> {
        let before = self.real_queue();
        let waker = self.probes[t].waker();
        for _ in 0..times {
            if by_value {
                self.probes[t].waker().wake();
            } else {
                waker.wake_by_ref();
            }
        }
        if let Some(fate) = self.model.tasks[t].fate {
            prop_assert_eq!(
                &self.real_queue(),
                &before,
                "{} stale wakes of task {} (ended: {:?}) changed the run queue",
                times,
                t,
                fate
            );
        }
        self.model.wake(t, false);
        Ok(())
    }

    /// Drains the inbox into the run queue; it must hold what the model's does.
    fn drain_inbox(&mut self) -> Result<(), TestCaseError> {
        let (mut ids, mut jobs) = (Vec::new(), Vec::new());
        self.e.inbox().drain(&mut ids, &mut jobs);
        prop_assert!(jobs.is_empty(), "{} jobs in the inbox", jobs.len());
        let expected: Vec<TaskId> = self
            .model
            .drain()
            .into_iter()
            .map(|t| self.model.tasks[t].id)
            .collect();
        prop_assert_eq!(&ids, &expected, "ids drained from the inbox");
        for id in ids {
            self.e.schedule(id);
        }
        Ok(())
    }

    /// Polls task `t`'s handle once, unless it is gone or its result was taken.
    fn join(&mut self, t: usize) -> Result<(), TestCaseError> {
        let model = &mut self.model.tasks[t];
        if model.handle != HandleState::Held {
            return Ok(());
        }
        let probe = &mut self.probes[t];
        let handle = probe.handle.as_mut().expect("the model says it is held");
        let polled = Pin::new(handle).poll(&mut Context::from_waker(&probe.join_waker));
        match (model.fate, polled) {
            (None, Poll::Pending) => model.join_registered = true,
            (Some(fate), Poll::Ready(result)) => {
                model.handle = HandleState::Joined;
                check_result(t, fate, result)?;
            }
            (fate, polled) => {
                prop_assert!(false, "task {t}: handle gave {polled:?}, model: {fate:?}");
            }
        }
        Ok(())
    }

    /// Takes over the children that tasks spawned during a run; they must be the
    /// ones the model spawned, with the ids it predicted.
    fn adopt_children(&mut self) -> Result<(), TestCaseError> {
        let children: Vec<Probe> = self.sink.borrow_mut().drain(..).collect();
        prop_assert_eq!(
            self.probes.len() + children.len(),
            self.model.tasks.len(),
            "tasks after the run ({} spawned by tasks)",
            children.len()
        );
        for child in children {
            let t = self.probes.len();
            prop_assert_eq!(child.id, self.model.tasks[t].id, "id of spawned task {}", t);
            self.probes.push(child);
        }
        Ok(())
    }

    /// The executor's run queue, front first.
    fn real_queue(&self) -> Vec<TaskId> {
        self.e.run_queue.borrow().iter().copied().collect()
    }

    /// Compares the executor with the model.
    fn check(&self) -> Result<(), TestCaseError> {
        let model = &self.model;

        let mut metrics = RuntimeMetrics::default();
        self.e.fill_metrics(&mut metrics);
        prop_assert_eq!(metrics.spawned_tasks, model.spawned, "spawned_tasks");
        prop_assert_eq!(metrics.completed_tasks, model.completed, "completed_tasks");
        prop_assert_eq!(metrics.panicked_tasks, model.panicked, "panicked_tasks");
        prop_assert_eq!(metrics.aborted_tasks, model.aborted, "aborted_tasks");
        prop_assert_eq!(metrics.polls, model.polls, "polls");
        prop_assert_eq!(metrics.live_tasks, model.live, "metrics live_tasks");
        prop_assert_eq!(metrics.queued_tasks, model.queue.len(), "queued_tasks");
        prop_assert_eq!(self.e.live_tasks(), model.live, "Executor::live_tasks");

        let queue = self.real_queue();
        for (t, task) in model.tasks.iter().enumerate() {
            if task.fate.is_none() {
                let entries = queue.iter().filter(|&&id| id == task.id).count();
                prop_assert!(
                    entries <= 1,
                    "live task {} ({:?}) is {} times in the run queue {:?}",
                    t,
                    task.id,
                    entries,
                    queue
                );
            }
        }
        let expected: Vec<TaskId> = model.queue.iter().map(|&t| model.tasks[t].id).collect();
        prop_assert_eq!(
            &queue,
            &expected,
            "run queue (model: tasks {:?})",
            model.queue
        );

        {
            let tasks = self.e.tasks.borrow();
            prop_assert_eq!(tasks.slots.len(), model.generations.len(), "slots");
            for (index, slot) in tasks.slots.iter().enumerate() {
                prop_assert_eq!(
                    slot.generation,
                    model.generations[index],
                    "generation of slot {}",
                    index
                );
                match (&slot.task, model.occupants[index]) {
                    (None, None) => {}
                    (Some(task), Some(t)) => prop_assert!(
                        task.cell
                            .as_ref()
                            .is_some_and(|cell| cell.is_woken_by(&self.probes[t].task_waker)),
                        "slot {index} holds another task than task {t}"
                    ),
                    (task, t) => prop_assert!(
                        false,
                        "slot {index} occupied: {}, model: task {t:?}",
                        task.is_some()
                    ),
                }
            }
            prop_assert_eq!(&tasks.free, &model.free, "free list");
        }

        for (t, (probe, task)) in self.probes.iter().zip(&model.tasks).enumerate() {
            let ended = task.fate.is_some();
            let (waker_id, waker_queued) = task::waker_task_state(&probe.task_waker);
            prop_assert_eq!(waker_id, task.id, "task {}: waker's id", t);
            prop_assert_eq!(probe.polls.get(), task.polls, "task {}: polls", t);
            prop_assert_eq!(
                probe.drops.get(),
                u32::from(ended),
                "task {}: drops of its future (fate {:?})",
                t,
                task.fate
            );
            prop_assert_eq!(
                waker_queued,
                task.queued || ended,
                "task {}: `queued` flag (fate {:?})",
                t,
                task.fate
            );
            if let Some(handle) = &probe.handle {
                prop_assert_eq!(handle.is_finished(), ended, "task {}: is_finished", t);
                prop_assert_eq!(
                    probe.join_wakes.count(),
                    task.join_wakes,
                    "task {}: wakes of the handle's waker",
                    t
                );
            }
        }
        Ok(())
    }

    /// Shuts the executor down and checks what follows: every task ends cancelled,
    /// stale wakes queue nothing, a late spawn is cancelled at once.
    fn shut_down(mut self) -> Result<(), TestCaseError> {
        self.drain_inbox()?;
        let panic = self.e.shutdown();
        prop_assert!(panic.is_none(), "a task's destructor panicked");
        self.model.shutdown();
        self.check()?;
        for t in 0..self.probes.len() {
            self.join(t)?;
        }

        let wakers: Vec<Waker> = self.probes.iter().map(Probe::waker).collect();
        for waker in &wakers {
            waker.wake_by_ref();
        }
        thread::spawn(move || wakers.into_iter().for_each(Waker::wake))
            .join()
            .map_err(|_| TestCaseError::fail("the waking thread panicked"))?;
        self.drain_inbox()?;
        self.check()?;

        let (future, [polls, drops]) = probe_future(IDLE, &self.sink);
        let mut late = self.e.spawn(future, Location::caller());
        self.model.spawned += 1;
        prop_assert!(
            late.is_finished(),
            "task spawned after shutdown not finished"
        );
        prop_assert_eq!(
            (polls.get(), drops.get()),
            (0, 1),
            "late task: (polls, drops)"
        );
        let polled = Pin::new(&mut late).poll(&mut Context::from_waker(Waker::noop()));
        prop_assert!(
            matches!(&polled, Poll::Ready(Err(e)) if e.is_cancelled()),
            "late task's handle gave {polled:?}"
        );
        self.check()
    }
}

/// Checks the result of task `t`'s handle against how the model says it ended.
fn check_result(t: usize, fate: Fate, result: Result<u32, JoinError>) -> Result<(), TestCaseError> {
    match (fate, result) {
        (Fate::Completed(expected), Ok(output)) => {
            prop_assert_eq!(output, expected, "task {}: output", t);
        }
        (Fate::Panicked, Err(e)) if e.is_panic() => {
            let message = panic_message(&*e.into_panic());
            prop_assert_eq!(message.as_str(), TASK_PANIC, "task {}: panic payload", t);
        }
        (Fate::Aborted | Fate::Cancelled, Err(e)) if e.is_cancelled() => {}
        (fate, result) => prop_assert!(false, "task {t}: handle gave {result:?}, model: {fate:?}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

/// Runs one case on a runtime of its own, inside its `block_on` future, on a thread
/// of its own (bounded in time, like the other executor tests).
fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    bounded("executor model case", move || {
        block_on(async move { with_executor(|e| Harness::new(e).replay(&ops)) })
    })
}

/// 256 cases (8 under Miri); failures are not written to the source tree.
fn model_config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 8 } else { 256 },
        failure_persistence: None,
        // A failing case shrinks to a handful of steps in a few seconds; under Miri
        // it is reported as found (rerun it natively to shrink it).
        max_shrink_iters: if cfg!(miri) { 0 } else { 4096 },
        ..ProptestConfig::default()
    }
}

/// Random cases: the executor and the model agree after every step.
#[test]
fn executor_agrees_with_the_model() {
    let mut runner = TestRunner::new(model_config());
    if let Err(failure) = runner.run(&ops_strategy(), run_case) {
        panic!("{failure}");
    }
}

/// The paths the invariants are about, replayed deterministically so they are
/// covered whatever the random cases hit.
#[test]
fn model_scenarios() {
    let pending_self_waking = Script {
        wake_self: true,
        ..IDLE
    };
    let complete = |output| Script {
        end: End::Complete(output),
        ..IDLE
    };
    let scenarios: Vec<(&str, Vec<Op>)> = vec![
        (
            "a burst of wakes makes one poll",
            vec![
                Op::Spawn(IDLE),
                Op::Run(1),
                Op::Wake {
                    task: 0,
                    times: 8,
                    by_value: false,
                },
                Op::Wake {
                    task: 0,
                    times: 3,
                    by_value: true,
                },
                Op::WakeRemote { task: 0, times: 4 },
                Op::DrainInbox,
                Op::Run(64),
            ],
        ),
        (
            "a stale waker does not poll the slot's next occupant",
            vec![
                Op::Spawn(complete(7)),
                Op::Run(1),
                Op::Spawn(IDLE),
                Op::Run(1),
                Op::Wake {
                    task: 0,
                    times: 5,
                    by_value: false,
                },
                Op::WakeRemote { task: 0, times: 2 },
                Op::DrainInbox,
                Op::Run(64),
                Op::Join { task: 0 },
            ],
        ),
        (
            "a queued wake of an ended task is skipped after its slot is reused",
            vec![
                // Wakes itself, then completes: its wake stays queued.
                Op::Spawn(Script {
                    wake_self: true,
                    spawn_child: true,
                    end: End::Complete(1),
                }),
                Op::Run(1),
                // Takes the freed slot 0, behind the stale entry.
                Op::Spawn(IDLE),
                Op::Run(64),
                Op::Join { task: 0 },
            ],
        ),
        (
            "a remote wake and a local wake of the same task queue it once",
            vec![
                Op::Spawn(IDLE),
                Op::Run(1),
                Op::WakeRemote { task: 0, times: 1 },
                Op::Wake {
                    task: 0,
                    times: 1,
                    by_value: false,
                },
                Op::Run(64),
                Op::DrainInbox,
                Op::Run(64),
            ],
        ),
        (
            "abort, panic and join",
            vec![
                Op::Spawn(IDLE),
                Op::Spawn(pending_self_waking),
                Op::Join { task: 0 },
                Op::Run(3),
                // Task 0 is idle, not queued: the abort must queue it.
                Op::Abort { task: 0 },
                Op::Abort { task: 0 },
                Op::SetScript {
                    task: 1,
                    script: Script {
                        end: End::Panic,
                        ..IDLE
                    },
                },
                Op::Run(64),
                Op::Join { task: 0 },
                Op::Join { task: 1 },
                Op::Spawn(IDLE),
                Op::DropHandle { task: 2 },
            ],
        ),
    ];
    for (name, ops) in scenarios {
        if let Err(e) = run_case(ops) {
            panic!("scenario {name:?}: {e}");
        }
    }
}
