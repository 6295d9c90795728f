//! How long a request body is (RFC 9112 §6), decided strictly: every
//! ambiguity that lets two parsers disagree on where a body ends is a
//! [`ProtocolError`] (an addition of this copy).

use crate::{HTTPVersion, Header, ProtocolError};

/// Where a request's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// No body.
    Empty,
    /// Exactly this many bytes (saturated at `u64::MAX`).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// The body framing and whether the client waits for `100 Continue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Framing {
    pub body: Body,
    pub expects_continue: bool,
}

fn values<'a>(headers: &'a [Header], name: &'static str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
        .collect()
}

/// Reads `Content-Length`, `Transfer-Encoding` and `Expect`.
pub(crate) fn parse(version: &HTTPVersion, headers: &[Header]) -> Result<Framing, ProtocolError> {
    let lengths = values(headers, "Content-Length");
    let encodings = values(headers, "Transfer-Encoding");
    let body = match (lengths.is_empty(), encodings.is_empty()) {
        (true, true) => Body::Empty,
        (false, false) => return Err(ProtocolError::LengthAndEncoding),
        (false, true) => content_length(&lengths)?,
        (true, false) => {
            let joined = encodings.join(", ");
            let codings: Vec<&str> = joined.split(',').map(str::trim).collect();
            if *version < HTTPVersion(1, 1)
                || codings.len() != 1
                || !codings[0].eq_ignore_ascii_case("chunked")
            {
                return Err(ProtocolError::TransferEncoding(joined));
            }
            Body::Chunked
        }
    };
    let expects_continue = match values(headers, "Expect").as_slice() {
        [] => false,
        [v] if v.trim().eq_ignore_ascii_case("100-continue") => *version >= HTTPVersion(1, 1),
        other => return Err(ProtocolError::Expectation(other.join(", "))),
    };
    Ok(Framing {
        body,
        expects_continue,
    })
}

/// One or more `Content-Length` values (each may be a list): all must be
/// decimal digits and agree.
fn content_length(raw: &[&str]) -> Result<Body, ProtocolError> {
    let mut found: Option<u64> = None;
    for item in raw.iter().flat_map(|v| v.split(',')) {
        let item = item.trim();
        if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
            let negative = item.len() > 1
                && item.starts_with('-')
                && item[1..].bytes().all(|b| b.is_ascii_digit());
            return Err(if negative {
                ProtocolError::ContentLengthNegative
            } else {
                ProtocolError::ContentLengthNotInteger
            });
        }
        let n = item.bytes().fold(0u64, |acc, b| {
            acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        });
        match found {
            Some(prev) if prev != n => return Err(ProtocolError::ContentLengthConflict),
            _ => found = Some(n),
        }
    }
    Ok(match found {
        Some(0) | None => Body::Empty,
        Some(n) => Body::Length(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<Header> {
        pairs
            .iter()
            .map(|(k, v)| Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap())
            .collect()
    }

    fn body(pairs: &[(&str, &str)]) -> Result<Body, ProtocolError> {
        parse(&HTTPVersion(1, 1), &h(pairs)).map(|f| f.body)
    }

    #[test]
    fn lengths_are_decimal_digits_that_agree() {
        assert_eq!(body(&[]), Ok(Body::Empty));
        assert_eq!(body(&[("Content-Length", " 12 ")]), Ok(Body::Length(12)));
        assert_eq!(body(&[("Content-Length", "0")]), Ok(Body::Empty));
        assert_eq!(
            body(&[("Content-Length", "5"), ("content-length", "5")]),
            Ok(Body::Length(5))
        );
        assert_eq!(body(&[("Content-Length", "5, 5")]), Ok(Body::Length(5)));
        assert_eq!(
            body(&[("Content-Length", "99999999999999999999999")]),
            Ok(Body::Length(u64::MAX))
        );
        for bad in ["4_6", "abc", "", "+5", "0x10", "1 2", "5;x"] {
            assert_eq!(
                body(&[("Content-Length", bad)]),
                Err(ProtocolError::ContentLengthNotInteger),
                "{bad:?}"
            );
        }
        assert_eq!(
            body(&[("Content-Length", "-5")]),
            Err(ProtocolError::ContentLengthNegative)
        );
        assert_eq!(
            body(&[("Content-Length", "5"), ("Content-Length", "6")]),
            Err(ProtocolError::ContentLengthConflict)
        );
        assert_eq!(
            body(&[("Content-Length", "5, 6")]),
            Err(ProtocolError::ContentLengthConflict)
        );
    }

    #[test]
    fn only_a_lone_chunked_coding_is_accepted() {
        assert_eq!(body(&[("Transfer-Encoding", "Chunked")]), Ok(Body::Chunked));
        for bad in [
            "gzip",
            "gzip, chunked",
            "chunked, gzip",
            "identity",
            "chunked, chunked",
        ] {
            assert!(
                matches!(
                    body(&[("Transfer-Encoding", bad)]),
                    Err(ProtocolError::TransferEncoding(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            body(&[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked")
            ]),
            Err(ProtocolError::TransferEncoding(_))
        ));
        assert_eq!(
            body(&[("Transfer-Encoding", "chunked"), ("Content-Length", "3")]),
            Err(ProtocolError::LengthAndEncoding)
        );
        assert!(matches!(
            parse(&HTTPVersion(1, 0), &h(&[("Transfer-Encoding", "chunked")])),
            Err(ProtocolError::TransferEncoding(_))
        ));
    }

    #[test]
    fn expect_is_100_continue_or_refused() {
        let f = parse(&HTTPVersion(1, 1), &h(&[("Expect", "100-Continue")])).unwrap();
        assert!(f.expects_continue);
        let f = parse(&HTTPVersion(1, 0), &h(&[("Expect", "100-continue")])).unwrap();
        assert!(!f.expects_continue);
        assert!(matches!(
            parse(&HTTPVersion(1, 1), &h(&[("Expect", "magic")])),
            Err(ProtocolError::Expectation(_))
        ));
    }
}
