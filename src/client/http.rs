/*!
A small HTTP/1.1 client over `std::net::TcpStream` (one request per
connection, `Connection: close`). It reads Content-Length, chunked and
close-delimited bodies, and trusts nothing the peer sends
(docs/SECURITY.md, "What a client reads"):

* one deadline for the whole exchange, however slowly bytes trickle in;
* each head line at most [`LINE_MAX`] bytes, the whole head at most
  [`HEAD_MAX`] bytes and [`HEADERS_MAX`] header lines, chunk-size and
  trailer lines likewise;
* a body cap per call ([`MAX_RESPONSE_BYTES`] unless the caller asks
  for less), never allocating what a peer merely announces;
* an answer is parsed as JSON only after its shape is within
  [`ANSWER_LIMITS`] ([`parse_answer`]).
*/

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::wire::shape::{self, Limits};

/// The longest status, header, chunk-size or trailer line we read.
pub const LINE_MAX: usize = 8 << 10;

/// The longest response head (status line and headers, interim `1xx`
/// responses included), and the most trailer bytes after a chunked body.
pub const HEAD_MAX: usize = 64 << 10;

/// The most header lines in one response head (and trailer lines).
pub const HEADERS_MAX: usize = 100;

/// The largest response body an ordinary call accepts. A hub's pages are
/// bounded to about 4 MiB of message data (docs/SECURITY.md, "Bounds on a
/// request"); this only stops a lying or broken peer.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// What an answer may hold before it is parsed: a hub stores values
/// within [`shape::LIMITS`], and a page, a message and a relay envelope
/// wrap them a few levels deeper (16 levels of room, still well inside
/// serde_json's 128), and a page may carry several of them (four times
/// the values of one; about 70 MB once parsed).
pub const ANSWER_LIMITS: Limits = Limits {
    depth: shape::LIMITS.depth + 16,
    values: shape::LIMITS.values * 4,
};

