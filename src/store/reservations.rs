//! Reservations: leases on path patterns (docs/PROTOCOL.md,
//! "Reservations"), in the extension table `arc_reservations`. One truth
//! about who holds a file: a pattern conflicts with another agent's
//! overlapping reservation (unless both are shared) and with another
//! agent's active reference lock on a path it covers; a reference lock on
//! a path another agent's exclusive reservation covers is refused.
//!
//! Reservations lapse through the one expiry routine (`expiry.rs`): an
//! expired one, or one whose holder's session expired, is released with a
//! notice in its channel and a DM to its holder, exactly once (the update
//! that releases it is the one that announces it).

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::rows::text;
use super::tx::Tx;
use super::{Cached, Store};
use crate::error::{Error, Result};
use crate::glob::{Fold, Pattern};
use crate::time;
use crate::wire::Lock;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS arc_reservations(
  reservation_id TEXT PRIMARY KEY,
  agent_id TEXT NOT NULL,
  paths_json TEXT NOT NULL,
  mode TEXT NOT NULL,
  reason TEXT,
  task_id INTEGER,
  claim_key TEXT,
  channel TEXT,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  released_at TEXT,
  release_reason TEXT);
CREATE INDEX IF NOT EXISTS ix_arc_res_open ON arc_reservations(released_at, expires_at);
CREATE INDEX IF NOT EXISTS ix_arc_res_agent ON arc_reservations(agent_id, released_at);
";

const COLS: &str = "reservation_id, agent_id, paths_json, mode, reason, task_id, claim_key, channel, created_at, expires_at, released_at, release_reason";

/// How reservation paths are compared: the case rule and the project
/// root that absolute paths are made relative to.
#[derive(Debug, Clone, Default)]
pub struct PathRules {
    pub fold: Fold,
    pub root: Option<String>,
}

impl PathRules {
    /// A pattern or path in its canonical form (400 on a bad one).
    pub fn normalize(&self, raw: &str) -> Result<String> {
        crate::glob::normalize(raw, self.root.as_deref(), self.fold)
            .map_err(|why| Error::invalid(format!("invalid path pattern {raw:?}: {why}")))
    }

    /// A normalised pattern, parsed.
    pub fn pattern(&self, raw: &str) -> Result<Pattern> {
        let n = self.normalize(raw)?;
        Pattern::parse(&n)
            .map_err(|why| Error::invalid(format!("invalid path pattern {raw:?}: {why}")))
    }
}

/// One reservation row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Reservation {
    pub reservation_id: String,
    pub agent_id: String,
    pub paths: Vec<String>,
    pub mode: String,
    pub reason: Option<String>,
    pub task_id: Option<i64>,
    pub claim_key: Option<String>,
    pub channel: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub released_at: Option<String>,
    pub release_reason: Option<String>,
    pub active: bool,
}

impl Reservation {
    pub fn exclusive(&self) -> bool {
        self.mode != "shared"
    }
}

/// Why a path or pattern may not be taken.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Conflict {
    /// Null for a reference lock.
    pub reservation_id: Option<String>,
    pub agent_id: String,
    /// The holder's pattern (or the locked path).
    pub pattern: String,
    /// `exclusive`, `shared`, or `lock`.
    pub mode: String,
    /// What was asked for: the requested pattern or the checked path.
    pub requested: String,
    pub expires_at: String,
    pub reason: Option<String>,
}

/// A reservation request, validated by the API.
#[derive(Debug, Clone)]
pub struct NewReservation {
    pub agent_id: String,
    /// Normalised patterns, deduplicated, in the order given.
    pub paths: Vec<String>,
    pub exclusive: bool,
    pub ttl_sec: i64,
    pub reason: Option<String>,
    pub task_id: Option<i64>,
    pub claim_key: Option<String>,
}

fn row(r: &rusqlite::Row<'_>, now: &str) -> rusqlite::Result<Reservation> {
    let paths: Vec<String> =
        serde_json::from_str(&text(r, 2)?.unwrap_or_default()).unwrap_or_default();
    let expires_at = text(r, 9)?.unwrap_or_default();
    let released_at = text(r, 10)?;
    Ok(Reservation {
        reservation_id: text(r, 0)?.unwrap_or_default(),
        agent_id: text(r, 1)?.unwrap_or_default(),
        paths,
        mode: text(r, 3)?.unwrap_or_default(),
        reason: text(r, 4)?,
        task_id: r.get(5)?,
        claim_key: text(r, 6)?,
        channel: text(r, 7)?,
        created_at: text(r, 8)?.unwrap_or_default(),
        active: released_at.is_none() && expires_at.as_str() > now,
        expires_at,
        released_at,
        release_reason: text(r, 11)?,
    })
}

