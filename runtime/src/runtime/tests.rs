//! Tests of `Runtime`, `Handle` and `Builder`: tasks across `block_on` calls and
//! outside them, what dropping the runtime drops, remote spawns (results, panics,
//! abort, after shutdown, awaited on other threads), the metrics of a scripted
//! workload, the builder's knobs and misuse panics.
//!
//! Work on other threads reports back without sleeping: the runtime's thread waits
//! for a thread by awaiting a `spawn_blocking` job that joins it, so the runtime
//! keeps turning (and serving remote spawns) meanwhile. Every test runs under
//! [`bounded`].

use super::*;

use std::cell::{Cell, RefCell};
use std::future::{pending, poll_fn};
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc;
use std::task::Wake;
use std::thread::{self, ThreadId};

use crate::test_support::{
    OWN_PROCESS_ENV, TIMEOUT, bounded, panic_message, rerun_in_own_process, socket_pair,
};
use crate::time::{self, sleep};
use crate::{AsyncFd, Direction, spawn_blocking, yield_now};

/// The message of a nested `block_on`, from either `block_on`.
const NESTED_BLOCK_ON: &str =
    "`block_on` called inside a running runtime; `.await` the future or `spawn` it instead";

/// Increments its counter when dropped.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Records the thread it is dropped on.
struct RecordDropThread(Arc<Mutex<Option<ThreadId>>>);

impl Drop for RecordDropThread {
    fn drop(&mut self) {
        *self.0.lock().expect("no one panics holding this lock") = Some(thread::current().id());
    }
}

/// A latch for tasks of one runtime: they wait until it is opened.
#[derive(Clone, Default)]
struct LocalGate(Rc<RefCell<(bool, Vec<Waker>)>>);

impl LocalGate {
    fn open(&self) {
        let wakers = {
            let mut state = self.0.borrow_mut();
            state.0 = true;
            std::mem::take(&mut state.1)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            let mut state = self.0.borrow_mut();
            if state.0 {
                return Poll::Ready(());
            }
            if !state.1.iter().any(|w| w.will_wake(cx.waker())) {
                state.1.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
    }
}

/// Runs `body` on a new thread while `rt` keeps running (it awaits a blocking job
/// that joins the thread), and returns what `body` returned; a panic in `body` is
/// re-raised here.
fn on_other_thread<T: Send + 'static>(
    rt: &Runtime,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let worker = thread::spawn(body);
    let joined = rt.block_on(async move { spawn_blocking(move || worker.join()).await });
    joined
        .expect("the job joining the other thread")
        .unwrap_or_else(|payload| resume_unwind(payload))
}

/// Panics with `message`; typed, so an `async` block around it has an output type.
fn explode(message: &str) -> u32 {
    panic!("{message}")
}

// ---------------------------------------------------------------------------------
// Tasks across and outside `block_on`
// ---------------------------------------------------------------------------------

#[test]
fn tasks_spawned_in_one_block_on_keep_their_state_and_run_in_the_next() {
    bounded(
        "tasks_spawned_in_one_block_on_keep_their_state_and_run_in_the_next",
        || {
            let rt = Runtime::new().expect("runtime");
            let gate = LocalGate::default();
            let steps = Rc::new(Cell::new(0));
            let (waiter, sleeper) = rt.block_on(async {
                let (g, s) = (gate.clone(), steps.clone());
                let waiter = spawn(async move {
                    s.set(1);
                    g.wait().await;
                    s.set(s.get() + 1);
                    "opened"
                });
                let sleeper = spawn(async {
                    // Under Miri, whose clock advances 5 µs per interpreted basic
                    // block, 1 ms passes before this `block_on` returns.
                    sleep(Duration::from_millis(if cfg!(miri) { 10_000 } else { 1 })).await;
                    "slept"
                });
                yield_now().await; // both have started and now wait
                (waiter, sleeper)
            });
            assert_eq!(steps.get(), 1, "the waiting task ran once");
            assert!(!waiter.is_finished(), "{waiter:?}");
            let m = rt.metrics();
            assert_eq!(m.live_tasks, 2, "{m:?}");
            assert_eq!(m.timers_pending, 1, "the sleep's timer stays: {m:?}");

            // Woken between two `block_on` calls, from this very thread.
            gate.open();
            let (opened, slept) = rt.block_on(async { (waiter.await, sleeper.await) });
            assert_eq!(opened.expect("waiter"), "opened");
            assert_eq!(slept.expect("sleeper"), "slept");
            assert_eq!(steps.get(), 2, "the task went on from where it stopped");
            assert_eq!(rt.metrics().live_tasks, 0);
        },
    );
}

#[test]
fn runtime_spawn_outside_block_on_runs_at_the_next_block_on_in_order() {
    bounded(
        "runtime_spawn_outside_block_on_runs_at_the_next_block_on_in_order",
        || {
            let rt = Runtime::new().expect("runtime");
            let log = Rc::new(RefCell::new(Vec::new()));
            let handles: Vec<_> = (0..3)
                .map(|i| {
                    let log = log.clone();
                    rt.spawn(async move {
                        log.borrow_mut().push(i);
                        i * 2
                    })
                })
                .collect();
            assert!(
                log.borrow().is_empty(),
                "ran before any block_on: {:?}",
                log.borrow()
            );
            let m = rt.metrics();
            assert_eq!(
                (m.spawned_tasks, m.queued_tasks, m.polls),
                (3, 3, 0),
                "{m:?}"
            );

            // A `block_on` that does not await them still runs them.
            rt.block_on(yield_now());
            assert_eq!(*log.borrow(), [0, 1, 2], "run order");
            assert!(handles.iter().all(JoinHandle::is_finished), "{handles:?}");
            let outputs = rt.block_on(async {
                let mut outputs = Vec::new();
                for handle in handles {
                    outputs.push(handle.await.expect("task"));
                }
                outputs
            });
            assert_eq!(outputs, [0, 2, 4]);
        },
    );
}

#[test]
fn dropping_the_runtime_drops_pending_tasks_and_cancels_their_handles() {
    bounded(
        "dropping_the_runtime_drops_pending_tasks_and_cancels_their_handles",
        || {
            let drops = Arc::new(AtomicUsize::new(0));
            let guard = || DropCounter(drops.clone());
            let rt = Runtime::new().expect("runtime");

            // Started, and waiting for ever.
            let g = guard();
            #[expect(
                clippy::async_yields_async,
                reason = "the handle is awaited after the runtime is gone"
            )]
            let waiting = rt.block_on(async {
                let handle = spawn(async move {
                    let _guard = g;
                    pending::<()>().await;
                });
                yield_now().await;
                handle
            });
            // A remote task running in the runtime...
            let started = Arc::new(AtomicBool::new(false));
            let (g, s) = (guard(), started.clone());
            let remote_running = rt.handle().spawn(async move {
                let _guard = g;
                s.store(true, Ordering::SeqCst);
                pending::<()>().await;
            });
            rt.block_on(async {
                while !started.load(Ordering::SeqCst) {
                    yield_now().await;
                }
            });
            // ...and one still in the inbox.
            let g = guard();
            let remote_queued = rt.handle().spawn(async move {
                let _guard = g;
            });
            assert_eq!(
                drops.load(Ordering::SeqCst),
                0,
                "dropped before the runtime"
            );
            // The inbox job has not made a task yet.
            assert_eq!(rt.metrics().live_tasks, 2, "{:?}", rt.metrics());

            drop(rt);
            assert_eq!(
                drops.load(Ordering::SeqCst),
                3,
                "futures dropped with the runtime"
            );
            assert!(waiting.is_finished(), "{waiting:?}");
            assert!(remote_running.is_finished(), "{remote_running:?}");
            assert!(remote_queued.is_finished(), "{remote_queued:?}");
            block_on(async {
                let err = waiting.await.expect_err("dropped unfinished");
                assert!(err.is_cancelled(), "waiting: {err:?}");
                let err = remote_running.await.expect_err("dropped unfinished");
                assert!(err.is_cancelled(), "remote running: {err:?}");
                let err = remote_queued.await.expect_err("never started");
                assert!(err.is_cancelled(), "remote queued: {err:?}");
            });
        },
    );
}

