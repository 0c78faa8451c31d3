//! `compare`: the echo benchmark's driver. Runs each peer echo server under the
//! same load from `loadgen` and prints, per scenario, a table of medians over
//! interleaved rounds, with ratios to tokio.
//!
//! Scenarios (`--scenarios a,b,c,d`):
//!
//! | key | load |
//! | --- | --- |
//! | a | 50 connections x 64 B, depth 1 |
//! | b | 50 connections x 16 KiB, depth 1 |
//! | c | 1000 connections x 512 B, depth 1 |
//! | d | 10 connections x 64 B, depth 16 |
//!
//! Servers (`--servers edgeloop,tokio,smol,mio,c`): the `echo_*` binaries beside
//! this one, and the C server that `build.rs` compiled (`ECHO_C_PATH`).
//!
//! For each scenario, round after round (A B C D E, A B C D E, ...), each server is
//! started pinned to one CPU (`taskset -c 1`, `--server-cpu`) on a free port, and
//! `loadgen` runs pinned to the other (`taskset -c 0`, `--client-cpu`) with
//! `--verify`, for `--warmup` then `--duration` seconds. The server's CPU time
//! (`utime + stime` of `/proc/PID/stat`) is read when `loadgen` says the counted
//! window starts and when it ends. Every server and `loadgen` started is killed when
//! its run ends, also if this program panics (a guard).
//!
//! `--syscalls` instead runs, per server, a short load (scenario a unless
//! `--scenarios` says otherwise; `--syscall-duration` seconds, no warm-up) while
//! `perf stat -p PID` on the `syscalls:sys_enter_NAME` tracepoints (where the
//! kernel has them) or `strace -c -f -p PID` counts the server's system calls, and
//! prints them per message by kind. strace slows the server a lot; with it only
//! the counts mean anything.
//!
//! The machine may be shared. Before each run it waits (at most `--quiet-wait`
//! seconds) for other work to leave the CPUs 90% idle; each run measures the CPU
//! time that tasks other than the server and `loadgen` used meanwhile ("others",
//! from `/proc/stat`), and a run where that passed `--max-others` percent of a CPU
//! is recorded as discarded and done again (at most `--retries` times; the last
//! attempt stands). The involuntary context switches of server and `loadgen`
//! ("preempted") are reported too.
//! `--extra NAME=PATH,...` adds servers, e.g. `echo_edgeloop` built from another
//! commit.
//!
//! Every run is also appended, as one JSON line, to `--out` (default
//! `bench/results/echo.jsonl`). See bench/README.md.
#![deny(unsafe_code, missing_docs)]

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgeloop_bench::echo::{involuntary_switches, process_cpu_time, split_flags};
use edgeloop_bench::server::{KillOnDrop, start_pinned};
use edgeloop_bench::stats::{median, ratio};
use edgeloop_bench::{Args, Table, proc_self};
use serde_json::{Value, json};

const USAGE: &str = "\
usage: compare [--rounds N] [--duration SECS] [--warmup SECS] [--servers LIST]
               [--scenarios LIST] [--out FILE] [--threads N] [--quiet-wait SECS]
               [--max-others PCT] [--retries N] [--extra NAME=PATH,...]
               [--server-cpu CPUS] [--client-cpu CPUS]
       compare --syscalls [--syscall-duration SECS] [--syscall-tool perf|strace]
               [--servers LIST] [--scenarios LIST] [--out FILE]

Defaults: --rounds 3 --duration 5 --warmup 1 --servers edgeloop,tokio,smol,mio,c
--scenarios a,b,c,d (a only with --syscalls) --out bench/results/echo.jsonl
--threads 1 (loadgen's) --server-cpu 1 --client-cpu 0
--quiet-wait 5 --max-others 15 --retries 2 --syscall-duration 3 --syscall-tool: perf if its syscall tracepoints work,
else strace. --extra NAME=PATH,... adds servers (e.g. a build of another commit).
Scenarios: a = 50 x 64 B, b = 50 x 16 KiB, c = 1000 x 512 B, d = 10 x 64 B depth 16.";

/// One load shape.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    key: &'static str,
    connections: usize,
    size: usize,
    depth: usize,
}

impl Scenario {
    fn title(&self) -> String {
        let size = if self.size.is_multiple_of(1024) {
            format!("{} KiB", self.size / 1024)
        } else {
            format!("{} B", self.size)
        };
        format!(
            "scenario {}: {} connections x {size}, depth {}",
            self.key, self.connections, self.depth
        )
    }
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        key: "a",
        connections: 50,
        size: 64,
        depth: 1,
    },
    Scenario {
        key: "b",
        connections: 50,
        size: 16 * 1024,
        depth: 1,
    },
    Scenario {
        key: "c",
        connections: 1000,
        size: 512,
        depth: 1,
    },
    Scenario {
        key: "d",
        connections: 10,
        size: 64,
        depth: 16,
    },
];

/// The servers run by default, in table order; `tokio` is the yardstick of the
/// ratios.
const SERVERS: [&str; 5] = ["edgeloop", "tokio", "smol", "mio", "c"];

