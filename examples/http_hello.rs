//! An HTTP/1.1 server with hyper on edgeloop: every request gets `Hello, world!`.
//!
//! ```text
//! cargo run --release --features hyper --example http_hello -- [ADDR] [--header-timeout SECS]
//! ```
//!
//! Prints `listening on ADDR` once bound (default 127.0.0.1:8080; port 0 picks a
//! free one). One task per connection; connections are kept alive between
//! requests, and pipelined requests are answered in order. A client that takes
//! longer than the header timeout (default 5 s) to send a request's head is
//! disconnected. A connection's error is logged to stderr (unless it only says the
//! client went away) and ends only that connection. On SIGINT (Ctrl-C) or SIGTERM it prints
//! `served N connections, M requests` and exits 0.

use std::cell::Cell;
use std::convert::Infallible;
use std::io::{self, Write};
use std::pin::pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use edgeloop::hyper::{HyperIo, HyperTimer};
use edgeloop::net::TcpListener;
use edgeloop::signal::{SignalKind, signal};
use futures_util::future::{Either, select};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};

const USAGE: &str = "\
usage: http_hello [ADDR] [OPTIONS]

An HTTP/1.1 server (hyper on edgeloop) that answers every request with
`Hello, world!`. Prints `listening on ADDR` once bound.

  ADDR                    address to listen on (default 127.0.0.1:8080; port 0 picks one)
  --header-timeout SECS   close a connection whose request head takes longer than SECS
                          to arrive (default 5; fractions allowed; 0 turns it off)
  --help                  print this help and exit

On SIGINT or SIGTERM: prints `served N connections, M requests` and exits 0.
";

/// The body of every response.
const HELLO: &[u8] = b"Hello, world!";

/// Command-line settings.
#[derive(Debug)]
struct Args {
    addr: String,
    header_timeout: Option<Duration>,
}

/// What the command line asks for.
#[derive(Debug)]
enum Command {
    Serve(Args),
    Help,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut parsed = Args {
        addr: "127.0.0.1:8080".to_owned(),
        header_timeout: Some(Duration::from_secs(5)),
    };
    let mut addr_seen = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--header-timeout" => {
                let value = args
                    .next()
                    .ok_or("`--header-timeout` needs a number of seconds")?;
                let secs: f64 = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s < 1e9)
                    .ok_or_else(|| {
                        format!("`--header-timeout {value}`: not a number of seconds")
                    })?;
                parsed.header_timeout = (secs > 0.0).then(|| Duration::from_secs_f64(secs));
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            addr if !addr_seen => {
                parsed.addr = addr.to_owned();
                addr_seen = true;
            }
            extra => return Err(format!("unexpected argument `{extra}`")),
        }
    }
    Ok(Command::Serve(parsed))
}

/// What the server counts.
#[derive(Debug, Default)]
struct Stats {
    connections: Cell<u64>,
    requests: Cell<u64>,
}

/// Accepts connections until an error that is not one connection's; serves each
/// in a task of its own.
async fn accept_loop(
    listener: TcpListener,
    builder: http1::Builder,
    stats: Rc<Stats>,
) -> io::Result<()> {
    let builder = Rc::new(builder);
    loop {
        let (stream, peer) = listener.accept().await?;
        stats.connections.set(stats.connections.get() + 1);
        if let Err(e) = stream.set_nodelay(true) {
            eprintln!("http_hello: connection from {peer}: TCP_NODELAY: {e}");
        }
        let builder = Rc::clone(&builder);
        let stats = Rc::clone(&stats);
        edgeloop::spawn(async move {
            let hello = service_fn(move |_request: Request<Incoming>| {
                stats.requests.set(stats.requests.get() + 1);
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(HELLO)))) }
            });
            match builder.serve_connection(HyperIo::new(stream), hello).await {
                Err(e) if says_more_than_gone(&e) => {
                    eprintln!("http_hello: connection from {peer}: {e}");
                }
                _ => {}
            }
        });
    }
}

/// Whether a connection's error says more than "the client went away" (closed or
/// reset the connection, maybe half-way through a request, as load generators do
/// when they stop), which is not worth a line.
fn says_more_than_gone(e: &hyper::Error) -> bool {
    if e.is_shutdown() || e.is_incomplete_message() {
        return false;
    }
    let io_kind = std::error::Error::source(e)
        .and_then(|source| source.downcast_ref::<io::Error>())
        .map(io::Error::kind);
    !matches!(
        io_kind,
        Some(
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::NotConnected
        )
    )
}

async fn serve(args: Args) -> io::Result<()> {
    let listener = TcpListener::bind(args.addr.as_str()).await?;
    let mut stdout = io::stdout();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;

    let mut builder = http1::Builder::new();
    builder
        .timer(HyperTimer)
        .header_read_timeout(args.header_timeout)
        .keep_alive(true);
    let stats = Rc::new(Stats::default());

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let (terminated, interrupted) = (pin!(terminate.recv()), pin!(interrupt.recv()));
    let stop = select(terminated, interrupted);
    let serving = pin!(accept_loop(listener, builder, Rc::clone(&stats)));
    if let Either::Left((result, _)) = select(serving, stop).await {
        return result;
    }
    writeln!(
        stdout,
        "served {} connections, {} requests",
        stats.connections.get(),
        stats.requests.get()
    )?;
    stdout.flush()
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Serve(args)) => args,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("http_hello: {message}\nrun `http_hello --help` for the options");
            return ExitCode::from(2);
        }
    };
    match edgeloop::block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_hello: {e}");
            ExitCode::FAILURE
        }
    }
}
