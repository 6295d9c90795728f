//! Hostile input over HTTP, against an in-process hub: bounded request
//! heads, strict framing (no smuggling), answers instead of silent
//! closes, the cross-site guard, the connection cap, slow clients, byte
//! bounds on pages and streams, and a database that vanishes under the
//! hub. Each test reproduces a defect found by an adversarial pass (see
//! docs/SECURITY.md); the process-level ones are in `hostile_proc.rs`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use arc_hub::client::read_response;
use serde_json::{Value, json};

use crate::support::{TestHub, eventually};

fn connect(h: &TestHub) -> TcpStream {
    let s = TcpStream::connect(h.hub().addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Everything the hub sends until it closes the connection (bounded).
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    for _ in 0..10_000 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
    all
}

/// Sends `bytes` and returns every response the hub writes before it
/// closes, as (status, JSON body) pairs.
fn exchange(h: &TestHub, bytes: &[u8]) -> Vec<(u16, Value)> {
    let mut s = connect(h);
    let _ = s.write_all(bytes);
    let raw = read_to_close(&mut s);
    let mut out = Vec::new();
    let mut rest = &raw[..];
    while !rest.is_empty() {
        let Ok(r) = read_response(&mut rest, false) else {
            break;
        };
        out.push((r.status, r.json()));
    }
    out
}

fn host(h: &TestHub) -> String {
    format!("127.0.0.1:{}", h.hub().addr().port())
}

#[test]
fn header_lines_and_heads_are_bounded_and_answered() {
    // Defect: a header line without CRLF was read without limit (four
    // 200 MB lines took the hub to 741 MB), and a 1 MB value and 10,000
    // headers were accepted.
    let h = TestHub::start();
    let long_value = format!(
        "GET /v1/hub-info HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\n\r\n",
        host(&h),
        "a".repeat(1 << 20)
    );
    let r = exchange(&h, long_value.as_bytes());
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].0, 431);
    assert_eq!(r[0].1["error"], "header line too long (limit 8192 bytes)");

    let mut many = format!("GET /v1/hub-info HTTP/1.1\r\nHost: {}\r\n", host(&h));
    for i in 0..10_000 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let r = exchange(&h, many.as_bytes());
    assert_eq!(
        (r[0].0, r[0].1["error"].clone()),
        (431, json!("too many header lines (limit 100)"))
    );

    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "x".repeat(20_000));
    let r = exchange(&h, long_target.as_bytes());
    assert_eq!(r[0].0, 414, "{r:?}");

    // Endless header lines on four connections: each is answered 431
    // after a few KiB, and the hub stops reading long before the sender
    // is done (the send fails or the answer arrives first).
    let addr = h.hub().addr();
    let senders: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let _ = s.write_all(b"GET / HTTP/1.1\r\nX-Endless: ");
                let chunk = vec![b'a'; 64 * 1024];
                let mut sent = 0usize;
                while sent < 200 << 20 {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                    sent += chunk.len();
                }
                let status = read_response(&mut s, false).map(|r| r.status).ok();
                (sent, status)
            })
        })
        .collect();
    for t in senders {
        let (sent, status) = t.join().unwrap();
        assert!(sent < 200 << 20, "the hub kept reading: {sent} bytes");
        assert!(matches!(status, Some(431) | None), "{status:?}");
    }
    assert_eq!(h.get("/v1/hub-info").status, 200);
}

#[test]
fn an_absurd_content_length_is_refused_and_the_connection_closed() {
    // Defect: such connections were deliberately leaked (mem::forget):
    // 200 requests cost 400 descriptors and 200 threads for good.
    let h = TestHub::start();
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: {}\r\nContent-Length: 100000000\r\n\r\n{{\"from_agent\":",
        host(&h)
    );
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut s = connect(&h);
        s.write_all(req.as_bytes()).unwrap();
        let r = read_response(&mut s, false).expect("an answer");
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["error"], "request body exceeds max size");
        assert_eq!(r.header("Connection"), Some("close"));
        clients.push(s);
    }
    // The hub closes each connection (the client reads EOF) ...
    for s in &mut clients {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap_or(0), 0);
    }
    drop(clients);
    // ... and its connection threads end: nothing is left behind.
    eventually(Duration::from_secs(15), "every connection to end", || {
        (h.hub().connection_count() == 0).then_some(())
    });
}

