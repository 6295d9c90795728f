//! Instant long-poll and SSE, presence expiry and recovery, rollup under
//! concurrency, shutdown control and shared-file hubs (docs/PROTOCOL.md, "Long-poll", "Presence, expiry and recovery", "Server-sent events", "Shutdown and network").

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestHub, eventually, ids};

fn spawn_get(url: &str, path: &str) -> std::thread::JoinHandle<(Duration, Value)> {
    let (url, path) = (url.to_string(), path.to_string());
    std::thread::spawn(move || {
        let start = Instant::now();
        let r =
            arc_hub::client::http_request(&url, "GET", &path, None, &[], Duration::from_secs(90))
                .unwrap();
        (start.elapsed(), r.json())
    })
}

#[test]
fn a_waiter_wakes_on_a_matching_post_only() {
    let h = TestHub::start();
    h.post("/v1/channels", json!({"name": "dev"}));
    let waiter = spawn_get(&h.url, "/v1/events?agent_id=bob&channel=dev&timeout=30");
    std::thread::sleep(Duration::from_millis(200));
    h.say("alice", "general", "elsewhere");
    h.post(
        "/v1/messages",
        json!({"from_agent": "alice", "to_agent": "eve", "channel": "dev", "body": "not for bob"}),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !waiter.is_finished(),
        "non-matching posts must not answer the waiter"
    );
    let posted = h.say("alice", "dev", "for you")["id"].as_i64().unwrap();
    let (elapsed, body) = waiter.join().unwrap();
    assert_eq!(ids(&body["result"]), [posted]);
    assert!(
        elapsed < Duration::from_secs(5),
        "woken promptly, not at the deadline: {elapsed:?}"
    );
}

#[test]
fn direct_messages_wake_only_their_recipient() {
    let h = TestHub::start();
    let bob = spawn_get(&h.url, "/v1/inbox/bob?timeout=30");
    let eve = spawn_get(&h.url, "/v1/inbox/eve?timeout=2");
    std::thread::sleep(Duration::from_millis(200));
    let dm = h
        .post(
            "/v1/messages",
            json!({"from_agent": "a", "to_agent": "bob", "body": "hi bob"}),
        )
        .result()["id"]
        .as_i64()
        .unwrap();
    let (elapsed, body) = bob.join().unwrap();
    assert_eq!(ids(&body["result"]), [dm]);
    assert!(elapsed < Duration::from_secs(5));
    let (elapsed, body) = eve.join().unwrap();
    assert_eq!(body["result"], json!([]));
    assert!(
        elapsed >= Duration::from_millis(1900),
        "eve waited for her deadline: {elapsed:?}"
    );
}

#[test]
fn deadlines_are_honoured_and_clamped() {
    let h = TestHub::start_with(|c| c.max_poll_sec = 1.0);
    let start = Instant::now();
    let r = h.get("/v1/messages?channel=general&timeout=1000");
    assert_eq!(r.result(), &json!([]));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // A thread-filtered long-poll wakes on a post into that thread.
    let waiter = spawn_get(&h.url, "/v1/messages?thread_id=T&timeout=1");
    std::thread::sleep(Duration::from_millis(100));
    let m = h
        .post(
            "/v1/messages",
            json!({"from_agent": "a", "body": "x", "thread_id": "T"}),
        )
        .result()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(ids(&waiter.join().unwrap().1["result"]), [m]);
}

#[test]
fn parked_waiters_never_starve_short_requests() {
    let h = TestHub::start_with(|c| c.workers = 2);
    let waiters: Vec<_> = (0..24)
        .map(|i| {
            spawn_get(
                &h.url,
                &format!("/v1/events?agent_id=w{i}&timeout=30&exclude_self=1"),
            )
        })
        .collect();
    eventually(Duration::from_secs(10), "all waiters parked", || {
        (h.hub().state().parked_count() == 24).then_some(())
    });
    let start = Instant::now();
    let posted = h.say("alice", "general", "wake everyone");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "POST completes while 24 waiters park on 2 workers"
    );
    for w in waiters {
        let (_, body) = w.join().unwrap();
        assert_eq!(body["result"][0]["id"], posted["id"]);
    }
}

