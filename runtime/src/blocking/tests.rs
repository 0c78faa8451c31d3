//! Tests of the blocking pool and `spawn_blocking`: growth up to the cap and the
//! FIFO queue beyond it, keep-alive exit and reuse of idle threads, thread names,
//! panics, wakes that race the await, misuse outside a runtime, and what shutdown
//! does to queued and running jobs.
//!
//! Jobs never sleep to make a point: they block on a [`Gate`] that the test opens,
//! and report progress over std channels. The pool's own counters are read through
//! [`Runtime::metrics`], or, for the idle count that metrics do not show, from the
//! pool's state. Every test runs under [`bounded`].

use super::*;

use std::panic::catch_unwind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use crate::test_support::{TIMEOUT, bounded, panic_message};
use crate::{Builder, Runtime, block_on, yield_now};

/// A latch that jobs block on until the test opens it. Waiting gives up after
/// [`TIMEOUT`], so a failing test cannot leave a pool thread blocked for ever.
#[derive(Debug, Default)]
struct Gate {
    /// Whether the gate is open.
    open: Mutex<bool>,
    /// Signalled when it opens.
    cond: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.cond.notify_all();
    }

    fn is_open(&self) -> bool {
        *self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until the gate opens; false if [`TIMEOUT`] passed first.
    fn wait(&self) -> bool {
        let guard = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .cond
            .wait_timeout_while(guard, TIMEOUT, |open| !*open)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

/// Opens its gate when dropped: tells a job that a value it does not own is gone.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// The blocking pool of the runtime running on this thread.
fn current_pool() -> Arc<BlockingPool> {
    crate::context::with_core(|core| core.blocking.clone())
        .expect("`current_pool` must be called inside `block_on`")
}

/// Whether every job given to `pool` has finished and stored its result: nothing
/// queued, nothing handed to an idle thread that has not taken it yet, and every
/// thread back to waiting (a thread stores its job's result before that).
///
/// A job's result can reach its task before the thread counts as idle again, and a
/// job spawned right then starts a second thread; so "one idle thread" is not a
/// condition to wait for.
fn pool_is_quiet(pool: &BlockingPool) -> bool {
    let state = pool.shared.lock();
    state.queue.is_empty() && state.notified == 0 && state.idle == state.threads
}

/// Checks `condition` every millisecond until it holds; panics after [`TIMEOUT`].
/// Only for states that have no event to wait on (a thread going idle or exiting).
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {TIMEOUT:?}");
        thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------
// Growth, queue, keep-alive, reuse
// ---------------------------------------------------------------------------------

#[test]
fn pool_grows_on_demand_up_to_the_cap_and_queues_the_rest_in_order() {
    bounded(
        "pool_grows_on_demand_up_to_the_cap_and_queues_the_rest_in_order",
        || {
            let rt = Builder::new_current_thread()
                .max_blocking_threads(3)
                .build()
                .expect("runtime");
            let m = rt.metrics();
            assert_eq!(m.blocking_threads, 0, "threads before any job: {m:?}");
            let gate = Arc::new(Gate::default());
            let (started_tx, started_rx) = mpsc::channel();
            rt.block_on(async {
                let handles: Vec<_> = (0..5_u32)
                    .map(|i| {
                        let gate = gate.clone();
                        let started = started_tx.clone();
                        spawn_blocking(move || {
                            started.send(i).expect("the test holds the receiver");
                            (i * 10, gate.wait())
                        })
                    })
                    .collect();
                let mut first: Vec<u32> = (0..3)
                    .map(|n| {
                        started_rx
                            .recv_timeout(TIMEOUT)
                            .unwrap_or_else(|e| panic!("job start {n} of 3: {e}"))
                    })
                    .collect();
                first.sort_unstable();
                assert_eq!(
                    first,
                    [0, 1, 2],
                    "the first jobs queued are the first to run"
                );
                // The three threads are stuck on the gate, so nothing can change now.
                let m = rt.metrics();
                assert_eq!(m.blocking_threads, 3, "threads at the cap: {m:?}");
                assert_eq!(m.blocking_queue, 2, "jobs beyond the cap: {m:?}");
                let early = started_rx.try_recv();
                assert!(early.is_err(), "a fourth job started: {early:?}");

                gate.open();
                let mut results = Vec::new();
                for (i, handle) in handles.into_iter().enumerate() {
                    let (value, opened) = handle.await.unwrap_or_else(|e| panic!("job {i}: {e}"));
                    assert!(opened, "job {i} gave up waiting for the gate");
                    results.push(value);
                }
                assert_eq!(
                    results,
                    [0, 10, 20, 30, 40],
                    "each handle gets its own job's result"
                );
                let mut rest: Vec<u32> = started_rx.try_iter().collect();
                rest.sort_unstable();
                assert_eq!(rest, [3, 4], "the queued jobs each ran once");
                let m = rt.metrics();
                // Within the 10 s default keep-alive no thread exits, and none was added.
                assert_eq!(m.blocking_threads, 3, "threads after the jobs: {m:?}");
                assert_eq!(m.blocking_queue, 0, "queue after the jobs: {m:?}");
            });
        },
    );
}

#[test]
fn idle_threads_exit_after_the_keep_alive_and_not_before() {
    bounded(
        "idle_threads_exit_after_the_keep_alive_and_not_before",
        || {
            let keep_alive = Duration::from_millis(50);
            let rt = Builder::new_current_thread()
                .thread_keep_alive(keep_alive)
                .build()
                .expect("runtime");
            let gate = Arc::new(Gate::default());
            let (started_tx, started_rx) = mpsc::channel();
            let last_finish = rt.block_on(async {
                // Two jobs running at once: two threads.
                let handles: Vec<_> = (0..2)
                    .map(|_| {
                        let gate = gate.clone();
                        let started = started_tx.clone();
                        spawn_blocking(move || {
                            started.send(()).expect("the test holds the receiver");
                            let opened = gate.wait();
                            (opened, Instant::now())
                        })
                    })
                    .collect();
                for n in 0..2 {
                    started_rx
                        .recv_timeout(TIMEOUT)
                        .unwrap_or_else(|e| panic!("job start {n} of 2: {e}"));
                }
                let m = rt.metrics();
                assert_eq!(m.blocking_threads, 2, "{m:?}");
                gate.open();
                let mut last = None;
                for (i, handle) in handles.into_iter().enumerate() {
                    let (opened, finished_at) =
                        handle.await.unwrap_or_else(|e| panic!("job {i}: {e}"));
                    assert!(opened, "job {i} gave up waiting for the gate");
                    last = last.max(Some(finished_at));
                }
                last.expect("two jobs ran")
            });
            // No runtime needs to run for the threads to time out.
            wait_until("both idle threads exit", || {
                rt.metrics().blocking_threads == 0
            });
            let idle_for = last_finish.elapsed();
            assert!(
                idle_for >= keep_alive,
                "the threads were gone {idle_for:?} after their last job, before the keep-alive \
             of {keep_alive:?}"
            );
            // The pool starts threads again after they all exited.
            let again = rt.block_on(async { spawn_blocking(|| 5).await });
            assert_eq!(again.expect("job after the threads exited"), 5);
        },
    );
}

#[test]
fn an_idle_thread_is_reused_for_the_next_job() {
    bounded("an_idle_thread_is_reused_for_the_next_job", || {
        let rt = Runtime::new().expect("runtime");
        rt.block_on(async {
            let pool = current_pool();
            let first = spawn_blocking(|| thread::current().id())
                .await
                .expect("first job");
            // The result arrives a moment before the thread is idle again.
            wait_until("the pool thread goes idle", || pool_is_quiet(&pool));
            for n in 2..=4 {
                let next = spawn_blocking(|| thread::current().id())
                    .await
                    .unwrap_or_else(|e| panic!("job {n}: {e}"));
                assert_eq!(next, first, "job {n} ran on another thread");
                let m = rt.metrics();
                assert_eq!(m.blocking_threads, 1, "threads after job {n}: {m:?}");
                wait_until("the pool thread goes idle again", || pool_is_quiet(&pool));
            }
        });
    });
}

#[test]
fn pool_threads_carry_the_builder_name() {
    bounded("pool_threads_carry_the_builder_name", || {
        let named = Builder::new_current_thread()
            .thread_name("edgeloop-test-pool")
            .build()
            .expect("runtime");
        let name = named.block_on(async {
            spawn_blocking(|| thread::current().name().map(str::to_owned)).await
        });
        assert_eq!(name.expect("job").as_deref(), Some("edgeloop-test-pool"));

        let default = Runtime::new().expect("runtime");
        let name = default.block_on(async {
            spawn_blocking(|| thread::current().name().map(str::to_owned)).await
        });
        assert_eq!(name.expect("job").as_deref(), Some("edgeloop-blocking"));
    });
}

// ---------------------------------------------------------------------------------
// Results: panics, wakes that race the await
// ---------------------------------------------------------------------------------

/// A job that panics with `message` (a `String` payload, from a formatted panic).
fn panicking_job(message: &'static str) -> u32 {
    panic!("{message} #{}", 7)
}

#[test]
fn a_panic_in_the_closure_comes_back_as_a_join_error_with_its_message() {
    bounded(
        "a_panic_in_the_closure_comes_back_as_a_join_error_with_its_message",
        || {
            let rt = Runtime::new().expect("runtime");
            rt.block_on(async {
                let err = spawn_blocking(|| panicking_job("blocking job failed"))
                    .await
                    .expect_err("the job panicked");
                assert!(err.is_panic(), "got {err:?}");
                assert!(!err.is_cancelled(), "got {err:?}");
                let message = panic_message(&*err.into_panic());
                assert_eq!(message, "blocking job failed #7");

                // A `&str` payload survives as well.
                let err = spawn_blocking(|| -> u32 { std::panic::panic_any("static payload") })
                    .await
                    .expect_err("the job panicked");
                assert_eq!(panic_message(&*err.into_panic()), "static payload");

                // The pool thread survived the panics and still runs jobs.
                let after = spawn_blocking(|| 3).await.expect("job after the panics");
                assert_eq!(after, 3);
                let m = rt.metrics();
                assert!(m.blocking_threads >= 1, "{m:?}");
            });
        },
    );
}

#[test]
fn no_wake_is_lost_when_the_job_finishes_before_the_await() {
    bounded(
        "no_wake_is_lost_when_the_job_finishes_before_the_await",
        || {
            let rt = Runtime::new().expect("runtime");
            let pool = rt.block_on(async { current_pool() });

            // 1. Done before the task waiting for it was ever polled.
            let (done_tx, done_rx) = mpsc::channel();
            let value = rt.block_on(async {
                let handle = spawn_blocking(move || {
                    done_tx.send(()).expect("the test holds the receiver");
                    41
                });
                done_rx.recv_timeout(TIMEOUT).expect("the job ran");
                wait_until("the job's result is stored", || pool_is_quiet(&pool));
                handle.await
            });
            assert_eq!(value.expect("job 1"), 41);

            // 2. Done while the task waits, with this thread busy (not in epoll): the
            // wake goes through the inbox and must still be there when the loop looks.
            let gate = Arc::new(Gate::default());
            let g = gate.clone();
            let value = rt.block_on(async {
                let handle = spawn_blocking(move || if g.wait() { 42 } else { 0 });
                yield_now().await; // the waiting task has run and stored its waker
                gate.open();
                wait_until("the job's result is stored", || pool_is_quiet(&pool));
                handle.await
            });
            assert_eq!(value.expect("job 2"), 42);

            // 3. Done between two `block_on` calls: the next one gets the wake.
            let gate = Arc::new(Gate::default());
            let g = gate.clone();
            #[expect(
                clippy::async_yields_async,
                reason = "the handle is awaited in the next `block_on`"
            )]
            let handle = rt.block_on(async {
                let handle = spawn_blocking(move || if g.wait() { 43 } else { 0 });
                yield_now().await;
                handle
            });
            gate.open();
            wait_until("the job's result is stored", || pool_is_quiet(&pool));
            assert_eq!(rt.block_on(handle).expect("job 3"), 43);
        },
    );
}

