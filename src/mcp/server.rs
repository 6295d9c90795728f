//! The state one `arc mcp` process shares between its threads, and the
//! JSON-RPC methods of both eras: the legacy handshake (`initialize`,
//! `ping`, `logging/setLevel`, `resources/subscribe`), the modern
//! stateless requests (`server/discover`, `subscriptions/listen`, results
//! with `resultType` and cache hints), and what both share (tools and the
//! inbox resource). Which era a request belongs to is decided per request
//! by [`era::declared`].

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::INBOX_URI;
use super::Options;
use super::era::{self, Declared, Modern};
use super::framing::{Framing, frame};
use super::profile::{find_in, tools_for};
use super::rpc::{
    INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR,
    RESOURCE_NOT_FOUND, RpcError, RpcResult, result_reply,
};
use super::tools::hub_error;
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

/// An open `subscriptions/listen` (modern era): its request id, which
/// tags every notification it gets, and whether it asked for the inbox.
pub(super) struct Listen {
    pub(super) id: Value,
    pub(super) inbox: bool,
}

pub(super) struct Flags {
    pub(super) stop: bool,
    /// A legacy `resources/subscribe` to the inbox is in force.
    pub(super) subscribed: bool,
    /// Open modern subscriptions, in the order they were opened.
    pub(super) listens: Vec<Listen>,
    /// Bumped on every subscription change, so a push poll started under
    /// old subscriptions cannot notify new ones with what it saw before.
    pub(super) generation: u64,
    pub(super) push_cursor: Option<i64>,
    /// Claude Code channel notifications are on (the operator said so, or
    /// the client declared `experimental["claude/channel"]`).
    pub(super) channel: bool,
}

impl Flags {
    /// Whether anyone wants `notifications/resources/updated` for the inbox.
    pub(super) fn inbox_wanted(&self) -> bool {
        self.subscribed || self.listens.iter().any(|l| l.inbox)
    }
}

