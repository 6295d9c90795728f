//! `arc mcp` for both MCP eras (issue 15), driven in memory through the
//! harness of `mcp.rs` and, where it matters, as the real binary: the
//! 2026-07-28 stateless requests (`_meta` on every request, `resultType`
//! and cache hints on every result, `server/discover`,
//! `subscriptions/listen`, -32602 and -32022), the mix with the 2025
//! handshake, batches per era, and Claude Code channel notifications,
//! which share the surfaced mark with the wake hooks.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arc_hub::client::Client;
use arc_hub::mcp::{Framing, SUPPORTED_VERSIONS};
use arc_hub::wire::Message;
use arc_hub::wire::headers::{HOOK_TEXT_CHARS, compose};
use serde_json::{Map, Value, json};

use crate::mcp::{INIT_LINE, Mcp, Proc, WAIT, fast};
use crate::support::{TestHub, assert_subset, eventually};

const V: &str = "2026-07-28";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPS: &str = "io.modelcontextprotocol/clientCapabilities";
const META_SUB: &str = "io.modelcontextprotocol/subscriptionId";
const META_SERVER: &str = "io.modelcontextprotocol/serverInfo";

/// The `_meta` of a 2026-07-28 request with `caps`.
fn meta_with(caps: Value) -> Value {
    json!({
        META_VERSION: V,
        META_CAPS: caps,
        "io.modelcontextprotocol/clientInfo": {"name": "it-2026", "version": "1"},
    })
}

/// `params` with a 2026-07-28 `_meta` added.
fn modern(params: Value) -> Value {
    let mut p = params;
    p["_meta"] = meta_with(json!({}));
    p
}

/// The error code of a response, with the response in the panic message.
#[track_caller]
fn code(r: &Value) -> i64 {
    r["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {r}"))
}

/// Checks what every 2026-07-28 result carries.
#[track_caller]
fn assert_modern_result(r: &Value) -> &Value {
    assert!(r.get("error").is_none(), "{r}");
    let res = &r["result"];
    assert_eq!(res["resultType"], "complete", "{r}");
    assert_subset(
        &res["_meta"][META_SERVER],
        &json!({"name": "arc-hub", "version": env!("CARGO_PKG_VERSION")}),
    );
    res
}

/// Checks the cache hints the spec requires on cacheable results.
#[track_caller]
fn assert_cache_hints(res: &Value) {
    assert!(res["ttlMs"].as_u64().is_some(), "{res}");
    assert_eq!(res["cacheScope"], "private", "{res}");
}

fn tool_text(res: &Value) -> Value {
    assert_eq!(res["isError"], false, "{res}");
    serde_json::from_str(res["content"][0]["text"].as_str().unwrap()).unwrap()
}

/// Every notification that arrives within `limit`, stopping early at one
/// for which `until` holds.
fn notes_until(m: &mut Mcp, limit: Duration, until: impl Fn(&Value) -> bool) -> Vec<Value> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    while let Some(v) = m.try_next(end.saturating_duration_since(Instant::now())) {
        let done = until(&v);
        out.push(v);
        if done {
            break;
        }
    }
    out
}

#[test]
fn server_discover_alone_answers_in_the_specs_shape() {
    let h = TestHub::start();
    let mut m = Mcp::start(&h.url, "disco");
    let r = m.request("server/discover", modern(json!({})));
    let res = assert_modern_result(&r);
    assert_eq!(res["supportedVersions"], json!(SUPPORTED_VERSIONS), "{r}");
    assert_eq!(
        res["supportedVersions"],
        json!([
            "2026-07-28",
            "2025-11-25",
            "2025-06-18",
            "2025-03-26",
            "2024-11-05"
        ])
    );
    assert_eq!(
        res["capabilities"],
        json!({"tools": {}, "resources": {"subscribe": true},
               "experimental": {"claude/channel": {}}}),
        "{r}"
    );
    assert!(
        res["instructions"]
            .as_str()
            .unwrap()
            .contains("agent \"disco\""),
        "{r}"
    );
    assert_cache_hints(res);
    // Identity lives in `_meta` in 2026-07-28, not at the top.
    assert!(res.get("serverInfo").is_none(), "{r}");
    assert!(res.get("protocolVersion").is_none(), "{r}");
    // Nothing else was said: no notification, no handshake implied.
    assert!(m.try_next(Duration::from_millis(300)).is_none());
    // Stateless: the next request without `_meta` is still refused.
    let r = m.request("tools/list", json!({}));
    assert_eq!(code(&r), -32602, "{r}");
    m.close().0.unwrap();
}