/// Servers run only when `--servers` names them: `edgeloop-et` is `echo_edgeloop
/// --no-oneshot` (edgeloop built with `Builder::oneshot(false)`).
const MORE_SERVERS: [&str; 1] = ["edgeloop-et"];

/// The command line.
#[derive(Debug)]
struct Options {
    rounds: usize,
    duration: f64,
    warmup: f64,
    servers: Vec<&'static str>,
    /// Further servers by name and executable (`--extra NAME=PATH,...`).
    extra: Vec<(String, PathBuf)>,
    scenarios: Vec<Scenario>,
    out: PathBuf,
    threads: usize,
    server_cpu: String,
    client_cpu: String,
    syscalls: bool,
    syscall_duration: f64,
    syscall_tool: Option<String>,
    quiet_wait: f64,
    max_others: f64,
    retries: usize,
}

impl Options {
    fn from_env() -> Options {
        let (rest, flags) = split_flags(std::env::args().skip(1), &["syscalls", "help"]);
        if flags.iter().any(|f| f == "help") {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let known = [
            "rounds",
            "duration",
            "warmup",
            "servers",
            "scenarios",
            "out",
            "threads",
            "server-cpu",
            "client-cpu",
            "syscall-duration",
            "syscall-tool",
            "quiet-wait",
            "extra",
            "max-others",
            "retries",
        ];
        let fail = |message: String| -> ! {
            eprintln!("error: {message}\n{USAGE}");
            std::process::exit(2)
        };
        let args = Args::parse(rest, &known).unwrap_or_else(|m| fail(m));
        let syscalls = flags.iter().any(|f| f == "syscalls");
        let servers = match args.text("servers") {
            None => SERVERS.to_vec(),
            Some(list) => list
                .split(',')
                .map(|name| {
                    let name = name.trim().trim_start_matches("echo_");
                    SERVERS
                        .iter()
                        .chain(&MORE_SERVERS)
                        .copied()
                        .find(|s| *s == name)
                        .unwrap_or_else(|| fail(format!("unknown server `{name}`")))
                })
                .collect(),
        };
        let default_scenarios = if syscalls { "a" } else { "a,b,c,d" };
        let scenarios = args
            .text("scenarios")
            .unwrap_or(default_scenarios)
            .split(',')
            .map(|key| {
                let key = key.trim();
                SCENARIOS
                    .iter()
                    .copied()
                    .find(|s| s.key == key)
                    .unwrap_or_else(|| fail(format!("unknown scenario `{key}`")))
            })
            .collect();
        let seconds = |name: &str, default: f64| {
            let value: f64 = args.get(name, default);
            if !(value.is_finite() && value >= 0.0) {
                fail(format!("`--{name}` must be a number of seconds >= 0"));
            }
            value
        };
        let default_out = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/echo.jsonl");
        Options {
            rounds: args.get("rounds", 3_usize).max(1),
            duration: seconds("duration", 5.0),
            warmup: seconds("warmup", 1.0),
            servers,
            scenarios,
            out: args.text("out").map_or(default_out, PathBuf::from),
            threads: args.get("threads", 1_usize).max(1),
            server_cpu: args.text("server-cpu").unwrap_or("1").to_owned(),
            client_cpu: args.text("client-cpu").unwrap_or("0").to_owned(),
            syscalls,
            syscall_duration: seconds("syscall-duration", 3.0),
            syscall_tool: args.text("syscall-tool").map(str::to_owned),
            quiet_wait: seconds("quiet-wait", 5.0),
            max_others: args.get("max-others", 15.0),
            retries: args.get("retries", 2_usize),
            extra: args
                .text("extra")
                .map(|list| {
                    list.split(',')
                        .map(|pair| match pair.split_once('=') {
                            Some((name, path)) if !name.is_empty() && !path.is_empty() => {
                                (name.to_owned(), PathBuf::from(path))
                            }
                            _ => fail(format!("`--extra {pair}`: NAME=PATH")),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// How to start a server: its executable and the arguments before the address.
#[derive(Debug, Clone)]
struct ServerCommand {
    name: String,
    path: PathBuf,
    args: Vec<String>,
}

/// A running echo server.
#[derive(Debug)]
struct Server {
    process: KillOnDrop,
    /// Where it listens.
    addr: String,
}

/// How to start server `name`, if it was built.
fn server_command(name: &str) -> Option<ServerCommand> {
    let (binary, args) = match name {
        "edgeloop-et" => ("edgeloop", vec!["--no-oneshot".to_owned()]),
        other => (other, Vec::new()),
    };
    let path = if binary == "c" {
        let built = env!("ECHO_C_PATH");
        if built.is_empty() {
            return None;
        }
        PathBuf::from(built)
    } else {
        sibling(&format!("echo_{binary}"))
    };
    path.exists().then(|| ServerCommand {
        name: name.to_owned(),
        path,
        args,
    })
}

/// An executable beside this one (cargo puts every binary of the crate there).
fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of this executable");
    exe.with_file_name(name)
}

/// Starts server `command` pinned to `cpus` on a free port of 127.0.0.1, and waits
/// for its `listening on ADDR` line.
fn start_server(command: &ServerCommand, cpus: &str) -> io::Result<Server> {
    let (process, addr) = start_pinned(&command.name, &command.path, &command.args, cpus)?;
    Ok(Server { process, addr })
}

/// The load of one run.
#[derive(Debug, Clone, Copy)]
struct Load {
    scenario: Scenario,
    duration: f64,
    warmup: f64,
}

/// What one `loadgen` run reported, and what was measured around it.
#[derive(Debug)]
struct Measured {
    /// loadgen's JSON line.
    report: Value,
    /// Server CPU time over the counted window.
    server_cpu: Duration,
    /// loadgen's CPU time over the counted window.
    client_cpu: Duration,
    /// The counted window as seen from here (between loadgen's two marker lines).
    window: Duration,
    /// Involuntary context switches of the server and of loadgen in the window.
    preempted: u64,
    /// CPU time that tasks other than the server and loadgen used in the window,
    /// on any CPU.
    others: Duration,
    /// loadgen's stderr, to show when something went wrong.
    log: Vec<String>,
}

/// CPU time of a process, read at a marker line.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    server: Duration,
    client: Duration,
    /// Involuntary switches of both processes so far.
    preempted: u64,
    /// Time all CPUs have run tasks, anyone's (see [`task_time`]).
    tasks: Duration,
}

/// Runs `loadgen` against `server` and collects its report.
fn run_loadgen(
    options: &Options,
    server: &Server,
    label: &str,
    load: Load,
) -> io::Result<Measured> {
    let scenario = load.scenario;
    let child = Command::new("taskset")
        .args(["-c", &options.client_cpu])
        .arg(sibling("loadgen"))
        .args(["--addr", &server.addr, "--label", label, "--verify"])
        .args(["--connections", &scenario.connections.to_string()])
        .args(["--size", &scenario.size.to_string()])
        .args(["--depth", &scenario.depth.to_string()])
        .args(["--duration", &load.duration.to_string()])
        .args(["--warmup", &load.warmup.to_string()])
        .args(["--threads", &options.threads.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting loadgen: {e}")))?;
    let mut loadgen = KillOnDrop { child };
    let mut stdout = loadgen.child.stdout.take().expect("stdout is piped");
    let stderr = loadgen.child.stderr.take().expect("stderr is piped");
    let collect = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let mark = || -> io::Result<Mark> {
        Ok(Mark {
            at: Instant::now(),
            server: process_cpu_time(server.process.pid())?,
            client: process_cpu_time(loadgen.pid())?,
            preempted: involuntary_switches(server.process.pid())?
                + involuntary_switches(loadgen.pid())?,
            tasks: task_time().unwrap_or_default(),
        })
    };
    let (mut start, mut end) = (None, None);
    let mut log = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        match line.as_str() {
            "loadgen: measuring" => start = Some(mark()?),
            "loadgen: window over" => end = Some(mark()?),
            _ => {}
        }
        log.push(line);
    }
    let status = loadgen.child.wait()?;
    let text = collect.join().unwrap_or_default();
    let failed = |what: String| {
        for line in &log {
            eprintln!("    | {line}");
        }
        io::Error::other(what)
    };
    // 3 means "finished, but saw errors": the report says which, and the table too.
    if !(status.success() || status.code() == Some(3)) {
        return Err(failed(format!("loadgen failed: {status}")));
    }
    let report: Value = text
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| failed(format!("loadgen printed no JSON line: {text:?}")))?;
    let (Some(start), Some(end)) = (start, end) else {
        return Err(failed("loadgen printed no window markers".to_owned()));
    };
    Ok(Measured {
        report,
        server_cpu: end.server.saturating_sub(start.server),
        client_cpu: end.client.saturating_sub(start.client),
        window: end.at - start.at,
        preempted: end.preempted.saturating_sub(start.preempted),
        others: end
            .tasks
            .saturating_sub(start.tasks)
            .saturating_sub(end.server.saturating_sub(start.server))
            .saturating_sub(end.client.saturating_sub(start.client)),
        log,
    })
}

/// One run's figures, for the tables.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    msgs_per_s: f64,
    mb_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_msg: f64,
    server_cpu_pct: f64,
    client_cpu_pct: f64,
    /// Errors, silent connections and verification failures, summed.
    problems: f64,
    /// Involuntary context switches of server and loadgen in the window.
    preempted: f64,
    /// CPU that other work used in the window, in percent of one CPU.
    other_pct: f64,
}

fn number(report: &Value, key: &str) -> f64 {
    report[key].as_f64().unwrap_or(f64::NAN)
}

/// Appends JSON lines to the results file.
struct Results {
    file: fs::File,
    /// Identifies this invocation in the file: its start, in Unix seconds.
    run: u64,
    /// The commit measured, and whether the work tree differed from it.
    source: Value,
}

impl Results {
    fn open(path: &Path) -> io::Result<Results> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Results {
            file,
            run,
            source: source_version(),
        })
    }

    fn write(&mut self, mut line: Value) -> io::Result<()> {
        line["run"] = json!(self.run);
        line["source"] = self.source.clone();
        writeln!(self.file, "{line}")?;
        self.file.flush()
    }
}

/// The git commit of the source tree and the files that differ from it outside
/// `bench/` (read-only git commands; `null` where git is not there).
fn source_version() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).map(|c| c.trim().to_owned());
    let changed: Option<Vec<String>> = git(&["status", "--porcelain"]).map(|text| {
        text.lines()
            .filter_map(|line| line.get(3..))
            .filter(|path| !path.starts_with("bench/") && *path != "Cargo.lock")
            .map(str::to_owned)
            .collect()
    });
    json!({ "commit": commit, "changed_outside_bench": changed })
}

fn main() {
    let options = Options::from_env();
    let mut results = Results::open(&options.out).unwrap_or_else(|e| {
        eprintln!("error: cannot open {}: {e}", options.out.display());
        std::process::exit(1)
    });
    let mut servers: Vec<ServerCommand> = Vec::new();
    for name in &options.servers {
        match server_command(name) {
            Some(command) => servers.push(command),
            None => eprintln!("compare: skipping {name}: its executable was not built"),
        }
    }
    for (name, path) in &options.extra {
        if !path.exists() {
            eprintln!("error: `--extra {name}={}`: no such file", path.display());
            std::process::exit(2);
        }
        servers.push(ServerCommand {
            name: name.clone(),
            path: path.clone(),
            args: Vec::new(),
        });
    }
    eprintln!(
        "compare: this process on CPUs {}, load average {}; source {}",
        proc_self::cpus_allowed(),
        proc_self::load_average(),
        results.source
    );
    let outcome = if options.syscalls {
        count_syscalls(&options, &servers, &mut results)
    } else {
        throughput(&options, &servers, &mut results)
    };
    if let Err(e) = outcome {
        eprintln!("compare: {e}");
        std::process::exit(1);
    }
    eprintln!("compare: results appended to {}", options.out.display());
}

/// The main mode: every scenario, rounds of every server, then the tables.
fn throughput(
    options: &Options,
    servers: &[ServerCommand],
    results: &mut Results,
) -> io::Result<()> {
    let mut tables = Vec::new();
    for scenario in &options.scenarios {
        let load = Load {
            scenario: *scenario,
            duration: options.duration,
            warmup: options.warmup,
        };
        eprintln!("compare: {}", scenario.title());
        let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); servers.len()];
        for round in 1..=options.rounds {
            for (index, server) in servers.iter().enumerate() {
                let figures = measure(options, results, load, round, server)?;
                runs[index].push(figures);
            }
        }
        let table = scenario_table(servers, &runs);
        println!(
            "\n{} (medians of {} rounds)",
            scenario.title(),
            options.rounds
        );
        table.print();
        tables.push((scenario.title(), table));
    }
    if tables.len() > 1 {
        println!(
            "\n=== all scenarios: medians of {} rounds, {} s each after {} s of warm-up ===",
            options.rounds, options.duration, options.warmup
        );
        for (title, table) in &tables {
            println!("\n{title}");
            table.print();
        }
    }
    Ok(())
}

