//! `arc mcp`'s tools (issue 15): every tool of the table called once
//! against a real hub, hub refusals as tool errors with the hub's text,
//! the `--tools` profiles (core, all, a list; unknown words are exit 2),
//! and the size of `tools/list` as help and docs/MCP.md state it.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

use arc_hub::client::{Client, Post};
use arc_hub::mcp::profile::{self, Profile};
use arc_hub::mcp::{Framing, Options, TOOLS};
use arc_hub::wire::Message;
use serde_json::{Value, json};

use crate::support::{TestHub, ids};

/// The in-memory server of `mcp.rs`, started with a tool profile and
/// initialised.
struct Mcp(crate::mcp::Mcp);

impl Mcp {
    fn start(url: &str, tools: Profile) -> Mcp {
        let opts = Options {
            tools,
            ..crate::mcp::fast()
        };
        let mut m = crate::mcp::Mcp::start_with(Client::http("a", url), opts, Framing::Lines);
        m.init();
        m.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        Mcp(m)
    }

    /// Sends a request; its response (notifications are skipped).
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.0.request(method, params)
    }

    fn names(&mut self) -> Vec<String> {
        let r = self.request("tools/list", json!({}));
        r["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Calls a tool: (text, isError).
    fn tool(&mut self, name: &str, args: Value) -> (String, bool) {
        self.0.tool(name, args)
    }

    fn ok(&mut self, name: &str, args: Value) -> Value {
        self.0.ok(name, args)
    }

    fn close(self) {
        self.0.close().0.unwrap();
    }
}

fn table_names() -> Vec<String> {
    TOOLS.iter().map(|t| t.name.to_string()).collect()
}

fn core_names() -> Vec<String> {
    [
        "arc_post_message",
        "arc_poll_messages",
        "arc_dm",
        "arc_list_agents",
        "arc_create_channel",
        "arc_rpc_call",
        "arc_next_task",
        "arc_reserve",
        "arc_check_paths",
    ]
    .map(String::from)
    .to_vec()
}

/// What the steps of the table share: the hub, values saved by earlier
/// steps, and the RPC responder.
struct Ctx<'a> {
    h: &'a TestHub,
    saved: HashMap<&'static str, Value>,
    responder: Option<JoinHandle<Message>>,
}

impl Ctx<'_> {
    fn id(&self, key: &str) -> i64 {
        self.saved[key].as_i64().unwrap_or_else(|| panic!("{key}"))
    }

    /// Posts as bob and saves the message id under `key`.
    fn bob_posts(&mut self, key: &'static str, body: Value) -> i64 {
        let mut body = body;
        body["from_agent"] = json!("bob");
        let r = self.h.post("/v1/messages", body);
        assert_eq!(r.status, 201, "{r}");
        let id = r.result()["id"].as_i64().unwrap();
        self.saved.insert(key, json!(id));
        id
    }
}

/// One call of the table: the tool, its arguments (which may first set
/// the hub up), and what its result must show.
struct Step {
    tool: &'static str,
    args: fn(&mut Ctx) -> Value,
    check: fn(&mut Ctx, &Value),
}

fn has<'v>(list: &'v Value, key: &str, want: &Value) -> Option<&'v Value> {
    list.as_array()?.iter().find(|x| &x[key] == want)
}

