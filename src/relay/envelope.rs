//! Reading and checking one request envelope (docs/PROTOCOL.md, "Request
//! envelope"). The text is measured before it is parsed, so a file never
//! costs much more memory than its size; the body stays the JSON text it
//! arrived as; and the method, the path and the route they name are
//! checked, so that nothing but a plain request line for a relayable
//! route ever reaches the hub (docs/SECURITY.md, "A spool writer cannot
//! reach outside the spool").

use std::collections::HashMap;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::wire::shape::{LIMITS, Limits};

/// A checked envelope, borrowing its body from the file's text.
#[derive(Debug)]
pub(super) struct Envelope<'a> {
    pub(super) request_id: String,
    pub(super) method: &'static str,
    /// Starts with exactly one `/`; printable ASCII only.
    pub(super) path: String,
    /// The body's JSON text (an object), if there is one.
    pub(super) body: Option<&'a RawValue>,
}

/// Why a request is not forwarded: its status and the error its response
/// file gives.
#[derive(Debug, PartialEq)]
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) error: String,
}

impl Refusal {
    /// 400 `invalid relay request: <reason>` (the reference's text).
    pub(super) fn invalid(reason: impl std::fmt::Display) -> Refusal {
        Refusal {
            status: 400,
            error: format!("invalid relay request: {reason}"),
        }
    }
}

/// The methods the protocol's routes use; nothing else is forwarded.
pub(super) const METHODS: [&str; 3] = ["GET", "POST", "DELETE"];

/// Routes that change the hub itself (method, pattern in the route
/// table): not relayed unless the operator allows it.
pub(super) const ADMIN_ROUTES: [(&str, &str); 3] = [
    ("POST", "/v1/shutdown"),
    ("POST", "/v1/shutdown/cancel"),
    ("POST", "/v1/network"),
];

/// The envelope's own nesting level and keys, on top of what the body
/// may hold under [`LIMITS`].
const ENVELOPE_LIMITS: Limits = Limits {
    depth: LIMITS.depth + 1,
    values: LIMITS.values + 64,
};

