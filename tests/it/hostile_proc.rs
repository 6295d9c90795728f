//! Hostile input against the real `arc` binary, where what is measured
//! belongs to one process: descriptors, threads and peak memory of a hub
//! under abuse, `arc reset` and `arc stop` facing a database in use or a
//! pidfile that names a stranger, and `arc mcp` losing its stdin in the
//! middle of a call. The in-process half is `hostile.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::lifecycle::{ARC, Foreground, Site};
use crate::support::eventually;

/// A field of `/proc/<pid>/status` in kB (Linux), e.g. `VmHWM`.
pub(crate) fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

fn post(url: &str, body: Value) -> u16 {
    arc_hub::client::http_request(
        url,
        "POST",
        "/v1/messages",
        Some(body.to_string().as_bytes()),
        &[],
        Duration::from_secs(30),
    )
    .map(|r| r.status)
    .unwrap_or(0)
}

#[test]
fn absurd_lengths_leak_no_descriptors_or_threads() {
    // Defect: each request declaring more than 64 MiB leaked a descriptor
    // and a thread for good (2,000 of them: 4,012 fds, 2,029 threads).
    let s = Site::new();
    let hub = Foreground::start(s.path(), s.port, "arc.sqlite3", &["--no-relay"]);
    let pid = hub.child.id();
    let Some(fds_before) = fd_count(pid) else {
        eprintln!("skipping: no /proc here");
        return;
    };
    let threads_before = status_kb(pid, "Threads:").unwrap();
    let req = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 100000000\r\n\r\nxyz",
        s.port
    );
    for _ in 0..200 {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let r = arc_hub::client::read_response(&mut c, false).unwrap();
        assert_eq!(r.status, 400);
    }
    eventually(
        Duration::from_secs(20),
        "descriptors and threads back",
        || {
            let fds = fd_count(pid)?;
            let threads = status_kb(pid, "Threads:")?;
            (fds <= fds_before + 4 && threads <= threads_before + 4).then_some(())
        },
    );
}

#[test]
fn large_bodies_and_slow_streams_keep_memory_flat() {
    // Defects: 16 concurrent 60 MB bodies were each drained into one
    // allocation (403 MB); 40 SSE clients that never read, with 300 posts
    // of 60 KB, took the hub to 1.2 GB.
    let s = Site::new();
    let hub = Foreground::start(s.path(), s.port, "arc.sqlite3", &["--no-relay"]);
    let pid = hub.child.id();
    if status_kb(pid, "VmHWM:").is_none() {
        eprintln!("skipping: no /proc here");
        return;
    }
    let port = s.port;
    let senders: Vec<_> = (0..16)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let head = format!(
                    "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 60000000\r\n\r\n"
                );
                let _ = c.write_all(head.as_bytes());
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..60 {
                    if c.write_all(&chunk).is_err() {
                        break;
                    }
                }
                arc_hub::client::read_response(&mut c, false).map(|r| r.status).ok()
            })
        })
        .collect();
    for t in senders {
        assert!(matches!(t.join().unwrap(), Some(400) | None));
    }
    let mut slow = Vec::new();
    for i in 0..40 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(
            format!("GET /v1/stream?agent_id=slow{i} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        slow.push(c); // never read
    }
    let blob = "b".repeat(60_000);
    let url = s.url();
    for i in 0..300 {
        assert_eq!(
            post(
                &url,
                json!({"from_agent": "p", "body": format!("{i} {blob}")})
            ),
            201
        );
    }
    let peak_mb = status_kb(pid, "VmHWM:").unwrap() / 1024;
    eprintln!("peak RSS of the hub: {peak_mb} MB");
    assert!(peak_mb < 200, "peak RSS {peak_mb} MB");
    drop(slow);
}

