//! `timers_cancel`: schedule then cancel many timers (1,000,000 by default), edgeloop
//! beside tokio.
//!
//! Harness, identical for both runtimes: inside `block_on`, one `poll_fn` creates
//! each `Sleep` (deadline `start + 1 s + U[0, 1 s)` from a fixed-seed xorshift, the
//! same for both runtimes; the 1 s lead keeps every deadline in the future while
//! the loop runs), pins it in a `Box`, polls it once with the `block_on`
//! future's context (the first poll registers the timer with the runtime; the
//! harness checks it returned `Pending`), and then:
//! - `batch` mode: keeps it, so all of them are registered at once, then drops them
//!   all (the wheel holds every timer at its peak);
//! - `one-by-one` mode: drops it at once (never more than one timer registered).
//!
//! Afterwards the `block_on` future awaits one more sleep, to a deadline past every
//! cancelled one, and counts how often it is polled: a cancelled timer left behind
//! would fire into the same waker and show up as extra polls (2 means none did:
//! the first poll, and the one after it fired). Resident memory (`VmRSS`) is read
//! before scheduling, with everything scheduled, after cancelling and after that
//! final sleep.
//!
//! glibc's malloc keeps freed small chunks (the harness's own `Box<Sleep>`s) for
//! reuse instead of returning them to the kernel, so `VmRSS` after cancelling
//! includes them. The table estimates that cache (boxes kept at once x chunk size,
//! a chunk being the `Sleep` plus glibc's 8-byte header, rounded up to 16 bytes)
//! and shows what is left once it is subtracted: memory the runtime itself still
//! holds.
//!
//! Each run is a child process of its own (this binary with `--child RUNTIME`), so
//! that peak memory (`VmHWM`) is per runtime and per run. The parent interleaves the
//! runs (edgeloop, tokio, edgeloop, tokio, ...) and prints the median of each figure.
//!
//! Usage: `timers_cancel [--rounds 5] [--timers 1000000] [--seed N]`, pinned:
//! `taskset -c 1 target/release/timers_cancel`.
#![deny(unsafe_code, missing_docs)]

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::{Duration, Instant};

use edgeloop_bench::child::{self, Record};
use edgeloop_bench::proc_self::{
    cpus_allowed, involuntary_switches, load_average, peak_rss_kib, rss_kib, thread_cpu_time,
};
use edgeloop_bench::{Args, Edgeloop, Runtime, Tokio, Which, XorShift};

const USAGE: &str = "usage: timers_cancel [--rounds N] [--timers N] [--seed N] \
                     [--child edgeloop|tokio --mode batch|one-by-one]";

/// Deadlines fall uniformly in `[start + LEAD, start + LEAD + WINDOW)`.
const WINDOW: Duration = Duration::from_secs(1);

/// How far after `start` the deadlines begin: longer than scheduling them takes, so
/// that no deadline has passed at its first poll (which would register nothing).
const LEAD: Duration = Duration::from_secs(1);

/// The final sleep ends this long after the window, past every cancelled deadline.
const AFTER_WINDOW: Duration = Duration::from_millis(50);

/// A child that takes longer than this is killed.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// The two ways of cancelling, as named on the command line.
const MODES: [&str; 2] = ["batch", "one-by-one"];

/// One measured run on `R`, in this process; prints the result line.
fn child_run<R: Runtime>(timers: usize, seed: u64, batch: bool) {
    let hwm_start = peak_rss_kib();
    let switches_start = involuntary_switches();
    let values = R::block_on(async move {
        let rss_before = rss_kib();
        let cpu_start = thread_cpu_time();
        let start = Instant::now();
        let window = u64::try_from(WINDOW.as_nanos()).expect("the window fits in u64 ns");
        let mut rng = XorShift::new(seed);
        let mut kept: Vec<Pin<Box<R::Sleep>>> = Vec::with_capacity(if batch { timers } else { 0 });
        let registered = poll_fn(|cx| {
            let mut pending = 0_usize;
            for _ in 0..timers {
                let deadline = start + LEAD + Duration::from_nanos(rng.below(window));
                let mut sleep = Box::pin(R::sleep_until(deadline));
                if sleep.as_mut().poll(cx).is_pending() {
                    pending += 1;
                }
                if batch {
                    kept.push(sleep);
                }
                // In one-by-one mode, `sleep` is dropped here: cancelled at once.
            }
            Poll::Ready(pending)
        })
        .await;
        let scheduled = start.elapsed();
        let rss_scheduled = rss_kib();
        let cancel_start = Instant::now();
        drop(kept);
        let cancelled = cancel_start.elapsed();
        let cpu = thread_cpu_time() - cpu_start;
        let rss_cancelled = rss_kib();

        let final_deadline =
            (start + LEAD + WINDOW + AFTER_WINDOW).max(Instant::now() + AFTER_WINDOW);
        let mut last = pin!(R::sleep_until(final_deadline));
        let mut polls = 0_u32;
        let cpu_final_start = thread_cpu_time();
        poll_fn(|cx| {
            polls += 1;
            last.as_mut().poll(cx)
        })
        .await;
        let cpu_final = thread_cpu_time() - cpu_final_start;
        let rss_final = rss_kib();

        let boxes_at_once = if batch { timers } else { 1 };
        let chunk = (std::mem::size_of::<R::Sleep>() + 8).div_ceil(16).max(2) * 16;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        [
            ("registered", registered as f64),
            ("schedule_ms", ms(scheduled)),
            ("cancel_ms", ms(cancelled)),
            ("total_ms", ms(scheduled + cancelled)),
            ("cpu_ms", ms(cpu)),
            ("rss_before_kib", rss_before as f64),
            ("rss_scheduled_kib", rss_scheduled as f64),
            ("rss_cancelled_kib", rss_cancelled as f64),
            ("rss_final_kib", rss_final as f64),
            ("final_polls", f64::from(polls)),
            ("final_cpu_us", cpu_final.as_secs_f64() * 1e6),
            ("sleep_bytes", std::mem::size_of::<R::Sleep>() as f64),
            ("box_cache_kib", (boxes_at_once * chunk) as f64 / 1024.0),
        ]
    });
    let hwm_end = peak_rss_kib();
    let preempted = involuntary_switches() - switches_start;
    let mut values = values.to_vec();
    values.push(("preempted", preempted as f64));
    values.push(("hwm_start_kib", hwm_start as f64));
    values.push(("hwm_end_kib", hwm_end as f64));
    child::report(&values);
}

