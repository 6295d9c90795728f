//! The delivery record and surfacing (docs/PROTOCOL.md, "Delivery and
//! wake"): an agent's read mark, what is pending for it, each message's
//! state per recipient, dead letters, and `surface`, which hooks and
//! `arc watch` call to take (or look at) what has not been shown to the
//! model yet, waiting like a long-poll when asked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Call, Outcome, Reply, Wait, WaitKind};
use crate::error::{Error, Result};
use crate::input::{opt_bool, opt_int};
use crate::notify::{Key, Wake};
use crate::state::State;
use crate::store::{DeliveryScope, Pending};
use crate::wire::headers::{self, HOOK_TEXT_CHARS};

/// Messages one `surface` call considers at most.
pub const SURFACE_LIMIT: usize = 200;

/// Ids each list of `pending` holds at most, by default and at most.
pub const PENDING_LIMIT: i64 = 100;
pub const PENDING_LIMIT_MAX: i64 = 1000;

/// A `surface` call, parsed.
#[derive(Debug, Clone)]
pub struct SurfaceReq {
    pub agent: String,
    pub max_chars: usize,
    pub bodies: bool,
    /// Look only: nothing is marked (`arc watch` marks after its command ran).
    pub peek: bool,
    /// The hook waiter's generation, when it waits.
    pub waiter: Option<u64>,
    pub limit: usize,
}

fn up_to_id(c: &Call) -> Result<i64> {
    match opt_int(&c.body, "up_to_id")? {
        Some(n) if n >= 0 => Ok(n),
        Some(_) => Err(Error::invalid("up_to_id must be >= 0")),
        None => Err(Error::invalid("up_to_id is required")),
    }
}

fn agent_param(c: &Call) -> Result<String> {
    let a = c.param(0).trim();
    if a.is_empty() {
        return Err(Error::invalid("agent_id is required"));
    }
    Ok(a.to_string())
}

/// `POST /v1/agents/{agent_id}/read`.
pub(super) fn read(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let agent = agent_param(c)?;
    let mark = s.store.mark_read(&agent, up_to_id(c)?)?;
    Ok(Reply::ok(json!({"agent_id": agent, "read_up_to": mark})).into())
}

/// `POST /v1/agents/{agent_id}/surfaced`.
pub(super) fn surfaced(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let agent = agent_param(c)?;
    let mark = s.store.mark_surfaced(&agent, up_to_id(c)?)?;
    Ok(Reply::ok(json!({"agent_id": agent, "surfaced_up_to": mark})).into())
}

/// `GET /v1/agents/{agent_id}/pending`.
pub(super) fn pending(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let agent = agent_param(c)?;
    let limit = match c.query.int("limit")? {
        None => PENDING_LIMIT,
        Some(n) if (1..=PENDING_LIMIT_MAX).contains(&n) => n,
        Some(_) => {
            return Err(Error::invalid(format!(
                "limit must be between 1 and {PENDING_LIMIT_MAX}"
            )));
        }
    };
    s.flush_delivered();
    let p = s.store.pending_lists(&agent, limit as usize)?;
    let channels: serde_json::Map<String, Value> = p
        .marks
        .delivered_channels
        .iter()
        .map(|(c, id)| (c.clone(), json!(id)))
        .collect();
    Ok(Reply::ok(json!({
        "agent_id": agent,
        "undelivered": p.undelivered,
        "unsurfaced": p.unsurfaced,
        "unread": p.unread,
        "counts": {"undelivered": p.counts.0, "unsurfaced": p.counts.1, "unread": p.counts.2},
        "limit": limit,
        "truncated": p.truncated,
        "marks": {
            "delivered": p.marks.delivered,
            "delivered_dm": p.marks.delivered_dm,
            "delivered_channels": channels,
            "surfaced": p.marks.surfaced,
            "read": p.marks.read,
        },
    }))
    .into())
}

/// `GET /v1/messages/{id}/deliveries`.
pub(super) fn deliveries(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let id: i64 = c
        .param(0)
        .parse()
        .map_err(|_| Error::not_found("message not found"))?;
    s.flush_delivered();
    let rows: Vec<Value> = s
        .store
        .deliveries(id)?
        .into_iter()
        .map(|d| {
            let mut v = json!({"agent_id": d.agent_id, "state": d.state, "at": d.at});
            if d.dead {
                v["dead_letter"] = json!(true);
            }
            v
        })
        .collect();
    Ok(Reply::ok(rows).into())
}

/// `GET /v1/deliveries/dead`.
pub(super) fn dead(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let limit = c.query.limit(s.config.max_query_limit)?;
    let rows: Vec<Value> = s
        .store
        .dead_letters(limit as usize)?
        .into_iter()
        .map(|d| {
            json!({
                "message_id": d.message.id,
                "from_agent": d.message.from_agent,
                "to_agent": d.message.to_agent,
                "channel": d.message.channel,
                "kind": d.message.kind,
                "ts": d.message.ts,
                "summary": headers::summary(&d.message.body, headers::SUMMARY_CHARS),
                "suggestion": d.suggestion,
            })
        })
        .collect();
    Ok(Reply::ok(rows).into())
}

