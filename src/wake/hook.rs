//! `arc hook`: one harness event on stdin (docs/WAKE.md).
//!
//! A context event prints at most one `hookSpecificOutput` object with
//! the headers of what the agent has not been shown yet; Claude Code's
//! `Stop` (installed with `asyncRewake`) waits for a message and exits 2
//! with the headers on stderr, which wakes the idle session. Whatever
//! goes wrong, the hook exits 0 with at most one line on stderr: a hook
//! never breaks the harness. It never registers, replaces or closes a
//! session.
//!
//! The guard event (`PreToolUse`, Gemini's `BeforeTool`) of a tool that
//! writes files asks the hub whether another agent holds any of them and,
//! if so, prints the harness's refusal and posts one notice; otherwise,
//! and whenever the hub cannot answer, it prints nothing (docs/WAKE.md,
//! "Guards").

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{HookArgs, Refusal, Target, WAKE_EVENT};
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

/// The guard's check may take this long in all; posting the notice of a
/// refusal, [`crate::guard::REPORT_TIMEOUT`] more.
const GUARD_TIMEOUT: Duration = Duration::from_secs(3);

/// Retry pauses while the hub is busy or unreachable: from the first to
/// the last, doubling.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_LAST: Duration = Duration::from_secs(2);

/// Runs the hook; never fails the harness.
pub fn run(a: &HookArgs) -> ExitCode {
    let (event, body) = match read_event() {
        Ok(e) => e,
        Err(why) => {
            eprintln!("arc hook: {why}");
            return ExitCode::SUCCESS;
        }
    };
    let outcome = if a.harness.is_context_event(&event) {
        context(a, &event)
    } else if a.harness.is_guard_event(&event) {
        guard(a, &event, &body)
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

/// Reads the event object and returns its `hook_event_name` and the
/// object, within [`STDIN_WAIT`] (a harness that never closes stdin
/// cannot hang us).
fn read_event() -> std::result::Result<(String, Value), String> {
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
        Some(name) => Ok((name.to_string(), v.clone())),
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

/// The guard event: refuse the tool call when another agent holds a file
/// it writes. Prints nothing for a tool that is not guarded, for free
/// paths, and (by returning the error) when the hub cannot answer.
fn guard(a: &HookArgs, event: &str, body: &Value) -> Result<ExitCode> {
    let tool = body["tool_name"].as_str().unwrap_or_default();
    let Some(target) = a.harness.guard_target(tool) else {
        return Ok(ExitCode::SUCCESS);
    };
    let input = &body["tool_input"];
    let named = match target {
        Target::FilePath => input["file_path"]
            .as_str()
            .into_iter()
            .map(str::to_string)
            .collect(),
        Target::Patch => patch_paths(input["command"].as_str().unwrap_or_default()),
    };
    let cwd = body["cwd"].as_str();
    let mut paths: Vec<String> = Vec::new();
    for p in named.iter().filter(|p| !p.is_empty()) {
        let rel = relative(p, cwd);
        if !paths.contains(&rel) {
            paths.push(rel);
        }
    }
    if paths.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let client = a.endpoint.client();
    let checked = crate::guard::check(&client, &paths, Instant::now() + GUARD_TIMEOUT)?;
    if checked.held.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let mut why: Vec<String> = Vec::new();
    for line in checked.held.iter().map(crate::guard::describe) {
        if !why.contains(&line) {
            why.push(line);
        }
    }
    let why = Value::from(why.join("; "));
    // Written by hand to keep the documented key order.
    match a.harness.def().guard.refusal {
        Refusal::PermissionDecision => println!(
            "{{\"hookSpecificOutput\":{{\"hookEventName\":{},\"permissionDecision\":\"deny\",\"permissionDecisionReason\":{why}}}}}",
            Value::from(event)
        ),
        Refusal::Decision => println!("{{\"decision\":\"deny\",\"reason\":{why}}}"),
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
    crate::guard::report(
        &client,
        a.harness.name(),
        &checked.held,
        crate::guard::Verdict::Deny,
        crate::guard::REPORT_TIMEOUT,
    );
    Ok(ExitCode::SUCCESS)
}

/// `path` relative to `cwd` when it lies under it (compared with `/`
/// separators, and without case on Windows), else as given.
fn relative(path: &str, cwd: Option<&str>) -> String {
    let Some(cwd) = cwd else {
        return path.to_string();
    };
    let unified = path.replace('\\', "/");
    let root = cwd.replace('\\', "/");
    let root = root.trim_end_matches('/');
    if root.is_empty() || unified.len() <= root.len() + 1 || !unified.is_char_boundary(root.len()) {
        return path.to_string();
    }
    let (head, rest) = unified.split_at(root.len());
    let same = match cfg!(windows) {
        true => head.eq_ignore_ascii_case(root),
        false => head == root,
    };
    match rest.strip_prefix('/') {
        Some(rel) if same && !rel.is_empty() => rel.to_string(),
        _ => path.to_string(),
    }
}

/// The files a Codex patch writes, read as Codex's own parser reads it
/// (codex-rs/apply-patch/src/parser.rs): a file header is a line that,
/// trimmed, starts with `*** Add File: `, `*** Update File: ` or
/// `*** Delete File: `; an update's `*** Move to: ` is the line right
/// after its header. Lines inside an added file (`+…`) or an update's
/// hunks are content, not headers.
fn patch_paths(patch: &str) -> Vec<String> {
    const ADD: &str = "*** Add File: ";
    const DELETE: &str = "*** Delete File: ";
    const UPDATE: &str = "*** Update File: ";
    const MOVE: &str = "*** Move to: ";
    const EOF: &str = "*** End of File";
    #[derive(PartialEq)]
    enum In {
        Headers,
        Added,
        Update,
    }
    let mut out = Vec::new();
    let mut state = In::Headers;
    let mut lines = patch.trim().lines().peekable();
    while let Some(line) = lines.next() {
        match state {
            In::Added if line.starts_with('+') => continue,
            In::Update if !line.starts_with('*') || line.trim() == EOF => continue,
            _ => state = In::Headers,
        }
        let t = line.trim();
        if let Some(p) = t.strip_prefix(ADD) {
            out.push(p.to_string());
            state = In::Added;
        } else if let Some(p) = t.strip_prefix(DELETE) {
            out.push(p.to_string());
        } else if let Some(p) = t.strip_prefix(UPDATE) {
            out.push(p.to_string());
            if let Some(to) = lines.peek().and_then(|l| l.strip_prefix(MOVE)) {
                out.push(to.to_string());
                lines.next();
            }
            state = In::Update;
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_paths_are_every_file_a_patch_writes() {
        let patch = [
            "*** Begin Patch",
            "*** Add File: docs/new.md",
            "+# New",
            "+*** Update File: not/a/header.rs",
            "*** Update File: src/app.py",
            "*** Move to: src/main.py",
            "@@ def greet():",
            "-print(\"Hi\")",
            "+print(\"Hello\")",
            " *** Delete File: context/line.rs",
            "",
            "*** End of File",
            "*** Delete File: gone.rs",
            "  *** Delete File: obsolete.txt  ",
            "*** End Patch",
        ]
        .join("\n");
        let patch = patch.as_str();
        assert_eq!(
            patch_paths(patch),
            [
                "docs/new.md",
                "src/app.py",
                "src/main.py",
                "gone.rs",
                "obsolete.txt"
            ]
        );
        let heredoc =
            "<<'EOF'\n*** Begin Patch\n*** Update File: a.rs\n@@\n-x\n+y\n*** End Patch\nEOF\n";
        assert_eq!(patch_paths(heredoc), ["a.rs"]);
        assert!(patch_paths("").is_empty());
        assert!(patch_paths("*** Begin Patch\n*** Add File:\n*** End Patch").is_empty());
    }

    #[test]
    fn paths_under_cwd_become_relative() {
        let cwd = Some("/home/dev/proj");
        assert_eq!(relative("/home/dev/proj/src/a.rs", cwd), "src/a.rs");
        assert_eq!(
            relative("/home/dev/proj/src/a.rs", Some("/home/dev/proj/")),
            "src/a.rs"
        );
        assert_eq!(
            relative("/home/dev/project/a.rs", cwd),
            "/home/dev/project/a.rs"
        );
        assert_eq!(relative("/home/dev/proj", cwd), "/home/dev/proj");
        assert_eq!(relative("/home/dev/proj/", cwd), "/home/dev/proj/");
        assert_eq!(relative("/etc/passwd", cwd), "/etc/passwd");
        assert_eq!(relative("src/a.rs", cwd), "src/a.rs");
        assert_eq!(relative("/x/a.rs", None), "/x/a.rs");
        assert_eq!(relative("/a.rs", Some("/")), "/a.rs");
        assert_eq!(relative("/home/é/a.rs", Some("/home/x")), "/home/é/a.rs");
        assert_eq!(relative("/hé/a.rs", Some("/hx")), "/hé/a.rs");
        assert_eq!(relative("/hé/a.rs", Some("/hé")), "a.rs");
        assert_eq!(relative(r"C:\proj\src\a.rs", Some(r"C:\proj")), "src/a.rs");
    }
}
