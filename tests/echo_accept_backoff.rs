//! The echo example at its fd limit: `accept` fails with EMFILE, and the server backs
//! off instead of spinning, keeps serving the connections it has, and accepts again
//! once fds are free.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the server however the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // Ignored: the child may have exited already.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn echo_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let bin = target.join("debug").join("examples").join("echo");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "echo", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --example echo: {status}");
    }
    bin
}

/// CPU time (user + system) the process has used, from /proc/PID/stat.
fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 of `rest`.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf takes no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).expect("clock ticks per second");
    Ok(Duration::from_millis(ticks * 1000 / hz))
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

fn echo_once(s: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    s.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)?;
    assert_eq!(got, msg, "echo differs");
    Ok(())
}

#[test]
fn accept_at_fd_limit_backs_off_and_recovers() -> io::Result<()> {
    let bin = echo_binary();
    // 32 fds: stdio, epoll, eventfd, listener and a few for the Rust runtime leave
    // room for a couple of dozen connections.
    let child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 32 && exec \"$0\" 127.0.0.1:0")
        .arg(&bin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut server = Server(child);
    let pid = server.0.id();
    // Drain stderr as it comes, so a chatty server never blocks on a full pipe.
    let stderr = server.0.stderr.take().expect("piped stderr");
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        // Ignored: a read error only shortens the log, which the assert then shows.
        let _ = BufReader::new(stderr).read_to_string(&mut log);
        log
    });
    let mut stdout = BufReader::new(server.0.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .expect("address after `listening on`");

    // Open more connections than the server has fds; the kernel completes the
    // handshakes (backlog), the server accepts until EMFILE.
    let mut clients = Vec::new();
    for _ in 0..60 {
        clients.push(connect(addr)?);
    }
    // The first one is certainly accepted: it is served while others are stuck.
    echo_once(&mut clients[0], b"first")?;

    // Backing off, the server must be nearly idle even though connections wait.
    let before = cpu_time(pid)?;
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let used = cpu_time(pid)? - before;
    let wall = start.elapsed();
    assert!(
        used < wall / 2,
        "server used {used:?} of CPU in {wall:?} at its fd limit: it spins instead of backing off"
    );

    // Free fds: close most of the clients; the waiting ones then get accepted and
    // served, including the very last.
    let last = clients.pop().expect("60 clients");
    let first = clients.remove(0);
    for c in &clients {
        c.shutdown(Shutdown::Both)?;
    }
    drop(clients);
    let mut last = last;
    echo_once(&mut last, b"last one in")?;
    let mut first = first;
    echo_once(&mut first, b"first again")?;
    drop((first, last));

    // Kill it, then check it said why it paused.
    drop(stdout);
    drop(server);
    let log = log.join().expect("stderr reader thread");
    assert!(
        log.contains("accept:") && log.contains("pausing 50 ms"),
        "stderr does not report the back-off: {log:?}"
    );
    Ok(())
}