#[test]
fn a_stateless_tools_call_with_meta_posts_without_any_handshake() {
    let h = TestHub::start();
    h.register("b");
    let mut m = Mcp::start(&h.url, "stateless");
    let r = m.request("tools/list", modern(json!({})));
    let res = assert_modern_result(&r);
    assert_cache_hints(res);
    assert!(
        res["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "arc_post_message"),
        "{r}"
    );
    let r = m.request(
        "tools/call",
        modern(json!({"name": "arc_post_message",
                      "arguments": {"channel": "general", "body": "no handshake needed"}})),
    );
    let res = assert_modern_result(&r);
    assert!(
        res.get("ttlMs").is_none(),
        "tools/call is not cacheable: {r}"
    );
    let posted = tool_text(res);
    assert_eq!(posted["from_agent"], "stateless");
    let seen = h.get("/v1/events?agent_id=b&since_id=0&timeout=0");
    assert!(
        seen.result()
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == posted["id"] && x["body"] == "no handshake needed"),
        "{seen}"
    );
    // A hub error is still a tool result with the hub's text.
    let r = m.request(
        "tools/call",
        modern(json!({"name": "arc_post_message",
                      "arguments": {"channel": "nope", "body": "x"}})),
    );
    let res = assert_modern_result(&r);
    assert_eq!(res["isError"], true, "{r}");
    assert_eq!(res["content"][0]["text"], "channel does not exist: nope");
    // Resources, the 2026 way: hints on list and read, -32602 (not -32002)
    // for an unknown URI.
    for method in ["resources/list", "resources/templates/list"] {
        let r = m.request(method, modern(json!({})));
        assert_cache_hints(assert_modern_result(&r));
    }
    let r = m.request("resources/read", modern(json!({"uri": "arc://inbox"})));
    let res = assert_modern_result(&r);
    assert_eq!(res["ttlMs"], 0, "{r}");
    assert_eq!(res["contents"][0]["uri"], "arc://inbox");
    let r = m.request("resources/read", modern(json!({"uri": "arc://nope"})));
    assert_eq!(code(&r), -32602, "{r}");
    // An unknown tool is a protocol error in both eras.
    let r = m.request("tools/call", modern(json!({"name": "arc_nope"})));
    assert_eq!(
        (code(&r), r["error"]["message"].as_str()),
        (-32602, Some("unknown tool: arc_nope"))
    );
    m.close().0.unwrap();
}

#[test]
fn discover_then_initialize_then_both_eras_on_one_stream() {
    // What Claude Code does (anthropics/claude-code#96183): a modern probe,
    // then the legacy handshake anyway.
    let h = TestHub::start();
    let mut m = Mcp::start(&h.url, "mixed");
    let r = m.request("server/discover", modern(json!({})));
    assert_modern_result(&r);
    let r = m.result(
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "claude-code", "version": "2.1.280"}}),
    );
    assert_eq!(r["protocolVersion"], "2025-11-25");
    assert!(r.get("resultType").is_none(), "{r}");
    m.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    // After the handshake, a request without `_meta` is 2025-era ...
    let r = m.result("tools/list", json!({}));
    assert!(
        r.get("resultType").is_none() && r.get("ttlMs").is_none(),
        "{r}"
    );
    assert_eq!(m.result("ping", json!({})), json!({}));
    // ... and one with it is still judged by its own `_meta`.
    let r = m.request("tools/list", modern(json!({})));
    assert_cache_hints(assert_modern_result(&r));
    let r = m.request("ping", modern(json!({})));
    assert_eq!(code(&r), -32601, "{r}");
    // The legacy subscription works as before.
    assert_eq!(
        m.result("resources/subscribe", json!({"uri": "arc://inbox"})),
        json!({})
    );
    m.close().0.unwrap();
}

