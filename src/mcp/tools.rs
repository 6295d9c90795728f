//! Every tool `arc mcp` offers, once, as data: name, description, input
//! schema, tags and handler. `tools/list` and `tools/call` both come from
//! [`TOOLS`], through the profile (`--tools`, [`super::profile`]) that
//! picks which of them are on offer. The first six match the reference
//! adapter's names, arguments, types and defaults; descriptions are our
//! own and short (hosts pay for them in context). A hub error reaches the
//! model as a tool result with `isError: true` and the hub's own text
//! (a 409's `conflicts` included).
//!
//! The handlers live beside this file: [`talk`] for messages, channels,
//! threads, agents and delivery state, [`work`] for claims, locks, tasks,
//! reservations and RPC; [`args`] reads their arguments. Search has no
//! tool: the hub does not search yet.

mod args;
mod talk;
mod work;

use serde_json::{Map, Value, json};

use super::server::Shared;
use crate::error::{Error, Result};

pub use args::Args;

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
    BoolDefault(bool),
    /// A list of strings (a lone string is read as a list of one).
    StrList,
}

/// A tool's handler: checks the arguments, then asks the hub.
type Handler = fn(&Shared, &Args<'_>) -> std::result::Result<Value, String>;

/// One tool.
pub struct Tool {
    pub name: &'static str,
    pub description: &'static str,
    pub args: &'static [(&'static str, Arg)],
    pub required: &'static [&'static str],
    /// What `--tools` can pick it by besides its name; `core` is the
    /// default profile.
    pub tags: &'static [&'static str],
    handler: Handler,
}

const TTL: Arg = Arg::IntDefault(300);