/// Messages, channels, threads, agents, delivery state, hub info.
fn talk_steps() -> Vec<Step> {
    vec![
        Step {
            tool: "arc_whoami",
            args: |_| json!({}),
            check: |_, r| assert_eq!(r["session"]["agent_id"], "a", "{r}"),
        },
        Step {
            tool: "arc_list_agents",
            args: |_| json!({}),
            check: |_, r| {
                assert!(has(r, "agent_id", &json!("a")).is_some(), "{r}");
                assert!(has(r, "agent_id", &json!("bob")).is_some(), "{r}");
            },
        },
        Step {
            tool: "arc_rename",
            args: |_| json!({"display_name": "Agent A"}),
            check: |c, r| {
                assert_eq!(r["display_name"], "Agent A", "{r}");
                let agents = c.h.get("/v1/agents").result().clone();
                assert_eq!(
                    has(&agents, "agent_id", &json!("a")).unwrap()["display_name"],
                    "Agent A"
                );
            },
        },
        Step {
            tool: "arc_hub_info",
            args: |_| json!({}),
            check: |_, r| {
                assert_eq!(r["implementation"], "arc-rs", "{r}");
                assert!(
                    r["features"]
                        .as_array()
                        .unwrap()
                        .contains(&json!("arc-rs:reservations"))
                );
            },
        },
        Step {
            tool: "arc_create_channel",
            args: |_| json!({"name": "builds"}),
            check: |c, r| {
                assert_eq!(r["name"], "builds", "{r}");
                let chans = c.h.get("/v1/channels").result().clone();
                assert!(has(&chans, "name", &json!("builds")).is_some());
            },
        },
        Step {
            tool: "arc_list_channels",
            args: |_| json!({}),
            check: |_, r| assert!(has(r, "name", &json!("builds")).is_some(), "{r}"),
        },
        Step {
            tool: "arc_post_message",
            args: |_| json!({"channel": "builds", "body": "hello", "thread_id": "t1"}),
            check: |c, r| {
                assert_eq!(
                    (&r["from_agent"], &r["channel"]),
                    (&json!("a"), &json!("builds"))
                );
                c.saved.insert("post", r["id"].clone());
            },
        },
        Step {
            tool: "arc_poll_messages",
            args: |c| {
                c.bob_posts(
                    "bob_post",
                    json!({"channel": "builds", "body": "from bob", "thread_id": "t1"}),
                );
                json!({"timeout": 5})
            },
            check: |c, r| {
                assert_eq!(ids(r), [c.id("bob_post")], "{r}");
                // Polling marks what it returned read.
                let p = c.h.get("/v1/agents/a/pending").result().clone();
                assert!(
                    p["marks"]["read"].as_i64().unwrap() >= c.id("bob_post"),
                    "{p}"
                );
            },
        },
        Step {
            tool: "arc_read_channel",
            args: |_| json!({"channel": "builds"}),
            check: |c, r| assert_eq!(ids(r), [c.id("post"), c.id("bob_post")], "{r}"),
        },
        Step {
            tool: "arc_list_threads",
            args: |_| json!({}),
            check: |_, r| assert!(has(r, "thread_id", &json!("t1")).is_some(), "{r}"),
        },
        Step {
            tool: "arc_read_thread",
            args: |_| json!({"thread_id": "t1"}),
            check: |c, r| assert_eq!(ids(&r["messages"]), [c.id("post"), c.id("bob_post")]),
        },
        Step {
            tool: "arc_dm",
            args: |_| json!({"to_agent": "bob", "body": "psst"}),
            check: |c, r| {
                assert_eq!(
                    (&r["to_agent"], &r["channel"]),
                    (&json!("bob"), &json!("direct"))
                );
                c.saved.insert("dm", r["id"].clone());
            },
        },
        Step {
            tool: "arc_deliveries",
            args: |c| json!({"message_id": c.id("dm")}),
            check: |_, r| {
                let rows = r.as_array().unwrap();
                assert_eq!(rows.len(), 1, "{r}");
                assert_eq!(rows[0]["agent_id"], "bob", "{r}");
                assert!(rows[0]["state"].is_string(), "{r}");
            },
        },
        Step {
            tool: "arc_inbox",
            args: |c| {
                c.bob_posts("bob_dm", json!({"to_agent": "a", "body": "for a"}));
                json!({})
            },
            check: |c, r| assert!(ids(r).contains(&c.id("bob_dm")), "{r}"),
        },
        Step {
            tool: "arc_mark_read",
            args: |c| json!({"up_to_id": c.id("bob_dm")}),
            check: |c, r| assert_eq!(r, &json!({"agent_id": "a", "read_up_to": c.id("bob_dm")})),
        },
        Step {
            tool: "arc_pending",
            args: |_| json!({}),
            check: |c, r| {
                assert_eq!(r["agent_id"], "a", "{r}");
                assert_eq!(r["marks"]["read"], c.id("bob_dm"), "{r}");
                let unread: Vec<i64> = serde_json::from_value(r["unread"].clone()).unwrap();
                assert!(!unread.contains(&c.id("bob_dm")), "{r}");
            },
        },
        Step {
            tool: "arc_dead_letters",
            args: |c| {
                c.bob_posts("dead", json!({"to_agent": "nobody-ever", "body": "hello?"}));
                json!({})
            },
            check: |c, r| {
                let row =
                    has(r, "to_agent", &json!("nobody-ever")).unwrap_or_else(|| panic!("{r}"));
                assert_eq!(row["message_id"], c.id("dead"), "{r}");
            },
        },
    ]
}

