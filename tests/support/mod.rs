//! Helpers shared by the integration tests: a hard time limit for every test, a
//! tiny PRNG for message sizes and contents, byte comparison that says where two
//! buffers part ways, an echo server and clients (edgeloop and std), a guard that
//! kills child processes, `/proc/self/fd` listing, and a single-threaded event log
//! to sequence tasks without sleeping.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code, reason = "each test binary uses only some of the helpers")]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::rc::Rc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::task::{Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use edgeloop::net::{TcpListener, TcpStream};

/// Read/write timeout for blocking std sockets used as clients.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `f` on its own thread and returns its result; panics with a clear message
/// if it does not finish within `secs` seconds (a hang becomes a failure, not a
/// stuck test run). A panic inside `f` is propagated as is.
pub fn with_timeout<T, F>(secs: u64, what: &str, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let handle = thread::Builder::new()
        .name(what.to_owned())
        .spawn(move || {
            // Ignored: the receiver is gone only if the caller already timed out.
            let _ = tx.send(f());
        })
        .expect("spawning a test thread failed");
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(value) => {
            // The value is sent as the closure's last action; the thread ends next.
            if let Err(payload) = handle.join() {
                std::panic::resume_unwind(payload);
            }
            value
        }
        Err(RecvTimeoutError::Timeout) => panic!(
            "`{what}` did not finish within {secs} s: something is stuck (a lost wakeup, \
             a deadlock, or a peer that never answers)"
        ),
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => panic!("`{what}` ended without sending its result"),
        },
    }
}

/// xorshift64: a tiny, deterministic PRNG, good enough for sizes and payloads.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed`; any seed (including 0) gives a non-zero state.
    pub fn new(seed: u64) -> XorShift {
        XorShift((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `lo..=hi`.
    pub fn in_range(&mut self, lo: usize, hi: usize) -> usize {
        assert!(lo <= hi, "empty range {lo}..={hi}");
        let span = u64::try_from(hi - lo).expect("usize fits in u64") + 1;
        lo + usize::try_from(self.next_u64() % span).expect("value below a usize span")
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for chunk in out.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        out
    }
}

/// `len` bytes of deterministic, non-repeating-looking data for `seed` (never a
/// run of zeros, so lost, duplicated or reordered chunks show up).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    XorShift::new(seed).bytes(len)
}

/// Panics unless `actual == expected`, printing both lengths, the first offset
/// where they differ and the bytes around it (never megabytes of output).
pub fn assert_same_bytes(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let first_diff = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    let window = |b: &[u8]| {
        let start = first_diff.saturating_sub(8);
        let end = (first_diff + 8).min(b.len());
        format!("{:02x?}", &b[start.min(end)..end])
    };
    panic!(
        "{what}: bytes differ: actual length {}, expected length {}, first difference at \
         offset {first_diff}; actual[{}..] = {}, expected[{}..] = {}",
        actual.len(),
        expected.len(),
        first_diff.saturating_sub(8),
        window(actual),
        first_diff.saturating_sub(8),
        window(expected),
    );
}

/// A port on 127.0.0.1 that nothing listens on (it was free a moment ago: bound by
/// a std listener, read, and released).
pub fn free_port() -> io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    Ok(port)
}

/// Turns a task's `JoinError` into an `io::Error`, so tests can use `?`.
pub fn joined<T>(result: Result<T, edgeloop::JoinError>) -> io::Result<T> {
    result.map_err(|e| io::Error::other(format!("task did not complete: {e}")))
}

/// Echoes everything read on `stream` until EOF, then shuts down the write side.
/// Returns the number of bytes echoed.
pub async fn echo(mut stream: TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            stream.shutdown(Shutdown::Write)?;
            return Ok(total);
        }
        stream.write_all(&buf[..n]).await?;
        total += u64::try_from(n).expect("usize fits in u64");
    }
}