#[test]
fn parsed_bodies_stay_within_the_parse_budget() {
    // Defect: a parsed body costs many times its text (each number is a
    // heap string), with no bound: ten concurrent 8 MB bodies of short
    // values took the hub past 3.9 GB. Now the shape of a body is capped
    // before parsing and large bodies share a parse budget (busy: 503).
    let s = Site::new();
    let hub = Foreground::start(s.path(), s.port, "arc.sqlite3", &["--no-relay"]);
    let pid = hub.child.id();
    if status_kb(pid, "VmHWM:").is_none() {
        eprintln!("skipping: no /proc here");
        return;
    }
    // The worst body inside every limit: 32 attachments, each of 8,000
    // thirty-digit numbers (256,000 values, 7.9 MB).
    let numbers = format!("[{}]", vec!["1".repeat(30); 8000].join(","));
    let attachment = format!(r#"{{"type":"json","content":{numbers}}}"#);
    let body = format!(
        r#"{{"from_agent":"p","body":"x","attachments":[{}]}}"#,
        vec![attachment; 32].join(",")
    );
    let body = std::sync::Arc::new(body);
    let url = s.url();
    let senders: Vec<_> = (0..10)
        .map(|_| {
            let (body, url) = (body.clone(), url.clone());
            std::thread::spawn(move || {
                arc_hub::client::http_request(
                    &url,
                    "POST",
                    "/v1/messages",
                    Some(body.as_bytes()),
                    &[],
                    Duration::from_secs(120),
                )
                .map(|r| r.status)
                .unwrap_or(0)
            })
        })
        .collect();
    let statuses: Vec<u16> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| [201, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&201), "{statuses:?}");
    let peak_mb = status_kb(pid, "VmHWM:").unwrap() / 1024;
    eprintln!("peak RSS of the hub: {peak_mb} MB, answers {statuses:?}");
    assert!(peak_mb < 600, "peak RSS {peak_mb} MB");
}

#[test]
fn reset_refuses_a_database_that_a_running_hub_holds() {
    // Defect: `arc reset --port <another port>` deleted the database of a
    // hub that was still serving it (its pidfile was gone); that hub went
    // on acknowledging writes into the deleted file.
    let s = Site::new();
    let hub = Foreground::start(s.path(), s.port, "arc.sqlite3", &["--no-relay"]);
    assert_eq!(
        post(&s.url(), json!({"from_agent": "a", "body": "keep me"})),
        201
    );
    eventually(Duration::from_secs(10), "the pidfile", || {
        s.pidfile().exists().then_some(())
    });
    std::fs::remove_file(s.pidfile()).unwrap();
    let other = crate::lifecycle::free_port().to_string();
    let (rc, v) = s.arc_json(&["reset", "--port", &other]);
    assert_eq!((rc, v["reset"].clone()), (1, json!(false)), "{v}");
    assert!(v["error"].as_str().unwrap().contains("still open"), "{v}");
    assert!(s.path().join("arc.sqlite3").exists());
    assert_eq!(
        post(&s.url(), json!({"from_agent": "a", "body": "still here"})),
        201
    );
    drop(hub); // killed
    eventually(Duration::from_secs(10), "the hub to let go", || {
        let (rc, v) = s.arc_json(&["reset", "--port", &other]);
        (rc == 0 && v["reset"] == json!(true)).then_some(())
    });
    assert!(!s.path().join("arc.sqlite3").exists());
}

#[test]
fn reset_force_deletes_even_while_held() {
    let s = Site::new();
    let hub = Foreground::start(s.path(), s.port, "arc.sqlite3", &["--no-relay"]);
    eventually(Duration::from_secs(10), "the pidfile", || {
        s.pidfile().exists().then_some(())
    });
    std::fs::remove_file(s.pidfile()).unwrap();
    let other = crate::lifecycle::free_port().to_string();
    let (rc, v) = s.arc_json(&["reset", "--port", &other, "--force"]);
    assert_eq!((rc, v["reset"].clone()), (0, json!(true)), "{v}");
    // ... and the hub that still runs refuses to acknowledge writes now.
    let status = post(
        &s.url(),
        json!({"from_agent": "a", "body": "into the void"}),
    );
    assert_eq!(status, 503);
    drop(hub);
}

/// A process that is not a hub, killed on drop.
struct Bystander(std::process::Child);

