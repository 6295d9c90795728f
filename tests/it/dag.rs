//! The task DAG (docs/PROTOCOL.md, "Task DAG"): DAG metadata checked when
//! a task is posted, readiness, priority and capabilities, the atomic
//! `POST /v1/tasks/next` (racing, parked, reserving paths), handoff, and
//! the CLI's `next` and `handoff`.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use arc_hub::client::http_request;
use serde_json::{Value, json};

use crate::reserve::{arc, granted, list_of, messages_sql, stdout};
use crate::support::{Resp, TestHub};

/// Posts a task to `general` with `metadata`; returns its id.
#[track_caller]
fn task(h: &TestHub, body: &str, metadata: Value) -> i64 {
    let r = h.post(
        "/v1/messages",
        json!({"from_agent": "boss", "kind": "task", "body": body, "metadata": metadata}),
    );
    assert_eq!(r.status, 201, "{r}");
    r.result()["id"].as_i64().unwrap()
}

fn next(h: &TestHub, agent: &str, extra: Value) -> Resp {
    let mut body = json!({"agent_id": agent});
    if let Value::Object(more) = extra {
        body.as_object_mut().unwrap().extend(more);
    }
    h.post("/v1/tasks/next", body)
}

/// The task id `next` hands `agent`, or `None` for `null`.
#[track_caller]
fn next_id(h: &TestHub, agent: &str, extra: Value) -> Option<i64> {
    let r = next(h, agent, extra);
    assert_eq!(r.status, 200, "{r}");
    let res = r.result();
    if res.is_null() {
        return None;
    }
    Some(res["task"]["task_id"].as_i64().unwrap())
}

#[track_caller]
fn complete(h: &TestHub, id: i64) {
    let r = h.post(&format!("/v1/tasks/{id}/complete"), json!({}));
    assert_eq!(r.status, 200, "{r}");
}

fn active_claims(h: &TestHub) -> Vec<Value> {
    let r = h.get("/v1/claims?active_only=1");
    assert_eq!(r.status, 200, "{r}");
    r.result().as_array().unwrap().clone()
}

fn post_raw(url: &str, path: &str, body: &Value) -> (u16, Value) {
    let r = http_request(
        url,
        "POST",
        path,
        Some(body.to_string().as_bytes()),
        &[],
        Duration::from_secs(90),
    )
    .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    (r.status, r.json())
}

#[test]
fn tasks_with_bad_dag_metadata_are_refused_and_not_posted() {
    let h = TestHub::start();
    let ok = task(&h, "a real dependency", json!({}));
    let cases = [
        (
            json!({"depends_on": [987_654]}),
            "metadata.depends_on names an unknown task: 987654".to_string(),
        ),
        (
            json!({"depends_on": [ok, 987_655]}),
            "metadata.depends_on names an unknown task: 987655".into(),
        ),
        (
            json!({"depends_on": ok}),
            "metadata.depends_on must be a list of task ids".into(),
        ),
        (
            json!({"depends_on": ["first"]}),
            "metadata.depends_on must be a list of task ids".into(),
        ),
        (
            json!({"depends_on": [1.5]}),
            "metadata.depends_on must be a list of task ids".into(),
        ),
        (
            json!({"priority": "high"}),
            "metadata.priority must be an integer".into(),
        ),
        (
            json!({"priority": 2.5}),
            "metadata.priority must be an integer".into(),
        ),
        (
            json!({"priority": true}),
            "metadata.priority must be an integer".into(),
        ),
        (
            json!({"capabilities": "rust"}),
            "metadata.capabilities must be a list of strings".into(),
        ),
        (
            json!({"capabilities": ["rust", 3]}),
            "metadata.capabilities must be a list of strings".into(),
        ),
        (
            json!({"paths": "src/**"}),
            "metadata.paths must be a list of strings".into(),
        ),
        (
            json!({"paths": ["src/**", "../x"]}),
            "invalid path pattern \"../x\": `..` climbs out of the project".into(),
        ),
        (
            json!({"paths": ["[a"]}),
            "invalid path pattern \"[a\": unterminated `[` class".into(),
        ),
    ];
    for (metadata, err) in &cases {
        h.post(
            "/v1/messages",
            json!({"from_agent": "boss", "kind": "task", "body": "bad", "metadata": metadata}),
        )
        .expect_err(400, err);
    }
    // Nothing was posted: one task, one message.
    let tasks = h.get("/v1/tasks");
    assert_eq!(tasks.result().as_array().unwrap().len(), 1, "{tasks}");
    let msgs = h.get("/v1/messages?channel=general");
    assert_eq!(msgs.result().as_array().unwrap().len(), 1, "{msgs}");
    // Sound metadata is accepted (a numeric string is an integer, as elsewhere).
    task(
        &h,
        "good",
        json!({"depends_on": [ok], "priority": "3", "capabilities": ["rust"], "paths": ["src/"]}),
    );
    // Only kind `task` carries the DAG: a chat may say anything.
    let r = h.post(
        "/v1/messages",
        json!({"from_agent": "boss", "body": "chat", "metadata": {"depends_on": [987_654]}}),
    );
    assert_eq!(r.status, 201, "{r}");
}

