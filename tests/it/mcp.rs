//! `arc mcp` (issue 7): the JSON-RPC loop driven in memory against an
//! in-process hub (both framings, every method, the error codes, EOF,
//! keepalive, push), plus end-to-end runs of the real binary over pipes.

use std::collections::VecDeque;
use std::io::{BufRead, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_hub::client::Client;
use arc_hub::mcp::{Framing, Options, serve};
use serde_json::{Value, json};

use crate::support::{TestHub, assert_subset, eventually};

pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// Stdin for the loop: chunks arrive over a channel; dropping the sender
/// is EOF.
pub(crate) struct ChanReader {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChanReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos >= self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

/// Stdout for the loop, readable by the test while the loop runs.
#[derive(Clone, Default)]
pub(crate) struct SharedBuf(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) fn fast() -> Options {
    Options {
        keepalive: Duration::from_secs(30),
        push_wait: Duration::from_secs(2),
        retry: Duration::from_millis(100),
        exit_grace: Duration::from_secs(3),
        log: false,
        ..Options::default()
    }
}

/// Parses one framed message at the start of `buf`: the message and the
/// bytes it used. Panics on output that breaks the framing.
pub(crate) fn parse_next(buf: &[u8], framing: Framing) -> Option<(Value, usize)> {
    match framing {
        Framing::Lines => {
            let nl = buf.iter().position(|&b| b == b'\n')?;
            let v = serde_json::from_slice(&buf[..nl])
                .unwrap_or_else(|e| panic!("bad line {:?}: {e}", String::from_utf8_lossy(buf)));
            Some((v, nl + 1))
        }
        Framing::ContentLength => {
            let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
            let head = std::str::from_utf8(&buf[..end]).unwrap();
            let n: usize = head
                .strip_prefix("Content-Length: ")
                .unwrap_or_else(|| panic!("bad header {head:?}"))
                .parse()
                .unwrap();
            let body = buf.get(end + 4..end + 4 + n)?;
            let v = serde_json::from_slice(body)
                .unwrap_or_else(|e| panic!("bad body {:?}: {e}", String::from_utf8_lossy(body)));
            Some((v, end + 4 + n))
        }
    }
}

/// A running in-memory MCP server.
pub(crate) struct Mcp {
    tx: Option<Sender<Vec<u8>>>,
    pub(crate) out: SharedBuf,
    pos: usize,
    framing: Framing,
    thread: Option<JoinHandle<arc_hub::Result<()>>>,
    pub(crate) next_id: i64,
    /// Messages read while looking for something else.
    backlog: VecDeque<Value>,
}

impl Mcp {
    pub(crate) fn start(url: &str, agent: &str) -> Mcp {
        Mcp::start_with(Client::http(agent, url), fast(), Framing::Lines)
    }

    pub(crate) fn start_with(client: Client, opts: Options, framing: Framing) -> Mcp {
        let (tx, rx) = channel();
        let out = SharedBuf::default();
        let reader = ChanReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        let writer = out.clone();
        let thread = std::thread::spawn(move || serve(reader, writer, client, opts));
        Mcp {
            tx: Some(tx),
            out,
            pos: 0,
            framing,
            thread: Some(thread),
            next_id: 0,
            backlog: VecDeque::new(),
        }
    }

    pub(crate) fn send_raw(&self, bytes: &[u8]) {
        self.tx.as_ref().unwrap().send(bytes.to_vec()).unwrap();
    }

    pub(crate) fn send(&self, v: &Value) {
        let text = v.to_string();
        let framed = match self.framing {
            Framing::Lines => format!("{text}\n"),
            Framing::ContentLength => format!("Content-Length: {}\r\n\r\n{text}", text.len()),
        };
        self.send_raw(framed.as_bytes());
    }

    /// The next output message, if one arrives within `limit`.
    pub(crate) fn try_next(&mut self, limit: Duration) -> Option<Value> {
        if let Some(v) = self.backlog.pop_front() {
            return Some(v);
        }
        let start = Instant::now();
        loop {
            {
                let buf = self.out.0.lock().unwrap();
                if let Some((v, used)) = parse_next(&buf[self.pos..], self.framing) {
                    self.pos += used;
                    return Some(v);
                }
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn next(&mut self) -> Value {
        self.try_next(WAIT).expect("a message from the server")
    }

    /// Sends a request and returns the response with its id; other
    /// messages (notifications) stay in the backlog.
    pub(crate) fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let mut skipped = Vec::new();
        for _ in 0..1000 {
            let m = self
                .try_next(WAIT)
                .unwrap_or_else(|| panic!("no answer to {method}"));
            if m.get("id") == Some(&json!(id)) {
                self.backlog.extend(skipped);
                return m;
            }
            skipped.push(m);
        }
        panic!("no answer to {method}");
    }

    pub(crate) fn result(&mut self, method: &str, params: Value) -> Value {
        let r = self.request(method, params);
        assert!(r.get("error").is_none(), "{method}: {r}");
        r["result"].clone()
    }

    /// Calls a tool: (text, isError).
    pub(crate) fn tool(&mut self, name: &str, args: Value) -> (String, bool) {
        let r = self.result("tools/call", json!({"name": name, "arguments": args}));
        assert_eq!(r["content"][0]["type"], "text", "{r}");
        (
            r["content"][0]["text"].as_str().unwrap().to_string(),
            r["isError"].as_bool().expect("isError is always present"),
        )
    }

    /// Calls a tool that must succeed and parses its JSON text.
    pub(crate) fn ok(&mut self, name: &str, args: Value) -> Value {
        let (text, err) = self.tool(name, args);
        assert!(!err, "{name} failed: {text}");
        serde_json::from_str(&text).unwrap()
    }

    pub(crate) fn init(&mut self) -> Value {
        self.result(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}),
        )
    }

    /// Closes stdin; returns the loop's result and how long it took.
    pub(crate) fn close(mut self) -> (arc_hub::Result<()>, Duration) {
        let start = Instant::now();
        drop(self.tx.take());
        let h = self.thread.take().unwrap();
        eventually(Duration::from_secs(10), "serve to return after EOF", || {
            h.is_finished().then_some(())
        });
        (h.join().unwrap(), start.elapsed())
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        drop(self.tx.take());
    }
}

pub(crate) fn agent_ids(h: &TestHub) -> Vec<String> {
    h.get("/v1/agents")
        .result()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["agent_id"].as_str().unwrap().to_string())
        .collect()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn initialize_negotiates_and_lifecycle_methods_answer() {
    let h = TestHub::start();
    let mut m = Mcp::start(&h.url, "a");
    // Issue 15: the negotiation table of the handshake era. A version we
    // do not serve, 2026-07-28 included (it has no handshake), gets our
    // newest handshake version.
    for (asked, expected) in [
        ("2024-11-05", "2024-11-05"),
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2099-01-01", "2025-11-25"),
        ("2026-07-28", "2025-11-25"),
        ("", "2025-11-25"),
    ] {
        let r = m.result(
            "initialize",
            json!({"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}),
        );
        assert_subset(
            &r,
            &json!({
                "protocolVersion": expected,
                "capabilities": {"tools": {}, "resources": {"subscribe": true},
                                 "experimental": {"claude/channel": {}}},
                "serverInfo": {"name": "arc-hub", "version": env!("CARGO_PKG_VERSION")},
            }),
        );
        assert!(r.get("resultType").is_none(), "a 2025-era result: {r}");
    }
    // A protocolVersion that is not a string, or none at all, too.
    for params in [json!({"protocolVersion": 7}), json!({})] {
        assert_eq!(
            m.result("initialize", params)["protocolVersion"],
            "2025-11-25"
        );
    }
    // Notifications are never answered; ping is.
    m.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    m.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}),
    );
    m.send(&json!({"jsonrpc": "2.0", "method": "no/such/notification"}));
    let r = m.request("ping", json!({}));
    assert_eq!(r, json!({"jsonrpc": "2.0", "id": m.next_id, "result": {}}));
    // A request without params at all is fine too.
    m.send(&json!({"jsonrpc": "2.0", "id": "s-1", "method": "ping"}));
    assert_eq!(
        m.next(),
        json!({"jsonrpc": "2.0", "id": "s-1", "result": {}})
    );
    let r = m.result("resources/list", json!({}));
    assert_subset(
        &r,
        &json!({"resources": [{"uri": "arc://inbox", "mimeType": "application/json"}]}),
    );
    let r = m.result("resources/templates/list", json!({}));
    assert_eq!(r, json!({"resourceTemplates": []}));
    let (res, took) = m.close();
    res.unwrap();
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn tools_list_is_lean_and_keeps_the_reference_six() {
    // The default profile of `arc mcp` (core, issue 15): the reference's
    // six first, and the whole list under about 2,000 tokens (the tool
    // table itself is tested in mcp_tools).
    let h = TestHub::start();
    let opts = Options {
        tools: arc_hub::mcp::profile::Profile::core(),
        ..fast()
    };
    let mut m = Mcp::start_with(Client::http("a", &h.url), opts, Framing::Lines);
    m.init();
    let r = m.result("tools/list", json!({}));
    let size = r.to_string().len();
    eprintln!("tools/list result: {size} bytes");
    assert!(size < 8000, "tools/list grew to {size} bytes");
    let tools = r["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names[..6],
        [
            "arc_post_message",
            "arc_poll_messages",
            "arc_dm",
            "arc_list_agents",
            "arc_create_channel",
            "arc_rpc_call",
        ]
    );
    for t in tools {
        assert!(t["description"].as_str().unwrap().len() < 160, "{t}");
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        assert!(t["inputSchema"]["properties"].is_object(), "{t}");
        for req in t["inputSchema"]["required"].as_array().unwrap() {
            assert!(
                t["inputSchema"]["properties"]
                    .get(req.as_str().unwrap())
                    .is_some()
            );
        }
    }
    // The reference's names, argument types, defaults and required lists.
    let s = json!({"type": "string"});
    let by_name = |n: &str| tools.iter().find(|t| t["name"] == n).unwrap()["inputSchema"].clone();
    assert_subset(
        &by_name("arc_post_message"),
        &json!({"properties": {"channel": s, "body": s, "kind": {"type": "string", "default": "chat"},
                "thread_id": s, "to_agent": s}, "required": ["channel", "body"]}),
    );
    assert_eq!(
        by_name("arc_poll_messages"),
        json!({"type": "object", "properties": {"channel": s, "timeout": {"type": "number", "default": 5},
               "thread_id": s}, "required": []})
    );
    assert_eq!(
        by_name("arc_dm"),
        json!({"type": "object", "properties": {"to_agent": s, "body": s}, "required": ["to_agent", "body"]})
    );
    assert_eq!(
        by_name("arc_list_agents"),
        json!({"type": "object", "properties": {}, "required": []})
    );
    assert_eq!(
        by_name("arc_create_channel"),
        json!({"type": "object", "properties": {"name": s}, "required": ["name"]})
    );
    assert_eq!(
        by_name("arc_rpc_call"),
        json!({"type": "object", "properties": {"to_agent": s, "body": s,
               "timeout": {"type": "number", "default": 30}}, "required": ["to_agent", "body"]})
    );
    m.close().0.unwrap();
}

#[test]
fn content_length_framing_is_answered_in_kind_with_byte_lengths() {
    let h = TestHub::start();
    h.register("b");
    let mut m = Mcp::start_with(Client::http("a", &h.url), fast(), Framing::ContentLength);
    // Lower-case header name and an extra header, as LSP clients may send.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                      "params": {"protocolVersion": "2024-11-05", "capabilities": {}}})
    .to_string();
    m.send_raw(
        format!(
            "content-length: {}\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{init}",
            init.len()
        )
        .as_bytes(),
    );
    let r = m.next();
    assert_eq!(r["id"], 1);
    assert_eq!(r["result"]["protocolVersion"], "2024-11-05");
    m.next_id = 1;
    // Non-ASCII both ways: lengths must be bytes or the stream desyncs.
    let msg = m.ok(
        "arc_post_message",
        json!({"channel": "general", "body": "héllo ✓ 🦀"}),
    );
    assert_eq!(msg["body"], "héllo ✓ 🦀");
    let seen = h.get("/v1/events?agent_id=b&since_id=0&timeout=0");
    assert!(
        seen.result()
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["body"] == "héllo ✓ 🦀"),
        "{seen}"
    );
    assert_eq!(m.result("ping", json!({})), json!({}));
    // A frame without a Content-Length is a parse error, answered framed.
    m.send_raw(b"Content-Type: application/json\r\n\r\n");
    let r = m.next();
    assert_eq!(r["error"]["code"], -32700, "{r}");
    assert_eq!(r["id"], Value::Null);
    m.close().0.unwrap();
    // Everything written was Content-Length framed (parse_next checks).
    let all = content_length_session_is_fully_framed(&h);
    assert!(all);
}

/// Runs a short Content-Length session through `serve` with a plain
/// byte-slice reader and checks the whole output parses as frames.
fn content_length_session_is_fully_framed(h: &TestHub) -> bool {
    let mut input = Vec::new();
    for (i, method) in ["initialize", "ping", "tools/list"].iter().enumerate() {
        let body = json!({"jsonrpc": "2.0", "id": i, "method": method, "params": {}}).to_string();
        input.extend(format!("Content-Length: {}\r\n\r\n{body}", body.len()).bytes());
    }
    let out = SharedBuf::default();
    serve(
        std::io::Cursor::new(input),
        out.clone(),
        Client::http("z", &h.url),
        fast(),
    )
    .unwrap();
    let buf = out.0.lock().unwrap().clone();
    let mut pos = 0;
    let mut ids = Vec::new();
    while pos < buf.len() {
        let (v, used) = parse_next(&buf[pos..], Framing::ContentLength).expect("a whole frame");
        ids.push(v["id"].as_i64().unwrap());
        pos += used;
    }
    ids == [0, 1, 2]
}

#[test]
fn malformed_input_gets_the_json_rpc_error_codes() {
    let h = TestHub::start();
    let mut m = Mcp::start(&h.url, "a");
    // After the handshake (issue 15: before it, only ping is served).
    m.init();
    let cases: Vec<(&[u8], Value, i64)> = vec![
        (b"{not json\n", Value::Null, -32700),
        (b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]\n", Value::Null, -32600),
        (b"[]\n", Value::Null, -32600),
        (b"42\n", Value::Null, -32600),
        (b"{\"id\":7,\"method\":\"ping\"}\n", json!(7), -32600),
        (b"{\"jsonrpc\":\"1.0\",\"id\":8,\"method\":\"ping\"}\n", json!(8), -32600),
        (b"{\"jsonrpc\":\"2.0\",\"id\":{\"x\":1},\"method\":\"ping\"}\n", Value::Null, -32600),
        (b"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}\n", Value::Null, -32600),
        (b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":5}\n", json!(9), -32600),
        (b"{\"jsonrpc\":\"2.0\",\"id\":10}\n", json!(10), -32600),
        (b"{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"ping\",\"params\":[1]}\n", json!(11), -32602),
        (b"{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"prompts/list\"}\n", json!(12), -32601),
        (b"{\"jsonrpc\":\"2.0\",\"id\":13,\"method\":\"tools/call\",\"params\":{\"name\":\"nope\"}}\n", json!(13), -32602),
        (b"{\"jsonrpc\":\"2.0\",\"id\":14,\"method\":\"tools/call\",\"params\":{}}\n", json!(14), -32602),
        (b"{\"jsonrpc\":\"2.0\",\"id\":15,\"method\":\"tools/call\",\"params\":{\"name\":\"arc_dm\",\"arguments\":[]}}\n", json!(15), -32602),
        (b"{\"jsonrpc\":\"2.0\",\"id\":16,\"method\":\"resources/read\",\"params\":{\"uri\":\"arc://nope\"}}\n", json!(16), -32002),
        (b"{\"jsonrpc\":\"2.0\",\"id\":17,\"method\":\"resources/subscribe\",\"params\":{}}\n", json!(17), -32602),
    ];
    for (input, id, code) in &cases {
        m.send_raw(input);
        let r = m.next();
        assert_eq!(
            (&r["id"], r["error"]["code"].as_i64()),
            (id, Some(*code)),
            "input {:?} -> {r}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(r["jsonrpc"], "2.0");
        assert!(r["error"]["message"].as_str().unwrap().len() > 3, "{r}");
    }
    let r = m.request("tools/call", json!({"name": "arc_bogus"}));
    assert_eq!(r["error"]["message"], "unknown tool: arc_bogus");
    // Notifications, malformed or not, and responses get no reply at all.
    m.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"nope\"}}\n");
    m.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":[1]}\n");
    m.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":99,\"result\":{}}\n");
    m.send_raw(b"\n\r\n   \n");
    let r = m.request("ping", json!({}));
    assert_eq!(r["result"], json!({}));
    assert_eq!(r["id"], m.next_id, "the notifications produced output");
    assert!(m.try_next(Duration::from_millis(200)).is_none());
    m.close().0.unwrap();
}

