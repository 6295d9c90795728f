/*!
The v1 HTTP API: routes, request validation, and handlers.

Handlers take a parsed [`Call`] and return an [`Outcome`]: a finished
[`Reply`], a long-poll to park ([`Wait`]), or an SSE stream to run. They
never touch sockets or threads; `hub.rs` owns those. Validation follows the
reference's order and error texts (spec §4, Appendix A) with the §15 fixes.
*/

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::state::State;
use crate::input::{
    self, Query, field, opt_bool, opt_int, opt_list, opt_object, opt_string, req_string,
};
use crate::notify::{Key, Subscription, Wake};
use crate::store::{EventQuery, FeedQuery, Freshness, MAX_TTL_SEC, NewMessage};
use crate::wire::{self, ATTACHMENT_TYPES, Claim, Envelope, Lock, MESSAGE_KINDS};

/// A matched route. Path parameters are percent-decoded (spec §15 item 16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Dashboard,
    DashboardAsset(&'static str),
    Agents,
    Channels,
    HubInfo,
    Events,
    Messages,
    Threads,
    Thread(String),
    Inbox(String),
    Claims,
    Locks,
    Tasks,
    ShutdownStatus,
    Bootstrap,
    Stream,
    CreateSession,
    RenameSession(String),
    CreateChannel,
    PostMessage,
    Claim,
    ClaimRefresh,
    ClaimRelease,
    Lock,
    LockRefresh,
    LockRelease,
    CompleteTask(String),
    Shutdown,
    ShutdownCancel,
    Network,
    DeleteSession(String),
}

/// Why a request matched no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    /// 404: no handler for this method and path.
    NotFound,
    /// 405: the hub only speaks GET, POST and DELETE.
    MethodNotAllowed,
}

impl Route {
    /// True for routes whose handler reads a JSON body.
    pub fn takes_body(&self) -> bool {
        matches!(
            self,
            Route::CreateSession
                | Route::RenameSession(_)
                | Route::CreateChannel
                | Route::PostMessage
                | Route::Claim
                | Route::ClaimRefresh
                | Route::ClaimRelease
                | Route::Lock
                | Route::LockRefresh
                | Route::LockRelease
                | Route::CompleteTask(_)
                | Route::Shutdown
                | Route::ShutdownCancel
                | Route::Network
        )
    }
}

