//! `scale`: the scale benchmark's driver. For each step (a number of connections)
//! it starts a fresh echo server (edgeloop's `echo` example) pinned to one CPU,
//! opens the connections with `hold` processes pinned to the other, and measures
//! what holding them costs the server: user-space memory per connection (its
//! `VmRSS` over the baseline of the same server before any connection), the
//! kernel's socket memory (`/proc/net/sockstat`, slab), and the server's CPU time
//! per echoed message while `hold` echoes on random samples of the connections.
//!
//! # A step
//!
//! 0. Wait until the sockets of earlier steps are gone, and (up to
//!    `--quiet-wait`) until the machine is quiet.
//! 1. Start the server (`taskset -c SERVER_CPU echo 127.0.0.1:0 --max-conns N
//!    --grace 1`, under the `GUARD` shell), wait for `listening on ADDR`, read
//!    its baseline.
//! 2. Start the `hold` processes (`taskset -c GENERATOR_CPU`, `--wait-go`), each
//!    with its share of the connections, of the sample and of the rate, and its
//!    own range of source addresses (the ranges of all steps are disjoint, so no
//!    step meets the previous one's `TIME_WAIT` ports). Every step runs as many as
//!    the largest step needs (`ceil(largest / --per-process)`, a process holding at
//!    most its fd limit): then the load has the same shape at every step, and only
//!    the number of idle connections changes. Wait for each one's `held N`, then
//!    until the server has accepted them all (it has the fd that the last accept
//!    gets), then `--settle` seconds; read the idle server.
//! 3. Say go (a line on each `hold`'s stdin). After `--warmup` seconds read the
//!    server's CPU time, after `--duration` more read it again; CPU per message is
//!    the difference over the messages echoed in that window.
//! 4. Collect each `hold`'s JSON line, stop the server (SIGTERM; its last line is
//!    the runtime's metrics), and wait until the kernel has released the sockets.
//! 5. If other tasks used more than `--max-others` percent of the server's CPU in
//!    the window, run the step again (at most `--retries` times).
//!
//! Every process it starts is killed when its step ends, also on a panic, and a
//! watchdog thread kills them all and exits if the run overruns `--timeout`. The
//! server's guard kills it when this process's pipe to the guard closes, even if
//! this process was killed with SIGKILL; `hold` has its own watchdog and ends
//! when its stdin closes, so nothing outlives the driver.
//!
//! Prints a line per step, then a table of medians over `--runs` per step, and
//! appends one JSON line per step to `--out FILE` if given.
#![deny(unsafe_code, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use edgeloop_bench::echo::{involuntary_switches, process_cpu_time};
use edgeloop_bench::proc_pid::{self, SlabInfo, Sockstat};
use edgeloop_bench::stats::median;
use edgeloop_bench::{Args, Table, proc_self};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

const USAGE: &str = "\
usage: scale [--steps N,N,...] [--runs N] [--server PATH] [--per-process N]
             [--per-ip N] [--first-ip IP] [--sample N] [--rate MSGS] [--size BYTES]
             [--warmup SECS] [--duration SECS] [--settle SECS] [--server-cpu CPU]
             [--generator-cpu CPU] [--max-conns N] [--server-args TEXT]
             [--timeout SECS] [--out FILE]
             [--quiet-wait SECS] [--max-others PERCENT] [--retries N]

Runs the echo example with N held connections per step and reports its memory
and CPU per connection. Defaults: --steps 50,1000,10000,19900 --runs 1
--server <this directory>/examples/echo --per-process 10000 --per-ip 10000
--first-ip 127.1.0.2 --sample 100 --rate 5000 --size 64 --warmup 2 --duration 10
--settle 1 --server-cpu 1 --generator-cpu 0 --max-conns 30000 --timeout 1500
--server-args '--max-conns N --grace 1' (the server's arguments after its
address, split at spaces: e.g. `--server target/release/echo_edgeloop
--server-args --no-oneshot` runs a bench server instead) --quiet-wait 60
(before each step, wait up to that long for the CPUs to be 80%
idle: on a shared machine) --max-others 15 --retries 2 (a step during which
other work took more than 15% of the server's CPU is run again, twice at most;
the last attempt counts).";

