use std::io::{self, Cursor, Read, Write};

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use crate::util::{Budget, LengthBody, Outgoing, Share, Shared};
use crate::{HTTPVersion, Header, Limits, Method, ProtocolError, Response};

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is your what
/// your code must analyse and answer.
///
/// This object implements the `Send` trait, therefore you can dispatch your requests to
/// worker threads.
///
/// # Pipelining
///
/// If a client sends multiple requests in a row (without waiting for the response), then you will
/// get multiple `Request` objects simultaneously. This is called *requests pipelining*.
/// Tiny-http automatically reorders the responses so that you don't need to worry about the order
/// in which you call `respond` or `into_writer`.
///
/// This mechanic is disabled if:
///
///  - The body of a request is large enough (handling requires pipelining requires storing the
///    body of the request in a buffer ; if the body is too big, tiny-http will avoid doing that)
///  - A request sends a `Expect: 100-continue` header (which means that the client waits to
///    know whether its body will be processed before sending it)
///  - A request sends a `Connection: close` header or `Connection: upgrade` header (used for
///    websockets), which indicates that this is the last request that will be received on this
///    connection
///
/// # Malformed requests (this copy)
///
/// A request the server could not parse as HTTP/1.x is still handed to
/// the application, with [`Request::protocol_error`] set, so that it gets
/// an answer in the application's format; its method is `GET`, its path
/// `/`, and the connection closes after the answer.
///
/// # Automatic cleanup
///
/// If a `Request` object is destroyed without `into_writer` or `respond` being called,
/// an empty response with a 500 status code (internal server error) will automatically be
/// sent back to the client.
/// This means that if your code fails during the handling of a request, this "internal server
/// error" response will automatically be sent during the stack unwinding.
///
/// # Testing
///
/// If you want to build fake requests to test your server, use [`TestRequest`](crate::test::TestRequest).
pub struct Request {
    // where to read the body from
    data_reader: Option<Box<dyn Read + Send + 'static>>,

    // where the response goes (the connection's thread writes it); empty
    // once the request has been answered
    reply: Option<SyncSender<Outgoing>>,

    // what unsent responses may hold in memory, all connections together
    reply_budget: Option<Arc<Budget>>,

    remote_addr: Option<SocketAddr>,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    // the declared length of an unread body, or the length of the body read
    body_length: Option<usize>,

    // how much of the body the connection thread read
    body_status: BodyStatus,

    // the memory budget the read body holds
    _share: Option<Share>,

    // why the head could not be parsed, if it could not
    protocol_error: Option<ProtocolError>,

    // the client said this is its last request (or speaks HTTP/1.0
    // without keep-alive)
    last: bool,

    // an HTTP/1.0 client asked to keep the connection
    keep_alive_10: bool,

    // flags shared with the connection's thread
    shared: Arc<Shared>,
}

/// What a request head gave, before its body reader is built.
pub(crate) struct Head {
    pub method: Method,
    pub path: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
    pub last: bool,
    pub keep_alive_10: bool,
}

/// How much of a request body the connection thread read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStatus {
    /// All of it (or there was none).
    Complete,
    /// The client closed the connection inside its body.
    Truncated,
    /// The body did not arrive within `Limits::body_timeout`.
    TimedOut,
    /// A chunked body went past `Limits::max_body`.
    TooLarge,
    /// A chunked body that is not valid chunked encoding.
    Broken,
    /// No memory budget for the body could be had in time.
    Busy,
    /// Not read: its declared length is above `Limits::max_body`.
    Unread,
}

/// The body of a new request.
pub(crate) enum BodySource<R> {
    /// Read already (possibly partly, per `status`).
    Read {
        data: Vec<u8>,
        status: BodyStatus,
        share: Option<Share>,
    },
    /// Left on the stream: `len` bytes the application may still read.
    Unread(R, u64),
}