#[test]
fn requests_without_meta_before_any_handshake_get_the_specs_error() {
    let h = TestHub::start();
    let mut m = Mcp::start(&h.url, "early");
    for (method, params) in [
        ("tools/list", json!({})),
        ("tools/call", json!({"name": "arc_list_agents"})),
        ("resources/list", json!({})),
        ("resources/read", json!({"uri": "arc://inbox"})),
        ("resources/subscribe", json!({"uri": "arc://inbox"})),
        ("logging/setLevel", json!({"level": "info"})),
        ("server/discover", json!({})),
        ("subscriptions/listen", json!({"notifications": {}})),
    ] {
        let r = m.request(method, params);
        assert_eq!(code(&r), -32602, "{method}: {r}");
        let text = r["error"]["message"].as_str().unwrap();
        assert!(
            text.contains("initialize") && text.contains(META_VERSION),
            "{method}: {r}"
        );
    }
    // A `_meta` naming a handshake version needs the handshake too.
    let r = m.request(
        "tools/list",
        json!({"_meta": {META_VERSION: "2025-06-18", META_CAPS: {}}}),
    );
    assert_eq!(code(&r), -32602, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2025-06-18 needs the initialize handshake"),
        "{r}"
    );
    // Unknown methods are unknown; ping may come before initialize (2025-11-25
    // lifecycle); notifications are never answered.
    let r = m.request("prompts/list", json!({}));
    assert_eq!(code(&r), -32601, "{r}");
    assert_eq!(m.result("ping", json!({})), json!({}));
    m.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    m.send(&json!({"jsonrpc": "2.0", "method": "tools/list"}));
    assert!(m.try_next(Duration::from_millis(300)).is_none());
    // The server still serves: the handshake, then the same request works.
    m.init();
    assert!(m.result("tools/list", json!({}))["tools"].is_array());
    m.close().0.unwrap();
}

#[test]
fn an_unsupported_or_malformed_meta_gets_the_specs_errors() {
    let h = TestHub::start();
    let mut m = Mcp::start(&h.url, "picky");
    // Before and after a handshake alike: `_meta` decides.
    for round in 0..2 {
        let r = m.request(
            "tools/list",
            json!({"_meta": {META_VERSION: "2099-12-31", META_CAPS: {}}}),
        );
        assert_eq!(code(&r), -32022, "{r}");
        assert_eq!(
            r["error"]["data"],
            json!({"supported": SUPPORTED_VERSIONS, "requested": "2099-12-31"}),
            "{r}"
        );
        // The same for discover: a modern probe learns the list.
        let r = m.request(
            "server/discover",
            json!({"_meta": {META_VERSION: "1900-01-01", META_CAPS: {}}}),
        );
        assert_eq!(code(&r), -32022, "{r}");
        assert_eq!(r["error"]["data"]["supported"][0], V, "{r}");
        for bad in [
            json!({"_meta": {META_VERSION: V}}),
            json!({"_meta": {META_VERSION: V, META_CAPS: []}}),
            json!({"_meta": {META_VERSION: 20260728, META_CAPS: {}}}),
            json!({"_meta": "2026-07-28"}),
        ] {
            let r = m.request("tools/list", bad.clone());
            assert_eq!(code(&r), -32602, "{bad} -> {r}");
        }
        if round == 0 {
            m.init();
        }
    }
    m.close().0.unwrap();
}

#[test]
fn ping_and_set_level_are_answered_for_2025_and_removed_for_2026() {
    let h = TestHub::start();
    let mut m = Mcp::start(&h.url, "lvl");
    for method in [
        "ping",
        "logging/setLevel",
        "resources/subscribe",
        "resources/unsubscribe",
    ] {
        let r = m.request(
            method,
            modern(json!({"level": "info", "uri": "arc://inbox"})),
        );
        assert_eq!(code(&r), -32601, "{method}: {r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("removed in MCP 2026-07-28"),
            "{r}"
        );
    }
    m.init();
    assert_eq!(m.result("ping", json!({})), json!({}));
    for level in ["debug", "info", "warning", "emergency"] {
        assert_eq!(
            m.result("logging/setLevel", json!({"level": level})),
            json!({})
        );
    }
    let r = m.request("logging/setLevel", json!({"level": "loud"}));
    assert_eq!(code(&r), -32602, "{r}");
    let r = m.request("logging/setLevel", json!({}));
    assert_eq!(code(&r), -32602, "{r}");
    // After the handshake the 2026 requests still lack the removed methods.
    let r = m.request("ping", modern(json!({})));
    assert_eq!(code(&r), -32601, "{r}");
    m.close().0.unwrap();
}

