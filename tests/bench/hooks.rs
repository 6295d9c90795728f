//! `arc hook`, as a harness runs it: a fresh process per event, reading
//! a recorded event on stdin. (a) A Claude Code `Stop` hook parked on the
//! hub, from the POST of a DM to the hook's exit 2; (b) a context hook's
//! whole run (spawn to exit) with nothing pending; (c) the same with one
//! message pending.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arc_hub::client::{http_request, read_response};

use crate::common::*;

fn event(harness: &str, name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hooks")
        .join(harness)
        .join(format!("{name}.json"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Starts `arc hook ARGS` with `stdin` written and closed.
fn spawn_hook(cwd: &Path, args: &[&str], stdin: &[u8]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arc"))
        .arg("hook")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn arc hook");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin).unwrap();
    drop(pipe);
    child
}

fn register(hub: &Hub, agent: &str) {
    let body = format!(r#"{{"agent_id":"{agent}","replace":true}}"#);
    let r = http_request(
        &hub.url,
        "POST",
        "/v1/sessions",
        Some(body.as_bytes()),
        &[],
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(r.status, 201);
}

pub fn run(dir: &Path, quick: bool) {
    let cwd = dir.join("hooks");
    let hub = Hub::spawn(&cwd, &dir.join("hooks.sqlite3"), &[]);
    register(&hub, "hk-stop");
    register(&hub, "hk-ctx");
    stop_latency(&hub, &cwd, if quick { 50 } else { 200 });
    let n = if quick { 100 } else { 300 };
    context_runs(&hub, &cwd, n, false);
    context_runs(&hub, &cwd, n, true);
}

/// (a) A parked `Stop` hook woken by a DM: POST sent .. hook exited 2.
fn stop_latency(hub: &Hub, cwd: &Path, rounds: usize) {
    let stop = event("claude-code", "Stop");
    let args = [
        "claude-code",
        "--agent",
        "hk-stop",
        "--base-url",
        &hub.url,
        "--max-wait",
        "60",
    ];
    let mut samples = Vec::new();
    for round in 0..rounds {
        let mut child = spawn_hook(cwd, &args, &stop);
        // The hub does not say when a waiter is parked: give the process
        // time to start and ask (it takes a few ms).
        std::thread::sleep(Duration::from_millis(150));
        let t0 = Instant::now();
        let post = hub.send_post(&format!(
            r#"{{"from_agent":"bench","to_agent":"hk-stop","body":"wake {round}"}}"#
        ));
        let status = child.wait().unwrap();
        samples.push(t0.elapsed());
        assert_eq!(
            status.code(),
            Some(2),
            "round {round}: the hook was not woken"
        );
        assert_eq!(read_response(post, false).unwrap().status, 201);
    }
    report(
        "hook Stop: POST of a DM .. `arc hook` exits 2",
        samples,
        "p50 <= 20 ms",
    );
}

/// (b) and (c): one context hook, spawn to exit.
fn context_runs(hub: &Hub, cwd: &Path, rounds: usize, with_message: bool) {
    let prompt = event("claude-code", "UserPromptSubmit");
    let args = ["claude-code", "--agent", "hk-ctx", "--base-url", &hub.url];
    let mut samples = Vec::new();
    for round in 0..rounds {
        if with_message {
            let r = hub.post(&format!(
                r#"{{"from_agent":"bench","to_agent":"hk-ctx","body":"pending {round}"}}"#
            ));
            assert_eq!(r["ok"], true, "{r}");
        }
        let t0 = Instant::now();
        let child = spawn_hook(cwd, &args, &prompt);
        let out = child.wait_with_output().unwrap();
        samples.push(t0.elapsed());
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            out.stdout.is_empty(),
            !with_message,
            "round {round}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    report(
        if with_message {
            "hook UserPromptSubmit, one message pending (spawn .. exit)"
        } else {
            "hook UserPromptSubmit, nothing pending (spawn .. exit)"
        },
        samples,
        "p50 <= 10 ms",
    );
}