/// Claims, locks, reservations, tasks and RPC.
fn work_steps() -> Vec<Step> {
    vec![
        Step {
            tool: "arc_claim",
            args: |_| json!({"claim_key": "job-1", "thread_id": "t1"}),
            check: |_, r| {
                assert_eq!(r["acquired"], true, "{r}");
                assert_eq!(r["claim"]["owner_agent_id"], "a", "{r}");
            },
        },
        Step {
            tool: "arc_refresh_claim",
            args: |_| json!({"claim_key": "job-1", "ttl_sec": 600}),
            check: |_, r| {
                assert_eq!(
                    (&r["acquired"], &r["claim"]["claim_key"]),
                    (&json!(true), &json!("job-1"))
                )
            },
        },
        Step {
            tool: "arc_list_claims",
            args: |_| json!({"thread_id": "t1"}),
            check: |_, r| {
                let c = has(r, "claim_key", &json!("job-1")).unwrap_or_else(|| panic!("{r}"));
                assert_eq!(c["owner_agent_id"], "a");
            },
        },
        Step {
            tool: "arc_release",
            args: |_| json!({"claim_key": "job-1"}),
            check: |_, r| assert!(r["released_at"].is_string(), "{r}"),
        },
        Step {
            tool: "arc_lock",
            args: |_| json!({"file_path": "docs/x.md"}),
            check: |_, r| {
                assert_eq!(
                    (&r["acquired"], &r["lock"]["agent_id"]),
                    (&json!(true), &json!("a"))
                )
            },
        },
        Step {
            tool: "arc_refresh_lock",
            args: |_| json!({"file_path": "docs/x.md", "ttl_sec": 600}),
            check: |_, r| assert_eq!(r["acquired"], true, "{r}"),
        },
        Step {
            tool: "arc_list_locks",
            args: |_| json!({"agent_id": "a"}),
            check: |_, r| assert!(has(r, "file_path", &json!("docs/x.md")).is_some(), "{r}"),
        },
        Step {
            tool: "arc_unlock",
            args: |_| json!({"file_path": "docs/x.md"}),
            check: |c, r| {
                assert!(r["released_at"].is_string(), "{r}");
                let held =
                    c.h.get("/v1/locks?agent_id=a&active_only=1")
                        .result()
                        .clone();
                assert_eq!(held, json!([]));
            },
        },
        Step {
            tool: "arc_reserve",
            args: |_| json!({"paths": ["src/**"], "reason": "refactor"}),
            check: |c, r| {
                assert_eq!(
                    (&r["agent_id"], &r["paths"], &r["mode"]),
                    (&json!("a"), &json!(["src/**"]), &json!("exclusive"))
                );
                let held =
                    c.h.get("/v1/reservations?agent_id=a&active_only=1")
                        .result()
                        .clone();
                let row = has(&held, "reservation_id", &r["reservation_id"])
                    .expect("the reservation exists");
                assert_eq!(row["reason"], "refactor");
                c.saved.insert("res", r["reservation_id"].clone());
                c.saved.insert("res_expires", r["expires_at"].clone());
            },
        },
        Step {
            tool: "arc_check_paths",
            args: |c| {
                let r = c.h.post(
                    "/v1/reservations",
                    json!({"agent_id": "bob", "paths": ["lib/**"]}),
                );
                assert_eq!(r.status, 201, "{r}");
                json!({"paths": ["lib/x.rs", "src/a.rs"]})
            },
            check: |_, r| {
                assert_eq!(r["allowed"], false, "{r}");
                let conflicts = r["conflicts"].as_array().unwrap();
                assert_eq!(conflicts.len(), 1, "{r}");
                assert_eq!(
                    (&conflicts[0]["agent_id"], &conflicts[0]["pattern"]),
                    (&json!("bob"), &json!("lib/**"))
                );
            },
        },
        Step {
            tool: "arc_list_reservations",
            args: |_| json!({"agent_id": "a"}),
            check: |c, r| assert!(has(r, "reservation_id", &c.saved["res"]).is_some(), "{r}"),
        },
        Step {
            tool: "arc_renew_reservation",
            args: |c| json!({"reservation_id": c.saved["res"], "ttl_sec": 7200}),
            check: |c, r| {
                assert_eq!(r["active"], true, "{r}");
                assert_ne!(r["expires_at"], c.saved["res_expires"], "{r}");
            },
        },
        Step {
            tool: "arc_release_reservation",
            args: |c| json!({"reservation_id": c.saved["res"]}),
            check: |c, r| {
                assert_eq!(r["active"], false, "{r}");
                let held =
                    c.h.get("/v1/reservations?agent_id=a&active_only=1")
                        .result()
                        .clone();
                assert_eq!(held, json!([]));
            },
        },
        Step {
            tool: "arc_next_task",
            args: |c| {
                let body = json!({"channel": "builds", "kind": "task", "body": "build it", "metadata": {"paths": ["pkg/**"]}});
                c.bob_posts("task", body);
                json!({"channel": "builds"})
            },
            check: |c, r| {
                assert_eq!(r["task"]["task_id"], c.id("task"), "{r}");
                assert_eq!(r["claim"]["owner_agent_id"], "a", "{r}");
                assert_eq!(r["reservations"][0]["paths"], json!(["pkg/**"]), "{r}");
            },
        },
        Step {
            tool: "arc_list_tasks",
            args: |_| json!({"status": "open", "channel": "builds"}),
            check: |c, r| {
                let t = has(r, "task_id", &json!(c.id("task"))).unwrap_or_else(|| panic!("{r}"));
                assert_eq!(t["status"], "open");
            },
        },
        Step {
            tool: "arc_handoff",
            args: |c| json!({"task_id": c.id("task"), "to_agent": "bob", "note": "yours"}),
            check: |c, r| {
                assert_eq!(r["task_id"], c.id("task"), "{r}");
                assert_eq!(r["claim"]["owner_agent_id"], "bob", "{r}");
            },
        },
        Step {
            tool: "arc_complete_task",
            args: |c| json!({"task_id": c.id("task")}),
            check: |_, r| assert_eq!(r["task"]["status"], "done", "{r}"),
        },
        Step {
            tool: "arc_rpc_call",
            args: |c| {
                let url = c.h.url.clone();
                c.responder = Some(std::thread::spawn(move || answer_one_request(&url)));
                json!({"to_agent": "bob", "body": "ping", "timeout": 10})
            },
            check: |c, r| {
                let answer = c.responder.take().unwrap().join().unwrap();
                assert_eq!(
                    (&r["id"], &r["body"]),
                    (&json!(answer.id), &json!("echo ping"))
                );
            },
        },
    ]
}

