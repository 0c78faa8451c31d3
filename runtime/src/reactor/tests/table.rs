//! The registration table, shutdown and misuse.

use super::*;

// ---------------------------------------------------------------------------------
// Registration table
// ---------------------------------------------------------------------------------

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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
    let eager = catch_unwind(|| Registration::new(a.as_fd()).map(drop))
        .expect_err("`Registration::new` outside `block_on` must panic");
    let deferred = catch_unwind(|| Registration::new_deferred(a.as_fd()).map(drop))
        .expect_err("`Registration::new_deferred` outside `block_on` must panic");
    for payload in [eager, deferred] {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // Names what the user did (made a socket), not an internal constructor.
        assert!(
            message.starts_with("an I/O object (socket, `AsyncFd`) was created outside `block_on`"),
            "message: {message:?}"
        );
    }
    Ok(())
}

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
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
fn waiters_hold_one_waker_inline_and_spill_the_rest() {
    let (a_count, a) = counting_waker();
    let (b_count, b) = counting_waker();
    let mut waiters = Waiters::default();
    assert!(waiters.is_empty() && !waiters.contains(&a));
    // `will_wake` compares vtable addresses too, and Miri gives each use of std's
    // waker vtable an address of its own: there, equal wakers may look different
    // (never the other way round), so the positive checks are skipped.
    let has = |waiters: &Waiters, w: &Waker| cfg!(miri) || waiters.contains(w);
    waiters.push(a.clone());
    assert!(
        matches!(waiters, Waiters::One(_)),
        "the first waiter is inline"
    );
    assert!(has(&waiters, &a) && !waiters.contains(&b));
    waiters.push(b.clone());
    assert!(has(&waiters, &a) && has(&waiters, &b));
    let mut out = Vec::new();
    waiters.drain_into(&mut out);
    assert!(waiters.is_empty(), "drained");
    assert_eq!(out.len(), 2);
    for w in out.drain(..) {
        w.wake();
    }
    assert_eq!(
        (a_count.count(), b_count.count()),
        (1, 1),
        "each woken once"
    );
    // A drained `Many` keeps its buffer and fills again.
    waiters.push(a);
    assert!(matches!(&waiters, Waiters::Many(all) if all.len() == 1));
    waiters.drain_into(&mut out);
    assert_eq!((out.len(), waiters.is_empty()), (1, true));
}
