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

// ---------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------

#[test]
fn token_round_trips_index_and_generation() {
    let edges = [0, 1, 2, 0x7fff_ffff, 0x8000_0000, u32::MAX - 1, u32::MAX];
    for index in edges {
        for generation in edges {
            let tok = token(index, generation);
            assert_eq!(
                split_token(tok),
                (index, generation),
                "token {tok:#x} of ({index}, {generation})"
            );
            if index < u32::MAX {
                assert_ne!(tok, NOTIFY_TOKEN, "slot ({index}, {generation}) collides");
            }
        }
    }
}

#[test]
fn readiness_of_covers_every_flag_combination() {
    assert_eq!(readiness_of(0), 0);
    assert_eq!(readiness_of(epoll::IN), READ);
    assert_eq!(readiness_of(epoll::OUT), WRITE);
    assert_eq!(readiness_of(epoll::IN | epoll::OUT), READ | WRITE);
    assert_eq!(readiness_of(epoll::RDHUP), READ);
    assert_eq!(readiness_of(epoll::HUP), READ | WRITE);
    assert_eq!(readiness_of(epoll::ERR), READ | WRITE);
    assert_eq!(readiness_of(epoll::ET | epoll::ONESHOT), 0);

    let flags = [
        epoll::IN,
        epoll::OUT,
        epoll::RDHUP,
        epoll::HUP,
        epoll::ERR,
        epoll::ET,
        epoll::ONESHOT,
    ];
    for subset in 0_u32..(1 << flags.len()) {
        let bits = flags
            .iter()
            .enumerate()
            .filter(|(i, _)| subset & (1 << i) != 0)
            .fold(0, |acc, (_, f)| acc | f);
        let hang_up = bits & (epoll::HUP | epoll::ERR) != 0;
        let read = hang_up || bits & (epoll::IN | epoll::RDHUP) != 0;
        let write = hang_up || bits & epoll::OUT != 0;
        let expected = if read { READ } else { 0 } | if write { WRITE } else { 0 };
        assert_eq!(readiness_of(bits), expected, "events {bits:#x}");
    }
}

// ---------------------------------------------------------------------------------
// Readiness state machine
// ---------------------------------------------------------------------------------

#[test]
fn fresh_registration_is_ready_both_ways_and_unarmed() -> io::Result<()> {
    bounded("fresh_registration_is_ready_both_ways_and_unarmed", || {
        block_on(async {
            let reactor = reactor();
            let (a, _b) = socket_pair()?;
            let reg = Registration::new(a.as_fd())?;
            let (index, _) = slot_of(&reactor, a.as_raw_fd());
            let (wakes, waker) = counting_waker();
            assert_ready_ok(poll_ready_with(&reg, Direction::Read, &waker), "read");
            assert_ready_ok(poll_ready_with(&reg, Direction::Write, &waker), "write");
            assert_eq!(
                slot_bits(&reactor, index),
                (READ | WRITE, 0),
                "(ready, armed)"
            );
            turn_loop(2).await;
            assert_eq!(wakes.count(), 0, "wakes of a waker never stored");
            Ok(())
        })
    })
}

