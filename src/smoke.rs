/*!
`arc smoke-agent`: the reference's three-role smoke test (spec §14).

smoke-a opens the channel and posts a task; smoke-b claims the work,
posts an artifact (the role meant to run through the relay) and releases;
smoke-c checks shared visibility and posts a verdict; smoke-a and smoke-b
finish with notices. Roles run as separate processes over `http` or
`relay`, so mixing them checks that both transports see the same state.
`--run-id` suffixes the channel, thread and claim key so repeated runs in
one database stay isolated (the defaults match the reference).
*/

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::SmokeArgs;
use crate::client::RelayClient;
use crate::client::http_request;
use crate::input::percent_encode;

/// A failed step, printed as `Smoke test failed: <reason>`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmokeError(pub String);

impl std::fmt::Display for SmokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

struct Transport {
    relay: Option<RelayClient>,
    base_url: String,
    timeout: Duration,
}

impl Transport {
    /// Sends a request; returns the hub's JSON envelope.
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match &self.relay {
            None => {
                let bytes = body.map(|b| b.to_string().into_bytes());
                match http_request(
                    &self.base_url,
                    method,
                    path,
                    bytes.as_deref(),
                    &[],
                    self.timeout,
                ) {
                    Ok(r) => match r.json() {
                        v @ Value::Object(_) => v,
                        _ if (200..300).contains(&r.status) => {
                            json!({"ok": true, "result": r.text()})
                        }
                        _ => json!({"ok": false, "error": r.text()}),
                    },
                    Err(e) => json!({"ok": false, "error": e.detail()}),
                }
            }
            Some(relay) => match relay.call(method, path, body, self.timeout) {
                Ok(env) => match env.get("body") {
                    Some(b @ Value::Object(_)) => b.clone(),
                    Some(b) if env.get("ok") == Some(&Value::Bool(true)) => {
                        json!({"ok": true, "result": b})
                    }
                    _ => {
                        json!({"ok": false, "error": env.get("error").cloned().unwrap_or(json!("relay transport error"))})
                    }
                },
                Err(e) => json!({"ok": false, "error": e.detail()}),
            },
        }
    }
}

fn require_ok(action: &str, v: Value) -> Result<Value, SmokeError> {
    if v.get("ok") == Some(&Value::Bool(true)) {
        Ok(v)
    } else {
        let err = match v.get("error") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => "unknown error".into(),
        };
        Err(SmokeError(format!("{action} failed: {err}")))
    }
}

/// Runs one role to completion.
pub fn run(a: &SmokeArgs) -> Result<(), SmokeError> {
    let suffix = a
        .run_id
        .as_deref()
        .map(|r| format!("-{r}"))
        .unwrap_or_default();
    let channel = format!("{}{suffix}", a.channel);
    let thread = format!("{}{suffix}", a.thread_id);
    let claim_key = format!("{}{suffix}", a.claim_key);
    let t = Transport {
        relay: (a.transport == "relay").then(|| RelayClient::new(&a.relay_dir, &a.role)),
        base_url: a.base_url.trim_end_matches('/').to_string(),
        timeout: Duration::from_secs_f64(a.timeout_sec.clamp(5.0, 30.0)),
    };
    let role = a.role.as_str();
    require_ok(
        "open session",
        t.request(
            "POST",
            "/v1/sessions",
            Some(json!({"agent_id": role, "display_name": role, "replace": true})),
        ),
    )?;
    let post = |action: &str, kind: &str, body: &str| -> Result<Value, SmokeError> {
        require_ok(
            action,
            t.request(
                "POST",
                "/v1/messages",
                Some(json!({"from_agent": role, "channel": channel, "kind": kind, "body": body, "thread_id": thread})),
            ),
        )
    };
    let wait = |pred: &dyn Fn(&[Value]) -> bool| -> Result<(), SmokeError> {
        let deadline = Instant::now() + Duration::from_secs_f64(a.timeout_sec);
        let path = format!(
            "/v1/messages?channel={}&thread_id={}&since_id=0",
            percent_encode(&channel),
            percent_encode(&thread)
        );
        loop {
            let v = t.request("GET", &path, None);
            if let Some(msgs) = v.get("result").and_then(Value::as_array) {
                if v.get("ok") == Some(&Value::Bool(true)) && pred(msgs) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(SmokeError(format!(
                    "timed out waiting for messages on thread {thread}"
                )));
            }
            crate::notify::pause(Duration::from_secs_f64(a.poll_interval_sec.max(0.01)));
        }
    };
    let has = |msgs: &[Value], from: &str, kind: &str, contains: Option<&str>| {
        msgs.iter().any(|m| {
            m["from_agent"] == from
                && m["kind"] == kind
                && contains.is_none_or(|c| m["body"].as_str().is_some_and(|b| b.contains(c)))
        })
    };
    match role {
        "smoke-a" => {
            require_ok(
                "create channel",
                t.request(
                    "POST",
                    "/v1/channels",
                    Some(json!({"name": channel, "created_by": "smoke-a"})),
                ),
            )?;
            post("post task", "task", "smoke task from smoke-a")?;
            wait(&|m| {
                has(m, "smoke-b", "artifact", None) && has(m, "smoke-c", "notice", Some("verified"))
            })?;
            post(
                "post final notice",
                "notice",
                "smoke-a saw both agents and the smoke test passed from the host side",
            )?;
        }
        "smoke-b" => {
            wait(&|m| has(m, "smoke-a", "task", None))?;
            let claim = require_ok(
                "acquire claim",
                t.request(
                    "POST",
                    "/v1/claims",
                    Some(json!({"claim_key": claim_key, "owner_agent_id": "smoke-b", "thread_id": thread})),
                ),
            )?;
            if claim.get("acquired") != Some(&Value::Bool(true)) {
                return Err(SmokeError("claim denied to smoke-b".into()));
            }
            post(
                "post artifact",
                "artifact",
                "smoke-b reached the hub through relay mode",
            )?;
            require_ok(
                "release claim",
                t.request(
                    "POST",
                    "/v1/claims/release",
                    Some(json!({"claim_key": claim_key, "agent_id": "smoke-b"})),
                ),
            )?;
            wait(&|m| has(m, "smoke-c", "notice", Some("verified")))?;
            post(
                "post confirmation notice",
                "notice",
                "smoke-b confirms relay interop works",
            )?;
        }
        "smoke-c" => {
            wait(&|m| has(m, "smoke-a", "task", None) && has(m, "smoke-b", "artifact", None))?;
            let claims = require_ok(
                "list claims",
                t.request(
                    "GET",
                    &format!(
                        "/v1/claims?thread_id={}&active_only=true",
                        percent_encode(&thread)
                    ),
                    None,
                ),
            )?;
            let holder = claims["result"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["claim_key"] == claim_key.as_str()))
                .map(|c| c["owner_agent_id"].as_str().unwrap_or("?").to_string());
            let state = match holder {
                Some(owner) => format!("held by {owner}"),
                None => "released".to_string(),
            };
            post(
                "post verifier notice",
                "notice",
                &format!(
                    "smoke-c verified shared visibility across direct HTTP and relay mode ({state})"
                ),
            )?;
        }
        other => return Err(SmokeError(format!("unknown role: {other}"))),
    }
    Ok(())
}
