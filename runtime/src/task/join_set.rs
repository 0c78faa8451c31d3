//! [`JoinSet`]: a collection of spawned tasks whose results come back in the order
//! the tasks end, built on [`crate::spawn`] and [`JoinHandle`] alone.
//!
//! # How a finished task is found without a scan
//!
//! Each spawned future is wrapped in a [`Tracked`] future that owns a [`Guard`].
//! The task cell drops its future in place as soon as the task ends, whether it
//! returned, panicked or was aborted, and then stores the outcome for the handle,
//! all within the same executor poll. Dropping the future drops the guard, which
//! pushes the task's key onto the set's [`Ready`] list and wakes the task waiting
//! in `join_next`. `join_next` pops a key, takes that handle out of the slab and
//! polls it once: O(1) per finished task, however many are still running.
//!
//! # Invariants
//! - Every key in the ready list names a reserved slot of the set's current slab,
//!   and is pushed at most once (a guard drops once). The one slot that can be
//!   named while empty is one whose `spawn` unwound before the handle was stored;
//!   it is freed when its key is popped.
//! - A slot is freed only when its result has been taken, so a key is never reused
//!   while it is in the ready list. `detach_all` and `Drop` close the ready list
//!   (their tasks' guards then push nothing), so no stale key reaches a reused slot.
//! - No `RefCell` borrow of the slab or the ready list is held while foreign code
//!   can run: polling a handle (it clones the caller's waker), dropping a handle or
//!   an output, cloning or waking a waker.
//!
//! Who calls it: user code, through `edgeloop::task::JoinSet`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::mem;
use std::panic::resume_unwind;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use crate::{JoinError, JoinHandle};

/// A collection of tasks spawned on the current runtime, joined in the order they
/// finish.
///
/// [`spawn`](JoinSet::spawn) adds a task; [`join_next`](JoinSet::join_next) waits for
/// the next one to end and returns its result, or `None` once the set is empty.
/// Results come back in *completion* order, not spawn order. Finding the next
/// finished task costs O(1) whatever the number of running ones, and a joined task
/// leaves nothing behind: its slot is reused by the next `spawn`.
///
/// Dropping the set aborts every task still in it (their futures are dropped the
/// next time the runtime gets to them); [`detach_all`](JoinSet::detach_all) lets
/// them run on instead.
///
/// Like the tasks it holds, a `JoinSet` stays on the runtime's thread (`!Send`):
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<edgeloop_runtime::task::JoinSet<()>>();
/// ```
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use edgeloop_runtime::task::JoinSet;
/// use edgeloop_runtime::time;
///
/// edgeloop_runtime::block_on(async {
///     time::pause();
///     let mut set = JoinSet::new();
///     for ms in [30, 10, 20] {
///         set.spawn(async move {
///             time::sleep(Duration::from_millis(ms)).await;
///             ms
///         });
///     }
///     assert_eq!(set.len(), 3);
///     let mut order = Vec::new();
///     while let Some(result) = set.join_next().await {
///         order.push(result.expect("the task neither panicked nor was aborted"));
///     }
///     assert_eq!(order, [10, 20, 30]); // the order they finished in
///     assert!(set.is_empty());
/// });
/// ```
pub struct JoinSet<T> {
    /// The tasks' handles, by key. Shared (weakly) with the [`AbortHandle`]s.
    slab: Rc<RefCell<Slab<T>>>,
    /// Keys of ended tasks and the joiner's waker; shared with every task's guard.
    ready: Rc<RefCell<Ready>>,
    /// Handles in the slab: the tasks not joined yet.
    len: usize,
}

/// The handles of a set's tasks, in slots reused through a free list.
struct Slab<T> {
    /// Indexed by key. A slot is reserved from just before its task is spawned
    /// until its result is taken.
    slots: Vec<Slot<T>>,
    /// Keys of unreserved slots, reused LIFO.
    free: Vec<usize>,
}

/// One slot of the [`Slab`].
struct Slot<T> {
    /// Bumped each time the slot is freed, so an [`AbortHandle`] of a task that was
    /// joined does not reach the next task in the slot.
    generation: u32,
    /// The task's handle; `None` while the slot is free, and for the moment between
    /// reserving the slot and storing the handle.
    handle: Option<JoinHandle<T>>,
}

/// The list of ended tasks, shared by a set and the guards of its tasks.
#[derive(Debug, Default)]
struct Ready {
    /// Keys of tasks whose future has been dropped, in the order they ended.
    keys: VecDeque<usize>,
    /// The task waiting in `join_next`. Taken by the first guard that fires, so a
    /// burst of tasks ending before the joiner runs wakes it once.
    waker: Option<Waker>,
    /// Set once the set is dropped or has detached its tasks: their guards then
    /// push nothing and wake nobody.
    closed: bool,
}

