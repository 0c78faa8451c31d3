//! `prctl(PR_GET_TIMERSLACK)` and `prctl(PR_SET_TIMERSLACK)`: how late the kernel
//! may end this thread's timed sleeps to batch wakeups (50 µs by default).

use std::io;

use super::cvt;

/// The calling thread's timer slack, in nanoseconds.
pub(crate) fn timer_slack() -> io::Result<u64> {
    if cfg!(miri) {
        // Miri cannot call prctl; the caller treats an error as "leave the slack".
        return Err(io::ErrorKind::Unsupported.into());
    }
    // SAFETY: PR_GET_TIMERSLACK takes no pointers; the unused arguments are zero.
    let ret = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
    let slack = cvt(ret)?;
    Ok(u64::try_from(slack).expect("cvt passes only non-negative values"))
}

/// Sets the calling thread's timer slack, in nanoseconds (0 restores the default).
pub(crate) fn set_timer_slack(ns: u64) -> io::Result<()> {
    if cfg!(miri) {
        return Err(io::ErrorKind::Unsupported.into());
    }
    let ns = libc::c_ulong::try_from(ns).unwrap_or(libc::c_ulong::MAX);
    // SAFETY: PR_SET_TIMERSLACK takes a plain number; the unused arguments are zero.
    cvt(unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0, 0, 0) })?;
    Ok(())
}
