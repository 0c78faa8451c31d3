//! [`RuntimeMetrics`]: a snapshot of a runtime's counters.
//!
//! The counters are plain integers in the single-threaded parts (executor, reactor,
//! timers), bumped without atomics; a snapshot copies them. Only the blocking pool's
//! figures, shared with its threads, are read under its lock.

/// A snapshot of a runtime's counters, from
/// [`Runtime::metrics`](crate::Runtime::metrics). Totals count from the runtime's
/// creation.
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
/// assert!(m.polls >= 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RuntimeMetrics {
    /// Tasks spawned and not yet finished (the `block_on` future is not a task; the
    /// signal driver that the first [`signal`](crate::signal::signal) starts is).
    pub live_tasks: usize,
    /// Tasks spawned in all (each [`spawn_blocking`](crate::spawn_blocking) counts
    /// one: the task that awaits the job).
    pub spawned_tasks: u64,
    /// Task polls in all.
    pub polls: u64,
    /// Tasks waiting in the run queue.
    pub queued_tasks: usize,
    /// I/O and timer operations that returned `Pending` because their task had used
    /// up its cooperative budget (see [`task::consume_budget`](crate::task::consume_budget)).
    pub budget_yields: u64,
    /// `epoll_wait` calls in all.
    pub epoll_waits: u64,
    /// I/O events dispatched to registrations in all (not counting cross-thread
    /// notifications).
    pub io_events: u64,
    /// File descriptors registered with the reactor now.
    pub registered_fds: usize,
    /// Timers pending now.
    pub timers_pending: usize,
    /// Timers fired in all.
    pub timers_fired: u64,
    /// Threads alive in the blocking pool now.
    pub blocking_threads: usize,
    /// Blocking jobs waiting for a thread now.
    pub blocking_queue: usize,
}
