/*!
The file relay (spec §10), for agents that cannot open sockets to the host:
they write request files into a shared spool directory and read response
files back.

* [`RelayClient`] writes `requests/<agent>/<id>.json` (atomically, in the
  reference's format) and waits for `responses/<agent>/<id>.json`.
* [`RelayHandle`] serves a spool: a scanning thread (woken by change
  events where the OS has them) claims files by renaming `.json` to
  `.work`, forwards them over HTTP, and writes the responses atomically.
  Requests run concurrently across agents and in order within an agent;
  relayed long-polls are clamped so the reference client's 30 s deadline
  always gets an answer.

Anyone who can write into the spool may be hostile, so the server side
reaches everything below the spool root through [`SpoolDir`] handles: no
symlink under the root is ever followed, only regular files are read,
renamed or deleted, FIFOs and devices never block a read, and whatever is
refused is logged once (`relay: refusing <path>: <reason>`) while every
other agent goes on being served. A `requests/` or `responses/` that is not
a real directory serves nothing until it is one again; a missing one is
re-created. The client side runs inside the sandbox and uses plain paths.
*/

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::client::http_request;
use crate::error::{Error, Result};
use crate::state::State;
use crate::notify::{Alarm, Latch, Pool};
use crate::sys::WatchId;
use crate::sys::dir::{Entry, Kind, SpoolDir, is_refusal};
use crate::wire::{RelayRequest, RelayResponse};

/// How long our own relay client waits beyond the request's own timeout.
pub const CLIENT_MARGIN: Duration = Duration::from_secs(10);

/// The spool-safe form of an agent id: runs of characters outside
/// `[A-Za-z0-9._-]` become `_`; empty becomes `agent`; `.` and `..` become
/// `_` and `__` so no agent can write into the spool root (spec §15 item 34).
pub fn safe_agent_id(agent: &str) -> String {
    let mut out = String::new();
    let mut in_run = false;
    for c in agent.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    match out.as_str() {
        "" => "agent".into(),
        "." => "_".into(),
        ".." => "__".into(),
        _ => out,
    }
}

/// A relay client for one agent (the reference `FileRelayClient`).
#[derive(Debug, Clone)]
pub struct RelayClient {
    pub spool: PathBuf,
    pub agent_id: String,
    pub poll_interval: Duration,
    /// Extra wait beyond a call's own timeout (relay scheduling, file I/O).
    pub margin: Duration,
}

impl RelayClient {
    pub fn new(spool: &Path, agent_id: &str) -> RelayClient {
        RelayClient {
            spool: spool.to_path_buf(),
            agent_id: agent_id.to_string(),
            poll_interval: Duration::from_millis(5),
            margin: CLIENT_MARGIN,
        }
    }

    /// Writes a request file and waits up to `timeout` (plus a margin) for
    /// its response. Transport failures come back as envelopes with status
    /// 597 (spool write), 598 (timeout) or 500 (invalid response), exactly
    /// as the reference client synthesises them.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let safe = safe_agent_id(&self.agent_id);
        let request_id = crate::ids::uuid4_hex();
        let req_dir = self.spool.join("requests").join(&safe);
        let resp_dir = self.spool.join("responses").join(&safe);
        let envelope = RelayRequest {
            request_id: request_id.clone(),
            agent_id: self.agent_id.clone(),
            method: method.to_uppercase(),
            path: path.to_string(),
            body,
            created_at: crate::time::now(),
        };
        let written = std::fs::create_dir_all(&req_dir)
            .and_then(|_| std::fs::create_dir_all(&resp_dir))
            .map_err(Error::from)
            .and_then(|_| {
                let text = crate::wire::to_python_json(&envelope, true);
                crate::paths::write_atomic(
                    &req_dir.join(format!("{request_id}.json")),
                    text.as_bytes(),
                )
            });
        if let Err(e) = written {
            return Ok(failure(
                &request_id,
                597,
                &format!("relay spool write failed: {e}"),
                None,
            ));
        }
        let resp_path = resp_dir.join(format!("{request_id}.json"));
        let deadline = Instant::now() + timeout + self.margin;
        let mut last_bad = None;
        loop {
            match std::fs::read(&resp_path) {
                Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v @ Value::Object(_)) => return Ok(v),
                    Ok(other) => {
                        return Ok(failure(
                            &request_id,
                            500,
                            "relay produced invalid response payload",
                            Some(other),
                        ));
                    }
                    // A partial or unreadable file: retry until the deadline.
                    Err(e) => last_bad = Some(e.to_string()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => last_bad = Some(e.to_string()),
            }
            if Instant::now() >= deadline {
                let msg = match last_bad {
                    Some(detail) => {
                        format!("relay timed out waiting for response (last read error: {detail})")
                    }
                    None => "relay timed out waiting for response".to_string(),
                };
                return Ok(failure(&request_id, 598, &msg, None));
            }
            crate::notify::pause(self.poll_interval);
        }
    }
}

fn failure(request_id: &str, status: u16, error: &str, body: Option<Value>) -> Value {
    let mut v = json!({
        "request_id": request_id,
        "ok": false,
        "status": status,
        "completed_at": crate::time::now(),
        "error": error,
    });
    if let Some(b) = body {
        v["body"] = b;
    }
    v
}