/// Time all CPUs together have spent running tasks (user, nice and system time of
/// the first line of `/proc/stat`; not interrupts, which processes' own times
/// leave out too).
fn task_time() -> Option<Duration> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let jiffies: u64 = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(3)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100: a jiffy here is 10 ms.
    Some(Duration::from_millis(jiffies * 10))
}

/// Total and idle jiffies of all CPUs, from the first line of `/proc/stat`.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal, then guest times that are
    // part of user already: idle and iowait are idle.
    let idle = fields.get(3)? + fields.get(4)?;
    Some((fields.iter().take(8).sum(), idle))
}

/// How busy the machine is with work not ours, in percent of all CPUs over 300 ms
/// (called between runs, when nothing of ours runs).
fn busy_percent() -> f64 {
    let Some((total0, idle0)) = cpu_jiffies() else {
        return f64::NAN;
    };
    thread::sleep(Duration::from_millis(300));
    let Some((total1, idle1)) = cpu_jiffies() else {
        return f64::NAN;
    };
    let total = total1.saturating_sub(total0);
    if total == 0 {
        return 0.0;
    }
    100.0 * total.saturating_sub(idle1.saturating_sub(idle0)) as f64 / total as f64
}

/// On a shared machine, waits (at most `limit` seconds) until other work leaves the
/// CPUs at least 90% idle; returns the last busy figure seen, in percent.
fn wait_for_quiet(limit: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(limit);
    let mut said = false;
    loop {
        let busy = busy_percent();
        // NaN (no /proc/stat) counts as quiet.
        if busy.is_nan() || busy <= 10.0 || Instant::now() >= deadline {
            return busy;
        }
        if !said {
            eprintln!(
                "  (the machine is {busy:.0}% busy with other work; waiting up to {limit} s)"
            );
            said = true;
        }
        thread::sleep(Duration::from_millis(700));
    }
}

