//! The arguments of `arc hook`, `arc hooks` and `arc watch` (docs/WAKE.md).

use std::path::PathBuf;
use std::time::Duration;

use super::agent::endpoint;
use super::flags::Raw;
use crate::error::{Error, Result};
use crate::wake::{self, Harness, HookArgs, InstallArgs, Scope, WatchArgs};

fn harness(name: Option<&String>) -> Result<Harness> {
    let name =
        name.ok_or_else(|| Error::Usage(format!("name the harness: one of {}", Harness::names())))?;
    Harness::from_name(name).ok_or_else(|| {
        Error::Usage(format!(
            "unknown harness {name:?} (one of {})",
            Harness::names()
        ))
    })
}

fn extra(raw: &Raw, taken: usize) -> Result<()> {
    match raw.positionals.get(taken) {
        Some(p) => Err(Error::Usage(format!("unexpected argument {p:?}"))),
        None => Ok(()),
    }
}

/// `arc hook HARNESS --agent ID ...`.
pub fn hook_args(raw: &Raw) -> Result<HookArgs> {
    let harness = harness(raw.positionals.first())?;
    extra(raw, 1)?;
    Ok(HookArgs {
        harness,
        endpoint: endpoint(raw, None)?,
        max_wait: Duration::from_secs_f64(
            raw.seconds("max-wait")?
                .unwrap_or(wake::DEFAULT_MAX_WAIT_SEC),
        ),
        bodies: raw.switch("bodies"),
    })
}

/// `arc hooks install|uninstall HARNESS --agent ID ...`.
pub fn install_args(raw: &Raw) -> Result<InstallArgs> {
    let uninstall = match raw.positionals.first().map(String::as_str) {
        Some("install") => false,
        Some("uninstall") => true,
        Some(other) => {
            return Err(Error::Usage(format!(
                "hooks takes install or uninstall, not {other:?}"
            )));
        }
        None => return Err(Error::Usage("hooks needs install or uninstall".into())),
    };
    let harness = harness(raw.positionals.get(1))?;
    extra(raw, 2)?;
    let scope = match (raw.value("project"), raw.switch("user")) {
        (Some(_), true) => {
            return Err(Error::Usage(
                "give --project DIR or --user, not both".into(),
            ));
        }
        (Some(dir), false) => Scope::Project(PathBuf::from(dir)),
        (None, true) => Scope::User,
        (None, false) => Scope::Project(PathBuf::from(".")),
    };
    let agent = endpoint(raw, None)?.agent;
    Ok(InstallArgs {
        uninstall,
        harness,
        agent,
        scope,
        dry_run: raw.switch("dry-run"),
        base_url: raw.value("base-url").map(str::to_string),
        relay_dir: raw.value("relay-dir").map(PathBuf::from),
    })
}

/// `arc watch --agent ID --exec CMD ...`.
pub fn watch_args(raw: &Raw) -> Result<WatchArgs> {
    let exec = raw.required("exec")?;
    if exec.trim().is_empty() {
        return Err(Error::Usage("--exec must not be empty".into()));
    }
    let debounce = raw
        .parsed::<u64>("debounce-ms", "a number of milliseconds")?
        .unwrap_or(wake::DEFAULT_DEBOUNCE_MS)
        .min(60_000);
    Ok(WatchArgs {
        endpoint: endpoint(raw, None)?,
        exec,
        debounce: Duration::from_millis(debounce),
        exec_timeout: Duration::from_secs_f64(
            raw.seconds("exec-timeout-sec")?
                .unwrap_or(wake::DEFAULT_EXEC_TIMEOUT_SEC)
                .max(0.1),
        ),
    })
}
