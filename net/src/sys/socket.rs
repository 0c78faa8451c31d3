//! Socket options that do not fit `setsockopt_int`/`getsockopt_int` in `sys/mod.rs`,
//! for the `TcpSocket` builder: today `SO_LINGER`, whose value is a `struct linger`.
//!
//! Same contract as the rest of `sys`: one safe function per call, errno passed up
//! untouched.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::raw::c_int;
use std::time::Duration;

use super::cvt;

/// Whole seconds for `SO_LINGER`: sub-second parts round *up*, because `l_linger`
/// counts seconds and `Some(0)` means something else entirely (reset on close);
/// values past `c_int::MAX` seconds saturate.
fn linger_seconds(timeout: Duration) -> c_int {
    let rounded_up = timeout
        .as_secs()
        .saturating_add(u64::from(timeout.subsec_nanos() > 0));
    c_int::try_from(rounded_up).unwrap_or(c_int::MAX)
}

/// `setsockopt(fd, SOL_SOCKET, SO_LINGER, ..)`: `None` turns lingering off (close
/// returns at once and the kernel sends what is left in the background);
/// `Some(timeout)` makes close wait up to `timeout` for unsent data, and
/// `Some(Duration::ZERO)` makes close reset the connection.
pub(crate) fn setsockopt_linger(fd: BorrowedFd<'_>, linger: Option<Duration>) -> io::Result<()> {
    let value = libc::linger {
        l_onoff: c_int::from(linger.is_some()),
        l_linger: linger.map_or(0, linger_seconds),
    };
    let len = mem::size_of::<libc::linger>() as libc::socklen_t;
    // SAFETY: `fd` is open (borrowed); the kernel reads `len` bytes from `&value`,
    // which is exactly one `struct linger` that outlives the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const value).cast(),
            len,
        )
    })?;
    Ok(())
}

/// `getsockopt(fd, SOL_SOCKET, SO_LINGER)`: `None` if lingering is off.
pub(crate) fn getsockopt_linger(fd: BorrowedFd<'_>) -> io::Result<Option<Duration>> {
    let mut value = libc::linger {
        l_onoff: 0,
        l_linger: 0,
    };
    let mut len = mem::size_of::<libc::linger>() as libc::socklen_t;
    // SAFETY: `fd` is open (borrowed); the kernel writes at most `len` bytes (one
    // `struct linger`) to `&value` and updates `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw mut value).cast(),
            &mut len,
        )
    })?;
    if value.l_onoff == 0 {
        return Ok(None);
    }
    // The kernel stores a non-negative count of seconds; a negative one would be a
    // kernel bug, read as 0.
    let seconds = u64::try_from(value.l_linger).unwrap_or(0);
    Ok(Some(Duration::from_secs(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn linger_seconds_round_up_and_saturate() {
        let cases = [
            (Duration::ZERO, 0),
            (Duration::from_nanos(1), 1),
            (Duration::from_millis(999), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_secs(30), 30),
            (
                Duration::from_secs(u64::from(c_int::MAX.unsigned_abs())),
                c_int::MAX,
            ),
            (Duration::from_secs(u64::MAX), c_int::MAX),
            (Duration::MAX, c_int::MAX),
        ];
        for (timeout, expected) in cases {
            assert_eq!(linger_seconds(timeout), expected, "seconds for {timeout:?}");
        }
    }

    #[test]
    fn linger_round_trips_through_the_kernel() -> io::Result<()> {
        let fd = super::super::socket(libc::AF_INET, libc::SOCK_STREAM)?;
        assert_eq!(getsockopt_linger(fd.as_fd())?, None, "default linger");
        for (set, expected) in [
            (Some(Duration::from_secs(7)), Some(Duration::from_secs(7))),
            (
                Some(Duration::from_millis(1500)),
                Some(Duration::from_secs(2)),
            ),
            (Some(Duration::ZERO), Some(Duration::ZERO)),
            (None, None),
        ] {
            setsockopt_linger(fd.as_fd(), set)?;
            let got = getsockopt_linger(fd.as_fd())?;
            assert_eq!(got, expected, "linger after setting {set:?}");
        }
        Ok(())
    }
}
