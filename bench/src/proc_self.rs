//! Readings of this process from `/proc`: resident memory (current and peak) and
//! the CPU time of the calling thread. Plain file reads, no `unsafe`.
//!
//! Peak memory is `VmHWM`, the kernel's high-water mark of the resident set. It is
//! per process and never goes down, which is why each measured run happens in a
//! child process of its own ([`crate::child`]).

use std::io;
use std::time::Duration;

/// A numeric field of `/proc/self/status`: its first number, so `VmRSS: 2096 kB`
/// gives 2096 (KiB) and `nonvoluntary_ctxt_switches: 3` gives 3.
///
/// # Errors
///
/// If the file cannot be read or has no such field.
///
/// # Examples
///
/// ```
/// let rss = edgeloop_bench::proc_self::status_field("VmRSS").unwrap();
/// let peak = edgeloop_bench::proc_self::status_field("VmHWM").unwrap();
/// assert!(rss > 0 && peak >= rss);
/// ```
pub fn status_field(field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no numeric `{field}:` line in /proc/self/status"),
            )
        })
}

/// Peak resident memory of this process so far (`VmHWM`), in KiB.
///
/// # Panics
///
/// If `/proc/self/status` cannot be read (not Linux, or no procfs).
pub fn peak_rss_kib() -> u64 {
    status_field("VmHWM").unwrap_or_else(|e| panic!("cannot read `VmHWM`: {e}"))
}

/// Current resident memory of this process (`VmRSS`), in KiB.
///
/// # Panics
///
/// If `/proc/self/status` cannot be read (not Linux, or no procfs).
pub fn rss_kib() -> u64 {
    status_field("VmRSS").unwrap_or_else(|e| panic!("cannot read `VmRSS`: {e}"))
}

/// CPU time the calling thread has run, user and kernel, with nanosecond
/// resolution: the first field of `/proc/thread-self/schedstat`. Unlike wall time,
/// it leaves out the time spent asleep in `epoll_wait` waiting for deadlines.
///
/// # Panics
///
/// If the file cannot be read or parsed (not Linux, or a kernel without
/// `CONFIG_SCHED_INFO`).
pub fn thread_cpu_time() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .unwrap_or_else(|e| panic!("cannot read /proc/thread-self/schedstat: {e}"));
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .unwrap_or_else(|| panic!("unexpected /proc/thread-self/schedstat: {text:?}"));
    Duration::from_nanos(ns)
}

/// How often the kernel has taken the CPU away from this process's main thread
/// while it could still run (`nonvoluntary_ctxt_switches`). Nearly constant on an
/// idle, pinned CPU; a run that grows it by much shared its CPU with someone else,
/// and its timings are suspect.
///
/// # Panics
///
/// If `/proc/self/status` cannot be read (not Linux, or no procfs).
pub fn involuntary_switches() -> u64 {
    status_field("nonvoluntary_ctxt_switches")
        .unwrap_or_else(|e| panic!("cannot read `nonvoluntary_ctxt_switches`: {e}"))
}

/// The system's load averages (`/proc/loadavg`, first three fields), to show in
/// the output whether the machine was idle.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The CPUs this process may run on (`Cpus_allowed_list`), to show in the output
/// that a run was pinned (`taskset -c 1` gives "1").
pub fn cpus_allowed() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("Cpus_allowed_list:")
                    .map(|v| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
