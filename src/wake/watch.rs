//! `arc watch`: run a command for each new batch of messages visible to
//! an agent (docs/WAKE.md). The batch goes to the command's stdin as JSON
//! lines; it counts as surfaced only when the command exits 0. A failure
//! or a timeout is logged and the same batch (grown by whatever arrived
//! meanwhile) is tried again after a pause that doubles up to a minute:
//! nothing is dropped.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use super::WatchArgs;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::input::percent_encode;
use crate::wire::Message;

/// One wait for messages asks the hub for at most this long (below any
/// relay's forward timeout).
const WAIT_SLICE_SEC: f64 = 20.0;

/// Messages one run of the command gets at most.
const BATCH_MAX: usize = 100;

/// Pauses after a failed run, or while the hub cannot be reached.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_LAST: Duration = Duration::from_secs(60);

/// How often a running command is checked for having exited.
const CHILD_POLL: Duration = Duration::from_millis(5);

/// Runs until killed. Returns only on an error that retrying cannot fix
/// (the hub refuses the agent or does not know the route).
pub fn run(a: &WatchArgs) -> Result<()> {
    let client = a.endpoint.client();
    let agent = client.agent_id.clone();
    let mut retry = RETRY_FIRST;
    loop {
        let batch = match next_batch(&client, a) {
            Ok(b) => b,
            Err(e) if transient(&e) => {
                eprintln!("arc watch: {e}; trying again in {} s", retry.as_secs());
                crate::notify::pause(retry); // the hub is away: back off
                retry = (retry * 2).min(RETRY_LAST);
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(last) = batch.last() else { continue };
        match run_command(a, &agent, &batch) {
            Ok(()) => {
                retry = RETRY_FIRST;
                let path = format!("/v1/agents/{}/surfaced", percent_encode(&agent));
                let body = json!({"up_to_id": last.id});
                if let Err(e) = client.request("POST", &path, Some(&body), Duration::from_secs(10))
                {
                    // The command ran; the batch may be offered again, never lost.
                    eprintln!("arc watch: cannot mark #{} surfaced: {e}", last.id);
                }
            }
            Err(why) => {
                eprintln!(
                    "arc watch: the command failed for {} message(s) up to #{} ({why}); trying again in {} s",
                    batch.len(),
                    last.id,
                    retry.as_secs()
                );
                crate::notify::pause(retry); // a failed run is retried later, never dropped
                retry = (retry * 2).min(RETRY_LAST);
            }
        }
    }
}

/// Waits for messages not yet surfaced, then gathers for `debounce`.
fn next_batch(c: &Client, a: &WatchArgs) -> Result<Vec<Message>> {
    let first = peek(c, WAIT_SLICE_SEC)?;
    if first.is_empty() || a.debounce.is_zero() {
        return Ok(first);
    }
    crate::notify::pause(a.debounce); // let a burst arrive as one batch
    peek(c, 0.0)
}

fn peek(c: &Client, wait: f64) -> Result<Vec<Message>> {
    let path = format!("/v1/agents/{}/surface", percent_encode(&c.agent_id));
    let body = json!({"peek": true, "wait": wait, "limit": BATCH_MAX});
    let timeout = Duration::from_secs_f64(wait) + Duration::from_secs(10);
    let env = c.request("POST", &path, Some(&body), timeout)?;
    let msgs = env["result"]["messages"].clone();
    Ok(serde_json::from_value(msgs).unwrap_or_default())
}

fn transient(e: &Error) -> bool {
    match e {
        Error::Transport(_) | Error::Protocol(_) => true,
        Error::Hub { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504 | 598),
        _ => false,
    }
}

/// The shell that runs `--exec`.
fn shell(cmd: &str) -> Command {
    #[cfg(windows)]
    {
        let mut c = Command::new("cmd");
        c.arg("/C").arg(cmd);
        c
    }
    #[cfg(not(windows))]
    {
        let mut c = Command::new("sh");
        c.arg("-c").arg(cmd);
        c
    }
}

/// Runs the command once for `batch`; `Err` says why it did not succeed.
fn run_command(a: &WatchArgs, agent: &str, batch: &[Message]) -> std::result::Result<(), String> {
    let newest = batch.last().expect("a batch is never empty");
    let mut input = String::new();
    for m in batch {
        input.push_str(&serde_json::to_string(m).unwrap_or_default());
        input.push('\n');
    }
    let mut child = shell(&a.exec)
        .env("ARC_AGENT", agent)
        .env("ARC_COUNT", batch.len().to_string())
        .env("ARC_MESSAGE_ID", newest.id.to_string())
        .env("ARC_FROM_AGENT", &newest.from_agent)
        .env("ARC_CHANNEL", &newest.channel)
        .env("ARC_KIND", &newest.kind)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    // Written from a thread: a command that does not read its stdin must
    // not keep us from noticing that it exited, or timing it out.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = std::thread::Builder::new()
            .name("arc-watch-stdin".into())
            .spawn(move || {
                let _ = stdin.write_all(input.as_bytes());
            });
    }
    // No event says a child exited without blocking on it: check often.
    let status = crate::notify::poll_until(a.exec_timeout, CHILD_POLL, || {
        child.try_wait().ok().flatten()
    });
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(match s.code() {
            Some(code) => format!("exit {code}"),
            None => "killed by a signal".into(),
        }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "timed out after {:.1} s",
                a.exec_timeout.as_secs_f64()
            ))
        }
    }
}