#[test]
fn tool_errors_are_results_that_name_the_problem() {
    let h = TestHub::start();
    let mut m = Mcp::start(&h.url, "a");
    m.init();
    for (tool, args, text) in [
        (
            "arc_post_message",
            json!({"body": "x"}),
            "missing required argument: channel",
        ),
        (
            "arc_post_message",
            json!({"channel": "general"}),
            "missing required argument: body",
        ),
        (
            "arc_post_message",
            json!({"channel": null, "body": "x"}),
            "missing required argument: channel",
        ),
        (
            "arc_dm",
            json!({"body": "x"}),
            "missing required argument: to_agent",
        ),
        (
            "arc_create_channel",
            json!({}),
            "missing required argument: name",
        ),
        (
            "arc_rpc_call",
            json!({"to_agent": "b"}),
            "missing required argument: body",
        ),
        (
            "arc_complete_task",
            json!({}),
            "missing required argument: task_id",
        ),
        (
            "arc_complete_task",
            json!({"task_id": "x"}),
            "argument task_id must be an integer",
        ),
        (
            "arc_poll_messages",
            json!({"timeout": "soon"}),
            "argument timeout must be a number",
        ),
        (
            "arc_post_message",
            json!({"channel": ["a"], "body": "x"}),
            "argument channel must be a string",
        ),
        (
            "arc_post_message",
            json!({"channel": "nope", "body": "x"}),
            "channel does not exist: nope",
        ),
        (
            "arc_post_message",
            json!({"channel": "general", "body": "x", "kind": "shout"}),
            "unsupported kind: shout",
        ),
        (
            "arc_release",
            json!({"claim_key": "k"}),
            "claim not found or not owned by agent_id",
        ),
        (
            "arc_read_thread",
            json!({"thread_id": "none"}),
            "thread not found",
        ),
        (
            "arc_complete_task",
            json!({"task_id": 999}),
            "task not found",
        ),
    ] {
        assert_eq!(
            m.tool(tool, args.clone()),
            (text.to_string(), true),
            "{tool} {args}"
        );
    }
    m.close().0.unwrap();
}

