/*!
The running hub: binding, the worker pool, parked waiters, timers, the
pidfile, and a graceful stop.

Threads, and who owns what:

* tiny_http's accept thread and its one thread per connection (it parses
  requests and hands them to us);
* one *pump* thread per tiny_http server that moves requests into our job
  [`Queue`];
* `workers` threads that run the guard checks, read bodies and call
  `api::handle`. Short requests finish here;
* one small-stack thread per parked long-poll or SSE stream, created only
  when a request must wait. A parked request therefore never occupies a
  worker, so it cannot starve short requests; the number of them is capped
  hub-wide (503) and per agent (429);
* timers: presence expiry (sleeps until the earliest session could expire),
  the foreign-commit watcher (runs only while someone waits), and the
  shutdown countdown when armed.

Stopping is a message, not a kill: [`Hub::stop`] (or SIGINT/SIGTERM in the
CLI, or `POST /v1/shutdown`) wakes [`Hub::wait`], which answers parked
waiters with what they have, lets in-flight requests finish, stops the
relay, checkpoints the WAL and removes the pidfile.
*/

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::api::{self, Call, NoRoute, Outcome, Reply};
use crate::config::{self, HubConfig};
use crate::error::{Error, Result};
use crate::input::Query;
use crate::notify::{Alarm, Latch, Notifier};
use crate::store::{Committed, NewMessage, Store};
use crate::wire::{HubInfo, MESSAGE_KINDS, ShutdownStatus};
use crate::{ids, paths, time};

/// The crate's version, reported by `--version` and hub-info.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `implementation` name in hub-info.
pub const IMPLEMENTATION: &str = "arc-rs";

/// Stack size of a parked long-poll or SSE thread.
const PARKED_STACK: usize = 256 * 1024;

/// Lifecycle log lines: `[arc <ts>] <message>` on stdout unless quiet.
#[derive(Debug, Clone)]
pub struct Logger {
    quiet: bool,
}

impl Logger {
    pub fn new(quiet: bool) -> Logger {
        Logger { quiet }
    }

    pub fn log(&self, message: &str) {
        if !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "[arc {}] {message}", time::now());
            let _ = out.flush();
        }
    }
}

/// An armed shutdown.
#[derive(Clone)]
struct Pending {
    deadline: Instant,
    delay: i64,
    alarm: Arc<Alarm>,
    /// Set (under the lock) by the timer when it fires, so a cancel that
    /// races the deadline is refused rather than reported as done.
    firing: bool,
}

/// Per-agent and total counts of parked waiters.
#[derive(Default)]
struct Parked {
    total: usize,
    per_agent: HashMap<String, usize>,
}

