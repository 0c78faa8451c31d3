//! Run-queue order and fairness: FIFO, yield to the back, the I/O budget.

use super::*;

// ---------------------------------------------------------------------------------
// Run-queue order
// ---------------------------------------------------------------------------------

#[test]
fn spawned_tasks_run_in_fifo_order() {
    let log = bounded("spawned_tasks_run_in_fifo_order", || {
        block_on(async {
            let log = Rc::new(RefCell::new(Vec::new()));
            let handles: Vec<_> = ["A", "B", "C"]
                .into_iter()
                .map(|name| {
                    let log = log.clone();
                    spawn(async move { log.borrow_mut().push(name) })
                })
                .collect();
            let queued: Vec<(u32, u32)> = queued_ids()
                .iter()
                .map(|id| (id.index, id.generation))
                .collect();
            assert_eq!(queued, [(0, 0), (1, 0), (2, 0)], "run queue after 3 spawns");
            for handle in handles {
                handle.await.expect("task must not fail");
            }
            log.take()
        })
    });
    assert_eq!(log, ["A", "B", "C"], "tasks ran out of spawn order");
}

#[test]
fn yielding_task_goes_to_the_back_of_the_queue() {
    let log = bounded("yielding_task_goes_to_the_back_of_the_queue", || {
        block_on(async {
            let log = Rc::new(RefCell::new(Vec::new()));
            let l = log.clone();
            let a = spawn(async move {
                l.borrow_mut().push("A1");
                yield_now().await;
                l.borrow_mut().push("A2");
            });
            let l = log.clone();
            let b = spawn(async move { l.borrow_mut().push("B") });
            let l = log.clone();
            let c = spawn(async move { l.borrow_mut().push("C") });
            a.await.expect("A must not fail");
            b.await.expect("B must not fail");
            c.await.expect("C must not fail");
            log.take()
        })
    });
    assert_eq!(
        log,
        ["A1", "B", "C", "A2"],
        "a yield did not requeue at the back"
    );
}

// ---------------------------------------------------------------------------------
// Fairness
// ---------------------------------------------------------------------------------

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn always_ready_task_does_not_starve_io_from_another_thread() -> io::Result<()> {
    bounded(
        "always_ready_task_does_not_starve_io_from_another_thread",
        || {
            block_on(async {
                let (a, b) = UnixStream::pair()?;
                a.set_nonblocking(true)?;
                let spins = Rc::new(Cell::new(0_u64));
                let s = spins.clone();
                let spinner = spawn(async move {
                    loop {
                        s.set(s.get() + 1);
                        yield_now().await;
                    }
                });

                let (waiting_tx, waiting_rx) = mpsc::channel::<()>();
                let writer = thread::spawn(move || -> io::Result<UnixStream> {
                    waiting_rx.recv_timeout(TIMEOUT).map_err(io::Error::other)?;
                    (&b).write_all(b"ping")?;
                    Ok(b)
                });
                let reader = spawn(async move {
                    let reg = Registration::new(a.as_fd())?;
                    let mut buf = [0_u8; 16];
                    let mut waiting_tx = Some(waiting_tx);
                    let n = poll_fn(|cx| {
                        let poll = reg.poll_io(Direction::Read, cx, || (&a).read(&mut buf));
                        if poll.is_pending()
                            && let Some(tx) = waiting_tx.take()
                        {
                            // Ignored: the writer gives up only after a timeout.
                            let _ = tx.send(());
                        }
                        poll
                    })
                    .await?;
                    drop(reg);
                    io::Result::Ok(buf[..n].to_vec())
                });

                let got = reader.await??;
                let spins_at_read = spins.get();
                spinner.abort();
                let err = spinner.await.expect_err("the spinner never ends by itself");
                assert!(err.is_cancelled(), "got {err:?}");
                let _b = writer.join().expect("writer thread panicked")?;
                assert_eq!(got, b"ping", "read {:?}", String::from_utf8_lossy(&got));
                assert!(spins_at_read > 0, "the spinner never ran");
                Ok(())
            })
        },
    )
}

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn io_is_checked_within_one_budget_of_always_ready_tasks() -> io::Result<()> {
    bounded(
        "io_is_checked_within_one_budget_of_always_ready_tasks",
        || {
            block_on(async {
                let (a, mut b) = UnixStream::pair()?;
                a.set_nonblocking(true)?;
                let spins = Rc::new(Cell::new(0_usize));
                let s = spins.clone();
                let reader = spawn(async move {
                    let reg = Registration::new(a.as_fd())?;
                    let mut buf = [0_u8; 16];
                    let n = poll_fn(|cx| reg.poll_io(Direction::Read, cx, || (&a).read(&mut buf)))
                        .await?;
                    io::Result::Ok((buf[..n].to_vec(), s.get()))
                });
                let s = spins.clone();
                let spinner = spawn(async move {
                    loop {
                        s.set(s.get() + 1);
                        yield_now().await;
                    }
                });
                // One loop turn: the reader finds nothing and waits on epoll.
                yield_now().await;
                assert!(!reader.is_finished(), "reader finished without data");

                let spins_at_write = spins.get();
                b.write_all(b"ping")?;
                let (got, spins_at_read) = reader.await??;
                let waited = spins_at_read - spins_at_write;
                // The event is seen at the end of the budget in which it arrived; the
                // woken reader is queued behind the spinner, hence the + 1.
                assert!(
                    waited <= BUDGET + 1,
                    "spinner polled {waited} times while data waited (budget {BUDGET})"
                );
                assert_eq!(got, b"ping", "read {:?}", String::from_utf8_lossy(&got));

                spinner.abort();
                let err = spinner.await.expect_err("the spinner never ends by itself");
                assert!(err.is_cancelled(), "got {err:?}");
                Ok(())
            })
        },
    )
}
