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
INSERT OR IGNORE INTO arc_progress(name, up_to_id) VALUES ('reservations', 0);
CREATE TRIGGER IF NOT EXISTS arc_res_ins AFTER INSERT ON arc_reservations
  BEGIN UPDATE arc_progress SET up_to_id = up_to_id + 1 WHERE name = 'reservations'; END;
CREATE TRIGGER IF NOT EXISTS arc_res_upd AFTER UPDATE ON arc_reservations
  BEGIN UPDATE arc_progress SET up_to_id = up_to_id + 1 WHERE name = 'reservations'; END;
CREATE TRIGGER IF NOT EXISTS arc_res_del AFTER DELETE ON arc_reservations
  BEGIN UPDATE arc_progress SET up_to_id = up_to_id + 1 WHERE name = 'reservations'; END;
";

/// A held reservation with its patterns parsed.
pub(super) struct Held {
    pub(super) r: Reservation,
    pub(super) patterns: Vec<(String, Pattern)>,
}

/// Every unreleased reservation, parsed, as of a version of the table.
/// The version is a counter that triggers on `arc_reservations` (our own
/// table) bump in the same statement, so any writer, this hub or another
/// one, uncommitted rows of the open batch included, is seen: the cache
/// is used only while the counter this connection reads is unchanged.
#[derive(Default)]
pub struct HeldCache(std::sync::Mutex<Option<(i64, HeldList)>>);

/// The parsed reservations: shared rows, so following one change copies
/// pointers, not patterns.
pub(super) type HeldList = std::sync::Arc<Vec<std::sync::Arc<Held>>>;

impl HeldCache {
    /// Forgets the parsed copy (after a rollback: versions may repeat).
    pub fn clear(&self) {
        *crate::notify::lock(&self.0) = None;
    }

    /// After one statement of ours changed the row `id` (and so bumped the
    /// version by exactly one): the copy follows without a reload. Any
    /// other change in between shows as a version gap, and the copy is
    /// dropped instead.
    pub(super) fn follow(&self, c: &Connection, id: &str) -> Result<()> {
        let version = table_version(c)?;
        let mut guard = crate::notify::lock(&self.0);
        let Some((v, list)) = guard.as_ref() else {
            return Ok(());
        };
        if *v != version - 1 {
            *guard = None;
            return Ok(());
        }
        let mut next: Vec<std::sync::Arc<Held>> = list
            .iter()
            .filter(|h| h.r.reservation_id != id)
            .cloned()
            .collect();
        if let Some(r) = by_id(c, id, "")?.filter(|r| r.released_at.is_none()) {
            next.push(std::sync::Arc::new(parse_held(r)));
        }
        *guard = Some((version, std::sync::Arc::new(next)));
        Ok(())
    }
}

fn table_version(c: &Connection) -> Result<i64> {
    Ok(c.one(
        "SELECT up_to_id FROM arc_progress WHERE name = 'reservations'",
        [],
        |r| r.get(0),
    )
    .optional()?
    .unwrap_or(-1))
}

fn parse_held(r: Reservation) -> Held {
    Held {
        patterns: r
            .paths
            .iter()
            .filter_map(|p| Pattern::parse(p).ok().map(|pat| (p.clone(), pat)))
            .collect(),
        r,
    }
}

/// The unreleased reservations (expired ones included: callers filter
/// by `expires_at`), from the cache while the table is unchanged.
pub(super) fn held(c: &Connection, cache: &HeldCache) -> Result<HeldList> {
    let version = table_version(c)?;
    if let Some((v, held)) = crate::notify::lock(&cache.0).as_ref() {
        if *v == version {
            return Ok(held.clone());
        }
    }
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLS} FROM arc_reservations WHERE released_at IS NULL ORDER BY created_at, reservation_id"
    ))?;
    let rows = st
        .query_map([], |r| row(r, ""))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let list: Vec<std::sync::Arc<Held>> = rows
        .into_iter()
        .map(|r| std::sync::Arc::new(parse_held(r)))
        .collect();
    let list = std::sync::Arc::new(list);
    *crate::notify::lock(&cache.0) = Some((version, list.clone()));
    Ok(list)
}

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