/// How long a `hold` may take to connect its share before the step fails.
const CONNECT_LIMIT: Duration = Duration::from_secs(90);
/// How long the server may take to accept what `hold` has connected.
const ACCEPT_LIMIT: Duration = Duration::from_secs(30);
/// How long after the window the `hold` processes have to report.
const REPORT_LIMIT: Duration = Duration::from_secs(30);
/// Sockets of the previous step still open (closing) allowed at a step's start.
const LINGERING_SOCKETS: u64 = 16;

/// The command line.
#[derive(Debug, Clone)]
struct Options {
    steps: Vec<usize>,
    runs: usize,
    server: PathBuf,
    per_process: usize,
    per_ip: usize,
    first_ip: Ipv4Addr,
    sample: usize,
    rate: f64,
    size: usize,
    warmup: Duration,
    duration: Duration,
    settle: Duration,
    server_cpu: String,
    generator_cpu: String,
    /// The server's arguments after its address.
    server_args: Vec<String>,
    timeout: Duration,
    out: Option<PathBuf>,
    quiet_wait: Duration,
    /// A step during which other work used more than this percentage of the
    /// server's CPU is run again ...
    max_others: f64,
    /// ... at most this many times (then the last attempt is kept).
    retries: usize,
    /// `hold` processes per step: the same at every step, so that the load has
    /// the same shape (see the module docs).
    generators: usize,
}

impl Options {
    fn from_env() -> Options {
        if std::env::args().any(|a| a == "--help") {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let known = [
            "steps",
            "runs",
            "server",
            "per-process",
            "per-ip",
            "first-ip",
            "sample",
            "rate",
            "size",
            "warmup",
            "duration",
            "settle",
            "server-cpu",
            "generator-cpu",
            "max-conns",
            "server-args",
            "timeout",
            "out",
            "quiet-wait",
            "max-others",
            "retries",
        ];
        let args = Args::from_env(&known, USAGE);
        let fail = |message: String| -> ! {
            eprintln!("error: {message}\n{USAGE}");
            std::process::exit(2)
        };
        let steps: Vec<usize> = args
            .text("steps")
            .unwrap_or("50,1000,10000,19900")
            .split(',')
            .map(|s| s.trim().parse().ok().filter(|n| *n > 0))
            .collect::<Option<_>>()
            .unwrap_or_else(|| fail("`--steps` takes whole numbers > 0, comma-separated".into()));
        let seconds = |name: &str, default: f64| {
            Duration::try_from_secs_f64(args.get(name, default))
                .unwrap_or_else(|_| fail(format!("`--{name}` takes a number of seconds")))
        };
        let server = args.text("server").map_or_else(
            || {
                let exe = std::env::current_exe().expect("the path of this executable");
                exe.with_file_name("examples").join("echo")
            },
            PathBuf::from,
        );
        let options = Options {
            steps,
            runs: args.get("runs", 1_usize).max(1),
            server,
            per_process: args.get("per-process", 10_000_usize).max(1),
            per_ip: args.get("per-ip", 10_000_usize).max(1),
            first_ip: args.get("first-ip", Ipv4Addr::new(127, 1, 0, 2)),
            sample: args.get("sample", 100_usize).max(1),
            rate: args.get("rate", 5000.0_f64),
            size: args.get("size", 64_usize).max(1),
            warmup: seconds("warmup", 2.0),
            duration: seconds("duration", 10.0),
            settle: seconds("settle", 1.0),
            server_cpu: args.text("server-cpu").unwrap_or("1").to_owned(),
            generator_cpu: args.text("generator-cpu").unwrap_or("0").to_owned(),
            server_args: match args.text("server-args") {
                Some(text) => text.split_whitespace().map(str::to_owned).collect(),
                None => {
                    let max = args.get("max-conns", 30_000_usize);
                    vec![
                        "--max-conns".to_owned(),
                        max.to_string(),
                        "--grace".to_owned(),
                        "1".to_owned(),
                    ]
                }
            },
            timeout: seconds("timeout", 1500.0),
            out: args.text("out").map(PathBuf::from),
            quiet_wait: seconds("quiet-wait", 60.0),
            max_others: args.get("max-others", 15.0),
            retries: args.get("retries", 2_usize),
            generators: 0,
        };
        let largest = options.steps.iter().copied().max().unwrap_or(1);
        let options = Options {
            generators: largest.div_ceil(options.per_process),
            ..options
        };
        if !options.server.exists() {
            fail(format!(
                "no echo server at {}: build it with `cargo build --release --example echo`, \
                 or name it with `--server PATH`",
                options.server.display()
            ));
        }
        if options.duration.is_zero() || options.rate <= 0.0 {
            fail("`--duration` and `--rate` must be more than 0".into());
        }
        options
    }
}

/// Pids of the processes alive now, for the watchdog.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Sends `signal` to process `pid`; fails only if it no longer exists.
fn signal(pid: u32, signal: rustix::process::Signal) -> std::io::Result<()> {
    let pid =
        rustix::process::Pid::from_raw(pid as i32).ok_or_else(|| std::io::Error::other("pid 0"))?;
    Ok(rustix::process::kill_process(pid, signal)?)
}

/// A child process, killed (SIGKILL) and reaped when dropped: at the end of its
/// step, or while unwinding from a panic.
#[derive(Debug)]
struct KillOnDrop {
    child: Child,
}

impl KillOnDrop {
    fn spawn(command: &mut Command) -> std::io::Result<KillOnDrop> {
        let child = command.spawn()?;
        CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child.id());
        Ok(KillOnDrop { child })
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Fails only if it has exited already, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.child.id();
        CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != pid);
    }
}

