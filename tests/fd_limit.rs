//! The fd limit: `TcpListener::accept` at `EMFILE` pauses instead of spinning or
//! failing, keeps the connections it has served, and accepts the waiting ones once
//! fds are free.
//!
//! This binary holds exactly one test, because it lowers its own process's
//! `RLIMIT_NOFILE` (soft limit only; the hard limit is left alone).

mod support;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edgeloop::net::{TcpListener, TcpStream};
use edgeloop::{Handle, Runtime, spawn, spawn_blocking};
use support::{
    IO_TIMEOUT, cpu_clock_time, current_thread_cpu_clock, joined, set_soft_fd_limit, with_timeout,
};

/// The soft fd limit the test runs under: room for a couple of dozen connections
/// (both ends live in this process) besides the harness's own fds.
const FD_LIMIT: u64 = 64;
/// Connections served before the fd table is filled.
const SERVED: usize = 5;

/// One echo round trip of `msg` on a blocking client.
fn roundtrip(stream: &mut std::net::TcpStream, msg: &[u8]) -> io::Result<()> {
    stream.write_all(msg)?;
    let mut echoed = vec![0u8; msg.len()];
    stream.read_exact(&mut echoed)?;
    assert_eq!(echoed, msg, "the echo differs");
    Ok(())
}

/// What the client side saw.
#[derive(Debug)]
struct Report {
    /// Connections served before the process was filled up.
    served: usize,
    /// Files opened to fill the fd table.
    ballast: usize,
    /// CPU time the runtime's thread used in the second spent at the limit.
    stuck_cpu: Duration,
    /// `fd_release_waits` before and after that second.
    pauses: (u64, u64),
}

/// Connects to `addr` with a read timeout.
fn connect(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    let stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// The client (on a blocking-pool thread). It makes the server, not itself, hit
/// the limit: with a few connections served, it fills the fd table with files,
/// frees one fd and connects on it, so the connection is queued and the server's
/// `accept4` finds no fd. Then it checks that the served connections still work,
/// watches the runtime's thread for a second, frees another fd and checks the
/// queued connection is accepted and served, and finally a new one too.
fn client(addr: SocketAddr, handle: &Handle, runtime_cpu: libc::clockid_t) -> io::Result<Report> {
    let mut served = Vec::new();
    for i in 0..SERVED {
        let mut stream = connect(addr)?;
        roundtrip(&mut stream, format!("client {i}").as_bytes())?;
        served.push(stream);
    }
    let mut ballast = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => ballast.push(file),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
            Err(e) => return Err(e),
        }
        assert!(ballast.len() < 1000, "the fd limit of {FD_LIMIT} never hit");
    }
    let filled = ballast.len();
    drop(ballast.pop());
    // Takes the one free fd: the server cannot accept this connection.
    let mut queued = connect(addr)?;
    let before = Instant::now();
    while handle.metrics().fd_release_waits == 0 {
        assert!(
            before.elapsed() < Duration::from_secs(10),
            "the server's accept never paused at the limit"
        );
        std::thread::yield_now();
    }
    roundtrip(&mut served[0], b"served at the limit")
        .map_err(|e| io::Error::new(e.kind(), format!("a served client at the limit: {e}")))?;

    let pauses_before = handle.metrics().fd_release_waits;
    // A CPU window: this sleep is the time the server spends at the limit.
    let cpu_before = cpu_clock_time(runtime_cpu)?;
    std::thread::sleep(Duration::from_secs(1));
    let stuck_cpu = cpu_clock_time(runtime_cpu)? - cpu_before;
    let pauses_after = handle.metrics().fd_release_waits;

    // One fd free again (released outside the runtime, so only the back-off
    // notices): the queued connection is accepted and served.
    drop(ballast.pop());
    roundtrip(&mut queued, b"queued at the limit")
        .map_err(|e| io::Error::new(e.kind(), format!("the queued client: {e}")))?;

    let served_count = served.len();
    drop((ballast, served, queued));
    let mut fresh = connect(addr)?;
    roundtrip(&mut fresh, b"served after the limit")
        .map_err(|e| io::Error::new(e.kind(), format!("a new client after the limit: {e}")))?;
    Ok(Report {
        served: served_count,
        ballast: filled,
        stuck_cpu,
        pauses: (pauses_before, pauses_after),
    })
}

/// Echoes until EOF.
async fn echo(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 256];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

#[test]
fn accept_at_the_fd_limit_pauses_without_spinning_and_recovers() {
    with_timeout(120, "accept at the fd limit", || {
        set_soft_fd_limit(FD_LIMIT).expect("lower RLIMIT_NOFILE");
        // Read by the client thread: at the limit it could open no /proc file.
        let runtime_cpu = current_thread_cpu_clock().expect("this thread's CPU clock");
        let rt = Runtime::new().expect("runtime");
        let handle = rt.handle();
        let report = rt
            .block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let server = spawn(async move {
                    loop {
                        // A plain `?`: at the limit, accept must pause, not fail.
                        let (stream, _) = listener.accept().await?;
                        drop(spawn(echo(stream)));
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), io::Error>(())
                });
                let report =
                    joined(spawn_blocking(move || client(addr, &handle, runtime_cpu)).await)??;
                assert!(
                    !server.is_finished(),
                    "the accept loop ended: {:?}",
                    server.await
                );
                Ok::<Report, io::Error>(report)
            })
            .expect("scenario");
        eprintln!("{report:?}");
        assert!(
            report.ballast >= 2 && report.served == SERVED,
            "too few fds to play with: {report:?}"
        );
        let (before, after) = report.pauses;
        assert!(before >= 1, "accept never paused at the limit: {report:?}");
        // A pause ends after at most 100 ms without a release, so a second at the
        // limit holds a handful of tries; a spinning loop makes thousands.
        assert!(
            after - before <= 30,
            "{} pauses in a second at the limit: {report:?}",
            after - before
        );
        // A spinning accept loop burns the whole second.
        assert!(
            report.stuck_cpu <= Duration::from_millis(200),
            "the runtime's thread used {:?} of CPU in a second at its fd limit: {report:?}",
            report.stuck_cpu
        );
    });
}
