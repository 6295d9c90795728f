//! Every command-line flag, once, as data: its name, its value's
//! placeholder (none for a switch), the commands that take it, and its
//! help line. Parsing, the "does not take" errors and the help text all
//! come from [`FLAGS`]. Defaults are not written here: help shows them
//! from the modules that own them ([`default_of`]).

use crate::error::{Error, Result};

/// One flag. `cmds` lists the commands that accept it; `*` is the
/// foreground hub (no subcommand, or `serve`).
pub struct Flag {
    pub name: &'static str,
    pub value: Option<&'static str>,
    pub cmds: &'static [&'static str],
    pub help: &'static str,
}

const HUB: &[&str] = &["*", "ensure"];
const LOCATE: &[&str] = &["*", "ensure", "stop", "reset"];
/// The commands that act as one agent (and take `--agent`), with any
/// others that also take the flag being defined.
macro_rules! agent_cmds {
    ($($extra:literal),*) => {
        &[$($extra,)* "mcp", "post", "poll", "whoami", "hook", "hooks", "watch", "reserve",
          "release-reservation", "next", "handoff", "guard"]
    };
}

const AGENT: &[&str] = agent_cmds!();
const RELAY_DIR: &[&str] = agent_cmds!("smoke-agent");
const BASE_URL: &[&str] = agent_cmds!("relay", "smoke-agent");

macro_rules! flags {
    ($( $name:literal $value:expr, $cmds:expr => $help:literal; )*) => {
        /// The flag table, in help order.
        pub static FLAGS: &[Flag] = &[
            $( Flag { name: $name, value: $value, cmds: $cmds, help: $help }, )*
        ];
    };
}

flags! {
    "host" Some("HOST"), LOCATE => "listen host (non-loopback needs --allow-remote)";
    "port" Some("PORT"), LOCATE => "listen port (0 picks a free port)";
    "storage" Some("PATH"), LOCATE => "SQLite database";
    "allow-remote" None, HUB => "allow a non-loopback bind (there is no built-in auth)";
    "quiet" None, HUB => "no lifecycle log lines";
    "spool-dir" Some("DIR"), &["*", "ensure", "relay"] => "relay spool directory";
    "max-body-chars" Some("N"), HUB => "message body limit, in characters";
    "max-attachment-chars" Some("N"), HUB => "per-attachment limit";
    "max-attachments" Some("N"), HUB => "attachments per message";
    "presence-ttl-sec" Some("N"), HUB => "seconds before a silent agent expires (min 5)";
    "max-waiters" Some("N"), HUB => "parked long-polls and streams, hub-wide";
    "max-waiters-per-agent" Some("N"), HUB => "parked long-polls and streams per agent";
    "max-connections" Some("N"), HUB => "open client connections";
    "relay-max-wait-sec" Some("S"), HUB => "clamp for relayed long-polls";
    "relay-retention-sec" Some("S"), HUB => "keep relay .work and response files this long";
    "no-relay" None, HUB => "do not run the built-in file relay";
    "relay-allow-admin" None, &["*", "ensure", "relay"] => "let spool writers reach the admin routes (shutdown, network)";
    "timeout" Some("SECONDS"), &["ensure", "poll"] => "how long to wait (readiness, or the long-poll)";
    "force" None, &["reset"] => "delete the database even while a process holds it open";
    "agent" Some("ID"), AGENT => "agent id";
    "base-url" Some("URL"), BASE_URL => "hub URL";
    "relay-dir" Some("DIR"), RELAY_DIR => "talk through a relay spool instead of HTTP";
    "tools" Some("LIST"), &["mcp"] => "tools to offer: core, all, or a list of names and tags";
    "claude-channel" None, &["mcp"] => "push new messages as Claude Code channel notifications (also ARC_MCP_CLAUDE_CHANNEL=1)";
    "channel" Some("NAME"), &["smoke-agent", "post", "poll", "next"] => "channel";
    "to" Some("AGENT"), &["post", "handoff"] => "send a direct message to AGENT instead (handoff: the new holder)";
    "kind" Some("KIND"), &["post"] => "message kind";
    "thread-id" Some("ID"), &["smoke-agent", "post", "poll"] => "thread";
    "since-id" Some("N"), &["poll"] => "start after this id (0 replays history)";
    "from-now" None, &["poll"] => "start after the newest visible message";
    "cursor-file" Some("PATH"), &["poll"] => "read the start id from PATH and store the last id back";
    "include-self" None, &["poll"] => "include the agent's own messages";
    "poll-interval-sec" Some("S"), &["relay", "smoke-agent"] => "how often to look again";
    "request-timeout-sec" Some("S"), &["relay"] => "how long one forwarded request may take";
    "max-wait-sec" Some("S"), &["relay"] => "clamp for relayed long-polls";
    "retention-sec" Some("S"), &["relay"] => "keep .work and response files this long";
    "role" Some("ROLE"), &["smoke-agent"] => "smoke-a, smoke-b or smoke-c";
    "transport" Some("T"), &["smoke-agent"] => "http or relay";
    "claim-key" Some("KEY"), &["smoke-agent"] => "claim key";
    "timeout-sec" Some("S"), &["smoke-agent"] => "how long the role may take";
    "run-id" Some("ID"), &["smoke-agent"] => "suffix for channel, thread and claim key";
    "path-case" Some("MODE"), HUB => "reservations compare paths case-sensitively or not: sensitive|insensitive";
    "project-root" Some("DIR"), HUB => "the project reservation paths are relative to (default: the hub's directory)";
    "shared" None, &["reserve"] => "a shared reservation (others may share it; exclusive by default)";
    "ttl" Some("S"), &["reserve"] => "how long the reservation lasts";
    "task" Some("ID"), &["reserve"] => "tie the reservation to a task (released when it completes)";
    "reason" Some("TEXT"), &["reserve"] => "why (shown to whoever is refused)";
    "wait" Some("S"), &["next"] => "wait this long for a task to become ready";
    "note" Some("TEXT"), &["handoff"] => "what the new holder should know";
    "warn-only" None, &["guard"] => "report held paths but let the commit through";
    "strict" None, &["guard"] => "refuse the commit when the hub cannot be reached";
    "max-wait" Some("SECONDS"), &["hook"] => "how long a Stop hook waits for a message";
    "bodies" None, &["hook"] => "show message bodies, not only headers";
    "project" Some("DIR"), &["hooks"] => "the project whose settings file to change (default: here)";
    "user" None, &["hooks"] => "change the user-level settings file instead";
    "dry-run" None, &["hooks"] => "print the result, write nothing";
    "exec" Some("CMD"), &["watch"] => "command to run for each batch (JSON lines on stdin)";
    "debounce-ms" Some("N"), &["watch"] => "gather messages this long before running the command";
    "exec-timeout-sec" Some("S"), &["watch"] => "how long one run of the command may take";
}