/// Reports its task's end to the set; owned by the task's [`Tracked`] future.
struct Guard {
    /// The set's ready list (of the set as it was when the task was spawned).
    ready: Rc<RefCell<Ready>>,
    /// The task's slot.
    key: usize,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let waker = {
            let mut ready = self.ready.borrow_mut();
            if ready.closed {
                return;
            }
            ready.keys.push_back(self.key);
            ready.waker.take()
        };
        // Woken outside the borrow: the joiner may be polled from inside `wake`.
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

pin_project! {
    /// A set's task: the user's future, then the guard that reports its end.
    ///
    /// Fields drop in declaration order, so the guard fires only once the user's
    /// future (and everything it owned) is gone.
    struct Tracked<F> {
        #[pin]
        future: F,
        guard: Guard,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().future.poll(cx)
    }
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Reserves a slot (empty until the handle is stored) and returns its key and
    /// generation.
    fn reserve(&mut self) -> (usize, u32) {
        let key = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                generation: 0,
                handle: None,
            });
            self.slots.len() - 1
        });
        (key, self.slots[key].generation)
    }

    /// Frees the (empty) slot `key` for reuse.
    fn release(&mut self, key: usize) {
        let slot = &mut self.slots[key];
        debug_assert!(slot.handle.is_none(), "released a slot that holds a handle");
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key);
    }
}

