//! An echo server on edgeloop: one task per connection, each echoing what it reads
//! until EOF, then shutting down its write side.
//!
//! ```text
//! cargo run --release --example echo -- [ADDR] [--grace SECS] [--max-conns N] [--idle-timeout SECS] [--stats SECS]
//! ```
//!
//! Prints `listening on ADDR` once bound (default 127.0.0.1:6888). See `USAGE`
//! below (or run it with `--help`) for the flags.
//!
//! - A connection's error is logged to stderr and ends only that connection.
//! - At the fd limit (EMFILE), `accept` itself pauses until a connection closes or
//!   a short back-off passes, instead of spinning (see `fd_release_waits` in the
//!   metrics); errors that concern one pending connection never reach this loop.
//! - On SIGINT (Ctrl-C) or SIGTERM it stops accepting (the listening socket is
//!   closed), lets open connections finish for up to the grace period, drops the
//!   rest, prints a one-line summary and the runtime's metrics on stdout and exits 0.
//! - With `--stats SECS`, it prints the runtime's metrics to stderr every SECS
//!   seconds.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io::{self, Write};
use std::net::Shutdown;
use std::pin::{Pin, pin};
use std::process::ExitCode;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use edgeloop::net::{TcpListener, TcpStream};
use edgeloop::signal::{SignalKind, signal};
use edgeloop::time;
use edgeloop::{Handle, JoinHandle};
use futures_util::future::{Either, select};

const USAGE: &str = "\
usage: echo [ADDR] [OPTIONS]

An echo server: every byte a client sends comes back to it.

  ADDR                 address to listen on (default 127.0.0.1:6888)
  --grace SECS         on Ctrl-C or SIGTERM, stop accepting and let open
                       connections finish for up to SECS seconds, then drop
                       the rest and exit 0 (default 5)
  --max-conns N        serve at most N connections at once; past it, new
                       connections are accepted and closed at once, and
                       counted (default 10000)
  --idle-timeout SECS  close a connection that has made no progress for SECS
                       seconds: sent nothing, or read none of its echo
                       (default: never)
  --stats SECS         print the runtime's metrics (one `metrics: ...` line)
                       to stderr every SECS seconds (default: only on exit,
                       to stdout, after the summary)
  --help               print this help and exit
";

/// Command-line settings.
#[derive(Debug)]
struct Args {
    addr: String,
    grace: Duration,
    max_conns: usize,
    idle_timeout: Option<Duration>,
    stats_every: Option<Duration>,
}

/// What the command line asks for.
enum Command {
    Serve(Args),
    Help,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut parsed = Args {
        addr: "127.0.0.1:6888".to_owned(),
        grace: Duration::from_secs(5),
        max_conns: 10_000,
        idle_timeout: None,
        stats_every: None,
    };
    let mut addr_seen = false;
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("`{flag}` needs a value"));
        match arg.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--grace" => parsed.grace = seconds("--grace", &value("--grace")?)?,
            "--idle-timeout" => {
                parsed.idle_timeout = Some(seconds("--idle-timeout", &value("--idle-timeout")?)?);
            }
            "--stats" => match seconds("--stats", &value("--stats")?)? {
                // An interval of zero would print in a busy loop.
                every if every.is_zero() => {
                    return Err("`--stats` takes a number of seconds above 0".to_owned());
                }
                every => parsed.stats_every = Some(every),
            },
            "--max-conns" => {
                let v = value("--max-conns")?;
                parsed.max_conns = match v.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(format!(
                            "`--max-conns` takes a whole number above 0, not `{v}`"
                        ));
                    }
                };
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            addr if !addr_seen => {
                parsed.addr = addr.to_owned();
                addr_seen = true;
            }
            extra => {
                return Err(format!(
                    "unexpected argument `{extra}`: ADDR was given already"
                ));
            }
        }
    }
    Ok(Command::Serve(parsed))
}

