//! Help text, made from the command table and the flag table.

use super::flags::{FLAGS, default_of};

/// One subcommand: name, one-line summary, usage line, and what else its
/// help says.
pub struct CommandHelp {
    pub name: &'static str,
    pub summary: &'static str,
    pub usage: &'static str,
    pub notes: &'static str,
}

/// Every subcommand, in help order.
pub static COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        name: "serve",
        summary: "run the hub in the foreground",
        usage: "arc [serve] [flags]",
        notes: "",
    },
    CommandHelp {
        name: "ensure",
        summary: "start a background hub unless one is already running",
        usage: "arc ensure [flags]",
        notes: "Prints JSON {running, started, url[, error]}; exits 0 when the hub is running.",
    },
    CommandHelp {
        name: "stop",
        summary: "stop the hub found through its pidfile or --host/--port",
        usage: "arc stop [--host H] [--port P] [--storage PATH]",
        notes: "Asks the hub to stop; signals only a pid the hub itself reports.",
    },
    CommandHelp {
        name: "reset",
        summary: "stop the hub, then delete the database and its -wal/-shm files",
        usage: "arc reset [--host H] [--port P] [--storage PATH] [--force]",
        notes: "Refuses to delete a database that another process holds open (a hub\nwithout a pidfile, say) unless --force is given.",
    },
    CommandHelp {
        name: "post",
        summary: "post one message",
        usage: "arc post --agent ID [flags] BODY",
        notes: "",
    },
    CommandHelp {
        name: "poll",
        summary: "wait for messages visible to an agent and print them, one JSON per line",
        usage: "arc poll --agent ID [flags]",
        notes: "",
    },
    CommandHelp {
        name: "whoami",
        summary: "print the agent's bootstrap view",
        usage: "arc whoami --agent ID [flags]",
        notes: "",
    },
    CommandHelp {
        name: "hook",
        summary: "run one harness hook event (stdin) for an agent: context, or a wake",
        usage: "arc hook claude-code|codex|gemini --agent ID [--base-url URL | --relay-dir DIR] [--max-wait SECONDS] [--bodies]",
        notes: "Never fails the harness: errors exit 0 with one line on stderr. See docs/WAKE.md.",
    },
    CommandHelp {
        name: "hooks",
        summary: "add Arc's hooks to a harness's settings file, or take them out",
        usage: "arc hooks install|uninstall claude-code|codex|gemini --agent ID [--project DIR | --user] [--dry-run]",
        notes: "Keeps every other key and hook, saves the previous file beside it\n(.arc-backup), and refuses a file it cannot parse. See docs/WAKE.md.",
    },
    CommandHelp {
        name: "watch",
        summary: "run a command for each new batch of messages visible to an agent",
        usage: "arc watch --agent ID --exec 'CMD ...' [--base-url URL | --relay-dir DIR] [--debounce-ms N]",
        notes: "The batch is JSON lines on stdin; ARC_AGENT, ARC_COUNT, ARC_MESSAGE_ID,\nARC_FROM_AGENT, ARC_CHANNEL and ARC_KIND are set. A batch counts as\nsurfaced only when CMD exits 0; failures are retried. See docs/WAKE.md.",
    },
    CommandHelp {
        name: "reserve",
        summary: "reserve path patterns for an agent (exclusive unless --shared)",
        usage: "arc reserve --agent ID PATTERN... [--shared] [--ttl S] [--task ID] [--reason TEXT]",
        notes: "Patterns are globs relative to the project (*, **, ?, [a-z]). All or nothing:\non a conflict nothing is reserved and the holders are printed.",
    },
    CommandHelp {
        name: "release-reservation",
        summary: "release one of the agent's reservations",
        usage: "arc release-reservation --agent ID RESERVATION_ID",
        notes: "",
    },
    CommandHelp {
        name: "next",
        summary: "claim the next ready task (and reserve its paths) in one step",
        usage: "arc next --agent ID [--channel NAME] [--wait S]",
        notes: "Prints the task, claim, reservations and briefing, or null when nothing is ready.",
    },
    CommandHelp {
        name: "handoff",
        summary: "hand a claimed task (its claim and reservations) to another agent",
        usage: "arc handoff --agent ID TASK_ID --to AGENT [--note TEXT]",
        notes: "",
    },
    CommandHelp {
        name: "guard",
        summary: "refuse a commit that touches paths another agent holds, or install that git hook",
        usage: "arc guard pre-commit|install --agent ID [--base-url URL | --relay-dir DIR] [--warn-only] [--strict]",
        notes: "An unreachable hub allows the commit (one line says so) unless --strict.",
    },
    CommandHelp {
        name: "relay",
        summary: "serve a relay spool against a hub",
        usage: "arc relay [flags]",
        notes: "",
    },
    CommandHelp {
        name: "mcp",
        summary: "an MCP server on stdio for one agent",
        usage: "arc mcp [--agent ID] [--base-url URL | --relay-dir DIR] [--tools core|all|LIST]",
        notes: "See docs/MCP.md.",
    },
    CommandHelp {
        name: "smoke-agent",
        summary: "run one role of the three-agent smoke test",
        usage: "arc smoke-agent --role ROLE --transport http|relay [flags]",
        notes: "",
    },
    CommandHelp {
        name: "help",
        summary: "show help for a command",
        usage: "arc help [COMMAND]",
        notes: "",
    },
];