/// Shared state of one hub: what every handler and thread sees.
pub struct State {
    pub config: HubConfig,
    pub store: Store,
    pub notifier: Arc<Notifier>,
    pub instance_id: String,
    /// The absolute, symlink-resolved database path (hub-info, fingerprint).
    pub storage_path: String,
    pub log: Logger,
    port: std::sync::atomic::AtomicU16,
    allow_remote: AtomicBool,
    relay_running: AtomicBool,
    pending: Mutex<Option<Pending>>,
    stop: Arc<Latch>,
    parked: Mutex<Parked>,
    /// Threads for parked long-polls and SSE streams.
    pool: Arc<crate::notify::Pool>,
    /// What event streams may hold in memory for writing, all together.
    pub sse_budget: Arc<crate::notify::Budget>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// Validates the configuration and opens the database (no sockets).
    pub fn open(config: HubConfig) -> Result<Arc<State>> {
        config.validate()?;
        let storage = paths::absolute(&config.storage)?;
        if storage.is_dir() {
            return Err(Error::Config(format!(
                "storage path is a directory: {}",
                storage.display()
            )));
        }
        if let Some(parent) = storage.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::Config(format!("cannot create directory {}: {e}", parent.display()))
            })?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&storage)
            .map_err(|e| {
                Error::Config(format!(
                    "storage is not writable: {}: {e}",
                    storage.display()
                ))
            })?;
        let store = Store::open_with(&storage, config.presence_ttl_sec, config.busy_timeout)
            .map_err(|e| {
                Error::Config(format!("cannot open database {}: {e}", storage.display()))
            })?;
        let resolved = paths::display_resolved(&storage);
        let instance_id = ids::instance_id(&resolved, store.birth()?.as_deref());
        let notifier = Notifier::new();
        let log = Logger::new(config.quiet);
        {
            let notifier = notifier.clone();
            let log = log.clone();
            store.set_commit_hook(move |c: &Committed| {
                notifier.notify_posted(&c.posted);
                for line in &c.logs {
                    log.log(line);
                }
            });
        }
        Ok(Arc::new(State {
            allow_remote: AtomicBool::new(config.allow_remote),
            config,
            store,
            notifier,
            instance_id,
            storage_path: resolved,
            log,
            port: std::sync::atomic::AtomicU16::new(0),
            relay_running: AtomicBool::new(false),
            pending: Mutex::new(None),
            stop: Latch::new(),
            parked: Mutex::new(Parked::default()),
            pool: crate::notify::Pool::new("arc-park", PARKED_STACK, Duration::from_secs(30)),
            sse_budget: crate::notify::Budget::new(crate::sse::BUDGET),
        }))
    }

    pub fn allow_remote(&self) -> bool {
        self.allow_remote.load(Ordering::SeqCst)
    }

    /// `POST /v1/network`: remote access can be turned off at any time,
    /// but turned on only when the socket is already bound beyond loopback.
    pub fn set_allow_remote(&self, want: bool) -> Result<()> {
        if want && self.config.host_is_loopback() {
            return Err(Error::invalid(format!(
                "cannot enable remote access at runtime: hub is bound to {} and the listening socket cannot be rebound. Restart the hub with `--host 0.0.0.0 --allow-remote` to expose it on the LAN.",
                self.config.host
            )));
        }
        self.allow_remote.store(want, Ordering::SeqCst);
        Ok(())
    }

    /// The port the hub listens on (0 before binding).
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    /// The feature tokens of what this hub implements (spec §4.2).
    pub fn features(&self) -> Vec<String> {
        let mut f: Vec<&str> = vec!["sse"];
        if self.relay_running.load(Ordering::SeqCst) {
            f.push("relay");
        }
        f.extend([
            "long_poll_keepalive",
            "subtask_rollup",
            "rpc_kinds",
            "capability_filter",
            "shutdown_control",
            "session_rename",
            "arc-rs:deep_rollup",
            "arc-rs:inbox_long_poll",
            "arc-rs:thread_tail",
            "arc-rs:sse_resume",
        ]);
        f.into_iter().map(String::from).collect()
    }

    pub fn hub_info(&self) -> HubInfo {
        let mode = self.store.journal_mode().to_string();
        HubInfo {
            storage_path: self.storage_path.clone(),
            instance_id: self.instance_id.clone(),
            wal_mode: mode == "wal",
            journal_mode: mode,
            default_channel: "general".into(),
            max_body_chars: self.config.max_body_chars as i64,
            max_attachment_chars: self.config.max_attachment_chars as i64,
            max_attachments: self.config.max_attachments as i64,
            allow_remote: self.allow_remote(),
            protocol_version: "1".into(),
            implementation: IMPLEMENTATION.into(),
            implementation_version: VERSION.into(),
            features: self.features(),
            message_kinds: MESSAGE_KINDS.iter().map(|s| s.to_string()).collect(),
            presence_ttl_sec: self.config.presence_ttl_sec,
            pid: std::process::id(),
        }
    }

    pub(crate) fn set_relay_running(&self, on: bool) {
        self.relay_running.store(on, Ordering::SeqCst);
    }

    // ----- shutdown control ---------------------------------------------

    pub fn shutdown_status(&self) -> Option<ShutdownStatus> {
        lock(&self.pending).as_ref().map(|p| ShutdownStatus {
            remaining_sec: p
                .deadline
                .saturating_duration_since(Instant::now())
                .as_secs() as i64,
            delay_sec: p.delay,
        })
    }

    fn system_notice(&self, body: &str, metadata: Value) -> Result<()> {
        let metadata = match metadata {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.store.post_message(NewMessage {
            from_agent: "system".into(),
            channel: "general".into(),
            kind: "notice".into(),
            body: body.into(),
            metadata,
            ..NewMessage::default()
        })?;
        Ok(())
    }

    /// `POST /v1/shutdown`. An immediate shutdown also counts as pending,
    /// so repeating it is refused instead of posting more notices.
    pub fn arm_shutdown(self: &Arc<Self>, delay: i64) -> Result<Value> {
        let alarm = Alarm::new();
        {
            let mut pending = lock(&self.pending);
            if pending.is_some() {
                return Err(Error::invalid("shutdown already pending"));
            }
            *pending = Some(Pending {
                deadline: Instant::now() + Duration::from_secs(delay as u64),
                delay,
                alarm: alarm.clone(),
                firing: false,
            });
        }
        if delay == 0 {
            self.log.log("shutdown initiated (immediate)");
            // Stop on another thread so this response is sent first.
            let me = self.clone();
            std::thread::spawn(move || {
                notify_pause(Duration::from_millis(50));
                me.fire_shutdown(json!({"shutdown": true, "delay_sec": 0, "final": true}));
            });
            return Ok(json!({"status": "shutdown_initiated"}));
        }
        if let Err(e) = self.system_notice(
            &format!("Hub shutdown initiated. Shutting down in {delay} seconds."),
            json!({"shutdown": true, "delay_sec": delay}),
        ) {
            // Not armed after all: leave nothing pending without a timer.
            *lock(&self.pending) = None;
            return Err(e);
        }
        self.log
            .log(&format!("shutdown initiated (delay={delay}s)"));
        let me = self.clone();
        let deadline = Instant::now() + Duration::from_secs(delay as u64);
        std::thread::spawn(move || {
            if alarm.sleep_until(deadline) {
                return; // cancelled
            }
            let ours = match lock(&me.pending).as_mut() {
                Some(p) if Arc::ptr_eq(&p.alarm, &alarm) => {
                    p.firing = true;
                    true
                }
                _ => false,
            };
            if ours {
                me.fire_shutdown(json!({"shutdown": true, "final": true}));
            }
        });
        let remaining = self.shutdown_status().map(|s| s.remaining_sec).unwrap_or(0);
        Ok(json!({"status": "shutdown_initiated", "remaining_sec": remaining, "delay_sec": delay}))
    }

    /// `POST /v1/shutdown/cancel`.
    pub fn cancel_shutdown(&self) -> Result<Value> {
        let mut pending = lock(&self.pending);
        match pending.as_ref() {
            None => return Err(Error::invalid("no shutdown pending")),
            Some(p) if p.delay == 0 || p.firing || self.stopping() => {
                return Err(Error::invalid("shutdown already executing"));
            }
            Some(p) => p.alarm.ring(),
        }
        *pending = None;
        drop(pending);
        self.system_notice(
            "Hub shutdown cancelled.",
            json!({"shutdown_cancelled": true}),
        )?;
        self.log.log("shutdown cancelled");
        Ok(json!({"status": "shutdown_cancelled"}))
    }

    fn fire_shutdown(&self, metadata: Value) {
        if let Err(e) = self.system_notice("Hub is shutting down now.", metadata) {
            self.log.log(&format!("shutdown notice error: {e}"));
        }
        self.log.log("executing shutdown");
        self.request_stop();
    }

    /// Asks the hub to stop; [`Hub::wait`] then runs the graceful stop.
    pub fn request_stop(&self) {
        self.stop.set();
        self.notifier.shutdown();
    }

    pub fn stopping(&self) -> bool {
        self.stop.is_set()
    }

    /// Waits up to `d` for a stop request; true once stopping.
    pub fn wait_stop(&self, d: Duration) -> bool {
        self.stop.wait_for(d)
    }

    // ----- parked waiter accounting ------------------------------------

    /// Reserves a parked slot, or says why not (503 total, 429 per agent).
    fn reserve_parked(
        self: &Arc<Self>,
        agent: Option<&str>,
    ) -> std::result::Result<ParkedSlot, Reply> {
        let mut p = lock(&self.parked);
        if p.total >= self.config.max_waiters {
            return Err(Reply::error(
                503,
                &format!(
                    "too many parked long-polls and streams (limit {}); retry shortly",
                    self.config.max_waiters
                ),
            ));
        }
        if let Some(a) = agent {
            let n = p.per_agent.get(a).copied().unwrap_or(0);
            if n >= self.config.max_waiters_per_agent {
                return Err(Reply::error(
                    429,
                    &format!(
                        "too many concurrent long-polls and streams for agent {a} (limit {})",
                        self.config.max_waiters_per_agent
                    ),
                ));
            }
            p.per_agent.insert(a.to_string(), n + 1);
        }
        p.total += 1;
        Ok(ParkedSlot {
            state: self.clone(),
            agent: agent.map(str::to_string),
        })
    }

    /// Number of parked long-polls and streams right now.
    pub fn parked_count(&self) -> usize {
        lock(&self.parked).total
    }
}