/// The flag named `name`.
pub fn flag(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.name == name)
}

/// Refuses a flag the command does not take.
pub fn check_allowed(name: &str, cmd: &str) -> Result<()> {
    let key = if cmd == "serve" { "*" } else { cmd };
    let allowed = flag(name).map(|f| f.cmds).unwrap_or(&[]);
    if allowed.contains(&key) {
        Ok(())
    } else if key == "*" {
        Err(Error::Usage(format!(
            "--{name} needs a subcommand (one of: {})",
            allowed.join(", ")
        )))
    } else {
        Err(Error::Usage(format!("{cmd} does not take --{name}")))
    }
}

/// The default of a flag for a command, from the module that owns it.
pub fn default_of(name: &str, cmd: &str) -> Option<String> {
    use crate::config::HubConfig;
    let hub = HubConfig::default();
    let relay = crate::relay::RelayConfig::new(crate::client::DEFAULT_BASE_URL, ".".as_ref());
    Some(match (name, cmd) {
        ("host", _) => hub.host,
        ("port", _) => hub.port.to_string(),
        ("storage", _) => hub.storage.display().to_string(),
        ("spool-dir", _) => hub.spool_dir.display().to_string(),
        ("max-body-chars", _) => hub.max_body_chars.to_string(),
        ("max-attachment-chars", _) => hub.max_attachment_chars.to_string(),
        ("max-attachments", _) => hub.max_attachments.to_string(),
        ("presence-ttl-sec", _) => hub.presence_ttl_sec.to_string(),
        ("max-waiters", _) => hub.max_waiters.to_string(),
        ("max-waiters-per-agent", _) => hub.max_waiters_per_agent.to_string(),
        ("max-connections", _) => hub.max_connections.to_string(),
        ("relay-max-wait-sec", _) => hub.relay_max_wait_sec.to_string(),
        ("relay-retention-sec", _) => hub.relay_retention.as_secs().to_string(),
        ("timeout", "ensure") => crate::lifecycle::ENSURE_TIMEOUT_SEC.to_string(),
        ("timeout", "poll") => super::agent::POLL_TIMEOUT_SEC.to_string(),
        ("agent", "mcp") => crate::mcp::DEFAULT_AGENT.to_string(),
        ("tools", "mcp") => crate::mcp::profile::DEFAULT_SPEC.to_string(),
        ("base-url", _) => crate::client::DEFAULT_BASE_URL.to_string(),
        ("relay-dir", "smoke-agent") => hub.spool_dir.display().to_string(),
        ("channel", "post") => "general".to_string(),
        ("channel", "smoke-agent") => crate::smoke::DEFAULT_CHANNEL.to_string(),
        ("thread-id", "smoke-agent") => crate::smoke::DEFAULT_THREAD.to_string(),
        ("claim-key", "smoke-agent") => crate::smoke::DEFAULT_CLAIM_KEY.to_string(),
        ("timeout-sec", "smoke-agent") => crate::smoke::DEFAULT_TIMEOUT_SEC.to_string(),
        ("poll-interval-sec", "smoke-agent") => crate::smoke::DEFAULT_POLL_SEC.to_string(),
        ("poll-interval-sec", "relay") => relay.poll_interval.as_secs_f64().to_string(),
        ("request-timeout-sec", _) => relay.request_timeout.as_secs_f64().to_string(),
        ("max-wait-sec", _) => relay.max_wait_sec.to_string(),
        ("retention-sec", _) => relay.retention.as_secs().to_string(),
        ("kind", _) => "chat".to_string(),
        ("since-id", _) => "0".to_string(),
        ("max-wait", _) => crate::wake::DEFAULT_MAX_WAIT_SEC.to_string(),
        ("debounce-ms", _) => crate::wake::DEFAULT_DEBOUNCE_MS.to_string(),
        ("exec-timeout-sec", _) => crate::wake::DEFAULT_EXEC_TIMEOUT_SEC.to_string(),
        ("path-case", _) => if hub.case_insensitive_paths {
            "insensitive"
        } else {
            "sensitive"
        }
        .to_string(),
        ("ttl", _) => crate::wire::RESERVATION_TTL_SEC.to_string(),
        _ => return None,
    })
}

