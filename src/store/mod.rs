/*!
The SQLite store: the only module in the crate that contains SQL.

One `rusqlite::Connection` behind a mutex. Every read-modify-write runs in
a `BEGIN IMMEDIATE` transaction ([`Store::write`]), so it is atomic against
other threads and against other hub processes sharing the same file
(docs/PROTOCOL.md, "Data model"). Presence expiry is one routine
(`expiry.rs`) that runs at the start of every write transaction, so a
session past its TTL is expired, and its work recovered, before anything
in that transaction could touch (and so revive) it.

Every write transaction collects the messages it inserted and the log
lines it produced; after the commit they are handed to the commit hook
(which wakes waiters and prints lifecycle lines). The store itself never
parks, never logs and knows nothing about HTTP: it returns domain errors
([`Error::Invalid`], [`Error::NotFound`], ...) that the API maps to
statuses.

Files: `schema.rs` (the frozen schema), `tx.rs` (a write transaction and
its shared steps), `expiry.rs` (expiry and recovery), `sessions.rs`,
`messages.rs` (posting, feeds, the foreign-commit watcher), `leases.rs`
(claims and locks, one implementation), `tasks.rs`, `threads.rs`,
`tail.rs` (the in-memory tail and pages), `delivery.rs` (delivery marks
and dead letters, in extension tables) and `rows.rs` (row readers).
*/

mod dag;
mod delivery;
mod expiry;
mod group;
mod leases;
mod messages;
mod reservations;
mod rows;
mod schema;
mod sessions;
mod tail;
mod tasks;
mod threads;
mod tx;

pub use dag::{Assignment, NEXT_CLAIM_TTL_SEC, TaskSpec, claim_key_of, spec_of};
pub use delivery::{DeadLetter, Delivery, Marks, Pending, PendingLists, Scope as DeliveryScope};
pub use leases::LeaseRow;
pub use messages::{EventQuery, EventsPage, FeedQuery, Freshness, NewMessage};
pub use reservations::{
    Conflict, NewReservation, PathRules, Reservation, Reserved, reservation_json,
};
pub use schema::{MAX_MESSAGE_ID, MAX_TTL_SEC};
pub use tail::PAGE_MAX_BYTES;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::time;
use crate::wire::Message;

use rows::text;
use tail::{Recent, lock_recent};
use tx::Tx;

/// What a committed write produced: inserted messages and log lines.
#[derive(Debug, Default, Clone)]
pub struct Committed {
    pub posted: Vec<crate::notify::Posted>,
    pub logs: Vec<String>,
    /// Tasks or claims changed: something may have become ready.
    pub work: bool,
    messages: Vec<Message>,
}

impl Committed {
    /// Adds what a later writer in the same transaction produced.
    fn append(&mut self, mut later: Committed) {
        self.posted.append(&mut later.posted);
        self.work |= later.work;
        self.logs.append(&mut later.logs);
        self.messages.append(&mut later.messages);
    }
}

/// Statements through the connection's statement cache, so the SQL text
/// of a hot statement is parsed once, not on every request.
pub(super) trait Cached {
    fn run<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn one<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn run<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn one<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// How many prepared statements the connection keeps (the store has
/// about seventy distinct ones, some with a few shapes each).
const STATEMENT_CACHE: usize = 256;

/// The connection, held for reading: no batch is open on it.
struct Held<'a>(MutexGuard<'a, group::Conn>);

impl std::ops::Deref for Held<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0.c
    }
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
    conn: group::Group,
    files: Files,
    ttl_sec: i64,
    journal_mode: String,
    hook: OnceLock<Hook>,
    /// Highest message id the foreign-commit watcher has scanned.
    watch_cursor: AtomicI64,
    /// Last `PRAGMA data_version` read by [`Store::foreign_commits`].
    data_version: AtomicI64,
    recent: Mutex<Recent>,
    /// The message half of every thread's summary (`threads.rs`).
    threads: Mutex<threads::Cache>,
    /// Delivered marks known to be in the file (`delivery.rs`), so a feed
    /// that returns nothing new writes nothing.
    marks: Mutex<delivery::MarkCache>,
    /// Messages up to here hold no DM the dead-letter scan has not read.
    dead_seen: AtomicI64,
    /// The tasks-and-claims fingerprint the foreign-commit watcher last saw.
    work_print: AtomicI64,
    /// The parsed reservations, while their table is unchanged.
    held: reservations::HeldCache,
    /// How reservation paths compare (`reservations.rs`).
    path_rules: OnceLock<reservations::PathRules>,
}

