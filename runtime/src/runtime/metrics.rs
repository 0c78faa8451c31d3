//! [`RuntimeMetrics`]: a snapshot of a runtime's counters, and [`Published`], the
//! copy of it that [`Handle::metrics`](crate::Handle::metrics) reads from other
//! threads.
//!
//! The counters are plain integers in the single-threaded parts (executor, reactor,
//! timers, loop), bumped without atomics; a snapshot copies them. Only the blocking
//! pool's figures, shared with its threads, are read under its lock.
//!
//! Another thread cannot read those cells. It asks the runtime's thread for a
//! snapshot instead: a job in the inbox (the same line as a cross-thread wake) that
//! copies the counters into [`Published`] and signals its condvar. The loop's turns
//! pay nothing for this until someone asks; each `block_on` takes the (uncontended)
//! lock once on entry and publishes a snapshot when it returns, and so does the
//! runtime's shutdown.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::reactor::EVENTS_PER_WAIT_BUCKETS;

/// A snapshot of a runtime's counters, from [`Runtime::metrics`](crate::Runtime::metrics)
/// or [`Handle::metrics`](crate::Handle::metrics). Totals count from the runtime's
/// creation; "now" figures are as of the snapshot.
///
/// Every counter is a plain integer bumped on the runtime's thread (no atomics on
/// the hot path), so taking a snapshot costs a few dozen loads.
///
/// # Examples
///
/// ```
/// let rt = edgeloop_runtime::Runtime::new()?;
/// rt.block_on(async {
///     edgeloop_runtime::spawn(async {}).await.unwrap();
/// });
/// let m = rt.metrics();
/// assert_eq!(m.live_tasks, 0);
/// assert_eq!(m.spawned_tasks, 1);
/// assert_eq!(m.completed_tasks, 1);
/// assert!(m.polls >= 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RuntimeMetrics {
    // Tasks.
    /// Tasks spawned and not yet finished, now (the `block_on` future is not a task;
    /// the signal driver that the first [`signal`](crate::signal::signal) starts is).
    pub live_tasks: usize,
    /// Tasks spawned in all (each [`spawn_blocking`](crate::spawn_blocking) counts
    /// one: the task that awaits the job).
    pub spawned_tasks: u64,
    /// Tasks whose future returned.
    pub completed_tasks: u64,
    /// Tasks whose future panicked (whether or not anyone saw the panic).
    pub panicked_tasks: u64,
    /// Tasks aborted (through a `JoinHandle`, an `AbortHandle` or a `JoinSet`) before
    /// they finished. Tasks dropped when the runtime shuts down are not counted.
    pub aborted_tasks: u64,
    /// Task polls in all.
    pub polls: u64,
    /// Tasks waiting in the run queue, now.
    pub queued_tasks: usize,
    /// I/O and timer operations that returned `Pending` because their task had used
    /// up its cooperative budget (see [`task::consume_budget`](crate::task::consume_budget)).
    pub budget_yields: u64,

    // Reactor.
    /// File descriptors registered with the reactor, now.
    pub registered_fds: usize,
    /// `epoll_wait` calls in all.
    pub epoll_waits: u64,
    /// I/O events dispatched to registrations in all (not counting cross-thread
    /// notifications, nor events for fds deregistered meanwhile).
    pub io_events: u64,
    /// `epoll_wait` calls by how many events they returned (cross-thread
    /// notifications included): bucket 0 counts calls that returned none, bucket
    /// `b` calls that returned between `2^(b-1)` and `2^b - 1`, and the last bucket
    /// 1024 or more. Its sum is [`epoll_waits`](Self::epoll_waits).
    pub events_per_wait: [u64; EVENTS_PER_WAIT_BUCKETS],
    /// `EPOLL_CTL_ADD` calls: one per registration.
    pub epoll_ctl_add: u64,
    /// `EPOLL_CTL_MOD` calls: the re-arms that `EPOLLONESHOT` needs when a task
    /// waits for an fd.
    pub epoll_ctl_mod: u64,
    /// `EPOLL_CTL_DEL` calls: one per registration dropped while the runtime ran.
    pub epoll_ctl_del: u64,
    /// Reads (and accepts, and receives) that the reactor ran and that returned
    /// `WouldBlock` (`EAGAIN`): syscalls spent learning that there was nothing to
    /// read. Counts operations run through [`AsyncFd::poll_io`](crate::AsyncFd::poll_io),
    /// [`io`](crate::AsyncFd::io) and [`try_io`](crate::AsyncFd::try_io), which is
    /// every I/O type of `edgeloop-net`; a stream read that comes back short needs
    /// none (the socket is known to be drained).
    pub read_would_block: u64,
    /// Writes (and sends, and connects) that returned `WouldBlock`, counted like
    /// [`read_would_block`](Self::read_would_block).
    pub write_would_block: u64,
    /// Pauses in [`wait_for_fd_release`](crate::wait_for_fd_release): each time an
    /// `accept` of `edgeloop-net` found the process out of file descriptors (or
    /// memory) and waited instead of spinning.
    pub fd_release_waits: u64,

    // The loop.
    /// Times the loop's thread woke from a sleeping `epoll_wait` and found nothing to
    /// do: no I/O event, no cross-thread wake or job, no timer due. A high count
    /// means wasted wakeups. Signals that interrupt the wait (`EINTR`) count here,
    /// and so does the notification the blocking pool sends when its last running
    /// job ends, if the loop had already seen that job's result.
    pub empty_wakeups: u64,
    /// Task wakes that came through the inbox: wakers used on other threads
    /// (blocking jobs finishing among them), and wakes made on the runtime's thread
    /// while no `block_on` was running.
    pub remote_wakes: u64,
    /// Jobs that came from other threads ([`Handle::spawn`](crate::Handle::spawn),
    /// [`Handle::metrics`](crate::Handle::metrics)).
    pub remote_jobs: u64,

    // Timers.
    /// Timers pending now.
    pub timers_pending: usize,
    /// Timers added in all (a sleep that is over before its first poll adds none).
    pub timers_armed: u64,
    /// Timers fired in all.
    pub timers_fired: u64,
    /// Timers removed before they fired (a `Sleep` or `timeout` dropped early).
    pub timers_cancelled: u64,

    // Blocking pool.
    /// Threads alive in the blocking pool, now.
    pub blocking_threads: usize,
    /// Blocking jobs waiting for a thread, now.
    pub blocking_queue: usize,
}

