/*!
`arc mcp`: a Model Context Protocol server on stdio for one agent.

An MCP host (Claude Desktop, Claude Code, Cursor, ...) starts
`arc mcp --agent <id>` and speaks JSON-RPC 2.0 over the process's stdin and
stdout. [`serve`] is the whole protocol loop, generic over any `BufRead` and
`Write`, so tests drive it in memory; [`run_stdio`] binds it to the real
stdio and to a [`Client`] for `--base-url` or `--relay-dir`.

Framing. The MCP stdio transport carries one JSON message per line, and
that is what we read and write by default. Input whose first line starts
with `Content-Length:` or `Content-Type:` (any case) is read as an
LSP-style header block plus a body of exactly that many **bytes**, which is
what the reference adapter spoke; the framing of the first message read
then fixes the framing of every reply. Stdout carries protocol messages
only; logs go to stderr.

Threads. The main loop handles one request at a time (a slow tool call,
such as `arc_rpc_call`, delays the next request). Two helper threads share
its state:

* the keepalive thread registers the agent (lazily: the hub may be down
  when the host starts us; tool calls also try), refreshes presence every
  [`Options::keepalive`] with `GET /v1/agents?as=<id>`, and registers again
  if the hub forgot the agent;
* the push thread sleeps until a client subscribes to [`INBOX_URI`], then
  long-polls `/v1/events` and sends `notifications/resources/updated` when
  a message visible to the agent (and not its own) arrives.

The writer sits behind one mutex, so a reply and a notification never
interleave. On EOF the loop stops both threads, closes the hub session
and returns; a helper still parked in a long-poll is left to finish on its
own (it writes nothing once the loop has stopped), so returning is bounded
by [`Options::exit_grace`], not by the poll.

Invariant: this module talks to the hub only through [`Client`]; it never
touches the store.
*/

use std::io::{BufRead, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::client::{Client, Post};
use crate::error::{Error, Result};
use crate::input::percent_encode;
use crate::notify::{Watch, pause};

/// MCP revisions we speak, newest first; `initialize` echoes the client's
/// choice when it is one of these and answers with the first otherwise.
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];

/// The agent `arc mcp` speaks for when `--agent` is not given.
pub const DEFAULT_AGENT: &str = "mcp-client";

/// The one resource: the agent's visible feed.
pub const INBOX_URI: &str = "arc://inbox";

/// The largest message we accept (a line, or a Content-Length body).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP's code for an unknown resource URI.
pub const RESOURCE_NOT_FOUND: i64 = -32002;

/// Timings of the helper threads.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often presence is refreshed; below a third of the hub's
    /// presence TTL (120 s by default).
    pub keepalive: Duration,
    /// How long one push long-poll waits at the hub.
    pub push_wait: Duration,
    /// First delay before retrying a failed registration or push poll
    /// (doubled on each failure, capped at `keepalive`).
    pub retry: Duration,
    /// How long `serve` waits for its helpers after EOF.
    pub exit_grace: Duration,
    /// Log to stderr.
    pub log: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            keepalive: Duration::from_secs(30),
            push_wait: Duration::from_secs(25),
            retry: Duration::from_secs(1),
            exit_grace: Duration::from_secs(2),
            log: true,
        }
    }
}

/// How messages are delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON message per line (the MCP stdio transport).
    Lines,
    /// `Content-Length: N\r\n\r\n` followed by N bytes (LSP style).
    ContentLength,
}

/// Serves MCP on stdin/stdout until EOF.
pub fn run_stdio(args: &crate::client::Endpoint) -> Result<()> {
    let client = match &args.relay_dir {
        Some(dir) => Client::over_relay(&args.agent, &crate::paths::absolute(dir)?),
        None => Client::http(&args.agent, &args.base_url),
    };
    let opts = Options::default();
    let shared = Shared::new(client, opts, Box::new(std::io::stdout()));
    let on_signal = shared.clone();
    // A host that kills us instead of closing stdin still gets the
    // session closed.
    crate::sys::on_terminate(move || {
        on_signal.stop();
        on_signal.close_session();
        std::process::exit(0);
    })?;
    shared.log(&format!(
        "serving agent {:?} via {}",
        args.agent,
        match &args.relay_dir {
            Some(d) => format!("relay spool {}", d.display()),
            None => args.base_url.clone(),
        }
    ));
    run(&shared, std::io::BufReader::new(std::io::stdin()))
}

