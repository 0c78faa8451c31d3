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
use crate::runtime::Core;
use crate::time::Timers;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
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
pub(crate) fn swap(core: Option<Rc<Core>>) -> Option<Rc<Core>> {
    CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), core))
}

/// Clears the current runtime; returns it so the caller can drop it after.
pub(crate) fn leave() -> Option<Rc<Core>> {
    CURRENT.with(|c| c.borrow_mut().take())
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
