//! What the executor stores per spawned task: one heap block, the [`TaskCell`],
//! holding the task's header (reference count, `queued` flag, id), the
//! [`JoinState`] its [`JoinHandle`](super::JoinHandle) reads, and the user's future.
//! The task's [`Waker`] points at that same block, so a task costs one allocation,
//! and a poll touches one block of memory and no reference count.
//!
//! The executor holds a [`TaskRef`], the handle a [`JoinRef`], and each waker a
//! reference of its own; the block goes when the last of them does. This module
//! is the one place that counts those references by hand (tokio and async-task do
//! the same: a `Waker` must be `Send + Sync`, which an `Rc` cannot be, while the
//! future in the same block is `!Send`).
//!
//! # Why a waker may free the block on another thread
//!
//! Wakers are `Send`: the last reference may go on any thread, and freeing runs the
//! cell's destructor there. The cell's `!Send` contents (the future, and the output
//! of type `T`) must be gone by then, on the runtime's thread:
//! - the future: the executor drops its `TaskRef` only after the stage is `Done`
//!   (the task returned, panicked or was cancelled: see [`TaskRef::run`] and
//!   [`TaskRef::cancel`], and `Task`'s destructor in the executor, which cancels).
//!   A panic that unwinds out of a poll's bookkeeping (a slow-poll hook, say)
//!   puts the task back in its slot (the executor's `PutBack` guard) instead of
//!   dropping the reference, so shutdown still cancels it on the runtime's thread;
//! - the output: the handle (`!Send`) takes it or, when dropped, drops it; a task
//!   that finishes after its handle was dropped drops its output at once
//!   ([`TaskCell::complete`]).
//!
//! What is left for a foreign thread to drop: the header's `Arc<Inbox>` (`Send +
//! Sync`), the join waker (a `Waker`) and the empty `Stage::Done` / `None`.

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use pin_project_lite::pin_project;

use super::JoinError;
use super::waker::{Inbox, TaskId, wake_task};

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
    /// Set when the handle is dropped: nobody will ever see the output.
    pub(crate) detached: bool,
}

pin_project! {
    #[project = StageProj]
    enum Stage<F> {
        Running { #[pin] future: F },
        Done,
    }
}

/// How a task ended (for the runtime's metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Its future returned.
    Completed,
    /// Its future (or, when aborted, the future's destructor) panicked.
    Panicked,
    /// It was aborted and its future dropped.
    Aborted,
}

/// The part of a task that wakers use, from any thread: first in every
/// [`TaskCell`], so a pointer to the cell is a pointer to its header.
pub(crate) struct Header {
    /// References: the executor's, the handle's, and one per waker.
    refs: AtomicUsize,
    /// Set while the task is in the run queue (or for good once it has finished);
    /// the executor clears it just before a poll, so a wake during the poll queues
    /// the task again. Only the wake that sets it queues the task.
    queued: AtomicBool,
    /// The task's slot and generation. Written before any reference is shared.
    id: TaskId,
    /// Where wakes from other threads go.
    inbox: Arc<Inbox>,
    /// The operations that need the future's type.
    vtable: &'static TaskVtable,
}

