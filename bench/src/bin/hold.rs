//! `hold`: the scale benchmark's client. It opens `--connections` connections to an
//! echo server, keeps them all open, and echoes on a random sample of them: how
//! many connections one server thread can hold, and whether holding them slows the
//! few that talk. Built on std's sockets and `rustix`'s epoll and timerfd, not on
//! edgeloop, so that a bug in the runtime cannot hide on both ends.
//!
//! # Phases
//!
//! 1. **Connect.** Non-blocking connects, at most `--parallel` in flight (below the
//!    server's listen backlog, so no SYN is dropped and retried a second later).
//!    Connection `i` is bound to source address `--first-ip` + `i / --per-ip`
//!    (port chosen by the kernel), so a process is not held to the ~28,000
//!    ephemeral ports of one source address; every address is in 127.0.0.0/8,
//!    which Linux routes to the loopback device as a whole.
//! 2. **Hold.** With `--wait-go`, prints `held N` on stdout and waits for a line on
//!    stdin (the driver `scale` measures the idle server meanwhile); EOF on stdin
//!    ends the process.
//! 3. **Echo.** Every second a fresh random sample of `--sample` held connections
//!    is drawn; messages of `--size` random bytes go out at `--rate` per second,
//!    evenly spaced, to the sample's connections in turn (one message in flight per
//!    connection; one that is still busy is passed over). The pace comes from a
//!    timerfd, not from the wait's millisecond timeout, so at thousands of
//!    messages per second they go out one by one instead of in a burst each
//!    millisecond, and the server sees the same shape of load (about one event per
//!    `epoll_wait`) whatever else changes. Every echoed byte is
//!    compared with what was sent. `--warmup` seconds are not counted, then
//!    `--duration` seconds are; the other held connections stay idle throughout,
//!    and any byte or EOF on them is an error. At the end, the echoes still in
//!    flight are waited for (up to a second, not counted), so no connection closes
//!    with unread bytes, which would reset it.
//!
//! Human-readable lines go to stderr; one JSON line goes to stdout at the end, with
//! the latency histogram's recorded values so a driver can merge several
//! processes' histograms. Exit status: 0; 1 if stdin closed before the go
//! (`--wait-go`); 2 for a bad command line; 3 (after the
//! JSON line) if a connection failed, erred, timed out or echoed wrong bytes;
//! 4 if the watchdog ended a run that overran its time bound.
//!
//! One process may hold at most its `RLIMIT_NOFILE` of fds (the soft limit is
//! raised to the hard one first); past that, run several (`scale` does).
#![deny(unsafe_code, missing_docs)]

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use edgeloop_bench::echo::split_flags;
use edgeloop_bench::{Args, XorShift};
use hdrhistogram::Histogram;
use rustix::buffer::spare_capacity;
use rustix::event::Timespec;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use rustix::process::{Resource, Rlimit};
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags};

const USAGE: &str = "\
usage: hold --addr ADDR [--connections N] [--first-ip IP] [--per-ip N]
            [--parallel N] [--connect-timeout SECS] [--sample N] [--rate MSGS]
            [--size BYTES] [--warmup SECS] [--duration SECS] [--echo-timeout SECS]
            [--go-timeout SECS] [--seed N] [--label TEXT] [--wait-go]

Opens N connections to an echo server at ADDR (an IPv4 address on 127.0.0.0/8),
keeps them open, and echoes BYTES-byte messages at MSGS per second on a random
sample of N connections, drawn afresh every second. Defaults: --connections 1000
--first-ip 127.0.0.2 --per-ip 10000 --parallel 256 --connect-timeout 60
--sample 100 --rate 1000 --size 64 --warmup 1 --duration 10 --echo-timeout 5
--go-timeout 300. --wait-go: print `held N` once connected, then wait for a line
on stdin before echoing.";

