//! Posting messages, reading feeds and events, and the foreign-commit
//! watcher (docs/PROTOCOL.md, "Messages", "Pages", "Long-poll").

use super::Cached;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

use super::rows::{message_row, row_size};
use super::schema::MSG_COLS;
use super::tail::{PAGE_MAX_BYTES, Page, lock_recent};
use super::tx::channel_exists;
use super::{Committed, Store};
use crate::error::{Error, Result};
use crate::notify::Posted;
use crate::wire::Message;

/// Whether a read first catches up with commits made by other processes
/// sharing the file (one `PRAGMA data_version`, and the rows when it
/// moved), or may answer from the in-memory tail as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Catch up first: what another hub committed is seen.
    CatchUp,
    /// The tail may lag another process's commits by one watcher
    /// interval: only for waiters the watcher wakes again for such rows.
    TailMayLag,
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

impl Store {
    // ----- messages -------------------------------------------------------

    pub fn task_exists(&self, task_id: i64) -> Result<bool> {
        self.read_one(|c, _| {
            Ok(
                c.one("SELECT 1 FROM tasks WHERE task_id = ?1", [task_id], |_| {
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
            if m.kind == "task" || m.kind == "task_request" || completes.is_some() {
                t.out.work = true;
            }
            if m.kind == "task" || m.kind == "task_request" {
                t.tx.run(
                    "INSERT OR IGNORE INTO tasks(task_id, parent_task_id, channel, thread_id, status, created_at, completed_at) VALUES (?1, ?2, ?3, ?4, 'open', ?5, NULL)",
                    params![msg.id, m.parent_task_id, msg.channel, msg.thread_id, t.now],
                )?;
            }
            if let Some(request_id) = completes {
                t.tx.run(
                    "UPDATE tasks SET status = 'done', completed_at = ?1 WHERE task_id = ?2 AND status = 'open'",
                    params![t.now, request_id],
                )?;
                t.rollup(request_id)?;
                t.release_tied(None, true)?;
            }
            super::delivery::check_dm(t.tx, &msg, &t.now)?;
            t.touch(&m.from_agent)?;
            Ok(msg)
        })
    }

    /// `GET /v1/messages` (broadcast rows only) and `GET /v1/inbox/{agent}`
    /// (when `inbox_of` is set: direct messages to that agent).
    pub fn feed(&self, q: &FeedQuery, inbox_of: Option<&str>) -> Result<Vec<Message>> {
        self.feed_with(q, inbox_of, Freshness::CatchUp)
    }

    /// [`Store::feed`], with a [`Freshness`].
    pub fn feed_with(
        &self,
        q: &FeedQuery,
        inbox_of: Option<&str>,
        fresh: Freshness,
    ) -> Result<Vec<Message>> {
        if !(q.tail && q.since_id == 0) {
            if fresh == Freshness::CatchUp {
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
        self.events_with(q, Freshness::CatchUp)
    }

    /// [`Store::events`], with a [`Freshness`].
    pub fn events_with(&self, q: &EventQuery, fresh: Freshness) -> Result<Vec<Message>> {
        Ok(self.events_page(q, fresh)?.rows)
    }

    /// [`Store::events_with`], saying when `strict_bytes` cut the page
    /// before a message too large for it.
    pub fn events_page(&self, q: &EventQuery, fresh: Freshness) -> Result<EventsPage> {
        if fresh == Freshness::CatchUp {
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
        let version: i64 = conn.one("PRAGMA data_version", [], |r| r.get(0))?;
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
        let mut st = conn.prepare_cached(&format!(
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
            // Another hub's tasks and results may make a task ready.
            let work = rows
                .iter()
                .any(|m| matches!(m.kind.as_str(), "task" | "task_request" | "task_result"));
            self.publish(Committed {
                posted: rows.iter().map(Posted::of).collect(),
                logs: Vec::new(),
                work,
                messages: Vec::new(),
            });
            if !full {
                break;
            }
        }
        // A completion or a released claim writes no message row: a
        // fingerprint of tasks and claims tells when another hub changed
        // them, so parked `tasks/next` callers try again.
        let work: (i64, i64, i64) = conn.one(
            "SELECT (SELECT COUNT(*) FROM tasks WHERE status = 'done'), \
             (SELECT COUNT(*) FROM claims WHERE released_at IS NOT NULL), (SELECT COUNT(*) FROM claims)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let print = work.0 ^ (work.1 << 21) ^ (work.2 << 42);
        if self.work_print.swap(print, Ordering::SeqCst) != print {
            self.publish(Committed {
                work: true,
                ..Committed::default()
            });
        }
        Ok(true)
    }
}

pub(super) fn select_messages(
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
    let mut st = c.prepare_cached(sql)?;
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
/// Messages visible to `agent` past `after` (without its own when
/// `exclude_self`), oldest first, at most `limit` and one page of bytes.
pub(super) fn select_visible_page(
    c: &Connection,
    agent: &str,
    exclude_self: bool,
    after: i64,
    limit: usize,
) -> Result<Vec<Message>> {
    let (clauses, args) = if exclude_self {
        (
            vec!["from_agent != ?".to_string()],
            vec![rusqlite::types::Value::from(agent.to_string())],
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let page = Page::new(i64::try_from(limit).unwrap_or(i64::MAX), PAGE_MAX_BYTES);
    Ok(select_visible(c, agent, &clauses, args, after, page)?.rows)
}

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

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Committed, MAX_MESSAGE_ID};
    use super::*;
    use std::sync::Mutex;

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
}
