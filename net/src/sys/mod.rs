//! Thin, safe wrappers over the socket calls of `edgeloop-net`: one function per
//! syscall, named after it. The only module of this crate that calls libc.
//!
//! Contract: every new fd is created `SOCK_NONBLOCK | SOCK_CLOEXEC` and becomes an
//! [`OwnedFd`] at once; `-1`/errno becomes [`io::Error::last_os_error`] untouched, so
//! `raw_os_error()` and the error kind survive; `EINTR` is returned as it came.

pub(crate) mod socket;
pub(crate) mod udp;
pub(crate) mod unix;

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::raw::c_int;

fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: isize) -> io::Result<usize> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        // A non-negative ssize_t always fits in usize.
        Ok(ret.unsigned_abs())
    }
}

/// Runs `op` again while it fails with `EINTR`.
pub(crate) fn retry<R>(mut op: impl FnMut() -> io::Result<R>) -> io::Result<R> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// A socket address in the C layout, ready to pass to `bind` or `connect`.
enum RawAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl RawAddr {
    fn new(addr: &SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => RawAddr::V4(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(a) => RawAddr::V6(libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            }),
        }
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        match self {
            RawAddr::V4(a) => (a as *const libc::sockaddr_in).cast(),
            RawAddr::V6(a) => (a as *const libc::sockaddr_in6).cast(),
        }
    }

    fn len(&self) -> libc::socklen_t {
        let size = match self {
            RawAddr::V4(_) => mem::size_of::<libc::sockaddr_in>(),
            RawAddr::V6(_) => mem::size_of::<libc::sockaddr_in6>(),
        };
        // Both sizes are small constants (16 and 28).
        size as libc::socklen_t
    }
}