#[test]
fn framing_ambiguities_are_400_and_never_a_second_request() {
    // Defect: `Content-Length: 4_6` was parsed differently by the two
    // layers, so the body ran as a second request; differing duplicate
    // lengths and Transfer-Encoding tricks were let through.
    let h = TestHub::start();
    let hostname = host(&h);
    let smuggled = format!("GET /v1/hub-info HTTP/1.1\r\nHost: {hostname}\r\n\r\n");
    let cases: Vec<(String, &str)> = vec![
        (
            format!("Content-Length: 4_6\r\n\r\n{smuggled}"),
            "Content-Length must be an integer",
        ),
        (
            format!(
                "Content-Length: 2\r\nContent-Length: {}\r\n\r\n{{}}{smuggled}",
                2 + smuggled.len()
            ),
            "conflicting Content-Length headers",
        ),
        (
            format!("Transfer-Encoding: gzip\r\n\r\n{smuggled}"),
            "unsupported Transfer-Encoding: gzip (only chunked is accepted)",
        ),
        (
            format!("Transfer-Encoding: chunked, gzip\r\n\r\n{smuggled}"),
            "unsupported Transfer-Encoding: chunked, gzip (only chunked is accepted)",
        ),
        (
            format!("Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n{smuggled}"),
            "Content-Length and Transfer-Encoding must not be sent together",
        ),
    ];
    for (rest, error) in cases {
        let req = format!("POST /v1/channels HTTP/1.1\r\nHost: {hostname}\r\n{rest}");
        let r = exchange(&h, req.as_bytes());
        assert_eq!(r.len(), 1, "one answer, then close: {rest:?} -> {r:?}");
        assert_eq!(
            (r[0].0, r[0].1["error"].as_str()),
            (400, Some(error)),
            "{rest:?}"
        );
    }
}

#[test]
fn malformed_heads_get_an_answer_not_a_silent_close() {
    // Defect: bare LF, non-ASCII bytes and HTTP/2.0 got a close or a
    // 15 s hang instead of an answer.
    let h = TestHub::start();
    let hostname = host(&h);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (
            format!("GET /v1/hub-info HTTP/1.1\nHost: {hostname}\n\n").into_bytes(),
            400,
        ),
        (
            [
                &b"GET /v1/caf\xc3\xa9 HTTP/1.1\r\nHost: "[..],
                hostname.as_bytes(),
                b"\r\n\r\n",
            ]
            .concat(),
            400,
        ),
        (
            [
                &b"GET /v1/hub-info HTTP/1.1\r\nHost: "[..],
                hostname.as_bytes(),
                b"\r\nX-Name: \xff\xfe\r\n\r\n",
            ]
            .concat(),
            400,
        ),
        (
            format!("GET /v1/hub-info HTTP/2.0\r\nHost: {hostname}\r\n\r\n").into_bytes(),
            505,
        ),
        (
            format!("GET /v1/hub-info HTTP/1.1\r\nHost : {hostname}\r\n\r\n").into_bytes(),
            400,
        ),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            400,
        ),
    ];
    for (req, status) in cases {
        let start = Instant::now();
        let r = exchange(&h, &req);
        assert_eq!(r.len(), 1, "{:?} -> {r:?}", String::from_utf8_lossy(&req));
        assert_eq!(
            r[0].0,
            status,
            "{:?}: {}",
            String::from_utf8_lossy(&req),
            r[0].1
        );
        assert_eq!(r[0].1["ok"], false);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
}