/// Matches `method` and the raw `path` (query already removed).
pub fn route(method: &str, path: &str) -> std::result::Result<Route, NoRoute> {
    if !matches!(method, "GET" | "POST" | "DELETE") {
        return Err(NoRoute::MethodNotAllowed);
    }
    // Python's http.server (3.11+) collapses leading slashes: `//v1/x`
    // is `/v1/x` for the reference, so it is for us.
    let trimmed = path.trim_start_matches('/');
    let path = if trimmed.len() < path.len() {
        &path[path.len() - trimmed.len() - 1..]
    } else {
        path
    };
    let seg: Vec<&str> = match path.strip_prefix('/') {
        Some("") => Vec::new(),
        Some(rest) => rest.split('/').collect(),
        None => return Err(NoRoute::NotFound),
    };
    let param = |s: &str| -> Option<String> { (!s.is_empty()).then(|| input::percent_decode(s)) };
    let r = match (method, seg.as_slice()) {
        ("GET", []) => Route::Dashboard,
        ("GET", ["assets", "dashboard.css"]) => Route::DashboardAsset("dashboard.css"),
        ("GET", ["assets", "dashboard.js"]) => Route::DashboardAsset("dashboard.js"),
        ("GET", ["v1", "agents"]) => Route::Agents,
        ("GET", ["v1", "channels"]) => Route::Channels,
        ("GET", ["v1", "hub-info"]) => Route::HubInfo,
        ("GET", ["v1", "events"]) => Route::Events,
        ("GET", ["v1", "messages"]) => Route::Messages,
        ("GET", ["v1", "threads"]) => Route::Threads,
        ("GET", ["v1", "threads", id]) => Route::Thread(param(id).ok_or(NoRoute::NotFound)?),
        ("GET", ["v1", "inbox", id]) => Route::Inbox(param(id).ok_or(NoRoute::NotFound)?),
        ("GET", ["v1", "claims"]) => Route::Claims,
        ("GET", ["v1", "locks"]) => Route::Locks,
        ("GET", ["v1", "tasks"]) => Route::Tasks,
        ("GET", ["v1", "shutdown"]) => Route::ShutdownStatus,
        ("GET", ["v1", "bootstrap"]) => Route::Bootstrap,
        ("GET", ["v1", "stream"]) => Route::Stream,
        ("POST", ["v1", "sessions"]) => Route::CreateSession,
        ("POST", ["v1", "sessions", id, "rename"]) => {
            Route::RenameSession(param(id).ok_or(NoRoute::NotFound)?)
        }
        ("POST", ["v1", "channels"]) => Route::CreateChannel,
        ("POST", ["v1", "messages"]) => Route::PostMessage,
        ("POST", ["v1", "claims"]) => Route::Claim,
        ("POST", ["v1", "claims", "refresh"]) => Route::ClaimRefresh,
        ("POST", ["v1", "claims", "release"]) => Route::ClaimRelease,
        ("POST", ["v1", "locks"]) => Route::Lock,
        ("POST", ["v1", "locks", "refresh"]) => Route::LockRefresh,
        ("POST", ["v1", "locks", "release"]) => Route::LockRelease,
        ("POST", ["v1", "tasks", id, "complete"])
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Route::CompleteTask(id.to_string())
        }
        ("POST", ["v1", "shutdown"]) => Route::Shutdown,
        ("POST", ["v1", "shutdown", "cancel"]) => Route::ShutdownCancel,
        ("POST", ["v1", "network"]) => Route::Network,
        ("DELETE", ["v1", "sessions", id]) => {
            Route::DeleteSession(param(id).ok_or(NoRoute::NotFound)?)
        }
        _ => return Err(NoRoute::NotFound),
    };
    Ok(r)
}

/// One request, parsed.
#[derive(Debug, Default)]
pub struct Call {
    pub query: Query,
    /// The JSON object body of a POST (empty object when no body was sent).
    pub body: Map<String, Value>,
    /// The `Last-Event-ID` header (SSE resume).
    pub last_event_id: Option<String>,
}

/// A finished response.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.into_bytes(),
        }
    }

    pub fn ok<T: Serialize>(result: T) -> Reply {
        Reply::envelope(200, Envelope::new(result))
    }

    pub fn created<T: Serialize>(result: T) -> Reply {
        Reply::envelope(201, Envelope::new(result))
    }

    pub fn envelope<T: Serialize>(status: u16, env: Envelope<T>) -> Reply {
        match serde_json::to_string(&env) {
            Ok(s) => Reply::json(status, s),
            Err(e) => Reply::error(500, &format!("internal error: json: {e}")),
        }
    }

    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, wire::error_body(message))
    }

    pub fn from_error(e: &Error) -> Reply {
        let (status, message) = status_of(e);
        Reply::error(status, &message)
    }
}

/// The HTTP status and envelope text an error becomes.
pub fn status_of(e: &Error) -> (u16, String) {
    match e {
        Error::Invalid(m) => (400, m.clone()),
        Error::NotFound(m) => (404, m.clone()),
        Error::Conflict(m) => (409, m.clone()),
        Error::Unavailable(m) => (503, m.clone()),
        Error::Internal(m) => (500, m.clone()),
        Error::Hub { status, message } => (*status, message.clone()),
        e if e.is_busy() => (503, "database is busy, try again".into()),
        other => (500, format!("internal error: {other}")),
    }
}

/// What a handler produced.
pub enum Outcome {
    Reply(Reply),
    /// A long-poll with nothing to return yet: park it.
    Wait(Wait),
    /// An SSE stream to run.
    Stream(crate::sse::Stream),
}

impl From<Reply> for Outcome {
    fn from(r: Reply) -> Outcome {
        Outcome::Reply(r)
    }
}

/// A parked long-poll.
pub struct Wait {
    pub kind: WaitKind,
    pub deadline: Instant,
    /// Agent whose presence the wait refreshes (`/v1/events`), also the
    /// agent the per-agent waiter cap counts against.
    pub agent: Option<String>,
    pub touch: bool,
    pub sub: Subscription,
}

