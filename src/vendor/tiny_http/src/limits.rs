//! Bounds on what one connection may cost (an addition of this copy).

use std::time::Duration;

/// What the server enforces per connection and in total.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest request line or header line, in bytes (CRLF included).
    /// Past it the request is answered 414 (request line) or 431.
    pub max_line: usize,
    /// Longest request head (request line plus headers), in bytes (431).
    pub max_head: usize,
    /// Most header lines in one request (431).
    pub max_headers: usize,
    /// The whole head of a request must arrive within this (408).
    pub head_timeout: Duration,
    /// Read and write timeout of every accepted socket; also how long an
    /// idle keep-alive connection is kept.
    pub io_timeout: Duration,
    /// Connections served at once; one more is answered with
    /// `overload_response` and closed.
    pub max_connections: usize,
    /// A complete HTTP response sent to connections past the cap.
    pub overload_response: Vec<u8>,
    /// A complete HTTP response for requests that arrive after
    /// [`Server::close_queue`](crate::Server::close_queue).
    pub closing_response: Vec<u8>,
    /// Bodies up to this size are read by the connection's own thread
    /// before the request is handed out (so an application thread never
    /// waits on a slow client); a larger body is left unread, for the
    /// application to refuse.
    pub max_body: u64,
    /// All bodies being read or held at once share this many bytes; a
    /// connection that cannot get its share within `head_timeout` is
    /// answered 503.
    pub body_budget: usize,
    /// The whole body must arrive within this.
    pub body_timeout: Duration,
    /// Responses waiting to be written (to clients that read slowly)
    /// share this many bytes; an answer that finds no room within 2 s is
    /// replaced by a short 503.
    pub reply_budget: usize,
    /// Bytes of an unread request body that are read and discarded so
    /// the connection can carry another request; a longer remainder
    /// closes the connection instead.
    pub drain_limit: usize,
    /// After the last response on a connection that closes, what the
    /// client still sends is read and discarded for at most this long
    /// (so the close sends FIN, not RST, and the answer is not lost).
    pub linger: Duration,
    /// Set `TCP_NODELAY` on accepted sockets.
    pub nodelay: bool,
    /// Stack size of connection threads.
    pub connection_stack: usize,
}

/// A complete `503` response with a plain-text body that closes.
pub fn unavailable(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 8 * 1024,
            max_head: 64 * 1024,
            max_headers: 100,
            head_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(15),
            max_connections: 4096,
            overload_response: unavailable("server is at its connection limit; retry shortly"),
            closing_response: unavailable("server is shutting down"),
            max_body: 8 * 1024 * 1024,
            body_budget: 128 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            reply_budget: 256 * 1024 * 1024,
            drain_limit: 64 * 1024,
            linger: Duration::from_secs(2),
            nodelay: true,
            connection_stack: 256 * 1024,
        }
    }
}
