/*!
The file relay (spec §10): the client side that writes request files and
waits for responses. The serving side is added with the relay server.
*/

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::hub::State;

/// How long our own relay client waits beyond the request's own timeout.
pub const CLIENT_MARGIN: Duration = Duration::from_secs(10);

/// The spool-safe form of an agent id: runs of characters outside
/// `[A-Za-z0-9._-]` become `_`; empty becomes `agent`; `.` and `..` become
/// `_` and `__` so no agent can write into the spool root (spec §15 item 34).
pub fn safe_agent_id(agent: &str) -> String {
    let mut out = String::new();
    let mut in_run = false;
    for c in agent.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    match out.as_str() {
        "" => "agent".into(),
        "." => "_".into(),
        ".." => "__".into(),
        _ => out,
    }
}

/// A relay client for one agent (the reference `FileRelayClient`).
#[derive(Debug, Clone)]
pub struct RelayClient {
    pub spool: PathBuf,
    pub agent_id: String,
    pub poll_interval: Duration,
}

impl RelayClient {
    pub fn new(spool: &Path, agent_id: &str) -> RelayClient {
        RelayClient {
            spool: spool.to_path_buf(),
            agent_id: agent_id.to_string(),
            poll_interval: Duration::from_millis(5),
        }
    }

    /// Writes a request file and waits up to `timeout` (plus a margin) for
    /// its response. Transport failures come back as envelopes with status
    /// 597 (spool write), 598 (timeout) or 500 (invalid response), exactly
    /// as the reference client synthesises them.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let safe = safe_agent_id(&self.agent_id);
        let request_id = crate::ids::uuid4_hex();
        let req_dir = self.spool.join("requests").join(&safe);
        let resp_dir = self.spool.join("responses").join(&safe);
        let envelope = json!({
            "request_id": request_id,
            "agent_id": self.agent_id,
            "method": method.to_uppercase(),
            "path": path,
            "body": body,
            "created_at": crate::time::now(),
        });
        let written = std::fs::create_dir_all(&req_dir)
            .and_then(|_| std::fs::create_dir_all(&resp_dir))
            .map_err(Error::from)
            .and_then(|_| {
                let text = serde_json::to_string_pretty(&envelope)?;
                crate::paths::write_atomic(
                    &req_dir.join(format!("{request_id}.json")),
                    text.as_bytes(),
                )
            });
        if let Err(e) = written {
            return Ok(failure(
                &request_id,
                597,
                &format!("relay spool write failed: {e}"),
                None,
            ));
        }
        let resp_path = resp_dir.join(format!("{request_id}.json"));
        let deadline = Instant::now() + timeout + CLIENT_MARGIN;
        let mut last_bad = None;
        loop {
            match std::fs::read(&resp_path) {
                Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v @ Value::Object(_)) => return Ok(v),
                    Ok(other) => {
                        return Ok(failure(
                            &request_id,
                            500,
                            "relay produced invalid response payload",
                            Some(other),
                        ));
                    }
                    // A partial or unreadable file: retry until the deadline.
                    Err(e) => last_bad = Some(e.to_string()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => last_bad = Some(e.to_string()),
            }
            if Instant::now() >= deadline {
                let msg = match last_bad {
                    Some(detail) => {
                        format!("relay timed out waiting for response (last read error: {detail})")
                    }
                    None => "relay timed out waiting for response".to_string(),
                };
                return Ok(failure(&request_id, 598, &msg, None));
            }
            crate::notify::pause(self.poll_interval);
        }
    }
}

fn failure(request_id: &str, status: u16, error: &str, body: Option<Value>) -> Value {
    let mut v = json!({
        "request_id": request_id,
        "ok": false,
        "status": status,
        "completed_at": crate::time::now(),
        "error": error,
    });
    if let Some(b) = body {
        v["body"] = b;
    }
    v
}

/// A running relay thread.
pub struct RelayHandle;

impl RelayHandle {
    /// Starts the hub's built-in relay.
    pub fn start_builtin(_state: Arc<State>) -> Result<RelayHandle> {
        Err(Error::Config("relay: not available in this build".into()))
    }

    /// Stops the relay and waits for in-flight requests.
    pub fn stop(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_ids_match_the_reference_and_fix_dots() {
        assert_eq!(safe_agent_id("relay agent/1"), "relay_agent_1");
        assert_eq!(safe_agent_id("  ok.name-1_x "), "ok.name-1_x");
        assert_eq!(safe_agent_id("a//b"), "a_b");
        assert_eq!(safe_agent_id("é"), "_");
        assert_eq!(safe_agent_id(""), "agent");
        assert_eq!(safe_agent_id("."), "_");
        assert_eq!(safe_agent_id(".."), "__");
    }
}
