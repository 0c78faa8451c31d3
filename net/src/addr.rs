//! [`ToSocketAddrs`]: what `bind` and `connect` accept, and [`lookup_host`].
//!
//! Like tokio's trait of the same name: socket addresses, `(ip, port)` pairs, and
//! `"host:port"` strings. Literal addresses are parsed inline, without a syscall or
//! a thread hop. Host names go to the system resolver (`getaddrinfo`), which blocks,
//! so they are resolved on the runtime's blocking pool
//! ([`spawn_blocking`](edgeloop_runtime::spawn_blocking)) while the loop keeps
//! running other tasks.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::RwLock;

/// Types that name one or more socket addresses: [`SocketAddr`] (and the V4/V6
/// forms), `(IpAddr, u16)`, `(&str, u16)`, `"host:port"` as `&str` or `String`, and
/// slices of `SocketAddr`.
///
/// This trait is sealed: it cannot be implemented outside this crate.
pub trait ToSocketAddrs: sealed::Resolve {}

pub(crate) mod sealed {
    use std::io;
    use std::net::SocketAddr;

    /// What a [`ToSocketAddrs`](super::ToSocketAddrs) value names.
    #[derive(Debug)]
    pub enum Target {
        /// Addresses known without a lookup.
        Addrs(Vec<SocketAddr>),
        /// A host name to look up.
        Lookup {
            /// What the user wrote, for error messages.
            text: String,
            /// The host name, without brackets.
            host: String,
            /// The port.
            port: u16,
        },
    }

    /// The hidden method behind [`ToSocketAddrs`](super::ToSocketAddrs).
    pub trait Resolve {
        /// The addresses, or the name to look up.
        fn target(&self) -> io::Result<Target>;
    }
}

use sealed::{Resolve, Target};

/// Every address `addr` names, in order of preference: at once for literals, from a
/// blocking-pool thread for host names.
pub(crate) async fn resolve<A: ToSocketAddrs + ?Sized>(addr: &A) -> io::Result<Vec<SocketAddr>> {
    match addr.target()? {
        Target::Addrs(addrs) => Ok(addrs),
        Target::Lookup { text, host, port } => {
            edgeloop_runtime::spawn_blocking(move || lookup_blocking(&text, &host, port)).await?
        }
    }
}

/// Looks up `host` with the DNS (the system resolver: `/etc/hosts`, then DNS, as
/// configured in `/etc/nsswitch.conf`), on the blocking pool, without blocking the
/// loop. Accepts what `connect` accepts: `"host:port"`, `(host, port)`, or
/// addresses (returned as they are).
///
/// # Errors
///
/// `InvalidInput` for text that is not `HOST:PORT`; the resolver's error, with a
/// message naming the host, for a name that does not resolve.
///
/// # Examples
///
/// ```
/// edgeloop_runtime::block_on(async {
///     let addrs: Vec<_> = edgeloop_net::lookup_host("localhost:8080").await?.collect();
///     assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 8080));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn lookup_host<A: ToSocketAddrs>(
    host: A,
) -> io::Result<impl Iterator<Item = SocketAddr>> {
    Ok(resolve(&host).await?.into_iter())
}

/// A stand-in for `getaddrinfo`, set by tests.
#[doc(hidden)]
pub type Resolver = fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

static TEST_RESOLVER: RwLock<Option<Resolver>> = RwLock::new(None);

/// Test hooks; not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    /// Makes host-name lookups in this process call `resolver` instead of the
    /// system resolver (`None` restores it). For tests of slow or failing lookups.
    pub fn set_resolver(resolver: Option<Resolver>) {
        *TEST_RESOLVER
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = resolver;
    }
}

/// The blocking lookup; errors name `text`, what the user wrote.
fn lookup_blocking(text: &str, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let hook = *TEST_RESOLVER
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let found = match hook {
        Some(resolver) => resolver(host, port),
        None => std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).map(Iterator::collect),
    };
    found.map_err(|e| io::Error::new(e.kind(), format!("could not resolve `{text}`: {e}")))
}

