//! Reactor tests: the pure token and readiness helpers, and the `EPOLLET|EPOLLONESHOT`
//! readiness state machine driven through [`Registration`] inside `block_on`.
//!
//! Wakes are observed with a counting waker passed to `poll_ready` by hand; the
//! event loop is turned by `yield_now` (a woken `block_on` future makes the loop
//! call `epoll_wait` with a zero timeout, once). Socket events on a `UnixStream`
//! pair are queued synchronously by the peer's syscall, so one turn is enough to
//! see them. Internals (`state.slots`, the epoll fd) are read to assert exact
//! slot, generation and arming state.

use super::*;

use std::cell::Cell;
use std::future::poll_fn;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::panic::catch_unwind;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::test_support::*;
use crate::{block_on, spawn, yield_now};

/// `reg.poll_ready(dir)` with `waker`.
fn poll_ready_with(reg: &Registration, dir: Direction, waker: &Waker) -> Poll<io::Result<()>> {
    reg.poll_ready(dir, &mut Context::from_waker(waker))
}

#[track_caller]
fn assert_pending(poll: Poll<io::Result<()>>, what: &str) {
    assert!(poll.is_pending(), "{what}: expected Pending, got {poll:?}");
}

#[track_caller]
fn assert_ready_ok(poll: Poll<io::Result<()>>, what: &str) {
    assert!(
        matches!(poll, Poll::Ready(Ok(()))),
        "{what}: expected Ready(Ok), got {poll:?}"
    );
}

/// Turns the event loop `times` times: each `yield_now` makes the loop run one
/// `epoll_wait` with a zero timeout before polling the `block_on` future again.
async fn turn_loop(times: usize) {
    for _ in 0..times {
        yield_now().await;
    }
}

/// The running runtime's reactor.
fn reactor() -> Rc<Reactor> {
    crate::context::current_reactor().expect("`reactor()` must be called inside `block_on`")
}

/// Slot index and generation of the live registration of `fd`.
fn slot_of(reactor: &Reactor, fd: RawFd) -> (u32, u32) {
    let state = reactor.state.borrow();
    let index = state
        .slots
        .iter()
        .position(|s| s.in_use && s.fd == fd)
        .unwrap_or_else(|| panic!("fd {fd} has no live registration"));
    let index = u32::try_from(index).expect("slot index fits in u32");
    (index, state.slots[index as usize].generation)
}

/// `(ready, armed)` of slot `index`.
fn slot_bits(reactor: &Reactor, index: u32) -> (u8, u32) {
    let state = reactor.state.borrow();
    let slot = &state.slots[index as usize];
    (slot.ready, slot.armed)
}

/// Whether the reactor's epoll set has an event queued, found without consuming it:
/// an epoll fd is itself readable while its ready list is not empty, so a second
/// epoll instance can watch it.
fn has_pending_event(reactor: &Reactor) -> io::Result<bool> {
    let state = reactor.state.borrow();
    let ep = state.epoll.as_ref().expect("the runtime is running");
    let watcher = epoll::epoll_create1()?;
    epoll::epoll_ctl(watcher.as_fd(), Op::Add, ep.as_raw_fd(), epoll::IN, 0)?;
    let mut events = Vec::with_capacity(1);
    Ok(epoll::epoll_wait(watcher.as_fd(), &mut events, Some(Duration::ZERO))? > 0)
}

/// Reads until `WouldBlock`, then clears read readiness; returns the bytes read.
fn drain_read(reg: &Registration, stream: &UnixStream) -> io::Result<usize> {
    let mut buf = [0_u8; 4096];
    let mut total = 0;
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                reg.clear_ready(Direction::Read);
                return Ok(total);
            }
            Err(e) => return Err(e),
        }
    }
}

mod deferred;
mod edge_only;
mod readiness;
mod table;

/// Writes to `stream` until `WouldBlock`, then clears write readiness; returns the
/// bytes written (what the peer must read before there is room again).
fn fill_send_buffer(reg: &Registration, stream: &UnixStream) -> io::Result<usize> {
    let chunk = [7_u8; 4096];
    let mut filled = 0;
    loop {
        match (&*stream).write(&chunk) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                reg.clear_ready(Direction::Write);
                return Ok(filled);
            }
            Err(e) => return Err(e),
        }
    }
}
