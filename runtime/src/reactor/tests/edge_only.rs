//! The `Builder::oneshot(false)` reactor: fds added once with
//! `EPOLLET|EPOLLIN|EPOLLOUT|EPOLLRDHUP` and never modified. The readiness rules are
//! the ONESHOT ones (ready from an event until `EAGAIN`); what changes is that no
//! wait costs an `EPOLL_CTL_MOD`, and that the kernel reports edges nobody asked
//! for, which must wake nobody twice and lose no wakeup.

use super::*;

use crate::{Builder, Runtime};

/// A runtime whose reactor registers without ONESHOT.
fn edge_only_runtime() -> Runtime {
    Builder::new_current_thread()
        .oneshot(false)
        .build()
        .expect("runtime")
}

/// A waker and its wake counter.
type Counted = (Arc<WakeCounter>, Waker);

/// Fills `stream`'s send buffer and drains its receive queue, then makes a reader
/// and a writer wait on `reg`; returns the bytes the peer must read for room, and
/// the two waiters.
fn block_both_ways(
    reg: &Registration,
    stream: &UnixStream,
) -> io::Result<(usize, Counted, Counted)> {
    let filled = fill_send_buffer(reg, stream)?;
    assert_eq!(drain_read(reg, stream)?, 0);
    let (reads, reader) = counting_waker();
    let (writes, writer) = counting_waker();
    assert_pending(poll_ready_with(reg, Direction::Read, &reader), "reader");
    assert_pending(poll_ready_with(reg, Direction::Write, &writer), "writer");
    Ok((filled, (reads, reader), (writes, writer)))
}

/// The current runtime's `epoll_ctl` MOD count.
fn mods(reactor: &Reactor) -> u64 {
    reactor.state.borrow().counters.ctl_mod
}

#[test]
#[cfg_attr(miri, ignore = "needs a real epoll edge for a socket write")]
fn a_registration_is_armed_for_both_directions_for_good_and_never_modified() {
    bounded(
        "a_registration_is_armed_for_both_directions_for_good_and_never_modified",
        || {
            edge_only_runtime().block_on(async {
                let reactor = reactor();
                let (a, mut b) = socket_pair()?;
                let reg = Registration::new(a.as_fd())?;
                let (index, _) = slot_of(&reactor, a.as_raw_fd());
                assert_eq!(
                    slot_bits(&reactor, index),
                    (READ | WRITE, epoll::IN | epoll::OUT),
                    "(ready, armed) of a new registration"
                );
                let (wakes, waker) = counting_waker();
                for round in 1..=50 {
                    assert_eq!(drain_read(&reg, &a)?, if round == 1 { 0 } else { 1 });
                    assert_pending(poll_ready_with(&reg, Direction::Read, &waker), "waits");
                    b.write_all(b"x")?;
                    turn_loop(1).await;
                    assert_eq!(wakes.count(), round, "one wake per message");
                }
                assert_eq!(mods(&reactor), 0, "a wait never re-arms");
                assert_eq!(slot_bits(&reactor, index).1, epoll::IN | epoll::OUT);
                Ok::<(), io::Error>(())
            })
        },
    )
    .expect("edge-only round trips");
}

#[test]
#[cfg_attr(miri, ignore = "needs a real epoll edge for a socket write")]
fn data_that_arrives_between_eagain_and_the_wait_still_wakes_once() {
    bounded(
        "data_that_arrives_between_eagain_and_the_wait_still_wakes_once",
        || {
            edge_only_runtime().block_on(async {
                let (a, mut b) = socket_pair()?;
                let reg = Registration::new(a.as_fd())?;
                assert_eq!(drain_read(&reg, &a)?, 0, "EAGAIN: read readiness cleared");
                // The edge comes before anyone waits: it must not be lost.
                b.write_all(b"early")?;
                let (wakes, waker) = counting_waker();
                assert_pending(poll_ready_with(&reg, Direction::Read, &waker), "waits");
                assert_pending(poll_ready_with(&reg, Direction::Read, &waker), "again");
                turn_loop(3).await;
                assert_eq!(wakes.count(), 1, "one wake for the early data");
                assert_ready_ok(poll_ready_with(&reg, Direction::Read, &waker), "ready");
                assert_eq!(drain_read(&reg, &a)?, 5);
                Ok::<(), io::Error>(())
            })
        },
    )
    .expect("early data");
}

