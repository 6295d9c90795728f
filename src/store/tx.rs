//! One write transaction in progress, and the steps every write shares:
//! the clock, touching presence, inserting a message, posting a notice.

use super::Cached;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::Committed;
use super::rows::task_row;
use super::schema::{MAX_MESSAGE_ID, TASK_COLS};
use crate::error::{Error, Result};
use crate::notify::Posted;
use crate::time;
use crate::wire::{Message, Task};

/// One write transaction in progress.
pub(super) struct Tx<'a> {
    pub(super) tx: &'a Connection,
    pub(super) now_s: i64,
    pub(super) now: String,
    pub(super) ttl_sec: i64,
    pub(super) out: Committed,
    /// The parsed reservations (`reservations.rs`).
    pub(super) held: &'a super::reservations::HeldCache,
}

impl Tx<'_> {
    /// Sessions whose `last_seen` is before this are expired.
    pub(super) fn cutoff(&self) -> String {
        time::format(self.now_s - self.ttl_sec)
    }

    pub(super) fn touch(&mut self, agent_id: &str) -> Result<()> {
        // Rows already stamped with this second are left alone, so a touch
        // that changes nothing commits an empty transaction (no fsync).
        self.tx.run(
            "UPDATE sessions SET last_seen = ?1 WHERE agent_id = ?2 AND active = 1 AND last_seen != ?1",
            params![self.now, agent_id],
        )?;
        Ok(())
    }

    /// Posts a system notice; a channel that does not exist falls back to
    /// `general` so the notice can always be read through `/v1/messages`.
    pub(super) fn notice(
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
    pub(super) fn insert_message(
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
        self.tx.run(
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
        // Past the cap the insert is refused; the writer's savepoint rolls
        // it back, so nothing past the cap is ever stored.
        if id > MAX_MESSAGE_ID {
            return Err(Error::internal("message id space exhausted (2^53 - 1)"));
        }
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
    pub(super) fn task(&self, id: i64) -> Result<Option<Task>> {
        Ok(self
            .tx
            .one(
                &format!("SELECT {TASK_COLS} FROM tasks WHERE task_id = ?1"),
                [id],
                task_row,
            )
            .optional()?)
    }
}

pub(super) fn channel_exists(c: &Connection, name: &str) -> Result<bool> {
    Ok(
        c.one("SELECT 1 FROM channels WHERE name = ?1", [name], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}