#[test]
fn dropping_the_runtime_drops_a_task_that_never_ran() {
    bounded("dropping_the_runtime_drops_a_task_that_never_ran", || {
        let drops = Arc::new(AtomicUsize::new(0));
        let ran = Rc::new(Cell::new(false));
        let rt = Runtime::new().expect("runtime");
        let (g, r) = (DropCounter(drops.clone()), ran.clone());
        let handle = rt.spawn(async move {
            let _guard = g;
            r.set(true);
        });
        drop(rt);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the unpolled future was not dropped"
        );
        assert!(!ran.get(), "the task ran at shutdown");
        assert!(handle.is_finished(), "{handle:?}");
        let err = block_on(handle).expect_err("never ran");
        assert!(err.is_cancelled(), "{err:?}");
    });
}

// ---------------------------------------------------------------------------------
// Handle
// ---------------------------------------------------------------------------------

#[test]
fn handle_current_outside_a_runtime_panics_naming_it() {
    bounded("handle_current_outside_a_runtime_panics_naming_it", || {
        let payload = catch_unwind(Handle::current).expect_err("outside any runtime");
        let message = panic_message(&*payload);
        assert!(
            message.contains("`Handle::current`"),
            "message: {message:?}"
        );

        // An idle runtime on this thread is not "current" either.
        let _rt = Runtime::new().expect("runtime");
        let payload = catch_unwind(Handle::current).expect_err("beside an idle runtime");
        let message = panic_message(&*payload);
        assert!(
            message.contains("`Handle::current`"),
            "message: {message:?}"
        );
    });
}

#[test]
fn handle_current_inside_a_runtime_spawns_onto_it() {
    bounded("handle_current_inside_a_runtime_spawns_onto_it", || {
        let rt = Runtime::new().expect("runtime");
        let runtime_thread = thread::current().id();
        rt.block_on(async {
            let handle = Handle::current();
            let here = handle.spawn(async { thread::current().id() });
            assert_eq!(here.await.expect("remote task"), runtime_thread);

            // Moved to another thread, it still spawns onto this runtime.
            let h = handle.clone();
            let from_there = thread::spawn(move || h.spawn(async { thread::current().id() }))
                .join()
                .expect("spawning thread");
            assert_eq!(from_there.await.expect("remote task"), runtime_thread);
        });
        assert_eq!(rt.metrics().spawned_tasks, 2, "{:?}", rt.metrics());
    });
}