/// The operations of a [`TaskCell<F>`] for one `F`, reached through its header.
///
/// # Safety
///
/// Each entry trusts that its header pointer is a live `TaskCell` of the `F` the
/// vtable was made for; see each function's own `# Safety`.
struct TaskVtable {
    /// [`TaskCell::run`] (# Safety: as `run_raw`).
    run: unsafe fn(NonNull<Header>, &mut Context<'_>) -> Poll<Outcome>,
    /// [`TaskCell::cancel`] (# Safety: as `cancel_raw`).
    cancel: unsafe fn(NonNull<Header>),
    /// The address of the cell's `RefCell<JoinState<F::Output>>` (# Safety: as
    /// `state_raw`).
    state: unsafe fn(NonNull<Header>) -> NonNull<()>,
    /// Drops the cell and frees its memory (# Safety: as `dealloc_raw`).
    dealloc: unsafe fn(NonNull<Header>),
}

/// A spawned task in one allocation. `repr(C)` puts the header at offset 0.
#[repr(C)]
struct TaskCell<F: Future> {
    header: Header,
    state: RefCell<JoinState<F::Output>>,
    /// Structurally pinned: the cell never moves (it is a heap block reached only
    /// through raw pointers until it is freed), and the stage is only ever changed
    /// in place through `Pin::set` (which drops the old value where it lies).
    stage: RefCell<Stage<F>>,
}

/// Makes the cell for `future`, task `id` of the runtime whose inbox is `inbox`,
/// queued: one reference for the executor, one for the handle.
pub(crate) fn new_task<F>(future: F, id: TaskId, inbox: Arc<Inbox>) -> (TaskRef, JoinRef<F::Output>)
where
    F: Future + 'static,
    F::Output: 'static,
{
    let cell = Box::new(TaskCell {
        header: Header {
            refs: AtomicUsize::new(2),
            queued: AtomicBool::new(true),
            id,
            inbox,
            vtable: &TaskCell::<F>::VTABLE,
        },
        state: RefCell::new(JoinState {
            output: None,
            finished: false,
            cancel_requested: false,
            join_waker: None,
            detached: false,
        }),
        stage: RefCell::new(Stage::Running { future }),
    });
    // A pointer with the provenance of the whole block (not derived from a
    // reference to the header field), so it can be cast back to the cell.
    let ptr = NonNull::from(Box::leak(cell)).cast::<Header>();
    (
        TaskRef { ptr },
        JoinRef {
            ptr,
            _output: PhantomData,
        },
    )
}

impl<F: Future> TaskCell<F> {
    const VTABLE: TaskVtable = TaskVtable {
        run: Self::run_raw,
        cancel: Self::cancel_raw,
        state: Self::state_raw,
        dealloc: Self::dealloc_raw,
    };

    /// Casts a header pointer back to its cell.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a live `TaskCell<F>` (one made by [`new_task`] with this
    /// `F`), held by the caller for as long as the returned borrow is used.
    unsafe fn from_header<'a>(ptr: NonNull<Header>) -> Pin<&'a Self> {
        // SAFETY: by the caller's contract the block is a live `TaskCell<F>` whose
        // header is at offset 0 (`repr(C)`), and `ptr` has the block's provenance
        // (see `new_task`). The cell never moves until it is freed, which cannot
        // happen while the caller holds a reference: hence `Pin`.
        unsafe { Pin::new_unchecked(ptr.cast::<Self>().as_ref()) }
    }

    /// # Safety
    ///
    /// As [`from_header`](Self::from_header), on the runtime's thread.
    unsafe fn run_raw(ptr: NonNull<Header>, cx: &mut Context<'_>) -> Poll<Outcome> {
        // SAFETY: forwarded from the caller (`TaskRef::run` holds the executor's
        // reference and is not `Send`).
        unsafe { Self::from_header(ptr) }.run(cx)
    }

    /// # Safety
    ///
    /// As [`from_header`](Self::from_header), on the runtime's thread.
    unsafe fn cancel_raw(ptr: NonNull<Header>) {
        // SAFETY: forwarded from the caller (`TaskRef::cancel`).
        unsafe { Self::from_header(ptr) }.cancel();
    }

    /// # Safety
    ///
    /// `ptr` must point to a live `TaskCell<F>`.
    unsafe fn state_raw(ptr: NonNull<Header>) -> NonNull<()> {
        let cell = ptr.cast::<Self>().as_ptr();
        // SAFETY: `cell` points to a live `TaskCell<F>` (caller's contract); taking a
        // field's address creates no reference.
        let state = unsafe { &raw mut (*cell).state };
        // SAFETY: a field's address inside a non-null block is not null.
        unsafe { NonNull::new_unchecked(state) }.cast()
    }

    /// # Safety
    ///
    /// `ptr` must point to a `TaskCell<F>` made by [`new_task`] whose last reference
    /// has just been released; nothing may use it afterwards.
    unsafe fn dealloc_raw(ptr: NonNull<Header>) {
        // SAFETY: the block was allocated as a `Box<TaskCell<F>>` and leaked by
        // `new_task`; `ptr` has its provenance, and with no reference left nothing
        // else can reach it. Dropping it here, maybe on another thread, is sound
        // because its `!Send` contents are gone already (see the module docs).
        drop(unsafe { Box::from_raw(ptr.cast::<Self>().as_ptr()) });
    }