/// The tool table, in `tools/list` order: the reference's six, then our
/// three other core tools, then the rest by area.
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
        tags: &["core", "messages"],
        handler: talk::post_message,
    },
    Tool {
        name: "arc_poll_messages",
        description: "Wait up to timeout seconds for messages you have not seen yet (not your own); marks them read.",
        args: &[
            ("channel", Arg::Str),
            ("timeout", Arg::NumDefault(5)),
            ("thread_id", Arg::Str),
        ],
        required: &[],
        tags: &["core", "messages"],
        handler: talk::poll_messages,
    },
    Tool {
        name: "arc_dm",
        description: "Send a direct message to an agent.",
        args: &[("to_agent", Arg::Str), ("body", Arg::Str)],
        required: &["to_agent", "body"],
        tags: &["core", "messages"],
        handler: talk::dm,
    },
    Tool {
        name: "arc_list_agents",
        description: "List live agents.",
        args: &[],
        required: &[],
        tags: &["core", "agents"],
        handler: talk::list_agents,
    },
    Tool {
        name: "arc_create_channel",
        description: "Create a channel (returns it if it exists).",
        args: &[("name", Arg::Str)],
        required: &["name"],
        tags: &["core", "channels"],
        handler: talk::create_channel,
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
        tags: &["core", "work"],
        handler: work::rpc_call,
    },
    Tool {
        name: "arc_next_task",
        description: "Claim the best ready task and reserve its paths in one step; waits up to wait seconds. Null when none is ready.",
        args: &[("channel", Arg::Str), ("wait", Arg::NumDefault(0))],
        required: &[],
        tags: &["core", "work"],
        handler: work::next_task,
    },
    Tool {
        name: "arc_reserve",
        description: "Reserve path globs (src/**, *.md) before editing. All or nothing: a conflict names the holders.",
        args: &[
            ("paths", Arg::StrList),
            ("shared", Arg::BoolDefault(false)),
            ("ttl_sec", Arg::IntDefault(crate::wire::RESERVATION_TTL_SEC)),
            ("task_id", Arg::Int),
            ("reason", Arg::Str),
        ],
        required: &["paths"],
        tags: &["core", "reservations"],
        handler: work::reserve,
    },
    Tool {
        name: "arc_check_paths",
        description: "May you edit these files? allowed, and who holds the rest.",
        args: &[("paths", Arg::StrList)],
        required: &["paths"],
        tags: &["core", "reservations"],
        handler: work::check_paths,
    },
    Tool {
        name: "arc_inbox",
        description: "Your direct messages: the newest limit, or those after since_id.",
        args: &[("since_id", Arg::Int), ("limit", Arg::IntDefault(20))],
        required: &[],
        tags: &["messages"],
        handler: talk::inbox,
    },
    Tool {
        name: "arc_mark_read",
        description: "Mark every message up to up_to_id read.",
        args: &[("up_to_id", Arg::Int)],
        required: &["up_to_id"],
        tags: &["messages", "delivery"],
        handler: talk::mark_read,
    },
    Tool {
        name: "arc_list_channels",
        description: "List channels.",
        args: &[],
        required: &[],
        tags: &["channels"],
        handler: talk::list_channels,
    },
    Tool {
        name: "arc_read_channel",
        description: "Read a channel's messages: the newest limit, or those after since_id.",
        args: &[
            ("channel", Arg::Str),
            ("thread_id", Arg::Str),
            ("since_id", Arg::Int),
            ("limit", Arg::IntDefault(50)),
        ],
        required: &["channel"],
        tags: &["channels", "messages"],
        handler: talk::read_channel,
    },
    Tool {
        name: "arc_list_threads",
        description: "List thread summaries, newest first.",
        args: &[],
        required: &[],
        tags: &["threads"],
        handler: talk::list_threads,
    },
    Tool {
        name: "arc_read_thread",
        description: "Read a thread: summary, messages, tasks, claims, locks.",
        args: &[("thread_id", Arg::Str)],
        required: &["thread_id"],
        tags: &["threads"],
        handler: talk::read_thread,
    },
    Tool {
        name: "arc_whoami",
        description: "Your session and the live agents.",
        args: &[],
        required: &[],
        tags: &["agents"],
        handler: talk::whoami,
    },
    Tool {
        name: "arc_rename",
        description: "Set your display name.",
        args: &[("display_name", Arg::Str)],
        required: &["display_name"],
        tags: &["agents"],
        handler: talk::rename,
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
        tags: &["claims"],
        handler: work::claim,
    },
    Tool {
        name: "arc_refresh_claim",
        description: "Extend your claim.",
        args: &[("claim_key", Arg::Str), ("ttl_sec", TTL)],
        required: &["claim_key"],
        tags: &["claims"],
        handler: work::refresh_claim,
    },
    Tool {
        name: "arc_release",
        description: "Release your claim.",
        args: &[("claim_key", Arg::Str)],
        required: &["claim_key"],
        tags: &["claims"],
        handler: work::release,
    },
    Tool {
        name: "arc_list_claims",
        description: "List claims, optionally of one thread.",
        args: &[
            ("thread_id", Arg::Str),
            ("active_only", Arg::BoolDefault(true)),
        ],
        required: &[],
        tags: &["claims"],
        handler: work::list_claims,
    },
    Tool {
        name: "arc_lock",
        description: "Lock a file path before editing; acquired is false if another agent holds it.",
        args: &[("file_path", Arg::Str), ("ttl_sec", TTL)],
        required: &["file_path"],
        tags: &["locks"],
        handler: work::lock,
    },
    Tool {
        name: "arc_refresh_lock",
        description: "Extend your file lock.",
        args: &[("file_path", Arg::Str), ("ttl_sec", TTL)],
        required: &["file_path"],
        tags: &["locks"],
        handler: work::refresh_lock,
    },
    Tool {
        name: "arc_unlock",
        description: "Release your file lock.",
        args: &[("file_path", Arg::Str)],
        required: &["file_path"],
        tags: &["locks"],
        handler: work::unlock,
    },
    Tool {
        name: "arc_list_locks",
        description: "List file locks, optionally one agent's.",
        args: &[
            ("agent_id", Arg::Str),
            ("active_only", Arg::BoolDefault(true)),
        ],
        required: &[],
        tags: &["locks"],
        handler: work::list_locks,
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
        tags: &["work"],
        handler: work::list_tasks,
    },
    Tool {
        name: "arc_complete_task",
        description: "Mark a task done.",
        args: &[("task_id", Arg::Int)],
        required: &["task_id"],
        tags: &["work"],
        handler: work::complete_task,
    },
    Tool {
        name: "arc_handoff",
        description: "Hand a task you claimed (claim and reservations) to another agent, with a note.",
        args: &[
            ("task_id", Arg::Int),
            ("to_agent", Arg::Str),
            ("note", Arg::Str),
        ],
        required: &["task_id", "to_agent"],
        tags: &["work"],
        handler: work::handoff,
    },
    Tool {
        name: "arc_list_reservations",
        description: "List reservations, optionally one agent's.",
        args: &[
            ("agent_id", Arg::Str),
            ("active_only", Arg::BoolDefault(true)),
        ],
        required: &[],
        tags: &["reservations"],
        handler: work::list_reservations,
    },
    Tool {
        name: "arc_renew_reservation",
        description: "Extend your reservation.",
        args: &[("reservation_id", Arg::Str), ("ttl_sec", Arg::Int)],
        required: &["reservation_id"],
        tags: &["reservations"],
        handler: work::renew_reservation,
    },
    Tool {
        name: "arc_release_reservation",
        description: "Release your reservation.",
        args: &[("reservation_id", Arg::Str)],
        required: &["reservation_id"],
        tags: &["reservations"],
        handler: work::release_reservation,
    },
    Tool {
        name: "arc_pending",
        description: "Ids of messages to you not yet delivered, surfaced or read.",
        args: &[("limit", Arg::IntDefault(100))],
        required: &[],
        tags: &["delivery"],
        handler: talk::pending,
    },
    Tool {
        name: "arc_deliveries",
        description: "A message's state (queued, delivered, surfaced, read) for each recipient.",
        args: &[("message_id", Arg::Int)],
        required: &["message_id"],
        tags: &["delivery"],
        handler: talk::deliveries,
    },
    Tool {
        name: "arc_dead_letters",
        description: "Direct messages to ids that never had a session, with a suggested id.",
        args: &[("limit", Arg::IntDefault(50))],
        required: &[],
        tags: &["delivery", "admin"],
        handler: talk::dead_letters,
    },
    Tool {
        name: "arc_hub_info",
        description: "What this hub is: version, features, limits.",
        args: &[],
        required: &[],
        tags: &["admin"],
        handler: talk::hub_info,
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
        Arg::BoolDefault(d) => json!({"type": "boolean", "default": d}),
        Arg::StrList => json!({"type": "array", "items": {"type": "string"}}),
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

    /// Whether `--tools` can pick it by `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.contains(&tag)
    }

    /// Runs it: `Err` is a tool error (a result with `isError: true`).
    pub fn call(
        &self,
        s: &Shared,
        args: &Map<String, Value>,
    ) -> std::result::Result<Value, String> {
        (self.handler)(s, &Args::new(args, self.args))
    }
}

