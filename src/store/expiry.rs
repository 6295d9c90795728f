//! The one expiry routine (docs/PROTOCOL.md, "Presence, expiry and
//! recovery"): it runs at the start of every write transaction, expires
//! the sessions past their TTL, recovers the claims, locks and
//! reservations of agents left with no live session, and releases
//! reservations past their expiry, announcing each once.

use super::Cached;
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

use super::rows::{claim_row, lock_row, text};
use super::schema::{CLAIM_COLS, LOCK_COLS};
use super::tx::Tx;
use crate::error::Result;

impl Tx<'_> {
    /// The one expiry routine: deactivate sessions past their TTL and
    /// recover the work of agents left with no live session. Only rows this
    /// transaction actually changed are announced, so two hubs sharing the
    /// file never announce the same recovery twice.
    pub(super) fn expire_due(&mut self) -> Result<()> {
        let cutoff = self.cutoff();
        let mut st = self.tx.prepare_cached(
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
            let n = self.tx.run(
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
                .one(
                    "SELECT 1 FROM sessions WHERE agent_id = ?1 AND active = 1",
                    [&agent],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !still_live {
                self.recover(&agent)?;
                self.recover_reservations(&agent)?;
            }
        }
        self.expire_reservations()?;
        Ok(())
    }

    fn recover(&mut self, agent: &str) -> Result<()> {
        let mut st = self.tx.prepare_cached(&format!(
            "SELECT {CLAIM_COLS} FROM claims WHERE owner_agent_id = ?1 AND released_at IS NULL AND expires_at >= ?2 ORDER BY claimed_at, rowid"
        ))?;
        let claims = st
            .query_map(params![agent, self.now], claim_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(st);
        for claim in claims {
            let n = self.tx.run(
                "UPDATE claims SET released_at = ?1 WHERE claim_key = ?2 AND released_at IS NULL",
                params![self.now, claim.claim_key],
            )?;
            if n != 1 {
                continue;
            }
            self.out.work = true;
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
        let mut st = self.tx.prepare_cached(&format!(
            "SELECT {LOCK_COLS} FROM locks WHERE agent_id = ?1 AND released_at IS NULL AND expires_at >= ?2 ORDER BY locked_at, rowid"
        ))?;
        let locks = st
            .query_map(params![agent, self.now], lock_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(st);
        for lock in locks {
            let n = self.tx.run(
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

    /// The summary channel of a thread (docs/PROTOCOL.md, "Threads"), without building the rest.
    pub(super) fn thread_channel(&self, thread_id: &str) -> Result<Option<String>> {
        Ok(self
            .tx
            .one(
                "SELECT COALESCE(
                    (SELECT channel FROM tasks WHERE thread_id = ?1 AND parent_task_id IS NULL ORDER BY task_id LIMIT 1),
                    (SELECT channel FROM messages WHERE thread_id = ?1 ORDER BY id LIMIT 1),
                    (SELECT channel FROM tasks WHERE thread_id = ?1 ORDER BY task_id LIMIT 1))",
                [thread_id],
                |r| text(r, 0),
            )?)
    }
}
