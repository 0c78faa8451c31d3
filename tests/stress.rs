//! Stress: many connections at once, misbehaving peers, leaks, wake and spawn
//! storms. Each test prints its figures with `eprintln!`; to see them:
//!
//! ```sh
//! cargo test --release --test stress -- --nocapture
//! ```
//!
//! Set `STRESS_SEED=N` to replay the random sizes and contents of a failed run: the
//! tests that use randomness print their seed first.
//!
//! What each test proves:
//!
//! - `eight_thousand_concurrent_connections_echo_every_byte`: an edgeloop echo server
//!   (its own runtime, on its own thread) holds 8,000 connections open at once, all
//!   made by edgeloop client tasks on a second runtime on the test's thread (two
//!   runtimes so that both cores work: one serves while the other checks; the
//!   server's registrations are counted between the client's two `block_on` calls,
//!   connect and talk, because inside one `Handle::metrics` of another runtime does
//!   not wait for a fresh snapshot), and
//!   echoes random messages of random sizes (1 B to 64 KiB, one to six per
//!   connection) exactly; every byte is compared, a difference names the connection,
//!   the message and the offset. Both ends live in this process: 16,000 sockets,
//!   so the soft `RLIMIT_NOFILE` is first raised to the hard limit, and the test is
//!   skipped (with a message) if the hard limit is too low. The listener comes from
//!   `TcpSocket::listen(8192)` (the kernel caps it at `somaxconn`; `TcpListener::bind`
//!   would give 1024) and clients connect in waves of 1,000.
//! - `a_peer_that_resets_while_the_server_writes_ends_only_its_task`: a peer that
//!   sends until the server is stuck writing its echo, then closes with RST
//!   (`SO_LINGER` 0), ends its server task with `ConnectionReset` or `BrokenPipe`;
//!   the server keeps serving, and its tasks and registrations return to baseline.
//! - `a_peer_that_half_closes_gets_its_whole_echo_then_eof`: peers that shut down
//!   their write side after sending (0 B to 4 MiB) get every byte back, then EOF.
//! - `a_peer_that_stops_reading_neither_blocks_others_nor_makes_the_server_spin`: while
//!   a peer leaves the server stuck writing for about two seconds, another client's
//!   200 round trips each take under 500 ms and the server's thread uses under 200 ms
//!   of CPU (its CPU-time clock, `pthread_getcpuclockid`, read before and after; a
//!   spinning loop would use about 2,000 ms); then the peer reads, and gets exactly
//!   its bytes back. That the server is stuck writing is read from `/proc/net/tcp`:
//!   its socket holds echo bytes it cannot send and request bytes it has not read.
//! - `connect_then_close_storms_leave_nothing_behind`: 5,000 connections that close at
//!   once, half with RST, from four threads in waves; the server ends every task
//!   (at EOF, or with the RST's error: see `is_late_reset` for one the kernel may add),
//!   returns to its baseline of tasks and registrations, and still serves.
//! - `five_thousand_connections_leak_no_fd_registration_or_task`: 5,000 connections in
//!   waves of 500, a round trip each; afterwards `/proc/self/fd`, `registered_fds` and
//!   `live_tasks` are exactly as before, and once the server is stopped the process
//!   holds exactly the fds it held before the test.
//! - `a_million_wakes_from_eight_threads_lose_nothing_and_stay_bounded`: eight threads
//!   wake 64 tasks a million times in all; each task is polled at most once per wake
//!   (plus its first poll), a wake after the storm polls every task exactly once more,
//!   every task ends, and the peak RSS grows by less than 64 MiB.
//! - `a_million_tiny_tasks_spawned_at_once_all_complete_in_bounded_memory`: a million
//!   tasks spawned before any runs, all joined, every output checked; peak RSS under
//!   1 GiB, and RSS back within 64 MiB of where it started once the runtime is gone
//!   (after `malloc_trim`: glibc keeps freed memory in the thread's arena otherwise),
//!   and the bytes malloc has handed out (`mallinfo2`) back within 4 MiB.
//!
//! File descriptors: the hard `RLIMIT_NOFILE` cannot be raised here, but the soft one
//! can, so every network test first raises the soft limit to the hard one
//! (`support::raise_fd_limit`). Only the 8,000-connection test needs more than a
//! couple of thousand fds; it is skipped, saying why, if the hard limit is below
//! 16,200. The peak RSS figures are reset per test by writing `5` to
//! `/proc/self/clear_refs` (`support::reset_peak_rss`).
//!
//! Every test takes `SERIAL`, a process-wide mutex, first: the tests of this binary
//! run one at a time, so that one test's fds, threads and memory never show in
//! another's counts (`/proc/self/fd`, RSS, CPU time). Each is bounded by
//! `support::with_timeout` and ends every thread it starts.

mod support;

use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use edgeloop::net::{TcpSocket, TcpStream};
use edgeloop::{Handle, Runtime, RuntimeMetrics};
use support::{
    XorShift, assert_same_bytes, echo, open_fds, pattern, proc_status_kib, raise_fd_limit,
    reset_peak_rss, roundtrip, set_linger_zero, std_connect, std_roundtrip, thread_cpu_time,
    wait_until, with_timeout,
};

/// Taken first by every test of this binary, so they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The `SERIAL` lock; a test that failed while holding it does not stop the others.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Backlog asked of the server's listener (the kernel caps it at `somaxconn`).
const BACKLOG: u32 = 8192;

/// How long to wait for the server to return to its baseline.
const SETTLE: Duration = Duration::from_secs(20);

/// The seed for `test`: `STRESS_SEED` if set, else from the clock; printed.
fn seed(test: &str) -> u64 {
    let seed = match std::env::var("STRESS_SEED") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|e| panic!("STRESS_SEED=`{text}` is not a u64: {e}")),
        Err(_) => {
            let since_epoch = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("the clock is past 1970");
            u64::try_from(since_epoch.as_nanos() % u128::from(u64::MAX))
                .expect("reduced below u64::MAX")
        }
    };
    eprintln!("{test}: seed {seed} (replay with STRESS_SEED={seed})");
    seed
}

/// Raises the soft fd limit to the hard one and returns the new soft limit.
fn fd_limit() -> io::Result<u64> {
    let (soft, hard) = raise_fd_limit()?;
    assert_eq!(
        soft, hard,
        "the soft fd limit was not raised to the hard one"
    );
    Ok(soft)
}

/// Milliseconds, for printing.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// KiB to MiB, for printing.
#[allow(clippy::cast_precision_loss, reason = "sizes far below 2^52 KiB")]
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// How one server connection ended: its peer, and what `support::echo` returned.
#[derive(Debug)]
struct Outcome {
    peer: SocketAddr,
    result: io::Result<u64>,
}