/// A message to insert, already validated by the API layer.
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
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let journal_mode: String = conn.one("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA foreign_keys=OFF;")?;
        // One transaction for the schema and the seed rows: one fsync on
        // a new file instead of one per statement.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let seeded = conn
            .execute_batch(schema::SCHEMA)
            .and_then(|()| conn.execute_batch(delivery::SCHEMA))
            .and_then(|()| conn.execute_batch(reservations::SCHEMA))
            .and_then(|()| {
            conn.run(
                "INSERT OR IGNORE INTO channels(name, created_at, created_by, metadata_json) VALUES ('general', ?1, 'system', '{}'), ('direct', ?1, 'system', '{}')",
                [&time::now()],
            )
        });
        match seeded {
            Ok(_) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        }
        let max_id: i64 = conn.one("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| {
            r.get(0)
        })?;
        let data_version: i64 = conn.one("PRAGMA data_version", [], |r| r.get(0))?;
        Ok(Store {
            files: Files::of(path),
            conn: group::Group::new(conn),
            ttl_sec,
            journal_mode: journal_mode.to_lowercase(),
            hook: OnceLock::new(),
            watch_cursor: AtomicI64::new(max_id),
            data_version: AtomicI64::new(data_version),
            recent: Mutex::new(Recent::after_id(max_id)),
            threads: Mutex::new(threads::Cache::default()),
            marks: Mutex::new(delivery::MarkCache::default()),
            dead_seen: AtomicI64::new(0),
            path_rules: OnceLock::new(),
            held: reservations::HeldCache::default(),
            work_print: AtomicI64::new(-1),
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
            .one(
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

    /// The connection for a read: a batch of writes still open on it is
    /// committed (and published) first, so no read sees an uncommitted row.
    fn lock(&self) -> Held<'_> {
        for _ in 0..1000 {
            let mut g = self.conn.lock();
            match g.commit() {
                None => return Held(g),
                Some((batch, r)) => {
                    drop(g);
                    self.settle(batch, r.map_err(|e| e.to_string()));
                }
            }
        }
        // Writers keep reopening batches; read inside the open one rather
        // than starve (its rows are ours and about to commit).
        Held(self.conn.lock())
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

    /// Runs `f` as one member of a group commit (see `group.rs`): inside
    /// `BEGIN IMMEDIATE`, in a savepoint of its own, expiring due sessions
    /// first. Returns once the transaction holding it has committed. The
    /// database files are checked before a batch opens and after it
    /// commits: a write is only acknowledged once it is committed into the
    /// file the hub opened.
    fn write<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let mut g = self.conn.lock_to_write();
        // The files are checked when a batch opens and after it commits;
        // writers joining an open batch rely on those two checks.
        if g.batch.is_none() {
            self.check_files()?;
        }
        let outcome = g.join()?;
        let (result, out) = self.run_member(&mut g, f);
        if let (Ok(Ok(_)), Some(batch)) = (&result, g.batch.as_mut()) {
            batch.members += 1;
            batch.out.append(out);
        }
        let due = g.batch.as_ref().map(|b| self.conn.should_commit(b));
        if due == Some(true) {
            let (batch, r) = g.commit().expect("a batch is open");
            drop(g);
            let r = r.map_err(|e| e.to_string());
            self.settle(batch, r);
        } else {
            drop(g);
        }
        match result {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(Err(e)) => Err(e),
            Ok(Ok(value)) => group::wait_for(&outcome).map(|()| value),
        }
    }

    /// Runs one writer's statements in a savepoint, rolled back alone if
    /// they fail or panic.
    #[allow(clippy::type_complexity)]
    fn run_member<T>(
        &self,
        g: &mut group::Conn,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> (std::thread::Result<Result<T>>, Committed) {
        if let Err(e) = g.c.run("SAVEPOINT arc_member", []) {
            return (Ok(Err(e.into())), Committed::default());
        }
        let now_s = time::now_secs();
        let expired = g.batch.as_ref().and_then(|b| b.expired_at) == Some(now_s);
        let mut ctx = Tx {
            tx: &g.c,
            now_s,
            now: time::format(now_s),
            ttl_sec: self.ttl_sec,
            out: Committed::default(),
            held: &self.held,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if !expired {
                ctx.expire_due()?;
            }
            f(&mut ctx)
        }));
        let out = std::mem::take(&mut ctx.out);
        drop(ctx);
        match &result {
            Ok(Ok(_)) => {
                if let Err(e) = g.c.run("RELEASE arc_member", []) {
                    g.undo_member();
                    self.held.clear();
                    return (Ok(Err(e.into())), Committed::default());
                }
                if let Some(b) = g.batch.as_mut() {
                    b.expired_at = Some(now_s);
                }
            }
            // The member's expiry was rolled back with it.
            // The member's expiry was rolled back with it, and so were any
            // reservation rows it wrote: the parsed copy may be ahead.
            _ => {
                g.undo_member();
                self.held.clear();
            }
        }
        (result, out)
    }

    /// After a batch's `COMMIT`: checks the files, publishes what it
    /// produced, and tells its members how it went.
    fn settle(&self, batch: group::Batch, r: std::result::Result<(), String>) {
        let r = r.and_then(|()| self.check_files().map_err(|e| e.detail()));
        if r.is_ok() {
            self.publish(batch.out);
        } else {
            self.held.clear();
        }
        batch.outcome.update(|o| *o = Some(r));
    }

    /// Records committed messages in the in-memory tail, then calls the
    /// hook (which wakes waiters): a waiter woken for a message always finds
    /// it, in the tail or in the database.
    fn publish(&self, out: Committed) {
        if !out.messages.is_empty() {
            lock_recent(&self.recent).extend(&out.messages);
        }
        if !(out.posted.is_empty() && out.logs.is_empty() && !out.work) {
            if let Some(hook) = self.hook.get() {
                hook(&out);
            }
        }
    }

    /// Runs `f` in a deferred (snapshot) read transaction.
    fn read<T>(&self, f: impl FnOnce(&Connection, &str) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.0.c.transaction()?;
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
        conn.one("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod testutil {
    use super::*;

    pub fn temp_store(ttl: i64) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("arc-store-{}", crate::ids::uuid4_hex()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("arc.sqlite3"), ttl).unwrap();
        (store, dir)
    }

    pub fn post(store: &Store, channel: &str, kind: &str, body: &str) -> Message {
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
}
