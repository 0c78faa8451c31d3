//! `timers_fire`: schedule then fire many timers (1,000,000 by default), edgeloop
//! beside tokio.
//!
//! Harness, identical for both runtimes: inside `block_on`, spawn one task per
//! timer, each doing `sleep_until(deadline).await` and then counting itself done;
//! the `block_on` future waits until the count reaches the total. Deadlines are
//! `start + U[0, 1 s)`, from a fixed-seed xorshift, so both runtimes get the same
//! deadlines in the same order. The count lives in a thread-local `Cell` (not an
//! `Rc<Cell>`): tokio's `spawn` needs `Send` futures, and the tasks must be spawned
//! the same plain way on both runtimes.
//!
//! Measured, per run:
//! - wall time from `start` (before the first spawn) to the moment the last timer
//!   fired; since that is dominated by the 1 s of waiting, also "overhead" =
//!   wall - 1 s (wall - window);
//! - the spawn loop alone (tasks created, not yet polled, so no timer registered);
//! - CPU time of the runtime thread over the same span (the work, without the
//!   waiting);
//! - peak resident memory (`VmHWM`) of the process, and its growth over the
//!   process's start.
//!
//! Each run is a child process of its own (this binary with `--child RUNTIME`), so
//! `VmHWM` is per runtime and per run. The parent interleaves the runs (edgeloop,
//! tokio, edgeloop, tokio, ...) and prints the median of each figure.
//!
//! With 1,000,000 timers in 1 s both runtimes turn out CPU-bound for the whole
//! window (CPU time close to wall time); `--window-ms` spreads the deadlines wider,
//! to see how much of the window the work fills.
//!
//! Usage: `timers_fire [--rounds 5] [--timers 1000000] [--window-ms 1000] [--seed N]`,
//! pinned:
//! `taskset -c 1 target/release/timers_fire`.
#![deny(unsafe_code, missing_docs)]

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use edgeloop_bench::child::{self, Record};
use edgeloop_bench::proc_self::{
    cpus_allowed, involuntary_switches, load_average, peak_rss_kib, thread_cpu_time,
};
use edgeloop_bench::{Args, Edgeloop, Runtime, Tokio, Which, XorShift};

const USAGE: &str = "usage: timers_fire [--rounds N] [--timers N] [--window-ms N] [--seed N] \
                     [--child edgeloop|tokio]";

/// A child that takes longer than this is killed.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

