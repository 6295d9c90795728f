//! Request body readers and the chunked response writer (replacing
//! upstream's `EqualReader`, `FusedReader` and the `chunked_transfer`
//! crate in this copy). Both readers stop exactly at the end of their
//! body and bound every line they parse. A body dropped before its end
//! is never drained on the thread that drops it (an application worker):
//! what is left is recorded in the connection's [`Shared`] state, and the
//! connection's own thread discards it (up to a bound) before reading the
//! next request, or closes the connection.

use std::io::{self, Read, Write};
use std::sync::Arc;

use super::Shared;

/// Longest chunk-size line (with extensions), in bytes.
const MAX_CHUNK_LINE: usize = 1024;
/// Most bytes of trailer fields after the last chunk.
const MAX_TRAILERS: usize = 8 * 1024;

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("chunked body: {what}"))
}

/// The unread rest of a body, left for the connection thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// This many bytes of a body of known length.
    Length(u64),
    /// The rest of a chunked body, from this decoder state.
    Chunked(State),
}

/// Reads and discards everything `r` yields, up to `limit` bytes. True if
/// it ended (returned 0) within the limit.
pub fn drain(r: &mut impl Read, limit: usize) -> bool {
    let mut buf = [0u8; 8 * 1024];
    let mut total = 0usize;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                total += n;
                if total > limit {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// A body of known length.
pub struct LengthBody<R: Read> {
    inner: R,
    left: u64,
    shared: Arc<Shared>,
    drain_limit: usize,
}

impl<R: Read> LengthBody<R> {
    pub fn new(inner: R, len: u64, shared: Arc<Shared>, drain_limit: usize) -> LengthBody<R> {
        LengthBody {
            inner,
            left: len,
            shared,
            drain_limit,
        }
    }
}

impl<R: Read> Read for LengthBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            // The client went away inside its body.
            self.shared.close();
        }
        self.left -= n as u64;
        Ok(n)
    }
}

impl<R: Read> Drop for LengthBody<R> {
    fn drop(&mut self) {
        if self.left == 0 || self.shared.is_closing() {
            return;
        }
        if self.left > self.drain_limit as u64 {
            self.shared.close();
        } else {
            self.shared.leave(Leftover::Length(self.left));
        }
    }
}

/// Where a chunked decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk with this many bytes left.
    Data(u64),
    /// Done (last chunk and trailers read).
    Done,
    /// A framing error was seen; nothing more is read.
    Broken,
}

/// A chunked body (RFC 9112 §7.1), decoded.
pub struct ChunkedBody<R: Read> {
    inner: R,
    state: State,
    shared: Arc<Shared>,
}

impl<R: Read> ChunkedBody<R> {
    pub fn new(inner: R, shared: Arc<Shared>) -> ChunkedBody<R> {
        ChunkedBody::resume(inner, State::Size, shared)
    }

    /// Continues decoding a body another reader started.
    pub fn resume(inner: R, state: State, shared: Arc<Shared>) -> ChunkedBody<R> {
        ChunkedBody {
            inner,
            state,
            shared,
        }
    }

    /// True once the last chunk and the trailers were read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Stops recording a leftover when dropped (the connection thread's
    /// own drain uses this).
    pub fn forget_on_drop(&mut self) {
        self.state = State::Broken;
    }

    fn byte(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Err(invalid("connection closed inside the body")),
                Ok(_) => return Ok(b[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// One CRLF-terminated line of at most `max` bytes (CRLF excluded).
    fn line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            match self.byte()? {
                b'\r' => {
                    return match self.byte()? {
                        b'\n' => Ok(line),
                        _ => Err(invalid("bare CR")),
                    }
                }
                b'\n' => return Err(invalid("bare LF")),
                b => {
                    if line.len() >= max {
                        return Err(invalid("line too long"));
                    }
                    line.push(b);
                }
            }
        }
    }

    fn chunk_size(&mut self) -> io::Result<u64> {
        let line = self.line(MAX_CHUNK_LINE)?;
        let digits = line.split(|b| *b == b';').next().unwrap_or(&[]);
        let digits = std::str::from_utf8(digits).map_err(|_| invalid("bad chunk size"))?;
        let digits = digits.trim_end_matches([' ', '\t']);
        if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(invalid("bad chunk size"));
        }
        u64::from_str_radix(digits, 16).map_err(|_| invalid("bad chunk size"))
    }

    fn trailers(&mut self) -> io::Result<()> {
        let mut total = 0;
        loop {
            let line = self.line(MAX_TRAILERS)?;
            total += line.len() + 2;
            if total > MAX_TRAILERS {
                return Err(invalid("trailers too large"));
            }
            if line.is_empty() {
                return Ok(());
            }
        }
    }

