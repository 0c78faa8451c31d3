//! The per-runtime signal driver: a task that waits until the self-pipe is readable,
//! drains it and wakes every listener in the process.
//!
//! One driver per runtime that has used signals, started by the first
//! [`signal`](super::signal) (or `poll_recv`) in it and ending when the runtime shuts
//! down (which drops all tasks). The runtimes that have one are tracked per thread
//! ([`DRIVEN`]), keyed by [`runtime_id`](crate::context::runtime_id), which is never
//! reused; the task removes its runtime's id when it is dropped, so a later runtime on
//! the same thread starts a driver of its own.
//!
//! Runtimes on different threads each run their own driver over their own duplicate
//! of the read end: all are woken when a byte arrives, one drains it, the others find
//! the pipe empty and wait again. Whichever drains wakes the listeners of every
//! runtime, so no listener misses a delivery because another runtime took the byte.

use std::cell::RefCell;
use std::io::{self, PipeReader, Read};

use super::registry;
use crate::context;
use crate::reactor::{AsyncFd, Direction};

thread_local! {
    /// Ids of the runtimes on this thread whose driver is alive. At most one runtime
    /// runs on a thread at a time, so this rarely holds more than one id.
    static DRIVEN: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Starts a driver for the runtime running on this thread, unless it has one
/// already. Does nothing outside a runtime.
///
/// # Errors
///
/// If the pipe's read end cannot be duplicated (`EMFILE`) or registered with epoll;
/// no driver runs then, and the next call tries again.
pub(crate) fn ensure_driver() -> io::Result<()> {
    let Some(id) = context::runtime_id() else {
        return Ok(());
    };
    if is_driven(id) {
        return Ok(());
    }
    let reader = AsyncFd::new(PipeReader::from(registry::pipe_reader()?))?;
    DRIVEN.with(|driven| driven.borrow_mut().push(id));
    let guard = DriverGuard { id };
    // Detached: the task runs until the runtime drops it at shutdown.
    drop(crate::spawn(drive(reader, guard)));
    Ok(())
}

/// Whether the runtime `id` has a live driver (on this thread).
pub(crate) fn is_driven(id: u64) -> bool {
    DRIVEN.with(|driven| driven.borrow().contains(&id))
}

/// Removes its runtime's id from [`DRIVEN`] when the driver task is dropped.
#[derive(Debug)]
struct DriverGuard {
    /// The runtime this driver serves.
    id: u64,
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        // Ignored: the thread-local is gone only while the thread exits, and then no
        // runtime can start on it again.
        let _ = DRIVEN.try_with(|driven| driven.borrow_mut().retain(|&id| id != self.id));
    }
}

/// The driver task: drain, dispatch, repeat.
async fn drive(reader: AsyncFd<PipeReader>, _guard: DriverGuard) {
    let mut buf = [0_u8; 64];
    loop {
        // `io` waits for readiness and retries while `drain` says WouldBlock, i.e.
        // while the pipe is empty (another runtime drained it, or nothing came).
        match reader
            .io(Direction::Read, |pipe| drain(pipe, &mut buf))
            .await
        {
            Ok(()) => {
                // `drain` stopped at WouldBlock: the pipe is empty, so the next
                // round must wait for an event rather than retry at once.
                reader.clear_ready(Direction::Read);
                registry::dispatch();
            }
            // The runtime is shutting down or epoll refused to re-arm the fd: end
            // here. The guard then lets the next `signal()` or `poll_recv` in this
            // runtime start a new driver.
            Err(_) => return,
        }
    }
}

/// Reads the pipe until it is empty. `Ok` if at least one byte was read, `WouldBlock`
/// if the pipe was empty to begin with.
fn drain(mut pipe: &PipeReader, buf: &mut [u8]) -> io::Result<()> {
    let mut drained = false;
    loop {
        match pipe.read(buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the signal pipe's write end was closed; it must stay open for the \
                     life of the process",
                ));
            }
            Ok(_) => drained = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && drained => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
