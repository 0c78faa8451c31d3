//! The `echo` example, built and run as a user would: `cargo build --example echo`,
//! start the binary on `127.0.0.1:0`, read the address it prints, talk to it with
//! blocking std sockets.

mod support;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::time::{Duration, Instant};

use support::{
    ChildGuard, XorShift, assert_same_bytes, first_line_within, lines_of, pattern, std_connect,
    std_roundtrip, wait_until, with_timeout,
};

/// The example, built once per test binary.
fn built_example() -> io::Result<PathBuf> {
    support::built_example("echo")
}

/// Starts the example on `127.0.0.1:0`; returns the guard that kills it and the
/// address parsed from its first line, which must be exactly
/// `listening on 127.0.0.1:PORT`.
fn start_example() -> io::Result<(ChildGuard, SocketAddr)> {
    start_example_with(
        Command::new(built_example()?).arg("127.0.0.1:0"),
        Stdio::inherit(),
    )
}

/// As [`start_example`], for a prepared command and stderr.
fn start_example_with(
    command: &mut Command,
    stderr: Stdio,
) -> io::Result<(ChildGuard, SocketAddr)> {
    let mut guard = ChildGuard::spawn(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr),
    )?;
    let stdout = guard
        .child_mut()
        .stdout
        .take()
        .expect("stdout was set to piped");
    let line = first_line_within(stdout, Duration::from_secs(30))?;
    Ok((guard, listening_addr(&line)))
}

/// The address in the example's first line of stdout, which must be exactly
/// `listening on 127.0.0.1:PORT` with a non-zero port.
fn listening_addr(line: &str) -> SocketAddr {
    let port: u16 = line
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("first line is not `listening on 127.0.0.1:PORT`: {line:?}"));
    assert_ne!(port, 0, "the example printed port 0: {line:?}");
    assert_eq!(
        line,
        format!("listening on 127.0.0.1:{port}"),
        "first line of the example's stdout"
    );
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn echo_example_prints_its_address_echoes_messages_exactly_and_ends_with_eof() -> io::Result<()> {
    with_timeout(300, "echo example, one client", || {
        let (mut server, addr) = start_example()?;
        let mut stream = std_connect(addr)?;
        let sizes = [1, 5, 1000, 64 * 1024, 100 * 1024, 3, 17 * 1024 + 1];
        for (i, &size) in sizes.iter().enumerate() {
            let msg = pattern(size, 500 + i as u64);
            let echoed = std_roundtrip(&mut stream, &msg)?;
            assert_same_bytes(&echoed, &msg, &format!("message {i} ({size} bytes)"));
        }
        stream.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        let n = stream.read_to_end(&mut rest)?;
        assert_eq!(n, 0, "bytes after the last echo, before EOF: {rest:02x?}");
        server.kill_expecting_running()
    })
}

#[test]
fn echo_example_serves_twenty_concurrent_std_clients_exactly() -> io::Result<()> {
    with_timeout(300, "echo example, 20 clients", || {
        let (mut server, addr) = start_example()?;
        const CLIENTS: usize = 20;
        let barrier = Arc::new(Barrier::new(CLIENTS));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    // Everyone reaches the barrier, even a client that failed to
                    // connect, so no thread is left waiting for it.
                    let connected = std_connect(addr);
                    barrier.wait();
                    let mut stream = connected?;
                    let mut rng = XorShift::new(7000 + id as u64);
                    for i in 0..4 {
                        let len = rng.in_range(1, 64 * 1024);
                        let msg = rng.bytes(len);
                        let echoed = std_roundtrip(&mut stream, &msg)?;
                        assert_same_bytes(&echoed, &msg, &format!("client {id}, message {i}"));
                    }
                    stream.shutdown(Shutdown::Write)?;
                    let mut rest = Vec::new();
                    stream.read_to_end(&mut rest)?;
                    assert!(
                        rest.is_empty(),
                        "client {id}: {} bytes after the last echo",
                        rest.len()
                    );
                    Ok::<(), io::Error>(())
                })
            })
            .collect();
        for client in clients {
            client.join().expect("client thread panicked")?;
        }
        server.kill_expecting_running()
    })
}

