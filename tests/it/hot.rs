//! The plain request path under concurrency: large answers on kept-alive
//! connections, many writers sharing one commit (a failing one fails
//! alone), and acknowledged writes surviving `kill -9`. Correctness only:
//! speed is measured by `cargo bench --bench bench`, never asserted.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_hub::client::{http_request, read_response};
use serde_json::{Value, json};

use crate::lifecycle::{Foreground, Site};
use crate::support::TestHub;

#[test]
fn a_64_kb_answer_arrives_whole_and_the_connection_stays_usable() {
    let h = TestHub::start();
    h.register("big");
    let text = "x".repeat(2000);
    for i in 0..40 {
        h.say("big", "general", &format!("{i} {text}"));
    }
    let mut s = TcpStream::connect(h.hub().addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let host = format!("127.0.0.1:{}", h.hub().addr().port());
    write!(
        s,
        "GET /v1/messages?channel=general HTTP/1.1\r\nHost: {host}\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.len() > 64 * 1024, "{} bytes", r.body.len());
    let page: Value = r.json();
    assert_eq!(page["result"].as_array().unwrap().len(), 40);
    write!(s, "GET /v1/hub-info HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.status, 200, "the same connection serves a second request");
    assert_eq!(r.header("Connection"), None);
}

/// Long-polls `general` from the start until `want` ids by writers were
/// seen or `limit` passes; returns every id in the order received.
fn poll_all(url: String, want: usize, limit: Duration) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut writers = 0;
    let mut since = 0;
    let deadline = Instant::now() + limit;
    while writers < want && Instant::now() < deadline {
        let path = format!("/v1/messages?channel=general&since_id={since}&timeout=5&limit=500");
        let r = http_request(&url, "GET", &path, None, &[], Duration::from_secs(20)).unwrap();
        for m in r.json()["result"].as_array().unwrap() {
            let id = m["id"].as_i64().unwrap();
            seen.push(id);
            since = since.max(id);
            if m["from_agent"].as_str().unwrap().starts_with('w') {
                writers += 1;
            }
        }
    }
    seen
}

#[test]
fn concurrent_writers_commit_together_and_a_failing_one_fails_alone() {
    // 32 writers share commits. One of them, in the middle of the burst,
    // sends a write that fails in SQL (a second active session): only it
    // fails; every acknowledged id is stored; every poller sees every
    // message once, in id order.
    let h = TestHub::start();
    h.register("taken");
    let (writers, per) = (32, 40);
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let pollers: Vec<_> = (0..4)
        .map(|_| {
            let url = h.url.clone();
            std::thread::spawn(move || poll_all(url, writers * per, Duration::from_secs(120)))
        })
        .collect();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (url, acked) = (h.url.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for i in 0..per {
                    if w == 7 && i == per / 2 {
                        let body = json!({"agent_id": "taken"}).to_string();
                        let r = http_request(&url, "POST", "/v1/sessions", Some(body.as_bytes()), &[], Duration::from_secs(30)).unwrap();
                        failures.push(r.status);
                    }
                    let body = json!({"from_agent": format!("w{w}"), "channel": "general", "body": format!("{w}/{i}")});
                    let r = http_request(&url, "POST", "/v1/messages", Some(body.to_string().as_bytes()), &[], Duration::from_secs(30)).unwrap();
                    assert_eq!(r.status, 201, "{}", r.text());
                    acked.lock().unwrap().insert(r.json()["result"]["id"].as_i64().unwrap());
                }
                failures
            })
        })
        .collect();
    let failures: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(failures, [409], "only the conflicting write fails");
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), writers * per);
    let stored: BTreeSet<i64> = h
        .sql()
        .prepare("SELECT id FROM messages WHERE from_agent LIKE 'w%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        stored, acked,
        "every acknowledged id is stored, and nothing else"
    );
    for p in pollers {
        let seen = p.join().unwrap();
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "in id order, each once"
        );
        let seen: BTreeSet<i64> = seen.into_iter().collect();
        assert!(
            acked.is_subset(&seen),
            "missed {:?}",
            acked.difference(&seen).count()
        );
    }
}

#[test]
fn acknowledged_posts_survive_kill_9_during_a_burst() {
    let s = Site::new();
    let hub = Foreground::start(s.path(), s.port, "arc.sqlite3", &["--no-relay"]);
    let url = hub.url();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (url, acked, stop) = (url.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0..100_000 {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    let body = json!({"from_agent": format!("w{w}"), "body": format!("{w}/{i}")})
                        .to_string();
                    match http_request(
                        &url,
                        "POST",
                        "/v1/messages",
                        Some(body.as_bytes()),
                        &[],
                        Duration::from_secs(10),
                    ) {
                        Ok(r) if r.status == 201 => acked
                            .lock()
                            .unwrap()
                            .push(r.json()["result"]["id"].as_i64().unwrap()),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    // Kill the hub once a few hundred posts are acknowledged.
    crate::support::eventually(Duration::from_secs(60), "acknowledged posts", || {
        (acked.lock().unwrap().len() >= 300).then_some(())
    });
    let mut hub = hub;
    hub.child.kill().unwrap(); // SIGKILL: no shutdown, no checkpoint
    hub.child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in writers {
        t.join().unwrap();
    }
    let acked: BTreeSet<i64> = acked.lock().unwrap().iter().copied().collect();
    // A new hub on the same file recovers the WAL and serves all of them.
    let hub2 = Foreground::start(s.path(), s.port, "arc.sqlite3", &["--no-relay"]);
    let mut stored = BTreeSet::new();
    let mut since = 0;
    for _ in 0..10_000 {
        let path = format!("/v1/messages?channel=general&since_id={since}&limit=500");
        let r = http_request(
            &hub2.url(),
            "GET",
            &path,
            None,
            &[],
            Duration::from_secs(20),
        )
        .unwrap();
        let page = r.json()["result"].as_array().unwrap().clone();
        let Some(last) = page.last() else { break };
        since = last["id"].as_i64().unwrap();
        stored.extend(page.iter().map(|m| m["id"].as_i64().unwrap()));
    }
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged posts lost: {lost:?}",
        lost.len()
    );
    assert!(acked.len() >= 300);
}

#[test]
fn a_thousand_connections_opened_at_once_are_all_served() {
    // Defect: the listening queue held 128 connections; a thousand agents
    // reconnecting at once overflowed it, and the kernel reset
    // connections their clients already had open (or left them waiting
    // a second for a retransmitted handshake).
    let h = TestHub::start_with(|c| c.max_connections = 4096);
    let addr = h.hub().addr();
    let host = format!("127.0.0.1:{}", addr.port());
    let mut conns = Vec::new();
    for _ in 0..1000 {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        conns.push(s);
    }
    let mut failed = Vec::new();
    for (i, s) in conns.iter_mut().enumerate() {
        let sent = write!(
            s,
            "GET /v1/hub-info HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        );
        match sent
            .map_err(|e| e.to_string())
            .and_then(|()| read_response(&mut *s, false).map_err(|e| e.to_string()))
        {
            Ok(r) if r.status == 200 => {}
            Ok(r) => failed.push((i, format!("status {}", r.status))),
            Err(e) => failed.push((i, e)),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 1000 failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}