/// Everything gathered from the arguments before interpretation.
#[derive(Debug, Default)]
pub struct Raw {
    pub command: Option<String>,
    pub values: Vec<(String, String)>,
    pub switches: Vec<String>,
    pub positionals: Vec<String>,
    pub help: bool,
    pub version: bool,
}

impl Raw {
    /// The value given last for `name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value, or `default`.
    pub fn value_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.value(name).unwrap_or(default)
    }

    pub fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    pub fn parsed<T: std::str::FromStr>(&self, name: &str, what: &str) -> Result<Option<T>> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Error::Usage(format!("--{name} must be {what}, got {v:?}"))),
        }
    }

    /// A duration in seconds: finite, not negative, at most ten years (so
    /// it always fits a `Duration` and an `Instant` deadline).
    pub fn seconds(&self, name: &str) -> Result<Option<f64>> {
        const MAX: f64 = crate::store::MAX_TTL_SEC as f64;
        match self.parsed::<f64>(name, "a number of seconds")? {
            Some(v) if !v.is_finite() || v < 0.0 => Err(Error::Usage(format!(
                "--{name} must be a non-negative number of seconds"
            ))),
            Some(v) if v > MAX => Err(Error::Usage(format!(
                "--{name} must be at most {MAX} seconds"
            ))),
            other => Ok(other),
        }
    }

    pub fn required(&self, name: &str) -> Result<String> {
        self.value(name)
            .map(str::to_string)
            .ok_or_else(|| Error::Usage(format!("the --{name} flag is required")))
    }

    /// A choice among `options` (required).
    pub fn choice(&self, name: &str, options: &[&str]) -> Result<String> {
        let v = self.required(name)?;
        if options.contains(&v.as_str()) {
            Ok(v)
        } else {
            Err(Error::Usage(format!(
                "--{name} must be one of: {}",
                options.join(", ")
            )))
        }
    }
}
