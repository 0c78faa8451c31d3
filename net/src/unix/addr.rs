//! [`SocketAddr`]: the address of a Unix-domain socket, in one of Linux's three
//! forms (unix(7)):
//!
//! - a **pathname**, a file in the filesystem (`/run/app.sock`);
//! - an **abstract** name, which lives in the kernel only and vanishes with the
//!   last socket bound to it; in `sun_path` it starts with a NUL byte, and this
//!   crate shows it as `@name`, like `ss` and `netstat` do;
//! - **unnamed**, for sockets that were never bound: a client of a stream
//!   listener, either end of a `socketpair`, an unbound datagram socket.
//!
//! The functions that take a path (`bind`, `connect`, `send_to`) read a path whose
//! first byte is NUL (`"\0name"`) as the abstract name after that byte, the same
//! bytes std's `SocketAddr::from_abstract_name` takes. Parsing and checking those
//! paths is here; the C layout (`sockaddr_un`) is in `sys::unix`.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::sys::unix::SUN_PATH_LEN;

/// The address of a Unix-domain socket: a pathname, an abstract name or unnamed.
///
/// `Display` shows a pathname as the path, an abstract name as `@name` (bytes that
/// are not printable ASCII escaped as `\xNN`), and an unnamed address as
/// `(unnamed)`.
///
/// # Examples
///
/// ```
/// use edgeloop_net::unix::SocketAddr;
/// use std::path::Path;
///
/// let file = SocketAddr::from_pathname("/run/app.sock")?;
/// assert_eq!(file.as_pathname(), Some(Path::new("/run/app.sock")));
/// assert_eq!(file.to_string(), "/run/app.sock");
///
/// let named = SocketAddr::from_abstract_name(b"app")?;
/// assert_eq!(named.as_abstract_name(), Some(&b"app"[..]));
/// assert_eq!(named.to_string(), "@app");
/// assert!(!named.is_unnamed());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SocketAddr {
    /// Which of the three forms, with its bytes.
    kind: Kind,
}

/// The three forms of a Unix-domain address.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Kind {
    /// Never bound (or bound to nothing).
    Unnamed,
    /// A file; never empty, holds no NUL byte, shorter than `SUN_PATH_LEN`.
    Pathname(PathBuf),
    /// The name after the leading NUL; at most `SUN_PATH_LEN - 1` bytes, may be
    /// empty and may hold NUL bytes.
    Abstract(Box<[u8]>),
}

impl SocketAddr {
    /// The address of a socket file at `path`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `path` is empty, holds a NUL byte, or has
    /// `SUN_PATH_LEN` (108) bytes or more.
    pub fn from_pathname(path: impl AsRef<Path>) -> io::Result<SocketAddr> {
        let path = path.as_ref();
        let bytes = path.as_os_str().as_bytes();
        if bytes.is_empty() {
            return Err(invalid(
                "empty socket path; give a file path, or `\\0name` for an abstract address"
                    .to_owned(),
            ));
        }
        if bytes.contains(&0) {
            return Err(invalid(format!(
                "socket path {path:?} holds a NUL byte; only an abstract address may, and \
                 only as its first byte"
            )));
        }
        if bytes.len() >= SUN_PATH_LEN {
            return Err(invalid(format!(
                "socket path {path:?} is {} bytes long; Unix socket paths must be shorter \
                 than {SUN_PATH_LEN} bytes (use a shorter directory, or a relative path)",
                bytes.len()
            )));
        }
        Ok(SocketAddr {
            kind: Kind::Pathname(path.to_owned()),
        })
    }

    /// The abstract address `name` (Linux only): no file is created, and the name is
    /// freed when the last socket bound to it closes. `name` is given without the
    /// leading NUL byte; it may be empty.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `name` has more than `SUN_PATH_LEN - 1` (107) bytes.
    pub fn from_abstract_name(name: impl AsRef<[u8]>) -> io::Result<SocketAddr> {
        let name = name.as_ref();
        if name.len() >= SUN_PATH_LEN {
            return Err(invalid(format!(
                "abstract socket name is {} bytes long; it must be at most {} bytes",
                name.len(),
                SUN_PATH_LEN - 1
            )));
        }
        Ok(SocketAddr {
            kind: Kind::Abstract(name.into()),
        })
    }

    /// Reads a path given to `bind`, `connect` or `send_to`: a leading NUL byte makes
    /// the rest an abstract name, anything else is a pathname.
    pub(crate) fn from_path(path: &Path) -> io::Result<SocketAddr> {
        match path.as_os_str().as_bytes() {
            [0, name @ ..] => Self::from_abstract_name(name),
            _ => Self::from_pathname(path),
        }
    }

    /// The unnamed address.
    pub(crate) fn unnamed() -> SocketAddr {
        SocketAddr {
            kind: Kind::Unnamed,
        }
    }

    /// A pathname the kernel reported; trusted to be well formed.
    pub(crate) fn from_kernel_pathname(bytes: &[u8]) -> SocketAddr {
        SocketAddr {
            kind: Kind::Pathname(PathBuf::from(OsStr::from_bytes(bytes))),
        }
    }

    /// An abstract name the kernel reported; trusted to be well formed.
    pub(crate) fn from_kernel_abstract_name(name: &[u8]) -> SocketAddr {
        SocketAddr {
            kind: Kind::Abstract(name.into()),
        }
    }

