/*!
The command line: lexopt into a [`Command`], then dispatch.

Flags may appear before or after the subcommand and mean the same thing in
either place (the reference let a subcommand's default override a flag
given before it, spec §15 item 39). Parsing works on any iterator of
arguments, so tests call [`parse`] directly. Usage errors exit 2 with a
usage line; other failures print `arc: <area>: <detail>` once and exit 1,
except the agent commands (`post`, `poll`, `whoami`), which keep the
reference's `arc error: <message>` on stdout.
*/

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::client::{Client, Post};
use crate::config::HubConfig;
use crate::error::{Error, Result};
use crate::wire::to_python_json;

/// Subcommand names, in help order.
const COMMANDS: [&str; 11] = [
    "serve",
    "ensure",
    "stop",
    "reset",
    "post",
    "poll",
    "whoami",
    "relay",
    "mcp",
    "smoke-agent",
    "help",
];

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run the hub in the foreground (no subcommand, or `serve`).
    Serve(Box<HubConfig>),
    Ensure(EnsureArgs),
    Stop(LocateArgs),
    Reset(LocateArgs),
    Post(PostArgs),
    Poll(PollArgs),
    Whoami(AgentArgs),
    Relay(RelayArgs),
    Mcp(AgentArgs),
    Smoke(SmokeArgs),
    Version,
    Help(Option<String>),
}

/// Where to find (or start) a hub.
#[derive(Debug, Clone, PartialEq)]
pub struct LocateArgs {
    pub host: String,
    pub port: u16,
    pub storage: PathBuf,
    /// `reset --force`: delete the database even while a process holds it.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnsureArgs {
    pub hub: Box<HubConfig>,
    pub timeout: Duration,
}

