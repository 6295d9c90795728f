/*!
`arc ensure`, `arc stop` and `arc reset` (docs/PROTOCOL.md, "CLI").

Finding a hub: a pidfile is trusted only if its hub answers `/v1/hub-info`
and either serves the requested database or listens on the requested port
(the reference trusted the first parseable pidfile up the directory tree).
Its pid is trusted only if the hub itself reports that pid in hub-info
(or, for a hub that reports none, if that process is seen listening on
the port): a pidfile whose pid now belongs to some other process is
stale, and is said to be. Stopping asks the hub itself
(`POST /v1/shutdown {"delay_sec":0}`) and waits for it to exit; a signal
is only a fallback, only to a verified pid, checked again (same process
start time, still listening) right before it is sent.

`arc reset` deletes the database only when no other process holds it
open, unless `--force`.
*/

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::http_request;
use crate::config::{self, HubConfig};
use crate::error::Result;
use crate::paths::{self, PidInfo};
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

/// Probes `url` with `GET /v1/hub-info` (2 s timeout).
pub fn probe(url: &str) -> Probe {
    match http_request(
        url,
        "GET",
        "/v1/hub-info",
        None,
        &[],
        Duration::from_secs(2),
    ) {
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
    /// A pidfile whose hub answered and whose pid is that hub's process.
    pub pidfile: Option<(PathBuf, PidInfo)>,
    /// When the pid was verified: the process's start time (Linux), so a
    /// pid reused since then is never signalled.
    pub started: Option<u64>,
    pub storage_path: String,
    /// A pidfile that led to this hub but names another process.
    pub stale: Option<(PathBuf, PidInfo, String)>,
}

/// The resolved form of a storage path, as hub-info reports it.
fn requested_storage(storage: &Path) -> Result<String> {
    Ok(paths::display_resolved(&paths::absolute(storage)?))
}

/// Whether a pidfile's pid is the process of the hub that answered on
/// its URL: the hub says so in hub-info, or (for a hub that reports no
/// pid) the process is seen listening on the pidfile's port. `Err` says
/// why not.
fn verify_pid(info: &PidInfo, reported: Option<u32>) -> std::result::Result<(), String> {
    if !crate::sys::pid_alive(info.pid) {
        return Err(format!("pid {} is not running", info.pid));
    }
    match reported {
        Some(p) if p == info.pid => Ok(()),
        Some(p) => Err(format!(
            "pid {} is not the hub (the hub at {} is pid {p})",
            info.pid, info.url
        )),
        None => match crate::sys::process_listens_on(info.pid, info.port) {
            Some(true) => Ok(()),
            Some(false) => Err(format!(
                "pid {} does not listen on port {}",
                info.pid, info.port
            )),
            None => Err(format!(
                "pid {} cannot be verified on this system",
                info.pid
            )),
        },
    }
}

/// Finds the hub for `host`/`port`/`storage`: a verified pidfile first,
/// then the base URL.
pub fn find(host: &str, port: u16, storage: &Path) -> Result<Option<Found>> {
    let wanted = requested_storage(storage)?;
    let cwd = std::env::current_dir()?;
    let abs = paths::absolute(storage)?;
    for candidate in paths::pidfile_candidates(&cwd, &abs) {
        let Some(info) = paths::read_pidfile(&candidate) else {
            continue;
        };
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
            Err(why) => found.stale = Some((candidate, info, why)),
        }
        return Ok(Some(found));
    }
    if port != 0 {
        let base = config::client_url(host, port);
        if let Probe::Hub { storage_path, .. } = probe(&base) {
            return Ok(Some(Found {
                url: base,
                pidfile: None,
                started: None,
                storage_path,
                stale: None,
            }));
        }
    }
    Ok(None)
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
    if let Some(found) = find(&cfg.host, cfg.port, &cfg.storage)? {
        return Ok(EnsureResult {
            running: true,
            started: false,
            url: found.url,
            error: None,
        });
    }
    if cfg.port != 0 {
        if let Probe::Other(what) = probe(&base) {
            return Ok(EnsureResult {
                running: false,
                started: false,
                url: base,
                error: Some(format!(
                    "port {} is in use by something that is not an Arc hub ({what})",
                    cfg.port
                )),
            });
        }
    }
    let log = log_path(&cfg.storage)?;
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut child = match spawn_background(cfg, &log) {
        Ok(c) => c,
        Err(e) => {
            return Ok(EnsureResult {
                running: false,
                started: false,
                url: base,
                error: Some(format!("spawn failed: {e}")),
            });
        }
    };
    let deadline = Instant::now() + args.timeout;
    let pidfile = paths::pidfile_for(Path::new(&requested_storage(&cfg.storage)?));
    loop {
        crate::notify::pause(Duration::from_millis(50));
        // With --port 0 the child's pidfile names the port it picked.
        let url = if cfg.port == 0 {
            paths::read_pidfile(&pidfile)
                .filter(|i| i.pid == child.id())
                .map(|i| i.url)
        } else {
            Some(base.clone())
        };
        if let Some(url) = url {
            if matches!(probe(&url), Probe::Hub { .. }) {
                return Ok(EnsureResult {
                    running: true,
                    started: true,
                    url,
                    error: None,
                });
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let rc = status
                .code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "signal".into());
            let tail = log_tail(&log, 5);
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
            return Ok(EnsureResult {
                running: false,
                started: true,
                url: base,
                error: Some(format!("child exited rc={rc}: {detail}")),
            });
        }
        if Instant::now() >= deadline {
            return Ok(EnsureResult {
                running: false,
                started: true,
                url: base,
                error: Some("timeout".into()),
            });
        }
    }
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

/// `arc stop`.
pub fn stop(args: &LocateArgs) -> Result<StopResult> {
    let Some(found) = find(&args.host, args.port, &args.storage)? else {
        return Ok(StopResult {
            stopped: false,
            pid: None,
            url: None,
            error: Some("no running hub found".into()),
            note: None,
        });
    };
    let pid = found.pidfile.as_ref().map(|(_, info)| info.pid);
    let note = found.stale.as_ref().map(|(path, _, why)| {
        format!(
            "stale pidfile {}: {why}; it was not used to signal anything",
            path.display()
        )
    });
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
    if crate::sys::process_listens_on(info.pid, info.port) == Some(false) {
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
    let once = || {
        http_request(
            url,
            "POST",
            "/v1/shutdown",
            Some(br#"{"delay_sec": 0}"#),
            &[],
            Duration::from_secs(5),
        )
    };
    match once() {
        Ok(r) if (200..300).contains(&r.status) => Ok(()),
        Ok(r) if r.json()["error"] == "shutdown already pending" => {
            let _ = http_request(
                url,
                "POST",
                "/v1/shutdown/cancel",
                Some(b"{}"),
                &[],
                Duration::from_secs(5),
            );
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
    let deadline = Instant::now() + limit;
    loop {
        let pid_gone = found.pidfile.as_ref().is_none_or(|(_, i)| {
            !crate::sys::pid_alive(i.pid)
                || (found.started.is_some()
                    && crate::sys::process_start_time(i.pid) != found.started)
        });
        if pid_gone && probe(&found.url) == Probe::Down {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        crate::notify::pause(Duration::from_millis(50));
    }
}

/// Waits (up to 5 s, for a hub that is still exiting) until no other
/// process holds the database open; otherwise says who does.
fn wait_unheld(db: &Path) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let mut pids = crate::sys::processes_holding(db);
        pids.extend(crate::sys::processes_holding(Path::new(&wal)));
        pids.sort_unstable();
        pids.dedup();
        let shm = crate::sys::sqlite_shm_in_use(db) == Some(true);
        if pids.is_empty() && !shm {
            return None;
        }
        if Instant::now() >= deadline {
            let who = if pids.is_empty() {
                "another process".to_string()
            } else {
                let list: Vec<String> = pids.iter().map(u32::to_string).collect();
                format!("pid {}", list.join(", "))
            };
            return Some(format!(
                "database {} is still open in {who} (a hub without a pidfile?); stop it first, or pass --force",
                db.display()
            ));
        }
        crate::notify::pause(Duration::from_millis(100));
    }
}

/// `arc reset`: stop, then delete the database and its WAL files, unless
/// another process still holds the database open (without `--force`).
pub fn reset(args: &LocateArgs) -> Result<ResetResult> {
    let refuse = |error: String| ResetResult {
        reset: false,
        removed: None,
        note: None,
        error: Some(error),
    };
    if find(&args.host, args.port, &args.storage)?.is_some() {
        let s = stop(args)?;
        if !s.stopped {
            return Ok(refuse(format!(
                "could not stop running hub: {}",
                s.error.unwrap_or_default()
            )));
        }
    }
    if !args.force {
        if let Some(holder) = wait_unheld(&paths::absolute(&args.storage)?) {
            return Ok(refuse(holder));
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
        // On Windows a file can stay locked for a moment after its process exits.
        let mut result = std::fs::remove_file(&path);
        for _ in 0..20 {
            if result.is_ok() || !path.exists() {
                break;
            }
            crate::notify::pause(Duration::from_millis(100));
            result = std::fs::remove_file(&path);
        }
        if let Err(e) = result {
            return Ok(ResetResult {
                reset: false,
                removed: None,
                note: None,
                error: Some(format!("failed to remove {}: {e}", path.display())),
            });
        }
        removed.push(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    if removed.is_empty() {
        return Ok(ResetResult {
            reset: true,
            removed: None,
            note: Some("database did not exist".into()),
            error: None,
        });
    }
    Ok(ResetResult {
        reset: true,
        removed: Some(removed),
        note: None,
        error: None,
    })
}