#[test]
#[cfg_attr(miri, ignore = "needs a real epoll edge for a socket write")]
fn a_writer_blocked_on_a_half_closed_peer_sleeps_until_there_is_room() {
    bounded(
        "a_writer_blocked_on_a_half_closed_peer_sleeps_until_there_is_room",
        || {
            edge_only_runtime().block_on(async {
                let (a, mut b) = socket_pair()?;
                let reg = Registration::new(a.as_fd())?;
                let (filled, (reads, _reader), (writes, writer)) = block_both_ways(&reg, &a)?;
                // RDHUP wakes both once; the writer finds the buffer still full.
                b.shutdown(Shutdown::Write)?;
                turn_loop(1).await;
                assert_eq!((reads.count(), writes.count()), (1, 1), "after RDHUP");
                let err = (&a).write(&[7_u8; 64]).expect_err("still full");
                assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
                reg.clear_ready(Direction::Write);
                assert_pending(poll_ready_with(&reg, Direction::Write, &writer), "again");
                // No new edge while nothing changes: the writer sleeps.
                turn_loop(20).await;
                assert_eq!(writes.count(), 1, "the writer spun on the half-closed peer");
                let mut sink = vec![0_u8; filled];
                b.read_exact(&mut sink)?;
                turn_loop(1).await;
                assert_eq!(writes.count(), 2, "woken once the peer made room");
                Ok::<(), io::Error>(())
            })
        },
    )
    .expect("half-closed peer");
}

#[test]
#[cfg_attr(miri, ignore = "needs a real epoll edge for a socket write")]
fn a_reader_and_a_writer_are_each_woken_by_their_own_edge() {
    bounded(
        "a_reader_and_a_writer_are_each_woken_by_their_own_edge",
        || {
            edge_only_runtime().block_on(async {
                let (a, mut b) = socket_pair()?;
                let reg = Registration::new(a.as_fd())?;
                let (filled, (reads, _reader), (writes, _writer)) = block_both_ways(&reg, &a)?;
                b.write_all(b"in")?;
                turn_loop(1).await;
                assert_eq!((reads.count(), writes.count()), (1, 0), "data in");
                let mut sink = vec![0_u8; filled];
                b.read_exact(&mut sink)?;
                turn_loop(1).await;
                assert_eq!((reads.count(), writes.count()), (1, 1), "room out");
                Ok::<(), io::Error>(())
            })
        },
    )
    .expect("reader and writer");
}

/// After an event that reported the peer's FIN, a read that drains the last bytes
/// and clears readiness must not wait for another edge: EOF is ready for good.
fn eof_stays_ready_after_the_last_bytes_are_read(rt: &Runtime) {
    rt.block_on(async {
        let reactor = reactor();
        let (a, mut b) = socket_pair()?;
        let reg = Registration::new(a.as_fd())?;
        assert_eq!(drain_read(&reg, &a)?, 0);
        let (wakes, waker) = counting_waker();
        assert_pending(poll_ready_with(&reg, Direction::Read, &waker), "waits");
        b.write_all(b"last bytes")?;
        b.shutdown(Shutdown::Write)?;
        turn_loop(1).await;
        assert_eq!(wakes.count(), 1, "woken by the data and the FIN");
        // What a stream read does after a short read (it took everything).
        let mut buf = [0_u8; 64];
        assert_eq!((&a).read(&mut buf)?, 10);
        reg.clear_ready(Direction::Read);
        let mods_before = mods(&reactor);
        assert_ready_ok(
            poll_ready_with(&reg, Direction::Read, &waker),
            "EOF after the drained bytes",
        );
        assert_eq!((&a).read(&mut buf)?, 0, "EOF");
        assert_eq!(
            mods(&reactor),
            mods_before,
            "no re-arm to learn of the EOF again"
        );
        Ok::<(), io::Error>(())
    })
    .expect("eof after the last bytes");
}

#[test]
#[cfg_attr(miri, ignore = "needs a real epoll edge for a socket write")]
fn eof_stays_ready_after_the_last_bytes_are_read_without_oneshot() {
    bounded(
        "eof_stays_ready_after_the_last_bytes_are_read_without_oneshot",
        || eof_stays_ready_after_the_last_bytes_are_read(&edge_only_runtime()),
    );
}

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn eof_stays_ready_after_the_last_bytes_are_read_with_oneshot() {
    bounded(
        "eof_stays_ready_after_the_last_bytes_are_read_with_oneshot",
        || eof_stays_ready_after_the_last_bytes_are_read(&Runtime::new().expect("runtime")),
    );
}
