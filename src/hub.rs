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
use crate::notify::{Alarm, Latch, Notifier, Queue};
use crate::store::{Committed, NewMessage, Store};
use crate::wire::{HubInfo, MESSAGE_KINDS, ShutdownStatus};
use crate::{ids, paths, time};

/// The crate's version, reported by `--version` and hub-info.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `implementation` name in hub-info.
pub const IMPLEMENTATION: &str = "arc-rs";

/// Stack size of a parked long-poll or SSE thread.
const PARKED_STACK: usize = 256 * 1024;

/// Declared bodies above this are never drained (see `refuse_oversized`).
const MAX_DRAIN: usize = 64 * 1024 * 1024;

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
        }))
    }

    pub fn allow_remote(&self) -> bool {
        self.allow_remote.load(Ordering::SeqCst)
    }

    /// `POST /v1/network`: remote access can be turned off at any time,
    /// but turned on only when the socket is already bound beyond loopback.
    pub fn set_allow_remote(&self, want: bool) -> Result<()> {
        if want && self.config.host_is_loopback() {
            return Err(Error::bad(format!(
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
                return Err(Error::bad("shutdown already pending"));
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
            None => return Err(Error::bad("no shutdown pending")),
            Some(p) if p.delay == 0 || p.firing || self.stopping() => {
                return Err(Error::bad("shutdown already executing"));
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

enum Job {
    Request(tiny_http::Request),
}

/// A running hub.
pub struct Hub {
    state: Arc<State>,
    addr: SocketAddr,
    listener: TcpListener,
    queue: Arc<Queue<Job>>,
    servers: Arc<Mutex<Vec<Arc<tiny_http::Server>>>>,
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
        crate::sys::set_socket_timeouts(&listener, cfg.io_timeout);
        let addr = listener.local_addr()?;
        state.port.store(addr.port(), Ordering::SeqCst);
        let queue: Arc<Queue<Job>> = Arc::new(Queue::default());
        let servers = Arc::new(Mutex::new(Vec::new()));
        let mut hub = Hub {
            state: state.clone(),
            addr,
            listener,
            queue: queue.clone(),
            servers,
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
        hub.spawn_server()?;
        for i in 0..cfg.workers {
            let (state, queue) = (state.clone(), queue.clone());
            hub.threads
                .push(spawn_named(&format!("arc-worker-{i}"), move || {
                    while let Some(Job::Request(rq)) = queue.pop() {
                        serve(&state, rq);
                    }
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

    /// Starts one tiny_http server on a clone of the listening socket, plus
    /// its pump. Called again if an accept loop ever dies (for example on
    /// a transient "too many open files").
    fn spawn_server(&mut self) -> Result<()> {
        spawn_server(&self.state, &self.listener, &self.queue, &self.servers)
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many tiny_http servers (accept loop plus pump) are alive:
    /// the current one and any predecessors still draining connections.
    pub fn server_count(&self) -> usize {
        lock(&self.servers).len()
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
        // Wake parked waiters (done by request_stop), let queued requests
        // drain, then stop the pumps and accept loops.
        self.queue.close();
        let servers: Vec<_> = lock(&self.servers).drain(..).collect();
        for s in &servers {
            for _ in 0..4 {
                s.unblock();
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        drop(servers);
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

fn spawn_server(
    state: &Arc<State>,
    listener: &TcpListener,
    queue: &Arc<Queue<Job>>,
    servers: &Arc<Mutex<Vec<Arc<tiny_http::Server>>>>,
) -> Result<()> {
    let server = tiny_http::Server::from_listener(listener.try_clone()?, None)
        .map_err(|e| Error::Config(format!("cannot start HTTP server: {e}")))?;
    let server = Arc::new(server);
    let mut spare = Some(listener.try_clone()?);
    lock(servers).push(server.clone());
    let state = state.clone();
    let queue = queue.clone();
    let servers = servers.clone();
    spawn_named("arc-pump", move || {
        // tiny_http's accept loop ends on its first accept error. On Linux
        // that happens after every quiet `io_timeout`, because the listener
        // carries the receive timeout that accepted sockets must inherit
        // (see sys::set_socket_timeouts). A successor server then accepts
        // new connections, while this pump drains the old server's open
        // connections until none can still send a request: two idle
        // timeouts if it never delivered one, else the longest parked
        // request plus two idle timeouts after the last one.
        let idle = state.config.io_timeout * 2;
        let parked = Duration::from_secs_f64(state.config.max_poll_sec);
        let mut accept_dead = false;
        let mut delivered = false;
        let mut last_request = Instant::now();
        let mut backoff = Duration::from_millis(50);
        let mut next_try = Instant::now();
        while !state.stopping() {
            match server.recv_timeout(Duration::from_secs(1)) {
                Ok(Some(rq)) => {
                    last_request = Instant::now();
                    delivered = true;
                    if let Err(Job::Request(rq)) = queue.push(Job::Request(rq)) {
                        let unread = declares_body(&rq);
                        respond(
                            &state,
                            rq,
                            Reply::error(503, "hub is shutting down"),
                            unread,
                        );
                    }
                }
                Ok(None) => {}
                Err(_) if state.stopping() => break,
                Err(e) => {
                    accept_dead = true;
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) {
                        state
                            .log
                            .log(&format!("accept error: {e}; restarting the accept loop"));
                    }
                }
            }
            // Start the successor (retrying with a back-off, for example
            // while descriptors are exhausted); then this pump only drains.
            if accept_dead && Instant::now() >= next_try {
                if let Some(l) = spare.take() {
                    if let Err(e) = spawn_server(&state, &l, &queue, &servers) {
                        state.log.log(&format!("accept restart failed: {e}"));
                        spare = Some(l);
                        next_try = Instant::now() + backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            let drain = if delivered { parked + idle } else { idle };
            if accept_dead && spare.is_none() && last_request.elapsed() > drain {
                break;
            }
        }
        lock(&servers).retain(|s| !Arc::ptr_eq(s, &server));
    })?;
    Ok(())
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
    /// Reply, but the body was not fully read: close and drain off-thread.
    ReplyUnread(Reply),
    Wait(api::Wait),
    Stream(crate::sse::Stream),
}

fn serve(state: &Arc<State>, mut rq: tiny_http::Request) {
    // A body that is never read must not be dropped with the request:
    // tiny_http would drain it on this thread (allocating the whole
    // declared length first), so unread bodies take the `unread` path.
    let mut consumed = !declares_body(&rq);
    let action = catch_unwind(AssertUnwindSafe(|| process(state, &mut rq, &mut consumed)))
        .unwrap_or_else(|_| Action::Reply(Reply::error(500, "internal error: handler panicked")));
    match action {
        Action::Reply(r) => respond(state, rq, r, !consumed),
        Action::ReplyUnread(r) => respond(state, rq, r, true),
        Action::Wait(w) => park(state, rq, w),
        Action::Stream(s) => stream(state, rq, s),
    }
}

/// True if the request announces a body (a length above zero, or chunks).
fn declares_body(rq: &tiny_http::Request) -> bool {
    rq.body_length().is_some_and(|n| n > 0) || header(rq, "Transfer-Encoding").is_some()
}

fn process(state: &Arc<State>, rq: &mut tiny_http::Request, consumed: &mut bool) -> Action {
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
    if route.takes_body() || !*consumed {
        // Routes without a body ignore one, as the reference does, but
        // still read it (under the same size and time limits) so the
        // connection stays in step.
        let body = match read_body(state, rq) {
            Ok(body) => body,
            Err(r) => return Action::ReplyUnread(r),
        };
        *consumed = true;
        if route.takes_body() {
            match parse_body(&body) {
                Ok(map) => call.body = map,
                Err(msg) => return Action::Reply(Reply::error(400, msg)),
            }
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

/// Cross-site and remote-access checks (spec §15.4 items 25–27).
fn guard(state: &State, rq: &tiny_http::Request) -> std::result::Result<(), Reply> {
    let allow_remote = state.allow_remote();
    if !allow_remote && !is_loopback_peer(rq.remote_addr()) {
        return Err(Reply::error(403, "remote access is disabled on this hub"));
    }
    let host = header(rq, "Host");
    if state.config.host_is_loopback() || !allow_remote {
        let hosts = rq
            .headers()
            .iter()
            .filter(|h| h.field.as_str().as_str().eq_ignore_ascii_case("Host"));
        for h in hosts {
            let value = h.value.as_str();
            if !matches!(
                host_name(value).as_str(),
                "127.0.0.1" | "localhost" | "[::1]"
            ) {
                return Err(Reply::error(403, &format!("host not allowed: {value}")));
            }
        }
    }
    if let Some(origin) = header(rq, "Origin") {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
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
        if allow_remote {
            if let Some(h) = host {
                allowed.push(format!("http://{}", h.trim().to_ascii_lowercase()));
            }
        }
        if !allowed.contains(&origin) {
            return Err(Reply::error(403, "cross-origin requests are not allowed"));
        }
    }
    Ok(())
}

/// Reads a POST body per spec §2.3 steps 1–3, with a time bound.
fn read_body(state: &State, rq: &mut tiny_http::Request) -> std::result::Result<Vec<u8>, Reply> {
    let cap = state.config.request_cap();
    let chunked = header(rq, "Transfer-Encoding").is_some();
    let declared = if chunked {
        None
    } else {
        let raw = header(rq, "Content-Length")
            .unwrap_or("0")
            .trim()
            .to_string();
        let n: i128 = match crate::input::py_int(&raw) {
            Some(n) => n as i128,
            None if raw.bytes().all(|b| b.is_ascii_digit()) && !raw.is_empty() => i128::MAX,
            None => {
                let err = if raw.starts_with('-') && crate::input::py_int(&raw[1..]).is_some() {
                    "Content-Length must be >= 0"
                } else {
                    "Content-Length must be an integer"
                };
                return Err(Reply::error(400, err));
            }
        };
        if n < 0 {
            return Err(Reply::error(400, "Content-Length must be >= 0"));
        }
        if n > cap as i128 {
            return Err(Reply::error(400, "request body exceeds max size"));
        }
        Some(n as usize)
    };
    let deadline = Instant::now() + state.config.io_timeout * 2;
    let limit = declared.unwrap_or(cap + 1);
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(1 << 20));
    let mut buf = [0u8; 16 * 1024];
    let reader = rq.as_reader();
    while body.len() < limit {
        if Instant::now() > deadline {
            return Err(Reply::error(408, "request body timed out"));
        }
        let want = buf.len().min(limit - body.len());
        match reader.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Reply::error(408, "request body timed out"));
            }
            Err(e) => {
                return Err(Reply::error(
                    400,
                    &format!("request body could not be read: {e}"),
                ));
            }
        }
    }
    if chunked && body.len() > cap {
        return Err(Reply::error(400, "request body exceeds max size"));
    }
    if let Some(n) = declared {
        if body.len() < n {
            return Err(Reply::error(
                400,
                "request body is shorter than Content-Length",
            ));
        }
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

/// Sends a reply. When the request body was not read (`unread`), the
/// connection is closed and tiny_http's drain of the unread body runs on
/// a throwaway thread, so a lying client never pins a worker.
fn respond(state: &State, rq: tiny_http::Request, reply: Reply, unread: bool) {
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
    if unread {
        let declared: usize = header(&rq, "Content-Length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if declared > MAX_DRAIN {
            return refuse_oversized(rq, headers, reply);
        }
    }
    let len = reply.body.len();
    let response = tiny_http::Response::new(
        tiny_http::StatusCode(reply.status),
        headers,
        std::io::Cursor::new(reply.body),
        Some(len),
        None,
    )
    .with_chunked_threshold(usize::MAX);
    if !unread {
        let _ = rq.respond(response);
        return;
    }
    let _ = std::thread::Builder::new()
        .name("arc-drain".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = rq.respond(response);
        });
}

/// Answers a request that declared an absurd body without ever dropping
/// its body reader: tiny_http drains an unread body by allocating the whole
/// declared remainder at once, which for a lie of many gigabytes would
/// abort the process. The connection's resources are deliberately leaked
/// instead (one descriptor and one parked tiny_http thread per such
/// request); docs/ARCHITECTURE.md records this trade-off.
///
/// tiny_http's upgrade path writes no length and drops `Content-Length` and
/// `Connection` headers, so the last header carries them on its own lines
/// (our own constant text, never client input) so the client can finish
/// reading and close.
fn refuse_oversized(rq: tiny_http::Request, headers: Vec<tiny_http::Header>, reply: Reply) {
    let mut head = tiny_http::Response::empty(tiny_http::StatusCode(reply.status));
    for h in headers {
        head.add_header(h);
    }
    let framing = format!(
        "refused\r\nContent-Length: {}\r\nConnection: close",
        reply.body.len()
    );
    if let Some(h) = header_pair("X-Arc-Body", &framing) {
        head.add_header(h);
    }
    let mut stream = rq.upgrade("close", head);
    let _ = stream.write_all(&reply.body);
    let _ = stream.flush();
    std::mem::forget(stream);
}

fn park(state: &Arc<State>, rq: tiny_http::Request, w: api::Wait) {
    let slot = match state.reserve_parked(w.agent.as_deref()) {
        Ok(slot) => slot,
        Err(reply) => return respond(state, rq, reply, false),
    };
    let st = state.clone();
    let spawned = state.pool.run(move || {
        let reply = catch_unwind(AssertUnwindSafe(|| api::finish_wait(&st, w)))
            .unwrap_or_else(|_| Reply::error(500, "internal error: long-poll panicked"));
        // No longer parked: free the slot before answering, so a client
        // that sees the answer also sees the count go down.
        drop(slot);
        respond(&st, rq, reply, false);
    });
    if let Err(e) = spawned {
        state.log.log(&format!("cannot park a long-poll: {e}"));
    }
}

fn stream(state: &Arc<State>, rq: tiny_http::Request, s: crate::sse::Stream) {
    let slot = match state.reserve_parked(Some(&s.agent_id)) {
        Ok(slot) => slot,
        Err(reply) => return respond(state, rq, reply, false),
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
