//! `micro`: micro benchmarks of the executor and the reactor, edgeloop beside
//! tokio's `current_thread` runtime.
//!
//! - `spawn`: spawn 1,000,000 tiny tasks (each returns `3i + 1`), then await every
//!   handle in spawn order and check the sum.
//! - `wake`: 1,000,000 round trips between two tasks: A wakes B and waits until B
//!   wakes it back. Each side is a flag and a stored `Waker` in a thread-local
//!   (`Cell` and `RefCell`, no atomics, no channel): waiting stores a clone of the
//!   task's waker, waking takes it out and calls `wake()` on it.
//! - `socket`: 100,000 round trips of 1 byte between two tasks over a Unix
//!   socketpair (`UnixStream::pair` of each runtime): one side writes a byte then
//!   reads the reply, the other reads a byte then writes it back, so each round
//!   trip makes both sockets go from readable to drained and back (readiness
//!   churn).
//!
//! The 1,000,000 cross-thread wakes are measured by `cross_thread`, not here.
//!
//! Harness, the same for both runtimes: every run is a child process of its own
//! (this binary with `--child RUNTIME`), so the peak-memory counter (`VmHWM`) and
//! the allocator start fresh. The child builds one runtime (tokio with
//! `enable_all`, as edgeloop always has its reactor and timers), runs the benchmark
//! twice in it, each time in a `block_on` of its own, and reports both: the first
//! pass touches fresh memory (cold), the second reuses what the first freed
//! (warm). Wall and CPU time cover the `block_on` call only. The parent
//! interleaves the runs (round 1: `spawn` edgeloop, `spawn` tokio, `wake` edgeloop,
//! ...; then round 2) and prints the median of each figure over the rounds.
//!
//! The task bodies are written once: `spawn` and `wake` are generic over [`Micro`];
//! `socket` is one macro expanded for each runtime (edgeloop's sockets are not
//! `Send`, so no generic body can be handed to both `spawn`s). Both runtimes keep
//! their default cooperative budget.
//!
//! Usage: `micro [--rounds 5] [--bench spawn|wake|socket] [--n N]`, pinned:
//! `taskset -c 1 target/release/micro`. For profilers (`perf`, `valgrind`),
//! `--only edgeloop|tokio` runs the passes in this process and prints them (and
//! edgeloop's metrics), with no child and no table.
#![deny(unsafe_code, missing_docs)]

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use edgeloop_bench::child::{self, Record};
use edgeloop_bench::proc_self::{
    cpus_allowed, involuntary_switches, load_average, peak_rss_kib, thread_cpu_time,
};
use edgeloop_bench::stats::{median, one_decimal, ratio};
use edgeloop_bench::{Args, Table, Which};
// Used by the tokio expansion of `socket_ping_pong!` (edgeloop's streams have
// inherent `read` and `write`).
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const USAGE: &str = "usage: micro [--rounds N] [--bench spawn|wake|socket] [--n N] \
                     [--only edgeloop|tokio]";

/// The options this binary accepts (`--child` is the parent-to-child protocol).
const OPTIONS: [&str; 5] = ["rounds", "bench", "n", "only", "child"];

/// A child that takes longer than this is killed.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// One of the micro benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bench {
    /// Spawn N tasks, then await them all.
    Spawn,
    /// N wake round trips between two tasks.
    Wake,
    /// N one-byte round trips over a socketpair.
    Socket,
}

impl Bench {
    /// All of them, in the order a round runs them.
    const ALL: [Bench; 3] = [Bench::Spawn, Bench::Wake, Bench::Socket];

    /// Name on the command line (`--bench`).
    fn name(self) -> &'static str {
        match self {
            Bench::Spawn => "spawn",
            Bench::Wake => "wake",
            Bench::Socket => "socket",
        }
    }

    /// The benchmark called `name`, if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Operations per pass unless `--n` says otherwise.
    fn default_n(self) -> u64 {
        match self {
            Bench::Spawn | Bench::Wake => 1_000_000,
            Bench::Socket => 100_000,
        }
    }

    /// What one operation is, for the table.
    fn what(self) -> &'static str {
        match self {
            Bench::Spawn => "tasks spawned + joined",
            Bench::Wake => "wake round trips",
            Bench::Socket => "socketpair 1-byte round trips",
        }
    }

    /// The time ratio edgeloop/tokio that edgeloop aims to stay under.
    fn target(self) -> f64 {
        match self {
            Bench::Spawn => 0.5,
            Bench::Wake | Bench::Socket => 0.8,
        }
    }
}