/// An HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Value::Null` when it is not JSON, or is
    /// beyond [`ANSWER_LIMITS`]; [`parse_answer`] says which).
    pub fn json(&self) -> Value {
        parse_answer(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An answer's body as JSON: `Err` names the limit of [`ANSWER_LIMITS`]
/// it is beyond (checked before anything is parsed); a body that is not
/// JSON is `Value::Null`.
pub fn parse_answer(body: &[u8]) -> std::result::Result<Value, String> {
    if let Some(why) = shape::over(body, ANSWER_LIMITS) {
        return Err(why);
    }
    Ok(serde_json::from_slice(body).unwrap_or(Value::Null))
}

/// A parsed `http://host:port/prefix` base URL.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseUrl {
    /// `host:port`, IPv6 bracketed, for connecting and the Host header.
    pub authority: String,
    pub prefix: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl> {
        let rest = url.trim().strip_prefix("http://").ok_or_else(|| {
            Error::Transport(format!(
                "unsupported URL {url:?} (only http:// is supported)"
            ))
        })?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(Error::Transport(format!("URL {url:?} has no host")));
        }
        let has_port = match authority.rfind(']') {
            Some(close) => authority[close..].contains(':'),
            None => authority.contains(':'),
        };
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(BaseUrl {
            authority,
            prefix: prefix.to_string(),
        })
    }

    /// The host, without the brackets of an IPv6 literal.
    pub fn host(&self) -> &str {
        let host = match self.authority.rfind(':') {
            Some(i) => &self.authority[..i],
            None => &self.authority,
        };
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    /// The port, if it is a number.
    pub fn port(&self) -> Option<u16> {
        self.authority.rsplit_once(':')?.1.parse().ok()
    }

    /// Whether the host is this machine by name or address: `localhost`,
    /// `127.0.0.0/8` or `::1` (no name is looked up).
    pub fn is_loopback(&self) -> bool {
        let host = self.host();
        host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Sends one request and reads the whole response (at most
/// [`MAX_RESPONSE_BYTES`] of body). `read_timeout` bounds each read;
/// callers of long-polls pass more than the poll's wait.
pub fn http_request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    extra_headers: &[(&str, &str)],
    read_timeout: Duration,
) -> Result<HttpResponse> {
    let limits = Exchange {
        read_timeout,
        max_body: MAX_RESPONSE_BYTES,
    };
    http_exchange(base, method, path, body, extra_headers, limits)
}

/// How long an exchange may take and how big its answer may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// Bounds each read; the whole exchange gets this plus a transfer
    /// allowance (at most 30 s more).
    pub read_timeout: Duration,
    /// The largest body accepted.
    pub max_body: usize,
}

/// [`http_request`] with its own limits.
pub fn http_exchange(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    extra_headers: &[(&str, &str)],
    limits: Exchange,
) -> Result<HttpResponse> {
    check_head(method, path, extra_headers)?;
    let url = BaseUrl::parse(base)?;
    let read_timeout = limits.read_timeout;
    // One deadline for connecting, sending and reading: each read waits
    // at most `read_timeout`, and the whole exchange at most that plus a
    // transfer allowance, so a peer that trickles bytes forever (an event
    // stream, a hostile server) cannot hold us.
    let end = Instant::now() + read_timeout + read_timeout.min(TRANSFER_ALLOWANCE);
    let stream = connect(base, &url, read_timeout)?;
    let _ = stream.set_nodelay(true);
    let mut stream = Deadline {
        s: stream,
        per_read: read_timeout,
        end,
    };
    let head = request_head(&url, method, path, body, extra_headers);
    let mut out = head.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    let at = |e: Error| match e {
        Error::Io(io) => Error::Transport(format!("{base}: {io}")),
        Error::Protocol(m) => Error::Protocol(format!("{base}: {m}")),
        other => other,
    };
    stream
        .write_all(&out)
        .map_err(|e| Error::Transport(format!("{base}: {e}")))?;
    read_response_capped(stream, method == "HEAD", limits.max_body).map_err(at)
}

/// Connects to the first address of `url` that answers.
fn connect(base: &str, url: &BaseUrl, read_timeout: Duration) -> Result<TcpStream> {
    let connect_timeout = Duration::from_secs(5).min(read_timeout.max(Duration::from_millis(100)));
    let addrs: Vec<_> = url
        .authority
        .to_socket_addrs()
        .map_err(|e| Error::Transport(format!("cannot resolve {}: {e}", url.authority)))?
        .collect();
    let mut last_err = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, connect_timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last_err = Some(e),
        }
    }
    Err(Error::Transport(match last_err {
        Some(e) => format!("{base}: {e}"),
        None => format!("{base}: no address"),
    }))
}

/// The request line and headers.
fn request_head(
    url: &BaseUrl,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    extra_headers: &[(&str, &str)],
) -> String {
    let mut head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: arc-hub/{}\r\n",
        url.prefix,
        url.authority,
        crate::wire::VERSION
    );
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    head
}

/// Refuses a request head that would not be one request: a method that
/// is not a plain token, a path with spaces or control characters, or a
/// header with a line break (the relay checks its envelopes first; this
/// is the last line, docs/SECURITY.md).
fn check_head(method: &str, path: &str, headers: &[(&str, &str)]) -> Result<()> {
    let token =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let bad = !token(method)
        || !path.bytes().all(|b| b.is_ascii_graphic())
        || headers
            .iter()
            .any(|(k, v)| !token(k) || v.bytes().any(|b| b == b'\r' || b == b'\n'));
    if bad {
        return Err(Error::invalid(
            "refusing to send an HTTP request with a line break, space or control character in its method, path or headers",
        ));
    }
    Ok(())
}

/// Extra time, beyond one read timeout, for a whole exchange (at most
/// this, and at most the read timeout again).
const TRANSFER_ALLOWANCE: Duration = Duration::from_secs(30);

/// A socket whose reads and writes share one overall deadline.
struct Deadline {
    s: TcpStream,
    per_read: Duration,
    end: Instant,
}

