/*!
The file relay (spec §10), for agents that cannot open sockets to the host:
they write request files into a shared spool directory and read response
files back.

* [`RelayClient`] writes `requests/<agent>/<id>.json` (atomically, in the
  reference's format) and waits for `responses/<agent>/<id>.json`.
* [`RelayHandle`] serves a spool: a plain polling thread claims files by
  renaming `.json` to `.work`, forwards them over HTTP, and writes the
  responses atomically. Requests run concurrently across agents and in
  order within an agent; relayed long-polls are clamped so the reference
  client's 30 s deadline always gets an answer.
*/

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::client::http_request;
use crate::error::{Error, Result};
use crate::hub::State;
use crate::notify::{Alarm, Latch, Pool};
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

/// A running relay: one scanning thread plus an elastic pool of request
/// threads (at most one in flight per agent directory, so each agent's
/// requests keep their order while agents never wait for each other).
pub struct RelayHandle {
    stop: Arc<Latch>,
    bell: Arc<Alarm>,
    scanner: Option<std::thread::JoinHandle<()>>,
    watcher: Option<std::thread::JoinHandle<()>>,
    busy: Arc<Mutex<HashSet<String>>>,
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

    /// Starts a relay with `cfg`.
    pub fn start(cfg: RelayConfig) -> Result<RelayHandle> {
        ensure_dirs(&cfg.spool)?;
        let stop = Latch::new();
        let bell = Alarm::new();
        let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
        let pool = Pool::new("arc-relay", 256 * 1024, Duration::from_secs(30));
        // Where the OS can tell us about new files, a watcher thread rings
        // the scanner's bell, so idle scans can be rare.
        let events = crate::sys::DirEvents::new().map(Arc::new);
        let watcher = match &events {
            None => None,
            Some(ev) => {
                let (ev, stop, bell) = (ev.clone(), stop.clone(), bell.clone());
                Some(
                    std::thread::Builder::new()
                        .name("arc-relay-watch".into())
                        .spawn(move || {
                            while !stop.is_set() {
                                if ev.wait(WATCH_TICK) {
                                    bell.ring();
                                }
                            }
                        })?,
                )
            }
        };
        let scanner = {
            let (stop, bell, busy) = (stop.clone(), bell.clone(), busy.clone());
            std::thread::Builder::new()
                .name("arc-relay-scan".into())
                .spawn(move || scan_loop(&cfg, &stop, &bell, &busy, &pool, events.as_deref()))?
        };
        Ok(RelayHandle {
            stop,
            bell,
            scanner: Some(scanner),
            watcher,
            busy,
        })
    }

