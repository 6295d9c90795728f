//! The handlers of the working tools: claims, locks, tasks (claim-next,
//! completion, handoff), reservations and their path check, and RPC.
//! Arguments are checked before the hub is contacted.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Args, envelope, hub_error, result, to_json};
use crate::client::Reserve;
use crate::input::percent_encode;
use crate::mcp::server::Shared;

type Res = std::result::Result<Value, String>;

/// The longest any tool waits at the hub, in seconds (the loop answers
/// one request at a time).
const MAX_WAIT_SEC: f64 = 300.0;

pub(super) fn rpc_call(s: &Shared, a: &Args<'_>) -> Res {
    let (to, body) = (a.string("to_agent")?, a.string("body")?);
    let timeout = a.number("timeout", 3600.0)?;
    s.session()?;
    to_json(
        s.client
            .call(&to, &body, "direct", Duration::from_secs_f64(timeout), None),
    )
}

pub(super) fn next_task(s: &Shared, a: &Args<'_>) -> Res {
    let channel = a.opt_string("channel")?;
    let wait = a.number("wait", MAX_WAIT_SEC)?;
    s.session()?;
    envelope(s.client.next_task(channel.as_deref(), wait))
}

pub(super) fn reserve(s: &Shared, a: &Args<'_>) -> Res {
    let r = Reserve {
        paths: a.strings("paths")?,
        shared: a.flag("shared")?,
        ttl_sec: Some(a.int_or_default("ttl_sec")? as f64),
        task_id: a.opt_int("task_id")?,
        claim_key: None,
        reason: a.opt_string("reason")?,
    };
    s.session()?;
    envelope(s.client.reserve(&r))
}

pub(super) fn check_paths(s: &Shared, a: &Args<'_>) -> Res {
    let paths = a.strings("paths")?;
    s.session()?;
    to_json(s.client.check_paths(&paths, s.client.timeout))
}

pub(super) fn list_reservations(s: &Shared, a: &Args<'_>) -> Res {
    let agent = a.opt_string("agent_id")?;
    let active = a.flag("active_only")?;
    s.session()?;
    to_json(s.client.reservations(agent.as_deref(), active))
}

pub(super) fn renew_reservation(s: &Shared, a: &Args<'_>) -> Res {
    let id = a.string("reservation_id")?;
    let ttl = a.opt_int("ttl_sec")?;
    s.session()?;
    envelope(s.client.renew_reservation(&id, ttl.map(|t| t as f64)))
}

pub(super) fn release_reservation(s: &Shared, a: &Args<'_>) -> Res {
    let id = a.string("reservation_id")?;
    s.session()?;
    envelope(s.client.release_reservation(&id))
}

pub(super) fn claim(s: &Shared, a: &Args<'_>) -> Res {
    let key = a.string("claim_key")?;
    let thread = a.opt_string("thread_id")?;
    let ttl = a.int_or_default("ttl_sec")?;
    s.session()?;
    let l = s
        .client
        .claim(&key, thread.as_deref(), None, ttl, None)
        .map_err(hub_error)?;
    to_json(Ok(json!({"acquired": l.acquired, "claim": l.row})))
}

pub(super) fn refresh_claim(s: &Shared, a: &Args<'_>) -> Res {
    let key = a.string("claim_key")?;
    let ttl = a.int_or_default("ttl_sec")?;
    s.session()?;
    let l = s.client.refresh_claim(&key, ttl).map_err(hub_error)?;
    to_json(Ok(json!({"acquired": l.acquired, "claim": l.row})))
}

pub(super) fn release(s: &Shared, a: &Args<'_>) -> Res {
    let key = a.string("claim_key")?;
    s.session()?;
    to_json(s.client.release(&key))
}

pub(super) fn list_claims(s: &Shared, a: &Args<'_>) -> Res {
    let thread = a.opt_string("thread_id")?;
    let active = a.flag("active_only")?;
    s.session()?;
    to_json(s.client.claims(thread.as_deref(), active))
}

pub(super) fn lock(s: &Shared, a: &Args<'_>) -> Res {
    let path = a.string("file_path")?;
    let ttl = a.int_or_default("ttl_sec")?;
    s.session()?;
    let l = s.client.lock(&path, ttl, None).map_err(hub_error)?;
    to_json(Ok(json!({"acquired": l.acquired, "lock": l.row})))
}

pub(super) fn refresh_lock(s: &Shared, a: &Args<'_>) -> Res {
    let path = a.string("file_path")?;
    let ttl = a.int_or_default("ttl_sec")?;
    s.session()?;
    let l = s.client.refresh_lock(&path, ttl).map_err(hub_error)?;
    to_json(Ok(json!({"acquired": l.acquired, "lock": l.row})))
}

pub(super) fn unlock(s: &Shared, a: &Args<'_>) -> Res {
    let path = a.string("file_path")?;
    s.session()?;
    to_json(s.client.unlock(&path))
}

pub(super) fn list_locks(s: &Shared, a: &Args<'_>) -> Res {
    let agent = a.opt_string("agent_id")?;
    let active = a.flag("active_only")?;
    s.session()?;
    let mut path = format!("/v1/locks?active_only={}", u8::from(active));
    if let Some(agent) = agent {
        path.push_str(&format!("&agent_id={}", percent_encode(&agent)));
    }
    result(s, "GET", &path, None)
}

pub(super) fn list_tasks(s: &Shared, a: &Args<'_>) -> Res {
    let mut q = Vec::new();
    for key in ["status", "channel", "thread_id"] {
        if let Some(v) = a.opt_string(key)? {
            q.push(format!("{key}={}", percent_encode(&v)));
        }
    }
    if let Some(p) = a.opt_int("parent_id")? {
        q.push(format!("parent_id={p}"));
    }
    s.session()?;
    to_json(s.client.tasks(&q.join("&")))
}

pub(super) fn complete_task(s: &Shared, a: &Args<'_>) -> Res {
    let id = a.int("task_id")?;
    s.session()?;
    let (task, parent) = s.client.complete_task(id).map_err(hub_error)?;
    to_json(Ok(json!({"task": task, "parent_completed": parent})))
}

pub(super) fn handoff(s: &Shared, a: &Args<'_>) -> Res {
    let id = a.int("task_id")?;
    let to = a.string("to_agent")?;
    let note = a.opt_string("note")?;
    s.session()?;
    envelope(s.client.handoff(id, &to, note.as_deref()))
}