/// A runtime as these benchmarks drive it: one instance per child process.
trait Micro: Sized {
    /// What awaiting a failed task gives.
    type JoinError: std::fmt::Debug;

    /// The runtime's `JoinHandle<T>`.
    type Join<T: Send + 'static>: Future<Output = Result<T, Self::JoinError>>;

    /// A fresh runtime with its reactor and timers.
    fn new() -> Self;

    /// Runs `future` to completion on this runtime.
    fn block_on<F: Future>(&self, future: F) -> F::Output;

    /// The runtime's `spawn`, from inside `block_on`. `Send` because tokio's needs
    /// it; edgeloop's does not, and takes the same futures.
    fn spawn<F>(future: F) -> Self::Join<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;

    /// The `socket` benchmark: `socket_ping_pong!` expanded with this runtime's
    /// `UnixStream` and `spawn`; returns the round trips the echoing side counted.
    fn socket_ping_pong(round_trips: u64) -> impl Future<Output = u64>;

    /// The runtime's counters on one line, if it offers them.
    fn metrics_line(&self) -> Option<String>;
}

/// The `socket` benchmark's body, for the runtime whose stream type is `$stream`
/// and whose spawn function is `$spawn`; the same text for both runtimes.
macro_rules! socket_ping_pong {
    ($stream:ty, $spawn:path, $round_trips:expr) => {{
        let round_trips: u64 = $round_trips;
        async move {
            let (mut near, mut far) = <$stream>::pair().expect("socketpair");
            // Reads a byte, writes it back, until end of file; counts round trips.
            let echo = $spawn(async move {
                let mut byte = [0u8; 1];
                let mut echoed = 0u64;
                loop {
                    if far.read(&mut byte).await.expect("echo: read") == 0 {
                        return echoed;
                    }
                    assert_eq!(far.write(&byte).await.expect("echo: write"), 1);
                    echoed += 1;
                }
            });
            // Writes a byte, reads the reply; closes its end when done.
            let ping = $spawn(async move {
                let mut byte = [0u8; 1];
                for i in 0..round_trips {
                    let sent = i as u8;
                    assert_eq!(near.write(&[sent]).await.expect("ping: write"), 1);
                    assert_eq!(near.read(&mut byte).await.expect("ping: read"), 1);
                    assert_eq!(byte[0], sent, "the echo sent back another byte");
                }
            });
            ping.await.expect("ping task");
            echo.await.expect("echo task")
        }
    }};
}

/// edgeloop's [`Runtime`](edgeloop::Runtime) with the default settings.
#[derive(Debug)]
struct Edgeloop(edgeloop::Runtime);

impl Micro for Edgeloop {
    type JoinError = edgeloop::JoinError;
    type Join<T: Send + 'static> = edgeloop::JoinHandle<T>;

    fn new() -> Self {
        Edgeloop(edgeloop::Runtime::new().expect("cannot build an edgeloop runtime"))
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }

    fn spawn<F>(future: F) -> Self::Join<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        edgeloop::spawn(future)
    }

    fn socket_ping_pong(round_trips: u64) -> impl Future<Output = u64> {
        socket_ping_pong!(edgeloop::net::UnixStream, edgeloop::spawn, round_trips)
    }

    fn metrics_line(&self) -> Option<String> {
        Some(self.0.metrics().to_string())
    }
}

/// tokio's `current_thread` runtime with `enable_all` (I/O and time drivers).
#[derive(Debug)]
struct Tokio(tokio::runtime::Runtime);

impl Micro for Tokio {
    type JoinError = tokio::task::JoinError;
    type Join<T: Send + 'static> = tokio::task::JoinHandle<T>;

    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot build tokio's current_thread runtime");
        Tokio(runtime)
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }

    fn spawn<F>(future: F) -> Self::Join<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::spawn(future)
    }

    fn socket_ping_pong(round_trips: u64) -> impl Future<Output = u64> {
        socket_ping_pong!(tokio::net::UnixStream, tokio::spawn, round_trips)
    }

    fn metrics_line(&self) -> Option<String> {
        None
    }
}

/// `spawn`: spawns `n` tasks returning `3i + 1`, then awaits each handle in spawn
/// order; returns the sum.
async fn spawn_join<R: Micro>(n: u64) -> u64 {
    let mut handles = Vec::with_capacity(usize::try_from(n).expect("`--n` fits in usize"));
    for i in 0..n {
        handles.push(R::spawn(async move { 3 * i + 1 }));
    }
    let mut sum = 0u64;
    for handle in handles {
        sum += handle.await.expect("a tiny task failed");
    }
    sum
}

