//! Framing of the stdio stream: one JSON message per line (the MCP stdio
//! transport), or LSP-style `Content-Length` headers, detected from the
//! first message and answered in kind. Lengths count bytes.

use std::io::{BufRead, Read};

/// The largest message we accept (a line, or a Content-Length body):
/// what a tool call could carry to the hub, whose requests are capped a
/// little over 8 MB, plus room for the JSON-RPC envelope.
pub const MAX_MESSAGE_BYTES: usize = 9 << 20;

/// How messages are delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON message per line (the MCP stdio transport).
    Lines,
    /// `Content-Length: N\r\n\r\n` followed by N bytes (LSP style).
    ContentLength,
}
// Framing

/// One unit of input.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// A message body (not yet parsed) and the framing it came in.
    Message(Vec<u8>, Framing),
    /// Input that cannot be a message (answered with a parse error).
    Bad(String, Framing),
    Eof,
}

/// Reads the next message: a non-blank line, or a header block and its
/// Content-Length body. Blank lines between messages are skipped.
pub fn read_message<R: BufRead>(r: &mut R) -> std::io::Result<Incoming> {
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line(r, &mut line)? {
            Line::Eof => return Ok(Incoming::Eof),
            Line::TooLong => {
                return Ok(Incoming::Bad(
                    format!("parse error: message exceeds {MAX_MESSAGE_BYTES} bytes"),
                    Framing::Lines,
                ));
            }
            Line::Ok => {}
        }
        let text = trim_ascii(&line);
        if text.is_empty() {
            continue;
        }
        if !is_header(text) {
            return Ok(Incoming::Message(text.to_vec(), Framing::Lines));
        }
        return read_framed(r, text.to_vec());
    }
}

fn read_framed<R: BufRead>(r: &mut R, first: Vec<u8>) -> std::io::Result<Incoming> {
    let cl = Framing::ContentLength;
    let mut length: Option<std::result::Result<usize, String>> = None;
    let mut header = first;
    for _ in 0..1000 {
        let text = String::from_utf8_lossy(trim_ascii(&header)).into_owned();
        if text.is_empty() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .trim()
                        .parse::<usize>()
                        .map_err(|_| format!("bad Content-Length {:?}", value.trim())),
                );
            }
        }
        header.clear();
        match read_line(r, &mut header)? {
            Line::Eof => return Ok(Incoming::Eof),
            Line::TooLong => return Ok(Incoming::Bad("parse error: header too long".into(), cl)),
            Line::Ok => {}
        }
    }
    let n = match length {
        None => return Ok(Incoming::Bad("parse error: no Content-Length".into(), cl)),
        Some(Err(e)) => return Ok(Incoming::Bad(format!("parse error: {e}"), cl)),
        Some(Ok(n)) => n,
    };
    if n > MAX_MESSAGE_BYTES {
        // Skip the body to stay in step with the stream.
        let skipped = std::io::copy(&mut r.take(n as u64), &mut std::io::sink())?;
        if skipped < n as u64 {
            return Ok(Incoming::Eof);
        }
        return Ok(Incoming::Bad(
            format!("parse error: message exceeds {MAX_MESSAGE_BYTES} bytes"),
            cl,
        ));
    }
    let mut body = vec![0; n];
    match r.read_exact(&mut body) {
        Ok(()) => Ok(Incoming::Message(body, cl)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(Incoming::Eof),
        Err(e) => Err(e),
    }
}

enum Line {
    Ok,
    TooLong,
    Eof,
}

/// Reads up to and including `\n`, at most [`MAX_MESSAGE_BYTES`]; a longer
/// line is consumed and reported as `TooLong`.
fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    let n = r
        .by_ref()
        .take(MAX_MESSAGE_BYTES as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.len() > MAX_MESSAGE_BYTES && buf.last() != Some(&b'\n') {
        r.skip_until(b'\n')?;
        return Ok(Line::TooLong);
    }
    Ok(Line::Ok)
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace());
    match start {
        None => &[],
        Some(s) => {
            let end = b
                .iter()
                .rposition(|c| !c.is_ascii_whitespace())
                .unwrap_or(s);
            &b[s..=end]
        }
    }
}

fn is_header(line: &[u8]) -> bool {
    let lower = line
        .iter()
        .take(16)
        .map(u8::to_ascii_lowercase)
        .collect::<Vec<_>>();
    lower.starts_with(b"content-length:") || lower.starts_with(b"content-type:")
}

/// Frames one serialized message.
pub fn frame(text: &str, framing: Framing) -> Vec<u8> {
    match framing {
        Framing::Lines => format!("{text}\n").into_bytes(),
        Framing::ContentLength => {
            format!("Content-Length: {}\r\n\r\n{text}", text.len()).into_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8]) -> Vec<Incoming> {
        let mut r = input;
        let mut out = Vec::new();
        for _ in 0..100 {
            let m = read_message(&mut r).unwrap();
            let eof = m == Incoming::Eof;
            out.push(m);
            if eof {
                break;
            }
        }
        out
    }

    #[test]
    fn reads_lines_and_content_length_frames() {
        let body = "{\"x\":\"é\"}";
        let input = format!(
            "\n{{\"a\":1}}\r\n  \ncontent-length: {}\r\nContent-Type: application/json\r\n\r\n{body}{{\"b\":2}}\n",
            body.len()
        );
        assert_eq!(
            read_all(input.as_bytes()),
            vec![
                Incoming::Message(b"{\"a\":1}".to_vec(), Framing::Lines),
                Incoming::Message(body.as_bytes().to_vec(), Framing::ContentLength),
                Incoming::Message(b"{\"b\":2}".to_vec(), Framing::Lines),
                Incoming::Eof,
            ]
        );
    }

    #[test]
    fn bad_headers_are_reported_and_truncation_is_eof() {
        let r = read_all(b"Content-Type: x\r\n\r\n{}\nContent-Length: nope\r\n\r\n");
        assert!(
            matches!(&r[0], Incoming::Bad(m, Framing::ContentLength) if m.contains("no Content-Length"))
        );
        assert_eq!(r[1], Incoming::Message(b"{}".to_vec(), Framing::Lines));
        assert!(matches!(&r[2], Incoming::Bad(m, _) if m.contains("bad Content-Length")));
        assert_eq!(
            read_all(b"Content-Length: 10\r\n\r\n{}"),
            vec![Incoming::Eof]
        );
    }

    #[test]
    fn frames_count_bytes() {
        assert_eq!(
            frame("\"é\"", Framing::ContentLength),
            "Content-Length: 4\r\n\r\n\"é\"".as_bytes()
        );
        assert_eq!(frame("{}", Framing::Lines), b"{}\n");
    }
}
