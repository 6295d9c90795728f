//! Framing, limits, cross-site safety and failure handling: the hub always
//! answers, with the envelope and a correct status (docs/PROTOCOL.md, "Wire rules").

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use arc_hub::HubConfig;
use serde_json::json;

use crate::support::{TempDir, TestHub, eventually};

/// Sends raw bytes and reads one response (framed by its Content-Length),
/// returned as text with its head.
fn raw_exchange(h: &TestHub, bytes: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(h.hub().addr()).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(bytes).unwrap();
    let r = arc_hub::client::read_response(&mut s, false).expect("a response");
    let head: String = r
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    format!("HTTP/1.1 {} x\r\n{head}\r\n{}", r.status, r.text())
}

fn body_of(response: &str) -> serde_json::Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

#[test]
fn body_framing_errors_are_400s_with_exact_texts() {
    let h = TestHub::start();
    let cases: &[(&[u8], &str)] = &[
        (b"\xff\xfe", "request body must be valid UTF-8"),
        (b"{", "malformed JSON"),
        (b"{\"from_agent\": NaN}", "malformed JSON"),
        (b"{\"from_agent\": Infinity}", "malformed JSON"),
        ("\u{feff}{}".as_bytes(), "malformed JSON"),
        (b"[]", "request body must be a JSON object"),
        (b"\"x\"", "request body must be a JSON object"),
    ];
    for (body, err) in cases {
        h.call("POST", "/v1/messages", Some(body.to_vec()))
            .expect_err(400, err);
    }
    // An empty body is `{}`.
    h.call("POST", "/v1/shutdown/cancel", None)
        .expect_err(400, "no shutdown pending");
    h.call("POST", "/v1/messages", Some(Vec::new()))
        .expect_err(400, "from_agent is required");

    let port = h.hub().addr().port();
    for (cl, err) in [
        ("abc", "Content-Length must be an integer"),
        ("-5", "Content-Length must be >= 0"),
    ] {
        let req = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {cl}\r\nConnection: close\r\n\r\n"
        );
        let resp = raw_exchange(&h, req.as_bytes(), Duration::from_secs(10));
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
        assert_eq!(body_of(&resp)["error"], err, "{resp}");
    }
}

#[test]
fn chunked_bodies_are_read() {
    let h = TestHub::start();
    let port = h.hub().addr().port();
    let body = r#"{"from_agent":"chunky","body":"in pieces"}"#;
    let (a, b) = body.split_at(10);
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let resp = raw_exchange(&h, req.as_bytes(), Duration::from_secs(10));
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    assert_eq!(body_of(&resp)["result"]["body"], "in pieces");
}

#[test]
fn oversized_bodies_are_refused_without_reading_them() {
    let h = TestHub::start_with(|c| {
        c.max_body_chars = 100;
        c.max_attachment_chars = 100;
        c.max_attachments = 1;
    });
    let cap = 100 + 100 + 65_536;
    let port = h.hub().addr().port();
    // Declared just over the cap, with no body sent at all: the answer comes at once.
    let start = Instant::now();
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n",
        cap + 1
    );
    let resp = raw_exchange(&h, req.as_bytes(), Duration::from_secs(10));
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert_eq!(body_of(&resp)["error"], "request body exceeds max size");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "answered without waiting for the body"
    );
    // A declared length of many gigabytes must not take the hub down.
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 90000000000000\r\n\r\n"
    );
    let mut s = TcpStream::connect(h.hub().addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let r = arc_hub::client::read_response(&mut s, false).expect("a complete, framed response");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "request body exceeds max size");
    drop(s);
    assert_eq!(h.get("/v1/hub-info").status, 200, "hub still serving");
    // A real body within the cap still works.
    let ok = h.post(
        "/v1/messages",
        json!({"from_agent": "a", "body": "x".repeat(100)}),
    );
    assert_eq!(ok.status, 201, "{ok}");
}

