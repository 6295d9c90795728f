//! The state one `arc mcp` process shares between its threads, and the
//! JSON-RPC methods: `initialize`, `ping`, tools and the inbox resource.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::framing::{Framing, frame};
use super::rpc::{
    INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR,
    RESOURCE_NOT_FOUND, RpcError, RpcResult, result_reply,
};
use super::tools::{self, hub_error};
use super::{INBOX_URI, Options, PROTOCOL_VERSIONS};
use crate::client::Client;
use crate::error::Result;
use crate::notify::{Watch, lock};
use crate::wire::shape;

struct Out {
    w: Box<dyn Write + Send>,
    framing: Option<Framing>,
    closed: bool,
}

/// Registration state; the lock is held across the register call so only
/// one thread registers at a time.
pub(super) struct Reg {
    pub(super) session_id: Option<String>,
    /// `arc_poll_messages`' cursor, set at the first registration.
    pub(super) cursor: Option<i64>,
    /// The hub's presence TTL, when it reports one (our extension).
    pub(super) ttl: Option<Duration>,
    pub(super) last_error: Option<String>,
}

pub(super) struct Flags {
    pub(super) stop: bool,
    pub(super) subscribed: bool,
    /// Bumped on every subscribe/unsubscribe, so a push poll started
    /// under an old subscription cannot notify a new one.
    pub(super) generation: u64,
    pub(super) push_cursor: Option<i64>,
}

pub struct Shared {
    pub(super) client: Client,
    pub(super) opts: Options,
    pub(super) reg: Mutex<Reg>,
    /// Stop and subscription state; changes wake the helper threads.
    pub(super) flags: Watch<Flags>,
    out: Mutex<Out>,
    /// Set once the loop ends: nothing more is written after it.
    pub(super) stopped: AtomicBool,
}

/// The id of a request, read without building the rest of it: `None` for
/// a notification (no reply is due), `Some(Null)` when it cannot be read.
pub(super) fn request_id(bytes: &[u8]) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct Head {
        id: Option<Value>,
        method: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Head>(bytes) {
        Ok(Head {
            id: None,
            method: Some(_),
        }) => None,
        Ok(Head { id, .. }) => Some(id.unwrap_or(Value::Null)),
        Err(_) => Some(Value::Null),
    }
}

impl Shared {
    pub(super) fn new(client: Client, opts: Options, w: Box<dyn Write + Send>) -> Arc<Shared> {
        Arc::new(Shared {
            client,
            opts,
            reg: Mutex::new(Reg {
                session_id: None,
                cursor: None,
                ttl: None,
                last_error: None,
            }),
            flags: Watch::new(Flags {
                stop: false,
                subscribed: false,
                generation: 0,
                push_cursor: None,
            }),
            out: Mutex::new(Out {
                w,
                framing: None,
                closed: false,
            }),
            stopped: AtomicBool::new(false),
        })
    }

    pub fn agent(&self) -> &str {
        &self.client.agent_id
    }

    pub(super) fn log(&self, message: &str) {
        if self.opts.log {
            eprintln!("[arc mcp] {message}");
        }
    }

    pub(super) fn set_framing(&self, framing: Framing) {
        lock(&self.out).framing.get_or_insert(framing);
    }