impl Bystander {
    fn start() -> Bystander {
        Bystander(
            Command::new("sleep")
                .arg("60")
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn stop_with_a_pidfile_that_names_a_stranger_never_signals_it() {
    // Defect: `.arc.pid` named a pid now used by an unrelated `sleep`;
    // `arc stop` stopped the hub over HTTP, waited 15 s for the stale pid,
    // then sent SIGTERM to the `sleep`, which died.
    if cfg!(windows) {
        return;
    }
    let s = Site::new();
    let (rc, v) = s.arc_json(&["ensure", "--port", &s.port_arg()]);
    assert_eq!(rc, 0, "{v}");
    let stranger = Bystander::start();
    arc_hub::paths::write_pidfile(&s.pidfile(), stranger.0.id(), s.port, &s.url()).unwrap();
    let start = Instant::now();
    let (rc, v) = s.arc_json(&["stop", "--port", &s.port_arg()]);
    assert_eq!((rc, v["stopped"].clone()), (0, json!(true)), "{v}");
    assert!(v["note"].as_str().unwrap().contains("stale pidfile"), "{v}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        arc_hub::sys::pid_alive(stranger.0.id()),
        "the unrelated process must survive"
    );
    assert!(!s.pidfile().exists(), "the stale pidfile is removed");
}

#[test]
fn reset_with_a_pidfile_that_names_a_stranger_never_signals_it() {
    if cfg!(windows) {
        return;
    }
    let s = Site::new();
    let (rc, _) = s.arc_json(&["ensure", "--port", &s.port_arg()]);
    assert_eq!(rc, 0);
    let stranger = Bystander::start();
    arc_hub::paths::write_pidfile(&s.pidfile(), stranger.0.id(), s.port, &s.url()).unwrap();
    let (rc, v) = s.arc_json(&["reset", "--port", &s.port_arg()]);
    assert_eq!((rc, v["reset"].clone()), (0, json!(true)), "{v}");
    assert!(arc_hub::sys::pid_alive(stranger.0.id()));
}

#[test]
fn mcp_stops_soon_after_stdin_closes_during_a_long_call() {
    // Defect: with stdin closed while `arc_rpc_call` to nobody waited out
    // a huge timeout, the server kept running for as long as the timeout.
    let h = crate::support::TestHub::start();
    let mut child = Command::new(ARC)
        .args(["mcp", "--agent", "caller", "--base-url", &h.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "arc_rpc_call", "arguments": {"to_agent": "nobody", "body": "hello?", "timeout": 3600}}}),
    ];
    for l in lines {
        stdin.write_all(format!("{l}\n").as_bytes()).unwrap();
    }
    stdin.flush().unwrap();
    // Wait until the call is in flight at the hub (the request is posted).
    eventually(
        Duration::from_secs(10),
        "the rpc request to be posted",
        || {
            let r = h.get("/v1/inbox/nobody");
            (!r.result().as_array().unwrap().is_empty()).then_some(())
        },
    );
    let start = Instant::now();
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    let _ = child.wait();
    let mut out = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    assert!(status.is_some(), "still running 10 s after stdin closed");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn a_parked_long_poll_costs_one_thread_its_connections() {
    // Each parked long-poll waits on its connection's own thread, which
    // would only wait for the answer anyway: no second thread per request
    // (two per request made 1,000 parked long-polls cost 73 MB).
    let s = Site::new();
    let hub = Foreground::start(s.path(), s.port, "arc.sqlite3", &["--no-relay"]);
    let pid = hub.child.id();
    let Some(before) = status_kb(pid, "Threads:") else {
        eprintln!("skipping: no /proc here");
        return;
    };
    let n = 100;
    let polls: Vec<TcpStream> = (0..n)
        .map(|i| {
            let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            write!(
                c,
                "GET /v1/events?agent_id=p{i}&since_id=999999&timeout=20 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
                s.port
            )
            .unwrap();
            c
        })
        .collect();
    // Every connection has its thread once the count reaches before + n;
    // a parked request that took a second thread would add it at once,
    // so the count must then hold still (checked over 300 ms).
    eventually(Duration::from_secs(20), "a thread per connection", || {
        (status_kb(pid, "Threads:")? >= before + n as u64).then_some(())
    });
    let settled = |t: u64| {
        std::thread::sleep(Duration::from_millis(300));
        (status_kb(pid, "Threads:")? == t).then_some(t)
    };
    eventually(
        Duration::from_secs(20),
        "the thread count to settle",
        || settled(status_kb(pid, "Threads:")?),
    );
    let during = status_kb(pid, "Threads:").unwrap();
    assert!(
        during <= before + n as u64 + 8,
        "{before} threads before, {during} with {n} parked long-polls"
    );
    drop(polls);
}
