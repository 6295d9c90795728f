use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};

use crate::connection::Connection;

/// One half of a connection: the read half shuts reading down when
/// dropped, the write half writing.
pub struct RefinedTcpStream {
    stream: Connection,
    close_read: bool,
    close_write: bool,
}

impl RefinedTcpStream {
    /// Splits a connection in two halves; gives it back if its
    /// descriptor cannot be duplicated (out of descriptors).
    pub(crate) fn new(
        stream: Connection,
    ) -> Result<(RefinedTcpStream, RefinedTcpStream), Connection> {
        let read = match stream.try_clone() {
            Ok(r) => r,
            Err(_) => return Err(stream),
        };

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
        };

        let write = RefinedTcpStream {
            stream,
            close_read: false,
            close_write: true,
        };

        Ok((read, write))
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    /// Sends FIN now (the read side stays open).
    pub(crate) fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).ok();
    }

    /// Changes the socket's read timeout (shared by both halves).
    pub(crate) fn set_read_timeout(&self, t: Option<std::time::Duration>) {
        self.stream.set_read_timeout(t).ok();
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.stream.read(buf)
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}