/// What the server's thread and the test share.
#[derive(Debug, Default)]
struct Shared {
    /// Set to make the accept loop end at its next accept.
    stop: AtomicBool,
    /// Connections accepted (not counting the one that wakes the loop to stop).
    accepted: AtomicUsize,
    /// One entry per connection whose task has ended.
    outcomes: Mutex<Vec<Outcome>>,
    /// Errors `accept` returned (the loop goes on after each).
    accept_errors: Mutex<Vec<io::Error>>,
}

impl Shared {
    fn outcomes(&self) -> MutexGuard<'_, Vec<Outcome>> {
        self.outcomes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn accept_errors(&self) -> MutexGuard<'_, Vec<io::Error>> {
        self.accept_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// An edgeloop echo server on its own thread and runtime: every accepted connection
/// gets a task running `support::echo`, whose result is recorded in `outcomes`.
/// Stopped (thread joined) by `stop` or on drop.
#[derive(Debug)]
struct Server {
    addr: SocketAddr,
    handle: Handle,
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<io::Result<RuntimeMetrics>>>,
}

impl Server {
    fn start(name: &str) -> io::Result<Server> {
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = thread::Builder::new().name(name.to_owned()).spawn({
            let shared = shared.clone();
            move || serve(&shared, &ready_tx)
        })?;
        match ready_rx.recv() {
            Ok((addr, handle)) => Ok(Server {
                addr,
                handle,
                shared,
                thread: Some(thread),
            }),
            // The thread ended before it listened: its error (or panic) says why.
            Err(mpsc::RecvError) => match thread.join() {
                Ok(Ok(_)) => Err(io::Error::other("the server ended before listening")),
                Ok(Err(e)) => Err(e),
                Err(payload) => std::panic::resume_unwind(payload),
            },
        }
    }

    fn metrics(&self) -> RuntimeMetrics {
        self.handle.metrics()
    }

    /// CPU time the server's thread has used so far.
    fn cpu_time(&self) -> io::Result<Duration> {
        thread_cpu_time(self.thread.as_ref().expect("the server is running"))
    }

    /// The recorded outcome of the connection from `peer`, once its task has ended.
    fn outcome_of(&self, peer: SocketAddr) -> io::Result<io::Result<u64>> {
        let mut found = None;
        wait_until(
            SETTLE,
            &format!("the server task for {peer} to end"),
            || {
                let mut outcomes = self.shared.outcomes();
                if let Some(i) = outcomes.iter().position(|o| o.peer == peer) {
                    found = Some(outcomes.swap_remove(i).result);
                }
                Ok(found.is_some())
            },
        )?;
        Ok(found.expect("wait_until returned Ok only once found"))
    }

    /// Waits until the server's tasks and registrations are back to `base`; returns
    /// the metrics then, or an error showing the last ones seen.
    fn settle(&self, base: &RuntimeMetrics, what: &str) -> io::Result<RuntimeMetrics> {
        let mut last = None;
        let waited = wait_until(SETTLE, what, || {
            let m = self.metrics();
            let back = m.live_tasks == base.live_tasks && m.registered_fds == base.registered_fds;
            last = Some(m);
            Ok(back)
        });
        let last = last.expect("wait_until calls its closure at least once");
        waited.map_err(|e| {
            io::Error::other(format!(
                "{e}: live_tasks {} (baseline {}), registered_fds {} (baseline {})",
                last.live_tasks, base.live_tasks, last.registered_fds, base.registered_fds
            ))
        })?;
        Ok(last)
    }