#[test]
fn the_reference_tools_reach_the_hub() {
    let h = TestHub::start();
    h.register("b");
    let mut m = Mcp::start(&h.url, "a");
    m.init();
    // The first call registers (if the keepalive thread has not already).
    let agents = m.ok("arc_list_agents", json!({}));
    let ids: Vec<&str> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);

    let posted = m.ok(
        "arc_post_message",
        json!({"channel": "general", "body": "hi from mcp", "thread_id": "t1"}),
    );
    assert_subset(
        &posted,
        &json!({"from_agent": "a", "channel": "general", "kind": "chat", "body": "hi from mcp", "thread_id": "t1"}),
    );
    let seen = h.get("/v1/events?agent_id=b&since_id=0&timeout=0");
    assert!(
        seen.result()
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == posted["id"] && x["from_agent"] == "a"),
        "{seen}"
    );

    // Poll sees what others post, not our own, and keeps its cursor.
    let theirs = h.say("b", "general", "hello a");
    let got = m.ok("arc_poll_messages", json!({"timeout": 5}));
    assert_eq!(crate::support::ids(&got), [theirs["id"].as_i64().unwrap()]);
    let empty = m.ok("arc_poll_messages", json!({"timeout": 0}));
    assert_eq!(empty, json!([]));
    // A poll that is waiting when the message arrives.
    let url = h.url.clone();
    let later = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        arc_hub::client::Client::http("b", &url)
            .post("general", "late", Default::default())
            .unwrap()
    });
    let got = m.ok(
        "arc_poll_messages",
        json!({"timeout": 10, "channel": "general"}),
    );
    let late = later.join().unwrap();
    assert_eq!(crate::support::ids(&got), [late.id]);

    let dm = m.ok("arc_dm", json!({"to_agent": "b", "body": "psst"}));
    assert_subset(
        &dm,
        &json!({"to_agent": "b", "channel": "direct", "body": "psst"}),
    );
    let ch = m.ok("arc_create_channel", json!({"name": "builds"}));
    assert_subset(&ch, &json!({"name": "builds", "created_by": "a"}));
    let again = m.ok("arc_create_channel", json!({"name": "builds"}));
    assert_eq!(again, ch);

    // RPC: b answers a's task_request.
    let url = h.url.clone();
    let responder = std::thread::spawn(move || {
        let mut b = Client::http("b", &url);
        for _ in 0..50 {
            for msg in b.poll(1.0, None, None, true, 100).unwrap() {
                if msg.kind == "task_request" {
                    return b
                        .post(
                            "direct",
                            &format!("echo {}", msg.body),
                            arc_hub::client::Post {
                                kind: Some("task_result".into()),
                                to_agent: Some("a".into()),
                                reply_to: Some(msg.id),
                                ..Default::default()
                            },
                        )
                        .unwrap();
                }
            }
        }
        panic!("no task_request arrived");
    });
    let res = m.ok(
        "arc_rpc_call",
        json!({"to_agent": "b", "body": "ping", "timeout": 10}),
    );
    let answer = responder.join().unwrap();
    assert_eq!(res["id"], answer.id);
    assert_eq!(res["body"], "echo ping");
    let (text, err) = m.tool(
        "arc_rpc_call",
        json!({"to_agent": "nobody", "body": "x", "timeout": 0.5}),
    );
    assert!(err && text.starts_with("RPC to nobody timed out"), "{text}");
    m.close().0.unwrap();
}