/// Runs the protocol loop over `reader` and `writer` for `client`'s agent
/// until `reader` reaches EOF (or `writer` fails), then closes the session.
pub fn serve<R, W>(reader: R, writer: W, client: Client, opts: Options) -> Result<()>
where
    R: BufRead + Send + 'static,
    W: Write + Send + 'static,
{
    run(&Shared::new(client, opts, Box::new(writer)), reader)
}

/// What the loop waits for: input from the reader thread, or the answer
/// of the request being handled on a call thread.
enum Event {
    Input(std::io::Result<Incoming>),
    Done(Option<Value>),
}

/// The protocol loop. Input is read on its own thread and requests are
/// handled one at a time on a call thread, so this loop always sees EOF:
/// once stdin closes, what is still queued or in flight gets at most
/// [`Options::exit_grace`], then the loop stops (a tool call that waits
/// for a long time is abandoned; it writes nothing once stopped).
fn run<R: BufRead + Send + 'static>(shared: &Arc<Shared>, mut reader: R) -> Result<()> {
    let helpers = [
        spawn("arc-mcp-keepalive", shared, Shared::keepalive_loop)?,
        spawn("arc-mcp-push", shared, Shared::push_loop)?,
    ];
    let (tx, rx) = std::sync::mpsc::channel::<Event>();
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("arc-mcp-stdin".into())
            .spawn(move || {
                loop {
                    let item = read_message(&mut reader);
                    let last = !matches!(item, Ok(Incoming::Message(..)) | Ok(Incoming::Bad(..)));
                    if tx.send(Event::Input(item)).is_err() || last {
                        return;
                    }
                }
            })?;
    }
    let mut queue: std::collections::VecDeque<Vec<u8>> = Default::default();
    let mut busy = false;
    let mut eof_at: Option<Instant> = None;
    let outcome = loop {
        if eof_at.is_some() && !busy && queue.is_empty() {
            break Ok(());
        }
        let event = match eof_at {
            None => rx.recv().ok(),
            Some(t) => {
                let left = (t + shared.opts.exit_grace).saturating_duration_since(Instant::now());
                rx.recv_timeout(left).ok()
            }
        };
        let Some(event) = event else {
            if busy {
                shared.log("stdin closed while a request was in flight; stopping");
            }
            break Ok(());
        };
        let reply = match event {
            Event::Input(Ok(Incoming::Message(bytes, framing))) => {
                shared.set_framing(framing);
                queue.push_back(bytes);
                None
            }
            Event::Input(Ok(Incoming::Bad(message, framing))) => {
                shared.set_framing(framing);
                Some(error_reply(Value::Null, PARSE_ERROR, &message))
            }
            Event::Input(Ok(Incoming::Eof)) => {
                eof_at = Some(Instant::now());
                None
            }
            Event::Input(Err(e)) => {
                shared.log(&format!("stdin: {e}"));
                eof_at = Some(Instant::now());
                None
            }
            Event::Done(reply) => {
                busy = false;
                reply
            }
        };
        if let Some(reply) = reply {
            if !shared.send(&reply) {
                shared.log("stdout is closed; stopping");
                break Ok(());
            }
        }
        if !busy {
            if let Some(bytes) = queue.pop_front() {
                busy = true;
                let (sh, tx) = (shared.clone(), tx.clone());
                std::thread::Builder::new()
                    .name("arc-mcp-call".into())
                    .spawn(move || {
                        let reply = catch_unwind(AssertUnwindSafe(|| sh.handle_bytes(&bytes)))
                            .unwrap_or_else(|_| {
                                Some(error_reply(
                                    Value::Null,
                                    INTERNAL_ERROR,
                                    "internal error: request handler panicked",
                                ))
                            });
                        let _ = tx.send(Event::Done(reply));
                    })?;
            }
        }
    };
    shared.stop();
    shared.close_session();
    let deadline = Instant::now() + shared.opts.exit_grace;
    for h in helpers {
        join_until(h, deadline);
    }
    outcome
}

fn spawn(name: &str, shared: &Arc<Shared>, f: fn(&Shared)) -> Result<JoinHandle<()>> {
    let shared = shared.clone();
    Ok(std::thread::Builder::new()
        .name(name.into())
        .spawn(move || f(&shared))?)
}