/// Builds a new request from a parsed head and its body.
pub(crate) fn new_request<R>(
    head: Head,
    body: BodySource<R>,
    remote_addr: Option<SocketAddr>,
    reply: (SyncSender<Outgoing>, Option<Arc<Budget>>),
    shared: Arc<Shared>,
    limits: &Limits,
) -> Request
where
    R: Read + Send + 'static,
{
    let (reader, body_length, body_status, share): (Box<dyn Read + Send>, _, _, _) = match body {
        BodySource::Read {
            data,
            status,
            share,
        } => {
            let len = data.len();
            (Box::new(Cursor::new(data)), Some(len), status, share)
        }
        BodySource::Unread(source, len) => (
            Box::new(LengthBody::new(
                source,
                len,
                shared.clone(),
                limits.drain_limit,
            )),
            Some(usize::try_from(len).unwrap_or(usize::MAX)),
            BodyStatus::Unread,
            None,
        ),
    };
    if !matches!(body_status, BodyStatus::Complete | BodyStatus::Unread) {
        shared.close();
    }
    Request {
        data_reader: Some(reader),
        reply: Some(reply.0),
        reply_budget: reply.1,
        remote_addr,
        method: head.method,
        path: head.path,
        http_version: head.version,
        headers: head.headers,
        body_length,
        body_status,
        _share: share,
        protocol_error: None,
        last: head.last,
        keep_alive_10: head.keep_alive_10,
        shared,
    }
}

/// Builds the request that carries a protocol error to the application.
pub(crate) fn rejected(
    error: ProtocolError,
    version: HTTPVersion,
    headers: Vec<Header>,
    remote_addr: Option<SocketAddr>,
    reply: SyncSender<Outgoing>,
    shared: Arc<Shared>,
) -> Request {
    shared.close();
    Request {
        data_reader: Some(Box::new(io::empty())),
        reply: Some(reply),
        reply_budget: None,
        remote_addr,
        method: Method::Get,
        path: "/".into(),
        http_version: version,
        headers,
        body_length: Some(0),
        body_status: BodyStatus::Complete,
        _share: None,
        protocol_error: Some(error),
        last: true,
        keep_alive_10: false,
        shared,
    }
}

impl Request {
    /// Returns true if the request was made through HTTPS (never, in this
    /// copy, which has no TLS).
    #[inline]
    pub fn secure(&self) -> bool {
        false
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes: the declared length of a
    /// body left unread (see [`Request::body_status`]), else the length of
    /// the body as read.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// How much of the body was read before the request was handed out
    /// (an addition of this copy). Anything but `Complete` and `Unread`
    /// makes this the connection's last request.
    #[inline]
    pub fn body_status(&self) -> BodyStatus {
        self.body_status
    }

    /// Takes the body that was read, without copying it (`None` for an
    /// unread body, or once taken). An addition of this copy.
    pub fn take_body(&mut self) -> Option<Vec<u8>> {
        if self.body_status == BodyStatus::Unread {
            return None;
        }
        let mut data = Vec::new();
        self.data_reader.as_mut()?.read_to_end(&mut data).ok()?;
        self.data_reader = Some(Box::new(io::empty()));
        Some(data)
    }

    /// Returns the address of the client that sent this request.
    ///
    /// The address is always `Some` for TCP listeners, but always `None` for UNIX listeners
    /// (as the remote address of a UNIX client is almost always unnamed).
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Why the server could not parse this request, if it could not. Such
    /// a request has no body; answer it (with `error.status()`), and the
    /// connection closes after the answer.
    #[inline]
    pub fn protocol_error(&self) -> Option<&ProtocolError> {
        self.protocol_error.as_ref()
    }

    /// True if the connection will close after this request's response
    /// (the client asked for it, the request was malformed, or the
    /// application called [`Request::close_connection`]).
    pub fn closes_connection(&self) -> bool {
        self.last || self.shared.is_closing()
    }

    /// Makes this request the connection's last: its response says
    /// `Connection: close` and nothing more is read from the client.
    pub fn close_connection(&mut self) {
        self.shared.close();
    }

    /// Allows to read the body of the request. In this copy a body is
    /// read by the connection thread before the request is handed out
    /// (see [`Request::body_status`]), and `100 Continue` is sent then;
    /// only a body too large to be read that way is read from the socket
    /// here.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        self.data_reader.as_mut().unwrap()
    }