#[test]
fn a_task_is_ready_once_its_dependencies_are_done() {
    let h = TestHub::start();
    let t1 = task(&h, "first", json!({}));
    let t2 = task(&h, "second", json!({"depends_on": [t1]}));
    let t3 = task(&h, "third", json!({"depends_on": [t1, t2], "priority": 10}));
    assert_eq!(next_id(&h, "a", json!({})), Some(t1));
    // T1 is claimed, T2 and T3 wait for dependencies.
    assert_eq!(next_id(&h, "b", json!({})), None);
    complete(&h, t1);
    assert_eq!(
        next_id(&h, "b", json!({})),
        Some(t2),
        "T3 still waits for T2"
    );
    assert_eq!(next_id(&h, "c", json!({})), None);
    complete(&h, t2);
    let r = next(&h, "c", json!({}));
    let a = r.result();
    assert_eq!(a["task"]["task_id"], t3);
    assert_eq!(a["message"]["id"], t3);
    assert_eq!(a["message"]["body"], "third");
    assert_eq!(a["claim"]["claim_key"], format!("task:{t3}"));
    assert_eq!(a["claim"]["task_message_id"], t3);
    assert_eq!(a["claim"]["owner_agent_id"], "c");
    assert_eq!(a["reservations"], json!([]));
    assert_eq!(a["briefing"]["task_id"], t3);
    assert_eq!(a["briefing"]["depends_on"], json!([t1, t2]));
    assert_eq!(a["briefing"]["channel"], "general");
    // The claim is the reference's: listed, refreshable.
    let claims = active_claims(&h);
    assert!(
        claims
            .iter()
            .any(|c| c["claim_key"] == format!("task:{t3}") && c["owner_agent_id"] == "c"),
        "{claims:?}"
    );
    let r = h.post(
        "/v1/claims/refresh",
        json!({"claim_key": format!("task:{t3}"), "owner_agent_id": "c", "ttl_sec": 60}),
    );
    assert_eq!(r.status, 200, "{r}");
    // A completed task is not handed out again; nothing is left.
    complete(&h, t3);
    assert_eq!(next_id(&h, "d", json!({})), None);
}

#[test]
fn a_released_claim_makes_its_task_ready_again() {
    let h = TestHub::start();
    let t = task(&h, "again", json!({}));
    assert_eq!(next_id(&h, "a", json!({})), Some(t));
    assert_eq!(next_id(&h, "b", json!({})), None);
    let r = h.post(
        "/v1/claims/release",
        json!({"agent_id": "a", "claim_key": format!("task:{t}")}),
    );
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(next_id(&h, "b", json!({})), Some(t));
}