/// Voluntary context switches of process `pid`'s main thread (one per sleep that
/// ended), from `/proc/PID/status`.
fn context_switches(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .expect("/proc/PID/status has voluntary_ctxt_switches");
    Ok(line.trim().parse().expect("a count"))
}

/// CPU time (user + system) process `pid` has used, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 of `rest`.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf takes no pointers.
    let hz =
        u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).expect("clock ticks per second");
    Ok(Duration::from_millis(ticks * 1000 / hz))
}

/// At its fd limit `accept4` fails with EMFILE: the listener pauses instead of
/// spinning (counted in `fd_release_waits`, which `--stats` shows), the example keeps
/// serving the connections it has, and accepts again once fds are free.
#[test]
fn echo_example_at_its_fd_limit_backs_off_and_recovers() -> io::Result<()> {
    with_timeout(300, "echo example at its fd limit", || {
        // 32 fds: stdio, epoll, eventfd and the listener leave room for a couple of
        // dozen connections; 60 clients then run it out.
        let (mut server, addr) = start_example_with(
            Command::new("sh")
                .arg("-c")
                .arg("ulimit -n 32 && exec \"$0\" 127.0.0.1:0 --stats 0.2")
                .arg(built_example()?),
            Stdio::piped(),
        )?;
        let pid = server.child_mut().id();
        // Drain stderr as it comes, so a chatty server never blocks on a full pipe.
        let stderr = server.child_mut().stderr.take().expect("stderr was piped");
        let log = std::thread::spawn(move || {
            let mut log = String::new();
            // Ignored: a read error only shortens the log, which the assert shows.
            let _ = io::BufReader::new(stderr).read_to_string(&mut log);
            log
        });

        let mut clients = (0..60)
            .map(|_| std_connect(addr))
            .collect::<io::Result<Vec<_>>>()?;
        // The first client was accepted before the limit: it is served meanwhile.
        let echoed = std_roundtrip(&mut clients[0], b"first")?;
        assert_same_bytes(&echoed, b"first", "first client at the fd limit");

        // Backing off, the server is nearly idle although connections wait. (This
        // is no speed target: a spinning accept loop burns a whole core.)
        let before = cpu_time(pid)?;
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        let (used, wall) = (cpu_time(pid)? - before, start.elapsed());
        assert!(
            used < wall / 2,
            "server used {used:?} of CPU in {wall:?} at its fd limit: it spins instead of backing off"
        );

        // Free fds by closing all but the first and last clients; the waiting
        // connections are then accepted, the very last one included.
        let mut last = clients.pop().expect("60 clients");
        let mut first = clients.remove(0);
        drop(clients);
        let echoed = std_roundtrip(&mut last, b"last one in")?;
        assert_same_bytes(&echoed, b"last one in", "last client after fds were freed");
        let echoed = std_roundtrip(&mut first, b"first again")?;
        assert_same_bytes(&echoed, b"first again", "first client after fds were freed");

        server.kill_expecting_running()?;
        let log = log.join().expect("stderr reader thread panicked");
        let most_pauses = log
            .lines()
            .filter_map(|line| line.split(" fd_release_waits=").nth(1))
            .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
            .max();
        assert!(
            most_pauses.is_some_and(|n| n >= 1),
            "no `metrics:` line on stderr counts a pause at the fd limit: {log:?}"
        );
        Ok(())
    })
}

