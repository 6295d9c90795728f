/*!
The JSON shapes of the v1 protocol (docs/PROTOCOL.md, "Data model",
"Endpoints"): answers here, request bodies in [`requests`], and the
Python-style formatter in [`pyjson`], the text hooks show in
[`headers`], and the depth and size limits any
JSON text is checked against before it is parsed in [`shape`].

Field order follows the reference's output. These are the only serde
derives in the crate: the store fills them from rows, the API serialises
them, and the client deserialises them. Deserialisation is lenient
(`#[serde(default)]`) so the client also reads answers from other hubs.
*/

pub mod headers;
pub mod pyjson;
pub mod requests;
pub mod shape;

pub use pyjson::to_python_json;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The crate's version, reported by `--version` and hub-info.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `implementation` name in hub-info.
pub const IMPLEMENTATION: &str = "arc-rs";

/// The eight message kinds, sorted (hub-info lists them in this order).
pub const MESSAGE_KINDS: [&str; 8] = [
    "artifact",
    "chat",
    "claim",
    "notice",
    "release",
    "task",
    "task_request",
    "task_result",
];

/// A reservation's lease when `ttl_sec` is not given, and the shortest allowed.
pub const RESERVATION_TTL_SEC: i64 = 3600;
pub const RESERVATION_MIN_TTL_SEC: i64 = 5;

/// The five attachment types.
pub const ATTACHMENT_TYPES: [&str; 5] = ["text", "json", "code", "file_ref", "diff_ref"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Channel {
    pub name: String,
    pub created_at: String,
    pub created_by: Option<String>,
    pub metadata: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Message {
    pub id: i64,
    pub ts: String,
    pub from_agent: String,
    pub to_agent: Option<String>,
    pub channel: String,
    pub kind: String,
    pub body: String,
    pub attachments: Vec<Value>,
    pub reply_to: Option<i64>,
    pub thread_id: Option<String>,
    pub metadata: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Session {
    pub session_id: String,
    pub agent_id: String,
    pub display_name: String,
    pub capabilities: Value,
    pub metadata: Value,
    pub created_at: String,
    pub last_seen: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Claim {
    pub claim_key: String,
    pub thread_id: Option<String>,
    pub task_message_id: Option<i64>,
    pub owner_agent_id: String,
    pub claimed_at: String,
    pub expires_at: String,
    pub released_at: Option<String>,
    pub metadata: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Lock {
    pub file_path: String,
    pub agent_id: String,
    pub locked_at: String,
    pub expires_at: String,
    pub released_at: Option<String>,
    pub metadata: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Task {
    pub task_id: i64,
    pub parent_task_id: Option<i64>,
    pub channel: String,
    pub thread_id: Option<String>,
    pub status: String,
    pub created_at: String,
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ThreadSummary {
    pub thread_id: String,
    pub channel: Option<String>,
    pub root_task_id: Option<i64>,
    pub latest_message_id: Option<i64>,
    pub latest_message_ts: Option<String>,
    pub latest_artifact_id: Option<i64>,
    pub message_count: i64,
    pub total_task_count: i64,
    pub open_task_count: i64,
    pub active_claim_count: i64,
    pub active_lock_count: i64,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ThreadDetail {
    pub thread: ThreadSummary,
    pub messages: Vec<Message>,
    pub tasks: Vec<Task>,
    pub claims: Vec<Claim>,
    pub locks: Vec<Lock>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Bootstrap {
    pub agent_id: String,
    pub session: Option<Session>,
    pub latest_visible_id: i64,
    pub live_agents: Vec<Session>,
    pub default_channel: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HubInfo {
    pub storage_path: String,
    pub instance_id: String,
    pub journal_mode: String,
    pub wal_mode: bool,
    pub default_channel: String,
    pub max_body_chars: i64,
    pub max_attachment_chars: i64,
    pub max_attachments: i64,
    pub allow_remote: bool,
    pub protocol_version: String,
    pub implementation: String,
    pub implementation_version: String,
    pub features: Vec<String>,
    pub message_kinds: Vec<String>,
    /// Extension: sessions expire after this many quiet seconds, so a
    /// client can choose its keepalive interval.
    #[serde(default)]
    pub presence_ttl_sec: i64,
    /// Extension: the hub's process id, so `arc stop` can check that a
    /// pidfile names this hub before it ever signals that pid.
    #[serde(default)]
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ShutdownStatus {
    pub remaining_sec: i64,
    pub delay_sec: i64,
}

/// The success envelope `{"ok": true, "result": ...}`. `acquired` and
/// `parent_completed` appear only where the protocol defines them.
#[derive(Debug, Serialize)]
pub struct Envelope<T: Serialize> {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acquired: Option<bool>,
    pub result: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_completed: Option<bool>,
}

impl<T: Serialize> Envelope<T> {
    pub fn new(result: T) -> Envelope<T> {
        Envelope {
            ok: true,
            acquired: None,
            result,
            parent_completed: None,
        }
    }
}

/// The error envelope `{"ok": false, "error": "..."}`.
pub fn error_body(message: &str) -> String {
    serde_json::json!({"ok": false, "error": message}).to_string()
}

/// A relay request file (docs/PROTOCOL.md, "Request envelope").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayRequest {
    pub request_id: String,
    pub agent_id: String,
    pub method: String,
    pub path: String,
    pub body: Option<Value>,
    pub created_at: String,
}

/// A relay response file (docs/PROTOCOL.md, "Response envelope"), in the reference's key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayResponse {
    pub request_id: String,
    pub ok: bool,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub body: Option<Value>,
    pub completed_at: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// A relay response file as the relay writes it: [`RelayResponse`]'s
/// fields, with the body carried as the JSON text it arrived as (never
/// parsed into a tree and printed again; docs/PROTOCOL.md, "Response
/// envelope").
#[derive(Debug, Serialize)]
pub struct RelayAnswer<'a> {
    pub request_id: &'a str,
    pub ok: bool,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<&'a serde_json::value::RawValue>,
    pub completed_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the relay reads from a request file before claiming it: the
/// `created_at` it orders by. Everything else is skipped unparsed.
#[derive(Debug, Deserialize)]
pub struct RelayOrderKey<'a> {
    #[serde(borrow, default)]
    pub created_at: Option<&'a serde_json::value::RawValue>,
}

/// Result of `arc ensure` (docs/PROTOCOL.md, "ensure"), in the reference's key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsureResult {
    pub running: bool,
    pub started: bool,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Extension: what was noticed on the way (pidfiles not trusted).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
}

/// Result of `arc stop` (docs/PROTOCOL.md, "stop").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopResult {
    pub stopped: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Extension: what was noticed on the way (a stale pidfile).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
}

/// Result of `arc reset` (docs/PROTOCOL.md, "reset").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResetResult {
    pub reset: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub removed: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}