#[test]
fn no_event_after_a_fire_until_rearmed() -> io::Result<()> {
    bounded("no_event_after_a_fire_until_rearmed", || {
        block_on(async {
            let reactor = reactor();
            let (a, mut b) = socket_pair()?;
            let reg = Registration::new(a.as_fd())?;
            let (index, _) = slot_of(&reactor, a.as_raw_fd());
            assert_eq!(drain_read(&reg, &a)?, 0);
            let (wakes, waker) = counting_waker();
            assert_pending(
                poll_ready_with(&reg, Direction::Read, &waker),
                "empty socket",
            );
            assert_eq!(
                slot_bits(&reactor, index),
                (WRITE, epoll::IN),
                "(ready, armed)"
            );

            b.write_all(b"1")?;
            turn_loop(1).await;
            assert_eq!(wakes.count(), 1, "wakes after the first data");
            assert_eq!(
                slot_bits(&reactor, index),
                (READ | WRITE, 0),
                "(ready, armed)"
            );
            assert_eq!(drain_read(&reg, &a)?, 1, "bytes of the first event");

            // Consumed and cleared, but nobody polled: the fd stays disarmed, so
            // more data produces no event at all, not even a readiness bit.
            b.write_all(b"2")?;
            assert!(!has_pending_event(&reactor)?, "event queued while disarmed");
            turn_loop(3).await;
            assert_eq!(wakes.count(), 1, "wakes while disarmed");
            assert_eq!(slot_bits(&reactor, index), (WRITE, 0), "(ready, armed)");

            // Polling again re-arms, and the kernel re-checks: data already there
            // fires on the next turn.
            assert_pending(poll_ready_with(&reg, Direction::Read, &waker), "re-arm");
            assert_eq!(
                slot_bits(&reactor, index),
                (WRITE, epoll::IN),
                "(ready, armed)"
            );
            turn_loop(1).await;
            assert_eq!(wakes.count(), 2, "wakes after re-arming");
            assert_ready_ok(poll_ready_with(&reg, Direction::Read, &waker), "after wake");
            assert_eq!(drain_read(&reg, &a)?, 1, "bytes of the second event");
            Ok(())
        })
    })
}

#[test]
fn rearm_with_data_already_there_fires_on_next_turn() -> io::Result<()> {
    bounded("rearm_with_data_already_there_fires_on_next_turn", || {
        block_on(async {
            let (a, mut b) = socket_pair()?;
            let reg = Registration::new(a.as_fd())?;
            assert_eq!(drain_read(&reg, &a)?, 0);
            // Arrives after the `WouldBlock` but before anyone waits for it.
            b.write_all(b"early")?;
            let (wakes, waker) = counting_waker();
            assert_pending(
                poll_ready_with(&reg, Direction::Read, &waker),
                "cleared read",
            );
            assert_eq!(wakes.count(), 0, "woken inside poll_ready");
            turn_loop(1).await;
            assert_eq!(wakes.count(), 1, "wakes one turn after re-arming");
            assert_ready_ok(poll_ready_with(&reg, Direction::Read, &waker), "after wake");
            assert_eq!(drain_read(&reg, &a)?, 5);
            Ok(())
        })
    })
}

#[test]
fn wake_fires_exactly_once_per_readiness() -> io::Result<()> {
    bounded("wake_fires_exactly_once_per_readiness", || {
        block_on(async {
            let (a, mut b) = socket_pair()?;
            let reg = Registration::new(a.as_fd())?;
            assert_eq!(drain_read(&reg, &a)?, 0);
            let (wakes, waker) = counting_waker();
            // Polling twice with the same waker stores and arms it once.
            assert_pending(poll_ready_with(&reg, Direction::Read, &waker), "first poll");
            assert_pending(
                poll_ready_with(&reg, Direction::Read, &waker),
                "second poll",
            );
            b.write_all(b"a")?;
            b.write_all(b"b")?;
            b.write_all(b"c")?;
            turn_loop(3).await;
            assert_eq!(wakes.count(), 1, "wakes for one readiness");
            assert_eq!(drain_read(&reg, &a)?, 3);
            Ok(())
        })
    })
}

#[test]
fn every_waiting_reader_is_woken_once() -> io::Result<()> {
    bounded("every_waiting_reader_is_woken_once", || {
        block_on(async {
            let (a, mut b) = socket_pair()?;
            let reg = Registration::new(a.as_fd())?;
            assert_eq!(drain_read(&reg, &a)?, 0);
            let (first, first_waker) = counting_waker();
            let (second, second_waker) = counting_waker();
            assert_pending(
                poll_ready_with(&reg, Direction::Read, &first_waker),
                "first",
            );
            assert_pending(
                poll_ready_with(&reg, Direction::Read, &second_waker),
                "second",
            );
            // Polling again with a waker already stored does not store it twice.
            assert_pending(
                poll_ready_with(&reg, Direction::Read, &first_waker),
                "first again",
            );
            assert_eq!(
                (Arc::strong_count(&first), Arc::strong_count(&second)),
                (3, 3),
                "(first, second) references: the test's two plus one stored each"
            );
            b.write_all(b"x")?;
            turn_loop(1).await;
            assert_eq!(
                (first.count(), second.count()),
                (1, 1),
                "(first, second) wakes"
            );
            assert_eq!(
                (Arc::strong_count(&first), Arc::strong_count(&second)),
                (2, 2),
                "woken wakers must not stay stored"
            );
            Ok(())
        })
    })
}

