//! `cross_thread`: the ways into a runtime from other threads, edgeloop beside
//! tokio's `current_thread` runtime.
//!
//! - `spawn_blocking` round trip: one task awaits `spawn_blocking(|| i)` 20,000 times
//!   in a row (a pool thread, a result, a cross-thread wake), per-call latency.
//! - `Handle::spawn` from another thread: a plain thread spawns 100,000 small tasks
//!   through the runtime's handle while the runtime counts them; time until all ran.
//! - Cross-thread wakes: a plain thread wakes one task 1,000,000 times, each wake
//!   after the task has seen the previous one (a ping-pong over an atomic counter).
//!
//! Rounds interleave the runtimes (edgeloop, tokio, edgeloop, ...); the table shows
//! medians over rounds and the ratio edgeloop/tokio. Nothing here is asserted.
//!
//! Usage: `cross_thread [--rounds 5]`, run with both cores available (the other
//! thread needs the second one): `taskset -c 0,1 target/release/cross_thread`.
#![deny(unsafe_code, missing_docs)]

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use edgeloop_bench::stats::{median, percentile, ratio};
use edgeloop_bench::{Args, Table, proc_self};

const USAGE: &str = "usage: cross_thread [--rounds N] [--only edgeloop|tokio]";

const BLOCKING_CALLS: u64 = 20_000;
const REMOTE_SPAWNS: u64 = 100_000;
const WAKES: u64 = 1_000_000;

/// One round's figures for one runtime.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// spawn_blocking round trip, median and p99, µs.
    blocking_p50: f64,
    blocking_p99: f64,
    /// 100,000 remote spawns, ms until the last ran.
    remote_ms: f64,
    /// 1,000,000 ping-pong wakes, ms.
    wakes_ms: f64,
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Latencies of `BLOCKING_CALLS` sequential awaits of `call(i)`, sorted.
async fn blocking_latencies<F, Fut>(mut call: F) -> Vec<Duration>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let mut samples = Vec::with_capacity(BLOCKING_CALLS as usize);
    for i in 0..BLOCKING_CALLS {
        let start = Instant::now();
        let out = call(i).await;
        samples.push(start.elapsed());
        assert_eq!(out, i, "wrong result from the blocking pool");
    }
    samples.sort();
    samples
}

