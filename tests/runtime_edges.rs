//! Edge cases of `Runtime`, the blocking pool and the paused clock, each once a
//! bug found in review: a paused clock that never jumped again after a blocking
//! job, a due timer that did not fire while a job was out, a runtime in a
//! `thread_local!` that aborted the process at thread exit, a nested runtime drop
//! that stalled the outer loop, a context swap that a panic left behind, and
//! `Handle::current` inside `spawn_blocking`.

mod support;

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, mpsc};
use std::task::{Context, Wake, Waker};
use std::thread;
use std::time::Duration;

use edgeloop::{Builder, Handle, Runtime, spawn, spawn_blocking, time};
use support::with_timeout;

#[test]
fn a_paused_clock_jumps_again_after_a_detached_blocking_job_ends() {
    with_timeout(
        10,
        "a_paused_clock_jumps_again_after_a_detached_blocking_job_ends",
        || {
            let rt = Builder::new_current_thread()
                .start_paused(true)
                .build()
                .unwrap();
            let handle = rt.handle();
            rt.block_on(async move {
                // Its end wakes no task here: only the pool's "last job out" notice
                // tells the loop that the clock may jump again.
                drop(handle.spawn_blocking(|| thread::sleep(Duration::from_millis(50))));
                let start = time::now();
                time::sleep(Duration::from_secs(3600)).await;
                assert_eq!(time::now() - start, Duration::from_secs(3600));
            });
        },
    );
}

#[test]
fn a_due_timer_fires_while_a_blocking_job_is_out() {
    with_timeout(10, "a_due_timer_fires_while_a_blocking_job_is_out", || {
        let rt = Builder::new_current_thread()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, rx) = mpsc::channel::<()>();
            let job = spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)).is_ok());
            // Due at once on the paused clock, while the job waits for us.
            time::sleep(Duration::ZERO).await;
            tx.send(()).unwrap();
            assert!(job.await.unwrap(), "the job did not get its message");
        });
    });
}

#[test]
fn a_paused_clock_never_jumps_between_a_job_ending_and_its_wake() {
    with_timeout(
        30,
        "a_paused_clock_never_jumps_between_a_job_ending_and_its_wake",
        || {
            let rt = Builder::new_current_thread()
                .start_paused(true)
                .build()
                .unwrap();
            let expired = rt.block_on(async {
                let mut expired = 0;
                for _ in 0..20_000 {
                    let job = spawn_blocking(|| 7);
                    match time::timeout(Duration::from_secs(3600), job).await {
                        Ok(out) => assert_eq!(out.unwrap(), 7),
                        Err(_) => expired += 1,
                    }
                }
                expired
            });
            assert_eq!(
                expired, 0,
                "the paused clock jumped past a finished job's wake"
            );
        },
    );
}

#[test]
fn handle_current_works_inside_spawn_blocking() {
    with_timeout(10, "handle_current_works_inside_spawn_blocking", || {
        let out = edgeloop::block_on(async {
            let remote = spawn_blocking(|| Handle::current().spawn(async { 2 }))
                .await
                .unwrap();
            remote.await.unwrap()
        });
        assert_eq!(out, 2);
    });
}

#[test]
fn dropping_a_runtime_inside_another_does_not_stall_the_outer_loop() {
    with_timeout(
        10,
        "dropping_a_runtime_inside_another_does_not_stall_the_outer_loop",
        || {
            let outer = Runtime::new().unwrap();
            outer.block_on(async {
                let inner = Runtime::new().unwrap();
                let (tx, rx) = mpsc::channel::<()>();
                let (started_tx, started_rx) = mpsc::channel::<()>();
                // The inner runtime's job waits for a task of the outer one.
                drop(inner.handle().spawn_blocking(move || {
                    started_tx.send(()).unwrap();
                    rx.recv_timeout(Duration::from_secs(30)).is_ok()
                }));
                started_rx.recv().unwrap();
                let feeder = spawn(async move {
                    time::sleep(Duration::from_millis(10)).await;
                    tx.send(()).unwrap();
                });
                drop(inner); // must not wait for the job, which waits for `feeder`
                feeder.await.unwrap();
            });
        },
    );
}

/// A waker whose drop panics (once the test is not unwinding already).
struct PanicOnDrop;

impl Wake for PanicOnDrop {
    fn wake(self: Arc<Self>) {}
}

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("waker dropped");
        }
    }
}

#[test]
fn a_panicking_inner_shutdown_leaves_the_outer_runtime_current() {
    with_timeout(
        10,
        "a_panicking_inner_shutdown_leaves_the_outer_runtime_current",
        || {
            let outer = Runtime::new().unwrap();
            let inner = Runtime::new().unwrap();
            inner.block_on(async {
                // A timer whose stored waker panics when the inner runtime drops it.
                let mut sleep = Box::pin(time::sleep(Duration::from_secs(3600)));
                let waker = Waker::from(Arc::new(PanicOnDrop));
                let _ = Pin::as_mut(&mut sleep).poll(&mut Context::from_waker(&waker));
                drop(waker);
                std::mem::forget(sleep);
            });
            let out = outer.block_on(async move {
                let dropped = catch_unwind(AssertUnwindSafe(|| drop(inner)));
                assert!(
                    dropped.is_err(),
                    "the waker's panic should come out of the drop"
                );
                // Spawned into the outer runtime, not the dead inner one.
                spawn(async { 5 }).await
            });
            assert_eq!(out.unwrap(), 5);
        },
    );
}

thread_local! {
    static THREAD_RUNTIME: Runtime = Runtime::new().expect("runtime");
}

/// Set in the child process that `a_runtime_in_a_thread_local_drops_cleanly_at_thread_exit`
/// starts.
const TLS_CHILD: &str = "EDGELOOP_TEST_TLS_RUNTIME_CHILD";

#[test]
fn a_runtime_in_a_thread_local_drops_cleanly_at_thread_exit() {
    if std::env::var_os(TLS_CHILD).is_some() {
        // The child: a thread keeps its runtime in a thread-local, as
        // thread-per-core servers do, and exits with a task still pending.
        thread::spawn(|| {
            THREAD_RUNTIME.with(|rt| {
                drop(rt.spawn(std::future::pending::<()>()));
                rt.block_on(async { spawn(async {}).await.unwrap() });
            });
        })
        .join()
        .unwrap();
        return;
    }
    let child = with_timeout(
        30,
        "a_runtime_in_a_thread_local_drops_cleanly_at_thread_exit",
        || {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "a_runtime_in_a_thread_local_drops_cleanly_at_thread_exit",
                    "--test-threads",
                    "1",
                ])
                .env(TLS_CHILD, "1")
                .output()
                .unwrap()
        },
    );
    assert!(
        child.status.success(),
        "the child died: {:?}\nstderr: {}",
        child.status,
        String::from_utf8_lossy(&child.stderr)
    );
}