/// One side of the `wake` ping-pong: whether it was woken, and the waker of the
/// task waiting for that.
#[derive(Debug)]
struct Side {
    /// Set by the other side's [`ping`], cleared by this side's [`pinged`].
    pinged: Cell<bool>,
    /// The waiting task's waker, taken by the next [`ping`].
    waker: RefCell<Option<Waker>>,
}

impl Side {
    const fn new() -> Self {
        Side {
            pinged: Cell::new(false),
            waker: RefCell::new(None),
        }
    }
}

/// Side A (the task that starts each round trip) and side B.
const A: usize = 0;
/// See [`A`].
const B: usize = 1;

thread_local! {
    /// Both sides of the `wake` ping-pong. Thread-local rather than `Rc` so the
    /// tasks are `Send` (tokio's `spawn` wants that) while the state itself is
    /// plain cells, as on a single-threaded runtime it may be.
    static SIDES: [Side; 2] = const { [Side::new(), Side::new()] };
}

/// Marks `side` pinged and wakes its task if it is waiting.
fn ping(side: usize) {
    let waker = SIDES.with(|sides| {
        sides[side].pinged.set(true);
        sides[side].waker.take()
    });
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Completes once `side` has been pinged (and clears the flag); until then keeps a
/// clone of the task's waker for [`ping`].
fn pinged(side: usize) -> impl Future<Output = ()> + Send {
    poll_fn(move |cx| {
        let replaced = SIDES.with(|sides| {
            let side = &sides[side];
            if side.pinged.replace(false) {
                return None;
            }
            Some(side.waker.replace(Some(cx.waker().clone())))
        });
        match replaced {
            None => Poll::Ready(()),
            // Dropped outside the thread-local borrow, though it is `None` here.
            Some(old) => {
                drop(old);
                Poll::Pending
            }
        }
    })
}

/// `wake`: `n` round trips between two spawned tasks; returns the round trips B
/// saw.
async fn wake_ping_pong<R: Micro>(n: u64) -> u64 {
    SIDES.with(|sides| {
        for side in sides {
            side.pinged.set(false);
            side.waker.take();
        }
    });
    // B first, so it is waiting when A first pings it.
    let b = R::spawn(async move {
        let mut seen = 0u64;
        for _ in 0..n {
            pinged(B).await;
            seen += 1;
            ping(A);
        }
        seen
    });
    let a = R::spawn(async move {
        for _ in 0..n {
            ping(B);
            pinged(A).await;
        }
    });
    a.await.expect("task A");
    b.await.expect("task B")
}

/// Wall and CPU time of one pass.
#[derive(Debug, Clone, Copy)]
struct Pass {
    /// Wall time of the `block_on` call.
    wall: Duration,
    /// CPU time of this thread over the same call.
    cpu: Duration,
    /// Minor page faults of the process over the same call: fresh memory touched.
    faults: u64,
}

/// Minor page faults of this process so far: field 10 of `/proc/self/stat`, counted
/// after the command name, which is in parentheses and may hold spaces.
///
/// # Panics
///
/// If the file cannot be read or parsed (not Linux, or no procfs).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .unwrap_or_else(|e| panic!("cannot read /proc/self/stat: {e}"));
    stat.rsplit_once(')')
        .and_then(|(_, fields)| fields.split_whitespace().nth(7)?.parse().ok())
        .unwrap_or_else(|| panic!("unexpected /proc/self/stat: {stat:?}"))
}

/// Runs `bench` once on `rt` with `n` operations, checks its result, and times it.
fn pass<R: Micro>(rt: &R, bench: Bench, n: u64) -> Pass {
    let faults_start = minor_faults();
    let cpu_start = thread_cpu_time();
    let start = Instant::now();
    match bench {
        Bench::Spawn => {
            let sum = rt.block_on(spawn_join::<R>(n));
            // The sum of 3i + 1 over 0..n.
            assert_eq!(sum, 3 * (n * n.saturating_sub(1) / 2) + n, "wrong task sum");
        }
        Bench::Wake => assert_eq!(rt.block_on(wake_ping_pong::<R>(n)), n, "lost round trips"),
        Bench::Socket => assert_eq!(rt.block_on(R::socket_ping_pong(n)), n, "lost bytes"),
    }
    let wall = start.elapsed();
    let cpu = thread_cpu_time() - cpu_start;
    Pass {
        wall,
        cpu,
        faults: minor_faults() - faults_start,
    }
}