#[test]
fn handle_spawn_from_another_thread_runs_on_the_runtime_thread() {
    bounded(
        "handle_spawn_from_another_thread_runs_on_the_runtime_thread",
        || {
            let rt = Runtime::new().expect("runtime");
            let runtime_thread = thread::current().id();

            // Spawned while the runtime is not running; awaited here.
            let handle = rt.handle();
            let task = thread::spawn(move || handle.spawn(async { (7, thread::current().id()) }))
                .join()
                .expect("spawning thread");
            let (value, ran_on) = rt.block_on(task).expect("remote task");
            assert_eq!((value, ran_on), (7, runtime_thread));

            // Spawned while the runtime waits in epoll, and awaited on the other thread
            // inside a runtime of that thread's own.
            let handle = rt.handle();
            let (value, ran_on, awaited_on, other) = on_other_thread(&rt, move || {
                let task: RemoteJoinHandle<(u32, ThreadId)> = handle.spawn(async {
                    yield_now().await;
                    (42, thread::current().id())
                });
                let (value, ran_on) = block_on(task).expect("remote task");
                (
                    value,
                    ran_on,
                    thread::current().id(),
                    thread::current().id(),
                )
            });
            assert_eq!(value, 42);
            assert_eq!(
                ran_on, runtime_thread,
                "the remote future ran off the runtime's thread"
            );
            assert_eq!(awaited_on, other);
            assert_ne!(other, runtime_thread);
            let m = rt.metrics();
            assert_eq!(m.live_tasks, 0, "{m:?}");
            // Cross-thread notifications are not I/O events.
            assert_eq!((m.io_events, m.registered_fds), (0, 0), "{m:?}");
        },
    );
}

#[test]
fn a_panic_in_a_remote_future_is_a_join_error() {
    bounded("a_panic_in_a_remote_future_is_a_join_error", || {
        let rt = Runtime::new().expect("runtime");
        let handle = rt.handle();
        let task = thread::spawn(move || handle.spawn(async { explode("remote future failed") }))
            .join()
            .expect("spawning thread");
        let err = rt.block_on(task).expect_err("the remote future panicked");
        assert!(err.is_panic(), "got {err:?}");
        assert_eq!(panic_message(&*err.into_panic()), "remote future failed");
        // The runtime is unharmed.
        assert_eq!(
            rt.block_on(async { spawn(async { 1 }).await })
                .expect("task"),
            1
        );
    });
}

/// A waker that, when woken, sends where a drop guard's record stood at that
/// moment: shows whether something was dropped before the wake.
struct SnapshotOnWake {
    /// The record of a [`RecordDropThread`].
    dropped_on: Arc<Mutex<Option<ThreadId>>>,
    /// Where each snapshot goes.
    snapshots: mpsc::Sender<Option<ThreadId>>,
}

impl Wake for SnapshotOnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let snapshot = *self
            .dropped_on
            .lock()
            .expect("no one panics holding this lock");
        // Ignored: the receiver is gone only if the test failed already.
        let _ = self.snapshots.send(snapshot);
    }
}

#[test]
fn abort_of_a_pending_remote_task_drops_its_future_on_the_runtime_thread() {
    bounded(
        "abort_of_a_pending_remote_task_drops_its_future_on_the_runtime_thread",
        || {
            let rt = Runtime::new().expect("runtime");
            let runtime_thread = thread::current().id();
            let dropped_on = Arc::new(Mutex::new(None));
            let (started_tx, started_rx) = mpsc::channel();
            let guard = RecordDropThread(dropped_on.clone());
            let mut remote = rt.handle().spawn(async move {
                let _guard = guard;
                started_tx
                    .send(())
                    .expect("the aborting thread holds the receiver");
                pending::<()>().await;
            });
            let d = dropped_on.clone();
            let (first_poll, dropped_before, dropped_at_wake, result) =
                on_other_thread(&rt, move || {
                    started_rx
                        .recv_timeout(TIMEOUT)
                        .expect("the remote task started");
                    // Polled by hand, so the wake can look at the guard the moment
                    // the handle is told that the task is over.
                    let (snapshots_tx, snapshots) = mpsc::channel();
                    let waker = Waker::from(Arc::new(SnapshotOnWake {
                        dropped_on: d.clone(),
                        snapshots: snapshots_tx,
                    }));
                    let mut cx = Context::from_waker(&waker);
                    let first_poll = Pin::new(&mut remote).poll(&mut cx).is_pending();
                    let dropped_before = *d.lock().expect("lock");
                    remote.abort();
                    let dropped_at_wake = snapshots
                        .recv_timeout(TIMEOUT)
                        .expect("the handle's waker was woken");
                    let result = match Pin::new(&mut remote).poll(&mut cx) {
                        Poll::Ready(result) => result,
                        Poll::Pending => panic!("pending after its waker was woken"),
                    };
                    (first_poll, dropped_before, dropped_at_wake, result)
                });
            assert!(first_poll, "finished before the abort");
            assert_eq!(dropped_before, None, "future dropped before the abort");
            assert_eq!(
                dropped_at_wake,
                Some(runtime_thread),
                "when the handle was woken, the future had not been dropped on the \
                 runtime's thread"
            );
            let err = result.expect_err("aborted");
            assert!(err.is_cancelled(), "got {err:?}");
            assert_eq!(rt.metrics().live_tasks, 0, "{:?}", rt.metrics());
        },
    );
}