    /// Whether this is the address of a socket that was never bound.
    pub fn is_unnamed(&self) -> bool {
        matches!(self.kind, Kind::Unnamed)
    }

    /// The socket file's path, if this is a pathname address. The path is the one
    /// given to `bind`, so it is relative if that one was.
    pub fn as_pathname(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Pathname(path) => Some(path),
            _ => None,
        }
    }

    /// The name (without the leading NUL byte), if this is an abstract address.
    pub fn as_abstract_name(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Abstract(name) => Some(name),
            _ => None,
        }
    }
}

/// An `InvalidInput` error with `message`.
fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Gives `bind`'s `AddrInUse` a message that names the address and says what to do;
/// every other error passes through untouched. The kind stays `AddrInUse`, but
/// `raw_os_error()` is `None` for this one error: the issue asked for the path in
/// the message, and `EADDRINUSE` is all the errno would have said.
pub(crate) fn explain_bind_error(error: io::Error, addr: &SocketAddr) -> io::Error {
    if error.kind() != io::ErrorKind::AddrInUse {
        return error;
    }
    let message = match &addr.kind {
        Kind::Pathname(path) => format!(
            "cannot bind to {}: the path exists (a socket file left behind by an earlier \
             server, or another file); edgeloop never removes it: if nothing listens \
             there, remove the file and bind again, or choose another path",
            path.display()
        ),
        _ => format!("cannot bind to {addr}: another socket is bound to that abstract name"),
    };
    io::Error::new(io::ErrorKind::AddrInUse, message)
}

impl fmt::Display for SocketAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Unnamed => f.write_str("(unnamed)"),
            Kind::Pathname(path) => write!(f, "{}", path.display()),
            Kind::Abstract(name) => write!(f, "@{}", name.escape_ascii()),
        }
    }
}

impl fmt::Debug for SocketAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Unnamed => f.write_str("(unnamed)"),
            Kind::Pathname(path) => write!(f, "{path:?} (pathname)"),
            Kind::Abstract(name) => write!(f, "\"@{}\" (abstract)", name.escape_ascii()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_paths_with_a_leading_nul_are_abstract_names() -> io::Result<()> {
        let addr = SocketAddr::from_path(Path::new("\0svc"))?;
        assert_eq!(addr.as_abstract_name(), Some(&b"svc"[..]), "{addr:?}");
        assert_eq!(addr.as_pathname(), None, "{addr:?}");
        let empty = SocketAddr::from_path(Path::new("\0"))?;
        assert_eq!(empty.as_abstract_name(), Some(&b""[..]), "{empty:?}");
        let file = SocketAddr::from_path(Path::new("run/x.sock"))?;
        assert_eq!(
            file.as_pathname(),
            Some(Path::new("run/x.sock")),
            "{file:?}"
        );
        Ok(())
    }

    #[test]
    fn unix_path_limits_are_checked_at_the_boundary() {
        let longest = "a".repeat(SUN_PATH_LEN - 1);
        assert!(SocketAddr::from_pathname(&longest).is_ok(), "107-byte path");
        let too_long = "a".repeat(SUN_PATH_LEN);
        let error = SocketAddr::from_pathname(&too_long).expect_err("108-byte path accepted");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        assert!(error.to_string().contains("108 bytes"), "{error}");

        let name = vec![b'n'; SUN_PATH_LEN - 1];
        assert!(
            SocketAddr::from_abstract_name(&name).is_ok(),
            "107-byte name"
        );
        let name = vec![b'n'; SUN_PATH_LEN];
        let error = SocketAddr::from_abstract_name(&name).expect_err("108-byte name accepted");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
    }

    #[test]
    fn unix_empty_and_nul_holding_pathnames_are_rejected() {
        for bad in ["", "a\0b", "a\0"] {
            let error = SocketAddr::from_pathname(bad).expect_err(bad);
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidInput,
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn unix_addresses_display_as_path_at_name_or_unnamed() -> io::Result<()> {
        let file = SocketAddr::from_pathname("/tmp/a b.sock")?;
        assert_eq!(file.to_string(), "/tmp/a b.sock");
        assert_eq!(format!("{file:?}"), "\"/tmp/a b.sock\" (pathname)");
        let named = SocketAddr::from_abstract_name(b"svc\0\x01")?;
        assert_eq!(named.to_string(), "@svc\\x00\\x01");
        assert_eq!(format!("{named:?}"), "\"@svc\\x00\\x01\" (abstract)");
        let unnamed = SocketAddr::unnamed();
        assert!(unnamed.is_unnamed());
        assert_eq!(unnamed.to_string(), "(unnamed)");
        assert_eq!(format!("{unnamed:?}"), "(unnamed)");
        Ok(())
    }

    #[test]
    fn unix_bind_in_use_error_names_the_path_and_keeps_its_kind() -> io::Result<()> {
        let addr = SocketAddr::from_pathname("/tmp/taken.sock")?;
        let error = explain_bind_error(io::Error::from_raw_os_error(libc::EADDRINUSE), &addr);
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
        assert!(error.to_string().contains("/tmp/taken.sock"), "{error}");
        let other = explain_bind_error(io::Error::from_raw_os_error(libc::EACCES), &addr);
        assert_eq!(other.raw_os_error(), Some(libc::EACCES), "{other}");
        Ok(())
    }
}
