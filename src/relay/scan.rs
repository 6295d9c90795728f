//! Finding work in the spool: which agent directories to look at (hot
//! ones every scan, cold ones in a bounded slice), their oldest request
//! (from a [`Backlogs`] batch), and claiming it by renaming `.json` to
//! `.work` while fewer than `max_jobs` requests are in flight. The cost
//! of a scan grows with active directories, not with every directory ever
//! made, and the cost of a claim does not grow with the requests waiting.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::backlog::{Backlogs, MAX_LISTED, Pending};
use super::job::{Job, cleanup};
use super::{Done, RelayConfig, Shared, Wakes};
use crate::error::Result;
use crate::notify::{Latch, Pool, lock};
use crate::spool::safe_agent_id;
use crate::sys::WatchId;
use crate::sys::dir::{Entry, Kind, SpoolDir, is_refusal};

/// The spool's root, `requests/` and `responses/`, each verified. The
/// root is the operator's path and may be reached through symlinks;
/// below it nothing is followed.
pub(super) struct Spool {
    pub(super) path: PathBuf,
    pub(super) root: Option<SpoolDir>,
    pub(super) requests: Option<Arc<SpoolDir>>,
    pub(super) responses: Option<Arc<SpoolDir>>,
}

impl Spool {
    /// Creates the spool root, `requests/` and `responses/` if needed and
    /// opens the root. Fails if one cannot be created; one that exists but
    /// is not a real directory is left to [`Spool::refresh`] to refuse.
    pub(super) fn open(path: &Path) -> Result<Spool> {
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
    pub(super) fn refresh(&mut self, shared: &Shared) -> bool {
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
pub(super) fn refresh_sub(
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

pub(super) fn watch_loop(ev: &crate::sys::DirEvents, stop: &Latch, shared: &Shared) {
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

/// What the scanner knows about one agent directory.
#[derive(Default)]
pub(super) struct AgentInfo {
    /// The directory's mtime when a listing last found nothing to claim,
    /// and when that listing was.
    pub(super) quiet: Option<(SystemTime, Instant)>,
    pub(super) watch: Option<WatchId>,
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
pub(super) struct Agents {
    /// `requests/`'s mtime at its last listing, and when that was.
    pub(super) listed: Option<(Option<SystemTime>, Instant)>,
    pub(super) requests_watch: Option<WatchId>,
    /// Known agent directories, in round-robin order.
    pub(super) order: Vec<String>,
    pub(super) info: HashMap<String, AgentInfo>,
    /// Unwatched agents looked at every scan until the given time.
    pub(super) hot: HashMap<String, Instant>,
    /// Agents to look at, and list whatever their mtime says, next scan
    /// (two changes within one timestamp tick look like one).
    pub(super) nudged: HashSet<String>,
    pub(super) by_watch: HashMap<WatchId, String>,
    pub(super) cursor: usize,
}

impl Agents {
    /// Looks at `name` every scan until `until`, unless a change watch
    /// will say when to look.
    pub(super) fn heat(&mut self, name: &str, until: Instant) {
        if self.info.get(name).is_some_and(|i| i.watch.is_none()) {
            let at = self.hot.entry(name.to_string()).or_insert(until);
            *at = (*at).max(until);
        }
    }

    /// Has the next scan look at `name` and list it.
    pub(super) fn nudge(&mut self, name: &str, now: Instant) {
        if self.info.contains_key(name) {
            self.nudged.insert(name.to_string());
            self.heat(name, now + HOT_FOR);
        }
    }

    /// True if `requests/` should be listed again.
    pub(super) fn listing_due(&self, requests: &SpoolDir) -> bool {
        let Some((mtime, at)) = self.listed else {
            return true;
        };
        let now = requests.mtime().ok();
        now != mtime
            || at.elapsed() >= RELIST_EVERY
            || (now.is_none_or(|m| !settled(m)) && at.elapsed() >= RECHECK)
    }

    /// Takes in a fresh listing of `requests/`'s directories.
    pub(super) fn update(&mut self, dirs: Vec<Entry>, mtime: Option<SystemTime>) {
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
    pub(super) fn wake(&mut self, wakes: Wakes) {
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
    pub(super) fn picks(&mut self, busy: &HashSet<String>) -> Vec<String> {
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
pub(super) struct ScanCount {
    pub(super) listings: u64,
    pub(super) probes: u64,
}

/// The scanning thread's state.
pub(super) struct Scanner {
    pub(super) cfg: RelayConfig,
    pub(super) shared: Arc<Shared>,
    pub(super) pool: Arc<Pool>,
    pub(super) events: Option<Arc<crate::sys::DirEvents>>,
    pub(super) spool: Spool,
    pub(super) agents: Agents,
    /// `created_at` of request files, read once per (agent, name, mtime).
    pub(super) created: HashMap<(String, String), (SystemTime, String)>,
    pub(super) backlogs: Backlogs,
    /// Where in this scan's picks claiming starts when not all of them
    /// can be served (so the same directories are not always first).
    pub(super) rotor: usize,
    pub(super) last_work: Instant,
    pub(super) next_cleanup: Instant,
}

impl Scanner {
    pub(super) fn new(
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
            backlogs: Backlogs::default(),
            rotor: 0,
            last_work: Instant::now(),
            next_cleanup: Instant::now(),
        }
    }

    pub(super) fn run(&mut self, stop: &Latch) {
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
                s.backlog = self.backlogs.held();
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
    pub(super) fn scan(&mut self) -> ScanCount {
        let mut count = ScanCount::default();
        if self.spool.refresh(&self.shared) {
            self.agents = Agents::default();
            self.backlogs = Backlogs::default();
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
        let busy = self.shared.busy.lock().clone();
        let mut picks = self.agents.picks(&busy);
        let mut in_flight = busy.len();
        if in_flight + picks.len() > self.cfg.max_jobs && !picks.is_empty() {
            self.rotor = self.rotor.wrapping_add(1);
            let by = self.rotor % picks.len();
            picks.rotate_left(by);
        }
        for name in &picks {
            if in_flight >= self.cfg.max_jobs {
                // Full: the rest wait, unclaimed. Nudged and hot
                // directories are looked at again next scan (the end of
                // each job rings the bell); a cold one with its slice.
                break;
            }
            count.probes += 1;
            let Some((dir, next, mtime)) = self.probe(&requests, name, &mut count) else {
                continue;
            };
            match self.claim(name, dir, &responses, next, mtime) {
                Claimed::Started => in_flight += 1,
                Claimed::Skipped => {}
                Claimed::Stop => break,
            }
        }
        count
    }

    /// Lists `requests/` and refuses what is not a real directory.
    pub(super) fn relist(&mut self, requests: &SpoolDir, count: &mut ScanCount) {
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
        let agents = &self.agents.info;
        self.backlogs.retain(|n| agents.contains_key(n));
    }

    /// Looks at one agent directory: one `stat`, plus a listing if it
    /// changed and its backlog is not current. Returns its oldest
    /// claimable request, taken out of the backlog, and the directory's
    /// modification time.
    pub(super) fn probe(
        &mut self,
        requests: &SpoolDir,
        name: &str,
        count: &mut ScanCount,
    ) -> Option<(Arc<SpoolDir>, Pending, SystemTime)> {
        let nudged = self.agents.nudged.remove(name);
        let entry = requests.stat(name).ok()?;
        if entry.kind != Kind::Dir {
            self.shared
                .refuse(&format!("requests/{name}"), entry.kind.refusal());
            self.backlogs.forget(name);
            return None;
        }
        let now = Instant::now();
        if let Some(left) = unsettled_for(entry.mtime) {
            self.agents.heat(name, now + left);
        }
        let info = self.agents.info.get(name)?;
        let current = self.backlogs.current(name, entry.mtime);
        if let Some((m, at)) = info.quiet {
            let unchanged = m == entry.mtime && (settled(m) || at.elapsed() < RECHECK);
            if !current && !nudged && unchanged {
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
                self.backlogs.forget(name);
                return None;
            }
        };
        if !current {
            count.listings += 1;
            self.watch(name, &dir);
            let pending = self.pending(name, &dir);
            self.backlogs.fill(name, pending, entry.mtime);
            let quiet = self.backlogs.is_empty(name).then_some((entry.mtime, now));
            if let Some(info) = self.agents.info.get_mut(name) {
                info.quiet = quiet;
            }
        }
        let next = self.backlogs.take(name)?;
        Some((dir, next, entry.mtime))
    }

    /// Adds a change watch on an agent directory if it has none yet.
    pub(super) fn watch(&mut self, name: &str, dir: &SpoolDir) {
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

    /// Up to [`MAX_LISTED`] pending requests of one agent, with their
    /// `created_at`. Entries named `*.json` that are not regular files
    /// are refused.
    pub(super) fn pending(&mut self, agent: &str, dir: &SpoolDir) -> Vec<Pending> {
        let Ok((files, more)) = dir.list_at_most(&|n| has_ext(n, "json"), MAX_LISTED) else {
            return Vec::new();
        };
        let rel = format!("requests/{agent}");
        if !more {
            let names: HashSet<String> = files.iter().map(|e| e.name.clone()).collect();
            self.shared.forget_missing(&rel, &names, Some("json"));
        }
        let mut out = Vec::with_capacity(files.len());
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
            out.push(Pending {
                name: f.name,
                created_at,
                mtime: f.mtime,
            });
        }
        out
    }

    /// Claims `next` by renaming it to `.work` and hands it to a pool
    /// thread. `mtime` is the agent directory's modification time seen
    /// just before.
    pub(super) fn claim(
        &mut self,
        agent: &str,
        dir: Arc<SpoolDir>,
        responses: &Arc<SpoolDir>,
        next: Pending,
        mtime: SystemTime,
    ) -> Claimed {
        let safe = safe_agent_id(agent);
        let answers = match responses.open_or_create_subdir(&safe) {
            Ok(d) => {
                self.shared.forget(&format!("responses/{safe}"));
                d
            }
            Err(e) => {
                // Not served while its answer could not be written.
                self.shared.fail(&format!("responses/{safe}"), &e);
                self.backlogs.put_back(agent, next);
                return Claimed::Skipped;
            }
        };
        let stem = file_stem(&next.name);
        let work = format!("{stem}.work");
        self.created.remove(&(agent.to_string(), next.name.clone()));
        if dir.rename(&next.name, &work).is_err() {
            return Claimed::Skipped; // gone: another relay claimed it
        }
        self.backlogs.claimed(agent, mtime, dir.mtime().ok());
        self.last_work = Instant::now();
        self.agents.heat(agent, self.last_work + HOT_FOR);
        self.shared.busy.update(|b| b.insert(agent.to_string()));
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
            self.backlogs.put_back(agent, next);
            crate::notify::pause(Duration::from_millis(100));
            return Claimed::Stop;
        }
        Claimed::Started
    }
}

/// What became of one claim.
pub(super) enum Claimed {
    /// Renamed and handed to a request thread.
    Started,
    /// Not claimed (gone, or its answer has nowhere to go yet).
    Skipped,
    /// No thread could be started: stop this scan.
    Stop,
}

/// The idle safety-net scan interval when change events are available.
pub(super) const IDLE_SCAN_WITH_EVENTS: Duration = Duration::from_millis(100);

/// How long the watcher blocks before checking for a stop.
pub(super) const WATCH_TICK: Duration = Duration::from_millis(200);

/// How old a directory's mtime must be before an unchanged mtime is
/// trusted to mean "nothing new inside" (file systems with coarse, up to
/// 2 s, timestamps).
pub(super) const SETTLED: Duration = Duration::from_secs(5);

/// While its mtime is not settled, an unchanged directory is listed again
/// at most this often.
pub(super) const RECHECK: Duration = Duration::from_millis(200);

/// How long an agent stays hot after activity.
pub(super) const HOT_FOR: Duration = Duration::from_secs(10);

/// Cold agent directories looked at per scan. At the idle scan interval
/// with events (100 ms) a sweep of 10,000 takes about 4 s.
pub(super) const COLD_SLICE: usize = 256;

/// `requests/` is listed at least this often, even if unchanged.
pub(super) const RELIST_EVERY: Duration = Duration::from_secs(30);

/// At most this many agent directories get a change watch (the watch
/// budget is shared by every program of the user).
pub(super) const MAX_WATCHES: usize = 8192;

/// True unless `m` is within [`SETTLED`] of now (either side, for clock
/// skew on shared mounts).
pub(super) fn settled(m: SystemTime) -> bool {
    unsettled_for(m).is_none()
}

/// How long until `m` is settled, if it is not yet.
pub(super) fn unsettled_for(m: SystemTime) -> Option<Duration> {
    let now = SystemTime::now();
    let gap = now.duration_since(m).unwrap_or_else(|e| e.duration());
    SETTLED.checked_sub(gap).filter(|left| !left.is_zero())
}

pub(super) fn has_ext(name: &str, ext: &str) -> bool {
    Path::new(name).extension().and_then(|e| e.to_str()) == Some(ext)
}

pub(super) fn file_stem(name: &str) -> String {
    Path::new(name)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The envelope's `created_at`, read from a regular file of at most one
/// MiB (a bigger file is refused when processed anyway). Nothing else in
/// the file is parsed into values.
pub(super) fn read_created_at(dir: &SpoolDir, name: &str) -> String {
    dir.read_regular(name, 1 << 20)
        .ok()
        .and_then(|bytes| {
            let key: crate::wire::RelayOrderKey = serde_json::from_slice(&bytes).ok()?;
            serde_json::from_str::<String>(key.created_at?.get()).ok()
        })
        .unwrap_or_default()
}