/// How much more than its connections one process needs in fds: stdio, the
/// epoll fd, the timerfd, and some margin.
const SPARE_FDS: u64 = 16;
/// The read buffer: an echo never comes back larger than one message.
const READ_BUFFER: usize = 64 * 1024;
/// How often in-flight messages are checked against `--echo-timeout`.
const TIMEOUT_SCAN: Duration = Duration::from_millis(100);
/// Messages more than this late on their schedule (the process was starved) are
/// dropped from the schedule rather than sent in a burst.
const MAX_LAG: Duration = Duration::from_secs(1);
/// How long the echoes still in flight at the end of the window are waited for.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// The epoll token of the pacing timerfd (connections' tokens are their indices).
const TIMER_TOKEN: u64 = u64::MAX;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 1024;
/// Errors printed one by one before the rest are only counted.
const ERRORS_SHOWN: u64 = 5;

/// The command line.
#[derive(Debug, Clone)]
struct Config {
    addr: SocketAddrV4,
    connections: usize,
    first_ip: Ipv4Addr,
    per_ip: usize,
    parallel: usize,
    connect_timeout: Duration,
    sample: usize,
    rate: f64,
    size: usize,
    warmup: Duration,
    duration: Duration,
    echo_timeout: Duration,
    go_timeout: Duration,
    seed: u64,
    label: Option<String>,
    wait_go: bool,
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let (rest, flags) = split_flags(std::env::args().skip(1), &["wait-go", "help"]);
        if flags.iter().any(|f| f == "help") {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let known = [
            "addr",
            "connections",
            "first-ip",
            "per-ip",
            "parallel",
            "connect-timeout",
            "sample",
            "rate",
            "size",
            "warmup",
            "duration",
            "echo-timeout",
            "go-timeout",
            "seed",
            "label",
        ];
        let args = Args::parse(rest, &known)?;
        let addr_text = args.text("addr").ok_or("`--addr` is required")?;
        let addr = match addr_text.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(SocketAddr::V4(addr))) if addr.ip().is_loopback() => addr,
            Ok(_) => {
                return Err(format!(
                    "`--addr {addr_text}`: not an address on 127.0.0.0/8"
                ));
            }
            Err(e) => return Err(format!("`--addr {addr_text}`: {e}")),
        };
        let seconds = |name: &str, default: f64| -> Result<Duration, String> {
            match args.text(name) {
                None => Ok(Duration::from_secs_f64(default)),
                Some(text) => text
                    .parse::<f64>()
                    .ok()
                    .and_then(|v| Duration::try_from_secs_f64(v).ok())
                    .ok_or_else(|| format!("`--{name} {text}`: not a number of seconds")),
            }
        };
        let count = |name: &str, default: usize| -> Result<usize, String> {
            match args.text(name) {
                None => Ok(default),
                Some(text) => text
                    .parse::<usize>()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| format!("`--{name} {text}`: not a whole number > 0")),
            }
        };
        let first_ip_text = args.text("first-ip").unwrap_or("127.0.0.2");
        let first_ip: Ipv4Addr = first_ip_text
            .parse()
            .map_err(|e| format!("`--first-ip {first_ip_text}`: {e}"))?;
        let rate_text = args.text("rate").unwrap_or("1000");
        let rate = rate_text
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r >= 0.0)
            .ok_or_else(|| format!("`--rate {rate_text}`: not a number >= 0"))?;
        let config = Config {
            addr,
            connections: count("connections", 1000)?,
            first_ip,
            per_ip: count("per-ip", 10_000)?,
            parallel: count("parallel", 256)?,
            connect_timeout: seconds("connect-timeout", 60.0)?,
            sample: count("sample", 100)?,
            rate,
            size: count("size", 64)?,
            warmup: seconds("warmup", 1.0)?,
            duration: seconds("duration", 10.0)?,
            echo_timeout: seconds("echo-timeout", 5.0)?,
            go_timeout: seconds("go-timeout", 300.0)?,
            seed: args.get("seed", 0x5ca1e_u64),
            label: args.text("label").map(str::to_owned),
            wait_go: flags.iter().any(|f| f == "wait-go"),
        };
        if config.size > READ_BUFFER {
            return Err(format!("`--size` is at most {READ_BUFFER}"));
        }
        if config.duration.is_zero() {
            return Err("`--duration` must be more than 0".to_owned());
        }
        // Every source address must stay inside 127.0.0.0/8.
        let last = source_ip(&config, config.connections - 1);
        if !first_ip.is_loopback() || !last.is_some_and(|ip| ip.is_loopback()) {
            return Err(format!(
                "source addresses {first_ip} + {} / {} leave 127.0.0.0/8",
                config.connections, config.per_ip
            ));
        }
        Ok(config)
    }
}

