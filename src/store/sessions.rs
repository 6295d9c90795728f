//! Sessions, presence and channels (docs/PROTOCOL.md, "Endpoints").

use super::Cached;
use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value};

use super::Store;
use super::rows::{channel_row, session_row, text};
use super::schema::SESSION_COLS;
use super::tx::{Tx, channel_exists};
use crate::error::{Error, Result};
use crate::time;
use crate::wire::{Bootstrap, Channel, Session};

impl Store {
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
                .one(
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
                t.tx.run(
                    "UPDATE sessions SET active = 0 WHERE agent_id = ?1 AND active = 1",
                    [agent_id],
                )?;
            }
            let session_id = crate::ids::uuid4();
            t.tx.run(
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
            super::delivery::seen(t.tx, agent_id, &t.now)?;
            t.session_by_id(&session_id)
        })
    }

    /// `POST /v1/sessions/{agent}/rename`.
    pub fn rename_session(&self, agent_id: &str, display_name: &str) -> Result<Session> {
        self.write(|t| {
            let n = t.tx.run(
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
            let n = t.tx.run(
                "UPDATE sessions SET active = 0 WHERE session_id = ?1 AND active = 1",
                [session_id],
            )?;
            if n == 0 {
                return Err(Error::not_found("session not found"));
            }
            Ok(())
        })
    }

    /// Refreshes `last_seen` of the agent's active sessions (docs/PROTOCOL.md, "Presence, expiry and recovery").
    pub fn touch(&self, agent_id: &str) -> Result<()> {
        self.write(|t| t.touch(agent_id))
    }

    /// Expires every session past its TTL, recovering its work.
    pub fn expire_sessions(&self) -> Result<()> {
        self.write(|_| Ok(()))
    }

    /// Unix second at which the next active session becomes expirable,
    /// or the next reservation lapses, whichever is first.
    pub fn next_expiry(&self) -> Result<Option<i64>> {
        let conn = self.lock();
        let min: Option<String> = conn.one(
            "SELECT MIN(last_seen) FROM sessions WHERE active = 1",
            [],
            |r| text(r, 0),
        )?;
        // `last_seen < format(now - ttl)` first holds one second after
        // last_seen + ttl, because the comparison is on truncated strings.
        let session = min
            .and_then(|s| time::parse(&s))
            .map(|s| s + self.ttl_sec + 1);
        // A reservation is released in the second its expiry is reached.
        let reservation: Option<String> = conn.one(
            "SELECT MIN(expires_at) FROM arc_reservations WHERE released_at IS NULL",
            [],
            |r| text(r, 0),
        )?;
        let reservation = reservation.and_then(|s| time::parse(&s));
        Ok(match (session, reservation) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
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
            let latest_visible_id: i64 = t.tx.one(
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
            Ok(c.one(
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
            let mut st = c.prepare_cached(
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
            t.tx.run(
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
}

impl Tx<'_> {
    pub(super) fn session_by_id(&self, session_id: &str) -> Result<Session> {
        Ok(self.tx.one(
            &format!("SELECT {SESSION_COLS} FROM sessions WHERE session_id = ?1"),
            [session_id],
            session_row,
        )?)
    }

    pub(super) fn newest_session(&self, agent_id: &str) -> Result<Option<Session>> {
        Ok(self
            .tx
            .one(
                &format!("SELECT {SESSION_COLS} FROM sessions WHERE agent_id = ?1 AND active = 1 ORDER BY created_at DESC, rowid DESC LIMIT 1"),
                [agent_id],
                session_row,
            )
            .optional()?)
    }

    pub(super) fn live_sessions(&self) -> Result<Vec<Session>> {
        let mut st = self.tx.prepare_cached(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE active = 1 ORDER BY agent_id, created_at"
        ))?;
        let rows = st.query_map([], session_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub(super) fn channel(&self, name: &str) -> Result<Option<Channel>> {
        Ok(self
            .tx
            .one(
                "SELECT name, created_at, created_by, metadata_json FROM channels WHERE name = ?1",
                [name],
                channel_row,
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{FeedQuery, Store};

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
}
