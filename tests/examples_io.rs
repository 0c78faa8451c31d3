//! Examples built and run as a user would: `cargo build --example NAME`, start the
//! binary on `127.0.0.1:0`, read the address it prints, talk to it with blocking
//! std sockets.
//!
//! - `udp_echo`: every datagram, empty to 65,507 bytes, comes back exactly, to its
//!   sender; `--help` and bad arguments.

mod support;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{
    ChildGuard, IO_TIMEOUT, XorShift, assert_same_bytes, built_example, first_line_within, pattern,
    with_timeout,
};

/// `udp_echo`, built once per test binary.
fn udp_echo() -> io::Result<PathBuf> {
    built_example("udp_echo")
}

/// Starts `udp_echo 127.0.0.1:0`; returns the guard that kills it and the address
/// from its first line of stdout, which must be exactly `listening on
/// 127.0.0.1:PORT` with a non-zero port.
fn start_udp_echo() -> io::Result<(ChildGuard, SocketAddr)> {
    let mut guard = ChildGuard::spawn(
        Command::new(udp_echo()?)
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
    Ok((guard, SocketAddr::from(([127, 0, 0, 1], port))))
}

/// A blocking std UDP socket on 127.0.0.1 with a receive timeout, so a lost echo
/// is an error instead of a hang.
fn std_udp_client() -> io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(socket)
}

/// Sends `msg` to `server` and checks that exactly it comes back, from `server`.
fn udp_round_trip(
    socket: &std::net::UdpSocket,
    server: SocketAddr,
    msg: &[u8],
    what: &str,
) -> io::Result<()> {
    assert_eq!(
        socket.send_to(msg, server)?,
        msg.len(),
        "{what}: bytes sent"
    );
    // One byte more than any datagram: a merged or padded echo would show.
    let mut buf = vec![0u8; 64 * 1024 + 1];
    let (n, from) = socket
        .recv_from(&mut buf)
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: no echo: {e}")))?;
    assert_eq!(from, server, "{what}: echo came from");
    assert_same_bytes(&buf[..n], msg, what);
    Ok(())
}

#[test]
fn udp_echo_example_echoes_each_datagram_exactly_to_its_sender() -> io::Result<()> {
    with_timeout(300, "udp_echo example, one client", || {
        let (mut server, addr) = start_udp_echo()?;
        let client = std_udp_client()?;
        let sizes = [0, 1, 5, 1400, 8192, 60_000, 0, 65_507];
        for (i, &size) in sizes.iter().enumerate() {
            let msg = pattern(size, 900 + i as u64);
            udp_round_trip(&client, addr, &msg, &format!("datagram {i} ({size} bytes)"))?;
        }
        server.kill_expecting_running()
    })
}

#[test]
fn udp_echo_example_serves_several_clients_and_outlives_vanished_ones() -> io::Result<()> {
    with_timeout(300, "udp_echo example, several clients", || {
        let (mut server, addr) = start_udp_echo()?;
        // The real clients' sockets first: a port freed by a vanished client below
        // could otherwise be given to one of them, which would then receive the
        // vanished client's late echo instead of its own.
        let sockets = (0..4)
            .map(|_| std_udp_client())
            .collect::<io::Result<Vec<_>>>()?;
        // Clients that send and close at once: their echoes go nowhere.
        for i in 0..5 {
            let gone = std::net::UdpSocket::bind("127.0.0.1:0")?;
            gone.send_to(&pattern(100, 950 + i), addr)?;
        }
        let clients: Vec<_> = sockets
            .into_iter()
            .zip(0..4u64)
            .map(|(client, id)| {
                std::thread::spawn(move || {
                    let mut rng = XorShift::new(960 + id);
                    for i in 0..50 {
                        let len = rng.in_range(0, 9000);
                        let msg = rng.bytes(len);
                        udp_round_trip(&client, addr, &msg, &format!("client {id}, datagram {i}"))?;
                    }
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

#[test]
fn udp_echo_example_prints_help_and_rejects_bad_arguments() -> io::Result<()> {
    with_timeout(300, "udp_echo example, arguments", || {
        let path = udp_echo()?;
        let run = |args: &[&str]| -> io::Result<_> {
            let mut child = ChildGuard::spawn(
                Command::new(&path)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped()),
            )?;
            child.output_within(Duration::from_secs(30))
        };
        let (status, stdout, stderr) = run(&["--help"])?;
        assert!(status.success(), "`udp_echo --help` exited with {status}");
        assert!(
            stdout.starts_with("usage: udp_echo [ADDR]"),
            "`udp_echo --help` printed:\n{stdout}"
        );
        assert_eq!(stderr, "", "`udp_echo --help` stderr");
        for (args, named) in [
            (&["--nope"][..], "--nope"),
            (&["127.0.0.1:0", "127.0.0.1:1"][..], "127.0.0.1:1"),
        ] {
            let (status, stdout, stderr) = run(args)?;
            assert_eq!(
                status.code(),
                Some(2),
                "`udp_echo {args:?}` exited with {status}"
            );
            assert_eq!(stdout, "", "`udp_echo {args:?}` stdout");
            assert!(
                stderr.contains(named),
                "`udp_echo {args:?}` stderr:\n{stderr}"
            );
        }
        let (status, _, stderr) = run(&["not-an-address"])?;
        assert_eq!(status.code(), Some(1), "bad ADDR exited with {status}");
        assert!(
            stderr.contains("not-an-address"),
            "bad ADDR stderr:\n{stderr}"
        );
        Ok(())
    })
}
