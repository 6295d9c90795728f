//! Group commit on the one connection. A write transaction stays open
//! while writers queue for the connection: each writer that gets it runs
//! its statements in a savepoint of its own inside that transaction, and
//! the writer that finds nobody queued behind it (or a full or old batch)
//! commits for everyone in it. The others wait for that `COMMIT` before
//! they answer, so an acknowledgement still means "committed".
//!
//! A writer whose statements fail rolls back to its savepoint and returns
//! its own error at once; the rest of the batch is untouched. A reader
//! that gets the connection while a batch is open commits it first, so no
//! read ever sees a row before its `COMMIT`, and nothing waits on a reader.
//! Batches are bounded by [`MAX_MEMBERS`] and [`MAX_AGE`], so another
//! process sharing the file waits for our write lock no longer than it
//! did before (one transaction of a few writes).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::Committed;
use crate::error::{Error, Result};
use crate::notify::Watch;

/// Most writers one transaction holds.
pub(super) const MAX_MEMBERS: usize = 128;

/// Oldest a batch may grow before the next writer commits it.
pub(super) const MAX_AGE: Duration = Duration::from_millis(10);

/// Longest a writer waits for the commit of its batch. The writer that
/// holds the connection commits within a few writes' time, so this only
/// bounds a wait that would otherwise hang on a bug; past it the writer
/// reports failure, never a success it cannot vouch for.
const COMMIT_WAIT: Duration = Duration::from_secs(60);

/// How a batch's `COMMIT` ended: `None` until it has.
pub(super) type Outcome = Watch<Option<std::result::Result<(), String>>>;

/// The transaction writers are joining.
pub(super) struct Batch {
    pub(super) opened: Instant,
    pub(super) members: usize,
    /// The second whose expiry this transaction has already run (expiry
    /// compares whole seconds, so running it again within the same
    /// second finds nothing new).
    pub(super) expired_at: Option<i64>,
    /// What the members that succeeded produced, in the order they ran.
    pub(super) out: Committed,
    pub(super) outcome: Arc<Outcome>,
}

/// The connection and the batch open on it.
pub(super) struct Conn {
    pub(super) c: Connection,
    pub(super) batch: Option<Batch>,
    /// Transactions committed so far (for tests and figures).
    pub(super) commits: u64,
}

/// The connection, behind its one mutex, and how many writers wait for it.
pub(super) struct Group {
    conn: Mutex<Conn>,
    queued: AtomicUsize,
}

impl Group {
    pub(super) fn new(c: Connection) -> Group {
        Group {
            conn: Mutex::new(Conn {
                c,
                batch: None,
                commits: 0,
            }),
            queued: AtomicUsize::new(0),
        }
    }

    /// The connection, as it is (a batch may be open).
    pub(super) fn lock(&self) -> MutexGuard<'_, Conn> {
        // A panic while the lock was held was caught and its savepoint
        // rolled back (see `Store::write`), so the connection is sound.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection for a writer, counted as queued while it waits, so
    /// the writer ahead of it leaves the batch open for it.
    pub(super) fn lock_to_write(&self) -> MutexGuard<'_, Conn> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        let g = self.lock();
        self.queued.fetch_sub(1, Ordering::SeqCst);
        g
    }

    /// Writers waiting for the connection right now.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Whether the writer holding the connection should commit now.
    pub(super) fn should_commit(&self, batch: &Batch) -> bool {
        self.queued.load(Ordering::SeqCst) == 0
            || batch.members >= MAX_MEMBERS
            || batch.opened.elapsed() >= MAX_AGE
    }
}

impl Conn {
    /// Opens a batch unless one is open; returns its outcome.
    pub(super) fn join(&mut self) -> Result<Arc<Outcome>> {
        if self.batch.is_none() {
            self.c.execute_batch("BEGIN IMMEDIATE")?;
            self.batch = Some(Batch {
                opened: Instant::now(),
                members: 0,
                expired_at: None,
                out: Committed::default(),
                outcome: Arc::new(Watch::new(None)),
            });
        }
        Ok(self.batch.as_ref().map(|b| b.outcome.clone()).unwrap())
    }

    /// Commits the open batch (rolling it back if `COMMIT` fails) and
    /// returns it with how the commit went; the caller publishes it and
    /// settles its outcome after letting go of the connection.
    pub(super) fn commit(&mut self) -> Option<(Batch, std::result::Result<(), Error>)> {
        let batch = self.batch.take()?;
        self.commits += 1;
        let r = self.c.execute_batch("COMMIT").map_err(Error::from);
        if r.is_err() {
            let _ = self.c.execute_batch("ROLLBACK");
        }
        Some((batch, r))
    }