/// Settings of a relay server.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub base_url: String,
    pub spool: PathBuf,
    pub poll_interval: Duration,
    pub request_timeout: Duration,
    /// Relayed long-polls wait at most this long (spec §15 item 31).
    pub max_wait_sec: f64,
    /// `.work` and response files older than this are deleted.
    pub retention: Duration,
    /// Request files larger than this are refused with a 400 response.
    pub max_request_bytes: u64,
}

impl RelayConfig {
    pub fn new(base_url: &str, spool: &Path) -> RelayConfig {
        RelayConfig {
            base_url: base_url.trim_end_matches('/').to_string(),
            spool: spool.to_path_buf(),
            poll_interval: Duration::from_millis(10),
            request_timeout: Duration::from_secs(30),
            max_wait_sec: 20.0,
            retention: Duration::from_secs(3600),
            max_request_bytes: 8_385_536 + 65_536,
        }
    }
}

/// Counters of a running relay's scanner, for tests and diagnostics.
#[derive(Debug, Clone, Default)]
pub struct RelayStats {
    /// Scans completed.
    pub scans: u64,
    /// Directory listings by the scanner: `requests/` and agent
    /// directories (retention sweeps are not counted).
    pub listings: u64,
    /// Agent directories looked at with one no-follow `stat` each.
    pub probes: u64,
    /// Agent directories known.
    pub agents: usize,
    /// Of those, how many are looked at every scan (recent activity).
    pub hot: usize,
    /// The first refusal lines logged (at most [`MAX_REFUSAL_LINES`]).
    pub refused: Vec<String>,
}

/// How many refusal lines [`RelayStats::refused`] keeps.
pub const MAX_REFUSAL_LINES: usize = 256;

