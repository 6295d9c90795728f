/*!
`arc ensure`, `arc stop` and `arc reset` (docs/PROTOCOL.md, "CLI").

Finding a hub (docs/SECURITY.md, "`arc stop` signals only a verified
hub"): a pidfile is read only if another local user could not have
written or replaced it (`paths::read_trusted_pidfile`; untrusted ones are
named in the answer's `note`), and used only if its URL is a loopback URL
on the pidfile's own port, whose hub answers `/v1/hub-info` and either
serves the requested database or listens on the requested port (the
reference trusted the first parseable pidfile up the directory tree).
Its pid is trusted only if that process is seen listening on that port
and, for a hub that reports its pid in hub-info, is the pid it reports:
a server can claim any pid, but cannot make another process own its
socket. A pidfile whose pid is some other process is stale, and is said
to be. Stopping asks the hub itself (`POST /v1/shutdown {"delay_sec":0}`)
and waits for it to exit; a signal is only a fallback, only to a
verified pid, checked again (same process start time, still listening)
right before it is sent.

`arc reset` deletes the database only when no other process holds it
open, unless `--force`.
*/

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::client::{BaseUrl, Exchange, http_exchange};
use crate::config::{self, HubConfig};
use crate::error::Result;
use crate::paths::{self, PidInfo, Pidfile};
use crate::wire::{EnsureResult, ResetResult, StopResult};

/// `ensure --timeout` by default, in seconds.
pub const ENSURE_TIMEOUT_SEC: f64 = 60.0;

/// Where to find (or start) a hub: `stop` and `reset`.
#[derive(Debug, Clone, PartialEq)]
pub struct LocateArgs {
    pub host: String,
    pub port: u16,
    pub storage: PathBuf,
    /// `reset --force`: delete the database even while a process holds it.
    pub force: bool,
}

/// `arc ensure`: the hub to start, and how long to wait for it.
#[derive(Debug, Clone, PartialEq)]
pub struct EnsureArgs {
    pub hub: Box<HubConfig>,
    pub timeout: Duration,
}

/// What answers on a URL.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Nothing listens there.
    Down,
    /// An Arc hub serving this (resolved) database path, with the pid it
    /// reports (the Python reference reports none).
    Hub {
        storage_path: String,
        pid: Option<u32>,
    },
    /// Something that is not an Arc hub.
    Other(String),
}

/// The largest hub-info (or shutdown) answer read: they are a few hundred
/// bytes, and whatever answers on a pidfile's URL may be hostile.
pub const PROBE_MAX_BYTES: usize = 64 << 10;

/// A short exchange with whatever answers on a URL.
fn ask(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    secs: u64,
) -> Result<crate::client::HttpResponse> {
    let limits = Exchange {
        read_timeout: Duration::from_secs(secs),
        max_body: PROBE_MAX_BYTES,
    };
    http_exchange(url, method, path, body, &[], limits)
}

/// Probes `url` with `GET /v1/hub-info` (2 s timeout, an answer of at
/// most [`PROBE_MAX_BYTES`]).
pub fn probe(url: &str) -> Probe {
    match ask(url, "GET", "/v1/hub-info", None, 2) {
        Err(_) => Probe::Down,
        Ok(r) => {
            let v = r.json();
            match v["result"]["instance_id"].as_str() {
                Some(id) if (200..300).contains(&r.status) && id.starts_with("mh1-") => {
                    Probe::Hub {
                        storage_path: v["result"]["storage_path"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        pid: v["result"]["pid"]
                            .as_u64()
                            .and_then(|p| u32::try_from(p).ok())
                            .filter(|p| *p > 0),
                    }
                }
                _ => Probe::Other(format!("HTTP {}", r.status)),
            }
        }
    }
}

/// A hub found for a request, with its pidfile when one was verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub url: String,
    /// A pidfile whose hub answered and whose pid is that hub's process
    /// (it listens on the hub's port).
    pub pidfile: Option<(PathBuf, PidInfo)>,
    /// When the pid was verified: the process's start time (Linux), so a
    /// pid reused since then is never signalled.
    pub started: Option<u64>,
    pub storage_path: String,
    /// A pidfile that led to this hub but whose pid was not verified.
    pub stale: Option<(PathBuf, PidInfo, Doubt)>,
}

/// What looking for a hub found, and the pidfiles passed over on the way.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Search {
    pub found: Option<Found>,
    /// Pidfiles that were there but not used, each saying why.
    pub ignored: Vec<String>,
}

