//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
//!
//! # This copy
//!
//! This is tiny_http 0.12.0 as vendored by Arc, with the changes listed in
//! `PATCHES.md` next to this crate's `Cargo.toml`: request heads are read
//! with bounds and strict framing, malformed requests reach the
//! application as [`Request::protocol_error`] instead of a silent close,
//! each connection gets its own thread (capped by [`Limits`]), responses
//! leave in one write with `Connection: close` echoed, and unread bodies
//! are drained only up to a bound. TLS support was removed.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use error::ProtocolError;
pub use limits::{unavailable, Limits};
pub use request::{BodyStatus, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod client;
mod common;
mod connection;
mod error;
mod framing;
mod limits;
mod request;
mod response;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and
/// the reading part of all the client's connections. Requests that have
/// already been returned by the `recv()` function will not close and the
/// responses will be transferred to the client.
/// Runs one connection's loop (a job that may block for as long as the
/// connection lives) on some thread; a job it cannot run is dropped.
pub type Spawner = Arc<dyn Fn(Box<dyn FnOnce() + Send + 'static>) + Send + Sync>;

pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // connections alive right now
    connections: Arc<util::Counter>,

    // answers serialised but not yet written
    reply_budget: Arc<util::Budget>,
}

#[allow(clippy::large_enum_variant)] // requests move by value; a box would cost an allocation each
enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

/// Iterator over received [Request] from a [Server].
pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
        })
    }

    /// Shortcut for a UNIX socket server at a specific path
    #[cfg(unix)]
    #[inline]
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, None)
    }

    /// Builds a new server using the specified TCP listener, with the
    /// default [`Limits`]. The second argument is kept for source
    /// compatibility with upstream, where it was the TLS configuration;
    /// it must be `None`.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        tls: Option<()>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        if tls.is_some() {
            return Err("this copy of tiny_http has no TLS support".into());
        }
        Self::with_limits(listener, Limits::default())
    }

    /// Builds a server on `listener` that enforces `limits`, with a new
    /// thread for every connection.
    pub fn with_limits<L: Into<Listener>>(
        listener: L,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let stack = limits.connection_stack;
        let spawn: Spawner = Arc::new(move |job| {
            // If no thread can be started, the job (and with it the
            // socket) is dropped: the client sees its connection closed.
            let _ = thread::Builder::new()
                .name("http-conn".into())
                .stack_size(stack)
                .spawn(job);
        });
        Self::with_spawner(listener, limits, spawn)
    }

    /// Builds a server on `listener` that enforces `limits` and runs each
    /// connection through `spawn` (an addition of this copy), so an
    /// application can serve connections from a pool of reused threads.
    pub fn with_spawner<L: Into<Listener>>(
        listener: L,
        limits: Limits,
        spawn: Spawner,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        let local_addr = listener.local_addr()?;
        let close_trigger = Arc::new(AtomicBool::new(false));
        let messages = MessagesQueue::with_capacity(8);
        let connections = Arc::new(util::Counter::default());
        let budget = util::Budget::new(limits.body_budget);
        let reply_budget = util::Budget::new(limits.reply_budget);
        let accept = Acceptor {
            listener,
            budget,
            reply_budget: reply_budget.clone(),
            limits: Arc::new(limits),
            spawn,
            close: close_trigger.clone(),
            messages: messages.clone(),
            connections: connections.clone(),
        };
        thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || accept.run())?;
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            connections,
            reply_budget,
        })
    }

    /// Waits until every answer handed to a connection has been written
    /// (or its connection has failed), at most until `deadline` (an
    /// addition of this copy): what a graceful stop waits for before the
    /// process exits. True if none is left.
    pub fn wait_answers_sent(&self, deadline: std::time::Instant) -> bool {
        self.reply_budget.wait_empty(deadline)
    }

    /// Returns an iterator for all received requests.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        self.connections.get()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::other("thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock one thread stuck in recv() or incoming_requests().
    pub fn unblock(&self) {
        self.messages.unblock();
    }

    /// Stops handing out requests (an addition of this copy): returns
    /// the requests already received but not yet taken, and from now on
    /// every connection answers new requests itself with
    /// `Limits::closing_response` and closes.
    pub fn close_queue(&self) -> Vec<Request> {
        self.messages
            .close()
            .into_iter()
            .filter_map(|m| match m {
                Message::NewRequest(rq) => Some(rq),
                Message::Error(_) => None,
            })
            .collect()
    }
}

