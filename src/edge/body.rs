//! Request bodies (docs/PROTOCOL.md, "Wire rules"): what the HTTP layer
//! read, its errors in the reference's words, and the JSON object it
//! must parse to.

use serde_json::{Map, Value};

use crate::api::Reply;
use crate::state::State;

/// Takes a POST body (spec §2.3 steps 1–3). The HTTP layer has already
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

/// Spec §2.3 steps 4–6: UTF-8, JSON, object. An empty body is `{}`.
pub(super) fn parse(body: &[u8]) -> std::result::Result<Map<String, Value>, &'static str> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    let text = std::str::from_utf8(body).map_err(|_| "request body must be valid UTF-8")?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut m)) => match m.values_mut().all(crate::input::python_numbers) {
            true => Ok(m),
            false => Err("malformed JSON"),
        },
        Ok(_) => Err("request body must be a JSON object"),
        Err(_) => Err("malformed JSON"),
    }
}