impl Search {
    /// The ignored pidfiles, for an answer's `note`.
    pub fn note(&self) -> Option<String> {
        (!self.ignored.is_empty()).then(|| self.ignored.join("; "))
    }
}

/// The resolved form of a storage path, as hub-info reports it.
fn requested_storage(storage: &Path) -> Result<String> {
    Ok(paths::display_resolved(&paths::absolute(storage)?))
}

/// Whether a pidfile's URL may be probed at all: a loopback URL (no name
/// is looked up) on the pidfile's own port.
fn local_url(info: &PidInfo) -> std::result::Result<(), String> {
    let url =
        BaseUrl::parse(&info.url).map_err(|_| format!("its url {:?} is not http://", info.url))?;
    if !url.is_loopback() {
        return Err(format!("its url {} is not a loopback address", info.url));
    }
    if url.port() != Some(info.port) {
        return Err(format!(
            "its url {} is not on its port {}",
            info.url, info.port
        ));
    }
    Ok(())
}

/// Why a pidfile's pid was not trusted.
#[derive(Debug, Clone, PartialEq)]
pub enum Doubt {
    /// The pid is some other process, or none.
    Stale(String),
    /// This system cannot tell which process listens on a port.
    Unverifiable(String),
}

impl Doubt {
    /// What an answer's `note` says about the pidfile at `path`.
    fn note(&self, path: &Path) -> String {
        let (label, why) = match self {
            Doubt::Stale(why) => ("stale", why),
            Doubt::Unverifiable(why) => ("unverified", why),
        };
        format!(
            "{label} pidfile {}: {why}; it was not used to signal anything",
            path.display()
        )
    }
}

/// Whether a pidfile's pid is the process of the hub that answered on
/// its URL: that process listens on the pidfile's port (which is the
/// URL's, see [`local_url`]) and, if the hub reports a pid, it is this
/// one.
fn verify_pid(info: &PidInfo, reported: Option<u32>) -> std::result::Result<(), Doubt> {
    if !crate::sys::pid_alive(info.pid) {
        return Err(Doubt::Stale(format!("pid {} is not running", info.pid)));
    }
    if let Some(p) = reported.filter(|p| *p != info.pid) {
        return Err(Doubt::Stale(format!(
            "pid {} is not the hub (the hub at {} is pid {p})",
            info.pid, info.url
        )));
    }
    match crate::sys::process_listens_on(info.pid, info.port) {
        Some(true) => Ok(()),
        Some(false) => Err(Doubt::Stale(format!(
            "pid {} does not listen on port {}",
            info.pid, info.port
        ))),
        None => Err(Doubt::Unverifiable(format!(
            "pid {} cannot be verified on this system (which process listens on port {} is not known)",
            info.pid, info.port
        ))),
    }
}

/// Finds the hub for `host`/`port`/`storage`: a trusted pidfile first,
/// then the base URL.
pub fn find(host: &str, port: u16, storage: &Path) -> Result<Search> {
    let wanted = requested_storage(storage)?;
    let cwd = std::env::current_dir()?;
    let abs = paths::absolute(storage)?;
    let db_dir = abs
        .parent()
        .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf()));
    let mut search = Search::default();
    for candidate in paths::pidfile_candidates(&cwd, &abs) {
        let own_dir = candidate.parent() == db_dir.as_deref();
        let ignore = |why: String| format!("ignored pidfile {}: {why}", candidate.display());
        let info = match paths::read_trusted_pidfile(&candidate, own_dir) {
            Pidfile::Found(info) => info,
            Pidfile::Untrusted(why) => {
                search.ignored.push(ignore(why));
                continue;
            }
            Pidfile::Absent => continue,
        };
        if let Err(why) = local_url(&info) {
            search.ignored.push(ignore(why));
            continue;
        }
        let Probe::Hub { storage_path, pid } = probe(&info.url) else {
            continue;
        };
        if storage_path != wanted && (port == 0 || info.port != port) {
            continue;
        }
        let mut found = Found {
            url: info.url.clone(),
            pidfile: None,
            started: None,
            storage_path,
            stale: None,
        };
        match verify_pid(&info, pid) {
            Ok(()) => {
                found.started = crate::sys::process_start_time(info.pid);
                found.pidfile = Some((candidate, info));
            }
            Err(doubt) => found.stale = Some((candidate, info, doubt)),
        }
        search.found = Some(found);
        return Ok(search);
    }
    if port != 0 {
        let base = config::client_url(host, port);
        if let Probe::Hub { storage_path, .. } = probe(&base) {
            search.found = Some(Found {
                url: base,
                pidfile: None,
                started: None,
                storage_path,
                stale: None,
            });
        }
    }
    Ok(search)
}