#[test]
fn the_extra_tools_cover_claims_locks_tasks_threads_and_inbox() {
    let h = TestHub::start();
    h.register("b");
    let mut m = Mcp::start(&h.url, "a");
    m.init();
    let c = m.ok(
        "arc_claim",
        json!({"claim_key": "job-1", "thread_id": "t9", "ttl_sec": 60}),
    );
    assert_subset(
        &c,
        &json!({"acquired": true, "claim": {"claim_key": "job-1", "owner_agent_id": "a", "thread_id": "t9"}}),
    );
    let r = h.post(
        "/v1/claims",
        json!({"owner_agent_id": "b", "claim_key": "job-1"}),
    );
    assert_eq!(r.json["acquired"], false);
    let rel = m.ok("arc_release", json!({"claim_key": "job-1"}));
    assert!(rel["released_at"].is_string(), "{rel}");

    let l = m.ok("arc_lock", json!({"file_path": "src/x.rs"}));
    assert_subset(
        &l,
        &json!({"acquired": true, "lock": {"file_path": "src/x.rs", "agent_id": "a"}}),
    );
    h.post(
        "/v1/locks",
        json!({"agent_id": "b", "file_path": "src/y.rs"}),
    );
    let denied = m.ok("arc_lock", json!({"file_path": "src/y.rs"}));
    assert_subset(
        &denied,
        &json!({"acquired": false, "lock": {"agent_id": "b"}}),
    );
    let un = m.ok("arc_unlock", json!({"file_path": "src/x.rs"}));
    assert!(un["released_at"].is_string(), "{un}");

    let parent = m.ok(
        "arc_post_message",
        json!({"channel": "general", "body": "build it", "kind": "task", "thread_id": "t9"}),
    );
    let child = m.ok(
        "arc_post_message",
        json!({"channel": "general", "body": "part", "kind": "task", "thread_id": "t9",
               "parent_task_id": parent["id"]}),
    );
    let open = m.ok(
        "arc_list_tasks",
        json!({"status": "open", "thread_id": "t9"}),
    );
    assert_eq!(open.as_array().unwrap().len(), 2, "{open}");
    let kids = m.ok("arc_list_tasks", json!({"parent_id": parent["id"]}));
    assert_eq!(kids[0]["task_id"], child["id"], "{kids}");
    let done = m.ok("arc_complete_task", json!({"task_id": child["id"]}));
    assert_subset(
        &done,
        &json!({"task": {"task_id": child["id"], "status": "done"}, "parent_completed": true}),
    );
    let reply = m.ok(
        "arc_post_message",
        json!({"channel": "general", "body": "re", "reply_to": parent["id"], "thread_id": "t9"}),
    );
    assert_eq!(reply["reply_to"], parent["id"]);
    let t = m.ok("arc_read_thread", json!({"thread_id": "t9"}));
    assert_eq!(t["thread"]["thread_id"], "t9");
    let bodies: Vec<&str> = t["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["body"].as_str().unwrap())
        .collect();
    // The third is the hub's rollup notice.
    assert_eq!(bodies.len(), 4, "{t}");
    assert_eq!(
        [bodies[0], bodies[1], bodies[3]],
        ["build it", "part", "re"]
    );
    assert_eq!(t["claims"][0]["claim_key"], "job-1");

    let mut dms = Vec::new();
    for i in 0..3 {
        let r = h.post(
            "/v1/messages",
            json!({"from_agent": "b", "to_agent": "a", "body": format!("dm {i}")}),
        );
        dms.push(r.result()["id"].as_i64().unwrap());
    }
    h.post(
        "/v1/messages",
        json!({"from_agent": "b", "to_agent": "c", "body": "not for a"}),
    );
    let inbox = m.ok("arc_inbox", json!({"limit": 2}));
    assert_eq!(crate::support::ids(&inbox), dms[1..]);
    let inbox = m.ok("arc_inbox", json!({"since_id": dms[0]}));
    assert_eq!(crate::support::ids(&inbox), dms[1..]);

    let me = m.ok("arc_whoami", json!({}));
    assert_subset(
        &me,
        &json!({"agent_id": "a", "session": {"agent_id": "a", "active": true}}),
    );
    let chans = m.ok("arc_list_channels", json!({}));
    assert!(
        chans
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "general")
    );
    m.close().0.unwrap();
}

