/*!
The file relay's server side (docs/PROTOCOL.md, "Relay spool format"), for agents that cannot open sockets to the host:
they write request files into a shared spool directory and read response
files back.

* `client::RelayClient` (the other side) writes
  `requests/<agent>/<id>.json` and waits for `responses/<agent>/<id>.json`.
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

Files: `scan.rs` (finding and claiming request files), `job.rs` (serving
one request and writing its answer, and retention).
*/

mod backlog;
mod envelope;
mod forward;
mod job;
mod scan;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::notify::{Alarm, Latch, Pool, lock};
use crate::state::State;

use crate::sys::WatchId;
use crate::sys::dir::is_refusal;
use scan::{Scanner, Spool, has_ext, watch_loop};

/// Settings of a relay server.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    pub base_url: String,
    pub spool: PathBuf,
    pub poll_interval: Duration,
    pub request_timeout: Duration,
    /// Relayed long-polls wait at most this long.
    pub max_wait_sec: f64,
    /// `.work` and response files older than this are deleted.
    pub retention: Duration,
    /// Request files larger than this are refused with a 400 response.
    pub max_request_bytes: u64,
    /// The spool as the operator named it (for log lines).
    pub display_spool: String,
    /// At most this many requests are served at once; the rest wait in
    /// their files, unclaimed, until a slot is free.
    pub max_jobs: usize,
    /// At most this many relayed long-polls wait at the hub at once; one
    /// more is forwarded with `timeout=0` (answered at once).
    pub max_long_polls: usize,
    /// Forward the admin routes (shutdown, network) too.
    pub allow_admin: bool,
}

/// Requests served at once by one relay, unless configured otherwise.
pub const MAX_JOBS: usize = 64;

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
            display_spool: spool.display().to_string(),
            max_jobs: MAX_JOBS,
            // A quarter of the slots always stays free for requests that
            // do not wait.
            max_long_polls: MAX_JOBS - MAX_JOBS / 4,
            allow_admin: false,
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
    /// Pending requests held from listings, waiting to be claimed.
    pub backlog: usize,
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
    /// The watcher's event source, woken on stop so it need not time out.
    events: Option<Arc<crate::sys::DirEvents>>,
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
        // Relayed long-polls may take a quarter of the hub's waiter slots,
        // so spool writers alone can never use them all up.
        cfg.max_long_polls = cfg.max_long_polls.min(c.max_waiters / 4);
        cfg.allow_admin = c.relay_allow_admin;
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
            let mut scanner = Scanner::new(cfg, shared.clone(), pool, events.clone(), spool);
            std::thread::Builder::new()
                .name("arc-relay-scan".into())
                .spawn(move || scanner.run(&stop))?
        };
        Ok(RelayHandle {
            stop,
            shared,
            scanner: Some(scanner),
            watcher,
            events,
        })
    }

    /// Stops scanning and waits (up to 5 s) for requests in flight.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.set();
        self.shared.bell.ring();
        if let Some(ev) = &self.events {
            ev.wake();
        }
        for t in [self.scanner.take(), self.watcher.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        drop(
            self.shared
                .busy
                .wait_until(Some(deadline), HashSet::is_empty),
        );
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

/// What the scanner, the watcher and the request jobs share.
struct Shared {
    bell: Arc<Alarm>,
    /// Agent directories with a request in flight (one each at most, so
    /// also the number of requests in flight).
    busy: crate::notify::Watch<HashSet<String>>,
    /// Relayed long-polls waiting at the hub.
    long_polls: AtomicUsize,
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
            busy: crate::notify::Watch::new(HashSet::new()),
            long_polls: AtomicUsize::new(0),
            wakes: Mutex::default(),
            refused: Mutex::default(),
            stats: Mutex::default(),
        }
    }

    /// A long-poll slot, if fewer than `max` are taken.
    fn long_poll_slot(&self, max: usize) -> Option<LongPollSlot<'_>> {
        self.long_polls
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| LongPollSlot(&self.long_polls))
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

/// A relayed long-poll's slot, given back on drop.
struct LongPollSlot<'a>(&'a AtomicUsize);

impl Drop for LongPollSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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
        self.shared.busy.update(|b| b.remove(&self.agent));
        lock(&self.shared.wakes).agents.insert(self.agent.clone());
        self.shared.bell.ring();
    }
}
