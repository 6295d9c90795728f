//! Thread summaries and thread detail (docs/PROTOCOL.md, "Threads").
//!
//! The listing needs, per thread, aggregates over every message in it;
//! over 100k messages that is tens of milliseconds of SQL per request. So
//! the message half is kept in memory ([`Cache`]): folded from `messages`
//! by id, and caught up by id (one range query on the primary key) at the
//! start of every listing, so rows another process wrote are counted too.
//! Messages never change the fields folded here once committed, and ids
//! commit in order (one writer at a time holds the write lock), so a fold
//! up to id N is exact. The task, claim and lock halves are small tables
//! and are aggregated by SQL each time. Thread detail uses the full
//! aggregate SQL for its one thread.

use super::Cached;
use rusqlite::{OptionalExtension, Row, params};

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::Store;
use super::messages::select_messages;
use super::rows::{claim_row, int, lock_row, task_row, text};
use super::schema::{CLAIM_COLS, LOCK_COLS, TASK_COLS};
use crate::error::Result;
use crate::wire::{ThreadDetail, ThreadSummary};

impl Store {
    // ----- threads --------------------------------------------------------

    /// `GET /v1/threads`: one summary per thread, newest activity first.
    pub fn list_threads(&self) -> Result<Vec<ThreadSummary>> {
        self.read(|c, now| {
            let mut cache = lock_cache(&self.threads);
            cache.catch_up(c)?;
            let mut rows: HashMap<String, Work> = HashMap::new();
            for (id, agg) in &cache.by_thread {
                rows.entry(id.clone()).or_default().msgs = Some(agg.clone());
            }
            drop(cache);
            let mut st = c.prepare_cached(work_sql())?;
            let mut q = st.query(params![now])?;
            // Locks count towards threads that exist, never make one: their
            // rows are applied once every other source has been seen.
            let mut locks = Vec::new();
            while let Some(r) = q.next()? {
                let id: String = text(r, 0)?.unwrap_or_default();
                let active = r.get::<_, Option<i64>>(6)?.unwrap_or(0);
                match int(r, 7)? {
                    Some(2) => locks.push((id, active)),
                    Some(1) => rows.entry(id).or_default().claims += active,
                    _ => {
                        let w = rows.entry(id).or_default();
                        w.root = int(r, 1)?;
                        w.root_channel = text(r, 2)?;
                        w.first_task_channel = text(r, 3)?;
                        w.total = r.get::<_, Option<i64>>(4)?.unwrap_or(0);
                        w.open = r.get::<_, Option<i64>>(5)?.unwrap_or(0);
                    }
                }
            }
            for (id, active) in locks {
                if let Some(w) = rows.get_mut(&id) {
                    w.locks += active;
                }
            }
            let mut out: Vec<ThreadSummary> =
                rows.into_iter().map(|(id, w)| w.summary(id)).collect();
            out.sort_by(|a, b| {
                (b.latest_message_id.unwrap_or(-1), &b.thread_id)
                    .cmp(&(a.latest_message_id.unwrap_or(-1), &a.thread_id))
            });
            Ok(out)
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
            let mut st = c.prepare_cached(&format!(
                "SELECT {TASK_COLS} FROM tasks WHERE thread_id = ?1 ORDER BY task_id"
            ))?;
            let tasks = st
                .query_map([thread_id], task_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut st = c.prepare_cached(&format!(
                "SELECT {CLAIM_COLS} FROM claims WHERE thread_id = ?1 ORDER BY claimed_at, rowid"
            ))?;
            let claims = st
                .query_map([thread_id], claim_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut st = c.prepare_cached(&format!(
                "SELECT {LOCK_COLS} FROM locks WHERE {} = ?1 ORDER BY locked_at, rowid",
                LOCK_THREAD
            ))?;
            let locks = st
                .query_map([thread_id], lock_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // A page past the thread's last message still finds the thread.
            let has_messages = !messages.is_empty()
                || (since_id > 0
                    && c.one(
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
            let thread = c.one(&sql, params![now, thread_id], summary_row)?;
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

/// Per thread: the aggregates of its messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct MsgAgg {
    count: i64,
    first_channel: Option<String>,
    last_id: i64,
    last_ts: Option<String>,
    art: Option<i64>,
}

/// The message aggregates of every thread, folded up to message id `upto`.
#[derive(Debug, Default)]
pub(super) struct Cache {
    upto: i64,
    by_thread: HashMap<String, MsgAgg>,
}

pub(super) fn lock_cache(m: &Mutex<Cache>) -> MutexGuard<'_, Cache> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cache {
    /// Folds in every message committed since the last call. A database
    /// whose newest id went down (its messages were deleted) is folded
    /// again from the start.
    fn catch_up(&mut self, c: &rusqlite::Connection) -> Result<()> {
        let max: i64 = c.one("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| {
            r.get(0)
        })?;
        if max < self.upto {
            *self = Cache::default();
        }
        if max == self.upto {
            return Ok(());
        }
        let mut st = c.prepare_cached(
            "SELECT id, thread_id, kind, ts, channel FROM messages
             WHERE id > ?1 AND id <= ?2 AND thread_id IS NOT NULL ORDER BY id",
        )?;
        let mut q = st.query(params![self.upto, max])?;
        while let Some(r) = q.next()? {
            let Some(thread) = text(r, 1)? else { continue };
            let id: i64 = r.get(0)?;
            let a = self.by_thread.entry(thread).or_default();
            if a.count == 0 {
                a.first_channel = text(r, 4)?;
            }
            a.count += 1;
            a.last_id = id;
            a.last_ts = text(r, 3)?;
            if text(r, 2)?.as_deref() == Some("artifact") {
                a.art = Some(id);
            }
        }
        self.upto = max;
        Ok(())
    }
}

/// Per thread: everything its summary is made of.
#[derive(Debug, Default)]
struct Work {
    msgs: Option<MsgAgg>,
    root: Option<i64>,
    root_channel: Option<String>,
    first_task_channel: Option<String>,
    total: i64,
    open: i64,
    claims: i64,
    locks: i64,
}

impl Work {
    fn summary(self, thread_id: String) -> ThreadSummary {
        let m = self.msgs.unwrap_or_default();
        let status = if self.total > 0 && self.open == 0 {
            "completed"
        } else if self.claims + self.locks > 0 {
            "open"
        } else {
            "waiting"
        };
        ThreadSummary {
            thread_id,
            channel: self
                .root_channel
                .or(m.first_channel)
                .or(self.first_task_channel),
            root_task_id: self.root,
            latest_message_id: (m.count > 0).then_some(m.last_id),
            latest_message_ts: m.last_ts,
            latest_artifact_id: m.art,
            message_count: m.count,
            total_task_count: self.total,
            open_task_count: self.open,
            active_claim_count: self.claims,
            active_lock_count: self.locks,
            status: status.into(),
        }
    }
}

/// The task, claim and lock halves of every thread's summary: one row per
/// thread and table, tagged by the last column (0 tasks, 1 claims, 2 locks).
/// `?1` is the current time.
fn work_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "WITH k AS (SELECT thread_id, COUNT(*) AS total, SUM(status = 'open') AS open,
                               MIN(CASE WHEN parent_task_id IS NULL THEN task_id END) AS root,
                               MIN(task_id) AS first_task
                        FROM tasks WHERE thread_id IS NOT NULL GROUP BY thread_id)
             SELECT thread_id, root, (SELECT channel FROM tasks WHERE task_id = k.root),
                    (SELECT channel FROM tasks WHERE task_id = k.first_task), total, open, 0, 0
             FROM k
             UNION ALL
             SELECT thread_id, NULL, NULL, NULL, 0, 0,
                    SUM(released_at IS NULL AND expires_at >= ?1), 1
             FROM claims WHERE thread_id IS NOT NULL GROUP BY thread_id
             UNION ALL
             SELECT {LOCK_THREAD}, NULL, NULL, NULL, 0, 0,
                    SUM(released_at IS NULL AND expires_at >= ?1), 2
             FROM locks GROUP BY 1 HAVING {LOCK_THREAD} IS NOT NULL"
        )
    })
}

/// The string value of `metadata.thread_id` of a lock, or NULL when the
/// metadata is not valid JSON or the value is not a string (JSON equality
/// with a thread id, which is always a string).
pub(super) const LOCK_THREAD: &str = "(CASE WHEN json_valid(metadata_json) AND json_type(metadata_json, '$.thread_id') = 'text' THEN json_extract(metadata_json, '$.thread_id') END)";

/// The summary query (docs/PROTOCOL.md, "Threads") over the thread ids produced by `ids`
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

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::super::testutil::temp_store;
    use super::super::{NewMessage, Store};
    use super::*;