/// The query a parked long-poll re-runs when woken.
pub enum WaitKind {
    Events(EventQuery),
    Feed(FeedQuery),
    Inbox(String, FeedQuery),
}

/// Handles one routed request.
pub fn handle(state: &Arc<State>, route: &Route, call: &Call) -> Outcome {
    match dispatch(state, route, call) {
        Ok(o) => o,
        Err(e) => Outcome::Reply(Reply::from_error(&e)),
    }
}

fn dispatch(s: &Arc<State>, route: &Route, c: &Call) -> Result<Outcome> {
    let q = &c.query;
    let b = &c.body;
    Ok(match route {
        Route::Dashboard => Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: crate::dashboard::HTML.as_bytes().to_vec(),
        }
        .into(),
        Route::DashboardAsset(name) => crate::dashboard::asset(name).into(),
        Route::HubInfo => Reply::ok(s.hub_info()).into(),
        Route::Agents => {
            let touch = q.get("as");
            let mut agents = s.store.live_agents(touch)?;
            if let Some(cap) = q.get("capability") {
                agents.retain(|a| {
                    a.capabilities
                        .as_array()
                        .is_some_and(|caps| caps.iter().any(|c| c.as_str() == Some(cap)))
                });
            }
            Reply::ok(agents).into()
        }
        Route::Bootstrap => {
            let agent = q
                .get("agent_id")
                .ok_or_else(|| Error::invalid("agent_id query parameter is required"))?;
            Reply::ok(s.store.bootstrap(agent)?).into()
        }
        Route::Channels => Reply::ok(s.store.list_channels()?).into(),
        Route::CreateChannel => {
            let name = req_string(b, "name")?;
            let created_by = opt_string(b, "created_by")?;
            let metadata = opt_object(b, "metadata")?.unwrap_or_default();
            let (ch, created) = s
                .store
                .create_channel(&name, created_by.as_deref(), &metadata)?;
            if created {
                Reply::created(ch)
            } else {
                Reply::ok(ch)
            }
            .into()
        }
        Route::CreateSession => {
            let agent_id = req_string(b, "agent_id")?;
            let display = opt_string(b, "display_name")?.filter(|d| !d.is_empty());
            let caps = opt_list(b, "capabilities")?.unwrap_or_default();
            // Scalars are stringified like Python's str(); a list or object
            // would only become Python repr text, so it is refused (§15.12).
            let caps: Vec<String> = caps
                .iter()
                .map(input::scalar_string)
                .collect::<Option<_>>()
                .ok_or_else(|| Error::invalid("capabilities must not contain lists or objects"))?;
            let metadata = opt_object(b, "metadata")?.unwrap_or_default();
            let replace = opt_bool(b, "replace")?.unwrap_or(false);
            let display = display.unwrap_or_else(|| agent_id.clone());
            Reply::created(
                s.store
                    .create_session(&agent_id, &display, &caps, &metadata, replace)?,
            )
            .into()
        }
        Route::RenameSession(agent) => {
            let name = req_string(b, "display_name")?;
            if name.chars().count() > 64 {
                return Err(Error::invalid(
                    "display_name must be 64 characters or fewer",
                ));
            }
            Reply::ok(s.store.rename_session(agent, &name)?).into()
        }
        Route::DeleteSession(sid) => {
            s.store.close_session(sid)?;
            Reply::ok(json!({"session_id": sid, "deleted": true})).into()
        }
        Route::PostMessage => {
            let m = normalize_message(s, b)?;
            Reply::created(s.store.post_message(m)?).into()
        }
        Route::Messages => return messages(s, q),
        Route::Events => return events(s, q),
        Route::Inbox(agent) => return inbox(s, agent, q),
        Route::Stream => return crate::sse::open(s, c),
        Route::Threads => Reply::ok(s.store.list_threads()?).into(),
        Route::Thread(tid) => {
            let limit = match q.get("limit") {
                Some(_) => Some(q.limit(i64::MAX)?),
                None => None,
            };
            let tail = q.flag("tail");
            let limit = if tail && limit.is_none() {
                Some(100)
            } else {
                limit
            };
            let since = q.since_id()?;
            match s.store.thread_detail(tid, since, limit, tail)? {
                Some(d) => Reply::ok(d).into(),
                None => return Err(Error::not_found("thread not found")),
            }
        }
        Route::Claims => Reply::ok(
            s.store
                .list_leases::<Claim>(q.get("thread_id").map(|t| ("thread_id", t)), q.flag("active_only"))?,
        )
        .into(),
        Route::Locks => Reply::ok(
            s.store
                .list_leases::<Lock>(q.get("agent_id").map(|a| ("agent_id", a)), q.flag("active_only"))?,
        )
        .into(),
        Route::Claim => {
            let owner = req_string(b, "owner_agent_id")?;
            let key = opt_string(b, "claim_key")?.unwrap_or_default();
            let task_id = opt_int(b, "task_message_id")?;
            let thread = opt_string(b, "thread_id")?.filter(|t| !t.is_empty());
            let ttl = ttl(b)?;
            let metadata = opt_object(b, "metadata")?.unwrap_or_default();
            let key = if key.is_empty() {
                match task_id {
                    Some(id) => format!("task-{id}"),
                    None => return Err(Error::invalid("claim_key or task_message_id is required")),
                }
            } else {
                key
            };
            let (claim, acquired) =
                s.store
                    .acquire_claim(&owner, &key, task_id, thread.as_deref(), ttl, &metadata)?;
            lease_reply(claim, acquired).into()
        }
        Route::ClaimRefresh => {
            let key = req_string(b, "claim_key")?;
            let owner = req_string(b, "owner_agent_id")?;
            let ttl = ttl(b)?;
            lease_reply(s.store.refresh_lease::<Claim>(&key, &owner, ttl)?, true)
                .with_status(200)
                .into()
        }
        Route::ClaimRelease => {
            let key = req_string(b, "claim_key")?;
            let agent = req_string(b, "agent_id")?;
            Reply::ok(s.store.release_lease::<Claim>(&key, &agent)?).into()
        }
        Route::Lock => {
            let agent = req_string(b, "agent_id")?;
            let path = req_string(b, "file_path")?;
            let ttl = ttl(b)?;
            let metadata = opt_object(b, "metadata")?.unwrap_or_default();
            let (lock, acquired) = s.store.acquire_lock(&agent, &path, ttl, &metadata)?;
            lease_reply(lock, acquired).into()
        }
        Route::LockRefresh => {
            let agent = req_string(b, "agent_id")?;
            let path = req_string(b, "file_path")?;
            let ttl = ttl(b)?;
            lease_reply(s.store.refresh_lease::<Lock>(&path, &agent, ttl)?, true)
                .with_status(200)
                .into()
        }
        Route::LockRelease => {
            let agent = req_string(b, "agent_id")?;
            let path = req_string(b, "file_path")?;
            Reply::ok(s.store.release_lease::<Lock>(&path, &agent)?).into()
        }
        Route::Tasks => {
            let parent = q.int("parent_id")?;
            let status = q.get("status");
            if let Some(st) = status {
                if st != "open" && st != "done" {
                    return Err(Error::invalid("status must be 'open' or 'done'"));
                }
            }
            Reply::ok(
                s.store
                    .list_tasks(parent, status, q.get("channel"), q.get("thread_id"))?,
            )
            .into()
        }
        Route::CompleteTask(id) => {
            let id: i64 = id.parse().map_err(|_| Error::not_found("task not found"))?;
            let (task, parent_completed) = s.store.complete_task(id)?;
            Reply::envelope(
                200,
                Envelope {
                    parent_completed: parent_completed.then_some(true),
                    ..Envelope::new(task)
                },
            )
            .into()
        }
        Route::ShutdownStatus => Reply::ok(s.shutdown_status()).into(),
        Route::Shutdown => {
            let delay = opt_int(b, "delay_sec")?.unwrap_or(60);
            if delay < 0 {
                return Err(Error::invalid("delay_sec must be >= 0"));
            }
            if delay > 3600 {
                return Err(Error::invalid("delay_sec must be <= 3600"));
            }
            Reply::ok(s.arm_shutdown(delay)?).into()
        }
        Route::ShutdownCancel => Reply::ok(s.cancel_shutdown()?).into(),
        Route::Network => {
            if let Some(want) = opt_bool(b, "allow_remote")? {
                s.set_allow_remote(want)?;
            }
            Reply::ok(json!({"allow_remote": s.allow_remote(), "listen_host": s.config.host}))
                .into()
        }
    })
}