    /// Ends the accept loop (a flag, then a connection to wake it), joins the
    /// thread, and returns the runtime's final metrics (taken before it drops the
    /// tasks still running).
    fn stop(mut self) -> io::Result<RuntimeMetrics> {
        let thread = self.thread.take().expect("stopped once");
        self.shared.stop.store(true, Ordering::Release);
        let woken = std::net::TcpStream::connect(self.addr);
        match thread.join() {
            Ok(result) => {
                woken?;
                result
            }
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.shared.stop.store(true, Ordering::Release);
            // Ignored: drop cannot report, and a failed connect means the loop has
            // ended already.
            let _ = std::net::TcpStream::connect(self.addr);
            // Ignored: the test is failing already if the server is dropped unstopped.
            let _ = thread.join();
        }
    }
}

/// The server thread's body: listen, report the address and handle, accept until
/// told to stop.
fn serve(
    shared: &Arc<Shared>,
    ready: &mpsc::Sender<(SocketAddr, Handle)>,
) -> io::Result<RuntimeMetrics> {
    let rt = Runtime::new()?;
    let handle = rt.handle();
    rt.block_on(async {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let listener = socket.listen(BACKLOG)?;
        ready
            .send((listener.local_addr()?, handle))
            .map_err(|_| io::Error::other("the test stopped waiting for the server"))?;
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    if shared.stop.load(Ordering::Acquire) {
                        return Ok::<(), io::Error>(());
                    }
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    let shared = shared.clone();
                    edgeloop::spawn(async move {
                        let result = echo(stream).await;
                        shared.outcomes().push(Outcome { peer, result });
                    });
                }
                Err(e) => {
                    let out_of_fds = e.raw_os_error() == Some(libc::EMFILE);
                    shared.accept_errors().push(e);
                    if out_of_fds {
                        edgeloop::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    })?;
    Ok(rt.metrics())
}

/// A well-behaved blocking client that checks each of its round trips.
struct GoodClient {
    stream: std::net::TcpStream,
    rng: XorShift,
    trips: usize,
    max_rtt: Duration,
}

impl GoodClient {
    fn connect(addr: SocketAddr, seed: u64) -> io::Result<GoodClient> {
        Ok(GoodClient {
            stream: std_connect(addr)?,
            rng: XorShift::new(seed),
            trips: 0,
            max_rtt: Duration::ZERO,
        })
    }

    /// One round trip of 1 B to 4 KiB; returns how long it took.
    fn round_trip(&mut self) -> io::Result<Duration> {
        let len = self.rng.in_range(1, 4096);
        let msg = pattern(len, self.rng.next_u64());
        let start = Instant::now();
        let echoed = std_roundtrip(&mut self.stream, &msg)?;
        let rtt = start.elapsed();
        assert_same_bytes(
            &echoed,
            &msg,
            &format!("good client, round trip {}", self.trips),
        );
        self.trips += 1;
        self.max_rtt = self.max_rtt.max(rtt);
        Ok(rtt)
    }

    /// Closes cleanly: write side shut, then the server's EOF.
    fn close(mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        self.stream.read_to_end(&mut rest)?;
        assert!(
            rest.is_empty(),
            "good client: {} unexpected bytes before EOF",
            rest.len()
        );
        Ok(())
    }
}

/// Writes `data` on `stream` without reading until the kernel takes no more: writes
/// have said `WouldBlock` for 200 ms in a row, which means the server has stopped
/// reading because it is stuck writing its echo to us. Returns the bytes sent; the
/// stream is left blocking.
fn send_until_stuck(stream: &std::net::TcpStream, data: &[u8]) -> io::Result<usize> {
    stream.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    let mut blocked_since: Option<Instant> = None;
    loop {
        if sent == data.len() {
            return Err(io::Error::other(format!(
                "the server took all {sent} bytes without making the sender block"
            )));
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "sending did not get stuck within 30 s ({sent} bytes sent)"
            )));
        }
        let end = data.len().min(sent + 256 * 1024);
        match (&*stream).write(&data[sent..end]) {
            Ok(n) => {
                sent += n;
                blocked_since = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_millis(200) {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
    stream.set_nonblocking(false)?;
    Ok(sent)
}

/// The send and receive queues (`tx_queue`, `rx_queue`: bytes written and not yet
/// acknowledged, bytes received and not yet read) of the IPv4 TCP socket from
/// `local` to `remote`, from `/proc/net/tcp`; `None` if there is no such socket.
fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> io::Result<Option<(u64, u64)>> {
    // The kernel prints an address as the `%08X` of its 32-bit value as stored (in
    // network order), and the port as `%04X` in host order.
    let hex = |addr: SocketAddr| -> io::Result<String> {
        let SocketAddr::V4(v4) = addr else {
            return Err(io::Error::other(format!("{addr} is not IPv4")));
        };
        Ok(format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        ))
    };
    let (local, remote) = (hex(local)?, hex(remote)?);
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || fields[1] != local || fields[2] != remote {
            continue;
        }
        let parse = |text: &str| {
            u64::from_str_radix(text, 16)
                .map_err(|e| io::Error::other(format!("`{line}` in /proc/net/tcp: {e}")))
        };
        let (tx, rx) = fields[4]
            .split_once(':')
            .ok_or_else(|| io::Error::other(format!("`{line}` in /proc/net/tcp")))?;
        return Ok(Some((parse(tx)?, parse(rx)?)));
    }
    Ok(None)
}

/// Waits until the server's end of the connection to `peer` holds both echo bytes
/// it could not send (the peer's window is closed) and bytes it has not read: the
/// server is stuck writing. Returns those two queues.
fn server_stuck_writing(server: SocketAddr, peer: SocketAddr) -> io::Result<(u64, u64)> {
    let mut queues = None;
    wait_until(
        Duration::from_secs(5),
        "the server to be stuck writing",
        || {
            queues = tcp_queues(server, peer)?;
            Ok(queues.is_some_and(|(tx, rx)| tx > 0 && rx > 0))
        },
    )
    .map_err(|e| io::Error::other(format!("{e}: server socket queues {queues:?}")))?;
    Ok(queues.expect("checked in the loop"))
}

/// Why one connection of the 8,000 failed.
#[derive(Debug)]
enum Failure {
    Io {
        conn: usize,
        msg: usize,
        what: &'static str,
        error: io::Error,
    },
    Mismatch {
        conn: usize,
        msg: usize,
        sent: Vec<u8>,
        echoed: Vec<u8>,
    },
}

/// A message length in 1..=64 KiB: half of them uniform, half spread evenly over
/// powers of two (so there are many small ones too).
fn message_len(rng: &mut XorShift) -> usize {
    if rng.next_u64().is_multiple_of(2) {
        rng.in_range(1, 64 * 1024)
    } else {
        let max = 1usize << rng.in_range(0, 16);
        rng.in_range(1, max)
    }
}

/// Connection `conn` of the 8,000: one to six messages, each echoed and compared;
/// then a half-close and the server's EOF. Returns the bytes verified.
async fn talk(mut stream: TcpStream, conn: usize, seed: u64) -> Result<u64, Failure> {
    let mut rng = XorShift::new(seed ^ (u64::try_from(conn).expect("small") << 20));
    let messages = rng.in_range(1, 6);
    let mut verified = 0;
    for msg in 0..messages {
        let sent = pattern(message_len(&mut rng), rng.next_u64());
        let echoed = roundtrip(&mut stream, &sent)
            .await
            .map_err(|error| Failure::Io {
                conn,
                msg,
                what: "round trip",
                error,
            })?;
        if echoed != sent {
            return Err(Failure::Mismatch {
                conn,
                msg,
                sent,
                echoed,
            });
        }
        verified += u64::try_from(sent.len()).expect("usize fits in u64");
    }
    let eof = async {
        stream.shutdown(Shutdown::Write)?;
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).await? {
            0 => Ok(()),
            n => Err(io::Error::other(format!("{n} bytes instead of EOF"))),
        }
    };
    eof.await.map_err(|error| Failure::Io {
        conn,
        msg: messages,
        what: "EOF after the last message",
        error,
    })?;
    Ok(verified)
}