macro_rules! direct {
    ($($t:ty),*) => {$(
        impl ToSocketAddrs for $t {}
        impl Resolve for $t {
            fn target(&self) -> io::Result<Target> {
                Ok(Target::Addrs(vec![SocketAddr::from(*self)]))
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
    fn target(&self) -> io::Result<Target> {
        Ok(Target::Addrs(self.to_vec()))
    }
}

impl ToSocketAddrs for str {}
impl Resolve for str {
    fn target(&self) -> io::Result<Target> {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return Ok(Target::Addrs(vec![addr]));
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
        lookup_target(self, host, port)
    }
}

impl ToSocketAddrs for String {}
impl Resolve for String {
    fn target(&self) -> io::Result<Target> {
        self.as_str().target()
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl Resolve for (&str, u16) {
    fn target(&self) -> io::Result<Target> {
        let (host, port) = *self;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Target::Addrs(vec![SocketAddr::new(ip, port)]));
        }
        lookup_target(host, host, port)
    }
}

impl ToSocketAddrs for (String, u16) {}
impl Resolve for (String, u16) {
    fn target(&self) -> io::Result<Target> {
        (self.0.as_str(), self.1).target()
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: Resolve + ?Sized> Resolve for &T {
    fn target(&self) -> io::Result<Target> {
        (**self).target()
    }
}

/// A name to look up; errors name `text`, what the user wrote.
fn lookup_target(text: &str, host: &str, port: u16) -> io::Result<Target> {
    if host.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid socket address `{text}`: the host is empty"),
        ));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(Target::Lookup {
        text: text.to_owned(),
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `bind` and `connect` see: through a generic `impl ToSocketAddrs`,
    /// literals only (no runtime needed).
    fn literal<A: ToSocketAddrs>(addr: A) -> io::Result<Vec<SocketAddr>> {
        match addr.target()? {
            Target::Addrs(addrs) => Ok(addrs),
            Target::Lookup { text, .. } => panic!("`{text}` should not need a lookup"),
        }
    }

    #[test]
    #[expect(
        clippy::needless_borrows_for_generic_args,
        reason = "the borrows test the `&T` impl, which users reach by passing a reference"
    )]
    fn literals_parse_without_lookup() -> io::Result<()> {
        let v4: SocketAddr = "127.0.0.1:80".parse().expect("literal");
        let v6: SocketAddr = "[::1]:80".parse().expect("literal");
        assert_eq!(literal("127.0.0.1:80")?, vec![v4]);
        assert_eq!(literal(String::from("[::1]:80"))?, vec![v6]);
        assert_eq!(literal(("127.0.0.1", 80))?, vec![v4]);
        assert_eq!(literal(("::1", 80))?, vec![v6]);
        assert_eq!(literal((Ipv4Addr::LOCALHOST, 80))?, vec![v4]);
        assert_eq!(literal(&v4)?, vec![v4]);
        assert_eq!(literal(&String::from("[::1]:80"))?, vec![v6]);
        assert_eq!(literal(&[v4, v6][..])?, vec![v4, v6]);
        Ok(())
    }

    #[test]
    fn names_become_lookups_with_brackets_stripped() -> io::Result<()> {
        match "localhost:7".target()? {
            Target::Lookup { text, host, port } => {
                assert_eq!(
                    (text.as_str(), host.as_str(), port),
                    ("localhost:7", "localhost", 7)
                );
            }
            other => panic!("expected a lookup, got {other:?}"),
        }
        match ("[example]", 9).target()? {
            Target::Lookup { host, .. } => assert_eq!(host, "example"),
            other => panic!("expected a lookup, got {other:?}"),
        }
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
            let err = text.target().expect_err(text);
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{text}: {err}");
            assert!(err.to_string().contains(text), "{text}: message {err}");
        }
    }

    #[test]
    fn localhost_resolves_to_loopback_on_the_pool() -> io::Result<()> {
        let addrs = edgeloop_runtime::block_on(resolve("localhost:7"))?;
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 7),
            "{addrs:?}"
        );
        Ok(())
    }
}
