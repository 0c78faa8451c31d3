//! Starting the servers under test: pinned to CPUs with `taskset`, on a free port of
//! 127.0.0.1, and killed when their handle is dropped (shared by `compare` and
//! `http_compare`).

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// A child process that is killed (SIGKILL) and reaped when this is dropped: at the
/// end of its run, or while unwinding from a panic.
#[derive(Debug)]
pub struct KillOnDrop {
    /// The process.
    pub child: Child,
}

impl KillOnDrop {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Fails only if it has exited already, which is what we want.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server at `path` (called `name` in messages) with `127.0.0.1:0` and
/// then `args`, pinned to `cpus` (`taskset -c`, which execs it: the child's pid is
/// the server's), and waits up to 10 s for its `listening on ADDR` line; returns the
/// process and `ADDR`. Its stderr goes to ours; the rest of its stdout is drained.
///
/// # Errors
///
/// If it cannot be started, or does not say where it listens in time.
pub fn start_pinned<S: AsRef<OsStr>>(
    name: &str,
    path: &Path,
    args: &[S],
    cpus: &str,
) -> io::Result<(KillOnDrop, String)> {
    let child = Command::new("taskset")
        .args(["-c", cpus])
        .arg(path)
        .arg("127.0.0.1:0")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("starting `taskset` for {name}: {e}")))?;
    let mut process = KillOnDrop { child };
    let stdout = process.child.stdout.take().expect("stdout is piped");
    let (line_tx, line_rx) = mpsc::channel();
    // Reads the first line for us, then drains the pipe until the server exits.
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = line_tx.send(line);
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    let line = line_rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| io::Error::other(format!("{name} did not say `listening on` in 10 s")))?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| io::Error::other(format!("{name} printed {line:?}, not `listening on`")))?
        .to_owned();
    Ok((process, addr))
}