impl<T> JoinSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        JoinSet {
            slab: Rc::new(RefCell::new(Slab::new())),
            ready: Rc::default(),
            len: 0,
        }
    }

    /// The number of tasks in the set: spawned and not joined yet, whether still
    /// running or finished.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no task.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Waits for the next task to end and returns its result; `None` at once if the
    /// set is empty. Results come in the order the tasks ended. The task is removed
    /// from the set.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes loses no result: a task that ended
    /// meanwhile stays in the set for the next call.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop_runtime::task::JoinSet;
    ///
    /// edgeloop_runtime::block_on(async {
    ///     let mut set = JoinSet::new();
    ///     assert!(set.join_next().await.is_none());
    ///     set.spawn(async { 7 });
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), 7);
    ///     assert!(set.join_next().await.is_none());
    /// });
    /// ```
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        poll_fn(|cx| self.poll_join_next(cx)).await
    }

    /// The result of a task that has ended already, if any; `None` if the set is
    /// empty or every task in it is still running. Never waits.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop_runtime::task::JoinSet;
    ///
    /// edgeloop_runtime::block_on(async {
    ///     let mut set = JoinSet::new();
    ///     set.spawn(async { 1 });
    ///     assert!(set.try_join_next().is_none()); // not run yet
    ///     edgeloop_runtime::yield_now().await;
    ///     assert_eq!(set.try_join_next().unwrap().unwrap(), 1);
    /// });
    /// ```
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        self.take_ended(&mut Context::from_waker(Waker::noop()))
    }

    /// Polls for the next task to end: `Ready(Some(result))` for a task that ended,
    /// `Ready(None)` if the set is empty, `Pending` otherwise, in which case the
    /// waker of `cx` is woken when a task ends. Only the waker of the last call is
    /// kept.
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, JoinError>>> {
        if let Some(result) = self.take_ended(cx) {
            return Poll::Ready(Some(result));
        }
        if self.len == 0 {
            return Poll::Ready(None);
        }
        let stored = self
            .ready
            .borrow()
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if !stored {
            // Cloned, and the old one dropped, outside the borrow: a foreign waker's
            // clone or drop may run arbitrary code, even end a task of this set.
            let new = cx.waker().clone();
            let old = self.ready.borrow_mut().waker.replace(new);
            drop(old);
        }
        Poll::Pending
    }

    /// Pops ended tasks until one gives its result. `None` if no ended task is
    /// queued (or, defensively, if the first one has not stored its output yet).
    fn take_ended(&mut self, cx: &mut Context<'_>) -> Option<Result<T, JoinError>> {
        loop {
            let key = self.ready.borrow_mut().keys.pop_front()?;
            let taken = self.slab.borrow_mut().slots[key].handle.take();
            let Some(mut handle) = taken else {
                // Its `spawn` unwound before storing the handle (no runtime): the
                // guard fired when the future was dropped. Nothing to report.
                self.slab.borrow_mut().release(key);
                continue;
            };
            match Pin::new(&mut handle).poll(cx) {
                Poll::Ready(result) => {
                    self.slab.borrow_mut().release(key);
                    self.len -= 1;
                    // Dropped outside the borrows: dropping a handle may run the
                    // runtime's unhandled-panic policy.
                    drop(handle);
                    return Some(result);
                }
                Poll::Pending => {
                    // Cannot happen with today's task cell, which stores the output
                    // right after dropping the future, in the same poll. If it ever
                    // does, keep the key first in line; the handle has registered
                    // `cx`'s waker and wakes it when the output arrives.
                    self.slab.borrow_mut().slots[key].handle = Some(handle);
                    self.ready.borrow_mut().keys.push_front(key);
                    return None;
                }
            }
        }
    }

    /// Aborts every task in the set. They stay in the set: each comes back from
    /// [`join_next`](JoinSet::join_next) as a [`JoinError`] for which
    /// [`is_cancelled`](JoinError::is_cancelled) is true (or with its result, if it
    /// had ended already), once the runtime has dropped its future.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop_runtime::task::JoinSet;
    ///
    /// edgeloop_runtime::block_on(async {
    ///     let mut set = JoinSet::new();
    ///     set.spawn(std::future::pending::<()>());
    ///     set.abort_all();
    ///     assert!(set.join_next().await.unwrap().unwrap_err().is_cancelled());
    /// });
    /// ```
    pub fn abort_all(&mut self) {
        // A shared borrow across `abort`: it only queues the task through the
        // executor's own waker, which runs no user code, and an `AbortHandle` that
        // got here anyway would take a shared borrow too.
        let slab = self.slab.borrow();
        for handle in slab.slots.iter().filter_map(|s| s.handle.as_ref()) {
            handle.abort();
        }
    }

    /// Removes every task from the set without aborting it: the tasks run on, and
    /// their results are dropped when they end. The set is empty afterwards, and
    /// the `AbortHandle`s of those tasks no longer reach them (unlike tokio's).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use edgeloop_runtime::task::JoinSet;
    ///
    /// edgeloop_runtime::block_on(async {
    ///     let ran = Rc::new(Cell::new(false));
    ///     let mut set = JoinSet::new();
    ///     let r = ran.clone();
    ///     set.spawn(async move { r.set(true) });
    ///     set.detach_all();
    ///     drop(set);
    ///     edgeloop_runtime::yield_now().await;
    ///     assert!(ran.get());
    /// });
    /// ```
    pub fn detach_all(&mut self) {
        let old_slab = mem::replace(&mut self.slab, Rc::new(RefCell::new(Slab::new())));
        let old_ready = mem::take(&mut self.ready);
        self.len = 0;
        let waker = {
            let mut ready = old_ready.borrow_mut();
            ready.closed = true;
            ready.keys = VecDeque::new();
            ready.waker.take()
        };
        // Dropped outside any borrow: handles (their drop may run the runtime's
        // unhandled-panic policy for a task that panicked), outputs and a waker.
        drop((old_slab, old_ready, waker));
    }

    /// Aborts every task, then waits until each has ended, discarding the results.
    /// The set is empty afterwards, and every task's future has been dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop_runtime::task::JoinSet;
    ///
    /// edgeloop_runtime::block_on(async {
    ///     let mut set = JoinSet::new();
    ///     for _ in 0..3 {
    ///         set.spawn(std::future::pending::<()>());
    ///     }
    ///     set.shutdown().await;
    ///     assert!(set.is_empty());
    /// });
    /// ```
    pub async fn shutdown(&mut self) {
        self.abort_all();
        while self.join_next().await.is_some() {}
    }

    /// Waits for every task and returns their outputs, in the order the tasks
    /// ended (not the order they were spawned).
    ///
    /// # Panics
    ///
    /// If a task panicked, that panic is re-raised here (the first one to come
    /// back), and the tasks still running are aborted when the set is dropped. If a
    /// task was aborted, this panics with the [`JoinError`]. Use
    /// [`join_next`](JoinSet::join_next) to handle errors instead.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop_runtime::task::JoinSet;
    ///
    /// edgeloop_runtime::block_on(async {
    ///     let mut set = JoinSet::new();
    ///     for i in 0..3 {
    ///         set.spawn(async move { i * 10 });
    ///     }
    ///     let mut outputs = set.join_all().await;
    ///     outputs.sort();
    ///     assert_eq!(outputs, [0, 10, 20]);
    /// });
    /// ```
    pub async fn join_all(mut self) -> Vec<T> {
        let mut outputs = Vec::with_capacity(self.len);
        while let Some(result) = self.join_next().await {
            match result {
                Ok(output) => outputs.push(output),
                Err(error) => match error.try_into_panic() {
                    Ok(payload) => resume_unwind(payload),
                    Err(error) => panic!("a task of `JoinSet::join_all` failed: {error}"),
                },
            }
        }
        outputs
    }

    /// The number of slots the set has ever needed at once (its peak of live
    /// tasks); the slab never grows past it.
    #[cfg(test)]
    pub(crate) fn slot_capacity(&self) -> usize {
        self.slab.borrow().slots.len()
    }
}

