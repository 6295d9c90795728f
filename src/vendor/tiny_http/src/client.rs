//! One client connection: reads request heads with bounds, builds
//! requests, and winds the connection down. Rewritten in this copy (see
//! `PATCHES.md`): upstream read lines without a length limit, accepted a
//! bare LF as a line end only sometimes, closed silently on bytes it could
//! not parse, and answered `HTTP/2.0` with a 505 and then waited for
//! another request.

use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ascii::AsciiString;

use crate::common::{HTTPVersion, Header, HeaderField, Method};
use crate::framing::{self, Body, Framing};
use crate::request::{self, BodySource, BodyStatus, Head};
use crate::util::{
    drain, slot, Budget, ChunkedBody, Guarded, Leftover, Outgoing, RefinedTcpStream,
    SequentialReader, SequentialReaderBuilder, Share, Shared,
};
use crate::{Limits, ProtocolError, Request};

type Source = Guarded<BufReader<RefinedTcpStream>>;

/// A connection to a client, yielding its requests in order.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<Source>,

    // the socket's write side: only this thread writes to it (until a
    // stream takes it over)
    writer: Option<BufWriter<RefinedTcpStream>>,

    // where the answer to the request handed out last will arrive
    pending: Option<Receiver<Outgoing>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<Source>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    shared: Arc<Shared>,
    limits: Arc<Limits>,
    budget: Arc<Budget>,
    reply_budget: Arc<Budget>,
}

fn read_result<R>(data: Vec<u8>, status: BodyStatus, share: Option<Share>) -> BodySource<R> {
    BodySource::Read {
        data,
        status,
        share,
    }
}

/// How [`fill`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// The reader ended.
    End,
    /// `want` bytes are there.
    Full,
    /// A read failed: the client closed or broke the framing.
    Failed,
    /// The deadline passed.
    TimedOut,
}

/// Appends what `r` yields to `data` until it ends, `want` bytes are
/// there, a read fails, or `deadline` passes. Grows `data` as bytes
/// arrive, never by what a client merely announced.
/// The first share of the body budget a body gets; it doubles as the
/// body fills it.
const BODY_CHUNK: usize = 64 * 1024;

fn fill(r: &mut impl Read, data: &mut Vec<u8>, want: usize, deadline: Instant) -> Fill {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if data.len() >= want {
            return Fill::Full;
        }
        if Instant::now() >= deadline {
            return Fill::TimedOut;
        }
        let room = buf.len().min(want - data.len());
        match r.read(&mut buf[..room]) {
            Ok(0) => return Fill::End,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
                return Fill::TimedOut
            }
            Err(_) => return Fill::Failed,
        }
    }
}

/// Why no request could be read.
enum ReadError {
    /// The connection ended or went quiet between requests: close silently.
    Gone,
    /// The head is unacceptable: answer it, then close.
    Protocol(ProtocolError, HTTPVersion, Vec<Header>),
}

/// Counts what one head has cost so far.
struct HeadCost {
    bytes: usize,
    started: Option<Instant>,
}