pub struct Shared {
    pub(super) client: Client,
    pub(super) opts: Options,
    pub(super) reg: Mutex<Reg>,
    /// The version `initialize` fixed (legacy era); `None` until then.
    pub(super) handshake: Mutex<Option<&'static str>>,
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

/// The log levels `logging/setLevel` accepts (RFC 5424, as MCP names them).
const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

impl Shared {
    pub(super) fn new(client: Client, opts: Options, w: Box<dyn Write + Send>) -> Arc<Shared> {
        let channel = opts.claude_channel;
        Arc::new(Shared {
            client,
            opts,
            reg: Mutex::new(Reg {
                session_id: None,
                cursor: None,
                ttl: None,
                last_error: None,
            }),
            handshake: Mutex::new(None),
            flags: Watch::new(Flags {
                stop: false,
                subscribed: false,
                listens: Vec::new(),
                generation: 0,
                push_cursor: None,
                channel,
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
        if out.closed || self.stopping() {
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

    pub(super) fn stopping(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`; true if the server is stopping.
    pub(super) fn sleep(&self, d: Duration) -> bool {
        self.flags
            .wait_until(Some(Instant::now() + d), |f| f.stop)
            .stop
    }

    /// The version `initialize` fixed, if it ran.
    pub(super) fn handshake(&self) -> Option<&'static str> {
        *lock(&self.handshake)
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
            Ok(Value::Array(items)) => self.handle_batch(items),
            Ok(_) => Some(
                RpcError::new(INVALID_REQUEST, "invalid request: expected a JSON object")
                    .reply(Value::Null),
            ),
        }
    }

    /// A JSON-RPC batch. MCP 2025-03-26 required servers to accept them;
    /// 2025-06-18 removed them and 2026-07-28 has none, so only a process
    /// initialised at 2025-03-26 gets its batch answered (one array of
    /// replies, none for notifications).
    fn handle_batch(&self, items: Vec<Value>) -> Option<Value> {
        let refuse =
            |message: String| Some(RpcError::new(INVALID_REQUEST, message).reply(Value::Null));
        if self.handshake() != Some(era::BATCH_VERSION) {
            return refuse(format!(
                "invalid request: JSON-RPC batches are not supported{} (MCP 2025-06-18 removed them and 2026-07-28 has none; only a session initialized at {} may send them)",
                match self.handshake() {
                    Some(v) => format!(" at protocol version {v}"),
                    None => String::new(),
                },
                era::BATCH_VERSION
            ));
        }
        if items.is_empty() {
            return refuse("invalid request: empty batch".into());
        }
        let mut replies = Vec::new();
        for item in items {
            let reply = match item {
                Value::Object(m)
                    if m.get("method").and_then(Value::as_str) == Some("initialize") =>
                {
                    Some(
                        RpcError::new(
                            INVALID_REQUEST,
                            "invalid request: initialize must not be part of a batch",
                        )
                        .reply(m.get("id").cloned().unwrap_or(Value::Null)),
                    )
                }
                Value::Object(m) => self.handle_object(m),
                _ => Some(
                    RpcError::new(INVALID_REQUEST, "invalid request: expected a JSON object")
                        .reply(Value::Null),
                ),
            };
            replies.extend(reply);
        }
        (!replies.is_empty()).then_some(Value::Array(replies))
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
        let Some(id) = id else {
            self.notification(&method, &params);
            return None;
        };
        match catch_unwind(AssertUnwindSafe(|| self.request(&id, &method, &params))) {
            Ok(reply) => reply,
            Err(_) => Some(RpcError::new(INTERNAL_ERROR, "internal error").reply(id)),
        }
    }

    /// Notifications need no answer. `notifications/cancelled` ends an open
    /// `subscriptions/listen`; anything else in flight cannot be cancelled
    /// (the loop is sequential), and `initialized` and the rest need nothing.
    fn notification(&self, method: &str, params: &Map<String, Value>) {
        if method == "notifications/cancelled" {
            if let Some(rid) = params.get("requestId") {
                self.change_subscriptions(false, |f| f.listens.retain(|l| &l.id != rid));
            }
        }
    }

    /// One request, in the era its `_meta` (or the handshake) puts it in.
    /// `None` when the answer comes later (`subscriptions/listen`).
    fn request(&self, id: &Value, method: &str, params: &Map<String, Value>) -> Option<Value> {
        // `initialize` is the legacy handshake whatever else it carries.
        if method == "initialize" {
            return Some(result_reply(id.clone(), self.initialize(params)));
        }
        let declared = match era::declared(params) {
            Ok(d) => d,
            Err(e) => return Some(e.reply(id.clone())),
        };
        let result = match &declared {
            Declared::Modern(m) => {
                if method == "subscriptions/listen" {
                    self.enable_channel_if_asked(m);
                    return self.listen(id, params);
                }
                self.modern(method, params, m)
            }
            Declared::Nothing | Declared::Legacy(_) => self.legacy(method, params, &declared),
        };
        Some(match result {
            Ok(v) => result_reply(id.clone(), v),
            Err(e) => e.reply(id.clone()),
        })
    }

    /// A request of the handshake era: served once `initialize` has run
    /// (or, like `ping`, before it too).
    fn legacy(&self, method: &str, params: &Map<String, Value>, declared: &Declared) -> RpcResult {
        if self.handshake().is_none() && method != "ping" {
            if !era::known(method) {
                return Err(not_found(method));
            }
            return Err(match declared {
                Declared::Legacy(v) => RpcError::invalid_params(format!(
                    "protocol version {v} needs the initialize handshake before {method}"
                )),
                _ => RpcError::invalid_params(format!(
                    "{method} before any handshake: send initialize first (MCP {} to {}), or give every request _meta {{\"{}\": \"{}\", \"{}\": {{...}}}} (MCP {})",
                    era::LEGACY_VERSIONS[era::LEGACY_VERSIONS.len() - 1],
                    era::LEGACY_VERSIONS[0],
                    era::META_PROTOCOL_VERSION,
                    era::MODERN_VERSIONS[0],
                    era::META_CLIENT_CAPABILITIES,
                    era::MODERN_VERSIONS[0],
                )),
            });
        }
        if !era::LEGACY_METHODS.contains(&method) {
            if era::MODERN_METHODS.contains(&method) {
                return Err(RpcError::invalid_params(format!(
                    "{method} is a {} method: its params._meta must carry \"{}\" and \"{}\"",
                    era::MODERN_VERSIONS[0],
                    era::META_PROTOCOL_VERSION,
                    era::META_CLIENT_CAPABILITIES
                )));
            }
            return Err(not_found(method));
        }
        self.dispatch(method, params, false)
    }

    /// Whether the modern era has `method`.
    fn modern_method(&self, method: &str) -> std::result::Result<(), RpcError> {
        if era::REMOVED_IN_MODERN.contains(&method) {
            return Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!(
                    "method not found: {method} (removed in MCP {})",
                    era::MODERN_VERSIONS[0]
                ),
            ));
        }
        if !era::MODERN_METHODS.contains(&method) {
            return Err(not_found(method));
        }
        Ok(())
    }

    /// A stateless request of the 2026-07-28 era.
    fn modern(&self, method: &str, params: &Map<String, Value>, m: &Modern) -> RpcResult {
        self.modern_method(method)?;
        self.enable_channel_if_asked(m);
        let v = self.dispatch(method, params, true).map_err(|mut e| {
            // 2026-07-28 retired -32002: an unknown resource is -32602.
            if e.code == RESOURCE_NOT_FOUND {
                e.code = INVALID_PARAMS;
            }
            e
        })?;
        Ok(self.modern_result(method, v))
    }

    /// What every 2026-07-28 result carries: `resultType`, our identity in
    /// `_meta`, and cache hints where the spec requires them.
    fn modern_result(&self, method: &str, v: Value) -> Value {
        let Value::Object(mut o) = v else {
            return v;
        };
        o.entry("resultType").or_insert_with(|| json!("complete"));
        let meta = o.entry("_meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.entry(era::META_SERVER_INFO)
                .or_insert_with(server_info);
        }
        if let Some(ttl) = era::cache_ttl_ms(method) {
            o.entry("ttlMs").or_insert_with(|| json!(ttl));
            // Ours: the answers name this agent and its feed.
            o.entry("cacheScope").or_insert_with(|| json!("private"));
        }
        Value::Object(o)
    }

    fn dispatch(&self, method: &str, params: &Map<String, Value>, modern: bool) -> RpcResult {
        match method {
            "ping" => Ok(json!({})),
            "logging/setLevel" => match params.get("level").and_then(Value::as_str) {
                // We log to stderr only and send no notifications/message.
                Some(l) if LOG_LEVELS.contains(&l) => Ok(json!({})),
                Some(l) => Err(RpcError::invalid_params(format!(
                    "unknown log level {l:?} (one of {})",
                    LOG_LEVELS.join(", ")
                ))),
                None => Err(RpcError::invalid_params("level is required")),
            },
            "server/discover" => Ok(self.modern_result(method, self.discover(params))),
            "tools/list" => Ok(json!({"tools": tools_for(&self.opts.tools)})),
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
            "resources/subscribe" if !modern => {
                inbox_uri(params)?;
                self.change_subscriptions(true, |f| f.subscribed = true);
                Ok(json!({}))
            }
            "resources/unsubscribe" if !modern => {
                inbox_uri(params)?;
                self.change_subscriptions(false, |f| f.subscribed = false);
                Ok(json!({}))
            }
            _ => Err(not_found(method)),
        }
    }

    /// Our capabilities, in both eras.
    fn capabilities(&self) -> Value {
        json!({
            "tools": {},
            "resources": {"subscribe": true},
            "experimental": {(era::CLAUDE_CHANNEL): {}},
        })
    }

    fn instructions(&self) -> String {
        let mut text = format!(
            "You are agent {:?} on an Arc coordination hub. Read new messages with arc_poll_messages (or subscribe to {INBOX_URI}); post with arc_post_message; claim work and lock files before editing.",
            self.agent()
        );
        if self.flags.lock().channel {
            text.push_str(" New messages for you also arrive as <channel> events: headers only, with the newest message's message_id, from_agent and channel, and count; read the bodies with arc_poll_messages.");
        }
        text
    }

    fn initialize(&self, params: &Map<String, Value>) -> Value {
        let asked = params.get("protocolVersion").and_then(Value::as_str);
        let version = era::negotiate(asked);
        *lock(&self.handshake) = Some(version);
        if era::asks_for_channel(params.get("capabilities")) {
            self.enable_channel();
        }
        let client = params.get("clientInfo");
        self.log(&format!(
            "initialize from {} {} (asked {}, answered {version})",
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
            "capabilities": self.capabilities(),
            "serverInfo": server_info(),
            "instructions": self.instructions(),
        })
    }

    /// `server/discover`: the versions we speak (both eras, so a client
    /// that probes first may still pick a handshake version), capabilities
    /// and instructions; identity goes in `_meta`, as 2026-07-28 puts it.
    fn discover(&self, params: &Map<String, Value>) -> Value {
        let meta = params.get("_meta");
        let client = meta.and_then(|m| m.get(era::META_CLIENT_INFO));
        let text = |k: &str| {
            client
                .and_then(|c| c.get(k))
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        };
        self.log(&format!(
            "server/discover from {} {} (protocol {})",
            text("name"),
            text("version"),
            meta.and_then(|m| m.get(era::META_PROTOCOL_VERSION))
                .and_then(Value::as_str)
                .unwrap_or("none")
        ));
        json!({
            "supportedVersions": era::SUPPORTED_VERSIONS,
            "capabilities": self.capabilities(),
            "instructions": self.instructions(),
        })
    }

    fn enable_channel_if_asked(&self, m: &Modern) {
        if era::asks_for_channel(Some(&Value::Object(m.capabilities.clone()))) {
            self.enable_channel();
        }
    }

    fn enable_channel(&self) {
        if !self.flags.lock().channel {
            self.log(
                "the client declared experimental claude/channel: pushing channel notifications",
            );
            self.flags.update(|f| f.channel = true);
        }
    }

    /// `subscriptions/listen`: acknowledges what we honor (the inbox among
    /// `resourceSubscriptions`; we have no list-changed events), then keeps
    /// the request open; its notifications carry its id. No response until
    /// it ends, and none when the client cancels it.
    fn listen(&self, id: &Value, params: &Map<String, Value>) -> Option<Value> {
        let refuse = |e: RpcError| Some(e.reply(id.clone()));
        let filter = match params.get("notifications") {
            Some(Value::Object(f)) => f,
            Some(_) => return refuse(RpcError::invalid_params("notifications must be an object")),
            None => {
                return refuse(RpcError::invalid_params(
                    "subscriptions/listen needs a notifications filter",
                ));
            }
        };
        let uris: Vec<&str> = match filter.get("resourceSubscriptions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => {
                match a.iter().map(Value::as_str).collect::<Option<Vec<_>>>() {
                    Some(u) => u,
                    None => {
                        return refuse(RpcError::invalid_params(
                            "resourceSubscriptions must be an array of URIs",
                        ));
                    }
                }
            }
            Some(_) => {
                return refuse(RpcError::invalid_params(
                    "resourceSubscriptions must be an array of URIs",
                ));
            }
        };
        if self.flags.lock().listens.iter().any(|l| &l.id == id) {
            return refuse(RpcError::new(
                INVALID_REQUEST,
                format!("invalid request: subscription {id} is already open"),
            ));
        }
        let inbox = uris.contains(&INBOX_URI);
        let mut honored = Map::new();
        if inbox {
            honored.insert("resourceSubscriptions".into(), json!([INBOX_URI]));
        }
        // Where pushing starts is fixed before the acknowledgment: a
        // message posted right after the client sees it is then sent. The
        // acknowledgment still goes first: the push thread learns of the
        // listen only below.
        let start = self.start_point(inbox);
        self.send(&json!({
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {
                "_meta": {(era::META_SUBSCRIPTION_ID): id},
                "notifications": honored,
            },
        }));
        self.apply_subscriptions(start, |f| {
            f.listens.push(Listen {
                id: id.clone(),
                inbox,
            })
        });
        None
    }

    /// Applies a change to the subscriptions. When the inbox gains its
    /// first subscriber (`may_start`), pushing starts from the newest
    /// visible message; if the hub is down the push thread finds the start.
    pub(super) fn change_subscriptions(&self, may_start: bool, change: impl FnOnce(&mut Flags)) {
        let start = self.start_point(may_start);
        self.apply_subscriptions(start, change);
    }

    /// The newest visible message, when the inbox is about to gain its
    /// first subscriber (`may_start`): pushing starts after it.
    fn start_point(&self, may_start: bool) -> Option<crate::wire::Bootstrap> {
        (may_start && !self.flags.lock().inbox_wanted())
            .then(|| self.client.clone().bootstrap().ok())
            .flatten()
    }

    fn apply_subscriptions(
        &self,
        start: Option<crate::wire::Bootstrap>,
        change: impl FnOnce(&mut Flags),
    ) {
        self.flags.update(|f| {
            let was = f.inbox_wanted();
            change(f);
            f.generation += 1;
            match (was, f.inbox_wanted()) {
                (false, true) => f.push_cursor = start.map(|b| b.latest_visible_id),
                (_, false) => f.push_cursor = None,
                (true, true) => {}
            }
        });
    }

    fn tools_call(&self, params: &Map<String, Value>) -> RpcResult {
        let Some(Value::String(name)) = params.get("name") else {
            return Err(RpcError::invalid_params("tools/call needs a string name"));
        };
        let tool = find_in(&self.opts.tools, name)
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

fn server_info() -> Value {
    json!({"name": "arc-hub", "title": "Arc", "version": crate::wire::VERSION})
}

fn not_found(method: &str) -> RpcError {
    RpcError::new(METHOD_NOT_FOUND, format!("method not found: {method}"))
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