/// Kills every child still running and exits, if the run lasts past `limit`.
fn start_watchdog(limit: Duration) {
    thread::spawn(move || {
        thread::sleep(limit);
        eprintln!("scale: still running after {limit:?}; killing what it started");
        for &pid in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = signal(pid, rustix::process::Signal::KILL);
        }
        std::process::exit(5);
    });
}

/// Lines a child prints on stdout, read by a thread of their own; the channel
/// closes when the child closes its stdout.
fn read_lines<R: std::io::Read + Send + 'static>(from: R) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A running echo server.
struct Server {
    /// The server's pid.
    pid: u32,
    /// The shell that started it and kills it once its stdin closes: when this
    /// driver ends, however it ends (see [`GUARD`]).
    guard: KillOnDrop,
    /// The guard's stdin; dropping it (or this process ending) closes it.
    guard_stdin: Option<ChildStdin>,
    addr: String,
    /// The server's stdout (shared with the guard's).
    stdout: Receiver<String>,
}

/// The shell script that runs the server: in the background, pinned, with its
/// pid printed; then it waits for its stdin to close and kills the server. A
/// driver killed by SIGKILL cannot clean up after itself, but its pipes still
/// close, so the server never outlives it.
const GUARD: &str = r#"cpu=$1 server=$2
shift 2
taskset -c "$cpu" "$server" 127.0.0.1:0 "$@" </dev/null &
echo "pid $!"
read _line
kill -KILL $! 2>/dev/null"#;

fn start_server(options: &Options) -> Result<Server, String> {
    let mut guard = KillOnDrop::spawn(
        Command::new("sh")
            .args(["-c", GUARD, "guard", &options.server_cpu])
            .arg(&options.server)
            .args(&options.server_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .map_err(|e| format!("starting `sh` for {}: {e}", options.server.display()))?;
    let guard_stdin = guard.child.stdin.take();
    let stdout = read_lines(guard.child.stdout.take().expect("stdout is piped"));
    let (mut pid, mut addr) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid.is_none() || addr.is_none() {
        let line = stdout
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| "the server did not say `listening on` in 10 s".to_owned())?;
        if let Some(n) = line.strip_prefix("pid ") {
            pid = n.trim().parse::<u32>().ok();
        } else if let Some(a) = line.strip_prefix("listening on ") {
            addr = Some(a.to_owned());
        } else {
            return Err(format!(
                "the server printed {line:?}, not `listening on ADDR`"
            ));
        }
    }
    let pid = pid.expect("the loop ends once it is known");
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
    Ok(Server {
        pid,
        guard,
        guard_stdin,
        addr: addr.expect("the loop ends once it is known"),
        stdout,
    })
}

impl Server {
    /// Stops the server (SIGTERM) and returns its `metrics:` line and how many
    /// connections its summary line says it served, if it printed them within 10 s
    /// (another server may print neither).
    fn stop(self) -> (Option<String>, Option<u64>) {
        let _ = signal(self.pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut metrics, mut served) = (None, None);
        // The metrics line is the last the example prints; the guard keeps the
        // pipe open, so the end of the output is the server's exit.
        while metrics.is_none() && Instant::now() < deadline {
            let line = match self.stdout.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) if !exited(self.pid) => continue,
                Err(_) => break,
            };
            if let Some(rest) = line.strip_prefix("metrics: ") {
                metrics = Some(rest.to_owned());
            }
            if let Some(rest) = line.strip_prefix("served ") {
                served = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            }
        }
        (metrics, served)
    }
}