/// Joins `h` if it finishes before `deadline`; otherwise leaves it running.
fn join_until(h: JoinHandle<()>, deadline: Instant) {
    for _ in 0..10_000 {
        if h.is_finished() {
            let _ = h.join();
            return;
        }
        if Instant::now() >= deadline {
            return;
        }
        pause(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------
// Framing

/// One unit of input.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// A message body (not yet parsed) and the framing it came in.
    Message(Vec<u8>, Framing),
    /// Input that cannot be a message (answered with a parse error).
    Bad(String, Framing),
    Eof,
}

/// Reads the next message: a non-blank line, or a header block and its
/// Content-Length body. Blank lines between messages are skipped.
pub fn read_message<R: BufRead>(r: &mut R) -> std::io::Result<Incoming> {
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line(r, &mut line)? {
            Line::Eof => return Ok(Incoming::Eof),
            Line::TooLong => {
                return Ok(Incoming::Bad(
                    format!("parse error: message exceeds {MAX_MESSAGE_BYTES} bytes"),
                    Framing::Lines,
                ));
            }
            Line::Ok => {}
        }
        let text = trim_ascii(&line);
        if text.is_empty() {
            continue;
        }
        if !is_header(text) {
            return Ok(Incoming::Message(text.to_vec(), Framing::Lines));
        }
        return read_framed(r, text.to_vec());
    }
}

fn read_framed<R: BufRead>(r: &mut R, first: Vec<u8>) -> std::io::Result<Incoming> {
    let cl = Framing::ContentLength;
    let mut length: Option<std::result::Result<usize, String>> = None;
    let mut header = first;
    for _ in 0..1000 {
        let text = String::from_utf8_lossy(trim_ascii(&header)).into_owned();
        if text.is_empty() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .trim()
                        .parse::<usize>()
                        .map_err(|_| format!("bad Content-Length {:?}", value.trim())),
                );
            }
        }
        header.clear();
        match read_line(r, &mut header)? {
            Line::Eof => return Ok(Incoming::Eof),
            Line::TooLong => return Ok(Incoming::Bad("parse error: header too long".into(), cl)),
            Line::Ok => {}
        }
    }
    let n = match length {
        None => return Ok(Incoming::Bad("parse error: no Content-Length".into(), cl)),
        Some(Err(e)) => return Ok(Incoming::Bad(format!("parse error: {e}"), cl)),
        Some(Ok(n)) => n,
    };
    if n > MAX_MESSAGE_BYTES {
        // Skip the body to stay in step with the stream.
        let skipped = std::io::copy(&mut r.take(n as u64), &mut std::io::sink())?;
        if skipped < n as u64 {
            return Ok(Incoming::Eof);
        }
        return Ok(Incoming::Bad(
            format!("parse error: message exceeds {MAX_MESSAGE_BYTES} bytes"),
            cl,
        ));
    }
    let mut body = vec![0; n];
    match r.read_exact(&mut body) {
        Ok(()) => Ok(Incoming::Message(body, cl)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(Incoming::Eof),
        Err(e) => Err(e),
    }
}

enum Line {
    Ok,
    TooLong,
    Eof,
}

/// Reads up to and including `\n`, at most [`MAX_MESSAGE_BYTES`]; a longer
/// line is consumed and reported as `TooLong`.
fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    let n = r
        .by_ref()
        .take(MAX_MESSAGE_BYTES as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.len() > MAX_MESSAGE_BYTES && buf.last() != Some(&b'\n') {
        r.skip_until(b'\n')?;
        return Ok(Line::TooLong);
    }
    Ok(Line::Ok)
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace());
    match start {
        None => &[],
        Some(s) => {
            let end = b
                .iter()
                .rposition(|c| !c.is_ascii_whitespace())
                .unwrap_or(s);
            &b[s..=end]
        }
    }
}

fn is_header(line: &[u8]) -> bool {
    let lower = line
        .iter()
        .take(16)
        .map(u8::to_ascii_lowercase)
        .collect::<Vec<_>>();
    lower.starts_with(b"content-length:") || lower.starts_with(b"content-type:")
}

/// Frames one serialized message.
pub fn frame(text: &str, framing: Framing) -> Vec<u8> {
    match framing {
        Framing::Lines => format!("{text}\n").into_bytes(),
        Framing::ContentLength => {
            format!("Content-Length: {}\r\n\r\n{text}", text.len()).into_bytes()
        }
    }
}

// ---------------------------------------------------------------------------
// Shared state

struct Out {
    w: Box<dyn Write + Send>,
    framing: Option<Framing>,
    closed: bool,
}

/// Registration state; the lock is held across the register call so only
/// one thread registers at a time.
struct Reg {
    session_id: Option<String>,
    /// `arc_poll_messages`' cursor, set at the first registration.
    cursor: Option<i64>,
    /// The hub's presence TTL, when it reports one (our extension).
    ttl: Option<Duration>,
    last_error: Option<String>,
}

