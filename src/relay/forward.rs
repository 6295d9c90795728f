//! Forwarding one checked request to the hub, and what its response file
//! says about the answer (docs/PROTOCOL.md, "Response envelope"). The
//! hub's answer is carried as the JSON text it sent: it is validated
//! (without building a tree, however deep it is) and copied, never parsed
//! into values and printed again.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use serde_json::value::{RawValue, to_raw_value};

use super::envelope::{Envelope, Refusal};
use super::{RelayConfig, Shared};
use crate::client::{HttpResponse, http_request};
use crate::error::Error;
use crate::spool::clamp_long_poll;

/// The fields of one response file, before `completed_at` is stamped.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) request_id: String,
    pub(super) ok: bool,
    pub(super) status: u16,
    pub(super) body: Option<Box<RawValue>>,
    pub(super) error: Option<String>,
}

impl Outcome {
    /// A request that was not forwarded (no body).
    pub(super) fn refused(request_id: String, r: Refusal) -> Outcome {
        Outcome {
            request_id,
            ok: false,
            status: r.status,
            body: None,
            error: Some(r.error),
        }
    }
}

/// Forwards `env` and describes the answer.
pub(super) fn forward(cfg: &RelayConfig, shared: &Shared, env: &Envelope) -> Outcome {
    let (mut path, mut wait) = clamp_long_poll(&env.path, cfg.max_wait_sec);
    // A waiting long-poll holds one of the hub's waiter slots, which every
    // agent shares: the relay holds at most `max_long_polls` of them. One
    // more is asked not to wait (an early empty answer is always legal),
    // so it is answered at once instead of queueing behind the others.
    let slot = (wait > 0.0).then(|| shared.long_poll_slot(cfg.max_long_polls));
    if matches!(slot, Some(None)) {
        (path, wait) = clamp_long_poll(&env.path, 0.0);
    }
    let timeout = cfg
        .request_timeout
        .max(Duration::from_secs_f64(wait) + Duration::from_secs(10));
    let body = env.body.map(|b| b.get().as_bytes());
    let answer = http_request(&cfg.base_url, env.method, &path, body, &[], timeout);
    drop(slot);
    let request_id = env.request_id.clone();
    let r = match answer {
        Ok(r) => r,
        Err(e) => {
            let detail = match e {
                Error::Transport(_) => e.detail(),
                e => format!("connection error: {e}"),
            };
            return Outcome {
                request_id,
                ok: false,
                status: 599,
                body: to_raw_value(&json!({"ok": false, "error": detail})).ok(),
                error: Some(detail),
            };
        }
    };
    let status = r.status;
    match hub_body(r) {
        Ok(body) => {
            let (ok, error) = verdict(status, &body);
            Outcome {
                request_id,
                ok,
                status,
                body: Some(body),
                error,
            }
        }
        Err(why) => Outcome::refused(
            request_id,
            Refusal {
                status: 502,
                error: format!("relay: the hub's answer (HTTP {status}) {why}"),
            },
        ),
    }
}

/// The hub's answer as JSON text. An answer that is not JSON (the
/// dashboard's HTML, a plain-text error page) becomes a JSON string, as
/// in the reference; one that says it is JSON but is not is an error
/// (the reason is returned), never passed on as a string.
fn hub_body(r: HttpResponse) -> Result<Box<RawValue>, String> {
    let says_json = r
        .header("Content-Type")
        .is_some_and(|t| t.to_ascii_lowercase().contains("json"));
    let text = match String::from_utf8(r.body) {
        Ok(t) => t,
        Err(_) if says_json => return Err("is not valid UTF-8".into()),
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    match serde_json::from_str::<&RawValue>(&text) {
        Ok(_) => RawValue::from_string(text).map_err(|e| e.to_string()),
        Err(e) if says_json => Err(format!("is not valid JSON: {e}")),
        Err(_) => to_raw_value(&text).map_err(|e| e.to_string()),
    }
}

/// `ok` and `error` of a response file, from the hub's answer: for an
/// object, its `ok` (true only if it is `true`) and its `error` string;
/// for anything else, `ok` for a 2xx status and otherwise the answer as
/// text. An empty error is none.
fn verdict(status: u16, body: &RawValue) -> (bool, Option<String>) {
    let text = body.get();
    let (ok, error) = if text.starts_with('{') {
        let fields: HashMap<String, &RawValue> = serde_json::from_str(text).unwrap_or_default();
        let ok = fields.get("ok").is_some_and(|v| v.get() == "true");
        let error = fields
            .get("error")
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
        (ok, error)
    } else if (200..300).contains(&status) {
        (true, None)
    } else if text.starts_with('"') {
        (false, serde_json::from_str::<String>(text).ok())
    } else {
        (false, Some(text.to_string()))
    };
    (ok, error.filter(|e| !e.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ct: Option<&str>, body: &[u8]) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: ct
                .map(|c| vec![("Content-Type".to_string(), c.to_string())])
                .unwrap_or_default(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn json_answers_are_carried_as_their_text() {
        // Deeper than any parser into values would go.
        let text = format!(
            r#"{{"ok":true,"result":{{"n":1.50,"deep":{}{}}}}}"#,
            "[".repeat(500),
            "]".repeat(500)
        );
        let b = hub_body(answer(Some("application/json"), text.as_bytes())).unwrap();
        assert_eq!(b.get(), text);
        assert_eq!(verdict(200, &b), (true, None));
    }

    #[test]
    fn broken_json_is_an_error_and_other_text_a_string() {
        for bad in [&b"{\"ok\": tru"[..], b"\xff\xfe", b""] {
            let why = hub_body(answer(Some("application/json; charset=utf-8"), bad)).unwrap_err();
            assert!(why.starts_with("is not valid"), "{why}");
        }
        let html = hub_body(answer(Some("text/html"), b"<p>\"hi\"</p>")).unwrap();
        assert_eq!(html.get(), r#""<p>\"hi\"</p>""#);
        assert_eq!(verdict(200, &html), (true, None));
        assert_eq!(
            verdict(501, &html),
            (false, Some("<p>\"hi\"</p>".to_string()))
        );
        // No content type: JSON if it parses, a string otherwise.
        assert_eq!(hub_body(answer(None, b"[1]")).unwrap().get(), "[1]");
        assert_eq!(hub_body(answer(None, b"oops")).unwrap().get(), r#""oops""#);
    }

    #[test]
    fn ok_and_error_follow_the_reference() {
        let raw = |t: &str| RawValue::from_string(t.to_string()).unwrap();
        assert_eq!(
            verdict(400, &raw(r#"{"ok": false, "error": "bad"}"#)),
            (false, Some("bad".into()))
        );
        assert_eq!(verdict(200, &raw(r#"{"ok": 1}"#)), (false, None));
        assert_eq!(verdict(200, &raw(r#"{"error": ""}"#)), (false, None));
        assert_eq!(verdict(404, &raw("[1, 2]")), (false, Some("[1, 2]".into())));
        assert_eq!(verdict(204, &raw("null")), (true, None));
    }
}