/// Reads a `SocketAddr` out of a `sockaddr_storage` the kernel filled in.
fn from_storage(storage: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the kernel wrote a sockaddr_in; sockaddr_storage
            // is larger than it and aligned for every sockaddr type.
            let a =
                unsafe { *(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the kernel wrote a sockaddr_in6; sockaddr_storage
            // is larger than it and aligned for every sockaddr type.
            let a =
                unsafe { *(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        family => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("socket address of unsupported family {family}"),
        )),
    }
}

/// The address family for `addr`.
pub(crate) fn domain_of(addr: &SocketAddr) -> c_int {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

/// `socket(domain, ty | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)`.
pub(crate) fn socket(domain: c_int, ty: c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; bad arguments are rejected by the kernel.
    let fd =
        cvt(unsafe { libc::socket(domain, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt` with an `int` value.
pub(crate) fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: c_int,
) -> io::Result<()> {
    let len = mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `fd` is open (borrowed); the kernel reads `len` bytes from `&value`,
    // which is exactly one c_int.
    cvt(unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&raw const value).cast(), len) })?;
    Ok(())
}

/// `getsockopt` with an `int` value.
pub(crate) fn getsockopt_int(fd: BorrowedFd<'_>, level: c_int, name: c_int) -> io::Result<c_int> {
    let mut value: c_int = 0;
    let mut len = mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `fd` is open (borrowed); the kernel writes at most `len` bytes (one
    // c_int) to `&value` and updates `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// `bind(fd, addr)`.
pub(crate) fn bind(fd: BorrowedFd<'_>, addr: &SocketAddr) -> io::Result<()> {
    let raw = RawAddr::new(addr);
    // SAFETY: `fd` is open (borrowed); `raw` is a valid sockaddr of `raw.len()` bytes
    // that the kernel only reads.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), raw.as_ptr(), raw.len()) })?;
    Ok(())
}

/// `listen(fd, backlog)`.
pub(crate) fn listen(fd: BorrowedFd<'_>, backlog: c_int) -> io::Result<()> {
    // SAFETY: `fd` is open (borrowed); listen takes no pointers.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

/// `connect(fd, addr)`; on a non-blocking socket usually `EINPROGRESS`.
pub(crate) fn connect(fd: BorrowedFd<'_>, addr: &SocketAddr) -> io::Result<()> {
    let raw = RawAddr::new(addr);
    // SAFETY: `fd` is open (borrowed); `raw` is a valid sockaddr of `raw.len()` bytes
    // that the kernel only reads.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), raw.as_ptr(), raw.len()) })?;
    Ok(())
}

/// `accept4(fd, .., SOCK_NONBLOCK | SOCK_CLOEXEC)`: the new socket and its peer.
pub(crate) fn accept4(fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, SocketAddr)> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `fd` is open (borrowed); the kernel writes at most `len` bytes into
    // `storage`, which has that many, and updates `len`.
    let new = cvt(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            storage.as_mut_ptr().cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: the kernel just returned `new` as a new descriptor that nothing else owns.
    let new = unsafe { OwnedFd::from_raw_fd(new) };
    // SAFETY: zeroed is a valid sockaddr_storage, and the kernel wrote the peer over it.
    let storage = unsafe { storage.assume_init() };
    Ok((new, from_storage(&storage)?))
}

/// `getsockname(fd)`.
pub(crate) fn getsockname(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `fd` is open (borrowed); the kernel writes at most `len` bytes into
    // `storage`, which has that many.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), storage.as_mut_ptr().cast(), &mut len) })?;
    // SAFETY: zeroed is a valid sockaddr_storage, and the kernel wrote over it.
    from_storage(&unsafe { storage.assume_init() })
}

/// `getpeername(fd)`; `ENOTCONN` while a connect is still in progress.
pub(crate) fn getpeername(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `fd` is open (borrowed); the kernel writes at most `len` bytes into
    // `storage`, which has that many.
    cvt(unsafe { libc::getpeername(fd.as_raw_fd(), storage.as_mut_ptr().cast(), &mut len) })?;
    // SAFETY: zeroed is a valid sockaddr_storage, and the kernel wrote over it.
    from_storage(&unsafe { storage.assume_init() })
}

/// `recv(fd, buf, flags)`.
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8], flags: c_int) -> io::Result<usize> {
    // SAFETY: `fd` is open (borrowed); the kernel writes at most `buf.len()` bytes
    // into `buf`, which is a valid, exclusively borrowed slice.
    cvt_size(unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) })
}

/// `send(fd, buf, MSG_NOSIGNAL)`: a closed peer gives `EPIPE`, never `SIGPIPE`.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `fd` is open (borrowed); the kernel reads at most `buf.len()` bytes
    // from `buf`, a valid slice.
    cvt_size(unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    })
}

/// `shutdown(fd, how)`.
pub(crate) fn shutdown(fd: BorrowedFd<'_>, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Read => libc::SHUT_RD,
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: `fd` is open (borrowed); shutdown takes no pointers.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), how) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn addresses_round_trip_through_the_kernel() -> io::Result<()> {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let addr: SocketAddr = addr.parse().expect("literal address");
            let fd = socket(domain_of(&addr), libc::SOCK_STREAM)?;
            bind(fd.as_fd(), &addr)?;
            let bound = getsockname(fd.as_fd())?;
            assert_eq!(bound.ip(), addr.ip(), "bound to {bound}");
            assert_ne!(bound.port(), 0, "kernel did not pick a port: {bound}");
        }
        Ok(())
    }

    #[test]
    fn new_sockets_are_nonblocking_and_cloexec() -> io::Result<()> {
        let fd = socket(libc::AF_INET, libc::SOCK_STREAM)?;
        // SAFETY: fcntl F_GETFL/F_GETFD on an open fd takes no pointers.
        let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        // SAFETY: as above.
        let fdfl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert_ne!(fl & libc::O_NONBLOCK, 0, "flags {fl:#x}");
        assert_ne!(fdfl & libc::FD_CLOEXEC, 0, "fd flags {fdfl:#x}");
        Ok(())
    }
}