impl ClientConnection {
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Arc<Limits>,
        budget: Arc<Budget>,
        reply_budget: Arc<Budget>,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let shared = Arc::new(Shared::default());
        let source = Guarded::new(
            BufReader::with_capacity(8 * 1024, read_socket),
            shared.clone(),
        );
        let mut source = SequentialReaderBuilder::new(source);
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            writer: Some(BufWriter::with_capacity(1024, write_socket)),
            pending: None,
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            shared,
            limits,
            budget,
            reply_budget,
        }
    }

    /// Discards what is left of the previous request's body, so the next
    /// head starts where it should; false if that was not possible within
    /// the drain limit (the connection must close).
    fn finish_previous_body(&mut self) -> bool {
        match self.shared.take_leftover() {
            None => true,
            Some(Leftover::Length(n)) => {
                let mut rest = (&mut self.next_header_source).take(n);
                drain(&mut rest, self.limits.drain_limit) && rest.limit() == 0
            }
            Some(Leftover::Chunked(state)) => {
                let mut rest =
                    ChunkedBody::resume(&mut self.next_header_source, state, self.shared.clone());
                let ok = drain(&mut rest, self.limits.drain_limit) && rest.is_done();
                rest.forget_on_drop();
                ok
            }
        }
    }

    fn byte(&mut self, cost: &mut HeadCost) -> Result<u8, ReadError> {
        let mut b = [0u8; 1];
        loop {
            match self.next_header_source.read(&mut b) {
                Ok(0) => return Err(ReadError::Gone),
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
                        && cost.started.is_some() =>
                {
                    return Err(self.refuse(ProtocolError::HeadTimeout));
                }
                Err(_) => return Err(ReadError::Gone),
            }
        }
        let started = *cost.started.get_or_insert_with(Instant::now);
        if started.elapsed() > self.limits.head_timeout {
            return Err(self.refuse(ProtocolError::HeadTimeout));
        }
        cost.bytes += 1;
        if cost.bytes > self.limits.max_head {
            return Err(self.refuse(ProtocolError::HeadTooLarge(self.limits.max_head)));
        }
        Ok(b[0])
    }

    fn refuse(&self, e: ProtocolError) -> ReadError {
        ReadError::Protocol(e, HTTPVersion(1, 1), Vec::new())
    }

    /// One line ending in CRLF (excluded), of at most `max` bytes with
    /// its CRLF; `too_long` is the error past that.
    fn read_line(
        &mut self,
        cost: &mut HeadCost,
        max: usize,
        too_long: ProtocolError,
    ) -> Result<Vec<u8>, ReadError> {
        let mut line = Vec::new();
        loop {
            match self.byte(cost)? {
                b'\r' => {
                    return match self.byte(cost)? {
                        b'\n' => Ok(line),
                        _ => Err(self.refuse(ProtocolError::BareLineEnd)),
                    };
                }
                b'\n' => return Err(self.refuse(ProtocolError::BareLineEnd)),
                // Not text at all (a TLS handshake, say): refused at the
                // first such byte rather than after a line's worth.
                b if !(printable(b) || b == b' ' || b == b'\t') => {
                    return Err(self.refuse(ProtocolError::NotAscii));
                }
                b => {
                    if line.len() + 2 >= max {
                        return Err(self.refuse(too_long));
                    }
                    line.push(b);
                }
            }
        }
    }

    fn read(&mut self) -> Result<Request, ReadError> {
        if !self.finish_previous_body() {
            self.shared.close();
            return Err(ReadError::Gone);
        }
        let mut cost = HeadCost {
            bytes: 0,
            started: None,
        };
        let max_line = self.limits.max_line;
        // RFC 9112 §2.2: empty lines before a request line are ignored.
        let mut line = Vec::new();
        for _ in 0..4 {
            line = self.read_line(
                &mut cost,
                max_line,
                ProtocolError::RequestLineTooLong(max_line),
            )?;
            if !line.is_empty() {
                break;
            }
        }
        let (method, path, version) = parse_request_line(&line).map_err(|e| self.refuse(e))?;
        let mut headers = Vec::new();
        loop {
            let line = self
                .read_line(
                    &mut cost,
                    max_line,
                    ProtocolError::HeaderLineTooLong(max_line),
                )
                .map_err(|e| with_version(e, &version))?;
            if line.is_empty() {
                break;
            }
            if headers.len() >= self.limits.max_headers {
                return Err(ReadError::Protocol(
                    ProtocolError::TooManyHeaders(self.limits.max_headers),
                    version,
                    headers,
                ));
            }
            match parse_header(&line) {
                Ok(h) => headers.push(h),
                Err(e) => return Err(ReadError::Protocol(e, version, headers)),
            }
        }
        let framing = match framing::parse(&version, &headers) {
            Ok(f) => f,
            Err(e) => return Err(ReadError::Protocol(e, version, headers)),
        };
        let (last, keep_alive_10) = persistence(&version, &headers);

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // Bodies on methods that define no meaning for one are left on
        // the stream (and discarded after the response, up to a bound).
        let leave = matches!(
            method,
            Method::Get | Method::Head | Method::Delete | Method::Options | Method::Trace
        );
        let body = self.read_body(framing, data_source, &version, leave);
        let head = Head {
            method,
            path,
            version,
            headers,
            last,
            keep_alive_10,
        };
        let (tx, rx) = slot();
        self.pending = Some(rx);
        Ok(request::new_request(
            head,
            body,
            *self.remote_addr.as_ref().unwrap_or(&None),
            (tx, Some(self.reply_budget.clone())),
            self.shared.clone(),
            &self.limits,
        ))
    }

    /// Reads a body of up to `max_body` bytes on this thread, within the
    /// shared memory budget and `body_timeout`; a larger one (or, with
    /// `leave`, one of known length) is left on the stream. Sends
    /// `100 Continue` first when the client waits for it.
    fn read_body(
        &mut self,
        framing: Framing,
        mut source: SequentialReader<Source>,
        version: &HTTPVersion,
        leave: bool,
    ) -> BodySource<SequentialReader<Source>> {
        let declared = match framing.body {
            Body::Empty => {
                return BodySource::Read {
                    data: Vec::new(),
                    status: BodyStatus::Complete,
                    share: None,
                }
            }
            Body::Length(n) if n > self.limits.max_body || leave => {
                if framing.expects_continue {
                    // The client holds its body back: close after the answer.
                    self.shared.close();
                }
                return BodySource::Unread(source, n);
            }
            Body::Length(n) => Some(n as usize),
            Body::Chunked => None,
        };
        let start = Instant::now();
        let deadline = start + self.limits.body_timeout;
        // The budget is taken as bytes arrive, never for what a client
        // merely announces: a share starts at one chunk and doubles.
        let first = declared.unwrap_or(BODY_CHUNK).min(BODY_CHUNK);
        let Some(mut share) = self.budget.acquire(first, start + self.limits.head_timeout) else {
            return read_result(Vec::new(), BodyStatus::Busy, None);
        };
        if framing.expects_continue {
            let line = format!("HTTP/{}.{} 100 Continue\r\n\r\n", version.0, version.1);
            let sent = match self.writer.as_mut() {
                Some(w) => w.write_all(line.as_bytes()).and_then(|_| w.flush()).is_ok(),
                None => false,
            };
            if !sent {
                return read_result(Vec::new(), BodyStatus::Truncated, Some(share));
            }
        }
        let max = self.limits.max_body as usize;
        let mut data = Vec::with_capacity(first);
        let status = match declared {
            Some(n) => {
                let mut body = (&mut source).take(n as u64);
                let mut granted = first;
                loop {
                    match fill(&mut body, &mut data, granted, deadline) {
                        Fill::Full if data.len() == n => break BodyStatus::Complete,
                        Fill::Full => {
                            let more = granted.min(n - granted);
                            if !share.grow(more, deadline) {
                                break BodyStatus::Busy;
                            }
                            granted += more;
                        }
                        Fill::TimedOut => break BodyStatus::TimedOut,
                        Fill::End | Fill::Failed => break BodyStatus::Truncated,
                    }
                }
            }
            None => {
                let mut chunks = ChunkedBody::new(&mut source, self.shared.clone());
                let mut granted = first;
                let status = loop {
                    match fill(&mut chunks, &mut data, granted.min(max + 1), deadline) {
                        Fill::End if chunks.is_done() => break BodyStatus::Complete,
                        Fill::End | Fill::Failed => break BodyStatus::Broken,
                        Fill::TimedOut => break BodyStatus::TimedOut,
                        Fill::Full if data.len() > max => break BodyStatus::TooLarge,
                        Fill::Full => {
                            // The budget granted so far is full: ask for more.
                            let more = granted.min(max + 1 - granted);
                            if !share.grow(more, deadline) {
                                break BodyStatus::Busy;
                            }
                            granted += more;
                        }
                    }
                };
                chunks.forget_on_drop();
                status
            }
        };
        read_result(data, status, Some(share))
    }

    /// Waits for the answer to the request handed out last and writes it
    /// (this thread alone writes to the socket, so whoever answered never
    /// waits for the client). False when the connection ends here: it
    /// closes after this answer, a stream took the socket over, the
    /// write failed, or the request vanished unanswered.
    pub fn deliver(&mut self) -> bool {
        let Some(rx) = self.pending.take() else {
            return true;
        };
        let mut next = rx.recv();
        // A deferred job answers the request through the same slot.
        while let Ok(Outgoing::Run(job)) = next {
            job();
            next = rx.recv();
        }
        match next {
            Ok(Outgoing::Bytes { data, close, share }) => {
                let written = match self.writer.as_mut() {
                    Some(w) => w.write_all(&data).and_then(|_| w.flush()).is_ok(),
                    None => false,
                };
                drop(share);
                if close || !written {
                    self.shared.close();
                }
                written && !close && !self.shared.is_closing()
            }
            Ok(Outgoing::Handover(to)) => {
                self.shared.close();
                if let Some(w) = self.writer.take() {
                    let _ = to.send(Box::new(w));
                }
                false
            }
            Ok(Outgoing::Run(_)) => unreachable!("deferred jobs are run above"),
            Err(_) => {
                self.shared.close();
                false
            }
        }
    }

    /// After the last request: waits until its response is written, sends
    /// FIN, then reads and discards what the client still sends (for at
    /// most `limits.linger`), so that closing does not reset the
    /// connection under an answer the client has not read yet.
    pub fn linger(&mut self) {
        if !(self.no_more_requests || self.shared.is_closing()) {
            return;
        }
        let linger = self.limits.linger;
        // A stream took the write side over: nothing to wind down here.
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let _ = w.flush();
        w.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100).min(linger)));
        w.get_ref().shutdown_write();
        self.shared.start_linger();
        let deadline = Instant::now() + linger;
        let mut buf = [0u8; 8 * 1024];
        let mut left = 1usize << 20;
        while Instant::now() < deadline && left > 0 {
            match self.next_header_source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => left = left.saturating_sub(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {}
                Err(_) => break,
            }
        }
    }
}

