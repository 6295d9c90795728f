/*!
A blocking client for the hub: the one way this crate talks to a hub.

* [`http`]: a small HTTP/1.1 client ([`http_request`]).
* [`Client`]: the API of the reference `ArcClient` (register, bootstrap,
  post, poll with a cursor, claims, locks, threads, tasks, RPC `call`)
  over a [`Transport`]: HTTP, or the file relay ([`RelayClient`]) for
  sandboxed agents. Every body it sends is a typed shape of
  `wire::requests`.

Unlike the reference, claim and lock calls return the `acquired` flag, and
`call()` long-polls `/v1/events` with an advancing cursor, so a busy
channel cannot hide the answer.
*/

pub mod http;
mod relay;
mod work;

pub use http::{
    ANSWER_LIMITS, BaseUrl, Exchange, HttpResponse, MAX_RESPONSE_BYTES, http_exchange,
    http_request, parse_answer, read_response, read_response_capped,
};
pub use relay::{CLIENT_MARGIN, RESPONSE_MAX_BYTES, RelayClient};
pub use work::Reserve;

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::input::percent_encode;
use crate::wire::requests;
use crate::wire::{Bootstrap, Claim, Lock, Message, Session, Task, ThreadDetail};

/// The hub agents reach when they are told nothing else.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:6969";

/// How one agent reaches a hub: its id, and HTTP or a relay spool
/// (`--agent`, `--base-url`, `--relay-dir`).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub agent: String,
    pub base_url: String,
    pub relay_dir: Option<std::path::PathBuf>,
}

impl Endpoint {
    /// A client for this agent over this endpoint's transport.
    pub fn client(&self) -> Client {
        match &self.relay_dir {
            Some(dir) => Client::over_relay(&self.agent, dir),
            None => Client::http(&self.agent, &self.base_url),
        }
    }
}

/// A typed request body as the JSON the transports send.
pub fn to_body(body: &impl serde::Serialize) -> Result<Value> {
    Ok(serde_json::to_value(body)?)
}

/// How a [`Client`] reaches the hub.
#[derive(Debug, Clone)]
pub enum Transport {
    Http { base_url: String },
    Relay(RelayClient),
}

/// The longest long-poll this client asks for through a relay.
pub const RELAY_MAX_WAIT_SEC: f64 = 25.0;

/// A hub client for one agent, mirroring the reference `ArcClient`.
#[derive(Debug, Clone)]
pub struct Client {
    pub agent_id: String,
    pub transport: Transport,
    /// Default read timeout for short calls.
    pub timeout: Duration,
    /// The highest message id seen by `poll` (or `bootstrap`).
    pub cursor: i64,
    pub session_id: Option<String>,
}

/// Result of a claim or lock call: the row and whether we hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease<T> {
    pub acquired: bool,
    pub row: T,
}

/// Options for [`Client::post`].
#[derive(Debug, Clone, Default)]
pub struct Post {
    pub kind: Option<String>,
    pub thread_id: Option<String>,
    pub to_agent: Option<String>,
    pub attachments: Option<Vec<Value>>,
    pub metadata: Option<Map<String, Value>>,
    pub reply_to: Option<i64>,
    pub parent_task_id: Option<i64>,
}

impl Client {
    /// An HTTP client for `agent_id` at `base_url`.
    pub fn http(agent_id: &str, base_url: &str) -> Client {
        Client {
            agent_id: agent_id.to_string(),
            transport: Transport::Http {
                base_url: base_url.trim_end_matches('/').to_string(),
            },
            timeout: Duration::from_secs(15),
            cursor: 0,
            session_id: None,
        }
    }

    /// A client that goes through a relay spool directory.
    pub fn over_relay(agent_id: &str, spool_dir: &std::path::Path) -> Client {
        Client {
            agent_id: agent_id.to_string(),
            transport: Transport::Relay(RelayClient::new(spool_dir, agent_id)),
            timeout: Duration::from_secs(30),
            cursor: 0,
            session_id: None,
        }
    }