#[test]
fn higher_priority_first_then_oldest() {
    let h = TestHub::start();
    let p0 = task(&h, "p0", json!({}));
    let p5 = task(&h, "p5", json!({"priority": 5}));
    let low = task(&h, "low", json!({"priority": -1}));
    let p5b = task(&h, "p5b", json!({"priority": 5}));
    let p0b = task(&h, "p0b", json!({"priority": 0}));
    let p9 = task(&h, "p9", json!({"priority": "9"}));
    let got: Vec<Option<i64>> = (0..7)
        .map(|i| next_id(&h, &format!("w{i}"), json!({})))
        .collect();
    assert_eq!(
        got,
        [
            Some(p9),
            Some(p5),
            Some(p5b),
            Some(p0),
            Some(p0b),
            Some(low),
            None
        ]
    );
}

#[test]
fn capabilities_restrict_who_gets_a_task() {
    let h = TestHub::start();
    let rust = task(&h, "rust", json!({"capabilities": ["rust"]}));
    let both = task(&h, "both", json!({"capabilities": ["rust", "sql"]}));
    let go = task(&h, "go", json!({"capabilities": ["go"]}));
    let plain = task(&h, "plain", json!({}));
    let session = |agent: &str, caps: Value| {
        let r = h.post(
            "/v1/sessions",
            json!({"agent_id": agent, "capabilities": caps, "replace": true}),
        );
        assert_eq!(r.status, 201, "{r}");
    };
    session("none", json!([]));
    session("rusty", json!(["rust"]));
    session("full", json!(["sql", "rust"]));
    // No capabilities: only the plain task, though the others are older.
    assert_eq!(next_id(&h, "none", json!({})), Some(plain));
    assert_eq!(next_id(&h, "none", json!({})), None);
    // The request's list replaces the session's.
    assert_eq!(next_id(&h, "rusty", json!({"capabilities": []})), None);
    assert_eq!(
        next_id(&h, "rusty", json!({"capabilities": ["sql"]})),
        None,
        "sql alone is not enough for either"
    );
    // The session's capabilities: rust only, so not `both`.
    assert_eq!(next_id(&h, "rusty", json!({})), Some(rust));
    assert_eq!(next_id(&h, "full", json!({})), Some(both));
    // No session: only the request's.
    assert_eq!(next_id(&h, "ghost", json!({})), None);
    assert_eq!(
        next_id(&h, "ghost", json!({"capabilities": ["go"]})),
        Some(go)
    );
    // Bad input.
    next(&h, "x", json!({"capabilities": "go"})).expect_err(400, "capabilities must be a list");
    next(&h, "x", json!({"capabilities": [1]}))
        .expect_err(400, "capabilities must be a list of strings");
    h.post("/v1/tasks/next", json!({}))
        .expect_err(400, "agent_id is required");
    next(&h, "x", json!({"channel": "nowhere"})).expect_err(404, "channel not found");
    next(&h, "x", json!({"timeout": -1}))
        .expect_err(400, "timeout must be a non-negative number of seconds");
}

#[test]
fn a_channel_narrows_next() {
    let h = TestHub::start();
    assert!(h.post("/v1/channels", json!({"name": "ops"})).status < 300);
    let general = task(&h, "general task", json!({"priority": 9}));
    let r = h.post(
        "/v1/messages",
        json!({"from_agent": "boss", "channel": "ops", "kind": "task", "body": "ops task"}),
    );
    let ops = r.result()["id"].as_i64().unwrap();
    assert_eq!(next_id(&h, "a", json!({"channel": "ops"})), Some(ops));
    assert_eq!(next_id(&h, "a", json!({"channel": "ops"})), None);
    assert_eq!(next_id(&h, "a", json!({})), Some(general));
}

