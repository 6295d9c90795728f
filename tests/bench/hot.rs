//! The plain request path, on our hub and (when available) the reference:
//! keep-alive reads of a page of history, posts at 4 and 32 connections,
//! `Connection: close` posts, the thread listing over a large database,
//! and one post releasing 200 parked long-polls.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_hub::client::http_request;

use crate::common::*;
use crate::load::{self, Plan, Run};

pub fn run(dir: &Path, sections: &[&str], quick: bool) {
    let secs = Duration::from_secs(if quick { 2 } else { 8 });
    let want = |s: &str| sections.contains(&s);
    let mut hubs = vec![Hub::spawn(&dir.join("hot"), &dir.join("hot.sqlite3"), &[])];
    match Hub::reference(&dir.join("hot-ref"), &dir.join("hot-ref.sqlite3")) {
        Some(r) => hubs.push(r),
        None => println!("(reference not run: set ARC_REFERENCE_PYTHON to compare)"),
    }
    for hub in &hubs {
        seed_page(hub);
    }
    if want("page") {
        for hub in &hubs {
            page(hub, secs, 20, "20 messages, about 4 KB");
            page(hub, secs, 3, "3 messages, about 0.5 KB");
        }
    }
    if want("post") {
        for hub in &hubs {
            for conns in [4, 32] {
                post(hub, secs, conns, false);
            }
        }
    }
    if want("close") {
        for hub in &hubs {
            post(hub, secs, 4, true);
        }
    }
    if want("release") {
        for hub in &hubs {
            // The reference polls its database per waiter; a few rounds
            // say enough about it.
            let rounds = match (hub.name, quick) {
                ("arc-rs", false) => 20,
                _ => 5,
            };
            release(hub, 200, rounds);
        }
    }
    drop(hubs);
    if want("threads") {
        threads(dir, if quick { 20_000 } else { 100_000 }, 1000);
    }
}

fn line(hub: &Hub, label: &str, r: &Run, target: &str) {
    let ms = |p| percentile(&r.latencies, p).as_secs_f64() * 1000.0;
    println!(
        "{label:<44} {:<9} {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {} wrong {} unannounced-close {}  (target {target})",
        hub.name,
        r.rate(),
        ms(0.5),
        ms(0.99),
        r.errors,
        r.wrong,
        r.unannounced_close,
    );
}

/// 100 messages of about 200 bytes in `general`.
fn seed_page(hub: &Hub) {
    let text = "x".repeat(120);
    for i in 0..100 {
        hub.post(&format!(
            r#"{{"from_agent":"seed","channel":"general","body":"page {i} {text}"}}"#
        ));
    }
}

fn page(hub: &Hub, secs: Duration, n: i64, what: &str) {
    let since = hub.max_id() - n;
    let path = format!("/v1/messages?channel=general&since_id={since}");
    let port = hub.port;
    let make: load::MakeRequest =
        Arc::new(move |_, _| load::request("GET", &path, port, None, false));
    let plan = Plan {
        port,
        conns: 4,
        duration: secs,
        expect: 200,
        close_each: false,
    };
    let r = load::run(&plan, make);
    line(
        hub,
        &format!("GET page of {what}, keep-alive, 4 conns"),
        &r,
        "10k req/s, p50 0.5 ms",
    );
}

