//! `RuntimeMetrics` in scripted scenarios: each counter moves by the exact amount
//! the scenario implies.
//!
//! The echo scenarios run an edgeloop server task and a blocking std client on
//! another thread, which takes its snapshots through `Handle::metrics` (a job the
//! runtime's loop answers between two polls). Between the two snapshots the client
//! makes 100 round trips, each a message the server reads and echoes whole, so the
//! figures count the server's work only, per round trip.

mod support;

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use edgeloop::net::TcpListener;
use edgeloop::{Handle, Runtime, RuntimeMetrics, spawn, spawn_blocking};
use support::{IO_TIMEOUT, joined, pattern, with_timeout};

/// Round trips between the two snapshots.
const ROUND_TRIPS: u64 = 100;
/// Bytes per message.
const MESSAGE: usize = 64;

/// What changed between two snapshots.
#[derive(Debug, PartialEq, Eq)]
struct Delta {
    polls: u64,
    io_events: u64,
    epoll_waits: u64,
    epoll_ctl_add: u64,
    epoll_ctl_mod: u64,
    epoll_ctl_del: u64,
    read_would_block: u64,
    write_would_block: u64,
    empty_wakeups: u64,
    remote_jobs: u64,
    spawned_tasks: u64,
}

fn delta(a: &RuntimeMetrics, b: &RuntimeMetrics) -> Delta {
    Delta {
        polls: b.polls - a.polls,
        io_events: b.io_events - a.io_events,
        epoll_waits: b.epoll_waits - a.epoll_waits,
        epoll_ctl_add: b.epoll_ctl_add - a.epoll_ctl_add,
        epoll_ctl_mod: b.epoll_ctl_mod - a.epoll_ctl_mod,
        epoll_ctl_del: b.epoll_ctl_del - a.epoll_ctl_del,
        read_would_block: b.read_would_block - a.read_would_block,
        write_would_block: b.write_would_block - a.write_would_block,
        empty_wakeups: b.empty_wakeups - a.empty_wakeups,
        remote_jobs: b.remote_jobs - a.remote_jobs,
        spawned_tasks: b.spawned_tasks - a.spawned_tasks,
    }
}

/// The client: one warm-up round trip, a snapshot, `ROUND_TRIPS` round trips (every
/// byte checked), a snapshot. Returns both snapshots.
fn client(addr: SocketAddr, handle: &Handle) -> io::Result<(RuntimeMetrics, RuntimeMetrics)> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut roundtrip = |seed: u64| -> io::Result<()> {
        let message = pattern(MESSAGE, seed);
        stream.write_all(&message)?;
        let mut echoed = vec![0u8; MESSAGE];
        stream.read_exact(&mut echoed)?;
        assert_eq!(echoed, message, "round trip {seed}: the echo differs");
        Ok(())
    };
    roundtrip(0)?;
    let before = handle.metrics();
    for seed in 1..=ROUND_TRIPS {
        roundtrip(seed)?;
    }
    let after = handle.metrics();
    Ok((before, after))
}

/// How the scenario's server reads and writes.
#[derive(Clone, Copy)]
enum Server {
    /// `read` into a buffer of this many bytes, then `write_all`.
    Read(usize),
    /// `readable().await`, then `try_read` into a 16 KiB buffer and `try_write`
    /// (the echo example's way, which holds no buffer while idle).
    TryRead,
}

/// Runs the echo scenario with `server`; returns the snapshots around the round
/// trips, and the final metrics.
fn echo_scenario(server: Server) -> (RuntimeMetrics, RuntimeMetrics, RuntimeMetrics) {
    echo_scenario_on(Runtime::new().expect("runtime"), server)
}

/// [`echo_scenario`] on `rt`.
fn echo_scenario_on(
    rt: Runtime,
    server: Server,
) -> (RuntimeMetrics, RuntimeMetrics, RuntimeMetrics) {
    let handle = rt.handle();
    let (before, after) = rt
        .block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let client = spawn_blocking(move || client(addr, &handle));
            let (mut stream, _) = listener.accept().await?;
            let server = spawn(async move {
                match server {
                    Server::Read(size) => {
                        let mut buf = vec![0u8; size];
                        loop {
                            let n = stream.read(&mut buf).await?;
                            if n == 0 {
                                return Ok::<(), io::Error>(());
                            }
                            stream.write_all(&buf[..n]).await?;
                        }
                    }
                    Server::TryRead => {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            stream.readable().await?;
                            let n = match stream.try_read(&mut buf) {
                                Ok(0) => return Ok(()),
                                Ok(n) => n,
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                                Err(e) => return Err(e),
                            };
                            // 64 bytes always fit in the send buffer here.
                            assert_eq!(stream.try_write(&buf[..n])?, n, "a short write");
                        }
                    }
                }
            });
            let snapshots = joined(client.await)??;
            joined(server.await)??;
            Ok::<_, io::Error>(snapshots)
        })
        .expect("echo scenario");
    (before, after, rt.metrics())
}

