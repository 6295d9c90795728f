//! The delivery record (docs/PROTOCOL.md, "Delivery and wake"): per-agent
//! high-water marks of what the hub returned (delivered), what a hook or a
//! push showed the model (surfaced) and what the agent said it read, in
//! extension tables; and dead letters, DMs to ids that never had a
//! session. Nothing here is one row per message per agent: a mark is one
//! row per agent and scope, and its last [`STEPS_KEPT`] advances are kept
//! to say when a message passed it.
//!
//! Rows a Python hub writes are tolerated: marks are only ids, compared
//! with `messages`; dead letters are caught up from `messages` by id
//! (`arc_progress`), so a DM the other hub accepted is found too.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::messages::select_visible_page;
use super::rows::{message_row, text};
use super::schema::MSG_COLS;
use super::{Cached, Store};
use crate::error::{Error, Result};
use crate::wire::Message;
use crate::wire::headers::DeadNote;

/// The extension tables (created when absent, in the schema transaction).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS arc_marks(
  agent_id TEXT NOT NULL,
  scope TEXT NOT NULL,
  up_to_id INTEGER NOT NULL,
  at TEXT NOT NULL,
  PRIMARY KEY(agent_id, scope));
CREATE TABLE IF NOT EXISTS arc_mark_steps(
  agent_id TEXT NOT NULL,
  scope TEXT NOT NULL,
  up_to_id INTEGER NOT NULL,
  at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_arc_mark_steps ON arc_mark_steps(agent_id, scope, up_to_id);
CREATE TABLE IF NOT EXISTS arc_agents_seen(
  agent_id TEXT PRIMARY KEY,
  first_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS arc_dead_letters(
  message_id INTEGER PRIMARY KEY,
  from_agent TEXT NOT NULL,
  to_agent TEXT NOT NULL,
  at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ix_arc_dead_from ON arc_dead_letters(from_agent, message_id);
CREATE TABLE IF NOT EXISTS arc_progress(
  name TEXT PRIMARY KEY,
  up_to_id INTEGER NOT NULL);
";

/// Advances of one mark kept, to date a message's passage.
const STEPS_KEPT: i64 = 64;

/// What a delivered mark covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything visible to the agent (`/v1/events`, `/v1/stream`).
    All,
    /// Its direct messages (`/v1/inbox/{agent}`).
    Dm,
    /// What is visible to it in one channel (`/v1/events?channel=`).
    Channel(String),
}

impl Scope {
    fn key(&self) -> String {
        match self {
            Scope::All => "delivered".into(),
            Scope::Dm => "delivered:dm".into(),
            Scope::Channel(c) => format!("delivered:#{c}"),
        }
    }
}

const SURFACED: &str = "surfaced";
const READ: &str = "read";
/// Dead letters of this sender already told to it.
const DEAD_TOLD: &str = "dead_told";

/// An agent's marks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Marks {
    pub delivered: i64,
    pub delivered_dm: i64,
    pub delivered_channels: Vec<(String, i64)>,
    pub surfaced: i64,
    pub read: i64,
}

impl Marks {
    /// True if the hub returned `m` to this agent.
    pub fn delivered(&self, m: &Message) -> bool {
        m.id <= self.delivered
            || (m.to_agent.is_some() && m.id <= self.delivered_dm)
            || self
                .delivered_channels
                .iter()
                .any(|(c, id)| *c == m.channel && m.id <= *id)
    }

    /// The state of `m` for this agent: read, surfaced, delivered or queued.
    pub fn state(&self, m: &Message) -> &'static str {
        if m.id <= self.read {
            "read"
        } else if m.id <= self.surfaced {
            "surfaced"
        } else if self.delivered(m) {
            "delivered"
        } else {
            "queued"
        }
    }

    /// Where surfacing starts: past what was surfaced or read.
    pub fn surface_floor(&self) -> i64 {
        self.surfaced.max(self.read)
    }
}

/// What is waiting to be shown to an agent.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    /// Oldest first, at most the limit asked for.
    pub messages: Vec<Message>,
    /// Pending messages past `messages`.
    pub more: usize,
    /// Dead letters the agent sent and was not told about yet.
    pub dead: Vec<DeadNote>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.more == 0 && self.dead.is_empty()
    }
}

