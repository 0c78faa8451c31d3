//! Deferred registrations (`Registration::new_deferred`, behind
//! `AsyncFd::new_deferred`): a slot without any syscall, `EPOLL_CTL_ADD` as the first
//! arm, and no `EPOLL_CTL_DEL` for an fd that was never added.

use super::*;

use crate::{Builder, Runtime};

/// `(ADD, MOD, DEL)` counts of the current reactor.
fn ctl_counts(reactor: &Reactor) -> (u64, u64, u64) {
    let c = &reactor.state.borrow().counters;
    (c.ctl_add, c.ctl_mod, c.ctl_del)
}

/// Whether slot `index` is in the epoll set.
fn is_added(reactor: &Reactor, index: u32) -> bool {
    reactor.state.borrow().slots[index as usize].added
}

/// One wait for a message, in a runtime built by `rt`: the first arm is the ADD,
/// the second wait a MOD (with ONESHOT) or nothing (without).
fn first_wait_adds(rt: &Runtime, oneshot: bool) {
    rt.block_on(async {
        let reactor = reactor();
        let (a, mut b) = socket_pair()?;
        let before = ctl_counts(&reactor);
        let reg = Registration::new_deferred(a.as_fd())?;
        let (index, _) = slot_of(&reactor, a.as_raw_fd());
        assert_eq!(ctl_counts(&reactor), before, "no syscall to take the slot");
        assert!(!is_added(&reactor, index));
        assert_eq!(
            slot_bits(&reactor, index),
            (READ | WRITE, 0),
            "(ready, armed)"
        );
        assert!(
            !has_pending_event(&reactor)?,
            "nothing can report this fd yet"
        );

        let (wakes, waker) = counting_waker();
        for round in 1..=3_u64 {
            assert_eq!(drain_read(&reg, &a)?, if round == 1 { 0 } else { 1 });
            assert_pending(poll_ready_with(&reg, Direction::Read, &waker), "waits");
            assert!(is_added(&reactor, index));
            let (add, modify, del) = ctl_counts(&reactor);
            assert_eq!(add - before.0, 1, "added once, by the first wait");
            let expected_mods = if oneshot { round - 1 } else { 0 };
            assert_eq!(modify - before.1, expected_mods, "round {round}: MODs");
            assert_eq!(del, before.2);
            b.write_all(b"x")?;
            turn_loop(1).await;
            assert_eq!(wakes.count(), round as usize, "one wake per message");
        }
        drop(reg);
        assert_eq!(
            ctl_counts(&reactor).2 - before.2,
            1,
            "an added fd is deleted"
        );
        Ok::<(), io::Error>(())
    })
    .expect("deferred registration round trips");
}

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn the_first_wait_adds_the_fd_with_oneshot() {
    bounded("the_first_wait_adds_the_fd_with_oneshot", || {
        first_wait_adds(&Runtime::new().expect("runtime"), true);
    });
}

