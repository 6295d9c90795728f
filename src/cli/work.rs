//! `arc reserve`, `arc release-reservation`, `arc next`, `arc handoff`
//! (agent commands: JSON on stdout, `arc error: <message>` and exit 1 on
//! a hub error), and the arguments of `arc guard`.

use serde_json::Value;

use super::agent::endpoint;
use super::flags::Raw;
use crate::client::{Client, Endpoint, Reserve};
use crate::error::{Error, Result};
use crate::guard::{GuardAction, GuardArgs};
use crate::wire::to_python_json;

#[derive(Debug, Clone, PartialEq)]
pub struct ReserveArgs {
    pub agent: Endpoint,
    pub reserve: Reserve,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseArgs {
    pub agent: Endpoint,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NextArgs {
    pub agent: Endpoint,
    pub channel: Option<String>,
    pub wait: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HandoffArgs {
    pub agent: Endpoint,
    pub task_id: i64,
    pub to: String,
    pub note: Option<String>,
}

fn one_positional(raw: &Raw, what: &str) -> Result<String> {
    match raw.positionals.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Usage(format!("name the {what}"))),
        more => Err(Error::Usage(format!("unexpected argument {:?}", more[1]))),
    }
}

pub fn reserve_args(raw: &Raw) -> Result<ReserveArgs> {
    if raw.positionals.is_empty() {
        return Err(Error::Usage(
            "reserve needs at least one path pattern".into(),
        ));
    }
    Ok(ReserveArgs {
        agent: endpoint(raw, None)?,
        reserve: Reserve {
            paths: raw.positionals.clone(),
            shared: raw.switch("shared"),
            ttl_sec: raw.seconds("ttl")?,
            task_id: raw.parsed::<i64>("task", "a task id")?,
            claim_key: None,
            reason: raw.value("reason").map(str::to_string),
        },
    })
}

pub fn release_args(raw: &Raw) -> Result<ReleaseArgs> {
    Ok(ReleaseArgs {
        agent: endpoint(raw, None)?,
        id: one_positional(raw, "reservation id")?,
    })
}

pub fn next_args(raw: &Raw) -> Result<NextArgs> {
    Ok(NextArgs {
        agent: endpoint(raw, None)?,
        channel: raw.value("channel").map(str::to_string),
        wait: raw.seconds("wait")?.unwrap_or(0.0),
    })
}

pub fn handoff_args(raw: &Raw) -> Result<HandoffArgs> {
    let task = one_positional(raw, "task id")?;
    Ok(HandoffArgs {
        agent: endpoint(raw, None)?,
        task_id: task
            .trim()
            .parse()
            .map_err(|_| Error::Usage(format!("task id must be an integer, got {task:?}")))?,
        to: raw.required("to")?,
        note: raw.value("note").map(str::to_string),
    })
}

pub fn guard_args(raw: &Raw) -> Result<GuardArgs> {
    let action = match one_positional(raw, "guard action (pre-commit or install)")?.as_str() {
        "pre-commit" => GuardAction::PreCommit,
        "install" => GuardAction::Install,
        other => {
            return Err(Error::Usage(format!(
                "guard takes pre-commit or install, not {other:?}"
            )));
        }
    };
    Ok(GuardArgs {
        action,
        endpoint: endpoint(raw, None)?,
        warn_only: raw.switch("warn-only"),
        strict: raw.switch("strict"),
    })
}

/// Prints a 2xx envelope's result; a refusal prints its conflicts (if
/// any) on stdout, then fails with the hub's message.
fn print_answer((status, env): (u16, Value)) -> Result<()> {
    if env.get("ok") == Some(&Value::Bool(true)) {
        println!("{}", to_python_json(&env["result"], true));
        return Ok(());
    }
    if let Some(c) = env.get("conflicts").and_then(Value::as_array) {
        for x in c {
            println!("{}", to_python_json(x, false));
        }
    }
    let message = env["error"]
        .as_str()
        .unwrap_or("unknown hub error")
        .to_string();
    Err(Error::Hub { status, message })
}

pub fn reserve(c: &mut Client, a: &ReserveArgs) -> Result<()> {
    print_answer(c.reserve(&a.reserve)?)
}

pub fn release(c: &mut Client, a: &ReleaseArgs) -> Result<()> {
    print_answer(c.release_reservation(&a.id)?)
}

pub fn next(c: &mut Client, a: &NextArgs) -> Result<()> {
    print_answer(c.next_task(a.channel.as_deref(), a.wait)?)
}

pub fn handoff(c: &mut Client, a: &HandoffArgs) -> Result<()> {
    print_answer(c.handoff(a.task_id, &a.to, a.note.as_deref())?)
}