/// Bob answers the first `task_request` addressed to him.
fn answer_one_request(url: &str) -> Message {
    let mut b = Client::http("bob", url);
    for _ in 0..50 {
        for msg in b.poll(1.0, None, None, true, 100).unwrap() {
            if msg.kind == "task_request" && msg.to_agent.as_deref() == Some("bob") {
                let reply = Post {
                    kind: Some("task_result".into()),
                    to_agent: Some(msg.from_agent.clone()),
                    reply_to: Some(msg.id),
                    ..Post::default()
                };
                return b
                    .post("direct", &format!("echo {}", msg.body), reply)
                    .unwrap();
            }
        }
    }
    panic!("no task_request arrived");
}

#[test]
fn every_tool_in_the_table_does_its_job_against_a_real_hub() {
    let steps: Vec<Step> = talk_steps().into_iter().chain(work_steps()).collect();
    let called: Vec<String> = steps.iter().map(|s| s.tool.to_string()).collect();
    let once: BTreeSet<&String> = called.iter().collect();
    assert_eq!(
        once.len(),
        called.len(),
        "a tool is called twice: {called:?}"
    );
    assert_eq!(
        once,
        table_names().iter().collect::<BTreeSet<_>>(),
        "every tool of the table is called exactly once"
    );
    let h = TestHub::start();
    h.register("bob");
    let mut m = Mcp::start(&h.url, Profile::all());
    let mut c = Ctx {
        h: &h,
        saved: HashMap::new(),
        responder: None,
    };
    for step in &steps {
        let args = (step.args)(&mut c);
        let r = m.ok(step.tool, args);
        (step.check)(&mut c, &r);
    }
    m.close();
}

