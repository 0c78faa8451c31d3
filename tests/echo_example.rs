//! The `echo` example, built and run as a user would: `cargo build --example echo`,
//! start the binary on `127.0.0.1:0`, read the address it prints, talk to it with
//! blocking std sockets.

mod support;

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use support::{
    ChildGuard, XorShift, assert_same_bytes, first_line_within, pattern, std_connect,
    std_roundtrip, with_timeout,
};

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");

/// Where cargo puts the example: `$CARGO_TARGET_DIR` (relative to the package root,
/// where cargo runs tests, if relative) or `target/`, then `debug/examples/echo`.
fn example_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    target_dir.join("debug").join("examples").join("echo")
}

/// Builds the example once per test binary (debug profile, like the tests) and
/// returns its path, or the reason it could not be built.
fn built_example() -> io::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let build = || -> io::Result<PathBuf> {
                let mut child = ChildGuard::spawn(
                    Command::new(env!("CARGO"))
                        .args(["build", "--example", "echo", "--manifest-path", MANIFEST])
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped()),
                )?;
                let (status, stdout, stderr) = child.output_within(Duration::from_secs(240))?;
                if !status.success() {
                    return Err(io::Error::other(format!(
                        "`cargo build --example echo` exited with {status}\nstdout:\n{stdout}\n\
                         stderr:\n{stderr}"
                    )));
                }
                let path = example_path();
                if !path.is_file() {
                    return Err(io::Error::other(format!(
                        "built the example but found no file at {}",
                        path.display()
                    )));
                }
                Ok(path)
            };
            build().map_err(|e| e.to_string())
        })
        .clone()
        .map_err(io::Error::other)
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
    Ok((guard, SocketAddr::from(([127, 0, 0, 1], port))))
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

/// At its fd limit `accept` fails with EMFILE: the example backs off instead of
/// spinning, keeps serving the connections it has, and accepts again once fds are
/// free.
#[test]
fn echo_example_at_its_fd_limit_backs_off_and_recovers() -> io::Result<()> {
    with_timeout(300, "echo example at its fd limit", || {
        // 32 fds: stdio, epoll, eventfd and the listener leave room for a couple of
        // dozen connections; 60 clients then run it out.
        let (mut server, addr) = start_example_with(
            Command::new("sh")
                .arg("-c")
                .arg("ulimit -n 32 && exec \"$0\" 127.0.0.1:0")
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
        assert!(
            log.contains("accept:") && log.contains("pausing 50 ms"),
            "stderr does not report the back-off: {log:?}"
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