#[test]
fn racing_agents_each_task_goes_to_exactly_one() {
    let h = TestHub::start();
    const AGENTS: usize = 20;
    const TASKS: usize = 5;
    for round in 0..4 {
        let ids: BTreeSet<i64> = (0..TASKS)
            .map(|i| task(&h, &format!("r{round} t{i}"), json!({})))
            .collect();
        let barrier = Arc::new(Barrier::new(AGENTS));
        let threads: Vec<_> = (0..AGENTS)
            .map(|i| {
                let url = h.url.clone();
                let barrier = barrier.clone();
                let agent = format!("r{round}-a{i}");
                std::thread::spawn(move || {
                    barrier.wait();
                    let (status, env) =
                        post_raw(&url, "/v1/tasks/next", &json!({"agent_id": agent}));
                    assert_eq!(status, 200, "{env}");
                    let res = &env["result"];
                    let won = (!res.is_null()).then(|| {
                        assert_eq!(res["claim"]["owner_agent_id"], json!(agent), "{env}");
                        res["task"]["task_id"].as_i64().unwrap()
                    });
                    (agent, won)
                })
            })
            .collect();
        let results: Vec<(String, Option<i64>)> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<&(String, Option<i64>)> =
            results.iter().filter(|(_, w)| w.is_some()).collect();
        let won: BTreeSet<i64> = winners.iter().filter_map(|(_, w)| *w).collect();
        assert_eq!(winners.len(), TASKS, "round {round}: {results:?}");
        assert_eq!(
            won, ids,
            "round {round}: each task exactly once: {results:?}"
        );
        assert_eq!(
            results.iter().filter(|(_, w)| w.is_none()).count(),
            AGENTS - TASKS,
            "round {round}"
        );
        // The claims agree: one active claim per task, held by its winner.
        let claims = active_claims(&h);
        for (agent, id) in &winners {
            let key = format!("task:{}", id.unwrap());
            let held: Vec<&Value> = claims.iter().filter(|c| c["claim_key"] == key).collect();
            assert_eq!(held.len(), 1, "{key}: {claims:?}");
            assert_eq!(held[0]["owner_agent_id"], json!(agent));
        }
    }
}

/// Starts `POST /v1/tasks/next` with a long `timeout` on `url` in a thread.
fn parked_next(url: &str, agent: &str) -> mpsc::Receiver<(u16, Value)> {
    let (tx, rx) = mpsc::channel();
    let url = url.to_string();
    let body = json!({"agent_id": agent, "timeout": 60});
    std::thread::spawn(move || {
        let _ = tx.send(post_raw(&url, "/v1/tasks/next", &body));
    });
    rx
}

/// The waiter is still parked (no answer in `for_ms`) and no claim was
/// taken on `task`.
#[track_caller]
fn still_parked(h: &TestHub, rx: &mpsc::Receiver<(u16, Value)>, task: i64, for_ms: u64) {
    match rx.recv_timeout(Duration::from_millis(for_ms)) {
        Err(mpsc::RecvTimeoutError::Timeout) => {}
        other => panic!("tasks/next answered before anything was ready: {other:?}"),
    }
    let key = format!("task:{task}");
    assert!(
        active_claims(h).iter().all(|c| c["claim_key"] != key),
        "{key} was handed out while its dependency was open"
    );
}

#[test]
fn a_parked_next_is_woken_by_a_dependency_completing() {
    let h = TestHub::start();
    let t1 = task(&h, "dep", json!({}));
    let t2 = task(&h, "dependent", json!({"depends_on": [t1]}));
    assert_eq!(next_id(&h, "a", json!({})), Some(t1));
    let rx = parked_next(&h.url, "waiter");
    still_parked(&h, &rx, t2, 500);
    complete(&h, t1);
    // The wait's deadline is 60 s away: an answer well inside it was a wake.
    let (status, env) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the parked tasks/next was not woken by the completion");
    assert_eq!(status, 200, "{env}");
    assert_eq!(env["result"]["task"]["task_id"], t2, "{env}");
    assert_eq!(env["result"]["claim"]["owner_agent_id"], "waiter");
}