#[test]
fn inbox_resource_reads_and_subscribers_are_notified() {
    let h = TestHub::start();
    h.register("b");
    let mut m = Mcp::start(&h.url, "a");
    m.init();
    m.ok("arc_whoami", json!({}));
    let first = h.say("b", "general", "before subscribing");
    let read = m.result("resources/read", json!({"uri": "arc://inbox"}));
    assert_eq!(read["contents"][0]["uri"], "arc://inbox");
    assert_eq!(read["contents"][0]["mimeType"], "application/json");
    let feed: Value = serde_json::from_str(read["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(feed["agent_id"], "a");
    assert_eq!(
        feed["messages"].as_array().unwrap().last().unwrap()["id"],
        first["id"]
    );

    assert_eq!(
        m.result("resources/subscribe", json!({"uri": "arc://inbox"})),
        json!({})
    );
    let note = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                      "params": {"uri": "arc://inbox"}});
    // Our own posts do not notify.
    m.ok(
        "arc_post_message",
        json!({"channel": "general", "body": "mine"}),
    );
    assert!(
        m.try_next(Duration::from_millis(1500)).is_none(),
        "own post notified"
    );
    // Someone else's post does, and so does a DM to us.
    let second = h.say("b", "general", "after subscribing");
    assert_eq!(m.try_next(WAIT), Some(note.clone()));
    h.post(
        "/v1/messages",
        json!({"from_agent": "b", "to_agent": "a", "body": "dm"}),
    );
    assert_eq!(m.try_next(WAIT), Some(note.clone()));
    // A DM to someone else does not.
    h.post(
        "/v1/messages",
        json!({"from_agent": "b", "to_agent": "c", "body": "not yours"}),
    );
    assert!(m.try_next(Duration::from_millis(1500)).is_none());
    let read = m.result("resources/read", json!({"uri": "arc://inbox"}));
    let feed: Value = serde_json::from_str(read["contents"][0]["text"].as_str().unwrap()).unwrap();
    let bodies: Vec<&str> = feed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["before subscribing", "after subscribing", "dm"]);
    assert!(feed["latest_visible_id"].as_i64().unwrap() > second["id"].as_i64().unwrap());

    // After unsubscribing, nothing more arrives.
    assert_eq!(
        m.result("resources/unsubscribe", json!({"uri": "arc://inbox"})),
        json!({})
    );
    h.say("b", "general", "nobody listens");
    assert!(m.try_next(Duration::from_millis(2500)).is_none());
    m.close().0.unwrap();
}

