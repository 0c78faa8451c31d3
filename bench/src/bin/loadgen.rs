//! `loadgen`: the echo benchmark's load generator, built on mio and plain threads,
//! not on edgeloop, so that a bug in the runtime cannot hide on both ends.
//!
//! A closed loop: each connection keeps `--depth` messages of `--size` bytes in
//! flight, and sends the next one when the full echo of one has come back. All
//! connections are made (and fail the run with exit status 1 if one cannot be)
//! before the clock starts; then `--warmup` seconds that are not counted, then
//! `--duration` seconds that are. `--threads` generator threads share the
//! connections (connection `i` belongs to thread `i % threads`), each with its own
//! mio `Poll`.
//!
//! Every connection sends a stream of its own: the bytes of one shared random
//! pattern, started at an offset of its own, so `--verify` (compare every echoed
//! byte with what was sent) is a `memcmp` against the pattern, and an echo that
//! lands on the wrong connection or in the wrong order does not match.
//!
//! Human-readable lines go to stderr (`loadgen: measuring` when the counted window
//! starts and `loadgen: window over` when it ends, which `compare` watches for),
//! then one JSON line goes to stdout. Exit status: 0; 1 if a connection could not
//! be made; 2 for a bad command line; 3 (after the JSON line) if there were
//! errors, silent connections or verification failures.
#![deny(unsafe_code, missing_docs)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use edgeloop_bench::echo::{DEFAULT_ADDR, split_flags};
use edgeloop_bench::{Args, XorShift};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "\
usage: loadgen [--addr ADDR] [--connections N] [--size BYTES] [--depth N]
               [--duration SECS] [--warmup SECS] [--threads N] [--label TEXT] [--verify]

A closed-loop echo client: each connection keeps DEPTH messages of BYTES in
flight. Defaults: --addr 127.0.0.1:7000 --connections 50 --size 64 --depth 1
--duration 5 --warmup 1 --threads 1. --verify checks every echoed byte.";

/// The period of the shared pattern: a prime, so that connections' offsets
/// (multiples of `STRIDE`) are all distinct.
const PERIOD: usize = 65_521;
/// How far apart two consecutive connections start in the pattern.
const STRIDE: usize = 7_919;
/// The most one `write` call sends; the pattern is this much longer than `PERIOD`
/// so that any write is one contiguous slice of it.
const MAX_WRITE: usize = 64 * 1024;
/// The read buffer, one per thread (echoed bytes are checked and counted at once).
const READ_BUFFER: usize = 64 * 1024;
/// How long to wait for each connection to be made.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The command line.
#[derive(Debug, Clone)]
struct Config {
    addr: SocketAddr,
    connections: usize,
    size: usize,
    depth: usize,
    duration: Duration,
    warmup: Duration,
    threads: usize,
    label: Option<String>,
    verify: bool,
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let (rest, flags) = split_flags(std::env::args().skip(1), &["verify", "help"]);
        if flags.iter().any(|f| f == "help") {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let known = [
            "addr",
            "connections",
            "size",
            "depth",
            "duration",
            "warmup",
            "threads",
            "label",
        ];
        let args = Args::parse(rest, &known)?;
        let addr_text = args.text("addr").unwrap_or(DEFAULT_ADDR);
        let addr = addr_text
            .to_socket_addrs()
            .map_err(|e| format!("`--addr {addr_text}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`--addr {addr_text}` resolves to nothing"))?;
        let number = |name: &str, default: f64| -> Result<f64, String> {
            match args.text(name) {
                None => Ok(default),
                Some(text) => text
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("`--{name} {text}`: not a number >= 0")),
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
        let config = Config {
            addr,
            connections: count("connections", 50)?,
            size: count("size", 64)?,
            depth: count("depth", 1)?,
            duration: Duration::from_secs_f64(number("duration", 5.0)?),
            warmup: Duration::from_secs_f64(number("warmup", 1.0)?),
            threads: count("threads", 1)?,
            label: args.text("label").map(str::to_owned),
            verify: flags.iter().any(|f| f == "verify"),
        };
        if config.duration.is_zero() {
            return Err("`--duration` must be more than 0".to_owned());
        }
        Ok(config)
    }
}

/// The timeline all threads share.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Start of the counted window (end of the warm-up).
    measure_from: Instant,
    /// End of the counted window, and of the run.
    end: Instant,
}

impl Clock {
    fn counts(&self, at: Instant) -> bool {
        at >= self.measure_from && at < self.end
    }
}