// ---------------------------------------------------------------------------------
// Misuse and shutdown
// ---------------------------------------------------------------------------------

#[test]
fn spawn_blocking_outside_block_on_panics_naming_it() {
    bounded("spawn_blocking_outside_block_on_panics_naming_it", || {
        let payload = catch_unwind(|| spawn_blocking(|| ())).expect_err("outside any runtime");
        let message = panic_message(&*payload);
        assert!(message.contains("`spawn_blocking`"), "message: {message:?}");

        // A runtime that exists but is not running does not count either.
        let rt = Runtime::new().expect("runtime");
        let payload = catch_unwind(|| spawn_blocking(|| ())).expect_err("beside an idle runtime");
        let message = panic_message(&*payload);
        assert!(message.contains("`spawn_blocking`"), "message: {message:?}");
        assert_eq!(
            rt.metrics().blocking_threads,
            0,
            "a thread was started anyway"
        );
    });
}

#[test]
fn dropping_the_runtime_drops_queued_jobs_unrun_and_waits_for_the_running_one() {
    bounded(
        "dropping_the_runtime_drops_queued_jobs_unrun_and_waits_for_the_running_one",
        || {
            let rt = Builder::new_current_thread()
                .max_blocking_threads(1)
                .build()
                .expect("runtime");
            let queued_dropped = Arc::new(Gate::default());
            let queued_ran = Arc::new(AtomicBool::new(false));
            let running_saw_drop = Arc::new(AtomicBool::new(false));
            let running_done = Arc::new(AtomicBool::new(false));
            let (started_tx, started_rx) = mpsc::channel();
            let (running, queued) = rt.block_on(async {
                let (dropped, saw, done) = (
                    queued_dropped.clone(),
                    running_saw_drop.clone(),
                    running_done.clone(),
                );
                let running = spawn_blocking(move || {
                    started_tx.send(()).expect("the test holds the receiver");
                    // Shutdown drops the queued job before it waits for this one.
                    saw.store(dropped.wait(), Ordering::SeqCst);
                    // Work that shutdown has to wait for.
                    thread::sleep(Duration::from_millis(50));
                    done.store(true, Ordering::SeqCst);
                });
                let guard = OpenOnDrop(queued_dropped.clone());
                let ran = queued_ran.clone();
                let queued = spawn_blocking(move || {
                    let _guard = guard;
                    ran.store(true, Ordering::SeqCst);
                });
                started_rx
                    .recv_timeout(TIMEOUT)
                    .expect("the first job started");
                let m = rt.metrics();
                assert_eq!(m.blocking_queue, 1, "the second job waits: {m:?}");
                assert!(
                    !queued_dropped.is_open(),
                    "the queued job was dropped early"
                );
                (running, queued)
            });
            drop(rt);
            assert!(
                running_done.load(Ordering::SeqCst),
                "dropping the runtime returned before the running job completed"
            );
            assert!(
                running_saw_drop.load(Ordering::SeqCst),
                "the queued job was not dropped before the running one was waited for"
            );
            assert!(
                queued_dropped.is_open(),
                "the queued job's closure was never dropped"
            );
            assert!(!queued_ran.load(Ordering::SeqCst), "the queued job ran");
            // Both waiting tasks went with the runtime.
            for (what, handle) in [("running", running), ("queued", queued)] {
                assert!(handle.is_finished(), "{what}: {handle:?}");
                let err = block_on(handle).expect_err("the runtime is gone");
                assert!(err.is_cancelled(), "{what}: {err:?}");
            }
        },
    );
}

