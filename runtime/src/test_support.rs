//! Helpers shared by the runtime's unit tests: a time bound for anything that could
//! hang, re-running one test in a process of its own, a counting waker, and a
//! socket pair.

use std::any::Any;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::panic::resume_unwind;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::task::{Wake, Waker};
use std::thread;
use std::time::Duration;

/// Upper bound for anything that could hang.
///
/// Under Miri it is 60 times longer: Miri's clock (virtual by default) advances 5 µs
/// for each basic block it interprets, so 10 s pass after a few million of them,
/// well within the normal work of some tests. A true deadlock still fails at once:
/// when every thread is blocked, Miri moves its clock to the next timeout.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(if cfg!(miri) { 600 } else { 10 });

/// Set in a child process that re-runs one test alone (see [`rerun_in_own_process`]).
pub(crate) const OWN_PROCESS_ENV: &str = "EDGELOOP_FD_CHILD";

/// Runs `body` on a new thread and returns its result, or panics if it takes longer
/// than [`TIMEOUT`]. A panic in `body` is re-raised here with its own payload.
pub(crate) fn bounded<T: Send + 'static>(
    what: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = thread::Builder::new()
        .name(what.to_owned())
        .spawn(move || {
            // Ignored: the receiver is gone only after a timeout, which already failed.
            let _ = tx.send(body());
        })
        .expect("could not spawn the test's worker thread");
    match rx.recv_timeout(TIMEOUT) {
        Ok(value) => {
            if let Err(payload) = worker.join() {
                resume_unwind(payload);
            }
            value
        }
        Err(RecvTimeoutError::Timeout) => {
            panic!("`{what}` did not finish within {TIMEOUT:?}: the runtime is hung")
        }
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(payload) => resume_unwind(payload),
            Ok(()) => panic!("`{what}` ended without sending its result"),
        },
    }
}

/// The message of a panic payload (`&str` from `panic!("literal")`, `String` from a
/// formatted `panic!`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".to_owned())
}

/// Re-runs the test `name` of module `module` (pass `module_path!()`) in a child
/// process of its own (one test thread, [`OWN_PROCESS_ENV`] set), so that
/// process-wide state such as open fds and fd numbers is not disturbed by tests
/// running in parallel. Returns the child's stdout after
/// checking that it exited successfully and ran exactly that one test.
pub(crate) fn rerun_in_own_process(module: &str, name: &str) -> io::Result<String> {
    let module = module.split_once("::").map_or(module, |(_, rest)| rest);
    let path = format!("{module}::{name}");
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", &path, "--nocapture", "--test-threads=1"])
        .env(OWN_PROCESS_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("stdout was piped");
    let mut stderr = child.stderr.take().expect("stderr was piped");
    // Both pipes are read on threads so a full pipe cannot block the child; stdout
    // reaching EOF means the child exited (it starts no processes of its own).
    let (tx, rx) = mpsc::channel();
    let out_reader = thread::spawn(move || {
        let mut out = String::new();
        let result = stdout.read_to_string(&mut out).map(|_| out);
        // Ignored: the receiver is gone only after a timeout, which already failed.
        let _ = tx.send(result);
    });
    let err_reader = thread::spawn(move || {
        let mut err = String::new();
        stderr.read_to_string(&mut err).map(|_| err)
    });
    let out = match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out?,
        Err(e) => {
            // Ignored: the child may have exited between the timeout and the kill.
            let _ = child.kill();
            child.wait()?;
            panic!("child test `{path}` did not finish within {TIMEOUT:?} ({e})");
        }
    };
    let status = child.wait()?;
    let err = err_reader.join().expect("stderr reader thread panicked")?;
    out_reader.join().expect("stdout reader thread panicked");
    assert!(
        status.success(),
        "child test `{path}` failed with {status}\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    assert!(
        out.contains("1 passed"),
        "child did not run `{path}` exactly once\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    Ok(out)
}

/// Counts the wakes of the waker built from it.
#[derive(Debug, Default)]
pub(crate) struct WakeCounter(AtomicUsize);

impl WakeCounter {
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for WakeCounter {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

pub(crate) fn counting_waker() -> (Arc<WakeCounter>, Waker) {
    let counter = Arc::new(WakeCounter::default());
    (counter.clone(), Waker::from(counter))
}

/// A non-blocking `a` and a blocking `b`, connected.
pub(crate) fn socket_pair() -> io::Result<(UnixStream, UnixStream)> {
    let (a, b) = UnixStream::pair()?;
    // Through fcntl, not `set_nonblocking` (ioctl FIONBIO): Miri supports only the former.
    crate::sys::fcntl::set_nonblocking(a.as_fd())?;
    Ok((a, b))
}
