//! Sessions, agents, bootstrap and channels (docs/PROTOCOL.md,
//! "Endpoints").

use std::sync::Arc;

use serde_json::json;

use super::{Call, Outcome, Reply};
use crate::error::{Error, Result};
use crate::input::{self, opt_bool, opt_list, opt_object_within, opt_string, req_string};
use crate::state::State;

/// `GET /v1/agents`.
pub(super) fn agents(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let mut agents = s.store.live_agents(c.query.get("as"))?;
    if let Some(cap) = c.query.get("capability") {
        agents.retain(|a| {
            a.capabilities
                .as_array()
                .is_some_and(|caps| caps.iter().any(|c| c.as_str() == Some(cap)))
        });
    }
    Ok(Reply::ok(agents).into())
}

/// `GET /v1/bootstrap`.
pub(super) fn bootstrap(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let agent = c
        .query
        .get("agent_id")
        .ok_or_else(|| Error::invalid("agent_id query parameter is required"))?;
    Ok(Reply::ok(s.store.bootstrap(agent)?).into())
}

/// `GET /v1/channels`.
pub(super) fn channels(s: &Arc<State>, _: &Call) -> Result<Outcome> {
    Ok(Reply::ok(s.store.list_channels()?).into())
}

/// `POST /v1/channels`: 201 for a new channel, 200 with the existing one.
pub(super) fn create_channel(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let b = &c.body;
    let name = req_string(b, "name")?;
    let created_by = opt_string(b, "created_by")?;
    let metadata =
        opt_object_within(b, "metadata", s.config.max_json_field_chars())?.unwrap_or_default();
    let (ch, created) = s
        .store
        .create_channel(&name, created_by.as_deref(), &metadata)?;
    Ok(if created {
        Reply::created(ch)
    } else {
        Reply::ok(ch)
    }
    .into())
}

/// `POST /v1/sessions`.
pub(super) fn create(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let b = &c.body;
    let agent_id = req_string(b, "agent_id")?;
    let display = opt_string(b, "display_name")?.filter(|d| !d.is_empty());
    let caps = opt_list(b, "capabilities")?.unwrap_or_default();
    if let Some(v) = input::field(b, "capabilities") {
        input::within_size(v, "capabilities", s.config.max_json_field_chars())?;
    }
    // Scalars are stringified like Python's str(); a list or object would
    // only become Python repr text, so it is refused.
    let caps: Vec<String> = caps
        .iter()
        .map(input::scalar_string)
        .collect::<Option<_>>()
        .ok_or_else(|| Error::invalid("capabilities must not contain lists or objects"))?;
    let metadata =
        opt_object_within(b, "metadata", s.config.max_json_field_chars())?.unwrap_or_default();
    let replace = opt_bool(b, "replace")?.unwrap_or(false);
    let display = display.unwrap_or_else(|| agent_id.clone());
    let session = s
        .store
        .create_session(&agent_id, &display, &caps, &metadata, replace)?;
    Ok(Reply::created(session).into())
}

/// `POST /v1/sessions/{agent_id}/rename`.
pub(super) fn rename(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let name = req_string(&c.body, "display_name")?;
    if name.chars().count() > 64 {
        return Err(Error::invalid(
            "display_name must be 64 characters or fewer",
        ));
    }
    Ok(Reply::ok(s.store.rename_session(c.param(0), &name)?).into())
}

/// `DELETE /v1/sessions/{session_id}`.
pub(super) fn close(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let sid = c.param(0);
    s.store.close_session(sid)?;
    Ok(Reply::ok(json!({"session_id": sid, "deleted": true})).into())
}