/// Accepts exactly `connections` connections, echoes each in its own task, and
/// returns the byte count echoed on each (in accept order) once all have ended.
pub async fn echo_server(listener: TcpListener, connections: usize) -> io::Result<Vec<u64>> {
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (stream, _peer) = listener.accept().await?;
        tasks.push(edgeloop::spawn(echo(stream)));
    }
    let mut totals = Vec::with_capacity(connections);
    for task in tasks {
        totals.push(joined(task.await)??);
    }
    Ok(totals)
}

/// Sends `msg` on `stream` while reading the echo at the same time (so a message
/// bigger than the socket buffers cannot deadlock); returns the echoed bytes. Works
/// for any stream whose shared reference reads and writes (`&TcpStream`,
/// `&UnixStream`).
pub async fn roundtrip<S>(stream: &mut S, msg: &[u8]) -> io::Result<Vec<u8>>
where
    for<'a> &'a S: futures_util::io::AsyncRead + futures_util::io::AsyncWrite + Unpin,
{
    use futures_util::io::{AsyncReadExt, AsyncWriteExt};
    let (mut reader, mut writer) = (&*stream, &*stream);
    let read_echo = async {
        let mut echoed = vec![0u8; msg.len()];
        let mut filled = 0;
        while filled < echoed.len() {
            let n = reader.read(&mut echoed[filled..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF after {filled} of {} echoed bytes", msg.len()),
                ));
            }
            filled += n;
        }
        Ok(echoed)
    };
    let (written, echoed) = futures_util::future::join(writer.write_all(msg), read_echo).await;
    written?;
    echoed
}

/// Reads until EOF with edgeloop's inherent `read`.
pub async fn read_to_eof(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// A blocking std client connected to `addr`, with read/write timeouts set.
pub fn std_connect(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    let stream = std::net::TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Sends `msg` from a writer thread while this thread reads the echo, so a big
/// message cannot deadlock on full socket buffers; returns the echoed bytes.
pub fn std_roundtrip(stream: &mut std::net::TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
    let mut writer = stream.try_clone()?;
    let mut echoed = vec![0u8; msg.len()];
    thread::scope(|s| {
        let sender = s.spawn(move || writer.write_all(msg));
        let read = stream.read_exact(&mut echoed);
        let written = sender.join().expect("writer thread panicked");
        written.and(read)
    })?;
    Ok(echoed)
}

/// Kills (SIGKILL) and reaps the child when dropped, so no process outlives its test
/// even when the test fails half-way.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
}

impl ChildGuard {
    /// Spawns `command`. The child also gets `PR_SET_PDEATHSIG = SIGKILL`, so it dies
    /// with the spawning thread even if this guard is never dropped (a test thread
    /// stuck past its time limit, then the test process exiting).
    pub fn spawn(command: &mut Command) -> io::Result<ChildGuard> {
        // SAFETY: the closure runs in the forked child before exec and only calls
        // `prctl`, which is async-signal-safe; it touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(ChildGuard {
            child: command.spawn()?,
        })
    }

    /// The child, e.g. to take its stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Kills and reaps the child now; fails if it had already exited (crashed).
    pub fn kill_expecting_running(&mut self) -> io::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            return Err(io::Error::other(format!(
                "child {} had already exited with {status}",
                self.child.id()
            )));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl ChildGuard {
    /// Collects the child's piped stdout and stderr until both reach EOF (the child
    /// exited), waiting at most `limit`, then reaps it. On timeout the child is
    /// left to this guard's `Drop`, which kills it.
    pub fn output_within(&mut self, limit: Duration) -> io::Result<(ExitStatus, String, String)> {
        let deadline = Instant::now() + limit;
        let stdout = collect(self.child.stdout.take());
        let stderr = collect(self.child.stderr.take());
        let mut texts = Vec::new();
        for rx in [stdout, stderr] {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(text) => texts.push(text?),
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("child {} still running after {limit:?}", self.child.id()),
                    ));
                }
            }
        }
        let status = self.child.wait()?;
        let stderr = texts.pop().expect("two texts were pushed");
        let stdout = texts.pop().expect("two texts were pushed");
        Ok((status, stdout, stderr))
    }
}