#[test]
fn a_lying_client_cannot_pin_a_worker() {
    let h = TestHub::start_with(|c| {
        c.io_timeout = Duration::from_millis(500);
        c.workers = 1;
    });
    let port = h.hub().addr().port();
    // Declares 5000 bytes (more than tiny_http buffers itself), sends 10.
    let mut liar = TcpStream::connect(h.hub().addr()).unwrap();
    liar.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 5000\r\n\r\n{{\"from_age"
    );
    liar.write_all(req.as_bytes()).unwrap();
    let start = Instant::now();
    let r = arc_hub::client::read_response(&mut liar, false).expect("an answer, not a hang");
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "bounded by the io timeout: {:?}",
        start.elapsed()
    );
    // The single worker is free again.
    assert_eq!(h.get("/v1/channels").status, 200);
}

#[test]
fn cross_origin_and_rebinding_requests_are_refused() {
    let h = TestHub::start();
    let port = h.hub().addr().port();
    let body =
        br#"{"from_agent":"evil","body":"run rm -rf","kind":"task_request","to_agent":"bot"}"#;
    for origin in [
        "http://evil.example",
        "null",
        "http://127.0.0.1:1",
        "https://127.0.0.1",
    ] {
        let r = h.raw(
            "POST",
            "/v1/messages",
            Some(body),
            &[("Origin", origin), ("Content-Type", "text/plain")],
        );
        assert_eq!(r.status, 403, "{origin}: {r}");
        assert_eq!(r.json["ok"], json!(false));
        assert!(r.header("Access-Control-Allow-Origin").is_none());
    }
    let r = h.raw(
        "POST",
        "/v1/shutdown",
        Some(b"{}"),
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        h.get("/v1/shutdown").result(),
        &serde_json::Value::Null,
        "nothing armed"
    );
    let count: i64 = h
        .sql()
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 0, "nothing stored");

    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::1]:{port}"),
    ] {
        let r = h.raw(
            "POST",
            "/v1/messages",
            Some(br#"{"from_agent":"op","body":"hi"}"#),
            &[("Origin", &origin)],
        );
        assert_eq!(r.status, 201, "{origin}: {r}");
    }
    for host in ["evil.example", "evil.example:80", "127.0.0.1.nip.io"] {
        let req = format!("GET /v1/channels HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let resp = raw_exchange(&h, req.as_bytes(), Duration::from_secs(10));
        assert!(resp.starts_with("HTTP/1.1 403"), "{host}: {resp}");
        assert_eq!(body_of(&resp)["ok"], json!(false));
        // A second, hostile Host header is not hidden behind a good one:
        // two Host headers are refused outright (RFC 9112 §3.2).
        let r = h.raw("GET", "/v1/channels", None, &[("Host", host)]);
        r.expect_err(400, "more than one Host header");
    }
    for host in [
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "127.0.0.1".to_string(),
    ] {
        let req = format!("GET /v1/channels HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let resp = raw_exchange(&h, req.as_bytes(), Duration::from_secs(10));
        assert!(resp.starts_with("HTTP/1.1 200"), "{host}: {resp}");
    }
    // An OPTIONS preflight never succeeds.
    let pre = h.raw(
        "OPTIONS",
        "/v1/messages",
        None,
        &[
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
    );
    assert!(pre.status >= 400, "{pre}");
}

#[test]
fn a_panicking_handler_is_a_500_and_the_hub_keeps_serving() {
    let h = TestHub::start_with(|c| {
        c.test_hooks = true;
        c.workers = 2;
    });
    for _ in 0..4 {
        h.get("/v1/_test/panic")
            .expect_err(500, "internal error: handler panicked");
    }
    assert_eq!(h.get("/v1/hub-info").status, 200);
    // Without the hook the route does not exist.
    let plain = TestHub::start();
    assert_eq!(plain.get("/v1/_test/panic").status, 404);
}

#[test]
fn a_busy_database_is_a_503_not_a_dropped_connection() {
    let h = TestHub::start_with(|c| c.busy_timeout = Duration::from_millis(200));
    let blocker = h.sql();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let r = h.post("/v1/messages", json!({"from_agent": "a", "body": "x"}));
    assert_eq!(r.status, 503, "{r}");
    assert_eq!(r.error(), "database is busy, try again");
    blocker.execute_batch("COMMIT").unwrap();
    assert_eq!(
        h.post("/v1/messages", json!({"from_agent": "a", "body": "x"}))
            .status,
        201
    );
}

#[test]
fn message_ids_stop_at_2_pow_53_minus_1() {
    let h = TestHub::start();
    h.say("a", "general", "first");
    h.sql()
        .execute(
            "UPDATE sqlite_sequence SET seq = 9007199254740991 WHERE name = 'messages'",
            [],
        )
        .unwrap();
    let r = h.post(
        "/v1/messages",
        json!({"from_agent": "a", "body": "one too many"}),
    );
    assert_eq!(r.status, 500, "{r}");
    let count: i64 = h
        .sql()
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1);
    h.sql()
        .execute(
            "UPDATE sqlite_sequence SET seq = 9007199254740990 WHERE name = 'messages'",
            [],
        )
        .unwrap();
    let last = h.post(
        "/v1/messages",
        json!({"from_agent": "a", "body": "the last one"}),
    );
    assert_eq!(last.result()["id"], json!(9007199254740991_i64));
}

#[test]
fn bad_configuration_fails_with_one_clear_line() {
    let dir = TempDir::new("cfg");
    let as_dir = HubConfig {
        storage: dir.path().to_path_buf(),
        ..HubConfig::ephemeral(dir.path())
    };
    let e = arc_hub::Hub::start(as_dir)
        .err()
        .expect("directory storage refused")
        .to_string();
    assert!(e.contains("storage path is a directory"), "{e}");

    let remote = HubConfig {
        host: "0.0.0.0".into(),
        ..HubConfig::ephemeral(dir.path())
    };
    let e = arc_hub::Hub::start(remote)
        .err()
        .expect("remote bind refused")
        .to_string();
    assert!(e.contains("--allow-remote"), "{e}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = HubConfig {
        port: taken.local_addr().unwrap().port(),
        ..HubConfig::ephemeral(dir.path())
    };
    let e = arc_hub::Hub::start(busy)
        .err()
        .expect("port in use refused")
        .to_string();
    assert!(e.contains("already in use"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("ro");
        std::fs::create_dir_all(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let cfg = HubConfig {
            storage: ro.join("x.sqlite3"),
            ..HubConfig::ephemeral(dir.path())
        };
        let result = arc_hub::Hub::start(cfg);
        let is_root = std::fs::write(ro.join("probe"), b"x").is_ok();
        if !is_root {
            let e = result
                .err()
                .expect("unwritable storage refused")
                .to_string();
            assert!(e.contains("not writable"), "{e}");
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn ipv6_loopback_binds_and_serves() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6 loopback on this machine");
        return;
    }
    let h = TestHub::start_with(|c| c.host = "::1".into());
    assert!(h.url.starts_with("http://[::1]:"), "{}", h.url);
    let r = h.get("/v1/hub-info");
    assert_eq!(r.status, 200, "{r}");
    let port = h.hub().addr().port();
    let req =
        format!("GET /v1/channels HTTP/1.1\r\nHost: [::1]:{port}\r\nConnection: close\r\n\r\n");
    let resp = raw_exchange(&h, req.as_bytes(), Duration::from_secs(10));
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[test]
fn huge_numbers_never_drop_the_connection() {
    let h = TestHub::start();
    h.post("/v1/tasks/99999999999999999999999999/complete", json!({}))
        .expect_err(404, "task not found");
    h.get("/v1/tasks?parent_id=99999999999999999999")
        .expect_err(400, "parent_id must be an integer");
    h.post(
        "/v1/messages",
        json!({"from_agent": "a", "body": "x", "reply_to": 18446744073709551615_u64}),
    )
    .expect_err(400, "reply_to must be an integer");
    h.post("/v1/shutdown", json!({"delay_sec": 1e300}))
        .expect_err(400, "delay_sec must be an integer");
    let raw = h.call(
        "POST",
        "/v1/messages",
        Some(br#"{"from_agent":"a","body":"x","reply_to":1e999}"#.to_vec()),
    );
    raw.expect_err(400, "malformed JSON");
}

#[test]
fn idle_keep_alive_connections_are_closed_and_nothing_leaks() {
    // Regression: the accept loop used to end after every quiet
    // io_timeout and be restarted, leaking a thread and a descriptor
    // each time. Now one accept loop runs for good, and an idle
    // keep-alive connection is closed after io_timeout.
    let h = TestHub::start_with(|c| {
        c.io_timeout = Duration::from_millis(300);
    });
    assert_eq!(h.get("/v1/hub-info").status, 200);
    let mut idle: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(h.hub().addr()).unwrap())
        .collect();
    for s in &mut idle {
        s.write_all(b"GET /v1/hub-info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = arc_hub::client::read_response(&mut *s, false).unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(h.hub().connection_count() >= 5);
    // Each idle connection is closed by the hub (the client reads EOF).
    for s in &mut idle {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap_or(0), 0, "closed by the hub");
    }
    eventually(Duration::from_secs(10), "connections to drain", || {
        (h.hub().connection_count() == 0).then_some(())
    });
    // And the hub still answers.
    for _ in 0..3 {
        assert_eq!(h.get("/v1/hub-info").status, 200);
    }
}

#[test]
fn bodies_on_routes_that_take_none_never_take_the_hub_down() {
    // Regression: a GET (or a 404, 403 or long-poll) announcing an absurd
    // body made tiny_http allocate the declared length when the request
    // was dropped, aborting the process.
    // Such a body is ignored, as the reference does; the connection is
    // closed after the answer instead of being drained.
    let h = TestHub::start();
    for (head, status) in [
        ("GET /v1/hub-info HTTP/1.1\r\nHost: 127.0.0.1\r\n", "200"),
        ("GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n", "404"),
        (
            "GET /v1/events?agent_id=x&timeout=0.2 HTTP/1.1\r\nHost: 127.0.0.1\r\n",
            "200",
        ),
        (
            "GET /v1/hub-info HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n",
            "403",
        ),
    ] {
        let req = format!("{head}Content-Length: 1000000000000000\r\n\r\nabc");
        let r = raw_exchange(&h, req.as_bytes(), Duration::from_secs(10));
        assert!(r.starts_with(&format!("HTTP/1.1 {status}")), "{head}: {r}");
        assert!(r.contains("Connection: close"), "{head}: {r}");
        assert_eq!(h.get("/v1/hub-info").status, 200, "hub died after {head}");
    }
    // A small body on a GET is read and ignored, as the reference does.
    let r = raw_exchange(
        &h,
        b"GET /v1/channels HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
        Duration::from_secs(10),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(body_of(&r)["ok"], true);
}

#[test]
fn a_shutdown_that_could_not_post_its_notice_is_not_left_pending() {
    // Regression: arming set "pending" before posting the notice; when the
    // post failed, no timer ran and every later request was refused with
    // "shutdown already pending".
    let h = TestHub::start_with(|c| c.busy_timeout = Duration::from_millis(200));
    let blocker = h.sql();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = h.post("/v1/shutdown", json!({"delay_sec": 30}));
    assert!(r.status >= 500, "{r}");
    blocker.execute_batch("ROLLBACK").unwrap();
    let r = h.get("/v1/shutdown");
    assert!(r.result().is_null(), "nothing pending: {r}");
    let r = h.post("/v1/shutdown", json!({"delay_sec": 30}));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.result()["status"], "shutdown_initiated");
    let r = h.post("/v1/shutdown/cancel", json!({}));
    assert_eq!(r.result()["status"], "shutdown_cancelled", "{r}");
}