#[test]
fn eight_thousand_concurrent_connections_echo_every_byte() -> io::Result<()> {
    const CONNECTIONS: usize = 8_000;
    const WAVE: usize = 1_000;
    let _serial = serial();
    let limit = fd_limit()?;
    // Both ends of every connection, plus the runtimes, the listener, std's and
    // the harness's fds.
    let needed = u64::try_from(2 * CONNECTIONS + 200).expect("small");
    if limit < needed {
        eprintln!(
            "SKIPPED eight_thousand_concurrent_connections: the hard RLIMIT_NOFILE is \
             {limit}, below the {needed} fds that 8,000 connections with both ends in \
             this process need"
        );
        return Ok(());
    }
    let seed = seed("8,000 connections");
    with_timeout(150, "8,000 connections", move || {
        let start = Instant::now();
        let server = Server::start("echo-8000")?;
        let base = server.metrics();
        let addr = server.addr;
        let client = Runtime::new()?;
        // All connections first, in waves, held open.
        let streams = client.block_on(async {
            let mut streams = Vec::with_capacity(CONNECTIONS);
            while streams.len() < CONNECTIONS {
                let wave: Vec<_> = (0..WAVE)
                    .map(|_| edgeloop::spawn(TcpStream::connect(addr)))
                    .collect();
                for connect in wave {
                    let stream = connect
                        .await
                        .map_err(|e| io::Error::other(format!("connect task: {e}")))??;
                    streams.push(stream);
                }
            }
            Ok::<_, io::Error>(streams)
        })?;
        let connected = start.elapsed();
        // The server holds all of them too. (Asked between the client's `block_on`
        // calls: inside one, `Handle::metrics` of another runtime does not wait for
        // a fresh snapshot.)
        wait_until(SETTLE, "the server to register 8,000 connections", || {
            Ok(server.metrics().registered_fds == base.registered_fds + CONNECTIONS)
        })?;
        let fds = open_fds()?.len();
        eprintln!(
            "8,000 connections: all {CONNECTIONS} open at once after {:.0} ms; {fds} fds \
             open in the process (limit {limit})",
            ms(connected)
        );
        assert!(fds >= 2 * CONNECTIONS, "only {fds} fds open");
        // Then every connection talks at once.
        let verified: Vec<Result<u64, Failure>> = client.block_on(async {
            let tasks: Vec<_> = streams
                .into_iter()
                .enumerate()
                .map(|(conn, stream)| edgeloop::spawn(talk(stream, conn, seed)))
                .collect();
            let mut results = Vec::with_capacity(CONNECTIONS);
            for task in tasks {
                results.push(
                    task.await
                        .map_err(|e| io::Error::other(format!("client task: {e}")))?,
                );
            }
            Ok::<_, io::Error>(results)
        })?;
        let client_metrics = client.metrics();
        drop(client);
        let failures: Vec<&Failure> = verified.iter().filter_map(|r| r.as_ref().err()).collect();
        if let Some(first) = failures.first() {
            eprintln!(
                "8,000 connections: {} of {CONNECTIONS} failed (seed {seed})",
                failures.len()
            );
            match first {
                Failure::Io {
                    conn,
                    msg,
                    what,
                    error,
                } => panic!("seed {seed}: connection {conn}, message {msg}, {what}: {error}"),
                Failure::Mismatch {
                    conn,
                    msg,
                    sent,
                    echoed,
                } => assert_same_bytes(
                    echoed,
                    sent,
                    &format!("seed {seed}: connection {conn}, message {msg}"),
                ),
            }
            unreachable!("assert_same_bytes panics on different bytes");
        }
        let bytes: u64 = verified
            .iter()
            .map(|r| *r.as_ref().expect("no failure"))
            .sum();
        server.settle(&base, "the server to end all 8,000 tasks")?;
        let outcomes = std::mem::take(&mut *server.shared.outcomes());
        assert_eq!(outcomes.len(), CONNECTIONS, "server tasks that ended");
        let mut echoed = 0;
        for outcome in &outcomes {
            match &outcome.result {
                Ok(n) => echoed += n,
                Err(e) => panic!("server task for {}: {e}", outcome.peer),
            }
        }
        assert_eq!(
            echoed, bytes,
            "bytes the server echoed, against those verified"
        );
        let accept_errors = std::mem::take(&mut *server.shared.accept_errors());
        assert!(accept_errors.is_empty(), "accept errors: {accept_errors:?}");
        let final_metrics = server.stop()?;
        assert_eq!(
            (client_metrics.live_tasks, client_metrics.registered_fds),
            (0, 0),
            "client runtime left tasks or registrations: {client_metrics}"
        );
        eprintln!(
            "8,000 connections: {bytes} bytes sent, echoed and verified in {:.0} ms; \
             server polls {}, epoll_waits {}, events per wait {:.1}",
            ms(start.elapsed()),
            final_metrics.polls,
            final_metrics.epoll_waits,
            final_metrics.mean_io_events_per_wait()
        );
        Ok(())
    })
}

/// Whether `result` is `support::echo` meeting an RST after the peer's FIN: it read
/// EOF, then its `shutdown(Write)` found the socket closed (`NotConnected`).
///
/// Loopback makes this happen to a peer that closes normally, without any bug: when
/// the kernel has no TIME_WAIT slot left for the peer's end (`tcp_max_tw_buckets`,
/// shared by everything on the machine, e.g. after a few runs of these tests in a
/// row), that end is freed at once, a new connection may reuse its port while the
/// server's end still waits to be read, and the server's end answers the new SYN
/// with a challenge ACK, which the new connection's kernel answers with an RST.
fn is_late_reset(result: &io::Result<u64>) -> bool {
    result
        .as_ref()
        .is_err_and(|e| e.kind() == io::ErrorKind::NotConnected)
}

/// Whether `result` is the error a peer's RST gives a reader or a writer.
fn is_reset(result: &io::Result<u64>) -> bool {
    result.as_ref().is_err_and(|e| {
        matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        )
    })
}

#[test]
fn a_peer_that_resets_while_the_server_writes_ends_only_its_task() -> io::Result<()> {
    let _serial = serial();
    fd_limit()?;
    let seed = seed("RST mid-write");
    with_timeout(60, "RST mid-write", move || {
        let server = Server::start("echo-rst")?;
        let base = server.metrics();
        let mut good = GoodClient::connect(server.addr, seed)?;
        good.round_trip()?;

        let rude = std_connect(server.addr)?;
        let rude_addr = rude.local_addr()?;
        let data = pattern(64 << 20, seed.rotate_left(7));
        let sent = send_until_stuck(&rude, &data)?;
        let (unsent, unread) = server_stuck_writing(server.addr, rude_addr)?;
        for _ in 0..20 {
            good.round_trip()?;
        }
        set_linger_zero(rude.as_raw_fd())?;
        drop(rude);
        let outcome = server.outcome_of(rude_addr)?;
        assert!(
            is_reset(&outcome),
            "the RST peer's server task ended with {outcome:?}, not ConnectionReset or \
             BrokenPipe"
        );
        for _ in 0..20 {
            good.round_trip()?;
        }
        let mut fresh = GoodClient::connect(server.addr, seed.rotate_left(13))?;
        fresh.round_trip()?;
        fresh.close()?;
        let trips = good.trips;
        let max_rtt = good.max_rtt;
        good.close()?;
        let settled = server.settle(&base, "tasks and registrations back to baseline")?;
        let all = std::mem::take(&mut *server.shared.outcomes());
        assert_eq!(all.len(), 2, "the two good clients' outcomes: {all:?}");
        assert!(
            all.iter().all(|o| o.result.is_ok()),
            "good clients: {all:?}"
        );
        eprintln!(
            "RST mid-write: {sent} bytes sent before the server got stuck writing (its \
             socket: {unsent} bytes not yet acknowledged, {unread} not yet read); its task \
             ended with {:?}; good client: {trips} round trips, max {:.2} ms; back to \
             live_tasks={} registered_fds={}",
            outcome.expect_err("checked above").kind(),
            ms(max_rtt),
            settled.live_tasks,
            settled.registered_fds
        );
        server.stop()?;
        Ok(())
    })
}

/// Half-close peer `i`: sends `msg` from a second thread and shuts down its write
/// side, while this thread reads the echo to EOF; checks the echo. Returns the
/// peer's address and the length sent.
fn half_close_peer(addr: SocketAddr, i: usize, msg: &[u8]) -> io::Result<(SocketAddr, usize)> {
    let mut stream = std_connect(addr)?;
    let local = stream.local_addr()?;
    let mut writer = stream.try_clone()?;
    let echoed = thread::scope(|w| {
        let sender = w.spawn(|| {
            writer.write_all(msg)?;
            writer.shutdown(Shutdown::Write)
        });
        let mut echoed = Vec::with_capacity(msg.len());
        let read = stream.read_to_end(&mut echoed);
        sender.join().expect("writer thread panicked")?;
        read.map(|_| echoed)
    })?;
    let len = msg.len();
    assert_same_bytes(&echoed, msg, &format!("half-close peer {i} ({len} B)"));
    Ok((local, len))
}

