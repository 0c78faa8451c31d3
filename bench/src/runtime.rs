//! [`Runtime`]: the few operations the harnesses need, implemented once for edgeloop
//! ([`Edgeloop`]) and once for tokio's `current_thread` runtime ([`Tokio`]), so that
//! each benchmark is written once, generic over the runtime, and both runtimes run
//! exactly the same code around their timers.

use std::future::Future;
use std::time::{Duration, Instant};

/// A single-threaded runtime with timers, as the benchmarks drive it.
pub trait Runtime {
    /// Name in tables and on the child command line.
    const NAME: &'static str;

    /// The runtime's sleep future.
    type Sleep: Future<Output = ()>;

    /// Runs `future` to completion on a fresh runtime, built for this call and
    /// dropped after it.
    fn block_on<F: Future>(future: F) -> F::Output;

    /// The runtime's `sleep(duration)`.
    fn sleep(duration: Duration) -> Self::Sleep;

    /// The runtime's `sleep_until(deadline)`.
    fn sleep_until(deadline: Instant) -> Self::Sleep;

    /// Spawns a detached task that awaits `sleep_until(deadline)` and then calls
    /// `done`. The body is the same two lines for every runtime; it is a trait
    /// method only because tokio's `spawn` needs a `Send` future and edgeloop's
    /// `Sleep` is not `Send`, so no one generic body fits both.
    fn spawn_sleeper<D: FnOnce() + Send + 'static>(deadline: Instant, done: D);
}

/// edgeloop: `edgeloop::block_on`, `edgeloop::spawn` and `edgeloop::time`.
#[derive(Debug, Clone, Copy)]
pub struct Edgeloop;

impl Runtime for Edgeloop {
    const NAME: &'static str = "edgeloop";
    type Sleep = edgeloop::time::Sleep;

    fn block_on<F: Future>(future: F) -> F::Output {
        edgeloop::block_on(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        edgeloop::time::sleep(duration)
    }

    fn sleep_until(deadline: Instant) -> Self::Sleep {
        edgeloop::time::sleep_until(deadline)
    }

    fn spawn_sleeper<D: FnOnce() + Send + 'static>(deadline: Instant, done: D) {
        // Dropping the handle detaches the task, as with tokio.
        drop(edgeloop::spawn(async move {
            edgeloop::time::sleep_until(deadline).await;
            done();
        }));
    }
}

/// tokio's `current_thread` runtime with only the time driver enabled.
///
/// The `block_on` future runs inside `tokio::task::unconstrained`. Without it,
/// tokio's cooperative budget (128 operations per task poll) would make a `Sleep`
/// polled after the 128th in one poll return `Pending` *without registering its
/// timer*, and a harness that polls many sleeps from one future would measure
/// nothing. Spawned tasks keep the default budget.
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

impl Runtime for Tokio {
    const NAME: &'static str = "tokio";
    type Sleep = tokio::time::Sleep;

    fn block_on<F: Future>(future: F) -> F::Output {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("cannot build tokio's current_thread runtime: {e}"));
        runtime.block_on(tokio::task::unconstrained(future))
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Instant) -> Self::Sleep {
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline))
    }

    fn spawn_sleeper<D: FnOnce() + Send + 'static>(deadline: Instant, done: D) {
        // Dropping the handle detaches the task, as with edgeloop.
        drop(tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
            done();
        }));
    }
}

/// One of the two runtimes, chosen at run time (by the child process's arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// [`Edgeloop`].
    Edgeloop,
    /// [`Tokio`].
    Tokio,
}

impl Which {
    /// Both, in the order each round runs them.
    pub const BOTH: [Which; 2] = [Which::Edgeloop, Which::Tokio];

    /// The runtime's [`Runtime::NAME`].
    pub fn name(self) -> &'static str {
        match self {
            Which::Edgeloop => Edgeloop::NAME,
            Which::Tokio => Tokio::NAME,
        }
    }

    /// The runtime called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::BOTH.into_iter().find(|w| w.name() == name)
    }
}
