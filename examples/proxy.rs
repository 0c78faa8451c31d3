//! A TCP proxy on edgeloop: every client connection is forwarded to one upstream
//! address, bytes copied both ways at once.
//!
//! ```text
//! cargo run --release --example proxy -- 127.0.0.1:7000 127.0.0.1:6888
//! ```
//!
//! Prints `listening on ADDR` once bound (LISTEN may use port 0). Then, per client,
//! one task:
//!
//! - connects to UPSTREAM (each of its addresses in turn, 10 s at most); if that
//!   fails, the client connection is closed and the reason logged to stderr;
//! - copies client → upstream and upstream → client at the same time, each
//!   direction until its EOF, which it passes on as a half-close
//!   (`shutdown(Write)` on the other side), so a client that shuts down its write
//!   side still receives everything the upstream sends back;
//! - on an error in either direction (a reset, say), logs it and closes both
//!   connections, so the other direction cannot hang on a peer that is gone.
//!
//! UPSTREAM may be a host name: it is resolved once, at start-up.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use edgeloop::net::{TcpListener, TcpSocket, TcpStream, lookup_host};
use edgeloop::time;
use futures_util::future::join;
use futures_util::io::{AsyncReadExt, AsyncWriteExt};

/// How long to wait for the upstream to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes moved per read, for each direction of each connection.
const COPY_BUFFER: usize = 64 * 1024;

const USAGE: &str = "\
usage: proxy LISTEN UPSTREAM

A TCP proxy: accepts connections on LISTEN and forwards each one to UPSTREAM,
copying bytes both ways until both sides have finished (half-closes are passed
on).

  LISTEN    address to listen on, IP:PORT (port 0 picks a free port),
            e.g. 127.0.0.1:7000
  UPSTREAM  address to forward to, HOST:PORT, e.g. 127.0.0.1:6888 or
            localhost:6888 (resolved once, at start-up)
  --help    print this help and exit

Prints `listening on ADDR` once bound. A client whose upstream connection
fails is closed, and the reason is logged on stderr.
";

/// What the command line asks for.
#[derive(Debug)]
enum Command {
    Proxy {
        /// Where to listen.
        listen: SocketAddr,
        /// Where to forward, as written (`HOST:PORT`).
        upstream: String,
    },
    Help,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut positional = Vec::new();
    for arg in args {
        match arg.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            _ => positional.push(arg),
        }
    }
    let [listen, upstream] = <[String; 2]>::try_from(positional).map_err(|given| {
        format!(
            "expected two arguments, LISTEN and UPSTREAM, but got {}{}",
            given.len(),
            if given.is_empty() {
                String::new()
            } else {
                format!(": `{}`", given.join("` `"))
            }
        )
    })?;
    let listen = listen
        .parse::<SocketAddr>()
        .map_err(|_| format!("LISTEN must be IP:PORT, e.g. `127.0.0.1:7000`, not `{listen}`"))?;
    let host_and_port = upstream
        .rsplit_once(':')
        .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if host_and_port.is_none() {
        return Err(format!(
            "UPSTREAM must be HOST:PORT, e.g. `127.0.0.1:6888`, not `{upstream}`"
        ));
    }
    Ok(Command::Proxy { listen, upstream })
}

fn main() -> ExitCode {
    let (listen, upstream) = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Proxy { listen, upstream }) => (listen, upstream),
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("proxy: {message}\nrun `proxy --help` for usage");
            return ExitCode::from(2);
        }
    };
    match edgeloop::block_on(run(listen, &upstream)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(listen: SocketAddr, upstream: &str) -> io::Result<()> {
    let upstream: Rc<[SocketAddr]> = lookup_host(upstream).await?.collect();
    if upstream.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "UPSTREAM resolved to no address",
        ));
    }
    let listener = listen_on(listen)?;
    println_flushed(&format!("listening on {}", listener.local_addr()?))?;
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                let upstream = upstream.clone();
                // Detached: the task ends with its connection.
                drop(edgeloop::spawn(async move {
                    if let Err(e) = forward(client, &upstream).await {
                        eprintln!("connection {peer}: {e}");
                    }
                }));
            }
            // `accept` pauses by itself at the fd limit and skips errors that
            // concern one pending connection: what is left is the listener's.
            Err(e) => return Err(e),
        }
    }
}

/// A listener on `addr` with `SO_REUSEADDR`, so a restarted proxy can bind its port
/// while old connections linger in `TIME_WAIT`.
fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
    socket.listen(1024)
}

/// Connects to the upstream, then copies both ways until both directions have
/// ended. Dropping the streams on return closes both connections.
async fn forward(client: TcpStream, upstream: &[SocketAddr]) -> io::Result<()> {
    let server = connect_upstream(upstream).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach upstream {}: {e}; closing the client",
                list(upstream)
            ),
        )
    })?;
    // Forwarded bytes go out as they come: Nagle would only add latency here.
    client.set_nodelay(true)?;
    // Each direction ends on its own: an error in one (the upstream reset while the
    // client was still sending, say) must not cut off data still flowing the other
    // way. Neither can hang: a reset peer fails both directions' calls.
    let (up, down) = join(copy(&client, &server), copy(&server, &client)).await;
    up.and(down).map(|_| ())
}

/// How long a connection whose one direction failed may keep draining its peer's
/// input while the other direction finishes.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Tries each upstream address in turn; the last error if none connects.
async fn connect_upstream(upstream: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last_error = None;
    for &addr in upstream {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_nodelay(true)?;
        match time::timeout(CONNECT_TIMEOUT, socket.connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last_error = Some(e),
            Err(_) => {
                last_error = Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{addr} did not answer within {CONNECT_TIMEOUT:?}"),
                ));
            }
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no upstream address")))
}

/// Copies everything `from` sends to `to`, then passes the EOF on by shutting down
/// `to`'s write side. Returns the number of bytes copied.
async fn copy(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let copied = copy_until_eof(from, to).await;
    if copied.is_err() {
        // This direction is over: tell `to` no more is coming, so its peer ends its
        // side and the other direction finishes too (ignored: `to` may be dead).
        let _ = to.shutdown(Shutdown::Write);
        // And keep reading `from`, throwing the bytes away, until it ends (or a
        // bound passes): closing a socket with unread input makes the kernel send
        // a reset, which would discard what the other direction has queued for
        // that peer and not yet sent, such as the rest of a response.
        let _ = time::timeout(DRAIN_LIMIT, discard_until_eof(from)).await;
    }
    copied
}

/// Reads and drops everything `from` sends until EOF or an error.
async fn discard_until_eof(from: &TcpStream) {
    let mut reader = from;
    let mut buf = [0u8; 4096];
    while let Ok(n) = AsyncReadExt::read(&mut reader, &mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn copy_until_eof(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    // `&TcpStream` reads and writes through the `futures-io` traits, so the two
    // directions can share both streams within one task.
    let (mut reader, mut writer) = (from, to);
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        let n = AsyncReadExt::read(&mut reader, &mut buf).await?;
        if n == 0 {
            to.shutdown(Shutdown::Write)?;
            return Ok(total);
        }
        AsyncWriteExt::write_all(&mut writer, &buf[..n]).await?;
        total += n as u64;
    }
}

/// `a, b, c` for an address list.
fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn println_flushed(line: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}
