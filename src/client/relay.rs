//! The client side of the relay (the reference `FileRelayClient`): it
//! runs inside the sandbox, writes request files in the reference's
//! format, and waits for their answers (docs/PROTOCOL.md, "Relay spool
//! format").
//!
//! Whoever else can write into the spool may plant anything where the
//! answer is expected, so the answer is read the way the hub's relay
//! reads requests (docs/SECURITY.md, "What a client reads"): below the
//! spool root nothing is followed through a symlink, only a regular file
//! is read, without blocking, and at most [`RESPONSE_MAX_BYTES`] of it;
//! its JSON is parsed only within [`ANSWER_LIMITS`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::http::{ANSWER_LIMITS, MAX_RESPONSE_BYTES};
use super::{Reply, first_message_id};
use crate::error::{Error, Result};
use crate::spool::safe_agent_id;
use crate::sys::dir::{SpoolDir, is_refusal};
use crate::wire::RelayRequest;

/// How long our own relay client waits beyond the request's own timeout.
pub const CLIENT_MARGIN: Duration = Duration::from_secs(10);

/// The largest response file read (the HTTP client's body cap).
pub const RESPONSE_MAX_BYTES: u64 = MAX_RESPONSE_BYTES as u64;

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
    /// as the reference client synthesises them; a response that is not a
    /// regular file, is larger than [`RESPONSE_MAX_BYTES`] or beyond
    /// [`ANSWER_LIMITS`] is an invalid response.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Value> {
        Ok(match self.send(method, path, body, timeout)? {
            (_, Reply::Parsed(_, v)) => v,
            (id, Reply::Oversized { why, .. }) => failure(
                &id,
                500,
                &format!("relay produced invalid response payload: {why}"),
                None,
            ),
        })
    }

    /// [`RelayClient::call`], telling an answer beyond [`ANSWER_LIMITS`]
    /// apart (`Reply::Parsed` carries the envelope, with status 0).
    pub(crate) fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Reply> {
        Ok(self.send(method, path, body, timeout)?.1)
    }

    /// Sends one request; its id and what came back.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<(String, Reply)> {
        let request_id = crate::ids::uuid4_hex();
        let envelope = RelayRequest {
            request_id: request_id.clone(),
            agent_id: self.agent_id.clone(),
            method: method.to_uppercase(),
            path: path.to_string(),
            body,
            created_at: crate::time::now(),
        };
        let name = format!("{request_id}.json");
        let text = crate::wire::to_python_json(&envelope, true);
        let (requests, responses) = match self.write_request(&name, text.as_bytes()) {
            Ok(dirs) => dirs,
            Err(e) => {
                let msg = format!("relay spool write failed: {e}");
                let env = failure(&request_id, 597, &msg, None);
                return Ok((request_id, Reply::Parsed(0, env)));
            }
        };
        let mut last_bad = None;
        // The answer is a file another process (the relay) writes; no
        // event of ours announces it, so look every `poll_interval` until
        // the deadline.
        let got = crate::notify::poll_until(timeout + self.margin, self.poll_interval, || {
            read_answer(&responses, &name, &request_id, &mut last_bad)
        });
        let reply = got.unwrap_or_else(|| {
            // A request no relay has taken yet is withdrawn, so a relay that
            // starts later does not carry out what we reported as failed. One
            // already taken (renamed to .work) runs; its answer is orphaned.
            let withdrawn = requests.remove_regular(&name).is_ok();
            let msg = match (last_bad, withdrawn) {
                (Some(detail), _) => {
                    format!("relay timed out waiting for response (last read error: {detail})")
                }
                (None, true) => {
                    "relay timed out waiting for response (no relay took the request; it was withdrawn)"
                        .to_string()
                }
                (None, false) => "relay timed out waiting for response".to_string(),
            };
            Reply::Parsed(0, failure(&request_id, 598, &msg, None))
        });
        Ok((request_id, reply))
    }

    /// Writes the request file `name` into `requests/<agent>/` and returns
    /// `responses/<agent>/`, both reached from the spool root without
    /// following a symlink (the root itself is the operator's path).
    fn write_request(&self, name: &str, bytes: &[u8]) -> Result<(SpoolDir, SpoolDir)> {
        let safe = safe_agent_id(&self.agent_id);
        std::fs::create_dir_all(&self.spool)?;
        let root = SpoolDir::open_root(&self.spool)?;
        let agent_dir = |top: &str| {
            root.open_or_create_subdir(top)
                .and_then(|d| d.open_or_create_subdir(&safe))
                .map_err(|e| Error::Io(with_context(e, &format!("{top}/{safe}"))))
        };
        let requests = agent_dir("requests")?;
        let responses = agent_dir("responses")?;
        requests.write_atomic(name, bytes)?;
        Ok((requests, responses))
    }
}

/// `e`, saying which spool entry it is about.
fn with_context(e: std::io::Error, what: &str) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// One look for the answer `name`: `None` while it is missing or not yet
/// whole (a relay that writes in place), the reply once it is there or is
/// something that can never become an answer.
fn read_answer(
    dir: &SpoolDir,
    name: &str,
    request_id: &str,
    last_bad: &mut Option<String>,
) -> Option<Reply> {
    let refused = |why: String| {
        let msg = format!("relay produced invalid response payload: {name} {why}");
        Some(Reply::Parsed(0, failure(request_id, 500, &msg, None)))
    };
    let bytes = match dir.read_regular(name, RESPONSE_MAX_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        // A symlink, FIFO, device or directory, or a file too big: no
        // relay writes those, and waiting will not change them.
        Err(e) if is_refusal(&e) || e.kind() == std::io::ErrorKind::FileTooLarge => {
            return refused(e.to_string());
        }
        Err(e) => {
            *last_bad = Some(e.to_string());
            return None;
        }
    };
    if let Some(why) = crate::wire::shape::over(&bytes, ANSWER_LIMITS) {
        let first_id = first_message_id(&bytes);
        return Some(Reply::Oversized { why, first_id });
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Some(Reply::Parsed(0, v)),
        Ok(other) => Some(Reply::Parsed(
            0,
            failure(
                request_id,
                500,
                "relay produced invalid response payload",
                Some(other),
            ),
        )),
        // A partial or unreadable file: retry until the deadline.
        Err(e) => {
            *last_bad = Some(e.to_string());
            None
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
