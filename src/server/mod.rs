/*!
The running hub: binding, the worker pool, timers, the pidfile, and a
graceful stop.

Threads, and who owns what:

* the patched tiny_http's accept thread and one thread per connection,
  which reads each request (head and body, within bounds) and writes its
  answer: no other thread touches a client socket;
* `workers` threads that take requests from tiny_http and run the edge
  ([`crate::edge::serve`]) and the handlers. Short requests finish there;
* a parked long-poll goes back to its own connection thread
  (`Request::defer`) and waits there; an SSE stream gets a small-stack
  thread from `notify::Pool`. Neither occupies a worker, and their number
  is capped hub-wide (503) and per agent (429);
* timers: presence expiry (sleeps until the earliest session could
  expire), the foreign-commit watcher (runs only while someone waits),
  the writer of delivered marks (waits for answers to record),
  and the shutdown countdown when armed.

Stopping is a message, not a kill: [`Hub::stop`] (or SIGINT/SIGTERM in the
CLI, or `POST /v1/shutdown`) wakes [`Hub::wait`], which answers parked
waiters with what they have, lets in-flight requests finish, stops the
relay, checkpoints the WAL and removes the pidfile.
*/

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::api::Reply;
use crate::config::{self, HubConfig};
use crate::edge;
use crate::error::{Error, Result};
use crate::paths;
use crate::state::State;
use crate::time;
use crate::wire::VERSION;

/// A running hub.
pub struct Hub {
    state: Arc<State>,
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
    relay: Option<crate::relay::RelayHandle>,
    pidfile: Option<PathBuf>,
    finished: bool,
}

impl Hub {
    /// Validates, opens the database, binds, and starts every thread.
    pub fn start(config: HubConfig) -> Result<Hub> {
        let state = State::open(config)?;
        Hub::start_with(state)
    }

