//! [`UCred`]: the credentials of the process at the other end of a Unix stream,
//! from `SO_PEERCRED` (see [`UnixStream::peer_cred`](super::UnixStream::peer_cred)).

/// A user ID (`uid_t`; `u32` on Linux).
#[expect(non_camel_case_types, reason = "the C type's name, as tokio spells it")]
pub type uid_t = u32;

/// A group ID (`gid_t`; `u32` on Linux).
#[expect(non_camel_case_types, reason = "the C type's name, as tokio spells it")]
pub type gid_t = u32;

/// A process ID (`pid_t`; `i32` on Linux).
#[expect(non_camel_case_types, reason = "the C type's name, as tokio spells it")]
pub type pid_t = i32;

/// The credentials of a peer process: its effective user and group IDs and its
/// process ID, as the kernel recorded them when the connection was made (or the
/// `socketpair` created). They do not follow later changes in the peer, and a
/// peer that passed its socket on to another process is still the one reported.
///
/// # Examples
///
/// ```
/// use edgeloop_net::UnixStream;
///
/// edgeloop_runtime::block_on(async {
///     let (a, _b) = UnixStream::pair()?;
///     let cred = a.peer_cred()?;
///     assert_eq!(cred.pid(), Some(std::process::id() as i32));
///     println!("peer runs as uid {} gid {}", cred.uid(), cred.gid());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UCred {
    /// Effective user ID.
    uid: uid_t,
    /// Effective group ID.
    gid: gid_t,
    /// Process ID; `None` when the kernel reports 0 (a peer in a PID namespace
    /// this process cannot see).
    pid: Option<pid_t>,
}

impl UCred {
    /// Credentials as `SO_PEERCRED` reported them.
    pub(crate) fn new(uid: uid_t, gid: gid_t, pid: pid_t) -> UCred {
        UCred {
            uid,
            gid,
            pid: (pid != 0).then_some(pid),
        }
    }

    /// The peer's effective user ID.
    pub fn uid(&self) -> uid_t {
        self.uid
    }

    /// The peer's effective group ID.
    pub fn gid(&self) -> gid_t {
        self.gid
    }

    /// The peer's process ID, or `None` if the peer lives in a PID namespace this
    /// process cannot see (the kernel then reports 0).
    pub fn pid(&self) -> Option<pid_t> {
        self.pid
    }
}