#[test]
fn echo_with_the_short_read_rule_costs_one_mod_and_no_eagain_per_round_trip() {
    with_timeout(60, "metrics of 100 echoes, short reads", || {
        // A 16 KiB buffer: every 64-byte read comes back short, which says the
        // socket is drained, so the server never pays a recv that says EAGAIN.
        let (before, after, end) = echo_scenario(Server::Read(16 * 1024));
        let d = delta(&before, &after);
        assert_eq!(
            d,
            Delta {
                // One poll of the server task per message: read, write, wait.
                polls: ROUND_TRIPS,
                io_events: ROUND_TRIPS,
                // One wait per message, and the one that took the second request.
                epoll_waits: ROUND_TRIPS + 1,
                epoll_ctl_add: 0,
                // The re-arm for the next message.
                epoll_ctl_mod: ROUND_TRIPS,
                epoll_ctl_del: 0,
                read_would_block: 0,
                write_would_block: 0,
                empty_wakeups: 0,
                // The second snapshot's request (the first counted itself before).
                remote_jobs: 1,
                spawned_tasks: 0,
            },
            "{before}\n{after}"
        );
        assert_eq!(
            after.events_per_wait[1] - before.events_per_wait[1],
            ROUND_TRIPS + 1,
            "every wait returned one event: {before}\n{after}"
        );
        assert_eq!(after.registered_fds, 2, "listener and connection: {after}");
        // At the end: both sockets gone, each task ended by returning.
        assert_eq!(
            (
                end.registered_fds,
                end.epoll_ctl_add,
                end.epoll_ctl_del,
                end.live_tasks,
                end.spawned_tasks,
                end.completed_tasks,
                end.panicked_tasks
            ),
            (0, 2, 2, 0, 2, 2, 0),
            "{end}"
        );
    });
}

#[test]
fn echo_with_full_reads_pays_one_eagain_read_per_wait() {
    with_timeout(60, "metrics of 100 echoes, full reads", || {
        // A buffer of exactly one message: each read fills it, so the server cannot
        // tell the socket is drained and tries another recv. When the client's next
        // message is already there (it answers fast, from another core), that recv
        // gets it and the poll goes on; otherwise it says EAGAIN and the task waits.
        // So each wait costs exactly one EAGAIN, one MOD, one event and one poll,
        // and there are at most as many waits as round trips.
        let (before, after, _) = echo_scenario(Server::Read(MESSAGE));
        let d = delta(&before, &after);
        // When the client keeps up, a poll may go on until the task's cooperative
        // budget is spent: then it yields, and is polled again with no event.
        let yields = after.budget_yields - before.budget_yields;
        let waits = d.io_events;
        assert!(
            (1..=ROUND_TRIPS).contains(&waits),
            "{d:?}\n{before}\n{after}"
        );
        assert_eq!(
            (d.read_would_block, d.epoll_ctl_mod, d.polls),
            (waits, waits, waits + yields),
            "one EAGAIN and MOD per wait, one poll per wait or yield: {d:?}\n{before}\n{after}"
        );
        assert_eq!(
            (d.write_would_block, d.empty_wakeups, d.epoll_waits),
            (0, 0, waits + 1),
            "{d:?}\n{before}\n{after}"
        );
    });
}

#[test]
fn echo_with_readable_and_try_read_also_pays_no_eagain() {
    with_timeout(60, "metrics of 100 echoes, readable + try_read", || {
        // `try_read` applies the short-read rule too: after a short read the next
        // `readable` re-arms and waits instead of letting a `try_read` say EAGAIN.
        let (before, after, _) = echo_scenario(Server::TryRead);
        let d = delta(&before, &after);
        assert_eq!(
            (d.polls, d.io_events, d.epoll_ctl_mod, d.read_would_block),
            (ROUND_TRIPS, ROUND_TRIPS, ROUND_TRIPS, 0),
            "{before}\n{after}"
        );
    });
}

#[test]
fn echo_without_oneshot_costs_no_mod_at_all() {
    with_timeout(60, "metrics of 100 echoes, EPOLLET alone", || {
        let rt = edgeloop::Builder::new_current_thread()
            .oneshot(false)
            .build()
            .expect("runtime");
        let (before, after, end) = echo_scenario_on(rt, Server::Read(16 * 1024));
        let d = delta(&before, &after);
        assert_eq!(
            (d.polls, d.io_events, d.epoll_ctl_mod, d.read_would_block),
            (ROUND_TRIPS, ROUND_TRIPS, 0, 0),
            "{before}\n{after}"
        );
        assert_eq!((end.epoll_ctl_add, end.epoll_ctl_mod), (2, 0), "{end}");
    });
}

