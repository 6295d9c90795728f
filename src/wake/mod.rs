/*!
Waking idle agents in their own harness (docs/WAKE.md): `arc hook` (one
harness event in, context or a wake out), `arc hooks install|uninstall`
(Arc's entries in the harness's settings file) and `arc watch` (run a
command for each new batch of messages). All three talk to the hub
through [`crate::client`]; the hub keeps the delivery marks.

Files: `hook.rs` (`arc hook`), `install.rs` (`arc hooks`), `watch.rs`
(`arc watch`). The harness facts (event names, settings files, the tools
that write files and how to refuse them) are the tables below.
*/

mod hook;
mod install;
mod watch;

pub use hook::run as run_hook;
pub use install::run as run_install;
pub use watch::run as run_watch;

use std::path::PathBuf;
use std::time::Duration;

use crate::client::Endpoint;

/// A harness Arc installs hooks into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Harness {
    ClaudeCode,
    Codex,
    Gemini,
}

/// Each harness: its name on the command line, the events that take
/// `additionalContext`, the settings file under a project (and under the
/// home directory for `--user`), and its reservation guard.
pub struct HarnessDef {
    pub harness: Harness,
    pub name: &'static str,
    pub context_events: &'static [&'static str],
    pub settings: &'static str,
    pub guard: GuardDef,
}

/// Where a guarded tool's input names the files it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `tool_input.file_path`.
    FilePath,
    /// A Codex patch in `tool_input.command`: the paths of its
    /// `*** Add File: `, `*** Update File: `, `*** Delete File: ` and
    /// `*** Move to: ` lines.
    Patch,
}

/// How a harness is told that a tool call may not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `{"hookSpecificOutput":{"hookEventName":EVENT,"permissionDecision":"deny","permissionDecisionReason":WHY}}`.
    PermissionDecision,
    /// `{"decision":"deny","reason":WHY}`.
    Decision,
}

/// The hook that refuses an edit of a path another agent holds
/// (docs/WAKE.md, "Guards"): the event that runs before a tool, the
/// matcher `arc hooks install` gives it, the tools that write files and
/// where each names them, and the shape of a refusal.
pub struct GuardDef {
    pub event: &'static str,
    pub matcher: &'static str,
    pub tools: &'static [(&'static str, Target)],
    pub refusal: Refusal,
}

/// The harness table.
pub static HARNESSES: &[HarnessDef] = &[
    HarnessDef {
        harness: Harness::ClaudeCode,
        name: "claude-code",
        context_events: &["SessionStart", "UserPromptSubmit", "PostToolUse"],
        settings: ".claude/settings.json",
        guard: GuardDef {
            event: "PreToolUse",
            matcher: "Edit|Write|MultiEdit",
            tools: &[
                ("Edit", Target::FilePath),
                ("Write", Target::FilePath),
                ("MultiEdit", Target::FilePath),
            ],
            refusal: Refusal::PermissionDecision,
        },
    },
    HarnessDef {
        harness: Harness::Codex,
        name: "codex",
        context_events: &["SessionStart", "UserPromptSubmit", "PostToolUse"],
        settings: ".codex/hooks.json",
        // Every file edit goes through `apply_patch` (`Edit` and `Write`
        // are only matcher aliases of it); its hook input is the patch.
        guard: GuardDef {
            event: "PreToolUse",
            matcher: "apply_patch",
            tools: &[("apply_patch", Target::Patch)],
            refusal: Refusal::PermissionDecision,
        },
    },
    HarnessDef {
        harness: Harness::Gemini,
        name: "gemini",
        context_events: &["SessionStart", "BeforeAgent", "AfterTool"],
        settings: ".gemini/settings.json",
        // Gemini's matchers are unanchored regular expressions.
        guard: GuardDef {
            event: "BeforeTool",
            matcher: "^(write_file|replace)$",
            tools: &[
                ("write_file", Target::FilePath),
                ("replace", Target::FilePath),
            ],
            refusal: Refusal::Decision,
        },
    },
];

/// The event that waits in the background and wakes an idle session
/// (Claude Code only, with `asyncRewake`).
pub const WAKE_EVENT: &str = "Stop";

/// `arc hook --max-wait` by default, in seconds: below the 600 s timeout
/// `arc hooks install` writes for the `Stop` hook.
pub const DEFAULT_MAX_WAIT_SEC: f64 = 540.0;

/// The timeout `arc hooks install` gives the `Stop` hook, in seconds.
pub const STOP_HOOK_TIMEOUT_SEC: u64 = 600;

/// The timeout it gives context hooks, in seconds.
pub const CONTEXT_HOOK_TIMEOUT_SEC: u64 = 10;

/// The timeout it gives the guard hook, in seconds (the hook itself asks
/// the hub for at most 3 s, and reports a refusal in at most 2 s more).
pub const GUARD_HOOK_TIMEOUT_SEC: u64 = 10;

impl Harness {
    pub fn def(self) -> &'static HarnessDef {
        HARNESSES
            .iter()
            .find(|d| d.harness == self)
            .expect("every harness is in the table")
    }

    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// The harness named `name` on the command line.
    pub fn from_name(name: &str) -> Option<Harness> {
        HARNESSES.iter().find(|d| d.name == name).map(|d| d.harness)
    }

    /// The names, for usage errors.
    pub fn names() -> String {
        HARNESSES
            .iter()
            .map(|d| d.name)
            .collect::<Vec<_>>()
            .join("|")
    }

    /// True if `event` takes `additionalContext` in this harness.
    pub fn is_context_event(self, event: &str) -> bool {
        self.def().context_events.contains(&event)
    }

    /// True if `event` is the one this harness runs before a tool.
    pub fn is_guard_event(self, event: &str) -> bool {
        self.def().guard.event == event
    }

    /// Where the input of `tool` names the files it writes, if it is one
    /// the guard checks.
    pub fn guard_target(self, tool: &str) -> Option<Target> {
        self.def()
            .guard
            .tools
            .iter()
            .find(|(name, _)| *name == tool)
            .map(|(_, t)| *t)
    }

    /// True if this harness can be woken from a background hook.
    pub fn can_wake(self) -> bool {
        self == Harness::ClaudeCode
    }
}

/// `arc hook`.
#[derive(Debug, Clone, PartialEq)]
pub struct HookArgs {
    pub harness: Harness,
    pub endpoint: Endpoint,
    pub max_wait: Duration,
    pub bodies: bool,
}

/// Where `arc hooks` writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// `DIR/<settings file>`.
    Project(PathBuf),
    /// The settings file under the home directory.
    User,
}

/// `arc hooks install|uninstall`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallArgs {
    pub uninstall: bool,
    pub harness: Harness,
    pub agent: String,
    pub scope: Scope,
    pub dry_run: bool,
    /// Passed on to the installed `arc hook` command when given.
    pub base_url: Option<String>,
    pub relay_dir: Option<PathBuf>,
}

/// `arc watch`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchArgs {
    pub endpoint: Endpoint,
    pub exec: String,
    pub debounce: Duration,
    /// How long one run of the command may take before it counts as failed.
    pub exec_timeout: Duration,
}

/// `arc watch --debounce-ms` by default.
pub const DEFAULT_DEBOUNCE_MS: u64 = 200;

/// `arc watch --exec-timeout-sec` by default.
pub const DEFAULT_EXEC_TIMEOUT_SEC: f64 = 60.0;
