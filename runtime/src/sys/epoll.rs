//! `epoll_create1`, `epoll_ctl` and `epoll_pwait2`/`epoll_wait`, each wrapped once.
//!
//! The reactor is the only caller. Waits use `epoll_pwait2`, whose timeout is a
//! `timespec` (nanoseconds). On a kernel without it (before 5.11: `ENOSYS`), they
//! fall back to `epoll_wait` for good, with the timeout rounded *up* to the next
//! millisecond, so a wait never ends before the deadline it was given.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::cvt;

pub(crate) use libc::epoll_event as Event;

/// Readable (`EPOLLIN`).
pub(crate) const IN: u32 = libc::EPOLLIN as u32;
/// Writable (`EPOLLOUT`).
pub(crate) const OUT: u32 = libc::EPOLLOUT as u32;
/// Peer shut down its write side (`EPOLLRDHUP`).
pub(crate) const RDHUP: u32 = libc::EPOLLRDHUP as u32;
/// Hang-up (`EPOLLHUP`), always reported by the kernel.
pub(crate) const HUP: u32 = libc::EPOLLHUP as u32;
/// Error condition (`EPOLLERR`), always reported by the kernel.
pub(crate) const ERR: u32 = libc::EPOLLERR as u32;
/// Edge-triggered (`EPOLLET`).
pub(crate) const ET: u32 = libc::EPOLLET as u32;
/// Disarm after one event until `EPOLL_CTL_MOD` (`EPOLLONESHOT`).
pub(crate) const ONESHOT: u32 = libc::EPOLLONESHOT as u32;

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub(crate) fn epoll_create1() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes no pointers; any flag value is checked by the kernel.
    let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The three `epoll_ctl` operations, by their man-page names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `EPOLL_CTL_ADD`
    Add,
    /// `EPOLL_CTL_MOD`
    Modify,
    /// `EPOLL_CTL_DEL`
    Delete,
}

/// `epoll_ctl(ep, op, fd, {events, u64: token})`.
///
/// `fd` is a plain number: the reactor re-arms registered fds from its table, where
/// it keeps no borrow. A wrong number cannot corrupt memory (the kernel answers
/// `EBADF`/`ENOENT`); the reactor's invariant that a registration is deleted before its
/// fd is closed keeps the number pointing at the right file.
pub(crate) fn epoll_ctl(
    ep: BorrowedFd<'_>,
    op: Op,
    fd: RawFd,
    events: u32,
    token: u64,
) -> io::Result<()> {
    let op = match op {
        Op::Add => libc::EPOLL_CTL_ADD,
        Op::Modify => libc::EPOLL_CTL_MOD,
        Op::Delete => libc::EPOLL_CTL_DEL,
    };
    let mut event = Event { events, u64: token };
    // SAFETY: `event` is a valid epoll_event that the kernel only reads during the
    // call; the fds are plain integers to the kernel, checked by it.
    cvt(unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd, &mut event) })?;
    Ok(())
}

/// Set once `epoll_pwait2` answered `ENOSYS`: the kernel lacks it, so stop asking.
/// (Set from the start under Miri, which stops at an unknown syscall number instead
/// of returning `ENOSYS`.)
static NO_PWAIT2: AtomicBool = AtomicBool::new(cfg!(miri));

/// Waits for events into `out`'s spare capacity; `None` waits forever.
///
/// Returns the number of events, which `out` then holds. `EINTR` is returned as an
/// error: the reactor decides whether to retry.
pub(crate) fn epoll_wait(
    ep: BorrowedFd<'_>,
    out: &mut Vec<Event>,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    out.clear();
    let cap = c_int::try_from(out.capacity()).unwrap_or(c_int::MAX);
    let n = if NO_PWAIT2.load(Ordering::Relaxed) {
        wait_ms(ep, out, cap, timeout)?
    } else {
        match pwait2(ep, out, cap, timeout) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                NO_PWAIT2.store(true, Ordering::Relaxed);
                wait_ms(ep, out, cap, timeout)?
            }
            result => result?,
        }
    };
    // SAFETY: the kernel initialised exactly the first `n` (<= cap) entries.
    unsafe { out.set_len(n) };
    Ok(n)
}

