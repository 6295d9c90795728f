/*!
A blocking client for the hub: the one way this crate talks to a hub.

Two layers:

* [`http_request`]: a small HTTP/1.1 client over `std::net::TcpStream`
  (one request per connection, `Connection: close`). It reads
  Content-Length, chunked and close-delimited bodies, with connect and
  read timeouts.
* [`Client`]: the API of the reference `ArcClient` (register, bootstrap,
  post, poll with a cursor, claims, locks, threads, tasks, RPC `call`)
  over a [`Transport`]: HTTP, or the file relay for sandboxed agents.

Unlike the reference, claim and lock calls return the `acquired` flag, and
`call()` long-polls `/v1/events` with an advancing cursor, so a busy
channel cannot hide the answer (spec §15.8 items 48–49).
*/

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::input::percent_encode;
use crate::wire::{Bootstrap, Claim, Lock, Message, Session, Task, ThreadDetail};

/// An HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A parsed `http://host:port/prefix` base URL.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseUrl {
    /// `host:port`, IPv6 bracketed, for connecting and the Host header.
    pub authority: String,
    pub prefix: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl> {
        let rest = url.trim().strip_prefix("http://").ok_or_else(|| {
            Error::Transport(format!(
                "unsupported URL {url:?} (only http:// is supported)"
            ))
        })?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(Error::Transport(format!("URL {url:?} has no host")));
        }
        let has_port = match authority.rfind(']') {
            Some(close) => authority[close..].contains(':'),
            None => authority.contains(':'),
        };
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(BaseUrl {
            authority,
            prefix: prefix.to_string(),
        })
    }
}

/// Sends one request and reads the whole response. `read_timeout` bounds
/// each read; callers of long-polls pass more than the poll's wait.
pub fn http_request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    extra_headers: &[(&str, &str)],
    read_timeout: Duration,
) -> Result<HttpResponse> {
    let url = BaseUrl::parse(base)?;
    let connect_timeout = Duration::from_secs(5).min(read_timeout.max(Duration::from_millis(100)));
    let addrs: Vec<_> = url
        .authority
        .to_socket_addrs()
        .map_err(|e| Error::Transport(format!("cannot resolve {}: {e}", url.authority)))?
        .collect();
    let mut last_err = None;
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, connect_timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let mut stream = stream.ok_or_else(|| {
        Error::Transport(match last_err {
            Some(e) => format!("{base}: {e}"),
            None => format!("{base}: no address"),
        })
    })?;
    stream.set_read_timeout(Some(read_timeout))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let _ = stream.set_nodelay(true);
    let mut head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: arc-hub/{}\r\n",
        url.prefix,
        url.authority,
        crate::state::VERSION
    );
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    stream
        .write_all(&out)
        .map_err(|e| Error::Transport(format!("{base}: {e}")))?;
    // `read_timeout` bounds each read; the whole response must also
    // arrive within it plus a transfer allowance, so a peer that trickles
    // bytes forever (an event stream, a hostile server) cannot hold us.
    let stream = Deadline {
        s: stream,
        per_read: read_timeout,
        end: Instant::now() + read_timeout + read_timeout.min(TRANSFER_ALLOWANCE),
    };
    read_response(stream, method == "HEAD").map_err(|e| match e {
        Error::Io(io) => Error::Transport(format!("{base}: {io}")),
        other => other,
    })
}

/// Extra time, beyond one read timeout, for a whole response to arrive
/// (at most this, and at most the read timeout again).
const TRANSFER_ALLOWANCE: Duration = Duration::from_secs(30);

/// The largest response body we accept (a hub's biggest answers are a few
/// megabytes; this only stops a lying or broken peer).
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// A socket whose reads share one overall deadline.
struct Deadline {
    s: TcpStream,
    per_read: Duration,
    end: Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "response took too long",
            ));
        }
        self.s.set_read_timeout(Some(left.min(self.per_read)))?;
        self.s.read(buf)
    }
}

fn too_big() -> Error {
    Error::Protocol(format!("response body exceeds {MAX_RESPONSE_BYTES} bytes"))
}