#[test]
fn an_accepted_connection_is_added_to_epoll_only_when_it_first_waits() {
    with_timeout(60, "epoll calls per accepted connection", || {
        let rt = Runtime::new().expect("runtime");
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let ctl = || {
                let m = Handle::current().metrics();
                (
                    m.epoll_ctl_add,
                    m.epoll_ctl_mod,
                    m.epoll_ctl_del,
                    m.io_events,
                )
            };

            // A connection served without waiting: its request is there when it is
            // read (a loopback write has queued it at the receiver before it
            // returns, and the client says so before the server reads), and the
            // answer fits the send buffer. No epoll call at all.
            let (wrote_tx, wrote_rx) = std::sync::mpsc::channel();
            let client = spawn_blocking(move || -> io::Result<Vec<u8>> {
                let mut c = std::net::TcpStream::connect(addr)?;
                c.set_read_timeout(Some(IO_TIMEOUT))?;
                c.write_all(b"ping")?;
                wrote_tx.send(()).expect("the server waits for this");
                let mut answer = Vec::new();
                c.read_to_end(&mut answer)?;
                Ok(answer)
            });
            // Accepting may wait for the client (the listener's MOD), not after.
            let (mut stream, _) = listener.accept().await?;
            spawn_blocking(move || wrote_rx.recv_timeout(IO_TIMEOUT))
                .await
                .expect("no panic")
                .expect("the client wrote its request");
            let before = ctl();
            let mut request = [0u8; 16];
            let n = stream.read(&mut request).await?;
            assert_eq!(&request[..n], b"ping");
            stream.write_all(b"pong").await?;
            drop(stream);
            assert_eq!(
                ctl(),
                before,
                "ADD, MOD, DEL for a connection that never waited"
            );
            assert_eq!(joined(client.await)??, b"pong");

            // A connection that has to wait: its first wait is the ADD (not an ADD
            // at accept plus a MOD), each later wait a MOD, the close a DEL.
            let client = spawn_blocking(move || -> io::Result<()> {
                let mut c = std::net::TcpStream::connect(addr)?;
                c.set_read_timeout(Some(IO_TIMEOUT))?;
                for seed in 0..3 {
                    let message = pattern(MESSAGE, seed);
                    c.write_all(&message)?;
                    let mut echoed = vec![0u8; MESSAGE];
                    c.read_exact(&mut echoed)?;
                    assert_eq!(echoed, message);
                }
                Ok(())
            });
            let (mut stream, _) = listener.accept().await?;
            let before = ctl();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                stream.write_all(&buf[..n]).await?;
            }
            drop(stream);
            joined(client.await)??;
            let after = ctl();
            // Each message is read short, then the stream waits again, and each wait
            // ends with one event (the listener is not waited on meanwhile). The
            // first message may be there before the first read (then 3 waits: after
            // messages 1, 2 and 3) or not (4 waits).
            let waits = after.3 - before.3;
            assert!((3..=4).contains(&waits), "{waits} waits");
            assert_eq!(after.0 - before.0, 1, "one ADD, at the first wait");
            assert_eq!(after.1 - before.1, waits - 1, "a MOD per later wait");
            assert_eq!(after.2 - before.2, 1, "one DEL");
            Ok::<(), io::Error>(())
        })
        .expect("accepted connections");
    });
}

#[test]
fn timers_count_armed_fired_and_cancelled_exactly() {
    with_timeout(60, "timer metrics", || {
        let rt = Runtime::new().expect("runtime");
        rt.block_on(async {
            for _ in 0..10 {
                edgeloop::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            // Completes before its deadline: its timer is cancelled.
            let quick = edgeloop::time::timeout(std::time::Duration::from_secs(60), async {});
            quick.await.expect("no timeout");
            let slow = edgeloop::time::timeout(
                std::time::Duration::from_millis(1),
                std::future::pending::<()>(),
            );
            slow.await.expect_err("times out");
        });
        let m = rt.metrics();
        assert_eq!(
            (
                m.timers_armed,
                m.timers_fired,
                m.timers_cancelled,
                m.timers_pending
            ),
            (11, 11, 0, 0),
            "{m}"
        );
        // The quick `timeout` finished at its first poll, before arming a timer.
        rt.block_on(async {
            let mut sleep =
                std::pin::pin!(edgeloop::time::sleep(std::time::Duration::from_secs(60)));
            std::future::poll_fn(|cx| {
                assert!(sleep.as_mut().poll(cx).is_pending());
                std::task::Poll::Ready(())
            })
            .await;
        });
        let m = rt.metrics();
        assert_eq!(
            (m.timers_armed, m.timers_cancelled, m.timers_pending),
            (12, 1, 0),
            "{m}"
        );
        assert_eq!(m.empty_wakeups, 0, "every wakeup fired a timer: {m}");
    });
}