/// The source address of connection `i`: `--first-ip` + `i / --per-ip`.
fn source_ip(config: &Config, i: usize) -> Option<Ipv4Addr> {
    let step = u32::try_from(i / config.per_ip).ok()?;
    u32::from(config.first_ip)
        .checked_add(step)
        .map(Ipv4Addr::from)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one; returns the soft limit now.
fn raise_fd_limit() -> u64 {
    let limit = rustix::process::getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = rustix::process::setrlimit(Resource::Nofile, raised) {
            eprintln!("hold: cannot raise RLIMIT_NOFILE to the hard limit: {e}");
        }
    }
    rustix::process::getrlimit(Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// Opens a non-blocking TCP socket bound to `source` (any port) and starts
/// connecting it to `dst`.
fn start_connect(source: Ipv4Addr, dst: SocketAddrV4) -> io::Result<TcpStream> {
    let fd = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::sockopt::set_tcp_nodelay(&fd, true)?;
    rustix::net::bind(&fd, &SocketAddrV4::new(source, 0))?;
    match rustix::net::connect(&fd, &dst) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(TcpStream::from(fd))
}

/// What one epoll event says, copied out of the kernel's (packed) struct.
#[derive(Debug, Clone, Copy)]
struct Ready {
    token: u64,
    flags: EventFlags,
}

impl Ready {
    fn writable(self) -> bool {
        self.flags.contains(EventFlags::OUT)
    }

    /// Readable, or the peer closed, or an error: a read will tell.
    fn readable(self) -> bool {
        self.flags
            .intersects(EventFlags::IN | EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR)
    }
}

/// A message sent and not yet fully echoed.
#[derive(Debug)]
struct InFlight {
    sent_at: Instant,
    /// What was sent, to compare the echo with.
    message: Vec<u8>,
    written: usize,
    received: usize,
    /// A byte of the echo so far differed from what was sent.
    corrupt: bool,
}

/// Where a connection is.
#[derive(Debug)]
enum State {
    Connecting,
    Idle,
    Busy(InFlight),
    /// Failed (and shut down); never used again.
    Dead,
}

/// What the process saw; the JSON line at the end.
#[derive(Debug)]
struct Tally {
    connect_errors: u64,
    connect_time: Duration,
    held: usize,
    /// Messages echoed inside the counted window.
    echoed: u64,
    /// Messages echoed at any time (warm-up included).
    echoed_total: u64,
    /// Messages sent (warm-up included).
    sent: u64,
    /// Sends passed over because every connection of the sample was busy.
    skipped: u64,
    /// Messages dropped from the schedule because the process fell behind it.
    lagged: u64,
    /// I/O errors and EOFs, on busy and idle connections (each ends its
    /// connection).
    errors: u64,
    /// Messages not echoed within `--echo-timeout` (each ends its connection).
    timeouts: u64,
    /// Echoes that differed from what was sent, and bytes nobody asked for.
    verify_failures: u64,
    /// Latency of each counted message, in nanoseconds.
    latency: Histogram<u64>,
}

/// The connections and everything the loop needs.
struct Holder {
    config: Config,
    /// The epoll instance: every connection, edge-triggered, both directions.
    epoll: OwnedFd,
    /// Buffer of the last wait's events.
    events: Vec<epoll::Event>,
    conns: Vec<(TcpStream, State)>,
    rng: XorShift,
    tally: Tally,
    buf: Vec<u8>,
}

impl Holder {
    /// Waits up to `timeout` (rounded up to a millisecond) for events.
    fn wait(&mut self, timeout: Duration) -> Vec<Ready> {
        let timeout = Timespec::try_from(timeout).expect("a timeout of at most a few minutes");
        self.events.clear();
        match epoll::wait(
            &self.epoll,
            spare_capacity(&mut self.events),
            Some(&timeout),
        ) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("epoll_wait failed: {e}"),
        }
        self.events
            .iter()
            .map(|ev| Ready {
                token: ev.data.u64(),
                flags: ev.flags,
            })
            .collect()
    }

    /// Prints one of the first few failures; the rest are only counted.
    fn note(&self, what: &str) {
        let t = &self.tally;
        if t.errors + t.timeouts + t.verify_failures + t.connect_errors <= ERRORS_SHOWN {
            eprintln!("hold: {what}");
        }
    }

    /// Ends connection `index`: it gets no more events and is never used again.
    fn kill(&mut self, index: usize) {
        let (stream, state) = &mut self.conns[index];
        // Both only fail if the socket is already gone, which is the goal anyway.
        let _ = epoll::delete(&self.epoll, &*stream);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        *state = State::Dead;
    }

    /// Phase 1: connects everything, at most `--parallel` at a time.
    fn connect_all(&mut self) {
        let start = Instant::now();
        let deadline = start + self.config.connect_timeout;
        let mut next = 0;
        let mut pending = 0;
        while next < self.config.connections || pending > 0 {
            while pending < self.config.parallel && next < self.config.connections {
                let source = source_ip(&self.config, next).expect("checked by `Config`");
                next += 1;
                match start_connect(source, self.config.addr) {
                    Ok(stream) => {
                        let token = EventData::new_u64(self.conns.len() as u64);
                        let flags =
                            EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
                        if let Err(e) = epoll::add(&self.epoll, &stream, token, flags) {
                            self.tally.connect_errors += 1;
                            self.note(&format!("registering a connection: {e}"));
                            continue;
                        }
                        self.conns.push((stream, State::Connecting));
                        pending += 1;
                    }
                    Err(e) => {
                        self.tally.connect_errors += 1;
                        self.note(&format!(
                            "connect from {source} to {}: {e}",
                            self.config.addr
                        ));
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                self.tally.connect_errors += pending as u64;
                eprintln!(
                    "hold: {pending} connection(s) still connecting after {:?}; given up",
                    self.config.connect_timeout
                );
                for index in 0..self.conns.len() {
                    if matches!(self.conns[index].1, State::Connecting) {
                        self.kill(index);
                    }
                }
                break;
            }
            for event in self.wait((deadline - now).min(Duration::from_millis(100))) {
                let index = event.token as usize;
                if !matches!(self.conns[index].1, State::Connecting) {
                    continue;
                }
                let stream = &self.conns[index].0;
                let outcome = match stream.take_error() {
                    Ok(None) => match stream.peer_addr() {
                        Ok(_) => Ok(true),
                        // Not connected yet: a spurious event; wait for the next.
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                        Err(e) => Err(e),
                    },
                    Ok(Some(e)) | Err(e) => Err(e),
                };
                match outcome {
                    Ok(false) => {}
                    Ok(true) => {
                        self.conns[index].1 = State::Idle;
                        pending -= 1;
                    }
                    Err(e) => {
                        pending -= 1;
                        self.tally.connect_errors += 1;
                        self.note(&format!("connect to {}: {e}", self.config.addr));
                        self.kill(index);
                    }
                }
            }
        }
        self.tally.connect_time = start.elapsed();
        self.tally.held = self.live();
    }

    /// Connections not dead.
    fn live(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, s)| !matches!(s, State::Dead))
            .count()
    }

    /// A fresh random sample of up to `--sample` live connections (a partial
    /// Fisher-Yates shuffle of their indices).
    fn draw_sample(&mut self) -> Vec<usize> {
        let mut live: Vec<usize> = (0..self.conns.len())
            .filter(|&i| !matches!(self.conns[i].1, State::Dead))
            .collect();
        let take = self.config.sample.min(live.len());
        for k in 0..take {
            let pick = k + self.rng.below((live.len() - k) as u64) as usize;
            live.swap(k, pick);
        }
        live.truncate(take);
        live
    }

    /// Sends one message on the next idle connection of `sample` after `cursor`;
    /// counts a skip if all are busy.
    fn send_one(&mut self, sample: &[usize], cursor: &mut usize, now: Instant) {
        for _ in 0..sample.len() {
            let index = sample[*cursor % sample.len()];
            *cursor += 1;
            if matches!(self.conns[index].1, State::Idle) {
                let message: Vec<u8> = (0..self.config.size)
                    .map(|_| self.rng.next_u64() as u8)
                    .collect();
                self.conns[index].1 = State::Busy(InFlight {
                    sent_at: now,
                    message,
                    written: 0,
                    received: 0,
                    corrupt: false,
                });
                self.tally.sent += 1;
                self.flush(index);
                return;
            }
        }
        self.tally.skipped += 1;
    }

    /// Writes what is left of connection `index`'s message, until it would block.
    fn flush(&mut self, index: usize) {
        let (stream, State::Busy(flight)) = &mut self.conns[index] else {
            return;
        };
        let failure = loop {
            if flight.written == flight.message.len() {
                return;
            }
            match stream.write(&flight.message[flight.written..]) {
                Ok(0) => break "write: wrote 0 bytes".to_owned(),
                Ok(n) => flight.written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => break format!("write: {e}"),
            }
        };
        self.fail(index, &failure);
    }

    /// Counts an I/O error on connection `index` and ends it.
    fn fail(&mut self, index: usize, what: &str) {
        self.tally.errors += 1;
        self.note(&format!("connection {index}: {what}"));
        self.kill(index);
    }

    /// Reads connection `index` until it would block, checking the echo.
    fn receive(&mut self, index: usize, counted: bool) {
        loop {
            let n = match self.conns[index].0.read(&mut self.buf) {
                Ok(0) => return self.fail(index, "EOF from the server"),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => return self.fail(index, &format!("read: {e}")),
            };
            let State::Busy(flight) = &mut self.conns[index].1 else {
                self.tally.verify_failures += 1;
                self.note(&format!("connection {index}: {n} bytes nobody sent"));
                return self.kill(index);
            };
            if flight.received + n > flight.written {
                let what = format!(
                    "connection {index}: {} bytes echoed, more than the {} sent",
                    flight.received + n,
                    flight.written
                );
                self.tally.verify_failures += 1;
                self.note(&what);
                return self.kill(index);
            }
            let expected = &flight.message[flight.received..flight.received + n];
            flight.corrupt |= expected != &self.buf[..n];
            flight.received += n;
            if flight.received == flight.message.len() {
                let (sent_at, corrupt) = (flight.sent_at, flight.corrupt);
                self.conns[index].1 = State::Idle;
                self.tally.echoed_total += 1;
                if counted {
                    self.tally.echoed += 1;
                    let nanos = sent_at.elapsed().as_nanos().max(1) as u64;
                    self.tally.latency.saturating_record(nanos);
                }
                if corrupt {
                    self.tally.verify_failures += 1;
                    self.note(&format!(
                        "connection {index}: echo differs from what was sent"
                    ));
                }
            }
        }
    }

    /// Ends connections whose message is overdue.
    fn expire(&mut self, now: Instant) {
        for index in 0..self.conns.len() {
            if let State::Busy(flight) = &self.conns[index].1
                && now.duration_since(flight.sent_at) > self.config.echo_timeout
            {
                self.tally.timeouts += 1;
                self.note(&format!(
                    "connection {index}: no full echo within {:?}",
                    self.config.echo_timeout
                ));
                self.kill(index);
            }
        }
    }

    /// Messages in flight.
    fn busy(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, s)| matches!(s, State::Busy(_)))
            .count()
    }

    /// After the window: sends nothing more and waits (up to [`DRAIN_LIMIT`]) for
    /// the echoes in flight, so that no connection closes with unread bytes (which
    /// would reset it). Returns how many messages were still in flight.
    fn drain(&mut self) -> usize {
        let deadline = Instant::now() + DRAIN_LIMIT;
        while self.busy() > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            for event in self.wait(deadline - now) {
                let index = event.token as usize;
                if event.token != TIMER_TOKEN && !matches!(self.conns[index].1, State::Dead) {
                    self.receive(index, false);
                }
            }
        }
        self.busy()
    }

    /// Phase 3: the echo load on samples, until the end of the counted window.
    fn echo(&mut self) {
        let start = Instant::now();
        let measure_from = start + self.config.warmup;
        let end = measure_from + self.config.duration;
        let pacer = (self.config.rate > 0.0).then(|| self.start_pacer());
        let mut next_sample = start;
        let mut next_scan = start + TIMEOUT_SCAN;
        let mut sample = Vec::new();
        let mut cursor = 0;
        let mut due = 0u64;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            if now >= next_sample {
                sample = self.draw_sample();
                cursor = 0;
                next_sample += Duration::from_secs(1);
            }
            // More due at once than a second's worth: this process was starved;
            // drop the backlog rather than send it in a burst.
            let max_due = (self.config.rate * MAX_LAG.as_secs_f64()).max(1.0) as u64;
            if due > max_due {
                self.tally.lagged += due - max_due;
                due = max_due;
            }
            while due > 0 && !sample.is_empty() {
                self.send_one(&sample, &mut cursor, now);
                due -= 1;
            }
            if now >= next_scan {
                self.expire(now);
                next_scan = now + TIMEOUT_SCAN;
            }
            let wake = end.min(next_sample).min(next_scan);
            let events = self.wait(wake.saturating_duration_since(now));
            let at = Instant::now();
            let counted = at >= measure_from && at < end;
            for event in events {
                if event.token == TIMER_TOKEN {
                    due += pacer.as_ref().map_or(0, expirations);
                    continue;
                }
                let index = event.token as usize;
                if matches!(self.conns[index].1, State::Dead) {
                    continue;
                }
                if event.writable() {
                    self.flush(index);
                }
                if event.readable() {
                    self.receive(index, counted);
                }
            }
        }
    }

    /// A timerfd that expires `--rate` times a second, added to the epoll set.
    fn start_pacer(&mut self) -> File {
        let interval =
            Duration::from_secs_f64(1.0 / self.config.rate).max(Duration::from_micros(1));
        let interval = Timespec::try_from(interval).expect("an interval below a second");
        let fd = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .expect("a timerfd");
        let every = Itimerspec {
            it_interval: interval,
            it_value: interval,
        };
        rustix::time::timerfd_settime(&fd, TimerfdTimerFlags::empty(), &every)
            .expect("arming the timerfd");
        let flags = EventFlags::IN | EventFlags::ET;
        epoll::add(&self.epoll, &fd, EventData::new_u64(TIMER_TOKEN), flags)
            .expect("adding the timerfd to the epoll set");
        File::from(fd)
    }
}