/// A reserved parked-waiter slot, released on drop.
struct ParkedSlot {
    state: Arc<State>,
    agent: Option<String>,
}

impl Drop for ParkedSlot {
    fn drop(&mut self) {
        let mut p = lock(&self.state.parked);
        p.total = p.total.saturating_sub(1);
        if let Some(a) = &self.agent {
            if let Some(n) = p.per_agent.get_mut(a) {
                *n -= 1;
                if *n == 0 {
                    p.per_agent.remove(a);
                }
            }
        }
    }
}

fn notify_pause(d: Duration) {
    crate::notify::pause(d);
}

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
        let server = tiny_http::Server::with_limits(listener, http_limits(&state))
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
        if cfg.pidfile {
            let path = paths::pidfile_for(Path::new(&state.storage_path));
            match paths::write_pidfile(&path, std::process::id(), addr.port(), &hub.url()) {
                Ok(()) => hub.pidfile = Some(path),
                Err(e) => state.log.log(&format!("pidfile write error: {e}")),
            }
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
        if let Some(relay) = self.relay.take() {
            relay.stop();
        }
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
            respond(&state, rq, Reply::error(503, "hub is shutting down"));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while state.parked_count() > 0 && Instant::now() < deadline {
            crate::notify::pause(Duration::from_millis(10));
        }
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
            Ok(rq) => serve(state, rq),
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
            Ok(l) => return Ok(l),
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
        // A wall-clock second boundary may be up to a second away.
        let wait = Duration::from_secs(next as u64) + Duration::from_millis(10);
        if state.wait_stop(wait) {
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

// ----- one request ---------------------------------------------------------

fn header<'a>(rq: &'a tiny_http::Request, name: &str) -> Option<&'a str> {
    rq.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// What serving a request decided.
enum Action {
    Reply(Reply),
    Wait(api::Wait),
    Stream(crate::sse::Stream),
}

fn serve(state: &Arc<State>, mut rq: tiny_http::Request) {
    // A request the HTTP layer could not parse is answered in our
    // envelope; its connection closes after the answer.
    if let Some(e) = rq.protocol_error() {
        let reply = Reply::error(e.status(), &e.to_string());
        return respond(state, rq, reply);
    }
    let action = catch_unwind(AssertUnwindSafe(|| process(state, &mut rq)))
        .unwrap_or_else(|_| Action::Reply(Reply::error(500, "internal error: handler panicked")));
    match action {
        Action::Reply(r) => respond(state, rq, r),
        Action::Wait(w) => park(state, rq, w),
        Action::Stream(s) => stream(state, rq, s),
    }
}

fn process(state: &Arc<State>, rq: &mut tiny_http::Request) -> Action {
    if let Err(r) = guard(state, rq) {
        return Action::Reply(r);
    }
    let method = rq.method().as_str().to_ascii_uppercase();
    let url = rq.url().to_string();
    let (path, query) = split_target(&url);
    if state.config.test_hooks && path == "/v1/_test/panic" {
        panic!("test hook: deliberate handler panic");
    }
    let route = match api::route(&method, path) {
        Ok(r) => r,
        Err(NoRoute::NotFound) => return Action::Reply(Reply::error(404, "not found")),
        Err(NoRoute::MethodNotAllowed) => {
            return Action::Reply(Reply::error(405, &format!("method not allowed: {method}")));
        }
    };
    let mut call = Call {
        query: Query::parse(query),
        body: Map::new(),
        last_event_id: header(rq, "Last-Event-ID").map(str::to_string),
    };
    // Routes without a body ignore one, as the reference does; the HTTP
    // layer discards it after the answer (or closes the connection).
    if route.takes_body() {
        let body = match read_body(state, rq) {
            Ok(body) => body,
            Err(r) => return Action::Reply(r),
        };
        match parse_body(&body) {
            Ok(map) => call.body = map,
            Err(msg) => return Action::Reply(Reply::error(400, msg)),
        }
    }
    match api::handle(state, &route, &call) {
        Outcome::Reply(r) => Action::Reply(r),
        Outcome::Wait(w) => Action::Wait(w),
        Outcome::Stream(s) => Action::Stream(s),
    }
}

/// Splits a request target into path and query (absolute-form tolerated).
fn split_target(url: &str) -> (&str, &str) {
    let url = url.split('#').next().unwrap_or("");
    let url = match url.find("://") {
        Some(i) => url[i + 3..]
            .find('/')
            .map(|j| &url[i + 3 + j..])
            .unwrap_or("/"),
        None => url,
    };
    url.split_once('?').unwrap_or((url, ""))
}

fn is_loopback_peer(addr: Option<&SocketAddr>) -> bool {
    match addr {
        None => true,
        Some(a) => match a.ip() {
            std::net::IpAddr::V4(v4) => v4.is_loopback(),
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        },
    }
}

/// The host part of a `Host` header value, lower-cased, without the port.
fn host_name(value: &str) -> String {
    let v = value.trim().to_ascii_lowercase();
    if let Some(rest) = v.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, _)) => format!("[{h}]"),
            None => v,
        };
    }
    match v.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => v,
    }
}