#[test]
fn hub_down_at_start_gives_tool_errors_then_registers_lazily() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut opts = fast();
    opts.keepalive = Duration::from_secs(60);
    let mut m = Mcp::start_with(Client::http("late", &url), opts, Framing::Lines);
    // The protocol works without a hub.
    m.init();
    assert_eq!(m.result("ping", json!({})), json!({}));
    assert_eq!(
        m.result("tools/list", json!({}))["tools"][0]["name"],
        "arc_post_message"
    );
    let (text, err) = m.tool("arc_list_agents", json!({}));
    assert!(err, "{text}");
    assert!(text.starts_with("connection error: "), "{text}");
    let r = m.request("resources/read", json!({"uri": "arc://inbox"}));
    assert_eq!(r["error"]["code"], -32603, "{r}");
    // Subscribing while the hub is down is accepted; push starts later.
    assert_eq!(
        m.result("resources/subscribe", json!({"uri": "arc://inbox"})),
        json!({})
    );

    let h = TestHub::start_with(|c| c.port = port);
    assert_eq!(h.url, url);
    h.register("b");
    let agents = m.ok("arc_list_agents", json!({}));
    assert!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["agent_id"] == "late"),
        "{agents}"
    );
    assert!(agent_ids(&h).contains(&"late".to_string()));
    // The push thread recovered too: a new message notifies.
    std::thread::sleep(Duration::from_millis(800));
    eventually(WAIT, "a notification after the hub came up", || {
        h.say("b", "general", "up now");
        m.try_next(Duration::from_millis(500))
    });
    m.close().0.unwrap();
}

#[test]
fn keepalive_holds_presence_and_recovers_a_lost_session() {
    let h = TestHub::start_with(|c| c.presence_ttl_sec = 5);
    let mut opts = fast();
    opts.keepalive = Duration::from_millis(500);
    let mut m = Mcp::start_with(Client::http("idle", &h.url), opts, Framing::Lines);
    m.init();
    // Registered in the background, before any tool call.
    eventually(WAIT, "background registration", || {
        agent_ids(&h).contains(&"idle".to_string()).then_some(())
    });
    // An agent that registers and stays silent expires; ours does not.
    h.register("silent");
    std::thread::sleep(Duration::from_secs(7));
    let ids = agent_ids(&h);
    assert!(ids.contains(&"idle".to_string()), "{ids:?}");
    assert!(!ids.contains(&"silent".to_string()), "{ids:?}");
    // A session closed behind our back is re-registered.
    let sid = h.get("/v1/bootstrap?agent_id=idle").result()["session"]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    h.delete(&format!("/v1/sessions/{sid}")).result();
    let new_sid = eventually(WAIT, "re-registration", || {
        let b = h.get("/v1/bootstrap?agent_id=idle");
        b.result()["session"]["session_id"]
            .as_str()
            .filter(|s| *s != sid)
            .map(str::to_string)
    });
    // EOF closes the (new) session.
    let (res, took) = m.close();
    res.unwrap();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(!agent_ids(&h).contains(&"idle".to_string()));
    let r = h.delete(&format!("/v1/sessions/{new_sid}"));
    r.expect_err(404, "session not found");
}