#[test]
fn a_peer_that_half_closes_gets_its_whole_echo_then_eof() -> io::Result<()> {
    let _serial = serial();
    fd_limit()?;
    let seed = seed("half-close");
    with_timeout(60, "half-close", move || {
        let server = Server::start("echo-half-close")?;
        let base = server.metrics();
        let mut good = GoodClient::connect(server.addr, seed)?;
        let mut rng = XorShift::new(seed.rotate_left(17));
        let mut sizes = vec![0, 1, 100, 16 * 1024, 64 * 1024 + 1, 1 << 20, 4 << 20];
        sizes.extend((0..9).map(|_| rng.in_range(1, 2 << 20)));
        let addr = server.addr;
        let peers: Vec<(SocketAddr, usize)> = thread::scope(|s| {
            let peers: Vec<_> = sizes
                .iter()
                .enumerate()
                .map(|(i, &len)| {
                    let msg = pattern(len, seed ^ u64::try_from(i).expect("small"));
                    s.spawn(move || half_close_peer(addr, i, &msg))
                })
                .collect();
            // Meanwhile, the good client's round trips.
            for _ in 0..50 {
                good.round_trip()?;
            }
            peers
                .into_iter()
                .map(|p| p.join().expect("half-close peer panicked"))
                .collect::<io::Result<_>>()
        })?;
        for &(peer, len) in &peers {
            let outcome = server.outcome_of(peer)?;
            assert_eq!(
                outcome.as_ref().ok(),
                Some(&u64::try_from(len).expect("usize fits in u64")),
                "server task of the half-close peer sending {len} B: {outcome:?}"
            );
        }
        let trips = good.trips;
        let max_rtt = good.max_rtt;
        good.close()?;
        server.settle(&base, "tasks and registrations back to baseline")?;
        let total: usize = peers.iter().map(|&(_, len)| len).sum();
        eprintln!(
            "half-close: {} peers, {total} bytes echoed exactly, each followed by EOF; \
             good client: {trips} round trips, max {:.2} ms",
            peers.len(),
            ms(max_rtt)
        );
        server.stop()?;
        Ok(())
    })
}

#[test]
fn a_peer_that_stops_reading_neither_blocks_others_nor_makes_the_server_spin() -> io::Result<()> {
    const TRIPS: usize = 200;
    let _serial = serial();
    fd_limit()?;
    let seed = seed("stuck reader");
    with_timeout(90, "stuck reader", move || {
        let server = Server::start("echo-stuck")?;
        let base = server.metrics();
        let mut good = GoodClient::connect(server.addr, seed)?;
        good.round_trip()?;

        let mut stuck = std_connect(server.addr)?;
        let stuck_addr = stuck.local_addr()?;
        let data = pattern(64 << 20, seed.rotate_left(23));
        let sent = send_until_stuck(&stuck, &data)?;
        let (unsent, unread) = server_stuck_writing(server.addr, stuck_addr)?;

        // About two seconds stuck; meanwhile 200 round trips, one every 10 ms.
        let before = server.metrics();
        let cpu_before = server.cpu_time()?;
        let window = Instant::now();
        let mut rtts = Vec::with_capacity(TRIPS);
        for i in 0..TRIPS {
            rtts.push(good.round_trip()?);
            let next = Duration::from_millis(10) * u32::try_from(i + 1).expect("small");
            if let Some(pause) = next.checked_sub(window.elapsed()) {
                thread::sleep(pause);
            }
        }
        let cpu = server.cpu_time()? - cpu_before;
        let elapsed = window.elapsed();
        let after = server.metrics();
        let still = server_stuck_writing(server.addr, stuck_addr)?;
        let max_rtt = rtts.iter().max().copied().unwrap_or_default();
        rtts.sort_unstable();
        let median = rtts[rtts.len() / 2];
        eprintln!(
            "stuck reader: {sent} bytes sent before stuck (server socket queues: {unsent} \
             unsent, {unread} unread; at the end {still:?}); over {:.0} ms stuck: {TRIPS} \
             round trips, median {:.2} ms, max {:.2} ms; server thread CPU {:.1} ms; \
             server polls +{}, epoll_waits +{}, write_would_block +{}",
            ms(elapsed),
            ms(median),
            ms(max_rtt),
            ms(cpu),
            after.polls - before.polls,
            after.epoll_waits - before.epoll_waits,
            after.write_would_block - before.write_would_block,
        );
        assert!(
            max_rtt < Duration::from_millis(500),
            "a round trip took {max_rtt:?} while another peer was stuck"
        );
        assert!(
            cpu < Duration::from_millis(200),
            "the server's thread used {cpu:?} of CPU in {elapsed:?} while a peer was stuck: \
             it spins"
        );

        // The peer reads at last: exactly its bytes, then EOF after its half-close.
        let mut echoed = vec![0u8; sent];
        stuck.read_exact(&mut echoed)?;
        assert_same_bytes(&echoed, &data[..sent], "the stuck peer's echo");
        stuck.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        stuck.read_to_end(&mut rest)?;
        assert!(rest.is_empty(), "{} bytes past the echo", rest.len());
        let outcome = server.outcome_of(stuck_addr)?;
        assert_eq!(
            outcome.as_ref().ok(),
            Some(&u64::try_from(sent).expect("usize fits in u64")),
            "the stuck peer's server task: {outcome:?}"
        );
        good.close()?;
        server.settle(&base, "tasks and registrations back to baseline")?;
        server.stop()?;
        Ok(())
    })
}

/// Storm thread `t`: `waves` times, opens `wave` connections to `addr`, then closes
/// them all, every other one with RST. Returns how many were reset.
fn connect_and_close(addr: SocketAddr, t: usize, waves: usize, wave: usize) -> io::Result<usize> {
    let mut resets = 0;
    for w in 0..waves {
        let streams = (0..wave)
            .map(|_| std::net::TcpStream::connect(addr))
            .collect::<io::Result<Vec<_>>>()?;
        for (i, stream) in streams.into_iter().enumerate() {
            if (t + w + i) % 2 == 1 {
                set_linger_zero(stream.as_raw_fd())?;
                resets += 1;
            }
            drop(stream);
        }
    }
    Ok(resets)
}

