//! [`TcpSocket`] (to be written).

/// A TCP socket builder (to be written).
#[derive(Debug)]
pub struct TcpSocket {
    _private: (),
}
