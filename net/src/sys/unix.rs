//! Unix-domain socket calls: the `sockaddr_un` layout both ways, and the calls
//! that take or return one (`bind`, `connect`, `accept4`, `getsockname`,
//! `getpeername`, `sendto`, `recvfrom`), plus `socketpair` and `SO_PEERCRED`.
//! Called by `crate::unix`; `socket`, `listen`, `recv`, `send` and `shutdown` are
//! shared with TCP in `sys/mod.rs`.
//!
//! Layout (unix(7)): `sun_family`, then `sun_path[108]`. The length passed with the
//! address says which form it is: only the family means unnamed; a pathname is
//! its bytes plus a terminating NUL; an abstract name is a NUL byte and then
//! exactly the name's bytes (no terminator: every byte counts).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::raw::c_int;
use std::os::unix::ffi::OsStrExt;

use super::{cvt, cvt_size};
use crate::unix::{SocketAddr, UCred};

/// Where `sun_path` starts in a `sockaddr_un` (2 on Linux).
const PATH_OFFSET: usize = mem::offset_of!(libc::sockaddr_un, sun_path);

/// Bytes in `sun_path` (108 on Linux): a pathname must be shorter, to leave room
/// for its NUL terminator; an abstract name must be shorter, after its leading NUL.
pub(crate) const SUN_PATH_LEN: usize = mem::size_of::<libc::sockaddr_un>() - PATH_OFFSET;

/// A `sockaddr_un` and how many of its bytes count, ready for `bind`, `connect`
/// or `sendto`; or, from [`UnixAddr::empty`], space for the kernel to write into.
pub(crate) struct UnixAddr {
    /// The address in the C layout.
    raw: libc::sockaddr_un,
    /// How many bytes of `raw` count (the kernel's `addrlen`).
    len: libc::socklen_t,
}

impl UnixAddr {
    /// Encodes `addr`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an unnamed address, which no socket can be bound or
    /// connected to.
    pub(crate) fn new(addr: &SocketAddr) -> io::Result<UnixAddr> {
        let mut out = UnixAddr::empty();
        out.raw.sun_family = libc::AF_UNIX as libc::sa_family_t;
        // `SocketAddr` guarantees both forms fit: a pathname is shorter than
        // SUN_PATH_LEN (its NUL terminator is one of the zeroes already there), an
        // abstract name is shorter than SUN_PATH_LEN after its leading NUL.
        // Where the bytes go in sun_path: an abstract name after its leading NUL.
        let (start, bytes) = if let Some(path) = addr.as_pathname() {
            (0, path.as_os_str().as_bytes())
        } else if let Some(name) = addr.as_abstract_name() {
            (1, name)
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an unnamed address cannot be bound or connected to; give a path, or \
                 `\\0name` for an abstract address",
            ));
        };
        for (slot, &byte) in out.raw.sun_path[start..].iter_mut().zip(bytes) {
            *slot = libc::c_char::from_ne_bytes([byte]);
        }
        // A pathname counts its NUL terminator, an abstract name its leading NUL.
        let used = bytes.len() + 1;
        // PATH_OFFSET + SUN_PATH_LEN is the size of sockaddr_un (110 bytes).
        out.len = (PATH_OFFSET + used) as libc::socklen_t;
        Ok(out)
    }

    /// A zeroed address with room for the largest one, for the kernel to fill in.
    fn empty() -> UnixAddr {
        UnixAddr {
            raw: libc::sockaddr_un {
                sun_family: 0,
                sun_path: [0; SUN_PATH_LEN],
            },
            len: mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        }
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        (&raw const self.raw).cast()
    }

    fn as_mut_ptr(&mut self) -> *mut libc::sockaddr {
        (&raw mut self.raw).cast()
    }

    /// Decodes an address the kernel wrote (with the length it reported).
    ///
    /// # Errors
    ///
    /// `InvalidData` if the kernel reported a family other than `AF_UNIX`.
    fn decode(&self) -> io::Result<SocketAddr> {
        let len = self.len as usize;
        // recvfrom leaves the length at 0 for a sender that has no address.
        if len <= PATH_OFFSET {
            return Ok(SocketAddr::unnamed());
        }
        if c_int::from(self.raw.sun_family) != libc::AF_UNIX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "expected a Unix-domain address, got one of family {}",
                    self.raw.sun_family
                ),
            ));
        }
        // The kernel reports the full length even if it had to truncate; never read
        // past sun_path.
        let used = (len - PATH_OFFSET).min(SUN_PATH_LEN);
        let path: Vec<u8> = self.raw.sun_path[..used]
            .iter()
            .map(|&c| c.to_ne_bytes()[0])
            .collect();
        Ok(match path.split_first() {
            Some((0, name)) => SocketAddr::from_kernel_abstract_name(name),
            _ => {
                // A pathname's length may or may not count its NUL terminator.
                let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                SocketAddr::from_kernel_pathname(&path[..end])
            }
        })
    }
}