    /// Stops scanning and waits (up to 5 s) for requests in flight.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.set();
        self.bell.ring();
        for t in [self.scanner.take(), self.watcher.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !lock(&self.busy).is_empty() && Instant::now() < deadline {
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

fn ensure_dirs(spool: &Path) -> Result<()> {
    std::fs::create_dir_all(spool.join("requests"))?;
    std::fs::create_dir_all(spool.join("responses"))?;
    Ok(())
}

/// A claimable request file.
struct Pending {
    path: PathBuf,
    created_at: String,
    mtime: std::time::SystemTime,
}

fn scan_loop(
    cfg: &RelayConfig,
    stop: &Latch,
    bell: &Arc<Alarm>,
    busy: &Arc<Mutex<HashSet<String>>>,
    pool: &Arc<Pool>,
    events: Option<&crate::sys::DirEvents>,
) {
    let mut next_cleanup = Instant::now();
    let cleanup_every = (cfg.retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut canon_root: Option<PathBuf> = None;
    let mut last_work = Instant::now();
    let mut quiet = HashMap::new();
    let mut created = HashMap::new();
    let mut watched: HashSet<String> = HashSet::new();
    while !stop.is_set() {
        if Instant::now() >= next_cleanup {
            cleanup(&cfg.spool, cfg.retention);
            next_cleanup = Instant::now() + cleanup_every;
        }
        // A deleted spool is re-created; failures are retried next round.
        if canon_root.is_none() || !cfg.spool.join("requests").is_dir() {
            canon_root = ensure_dirs(&cfg.spool)
                .ok()
                .and_then(|_| std::fs::canonicalize(cfg.spool.join("requests")).ok());
            watched.clear();
            if let (Some(ev), Some(root)) = (events, &canon_root) {
                ev.watch(root);
            }
        }
        if created.len() > 100_000 {
            created.clear(); // files removed behind our back; start over
        }
        if let Some(root) = &canon_root {
            let mut watch = |name: &str, path: &Path| {
                if let Some(ev) = events {
                    if !watched.contains(name) && ev.watch(path) {
                        watched.insert(name.to_string());
                    }
                }
            };
            for (agent_dir, next) in
                pending_by_agent(root, busy, &mut quiet, &mut created, &mut watch)
            {
                let work = next.path.with_extension("work");
                created.remove(&next.path);
                if std::fs::rename(&next.path, &work).is_err() {
                    continue; // another relay claimed it
                }
                last_work = Instant::now();
                lock(busy).insert(agent_dir.clone());
                let job_cfg = cfg.clone();
                let done = Done {
                    busy: busy.clone(),
                    agent_dir: agent_dir.clone(),
                    bell: bell.clone(),
                };
                let job_work = work.clone();
                let spawned = pool.run(move || {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        process(&job_cfg, &done.agent_dir, &job_work)
                    }));
                    drop(done);
                });
                if spawned.is_err() {
                    // Unclaim it so a later scan serves it (the job, and
                    // with it the busy mark, was dropped unrun), and give
                    // the system a moment before trying again.
                    let _ = std::fs::rename(&work, &next.path);
                    crate::notify::pause(Duration::from_millis(100));
                    break;
                }
            }
        }
        // Scan at full speed while requests flow. After a quiet spell,
        // relax: with change events, new files ring the bell at once and
        // the slow scan is only a safety net (for mounts that deliver no
        // events); without them, scan twice as slowly, still well inside
        // the round-trip target.
        let interval = if last_work.elapsed() < Duration::from_secs(2) {
            cfg.poll_interval
        } else if events.is_some() {
            IDLE_SCAN_WITH_EVENTS.max(cfg.poll_interval)
        } else {
            cfg.poll_interval * 2
        };
        bell.sleep(interval);
    }
}

/// Marks an agent directory idle again when its job ends, however it
/// ends (finished, panicked, or never started), and wakes the scanner.
struct Done {
    busy: Arc<Mutex<HashSet<String>>>,
    agent_dir: String,
    bell: Arc<Alarm>,
}

impl Drop for Done {
    fn drop(&mut self) {
        lock(&self.busy).remove(&self.agent_dir);
        self.bell.ring();
    }
}

/// The idle safety-net scan interval when change events are available.
const IDLE_SCAN_WITH_EVENTS: Duration = Duration::from_millis(100);

/// How long the watcher blocks before checking for a stop.
const WATCH_TICK: Duration = Duration::from_millis(200);

/// For each idle agent directory, its oldest pending request (by the
/// envelope's `created_at`, then modification time, then name).
///
/// `quiet` remembers the modification time of agent directories that had
/// nothing to claim, so an idle relay costs one `stat` per agent per scan
/// instead of a directory listing. Only directories whose mtime is at
/// least [`SETTLED`] old are skipped this way, which keeps the shortcut
/// safe on file systems with coarse (up to 2 s) timestamps.
fn pending_by_agent(
    canon_root: &Path,
    busy: &Mutex<HashSet<String>>,
    quiet: &mut HashMap<String, SystemTime>,
    created: &mut HashMap<PathBuf, (SystemTime, String)>,
    watch: &mut dyn FnMut(&str, &Path),
) -> Vec<(String, Pending)> {
    let Ok(dirs) = std::fs::read_dir(canon_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let busy_now = lock(busy).clone();
    let mut present = HashSet::new();
    let now = SystemTime::now();
    for dir in dirs.flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        present.insert(name.clone());
        if name == "." || name == ".." || busy_now.contains(&name) {
            continue;
        }
        // Real directories are inside by construction; a symlinked agent
        // directory is followed only if it resolves inside the spool.
        match dir.file_type() {
            Ok(t) if t.is_dir() => {}
            Ok(t) if t.is_symlink() && inside(&dir.path(), canon_root) => {}
            _ => continue,
        }
        watch(&name, &dir.path());
        let mtime = std::fs::metadata(dir.path())
            .and_then(|m| m.modified())
            .ok();
        let settled = mtime.filter(|m| now.duration_since(*m).is_ok_and(|age| age >= SETTLED));
        if settled.is_some() && quiet.get(&name) == settled.as_ref() {
            continue;
        }
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        let mut candidates: Vec<Pending> = Vec::new();
        for f in files.flatten() {
            let path = f.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() && !inside(&path, canon_root) {
                continue;
            }
            if !meta.file_type().is_file() && !meta.file_type().is_symlink() {
                continue;
            }
            let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            // Each file is parsed once (per modification), not per scan.
            let created_at = match created.get(&path) {
                Some((m, c)) if *m == mtime => c.clone(),
                _ => {
                    let c = read_created_at(&path);
                    created.insert(path.clone(), (mtime, c.clone()));
                    c
                }
            };
            candidates.push(Pending {
                path,
                created_at,
                mtime,
            });
        }
        candidates.sort_by(|a, b| {
            (&a.created_at, a.mtime, &a.path).cmp(&(&b.created_at, b.mtime, &b.path))
        });
        match settled {
            Some(m) if candidates.is_empty() => {
                quiet.insert(name.clone(), m);
            }
            _ => {
                quiet.remove(&name);
            }
        }
        if let Some(first) = candidates.into_iter().next() {
            out.push((name, first));
        }
    }
    quiet.retain(|name, _| present.contains(name));
    out
}

/// The envelope's `created_at`, read from at most the first MiB of the
/// file (a bigger file is refused when processed anyway).
fn read_created_at(path: &Path) -> String {
    use std::io::Read;
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut bytes))
        .is_ok();
    if !read {
        return String::new();
    }
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("created_at")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// How old a directory's mtime must be before an unchanged mtime is
/// trusted to mean "nothing new inside".
const SETTLED: Duration = Duration::from_secs(5);