    /// Starts serving an already opened [`State`].
    pub fn start_with(state: Arc<State>) -> Result<Hub> {
        let cfg = &state.config;
        crate::sys::raise_fd_limit();
        let listener = bind(&cfg.host, cfg.port)?;
        let addr = listener.local_addr()?;
        state.port.store(addr.port(), Ordering::SeqCst);
        let limits = http_limits(&state);
        // Connection threads are reused: a connection costs a thread only
        // while it is open, and a thousand short-lived ones a second cost
        // no thread creations once the pool is warm.
        let pool = crate::notify::Pool::new("http-conn", limits.connection_stack, CONN_IDLE);
        let spawn: tiny_http::Spawner = Arc::new(move |job| {
            // A job that cannot run is dropped with its socket: the client
            // sees its connection closed.
            let _ = pool.run(job);
        });
        let server = tiny_http::Server::with_spawner(listener, limits, spawn)
            .map_err(|e| Error::Config(format!("cannot start HTTP server: {e}")))?;
        let mut hub = Hub {
            state: state.clone(),
            addr,
            server: Arc::new(server),
            threads: Vec::new(),
            relay: None,
            pidfile: None,
            finished: false,
        };
        // The relay starts before the first request is served, so hub-info
        // lists `relay` from the first answer on (the socket is already
        // listening; early relay requests wait in its backlog).
        let relay_started = if cfg.relay {
            match crate::relay::RelayHandle::start_builtin(state.clone()) {
                Ok(r) => {
                    state.set_relay_running(true);
                    hub.relay = Some(r);
                    Ok(true)
                }
                Err(e) => Err(e),
            }
        } else {
            Ok(false)
        };
        // The pidfile exists before the first answer, so whoever sees the
        // hub answer (`arc ensure`, say) also finds its pidfile.
        if cfg.pidfile {
            let path = paths::pidfile_for(Path::new(&state.storage_path));
            match paths::write_pidfile(&path, std::process::id(), addr.port(), &hub.url()) {
                Ok(()) => hub.pidfile = Some(path),
                Err(e) => state.log.log(&format!("pidfile write error: {e}")),
            }
        }
        for i in 0..cfg.workers {
            let (state, server) = (state.clone(), hub.server.clone());
            hub.threads
                .push(spawn_named(&format!("arc-worker-{i}"), move || {
                    work(&state, &server)
                })?);
        }
        hub.threads.push(spawn_named("arc-expiry", {
            let state = state.clone();
            move || expiry_loop(&state)
        })?);
        hub.threads.push(spawn_named("arc-watch", {
            let state = state.clone();
            move || watch_loop(&state)
        })?);
        hub.threads.push(spawn_named("arc-marks", {
            let state = state.clone();
            move || state.write_delivered()
        })?);
        let mode = state.store.journal_mode().to_string();
        state.log.log(&format!(
            "listening on {}:{} (storage={}, journal_mode={mode}, instance={}, allow_remote={})",
            cfg.host,
            addr.port(),
            state.storage_path,
            state.instance_id,
            if state.allow_remote() {
                "True"
            } else {
                "False"
            }
        ));
        if mode != "wal" {
            state.log.log("warning: SQLite is not in WAL mode; shared-filesystem coordination may not behave correctly on this storage backend");
        }
        match relay_started {
            Ok(true) => state.log.log(&format!(
                "relay started (spool={})",
                cfg.spool_dir.display()
            )),
            Ok(false) => {}
            Err(e) => state.log.log(&format!("relay error: {e}")),
        }
        Ok(hub)
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Client connections open right now.
    pub fn connection_count(&self) -> usize {
        self.server.num_connections()
    }

    /// The built-in relay's scan counters, if the relay runs.
    pub fn relay_stats(&self) -> Option<crate::relay::RelayStats> {
        self.relay.as_ref().map(|r| r.stats())
    }

    /// The base URL clients should use.
    pub fn url(&self) -> String {
        config::client_url(&self.state.config.host, self.addr.port())
    }

    /// Requests a graceful stop (returns immediately).
    pub fn stop(&self) {
        self.state.request_stop();
    }

    /// Blocks until a stop is requested, then stops gracefully.
    pub fn wait(mut self) -> Result<()> {
        while !self.state.wait_stop(Duration::from_secs(3600)) {}
        self.finish();
        Ok(())
    }

    /// Stops and waits.
    pub fn shutdown(self) {
        self.stop();
        let _ = self.wait();
    }

    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let state = self.state.clone();
        state.request_stop();
        // The relay forwards to our own port, so it stops first; then the
        // port closes (connections already open are still served).
        if let Some(relay) = self.relay.take() {
            relay.stop();
        }
        self.server.stop_listening();
        // Workers finish the request in hand and stop; what is still
        // queued, and whatever arrives from now on, is answered 503 and
        // its connection closed.
        for _ in 0..state.config.workers {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for rq in self.server.close_queue() {
            edge::respond(&state, rq, Reply::error(503, "hub is shutting down"));
        }
        // Parked requests were woken by the stop and answer at once; give
        // them a moment to finish before the database closes.
        state.wait_unparked(Instant::now() + Duration::from_secs(5));
        // Every answer is written before the process may exit (the one to
        // `POST /v1/shutdown` included).
        self.server
            .wait_answers_sent(Instant::now() + Duration::from_secs(2));
        state.flush_delivered();
        if let Err(e) = state.store.checkpoint() {
            state.log.log(&format!("checkpoint error: {e}"));
        }
        if let Some(path) = self.pidfile.take() {
            if let Err(e) =
                paths::remove_pidfile_if_ours(&path, std::process::id(), self.addr.port())
            {
                state.log.log(&format!("pidfile cleanup error: {e}"));
            }
        }
        state.log.log("stopped");
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.finish();
    }
}

fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    Ok(std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)?)
}

/// A worker: serves requests until the hub stops. Accept errors (such as
/// running out of descriptors) arrive here too, to be logged; the accept
/// loop retries by itself.
fn work(state: &Arc<State>, server: &tiny_http::Server) {
    while !state.stopping() {
        match server.recv() {
            Ok(rq) => edge::serve(state, rq),
            Err(_) if state.stopping() => return,
            Err(e) => state.log.log(&format!("accept error: {e}")),
        }
    }
}