#[test]
fn abort_before_the_remote_task_starts_means_it_never_runs() {
    bounded(
        "abort_before_the_remote_task_starts_means_it_never_runs",
        || {
            let rt = Runtime::new().expect("runtime");
            let ran = Arc::new(AtomicBool::new(false));
            let drops = Arc::new(AtomicUsize::new(0));
            let (r, g) = (ran.clone(), DropCounter(drops.clone()));
            let remote = rt.handle().spawn(async move {
                let _guard = g;
                r.store(true, Ordering::SeqCst);
            });
            remote.abort();
            let err = rt.block_on(remote).expect_err("aborted");
            assert!(err.is_cancelled(), "got {err:?}");
            assert!(!ran.load(Ordering::SeqCst), "the aborted future was polled");
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "the aborted future was not dropped"
            );
        },
    );
}

#[test]
fn handle_spawn_after_the_runtime_is_dropped_is_cancelled() {
    bounded(
        "handle_spawn_after_the_runtime_is_dropped_is_cancelled",
        || {
            let rt = Runtime::new().expect("runtime");
            let handle = rt.handle();
            drop(rt);

            let drops = Arc::new(AtomicUsize::new(0));
            let g = DropCounter(drops.clone());
            let task = handle.spawn(async move {
                let _guard = g;
                1
            });
            assert_eq!(
                drops.load(Ordering::SeqCst),
                1,
                "the future was not dropped at once"
            );
            assert!(task.is_finished(), "{task:?}");
            let err = block_on(task).expect_err("no runtime to run it");
            assert!(err.is_cancelled(), "got {err:?}");

            let ran = Arc::new(AtomicBool::new(false));
            let (r, g) = (ran.clone(), DropCounter(drops.clone()));
            let job = handle.spawn_blocking(move || {
                let _guard = g;
                r.store(true, Ordering::SeqCst);
            });
            let err = block_on(job).expect_err("no pool to run it");
            assert!(err.is_cancelled(), "got {err:?}");
            assert!(!ran.load(Ordering::SeqCst), "the job ran");
            assert_eq!(
                drops.load(Ordering::SeqCst),
                2,
                "the job's closure was not dropped"
            );
        },
    );
}

#[test]
fn handle_spawn_blocking_from_another_thread_gives_results_and_panics() {
    bounded(
        "handle_spawn_blocking_from_another_thread_gives_results_and_panics",
        || {
            let rt = Builder::new_current_thread()
                .thread_name("handle-pool")
                .build()
                .expect("runtime");
            let handle = rt.handle();
            // The runtime does not even run: the pool works on its own.
            let (name, err) = thread::spawn(move || {
                block_on(async {
                    let name = handle
                        .spawn_blocking(|| thread::current().name().map(str::to_owned))
                        .await;
                    let err = handle
                        .spawn_blocking(|| explode("remote blocking job failed"))
                        .await
                        .expect_err("the job panicked");
                    (name, err)
                })
            })
            .join()
            .expect("other thread");
            assert_eq!(name.expect("job").as_deref(), Some("handle-pool"));
            assert!(err.is_panic(), "got {err:?}");
            assert_eq!(
                panic_message(&*err.into_panic()),
                "remote blocking job failed"
            );
            assert_eq!(rt.metrics().spawned_tasks, 0, "blocking jobs are not tasks");
        },
    );
}

