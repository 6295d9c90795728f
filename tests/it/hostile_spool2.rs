//! A spool writer must not be able to make the relay amplify memory, pass
//! broken answers off as good ones, smuggle raw HTTP onto its connection,
//! use up the hub's waiter slots, make scans cost more per claim the more
//! it queues, read files outside the spool through hard links, or stop
//! the hub. Each test plants what a sandboxed agent could plant and checks
//! the promise docs/SECURITY.md makes ("A spool writer cannot reach
//! outside the spool").

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use arc_hub::relay::{RelayConfig, RelayHandle};
use serde_json::{Value, json};

use crate::relay::{await_response, drop_request, envelope, relay_hub, spool};
use crate::support::{TempDir, TestHub, eventually};

const LIMIT: Duration = Duration::from_secs(30);

/// Long enough for many relay scans; used only to give the relay the
/// chance to do something it must not do.
const SETTLE: Duration = Duration::from_millis(1200);

/// A JSON text holding `n` numbers (`[0,0,...]`).
fn numbers(n: usize) -> String {
    format!("[{}0]", "0,".repeat(n - 1))
}

/// Plants a raw envelope text and returns the path its response will have.
fn plant(sp: &Path, agent: &str, stem: &str, text: &str) -> std::path::PathBuf {
    drop_request(sp, agent, &format!("{stem}.json"), text.as_bytes());
    sp.join("responses")
        .join(agent)
        .join(format!("{stem}.json"))
}

