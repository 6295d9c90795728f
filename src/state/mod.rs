/*!
The shared state of one hub: what every handler and thread sees.

[`State`] holds the configuration, the [`Store`], the [`Notifier`], the
hub's identity, its run-time flags (remote access, relay, stop), the
count of parked waiters with its caps, and the threads parked requests run
on. It owns no socket: the server (`server/`) binds and serves, and the
handlers (`api/`) only see this. Shutdown control lives in `admin.rs`.
*/

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod admin;

use crate::config::HubConfig;
use crate::error::{Error, Result};
use crate::notify::{Latch, Notifier};
use crate::store::{Committed, Store};
use crate::wire::{HubInfo, IMPLEMENTATION, MESSAGE_KINDS, VERSION};
use crate::{ids, paths, time};

/// What all event streams together may hold in memory for writing.
pub const STREAM_BUDGET: usize = 32 * 1024 * 1024;

/// What parsed request bodies over 64 KiB may cost together. A parsed
/// body costs a multiple of its text; without this bound a handful of
/// concurrent maximum-size bodies would take gigabytes.
pub const PARSE_BUDGET: usize = 512 << 20;

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
    pub(crate) port: AtomicU16,
    pub(crate) allow_remote: AtomicBool,
    relay_running: AtomicBool,
    pub(crate) pending: Mutex<Option<admin::Pending>>,
    stop: Arc<Latch>,
    parked: crate::notify::Watch<Parked>,
    /// Threads for parked long-polls and SSE streams.
    pub(crate) pool: Arc<crate::notify::Pool>,
    /// What event streams may hold in memory for writing, all together.
    pub sse_budget: Arc<crate::notify::Budget>,
    /// What large request bodies may cost once parsed, all together.
    pub(crate) parse_budget: Arc<crate::notify::Budget>,
    /// The newest hook waiter of each agent, by generation (docs/WAKE.md).
    hook_waiters: Mutex<std::collections::HashMap<String, u64>>,
    /// Rung when something may now lapse sooner than the expiry timer
    /// planned (a short reservation): the timer looks again.
    pub expiry_alarm: Arc<crate::notify::Alarm>,
    /// Delivered marks answered but not yet written (see [`State::delivered`]).
    delivered: crate::notify::Watch<DeliveredQueue>,
}

