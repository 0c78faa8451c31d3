//! [`UdpSocket`] (to be written).

/// A UDP socket (to be written).
#[derive(Debug)]
pub struct UdpSocket {
    _private: (),
}