    /// The listing as one aggregate SQL query over the whole database
    /// (how it was computed before the cache): the oracle.
    fn by_sql(store: &Store) -> Vec<ThreadSummary> {
        store
            .read(|c, now| {
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
            .unwrap()
    }

    fn post(
        store: &Store,
        kind: &str,
        channel: &str,
        thread: Option<&str>,
        parent: Option<i64>,
    ) -> i64 {
        store
            .post_message(NewMessage {
                from_agent: "a".into(),
                channel: channel.into(),
                kind: kind.into(),
                body: "b".into(),
                thread_id: thread.map(str::to_string),
                parent_task_id: parent,
                to_agent: (channel == "direct").then(|| "b".to_string()),
                ..Default::default()
            })
            .unwrap()
            .id
    }

    #[test]
    fn the_cached_listing_equals_the_aggregate_sql_as_the_database_grows() {
        let (store, dir) = temp_store(120);
        store.create_channel("dev", None, &Map::new()).unwrap();
        let foreign = rusqlite::Connection::open(dir.join("arc.sqlite3")).unwrap();
        foreign
            .busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        assert_eq!(store.list_threads().unwrap(), by_sql(&store));
        for round in 0..4 {
            for i in 0..30 {
                let t = format!("t{}", (i * 7 + round) % 11);
                let kind = ["chat", "artifact", "notice", "chat"][i % 4];
                let channel = ["general", "dev", "direct"][i % 3];
                post(&store, kind, channel, Some(&t), None);
            }
            let root = post(&store, "task", "dev", Some(&format!("task{round}")), None);
            let child = post(
                &store,
                "task",
                "general",
                Some(&format!("task{round}")),
                Some(root),
            );
            if round % 2 == 0 {
                store.complete_task(child).unwrap();
            }
            let thread = format!("t{round}");
            store
                .acquire_claim(
                    "a",
                    &format!("k{round}"),
                    None,
                    Some(&thread),
                    60,
                    &Map::new(),
                )
                .unwrap();
            let meta = json!({"thread_id": format!("task{round}")});
            store
                .acquire_lock("a", &format!("f{round}"), 60, meta.as_object().unwrap())
                .unwrap();
            // A lock naming a thread nothing else names adds no thread.
            let meta = json!({"thread_id": "lock-only"});
            store
                .acquire_lock("a", &format!("g{round}"), 60, meta.as_object().unwrap())
                .unwrap();
            // A claim alone makes a thread.
            store
                .acquire_claim(
                    "a",
                    &format!("c{round}"),
                    None,
                    Some(&format!("claim-only{round}")),
                    60,
                    &Map::new(),
                )
                .unwrap();
            // Another process (a Python hub) writes rows we never posted.
            foreign
                .execute(
                    "INSERT INTO messages(ts, from_agent, channel, kind, body, thread_id) VALUES ('2026-01-01T00:00:00Z', 'py', 'general', 'artifact', 'x', ?1)",
                    [format!("t{}", round + 5)],
                )
                .unwrap();
            assert_eq!(
                store.list_threads().unwrap(),
                by_sql(&store),
                "round {round}"
            );
        }
        assert!(store.list_threads().unwrap().len() > 15);
    }
}