/// Delivered marks waiting for the writer thread, the highest per agent
/// and scope, and whether the hub is stopping.
#[derive(Default)]
pub struct DeliveredQueue {
    marks: HashMap<(String, String), (crate::store::DeliveryScope, i64)>,
    stop: bool,
    /// The writer thread holds a batch it has not written yet.
    writing: bool,
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
        let root = match &config.project_root {
            Some(dir) => paths::absolute(dir)?,
            None => std::env::current_dir()
                .map_err(|e| Error::Config(format!("cannot read the working directory: {e}")))?,
        };
        store.set_path_rules(crate::store::PathRules {
            fold: crate::glob::Fold {
                case_insensitive: config.case_insensitive_paths,
            },
            root: Some(root.to_string_lossy().into_owned()),
        });
        let resolved = paths::display_resolved(&storage);
        let instance_id = ids::instance_id(&resolved, store.birth()?.as_deref());
        let notifier = Notifier::new();
        let log = Logger::new(config.quiet);
        {
            let notifier = notifier.clone();
            let log = log.clone();
            store.set_commit_hook(move |c: &Committed| {
                notifier.notify_posted(&c.posted);
                if c.work {
                    notifier.notify(&[crate::notify::Key::Tasks]);
                }
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
            port: AtomicU16::new(0),
            relay_running: AtomicBool::new(false),
            pending: Mutex::new(None),
            stop: Latch::new(),
            parked: crate::notify::Watch::new(Parked::default()),
            pool: crate::notify::Pool::new("arc-park", PARKED_STACK, Duration::from_secs(30)),
            sse_budget: crate::notify::Budget::new(STREAM_BUDGET),
            parse_budget: crate::notify::Budget::new(PARSE_BUDGET),
            hook_waiters: Mutex::new(std::collections::HashMap::new()),
            delivered: crate::notify::Watch::new(DeliveredQueue::default()),
            expiry_alarm: crate::notify::Alarm::new(),
        }))
    }

    pub fn allow_remote(&self) -> bool {
        self.allow_remote.load(Ordering::SeqCst)
    }

    /// `POST /v1/network`: remote access can be turned off at any time,
    /// The port the hub listens on (0 before binding).
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    /// The feature tokens of what this hub implements (docs/PROTOCOL.md, "Hub info and dashboard").
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
            "arc-rs:hooks",
            "arc-rs:delivery",
            "arc-rs:reservations",
            "arc-rs:task_dag",
            "arc-rs:guard",
        ]);
        f.into_iter().map(String::from).collect()
    }

    /// A hook waiter of `agent` checks in: with no generation it becomes
    /// the newest (a generation from the clock, so a newer waiter wins
    /// even across a hub restart) and `Ok(gen, true)` says older ones must
    /// be woken; with one, `Err(newest)` when a newer waiter took over.
    pub fn hook_waiter(
        &self,
        agent: &str,
        generation: Option<u64>,
    ) -> std::result::Result<(u64, bool), u64> {
        let mut map = crate::notify::lock(&self.hook_waiters);
        if map.len() > 100_000 {
            map.clear();
        }
        let slot = map.entry(agent.to_string()).or_insert(0);
        match generation {
            None => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as u64)
                    .unwrap_or(0);
                *slot = now.max(*slot + 1);
                Ok((*slot, true))
            }
            Some(g) if g < *slot => Err(*slot),
            Some(g) => {
                *slot = g;
                Ok((g, false))
            }
        }
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

    // ----- stopping ------------------------------------------------------

    /// Asks the hub to stop; `Hub::wait` then runs the graceful stop.
    pub fn request_stop(&self) {
        self.stop.set();
        self.notifier.shutdown();
        self.delivered.update(|q| q.stop = true);
        self.expiry_alarm.ring();
    }

    // ----- delivered marks -------------------------------------------------

    /// Queues a delivered mark for the writer thread: a feed's answer never
    /// waits for a write of its own, and a hundred answers woken by one
    /// post become one write (docs/PROTOCOL.md, "Delivery and wake").
    pub fn delivered(&self, agent: &str, scope: crate::store::DeliveryScope, id: i64) {
        let key = match &scope {
            crate::store::DeliveryScope::All => String::new(),
            crate::store::DeliveryScope::Dm => "\u{0}dm".to_string(),
            crate::store::DeliveryScope::Channel(c) => format!("#{c}"),
        };
        self.delivered.update(|q| {
            let e = q
                .marks
                .entry((agent.to_string(), key))
                .or_insert((scope, id));
            e.1 = e.1.max(id);
        });
    }

    /// The writer thread: writes queued marks until the hub stops (then
    /// [`State::flush_delivered`] writes what is left).
    pub fn write_delivered(&self) {
        loop {
            let batch = {
                let mut q = self
                    .delivered
                    .wait_until(None, |q| q.stop || !q.marks.is_empty());
                if q.stop {
                    return;
                }
                q.writing = true;
                std::mem::take(&mut q.marks)
            };
            self.store_delivered(batch);
            self.delivered.update(|q| q.writing = false);
        }
    }

    /// Writes every queued mark now, and waits (boundedly) for a batch the
    /// writer thread holds: a read of marks after this sees every answer
    /// already sent. Also at stop, after the last answer.
    pub fn flush_delivered(&self) {
        let batch = std::mem::take(&mut self.delivered.lock().marks);
        self.store_delivered(batch);
        drop(
            self.delivered
                .wait_until(Some(Instant::now() + Duration::from_secs(5)), |q| {
                    !q.writing
                }),
        );
    }

    fn store_delivered(
        &self,
        batch: HashMap<(String, String), (crate::store::DeliveryScope, i64)>,
    ) {
        if batch.is_empty() {
            return;
        }
        let items = batch
            .into_iter()
            .map(|((agent, _), (scope, id))| (agent, scope, id))
            .collect();
        if let Err(e) = self.store.mark_delivered_many(items) {
            self.log.log(&format!("delivery: cannot record marks: {e}"));
        }
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
    pub(crate) fn reserve_parked(self: &Arc<Self>, agent: Option<&str>) -> Result<ParkedSlot> {
        let mut p = self.parked.lock();
        if p.total >= self.config.max_waiters {
            return Err(Error::unavailable(format!(
                "too many parked long-polls and streams (limit {}); retry shortly",
                self.config.max_waiters
            )));
        }
        if let Some(a) = agent {
            let n = p.per_agent.get(a).copied().unwrap_or(0);
            if n >= self.config.max_waiters_per_agent {
                return Err(Error::Limited(format!(
                    "too many concurrent long-polls and streams for agent {a} (limit {})",
                    self.config.max_waiters_per_agent
                )));
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
        self.parked.lock().total
    }

    /// Waits until no request is parked, or `deadline`; true if none is.
    pub(crate) fn wait_unparked(&self, deadline: Instant) -> bool {
        self.parked
            .wait_until(Some(deadline), |p| p.total == 0)
            .total
            == 0
    }
}

/// A reserved parked-waiter slot, released on drop.
pub(crate) struct ParkedSlot {
    state: Arc<State>,
    agent: Option<String>,
}

impl Drop for ParkedSlot {
    fn drop(&mut self) {
        self.state.parked.update(|p| {
            p.total = p.total.saturating_sub(1);
            if let Some(a) = &self.agent {
                if let Some(n) = p.per_agent.get_mut(a) {
                    *n -= 1;
                    if *n == 0 {
                        p.per_agent.remove(a);
                    }
                }
            }
        });
    }
}
