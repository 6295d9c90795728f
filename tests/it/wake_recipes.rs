//! The `arc watch` recipes of docs/WAKE.md, run as written there: each
//! `<!-- recipe: NAME -->` block's command line runs against a real hub,
//! with stand-ins for the harness (a fake `codex` and `notify-send` on
//! `PATH`, a loopback listener for OpenCode) and a real tmux.

#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TempDir, TestHub};

const LIMIT: Duration = Duration::from_secs(20);

/// The command line of recipe `name` in docs/WAKE.md.
fn recipe(name: &str) -> String {
    let doc = include_str!("../../docs/WAKE.md");
    let marker = format!("<!-- recipe: {name} -->");
    let at = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/WAKE.md has no recipe {name}"));
    let rest = &doc[at + marker.len()..];
    let block = rest
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .unwrap_or_else(|| panic!("recipe {name} has no sh block"));
    let line = block.trim();
    assert!(line.starts_with("arc watch "), "{line}");
    assert!(!line.contains('\n'), "one command line: {line}");
    line.to_string()
}

/// A bin dir with `arc` (the binary under test) and the given stand-ins,
/// each of which records its arguments, one per line, to `<name>.args`.
fn bin_dir(tmp: &Path, fakes: &[&str]) -> std::path::PathBuf {
    let bin = tmp.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_arc"), bin.join("arc")).unwrap();
    for f in fakes {
        let path = bin.join(f);
        let log = tmp.join(format!("{f}.args"));
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{}.tmp'\nmv '{}.tmp' '{}'\n",
                log.display(),
                log.display(),
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// Starts the recipe against `hub`, with `env` set; `exec` makes the
/// shell's pid the watcher's, so it can be killed by that pid.
fn start(name: &str, hub: &TestHub, bin: &Path, env: &[(&str, String)]) -> Child {
    let line = format!("exec {} --base-url {}", recipe(name), hub.url);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(line)
        .env("PATH", path)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("the recipe starts")
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Registers bob and posts him a DM from alice; returns its id.
fn dm_bob(hub: &TestHub) -> i64 {
    hub.register("bob");
    let r = hub.post(
        "/v1/messages",
        json!({"from_agent": "alice", "to_agent": "bob", "channel": "direct", "body": "review src/a.rs"}),
    );
    r.result()["id"].as_i64().unwrap()
}

fn surfaced_mark(hub: &TestHub) -> i64 {
    hub.get("/v1/agents/bob/pending").result()["marks"]["surfaced"]
        .as_i64()
        .unwrap()
}

#[test]
fn the_codex_recipe_queues_a_turn_naming_the_message() {
    let hub = TestHub::start();
    let tmp = TempDir::new("recipe-codex");
    let bin = bin_dir(tmp.path(), &["codex"]);
    let id = dm_bob(&hub);
    let child = start("codex", &hub, &bin, &[("CODEX_THREAD", "thr-1".into())]);
    let args_file = tmp.path().join("codex.args");
    let args = wait_for("codex queue to run", || {
        std::fs::read_to_string(&args_file).ok()
    });
    wait_for("the batch to be marked surfaced", || {
        (surfaced_mark(&hub) == id).then_some(())
    });
    stop(child);
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(
        &args[..4],
        ["queue", "--thread", "thr-1", "--message"],
        "{args:?}"
    );
    assert!(
        args[4].contains(&format!("newest #{id} from alice")),
        "{args:?}"
    );
    assert!(args[4].contains("arc poll --agent bob"), "{args:?}");
}

#[test]
fn the_notification_recipe_names_the_count_and_sender() {
    let hub = TestHub::start();
    let tmp = TempDir::new("recipe-notify");
    let bin = bin_dir(tmp.path(), &["notify-send"]);
    let id = dm_bob(&hub);
    let child = start("notify", &hub, &bin, &[]);
    let args_file = tmp.path().join("notify-send.args");
    let args = wait_for("notify-send to run", || {
        std::fs::read_to_string(&args_file).ok()
    });
    stop(child);
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(args[0], "Arc");
    assert_eq!(
        args[1],
        format!("1 new message(s) for bob, newest #{id} from alice")
    );
}

#[test]
fn the_opencode_recipe_posts_prompt_async_with_a_text_part() {
    let hub = TestHub::start();
    let tmp = TempDir::new("recipe-opencode");
    let bin = bin_dir(tmp.path(), &[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let id = dm_bob(&hub);
    let child = start(
        "opencode",
        &hub,
        &bin,
        &[("OPENCODE_URL", url), ("OPENCODE_SESSION", "ses_1".into())],
    );
    listener.set_nonblocking(true).unwrap();
    let (mut conn, _) = wait_for("curl to connect", || listener.accept().ok());
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        .unwrap();
    drop(conn);
    wait_for("the batch to be marked surfaced", || {
        (surfaced_mark(&hub) == id).then_some(())
    });
    stop(child);
    assert!(
        head.starts_with("POST /session/ses_1/prompt_async HTTP/1.1"),
        "{head}"
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["parts"][0]["type"], "text");
    let text = v["parts"][0]["text"].as_str().unwrap();
    assert!(text.contains(&format!("newest #{id} from alice")), "{text}");
}

#[test]
fn the_tmux_recipe_types_the_text_and_then_enter() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is not installed: the tmux recipe of docs/WAKE.md cannot be checked");
    }
    let hub = TestHub::start();
    let tmp = TempDir::new("recipe-tmux");
    let bin = bin_dir(tmp.path(), &[]);
    let socket = tmp.path().join("tmux.sock");
    let out = tmp.path().join("typed.txt");
    // The pane reads one line: it ends only if Enter arrived after the text.
    let pane = format!("read line; printf '%s' \"$line\" > '{}'", out.display());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(args)
            .status()
            .expect("tmux runs")
    };
    assert!(
        tmux(&[
            "new-session",
            "-d",
            "-s",
            "arc",
            "-x",
            "200",
            "-y",
            "20",
            &pane
        ])
        .success()
    );
    // The recipe's tmux must use our private server: a wrapper adds -S.
    let wrapper = bin.join("tmux");
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v tmux"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} -S '{}' \"$@\"\n",
            real.trim(),
            socket.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let id = dm_bob(&hub);
    let child = start("tmux", &hub, &bin, &[("TMUX_TARGET", "arc:0".into())]);
    let typed = wait_for("the pane to read a line", || {
        std::fs::read_to_string(&out).ok().filter(|s| !s.is_empty())
    });
    wait_for("the batch to be marked surfaced", || {
        (surfaced_mark(&hub) == id).then_some(())
    });
    stop(child);
    let _ = tmux(&["kill-server"]);
    assert!(typed.starts_with("Arc: 1 new message(s)"), "{typed}");
    assert!(
        typed.contains(&format!("newest #{id} from alice")),
        "{typed}"
    );
}