/// A running relay: one scanning thread plus an elastic pool of request
/// threads (at most one in flight per agent directory, so each agent's
/// requests keep their order while agents never wait for each other).
pub struct RelayHandle {
    stop: Arc<Latch>,
    shared: Arc<Shared>,
    scanner: Option<std::thread::JoinHandle<()>>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl RelayHandle {
    /// Starts the hub's built-in relay on its configured spool, forwarding
    /// to the hub's own listening address.
    pub fn start_builtin(state: Arc<State>) -> Result<RelayHandle> {
        let c = &state.config;
        let mut cfg = RelayConfig::new(
            &crate::config::client_url(&c.host, state.port()),
            &crate::paths::absolute(&c.spool_dir)?,
        );
        cfg.poll_interval = c.relay_poll;
        cfg.max_wait_sec = c.relay_max_wait_sec;
        cfg.retention = c.relay_retention;
        cfg.max_request_bytes = c.request_cap() as u64 + 65_536;
        RelayHandle::start(cfg)
    }

    /// Starts a relay with `cfg`. Fails only if the spool root cannot be
    /// created or opened; a `requests/` or `responses/` that is not a real
    /// directory is refused (and logged) until it is one.
    pub fn start(cfg: RelayConfig) -> Result<RelayHandle> {
        let stop = Latch::new();
        let shared = Arc::new(Shared::new());
        let mut spool = Spool::open(&cfg.spool)?;
        spool.refresh(&shared);
        let pool = Pool::new("arc-relay", 256 * 1024, Duration::from_secs(30));
        // Where the OS can tell us about new files, a watcher thread rings
        // the scanner's bell and says where to look, so idle scans can be
        // rare and cheap.
        let events = crate::sys::DirEvents::new().map(Arc::new);
        let watcher = match &events {
            None => None,
            Some(ev) => {
                let (ev, stop, shared) = (ev.clone(), stop.clone(), shared.clone());
                Some(
                    std::thread::Builder::new()
                        .name("arc-relay-watch".into())
                        .spawn(move || watch_loop(&ev, &stop, &shared))?,
                )
            }
        };
        let scanner = {
            let stop = stop.clone();
            let mut scanner = Scanner::new(cfg, shared.clone(), pool, events, spool);
            std::thread::Builder::new()
                .name("arc-relay-scan".into())
                .spawn(move || scanner.run(&stop))?
        };
        Ok(RelayHandle {
            stop,
            shared,
            scanner: Some(scanner),
            watcher,
        })
    }

    /// Stops scanning and waits (up to 5 s) for requests in flight.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.set();
        self.shared.bell.ring();
        for t in [self.scanner.take(), self.watcher.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !lock(&self.shared.busy).is_empty() && Instant::now() < deadline {
            crate::notify::pause(Duration::from_millis(10));
        }
    }

    /// Blocks until [`RelayHandle::request_stop`] is called elsewhere.
    pub fn wait(mut self) {
        while !self.stop.wait_for(Duration::from_secs(3600)) {}
        self.shutdown();
    }

    /// A handle that can stop this relay from another thread.
    pub fn stopper(&self) -> Arc<Latch> {
        self.stop.clone()
    }

    /// The scanner's counters so far.
    pub fn stats(&self) -> RelayStats {
        lock(&self.shared.stats).clone()
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if self.scanner.is_some() {
            self.shutdown();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the scanner, the watcher and the request jobs share.
struct Shared {
    bell: Arc<Alarm>,
    /// Agent directories with a request in flight.
    busy: Mutex<HashSet<String>>,
    /// Where the next scan should look first.
    wakes: Mutex<Wakes>,
    /// Entries already reported as refused, so each is logged once.
    refused: Mutex<Refused>,
    stats: Mutex<RelayStats>,
}

/// Hints for the next scan.
#[derive(Default)]
struct Wakes {
    /// Agents whose request just finished (their next one may wait).
    agents: HashSet<String>,
    /// Watched directories that saw events (`None`: events were lost),
    /// and whether the directory itself went away.
    events: HashMap<Option<WatchId>, bool>,
}

/// The refused entries, by path relative to the spool root.
#[derive(Default)]
struct Refused {
    seen: BTreeSet<String>,
    full: bool,
}

/// How many refused entries are remembered (and so logged once each).
const MAX_REFUSED: usize = 10_000;

impl Shared {
    fn new() -> Shared {
        Shared {
            bell: Alarm::new(),
            busy: Mutex::default(),
            wakes: Mutex::default(),
            refused: Mutex::default(),
            stats: Mutex::default(),
        }
    }

    /// Logs `relay: refusing <rel>: <reason>` the first time `rel` is
    /// refused, and never again while it stays there.
    fn refuse(&self, rel: &str, reason: &str) {
        self.report(rel, format!("relay: refusing {rel}: {reason}"));
    }

    /// Reports why `rel` cannot be used: a refusal, or another failure (a
    /// full disk, no permission), once per entry either way. An entry
    /// that vanished meanwhile is no failure.
    fn fail(&self, rel: &str, e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return;
        }
        if is_refusal(e) {
            self.refuse(rel, &e.to_string());
        } else {
            self.report(rel, format!("relay: cannot use {rel}: {e}"));
        }
    }

    /// Logs `line` (stderr) unless `rel` was reported already.
    fn report(&self, rel: &str, line: String) {
        let line = {
            let mut r = lock(&self.refused);
            if r.seen.contains(rel) {
                return;
            }
            if r.seen.len() < MAX_REFUSED {
                r.seen.insert(rel.to_string());
                line
            } else if !std::mem::replace(&mut r.full, true) {
                "relay: too many refused spool entries; no longer naming each".to_string()
            } else {
                return;
            }
        };
        eprintln!("{line}");
        let mut stats = lock(&self.stats);
        if stats.refused.len() < MAX_REFUSAL_LINES {
            stats.refused.push(line);
        }
    }

    /// Forgets the report about `rel` itself (it is fine now).
    fn forget(&self, rel: &str) {
        let mut r = lock(&self.refused);
        if r.seen.remove(rel) {
            r.full = false;
        }
    }

    /// Forgets reports below the directory `dir` (relative to the spool
    /// root) whose first name there is not in `present` any more. With
    /// `ext`, only names with that extension are considered (a listing
    /// that looked at those only).
    fn forget_missing(&self, dir: &str, present: &HashSet<String>, ext: Option<&str>) {
        let prefix = format!("{dir}/");
        let mut r = lock(&self.refused);
        let gone: Vec<String> = r
            .seen
            .range(prefix.clone()..)
            .take_while(|k| k.starts_with(&prefix))
            .filter(|k| {
                let first = k[prefix.len()..].split('/').next().unwrap_or_default();
                ext.is_none_or(|x| has_ext(first, x)) && !present.contains(first)
            })
            .cloned()
            .collect();
        for k in gone {
            r.seen.remove(&k);
            r.full = false;
        }
    }
}

/// The spool's root, `requests/` and `responses/`, each verified. The
/// root is the operator's path and may be reached through symlinks;
/// below it nothing is followed.
struct Spool {
    path: PathBuf,
    root: Option<SpoolDir>,
    requests: Option<Arc<SpoolDir>>,
    responses: Option<Arc<SpoolDir>>,
}

impl Spool {
    /// Creates the spool root, `requests/` and `responses/` if needed and
    /// opens the root. Fails if one cannot be created; one that exists but
    /// is not a real directory is left to [`Spool::refresh`] to refuse.
    fn open(path: &Path) -> Result<Spool> {
        std::fs::create_dir_all(path)?;
        let root = SpoolDir::open_root(path)?;
        for sub in ["requests", "responses"] {
            match root.open_or_create_subdir(sub) {
                Err(e) if !is_refusal(&e) => return Err(e.into()),
                _ => {}
            }
        }
        Ok(Spool {
            path: path.to_path_buf(),
            root: Some(root),
            requests: None,
            responses: None,
        })
    }

    /// Re-checks the three directories (a few `stat`s): a missing one is
    /// re-created, one that is not a real directory is refused and left
    /// alone. True if `requests/` was (re)opened or lost.
    fn refresh(&mut self, shared: &Shared) -> bool {
        if !self.root.as_ref().is_some_and(|r| r.is_still(&self.path)) {
            self.requests = None;
            self.responses = None;
            // A deleted spool is re-created; failures are retried next scan.
            let _ = std::fs::create_dir_all(&self.path);
            self.root = SpoolDir::open_root(&self.path).ok();
        }
        let Some(root) = &self.root else {
            return true;
        };
        let changed = refresh_sub(root, "requests", &mut self.requests, shared);
        refresh_sub(root, "responses", &mut self.responses, shared);
        changed
    }
}

/// Keeps `slot` on the real directory `root/name`; true if it changed.
fn refresh_sub(
    root: &SpoolDir,
    name: &str,
    slot: &mut Option<Arc<SpoolDir>>,
    shared: &Shared,
) -> bool {
    if slot.as_ref().is_some_and(|d| d.is_at(root, name)) {
        return false;
    }
    let was = slot.is_some();
    *slot = match root.open_or_create_subdir(name) {
        Ok(d) => {
            shared.forget(name);
            Some(Arc::new(d))
        }
        Err(e) => {
            shared.fail(name, &e);
            None
        }
    };
    was || slot.is_some()
}

fn watch_loop(ev: &crate::sys::DirEvents, stop: &Latch, shared: &Shared) {
    while !stop.is_set() {
        let seen = ev.wait(WATCH_TICK);
        if seen.is_empty() {
            continue;
        }
        {
            let mut w = lock(&shared.wakes);
            for e in seen {
                *w.events.entry(e.watch).or_default() |= e.gone;
            }
        }
        shared.bell.ring();
    }
}

/// A claimable request file.
struct Pending {
    name: String,
    created_at: String,
    mtime: SystemTime,
}

/// What the scanner knows about one agent directory.
#[derive(Default)]
struct AgentInfo {
    /// The directory's mtime when a listing last found nothing to claim,
    /// and when that listing was.
    quiet: Option<(SystemTime, Instant)>,
    watch: Option<WatchId>,
}

/// The agent directories under `requests/`, and which to look at when.
///
/// Each scan looks at the *nudged* directories (new, woken by a change
/// event or by the end of their request), at the *hot* ones (no change
/// watch, and recently active or with a fresh mtime), and at a bounded
/// round-robin slice of the rest, so an idle spool costs a fixed number of
/// `stat`s per scan however many directories it holds. With change events
/// a new file in a cold directory is looked at at once; without them it is
/// found within one sweep of the slices.
#[derive(Default)]
struct Agents {
    /// `requests/`'s mtime at its last listing, and when that was.
    listed: Option<(Option<SystemTime>, Instant)>,
    requests_watch: Option<WatchId>,
    /// Known agent directories, in round-robin order.
    order: Vec<String>,
    info: HashMap<String, AgentInfo>,
    /// Unwatched agents looked at every scan until the given time.
    hot: HashMap<String, Instant>,
    /// Agents to look at, and list whatever their mtime says, next scan
    /// (two changes within one timestamp tick look like one).
    nudged: HashSet<String>,
    by_watch: HashMap<WatchId, String>,
    cursor: usize,
}

impl Agents {
    /// Looks at `name` every scan until `until`, unless a change watch
    /// will say when to look.
    fn heat(&mut self, name: &str, until: Instant) {
        if self.info.get(name).is_some_and(|i| i.watch.is_none()) {
            let at = self.hot.entry(name.to_string()).or_insert(until);
            *at = (*at).max(until);
        }
    }

    /// Has the next scan look at `name` and list it.
    fn nudge(&mut self, name: &str, now: Instant) {
        if self.info.contains_key(name) {
            self.nudged.insert(name.to_string());
            self.heat(name, now + HOT_FOR);
        }
    }

    /// True if `requests/` should be listed again.
    fn listing_due(&self, requests: &SpoolDir) -> bool {
        let Some((mtime, at)) = self.listed else {
            return true;
        };
        let now = requests.mtime().ok();
        now != mtime
            || at.elapsed() >= RELIST_EVERY
            || (now.is_none_or(|m| !settled(m)) && at.elapsed() >= RECHECK)
    }

    /// Takes in a fresh listing of `requests/`'s directories.
    fn update(&mut self, dirs: Vec<Entry>, mtime: Option<SystemTime>) {
        let now = Instant::now();
        let first = self.listed.is_none();
        let present: HashSet<String> = dirs.iter().map(|e| e.name.clone()).collect();
        self.order.retain(|n| present.contains(n));
        self.info.retain(|n, _| present.contains(n));
        self.hot.retain(|n, _| present.contains(n));
        self.nudged.retain(|n| present.contains(n));
        self.by_watch.retain(|_, n| present.contains(n));
        for e in dirs {
            if self.info.contains_key(&e.name) {
                continue;
            }
            self.order.push(e.name.clone());
            self.info.insert(e.name.clone(), AgentInfo::default());
            // At start every directory is cold unless it changed lately;
            // the slices list each once, spread over a sweep.
            if !first {
                self.nudge(&e.name, now);
            } else if let Some(left) = unsettled_for(e.mtime) {
                self.heat(&e.name, now + left);
            }
        }
        self.listed = Some((mtime, now));
    }

    /// Applies the hints gathered since the last scan.
    fn wake(&mut self, wakes: Wakes) {
        let now = Instant::now();
        for name in wakes.agents {
            self.nudge(&name, now);
        }
        for (watch, gone) in wakes.events {
            let Some(name) = watch.and_then(|w| self.by_watch.get(&w)).cloned() else {
                continue;
            };
            if gone {
                // Its watch no longer shows this name; re-add on next listing.
                self.by_watch.retain(|_, n| *n != name);
                if let Some(info) = self.info.get_mut(&name) {
                    info.watch = None;
                }
            }
            self.nudge(&name, now);
        }
    }

    /// The agents to look at this scan: the nudged and hot ones, then a
    /// slice of the rest; none that has a request in flight.
    fn picks(&mut self, busy: &HashSet<String>) -> Vec<String> {
        let now = Instant::now();
        self.hot.retain(|_, until| *until > now);
        let mut out: Vec<String> = self
            .hot
            .keys()
            .chain(self.nudged.iter().filter(|n| !self.hot.contains_key(*n)))
            .filter(|n| !busy.contains(*n))
            .cloned()
            .collect();
        let n = self.order.len();
        let take = COLD_SLICE.min(n);
        for i in 0..take {
            let name = &self.order[(self.cursor + i) % n];
            let picked = self.hot.contains_key(name) || self.nudged.contains(name);
            if !picked && !busy.contains(name) {
                out.push(name.clone());
            }
        }
        self.cursor = if n == 0 { 0 } else { (self.cursor + take) % n };
        out
    }
}

/// Work counted during one scan.
#[derive(Default)]
struct ScanCount {
    listings: u64,
    probes: u64,
}

/// The scanning thread's state.
struct Scanner {
    cfg: RelayConfig,
    shared: Arc<Shared>,
    pool: Arc<Pool>,
    events: Option<Arc<crate::sys::DirEvents>>,
    spool: Spool,
    agents: Agents,
    /// `created_at` of request files, read once per (agent, name, mtime).
    created: HashMap<(String, String), (SystemTime, String)>,
    last_work: Instant,
    next_cleanup: Instant,
}

impl Scanner {
    fn new(
        cfg: RelayConfig,
        shared: Arc<Shared>,
        pool: Arc<Pool>,
        events: Option<Arc<crate::sys::DirEvents>>,
        spool: Spool,
    ) -> Scanner {
        let mut agents = Agents::default();
        if let (Some(ev), Some(req)) = (&events, &spool.requests) {
            agents.requests_watch = ev.watch(req);
        }
        Scanner {
            cfg,
            shared,
            pool,
            events,
            spool,
            agents,
            created: HashMap::new(),
            last_work: Instant::now(),
            next_cleanup: Instant::now(),
        }
    }

    fn run(&mut self, stop: &Latch) {
        let cleanup_every =
            (self.cfg.retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        while !stop.is_set() {
            if Instant::now() >= self.next_cleanup {
                cleanup(&self.spool, self.cfg.retention, &self.shared);
                self.next_cleanup = Instant::now() + cleanup_every;
            }
            let count = self.scan();
            {
                let mut s = lock(&self.shared.stats);
                s.scans += 1;
                s.listings += count.listings;
                s.probes += count.probes;
                s.agents = self.agents.order.len();
                s.hot = self.agents.hot.len();
            }
            // Scan at full speed while requests flow. After a quiet spell,
            // relax: with change events, new files ring the bell at once
            // and the slow scan is only a safety net (for mounts that
            // deliver no events); without them, scan twice as slowly,
            // still well inside the round-trip target.
            let interval = if self.last_work.elapsed() < Duration::from_secs(2) {
                self.cfg.poll_interval
            } else if self.events.is_some() {
                IDLE_SCAN_WITH_EVENTS.max(self.cfg.poll_interval)
            } else {
                self.cfg.poll_interval * 2
            };
            self.shared.bell.sleep(interval);
        }
    }

    /// One scan: re-check the spool, list `requests/` if it changed, look
    /// at this scan's agent directories and claim one request from each
    /// idle agent that has one.
    fn scan(&mut self) -> ScanCount {
        let mut count = ScanCount::default();
        if self.spool.refresh(&self.shared) {
            self.agents = Agents::default();
            if let (Some(ev), Some(req)) = (&self.events, &self.spool.requests) {
                self.agents.requests_watch = ev.watch(req);
            }
        }
        if self.created.len() > 100_000 {
            self.created.clear(); // files removed behind our back; start over
        }
        // Both are needed: a request is served only if its answer can be
        // written inside the spool.
        let (Some(requests), Some(responses)) =
            (self.spool.requests.clone(), self.spool.responses.clone())
        else {
            return count;
        };
        let wakes = std::mem::take(&mut *lock(&self.shared.wakes));
        let lost = wakes.events.contains_key(&None);
        let touched = self
            .agents
            .requests_watch
            .is_some_and(|w| wakes.events.contains_key(&Some(w)));
        if lost || touched || self.agents.listing_due(&requests) {
            self.relist(&requests, &mut count);
        }
        self.agents.wake(wakes);
        let busy = lock(&self.shared.busy).clone();
        for name in self.agents.picks(&busy) {
            count.probes += 1;
            let Some((dir, next)) = self.probe(&requests, &name, &mut count) else {
                continue;
            };
            if !self.claim(&name, dir, &responses, next) {
                break;
            }
        }
        count
    }

    /// Lists `requests/` and refuses what is not a real directory.
    fn relist(&mut self, requests: &SpoolDir, count: &mut ScanCount) {
        let mtime = requests.mtime().ok();
        let Ok(entries) = requests.list(&|_| true) else {
            return;
        };
        count.listings += 1;
        let names: HashSet<String> = entries.iter().map(|e| e.name.clone()).collect();
        let mut dirs = Vec::new();
        for e in entries {
            if e.kind == Kind::Dir {
                dirs.push(e);
            } else {
                self.shared
                    .refuse(&format!("requests/{}", e.name), e.kind.refusal());
            }
        }
        self.shared.forget_missing("requests", &names, None);
        self.agents.update(dirs, mtime);
    }

    /// Looks at one agent directory: one `stat`, plus a listing if it
    /// changed. Returns its oldest claimable request.
    fn probe(
        &mut self,
        requests: &SpoolDir,
        name: &str,
        count: &mut ScanCount,
    ) -> Option<(Arc<SpoolDir>, Pending)> {
        let nudged = self.agents.nudged.remove(name);
        let entry = requests.stat(name).ok()?;
        if entry.kind != Kind::Dir {
            self.shared
                .refuse(&format!("requests/{name}"), entry.kind.refusal());
            return None;
        }
        let now = Instant::now();
        if let Some(left) = unsettled_for(entry.mtime) {
            self.agents.heat(name, now + left);
        }
        let info = self.agents.info.get(name)?;
        if let Some((m, at)) = info.quiet {
            if !nudged && m == entry.mtime && (settled(m) || at.elapsed() < RECHECK) {
                return None;
            }
        }
        let dir = match requests.open_subdir(name) {
            Ok(d) => {
                self.shared.forget(&format!("requests/{name}"));
                Arc::new(d)
            }
            Err(e) => {
                self.shared.fail(&format!("requests/{name}"), &e);
                return None;
            }
        };
        count.listings += 1;
        self.watch(name, &dir);
        let first = self.oldest(name, &dir);
        if let Some(info) = self.agents.info.get_mut(name) {
            info.quiet = first.is_none().then_some((entry.mtime, now));
        }
        first.map(|p| (dir, p))
    }

    /// Adds a change watch on an agent directory if it has none yet.
    fn watch(&mut self, name: &str, dir: &SpoolDir) {
        let Some(ev) = &self.events else { return };
        let Some(info) = self.agents.info.get_mut(name) else {
            return;
        };
        if info.watch.is_some() || self.agents.by_watch.len() >= MAX_WATCHES {
            return;
        }
        if let Some(w) = ev.watch(dir) {
            info.watch = Some(w);
            self.agents.by_watch.insert(w, name.to_string());
            // Changes from now on ring the bell; the listing that follows
            // sees everything before.
            self.agents.hot.remove(name);
        }
    }

    /// The oldest pending request of one agent (by the envelope's
    /// `created_at`, then modification time, then name). Entries named
    /// `*.json` that are not regular files are refused.
    fn oldest(&mut self, agent: &str, dir: &SpoolDir) -> Option<Pending> {
        let files = dir.list(&|n| has_ext(n, "json")).ok()?;
        let rel = format!("requests/{agent}");
        let names: HashSet<String> = files.iter().map(|e| e.name.clone()).collect();
        self.shared.forget_missing(&rel, &names, Some("json"));
        let mut best: Option<Pending> = None;
        for f in files {
            if f.kind != Kind::File {
                self.shared
                    .refuse(&format!("{rel}/{}", f.name), f.kind.refusal());
                continue;
            }
            // Each file is parsed once (per modification), not per scan.
            let key = (agent.to_string(), f.name.clone());
            let created_at = match self.created.get(&key) {
                Some((m, c)) if *m == f.mtime => c.clone(),
                _ => {
                    let c = read_created_at(dir, &f.name);
                    self.created.insert(key, (f.mtime, c.clone()));
                    c
                }
            };
            let p = Pending {
                name: f.name,
                created_at,
                mtime: f.mtime,
            };
            let earlier = best.as_ref().is_none_or(|b| {
                (&p.created_at, p.mtime, &p.name) < (&b.created_at, b.mtime, &b.name)
            });
            if earlier {
                best = Some(p);
            }
        }
        best
    }

    /// Claims `next` by renaming it to `.work` and hands it to a pool
    /// thread. False if no thread could be started (stop this scan).
    fn claim(
        &mut self,
        agent: &str,
        dir: Arc<SpoolDir>,
        responses: &Arc<SpoolDir>,
        next: Pending,
    ) -> bool {
        let safe = safe_agent_id(agent);
        let answers = match responses.open_or_create_subdir(&safe) {
            Ok(d) => {
                self.shared.forget(&format!("responses/{safe}"));
                d
            }
            Err(e) => {
                // Not served while its answer could not be written.
                self.shared.fail(&format!("responses/{safe}"), &e);
                return true;
            }
        };
        let stem = file_stem(&next.name);
        let work = format!("{stem}.work");
        self.created.remove(&(agent.to_string(), next.name.clone()));
        if dir.rename(&next.name, &work).is_err() {
            return true; // another relay claimed it
        }
        self.last_work = Instant::now();
        self.agents.heat(agent, self.last_work + HOT_FOR);
        lock(&self.shared.busy).insert(agent.to_string());
        let job = Job {
            cfg: self.cfg.clone(),
            agent: agent.to_string(),
            dir: dir.clone(),
            work: work.clone(),
            responses: responses.clone(),
            answers,
            safe,
            shared: self.shared.clone(),
        };
        let done = Done {
            shared: self.shared.clone(),
            agent: agent.to_string(),
        };
        let spawned = self.pool.run(move || {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()));
            drop(done);
        });
        if spawned.is_err() {
            // Unclaim it so a later scan serves it (the job, and with it
            // the busy mark, was dropped unrun), and give the system a
            // moment before trying again.
            let _ = dir.rename(&work, &next.name);
            crate::notify::pause(Duration::from_millis(100));
            return false;
        }
        true
    }
}

/// Marks an agent directory idle again when its job ends, however it
/// ends (finished, panicked, or never started), and wakes the scanner to
/// look at that agent first.
struct Done {
    shared: Arc<Shared>,
    agent: String,
}

impl Drop for Done {
    fn drop(&mut self) {
        lock(&self.shared.busy).remove(&self.agent);
        lock(&self.shared.wakes).agents.insert(self.agent.clone());
        self.shared.bell.ring();
    }
}

/// The idle safety-net scan interval when change events are available.
const IDLE_SCAN_WITH_EVENTS: Duration = Duration::from_millis(100);

/// How long the watcher blocks before checking for a stop.
const WATCH_TICK: Duration = Duration::from_millis(200);

/// How old a directory's mtime must be before an unchanged mtime is
/// trusted to mean "nothing new inside" (file systems with coarse, up to
/// 2 s, timestamps).
const SETTLED: Duration = Duration::from_secs(5);

/// While its mtime is not settled, an unchanged directory is listed again
/// at most this often.
const RECHECK: Duration = Duration::from_millis(200);

/// How long an agent stays hot after activity.
const HOT_FOR: Duration = Duration::from_secs(10);

/// Cold agent directories looked at per scan. At the idle scan interval
/// with events (100 ms) a sweep of 10,000 takes about 4 s.
const COLD_SLICE: usize = 256;

/// `requests/` is listed at least this often, even if unchanged.
const RELIST_EVERY: Duration = Duration::from_secs(30);

/// At most this many agent directories get a change watch (the watch
/// budget is shared by every program of the user).
const MAX_WATCHES: usize = 8192;

/// True unless `m` is within [`SETTLED`] of now (either side, for clock
/// skew on shared mounts).
fn settled(m: SystemTime) -> bool {
    unsettled_for(m).is_none()
}

/// How long until `m` is settled, if it is not yet.
fn unsettled_for(m: SystemTime) -> Option<Duration> {
    let now = SystemTime::now();
    let gap = now.duration_since(m).unwrap_or_else(|e| e.duration());
    SETTLED.checked_sub(gap).filter(|left| !left.is_zero())
}

fn has_ext(name: &str, ext: &str) -> bool {
    Path::new(name).extension().and_then(|e| e.to_str()) == Some(ext)
}

fn file_stem(name: &str) -> String {
    Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The envelope's `created_at`, read from a regular file of at most one
/// MiB (a bigger file is refused when processed anyway).
fn read_created_at(dir: &SpoolDir, name: &str) -> String {
    dir.read_regular(name, 1 << 20)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|v| {
            v.get("created_at")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// One claimed request, served on a pool thread.
struct Job {
    cfg: RelayConfig,
    agent: String,
    /// The agent's request directory, as verified when it was claimed.
    dir: Arc<SpoolDir>,
    work: String,
    responses: Arc<SpoolDir>,
    /// `responses/<safe>`, verified when the request was claimed.
    answers: SpoolDir,
    safe: String,
    shared: Arc<Shared>,
}

impl Job {
    /// Serves the claimed request file and writes its response.
    fn run(&self) {
        let request_id = file_stem(&self.work);
        let envelope = self
            .read()
            .and_then(|bytes| parse_envelope(&bytes, &request_id, &self.agent));
        let response = match envelope {
            Err(reason) => RelayResponse {
                request_id: request_id.clone(),
                ok: false,
                status: 400,
                body: None,
                completed_at: crate::time::now(),
                error: Some(format!("invalid relay request: {reason}")),
            },
            Ok(req) => forward(&self.cfg, &req),
        };
        let text = crate::wire::to_python_json(&response, true);
        let name = format!("{request_id}.json");
        // The answer goes only where the agent's response directory still
        // is: it may have been moved while the request was served.
        if !self.answers.is_at(&self.responses, &self.safe) {
            let rel = format!("responses/{}", self.safe);
            self.shared
                .refuse(&rel, "was moved while a request was served");
            return;
        }
        if let Err(e) = self.answers.write_atomic(&name, text.as_bytes()) {
            self.shared
                .fail(&format!("responses/{}/{name}", self.safe), &e);
        }
    }

    /// The claimed file's bytes, bounded by the configured maximum; the
    /// error is the reason the 400 response gives.
    fn read(&self) -> std::result::Result<Vec<u8>, String> {
        let max = self.cfg.max_request_bytes;
        self.dir.read_regular(&self.work, max).map_err(|e| {
            if e.kind() == std::io::ErrorKind::FileTooLarge {
                return format!("request file exceeds {max} bytes");
            }
            if is_refusal(&e) {
                let rel = format!("requests/{}/{}", self.agent, self.work);
                self.shared.refuse(&rel, &e.to_string());
            }
            e.to_string()
        })
    }
}

/// Validates a request envelope (spec §10.3 step 3).
fn parse_envelope(
    bytes: &[u8],
    stem: &str,
    agent_dir: &str,
) -> std::result::Result<RelayRequest, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let Value::Object(env) = v else {
        return Err("request envelope must be a JSON object".into());
    };
    let text = |k: &str| -> Option<String> {
        env.get(k)
            .and_then(crate::input::scalar_string)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let request_id = text("request_id").unwrap_or_else(|| stem.to_string());
    let agent_id = text("agent_id").unwrap_or_else(|| agent_dir.to_string());
    let method = text("method")
        .map(|m| m.to_uppercase())
        .ok_or("request envelope missing method")?;
    let path = env
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !path.starts_with('/') {
        return Err("request path must start with '/'".into());
    }
    // A stream never ends, so it would hold this agent's queue forever.
    if path.split('?').next() == Some("/v1/stream") {
        return Err("event streams cannot be relayed; long-poll /v1/events instead".into());
    }
    let body = match env.get("body") {
        None | Some(Value::Null) => None,
        Some(b @ Value::Object(_)) => Some(b.clone()),
        Some(_) => return Err("request body must be a JSON object when provided".into()),
    };
    Ok(RelayRequest {
        request_id,
        agent_id,
        method,
        path,
        body,
        created_at: text("created_at").unwrap_or_default(),
    })
}

/// Caps the `timeout` of relayed long-polls so an unchanged client with a
/// 30 s deadline always gets an answer (spec §15 item 31). Returns the new
/// path and the wait it may take.
pub fn clamp_long_poll(path: &str, max_wait: f64) -> (String, f64) {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let polls = route == "/v1/events" || route == "/v1/messages" || route.starts_with("/v1/inbox/");
    if !polls || query.is_empty() {
        return (path.to_string(), 0.0);
    }
    let mut wait = 0.0;
    let parts: Vec<String> = query
        .split('&')
        .map(|part| match part.split_once('=') {
            Some(("timeout", v)) => {
                let t = crate::input::py_float(&crate::input::form_decode(v)).unwrap_or(0.0);
                let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 60.0) };
                wait = t.min(max_wait);
                if t > max_wait {
                    format!("timeout={max_wait}")
                } else {
                    part.to_string()
                }
            }
            _ => part.to_string(),
        })
        .collect();
    (format!("{route}?{}", parts.join("&")), wait)
}

fn forward(cfg: &RelayConfig, req: &RelayRequest) -> RelayResponse {
    let (path, wait) = clamp_long_poll(&req.path, cfg.max_wait_sec);
    let timeout = cfg
        .request_timeout
        .max(Duration::from_secs_f64(wait) + Duration::from_secs(10));
    let body_bytes = req.body.as_ref().map(|b| b.to_string().into_bytes());
    let (status, body) = match http_request(
        &cfg.base_url,
        &req.method,
        &path,
        body_bytes.as_deref(),
        &[],
        timeout,
    ) {
        Ok(r) => {
            let text = r.text();
            let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
            (r.status, body)
        }
        Err(e @ Error::Transport(_)) => (599, json!({"ok": false, "error": e.detail()})),
        Err(e) => (
            599,
            json!({"ok": false, "error": format!("connection error: {e}")}),
        ),
    };
    let (ok, error) = match &body {
        Value::Object(m) => (
            m.get("ok").is_some_and(|v| v.as_bool().unwrap_or(false)),
            m.get("error").and_then(Value::as_str).map(str::to_string),
        ),
        _ if (200..300).contains(&status) => (true, None),
        other => (
            false,
            Some(match other {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            }),
        ),
    };
    RelayResponse {
        request_id: req.request_id.clone(),
        ok,
        status,
        body: Some(body),
        completed_at: crate::time::now(),
        error: error.filter(|e| !e.is_empty()),
    }
}

/// Deletes `.work` and response files older than `retention`: regular
/// files only, in real agent directories inside the spool only, ignoring
/// failures (some mounts refuse deletes; the spool stays correct anyway).
fn cleanup(spool: &Spool, retention: Duration, shared: &Shared) {
    let now = SystemTime::now();
    let subs = [
        ("requests", &spool.requests, "work"),
        ("responses", &spool.responses, "json"),
    ];
    for (sub, dir, ext) in subs {
        let Some(dir) = dir else { continue };
        let Ok(agents) = dir.list(&|_| true) else {
            continue;
        };
        if sub == "responses" {
            let names = agents.iter().map(|e| e.name.clone()).collect();
            shared.forget_missing(sub, &names, None);
        }
        for a in agents {
            let rel = format!("{sub}/{}", a.name);
            if a.kind != Kind::Dir {
                shared.refuse(&rel, a.kind.refusal());
                continue;
            }
            let agent = match dir.open_subdir(&a.name) {
                Ok(d) => d,
                Err(e) => {
                    shared.fail(&rel, &e);
                    continue;
                }
            };
            let Ok(files) = agent.list(&|n| has_ext(n, ext)) else {
                continue;
            };
            let names = files.iter().map(|e| e.name.clone()).collect();
            shared.forget_missing(&rel, &names, Some(ext));
            for f in files {
                if f.kind != Kind::File {
                    shared.refuse(&format!("{rel}/{}", f.name), f.kind.refusal());
                } else if now.duration_since(f.mtime).is_ok_and(|age| age > retention) {
                    let _ = agent.remove_regular(&f.name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_ids_match_the_reference_and_fix_dots() {
        assert_eq!(safe_agent_id("relay agent/1"), "relay_agent_1");
        assert_eq!(safe_agent_id("  ok.name-1_x "), "ok.name-1_x");
        assert_eq!(safe_agent_id("a//b"), "a_b");
        assert_eq!(safe_agent_id("é"), "_");
        assert_eq!(safe_agent_id(""), "agent");
        assert_eq!(safe_agent_id("."), "_");
        assert_eq!(safe_agent_id(".."), "__");
    }
}