/// How often the pacing timerfd has expired since it was last read (0 if not).
fn expirations(mut timer: &File) -> u64 {
    let mut count = [0u8; 8];
    match timer.read(&mut count) {
        Ok(8) => u64::from_ne_bytes(count),
        _ => 0,
    }
}

/// Waits for the driver's go (a line on stdin). `false` on EOF or an error: the
/// driver is gone, and so should this process be.
fn wait_for_go(held: usize) -> bool {
    println!("held {held}");
    if io::stdout().flush().is_err() {
        return false;
    }
    let mut line = String::new();
    matches!(io::stdin().lock().read_line(&mut line), Ok(n) if n > 0)
}

/// Ends the process if it is still running at `limit`: whatever hangs (a server
/// that never answers, a driver that never says go), the process ends.
fn start_watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("hold: still running after {limit:?}; the watchdog ends it");
        std::process::exit(4);
    });
}

fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

fn main() -> ExitCode {
    let config = Config::from_env().unwrap_or_else(|message| {
        eprintln!("error: {message}\n{USAGE}");
        std::process::exit(2)
    });
    let fd_limit = raise_fd_limit();
    if config.connections as u64 + SPARE_FDS > fd_limit {
        eprintln!(
            "error: {} connections need about {} fds, over this process's RLIMIT_NOFILE of \
             {fd_limit}; spread them over several `hold` processes (`scale` does)",
            config.connections,
            config.connections as u64 + SPARE_FDS
        );
        return ExitCode::from(2);
    }
    start_watchdog(
        config.connect_timeout
            + if config.wait_go {
                config.go_timeout
            } else {
                Duration::ZERO
            }
            + config.warmup
            + config.duration
            + config.echo_timeout
            + Duration::from_secs(10),
    );
    let mut holder = Holder {
        epoll: epoll::create(epoll::CreateFlags::CLOEXEC).expect("an epoll instance"),
        events: Vec::with_capacity(EVENTS),
        conns: Vec::with_capacity(config.connections),
        rng: XorShift::new(config.seed),
        tally: Tally {
            connect_errors: 0,
            connect_time: Duration::ZERO,
            held: 0,
            echoed: 0,
            echoed_total: 0,
            sent: 0,
            skipped: 0,
            lagged: 0,
            errors: 0,
            timeouts: 0,
            verify_failures: 0,
            // 1 ns to 100 s, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 100_000_000_000, 3)
                .expect("valid histogram bounds"),
        },
        buf: vec![0u8; READ_BUFFER],
        config,
    };
    holder.connect_all();
    let tally = &holder.tally;
    let connect_rate = tally.held as f64 / tally.connect_time.as_secs_f64().max(1e-9);
    eprintln!(
        "hold: {} of {} connections to {} held ({} failed) in {:.2} s: {connect_rate:.0} connects/s",
        tally.held,
        holder.config.connections,
        holder.config.addr,
        tally.connect_errors,
        tally.connect_time.as_secs_f64()
    );
    if holder.config.wait_go && !wait_for_go(tally.held) {
        eprintln!("hold: stdin closed before the go; ending");
        return ExitCode::from(1);
    }
    holder.echo();
    let unfinished = holder.drain();
    report(&holder, connect_rate, unfinished)
}