/// `POST /v1/agents/{agent_id}/surface`.
pub(super) fn surface(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let agent = agent_param(c)?;
    let b = &c.body;
    let max_chars = match opt_int(b, "max_chars")? {
        None => HOOK_TEXT_CHARS,
        Some(n) if (200..=1_000_000).contains(&n) => n as usize,
        Some(_) => return Err(Error::invalid("max_chars must be between 200 and 1000000")),
    };
    let limit = match opt_int(b, "limit")? {
        None => SURFACE_LIMIT,
        Some(n) if (1..=SURFACE_LIMIT as i64).contains(&n) => n as usize,
        Some(_) => {
            return Err(Error::invalid(format!(
                "limit must be between 1 and {SURFACE_LIMIT}"
            )));
        }
    };
    let wait = match crate::input::field(b, "wait") {
        None => 0.0,
        Some(v) => match v
            .as_f64()
            .or_else(|| v.as_str().and_then(crate::input::py_float))
        {
            Some(w) if w.is_finite() && w >= 0.0 => w.min(s.config.max_poll_sec),
            _ => {
                return Err(Error::invalid(
                    "wait must be a non-negative number of seconds",
                ));
            }
        },
    };
    let waiter = match opt_int(b, "waiter")? {
        Some(g) if g >= 0 => Some(g as u64),
        Some(_) => return Err(Error::invalid("waiter must be >= 0")),
        None => None,
    };
    // A hook waiter takes over from older ones (`supersede`) or names the
    // generation it was given (`waiter`); other callers (`arc watch`)
    // wait side by side.
    let supersede = opt_bool(b, "supersede")?.unwrap_or(false);
    let mut req = SurfaceReq {
        agent: agent.clone(),
        max_chars,
        bodies: opt_bool(b, "bodies")?.unwrap_or(false),
        peek: opt_bool(b, "peek")?.unwrap_or(false),
        waiter,
        limit,
    };
    if supersede || waiter.is_some() {
        match s.hook_waiter(&agent, waiter) {
            Err(newer) => return Ok(superseded(&agent, newer).into()),
            Ok((generation, took_over)) => {
                if took_over {
                    s.notifier.notify(&[Key::Waiter(agent.clone())]);
                }
                req.waiter = Some(generation);
            }
        }
    }
    let sub = (wait > 0.0).then(|| {
        s.notifier.subscribe(vec![
            Key::Recipient(agent.clone()),
            Key::Broadcast,
            Key::Waiter(agent.clone()),
        ])
    });
    let (reply, empty) = attempt(s, &req)?;
    match sub {
        Some(sub) if empty && !s.notifier.is_shutdown() => Ok(Outcome::Wait(Wait {
            kind: WaitKind::Surface(req),
            deadline: Instant::now() + Duration::from_secs_f64(wait),
            agent: Some(agent),
            touch: false,
            sub,
        })),
        _ => Ok(reply.into()),
    }
}

fn superseded(agent: &str, newer: u64) -> Reply {
    Reply::ok(json!({
        "agent_id": agent, "superseded": true, "waiter": newer,
        "text": Value::Null, "messages": [], "shown": 0, "more": 0, "dead_letters": [],
    }))
}

/// One try: take (or peek at) what is pending. The reply, and whether it
/// had nothing to show.
fn attempt(s: &State, req: &SurfaceReq) -> Result<(Reply, bool)> {
    let mut text = None;
    let compose = |p: &Pending, text: &mut Option<String>| {
        let (t, shown) = headers::compose(
            &req.agent,
            &p.messages,
            p.more,
            &p.dead,
            req.bodies,
            req.max_chars,
        );
        *text = Some(t);
        shown
    };
    let (pending, shown) = if req.peek {
        // A look shows everything fetched; the text is only a preview.
        let p = s.store.surface_peek(&req.agent, req.limit)?;
        if !p.is_empty() {
            compose(&p, &mut text);
        }
        let n = p.messages.len();
        (p, n)
    } else {
        s.store
            .surface_take(&req.agent, req.limit, |p| compose(p, &mut text))?
    };
    // A look (`arc watch`) is about messages only: dead letters are told
    // by taking, so one must not end a look's wait again and again.
    let empty = if req.peek {
        pending.messages.is_empty()
    } else {
        pending.is_empty()
    };
    let left = pending.messages.len() - shown + pending.more;
    let dead: Vec<Value> = pending
        .dead
        .iter()
        .map(|d| json!({"message_id": d.message_id, "to_agent": d.to_agent, "suggestion": d.suggestion}))
        .collect();
    let shown_msgs = &pending.messages[..shown];
    let reply = Reply::ok(json!({
        "agent_id": req.agent,
        "superseded": false,
        "waiter": req.waiter,
        "text": if empty { None } else { text },
        "messages": shown_msgs,
        "shown": shown,
        "more": left,
        "dead_letters": dead,
    }));
    Ok((reply, empty))
}

/// Runs a parked `surface` to completion: a new message, a newer waiter
/// of the same agent, the deadline or shutdown ends it.
pub fn finish(s: &State, mut w: Wait) -> Reply {
    let WaitKind::Surface(req) = &w.kind else {
        return Reply::error(500, "internal error: not a surface wait");
    };
    let req = req.clone();
    let result = (|| -> Result<Reply> {
        loop {
            let wake = w.sub.wait(w.deadline);
            if let Some(g) = req.waiter {
                if let Err(newer) = s.hook_waiter(&req.agent, Some(g)) {
                    return Ok(superseded(&req.agent, newer));
                }
            }
            match wake {
                Wake::Signaled => {
                    let (reply, empty) = attempt(s, &req)?;
                    if !empty {
                        return Ok(reply);
                    }
                }
                Wake::TimedOut | Wake::Shutdown => return Ok(attempt(s, &req)?.0),
            }
        }
    })();
    result.unwrap_or_else(|e| Reply::from_error(&e))
}

/// Records what a feed returned to an agent (its delivered mark), through
/// the hub's mark writer: the feed never waits for it.
pub fn record(s: &State, agent: &str, scope: Option<DeliveryScope>, last_id: Option<i64>) {
    if let (Some(scope), Some(id)) = (scope, last_id) {
        s.delivered(agent, scope, id);
    }
}
