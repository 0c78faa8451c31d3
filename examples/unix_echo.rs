//! An echo server on a Unix-domain socket: one task per connection, each echoing
//! what it reads until EOF, then shutting down its write side.
//!
//! ```text
//! cargo run --example unix_echo -- [PATH] [--force]
//! ```
//!
//! Prints `listening on PATH` once bound (default `/tmp/edgeloop-echo.sock`), then
//! serves until killed. Try it with `socat - UNIX-CONNECT:/tmp/edgeloop-echo.sock`.
//!
//! - The socket file is never removed by the server, not even when it exits (as
//!   with any Unix socket server killed by a signal). Starting again on the same
//!   path then fails with a message saying so; pass `--force` to remove the old
//!   socket file first. `--force` refuses to remove anything that is not a socket.
//! - `@NAME` listens on the abstract address `NAME` instead (Linux): no file at all.
//! - A connection's error is logged to stderr and ends only that connection.

use std::ffi::OsString;
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use edgeloop::net::{UnixListener, UnixStream};

/// Where to listen when no PATH is given.
const DEFAULT_PATH: &str = "/tmp/edgeloop-echo.sock";

const USAGE: &str = "\
usage: unix_echo [PATH] [--force]

An echo server on a Unix-domain stream socket: every byte a client sends
comes back to it; at EOF the server shuts down its side too.

  PATH      socket file to create (default /tmp/edgeloop-echo.sock); the
            server never removes it. `@NAME` listens on the abstract address
            NAME instead (Linux; no file)
  --force   if PATH exists and is a socket file (say, left by an earlier run),
            remove it before binding; anything else at PATH is never removed
  --help    print this help and exit
";

/// Command-line settings.
#[derive(Debug)]
struct Args {
    /// The address as given to `bind` (`\0NAME` for `@NAME`).
    path: PathBuf,
    /// Remove a socket file already at `path`.
    force: bool,
}

/// What the command line asks for.
enum Command {
    Serve(Args),
    Help,
}

fn parse_args(args: impl Iterator<Item = OsString>) -> Result<Command, String> {
    let mut path = None;
    let mut force = false;
    for arg in args {
        match arg.to_str() {
            Some("--help" | "-h") => return Ok(Command::Help),
            Some("--force") => force = true,
            Some(flag) if flag.starts_with('-') => {
                return Err(format!("unknown option `{flag}`"));
            }
            _ if path.is_some() => {
                return Err(format!(
                    "unexpected argument `{}`: PATH was given already",
                    arg.to_string_lossy()
                ));
            }
            _ => path = Some(arg),
        }
    }
    let path = path.unwrap_or_else(|| DEFAULT_PATH.into());
    let path = match path.as_encoded_bytes().strip_prefix(b"@") {
        // `bind` reads a leading NUL byte as "abstract name follows".
        Some(name) => OsString::from_vec([&[0][..], name].concat()),
        None => path,
    };
    Ok(Command::Serve(Args {
        path: PathBuf::from(path),
        force,
    }))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Serve(args)) => args,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("unix_echo: {message}\nrun `unix_echo --help` for the options");
            return ExitCode::from(2);
        }
    };
    match edgeloop::block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unix_echo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Removes the socket file at `path` for `--force`; refuses to remove anything
/// else. Nothing there is fine.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let kind = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata.file_type(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !kind.is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; `--force` only removes socket files, \
                 so remove it yourself or choose another path",
                path.display()
            ),
        ));
    }
    std::fs::remove_file(path)
}

async fn serve(args: Args) -> io::Result<()> {
    let is_abstract = args.path.as_os_str().as_encoded_bytes().first() == Some(&0);
    if args.force && !is_abstract {
        remove_stale_socket(&args.path)?;
    }
    let listener = match UnixListener::bind(&args.path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && !is_abstract => {
            return Err(io::Error::new(
                e.kind(),
                format!("{e}\n(or pass `--force` to remove an old socket file first)"),
            ));
        }
        bound => bound?,
    };
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    // Flushed at once: whoever started the server waits for this line.
    stdout.flush()?;
    drop(stdout);

    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                edgeloop::spawn(async move {
                    if let Err(e) = echo(stream).await {
                        eprintln!("unix_echo: connection: {e}");
                    }
                });
            }
            // `accept` pauses by itself at the fd limit and skips errors that
            // concern one pending connection: what is left is the listener's.
            Err(e) => return Err(e),
        }
    }
}

/// Echoes everything read on `stream` until EOF, then shuts down the write side.
async fn echo(mut stream: UnixStream) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown(Shutdown::Write);
        }
        stream.write_all(&buf[..n]).await?;
    }
}