/// Checks the envelope in `bytes` (docs/PROTOCOL.md, "Processing and
/// ordering" and "Request envelope"). `stem` is the file's stem, the
/// fallback `request_id`.
pub(super) fn parse<'a>(
    bytes: &'a [u8],
    stem: &str,
    allow_admin: bool,
) -> Result<Envelope<'a>, Refusal> {
    if let Some(why) = crate::wire::shape::over(bytes, ENVELOPE_LIMITS) {
        return Err(Refusal::invalid(format!(
            "request envelope is too large to parse: {why}"
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(Refusal::invalid)?;
    // Validated whole first (without building a tree), so that "not an
    // object" is told apart from "not JSON".
    let top: &RawValue = serde_json::from_str(text).map_err(Refusal::invalid)?;
    if !top.get().starts_with('{') {
        return Err(Refusal::invalid("request envelope must be a JSON object"));
    }
    // Each value is kept as its text; only the few small ones read below
    // are parsed. A repeated key keeps its last value, as in Python.
    let fields: HashMap<String, &RawValue> =
        serde_json::from_str(top.get()).map_err(Refusal::invalid)?;
    let text_of = |k: &str| -> Option<String> {
        let v: Value = serde_json::from_str(fields.get(k)?.get()).ok()?;
        crate::input::scalar_string(&v)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let request_id = text_of("request_id").unwrap_or_else(|| stem.to_string());
    let method = text_of("method")
        .map(|m| m.to_uppercase())
        .ok_or_else(|| Refusal::invalid("request envelope missing method"))?;
    let method = METHODS
        .into_iter()
        .find(|m| *m == method)
        .ok_or_else(|| Refusal::invalid("request method must be GET, POST or DELETE"))?;
    let path = fields
        .get("path")
        .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
        .unwrap_or_default();
    let path = check_path(&path)?;
    let body = match fields.get("body") {
        None => None,
        Some(b) if b.get() == "null" => None,
        Some(b) if b.get().starts_with('{') => Some(*b),
        Some(_) => {
            return Err(Refusal::invalid(
                "request body must be a JSON object when provided",
            ));
        }
    };
    check_route(method, &path, allow_admin)?;
    Ok(Envelope {
        request_id,
        method,
        path,
        body,
    })
}

/// The path as it is forwarded: it must start with `/`, and consist of
/// printable ASCII only (no spaces, no control characters: it goes into
/// an HTTP request line as it is). Leading slashes collapse to one, as
/// the hub's router collapses them, so the checks below and the long-poll
/// clamp see the route the hub will see.
fn check_path(path: &str) -> Result<String, Refusal> {
    if !path.starts_with('/') {
        return Err(Refusal::invalid("request path must start with '/'"));
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Refusal::invalid(
            "request path must be printable ASCII, without spaces or control characters",
        ));
    }
    // An absolute URL anywhere in the target could be read as one by an
    // HTTP server; the protocol's clients percent-encode ':' and '/' in
    // query values, so a raw "://" is never needed.
    if path.contains("://") {
        return Err(Refusal::invalid(
            "request path must not contain \"://\" (percent-encode query values)",
        ));
    }
    Ok(format!("/{}", path.trim_start_matches('/')))
}

/// Refuses routes the relay does not serve: event streams (they never
/// end, so they would hold the agent's queue) and, unless allowed, the
/// admin routes (403).
fn check_route(method: &str, path: &str, allow_admin: bool) -> Result<(), Refusal> {
    let route = path.split(['?', '#']).next().unwrap_or_default();
    let Ok(routed) = crate::api::route(method, route) else {
        return Ok(()); // the hub answers 404 or 405
    };
    let def = routed.def;
    if def.pattern == "/v1/stream" {
        return Err(Refusal::invalid(
            "event streams cannot be relayed; long-poll /v1/events instead",
        ));
    }
    if !allow_admin && ADMIN_ROUTES.contains(&(def.method, def.pattern)) {
        return Err(Refusal {
            status: 403,
            error: format!(
                "relay: {} {} is an admin route and is not relayed (the hub's operator can allow it with --relay-allow-admin)",
                def.method, def.pattern
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(method: &str, path: &str) -> String {
        serde_json::json!({"method": method, "path": path}).to_string()
    }

    fn refusal(text: &str) -> Refusal {
        parse(text.as_bytes(), "stem", false).unwrap_err()
    }

    #[test]
    fn the_body_is_kept_as_its_text_and_fields_fall_back() {
        let text = r#"{"method": " post ", "path": "/v1/messages", "body": {"n": 1.50, "s": "é"},
                       "request_id": "  ", "created_at": "x"}"#;
        let e = parse(text.as_bytes(), "stem", false).unwrap();
        assert_eq!(e.request_id, "stem");
        assert_eq!(e.method, "POST");
        assert_eq!(e.path, "/v1/messages");
        assert_eq!(e.body.unwrap().get(), r#"{"n": 1.50, "s": "é"}"#);
        let e = parse(
            br#"{"method":"GET","path":"/v1/hub-info","body":null,"request_id":7}"#,
            "s",
            false,
        )
        .unwrap();
        assert!(e.body.is_none());
        assert_eq!(e.request_id, "7");
    }

    #[test]
    fn only_the_protocols_methods_are_forwarded() {
        for m in [
            "PUT",
            "PATCH",
            "HEAD",
            "OPTIONS",
            "GET /x HTTP/1.1\r\n",
            "G ET",
        ] {
            assert_eq!(
                refusal(&env(m, "/v1/hub-info")).error,
                "invalid relay request: request method must be GET, POST or DELETE",
                "{m:?}"
            );
        }
        for m in ["get", "Post", "DELETE"] {
            assert!(parse(env(m, "/v1/x").as_bytes(), "s", false).is_ok(), "{m}");
        }
    }

    #[test]
    fn paths_are_one_plain_request_target() {
        for p in [
            "/v1/hub-info HTTP/1.1\r\nHost: x\r\n\r\nPOST /v1/messages",
            "/v1/hub-info\n",
            "/v1/a b",
            "/v1/\u{7f}",
            "/v1/é",
            "/v1/x\0",
        ] {
            let r = refusal(&env("GET", p));
            assert_eq!(r.status, 400);
            assert!(r.error.contains("printable ASCII"), "{p:?}: {r:?}");
        }
        let r = refusal(&env("POST", "/v1/messages?x=http://h/v1/shutdown"));
        assert!(r.error.contains("://"), "{r:?}");
        let text = env("GET", "///v1/events?timeout=5");
        let e = parse(text.as_bytes(), "s", false).unwrap();
        assert_eq!(e.path, "/v1/events?timeout=5");
    }

    #[test]
    fn streams_and_admin_routes_are_refused_however_spelled() {
        for p in ["/v1/stream?agent_id=a", "//v1/stream", "/v1/stream#x"] {
            assert_eq!(refusal(&env("GET", p)).status, 400, "{p}");
        }
        for (m, p) in [
            ("POST", "/v1/shutdown"),
            ("post", "//v1/shutdown?delay_sec=0"),
            ("POST", "/v1/shutdown/cancel"),
            ("POST", "/v1/network#frag"),
        ] {
            let r = refusal(&env(m, p));
            assert_eq!(r.status, 403, "{m} {p}");
            assert!(r.error.starts_with("relay: POST /v1/"), "{r:?}");
        }
        // Reading the shutdown status is no admin action; and the operator
        // may allow the rest.
        assert!(parse(env("GET", "/v1/shutdown").as_bytes(), "s", false).is_ok());
        assert!(parse(env("POST", "/v1/shutdown").as_bytes(), "s", true).is_ok());
        // The list names real routes.
        for (m, p) in ADMIN_ROUTES {
            assert!(
                crate::api::ROUTES
                    .iter()
                    .any(|r| r.method == m && r.pattern == p),
                "{m} {p}"
            );
        }
    }

    #[test]
    fn oversized_shapes_are_refused_before_parsing() {
        let wide = format!(
            r#"{{"method":"POST","path":"/v1/channels","body":{{"x":[{}0]}}}}"#,
            "0,".repeat(LIMITS.values + 100)
        );
        let r = refusal(&wide);
        assert_eq!(r.status, 400);
        assert!(r.error.contains("more than"), "{r:?}");
        let deep = format!(
            r#"{{"method":"POST","path":"/v1/x","body":{{"a":{}1{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(refusal(&deep).error.contains("nested deeper"));
        // A body exactly at the hub's limits still passes.
        let fits = format!(
            r#"{{"method":"POST","path":"/v1/x","body":{{"a":{}1{}}}}}"#,
            "[".repeat(LIMITS.depth - 1),
            "]".repeat(LIMITS.depth - 1)
        );
        assert!(parse(fits.as_bytes(), "s", false).is_ok());
    }

    #[test]
    fn reference_errors_keep_their_text() {
        assert_eq!(
            refusal("[1, 2]").error,
            "invalid relay request: request envelope must be a JSON object"
        );
        assert_eq!(
            refusal(r#"{"path": "/v1/x"}"#).error,
            "invalid relay request: request envelope missing method"
        );
        assert_eq!(
            refusal(&env("GET", "v1/x")).error,
            "invalid relay request: request path must start with '/'"
        );
        assert_eq!(
            refusal(r#"{"method": "POST", "path": "/v1/x", "body": [1]}"#).error,
            "invalid relay request: request body must be a JSON object when provided"
        );
        assert!(
            refusal("{nope")
                .error
                .starts_with("invalid relay request: ")
        );
    }
}
