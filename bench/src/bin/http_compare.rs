//! `http_compare`: the HTTP benchmark's driver. `wrk` against the same hyper
//! service on edgeloop (the `http_hello` example) and on tokio's `current_thread`
//! runtime (`http_tokio`), interleaved, and a table of medians with the ratio.
//!
//! Round after round (edgeloop then tokio, then tokio then edgeloop, ...), each
//! server is started pinned to one CPU (`taskset -c 1`, `--server-cpu`) on a free
//! port of 127.0.0.1, and `wrk -t1 -c50 -d10s --latency` runs pinned to the other
//! (`taskset -c 0`, `--client-cpu`), after a `--warmup` run whose figures are not
//! kept. Requests per second and the p99 latency come from wrk's report; socket
//! errors and non-2xx answers are counted and shown. The server's CPU time per
//! request (`utime + stime` of `/proc/PID/stat` over the measured run) is the
//! figure that still compares the servers when wrk, not the server, is the
//! bottleneck. Every process started is
//! killed when its run ends, also if this program panics.
//!
//! Both servers are built first, in release mode and in this program's target
//! directory (`cargo build --release --features hyper --example http_hello`, and
//! `-p edgeloop-bench --bin http_tokio`), so they are never stale; `--build false`
//! skips that, `--edgeloop PATH` and `--tokio PATH` run other binaries (a build of
//! another commit, say). `--with-et true` adds a third server, `edgeloop-et`:
//! `http_edgeloop --no-oneshot`, the same service on a runtime built with
//! `Builder::oneshot(false)`, to measure what ONESHOT's re-arm costs per request
//! (rounds then rotate: ABC, CAB, BCA).
//!
//! ```text
//! cargo run --release -p edgeloop-bench --bin http_compare -- --runs 5 --duration 10
//! ```
#![deny(unsafe_code, missing_docs)]

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use edgeloop_bench::echo::process_cpu_time;
use edgeloop_bench::server::{KillOnDrop, start_pinned};
use edgeloop_bench::stats::{median, ratio};
use edgeloop_bench::{Args, Table, proc_self};

const USAGE: &str = "\
usage: http_compare [--runs N] [--duration SECS] [--warmup SECS] [--connections N]
                    [--threads N] [--server-cpu CPUS] [--client-cpu CPUS]
                    [--edgeloop PATH] [--tokio PATH] [--build true|false]
                    [--with-et true|false]

Defaults: --runs 5 --duration 10 --warmup 1 --connections 50 --threads 1
--server-cpu 1 --client-cpu 0 --build true (build both servers, release, first)
--with-et false (true adds `http_edgeloop --no-oneshot`: edgeloop without ONESHOT).
Needs `wrk` and `taskset` on PATH.";

/// The command line.
#[derive(Debug)]
struct Options {
    runs: usize,
    duration: u64,
    warmup: u64,
    connections: usize,
    threads: usize,
    server_cpu: String,
    client_cpu: String,
    edgeloop: Option<PathBuf>,
    tokio: Option<PathBuf>,
    build: bool,
    with_et: bool,
}

impl Options {
    fn from_env() -> Self {
        let args = Args::from_env(
            &[
                "runs",
                "duration",
                "warmup",
                "connections",
                "threads",
                "server-cpu",
                "client-cpu",
                "edgeloop",
                "tokio",
                "build",
                "with-et",
            ],
            USAGE,
        );
        let options = Options {
            runs: args.get("runs", 5),
            duration: args.get("duration", 10),
            warmup: args.get("warmup", 1),
            connections: args.get("connections", 50),
            threads: args.get("threads", 1),
            server_cpu: args.get("server-cpu", "1".to_owned()),
            client_cpu: args.get("client-cpu", "0".to_owned()),
            edgeloop: args.text("edgeloop").map(PathBuf::from),
            tokio: args.text("tokio").map(PathBuf::from),
            build: args.get("build", true),
            with_et: args.get("with-et", false),
        };
        if options.runs == 0 || options.duration == 0 || options.connections == 0 {
            eprintln!("error: --runs, --duration and --connections must be above 0\n{USAGE}");
            std::process::exit(2);
        }
        options
    }
}

/// One server under test.
#[derive(Debug)]
struct ServerCommand {
    name: &'static str,
    path: PathBuf,
    /// Arguments after the address.
    args: &'static [&'static str],
}

/// What one wrk run reported.
#[derive(Debug, Clone, Copy)]
struct Report {
    requests_per_sec: f64,
    p99: Duration,
    requests: u64,
    socket_errors: u64,
    non_2xx: u64,
    /// The server's CPU time (user + system, from `/proc/PID/stat`) over the
    /// measured run, per request: meaningful even when wrk is the bottleneck.
    cpu_us_per_request: f64,
}

/// The path of `name` in a directory of `$PATH`, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The target directory this program was built in (`.../target/release/` holds it).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of this executable");
    exe.parent()
        .and_then(Path::parent)
        .expect("this executable lives in TARGET/PROFILE/")
        .to_path_buf()
}

