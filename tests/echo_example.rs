//! The `echo` example, built and run as a user would: `cargo build --example echo`,
//! start the binary on `127.0.0.1:0`, read the address it prints, talk to it with
//! blocking std sockets.

mod support;

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::Duration;

use support::{
    ChildGuard, XorShift, assert_same_bytes, first_line_within, pattern, std_connect,
    std_roundtrip, with_timeout,
};

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");

/// Where cargo puts the example: `$CARGO_TARGET_DIR` (relative to the package root,
/// where cargo runs tests, if relative) or `target/`, then `debug/examples/echo`.
fn example_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    target_dir.join("debug").join("examples").join("echo")
}

/// Builds the example once per test binary (debug profile, like the tests) and
/// returns its path, or the reason it could not be built.
fn built_example() -> io::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let build = || -> io::Result<PathBuf> {
                let mut child = ChildGuard::spawn(
                    Command::new(env!("CARGO"))
                        .args(["build", "--example", "echo", "--manifest-path", MANIFEST])
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped()),
                )?;
                let (status, stdout, stderr) = child.output_within(Duration::from_secs(240))?;
                if !status.success() {
                    return Err(io::Error::other(format!(
                        "`cargo build --example echo` exited with {status}\nstdout:\n{stdout}\n\
                         stderr:\n{stderr}"
                    )));
                }
                let path = example_path();
                if !path.is_file() {
                    return Err(io::Error::other(format!(
                        "built the example but found no file at {}",
                        path.display()
                    )));
                }
                Ok(path)
            };
            build().map_err(|e| e.to_string())
        })
        .clone()
        .map_err(io::Error::other)
}

/// Starts the example on `127.0.0.1:0`; returns the guard that kills it and the
/// address parsed from its first line, which must be exactly
/// `listening on 127.0.0.1:PORT`.
fn start_example() -> io::Result<(ChildGuard, SocketAddr)> {
    let mut guard = ChildGuard::spawn(
        Command::new(built_example()?)
            .arg("127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )?;
    let stdout = guard
        .child_mut()
        .stdout
        .take()
        .expect("stdout was set to piped");
    let line = first_line_within(stdout, Duration::from_secs(30))?;
    let port: u16 = line
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("first line is not `listening on 127.0.0.1:PORT`: {line:?}"));
    assert_ne!(port, 0, "the example printed port 0: {line:?}");
    assert_eq!(
        line,
        format!("listening on 127.0.0.1:{port}"),
        "first line of the example's stdout"
    );
    Ok((guard, SocketAddr::from(([127, 0, 0, 1], port))))
}

#[test]
fn echo_example_prints_its_address_echoes_messages_exactly_and_ends_with_eof() -> io::Result<()> {
    with_timeout(300, "echo example, one client", || {
        let (mut server, addr) = start_example()?;
        let mut stream = std_connect(addr)?;
        let sizes = [1, 5, 1000, 64 * 1024, 100 * 1024, 3, 17 * 1024 + 1];
        for (i, &size) in sizes.iter().enumerate() {
            let msg = pattern(size, 500 + i as u64);
            let echoed = std_roundtrip(&mut stream, &msg)?;
            assert_same_bytes(&echoed, &msg, &format!("message {i} ({size} bytes)"));
        }
        stream.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        let n = stream.read_to_end(&mut rest)?;
        assert_eq!(n, 0, "bytes after the last echo, before EOF: {rest:02x?}");
        server.kill_expecting_running()
    })
}

#[test]
fn echo_example_serves_twenty_concurrent_std_clients_exactly() -> io::Result<()> {
    with_timeout(300, "echo example, 20 clients", || {
        let (mut server, addr) = start_example()?;
        const CLIENTS: usize = 20;
        let barrier = Arc::new(Barrier::new(CLIENTS));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    // Everyone reaches the barrier, even a client that failed to
                    // connect, so no thread is left waiting for it.
                    let connected = std_connect(addr);
                    barrier.wait();
                    let mut stream = connected?;
                    let mut rng = XorShift::new(7000 + id as u64);
                    for i in 0..4 {
                        let len = rng.in_range(1, 64 * 1024);
                        let msg = rng.bytes(len);
                        let echoed = std_roundtrip(&mut stream, &msg)?;
                        assert_same_bytes(&echoed, &msg, &format!("client {id}, message {i}"));
                    }
                    stream.shutdown(Shutdown::Write)?;
                    let mut rest = Vec::new();
                    stream.read_to_end(&mut rest)?;
                    assert!(
                        rest.is_empty(),
                        "client {id}: {} bytes after the last echo",
                        rest.len()
                    );
                    Ok::<(), io::Error>(())
                })
            })
            .collect();
        for client in clients {
            client.join().expect("client thread panicked")?;
        }
        server.kill_expecting_running()
    })
}