#[test]
fn connect_then_close_storms_leave_nothing_behind() -> io::Result<()> {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 1_250;
    const WAVE: usize = 250;
    let _serial = serial();
    fd_limit()?;
    let seed = seed("connect-close storm");
    with_timeout(90, "connect-close storm", move || {
        let start = Instant::now();
        let server = Server::start("echo-storm")?;
        let mut good = GoodClient::connect(server.addr, seed)?;
        good.round_trip()?;
        // The baseline holds the good client's task and registration.
        let base = server.metrics();
        let addr = server.addr;
        let cpu_before = server.cpu_time()?;
        let storm_done = AtomicBool::new(false);
        let (resets, during) = thread::scope(|s| {
            let stormers: Vec<_> = (0..THREADS)
                .map(|t| s.spawn(move || connect_and_close(addr, t, PER_THREAD / WAVE, WAVE)))
                .collect();
            let storm_done = &storm_done;
            let watcher = s.spawn(move || {
                let resets = stormers
                    .into_iter()
                    .map(|h| h.join().expect("storm thread panicked"))
                    .sum::<io::Result<usize>>();
                storm_done.store(true, Ordering::Release);
                resets
            });
            // The good client keeps going during the storm.
            let mut during = 0;
            while !storm_done.load(Ordering::Acquire) {
                good.round_trip()?;
                during += 1;
            }
            let resets = watcher.join().expect("watcher thread panicked")?;
            Ok::<_, io::Error>((resets, during))
        })?;
        let storm = start.elapsed();
        let total = THREADS * PER_THREAD;
        let storm_cpu = server.cpu_time()? - cpu_before;
        wait_until(
            SETTLE,
            "the server to accept every storm connection",
            || Ok(server.shared.accepted.load(Ordering::Relaxed) == total + 1),
        )?;
        let settled = server.settle(&base, "tasks and registrations back to baseline")?;
        let outcomes = std::mem::take(&mut *server.shared.outcomes());
        assert_eq!(outcomes.len(), total, "storm connections whose task ended");
        let clean = outcomes
            .iter()
            .filter(|o| matches!(o.result, Ok(0)))
            .count();
        let reset = outcomes.iter().filter(|o| is_reset(&o.result)).count();
        let late_reset = outcomes.iter().filter(|o| is_late_reset(&o.result)).count();
        let other: Vec<_> = outcomes
            .iter()
            .filter(|o| {
                !matches!(o.result, Ok(0)) && !is_reset(&o.result) && !is_late_reset(&o.result)
            })
            .collect();
        // Served afterwards, by the old client and a new one.
        for _ in 0..10 {
            good.round_trip()?;
        }
        let mut fresh = GoodClient::connect(server.addr, seed.rotate_left(29))?;
        fresh.round_trip()?;
        fresh.close()?;
        let accept_errors = server.shared.accept_errors().len();
        eprintln!(
            "connect-close storm: {total} connections from {THREADS} threads in waves of \
             {WAVE} in {:.0} ms ({resets} closed with RST), server thread CPU {:.0} ms; \
             server tasks ended: {clean} at EOF, {reset} reset, {late_reset} reset after \
             EOF, {} other; accept errors \
             {accept_errors}; good client: {} round trips ({during} during the storm), max \
             {:.2} ms; back to live_tasks={} registered_fds={}",
            ms(storm),
            ms(storm_cpu),
            other.len(),
            good.trips,
            ms(good.max_rtt),
            settled.live_tasks,
            settled.registered_fds,
        );
        assert!(
            other.is_empty(),
            "server tasks ended neither at EOF nor reset: {other:?}"
        );
        assert_eq!(
            accept_errors,
            0,
            "accept errors: {:?}",
            server.shared.accept_errors()
        );
        good.close()?;
        server.stop()?;
        Ok(())
    })
}

/// Connection `conn` of the leak test: connects, sends 1 B to 16 KiB, checks the
/// echo, closes. Returns the length sent.
async fn connect_and_echo(addr: SocketAddr, conn: usize, seed: u64) -> io::Result<u64> {
    let mut rng = XorShift::new(seed ^ u64::try_from(conn).expect("small"));
    let msg = pattern(rng.in_range(1, 16 * 1024), rng.next_u64());
    let mut stream = TcpStream::connect(addr).await?;
    let echoed = roundtrip(&mut stream, &msg).await?;
    assert_same_bytes(&echoed, &msg, &format!("seed {seed}: connection {conn}"));
    Ok(u64::try_from(msg.len()).expect("usize fits in u64"))
}

#[test]
fn five_thousand_connections_leak_no_fd_registration_or_task() -> io::Result<()> {
    const CONNECTIONS: usize = 5_000;
    const WAVE: usize = 500;
    let _serial = serial();
    fd_limit()?;
    let seed = seed("leaks");
    with_timeout(90, "leaks", move || {
        let start = Instant::now();
        let fds_at_start = open_fds()?;
        let server = Server::start("echo-leaks")?;
        let base = server.metrics();
        let fds_before = open_fds()?;
        let addr = server.addr;
        let client = Runtime::new()?;
        let bytes = client.block_on(async {
            let mut bytes = 0u64;
            for wave in 0..CONNECTIONS / WAVE {
                let tasks: Vec<_> = (0..WAVE)
                    .map(|i| {
                        let conn = wave * WAVE + i;
                        edgeloop::spawn(connect_and_echo(addr, conn, seed))
                    })
                    .collect();
                for task in tasks {
                    bytes += task
                        .await
                        .map_err(|e| io::Error::other(format!("client task: {e}")))??;
                }
            }
            Ok::<_, io::Error>(bytes)
        })?;
        let client_metrics = client.metrics();
        drop(client);
        assert_eq!(
            (client_metrics.live_tasks, client_metrics.registered_fds),
            (0, 0),
            "client runtime: {client_metrics}"
        );
        let settled = server.settle(&base, "tasks and registrations back to baseline")?;
        assert_eq!(
            server.shared.accepted.load(Ordering::Relaxed),
            CONNECTIONS,
            "connections accepted"
        );
        let outcomes = std::mem::take(&mut *server.shared.outcomes());
        assert_eq!(outcomes.len(), CONNECTIONS, "server tasks that ended");
        // Every client got its whole echo (checked above); a server task may still
        // see an RST after the client's FIN (see `is_late_reset`), nothing else.
        let late_resets = outcomes.iter().filter(|o| is_late_reset(&o.result)).count();
        let failed: Vec<_> = outcomes
            .iter()
            .filter(|o| o.result.is_err() && !is_late_reset(&o.result))
            .collect();
        assert!(failed.is_empty(), "server tasks failed: {failed:?}");
        // Every fd the connections opened is closed, on both sides.
        let mut fds_after = open_fds()?;
        wait_until(SETTLE, "the process's fds back to their count", || {
            fds_after = open_fds()?;
            Ok(fds_after == fds_before)
        })
        .map_err(|e| {
            io::Error::other(format!(
                "{e}: {} fds before, {} now: {fds_before:?} then {fds_after:?}",
                fds_before.len(),
                fds_after.len()
            ))
        })?;
        server.stop()?;
        let fds_end = open_fds()?;
        assert_eq!(
            fds_end, fds_at_start,
            "fds open after the server stopped, against those at the start"
        );
        eprintln!(
            "leaks: {CONNECTIONS} connections in waves of {WAVE}, {bytes} bytes echoed \
             ({late_resets} reset by the kernel after their EOF), in \
             {:.0} ms; fds: {} at the start, {} with the server, {} after the connections, \
             {} once the server stopped; server live_tasks {} -> {}, registered_fds {} -> {}",
            ms(start.elapsed()),
            fds_at_start.len(),
            fds_before.len(),
            fds_after.len(),
            fds_end.len(),
            base.live_tasks,
            settled.live_tasks,
            base.registered_fds,
            settled.registered_fds
        );
        Ok(())
    })
}

