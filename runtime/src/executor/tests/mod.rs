//! Executor tests: run-queue order, join results, abort, panics, the waker table's
//! dedupe and generations, cross-thread wakes, shutdown, misuse panics, fd hygiene
//! and fairness against I/O.
//!
//! Every test that drives a runtime runs its body on a thread of its own through
//! [`bounded`], so a runtime that hangs fails the test after [`TIMEOUT`] instead of
//! hanging the suite. Internals (`run_queue`, `tasks`) are read through the current
//! runtime's `Core` to assert exact queue contents.

use super::*;

use std::cell::{Cell, RefCell};
use std::fs;
use std::future::{pending, poll_fn};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::thread;
use std::time::Duration;

use crate::runtime::BUDGET;
use crate::test_support::*;
use crate::{Direction, Registration, block_on, spawn, yield_now};

/// Increments its counter when dropped.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Wraps `future` so that each poll increments `polls`.
fn count_polls<F: Future>(polls: Rc<Cell<usize>>, future: F) -> impl Future<Output = F::Output> {
    let mut future = Box::pin(future);
    poll_fn(move |cx| {
        polls.set(polls.get() + 1);
        future.as_mut().poll(cx)
    })
}

/// Runs `f` on the executor of the runtime running on this thread.
fn with_executor<R>(f: impl FnOnce(&Executor) -> R) -> R {
    crate::context::with_core(|core| f(&core.executor))
        .expect("`with_executor` must be called inside `block_on`")
}

/// The ids in the run queue, front first.
fn queued_ids() -> Vec<TaskId> {
    with_executor(|e| e.run_queue.borrow().iter().copied().collect())
}

/// Number of entries in `/proc/self/fd`.
fn open_fds() -> io::Result<usize> {
    Ok(fs::read_dir("/proc/self/fd")?.count())
}

mod block;
mod join;
mod lifecycle;
mod model;
mod order;
mod policy;
mod waking;