impl Deadline {
    /// Time left, or a timeout error once there is none.
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the exchange took too long",
            ));
        }
        Ok(left)
    }

    /// A socket timeout, said plainly: the whole exchange ran out of
    /// time, or one read waited `per_read` for nothing.
    fn explain(&self, e: std::io::Error, waited: Duration) -> std::io::Error {
        if !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            return e;
        }
        let why = match self.left() {
            Err(too_long) => return too_long,
            Ok(_) => format!("nothing arrived for {:.1} s", waited.as_secs_f64()),
        };
        std::io::Error::new(std::io::ErrorKind::TimedOut, why)
    }
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let wait = self.left()?.min(self.per_read);
        self.s.set_read_timeout(Some(wait))?;
        self.s.read(buf).map_err(|e| self.explain(e, wait))
    }
}

impl Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let wait = self.left()?;
        self.s.set_write_timeout(Some(wait))?;
        self.s.write(buf).map_err(|e| self.explain(e, wait))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}

fn too_big(max: usize) -> Error {
    Error::Protocol(format!("response body exceeds {max} bytes"))
}

/// How a bounded line read ended.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line, through its `\n`, is in the buffer.
    Whole,
    /// The peer closed before sending anything.
    Closed,
    /// More than the limit arrived without a `\n`.
    TooLong,
}

/// Reads one line (through `\n`) into `line`, which is cleared first, but
/// never more than `max` bytes: a peer that never ends a line costs at
/// most `max` bytes of memory. A close in the middle of a line is an
/// error.
fn read_line_limited<R: BufRead>(r: &mut R, line: &mut Vec<u8>, max: usize) -> Result<Line> {
    line.clear();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            if line.is_empty() {
                return Ok(Line::Closed);
            }
            return Err(Error::Protocol(
                "connection closed in the middle of a line".into(),
            ));
        }
        let (take, whole) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if whole {
            return Ok(Line::Whole);
        }
    }
}

/// A line without its line ending, as text.
fn text_of(line: &[u8]) -> String {
    String::from_utf8_lossy(line).trim_end().to_string()
}

/// The status and headers of a response.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn find(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads response heads until one that is not an interim `1xx`, all of
/// them within [`HEAD_MAX`] bytes together.
fn read_head<R: BufRead>(r: &mut R) -> Result<Head> {
    let mut budget = HEAD_MAX;
    let mut line = Vec::new();
    loop {
        let status_line = match read_line_limited(r, &mut line, budget.min(LINE_MAX))? {
            Line::Whole => text_of(&line),
            Line::Closed => {
                return Err(Error::Protocol(
                    "connection closed before a response".into(),
                ));
            }
            Line::TooLong => return Err(head_too_long(budget)),
        };
        budget -= line.len();
        let mut parts = status_line.splitn(3, ' ');
        if !parts.next().unwrap_or("").starts_with("HTTP/1.") {
            return Err(Error::Protocol(format!(
                "not an HTTP response: {:?}",
                clip(&status_line)
            )));
        }
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| Error::Protocol(format!("bad status line: {:?}", clip(&status_line))))?;
        let headers = read_fields(r, &mut budget, "headers", false)?;
        // 1xx interim responses (100 Continue) are followed by the real one.
        if !(100..200).contains(&status) {
            return Ok(Head { status, headers });
        }
    }
}

/// The error for a head line that does not fit: the line limit, or what
/// is left of the head's.
fn head_too_long(budget: usize) -> Error {
    if budget < LINE_MAX {
        Error::Protocol(format!("the response head exceeds {HEAD_MAX} bytes"))
    } else {
        Error::Protocol(format!("a response line exceeds {LINE_MAX} bytes"))
    }
}