    /// Turns the `Request` into a writer.
    ///
    /// The writer has a raw access to the stream to the user.
    /// This function is useful for things like CGI.
    ///
    /// In this copy the connection's thread hands its socket's write side
    /// over and reads no further request; the connection closes once the
    /// writer is dropped. Writes through it block only the caller.
    #[inline]
    pub fn into_writer(mut self) -> Box<dyn Write + Send + 'static> {
        self.shared.close();
        drop(self.data_reader.take());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        match self.reply.take() {
            Some(reply) if reply.send(Outgoing::Handover(tx)).is_ok() => rx
                .recv()
                .unwrap_or_else(|_| Box::new(io::sink()) as Box<dyn Write + Send>),
            _ => Box::new(io::sink()),
        }
    }

    /// Hands this request to its connection's own thread, which runs
    /// `job` with it (an addition of this copy): an answer that must wait
    /// for something waits on the thread that is waiting for it anyway,
    /// and no application thread is held. `job` must answer the request
    /// (dropping it answers 500). It may not take the socket over
    /// (`into_writer`): the thread it runs on is the one that would
    /// hand the socket over.
    pub fn defer(self, job: impl FnOnce(Request) + Send + 'static) {
        match self.reply.clone() {
            Some(reply) => {
                let run = Outgoing::Run(Box::new(move || job(self)));
                if let Err(std::sync::mpsc::SendError(Outgoing::Run(run))) = reply.send(run) {
                    // The connection is gone: run it here (its answer
                    // goes nowhere, but the job still finishes).
                    run();
                }
            }
            None => job(self),
        }
    }

    /// Sends a response to this request.
    ///
    /// In this copy the response is serialized here and written by the
    /// connection's own thread, so this never waits for the client.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), io::Error>
    where
        R: Read,
    {
        self.respond_impl(response)
    }

    /// Sends `message`, a complete HTTP response (it should say
    /// `Connection: close`), and closes the connection after it (an
    /// addition of this copy).
    pub fn respond_raw(mut self, message: &[u8]) {
        self.shared.close();
        drop(self.data_reader.take());
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(Outgoing::Bytes {
                data: message.to_vec(),
                close: true,
                share: None,
            });
        }
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), io::Error>
    where
        R: Read,
    {
        let Some(reply) = self.reply.take() else {
            return Ok(());
        };
        if self.last || response.closes() {
            self.shared.close();
        }
        // Dropping the body reader leaves its unread rest to the
        // connection thread (or marks the connection closing); it never
        // blocks here.
        drop(self.data_reader.take());
        let connection = if self.shared.is_closing() {
            Some("close")
        } else if self.keep_alive_10 {
            Some("keep-alive")
        } else {
            None
        };
        let do_not_send_body = self.method == Method::Head;
        let mut data = Vec::with_capacity(512);
        response.raw_print(
            &mut data,
            self.http_version.clone(),
            &self.headers,
            do_not_send_body,
            connection,
        )?;
        // Unsent responses share a memory budget; past it (many clients
        // that do not read), this one is refused instead.
        let deadline = Instant::now() + Duration::from_secs(2);
        let share = match &self.reply_budget {
            None => None,
            Some(b) => match b.acquire(data.len(), deadline) {
                Some(share) => Some(share),
                None => {
                    self.shared.close();
                    data =
                        crate::unavailable("server is busy sending other responses; retry shortly");
                    None
                }
            },
        };
        let close = self.shared.is_closing();
        // A connection that went away meanwhile just drops the answer.
        let _ = reply.send(Outgoing::Bytes { data, close, share });
        Ok(())
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.reply.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