// ---------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn metrics_follow_a_scripted_workload() {
    bounded("metrics_follow_a_scripted_workload", || {
        let rt = Runtime::new().expect("runtime");
        assert_eq!(rt.metrics(), RuntimeMetrics::default(), "a new runtime");

        // Two tasks spawned outside `block_on`: queued, not polled.
        let a = rt.spawn(async { 1 });
        let b = rt.spawn(async {
            yield_now().await;
            2
        });
        let m = rt.metrics();
        assert_eq!(
            (m.spawned_tasks, m.live_tasks, m.queued_tasks, m.polls),
            (2, 2, 2, 0),
            "{m:?}"
        );

        // A future that is ready at once returns before any task or epoll.
        assert_eq!(rt.block_on(async { 5 }), 5);
        let m = rt.metrics();
        assert_eq!((m.polls, m.epoll_waits, m.live_tasks), (0, 0, 2), "{m:?}");

        // `a` takes one poll, `b` two (it yields once).
        let sum = rt.block_on(async { a.await.expect("a") + b.await.expect("b") });
        assert_eq!(sum, 3);
        let m = rt.metrics();
        assert_eq!(
            (m.spawned_tasks, m.live_tasks, m.queued_tasks, m.polls),
            (2, 0, 0, 3),
            "{m:?}"
        );
        assert!(m.epoll_waits >= 1, "the loop never looked at epoll: {m:?}");
        assert_eq!((m.io_events, m.registered_fds), (0, 0), "{m:?}");
        assert_eq!((m.timers_pending, m.timers_fired), (0, 0), "{m:?}");

        // Timers: one fires, one is cancelled before it is due.
        rt.block_on(async {
            let sleeper = spawn(sleep(Duration::from_millis(1)));
            let mut cancelled = Box::pin(sleep(Duration::from_secs(3600)));
            poll_fn(|cx| {
                assert!(cancelled.as_mut().poll(cx).is_pending(), "an hour passed");
                Poll::Ready(())
            })
            .await;
            yield_now().await; // the sleeper registers its timer
            let m = rt.metrics();
            assert_eq!((m.timers_pending, m.live_tasks), (2, 1), "{m:?}");
            drop(cancelled);
            assert_eq!(rt.metrics().timers_pending, 1, "after the drop");
            sleeper.await.expect("sleeper");
        });
        let m = rt.metrics();
        assert_eq!((m.timers_pending, m.timers_fired), (0, 1), "{m:?}");
        assert_eq!((m.timers_armed, m.timers_cancelled), (2, 1), "{m:?}");
        assert_eq!((m.spawned_tasks, m.polls), (3, 5), "{m:?}");
        assert_eq!(m.completed_tasks, 3, "{m:?}");

        // I/O: one registration, one event.
        rt.block_on(async {
            let (a, mut b) = socket_pair().expect("socket pair");
            let a = AsyncFd::new(a).expect("register");
            let m = rt.metrics();
            assert_eq!((m.registered_fds, m.epoll_ctl_add), (1, 1), "{m:?}");
            // Nothing to read yet: the first read says EAGAIN (counted), which
            // clears readiness; waiting then re-arms once (one MOD).
            let mut buf = [0_u8; 8];
            let err = a
                .try_io(Direction::Read, |mut s| s.read(&mut buf))
                .expect_err("nothing was written yet");
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
            let before = rt.metrics();
            assert_eq!(
                (before.read_would_block, before.epoll_ctl_mod),
                (1, 0),
                "{before:?}"
            );
            b.write_all(b"ping").expect("write");
            let n = a
                .io(Direction::Read, |mut s| s.read(&mut buf))
                .await
                .expect("read");
            assert_eq!(&buf[..n], b"ping");
            let after = rt.metrics();
            assert_eq!(
                after.io_events - before.io_events,
                1,
                "{before:?} -> {after:?}"
            );
            assert!(
                after.epoll_waits > before.epoll_waits,
                "{before:?} -> {after:?}"
            );
            assert_eq!(
                (after.epoll_ctl_mod, after.read_would_block),
                (1, 1),
                "{before:?} -> {after:?}"
            );
            assert_eq!(after.write_would_block, 0, "{after:?}");
            drop(a);
            let m = rt.metrics();
            assert_eq!((m.registered_fds, m.epoll_ctl_del), (0, 1), "{m:?}");
        });
        let m = rt.metrics();
        assert_eq!((m.io_events, m.registered_fds), (1, 0), "{m:?}");
        assert_eq!(
            m.events_per_wait.iter().sum::<u64>(),
            m.epoll_waits,
            "the histogram counts every wait: {m:?}"
        );
        assert_eq!(
            m.events_per_wait[1], 1,
            "one wait returned one event: {m:?}"
        );
        assert_eq!(
            (m.empty_wakeups, m.remote_wakes, m.remote_jobs),
            (0, 0, 0),
            "{m:?}"
        );
        assert_eq!((m.blocking_threads, m.blocking_queue), (0, 0), "{m:?}");
    });
}

#[test]
fn metrics_count_how_tasks_end() {
    bounded("metrics_count_how_tasks_end", || {
        let rt = Runtime::new().expect("runtime");
        rt.block_on(async {
            let ok: Vec<_> = (0..4).map(|i| spawn(async move { i })).collect();
            let failed: Vec<_> = (0..3)
                .map(|_| spawn(async { explode("counted") }))
                .collect();
            let stuck: Vec<_> = (0..2).map(|_| spawn(pending::<()>())).collect();
            yield_now().await; // every task has been polled once
            for task in &stuck {
                task.abort();
            }
            for task in ok {
                task.await.expect("completes");
            }
            for task in failed {
                assert!(task.await.expect_err("panics").is_panic());
            }
            for task in stuck {
                assert!(task.await.expect_err("aborted").is_cancelled());
            }
        });
        let m = rt.metrics();
        assert_eq!(
            (
                m.spawned_tasks,
                m.completed_tasks,
                m.panicked_tasks,
                m.aborted_tasks,
                m.live_tasks
            ),
            (9, 4, 3, 2, 0),
            "{m:?}"
        );
        // A task left pending when the runtime is dropped is none of the three.
        rt.block_on(async {
            drop(spawn(pending::<()>()));
            yield_now().await;
        });
        let m = rt.metrics();
        assert_eq!((m.spawned_tasks, m.live_tasks), (10, 1), "{m:?}");
        assert_eq!(
            m.completed_tasks + m.panicked_tasks + m.aborted_tasks,
            9,
            "{m:?}"
        );
    });
}