#[test]
fn waiter_caps_answer_429_per_agent_and_503_in_total() {
    let h = TestHub::start_with(|c| {
        c.max_waiters = 3;
        c.max_waiters_per_agent = 2;
    });
    let a1 = spawn_get(&h.url, "/v1/events?agent_id=a&timeout=3");
    let a2 = spawn_get(&h.url, "/v1/events?agent_id=a&timeout=3");
    eventually(Duration::from_secs(5), "two parked", || {
        (h.hub().state().parked_count() == 2).then_some(())
    });
    let r = h.get("/v1/events?agent_id=a&timeout=3");
    assert_eq!(r.status, 429, "{r}");
    assert!(r.error().contains("agent a"));
    let b = spawn_get(&h.url, "/v1/inbox/b?timeout=3");
    eventually(Duration::from_secs(5), "three parked", || {
        (h.hub().state().parked_count() == 3).then_some(())
    });
    let r = h.get("/v1/messages?channel=general&timeout=3");
    assert_eq!(r.status, 503, "{r}");
    assert_eq!(r.json["ok"], json!(false));
    // Requests that need no wait are never refused.
    assert_eq!(h.get("/v1/messages?channel=general").status, 200);
    for t in [a1, a2, b] {
        t.join().unwrap();
    }
    assert_eq!(h.hub().state().parked_count(), 0);
}

#[test]
fn long_polls_refresh_presence_while_waiting() {
    let h = TestHub::start_with(|c| c.presence_ttl_sec = 6);
    h.register("bob");
    // TTL 6 s: a 2 s touch interval keeps bob alive through an 8 s wait.
    let w = spawn_get(&h.url, "/v1/events?agent_id=bob&timeout=8");
    let (elapsed, _) = w.join().unwrap();
    assert!(elapsed >= Duration::from_secs(7));
    let agents = h.get("/v1/agents").result().clone();
    assert_eq!(
        agents.as_array().unwrap().len(),
        1,
        "bob is still live: {agents}"
    );
}

#[test]
fn expiry_recovers_claims_and_locks_exactly_once_despite_agent_listing() {
    let h = TestHub::start_with(|c| c.presence_ttl_sec = 5);
    h.post("/v1/channels", json!({"name": "work"}));
    h.register("worker");
    let task = h.post("/v1/messages", json!({"from_agent": "lead", "channel": "work", "kind": "task", "body": "t", "thread_id": "T"})).result()["id"].as_i64().unwrap();
    h.post("/v1/claims", json!({"owner_agent_id": "worker", "claim_key": "job", "thread_id": "T", "task_message_id": task}));
    h.post("/v1/locks", json!({"agent_id": "worker", "file_path": "a.rs", "metadata": {"channel": "gone", "thread_id": "T"}}));
    h.post("/v1/locks", json!({"agent_id": "worker", "file_path": "b.rs", "metadata": {"channel": "missing-channel"}}));
    h.register("watcher");
    // Poll /v1/agents every second (as the dashboard does), keeping the
    // watcher alive, until the worker has been recovered.
    let notices = eventually(Duration::from_secs(20), "recovery notices", || {
        h.get("/v1/agents?as=watcher");
        let msgs = h.get("/v1/events?agent_id=watcher").result().clone();
        let recov: Vec<Value> = msgs
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["metadata"]["recovery"] == json!(true))
            .cloned()
            .collect();
        if recov.len() < 3 {
            std::thread::sleep(Duration::from_millis(1000));
            return None;
        }
        Some(recov)
    });
    std::thread::sleep(Duration::from_millis(1500));
    let all = h.get("/v1/events?agent_id=watcher").result().clone();
    let count = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["metadata"]["recovery"] == json!(true))
        .count();
    assert_eq!(count, 3, "each recovery announced once");
    let claim = notices
        .iter()
        .find(|m| m["metadata"]["claim_key"] == "job")
        .unwrap();
    assert_eq!(
        claim["body"],
        "Recovered stale claim job from worker. Work is available for pickup."
    );
    assert_eq!(claim["channel"], "work", "the thread's channel");
    assert_eq!(claim["reply_to"], task);
    assert_eq!(claim["thread_id"], "T");
    assert_eq!(
        claim["metadata"],
        json!({"recovery": true, "stale_agent_id": "worker", "claim_key": "job", "task_message_id": task})
    );
    let lock_a = notices
        .iter()
        .find(|m| m["metadata"]["file_path"] == "a.rs")
        .unwrap();
    assert_eq!(
        lock_a["body"],
        "Recovered stale lock on a.rs from worker. The file is available for pickup."
    );
    assert_eq!(
        (lock_a["channel"].clone(), lock_a["thread_id"].clone()),
        (json!("work"), json!("T")),
        "thread channel wins"
    );
    let lock_b = notices
        .iter()
        .find(|m| m["metadata"]["file_path"] == "b.rs")
        .unwrap();
    assert_eq!(
        lock_b["channel"], "general",
        "a missing channel falls back to general"
    );
    assert_eq!(h.get("/v1/claims?active_only=1").result(), &json!([]));
    assert_eq!(h.get("/v1/locks?active_only=1").result(), &json!([]));
    let agents = h.get("/v1/agents").result().clone();
    assert!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["agent_id"] != "worker")
    );
}

