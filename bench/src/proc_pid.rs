//! Readings of another process (by pid) and of the kernel's socket memory, from
//! `/proc`: what the scale benchmark (`src/bin/scale.rs`) watches in the echo server
//! while `src/bin/hold.rs` keeps thousands of idle connections open to it.
//!
//! - [`rss_kib`]: the process's resident memory (`VmRSS`), user space only.
//! - [`open_fds`], [`has_fd`], [`nth_free_fd`]: its fds, and whether it has
//!   accepted a given number of connections.
//! - [`cpu_time`]: its CPU time in nanoseconds (`/proc/PID/task/*/schedstat`), far
//!   finer than the 10 ms ticks of [`crate::echo::process_cpu_time`].
//! - [`Sockstat`]: the kernel's TCP socket counts and buffer pages
//!   (`/proc/net/sockstat`).
//! - [`slab_kib`] and [`SlabInfo`]: kernel slab memory, the whole
//!   (`/proc/meminfo`, readable by anyone) and per cache (`/proc/slabinfo`, root
//!   only on most systems).
//!
//! Plain file reads, no `unsafe`.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The first number of field `field` in the text of a `/proc/PID/status` (or
/// `/proc/meminfo`, which has the same `Name:   value kB` shape).
fn field_value(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Resident memory of process `pid` (`VmRSS` of `/proc/PID/status`), in KiB.
///
/// # Errors
///
/// If the process does not exist (any more) or the file has no `VmRSS` line.
///
/// # Examples
///
/// ```
/// let kib = edgeloop_bench::proc_pid::rss_kib(std::process::id()).unwrap();
/// assert!(kib > 0);
/// ```
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    field_value(&status, "VmRSS")
        .ok_or_else(|| invalid(format!("no `VmRSS:` line in /proc/{pid}/status")))
}

/// The fds process `pid` has open (entries of `/proc/PID/fd`), in ascending order.
///
/// Listing the directory makes the kernel build a `/proc` inode and dentry for
/// every entry (slab memory that stays cached), so a benchmark that measures slab
/// growth lists a process's fds before its baseline, not while it holds thousands;
/// [`has_fd`] looks up one entry instead.
///
/// # Errors
///
/// If the directory cannot be read: no such process, or not ours to look at.
pub fn open_fds(pid: u32) -> io::Result<Vec<u32>> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        if let Some(fd) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            fds.push(fd);
        }
    }
    fds.sort_unstable();
    Ok(fds)
}

/// Whether process `pid` has fd `fd` open (one lookup in `/proc/PID/fd`).
pub fn has_fd(pid: u32, fd: u32) -> bool {
    std::fs::symlink_metadata(format!("/proc/{pid}/fd/{fd}")).is_ok()
}

/// The fd that a process with fds `open` (ascending) gets at its `n`th next
/// `open`/`accept` (counting from 1), as the kernel always hands out the lowest
/// free number: once it is open, at least `n` more are.
///
/// # Examples
///
/// ```
/// use edgeloop_bench::proc_pid::nth_free_fd;
///
/// assert_eq!(nth_free_fd(&[0, 1, 2, 4, 9], 1), 3);
/// assert_eq!(nth_free_fd(&[0, 1, 2, 4, 9], 2), 5);
/// assert_eq!(nth_free_fd(&[0, 1, 2, 4, 9], 6), 10);
/// ```
pub fn nth_free_fd(open: &[u32], n: usize) -> u32 {
    let mut left = n;
    let mut candidate = 0u32;
    for &fd in open {
        // `open` ascends, so `candidate` (one past the last fd seen) is at most `fd`.
        let free_below = (fd - candidate) as usize;
        if free_below >= left {
            break;
        }
        left -= free_below;
        candidate = fd + 1;
    }
    candidate + left as u32 - 1
}

/// CPU time, user and kernel, that all threads of process `pid` have run so far:
/// the sum of the first field of each `/proc/PID/task/TID/schedstat`, in
/// nanoseconds. A thread that has exited is no longer counted.
///
/// # Errors
///
/// If the process does not exist or a file does not parse (a kernel without
/// `CONFIG_SCHED_INFO`).
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread that exited between the listing and the read adds nothing.
        let Ok(text) = std::fs::read_to_string(task?.path().join("schedstat")) else {
            continue;
        };
        let ns: u64 = text
            .split_whitespace()
            .next()
            .and_then(|field| field.parse().ok())
            .ok_or_else(|| invalid(format!("unexpected schedstat of {pid}: {text:?}")))?;
        total += ns;
    }
    Ok(Duration::from_nanos(total))
}

/// The TCP line of `/proc/net/sockstat`: counts for the whole system (every
/// process, both ends of a loopback connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sockstat {
    /// TCP sockets in use (all states but `TIME_WAIT`, listeners included).
    pub inuse: u64,
    /// Orphaned TCP sockets (closed by their process, still finishing).
    pub orphan: u64,
    /// Sockets in `TIME_WAIT`.
    pub time_wait: u64,
    /// TCP sockets allocated.
    pub alloc: u64,
    /// Pages (4 KiB) charged to TCP socket buffers, the figure `tcp_mem` limits.
    pub mem_pages: u64,
}

