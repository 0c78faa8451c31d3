//! `AsyncFd` over a pipe: reads lines from stdin (when it is a pipe) or from a
//! command's stdout, without blocking the loop, and numbers them.
//!
//! ```text
//! seq 3 | cargo run --example pipe
//! cargo run --example pipe -- sh -c 'echo one; sleep 1; echo two'
//! ```
//!
//! Prints `N: LINE` for each line and `N lines` at the end. While it waits for
//! input, a timer task prints `(waiting)` to stderr every second: the loop is free.
//!
//! Any fd that epoll can watch works the same way: wrap it in
//! `edgeloop::io::AsyncFd`, which sets `O_NONBLOCK` and registers it, then read it
//! through `futures-util` (`BufReader::lines` here). A regular file cannot be
//! watched (epoll says `EPERM`), and a terminal is refused here because
//! `O_NONBLOCK` would stay set on it for the shell after we exit.

use std::io::{self, IsTerminal, Write};
use std::os::fd::OwnedFd;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use edgeloop::io::AsyncFd;
use futures_util::io::{AsyncBufReadExt, BufReader};
use futures_util::stream::StreamExt;

const USAGE: &str = "\
usage: pipe [-- COMMAND [ARGS...]]

Numbers the lines of stdin (a pipe), or of COMMAND's standard output.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match args.first().map(String::as_str) {
        None => None,
        Some("--help" | "-h") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("--") if args.len() > 1 => Some(&args[1..]),
        Some(other) => {
            eprintln!("pipe: unexpected argument `{other}`\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match edgeloop::block_on(run(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipe: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Option<&[String]>) -> io::Result<()> {
    let mut child = None;
    let fd: OwnedFd = match command {
        Some(argv) => {
            let mut spawned = Command::new(&argv[0])
                .args(&argv[1..])
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| io::Error::new(e.kind(), format!("cannot run `{}`: {e}", argv[0])))?;
            let stdout = spawned.stdout.take().expect("stdout was piped");
            child = Some(spawned);
            stdout.into()
        }
        None => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "stdin is a terminal; pipe something in (`seq 3 | pipe`) or give a command",
                ));
            }
            std::os::fd::AsFd::as_fd(&stdin).try_clone_to_owned()?
        }
    };
    let input = AsyncFd::new(std::fs::File::from(fd)).map_err(|e| {
        if e.kind() == io::ErrorKind::PermissionDenied {
            io::Error::new(
                e.kind(),
                "epoll cannot watch a regular file; pipe it instead (`cat FILE | pipe`)",
            )
        } else {
            e
        }
    })?;
    let ticker = edgeloop::spawn(async {
        let mut interval = edgeloop::time::interval(Duration::from_secs(1));
        interval.tick().await; // the first tick is immediate
        loop {
            interval.tick().await;
            eprintln!("(waiting)");
        }
    });
    let mut lines = BufReader::new(input).lines();
    let mut count = 0u64;
    let mut stdout = io::stdout().lock();
    while let Some(line) = lines.next().await {
        count += 1;
        writeln!(stdout, "{count}: {}", line?)?;
        stdout.flush()?;
    }
    writeln!(stdout, "{count} lines")?;
    ticker.abort();
    if let Some(mut child) = child {
        // `wait` blocks: on the blocking pool, not on the loop.
        let status = edgeloop::spawn_blocking(move || child.wait()).await??;
        if !status.success() {
            eprintln!("pipe: the command exited with {status}");
        }
    }
    Ok(())
}