#[test]
fn reader_and_writer_on_one_fd_are_both_woken() -> io::Result<()> {
    bounded("reader_and_writer_on_one_fd_are_both_woken", || {
        block_on(async {
            let reactor = reactor();
            let (a, mut b) = socket_pair()?;
            let a = Rc::new(a);
            let reg = Rc::new(Registration::new(a.as_fd())?);
            let (index, _) = slot_of(&reactor, a.as_raw_fd());

            let chunk = [7_u8; 4096];
            let mut filled = 0;
            loop {
                match (&*a).write(&chunk) {
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            reg.clear_ready(Direction::Write);
            assert_eq!(drain_read(&reg, &a)?, 0);

            let reader_polls = Rc::new(Cell::new(0));
            let (r, polls) = (reg.clone(), reader_polls.clone());
            let stream = a.clone();
            let reader = spawn(async move {
                let mut buf = [0_u8; 16];
                let n = poll_fn(|cx| {
                    polls.set(polls.get() + 1);
                    r.poll_io(Direction::Read, cx, || (&*stream).read(&mut buf))
                })
                .await?;
                io::Result::Ok(buf[..n].to_vec())
            });
            let writer_polls = Rc::new(Cell::new(0));
            let (r, polls) = (reg.clone(), writer_polls.clone());
            let stream = a.clone();
            let writer = spawn(async move {
                poll_fn(|cx| {
                    polls.set(polls.get() + 1);
                    r.poll_io(Direction::Write, cx, || (&*stream).write(b"pong"))
                })
                .await
            });
            turn_loop(1).await;
            assert!(
                !reader.is_finished() && !writer.is_finished(),
                "both must wait"
            );
            assert_eq!(
                slot_bits(&reactor, index),
                (0, epoll::IN | epoll::OUT),
                "(ready, armed) with a reader and a writer waiting"
            );

            // The peer makes room and sends: both directions become ready.
            let mut sink = vec![0_u8; filled];
            b.read_exact(&mut sink)?;
            b.write_all(b"ping")?;
            let got = reader.await??;
            let wrote = writer.await??;
            assert_eq!(got, b"ping", "read {:?}", String::from_utf8_lossy(&got));
            assert_eq!(wrote, 4, "bytes written once writable");
            assert_eq!(
                (reader_polls.get(), writer_polls.get()),
                (2, 2),
                "(reader, writer) polls"
            );
            let mut pong = [0_u8; 4];
            b.read_exact(&mut pong)?;
            assert_eq!(&pong, b"pong");
            drop(reg);
            Ok(())
        })
    })
}

#[test]
fn writer_woken_first_leaves_the_reader_armed() -> io::Result<()> {
    bounded("writer_woken_first_leaves_the_reader_armed", || {
        block_on(async {
            let reactor = reactor();
            let (a, mut b) = socket_pair()?;
            let reg = Registration::new(a.as_fd())?;
            let (index, _) = slot_of(&reactor, a.as_raw_fd());
            let chunk = [7_u8; 4096];
            let mut filled = 0;
            loop {
                match (&a).write(&chunk) {
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            reg.clear_ready(Direction::Write);
            assert_eq!(drain_read(&reg, &a)?, 0);
            let (reads, read_waker) = counting_waker();
            let (writes, write_waker) = counting_waker();
            assert_pending(poll_ready_with(&reg, Direction::Read, &read_waker), "read");
            assert_pending(
                poll_ready_with(&reg, Direction::Write, &write_waker),
                "write",
            );
            assert_eq!(slot_bits(&reactor, index), (0, epoll::IN | epoll::OUT));

            // Only writable: the event disarms both directions, so the reactor must
            // re-arm the read side for the reader that is still waiting.
            let mut sink = vec![0_u8; filled];
            b.read_exact(&mut sink)?;
            turn_loop(1).await;
            assert_eq!(
                (reads.count(), writes.count()),
                (0, 1),
                "(read, write) wakes"
            );
            assert_eq!(
                slot_bits(&reactor, index),
                (WRITE, epoll::IN),
                "(ready, armed)"
            );

            b.write_all(b"ping")?;
            turn_loop(1).await;
            assert_eq!(
                (reads.count(), writes.count()),
                (1, 1),
                "(read, write) wakes"
            );
            assert_eq!(drain_read(&reg, &a)?, 4);
            Ok(())
        })
    })
}

#[test]
fn reader_wakes_with_eof_when_peer_is_dropped() -> io::Result<()> {
    bounded("reader_wakes_with_eof_when_peer_is_dropped", || {
        block_on(async {
            let (a, b) = socket_pair()?;
            let polls = Rc::new(Cell::new(0));
            let p = polls.clone();
            let reader = spawn(async move {
                let reg = Registration::new(a.as_fd())?;
                let mut buf = [0_u8; 16];
                let n = poll_fn(|cx| {
                    p.set(p.get() + 1);
                    reg.poll_io(Direction::Read, cx, || (&a).read(&mut buf))
                })
                .await;
                drop(reg);
                n
            });
            turn_loop(1).await;
            assert_eq!(polls.get(), 1, "reader polls before the hang-up");
            assert!(!reader.is_finished(), "reader finished without data or EOF");

            drop(b);
            let n = reader.await??;
            assert_eq!(n, 0, "read after the peer was dropped");
            assert_eq!(polls.get(), 2, "reader polls after one hang-up");
            Ok(())
        })
    })
}

#[test]
fn reader_wakes_with_eof_when_peer_shuts_down_writing() -> io::Result<()> {
    bounded("reader_wakes_with_eof_when_peer_shuts_down_writing", || {
        block_on(async {
            let reactor = reactor();
            let (a, b) = socket_pair()?;
            let reg = Registration::new(a.as_fd())?;
            let (index, _) = slot_of(&reactor, a.as_raw_fd());
            assert_eq!(drain_read(&reg, &a)?, 0);
            reg.clear_ready(Direction::Write);
            let (wakes, waker) = counting_waker();
            assert_pending(
                poll_ready_with(&reg, Direction::Read, &waker),
                "before shutdown",
            );

            // Only `EPOLLRDHUP` (and `EPOLLIN`): the peer can still read, so only
            // the read direction becomes ready.
            b.shutdown(Shutdown::Write)?;
            turn_loop(1).await;
            assert_eq!(wakes.count(), 1, "wakes after the peer's shutdown");
            assert_eq!(slot_bits(&reactor, index), (READ, 0), "(ready, armed)");
            let n = (&a).read(&mut [0_u8; 8])?;
            assert_eq!(n, 0, "read after the peer shut down writing");
            Ok(())
        })
    })
}

// ---------------------------------------------------------------------------------
// Registration table
// ---------------------------------------------------------------------------------

#[test]
fn registrations_return_to_zero_after_drop() -> io::Result<()> {
    bounded("registrations_return_to_zero_after_drop", || {
        block_on(async {
            let reactor = reactor();
            assert_eq!(
                reactor.registrations(),
                0,
                "registrations of a fresh runtime"
            );
            let pairs = [socket_pair()?, socket_pair()?, socket_pair()?];
            let mut regs = pairs
                .iter()
                .map(|(a, _)| Registration::new(a.as_fd()))
                .collect::<io::Result<Vec<_>>>()?;
            assert_eq!(reactor.registrations(), 3);
            drop(regs.remove(1));
            assert_eq!(reactor.registrations(), 2);
            drop(regs);
            assert_eq!(
                reactor.registrations(),
                0,
                "registrations after dropping all"
            );

            let again = Registration::new(pairs[0].0.as_fd())?;
            assert_eq!(reactor.registrations(), 1);
            assert_eq!(
                reactor.state.borrow().slots.len(),
                3,
                "freed slots not reused"
            );
            drop(again);
            assert_eq!(reactor.registrations(), 0);
            Ok(())
        })
    })
}

#[test]
fn registering_an_fd_twice_fails_without_leaking_a_slot() -> io::Result<()> {
    bounded(
        "registering_an_fd_twice_fails_without_leaking_a_slot",
        || {
            block_on(async {
                let reactor = reactor();
                let (a, _b) = socket_pair()?;
                let reg = Registration::new(a.as_fd())?;
                let err = Registration::new(a.as_fd()).expect_err("second registration");
                assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "error: {err:?}");
                assert_eq!(reactor.registrations(), 1, "registrations after EEXIST");
                let (slots, free) = {
                    let state = reactor.state.borrow();
                    (state.slots.len(), state.free.clone())
                };
                assert_eq!((slots, free), (2, vec![1]), "(slots, free) after EEXIST");
                drop(reg);
                assert_eq!(reactor.registrations(), 0);
                Ok(())
            })
        },
    )
}

#[test]
fn released_slot_is_reused_under_a_new_generation() -> io::Result<()> {
    bounded("released_slot_is_reused_under_a_new_generation", || {
        block_on(async {
            let reactor = reactor();
            let (a1, _b1) = socket_pair()?;
            let reg1 = Registration::new(a1.as_fd())?;
            let (index1, generation1) = slot_of(&reactor, a1.as_raw_fd());
            drop(reg1);
            let (a2, _b2) = socket_pair()?;
            let reg2 = Registration::new(a2.as_fd())?;
            let (index2, generation2) = slot_of(&reactor, a2.as_raw_fd());
            assert_eq!(index2, index1, "slot not reused");
            assert_eq!(generation2, generation1.wrapping_add(1), "generation");
            drop(reg2);
            Ok(())
        })
    })
}

#[test]
fn no_event_reaches_the_reactor_after_deregister() -> io::Result<()> {
    bounded("no_event_reaches_the_reactor_after_deregister", || {
        block_on(async {
            let reactor = reactor();
            let (a, mut b) = socket_pair()?;
            let reg = Registration::new(a.as_fd())?;
            assert_eq!(drain_read(&reg, &a)?, 0);
            let (wakes, waker) = counting_waker();
            assert_pending(poll_ready_with(&reg, Direction::Read, &waker), "armed read");
            drop(reg);
            assert_eq!(Arc::strong_count(&wakes), 2, "deregister kept the waker");
            b.write_all(b"late")?;
            assert!(
                !has_pending_event(&reactor)?,
                "event queued after deregister"
            );
            turn_loop(2).await;
            assert_eq!(wakes.count(), 0, "wakes after deregister");
            Ok(())
        })
    })
}

#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn stale_event_after_fd_reuse_wakes_nobody() -> io::Result<()> {
    const MARKER: &str = "edgeloop stale event ignored";
    if std::env::var_os(OWN_PROCESS_ENV).is_none() {
        let out = rerun_in_own_process(module_path!(), "stale_event_after_fd_reuse_wakes_nobody")?;
        assert!(out.contains(MARKER), "child did not report:\n{out}");
        return Ok(());
    }
    // In the child: the only test in this process, so a closed fd number is the next
    // one handed out.
    bounded("stale_event_after_fd_reuse_wakes_nobody", || {
        block_on(async {
            let reactor = reactor();
            let (a1, mut b1) = socket_pair()?;
            // A second fd for a1's socket keeps it open after a1 is closed, so the
            // kernel keeps the old epoll entry (keyed by file and fd number) and
            // still reports it, with the old token.
            let a1_alias = a1.try_clone()?;
            let number = a1.as_raw_fd();
            let reg1 = Registration::new(a1.as_fd())?;
            let (index, old_generation) = slot_of(&reactor, number);
            assert_eq!(drain_read(&reg1, &a1)?, 0);
            let (old_wakes, old_waker) = counting_waker();
            assert_pending(poll_ready_with(&reg1, Direction::Read, &old_waker), "old");
            b1.write_all(b"stale")?;
            assert!(
                has_pending_event(&reactor)?,
                "the old entry has no event queued"
            );

            drop(a1); // frees `number`; the old entry lives on through `a1_alias`
            drop(reg1); // `EPOLL_CTL_DEL` on a closed number cannot reach it

            let (a2, mut b2) = socket_pair()?;
            assert_eq!(
                a2.as_raw_fd(),
                number,
                "the new socket did not reuse the fd"
            );
            let reg2 = Registration::new(a2.as_fd())?;
            let (index2, new_generation) = slot_of(&reactor, number);
            assert_eq!(index2, index, "slot not reused");
            assert_ne!(
                new_generation, old_generation,
                "slot reused without a new generation"
            );
            assert_eq!(drain_read(&reg2, &a2)?, 0);
            let (new_wakes, new_waker) = counting_waker();
            assert_pending(poll_ready_with(&reg2, Direction::Read, &new_waker), "new");

            assert!(
                has_pending_event(&reactor)?,
                "the stale event is gone already"
            );
            turn_loop(1).await;
            assert!(
                !has_pending_event(&reactor)?,
                "the loop did not take the stale event"
            );
            assert_eq!(
                new_wakes.count(),
                0,
                "the stale event woke the new registration"
            );
            assert_eq!(
                old_wakes.count(),
                0,
                "the stale event woke a dropped waiter"
            );
            let (ready, armed) = slot_bits(&reactor, index);
            assert_eq!(
                (ready & READ, armed),
                (0, epoll::IN),
                "the stale event changed the new slot's (read-ready, armed)"
            );

            b2.write_all(b"fresh")?;
            turn_loop(1).await;
            assert_eq!(new_wakes.count(), 1, "the new registration's own data");
            assert_eq!(drain_read(&reg2, &a2)?, 5);
            drop(reg2);
            drop(a1_alias);
            println!("{MARKER}: slot {index}, generation {old_generation} -> {new_generation}");
            Ok(())
        })
    })
}

// ---------------------------------------------------------------------------------
// Shutdown and misuse
// ---------------------------------------------------------------------------------

#[test]
fn poll_ready_after_runtime_shut_down_reports_it() -> io::Result<()> {
    bounded("poll_ready_after_runtime_shut_down_reports_it", || {
        let (a, _b) = socket_pair()?;
        let reg = block_on(async { Registration::new(a.as_fd()) })?;

        let poll = reg.poll_ready(Direction::Read, &mut Context::from_waker(Waker::noop()));
        match poll {
            Poll::Ready(Err(e)) => assert!(e.to_string().contains("shut down"), "error: {e}"),
            other => panic!("expected a shut-down error, got {other:?}"),
        }

        // Also from inside a later runtime, and through `poll_io`.
        let poll = block_on(poll_fn(|cx| {
            Poll::Ready(reg.poll_io(Direction::Write, cx, || Ok(())))
        }));
        match poll {
            Poll::Ready(Err(e)) => assert!(e.to_string().contains("shut down"), "error: {e}"),
            other => panic!("expected a shut-down error, got {other:?}"),
        }
        reg.clear_ready(Direction::Read);
        drop(reg);
        Ok(())
    })
}

#[test]
fn stored_waker_is_dropped_not_woken_at_shutdown() -> io::Result<()> {
    bounded("stored_waker_is_dropped_not_woken_at_shutdown", || {
        let (a, _b) = socket_pair()?;
        let (wakes, waker) = counting_waker();
        let reg = block_on(async {
            let reg = Registration::new(a.as_fd())?;
            assert_eq!(drain_read(&reg, &a)?, 0);
            assert_pending(poll_ready_with(&reg, Direction::Read, &waker), "armed read");
            io::Result::Ok(reg)
        })?;
        drop(waker);
        assert_eq!(
            Arc::strong_count(&wakes),
            1,
            "the reactor kept a waker after shutdown"
        );
        assert_eq!(wakes.count(), 0, "shutdown woke the waiter");
        drop(reg);
        Ok(())
    })
}

#[test]
fn registration_outside_block_on_panics_with_a_clear_message() -> io::Result<()> {
    let (a, _b) = socket_pair()?;
    let payload = catch_unwind(|| Registration::new(a.as_fd()).map(drop))
        .expect_err("`Registration::new` outside `block_on` must panic");
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(message.contains("block_on"), "message: {message:?}");
    Ok(())
}

#[test]
fn try_io_after_runtime_shut_down_reports_it() -> io::Result<()> {
    bounded("try_io_after_runtime_shut_down_reports_it", || {
        let (a, _b) = socket_pair()?;
        let reg = block_on(async { Registration::new(a.as_fd()) })?;
        let mut ran = false;
        let err = reg
            .try_io(Direction::Write, || {
                ran = true;
                Ok(())
            })
            .expect_err("an operation on a dead runtime must fail");
        assert!(!ran, "op ran on a registration whose runtime shut down");
        assert!(
            err.to_string().contains("shut down"),
            "expected the shut-down error, got {:?} ({err})",
            err.kind()
        );
        drop(reg);
        Ok(())
    })
}

#[test]
fn writer_blocked_on_a_half_closed_peer_sleeps_instead_of_spinning() -> io::Result<()> {
    bounded(
        "writer_blocked_on_a_half_closed_peer_sleeps_instead_of_spinning",
        || {
            block_on(async {
                let reactor = reactor();
                let (a, mut b) = socket_pair()?;
                let reg = Registration::new(a.as_fd())?;
                let (index, _) = slot_of(&reactor, a.as_raw_fd());
                // Fill `a`'s send buffer: the writer must wait for the peer to read.
                let chunk = [7_u8; 4096];
                let mut filled = 0;
                loop {
                    match (&a).write(&chunk) {
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                reg.clear_ready(Direction::Write);
                assert_eq!(drain_read(&reg, &a)?, 0);
                let (reads, reader) = counting_waker();
                assert_pending(
                    poll_ready_with(&reg, Direction::Read, &reader),
                    "reader with nothing to read",
                );
                let (wakes, waker) = counting_waker();
                assert_pending(
                    poll_ready_with(&reg, Direction::Write, &waker),
                    "writer on a full buffer",
                );

                // The peer shuts down its write side but does not read: RDHUP wakes
                // both waiters once; only reading is ready (EOF).
                b.shutdown(Shutdown::Write)?;
                turn_loop(1).await;
                assert_eq!(
                    (reads.count(), wakes.count()),
                    (1, 1),
                    "(reader, writer) wakes after the peer's shutdown"
                );
                assert_eq!(slot_bits(&reactor, index).0, READ, "ready bits after RDHUP");
                assert_eq!((&a).read(&mut [0_u8; 8])?, 0, "the reader sees EOF");
                let err = (&a).write(&chunk).expect_err("the buffer is still full");
                assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
                assert_pending(
                    poll_ready_with(&reg, Direction::Write, &waker),
                    "writer after RDHUP",
                );
                assert_eq!(
                    slot_bits(&reactor, index).1,
                    epoll::OUT,
                    "armed for OUT alone, without RDHUP, which would fire at once"
                );
                turn_loop(20).await;
                assert_eq!(wakes.count(), 1, "the writer spun on the half-closed peer");

                // Room appears once the peer reads: then the writer is woken again.
                let mut sink = vec![0_u8; filled];
                b.read_exact(&mut sink)?;
                turn_loop(1).await;
                assert_eq!(wakes.count(), 2, "wakes after the peer drained the buffer");
                Ok(())
            })
        },
    )
}
