//! Reservations at scale: with 1,000 active reservations from 1,000
//! agents, (a) one `POST /v1/reservations` that succeeds (a fresh path)
//! and (b) one `GET /v1/reservations/check` of 3 paths (one held
//! exclusively, one under the shared `**/*.md` holders, one free).
//!
//! The held patterns: 950 agents hold `svc<i>/src/**/*.rs` and
//! `svc<i>/*.toml` exclusively, 50 hold `**/*.md` shared (a shared
//! `**/*.md` and an exclusive `svc<i>/src/**` would overlap, so the
//! exclusive ones stop at `.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use arc_hub::client::http_request;
use serde_json::{Value, json};

use crate::common::*;

const AGENTS: usize = 1000;
const SHARED_EVERY: usize = 20;

fn call(hub: &Hub, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes());
    let r = http_request(
        &hub.url,
        method,
        path,
        bytes.as_deref(),
        &[],
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (r.status, r.json())
}

pub fn run(dir: &Path, quick: bool) {
    let hub = Hub::spawn(
        &dir.join("reserve"),
        &dir.join("reserve.sqlite3"),
        &["--path-case", "sensitive"],
    );
    let rounds = if quick { 300 } else { 2000 };
    // The same two requests with nothing held, for scale.
    measure(&hub, rounds, "0 held", false);
    for i in 0..AGENTS {
        let (paths, mode) = if i % SHARED_EVERY == 0 {
            (json!(["**/*.md"]), "shared")
        } else {
            (
                json!([format!("svc{i}/src/**/*.rs"), format!("svc{i}/*.toml")]),
                "exclusive",
            )
        };
        let body = json!({"agent_id": format!("agent{i}"), "paths": paths, "mode": mode,
                          "reason": format!("work item {i}")});
        let (status, env) = call(&hub, "POST", "/v1/reservations", Some(&body));
        assert_eq!(status, 201, "seeding reservation {i}: {env}");
    }
    let (_, env) = call(&hub, "GET", "/v1/reservations?active_only=1", None);
    let active = env["result"].as_array().map_or(0, Vec::len);
    assert_eq!(active, AGENTS, "the seeded reservations are active");
    println!("reserve: {AGENTS} active reservations from {AGENTS} agents");

    measure(&hub, rounds, "1,000 held", true);
}

/// Times `rounds` fresh reservations (each released, untimed) and
/// `rounds` checks of 3 paths; `seeded` says whether the checked
/// service is held.
fn measure(hub: &Hub, rounds: usize, held: &str, seeded: bool) {
    // Warm up the connection path and the statement caches.
    for k in 0..20 {
        let (_, id) = reserve_fresh(hub, &format!("warm{k}"));
        release(hub, &id);
    }
    let cpu0 = proc_cpu_secs(hub.pid());
    let mut samples = Vec::with_capacity(rounds);
    for k in 0..rounds {
        let (took, id) = reserve_fresh(hub, &format!("f{k}"));
        samples.push(took);
        // Untimed: the held count stays the same.
        release(hub, &id);
    }
    report(
        &format!("POST /v1/reservations (fresh path), {held}"),
        samples,
        "p99 <= 2 ms",
    );
    cpu_line(hub, cpu0, 2 * rounds, "reserve + release");

    let cpu0 = proc_cpu_secs(hub.pid());
    let mut samples = Vec::with_capacity(rounds);
    for k in 0..rounds {
        let svc = 1 + (k * 7919) % (AGENTS - 1);
        let svc = if svc % SHARED_EVERY == 0 {
            svc + 1
        } else {
            svc
        };
        let path = format!(
            "/v1/reservations/check?agent_id=checker&path=svc{svc}%2Fsrc%2Flib.rs&path=svc{svc}%2FREADME.md&path=free%2F{k}.rs"
        );
        let t0 = Instant::now();
        let (status, env) = call(hub, "GET", &path, None);
        samples.push(t0.elapsed());
        assert_eq!(status, 200, "{env}");
        let c = env["result"]["conflicts"].as_array().unwrap();
        assert_eq!(env["result"]["allowed"], json!(!seeded), "{env}");
        assert_eq!(
            c.len(),
            usize::from(seeded),
            "only the exclusive holder counts: {env}"
        );
    }
    report(
        &format!("GET /v1/reservations/check (3 paths), {held}"),
        samples,
        "p99 <= 2 ms",
    );
    cpu_line(hub, cpu0, rounds, "check");
}

/// The hub's own CPU time per request since `cpu0` (less sensitive to a
/// busy machine than the latencies).
fn cpu_line(hub: &Hub, cpu0: Option<f64>, requests: usize, what: &str) {
    if let (Some(a), Some(b)) = (cpu0, proc_cpu_secs(hub.pid())) {
        println!(
            "  hub CPU per {what} request: {:.3} ms ({requests} requests; /proc ticks are 10 ms)",
            (b - a) * 1000.0 / requests as f64
        );
    }
}

/// Reserves `fresh/<tag>/main.rs` for the bench agent: how long the
/// answer took, and the reservation id.
fn reserve_fresh(hub: &Hub, tag: &str) -> (Duration, String) {
    let body = json!({"agent_id": "bench", "paths": [format!("fresh/{tag}/main.rs")]});
    let t0 = Instant::now();
    let (status, env) = call(hub, "POST", "/v1/reservations", Some(&body));
    let took = t0.elapsed();
    assert_eq!(status, 201, "{env}");
    let id = env["result"]["reservation_id"]
        .as_str()
        .unwrap()
        .to_string();
    (took, id)
}

fn release(hub: &Hub, id: &str) {
    let (status, env) = call(
        hub,
        "POST",
        &format!("/v1/reservations/{id}/release"),
        Some(&json!({"agent_id": "bench"})),
    );
    assert_eq!(status, 200, "{env}");
}