impl RuntimeMetrics {
    /// Mean number of events per `epoll_wait` call, from
    /// [`io_events`](Self::io_events) and [`epoll_waits`](Self::epoll_waits)
    /// (0.0 before the first wait).
    pub fn mean_io_events_per_wait(&self) -> f64 {
        if self.epoll_waits == 0 {
            return 0.0;
        }
        // Precision loss only past 2^53 events, which no test will see.
        #[allow(clippy::cast_precision_loss)]
        let mean = self.io_events as f64 / self.epoll_waits as f64;
        mean
    }
}

/// Prints the snapshot as `name=value` pairs on one line, the "now" figures first;
/// the histogram is shown as its non-empty buckets, `events_per_wait=[0:12 1:40]`.
impl std::fmt::Display for RuntimeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "live_tasks={} queued_tasks={} registered_fds={} timers_pending={} \
             blocking_threads={} blocking_queue={} spawned_tasks={} completed_tasks={} \
             panicked_tasks={} aborted_tasks={} polls={} budget_yields={} epoll_waits={} \
             io_events={} epoll_ctl_add={} epoll_ctl_mod={} epoll_ctl_del={} \
             read_would_block={} write_would_block={} fd_release_waits={} empty_wakeups={} \
             remote_wakes={} \
             remote_jobs={} timers_armed={} timers_fired={} timers_cancelled={} \
             events_per_wait=[",
            self.live_tasks,
            self.queued_tasks,
            self.registered_fds,
            self.timers_pending,
            self.blocking_threads,
            self.blocking_queue,
            self.spawned_tasks,
            self.completed_tasks,
            self.panicked_tasks,
            self.aborted_tasks,
            self.polls,
            self.budget_yields,
            self.epoll_waits,
            self.io_events,
            self.epoll_ctl_add,
            self.epoll_ctl_mod,
            self.epoll_ctl_del,
            self.read_would_block,
            self.write_would_block,
            self.fd_release_waits,
            self.empty_wakeups,
            self.remote_wakes,
            self.remote_jobs,
            self.timers_armed,
            self.timers_fired,
            self.timers_cancelled,
        )?;
        let mut first = true;
        for (bucket, &count) in self.events_per_wait.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let low = if bucket == 0 { 0 } else { 1u64 << (bucket - 1) };
            let sep = if first { "" } else { " " };
            first = false;
            write!(f, "{sep}{low}:{count}")?;
        }
        f.write_str("]")
    }
}

