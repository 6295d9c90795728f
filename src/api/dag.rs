//! The task DAG's calls (docs/PROTOCOL.md, "Task DAG"): `tasks/next`,
//! which claims the best ready task and reserves its paths in one step
//! (waiting like a long-poll when asked), and `handoff`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Call, Outcome, Reply, Wait, WaitKind};
use crate::error::{Error, Result};
use crate::input::{opt_list, opt_string, req_string};
use crate::notify::{Key, Wake};
use crate::state::State;
use crate::store::{Assignment, reservation_json};

/// A `tasks/next` call, parsed.
#[derive(Debug, Clone)]
pub struct NextReq {
    pub agent: String,
    pub channel: Option<String>,
    pub capabilities: Option<Vec<String>>,
}

fn assignment_json(a: &Assignment) -> Value {
    json!({
        "task": a.task,
        "message": a.message,
        "claim": a.claim,
        "reservations": a.reservations.iter().map(reservation_json).collect::<Vec<_>>(),
        "briefing": a.briefing,
    })
}

fn attempt(s: &State, r: &NextReq) -> Result<Option<Value>> {
    Ok(s.store
        .next_task(&r.agent, r.channel.as_deref(), r.capabilities.as_deref())?
        .map(|a| assignment_json(&a)))
}

/// `POST /v1/tasks/next`.
pub(super) fn next(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let b = &c.body;
    let agent = req_string(b, "agent_id")?;
    let channel = opt_string(b, "channel")?;
    if let Some(ch) = &channel {
        if !s.store.channel_exists(ch)? {
            return Err(Error::not_found("channel not found"));
        }
    }
    let capabilities = match opt_list(b, "capabilities")? {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| Error::invalid("capabilities must be a list of strings"))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    let timeout = match crate::input::field(b, "timeout") {
        None | Some(Value::Null) => 0.0,
        Some(v) => match v
            .as_f64()
            .or_else(|| v.as_str().and_then(crate::input::py_float))
        {
            Some(t) if t.is_finite() && t >= 0.0 => t.min(s.config.max_poll_sec),
            _ => {
                return Err(Error::invalid(
                    "timeout must be a non-negative number of seconds",
                ));
            }
        },
    };
    let req = NextReq {
        agent: agent.clone(),
        channel,
        capabilities,
    };
    // Subscribed before the first try, so a completion in between wakes us.
    let sub = (timeout > 0.0).then(|| s.notifier.subscribe(vec![Key::Tasks]));
    let got = attempt(s, &req)?;
    match (got, sub) {
        (None, Some(sub)) if !s.notifier.is_shutdown() => Ok(Outcome::Wait(Wait {
            kind: WaitKind::NextTask(req),
            deadline: Instant::now() + Duration::from_secs_f64(timeout),
            agent: Some(agent),
            touch: false,
            sub,
        })),
        (got, _) => Ok(Reply::ok(got).into()),
    }
}

/// Runs a parked `tasks/next`: each change to tasks or claims tries
/// again; the deadline or shutdown answers `null`.
pub fn finish(s: &State, mut w: Wait) -> Reply {
    let WaitKind::NextTask(req) = &w.kind else {
        return Reply::error(500, "internal error: not a tasks/next wait");
    };
    let req = req.clone();
    let result = (|| -> Result<Option<Value>> {
        loop {
            match w.sub.wait(w.deadline) {
                Wake::Signaled => {
                    if let Some(v) = attempt(s, &req)? {
                        return Ok(Some(v));
                    }
                }
                Wake::TimedOut | Wake::Shutdown => return attempt(s, &req),
            }
        }
    })();
    match result {
        Ok(v) => Reply::ok(v),
        Err(e) => Reply::from_error(&e),
    }
}

/// `POST /v1/tasks/{id}/handoff`.
pub(super) fn handoff(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let id: i64 = c
        .param(0)
        .parse()
        .map_err(|_| Error::not_found("task not found"))?;
    let b = &c.body;
    let from = req_string(b, "from_agent")?;
    let to = req_string(b, "to_agent")?;
    if from == to {
        return Err(Error::invalid("to_agent must differ from from_agent"));
    }
    let note = opt_string(b, "note")?;
    let (claim, reservations) = s.store.handoff(id, &from, &to, note.as_deref())?;
    Ok(Reply::ok(json!({
        "task_id": id,
        "claim": claim,
        "reservations": reservations.iter().map(reservation_json).collect::<Vec<_>>(),
    }))
    .into())
}