/// The accept loop: one thread per connection, at most
/// `limits.max_connections` of them; past that a connection is answered
/// with the canned overload response and closed at once. Accept errors
/// (such as running out of descriptors) never end the loop: they are
/// reported once through `recv()` and retried after a growing pause.
struct Acceptor {
    listener: Listener,
    spawn: Spawner,
    budget: Arc<util::Budget>,
    reply_budget: Arc<util::Budget>,
    limits: Arc<Limits>,
    close: Arc<AtomicBool>,
    messages: Arc<MessagesQueue<Message>>,
    connections: Arc<util::Counter>,
}

impl Acceptor {
    fn run(self) {
        let mut backoff = Duration::from_millis(5);
        while !self.close.load(Relaxed) {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    backoff = Duration::from_millis(5);
                    if self.close.load(Relaxed) {
                        break;
                    }
                    self.serve(sock);
                }
                Err(e) if self.close.load(Relaxed) => {
                    let _ = e;
                    break;
                }
                Err(e) => {
                    let transient = matches!(
                        e.kind(),
                        IoErrorKind::ConnectionAborted
                            | IoErrorKind::ConnectionReset
                            | IoErrorKind::Interrupted
                    );
                    if !transient {
                        if backoff == Duration::from_millis(5) {
                            let _ = self.messages.push(e.into());
                        }
                        thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
    }

    fn serve(&self, sock: Connection) {
        sock.configure(&self.limits);
        let Some(slot) = self.connections.try_acquire(self.limits.max_connections) else {
            refuse(sock, &self.limits.overload_response);
            return;
        };
        let (read_closable, write_closable) = match util::RefinedTcpStream::new(sock) {
            Ok(halves) => halves,
            Err(sock) => return refuse(sock, &self.limits.overload_response),
        };
        let limits = self.limits.clone();
        let budget = self.budget.clone();
        let reply_budget = self.reply_budget.clone();
        let messages = self.messages.clone();
        (self.spawn)(Box::new(move || {
            let _slot = slot;
            let mut client = ClientConnection::new(
                write_closable,
                read_closable,
                limits.clone(),
                budget,
                reply_budget,
            );
            while let Some(rq) = client.next() {
                if let Err(Message::NewRequest(rq)) = messages.push(rq.into()) {
                    // The server is shutting down: nobody will serve it.
                    rq.respond_raw(&limits.closing_response);
                }
                if !client.deliver() {
                    break;
                }
            }
            client.linger();
        }));
    }
}

/// Answers a connection we will not serve with `response` (a complete
/// HTTP message) and closes it. What the client already sent is read
/// first (without blocking) so the close sends FIN, not RST, and the
/// client can read the answer.
fn refuse(mut sock: Connection, response: &[u8]) {
    let _ = sock.set_nonblocking(true);
    let mut sink = [0u8; 16 * 1024];
    for _ in 0..8 {
        match sock.read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
    let _ = sock.set_nonblocking(false);
    let _ = sock.write_all(response);
    let _ = sock.shutdown(Shutdown::Both);
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Server {
    /// Closes the listening socket now (an addition of this copy): new
    /// connections are refused, those already open are still served.
    pub fn stop_listening(&self) {
        if !self.close.swap(true, Relaxed) {
            self.wake_acceptor();
        }
    }

    fn wake_acceptor(&self) {
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_listening();
    }
}