/// The latest snapshot a runtime published, for [`Handle::metrics`](crate::Handle::metrics)
/// on other threads.
#[derive(Debug, Default)]
pub(crate) struct Published {
    state: Mutex<PublishedState>,
    /// Signalled at each publication.
    changed: Condvar,
}

#[derive(Debug, Default)]
struct PublishedState {
    snapshot: RuntimeMetrics,
    /// Bumped at each publication.
    version: u64,
    /// Whether a `block_on` is driving the runtime (so an asked-for snapshot will
    /// come).
    running: bool,
}

impl Published {
    fn lock(&self) -> MutexGuard<'_, PublishedState> {
        // The state is only ever assigned whole: a panic cannot leave it half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `snapshot` as the latest and records whether the runtime is running;
    /// wakes every waiting reader.
    pub(crate) fn publish(&self, snapshot: RuntimeMetrics, running: bool) {
        let mut state = self.lock();
        state.snapshot = snapshot;
        state.version += 1;
        state.running = running;
        drop(state);
        self.changed.notify_all();
    }

    /// Records that a `block_on` started driving the runtime.
    pub(crate) fn set_running(&self) {
        self.lock().running = true;
    }

    /// The latest snapshot published, without asking for a new one.
    pub(crate) fn latest(&self) -> RuntimeMetrics {
        self.lock().snapshot
    }

    /// A fresh snapshot: `ask` sends the runtime's thread a request to publish one
    /// (false if the runtime has shut down), then this waits for it. If no
    /// `block_on` is running, or when the running one returns first, the snapshot
    /// published when it returned.
    pub(crate) fn fetch(&self, ask: impl FnOnce() -> bool) -> RuntimeMetrics {
        let seen = {
            let state = self.lock();
            if !state.running {
                return state.snapshot;
            }
            state.version
        };
        if !ask() {
            return self.lock().snapshot;
        }
        let state = self
            .changed
            .wait_while(self.lock(), |s| s.running && s.version == seen)
            .unwrap_or_else(PoisonError::into_inner);
        state.snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn display_names_every_counter_and_the_non_empty_buckets() {
        let mut m = RuntimeMetrics {
            epoll_ctl_mod: 7,
            ..RuntimeMetrics::default()
        };
        m.events_per_wait[0] = 3;
        m.events_per_wait[4] = 2;
        let line = m.to_string();
        assert!(line.contains(" epoll_ctl_mod=7 "), "{line}");
        assert!(line.ends_with("events_per_wait=[0:3 8:2]"), "{line}");
        assert_eq!(line.matches('=').count(), 27, "{line}");
    }

    #[test]
    fn mean_events_per_wait_is_zero_before_the_first_wait() {
        let mut m = RuntimeMetrics::default();
        assert_eq!(m.mean_io_events_per_wait(), 0.0);
        m.epoll_waits = 4;
        m.io_events = 10;
        assert_eq!(m.mean_io_events_per_wait(), 2.5);
    }

    #[test]
    fn fetch_returns_the_last_snapshot_when_not_running_without_asking() {
        let published = Published::default();
        let m = RuntimeMetrics {
            polls: 5,
            ..RuntimeMetrics::default()
        };
        published.publish(m, false);
        let got = published.fetch(|| panic!("asked a runtime that is not running"));
        assert_eq!(got.polls, 5);
    }

    #[test]
    fn fetch_waits_for_the_next_publication_while_running() {
        let published = Arc::new(Published::default());
        published.set_running();
        let publisher = Arc::clone(&published);
        let got = published.fetch(move || {
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                let m = RuntimeMetrics {
                    polls: 9,
                    ..RuntimeMetrics::default()
                };
                publisher.publish(m, true);
            });
            true
        });
        assert_eq!(got.polls, 9, "the snapshot published after the request");
    }

    #[test]
    fn fetch_gives_up_waiting_when_the_runtime_stops() {
        let published = Arc::new(Published::default());
        published.set_running();
        let publisher = Arc::clone(&published);
        let got = published.fetch(move || {
            std::thread::spawn(move || {
                let m = RuntimeMetrics {
                    polls: 4,
                    ..RuntimeMetrics::default()
                };
                // The runtime returned from block_on before it saw the request.
                publisher.publish(m, false);
            });
            true
        });
        assert_eq!(got.polls, 4);
    }

    #[test]
    fn fetch_does_not_wait_when_the_request_cannot_be_sent() {
        let published = Published::default();
        published.set_running();
        let got = published.fetch(|| false);
        assert_eq!(got, RuntimeMetrics::default());
    }
}