/// At most 80 characters of a line, for an error message.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Reads `name: value` lines up to the blank line, taking their bytes from
/// `budget` (headers, or the trailers of a chunked body, which a close
/// may also end when `close_ends`).
fn read_fields<R: BufRead>(
    r: &mut R,
    budget: &mut usize,
    what: &str,
    close_ends: bool,
) -> Result<Vec<(String, String)>> {
    let mut fields = Vec::new();
    let mut line = Vec::new();
    for _ in 0..=HEADERS_MAX {
        match read_line_limited(r, &mut line, (*budget).min(LINE_MAX))? {
            Line::Whole => {}
            Line::Closed if close_ends => return Ok(fields),
            Line::Closed => {
                return Err(Error::Protocol(format!(
                    "connection closed inside the {what}"
                )));
            }
            Line::TooLong => return Err(head_too_long(*budget)),
        }
        *budget -= line.len();
        let l = text_of(&line);
        if l.is_empty() {
            return Ok(fields);
        }
        if let Some((k, v)) = l.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Err(Error::Protocol(format!(
        "more than {HEADERS_MAX} lines of {what}"
    )))
}

/// Reads an HTTP/1.x response from `stream`, with a body of at most
/// [`MAX_RESPONSE_BYTES`].
pub fn read_response<R: Read>(stream: R, head_only: bool) -> Result<HttpResponse> {
    read_response_capped(stream, head_only, MAX_RESPONSE_BYTES)
}

/// Reads an HTTP/1.x response from `stream`, with a body of at most
/// `max_body` bytes.
pub fn read_response_capped<R: Read>(
    stream: R,
    head_only: bool,
    max_body: usize,
) -> Result<HttpResponse> {
    let mut r = BufReader::new(stream);
    let head = read_head(&mut r)?;
    let mut body = Vec::new();
    if head_only || head.status == 204 || head.status == 304 {
        // no body
    } else if head
        .find("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        body = read_chunked(&mut r, max_body)?;
    } else if let Some(len) = head.find("Content-Length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| Error::Protocol(format!("bad Content-Length {:?}", clip(len))))?;
        if len > max_body {
            return Err(too_big(max_body));
        }
        read_up_to(&mut r, &mut body, len)?;
    } else {
        (&mut r).take(max_body as u64 + 1).read_to_end(&mut body)?;
        if body.len() > max_body {
            return Err(too_big(max_body));
        }
    }
    Ok(HttpResponse {
        status: head.status,
        headers: head.headers,
        body,
    })
}

/// Reads a chunked body of at most `max` bytes, then its trailers.
fn read_chunked<R: BufRead>(r: &mut R, max: usize) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        match read_line_limited(r, &mut line, LINE_MAX)? {
            Line::Whole => {}
            Line::Closed => {
                return Err(Error::Protocol(
                    "connection closed inside a chunked body".into(),
                ));
            }
            Line::TooLong => {
                return Err(Error::Protocol(format!(
                    "a chunk-size line exceeds {LINE_MAX} bytes"
                )));
            }
        }
        let text = text_of(&line);
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = Some(size_text)
            .filter(|s| !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| Error::Protocol(format!("bad chunk size {:?}", clip(size_text))))?;
        if size == 0 {
            // Trailers (ignored) until the blank line, or a close.
            let mut budget = HEAD_MAX;
            read_fields(r, &mut budget, "trailers", true)?;
            return Ok(body);
        }
        let end = usize::try_from(size)
            .ok()
            .and_then(|n| body.len().checked_add(n))
            .filter(|n| *n <= max)
            .ok_or_else(|| too_big(max))?;
        read_up_to(r, &mut body, end)?;
        let ended = read_line_limited(r, &mut line, 2)?;
        if ended != Line::Whole || !text_of(&line).is_empty() {
            return Err(Error::Protocol("a chunk does not end with CRLF".into()));
        }
    }
}

