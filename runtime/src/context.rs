//! The thread-local "current runtime": set by `block_on` for its duration, read by
//! `spawn`, `Registration::new`, `Sleep` and by wakers that want the lock-free local
//! path.
//!
//! The cell is borrowed mutably only to enter and to leave; every other access is a
//! short shared borrow, so a wake from inside a poll or a destructor never conflicts.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::executor::waker::{Inbox, TaskId};
use crate::reactor::Reactor;
use crate::runtime::{Core, Handle};
use crate::time::Timers;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
    /// On a blocking-pool thread while it runs a job: the handle of the runtime that
    /// spawned the job.
    static BLOCKING: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// Makes `handle` what [`Handle::current`] gives on this (blocking-pool) thread until
/// the guard drops.
pub(crate) fn enter_blocking(handle: Handle) -> impl Drop {
    struct Leave(Option<Handle>);
    impl Drop for Leave {
        fn drop(&mut self) {
            let previous = self.0.take();
            let _ = BLOCKING.try_with(|b| drop(std::mem::replace(&mut *b.borrow_mut(), previous)));
        }
    }
    let previous = BLOCKING
        .try_with(|b| b.borrow_mut().replace(handle))
        .ok()
        .flatten();
    Leave(previous)
}

/// The handle set by [`enter_blocking`], if any.
pub(crate) fn blocking_handle() -> Option<Handle> {
    BLOCKING.try_with(|b| b.borrow().clone()).ok().flatten()
}

/// Makes `core` current.
///
/// # Panics
///
/// If a runtime is running on this thread already.
pub(crate) fn enter(core: Rc<Core>) {
    CURRENT.with(|c| {
        let mut current = c.borrow_mut();
        assert!(
            current.is_none(),
            "`block_on` called inside a running runtime; `.await` the future or \
             `spawn` it instead"
        );
        *current = Some(core);
    });
}

/// Makes `core` current (or none), whatever was current before; returns that, for
/// the caller to put back. Used to shut a runtime down from inside another.
///
/// During thread-local destruction (a runtime kept in a `thread_local!`, dropped at
/// thread exit) the context is gone: nothing is made current, and `None` returned.
pub(crate) fn swap(core: Option<Rc<Core>>) -> Option<Rc<Core>> {
    CURRENT
        .try_with(|c| std::mem::replace(&mut *c.borrow_mut(), core))
        .ok()
        .flatten()
}

/// Clears the current runtime; returns it so the caller can drop it after.
pub(crate) fn leave() -> Option<Rc<Core>> {
    CURRENT.try_with(|c| c.borrow_mut().take()).ok().flatten()
}

/// Runs `f` with the current runtime, if any.
pub(crate) fn with_core<R>(f: impl FnOnce(&Core) -> R) -> Option<R> {
    CURRENT
        .try_with(|c| c.borrow().as_deref().map(f))
        .ok()
        .flatten()
}

/// The id of the runtime running on this thread: unique in the process, never
/// reused, so it may key per-runtime state kept elsewhere.
pub(crate) fn runtime_id() -> Option<u64> {
    with_core(|core| core.id)
}

/// The current runtime's reactor.
pub(crate) fn current_reactor() -> Option<Rc<Reactor>> {
    with_core(|core| core.reactor.clone())
}

/// The current runtime's timers.
pub(crate) fn current_timers() -> Option<Rc<Timers>> {
    with_core(|core| core.timers.clone())
}

/// Queues `id` on the local run queue if `inbox` belongs to the runtime running on
/// this thread; returns false otherwise (the caller then goes through the inbox).
pub(crate) fn schedule_local(inbox: &Arc<Inbox>, id: TaskId) -> bool {
    with_core(|core| {
        if Arc::ptr_eq(core.executor.inbox(), inbox) {
            core.executor.schedule(id);
            true
        } else {
            false
        }
    })
    .unwrap_or(false)
}