/// The log file a background hub's stderr goes to: next to its pidfile.
pub fn log_path(storage: &Path) -> Result<PathBuf> {
    let abs = paths::absolute(storage)?;
    Ok(abs.parent().unwrap_or(Path::new(".")).join(".arc.log"))
}

/// `arc ensure`: idempotently starts a background hub.
pub fn ensure(args: &EnsureArgs) -> Result<EnsureResult> {
    let cfg = &args.hub;
    let base = config::client_url(&cfg.host, cfg.port);
    let search = find(&cfg.host, cfg.port, &cfg.storage)?;
    let note = search.note();
    let answer = |running: bool, started: bool, url: String, error: Option<String>| EnsureResult {
        running,
        started,
        url,
        error,
        note: note.clone(),
    };
    if let Some(found) = search.found {
        return Ok(answer(true, false, found.url, None));
    }
    if cfg.port != 0 {
        if let Probe::Other(what) = probe(&base) {
            let why = format!(
                "port {} is in use by something that is not an Arc hub ({what})",
                cfg.port
            );
            return Ok(answer(false, false, base, Some(why)));
        }
    }
    let log = log_path(&cfg.storage)?;
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut child = match spawn_background(cfg, &log) {
        Ok(c) => c,
        Err(e) => {
            return Ok(answer(
                false,
                false,
                base,
                Some(format!("spawn failed: {e}")),
            ));
        }
    };
    Ok(match wait_started(cfg, &mut child, &log, args.timeout)? {
        Ok(url) => answer(true, true, url, None),
        Err(why) => answer(false, true, base, Some(why)),
    })
}

/// How often another process is checked on (started, answering,
/// exited, closed a file): a probe of a port nobody listens on is refused
/// at once, so this can be short.
const PROCESS_POLL: Duration = Duration::from_millis(5);

/// Waits for the hub `ensure` started to answer: its URL, or why not
/// (it exited, or the timeout passed).
fn wait_started(
    cfg: &HubConfig,
    child: &mut Child,
    log: &Path,
    timeout: Duration,
) -> Result<std::result::Result<String, String>> {
    let base = config::client_url(&cfg.host, cfg.port);
    let pidfile = paths::pidfile_for(Path::new(&requested_storage(&cfg.storage)?));
    // The hub is another process and nothing it does wakes us: look
    // often (a probe of a port nobody listens on is refused at once)
    // until it answers or exits, at most `timeout`.
    let outcome = crate::notify::poll_until(timeout, PROCESS_POLL, || {
        // With --port 0 the child's pidfile names the port it picked.
        let url = if cfg.port == 0 {
            match paths::read_trusted_pidfile(&pidfile, true) {
                Pidfile::Found(i) if i.pid == child.id() && local_url(&i).is_ok() => Some(i.url),
                _ => None,
            }
        } else {
            Some(base.clone())
        };
        if let Some(url) = url {
            if matches!(probe(&url), Probe::Hub { .. }) {
                return Some(Ok(url));
            }
        }
        let status = child.try_wait().ok().flatten()?;
        let rc = status
            .code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "signal".into());
        let tail = log_tail(log, 5);
        let detail = if tail.is_empty() {
            format!(
                "see {} or run `arc --port {} --storage {}` in the foreground",
                log.display(),
                cfg.port,
                cfg.storage.display()
            )
        } else {
            tail
        };
        Some(Err(format!("child exited rc={rc}: {detail}")))
    });
    Ok(outcome.unwrap_or_else(|| Err("timeout".into())))
}

