//! Request bodies (docs/PROTOCOL.md, "Wire rules"): what the HTTP layer
//! read, its errors in the reference's words, and the JSON object it
//! must parse to.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::api::Reply;
use crate::state::State;
use crate::wire::shape;

/// Takes a POST body (docs/PROTOCOL.md, "Wire rules"). The HTTP layer has already
/// read it, within the size cap, on the connection's own thread (so a
/// slow client never holds a worker), or left it unread when its declared
/// length is over the cap.
pub(super) fn take(
    state: &State,
    rq: &mut tiny_http::Request,
) -> std::result::Result<Vec<u8>, Reply> {
    use tiny_http::BodyStatus;
    let too_big = || Reply::error(400, "request body exceeds max size");
    match rq.body_status() {
        BodyStatus::Complete => {}
        BodyStatus::Unread | BodyStatus::TooLarge => return Err(too_big()),
        BodyStatus::Truncated => {
            return Err(Reply::error(
                400,
                "request body is shorter than Content-Length",
            ));
        }
        BodyStatus::Broken => {
            return Err(Reply::error(
                400,
                "request body is not valid chunked encoding",
            ));
        }
        BodyStatus::TimedOut => return Err(Reply::error(408, "request body timed out")),
        BodyStatus::Busy => {
            return Err(Reply::error(
                503,
                "hub is busy receiving other request bodies; retry shortly",
            ));
        }
    }
    let body = rq.take_body().unwrap_or_default();
    if body.len() > state.config.request_cap() {
        return Err(too_big());
    }
    Ok(body)
}

/// Bodies up to this size are parsed without asking the budget: they cost
/// little, and they must never wait behind large ones.
const SMALL_BODY: usize = 64 << 10;

/// Memory a parsed body takes, counted against
/// [`crate::state::PARSE_BUDGET`], per byte of its text, at worst, with its
/// copies in the handler and the answer (measured on bodies of short
/// numbers at the shape limit: about 130 MB for 8 MB of text).
const COST_PER_BYTE: usize = 16;

/// How long a large body waits for room in the budget before a 503.
const BUDGET_WAIT: Duration = Duration::from_secs(5);

/// Room in the parse budget for `body`, held until its answer is sent;
/// `None` for small bodies. A 503 when the hub is busy with others.
pub(super) fn reserve(
    state: &State,
    body: &[u8],
) -> std::result::Result<Option<crate::notify::Grant>, Reply> {
    if body.len() <= SMALL_BODY {
        return Ok(None);
    }
    let cost = body.len().saturating_mul(COST_PER_BYTE);
    match state
        .parse_budget
        .acquire(cost, Instant::now() + BUDGET_WAIT)
    {
        Some(grant) => Ok(Some(grant)),
        None => Err(Reply::error(
            503,
            "hub is busy with other large requests; retry shortly",
        )),
    }
}

/// UTF-8, within the JSON shape limits, JSON, an object
/// (docs/PROTOCOL.md, "Wire rules"). An empty body is `{}`. The shape is
/// checked before parsing: a parsed value costs far more memory than its
/// text, and what is stored must stay readable by clients that refuse
/// deep nesting.
pub(super) fn parse(body: &[u8]) -> std::result::Result<Map<String, Value>, String> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    let text = std::str::from_utf8(body).map_err(|_| "request body must be valid UTF-8")?;
    if let Some(why) = shape::over(body, shape::LIMITS) {
        return Err(format!("request body {why}"));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut m)) => match m.values_mut().all(crate::input::python_numbers) {
            true => Ok(m),
            false => Err("malformed JSON".into()),
        },
        Ok(_) => Err("request body must be a JSON object".into()),
        Err(_) => Err("malformed JSON".into()),
    }
}