/// `bind(fd, addr)`.
pub(crate) fn bind(fd: BorrowedFd<'_>, addr: &UnixAddr) -> io::Result<()> {
    // SAFETY: `fd` is open (borrowed); `addr` holds a sockaddr_un of which the first
    // `addr.len` bytes are initialised, and the kernel only reads them.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), addr.as_ptr(), addr.len) })?;
    Ok(())
}

/// `connect(fd, addr)`. A non-blocking stream connect either completes at once or
/// fails with `EAGAIN` when the listener's backlog is full; no connection is then
/// pending, so the caller must try again later.
pub(crate) fn connect(fd: BorrowedFd<'_>, addr: &UnixAddr) -> io::Result<()> {
    // SAFETY: `fd` is open (borrowed); `addr` holds a sockaddr_un of which the first
    // `addr.len` bytes are initialised, and the kernel only reads them.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), addr.as_ptr(), addr.len) })?;
    Ok(())
}

/// `accept4(fd, .., SOCK_NONBLOCK | SOCK_CLOEXEC)`: the new socket and its peer's
/// address (unnamed unless the client bound one).
pub(crate) fn accept4(fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, SocketAddr)> {
    let mut peer = UnixAddr::empty();
    // SAFETY: `fd` is open (borrowed); the kernel writes at most `peer.len` bytes,
    // the size of `peer.raw`, into it and stores the real length in `peer.len`.
    let new = cvt(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            peer.as_mut_ptr(),
            &mut peer.len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: the kernel just returned `new` as a new descriptor that nothing else owns.
    let new = unsafe { OwnedFd::from_raw_fd(new) };
    Ok((new, peer.decode()?))
}

/// `getsockname(fd)`.
pub(crate) fn getsockname(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let mut addr = UnixAddr::empty();
    // SAFETY: `fd` is open (borrowed); the kernel writes at most `addr.len` bytes,
    // the size of `addr.raw`, into it and stores the real length in `addr.len`.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), addr.as_mut_ptr(), &mut addr.len) })?;
    addr.decode()
}

/// `getpeername(fd)`; `ENOTCONN` if the socket is not connected.
pub(crate) fn getpeername(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let mut addr = UnixAddr::empty();
    // SAFETY: `fd` is open (borrowed); the kernel writes at most `addr.len` bytes,
    // the size of `addr.raw`, into it and stores the real length in `addr.len`.
    cvt(unsafe { libc::getpeername(fd.as_raw_fd(), addr.as_mut_ptr(), &mut addr.len) })?;
    addr.decode()
}

/// `socketpair(AF_UNIX, ty | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)`: two connected sockets.
pub(crate) fn socketpair(ty: c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [c_int; 2] = [-1, -1];
    // SAFETY: the kernel writes exactly two fds into `fds`, which has room for two.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so fds[0] is a new descriptor nothing else owns.
    let first = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above, for fds[1].
    let second = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((first, second))
}

/// `sendto(fd, buf, MSG_NOSIGNAL, addr)`.
pub(crate) fn sendto(fd: BorrowedFd<'_>, buf: &[u8], addr: &UnixAddr) -> io::Result<usize> {
    // SAFETY: `fd` is open (borrowed); the kernel reads at most `buf.len()` bytes
    // from `buf`, a valid slice, and the first `addr.len` bytes of `addr`, which are
    // initialised.
    cvt_size(unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
            addr.as_ptr(),
            addr.len,
        )
    })
}

/// `recvfrom(fd, buf, flags)`: the byte count and the sender's address. A datagram
/// longer than `buf` is cut to fit; the rest is lost (unless `flags` has
/// `MSG_PEEK`).
pub(crate) fn recvfrom(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: c_int,
) -> io::Result<(usize, SocketAddr)> {
    let mut from = UnixAddr::empty();
    // SAFETY: `fd` is open (borrowed); the kernel writes at most `buf.len()` bytes
    // into `buf`, an exclusively borrowed slice, and at most `from.len` bytes (the
    // size of `from.raw`) into `from`, storing the real length in `from.len`.
    let n = cvt_size(unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            from.as_mut_ptr(),
            &mut from.len,
        )
    })?;
    Ok((n, from.decode()?))
}

/// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)`: who was at the other end when the
/// connection was made (or the `socketpair` created).
pub(crate) fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<UCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `fd` is open (borrowed); the kernel writes at most `len` bytes, the
    // size of `cred`, into `cred` and updates `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    })?;
    Ok(UCred::new(cred.uid, cred.gid, cred.pid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::path::Path;

    /// Encodes `addr` and decodes it back, as if the kernel had echoed it.
    fn round_trip(addr: &SocketAddr) -> io::Result<SocketAddr> {
        UnixAddr::new(addr)?.decode()
    }

    /// The bytes of `sun_path` that `addr.len` counts.
    fn path_bytes(addr: &UnixAddr) -> Vec<u8> {
        addr.raw.sun_path[..addr.len as usize - PATH_OFFSET]
            .iter()
            .map(|c| c.to_ne_bytes()[0])
            .collect()
    }

    #[test]
    fn unix_addr_lengths_follow_unix_7() -> io::Result<()> {
        let file = UnixAddr::new(&SocketAddr::from_pathname("/a/b")?)?;
        assert_eq!(
            file.len as usize,
            PATH_OFFSET + 5,
            "pathname counts its NUL"
        );
        assert_eq!(
            path_bytes(&file),
            b"/a/b\0",
            "pathname and its NUL terminator"
        );
        let named = UnixAddr::new(&SocketAddr::from_abstract_name(b"ab")?)?;
        assert_eq!(named.len as usize, PATH_OFFSET + 3, "abstract: NUL + name");
        assert_eq!(path_bytes(&named), b"\0ab", "NUL, then the name");
        let error = UnixAddr::new(&SocketAddr::unnamed())
            .err()
            .expect("unnamed encoded");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        Ok(())
    }

    #[test]
    fn unix_addr_round_trips_every_form_at_its_longest() -> io::Result<()> {
        let longest_path = "p".repeat(SUN_PATH_LEN - 1);
        let longest_name = vec![0xff; SUN_PATH_LEN - 1];
        for addr in [
            SocketAddr::from_pathname(&longest_path)?,
            SocketAddr::from_pathname("x")?,
            SocketAddr::from_abstract_name(&longest_name)?,
            SocketAddr::from_abstract_name(b"")?,
            SocketAddr::from_abstract_name(b"a\0b")?,
        ] {
            assert_eq!(round_trip(&addr)?, addr, "round trip of {addr:?}");
        }
        Ok(())
    }

    #[test]
    fn unix_addr_decodes_short_lengths_as_unnamed() -> io::Result<()> {
        let mut addr = UnixAddr::empty();
        addr.len = 0;
        assert!(addr.decode()?.is_unnamed(), "length 0");
        addr.len = PATH_OFFSET as libc::socklen_t;
        addr.raw.sun_family = libc::AF_UNIX as libc::sa_family_t;
        assert!(addr.decode()?.is_unnamed(), "family only");
        Ok(())
    }

    #[test]
    fn unix_socketpair_gives_connected_nonblocking_cloexec_fds() -> io::Result<()> {
        let (a, b) = socketpair(libc::SOCK_STREAM)?;
        for fd in [&a, &b] {
            // SAFETY: fcntl F_GETFL/F_GETFD on an open fd takes no pointers.
            let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
            // SAFETY: as above.
            let fdfl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
            assert_ne!(fl & libc::O_NONBLOCK, 0, "flags {fl:#x}");
            assert_ne!(fdfl & libc::FD_CLOEXEC, 0, "fd flags {fdfl:#x}");
        }
        assert_eq!(super::super::send(a.as_fd(), b"hi")?, 2);
        let mut buf = [0u8; 4];
        assert_eq!(super::super::recv(b.as_fd(), &mut buf, 0)?, 2);
        assert_eq!(&buf[..2], b"hi");
        assert!(getsockname(a.as_fd())?.is_unnamed(), "socketpair end named");
        Ok(())
    }

    #[test]
    fn unix_bind_then_getsockname_reports_the_abstract_name() -> io::Result<()> {
        let name = format!("edgeloop-sys-unit-{}", std::process::id());
        let fd = super::super::socket(libc::AF_UNIX, libc::SOCK_DGRAM)?;
        let addr = SocketAddr::from_path(Path::new(&format!("\0{name}")))?;
        bind(fd.as_fd(), &UnixAddr::new(&addr)?)?;
        let bound = getsockname(fd.as_fd())?;
        assert_eq!(bound.as_abstract_name(), Some(name.as_bytes()), "{bound:?}");
        Ok(())
    }
}