#[test]
fn subscriptions_listen_acknowledges_then_delivers_inbox_updates() {
    let h = TestHub::start();
    h.register("b");
    let mut m = Mcp::start(&h.url, "listener");
    // Register first, so the hub knows the agent.
    let r = m.request("tools/call", modern(json!({"name": "arc_list_agents"})));
    assert_modern_result(&r);
    // A listen with more than we offer: the ack names what we honor.
    m.send(
        &json!({"jsonrpc": "2.0", "id": "listen:1", "method": "subscriptions/listen",
                   "params": modern(json!({"notifications": {
                       "toolsListChanged": true,
                       "resourceSubscriptions": ["file:///x", "arc://inbox"]}}))}),
    );
    let ack = m.next();
    assert_eq!(
        ack,
        json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
               "params": {"_meta": {META_SUB: "listen:1"},
                          "notifications": {"resourceSubscriptions": ["arc://inbox"]}}})
    );
    // No response: the listen stays open.
    assert!(m.try_next(Duration::from_millis(300)).is_none());
    // The same id again is refused; a bad filter too.
    m.send(
        &json!({"jsonrpc": "2.0", "id": "listen:1", "method": "subscriptions/listen",
                   "params": modern(json!({"notifications": {}}))}),
    );
    assert_eq!(code(&m.next()), -32600);
    let r = m.request("subscriptions/listen", modern(json!({})));
    assert_eq!(code(&r), -32602, "{r}");
    let r = m.request(
        "subscriptions/listen",
        modern(json!({"notifications": {"resourceSubscriptions": "arc://inbox"}})),
    );
    assert_eq!(code(&r), -32602, "{r}");
    // Our own post tells nothing; theirs does, tagged with the listen's id.
    let r = m.request(
        "tools/call",
        modern(json!({"name": "arc_post_message",
                      "arguments": {"channel": "general", "body": "mine"}})),
    );
    assert_modern_result(&r);
    assert!(
        m.try_next(Duration::from_millis(1500)).is_none(),
        "own post notified"
    );
    let theirs = h.say("b", "general", "for the listener");
    let update = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                        "params": {"_meta": {META_SUB: "listen:1"}, "uri": "arc://inbox"}});
    assert_eq!(m.try_next(WAIT), Some(update.clone()));
    // The update leads to the message.
    let r = m.request("resources/read", modern(json!({"uri": "arc://inbox"})));
    let res = assert_modern_result(&r);
    let feed: Value = serde_json::from_str(res["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        feed["messages"].as_array().unwrap().last().unwrap()["id"],
        theirs["id"]
    );
    // A second listen, numbered, and a legacy subscriber after a handshake:
    // one message, one update each, each in its own era's shape.
    m.send(&json!({"jsonrpc": "2.0", "id": 77, "method": "subscriptions/listen",
                   "params": modern(json!({"notifications": {"resourceSubscriptions": ["arc://inbox"]}}))}));
    assert_eq!(m.next()["params"]["_meta"][META_SUB], 77);
    m.init();
    m.result("resources/subscribe", json!({"uri": "arc://inbox"}));
    std::thread::sleep(Duration::from_millis(200));
    h.post(
        "/v1/messages",
        json!({"from_agent": "b", "to_agent": "listener", "body": "a DM"}),
    );
    let got: Vec<Value> = (0..3).map(|_| m.next()).collect();
    let mut tags: Vec<Value> = got
        .iter()
        .map(|n| {
            assert_eq!(n["method"], "notifications/resources/updated", "{n}");
            assert_eq!(n["params"]["uri"], "arc://inbox", "{n}");
            n["params"]["_meta"][META_SUB].clone()
        })
        .collect();
    tags.sort_by_key(|t| t.to_string());
    assert_eq!(tags, [json!("listen:1"), json!(77), Value::Null]);
    // Cancelling a listen ends it: nothing more for it, and no response.
    m.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": "listen:1", "reason": "done"}}),
    );
    m.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": 77}}),
    );
    m.result("resources/unsubscribe", json!({"uri": "arc://inbox"}));
    std::thread::sleep(Duration::from_millis(300));
    h.say("b", "general", "nobody listens now");
    assert!(m.try_next(Duration::from_millis(2500)).is_none());
    m.close().0.unwrap();
}