    /// Registers, then bootstraps (the reference `quickstart`).
    pub fn quickstart(
        agent_id: &str,
        base_url: &str,
        display_name: Option<&str>,
        capabilities: Option<&[&str]>,
    ) -> Result<Client> {
        let mut c = Client::http(agent_id, base_url);
        c.register(
            Some(display_name.unwrap_or(agent_id)),
            true,
            capabilities,
            None,
        )?;
        c.bootstrap()?;
        Ok(c)
    }

    /// Sends a request and returns the full envelope; `{"ok": false}` and
    /// transport failures become errors, and so does an answer beyond
    /// [`ANSWER_LIMITS`] (a protocol error naming the limit; it is never
    /// parsed).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value> {
        match self.exchange(method, path, body, timeout)? {
            Reply::Parsed(status, value) => envelope_result(status, value),
            Reply::Oversized { why, .. } => Err(Error::Protocol(self.refused(method, path, &why))),
        }
    }

    /// Sends a request and returns the HTTP status and the envelope as the
    /// hub sent it, `{"ok": false}` included (a 409 carries `conflicts`).
    /// Transport failures and oversized answers are still errors.
    pub fn answer(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, Value)> {
        match self.exchange(method, path, body, timeout)? {
            Reply::Parsed(status, value) => Ok((status, value)),
            Reply::Oversized { why, .. } => Err(Error::Protocol(self.refused(method, path, &why))),
        }
    }

    /// Sends a request; the status and envelope, or why the answer was
    /// not parsed. Relay transport failures are errors here.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Reply> {
        match &self.transport {
            Transport::Http { base_url } => {
                let bytes = body.map(serde_json::to_vec).transpose()?;
                let resp = http_request(base_url, method, path, bytes.as_deref(), &[], timeout)?;
                let v = match parse_answer(&resp.body) {
                    Ok(v) => v,
                    Err(why) => {
                        let first_id = first_message_id(&resp.body);
                        return Ok(Reply::Oversized { why, first_id });
                    }
                };
                let v = if v.is_object() {
                    v
                } else if (200..300).contains(&resp.status) {
                    json!({"ok": true, "result": Value::String(resp.text())})
                } else {
                    json!({"ok": false, "error": resp.text()})
                };
                Ok(Reply::Parsed(resp.status, v))
            }
            Transport::Relay(r) => {
                // Whatever relay serves the spool (ours, or the reference's
                // with its 30 s forward timeout) must get the hub's answer
                // before it gives up, so ask for at most RELAY_MAX_WAIT_SEC.
                let (path, _) = crate::spool::clamp_long_poll(path, RELAY_MAX_WAIT_SEC);
                match r.exchange(method, &path, body.cloned(), timeout)? {
                    Reply::Parsed(_, env) => relay_envelope(env).map(|(s, v)| Reply::Parsed(s, v)),
                    oversized => Ok(oversized),
                }
            }
        }
    }

    /// What to say about an answer that was not parsed.
    fn refused(&self, method: &str, path: &str, why: &str) -> String {
        let from = match &self.transport {
            Transport::Http { base_url } => base_url.clone(),
            Transport::Relay(r) => format!("relay {}", r.spool.display()),
        };
        let path = path.split('?').next().unwrap_or(path);
        format!("{from}: refused the answer to {method} {path} ({why})")
    }

    fn result(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut env = self.request(method, path, body, self.timeout)?;
        Ok(env
            .get_mut("result")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }

    fn typed<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        Ok(serde_json::from_value(self.result(method, path, body)?)?)
    }

    fn q(&self) -> String {
        percent_encode(&self.agent_id)
    }

    /// `POST /v1/sessions`.
    pub fn register(
        &mut self,
        display_name: Option<&str>,
        replace: bool,
        capabilities: Option<&[&str]>,
        metadata: Option<&Map<String, Value>>,
    ) -> Result<Session> {
        let body = requests::Register {
            agent_id: self.agent_id.clone(),
            replace,
            display_name: display_name.map(str::to_string),
            capabilities: capabilities.map(|c| c.iter().map(|s| s.to_string()).collect()),
            metadata: metadata.cloned(),
        };
        let s: Session = self.typed("POST", "/v1/sessions", Some(&to_body(&body)?))?;
        self.session_id = Some(s.session_id.clone());
        Ok(s)
    }

    /// `GET /v1/bootstrap`; advances the cursor to `latest_visible_id`.
    pub fn bootstrap(&mut self) -> Result<Bootstrap> {
        let b: Bootstrap =
            self.typed("GET", &format!("/v1/bootstrap?agent_id={}", self.q()), None)?;
        self.cursor = self.cursor.max(b.latest_visible_id);
        if let Some(s) = &b.session {
            self.session_id = Some(s.session_id.clone());
        }
        Ok(b)
    }

    /// Same as [`Client::bootstrap`].
    pub fn whoami(&mut self) -> Result<Bootstrap> {
        self.bootstrap()
    }

    /// `POST /v1/messages` to a channel.
    pub fn post(&self, channel: &str, body: &str, opts: Post) -> Result<Message> {
        let b = requests::PostMessage {
            from_agent: self.agent_id.clone(),
            channel: channel.to_string(),
            kind: opts.kind.unwrap_or_else(|| "chat".into()),
            body: body.to_string(),
            thread_id: opts.thread_id,
            to_agent: opts.to_agent,
            attachments: opts.attachments,
            metadata: opts.metadata,
            reply_to: opts.reply_to,
            parent_task_id: opts.parent_task_id,
        };
        self.typed("POST", "/v1/messages", Some(&to_body(&b)?))
    }

    /// A direct message (channel label `direct`).
    pub fn dm(&self, to: &str, body: &str, opts: Post) -> Result<Message> {
        self.post(
            "direct",
            body,
            Post {
                to_agent: Some(to.to_string()),
                ..opts
            },
        )
    }

    /// Tells the hub the agent read everything up to `up_to_id`
    /// (docs/PROTOCOL.md, "Delivery and wake"). Best effort: a hub
    /// without the delivery record (the reference) just says 404, and a
    /// failure never spoils what was already printed.
    pub fn mark_read(&self, up_to_id: i64) {
        let path = format!("/v1/agents/{}/read", self.q());
        let body = json!({ "up_to_id": up_to_id });
        let _ = self.request("POST", &path, Some(&body), Duration::from_secs(5));
    }

    /// One long-poll of `/v1/events` from the cursor; advances the cursor.
    pub fn poll(
        &mut self,
        timeout: f64,
        channel: Option<&str>,
        thread_id: Option<&str>,
        exclude_self: bool,
        limit: i64,
    ) -> Result<Vec<Message>> {
        let mut path = format!(
            "/v1/events?agent_id={}&since_id={}&timeout={timeout:?}&limit={limit}",
            self.q(),
            self.cursor
        );
        if exclude_self {
            path.push_str("&exclude_self=1");
        }
        if let Some(c) = channel {
            path.push_str(&format!("&channel={}", percent_encode(c)));
        }
        if let Some(t) = thread_id {
            path.push_str(&format!("&thread_id={}", percent_encode(t)));
        }
        let wait = self
            .timeout
            .max(Duration::from_secs_f64(timeout.max(0.0)) + Duration::from_secs(5));
        let env = match self.exchange("GET", &path, None, wait)? {
            Reply::Parsed(status, value) => envelope_result(status, value)?,
            // A page too big to parse may hold messages that each fit:
            // read the first one alone (it is there, so without waiting).
            Reply::Oversized { .. } if limit > 1 => {
                return self.poll(0.0, channel, thread_id, exclude_self, 1);
            }
            Reply::Oversized { why, first_id } => {
                let which = match first_id {
                    Some(id) => format!("message {id}"),
                    None => format!("the message after id {}", self.cursor),
                };
                return Err(Error::Protocol(format!(
                    "{}; {which} cannot be read: poll from a later id to go past it",
                    self.refused("GET", &path, &why)
                )));
            }
        };
        let msgs: Vec<Message> =
            serde_json::from_value(env.get("result").cloned().unwrap_or(json!([])))?;
        if let Some(last) = msgs.iter().map(|m| m.id).max() {
            self.cursor = self.cursor.max(last);
        }
        Ok(msgs)
    }

    pub fn create_channel(
        &self,
        name: &str,
        metadata: Option<&Map<String, Value>>,
    ) -> Result<crate::wire::Channel> {
        let b = requests::CreateChannel {
            name: name.to_string(),
            created_by: self.agent_id.clone(),
            metadata: metadata.cloned(),
        };
        self.typed("POST", "/v1/channels", Some(&to_body(&b)?))
    }

    pub fn channels(&self) -> Result<Vec<crate::wire::Channel>> {
        self.typed("GET", "/v1/channels", None)
    }

    /// `GET /v1/agents?as=<self>`.
    pub fn agents(&self, capability: Option<&str>) -> Result<Vec<Session>> {
        let mut path = format!("/v1/agents?as={}", self.q());
        if let Some(c) = capability {
            path.push_str(&format!("&capability={}", percent_encode(c)));
        }
        self.typed("GET", &path, None)
    }

    fn lease<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<Lease<T>> {
        let mut env = self.request("POST", path, Some(&to_body(body)?), self.timeout)?;
        let acquired = env
            .get("acquired")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let row = serde_json::from_value(
            env.get_mut("result")
                .map(Value::take)
                .unwrap_or(Value::Null),
        )?;
        Ok(Lease { acquired, row })
    }

    pub fn claim(
        &self,
        key: &str,
        thread_id: Option<&str>,
        task_message_id: Option<i64>,
        ttl_sec: i64,
        metadata: Option<&Map<String, Value>>,
    ) -> Result<Lease<Claim>> {
        let b = requests::Claim {
            owner_agent_id: self.agent_id.clone(),
            claim_key: key.to_string(),
            ttl_sec,
            thread_id: thread_id.map(str::to_string),
            task_message_id,
            metadata: metadata.cloned(),
        };
        self.lease("/v1/claims", &b)
    }

    pub fn refresh_claim(&self, key: &str, ttl_sec: i64) -> Result<Lease<Claim>> {
        let b = requests::RefreshClaim {
            claim_key: key.to_string(),
            owner_agent_id: self.agent_id.clone(),
            ttl_sec,
        };
        self.lease("/v1/claims/refresh", &b)
    }

    pub fn release(&self, key: &str) -> Result<Claim> {
        let b = requests::ReleaseClaim {
            claim_key: key.to_string(),
            agent_id: self.agent_id.clone(),
        };
        self.typed("POST", "/v1/claims/release", Some(&to_body(&b)?))
    }

    pub fn lock(
        &self,
        path: &str,
        ttl_sec: i64,
        metadata: Option<&Map<String, Value>>,
    ) -> Result<Lease<Lock>> {
        let b = requests::Lock {
            agent_id: self.agent_id.clone(),
            file_path: path.to_string(),
            ttl_sec,
            metadata: metadata.cloned(),
        };
        self.lease("/v1/locks", &b)
    }

    pub fn refresh_lock(&self, path: &str, ttl_sec: i64) -> Result<Lease<Lock>> {
        let b = requests::Lock {
            agent_id: self.agent_id.clone(),
            file_path: path.to_string(),
            ttl_sec,
            metadata: None,
        };
        self.lease("/v1/locks/refresh", &b)
    }

    pub fn unlock(&self, path: &str) -> Result<Lock> {
        let b = requests::ReleaseLock {
            agent_id: self.agent_id.clone(),
            file_path: path.to_string(),
        };
        self.typed("POST", "/v1/locks/release", Some(&to_body(&b)?))
    }

    pub fn get_thread(&self, thread_id: &str) -> Result<ThreadDetail> {
        self.typed(
            "GET",
            &format!("/v1/threads/{}", percent_encode(thread_id)),
            None,
        )
    }

    /// Completes a task; returns it and whether its parent was completed.
    pub fn complete_task(&self, task_id: i64) -> Result<(Task, bool)> {
        let mut env = self.request(
            "POST",
            &format!("/v1/tasks/{task_id}/complete"),
            Some(&to_body(&requests::Empty {})?),
            self.timeout,
        )?;
        let parent = env
            .get("parent_completed")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok((
            serde_json::from_value(
                env.get_mut("result")
                    .map(Value::take)
                    .unwrap_or(Value::Null),
            )?,
            parent,
        ))
    }

    pub fn tasks(&self, query: &str) -> Result<Vec<Task>> {
        let path = if query.is_empty() {
            "/v1/tasks".to_string()
        } else {
            format!("/v1/tasks?{query}")
        };
        self.typed("GET", &path, None)
    }

    /// `GET /v1/messages` of a channel (and thread) from `since_id`.
    pub fn messages(
        &self,
        channel: &str,
        thread_id: Option<&str>,
        since_id: i64,
    ) -> Result<Vec<Message>> {
        let mut path = format!(
            "/v1/messages?channel={}&since_id={since_id}",
            percent_encode(channel)
        );
        if let Some(t) = thread_id {
            path.push_str(&format!("&thread_id={}", percent_encode(t)));
        }
        self.typed("GET", &path, None)
    }

    /// `GET /v1/claims`, optionally of one thread and only active ones.
    pub fn claims(&self, thread_id: Option<&str>, active_only: bool) -> Result<Vec<Claim>> {
        let mut q = Vec::new();
        if let Some(t) = thread_id {
            q.push(format!("thread_id={}", percent_encode(t)));
        }
        if active_only {
            q.push("active_only=true".to_string());
        }
        let path = match q.is_empty() {
            true => "/v1/claims".to_string(),
            false => format!("/v1/claims?{}", q.join("&")),
        };
        self.typed("GET", &path, None)
    }

    /// `GET /v1/inbox/<self>` from `since_id`.
    pub fn inbox(&self, since_id: i64, limit: i64) -> Result<Vec<Message>> {
        self.typed(
            "GET",
            &format!("/v1/inbox/{}?since_id={since_id}&limit={limit}", self.q()),
            None,
        )
    }

    /// Closes the session (errors are ignored; idempotent).
    pub fn close(&mut self) {
        if let Some(sid) = self.session_id.take() {
            let _ = self.request(
                "DELETE",
                &format!("/v1/sessions/{}", percent_encode(&sid)),
                None,
                self.timeout,
            );
        }
    }

    /// RPC: posts a `task_request` DM and waits for the `task_result` that
    /// replies to it, long-polling `/v1/events` with an advancing cursor.
    pub fn call(
        &self,
        to_agent: &str,
        body: &str,
        channel: &str,
        timeout: Duration,
        metadata: Option<Map<String, Value>>,
    ) -> Result<Message> {
        let request = self.post(
            channel,
            body,
            Post {
                kind: Some("task_request".into()),
                to_agent: Some(to_agent.to_string()),
                metadata,
                ..Post::default()
            },
        )?;
        let deadline = Instant::now() + timeout;
        let mut cursor = request.id;
        let mut probe = self.clone();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Hub {
                    status: 408,
                    message: format!("RPC to {to_agent} timed out after {}s", fmt_secs(timeout)),
                });
            }
            probe.cursor = cursor;
            let wait = left.as_secs_f64().min(30.0);
            let batch = probe.poll(wait, None, None, true, 500)?;
            for m in &batch {
                if m.kind == "task_result" && m.reply_to == Some(request.id) {
                    return Ok(m.clone());
                }
            }
            cursor = probe.cursor.max(cursor);
        }
    }
}