#[test]
fn the_cross_site_guard_sees_every_origin_and_sec_fetch_site() {
    // Defects: a second, foreign Origin header was ignored; a cross-site
    // text/plain POST with Sec-Fetch-Site and no Origin (what a browser
    // sends when Origin is stripped) was stored.
    let h = TestHub::start();
    let port = h.hub().addr().port();
    let hostname = host(&h);
    let body = r#"{"from_agent":"evil","body":"run this","kind":"task_request","to_agent":"bot"}"#;
    let post = |extra: &str| {
        format!(
            "POST /v1/messages HTTP/1.1\r\nHost: {hostname}\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let two_origins = format!("Origin: http://127.0.0.1:{port}\r\nOrigin: http://evil.example\r\n");
    for extra in [
        two_origins.as_str(),
        "Sec-Fetch-Site: cross-site\r\n",
        "Sec-Fetch-Site: same-site\r\n",
    ] {
        let r = exchange(&h, post(extra).as_bytes());
        assert_eq!(r[0].0, 403, "{extra:?}: {r:?}");
    }
    for extra in [
        "Sec-Fetch-Site: same-origin\r\n",
        "Sec-Fetch-Site: none\r\n",
    ] {
        let r = exchange(&h, post(extra).as_bytes());
        assert_eq!(r[0].0, 201, "{extra:?}: {r:?}");
    }
    let stored = h.get("/v1/inbox/bot");
    assert_eq!(
        stored.result().as_array().unwrap().len(),
        2,
        "only the two same-origin posts"
    );
    // Reads stay open to cross-site requests (they cannot see the answer).
    let r = exchange(
        &h,
        format!("GET /v1/hub-info HTTP/1.1\r\nHost: {hostname}\r\nSec-Fetch-Site: cross-site\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(r[0].0, 200);
}

#[test]
fn connections_past_the_cap_are_answered_503_at_once() {
    let h = TestHub::start_with(|c| c.max_connections = 8);
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..8 {
        let mut s = connect(&h);
        s.write_all(format!("GET /v1/hub-info HTTP/1.1\r\nHost: {}\r\n\r\n", host(&h)).as_bytes())
            .unwrap();
        assert_eq!(read_response(&mut s, false).unwrap().status, 200);
        held.push(s);
    }
    let start = Instant::now();
    let mut extra = connect(&h);
    let _ = extra.write_all(b"GET /v1/hub-info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let r = read_response(&mut extra, false).expect("a 503, not a wait");
    assert_eq!(r.status, 503);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("too many connections")
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(held);
    eventually(Duration::from_secs(10), "a free slot", || {
        (h.hub().connection_count() == 0).then_some(())
    });
    assert_eq!(h.get("/v1/hub-info").status, 200);
}

#[test]
fn a_slow_body_never_holds_a_worker() {
    // A client that announces a body and trickles it must not keep the
    // (single) worker from answering anyone else: bodies are read on the
    // connection's own thread.
    let h = TestHub::start_with(|c| {
        c.workers = 1;
        c.io_timeout = Duration::from_secs(3);
    });
    let mut liar = connect(&h);
    liar.write_all(
        format!(
            "POST /v1/messages HTTP/1.1\r\nHost: {}\r\nContent-Length: 5000\r\n\r\n{{\"from_age",
            host(&h)
        )
        .as_bytes(),
    )
    .unwrap();
    for _ in 0..5 {
        let start = Instant::now();
        assert_eq!(h.get("/v1/channels").status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
    let r = read_response(&mut liar, false).expect("an answer, not a hang");
    assert_eq!(r.status, 408, "{}", r.text());
}

#[test]
fn announced_bodies_take_no_memory_budget_before_they_arrive() {
    // Defect: the body budget (128 MiB) was reserved for the declared
    // Content-Length before a byte arrived, so 17 connections announcing
    // maximum-size bodies and trickling them left every other POST waiting
    // 30 s for a 503. The budget now grows with the bytes received.
    let h = TestHub::start();
    let cap = 8_385_536;
    let budget = 128 << 20;
    let mut liars = Vec::new();
    for i in 0..17 {
        let n = if i < 16 { cap } else { budget - 16 * cap };
        let mut s = connect(&h);
        s.write_all(
            format!(
                "POST /v1/messages HTTP/1.1\r\nHost: {}\r\nContent-Length: {n}\r\n\
                 Expect: 100-continue\r\n\r\n",
                host(&h)
            )
            .as_bytes(),
        )
        .unwrap();
        // `100 Continue` comes once the connection holds its share of the
        // budget, so after this every liar is reading its body.
        let mut line = [0u8; 25];
        s.read_exact(&mut line).unwrap();
        assert!(line.starts_with(b"HTTP/1.1 100 Continue"), "{line:?}");
        s.write_all(b"{").unwrap();
        liars.push(s);
    }
    // Ordinary writes go through meanwhile, without waiting for them.
    h.register("a");
    for i in 0..5 {
        let r = h.post(
            "/v1/messages",
            json!({"from_agent": "a", "channel": "general", "body": format!("m{i}")}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    // And they did not wait for the liars to time out: the last liar can
    // still finish its body and be answered.
    let last = liars.last_mut().unwrap();
    let msg = br#""from_agent": "a", "channel": "general", "body": "late"}"#;
    let pad = budget - 16 * cap - 1 - msg.len();
    last.write_all(&vec![b' '; pad]).unwrap();
    last.write_all(msg).unwrap();
    let r = read_response(last, false).expect("an answer");
    assert_eq!(r.status, 201, "{}", r.text());
    drop(liars);
}

#[test]
fn keep_alive_connections_are_all_served_and_close_is_echoed() {
    // Defect: only four keep-alive connections were served at once; the
    // fifth waited 15 s. And `Connection: close` was not echoed.
    let h = TestHub::start();
    let mut conns: Vec<TcpStream> = (0..64).map(|_| connect(&h)).collect();
    let start = Instant::now();
    for s in &mut conns {
        s.write_all(format!("GET /v1/hub-info HTTP/1.1\r\nHost: {}\r\n\r\n", host(&h)).as_bytes())
            .unwrap();
        let r = read_response(&mut *s, false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), None, "kept alive");
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let mut s = connect(&h);
    s.write_all(
        format!(
            "GET /v1/hub-info HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            host(&h)
        )
        .as_bytes(),
    )
    .unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.header("Connection"), Some("close"));
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).unwrap_or(0), 0, "and then it closes");
}

/// Posts `n` messages carrying `size` bytes of text attachments (each
/// within the attachment limit) to `general`.
fn post_big(h: &TestHub, n: usize, size: usize) -> Vec<i64> {
    let piece = 250_000;
    let attachments: Vec<Value> = (0..size.div_ceil(piece))
        .map(|k| json!({"type": "text", "content": "m".repeat(piece.min(size - k * piece))}))
        .collect();
    (0..n)
        .map(|i| {
            let r = h.post(
                "/v1/messages",
                json!({"from_agent": "big", "body": format!("big {i}"), "attachments": attachments}),
            );
            assert_eq!(r.status, 201, "{r}");
            r.result()["id"].as_i64().unwrap()
        })
        .collect()
}

#[test]
fn pages_are_bounded_by_bytes_and_a_client_can_continue() {
    // Defect: 30 messages with 7 MB of metadata each came back as one
    // 210 MB answer.
    let h = TestHub::start();
    let posted = post_big(&h, 6, 1_500_000);
    for first in [
        "/v1/messages?channel=general&limit=100",
        "/v1/events?agent_id=x&limit=100",
    ] {
        let mut got = Vec::new();
        let mut since = 0;
        for _ in 0..20 {
            let r = h.get(&format!("{first}&since_id={since}"));
            assert!(
                r.body.len() < 5 * 1024 * 1024,
                "{first}: {} bytes",
                r.body.len()
            );
            let page: Vec<i64> = crate::support::ids(r.result());
            if page.is_empty() {
                break;
            }
            assert!(
                page.len() < posted.len(),
                "{first}: one page held everything"
            );
            since = *page.last().unwrap();
            got.extend(page);
        }
        assert_eq!(got, posted, "{first}: every message once, in order");
    }
    let r = h.get("/v1/messages?channel=general&tail=1&limit=100");
    let tail = crate::support::ids(r.result());
    assert!(!tail.is_empty() && tail.len() < posted.len());
    assert_eq!(
        tail.last(),
        posted.last(),
        "the newest that fit, oldest first"
    );
}

#[test]
fn event_streams_stay_within_their_memory_budget_and_slow_readers_are_closed() {
    // Defect: 40 SSE clients that never read, plus 300 posts of 60 KB,
    // took the hub to 1.2 GB.
    let h = TestHub::start_with(|c| c.io_timeout = Duration::from_secs(1));
    let state = h.hub().state().clone();
    let mut slow = Vec::new();
    for i in 0..20 {
        let s = connect(&h);
        small_receive_buffer(&s);
        let mut s2 = s.try_clone().unwrap();
        s2.write_all(
            format!(
                "GET /v1/stream?agent_id=slow{i} HTTP/1.1\r\nHost: {}\r\n\r\n",
                host(&h)
            )
            .as_bytes(),
        )
        .unwrap();
        slow.push(s); // never read
    }
    eventually(Duration::from_secs(10), "streams parked", || {
        (state.parked_count() >= 20).then_some(())
    });
    let blob = "s".repeat(60_000);
    let mut peak = 0;
    for i in 0..400 {
        let r = h.post(
            "/v1/messages",
            json!({"from_agent": "p", "body": format!("{i} {blob}")}),
        );
        assert_eq!(r.status, 201);
        peak = peak.max(state.sse_budget.used());
    }
    assert!(
        peak <= arc_hub::state::STREAM_BUDGET,
        "budget exceeded: {peak}"
    );
    // Peers that stop reading are closed (they resume with Last-Event-ID).
    eventually(Duration::from_secs(30), "slow streams to be closed", || {
        (state.parked_count() == 0).then_some(())
    });
    assert_eq!(state.sse_budget.used(), 0);
    drop(slow);
}

/// Shrinks a socket's receive buffer, so a peer that never reads is
/// noticed after a few KiB instead of after the kernel's megabytes.
fn small_receive_buffer(s: &TcpStream) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let size: libc::c_int = 4096;
        // SAFETY: a valid socket and a pointer to a c_int of the given size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(unix))]
    let _ = s;
}

#[test]
fn writes_are_refused_once_the_database_file_is_deleted() {
    // Defect: with arc.sqlite3 (and its -wal/-shm) deleted under a running
    // hub, every post still answered 201, and after a restart none of them
    // existed.
    let h = TestHub::start();
    h.say("a", "general", "before");
    for suffix in ["", "-wal", "-shm"] {
        let mut p = h.db_path().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    for i in 0..5 {
        let r = h.post(
            "/v1/messages",
            json!({"from_agent": "a", "body": format!("after {i}")}),
        );
        assert_eq!(r.status, 503, "{r}");
        assert!(r.error().contains("was deleted or replaced"), "{r}");
    }
    assert_eq!(h.post("/v1/sessions", json!({"agent_id": "z"})).status, 503);
}

#[test]
fn writes_are_refused_once_the_wal_alone_is_deleted() {
    let h = TestHub::start();
    h.say("a", "general", "before");
    let mut wal = h.db_path().into_os_string();
    wal.push("-wal");
    std::fs::remove_file(&wal).unwrap();
    let r = h.post("/v1/messages", json!({"from_agent": "a", "body": "after"}));
    assert_eq!(r.status, 503, "{r}");
}

#[test]
fn a_stream_shutdown_on_a_half_closed_socket_does_not_hang() {
    // A client that half-closes after its request still gets its answer.
    let h = TestHub::start();
    let mut s = connect(&h);
    s.write_all(format!("GET /v1/channels HTTP/1.1\r\nHost: {}\r\n\r\n", host(&h)).as_bytes())
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn a_client_that_never_reads_its_answers_never_holds_a_worker() {
    // A connection that pipelines requests without reading the answers
    // fills its socket buffers; the writes that then block are the
    // connection thread's own, never a worker's.
    let h = TestHub::start_with(|c| {
        c.workers = 1;
        c.io_timeout = Duration::from_secs(5);
    });
    for i in 0..40 {
        h.say("a", "general", &format!("{i} {}", "x".repeat(4000)));
    }
    let hog = connect(&h);
    small_receive_buffer(&hog);
    let mut w = hog.try_clone().unwrap();
    let req = format!(
        "GET /v1/messages?channel=general&limit=500 HTTP/1.1\r\nHost: {}\r\n\r\n",
        host(&h)
    );
    let writer = std::thread::spawn(move || {
        for _ in 0..200 {
            if w.write_all(req.as_bytes()).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let start = Instant::now();
        assert_eq!(h.get("/v1/channels").status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
    drop(hog);
    let _ = writer.join();
}

#[test]
fn nesting_that_clients_cannot_read_is_refused_before_it_is_stored() {
    // Defect: one 326-byte message with metadata nested 124 deep was
    // stored; a page wraps it four levels deeper, past the 128 levels
    // serde_json reads, so every `arc poll`, `arc mcp` and relay reader
    // failed on it for good.
    let h = TestHub::start();
    h.register("a");
    let nest = |n: usize| json!({"x": (0..n).fold(json!(1), |v, _| json!([v]))});
    let deep = json!({"from_agent": "a", "body": "x", "metadata": nest(124)});
    h.post("/v1/messages", deep)
        .expect_err(400, "request body nested deeper than 64 levels");
    // What fits is stored and reads back through our own client.
    let fits = json!({"from_agent": "a", "body": "y", "metadata": nest(60)});
    assert_eq!(h.post("/v1/messages", fits).status, 201);
    let mut c = arc_hub::client::Client::http("reader", &h.hub().url());
    let page = c.poll(0.0, None, None, false, 100).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].body, "y");
    // The same holds for every body, not just messages.
    let wide = format!(
        r#"{{"name":"c","metadata":{{"x":[{}0]}}}}"#,
        "0,".repeat(300_000)
    );
    h.call("POST", "/v1/channels", Some(wide.into_bytes()))
        .expect_err(400, "request body holds more than 262144 JSON values");
}

#[test]
fn stored_metadata_is_held_to_the_attachment_limit() {
    // Defect: 8 MB of metadata per channel or agent was stored, and every
    // listing (`GET /v1/channels`, `/v1/agents`, `arc whoami`) re-sent and
    // re-parsed it under the store lock: 0.8–1.2 GB and 2 s per listing.
    let h = TestHub::start_with(|c| c.max_attachment_chars = 1000);
    let big = json!({"note": "n".repeat(1000)});
    let small = json!({"note": "n".repeat(900)});
    h.post("/v1/channels", json!({"name": "c", "metadata": big}))
        .expect_err(400, "metadata exceeds max size");
    assert_eq!(
        h.post("/v1/channels", json!({"name": "c", "metadata": small}))
            .status,
        201
    );
    h.post("/v1/sessions", json!({"agent_id": "a", "metadata": big}))
        .expect_err(400, "metadata exceeds max size");
    h.post(
        "/v1/sessions",
        json!({"agent_id": "a", "capabilities": vec!["c".repeat(100); 11]}),
    )
    .expect_err(400, "capabilities exceeds max size");
    h.register("a");
    for (path, body) in [
        (
            "/v1/claims",
            json!({"owner_agent_id": "a", "claim_key": "k", "metadata": big}),
        ),
        (
            "/v1/locks",
            json!({"agent_id": "a", "file_path": "f", "metadata": big}),
        ),
        (
            "/v1/messages",
            json!({"from_agent": "a", "body": "b", "metadata": big}),
        ),
    ] {
        h.post(path, body)
            .expect_err(400, "metadata exceeds max size");
    }
    assert_eq!(
        h.post(
            "/v1/messages",
            json!({"from_agent": "a", "body": "b", "metadata": small})
        )
        .status,
        201
    );
}

#[test]
fn a_url_in_the_query_never_reroutes_a_request() {
    // Defect: the router took any target containing `://` for an
    // absolute-form URL, so `POST /v1/messages?x=a://b/v1/shutdown` was
    // routed as `POST /v1/shutdown`.
    let h = TestHub::start();
    h.register("a");
    let body = json!({"from_agent": "a", "body": "hi", "delay_sec": 0}).to_string();
    let r = h.call(
        "POST",
        "/v1/messages?x=a://b/v1/shutdown",
        Some(body.into_bytes()),
    );
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(r.result()["body"], "hi");
    assert_eq!(h.get("/v1/shutdown").result(), &Value::Null);
}