/// Reads an HTTP/1.x response from `stream`.
pub fn read_response<R: Read>(stream: R, head_only: bool) -> Result<HttpResponse> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    let mut status;
    let mut headers;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(Error::Protocol(
                "connection closed before a response".into(),
            ));
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(Error::Protocol(format!(
                "not an HTTP response: {:?}",
                line.trim_end()
            )));
        }
        status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| Error::Protocol(format!("bad status line: {:?}", line.trim_end())))?;
        headers = Vec::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(Error::Protocol(
                    "connection closed inside the headers".into(),
                ));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        // 1xx interim responses (100 Continue) are followed by the real one.
        if !(100..200).contains(&status) {
            break;
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if head_only || status == 204 || status == 304 {
        // no body
    } else if find("Transfer-Encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(Error::Protocol(
                    "connection closed inside a chunked body".into(),
                ));
            }
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| Error::Protocol(format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                // trailers until the blank line
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let end = body
                .len()
                .checked_add(size)
                .filter(|n| *n <= MAX_RESPONSE_BYTES)
                .ok_or_else(too_big)?;
            read_up_to(&mut r, &mut body, end)?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(len) = find("Content-Length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| Error::Protocol(format!("bad Content-Length {len:?}")))?;
        if len > MAX_RESPONSE_BYTES {
            return Err(too_big());
        }
        read_up_to(&mut r, &mut body, len)?;
    } else {
        (&mut r)
            .take(MAX_RESPONSE_BYTES as u64 + 1)
            .read_to_end(&mut body)?;
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(too_big());
        }
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Reads until `body` is `end` bytes long, growing it as data arrives
/// (never allocating what a peer merely announces).
fn read_up_to<R: Read>(r: &mut R, body: &mut Vec<u8>, end: usize) -> Result<()> {
    let want = (end - body.len()) as u64;
    let got = r.take(want).read_to_end(body)?;
    if (got as u64) < want {
        return Err(Error::Protocol("connection closed inside the body".into()));
    }
    Ok(())
}

/// How a [`Client`] reaches the hub.
#[derive(Debug, Clone)]
pub enum Transport {
    Http { base_url: String },
    Relay(crate::relay::RelayClient),
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
            transport: Transport::Relay(crate::relay::RelayClient::new(spool_dir, agent_id)),
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
    /// transport failures become errors.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let (status, value) = match &self.transport {
            Transport::Http { base_url } => {
                let bytes = body.map(serde_json::to_vec).transpose()?;
                let resp = http_request(base_url, method, path, bytes.as_deref(), &[], timeout)?;
                let v = resp.json();
                if v.is_object() {
                    (resp.status, v)
                } else if (200..300).contains(&resp.status) {
                    (
                        resp.status,
                        json!({"ok": true, "result": Value::String(resp.text())}),
                    )
                } else {
                    (resp.status, json!({"ok": false, "error": resp.text()}))
                }
            }
            Transport::Relay(r) => {
                // Whatever relay serves the spool (ours, or the reference's
                // with its 30 s forward timeout) must get the hub's answer
                // before it gives up, so ask for at most RELAY_MAX_WAIT_SEC.
                let (path, _) = crate::relay::clamp_long_poll(path, RELAY_MAX_WAIT_SEC);
                let env = r.call(method, &path, body.cloned(), timeout)?;
                let status = env.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
                match env.get("body") {
                    Some(b @ Value::Object(_)) => (status, b.clone()),
                    Some(b) if env.get("ok") == Some(&Value::Bool(true)) => {
                        (status, json!({"ok": true, "result": b}))
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
                        (status, json!({"ok": false, "error": msg}))
                    }
                }
            }
        };
        if value.get("ok") == Some(&Value::Bool(true)) {
            Ok(value)
        } else {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown hub error")
                .to_string();
            Err(Error::Hub { status, message })
        }
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
        let mut body = json!({"agent_id": self.agent_id, "replace": replace});
        if let Some(d) = display_name {
            body["display_name"] = json!(d);
        }
        if let Some(c) = capabilities {
            body["capabilities"] = json!(c);
        }
        if let Some(m) = metadata {
            body["metadata"] = Value::Object(m.clone());
        }
        let s: Session = self.typed("POST", "/v1/sessions", Some(&body))?;
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
        let mut b = json!({
            "from_agent": self.agent_id,
            "channel": channel,
            "kind": opts.kind.as_deref().unwrap_or("chat"),
            "body": body,
        });
        if let Some(v) = opts.thread_id {
            b["thread_id"] = json!(v);
        }
        if let Some(v) = opts.to_agent {
            b["to_agent"] = json!(v);
        }
        if let Some(v) = opts.attachments {
            b["attachments"] = json!(v);
        }
        if let Some(v) = opts.metadata {
            b["metadata"] = Value::Object(v);
        }
        if let Some(v) = opts.reply_to {
            b["reply_to"] = json!(v);
        }
        if let Some(v) = opts.parent_task_id {
            b["parent_task_id"] = json!(v);
        }
        self.typed("POST", "/v1/messages", Some(&b))
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
        let env = self.request("GET", &path, None, wait)?;
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
        let mut b = json!({"name": name, "created_by": self.agent_id});
        if let Some(m) = metadata {
            b["metadata"] = Value::Object(m.clone());
        }
        self.typed("POST", "/v1/channels", Some(&b))
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

    fn lease<T: serde::de::DeserializeOwned>(&self, path: &str, body: Value) -> Result<Lease<T>> {
        let mut env = self.request("POST", path, Some(&body), self.timeout)?;
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
        let mut b = json!({"owner_agent_id": self.agent_id, "claim_key": key, "ttl_sec": ttl_sec});
        if let Some(t) = thread_id {
            b["thread_id"] = json!(t);
        }
        if let Some(t) = task_message_id {
            b["task_message_id"] = json!(t);
        }
        if let Some(m) = metadata {
            b["metadata"] = Value::Object(m.clone());
        }
        self.lease("/v1/claims", b)
    }

    pub fn refresh_claim(&self, key: &str, ttl_sec: i64) -> Result<Lease<Claim>> {
        self.lease(
            "/v1/claims/refresh",
            json!({"claim_key": key, "owner_agent_id": self.agent_id, "ttl_sec": ttl_sec}),
        )
    }

    pub fn release(&self, key: &str) -> Result<Claim> {
        self.typed(
            "POST",
            "/v1/claims/release",
            Some(&json!({"claim_key": key, "agent_id": self.agent_id})),
        )
    }

    pub fn lock(
        &self,
        path: &str,
        ttl_sec: i64,
        metadata: Option<&Map<String, Value>>,
    ) -> Result<Lease<Lock>> {
        let mut b = json!({"agent_id": self.agent_id, "file_path": path, "ttl_sec": ttl_sec});
        if let Some(m) = metadata {
            b["metadata"] = Value::Object(m.clone());
        }
        self.lease("/v1/locks", b)
    }

    pub fn refresh_lock(&self, path: &str, ttl_sec: i64) -> Result<Lease<Lock>> {
        self.lease(
            "/v1/locks/refresh",
            json!({"agent_id": self.agent_id, "file_path": path, "ttl_sec": ttl_sec}),
        )
    }

    pub fn unlock(&self, path: &str) -> Result<Lock> {
        self.typed(
            "POST",
            "/v1/locks/release",
            Some(&json!({"agent_id": self.agent_id, "file_path": path})),
        )
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
            Some(&json!({})),
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
    fn lying_or_broken_peers_get_errors_not_allocations() {
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000\r\n\r\nabc";
        let e = read_response(&huge[..], false).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
        let chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc";
        let e = read_response(&chunk[..], false).unwrap_err();
        assert!(e.to_string().contains("exceeds"), "{e}");
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let e = read_response(&short[..], false).unwrap_err();
        assert!(e.to_string().contains("closed inside the body"), "{e}");
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(read_response(&ok[..], false).unwrap().text(), "abc");
    }

    #[test]
    fn a_trickling_peer_cannot_hold_a_request_forever() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
            // One byte every 50 ms: each read succeeds, the whole never ends.
            for _ in 0..100 {
                if s.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let t0 = Instant::now();
        let r = http_request(&url, "GET", "/", None, &[], Duration::from_millis(300));
        assert!(r.is_err(), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        server.join().unwrap();
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            BaseUrl::parse("http://127.0.0.1:6969").unwrap(),
            BaseUrl {
                authority: "127.0.0.1:6969".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            BaseUrl::parse("http://[::1]:7/arc/").unwrap(),
            BaseUrl {
                authority: "[::1]:7".into(),
                prefix: "/arc".into()
            }
        );
        assert_eq!(
            BaseUrl::parse("http://localhost").unwrap().authority,
            "localhost:80"
        );
        assert!(BaseUrl::parse("https://x").is_err());
        assert!(BaseUrl::parse("http://").is_err());
    }

    #[test]
    fn reads_every_body_framing() {
        let cl = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloEXTRA";
        let r = read_response(&cl[..], false).unwrap();
        assert_eq!(
            (r.status, r.text().as_str(), r.header("x-a")),
            (200, "hello", Some("b"))
        );
        let chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n";
        let r = read_response(&chunked[..], false).unwrap();
        assert_eq!((r.status, r.text().as_str()), (201, "abcde"));
        let closed = b"HTTP/1.0 404 Not Found\r\n\r\n{\"ok\":false}";
        let r = read_response(&closed[..], false).unwrap();
        assert_eq!(r.json(), json!({"ok": false}));
        let cont = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(read_response(&cont[..], false).unwrap().text(), "ok");
    }

    #[test]
    fn rejects_broken_responses() {
        assert!(read_response(&b""[..], false).is_err());
        assert!(read_response(&b"SSH-2.0-x\r\n"[..], false).is_err());
        assert!(
            read_response(
                &b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"[..],
                false
            )
            .is_err()
        );
        assert!(
            read_response(
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
                false
            )
            .is_err()
        );
    }

    #[test]
    fn unreachable_hub_is_a_transport_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = http_request(
            &format!("http://127.0.0.1:{port}"),
            "GET",
            "/",
            None,
            &[],
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Transport(_)), "{e:?}");
        assert!(e.to_string().starts_with("connection error: "), "{e}");
    }
}
