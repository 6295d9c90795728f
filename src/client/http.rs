/*!
A small HTTP/1.1 client over `std::net::TcpStream` (one request per
connection, `Connection: close`): it reads Content-Length, chunked and
close-delimited bodies under a per-read timeout, a whole-response
deadline and a body cap, and never allocates what a peer merely
announces.
*/

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};

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

    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
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
}

/// Sends one request and reads the whole response. `read_timeout` bounds
/// each read; callers of long-polls pass more than the poll's wait.
pub fn http_request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    extra_headers: &[(&str, &str)],
    read_timeout: Duration,
) -> Result<HttpResponse> {
    check_head(method, path, extra_headers)?;
    let url = BaseUrl::parse(base)?;
    let connect_timeout = Duration::from_secs(5).min(read_timeout.max(Duration::from_millis(100)));
    let addrs: Vec<_> = url
        .authority
        .to_socket_addrs()
        .map_err(|e| Error::Transport(format!("cannot resolve {}: {e}", url.authority)))?
        .collect();
    let mut last_err = None;
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, connect_timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let mut stream = stream.ok_or_else(|| {
        Error::Transport(match last_err {
            Some(e) => format!("{base}: {e}"),
            None => format!("{base}: no address"),
        })
    })?;
    stream.set_read_timeout(Some(read_timeout))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let _ = stream.set_nodelay(true);
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
    let mut out = head.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    stream
        .write_all(&out)
        .map_err(|e| Error::Transport(format!("{base}: {e}")))?;
    // `read_timeout` bounds each read; the whole response must also
    // arrive within it plus a transfer allowance, so a peer that trickles
    // bytes forever (an event stream, a hostile server) cannot hold us.
    let stream = Deadline {
        s: stream,
        per_read: read_timeout,
        end: Instant::now() + read_timeout + read_timeout.min(TRANSFER_ALLOWANCE),
    };
    read_response(stream, method == "HEAD").map_err(|e| match e {
        Error::Io(io) => Error::Transport(format!("{base}: {io}")),
        other => other,
    })
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

/// Extra time, beyond one read timeout, for a whole response to arrive
/// (at most this, and at most the read timeout again).
const TRANSFER_ALLOWANCE: Duration = Duration::from_secs(30);

/// The largest response body we accept (a hub's biggest answers are a few
/// megabytes; this only stops a lying or broken peer).
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// A socket whose reads share one overall deadline.
struct Deadline {
    s: TcpStream,
    per_read: Duration,
    end: Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "response took too long",
            ));
        }
        self.s.set_read_timeout(Some(left.min(self.per_read)))?;
        self.s.read(buf)
    }
}

fn too_big() -> Error {
    Error::Protocol(format!("response body exceeds {MAX_RESPONSE_BYTES} bytes"))
}

/// Reads an HTTP/1.x response from `stream`.
pub fn read_response<R: Read>(stream: R, head_only: bool) -> Result<HttpResponse> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    let mut status;
    let mut headers;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(Error::Protocol(
                "connection closed before a response".into(),
            ));
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(Error::Protocol(format!(
                "not an HTTP response: {:?}",
                line.trim_end()
            )));
        }
        status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| Error::Protocol(format!("bad status line: {:?}", line.trim_end())))?;
        headers = Vec::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(Error::Protocol(
                    "connection closed inside the headers".into(),
                ));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        // 1xx interim responses (100 Continue) are followed by the real one.
        if !(100..200).contains(&status) {
            break;
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if head_only || status == 204 || status == 304 {
        // no body
    } else if find("Transfer-Encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(Error::Protocol(
                    "connection closed inside a chunked body".into(),
                ));
            }
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| Error::Protocol(format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                // trailers until the blank line
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let end = body
                .len()
                .checked_add(size)
                .filter(|n| *n <= MAX_RESPONSE_BYTES)
                .ok_or_else(too_big)?;
            read_up_to(&mut r, &mut body, end)?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(len) = find("Content-Length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| Error::Protocol(format!("bad Content-Length {len:?}")))?;
        if len > MAX_RESPONSE_BYTES {
            return Err(too_big());
        }
        read_up_to(&mut r, &mut body, len)?;
    } else {
        (&mut r)
            .take(MAX_RESPONSE_BYTES as u64 + 1)
            .read_to_end(&mut body)?;
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(too_big());
        }
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
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
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
            // One byte every 50 ms: each read succeeds, the whole never ends.
            for _ in 0..100 {
                if s.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let t0 = Instant::now();
        let r = http_request(&url, "GET", "/", None, &[], Duration::from_millis(300));
        assert!(r.is_err(), "{r:?}");
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
        assert!(
            read_response(
                &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"[..],
                false
            )
            .is_err()
        );
        assert!(
            read_response(
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
                false
            )
            .is_err()
        );
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