fn post(hub: &Hub, secs: Duration, conns: usize, close: bool) {
    let port = hub.port;
    let make: load::MakeRequest = Arc::new(move |c, seq| {
        let body =
            format!(r#"{{"from_agent":"w{c}","channel":"general","body":"load {c} {seq}"}}"#);
        load::request("POST", "/v1/messages", port, Some(&body), close)
    });
    let plan = Plan {
        port,
        conns,
        duration: secs,
        expect: 201,
        close_each: close,
    };
    let r = load::run(&plan, make);
    let (label, target) = match close {
        true => (
            format!("POST, Connection: close, {conns} conns"),
            "0 errors",
        ),
        false => (
            format!("POST, keep-alive, {conns} conns"),
            "20k req/s at 32",
        ),
    };
    line(hub, &label, &r, target);
}

/// Parks `waiters` long-polls on one channel, posts once, and records for
/// each the time from sending the post to its answer arriving (within
/// 10 s; the count of those that did not is printed).
fn release(hub: &Hub, waiters: usize, rounds: usize) {
    let channel = r#"{"name":"release","created_by":"bench"}"#;
    let _ = http_request(
        &hub.url,
        "POST",
        "/v1/channels",
        Some(channel.as_bytes()),
        &[],
        Duration::from_secs(10),
    );
    let mut samples = Vec::new();
    let mut unanswered = 0;
    for round in 0..rounds {
        let since = hub.max_id();
        let socks: Vec<_> = (0..waiters)
            .map(|i| {
                hub.park(&format!(
                    "/v1/messages?channel=release&since_id={since}&timeout=30&agent_id=r{i}"
                ))
            })
            .collect();
        wait_parked(hub, waiters);
        let t0 = Instant::now();
        let post = hub.send_post(&format!(
            r#"{{"from_agent":"poster","channel":"release","body":"go {round}"}}"#
        ));
        let got = arrivals(&socks, Duration::from_secs(10));
        unanswered += waiters - got.len();
        samples.extend(got.into_iter().map(|t| t - t0));
        drop(post);
    }
    report(
        &format!(
            "{}: one post releasing {waiters} parked long-polls ({unanswered} not answered in 10 s)",
            hub.name
        ),
        samples,
        "p50 <= 10 ms",
    );
}

/// The thread listing over `messages` messages in `threads` threads. The
/// database is filled through our hub, then each hub opens its own copy.
fn threads(dir: &Path, messages: usize, threads: usize) {
    let seed_db = dir.join("threads.sqlite3");
    {
        let hub = Hub::spawn(&dir.join("threads-seed"), &seed_db, &[]);
        let port = hub.port;
        let per = messages / 16;
        let make: load::MakeRequest = Arc::new(move |c, seq| {
            let n = c as u64 * per as u64 + seq;
            let body = format!(
                r#"{{"from_agent":"w{c}","channel":"general","thread_id":"t{}","body":"m {n}"}}"#,
                n % threads as u64
            );
            load::request("POST", "/v1/messages", port, Some(&body), false)
        });
        // Fill until the count is reached (16 writers, bounded by time).
        let deadline = Instant::now() + Duration::from_secs(600);
        while (hub.max_id() as usize) < messages && Instant::now() < deadline {
            let plan = Plan {
                port,
                conns: 16,
                duration: Duration::from_secs(2),
                expect: 201,
                close_each: false,
            };
            load::run(&plan, make.clone());
        }
    }
    let ours_db = dir.join("threads-ours.sqlite3");
    let ref_db = dir.join("threads-ref.sqlite3");
    std::fs::copy(&seed_db, &ours_db).unwrap();
    std::fs::copy(&seed_db, &ref_db).unwrap();
    let mut hubs = vec![Hub::spawn(&dir.join("threads-ours"), &ours_db, &[])];
    if let Some(r) = Hub::reference(&dir.join("threads-ref"), &ref_db) {
        hubs.push(r);
    }
    for hub in &hubs {
        let mut samples = Vec::new();
        let mut count = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let r = http_request(
                &hub.url,
                "GET",
                "/v1/threads",
                None,
                &[],
                Duration::from_secs(60),
            )
            .unwrap();
            samples.push(t.elapsed());
            count = r.json()["result"].as_array().map_or(0, |a| a.len());
        }
        report(
            &format!(
                "{}: GET /v1/threads, {count} threads over {messages} messages",
                hub.name
            ),
            samples,
            "<= 10 ms",
        );
    }
}
