//! The real `arc` binary: ensure, stop, reset, post, poll, whoami, signals
//! and flags (docs/PROTOCOL.md, "CLI"). Each test has its own temp dir and port, and a
//! guard that always stops what it started.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{TempDir, eventually};

pub(crate) const ARC: &str = env!("CARGO_BIN_EXE_arc");

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A temp dir and a port; stops any hub found there on drop.
pub(crate) struct Site {
    dir: TempDir,
    pub(crate) port: u16,
}

impl Site {
    pub(crate) fn new() -> Site {
        Site {
            dir: TempDir::new("bin"),
            port: free_port(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs `arc` with `args` in the site's directory, no stdin.
    pub(crate) fn arc(&self, args: &[&str]) -> Output {
        let out = Command::new(ARC)
            .args(args)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .output()
            .expect("run arc");
        eprintln!(
            "$ arc {}\n[rc={:?}]\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub(crate) fn arc_json(&self, args: &[&str]) -> (i32, Value) {
        let out = self.arc(args);
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), v)
    }

    pub(crate) fn port_arg(&self) -> String {
        self.port.to_string()
    }

    pub(crate) fn pidfile(&self) -> PathBuf {
        std::fs::canonicalize(self.path()).unwrap().join(".arc.pid")
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        arc_hub::paths::read_pidfile(&self.pidfile()).map(|i| i.pid)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let info = arc_hub::paths::read_pidfile(&self.pidfile());
        let _ = Command::new(ARC)
            .args(["stop", "--port", &self.port.to_string()])
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Only a pid whose pidfile URL still answers as a hub is signalled.
        if let Some(info) = info {
            let is_hub = matches!(
                arc_hub::lifecycle::probe(&info.url),
                arc_hub::lifecycle::Probe::Hub { .. }
            );
            if is_hub && arc_hub::sys::pid_alive(info.pid) {
                let _ = arc_hub::sys::terminate(info.pid);
            }
        }
    }
}

/// A foreground hub process, killed on drop.
pub(crate) struct Foreground {
    pub(crate) child: Child,
    port: u16,
}

impl Foreground {
    pub(crate) fn start(dir: &Path, port: u16, storage: &str, extra: &[&str]) -> Foreground {
        let mut child = Command::new(ARC)
            .args(["--port", &port.to_string(), "--storage", storage])
            .args(extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.contains("listening on"), "first line: {line:?}");
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = out.read_to_string(&mut rest);
            eprintln!("[hub stdout]\n{rest}");
        });
        Foreground { child, port }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(url: &str, path: &str) -> Value {
    arc_hub::client::http_request(url, "GET", path, None, &[], Duration::from_secs(30))
        .unwrap()
        .json()
}

#[test]
fn ensure_is_idempotent_and_stop_and_reset_clean_up() {
    let s = Site::new();
    let p = s.port_arg();
    let (rc, v) = s.arc_json(&["ensure", "--port", &p, "--timeout", "20"]);
    assert_eq!(
        (rc, v["running"].clone(), v["started"].clone()),
        (0, Value::Bool(true), Value::Bool(true))
    );
    assert_eq!(v["url"], s.url());
    let (rc, v) = s.arc_json(&["ensure", "--port", &p]);
    assert_eq!(
        (rc, v["started"].clone()),
        (0, Value::Bool(false)),
        "second ensure reports started: false"
    );
    let pid = s.pid().expect("pidfile written");
    let text = std::fs::read_to_string(s.pidfile()).unwrap();
    assert_eq!(
        text,
        format!(r#"{{"pid": {pid}, "port": {p}, "url": "http://127.0.0.1:{p}"}}"#)
    );

    let (rc, v) = s.arc_json(&["stop", "--port", &p]);
    assert_eq!(rc, 0);
    assert_eq!(
        v,
        serde_json::json!({"stopped": true, "pid": pid, "url": s.url()})
    );
    assert!(
        !arc_hub::sys::pid_alive(pid),
        "stop waits for the process to exit"
    );
    assert!(!s.pidfile().exists(), "pidfile removed");
    let (rc, v) = s.arc_json(&["stop", "--port", &p]);
    assert_eq!(
        (rc, v),
        (
            1,
            serde_json::json!({"stopped": false, "error": "no running hub found"})
        )
    );

    s.arc_json(&["ensure", "--port", &p, "--timeout", "20"]);
    let db = s.path().join("arc.sqlite3");
    assert!(db.exists());
    let (rc, v) = s.arc_json(&["reset", "--port", &p]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["reset"], true);
    assert!(
        v["removed"]
            .as_array()
            .unwrap()
            .contains(&Value::from("arc.sqlite3"))
    );
    assert!(!db.exists());
    for suffix in ["-wal", "-shm"] {
        assert!(!s.path().join(format!("arc.sqlite3{suffix}")).exists());
    }
    let (rc, v) = s.arc_json(&["reset", "--port", &p]);
    assert_eq!(
        (rc, v),
        (
            0,
            serde_json::json!({"reset": true, "note": "database did not exist"})
        )
    );
}

#[test]
fn post_poll_and_whoami_round_trip() {
    let s = Site::new();
    let p = s.port_arg();
    let url = s.url();
    s.arc_json(&["ensure", "--port", &p, "--timeout", "20"]);
    let (rc, msg) = s.arc_json(&[
        "post",
        "--agent",
        "alice",
        "--base-url",
        &url,
        "--thread-id",
        "t1",
        "hello bob",
    ]);
    assert_eq!(rc, 0);
    assert_eq!(
        (
            msg["from_agent"].clone(),
            msg["body"].clone(),
            msg["thread_id"].clone()
        ),
        ("alice".into(), "hello bob".into(), "t1".into())
    );
    let out = s.arc(&[
        "post",
        "--agent",
        "alice",
        "--base-url",
        &url,
        "--to",
        "bob",
        "--kind",
        "task",
        "--channel",
        "ignored",
        "do it",
    ]);
    let dm: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            dm["channel"].clone(),
            dm["to_agent"].clone(),
            dm["kind"].clone()
        ),
        ("direct".into(), "bob".into(), "task".into())
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("{\n  \"id\": "),
        "2-space JSON in the reference's key order: {text}"
    );

    let out = s.arc(&[
        "poll",
        "--agent",
        "bob",
        "--base-url",
        &url,
        "--timeout",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "history replayed from --since-id 0, one JSON per line"
    );
    assert_eq!(lines[1]["to_agent"], "bob");
    let out = s.arc(&[
        "poll",
        "--agent",
        "alice",
        "--base-url",
        &url,
        "--timeout",
        "0",
    ]);
    assert!(out.stdout.is_empty(), "own messages excluded by default");
    let out = s.arc(&[
        "poll",
        "--agent",
        "alice",
        "--base-url",
        &url,
        "--timeout",
        "0",
        "--include-self",
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);

    let (rc, who) = s.arc_json(&["whoami", "--agent", "carol", "--base-url", &url]);
    assert_eq!(rc, 0);
    assert_eq!(who["agent_id"], "carol");
    assert_eq!(
        who["session"]["agent_id"], "carol",
        "whoami produces a session"
    );
    assert!(who["live_agents"].as_array().unwrap().len() >= 3);
}

#[test]
fn cli_commands_do_not_evict_a_live_agent() {
    let s = Site::new();
    let p = s.port_arg();
    let url = s.url();
    s.arc_json(&["ensure", "--port", &p, "--timeout", "20"]);
    let reg = arc_hub::client::http_request(
        &url,
        "POST",
        "/v1/sessions",
        Some(br#"{"agent_id":"dev","display_name":"Dev Bot","capabilities":["rust"]}"#),
        &[],
        Duration::from_secs(10),
    )
    .unwrap()
    .json();
    let sid = reg["result"]["session_id"].clone();
    s.arc(&[
        "post",
        "--agent",
        "dev",
        "--base-url",
        &url,
        "from the shell",
    ]);
    s.arc(&[
        "poll",
        "--agent",
        "dev",
        "--base-url",
        &url,
        "--timeout",
        "0",
    ]);
    let agents = get(&url, "/v1/agents");
    let dev = agents["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "dev")
        .unwrap()
        .clone();
    assert_eq!(dev["session_id"], sid, "same session");
    assert_eq!(dev["display_name"], "Dev Bot");
    assert_eq!(dev["capabilities"], serde_json::json!(["rust"]));
}

#[test]
fn poll_from_now_and_cursor_file_make_a_shell_loop_work() {
    let s = Site::new();
    let p = s.port_arg();
    let url = s.url();
    s.arc_json(&["ensure", "--port", &p, "--timeout", "20"]);
    for i in 0..3 {
        s.arc(&[
            "post",
            "--agent",
            "alice",
            "--base-url",
            &url,
            &format!("old {i}"),
        ]);
    }
    let out = s.arc(&[
        "poll",
        "--agent",
        "bob",
        "--base-url",
        &url,
        "--timeout",
        "0",
        "--from-now",
    ]);
    assert!(out.stdout.is_empty(), "--from-now skips history");
    let cursor = s.path().join("bob.cursor");
    let cf = cursor.to_str().unwrap();
    let first = s.arc(&[
        "poll",
        "--agent",
        "bob",
        "--base-url",
        &url,
        "--timeout",
        "0",
        "--cursor-file",
        cf,
    ]);
    assert_eq!(String::from_utf8(first.stdout).unwrap().lines().count(), 3);
    assert_eq!(std::fs::read_to_string(&cursor).unwrap(), "3");
    let again = s.arc(&[
        "poll",
        "--agent",
        "bob",
        "--base-url",
        &url,
        "--timeout",
        "0",
        "--cursor-file",
        cf,
    ]);
    assert!(
        again.stdout.is_empty(),
        "the loop does not print the same messages again"
    );
    s.arc(&["post", "--agent", "alice", "--base-url", &url, "new"]);
    let next = s.arc(&[
        "poll",
        "--agent",
        "bob",
        "--base-url",
        &url,
        "--timeout",
        "5",
        "--cursor-file",
        cf,
    ]);
    let lines: Vec<String> = String::from_utf8(next.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("\"body\": \"new\""), "{lines:?}");
}

#[test]
fn ensure_recovers_from_a_crash_with_a_stale_pidfile() {
    let s = Site::new();
    let p = s.port_arg();
    s.arc_json(&["ensure", "--port", &p, "--timeout", "20"]);
    let pid = s.pid().unwrap();
    #[cfg(unix)]
    // SAFETY: SIGKILL to the hub this test started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    #[cfg(not(unix))]
    arc_hub::sys::terminate(pid).unwrap();
    eventually(Duration::from_secs(10), "crashed hub gone", || {
        (!arc_hub::sys::pid_alive(pid)).then_some(())
    });
    assert!(s.pidfile().exists(), "a crash leaves the pidfile behind");
    let (rc, v) = s.arc_json(&["ensure", "--port", &p, "--timeout", "20"]);
    assert_eq!((rc, v["started"].clone()), (0, Value::Bool(true)), "{v}");
    assert_ne!(s.pid().unwrap(), pid, "a new hub wrote its own pidfile");
}

#[test]
fn ensure_with_a_bad_storage_path_fails_fast_and_shows_why() {
    let s = Site::new();
    let p = s.port_arg();
    std::fs::create_dir_all(s.path().join("db-is-a-dir")).unwrap();
    let start = Instant::now();
    let (rc, v) = s.arc_json(&[
        "ensure",
        "--port",
        &p,
        "--storage",
        "db-is-a-dir",
        "--timeout",
        "30",
    ]);
    assert_eq!(rc, 1);
    assert_eq!(
        (v["running"].clone(), v["started"].clone()),
        (Value::Bool(false), Value::Bool(true))
    );
    let err = v["error"].as_str().unwrap();
    assert!(err.starts_with("child exited rc=1"), "{err}");
    assert!(
        err.contains("storage path is a directory"),
        "the child's stderr is shown: {err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "returns when the child dies, not at the timeout"
    );
}

#[test]
fn flags_work_before_or_after_the_subcommand() {
    let s = Site::new();
    let p = s.port_arg();
    let (rc, v) = s.arc_json(&["--port", &p, "ensure", "--timeout", "20"]);
    assert_eq!((rc, v["url"].clone()), (0, Value::from(s.url())));
    let (rc, v) = s.arc_json(&["--port", &p, "stop"]);
    assert_eq!((rc, v["stopped"].clone()), (0, Value::Bool(true)));
}

#[test]
fn ensure_reports_a_port_held_by_something_else() {
    let s = Site::new();
    let listener = TcpListener::bind(("127.0.0.1", s.port)).unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..4 {
            let Ok((mut c, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = c.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            );
        }
    });
    let (rc, v) = s.arc_json(&["ensure", "--port", &s.port_arg(), "--timeout", "5"]);
    assert_eq!(rc, 1);
    assert_eq!(v["started"], false);
    assert!(
        v["error"].as_str().unwrap().contains("not an Arc hub"),
        "{v}"
    );
    drop(server);
}

#[test]
fn stop_never_signals_an_unverified_pid() {
    let s = Site::new();
    let mut bystander = Command::new(if cfg!(windows) { "ping" } else { "sleep" })
        .args(if cfg!(windows) {
            &["-n", "30", "127.0.0.1"][..]
        } else {
            &["30"][..]
        })
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pidfile = s.path().join(".arc.pid");
    arc_hub::paths::write_pidfile(&pidfile, bystander.id(), s.port, &s.url()).unwrap();
    let (rc, v) = s.arc_json(&["stop", "--port", &s.port_arg()]);
    assert_eq!(
        (rc, v["error"].clone()),
        (1, Value::from("no running hub found"))
    );
    assert!(
        arc_hub::sys::pid_alive(bystander.id()),
        "the unrelated process lives"
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
}

#[test]
fn an_unreachable_hub_names_the_url_and_suggests_ensure() {
    let s = Site::new();
    let url = s.url();
    let out = s.arc(&["post", "--agent", "a", "--base-url", &url, "hi"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("arc error: connection error: "), "{text}");
    assert!(text.contains(&url) && text.contains("arc ensure"), "{text}");
}

#[test]
fn version_help_and_usage_errors() {
    let s = Site::new();
    let v = s.arc(&["--version"]);
    assert_eq!(
        String::from_utf8(v.stdout).unwrap().trim(),
        format!("arc {}", env!("CARGO_PKG_VERSION"))
    );
    for cmd in [
        "ensure",
        "stop",
        "reset",
        "post",
        "poll",
        "whoami",
        "relay",
        "mcp",
        "smoke-agent",
    ] {
        let h = s.arc(&[cmd, "--help"]);
        assert_eq!(h.status.code(), Some(0), "{cmd}");
        assert!(
            String::from_utf8(h.stdout).unwrap().contains("usage:"),
            "{cmd}"
        );
    }
    let bad = s.arc(&["ensure", "--no-such-flag"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8(bad.stderr).unwrap();
    assert!(
        err.contains("unexpected flag --no-such-flag") && err.contains("usage: arc"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_stops_gracefully_and_answers_parked_polls() {
    let s = Site::new();
    let hub = Foreground::start(s.path(), s.port, "arc.sqlite3", &[]);
    let url = hub.url();
    let poll = std::thread::spawn(move || {
        arc_hub::client::http_request(
            &url,
            "GET",
            "/v1/events?agent_id=w&timeout=60",
            None,
            &[],
            Duration::from_secs(90),
        )
        .unwrap()
    });
    std::thread::sleep(Duration::from_millis(300));
    let pid = hub.child.id();
    // SAFETY: SIGTERM to the hub this test started.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let mut hub = hub;
    let status = eventually(Duration::from_secs(15), "hub exit", || {
        hub.child.try_wait().unwrap()
    });
    assert!(status.success(), "{status:?}");
    let answered = poll.join().unwrap();
    assert_eq!(
        answered.status, 200,
        "the parked poll was answered, not cut"
    );
    assert!(!s.pidfile().exists(), "pidfile removed");
    assert!(
        !s.path().join("arc.sqlite3-wal").exists(),
        "database closed cleanly"
    );
}

#[test]
fn two_hub_processes_share_one_file() {
    let s = Site::new();
    let a = Foreground::start(s.path(), s.port, "shared.sqlite3", &[]);
    let b = Foreground::start(s.path(), free_port(), "shared.sqlite3", &[]);
    let b_url = b.url();
    let waiter = std::thread::spawn(move || get(&b_url, "/v1/events?agent_id=bob&timeout=30"));
    std::thread::sleep(Duration::from_millis(300));
    let posted = arc_hub::client::http_request(
        &a.url(),
        "POST",
        "/v1/messages",
        Some(br#"{"from_agent":"alice","body":"via A"}"#),
        &[],
        Duration::from_secs(10),
    )
    .unwrap()
    .json();
    let seen = waiter.join().unwrap();
    assert_eq!(seen["result"][0]["id"], posted["result"]["id"]);
    let info_a = get(&a.url(), "/v1/hub-info");
    let info_b = get(&b.url(), "/v1/hub-info");
    assert_eq!(
        info_a["result"]["instance_id"], info_b["result"]["instance_id"],
        "same file, same path, same fingerprint"
    );
}

#[test]
fn ensure_with_port_zero_reports_the_real_port() {
    let s = Site::new();
    let (rc, v) = s.arc_json(&["ensure", "--port", "0", "--timeout", "20"]);
    assert_eq!(rc, 0, "{v}");
    let url = v["url"].as_str().unwrap().to_string();
    assert!(!url.ends_with(":0"));
    assert_eq!(get(&url, "/v1/hub-info")["ok"], true);
    let port = url.rsplit(':').next().unwrap();
    let (rc, _) = s.arc_json(&["stop", "--port", port]);
    assert_eq!(rc, 0);
}

/// The README's quickstart block, run command by command against a fresh
/// port (ensure/stop get `--port`, the agent commands `--base-url`).
#[test]
fn the_readme_quickstart_works_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let block = readme
        .split("<!-- quickstart:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- quickstart:end -->").next())
        .expect("README has a quickstart block");
    let commands: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("arc "))
        .collect();
    assert!(commands.len() >= 5, "{commands:?}");
    let s = Site::new();
    let p = s.port_arg();
    let url = s.url();
    for line in commands {
        let mut args = split_shell(line.strip_prefix("arc ").unwrap());
        match args.first().map(String::as_str) {
            Some("ensure" | "stop" | "reset") => args.extend(["--port".to_string(), p.clone()]),
            Some("post" | "poll" | "whoami") => {
                args.extend(["--base-url".to_string(), url.clone()])
            }
            _ => {}
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = s.arc(&refs);
        assert_eq!(out.status.code(), Some(0), "README command failed: {line}");
    }
}

/// Splits a simple shell line (double or single quotes, no escapes).
fn split_shell(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, '#') if cur.is_empty() && !any => break,
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[test]
fn the_first_hub_info_answer_already_lists_the_relay() {
    // Regression: the relay used to start after the listener served its
    // first request, so a client probing right away saw no `relay`.
    let s = Site::new();
    let fg = Foreground::start(s.path(), s.port, "arc.sqlite3", &["--no-relay"]);
    let info = get(&fg.url(), "/v1/hub-info");
    assert!(
        !info["result"]["features"]
            .as_array()
            .unwrap()
            .contains(&"relay".into()),
        "{info}"
    );
    drop(fg);
    let port = free_port();
    let fg = Foreground::start(s.path(), port, "arc.sqlite3", &[]);
    // The line after "listening on" names the relay; by then the first
    // request may not even have been made, yet the feature must be there.
    let info = get(&fg.url(), "/v1/hub-info");
    assert!(
        info["result"]["features"]
            .as_array()
            .unwrap()
            .contains(&"relay".into()),
        "{info}"
    );
    assert!(s.path().join(".arc-relay/requests").is_dir());
}