/// A future that completes once `counter` reaches `target`, woken by whoever
/// bumps it (the waker is re-registered at every poll).
async fn until_count(
    counter: Arc<(AtomicU64, std::sync::Mutex<Option<std::task::Waker>>)>,
    target: u64,
) {
    poll_fn(|cx| {
        *counter.1.lock().unwrap() = Some(cx.waker().clone());
        if counter.0.load(Ordering::Acquire) >= target {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Ping-pong: the thread bumps `seen` target by one and wakes the task; the task
/// acknowledges by storing the count in `acked`; the thread waits for the ack.
fn ping_pong_thread(
    shared: Arc<(AtomicU64, std::sync::Mutex<Option<std::task::Waker>>)>,
    acked: Arc<AtomicU64>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for i in 1..=WAKES {
            shared.0.store(i, Ordering::Release);
            let waker = loop {
                if let Some(w) = shared.1.lock().unwrap().clone() {
                    break w;
                }
                std::hint::spin_loop();
            };
            waker.wake();
            while acked.load(Ordering::Acquire) < i {
                std::hint::spin_loop();
            }
        }
    })
}

/// The task side of the ping-pong: acknowledges every count it sees.
async fn ping_pong_task(
    shared: Arc<(AtomicU64, std::sync::Mutex<Option<std::task::Waker>>)>,
    acked: Arc<AtomicU64>,
) {
    poll_fn(|cx| {
        *shared.1.lock().unwrap() = Some(cx.waker().clone());
        let now = shared.0.load(Ordering::Acquire);
        acked.store(now, Ordering::Release);
        if now >= WAKES {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

fn new_counter() -> Arc<(AtomicU64, std::sync::Mutex<Option<std::task::Waker>>)> {
    Arc::new((AtomicU64::new(0), std::sync::Mutex::new(None)))
}

/// The three measurements on runtime `$rt`, whose `spawn_blocking` is `$blocking`
/// and whose `Send` handle is `$handle`. A macro, not a generic function: the two
/// runtimes share no trait for these calls.
macro_rules! measure {
    ($rt:expr, $blocking:path, $handle:expr) => {{
        let rt = $rt;
        let lat = rt.block_on(blocking_latencies(|i| async move {
            $blocking(move || i).await.unwrap()
        }));
        let counter = new_counter();
        let handle = $handle;
        let start = Instant::now();
        let c = counter.clone();
        let spawner = thread::spawn(move || {
            for _ in 0..REMOTE_SPAWNS {
                let c = c.clone();
                drop(handle.spawn(async move {
                    c.0.fetch_add(1, Ordering::AcqRel);
                    if let Some(w) = c.1.lock().unwrap().take() {
                        w.wake();
                    }
                }));
            }
        });
        rt.block_on(until_count(counter, REMOTE_SPAWNS));
        let remote = start.elapsed();
        spawner.join().unwrap();
        let shared = new_counter();
        let acked = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let pinger = ping_pong_thread(shared.clone(), acked.clone());
        rt.block_on(ping_pong_task(shared, acked));
        let wakes = start.elapsed();
        pinger.join().unwrap();
        Round {
            blocking_p50: micros(percentile(&lat, 50.0)),
            blocking_p99: micros(percentile(&lat, 99.0)),
            remote_ms: millis(remote),
            wakes_ms: millis(wakes),
        }
    }};
}

fn run_edgeloop() -> Round {
    let rt = edgeloop::Runtime::new().expect("runtime");
    let handle = rt.handle();
    measure!(rt, edgeloop::spawn_blocking, handle)
}

fn run_tokio() -> Round {
    // I/O on, as edgeloop always is: the thread then parks in epoll, not on a futex.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let handle = rt.handle().clone();
    measure!(rt, tokio::task::spawn_blocking, handle)
}

fn main() {
    let args = Args::from_env(&["rounds", "only"], USAGE);
    let rounds: usize = args.get("rounds", 5);
    // For profiling one runtime (strace, perf): no table.
    match args.text("only") {
        Some("edgeloop") => return println!("{:?}", run_edgeloop()),
        Some("tokio") => return println!("{:?}", run_tokio()),
        Some(other) => panic!("`--only {other}`: expected edgeloop or tokio"),
        None => {}
    }
    println!(
        "cross_thread: {rounds} interleaved rounds, CPUs allowed: {}, load average: {}",
        proc_self::cpus_allowed(),
        proc_self::load_average()
    );
    let mut edge = Vec::new();
    let mut tokio = Vec::new();
    for round in 1..=rounds {
        let e = run_edgeloop();
        println!("  round {round} edgeloop {e:?}");
        edge.push(e);
        let t = run_tokio();
        println!("  round {round} tokio    {t:?}");
        tokio.push(t);
    }
    type Figure = (&'static str, &'static str, fn(&Round) -> f64);
    let figures: [Figure; 4] = [
        ("spawn_blocking round trip, median", "µs", |r| {
            r.blocking_p50
        }),
        ("spawn_blocking round trip, p99", "µs", |r| r.blocking_p99),
        ("100,000 Handle::spawn from a thread", "ms", |r| r.remote_ms),
        ("1,000,000 cross-thread wakes (ping-pong)", "ms", |r| {
            r.wakes_ms
        }),
    ];
    let mut table =
        Table::new(&["figure", "unit", "edgeloop", "tokio", "edgeloop/tokio"]).left_columns(2);
    for (name, unit, get) in figures {
        let e = median(&edge.iter().map(get).collect::<Vec<_>>());
        let t = median(&tokio.iter().map(get).collect::<Vec<_>>());
        table.row([
            name.to_owned(),
            unit.to_owned(),
            format!("{e:.1}"),
            format!("{t:.1}"),
            ratio(e, t),
        ]);
    }
    println!("\nmedians over {rounds} rounds\n{}", table.render());
}
