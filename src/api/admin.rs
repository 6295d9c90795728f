//! hub-info, shutdown control, the remote-access switch and the
//! dashboard's files (docs/PROTOCOL.md, "Shutdown and network",
//! "Dashboard").

use std::sync::Arc;

use serde_json::json;

use super::{Call, Outcome, Reply};
use crate::error::{Error, Result};
use crate::input::{opt_bool, opt_int};
use crate::state::State;

/// `GET /`.
pub(super) fn dashboard(_: &Arc<State>, _: &Call) -> Result<Outcome> {
    Ok(Reply {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body: crate::dashboard::HTML.as_bytes().to_vec(),
        delivers: None,
    }
    .into())
}

/// `GET /assets/dashboard.css`.
pub(super) fn dashboard_css(_: &Arc<State>, _: &Call) -> Result<Outcome> {
    Ok(asset("dashboard.css").into())
}

/// `GET /assets/dashboard.js`.
pub(super) fn dashboard_js(_: &Arc<State>, _: &Call) -> Result<Outcome> {
    Ok(asset("dashboard.js").into())
}

fn asset(name: &str) -> Reply {
    match crate::dashboard::asset(name) {
        Some((content_type, text)) => Reply {
            status: 200,
            content_type,
            body: text.as_bytes().to_vec(),
            delivers: None,
        },
        None => Reply::error(404, "not found"),
    }
}

/// `GET /v1/hub-info`.
pub(super) fn hub_info(s: &Arc<State>, _: &Call) -> Result<Outcome> {
    Ok(Reply::ok(s.hub_info()).into())
}

/// `GET /v1/shutdown`.
pub(super) fn shutdown_status(s: &Arc<State>, _: &Call) -> Result<Outcome> {
    Ok(Reply::ok(s.shutdown_status()).into())
}

/// `POST /v1/shutdown`: `delay_sec` from 0 to 3600, default 60.
pub(super) fn shutdown(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let delay = opt_int(&c.body, "delay_sec")?.unwrap_or(60);
    if delay < 0 {
        return Err(Error::invalid("delay_sec must be >= 0"));
    }
    if delay > 3600 {
        return Err(Error::invalid("delay_sec must be <= 3600"));
    }
    Ok(Reply::ok(s.arm_shutdown(delay)?).into())
}

/// `POST /v1/shutdown/cancel`.
pub(super) fn shutdown_cancel(s: &Arc<State>, _: &Call) -> Result<Outcome> {
    Ok(Reply::ok(s.cancel_shutdown()?).into())
}

/// `POST /v1/network`.
pub(super) fn network(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    if let Some(want) = opt_bool(&c.body, "allow_remote")? {
        s.set_allow_remote(want)?;
    }
    let state = json!({"allow_remote": s.allow_remote(), "listen_host": s.config.host});
    Ok(Reply::ok(state).into())
}
