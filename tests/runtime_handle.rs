//! `Handle` and wakers under load from many threads, through the facade crate:
//! 10,000 remote spawns from 8 threads at once, a million cross-thread wakes of one
//! task, wakes that land while the task is being polled, and `spawn_blocking`
//! results and panics.
//!
//! The runtime's thread waits for the other threads by awaiting a `spawn_blocking`
//! job that joins them, so it keeps running (and serving remote spawns) meanwhile.

mod support;

use std::future::poll_fn;
use std::io;
use std::panic::resume_unwind;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::task::{Poll, Waker};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use edgeloop::{
    Handle, JoinError, RemoteJoinHandle, Runtime, RuntimeMetrics, spawn_blocking, yield_now,
};
use support::with_timeout;

/// The message of a panic payload (`&str` or `String`).
fn panic_message(err: JoinError) -> String {
    let payload = err.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".to_owned())
}

/// Panics with a formatted message; typed, so a closure around it has an output.
fn explode(what: &str) -> u32 {
    panic!("{what} failed")
}

#[test]
fn handle_and_remote_join_handle_may_cross_threads() {
    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync_clone::<Handle>();
    assert_send_sync::<RemoteJoinHandle<Vec<u8>>>();
}

#[test]
fn ten_thousand_remote_spawns_from_eight_threads_each_deliver_exactly_once() -> io::Result<()> {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 1_250;
    with_timeout(20, "10,000 remote spawns", || {
        let rt = Runtime::new()?;
        let runtime_thread = thread::current().id();
        let runs = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(THREADS));
        let spawners: Vec<_> = (0..THREADS)
            .map(|t| {
                let handle: Handle = rt.handle();
                let (runs, start) = (runs.clone(), start.clone());
                thread::spawn(move || {
                    start.wait(); // all eight spawn at the same time
                    let tasks: Vec<RemoteJoinHandle<(usize, ThreadId)>> = (0..PER_THREAD)
                        .map(|i| {
                            let runs = runs.clone();
                            handle.spawn(async move {
                                runs.fetch_add(1, Ordering::SeqCst);
                                yield_now().await;
                                (t * PER_THREAD + i, thread::current().id())
                            })
                        })
                        .collect();
                    // Awaited here, in a runtime of this thread's own.
                    edgeloop::block_on(async {
                        let mut outputs = Vec::with_capacity(PER_THREAD);
                        for (i, task) in tasks.into_iter().enumerate() {
                            let output = task
                                .await
                                .unwrap_or_else(|e| panic!("thread {t}, task {i}: {e}"));
                            outputs.push(output);
                        }
                        outputs
                    })
                })
            })
            .collect();
        let joined = rt.block_on(async move {
            spawn_blocking(move || spawners.into_iter().map(|s| s.join()).collect::<Vec<_>>()).await
        })?;

        let mut values = Vec::with_capacity(THREADS * PER_THREAD);
        for (t, outputs) in joined.into_iter().enumerate() {
            let outputs = outputs.unwrap_or_else(|payload| resume_unwind(payload));
            let own: Vec<usize> = outputs.iter().map(|&(value, _)| value).collect();
            let expected: Vec<usize> = (t * PER_THREAD..(t + 1) * PER_THREAD).collect();
            assert_eq!(
                own, expected,
                "thread {t}: each handle gives its own task's output"
            );
            for (value, ran_on) in outputs {
                assert_eq!(
                    ran_on, runtime_thread,
                    "task {value} ran off the runtime's thread"
                );
                values.push(value);
            }
        }
        values.sort_unstable();
        let expected: Vec<usize> = (0..THREADS * PER_THREAD).collect();
        assert!(values == expected, "some outputs are missing or duplicated");
        assert_eq!(
            runs.load(Ordering::SeqCst),
            THREADS * PER_THREAD,
            "futures started"
        );
        let m: RuntimeMetrics = rt.metrics();
        // Every remote future became one task, plus the task awaiting the join job.
        assert_eq!(m.spawned_tasks, (THREADS * PER_THREAD + 1) as u64, "{m:?}");
        assert_eq!(m.live_tasks, 0, "{m:?}");
        Ok(())
    })
}

