//! Datagram calls for `UdpSocket` (to be written).