/// The usage line printed with usage errors.
pub fn usage() -> String {
    let names: Vec<&str> = COMMANDS
        .iter()
        .map(|c| c.name)
        .filter(|n| *n != "help")
        .collect();
    format!(
        "usage: arc [--host H] [--port P] [--storage PATH] [...] [{}] [--help]",
        names.join("|")
    )
}

/// The flag lines of `cmd` (`*` for the hub), with their defaults.
fn flag_lines(cmd: &str) -> String {
    let key = if cmd == "serve" { "*" } else { cmd };
    let mut out = String::new();
    for f in FLAGS.iter().filter(|f| f.cmds.contains(&key)) {
        let left = match f.value {
            Some(v) => format!("--{} {v}", f.name),
            None => format!("--{}", f.name),
        };
        let default = default_of(f.name, cmd)
            .map(|d| format!(" (default {d})"))
            .unwrap_or_default();
        out.push_str(&format!("  {left:<28}{}{default}\n", f.help));
    }
    out
}

/// What `arc mcp --help` says about `--tools`: the size of each profile's
/// `tools/list` and the tags, computed from the tool table when asked.
fn mcp_tools() -> String {
    use crate::mcp::profile::{sizes, thousands};
    let mut s = String::from(
        "Profiles (the size of tools/list as compact JSON; tokens approximate, bytes/4):\n",
    );
    for (name, count, bytes, tokens) in sizes() {
        s.push_str(&format!(
            "  {name:<6}{count:>3} tools {:>8} bytes  ~{} tokens\n",
            thousands(bytes),
            thousands(tokens)
        ));
    }
    s.push_str("Tags (--tools takes these, tool names, and all):");
    for tag in crate::mcp::profile::tags() {
        let names: Vec<&str> = crate::mcp::TOOLS
            .iter()
            .filter(|t| t.tags.contains(&tag))
            .map(|t| t.name)
            .collect();
        s.push_str(&format!("\n  {tag:<14}"));
        let mut width = 16;
        for (i, n) in names.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            if width + sep.len() + n.len() > 79 {
                s.push_str(&format!("\n{:16}", ""));
                width = 16;
            } else {
                s.push_str(sep);
                width += sep.len();
            }
            s.push_str(n);
            width += n.len();
        }
    }
    s
}

/// Help for `arc --help` and `arc <command> --help`.
pub fn help(topic: Option<&str>) -> String {
    if let Some(c) = topic.and_then(|t| COMMANDS.iter().find(|c| c.name == t)) {
        if c.name != "serve" {
            let mut s = format!("arc {}: {}\n\nusage: {}\n", c.name, c.summary, c.usage);
            let flags = flag_lines(c.name);
            if !flags.is_empty() {
                s.push_str(&format!("\n{flags}"));
            }
            if c.name == "mcp" {
                s.push_str(&format!("\n{}\n", mcp_tools()));
            }
            if !c.notes.is_empty() {
                s.push_str(&format!("\n{}\n", c.notes));
            }
            return s.trim_end().to_string();
        }
    }
    let mut s = format!(
        "arc {}: a local coordination hub for AI agents\n\nusage: arc [flags]            run the hub in the foreground (same as `arc serve`)\n       arc <command> [flags]\n\ncommands:\n",
        crate::wire::VERSION
    );
    for c in COMMANDS {
        s.push_str(&format!("  {:<13}{}\n", c.name, c.summary));
    }
    s.push_str(&format!("\nhub flags:\n{}", flag_lines("serve")));
    s.push_str(
        "\nRun `arc <command> --help` for a command's flags. Flags may come before or after the command.",
    );
    s
}