#[test]
fn a_parked_next_is_woken_by_a_new_task_and_times_out_with_null() {
    let h = TestHub::start();
    let r = next(&h, "w", json!({"timeout": 1}));
    assert_eq!((r.status, r.result()), (200, &Value::Null), "{r}");
    let rx = parked_next(&h.url, "w");
    match rx.recv_timeout(Duration::from_millis(500)) {
        Err(mpsc::RecvTimeoutError::Timeout) => {}
        other => panic!("answered with nothing posted: {other:?}"),
    }
    let t = task(&h, "fresh", json!({}));
    let (_, env) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a posted task did not wake the parked tasks/next");
    assert_eq!(env["result"]["task"]["task_id"], t, "{env}");
}

#[test]
fn a_parked_next_is_woken_by_a_claim_released_or_recovered() {
    let h = TestHub::start_with(|cfg| cfg.presence_ttl_sec = 5);
    // Released by its holder.
    let t1 = task(&h, "one", json!({}));
    assert_eq!(next_id(&h, "a", json!({})), Some(t1));
    let rx = parked_next(&h.url, "w1");
    match rx.recv_timeout(Duration::from_millis(500)) {
        Err(mpsc::RecvTimeoutError::Timeout) => {}
        other => panic!("answered while the only task was claimed: {other:?}"),
    }
    let r = h.post(
        "/v1/claims/release",
        json!({"agent_id": "a", "claim_key": format!("task:{t1}")}),
    );
    assert_eq!(r.status, 200, "{r}");
    let (_, env) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a released claim did not wake the parked tasks/next");
    assert_eq!(env["result"]["task"]["task_id"], t1, "{env}");
    // Recovered from an agent whose session expired.
    let t2 = task(&h, "two", json!({}));
    h.register("mortal");
    assert_eq!(next_id(&h, "mortal", json!({})), Some(t2));
    let rx = parked_next(&h.url, "w2");
    let (_, env) = rx
        .recv_timeout(Duration::from_secs(40))
        .expect("a recovered claim did not wake the parked tasks/next");
    assert_eq!(env["result"]["task"]["task_id"], t2, "{env}");
    assert_eq!(env["result"]["claim"]["owner_agent_id"], "w2");
}

#[test]
fn a_parked_next_on_another_hub_is_woken_by_a_completion() {
    let h = TestHub::start();
    let sib = h.sibling(|_| {});
    let t1 = task(&h, "dep", json!({}));
    let t2 = task(&h, "dependent", json!({"depends_on": [t1]}));
    assert_eq!(next_id(&h, "a", json!({})), Some(t1));
    let rx = parked_next(&sib.url(), "far");
    still_parked(&h, &rx, t2, 500);
    complete(&h, t1);
    let got = rx.recv_timeout(Duration::from_secs(20));
    sib.shutdown();
    let (status, env) = got.expect(
        "BUG (src/store/messages.rs Store::sync_foreign): a tasks/next parked on one hub is not \
         woken when another hub on the same file completes a dependency through \
         POST /v1/tasks/{id}/complete; the foreign-commit watcher only signals work for new \
         task/task_request/task_result message rows, and a completion (or a claim release) \
         writes none, so the waiter sleeps until its deadline (docs/PROTOCOL.md, Task DAG: \
         'here or in another hub on the file')",
    );
    assert_eq!(status, 200, "{env}");
    assert_eq!(env["result"]["task"]["task_id"], t2, "{env}");
}