/// The first pass on a fresh runtime. A function of its own (never inlined) so a
/// profiler can tell the passes apart: `valgrind --tool=callgrind
/// --toggle-collect='*warm_pass*'` counts only the second.
///
/// The two bodies must differ (here by the `black_box`ed constant): rustc merges
/// identical functions, and one of the two names would then be gone.
#[inline(never)]
fn cold_pass<R: Micro>(rt: &R, bench: Bench, n: u64) -> Pass {
    std::hint::black_box(1u8);
    pass(rt, bench, n)
}

/// The second pass, on the runtime (and allocator) the first one warmed up.
#[inline(never)]
fn warm_pass<R: Micro>(rt: &R, bench: Bench, n: u64) -> Pass {
    std::hint::black_box(2u8);
    pass(rt, bench, n)
}

/// What one process measures of one benchmark on `R`.
#[derive(Debug, Clone, Copy)]
struct Measured {
    cold: Pass,
    warm: Pass,
    /// `VmHWM` after both passes, KiB.
    peak_kib: u64,
    /// Involuntary context switches during both passes.
    preempted: u64,
}

/// Builds a runtime `R` and runs both passes of `bench` in it.
fn measure<R: Micro>(bench: Bench, n: u64) -> (Measured, Option<String>) {
    let rt = R::new();
    let switches = involuntary_switches();
    let cold = cold_pass(&rt, bench, n);
    let warm = warm_pass(&rt, bench, n);
    let measured = Measured {
        cold,
        warm,
        peak_kib: peak_rss_kib(),
        preempted: involuntary_switches() - switches,
    };
    (measured, rt.metrics_line())
}

