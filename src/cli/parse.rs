//! From arguments (any iterator, so tests call [`parse`] directly) to a
//! [`Command`]: lexopt gathers flags (before or after the subcommand, with
//! the same meaning in either place) against the flag table, then each
//! command builds the argument type of the module that runs it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::Command;
use super::agent;
use super::flags::{Raw, check_allowed, flag};
use super::help::COMMANDS;
use crate::config::HubConfig;
use crate::error::{Error, Result};
use crate::lifecycle::{ENSURE_TIMEOUT_SEC, EnsureArgs, LocateArgs};
use crate::smoke::SmokeArgs;

/// Gathers the arguments against the flag table.
fn gather<I, S>(args: I) -> Result<Raw>
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
                match flag(&name) {
                    Some(f) if f.value.is_some() => {
                        let v = p.value()?.into_string().map_err(|v| {
                            Error::Usage(format!("--{name} is not valid UTF-8: {v:?}"))
                        })?;
                        raw.values.push((name, v));
                    }
                    Some(_) => raw.switches.push(name),
                    None => return Err(Error::Usage(format!("unexpected flag --{name}"))),
                }
            }
            Short(c) => return Err(Error::Usage(format!("unexpected flag -{c}"))),
            Value(v) => {
                let v = v
                    .into_string()
                    .map_err(|v| Error::Usage(format!("argument is not valid UTF-8: {v:?}")))?;
                if raw.command.is_none() && raw.positionals.is_empty() {
                    if !COMMANDS.iter().any(|c| c.name == v) {
                        return Err(Error::Usage(format!("unknown command {v:?}")));
                    }
                    raw.command = Some(v);
                } else {
                    raw.positionals.push(v);
                }
            }
        }
    }
    Ok(raw)
}

/// Parses arguments (without the program name) into a [`Command`].
pub fn parse<I, S>(args: I) -> Result<Command>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let raw = gather(args)?;
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
    for name in raw.values.iter().map(|(n, _)| n).chain(&raw.switches) {
        check_allowed(name, &cmd)?;
    }
    if ![
        "post",
        "hook",
        "hooks",
        "reserve",
        "release-reservation",
        "handoff",
        "guard",
    ]
    .contains(&cmd.as_str())
        && !raw.positionals.is_empty()
    {
        return Err(Error::Usage(format!(
            "unexpected argument {:?}",
            raw.positionals[0]
        )));
    }
    command(&cmd, &raw)
}

fn command(cmd: &str, raw: &Raw) -> Result<Command> {
    Ok(match cmd {
        "serve" => Command::Serve(Box::new(hub_config(raw)?)),
        "ensure" => Command::Ensure(EnsureArgs {
            hub: Box::new(hub_config(raw)?),
            timeout: Duration::from_secs_f64(raw.seconds("timeout")?.unwrap_or(ENSURE_TIMEOUT_SEC)),
        }),
        "stop" => Command::Stop(locate(raw)?),
        "reset" => Command::Reset(locate(raw)?),
        "post" => Command::Post(agent::post_args(raw)?),
        "poll" => Command::Poll(agent::poll_args(raw)?),
        "whoami" => Command::Whoami(agent::endpoint(raw, None)?),
        "mcp" => Command::Mcp(crate::mcp::McpArgs {
            endpoint: agent::endpoint(raw, Some(crate::mcp::DEFAULT_AGENT))?,
            tools: crate::mcp::profile::Profile::parse(
                raw.value_or("tools", crate::mcp::profile::DEFAULT_SPEC),
            )?,
            claude_channel: raw.switch("claude-channel"),
        }),
        "relay" => Command::Relay(relay(raw)?),
        "hook" => Command::Hook(super::wake::hook_args(raw)?),
        "hooks" => Command::Hooks(super::wake::install_args(raw)?),
        "watch" => Command::Watch(super::wake::watch_args(raw)?),
        "reserve" => Command::Reserve(super::work::reserve_args(raw)?),
        "release-reservation" => Command::ReleaseReservation(super::work::release_args(raw)?),
        "next" => Command::Next(super::work::next_args(raw)?),
        "handoff" => Command::Handoff(super::work::handoff_args(raw)?),
        "guard" => Command::Guard(super::work::guard_args(raw)?),
        "smoke-agent" => Command::Smoke(smoke(raw)?),
        other => return Err(Error::Usage(format!("unknown command {other:?}"))),
    })
}

