/*!
The SQLite store: the only file in the crate that contains SQL.

One `rusqlite::Connection` behind a mutex. Every read-modify-write runs in
a `BEGIN IMMEDIATE` transaction, so it is atomic against other threads and
against other hub processes sharing the same file (spec §1.3 mode 2).

The schema is the reference's, frozen (spec §3.1): no column is ever added,
removed or reordered, timestamps are written as `YYYY-MM-DDTHH:MM:SSZ`,
and `PRAGMA user_version` stays 0, so a Python hub can open the same file
before, during and after us.

Presence expiry lives here as one routine, [`Tx::expire_due`], which runs at
the start of every write transaction: a session past its TTL is expired and
its claims and locks recovered before anything in that transaction could
touch (and so revive) it (spec §15.1 items 1, 3 and 7).

Every write transaction collects the messages it inserted and the log lines
it produced; after the commit they are handed to the commit hook (which
wakes long-poll waiters and prints lifecycle lines). The store itself never
parks, never logs and knows nothing about HTTP.
*/

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::time;
use crate::wire::{
    Bootstrap, Channel, Claim, Lock, Message, Session, Task, ThreadDetail, ThreadSummary,
};

/// Highest message id the protocol allows (2^53 − 1, exact in JavaScript).
pub const MAX_MESSAGE_ID: i64 = (1 << 53) - 1;

