//! TCP: [`TcpListener`], [`TcpStream`] and the halves of a split stream.

mod listener;
mod socket;
mod split;
mod stream;

pub use listener::{Incoming, TcpListener};
pub use socket::TcpSocket;
pub use split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};
pub use stream::TcpStream;