#[test]
fn hub_refusals_are_tool_errors_with_the_hub_text() {
    let h = TestHub::start();
    h.register("bob");
    let r = h.post(
        "/v1/reservations",
        json!({"agent_id": "bob", "paths": ["src/**"]}),
    );
    assert_eq!(r.status, 201, "{r}");
    let mut m = Mcp::start(&h.url, Profile::all());
    let (text, err) = m.tool("arc_reserve", json!({"paths": ["src/a.rs", "docs/**"]}));
    assert!(err, "{text}");
    let (first, rest) = text.split_once('\n').unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        first,
        "reservation conflicts with src/** held by bob (exclusive)"
    );
    let conflicts: Value = serde_json::from_str(rest.strip_prefix("conflicts: ").unwrap()).unwrap();
    assert_eq!(conflicts[0]["agent_id"], "bob", "{text}");
    assert_eq!(conflicts[0]["pattern"], "src/**", "{text}");
    // All or nothing: docs/** was not reserved either.
    assert_eq!(h.get("/v1/reservations?agent_id=a").result(), &json!([]));
    for (tool, args, want) in [
        (
            "arc_release_reservation",
            json!({"reservation_id": "nope"}),
            "reservation not found, not active or not held by agent_id",
        ),
        (
            "arc_complete_task",
            json!({"task_id": 999}),
            "task not found",
        ),
        (
            "arc_mark_read",
            json!({"up_to_id": 10_000}),
            "up_to_id 10000 is past the newest message",
        ),
        (
            "arc_read_channel",
            json!({"channel": "nowhere"}),
            "channel not found",
        ),
        (
            "arc_deliveries",
            json!({"message_id": 999}),
            "message not found",
        ),
        (
            "arc_post_message",
            json!({"channel": "nowhere", "body": "x"}),
            "channel does not exist: nowhere",
        ),
        (
            "arc_reserve",
            json!({"paths": ["../up"]}),
            "invalid path pattern \"../up\"",
        ),
        (
            "arc_reserve",
            json!({"paths": []}),
            "argument paths must not be empty",
        ),
        ("arc_check_paths", json!({"paths": "src/a.rs", "x": 1}), ""),
    ] {
        let (text, err) = m.tool(tool, args);
        if want.is_empty() {
            assert!(!err, "{tool}: {text}");
            continue;
        }
        assert!(err && text.starts_with(want), "{tool}: {text}");
    }
    let task = h.post(
        "/v1/messages",
        json!({"from_agent": "bob", "channel": "general", "kind": "task", "body": "t"}),
    );
    let (text, err) = m.tool(
        "arc_handoff",
        json!({"task_id": task.result()["id"], "to_agent": "bob"}),
    );
    assert!(err, "{text}");
    assert_eq!(text, "the task has no active claim held by from_agent");
    m.close();
}

#[test]
fn core_lists_exactly_the_core_set_and_refuses_the_rest() {
    let h = TestHub::start();
    let mut m = Mcp::start(&h.url, Profile::parse("core").unwrap());
    assert_eq!(m.names(), core_names());
    let unknown = m.request("tools/call", json!({"name": "arc_bogus", "arguments": {}}));
    for name in ["arc_claim", "arc_whoami", "arc_list_reservations"] {
        let r = m.request("tools/call", json!({"name": name, "arguments": {}}));
        assert_eq!(r["error"]["code"], unknown["error"]["code"], "{r}");
        assert_eq!(r["error"]["code"], -32602, "{r}");
        assert_eq!(
            r["error"]["message"],
            format!("unknown tool: {name}"),
            "{r}"
        );
    }
    // A core tool works.
    let r = m.ok("arc_reserve", json!({"paths": ["src/**"]}));
    let held = h.get("/v1/reservations?agent_id=a").result().clone();
    assert_eq!(held[0]["reservation_id"], r["reservation_id"]);
    m.close();
}

