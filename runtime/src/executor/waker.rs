//! Task wakers and the cross-thread inbox.
//!
//! A spawned task's [`Waker`](std::task::Waker) points at the task's own block (see
//! `task.rs`); the `block_on` future's is an `Arc<TaskWaker>` through
//! [`std::task::Wake`]. Both wake through [`wake_task`]. Waking sets the task's
//! `queued` flag; only the wake that flips it from `false` to `true` enqueues
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
    /// The `block_on` future's waker state, set woken: the future is polled first
    /// thing.
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
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        wake_task(&self.queued, &self.inbox, self.id);
    }
}

/// Wakes task `id` whose flag is `queued`: only the wake that sets the flag queues
/// the task, on the local run queue when `inbox` is the current runtime's (no
/// lock), else through the inbox.
pub(crate) fn wake_task(queued: &AtomicBool, inbox: &Arc<Inbox>, id: TaskId) {
    if queued.swap(true, Ordering::AcqRel) {
        return; // already queued, or finished
    }
    if !crate::context::schedule_local(inbox, id) {
        inbox.push(id);
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
    /// late wake never writes to a closed (or reused) fd number. Shared so that a
    /// waker writes to it after releasing the lock: the fd closes when the last
    /// clone goes, never under a writer.
    eventfd: Option<Arc<OwnedFd>>,
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

impl InboxState {
    /// The eventfd to write to, if no write is pending since the last drain.
    fn take_notify(&mut self) -> Option<Arc<OwnedFd>> {
        if self.notified {
            return None;
        }
        let fd = self.eventfd.clone()?;
        self.notified = true;
        Some(fd)
    }
}

/// Writes to the eventfd (outside the inbox lock).
fn ring(fd: Option<Arc<OwnedFd>>) {
    let Some(fd) = fd else {
        return;
    };
    if eventfd::eventfd_write(fd.as_fd()).is_err() {
        // EAGAIN: the counter is at its maximum (after 2^64 - 2 unread writes). It is
        // readable already, but reset it so later writes succeed, and write again to
        // make an edge.
        let _ = eventfd::eventfd_read(fd.as_fd());
        let _ = eventfd::eventfd_write(fd.as_fd());
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
                eventfd: Some(Arc::new(eventfd)),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InboxState> {
        // Nothing panics while the lock is held, so a poisoned lock holds valid data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `id` and makes sure the loop wakes up. A no-op after shutdown.
    pub(crate) fn push(&self, id: TaskId) {
        let fd = {
            let mut state = self.lock();
            if state.eventfd.is_none() {
                return;
            }
            state.ids.push(id);
            state.take_notify()
        };
        ring(fd);
    }

    /// Queues `job` to run on the runtime's thread and makes sure the loop wakes up.
    /// After shutdown the job comes back, for the caller to drop.
    pub(crate) fn push_job(&self, job: Job) -> Result<(), Job> {
        let fd = {
            let mut state = self.lock();
            if state.eventfd.is_none() {
                return Err(job);
            }
            state.jobs.push(job);
            state.take_notify()
        };
        ring(fd);
        Ok(())
    }

    /// Makes the loop go round once more (to look at state that changed on another
    /// thread). A no-op after shutdown.
    pub(crate) fn notify(&self) {
        let fd = self.lock().take_notify();
        ring(fd);
    }

    /// Moves every queued id into `ids` and every job into `jobs`.
    ///
    /// The eventfd is not read: it is registered edge-triggered, and every write
    /// makes a new edge whatever its counter holds, so resetting it would only cost
    /// a syscall per wakeup.
    pub(crate) fn drain(&self, ids: &mut Vec<TaskId>, jobs: &mut Vec<Job>) {
        let mut state = self.lock();
        state.notified = false;
        ids.append(&mut state.ids);
        jobs.append(&mut state.jobs);
    }

    /// Whether a notification was sent that the loop has not drained yet (for
    /// tests).
    #[cfg(test)]
    pub(crate) fn is_notified(&self) -> bool {
        self.lock().notified
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
