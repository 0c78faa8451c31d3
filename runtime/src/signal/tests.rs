//! Unit tests of `crate::signal`. Tests run on parallel threads of one process, so
//! each test that raises a signal uses a real-time signal of its own (nothing else
//! sends those), and its counts are exact.

use std::io;
use std::os::raw::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll};
use std::thread;

use super::kind::check;
use super::stream::consume;
use super::{SignalKind, driver, registry, signal};
use crate::sys::signal::raise;
use crate::test_support::{
    OWN_PROCESS_ENV, bounded, counting_waker, panic_message, rerun_in_own_process,
};
use crate::{block_on, spawn, yield_now};

/// The `n`th real-time signal, reserved for one test.
fn own_signal(n: c_int) -> SignalKind {
    SignalKind::from_raw(libc::SIGRTMIN() + n)
}

#[test]
fn constructors_give_the_libc_numbers() {
    let expected = [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
        (SignalKind::quit(), libc::SIGQUIT),
        (SignalKind::alarm(), libc::SIGALRM),
        (SignalKind::child(), libc::SIGCHLD),
        (SignalKind::pipe(), libc::SIGPIPE),
        (SignalKind::user_defined1(), libc::SIGUSR1),
        (SignalKind::user_defined2(), libc::SIGUSR2),
        (SignalKind::window_change(), libc::SIGWINCH),
    ];
    for (kind, signum) in expected {
        assert_eq!(kind.as_raw_value(), signum, "{kind:?}");
        assert_eq!(SignalKind::from_raw(signum), kind, "from_raw({signum})");
        assert_eq!(SignalKind::from(signum), kind, "From<i32> for {signum}");
        assert_eq!(c_int::from(kind), signum, "From<SignalKind> for {kind:?}");
        check(kind).unwrap_or_else(|e| panic!("{kind:?} must be accepted: {e}"));
    }
}

#[test]
fn refused_signals_are_invalid_input_naming_the_signal() {
    let refused = [
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGSTOP, "SIGSTOP"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGSEGV, "SIGSEGV"),
    ];
    for (signum, name) in refused {
        let err = check(SignalKind::from_raw(signum)).expect_err(name);
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name}: {err}");
        let message = err.to_string();
        assert!(
            message.contains(&signum.to_string()) && message.contains(name),
            "{name}: message does not name the signal: {message}"
        );
    }
}

#[test]
fn out_of_range_and_reserved_numbers_are_invalid_input() {
    let reserved = libc::SIGRTMIN() - 1; // kept by the C library for its threads
    for signum in [0, -1, libc::SIGRTMAX() + 1, 65, 1000, c_int::MIN, reserved] {
        let err = check(SignalKind::from_raw(signum)).expect_err("must be refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{signum}: {err}");
        assert!(
            err.to_string().contains(&signum.to_string()),
            "message does not name {signum}: {err}"
        );
    }
    for signum in [
        libc::SIGRTMIN(),
        libc::SIGRTMAX(),
        libc::SIGHUP,
        libc::SIGSYS,
    ] {
        check(SignalKind::from_raw(signum))
            .unwrap_or_else(|e| panic!("{signum} must be accepted: {e}"));
    }
}

#[test]
fn consume_reports_any_number_of_deliveries_once() {
    let mut seen = 5;
    assert!(!consume(&mut seen, 5), "no delivery");
    assert_eq!(seen, 5);
    assert!(consume(&mut seen, 6), "one delivery");
    assert_eq!(seen, 6);
    assert!(consume(&mut seen, 9), "three deliveries, reported once");
    assert_eq!(seen, 9);
    assert!(!consume(&mut seen, 9), "already reported");
    assert_eq!(seen, 9);
}

#[test]
fn signal_outside_block_on_panics_with_a_clear_message() {
    let payload = catch_unwind(AssertUnwindSafe(|| signal(SignalKind::user_defined1())))
        .expect_err("`signal` outside `block_on` must panic");
    let message = panic_message(payload.as_ref());
    assert!(
        message.contains("`signal` called outside `block_on`"),
        "unexpected panic message: {message}"
    );
}