impl Reply {
    fn with_status(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }
}

fn lease_reply<T: Serialize>(row: T, acquired: bool) -> Reply {
    Reply::envelope(
        if acquired { 201 } else { 200 },
        Envelope {
            acquired: Some(acquired),
            ..Envelope::new(row)
        },
    )
}

/// `ttl_sec`: default 300, at least 5, at most ten years (spec §15 item 6).
fn ttl(b: &Map<String, Value>) -> Result<i64> {
    let ttl = opt_int(b, "ttl_sec")?.unwrap_or(300);
    if ttl < 5 {
        return Err(Error::invalid("ttl_sec must be at least 5"));
    }
    if ttl > MAX_TTL_SEC {
        return Err(Error::invalid(format!(
            "ttl_sec must be at most {MAX_TTL_SEC}"
        )));
    }
    Ok(ttl)
}

/// Python truthiness of a JSON value.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Bool(true)) => true,
    }
}

fn string_of(v: &Value, key: &str) -> Result<String> {
    input::scalar_string(v).ok_or_else(|| Error::invalid(format!("{key} must be a string")))
}

/// Spec §4.10 steps 1–12, in order; step 13 (channel existence) runs in the
/// store's write transaction.
fn normalize_message(s: &State, b: &Map<String, Value>) -> Result<NewMessage> {
    let parent_task_id = match field(b, "parent_task_id") {
        None => None,
        Some(v) => {
            let id = input::coerce_int(v)
                .ok_or_else(|| Error::invalid("parent_task_id must be an integer"))?;
            if !s.store.task_exists(id)? {
                return Err(Error::invalid("parent_task_id references unknown task"));
            }
            Some(id)
        }
    };
    let from_agent = match field(b, "from_agent") {
        None => String::new(),
        Some(v) => string_of(v, "from_agent")?.trim().to_string(),
    };
    if from_agent.is_empty() {
        return Err(Error::invalid("from_agent is required"));
    }
    let to_agent = match field(b, "to_agent") {
        None => None,
        Some(v) => Some(string_of(v, "to_agent")?.trim().to_string()).filter(|t| !t.is_empty()),
    };
    let channel = match b.get("channel") {
        v if truthy(v) => string_of(v.unwrap_or(&Value::Null), "channel")?
            .trim()
            .to_string(),
        _ if to_agent.is_some() => "direct".to_string(),
        _ => "general".to_string(),
    };
    if channel.is_empty() {
        return Err(Error::invalid("channel must be non-empty"));
    }
    let kind = match field(b, "kind") {
        None => "chat".to_string(),
        Some(v) => string_of(v, "kind")?.trim().to_lowercase(),
    };
    if !MESSAGE_KINDS.contains(&kind.as_str()) {
        return Err(Error::invalid(format!("unsupported kind: {kind}")));
    }
    let body = match field(b, "body") {
        None => String::new(),
        Some(v) => string_of(v, "body")?,
    };
    let attachments = match b.get("attachments") {
        v if !truthy(v) => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > s.config.max_attachments {
                return Err(Error::invalid("too many attachments"));
            }
            items
                .iter()
                .map(|a| normalize_attachment(a, s.config.max_attachment_chars))
                .collect::<Result<Vec<_>>>()?
        }
        _ => return Err(Error::invalid("attachments must be a list")),
    };
    if body.is_empty() && attachments.is_empty() {
        return Err(Error::invalid("body or attachments is required"));
    }
    if body.chars().count() > s.config.max_body_chars {
        return Err(Error::invalid("body exceeds max size"));
    }
    let reply_to = opt_int(b, "reply_to")?;
    let thread_id = match field(b, "thread_id") {
        None => None,
        Some(v) => Some(string_of(v, "thread_id")?.trim().to_string()).filter(|t| !t.is_empty()),
    };
    let metadata = match b.get("metadata") {
        v if !truthy(v) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        _ => return Err(Error::invalid("metadata must be a JSON object")),
    };
    Ok(NewMessage {
        from_agent,
        to_agent,
        channel,
        kind,
        body,
        attachments,
        reply_to,
        thread_id,
        metadata,
        parent_task_id,
    })
}