    /// The stage, pinned.
    ///
    /// The returned guard must not be held while anything could reach this same
    /// cell's stage again; only `run` and `cancel` use it, and neither re-enters.
    fn with_stage<R>(self: Pin<&Self>, f: impl FnOnce(Pin<&mut Stage<F>>) -> R) -> R {
        let mut guard = self.get_ref().stage.borrow_mut();
        // `stage` is structurally pinned (see the field's doc): nothing moves a
        // `Stage` out of this cell or swaps it, the `RefCell` is never replaced, and
        // the value is dropped in place (by `Pin::set` or with the cell).
        // SAFETY: `self` is pinned and, by the above, the `Stage` stays at this
        // address until it is dropped, which is what `Pin` requires.
        let pinned = unsafe { Pin::new_unchecked(&mut *guard) };
        f(pinned)
    }

    /// Records `result` (unless something finished first) and wakes the joiner.
    /// With the handle gone, the output is dropped here, on the runtime's thread.
    fn complete(&self, result: Result<F::Output, JoinError>) {
        let (waker, unseen) = {
            let mut s = self.state.borrow_mut();
            if s.finished {
                return;
            }
            s.finished = true;
            let unseen = if s.detached {
                Some(result)
            } else {
                s.output = Some(result);
                None
            };
            (s.join_waker.take(), unseen)
        };
        match unseen {
            // Nobody will see it: the runtime's panic policy decides.
            Some(Err(e)) if e.is_panic() => super::report_unhandled_panic(e),
            // Dropped outside the borrow: its destructor is user code.
            other => drop(other),
        }
        // Woken outside the borrow: the joiner may be polled from inside `wake`.
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Polls the future once (or drops it, if `abort` was called). `Ready` means the
    /// task is over, its stage is `Done`, and its outcome has been handed over.
    fn run(self: Pin<&Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        if self.state.borrow().cancel_requested {
            // Drop the future here, inside the runtime, where its destructors may
            // still deregister I/O. A destructor that panics is the task's panic,
            // reported through its handle like any other.
            let dropped = catch_unwind(AssertUnwindSafe(|| {
                self.with_stage(|mut stage| stage.set(Stage::Done));
            }));
            let (error, outcome) = match dropped {
                Ok(()) => (JoinError::cancelled(), Outcome::Aborted),
                Err(payload) => (JoinError::panic(payload), Outcome::Panicked),
            };
            self.complete(Err(error));
            return Poll::Ready(outcome);
        }
        // An output kept from a future whose destructor panicked, dropped once the
        // stage is no longer borrowed.
        let mut unreported = None;
        let polled = self.with_stage(|mut stage| {
            let StageProj::Running { future } = stage.as_mut().project() else {
                return None;
            };
            let result = catch_unwind(AssertUnwindSafe(|| future.poll(cx)));
            match result {
                Ok(Poll::Pending) => Some(Poll::Pending),
                Ok(Poll::Ready(output)) => {
                    // The future's destructor runs here: a panic in it is the task's
                    // panic (and its output is dropped), as tokio reports it.
                    match catch_unwind(AssertUnwindSafe(|| stage.set(Stage::Done))) {
                        Ok(()) => Some(Poll::Ready(Ok(output))),
                        Err(payload) => {
                            unreported = Some(output);
                            Some(Poll::Ready(Err(JoinError::panic(payload))))
                        }
                    }
                }
                Err(payload) => {
                    // A destructor that panics too loses its payload; the first panic
                    // is the one worth reporting.
                    let _ = catch_unwind(AssertUnwindSafe(|| stage.set(Stage::Done)));
                    Some(Poll::Ready(Err(JoinError::panic(payload))))
                }
            }
        });
        if unreported.is_some() {
            // The destructor's panic is the one reported; a second one is dropped.
            let _ = catch_unwind(AssertUnwindSafe(|| drop(unreported)));
        }
        match polled {
            // Not reached: a finished task is not polled again.
            None => Poll::Ready(Outcome::Aborted),
            Some(Poll::Pending) => Poll::Pending,
            Some(Poll::Ready(result)) => {
                let outcome = if result.is_ok() {
                    Outcome::Completed
                } else {
                    Outcome::Panicked
                };
                // Handed over after the stage borrow ended: waking the joiner may run
                // code that looks at this task again.
                self.complete(result);
                Poll::Ready(outcome)
            }
        }
    }

    /// Drops the future now, if it has not finished, and records "cancelled" for the
    /// handle. Re-raises a panic from the future's destructor after recording.
    fn cancel(self: Pin<&Self>) {
        let dropped = catch_unwind(AssertUnwindSafe(|| {
            self.with_stage(|mut stage| stage.set(Stage::Done));
        }));
        self.complete(Err(JoinError::cancelled()));
        if let Err(payload) = dropped {
            resume_unwind(payload);
        }
    }
}

impl Header {
    /// Adds a reference.
    fn acquire(&self) {
        // Relaxed, as `Arc::clone`: a new reference is made from an existing one,
        // which keeps the block alive meanwhile.
        if self.refs.fetch_add(1, Ordering::Relaxed) > isize::MAX as usize {
            // As `Arc`: a count this high means leaked wakers; never let it wrap.
            std::process::abort();
        }
    }

