//! File relay: round trips, hostile spool entries, order, concurrency,
//! clamping, retention, client-side envelopes, the smoke roles and the
//! standalone `arc relay` binary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arc_hub::client::RelayClient;
use arc_hub::client::{Client, Post};
use arc_hub::error::Error;
use arc_hub::relay::{RelayConfig, RelayHandle};
use arc_hub::smoke::SmokeArgs;
use arc_hub::spool::{clamp_long_poll, safe_agent_id};
use serde_json::{Value, json};

use crate::support::{TempDir, TestHub, eventually};

/// A hub with its built-in relay on `<tmp>/.arc-relay`.
pub(crate) fn relay_hub(tweak: impl FnOnce(&mut arc_hub::HubConfig)) -> TestHub {
    TestHub::start_with(|c| {
        c.relay = true;
        tweak(c);
    })
}

pub(crate) fn spool(h: &TestHub) -> PathBuf {
    h.dir.path().join(".arc-relay")
}

/// Writes a raw request file the way a foreign client would, atomically.
pub(crate) fn drop_request(spool: &Path, agent_dir: &str, name: &str, content: &[u8]) -> PathBuf {
    let dir = spool.join("requests").join(agent_dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// Waits (bounded) for the response file of `stem` and parses it.
pub(crate) fn await_response(spool: &Path, agent_dir: &str, stem: &str, limit: Duration) -> Value {
    let path = spool
        .join("responses")
        .join(agent_dir)
        .join(format!("{stem}.json"));
    eventually(limit, &format!("response {}", path.display()), || {
        let bytes = std::fs::read(&path).ok()?;
        serde_json::from_slice::<Value>(&bytes).ok()
    })
}

pub(crate) fn envelope(method: &str, path: &str, body: Option<Value>, created_at: &str) -> Vec<u8> {
    let mut v = json!({
        "request_id": "ignored-by-name",
        "agent_id": "raw",
        "method": method,
        "path": path,
        "created_at": created_at,
    });
    if let Some(b) = body {
        v["body"] = b;
    }
    serde_json::to_vec_pretty(&v).unwrap()
}

#[test]
fn relay_round_trips_every_method_and_hub_info_lists_it() {
    let h = relay_hub(|_| {});
    let info = h.get("/v1/hub-info");
    assert!(
        info.result()["features"]
            .as_array()
            .unwrap()
            .contains(&json!("relay")),
        "{info}"
    );
    let plain = TestHub::start();
    let features = plain.get("/v1/hub-info").result()["features"].clone();
    assert!(!features.as_array().unwrap().contains(&json!("relay")));

    let mut c = Client::over_relay("relay agent/1", &spool(&h));
    let s = c
        .register(Some("Relay One"), true, Some(&["py"]), None)
        .unwrap();
    assert_eq!(s.agent_id, "relay agent/1");
    c.create_channel("ops", None).unwrap();
    let m = c.post("ops", "hello over files", Post::default()).unwrap();
    assert_eq!(m.from_agent, "relay agent/1");
    let seen = c.poll(0.0, Some("ops"), None, false, 50).unwrap();
    assert!(seen.iter().any(|x| x.id == m.id), "{seen:?}");
    let claim = c.claim("job-1", None, None, 60, None).unwrap();
    assert!(claim.acquired);
    assert_eq!(c.release("job-1").unwrap().claim_key, "job-1");
    let lock = c.lock("src/main.rs", 60, None).unwrap();
    assert!(lock.acquired);
    c.unlock("src/main.rs").unwrap();
    let agents = c.agents(Some("py")).unwrap();
    assert_eq!(agents.len(), 1);
    // Hub errors come back with their status and the hub's message.
    match c.post("no-such-channel", "x", Post::default()) {
        Err(Error::Hub { status, message }) => {
            assert_eq!(status, 400);
            assert_eq!(message, "channel does not exist: no-such-channel");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    // DELETE goes through too: the session is gone afterwards.
    c.close();
    let agents = h.get("/v1/agents").result().clone();
    assert!(
        !agents
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["agent_id"] == "relay agent/1"),
        "{agents}"
    );
    // The spool used the sanitised directory name.
    assert!(spool(&h).join("requests").join("relay_agent_1").is_dir());
    assert!(spool(&h).join("responses").join("relay_agent_1").is_dir());
}

#[test]
fn responses_are_reference_format_and_named_after_the_request_file() {
    let h = relay_hub(|_| {});
    h.register("raw");
    let sp = spool(&h);
    let req = drop_request(
        &sp,
        "raw",
        "abc123.json",
        &envelope(
            "post",
            "/v1/messages",
            Some(json!({"from_agent": "raw", "channel": "general", "body": "via file"})),
            "2026-01-01T00:00:00Z",
        ),
    );
    let r = await_response(&sp, "raw", "abc123", Duration::from_secs(10));
    assert_eq!(r["request_id"], "ignored-by-name", "{r}");
    assert_eq!(r["ok"], true);
    assert_eq!(r["status"], 201);
    assert_eq!(r["body"]["result"]["body"], "via file");
    assert!(r["completed_at"].as_str().unwrap().ends_with('Z'));
    assert!(r.get("error").is_none(), "{r}");
    // Claimed by rename: the .json is gone and a .work remains.
    assert!(!req.exists());
    assert!(req.with_extension("work").exists());
    // Pretty-printed like Python's json.dumps(indent=2), in field order.
    let text = std::fs::read_to_string(sp.join("responses/raw/abc123.json")).unwrap();
    assert!(text.starts_with("{\n  \"request_id\": "), "{text}");
    // Nothing is left as a temp file.
    let leftovers: Vec<_> = std::fs::read_dir(sp.join("responses/raw"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".json"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn hostile_spool_entries_get_errors_and_the_relay_keeps_serving() {
    let h = relay_hub(|_| {});
    let sp = spool(&h);
    let cases: &[(&str, &[u8], &str)] = &[
        ("bad-json", b"{not json", "invalid relay request: "),
        (
            "not-object",
            b"[1, 2]",
            "request envelope must be a JSON object",
        ),
        (
            "no-method",
            br#"{"path": "/v1/hub-info"}"#,
            "request envelope missing method",
        ),
        (
            "bad-path",
            br#"{"method": "GET", "path": "v1/hub-info"}"#,
            "request path must start with '/'",
        ),
        (
            "bad-body",
            br#"{"method": "POST", "path": "/v1/messages", "body": [1]}"#,
            "request body must be a JSON object when provided",
        ),
        ("binary", b"\xff\xfe\x00garbage", "invalid relay request: "),
        (
            "stream",
            br#"{"method": "GET", "path": "/v1/stream?agent_id=mallory"}"#,
            "event streams cannot be relayed; long-poll /v1/events instead",
        ),
    ];
    for (stem, content, _) in cases {
        drop_request(&sp, "mallory", &format!("{stem}.json"), content);
    }
    // Files that are not requests are left alone.
    drop_request(&sp, "mallory", "notes.txt", b"hello");
    for (stem, _, expect) in cases {
        let r = await_response(&sp, "mallory", stem, Duration::from_secs(10));
        assert_eq!(r["status"], 400, "{stem}: {r}");
        assert_eq!(r["ok"], false, "{stem}: {r}");
        let err = r["error"].as_str().unwrap();
        assert!(
            err.starts_with("invalid relay request: ") && err.contains(expect),
            "{stem}: {err}"
        );
    }
    assert!(sp.join("requests/mallory/notes.txt").exists());
    assert!(!sp.join("responses/mallory/notes.json").exists());

    // A symlink that escapes the spool is skipped, never followed.
    #[cfg(unix)]
    let outside = TempDir::new("outside");
    #[cfg(unix)]
    {
        let secret = outside.path().join("secret.json");
        std::fs::write(
            &secret,
            envelope("GET", "/v1/hub-info", None, "2026-01-01T00:00:00Z"),
        )
        .unwrap();
        let dir = sp.join("requests/mallory");
        std::os::unix::fs::symlink(&secret, dir.join("escape.json")).unwrap();
        // And a whole agent directory that is a symlink out of the spool.
        std::os::unix::fs::symlink(outside.path(), sp.join("requests/evil")).unwrap();
    }

    // The relay still serves a valid request afterwards.
    let mut c = Client::over_relay("mallory", &sp);
    c.register(None, true, None, None).unwrap();
    #[cfg(unix)]
    {
        assert!(std::fs::symlink_metadata(sp.join("requests/mallory/escape.json")).is_ok());
        assert!(outside.path().join("secret.json").exists());
        assert!(!sp.join("responses/mallory/escape.json").exists());
        assert!(!sp.join("responses/evil/secret.json").exists());
    }
}

#[test]
fn oversized_request_files_are_refused_with_400() {
    let h = TestHub::start();
    let sp = h.dir.path().join("spool");
    let mut cfg = RelayConfig::new(&h.url, &sp);
    cfg.max_request_bytes = 1024;
    let relay = RelayHandle::start(cfg).unwrap();
    let big = json!({"from_agent": "x", "channel": "general", "body": "y".repeat(4096)});
    drop_request(
        &sp,
        "big",
        "huge.json",
        &envelope("POST", "/v1/messages", Some(big), "2026-01-01T00:00:00Z"),
    );
    let r = await_response(&sp, "big", "huge", Duration::from_secs(10));
    assert_eq!(r["status"], 400, "{r}");
    assert_eq!(
        r["error"],
        "invalid relay request: request file exceeds 1024 bytes"
    );
    // Nothing reached the hub.
    let n: i64 = h
        .sql()
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE from_agent = 'x'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
    relay.stop();
}

#[test]
fn a_deleted_spool_is_recreated() {
    let h = relay_hub(|_| {});
    let sp = spool(&h);
    let mut c = Client::over_relay("phoenix", &sp);
    c.register(None, true, None, None).unwrap();
    // Move it away in one step (a recursive delete races the relay, which
    // re-creates directories as soon as it notices), then delete it.
    let gone = h.dir.path().join("gone");
    std::fs::rename(&sp, &gone).unwrap();
    std::fs::remove_dir_all(&gone).unwrap();
    eventually(Duration::from_secs(5), "spool re-created", || {
        sp.join("requests").is_dir().then_some(())
    });
    let m = c
        .post("general", "after the flood", Post::default())
        .unwrap();
    assert_eq!(m.body, "after the flood");
}

#[test]
fn requests_of_one_agent_are_served_in_created_at_order() {
    let h = relay_hub(|_| {});
    h.register("orderly");
    let sp = spool(&h);
    // Stop the scanner from racing the writes: write all files into a
    // staging dir, then move the whole agent directory in at once.
    let staging = h.dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let n = 25;
    for i in 0..n {
        // Names sort opposite to creation order, so only created_at
        // (not the name, not readdir order) gives the right sequence.
        let name = format!("{:04}.json", 9999 - i);
        let created = format!("2026-01-01T00:00:{:02}Z", i);
        let body = json!({"from_agent": "orderly", "channel": "general", "body": format!("m{i}")});
        std::fs::write(
            staging.join(name),
            envelope("POST", "/v1/messages", Some(body), &created),
        )
        .unwrap();
    }
    std::fs::create_dir_all(sp.join("requests")).unwrap();
    std::fs::rename(&staging, sp.join("requests/orderly")).unwrap();
    for i in 0..n {
        let r = await_response(
            &sp,
            "orderly",
            &format!("{:04}", 9999 - i),
            Duration::from_secs(20),
        );
        assert_eq!(r["status"], 201, "{r}");
    }
    let bodies: Vec<String> = h
        .get("/v1/messages?channel=general&limit=100")
        .result()
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["from_agent"] == "orderly")
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected);
}

#[test]
fn one_agents_long_poll_never_delays_another_agents_post() {
    let h = relay_hub(|_| {});
    let sp = spool(&h);
    let mut waiter = Client::over_relay("waiter", &sp);
    waiter.register(None, true, None, None).unwrap();
    let mut poster = Client::over_relay("poster", &sp);
    poster.register(None, true, None, None).unwrap();
    let start = Instant::now();
    let t = std::thread::spawn(move || {
        let got = waiter.poll(8.0, Some("general"), None, true, 50);
        (got, start.elapsed())
    });
    // Give the waiter's request time to be claimed and parked.
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let m = poster.post("general", "wake up", Post::default()).unwrap();
    let post_took = t0.elapsed();
    let (got, waited) = t.join().unwrap();
    let got = got.unwrap();
    assert!(got.iter().any(|x| x.id == m.id), "{got:?}");
    assert!(
        post_took < Duration::from_secs(3),
        "post through the relay took {post_took:?} while another agent was parked"
    );
    assert!(
        waited < Duration::from_secs(6),
        "the parked poll should wake on the post, took {waited:?}"
    );
}

#[test]
fn relayed_long_polls_are_clamped_below_the_python_deadline() {
    // The path rewrite itself.
    assert_eq!(
        clamp_long_poll("/v1/events?agent_id=a&timeout=30&limit=5", 20.0),
        ("/v1/events?agent_id=a&timeout=20&limit=5".to_string(), 20.0)
    );
    assert_eq!(
        clamp_long_poll("/v1/messages?channel=g&timeout=3", 20.0),
        ("/v1/messages?channel=g&timeout=3".to_string(), 3.0)
    );
    assert_eq!(
        clamp_long_poll("/v1/inbox/x?timeout=90", 1.5).0,
        "/v1/inbox/x?timeout=1.5"
    );
    assert_eq!(
        clamp_long_poll("/v1/hub-info?timeout=30", 1.0).0,
        "/v1/hub-info?timeout=30"
    );

    // End to end: a 30 s poll through a relay clamped to 1 s answers with
    // an empty list well before the client's deadline.
    let h = relay_hub(|c| c.relay_max_wait_sec = 1.0);
    let sp = spool(&h);
    let rc = RelayClient::new(&sp, "patient");
    let t0 = Instant::now();
    let r = rc
        .call(
            "GET",
            "/v1/events?agent_id=patient&timeout=30",
            None,
            Duration::from_secs(30),
        )
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["body"]["result"], json!([]));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[test]
fn client_synthesises_597_598_and_500_envelopes() {
    let tmp = TempDir::new("relay-client");
    // No relay serving: 598 after the timeout (plus our margin).
    let mut rc = RelayClient::new(&tmp.path().join("spool"), "lonely");
    rc.margin = Duration::ZERO;
    let dir = tmp.path().join("spool/requests/lonely");
    // The request file, read while the client waits for its answer.
    let seen = std::thread::spawn({
        let dir = dir.clone();
        move || {
            eventually(Duration::from_secs(5), "request file", || {
                let file = std::fs::read_dir(&dir).ok()?.flatten().next()?;
                let bytes = std::fs::read(file.path()).ok()?;
                serde_json::from_slice::<Value>(&bytes).ok()
            })
        }
    });
    let t0 = Instant::now();
    let r = rc
        .call("GET", "/v1/hub-info", None, Duration::from_millis(1500))
        .unwrap();
    assert_eq!(r["status"], 598, "{r}");
    assert_eq!(r["ok"], false);
    assert_eq!(
        r["error"],
        "relay timed out waiting for response (no relay took the request; it was withdrawn)"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    // No relay took it, so it was withdrawn: a relay starting later must
    // not carry out what the client reported as failed.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // It was written in the reference's envelope format.
    let env = seen.join().unwrap();
    for key in [
        "request_id",
        "agent_id",
        "method",
        "path",
        "body",
        "created_at",
    ] {
        assert!(env.get(key).is_some(), "{key} missing in {env}");
    }
    assert_eq!(env["method"], "GET");

    // A spool that cannot be written: 597.
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let rc = RelayClient::new(&blocker, "stuck");
    let r = rc
        .call("GET", "/v1/hub-info", None, Duration::from_millis(200))
        .unwrap();
    assert_eq!(r["status"], 597, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .starts_with("relay spool write failed: "),
        "{r}"
    );

    // A response that is JSON but not an object: 500.
    let sp = tmp.path().join("spool2");
    let answer = std::thread::spawn({
        let sp = sp.clone();
        move || {
            let dir = sp.join("requests/odd");
            let req = eventually(Duration::from_secs(5), "request file", || {
                std::fs::read_dir(&dir)
                    .ok()?
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|x| x == "json"))
            });
            let stem = req.file_stem().unwrap().to_string_lossy().into_owned();
            let out = sp.join("responses/odd");
            std::fs::create_dir_all(&out).unwrap();
            std::fs::write(out.join(format!("{stem}.json")), b"[1, 2, 3]").unwrap();
        }
    });
    let rc = RelayClient::new(&sp, "odd");
    let r = rc
        .call("GET", "/v1/hub-info", None, Duration::from_secs(5))
        .unwrap();
    answer.join().unwrap();
    assert_eq!(r["status"], 500, "{r}");
    assert_eq!(r["error"], "relay produced invalid response payload");
    assert_eq!(r["body"], json!([1, 2, 3]));
}

#[test]
fn unreachable_hub_gives_599_and_retention_removes_old_files() {
    // A port that is closed: bind, note it, drop.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tmp = TempDir::new("relay-599");
    let sp = tmp.path().join("spool");
    std::fs::create_dir_all(sp.join("responses/old")).unwrap();
    std::fs::create_dir_all(sp.join("requests/old")).unwrap();
    let stale_resp = sp.join("responses/old/stale.json");
    let stale_work = sp.join("requests/old/stale.work");
    let pending = sp.join("requests/old/keep.txt");
    for p in [&stale_resp, &stale_work, &pending] {
        std::fs::write(p, b"{}").unwrap();
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
    }
    let mut cfg = RelayConfig::new(&format!("http://127.0.0.1:{port}"), &sp);
    cfg.retention = Duration::from_secs(60);
    let relay = RelayHandle::start(cfg).unwrap();
    let rc = RelayClient::new(&sp, "cut-off");
    let r = rc
        .call("GET", "/v1/hub-info", None, Duration::from_secs(10))
        .unwrap();
    assert_eq!(r["status"], 599, "{r}");
    assert_eq!(r["ok"], false);
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .starts_with("connection error: "),
        "{r}"
    );
    eventually(Duration::from_secs(5), "retention sweep", || {
        (!stale_resp.exists() && !stale_work.exists()).then_some(())
    });
    // Only .work and response files are swept; fresh responses stay.
    assert!(pending.exists());
    let fresh = sp.join("responses/cut-off");
    assert!(std::fs::read_dir(&fresh).unwrap().next().is_some());
    relay.stop();
}

#[test]
fn dot_agent_ids_stay_inside_their_own_directories() {
    let h = relay_hub(|_| {});
    let sp = spool(&h);
    for agent in [".", ".."] {
        let mut c = Client::over_relay(agent, &sp);
        c.register(None, true, None, None).unwrap();
        let dir = safe_agent_id(agent);
        assert!(sp.join("requests").join(&dir).is_dir(), "{agent}");
        assert!(sp.join("responses").join(&dir).is_dir(), "{agent}");
    }
    // Nothing landed in the spool root or above it.
    let root: Vec<String> = std::fs::read_dir(&sp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut root_sorted = root.clone();
    root_sorted.sort();
    assert_eq!(root_sorted, ["requests", "responses"], "{root:?}");
}

fn smoke_args(role: &str, transport: &str, h: &TestHub, run_id: &str) -> SmokeArgs {
    SmokeArgs {
        role: role.into(),
        transport: transport.into(),
        // The relay role must not need the hub's address at all.
        base_url: if transport == "relay" {
            "http://127.0.0.1:9".into()
        } else {
            h.url.clone()
        },
        relay_dir: spool(h),
        channel: "smoke-room".into(),
        thread_id: "smoke-relay-001".into(),
        claim_key: "smoke-claim-001".into(),
        timeout_sec: 20.0,
        poll_interval_sec: 0.05,
        run_id: Some(run_id.into()),
    }
}

#[test]
fn the_three_smoke_roles_pass_in_process_two_over_http_one_over_relay() {
    let h = relay_hub(|_| {});
    for run in ["r1", "r2"] {
        let roles = [
            smoke_args("smoke-a", "http", &h, run),
            smoke_args("smoke-b", "relay", &h, run),
            smoke_args("smoke-c", "http", &h, run),
        ];
        let threads: Vec<_> = roles
            .into_iter()
            .map(|a| std::thread::spawn(move || (a.role.clone(), arc_hub::smoke::run(&a))))
            .collect();
        for t in threads {
            let (role, r) = t.join().unwrap();
            assert!(r.is_ok(), "{role} in run {run}: {r:?}");
        }
        let channel = format!("smoke-room-{run}");
        let msgs = h
            .get(&format!("/v1/messages?channel={channel}&limit=100"))
            .result()
            .clone();
        let kinds: Vec<(String, String)> = msgs
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["from_agent"].as_str().unwrap().to_string(),
                    m["kind"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for want in [
            ("smoke-a", "task"),
            ("smoke-b", "artifact"),
            ("smoke-c", "notice"),
            ("smoke-a", "notice"),
            ("smoke-b", "notice"),
        ] {
            assert!(
                kinds.contains(&(want.0.to_string(), want.1.to_string())),
                "{want:?} missing in {kinds:?}"
            );
        }
        assert_eq!(kinds.len(), 5, "runs stay isolated: {kinds:?}");
    }
}

#[test]
fn standalone_arc_relay_binary_serves_a_spool() {
    let h = TestHub::start();
    let sp = h.dir.path().join("standalone-spool");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_arc"))
        .args([
            "relay",
            "--base-url",
            &h.url,
            "--spool-dir",
            sp.to_str().unwrap(),
            "--poll-interval-sec",
            "0.01",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut c = Client::over_relay("outsider", &sp);
    c.timeout = Duration::from_secs(10);
    let result = c
        .register(None, true, None, None)
        .and_then(|_| c.post("general", "from the sandbox", Post::default()));
    let _ = child.kill();
    let _ = child.wait();
    let m = result.unwrap();
    let stored = h.get(&format!(
        "/v1/messages?channel=general&since_id={}",
        m.id - 1
    ));
    assert_eq!(stored.result()[0]["body"], "from the sandbox", "{stored}");
}

#[test]
fn a_request_in_a_long_quiet_agent_directory_is_still_served() {
    // The scanner skips listing directories whose mtime has not changed
    // for a while; a new file must still be seen.
    let h = relay_hub(|_| {});
    let sp = spool(&h);
    let dir = sp.join("requests/sleepy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("readme.txt"), b"not a request").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::open(&dir)
        .unwrap()
        .set_modified(old)
        .unwrap();
    // Several scans see the quiet directory and remember it.
    std::thread::sleep(Duration::from_millis(200));
    let mut c = Client::over_relay("sleepy", &sp);
    c.timeout = Duration::from_secs(10);
    c.register(None, true, None, None).unwrap();
    let m = c.post("general", "woke up", Post::default()).unwrap();
    assert_eq!(m.body, "woke up");
}

#[test]
fn our_client_asks_any_relay_for_at_most_25_s() {
    // The reference relay gives up on the hub after 30 s, so a relayed
    // `arc poll --timeout 30` must not ask the hub for 30 s.
    let tmp = TempDir::new("relay-clamp");
    let sp = tmp.path().join("spool");
    let fake_relay = std::thread::spawn({
        let sp = sp.clone();
        move || {
            let dir = sp.join("requests/clamped");
            let req = eventually(Duration::from_secs(10), "request file", || {
                std::fs::read_dir(&dir)
                    .ok()?
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|x| x == "json"))
            });
            let env: Value = serde_json::from_slice(&std::fs::read(&req).unwrap()).unwrap();
            let stem = req.file_stem().unwrap().to_string_lossy().into_owned();
            let out = sp.join("responses/clamped");
            std::fs::create_dir_all(&out).unwrap();
            let resp = json!({"request_id": stem, "ok": true, "status": 200,
                "body": {"ok": true, "result": []}, "completed_at": "2026-01-01T00:00:00Z"});
            std::fs::write(out.join(format!("{stem}.json")), resp.to_string()).unwrap();
            env["path"].as_str().unwrap().to_string()
        }
    });
    let mut c = Client::over_relay("clamped", &sp);
    let got = c.poll(30.0, Some("general"), None, true, 10).unwrap();
    assert!(got.is_empty());
    let path = fake_relay.join().unwrap();
    assert!(path.contains("timeout=25"), "{path}");
    assert!(!path.contains("timeout=30"), "{path}");
}

#[cfg(target_os = "linux")]
#[test]
fn new_request_files_wake_the_relay_without_waiting_for_a_scan() {
    // With a 30 s scan interval only a change event can explain a quick
    // answer: the relay must not depend on polling where the OS can tell.
    let h = TestHub::start();
    let sp = h.dir.path().join("evented");
    let mut cfg = RelayConfig::new(&h.url, &sp);
    cfg.poll_interval = Duration::from_secs(30);
    let relay = RelayHandle::start(cfg).unwrap();
    // Let the first scan pass, so the next one is 30 s away.
    std::thread::sleep(Duration::from_millis(300));
    let rc = RelayClient::new(&sp, "fresh-agent");
    for _ in 0..3 {
        let t0 = Instant::now();
        let r = rc
            .call("GET", "/v1/hub-info", None, Duration::from_secs(10))
            .unwrap();
        assert_eq!(r["status"], 200, "{r}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }
    relay.stop();
}

#[cfg(target_os = "linux")]
#[test]
fn a_huge_sparse_request_file_is_refused_without_being_read() {
    // Regression: the scanner read whole request files (to sort them)
    // before looking at their size; a 4 GB sparse file cost 4 GB of RAM.
    fn peak_rss_kb() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
    let h = relay_hub(|_| {});
    let sp = spool(&h);
    let before = peak_rss_kb();
    let dir = sp.join("requests/hoarder");
    std::fs::create_dir_all(&dir).unwrap();
    let staged = dir.join(".huge.tmp");
    std::fs::File::create(&staged)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    std::fs::rename(&staged, dir.join("huge.json")).unwrap();
    let r = await_response(&sp, "hoarder", "huge", Duration::from_secs(20));
    assert_eq!(r["status"], 400, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("request file exceeds"),
        "{r}"
    );
    let grew_mb = peak_rss_kb().saturating_sub(before) / 1024;
    assert!(grew_mb < 1024, "peak RSS grew by {grew_mb} MB");
}