fn normalize_attachment(a: &Value, max_chars: usize) -> Result<Value> {
    let Value::Object(a) = a else {
        return Err(Error::invalid("attachments must contain JSON objects"));
    };
    let t = match field(a, "type") {
        None => String::new(),
        Some(v) => input::scalar_string(v)
            .unwrap_or_else(|| v.to_string())
            .trim()
            .to_string(),
    };
    if !ATTACHMENT_TYPES.contains(&t.as_str()) {
        return Err(Error::invalid(format!("unsupported attachment type: {t}")));
    }
    let mut out = Map::new();
    out.insert("type".into(), Value::String(t.clone()));
    if matches!(t.as_str(), "text" | "json" | "code") {
        let Some(content) = a.get("content") else {
            return Err(Error::invalid(format!(
                "attachment type {t} requires content"
            )));
        };
        if input::py_json_len(content) > max_chars {
            return Err(Error::invalid(format!(
                "attachment type {t} exceeds max size"
            )));
        }
        out.insert("content".into(), content.clone());
        if t == "code" {
            if let Some(lang) = field(a, "language") {
                out.insert(
                    "language".into(),
                    Value::String(input::scalar_string(lang).unwrap_or_else(|| lang.to_string())),
                );
            }
        }
    } else {
        let path = match field(a, "path") {
            None => String::new(),
            Some(v) => input::scalar_string(v)
                .unwrap_or_else(|| v.to_string())
                .trim()
                .to_string(),
        };
        if path.is_empty() {
            return Err(Error::invalid(format!("attachment type {t} requires path")));
        }
        out.insert("path".into(), Value::String(path));
        for k in ["description", "base", "head"] {
            if let Some(v) = field(a, k) {
                out.insert(k.into(), v.clone());
            }
        }
        for k in ["start_line", "end_line"] {
            if let Some(v) = opt_int(a, k)? {
                out.insert(k.into(), json!(v));
            }
        }
    }
    Ok(Value::Object(out))
}