impl Sockstat {
    /// Reads `/proc/net/sockstat`.
    ///
    /// # Errors
    ///
    /// If the file cannot be read or has no TCP line.
    pub fn read() -> io::Result<Sockstat> {
        let text = std::fs::read_to_string("/proc/net/sockstat")?;
        Sockstat::parse(&text)
            .ok_or_else(|| invalid(format!("no TCP line in /proc/net/sockstat: {text:?}")))
    }

    /// Parses the text of `/proc/net/sockstat`.
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop_bench::proc_pid::Sockstat;
    ///
    /// let text = "sockets: used 11\nTCP: inuse 3 orphan 0 tw 2 alloc 5 mem 17\n";
    /// let tcp = Sockstat::parse(text).unwrap();
    /// assert_eq!((tcp.inuse, tcp.time_wait, tcp.mem_pages), (3, 2, 17));
    /// ```
    pub fn parse(text: &str) -> Option<Sockstat> {
        let line = text.lines().find_map(|l| l.strip_prefix("TCP:"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let get = |name: &str| -> Option<u64> {
            let at = words.iter().position(|w| *w == name)?;
            words.get(at + 1)?.parse().ok()
        };
        Some(Sockstat {
            inuse: get("inuse")?,
            orphan: get("orphan")?,
            time_wait: get("tw")?,
            alloc: get("alloc")?,
            mem_pages: get("mem")?,
        })
    }
}

/// All kernel slab memory (`Slab:` of `/proc/meminfo`: reclaimable and not), in
/// KiB. Readable by anyone, but it counts every cache of the whole system.
///
/// # Errors
///
/// If `/proc/meminfo` cannot be read or has no `Slab:` line.
pub fn slab_kib() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    field_value(&text, "Slab").ok_or_else(|| invalid("no `Slab:` line in /proc/meminfo".into()))
}

/// The caches of `/proc/slabinfo`: for each, its live objects and their size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlabInfo {
    /// Cache name to (active objects, object size in bytes).
    caches: BTreeMap<String, (u64, u64)>,
}

impl SlabInfo {
    /// Reads `/proc/slabinfo`.
    ///
    /// # Errors
    ///
    /// If it cannot be read: on most systems it is readable by root only
    /// (`PermissionDenied`).
    pub fn read() -> io::Result<SlabInfo> {
        let text = std::fs::read_to_string("/proc/slabinfo")?;
        Ok(SlabInfo::parse(&text))
    }

    /// Parses the text of `/proc/slabinfo` (version 2.1: a version line, a `#`
    /// header, then `name active_objs num_objs objsize ...` per cache).
    ///
    /// # Examples
    ///
    /// ```
    /// use edgeloop_bench::proc_pid::SlabInfo;
    ///
    /// let before = SlabInfo::parse("slabinfo - version: 2.1\n# name ...\nTCP 10 20 2368 13 8\n");
    /// let after = SlabInfo::parse("slabinfo - version: 2.1\n# name ...\nTCP 12 20 2368 13 8\n");
    /// assert_eq!(after.growth_since(&before), vec![("TCP".to_owned(), 2 * 2368)]);
    /// ```
    pub fn parse(text: &str) -> SlabInfo {
        let caches = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.starts_with("slabinfo"))
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let name = fields.next()?.to_owned();
                let active: u64 = fields.next()?.parse().ok()?;
                let _total = fields.next()?;
                let size: u64 = fields.next()?.parse().ok()?;
                Some((name, (active, size)))
            })
            .collect();
        SlabInfo { caches }
    }

    /// The caches whose live objects grew since `before`, with the bytes they grew
    /// by (objects times object size), largest first.
    pub fn growth_since(&self, before: &SlabInfo) -> Vec<(String, i64)> {
        let mut grown: Vec<(String, i64)> = self
            .caches
            .iter()
            .filter_map(|(name, &(active, size))| {
                let was = before.caches.get(name).map_or(0, |&(a, _)| a);
                let bytes = (active as i64 - was as i64) * size as i64;
                (bytes > 0).then(|| (name.clone(), bytes))
            })
            .collect();
        grown.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        grown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_read() {
        let pid = std::process::id();
        assert!(rss_kib(pid).expect("VmRSS") > 0);
        let fds = open_fds(pid).expect("fds");
        assert!(fds.len() >= 3 && has_fd(pid, fds[0]), "{fds:?}");
        assert!(cpu_time(pid).is_ok());
        assert!(Sockstat::read().is_ok());
        assert!(slab_kib().expect("Slab") > 0);
    }

    #[test]
    fn a_missing_tcp_line_is_none() {
        assert_eq!(
            Sockstat::parse("sockets: used 3\nUDP: inuse 0 mem 0\n"),
            None
        );
    }

    #[test]
    fn slab_growth_skips_shrunk_caches_and_sorts_largest_first() {
        let before = SlabInfo::parse("a 10 10 100 1 1\nb 5 5 64 1 1\nc 1 1 8 1 1\n");
        let after = SlabInfo::parse("a 9 10 100 1 1\nb 7 7 64 1 1\nc 2 2 8 1 1\nd 1 1 512 1 1\n");
        assert_eq!(
            after.growth_since(&before),
            vec![
                ("d".to_owned(), 512),
                ("b".to_owned(), 128),
                ("c".to_owned(), 8)
            ]
        );
    }
}