/// One task of the wake storm: its waker, and counts of its polls and of the wakes
/// sent to it.
#[derive(Debug, Default)]
struct Probe {
    waker: OnceLock<Waker>,
    polls: AtomicU64,
    wakes: AtomicU64,
    /// Polls that saw a waker that would not wake the stored one.
    waker_changes: AtomicU64,
}

impl Probe {
    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::AcqRel);
        self.waker.get().expect("polled once already").wake_by_ref();
    }
}

/// What the wake storm's runtime thread returns: each task's poll count when it
/// ended, and the runtime's final metrics.
type StormOutput = io::Result<(Vec<u64>, RuntimeMetrics)>;

/// Ends the wake storm's tasks (so its runtime thread ends) and joins that thread,
/// when dropped: on the way out of a failed test too.
struct EndProbes<'a> {
    done: &'a AtomicBool,
    probes: &'a [Arc<Probe>],
    runtime: Option<thread::JoinHandle<StormOutput>>,
}

impl EndProbes<'_> {
    /// Tells every task to end, and waits for the runtime's thread.
    fn end(&mut self) -> thread::Result<StormOutput> {
        self.done.store(true, Ordering::Release);
        for probe in self.probes {
            if probe.waker.get().is_some() {
                probe.wake();
            }
        }
        self.runtime.take().map_or_else(
            || Ok(Err(io::Error::other("ended twice"))),
            thread::JoinHandle::join,
        )
    }
}

impl Drop for EndProbes<'_> {
    fn drop(&mut self) {
        if self.runtime.is_some() {
            // Ignored: the test is failing already.
            let _ = self.end();
        }
    }
}

/// Each probe's poll count once the runtime is idle: no task queued, and the counts
/// unchanged over three snapshots in a row.
fn polls_when_idle(handle: &Handle, probes: &[Arc<Probe>]) -> io::Result<Vec<u64>> {
    let mut previous: Option<Vec<u64>> = None;
    let mut same = 0;
    wait_until(Duration::from_secs(20), "the runtime to go idle", || {
        let queued = handle.metrics().queued_tasks;
        let polls: Vec<u64> = probes
            .iter()
            .map(|p| p.polls.load(Ordering::Acquire))
            .collect();
        if queued == 0 && previous.as_ref() == Some(&polls) {
            same += 1;
        } else {
            same = 0;
        }
        previous = Some(polls);
        Ok(same >= 2)
    })?;
    Ok(previous.expect("set by every call"))
}

#[test]
fn a_million_wakes_from_eight_threads_lose_nothing_and_stay_bounded() -> io::Result<()> {
    const TASKS: usize = 64;
    const THREADS: usize = 8;
    const WAKES: usize = 1_000_000;
    const ROUNDS: usize = 4;
    let _serial = serial();
    with_timeout(120, "wake storm", || {
        reset_peak_rss()?;
        let rss_before = proc_status_kib("VmRSS")?;
        let hwm_before = proc_status_kib("VmHWM")?;
        let probes: Vec<Arc<Probe>> = (0..TASKS).map(|_| Arc::default()).collect();
        let done = Arc::new(AtomicBool::new(false));
        let (handle_tx, handle_rx) = mpsc::channel();
        let runtime = thread::Builder::new().name("wake-storm-rt".into()).spawn({
            let probes = probes.clone();
            let done = done.clone();
            move || -> StormOutput {
                let rt = Runtime::new()?;
                handle_tx
                    .send(rt.handle())
                    .map_err(|_| io::Error::other("the test stopped waiting"))?;
                let outputs = rt.block_on(async {
                    let tasks: Vec<_> = probes
                        .into_iter()
                        .map(|probe| {
                            let done = done.clone();
                            edgeloop::spawn(poll_fn(move |cx| {
                                let polls = probe.polls.fetch_add(1, Ordering::AcqRel) + 1;
                                let stored = probe.waker.get_or_init(|| cx.waker().clone());
                                if !stored.will_wake(cx.waker()) {
                                    probe.waker_changes.fetch_add(1, Ordering::Relaxed);
                                }
                                if done.load(Ordering::Acquire) {
                                    Poll::Ready(polls)
                                } else {
                                    Poll::Pending
                                }
                            }))
                        })
                        .collect();
                    let mut outputs = Vec::with_capacity(tasks.len());
                    for task in tasks {
                        outputs.push(
                            task.await
                                .map_err(|e| io::Error::other(format!("probe task: {e}")))?,
                        );
                    }
                    Ok::<_, io::Error>(outputs)
                })?;
                Ok((outputs, rt.metrics()))
            }
        })?;
        let mut ender = EndProbes {
            done: &done,
            probes: &probes,
            runtime: Some(runtime),
        };
        let handle = handle_rx
            .recv()
            .map_err(|_| io::Error::other("the runtime thread ended before starting"))?;
        wait_until(Duration::from_secs(10), "every probe polled once", || {
            Ok(probes.iter().all(|p| p.waker.get().is_some()))
        })?;

        // The storm, in rounds; after each, once the runtime is idle, one more wake
        // per task must give exactly one more poll (a lost wake would leave the task
        // marked queued and never polled again).
        let start = Instant::now();
        let mut settled = vec![1; TASKS];
        for round in 0..ROUNDS {
            thread::scope(|s| {
                for t in 0..THREADS {
                    let probes = &probes;
                    s.spawn(move || {
                        let mut rng =
                            XorShift::new(u64::try_from(round * THREADS + t).expect("small"));
                        for _ in 0..WAKES / ROUNDS / THREADS {
                            probes[rng.in_range(0, TASKS - 1)].wake();
                        }
                    });
                }
            });
            let idle = polls_when_idle(&handle, &probes)?;
            for (i, (probe, &polls)) in probes.iter().zip(&idle).enumerate() {
                let woken = probe.wakes.load(Ordering::Acquire);
                assert!(
                    polls <= woken + 1,
                    "round {round}, task {i}: {polls} polls for {woken} wakes (and its first \
                     poll)"
                );
            }
            for probe in &probes {
                probe.wake();
            }
            wait_until(Duration::from_secs(10), "one poll per final wake", || {
                Ok(probes
                    .iter()
                    .zip(&idle)
                    .all(|(p, &before)| p.polls.load(Ordering::Acquire) > before))
            })?;
            settled = polls_when_idle(&handle, &probes)?;
            for (i, (&now, &before)) in settled.iter().zip(&idle).enumerate() {
                assert_eq!(
                    now,
                    before + 1,
                    "round {round}, task {i}: polls after one last wake"
                );
            }
        }
        let storm = start.elapsed();
        let wakes: u64 = probes.iter().map(|p| p.wakes.load(Ordering::Acquire)).sum();
        assert_eq!(
            wakes,
            u64::try_from(WAKES + ROUNDS * TASKS).expect("small"),
            "wakes sent"
        );

        // Every task ends when told to.
        let (outputs, metrics) = match ender.end() {
            Ok(result) => result?,
            Err(payload) => std::panic::resume_unwind(payload),
        };
        for (i, (&output, &before)) in outputs.iter().zip(&settled).enumerate() {
            assert_eq!(output, before + 1, "task {i}: polls when it ended");
        }
        let changes: u64 = probes
            .iter()
            .map(|p| p.waker_changes.load(Ordering::Relaxed))
            .sum();
        assert_eq!(changes, 0, "polls that saw a different waker");
        assert_eq!(metrics.live_tasks, 0, "{metrics}");
        let hwm_after = proc_status_kib("VmHWM")?;
        let total_polls: u64 = outputs.iter().sum();
        eprintln!(
            "wake storm: {WAKES} wakes of {TASKS} tasks from {THREADS} threads in {ROUNDS} \
             rounds, each checked, in {:.0} ms; {total_polls} polls in all ({} remote wakes \
             reached the runtime); peak RSS {:.1} MiB -> {:.1} MiB (+{:.1} MiB; RSS at \
             start {:.1} MiB)",
            ms(storm),
            metrics.remote_wakes,
            mib(hwm_before),
            mib(hwm_after),
            mib(hwm_after.saturating_sub(hwm_before)),
            mib(rss_before),
        );
        assert!(
            hwm_after.saturating_sub(hwm_before) < 64 * 1024,
            "peak RSS grew by {} KiB during the wake storm",
            hwm_after - hwm_before
        );
        Ok(())
    })
}