#[test]
fn a_stale_session_is_expired_before_a_touch_can_revive_it() {
    let h = TestHub::start_with(|c| c.presence_ttl_sec = 60);
    h.register("w");
    h.post(
        "/v1/claims",
        json!({"owner_agent_id": "w", "claim_key": "k"}),
    );
    h.sql()
        .execute(
            "UPDATE sessions SET last_seen = '2001-01-01T00:00:00Z' WHERE agent_id = 'w'",
            [],
        )
        .unwrap();
    // The agent comes back and posts first: its session is already past the
    // TTL, so it is expired and its claim recovered, not silently revived.
    h.say("w", "general", "I'm back");
    let active: i64 = h
        .sql()
        .query_row(
            "SELECT COUNT(*) FROM sessions WHERE agent_id = 'w' AND active = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(active, 0);
    let claims = h.get("/v1/claims?active_only=1").result().clone();
    assert_eq!(claims, json!([]));
    let msgs = h.get("/v1/messages?channel=general").result().clone();
    assert_eq!(
        msgs[0]["metadata"]["claim_key"], "k",
        "recovery posted before the agent's message"
    );
    assert_eq!(msgs[1]["body"], "I'm back");
}

#[test]
fn concurrent_last_child_completions_roll_up_exactly_once() {
    let h = TestHub::start();
    for _round in 0..5 {
        let parent = h
            .post(
                "/v1/messages",
                json!({"from_agent": "a", "kind": "task", "body": "p"}),
            )
            .result()["id"]
            .as_i64()
            .unwrap();
        let kids: Vec<i64> = (0..6)
            .map(|i| h.post("/v1/messages", json!({"from_agent": "a", "kind": "task", "body": format!("c{i}"), "parent_task_id": parent})).result()["id"].as_i64().unwrap())
            .collect();
        let barrier = Arc::new(Barrier::new(kids.len()));
        let handles: Vec<_> = kids
            .iter()
            .map(|k| {
                let (url, b, k) = (h.url.clone(), barrier.clone(), *k);
                std::thread::spawn(move || {
                    b.wait();
                    arc_hub::client::http_request(
                        &url,
                        "POST",
                        &format!("/v1/tasks/{k}/complete"),
                        Some(b"{}"),
                        &[],
                        Duration::from_secs(30),
                    )
                    .unwrap()
                    .json()
                })
            })
            .collect();
        let flags: usize = handles
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|r| r["parent_completed"] == json!(true))
            .count();
        assert_eq!(flags, 1, "exactly one call completed the parent");
        let rollups: i64 = h
            .sql()
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE reply_to = ?1 AND from_agent = 'system'",
                [parent],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rollups, 1);
    }
}