/// Runs `cargo build --release ARGS` on the workspace, into [`target_dir`].
fn cargo_build(args: &[&str]) -> io::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir())
        .args(args)
        .stdin(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "`cargo build --release {}` failed: {status}",
            args.join(" ")
        )));
    }
    Ok(())
}

/// The two servers, built first unless `--build false` (or given as paths).
fn servers(options: &Options) -> io::Result<Vec<ServerCommand>> {
    let edgeloop = match &options.edgeloop {
        Some(path) => path.clone(),
        None => {
            if options.build {
                cargo_build(&[
                    "-p",
                    "edgeloop",
                    "--features",
                    "hyper",
                    "--example",
                    "http_hello",
                ])?;
            }
            target_dir()
                .join("release")
                .join("examples")
                .join("http_hello")
        }
    };
    let tokio = match &options.tokio {
        Some(path) => path.clone(),
        None => {
            if options.build {
                cargo_build(&["-p", "edgeloop-bench", "--bin", "http_tokio"])?;
            }
            target_dir().join("release").join("http_tokio")
        }
    };
    let mut servers = vec![
        ServerCommand {
            name: "edgeloop",
            path: edgeloop,
            args: &[],
        },
        ServerCommand {
            name: "tokio",
            path: tokio,
            args: &[],
        },
    ];
    if options.with_et {
        if options.build {
            cargo_build(&["-p", "edgeloop-bench", "--bin", "http_edgeloop"])?;
        }
        servers.push(ServerCommand {
            name: "edgeloop-et",
            path: target_dir().join("release").join("http_edgeloop"),
            args: &["--no-oneshot"],
        });
    }
    for server in &servers {
        if !server.path.is_file() {
            return Err(io::Error::other(format!(
                "{}: no executable at {}",
                server.name,
                server.path.display()
            )));
        }
    }
    Ok(servers)
}

/// Starts `server` pinned to `cpus` on a free port of 127.0.0.1 and waits for its
/// `listening on ADDR` line; returns the process and the address.
fn start(server: &ServerCommand, cpus: &str) -> io::Result<(KillOnDrop, String)> {
    start_pinned(server.name, &server.path, server.args, cpus)
}

/// Runs wrk against `addr` for `secs` seconds; returns its report's text.
fn wrk(options: &Options, addr: &str, secs: u64) -> io::Result<String> {
    let child = Command::new("taskset")
        .args(["-c", &options.client_cpu, "wrk", "--latency"])
        .arg(format!("-t{}", options.threads))
        .arg(format!("-c{}", options.connections))
        .arg(format!("-d{secs}s"))
        .arg(format!("http://{addr}/"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut process = KillOnDrop { child };
    let mut stdout = process.child.stdout.take().expect("stdout is piped");
    let (text_tx, text_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let result = stdout.read_to_string(&mut text).map(|_| text);
        let _ = text_tx.send(result);
    });
    let limit = Duration::from_secs(secs + 30);
    let text = text_rx
        .recv_timeout(limit)
        .map_err(|_| io::Error::other(format!("wrk still running after {limit:?}")))??;
    let status = process.child.wait()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "wrk exited with {status}:\n{text}"
        )));
    }
    Ok(text)
}

/// A wrk duration such as `543.00us`, `4.32ms` or `1.02s`.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let secs = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Reads wrk's `--latency` report.
fn parse_report(text: &str) -> Option<Report> {
    let mut report = Report {
        requests_per_sec: f64::NAN,
        p99: Duration::MAX,
        requests: 0,
        socket_errors: 0,
        non_2xx: 0,
        cpu_us_per_request: f64::NAN,
    };
    for line in text.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            report.requests_per_sec = value.trim().parse().ok()?;
        } else if let Some(value) = line.strip_prefix("99%") {
            report.p99 = parse_duration(value.trim())?;
        } else if let Some(value) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            report.socket_errors = value
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        } else if let Some(value) = line.strip_prefix("Non-2xx or 3xx responses:") {
            report.non_2xx = value.trim().parse().ok()?;
        } else if let Some((n, rest)) = line.split_once(' ')
            && rest.starts_with("requests in ")
        {
            report.requests = n.parse().ok()?;
        }
    }
    (report.requests_per_sec.is_finite() && report.p99 != Duration::MAX).then_some(report)
}