thread_local! {
    /// Timers fired so far.
    static FIRED: Cell<usize> = const { Cell::new(0) };
    /// How many timers the run schedules.
    static TOTAL: Cell<usize> = const { Cell::new(0) };
    /// When the last timer fired.
    static LAST_FIRED: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The `block_on` future's waker, woken by the last timer.
    static WAITER: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// Called by each task once its sleep completed.
fn fired() {
    let fired = FIRED.get() + 1;
    FIRED.set(fired);
    if fired == TOTAL.get() {
        LAST_FIRED.set(Some(Instant::now()));
        if let Some(waker) = WAITER.take() {
            waker.wake();
        }
    }
}

/// One measured run on `R`, in this process; prints the result line.
fn child_run<R: Runtime>(timers: usize, window: Duration, seed: u64) {
    assert!(timers > 0, "`--timers` must be positive");
    let hwm_start = peak_rss_kib();
    let switches_start = involuntary_switches();
    TOTAL.set(timers);
    let (wall, spawn, cpu) = R::block_on(async move {
        let cpu_start = thread_cpu_time();
        let start = Instant::now();
        let window = u64::try_from(window.as_nanos()).expect("the window fits in u64 ns");
        let mut rng = XorShift::new(seed);
        for _ in 0..timers {
            let deadline = start + Duration::from_nanos(rng.below(window));
            R::spawn_sleeper(deadline, fired);
        }
        let spawn = start.elapsed();
        poll_fn(|cx| {
            if FIRED.get() == timers {
                Poll::Ready(())
            } else {
                WAITER.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        let cpu = thread_cpu_time() - cpu_start;
        let last = LAST_FIRED
            .get()
            .expect("the last timer records when it fired before waking us");
        (last - start, spawn, cpu)
    });
    let hwm_end = peak_rss_kib();
    let preempted = involuntary_switches() - switches_start;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    child::report(&[
        ("preempted", preempted as f64),
        ("wall_ms", ms(wall)),
        ("spawn_ms", ms(spawn)),
        ("cpu_ms", ms(cpu)),
        ("hwm_start_kib", hwm_start as f64),
        ("hwm_end_kib", hwm_end as f64),
        ("fired", FIRED.get() as f64),
    ]);
}

/// A table row: name, unit, and how to get the figure from a child's record and the
/// window (in ms).
type Row = (&'static str, &'static str, fn(&Record, f64) -> f64);

/// The figures of the table.
const ROWS: [Row; 7] = [
    ("wall: start -> last timer fired", "ms", |r, _| {
        r.get("wall_ms")
    }),
    ("overhead: wall - window", "ms", |r, window_ms| {
        r.get("wall_ms") - window_ms
    }),
    (
        "spawn loop alone (no timer registered yet)",
        "ms",
        |r, _| r.get("spawn_ms"),
    ),
    ("CPU time of the runtime thread", "ms", |r, _| {
        r.get("cpu_ms")
    }),
    ("peak RSS (VmHWM)", "MiB", |r, _| {
        r.get("hwm_end_kib") / 1024.0
    }),
    ("VmHWM growth over process start", "MiB", |r, _| {
        (r.get("hwm_end_kib") - r.get("hwm_start_kib")) / 1024.0
    }),
    ("involuntary context switches", "", |r, _| {
        r.get("preempted")
    }),
];

fn main() {
    let args = Args::from_env(&["rounds", "timers", "window-ms", "seed", "child"], USAGE);
    let timers: usize = args.get("timers", 1_000_000);
    let window_ms: u64 = args.get("window-ms", 1000);
    let window = Duration::from_millis(window_ms);
    let seed: u64 = args.get("seed", 0x5EED_1234_ABCD_0001);
    if let Some(name) = args.text("child") {
        match Which::from_name(name) {
            Some(Which::Edgeloop) => child_run::<Edgeloop>(timers, window, seed),
            Some(Which::Tokio) => child_run::<Tokio>(timers, window, seed),
            None => panic!("`--child {name}`: expected `edgeloop` or `tokio`"),
        }
        return;
    }

    let rounds: usize = args.get("rounds", 5);
    assert!(rounds > 0, "`--rounds` must be positive");
    println!(
        "timers_fire: {timers} timers, deadlines uniform in [0, {window:?}) (xorshift seed \
         {seed:#x}), one spawned task per timer, {rounds} interleaved rounds, one child process \
         per run, CPUs allowed: {}, load average: {}",
        cpus_allowed(),
        load_average()
    );
    let mut records: Vec<Vec<Record>> = vec![Vec::new(); Which::BOTH.len()];
    for round in 1..=rounds {
        for (r, which) in Which::BOTH.into_iter().enumerate() {
            let child_args = [
                "--child".to_owned(),
                which.name().to_owned(),
                "--timers".to_owned(),
                timers.to_string(),
                "--window-ms".to_owned(),
                window_ms.to_string(),
                "--seed".to_owned(),
                seed.to_string(),
            ];
            let record = child::run(&child_args, CHILD_LIMIT)
                .unwrap_or_else(|e| panic!("round {round}, {}: {e}", which.name()));
            let fired = record.get("fired") as usize;
            assert_eq!(fired, timers, "{}: not every timer fired", which.name());
            println!(
                "  round {round} {:<8} wall {:8.1} ms  spawn {:6.1} ms  cpu {:7.1} ms  \
                 VmHWM {:6.1} MiB  fired {fired}  preempted {}",
                which.name(),
                record.get("wall_ms"),
                record.get("spawn_ms"),
                record.get("cpu_ms"),
                record.get("hwm_end_kib") / 1024.0,
                record.get("preempted"),
            );
            records[r].push(record);
        }
    }

    println!(
        "\neach cell is the median over {rounds} rounds; load average now: {}",
        load_average()
    );
    let window = window_ms as f64;
    let rows = ROWS.map(|(name, unit, get)| (name, unit, move |r: &Record| get(r, window)));
    let table = edgeloop_bench::table::medians_table(&records, rows);
    table.print();
}