    /// Rolls back a member's savepoint. If even that fails, the whole
    /// batch is rolled back and fails.
    pub(super) fn undo_member(&mut self) {
        if self
            .c
            .execute_batch("ROLLBACK TO arc_member; RELEASE arc_member")
            .is_err()
        {
            let _ = self.c.execute_batch("ROLLBACK");
            if let Some(b) = self.batch.take() {
                b.outcome
                    .update(|o| *o = Some(Err("store: the transaction was rolled back".into())));
            }
        }
    }
}

/// Waits for the batch this writer was in to commit.
pub(super) fn wait_for(outcome: &Outcome) -> Result<()> {
    let deadline = Instant::now() + COMMIT_WAIT;
    let seen = outcome.wait_until(Some(deadline), Option::is_some).clone();
    match seen {
        Some(Ok(())) => Ok(()),
        Some(Err(m)) => Err(Error::unavailable(m)),
        None => Err(Error::unavailable(
            "store: the commit did not finish in time; the write may not be stored",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use serde_json::Map;

    use super::super::Store;
    use super::super::testutil::temp_store;
    use crate::error::Error;
    use crate::notify::poll_until;

    fn insert(t: &mut super::super::Tx<'_>, body: &str) -> crate::error::Result<i64> {
        let m = t.insert_message(
            "w",
            None,
            "general",
            "chat",
            body,
            &[],
            None,
            None,
            &Map::new(),
        )?;
        Ok(m.id)
    }

    fn bodies(store: &Store) -> Vec<String> {
        let conn = store.lock();
        let mut st = conn
            .prepare("SELECT body FROM messages ORDER BY id")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    #[test]
    fn a_failing_writer_rolls_back_alone_in_the_middle_of_a_batch() {
        let (store, _dir) = temp_store(120);
        let store = std::sync::Arc::new(store);
        let commits_before = store.conn.lock().commits;
        // Writer A holds the connection inside its savepoint until three
        // more writers queue behind it; they then join A's transaction.
        let (inside_tx, inside_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let a = {
            let store = store.clone();
            std::thread::spawn(move || {
                store.write(|t| {
                    let id = insert(t, "a")?;
                    inside_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    Ok(id)
                })
            })
        };
        inside_rx.recv().unwrap();
        let writer = |body: &'static str, fail: bool| {
            let store = store.clone();
            std::thread::spawn(move || {
                store.write(|t| {
                    let id = insert(t, body)?;
                    match fail {
                        true => Err(Error::conflict("a conflict found in SQL")),
                        false => Ok(id),
                    }
                })
            })
        };
        let others = [writer("b", false), writer("c", true), writer("d", false)];
        let queued = poll_until(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(1),
            || (store.conn.queued() == 3).then_some(()),
        );
        assert!(queued.is_some(), "the three writers queue behind A");
        go_tx.send(()).unwrap();
        let a = a.join().unwrap();
        let [b, c, d] = others.map(|t| t.join().unwrap());
        assert!(a.is_ok() && b.is_ok() && d.is_ok(), "{a:?} {b:?} {d:?}");
        assert!(matches!(c, Err(Error::Conflict(_))), "{c:?}");
        // One transaction held all four; only the failing writer's row is gone.
        assert_eq!(store.conn.lock().commits - commits_before, 1);
        let mut got = bodies(&store);
        got.sort();
        assert_eq!(got, ["a", "b", "d"]);
    }

    #[test]
    fn a_read_commits_an_open_batch_before_it_looks() {
        let (store, _dir) = temp_store(120);
        let store = std::sync::Arc::new(store);
        // A batch left open (as when a writer saw another queued behind it).
        let outcome = {
            let mut g = store.conn.lock();
            let outcome = g.join().unwrap();
            let mut ctx = super::super::Tx {
                tx: &g.c,
                now_s: crate::time::now_secs(),
                now: crate::time::now(),
                ttl_sec: 120,
                out: super::super::Committed::default(),
                held: &store.held,
            };
            insert(&mut ctx, "pending").unwrap();
            let out = std::mem::take(&mut ctx.out);
            drop(ctx);
            let batch = g.batch.as_mut().unwrap();
            batch.members += 1;
            batch.out.append(out);
            assert!(outcome.lock().is_none());
            outcome
        };
        // A reader never sees the row before COMMIT: it commits first, and
        // the writers waiting on the batch learn that it committed.
        assert_eq!(bodies(&store), ["pending"]);
        assert!(store.conn.lock().batch.is_none());
        assert_eq!(*outcome.lock(), Some(Ok(())));
    }
}