#[test]
fn batches_are_answered_only_in_a_2025_03_26_session() {
    let h = TestHub::start();
    let batch = b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"},42,{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"initialize\",\"params\":{}}]\n";
    // No handshake, or 2025-06-18 and later: refused as one invalid request.
    let mut m = Mcp::start(&h.url, "batch");
    m.send_raw(batch);
    let r = m.next();
    assert_eq!((code(&r), &r["id"]), (-32600, &Value::Null), "{r}");
    m.init();
    m.send_raw(batch);
    let r = m.next();
    assert_eq!(code(&r), -32600, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at protocol version 2025-06-18"),
        "{r}"
    );
    assert_eq!(m.result("ping", json!({})), json!({}));
    m.close().0.unwrap();
    // 2025-03-26 required servers to accept them: one array of replies.
    let mut m = Mcp::start(&h.url, "batch-0326");
    m.result(
        "initialize",
        json!({"protocolVersion": "2025-03-26", "capabilities": {}}),
    );
    m.send_raw(batch);
    let r = m.next();
    let replies = r.as_array().unwrap_or_else(|| panic!("not an array: {r}"));
    assert_eq!(replies.len(), 4, "{r}");
    assert_eq!(replies[0], json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
    assert_eq!(replies[1]["id"], 2);
    assert!(replies[1]["result"]["tools"].is_array(), "{r}");
    assert_eq!(
        (code(&replies[2]), &replies[2]["id"]),
        (-32600, &Value::Null)
    );
    assert_eq!((code(&replies[3]), &replies[3]["id"]), (-32600, &json!(3)));
    m.send_raw(b"[]\n");
    assert_eq!(code(&m.next()), -32600);
    // Notifications only: nothing to answer.
    m.send_raw(b"[{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}]\n");
    assert_eq!(m.result("ping", json!({})), json!({}));
    assert!(m.try_next(Duration::from_millis(200)).is_none());
    m.close().0.unwrap();
}

// ---------------------------------------------------------------------------
// Claude Code channels.

/// Runs `arc hook claude-code` (UserPromptSubmit) for `agent`; its stdout.
fn hook_context(url: &str, agent: &str) -> String {
    let fixture = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hooks/claude-code/UserPromptSubmit.json"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_arc"))
        .args(["hook", "claude-code", "--agent", agent, "--base-url", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&fixture).unwrap();
    let start = Instant::now();
    eventually(Duration::from_secs(20), "arc hook to exit", || {
        child.try_wait().unwrap()
    });
    assert!(start.elapsed() < Duration::from_secs(20));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The ids the hub has not shown `agent` yet.
fn unsurfaced(h: &TestHub, agent: &str) -> Vec<i64> {
    int_ids(&h.get(&format!("/v1/agents/{agent}/pending")).result()["unsurfaced"])
}

fn int_ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// The messages with `ids`, as the hub stores them.
fn messages(h: &TestHub, agent: &str, ids: &[i64]) -> Vec<Message> {
    let all: Vec<Message> = serde_json::from_value(
        h.get(&format!(
            "/v1/events?agent_id={agent}&since_id=0&timeout=0&exclude_self=1&limit=1000"
        ))
        .result()
        .clone(),
    )
    .unwrap();
    all.into_iter().filter(|m| ids.contains(&m.id)).collect()
}

#[track_caller]
fn assert_channel_note(n: &Value, text: &str, newest: &Message, count: usize) {
    assert_eq!(n["jsonrpc"], "2.0", "{n}");
    assert_eq!(n["method"], "notifications/claude/channel", "{n}");
    assert!(n.get("id").is_none(), "{n}");
    assert_eq!(n["params"]["content"], text, "{n}");
    let meta: &Map<String, Value> = n["params"]["meta"].as_object().unwrap();
    for (k, v) in meta {
        assert!(v.is_string(), "meta values are strings: {n}");
        assert!(
            k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "meta keys are identifiers: {n}"
        );
    }
    assert_eq!(meta["message_id"], newest.id.to_string(), "{n}");
    assert_eq!(meta["from_agent"], newest.from_agent.as_str(), "{n}");
    assert_eq!(meta["channel"], newest.channel.as_str(), "{n}");
    assert_eq!(meta["count"], count.to_string(), "{n}");
}

#[test]
fn claude_channel_notifications_carry_the_hook_headers_and_share_the_surfaced_mark() {
    let h = TestHub::start();
    h.register("b");
    let mut opts = fast();
    opts.claude_channel = true;
    let mut m = Mcp::start_with(Client::http("cc", &h.url), opts, Framing::Lines);
    let init = m.init();
    assert!(
        init["instructions"].as_str().unwrap().contains("<channel>"),
        "{init}"
    );
    assert_eq!(
        init["capabilities"]["experimental"]["claude/channel"],
        json!({})
    );
    // Whatever was already waiting for the agent arrives first, in one
    // notification; wait for it to be taken.
    let first = notes_until(&mut m, Duration::from_secs(3), |n| {
        n["method"] == "notifications/claude/channel"
    });
    eventually(WAIT, "nothing left to surface", || {
        unsurfaced(&h, "cc").is_empty().then_some(())
    });
    assert!(
        first
            .iter()
            .all(|n| n["method"] == "notifications/claude/channel"),
        "{first:?}"
    );
    // A DM arrives: one notification, headers only, the hook's text.
    let dm = h
        .post(
            "/v1/messages",
            json!({"from_agent": "b", "to_agent": "cc", "body": "please review PR 7\nsecond line"}),
        )
        .result()
        .clone();
    let note = eventually(WAIT, "a channel notification", || {
        m.try_next(Duration::from_millis(200))
    });
    let shown = messages(&h, "cc", &[dm["id"].as_i64().unwrap()]);
    let (text, n) = compose("cc", &shown, 0, &[], false, HOOK_TEXT_CHARS);
    assert_eq!(n, 1);
    assert!(text.contains(&format!(
        "- #{} from b in DM (chat): please review PR 7 second line",
        dm["id"]
    )));
    assert_channel_note(&note, &text, &shown[0], 1);
    assert_eq!(note["params"]["meta"]["to_agent"], "cc", "{note}");
    // The surfaced mark moved (the read mark did not), so the hook that
    // runs next tells the agent nothing more.
    assert!(unsurfaced(&h, "cc").is_empty());
    let pending = h.get("/v1/agents/cc/pending");
    assert!(
        int_ids(&pending.result()["unread"]).contains(&dm["id"].as_i64().unwrap()),
        "{pending}"
    );
    assert_eq!(hook_context(&h.url, "cc"), "");
    // And the other way round: what a hook showed is not pushed again.
    // (The hook takes it while the push thread waits; then a new message
    // is pushed alone.)
    m.close().0.unwrap();
    let hooked = h.say("b", "general", "seen by the hook");
    let out = hook_context(&h.url, "cc");
    assert!(out.contains(&format!("#{}", hooked["id"])), "{out}");
    let mut opts = fast();
    opts.claude_channel = true;
    let mut m = Mcp::start_with(Client::http("cc", &h.url), opts, Framing::Lines);
    m.init();
    assert!(
        m.try_next(Duration::from_millis(1500)).is_none(),
        "a message the hook showed was pushed"
    );
    // A burst arrives while nobody takes it: one notification for the
    // batch, meta for the newest plus the count.
    m.close().0.unwrap();
    let a = h.say("b", "general", "burst one");
    let b = h
        .post(
            "/v1/messages",
            json!({"from_agent": "b", "to_agent": "cc", "body": "burst two", "thread_id": "t-9"}),
        )
        .result()
        .clone();
    let ids = [a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap()];
    let shown = messages(&h, "cc", &ids);
    let (text, _) = compose("cc", &shown, 0, &[], false, HOOK_TEXT_CHARS);
    let mut opts = fast();
    opts.claude_channel = true;
    let mut m = Mcp::start_with(Client::http("cc", &h.url), opts, Framing::Lines);
    let note = eventually(WAIT, "the batch", || m.try_next(Duration::from_millis(200)));
    assert_channel_note(&note, &text, &shown[1], 2);
    assert_eq!(note["params"]["meta"]["thread_id"], "t-9", "{note}");
    assert!(text.starts_with("Arc: 2 new messages for cc (headers only):"));
    assert_eq!(hook_context(&h.url, "cc"), "");
    m.close().0.unwrap();
}

#[test]
fn a_long_backlog_is_one_channel_notification_not_a_flood() {
    let h = TestHub::start();
    h.register("b");
    for i in 0..80 {
        h.post(
            "/v1/messages",
            json!({"from_agent": "b", "to_agent": "bl",
                   "body": format!("{i:03} {}", "x".repeat(150))}),
        );
    }
    let waiting = unsurfaced(&h, "bl").len();
    assert!(waiting >= 80, "{waiting}");
    let mut opts = fast();
    opts.claude_channel = true;
    let mut m = Mcp::start_with(Client::http("bl", &h.url), opts, Framing::Lines);
    let first = eventually(WAIT, "the backlog's notification", || {
        m.try_next(Duration::from_millis(200))
    });
    let meta = &first["params"]["meta"];
    let count: usize = meta["count"].as_str().unwrap().parse().unwrap();
    let more: usize = meta["more"].as_str().unwrap().parse().unwrap();
    assert!(count > 0 && more > 0, "{first}");
    assert_eq!(count + more, waiting, "{first}");
    let content = first["params"]["content"].as_str().unwrap();
    assert!(content.chars().count() <= HOOK_TEXT_CHARS, "{content}");
    assert!(
        content.ends_with(&format!("… and {more} more")),
        "{content}"
    );
    // The rest waits for news, as a hook waits for its next event.
    assert!(
        m.try_next(Duration::from_millis(2500)).is_none(),
        "the backlog flooded"
    );
    assert_eq!(unsurfaced(&h, "bl").len(), more);
    let fresh = h.say("b", "general", "fresh news");
    let next = eventually(WAIT, "the next notification", || {
        m.try_next(Duration::from_millis(200))
    });
    let meta = &next["params"]["meta"];
    assert_eq!(meta["message_id"], fresh["id"].to_string(), "{next}");
    assert_eq!(meta["count"], (more + 1).to_string(), "{next}");
    assert!(meta.get("more").is_none(), "{next}");
    assert!(unsurfaced(&h, "bl").is_empty());
    m.close().0.unwrap();
}

#[test]
fn no_claude_channel_notifications_unless_enabled() {
    let h = TestHub::start();
    h.register("b");
    let mut m = Mcp::start(&h.url, "quiet");
    // Declared by the server, but not enabled: a plain initialize, a 2026
    // request without the capability, a legacy subscription.
    let init = m.init();
    assert_eq!(
        init["capabilities"]["experimental"]["claude/channel"],
        json!({})
    );
    assert!(!init["instructions"].as_str().unwrap().contains("<channel>"));
    m.request("tools/call", modern(json!({"name": "arc_list_agents"})));
    m.result("resources/subscribe", json!({"uri": "arc://inbox"}));
    let dm = h
        .post(
            "/v1/messages",
            json!({"from_agent": "b", "to_agent": "quiet", "body": "are you there?"}),
        )
        .result()
        .clone();
    let notes = notes_until(&mut m, Duration::from_secs(3), |_| false);
    assert!(
        notes
            .iter()
            .all(|n| n["method"] == "notifications/resources/updated"),
        "{notes:?}"
    );
    assert!(!notes.is_empty(), "the legacy push still works");
    // Nothing was surfaced: the hook still shows the DM.
    assert!(unsurfaced(&h, "quiet").contains(&dm["id"].as_i64().unwrap()));
    let out = hook_context(&h.url, "quiet");
    assert!(
        out.contains(&format!("#{} from b in DM", dm["id"])),
        "{out}"
    );
    // A 2026 request that declares the capability turns it on.
    let r = m.request(
        "tools/list",
        json!({"_meta": meta_with(json!({"experimental": {"claude/channel": {}}}))}),
    );
    assert_modern_result(&r);
    let later = h.say("b", "general", "now with channels");
    let notes = notes_until(&mut m, WAIT, |n| {
        n["method"] == "notifications/claude/channel"
    });
    let note = notes.last().unwrap();
    assert_eq!(note["method"], "notifications/claude/channel", "{notes:?}");
    assert_eq!(
        note["params"]["meta"]["message_id"],
        later["id"].to_string()
    );
    m.close().0.unwrap();
}

#[test]
fn the_channel_capability_in_initialize_turns_channels_on() {
    let h = TestHub::start();
    h.register("b");
    let mut m = Mcp::start(&h.url, "asker");
    m.result(
        "initialize",
        json!({"protocolVersion": "2025-11-25",
               "capabilities": {"experimental": {"claude/channel": {}}},
               "clientInfo": {"name": "t", "version": "0"}}),
    );
    // Let the channel thread take what was waiting (nothing for a new agent
    // but the hub's own notices), then post.
    eventually(WAIT, "nothing left to surface", || {
        unsurfaced(&h, "asker").is_empty().then_some(())
    });
    let _ = notes_until(&mut m, Duration::from_millis(500), |_| false);
    let msg = h.say("b", "general", "ping the asker");
    let note = eventually(WAIT, "a channel notification", || {
        m.try_next(Duration::from_millis(200))
    });
    assert_eq!(note["method"], "notifications/claude/channel", "{note}");
    assert_eq!(note["params"]["meta"]["message_id"], msg["id"].to_string());
    assert_eq!(note["params"]["meta"]["channel"], "general");
    m.close().0.unwrap();
}

// ---------------------------------------------------------------------------
// The real binary.

#[test]
fn binary_survives_hostile_input_and_serves_both_eras_after() {
    let h = TestHub::start();
    h.register("b");
    let mut p = Proc::spawn(&["mcp", "--agent", "tough", "--base-url", &h.url]);
    let lines = Framing::Lines;
    let next_error = |p: &mut Proc| {
        let r = p.next(lines);
        (code(&r), r["id"].clone())
    };
    // Garbage, a 10 MB line, a batch, an unknown method, a request before
    // any handshake: each answered, in order.
    p.write(b"this is not json\n");
    assert_eq!(next_error(&mut p), (-32700, Value::Null));
    let mut huge =
        b"{\"jsonrpc\":\"2.0\",\"id\":\"big\",\"method\":\"ping\",\"params\":{\"pad\":\"".to_vec();
    huge.resize(10_000_000, b'x');
    huge.extend_from_slice(b"\"}}\n");
    p.write(&huge);
    let r = p.next(lines);
    assert_eq!(code(&r), -32700, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("exceeds"),
        "{r}"
    );
    p.write(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]\n");
    assert_eq!(next_error(&mut p), (-32600, Value::Null));
    p.write(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"no/such/method\"}\n");
    assert_eq!(next_error(&mut p), (-32601, json!(2)));
    p.write(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\"}\n");
    assert_eq!(next_error(&mut p), (-32602, json!(3)));
    // 2026: discover, a stateless post, a listen and its push.
    let line = |v: Value| format!("{v}\n").into_bytes();
    p.write(&line(
        json!({"jsonrpc": "2.0", "id": 4, "method": "server/discover",
                         "params": modern(json!({}))}),
    ));
    let r = p.next(lines);
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    assert_eq!(r["result"]["supportedVersions"][0], V, "{r}");
    p.write(&line(
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                         "params": modern(json!({"name": "arc_post_message",
                             "arguments": {"channel": "general", "body": "from 2026"}}))}),
    ));
    let r = p.next(lines);
    assert_eq!(r["result"]["isError"], false, "{r}");
    p.write(&line(json!({"jsonrpc": "2.0", "id": "sub", "method": "subscriptions/listen",
                         "params": modern(json!({"notifications": {"resourceSubscriptions": ["arc://inbox"]}}))})));
    let ack = p.next(lines);
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    std::thread::sleep(Duration::from_millis(300));
    h.say("b", "general", "wake the 2026 client");
    let n = p.next(lines);
    assert_eq!(
        n,
        json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
               "params": {"_meta": {META_SUB: "sub"}, "uri": "arc://inbox"}})
    );
    // 2025: the handshake still works on the same stream.
    p.write(INIT_LINE);
    let r = p.next(lines);
    assert_eq!(r["result"]["protocolVersion"], "2025-11-25", "{r}");
    p.write(b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\"}\n");
    assert_eq!(
        p.next(lines),
        json!({"jsonrpc": "2.0", "id": 6, "result": {}})
    );
    let start = Instant::now();
    assert!(p.finish().success());
    assert!(start.elapsed() < Duration::from_secs(6));
    assert_eq!(p.pos, p.out.0.lock().unwrap().len());
}