/// Reads `pipe` to EOF on a helper thread; the text arrives on the returned channel
/// (empty if there was no pipe).
fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<io::Result<String>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let result = match pipe {
            Some(mut pipe) => pipe.read_to_string(&mut text).map(|_| text),
            None => Ok(text),
        };
        // Ignored: the receiver is gone if the caller timed out.
        let _ = tx.send(result);
    });
    rx
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Ignored: the child may have exited already, and drop cannot report.
        let _ = self.child.kill();
        // Ignored: reaping after a kill only fails if it was reaped already.
        let _ = self.child.wait();
    }
}

/// Reads the first line of `reader` on a helper thread, waiting at most `limit`;
/// the thread then keeps draining `reader` to EOF so the child never blocks on a
/// full pipe. The line is returned without its newline.
pub fn first_line_within<R: Read + Send + 'static>(
    reader: R,
    limit: Duration,
) -> io::Result<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = io::BufReader::new(reader);
        let mut line = String::new();
        let result = io::BufRead::read_line(&mut reader, &mut line).map(|_| line);
        // Ignored: the receiver is gone if the caller timed out.
        let _ = tx.send(result);
        // Ignored: draining is best effort; it ends when the child's pipe closes.
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    match rx.recv_timeout(limit) {
        Ok(line) => Ok(line?.trim_end_matches('\n').to_owned()),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no line within {limit:?}"),
        )),
    }
}