/// What one thread saw; summed over the threads at the end.
#[derive(Debug)]
struct Tally {
    /// Messages whose echo completed inside the counted window.
    msgs: u64,
    /// Messages whose echo completed at any time (warm-up included).
    msgs_total: u64,
    /// Latency of each counted message, in nanoseconds.
    latency: Histogram<u64>,
    /// I/O errors and unexpected EOFs (each ends its connection).
    errors: u64,
    /// Connections that never received a byte.
    silent: u64,
    /// Messages whose echo differed from what was sent, plus bytes echoed beyond
    /// what was sent (each ends its connection).
    verify_failures: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            msgs: 0,
            msgs_total: 0,
            // 1 ns to 100 s, 3 significant digits.
            latency: Histogram::new_with_bounds(1, 100_000_000_000, 3)
                .expect("valid histogram bounds"),
            errors: 0,
            silent: 0,
            verify_failures: 0,
        }
    }

    fn add(&mut self, other: &Tally) {
        self.msgs += other.msgs;
        self.msgs_total += other.msgs_total;
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds");
        self.errors += other.errors;
        self.silent += other.silent;
        self.verify_failures += other.verify_failures;
    }
}

/// One connection of the closed loop.
struct Conn {
    stream: TcpStream,
    /// Where this connection's stream starts in the pattern.
    origin: usize,
    /// Bytes of the stream issued so far (messages started times the size).
    issued: u64,
    /// Bytes written so far (at most `issued`).
    written: u64,
    /// Bytes of echo received so far (at most `written`).
    received: u64,
    /// When each message in flight was issued, oldest first.
    in_flight: VecDeque<Instant>,
    /// The message being received has had a wrong byte.
    corrupt: bool,
    /// Still in use (not ended by an error).
    open: bool,
}

/// One generator thread: its connections and what it has counted.
struct Generator {
    pattern: Arc<[u8]>,
    config: Config,
    clock: Clock,
    conns: Vec<Conn>,
    tally: Tally,
}

impl Generator {
    /// Offset in the pattern of byte `position` of a stream that starts at
    /// `origin`.
    fn pattern_at(origin: usize, position: u64) -> usize {
        ((origin as u64 + position) % PERIOD as u64) as usize
    }