#[test]
fn a_notification_with_nothing_in_the_inbox_is_an_empty_wakeup() {
    bounded(
        "a_notification_with_nothing_in_the_inbox_is_an_empty_wakeup",
        || {
            let rt = Runtime::new().expect("runtime");
            let inbox = rt.core.executor.inbox().clone();
            let mut waited = false;
            rt.block_on(poll_fn(|cx| {
                if waited {
                    return Poll::Ready(());
                }
                waited = true;
                let (inbox, waker) = (inbox.clone(), cx.waker().clone());
                thread::spawn(move || {
                    // A bare notification: the loop wakes and finds nothing.
                    inbox.notify();
                    // Once the loop has drained it (a wake before that would ride
                    // on the same notification)...
                    let start = std::time::Instant::now();
                    while inbox.is_notified() {
                        assert!(start.elapsed() < TIMEOUT, "the loop never drained");
                        thread::yield_now();
                    }
                    // ...a real wake, from this thread.
                    waker.wake();
                });
                Poll::Pending
            }));
            let m = rt.metrics();
            assert_eq!(m.empty_wakeups, 1, "{m:?}");
            // The wake flips the future's flag before its inbox push: the loop may
            // see the flag at the top of its next turn and return before the push
            // arrives (no second wait, no remote wake counted), or wait and drain it.
            assert!(
                matches!((m.epoll_waits, m.remote_wakes), (1, 0) | (2, 1)),
                "{m:?}"
            );
        },
    );
}

#[test]
fn handle_metrics_answers_from_other_threads_and_between_block_ons() {
    bounded(
        "handle_metrics_answers_from_other_threads_and_between_block_ons",
        || {
            let rt = Runtime::new().expect("runtime");
            let handle = rt.handle();
            assert_eq!(handle.metrics(), RuntimeMetrics::default(), "never run");
            let on_thread = rt.block_on(async {
                let tasks: Vec<_> = (0..3).map(|_| spawn(pending::<()>())).collect();
                yield_now().await;
                // On the runtime's own thread: read directly (asking would deadlock).
                let here = Handle::current().metrics();
                assert_eq!(here.live_tasks, 3, "{here:?}");
                // From another thread while the runtime runs: the loop answers.
                let remote = handle.clone();
                let there = spawn_blocking(move || remote.metrics())
                    .await
                    .expect("metrics job");
                // The three, and the task that awaits the blocking job.
                assert_eq!(there.live_tasks, 4, "{there:?}");
                assert!(there.remote_jobs >= 1, "the request is a job: {there:?}");
                drop(tasks);
                here
            });
            assert_eq!(on_thread.spawned_tasks, 3);
            // Between `block_on` calls: the snapshot taken when the last returned,
            // at once, also from another thread.
            let remote = handle.clone();
            let between = thread::spawn(move || remote.metrics())
                .join()
                .expect("metrics thread");
            assert_eq!(between, rt.metrics(), "published at return");
            drop(rt);
            let after = handle.metrics();
            assert_eq!(after.spawned_tasks, 4, "the final counts: {after:?}");
        },
    );
}

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn handle_metrics_after_the_runtime_is_dropped_shows_its_final_state() {
    bounded(
        "handle_metrics_after_the_runtime_is_dropped_shows_its_final_state",
        || {
            let rt = Runtime::new().expect("runtime");
            let handle = rt.handle();
            rt.block_on(async {
                let (a, _b) = socket_pair().expect("socket pair");
                let held = AsyncFd::new(a).expect("register");
                // Left pending when `block_on` returns, holding its registration.
                drop(spawn(async move {
                    let _held = held;
                    pending::<()>().await;
                }));
                yield_now().await;
            });
            let running = handle.metrics();
            assert_eq!((running.live_tasks, running.registered_fds), (1, 1));
            drop(rt);
            let m = handle.metrics();
            assert_eq!(
                (m.live_tasks, m.registered_fds, m.epoll_ctl_del),
                (0, 0, 1),
                "after the drop: {m}"
            );
        },
    );
}

#[test]
fn handle_metrics_inside_another_runtime_does_not_wait() {
    bounded(
        "handle_metrics_inside_another_runtime_does_not_wait",
        || {
            /// Asks runtime A for its metrics when dropped.
            struct AskOnDrop(Handle, Rc<Cell<Option<RuntimeMetrics>>>);
            impl Drop for AskOnDrop {
                fn drop(&mut self) {
                    self.1.set(Some(self.0.metrics()));
                }
            }
            let a = Runtime::new().expect("runtime A");
            let handle_a = a.handle();
            let asked = Rc::new(Cell::new(None));
            let got = asked.clone();
            a.block_on(async move {
                spawn(async {}).await.expect("a task of A");
                // Runtime B, dropped inside A's `block_on`: its task's destructor runs
                // with B current, on the thread that drives A. Waiting there for A's
                // loop would wait for ever.
                let b = Runtime::new().expect("runtime B");
                let guard = AskOnDrop(handle_a, got);
                drop(b.spawn(async move {
                    let _guard = guard;
                    pending::<()>().await;
                }));
                drop(b);
            });
            let m = asked.take().expect("the destructor ran");
            // The latest published snapshot: A's, taken before its block_on (none yet).
            assert_eq!(m, RuntimeMetrics::default(), "{m}");
        },
    );
}