/// An answer as a transport brings it back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// The HTTP status (0 for a relay's envelope) and the JSON.
    Parsed(u16, Value),
    /// Beyond [`ANSWER_LIMITS`], so never parsed: the limit, and the id
    /// of the first message in it when one is seen.
    Oversized { why: String, first_id: Option<i64> },
}

/// `{"ok": true}` is the envelope; anything else is a hub error.
fn envelope_result(status: u16, value: Value) -> Result<Value> {
    if value.get("ok") == Some(&Value::Bool(true)) {
        return Ok(value);
    }
    let message = value
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("unknown hub error")
        .to_string();
    Err(Error::Hub { status, message })
}

/// A relay's response envelope as an HTTP status and answer; a transport
/// failure the relay (or our relay client) reports is an error.
fn relay_envelope(env: Value) -> Result<(u16, Value)> {
    let status = env.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
    match env.get("body") {
        Some(b @ Value::Object(_)) => Ok((status, b.clone())),
        Some(b) if env.get("ok") == Some(&Value::Bool(true)) => {
            Ok((status, json!({"ok": true, "result": b})))
        }
        _ => {
            let msg = env
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("relay transport error");
            if (597..=599).contains(&status)
                || status == 500
                || status == 400 && !env.get("body").is_some_and(Value::is_object)
            {
                return Err(Error::Transport(msg.to_string()));
            }
            Ok((status, json!({"ok": false, "error": msg})))
        }
    }
}