fn port(raw: &Raw) -> Result<u16> {
    match raw.value("port") {
        None => Ok(HubConfig::default().port),
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
    let d = HubConfig::default();
    Ok(LocateArgs {
        host: raw.value_or("host", &d.host).to_string(),
        port: port(raw)?,
        storage: raw.value("storage").map(PathBuf::from).unwrap_or(d.storage),
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
        storage: raw
            .value("storage")
            .map(PathBuf::from)
            .unwrap_or(d.storage.clone()),
        allow_remote: raw.switch("allow-remote"),
        quiet: raw.switch("quiet"),
        spool_dir: raw
            .value("spool-dir")
            .map(PathBuf::from)
            .unwrap_or(d.spool_dir.clone()),
        max_body_chars: size("max-body-chars", d.max_body_chars, 1)?,
        max_attachment_chars: size("max-attachment-chars", d.max_attachment_chars, 1)?,
        max_attachments: size("max-attachments", d.max_attachments, 0)?,
        presence_ttl_sec: ttl,
        max_waiters: size("max-waiters", d.max_waiters, 1)?,
        max_waiters_per_agent: size("max-waiters-per-agent", d.max_waiters_per_agent, 1)?,
        max_connections: size("max-connections", d.max_connections, 1)?,
        relay: d.relay && !raw.switch("no-relay"),
        relay_allow_admin: raw.switch("relay-allow-admin"),
        case_insensitive_paths: match raw.value("path-case") {
            None => d.case_insensitive_paths,
            Some("sensitive") => false,
            Some("insensitive") => true,
            Some(v) => {
                return Err(Error::Usage(format!(
                    "--path-case must be sensitive or insensitive, got {v:?}"
                )));
            }
        },
        project_root: raw.value("project-root").map(PathBuf::from),
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

fn relay(raw: &Raw) -> Result<crate::relay::RelayConfig> {
    let base = raw.value_or("base-url", crate::client::DEFAULT_BASE_URL);
    let spool = raw
        .value("spool-dir")
        .map(PathBuf::from)
        .unwrap_or(HubConfig::default().spool_dir);
    let mut cfg = crate::relay::RelayConfig::new(base, &crate::paths::absolute(&spool)?);
    cfg.display_spool = spool.display().to_string();
    if let Some(s) = raw.seconds("poll-interval-sec")? {
        cfg.poll_interval = Duration::from_secs_f64(s.max(0.001));
    }
    if let Some(s) = raw.seconds("request-timeout-sec")? {
        cfg.request_timeout = Duration::from_secs_f64(s.max(0.1));
    }
    if let Some(s) = raw.seconds("max-wait-sec")? {
        cfg.max_wait_sec = s;
    }
    if let Some(s) = raw.seconds("retention-sec")? {
        cfg.retention = Duration::from_secs_f64(s);
    }
    cfg.allow_admin = raw.switch("relay-allow-admin");
    Ok(cfg)
}

fn smoke(raw: &Raw) -> Result<SmokeArgs> {
    use crate::smoke as s;
    Ok(SmokeArgs {
        role: raw.choice("role", &["smoke-a", "smoke-b", "smoke-c"])?,
        transport: raw.choice("transport", &["http", "relay"])?,
        base_url: raw
            .value_or("base-url", crate::client::DEFAULT_BASE_URL)
            .to_string(),
        relay_dir: raw
            .value("relay-dir")
            .map(PathBuf::from)
            .unwrap_or(HubConfig::default().spool_dir),
        channel: raw.value_or("channel", s::DEFAULT_CHANNEL).to_string(),
        thread_id: raw.value_or("thread-id", s::DEFAULT_THREAD).to_string(),
        claim_key: raw.value_or("claim-key", s::DEFAULT_CLAIM_KEY).to_string(),
        timeout_sec: raw
            .seconds("timeout-sec")?
            .unwrap_or(s::DEFAULT_TIMEOUT_SEC),
        poll_interval_sec: raw
            .seconds("poll-interval-sec")?
            .unwrap_or(s::DEFAULT_POLL_SEC),
        run_id: raw.value("run-id").map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::super::help::help;
    use super::*;
    use crate::error::Error;
    use std::path::PathBuf;

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
    fn admin_routes_over_the_relay_are_opt_in() {
        match p(&["serve"]).unwrap() {
            Command::Serve(c) => assert!(!c.relay_allow_admin),
            other => panic!("{other:?}"),
        }
        match p(&["ensure", "--relay-allow-admin"]).unwrap() {
            Command::Ensure(e) => assert!(e.hub.relay_allow_admin),
            other => panic!("{other:?}"),
        }
        match p(&["relay", "--relay-allow-admin"]).unwrap() {
            Command::Relay(cfg) => assert!(cfg.allow_admin),
            other => panic!("{other:?}"),
        }
        match p(&["relay"]).unwrap() {
            Command::Relay(cfg) => assert!(!cfg.allow_admin),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p(&["post", "--agent", "a", "--relay-allow-admin", "x"]),
            Err(Error::Usage(_))
        ));
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
        for c in COMMANDS {
            assert!(help(Some(c.name)).contains("usage:"), "{}", c.name);
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
            Command::Mcp(a) => {
                assert_eq!(a.endpoint.agent, "mcp-client");
                assert_eq!(a.tools, crate::mcp::profile::Profile::core());
            }
            other => panic!("{other:?}"),
        }
        match p(&["mcp", "--tools", "all"]).unwrap() {
            Command::Mcp(a) => assert_eq!(a.tools, crate::mcp::profile::Profile::all()),
            other => panic!("{other:?}"),
        }
        match p(&["mcp", "--tools", "core,arc_bogus"]) {
            Err(Error::Usage(m)) => assert!(m.contains("arc_bogus"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p(&["post", "--agent", "a", "--tools", "all", "x"]),
            Err(Error::Usage(_))
        ));
    }
}