fn with_version(e: ReadError, version: &HTTPVersion) -> ReadError {
    match e {
        ReadError::Protocol(p, _, h) => ReadError::Protocol(p, version.clone(), h),
        other => other,
    }
}

/// Whether this is the client's last request, and whether an HTTP/1.0
/// client asked to keep the connection.
fn persistence(version: &HTTPVersion, headers: &[Header]) -> (bool, bool) {
    let tokens: Vec<String> = headers
        .iter()
        .filter(|h| h.field.equiv("Connection"))
        .flat_map(|h| {
            h.value
                .as_str()
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    let has = |t: &str| tokens.iter().any(|x| x == t);
    if has("close") || has("upgrade") {
        return (true, false);
    }
    if *version == HTTPVersion(1, 0) {
        return if has("keep-alive") {
            (false, true)
        } else {
            (true, false)
        };
    }
    (false, false)
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next request is available (`None` once the
    /// connection is done). A malformed request is still returned, with
    /// its protocol error set, and is the connection's last.
    fn next(&mut self) -> Option<Request> {
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests || self.shared.is_closing() {
            return None;
        }
        match self.read() {
            Ok(rq) => {
                if rq.closes_connection() {
                    self.no_more_requests = true;
                }
                Some(rq)
            }
            Err(ReadError::Gone) => {
                self.no_more_requests = true;
                None
            }
            Err(ReadError::Protocol(e, version, headers)) => {
                self.no_more_requests = true;
                let (tx, rx) = slot();
                self.pending = Some(rx);
                let addr = *self.remote_addr.as_ref().unwrap_or(&None);
                Some(request::rejected(
                    e,
                    version,
                    headers,
                    addr,
                    tx,
                    self.shared.clone(),
                ))
            }
        }
    }
}

fn printable(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
}

/// `METHOD SP request-target SP HTTP-version`, all printable ASCII.
fn parse_request_line(line: &[u8]) -> Result<(Method, String, HTTPVersion), ProtocolError> {
    if line.iter().any(|b| *b != b' ' && !printable(*b)) {
        return Err(ProtocolError::NotAscii);
    }
    let text = std::str::from_utf8(line).map_err(|_| ProtocolError::NotAscii)?;
    let parts: Vec<&str> = text.split(' ').collect();
    let [method, path, version] = parts.as_slice() else {
        return Err(ProtocolError::RequestLine);
    };
    if method.is_empty() || path.is_empty() || !method.bytes().all(is_token) {
        return Err(ProtocolError::RequestLine);
    }
    let version = parse_http_version(version)?;
    let method = Method::from_str(method).map_err(|_| ProtocolError::RequestLine)?;
    Ok((method, path.to_string(), version))
}

fn parse_http_version(version: &str) -> Result<HTTPVersion, ProtocolError> {
    let digits = version
        .strip_prefix("HTTP/")
        .and_then(|v| v.split_once('.'))
        .filter(|(a, b)| {
            a.len() == 1
                && b.len() == 1
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    match digits {
        Some(("1", "0")) => Ok(HTTPVersion(1, 0)),
        Some(("1", "1")) => Ok(HTTPVersion(1, 1)),
        Some(_) => Err(ProtocolError::Version(version.to_string())),
        None => Err(ProtocolError::RequestLine),
    }
}

/// RFC 9110 token characters.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `name ":" OWS value OWS`: the name a token (no space before the
/// colon), the value printable ASCII, spaces and tabs.
fn parse_header(line: &[u8]) -> Result<Header, ProtocolError> {
    if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
        return Err(ProtocolError::HeaderLine); // obsolete line folding
    }
    let colon = line
        .iter()
        .position(|b| *b == b':')
        .ok_or(ProtocolError::HeaderLine)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|b| is_token(*b)) {
        return Err(ProtocolError::HeaderLine);
    }
    if value
        .iter()
        .any(|b| !(printable(*b) || *b == b' ' || *b == b'\t'))
    {
        return Err(ProtocolError::NotAscii);
    }
    let value = std::str::from_utf8(value).map_err(|_| ProtocolError::NotAscii)?;
    let field = HeaderField::from_bytes(name).map_err(|_| ProtocolError::HeaderLine)?;
    let value = AsciiString::from_ascii(value.trim_matches([' ', '\t']))
        .map_err(|_| ProtocolError::NotAscii)?;
    Ok(Header { field, value })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn request_lines() {
        let (method, path, ver) = parse_request_line(b"GET /hello HTTP/1.1").unwrap();
        assert!(method == Method::Get);
        assert!(path == "/hello");
        assert!(ver == HTTPVersion(1, 1));

        assert_eq!(
            parse_request_line(b"GET /hello"),
            Err(ProtocolError::RequestLine)
        );
        assert_eq!(
            parse_request_line(b"qsd qsd qsd"),
            Err(ProtocolError::RequestLine)
        );
        assert_eq!(
            parse_request_line(b"GET  / HTTP/1.1"),
            Err(ProtocolError::RequestLine)
        );
        assert_eq!(
            parse_request_line(b"GET / HTTP/2.0"),
            Err(ProtocolError::Version("HTTP/2.0".into()))
        );
        assert_eq!(
            parse_request_line(b"GET / HTTP/0.9"),
            Err(ProtocolError::Version("HTTP/0.9".into()))
        );
        assert_eq!(
            parse_request_line("GET /caf\u{e9} HTTP/1.1".as_bytes()),
            Err(ProtocolError::NotAscii)
        );
        assert_eq!(
            parse_request_line(b"GET /\x01 HTTP/1.1"),
            Err(ProtocolError::NotAscii)
        );
    }

    #[test]
    fn header_lines() {
        let h = parse_header(b"Content-Type:  text/plain \t").unwrap();
        assert!(h.field.equiv("content-type"));
        assert_eq!(h.value.as_str(), "text/plain");
        assert_eq!(parse_header(b"X-Empty:").unwrap().value.as_str(), "");
        assert_eq!(
            parse_header(b"Host : x").err(),
            Some(ProtocolError::HeaderLine)
        );
        assert_eq!(
            parse_header(b" folded").err(),
            Some(ProtocolError::HeaderLine)
        );
        assert_eq!(
            parse_header(b"NoColon").err(),
            Some(ProtocolError::HeaderLine)
        );
        assert_eq!(parse_header(b": v").err(), Some(ProtocolError::HeaderLine));
        assert_eq!(
            parse_header("X-A: caf\u{e9}".as_bytes()).err(),
            Some(ProtocolError::NotAscii)
        );
        assert_eq!(
            parse_header(b"X-A: a\x00b").err(),
            Some(ProtocolError::NotAscii)
        );
    }

    #[test]
    fn connection_persistence() {
        let h = |v: &str| vec![Header::from_bytes(&b"Connection"[..], v.as_bytes()).unwrap()];
        assert_eq!(persistence(&HTTPVersion(1, 1), &[]), (false, false));
        assert_eq!(persistence(&HTTPVersion(1, 1), &h("Close")), (true, false));
        assert_eq!(
            persistence(&HTTPVersion(1, 1), &h("keep-alive, close")),
            (true, false)
        );
        assert_eq!(persistence(&HTTPVersion(1, 0), &[]), (true, false));
        assert_eq!(
            persistence(&HTTPVersion(1, 0), &h("Keep-Alive")),
            (false, true)
        );
        // "closed" is not "close"
        assert_eq!(
            persistence(&HTTPVersion(1, 1), &h("closed")),
            (false, false)
        );
    }
}