    /// Runs the closed loop until the end of the window.
    fn run(mut self, poll: &mut Poll) -> Tally {
        let start = Instant::now();
        let size = self.config.size as u64;
        for index in 0..self.conns.len() {
            let conn = &mut self.conns[index];
            conn.issued = size * self.config.depth as u64;
            conn.in_flight.extend((0..self.config.depth).map(|_| start));
            self.flush(index);
        }
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let now = Instant::now();
            if now >= self.clock.end {
                break;
            }
            // Wake at the window's start too, though nothing needs doing then.
            let until = if now < self.clock.measure_from {
                self.clock.measure_from
            } else {
                self.clock.end
            };
            match poll.poll(&mut events, Some(until - now)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("mio poll failed: {e}"),
            }
            for event in &events {
                let index = event.token().0;
                if !self.conns[index].open {
                    continue;
                }
                // After EOF or an error, read on until the read says so; else a
                // short read means the socket is drained (see `receive`).
                let closing = event.is_read_closed() || event.is_error();
                if event.is_readable() || closing {
                    self.receive(index, &mut buf, closing);
                }
                if self.conns[index].open {
                    self.flush(index);
                }
            }
        }
        self.tally.silent = self.conns.iter().filter(|c| c.received == 0).count() as u64;
        self.tally
    }

    /// Ends connection `index` after an error (it stays in the slot, unused).
    fn fail(&mut self, index: usize, what: &str, error: &dyn std::fmt::Display) {
        let conn = &mut self.conns[index];
        if self.tally.errors + self.tally.verify_failures < 5 {
            eprintln!(
                "loadgen: connection {} {what}: {error}",
                conn.origin / STRIDE
            );
        }
        conn.open = false;
        // Stops its events; it is closed when the thread ends.
        let _ = conn.stream.shutdown(std::net::Shutdown::Both);
    }

    /// Writes what is issued and not yet written, until the socket would block.
    fn flush(&mut self, index: usize) {
        loop {
            let conn = &mut self.conns[index];
            if conn.written >= conn.issued {
                return;
            }
            let from = Self::pattern_at(conn.origin, conn.written);
            let len = (conn.issued - conn.written).min(MAX_WRITE as u64) as usize;
            match conn.stream.write(&self.pattern[from..from + len]) {
                Ok(0) => {
                    self.tally.errors += 1;
                    self.fail(index, "write", &"wrote 0 bytes");
                    return;
                }
                Ok(n) => conn.written += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.tally.errors += 1;
                    self.fail(index, "write", &e);
                    return;
                }
            }
        }
    }

    /// Reads until the socket is drained, checking and counting the echo, and
    /// issues one message for each one completed.
    ///
    /// Drained means a read said `WouldBlock`, or (unless `closing`) a read
    /// returned less than the buffer holds: with edge-triggered epoll, bytes that
    /// arrive after that read raise a new event, so the read that would only say
    /// `WouldBlock` is saved (it would cost the generator a third syscall per
    /// message, and the generator's CPU is often what limits the load). The
    /// peer's EOF could hide behind such a short read, which is why an event that
    /// reports the read side closed (`closing`) reads on until EOF.
    fn receive(&mut self, index: usize, buf: &mut [u8], closing: bool) {
        loop {
            let n = match self.conns[index].stream.read(buf) {
                Ok(0) => {
                    self.tally.errors += 1;
                    self.fail(index, "read", &"EOF from the server");
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.tally.errors += 1;
                    self.fail(index, "read", &e);
                    return;
                }
            };
            if let Err(failure) = self.consume(index, &buf[..n]) {
                self.tally.verify_failures += 1;
                self.fail(index, "echo", &failure);
                return;
            }
            if n < buf.len() && !closing {
                return;
            }
        }
    }

    /// Accounts for `chunk`, the next bytes of connection `index`'s echo.
    fn consume(&mut self, index: usize, mut chunk: &[u8]) -> Result<(), String> {
        let now = Instant::now();
        let size = self.config.size as u64;
        let counts = self.clock.counts(now);
        let conn = &mut self.conns[index];
        if conn.received + chunk.len() as u64 > conn.written {
            return Err(format!(
                "{} bytes echoed, more than the {} sent",
                conn.received + chunk.len() as u64,
                conn.written
            ));
        }
        while !chunk.is_empty() {
            let into_message = conn.received % size;
            let take = ((size - into_message) as usize).min(chunk.len());
            if self.config.verify {
                let from = Self::pattern_at(conn.origin, conn.received);
                if chunk[..take] != self.pattern[from..from + take] {
                    conn.corrupt = true;
                }
            }
            conn.received += take as u64;
            chunk = &chunk[take..];
            if !conn.received.is_multiple_of(size) {
                continue;
            }
            // A whole message is back: count it and issue the next one.
            let issued_at = conn
                .in_flight
                .pop_front()
                .expect("a message completed that was in flight");
            self.tally.msgs_total += 1;
            if counts {
                self.tally.msgs += 1;
                let nanos = now.duration_since(issued_at).as_nanos().max(1) as u64;
                self.tally.latency.saturating_record(nanos);
            }
            if conn.corrupt {
                conn.corrupt = false;
                self.tally.verify_failures += 1;
                if self.tally.verify_failures <= 5 {
                    eprintln!(
                        "loadgen: connection {}: message ending at byte {} differs from what was sent",
                        conn.origin / STRIDE,
                        conn.received
                    );
                }
            }
            conn.issued += size;
            conn.in_flight.push_back(now);
        }
        Ok(())
    }
}

/// The shared pattern: `PERIOD + MAX_WRITE` random bytes whose tail repeats the
/// head, so byte `i` of any stream is `pattern[i % PERIOD]` and a write of up to
/// `MAX_WRITE` bytes from any offset below `PERIOD` is one slice.
fn make_pattern() -> Arc<[u8]> {
    let mut rng = XorShift::new(0x5eed_ec40);
    let head: Vec<u8> = (0..PERIOD).map(|_| rng.next_u64() as u8).collect();
    head.iter()
        .cycle()
        .take(PERIOD + MAX_WRITE)
        .copied()
        .collect()
}

/// Makes every connection, blocking, before any load starts.
fn connect_all(config: &Config) -> Result<Vec<StdTcpStream>, String> {
    (0..config.connections)
        .map(|i| {
            let stream = StdTcpStream::connect_timeout(&config.addr, CONNECT_TIMEOUT)
                .map_err(|e| format!("connection {i} to {}: {e}", config.addr))?;
            stream
                .set_nodelay(true)
                .and_then(|()| stream.set_nonblocking(true))
                .map_err(|e| format!("connection {i}: setting it up: {e}"))?;
            Ok(stream)
        })
        .collect()
}

fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