struct Flags {
    stop: bool,
    subscribed: bool,
    /// Bumped on every subscribe/unsubscribe, so a push poll started
    /// under an old subscription cannot notify a new one.
    generation: u64,
    push_cursor: Option<i64>,
}

struct Shared {
    client: Client,
    opts: Options,
    reg: Mutex<Reg>,
    /// Stop and subscription state; changes wake the helper threads.
    flags: Watch<Flags>,
    out: Mutex<Out>,
    /// Set once the loop ends: nothing more is written after it.
    stopped: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn new(client: Client, opts: Options, w: Box<dyn Write + Send>) -> Arc<Shared> {
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

    fn agent(&self) -> &str {
        &self.client.agent_id
    }

    fn log(&self, message: &str) {
        if self.opts.log {
            eprintln!("[arc mcp] {message}");
        }
    }

    fn set_framing(&self, framing: Framing) {
        lock(&self.out).framing.get_or_insert(framing);
    }

    /// Writes one message; false once the output is closed or broken.
    fn send(&self, msg: &Value) -> bool {
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

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.flags.update(|f| f.stop = true);
    }

    /// Sleeps up to `d`; true if the server is stopping.
    fn sleep(&self, d: Duration) -> bool {
        self.flags
            .wait_until(Some(Instant::now() + d), |f| f.stop)
            .stop
    }

    /// Registers the agent unless a session is already known.
    fn ensure_session(&self) -> Result<()> {
        let mut reg = lock(&self.reg);
        if reg.session_id.is_some() {
            return Ok(());
        }
        let mut c = self.client.clone();
        let agent = self.agent().to_string();
        let attempt = c
            .register(Some(&agent), true, None, None)
            .and_then(|_| c.bootstrap());
        match attempt {
            Ok(b) => {
                reg.session_id = c.session_id.clone();
                reg.cursor.get_or_insert(b.latest_visible_id);
                reg.ttl = c
                    .request("GET", "/v1/hub-info", None, c.timeout)
                    .ok()
                    .and_then(|v| v["result"]["presence_ttl_sec"].as_u64())
                    .filter(|t| *t > 0)
                    .map(Duration::from_secs);
                reg.last_error = None;
                self.log(&format!("registered as {agent:?}"));
                Ok(())
            }
            Err(e) => {
                let text = e.to_string();
                if reg.last_error.as_deref() != Some(text.as_str()) {
                    self.log(&format!("cannot register yet: {text}"));
                    reg.last_error = Some(text);
                }
                Err(e)
            }
        }
    }

    /// Closes the session. A registration still in flight is waited for
    /// at most [`Options::exit_grace`].
    fn close_session(&self) {
        let deadline = Instant::now() + self.opts.exit_grace;
        let mut sid = None;
        for _ in 0..100_000 {
            match self.reg.try_lock() {
                Ok(mut reg) => {
                    sid = reg.session_id.take();
                    break;
                }
                Err(TryLockError::Poisoned(e)) => {
                    sid = e.into_inner().session_id.take();
                    break;
                }
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    pause(Duration::from_millis(5));
                }
                Err(TryLockError::WouldBlock) => break,
            }
        }
        if let Some(sid) = sid {
            let mut c = self.client.clone();
            c.timeout = Duration::from_secs(3);
            c.session_id = Some(sid);
            c.close();
        }
    }

    fn keepalive_loop(&self) {
        let mut backoff = self.opts.retry;
        loop {
            let registered = lock(&self.reg).session_id.is_some();
            let ok = if registered {
                match self.client.agents(None) {
                    Ok(list) if !list.iter().any(|s| s.agent_id == self.agent()) => {
                        self.log("the hub forgot this agent; registering again");
                        lock(&self.reg).session_id = None;
                        self.ensure_session().is_ok()
                    }
                    Ok(_) => true,
                    Err(_) => false,
                }
            } else {
                self.ensure_session().is_ok()
            };
            let wait = if ok || registered {
                backoff = self.opts.retry;
                // A third of the hub's TTL when it is shorter than ours.
                match lock(&self.reg).ttl {
                    Some(ttl) => self
                        .opts
                        .keepalive
                        .min((ttl / 3).max(Duration::from_secs(1))),
                    None => self.opts.keepalive,
                }
            } else {
                backoff = (backoff * 2).min(self.opts.keepalive);
                backoff / 2
            };
            if self.sleep(wait) {
                return;
            }
        }
    }