/// Whether process `pid` has exited: gone, or a zombie its parent (the guard,
/// waiting on its stdin) has not reaped yet.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Fails only if it has exited already. Then the guard: its stdin closed,
        // it kills the server again (harmless) and exits; `KillOnDrop` reaps it.
        let _ = signal(self.pid, rustix::process::Signal::KILL);
        CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != self.pid);
        drop(self.guard_stdin.take());
        let guard = &mut self.guard.child;
        wait_until(Duration::from_secs(2), || {
            matches!(guard.try_wait(), Ok(Some(_)))
        });
    }
}

/// A running `hold` process.
struct Generator {
    process: KillOnDrop,
    stdin: ChildStdin,
    stdout: Receiver<String>,
}

/// What the server looked like at one moment.
#[derive(Debug, Clone)]
struct Snapshot {
    rss_kib: u64,
    sockstat: Sockstat,
    slab_kib: u64,
    slabinfo: Option<SlabInfo>,
}

fn snapshot(pid: u32) -> Result<Snapshot, String> {
    let why = |what: &str, e: std::io::Error| format!("reading the server's {what}: {e}");
    Ok(Snapshot {
        rss_kib: proc_pid::rss_kib(pid).map_err(|e| why("VmRSS", e))?,
        sockstat: Sockstat::read().map_err(|e| why("sockstat", e))?,
        slab_kib: proc_pid::slab_kib().map_err(|e| why("slab", e))?,
        slabinfo: SlabInfo::read().ok(),
    })
}

/// Waits until `ready` holds, checking every 50 ms, for at most `limit`.
fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (at most 30 s) until no TCP socket is orphaned and the number in use has
/// not changed for a second: sockets of an earlier step or run that are still
/// closing would otherwise be released during this step and mix with its figures.
fn settle_sockets() {
    let mut last = None;
    let mut stable_since = Instant::now();
    let settled = wait_until(Duration::from_secs(30), || {
        let Ok(now) = Sockstat::read() else {
            return true;
        };
        if last != Some(now.inuse) {
            last = Some(now.inuse);
            stable_since = Instant::now();
        }
        now.orphan == 0 && stable_since.elapsed() >= Duration::from_secs(1)
    });
    if !settled {
        eprintln!("scale: TCP sockets still coming and going after 30 s; measuring anyway");
    }
}

/// Busy time of all CPUs together and wall time elapsed, from `/proc/stat`'s first
/// line (ticks of 10 ms; busy is everything but idle and iowait).
fn all_cpus() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    Some((total - fields.get(3)? - fields.get(4)?, total))
}

/// On a shared machine: waits (at most `limit`) until the CPUs are at least 80%
/// idle over half a second, so a step does not start in the middle of someone
/// else's build. Returns how long it waited.
fn wait_for_quiet(limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let Some((busy0, total0)) = all_cpus() else {
            return Duration::ZERO;
        };
        thread::sleep(Duration::from_millis(500));
        let Some((busy1, total1)) = all_cpus() else {
            return Duration::ZERO;
        };
        let busy = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
        if busy <= 0.2 || start.elapsed() >= limit {
            return start.elapsed();
        }
    }
}

/// The `n`th address after `ip`.
fn ip_plus(ip: Ipv4Addr, n: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) + n as u32)
}

/// Splits `n` into `parts` shares that differ by at most one.
fn shares(n: usize, parts: usize) -> Vec<usize> {
    (0..parts)
        .map(|i| n / parts + usize::from(i < n % parts))
        .collect()
}