/// True if `path` resolves to somewhere under `root` (symlinks that
/// escape the spool are ignored).
fn inside(path: &Path, canon_root: &Path) -> bool {
    std::fs::canonicalize(path)
        .map(|p| p.starts_with(canon_root))
        .unwrap_or(false)
}

/// Serves one claimed request file and writes its response.
fn process(cfg: &RelayConfig, agent_dir: &str, work: &Path) {
    let request_id = work
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let resp_dir = cfg.spool.join("responses").join(safe_agent_id(agent_dir));
    let resp_path = resp_dir.join(format!("{request_id}.json"));
    let response = match load_envelope(cfg, work, &request_id, agent_dir) {
        Err(reason) => RelayResponse {
            request_id: request_id.clone(),
            ok: false,
            status: 400,
            body: None,
            completed_at: crate::time::now(),
            error: Some(format!("invalid relay request: {reason}")),
        },
        Ok(req) => forward(cfg, &req),
    };
    let text = crate::wire::to_python_json(&response, true);
    let written = std::fs::create_dir_all(&resp_dir)
        .map_err(Error::from)
        .and_then(|_| crate::paths::write_atomic(&resp_path, text.as_bytes()));
    if let Err(e) = written {
        eprintln!("[arc relay] cannot write {}: {e}", resp_path.display());
    }
}

/// Reads and validates a request envelope (spec §10.3 step 3).
fn load_envelope(
    cfg: &RelayConfig,
    work: &Path,
    stem: &str,
    agent_dir: &str,
) -> std::result::Result<RelayRequest, String> {
    let meta = std::fs::metadata(work).map_err(|e| e.to_string())?;
    if meta.len() > cfg.max_request_bytes {
        return Err(format!(
            "request file exceeds {} bytes",
            cfg.max_request_bytes
        ));
    }
    let mut bytes = Vec::new();
    {
        use std::io::Read;
        // Bounded even if the file grew after the size check.
        std::fs::File::open(work)
            .and_then(|f| f.take(cfg.max_request_bytes + 1).read_to_end(&mut bytes))
            .map_err(|e| e.to_string())?;
    }
    if bytes.len() as u64 > cfg.max_request_bytes {
        return Err(format!(
            "request file exceeds {} bytes",
            cfg.max_request_bytes
        ));
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
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
        Err(e) => {
            let detail = e.to_string();
            let detail = detail
                .strip_prefix("connection error: ")
                .unwrap_or(&detail)
                .to_string();
            (
                599,
                json!({"ok": false, "error": format!("connection error: {detail}")}),
            )
        }
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

/// Deletes `.work` and response files older than `retention`, ignoring
/// failures (some mounts refuse deletes; the spool stays correct anyway).
fn cleanup(spool: &Path, retention: Duration) {
    let now = std::time::SystemTime::now();
    for (sub, ext) in [("requests", "work"), ("responses", "json")] {
        let Ok(dirs) = std::fs::read_dir(spool.join(sub)) else {
            continue;
        };
        for dir in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().and_then(|e| e.to_str()) != Some(ext) {
                    continue;
                }
                let old = f
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|age| age > retention);
                if old {
                    let _ = std::fs::remove_file(&p);
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
