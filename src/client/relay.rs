//! The client side of the relay (the reference `FileRelayClient`): it
//! runs inside the sandbox, writes request files in the reference's
//! format, and waits for their answers (docs/PROTOCOL.md, "Relay spool
//! format").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::spool::safe_agent_id;
use crate::wire::RelayRequest;

/// How long our own relay client waits beyond the request's own timeout.
pub const CLIENT_MARGIN: Duration = Duration::from_secs(10);

/// A relay client for one agent (the reference `FileRelayClient`).
#[derive(Debug, Clone)]
pub struct RelayClient {
    pub spool: PathBuf,
    pub agent_id: String,
    pub poll_interval: Duration,
    /// Extra wait beyond a call's own timeout (relay scheduling, file I/O).
    pub margin: Duration,
}

impl RelayClient {
    pub fn new(spool: &Path, agent_id: &str) -> RelayClient {
        RelayClient {
            spool: spool.to_path_buf(),
            agent_id: agent_id.to_string(),
            poll_interval: Duration::from_millis(5),
            margin: CLIENT_MARGIN,
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
        let envelope = RelayRequest {
            request_id: request_id.clone(),
            agent_id: self.agent_id.clone(),
            method: method.to_uppercase(),
            path: path.to_string(),
            body,
            created_at: crate::time::now(),
        };
        let written = std::fs::create_dir_all(&req_dir)
            .and_then(|_| std::fs::create_dir_all(&resp_dir))
            .map_err(Error::from)
            .and_then(|_| {
                let text = crate::wire::to_python_json(&envelope, true);
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
        let deadline = Instant::now() + timeout + self.margin;
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