    fn step(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state {
                State::Done | State::Broken => return Ok(0),
                State::Size => match self.chunk_size()? {
                    0 => {
                        self.trailers()?;
                        self.state = State::Done;
                        return Ok(0);
                    }
                    n => self.state = State::Data(n),
                },
                State::Data(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(invalid("connection closed inside a chunk"));
                    }
                    let left = left - n as u64;
                    self.state = State::Data(left);
                    if left == 0 {
                        self.line(0)?; // the CRLF after the data
                        self.state = State::Size;
                    }
                    return Ok(n);
                }
            }
        }
    }
}

impl<R: Read> Read for ChunkedBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.step(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                self.state = State::Broken;
                self.shared.close();
                Err(e)
            }
        }
    }
}

impl<R: Read> Drop for ChunkedBody<R> {
    fn drop(&mut self) {
        if matches!(self.state, State::Done | State::Broken) || self.shared.is_closing() {
            return;
        }
        self.shared.leave(Leftover::Chunked(self.state));
    }
}

/// Writes a chunked response body; the last chunk is written on
/// [`ChunkedWriter::finish`].
pub struct ChunkedWriter<W: Write> {
    inner: W,
}

impl<W: Write> ChunkedWriter<W> {
    pub fn new(inner: W) -> ChunkedWriter<W> {
        ChunkedWriter { inner }
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.inner.write_all(b"0\r\n\r\n")?;
        self.inner.flush()
    }
}

impl<W: Write> Write for ChunkedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut chunk = format!("{:x}\r\n", buf.len()).into_bytes();
        chunk.extend_from_slice(buf);
        chunk.extend_from_slice(b"\r\n");
        self.inner.write_all(&chunk)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::default())
    }

    fn read_all(r: &mut impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_length_body_stops_at_its_end_and_leaves_its_rest_when_dropped_early() {
        let mut src = &b"helloGET / HTTP/1.1\r\n"[..];
        let s = shared();
        {
            let mut b = LengthBody::new(&mut src, 5, s.clone(), 1024);
            let mut two = [0u8; 2];
            b.read_exact(&mut two).unwrap();
        }
        assert!(!s.is_closing());
        assert_eq!(s.take_leftover(), Some(Leftover::Length(3)));
        let mut whole = LengthBody::new(&b"abc"[..], 3, s.clone(), 1024);
        assert_eq!(read_all(&mut whole).unwrap(), b"abc");
        drop(whole);
        assert_eq!(s.take_leftover(), None);
    }

    #[test]
    fn a_long_unread_body_closes_the_connection_instead_of_draining() {
        let data = vec![b'x'; 10_000];
        let mut src = &data[..];
        let s = shared();
        drop(LengthBody::new(&mut src, 10_000, s.clone(), 100));
        assert!(s.is_closing());
        assert_eq!(src.len(), 10_000, "nothing was read");
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let raw = b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let mut src = &raw[..];
        let s = shared();
        {
            let mut b = ChunkedBody::new(&mut src, s.clone());
            assert_eq!(read_all(&mut b).unwrap(), b"abcde");
            assert!(b.is_done());
        }
        assert!(!s.is_closing());
        assert_eq!(s.take_leftover(), None);
        assert_eq!(src, b"NEXT");
    }

    #[test]
    fn a_chunked_body_dropped_midway_can_be_resumed_and_drained() {
        let raw = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT";
        let mut src = &raw[..];
        let s = shared();
        {
            let mut b = ChunkedBody::new(&mut src, s.clone());
            let mut one = [0u8; 1];
            b.read_exact(&mut one).unwrap();
        }
        let Some(Leftover::Chunked(state)) = s.take_leftover() else {
            panic!("a leftover was expected");
        };
        let mut rest = ChunkedBody::resume(&mut src, state, s.clone());
        assert!(drain(&mut rest, 1024));
        assert!(rest.is_done());
        drop(rest);
        assert_eq!(src, b"NEXT");
    }

    #[test]
    fn broken_chunked_bodies_are_errors_that_close_the_connection() {
        let long_size = format!("{}\r\n", "1".repeat(MAX_CHUNK_LINE + 10));
        let cases: Vec<&[u8]> = vec![
            b"zz\r\nabc\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"3\r\nab",
            b"ffffffffffffffffff\r\n",
            long_size.as_bytes(),
        ];
        for raw in cases {
            let mut src = raw;
            let s = shared();
            let mut b = ChunkedBody::new(&mut src, s.clone());
            assert!(
                read_all(&mut b).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
            drop(b);
            assert!(s.is_closing());
        }
    }

    #[test]
    fn the_chunked_writer_frames_and_finishes() {
        let mut out = Vec::new();
        let mut w = ChunkedWriter::new(&mut out);
        w.write_all(b"abc").unwrap();
        w.write_all(b"").unwrap();
        w.finish().unwrap();
        assert_eq!(out, b"3\r\nabc\r\n0\r\n\r\n");
    }
}
