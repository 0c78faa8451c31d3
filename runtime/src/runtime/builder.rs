//! [`Builder`]: the runtime's knobs, with tokio's names.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::Runtime;
use crate::executor::{SlowPoll, SlowPollConfig, SlowPollHook, UnhandledPanic};

/// Tasks polled between two looks at epoll, by default: a task that is always ready
/// cannot starve I/O for longer than this many polls.
pub(crate) const DEFAULT_EVENT_INTERVAL: usize = 61;
/// Events one `epoll_wait` may return, by default.
pub(crate) const DEFAULT_MAX_IO_EVENTS: usize = 1024;
/// The most events one `epoll_wait` may return, whatever the builder is told.
const MAX_IO_EVENTS: usize = 65_536;
/// Cap on blocking-pool threads, by default (tokio's).
const DEFAULT_MAX_BLOCKING_THREADS: usize = 512;
/// How long an idle blocking-pool thread waits for work before it exits, by default.
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The settings a [`Runtime`] is built with.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) event_interval: usize,
    pub(crate) max_io_events: usize,
    pub(crate) oneshot: bool,
    pub(crate) max_blocking_threads: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) thread_name: Arc<str>,
    pub(crate) start_paused: bool,
    pub(crate) unhandled_panic: UnhandledPanic,
    pub(crate) slow_poll_threshold: Option<Duration>,
    pub(crate) slow_poll_hook: Option<SlowPollHook>,
}

impl Config {
    /// Slow-poll detection as configured: on if a threshold was set.
    pub(crate) fn slow_poll(&self) -> Option<SlowPollConfig> {
        let threshold = self.slow_poll_threshold?;
        let hook = self.slow_poll_hook.clone().unwrap_or_else(|| {
            Arc::new(|slow: &SlowPoll| {
                eprintln!("{slow}");
            })
        });
        Some(SlowPollConfig { threshold, hook })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            event_interval: DEFAULT_EVENT_INTERVAL,
            max_io_events: DEFAULT_MAX_IO_EVENTS,
            oneshot: true,
            max_blocking_threads: DEFAULT_MAX_BLOCKING_THREADS,
            keep_alive: DEFAULT_KEEP_ALIVE,
            thread_name: Arc::from("edgeloop-blocking"),
            start_paused: false,
            unhandled_panic: UnhandledPanic::Ignore,
            slow_poll_threshold: None,
            slow_poll_hook: None,
        }
    }
}

/// Builds a [`Runtime`] with custom settings.
///
/// The names are tokio's; the runtime is always tokio's `current_thread` kind (one
/// thread runs every task), with I/O, time and signals always on.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let rt = edgeloop_runtime::Builder::new_current_thread()
///     .max_blocking_threads(4)
///     .thread_keep_alive(Duration::from_secs(1))
///     .thread_name("my-blocking")
///     .build()?;
/// let n = rt.block_on(async {
///     edgeloop_runtime::spawn_blocking(|| std::thread::current().name().map(str::to_owned))
///         .await
///         .unwrap()
/// });
/// assert_eq!(n.as_deref(), Some("my-blocking"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Builder {
    config: Config,
}

impl Builder {
    /// A builder with the default settings (the same as [`Runtime::new`]).
    pub fn new_current_thread() -> Builder {
        Builder {
            config: Config::default(),
        }
    }

    /// Does nothing: I/O, time and signals are always on. Present so that code
    /// written for tokio (`.enable_all()`) builds unchanged.
    pub fn enable_all(&mut self) -> &mut Self {
        self
    }