// ----- feeds and long-polls -------------------------------------------------

/// Seconds between presence refreshes while a long-poll waits (spec §4.12).
pub fn touch_interval(ttl_sec: i64) -> Duration {
    Duration::from_secs((ttl_sec / 3).clamp(1, 30) as u64)
}

fn messages(s: &State, q: &Query) -> Result<Outcome> {
    let channel = q.get("channel").map(str::to_string);
    let thread_id = q.get("thread_id").map(str::to_string);
    if channel.is_none() && thread_id.is_none() {
        return Err(Error::invalid(
            "channel or thread_id query parameter is required",
        ));
    }
    if let Some(ch) = &channel {
        if !s.store.channel_exists(ch)? {
            return Err(Error::not_found("channel not found"));
        }
    }
    let fq = FeedQuery {
        since_id: q.since_id()?,
        limit: q.limit(s.config.max_query_limit)?,
        channel: channel.clone(),
        thread_id: thread_id.clone(),
        tail: false,
    };
    let timeout = q.timeout(s.config.max_poll_sec)?;
    let fq = FeedQuery {
        tail: q.flag("tail"),
        ..fq
    };
    let keys = match (&channel, &thread_id) {
        (Some(ch), _) => vec![Key::Channel(ch.clone())],
        (None, Some(t)) => vec![Key::Thread(t.clone())],
        (None, None) => vec![Key::Broadcast],
    };
    start_wait(s, WaitKind::Feed(fq), keys, timeout, None, false)
}

