//! `echo_mio`: the echo benchmark's hand-written mio server (see bench/README.md),
//! no async at all.
//!
//! One `Token` per connection, registered once for readable and writable (mio is
//! edge-triggered). On an event the connection writes back what it still holds,
//! then reads (16 KiB buffer) and writes back until the socket would block. A
//! write the socket takes only in part keeps the rest in the buffer, and the
//! connection reads nothing more until a writable event lets it finish.
//! `TCP_NODELAY` on every connection, as in every peer server.
//!
//! Usage: `echo_mio [ADDR]` (default 127.0.0.1:7000; port 0 picks a free one).
//! Prints `listening on ADDR` on stdout once bound, then serves until killed.
#![deny(unsafe_code, missing_docs)]

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use edgeloop_bench::echo::{BUFFER_SIZE, listen_address};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

/// The listener's token; connections use their slot index.
const LISTENER: Token = Token(usize::MAX);

/// One client connection.
struct Conn {
    stream: TcpStream,
    /// The read buffer, which also holds what is yet to be written back.
    buf: Box<[u8]>,
    /// Start of the bytes read but not yet written back.
    offset: usize,
    /// How many there are.
    pending: usize,
}

/// What an event left a connection as.
enum Outcome {
    /// Waiting for its next event.
    Open,
    /// EOF or an error: close it.
    Done,
}

impl Conn {
    /// Moves bytes until the socket would block, as the module docs say.
    fn drive(&mut self) -> Outcome {
        loop {
            while self.pending > 0 {
                match self
                    .stream
                    .write(&self.buf[self.offset..self.offset + self.pending])
                {
                    Ok(0) => return Outcome::Done,
                    Ok(n) => {
                        self.offset += n;
                        self.pending -= n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // The rest waits here for a writable event.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Open,
                    Err(_) => return Outcome::Done,
                }
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => return Outcome::Done,
                Ok(n) => {
                    self.offset = 0;
                    self.pending = n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Drained: the next byte to arrive raises a new event.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Open,
                Err(_) => return Outcome::Done,
            }
        }
    }
}

fn main() -> io::Result<()> {
    let text = listen_address("echo_mio");
    let addr: SocketAddr = text.parse().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{text}`: not an IP:PORT address ({e})"),
        )
    })?;
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);

    // Connections by token; freed slots are reused (last freed, first reused).
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in &events {
            if event.token() == LISTENER {
                accept_all(&listener, &poll, &mut conns, &mut free)?;
                continue;
            }
            let slot = event.token().0;
            let done = match conns.get_mut(slot).and_then(Option::as_mut) {
                Some(conn) => matches!(conn.drive(), Outcome::Done),
                None => false,
            };
            if done {
                // Dropping the stream closes it, which also leaves the epoll set.
                conns[slot] = None;
                free.push(slot);
            }
        }
    }
}

/// Accepts every pending connection (edge-triggered: until it would block).
fn accept_all(
    listener: &TcpListener,
    poll: &Poll,
    conns: &mut Vec<Option<Conn>>,
    free: &mut Vec<usize>,
) -> io::Result<()> {
    loop {
        let (mut stream, _peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) =>
            {
                continue;
            }
            Err(e) => {
                // EMFILE and the like: this batch waits for the next event.
                eprintln!("echo_mio: accept: {e}");
                return Ok(());
            }
        };
        stream.set_nodelay(true)?;
        let slot = free.pop().unwrap_or_else(|| {
            conns.push(None);
            conns.len() - 1
        });
        poll.registry().register(
            &mut stream,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns[slot] = Some(Conn {
            stream,
            buf: vec![0u8; BUFFER_SIZE].into_boxed_slice(),
            offset: 0,
            pending: 0,
        });
    }
}