#[test]
fn all_lists_every_tool_and_a_list_picks_by_tag_and_name() {
    let h = TestHub::start();
    let mut m = Mcp::start(&h.url, Profile::parse("all").unwrap());
    assert_eq!(m.names(), table_names());
    m.close();
    let mut m = Mcp::start(
        &h.url,
        Profile::parse("reservations,arc_post_message").unwrap(),
    );
    let names = m.names();
    assert_eq!(
        names,
        [
            "arc_post_message",
            "arc_reserve",
            "arc_check_paths",
            "arc_list_reservations",
            "arc_renew_reservation",
            "arc_release_reservation",
        ]
    );
    m.ok(
        "arc_post_message",
        json!({"channel": "general", "body": "hi"}),
    );
    let r = m.request(
        "tools/call",
        json!({"name": "arc_dm", "arguments": {"to_agent": "b", "body": "x"}}),
    );
    assert_eq!(r["error"]["message"], "unknown tool: arc_dm", "{r}");
    m.close();
}

fn arc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_arc"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn unknown_tools_or_tags_are_a_usage_error_naming_them() {
    let out = arc(&["mcp", "--tools", "core,arc_bogus,nope"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown tool or tag: arc_bogus, nope"),
        "{err}"
    );
    let out = arc(&["mcp", "--tools", ","]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// Runs the binary with `args` and returns the names `tools/list` gives.
fn binary_tool_names(h: &TestHub, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["mcp", "--agent", "bin", "--base-url", &h.url];
    args.extend_from_slice(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_arc"))
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "it", "version": "1"}}});
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    writeln!(stdin, "{init}\n{list}").unwrap();
    drop(stdin);
    let mut v = Value::Null;
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    while v["id"] != 2 {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "no answer to tools/list"
        );
        v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    }
    let _ = child.wait();
    v["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_binary_offers_core_by_default_and_all_on_request() {
    let h = TestHub::start();
    assert_eq!(binary_tool_names(&h, &[]), core_names());
    assert_eq!(binary_tool_names(&h, &["--tools", "all"]), table_names());
    assert_eq!(
        binary_tool_names(&h, &["--tools", "delivery"]),
        [
            "arc_mark_read",
            "arc_pending",
            "arc_deliveries",
            "arc_dead_letters"
        ]
    );
}

#[test]
fn core_tools_list_is_under_two_thousand_tokens() {
    let h = TestHub::start();
    let mut m = Mcp::start(&h.url, Profile::core());
    let r = m.request("tools/list", json!({}));
    let bytes = json!({"tools": r["result"]["tools"]}).to_string().len();
    assert_eq!(bytes, profile::list_bytes(&Profile::core()));
    let tokens = profile::approx_tokens(bytes);
    eprintln!("core tools/list: {bytes} bytes, ~{tokens} tokens");
    assert!(tokens < 2000, "core's tools/list is ~{tokens} tokens");
    m.close();
}

#[test]
fn help_and_docs_show_the_computed_sizes() {
    let out = arc(&["mcp", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--tools LIST"), "{help}");
    assert!(help.contains("(default core)"), "{help}");
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/MCP.md")).unwrap();
    for (name, count, bytes, tokens) in profile::sizes() {
        let (bytes, tokens) = (profile::thousands(bytes), profile::thousands(tokens));
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{help}"));
        assert!(line.contains(&format!("{count} tools")), "{line}");
        assert!(line.contains(&format!("{bytes} bytes")), "{line}");
        assert!(line.contains(&format!("~{tokens} tokens")), "{line}");
        let row = format!("| `{name}` | {count} | {bytes} | {tokens} |");
        assert!(doc.contains(&row), "docs/MCP.md should have the row {row}");
    }
}