    /// Writes one message; false once the output is closed or broken.
    pub(super) fn send(&self, msg: &Value) -> bool {
        let text = msg.to_string();
        let mut out = lock(&self.out);
        if out.closed || self.stopped.load(Ordering::SeqCst) {
            return false;
        }
        let bytes = frame(&text, out.framing.unwrap_or(Framing::Lines));
        if out.w.write_all(&bytes).and_then(|_| out.w.flush()).is_err() {
            out.closed = true;
            return false;
        }
        true
    }

    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.flags.update(|f| f.stop = true);
    }

    /// Sleeps up to `d`; true if the server is stopping.
    pub(super) fn sleep(&self, d: Duration) -> bool {
        self.flags
            .wait_until(Some(Instant::now() + d), |f| f.stop)
            .stop
    }

    /// Answers one JSON-RPC message (or says why it cannot be read);
    /// `None` for notifications and responses.
    pub(super) fn handle_bytes(&self, bytes: &[u8]) -> Option<Value> {
        if let Some(why) = shape::over(bytes, shape::LIMITS) {
            let message = format!("parse error: message {why}");
            return Some(RpcError::new(PARSE_ERROR, message).reply(Value::Null));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Err(e) => {
                Some(RpcError::new(PARSE_ERROR, format!("parse error: {e}")).reply(Value::Null))
            }
            Ok(Value::Object(m)) => self.handle_object(m),
            Ok(Value::Array(_)) => Some(
                RpcError::new(
                    INVALID_REQUEST,
                    "invalid request: batches are not supported",
                )
                .reply(Value::Null),
            ),
            Ok(_) => Some(
                RpcError::new(INVALID_REQUEST, "invalid request: expected a JSON object")
                    .reply(Value::Null),
            ),
        }
    }

    /// The cursor of `arc_poll_messages`.
    pub(super) fn poll_cursor(&self) -> i64 {
        lock(&self.reg).cursor.unwrap_or(0)
    }

    pub(super) fn advance_poll_cursor(&self, to: i64) {
        let mut reg = lock(&self.reg);
        reg.cursor = Some(reg.cursor.unwrap_or(0).max(to));
    }

    fn handle_object(&self, mut m: Map<String, Value>) -> Option<Value> {
        let id = match m.remove("id") {
            None => None,
            Some(id @ (Value::String(_) | Value::Number(_))) => Some(id),
            Some(_) => {
                return Some(
                    RpcError::new(
                        INVALID_REQUEST,
                        "invalid request: id must be a string or a number",
                    )
                    .reply(Value::Null),
                );
            }
        };
        let invalid = |message: &str| {
            id.clone().map(|id| {
                RpcError::new(INVALID_REQUEST, format!("invalid request: {message}")).reply(id)
            })
        };
        if m.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return invalid("jsonrpc must be \"2.0\"");
        }
        let method = match m.remove("method") {
            Some(Value::String(s)) => s,
            // A response to a request of ours; we send none.
            None if m.contains_key("result") || m.contains_key("error") => return None,
            _ => return invalid("method must be a string"),
        };
        let params = match m.remove("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p,
            Some(_) => {
                return id.map(|id| RpcError::invalid_params("params must be an object").reply(id));
            }
        };
        // Notifications (initialized, cancelled, ...) need no action: the
        // loop is sequential, so there is nothing in flight to cancel.
        let id = id?;
        match catch_unwind(AssertUnwindSafe(|| self.dispatch(&method, &params))) {
            Ok(Ok(result)) => Some(result_reply(id, result)),
            Ok(Err(e)) => Some(e.reply(id)),
            Err(_) => Some(RpcError::new(INTERNAL_ERROR, "internal error").reply(id)),
        }
    }

    fn dispatch(&self, method: &str, params: &Map<String, Value>) -> RpcResult {
        match method {
            "initialize" => Ok(self.initialize(params)),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": tools::tools()})),
            "tools/call" => self.tools_call(params),
            "resources/list" => Ok(json!({"resources": [{
                "uri": INBOX_URI,
                "name": "inbox",
                "title": format!("Arc feed of {}", self.agent()),
                "description": "Recent messages visible to this agent (channels and its DMs, not its own), oldest first. Subscribe to be notified of new ones.",
                "mimeType": "application/json",
            }]})),
            "resources/templates/list" => Ok(json!({"resourceTemplates": []})),
            "resources/read" => {
                inbox_uri(params)?;
                let feed = self
                    .feed()
                    .map_err(|e| RpcError::new(INTERNAL_ERROR, hub_error(e)))?;
                Ok(json!({"contents": [{
                    "uri": INBOX_URI,
                    "mimeType": "application/json",
                    "text": feed.to_string(),
                }]}))
            }
            "resources/subscribe" => {
                inbox_uri(params)?;
                let already = self.flags.lock().subscribed;
                if !already {
                    // Start from the newest visible message; if the hub is
                    // down the push thread finds the start itself.
                    let start = self.client.clone().bootstrap().ok();
                    self.flags.update(|f| {
                        f.subscribed = true;
                        f.generation += 1;
                        f.push_cursor = start.map(|b| b.latest_visible_id);
                    });
                }
                Ok(json!({}))
            }
            "resources/unsubscribe" => {
                inbox_uri(params)?;
                self.flags.update(|f| {
                    f.subscribed = false;
                    f.generation += 1;
                    f.push_cursor = None;
                });
                Ok(json!({}))
            }
            _ => Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("method not found: {method}"),
            )),
        }
    }

    fn initialize(&self, params: &Map<String, Value>) -> Value {
        let asked = params.get("protocolVersion").and_then(Value::as_str);
        let version = match asked {
            Some(v) if PROTOCOL_VERSIONS.contains(&v) => v,
            _ => PROTOCOL_VERSIONS[0],
        };
        let client = params.get("clientInfo");
        self.log(&format!(
            "initialize from {} {} (protocol {})",
            client
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("?"),
            client
                .and_then(|c| c.get("version"))
                .and_then(Value::as_str)
                .unwrap_or("?"),
            asked.unwrap_or("?"),
        ));
        json!({
            "protocolVersion": version,
            "capabilities": {"tools": {}, "resources": {"subscribe": true}},
            "serverInfo": {"name": "arc-hub", "title": "Arc", "version": crate::wire::VERSION},
            "instructions": format!(
                "You are agent {:?} on an Arc coordination hub. Read new messages with arc_poll_messages (or subscribe to {INBOX_URI}); post with arc_post_message; claim work and lock files before editing.",
                self.agent()
            ),
        })
    }

    fn tools_call(&self, params: &Map<String, Value>) -> RpcResult {
        let Some(Value::String(name)) = params.get("name") else {
            return Err(RpcError::invalid_params("tools/call needs a string name"));
        };
        let tool = tools::find(name)
            .ok_or_else(|| RpcError::new(INVALID_PARAMS, format!("unknown tool: {name}")))?;
        let empty = Map::new();
        let args = match params.get("arguments") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(a)) => a,
            Some(_) => return Err(RpcError::invalid_params("arguments must be an object")),
        };
        let (text, is_error) = match tool.call(self, args) {
            Ok(v) => (v.to_string(), false),
            Err(text) => (text, true),
        };
        Ok(json!({"content": [{"type": "text", "text": text}], "isError": is_error}))
    }

    /// Registers lazily; a failure is a tool error.
    pub(super) fn session(&self) -> std::result::Result<(), String> {
        self.ensure_session().map_err(hub_error)
    }

    /// The inbox resource: the newest visible messages among the last 200
    /// ids (at most 50), excluding the agent's own.
    fn feed(&self) -> Result<Value> {
        let mut c = self.client.clone();
        let latest = c.bootstrap()?.latest_visible_id;
        c.cursor = (latest - 200).max(0);
        let msgs = c.poll(0.0, None, None, true, 200)?;
        let skip = msgs.len().saturating_sub(50);
        Ok(json!({
            "agent_id": self.agent(),
            "latest_visible_id": latest,
            "messages": msgs[skip..],
        }))
    }
}

fn inbox_uri(params: &Map<String, Value>) -> std::result::Result<(), RpcError> {
    match params.get("uri").and_then(Value::as_str) {
        Some(INBOX_URI) => Ok(()),
        Some(other) => Err(RpcError::new(
            RESOURCE_NOT_FOUND,
            format!("resource not found: {other}"),
        )),
        None => Err(RpcError::invalid_params("uri is required")),
    }
}