#[test]
fn a_million_cross_thread_wakes_never_poll_a_task_concurrently_and_none_is_lost() -> io::Result<()>
{
    const WAKERS: usize = 4;
    const WAKES_PER_THREAD: usize = 250_000;
    with_timeout(20, "wake storm", || {
        let rt = Runtime::new()?;
        let in_poll = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let (waker_tx, waker_rx) = mpsc::channel::<Waker>();
        let task = {
            let (in_poll, done) = (in_poll.clone(), done.clone());
            let mut waker_tx = Some(waker_tx);
            let mut polls = 0_u64;
            rt.spawn(poll_fn(move |cx| {
                assert!(
                    !in_poll.swap(true, Ordering::SeqCst),
                    "polled while a poll was running"
                );
                polls += 1;
                if let Some(tx) = waker_tx.take() {
                    tx.send(cx.waker().clone())
                        .expect("the test holds the receiver");
                }
                // Read after the flag is up: every storm wake came before this load
                // once it says all threads are done.
                let all_done = done.load(Ordering::SeqCst) == WAKERS;
                // Widens the window in which a wake arrives during the poll.
                for _ in 0..200 {
                    std::hint::spin_loop();
                }
                in_poll.store(false, Ordering::SeqCst);
                if all_done {
                    Poll::Ready(polls)
                } else {
                    Poll::Pending
                }
            }))
        };
        let (polls, wakers) = rt.block_on(async move {
            yield_now().await; // the task's first poll sends its waker
            let waker = waker_rx
                .try_recv()
                .expect("the task ran and sent its waker");
            let start = Arc::new(Barrier::new(WAKERS));
            let wakers: Vec<_> = (0..WAKERS)
                .map(|_| {
                    let (waker, start, done) = (waker.clone(), start.clone(), done.clone());
                    thread::spawn(move || {
                        start.wait();
                        for _ in 0..WAKES_PER_THREAD {
                            waker.wake_by_ref();
                        }
                        done.fetch_add(1, Ordering::SeqCst);
                        // The wake that lets the task see this thread's `done`.
                        waker.wake_by_ref();
                    })
                })
                .collect();
            drop(waker);
            let polls = task.await.unwrap_or_else(|e| panic!("the woken task: {e}"));
            (polls, wakers)
        });
        for (i, waker) in wakers.into_iter().enumerate() {
            waker
                .join()
                .unwrap_or_else(|_| panic!("waking thread {i} panicked"));
        }
        let wakes = (WAKERS * (WAKES_PER_THREAD + 1)) as u64;
        assert!(polls >= 2, "polled {polls} times: never after the storm");
        // Every poll but the first needs a wake; a burst of wakes queues it once.
        assert!(polls <= wakes + 1, "polled {polls} times for {wakes} wakes");
        assert!(!in_poll.load(Ordering::SeqCst), "left marked as in a poll");
        let m = rt.metrics();
        assert_eq!(
            m.polls, polls,
            "task polls against the runtime's count: {m:?}"
        );
        assert_eq!(m.live_tasks, 0, "{m:?}");
        Ok(())
    })
}

#[test]
fn a_cross_thread_wake_during_a_poll_is_never_lost() -> io::Result<()> {
    const ROUNDS: u64 = 2_000;
    with_timeout(20, "wakes during polls", || {
        let rt = Runtime::new()?;
        // The round the waking thread is in, and the last one the task has seen.
        let round = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicU64::new(0));
        let (waker_tx, waker_rx) = mpsc::channel::<Waker>();
        let task = {
            let (round, seen) = (round.clone(), seen.clone());
            let mut waker_tx = Some(waker_tx);
            let mut polls = 0_u64;
            rt.spawn(poll_fn(move |cx| {
                polls += 1;
                if let Some(tx) = waker_tx.take() {
                    tx.send(cx.waker().clone())
                        .expect("the test holds the receiver");
                }
                let current = round.load(Ordering::SeqCst);
                // The waking thread starts the next round as soon as it sees this,
                // so its wake often lands while this poll is still running: that
                // wake must poll the task again.
                seen.store(current, Ordering::SeqCst);
                for _ in 0..200 {
                    std::hint::spin_loop();
                }
                if current == ROUNDS {
                    Poll::Ready(polls)
                } else {
                    Poll::Pending
                }
            }))
        };
        let (polls, waking) = rt.block_on(async move {
            yield_now().await; // the task's first poll sends its waker
            let waker = waker_rx
                .try_recv()
                .expect("the task ran and sent its waker");
            let waking = thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                for next in 1..=ROUNDS {
                    while seen.load(Ordering::SeqCst) != next - 1 {
                        if Instant::now() > deadline {
                            return Err(format!("round {} never seen", next - 1));
                        }
                        thread::yield_now();
                    }
                    round.store(next, Ordering::SeqCst);
                    waker.wake_by_ref();
                }
                Ok(())
            });
            let polls = task.await.unwrap_or_else(|e| panic!("the woken task: {e}"));
            (polls, waking)
        });
        waking
            .join()
            .expect("waking thread")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(polls > ROUNDS, "{polls} polls for {ROUNDS} rounds");
        Ok(())
    })
}

#[test]
fn spawn_blocking_through_the_facade_gives_results_and_panics() -> io::Result<()> {
    with_timeout(10, "spawn_blocking through the facade", || {
        edgeloop::block_on(async {
            let caller = thread::current().id();
            let (sum, ran_on) =
                spawn_blocking(|| ((1..=100_u32).sum::<u32>(), thread::current().id())).await?;
            assert_eq!(sum, 5050);
            assert_ne!(ran_on, caller, "the job ran on the runtime's thread");

            let err: JoinError = spawn_blocking(|| explode("facade job"))
                .await
                .expect_err("the job panicked");
            assert!(err.is_panic(), "got {err:?}");
            assert_eq!(panic_message(err), "facade job failed");

            // Through a `Handle` too, from the runtime's own thread.
            let handle = edgeloop::runtime::Handle::current();
            let name = handle
                .spawn_blocking(|| thread::current().name().map(str::to_owned))
                .await?;
            assert_eq!(name.as_deref(), Some("edgeloop-blocking"));
            let err = handle
                .spawn_blocking(|| explode("handle job"))
                .await
                .expect_err("the job panicked");
            assert!(err.is_panic(), "got {err:?}");
            assert_eq!(panic_message(err), "handle job failed");
            Ok(())
        })
    })
}