/// Longest lease we grant: ten years, well inside the timestamp range.
pub const MAX_TTL_SEC: i64 = 315_360_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS channels(
  name TEXT PRIMARY KEY,
  created_at TEXT NOT NULL,
  created_by TEXT,
  metadata_json TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS messages(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts TEXT NOT NULL,
  from_agent TEXT NOT NULL,
  to_agent TEXT,
  channel TEXT NOT NULL,
  kind TEXT NOT NULL,
  body TEXT NOT NULL,
  attachments_json TEXT NOT NULL DEFAULT '[]',
  reply_to INTEGER,
  thread_id TEXT,
  metadata_json TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS ix_m_ch ON messages(channel,id);
CREATE INDEX IF NOT EXISTS ix_m_to ON messages(to_agent,id);
CREATE INDEX IF NOT EXISTS ix_m_th ON messages(thread_id,id);
CREATE TABLE IF NOT EXISTS sessions(
  session_id TEXT PRIMARY KEY,
  agent_id TEXT NOT NULL,
  display_name TEXT NOT NULL,
  capabilities_json TEXT NOT NULL DEFAULT '[]',
  metadata_json TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL,
  last_seen TEXT NOT NULL,
  active INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS ix_s_ag ON sessions(agent_id);
CREATE INDEX IF NOT EXISTS ix_s_ac ON sessions(active,last_seen);
CREATE TABLE IF NOT EXISTS claims(
  claim_key TEXT PRIMARY KEY,
  thread_id TEXT,
  task_message_id INTEGER,
  owner_agent_id TEXT NOT NULL,
  claimed_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  released_at TEXT,
  metadata_json TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS ix_c_th ON claims(thread_id);
CREATE TABLE IF NOT EXISTS locks(
  file_path TEXT PRIMARY KEY,
  agent_id TEXT NOT NULL,
  locked_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  released_at TEXT,
  metadata_json TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS ix_l_ag ON locks(agent_id);
CREATE TABLE IF NOT EXISTS tasks(
  task_id INTEGER PRIMARY KEY,
  parent_task_id INTEGER,
  channel TEXT NOT NULL,
  thread_id TEXT,
  status TEXT NOT NULL DEFAULT 'open',
  created_at TEXT NOT NULL,
  completed_at TEXT,
  FOREIGN KEY(parent_task_id) REFERENCES tasks(task_id));
CREATE INDEX IF NOT EXISTS ix_t_par ON tasks(parent_task_id);
CREATE INDEX IF NOT EXISTS ix_t_st ON tasks(status);
";

const MSG_COLS: &str = "id, ts, from_agent, to_agent, channel, kind, body, attachments_json, reply_to, thread_id, metadata_json";
const SESSION_COLS: &str = "session_id, agent_id, display_name, capabilities_json, metadata_json, created_at, last_seen, active";
const CLAIM_COLS: &str = "claim_key, thread_id, task_message_id, owner_agent_id, claimed_at, expires_at, released_at, metadata_json";
const LOCK_COLS: &str = "file_path, agent_id, locked_at, expires_at, released_at, metadata_json";
const TASK_COLS: &str =
    "task_id, parent_task_id, channel, thread_id, status, created_at, completed_at";

/// What a committed write produced: inserted messages and log lines.
#[derive(Debug, Default, Clone)]
pub struct Committed {
    pub posted: Vec<Posted>,
    pub logs: Vec<String>,
    messages: Vec<Message>,
}

/// The routing facts of an inserted message, for waking waiters.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub id: i64,
    pub channel: String,
    pub to_agent: Option<String>,
    pub thread_id: Option<String>,
}

impl Posted {
    fn of(m: &Message) -> Posted {
        Posted {
            id: m.id,
            channel: m.channel.clone(),
            to_agent: m.to_agent.clone(),
            thread_id: m.thread_id.clone(),
        }
    }
}

/// The newest messages, kept in memory so woken waiters can answer
/// without taking the connection mutex. The tail is *complete*: every
/// message with an id in `(from, last id]` is in `msgs`, in order. A batch
/// that does not continue the tail (another process wrote in between, or
/// two of our commits reported out of order) restarts it; queries the
/// tail cannot answer completely fall back to SQL.
#[derive(Debug, Default)]
struct Recent {
    from: i64,
    msgs: std::collections::VecDeque<Message>,
    /// `approx_size` of each message in `msgs`, computed once.
    sizes: std::collections::VecDeque<usize>,
    bytes: usize,
}

/// Most message data one page carries (an answer to `GET /v1/messages`,
/// `/v1/events`, `/v1/inbox` or one SSE batch): pages are cut at
/// `limit` messages or at about this many bytes, whichever comes first,
/// and always hold at least one message (docs/PROTOCOL.md, "Pages").
pub const PAGE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Bounds of the in-memory tail.
const RECENT_MAX_MSGS: usize = 4096;
const RECENT_MAX_BYTES: usize = 16 * 1024 * 1024;

impl Recent {
    fn last_id(&self) -> i64 {
        self.msgs.back().map(|m| m.id).unwrap_or(self.from)
    }

    /// Adds a committed batch (ids ascending, contiguous within the batch).
    fn extend(&mut self, batch: &[Message]) {
        let fresh: Vec<&Message> = batch.iter().filter(|m| m.id > self.last_id()).collect();
        let Some(first) = fresh.first() else { return };
        let contiguous = fresh.windows(2).all(|w| w[1].id == w[0].id + 1);
        if !contiguous {
            *self = Recent {
                from: fresh.last().map(|m| m.id).unwrap_or(0),
                ..Recent::default()
            };
            return;
        }
        if first.id != self.last_id() + 1 {
            *self = Recent {
                from: first.id - 1,
                ..Recent::default()
            };
        }
        for m in fresh {
            let size = approx_size(m);
            self.bytes += size;
            self.sizes.push_back(size);
            self.msgs.push_back(m.clone());
        }
        while self.msgs.len() > RECENT_MAX_MSGS || self.bytes > RECENT_MAX_BYTES {
            match self.msgs.pop_front() {
                Some(old) => {
                    self.bytes -= self.sizes.pop_front().unwrap_or(0);
                    self.from = old.id;
                }
                None => break,
            }
        }
    }

    /// Adds rows read back from the database (other processes' commits):
    /// like [`Recent::extend`], except that the tail restarts after any row
    /// that may still change, so reads that include it go to SQL.
    fn extend_foreign(&mut self, batch: &[Message]) {
        let mut rest = batch;
        while let Some(i) = rest.iter().position(may_still_change) {
            self.extend(&rest[..i]);
            if rest[i].id > self.last_id() {
                *self = Recent {
                    from: rest[i].id,
                    ..Recent::default()
                };
            }
            rest = &rest[i + 1..];
        }
        self.extend(rest);
    }

    /// Messages after `since` matching `keep` (one page: at most `limit`
    /// and about [`PAGE_MAX_BYTES`]), if the tail covers `since`.
    fn after(&self, since: i64, mut page: Page, keep: impl Fn(&Message) -> bool) -> Option<Page> {
        if since < self.from {
            return None;
        }
        let start = self.msgs.partition_point(|m| m.id <= since);
        for (m, size) in self.msgs.range(start..).zip(self.sizes.range(start..)) {
            if keep(m) && !page.push(m.clone(), *size) {
                break;
            }
        }
        Some(page)
    }
}

/// A page of messages being filled: stops at `limit` rows or once the
/// next row would pass [`PAGE_MAX_BYTES`] (never before the first row).
struct Page {
    rows: Vec<Message>,
    limit: usize,
    bytes: usize,
    max_bytes: usize,
    strict: bool,
    blocked_by: Option<usize>,
}

impl Page {
    fn new(limit: i64, max_bytes: usize) -> Page {
        Page {
            rows: Vec::new(),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            bytes: 0,
            max_bytes,
            strict: false,
            blocked_by: None,
        }
    }

    fn strict(mut self, on: bool) -> Page {
        self.strict = on;
        self
    }

    /// True if a message of `size` bytes fits (checked before the message
    /// is even built); false once the page is full.
    fn fits(&mut self, size: usize) -> bool {
        if self.rows.len() >= self.limit {
            return false;
        }
        if self.bytes + size <= self.max_bytes {
            return true;
        }
        if self.rows.is_empty() {
            if self.strict {
                self.blocked_by = Some(size);
                return false;
            }
            return true;
        }
        false
    }

    /// Adds `m` if it fits; false once the page is full (and `m` was not
    /// added).
    fn push(&mut self, m: Message, size: usize) -> bool {
        if !self.fits(size) {
            return false;
        }
        self.bytes += size;
        self.rows.push(m);
        true
    }
}

/// Roughly the bytes a message holds: every string field, attachments
/// and metadata (each may be megabytes), plus a fixed overhead.
fn approx_size(m: &Message) -> usize {
    256 + m.ts.len()
        + m.from_agent.len()
        + m.to_agent.as_ref().map_or(0, String::len)
        + m.channel.len()
        + m.kind.len()
        + m.body.len()
        + m.thread_id.as_ref().map_or(0, String::len)
        + m.attachments
            .iter()
            .map(|a| a.to_string().len())
            .sum::<usize>()
        + m.metadata.to_string().len()
}

/// True for a row another hub process may still rewrite: the Python
/// reference inserts a `task_result` and only in a later commit stamps
/// `metadata.task_completed` into it. Such a row must not be cached.
fn may_still_change(m: &Message) -> bool {
    m.kind == "task_result" && m.reply_to.is_some() && m.metadata.get("task_completed").is_none()
}

type Hook = Box<dyn Fn(&Committed) + Send + Sync>;

/// The files a store opened, by identity, so it can tell when they are
/// deleted or replaced under it: a hub writing on into a deleted file
/// would acknowledge messages that no restart will find.
#[derive(Debug)]
struct Files {
    db: std::path::PathBuf,
    db_id: Option<(u64, u64)>,
    wal: std::path::PathBuf,
    wal_id: Option<(u64, u64)>,
    /// Set once a change was seen: every later write is refused.
    lost: std::sync::atomic::AtomicBool,
}

impl Files {
    fn of(db: &Path) -> Files {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let wal = std::path::PathBuf::from(wal);
        Files {
            db_id: crate::sys::file_identity(db),
            wal_id: crate::sys::file_identity(&wal),
            db: db.to_path_buf(),
            wal,
            lost: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Fails (for good) once the database or its WAL is no longer the
    /// file that was opened; true if this call is the one that noticed.
    fn check(&self) -> std::result::Result<(), bool> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(false);
        }
        let same = crate::sys::file_identity(&self.db) == self.db_id
            && (self.wal_id.is_none() || crate::sys::file_identity(&self.wal) == self.wal_id);
        if same {
            return Ok(());
        }
        Err(!self.lost.swap(true, Ordering::SeqCst))
    }
}

/// The error of a write refused because the database files changed.
fn files_lost(files: &Files) -> Error {
    Error::unavailable(format!(
        "store: the database file {} was deleted or replaced while the hub was running; writes are refused until the hub is restarted",
        files.db.display()
    ))
}

/// The hub's database.
pub struct Store {
    conn: Mutex<Connection>,
    files: Files,
    ttl_sec: i64,
    journal_mode: String,
    hook: OnceLock<Hook>,
    /// Highest message id the foreign-commit watcher has scanned.
    watch_cursor: AtomicI64,
    /// Last `PRAGMA data_version` read by [`Store::foreign_commits`].
    data_version: AtomicI64,
    recent: Mutex<Recent>,
}

/// A message to insert, already validated by the API layer.
#[derive(Debug, Clone, Default)]
pub struct NewMessage {
    pub from_agent: String,
    pub to_agent: Option<String>,
    pub channel: String,
    pub kind: String,
    pub body: String,
    pub attachments: Vec<Value>,
    pub reply_to: Option<i64>,
    pub thread_id: Option<String>,
    pub metadata: Map<String, Value>,
    pub parent_task_id: Option<i64>,
}

/// Filters for `GET /v1/messages` and `GET /v1/inbox`.
#[derive(Debug, Clone, Default)]
pub struct FeedQuery {
    pub channel: Option<String>,
    pub thread_id: Option<String>,
    pub since_id: i64,
    pub limit: i64,
    pub tail: bool,
}

/// Filters for `GET /v1/events` and `GET /v1/stream`.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub agent_id: String,
    pub channels: Vec<String>,
    pub thread_id: Option<String>,
    pub since_id: i64,
    pub limit: i64,
    pub exclude_self: bool,
    /// Bytes of message data one answer may carry (see [`PAGE_MAX_BYTES`]).
    pub max_bytes: usize,
    /// Never exceed `max_bytes`, not even for a first message: stop before
    /// it and report its size instead ([`Store::events_page`]).
    pub strict_bytes: bool,
}

/// One page of events, and what stopped it early.
#[derive(Debug, Default)]
pub struct EventsPage {
    pub rows: Vec<Message>,
    /// With `strict_bytes`: the size of the next message, which did not
    /// fit `max_bytes` on its own.
    pub blocked_by: Option<usize>,
}

/// Which lease table an operation targets; claims and locks share logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseKind {
    Claim,
    Lock,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies the
    /// schema and seed rows. Nothing existing is reset.
    pub fn open(path: &Path, ttl_sec: i64) -> Result<Store> {
        Store::open_with(path, ttl_sec, Duration::from_secs(10))
    }

    /// [`Store::open`] with an explicit busy timeout (at least 5 s in
    /// production; tests shorten it to observe the 503 path quickly).
    pub fn open_with(path: &Path, ttl_sec: i64, busy: Duration) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy)?;
        let journal_mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA foreign_keys=OFF;")?;
        conn.execute_batch(SCHEMA)?;
        let now = time::now();
        conn.execute(
            "INSERT OR IGNORE INTO channels(name, created_at, created_by, metadata_json) VALUES ('general', ?1, 'system', '{}'), ('direct', ?1, 'system', '{}')",
            [&now],
        )?;
        let max_id: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| {
            r.get(0)
        })?;
        let data_version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        Ok(Store {
            files: Files::of(path),
            conn: Mutex::new(conn),
            ttl_sec,
            journal_mode: journal_mode.to_lowercase(),
            hook: OnceLock::new(),
            watch_cursor: AtomicI64::new(max_id),
            data_version: AtomicI64::new(data_version),
            recent: Mutex::new(Recent {
                from: max_id,
                ..Recent::default()
            }),
        })
    }

    /// Installs the function called after every commit that inserted
    /// messages or produced log lines. Only the first call has an effect.
    pub fn set_commit_hook(&self, hook: impl Fn(&Committed) + Send + Sync + 'static) {
        let _ = self.hook.set(Box::new(hook));
    }

    /// The journal mode SQLite reports (`wal` when shared-file mode is safe).
    pub fn journal_mode(&self) -> &str {
        &self.journal_mode
    }

    /// `created_at` of the `general` channel: the database's birth time.
    pub fn birth(&self) -> Result<Option<String>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT created_at FROM channels WHERE name = 'general'",
                [],
                |r| text(r, 0),
            )
            .optional()?
            .flatten())
    }

    /// Presence TTL in seconds.
    pub fn ttl_sec(&self) -> i64 {
        self.ttl_sec
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held rolled its transaction back when
        // the transaction guard dropped, so the connection is still sound.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses the write when the database files changed under us (and
    /// says so once, through the commit hook's log lines).
    fn check_files(&self) -> Result<()> {
        match self.files.check() {
            Ok(()) => Ok(()),
            Err(first) => {
                let err = files_lost(&self.files);
                if first {
                    self.publish(Committed {
                        logs: vec![err.detail()],
                        ..Committed::default()
                    });
                }
                Err(err)
            }
        }
    }

    /// Runs `f` inside `BEGIN IMMEDIATE`, expiring due sessions first.
    /// The database files are checked before and after: a write is only
    /// acknowledged once it is committed into the file the hub opened.
    fn write<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.check_files()?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now_s = time::now_secs();
        let mut ctx = Tx {
            tx: &tx,
            now_s,
            now: time::format(now_s),
            ttl_sec: self.ttl_sec,
            out: Committed::default(),
        };
        ctx.expire_due()?;
        let value = f(&mut ctx)?;
        let out = std::mem::take(&mut ctx.out);
        drop(ctx);
        tx.commit()?;
        drop(conn);
        self.check_files()?;
        self.publish(out);
        Ok(value)
    }

    /// Records committed messages in the in-memory tail, then calls the
    /// hook (which wakes waiters): a waiter woken for a message always finds
    /// it, in the tail or in the database.
    fn publish(&self, out: Committed) {
        if !out.messages.is_empty() {
            lock_recent(&self.recent).extend(&out.messages);
        }
        if !(out.posted.is_empty() && out.logs.is_empty()) {
            if let Some(hook) = self.hook.get() {
                hook(&out);
            }
        }
    }

    /// Runs `f` in a deferred (snapshot) read transaction.
    fn read<T>(&self, f: impl FnOnce(&Connection, &str) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let now = time::now();
        let value = f(&tx, &now)?;
        tx.finish()?;
        Ok(value)
    }

    /// Runs a single-statement read without an explicit transaction (the
    /// statement is its own consistent snapshot).
    fn read_one<T>(&self, f: impl FnOnce(&Connection, &str) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        f(&conn, &time::now())
    }

    /// Folds the WAL back into the database file (best effort, never blocks
    /// other processes sharing the file).
    pub fn checkpoint(&self) -> Result<()> {
        let conn = self.lock();
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    // ----- sessions -------------------------------------------------------

    /// `POST /v1/sessions`: register, refusing a fresh session unless `replace`.
    pub fn create_session(
        &self,
        agent_id: &str,
        display_name: &str,
        capabilities: &[String],
        metadata: &Map<String, Value>,
        replace: bool,
    ) -> Result<Session> {
        self.write(|t| {
            let current: Option<String> = t
                .tx
                .query_row(
                    "SELECT last_seen FROM sessions WHERE agent_id = ?1 AND active = 1 ORDER BY created_at DESC LIMIT 1",
                    [agent_id],
                    |r| text(r, 0),
                )
                .optional()?
                .flatten();
            if let Some(last_seen) = current {
                if last_seen >= t.cutoff() && !replace {
                    return Err(Error::conflict("agent_id already has an active session"));
                }
                t.tx.execute(
                    "UPDATE sessions SET active = 0 WHERE agent_id = ?1 AND active = 1",
                    [agent_id],
                )?;
            }
            let session_id = crate::ids::uuid4();
            t.tx.execute(
                "INSERT INTO sessions(session_id, agent_id, display_name, capabilities_json, metadata_json, created_at, last_seen, active) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1)",
                params![
                    session_id,
                    agent_id,
                    display_name,
                    serde_json::to_string(capabilities)?,
                    serde_json::to_string(metadata)?,
                    t.now
                ],
            )?;
            t.session_by_id(&session_id)
        })
    }

    /// `POST /v1/sessions/{agent}/rename`.
    pub fn rename_session(&self, agent_id: &str, display_name: &str) -> Result<Session> {
        self.write(|t| {
            let n = t.tx.execute(
                "UPDATE sessions SET display_name = ?1, last_seen = ?2 WHERE agent_id = ?3 AND active = 1",
                params![display_name, t.now, agent_id],
            )?;
            if n == 0 {
                return Err(Error::not_found("no active session for agent_id"));
            }
            t.newest_session(agent_id)?
                .ok_or_else(|| Error::not_found("no active session for agent_id"))
        })
    }

    /// `DELETE /v1/sessions/{session_id}`.
    pub fn close_session(&self, session_id: &str) -> Result<()> {
        self.write(|t| {
            let n = t.tx.execute(
                "UPDATE sessions SET active = 0 WHERE session_id = ?1 AND active = 1",
                [session_id],
            )?;
            if n == 0 {
                return Err(Error::not_found("session not found"));
            }
            Ok(())
        })
    }

    /// Refreshes `last_seen` of the agent's active sessions (spec §5.2).
    pub fn touch(&self, agent_id: &str) -> Result<()> {
        self.write(|t| t.touch(agent_id))
    }

    /// Expires every session past its TTL, recovering its work.
    pub fn expire_sessions(&self) -> Result<()> {
        self.write(|_| Ok(()))
    }

    /// Unix second at which the next active session becomes expirable.
    pub fn next_expiry(&self) -> Result<Option<i64>> {
        let conn = self.lock();
        let min: Option<String> = conn.query_row(
            "SELECT MIN(last_seen) FROM sessions WHERE active = 1",
            [],
            |r| text(r, 0),
        )?;
        // `last_seen < format(now - ttl)` first holds one second after
        // last_seen + ttl, because the comparison is on truncated strings.
        Ok(min
            .and_then(|s| time::parse(&s))
            .map(|s| s + self.ttl_sec + 1))
    }

    /// `GET /v1/agents`: live sessions ordered by agent id.
    pub fn live_agents(&self, touch: Option<&str>) -> Result<Vec<Session>> {
        self.write(|t| {
            if let Some(agent) = touch {
                t.touch(agent)?;
            }
            t.live_sessions()
        })
    }

    /// `GET /v1/bootstrap`.
    pub fn bootstrap(&self, agent_id: &str) -> Result<Bootstrap> {
        self.write(|t| {
            let session = t.newest_session(agent_id)?;
            let latest_visible_id: i64 = t.tx.query_row(
                "SELECT MAX(COALESCE((SELECT MAX(id) FROM messages WHERE to_agent IS NULL), 0), COALESCE((SELECT MAX(id) FROM messages WHERE to_agent = ?1), 0))",
                [agent_id],
                |r| r.get(0),
            )?;
            Ok(Bootstrap {
                agent_id: agent_id.to_string(),
                session,
                latest_visible_id,
                live_agents: t.live_sessions()?,
                default_channel: "general".into(),
            })
        })
    }

    /// The newest active session of an agent, without side effects.
    pub fn session_of(&self, agent_id: &str) -> Result<Option<Session>> {
        self.read(|c, _| {
            Ok(c.query_row(
                &format!("SELECT {SESSION_COLS} FROM sessions WHERE agent_id = ?1 AND active = 1 ORDER BY created_at DESC LIMIT 1"),
                [agent_id],
                session_row,
            )
            .optional()?)
        })
    }

    // ----- channels -------------------------------------------------------

    pub fn list_channels(&self) -> Result<Vec<Channel>> {
        self.read(|c, _| {
            let mut st = c.prepare(
                "SELECT name, created_at, created_by, metadata_json FROM channels ORDER BY name",
            )?;
            let rows = st.query_map([], channel_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Creates a channel; returns the row and whether it was new.
    pub fn create_channel(
        &self,
        name: &str,
        created_by: Option<&str>,
        metadata: &Map<String, Value>,
    ) -> Result<(Channel, bool)> {
        self.write(|t| {
            if let Some(existing) = t.channel(name)? {
                return Ok((existing, false));
            }
            t.tx.execute(
                "INSERT INTO channels(name, created_at, created_by, metadata_json) VALUES (?1, ?2, ?3, ?4)",
                params![name, t.now, created_by, serde_json::to_string(metadata)?],
            )?;
            let row = t
                .channel(name)?
                .ok_or_else(|| Error::internal("channel vanished after insert"))?;
            Ok((row, true))
        })
    }

    pub fn channel_exists(&self, name: &str) -> Result<bool> {
        self.read_one(|c, _| channel_exists(c, name))
    }

    // ----- messages -------------------------------------------------------

    pub fn task_exists(&self, task_id: i64) -> Result<bool> {
        self.read_one(|c, _| {
            Ok(
                c.query_row("SELECT 1 FROM tasks WHERE task_id = ?1", [task_id], |_| {
                    Ok(())
                })
                .optional()?
                .is_some(),
            )
        })
    }

    /// `POST /v1/messages` after validation: channel check, insert, task
    /// registration, `task_result` completion with rollup, sender touch.
    pub fn post_message(&self, m: NewMessage) -> Result<Message> {
        self.write(|t| {
            if m.to_agent.is_none() && !channel_exists(t.tx, &m.channel)? {
                return Err(Error::invalid(format!("channel does not exist: {}", m.channel)));
            }
            let mut metadata = m.metadata.clone();
            let mut completes = None;
            if m.kind == "task_result" {
                if let Some(request_id) = m.reply_to {
                    if t.open_task_request(request_id)? {
                        metadata.insert("task_completed".into(), json!(request_id));
                        completes = Some(request_id);
                    }
                }
            }
            let msg = t.insert_message(
                &m.from_agent,
                m.to_agent.as_deref(),
                &m.channel,
                &m.kind,
                &m.body,
                &m.attachments,
                m.reply_to,
                m.thread_id.as_deref(),
                &metadata,
            )?;
            if m.kind == "task" || m.kind == "task_request" {
                t.tx.execute(
                    "INSERT OR IGNORE INTO tasks(task_id, parent_task_id, channel, thread_id, status, created_at, completed_at) VALUES (?1, ?2, ?3, ?4, 'open', ?5, NULL)",
                    params![msg.id, m.parent_task_id, msg.channel, msg.thread_id, t.now],
                )?;
            }
            if let Some(request_id) = completes {
                t.tx.execute(
                    "UPDATE tasks SET status = 'done', completed_at = ?1 WHERE task_id = ?2 AND status = 'open'",
                    params![t.now, request_id],
                )?;
                t.rollup(request_id)?;
            }
            t.touch(&m.from_agent)?;
            Ok(msg)
        })
    }

    /// `GET /v1/messages` (broadcast rows only) and `GET /v1/inbox/{agent}`
    /// (when `inbox_of` is set: direct messages to that agent).
    pub fn feed(&self, q: &FeedQuery, inbox_of: Option<&str>) -> Result<Vec<Message>> {
        self.feed_with(q, inbox_of, true)
    }

    /// [`Store::feed`]; with `fresh` false the in-memory tail may lag commits
    /// from other processes by one watcher interval (used by woken waiters,
    /// which the watcher wakes again for such rows).
    pub fn feed_with(
        &self,
        q: &FeedQuery,
        inbox_of: Option<&str>,
        fresh: bool,
    ) -> Result<Vec<Message>> {
        if !(q.tail && q.since_id == 0) {
            if fresh {
                self.sync_foreign()?;
            }
            let page = Page::new(q.limit, PAGE_MAX_BYTES);
            let hit = lock_recent(&self.recent).after(q.since_id, page, |m| {
                (match inbox_of {
                    Some(agent) => m.to_agent.as_deref() == Some(agent),
                    None => m.to_agent.is_none(),
                }) && q.channel.as_ref().is_none_or(|c| *c == m.channel)
                    && q.thread_id
                        .as_ref()
                        .is_none_or(|t| m.thread_id.as_ref() == Some(t))
            });
            if let Some(page) = hit {
                return Ok(page.rows);
            }
        }
        self.read_one(|c, _| {
            let mut clauses = Vec::new();
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            match inbox_of {
                Some(agent) => {
                    clauses.push("to_agent = ?".to_string());
                    args.push(agent.to_string().into());
                }
                None => clauses.push("to_agent IS NULL".into()),
            }
            if let Some(ch) = &q.channel {
                clauses.push("channel = ?".into());
                args.push(ch.clone().into());
            }
            if let Some(th) = &q.thread_id {
                clauses.push("thread_id = ?".into());
                args.push(th.clone().into());
            }
            select_messages(c, &clauses, args, q.since_id, q.limit, q.tail)
        })
    }

    /// Messages visible to one agent (`GET /v1/events`, `GET /v1/stream`).
    pub fn events(&self, q: &EventQuery) -> Result<Vec<Message>> {
        self.events_with(q, true)
    }

    /// [`Store::events`]; `fresh` as in [`Store::feed_with`].
    pub fn events_with(&self, q: &EventQuery, fresh: bool) -> Result<Vec<Message>> {
        Ok(self.events_page(q, fresh)?.rows)
    }

    /// [`Store::events_with`], saying when `strict_bytes` cut the page
    /// before a message too large for it.
    pub fn events_page(&self, q: &EventQuery, fresh: bool) -> Result<EventsPage> {
        if fresh {
            self.sync_foreign()?;
        }
        let page = || Page::new(q.limit, q.max_bytes).strict(q.strict_bytes);
        let hit = lock_recent(&self.recent).after(q.since_id, page(), |m| {
            m.to_agent.as_ref().is_none_or(|to| *to == q.agent_id)
                && (q.channels.is_empty() || q.channels.contains(&m.channel))
                && q.thread_id
                    .as_ref()
                    .is_none_or(|t| m.thread_id.as_ref() == Some(t))
                && !(q.exclude_self && m.from_agent == q.agent_id)
        });
        let page = match hit {
            Some(p) => p,
            None => self.read_one(|c, _| {
                let mut clauses: Vec<String> = Vec::new();
                let mut args: Vec<rusqlite::types::Value> = Vec::new();
                match q.channels.len() {
                    0 => {}
                    1 => {
                        clauses.push("channel = ?".into());
                        args.push(q.channels[0].clone().into());
                    }
                    n => {
                        clauses.push(format!("channel IN ({})", vec!["?"; n].join(", ")));
                        args.extend(q.channels.iter().map(|s| s.clone().into()));
                    }
                }
                if let Some(th) = &q.thread_id {
                    clauses.push("thread_id = ?".into());
                    args.push(th.clone().into());
                }
                if q.exclude_self {
                    clauses.push("from_agent != ?".into());
                    args.push(q.agent_id.clone().into());
                }
                select_visible(c, &q.agent_id, &clauses, args, q.since_id, page())
            })?,
        };
        Ok(EventsPage {
            rows: page.rows,
            blocked_by: page.blocked_by,
        })
    }

    /// Catches up with commits made by other processes sharing the file:
    /// when `PRAGMA data_version` moved, every message after the watcher's
    /// cursor (ours included, so a foreign row with a lower id is never
    /// skipped) extends the in-memory tail and goes to the commit hook, which
    /// wakes waiters. Cheap when nothing changed: one pragma under the lock.
    /// Runs from the watcher thread and before every read served from the
    /// tail, so the tail never hides a foreign row. True if another
    /// process had committed anything.
    pub fn sync_foreign(&self) -> Result<bool> {
        // Small chunks: rows can be megabytes each.
        const CHUNK: i64 = 200;
        let conn = self.lock();
        let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.data_version.swap(version, Ordering::SeqCst) == version {
            return Ok(false);
        }
        // Rows the tail holds are ours and already announced: when the
        // tail covers the cursor, skip straight past them.
        {
            let tail = lock_recent(&self.recent);
            if tail.from <= self.watch_cursor.load(Ordering::SeqCst) {
                self.watch_cursor
                    .fetch_max(tail.last_id(), Ordering::SeqCst);
            }
        }
        let mut st = conn.prepare(&format!(
            "SELECT {MSG_COLS} FROM messages WHERE id > ?1 ORDER BY id LIMIT {CHUNK}"
        ))?;
        loop {
            let since = self.watch_cursor.load(Ordering::SeqCst);
            let rows = st
                .query_map([since], message_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let Some(last) = rows.last() else { break };
            self.watch_cursor.fetch_max(last.id, Ordering::SeqCst);
            let full = rows.len() as i64 == CHUNK;
            lock_recent(&self.recent).extend_foreign(&rows);
            self.publish(Committed {
                posted: rows.iter().map(Posted::of).collect(),
                logs: Vec::new(),
                messages: Vec::new(),
            });
            if !full {
                break;
            }
        }
        Ok(true)
    }

    // ----- claims and locks ----------------------------------------------

    /// `POST /v1/claims`: returns the row and whether it was granted.
    #[allow(clippy::too_many_arguments)]
    pub fn acquire_claim(
        &self,
        owner: &str,
        claim_key: &str,
        task_message_id: Option<i64>,
        thread_id: Option<&str>,
        ttl_sec: i64,
        metadata: &Map<String, Value>,
    ) -> Result<(Claim, bool)> {
        self.write(|t| {
            let expires = time::format(t.now_s + ttl_sec);
            let meta = serde_json::to_string(metadata)?;
            let existing = t.claim(claim_key)?;
            let acquired = match &existing {
                None => {
                    t.tx.execute(
                        "INSERT INTO claims(claim_key, thread_id, task_message_id, owner_agent_id, claimed_at, expires_at, released_at, metadata_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7)",
                        params![claim_key, thread_id, task_message_id, owner, t.now, expires, meta],
                    )?;
                    true
                }
                Some(c) if lease_active(&c.released_at, &c.expires_at, &t.now) => {
                    if c.owner_agent_id == owner {
                        t.tx.execute(
                            "UPDATE claims SET expires_at = ?1 WHERE claim_key = ?2",
                            params![expires, claim_key],
                        )?;
                        true
                    } else {
                        false
                    }
                }
                Some(_) => {
                    t.tx.execute(
                        "UPDATE claims SET thread_id = ?1, task_message_id = ?2, owner_agent_id = ?3, claimed_at = ?4, expires_at = ?5, released_at = NULL, metadata_json = ?6 WHERE claim_key = ?7",
                        params![thread_id, task_message_id, owner, t.now, expires, meta, claim_key],
                    )?;
                    true
                }
            };
            t.touch(owner)?;
            let row = t
                .claim(claim_key)?
                .ok_or_else(|| Error::internal("claim vanished"))?;
            Ok((row, acquired))
        })
    }

    /// `POST /v1/claims/refresh`.
    pub fn refresh_claim(&self, claim_key: &str, owner: &str, ttl_sec: i64) -> Result<Claim> {
        self.refresh(LeaseKind::Claim, claim_key, owner, ttl_sec)
            .map(|v| v.0.expect("claim"))
    }

    /// `POST /v1/claims/release`.
    pub fn release_claim(&self, claim_key: &str, agent: &str) -> Result<Claim> {
        self.release(LeaseKind::Claim, claim_key, agent)
            .map(|v| v.0.expect("claim"))
    }

    pub fn list_claims(&self, thread_id: Option<&str>, active_only: bool) -> Result<Vec<Claim>> {
        self.read(|c, now| {
            let mut sql = format!("SELECT {CLAIM_COLS} FROM claims WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(th) = thread_id {
                sql.push_str(" AND thread_id = ?");
                args.push(th.to_string().into());
            }
            if active_only {
                sql.push_str(" AND released_at IS NULL AND expires_at >= ?");
                args.push(now.to_string().into());
            }
            sql.push_str(" ORDER BY claimed_at, rowid");
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), claim_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// `POST /v1/locks`: returns the row and whether it was granted.
    pub fn acquire_lock(
        &self,
        agent: &str,
        file_path: &str,
        ttl_sec: i64,
        metadata: &Map<String, Value>,
    ) -> Result<(Lock, bool)> {
        self.write(|t| {
            let expires = time::format(t.now_s + ttl_sec);
            let meta = serde_json::to_string(metadata)?;
            let existing = t.lock_row(file_path)?;
            let acquired = match &existing {
                None => {
                    t.tx.execute(
                        "INSERT INTO locks(file_path, agent_id, locked_at, expires_at, released_at, metadata_json) VALUES (?1, ?2, ?3, ?4, NULL, ?5)",
                        params![file_path, agent, t.now, expires, meta],
                    )?;
                    true
                }
                Some(l) if lease_active(&l.released_at, &l.expires_at, &t.now) => {
                    if l.agent_id == agent {
                        t.tx.execute(
                            "UPDATE locks SET expires_at = ?1 WHERE file_path = ?2",
                            params![expires, file_path],
                        )?;
                        true
                    } else {
                        false
                    }
                }
                Some(_) => {
                    t.tx.execute(
                        "UPDATE locks SET agent_id = ?1, locked_at = ?2, expires_at = ?3, released_at = NULL, metadata_json = ?4 WHERE file_path = ?5",
                        params![agent, t.now, expires, meta, file_path],
                    )?;
                    true
                }
            };
            t.touch(agent)?;
            let row = t
                .lock_row(file_path)?
                .ok_or_else(|| Error::internal("lock vanished"))?;
            Ok((row, acquired))
        })
    }

    /// `POST /v1/locks/refresh`.
    pub fn refresh_lock(&self, file_path: &str, agent: &str, ttl_sec: i64) -> Result<Lock> {
        self.refresh(LeaseKind::Lock, file_path, agent, ttl_sec)
            .map(|v| v.1.expect("lock"))
    }

    /// `POST /v1/locks/release`.
    pub fn release_lock(&self, file_path: &str, agent: &str) -> Result<Lock> {
        self.release(LeaseKind::Lock, file_path, agent)
            .map(|v| v.1.expect("lock"))
    }

    pub fn list_locks(&self, agent: Option<&str>, active_only: bool) -> Result<Vec<Lock>> {
        self.read(|c, now| {
            let mut sql = format!("SELECT {LOCK_COLS} FROM locks WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(a) = agent {
                sql.push_str(" AND agent_id = ?");
                args.push(a.to_string().into());
            }
            if active_only {
                sql.push_str(" AND released_at IS NULL AND expires_at >= ?");
                args.push(now.to_string().into());
            }
            sql.push_str(" ORDER BY locked_at, rowid");
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), lock_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn refresh(
        &self,
        kind: LeaseKind,
        key: &str,
        owner: &str,
        ttl_sec: i64,
    ) -> Result<(Option<Claim>, Option<Lock>)> {
        self.write(|t| {
            let expires = time::format(t.now_s + ttl_sec);
            let (sql, missing) = match kind {
                LeaseKind::Claim => (
                    "UPDATE claims SET expires_at = ?1 WHERE claim_key = ?2 AND owner_agent_id = ?3 AND released_at IS NULL AND expires_at >= ?4",
                    "claim not found or not owned by owner_agent_id",
                ),
                LeaseKind::Lock => (
                    "UPDATE locks SET expires_at = ?1 WHERE file_path = ?2 AND agent_id = ?3 AND released_at IS NULL AND expires_at >= ?4",
                    "lock not found or not owned by agent_id",
                ),
            };
            if t.tx.execute(sql, params![expires, key, owner, t.now])? == 0 {
                return Err(Error::not_found(missing));
            }
            t.touch(owner)?;
            t.lease_rows(kind, key)
        })
    }

    fn release(
        &self,
        kind: LeaseKind,
        key: &str,
        owner: &str,
    ) -> Result<(Option<Claim>, Option<Lock>)> {
        self.write(|t| {
            let (sql, missing) = match kind {
                LeaseKind::Claim => (
                    "UPDATE claims SET released_at = ?1 WHERE claim_key = ?2 AND owner_agent_id = ?3 AND released_at IS NULL AND expires_at >= ?1",
                    "claim not found or not owned by agent_id",
                ),
                LeaseKind::Lock => (
                    "UPDATE locks SET released_at = ?1 WHERE file_path = ?2 AND agent_id = ?3 AND released_at IS NULL AND expires_at >= ?1",
                    "lock not found or not owned by agent_id",
                ),
            };
            if t.tx.execute(sql, params![t.now, key, owner])? == 0 {
                return Err(Error::not_found(missing));
            }
            t.touch(owner)?;
            t.lease_rows(kind, key)
        })
    }

    // ----- tasks ----------------------------------------------------------

    pub fn list_tasks(
        &self,
        parent_id: Option<i64>,
        status: Option<&str>,
        channel: Option<&str>,
        thread_id: Option<&str>,
    ) -> Result<Vec<Task>> {
        self.read(|c, _| {
            let mut sql = format!("SELECT {TASK_COLS} FROM tasks WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(p) = parent_id {
                sql.push_str(" AND parent_task_id = ?");
                args.push(p.into());
            }
            for (col, v) in [
                ("status", status),
                ("channel", channel),
                ("thread_id", thread_id),
            ] {
                if let Some(v) = v {
                    sql.push_str(&format!(" AND {col} = ?"));
                    args.push(v.to_string().into());
                }
            }
            sql.push_str(" ORDER BY task_id");
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), task_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// `POST /v1/tasks/{id}/complete`: returns the task and whether this
    /// call completed its parent. Rollup continues up the whole tree.
    pub fn complete_task(&self, task_id: i64) -> Result<(Task, bool)> {
        self.write(|t| {
            if t.task(task_id)?.is_none() {
                return Err(Error::not_found("task not found"));
            }
            t.tx.execute(
                "UPDATE tasks SET status = 'done', completed_at = ?1 WHERE task_id = ?2 AND status = 'open'",
                params![t.now, task_id],
            )?;
            let parent_completed = t.rollup(task_id)?;
            let task = t.task(task_id)?.ok_or_else(|| Error::not_found("task not found"))?;
            Ok((task, parent_completed))
        })
    }

    // ----- threads --------------------------------------------------------

    /// `GET /v1/threads`: one summary per thread, by aggregate SQL.
    pub fn list_threads(&self) -> Result<Vec<ThreadSummary>> {
        self.read(|c, now| {
            let sql = format!(
                "{} ORDER BY COALESCE(m.last_id, -1) DESC, t.thread_id DESC",
                summary_sql(
                    "SELECT thread_id FROM messages WHERE thread_id IS NOT NULL
                     UNION SELECT thread_id FROM tasks WHERE thread_id IS NOT NULL
                     UNION SELECT thread_id FROM claims WHERE thread_id IS NOT NULL"
                )
            );
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(params![now], summary_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// `GET /v1/threads/{id}`; `None` when nothing refers to the thread.
    /// `since_id`/`limit`/`tail` page the message list (compatible
    /// extensions); the list is one page, so it is also cut at
    /// [`PAGE_MAX_BYTES`].
    pub fn thread_detail(
        &self,
        thread_id: &str,
        since_id: i64,
        limit: Option<i64>,
        tail: bool,
    ) -> Result<Option<ThreadDetail>> {
        self.read(|c, now| {
            let messages = select_messages(
                c,
                &["thread_id = ?".to_string()],
                vec![thread_id.to_string().into()],
                since_id,
                limit.unwrap_or(i64::MAX),
                tail,
            )?;
            let mut st = c.prepare(&format!(
                "SELECT {TASK_COLS} FROM tasks WHERE thread_id = ?1 ORDER BY task_id"
            ))?;
            let tasks = st
                .query_map([thread_id], task_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut st = c.prepare(&format!(
                "SELECT {CLAIM_COLS} FROM claims WHERE thread_id = ?1 ORDER BY claimed_at, rowid"
            ))?;
            let claims = st
                .query_map([thread_id], claim_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut st = c.prepare(&format!(
                "SELECT {LOCK_COLS} FROM locks WHERE {} = ?1 ORDER BY locked_at, rowid",
                LOCK_THREAD
            ))?;
            let locks = st
                .query_map([thread_id], lock_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // A page past the thread's last message still finds the thread.
            let has_messages = !messages.is_empty()
                || (since_id > 0
                    && c.query_row(
                        "SELECT 1 FROM messages WHERE thread_id = ?1 LIMIT 1",
                        [thread_id],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some());
            if !has_messages && tasks.is_empty() && claims.is_empty() && locks.is_empty() {
                return Ok(None);
            }
            let sql = summary_sql("SELECT ?2 AS thread_id");
            let thread = c.query_row(&sql, params![now, thread_id], summary_row)?;
            Ok(Some(ThreadDetail {
                thread,
                messages,
                tasks,
                claims,
                locks,
            }))
        })
    }
}

/// The string value of `metadata.thread_id` of a lock, or NULL when the
/// metadata is not valid JSON or the value is not a string (JSON equality
/// with a thread id, which is always a string).
const LOCK_THREAD: &str = "(CASE WHEN json_valid(metadata_json) AND json_type(metadata_json, '$.thread_id') = 'text' THEN json_extract(metadata_json, '$.thread_id') END)";

/// The summary query of spec §7 over the thread ids produced by `ids`
/// (which may use `?2`); `?1` is the current time.
fn summary_sql(ids: &str) -> String {
    format!(
        "WITH t(thread_id) AS ({ids}),
        m AS (SELECT thread_id, COUNT(*) AS cnt, MAX(id) AS last_id, MIN(id) AS first_id,
                     MAX(CASE WHEN kind = 'artifact' THEN id END) AS art
              FROM messages WHERE thread_id IN (SELECT thread_id FROM t) GROUP BY thread_id),
        k AS (SELECT thread_id, COUNT(*) AS total, SUM(status = 'open') AS open,
                     MIN(CASE WHEN parent_task_id IS NULL THEN task_id END) AS root,
                     MIN(task_id) AS first_task
              FROM tasks WHERE thread_id IN (SELECT thread_id FROM t) GROUP BY thread_id),
        c AS (SELECT thread_id, SUM(released_at IS NULL AND expires_at >= ?1) AS active
              FROM claims WHERE thread_id IN (SELECT thread_id FROM t) GROUP BY thread_id),
        l AS (SELECT {LOCK_THREAD} AS thread_id, SUM(released_at IS NULL AND expires_at >= ?1) AS active
              FROM locks GROUP BY 1)
        SELECT t.thread_id,
               COALESCE((SELECT channel FROM tasks WHERE task_id = k.root),
                        (SELECT channel FROM messages WHERE id = m.first_id),
                        (SELECT channel FROM tasks WHERE task_id = k.first_task)),
               k.root, m.last_id, (SELECT ts FROM messages WHERE id = m.last_id), m.art,
               COALESCE(m.cnt, 0), COALESCE(k.total, 0), COALESCE(k.open, 0),
               COALESCE(c.active, 0), COALESCE(l.active, 0)
        FROM t LEFT JOIN m ON m.thread_id = t.thread_id
               LEFT JOIN k ON k.thread_id = t.thread_id
               LEFT JOIN c ON c.thread_id = t.thread_id
               LEFT JOIN l ON l.thread_id = t.thread_id"
    )
}

fn summary_row(r: &Row<'_>) -> rusqlite::Result<ThreadSummary> {
    let total: i64 = r.get(7)?;
    let open: i64 = r.get(8)?;
    let claims: i64 = r.get(9)?;
    let locks: i64 = r.get(10)?;
    let status = if total > 0 && open == 0 {
        "completed"
    } else if claims + locks > 0 {
        "open"
    } else {
        "waiting"
    };
    Ok(ThreadSummary {
        thread_id: text(r, 0)?.unwrap_or_default(),
        channel: text(r, 1)?,
        root_task_id: int(r, 2)?,
        latest_message_id: int(r, 3)?,
        latest_message_ts: text(r, 4)?,
        latest_artifact_id: int(r, 5)?,
        message_count: r.get(6)?,
        total_task_count: total,
        open_task_count: open,
        active_claim_count: claims,
        active_lock_count: locks,
        status: status.into(),
    })
}

fn select_messages(
    c: &Connection,
    clauses: &[String],
    mut args: Vec<rusqlite::types::Value>,
    since_id: i64,
    limit: i64,
    tail: bool,
) -> Result<Vec<Message>> {
    let filter = clauses.join(" AND ");
    if tail && since_id == 0 {
        // The newest rows that fit one page, returned oldest first.
        args.push(limit.into());
        let sql =
            format!("SELECT {MSG_COLS} FROM messages WHERE {filter} ORDER BY id DESC LIMIT ?");
        let mut rows = fill_page(c, &sql, args, Page::new(limit, PAGE_MAX_BYTES))?.rows;
        rows.reverse();
        return Ok(rows);
    }
    args.push(since_id.into());
    args.push(limit.into());
    let sql =
        format!("SELECT {MSG_COLS} FROM messages WHERE {filter} AND id > ? ORDER BY id LIMIT ?");
    Ok(fill_page(c, &sql, args, Page::new(limit, PAGE_MAX_BYTES))?.rows)
}

/// Runs a message query and keeps the rows that fit one [`Page`],
/// stepping no further than that.
fn fill_page(
    c: &Connection,
    sql: &str,
    args: Vec<rusqlite::types::Value>,
    mut page: Page,
) -> Result<Page> {
    let mut st = c.prepare(sql)?;
    let mut rows = st.query(rusqlite::params_from_iter(args))?;
    while let Some(r) = rows.next()? {
        let size = row_size(r)?;
        // Sized before it is parsed: a row that does not fit is never built.
        if !page.fits(size) || !page.push(message_row(r)?, size) {
            break;
        }
    }
    Ok(page)
}

/// Broadcasts plus direct messages to `agent`, after `since_id`, in id
/// order. Written as two index-ordered halves (`ix_m_to` serves both)
/// so SQLite stops after `limit` rows of each, instead of collecting and
/// sorting every visible row as `to_agent IS NULL OR to_agent = ?` would.
fn select_visible(
    c: &Connection,
    agent: &str,
    clauses: &[String],
    filter_args: Vec<rusqlite::types::Value>,
    since_id: i64,
    page: Page,
) -> Result<Page> {
    let limit = i64::try_from(page.limit).unwrap_or(i64::MAX);
    let extra: String = clauses.iter().map(|c| format!(" AND {c}")).collect();
    let sql = format!(
        "SELECT * FROM (SELECT {MSG_COLS} FROM messages WHERE to_agent IS NULL{extra} AND id > ? ORDER BY id LIMIT ?) \
         UNION ALL \
         SELECT * FROM (SELECT {MSG_COLS} FROM messages WHERE to_agent = ?{extra} AND id > ? ORDER BY id LIMIT ?) \
         ORDER BY id LIMIT ?"
    );
    let mut args = filter_args.clone();
    args.extend([since_id.into(), limit.into(), agent.to_string().into()]);
    args.extend(filter_args);
    args.extend([since_id.into(), limit.into(), limit.into()]);
    fill_page(c, &sql, args, page)
}

fn channel_exists(c: &Connection, name: &str) -> Result<bool> {
    Ok(
        c.query_row("SELECT 1 FROM channels WHERE name = ?1", [name], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

fn lease_active(released_at: &Option<String>, expires_at: &str, now: &str) -> bool {
    released_at.is_none() && expires_at >= now
}

/// One write transaction in progress.
struct Tx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    now_s: i64,
    now: String,
    ttl_sec: i64,
    out: Committed,
}

impl Tx<'_> {
    /// Sessions whose `last_seen` is before this are expired.
    fn cutoff(&self) -> String {
        time::format(self.now_s - self.ttl_sec)
    }

    fn touch(&mut self, agent_id: &str) -> Result<()> {
        // Rows already stamped with this second are left alone, so a touch
        // that changes nothing commits an empty transaction (no fsync).
        self.tx.execute(
            "UPDATE sessions SET last_seen = ?1 WHERE agent_id = ?2 AND active = 1 AND last_seen != ?1",
            params![self.now, agent_id],
        )?;
        Ok(())
    }

    /// The one expiry routine: deactivate sessions past their TTL and
    /// recover the work of agents left with no live session. Only rows this
    /// transaction actually changed are announced, so two hubs sharing the
    /// file never announce the same recovery twice.
    fn expire_due(&mut self) -> Result<()> {
        let cutoff = self.cutoff();
        let mut st = self.tx.prepare(
            "SELECT session_id, agent_id FROM sessions WHERE active = 1 AND last_seen < ?1 ORDER BY last_seen",
        )?;
        let due = st
            .query_map([&cutoff], |r| {
                Ok((
                    text(r, 0)?.unwrap_or_default(),
                    text(r, 1)?.unwrap_or_default(),
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(st);
        let mut agents: Vec<String> = Vec::new();
        for (sid, agent) in due {
            let n = self.tx.execute(
                "UPDATE sessions SET active = 0 WHERE session_id = ?1 AND active = 1",
                [&sid],
            )?;
            if n == 1 {
                self.out
                    .logs
                    .push(format!("session expired: agent={agent} session={sid}"));
                if !agents.contains(&agent) {
                    agents.push(agent);
                }
            }
        }
        for agent in agents {
            let still_live: bool = self
                .tx
                .query_row(
                    "SELECT 1 FROM sessions WHERE agent_id = ?1 AND active = 1",
                    [&agent],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !still_live {
                self.recover(&agent)?;
            }
        }
        Ok(())
    }

    fn recover(&mut self, agent: &str) -> Result<()> {
        let mut st = self.tx.prepare(&format!(
            "SELECT {CLAIM_COLS} FROM claims WHERE owner_agent_id = ?1 AND released_at IS NULL AND expires_at >= ?2 ORDER BY claimed_at, rowid"
        ))?;
        let claims = st
            .query_map(params![agent, self.now], claim_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(st);
        for claim in claims {
            let n = self.tx.execute(
                "UPDATE claims SET released_at = ?1 WHERE claim_key = ?2 AND released_at IS NULL",
                params![self.now, claim.claim_key],
            )?;
            if n != 1 {
                continue;
            }
            self.out.logs.push(format!(
                "claim recovered: key={} stale_owner={agent} thread={}",
                claim.claim_key,
                claim.thread_id.as_deref().unwrap_or("-")
            ));
            let channel = match &claim.thread_id {
                Some(tid) => self.thread_channel(tid)?,
                None => None,
            };
            self.notice(
                channel.as_deref().unwrap_or("general"),
                &format!(
                    "Recovered stale claim {} from {agent}. Work is available for pickup.",
                    claim.claim_key
                ),
                json!({"recovery": true, "stale_agent_id": agent, "claim_key": claim.claim_key, "task_message_id": claim.task_message_id}),
                claim.task_message_id,
                claim.thread_id.as_deref(),
            )?;
        }
        let mut st = self.tx.prepare(&format!(
            "SELECT {LOCK_COLS} FROM locks WHERE agent_id = ?1 AND released_at IS NULL AND expires_at >= ?2 ORDER BY locked_at, rowid"
        ))?;
        let locks = st
            .query_map(params![agent, self.now], lock_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(st);
        for lock in locks {
            let n = self.tx.execute(
                "UPDATE locks SET released_at = ?1 WHERE file_path = ?2 AND released_at IS NULL",
                params![self.now, lock.file_path],
            )?;
            if n != 1 {
                continue;
            }
            let thread_id = match lock.metadata.get("thread_id") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    crate::input::scalar_string(other).or_else(|| Some(other.to_string()))
                }
            };
            self.out.logs.push(format!(
                "lock recovered: path={} stale_owner={agent} thread={}",
                lock.file_path,
                thread_id.as_deref().unwrap_or("-")
            ));
            let mut channel = match lock.metadata.get("channel") {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            };
            if let Some(tid) = &thread_id {
                if let Some(ch) = self.thread_channel(tid)? {
                    channel = Some(ch);
                }
            }
            self.notice(
                channel.as_deref().unwrap_or("general"),
                &format!(
                    "Recovered stale lock on {} from {agent}. The file is available for pickup.",
                    lock.file_path
                ),
                json!({"recovery": true, "stale_agent_id": agent, "file_path": lock.file_path}),
                None,
                thread_id.as_deref(),
            )?;
        }
        Ok(())
    }

    /// The summary channel of a thread (spec §7), without building the rest.
    fn thread_channel(&self, thread_id: &str) -> Result<Option<String>> {
        Ok(self
            .tx
            .query_row(
                "SELECT COALESCE(
                    (SELECT channel FROM tasks WHERE thread_id = ?1 AND parent_task_id IS NULL ORDER BY task_id LIMIT 1),
                    (SELECT channel FROM messages WHERE thread_id = ?1 ORDER BY id LIMIT 1),
                    (SELECT channel FROM tasks WHERE thread_id = ?1 ORDER BY task_id LIMIT 1))",
                [thread_id],
                |r| text(r, 0),
            )?)
    }

    /// Posts a system notice; a channel that does not exist falls back to
    /// `general` so the notice can always be read through `/v1/messages`.
    fn notice(
        &mut self,
        channel: &str,
        body: &str,
        metadata: Value,
        reply_to: Option<i64>,
        thread_id: Option<&str>,
    ) -> Result<Message> {
        let channel = if channel_exists(self.tx, channel)? {
            channel
        } else {
            "general"
        };
        let metadata = match metadata {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.insert_message(
            "system",
            None,
            channel,
            "notice",
            body,
            &[],
            reply_to,
            thread_id,
            &metadata,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_message(
        &mut self,
        from: &str,
        to: Option<&str>,
        channel: &str,
        kind: &str,
        body: &str,
        attachments: &[Value],
        reply_to: Option<i64>,
        thread_id: Option<&str>,
        metadata: &Map<String, Value>,
    ) -> Result<Message> {
        let next: i64 = self.tx.query_row(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0), COALESCE((SELECT MAX(id) FROM messages), 0)) + 1",
            [],
            |r| r.get(0),
        )?;
        if next > MAX_MESSAGE_ID {
            return Err(Error::internal("message id space exhausted (2^53 - 1)"));
        }
        self.tx.execute(
            "INSERT INTO messages(ts, from_agent, to_agent, channel, kind, body, attachments_json, reply_to, thread_id, metadata_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                self.now,
                from,
                to,
                channel,
                kind,
                body,
                serde_json::to_string(attachments)?,
                reply_to,
                thread_id,
                serde_json::to_string(metadata)?
            ],
        )?;
        let id = self.tx.last_insert_rowid();
        let msg = Message {
            id,
            ts: self.now.clone(),
            from_agent: from.to_string(),
            to_agent: to.map(str::to_string),
            channel: channel.to_string(),
            kind: kind.to_string(),
            body: body.to_string(),
            attachments: attachments.to_vec(),
            reply_to,
            thread_id: thread_id.map(str::to_string),
            metadata: Value::Object(metadata.clone()),
        };
        self.out.posted.push(Posted::of(&msg));
        self.out.messages.push(msg.clone());
        Ok(msg)
    }

    /// True when `id` is a `task_request` message whose task is open.
    fn open_task_request(&self, id: i64) -> Result<bool> {
        Ok(self
            .tx
            .query_row(
                "SELECT 1 FROM messages m JOIN tasks t ON t.task_id = m.id WHERE m.id = ?1 AND m.kind = 'task_request' AND t.status = 'open'",
                [id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Completes ancestors whose children are all done, one notice per
    /// level. Returns whether the direct parent of `task_id` was completed.
    fn rollup(&mut self, task_id: i64) -> Result<bool> {
        let mut child = task_id;
        let mut direct = false;
        for level in 0.. {
            let Some(parent_id) = self.task(child)?.and_then(|t| t.parent_task_id) else {
                break;
            };
            let Some(parent) = self.task(parent_id)? else {
                break;
            };
            if parent.status != "open" {
                break;
            }
            let (children, open): (i64, i64) = self.tx.query_row(
                "SELECT COUNT(*), COALESCE(SUM(status != 'done'), 0) FROM tasks WHERE parent_task_id = ?1",
                [parent_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if open > 0 {
                break;
            }
            let n = self.tx.execute(
                "UPDATE tasks SET status = 'done', completed_at = ?1 WHERE task_id = ?2 AND status = 'open'",
                params![self.now, parent_id],
            )?;
            if n != 1 {
                break;
            }
            self.notice(
                &parent.channel,
                &format!("All {children} subtasks of task {parent_id} are complete."),
                json!({"auto_rollup": true, "parent_task_id": parent_id}),
                Some(parent_id),
                parent.thread_id.as_deref(),
            )?;
            if level == 0 {
                direct = true;
            }
            child = parent_id;
        }
        Ok(direct)
    }

    fn task(&self, id: i64) -> Result<Option<Task>> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {TASK_COLS} FROM tasks WHERE task_id = ?1"),
                [id],
                task_row,
            )
            .optional()?)
    }

    fn session_by_id(&self, session_id: &str) -> Result<Session> {
        Ok(self.tx.query_row(
            &format!("SELECT {SESSION_COLS} FROM sessions WHERE session_id = ?1"),
            [session_id],
            session_row,
        )?)
    }

    fn newest_session(&self, agent_id: &str) -> Result<Option<Session>> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {SESSION_COLS} FROM sessions WHERE agent_id = ?1 AND active = 1 ORDER BY created_at DESC, rowid DESC LIMIT 1"),
                [agent_id],
                session_row,
            )
            .optional()?)
    }

    fn live_sessions(&self) -> Result<Vec<Session>> {
        let mut st = self.tx.prepare(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE active = 1 ORDER BY agent_id, created_at"
        ))?;
        let rows = st.query_map([], session_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn channel(&self, name: &str) -> Result<Option<Channel>> {
        Ok(self
            .tx
            .query_row(
                "SELECT name, created_at, created_by, metadata_json FROM channels WHERE name = ?1",
                [name],
                channel_row,
            )
            .optional()?)
    }

    fn claim(&self, key: &str) -> Result<Option<Claim>> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {CLAIM_COLS} FROM claims WHERE claim_key = ?1"),
                [key],
                claim_row,
            )
            .optional()?)
    }

    fn lock_row(&self, path: &str) -> Result<Option<Lock>> {
        Ok(self
            .tx
            .query_row(
                &format!("SELECT {LOCK_COLS} FROM locks WHERE file_path = ?1"),
                [path],
                lock_row,
            )
            .optional()?)
    }

    fn lease_rows(&self, kind: LeaseKind, key: &str) -> Result<(Option<Claim>, Option<Lock>)> {
        Ok(match kind {
            LeaseKind::Claim => (self.claim(key)?, None),
            LeaseKind::Lock => (None, self.lock_row(key)?),
        })
    }
}

fn lock_recent(m: &Mutex<Recent>) -> MutexGuard<'_, Recent> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ----- tolerant row readers ----------------------------------------------

/// A column as text whatever its storage class (NULL stays `None`).
fn text(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    Ok(match r.get_ref(i)? {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
    })
}

/// A column as an integer when it holds one (or numeric text).
fn int(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<i64>> {
    Ok(match r.get_ref(i)? {
        ValueRef::Integer(n) => Some(n),
        ValueRef::Real(f) if f.fract() == 0.0 => Some(f as i64),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        _ => None,
    })
}

/// A JSON column; empty, NULL or unparsable text reads as `default`.
/// Python writes `NaN` and `Infinity` for non-finite floats; those read
/// as `null` rather than discarding the whole value.
fn json_col(r: &Row<'_>, i: usize, default: Value) -> rusqlite::Result<Value> {
    Ok(text(r, i)?
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| {
            serde_json::from_str(&s)
                .ok()
                .or_else(|| serde_json::from_str(&null_non_finite(&s)).ok())
        })
        .unwrap_or(default))
}

/// Replaces the bare tokens `NaN`, `Infinity` and `-Infinity` (outside
/// strings) with `null`.
fn null_non_finite(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_str = false;
    let mut escaped = false;
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_str = true;
        }
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        match token {
            Some(t) => {
                out.push_str("null");
                rest = &rest[t.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// What a message row weighs, from its stored text (as
/// [`approx_size`] counts a parsed message, without parsing it).
fn row_size(r: &Row<'_>) -> rusqlite::Result<usize> {
    let mut n = 256;
    for i in 1..=10 {
        n += match r.get_ref(i)? {
            ValueRef::Text(t) | ValueRef::Blob(t) => t.len(),
            _ => 8,
        };
    }
    Ok(n)
}

fn message_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    let attachments = match json_col(r, 7, Value::Array(Vec::new()))? {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    Ok(Message {
        id: r.get(0)?,
        ts: text(r, 1)?.unwrap_or_default(),
        from_agent: text(r, 2)?.unwrap_or_default(),
        to_agent: text(r, 3)?,
        channel: text(r, 4)?.unwrap_or_default(),
        kind: text(r, 5)?.unwrap_or_default(),
        body: text(r, 6)?.unwrap_or_default(),
        attachments,
        reply_to: int(r, 8)?,
        thread_id: text(r, 9)?,
        metadata: json_col(r, 10, json!({}))?,
    })
}

fn session_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        session_id: text(r, 0)?.unwrap_or_default(),
        agent_id: text(r, 1)?.unwrap_or_default(),
        display_name: text(r, 2)?.unwrap_or_default(),
        capabilities: json_col(r, 3, json!([]))?,
        metadata: json_col(r, 4, json!({}))?,
        created_at: text(r, 5)?.unwrap_or_default(),
        last_seen: text(r, 6)?.unwrap_or_default(),
        active: int(r, 7)?.unwrap_or(0) != 0,
    })
}

fn channel_row(r: &Row<'_>) -> rusqlite::Result<Channel> {
    Ok(Channel {
        name: text(r, 0)?.unwrap_or_default(),
        created_at: text(r, 1)?.unwrap_or_default(),
        created_by: text(r, 2)?,
        metadata: json_col(r, 3, json!({}))?,
    })
}

fn claim_row(r: &Row<'_>) -> rusqlite::Result<Claim> {
    Ok(Claim {
        claim_key: text(r, 0)?.unwrap_or_default(),
        thread_id: text(r, 1)?,
        task_message_id: int(r, 2)?,
        owner_agent_id: text(r, 3)?.unwrap_or_default(),
        claimed_at: text(r, 4)?.unwrap_or_default(),
        expires_at: text(r, 5)?.unwrap_or_default(),
        released_at: text(r, 6)?,
        metadata: json_col(r, 7, json!({}))?,
    })
}

fn lock_row(r: &Row<'_>) -> rusqlite::Result<Lock> {
    Ok(Lock {
        file_path: text(r, 0)?.unwrap_or_default(),
        agent_id: text(r, 1)?.unwrap_or_default(),
        locked_at: text(r, 2)?.unwrap_or_default(),
        expires_at: text(r, 3)?.unwrap_or_default(),
        released_at: text(r, 4)?,
        metadata: json_col(r, 5, json!({}))?,
    })
}

fn task_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        task_id: r.get(0)?,
        parent_task_id: int(r, 1)?,
        channel: text(r, 2)?.unwrap_or_default(),
        thread_id: text(r, 3)?,
        status: text(r, 4)?.unwrap_or_default(),
        created_at: text(r, 5)?.unwrap_or_default(),
        completed_at: text(r, 6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store(ttl: i64) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("arc-store-{}", crate::ids::uuid4_hex()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("arc.sqlite3"), ttl).unwrap();
        (store, dir)
    }

    fn post(store: &Store, channel: &str, kind: &str, body: &str) -> Message {
        store
            .post_message(NewMessage {
                from_agent: "a".into(),
                channel: channel.into(),
                kind: kind.into(),
                body: body.into(),
                ..Default::default()
            })
            .unwrap()
    }

    fn m(id: i64, to: Option<&str>) -> Message {
        Message {
            id,
            to_agent: to.map(Into::into),
            channel: "general".into(),
            ..Message::default()
        }
    }

    #[test]
    fn recent_tail_is_complete_or_declines() {
        let mut r = Recent {
            from: 10,
            ..Recent::default()
        };
        r.extend(&[m(11, None), m(12, Some("bob"))]);
        assert_eq!(
            r.after(10, Page::new(100, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            r.after(11, Page::new(100, PAGE_MAX_BYTES), |x| x.to_agent.is_none())
                .map(|p| p.rows)
                .unwrap()
                .len(),
            0
        );
        assert!(
            r.after(9, Page::new(100, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .is_none(),
            "before the tail: use SQL"
        );
        // A gap (id 13 written by someone else) restarts the tail after it.
        r.extend(&[m(14, None)]);
        assert!(
            r.after(12, Page::new(100, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .is_none()
        );
        assert_eq!(
            r.after(13, Page::new(100, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .unwrap()
                .len(),
            1
        );
        // Late, already covered or older batches are ignored.
        r.extend(&[m(13, None), m(14, None)]);
        assert!(
            r.after(12, Page::new(100, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .is_none()
        );
        r.extend(&[m(15, None), m(16, None)]);
        assert_eq!(
            r.after(13, Page::new(2, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .unwrap()
                .iter()
                .map(|x| x.id)
                .collect::<Vec<_>>(),
            [14, 15]
        );
    }

    #[test]
    fn recent_tail_is_bounded() {
        let mut r = Recent {
            from: 0,
            ..Recent::default()
        };
        let batch: Vec<Message> = (1..=(RECENT_MAX_MSGS as i64 + 10))
            .map(|i| m(i, None))
            .collect();
        r.extend(&batch);
        assert_eq!(r.msgs.len(), RECENT_MAX_MSGS);
        assert_eq!(r.from, 10);
        assert!(
            r.after(5, Page::new(10, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .is_none()
        );
    }

    #[test]
    fn the_tail_counts_metadata_and_long_fields_against_its_byte_cap() {
        // Regression: only body and attachments were counted, so 4 MB
        // metadata blobs were kept 4096 at a time.
        let mut r = Recent::default();
        let blob = "A".repeat(1 << 20);
        let batch: Vec<Message> = (1..=64)
            .map(|i| Message {
                metadata: serde_json::json!({ "blob": blob }),
                thread_id: Some("t".repeat(1000)),
                ..m(i, None)
            })
            .collect();
        r.extend(&batch);
        assert!(r.bytes <= RECENT_MAX_BYTES, "{}", r.bytes);
        assert!(r.msgs.len() <= 16, "{} messages kept", r.msgs.len());
    }

    #[test]
    fn foreign_rows_that_may_still_change_are_not_cached() {
        // The Python hub inserts a task_result and stamps task_completed
        // into it in a later commit: reads spanning it must use SQL.
        let mut r = Recent {
            from: 10,
            ..Recent::default()
        };
        let pending_result = Message {
            kind: "task_result".into(),
            reply_to: Some(5),
            ..m(12, None)
        };
        r.extend_foreign(&[m(11, None), pending_result, m(13, None)]);
        assert!(
            r.after(11, Page::new(10, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .is_none(),
            "12 must come from SQL"
        );
        assert_eq!(
            r.after(12, Page::new(10, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .unwrap()
                .len(),
            1
        );
        let done = Message {
            kind: "task_result".into(),
            reply_to: Some(5),
            metadata: serde_json::json!({"task_completed": 5}),
            ..m(14, None)
        };
        r.extend_foreign(&[done]);
        assert_eq!(
            r.after(12, Page::new(10, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_foreign_commit_announces_only_foreign_rows() {
        // Regression: the watcher re-read (and re-announced) every local
        // row since the last foreign commit.
        let (store, dir) = temp_store(120);
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        {
            let seen = seen.clone();
            store.set_commit_hook(move |c: &Committed| {
                seen.lock().unwrap().extend(c.posted.iter().map(|p| p.id));
            });
        }
        for i in 0..50 {
            post(&store, "general", "chat", &format!("local {i}"));
        }
        seen.lock().unwrap().clear();
        let other = Connection::open(dir.join("arc.sqlite3")).unwrap();
        other
            .execute(
                "INSERT INTO messages(ts, from_agent, channel, kind, body) \
                 VALUES('2026-01-01T00:00:00Z', 'py', 'general', 'chat', 'foreign')",
                [],
            )
            .unwrap();
        let foreign_id = other.last_insert_rowid();
        assert!(store.sync_foreign().unwrap());
        assert_eq!(*seen.lock().unwrap(), [foreign_id]);
    }

    #[test]
    fn events_from_sql_merge_broadcasts_and_own_dms_in_id_order() {
        // Reopened, so the in-memory tail is empty and SQL answers.
        let (store, dir) = temp_store(120);
        let mut expect_bob = Vec::new();
        for i in 0..30 {
            let to = match i % 3 {
                0 => None,
                1 => Some("bob"),
                _ => Some("carol"),
            };
            let msg = store
                .post_message(NewMessage {
                    from_agent: if i % 5 == 0 { "bob" } else { "a" }.into(),
                    to_agent: to.map(Into::into),
                    channel: if to.is_some() { "direct" } else { "general" }.into(),
                    kind: "chat".into(),
                    body: format!("m{i}"),
                    ..Default::default()
                })
                .unwrap();
            if to != Some("carol") && msg.from_agent != "bob" {
                expect_bob.push(msg.id);
            }
        }
        drop(store);
        let store = Store::open(&dir.join("arc.sqlite3"), 120).unwrap();
        let q = |since_id, limit| EventQuery {
            agent_id: "bob".into(),
            channels: Vec::new(),
            thread_id: None,
            since_id,
            limit,
            exclude_self: true,
            max_bytes: PAGE_MAX_BYTES,
            strict_bytes: false,
        };
        let ids = |rows: Vec<Message>| rows.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(store.events(&q(0, 100)).unwrap()), expect_bob);
        assert_eq!(ids(store.events(&q(0, 5)).unwrap()), expect_bob[..5]);
        let mid = expect_bob[7];
        assert_eq!(
            ids(store.events(&q(mid, 4)).unwrap()),
            expect_bob[8..12].to_vec()
        );
    }

    #[test]
    fn non_finite_python_floats_read_as_null() {
        assert_eq!(
            null_non_finite(r#"{"a": NaN, "b": -Infinity, "c": "NaN", "d": [Infinity]}"#),
            r#"{"a": null, "b": null, "c": "NaN", "d": [null]}"#
        );
        assert_eq!(null_non_finite(r#"{"e": "q\"NaN"}"#), r#"{"e": "q\"NaN"}"#);
    }

    #[test]
    fn seeds_channels_and_reopens_without_reset() {
        let (store, dir) = temp_store(120);
        let names: Vec<_> = store
            .list_channels()
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["direct", "general"]);
        let birth = store.birth().unwrap();
        post(&store, "general", "chat", "hi");
        drop(store);
        let again = Store::open(&dir.join("arc.sqlite3"), 120).unwrap();
        assert_eq!(again.birth().unwrap(), birth);
        assert_eq!(
            again
                .feed(
                    &FeedQuery {
                        channel: Some("general".into()),
                        limit: 10,
                        ..Default::default()
                    },
                    None
                )
                .unwrap()
                .len(),
            1
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn message_id_cap_refuses_without_inserting() {
        let (store, dir) = temp_store(120);
        post(&store, "general", "chat", "first");
        store
            .lock()
            .execute(
                "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'messages'",
                [MAX_MESSAGE_ID],
            )
            .unwrap();
        let err = store
            .post_message(NewMessage {
                from_agent: "a".into(),
                channel: "general".into(),
                kind: "chat".into(),
                body: "x".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err}");
        let count: i64 = store
            .lock()
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 1);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn rollup_climbs_the_tree_once() {
        let (store, dir) = temp_store(120);
        let root = post(&store, "general", "task", "root");
        let mid = store
            .post_message(NewMessage {
                from_agent: "a".into(),
                channel: "general".into(),
                kind: "task".into(),
                body: "mid".into(),
                parent_task_id: Some(root.id),
                ..Default::default()
            })
            .unwrap();
        let leaf = store
            .post_message(NewMessage {
                from_agent: "a".into(),
                channel: "general".into(),
                kind: "task".into(),
                body: "leaf".into(),
                parent_task_id: Some(mid.id),
                ..Default::default()
            })
            .unwrap();
        let (task, parent_completed) = store.complete_task(leaf.id).unwrap();
        assert_eq!(task.status, "done");
        assert!(parent_completed);
        let tasks = store.list_tasks(None, Some("open"), None, None).unwrap();
        assert!(tasks.is_empty(), "{tasks:?}");
        let notices: Vec<_> = store
            .feed(
                &FeedQuery {
                    channel: Some("general".into()),
                    limit: 100,
                    ..Default::default()
                },
                None,
            )
            .unwrap()
            .into_iter()
            .filter(|m| m.kind == "notice")
            .map(|m| m.body)
            .collect();
        assert_eq!(
            notices,
            [
                format!("All 1 subtasks of task {} are complete.", mid.id),
                format!("All 1 subtasks of task {} are complete.", root.id)
            ]
        );
        // Completing again is idempotent and posts nothing new.
        let (_, again) = store.complete_task(leaf.id).unwrap();
        assert!(!again);
        std::fs::remove_dir_all(dir).ok();
    }
}
