//! Claims and locks (docs/PROTOCOL.md, "Endpoints"). A grant is 201 with
//! `acquired: true`; a denial is 200 with `acquired: false` and the
//! holder's row.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Call, Outcome, Reply};
use crate::error::{Error, Result};
use crate::input::{opt_int, opt_object_within, opt_string, req_string};
use crate::state::State;
use crate::store::MAX_TTL_SEC;
use crate::wire::{Claim, Envelope, Lock};

fn lease_reply<T: Serialize>(row: T, acquired: bool) -> Reply {
    Reply::envelope(
        if acquired { 201 } else { 200 },
        Envelope {
            acquired: Some(acquired),
            ..Envelope::new(row)
        },
    )
}

/// `ttl_sec`: default 300, at least 5, at most ten years.
fn ttl(b: &Map<String, Value>) -> Result<i64> {
    let ttl = opt_int(b, "ttl_sec")?.unwrap_or(300);
    if ttl < 5 {
        return Err(Error::invalid("ttl_sec must be at least 5"));
    }
    if ttl > MAX_TTL_SEC {
        return Err(Error::invalid(format!(
            "ttl_sec must be at most {MAX_TTL_SEC}"
        )));
    }
    Ok(ttl)
}

/// `GET /v1/claims`.
pub(super) fn claims(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let filter = c.query.get("thread_id").map(|t| ("thread_id", t));
    let rows = s
        .store
        .list_leases::<Claim>(filter, c.query.flag("active_only"))?;
    Ok(Reply::ok(rows).into())
}

/// `GET /v1/locks`.
pub(super) fn locks(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let filter = c.query.get("agent_id").map(|a| ("agent_id", a));
    let rows = s
        .store
        .list_leases::<Lock>(filter, c.query.flag("active_only"))?;
    Ok(Reply::ok(rows).into())
}

/// `POST /v1/claims`.
pub(super) fn claim(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let b = &c.body;
    let owner = req_string(b, "owner_agent_id")?;
    let key = opt_string(b, "claim_key")?.unwrap_or_default();
    let task_id = opt_int(b, "task_message_id")?;
    let thread = opt_string(b, "thread_id")?.filter(|t| !t.is_empty());
    let ttl = ttl(b)?;
    let metadata =
        opt_object_within(b, "metadata", s.config.max_json_field_chars())?.unwrap_or_default();
    let key = match (key.is_empty(), task_id) {
        (false, _) => key,
        (true, Some(id)) => format!("task-{id}"),
        (true, None) => {
            return Err(Error::invalid("claim_key or task_message_id is required"));
        }
    };
    let (claim, acquired) =
        s.store
            .acquire_claim(&owner, &key, task_id, thread.as_deref(), ttl, &metadata)?;
    Ok(lease_reply(claim, acquired).into())
}

/// `POST /v1/claims/refresh`.
pub(super) fn claim_refresh(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let key = req_string(&c.body, "claim_key")?;
    let owner = req_string(&c.body, "owner_agent_id")?;
    let ttl = ttl(&c.body)?;
    let row = s.store.refresh_lease::<Claim>(&key, &owner, ttl)?;
    Ok(lease_reply(row, true).with_status(200).into())
}

/// `POST /v1/claims/release`.
pub(super) fn claim_release(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let key = req_string(&c.body, "claim_key")?;
    let agent = req_string(&c.body, "agent_id")?;
    Ok(Reply::ok(s.store.release_lease::<Claim>(&key, &agent)?).into())
}

/// `POST /v1/locks`.
pub(super) fn lock(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let b = &c.body;
    let agent = req_string(b, "agent_id")?;
    let path = req_string(b, "file_path")?;
    let ttl = ttl(b)?;
    let metadata =
        opt_object_within(b, "metadata", s.config.max_json_field_chars())?.unwrap_or_default();
    let (lock, acquired) = s.store.acquire_lock(&agent, &path, ttl, &metadata)?;
    Ok(lease_reply(lock, acquired).into())
}

/// `POST /v1/locks/refresh`.
pub(super) fn lock_refresh(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let agent = req_string(&c.body, "agent_id")?;
    let path = req_string(&c.body, "file_path")?;
    let ttl = ttl(&c.body)?;
    let row = s.store.refresh_lease::<Lock>(&path, &agent, ttl)?;
    Ok(lease_reply(row, true).with_status(200).into())
}

/// `POST /v1/locks/release`.
pub(super) fn lock_release(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let agent = req_string(&c.body, "agent_id")?;
    let path = req_string(&c.body, "file_path")?;
    Ok(Reply::ok(s.store.release_lease::<Lock>(&path, &agent)?).into())
}
