//! `edgeloop::signal` end to end: deliveries raised in this process reach `recv`,
//! `Stream::next` and `ctrl_c`, with other threads around, across runtimes, and
//! without disturbing the signal dispositions of child processes.
//!
//! Every test in this binary shares the process and its handlers, and the harness
//! runs them on parallel threads, so each one holds [`SERIAL`] for its whole run: a
//! raise in one test then cannot land in another's count. Extra wake-ups are still
//! tolerated wherever the kernel or the design allows them.

mod support;

use std::future::poll_fn;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::pin::pin;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use edgeloop::signal::{Signal, SignalKind, ctrl_c, signal};
use edgeloop::{block_on, spawn, yield_now};
use futures_util::StreamExt;
use support::{ChildGuard, with_timeout};

/// Time limit of each test, in seconds.
const LIMIT: u64 = 20;

/// Serialises the tests of this binary (see the module docs).
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes [`SERIAL`]; a test that failed while holding it does not fail the others.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Delivers `kind` to the calling thread; its handler has run when this returns.
fn raise(kind: SignalKind) -> io::Result<()> {
    // SAFETY: raise takes no pointers; every caller has a handler installed for
    // `kind` (through `signal`), so the default action cannot kill the test process.
    if unsafe { libc::raise(kind.as_raw_value()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `kind` to the whole process (`kill(getpid())`): the kernel picks any thread
/// that does not block it.
fn kill_self(kind: SignalKind) -> io::Result<()> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    // SAFETY: kill takes no pointers; the caller has a handler installed for `kind`.
    if unsafe { libc::kill(pid, kind.as_raw_value()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `sig` has no delivery waiting (polls it once).
async fn nothing_pending(sig: &mut Signal) -> bool {
    poll_fn(|cx| Poll::Ready(sig.poll_recv(cx).is_pending())).await
}

#[test]
fn raised_sigusr1_is_received() -> io::Result<()> {
    let _serial = serial();
    with_timeout(LIMIT, "raised_sigusr1_is_received", || {
        block_on(async {
            let kind = SignalKind::user_defined1();
            let mut sig = signal(kind)?;
            assert!(nothing_pending(&mut sig).await, "delivery before any raise");
            // Raised while `recv` is parked: only the driver can wake it.
            let waiter = spawn(async move {
                let got = sig.recv().await;
                (got, sig)
            });
            yield_now().await;
            assert!(!waiter.is_finished(), "`recv` finished before the raise");
            raise(kind)?;
            let (got, mut sig) = waiter.await.expect("waiter task");
            assert_eq!(got, Some(()), "recv after one raise");
            assert!(nothing_pending(&mut sig).await, "one raise reported twice");
            Ok(())
        })
    })
}

#[test]
fn two_listeners_both_receive_one_delivery() -> io::Result<()> {
    let _serial = serial();
    with_timeout(LIMIT, "two_listeners_both_receive_one_delivery", || {
        block_on(async {
            let kind = SignalKind::user_defined2();
            let mut first = signal(kind)?;
            let mut second = signal(kind)?;
            let a = spawn(async move { (first.recv().await, first) });
            let b = spawn(async move { (second.recv().await, second) });
            yield_now().await;
            assert!(
                !a.is_finished() && !b.is_finished(),
                "woken before the raise"
            );
            raise(kind)?;
            let (got_a, mut first) = a.await.expect("first listener task");
            let (got_b, mut second) = b.await.expect("second listener task");
            assert_eq!((got_a, got_b), (Some(()), Some(())), "both listeners");
            assert!(nothing_pending(&mut first).await, "first saw it twice");
            assert!(nothing_pending(&mut second).await, "second saw it twice");
            Ok(())
        })
    })
}

#[test]
fn delivery_before_the_first_recv_is_not_lost() -> io::Result<()> {
    let _serial = serial();
    with_timeout(LIMIT, "delivery_before_the_first_recv_is_not_lost", || {
        block_on(async {
            let kind = SignalKind::user_defined1();
            let mut sig = signal(kind)?;
            raise(kind)?;
            raise(kind)?;
            assert_eq!(sig.recv().await, Some(()), "raised before the first recv");
            assert!(
                nothing_pending(&mut sig).await,
                "two raises before one recv must coalesce into one"
            );
            Ok(())
        })
    })
}

#[test]
fn delivery_reaches_the_runtime_with_other_threads_around() -> io::Result<()> {
    let _serial = serial();
    with_timeout(
        LIMIT,
        "delivery_reaches_the_runtime_with_other_threads_around",
        || {
            // A thread blocked in a sleep: with signalfd it would not have the
            // signal blocked and would take the default action instead.
            let sleeper = thread::spawn(|| thread::sleep(Duration::from_millis(300)));
            let received = block_on(async {
                let kind = SignalKind::user_defined2();
                let mut sig = signal(kind)?;
                let waiter = spawn(async move { sig.recv().await });
                yield_now().await;
                // Sent to the process from yet another thread: the kernel may run the
                // handler on any of them, the sleeper included.
                let sender = thread::spawn(move || kill_self(kind));
                let got = waiter.await.expect("waiter task");
                sender.join().expect("sender thread panicked")?;
                Ok::<_, io::Error>(got)
            })?;
            assert_eq!(received, Some(()), "recv with other threads running");
            sleeper.join().expect("sleeper thread panicked");
            Ok(())
        },
    )
}

#[test]
fn stream_next_yields_each_delivery() -> io::Result<()> {
    let _serial = serial();
    with_timeout(LIMIT, "stream_next_yields_each_delivery", || {
        block_on(async {
            let kind = SignalKind::user_defined1();
            let mut sig = signal(kind)?;
            for round in 0..3 {
                raise(kind)?;
                assert_eq!(sig.next().await, Some(()), "round {round}");
            }
            // And from a parked `next`, woken by the driver.
            let waiter = spawn(async move { sig.next().await });
            yield_now().await;
            raise(kind)?;
            assert_eq!(waiter.await.expect("waiter task"), Some(()), "parked next");
            Ok(())
        })
    })
}

#[test]
fn ctrl_c_completes_on_sigint() -> io::Result<()> {
    let _serial = serial();
    with_timeout(LIMIT, "ctrl_c_completes_on_sigint", || {
        block_on(async {
            let mut interrupted = pin!(ctrl_c());
            // The first poll installs the handler; only then is raising SIGINT safe.
            let first = poll_fn(|cx| Poll::Ready(interrupted.as_mut().poll(cx))).await;
            assert!(
                first.is_pending(),
                "ctrl_c completed before any SIGINT: {first:?}"
            );
            raise(SignalKind::interrupt())?;
            interrupted.await
        })
    })
}

#[test]
fn child_process_keeps_the_default_sigterm_action() -> io::Result<()> {
    let _serial = serial();
    with_timeout(
        LIMIT,
        "child_process_keeps_the_default_sigterm_action",
        || {
            block_on(async {
                // SIGTERM is now handled in this process; exec must reset it to the
                // default in the child, and no signal may be blocked there.
                let _sigterm = signal(SignalKind::terminate())?;
                let mut child = ChildGuard::spawn(
                    Command::new("sh")
                        .args(["-c", "kill -TERM $$; sleep 5; echo survived"])
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped()),
                )?;
                let (status, stdout, stderr) = child.output_within(Duration::from_secs(15))?;
                assert_eq!(
                    status.signal(),
                    Some(libc::SIGTERM),
                    "child status {status}; stdout {stdout:?}; stderr {stderr:?}"
                );
                assert!(
                    !stdout.contains("survived"),
                    "child survived SIGTERM: {stdout:?}"
                );
                Ok(())
            })
        },
    )
}

#[test]
fn second_runtime_on_the_thread_receives_deliveries() -> io::Result<()> {
    let _serial = serial();
    with_timeout(
        LIMIT,
        "second_runtime_on_the_thread_receives_deliveries",
        || {
            let kind = SignalKind::user_defined2();
            for run in 0..2 {
                block_on(async {
                    let mut sig = signal(kind)?;
                    let waiter = spawn(async move { sig.recv().await });
                    yield_now().await;
                    assert!(!waiter.is_finished(), "run {run}: woken before the raise");
                    raise(kind)?;
                    // Parked before the raise: only this runtime's driver can wake it.
                    assert_eq!(waiter.await.expect("waiter task"), Some(()), "run {run}");
                    Ok::<(), io::Error>(())
                })?;
            }
            Ok(())
        },
    )
}

#[test]
fn refused_signals_are_invalid_input() {
    let _serial = serial();
    block_on(async {
        for signum in [libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV, 0, 100] {
            let err = signal(SignalKind::from_raw(signum)).expect_err("must be refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{signum}: {err}");
            assert!(
                err.to_string().contains(&signum.to_string()),
                "message does not name {signum}: {err}"
            );
        }
    });
}

/// Whether this process has a handler installed for `signum`, from the `SigCgt`
/// ("caught") mask in `/proc/self/status`.
fn handler_installed(signum: i32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).expect("hex mask"))
        .expect("a SigCgt line");
    mask & (1 << (signum - 1)) != 0
}

/// Set in the child process of the test below.
const EMFILE_CHILD: &str = "EDGELOOP_TEST_SIGNAL_EMFILE_CHILD";

#[test]
fn a_signal_call_that_fails_leaves_the_default_action_in_place() {
    if std::env::var_os(EMFILE_CHILD).is_some() {
        // The pipe exists already: another listener came first.
        block_on(async { drop(signal(SignalKind::user_defined2()).unwrap()) });
        assert!(
            !handler_installed(libc::SIGTERM),
            "SIGTERM caught from the start"
        );
        block_on(async {
            // Use up the fd table, so the driver cannot get its copy of the pipe.
            let mut hog = Vec::new();
            while let Ok(f) = std::fs::File::open("/dev/null") {
                hog.push(f);
            }
            let result = signal(SignalKind::terminate());
            drop(hog);
            let err = result.expect_err("signal() succeeded with no fd left");
            assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
        });
        assert!(
            !handler_installed(libc::SIGTERM),
            "signal(SIGTERM) failed, yet its handler is installed: SIGTERM no longer \
             terminates the process and nothing listens for it"
        );
        return;
    }
    let _serial = serial();
    let child = with_timeout(
        60,
        "a_signal_call_that_fails_leaves_the_default_action_in_place",
        || {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "a_signal_call_that_fails_leaves_the_default_action_in_place",
                    "--test-threads",
                    "1",
                ])
                .env(EMFILE_CHILD, "1")
                .output()
                .unwrap()
        },
    );
    assert!(
        child.status.success(),
        "the child failed: {:?}\n{}\n{}",
        child.status,
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
}
