//! The v1 core profile over real HTTP against an in-process hub (docs/PROTOCOL.md, "Wire rules", "Data model", "Endpoints", "Threads").

use serde_json::{Value, json};

use crate::support::{TestHub, assert_subset, ids};

#[test]
fn hub_info_describes_this_hub() {
    let h = TestHub::start();
    let r = h.get("/v1/hub-info");
    assert_eq!(r.status, 200);
    let info = r.result();
    assert_subset(
        info,
        &json!({
            "journal_mode": "wal", "wal_mode": true, "default_channel": "general",
            "max_body_chars": 128000, "max_attachment_chars": 256000, "max_attachments": 32,
            "allow_remote": false, "protocol_version": "1", "implementation": "arc-rs",
            "message_kinds": ["artifact","chat","claim","notice","release","task","task_request","task_result"],
        }),
    );
    let id = info["instance_id"].as_str().unwrap();
    assert!(id.starts_with("mh1-") && id.len() == 24, "{id}");
    assert_eq!(r.header("X-Arc-Instance"), Some(id));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let path = info["storage_path"].as_str().unwrap();
    let expected = std::fs::canonicalize(h.db_path()).unwrap();
    assert_eq!(path, expected.to_string_lossy());
    // The fingerprint is the reference formula over path and birth time.
    let birth: String = h
        .sql()
        .query_row(
            "SELECT created_at FROM channels WHERE name='general'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(id, arc_hub::ids::instance_id(path, Some(&birth)));
    let features: Vec<&str> = info["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        !features.contains(&"relay"),
        "no relay runs in this hub: {features:?}"
    );
    assert!(features.contains(&"session_rename"));
    for f in &features {
        assert!(
            [
                "sse",
                "long_poll_keepalive",
                "subtask_rollup",
                "rpc_kinds",
                "capability_filter",
                "shutdown_control",
                "session_rename"
            ]
            .contains(f)
                || f.starts_with("arc-rs:"),
            "unknown or unprefixed feature {f}"
        );
    }
}

#[test]
fn every_response_carries_the_instance_header() {
    let h = TestHub::start();
    let id = h.get("/v1/hub-info").result()["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    for (method, path, status) in [
        ("GET", "/", 200),
        ("GET", "/v1/nope", 404),
        ("GET", "/v1/channels/", 404),
        ("PUT", "/v1/channels", 405),
        ("PATCH", "/v1/messages", 405),
        ("POST", "/v1/agents", 404),
        ("DELETE", "/v1/channels", 404),
        ("GET", "/v1/claims/refresh", 404),
    ] {
        let r = h.call(method, path, None);
        assert_eq!(r.status, status, "{r}");
        assert_eq!(r.header("X-Arc-Instance"), Some(id.as_str()), "{r}");
        if status != 200 {
            assert_eq!(r.json["ok"], json!(false), "{r}");
        }
    }
    assert_eq!(h.call("GET", "/v1/nope", None).error(), "not found");
    let html = h.get("/");
    assert_eq!(
        html.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        html.header("Content-Security-Policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(html.header("Access-Control-Allow-Origin").is_none());
}

#[test]
fn sessions_create_conflict_replace_rename_delete() {
    let h = TestHub::start();
    let r = h.post(
        "/v1/sessions",
        json!({"agent_id": " alice ", "capabilities": ["py", 1, null], "metadata": {"k": 1}}),
    );
    assert_eq!(r.status, 201, "{r}");
    let first = r.result().clone();
    assert_subset(
        &first,
        &json!({"agent_id": "alice", "display_name": "alice", "capabilities": ["py", "1", "None"], "metadata": {"k": 1}, "active": true}),
    );
    assert_eq!(first["created_at"], first["last_seen"]);
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first["session_id"].as_str().unwrap().len(), 36);

    h.post("/v1/sessions", json!({"agent_id": "alice"}))
        .expect_err(409, "agent_id already has an active session");
    h.post(
        "/v1/sessions",
        json!({"agent_id": "alice", "replace": "false"}),
    )
    .expect_err(409, "agent_id already has an active session");
    h.post(
        "/v1/sessions",
        json!({"agent_id": "alice", "replace": "maybe"}),
    )
    .expect_err(400, "replace must be a boolean");

    let second = h.post(
        "/v1/sessions",
        json!({"agent_id": "alice", "replace": true, "display_name": "Alice A"}),
    );
    assert_eq!(second.status, 201);
    assert_eq!(second.result()["display_name"], "Alice A");
    let agents = h.get("/v1/agents").result().clone();
    assert_eq!(
        agents.as_array().unwrap().len(),
        1,
        "replace deactivates the old session: {agents}"
    );

    let long = "x".repeat(65);
    h.post("/v1/sessions/alice/rename", json!({"display_name": long}))
        .expect_err(400, "display_name must be 64 characters or fewer");
    h.post("/v1/sessions/alice/rename", json!({"display_name": "   "}))
        .expect_err(400, "display_name is required");
    h.post("/v1/sessions/nobody/rename", json!({"display_name": "x"}))
        .expect_err(404, "no active session for agent_id");
    let renamed = h.post("/v1/sessions/alice/rename", json!({"display_name": " Al "}));
    assert_eq!(
        (renamed.status, renamed.result()["display_name"].clone()),
        (200, json!("Al"))
    );

    let sid = second.result()["session_id"].as_str().unwrap().to_string();
    let del = h.delete(&format!("/v1/sessions/{sid}"));
    assert_eq!(del.status, 200);
    assert_eq!(del.result(), &json!({"session_id": sid, "deleted": true}));
    h.delete(&format!("/v1/sessions/{sid}"))
        .expect_err(404, "session not found");
    assert_eq!(h.get("/v1/agents").result(), &json!([]));

    h.post("/v1/sessions", json!({}))
        .expect_err(400, "agent_id is required");
    h.post("/v1/sessions", json!({"agent_id": ["x"]}))
        .expect_err(400, "agent_id must be a string");
    h.post(
        "/v1/sessions",
        json!({"agent_id": "b", "capabilities": "py"}),
    )
    .expect_err(400, "capabilities must be a list");
    h.post("/v1/sessions", json!({"agent_id": "b", "metadata": [1]}))
        .expect_err(400, "metadata must be a JSON object");
}

#[test]
fn path_ids_are_percent_decoded() {
    let h = TestHub::start();
    h.register("a b");
    let r = h.post(
        "/v1/sessions/a%20b/rename",
        json!({"display_name": "spaced"}),
    );
    assert_eq!(r.status, 200, "{r}");
    h.post(
        "/v1/messages",
        json!({"from_agent": "x", "to_agent": "a b", "body": "hi"}),
    );
    assert_eq!(
        h.get("/v1/inbox/a%20b").result().as_array().unwrap().len(),
        1
    );
}

#[test]
fn agents_filter_by_capability_and_touch_as() {
    let h = TestHub::start();
    h.post(
        "/v1/sessions",
        json!({"agent_id": "b", "capabilities": ["rust", "review"]}),
    );
    h.post(
        "/v1/sessions",
        json!({"agent_id": "a", "capabilities": ["python"]}),
    );
    let all = h.get("/v1/agents").result().clone();
    let names: Vec<_> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"], "ordered by agent_id");
    let rust = h.get("/v1/agents?capability=rust").result().clone();
    assert_eq!(rust.as_array().unwrap().len(), 1);
    assert_eq!(rust[0]["agent_id"], "b");
    assert_eq!(h.get("/v1/agents?capability=rus").result(), &json!([]));
    h.sql()
        .execute(
            "UPDATE sessions SET last_seen = '2000-01-01T00:00:00Z' WHERE agent_id = 'a'",
            [],
        )
        .unwrap();
    // `as` refreshes presence before listing; a stale agent is expired first.
    let listed = h.get("/v1/agents?as=b").result().clone();
    let names: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b"]);
}

#[test]
fn channels_create_once() {
    let h = TestHub::start();
    let r = h.post(
        "/v1/channels",
        json!({"name": " dev ", "created_by": "a", "metadata": {"topic": "x"}}),
    );
    assert_eq!(r.status, 201);
    assert_subset(
        r.result(),
        &json!({"name": "dev", "created_by": "a", "metadata": {"topic": "x"}}),
    );
    let again = h.post(
        "/v1/channels",
        json!({"name": "dev", "metadata": {"topic": "changed"}}),
    );
    assert_eq!(again.status, 200);
    assert_eq!(
        again.result(),
        r.result(),
        "existing row returned unchanged"
    );
    let empty_by = h.post("/v1/channels", json!({"name": "e", "created_by": ""}));
    assert_eq!(empty_by.result()["created_by"], "");
    let no_by = h.post("/v1/channels", json!({"name": "n"}));
    assert_eq!(no_by.result()["created_by"], Value::Null);
    h.post("/v1/channels", json!({"name": " "}))
        .expect_err(400, "name is required");
    let names: Vec<_> = h
        .get("/v1/channels")
        .result()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["dev", "direct", "e", "general", "n"]);
}

#[test]
fn post_message_validation_order_and_texts() {
    let h = TestHub::start_with(|c| {
        c.max_body_chars = 10;
        c.max_attachments = 2;
        c.max_attachment_chars = 20;
    });
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"parent_task_id": "x"}),
            "parent_task_id must be an integer",
        ),
        (
            json!({"parent_task_id": ""}),
            "parent_task_id must be an integer",
        ),
        (
            json!({"parent_task_id": 999}),
            "parent_task_id references unknown task",
        ),
        (json!({}), "from_agent is required"),
        (
            json!({"from_agent": null, "body": "x"}),
            "from_agent is required",
        ),
        (json!({"from_agent": "  "}), "from_agent is required"),
        (
            json!({"from_agent": "a", "channel": "  "}),
            "channel must be non-empty",
        ),
        (
            json!({"from_agent": "a", "kind": "Shout"}),
            "unsupported kind: shout",
        ),
        (json!({"from_agent": "a", "kind": ""}), "unsupported kind: "),
        (
            json!({"from_agent": "a", "attachments": "x"}),
            "attachments must be a list",
        ),
        (
            json!({"from_agent": "a", "attachments": [{}, {}, {}]}),
            "too many attachments",
        ),
        (
            json!({"from_agent": "a", "attachments": [1]}),
            "attachments must contain JSON objects",
        ),
        (
            json!({"from_agent": "a"}),
            "body or attachments is required",
        ),
        (
            json!({"from_agent": "a", "body": null}),
            "body or attachments is required",
        ),
        (
            json!({"from_agent": "a", "body": "12345678901"}),
            "body exceeds max size",
        ),
        (
            json!({"from_agent": "a", "body": "x", "reply_to": "one"}),
            "reply_to must be an integer",
        ),
        (
            json!({"from_agent": "a", "body": "x", "reply_to": true}),
            "reply_to must be an integer",
        ),
        (
            json!({"from_agent": "a", "body": "x", "reply_to": 2.5}),
            "reply_to must be an integer",
        ),
        (
            json!({"from_agent": "a", "body": "x", "reply_to": 1e30}),
            "reply_to must be an integer",
        ),
        (
            json!({"from_agent": "a", "body": "x", "metadata": "m"}),
            "metadata must be a JSON object",
        ),
        (
            json!({"from_agent": "a", "body": "x", "channel": "nope"}),
            "channel does not exist: nope",
        ),
        (
            json!({"from_agent": "a", "body": "x", "attachments": [{"type": "text", "content": "é".repeat(4)}]}),
            "attachment type text exceeds max size",
        ),
    ];
    for (body, err) in cases {
        let r = h.post("/v1/messages", body.clone());
        assert_eq!((r.status, r.error()), (400, err), "body {body}");
    }
    let count: i64 = h
        .sql()
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 0, "nothing stored by refused posts");
    // Size is counted in characters: 10 × "é" fits a 10-character limit.
    assert_eq!(
        h.post(
            "/v1/messages",
            json!({"from_agent": "a", "body": "é".repeat(10)})
        )
        .status,
        201
    );
    // Attachment size is measured on Python's ASCII-escaped JSON: "é"×3 = 20 chars.
    let ok = h.post(
        "/v1/messages",
        json!({"from_agent": "a", "attachments": [{"type": "text", "content": "é".repeat(3)}]}),
    );
    assert_eq!(ok.status, 201, "{ok}");
}

