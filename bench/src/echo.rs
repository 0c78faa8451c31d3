//! What the echo benchmark's programs share: the peer servers' buffer size and
//! command line, boolean flags beside [`Args`](crate::Args)' `--name value` pairs,
//! and another process's CPU time and preemptions from `/proc`.
//!
//! The programs themselves are `src/bin/loadgen.rs` (the client, on mio),
//! `src/bin/echo_*.rs` and `c/echo_epoll.c` (the servers) and `src/bin/compare.rs`
//! (the driver); see `bench/README.md`.

use std::io;
use std::time::Duration;

/// Each peer server's read buffer per connection: 16 KiB.
pub const BUFFER_SIZE: usize = 16 * 1024;

/// Where the servers listen, and the load generator connects, by default.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7000";

/// The kernel's clock tick for `/proc/PID/stat` times (`USER_HZ`): 100 per second
/// on every Linux architecture this runs on (it is part of the user ABI).
const TICKS_PER_SECOND: u64 = 100;

/// A server's command line, `PROGRAM [ADDR]`: the address to listen on, or
/// [`DEFAULT_ADDR`]. On anything else (more arguments, an option, `--help`) prints
/// the usage and exits, with status 0 for `--help`, else 2.
pub fn listen_address(program: &str) -> String {
    server_command_line(program, &[]).0
}

/// A server's command line with boolean options, `PROGRAM [ADDR] [--FLAG...]`: the
/// address to listen on (or [`DEFAULT_ADDR`]) and the `flags` (named without
/// `--`) that were given. On anything else prints the usage and exits, with
/// status 0 for `--help`, else 2.
pub fn server_command_line(program: &str, flags: &[&str]) -> (String, Vec<String>) {
    let mut known = flags.to_vec();
    known.push("help");
    let (rest, set) = split_flags(std::env::args().skip(1), &known);
    let options: String = flags.iter().map(|f| format!(" [--{f}]")).collect();
    let usage = format!(
        "usage: {program} [ADDR]{options}   (default {DEFAULT_ADDR}; port 0 picks a free one)\n\
         An echo server for the echo benchmark; prints `listening on ADDR` once ready."
    );
    if set.iter().any(|f| f == "help") {
        println!("{usage}");
        std::process::exit(0)
    }
    match rest.as_slice() {
        [] => (DEFAULT_ADDR.to_owned(), set),
        [addr] if !addr.starts_with('-') => (addr.clone(), set),
        other => {
            eprintln!("error: unexpected arguments {other:?}\n{usage}");
            std::process::exit(2)
        }
    }
}

/// Splits the boolean `flags` (named without `--`) out of `args`: returns the
/// remaining arguments, for [`Args::parse`](crate::Args::parse), and the flags that
/// were present.
///
/// # Examples
///
/// ```
/// use edgeloop_bench::echo::split_flags;
///
/// let args = ["--size", "64", "--verify"].map(String::from);
/// let (rest, set) = split_flags(args, &["verify", "syscalls"]);
/// assert_eq!(rest, ["--size", "64"]);
/// assert_eq!(set, ["verify"]);
/// ```
pub fn split_flags<I: IntoIterator<Item = String>>(
    args: I,
    flags: &[&str],
) -> (Vec<String>, Vec<String>) {
    let mut rest = Vec::new();
    let mut set = Vec::new();
    for arg in args {
        match arg.strip_prefix("--").filter(|name| flags.contains(name)) {
            Some(name) => set.push(name.to_owned()),
            None => rest.push(arg),
        }
    }
    (rest, set)
}

/// CPU time (user plus system) that process `pid` and all its threads have used so
/// far: `utime + stime` of `/proc/PID/stat`, at the kernel's 10 ms tick resolution.
///
/// # Errors
///
/// If the file cannot be read (no such process) or does not parse.
pub fn process_cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected /proc/{pid}/stat: {stat:?}"),
            )
        })
}

/// How often the kernel took a CPU away from a thread of process `pid` while it
/// could still run (`nonvoluntary_ctxt_switches`, summed over its threads). On a
/// CPU of its own a process is hardly ever preempted; a run whose server or load
/// generator was preempted often shared its CPU with someone else.
///
/// # Errors
///
/// If the process's `/proc` entries cannot be read (no such process).
pub fn involuntary_switches(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread that exited meanwhile has nothing more to add.
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        total += status
            .lines()
            .find_map(|line| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// `utime + stime`, in ticks, from the text of a `/proc/PID/stat`.
///
/// The command name (field 2) is in parentheses and may hold spaces or `)`, so the
/// fields are counted from the last `)`: utime and stime are fields 14 and 15.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (the state), so field N is `fields[N - 3]`.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_name_with_spaces_and_parentheses() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 99";
        assert_eq!(parse_cpu_ticks(stat), Some(12));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time_and_a_switch_count() {
        assert!(process_cpu_time(std::process::id()).is_ok());
        assert!(involuntary_switches(std::process::id()).is_ok());
    }
}
