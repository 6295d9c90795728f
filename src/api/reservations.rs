//! Reservations: leases on path patterns (docs/PROTOCOL.md,
//! "Reservations"). Validation and answers here; overlap, locks and
//! expiry in the store.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Call, Outcome, Reply};
use crate::error::{Error, Result};
use crate::input::{opt_int, opt_list, opt_string, req_string};
use crate::state::State;
use crate::store::{Conflict, NewReservation, Reserved, reservation_json};
use crate::wire::{RESERVATION_MIN_TTL_SEC, RESERVATION_TTL_SEC};

/// Patterns one reservation (or one check) may name at most.
pub const MAX_PATTERNS: usize = 64;

fn ttl(b: &serde_json::Map<String, Value>) -> Result<i64> {
    let ttl = opt_int(b, "ttl_sec")?.unwrap_or(RESERVATION_TTL_SEC);
    if ttl < RESERVATION_MIN_TTL_SEC {
        return Err(Error::invalid(format!(
            "ttl_sec must be at least {RESERVATION_MIN_TTL_SEC}"
        )));
    }
    if ttl > crate::store::MAX_TTL_SEC {
        return Err(Error::invalid(format!(
            "ttl_sec must be at most {}",
            crate::store::MAX_TTL_SEC
        )));
    }
    Ok(ttl)
}

/// The normalised patterns of `raw`, deduplicated, in order.
fn patterns(s: &State, raw: &[&str]) -> Result<Vec<String>> {
    if raw.is_empty() {
        return Err(Error::invalid("paths must name at least one pattern"));
    }
    if raw.len() > MAX_PATTERNS {
        return Err(Error::invalid(format!(
            "paths may name at most {MAX_PATTERNS} patterns"
        )));
    }
    let rules = s.store.path_rules();
    let mut out: Vec<String> = Vec::new();
    for p in raw {
        let pat = rules.pattern(p)?;
        let n = pat.as_str().to_string();
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

fn conflicts_json(c: &[Conflict]) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

/// `POST /v1/reservations`.
pub(super) fn reserve(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let b = &c.body;
    let agent = req_string(b, "agent_id")?;
    let list = opt_list(b, "paths")?.ok_or_else(|| Error::invalid("paths is required"))?;
    let raw: Vec<&str> = list
        .iter()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| Error::invalid("paths must be a list of strings"))
        })
        .collect::<Result<_>>()?;
    let exclusive = match opt_string(b, "mode")?.as_deref() {
        None | Some("exclusive") => true,
        Some("shared") => false,
        Some(_) => return Err(Error::invalid("mode must be 'exclusive' or 'shared'")),
    };
    let task_id = opt_int(b, "task_id")?;
    if let Some(t) = task_id {
        if !s.store.task_exists(t)? {
            return Err(Error::not_found("task not found"));
        }
    }
    let want = NewReservation {
        agent_id: agent,
        paths: patterns(s, &raw)?,
        exclusive,
        ttl_sec: ttl(b)?,
        reason: opt_string(b, "reason")?,
        task_id,
        claim_key: opt_string(b, "claim_key")?,
    };
    match s.store.reserve(&want)? {
        Reserved::Granted(r) => {
            // Its expiry may come before anything the timer waits for.
            s.expiry_alarm.ring();
            Ok(Reply::created(reservation_json(&r)).into())
        }
        Reserved::Refused(found) => Ok(refused(&found).into()),
    }
}

/// The 409 of a refused reservation, naming every holder.
pub fn refused(found: &[Conflict]) -> Reply {
    let first = &found[0];
    let message = format!(
        "reservation conflicts with {} held by {} ({}){}",
        first.pattern,
        first.agent_id,
        first.mode,
        match found.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        }
    );
    let body = json!({"ok": false, "error": message, "conflicts": conflicts_json(found)});
    Reply::json(409, body.to_string())
}

/// `GET /v1/reservations`.
pub(super) fn list(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let rows = s
        .store
        .list_reservations(c.query.get("agent_id"), c.query.flag("active_only"))?;
    let rows: Vec<Value> = rows.iter().map(reservation_json).collect();
    Ok(Reply::ok(rows).into())
}

/// `POST /v1/reservations/{id}/renew`.
pub(super) fn renew(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let agent = req_string(&c.body, "agent_id")?;
    let r = s
        .store
        .renew_reservation(c.param(0), &agent, ttl(&c.body)?)?;
    s.expiry_alarm.ring();
    Ok(Reply::ok(reservation_json(&r)).into())
}

/// `POST /v1/reservations/{id}/release`.
pub(super) fn release(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let agent = req_string(&c.body, "agent_id")?;
    let r = s.store.release_reservation(c.param(0), &agent)?;
    Ok(Reply::ok(reservation_json(&r)).into())
}

/// `GET /v1/reservations/check`: read-only.
pub(super) fn check(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let agent = c
        .query
        .get("agent_id")
        .ok_or_else(|| Error::invalid("agent_id query parameter is required"))?
        .to_string();
    let raw = c.query.all("path");
    if raw.is_empty() {
        return Err(Error::invalid("path query parameter is required"));
    }
    if raw.len() > MAX_PATTERNS {
        return Err(Error::invalid(format!(
            "at most {MAX_PATTERNS} paths per check"
        )));
    }
    let rules = s.store.path_rules();
    let paths: Vec<String> = raw
        .iter()
        .map(|p| rules.normalize(p))
        .collect::<Result<_>>()?;
    let found = s.store.check_paths(&agent, &paths)?;
    Ok(Reply::ok(json!({"allowed": found.is_empty(), "conflicts": conflicts_json(&found)})).into())
}