fn events(s: &State, q: &Query) -> Result<Outcome> {
    let agent = q
        .get("agent_id")
        .ok_or_else(|| Error::invalid("agent_id query parameter is required"))?
        .to_string();
    let channel = q.get("channel").map(str::to_string);
    if let Some(ch) = &channel {
        if !s.store.channel_exists(ch)? {
            return Err(Error::not_found("channel not found"));
        }
    }
    let eq = EventQuery {
        agent_id: agent.clone(),
        channels: channel.clone().into_iter().collect(),
        thread_id: q.get("thread_id").map(str::to_string),
        since_id: q.since_id()?,
        limit: q.limit(s.config.max_query_limit)?,
        exclude_self: q.flag("exclude_self"),
        max_bytes: crate::store::PAGE_MAX_BYTES,
        strict_bytes: false,
    };
    let timeout = q.timeout(s.config.max_poll_sec)?;
    let mut keys = vec![Key::Recipient(agent.clone())];
    match (&channel, &eq.thread_id) {
        (Some(ch), _) => keys.push(Key::Channel(ch.clone())),
        (None, Some(t)) => keys.push(Key::Thread(t.clone())),
        (None, None) => keys.push(Key::Broadcast),
    }
    s.store.touch(&agent)?;
    start_wait(s, WaitKind::Events(eq), keys, timeout, Some(agent), true)
}

fn inbox(s: &State, agent: &str, q: &Query) -> Result<Outcome> {
    let fq = FeedQuery {
        since_id: q.since_id()?,
        limit: q.limit(s.config.max_query_limit)?,
        tail: q.flag("tail"),
        ..FeedQuery::default()
    };
    // `timeout` is our extension here; the reference ignores the
    // parameter, so a value it would ignore must not become an error.
    let timeout = q.timeout(s.config.max_poll_sec).unwrap_or(0.0);
    start_wait(
        s,
        WaitKind::Inbox(agent.to_string(), fq),
        vec![Key::Recipient(agent.to_string())],
        timeout,
        Some(agent.to_string()),
        false,
    )
}

/// Runs a long-poll's query.
fn run_query(s: &State, kind: &WaitKind, fresh: Freshness) -> Result<Vec<wire::Message>> {
    match kind {
        WaitKind::Events(q) => s.store.events_with(q, fresh),
        WaitKind::Feed(q) => s.store.feed_with(q, None, fresh),
        WaitKind::Inbox(agent, q) => s.store.feed_with(q, Some(agent), fresh),
    }
}

/// Subscribes, queries once, and either answers or hands back a [`Wait`].
fn start_wait(
    s: &State,
    kind: WaitKind,
    keys: Vec<Key>,
    timeout: f64,
    agent: Option<String>,
    touch: bool,
) -> Result<Outcome> {
    let sub = (timeout > 0.0).then(|| s.notifier.subscribe(keys));
    let rows = run_query(s, &kind, Freshness::CatchUp)?;
    match sub {
        Some(sub) if rows.is_empty() && !s.notifier.is_shutdown() => Ok(Outcome::Wait(Wait {
            kind,
            deadline: Instant::now() + Duration::from_secs_f64(timeout),
            agent,
            touch,
            sub,
        })),
        _ => {
            if touch {
                if let Some(a) = &agent {
                    s.store.touch(a)?;
                }
            }
            Ok(Reply::ok(rows).into())
        }
    }
}

