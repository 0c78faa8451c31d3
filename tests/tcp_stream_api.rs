//! The rest of `TcpStream`'s surface: `peek`, `try_read`/`try_write`, `readable`,
//! `nodelay`, addresses, `from_std`/`into_std`, `reunite`, `forget`, and the address
//! forms `bind`/`connect` accept.

mod support;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use edgeloop::net::{TcpListener, TcpStream};
use support::{IO_TIMEOUT, with_timeout};

/// A connected (client, server-side) pair on 127.0.0.1.
async fn pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let (server, peer) = listener.accept().await?;
    assert_eq!(peer, client.local_addr()?, "accept's peer address");
    assert_eq!(server.peer_addr()?, client.local_addr()?);
    assert_eq!(client.peer_addr()?, server.local_addr()?);
    Ok((client, server))
}

#[test]
fn peek_leaves_the_data_for_read() -> io::Result<()> {
    with_timeout(20, "peek", || {
        edgeloop::block_on(async {
            let (mut client, mut server) = pair().await?;
            client.write_all(b"look, then take").await?;
            let mut peeked = [0_u8; 4];
            let n = server.peek(&mut peeked).await?;
            assert_eq!(&peeked[..n], &b"look"[..n], "peeked {n} bytes");
            let mut taken = [0_u8; 15];
            let mut got = 0;
            while got < taken.len() {
                got += server.read(&mut taken[got..]).await?;
            }
            assert_eq!(&taken, b"look, then take", "read after peek");
            Ok(())
        })
    })
}

#[test]
fn try_read_says_would_block_until_data_arrives() -> io::Result<()> {
    with_timeout(20, "try_read", || {
        edgeloop::block_on(async {
            let (client, mut server) = pair().await?;
            let mut buf = [0_u8; 8];
            let err = server.try_read(&mut buf).expect_err("no data was sent");
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
            let sent = client.try_write(b"now")?;
            assert_eq!(sent, 3, "try_write on an empty buffer");
            server.readable().await?;
            let n = server.try_read(&mut buf)?;
            assert_eq!(&buf[..n], b"now");
            // The stream still works normally afterwards.
            drop(client);
            assert_eq!(
                server.read(&mut buf).await?,
                0,
                "EOF after the client closed"
            );
            Ok(())
        })
    })
}

#[test]
fn nodelay_round_trips() -> io::Result<()> {
    with_timeout(20, "nodelay", || {
        edgeloop::block_on(async {
            let (client, _server) = pair().await?;
            assert!(!client.nodelay()?, "TCP_NODELAY is off by default");
            client.set_nodelay(true)?;
            assert!(client.nodelay()?, "after set_nodelay(true)");
            client.set_nodelay(false)?;
            assert!(!client.nodelay()?, "after set_nodelay(false)");
            Ok(())
        })
    })
}

#[test]
fn std_sockets_go_in_and_come_back_out() -> io::Result<()> {
    with_timeout(20, "from_std/into_std", || {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = std_listener.local_addr()?;
        let std_client = std::net::TcpStream::connect(addr)?;
        let (mut client_back, listener_back) = edgeloop::block_on(async {
            let listener = TcpListener::from_std(std_listener)?;
            assert_eq!(listener.local_addr()?, addr);
            let mut client = TcpStream::from_std(std_client)?;
            let (mut server, _) = listener.accept().await?;
            client.write_all(b"in").await?;
            let mut buf = [0_u8; 2];
            let mut got = 0;
            while got < 2 {
                got += server.read(&mut buf[got..]).await?;
            }
            assert_eq!(&buf, b"in");
            // Out again: usable as plain blocking std types after the runtime ends.
            server.write_all(b"out").await?;
            Ok::<_, io::Error>((client.into_std()?, listener.into_std()?))
        })?;
        client_back.set_nonblocking(false)?;
        client_back.set_read_timeout(Some(IO_TIMEOUT))?;
        let mut buf = [0_u8; 3];
        client_back.read_exact(&mut buf)?;
        assert_eq!(&buf, b"out", "read through into_std");
        listener_back.set_nonblocking(false)?;
        let _late = std::net::TcpStream::connect(addr)?;
        let (mut accepted, _) = listener_back.accept()?;
        accepted.write_all(b"!")?;
        Ok(())
    })
}

#[test]
fn halves_reunite_only_with_their_own_stream() -> io::Result<()> {
    with_timeout(20, "reunite", || {
        edgeloop::block_on(async {
            let (a, _a_peer) = pair().await?;
            let (b, _b_peer) = pair().await?;
            let (a_read, a_write) = a.into_split();
            let (b_read, b_write) = b.into_split();
            let err = a_read
                .reunite(b_write)
                .expect_err("halves of different streams");
            assert!(
                err.to_string().contains("not from the same stream"),
                "{err}"
            );
            let (a_read, b_write) = (err.0, err.1);
            let a = a_read.reunite(a_write).expect("a's own halves");
            let b = b_read.reunite(b_write).expect("b's own halves");
            assert_ne!(a.local_addr()?, b.local_addr()?);
            Ok(())
        })
    })
}

#[test]
fn forgotten_write_half_does_not_shut_down_the_stream() -> io::Result<()> {
    with_timeout(20, "forget", || {
        edgeloop::block_on(async {
            let (client, mut server) = pair().await?;
            let (mut read_half, write_half) = client.into_split();
            write_half.forget();
            // The write side is still open: the server can talk and the client's
            // read half hears it; the server sees no EOF until the client drops.
            server.write_all(b"ping").await?;
            let mut buf = [0_u8; 4];
            let mut got = 0;
            while got < 4 {
                got += read_half.read(&mut buf[got..]).await?;
            }
            assert_eq!(&buf, b"ping");
            let err = server.try_read(&mut buf).expect_err("no EOF, no data");
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
            Ok(())
        })
    })
}

#[test]
fn every_address_form_binds_and_connects() -> io::Result<()> {
    with_timeout(20, "address forms", || {
        edgeloop::block_on(async {
            let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let listeners = [
                TcpListener::bind("127.0.0.1:0").await?,
                TcpListener::bind(String::from("127.0.0.1:0")).await?,
                TcpListener::bind(("127.0.0.1", 0)).await?,
                TcpListener::bind((loopback, 0)).await?,
                TcpListener::bind(SocketAddr::new(loopback, 0)).await?,
                TcpListener::bind("localhost:0").await?,
            ];
            for (i, listener) in listeners.iter().enumerate() {
                let addr = listener.local_addr()?;
                assert!(addr.ip().is_loopback(), "listener {i} bound to {addr}");
                let port = addr.port();
                let ip = addr.ip();
                let client = match i % 3 {
                    0 => TcpStream::connect(addr).await?,
                    1 => TcpStream::connect(format!("{addr}")).await?,
                    _ => TcpStream::connect((ip, port)).await?,
                };
                let (server, _) = listener.accept().await?;
                assert_eq!(server.peer_addr()?, client.local_addr()?, "listener {i}");
            }
            Ok(())
        })
    })
}