fn main() -> ExitCode {
    let config = Config::from_env().unwrap_or_else(|message| {
        eprintln!("error: {message}\n{USAGE}");
        std::process::exit(2)
    });
    let threads = config.threads.min(config.connections);
    let streams = match connect_all(&config) {
        Ok(streams) => streams,
        Err(message) => {
            eprintln!("loadgen: cannot connect: {message}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "loadgen: {} connections to {} made; {} thread(s), {} B messages, depth {}, warm-up {:?}, window {:?}{}",
        config.connections,
        config.addr,
        threads,
        config.size,
        config.depth,
        config.warmup,
        config.duration,
        if config.verify { ", verifying" } else { "" }
    );

    let pattern = make_pattern();
    let mut shares: Vec<Vec<(usize, StdTcpStream)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, stream) in streams.into_iter().enumerate() {
        shares[i % threads].push((i, stream));
    }
    let start = Instant::now();
    let clock = Clock {
        measure_from: start + config.warmup,
        end: start + config.warmup + config.duration,
    };
    let workers: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(t, share)| {
            let pattern = Arc::clone(&pattern);
            let config = config.clone();
            thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || -> io::Result<Tally> {
                    let mut poll = Poll::new()?;
                    let mut conns = Vec::with_capacity(share.len());
                    for (slot, (i, stream)) in share.into_iter().enumerate() {
                        let mut stream = TcpStream::from_std(stream);
                        poll.registry().register(
                            &mut stream,
                            Token(slot),
                            Interest::READABLE | Interest::WRITABLE,
                        )?;
                        conns.push(Conn {
                            stream,
                            origin: i * STRIDE,
                            issued: 0,
                            written: 0,
                            received: 0,
                            in_flight: VecDeque::with_capacity(config.depth),
                            corrupt: false,
                            open: true,
                        });
                    }
                    let generator = Generator {
                        pattern,
                        config,
                        clock,
                        conns,
                        tally: Tally::new(),
                    };
                    Ok(generator.run(&mut poll))
                })
                .expect("spawn a generator thread")
        })
        .collect();

    thread::sleep(clock.measure_from.saturating_duration_since(Instant::now()));
    eprintln!("loadgen: measuring");
    thread::sleep(clock.end.saturating_duration_since(Instant::now()));
    eprintln!("loadgen: window over");

    let mut total = Tally::new();
    for worker in workers {
        match worker.join() {
            Ok(Ok(tally)) => total.add(&tally),
            Ok(Err(e)) => {
                eprintln!("loadgen: a generator thread failed to start: {e}");
                return ExitCode::from(1);
            }
            Err(_) => {
                eprintln!("loadgen: a generator thread panicked");
                return ExitCode::from(1);
            }
        }
    }
    report(&config, &total)
}

/// Prints the human summary and the JSON line; the exit status.
fn report(config: &Config, total: &Tally) -> ExitCode {
    let seconds = config.duration.as_secs_f64();
    let msgs_per_s = total.msgs as f64 / seconds;
    let mb_per_s = msgs_per_s * config.size as f64 / 1e6;
    let quantile = |q: f64| {
        if total.latency.is_empty() {
            0.0
        } else {
            micros(total.latency.value_at_quantile(q))
        }
    };
    let (p50, p99, p999) = (quantile(0.50), quantile(0.99), quantile(0.999));
    eprintln!(
        "loadgen: {} msgs in {seconds:.1} s: {msgs_per_s:.0} msgs/s, {mb_per_s:.2} MB/s each way",
        total.msgs
    );
    eprintln!(
        "loadgen: latency p50 {p50:.1} µs, p99 {p99:.1} µs, p99.9 {p999:.1} µs, max {:.1} µs",
        micros(total.latency.max())
    );
    eprintln!(
        "loadgen: errors {}, silent connections {}, verification failures {}{}",
        total.errors,
        total.silent,
        total.verify_failures,
        if config.verify { "" } else { " (not verified)" }
    );
    let mut json = serde_json::json!({
        "connections": config.connections,
        "size": config.size,
        "depth": config.depth,
        "threads": config.threads.min(config.connections),
        "duration_s": seconds,
        "warmup_s": config.warmup.as_secs_f64(),
        "msgs": total.msgs,
        "msgs_total": total.msgs_total,
        "msgs_per_s": msgs_per_s,
        "mb_per_s": mb_per_s,
        "p50_us": p50,
        "p99_us": p99,
        "p999_us": p999,
        "max_us": micros(total.latency.max()),
        "errors": total.errors,
        "silent_connections": total.silent,
        "verify_failures": total.verify_failures,
        "verified": config.verify,
    });
    if let Some(label) = &config.label {
        json["label"] = serde_json::Value::from(label.as_str());
    }
    println!("{json}");
    if total.errors + total.silent + total.verify_failures > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