    fn push_loop(&self) {
        let mut backoff = self.opts.retry;
        loop {
            let (generation, cursor) = {
                let f = self.flags.wait_until(None, |f| f.stop || f.subscribed);
                if f.stop {
                    return;
                }
                (f.generation, f.push_cursor)
            };
            let mut c = self.client.clone();
            let outcome = match cursor {
                // Subscribed while the hub was down: start from now.
                None => c.bootstrap().map(|b| (Vec::new(), b.latest_visible_id)),
                Some(cur) => {
                    c.cursor = cur;
                    c.poll(self.opts.push_wait.as_secs_f64(), None, None, true, 100)
                        .map(|m| (m, c.cursor))
                }
            };
            match outcome {
                Ok((msgs, next)) => {
                    backoff = self.opts.retry;
                    {
                        let mut f = self.flags.lock();
                        if f.stop {
                            return;
                        }
                        if f.generation != generation || !f.subscribed {
                            continue;
                        }
                        f.push_cursor = Some(next);
                    }
                    if !msgs.is_empty() {
                        self.send(&json!({
                            "jsonrpc": "2.0",
                            "method": "notifications/resources/updated",
                            "params": {"uri": INBOX_URI},
                        }));
                    }
                }
                Err(e) => {
                    self.log(&format!("push poll failed: {e}"));
                    if self.sleep(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(self.opts.keepalive);
                }
            }
        }
    }

    // -----------------------------------------------------------------------
    // JSON-RPC

    fn handle_bytes(&self, bytes: &[u8]) -> Option<Value> {
        match serde_json::from_slice::<Value>(bytes) {
            Err(e) => Some(error_reply(
                Value::Null,
                PARSE_ERROR,
                &format!("parse error: {e}"),
            )),
            Ok(Value::Object(m)) => self.handle_object(m),
            Ok(Value::Array(_)) => Some(error_reply(
                Value::Null,
                INVALID_REQUEST,
                "invalid request: batches are not supported",
            )),
            Ok(_) => Some(error_reply(
                Value::Null,
                INVALID_REQUEST,
                "invalid request: expected a JSON object",
            )),
        }
    }

    fn handle_object(&self, mut m: Map<String, Value>) -> Option<Value> {
        let id = match m.remove("id") {
            None => None,
            Some(id @ (Value::String(_) | Value::Number(_))) => Some(id),
            Some(_) => {
                return Some(error_reply(
                    Value::Null,
                    INVALID_REQUEST,
                    "invalid request: id must be a string or a number",
                ));
            }
        };
        let invalid = |message: &str| {
            id.clone()
                .map(|id| error_reply(id, INVALID_REQUEST, &format!("invalid request: {message}")))
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
                return id.map(|id| {
                    error_reply(
                        id,
                        INVALID_PARAMS,
                        "invalid params: params must be an object",
                    )
                });
            }
        };
        // Notifications (initialized, cancelled, ...) need no action: the
        // loop is sequential, so there is nothing in flight to cancel.
        let id = id?;
        match catch_unwind(AssertUnwindSafe(|| self.dispatch(&method, &params))) {
            Ok(Ok(result)) => Some(json!({"jsonrpc": "2.0", "id": id, "result": result})),
            Ok(Err((code, message))) => Some(error_reply(id, code, &message)),
            Err(_) => Some(error_reply(id, INTERNAL_ERROR, "internal error")),
        }
    }

