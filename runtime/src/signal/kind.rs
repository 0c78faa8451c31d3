//! [`SignalKind`]: which signal to listen for, and the check that refuses the ones
//! that cannot or must not be listened for.

use std::io;
use std::os::raw::c_int;

use crate::sys::signal::SIGNAL_SLOTS;

/// A signal number, as given to [`signal`](super::signal).
///
/// The named constructors cover the signals a program usually handles; any other
/// number goes through [`from_raw`](Self::from_raw) (real-time signals, say).
/// Whether the number may be listened for is checked by [`signal`](super::signal),
/// not here.
///
/// # Examples
///
/// ```
/// use edgeloop_runtime::signal::SignalKind;
///
/// assert_eq!(SignalKind::terminate().as_raw_value(), libc::SIGTERM);
/// assert_eq!(SignalKind::from_raw(libc::SIGHUP), SignalKind::hangup());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignalKind(c_int);

impl SignalKind {
    /// The signal with number `signum`, e.g. `libc::SIGRTMIN() + 1`.
    pub const fn from_raw(signum: c_int) -> Self {
        SignalKind(signum)
    }

    /// The signal number.
    pub const fn as_raw_value(&self) -> c_int {
        self.0
    }

    /// `SIGINT`: the terminal's interrupt key (usually Ctrl-C).
    pub const fn interrupt() -> Self {
        SignalKind(libc::SIGINT)
    }

    /// `SIGTERM`: a polite request to terminate (the default of `kill`).
    pub const fn terminate() -> Self {
        SignalKind(libc::SIGTERM)
    }

    /// `SIGHUP`: the terminal hung up; daemons often take it as "reload".
    pub const fn hangup() -> Self {
        SignalKind(libc::SIGHUP)
    }

    /// `SIGQUIT`: the terminal's quit key (usually Ctrl-\\).
    pub const fn quit() -> Self {
        SignalKind(libc::SIGQUIT)
    }

    /// `SIGALRM`: a timer set with `alarm` or `setitimer` expired.
    pub const fn alarm() -> Self {
        SignalKind(libc::SIGALRM)
    }

    /// `SIGCHLD`: a child process stopped or exited.
    pub const fn child() -> Self {
        SignalKind(libc::SIGCHLD)
    }

    /// `SIGPIPE`: a write to a pipe or socket with no reader.
    pub const fn pipe() -> Self {
        SignalKind(libc::SIGPIPE)
    }

    /// `SIGUSR1`: meaning defined by the program.
    pub const fn user_defined1() -> Self {
        SignalKind(libc::SIGUSR1)
    }

    /// `SIGUSR2`: meaning defined by the program.
    pub const fn user_defined2() -> Self {
        SignalKind(libc::SIGUSR2)
    }

    /// `SIGWINCH`: the terminal's window size changed.
    pub const fn window_change() -> Self {
        SignalKind(libc::SIGWINCH)
    }
}

impl From<c_int> for SignalKind {
    fn from(signum: c_int) -> Self {
        SignalKind::from_raw(signum)
    }
}

impl From<SignalKind> for c_int {
    fn from(kind: SignalKind) -> Self {
        kind.as_raw_value()
    }
}

/// The conventional name of `signum`, for messages.
fn name(signum: c_int) -> Option<&'static str> {
    Some(match signum {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGWINCH => "SIGWINCH",
        _ => return None,
    })
}

/// Checks that `kind` may be listened for.
///
/// # Errors
///
/// `InvalidInput`, with a message naming the signal, for a number out of range, for
/// `SIGKILL` and `SIGSTOP` (the kernel never lets them be caught), for `SIGILL`,
/// `SIGFPE` and `SIGSEGV` (raised by a faulting instruction: a handler that returns
/// runs the same instruction again, forever), and for the numbers between 31 and
/// `SIGRTMIN` (the C library keeps them for its threads).
pub(crate) fn check(kind: SignalKind) -> io::Result<()> {
    let signum = kind.as_raw_value();
    let highest = libc::SIGRTMAX().min(c_int::try_from(SIGNAL_SLOTS - 1).unwrap_or(c_int::MAX));
    if !(1..=highest).contains(&signum) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("signal number {signum} is out of range; valid numbers are 1 to {highest}"),
        ));
    }
    let why = match signum {
        libc::SIGKILL | libc::SIGSTOP => "can never be caught",
        libc::SIGILL | libc::SIGFPE | libc::SIGSEGV => {
            "reports a faulting instruction, which would run again each time the handler \
             returned"
        }
        _ if signum > libc::SIGSYS && signum < libc::SIGRTMIN() => {
            "is reserved by the C library for its threads"
        }
        _ => return Ok(()),
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "signal {} {why}; it cannot be listened for",
            describe(signum)
        ),
    ))
}

/// `signum` with its name when it has a common one, e.g. "10 (`SIGUSR1`)".
pub(crate) fn describe(signum: c_int) -> String {
    match name(signum) {
        Some(name) => format!("{signum} (`{name}`)"),
        None => signum.to_string(),
    }
}