/// `epoll_pwait2(ep, out, cap, timeout, NULL)` by raw syscall, so it works whatever
/// the C library's age. Fills `out`'s spare capacity; returns the count.
fn pwait2(
    ep: BorrowedFd<'_>,
    out: &mut Vec<Event>,
    cap: c_int,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below 10^9, so it fits any c_long.
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `out` owns at least `cap` writable slots and the kernel writes at most
    // `cap`; `ts_ptr` is null or points to a live timespec; a null sigmask leaves the
    // signal mask alone (the size argument is then unused).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait2,
            ep.as_raw_fd(),
            out.as_mut_ptr(),
            cap,
            ts_ptr,
            std::ptr::null::<libc::sigset_t>(),
            0_usize,
        )
    };
    let ret = c_int::try_from(ret).expect("epoll_pwait2 returns an int");
    let n = cvt(ret)?;
    Ok(usize::try_from(n).expect("epoll_pwait2 returned a negative count that was not -1"))
}

/// `epoll_wait(ep, out, cap, ms)` with the timeout rounded up to milliseconds.
fn wait_ms(
    ep: BorrowedFd<'_>,
    out: &mut Vec<Event>,
    cap: c_int,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let ms = timeout_ms(timeout);
    // SAFETY: `out` owns at least `cap` writable slots and the kernel writes at most `cap`.
    let n = cvt(unsafe { libc::epoll_wait(ep.as_raw_fd(), out.as_mut_ptr(), cap, ms) })?;
    Ok(usize::try_from(n).expect("epoll_wait returned a negative count that was not -1"))
}

/// Milliseconds for `epoll_wait`: `-1` for "forever", sub-millisecond rests rounded up
/// so that a timer never fires early, and very long waits clamped to `c_int::MAX`.
pub(crate) fn timeout_ms(timeout: Option<Duration>) -> c_int {
    let Some(t) = timeout else { return -1 };
    let whole = t.as_millis();
    let ms = if t.subsec_nanos() % 1_000_000 != 0 {
        whole + 1
    } else {
        whole
    };
    c_int::try_from(ms).unwrap_or(c_int::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_rounds_up_never_down() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_nanos(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(999))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_millis(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(1001))), 2);
        assert_eq!(timeout_ms(Some(Duration::from_secs(3))), 3000);
        assert_eq!(timeout_ms(Some(Duration::from_secs(u64::MAX))), c_int::MAX);
    }

    #[test]
    fn sub_millisecond_wait_is_not_cut_short() -> io::Result<()> {
        use std::os::fd::AsFd;
        let ep = epoll_create1()?;
        let mut events = Vec::with_capacity(8);
        for us in [1, 250, 900] {
            let wanted = Duration::from_micros(us);
            let start = std::time::Instant::now();
            let n = epoll_wait(ep.as_fd(), &mut events, Some(wanted))?;
            let took = start.elapsed();
            assert_eq!(n, 0, "an empty epoll set reported {n} events");
            assert!(
                took >= wanted,
                "asked to wait {wanted:?}, returned after {took:?}"
            );
            assert!(
                took < Duration::from_secs(5),
                "asked {wanted:?}, took {took:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn wait_with_zero_timeout_returns_no_events() -> io::Result<()> {
        use std::os::fd::AsFd;
        let ep = epoll_create1()?;
        let mut events = Vec::with_capacity(8);
        let n = epoll_wait(ep.as_fd(), &mut events, Some(Duration::ZERO))?;
        assert_eq!(n, 0, "fresh epoll reported {n} events");
        assert!(events.is_empty());
        Ok(())
    }
}
