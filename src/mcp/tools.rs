//! Every tool `arc mcp` offers, once, as data: name, description, input
//! schema and handler. `tools/list` and `tools/call` both come from
//! [`TOOLS`]. The first six match the reference adapter's names,
//! arguments, types and defaults; descriptions are our own and short
//! (hosts pay for them in context). A hub error reaches the model as a
//! tool result with `isError: true` and the hub's own text.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::server::Shared;
use crate::client::Post;
use crate::error::{Error, Result};
use crate::input::percent_encode;

/// The type of one argument, for the input schema.
#[derive(Clone, Copy)]
pub enum Arg {
    Str,
    Int,
    IntDefault(i64),
    /// A number whose default is whole (the schema shows it as `5`, not `5.0`).
    NumDefault(i64),
    StrDefault(&'static str),
    OneOf(&'static [&'static str]),
}

/// A tool's handler: checks the arguments, then asks the hub.
type Handler = fn(&Shared, &Args<'_>) -> std::result::Result<Value, String>;

/// One tool.
pub struct Tool {
    pub name: &'static str,
    pub description: &'static str,
    pub args: &'static [(&'static str, Arg)],
    pub required: &'static [&'static str],
    handler: Handler,
}

const TTL: Arg = Arg::IntDefault(300);

/// The tool table, in `tools/list` order.
pub static TOOLS: &[Tool] = &[
    Tool {
        name: "arc_post_message",
        description: "Post to a channel. kind: chat, task, task_request, task_result, artifact or notice; reply_to answers a message; parent_task_id makes a subtask.",
        args: &[
            ("channel", Arg::Str),
            ("body", Arg::Str),
            ("kind", Arg::StrDefault("chat")),
            ("thread_id", Arg::Str),
            ("to_agent", Arg::Str),
            ("reply_to", Arg::Int),
            ("parent_task_id", Arg::Int),
        ],
        required: &["channel", "body"],
        handler: post_message,
    },
    Tool {
        name: "arc_poll_messages",
        description: "Wait up to timeout seconds for messages you have not seen yet (not your own).",
        args: &[
            ("channel", Arg::Str),
            ("timeout", Arg::NumDefault(5)),
            ("thread_id", Arg::Str),
        ],
        required: &[],
        handler: poll_messages,
    },
    Tool {
        name: "arc_dm",
        description: "Send a direct message to an agent.",
        args: &[("to_agent", Arg::Str), ("body", Arg::Str)],
        required: &["to_agent", "body"],
        handler: dm,
    },
    Tool {
        name: "arc_list_agents",
        description: "List live agents.",
        args: &[],
        required: &[],
        handler: list_agents,
    },
    Tool {
        name: "arc_create_channel",
        description: "Create a channel (returns it if it exists).",
        args: &[("name", Arg::Str)],
        required: &["name"],
        handler: create_channel,
    },
    Tool {
        name: "arc_rpc_call",
        description: "Send a task_request to an agent and wait for its task_result.",
        args: &[
            ("to_agent", Arg::Str),
            ("body", Arg::Str),
            ("timeout", Arg::NumDefault(30)),
        ],
        required: &["to_agent", "body"],
        handler: rpc_call,
    },
    Tool {
        name: "arc_claim",
        description: "Claim work by key; acquired is false if another agent holds it.",
        args: &[
            ("claim_key", Arg::Str),
            ("thread_id", Arg::Str),
            ("ttl_sec", TTL),
        ],
        required: &["claim_key"],
        handler: claim,
    },
    Tool {
        name: "arc_release",
        description: "Release your claim.",
        args: &[("claim_key", Arg::Str)],
        required: &["claim_key"],
        handler: release,
    },
    Tool {
        name: "arc_lock",
        description: "Lock a file path before editing; acquired is false if another agent holds it.",
        args: &[("file_path", Arg::Str), ("ttl_sec", TTL)],
        required: &["file_path"],
        handler: lock,
    },
    Tool {
        name: "arc_unlock",
        description: "Release your file lock.",
        args: &[("file_path", Arg::Str)],
        required: &["file_path"],
        handler: unlock,
    },
    Tool {
        name: "arc_list_tasks",
        description: "List tasks, optionally filtered.",
        args: &[
            ("status", Arg::OneOf(&["open", "done"])),
            ("channel", Arg::Str),
            ("thread_id", Arg::Str),
            ("parent_id", Arg::Int),
        ],
        required: &[],
        handler: list_tasks,
    },
    Tool {
        name: "arc_complete_task",
        description: "Mark a task done.",
        args: &[("task_id", Arg::Int)],
        required: &["task_id"],
        handler: complete_task,
    },
    Tool {
        name: "arc_read_thread",
        description: "Read a thread: summary, messages, tasks, claims, locks.",
        args: &[("thread_id", Arg::Str)],
        required: &["thread_id"],
        handler: read_thread,
    },
    Tool {
        name: "arc_inbox",
        description: "Your direct messages: the newest limit, or those after since_id.",
        args: &[("since_id", Arg::Int), ("limit", Arg::IntDefault(20))],
        required: &[],
        handler: inbox,
    },
    Tool {
        name: "arc_whoami",
        description: "Your session and the live agents.",
        args: &[],
        required: &[],
        handler: whoami,
    },
    Tool {
        name: "arc_list_channels",
        description: "List channels.",
        args: &[],
        required: &[],
        handler: list_channels,
    },
];