fn messages_from(h: &TestHub, agent: &str) -> i64 {
    h.sql()
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE from_agent = ?1",
            [agent],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn relayed_bodies_are_carried_as_text_not_parsed_into_values() {
    // Defect: the relay parsed each envelope into values, cloned the body
    // and printed it again: 8 relayed bodies of 250,000 numbers (0.5 MB
    // each) took the hub from 6 MB to 117 MB; 3 of 8 MB took it to 3 GB.
    use crate::lifecycle::{Foreground, Site};
    let s = Site::new();
    let hub = Foreground::start(s.path(), s.port, "arc.sqlite3", &[]);
    let pid = hub.child.id();
    let hwm = || crate::hostile_proc::status_kb(pid, "VmHWM:");
    let Some(before) = hwm() else {
        eprintln!("skipping: no /proc here");
        return;
    };
    let sp = s.path().join(".arc-relay");
    let body = format!(r#"{{"x":{}}}"#, numbers(250_000));
    // A route that ignores bodies, so only the relay handles this one.
    let text = format!(r#"{{"method":"GET","path":"/v1/hub-info","body":{body}}}"#);
    let outs: Vec<_> = (0..16)
        .map(|i| plant(&sp, &format!("amp{i}"), "big", &text))
        .collect();
    for out in &outs {
        eventually(LIMIT, "a relayed answer", || out.exists().then_some(()));
    }
    let r: Value = serde_json::from_slice(&std::fs::read(&outs[0]).unwrap()).unwrap();
    assert_eq!(r["status"], 200, "{r}");
    let grew_mb = hwm().unwrap().saturating_sub(before) / 1024;
    assert!(
        grew_mb < 100,
        "16 relayed bodies of 0.5 MB grew the hub's peak memory by {grew_mb} MB"
    );
}

#[test]
fn an_envelope_too_big_to_parse_is_refused_before_it_reaches_the_hub() {
    let h = relay_hub(|_| {});
    let sp = spool(&h);
    let wide = format!(
        r#"{{"method":"POST","path":"/v1/channels","body":{{"name":"wide","metadata":{{"x":{}}}}}}}"#,
        numbers(300_000)
    );
    let deep = format!(
        r#"{{"method":"POST","path":"/v1/channels","body":{{"name":"deep","metadata":{{"x":{}0{}}}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    for (stem, text, why) in [
        ("wide", &wide, "holds more than"),
        ("deep", &deep, "nested deeper than"),
    ] {
        plant(&sp, "shaper", stem, text);
        let r = await_response(&sp, "shaper", stem, LIMIT);
        assert_eq!(r["status"], 400, "{r}");
        let err = r["error"].as_str().unwrap();
        assert!(
            err.starts_with("invalid relay request: request envelope is too large to parse: ")
                && err.contains(why),
            "{err}"
        );
    }
    let names: Vec<String> = h
        .get("/v1/channels")
        .result()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !names.iter().any(|n| n == "wide" || n == "deep"),
        "{names:?}"
    );
}

#[test]
fn relayed_answers_are_copied_not_printed_again() {
    // Defect: the hub's answer was parsed and pretty-printed, one number
    // per indented line: a 0.5 MB answer became a 3.75 MB response file
    // (an 8 MB one, 54 MB).
    let h = relay_hub(|_| {});
    // As much as stored metadata may hold (the attachment limit).
    let meta = format!(
        r#"{{"name":"bigmeta","metadata":{{"x":{},"s":"é"}}}}"#,
        numbers(80_000)
    );
    let r = h.call("POST", "/v1/channels", Some(meta.into_bytes()));
    assert_eq!(r.status, 201, "{r}");
    let direct = h.get("/v1/channels");
    let sp = spool(&h);
    let out = plant(
        &sp,
        "reader",
        "list",
        r#"{"method":"GET","path":"/v1/channels","body":null}"#,
    );
    let r = await_response(&sp, "reader", "list", LIMIT);
    assert_eq!(r["status"], 200);
    assert_eq!(r["ok"], true);
    assert_eq!(r["body"], direct.json, "the same answer");
    let size = std::fs::metadata(&out).unwrap().len() as f64;
    let answer = direct.text().len() as f64;
    assert!(
        size < answer * 1.1 + 4096.0,
        "a {answer} byte answer became a {size} byte response file"
    );
    // Still ASCII, as Python writes it.
    let text = std::fs::read(&out).unwrap();
    assert!(text.is_ascii());
    assert!(text.starts_with(b"{\n  \"request_id\": "));
}

/// A stand-in hub on 127.0.0.1:0 that answers each request by its path
/// with `answer`, serving `n` connections within `LIMIT`. Returns its URL
/// and, on join, the request heads it read.
fn fake_hub(
    n: usize,
    answer: fn(&str) -> (u16, &'static str, Vec<u8>),
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    l.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        let mut heads = Vec::new();
        while heads.len() < n && start.elapsed() < LIMIT {
            let Ok((mut c, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                match c.read(&mut b) {
                    Ok(1) => head.push(b[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            let (status, ct, body) = answer(&path);
            let mut out = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(&body);
            let _ = c.write_all(&out);
            heads.push(head);
        }
        heads
    });
    (url, t)
}

#[test]
fn answers_that_are_not_json_become_502_never_ok_strings() {
    // Defect: an answer the relay could not parse was written as
    // `"ok": true` with the text as a string body.
    fn answer(path: &str) -> (u16, &'static str, Vec<u8>) {
        match path {
            "/broken" => (
                200,
                "application/json",
                b"{\"ok\": true, \"result\": [1,".to_vec(),
            ),
            "/latin1" => (
                200,
                "application/json",
                b"{\"ok\": true, \"s\": \"\xe9\"}".to_vec(),
            ),
            "/deep" => {
                let deep = format!(
                    r#"{{"ok": true, "result": {}{}}}"#,
                    "[".repeat(300),
                    "]".repeat(300)
                );
                (200, "application/json; charset=utf-8", deep.into_bytes())
            }
            _ => (200, "text/html", b"<p>dashboard</p>".to_vec()),
        }
    }
    let (url, server) = fake_hub(4, answer);
    let tmp = TempDir::new("relay-502");
    let sp = tmp.path().join("spool");
    let relay = RelayHandle::start(RelayConfig::new(&url, &sp)).unwrap();
    for path in ["/broken", "/latin1", "/deep", "/"] {
        let stem = if path == "/" { "root" } else { &path[1..] };
        let text = envelope("GET", path, None, "2026-01-01T00:00:00Z");
        drop_request(&sp, "reader", &format!("{stem}.json"), &text);
        if path == "/deep" {
            // Valid, however deep: passed on as it is (deeper than
            // serde_json here would read, so the file is checked as text).
            let out = sp.join("responses/reader/deep.json");
            let text = eventually(LIMIT, "the deep answer", || {
                std::fs::read_to_string(&out).ok()
            });
            assert!(text.contains("\"ok\": true,\n  \"status\": 200,"), "{text}");
            assert!(text.contains(&"[".repeat(300)), "{text}");
            continue;
        }
        let r = await_response(&sp, "reader", stem, LIMIT);
        match path {
            "/broken" | "/latin1" => {
                assert_eq!(r["status"], 502, "{path}: {r}");
                assert_eq!(r["ok"], false, "{path}: {r}");
                assert!(r.get("body").is_none(), "{path}: {r}");
                let err = r["error"].as_str().unwrap();
                assert!(
                    err.starts_with("relay: the hub's answer (HTTP 200) is not valid"),
                    "{err}"
                );
            }
            _ => {
                // Not JSON and not said to be: a string, as the reference does.
                assert_eq!(r["status"], 200, "{r}");
                assert_eq!(r["ok"], true, "{r}");
                assert_eq!(r["body"], "<p>dashboard</p>");
            }
        }
    }
    relay.stop();
    assert_eq!(server.join().unwrap().len(), 4);
}

#[test]
fn crlf_in_an_envelope_never_reaches_the_hubs_connection() {
    // Defect: a path carrying CRLF was pasted into the request line, so a
    // spool writer could put a second, raw request on the relay's
    // connection (here: a message from anyone it likes).
    let h = relay_hub(|_| {});
    let sp = spool(&h);
    let inner =
        json!({"from_agent": "smuggled", "channel": "general", "body": "via CRLF"}).to_string();
    let smuggled = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{inner}",
        inner.len()
    );
    let cases = [
        (
            "path",
            "GET".to_string(),
            format!("/v1/hub-info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n{smuggled}GET /x"),
            "request path must be printable ASCII",
        ),
        (
            "space",
            "GET".to_string(),
            "/v1/hub-info HTTP/1.0".to_string(),
            "request path must be printable ASCII",
        ),
        (
            "method",
            format!("GET /v1/hub-info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n{smuggled}GET"),
            "/x".to_string(),
            "request method must be GET, POST or DELETE",
        ),
        (
            "put",
            "PUT".to_string(),
            "/v1/messages".to_string(),
            "request method must be GET, POST or DELETE",
        ),
        (
            "absolute",
            "POST".to_string(),
            "/v1/messages?x=http://127.0.0.1/v1/shutdown".to_string(),
            "must not contain \"://\"",
        ),
    ];
    for (stem, method, path, why) in &cases {
        let text = json!({"method": method, "path": path, "body": {"from_agent": "smuggled",
            "channel": "general", "body": "direct"}})
        .to_string();
        plant(&sp, "smuggler", stem, &text);
        let r = await_response(&sp, "smuggler", stem, LIMIT);
        assert_eq!(r["status"], 400, "{stem}: {r}");
        let err = r["error"].as_str().unwrap();
        assert!(
            err.starts_with("invalid relay request: ") && err.contains(why),
            "{stem}: {err}"
        );
    }
    assert_eq!(messages_from(&h, "smuggled"), 0);
    assert_eq!(h.get("/v1/hub-info").status, 200);
}

/// The id of the newest message (0 if none).
fn newest_id(h: &TestHub) -> i64 {
    h.sql()
        .query_row("SELECT COALESCE(MAX(id), 0) FROM messages", [], |r| {
            r.get(0)
        })
        .unwrap()
}

fn long_poll(agent: &str, since: i64) -> String {
    let path = format!("/v1/events?agent_id={agent}&since_id={since}&timeout=30");
    String::from_utf8(envelope("GET", &path, None, "2026-01-01T00:00:00Z")).unwrap()
}

#[test]
fn requests_beyond_the_cap_wait_unclaimed_in_their_files() {
    // Defect: every agent directory got its own request thread, without
    // an overall cap (2,500 directories: 6,369 threads).
    let h = TestHub::start();
    let tmp = TempDir::new("relay-cap");
    let sp = tmp.path().join("spool");
    let mut cfg = RelayConfig::new(&h.url, &sp);
    cfg.max_jobs = 2;
    cfg.max_long_polls = 2;
    cfg.max_wait_sec = 30.0;
    let relay = RelayHandle::start(cfg).unwrap();
    let since = newest_id(&h);
    let a = plant(&sp, "a", "wait", &long_poll("a", since));
    let b = plant(&sp, "b", "wait", &long_poll("b", since));
    eventually(LIMIT, "both long-polls parked", || {
        (h.hub().state().parked_count() == 2).then_some(())
    });
    // Both slots are taken: a third agent's request is not even claimed.
    let c_req = drop_request(
        &sp,
        "c",
        "quick.json",
        &envelope("GET", "/v1/hub-info", None, "2026-01-01T00:00:00Z"),
    );
    std::thread::sleep(SETTLE);
    assert!(c_req.exists(), "claimed while both slots were taken");
    assert!(!sp.join("requests/c/quick.work").exists());
    assert!(!a.exists() && !b.exists());
    // A message ends both long-polls; then the third is served.
    h.say("someone", "general", "wake up");
    let r = await_response(&sp, "c", "quick", LIMIT);
    assert_eq!(r["status"], 200, "{r}");
    for agent in ["a", "b"] {
        let r = await_response(&sp, agent, "wait", LIMIT);
        assert_eq!(r["body"]["result"][0]["body"], "wake up", "{r}");
    }
    relay.stop();
}

#[test]
fn relayed_long_polls_beyond_their_share_are_answered_at_once() {
    // Defect: 2,500 agent directories each relayed a long-poll and took
    // every one of the hub's 2,048 waiter slots; everyone else got 503.
    // Now relayed long-polls hold at most a quarter of them (here 2 of 8)
    // and the rest are answered without waiting.
    let h = relay_hub(|c| {
        c.max_waiters = 8;
        c.relay_max_wait_sec = 30.0;
    });
    let sp = spool(&h);
    let since = newest_id(&h);
    for i in 0..10 {
        plant(
            &sp,
            &format!("fan{i}"),
            "wait",
            &long_poll(&format!("fan{i}"), since),
        );
    }
    let answered = |sp: &Path| -> Vec<Value> {
        (0..10)
            .filter_map(|i| {
                let p = sp.join(format!("responses/fan{i}/wait.json"));
                serde_json::from_slice(&std::fs::read(p).ok()?).ok()
            })
            .collect()
    };
    let early = eventually(LIMIT, "8 long-polls answered at once", || {
        assert!(
            h.hub().state().parked_count() <= 2,
            "more than the relay's share parked"
        );
        let a = answered(&sp);
        (a.len() >= 8).then_some(a)
    });
    for r in &early {
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["body"]["result"], json!([]), "{r}");
    }
    eventually(LIMIT, "the relay's share parked", || {
        (h.hub().state().parked_count() == 2).then_some(())
    });
    // Everyone else still gets a waiter slot.
    let legit = h.get("/v1/events?agent_id=legit&since_id=999999&timeout=0.5");
    assert_eq!(legit.status, 200, "{legit}");
    h.say("someone", "general", "wake up");
    let all = eventually(LIMIT, "all answered", || {
        let a = answered(&sp);
        (a.len() == 10).then_some(a)
    });
    let woken = all
        .iter()
        .filter(|r| r["body"]["result"][0]["body"] == "wake up")
        .count();
    assert_eq!(woken, 2, "{all:?}");
}

#[test]
fn a_directory_holding_many_requests_is_listed_once_per_batch() {
    // Defect: every claim listed the agent's directory again, so 20,000
    // queued files were served at 20 a second on a whole core.
    const ORDERED: usize = 400;
    const JUNK: usize = 1500;
    let h = relay_hub(|c| {
        let req = c.spool_dir.join("requests");
        // Names run against the creation order: the relay must follow
        // `created_at`.
        let bulk = req.join("bulk");
        std::fs::create_dir_all(&bulk).unwrap();
        for i in 0..ORDERED {
            let created = format!("2026-01-01T00:{:02}:{:02}Z", i / 60, i % 60);
            let body =
                json!({"from_agent": "bulk", "channel": "general", "body": format!("m{i:04}")});
            let name = format!("{:04}.json", ORDERED - i);
            std::fs::write(
                bulk.join(name),
                envelope("POST", "/v1/messages", Some(body), &created),
            )
            .unwrap();
        }
        let junk = req.join("junk");
        std::fs::create_dir_all(&junk).unwrap();
        for i in 0..JUNK {
            std::fs::write(junk.join(format!("{i:05}.json")), br#"{"x": 1}"#).unwrap();
        }
    });
    let sp = spool(&h);
    let count = |dir: &str| {
        std::fs::read_dir(sp.join("responses").join(dir))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let mut held_most = 0;
    eventually(Duration::from_secs(120), "every request answered", || {
        held_most = held_most.max(h.hub().relay_stats().unwrap().backlog);
        (count("bulk") == ORDERED && count("junk") == JUNK).then_some(())
    });
    let stats = h.hub().relay_stats().unwrap();
    assert!(
        stats.listings < 100,
        "{} directory listings for {} requests",
        stats.listings,
        ORDERED + JUNK
    );
    assert!(held_most <= 2 * 512, "{held_most} requests held at once");
    // In `created_at` order, not name order.
    let bodies: Vec<String> = h
        .sql()
        .prepare("SELECT body FROM messages WHERE from_agent = 'bulk' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<String> = (0..ORDERED).map(|i| format!("m{i:04}")).collect();
    assert_eq!(bodies, want);
}

#[cfg(unix)]
#[test]
fn hard_linked_request_files_are_refused_not_read() {
    // Defect: a hard link to a file outside the spool was read and
    // forwarded like any request.
    let outside = TempDir::new("host-secrets");
    let secret = outside.path().join("secret.json");
    let text = envelope(
        "POST",
        "/v1/messages",
        Some(json!({"from_agent": "leak", "channel": "general", "body": "OUTSIDE-SECRET"})),
        "2026-01-01T00:00:00Z",
    );
    std::fs::write(&secret, &text).unwrap();
    let h = relay_hub(|_| {});
    let sp = spool(&h);
    let dir = sp.join("requests/linker");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::hard_link(&secret, dir.join("h.json")).unwrap();
    let r = await_response(&sp, "linker", "h", LIMIT);
    assert_eq!(r["status"], 400, "{r}");
    let err = r["error"].as_str().unwrap();
    assert!(err.contains("hard links"), "{err}");
    assert_eq!(messages_from(&h, "leak"), 0);
    assert_eq!(std::fs::read(&secret).unwrap(), text);
    let stats = h.hub().relay_stats().unwrap();
    assert!(
        stats
            .refused
            .iter()
            .any(|l| l.contains("requests/linker/h.work") && l.contains("hard links")),
        "{:?}",
        stats.refused
    );
}

#[test]
fn admin_routes_are_refused_over_the_relay_unless_the_operator_allows_them() {
    // Defect: `{"method": "POST", "path": "/v1/shutdown"}` in any agent
    // directory stopped the hub.
    let h = relay_hub(|_| {});
    let sp = spool(&h);
    let cases = [
        ("stop", "POST", "/v1/shutdown", "POST /v1/shutdown"),
        (
            "slashes",
            "post",
            "//v1/shutdown?delay_sec=0",
            "POST /v1/shutdown",
        ),
        (
            "cancel",
            "POST",
            "/v1/shutdown/cancel",
            "POST /v1/shutdown/cancel",
        ),
        ("network", "POST", "/v1/network", "POST /v1/network"),
    ];
    for (stem, method, path, route) in cases {
        let text = envelope(
            method,
            path,
            Some(json!({"delay_sec": 0, "allow_remote": true})),
            "x",
        );
        drop_request(&sp, "sbx", &format!("{stem}.json"), &text);
        let r = await_response(&sp, "sbx", stem, LIMIT);
        assert_eq!(r["status"], 403, "{stem}: {r}");
        assert_eq!(r["ok"], false);
        let err = r["error"].as_str().unwrap();
        assert!(
            err.starts_with(&format!(
                "relay: {route} is an admin route and is not relayed"
            )),
            "{err}"
        );
    }
    // Reading the shutdown status is fine, and nothing is pending.
    drop_request(
        &sp,
        "sbx",
        "status.json",
        &envelope("GET", "/v1/shutdown", None, "y"),
    );
    let r = await_response(&sp, "sbx", "status", LIMIT);
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(h.get("/v1/shutdown").result(), &Value::Null);
    assert_eq!(h.get("/v1/hub-info").status, 200);
    // An operator who allows them gets them forwarded (here: the hub's own
    // answer to a cancel with nothing pending).
    let open = relay_hub(|c| c.relay_allow_admin = true);
    let sp = spool(&open);
    drop_request(
        &sp,
        "ops",
        "cancel.json",
        &envelope("POST", "/v1/shutdown/cancel", None, "z"),
    );
    let r = await_response(&sp, "ops", "cancel", LIMIT);
    assert_eq!(r["status"], 400, "{r}");
    assert_eq!(r["error"], "no shutdown pending");
}