/// A table row: name, unit, and how to get the figure from a child's record.
type Row = (&'static str, &'static str, fn(&Record) -> f64);

/// The figures of the table.
const ROWS: [Row; 16] = [
    ("schedule: create + first poll", "ms", |r| {
        r.get("schedule_ms")
    }),
    ("cancel: drop (batch mode only)", "ms", |r| {
        r.get("cancel_ms")
    }),
    ("schedule + cancel", "ms", |r| r.get("total_ms")),
    ("CPU time of the runtime thread", "ms", |r| r.get("cpu_ms")),
    ("peak RSS (VmHWM)", "MiB", |r| r.get("hwm_end_kib") / 1024.0),
    ("VmHWM growth over process start", "MiB", |r| {
        (r.get("hwm_end_kib") - r.get("hwm_start_kib")) / 1024.0
    }),
    ("VmRSS before scheduling", "MiB", |r| {
        r.get("rss_before_kib") / 1024.0
    }),
    ("VmRSS all scheduled", "MiB", |r| {
        r.get("rss_scheduled_kib") / 1024.0
    }),
    ("VmRSS all cancelled", "MiB", |r| {
        r.get("rss_cancelled_kib") / 1024.0
    }),
    ("VmRSS after the final sleep", "MiB", |r| {
        r.get("rss_final_kib") / 1024.0
    }),
    ("size of the runtime's Sleep", "bytes", |r| {
        r.get("sleep_bytes")
    }),
    ("freed Box<Sleep>s cached by malloc (est.)", "MiB", |r| {
        r.get("box_cache_kib") / 1024.0
    }),
    ("VmRSS cancelled - before - that cache", "MiB", |r| {
        (r.get("rss_cancelled_kib") - r.get("rss_before_kib") - r.get("box_cache_kib")) / 1024.0
    }),
    ("final sleep: polls (2 = nothing left)", "", |r| {
        r.get("final_polls")
    }),
    ("final sleep: CPU time", "µs", |r| r.get("final_cpu_us")),
    ("involuntary context switches", "", |r| r.get("preempted")),
];

fn main() {
    let args = Args::from_env(&["rounds", "timers", "seed", "child", "mode"], USAGE);
    let timers: usize = args.get("timers", 1_000_000);
    let seed: u64 = args.get("seed", 0x5EED_1234_ABCD_0001);
    if let Some(name) = args.text("child") {
        let batch = match args.text("mode") {
            Some("batch") => true,
            Some("one-by-one") => false,
            other => panic!("`--mode {other:?}`: expected `batch` or `one-by-one`"),
        };
        match Which::from_name(name) {
            Some(Which::Edgeloop) => child_run::<Edgeloop>(timers, seed, batch),
            Some(Which::Tokio) => child_run::<Tokio>(timers, seed, batch),
            None => panic!("`--child {name}`: expected `edgeloop` or `tokio`"),
        }
        return;
    }

    let rounds: usize = args.get("rounds", 5);
    assert!(rounds > 0, "`--rounds` must be positive");
    println!(
        "timers_cancel: {timers} timers, deadlines uniform in [{LEAD:?}, {:?}) (xorshift \
         seed {seed:#x}), each polled once then dropped, {rounds} interleaved rounds per mode, one \
         child process per run, CPUs allowed: {}",
        LEAD + WINDOW,
        cpus_allowed()
    );
    println!("load average: {}", load_average());
    for mode in MODES {
        println!("\nmode {mode}:");
        let mut records: Vec<Vec<Record>> = vec![Vec::new(); Which::BOTH.len()];
        for round in 1..=rounds {
            for (r, which) in Which::BOTH.into_iter().enumerate() {
                let child_args = [
                    "--child",
                    which.name(),
                    "--mode",
                    mode,
                    "--timers",
                    &timers.to_string(),
                    "--seed",
                    &seed.to_string(),
                ]
                .map(str::to_owned);
                let record = child::run(&child_args, CHILD_LIMIT)
                    .unwrap_or_else(|e| panic!("{mode}, round {round}, {}: {e}", which.name()));
                let registered = record.get("registered") as usize;
                assert_eq!(
                    registered,
                    timers,
                    "{}: a first poll did not return `Pending`",
                    which.name()
                );
                println!(
                    "  round {round} {:<8} schedule {:6.1} ms  cancel {:6.1} ms  total {:6.1} ms  \
                     VmHWM {:6.1} MiB  final polls {}  preempted {}",
                    which.name(),
                    record.get("schedule_ms"),
                    record.get("cancel_ms"),
                    record.get("total_ms"),
                    record.get("hwm_end_kib") / 1024.0,
                    record.get("final_polls"),
                    record.get("preempted"),
                );
                records[r].push(record);
            }
        }
        println!(
            "each cell is the median over {rounds} rounds; load average now: {}",
            load_average()
        );
        let table = edgeloop_bench::table::medians_table(&records, ROWS);
        table.print();
    }
}
