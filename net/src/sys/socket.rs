//! Socket options and calls for the `TcpSocket` builder (to be written).