/// A dead letter, for `GET /v1/deliveries/dead`.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub message: Message,
    pub suggestion: Option<String>,
}

/// One recipient's state for `GET /v1/messages/{id}/deliveries`.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub agent_id: String,
    pub state: &'static str,
    pub at: String,
    pub dead: bool,
}

fn marks_of(c: &Connection, agent: &str) -> Result<Marks> {
    let mut st = c.prepare_cached("SELECT scope, up_to_id FROM arc_marks WHERE agent_id = ?1")?;
    let rows = st.query_map([agent], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut m = Marks::default();
    for row in rows {
        let (scope, id) = row?;
        match scope.as_str() {
            "delivered" => m.delivered = id,
            "delivered:dm" => m.delivered_dm = id,
            SURFACED => m.surfaced = id,
            READ => m.read = id,
            s => {
                if let Some(ch) = s.strip_prefix("delivered:#") {
                    m.delivered_channels.push((ch.to_string(), id));
                }
            }
        }
    }
    Ok(m)
}

/// Moves a mark forward (never back); records the step. True if it moved.
fn advance(c: &Connection, agent: &str, scope: &str, up_to: i64, now: &str) -> Result<bool> {
    let moved = c.run(
        "INSERT INTO arc_marks(agent_id, scope, up_to_id, at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT(agent_id, scope) DO UPDATE SET up_to_id = excluded.up_to_id, at = excluded.at \
         WHERE excluded.up_to_id > arc_marks.up_to_id",
        params![agent, scope, up_to, now],
    )? > 0;
    if moved {
        c.run(
            "INSERT INTO arc_mark_steps(agent_id, scope, up_to_id, at) VALUES (?1, ?2, ?3, ?4)",
            params![agent, scope, up_to, now],
        )?;
        c.run(
            "DELETE FROM arc_mark_steps WHERE agent_id = ?1 AND scope = ?2 AND up_to_id < \
             (SELECT up_to_id FROM arc_mark_steps WHERE agent_id = ?1 AND scope = ?2 ORDER BY up_to_id DESC LIMIT 1 OFFSET ?3)",
            params![agent, scope, STEPS_KEPT - 1],
        )?;
    }
    Ok(moved)
}

/// When `scope`'s mark of `agent` first reached `id` (as far as the kept
/// steps tell), else when the mark last moved.
fn passed_at(c: &Connection, agent: &str, scopes: &[String], id: i64) -> Result<Option<String>> {
    let mut best: Option<String> = None;
    for scope in scopes {
        let at: Option<String> = c
            .one(
                "SELECT COALESCE((SELECT at FROM arc_mark_steps WHERE agent_id = ?1 AND scope = ?2 AND up_to_id >= ?3 ORDER BY up_to_id LIMIT 1), \
                 (SELECT at FROM arc_marks WHERE agent_id = ?1 AND scope = ?2 AND up_to_id >= ?3))",
                params![agent, scope, id],
                |r| text(r, 0),
            )
            .optional()?
            .flatten();
        if let Some(at) = at {
            if best.as_ref().is_none_or(|b| at < *b) {
                best = Some(at);
            }
        }
    }
    Ok(best)
}

/// True if `agent` ever had a session (ours or a Python hub's).
fn known(c: &Connection, agent: &str) -> Result<bool> {
    Ok(c
        .one(
            "SELECT EXISTS(SELECT 1 FROM arc_agents_seen WHERE agent_id = ?1) OR EXISTS(SELECT 1 FROM sessions WHERE agent_id = ?1)",
            [agent],
            |r| r.get::<_, bool>(0),
        )?)
}

/// Records DMs to unknown ids, from the last id looked at onward.
fn catch_up_dead(c: &Connection, now: &str) -> Result<()> {
    c.run(
        "INSERT OR IGNORE INTO arc_agents_seen(agent_id, first_at) SELECT agent_id, MIN(created_at) FROM sessions GROUP BY agent_id",
        [],
    )?;
    let from = progress(c)?;
    let mut st = c.prepare_cached(
        "SELECT id, from_agent, to_agent FROM messages WHERE id > ?1 AND to_agent IS NOT NULL ORDER BY id",
    )?;
    let dms = st
        .query_map([from], |r| {
            Ok((r.get::<_, i64>(0)?, text(r, 1)?, text(r, 2)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (id, from_agent, to) in dms {
        let (Some(from_agent), Some(to)) = (from_agent, to) else {
            continue;
        };
        if !known(c, &to)? {
            c.run(
                "INSERT OR IGNORE INTO arc_dead_letters(message_id, from_agent, to_agent, at) VALUES (?1, ?2, ?3, ?4)",
                params![id, from_agent, to, now],
            )?;
        }
    }
    let last: i64 = c.one("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| {
        r.get(0)
    })?;
    c.run(
        "INSERT INTO arc_progress(name, up_to_id) VALUES ('dead_letters', ?1) \
         ON CONFLICT(name) DO UPDATE SET up_to_id = MAX(up_to_id, excluded.up_to_id)",
        [last],
    )?;
    Ok(())
}

/// The highest message id the dead-letter scan has read.
fn progress(c: &Connection) -> Result<i64> {
    Ok(c.one(
        "SELECT up_to_id FROM arc_progress WHERE name = 'dead_letters'",
        [],
        |r| r.get(0),
    )
    .optional()?
    .unwrap_or(0))
}

/// Every agent id the hub has known.
fn known_ids(c: &Connection) -> Result<Vec<String>> {
    let mut st = c.prepare_cached(
        "SELECT agent_id FROM arc_agents_seen UNION SELECT agent_id FROM sessions",
    )?;
    let ids = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(ids)
}

/// The known id closest to `to` by edit distance, if it is close.
pub fn closest(to: &str, known: &[String]) -> Option<String> {
    let limit = (to.chars().count() / 3).max(2);
    known
        .iter()
        .filter(|k| k.as_str() != to)
        .map(|k| (edit_distance(to, k), k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k.clone())
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Dead letters from `sender` past `after`, whose recipient still never
/// had a session.
fn dead_of(c: &Connection, sender: &str, after: i64) -> Result<Vec<DeadNote>> {
    let mut st = c.prepare_cached(
        "SELECT d.message_id, d.to_agent FROM arc_dead_letters d WHERE d.from_agent = ?1 AND d.message_id > ?2 \
         AND NOT EXISTS(SELECT 1 FROM arc_agents_seen s WHERE s.agent_id = d.to_agent) \
         AND NOT EXISTS(SELECT 1 FROM sessions s WHERE s.agent_id = d.to_agent) ORDER BY d.message_id LIMIT 50",
    )?;
    let rows = st
        .query_map(params![sender, after], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = known_ids(c)?;
    Ok(rows
        .into_iter()
        .map(|(message_id, to_agent)| DeadNote {
            message_id,
            suggestion: closest(&to_agent, &ids),
            to_agent,
        })
        .collect())
}

/// What is pending for surfacing to `agent`, read on `c`.
fn pending_on(c: &Connection, agent: &str, limit: usize) -> Result<(Marks, Pending)> {
    let marks = marks_of(c, agent)?;
    let floor = marks.surface_floor();
    let messages = select_visible_page(c, agent, true, floor, limit)?;
    let more = match messages.last() {
        Some(last) if messages.len() == limit => count_visible(c, agent, last.id)?,
        _ => 0,
    };
    let told = mark_of(c, agent, DEAD_TOLD)?;
    let dead = dead_of(c, agent, told)?;
    Ok((
        marks,
        Pending {
            messages,
            more,
            dead,
        },
    ))
}

fn mark_of(c: &Connection, agent: &str, scope: &str) -> Result<i64> {
    Ok(c.one(
        "SELECT up_to_id FROM arc_marks WHERE agent_id = ?1 AND scope = ?2",
        params![agent, scope],
        |r| r.get(0),
    )
    .optional()?
    .unwrap_or(0))
}

/// Messages visible to `agent` (not its own) past `after`, counted.
fn count_visible(c: &Connection, agent: &str, after: i64) -> Result<usize> {
    let n: i64 = c.one(
        "SELECT (SELECT COUNT(*) FROM messages WHERE to_agent IS NULL AND from_agent != ?1 AND id > ?2) \
         + (SELECT COUNT(*) FROM messages WHERE to_agent = ?1 AND from_agent != ?1 AND id > ?2)",
        params![agent, after],
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Messages visible to `agent` (not its own) past `after`, oldest first,
/// with only what deciding their state needs (id, channel, recipient).
fn visible_ids(c: &Connection, agent: &str, after: i64, limit: usize) -> Result<Vec<Message>> {
    let mut st = c.prepare_cached(
        "SELECT id, channel, to_agent FROM messages WHERE id > ?1 AND (to_agent IS NULL OR to_agent = ?2) \
         AND from_agent != ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = st
        .query_map(params![after, agent, limit as i64], |r| {
            Ok(Message {
                id: r.get(0)?,
                channel: text(r, 1)?.unwrap_or_default(),
                to_agent: text(r, 2)?,
                ..Message::default()
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

impl Store {
    /// Records that the hub returned messages up to `up_to` to `agent`
    /// through a feed covering `scope`. Cheap when the mark is already
    /// there (no write).
    pub fn mark_delivered(&self, agent: &str, scope: Scope, up_to: i64) -> Result<()> {
        self.mark_delivered_many(vec![(agent.to_string(), scope, up_to)])
    }

    /// [`Store::mark_delivered`] for many marks, in one write; marks the
    /// file is known to hold already are left out.
    pub fn mark_delivered_many(&self, marks: Vec<(String, Scope, i64)>) -> Result<()> {
        let todo: Vec<(String, String, i64)> = {
            let cache = crate::notify::lock(&self.marks);
            marks
                .into_iter()
                .map(|(agent, scope, id)| (agent, scope.key(), id))
                .filter(|(a, k, id)| {
                    cache
                        .get(&(a.clone(), k.clone()))
                        .is_none_or(|have| have < id)
                })
                .collect()
        };
        if todo.is_empty() {
            return Ok(());
        }
        self.write(|t| {
            for (agent, key, id) in &todo {
                advance(t.tx, agent, key, *id, &t.now)?;
            }
            Ok(())
        })?;
        let mut cache = crate::notify::lock(&self.marks);
        if cache.len() > 100_000 {
            cache.clear();
        }
        for (agent, key, id) in todo {
            let have = cache.entry((agent, key)).or_insert(id);
            *have = (*have).max(id);
        }
        Ok(())
    }

    /// `POST /v1/agents/{agent}/read`: the agent read everything up to
    /// `up_to`. Returns the read mark.
    pub fn mark_read(&self, agent: &str, up_to: i64) -> Result<i64> {
        self.mark_simple(agent, READ, up_to)
    }

    /// A batch was shown to the model (`arc watch` after its command
    /// succeeded). Returns the surfaced mark.
    pub fn mark_surfaced(&self, agent: &str, up_to: i64) -> Result<i64> {
        self.mark_simple(agent, SURFACED, up_to)
    }

    fn mark_simple(&self, agent: &str, scope: &str, up_to: i64) -> Result<i64> {
        self.write(|t| {
            let newest: i64 =
                t.tx.one("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| {
                    r.get(0)
                })?;
            if up_to > newest {
                return Err(Error::invalid(format!(
                    "up_to_id {up_to} is past the newest message ({newest})"
                )));
            }
            advance(t.tx, agent, scope, up_to, &t.now)?;
            // Shown or read means the hub handed it over.
            advance(t.tx, agent, &Scope::All.key(), up_to, &t.now)?;
            mark_of(t.tx, agent, scope)
        })
    }

    /// An agent's marks.
    pub fn marks(&self, agent: &str) -> Result<Marks> {
        self.read_one(|c, _| marks_of(c, agent))
    }

    /// What is waiting to be surfaced to `agent` (nothing is changed).
    pub fn surface_peek(&self, agent: &str, limit: usize) -> Result<Pending> {
        self.read(|c, _| pending_on(c, agent, limit).map(|(_, p)| p))
    }

    /// Surfaces to `agent` what `pick` chooses (a count of the pending
    /// messages, oldest first), atomically: two processes never surface
    /// the same message. The surfaced mark moves to the last message
    /// picked, the delivered mark with it, and the dead letters in the
    /// batch count as told.
    pub fn surface_take(
        &self,
        agent: &str,
        limit: usize,
        pick: impl FnOnce(&Pending) -> usize,
    ) -> Result<(Pending, usize)> {
        // The common case, nothing pending, takes no write; unless DMs
        // another hub wrote wait to be checked for dead letters.
        if self.surface_peek(agent, limit)?.is_empty() && !self.dead_scan_due()? {
            return Ok((Pending::default(), 0));
        }
        self.write(|t| {
            catch_up_dead(t.tx, &t.now)?;
            let (_, pending) = pending_on(t.tx, agent, limit)?;
            let shown = pick(&pending).min(pending.messages.len());
            if let Some(last) = pending.messages[..shown].last() {
                advance(t.tx, agent, SURFACED, last.id, &t.now)?;
                advance(t.tx, agent, &Scope::All.key(), last.id, &t.now)?;
            }
            if let Some(d) = pending.dead.iter().map(|d| d.message_id).max() {
                advance(t.tx, agent, DEAD_TOLD, d, &t.now)?;
            }
            Ok((pending, shown))
        })
    }

    /// True if DMs past the dead-letter scan exist (a read). Broadcasts
    /// past it are skipped once: the in-memory cursor remembers them.
    fn dead_scan_due(&self) -> Result<bool> {
        let seen = self.dead_seen.load(std::sync::atomic::Ordering::SeqCst);
        let (due, newest) = self.read_one(|c, _| {
            let from = progress(c)?.max(seen);
            let due = c.one(
                "SELECT EXISTS(SELECT 1 FROM messages WHERE id > ?1 AND to_agent IS NOT NULL)",
                [from],
                |r| r.get::<_, bool>(0),
            )?;
            let newest: i64 = c.one("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| {
                r.get(0)
            })?;
            Ok((due, newest))
        })?;
        if !due {
            self.dead_seen
                .fetch_max(newest, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(due)
    }

    /// `GET /v1/agents/{agent}/pending`: the marks, and the ids not yet
    /// delivered, surfaced and read (each at most `limit`, oldest first),
    /// with their full counts.
    pub fn pending_lists(&self, agent: &str, limit: usize) -> Result<PendingLists> {
        self.read(|c, _| {
            let marks = marks_of(c, agent)?;
            let lowest = marks
                .read
                .min(marks.surfaced)
                .min(marks.delivered.max(marks.delivered_dm));
            let mut lists = PendingLists {
                marks: marks.clone(),
                ..PendingLists::default()
            };
            // Walk the visible messages past the lowest mark in pages.
            let mut after = lowest;
            let mut seen = 0usize;
            loop {
                let page = visible_ids(c, agent, after, 500)?;
                let Some(last) = page.last() else { break };
                after = last.id;
                for m in &page {
                    for (list, count, done) in [
                        (
                            &mut lists.undelivered,
                            &mut lists.counts.0,
                            marks.delivered(m),
                        ),
                        (
                            &mut lists.unsurfaced,
                            &mut lists.counts.1,
                            m.id <= marks.surface_floor(),
                        ),
                        (&mut lists.unread, &mut lists.counts.2, m.id <= marks.read),
                    ] {
                        if !done {
                            *count += 1;
                            if list.len() < limit {
                                list.push(m.id);
                            }
                        }
                    }
                }
                seen += page.len();
                if seen >= PENDING_SCAN_MAX {
                    lists.truncated = true;
                    break;
                }
            }
            Ok(lists)
        })
    }

    /// `GET /v1/messages/{id}/deliveries`: a DM's recipient, or every
    /// agent with a live session for a broadcast (not the sender).
    pub fn deliveries(&self, id: i64) -> Result<Vec<Delivery>> {
        self.read(|c, now| {
            let m = c
                .one(
                    &format!("SELECT {MSG_COLS} FROM messages WHERE id = ?1"),
                    [id],
                    message_row,
                )
                .optional()?
                .ok_or_else(|| Error::not_found("message not found"))?;
            let recipients: Vec<String> = match &m.to_agent {
                Some(to) => vec![to.clone()],
                None => {
                    let cutoff = crate::time::format(crate::time::parse(now).unwrap_or(0) - self.ttl_sec);
                    let mut st = c.prepare_cached(
                        "SELECT DISTINCT agent_id FROM sessions WHERE active = 1 AND last_seen >= ?1 AND agent_id != ?2 ORDER BY agent_id",
                    )?;
                    st.query_map(params![cutoff, m.from_agent], |r| r.get::<_, String>(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()?
                }
            };
            let mut out = Vec::new();
            for agent in recipients {
                let marks = marks_of(c, &agent)?;
                let state = marks.state(&m);
                let scopes: Vec<String> = match state {
                    "read" => vec![READ.into()],
                    "surfaced" => vec![SURFACED.into()],
                    "delivered" => vec![
                        Scope::All.key(),
                        Scope::Dm.key(),
                        Scope::Channel(m.channel.clone()).key(),
                    ],
                    _ => Vec::new(),
                };
                let at = passed_at(c, &agent, &scopes, m.id)?.unwrap_or_else(|| m.ts.clone());
                let dead = m.to_agent.is_some() && !known(c, &agent)?;
                out.push(Delivery {
                    agent_id: agent,
                    state,
                    at,
                    dead,
                });
            }
            Ok(out)
        })
    }

    /// `GET /v1/deliveries/dead`: DMs whose recipient never had a session,
    /// newest first, caught up from `messages` first.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.write(|t| {
            catch_up_dead(t.tx, &t.now)?;
            let mut st = t.tx.prepare_cached(&format!(
                "SELECT {MSG_COLS} FROM messages WHERE id IN (SELECT d.message_id FROM arc_dead_letters d \
                 WHERE NOT EXISTS(SELECT 1 FROM arc_agents_seen s WHERE s.agent_id = d.to_agent) \
                 AND NOT EXISTS(SELECT 1 FROM sessions s WHERE s.agent_id = d.to_agent)) ORDER BY id DESC LIMIT ?1"
            ))?;
            let rows = st
                .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], message_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let ids = known_ids(t.tx)?;
            Ok(rows
                .into_iter()
                .map(|m| DeadLetter {
                    suggestion: m.to_agent.as_deref().and_then(|to| closest(to, &ids)),
                    message: m,
                })
                .collect())
        })
    }
}

/// Messages [`Store::pending_lists`] walks at most.
const PENDING_SCAN_MAX: usize = 20_000;

/// The answer of `GET /v1/agents/{agent}/pending`.
#[derive(Debug, Clone, Default)]
pub struct PendingLists {
    pub marks: Marks,
    pub undelivered: Vec<i64>,
    pub unsurfaced: Vec<i64>,
    pub unread: Vec<i64>,
    /// Full counts: undelivered, unsurfaced, unread.
    pub counts: (usize, usize, usize),
    /// The walk stopped at [`PENDING_SCAN_MAX`] messages.
    pub truncated: bool,
}

/// In the session's own write: remember the id for good (sessions may be
/// pruned; the dead-letter check must still know it).
pub(super) fn seen(c: &Connection, agent: &str, now: &str) -> Result<()> {
    c.run(
        "INSERT OR IGNORE INTO arc_agents_seen(agent_id, first_at) VALUES (?1, ?2)",
        params![agent, now],
    )?;
    Ok(())
}

/// In a post's own write: a DM to an id that never had a session is a
/// dead letter from the moment it is posted.
pub(super) fn check_dm(c: &Connection, m: &Message, now: &str) -> Result<()> {
    if let Some(to) = &m.to_agent {
        if !known(c, to)? {
            c.run(
                "INSERT OR IGNORE INTO arc_dead_letters(message_id, from_agent, to_agent, at) VALUES (?1, ?2, ?3, ?4)",
                params![m.id, m.from_agent, to, now],
            )?;
        }
    }
    Ok(())
}

/// The marks cache type held by the store.
pub(super) type MarkCache = HashMap<(String, String), i64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closest_known_id_is_suggested_only_when_close() {
        let known: Vec<String> = ["bob", "alice", "carol"].map(String::from).to_vec();
        assert_eq!(closest("bbo", &known).as_deref(), Some("bob"));
        assert_eq!(closest("alcie", &known).as_deref(), Some("alice"));
        assert_eq!(closest("zzzzzzzz", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
