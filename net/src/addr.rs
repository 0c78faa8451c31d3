//! [`ToSocketAddrs`]: what `bind` and `connect` accept.
//!
//! Like tokio's trait of the same name: socket addresses, `(ip, port)` pairs, and
//! `"host:port"` strings. Literal addresses are parsed without any syscall. Host
//! names go to the system resolver (`getaddrinfo`), which blocks the thread while it
//! runs; prefer literal addresses on a busy loop.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Types that name one or more socket addresses: [`SocketAddr`] (and the V4/V6
/// forms), `(IpAddr, u16)`, `(&str, u16)`, `"host:port"` as `&str` or `String`, and
/// slices of `SocketAddr`.
///
/// This trait is sealed: it cannot be implemented outside this crate.
pub trait ToSocketAddrs: sealed::Resolve {}

pub(crate) mod sealed {
    use std::io;
    use std::net::SocketAddr;

    /// The hidden method behind [`ToSocketAddrs`](super::ToSocketAddrs).
    pub trait Resolve {
        /// Every address this value names, in order of preference.
        fn resolve(&self) -> io::Result<Vec<SocketAddr>>;
    }
}

use sealed::Resolve;

macro_rules! direct {
    ($($t:ty),*) => {$(
        impl ToSocketAddrs for $t {}
        impl Resolve for $t {
            fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
                Ok(vec![SocketAddr::from(*self)])
            }
        }
    )*};
}

direct!(
    SocketAddr,
    SocketAddrV4,
    SocketAddrV6,
    (IpAddr, u16),
    (Ipv4Addr, u16),
    (Ipv6Addr, u16)
);

impl ToSocketAddrs for [SocketAddr] {}
impl Resolve for [SocketAddr] {
    fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(self.to_vec())
    }
}

impl ToSocketAddrs for str {}
impl Resolve for str {
    fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return Ok(vec![addr]);
        }
        let invalid = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "invalid socket address `{self}`; expected `HOST:PORT`, e.g. `127.0.0.1:8080`"
                ),
            )
        };
        let (host, port) = self.rsplit_once(':').ok_or_else(invalid)?;
        let port: u16 = port.parse().map_err(|_| invalid())?;
        resolve_host(self, host, port)
    }
}

impl ToSocketAddrs for String {}
impl Resolve for String {
    fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        self.as_str().resolve()
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl Resolve for (&str, u16) {
    fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let (host, port) = *self;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        resolve_host(host, host, port)
    }
}

impl ToSocketAddrs for (String, u16) {}
impl Resolve for (String, u16) {
    fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        (self.0.as_str(), self.1).resolve()
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: Resolve + ?Sized> Resolve for &T {
    fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        (**self).resolve()
    }
}

/// Looks `host` up with the system resolver; errors name `text`, what the user wrote.
fn resolve_host(text: &str, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if host.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid socket address `{text}`: the host is empty"),
        ));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match std::net::ToSocketAddrs::to_socket_addrs(&(host, port)) {
        Ok(addrs) => Ok(addrs.collect()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("could not resolve `{text}`: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolves as `bind` and `connect` do: through a generic `impl ToSocketAddrs`.
    fn via<A: ToSocketAddrs>(addr: A) -> io::Result<Vec<SocketAddr>> {
        addr.resolve()
    }

    #[test]
    #[expect(
        clippy::needless_borrows_for_generic_args,
        reason = "the borrows test the `&T` impl, which users reach by passing a reference"
    )]
    fn literals_parse_without_lookup() -> io::Result<()> {
        let v4: SocketAddr = "127.0.0.1:80".parse().expect("literal");
        let v6: SocketAddr = "[::1]:80".parse().expect("literal");
        assert_eq!("127.0.0.1:80".resolve()?, vec![v4]);
        assert_eq!(String::from("[::1]:80").resolve()?, vec![v6]);
        assert_eq!(("127.0.0.1", 80).resolve()?, vec![v4]);
        assert_eq!(("::1", 80).resolve()?, vec![v6]);
        assert_eq!((Ipv4Addr::LOCALHOST, 80).resolve()?, vec![v4]);
        assert_eq!(via(&v4)?, vec![v4]);
        assert_eq!(via("127.0.0.1:80")?, vec![v4]);
        assert_eq!(via(&String::from("[::1]:80"))?, vec![v6]);
        assert_eq!([v4, v6][..].resolve()?, vec![v4, v6]);
        Ok(())
    }

    #[test]
    fn unparsable_text_is_invalid_input_naming_it() {
        for text in [
            "nonsense",
            "127.0.0.1",
            "127.0.0.1:99999",
            ":80",
            "host:port",
        ] {
            let err = text.resolve().expect_err(text);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{text}: {err}");
            assert!(err.to_string().contains(text), "{text}: message {err}");
        }
    }

    #[test]
    fn localhost_resolves_to_loopback() -> io::Result<()> {
        let addrs = "localhost:7".resolve()?;
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 7),
            "{addrs:?}"
        );
        Ok(())
    }
}