/// Parses a number of seconds (fractions allowed).
fn seconds(flag: &str, v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("`{flag}` takes a number of seconds, not `{v}`"))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Serve(args)) => args,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("echo: {message}\nrun `echo --help` for the options");
            return ExitCode::from(2);
        }
    };
    match edgeloop::block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Counters, shared by the accept loop and the connection tasks.
#[derive(Default)]
struct Stats {
    /// Connections served (accepted and not refused).
    served: Cell<u64>,
    /// Bytes echoed back, over all connections.
    bytes: Cell<u64>,
    /// Connections refused over `--max-conns`.
    refused: Cell<u64>,
    /// Connections closed by `--idle-timeout`.
    idle_closed: Cell<u64>,
    /// Connections open now.
    open: Cell<usize>,
    /// The shutdown, waiting for `open` to reach 0.
    drained: RefCell<Option<Waker>>,
}

impl Stats {
    fn connection_closed(&self) {
        self.open.set(self.open.get() - 1);
        if self.open.get() == 0 {
            // Taken in its own statement: the borrow ends before the wake.
            let waker = self.drained.borrow_mut().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// Resolves once no connection is open.
    async fn all_closed(&self) {
        poll_fn(|cx| {
            if self.open.get() == 0 {
                Poll::Ready(())
            } else {
                *self.drained.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

async fn serve(args: Args) -> io::Result<()> {
    let listener = TcpListener::bind(args.addr.as_str()).await?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    println_flushed(&format!("listening on {}", listener.local_addr()?))?;

    let stats = Rc::new(Stats::default());
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let reporter = args.stats_every.map(|every| {
        edgeloop::spawn(async move {
            let mut ticks = time::interval(every);
            ticks.tick().await; // the first tick is immediate
            loop {
                ticks.tick().await;
                eprintln!("metrics: {}", Handle::current().metrics());
            }
        })
    });
    let mut stop = pin!(async {
        match select(pin!(terminate.recv()), pin!(interrupt.recv())).await {
            Either::Left(_) => "SIGTERM",
            Either::Right(_) => "SIGINT",
        }
    });
    let signal_name = loop {
        // The stop signal is polled first, so a flood of connections cannot delay
        // the shutdown (dropping a pending `accept` loses no connection).
        let accepted = match select(stop.as_mut(), pin!(listener.accept())).await {
            Either::Left((name, _)) => break name,
            Either::Right((accepted, _)) => accepted,
        };
        match accepted {
            Ok((stream, _)) if stats.open.get() >= args.max_conns => {
                stats.refused.set(stats.refused.get() + 1);
                drop(stream); // accepted and closed at once
            }
            Ok((stream, peer)) => {
                stats.served.set(stats.served.get() + 1);
                stats.open.set(stats.open.get() + 1);
                let shared = stats.clone();
                let idle_timeout = args.idle_timeout;
                tasks.push(edgeloop::spawn(async move {
                    if let Err(e) = echo(stream, &shared, idle_timeout).await {
                        eprintln!("connection {peer}: {e}");
                    }
                    shared.connection_closed();
                }));
                if tasks.len() >= 1024 && tasks.len() >= 2 * stats.open.get() {
                    tasks.retain(|t| !t.is_finished());
                }
            }
            // `accept` pauses by itself at the fd limit and skips errors that
            // concern one pending connection: what is left is the listener's.
            Err(e) => return Err(e),
        }
    };

    // Stop accepting: new connections are refused by the kernel from here on.
    drop(listener);
    eprintln!(
        "{signal_name}: no longer accepting; waiting up to {:?} for {} open connection(s)",
        args.grace,
        stats.open.get()
    );
    let dropped = match time::timeout(args.grace, stats.all_closed()).await {
        Ok(()) => 0,
        Err(_) => stats.open.get(),
    };
    for task in tasks.iter().chain(&reporter) {
        task.abort();
    }
    println_flushed(&format!(
        "served {} connections, echoed {} bytes; refused {} over --max-conns, closed {} idle, \
         dropped {} at shutdown",
        stats.served.get(),
        stats.bytes.get(),
        stats.refused.get(),
        stats.idle_closed.get(),
        dropped
    ))?;
    println_flushed(&format!("metrics: {}", Handle::current().metrics()))
}

fn println_flushed(line: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

thread_local! {
    /// The one read buffer of this thread's connections: a connection reads into it
    /// and writes the bytes straight back, so an idle connection holds no buffer.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0u8; 16 * 1024]);
}

/// What one read of a connection came to.
enum Step {
    /// Nothing to read after all (readiness was stale): wait again.
    Again,
    /// The client closed its side.
    Eof,
    /// `n` bytes read; `unsent` of them (copied out of the scratch buffer) did not fit
    /// in the send buffer and still have to be written.
    Echoed { n: usize, unsent: Vec<u8> },
}

/// Reads once into the thread's scratch buffer and writes what it read straight
/// back, without waiting; bytes the send buffer cannot take are copied out.
fn read_and_echo(stream: &TcpStream) -> io::Result<Step> {
    SCRATCH.with_borrow_mut(|buf| {
        let n = match stream.try_read(buf) {
            Ok(0) => return Ok(Step::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Again),
            Err(e) => return Err(e),
        };
        let mut written = 0;
        while written < n {
            match stream.try_write(&buf[written..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => written += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(Step::Echoed {
            n,
            // Empty (no allocation) unless the client is slow to read.
            unsent: buf[written..n].to_vec(),
        })
    })
}

/// Echoes `stream` until EOF. Between messages the connection holds no buffer:
/// it waits for readability, then reads into the thread's scratch buffer and
/// writes back at once (see [`read_and_echo`]); only bytes the client is slow to
/// take are kept, in a buffer of their own, until written.
async fn echo(
    mut stream: TcpStream,
    stats: &Stats,
    idle_timeout: Option<Duration>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // With `--idle-timeout`, one timer per connection, pushed back at every sign of
    // progress; boxed, so that a connection without it does not carry a timer in
    // its task.
    let mut idle = idle_timeout.map(|limit| Idle {
        limit,
        timer: Box::pin(time::sleep(limit)),
    });
    loop {
        let Some(ready) = within(&mut idle, stream.readable(), stats).await else {
            return Ok(()); // idle too long: dropping the stream closes it
        };
        ready?;
        let (n, unsent) = match read_and_echo(&stream)? {
            Step::Again => continue,
            Step::Eof => return stream.shutdown(Shutdown::Write),
            Step::Echoed { n, unsent } => (n, unsent),
        };
        Idle::progress(&mut idle); // the client sent something
        if !unsent.is_empty() {
            // A client that stops reading stalls this write: under the idle timeout
            // too, so it cannot hold its connection (and its `--max-conns` slot) for
            // ever.
            let Some(written) = within(&mut idle, stream.write_all(&unsent), stats).await else {
                return Ok(());
            };
            written?;
            Idle::progress(&mut idle); // the client read its echo
        }
        stats.bytes.set(stats.bytes.get() + n as u64);
    }
}

/// A connection's idle timer.
struct Idle {
    limit: Duration,
    timer: Pin<Box<time::Sleep>>,
}

impl Idle {
    /// Restarts the timer: the connection made progress.
    fn progress(idle: &mut Option<Idle>) {
        if let Some(idle) = idle {
            let deadline = time::now() + idle.limit;
            idle.timer.as_mut().reset(deadline);
        }
    }
}

/// Runs `fut` under the idle timer, if any: `None` (and one more connection
/// counted as idle-closed) if the timer fires first.
async fn within<T>(
    idle: &mut Option<Idle>,
    fut: impl std::future::Future<Output = T>,
    stats: &Stats,
) -> Option<T> {
    let Some(idle) = idle else {
        return Some(fut.await);
    };
    match select(pin!(fut), idle.timer.as_mut()).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(((), _)) => {
            stats.idle_closed.set(stats.idle_closed.get() + 1);
            None
        }
    }
}