#[test]
fn remote_tasks_count_their_panics_and_aborts() {
    bounded("remote_tasks_count_their_panics_and_aborts", || {
        let rt = Runtime::new().expect("runtime");
        let handle = rt.handle();
        let ok = handle.spawn(async { 1 });
        let failed = handle.spawn(async { explode("remote") });
        let stuck = handle.spawn(pending::<u32>());
        rt.block_on(async {
            assert_eq!(ok.await.expect("completes"), 1);
            assert!(failed.await.expect_err("panics").is_panic());
            yield_now().await; // the stuck task has started
            stuck.abort();
            assert!(stuck.await.expect_err("aborted").is_cancelled());
        });
        let m = rt.metrics();
        assert_eq!(
            (m.completed_tasks, m.panicked_tasks, m.aborted_tasks),
            (1, 1, 1),
            "{m}"
        );
    });
}

// ---------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------

/// Runs 50 tasks that each yield three times (four polls each) and checks their
/// outputs; returns the metrics afterwards.
fn run_yielding_tasks(rt: &Runtime) -> RuntimeMetrics {
    rt.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                spawn(async move {
                    for _ in 0..3 {
                        yield_now().await;
                    }
                    i
                })
            })
            .collect();
        let mut outputs = Vec::new();
        for task in tasks {
            outputs.push(task.await.expect("task"));
        }
        assert_eq!(outputs, (0..50).collect::<Vec<_>>());
    });
    rt.metrics()
}

#[test]
fn event_interval_of_one_still_runs_every_task() {
    bounded("event_interval_of_one_still_runs_every_task", || {
        let rt = Builder::new_current_thread()
            .event_interval(1)
            .build()
            .expect("runtime");
        let m = run_yielding_tasks(&rt);
        assert_eq!((m.polls, m.live_tasks), (200, 0), "{m:?}");
        // One task per turn: epoll is looked at after every poll.
        assert!(m.epoll_waits >= m.polls, "{m:?}");

        // The default polls many tasks per turn.
        let m = run_yielding_tasks(&Runtime::new().expect("runtime"));
        assert_eq!((m.polls, m.live_tasks), (200, 0), "{m:?}");
        assert!(m.epoll_waits < 50, "{m:?}");
    });
}

#[test]
fn start_paused_makes_an_hour_long_sleep_complete_at_once() {
    bounded(
        "start_paused_makes_an_hour_long_sleep_complete_at_once",
        || {
            let rt = Builder::new_current_thread()
                .start_paused(true)
                .build()
                .expect("runtime");
            let hour = Duration::from_secs(3600);
            let real_start = Instant::now();
            let slept = rt.block_on(async {
                let start = time::now();
                sleep(hour).await;
                time::now() - start
            });
            let real = real_start.elapsed();
            assert!(slept >= hour, "the runtime's clock moved only {slept:?}");
            assert!(
                slept < hour + Duration::from_secs(1),
                "the clock moved {slept:?}"
            );
            assert!(real < TIMEOUT, "the sleep took {real:?} of real time");
            assert_eq!(rt.metrics().timers_fired, 1, "{:?}", rt.metrics());
        },
    );
}

#[test]
#[cfg_attr(miri, ignore = "needs EPOLLONESHOT, which Miri's epoll lacks")]
fn max_io_events_per_tick_of_one_still_delivers_every_event() {
    bounded(
        "max_io_events_per_tick_of_one_still_delivers_every_event",
        || {
            let rt = Builder::new_current_thread()
                .max_io_events_per_tick(1)
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut peers = Vec::new();
                let mut readers = Vec::new();
                for i in 0..5_u8 {
                    let (a, b) = socket_pair().expect("socket pair");
                    let a = AsyncFd::new(a).expect("register");
                    a.clear_ready(Direction::Read);
                    peers.push(b);
                    readers.push(spawn(async move {
                        let mut buf = [0_u8; 8];
                        let n = a
                            .io(Direction::Read, |mut s| s.read(&mut buf))
                            .await
                            .unwrap_or_else(|e| panic!("reader {i}: {e}"));
                        buf[..n].to_vec()
                    }));
                }
                yield_now().await; // every reader waits, its fd armed
                let before = rt.metrics();
                assert_eq!(before.registered_fds, 5, "{before:?}");
                // All five become readable before the loop looks at epoll again.
                for (i, peer) in (0_u8..).zip(&mut peers) {
                    peer.write_all(&[i; 3]).expect("write");
                }
                for (i, reader) in (0_u8..).zip(readers) {
                    let got = reader.await.unwrap_or_else(|e| panic!("reader {i}: {e}"));
                    assert_eq!(got, [i; 3], "reader {i}");
                }
                let after = rt.metrics();
                assert_eq!(
                    after.io_events - before.io_events,
                    5,
                    "{before:?} -> {after:?}"
                );
                assert!(
                    after.epoll_waits - before.epoll_waits >= 5,
                    "five events with at most one per `epoll_wait`: {before:?} -> {after:?}"
                );
            });
        },
    );
}

