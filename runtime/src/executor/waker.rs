//! Task wakers and the cross-thread inbox.
//!
//! A task's [`Waker`](std::task::Waker) is an `Arc<TaskWaker>` through
//! [`std::task::Wake`]: `Send + Sync` with no hand-written vtable. Waking sets the
//! task's `queued` flag; only the wake that flips it from `false` to `true` enqueues
//! the task, so a burst of wakes queues it once. A wake on the runtime's own thread
//! pushes onto the local run queue without locks; a wake from any other thread goes
//! through the [`Inbox`] (a mutex-guarded list) and an eventfd write that interrupts
//! `epoll_wait`. When a task finishes, `queued` is set for good, so a later wake is a
//! no-op.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Wake;

use crate::sys::eventfd;

/// Names a task slot: index into the table plus the generation it had when the task
/// was spawned, so an id that outlives its task matches nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskId {
    /// Slot index in the task table.
    pub(crate) index: u32,
    /// Generation of the slot when the task was stored.
    pub(crate) generation: u32,
}

impl TaskId {
    /// The `block_on` future, which lives outside the task table.
    pub(crate) const MAIN: TaskId = TaskId {
        index: u32::MAX,
        generation: 0,
    };
}

/// The shared half of a task: what a `Waker` points at.
#[derive(Debug)]
pub(crate) struct TaskWaker {
    /// Which task to run.
    pub(crate) id: TaskId,
    /// Set while the task is in a run queue (or forever once it has finished); the
    /// executor clears it just before polling, so a wake during the poll queues the
    /// task again.
    queued: AtomicBool,
    /// Where wakes from other threads go.
    inbox: Arc<Inbox>,
}

impl TaskWaker {
    /// A waker for a task that is queued already (a new task is polled first thing).
    pub(crate) fn new(id: TaskId, inbox: Arc<Inbox>) -> Self {
        TaskWaker {
            id,
            queued: AtomicBool::new(true),
            inbox,
        }
    }

    /// Clears `queued` before a poll; returns whether it was set (for the `block_on`
    /// future: whether it was woken).
    ///
    /// `AcqRel`: acquires what the waker published before its wake, so the poll sees it.
    pub(crate) fn take_queued(&self) -> bool {
        self.queued.swap(false, Ordering::AcqRel)
    }

    /// Whether the task is queued (or, for the `block_on` future, woken).
    pub(crate) fn is_queued(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }

    /// Marks a finished task queued for good, so later wakes are no-ops.
    pub(crate) fn retire(&self) {
        self.queued.store(true, Ordering::Release);
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return; // already queued, or finished
        }
        if !crate::context::schedule_local(&self.inbox, self.id) {
            self.inbox.push(self.id);
        }
    }
}

/// The runtime's mailbox for wakes from other threads.
#[derive(Debug)]
pub(crate) struct Inbox {
    /// Everything behind one lock; held only for a push or a drain.
    inner: Mutex<InboxState>,
}

/// Work sent from another thread to run on the runtime's thread (a
/// [`Handle::spawn`](crate::Handle::spawn)).
pub(crate) type Job = Box<dyn FnOnce() + Send>;

struct InboxState {
    /// Tasks woken from other threads since the last drain.
    ids: Vec<TaskId>,
    /// Jobs sent from other threads since the last drain.
    jobs: Vec<Job>,
    /// Whether the eventfd was written since the last drain; saves a syscall per
    /// wake when many arrive before the loop runs.
    notified: bool,
    /// The eventfd the reactor watches; `None` once the runtime has shut down, so a
    /// late wake never writes to a closed (or reused) fd number.
    eventfd: Option<OwnedFd>,
}

impl std::fmt::Debug for InboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxState")
            .field("ids", &self.ids)
            .field("jobs", &self.jobs.len())
            .field("notified", &self.notified)
            .field("eventfd", &self.eventfd)
            .finish()
    }
}

impl Inbox {
    /// An inbox that signals through `eventfd`.
    pub(crate) fn new(eventfd: OwnedFd) -> Self {
        Inbox {
            inner: Mutex::new(InboxState {
                ids: Vec::new(),
                jobs: Vec::new(),
                notified: false,
                eventfd: Some(eventfd),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InboxState> {
        // Nothing panics while the lock is held, so a poisoned lock holds valid data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `id` and makes sure the loop wakes up. A no-op after shutdown.
    pub(crate) fn push(&self, id: TaskId) {
        let mut state = self.lock();
        let Some(fd) = state.eventfd.as_ref() else {
            return;
        };
        if !state.notified {
            // Ignored: the only failure for an open eventfd is EAGAIN at a counter of
            // u64::MAX - 1, and then it is readable already, which is all we need.
            let _ = eventfd::eventfd_write(fd.as_fd());
            state.notified = true;
        }
        state.ids.push(id);
    }

    /// Queues `job` to run on the runtime's thread and makes sure the loop wakes up.
    /// After shutdown the job comes back, for the caller to drop.
    pub(crate) fn push_job(&self, job: Job) -> Result<(), Job> {
        let mut state = self.lock();
        let Some(fd) = state.eventfd.as_ref() else {
            return Err(job);
        };
        if !state.notified {
            // Ignored, as in `push`.
            let _ = eventfd::eventfd_write(fd.as_fd());
            state.notified = true;
        }
        state.jobs.push(job);
        Ok(())
    }

    /// Moves every queued id into `ids` and every job into `jobs`, and resets the
    /// eventfd.
    pub(crate) fn drain(&self, ids: &mut Vec<TaskId>, jobs: &mut Vec<Job>) {
        let mut state = self.lock();
        if let Some(fd) = state.eventfd.as_ref() {
            // Ignored: WouldBlock means the counter was zero already.
            let _ = eventfd::eventfd_read(fd.as_fd());
        }
        state.notified = false;
        ids.append(&mut state.ids);
        jobs.append(&mut state.jobs);
    }

    /// Closes the eventfd; later pushes are dropped. Jobs still queued are dropped
    /// here, outside the lock (their destructors report "cancelled").
    pub(crate) fn close(&self) {
        let (fd, jobs) = {
            let mut state = self.lock();
            state.ids.clear();
            (state.eventfd.take(), std::mem::take(&mut state.jobs))
        };
        drop(fd);
        drop(jobs);
    }
}