/// The bounds the HTTP server enforces for this hub (docs/SECURITY.md).
fn http_limits(state: &State) -> tiny_http::Limits {
    let cfg = &state.config;
    let closing = canned_refusal(state, "hub is shutting down");
    tiny_http::Limits {
        io_timeout: cfg.io_timeout,
        max_connections: cfg.max_connections.min(crate::sys::connection_budget()),
        overload_response: canned_refusal(state, "too many connections to this hub; retry shortly"),
        closing_response: closing,
        max_body: cfg.request_cap() as u64,
        body_timeout: cfg.io_timeout * 2,
        ..tiny_http::Limits::default()
    }
}

/// A complete `503` answer in the hub's envelope, for connections the
/// HTTP server refuses on its own.
fn canned_refusal(state: &State, message: &str) -> Vec<u8> {
    let body = crate::wire::error_body(message);
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nX-Arc-Instance: {}\r\nServer: arc-hub/{VERSION}\r\nRetry-After: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        state.instance_id,
        body.len()
    )
    .into_bytes()
}

/// Binds `host:port`, trying every address the name resolves to.
/// How long an idle connection thread waits for another connection
/// before it exits.
const CONN_IDLE: Duration = Duration::from_secs(10);

/// Connections the kernel may hold for us before we accept them. The
/// standard library listens with 128; a thousand agents reconnecting at
/// once would overflow that, and an overflowing queue resets connections
/// their clients already think are open.
const LISTEN_BACKLOG: i32 = 4096;

fn bind(host: &str, port: u16) -> Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let target = format!("{}:{port}", config::bracket(host));
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| Error::Config(format!("cannot resolve host {host}: {e}")))?
        .collect();
    let mut last = None;
    for a in &addrs {
        match TcpListener::bind(a) {
            Ok(l) => {
                crate::sys::widen_backlog(&l, LISTEN_BACKLOG);
                return Ok(l);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Config(match last {
        Some(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            format!("cannot bind {target}: address already in use (is another hub running?)")
        }
        Some(e) => format!("cannot bind {target}: {e}"),
        None => format!("cannot resolve host {host}"),
    }))
}

fn expiry_loop(state: &Arc<State>) {
    let ttl = state.config.presence_ttl_sec;
    while !state.stopping() {
        if let Err(e) = state.store.expire_sessions() {
            state.log.log(&format!("prune error: {e}"));
        }
        let now = time::now_secs();
        let next = match state.store.next_expiry() {
            Ok(Some(at)) => (at - now).clamp(1, ttl),
            Ok(None) => ttl,
            Err(_) => 1,
        };
        // A wall-clock second boundary may be up to a second away. A new
        // short lease rings the alarm, and the next expiry is read again.
        let wait = Duration::from_secs(next as u64) + Duration::from_millis(10);
        state.expiry_alarm.sleep(wait);
        if state.stopping() {
            return;
        }
    }
}

fn watch_loop(state: &Arc<State>) {
    // Check every `foreign_poll` while another process is writing, and
    // four times less often once it has been quiet for a while: a lone
    // hub with parked waiters then wakes ten times a second, not forty.
    let mut last_foreign: Option<Instant> = None;
    while !state.stopping() {
        state.notifier.wait_for_waiters();
        if state.stopping() {
            return;
        }
        let active = last_foreign.is_some_and(|t| t.elapsed() < FOREIGN_ACTIVE);
        let every = if active {
            state.config.foreign_poll
        } else {
            state.config.foreign_poll * 4
        };
        if state.wait_stop(every) {
            return;
        }
        match state.store.sync_foreign() {
            Ok(true) => last_foreign = Some(Instant::now()),
            Ok(false) => {}
            Err(e) if e.is_busy() => {}
            Err(e) => state.log.log(&format!("watch error: {e}")),
        }
    }
}

/// How long after a foreign commit the watcher keeps its fast pace.
const FOREIGN_ACTIVE: Duration = Duration::from_secs(30);