#[test]
fn eof_stops_promptly_even_while_a_push_poll_is_parked() {
    let h = TestHub::start();
    let mut opts = fast();
    opts.push_wait = Duration::from_secs(20);
    let mut m = Mcp::start_with(Client::http("a", &h.url), opts, Framing::Lines);
    m.init();
    m.ok("arc_whoami", json!({}));
    m.result("resources/subscribe", json!({"uri": "arc://inbox"}));
    std::thread::sleep(Duration::from_millis(300));
    let out = m.out.clone();
    let (res, took) = m.close();
    res.unwrap();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(!agent_ids(&h).contains(&"a".to_string()));
    // Nothing is written after EOF, even if a message now arrives.
    let before = out.0.lock().unwrap().len();
    h.say("x", "general", "too late");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(out.0.lock().unwrap().len(), before);
}

#[test]
fn a_closed_stdout_ends_the_loop() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let h = TestHub::start();
    // An endless input: the loop must stop at the first failed write.
    let input = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n".repeat(1000);
    let start = Instant::now();
    serve(
        std::io::Cursor::new(input),
        Broken,
        Client::http("a", &h.url),
        fast(),
    )
    .unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// The real binary over pipes.

/// A 2025-era `initialize` (id 0), one line.
pub(crate) const INIT_LINE: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"it\",\"version\":\"1\"}}}\n";

pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) out: SharedBuf,
    pub(crate) pos: usize,
    stdin: Option<std::process::ChildStdin>,
}

impl Proc {
    pub(crate) fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_arc"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = SharedBuf::default();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sink.0.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        });
        Proc {
            stdin: child.stdin.take(),
            child,
            out,
            pos: 0,
        }
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        let s = self.stdin.as_mut().unwrap();
        s.write_all(bytes).unwrap();
        s.flush().unwrap();
    }

    /// The next message on stdout in `framing` (bounded wait).
    pub(crate) fn next(&mut self, framing: Framing) -> Value {
        let out = self.out.clone();
        let pos = self.pos;
        let (v, used) = eventually(WAIT, "a message from arc mcp", || {
            parse_next(&out.0.lock().unwrap()[pos..], framing)
        });
        self.pos += used;
        v
    }

    /// Closes stdin and waits (bounded) for the exit status.
    pub(crate) fn finish(&mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        eventually(Duration::from_secs(10), "arc mcp to exit", || {
            self.child.try_wait().unwrap()
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn binary_speaks_ndjson_over_stdio_end_to_end() {
    let h = TestHub::start();
    h.register("b");
    let mut p = Proc::spawn(&["mcp", "--agent", "e2e", "--base-url", &h.url]);
    let lines = Framing::Lines;
    p.write(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-03-26\",\"capabilities\":{},\"clientInfo\":{\"name\":\"it\",\"version\":\"1\"}}}\n");
    let r = p.next(lines);
    assert_subset(
        &r,
        &json!({"id": 1, "result": {"protocolVersion": "2025-03-26", "serverInfo": {"name": "arc-hub"}}}),
    );
    p.write(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    p.write(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"arc_post_message\",\"arguments\":{\"channel\":\"general\",\"body\":\"from the binary\"}}}\n");
    let r = p.next(lines);
    assert_eq!(r["id"], 2, "{r}");
    assert_eq!(r["result"]["isError"], false, "{r}");
    let seen = h.get("/v1/events?agent_id=b&since_id=0&timeout=0");
    assert!(
        seen.result()
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["from_agent"] == "e2e" && m["body"] == "from the binary"),
        "{seen}"
    );
    p.write(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"resources/subscribe\",\"params\":{\"uri\":\"arc://inbox\"}}\n");
    assert_eq!(
        p.next(lines),
        json!({"jsonrpc": "2.0", "id": 3, "result": {}})
    );
    h.say("b", "general", "wake up");
    assert_eq!(
        p.next(lines),
        json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "arc://inbox"}})
    );
    assert!(agent_ids(&h).contains(&"e2e".to_string()));
    let start = Instant::now();
    let status = p.finish();
    assert!(status.success(), "{status:?}");
    assert!(start.elapsed() < Duration::from_secs(6));
    assert!(!agent_ids(&h).contains(&"e2e".to_string()));
    // Nothing but protocol messages went to stdout.
    assert_eq!(p.pos, p.out.0.lock().unwrap().len());
}

#[test]
fn binary_answers_content_length_frames_in_kind() {
    let h = TestHub::start();
    let mut p = Proc::spawn(&["mcp", "--agent", "lsp", "--base-url", &h.url]);
    let cl = Framing::ContentLength;
    for (id, method) in [(1, "initialize"), (2, "ping")] {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method,
                          "params": {"protocolVersion": "2024-11-05", "capabilities": {}}})
        .to_string();
        p.write(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        let r = p.next(cl);
        assert_eq!(r["id"], id, "{r}");
    }
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                      "params": {"name": "arc_post_message", "arguments": {"channel": "general", "body": "ünïcödé"}}})
    .to_string();
    p.write(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    let r = p.next(cl);
    assert_eq!(r["result"]["isError"], false, "{r}");
    let posted: Value =
        serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(posted["body"], "ünïcödé");
    assert!(p.finish().success());
    assert_eq!(p.pos, p.out.0.lock().unwrap().len());
}