#[test]
fn binary_turns_channels_on_from_the_environment() {
    let h = TestHub::start();
    h.register("b");
    let mut child = Command::new(env!("CARGO_BIN_EXE_arc"))
        .args(["mcp", "--agent", "envcc", "--base-url", &h.url])
        .env(arc_hub::mcp::CHANNEL_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    stdin.write_all(INIT_LINE).unwrap();
    let init = rx.recv_timeout(WAIT).unwrap();
    assert!(
        init["result"]["instructions"]
            .as_str()
            .unwrap()
            .contains("<channel>"),
        "{init}"
    );
    eventually(WAIT, "nothing left to surface", || {
        unsurfaced(&h, "envcc").is_empty().then_some(())
    });
    while rx.recv_timeout(Duration::from_millis(500)).is_ok() {}
    let msg = h.say("b", "general", "over the real pipe");
    let note = rx.recv_timeout(WAIT).expect("a channel notification");
    assert_eq!(note["method"], "notifications/claude/channel", "{note}");
    assert_eq!(note["params"]["meta"]["message_id"], msg["id"].to_string());
    assert!(
        note["params"]["content"]
            .as_str()
            .unwrap()
            .contains("over the real pipe")
    );
    drop(stdin);
    let status = eventually(Duration::from_secs(10), "arc mcp to exit", || {
        child.try_wait().unwrap()
    });
    assert!(status.success());
}