#[test]
fn signal_refuses_sigkill_inside_a_runtime() {
    block_on(async {
        let err = signal(SignalKind::from_raw(libc::SIGKILL)).expect_err("SIGKILL refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    });
}

#[test]
#[cfg_attr(miri, ignore = "needs sigaction and EPOLLONESHOT, which Miri lacks")]
fn deliveries_between_polls_are_coalesced() -> io::Result<()> {
    bounded("deliveries_between_polls_are_coalesced", || {
        block_on(async {
            let kind = own_signal(1);
            let mut sig = signal(kind)?;
            let (wakes, waker) = counting_waker();
            let mut cx = Context::from_waker(&waker);
            assert_eq!(sig.poll_recv(&mut cx), Poll::Pending, "nothing raised yet");
            for _ in 0..3 {
                raise(kind.as_raw_value())?;
            }
            assert_eq!(
                sig.poll_recv(&mut cx),
                Poll::Ready(Some(())),
                "three raises"
            );
            assert_eq!(sig.poll_recv(&mut cx), Poll::Pending, "coalesced into one");
            // The driver wakes the stored waker; it runs only when the loop turns.
            while wakes.count() == 0 {
                yield_now().await;
            }
            assert_eq!(
                sig.poll_recv(&mut cx),
                Poll::Pending,
                "woken by the first raises' bytes, but nothing new"
            );
            Ok(())
        })
    })
}

#[test]
#[cfg_attr(miri, ignore = "needs sigaction and EPOLLONESHOT, which Miri lacks")]
fn raise_wakes_a_pending_recv() -> io::Result<()> {
    bounded("raise_wakes_a_pending_recv", || {
        block_on(async {
            let kind = own_signal(2);
            let mut sig = signal(kind)?;
            let waiter = spawn(async move { sig.recv().await });
            yield_now().await; // the waiter is now parked in `recv`
            assert!(!waiter.is_finished(), "finished before any raise");
            raise(kind.as_raw_value())?;
            let got = waiter.await.expect("waiter task");
            assert_eq!(got, Some(()));
            Ok(())
        })
    })
}

#[test]
#[cfg_attr(miri, ignore = "needs sigaction and EPOLLONESHOT, which Miri lacks")]
fn driver_leaves_the_thread_set_with_its_runtime() -> io::Result<()> {
    bounded("driver_leaves_the_thread_set_with_its_runtime", || {
        let first = block_on(async {
            let id = crate::context::runtime_id().expect("inside block_on");
            assert!(!driver::is_driven(id), "fresh runtime has a driver");
            let _sig = signal(own_signal(3))?;
            assert!(driver::is_driven(id), "no driver after `signal`");
            Ok::<_, io::Error>(id)
        })?;
        assert!(!driver::is_driven(first), "driver outlived its runtime");
        block_on(async {
            let kind = own_signal(3);
            let id = crate::context::runtime_id().expect("inside block_on");
            let mut sig = signal(kind)?;
            assert!(driver::is_driven(id), "second runtime has no driver");
            let waiter = spawn(async move { sig.recv().await });
            yield_now().await;
            raise(kind.as_raw_value())?;
            assert_eq!(waiter.await.expect("waiter task"), Some(()));
            Ok(())
        })
    })
}

#[test]
#[cfg_attr(miri, ignore = "needs sigaction and EPOLLONESHOT, which Miri lacks")]
fn dropped_listeners_are_pruned() -> io::Result<()> {
    block_on(async {
        let kind = own_signal(4);
        let keep = signal(kind)?;
        for _ in 0..10 {
            drop(signal(kind)?);
        }
        // Registering prunes: the list holds `keep`, the last dropped one at most.
        let entries = registry::listener_entries(kind.as_raw_value());
        assert!(entries <= 2, "{entries} entries after 10 drops");
        registry::dispatch();
        let entries = registry::listener_entries(kind.as_raw_value());
        assert_eq!(entries, 1, "entries after dispatch");
        drop(keep);
        Ok(())
    })
}

/// One runtime that listens for `kind`, receives one raise, and ends.
fn one_signal_runtime(kind: SignalKind) -> io::Result<()> {
    block_on(async {
        let mut sig = signal(kind)?;
        let waiter = spawn(async move { sig.recv().await });
        yield_now().await;
        raise(kind.as_raw_value())?;
        assert_eq!(waiter.await.expect("waiter task"), Some(()));
        Ok(())
    })
}

#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn runtimes_with_signals_leak_no_fd() -> io::Result<()> {
    const MARKER: &str = "edgeloop fd count unchanged after 20 signal runtimes";
    if std::env::var_os(OWN_PROCESS_ENV).is_none() {
        let out = rerun_in_own_process(module_path!(), "runtimes_with_signals_leak_no_fd")?;
        assert!(
            out.contains(MARKER),
            "child did not report its count:\n{out}"
        );
        return Ok(());
    }
    // In the child: the only test running in this process. The first runtime
    // creates the process-wide pipe, which stays open by design.
    let kind = own_signal(5);
    one_signal_runtime(kind)?;
    let before = open_fds()?;
    for _ in 0..20 {
        one_signal_runtime(kind)?;
    }
    let after = open_fds()?;
    assert_eq!(after, before, "open fds before and after 20 runtimes");
    println!("{MARKER}: {before} -> {after}");
    Ok(())
}

/// Number of entries in `/proc/self/fd`.
fn open_fds() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

#[test]
#[cfg_attr(miri, ignore = "needs sigaction and EPOLLONESHOT, which Miri lacks")]
fn one_delivery_wakes_listeners_in_runtimes_on_two_threads() -> io::Result<()> {
    bounded(
        "one_delivery_wakes_listeners_in_runtimes_on_two_threads",
        || {
            let kind = own_signal(6);
            // Two runtimes with a parked listener each, plus this thread, which raises.
            let parked = Arc::new(Barrier::new(3));
            let runtimes: Vec<_> = (0..2)
                .map(|_| {
                    let parked = parked.clone();
                    thread::spawn(move || {
                        block_on(async {
                            let mut sig = signal(kind)?;
                            let waiter = spawn(async move { sig.recv().await });
                            yield_now().await;
                            assert!(!waiter.is_finished(), "woken before the raise");
                            parked.wait();
                            Ok::<_, io::Error>(waiter.await.expect("waiter task"))
                        })
                    })
                })
                .collect();
            parked.wait();
            // One byte on the pipe: only one driver can drain it, yet both listeners
            // must be woken.
            raise(kind.as_raw_value())?;
            for (i, runtime) in runtimes.into_iter().enumerate() {
                let got = runtime.join().expect("runtime thread panicked")?;
                assert_eq!(got, Some(()), "runtime {i}");
            }
            Ok(())
        },
    )
}