#[test]
fn binary_works_over_the_file_relay() {
    let h = TestHub::start_with(|c| c.relay = true);
    h.register("b");
    let spool = h.dir.path().join(".arc-relay");
    let spool = spool.to_str().unwrap();
    let mut p = Proc::spawn(&["mcp", "--agent", "sandboxed", "--relay-dir", spool]);
    let lines = Framing::Lines;
    p.write(INIT_LINE);
    assert_eq!(p.next(lines)["id"], 0);
    p.write(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"arc_post_message\",\"arguments\":{\"channel\":\"general\",\"body\":\"via the spool\"}}}\n");
    let r = p.next(lines);
    assert_eq!(r["result"]["isError"], false, "{r}");
    let seen = h.get("/v1/events?agent_id=b&since_id=0&timeout=0");
    assert!(
        seen.result()
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["from_agent"] == "sandboxed" && m["body"] == "via the spool"),
        "{seen}"
    );
    assert!(agent_ids(&h).contains(&"sandboxed".to_string()));
    assert!(p.finish().success());
    assert!(!agent_ids(&h).contains(&"sandboxed".to_string()));
}

#[cfg(unix)]
#[test]
fn binary_closes_its_session_on_sigterm() {
    let h = TestHub::start();
    let mut p = Proc::spawn(&["mcp", "--agent", "termed", "--base-url", &h.url]);
    p.write(INIT_LINE);
    assert_eq!(p.next(Framing::Lines)["id"], 0);
    // (arc_list_agents: the binary offers the core profile by default.)
    p.write(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"arc_list_agents\"}}\n");
    assert_eq!(p.next(Framing::Lines)["result"]["isError"], false);
    assert!(agent_ids(&h).contains(&"termed".to_string()));
    let pid = p.child.id() as libc::pid_t;
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = eventually(Duration::from_secs(10), "arc mcp to exit", || {
        p.child.try_wait().unwrap()
    });
    assert!(status.success(), "{status:?}");
    assert!(!agent_ids(&h).contains(&"termed".to_string()));
}

#[test]
fn keepalive_follows_a_short_hub_ttl() {
    // Regression: a fixed 30 s keepalive let sessions on a hub with a TTL
    // of 90 s or less expire between refreshes (and lose their claims).
    let h = TestHub::start_with(|c| c.presence_ttl_sec = 5);
    assert_eq!(h.get("/v1/hub-info").result()["presence_ttl_sec"], 5);
    let mut opts = fast();
    opts.keepalive = Duration::from_secs(30);
    let mut m = Mcp::start_with(Client::http("steady", &h.url), opts, Framing::Lines);
    m.init();
    eventually(WAIT, "background registration", || {
        agent_ids(&h).contains(&"steady".to_string()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(7));
    let ids = agent_ids(&h);
    assert!(ids.contains(&"steady".to_string()), "{ids:?}");
    m.close().0.unwrap();
}

#[test]
fn oversized_deep_and_piled_up_input_is_refused_in_bounded_memory() {
    // Defects: one 60 MB line took `arc mcp` to 1.9 GB (lines of up to
    // 64 MiB were parsed whole), and requests queued behind a slow call
    // had no bound at all.
    let h = TestHub::start();
    let mut m = Mcp::start(&h.url, "bounded");
    m.init();
    // A line over the message cap is refused, and the stream stays in step.
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"pad\":\"{}\"}}\n",
        "x".repeat(arc_hub::mcp::MAX_MESSAGE_BYTES)
    );
    m.send_raw(big.as_bytes());
    let r = m.next();
    assert_eq!(r["error"]["code"], -32700, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("exceeds"),
        "{r}"
    );
    assert_eq!(m.request("ping", json!({}))["result"], json!({}));
    // Nesting our own parser would refuse is refused before it is built.
    let deep = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\",\"params\":{{\"x\":{}1{}}}}}\n",
        "[".repeat(100),
        "]".repeat(100)
    );
    m.send_raw(deep.as_bytes());
    let r = m.next();
    assert_eq!(r["error"]["code"], -32700, "{r}");
    assert_eq!(
        r["error"]["message"],
        "parse error: message nested deeper than 64 levels"
    );
    // Behind a call that waits, at most 32 MiB of requests wait too; the
    // rest are answered at once, with their ids. The call waits until we
    // answer it through the hub, so nothing here races the clock.
    let call = json!({"jsonrpc": "2.0", "id": 100, "method": "tools/call", "params": {"name": "arc_rpc_call", "arguments": {"to_agent": "nobody", "body": "hello?", "timeout": 600}}});
    m.send(&call);
    let request = eventually(WAIT, "the call's request", || {
        let page = h.get("/v1/inbox/nobody");
        page.result()
            .as_array()?
            .iter()
            .find(|r| r["kind"] == "task_request")
            .cloned()
    });
    let pad = "p".repeat(8 << 20);
    for id in 101..106 {
        m.send(&json!({"jsonrpc": "2.0", "id": id, "method": "ping", "params": {"pad": pad}}));
    }
    for id in [104, 105] {
        let r = m.next();
        assert_eq!(r["id"], id, "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("server busy"),
            "{r}"
        );
    }
    h.register("nobody");
    let reply = json!({"from_agent": "nobody", "to_agent": "bounded", "kind": "task_result",
                       "reply_to": request["id"], "body": "here"});
    assert_eq!(h.post("/v1/messages", reply).status, 201);
    for id in 100..104 {
        let r = m.next();
        assert_eq!(r["id"], id, "{r}");
        assert!(r.get("result").is_some(), "{r}");
    }
}