    /// How many tasks the loop polls before it looks at epoll again (default 61).
    ///
    /// Lower is fairer to I/O, higher spends fewer `epoll_wait` calls when many
    /// tasks are ready.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn event_interval(&mut self, n: u32) -> &mut Self {
        assert!(n > 0, "`event_interval` must be at least 1");
        self.config.event_interval = n as usize;
        self
    }

    /// How many events one `epoll_wait` may return (default 1024); more wait in
    /// the kernel for the next turn. Values above 65,536 are taken as 65,536 (the
    /// buffer is allocated up front, and the kernel refuses sizes much larger).
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn max_io_events_per_tick(&mut self, n: usize) -> &mut Self {
        assert!(n > 0, "`max_io_events_per_tick` must be at least 1");
        self.config.max_io_events = n.min(MAX_IO_EVENTS);
        self
    }

    /// Whether fds are registered with `EPOLLONESHOT` (default `true`, the design's
    /// rule).
    ///
    /// With `true`, each fd is added once with `EPOLLET | EPOLLONESHOT`, and re-armed
    /// (`EPOLL_CTL_MOD`) each time a task would block on it: an event disarms the
    /// fd, so the kernel reports nothing the runtime did not ask for. That costs one
    /// `epoll_ctl` per wait.
    ///
    /// With `false` (an experiment, to measure what ONESHOT costs), each fd is added
    /// once with `EPOLLET | EPOLLIN | EPOLLOUT | EPOLLRDHUP` and never modified: no
    /// `EPOLL_CTL_MOD` at all, as tokio does, at the price of events for directions
    /// nobody waits on (a writable edge after every send buffer drain, say). The
    /// readiness rules are the same either way: a direction is ready from an event
    /// until an operation says `EAGAIN` (or a stream read comes back short).
    pub fn oneshot(&mut self, oneshot: bool) -> &mut Self {
        self.config.oneshot = oneshot;
        self
    }

    /// The most threads the blocking pool ([`spawn_blocking`](crate::spawn_blocking))
    /// starts (default 512). Jobs beyond it wait in a queue.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn max_blocking_threads(&mut self, n: usize) -> &mut Self {
        assert!(n > 0, "`max_blocking_threads` must be at least 1");
        self.config.max_blocking_threads = n;
        self
    }

    /// How long an idle blocking-pool thread waits for a job before it exits
    /// (default 10 s).
    pub fn thread_keep_alive(&mut self, duration: Duration) -> &mut Self {
        self.config.keep_alive = duration;
        self
    }

    /// The name of the blocking pool's threads (default `edgeloop-blocking`).
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.config.thread_name = Arc::from(name.into());
        self
    }

    /// Starts the runtime with its clock paused, as [`time::pause`](crate::time::pause)
    /// would at the top of `block_on` (default off).
    pub fn start_paused(&mut self, paused: bool) -> &mut Self {
        self.config.start_paused = paused;
        self
    }

    /// What to do when a task panics and nobody will see it: its `JoinHandle` was
    /// dropped (before or after the panic) without taking the result. Default
    /// [`UnhandledPanic::Ignore`]: the panic hook has printed it, and that is all.
    /// [`UnhandledPanic::ShutdownRuntime`] ends `block_on` with the panic, so
    /// tests fail loudly instead of hanging.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop_runtime::{Builder, UnhandledPanic};
    ///
    /// let rt = Builder::new_current_thread()
    ///     .unhandled_panic(UnhandledPanic::ShutdownRuntime)
    ///     .build()?;
    /// let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
    ///     rt.block_on(async {
    ///         drop(edgeloop_runtime::spawn(async { panic!("boom") }));
    ///         std::future::pending::<()>().await // never ends on its own
    ///     })
    /// }));
    /// let payload = result.unwrap_err();
    /// assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn unhandled_panic(&mut self, policy: UnhandledPanic) -> &mut Self {
        self.config.unhandled_panic = policy;
        self
    }

    /// Reports a task whose single poll takes longer than `threshold` (it blocked
    /// the thread, so every other task waited): once per task, through the
    /// [`on_slow_poll`](Self::on_slow_poll) hook, by default one line on stderr
    /// naming the task, where it was spawned and how long the poll took. Off by
    /// default; when off, a poll costs nothing extra (no clock read).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let rt = edgeloop_runtime::Builder::new_current_thread()
    ///     .slow_poll_threshold(Duration::from_millis(10))
    ///     .on_slow_poll(move |slow| log.lock().unwrap().push(slow.spawned_at.line()))
    ///     .build()?;
    /// rt.block_on(async {
    ///     let line = line!() + 1;
    ///     let task = edgeloop_runtime::spawn(async {
    ///         std::thread::sleep(Duration::from_millis(30)); // blocks the loop
    ///     });
    ///     task.await.unwrap();
    ///     assert_eq!(*seen.lock().unwrap(), [line]);
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn slow_poll_threshold(&mut self, threshold: Duration) -> &mut Self {
        self.config.slow_poll_threshold = Some(threshold);
        self
    }

    /// Replaces the slow-poll hook (see
    /// [`slow_poll_threshold`](Self::slow_poll_threshold), which turns detection
    /// on). The hook runs on the runtime's thread, right after the slow poll.
    pub fn on_slow_poll<F>(&mut self, hook: F) -> &mut Self
    where
        F: Fn(&SlowPoll) + Send + Sync + 'static,
    {
        self.config.slow_poll_hook = Some(Arc::new(hook));
        self
    }

    /// Creates the runtime: its epoll fd and eventfd. No thread is started until
    /// the first [`spawn_blocking`](crate::spawn_blocking).
    ///
    /// # Errors
    ///
    /// If the epoll fd or the eventfd cannot be created (for example at the fd
    /// limit: `EMFILE`).
    pub fn build(&mut self) -> io::Result<Runtime> {
        Runtime::with_config(self.config.clone())
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("event_interval", &self.config.event_interval)
            .field("max_io_events_per_tick", &self.config.max_io_events)
            .field("oneshot", &self.config.oneshot)
            .field("max_blocking_threads", &self.config.max_blocking_threads)
            .field("thread_keep_alive", &self.config.keep_alive)
            .field("thread_name", &self.config.thread_name)
            .field("start_paused", &self.config.start_paused)
            .field("unhandled_panic", &self.config.unhandled_panic)
            .field("slow_poll_threshold", &self.config.slow_poll_threshold)
            .finish_non_exhaustive()
    }
}