#[test]
fn post_message_defaults_and_normalisation() {
    let h = TestHub::start();
    let r = h.post("/v1/messages", json!({"from_agent": " a ", "body": " padded ", "kind": " NOTICE ", "thread_id": "", "metadata": []}));
    assert_eq!(r.status, 201, "{r}");
    assert_subset(
        r.result(),
        &json!({"from_agent": "a", "to_agent": null, "channel": "general", "kind": "notice", "body": " padded ", "thread_id": null, "metadata": {}, "attachments": [], "reply_to": null}),
    );
    let dm = h.post("/v1/messages", json!({"from_agent": "a", "to_agent": "b", "body": "psst", "channel": "any-label", "kind": null}));
    assert_subset(
        dm.result(),
        &json!({"to_agent": "b", "channel": "any-label", "kind": "chat"}),
    );
    let dm2 = h.post(
        "/v1/messages",
        json!({"from_agent": "a", "to_agent": "b", "body": "x", "channel": ""}),
    );
    assert_eq!(dm2.result()["channel"], "direct");
    let blank_to = h.post(
        "/v1/messages",
        json!({"from_agent": "a", "to_agent": " ", "body": "x", "channel": 0}),
    );
    assert_subset(
        blank_to.result(),
        &json!({"to_agent": null, "channel": "general"}),
    );
    let att = h.post(
        "/v1/messages",
        json!({"from_agent": "a", "attachments": [
            {"type": "code", "content": "fn x(){}", "language": "rust", "extra": 1},
            {"type": "diff_ref", "path": " a.rs ", "base": "main", "head": null, "start_line": "3", "end_line": 9.0}
        ]}),
    );
    assert_eq!(att.status, 201, "{att}");
    assert_eq!(att.result()["body"], "");
    assert_eq!(
        att.result()["attachments"],
        json!([{"type": "code", "content": "fn x(){}", "language": "rust"}, {"type": "diff_ref", "path": "a.rs", "base": "main", "start_line": 3, "end_line": 9}])
    );
    // reply_to need not exist; numeric strings are integers.
    assert_eq!(
        h.post(
            "/v1/messages",
            json!({"from_agent": "a", "body": "x", "reply_to": " 77 "})
        )
        .result()["reply_to"],
        77
    );
    // curl's default form content type is accepted.
    let curl = h.raw(
        "POST",
        "/v1/messages",
        Some(br#"{"from_agent":"c","body":"form"}"#),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(curl.status, 201, "{curl}");
}

#[test]
fn tasks_register_complete_and_roll_up() {
    let h = TestHub::start();
    let parent = h
        .post(
            "/v1/messages",
            json!({"from_agent": "lead", "kind": "task", "body": "parent", "thread_id": "t1"}),
        )
        .result()["id"]
        .as_i64()
        .unwrap();
    let c1 = h.post("/v1/messages", json!({"from_agent": "lead", "kind": "task", "body": "c1", "parent_task_id": parent, "channel": "direct"})).result()["id"].as_i64().unwrap();
    let c2 = h.post("/v1/messages", json!({"from_agent": "lead", "kind": "task_request", "to_agent": "w", "body": "c2", "parent_task_id": parent.to_string()})).result()["id"].as_i64().unwrap();
    // parent_task_id is ignored for other kinds.
    h.post(
        "/v1/messages",
        json!({"from_agent": "lead", "body": "chat", "parent_task_id": parent}),
    );
    let tasks = h
        .get(&format!("/v1/tasks?parent_id={parent}"))
        .result()
        .clone();
    assert_eq!(ids_of(&tasks, "task_id"), [c1, c2]);
    assert_subset(
        &tasks[0],
        &json!({"parent_task_id": parent, "channel": "direct", "thread_id": null, "status": "open", "completed_at": null}),
    );
    assert_eq!(
        h.get("/v1/tasks?status=open")
            .result()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    h.get("/v1/tasks?status=closed")
        .expect_err(400, "status must be 'open' or 'done'");
    h.get("/v1/tasks?parent_id=x")
        .expect_err(400, "parent_id must be an integer");
    assert_eq!(
        h.get("/v1/tasks?thread_id=t1")
            .result()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    h.post("/v1/tasks/0/complete", json!({}))
        .expect_err(404, "task not found");
    h.post("/v1/tasks/99999999999999999999999/complete", json!({}))
        .expect_err(404, "task not found");
    h.call(
        "POST",
        &format!("/v1/tasks/{c1}/complete"),
        Some(b"[]".to_vec()),
    )
    .expect_err(400, "request body must be a JSON object");
    let done = h.post(&format!("/v1/tasks/{c1}/complete"), json!({}));
    assert_eq!(done.status, 200);
    assert_eq!(done.result()["status"], "done");
    assert!(done.json.get("parent_completed").is_none());
    let last = h.post(&format!("/v1/tasks/{c2}/complete"), json!({}));
    assert_eq!(last.json["parent_completed"], json!(true), "{last}");
    let p = h.get("/v1/tasks?thread_id=t1").result()[0].clone();
    assert_eq!(p["status"], "done");
    let notices: Vec<Value> = h
        .get("/v1/messages?channel=general")
        .result()
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["from_agent"] == "system")
        .cloned()
        .collect();
    assert_eq!(notices.len(), 1);
    assert_subset(
        &notices[0],
        &json!({"kind": "notice", "body": format!("All 2 subtasks of task {parent} are complete."), "reply_to": parent, "thread_id": "t1", "metadata": {"auto_rollup": true, "parent_task_id": parent}}),
    );
    // Idempotent, and the rollup is not repeated.
    let again = h.post(&format!("/v1/tasks/{c2}/complete"), json!({}));
    assert_eq!(again.status, 200);
    assert!(again.json.get("parent_completed").is_none());
}

#[test]
fn task_result_completes_the_request_once() {
    let h = TestHub::start();
    let req = h.post("/v1/messages", json!({"from_agent": "caller", "to_agent": "svc", "kind": "task_request", "body": "add 2 2"})).result()["id"].as_i64().unwrap();
    let res = h.post("/v1/messages", json!({"from_agent": "svc", "to_agent": "caller", "kind": "task_result", "body": "4", "reply_to": req, "metadata": {"task_completed": "forged", "x": 1}}));
    assert_eq!(
        res.result()["metadata"],
        json!({"task_completed": req, "x": 1})
    );
    let stored: String = h
        .sql()
        .query_row(
            "SELECT metadata_json FROM messages WHERE id = ?1",
            [res.result()["id"].as_i64().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&stored).unwrap()["task_completed"],
        json!(req),
        "stamp persisted"
    );
    assert_eq!(h.get("/v1/tasks").result()[0]["status"], "done");
    let second = h.post(
        "/v1/messages",
        json!({"from_agent": "svc", "kind": "task_result", "body": "again", "reply_to": req}),
    );
    assert!(
        second.result()["metadata"].get("task_completed").is_none(),
        "only the first result is stamped"
    );
    // A result replying to a plain `task` is not an RPC completion.
    let task = h
        .post(
            "/v1/messages",
            json!({"from_agent": "a", "kind": "task", "body": "t"}),
        )
        .result()["id"]
        .as_i64()
        .unwrap();
    let r = h.post(
        "/v1/messages",
        json!({"from_agent": "b", "kind": "task_result", "body": "r", "reply_to": task}),
    );
    assert_eq!(r.result()["metadata"], json!({}));
}

fn ids_of(v: &Value, key: &str) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[key].as_i64().unwrap())
        .collect()
}

#[test]
fn messages_feed_filters_tail_and_errors() {
    let h = TestHub::start();
    h.post("/v1/channels", json!({"name": "dev"}));
    let m1 = h.say("a", "general", "one")["id"].as_i64().unwrap();
    let m2 = h
        .post(
            "/v1/messages",
            json!({"from_agent": "a", "body": "two", "thread_id": "th"}),
        )
        .result()["id"]
        .as_i64()
        .unwrap();
    let m3 = h
        .post(
            "/v1/messages",
            json!({"from_agent": "a", "channel": "dev", "body": "three", "thread_id": "th"}),
        )
        .result()["id"]
        .as_i64()
        .unwrap();
    h.post("/v1/messages", json!({"from_agent": "a", "to_agent": "b", "channel": "general", "body": "dm", "thread_id": "th"}));
    let m5 = h.say("a", "general", "five")["id"].as_i64().unwrap();

    assert_eq!(
        ids(h.get("/v1/messages?channel=general").result()),
        [m1, m2, m5],
        "DMs excluded"
    );
    assert_eq!(
        ids(h
            .get(&format!("/v1/messages?channel=general&since_id={m1}"))
            .result()),
        [m2, m5]
    );
    assert_eq!(
        ids(h.get("/v1/messages?channel=general&limit=2").result()),
        [m1, m2]
    );
    assert_eq!(
        ids(h
            .get("/v1/messages?channel=general&limit=2&tail=1")
            .result()),
        [m2, m5]
    );
    assert_eq!(
        ids(h
            .get(&format!(
                "/v1/messages?channel=general&limit=1&tail=true&since_id={m1}"
            ))
            .result()),
        [m2],
        "tail ignored with since_id"
    );
    assert_eq!(
        ids(h.get("/v1/messages?thread_id=th").result()),
        [m2, m3],
        "thread across channels"
    );
    assert_eq!(
        ids(h.get("/v1/messages?thread_id=th&channel=dev").result()),
        [m3]
    );
    assert_eq!(
        ids(h.get("/v1/messages?channel=general&limit=100000").result()).len(),
        3
    );
    assert_eq!(
        ids(h.get("/v1/messages?channel=general&channel=dev").result()),
        [m1, m2, m5],
        "first value wins"
    );
    assert_eq!(
        ids(h.get("/v1/messages?channel=&thread_id=th").result()),
        [m2, m3],
        "blank values dropped"
    );

    h.get("/v1/messages")
        .expect_err(400, "channel or thread_id query parameter is required");
    h.get("/v1/messages?channel=nope&since_id=x")
        .expect_err(404, "channel not found");
    h.get("/v1/messages?channel=general&since_id=x")
        .expect_err(400, "since_id must be an integer");
    h.get("/v1/messages?channel=general&since_id=-1")
        .expect_err(400, "since_id must be >= 0");
    h.get("/v1/messages?channel=general&since_id=123456789012345678901234567890")
        .expect_err(400, "since_id must be an integer");
    h.get("/v1/messages?channel=general&limit=0")
        .expect_err(400, "limit must be at least 1");
    h.get("/v1/messages?channel=general&limit=1.5")
        .expect_err(400, "limit must be an integer");
    h.get("/v1/messages?channel=general&timeout=soon")
        .expect_err(400, "timeout must be a number");
    assert_eq!(
        h.get("/v1/messages?channel=general&timeout=nan").status,
        200
    );
    // ArcClient's RPC fallback reads the seeded `direct` channel.
    assert_eq!(h.get("/v1/messages?channel=direct").status, 200);
}

#[test]
fn events_visibility_filters_and_presence() {
    let h = TestHub::start();
    h.register("bob");
    h.sql()
        .execute("UPDATE sessions SET last_seen = '2000-01-01T00:00:00Z'", [])
        .ok();
    let before: String = h
        .sql()
        .query_row(
            "SELECT last_seen FROM sessions WHERE agent_id='bob'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    h.post("/v1/channels", json!({"name": "dev"}));
    let a = h.say("alice", "general", "public")["id"].as_i64().unwrap();
    let dm_bob = h
        .post(
            "/v1/messages",
            json!({"from_agent": "alice", "to_agent": "bob", "body": "for bob"}),
        )
        .result()["id"]
        .as_i64()
        .unwrap();
    h.post(
        "/v1/messages",
        json!({"from_agent": "alice", "to_agent": "eve", "body": "for eve"}),
    );
    let own = h.say("bob", "dev", "mine")["id"].as_i64().unwrap();
    let th = h
        .post(
            "/v1/messages",
            json!({"from_agent": "alice", "channel": "dev", "thread_id": "x", "body": "threaded"}),
        )
        .result()["id"]
        .as_i64()
        .unwrap();

    assert_eq!(
        ids(h.get("/v1/events?agent_id=bob").result()),
        [a, dm_bob, own, th]
    );
    assert_eq!(
        ids(h.get("/v1/events?agent_id=bob&exclude_self=1").result()),
        [a, dm_bob, th]
    );
    assert_eq!(
        ids(h.get("/v1/events?agent_id=bob&channel=dev").result()),
        [own, th]
    );
    assert_eq!(
        ids(h.get("/v1/events?agent_id=bob&thread_id=x").result()),
        [th]
    );
    assert_eq!(
        ids(h
            .get(&format!("/v1/events?agent_id=bob&since_id={own}"))
            .result()),
        [th]
    );
    assert_eq!(
        ids(h.get("/v1/events?agent_id=eve&exclude_self=yes").result()).len(),
        4
    );
    h.get("/v1/events")
        .expect_err(400, "agent_id query parameter is required");
    h.get("/v1/events?agent_id=bob&channel=nope")
        .expect_err(404, "channel not found");
    h.get("/v1/events?agent_id=bob&limit=0")
        .expect_err(400, "limit must be at least 1");
    // bob posted after the stale stamp was written, so the post revived him
    // only if he was still active; either way /v1/events touched an active row.
    let after: Option<String> = h
        .sql()
        .query_row(
            "SELECT last_seen FROM sessions WHERE agent_id='bob' AND active=1",
            [],
            |r| r.get(0),
        )
        .ok();
    if let Some(after) = after {
        assert!(after > before, "events touched presence");
    }
}

#[test]
fn bootstrap_and_inbox() {
    let h = TestHub::start();
    h.register("bob");
    let p = h.say("alice", "general", "hello")["id"].as_i64().unwrap();
    let d1 = h
        .post(
            "/v1/messages",
            json!({"from_agent": "alice", "to_agent": "bob", "body": "1"}),
        )
        .result()["id"]
        .as_i64()
        .unwrap();
    let d2 = h
        .post(
            "/v1/messages",
            json!({"from_agent": "carol", "to_agent": "bob", "channel": "label", "body": "2"}),
        )
        .result()["id"]
        .as_i64()
        .unwrap();
    let other = h
        .post(
            "/v1/messages",
            json!({"from_agent": "alice", "to_agent": "eve", "body": "x"}),
        )
        .result()["id"]
        .as_i64()
        .unwrap();
    let b = h.get("/v1/bootstrap?agent_id=bob").result().clone();
    assert_subset(
        &b,
        &json!({"agent_id": "bob", "latest_visible_id": d2, "default_channel": "general", "session": {"agent_id": "bob", "active": true}}),
    );
    assert_eq!(b["live_agents"].as_array().unwrap().len(), 1);
    assert!(other > d2 && p < d1);
    let nobody = h.get("/v1/bootstrap?agent_id=nobody").result().clone();
    assert_eq!(
        (
            nobody["session"].clone(),
            nobody["latest_visible_id"].clone()
        ),
        (Value::Null, json!(p)),
        "only broadcasts are visible"
    );
    h.get("/v1/bootstrap")
        .expect_err(400, "agent_id query parameter is required");
    assert_eq!(ids(h.get("/v1/inbox/bob").result()), [d1, d2]);
    assert_eq!(
        ids(h.get(&format!("/v1/inbox/bob?since_id={d1}")).result()),
        [d2]
    );
    assert_eq!(ids(h.get("/v1/inbox/bob?limit=1&tail=1").result()), [d2]);
    assert_eq!(h.get("/v1/inbox/nobody").result(), &json!([]));
}

#[test]
fn threads_summaries_and_detail() {
    let h = TestHub::start();
    h.post("/v1/channels", json!({"name": "dev"}));
    let root = h.post("/v1/messages", json!({"from_agent": "a", "channel": "dev", "kind": "task", "body": "root", "thread_id": "T"})).result()["id"].as_i64().unwrap();
    let art = h.post("/v1/messages", json!({"from_agent": "b", "channel": "general", "kind": "artifact", "body": "out", "thread_id": "T"})).result()["id"].as_i64().unwrap();
    h.post(
        "/v1/claims",
        json!({"owner_agent_id": "b", "claim_key": "k", "thread_id": "T"}),
    );
    h.post(
        "/v1/messages",
        json!({"from_agent": "a", "body": "w", "thread_id": "W"}),
    );
    h.post(
        "/v1/claims",
        json!({"owner_agent_id": "b", "claim_key": "only-claim", "thread_id": "C"}),
    );
    h.post(
        "/v1/locks",
        json!({"agent_id": "b", "file_path": "x.rs", "metadata": {"thread_id": "L"}}),
    );
    h.post(
        "/v1/locks",
        json!({"agent_id": "b", "file_path": "y.rs", "metadata": {"thread_id": "T"}}),
    );
    h.post(
        "/v1/locks",
        json!({"agent_id": "b", "file_path": "z.rs", "metadata": {"thread_id": 5}}),
    );

    let list = h.get("/v1/threads").result().clone();
    let order: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["thread_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["W", "T", "C"],
        "by latest message desc, then thread id desc; lock-only threads not listed"
    );
    let t = list[1].clone();
    assert_eq!(
        t,
        json!({"thread_id": "T", "channel": "dev", "root_task_id": root, "latest_message_id": art, "latest_message_ts": t["latest_message_ts"],
               "latest_artifact_id": art, "message_count": 2, "total_task_count": 1, "open_task_count": 1,
               "active_claim_count": 1, "active_lock_count": 1, "status": "open"})
    );
    assert_eq!(list[0]["status"], "waiting");
    assert_eq!(list[2]["channel"], Value::Null);

    let d = h.get("/v1/threads/T").result().clone();
    assert_eq!(d["thread"], t);
    assert_eq!(ids(&d["messages"]), [root, art]);
    assert_eq!(d["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(d["claims"][0]["claim_key"], "k");
    assert_eq!(
        d["locks"].as_array().unwrap().len(),
        1,
        "JSON equality: 5 != \"5\""
    );
    let lock_only = h.get("/v1/threads/L");
    assert_eq!(lock_only.status, 200, "{lock_only}");
    assert_eq!(lock_only.result()["thread"]["active_lock_count"], 1);
    h.get("/v1/threads/none")
        .expect_err(404, "thread not found");
    assert_eq!(
        ids(&h.get("/v1/threads/T?limit=1&tail=1").result()["messages"]),
        [art]
    );

    h.post(&format!("/v1/tasks/{root}/complete"), json!({}));
    assert_eq!(
        h.get("/v1/threads/T").result()["thread"]["status"],
        "completed"
    );
}

#[test]
fn claims_acquire_deny_refresh_release() {
    let h = TestHub::start();
    let r = h.post("/v1/claims", json!({"owner_agent_id": "a", "claim_key": "k", "thread_id": "t", "task_message_id": 4, "ttl_sec": 60, "metadata": {"m": 1}}));
    assert_eq!(
        (r.status, r.json["acquired"].clone()),
        (201, json!(true)),
        "{r}"
    );
    let first = r.result().clone();
    assert_subset(
        &first,
        &json!({"claim_key": "k", "thread_id": "t", "task_message_id": 4, "owner_agent_id": "a", "released_at": null, "metadata": {"m": 1}}),
    );

    let same = h.post("/v1/claims", json!({"owner_agent_id": "a", "claim_key": "k", "thread_id": "other", "ttl_sec": 600, "metadata": {"m": 2}}));
    assert_eq!(
        (same.status, same.json["acquired"].clone()),
        (201, json!(true))
    );
    assert_subset(
        same.result(),
        &json!({"thread_id": "t", "task_message_id": 4, "metadata": {"m": 1}, "claimed_at": first["claimed_at"]}),
    );
    assert!(same.result()["expires_at"].as_str() > first["expires_at"].as_str());

    let deny = h.post(
        "/v1/claims",
        json!({"owner_agent_id": "b", "claim_key": "k"}),
    );
    assert_eq!(
        (deny.status, deny.json["acquired"].clone()),
        (200, json!(false))
    );
    assert_eq!(deny.result()["owner_agent_id"], "a");

    h.post(
        "/v1/claims/refresh",
        json!({"claim_key": "k", "owner_agent_id": "b"}),
    )
    .expect_err(404, "claim not found or not owned by owner_agent_id");
    let refreshed = h.post(
        "/v1/claims/refresh",
        json!({"claim_key": "k", "owner_agent_id": "a", "ttl_sec": 5}),
    );
    assert_eq!(
        (refreshed.status, refreshed.json["acquired"].clone()),
        (200, json!(true))
    );
    assert!(
        refreshed.result()["expires_at"].as_str() < same.result()["expires_at"].as_str(),
        "refresh can shorten"
    );

    h.post(
        "/v1/claims/release",
        json!({"claim_key": "k", "agent_id": "b"}),
    )
    .expect_err(404, "claim not found or not owned by agent_id");
    let rel = h.post(
        "/v1/claims/release",
        json!({"claim_key": "k", "agent_id": "a"}),
    );
    assert_eq!(rel.status, 200);
    assert!(rel.result()["released_at"].is_string());
    h.post(
        "/v1/claims/release",
        json!({"claim_key": "k", "agent_id": "a"}),
    )
    .expect_err(404, "claim not found or not owned by agent_id");

    let take = h.post(
        "/v1/claims",
        json!({"owner_agent_id": "b", "claim_key": "k"}),
    );
    assert_eq!(take.status, 201);
    assert_subset(
        take.result(),
        &json!({"owner_agent_id": "b", "thread_id": null, "task_message_id": null, "released_at": null, "metadata": {}}),
    );

    let by_task = h.post(
        "/v1/claims",
        json!({"owner_agent_id": "c", "task_message_id": "17", "thread_id": ""}),
    );
    assert_subset(
        by_task.result(),
        &json!({"claim_key": "task-17", "thread_id": null, "task_message_id": 17}),
    );
    h.post("/v1/claims", json!({"owner_agent_id": "c"}))
        .expect_err(400, "claim_key or task_message_id is required");
    h.post("/v1/claims", json!({"claim_key": "z"}))
        .expect_err(400, "owner_agent_id is required");
    h.post(
        "/v1/claims",
        json!({"owner_agent_id": "c", "claim_key": "z", "ttl_sec": 4}),
    )
    .expect_err(400, "ttl_sec must be at least 5");
    h.post(
        "/v1/claims",
        json!({"owner_agent_id": "c", "claim_key": "z", "ttl_sec": 1e300}),
    )
    .expect_err(400, "ttl_sec must be an integer");
    h.post(
        "/v1/claims",
        json!({"owner_agent_id": "c", "claim_key": "z", "ttl_sec": 99_999_999_999_i64}),
    )
    .expect_err(400, "ttl_sec must be at most 315360000");
    h.post(
        "/v1/claims",
        json!({"owner_agent_id": "c", "claim_key": "z", "ttl_sec": "Infinity"}),
    )
    .expect_err(400, "ttl_sec must be an integer");

    let all = h.get("/v1/claims").result().clone();
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(h.get("/v1/claims?thread_id=t").result(), &json!([]));
    h.post(
        "/v1/claims",
        json!({"owner_agent_id": "d", "claim_key": "q", "thread_id": "t"}),
    );
    h.post(
        "/v1/claims/release",
        json!({"claim_key": "q", "agent_id": "d"}),
    );
    assert_eq!(
        h.get("/v1/claims?thread_id=t")
            .result()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        h.get("/v1/claims?thread_id=t&active_only=true").result(),
        &json!([])
    );
}

#[test]
fn expired_leases_can_be_taken_over() {
    let h = TestHub::start();
    h.post(
        "/v1/locks",
        json!({"agent_id": "a", "file_path": "src/lib.rs", "metadata": {"why": "edit"}}),
    );
    h.sql()
        .execute("UPDATE locks SET expires_at = '2000-01-01T00:00:00Z'", [])
        .unwrap();
    h.post(
        "/v1/locks/refresh",
        json!({"agent_id": "a", "file_path": "src/lib.rs"}),
    )
    .expect_err(404, "lock not found or not owned by agent_id");
    h.post(
        "/v1/locks/release",
        json!({"agent_id": "a", "file_path": "src/lib.rs"}),
    )
    .expect_err(404, "lock not found or not owned by agent_id");
    let take = h.post(
        "/v1/locks",
        json!({"agent_id": "b", "file_path": "src/lib.rs"}),
    );
    assert_eq!(
        (take.status, take.json["acquired"].clone()),
        (201, json!(true))
    );
    assert_subset(
        take.result(),
        &json!({"agent_id": "b", "metadata": {}, "released_at": null}),
    );
}

#[test]
fn locks_acquire_deny_refresh_release_and_list() {
    let h = TestHub::start();
    let r = h.post(
        "/v1/locks",
        json!({"agent_id": "a", "file_path": " src/main.rs ", "ttl_sec": 30}),
    );
    assert_eq!((r.status, r.json["acquired"].clone()), (201, json!(true)));
    assert_eq!(r.result()["file_path"], "src/main.rs");
    let deny = h.post(
        "/v1/locks",
        json!({"agent_id": "b", "file_path": "src/main.rs"}),
    );
    assert_eq!(
        (
            deny.status,
            deny.json["acquired"].clone(),
            deny.result()["agent_id"].clone()
        ),
        (200, json!(false), json!("a"))
    );
    assert_eq!(
        h.post(
            "/v1/locks",
            json!({"agent_id": "b", "file_path": "SRC/main.rs"})
        )
        .status,
        201,
        "case-sensitive paths"
    );
    let refresh = h.post(
        "/v1/locks/refresh",
        json!({"agent_id": "a", "file_path": "src/main.rs", "ttl_sec": 100}),
    );
    assert_eq!(
        (refresh.status, refresh.json["acquired"].clone()),
        (200, json!(true))
    );
    h.post("/v1/locks", json!({"agent_id": "a"}))
        .expect_err(400, "file_path is required");
    h.post("/v1/locks", json!({"file_path": "x"}))
        .expect_err(400, "agent_id is required");
    assert_eq!(
        h.get("/v1/locks?agent_id=a")
            .result()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        h.post(
            "/v1/locks/release",
            json!({"agent_id": "a", "file_path": "src/main.rs"})
        )
        .status,
        200
    );
    assert_eq!(
        h.get("/v1/locks?agent_id=a")
            .result()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        h.get("/v1/locks?agent_id=a&active_only=1").result(),
        &json!([])
    );
    assert_eq!(h.get("/v1/locks").result().as_array().unwrap().len(), 2);
}
