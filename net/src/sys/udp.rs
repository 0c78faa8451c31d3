//! Datagram calls for [`UdpSocket`](crate::UdpSocket): `recvfrom`, `sendto`, and the
//! multicast-membership `setsockopt`s whose values are structs, not `int`s.
//!
//! Everything else a UDP socket needs (`socket`, `bind`, `connect`, `send`, `recv`,
//! `getsockname`, `getpeername`, `int` options) is shared with TCP in `sys/mod.rs`.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::raw::c_int;

use super::{RawAddr, cvt, cvt_size, from_storage};

/// `recvfrom(fd, buf, flags)`: one datagram and its sender. A datagram longer than
/// `buf` is cut to `buf.len()` bytes; without `MSG_PEEK` the rest is discarded.
pub(crate) fn recvfrom(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: c_int,
) -> io::Result<(usize, SocketAddr)> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `fd` is open (borrowed); the kernel writes at most `buf.len()` bytes
    // into `buf`, an exclusively borrowed slice, and at most `len` bytes into
    // `storage`, which has that many, then updates `len`.
    let n = cvt_size(unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            storage.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    // SAFETY: zeroed is a valid sockaddr_storage, and the kernel wrote the sender
    // over it.
    let storage = unsafe { storage.assume_init() };
    Ok((n, from_storage(&storage)?))
}

/// `sendto(fd, buf, MSG_NOSIGNAL, addr)`: one datagram of exactly `buf` to `addr`.
pub(crate) fn sendto(fd: BorrowedFd<'_>, buf: &[u8], addr: &SocketAddr) -> io::Result<usize> {
    let raw = RawAddr::new(addr);
    // SAFETY: `fd` is open (borrowed); the kernel reads at most `buf.len()` bytes from
    // `buf`, a valid slice, and `raw.len()` bytes from `raw`, a valid sockaddr.
    cvt_size(unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
            raw.as_ptr(),
            raw.len(),
        )
    })
}

/// `setsockopt(fd, IPPROTO_IP, name, ip_mreq)`, for `IP_ADD_MEMBERSHIP` and
/// `IP_DROP_MEMBERSHIP`.
pub(crate) fn setsockopt_ip_mreq(
    fd: BorrowedFd<'_>,
    name: c_int,
    multiaddr: Ipv4Addr,
    interface: Ipv4Addr,
) -> io::Result<()> {
    let mreq = libc::ip_mreq {
        imr_multiaddr: libc::in_addr {
            s_addr: u32::from_ne_bytes(multiaddr.octets()),
        },
        imr_interface: libc::in_addr {
            s_addr: u32::from_ne_bytes(interface.octets()),
        },
    };
    let len = mem::size_of::<libc::ip_mreq>() as libc::socklen_t;
    // SAFETY: `fd` is open (borrowed); the kernel reads `len` bytes from `&mreq`,
    // which is exactly one ip_mreq.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            name,
            (&raw const mreq).cast(),
            len,
        )
    })?;
    Ok(())
}

/// `setsockopt(fd, IPPROTO_IPV6, name, ipv6_mreq)`, for `IPV6_ADD_MEMBERSHIP` and
/// `IPV6_DROP_MEMBERSHIP`.
pub(crate) fn setsockopt_ipv6_mreq(
    fd: BorrowedFd<'_>,
    name: c_int,
    multiaddr: &Ipv6Addr,
    interface: u32,
) -> io::Result<()> {
    let mreq = libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: multiaddr.octets(),
        },
        ipv6mr_interface: interface,
    };
    let len = mem::size_of::<libc::ipv6_mreq>() as libc::socklen_t;
    // SAFETY: `fd` is open (borrowed); the kernel reads `len` bytes from `&mreq`,
    // which is exactly one ipv6_mreq.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            name,
            (&raw const mreq).cast(),
            len,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{bind, domain_of, getsockname, socket};
    use std::os::fd::AsFd;

    #[test]
    fn sendto_and_recvfrom_carry_one_datagram_and_its_sender() -> io::Result<()> {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let local: SocketAddr = local.parse().expect("literal address");
            let a = socket(domain_of(&local), libc::SOCK_DGRAM)?;
            let b = socket(domain_of(&local), libc::SOCK_DGRAM)?;
            bind(a.as_fd(), &local)?;
            bind(b.as_fd(), &local)?;
            let (a_addr, b_addr) = (getsockname(a.as_fd())?, getsockname(b.as_fd())?);
            assert_eq!(sendto(a.as_fd(), b"datagram", &b_addr)?, 8);
            // Loopback delivers within sendto, so the datagram is already queued.
            let mut buf = [0u8; 4];
            let (n, from) = recvfrom(b.as_fd(), &mut buf, libc::MSG_PEEK)?;
            assert_eq!((n, &buf, from), (4, b"data", a_addr), "peek on {local}");
            let (n, from) = recvfrom(b.as_fd(), &mut buf, 0)?;
            assert_eq!((n, &buf, from), (4, b"data", a_addr), "recv on {local}");
            // The cut-off tail was discarded with the datagram.
            let err = recvfrom(b.as_fd(), &mut buf, 0).expect_err("queue should be empty");
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err:?}");
        }
        Ok(())
    }

    #[test]
    fn membership_structs_reach_the_kernel() -> io::Result<()> {
        let fd = socket(libc::AF_INET, libc::SOCK_DGRAM)?;
        // Dropping a group never joined: the kernel read the struct and looked it up.
        let err = setsockopt_ip_mreq(
            fd.as_fd(),
            libc::IP_DROP_MEMBERSHIP,
            Ipv4Addr::new(239, 255, 0, 1),
            Ipv4Addr::LOCALHOST,
        )
        .expect_err("not a member");
        assert_eq!(err.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{err:?}");
        // A unicast "group" is refused outright.
        let err = setsockopt_ip_mreq(
            fd.as_fd(),
            libc::IP_ADD_MEMBERSHIP,
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::UNSPECIFIED,
        )
        .expect_err("not a multicast address");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err:?}");

        let fd = socket(libc::AF_INET6, libc::SOCK_DGRAM)?;
        let err = setsockopt_ipv6_mreq(
            fd.as_fd(),
            libc::IPV6_ADD_MEMBERSHIP,
            &Ipv6Addr::LOCALHOST,
            0,
        )
        .expect_err("not a multicast address");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err:?}");
        Ok(())
    }
}