#[test]
fn task_results_and_deep_trees_roll_up() {
    let h = TestHub::start();
    let root = h
        .post(
            "/v1/messages",
            json!({"from_agent": "a", "kind": "task", "body": "root", "thread_id": "R"}),
        )
        .result()["id"]
        .as_i64()
        .unwrap();
    let mid = h
        .post(
            "/v1/messages",
            json!({"from_agent": "a", "kind": "task", "body": "mid", "parent_task_id": root}),
        )
        .result()["id"]
        .as_i64()
        .unwrap();
    let rpc = h.post("/v1/messages", json!({"from_agent": "a", "to_agent": "svc", "kind": "task_request", "body": "do", "parent_task_id": mid})).result()["id"].as_i64().unwrap();
    h.post("/v1/messages", json!({"from_agent": "svc", "to_agent": "a", "kind": "task_result", "body": "done", "reply_to": rpc}));
    let tasks = h.get("/v1/tasks").result().clone();
    assert!(
        tasks
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "done"),
        "{tasks}"
    );
    let notices: Vec<String> = h
        .get("/v1/messages?channel=general")
        .result()
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["from_agent"] == "system")
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        notices,
        [
            format!("All 1 subtasks of task {mid} are complete."),
            format!("All 1 subtasks of task {root} are complete.")
        ]
    );
    let features = h.get("/v1/hub-info").result()["features"].clone();
    assert!(
        features
            .as_array()
            .unwrap()
            .contains(&json!("arc-rs:deep_rollup"))
    );
}

/// Reads SSE lines from a raw connection until `done` says stop.
fn sse_lines(
    h: &TestHub,
    path: &str,
    headers: &str,
    limit: Duration,
    mut done: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let mut s = TcpStream::connect(h.hub().addr()).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let port = h.hub().addr().port();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut lines = Vec::new();
    let start = Instant::now();
    let mut line = String::new();
    while start.elapsed() < limit {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => lines.push(line.trim_end().to_string()),
        }
        if done(&lines) {
            break;
        }
    }
    lines
}

fn data_ids(lines: &[String]) -> Vec<i64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

#[test]
fn sse_streams_with_ids_and_resumes_from_last_event_id() {
    let h = TestHub::start();
    let m1 = h.say("a", "general", "one")["id"].as_i64().unwrap();
    let m2 = h.say("a", "general", "two")["id"].as_i64().unwrap();
    let lines = sse_lines(
        &h,
        "/v1/stream?agent_id=viewer",
        "",
        Duration::from_secs(10),
        |l| data_ids(l).len() == 2,
    );
    assert!(lines[0].starts_with("HTTP/1.1 200"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.eq_ignore_ascii_case("content-type: text/event-stream")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.to_ascii_lowercase().starts_with("x-arc-instance: mh1-"))
    );
    assert!(
        lines.contains(&format!("id: {m1}")) && lines.contains(&format!("id: {m2}")),
        "{lines:?}"
    );
    // Resume after m1 with Last-Event-ID (EventSource reconnect).
    let resumed = sse_lines(
        &h,
        "/v1/stream?agent_id=viewer",
        &format!("Last-Event-ID: {m1}\r\n"),
        Duration::from_secs(10),
        |l| !data_ids(l).is_empty(),
    );
    assert_eq!(data_ids(&resumed), [m2]);
    // Live: a post arrives on an open stream.
    let url = h.url.clone();
    let poster = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let body = br#"{"from_agent":"a","body":"live"}"#;
        arc_hub::client::http_request(
            &url,
            "POST",
            "/v1/messages",
            Some(body),
            &[],
            Duration::from_secs(10),
        )
        .unwrap()
        .json()["result"]["id"]
            .as_i64()
            .unwrap()
    });
    let live = sse_lines(
        &h,
        &format!("/v1/stream?agent_id=viewer&since_id={m2}"),
        "",
        Duration::from_secs(10),
        |l| !data_ids(l).is_empty(),
    );
    assert_eq!(data_ids(&live), [poster.join().unwrap()]);
    // Errors are plain JSON answers before any stream header.
    h.get("/v1/stream")
        .expect_err(400, "agent_id query parameter is required");
    h.get("/v1/stream?agent_id=x&since_id=-2")
        .expect_err(400, "since_id must be >= 0");
}