/// Prints the human summary and the JSON line; the exit status.
fn report(holder: &Holder, connect_rate: f64, unfinished: usize) -> ExitCode {
    let (config, t) = (&holder.config, &holder.tally);
    let seconds = config.duration.as_secs_f64();
    let quantile = |q: f64| {
        if t.latency.is_empty() {
            0.0
        } else {
            micros(t.latency.value_at_quantile(q))
        }
    };
    let (p50, p99, p999) = (quantile(0.50), quantile(0.99), quantile(0.999));
    let still_held = holder.live();
    eprintln!(
        "hold: {} echoes in {seconds:.1} s ({:.0}/s, {} B, sample {}); latency p50 {p50:.1} µs, \
         p99 {p99:.1} µs, p99.9 {p999:.1} µs; still held {still_held}",
        t.echoed,
        t.echoed as f64 / seconds,
        config.size,
        config.sample,
    );
    eprintln!(
        "hold: errors {}, timeouts {}, verification failures {}, connect errors {}, \
         skipped sends {}, lagged sends {}, unanswered at the end {unfinished}",
        t.errors, t.timeouts, t.verify_failures, t.connect_errors, t.skipped, t.lagged
    );
    let recorded: Vec<[u64; 2]> = t
        .latency
        .iter_recorded()
        .map(|v| [v.value_iterated_to(), v.count_at_value()])
        .collect();
    let mut json = serde_json::json!({
        "connections": config.connections,
        "held": t.held,
        "still_held": still_held,
        "connect_s": t.connect_time.as_secs_f64(),
        "connect_rate": connect_rate,
        "connect_errors": t.connect_errors,
        "first_ip": config.first_ip.to_string(),
        "per_ip": config.per_ip,
        "size": config.size,
        "sample": config.sample,
        "rate": config.rate,
        "warmup_s": config.warmup.as_secs_f64(),
        "duration_s": seconds,
        "sent": t.sent,
        "echoed": t.echoed,
        "echoed_total": t.echoed_total,
        "echo_rate": t.echoed as f64 / seconds,
        "unfinished": unfinished,
        "skipped": t.skipped,
        "lagged": t.lagged,
        "p50_us": p50,
        "p99_us": p99,
        "p999_us": p999,
        "max_us": micros(t.latency.max()),
        "errors": t.errors,
        "timeouts": t.timeouts,
        "verify_failures": t.verify_failures,
        "latency_ns": recorded,
    });
    if let Some(label) = &config.label {
        json["label"] = serde_json::Value::from(label.as_str());
    }
    println!("{json}");
    if t.errors + t.timeouts + t.verify_failures + t.connect_errors > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