fn schema(a: Arg) -> Value {
    match a {
        Arg::Str => json!({"type": "string"}),
        Arg::Int => json!({"type": "integer"}),
        Arg::IntDefault(d) => json!({"type": "integer", "default": d}),
        Arg::NumDefault(d) => json!({"type": "number", "default": d}),
        Arg::StrDefault(d) => json!({"type": "string", "default": d}),
        Arg::OneOf(v) => json!({"type": "string", "enum": v}),
    }
}

impl Tool {
    /// Its `tools/list` entry.
    pub fn describe(&self) -> Value {
        let props: Map<String, Value> = self
            .args
            .iter()
            .map(|(n, a)| (n.to_string(), schema(*a)))
            .collect();
        json!({
            "name": self.name,
            "description": self.description,
            "inputSchema": {"type": "object", "properties": props, "required": self.required},
        })
    }

    /// Runs it: `Err` is a tool error (a result with `isError: true`).
    pub fn call(
        &self,
        s: &Shared,
        args: &Map<String, Value>,
    ) -> std::result::Result<Value, String> {
        (self.handler)(
            s,
            &Args {
                values: args,
                spec: self.args,
            },
        )
    }
}

/// The tool named `name`.
pub fn find(name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.name == name)
}

/// The `tools/list` entries.
pub fn tools() -> Value {
    Value::Array(TOOLS.iter().map(Tool::describe).collect())
}

/// The text a hub error becomes for the model.
pub fn hub_error(e: Error) -> String {
    match e {
        Error::Transport(_) => format!(
            "{} (is the hub running? `arc ensure` starts one)",
            e.detail()
        ),
        other => other.detail(),
    }
}

fn to_json<T: serde::Serialize>(r: Result<T>) -> std::result::Result<Value, String> {
    let v = r.map_err(hub_error)?;
    serde_json::to_value(v).map_err(|e| format!("json: {e}"))
}

/// Tool arguments, with errors that name the argument; defaults come
/// from the tool's table entry.
pub struct Args<'a> {
    values: &'a Map<String, Value>,
    spec: &'static [(&'static str, Arg)],
}