#[test]
fn a_task_whose_paths_conflict_is_skipped_and_the_winner_holds_them() {
    let h = TestHub::start();
    let blocked = task(&h, "blocked", json!({"paths": ["src/**"], "priority": 1}));
    let free = task(&h, "free", json!({"paths": ["docs/guide/", "README.md"]}));
    let other = granted(&h, "x", &["src/lib.rs"], json!({"reason": "mine"}));
    let near = granted(&h, "y", &["docs/old.md"], json!({"mode": "shared"}));
    let r = next(&h, "a", json!({}));
    let a = r.result();
    assert_eq!(
        a["task"]["task_id"], free,
        "the conflicting task must be skipped: {r}"
    );
    let res = a["reservations"].as_array().unwrap();
    assert_eq!(res.len(), 1, "{r}");
    let key = format!("task:{free}");
    assert_eq!(
        (
            &res[0]["agent_id"],
            &res[0]["paths"],
            &res[0]["mode"],
            &res[0]["claim_key"],
            &res[0]["task_id"],
            &res[0]["active"]
        ),
        (
            &json!("a"),
            &json!(["docs/guide/**", "README.md"]),
            &json!("exclusive"),
            &json!(key),
            &json!(free),
            &json!(true)
        ),
        "{r}"
    );
    // The briefing names the other agent's reservation in `docs`.
    let nearby = a["briefing"]["nearby"].as_array().unwrap();
    assert!(
        nearby
            .iter()
            .any(|n| n["reservation_id"] == near["reservation_id"] && n["agent_id"] == "y"),
        "{r}"
    );
    assert_eq!(a["briefing"]["paths"], json!(["docs/guide/", "README.md"]));
    // The skipped task took nothing: no claim, no reservation.
    assert!(
        active_claims(&h)
            .iter()
            .all(|c| c["claim_key"] != format!("task:{blocked}"))
    );
    assert_eq!(list_of(&h, "a", true).len(), 1);
    // The winner's reservation is real: others are refused.
    let r = h.post(
        "/v1/reservations",
        json!({"agent_id": "z", "paths": ["docs/guide/new.md"]}),
    );
    assert_eq!(r.status, 409, "{r}");
    // Completing the task releases it.
    complete(&h, free);
    let rows = list_of(&h, "a", false);
    assert_eq!(rows[0]["active"], false);
    assert_eq!(rows[0]["release_reason"], "its task completed");
    // Once x lets go, the blocked task can be taken.
    assert_eq!(next_id(&h, "b", json!({})), None, "still blocked by x");
    let r = h.post(
        &format!(
            "/v1/reservations/{}/release",
            other["reservation_id"].as_str().unwrap()
        ),
        json!({"agent_id": "x"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(next_id(&h, "b", json!({})), Some(blocked));
    assert_eq!(list_of(&h, "b", true)[0]["paths"], json!(["src/**"]));
    // Releasing the claim releases the reservation tied to it.
    let r = h.post(
        "/v1/claims/release",
        json!({"agent_id": "b", "claim_key": format!("task:{blocked}")}),
    );
    assert_eq!(r.status, 200, "{r}");
    assert!(list_of(&h, "b", true).is_empty());
}

#[test]
fn handoff_moves_the_claim_and_reservations_at_once() {
    let h = TestHub::start();
    assert!(h.post("/v1/channels", json!({"name": "build"})).status < 300);
    let r = h.post(
        "/v1/messages",
        json!({"from_agent": "boss", "channel": "build", "kind": "task", "body": "port it",
               "thread_id": "th-port", "metadata": {"paths": ["app/**"]}}),
    );
    let t = r.result()["id"].as_i64().unwrap();
    assert_eq!(next_id(&h, "a", json!({})), Some(t));
    let res_id = list_of(&h, "a", true)[0]["reservation_id"].clone();

    // Not the holder: 409; unknown task: 404; to itself: 400.
    let handoff = |id: i64, from: &str, to: &str| {
        h.post(
            &format!("/v1/tasks/{id}/handoff"),
            json!({"from_agent": from, "to_agent": to, "note": "over to you"}),
        )
    };
    handoff(t, "c", "b").expect_err(409, "the task has no active claim held by from_agent");
    handoff(987_654, "a", "b").expect_err(404, "task not found");
    handoff(t, "a", "a").expect_err(400, "to_agent must differ from from_agent");

    let r = handoff(t, "a", "b");
    assert_eq!(r.status, 200, "{r}");
    let out = r.result();
    assert_eq!(out["task_id"], t);
    assert_eq!(out["claim"]["owner_agent_id"], "b");
    assert_eq!(out["claim"]["claim_key"], format!("task:{t}"));
    let moved = out["reservations"].as_array().unwrap();
    assert_eq!(moved.len(), 1, "{r}");
    assert_eq!(
        (&moved[0]["reservation_id"], &moved[0]["agent_id"]),
        (&res_id, &json!("b"))
    );
    // The stored state agrees.
    let claims = active_claims(&h);
    let claim: Vec<&Value> = claims
        .iter()
        .filter(|c| c["claim_key"] == format!("task:{t}"))
        .collect();
    assert_eq!(claim.len(), 1);
    assert_eq!(claim[0]["owner_agent_id"], "b");
    assert!(list_of(&h, "a", true).is_empty(), "a kept a reservation");
    assert_eq!(list_of(&h, "b", true)[0]["reservation_id"], res_id);
    // A notice in the task's channel and thread, and a DM with the note.
    let msgs = messages_sql(&h);
    let notices: Vec<_> = msgs
        .iter()
        .filter(|m| m.kind == "notice" && m.metadata["handoff"] == true && m.to_agent.is_none())
        .collect();
    assert_eq!(notices.len(), 1, "{msgs:?}");
    assert_eq!(notices[0].channel, "build");
    assert_eq!(notices[0].body, format!("a handed task #{t} to b."));
    let thread = h.get("/v1/threads/th-port");
    assert!(
        thread.result()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["metadata"]["handoff"] == true && m["to_agent"].is_null()),
        "the notice is not in the task's thread: {thread}"
    );
    let dms: Vec<_> = msgs
        .iter()
        .filter(|m| m.to_agent.as_deref() == Some("b") && m.metadata["handoff"] == true)
        .collect();
    assert_eq!(dms.len(), 1, "{msgs:?}");
    assert_eq!(dms[0].from_agent, "a");
    assert!(dms[0].body.contains("over to you"), "{:?}", dms[0]);
    // The old holder can no longer hand it on; the new one can complete it.
    handoff(t, "a", "c").expect_err(409, "the task has no active claim held by from_agent");
    complete(&h, t);
    assert!(
        list_of(&h, "b", true).is_empty(),
        "completion releases the moved reservation"
    );
}

// ----- the CLI --------------------------------------------------------

#[test]
fn cli_next_and_handoff() {
    let h = TestHub::start();
    let url = h.url.clone();
    let out = arc(&["next", "--agent", "A", "--base-url", &url]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out).trim(), "null");

    let t = task(&h, "cli task", json!({"paths": ["cli/**"]}));
    let out = arc(&["next", "--agent", "A", "--base-url", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let a: Value = serde_json::from_str(&stdout(&out)).expect("the assignment JSON");
    assert_eq!(a["task"]["task_id"], t);
    assert_eq!(a["claim"]["owner_agent_id"], "A");
    assert_eq!(a["reservations"][0]["paths"], json!(["cli/**"]));

    let id = t.to_string();
    let out = arc(&[
        "handoff",
        &id,
        "--to",
        "B",
        "--note",
        "n",
        "--agent",
        "A",
        "--base-url",
        &url,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let r: Value = serde_json::from_str(&stdout(&out)).expect("the handoff JSON");
    assert_eq!(r["task_id"], t);
    assert_eq!(r["claim"]["owner_agent_id"], "B");
    assert_eq!(r["reservations"][0]["agent_id"], "B");
    let inbox = h.get("/v1/inbox/B");
    assert!(
        inbox
            .result()
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["body"].as_str().unwrap().ends_with(": n")),
        "{inbox}"
    );
    // Again from A: refused, exit 1.
    let out = arc(&[
        "handoff",
        &id,
        "--to",
        "B",
        "--agent",
        "A",
        "--base-url",
        &url,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).trim(),
        "arc error: the task has no active claim held by from_agent"
    );
    // `--wait`: a parked next answers null when nothing comes.
    let out = arc(&["next", "--agent", "C", "--base-url", &url, "--wait", "1"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out).trim(), "null");
}
