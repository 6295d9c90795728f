//! The request bodies this crate sends to a hub (the client, the smoke
//! agent and `arc mcp` all go through these), one typed shape per
//! endpoint (docs/PROTOCOL.md, "Endpoints"). Optional fields are left
//! out when unset, as the reference `ArcClient` does.

use serde::Serialize;
use serde_json::{Map, Value};

/// `POST /v1/sessions`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Register {
    pub agent_id: String,
    pub replace: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// `POST /v1/messages`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PostMessage {
    pub from_agent: String,
    pub channel: String,
    pub kind: String,
    pub body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_task_id: Option<i64>,
}

/// `POST /v1/channels`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateChannel {
    pub name: String,
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// `POST /v1/claims`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Claim {
    pub owner_agent_id: String,
    pub claim_key: String,
    pub ttl_sec: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_message_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// `POST /v1/claims/refresh`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RefreshClaim {
    pub claim_key: String,
    pub owner_agent_id: String,
    pub ttl_sec: i64,
}

/// `POST /v1/claims/release`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReleaseClaim {
    pub claim_key: String,
    pub agent_id: String,
}

/// `POST /v1/locks` and `POST /v1/locks/refresh`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lock {
    pub agent_id: String,
    pub file_path: String,
    pub ttl_sec: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// `POST /v1/locks/release`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReleaseLock {
    pub agent_id: String,
    pub file_path: String,
}

/// `POST /v1/shutdown`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Shutdown {
    pub delay_sec: i64,
}

/// A body with no fields (`POST /v1/tasks/{id}/complete`,
/// `POST /v1/shutdown/cancel`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Empty {}