/// Every fd open in this process, with what it points to (`socket:[..]`,
/// `anon_inode:[eventpoll]`, ...), from `/proc/self/fd`. The fd used to read the
/// directory is left out: it is closed before the links are read, so its
/// `readlink` fails and it is skipped.
pub fn open_fds() -> io::Result<BTreeMap<RawFd, String>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        numbers.push(name.parse::<RawFd>().map_err(|e| {
            io::Error::other(format!("unexpected /proc/self/fd entry `{name}`: {e}"))
        })?);
    }
    let mut fds = BTreeMap::new();
    for fd in numbers {
        match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
            Ok(target) => {
                fds.insert(fd, target.to_string_lossy().into_owned());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(fds)
}

/// `(fcntl(F_GETFD), fcntl(F_GETFL))` of `fd`: descriptor flags and status flags.
pub fn fd_flags(fd: RawFd) -> io::Result<(i32, i32)> {
    // SAFETY: F_GETFD and F_GETFL take no argument and only read kernel state; an
    // invalid fd gives EBADF.
    let fd_flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if fd_flags == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let status_flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if status_flags == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((fd_flags, status_flags))
}

/// Sets `SO_LINGER` to {on, 0 s}: closing the socket then sends RST instead of FIN.
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let len = libc::socklen_t::try_from(size_of::<libc::linger>()).expect("linger is tiny");
    // SAFETY: `linger` is a valid `struct linger` that outlives the call, and `len`
    // is its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            len,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A log of events shared by the tasks of one runtime: tasks `push`, others wait
/// for an event matching a predicate. Replaces sleeping to let something happen.
#[derive(Debug)]
pub struct EventLog<T> {
    inner: Rc<RefCell<EventLogInner<T>>>,
}

#[derive(Debug)]
struct EventLogInner<T> {
    events: Vec<T>,
    waiters: Vec<Waker>,
}

impl<T> Clone for EventLog<T> {
    fn clone(&self) -> Self {
        EventLog {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for EventLog<T> {
    fn default() -> Self {
        EventLog {
            inner: Rc::new(RefCell::new(EventLogInner {
                events: Vec::new(),
                waiters: Vec::new(),
            })),
        }
    }
}

impl<T: Clone> EventLog<T> {
    /// Records `event` and wakes every waiter.
    pub fn push(&self, event: T) {
        let waiters = {
            let mut inner = self.inner.borrow_mut();
            inner.events.push(event);
            std::mem::take(&mut inner.waiters)
        };
        for waker in waiters {
            waker.wake();
        }
    }

    /// Waits until some recorded event makes `pick` return `Some`, and returns that.
    pub async fn wait_for<R>(&self, mut pick: impl FnMut(&T) -> Option<R>) -> R {
        poll_fn(|cx| {
            let mut inner = self.inner.borrow_mut();
            if let Some(found) = inner.events.iter().find_map(&mut pick) {
                return Poll::Ready(found);
            }
            inner.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Waits until at least `n` events have been recorded.
    pub async fn wait_len(&self, n: usize) {
        poll_fn(|cx| {
            let mut inner = self.inner.borrow_mut();
            if inner.events.len() >= n {
                return Poll::Ready(());
            }
            inner.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    /// A copy of every event so far.
    pub fn snapshot(&self) -> Vec<T> {
        self.inner.borrow().events.clone()
    }
}

/// Reads `reader` line by line on a helper thread; each line (without its newline)
/// arrives on the returned channel, which disconnects at EOF or on a read error.
/// Reading goes on whether or not anyone receives, so a child never blocks on a
/// full pipe.
pub fn lines_of<R: Read + Send + 'static>(reader: R) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in io::BufRead::lines(io::BufReader::new(reader)) {
            let Ok(line) = line else { break };
            // Ignored: with the receiver gone, the line is drained and dropped.
            let _ = tx.send(line);
        }
    });
    rx
}

/// Calls `done` every 5 ms until it returns true, for at most `limit`; a timeout is
/// an error naming `what`.
pub fn wait_until(
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> io::Result<bool>,
) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what}: not within {limit:?}"),
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Builds example `name` once per test binary (debug profile, like the tests) and
/// returns the path of its binary, or why it could not be built.
pub fn built_example(name: &'static str) -> io::Result<std::path::PathBuf> {
    built_example_with_features(name, "")
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (never lowers it);
/// returns `(soft, hard)` as they are afterwards.
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    set_soft_fd_limit(u64::MAX)
}

/// Sets this process's soft `RLIMIT_NOFILE` to `soft`, or to the hard limit if that
/// is lower; returns `(soft, hard)` as they are afterwards.
pub fn set_soft_fd_limit(soft: u64) -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `struct rlimit` that outlives the call;
    // `getrlimit` only fills it in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let wanted = soft.min(limit.rlim_max);
    if limit.rlim_cur != wanted {
        limit.rlim_cur = wanted;
        // SAFETY: `limit` is a valid `struct rlimit` that outlives the call, with the
        // soft limit at most the hard one, which an unprivileged process may set.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// A `kB` line of `/proc/self/status` (`VmRSS`, `VmHWM`, ...), in KiB.
pub fn proc_status_kib(field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .ok_or_else(|| io::Error::other(format!("no `{field}:` line in /proc/self/status")))?;
    let number = line.trim().trim_end_matches("kB").trim();
    number.parse().map_err(|e| {
        io::Error::other(format!(
            "`{field}:{line}` in /proc/self/status is not a size: {e}"
        ))
    })
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS, by writing `5` to
/// `/proc/self/clear_refs` (Linux 4.0 and later).
pub fn reset_peak_rss() -> io::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")
}

/// CPU time (user and system) used so far by `thread`, read from another thread
/// through its CPU-time clock. `thread` must not have been joined yet.
pub fn thread_cpu_time<T>(thread: &thread::JoinHandle<T>) -> io::Result<Duration> {
    use std::os::unix::thread::JoinHandleExt;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the `pthread_t` comes from a `JoinHandle` that is borrowed, so the
    // thread has not been joined or detached and its id is valid; `clock` is a valid,
    // writable `clockid_t`.
    let rc = unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &raw mut clock) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    cpu_clock_time(clock)
}

/// The CPU-time clock of the calling thread, for another thread to read with
/// [`cpu_clock_time`] (reading it opens no file, so it works at the fd limit).
pub fn current_thread_cpu_clock() -> io::Result<libc::clockid_t> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `pthread_self` names the calling thread, alive during the call;
    // `clock` is a valid, writable `clockid_t`.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &raw mut clock) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(clock)
}

/// The time a CPU-time clock shows (the CPU its thread has used so far).
pub fn cpu_clock_time(clock: libc::clockid_t) -> io::Result<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable `struct timespec`; an unknown clock (its
    // thread gone) gives EINVAL, nothing worse.
    if unsafe { libc::clock_gettime(clock, &raw mut now) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let secs = u64::try_from(now.tv_sec).map_err(io::Error::other)?;
    let nanos = u32::try_from(now.tv_nsec).map_err(io::Error::other)?;
    Ok(Duration::new(secs, nanos))
}

/// As [`built_example`], for an example that needs crate features (its
/// `required-features`): builds it once per test binary with `--features
/// FEATURES` (comma-separated; none if empty) and returns the path of its binary.
pub fn built_example_with_features(
    name: &'static str,
    features: &'static str,
) -> io::Result<std::path::PathBuf> {
    use std::sync::{Mutex, OnceLock};
    type Built = BTreeMap<(&'static str, &'static str), Result<std::path::PathBuf, String>>;
    static BUILT: OnceLock<Mutex<Built>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(|| Mutex::new(BTreeMap::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    built
        .entry((name, features))
        .or_insert_with(|| build_example_with_features(name, features).map_err(|e| e.to_string()))
        .clone()
        .map_err(io::Error::other)
}

fn build_example_with_features(name: &str, features: &str) -> io::Result<std::path::PathBuf> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let manifest = root.join("Cargo.toml");
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--example", name]);
    if !features.is_empty() {
        build.args(["--features", features]);
    }
    let mut child = ChildGuard::spawn(
        build
            .arg("--manifest-path")
            .arg(&manifest)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    )?;
    let (status, stdout, stderr) = child.output_within(Duration::from_secs(240))?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "`cargo build --example {name} --features {features:?}` exited with {status}\n\
             stdout:\n{stdout}\nstderr:\n{stderr}"
        )));
    }
    // `$CARGO_TARGET_DIR` (relative to the package root, where cargo runs tests) or
    // `target/`.
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    let path = target.join("debug").join("examples").join(name);
    if !path.is_file() {
        return Err(io::Error::other(format!(
            "built example `{name}` but found no file at {}",
            path.display()
        )));
    }
    Ok(path)
}

/// Sends `signal` (a name that `kill -s` takes, e.g. `TERM`) to the child, which
/// must still be running (unreaped, so its pid cannot name another process).
pub fn signal_child(guard: &mut ChildGuard, signal: &str) -> io::Result<()> {
    if let Some(status) = guard.child_mut().try_wait()? {
        return Err(io::Error::other(format!(
            "the child had already exited with {status}"
        )));
    }
    let pid = guard.child_mut().id().to_string();
    let status = Command::new("kill").args(["-s", signal, &pid]).status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "`kill -s {signal} {pid}` exited with {status}"
        )));
    }
    Ok(())
}

/// Sends `request` on a hyper client connection and reads the whole response:
/// its status and body, within [`IO_TIMEOUT`]. For the hyper tests.
pub async fn hyper_exchange<B>(
    sender: &mut hyper::client::conn::http1::SendRequest<B>,
    request: hyper::Request<B>,
) -> std::io::Result<(hyper::StatusCode, bytes::Bytes)>
where
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(std::io::Error::other)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?;
        Ok::<_, std::io::Error>((status, body.to_bytes()))
    };
    edgeloop::time::timeout(IO_TIMEOUT, exchange).await?
}