/// An idle server burns no CPU: with connections open and nothing to do, it sleeps in
/// `epoll_wait` without a timeout (no periodic wakeups).
#[test]
fn echo_example_with_idle_connections_uses_no_cpu() -> io::Result<()> {
    with_timeout(300, "echo example idle", || {
        let (mut server, addr) = start_example()?;
        let pid = server.child_mut().id();
        let mut clients = (0..50)
            .map(|_| std_connect(addr))
            .collect::<io::Result<Vec<_>>>()?;
        for (i, c) in clients.iter_mut().enumerate() {
            let msg = format!("hello {i}");
            let echoed = std_roundtrip(c, msg.as_bytes())?;
            assert_same_bytes(&echoed, msg.as_bytes(), "warm-up echo");
        }
        let before = cpu_time(pid)?;
        let switches_before = context_switches(pid)?;
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        let (used, wall) = (cpu_time(pid)? - before, start.elapsed());
        let wakeups = context_switches(pid)? - switches_before;
        // Generous: the clock-tick granularity of /proc is 10 ms.
        assert!(
            used <= Duration::from_millis(50),
            "idle server used {used:?} of CPU in {wall:?}"
        );
        // Sharper: a loop with any periodic timeout would wake hundreds of times.
        assert!(
            wakeups <= 3,
            "idle server woke up {wakeups} times in {wall:?}: it is polling"
        );
        drop(clients);
        server.kill_expecting_running()
    })
}

/// The example serving on `127.0.0.1:0` with some flags, as a user would run it:
/// its stdout arrives line by line, its stderr is collected (for failure messages),
/// and the guard kills it on every path.
struct ExampleServer {
    guard: ChildGuard,
    pid: u32,
    addr: SocketAddr,
    /// Stdout lines after the first (`listening on ...`); disconnects at EOF.
    stdout: mpsc::Receiver<String>,
    /// Stderr so far.
    stderr: Arc<Mutex<String>>,
}

impl ExampleServer {
    /// Starts the example on `127.0.0.1:0` with `flags`, and waits for its address.
    fn start(flags: &[&str]) -> io::Result<ExampleServer> {
        let mut guard = ChildGuard::spawn(
            Command::new(built_example()?)
                .arg("127.0.0.1:0")
                .args(flags)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )?;
        let child = guard.child_mut();
        let pid = child.id();
        let stdout = lines_of(child.stdout.take().expect("stdout was piped"));
        let stderr_lines = lines_of(child.stderr.take().expect("stderr was piped"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in stderr_lines {
                let mut text = sink.lock().unwrap_or_else(PoisonError::into_inner);
                text.push_str(&line);
                text.push('\n');
            }
        });
        let server = ExampleServer {
            guard,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout,
            stderr,
        };
        let first = server
            .stdout
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| {
                io::Error::other(format!(
                    "no `listening on` line from `echo 127.0.0.1:0 {}` ({e}); stderr:\n{}",
                    flags.join(" "),
                    server.stderr()
                ))
            })?;
        Ok(ExampleServer {
            addr: listening_addr(&first),
            ..server
        })
    }

    /// What the server wrote on stderr so far.
    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends `signal` to the server, as `kill -SIG PID` would; fails if the server
    /// has exited already.
    fn send(&mut self, signal: libc::c_int) -> io::Result<()> {
        if let Some(status) = self.guard.child_mut().try_wait()? {
            return Err(io::Error::other(format!(
                "the example exited with {status} before it was sent signal {signal}; \
                 stderr:\n{}",
                self.stderr()
            )));
        }
        let pid = libc::pid_t::try_from(self.pid).expect("a pid fits in pid_t");
        // SAFETY: `kill` takes no pointers. `try_wait` just found the child not yet
        // reaped, and only this guard reaps it, so `pid` still names it (at worst a
        // zombie) and no other process.
        if unsafe { libc::kill(pid, signal) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits (`limit` at most) until the server has exactly `n` sockets open
    /// (listener and connections, from `/proc/PID/fd`): `what` happened (a connection
    /// was accepted, the listener was closed). Fails at once if the server exits.
    fn wait_for_sockets(&mut self, n: usize, limit: Duration, what: &str) -> io::Result<()> {
        let pid = self.pid;
        let child = self.guard.child_mut();
        let mut last = None;
        wait_until(limit, what, || {
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!(
                    "{what}: exited with {status} first"
                )));
            }
            let now = sockets_of(pid)?;
            last = Some(now);
            Ok(now == n)
        })
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{e} ({last:?} sockets open, waiting for {n}); stderr:\n{}",
                    self.stderr()
                ),
            )
        })
    }

    /// Waits at most `limit` for the server to exit (reaping it), then for its
    /// stdout to end; returns its status and its stdout lines after the first.
    fn exit_within(&mut self, limit: Duration) -> io::Result<(ExitStatus, Vec<String>)> {
        let child = self.guard.child_mut();
        let mut status = None;
        wait_until(limit, "the example exits", || {
            status = child.try_wait()?;
            Ok(status.is_some())
        })
        .map_err(|e| io::Error::new(e.kind(), format!("{e}; stderr:\n{}", self.stderr())))?;
        let status = status.expect("wait_until returned once there was a status");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut lines = Vec::new();
        loop {
            match self
                .stdout
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => return Ok((status, lines)),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the example's stdout still open 5 s after it exited",
                    ));
                }
            }
        }
    }
}