    fn dispatch(&self, method: &str, params: &Map<String, Value>) -> RpcResult {
        match method {
            "initialize" => Ok(self.initialize(params)),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({"tools": tools()})),
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
                let feed = self.feed().map_err(|e| (INTERNAL_ERROR, hub_error(e)))?;
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
            _ => Err((METHOD_NOT_FOUND, format!("method not found: {method}"))),
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
            "serverInfo": {"name": "arc-hub", "title": "Arc", "version": env!("CARGO_PKG_VERSION")},
            "instructions": format!(
                "You are agent {:?} on an Arc coordination hub. Read new messages with arc_poll_messages (or subscribe to {INBOX_URI}); post with arc_post_message; claim work and lock files before editing.",
                self.agent()
            ),
        })
    }

    fn tools_call(&self, params: &Map<String, Value>) -> RpcResult {
        let name = match params.get("name") {
            Some(Value::String(n)) => n.as_str(),
            _ => {
                return Err((
                    INVALID_PARAMS,
                    "invalid params: tools/call needs a string name".into(),
                ));
            }
        };
        if !TOOL_NAMES.contains(&name) {
            return Err((INVALID_PARAMS, format!("unknown tool: {name}")));
        }
        let empty = Map::new();
        let args = match params.get("arguments") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(a)) => a,
            Some(_) => {
                return Err((
                    INVALID_PARAMS,
                    "invalid params: arguments must be an object".into(),
                ));
            }
        };
        let (text, is_error) = match self.call_tool(name, &Args(args)) {
            Ok(v) => (v.to_string(), false),
            Err(text) => (text, true),
        };
        Ok(json!({"content": [{"type": "text", "text": text}], "isError": is_error}))
    }

    fn call_tool(&self, name: &str, a: &Args) -> std::result::Result<Value, String> {
        let c = &self.client;
        // Arguments are checked before the hub is contacted.
        match name {
            "arc_post_message" => {
                let (channel, body) = (a.string("channel")?, a.string("body")?);
                let opts = Post {
                    kind: Some(a.opt_string("kind")?.unwrap_or_else(|| "chat".into())),
                    thread_id: a.opt_string("thread_id")?,
                    to_agent: a.opt_string("to_agent")?,
                    reply_to: a.opt_int("reply_to")?,
                    parent_task_id: a.opt_int("parent_task_id")?,
                    ..Post::default()
                };
                self.session()?;
                to_json(c.post(&channel, &body, opts))
            }
            "arc_poll_messages" => {
                let channel = a.opt_string("channel")?;
                let thread = a.opt_string("thread_id")?;
                let timeout = a.number("timeout", 5.0, 300.0)?;
                self.session()?;
                let mut p = c.clone();
                p.cursor = lock(&self.reg).cursor.unwrap_or(0);
                let msgs = p
                    .poll(timeout, channel.as_deref(), thread.as_deref(), true, 100)
                    .map_err(hub_error)?;
                let mut reg = lock(&self.reg);
                reg.cursor = Some(reg.cursor.unwrap_or(0).max(p.cursor));
                to_json(Ok(msgs))
            }
            "arc_dm" => {
                let (to, body) = (a.string("to_agent")?, a.string("body")?);
                self.session()?;
                to_json(c.dm(&to, &body, Post::default()))
            }
            "arc_list_agents" => {
                self.session()?;
                to_json(c.agents(None))
            }
            "arc_create_channel" => {
                let name = a.string("name")?;
                self.session()?;
                to_json(c.create_channel(&name, None))
            }
            "arc_rpc_call" => {
                let (to, body) = (a.string("to_agent")?, a.string("body")?);
                let timeout = a.number("timeout", 30.0, 3600.0)?;
                self.session()?;
                to_json(c.call(&to, &body, "direct", Duration::from_secs_f64(timeout), None))
            }
            "arc_claim" => {
                let key = a.string("claim_key")?;
                let thread = a.opt_string("thread_id")?;
                let ttl = a.opt_int("ttl_sec")?.unwrap_or(300);
                self.session()?;
                let l = c
                    .claim(&key, thread.as_deref(), None, ttl, None)
                    .map_err(hub_error)?;
                to_json(Ok(json!({"acquired": l.acquired, "claim": l.row})))
            }
            "arc_release" => {
                let key = a.string("claim_key")?;
                self.session()?;
                to_json(c.release(&key))
            }
            "arc_lock" => {
                let path = a.string("file_path")?;
                let ttl = a.opt_int("ttl_sec")?.unwrap_or(300);
                self.session()?;
                let l = c.lock(&path, ttl, None).map_err(hub_error)?;
                to_json(Ok(json!({"acquired": l.acquired, "lock": l.row})))
            }
            "arc_unlock" => {
                let path = a.string("file_path")?;
                self.session()?;
                to_json(c.unlock(&path))
            }
            "arc_list_tasks" => {
                let mut q = Vec::new();
                for key in ["status", "channel", "thread_id"] {
                    if let Some(v) = a.opt_string(key)? {
                        q.push(format!("{key}={}", percent_encode(&v)));
                    }
                }
                if let Some(p) = a.opt_int("parent_id")? {
                    q.push(format!("parent_id={p}"));
                }
                self.session()?;
                to_json(c.tasks(&q.join("&")))
            }
            "arc_complete_task" => {
                let id = a.int("task_id")?;
                self.session()?;
                let (task, parent) = c.complete_task(id).map_err(hub_error)?;
                to_json(Ok(json!({"task": task, "parent_completed": parent})))
            }
            "arc_read_thread" => {
                let id = a.string("thread_id")?;
                self.session()?;
                to_json(c.get_thread(&id))
            }
            "arc_inbox" => {
                let since = a.opt_int("since_id")?;
                let limit = a.opt_int("limit")?.unwrap_or(20).clamp(1, 500);
                self.session()?;
                let query = match since {
                    Some(s) => format!("since_id={s}&limit={limit}"),
                    None => format!("tail=1&limit={limit}"),
                };
                let path = format!("/v1/inbox/{}?{query}", percent_encode(self.agent()));
                let env = c
                    .request("GET", &path, None, c.timeout)
                    .map_err(hub_error)?;
                Ok(env.get("result").cloned().unwrap_or(json!([])))
            }
            "arc_whoami" => {
                self.session()?;
                to_json(c.clone().bootstrap())
            }
            "arc_list_channels" => {
                self.session()?;
                to_json(c.channels())
            }
            other => Err(format!("unknown tool: {other}")),
        }
    }

    fn session(&self) -> std::result::Result<(), String> {
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

type RpcResult = std::result::Result<Value, (i64, String)>;

fn error_reply(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn inbox_uri(params: &Map<String, Value>) -> std::result::Result<(), (i64, String)> {
    match params.get("uri").and_then(Value::as_str) {
        Some(INBOX_URI) => Ok(()),
        Some(other) => Err((RESOURCE_NOT_FOUND, format!("resource not found: {other}"))),
        None => Err((INVALID_PARAMS, "invalid params: uri is required".into())),
    }
}

fn hub_error(e: Error) -> String {
    match e {
        Error::Transport(_) => format!(
            "{} (is the hub running? `arc ensure` starts one)",
            e.detail()
        ),
        other => other.detail(),
    }
}

fn to_json<T: serde::Serialize>(r: Result<T>) -> std::result::Result<Value, String> {
    let v = r.map_err(hub_error)?;
    serde_json::to_value(v).map_err(|e| format!("json: {e}"))
}

/// Tool arguments, with errors that name the argument.
struct Args<'a>(&'a Map<String, Value>);

impl Args<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> std::result::Result<String, String> {
        self.opt_string(key)?
            .ok_or_else(|| format!("missing required argument: {key}"))
    }

    fn opt_string(&self, key: &str) -> std::result::Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(n @ Value::Number(_)) => Ok(Some(n.to_string())),
            Some(_) => Err(format!("argument {key} must be a string")),
        }
    }

    fn int(&self, key: &str) -> std::result::Result<i64, String> {
        self.opt_int(key)?
            .ok_or_else(|| format!("missing required argument: {key}"))
    }

    fn opt_int(&self, key: &str) -> std::result::Result<Option<i64>, String> {
        let bad = || format!("argument {key} must be an integer");
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(Some(i)),
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(Some(f as i64)),
                _ => Err(bad()),
            },
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A number of seconds, clamped to `0..=max`.
    fn number(&self, key: &str, default: f64, max: f64) -> std::result::Result<f64, String> {
        let bad = || format!("argument {key} must be a number");
        let v = match self.get(key) {
            None => default,
            Some(Value::Number(n)) => n.as_f64().ok_or_else(bad)?,
            Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| bad())?,
            Some(_) => return Err(bad()),
        };
        if !v.is_finite() {
            return Err(bad());
        }
        Ok(v.clamp(0.0, max))
    }
}