/// Runs one step of `n` connections; `next_ip` is the first source address not
/// used yet, advanced past the ones this step uses.
fn run_step(options: &Options, n: usize, next_ip: &mut Ipv4Addr) -> Result<Value, String> {
    settle_sockets();
    let quiet_after = wait_for_quiet(options.quiet_wait);
    let server = start_server(options)?;
    let pid = server.pid;
    thread::sleep(Duration::from_millis(300));
    // Listed now, before the baseline: see `proc_pid::open_fds`.
    let base_fds = proc_pid::open_fds(pid).map_err(|e| format!("the server's fds: {e}"))?;
    let base = snapshot(pid)?;

    let parts = options.generators.min(n);
    let mut generators = Vec::new();
    for (i, share) in shares(n, parts).into_iter().enumerate() {
        let fraction = share as f64 / n as f64;
        let sample = ((options.sample as f64 * fraction).round() as usize).max(1);
        let first_ip = *next_ip;
        *next_ip = ip_plus(*next_ip, share.div_ceil(options.per_ip));
        let mut process = KillOnDrop::spawn(
            Command::new("taskset")
                .args(["-c", &options.generator_cpu])
                .arg(sibling("hold"))
                .args(["--addr", &server.addr])
                .args(["--connections", &share.to_string()])
                .args(["--first-ip", &first_ip.to_string()])
                .args(["--per-ip", &options.per_ip.to_string()])
                .args(["--sample", &sample.to_string()])
                .args(["--rate", &(options.rate * fraction).to_string()])
                .args(["--size", &options.size.to_string()])
                .args(["--warmup", &options.warmup.as_secs_f64().to_string()])
                .args(["--duration", &options.duration.as_secs_f64().to_string()])
                .args(["--connect-timeout", &CONNECT_LIMIT.as_secs().to_string()])
                .args([
                    "--seed",
                    &(0x5ca1e + i as u64 * 7919 + n as u64).to_string(),
                ])
                .args(["--label", &format!("scale-{n}-{i}")])
                .arg("--wait-go")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .map_err(|e| format!("starting `hold`: {e}"))?;
        let stdin = process.child.stdin.take().expect("stdin is piped");
        let stdout = read_lines(process.child.stdout.take().expect("stdout is piped"));
        generators.push(Generator {
            process,
            stdin,
            stdout,
        });
    }
    let connect_started = Instant::now();
    let mut held = 0;
    for generator in &generators {
        let line = generator
            .stdout
            .recv_timeout(CONNECT_LIMIT + Duration::from_secs(10))
            .map_err(|_| "a `hold` did not report `held N`".to_owned())?;
        held += line
            .strip_prefix("held ")
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or_else(|| format!("`hold` printed {line:?}, not `held N`"))?;
    }
    let connect_wall = connect_started.elapsed();
    let last_fd = proc_pid::nth_free_fd(&base_fds, held);
    let accepted = held == 0 || wait_until(ACCEPT_LIMIT, || proc_pid::has_fd(pid, last_fd));
    if !accepted {
        eprintln!("scale: the server did not get to {held} more fds in {ACCEPT_LIMIT:?}");
    }
    thread::sleep(options.settle);
    let idle = snapshot(pid)?;

    for generator in &mut generators {
        writeln!(generator.stdin, "go")
            .and_then(|()| generator.stdin.flush())
            .map_err(|e| format!("telling `hold` to go: {e}"))?;
    }
    let go = Instant::now();
    thread::sleep(options.warmup);
    let cpu_start = proc_pid::cpu_time(pid).map_err(|e| e.to_string())?;
    let ticks_start = process_cpu_time(pid).map_err(|e| e.to_string())?;
    let switches_start = involuntary_switches(pid).map_err(|e| e.to_string())?;
    let busy_start = cpu_busy(&options.server_cpu);
    thread::sleep(
        (go + options.warmup + options.duration).saturating_duration_since(Instant::now()),
    );
    let cpu = proc_pid::cpu_time(pid).map_err(|e| e.to_string())? - cpu_start;
    let ticks = process_cpu_time(pid).map_err(|e| e.to_string())? - ticks_start;
    let switches = involuntary_switches(pid).map_err(|e| e.to_string())? - switches_start;
    let busy = cpu_busy(&options.server_cpu)
        .zip(busy_start)
        .map(|(end, start)| end.saturating_sub(start));
    let active = snapshot(pid)?;

    let mut reports = Vec::new();
    for generator in &generators {
        let deadline = Instant::now() + REPORT_LIMIT + options.warmup;
        let report = loop {
            match generator
                .stdout
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.starts_with('{') => {
                    break serde_json::from_str::<Value>(&line)
                        .map_err(|e| format!("`hold`'s JSON line: {e}"))?;
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    return Err("a `hold` ended without its JSON line".to_owned());
                }
            }
        };
        reports.push(report);
    }
    for generator in &mut generators {
        // It exits right after its JSON line (closing its connections); the status
        // is in the JSON already (errors, verification failures).
        let child = &mut generator.process.child;
        wait_until(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
    }
    drop(generators);
    let (metrics, served) = server.stop();
    // The next step's baseline should not see this step's sockets being released.
    let settled = wait_until(Duration::from_secs(20), || {
        Sockstat::read().is_ok_and(|s| s.inuse <= base.sockstat.inuse + LINGERING_SOCKETS)
    });
    if !settled {
        eprintln!("scale: the kernel still holds this step's sockets after 20 s");
    }
    // Orphans of this step's sockets are not counted here: `settle_sockets` at the
    // next step's start waits for them.
    Ok(step_result(
        options,
        n,
        &Readings {
            base,
            idle,
            active,
            cpu,
            ticks,
            switches,
            busy,
            connect_wall,
            accepted: if accepted { held } else { 0 },
            quiet_after,
            served,
        },
        &reports,
        metrics,
    ))
}

/// What the driver read of the server in a step.
struct Readings {
    base: Snapshot,
    idle: Snapshot,
    active: Snapshot,
    /// Server CPU time over the counted window (schedstat, ns resolution).
    cpu: Duration,
    /// The same from `/proc/PID/stat` ticks (10 ms resolution).
    ticks: Duration,
    /// Times the server was preempted during the window.
    switches: u64,
    /// Time the server's CPU was busy during the window, whoever ran on it.
    busy: Option<Duration>,
    /// From the start of the `hold` processes to the last one's `held N`.
    connect_wall: Duration,
    /// Connections the server had accepted when the idle snapshot was taken (0
    /// if it had not accepted all that `hold` held).
    accepted: usize,
    /// Connections the server's closing summary says it served.
    served: Option<u64>,
    /// How long the step waited for a quiet machine before it started.
    quiet_after: Duration,
}

/// A number from `hold`'s JSON report.
fn number(report: &Value, key: &str) -> f64 {
    report[key].as_f64().unwrap_or(0.0)
}

/// A `name=value` figure of the runtime's metrics line.
fn metric(line: &str, name: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

fn step_result(
    options: &Options,
    n: usize,
    r: &Readings,
    reports: &[Value],
    metrics: Option<String>,
) -> Value {
    let sum = |key: &str| reports.iter().map(|rep| number(rep, key)).sum::<f64>();
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds");
    for report in reports {
        for pair in report["latency_ns"].as_array().into_iter().flatten() {
            if let (Some(value), Some(count)) = (pair[0].as_u64(), pair[1].as_u64()) {
                latency.saturating_record_n(value, count);
            }
        }
    }
    let quantile = |q: f64| {
        if latency.is_empty() {
            0.0
        } else {
            latency.value_at_quantile(q) as f64 / 1000.0
        }
    };
    let conns = sum("held").max(1.0);
    let per_conn =
        |after: &Snapshot| (after.rss_kib as f64 - r.base.rss_kib as f64) * 1024.0 / conns;
    let delta = |a: u64, b: u64| a as i64 - b as i64;
    let echoed = sum("echoed");
    let slab_caches: Vec<Value> = match (&r.idle.slabinfo, &r.base.slabinfo) {
        (Some(idle), Some(base)) => idle
            .growth_since(base)
            .into_iter()
            .take(8)
            .map(|(name, bytes)| json!([name, bytes as f64 / conns]))
            .collect(),
        _ => Vec::new(),
    };
    let events_per_wait = metrics
        .as_deref()
        .and_then(|m| Some(metric(m, "io_events")? / metric(m, "epoll_waits")?.max(1.0)));
    json!({
        "connections": n,
        "generators": reports.len(),
        "held_client": sum("held"),
        "held_server": r.accepted,
        "served": r.served,
        "still_held_client": sum("still_held"),
        "connect_wall_s": r.connect_wall.as_secs_f64(),
        "connect_rate": sum("held") / r.connect_wall.as_secs_f64().max(1e-9),
        "rss_base_kib": r.base.rss_kib,
        "rss_idle_kib": r.idle.rss_kib,
        "rss_active_kib": r.active.rss_kib,
        "user_bytes_per_conn_idle": per_conn(&r.idle),
        "user_bytes_per_conn_active": per_conn(&r.active),
        "tcp_inuse_delta": delta(r.idle.sockstat.inuse, r.base.sockstat.inuse),
        "tcp_mem_pages_base": r.base.sockstat.mem_pages,
        "tcp_mem_pages_idle_delta": delta(r.idle.sockstat.mem_pages, r.base.sockstat.mem_pages),
        "tcp_mem_pages_active_delta":
            delta(r.active.sockstat.mem_pages, r.base.sockstat.mem_pages),
        "slab_bytes_per_conn_both_ends":
            delta(r.idle.slab_kib, r.base.slab_kib) as f64 * 1024.0 / conns,
        "slab_caches_bytes_per_conn_both_ends": slab_caches,
        "slabinfo_readable": r.base.slabinfo.is_some(),
        "window_s": options.duration.as_secs_f64(),
        "echoed": echoed,
        "echo_rate": echoed / options.duration.as_secs_f64(),
        "server_cpu_ms": r.cpu.as_secs_f64() * 1e3,
        "server_cpu_ticks_ms": r.ticks.as_secs_f64() * 1e3,
        "cpu_us_per_msg": r.cpu.as_secs_f64() * 1e6 / echoed.max(1.0),
        "cpu_ticks_us_per_msg": r.ticks.as_secs_f64() * 1e6 / echoed.max(1.0),
        "server_preempted": r.switches,
        // What else ran on the server's CPU: task time there less the server's
        // own (both in 10 ms ticks), in percent of the window.
        "others_on_server_cpu_pct": r.busy.map(|busy| {
            busy.saturating_sub(r.ticks).as_secs_f64() * 100.0 / options.duration.as_secs_f64()
        }),
        "connect_rate_hold": sum("connect_rate"),
        "p50_us": quantile(0.5),
        "p99_us": quantile(0.99),
        "p999_us": quantile(0.999),
        "errors": sum("errors") + sum("timeouts") + sum("connect_errors"),
        "verify_failures": sum("verify_failures"),
        "skipped": sum("skipped"),
        "lagged": sum("lagged"),
        "events_per_wait_life": events_per_wait,
        "server_metrics": metrics,
        "load_average": proc_self::load_average(),
        "waited_for_quiet_s": r.quiet_after.as_secs_f64(),
    })
}

/// How long tasks have run on CPU `cpu` (user, nice and system time of its `cpuN`
/// line in `/proc/stat`, 10 ms ticks), whoever they were. Not irq and softirq
/// time: that holds the loopback delivery of the server's own writes, which is in
/// no process's `utime + stime` either.
fn cpu_busy(cpu: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cpu{cpu} ")))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle ...
    let ticks = fields.get(..3)?.iter().sum::<u64>();
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// An executable beside this one (cargo puts every binary of the crate there).
fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of this executable");
    exe.with_file_name(name)
}

fn append(path: &Path, line: &Value) {
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| writeln!(file, "{line}"));
    if let Err(e) = written {
        eprintln!("scale: cannot append to {}: {e}", path.display());
    }
}

fn main() {
    let options = Options::from_env();
    start_watchdog(options.timeout);
    eprintln!(
        "scale: server {} on CPU {}, `hold` on CPU {}; steps {:?} x {} run(s); sample {} of the \
         connections, {} msgs/s of {} B, window {:?} after {:?}; load average {}",
        options.server.display(),
        options.server_cpu,
        options.generator_cpu,
        options.steps,
        options.runs,
        options.sample,
        options.rate,
        options.size,
        options.duration,
        options.warmup,
        proc_self::load_average()
    );
    let mut next_ip = options.first_ip;
    let mut results: Vec<Vec<Value>> = vec![Vec::new(); options.steps.len()];
    for run in 0..options.runs {
        for (s, &n) in options.steps.iter().enumerate() {
            for attempt in 0..=options.retries {
                let mut result = match run_step(&options, n, &mut next_ip) {
                    Ok(result) => result,
                    Err(e) => {
                        eprintln!("scale: run {} step {n} failed: {e}", run + 1);
                        continue;
                    }
                };
                let others = number(&result, "others_on_server_cpu_pct");
                let keep = others <= options.max_others || attempt == options.retries;
                eprintln!(
                    "scale: run {} step {n}: {}{}",
                    run + 1,
                    summary(&result),
                    if keep {
                        ""
                    } else {
                        "; others used the server's CPU: again"
                    }
                );
                result["run"] = json!(run + 1);
                result["discarded"] = json!(!keep);
                if let Some(out) = &options.out {
                    append(out, &result);
                }
                if keep {
                    results[s].push(result);
                    break;
                }
            }
        }
    }
    print_tables(&options, &results);
}

/// One line of a step's figures.
fn summary(r: &Value) -> String {
    format!(
        "held {} (server {}), {:.0} B/conn idle, {:.0} B/conn after echo, {:.2} µs CPU/msg \
         ({:.0} msgs), p99 {:.0} µs, errors {}, verify failures {}",
        r["held_client"],
        r["held_server"],
        number(r, "user_bytes_per_conn_idle"),
        number(r, "user_bytes_per_conn_active"),
        number(r, "cpu_us_per_msg"),
        number(r, "echoed"),
        number(r, "p99_us"),
        r["errors"],
        r["verify_failures"],
    )
}

/// The medians table and the goals' verdicts.
fn print_tables(options: &Options, results: &[Vec<Value>]) {
    let columns: [(&str, &str); 16] = [
        ("held_server", "held"),
        ("connect_rate", "connect/s"),
        ("user_bytes_per_conn_idle", "user B/conn idle"),
        ("user_bytes_per_conn_active", "user B/conn after"),
        ("tcp_inuse_delta", "TCP inuse +"),
        ("tcp_mem_pages_idle_delta", "TCP pages + idle"),
        ("tcp_mem_pages_active_delta", "after"),
        ("slab_bytes_per_conn_both_ends", "slab B/conn (2 ends)"),
        ("echo_rate", "echoes/s"),
        ("cpu_us_per_msg", "CPU µs/msg"),
        ("cpu_ticks_us_per_msg", "(ticks)"),
        ("p50_us", "p50 µs"),
        ("p99_us", "p99 µs"),
        ("errors", "errors"),
        ("verify_failures", "verify fail"),
        ("others_on_server_cpu_pct", "others % srv CPU"),
    ];
    let mut header = vec!["conns"];
    header.extend(columns.iter().map(|(_, title)| *title));
    let mut table = Table::new(&header);
    let medians: Vec<Option<Value>> = results
        .iter()
        .map(|runs| {
            (!runs.is_empty()).then(|| {
                let mut row = serde_json::Map::new();
                for (key, _) in &columns {
                    let values: Vec<f64> = runs.iter().map(|r| number(r, key)).collect();
                    row.insert((*key).to_owned(), json!(median(&values)));
                }
                Value::Object(row)
            })
        })
        .collect();
    for (n, row) in options.steps.iter().zip(&medians) {
        let Some(row) = row else { continue };
        let mut cells = vec![n.to_string()];
        for (key, _) in &columns {
            let value = number(row, key);
            cells.push(if value.abs() >= 100.0 || value.fract() == 0.0 {
                format!("{value:.0}")
            } else {
                format!("{value:.2}")
            });
        }
        table.row(cells);
    }
    println!(
        "\nmedians over {} run(s); user B/conn = server VmRSS over its baseline / held; slab \
         and TCP inuse count both ends of each loopback connection",
        options.runs
    );
    table.print();
    let present: Vec<(usize, &Value)> = options
        .steps
        .iter()
        .zip(&medians)
        .filter_map(|(n, row)| Some((*n, row.as_ref()?)))
        .collect();
    if let (Some((first_n, first)), Some((last_n, last))) = (present.first(), present.last()) {
        let ratio = number(last, "cpu_us_per_msg") / number(first, "cpu_us_per_msg");
        let idle = number(last, "user_bytes_per_conn_idle");
        println!(
            "CPU per message at {last_n} vs {first_n} connections: {ratio:.2}x (goal: at most \
             1.20x); user space per idle connection at {last_n}: {idle:.0} B (goal: at most 1024 B)"
        );
    }
    if let Some(Some(last)) = results.last().map(|runs| runs.last())
        && let Some(caches) = last["slab_caches_bytes_per_conn_both_ends"].as_array()
    {
        let text: Vec<String> = caches
            .iter()
            .map(|c| {
                format!(
                    "{} {:.0}",
                    c[0].as_str().unwrap_or("?"),
                    c[1].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        if last["slabinfo_readable"].as_bool() == Some(true) {
            println!(
                "slab growth per connection (both ends), largest step: {}",
                text.join(", ")
            );
        } else {
            println!("/proc/slabinfo is not readable here (root only): no per-cache slab figures");
        }
    }
}