/// Every active reservation.
pub(super) fn active(c: &Connection, now: &str) -> Result<Vec<Reservation>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM arc_reservations WHERE released_at IS NULL AND expires_at > ?1 ORDER BY created_at, reservation_id"
    ))?;
    let rows = st
        .query_map([now], |r| row(r, now))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn by_id(c: &Connection, id: &str, now: &str) -> Result<Option<Reservation>> {
    Ok(c.one(
        &format!("SELECT {COLS} FROM arc_reservations WHERE reservation_id = ?1"),
        [id],
        |r| row(r, now),
    )
    .optional()?)
}

/// What is asked for: a pattern to reserve, or a path (taken literally:
/// `src/[id].tsx` is a file name, not a class) to check.
pub(super) type Wanted = (String, Option<Pattern>);

/// True if `theirs` (a held pattern) meets what is wanted.
fn meets(theirs: &Pattern, (raw, mine): &Wanted) -> bool {
    match mine {
        Some(p) => p.overlaps(theirs),
        None => theirs.matches(raw),
    }
}

/// True if a locked path (normalised) is covered by what is wanted.
fn covers(locked: &str, (raw, mine): &Wanted) -> bool {
    match mine {
        Some(p) => p.matches(locked),
        None => locked == raw,
    }
}

/// The conflicts of `agent` taking `wanted` (exclusive or not) against
/// everything active, reservations and reference locks.
pub(super) fn conflicts(
    c: &Connection,
    rules: &PathRules,
    agent: &str,
    wanted: &[Wanted],
    exclusive: bool,
    now: &str,
) -> Result<Vec<Conflict>> {
    let mut out = Vec::new();
    for r in active(c, now)?.into_iter().filter(|r| r.agent_id != agent) {
        if !exclusive && !r.exclusive() {
            continue;
        }
        for theirs in &r.paths {
            let Ok(p) = Pattern::parse(theirs) else {
                continue;
            };
            for w in wanted {
                if meets(&p, w) {
                    out.push(Conflict {
                        reservation_id: Some(r.reservation_id.clone()),
                        agent_id: r.agent_id.clone(),
                        pattern: theirs.clone(),
                        mode: r.mode.clone(),
                        requested: w.0.clone(),
                        expires_at: r.expires_at.clone(),
                        reason: r.reason.clone(),
                    });
                }
            }
        }
    }
    let mut st = c.prepare_cached(
        "SELECT file_path, agent_id, expires_at FROM locks WHERE released_at IS NULL AND expires_at >= ?1 AND agent_id != ?2 ORDER BY locked_at, rowid",
    )?;
    let locks = st
        .query_map(params![now, agent], |r| {
            Ok((
                text(r, 0)?.unwrap_or_default(),
                text(r, 1)?.unwrap_or_default(),
                text(r, 2)?.unwrap_or_default(),
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (path, holder, expires_at) in locks {
        let Ok(norm) = rules.normalize(&path) else {
            continue;
        };
        for w in wanted {
            if covers(&norm, w) {
                out.push(Conflict {
                    reservation_id: None,
                    agent_id: holder.clone(),
                    pattern: path.clone(),
                    mode: "lock".into(),
                    requested: w.0.clone(),
                    expires_at: expires_at.clone(),
                    reason: None,
                });
            }
        }
    }
    Ok(out)
}

/// The outcome of a reservation request: all or nothing.
#[derive(Debug)]
pub enum Reserved {
    Granted(Box<Reservation>),
    Refused(Vec<Conflict>),
}

impl Tx<'_> {
    /// Releases `r` for `why`, announcing it (channel notice and a DM to
    /// the holder) when `announce`; only the update that released it does.
    pub(super) fn release_reservation(
        &mut self,
        r: &Reservation,
        why: &str,
        announce: bool,
    ) -> Result<bool> {
        let n = self.tx.run(
            "UPDATE arc_reservations SET released_at = ?1, release_reason = ?2 WHERE reservation_id = ?3 AND released_at IS NULL",
            params![self.now, why, r.reservation_id],
        )?;
        if n != 1 {
            return Ok(false);
        }
        self.out.logs.push(format!(
            "reservation released: id={} agent={} reason={why}",
            r.reservation_id, r.agent_id
        ));
        if announce {
            let paths = r.paths.join(", ");
            let meta = json!({"reservation_id": r.reservation_id, "agent_id": r.agent_id, "paths": r.paths, "release_reason": why});
            let channel = r.channel.clone().unwrap_or_else(|| "general".into());
            self.notice(
                &channel,
                &format!(
                    "Released {}'s reservation of {paths} ({why}). The paths are free.",
                    r.agent_id
                ),
                meta.clone(),
                r.task_id,
                None,
            )?;
            self.insert_message(
                "system",
                Some(&r.agent_id),
                "direct",
                "notice",
                &format!(
                    "Your reservation {} of {paths} was released: {why}.",
                    r.reservation_id
                ),
                &[],
                None,
                None,
                meta.as_object().expect("an object"),
            )?;
        }
        Ok(true)
    }

    /// Reservations past their expiry are released and announced.
    pub(super) fn expire_reservations(&mut self) -> Result<()> {
        let mut st = self.tx.prepare_cached(&format!(
            "SELECT {COLS} FROM arc_reservations WHERE released_at IS NULL AND expires_at <= ?1 ORDER BY expires_at"
        ))?;
        let now = self.now.clone();
        let due = st
            .query_map([&now], |r| row(r, &now))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(st);
        for r in due {
            self.release_reservation(&r, "expired", true)?;
        }
        Ok(())
    }

    /// An agent left with no live session loses its reservations.
    pub(super) fn recover_reservations(&mut self, agent: &str) -> Result<()> {
        let now = self.now.clone();
        for r in active(self.tx, &now)?
            .into_iter()
            .filter(|r| r.agent_id == agent)
        {
            self.release_reservation(&r, "its holder's session expired", true)?;
        }
        Ok(())
    }

    /// Reservations tied to a released claim, or to a completed task.
    pub(super) fn release_tied(&mut self, claim_key: Option<&str>, done_tasks: bool) -> Result<()> {
        let now = self.now.clone();
        for r in active(self.tx, &now)? {
            let by_claim = claim_key.is_some() && r.claim_key.as_deref() == claim_key;
            let by_task = done_tasks
                && match r.task_id {
                    Some(id) => {
                        self.tx
                            .one("SELECT status FROM tasks WHERE task_id = ?1", [id], |r| {
                                text(r, 0)
                            })
                            .optional()?
                            .flatten()
                            .as_deref()
                            == Some("done")
                    }
                    None => false,
                };
            if by_claim {
                self.release_reservation(&r, "its claim was released", false)?;
            } else if by_task {
                self.release_reservation(&r, "its task completed", false)?;
            }
        }
        Ok(())
    }

    /// Takes `want` for its agent, or refuses with every conflict.
    pub(super) fn reserve(&mut self, rules: &PathRules, want: &NewReservation) -> Result<Reserved> {
        let parsed: Vec<Wanted> = want
            .paths
            .iter()
            .map(|p| {
                Pattern::parse(p)
                    .map(|pat| (p.clone(), Some(pat)))
                    .map_err(Error::invalid)
            })
            .collect::<Result<_>>()?;
        let now = self.now.clone();
        let found = conflicts(
            self.tx,
            rules,
            &want.agent_id,
            &parsed,
            want.exclusive,
            &now,
        )?;
        if !found.is_empty() {
            return Ok(Reserved::Refused(found));
        }
        let expires = time::format(self.now_s + want.ttl_sec);
        let mode = if want.exclusive {
            "exclusive"
        } else {
            "shared"
        };
        // The same agent reserving the same patterns again extends the lease.
        let paths_json = serde_json::to_string(&want.paths)?;
        let same: Option<String> = self
            .tx
            .one(
                "SELECT reservation_id FROM arc_reservations WHERE agent_id = ?1 AND paths_json = ?2 AND mode = ?3 \
                 AND released_at IS NULL AND expires_at > ?4 ORDER BY created_at LIMIT 1",
                params![want.agent_id, paths_json, mode, now],
                |r| r.get(0),
            )
            .optional()?;
        let id = match same {
            Some(id) => {
                self.tx.run(
                    "UPDATE arc_reservations SET expires_at = MAX(expires_at, ?1) WHERE reservation_id = ?2",
                    params![expires, id],
                )?;
                id
            }
            None => {
                let id = format!("res-{}", crate::ids::uuid4_hex());
                let channel = match want.task_id {
                    Some(t) => self
                        .tx
                        .one("SELECT channel FROM tasks WHERE task_id = ?1", [t], |r| {
                            text(r, 0)
                        })
                        .optional()?
                        .flatten(),
                    None => None,
                };
                self.tx.run(
                    &format!("INSERT INTO arc_reservations({COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, NULL)"),
                    params![id, want.agent_id, paths_json, mode, want.reason, want.task_id, want.claim_key, channel, now, expires],
                )?;
                id
            }
        };
        self.touch(&want.agent_id)?;
        let r =
            by_id(self.tx, &id, &now)?.ok_or_else(|| Error::internal("reservation vanished"))?;
        Ok(Reserved::Granted(Box::new(r)))
    }

    /// The exclusive reservation of another agent covering `path`, as the
    /// reference's lock-denied row.
    pub(super) fn reserved_against_lock(
        &self,
        rules: &PathRules,
        agent: &str,
        path: &str,
    ) -> Result<Option<Lock>> {
        let Ok(norm) = rules.normalize(path) else {
            return Ok(None);
        };
        for r in active(self.tx, &self.now)? {
            if r.agent_id == agent || !r.exclusive() {
                continue;
            }
            for p in &r.paths {
                if Pattern::parse(p).is_ok_and(|pat| pat.matches(&norm)) {
                    return Ok(Some(Lock {
                        file_path: path.to_string(),
                        agent_id: r.agent_id.clone(),
                        locked_at: r.created_at.clone(),
                        expires_at: r.expires_at.clone(),
                        released_at: None,
                        metadata: json!({"reservation_id": r.reservation_id, "pattern": p, "reason": r.reason}),
                    }));
                }
            }
        }
        Ok(None)
    }
}

impl Store {
    /// How reservation paths compare (set once, when the hub opens).
    pub fn set_path_rules(&self, rules: PathRules) {
        let _ = self.path_rules.set(rules);
    }

    pub fn path_rules(&self) -> PathRules {
        self.path_rules.get().cloned().unwrap_or_default()
    }

    /// `POST /v1/reservations`.
    pub fn reserve(&self, want: &NewReservation) -> Result<Reserved> {
        let rules = self.path_rules();
        self.write(|t| t.reserve(&rules, want))
    }

    /// `POST /v1/reservations/{id}/renew`: the holder sets a new expiry.
    pub fn renew_reservation(&self, id: &str, agent: &str, ttl_sec: i64) -> Result<Reservation> {
        self.write(|t| {
            let expires = time::format(t.now_s + ttl_sec);
            let n = t.tx.run(
                "UPDATE arc_reservations SET expires_at = ?1 WHERE reservation_id = ?2 AND agent_id = ?3 AND released_at IS NULL AND expires_at > ?4",
                params![expires, id, agent, t.now],
            )?;
            if n == 0 {
                return Err(Error::not_found("reservation not found, not active or not held by agent_id"));
            }
            t.touch(agent)?;
            by_id(t.tx, id, &t.now)?.ok_or_else(|| Error::internal("reservation vanished"))
        })
    }

    /// `POST /v1/reservations/{id}/release`.
    pub fn release_reservation(&self, id: &str, agent: &str) -> Result<Reservation> {
        self.write(|t| {
            let now = t.now.clone();
            let r = by_id(t.tx, id, &now)?
                .filter(|r| r.agent_id == agent && r.active)
                .ok_or_else(|| {
                    Error::not_found("reservation not found, not active or not held by agent_id")
                })?;
            t.release_reservation(&r, "released by its holder", false)?;
            t.touch(agent)?;
            by_id(t.tx, id, &now)?.ok_or_else(|| Error::internal("reservation vanished"))
        })
    }

    /// `GET /v1/reservations`, oldest first.
    pub fn list_reservations(
        &self,
        agent: Option<&str>,
        active_only: bool,
    ) -> Result<Vec<Reservation>> {
        self.read(|c, now| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLS} FROM arc_reservations WHERE (?1 IS NULL OR agent_id = ?1) \
                 AND (?2 = 0 OR (released_at IS NULL AND expires_at > ?3)) ORDER BY created_at, reservation_id"
            ))?;
            let rows = st
                .query_map(params![agent, i64::from(active_only), now], |r| row(r, now))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    /// `GET /v1/reservations/check`: what stops `agent` touching `paths`
    /// (normalised, taken literally). Other agents' exclusive reservations
    /// and locks count; a shared reservation does not stop an edit. Read-only.
    pub fn check_paths(&self, agent: &str, paths: &[String]) -> Result<Vec<Conflict>> {
        let rules = self.path_rules();
        let wanted: Vec<Wanted> = paths.iter().map(|p| (p.clone(), None)).collect();
        self.read(|c, now| conflicts(c, &rules, agent, &wanted, false, now))
    }
}

/// The JSON of a reservation row (the API's answer).
pub fn reservation_json(r: &Reservation) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}