impl Args<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key).filter(|v| !v.is_null())
    }

    fn spec(&self, key: &str) -> Option<Arg> {
        self.spec.iter().find(|(n, _)| *n == key).map(|(_, a)| *a)
    }

    fn no_default(key: &str) -> String {
        format!("tool table: argument {key} has no default")
    }

    fn string_or_default(&self, key: &str) -> std::result::Result<String, String> {
        match (self.opt_string(key)?, self.spec(key)) {
            (Some(v), _) => Ok(v),
            (None, Some(Arg::StrDefault(d))) => Ok(d.to_string()),
            (None, _) => Err(Self::no_default(key)),
        }
    }

    fn int_or_default(&self, key: &str) -> std::result::Result<i64, String> {
        match (self.opt_int(key)?, self.spec(key)) {
            (Some(v), _) => Ok(v),
            (None, Some(Arg::IntDefault(d))) => Ok(d),
            (None, _) => Err(Self::no_default(key)),
        }
    }

    fn string(&self, key: &str) -> std::result::Result<String, String> {
        self.opt_string(key)?
            .ok_or_else(|| format!("missing required argument: {key}"))
    }

    fn opt_string(&self, key: &str) -> std::result::Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(n @ Value::Number(_)) => Ok(Some(n.to_string())),
            Some(_) => Err(format!("argument {key} must be a string")),
        }
    }

    fn int(&self, key: &str) -> std::result::Result<i64, String> {
        self.opt_int(key)?
            .ok_or_else(|| format!("missing required argument: {key}"))
    }

    fn opt_int(&self, key: &str) -> std::result::Result<Option<i64>, String> {
        let bad = || format!("argument {key} must be an integer");
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(Some(i)),
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(Some(f as i64)),
                _ => Err(bad()),
            },
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A number of seconds, clamped to `0..=max`.
    fn number(&self, key: &str, max: f64) -> std::result::Result<f64, String> {
        let bad = || format!("argument {key} must be a number");
        let v = match (self.get(key), self.spec(key)) {
            (None, Some(Arg::NumDefault(d))) => d as f64,
            (None, _) => return Err(Self::no_default(key)),
            (Some(v), _) => match v {
                Value::Number(n) => n.as_f64().ok_or_else(bad)?,
                Value::String(s) => s.trim().parse::<f64>().map_err(|_| bad())?,
                _ => return Err(bad()),
            },
        };
        if !v.is_finite() {
            return Err(bad());
        }
        Ok(v.clamp(0.0, max))
    }
}

// ----- handlers (arguments are checked before the hub is contacted) -----

fn post_message(s: &Shared, a: &Args<'_>) -> std::result::Result<Value, String> {
    let (channel, body) = (a.string("channel")?, a.string("body")?);
    let opts = Post {
        kind: Some(a.string_or_default("kind")?),
        thread_id: a.opt_string("thread_id")?,
        to_agent: a.opt_string("to_agent")?,
        reply_to: a.opt_int("reply_to")?,
        parent_task_id: a.opt_int("parent_task_id")?,
        ..Post::default()
    };
    s.session()?;
    to_json(s.client.post(&channel, &body, opts))
}

fn poll_messages(s: &Shared, a: &Args<'_>) -> std::result::Result<Value, String> {
    let channel = a.opt_string("channel")?;
    let thread = a.opt_string("thread_id")?;
    let timeout = a.number("timeout", 300.0)?;
    s.session()?;
    let mut p = s.client.clone();
    p.cursor = s.poll_cursor();
    let msgs = p
        .poll(timeout, channel.as_deref(), thread.as_deref(), true, 100)
        .map_err(hub_error)?;
    s.advance_poll_cursor(p.cursor);
    if let Some(last) = msgs.last() {
        p.mark_read(last.id);
    }
    to_json(Ok(msgs))
}

fn dm(s: &Shared, a: &Args<'_>) -> std::result::Result<Value, String> {
    let (to, body) = (a.string("to_agent")?, a.string("body")?);
    s.session()?;
    to_json(s.client.dm(&to, &body, Post::default()))
}

fn list_agents(s: &Shared, _: &Args<'_>) -> std::result::Result<Value, String> {
    s.session()?;
    to_json(s.client.agents(None))
}

fn create_channel(s: &Shared, a: &Args<'_>) -> std::result::Result<Value, String> {
    let name = a.string("name")?;
    s.session()?;
    to_json(s.client.create_channel(&name, None))
}

fn rpc_call(s: &Shared, a: &Args<'_>) -> std::result::Result<Value, String> {
    let (to, body) = (a.string("to_agent")?, a.string("body")?);
    let timeout = a.number("timeout", 3600.0)?;
    s.session()?;
    to_json(
        s.client
            .call(&to, &body, "direct", Duration::from_secs_f64(timeout), None),
    )
}

