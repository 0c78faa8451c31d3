//! File descriptors: every fd a runtime opens is `CLOEXEC` (and non-blocking), and
//! none outlives `block_on`, even when tasks holding sockets are still running when
//! it returns.
//!
//! This binary holds exactly one test, so nothing else opens or closes fds in this
//! process while it counts `/proc/self/fd`.

mod support;

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use edgeloop::net::{TcpListener, TcpStream};
use support::{fd_flags, open_fds, with_timeout};

/// Rounds of `block_on` in the leak check.
const ROUNDS: usize = 50;

/// Panics unless `now` holds the same fds as `before`, listing what differs.
fn assert_same_fds(before: &BTreeMap<RawFd, String>, now: &BTreeMap<RawFd, String>, when: &str) {
    let leaked: BTreeMap<_, _> = now
        .iter()
        .filter(|(fd, _)| !before.contains_key(fd))
        .collect();
    let closed: BTreeMap<_, _> = before
        .iter()
        .filter(|(fd, _)| !now.contains_key(fd))
        .collect();
    assert!(
        leaked.is_empty() && closed.is_empty(),
        "{when}: {} fds open, {} at the start; left open: {leaked:?}; closed that were \
         open before: {closed:?}",
        now.len(),
        before.len()
    );
}

/// Checks the flags of every fd in `now` that is not in `before`; returns how many
/// were checked. The epoll fd is exempt from `O_NONBLOCK`: `epoll_create1` takes no
/// such flag and `epoll_wait` ignores it.
fn check_new_fd_flags(
    before: &BTreeMap<RawFd, String>,
    now: &BTreeMap<RawFd, String>,
) -> io::Result<usize> {
    let mut checked = 0;
    for (&fd, target) in now.iter().filter(|(fd, _)| !before.contains_key(fd)) {
        let (fd_flags, status_flags) = fd_flags(fd)?;
        assert_ne!(
            fd_flags & libc::FD_CLOEXEC,
            0,
            "fd {fd} ({target}) lacks FD_CLOEXEC: F_GETFD = {fd_flags:#x}"
        );
        if target != "anon_inode:[eventpoll]" {
            assert_ne!(
                status_flags & libc::O_NONBLOCK,
                0,
                "fd {fd} ({target}) lacks O_NONBLOCK: F_GETFL = {status_flags:#x}"
            );
        }
        checked += 1;
    }
    Ok(checked)
}

/// One round: a listener, a connection with an echo, and tasks left holding sockets
/// (pending on a read, an accept, a timer, or never polled) when `block_on` returns.
async fn round(round: usize) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut client = TcpStream::connect(addr).await?;
    let (mut server, _) = listener.accept().await?;
    let msg = format!("round {round}");
    client.write_all(msg.as_bytes()).await?;
    let mut buf = [0u8; 64];
    let n = server.read(&mut buf).await?;
    server.write_all(&buf[..n]).await?;
    let mut echoed = Vec::new();
    while echoed.len() < msg.len() {
        let n = client.read(&mut buf).await?;
        assert_ne!(n, 0, "round {round}: EOF after {echoed:?}");
        echoed.extend_from_slice(&buf[..n]);
    }
    assert_eq!(echoed, msg.as_bytes(), "round {round}: echo");

    // A connection whose two ends sit in a task waiting to read, forever.
    let lingering_client = TcpStream::connect(addr).await?;
    let (mut lingering_server, _) = listener.accept().await?;
    let reader = edgeloop::spawn(async move {
        let _client = lingering_client;
        let mut buf = [0u8; 16];
        lingering_server.read(&mut buf).await
    });
    // The listener, in a task waiting to accept, forever.
    let acceptor = edgeloop::spawn(async move { listener.accept().await.map(|_| ()) });
    // Owned halves split across two tasks: one reading, one asleep on a timer.
    let (mut read_half, write_half) = client.into_split();
    edgeloop::spawn(async move {
        let mut buf = [0u8; 16];
        read_half.read(&mut buf).await
    });
    edgeloop::spawn(async move {
        let _write_half = write_half;
        edgeloop::time::sleep(Duration::from_secs(3600)).await;
    });
    // The accepted end, in a task aborted before it ever runs.
    let aborted = edgeloop::spawn(async move {
        let _server = server;
    });
    aborted.abort();
    let outcome = aborted.await;
    assert!(
        outcome
            .as_ref()
            .is_err_and(edgeloop::JoinError::is_cancelled),
        "round {round}: aborted task gave {outcome:?}"
    );
    // A listener moved into a task that is never polled (spawned just before
    // `block_on` returns), on even rounds.
    if round.is_multiple_of(2) {
        let never_polled = TcpListener::bind("127.0.0.1:0").await?;
        edgeloop::spawn(async move { never_polled.accept().await.map(|_| ()) });
    } else {
        // Let the tasks above reach their pending points first on odd rounds.
        edgeloop::yield_now().await;
        edgeloop::yield_now().await;
    }
    assert!(
        !reader.is_finished() && !acceptor.is_finished(),
        "round {round}: a waiting task finished: reader {reader:?}, acceptor {acceptor:?}"
    );
    Ok(())
}

#[test]
fn block_on_leaves_no_fd_open_and_every_fd_it_opens_is_cloexec_and_nonblocking() -> io::Result<()> {
    with_timeout(60, "fd checks", || {
        let before = open_fds()?;

        // Flags of every fd opened inside a runtime: epoll, eventfd, listener, and
        // both ends of a connection.
        let checked = edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let client = TcpStream::connect(listener.local_addr()?).await?;
            let (server, _) = listener.accept().await?;
            let inside = open_fds()?;
            for (what, fd) in [
                ("listener", listener.as_raw_fd()),
                ("client", client.as_raw_fd()),
                ("server", server.as_raw_fd()),
            ] {
                assert!(
                    inside.contains_key(&fd) && !before.contains_key(&fd),
                    "{what} fd {fd} is not a new fd in /proc/self/fd: {inside:?}"
                );
            }
            let kinds: Vec<&String> = inside
                .iter()
                .filter(|(fd, _)| !before.contains_key(fd))
                .map(|(_, target)| target)
                .collect();
            for kind in ["anon_inode:[eventpoll]", "anon_inode:[eventfd]"] {
                assert!(
                    kinds.iter().any(|k| *k == kind),
                    "no new {kind} fd inside block_on; new fds: {kinds:?}"
                );
            }
            check_new_fd_flags(&before, &inside)
        })?;
        assert!(checked >= 5, "only {checked} new fds checked");
        assert_same_fds(&before, &open_fds()?, "after the flags check");

        // Leaks: many runtimes, each ending with tasks that still hold sockets.
        for i in 0..ROUNDS {
            edgeloop::block_on(round(i))?;
            assert_same_fds(&before, &open_fds()?, &format!("after round {i}"));
        }

        // A runtime whose main future fails half-way, with a task holding a socket.
        let failed = edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let task = edgeloop::spawn(async move { listener.accept().await.map(|_| ()) });
            drop(task);
            let _client = TcpStream::connect(addr).await?;
            TcpStream::connect("127.0.0.1:notaport").await.map(|_| ())
        });
        assert!(failed.is_err(), "connect to a bad address: {failed:?}");
        assert_same_fds(&before, &open_fds()?, "after a failed runtime");

        // The count, as the plain number, too.
        let after = open_fds()?;
        assert_eq!(
            after.len(),
            before.len(),
            "open fd count: now vs at the start"
        );
        Ok(())
    })
}