/// Starts a job on `rt` that blocks on the returned gate until opened, and waits
/// until it runs; also returns the pool and a channel that says when the job ends.
fn start_blocked_job(rt: &Runtime) -> (Arc<Gate>, Arc<BlockingPool>, mpsc::Receiver<bool>) {
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let (started_tx, started_rx) = mpsc::channel();
    let (finished_tx, finished_rx) = mpsc::channel();
    let pool = rt.block_on(async {
        // Detached: the job outlives the task that would have awaited it.
        drop(spawn_blocking(move || {
            started_tx.send(()).expect("the test holds the receiver");
            // Ignored: the test may have failed and gone already.
            let _ = finished_tx.send(g.wait());
        }));
        started_rx.recv_timeout(TIMEOUT).expect("the job started");
        current_pool()
    });
    (gate, pool, finished_rx)
}

#[test]
fn shutdown_timeout_returns_after_the_timeout_while_a_job_is_blocked() {
    bounded(
        "shutdown_timeout_returns_after_the_timeout_while_a_job_is_blocked",
        || {
            let rt = Runtime::new().expect("runtime");
            let (gate, pool, finished) = start_blocked_job(&rt);
            let timeout = Duration::from_millis(100);
            let start = Instant::now();
            rt.shutdown_timeout(timeout);
            let waited = start.elapsed();
            assert!(
                waited >= timeout,
                "returned after {waited:?}, before {timeout:?}"
            );
            assert!(
                waited < Duration::from_secs(5),
                "returned only after {waited:?} for a timeout of {timeout:?}"
            );
            assert_eq!(
                pool.threads(),
                1,
                "the blocked job's thread is still running"
            );

            gate.open();
            let opened = finished
                .recv_timeout(TIMEOUT)
                .expect("the job ends once released");
            assert!(opened, "the job gave up waiting for the gate");
            wait_until("the last pool thread exits", || pool.threads() == 0);
        },
    );
}