// ---------------------------------------------------------------------------
// Tools

const TOOL_NAMES: [&str; 16] = [
    "arc_post_message",
    "arc_poll_messages",
    "arc_dm",
    "arc_list_agents",
    "arc_create_channel",
    "arc_rpc_call",
    "arc_claim",
    "arc_release",
    "arc_lock",
    "arc_unlock",
    "arc_list_tasks",
    "arc_complete_task",
    "arc_read_thread",
    "arc_inbox",
    "arc_whoami",
    "arc_list_channels",
];

fn tool(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "name": name,
        "description": description,
        "inputSchema": {"type": "object", "properties": properties, "required": required},
    })
}

/// The `tools/list` entries. The first six match the reference adapter's
/// names, arguments, types and defaults; descriptions are our own and
/// deliberately short (hosts pay for them in context).
pub fn tools() -> Value {
    let s = json!({"type": "string"});
    let i = json!({"type": "integer"});
    let ttl = json!({"type": "integer", "default": 300});
    Value::Array(vec![
        tool(
            "arc_post_message",
            "Post to a channel. kind: chat, task, task_request, task_result, artifact or notice; reply_to answers a message; parent_task_id makes a subtask.",
            json!({"channel": s, "body": s, "kind": {"type": "string", "default": "chat"},
                   "thread_id": s, "to_agent": s, "reply_to": i, "parent_task_id": i}),
            &["channel", "body"],
        ),
        tool(
            "arc_poll_messages",
            "Wait up to timeout seconds for messages you have not seen yet (not your own).",
            json!({"channel": s, "timeout": {"type": "number", "default": 5}, "thread_id": s}),
            &[],
        ),
        tool(
            "arc_dm",
            "Send a direct message to an agent.",
            json!({"to_agent": s, "body": s}),
            &["to_agent", "body"],
        ),
        tool("arc_list_agents", "List live agents.", json!({}), &[]),
        tool(
            "arc_create_channel",
            "Create a channel (returns it if it exists).",
            json!({"name": s}),
            &["name"],
        ),
        tool(
            "arc_rpc_call",
            "Send a task_request to an agent and wait for its task_result.",
            json!({"to_agent": s, "body": s, "timeout": {"type": "number", "default": 30}}),
            &["to_agent", "body"],
        ),
        tool(
            "arc_claim",
            "Claim work by key; acquired is false if another agent holds it.",
            json!({"claim_key": s, "thread_id": s, "ttl_sec": ttl}),
            &["claim_key"],
        ),
        tool(
            "arc_release",
            "Release your claim.",
            json!({"claim_key": s}),
            &["claim_key"],
        ),
        tool(
            "arc_lock",
            "Lock a file path before editing; acquired is false if another agent holds it.",
            json!({"file_path": s, "ttl_sec": ttl}),
            &["file_path"],
        ),
        tool(
            "arc_unlock",
            "Release your file lock.",
            json!({"file_path": s}),
            &["file_path"],
        ),
        tool(
            "arc_list_tasks",
            "List tasks, optionally filtered.",
            json!({"status": {"type": "string", "enum": ["open", "done"]}, "channel": s,
                   "thread_id": s, "parent_id": i}),
            &[],
        ),
        tool(
            "arc_complete_task",
            "Mark a task done.",
            json!({"task_id": i}),
            &["task_id"],
        ),
        tool(
            "arc_read_thread",
            "Read a thread: summary, messages, tasks, claims, locks.",
            json!({"thread_id": s}),
            &["thread_id"],
        ),
        tool(
            "arc_inbox",
            "Your direct messages: the newest limit, or those after since_id.",
            json!({"since_id": i, "limit": {"type": "integer", "default": 20}}),
            &[],
        ),
        tool(
            "arc_whoami",
            "Your session and the live agents.",
            json!({}),
            &[],
        ),
        tool("arc_list_channels", "List channels.", json!({}), &[]),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8]) -> Vec<Incoming> {
        let mut r = input;
        let mut out = Vec::new();
        for _ in 0..100 {
            let m = read_message(&mut r).unwrap();
            let eof = m == Incoming::Eof;
            out.push(m);
            if eof {
                break;
            }
        }
        out
    }

    #[test]
    fn reads_lines_and_content_length_frames() {
        let body = "{\"x\":\"é\"}";
        let input = format!(
            "\n{{\"a\":1}}\r\n  \ncontent-length: {}\r\nContent-Type: application/json\r\n\r\n{body}{{\"b\":2}}\n",
            body.len()
        );
        assert_eq!(
            read_all(input.as_bytes()),
            vec![
                Incoming::Message(b"{\"a\":1}".to_vec(), Framing::Lines),
                Incoming::Message(body.as_bytes().to_vec(), Framing::ContentLength),
                Incoming::Message(b"{\"b\":2}".to_vec(), Framing::Lines),
                Incoming::Eof,
            ]
        );
    }

    #[test]
    fn bad_headers_are_reported_and_truncation_is_eof() {
        let r = read_all(b"Content-Type: x\r\n\r\n{}\nContent-Length: nope\r\n\r\n");
        assert!(
            matches!(&r[0], Incoming::Bad(m, Framing::ContentLength) if m.contains("no Content-Length"))
        );
        assert_eq!(r[1], Incoming::Message(b"{}".to_vec(), Framing::Lines));
        assert!(matches!(&r[2], Incoming::Bad(m, _) if m.contains("bad Content-Length")));
        assert_eq!(
            read_all(b"Content-Length: 10\r\n\r\n{}"),
            vec![Incoming::Eof]
        );
    }

    #[test]
    fn frames_count_bytes() {
        assert_eq!(
            frame("\"é\"", Framing::ContentLength),
            "Content-Length: 4\r\n\r\n\"é\"".as_bytes()
        );
        assert_eq!(frame("{}", Framing::Lines), b"{}\n");
    }

    #[test]
    fn tool_names_match_the_list() {
        let names: Vec<String> = tools()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, TOOL_NAMES);
    }
}