/// Reads until `body` is `end` bytes long, growing it as data arrives
/// (never allocating what a peer merely announces).
fn read_up_to<R: Read>(r: &mut R, body: &mut Vec<u8>, end: usize) -> Result<()> {
    let want = (end - body.len()) as u64;
    let got = r.take(want).read_to_end(body)?;
    if (got as u64) < want {
        return Err(Error::Protocol("connection closed inside the body".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A peer that sends `prefix`, then `fill` forever, counting what is
    /// read from it.
    struct Endless {
        prefix: Vec<u8>,
        fill: u8,
        sent: usize,
    }

    impl Endless {
        fn new(prefix: &[u8], fill: u8) -> Endless {
            Endless {
                prefix: prefix.to_vec(),
                fill,
                sent: 0,
            }
        }
    }

    impl Read for &mut Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(4096);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = self.prefix.get(self.sent + i).copied().unwrap_or(self.fill);
            }
            self.sent += n;
            Ok(n)
        }
    }

    /// Reads a response from an endless peer: the error, and how many
    /// bytes it took.
    fn endless(prefix: &[u8], fill: u8) -> (String, usize) {
        let mut peer = Endless::new(prefix, fill);
        let e = read_response(&mut peer, false).unwrap_err();
        (e.to_string(), peer.sent)
    }

    #[test]
    fn the_line_reader_stops_at_its_limit() {
        let mut line = Vec::new();
        let mut r = BufReader::new(&b"abc\ndefg\n"[..]);
        assert_eq!(
            read_line_limited(&mut r, &mut line, 4).unwrap(),
            Line::Whole
        );
        assert_eq!(line, b"abc\n");
        assert_eq!(
            read_line_limited(&mut r, &mut line, 4).unwrap(),
            Line::TooLong,
            "five bytes with the newline"
        );
        let mut r = BufReader::new(&b"defg\n"[..]);
        assert_eq!(
            read_line_limited(&mut r, &mut line, 5).unwrap(),
            Line::Whole
        );
        assert_eq!(
            read_line_limited(&mut r, &mut line, 5).unwrap(),
            Line::Closed
        );
        let mut r = BufReader::new(&b"no newline"[..]);
        let e = read_line_limited(&mut r, &mut line, 100).unwrap_err();
        assert!(e.to_string().contains("middle of a line"), "{e}");
        // A line that never ends costs the limit, not what the peer sends.
        let mut peer = Endless::new(b"", b'a');
        let mut r = BufReader::with_capacity(64, &mut peer);
        assert_eq!(
            read_line_limited(&mut r, &mut line, 1000).unwrap(),
            Line::TooLong
        );
        assert!(line.len() <= 1000, "{}", line.len());
        drop(r);
        assert!(peer.sent <= 1000 + 4096, "{}", peer.sent);
    }

    #[test]
    fn endless_lines_are_refused_after_their_limit() {
        let slack = LINE_MAX + (16 << 10);
        for (prefix, fill, says) in [
            (&b"HTTP/1.1 200 "[..], b'a', "exceeds 8192 bytes"),
            (b"HTTP/1.1 200 OK\r\nX-A: ", b'a', "exceeds 8192 bytes"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1",
                b'0',
                "chunk-size line exceeds 8192 bytes",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ",
                b'a',
                "exceeds 8192 bytes",
            ),
        ] {
            let (e, sent) = endless(prefix, fill);
            assert!(e.starts_with("protocol: ") && e.contains(says), "{e}");
            assert!(sent <= slack, "{e}: read {sent} bytes");
        }
    }

    #[test]
    fn heads_are_bounded_in_bytes_and_lines() {
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..HEADERS_MAX + 1 {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let e = read_response(&many[..], false).unwrap_err().to_string();
        assert!(e.contains("more than 100 lines of headers"), "{e}");
        let mut fits = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..HEADERS_MAX - 1 {
            fits.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        fits.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
        assert_eq!(read_response(&fits[..], false).unwrap().text(), "ok");
        // Long lines, each within its limit, add up past the head's.
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..20 {
            big.extend_from_slice(format!("X-{i}: {}\r\n", "v".repeat(8000)).as_bytes());
        }
        let e = read_response(&big[..], false).unwrap_err().to_string();
        assert!(e.contains("head exceeds 65536 bytes"), "{e}");
        // Endless interim responses share the head's budget.
        let (e, sent) = endless(b"", b'x');
        assert!(e.contains("exceeds"), "{e}");
        assert!(sent < 64 << 10, "{sent}");
        let cont = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(5000);
        let e = read_response(&cont[..], false).unwrap_err().to_string();
        assert!(e.contains("head exceeds 65536 bytes"), "{e}");
        // Endless trailers likewise.
        let mut tr = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
        tr.extend(b"X-T: 1\r\n".repeat(200));
        let e = read_response(&tr[..], false).unwrap_err().to_string();
        assert!(e.contains("more than 100 lines of trailers"), "{e}");
    }

    #[test]
    fn bodies_are_capped_per_call() {
        let cl = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world";
        let e = read_response_capped(&cl[..], false, 10).unwrap_err();
        assert_eq!(e.to_string(), "protocol: response body exceeds 10 bytes");
        assert_eq!(
            read_response_capped(&cl[..], false, 11).unwrap().text(),
            "hello world"
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
        assert!(read_response_capped(&chunked[..], false, 10).is_err());
        assert_eq!(
            read_response_capped(&chunked[..], false, 11)
                .unwrap()
                .text(),
            "hello world"
        );
        let closed = b"HTTP/1.0 200 OK\r\n\r\nhello world";
        assert!(read_response_capped(&closed[..], false, 10).is_err());
        // An endless close-delimited body stops at the cap.
        let (e, sent) = {
            let mut peer = Endless::new(b"HTTP/1.1 200 OK\r\n\r\n", b'0');
            let e = read_response_capped(&mut peer, false, 1 << 20).unwrap_err();
            (e.to_string(), peer.sent)
        };
        assert!(e.contains("exceeds 1048576"), "{e}");
        assert!(sent <= (1 << 20) + (64 << 10), "{sent}");
    }

    #[test]
    fn answers_beyond_the_shape_limits_are_named_not_parsed() {
        let deep = "[".repeat(ANSWER_LIMITS.depth + 1) + &"]".repeat(ANSWER_LIMITS.depth + 1);
        assert_eq!(
            parse_answer(deep.as_bytes()).unwrap_err(),
            "nested deeper than 80 levels"
        );
        let wide = format!("[{}0]", "0,".repeat(ANSWER_LIMITS.values));
        assert_eq!(
            parse_answer(wide.as_bytes()).unwrap_err(),
            "holds more than 1048576 JSON values"
        );
        assert_eq!(parse_answer(b"not json").unwrap(), Value::Null);
        assert_eq!(
            parse_answer(br#"{"ok":true}"#).unwrap(),
            json!({"ok": true})
        );
        let r = HttpResponse {
            status: 200,
            headers: vec![],
            body: deep.into_bytes(),
        };
        assert_eq!(r.json(), Value::Null);
    }

    #[test]
    fn lying_or_broken_peers_get_errors_not_allocations() {
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000\r\n\r\nabc";
        let e = read_response(&huge[..], false).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
        let chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc";
        let e = read_response(&chunk[..], false).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let e = read_response(&short[..], false).unwrap_err();
        assert!(e.to_string().contains("closed inside the body"), "{e}");
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(read_response(&ok[..], false).unwrap().text(), "abc");
    }

    #[test]
    fn a_trickling_peer_cannot_hold_a_request_forever() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
            // One header line every 50 ms: each read succeeds, the whole
            // never ends (and stays under the header-line cap for 5 s).
            for _ in 0..100 {
                if s.write_all(b"X: 1\r\n").is_err() {
                    break;
                }
                crate::notify::pause(Duration::from_millis(50));
            }
        });
        let t0 = Instant::now();
        let r = http_request(&url, "GET", "/", None, &[], Duration::from_millis(300));
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Transport(_)), "{e:?}");
        assert!(e.to_string().contains("took too long"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        server.join().unwrap();
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            BaseUrl::parse("http://127.0.0.1:6969").unwrap(),
            BaseUrl {
                authority: "127.0.0.1:6969".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            BaseUrl::parse("http://[::1]:7/arc/").unwrap(),
            BaseUrl {
                authority: "[::1]:7".into(),
                prefix: "/arc".into()
            }
        );
        assert_eq!(
            BaseUrl::parse("http://localhost").unwrap().authority,
            "localhost:80"
        );
        assert!(BaseUrl::parse("https://x").is_err());
        assert!(BaseUrl::parse("http://").is_err());
    }

    #[test]
    fn loopback_hosts_and_ports() {
        for (url, host, port, loopback) in [
            ("http://127.0.0.1:6969", "127.0.0.1", Some(6969), true),
            ("http://127.9.8.7:1/x", "127.9.8.7", Some(1), true),
            ("http://[::1]:7", "::1", Some(7), true),
            ("http://LocalHost:80", "LocalHost", Some(80), true),
            ("http://localhost", "localhost", Some(80), true),
            ("http://10.0.0.2:6969", "10.0.0.2", Some(6969), false),
            (
                "http://[::ffff:10.0.0.1]:5",
                "::ffff:10.0.0.1",
                Some(5),
                false,
            ),
            (
                "http://localhost.evil.example:6969",
                "localhost.evil.example",
                Some(6969),
                false,
            ),
            ("http://127.0.0.1:99999", "127.0.0.1", None, true),
        ] {
            let u = BaseUrl::parse(url).unwrap();
            assert_eq!(
                (u.host(), u.port(), u.is_loopback()),
                (host, port, loopback),
                "{url}"
            );
        }
    }

    #[test]
    fn reads_every_body_framing() {
        let cl = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloEXTRA";
        let r = read_response(&cl[..], false).unwrap();
        assert_eq!(
            (r.status, r.text().as_str(), r.header("x-a")),
            (200, "hello", Some("b"))
        );
        let chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n";
        let r = read_response(&chunked[..], false).unwrap();
        assert_eq!((r.status, r.text().as_str()), (201, "abcde"));
        let no_trailer_end =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n";
        assert_eq!(
            read_response(&no_trailer_end[..], false).unwrap().text(),
            "ok"
        );
        let closed = b"HTTP/1.0 404 Not Found\r\n\r\n{\"ok\":false}";
        let r = read_response(&closed[..], false).unwrap();
        assert_eq!(r.json(), json!({"ok": false}));
        let cont = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(read_response(&cont[..], false).unwrap().text(), "ok");
    }

    #[test]
    fn rejects_broken_responses() {
        assert!(read_response(&b""[..], false).is_err());
        assert!(read_response(&b"SSH-2.0-x\r\n"[..], false).is_err());
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nok\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2",
        ] {
            assert!(
                read_response(bad, false).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn unreachable_hub_is_a_transport_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = http_request(
            &format!("http://127.0.0.1:{port}"),
            "GET",
            "/",
            None,
            &[],
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Transport(_)), "{e:?}");
        assert!(e.to_string().starts_with("connection error: "), "{e}");
    }

    #[test]
    fn a_request_head_with_line_breaks_is_never_sent() {
        // Nothing listens on the discard port's address: a check that let
        // these through would fail with a transport error instead.
        let base = "http://127.0.0.1:9";
        let t = Duration::from_secs(1);
        for (m, p, h) in [
            (
                "GET",
                "/v1/x HTTP/1.1\r\nHost: a\r\n\r\nPOST /v1/y",
                ("A", "b"),
            ),
            ("GET", "/v1/a b", ("A", "b")),
            ("GET /x", "/", ("A", "b")),
            ("GET", "/", ("A", "b\r\nX-Smuggled: 1")),
            ("GET", "/", ("A:b", "c")),
        ] {
            let e = http_request(base, m, p, None, &[h], t).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{m:?} {p:?} {h:?}: {e:?}");
        }
    }
}