    /// Wakes the task (see [`wake_task`]).
    fn wake(&self) {
        wake_task(&self.queued, &self.inbox, self.id);
    }
}

/// Releases one reference to the task at `ptr`; frees the block if it was the last.
///
/// # Safety
///
/// `ptr` must point to a live task block, and the caller must own one of its
/// references, which it gives up here.
unsafe fn release(ptr: NonNull<Header>) {
    // SAFETY: the caller owns a reference, so the block is alive here.
    let header = unsafe { ptr.as_ref() };
    // Release, then Acquire below, as `Arc::drop`: every use of the block through
    // other references happens before it is freed.
    if header.refs.fetch_sub(1, Ordering::Release) != 1 {
        return;
    }
    fence(Ordering::Acquire);
    let dealloc = header.vtable.dealloc;
    // SAFETY: that was the last reference (the count reached 0), so nothing else
    // can use the block.
    unsafe { dealloc(ptr) };
}

/// The `Waker` vtable of every task: the data pointer is the task's header, and each
/// `Waker` owns one reference.
static WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

/// # Safety
///
/// `data` must be the header pointer of a `Waker` built on [`WAKER_VTABLE`] (so the
/// block is alive: that waker owns a reference).
unsafe fn waker_clone(data: *const ()) -> RawWaker {
    // SAFETY: per the contract, `data` is a live task header.
    unsafe { &*data.cast::<Header>() }.acquire();
    RawWaker::new(data, &WAKER_VTABLE)
}

/// # Safety
///
/// As [`waker_clone`]; consumes the waker's reference.
unsafe fn waker_wake(data: *const ()) {
    // SAFETY: per the contract, `data` is a live task header.
    unsafe { &*data.cast::<Header>() }.wake();
    // SAFETY: the waker owned this reference and is consumed by `wake`.
    unsafe { release(NonNull::new_unchecked(data.cast_mut().cast())) };
}

/// # Safety
///
/// As [`waker_clone`].
unsafe fn waker_wake_by_ref(data: *const ()) {
    // SAFETY: per the contract, `data` is a live task header.
    unsafe { &*data.cast::<Header>() }.wake();
}

/// # Safety
///
/// As [`waker_clone`]; consumes the waker's reference.
unsafe fn waker_drop(data: *const ()) {
    // SAFETY: the waker owned this reference and is being dropped.
    unsafe { release(NonNull::new_unchecked(data.cast_mut().cast())) };
}

/// The executor's reference to a task: runs, cancels and wakes it. Not `Send`.
pub(crate) struct TaskRef {
    ptr: NonNull<Header>,
}

impl TaskRef {
    fn header(&self) -> &Header {
        // SAFETY: `self` owns a reference, so the block is alive while borrowed.
        unsafe { self.ptr.as_ref() }
    }

    /// The task's id.
    pub(crate) fn id(&self) -> TaskId {
        self.header().id
    }

    /// Clears `queued` before a poll; returns whether it was set.
    ///
    /// `AcqRel`: acquires what the waker published before its wake, so the poll sees it.
    pub(crate) fn take_queued(&self) -> bool {
        self.header().queued.swap(false, Ordering::AcqRel)
    }

    /// Marks a finished task queued for good, so later wakes are no-ops.
    pub(crate) fn retire(&self) {
        self.header().queued.store(true, Ordering::Release);
    }