/// [`measure`] on the runtime `which`.
fn measure_on(which: Which, bench: Bench, n: u64) -> (Measured, Option<String>) {
    match which {
        Which::Edgeloop => measure::<Edgeloop>(bench, n),
        Which::Tokio => measure::<Tokio>(bench, n),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A table row: figure, unit, whether the benchmark's target ratio applies to it,
/// and how to get it from a child's record.
///
/// The target is judged on CPU time: every benchmark keeps its one thread busy
/// (it never sleeps), so CPU time is the work done, while wall time also counts
/// the time the pinned CPU was taken away by other processes.
type Row = (&'static str, &'static str, bool, fn(&Record) -> f64);

/// The figures printed for each benchmark.
const ROWS: [Row; 9] = [
    ("wall, first pass (cold)", "ms", false, |r| r.get("cold_ms")),
    ("CPU, first pass (cold)", "ms", true, |r| {
        r.get("cold_cpu_ms")
    }),
    ("wall, second pass (warm)", "ms", false, |r| {
        r.get("warm_ms")
    }),
    ("CPU, second pass (warm)", "ms", true, |r| {
        r.get("warm_cpu_ms")
    }),
    ("CPU per operation (warm)", "ns", false, |r| {
        r.get("warm_cpu_ms") * 1e6 / r.get("n")
    }),
    ("minor page faults, cold", "", false, |r| {
        r.get("cold_faults")
    }),
    ("minor page faults, warm", "", false, |r| {
        r.get("warm_faults")
    }),
    ("peak RSS (VmHWM)", "MiB", false, |r| {
        r.get("peak_kib") / 1024.0
    }),
    ("involuntary context switches", "", false, |r| {
        r.get("preempted")
    }),
];

/// The child: measures `bench` on `which` and prints the result line.
fn child_main(which: Which, bench: Bench, n: u64) {
    let (m, _) = measure_on(which, bench, n);
    child::report(&[
        ("n", n as f64),
        ("cold_ms", ms(m.cold.wall)),
        ("cold_cpu_ms", ms(m.cold.cpu)),
        ("cold_faults", m.cold.faults as f64),
        ("warm_ms", ms(m.warm.wall)),
        ("warm_cpu_ms", ms(m.warm.cpu)),
        ("warm_faults", m.warm.faults as f64),
        ("peak_kib", m.peak_kib as f64),
        ("preempted", m.preempted as f64),
    ]);
}

/// `--only`: every selected benchmark on one runtime, in this process.
fn only_main(which: Which, benches: &[Bench], n: Option<u64>) {
    for &bench in benches {
        let n = n.unwrap_or(bench.default_n());
        let (m, metrics) = measure_on(which, bench, n);
        println!(
            "{} {} n={n}: cold {:.1} ms (cpu {:.1}, {} faults), warm {:.1} ms (cpu {:.1}, \
             {} faults, {:.1} ns/op of CPU), VmHWM {:.1} MiB, preempted {}",
            which.name(),
            bench.name(),
            ms(m.cold.wall),
            ms(m.cold.cpu),
            m.cold.faults,
            ms(m.warm.wall),
            ms(m.warm.cpu),
            m.warm.faults,
            ms(m.warm.cpu) * 1e6 / n as f64,
            m.peak_kib as f64 / 1024.0,
            m.preempted,
        );
        if let Some(line) = metrics {
            println!("  metrics after both passes: {line}");
        }
    }
}

fn main() {
    let args = Args::from_env(&OPTIONS, USAGE);
    let n: Option<u64> = args.text("n").map(|_| args.get("n", 0));
    let benches: Vec<Bench> = match args.text("bench") {
        None => Bench::ALL.to_vec(),
        Some(name) => vec![Bench::from_name(name).unwrap_or_else(|| {
            eprintln!("error: `--bench {name}`: expected spawn, wake or socket\n{USAGE}");
            std::process::exit(2)
        })],
    };
    let runtime = |option: &str| {
        args.text(option).map(|name| {
            Which::from_name(name).unwrap_or_else(|| {
                eprintln!("error: `--{option} {name}`: expected edgeloop or tokio\n{USAGE}");
                std::process::exit(2)
            })
        })
    };
    if let Some(which) = runtime("child") {
        let [bench] = benches[..] else {
            panic!("a child runs exactly one `--bench`");
        };
        return child_main(which, bench, n.unwrap_or(bench.default_n()));
    }
    if let Some(which) = runtime("only") {
        return only_main(which, &benches, n);
    }

    let rounds: usize = args.get("rounds", 5);
    assert!(rounds > 0, "`--rounds` must be positive");
    println!(
        "micro: {rounds} interleaved rounds, one child process per run (two passes each), \
         CPUs allowed: {}, load average: {}",
        cpus_allowed(),
        load_average()
    );
    // records[bench][runtime]: one record per round.
    let mut records: Vec<Vec<Vec<Record>>> = vec![vec![Vec::new(); 2]; benches.len()];
    for round in 1..=rounds {
        for (b, &bench) in benches.iter().enumerate() {
            let n = n.unwrap_or(bench.default_n());
            for (r, which) in Which::BOTH.into_iter().enumerate() {
                let child_args = [
                    "--child".to_owned(),
                    which.name().to_owned(),
                    "--bench".to_owned(),
                    bench.name().to_owned(),
                    "--n".to_owned(),
                    n.to_string(),
                ];
                let record = child::run(&child_args, CHILD_LIMIT).unwrap_or_else(|e| {
                    panic!("round {round}, {} {}: {e}", bench.name(), which.name())
                });
                println!(
                    "  round {round} {:<6} {:<8} cold {:7.1} ms (cpu {:7.1})  \
                     warm {:7.1} ms (cpu {:7.1})  VmHWM {:6.1} MiB  preempted {}",
                    bench.name(),
                    which.name(),
                    record.get("cold_ms"),
                    record.get("cold_cpu_ms"),
                    record.get("warm_ms"),
                    record.get("warm_cpu_ms"),
                    record.get("peak_kib") / 1024.0,
                    record.get("preempted"),
                );
                records[b][r].push(record);
            }
        }
    }

    println!(
        "\neach cell is the median over {rounds} rounds; load average now: {}",
        load_average()
    );
    let mut table = Table::new(&[
        "benchmark",
        "figure",
        "unit",
        "edgeloop",
        "tokio",
        "edgeloop/tokio",
        "target",
    ])
    .left_columns(3);
    for (b, &bench) in benches.iter().enumerate() {
        let n = n.unwrap_or(bench.default_n());
        let label = format!("{} ({n} {})", bench.name(), bench.what());
        for (row, (figure, unit, timed, get)) in ROWS.into_iter().enumerate() {
            let [e, t] = [0, 1].map(|r| median(&records[b][r].iter().map(get).collect::<Vec<_>>()));
            let target = if timed {
                let verdict = if e <= bench.target() * t {
                    "met"
                } else {
                    "missed"
                };
                format!("<= {:.2}x {verdict}", bench.target())
            } else {
                String::new()
            };
            table.row([
                if row == 0 {
                    label.clone()
                } else {
                    String::new()
                },
                figure.to_owned(),
                unit.to_owned(),
                one_decimal(e),
                one_decimal(t),
                ratio(e, t),
                target,
            ]);
        }
    }
    table.print();
}