/// One run of server `name` under `load`, done again (up to `--retries` times)
/// while other work used more than `--max-others` percent of a CPU in it; every
/// attempt goes to the results file, the discarded ones marked so.
fn measure(
    options: &Options,
    results: &mut Results,
    load: Load,
    round: usize,
    command: &ServerCommand,
) -> io::Result<Figures> {
    let scenario = load.scenario;
    let name = &command.name;
    for attempt in 0..=options.retries {
        let busy_before = wait_for_quiet(options.quiet_wait);
        let server = start_server(command, &options.server_cpu)?;
        let measured = run_loadgen(options, &server, name, load)?;
        drop(server);
        let figures = figures(&measured);
        let discard = figures.other_pct > options.max_others && attempt < options.retries;
        eprintln!(
            "  [{} {round}/{}] {name:>8}: {:>9.0} msgs/s  p50 {:>7.1} µs  p99 {:>7.1} µs  server {:>5.2} µs/msg ({:.0}% CPU)  loadgen {:.0}% CPU  preempted {}  others {:.0}%{}{}",
            scenario.key,
            options.rounds,
            figures.msgs_per_s,
            figures.p50_us,
            figures.p99_us,
            figures.cpu_us_per_msg,
            figures.server_cpu_pct,
            figures.client_cpu_pct,
            measured.preempted,
            figures.other_pct,
            if discard { "  DISCARDED, again" } else { "" },
            if figures.problems > 0.0 {
                "  PROBLEMS (see below)"
            } else {
                ""
            }
        );
        if figures.problems > 0.0 {
            for line in &measured.log {
                eprintln!("    | {line}");
            }
        }
        let mut line = measured.report.clone();
        line["kind"] = json!("throughput");
        line["scenario"] = json!(scenario.key);
        line["server"] = json!(name);
        line["round"] = json!(round);
        line["attempt"] = json!(attempt + 1);
        line["discarded"] = json!(discard);
        line["server_cpu_s"] = json!(measured.server_cpu.as_secs_f64());
        line["server_cpu_us_per_msg"] = json!(figures.cpu_us_per_msg);
        line["server_cpu_pct"] = json!(figures.server_cpu_pct);
        line["loadgen_cpu_pct"] = json!(figures.client_cpu_pct);
        line["others_cpu_pct"] = json!(figures.other_pct);
        line["window_s"] = json!(measured.window.as_secs_f64());
        line["preempted"] = json!(measured.preempted);
        line["busy_before_pct"] = json!(busy_before);
        results.write(line)?;
        if !discard {
            return Ok(figures);
        }
    }
    unreachable!("the last attempt is never discarded")
}