/// Starts `current_exe()` detached, with the hub's flags, stdout to null
/// and stderr to `log`.
fn spawn_background(cfg: &HubConfig, log: &Path) -> std::io::Result<Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("--host")
        .arg(&cfg.host)
        .arg("--port")
        .arg(cfg.port.to_string())
        .arg("--storage")
        .arg(&cfg.storage)
        .arg("--spool-dir")
        .arg(&cfg.spool_dir)
        .args(["--max-body-chars", &cfg.max_body_chars.to_string()])
        .args([
            "--max-attachment-chars",
            &cfg.max_attachment_chars.to_string(),
        ])
        .args(["--max-attachments", &cfg.max_attachments.to_string()])
        .args(["--presence-ttl-sec", &cfg.presence_ttl_sec.to_string()])
        .args(["--max-waiters", &cfg.max_waiters.to_string()])
        .args([
            "--max-waiters-per-agent",
            &cfg.max_waiters_per_agent.to_string(),
        ])
        .args(["--max-connections", &cfg.max_connections.to_string()])
        .args(["--relay-max-wait-sec", &cfg.relay_max_wait_sec.to_string()])
        .args([
            "--relay-retention-sec",
            &cfg.relay_retention.as_secs_f64().to_string(),
        ])
        .arg("--quiet");
    if cfg.allow_remote {
        cmd.arg("--allow-remote");
    }
    if !cfg.relay {
        cmd.arg("--no-relay");
    }
    if cfg.relay_allow_admin {
        cmd.arg("--relay-allow-admin");
    }
    cmd.args([
        "--path-case",
        if cfg.case_insensitive_paths {
            "insensitive"
        } else {
            "sensitive"
        },
    ]);
    // The project is the caller's directory unless it named another: the
    // detached hub runs elsewhere, so it gets the absolute path.
    let root = match &cfg.project_root {
        Some(dir) if dir.is_absolute() => dir.clone(),
        Some(dir) => std::env::current_dir()?.join(dir),
        None => std::env::current_dir()?,
    };
    cmd.arg("--project-root").arg(root);
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err));
    crate::sys::detach(&mut cmd);
    cmd.spawn()
}

/// The last `n` non-empty lines of a log file, joined with " | ".
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Notes joined for an answer's `note`.
fn joined(notes: impl IntoIterator<Item = Option<String>>) -> Option<String> {
    let all: Vec<String> = notes.into_iter().flatten().collect();
    (!all.is_empty()).then(|| all.join("; "))
}

/// `arc stop`.
pub fn stop(args: &LocateArgs) -> Result<StopResult> {
    let search = find(&args.host, args.port, &args.storage)?;
    let ignored = search.note();
    let Some(found) = search.found else {
        return Ok(StopResult {
            stopped: false,
            pid: None,
            url: None,
            error: Some("no running hub found".into()),
            note: ignored,
        });
    };
    let pid = found.pidfile.as_ref().map(|(_, info)| info.pid);
    let stale = found
        .stale
        .as_ref()
        .map(|(path, _, doubt)| doubt.note(path));
    let note = joined([stale, ignored]);
    let result = |stopped: bool, error: Option<String>| StopResult {
        stopped,
        pid,
        url: Some(found.url.clone()),
        error,
        note: note.clone(),
    };
    let asked = ask_to_stop(&found.url);
    if wait_gone(&found, Duration::from_secs(15)) {
        forget_pidfiles(&found);
        return Ok(result(true, None));
    }
    // Fallback: signal, but only the pid verified above, and only if it
    // is still that same process listening on that port.
    let Some((_, info)) = &found.pidfile else {
        return Ok(result(
            false,
            Some(match asked {
                Ok(()) => "hub did not stop in time".into(),
                Err(e) => format!("hub is responding but could not be asked to stop: {e}"),
            }),
        ));
    };
    if let Err(why) = still_the_hub(&found, info) {
        return Ok(result(
            false,
            Some(format!(
                "hub did not stop in time, and {why}: not signalled"
            )),
        ));
    }
    if let Err(e) = crate::sys::terminate(info.pid) {
        return Ok(result(
            false,
            Some(format!("failed to stop pid {}: {e}", info.pid)),
        ));
    }
    if wait_gone(&found, Duration::from_secs(10)) {
        forget_pidfiles(&found);
        return Ok(result(true, None));
    }
    Ok(result(
        false,
        Some(format!("pid {} did not exit", info.pid)),
    ))
}

/// Checks, right before a signal, that the verified pid is still the
/// process that was verified.
fn still_the_hub(found: &Found, info: &PidInfo) -> std::result::Result<(), String> {
    if !crate::sys::pid_alive(info.pid) {
        return Err(format!("pid {} is gone", info.pid));
    }
    if found.started.is_some() && crate::sys::process_start_time(info.pid) != found.started {
        return Err(format!("pid {} is now another process", info.pid));
    }
    if crate::sys::process_listens_on(info.pid, info.port) != Some(true) {
        return Err(format!(
            "pid {} no longer listens on port {}",
            info.pid, info.port
        ));
    }
    Ok(())
}