#[test]
fn a_million_tiny_tasks_spawned_at_once_all_complete_in_bounded_memory() -> io::Result<()> {
    const TASKS: u64 = 1_000_000;
    let _serial = serial();
    with_timeout(120, "spawn storm", || {
        fixed_malloc_thresholds();
        reset_peak_rss()?;
        let rss_before = proc_status_kib("VmRSS")?;
        let heap_before = malloc_in_use();
        let start = Instant::now();
        let rt = Runtime::new()?;
        let (sum, rss_spawned, spawned_in) = rt.block_on(async {
            let handles: Vec<_> = (0..TASKS)
                .map(|i| edgeloop::spawn(async move { i * 3 + 1 }))
                .collect();
            let spawned_in = start.elapsed();
            let rss_spawned = proc_status_kib("VmRSS")?;
            let mut sum = 0u64;
            for (i, handle) in (0..TASKS).zip(handles) {
                let output = handle
                    .await
                    .map_err(|e| io::Error::other(format!("task {i}: {e}")))?;
                assert_eq!(output, i * 3 + 1, "output of task {i}");
                sum += output;
            }
            Ok::<_, io::Error>((sum, rss_spawned, spawned_in))
        })?;
        let elapsed = start.elapsed();
        let metrics = rt.metrics();
        drop(rt);
        let rss_cached = proc_status_kib("VmRSS")?;
        let hwm = proc_status_kib("VmHWM")?;
        let heap_after = malloc_in_use();
        // glibc keeps what the tasks freed in this thread's arena (about 170 MiB);
        // once trimmed, what is left in RSS is what is still allocated.
        trim_malloc();
        let rss_after = proc_status_kib("VmRSS")?;
        assert_eq!(
            sum,
            3 * TASKS * (TASKS - 1) / 2 + TASKS,
            "sum of the outputs"
        );
        assert_eq!(
            (
                metrics.spawned_tasks,
                metrics.completed_tasks,
                metrics.live_tasks
            ),
            (TASKS, TASKS, 0),
            "{metrics}"
        );
        eprintln!(
            "spawn storm: {TASKS} tasks spawned in {:.0} ms, all joined and checked in {:.0} \
             ms; RSS {:.1} MiB before, {:.1} MiB with all spawned, {:.1} MiB after the \
             runtime dropped ({:.1} MiB before malloc_trim); peak {:.1} MiB; heap in use \
             {} before, {} after",
            ms(spawned_in),
            ms(elapsed),
            mib(rss_before),
            mib(rss_spawned),
            mib(rss_after),
            mib(rss_cached),
            mib(hwm),
            bytes(heap_before),
            bytes(heap_after),
        );
        if let (Some(before), Some(after)) = (heap_before, heap_after) {
            assert!(
                after <= before + (4 << 20),
                "{after} bytes allocated after the storm, {before} before: the tasks leak"
            );
        }
        assert!(hwm < 1024 * 1024, "peak RSS {hwm} KiB, over 1 GiB");
        assert!(
            rss_after <= rss_before + 64 * 1024,
            "RSS {rss_after} KiB after the storm, {rss_before} KiB before: more than 64 MiB \
             kept"
        );
        Ok(())
    })
}

/// A byte count for printing, or `n/a`.
fn bytes(count: Option<usize>) -> String {
    count.map_or_else(|| "n/a".to_owned(), |b| format!("{b} B"))
}

/// Bytes that malloc has handed out and not had back (glibc's `mallinfo2`, every
/// arena: `uordblks` plus `hblkhd`); `None` off glibc.
fn malloc_in_use() -> Option<usize> {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: `mallinfo2` takes nothing and returns a struct by value; it only
        // reads the allocator's own statistics, under its locks.
        let info = unsafe { libc::mallinfo2() };
        Some(info.uordblks + info.hblkhd)
    }
    #[cfg(not(target_env = "gnu"))]
    None
}

/// Fixes glibc's trim and mmap thresholds at their defaults (128 KiB), which turns
/// off their growth: otherwise, after a big block is freed, up to 64 MiB freed at
/// the top of a thread's heap may stay in RSS even through `malloc_trim`, which
/// trims only the main heap's top. Process-wide; harmless for the other tests.
fn fixed_malloc_thresholds() {
    #[cfg(target_env = "gnu")]
    for param in [libc::M_TRIM_THRESHOLD, libc::M_MMAP_THRESHOLD] {
        // SAFETY: `mallopt` with a known parameter and an in-range value only
        // changes the allocator's settings, under its lock.
        unsafe {
            libc::mallopt(param, 128 * 1024);
        }
    }
}

/// Gives the memory that malloc holds free back to the kernel (glibc only).
fn trim_malloc() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `malloc_trim` only returns free heap memory to the kernel; it touches
    // no memory that is still allocated.
    unsafe {
        libc::malloc_trim(0);
    }
}