/// A run's figures from loadgen's report and the CPU readings.
fn figures(measured: &Measured) -> Figures {
    let report = &measured.report;
    let msgs = number(report, "msgs");
    let window = measured.window.as_secs_f64();
    let pct = |cpu: Duration| {
        if window > 0.0 {
            100.0 * cpu.as_secs_f64() / window
        } else {
            f64::NAN
        }
    };
    Figures {
        msgs_per_s: number(report, "msgs_per_s"),
        mb_per_s: number(report, "mb_per_s"),
        p50_us: number(report, "p50_us"),
        p99_us: number(report, "p99_us"),
        cpu_us_per_msg: if msgs > 0.0 {
            measured.server_cpu.as_secs_f64() * 1e6 / msgs
        } else {
            f64::NAN
        },
        server_cpu_pct: pct(measured.server_cpu),
        client_cpu_pct: pct(measured.client_cpu),
        problems: number(report, "errors")
            + number(report, "silent_connections")
            + number(report, "verify_failures"),
        preempted: measured.preempted as f64,
        other_pct: pct(measured.others),
    }
}

/// Thousands separated by commas: 1234567.8 gives "1,234,568".
fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "-".to_owned();
    }
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

/// The medians table of one scenario.
fn scenario_table(servers: &[ServerCommand], runs: &[Vec<Figures>]) -> Table {
    let medians: Vec<Figures> = runs
        .iter()
        .map(|figures| {
            let m = |get: fn(&Figures) -> f64| median(&figures.iter().map(get).collect::<Vec<_>>());
            Figures {
                msgs_per_s: m(|f| f.msgs_per_s),
                mb_per_s: m(|f| f.mb_per_s),
                p50_us: m(|f| f.p50_us),
                p99_us: m(|f| f.p99_us),
                cpu_us_per_msg: m(|f| f.cpu_us_per_msg),
                server_cpu_pct: m(|f| f.server_cpu_pct),
                client_cpu_pct: m(|f| f.client_cpu_pct),
                // Not a median: any problem in any round shows.
                problems: figures.iter().map(|f| f.problems).sum(),
                preempted: m(|f| f.preempted),
                other_pct: m(|f| f.other_pct),
            }
        })
        .collect();
    let tokio = servers
        .iter()
        .position(|server| server.name == "tokio")
        .map(|i| medians[i]);
    let versus = |value: f64, get: fn(&Figures) -> f64| match tokio {
        Some(t) => ratio(value, get(&t)),
        None => "-".to_owned(),
    };
    let mut table = Table::new(&[
        "server",
        "msgs/s",
        "x tokio",
        "MB/s",
        "p50 µs",
        "p99 µs",
        "x tokio",
        "CPU µs/msg",
        "x tokio",
        "server CPU",
        "loadgen CPU",
        "preempted",
        "others",
        "problems",
    ]);
    for (server, m) in servers.iter().zip(&medians) {
        table.row([
            server.name.clone(),
            thousands(m.msgs_per_s),
            versus(m.msgs_per_s, |f| f.msgs_per_s),
            format!("{:.1}", m.mb_per_s),
            format!("{:.0}", m.p50_us),
            format!("{:.0}", m.p99_us),
            versus(m.p99_us, |f| f.p99_us),
            format!("{:.2}", m.cpu_us_per_msg),
            versus(m.cpu_us_per_msg, |f| f.cpu_us_per_msg),
            format!("{:.0}%", m.server_cpu_pct),
            format!("{:.0}%", m.client_cpu_pct),
            format!("{:.0}", m.preempted),
            format!("{:.0}%", m.other_pct),
            format!("{:.0}", m.problems),
        ]);
    }
    table
}