/// Every value of a request header (case-insensitive name).
fn headers_named<'a>(rq: &'a tiny_http::Request, name: &'a str) -> impl Iterator<Item = &'a str> {
    rq.headers()
        .iter()
        .filter(move |h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// The origins a browser page of this hub sends.
fn own_origins(state: &State, host: Option<&str>) -> Vec<String> {
    let port = state.port();
    let mut allowed = vec![
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::1]:{port}"),
    ];
    if port == 80 {
        allowed.extend([
            "http://127.0.0.1".into(),
            "http://localhost".into(),
            "http://[::1]".into(),
        ]);
    }
    if state.allow_remote() {
        if let Some(h) = host {
            allowed.push(format!("http://{}", h.trim().to_ascii_lowercase()));
        }
    }
    allowed
}

/// Cross-site and remote-access checks (docs/SECURITY.md): peer address
/// when remote access is off, `Host` against DNS rebinding, every
/// `Origin` against the hub's own, and `Sec-Fetch-Site` on requests that
/// change state (a browser that strips `Origin` still sends it).
fn guard(state: &State, rq: &tiny_http::Request) -> std::result::Result<(), Reply> {
    let allow_remote = state.allow_remote();
    if !allow_remote && !is_loopback_peer(rq.remote_addr()) {
        return Err(Reply::error(403, "remote access is disabled on this hub"));
    }
    let hosts: Vec<&str> = headers_named(rq, "Host").collect();
    if hosts.len() > 1 {
        return Err(Reply::error(400, "more than one Host header"));
    }
    let host = hosts.first().copied();
    if state.config.host_is_loopback() || !allow_remote {
        if let Some(value) = host {
            if !matches!(
                host_name(value).as_str(),
                "127.0.0.1" | "localhost" | "[::1]"
            ) {
                return Err(Reply::error(403, &format!("host not allowed: {value}")));
            }
        }
    }
    let allowed = own_origins(state, host);
    for origin in headers_named(rq, "Origin") {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if !allowed.contains(&origin) {
            return Err(Reply::error(403, "cross-origin requests are not allowed"));
        }
    }
    let changes_state = !matches!(
        rq.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    );
    if changes_state {
        for site in headers_named(rq, "Sec-Fetch-Site") {
            let site = site.trim().to_ascii_lowercase();
            if site != "same-origin" && site != "none" {
                return Err(Reply::error(403, "cross-site requests are not allowed"));
            }
        }
    }
    Ok(())
}

/// Takes a POST body (spec §2.3 steps 1–3). The HTTP layer has already
/// read it, within the size cap, on the connection's own thread (so a
/// slow client never holds a worker), or left it unread when its declared
/// length is over the cap.
fn read_body(state: &State, rq: &mut tiny_http::Request) -> std::result::Result<Vec<u8>, Reply> {
    use tiny_http::BodyStatus;
    let too_big = || Reply::error(400, "request body exceeds max size");
    match rq.body_status() {
        BodyStatus::Complete => {}
        BodyStatus::Unread | BodyStatus::TooLarge => return Err(too_big()),
        BodyStatus::Truncated => {
            return Err(Reply::error(
                400,
                "request body is shorter than Content-Length",
            ));
        }
        BodyStatus::Broken => {
            return Err(Reply::error(
                400,
                "request body is not valid chunked encoding",
            ));
        }
        BodyStatus::TimedOut => return Err(Reply::error(408, "request body timed out")),
        BodyStatus::Busy => {
            return Err(Reply::error(
                503,
                "hub is busy receiving other request bodies; retry shortly",
            ));
        }
    }
    let body = rq.take_body().unwrap_or_default();
    if body.len() > state.config.request_cap() {
        return Err(too_big());
    }
    Ok(body)
}

/// Spec §2.3 steps 4–6: UTF-8, JSON, object. An empty body is `{}`.
fn parse_body(body: &[u8]) -> std::result::Result<Map<String, Value>, &'static str> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    let text = std::str::from_utf8(body).map_err(|_| "request body must be valid UTF-8")?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut m)) => match m.values_mut().all(crate::input::python_numbers) {
            true => Ok(m),
            false => Err("malformed JSON"),
        },
        Ok(_) => Err("request body must be a JSON object"),
        Err(_) => Err("malformed JSON"),
    }
}