#[test]
fn shutdown_background_does_not_wait_for_a_blocked_job() {
    bounded(
        "shutdown_background_does_not_wait_for_a_blocked_job",
        || {
            let rt = Runtime::new().expect("runtime");
            let (gate, pool, finished) = start_blocked_job(&rt);
            let start = Instant::now();
            rt.shutdown_background();
            let waited = start.elapsed();
            assert!(waited < Duration::from_secs(5), "waited {waited:?}");
            assert_eq!(
                pool.threads(),
                1,
                "the blocked job's thread is still running"
            );
            // A pool that has shut down drops new jobs unrun.
            let ran = Arc::new(AtomicBool::new(false));
            let r = ran.clone();
            pool.spawn(Box::new(move || r.store(true, Ordering::SeqCst)));
            assert_eq!(pool.queued(), 0, "a job was queued after shutdown");

            gate.open();
            let opened = finished
                .recv_timeout(TIMEOUT)
                .expect("the job ends once released");
            assert!(opened, "the job gave up waiting for the gate");
            wait_until("the last pool thread exits", || pool.threads() == 0);
            assert!(
                !ran.load(Ordering::SeqCst),
                "a job spawned after shutdown ran"
            );
        },
    );
}

#[test]
fn a_paused_clock_does_not_jump_past_a_blocking_job_in_flight() {
    bounded(
        "a_paused_clock_does_not_jump_past_a_blocking_job_in_flight",
        || {
            let rt = Builder::new_current_thread()
                .start_paused(true)
                .build()
                .expect("runtime");
            let (out, pool) = rt.block_on(async {
                // Real time: 50 ms. With the clock allowed to jump, the one-hour
                // timeout would fire first, since every task is idle meanwhile.
                let job = spawn_blocking(|| {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    7
                });
                let out = crate::time::timeout(std::time::Duration::from_secs(3600), job).await;
                (out, current_pool())
            });
            let joined = out.expect("the paused clock jumped past a running blocking job");
            assert_eq!(joined.expect("job"), 7);
            // The job leaves `in_flight` just after delivering its result (so that a
            // waiter sees the result before the clock may jump): soon, not at once.
            wait_until("the finished job leaves in_flight", || {
                pool.in_flight() == 0
            });
            // And with nothing out, the paused clock jumps as before.
            rt.block_on(async {
                let start = crate::time::now();
                crate::time::sleep(std::time::Duration::from_secs(3600)).await;
                assert_eq!(
                    crate::time::now() - start,
                    std::time::Duration::from_secs(3600)
                );
            });
        },
    );
}