impl<T: 'static> JoinSet<T> {
    /// Spawns `future` on the current runtime (like [`crate::spawn`]) as a task of
    /// this set, and returns an `AbortHandle` for it, which may be ignored.
    ///
    /// # Panics
    ///
    /// If called outside `block_on`. The set stays usable.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop_runtime::task::JoinSet;
    ///
    /// edgeloop_runtime::block_on(async {
    ///     let mut set = JoinSet::new();
    ///     set.spawn(async { "done" });
    ///     let stuck = set.spawn(std::future::pending::<&str>());
    ///     stuck.abort();
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), "done");
    ///     assert!(set.join_next().await.unwrap().unwrap_err().is_cancelled());
    /// });
    /// ```
    #[track_caller]
    pub fn spawn<F>(&mut self, future: F) -> AbortHandle
    where
        F: Future<Output = T> + 'static,
    {
        // The slot is reserved before the task exists: a task spawned while the
        // runtime shuts down is dropped inside `crate::spawn`, and its guard must
        // already name a slot that the handle will fill.
        let (key, generation) = self.slab.borrow_mut().reserve();
        let tracked = Tracked {
            future,
            guard: Guard {
                ready: self.ready.clone(),
                key,
            },
        };
        let handle = crate::spawn(tracked);
        self.slab.borrow_mut().slots[key].handle = Some(handle);
        self.len += 1;
        let slab: Rc<RefCell<dyn AbortSlot>> = self.slab.clone();
        AbortHandle {
            slab: Rc::downgrade(&slab),
            key,
            generation,
        }
    }
}

impl<T> Default for JoinSet<T> {
    fn default() -> Self {
        JoinSet::new()
    }
}

impl<T> Drop for JoinSet<T> {
    /// Aborts every task in the set.
    fn drop(&mut self) {
        self.abort_all();
        let waker = {
            let mut ready = self.ready.borrow_mut();
            ready.closed = true;
            ready.waker.take()
        };
        // Taken out and dropped outside the borrows, like in `detach_all`.
        let slots = mem::take(&mut self.slab.borrow_mut().slots);
        drop((slots, waker));
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Aborts one task of a [`JoinSet`]; returned by [`JoinSet::spawn`].
///
/// It reaches the task while the task is in the set. Once the task has been
/// joined, [`abort`](AbortHandle::abort) does nothing (the task has ended, and its
/// slot may hold another task by then, which is left alone); after
/// [`JoinSet::detach_all`] or dropping the set it does nothing either.
///
/// # Examples
///
/// ```
/// use edgeloop_runtime::task::JoinSet;
///
/// edgeloop_runtime::block_on(async {
///     let mut set = JoinSet::new();
///     let handle = set.spawn(std::future::pending::<()>());
///     handle.abort();
///     assert!(set.join_next().await.unwrap().unwrap_err().is_cancelled());
/// });
/// ```
pub struct AbortHandle {
    /// The set's slab; dead once the set is dropped or has detached its tasks.
    slab: Weak<RefCell<dyn AbortSlot>>,
    /// The task's slot.
    key: usize,
    /// The slot's generation when the task was spawned.
    generation: u32,
}

/// A slab seen by an [`AbortHandle`], whatever the tasks' output type.
trait AbortSlot {
    /// Aborts the task in slot `key`, if it is still the one of `generation`.
    fn abort(&self, key: usize, generation: u32);
}

impl<T> AbortSlot for Slab<T> {
    fn abort(&self, key: usize, generation: u32) {
        if let Some(Slot {
            generation: current,
            handle: Some(handle),
        }) = self.slots.get(key)
            && *current == generation
        {
            handle.abort();
        }
    }
}

impl AbortHandle {
    /// Aborts the task, as [`JoinHandle::abort`] does: its future is dropped the
    /// next time the runtime gets to it, and it comes back from
    /// [`JoinSet::join_next`] as cancelled. Does nothing if the task has ended
    /// already or is no longer in its set.
    pub fn abort(&self) {
        if let Some(slab) = self.slab.upgrade() {
            // Shared borrow: see `JoinSet::abort_all`.
            slab.borrow().abort(self.key, self.generation);
        }
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle")
            .field("key", &self.key)
            .field("generation", &self.generation)
            .finish()
    }
}

#[cfg(test)]
mod tests;
