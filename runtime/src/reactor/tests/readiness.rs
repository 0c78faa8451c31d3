//! The readiness state machine: pure helpers, arming, waking.

use super::*;

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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn reader_and_writer_on_one_fd_are_both_woken() -> io::Result<()> {
    bounded("reader_and_writer_on_one_fd_are_both_woken", || {
        block_on(async {
            let reactor = reactor();
            let (a, mut b) = socket_pair()?;
            let a = Rc::new(a);
            let reg = Rc::new(Registration::new(a.as_fd())?);
            let (index, _) = slot_of(&reactor, a.as_raw_fd());

            let filled = fill_send_buffer(&reg, &a)?;
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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn writer_woken_first_leaves_the_reader_armed() -> io::Result<()> {
    bounded("writer_woken_first_leaves_the_reader_armed", || {
        block_on(async {
            let reactor = reactor();
            let (a, mut b) = socket_pair()?;
            let reg = Registration::new(a.as_fd())?;
            let (index, _) = slot_of(&reactor, a.as_raw_fd());
            // Fill `a`'s send buffer: a writer must wait for the peer to read.
            let filled = fill_send_buffer(&reg, &a)?;
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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn writer_blocked_on_a_half_closed_peer_sleeps_instead_of_spinning() -> io::Result<()> {
    bounded(
        "writer_blocked_on_a_half_closed_peer_sleeps_instead_of_spinning",
        || {
            block_on(async {
                let reactor = reactor();
                let (a, mut b) = socket_pair()?;
                let reg = Registration::new(a.as_fd())?;
                let (index, _) = slot_of(&reactor, a.as_raw_fd());
                // Fill `a`'s send buffer: a writer must wait for the peer to read.
                let filled = fill_send_buffer(&reg, &a)?;
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
                let err = (&a)
                    .write(&[7_u8; 64])
                    .expect_err("the buffer is still full");
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