#[test]
fn sse_multi_channel_filters_never_stall() {
    let h = TestHub::start();
    for name in ["a", "b", "noise"] {
        h.post("/v1/channels", json!({"name": name}));
    }
    let first = h.say("x", "a", "in a")["id"].as_i64().unwrap();
    for i in 0..120 {
        h.say("x", "noise", &format!("noise {i}"));
    }
    let last = h.say("x", "b", "in b")["id"].as_i64().unwrap();
    let lines = sse_lines(
        &h,
        "/v1/stream?agent_id=v&channels=a,b",
        "",
        Duration::from_secs(10),
        |l| data_ids(l).len() == 2,
    );
    assert_eq!(data_ids(&lines), [first, last]);
}

#[test]
fn sse_sends_keepalive_comments() {
    let h = TestHub::start_with(|c| c.sse_keepalive = Duration::from_millis(200));
    let lines = sse_lines(
        &h,
        "/v1/stream?agent_id=v",
        "",
        Duration::from_secs(10),
        |l| l.iter().filter(|x| *x == ": keepalive").count() >= 2,
    );
    assert!(
        lines.iter().filter(|x| *x == ": keepalive").count() >= 2,
        "{lines:?}"
    );
}

#[test]
fn two_hubs_on_one_file_see_and_wake_each_other() {
    let a = TestHub::start();
    let b = a.sibling(|_| {});
    let b_url = b.url();
    let waiter = spawn_get(&b_url, "/v1/events?agent_id=bob&timeout=30");
    std::thread::sleep(Duration::from_millis(200));
    let posted = a.say("alice", "general", "across hubs")["id"]
        .as_i64()
        .unwrap();
    let (elapsed, body) = waiter.join().unwrap();
    assert_eq!(ids(&body["result"]), [posted]);
    assert!(
        elapsed < Duration::from_secs(3),
        "woken by the foreign-commit watcher: {elapsed:?}"
    );
    // Without any waiter on B, an immediate read on B still sees A's posts
    // (B's in-memory tail must never hide a foreign commit).
    for i in 0..20 {
        let id = a.say("alice", "general", &format!("burst {i}"))["id"]
            .as_i64()
            .unwrap();
        let r = arc_hub::client::http_request(
            &b_url,
            "GET",
            &format!("/v1/messages?channel=general&since_id={}", id - 1),
            None,
            &[],
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(
            ids(&r.json()["result"]),
            [id],
            "read on B right after a post on A"
        );
        let own = arc_hub::client::http_request(
            &b_url,
            "POST",
            "/v1/messages",
            Some(br#"{"from_agent":"bob","body":"from b"}"#),
            &[],
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(own.status, 201);
    }
    // A claim held through one hub is denied through the other.
    a.post(
        "/v1/claims",
        json!({"owner_agent_id": "alice", "claim_key": "shared"}),
    );
    let r = arc_hub::client::http_request(
        &b_url,
        "POST",
        "/v1/claims",
        Some(br#"{"owner_agent_id":"bob","claim_key":"shared"}"#),
        &[],
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(
        (r.status, r.json()["acquired"].clone()),
        (200, json!(false))
    );
    b.shutdown();
}

#[test]
fn shutdown_arm_cancel_and_status() {
    let h = TestHub::start();
    assert_eq!(h.get("/v1/shutdown").result(), &Value::Null);
    h.post("/v1/shutdown", json!({"delay_sec": -1}))
        .expect_err(400, "delay_sec must be >= 0");
    h.post("/v1/shutdown", json!({"delay_sec": 3601}))
        .expect_err(400, "delay_sec must be <= 3600");
    h.post("/v1/shutdown/cancel", json!({}))
        .expect_err(400, "no shutdown pending");
    let armed = h.post("/v1/shutdown", json!({"delay_sec": 120}));
    assert_eq!(armed.result()["status"], "shutdown_initiated");
    assert_eq!(armed.result()["delay_sec"], 120);
    assert!((118..=120).contains(&armed.result()["remaining_sec"].as_i64().unwrap()));
    h.post("/v1/shutdown", json!({"delay_sec": 5}))
        .expect_err(400, "shutdown already pending");
    let status = h.get("/v1/shutdown").result().clone();
    assert_eq!(status["delay_sec"], 120);
    assert_eq!(
        h.post("/v1/shutdown/cancel", json!({})).result(),
        &json!({"status": "shutdown_cancelled"})
    );
    assert_eq!(h.get("/v1/shutdown").result(), &Value::Null);
    let notices: Vec<Value> = h
        .get("/v1/messages?channel=general")
        .result()
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        notices[0]["body"],
        "Hub shutdown initiated. Shutting down in 120 seconds."
    );
    assert_eq!(
        notices[0]["metadata"],
        json!({"shutdown": true, "delay_sec": 120})
    );
    assert_eq!(notices[1]["body"], "Hub shutdown cancelled.");
    assert_eq!(notices[1]["metadata"], json!({"shutdown_cancelled": true}));
    assert_eq!(notices[1]["from_agent"], "system");
}

#[test]
fn an_armed_shutdown_fires_and_answers_parked_waiters() {
    let mut h = TestHub::start();
    let waiter = spawn_get(&h.url, "/v1/events?agent_id=bob&timeout=60&exclude_self=1");
    eventually(Duration::from_secs(5), "parked", || {
        (h.hub().state().parked_count() == 1).then_some(())
    });
    h.post("/v1/shutdown", json!({"delay_sec": 1}));
    let (elapsed, body) = waiter.join().unwrap();
    assert!(elapsed < Duration::from_secs(10));
    assert_eq!(body["ok"], json!(true), "{body}");
    let hub = h.hub.take().unwrap();
    let start = Instant::now();
    hub.wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    let last: String = h
        .sql()
        .query_row(
            "SELECT metadata_json FROM messages ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&last).unwrap(),
        json!({"shutdown": true, "final": true})
    );
}

#[test]
fn immediate_shutdown_counts_as_pending() {
    let mut h = TestHub::start();
    let r = h.post("/v1/shutdown", json!({"delay_sec": 0}));
    assert_eq!(r.result(), &json!({"status": "shutdown_initiated"}));
    let again = arc_hub::client::http_request(
        &h.url,
        "POST",
        "/v1/shutdown",
        Some(br#"{"delay_sec":0}"#),
        &[],
        Duration::from_secs(5),
    );
    if let Ok(again) = again {
        assert_eq!(again.status, 400, "a second immediate shutdown is refused");
    }
    h.hub.take().unwrap().wait().unwrap();
    let count: i64 = h
        .sql()
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE from_agent = 'system'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count, 1, "one notice, not two");
}

#[test]
fn network_toggle_rules() {
    let h = TestHub::start();
    let r = h.post("/v1/network", json!({"allow_remote": true}));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error(),
        "cannot enable remote access at runtime: hub is bound to 127.0.0.1 and the listening socket cannot be rebound. Restart the hub with `--host 0.0.0.0 --allow-remote` to expose it on the LAN."
    );
    h.post("/v1/network", json!({"allow_remote": "perhaps"}))
        .expect_err(400, "allow_remote must be a boolean");
    assert_eq!(
        h.post("/v1/network", json!({"allow_remote": "false"}))
            .result(),
        &json!({"allow_remote": false, "listen_host": "127.0.0.1"})
    );
    assert_eq!(
        h.post("/v1/network", json!({})).result(),
        &json!({"allow_remote": false, "listen_host": "127.0.0.1"})
    );
}

#[test]
fn remote_access_toggle_is_enforced_per_request() {
    // Bound to 0.0.0.0 with --allow-remote: LAN hosts and origins are fine.
    let h = TestHub::start_with(|c| {
        c.host = "0.0.0.0".into();
        c.allow_remote = true;
    });
    let port = h.hub().addr().port();
    let lan = format!("192.168.1.20:{port}");
    let r = h.raw("GET", "/v1/channels", None, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        h.post("/v1/network", json!({"allow_remote": false}))
            .result()["allow_remote"],
        false
    );
    // Loopback peers still work; the Host check is strict again.
    assert_eq!(h.get("/v1/channels").status, 200);
    let req = format!("GET /v1/channels HTTP/1.1\r\nHost: {lan}\r\nConnection: close\r\n\r\n");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let resp = arc_hub::client::read_response(&mut s, false).unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(
        h.post("/v1/network", json!({"allow_remote": true}))
            .result()["allow_remote"],
        true
    );
}