/// One measured run of `server`.
fn run_once(options: &Options, server: &ServerCommand) -> io::Result<Report> {
    let (process, addr) = start(server, &options.server_cpu)?;
    if options.warmup > 0 {
        wrk(options, &addr, options.warmup)?;
    }
    // `taskset` execs the server: the child's pid is the server's.
    let pid = process.child.id();
    let cpu_before = process_cpu_time(pid)?;
    let text = wrk(options, &addr, options.duration)?;
    let cpu = process_cpu_time(pid)? - cpu_before;
    drop(process);
    let mut report = parse_report(&text)
        .ok_or_else(|| io::Error::other(format!("cannot read wrk's report:\n{text}")))?;
    report.cpu_us_per_request = micros(cpu) / report.requests.max(1) as f64;
    Ok(report)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let options = Options::from_env();
    for tool in ["wrk", "taskset"] {
        if on_path(tool).is_none() {
            eprintln!(
                "error: `{tool}` is not on PATH (Debian: apt-get install {})",
                match tool {
                    "wrk" => "wrk",
                    _ => "util-linux",
                }
            );
            std::process::exit(1);
        }
    }
    let servers = servers(&options).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    eprintln!(
        "http_compare: {} runs of wrk -t{} -c{} -d{}s (after {} s of warm-up), server on CPU {}, \
         wrk on CPU {}; this process on CPUs {}, load average {}",
        options.runs,
        options.threads,
        options.connections,
        options.duration,
        options.warmup,
        options.server_cpu,
        options.client_cpu,
        proc_self::cpus_allowed(),
        proc_self::load_average(),
    );
    let started = Instant::now();
    let mut reports: Vec<Vec<Report>> = servers.iter().map(|_| Vec::new()).collect();
    for round in 0..options.runs {
        // ABBA (ABC CAB BCA with three): each server goes first in turn.
        let n = servers.len();
        let order: Vec<usize> = if n == 2 {
            if round % 2 == 0 {
                vec![0, 1]
            } else {
                vec![1, 0]
            }
        } else {
            (0..n).map(|i| (i + n - round % n) % n).collect()
        };
        for i in order {
            let server = &servers[i];
            let report = run_once(&options, server).unwrap_or_else(|e| {
                eprintln!("error: {} run {}: {e}", server.name, round + 1);
                std::process::exit(1)
            });
            eprintln!(
                "round {}/{} {:>8}: {:>10.0} req/s, p99 {:>8.0} us, server {:.2} us CPU/request, {} requests, {} socket errors, {} non-2xx",
                round + 1,
                options.runs,
                server.name,
                report.requests_per_sec,
                micros(report.p99),
                report.cpu_us_per_request,
                report.requests,
                report.socket_errors,
                report.non_2xx,
            );
            reports[i].push(report);
        }
    }

    let rps: Vec<f64> = reports
        .iter()
        .map(|runs| median(&runs.iter().map(|r| r.requests_per_sec).collect::<Vec<_>>()))
        .collect();
    let p99: Vec<f64> = reports
        .iter()
        .map(|runs| median(&runs.iter().map(|r| micros(r.p99)).collect::<Vec<_>>()))
        .collect();
    let cpu: Vec<f64> = reports
        .iter()
        .map(|runs| {
            median(
                &runs
                    .iter()
                    .map(|r| r.cpu_us_per_request)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let errors: Vec<u64> = reports
        .iter()
        .map(|runs| runs.iter().map(|r| r.socket_errors + r.non_2xx).sum())
        .collect();
    println!(
        "\nwrk -t{} -c{} -d{}s, medians of {} interleaved runs ({:.0} s in all)\n",
        options.threads,
        options.connections,
        options.duration,
        options.runs,
        started.elapsed().as_secs_f64()
    );
    let mut table = Table::new(&["server", "req/s", "p99 (us)", "CPU us/request", "errors"]);
    for (i, server) in servers.iter().enumerate() {
        table.row([
            server.name.to_owned(),
            format!("{:.0}", rps[i]),
            format!("{:.0}", p99[i]),
            format!("{:.2}", cpu[i]),
            errors[i].to_string(),
        ]);
    }
    for (i, server) in servers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.name != "tokio")
    {
        table.row([
            format!("{} / tokio", server.name),
            ratio(rps[i], rps[1]),
            ratio(p99[i], p99[1]),
            ratio(cpu[i], cpu[1]),
            String::new(),
        ]);
    }
    table.print();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wrk_latency_report() {
        let text = "\
Running 2s test @ http://127.0.0.1:34729/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   668.68us  646.01us   9.29ms   95.82%
    Req/Sec    66.16k     8.60k   74.07k    85.00%
  Latency Distribution
     50%  543.00us
     75%  602.00us
     90%  731.00us
     99%    4.32ms
  131840 requests in 2.00s, 11.19MB read
  Socket errors: connect 0, read 3, write 1, timeout 0
Requests/sec:  65825.31
Transfer/sec:      5.59MB
";
        let report = parse_report(text).expect("a report");
        assert_eq!(report.requests_per_sec, 65825.31);
        assert_eq!(report.p99, Duration::from_micros(4320));
        assert_eq!(report.requests, 131_840);
        assert_eq!(report.socket_errors, 4);
        assert_eq!(report.non_2xx, 0);
        assert_eq!(parse_duration("1.50s"), Some(Duration::from_millis(1500)));
        assert!(parse_report("nothing").is_none());
    }
}
