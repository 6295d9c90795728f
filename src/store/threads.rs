//! Thread summaries and thread detail, by aggregate SQL
//! (docs/PROTOCOL.md, "Threads").

use super::Cached;
use rusqlite::{OptionalExtension, Row, params};

use super::Store;
use super::messages::select_messages;
use super::rows::{claim_row, int, lock_row, task_row, text};
use super::schema::{CLAIM_COLS, LOCK_COLS, TASK_COLS};
use crate::error::Result;
use crate::wire::{ThreadDetail, ThreadSummary};

impl Store {
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
            let mut st = c.prepare_cached(&sql)?;
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
