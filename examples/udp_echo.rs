//! A UDP echo server on edgeloop: every datagram is sent back, unchanged, to the
//! address it came from.
//!
//! ```text
//! cargo run --example udp_echo -- [ADDR]
//! ```
//!
//! Prints `listening on ADDR` once bound (default 127.0.0.1:6889). One task does it
//! all with `recv_from`/`send_to`; the buffer holds the largest UDP datagram, so
//! nothing is ever truncated. An error on one datagram (say, the reply cannot be
//! sent) is logged to stderr and the server goes on with the next one. Stop it with
//! Ctrl-C.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use edgeloop::net::UdpSocket;
use edgeloop::time;

const USAGE: &str = "\
usage: udp_echo [ADDR]

A UDP echo server: every datagram is sent back to its sender.

  ADDR    address to listen on (default 127.0.0.1:6889)
  --help  print this help and exit
";

/// Room for the largest datagram UDP can carry (65,507 bytes of payload over IPv4,
/// 65,527 over IPv6), so none is cut short.
const BUF_SIZE: usize = 64 * 1024;

/// How long to pause after a receive error that is not about one datagram (out of
/// memory, say), so a persistent one cannot spin the loop.
const RECV_BACKOFF: Duration = Duration::from_millis(50);

/// What the command line asks for.
enum Command {
    Serve { addr: String },
    Help,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut addr = None;
    for arg in args {
        match arg.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            _ if addr.is_some() => {
                return Err(format!(
                    "unexpected argument `{arg}`: ADDR was given already"
                ));
            }
            _ => addr = Some(arg),
        }
    }
    Ok(Command::Serve {
        addr: addr.unwrap_or_else(|| "127.0.0.1:6889".to_owned()),
    })
}

fn main() -> ExitCode {
    let addr = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Serve { addr }) => addr,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("udp_echo: {message}\nrun `udp_echo --help` for the options");
            return ExitCode::from(2);
        }
    };
    match edgeloop::block_on(serve(&addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp_echo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: &str) -> io::Result<()> {
    let socket = UdpSocket::bind(addr).await?;
    println_flushed(&format!("listening on {}", socket.local_addr()?))?;
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) if concerns_one_datagram(&e) => {
                eprintln!("recv: {e}; skipped");
                continue;
            }
            Err(e) => {
                eprintln!("recv: {e}; pausing {} ms", RECV_BACKOFF.as_millis());
                time::sleep(RECV_BACKOFF).await;
                continue;
            }
        };
        match socket.send_to(&buf[..n], peer).await {
            Ok(sent) if sent == n => {}
            Ok(sent) => eprintln!("echo to {peer}: sent {sent} of {n} bytes"),
            Err(e) => eprintln!("echo to {peer}: {e}; dropped"),
        }
    }
}

fn println_flushed(line: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

/// Errors a receive reports about one earlier datagram (an ICMP error for a reply
/// that could not be delivered, on systems that report them): nothing to wait out.
fn concerns_one_datagram(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}