/// How many sockets process `pid` has open now, from `/proc/PID/fd`.
fn sockets_of(pid: u32) -> io::Result<usize> {
    let mut sockets = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        match std::fs::read_link(entry?.path()) {
            Ok(target) if target.to_string_lossy().starts_with("socket:") => sockets += 1,
            Ok(_) => {}
            // Closed between listing and reading the link.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sockets)
}

/// Checks what the example printed after `listening on`: the summary line, then its
/// runtime's metrics, whose task and registration counts follow from the
/// connections it served and refused.
fn assert_exit_output(stdout: &[String], summary: &str, served: u64, refused: u64, stderr: &str) {
    assert!(
        stdout.len() == 2 && stdout[0] == summary,
        "stdout after the `listening on` line: {stdout:?}, expected the summary {summary:?} \
         and a metrics line; stderr:\n{stderr}"
    );
    check_metrics_line(&stdout[1], served, refused, 1, stderr);
}

/// Checks a `metrics: name=value ...` line: `served` connections had a task each,
/// besides `other_tasks` (the signal driver; with `--stats`, its reporter).
fn check_metrics_line(line: &str, served: u64, refused: u64, other_tasks: u64, stderr: &str) {
    let fields = line
        .strip_prefix("metrics: ")
        .unwrap_or_else(|| panic!("not a metrics line: {line:?}; stderr:\n{stderr}"));
    let value = |name: &str| -> u64 {
        fields
            .split(' ')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{name}=N` in {line:?}"))
    };
    assert_eq!(value("spawned_tasks"), served + other_tasks, "{line}");
    assert_eq!(value("panicked_tasks"), 0, "{line}");
    // The listener and the signal pipe, plus each served socket that had to wait
    // (accepted sockets are added to epoll only then). A refused one is closed
    // before it ever waits: never added.
    let added = value("epoll_ctl_add");
    assert!(
        (2..=2 + served).contains(&added),
        "epoll_ctl_add={added}, expected 2 to {} ({refused} refused sockets never added): {line}",
        2 + served
    );
    assert!(
        value("epoll_waits") > 0 && value("polls") > served,
        "the loop ran: {line}"
    );
}

/// The summary line the example prints at shutdown.
fn summary(served: u64, bytes: usize, refused: u64, idle: u64, dropped: u64) -> String {
    format!(
        "served {served} connections, echoed {bytes} bytes; refused {refused} over \
         --max-conns, closed {idle} idle, dropped {dropped} at shutdown"
    )
}

/// Reads from `stream`, which the server closed (or is closing): EOF or a reset
/// passes, data or a read timeout fails. Returns how long the read took.
fn expect_closed_by_server(stream: &mut std::net::TcpStream, what: &str) -> io::Result<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "{what}: expected EOF or a reset, read {n} bytes: {:02x?}",
            &buf[..n]
        ),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "{what}: expected EOF or a reset, got {e} after {:?}",
                    start.elapsed()
                ),
            ));
        }
    }
    Ok(start.elapsed())
}

/// Closes `stream` as a polite client does: shuts down its write side, then reads
/// to EOF, which must come with no more bytes (the server echoed everything and
/// shut down its side).
fn close_gracefully(mut stream: std::net::TcpStream, what: &str) -> io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    assert!(
        rest.is_empty(),
        "{what}: {} bytes after the last echo, before EOF: {rest:02x?}",
        rest.len()
    );
    Ok(())
}

/// On SIGTERM the example closes its listener at once, keeps serving the open
/// connection through the grace period, and exits 0 as soon as that connection
/// closes, long before the grace period ends, with the summary as its last line.
#[test]
fn echo_example_on_sigterm_stops_accepting_serves_open_connections_then_exits_0() -> io::Result<()>
{
    with_timeout(300, "echo example, SIGTERM with an open connection", || {
        let mut server = ExampleServer::start(&["--grace", "5"])?;
        let mut client = std_connect(server.addr)?;
        let echoed = std_roundtrip(&mut client, b"hello")?;
        assert_same_bytes(&echoed, b"hello", "echo before SIGTERM");
        // The listener and this connection (accepted: it was echoed).
        let before = sockets_of(server.pid)?;

        server.send(libc::SIGTERM)?;
        server.wait_for_sockets(
            before - 1,
            Duration::from_secs(10),
            "the listening socket closes after SIGTERM",
        )?;
        let echoed = std_roundtrip(&mut client, b"world")?;
        assert_same_bytes(&echoed, b"world", "echo during the grace period");

        match std::net::TcpStream::connect_timeout(&server.addr, Duration::from_secs(5)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("connecting after SIGTERM: expected ECONNREFUSED, got {e}"),
                ));
            }
            Ok(mut late) => {
                // Tolerated: a connection that is closed at once.
                late.set_read_timeout(Some(Duration::from_secs(5)))?;
                let took = expect_closed_by_server(&mut late, "connection made after SIGTERM")?;
                assert!(
                    took < Duration::from_secs(2),
                    "a connection made after SIGTERM was closed only after {took:?}"
                );
            }
        }

        close_gracefully(client, "the client, during the grace period")?;
        let closed = Instant::now();
        let (status, stdout) = server.exit_within(Duration::from_secs(15))?;
        let took = closed.elapsed();
        let stderr = server.stderr();
        assert!(
            status.success(),
            "exit status after SIGTERM: {status}; stderr:\n{stderr}"
        );
        assert!(
            took < Duration::from_secs(3),
            "exited {took:?} after its last connection closed (grace 5 s): it waited \
             instead of exiting once drained; stderr:\n{stderr}"
        );
        assert_exit_output(&stdout, &summary(1, 10, 0, 0, 0), 1, 0, &stderr);
        Ok(())
    })
}

/// On SIGINT (Ctrl-C) with a connection that never finishes, the example waits out
/// the grace period, drops the connection, and exits 0 reporting it dropped.
#[test]
fn echo_example_on_sigint_drops_connections_still_open_when_the_grace_period_ends() -> io::Result<()>
{
    with_timeout(300, "echo example, SIGINT past the grace period", || {
        let mut server = ExampleServer::start(&["--grace", "1"])?;
        let before = sockets_of(server.pid)?;
        let mut silent = std_connect(server.addr)?;
        server.wait_for_sockets(
            before + 1,
            Duration::from_secs(10),
            "the server accepts the silent client",
        )?;

        let signalled = Instant::now();
        server.send(libc::SIGINT)?;
        let (status, stdout) = server.exit_within(Duration::from_secs(15))?;
        let took = signalled.elapsed();
        let stderr = server.stderr();
        assert!(
            status.success(),
            "exit status after SIGINT: {status}; stderr:\n{stderr}"
        );
        assert!(
            took >= Duration::from_millis(900),
            "exited {took:?} after SIGINT with a connection open: it did not wait out \
             the 1 s grace period; stderr:\n{stderr}"
        );
        assert!(
            took < Duration::from_secs(6),
            "exited {took:?} after SIGINT, grace 1 s; stderr:\n{stderr}"
        );
        assert_exit_output(&stdout, &summary(1, 0, 0, 0, 1), 1, 0, &stderr);
        expect_closed_by_server(&mut silent, "the silent client after the server exited")?;
        Ok(())
    })
}

/// With `--max-conns 2`, a third connection is accepted and closed at once, and
/// counted; once one of the two closes, a new connection is served again.
#[test]
fn echo_example_with_max_conns_closes_connections_past_the_limit_and_counts_them() -> io::Result<()>
{
    with_timeout(300, "echo example, --max-conns 2", || {
        let mut server = ExampleServer::start(&["--max-conns", "2"])?;
        let mut echoed_bytes = 0;
        let mut served = |stream: &mut std::net::TcpStream, msg: &[u8], what: &str| {
            let echoed = std_roundtrip(stream, msg)?;
            assert_same_bytes(&echoed, msg, what);
            echoed_bytes += msg.len();
            Ok::<(), io::Error>(())
        };
        let mut first = std_connect(server.addr)?;
        served(&mut first, b"first", "first client")?;
        let mut second = std_connect(server.addr)?;
        served(&mut second, b"second", "second client")?;

        let mut third = std_connect(server.addr)?;
        third.set_read_timeout(Some(Duration::from_secs(5)))?;
        let took = expect_closed_by_server(&mut third, "third client, past --max-conns 2")?;
        assert!(
            took < Duration::from_secs(3),
            "the third client was closed only after {took:?}"
        );

        close_gracefully(first, "first client")?;
        let mut fourth = std_connect(server.addr)?;
        served(&mut fourth, b"fourth, after one closed", "fourth client")?;
        close_gracefully(second, "second client")?;
        close_gracefully(fourth, "fourth client")?;

        server.send(libc::SIGTERM)?;
        let (status, stdout) = server.exit_within(Duration::from_secs(15))?;
        let stderr = server.stderr();
        assert!(
            status.success(),
            "exit status after SIGTERM: {status}; stderr:\n{stderr}"
        );
        assert_exit_output(&stdout, &summary(3, echoed_bytes, 1, 0, 0), 3, 1, &stderr);
        Ok(())
    })
}

/// With `--idle-timeout 0.5`, a client that sends nothing is closed after about
/// half a second while one that sends every 100 ms keeps being served.
#[test]
fn echo_example_with_idle_timeout_closes_silent_clients_only() -> io::Result<()> {
    with_timeout(300, "echo example, --idle-timeout 0.5", || {
        let mut server = ExampleServer::start(&["--idle-timeout", "0.5"])?;
        let connected = Instant::now();
        let mut silent = std_connect(server.addr)?;
        let watcher = std::thread::spawn(move || {
            expect_closed_by_server(&mut silent, "silent client, --idle-timeout 0.5")
                .map(|_| connected.elapsed())
        });

        let mut active = std_connect(server.addr)?;
        let start = Instant::now();
        let mut echoed_bytes = 0;
        let mut i = 0;
        while start.elapsed() < Duration::from_millis(1500) {
            let msg = format!("ping {i}");
            let echoed = std_roundtrip(&mut active, msg.as_bytes())?;
            assert_same_bytes(&echoed, msg.as_bytes(), &format!("active client, {msg}"));
            echoed_bytes += msg.len();
            i += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        let silent_closed_after = watcher.join().expect("watcher thread panicked")?;
        assert!(
            silent_closed_after >= Duration::from_millis(400),
            "the silent client was closed {silent_closed_after:?} after connecting, before \
             its 0.5 s idle timeout"
        );
        assert!(
            silent_closed_after < Duration::from_secs(5),
            "the silent client was closed only {silent_closed_after:?} after connecting"
        );
        close_gracefully(active, "active client")?;

        server.send(libc::SIGTERM)?;
        let (status, stdout) = server.exit_within(Duration::from_secs(15))?;
        let stderr = server.stderr();
        assert!(
            status.success(),
            "exit status after SIGTERM: {status}; stderr:\n{stderr}"
        );
        assert_exit_output(&stdout, &summary(2, echoed_bytes, 0, 1, 0), 2, 0, &stderr);
        Ok(())
    })
}

/// `--idle-timeout` is documented to "close a connection that has sent nothing for
/// SECS seconds". A client that sends until every buffer is full and then neither
/// sends nor reads has sent nothing since; the server, stuck echoing to it, must
/// still close it after the timeout, or such clients pin connections (and
/// `--max-conns` slots) forever.
#[test]
fn echo_example_with_idle_timeout_closes_clients_that_stop_sending_and_reading() -> io::Result<()> {
    with_timeout(300, "echo example, stalled client", || {
        let mut server = ExampleServer::start(&["--idle-timeout", "0.5"])?;
        let before = sockets_of(server.pid)?;
        let mut client = std_connect(server.addr)?;
        client.set_write_timeout(Some(Duration::from_millis(500)))?;
        // Send without ever reading until a write blocks: the echo fills this
        // client's receive buffer and the server's send buffer, the server stops
        // reading, and the bytes sent fill the rest. (A server may also close
        // the connection while its echo is stalled, before the client stops.)
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0usize;
        loop {
            match client.write(&chunk) {
                Ok(n) => sent += n,
                // Blocked (timed out); or reset: the server closed it already.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e),
            }
            assert!(
                sent < 512 * 1024 * 1024,
                "sent {sent} bytes without reading and writes never blocked"
            );
        }

        server.wait_for_sockets(
            before,
            Duration::from_secs(5),
            &format!(
                "with --idle-timeout 0.5, the server closes a connection whose client sent \
                 {sent} bytes without reading, then stopped sending"
            ),
        )?;

        server.send(libc::SIGTERM)?;
        let (status, stdout) = server.exit_within(Duration::from_secs(15))?;
        let stderr = server.stderr();
        assert!(
            status.success(),
            "exit status after SIGTERM: {status}; stderr:\n{stderr}"
        );
        assert!(
            stdout.len() == 2
                && stdout[0].starts_with("served 1 connections, echoed ")
                && stdout[0].ends_with("closed 1 idle, dropped 0 at shutdown"),
            "stdout after the `listening on` line: {stdout:?}; stderr:\n{stderr}"
        );
        check_metrics_line(&stdout[1], 1, 0, 1, &stderr);
        Ok(())
    })
}

/// With `--stats 0.2`, the example prints its runtime's metrics to stderr every
/// 0.2 s, and they follow the traffic: a served connection's echo shows up as tasks,
/// registrations and events; on exit the metrics still go to stdout.
#[test]
fn echo_example_with_stats_prints_metrics_to_stderr_periodically() -> io::Result<()> {
    with_timeout(300, "echo example --stats", || {
        let mut server = ExampleServer::start(&["--stats", "0.2"])?;
        let metrics_lines = |server: &ExampleServer| -> Vec<String> {
            server
                .stderr()
                .lines()
                .filter(|l| l.starts_with("metrics: "))
                .map(str::to_owned)
                .collect()
        };
        let child = &mut server;
        wait_until(
            Duration::from_secs(20),
            "two metrics lines on stderr",
            || Ok(metrics_lines(child).len() >= 2),
        )?;
        let mut client = std_connect(server.addr)?;
        client.set_read_timeout(Some(Duration::from_secs(10)))?;
        client.write_all(b"counted")?;
        let mut echoed = [0u8; 7];
        client.read_exact(&mut echoed)?;
        assert_eq!(&echoed, b"counted");
        // A line printed after the echo counts the connection's task.
        let seen = metrics_lines(&server).len();
        let child = &mut server;
        let mut last = String::new();
        wait_until(
            Duration::from_secs(20),
            "a metrics line with the connection's task",
            || {
                let lines = metrics_lines(child);
                last = lines.last().cloned().unwrap_or_default();
                // The signal driver, the reporter and the connection's task.
                Ok(lines.len() > seen && last.contains(" spawned_tasks=3 "))
            },
        )?;
        check_metrics_line(&last, 1, 0, 2, &server.stderr());
        close_gracefully(client, "the client")?;
        server.send(libc::SIGTERM)?;
        let (status, stdout) = server.exit_within(Duration::from_secs(15))?;
        let stderr = server.stderr();
        assert!(status.success(), "exit status: {status}; stderr:\n{stderr}");
        assert!(
            stdout.len() == 2 && stdout[0] == summary(1, 7, 0, 0, 0),
            "stdout: {stdout:?}; stderr:\n{stderr}"
        );
        check_metrics_line(&stdout[1], 1, 0, 2, &stderr);
        Ok(())
    })
}

/// Runs the example with `args` to its exit (10 s at most): status, stdout, stderr.
fn run_to_exit(args: &[&str]) -> io::Result<(ExitStatus, String, String)> {
    let mut child = ChildGuard::spawn(
        Command::new(built_example()?)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )?;
    child.output_within(Duration::from_secs(10))
}

#[test]
fn echo_example_help_exits_0_and_names_every_flag() -> io::Result<()> {
    with_timeout(300, "echo example --help", || {
        let (status, stdout, stderr) = run_to_exit(&["--help"])?;
        assert!(
            status.success(),
            "`echo --help` exited with {status}; stderr:\n{stderr}"
        );
        for flag in [
            "ADDR",
            "--grace",
            "--max-conns",
            "--idle-timeout",
            "--stats",
            "--help",
        ] {
            assert!(
                stdout.contains(flag),
                "`echo --help` does not mention `{flag}`:\n{stdout}"
            );
        }
        Ok(())
    })
}

#[test]
fn echo_example_rejects_bad_arguments_with_status_2_and_a_message_naming_them() -> io::Result<()> {
    with_timeout(300, "echo example, bad arguments", || {
        // The arguments, and what the message must name.
        let cases: [(&[&str], &[&str]); 9] = [
            (&["--grace", "abc"], &["--grace", "abc"]),
            (&["--max-conns", "0"], &["--max-conns"]),
            (&["--max-conns", "many"], &["--max-conns", "many"]),
            (&["--idle-timeout", "-1"], &["--idle-timeout", "-1"]),
            (&["--nope"], &["--nope"]),
            (&["--grace"], &["--grace"]),
            (&["--stats", "0"], &["--stats"]),
            (&["--stats", "often"], &["--stats", "often"]),
            (&["127.0.0.1:0", "127.0.0.1:1"], &["127.0.0.1:1"]),
        ];
        for (args, named) in cases {
            let (status, stdout, stderr) = run_to_exit(args)?;
            let command = format!("echo {}", args.join(" "));
            assert_eq!(
                status.code(),
                Some(2),
                "`{command}` exited with {status}; stderr:\n{stderr}"
            );
            assert_eq!(stdout, "", "`{command}` printed on stdout");
            for name in named {
                assert!(
                    stderr.contains(name),
                    "`{command}`: stderr does not name `{name}`:\n{stderr}"
                );
            }
        }
        Ok(())
    })
}