/// Removes the pidfiles that led to a stopped hub, if they still say what
/// they said (a hub that stopped gracefully removed its own already).
fn forget_pidfiles(found: &Found) {
    let files = found
        .pidfile
        .iter()
        .map(|(p, i)| (p, i))
        .chain(found.stale.iter().map(|(p, i, _)| (p, i)));
    for (path, info) in files {
        if paths::read_pidfile(path).as_ref() == Some(info) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Requests an immediate shutdown; a pending delayed one is cancelled first.
fn ask_to_stop(url: &str) -> std::result::Result<(), String> {
    let once = || ask(url, "POST", "/v1/shutdown", Some(br#"{"delay_sec": 0}"#), 5);
    match once() {
        Ok(r) if (200..300).contains(&r.status) => Ok(()),
        Ok(r) if r.json()["error"] == "shutdown already pending" => {
            let _ = ask(url, "POST", "/v1/shutdown/cancel", Some(b"{}"), 5);
            match once() {
                Ok(r) if (200..300).contains(&r.status) => Ok(()),
                Ok(r) => Err(r.text()),
                Err(e) => Err(e.to_string()),
            }
        }
        Ok(r) => Err(format!("HTTP {}: {}", r.status, r.text())),
        Err(e) => Err(e.to_string()),
    }
}

/// Waits until the hub's process has exited (when its pid was verified)
/// and its URL no longer answers.
fn wait_gone(found: &Found, limit: Duration) -> bool {
    // Another process's exit wakes nobody here: it is polled.
    crate::notify::poll_until(limit, PROCESS_POLL, || {
        let pid_gone = found.pidfile.as_ref().is_none_or(|(_, i)| {
            !crate::sys::pid_alive(i.pid)
                || (found.started.is_some()
                    && crate::sys::process_start_time(i.pid) != found.started)
        });
        (pid_gone && probe(&found.url) == Probe::Down).then_some(())
    })
    .is_some()
}

/// Waits (up to 5 s, for a hub that is still exiting) until no other
/// process holds the database open; otherwise says who does.
fn wait_unheld(db: &Path) -> Option<String> {
    let holders = || {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let mut pids = crate::sys::processes_holding(db);
        pids.extend(crate::sys::processes_holding(Path::new(&wal)));
        pids.sort_unstable();
        pids.dedup();
        let shm = crate::sys::sqlite_shm_in_use(db) == Some(true);
        (pids, shm)
    };
    // Other processes closing a file wake nobody here: it is polled.
    let free = crate::notify::poll_until(Duration::from_secs(5), PROCESS_POLL, || {
        let (pids, shm) = holders();
        (pids.is_empty() && !shm).then_some(())
    });
    if free.is_some() {
        return None;
    }
    let (pids, _) = holders();
    let who = if pids.is_empty() {
        "another process".to_string()
    } else {
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        format!("pid {}", list.join(", "))
    };
    Some(format!(
        "database {} is still open in {who} (a hub without a pidfile?); stop it first, or pass --force",
        db.display()
    ))
}

/// `arc reset`: stop, then delete the database and its WAL files, unless
/// another process still holds the database open (without `--force`).
pub fn reset(args: &LocateArgs) -> Result<ResetResult> {
    let search = find(&args.host, args.port, &args.storage)?;
    // What `stop` noticed (it looks again), or else what this search did.
    let mut note = search.note();
    if search.found.is_some() {
        let s = stop(args)?;
        note = s.note;
        if !s.stopped {
            return Ok(ResetResult {
                reset: false,
                removed: None,
                note,
                error: Some(format!(
                    "could not stop running hub: {}",
                    s.error.unwrap_or_default()
                )),
            });
        }
    }
    let answer = |reset: bool, removed, error, extra: Option<&str>| ResetResult {
        reset,
        removed,
        note: joined([note.clone(), extra.map(str::to_string)]),
        error,
    };
    if !args.force {
        if let Some(holder) = wait_unheld(&paths::absolute(&args.storage)?) {
            return Ok(answer(false, None, Some(holder), None));
        }
    }
    let db = paths::absolute(&args.storage)?;
    let mut removed = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.clone().into_os_string();
        name.push(suffix);
        let path = PathBuf::from(name);
        if !path.exists() {
            continue;
        }
        // On Windows a file can stay locked for a moment after its
        // process exits, and nothing says when it is free: retry.
        let mut result = std::fs::remove_file(&path);
        if result.is_err() && path.exists() {
            crate::notify::poll_until(Duration::from_secs(2), Duration::from_millis(100), || {
                result = std::fs::remove_file(&path);
                (result.is_ok() || !path.exists()).then_some(())
            });
        }
        if let Err(e) = result {
            let why = format!("failed to remove {}: {e}", path.display());
            return Ok(answer(false, None, Some(why), None));
        }
        removed.push(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    if removed.is_empty() {
        return Ok(answer(true, None, None, Some("database did not exist")));
    }
    Ok(answer(true, Some(removed), None, None))
}
