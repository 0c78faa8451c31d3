//! Running one measurement in a child process: the benchmark binary re-executes
//! itself with `--child RUNTIME ...`, the child prints one result line, and the
//! parent parses it.
//!
//! Why a process per run: the peak-memory counter (`VmHWM`) belongs to the process
//! and never goes down, so two runtimes measured in one process would share it, and
//! a second round would inherit the first one's peak. A fresh process also gives
//! each run the same cold allocator.
//!
//! The parent blocks on the child's stdout without waking up (it shares the pinned
//! CPU, and every wakeup would preempt the child), while a watchdog thread kills
//! the child if it is still running after a time limit: a run that hangs ends, and
//! leaves no process behind.

use std::io::{self, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Marks the child's result line on stdout.
const RESULT_PREFIX: &str = "edgeloop-bench-result";

/// Prints the result line, for [`run`] to parse: `name=value` pairs.
pub fn report(values: &[(&str, f64)]) {
    let mut line = RESULT_PREFIX.to_owned();
    for (name, value) in values {
        line.push_str(&format!(" {name}={value}"));
    }
    println!("{line}");
}

/// A child's results, as printed by [`report`].
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Each result's name and value, in printed order.
    values: Vec<(String, f64)>,
}

impl Record {
    /// The value named `name`.
    ///
    /// # Panics
    ///
    /// If the child did not report it (a harness bug).
    pub fn get(&self, name: &str) -> f64 {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("the child reported no `{name}`"))
    }

    /// Parses a child's whole stdout; `None` if it holds no result line.
    fn parse(stdout: &str) -> Option<Self> {
        let line = stdout.lines().find_map(|l| l.strip_prefix(RESULT_PREFIX))?;
        let values = line
            .split_whitespace()
            .map(|pair| {
                let (name, value) = pair.split_once('=')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Record { values })
    }
}

/// Runs this executable again with `args`, waits for it at most `limit`, and
/// returns the result it printed. The child's stderr goes to ours.
///
/// # Errors
///
/// If the child cannot be started, was killed at `limit` (`TimedOut`), exited with
/// a failure, or printed no result line.
pub fn run(args: &[String], limit: Duration) -> io::Result<Record> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id().to_string();
    let (finished, watch) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watch.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout) {
            // The pid is still ours: the child is reaped only after this thread is
            // joined, so it cannot have been reused. A failed `kill` means the child
            // exited meanwhile, which is what we wanted.
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            true
        } else {
            false
        }
    });
    // Reads until the child exits (or is killed) and its end of the pipe closes.
    let mut stdout = String::new();
    let read = child
        .stdout
        .take()
        .map_or(Ok(0), |mut pipe| pipe.read_to_string(&mut stdout));
    // Fails only if the watchdog has given up already, after killing the child.
    let _ = finished.send(());
    let killed = watchdog
        .join()
        .unwrap_or_else(|_| panic!("the watchdog thread panicked"));
    let status = child.wait()?;
    if killed {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("child `{}` killed after {limit:?}", args.join(" ")),
        ));
    }
    read?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "child `{}` failed: {status}",
            args.join(" ")
        )));
    }
    Record::parse(&stdout).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "child `{}` printed no result line: {stdout:?}",
                args.join(" ")
            ),
        )
    })
}