/// The tool named `name`, in any profile.
pub fn find(name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.name == name)
}

/// The `tools/list` entries of every tool.
pub fn tools() -> Value {
    Value::Array(TOOLS.iter().map(Tool::describe).collect())
}

/// Every tag, in the order the table first uses it.
pub fn tags() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for tag in TOOLS.iter().flat_map(|t| t.tags.iter()) {
        if !out.contains(tag) {
            out.push(tag);
        }
    }
    out
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

/// A hub answer that keeps its envelope (`Client::answer`): the result
/// when it is ok, else the hub's error text, followed by its `conflicts`
/// (a 409 of a reservation names who holds what).
fn envelope(r: Result<(u16, Value)>) -> std::result::Result<Value, String> {
    let (_, mut env) = r.map_err(hub_error)?;
    if env.get("ok") == Some(&Value::Bool(true)) {
        return Ok(env
            .get_mut("result")
            .map(Value::take)
            .unwrap_or(Value::Null));
    }
    let mut text = env
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("unknown hub error")
        .to_string();
    if let Some(c) = env.get("conflicts").filter(|c| !c.is_null()) {
        text.push_str(&format!("\nconflicts: {c}"));
    }
    Err(text)
}

/// The `result` of a plain request (`GET`, or `POST` with `body`).
fn result(
    s: &Shared,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::result::Result<Value, String> {
    let env = s
        .client
        .request(method, path, body, s.client.timeout)
        .map_err(hub_error)?;
    Ok(env.get("result").cloned().unwrap_or(Value::Null))
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
            for (j, (n, _)) in t.args.iter().enumerate() {
                assert!(t.args[..j].iter().all(|(m, _)| m != n), "{}: {n}", t.name);
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

    #[test]
    fn every_tool_has_an_area_tag_and_tags_never_shadow_names() {
        let tags = tags();
        assert_eq!(
            tags,
            [
                "core",
                "messages",
                "agents",
                "channels",
                "work",
                "reservations",
                "delivery",
                "threads",
                "claims",
                "locks",
                "admin"
            ]
        );
        for t in TOOLS {
            assert!(t.tags.iter().any(|g| *g != "core"), "{}", t.name);
            assert!(!tags.contains(&t.name) && t.name != "all", "{}", t.name);
        }
    }
}