/// The id of the first message in an answer that cannot be parsed: the
/// first `"id": <digits>` after `"result"` (a message's first field, in
/// this hub's pages and the reference's), looked for in the first 64 KiB.
/// Only for naming it in an error.
pub(crate) fn first_message_id(body: &[u8]) -> Option<i64> {
    let head = &body[..body.len().min(64 << 10)];
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let after_result = find(head, b"\"result\"")? + 8;
    let rest = &head[after_result..];
    let at = find(rest, b"\"id\"")? + 4;
    let rest = &rest[at..];
    let rest = rest
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.1}")
    } else {
        format!("{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_message_of_an_unreadable_page_is_named() {
        let page = br#"{"ok": true, "result": [{"id": 42, "metadata": {"id": 7}}, {"id": 43}]}"#;
        assert_eq!(first_message_id(page), Some(42));
        let relayed = b"{\n  \"request_id\": \"x\",\n  \"body\": {\n    \"ok\": true,\n    \"result\": [\n      {\n        \"id\" :  17,";
        assert_eq!(first_message_id(relayed), Some(17));
        assert_eq!(first_message_id(br#"{"id": 5, "result": []}"#), None);
        assert_eq!(
            first_message_id(br#"{"result": {"session_id": "a"}}"#),
            None
        );
        assert_eq!(first_message_id(b""), None);
    }

    #[test]
    fn relay_envelopes_become_answers_or_transport_errors() {
        let ok = json!({"ok": true, "status": 200, "body": {"ok": true, "result": 1}});
        assert_eq!(
            relay_envelope(ok).unwrap(),
            (200, json!({"ok": true, "result": 1}))
        );
        let text = json!({"ok": true, "status": 200, "body": "plain"});
        assert_eq!(
            relay_envelope(text).unwrap(),
            (200, json!({"ok": true, "result": "plain"}))
        );
        let timeout = json!({"ok": false, "status": 598, "error": "relay timed out"});
        let e = relay_envelope(timeout).unwrap_err();
        assert!(matches!(e, Error::Transport(_)), "{e:?}");
        let e = envelope_result(404, json!({"ok": false, "error": "nope"})).unwrap_err();
        assert_eq!(e.to_string(), "hub: nope (HTTP 404)");
    }
}
