//! `arc hook`: one harness event on stdin (docs/WAKE.md).
//!
//! A context event prints at most one `hookSpecificOutput` object with
//! the headers of what the agent has not been shown yet; Claude Code's
//! `Stop` (installed with `asyncRewake`) waits for a message and exits 2
//! with the headers on stderr, which wakes the idle session. Whatever
//! goes wrong, the hook exits 0 with at most one line on stderr: a hook
//! never breaks the harness. It never registers, replaces or closes a
//! session.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{HookArgs, WAKE_EVENT};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::input::percent_encode;
use crate::notify::Watch;

/// Largest event read from stdin.
const STDIN_MAX: u64 = 1 << 20;

/// How long the harness gets to hand over the event.
const STDIN_WAIT: Duration = Duration::from_secs(5);

/// One request of a context hook may take this long (the harness's own
/// timeout, as installed, is 10 s).
const CONTEXT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one wait of the `Stop` hook asks the hub for: below any
/// relay's forward timeout (30 s in the reference), so a relayed wait
/// always comes back.
const WAIT_SLICE_SEC: f64 = 20.0;

/// Retry pauses while the hub is busy or unreachable: from the first to
/// the last, doubling.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_LAST: Duration = Duration::from_secs(2);

/// Runs the hook; never fails the harness.
pub fn run(a: &HookArgs) -> ExitCode {
    let event = match read_event() {
        Ok(e) => e,
        Err(why) => {
            eprintln!("arc hook: {why}");
            return ExitCode::SUCCESS;
        }
    };
    let outcome = if a.harness.is_context_event(&event) {
        context(a, &event)
    } else if event == WAKE_EVENT && a.harness.can_wake() {
        stop(a)
    } else {
        // Not ours to answer: say nothing.
        Ok(ExitCode::SUCCESS)
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("arc hook: {}", one_line(&e.to_string()));
        ExitCode::SUCCESS
    })
}

fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .next()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

/// Reads the event object and returns its `hook_event_name`, within
/// [`STDIN_WAIT`] (a harness that never closes stdin cannot hang us).
fn read_event() -> std::result::Result<String, String> {
    let got: Arc<Watch<Option<std::io::Result<Vec<u8>>>>> = Arc::new(Watch::new(None));
    let writer = got.clone();
    std::thread::Builder::new()
        .name("arc-hook-stdin".into())
        .spawn(move || {
            let mut buf = Vec::new();
            let r = std::io::stdin()
                .take(STDIN_MAX + 1)
                .read_to_end(&mut buf)
                .map(|_| buf);
            writer.update(|v| *v = Some(r));
        })
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    let mut guard = got.wait_until(Some(Instant::now() + STDIN_WAIT), |v| v.is_some());
    let bytes = match guard.take() {
        None => return Err("no event on stdin".into()),
        Some(Err(e)) => return Err(format!("cannot read stdin: {e}")),
        Some(Ok(b)) if b.len() as u64 > STDIN_MAX => {
            return Err("the event on stdin is larger than 1 MiB".into());
        }
        Some(Ok(b)) => b,
    };
    if let Some(why) = crate::wire::shape::over(&bytes, crate::wire::shape::LIMITS) {
        return Err(format!("the event on stdin is {why}"));
    }
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("stdin is not a JSON event: {e}"))?;
    match v.get("hook_event_name").and_then(Value::as_str) {
        Some(name) => Ok(name.to_string()),
        None => Err("the event on stdin has no hook_event_name".into()),
    }
}

fn surface_path(agent: &str) -> String {
    format!("/v1/agents/{}/surface", percent_encode(agent))
}

/// A context event: print the headers of what is new, if anything.
fn context(a: &HookArgs, event: &str) -> Result<ExitCode> {
    let client = a.endpoint.client();
    let body = json!({"bodies": a.bodies});
    let r = client.request(
        "POST",
        &surface_path(&client.agent_id),
        Some(&body),
        CONTEXT_TIMEOUT,
    )?;
    if let Some(text) = r["result"]["text"].as_str() {
        // Written by hand to keep the documented key order.
        println!(
            "{{\"hookSpecificOutput\":{{\"hookEventName\":{},\"additionalContext\":{}}}}}",
            Value::from(event),
            Value::from(text)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Claude Code's `Stop`: exit 2 with the headers on stderr as soon as
/// there is something to show; exit 0 at `--max-wait`, when a newer
/// `Stop` hook of the same agent takes over, or when the hub cannot help.
fn stop(a: &HookArgs) -> Result<ExitCode> {
    let deadline = Instant::now() + a.max_wait;
    let client = a.endpoint.client();
    let path = surface_path(&client.agent_id);
    let mut waiter: Option<u64> = None;
    let mut retry = RETRY_FIRST;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(ExitCode::SUCCESS);
        }
        let wait = left.as_secs_f64().min(WAIT_SLICE_SEC);
        let mut body = json!({"bodies": a.bodies, "wait": wait});
        match waiter {
            Some(g) => body["waiter"] = json!(g),
            None => body["supersede"] = json!(true),
        }
        // The answer comes back by the end of the wait; allow for a slow
        // hub, but never past our own deadline by more than a moment.
        let timeout = Duration::from_secs_f64(wait) + Duration::from_secs(5);
        match answer(
            &client,
            &path,
            &body,
            timeout.min(left + Duration::from_secs(1)),
        ) {
            Ok(r) => {
                retry = RETRY_FIRST;
                if r["superseded"].as_bool() == Some(true) {
                    return Ok(ExitCode::SUCCESS);
                }
                waiter = r["waiter"].as_u64().or(waiter);
                if let Some(text) = r["text"].as_str() {
                    eprintln!("{text}");
                    return Ok(ExitCode::from(2));
                }
            }
            Err(e) if transient(&e) => {
                let pause = retry.min(deadline.saturating_duration_since(Instant::now()));
                crate::notify::pause(pause); // the hub is busy or away: try again later
                retry = (retry * 2).min(RETRY_LAST);
            }
            Err(e) => return Err(e),
        }
    }
}

fn answer(c: &Client, path: &str, body: &Value, timeout: Duration) -> Result<Value> {
    c.request("POST", path, Some(body), timeout)
        .map(|env| env["result"].clone())
}

/// Worth another try: the hub is busy, restarting, or briefly away.
fn transient(e: &Error) -> bool {
    match e {
        Error::Transport(_) => true,
        Error::Hub { status, .. } => matches!(status, 429 | 502 | 503 | 504 | 598),
        _ => false,
    }
}