fn header_pair(name: &str, value: &str) -> Option<tiny_http::Header> {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn common_headers(state: &State, content_type: &str) -> Vec<tiny_http::Header> {
    [
        ("Content-Type", content_type.to_string()),
        ("X-Arc-Instance", state.instance_id.clone()),
        ("Server", format!("arc-hub/{VERSION}")),
        ("Cache-Control", "no-store".to_string()),
        ("X-Content-Type-Options", "nosniff".to_string()),
    ]
    .iter()
    .filter_map(|(k, v)| header_pair(k, v))
    .collect()
}

/// Sends a reply (in one write; the HTTP layer adds `Connection: close`
/// when the connection ends after it).
fn respond(state: &State, rq: tiny_http::Request, reply: Reply) {
    let mut headers = common_headers(state, reply.content_type);
    if reply.content_type.starts_with("text/html") {
        headers.extend(header_pair(
            "Content-Security-Policy",
            crate::dashboard::CSP,
        ));
        headers.extend(header_pair("X-Frame-Options", "DENY"));
        headers.extend(header_pair("Referrer-Policy", "no-referrer"));
    }
    if reply.status == 405 {
        headers.extend(header_pair("Allow", "GET, POST, DELETE"));
    }
    let len = reply.body.len();
    let mut response = tiny_http::Response::new(
        tiny_http::StatusCode(reply.status),
        headers,
        std::io::Cursor::new(reply.body),
        Some(len),
        None,
    )
    .with_chunked_threshold(usize::MAX);
    if reply.status == 503 && state.stopping() {
        response = response.with_close();
    }
    let _ = rq.respond(response);
}

fn park(state: &Arc<State>, rq: tiny_http::Request, w: api::Wait) {
    let slot = match state.reserve_parked(w.agent.as_deref()) {
        Ok(slot) => slot,
        Err(reply) => return respond(state, rq, reply),
    };
    let st = state.clone();
    let spawned = state.pool.run(move || {
        let reply = catch_unwind(AssertUnwindSafe(|| api::finish_wait(&st, w)))
            .unwrap_or_else(|_| Reply::error(500, "internal error: long-poll panicked"));
        // No longer parked: free the slot before answering, so a client
        // that sees the answer also sees the count go down.
        drop(slot);
        respond(&st, rq, reply);
    });
    if let Err(e) = spawned {
        state.log.log(&format!("cannot park a long-poll: {e}"));
    }
}

fn stream(state: &Arc<State>, rq: tiny_http::Request, s: crate::sse::Stream) {
    let slot = match state.reserve_parked(Some(&s.agent_id)) {
        Ok(slot) => slot,
        Err(reply) => return respond(state, rq, reply),
    };
    let st = state.clone();
    let spawned = state.pool.run(move || {
        let _slot = slot;
        let http10 = *rq.http_version() == tiny_http::HTTPVersion(1, 0);
        let writer = rq.into_writer();
        let _ = catch_unwind(AssertUnwindSafe(|| crate::sse::run(&st, s, writer, http10)));
    });
    if let Err(e) = spawned {
        state.log.log(&format!("cannot start a stream: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_path_and_query() {
        assert_eq!(
            split_target("/v1/messages?channel=x"),
            ("/v1/messages", "channel=x")
        );
        assert_eq!(split_target("/v1/hub-info"), ("/v1/hub-info", ""));
        assert_eq!(
            split_target("http://127.0.0.1:6969/v1/x?a=1#frag"),
            ("/v1/x", "a=1")
        );
        assert_eq!(split_target("http://h"), ("/", ""));
    }

    #[test]
    fn host_names_drop_the_port() {
        assert_eq!(host_name("LOCALHOST:6969"), "localhost");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("evil.example:6969"), "evil.example");
    }

    #[test]
    fn bodies_parse_per_spec_order() {
        assert_eq!(parse_body(b""), Ok(Map::new()));
        assert_eq!(parse_body(b"\xff"), Err("request body must be valid UTF-8"));
        assert_eq!(parse_body(b"{"), Err("malformed JSON"));
        assert_eq!(parse_body(b"{\"a\": NaN}"), Err("malformed JSON"));
        assert_eq!(parse_body("\u{feff}{}".as_bytes()), Err("malformed JSON"));
        assert_eq!(
            parse_body(b"[1]"),
            Err("request body must be a JSON object")
        );
        assert!(parse_body(b"{\"a\": 1}").is_ok());
    }

    #[test]
    fn loopback_peers() {
        assert!(is_loopback_peer(Some(&"127.0.0.1:1".parse().unwrap())));
        assert!(is_loopback_peer(Some(&"[::1]:1".parse().unwrap())));
        assert!(is_loopback_peer(Some(
            &"[::ffff:127.0.0.1]:1".parse().unwrap()
        )));
        assert!(!is_loopback_peer(Some(&"10.0.0.2:1".parse().unwrap())));
    }
}