    /// Runs `f` with the task's waker, borrowed: no reference is taken unless the
    /// future clones it.
    pub(crate) fn with_waker<R>(&self, f: impl FnOnce(&Waker) -> R) -> R {
        let raw = RawWaker::new(self.ptr.as_ptr().cast_const().cast(), &WAKER_VTABLE);
        // SAFETY: the data pointer is this task's header and the vtable is the task
        // waker vtable, whose contract that is. `ManuallyDrop`: this waker owns no
        // reference (it borrows `self`'s), so it must never be dropped; clones made
        // from it take their own.
        let waker = ManuallyDrop::new(unsafe { Waker::from_raw(raw) });
        f(&waker)
    }

    /// A waker of its own (one more reference).
    #[cfg(test)]
    pub(crate) fn waker(&self) -> Waker {
        self.with_waker(Waker::clone)
    }

    /// Polls the task once (see [`TaskCell::run`]).
    pub(crate) fn run(&self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let run = self.header().vtable.run;
        // SAFETY: the block is a `TaskCell` of the vtable's type, alive while `self`
        // holds its reference; `TaskRef` is not `Send`, so this is the runtime's thread.
        unsafe { run(self.ptr, cx) }
    }

    /// Drops the future and records "cancelled" (see [`TaskCell::cancel`]).
    pub(crate) fn cancel(&self) {
        let cancel = self.header().vtable.cancel;
        // SAFETY: as in `run`.
        unsafe { cancel(self.ptr) }
    }

    /// Whether `waker` wakes this task.
    #[cfg(test)]
    pub(crate) fn is_woken_by(&self, waker: &Waker) -> bool {
        std::ptr::eq(waker.data(), self.ptr.as_ptr().cast_const().cast())
            && std::ptr::eq(waker.vtable(), &WAKER_VTABLE)
    }
}

impl Drop for TaskRef {
    fn drop(&mut self) {
        // SAFETY: `self` owns one reference, given up here.
        unsafe { release(self.ptr) };
    }
}

impl std::fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRef").field("id", &self.id()).finish()
    }
}

/// The task's id and `queued` flag as seen through one of its wakers (for tests).
///
/// # Panics
///
/// If `waker` is not a task waker.
#[cfg(test)]
pub(crate) fn waker_task_state(waker: &Waker) -> (TaskId, bool) {
    assert!(
        std::ptr::eq(waker.vtable(), &WAKER_VTABLE),
        "not a task waker"
    );
    // SAFETY: a task waker's data is its task's header, alive while the waker is.
    let header = unsafe { &*waker.data().cast::<Header>() };
    (header.id, header.queued.load(Ordering::Acquire))
}

/// The handle's reference to a task: reads and fills its [`JoinState`], wakes it
/// for `abort`. Not `Send`.
pub(crate) struct JoinRef<T> {
    ptr: NonNull<Header>,
    /// The output type; `fn() -> T` so the handle is `Unpin` whatever `T` is (the
    /// output lives in the task's block, not in the handle).
    _output: PhantomData<fn() -> T>,
}

impl<T> JoinRef<T> {
    /// The state the handle reads and the task fills in.
    pub(crate) fn state(&self) -> &RefCell<JoinState<T>> {
        // SAFETY: `self` owns a reference, so the block is alive while borrowed.
        let header = unsafe { self.ptr.as_ref() };
        // SAFETY: the block is a `TaskCell<F>` with `F::Output = T` (`new_task` made
        // this `JoinRef<F::Output>` with it), and alive as above.
        let state = unsafe { (header.vtable.state)(self.ptr) };
        // SAFETY: `state` points to that cell's `RefCell<JoinState<T>>`, which lives
        // as long as the block, i.e. at least as long as this borrow of `self`.
        unsafe { state.cast::<RefCell<JoinState<T>>>().as_ref() }
    }

    /// Wakes the task (for `abort`).
    pub(crate) fn wake_task(&self) {
        // SAFETY: `self` owns a reference, so the block is alive.
        unsafe { self.ptr.as_ref() }.wake();
    }
}

impl<T> Drop for JoinRef<T> {
    fn drop(&mut self) {
        // SAFETY: `self` owns one reference, given up here.
        unsafe { release(self.ptr) };
    }
}
