//! Why a request was refused before it reached the application (an
//! addition of this copy; upstream closed the connection silently).

use std::fmt;

/// A request the server could not accept as HTTP/1.x. The server hands
/// such a request to the application like any other (see
/// [`Request::protocol_error`](crate::Request::protocol_error)) so it is
/// answered in the application's own format; the connection is closed
/// after that answer, because its stream position is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The request line is not `METHOD SP target SP HTTP/x.y`.
    RequestLine,
    /// A line ended with a bare LF or contained a bare CR.
    BareLineEnd,
    /// A byte outside printable ASCII in the request line or a header.
    NotAscii,
    /// A header line without a token name followed directly by `:`, or a
    /// folded (continuation) line.
    HeaderLine,
    /// The request line is longer than this many bytes.
    RequestLineTooLong(usize),
    /// A header line is longer than this many bytes.
    HeaderLineTooLong(usize),
    /// The head is larger than this many bytes.
    HeadTooLarge(usize),
    /// More than this many header lines.
    TooManyHeaders(usize),
    /// The head did not arrive in time.
    HeadTimeout,
    /// A version other than HTTP/1.0 and HTTP/1.1.
    Version(String),
    /// A `Content-Length` that is not a decimal number.
    ContentLengthNotInteger,
    /// A negative `Content-Length`.
    ContentLengthNegative,
    /// Several `Content-Length` values that differ.
    ContentLengthConflict,
    /// A `Transfer-Encoding` other than exactly `chunked`.
    TransferEncoding(String),
    /// `Transfer-Encoding` and `Content-Length` together.
    LengthAndEncoding,
    /// An `Expect` other than `100-continue`.
    Expectation(String),
}

impl ProtocolError {
    /// The HTTP status the request should be answered with.
    pub fn status(&self) -> u16 {
        match self {
            ProtocolError::RequestLineTooLong(_) => 414,
            ProtocolError::HeaderLineTooLong(_)
            | ProtocolError::HeadTooLarge(_)
            | ProtocolError::TooManyHeaders(_) => 431,
            ProtocolError::HeadTimeout => 408,
            ProtocolError::Version(_) => 505,
            ProtocolError::Expectation(_) => 417,
            _ => 400,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::RequestLine => f.write_str("malformed request line"),
            ProtocolError::BareLineEnd => {
                f.write_str("request lines must end with CRLF (bare LF or CR)")
            }
            ProtocolError::NotAscii => {
                f.write_str("request head contains bytes outside printable ASCII")
            }
            ProtocolError::HeaderLine => f.write_str("malformed header line"),
            ProtocolError::RequestLineTooLong(n) => {
                write!(f, "request line too long (limit {n} bytes)")
            }
            ProtocolError::HeaderLineTooLong(n) => {
                write!(f, "header line too long (limit {n} bytes)")
            }
            ProtocolError::HeadTooLarge(n) => write!(f, "request head too large (limit {n} bytes)"),
            ProtocolError::TooManyHeaders(n) => write!(f, "too many header lines (limit {n})"),
            ProtocolError::HeadTimeout => f.write_str("request head timed out"),
            ProtocolError::Version(v) => write!(f, "HTTP version not supported: {v}"),
            ProtocolError::ContentLengthNotInteger => {
                f.write_str("Content-Length must be an integer")
            }
            ProtocolError::ContentLengthNegative => f.write_str("Content-Length must be >= 0"),
            ProtocolError::ContentLengthConflict => {
                f.write_str("conflicting Content-Length headers")
            }
            ProtocolError::TransferEncoding(v) => {
                write!(
                    f,
                    "unsupported Transfer-Encoding: {v} (only chunked is accepted)"
                )
            }
            ProtocolError::LengthAndEncoding => {
                f.write_str("Content-Length and Transfer-Encoding must not be sent together")
            }
            ProtocolError::Expectation(v) => write!(f, "unsupported Expect: {v}"),
        }
    }
}

impl std::error::Error for ProtocolError {}
