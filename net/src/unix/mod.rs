//! Unix-domain sockets (to be written).

/// A Unix-domain listener (to be written).
#[derive(Debug)]
pub struct UnixListener {
    _private: (),
}

/// A Unix-domain stream (to be written).
#[derive(Debug)]
pub struct UnixStream {
    _private: (),
}

/// A Unix-domain datagram socket (to be written).
#[derive(Debug)]
pub struct UnixDatagram {
    _private: (),
}