/// Fails today: `Builder::max_io_events_per_tick` accepts any `n > 0`, the reactor
/// sizes its event buffer to `n` and passes that capacity to `epoll_wait` as
/// `maxevents`; above the kernel's `EP_MAX_EVENTS` (`INT_MAX / sizeof(struct
/// epoll_event)`) every `epoll_wait` fails with `EINVAL` and `block_on` panics. Either
/// clamping the value or rejecting it up front (builder panic or `build` error)
/// passes this test.
///
/// Runs in a process of its own: the event buffer reserves 2 GiB of address space
/// (untouched, so it costs no memory), and a refused allocation would abort the
/// process.
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn max_io_events_per_tick_above_the_kernel_limit_still_runs() -> io::Result<()> {
    const NAME: &str = "max_io_events_per_tick_above_the_kernel_limit_still_runs";
    if std::env::var_os(OWN_PROCESS_ENV).is_none() {
        rerun_in_own_process(module_path!(), NAME)?;
        return Ok(());
    }
    bounded(NAME, || {
        let kernel_limit = i32::MAX as usize / size_of::<crate::sys::epoll::Event>();
        let n = kernel_limit + 1;
        let mut builder = Builder::new_current_thread();
        if catch_unwind(AssertUnwindSafe(|| {
            builder.max_io_events_per_tick(n);
        }))
        .is_err()
        {
            return; // rejected up front: fine
        }
        let rt = match builder.build() {
            Ok(rt) => rt,
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => return, // also fine
            Err(e) => panic!("`build` with max_io_events_per_tick({n}): {e}"),
        };
        let ran = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async {
                yield_now().await; // needs one turn of the loop
                7
            })
        }));
        match ran {
            Ok(value) => assert_eq!(value, 7),
            Err(payload) => panic!(
                "a runtime built with max_io_events_per_tick({n}) (kernel limit \
                 {kernel_limit}) cannot run: {}",
                panic_message(&*payload)
            ),
        }
    });
    Ok(())
}

/// Sets one of the builder's knobs to zero.
type SetZero = fn(&mut Builder);

#[test]
fn builder_rejects_zero_with_the_documented_messages() {
    bounded("builder_rejects_zero_with_the_documented_messages", || {
        let cases: [(&str, SetZero); 3] = [
            ("`event_interval` must be at least 1", |b| {
                b.event_interval(0);
            }),
            ("`max_io_events_per_tick` must be at least 1", |b| {
                b.max_io_events_per_tick(0);
            }),
            ("`max_blocking_threads` must be at least 1", |b| {
                b.max_blocking_threads(0);
            }),
        ];
        for (expected, set_zero) in cases {
            let payload = catch_unwind(AssertUnwindSafe(|| {
                set_zero(&mut Builder::new_current_thread());
            }))
            .expect_err(expected);
            assert_eq!(panic_message(&*payload), expected);
        }
    });
}

// ---------------------------------------------------------------------------------
// Misuse and panics
// ---------------------------------------------------------------------------------

/// A call that starts a runtime.
type NestedCall<'a> = Box<dyn Fn() + 'a>;

#[test]
fn block_on_inside_block_on_panics_with_the_documented_message() {
    bounded(
        "block_on_inside_block_on_panics_with_the_documented_message",
        || {
            let rt = Runtime::new().expect("runtime");
            let other = Runtime::new().expect("runtime");
            let answer = rt.block_on(async {
                let nested: [(&str, NestedCall<'_>); 3] = [
                    ("the same runtime", Box::new(|| rt.block_on(async {}))),
                    ("another runtime", Box::new(|| other.block_on(async {}))),
                    ("the free function", Box::new(|| block_on(async {}))),
                ];
                for (what, call) in nested {
                    let payload = catch_unwind(AssertUnwindSafe(call)).expect_err(what);
                    assert_eq!(panic_message(&*payload), NESTED_BLOCK_ON, "{what}");
                }
                // The outer runtime goes on.
                spawn(async { 42 }).await.expect("task")
            });
            assert_eq!(answer, 42);
            assert_eq!(
                other.block_on(async { 1 }),
                1,
                "the other runtime still works"
            );
        },
    );
}

#[test]
fn a_panic_in_block_on_propagates_and_the_runtime_stays_usable() {
    bounded(
        "a_panic_in_block_on_propagates_and_the_runtime_stays_usable",
        || {
            let rt = Runtime::new().expect("runtime");
            let gate = LocalGate::default();
            let g = gate.clone();
            let outside = rt.spawn(async move {
                g.wait().await;
                "outside"
            });
            let inside = Rc::new(RefCell::new(None));
            let payload = catch_unwind(AssertUnwindSafe(|| {
                rt.block_on(async {
                    let g = gate.clone();
                    *inside.borrow_mut() = Some(spawn(async move {
                        g.wait().await;
                        "inside"
                    }));
                    yield_now().await; // both tasks wait on the gate
                    explode("block_on future failed")
                })
            }))
            .expect_err("the future panicked");
            assert_eq!(panic_message(&*payload), "block_on future failed");
            assert!(
                catch_unwind(Handle::current).is_err(),
                "the runtime is still current after the panic"
            );
            let m = rt.metrics();
            assert_eq!(m.live_tasks, 2, "tasks kept: {m:?}");

            let inside = inside.take().expect("spawned before the panic");
            let outputs = rt.block_on(async {
                gate.open();
                (outside.await, inside.await)
            });
            assert_eq!(outputs.0.expect("outside"), "outside");
            assert_eq!(outputs.1.expect("inside"), "inside");
            assert_eq!(rt.metrics().live_tasks, 0);
        },
    );
}
