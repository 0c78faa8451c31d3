//! `sleep_overshoot`: how late `sleep(d).await` returns, edgeloop beside tokio.
//!
//! For each round, and each runtime in turn (edgeloop, tokio, edgeloop, tokio, ...),
//! a fresh runtime takes `--samples` samples of
//! `let t = Instant::now(); sleep(d).await; t.elapsed()` back to back, for
//! d = 200 µs and then, on another fresh runtime, d = 1 ms. Overshoot is the
//! elapsed time minus d. A few warm-up sleeps before the samples are not counted.
//! Each round yields a median, p90, p99 and max; the table shows the median of each
//! across the rounds, and the ratio edgeloop/tokio.
//!
//! A sleep that returns *before* d is counted apart ("early"): it should never
//! happen. "preempted" counts the involuntary context switches during the runs:
//! more than a handful means the CPU was shared and the tail figures are suspect.
//!
//! Usage: `sleep_overshoot [--rounds 5] [--samples 1000]`, pinned:
//! `taskset -c 1 target/release/sleep_overshoot`.
#![deny(unsafe_code, missing_docs)]

use std::time::{Duration, Instant};

use edgeloop_bench::stats::{median, percentile, ratio};
use edgeloop_bench::{Args, Edgeloop, Runtime, Table, Tokio, Which, proc_self};

const USAGE: &str = "usage: sleep_overshoot [--rounds N] [--samples N]";

/// Sleeps before the samples, not counted: the first ones pay for page faults and
/// cold caches, which is not what this measures.
const WARMUP: usize = 10;

/// The sleep lengths measured, one table section each.
const DURATIONS: [Duration; 2] = [Duration::from_micros(200), Duration::from_millis(1)];

/// The statistics of one run, in microseconds.
#[derive(Debug, Clone, Copy)]
struct Summary {
    median: f64,
    p90: f64,
    p99: f64,
    max: f64,
    /// Sleeps that returned before their duration (a bug if not zero).
    early: usize,
    /// Involuntary context switches during the run: CPU taken by someone else.
    preempted: u64,
}

/// A statistic's name and how to read it from a [`Summary`].
type Stat = (&'static str, fn(&Summary) -> f64);

/// The statistics in the table.
const STATS: [Stat; 4] = [
    ("median", |s| s.median),
    ("p90", |s| s.p90),
    ("p99", |s| s.p99),
    ("max", |s| s.max),
];

/// Takes `samples` overshoots of `R::sleep(duration)` on a fresh runtime.
fn measure<R: Runtime>(duration: Duration, samples: usize) -> Summary {
    let switches_start = proc_self::involuntary_switches();
    let (mut overshoots, early) = R::block_on(async move {
        for _ in 0..WARMUP {
            R::sleep(duration).await;
        }
        let mut overshoots = Vec::with_capacity(samples);
        let mut early = 0;
        for _ in 0..samples {
            let start = Instant::now();
            R::sleep(duration).await;
            let elapsed = start.elapsed();
            if elapsed < duration {
                early += 1;
            }
            overshoots.push(elapsed.saturating_sub(duration));
        }
        (overshoots, early)
    });
    let preempted = proc_self::involuntary_switches() - switches_start;
    overshoots.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Summary {
        median: us(percentile(&overshoots, 50.0)),
        p90: us(percentile(&overshoots, 90.0)),
        p99: us(percentile(&overshoots, 99.0)),
        max: us(percentile(&overshoots, 100.0)),
        early,
        preempted,
    }
}

fn measure_on(which: Which, duration: Duration, samples: usize) -> Summary {
    match which {
        Which::Edgeloop => measure::<Edgeloop>(duration, samples),
        Which::Tokio => measure::<Tokio>(duration, samples),
    }
}

fn main() {
    let args = Args::from_env(&["rounds", "samples"], USAGE);
    let rounds: usize = args.get("rounds", 5);
    let samples: usize = args.get("samples", 1000);
    assert!(
        rounds > 0 && samples > 0,
        "rounds and samples must be positive"
    );
    println!(
        "sleep_overshoot: {samples} samples per run (+{WARMUP} warm-up), {rounds} interleaved \
         rounds, CPUs allowed: {}, load average: {}",
        proc_self::cpus_allowed(),
        proc_self::load_average()
    );

    // results[duration][runtime] = one Summary per round.
    let mut results = vec![vec![Vec::new(); Which::BOTH.len()]; DURATIONS.len()];
    for round in 1..=rounds {
        for (r, which) in Which::BOTH.into_iter().enumerate() {
            for (d, duration) in DURATIONS.into_iter().enumerate() {
                let summary = measure_on(which, duration, samples);
                println!(
                    "  round {round} {:<8} sleep({duration:?}): median {:7.1} µs  p90 {:7.1} µs  \
                     p99 {:7.1} µs  max {:7.1} µs  early {}  preempted {}",
                    which.name(),
                    summary.median,
                    summary.p90,
                    summary.p99,
                    summary.max,
                    summary.early,
                    summary.preempted,
                );
                results[d][r].push(summary);
            }
        }
    }

    println!(
        "\novershoot = elapsed - requested; each cell is the median over {rounds} rounds; \
         load average now: {}",
        proc_self::load_average()
    );
    let mut table =
        Table::new(&["sleep", "stat", "edgeloop", "tokio", "edgeloop/tokio"]).left_columns(2);
    for (d, duration) in DURATIONS.into_iter().enumerate() {
        for (name, stat) in STATS {
            let per_runtime: Vec<f64> = results[d]
                .iter()
                .map(|runs| median(&runs.iter().map(stat).collect::<Vec<_>>()))
                .collect();
            table.row([
                format!("{duration:?}"),
                name.to_owned(),
                format!("{:.1} µs", per_runtime[0]),
                format!("{:.1} µs", per_runtime[1]),
                ratio(per_runtime[0], per_runtime[1]),
            ]);
        }
        let early: Vec<usize> = results[d]
            .iter()
            .map(|runs| runs.iter().map(|s| s.early).sum())
            .collect();
        table.row([
            format!("{duration:?}"),
            "early (all rounds)".to_owned(),
            early[0].to_string(),
            early[1].to_string(),
            String::new(),
        ]);
        let preempted: Vec<u64> = results[d]
            .iter()
            .map(|runs| runs.iter().map(|s| s.preempted).sum())
            .collect();
        table.row([
            format!("{duration:?}"),
            "preempted (all rounds)".to_owned(),
            preempted[0].to_string(),
            preempted[1].to_string(),
            String::new(),
        ]);
    }
    table.print();
}