/// Runs a parked long-poll to completion: re-query on every wake, refresh
/// presence on schedule, answer at the first rows, the deadline, or shutdown.
pub fn finish_wait(s: &State, mut w: Wait) -> Reply {
    let every = touch_interval(s.config.presence_ttl_sec);
    let mut next_touch = Instant::now() + every;
    // The wait began with a touch; timestamps have one-second precision, so
    // a final touch within the same second would write the same value.
    let mut last_touch = Instant::now();
    let result = (|| -> Result<Vec<wire::Message>> {
        loop {
            let wake_at = if w.touch {
                w.deadline.min(next_touch)
            } else {
                w.deadline
            };
            match w.sub.wait(wake_at) {
                Wake::Signaled => {
                    let rows = run_query(s, &w.kind, Freshness::TailMayLag)?;
                    if !rows.is_empty() {
                        return Ok(rows);
                    }
                }
                Wake::TimedOut if Instant::now() < w.deadline => {
                    if let Some(a) = w.agent.as_deref().filter(|_| w.touch) {
                        s.store.touch(a)?;
                        last_touch = Instant::now();
                    }
                    next_touch += every;
                }
                Wake::TimedOut | Wake::Shutdown => return run_query(s, &w.kind, Freshness::CatchUp),
            }
        }
    })();
    let touched = match (&w.agent, w.touch) {
        (Some(a), true) if last_touch.elapsed() >= Duration::from_secs(1) => s.store.touch(a),
        _ => Ok(()),
    };
    match result.and_then(|rows| touched.map(|_| rows)) {
        Ok(rows) => Reply::ok(rows),
        Err(e) => Reply::from_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_the_reference_table() {
        assert_eq!(route("GET", "/"), Ok(Route::Dashboard));
        assert_eq!(route("GET", "/v1/channels/"), Err(NoRoute::NotFound));
        assert_eq!(route("GET", "/v1/claims/refresh"), Err(NoRoute::NotFound));
        assert_eq!(route("POST", "/v1/agents"), Err(NoRoute::NotFound));
        assert_eq!(route("DELETE", "/v1/channels"), Err(NoRoute::NotFound));
        assert_eq!(route("PUT", "/v1/channels"), Err(NoRoute::MethodNotAllowed));
        assert_eq!(route("GET", "/index.html"), Err(NoRoute::NotFound));
        assert_eq!(
            route("POST", "/v1/tasks/12/complete"),
            Ok(Route::CompleteTask("12".into()))
        );
        assert_eq!(
            route("POST", "/v1/tasks/x/complete"),
            Err(NoRoute::NotFound)
        );
        assert_eq!(route("POST", "/v1/tasks//complete"), Err(NoRoute::NotFound));
        // Leading slashes collapse, as in Python's http.server.
        assert_eq!(route("GET", "//v1/channels"), Ok(Route::Channels));
        assert_eq!(route("GET", "///v1/agents"), Ok(Route::Agents));
        assert_eq!(route("GET", "//"), Ok(Route::Dashboard));
    }

    #[test]
    fn path_parameters_are_percent_decoded() {
        assert_eq!(
            route("GET", "/v1/inbox/a%20b"),
            Ok(Route::Inbox("a b".into()))
        );
        assert_eq!(
            route("GET", "/v1/threads/x%2Fy"),
            Ok(Route::Thread("x/y".into()))
        );
        assert_eq!(
            route("POST", "/v1/sessions/caf%C3%A9/rename"),
            Ok(Route::RenameSession("café".into()))
        );
        assert_eq!(
            route("DELETE", "/v1/sessions/abc"),
            Ok(Route::DeleteSession("abc".into()))
        );
    }

    #[test]
    fn truthiness_is_pythons() {
        assert!(!truthy(None));
        assert!(!truthy(Some(&json!(0))));
        assert!(!truthy(Some(&json!(""))));
        assert!(!truthy(Some(&json!({}))));
        assert!(truthy(Some(&json!("0"))));
        assert!(truthy(Some(&json!([0]))));
    }

    #[test]
    fn attachments_normalise_in_order() {
        let a = normalize_attachment(
            &json!({"type": " file_ref ", "path": " src/x.rs ", "start_line": "3", "junk": 1, "base": null}),
            100,
        )
        .unwrap();
        assert_eq!(
            a,
            json!({"type": "file_ref", "path": "src/x.rs", "start_line": 3})
        );
        let e = normalize_attachment(&json!({"type": "code"}), 100).unwrap_err();
        assert_eq!(e.detail(), "attachment type code requires content");
        let e = normalize_attachment(&json!({"type": "text", "content": "x".repeat(200)}), 100)
            .unwrap_err();
        assert_eq!(e.detail(), "attachment type text exceeds max size");
        let e = normalize_attachment(&json!({"type": "zip"}), 100).unwrap_err();
        assert_eq!(e.detail(), "unsupported attachment type: zip");
        let e = normalize_attachment(&json!(["x"]), 100).unwrap_err();
        assert_eq!(e.detail(), "attachments must contain JSON objects");
        let e = normalize_attachment(
            &json!({"type": "diff_ref", "path": "p", "end_line": 1.5}),
            100,
        )
        .unwrap_err();
        assert_eq!(e.detail(), "end_line must be an integer");
    }
}