/// The syscall groups of the table, by name.
const GROUPS: [(&str, &[&str]); 4] = [
    ("read", &["read", "recvfrom", "recvmsg", "readv"]),
    ("write", &["write", "sendto", "sendmsg", "writev"]),
    ("epoll wait", &["epoll_wait", "epoll_pwait", "epoll_pwait2"]),
    ("epoll_ctl", &["epoll_ctl"]),
];

/// How many times one syscall was made, and how many of those failed.
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    calls: u64,
    /// With perf: the `read` and `recvfrom` calls that said `EAGAIN` (the only
    /// failures it is asked to count); with strace: every failed call.
    errors: u64,
}

/// What counts the server's syscalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    /// `perf stat` on the `syscalls:sys_enter_*` tracepoints: counted in the kernel,
    /// the server runs at full speed.
    Perf,
    /// `strace -c -f`: every syscall stops the server, which then runs many times
    /// slower (so more events pile up per `epoll_wait` than without it).
    Strace,
}

impl Counter {
    fn name(self) -> &'static str {
        match self {
            Counter::Perf => "perf stat -e 'syscalls:sys_enter_NAME'",
            Counter::Strace => "strace -c -f",
        }
    }

    /// `--syscall-tool perf|strace`, or perf if its syscall tracepoints work here.
    fn choose(wanted: Option<&str>) -> io::Result<Counter> {
        match wanted {
            Some("perf") => Ok(Counter::Perf),
            Some("strace") => Ok(Counter::Strace),
            Some(other) => Err(io::Error::other(format!(
                "`--syscall-tool {other}`: perf or strace"
            ))),
            None => {
                let perf_works = Command::new("perf")
                    .args([
                        "stat",
                        "-x,",
                        "-e",
                        "syscalls:sys_enter_getpid",
                        "--",
                        "true",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success());
                Ok(if perf_works {
                    Counter::Perf
                } else {
                    Counter::Strace
                })
            }
        }
    }

    /// Starts counting the syscalls of process `pid` into `file`, and returns once
    /// the counting has begun.
    fn attach(self, pid: u32, file: &Path) -> io::Result<KillOnDrop> {
        let mut command = match self {
            Counter::Perf => {
                let mut c = Command::new("perf");
                c.args(["stat", "-x,", "-o"]).arg(file);
                for event in perf_events() {
                    c.args(["-e", &event]);
                }
                // Reads that found nothing to read: the price of "read until EAGAIN".
                for call in ["read", "recvfrom"] {
                    c.args(["-e", &format!("syscalls:sys_exit_{call}")]);
                    c.args(["--filter", "ret == -11"]);
                }
                c
            }
            Counter::Strace => {
                let mut c = Command::new("strace");
                c.args(["-f", "-c", "-q", "-o"]).arg(file);
                c
            }
        };
        let child = command
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", self.name())))?;
        let counter = KillOnDrop { child };
        match self {
            Counter::Perf => {
                // Counting has begun once perf holds an event fd per event.
                let wanted = perf_events().len() + 2;
                let deadline = Instant::now() + Duration::from_secs(10);
                while perf_event_fds(counter.pid()) < wanted {
                    if Instant::now() > deadline {
                        return Err(io::Error::other("perf did not start counting in 10 s"));
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            }
            Counter::Strace => {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !traced(pid) {
                    if Instant::now() > deadline {
                        return Err(io::Error::other("strace did not attach in 10 s"));
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
        Ok(counter)
    }

    /// Parses what the tool wrote: syscall name to count.
    fn parse(self, text: &str) -> BTreeMap<String, Count> {
        match self {
            Counter::Perf => parse_perf_csv(text),
            Counter::Strace => parse_strace_summary(text),
        }
    }
}

/// The syscalls that perf counts one by one: those of an echo server's loop, and
/// those the runtimes make now and then. Every other one is counted only in the
/// total, and shows as `unlisted`. (Counting all of `syscalls:sys_enter_*`, some
/// 350 tracepoints, works too, but perf then takes over 10 s to stop.)
const PERF_SYSCALLS: [&str; 26] = [
    "read",
    "recvfrom",
    "recvmsg",
    "readv",
    "write",
    "sendto",
    "sendmsg",
    "writev",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_ctl",
    "accept4",
    "close",
    "shutdown",
    "setsockopt",
    "fcntl",
    "ioctl",
    "futex",
    "timerfd_settime",
    "sched_yield",
    "clock_nanosleep",
    "brk",
    "mmap",
    "munmap",
    "madvise",
];

/// perf's events: every syscall (`raw_syscalls:sys_enter`) and each of
/// [`PERF_SYSCALLS`] that this kernel has a tracepoint for.
fn perf_events() -> Vec<String> {
    let tracing = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .map(|dir| Path::new(dir).join("events/syscalls"))
        .find(|dir| dir.is_dir());
    let mut events = vec!["raw_syscalls:sys_enter".to_owned()];
    for name in PERF_SYSCALLS {
        let known = tracing
            .as_ref()
            .is_none_or(|dir| dir.join(format!("sys_enter_{name}")).is_dir());
        if known {
            events.push(format!("syscalls:sys_enter_{name}"));
        }
    }
    events
}

/// How many perf event fds process `pid` holds.
fn perf_event_fds(pid: u32) -> usize {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| {
            fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().contains("perf_event"))
        })
        .count()
}

/// Parses `perf stat -x,` output: `VALUE,UNIT,EVENT,...` lines of
/// `syscalls:sys_enter_NAME` (calls), `syscalls:sys_exit_NAME` (the filtered
/// failures) and `raw_syscalls:sys_enter` (all calls: what the named ones leave
/// becomes `unlisted`); syscalls never made are left out.
fn parse_perf_csv(text: &str) -> BTreeMap<String, Count> {
    let mut counts: BTreeMap<String, Count> = BTreeMap::new();
    let mut all = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(value), Some(event)) = (fields.first(), fields.get(2)) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue; // comments, blank lines, "<not counted>"
        };
        if value == 0 {
            continue;
        }
        if let Some(name) = event.strip_prefix("syscalls:sys_enter_") {
            counts.entry(name.to_owned()).or_default().calls += value;
        } else if let Some(name) = event.strip_prefix("syscalls:sys_exit_") {
            counts.entry(name.to_owned()).or_default().errors += value;
        } else if *event == "raw_syscalls:sys_enter" {
            all = Some(value);
        }
    }
    if let Some(all) = all {
        let named: u64 = counts.values().map(|c| c.calls).sum();
        if all > named {
            counts.insert(
                "unlisted".to_owned(),
                Count {
                    calls: all - named,
                    errors: 0,
                },
            );
        }
    }
    counts
}

/// Parses `strace -c` output: syscall name to calls and errors.
fn parse_strace_summary(text: &str) -> BTreeMap<String, Count> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "% time seconds usecs/call calls [errors] syscall"; the header and rules
        // do not parse, and the "total" line is left out.
        let (Some(name), Some(calls)) = (fields.last(), fields.get(3)) else {
            continue;
        };
        let Ok(calls) = calls.parse::<u64>() else {
            continue;
        };
        if *name == "total" || fields.len() < 5 {
            continue;
        }
        let errors = if fields.len() >= 6 {
            fields[4].parse().unwrap_or(0)
        } else {
            0
        };
        counts.insert((*name).to_owned(), Count { calls, errors });
    }
    counts
}

