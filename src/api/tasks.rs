//! Tasks and threads (docs/PROTOCOL.md, "Tasks, RPC and rollup",
//! "Threads").

use std::sync::Arc;

use super::{Call, Outcome, Reply};
use crate::error::{Error, Result};
use crate::state::State;
use crate::wire::Envelope;

/// `GET /v1/tasks`.
pub(super) fn tasks(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let q = &c.query;
    let parent = q.int("parent_id")?;
    let status = q.get("status");
    if status.is_some_and(|st| st != "open" && st != "done") {
        return Err(Error::invalid("status must be 'open' or 'done'"));
    }
    let rows = s
        .store
        .list_tasks(parent, status, q.get("channel"), q.get("thread_id"))?;
    Ok(Reply::ok(rows).into())
}

/// `POST /v1/tasks/{task_id}/complete`.
pub(super) fn complete(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let id: i64 = c
        .param(0)
        .parse()
        .map_err(|_| Error::not_found("task not found"))?;
    let (task, parent_completed) = s.store.complete_task(id)?;
    let env = Envelope {
        parent_completed: parent_completed.then_some(true),
        ..Envelope::new(task)
    };
    Ok(Reply::envelope(200, env).into())
}

/// `GET /v1/threads`.
pub(super) fn threads(s: &Arc<State>, _: &Call) -> Result<Outcome> {
    Ok(Reply::ok(s.store.list_threads()?).into())
}

/// `GET /v1/threads/{thread_id}`, with the `since_id`, `limit` and `tail`
/// extensions (docs/PROTOCOL.md, "Pages").
pub(super) fn thread(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let q = &c.query;
    let limit = match q.get("limit") {
        Some(_) => Some(q.limit(i64::MAX)?),
        None => None,
    };
    let tail = q.flag("tail");
    let limit = if tail && limit.is_none() {
        Some(100)
    } else {
        limit
    };
    let since = q.since_id()?;
    match s.store.thread_detail(c.param(0), since, limit, tail)? {
        Some(d) => Ok(Reply::ok(d).into()),
        None => Err(Error::not_found("thread not found")),
    }
}