#[test]
#[cfg_attr(miri, ignore = "needs a real epoll edge for a socket write")]
fn the_first_wait_adds_the_fd_for_both_directions_without_oneshot() {
    bounded(
        "the_first_wait_adds_the_fd_for_both_directions_without_oneshot",
        || {
            let rt = Builder::new_current_thread()
                .oneshot(false)
                .build()
                .expect("runtime");
            first_wait_adds(&rt, false);
        },
    );
}

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn an_fd_that_never_waits_costs_no_epoll_call() {
    bounded("an_fd_that_never_waits_costs_no_epoll_call", || {
        block_on(async {
            let reactor = reactor();
            let (a, mut b) = socket_pair()?;
            b.write_all(b"hello")?;
            let before = ctl_counts(&reactor);
            let reg = Registration::new_deferred(a.as_fd())?;
            let mut buf = [0_u8; 16];
            let n = reg.try_io(Direction::Read, || (&a).read(&mut buf))?;
            assert_eq!(&buf[..n], b"hello");
            let n = reg.try_io(Direction::Write, || (&a).write(b"bye"))?;
            assert_eq!(n, 3);
            drop(reg);
            assert_eq!(ctl_counts(&reactor), before, "no ADD, no MOD, no DEL");
            let mut got = [0_u8; 3];
            b.read_exact(&mut got)?;
            assert_eq!(&got, b"bye");
            Ok::<(), io::Error>(())
        })
        .expect("read and write without waiting");
    });
}

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn a_reader_and_a_writer_both_waiting_first_share_one_add() {
    bounded(
        "a_reader_and_a_writer_both_waiting_first_share_one_add",
        || {
            block_on(async {
                let reactor = reactor();
                let (a, mut b) = socket_pair()?;
                let reg = Registration::new_deferred(a.as_fd())?;
                let (index, _) = slot_of(&reactor, a.as_raw_fd());
                let before = ctl_counts(&reactor);
                let filled = fill_send_buffer(&reg, &a)?;
                assert_eq!(drain_read(&reg, &a)?, 0);
                let (reads, reader) = counting_waker();
                let (writes, writer) = counting_waker();
                assert_pending(poll_ready_with(&reg, Direction::Read, &reader), "reader");
                assert_pending(poll_ready_with(&reg, Direction::Write, &writer), "writer");
                let after = ctl_counts(&reactor);
                assert_eq!(
                    (after.0 - before.0, after.1 - before.1),
                    (1, 1),
                    "the reader's wait adds, the writer's extends it with one MOD"
                );
                assert_eq!(slot_bits(&reactor, index).1, epoll::IN | epoll::OUT);
                b.write_all(b"x")?;
                turn_loop(1).await;
                assert_eq!((reads.count(), writes.count()), (1, 0));
                let mut sink = vec![0_u8; filled];
                b.read_exact(&mut sink)?;
                turn_loop(1).await;
                assert_eq!((reads.count(), writes.count()), (1, 1));
                Ok::<(), io::Error>(())
            })
            .expect("reader and writer on a deferred registration");
        },
    );
}

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn an_fd_epoll_refuses_fails_at_its_first_wait() {
    bounded("an_fd_epoll_refuses_fails_at_its_first_wait", || {
        block_on(async {
            let reactor = reactor();
            let file = std::fs::File::open("/proc/self/status")?;
            let reg = Registration::new_deferred(file.as_fd())?;
            let (wakes, waker) = counting_waker();
            reg.clear_ready(Direction::Write);
            let err = match poll_ready_with(&reg, Direction::Write, &waker) {
                Poll::Ready(Err(e)) => e,
                other => panic!("expected the ADD's error, got {other:?}"),
            };
            assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
            assert_eq!(wakes.count(), 0);
            let (index, _) = slot_of(&reactor, file.as_raw_fd());
            assert!(!is_added(&reactor, index));
            let del_before = ctl_counts(&reactor).2;
            drop(reg);
            assert_eq!(ctl_counts(&reactor).2, del_before, "never added: no DEL");
            Ok::<(), io::Error>(())
        })
        .expect("first wait on a regular file");
    });
}

#[test]
fn a_released_deferred_slot_is_reused_under_a_new_generation() {
    // Bumped whether or not the fd was ever added, so an event queued for the old
    // token can never wake the new occupant.
    bounded(
        "a_released_deferred_slot_is_reused_under_a_new_generation",
        || {
            block_on(async {
                let reactor = reactor();
                let (a, _b) = socket_pair()?;
                let reg = Registration::new_deferred(a.as_fd())?;
                let (index, generation) = slot_of(&reactor, a.as_raw_fd());
                drop(reg);
                let reg = Registration::new_deferred(a.as_fd())?;
                assert_eq!(
                    slot_of(&reactor, a.as_raw_fd()),
                    (index, generation.wrapping_add(1))
                );
                drop(reg);
                Ok::<(), io::Error>(())
            })
            .expect("slot reuse");
        },
    );
}
