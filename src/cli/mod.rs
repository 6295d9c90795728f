/*!
The command line: parse into a [`Command`], then dispatch.

Usage errors exit 2 with a usage line; other failures print
`arc: <area>: <detail>` once and exit 1, except the agent commands
(`post`, `poll`, `whoami`), which keep the reference's
`arc error: <message>` on stdout (docs/PROTOCOL.md, "CLI"). Files:
`flags.rs` (the flag table), `help.rs` (the command table and the help it
makes), `parse.rs` (arguments to a [`Command`]), `agent.rs` (`post`,
`poll`, `whoami`), `wake.rs` (the arguments of `hook`, `hooks` and `watch`), `work.rs`
(`reserve`, `release-reservation`, `next`, `handoff`, and `guard`'s arguments). Every argument type belongs to the module that runs
the command; nothing imports `cli`.
*/

mod agent;
mod flags;
mod help;
mod parse;
mod wake;
mod work;

pub use agent::{PollArgs, PostArgs};
pub use help::{help, usage};
pub use parse::parse;

use std::ffi::OsString;
use std::process::ExitCode;

use crate::client::Endpoint;
use crate::config::HubConfig;
use crate::error::{Error, Result};
use crate::lifecycle::{EnsureArgs, LocateArgs};
use crate::smoke::SmokeArgs;
use crate::wire::to_python_json;

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
    Whoami(Endpoint),
    Relay(crate::relay::RelayConfig),
    Mcp(crate::mcp::McpArgs),
    Smoke(SmokeArgs),
    Hook(crate::wake::HookArgs),
    Hooks(crate::wake::InstallArgs),
    Watch(crate::wake::WatchArgs),
    Reserve(work::ReserveArgs),
    ReleaseReservation(work::ReleaseArgs),
    Next(work::NextArgs),
    Handoff(work::HandoffArgs),
    Guard(crate::guard::GuardArgs),
    Version,
    Help(Option<String>),
}

/// Parses and runs; returns the process exit code.
pub fn run<I, S>(args: I) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = match parse(args.clone()) {
        Ok(c) => c,
        // A hook must never break the harness that runs it, even when
        // its own command line is wrong (docs/WAKE.md).
        Err(e) if args.iter().any(|a| a == "hook") => {
            eprintln!("arc hook: {e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("arc: {e}");
            eprintln!("{}", usage());
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
            println!("arc {}", crate::wire::VERSION);
            Ok(ExitCode::SUCCESS)
        }
        Command::Help(topic) => {
            // A reader that stops early (`arc mcp --help | head`) is fine.
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "{}", help(topic.as_deref()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(cfg) => serve(*cfg),
        Command::Mcp(args) => {
            crate::mcp::run_stdio(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Relay(cfg) => {
            let line = format!(
                "relay started (spool={}, base_url={})",
                cfg.display_spool, cfg.base_url
            );
            let relay = crate::relay::RelayHandle::start(cfg)?;
            let stop = relay.stopper();
            crate::sys::on_terminate(move || stop.set())?;
            crate::state::Logger::new(false).log(&line);
            relay.wait();
            crate::sys::mark_stopped();
            Ok(ExitCode::SUCCESS)
        }
        Command::Smoke(a) => match crate::smoke::run(&a) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                println!("Smoke test failed: {}", e.detail());
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
        Command::Post(a) => Ok(agent::run(&a.agent, |c| agent::post(c, &a))),
        Command::Poll(a) => Ok(agent::run(&a.agent, |c| agent::poll(c, &a))),
        Command::Whoami(e) => Ok(agent::run(&e, agent::whoami)),
        Command::Hook(a) => Ok(crate::wake::run_hook(&a)),
        Command::Hooks(a) => {
            print!("{}", crate::wake::run_install(&a)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Reserve(a) => Ok(agent::run(&a.agent, |c| work::reserve(c, &a))),
        Command::ReleaseReservation(a) => Ok(agent::run(&a.agent, |c| work::release(c, &a))),
        Command::Next(a) => Ok(agent::run(&a.agent, |c| work::next(c, &a))),
        Command::Handoff(a) => Ok(agent::run(&a.agent, |c| work::handoff(c, &a))),
        Command::Guard(a) => Ok(crate::guard::run(&a)),
        Command::Watch(a) => {
            crate::wake::run_watch(&a)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
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