/// An agent talking to a hub over HTTP or the relay spool.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentArgs {
    pub agent: String,
    pub base_url: String,
    pub relay_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostArgs {
    pub agent: AgentArgs,
    pub channel: String,
    pub to: Option<String>,
    pub kind: String,
    pub thread_id: Option<String>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PollArgs {
    pub agent: AgentArgs,
    pub channel: Option<String>,
    pub thread_id: Option<String>,
    pub timeout: f64,
    pub since_id: i64,
    pub include_self: bool,
    pub from_now: bool,
    pub cursor_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelayArgs {
    pub base_url: String,
    pub spool_dir: PathBuf,
    pub poll_interval: Duration,
    pub request_timeout: Duration,
    pub max_wait_sec: f64,
    pub retention: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SmokeArgs {
    pub role: String,
    pub transport: String,
    pub base_url: String,
    pub relay_dir: PathBuf,
    pub channel: String,
    pub thread_id: String,
    pub claim_key: String,
    pub timeout_sec: f64,
    pub poll_interval_sec: f64,
    pub run_id: Option<String>,
}

/// Flags that take a value, and the commands that accept them.
/// `*` = the foreground hub (no subcommand or `serve`).
const VALUE_FLAGS: &[(&str, &[&str])] = &[
    ("host", &["*", "ensure", "stop", "reset"]),
    ("port", &["*", "ensure", "stop", "reset"]),
    ("storage", &["*", "ensure", "stop", "reset"]),
    ("spool-dir", &["*", "ensure", "relay"]),
    ("max-body-chars", &["*", "ensure"]),
    ("max-attachment-chars", &["*", "ensure"]),
    ("max-attachments", &["*", "ensure"]),
    ("presence-ttl-sec", &["*", "ensure"]),
    ("max-waiters", &["*", "ensure"]),
    ("max-waiters-per-agent", &["*", "ensure"]),
    ("max-connections", &["*", "ensure"]),
    ("relay-max-wait-sec", &["*", "ensure"]),
    ("relay-retention-sec", &["*", "ensure"]),
    ("timeout", &["ensure", "poll"]),
    (
        "base-url",
        &["relay", "mcp", "smoke-agent", "post", "poll", "whoami"],
    ),
    ("poll-interval-sec", &["relay", "smoke-agent"]),
    ("request-timeout-sec", &["relay"]),
    ("max-wait-sec", &["relay"]),
    ("retention-sec", &["relay"]),
    ("agent", &["mcp", "post", "poll", "whoami"]),
    (
        "relay-dir",
        &["mcp", "smoke-agent", "post", "poll", "whoami"],
    ),
    ("role", &["smoke-agent"]),
    ("transport", &["smoke-agent"]),
    ("channel", &["smoke-agent", "post", "poll"]),
    ("thread-id", &["smoke-agent", "post", "poll"]),
    ("claim-key", &["smoke-agent"]),
    ("timeout-sec", &["smoke-agent"]),
    ("run-id", &["smoke-agent"]),
    ("to", &["post"]),
    ("kind", &["post"]),
    ("since-id", &["poll"]),
    ("cursor-file", &["poll"]),
];

/// Switches (no value) and the commands that accept them.
const SWITCHES: &[(&str, &[&str])] = &[
    ("allow-remote", &["*", "ensure"]),
    ("quiet", &["*", "ensure"]),
    ("no-relay", &["*", "ensure"]),
    ("include-self", &["poll"]),
    ("from-now", &["poll"]),
    ("force", &["reset"]),
];

/// Everything gathered from the arguments before interpretation.
#[derive(Debug, Default)]
struct Raw {
    command: Option<String>,
    values: Vec<(String, String)>,
    switches: Vec<String>,
    positionals: Vec<String>,
    help: bool,
    version: bool,
}

impl Raw {
    fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    fn parsed<T: std::str::FromStr>(&self, name: &str, what: &str) -> Result<Option<T>> {
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
    fn seconds(&self, name: &str) -> Result<Option<f64>> {
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

    fn required(&self, name: &str) -> Result<String> {
        self.value(name)
            .map(str::to_string)
            .ok_or_else(|| Error::Usage(format!("the --{name} flag is required")))
    }
}

/// Parses arguments (without the program name) into a [`Command`].
pub fn parse<I, S>(args: I) -> Result<Command>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    use lexopt::prelude::*;
    let mut raw = Raw::default();
    let mut p = lexopt::Parser::from_args(args.into_iter().map(Into::into));
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => raw.help = true,
            Short('V') | Long("version") => raw.version = true,
            Long(name) => {
                let name = name.to_string();
                if VALUE_FLAGS.iter().any(|(n, _)| *n == name) {
                    let v = p
                        .value()?
                        .into_string()
                        .map_err(|v| Error::Usage(format!("--{name} is not valid UTF-8: {v:?}")))?;
                    raw.values.push((name, v));
                } else if SWITCHES.iter().any(|(n, _)| *n == name) {
                    raw.switches.push(name);
                } else {
                    return Err(Error::Usage(format!("unexpected flag --{name}")));
                }
            }
            Short(c) => return Err(Error::Usage(format!("unexpected flag -{c}"))),
            Value(v) => {
                let v = v
                    .into_string()
                    .map_err(|v| Error::Usage(format!("argument is not valid UTF-8: {v:?}")))?;
                if raw.command.is_none() && raw.positionals.is_empty() {
                    if !COMMANDS.contains(&v.as_str()) {
                        return Err(Error::Usage(format!("unknown command {v:?}")));
                    }
                    raw.command = Some(v);
                } else {
                    raw.positionals.push(v);
                }
            }
        }
    }
    if raw.version {
        return Ok(Command::Version);
    }
    let cmd = raw.command.clone().unwrap_or_else(|| "serve".into());
    if raw.help || cmd == "help" {
        let topic = if cmd == "help" {
            raw.positionals.first().cloned()
        } else {
            raw.command.clone()
        };
        return Ok(Command::Help(topic));
    }
    let key = if cmd == "serve" { "*" } else { cmd.as_str() };
    for (name, _) in &raw.values {
        check_allowed(VALUE_FLAGS, name, key, &cmd)?;
    }
    for name in &raw.switches {
        check_allowed(SWITCHES, name, key, &cmd)?;
    }
    if cmd != "post" && !raw.positionals.is_empty() {
        return Err(Error::Usage(format!(
            "unexpected argument {:?}",
            raw.positionals[0]
        )));
    }
    Ok(match cmd.as_str() {
        "serve" => Command::Serve(Box::new(hub_config(&raw)?)),
        "ensure" => Command::Ensure(EnsureArgs {
            hub: Box::new(hub_config(&raw)?),
            timeout: Duration::from_secs_f64(raw.seconds("timeout")?.unwrap_or(60.0)),
        }),
        "stop" => Command::Stop(locate(&raw)?),
        "reset" => Command::Reset(locate(&raw)?),
        "post" => {
            let agent = agent_args(&raw, None)?;
            let body = match raw.positionals.as_slice() {
                [body] => body.clone(),
                [] => return Err(Error::Usage("post needs a message body".into())),
                more => return Err(Error::Usage(format!("unexpected argument {:?}", more[1]))),
            };
            let kind = raw.value("kind").unwrap_or("chat").to_lowercase();
            if !crate::wire::MESSAGE_KINDS.contains(&kind.as_str()) {
                return Err(Error::Usage(format!(
                    "--kind must be one of: {}",
                    crate::wire::MESSAGE_KINDS.join(", ")
                )));
            }
            Command::Post(PostArgs {
                agent,
                channel: raw.value("channel").unwrap_or("general").to_string(),
                to: raw.value("to").map(str::to_string),
                kind,
                thread_id: raw.value("thread-id").map(str::to_string),
                body,
            })
        }
        "poll" => Command::Poll(PollArgs {
            agent: agent_args(&raw, None)?,
            channel: raw.value("channel").map(str::to_string),
            thread_id: raw.value("thread-id").map(str::to_string),
            timeout: raw.seconds("timeout")?.unwrap_or(30.0),
            since_id: match raw.parsed::<i64>("since-id", "an integer")? {
                Some(n) if n < 0 => return Err(Error::Usage("--since-id must be >= 0".into())),
                other => other.unwrap_or(0),
            },
            include_self: raw.switch("include-self"),
            from_now: raw.switch("from-now"),
            cursor_file: raw.value("cursor-file").map(PathBuf::from),
        }),
        "whoami" => Command::Whoami(agent_args(&raw, None)?),
        "mcp" => Command::Mcp(agent_args(&raw, Some("mcp-client"))?),
        "relay" => Command::Relay(RelayArgs {
            base_url: raw
                .value("base-url")
                .unwrap_or("http://127.0.0.1:6969")
                .to_string(),
            spool_dir: PathBuf::from(raw.value("spool-dir").unwrap_or(".arc-relay")),
            poll_interval: Duration::from_secs_f64(
                raw.seconds("poll-interval-sec")?.unwrap_or(0.01).max(0.001),
            ),
            request_timeout: Duration::from_secs_f64(
                raw.seconds("request-timeout-sec")?.unwrap_or(30.0).max(0.1),
            ),
            max_wait_sec: raw.seconds("max-wait-sec")?.unwrap_or(20.0),
            retention: Duration::from_secs_f64(raw.seconds("retention-sec")?.unwrap_or(3600.0)),
        }),
        "smoke-agent" => {
            let role = raw.required("role")?;
            if !["smoke-a", "smoke-b", "smoke-c"].contains(&role.as_str()) {
                return Err(Error::Usage(
                    "--role must be one of: smoke-a, smoke-b, smoke-c".into(),
                ));
            }
            let transport = raw.required("transport")?;
            if !["http", "relay"].contains(&transport.as_str()) {
                return Err(Error::Usage(
                    "--transport must be one of: http, relay".into(),
                ));
            }
            Command::Smoke(SmokeArgs {
                role,
                transport,
                base_url: raw
                    .value("base-url")
                    .unwrap_or("http://127.0.0.1:6969")
                    .to_string(),
                relay_dir: PathBuf::from(raw.value("relay-dir").unwrap_or(".arc-relay")),
                channel: raw.value("channel").unwrap_or("smoke-room").to_string(),
                thread_id: raw
                    .value("thread-id")
                    .unwrap_or("smoke-relay-001")
                    .to_string(),
                claim_key: raw
                    .value("claim-key")
                    .unwrap_or("smoke-claim-001")
                    .to_string(),
                timeout_sec: raw.seconds("timeout-sec")?.unwrap_or(120.0),
                poll_interval_sec: raw.seconds("poll-interval-sec")?.unwrap_or(1.0),
                run_id: raw.value("run-id").map(str::to_string),
            })
        }
        other => return Err(Error::Usage(format!("unknown command {other:?}"))),
    })
}

fn check_allowed(table: &[(&str, &[&str])], name: &str, key: &str, cmd: &str) -> Result<()> {
    let allowed = table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .unwrap_or(&[]);
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

fn port(raw: &Raw) -> Result<u16> {
    match raw.value("port") {
        None => Ok(6969),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if (0..=65535).contains(&n) => Ok(n as u16),
            Ok(_) => Err(Error::Usage("port out of range (0-65535)".into())),
            Err(_) => Err(Error::Usage(format!(
                "--port must be an integer, got {v:?}"
            ))),
        },
    }
}

fn locate(raw: &Raw) -> Result<LocateArgs> {
    Ok(LocateArgs {
        host: raw.value("host").unwrap_or("127.0.0.1").to_string(),
        port: port(raw)?,
        storage: PathBuf::from(raw.value("storage").unwrap_or("arc.sqlite3")),
        force: raw.switch("force"),
    })
}

fn hub_config(raw: &Raw) -> Result<HubConfig> {
    let d = HubConfig::default();
    let size = |name: &str, default: usize, min: usize| -> Result<usize> {
        let v = raw
            .parsed::<i64>(name, "an integer")?
            .map(|v| v as i128)
            .unwrap_or(default as i128);
        if v < min as i128 {
            return Err(Error::Usage(format!("--{name} must be at least {min}")));
        }
        Ok(usize::try_from(v).unwrap_or(usize::MAX))
    };
    let ttl = raw
        .parsed::<i64>("presence-ttl-sec", "an integer")?
        .unwrap_or(d.presence_ttl_sec);
    if ttl < 5 {
        return Err(Error::Usage("--presence-ttl-sec must be at least 5".into()));
    }
    Ok(HubConfig {
        host: raw.value("host").unwrap_or(&d.host).to_string(),
        port: port(raw)?,
        storage: PathBuf::from(raw.value("storage").unwrap_or("arc.sqlite3")),
        allow_remote: raw.switch("allow-remote"),
        quiet: raw.switch("quiet"),
        spool_dir: PathBuf::from(raw.value("spool-dir").unwrap_or(".arc-relay")),
        max_body_chars: size("max-body-chars", d.max_body_chars, 1)?,
        max_attachment_chars: size("max-attachment-chars", d.max_attachment_chars, 1)?,
        max_attachments: size("max-attachments", d.max_attachments, 0)?,
        presence_ttl_sec: ttl,
        max_waiters: size("max-waiters", d.max_waiters, 1)?,
        max_waiters_per_agent: size("max-waiters-per-agent", d.max_waiters_per_agent, 1)?,
        max_connections: size("max-connections", d.max_connections, 1)?,
        relay: d.relay && !raw.switch("no-relay"),
        relay_max_wait_sec: raw
            .seconds("relay-max-wait-sec")?
            .unwrap_or(d.relay_max_wait_sec),
        relay_retention: match raw.seconds("relay-retention-sec")? {
            Some(s) => Duration::from_secs_f64(s),
            None => d.relay_retention,
        },
        ..d
    })
}

fn agent_args(raw: &Raw, default_agent: Option<&str>) -> Result<AgentArgs> {
    let agent = match (raw.value("agent"), default_agent) {
        (Some(a), _) => a.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => return Err(Error::Usage("the --agent flag is required".into())),
    };
    if agent.trim().is_empty() {
        return Err(Error::Usage("--agent must not be empty".into()));
    }
    Ok(AgentArgs {
        agent,
        base_url: raw
            .value("base-url")
            .unwrap_or("http://127.0.0.1:6969")
            .trim_end_matches('/')
            .to_string(),
        relay_dir: raw.value("relay-dir").map(PathBuf::from),
    })
}

/// The usage line printed with usage errors.
pub const USAGE: &str = "usage: arc [--host H] [--port P] [--storage PATH] [...] [serve|ensure|stop|reset|post|poll|whoami|relay|mcp|smoke-agent] [--help]";

/// Help text for `arc --help` and `arc <command> --help`.
pub fn help(topic: Option<&str>) -> String {
    let hub_flags = "  --host HOST                 listen host (default 127.0.0.1; non-loopback needs --allow-remote)
  --port PORT                 listen port (default 6969; 0 picks a free port)
  --storage PATH              SQLite database (default arc.sqlite3)
  --allow-remote              allow a non-loopback bind (no built-in auth!)
  --spool-dir DIR             relay spool directory (default .arc-relay)
  --max-body-chars N          message body limit in characters (default 128000)
  --max-attachment-chars N    per-attachment limit (default 256000)
  --max-attachments N         attachments per message (default 32)
  --presence-ttl-sec N        seconds before a silent agent expires (default 120, min 5)
  --max-waiters N             parked long-polls and streams, hub-wide (default 2048)
  --max-waiters-per-agent N   parked long-polls and streams per agent (default 16)
  --max-connections N         open client connections (default 4096)
  --relay-max-wait-sec S      clamp for relayed long-polls (default 20)
  --relay-retention-sec S     keep relay .work/response files this long (default 3600)
  --no-relay                  do not run the built-in file relay";
    let agent_flags = "  --agent ID                  agent id (required)
  --base-url URL              hub URL (default http://127.0.0.1:6969)
  --relay-dir DIR             talk through a relay spool instead of HTTP";
    match topic {
        Some("ensure") => format!(
            "arc ensure: start a background hub unless one is already running\n\nusage: arc ensure [flags]\n\n{hub_flags}\n  --timeout SECONDS           how long to wait for readiness (default 60)\n\nPrints JSON {{running, started, url[, error]}}; exits 0 when the hub is running."
        ),
        Some("stop") => "arc stop: stop the hub found through its pidfile or --host/--port\n\nusage: arc stop [--host H] [--port P] [--storage PATH]".into(),
        Some("reset") => "arc reset: stop the hub, then delete the database and its -wal/-shm files\n\nusage: arc reset [--host H] [--port P] [--storage PATH] [--force]\n\nRefuses to delete a database that another process holds open (a hub\nwithout a pidfile, say) unless --force is given.".into(),
        Some("post") => format!(
            "arc post: post one message\n\nusage: arc post --agent ID [flags] BODY\n\n{agent_flags}\n  --channel NAME              channel (default general)\n  --to AGENT                  send a direct message instead\n  --kind KIND                 one of {} (default chat)\n  --thread-id ID              thread",
            crate::wire::MESSAGE_KINDS.join(", ")
        ),
        Some("poll") => format!(
            "arc poll: wait for messages visible to an agent and print them, one JSON per line\n\nusage: arc poll --agent ID [flags]\n\n{agent_flags}\n  --channel NAME              only this channel\n  --thread-id ID              only this thread\n  --timeout SECONDS           long-poll wait (default 30)\n  --since-id N                start after this id (default 0: replay history)\n  --from-now                  start after the newest visible message\n  --cursor-file PATH          read the start id from PATH and store the last id back\n  --include-self              include the agent's own messages"
        ),
        Some("whoami") => format!("arc whoami: print the agent's bootstrap view\n\nusage: arc whoami --agent ID [flags]\n\n{agent_flags}"),
        Some("relay") => "arc relay: serve a relay spool against a hub\n\nusage: arc relay [--base-url URL] [--spool-dir DIR] [--poll-interval-sec S] [--request-timeout-sec S] [--max-wait-sec S] [--retention-sec S]".into(),
        Some("mcp") => format!("arc mcp: an MCP server on stdio for one agent\n\nusage: arc mcp [--agent ID] [--base-url URL | --relay-dir DIR]\n\n{agent_flags}"),
        Some("smoke-agent") => "arc smoke-agent: run one role of the three-agent smoke test\n\nusage: arc smoke-agent --role smoke-a|smoke-b|smoke-c --transport http|relay [--base-url URL] [--relay-dir DIR] [--channel C] [--thread-id T] [--claim-key K] [--timeout-sec S] [--poll-interval-sec S] [--run-id ID]".into(),
        _ => format!(
            "arc {}: a local coordination hub for AI agents\n\nusage: arc [flags]            run the hub in the foreground (same as `arc serve`)\n       arc <command> [flags]\n\ncommands:\n  serve        run the hub in the foreground\n  ensure       start a background hub if none is running\n  stop         stop the running hub\n  reset        stop the hub and delete its database\n  post         post a message\n  poll         long-poll for messages\n  whoami       show an agent's session and the live agents\n  relay        serve a file-relay spool\n  mcp          run an MCP stdio server\n  smoke-agent  run a smoke-test role\n\nhub flags:\n{hub_flags}\n\nRun `arc <command> --help` for a command's flags. Flags may come before or after the command.",
            crate::state::VERSION
        ),
    }
}

/// Parses and runs; returns the process exit code.
pub fn run<I, S>(args: I) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let cmd = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("arc: {e}");
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match execute(cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("arc: {e}");
            ExitCode::from(if matches!(e, Error::Usage(_)) { 2 } else { 1 })
        }
    }
}

fn execute(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Version => {
            println!("arc {}", crate::state::VERSION);
            Ok(ExitCode::SUCCESS)
        }
        Command::Help(topic) => {
            println!("{}", help(topic.as_deref()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(cfg) => serve(*cfg),
        Command::Mcp(args) => {
            crate::mcp::run_stdio(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Relay(a) => {
            let mut cfg =
                crate::relay::RelayConfig::new(&a.base_url, &crate::paths::absolute(&a.spool_dir)?);
            cfg.poll_interval = a.poll_interval;
            cfg.request_timeout = a.request_timeout;
            cfg.max_wait_sec = a.max_wait_sec;
            cfg.retention = a.retention;
            let relay = crate::relay::RelayHandle::start(cfg)?;
            let stop = relay.stopper();
            crate::sys::on_terminate(move || stop.set())?;
            crate::state::Logger::new(false).log(&format!(
                "relay started (spool={}, base_url={})",
                a.spool_dir.display(),
                a.base_url
            ));
            relay.wait();
            crate::sys::mark_stopped();
            Ok(ExitCode::SUCCESS)
        }
        Command::Smoke(a) => match crate::smoke::run(&a) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                println!("Smoke test failed: {e}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Ensure(args) => {
            let r = crate::lifecycle::ensure(&args)?;
            println!("{}", to_python_json(&r, true));
            Ok(exit(r.running))
        }
        Command::Stop(args) => {
            let r = crate::lifecycle::stop(&args)?;
            println!("{}", to_python_json(&r, true));
            Ok(exit(r.stopped))
        }
        Command::Reset(args) => {
            let r = crate::lifecycle::reset(&args)?;
            println!("{}", to_python_json(&r, true));
            Ok(exit(r.reset))
        }
        Command::Post(args) => Ok(agent_command(&args.agent.clone(), |c| post(c, &args))),
        Command::Poll(args) => Ok(agent_command(&args.agent.clone(), |c| poll(c, &args))),
        Command::Whoami(args) => Ok(agent_command(&args, |c| {
            let b = c.whoami()?;
            if b.session.is_none() {
                c.register(None, true, None, None)?;
                println!("{}", to_python_json(&c.whoami()?, true));
            } else {
                println!("{}", to_python_json(&b, true));
            }
            Ok(())
        })),
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Builds the agent's client and runs `f`; hub and transport errors print
/// `arc error: <message>` on stdout (the reference's format) and exit 1.
fn agent_command(args: &AgentArgs, f: impl FnOnce(&mut Client) -> Result<()>) -> ExitCode {
    let mut client = match &args.relay_dir {
        Some(dir) => Client::over_relay(&args.agent, dir),
        None => Client::http(&args.agent, &args.base_url),
    };
    match f(&mut client) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Transport(detail)) => {
            match &args.relay_dir {
                Some(dir) => println!(
                    "arc error: connection error: {detail} (is a hub relaying {}?)",
                    dir.display()
                ),
                None => {
                    let cause = detail
                        .strip_prefix(&format!("{}: ", args.base_url))
                        .unwrap_or(&detail);
                    println!(
                        "arc error: connection error: cannot reach the hub at {} ({cause}); start one with `arc ensure`",
                        args.base_url
                    );
                }
            }
            ExitCode::from(1)
        }
        Err(e) => {
            println!("arc error: {}", e.detail());
            ExitCode::from(1)
        }
    }
}

/// Makes sure the agent has a session without evicting a live one: an
/// existing session (and its display name and capabilities) is kept; only
/// an agent without one is registered (spec §15.6 item 42).
fn ensure_session(c: &mut Client) -> Result<()> {
    if c.whoami()?.session.is_none() {
        c.register(None, true, None, None)?;
    }
    Ok(())
}

fn post(c: &mut Client, a: &PostArgs) -> Result<()> {
    ensure_session(c)?;
    let opts = Post {
        kind: Some(a.kind.clone()),
        thread_id: a.thread_id.clone(),
        ..Post::default()
    };
    let msg = match &a.to {
        Some(to) => c.dm(to, &a.body, opts)?,
        None => c.post(&a.channel, &a.body, opts)?,
    };
    println!("{}", to_python_json(&msg, true));
    Ok(())
}

fn poll(c: &mut Client, a: &PollArgs) -> Result<()> {
    ensure_session(c)?;
    let mut since = a.since_id;
    if let Some(path) = &a.cursor_file {
        if let Ok(text) = std::fs::read_to_string(path) {
            since = since.max(text.trim().parse().unwrap_or(0));
        }
    }
    c.cursor = since;
    if a.from_now && since == 0 {
        c.cursor = c.bootstrap()?.latest_visible_id;
    }
    let msgs = c.poll(
        a.timeout,
        a.channel.as_deref(),
        a.thread_id.as_deref(),
        !a.include_self,
        100,
    )?;
    for m in &msgs {
        println!("{}", to_python_json(m, false));
    }
    if let Some(path) = &a.cursor_file {
        crate::paths::write_atomic(path, c.cursor.to_string().as_bytes())?;
    }
    Ok(())
}

/// Runs the hub in the foreground until Ctrl-C, SIGTERM or a shutdown request.
fn serve(cfg: HubConfig) -> Result<ExitCode> {
    if cfg.allow_remote {
        println!(
            "[arc] Warning: allow_remote=true exposes this daemon to non-local clients. There is no built-in auth in v1."
        );
    }
    let hub = crate::Hub::start(cfg)?;
    // A weak handle, so the database closes cleanly (and SQLite removes
    // the WAL files) once the hub is done.
    let state = std::sync::Arc::downgrade(hub.state());
    crate::sys::on_terminate(move || {
        if let Some(s) = state.upgrade() {
            s.request_stop();
        }
    })?;
    hub.wait()?;
    crate::sys::mark_stopped();
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command> {
        parse(args.iter().copied())
    }

    #[test]
    fn no_subcommand_serves_with_defaults() {
        match p(&[]).unwrap() {
            Command::Serve(c) => {
                assert_eq!(c.port, 6969);
                assert_eq!(c.host, "127.0.0.1");
                assert_eq!(c.storage, PathBuf::from("arc.sqlite3"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_before_or_after_the_subcommand() {
        for args in [
            &["--port", "7333", "ensure"][..],
            &["ensure", "--port", "7333"][..],
            &["ensure", "--port=7333"][..],
        ] {
            match p(args).unwrap() {
                Command::Ensure(e) => assert_eq!(e.hub.port, 7333, "{args:?}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn usage_errors() {
        assert!(matches!(p(&["--bogus"]), Err(Error::Usage(_))));
        assert!(matches!(p(&["frobnicate"]), Err(Error::Usage(_))));
        assert!(matches!(p(&["--port", "70000"]), Err(Error::Usage(_))));
        assert!(matches!(p(&["--port", "x"]), Err(Error::Usage(_))));
        assert!(matches!(
            p(&["--presence-ttl-sec", "4"]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(p(&["stop", "--agent", "a"]), Err(Error::Usage(_))));
        assert!(matches!(p(&["post", "--agent", "a"]), Err(Error::Usage(_))));
        assert!(matches!(
            p(&["post", "--agent", "a", "--kind", "nope", "x"]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(p(&["poll"]), Err(Error::Usage(_))));
        assert!(matches!(p(&["--agent", "a"]), Err(Error::Usage(_))));
        // Regression: huge durations used to panic in Duration::from_secs_f64.
        for args in [
            &["ensure", "--timeout", "1e300"][..],
            &["--relay-retention-sec", "1e300"][..],
            &["relay", "--retention-sec", "1e20"][..],
            &["poll", "--agent", "a", "--timeout", "1e300"][..],
        ] {
            match p(args) {
                Err(Error::Usage(m)) => assert!(m.contains("at most"), "{args:?}: {m}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
        assert!(p(&["ensure", "--timeout", "315360000"]).is_ok());
    }

    #[test]
    fn version_and_help() {
        assert_eq!(p(&["--version"]).unwrap(), Command::Version);
        assert_eq!(
            p(&["poll", "--help"]).unwrap(),
            Command::Help(Some("poll".into()))
        );
        assert_eq!(
            p(&["help", "ensure"]).unwrap(),
            Command::Help(Some("ensure".into()))
        );
        for topic in COMMANDS {
            assert!(help(Some(topic)).contains("usage:"), "{topic}");
        }
    }

    #[test]
    fn agent_commands() {
        match p(&["post", "--agent", "a", "--to", "b", "hello world"]).unwrap() {
            Command::Post(a) => {
                assert_eq!(a.agent.agent, "a");
                assert_eq!(a.to.as_deref(), Some("b"));
                assert_eq!(a.body, "hello world");
                assert_eq!(a.kind, "chat");
            }
            other => panic!("{other:?}"),
        }
        match p(&["poll", "--agent", "a", "--timeout", "1.5", "--from-now"]).unwrap() {
            Command::Poll(a) => {
                assert_eq!(a.timeout, 1.5);
                assert!(a.from_now);
                assert!(!a.include_self);
            }
            other => panic!("{other:?}"),
        }
        match p(&["mcp"]).unwrap() {
            Command::Mcp(a) => assert_eq!(a.agent, "mcp-client"),
            other => panic!("{other:?}"),
        }
    }
}
