//! Accepting: several tasks may accept on one shared listener, and none is left
//! waiting while connections queue; `incoming()` yields connections as a stream.

mod support;

use std::io;
use std::rc::Rc;

use edgeloop::net::{TcpListener, TcpStream};
use futures_util::StreamExt;
use support::{roundtrip, with_timeout};

/// Two acceptor tasks share a listener; each serves its connection inline until the
/// client closes. With one connection held open by the busy acceptor, the idle one
/// must still get the next connection.
#[test]
fn idle_acceptor_is_woken_while_another_is_busy() -> io::Result<()> {
    with_timeout(20, "two acceptors on one listener", || {
        edgeloop::block_on(async {
            let listener = Rc::new(TcpListener::bind("127.0.0.1:0").await?);
            let addr = listener.local_addr()?;
            let acceptors: Vec<_> = (0..2)
                .map(|_| {
                    let listener = listener.clone();
                    edgeloop::spawn(async move {
                        let (stream, _) = listener.accept().await?;
                        support::echo(stream).await
                    })
                })
                .collect();
            edgeloop::yield_now().await; // both acceptors are waiting now

            let mut first = TcpStream::connect(addr).await?;
            assert_eq!(roundtrip(&mut first, b"one").await?, b"one");
            // `first` stays open: one acceptor is busy echoing it. The other must
            // take this one.
            let mut second = TcpStream::connect(addr).await?;
            assert_eq!(roundtrip(&mut second, b"two").await?, b"two");
            drop((first, second));
            for (i, acceptor) in acceptors.into_iter().enumerate() {
                let echoed = acceptor.await??;
                assert_eq!(echoed, 3, "acceptor {i} echoed {echoed} bytes");
            }
            Ok(())
        })
    })
}

#[test]
fn incoming_yields_each_connection_in_order() -> io::Result<()> {
    with_timeout(20, "incoming stream", || {
        edgeloop::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let mut clients = Vec::new();
            for _ in 0..5 {
                clients.push(TcpStream::connect(addr).await?);
            }
            let mut incoming = listener.incoming();
            for (i, client) in clients.iter().enumerate() {
                let accepted = incoming.next().await.expect("incoming never ends")?;
                assert_eq!(
                    accepted.peer_addr()?,
                    client.local_addr()?,
                    "connection {i} out of order"
                );
            }
            Ok(())
        })
    })
}