/// True once every thread of process `pid` has a tracer.
fn traced(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        fs::read_to_string(task.path().join("status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("TracerPid:"))
                    .map(|v| v.trim() != "0")
            })
            .unwrap_or(false)
    })
}

/// Sends SIGINT to `pid` (perf and strace then stop and write their counts).
fn interrupt(pid: u32) -> io::Result<ExitStatus> {
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
}

/// The `--syscalls` mode.
fn count_syscalls(
    options: &Options,
    servers: &[ServerCommand],
    results: &mut Results,
) -> io::Result<()> {
    let counter = Counter::choose(options.syscall_tool.as_deref())?;
    for scenario in &options.scenarios {
        let load = Load {
            scenario: *scenario,
            duration: options.syscall_duration,
            warmup: 0.0,
        };
        let mut table = Table::new(&[
            "server",
            "msgs",
            "read",
            "(EAGAIN)",
            "write",
            "epoll wait",
            "epoll_ctl",
            "other",
            "total",
        ]);
        let mut details = Vec::new();
        eprintln!(
            "compare: syscalls per message with {}, {}",
            counter.name(),
            scenario.title()
        );
        for command in servers {
            let name = &command.name;
            let file = std::env::temp_dir().join(format!(
                "edgeloop-bench-syscalls-{}-{name}.txt",
                std::process::id()
            ));
            wait_for_quiet(options.quiet_wait);
            let server = start_server(command, &options.server_cpu)?;
            let mut tool = counter.attach(server.process.pid(), &file)?;
            let measured = run_loadgen(options, &server, name, load)?;
            // Let the server see the connections close, then stop counting.
            thread::sleep(Duration::from_millis(300));
            interrupt(tool.pid())?;
            tool.child.wait()?;
            drop(tool);
            drop(server);
            let text = fs::read_to_string(&file)?;
            let _ = fs::remove_file(&file);
            let counts = counter.parse(&text);
            // The whole run (no warm-up) is counted, connecting and closing included:
            // 50 accepts and closes against hundreds of thousands of messages.
            let msgs = number(&measured.report, "msgs_total");
            let per = |calls: u64| calls as f64 / msgs;
            let group = |names: &[&str]| -> Count {
                names
                    .iter()
                    .filter_map(|n| counts.get(*n))
                    .fold(Count::default(), |a, c| Count {
                        calls: a.calls + c.calls,
                        errors: a.errors + c.errors,
                    })
            };
            let grouped: Vec<Count> = GROUPS.iter().map(|(_, names)| group(names)).collect();
            let total: u64 = counts.values().map(|c| c.calls).sum();
            let other = total - grouped.iter().map(|c| c.calls).sum::<u64>();
            table.row([
                name.clone(),
                thousands(msgs),
                format!("{:.2}", per(grouped[0].calls)),
                format!("{:.2}", per(grouped[0].errors)),
                format!("{:.2}", per(grouped[1].calls)),
                format!("{:.3}", per(grouped[2].calls)),
                format!("{:.3}", per(grouped[3].calls)),
                format!("{:.3}", per(other)),
                format!("{:.2}", per(total)),
            ]);
            let mut by_name: Vec<(&String, &Count)> =
                counts.iter().filter(|(_, c)| c.calls > 0).collect();
            by_name.sort_by_key(|(_, c)| std::cmp::Reverse(c.calls));
            let listed: Vec<String> = by_name
                .iter()
                .map(|(n, c)| format!("{n} {} ({:.3}/msg)", c.calls, per(c.calls)))
                .collect();
            details.push(format!("{name}: {}", listed.join(", ")));
            let per_msg: BTreeMap<&String, f64> = counts
                .iter()
                .filter(|(_, c)| c.calls > 0)
                .map(|(n, c)| (n, per(c.calls)))
                .collect();
            let errors_per_msg: BTreeMap<&String, f64> = counts
                .iter()
                .filter(|(_, c)| c.errors > 0)
                .map(|(n, c)| (n, per(c.errors)))
                .collect();
            results.write(json!({
                "kind": "syscalls",
                "tool": counter.name(),
                "scenario": scenario.key,
                "server": name,
                "connections": scenario.connections,
                "size": scenario.size,
                "depth": scenario.depth,
                "duration_s": load.duration,
                "msgs": msgs,
                "msgs_per_s": number(&measured.report, "msgs_per_s"),
                "syscalls_per_msg": per_msg,
                "errors_per_msg": errors_per_msg,
                "total_per_msg": per(total),
            }))?;
            eprintln!(
                "  {name}: {} msgs counted ({:.0} msgs/s)",
                thousands(msgs),
                number(&measured.report, "msgs_per_s")
            );
        }
        println!(
            "\nsyscalls per message, {} ({} s of load, counted with {}; read = \
             read/recvfrom/recvmsg/readv, (EAGAIN) = those that found nothing, write = \
             write/sendto/sendmsg/writev, epoll wait = epoll_wait/epoll_pwait/epoll_pwait2)",
            scenario.title(),
            options.syscall_duration,
            counter.name()
        );
        table.print();
        println!("\nevery syscall, whole run:");
        for line in &details {
            println!("  {line}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strace_summary_parses_with_and_without_errors() {
        let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.060000           6     10000           recvfrom
 30.00    0.030000           3     10000      5000 read
 10.00    0.010000          10      1000           epoll_pwait2
------ ----------- ----------- --------- --------- ----------------
100.00    0.100000           4     21000      5000 total
";
        let counts = parse_strace_summary(text);
        assert_eq!(counts.len(), 3);
        assert_eq!(counts["recvfrom"].calls, 10_000);
        assert_eq!(counts["read"].errors, 5_000);
        assert_eq!(counts["epoll_pwait2"].calls, 1_000);
    }

    #[test]
    fn perf_csv_parses_calls_and_filtered_exits() {
        let text = "\
# started on Sun Nov 29 13:16:48 2026

6,,syscalls:sys_enter_brk,486341041,100.00,,
107595,,syscalls:sys_enter_read,486341041,100.00,,
0,,syscalls:sys_enter_exit,486341041,100.00,,
<not counted>,,syscalls:sys_enter_kill,0,100.00,,
53757,,syscalls:sys_exit_read,486341041,100.00,,
107611,,raw_syscalls:sys_enter,486341041,100.00,,
";
        let counts = parse_perf_csv(text);
        assert_eq!(counts.len(), 3);
        assert_eq!(counts["unlisted"].calls, 10);
        assert_eq!(counts["read"].calls, 107_595);
        assert_eq!(counts["read"].errors, 53_757);
        assert_eq!(counts["brk"].calls, 6);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(f64::NAN), "-");
    }
}
