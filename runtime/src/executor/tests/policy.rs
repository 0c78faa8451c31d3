//! The panic policy (`UnhandledPanic`) and slow-poll detection.

use super::*;

use std::panic::Location;
use std::time::Duration;

use crate::{Builder, Handle, SlowPoll, UnhandledPanic};

fn shutdown_on_panic() -> crate::Runtime {
    Builder::new_current_thread()
        .unhandled_panic(UnhandledPanic::ShutdownRuntime)
        .build()
        .unwrap()
}

/// Runs `f`, expecting it to panic; returns the panic's message.
fn panic_message_of(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[test]
fn shutdown_runtime_ends_block_on_with_a_detached_tasks_panic() {
    bounded("shutdown_runtime_detached", || {
        let rt = shutdown_on_panic();
        let message = panic_message_of(|| {
            rt.block_on(async {
                drop(spawn(async { panic!("detached boom") }));
                pending::<()>().await;
            });
        });
        assert_eq!(message, "detached boom");
    });
}

#[test]
fn shutdown_runtime_fires_when_a_handle_holding_a_panic_is_dropped_unread() {
    bounded("shutdown_runtime_unread", || {
        let rt = shutdown_on_panic();
        let message = panic_message_of(|| {
            rt.block_on(async {
                let handle = spawn(async { panic!("unread boom") });
                yield_now().await; // the task panics; its handle holds the panic
                assert!(handle.is_finished());
                drop(handle); // nobody will see it now
                pending::<()>().await;
            });
        });
        assert_eq!(message, "unread boom");
    });
}

#[test]
fn shutdown_runtime_leaves_an_awaited_panic_to_its_handle() {
    bounded("shutdown_runtime_awaited", || {
        let rt = shutdown_on_panic();
        let error = rt.block_on(async { spawn(async { panic!("seen") }).await.unwrap_err() });
        assert!(error.is_panic());
        // And the runtime goes on.
        assert_eq!(rt.block_on(async { spawn(async { 3 }).await.unwrap() }), 3);
    });
}

#[test]
fn ignore_is_the_default_and_keeps_running() {
    bounded("ignore_is_the_default", || {
        let out = block_on(async {
            drop(spawn(async { panic!("ignored boom") }));
            yield_now().await;
            yield_now().await;
            7
        });
        assert_eq!(out, 7);
    });
}

/// A runtime whose slow-poll hook records what it was told.
fn recording_runtime(threshold: Duration) -> (crate::Runtime, Arc<Mutex<Vec<SlowPoll>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let rt = Builder::new_current_thread()
        .slow_poll_threshold(threshold)
        .on_slow_poll(move |slow| log.lock().unwrap().push(*slow))
        .build()
        .unwrap();
    (rt, seen)
}

#[test]
fn a_slow_task_is_reported_once_with_its_spawn_location() {
    bounded("a_slow_task_is_reported_once", || {
        let (rt, seen) = recording_runtime(Duration::from_millis(10));
        let mut spawned_at = None;
        rt.block_on(async {
            spawned_at = Some(Location::caller().line() + 1);
            let slow = spawn(async {
                // Two slow polls: reported once.
                thread::sleep(Duration::from_millis(50));
                yield_now().await;
                thread::sleep(Duration::from_millis(50));
            });
            let fast = spawn(async {
                for _ in 0..10 {
                    yield_now().await;
                }
            });
            slow.await.unwrap();
            fast.await.unwrap();
        });
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "reports: {seen:?}");
        let report = seen[0];
        assert_eq!(report.spawned_at.file(), file!());
        assert_eq!(Some(report.spawned_at.line()), spawned_at);
        assert!(report.duration >= Duration::from_millis(50), "{report:?}");
        assert_eq!(report.threshold, Duration::from_millis(10));
        let line = report.to_string();
        assert!(
            line.contains(file!()) && line.contains("spawn_blocking"),
            "{line}"
        );
    });
}

#[test]
fn slow_polls_are_not_watched_by_default() {
    bounded("slow_polls_are_not_watched_by_default", || {
        // No threshold: a hook alone does not turn detection on.
        let seen = Arc::new(Mutex::new(0));
        let count = seen.clone();
        let rt = Builder::new_current_thread()
            .on_slow_poll(move |_| *count.lock().unwrap() += 1)
            .build()
            .unwrap();
        rt.block_on(async {
            spawn(async { thread::sleep(Duration::from_millis(20)) })
                .await
                .unwrap();
        });
        assert_eq!(*seen.lock().unwrap(), 0);
    });
}

#[test]
fn a_remote_spawn_is_reported_at_the_handle_spawn_call() {
    bounded("a_remote_spawn_is_reported", || {
        let (rt, seen) = recording_runtime(Duration::from_millis(5));
        let handle: Handle = rt.handle();
        let line = Location::caller().line() + 1;
        let remote = handle.spawn(async { thread::sleep(Duration::from_millis(20)) });
        rt.block_on(remote).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].spawned_at.file(), file!());
        assert_eq!(seen[0].spawned_at.line(), line);
    });
}
