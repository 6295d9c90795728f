//! The coordination calls of `Client` (docs/PROTOCOL.md, "Reservations",
//! "Task DAG"): reservations, their check, claim-next and handoff. Each
//! answers the hub's whole envelope, so a 409's `conflicts` reach the
//! caller.

use std::time::Duration;

use serde_json::{Value, json};

use super::Client;
use crate::error::Result;
use crate::input::percent_encode;

/// What a reservation asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reserve {
    pub paths: Vec<String>,
    pub shared: bool,
    pub ttl_sec: Option<f64>,
    pub task_id: Option<i64>,
    pub claim_key: Option<String>,
    pub reason: Option<String>,
}

impl Client {
    /// `POST /v1/reservations`: the status and envelope (201, or 409 with
    /// `conflicts`).
    pub fn reserve(&self, r: &Reserve) -> Result<(u16, Value)> {
        let mut body = json!({
            "agent_id": self.agent_id,
            "paths": r.paths,
            "mode": if r.shared { "shared" } else { "exclusive" },
        });
        if let Some(t) = r.ttl_sec {
            body["ttl_sec"] = json!(t);
        }
        if let Some(t) = r.task_id {
            body["task_id"] = json!(t);
        }
        if let Some(k) = &r.claim_key {
            body["claim_key"] = json!(k);
        }
        if let Some(why) = &r.reason {
            body["reason"] = json!(why);
        }
        self.answer("POST", "/v1/reservations", Some(&body), self.timeout)
    }

    /// `POST /v1/reservations/{id}/release`.
    pub fn release_reservation(&self, id: &str) -> Result<(u16, Value)> {
        let path = format!("/v1/reservations/{}/release", percent_encode(id));
        let body = json!({"agent_id": self.agent_id});
        self.answer("POST", &path, Some(&body), self.timeout)
    }

    /// `POST /v1/reservations/{id}/renew`.
    pub fn renew_reservation(&self, id: &str, ttl_sec: Option<f64>) -> Result<(u16, Value)> {
        let path = format!("/v1/reservations/{}/renew", percent_encode(id));
        let mut body = json!({"agent_id": self.agent_id});
        if let Some(t) = ttl_sec {
            body["ttl_sec"] = json!(t);
        }
        self.answer("POST", &path, Some(&body), self.timeout)
    }

    /// `GET /v1/reservations?agent_id=&active_only=`.
    pub fn reservations(&self, agent: Option<&str>, active_only: bool) -> Result<Value> {
        let mut path = format!("/v1/reservations?active_only={}", u8::from(active_only));
        if let Some(a) = agent {
            path.push_str(&format!("&agent_id={}", percent_encode(a)));
        }
        Ok(self.request("GET", &path, None, self.timeout)?["result"].clone())
    }

    /// `GET /v1/reservations/check`: whether this agent may touch `paths`.
    pub fn check_paths(&self, paths: &[String], timeout: Duration) -> Result<Value> {
        let mut path = format!("/v1/reservations/check?agent_id={}", self.q());
        for p in paths {
            path.push_str(&format!("&path={}", percent_encode(p)));
        }
        Ok(self.request("GET", &path, None, timeout)?["result"].clone())
    }

    /// `POST /v1/tasks/next`: waits up to `wait` seconds for a ready task.
    pub fn next_task(&self, channel: Option<&str>, wait: f64) -> Result<(u16, Value)> {
        let mut body = json!({"agent_id": self.agent_id});
        if let Some(c) = channel {
            body["channel"] = json!(c);
        }
        // A relay must get the answer before its forward timeout gives up.
        let wait = match self.transport {
            super::Transport::Relay(_) => wait.min(super::RELAY_MAX_WAIT_SEC),
            _ => wait,
        };
        if wait > 0.0 {
            body["timeout"] = json!(wait);
        }
        let timeout = self
            .timeout
            .max(Duration::from_secs_f64(wait) + Duration::from_secs(5));
        self.answer("POST", "/v1/tasks/next", Some(&body), timeout)
    }

    /// `POST /v1/tasks/{id}/handoff`.
    pub fn handoff(&self, task_id: i64, to: &str, note: Option<&str>) -> Result<(u16, Value)> {
        let path = format!("/v1/tasks/{task_id}/handoff");
        let mut body = json!({"from_agent": self.agent_id, "to_agent": to});
        if let Some(n) = note {
            body["note"] = json!(n);
        }
        self.answer("POST", &path, Some(&body), self.timeout)
    }
}