/// True if `theirs` (a held pattern) meets what is wanted (`path`: the
/// wanted path, split once).
fn meets(theirs: &Pattern, (raw, mine): &Wanted, path: &crate::glob::PathSegs) -> bool {
    // Anchored patterns whose first segments are different literals never meet.
    let first = match mine {
        Some(p) => p.first_literal(),
        None => raw.split('/').next(),
    };
    if let (Some(a), Some(b)) = (first, theirs.first_literal()) {
        if a != b {
            return false;
        }
    }
    match mine {
        Some(p) => p.overlaps(theirs),
        None => theirs.matches_path(path),
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
    cache: &HeldCache,
    rules: &PathRules,
    agent: &str,
    wanted: &[Wanted],
    exclusive: bool,
    now: &str,
) -> Result<Vec<Conflict>> {
    let mut out = Vec::new();
    let split: Vec<crate::glob::PathSegs> = wanted
        .iter()
        .map(|(raw, _)| crate::glob::PathSegs::new(raw))
        .collect();
    let all = held(c, cache)?;
    for h in all
        .iter()
        .filter(|h| h.r.agent_id != agent && h.r.expires_at.as_str() > now)
    {
        let r = &h.r;
        if !exclusive && !r.exclusive() {
            continue;
        }
        for (theirs, p) in &h.patterns {
            for (w, path) in wanted.iter().zip(&split) {
                if meets(p, w, path) {
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
        self.held.follow(self.tx, &r.reservation_id)?;
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
            self.held,
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
        self.held.follow(self.tx, &id)?;
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
            t.held.follow(t.tx, id)?;
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
        self.read(|c, now| conflicts(c, &self.held, &rules, agent, &wanted, false, now))
    }
}

/// The JSON of a reservation row (the API's answer).
pub fn reservation_json(r: &Reservation) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::temp_store;
    use super::*;

    fn want(agent: &str, path: &str) -> NewReservation {
        NewReservation {
            agent_id: agent.into(),
            paths: vec![path.into()],
            exclusive: true,
            ttl_sec: 600,
            reason: None,
            task_id: None,
            claim_key: None,
        }
    }

    fn granted(r: Reserved) -> bool {
        matches!(r, Reserved::Granted(_))
    }

    /// The parsed copy follows our own writes, forgets a rolled-back one
    /// (whose version number the next write reuses), and sees another
    /// hub's writes through the version counter.
    #[test]
    fn the_parsed_copy_never_outlives_what_the_file_holds() {
        let (store, dir) = temp_store(120);
        assert!(granted(store.reserve(&want("a", "src/**")).unwrap()));
        assert!(!granted(store.reserve(&want("b", "src/x.rs")).unwrap()));
        // A member that reserved, then failed: its row is rolled back.
        let failed = store.write(|t| {
            let rules = PathRules::default();
            assert!(granted(t.reserve(&rules, &want("c", "docs/**"))?));
            Err::<(), _>(Error::invalid("then something failed"))
        });
        assert!(failed.is_err());
        // Another connection (another hub) writes next, reusing the
        // rolled-back version number: the copy must not show docs/** held.
        let other = Store::open(&dir.join("arc.sqlite3"), 120).unwrap();
        assert!(granted(other.reserve(&want("d", "lib/**")).unwrap()));
        assert!(granted(store.reserve(&want("e", "docs/a.md")).unwrap()));
        assert!(granted(other.reserve(&want("f", "tests/**")).unwrap()));
        assert!(!granted(store.reserve(&want("g", "tests/t.rs")).unwrap()));
        let freed = store.list_reservations(Some("a"), true).unwrap();
        store
            .release_reservation(&freed[0].reservation_id, "a")
            .unwrap();
        assert!(granted(other.reserve(&want("b", "src/x.rs")).unwrap()));
        assert!(!granted(store.reserve(&want("h", "src/x.rs")).unwrap()));
    }
}