fn claim(s: &Shared, a: &Args<'_>) -> std::result::Result<Value, String> {
    let key = a.string("claim_key")?;
    let thread = a.opt_string("thread_id")?;
    let ttl = a.int_or_default("ttl_sec")?;
    s.session()?;
    let l = s
        .client
        .claim(&key, thread.as_deref(), None, ttl, None)
        .map_err(hub_error)?;
    to_json(Ok(json!({"acquired": l.acquired, "claim": l.row})))
}

fn release(s: &Shared, a: &Args<'_>) -> std::result::Result<Value, String> {
    let key = a.string("claim_key")?;
    s.session()?;
    to_json(s.client.release(&key))
}

fn lock(s: &Shared, a: &Args<'_>) -> std::result::Result<Value, String> {
    let path = a.string("file_path")?;
    let ttl = a.int_or_default("ttl_sec")?;
    s.session()?;
    let l = s.client.lock(&path, ttl, None).map_err(hub_error)?;
    to_json(Ok(json!({"acquired": l.acquired, "lock": l.row})))
}

fn unlock(s: &Shared, a: &Args<'_>) -> std::result::Result<Value, String> {
    let path = a.string("file_path")?;
    s.session()?;
    to_json(s.client.unlock(&path))
}

fn list_tasks(s: &Shared, a: &Args<'_>) -> std::result::Result<Value, String> {
    let mut q = Vec::new();
    for key in ["status", "channel", "thread_id"] {
        if let Some(v) = a.opt_string(key)? {
            q.push(format!("{key}={}", percent_encode(&v)));
        }
    }
    if let Some(p) = a.opt_int("parent_id")? {
        q.push(format!("parent_id={p}"));
    }
    s.session()?;
    to_json(s.client.tasks(&q.join("&")))
}

fn complete_task(s: &Shared, a: &Args<'_>) -> std::result::Result<Value, String> {
    let id = a.int("task_id")?;
    s.session()?;
    let (task, parent) = s.client.complete_task(id).map_err(hub_error)?;
    to_json(Ok(json!({"task": task, "parent_completed": parent})))
}

fn read_thread(s: &Shared, a: &Args<'_>) -> std::result::Result<Value, String> {
    let id = a.string("thread_id")?;
    s.session()?;
    to_json(s.client.get_thread(&id))
}

fn inbox(s: &Shared, a: &Args<'_>) -> std::result::Result<Value, String> {
    let since = a.opt_int("since_id")?;
    let limit = a.int_or_default("limit")?.clamp(1, 500);
    s.session()?;
    let query = match since {
        Some(since) => format!("since_id={since}&limit={limit}"),
        None => format!("tail=1&limit={limit}"),
    };
    let path = format!("/v1/inbox/{}?{query}", percent_encode(s.agent()));
    let env = s
        .client
        .request("GET", &path, None, s.client.timeout)
        .map_err(hub_error)?;
    Ok(env.get("result").cloned().unwrap_or(json!([])))
}

fn whoami(s: &Shared, _: &Args<'_>) -> std::result::Result<Value, String> {
    s.session()?;
    to_json(s.client.clone().bootstrap())
}

fn list_channels(s: &Shared, _: &Args<'_>) -> std::result::Result<Value, String> {
    s.session()?;
    to_json(s.client.channels())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_are_unique_and_required_arguments_exist() {
        for (i, t) in TOOLS.iter().enumerate() {
            assert!(TOOLS[..i].iter().all(|u| u.name != t.name), "{}", t.name);
            for r in t.required {
                assert!(t.args.iter().any(|(n, _)| n == r), "{}: {r}", t.name);
            }
        }
        assert_eq!(
            TOOLS[..6].iter().map(|t| t.name).collect::<Vec<_>>(),
            [
                "arc_post_message",
                "arc_poll_messages",
                "arc_dm",
                "arc_list_agents",
                "arc_create_channel",
                "arc_rpc_call"
            ]
        );
    }
}
