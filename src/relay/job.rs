//! Serving one claimed request: reading and checking its envelope,
//! forwarding it to the hub, writing the answer atomically; and retention
//! of old `.work` and response files.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::scan::{Spool, file_stem, has_ext};
use super::{RelayConfig, Shared};
use crate::client::http_request;
use crate::error::Error;
use crate::spool::clamp_long_poll;
use crate::sys::dir::{Kind, SpoolDir, is_refusal};
use crate::wire::{RelayRequest, RelayResponse};

/// One claimed request, served on a pool thread.
pub(super) struct Job {
    pub(super) cfg: RelayConfig,
    pub(super) agent: String,
    /// The agent's request directory, as verified when it was claimed.
    pub(super) dir: Arc<SpoolDir>,
    pub(super) work: String,
    pub(super) responses: Arc<SpoolDir>,
    /// `responses/<safe>`, verified when the request was claimed.
    pub(super) answers: SpoolDir,
    pub(super) safe: String,
    pub(super) shared: Arc<Shared>,
}

impl Job {
    /// Serves the claimed request file and writes its response.
    pub(super) fn run(&self) {
        let request_id = file_stem(&self.work);
        let envelope = self
            .read()
            .and_then(|bytes| parse_envelope(&bytes, &request_id, &self.agent));
        let response = match envelope {
            Err(reason) => RelayResponse {
                request_id: request_id.clone(),
                ok: false,
                status: 400,
                body: None,
                completed_at: crate::time::now(),
                error: Some(format!("invalid relay request: {reason}")),
            },
            Ok(req) => forward(&self.cfg, &req),
        };
        let text = crate::wire::to_python_json(&response, true);
        let name = format!("{request_id}.json");
        // The answer goes only where the agent's response directory still
        // is: it may have been moved while the request was served.
        if !self.answers.is_at(&self.responses, &self.safe) {
            let rel = format!("responses/{}", self.safe);
            self.shared
                .refuse(&rel, "was moved while a request was served");
            return;
        }
        if let Err(e) = self.answers.write_atomic(&name, text.as_bytes()) {
            self.shared
                .fail(&format!("responses/{}/{name}", self.safe), &e);
        }
    }

    /// The claimed file's bytes, bounded by the configured maximum; the
    /// error is the reason the 400 response gives.
    fn read(&self) -> std::result::Result<Vec<u8>, String> {
        let max = self.cfg.max_request_bytes;
        self.dir.read_regular(&self.work, max).map_err(|e| {
            if e.kind() == std::io::ErrorKind::FileTooLarge {
                return format!("request file exceeds {max} bytes");
            }
            if is_refusal(&e) {
                let rel = format!("requests/{}/{}", self.agent, self.work);
                self.shared.refuse(&rel, &e.to_string());
            }
            e.to_string()
        })
    }
}

/// Validates a request envelope (spec §10.3 step 3).
pub(super) fn parse_envelope(
    bytes: &[u8],
    stem: &str,
    agent_dir: &str,
) -> std::result::Result<RelayRequest, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let Value::Object(env) = v else {
        return Err("request envelope must be a JSON object".into());
    };
    let text = |k: &str| -> Option<String> {
        env.get(k)
            .and_then(crate::input::scalar_string)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let request_id = text("request_id").unwrap_or_else(|| stem.to_string());
    let agent_id = text("agent_id").unwrap_or_else(|| agent_dir.to_string());
    let method = text("method")
        .map(|m| m.to_uppercase())
        .ok_or("request envelope missing method")?;
    let path = env
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !path.starts_with('/') {
        return Err("request path must start with '/'".into());
    }
    // A stream never ends, so it would hold this agent's queue forever.
    if path.split('?').next() == Some("/v1/stream") {
        return Err("event streams cannot be relayed; long-poll /v1/events instead".into());
    }
    let body = match env.get("body") {
        None | Some(Value::Null) => None,
        Some(b @ Value::Object(_)) => Some(b.clone()),
        Some(_) => return Err("request body must be a JSON object when provided".into()),
    };
    Ok(RelayRequest {
        request_id,
        agent_id,
        method,
        path,
        body,
        created_at: text("created_at").unwrap_or_default(),
    })
}

pub(super) fn forward(cfg: &RelayConfig, req: &RelayRequest) -> RelayResponse {
    let (path, wait) = clamp_long_poll(&req.path, cfg.max_wait_sec);
    let timeout = cfg
        .request_timeout
        .max(Duration::from_secs_f64(wait) + Duration::from_secs(10));
    let body_bytes = req.body.as_ref().map(|b| b.to_string().into_bytes());
    let (status, body) = match http_request(
        &cfg.base_url,
        &req.method,
        &path,
        body_bytes.as_deref(),
        &[],
        timeout,
    ) {
        Ok(r) => {
            let text = r.text();
            let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
            (r.status, body)
        }
        Err(e @ Error::Transport(_)) => (599, json!({"ok": false, "error": e.detail()})),
        Err(e) => (
            599,
            json!({"ok": false, "error": format!("connection error: {e}")}),
        ),
    };
    let (ok, error) = match &body {
        Value::Object(m) => (
            m.get("ok").is_some_and(|v| v.as_bool().unwrap_or(false)),
            m.get("error").and_then(Value::as_str).map(str::to_string),
        ),
        _ if (200..300).contains(&status) => (true, None),
        other => (
            false,
            Some(match other {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            }),
        ),
    };
    RelayResponse {
        request_id: req.request_id.clone(),
        ok,
        status,
        body: Some(body),
        completed_at: crate::time::now(),
        error: error.filter(|e| !e.is_empty()),
    }
}

/// Deletes `.work` and response files older than `retention`: regular
/// files only, in real agent directories inside the spool only, ignoring
/// failures (some mounts refuse deletes; the spool stays correct anyway).
pub(super) fn cleanup(spool: &Spool, retention: Duration, shared: &Shared) {
    let now = SystemTime::now();
    let subs = [
        ("requests", &spool.requests, "work"),
        ("responses", &spool.responses, "json"),
    ];
    for (sub, dir, ext) in subs {
        let Some(dir) = dir else { continue };
        let Ok(agents) = dir.list(&|_| true) else {
            continue;
        };
        if sub == "responses" {
            let names = agents.iter().map(|e| e.name.clone()).collect();
            shared.forget_missing(sub, &names, None);
        }
        for a in agents {
            let rel = format!("{sub}/{}", a.name);
            if a.kind != Kind::Dir {
                shared.refuse(&rel, a.kind.refusal());
                continue;
            }
            let agent = match dir.open_subdir(&a.name) {
                Ok(d) => d,
                Err(e) => {
                    shared.fail(&rel, &e);
                    continue;
                }
            };
            let Ok(files) = agent.list(&|n| has_ext(n, ext)) else {
                continue;
            };
            let names = files.iter().map(|e| e.name.clone()).collect();
            shared.forget_missing(&rel, &names, Some(ext));
            for f in files {
                if f.kind != Kind::File {
                    shared.refuse(&format!("{rel}/{}", f.name), f.kind.refusal());
                } else if now.duration_since(f.mtime).is_ok_and(|age| age > retention) {
                    let _ = agent.remove_regular(&f.name);
                }
            }
        }
    }
}
