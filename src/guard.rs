/*!
`arc guard pre-commit|install`: refuse a commit that touches paths
another agent reserved or locked (docs/PROTOCOL.md, "Reservations";
docs/WAKE.md, "Guards"), and the check the harness hooks share.

* [`check`] asks `GET /v1/reservations/check` about paths, in batches the
  hub takes (at most 64 paths, a request line well inside 8 KiB), within
  one deadline. A batch the hub refuses (400: a path it cannot read) is
  asked again one path at a time, so one odd name hides nothing else.
* [`describe`] says who holds a path and until when; [`report`] posts the
  one notice a refusal or a warning leaves in `general`, best effort.
* `pre-commit` checks the staged paths; `install` writes a POSIX `sh`
  pre-commit hook that runs any hook it found there first.

A hub that cannot be reached, is busy or has no such route never blocks:
the guard says so in one line on stderr and lets the commit through,
unless `--strict`.
*/

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{Client, DEFAULT_BASE_URL, Endpoint};
use crate::error::{Error, Result};
use crate::input::percent_encode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardAction {
    PreCommit,
    Install,
}

/// `arc guard`.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardArgs {
    pub action: GuardAction,
    pub endpoint: Endpoint,
    pub warn_only: bool,
    pub strict: bool,
}

/// Paths one check may name (the hub's limit, `MAX_PATTERNS`).
const BATCH_PATHS: usize = 64;

/// Percent-encoded path bytes one check may carry: the hub reads request
/// lines of up to 8 KiB.
const BATCH_BYTES: usize = 6000;

/// Everything the pre-commit guard asks the hub takes at most this long.
const PRE_COMMIT_BUDGET: Duration = Duration::from_secs(10);

/// The notice of a refusal is given this long at most.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// A notice names at most this many conflicts (and its body at most
/// [`REPORT_BODY_CHARS`] characters).
const REPORT_CONFLICTS: usize = 50;
const REPORT_BODY_CHARS: usize = 2000;

/// The line that marks a pre-commit hook as Arc's.
const MARKER: &str = "# arc-guard-pre-commit:";

/// What the hook found in its place is kept as, beside it.
const CHAINED: &str = "pre-commit.arc-chained";

/// A path another agent holds, and the hub's conflict that says so
/// (`reservation_id`, `agent_id`, `pattern`, `mode`, `requested`,
/// `expires_at`, `reason`).
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// The path as it was asked about.
    pub path: String,
    pub conflict: Value,
}

/// The answer of [`check`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked {
    pub held: Vec<Held>,
    /// Paths the hub would not check (400), each with its reason.
    pub unchecked: Vec<(String, String)>,
}

/// What a guard did about held paths, for the notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Deny,
    Warn,
}

/// Runs the guard.
pub fn run(a: &GuardArgs) -> ExitCode {
    match a.action {
        GuardAction::PreCommit => pre_commit(a),
        GuardAction::Install => match install(a) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("arc guard: {}", one_line(&why));
                ExitCode::from(1)
            }
        },
    }
}

// ------------------------------------------------------------ the check

/// Asks the hub whether `client`'s agent may touch `paths`, by `deadline`.
/// An error means the hub could not answer (away, busy, timed out, no
/// such route, or an answer that is not a check's).
pub fn check(client: &Client, paths: &[String], deadline: Instant) -> Result<Checked> {
    let mut out = Checked::default();
    for batch in batches(paths) {
        check_batch(client, batch, deadline, &mut out)?;
    }
    Ok(out)
}

fn check_batch(
    client: &Client,
    batch: &[String],
    deadline: Instant,
    out: &mut Checked,
) -> Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Transport("the check timed out".into()));
    }
    match client.check_paths(batch, left) {
        Ok(result) => {
            let Some(conflicts) = result.get("conflicts").and_then(Value::as_array) else {
                return Err(Error::Protocol(
                    "the check's answer has no conflicts list".into(),
                ));
            };
            let mut held: Vec<Held> = conflicts
                .iter()
                .filter(|c| c.is_object())
                .map(|c| Held {
                    path: asked_as(batch, c["requested"].as_str().unwrap_or_default()).to_string(),
                    conflict: c.clone(),
                })
                .collect();
            // In the order the paths were asked about (the hub lists
            // reservations before locks).
            held.sort_by_key(|h| batch.iter().position(|p| *p == h.path));
            out.held.extend(held);
            Ok(())
        }
        Err(Error::Hub { status: 400, .. }) if batch.len() > 1 => {
            for one in batch.chunks(1) {
                check_batch(client, one, deadline, out)?;
            }
            Ok(())
        }
        Err(Error::Hub {
            status: 400,
            message,
        }) => {
            out.unchecked.push((batch[0].clone(), message));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// `paths` in runs the hub takes in one check.
fn batches(paths: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, p) in paths.iter().enumerate() {
        let cost = percent_encode(p).len() + "&path=".len();
        if i > start && (i - start == BATCH_PATHS || bytes + cost > BATCH_BYTES) {
            out.push(&paths[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += cost;
    }
    if start < paths.len() {
        out.push(&paths[start..]);
    }
    out
}

/// Which path of `batch` the hub means by `requested` (its normalised
/// form: `/` separators, no `./`, maybe case-folded).
fn asked_as<'a>(batch: &'a [String], requested: &'a str) -> &'a str {
    if let [one] = batch {
        return one;
    }
    let plain = |p: &str| {
        let p = p.replace('\\', "/");
        p.strip_prefix("./").unwrap_or(&p).to_string()
    };
    batch
        .iter()
        .find(|p| plain(p) == requested)
        .or_else(|| {
            batch
                .iter()
                .find(|p| plain(p).to_lowercase() == requested.to_lowercase())
        })
        .map_or(requested, String::as_str)
}

/// Text from the hub, fit for one line of a terminal: control characters
/// (escape sequences, newlines) become spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn field(c: &Value, key: &str) -> String {
    clean(c.get(key).and_then(Value::as_str).unwrap_or("?"))
}

fn is_lock(c: &Value) -> bool {
    c.get("mode").and_then(Value::as_str) == Some("lock")
}

/// The holder's reason, if it gave one.
fn reason(c: &Value) -> Option<String> {
    c.get("reason")
        .and_then(Value::as_str)
        .map(clean)
        .filter(|r| !r.trim().is_empty())
}

/// `reserved by <agent> until <time>: <reason>` (`locked by` for a
/// reference lock; no `: <reason>` without one).
fn holding(c: &Value) -> String {
    let verb = if is_lock(c) { "locked" } else { "reserved" };
    let mut s = format!(
        "{verb} by {} until {}",
        field(c, "agent_id"),
        field(c, "expires_at")
    );
    if let Some(r) = reason(c) {
        s.push_str(": ");
        s.push_str(&r);
    }
    s
}

/// `<path> is reserved by <agent> until <time>: <reason>` (`is locked by`
/// for a reference lock; no `: <reason>` without one).
pub fn describe(h: &Held) -> String {
    format!("{} is {}", clean(&h.path), holding(&h.conflict))
}

/// One line of the pre-commit report: the path, the holder, the pattern
/// and the end of the lease.
fn report_line(h: &Held) -> String {
    let c = &h.conflict;
    let (verb, what) = match is_lock(c) {
        true => ("locked", format!("lock on {}", field(c, "pattern"))),
        false => (
            "reserved",
            format!("pattern {}, {}", field(c, "pattern"), field(c, "mode")),
        ),
    };
    let mut s = format!(
        "  {}: {verb} by {} ({what}) until {}",
        clean(&h.path),
        field(c, "agent_id"),
        field(c, "expires_at")
    );
    if let Some(r) = reason(c) {
        s.push_str(": ");
        s.push_str(&r);
    }
    s
}

/// Posts the one notice of a refusal (or a warning) to `general`, within
/// `timeout`; whatever goes wrong is ignored.
pub fn report(client: &Client, source: &str, held: &[Held], verdict: Verdict, timeout: Duration) {
    if held.is_empty() || timeout.is_zero() {
        return;
    }
    let mut paths: Vec<&str> = Vec::new();
    for h in held {
        if !paths.contains(&h.path.as_str()) {
            paths.push(&h.path);
        }
    }
    let mut why: Vec<String> = Vec::new();
    for h in held {
        let line = holding(&h.conflict);
        if !why.contains(&line) {
            why.push(line);
        }
    }
    let (did, action) = match verdict {
        Verdict::Deny => ("was refused", "deny"),
        Verdict::Warn => ("was warned about", "warn"),
    };
    let mut text = format!(
        "guard: {} {did} {} ({})",
        client.agent_id,
        paths.join(", "),
        why.join("; ")
    );
    if text.chars().count() > REPORT_BODY_CHARS {
        text = text.chars().take(REPORT_BODY_CHARS - 1).collect::<String>() + "…";
    }
    let conflicts: Vec<&Value> = held
        .iter()
        .take(REPORT_CONFLICTS)
        .map(|h| &h.conflict)
        .collect();
    let body = json!({
        "from_agent": client.agent_id,
        "channel": "general",
        "kind": "notice",
        "body": text,
        "metadata": {"arc_guard": {
            "source": source,
            "paths": paths,
            "conflicts": conflicts,
            "action": action,
        }},
    });
    let _ = client.request("POST", "/v1/messages", Some(&body), timeout);
}

fn one_line(s: &str) -> String {
    clean(s.lines().next().unwrap_or(""))
        .chars()
        .take(300)
        .collect()
}

// ----------------------------------------------------------- pre-commit

/// `arc guard pre-commit`: refuse (exit 1) a commit whose staged paths
/// another agent holds; `--warn-only` says the same and exits 0.
fn pre_commit(a: &GuardArgs) -> ExitCode {
    let deadline = Instant::now() + PRE_COMMIT_BUDGET;
    let paths = match staged() {
        Ok(p) => p,
        Err(why) => {
            eprintln!(
                "arc guard: cannot list the staged paths: {}",
                one_line(&why)
            );
            return ExitCode::from(1);
        }
    };
    if paths.is_empty() {
        return ExitCode::SUCCESS;
    }
    let client = a.endpoint.client();
    let checked = match check(&client, &paths, deadline) {
        Ok(c) => c,
        Err(e) => {
            let why = format!(
                "cannot check the staged paths with the hub at {} ({})",
                hub_name(&a.endpoint),
                one_line(&e.to_string())
            );
            return unchecked_exit(a, &why);
        }
    };
    let mut err = std::io::stderr().lock();
    if !checked.held.is_empty() {
        let n = checked
            .held
            .iter()
            .map(|h| &h.path)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let what = match n {
            1 => "1 staged path is held by another agent".to_string(),
            n => format!("{n} staged paths are held by other agents"),
        };
        let _ = writeln!(err, "arc guard: {what}:");
        for h in &checked.held {
            let _ = writeln!(err, "{}", report_line(h));
        }
    }
    if let Some((path, why)) = checked.unchecked.first() {
        let more = match checked.unchecked.len() {
            1 => String::new(),
            n => format!(" and {} more", n - 1),
        };
        let _ = writeln!(
            err,
            "arc guard: the hub would not check {}{more} ({})",
            clean(path),
            one_line(why)
        );
    }
    drop(err);
    if !checked.held.is_empty() {
        let verdict = if a.warn_only {
            Verdict::Warn
        } else {
            Verdict::Deny
        };
        let left = deadline.saturating_duration_since(Instant::now());
        report(
            &client,
            "pre-commit",
            &checked.held,
            verdict,
            left.min(REPORT_TIMEOUT),
        );
        return match a.warn_only {
            true => {
                eprintln!("arc guard: --warn-only: the commit goes ahead");
                ExitCode::SUCCESS
            }
            false => {
                eprintln!(
                    "arc guard: commit refused: wait for the leases, ask the holders, or commit with --no-verify"
                );
                ExitCode::from(1)
            }
        };
    }
    if !checked.unchecked.is_empty() && a.strict {
        eprintln!("arc guard: commit refused (--strict: not every staged path was checked)");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// The one line for a check that could not be made, and the exit:
/// allowed, unless `--strict`.
fn unchecked_exit(a: &GuardArgs, why: &str) -> ExitCode {
    match a.strict {
        true => {
            eprintln!("arc guard: {why}; commit refused (--strict)");
            ExitCode::from(1)
        }
        false => {
            eprintln!("arc guard: {why}; the commit is allowed");
            ExitCode::SUCCESS
        }
    }
}

fn hub_name(e: &Endpoint) -> String {
    match &e.relay_dir {
        Some(dir) => format!("relay {}", dir.display()),
        None => e.base_url.clone(),
    }
}

/// The staged paths, relative to the top of the work tree, as git lists
/// them (a rename as its two paths). Runs in the current directory with
/// git's environment, so a commit's own index (`GIT_INDEX_FILE`) is used.
fn staged() -> std::result::Result<Vec<String>, String> {
    let out = git(&[
        "diff",
        "--cached",
        "--name-only",
        "-z",
        "--no-renames",
        "--no-ext-diff",
    ])?;
    Ok(out
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}

/// `git ARGS` in the current directory: its stdout, or why it failed.
fn git(args: &[&str]) -> std::result::Result<Vec<u8>, String> {
    let out = Command::new("git")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        return Err(match err.is_empty() {
            true => format!("git {} failed ({})", args.join(" "), out.status),
            false => err.to_string(),
        });
    }
    Ok(out.stdout)
}

// -------------------------------------------------------------- install

/// `arc guard install`: writes the pre-commit hook, keeping one that was
/// there as [`CHAINED`] (run first by the new one). Returns what to print.
fn install(a: &GuardArgs) -> std::result::Result<String, String> {
    let dir = hooks_dir()?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let hook = dir.join("pre-commit");
    let chained = dir.join(CHAINED);
    let script = script(a)?;
    match existing(&hook)? {
        Some(text) if is_ours(&text) => {
            if text == script.as_bytes() {
                return Ok(format!("nothing to change in {}\n", hook.display()));
            }
            write_hook(&dir, &hook, &script)?;
            Ok(format!("updated the Arc guard in {}\n", hook.display()))
        }
        Some(_) => {
            if std::fs::symlink_metadata(&chained).is_ok() {
                return Err(format!(
                    "{} is not Arc's, and {} is already taken: move one of them away; nothing was changed",
                    hook.display(),
                    chained.display()
                ));
            }
            std::fs::rename(&hook, &chained).map_err(|e| {
                format!(
                    "cannot move {} aside: {e}; nothing was changed",
                    hook.display()
                )
            })?;
            if let Err(why) = write_hook(&dir, &hook, &script) {
                let _ = std::fs::rename(&chained, &hook);
                return Err(why);
            }
            Ok(format!(
                "installed the Arc guard in {}; the hook that was there runs first, from {}\n",
                hook.display(),
                chained.display()
            ))
        }
        None => {
            write_hook(&dir, &hook, &script)?;
            Ok(format!("installed the Arc guard in {}\n", hook.display()))
        }
    }
}

/// The hooks directory git runs hooks from (`core.hooksPath` honoured),
/// made absolute.
fn hooks_dir() -> std::result::Result<PathBuf, String> {
    let out = git(&["rev-parse", "--git-path", "hooks"])?;
    let text = String::from_utf8(out)
        .map_err(|_| "git named a hooks directory that is not UTF-8".to_string())?;
    let dir = text.trim_end_matches(['\n', '\r']);
    if dir.is_empty() {
        return Err("git named no hooks directory".into());
    }
    crate::paths::absolute(Path::new(dir)).map_err(|e| e.to_string())
}

/// The bytes of the hook now at `hook`, if there is one; a directory or
/// anything else that is not a file is refused.
fn existing(hook: &Path) -> std::result::Result<Option<Vec<u8>>, String> {
    let Ok(link) = std::fs::symlink_metadata(hook) else {
        return Ok(None);
    };
    let meta = match link.file_type().is_symlink() {
        true => std::fs::metadata(hook).ok(),
        false => Some(link),
    };
    match meta {
        // A dangling link is a hook of the user's: it is kept, not read.
        None => Ok(Some(Vec::new())),
        Some(m) if m.is_file() && m.len() <= 1 << 20 => std::fs::read(hook)
            .map(Some)
            .map_err(|e| format!("cannot read {}: {e}", hook.display())),
        Some(m) if m.is_file() => Ok(Some(Vec::new())),
        Some(_) => Err(format!(
            "{} is not a file; nothing was changed",
            hook.display()
        )),
    }
}

fn is_ours(text: &[u8]) -> bool {
    text.split(|b| *b == b'\n')
        .any(|l| l.starts_with(MARKER.as_bytes()))
}

/// `s` as one POSIX shell word.
fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+:,./-".contains(c));
    match plain {
        true => s.to_string(),
        false => format!("'{}'", s.replace('\'', r"'\''")),
    }
}

/// A path for the hook script: UTF-8, with `/` separators on Windows
/// (git's `sh` takes `C:/x` as it is).
fn script_path(p: &Path) -> std::result::Result<String, String> {
    match p.to_str() {
        Some(s) if cfg!(windows) => Ok(s.replace('\\', "/")),
        Some(s) => Ok(s.to_string()),
        None => Err(format!("{}: the path is not UTF-8", p.display())),
    }
}

/// The hook: run the chained hook (its failure stops the commit), then
/// this `arc guard pre-commit` with the same agent, hub and switches.
fn script(a: &GuardArgs) -> std::result::Result<String, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this arc executable: {e}"))?;
    // Always in quotes, plain or not.
    let exe = format!("'{}'", script_path(&exe)?.replace('\'', r"'\''"));
    let mut args = vec![
        "guard".to_string(),
        "pre-commit".into(),
        "--agent".into(),
        sh_quote(&a.endpoint.agent),
    ];
    if let Some(dir) = &a.endpoint.relay_dir {
        let dir = crate::paths::absolute(dir).map_err(|e| e.to_string())?;
        args.push("--relay-dir".into());
        args.push(sh_quote(&script_path(&dir)?));
    } else if a.endpoint.base_url != DEFAULT_BASE_URL {
        args.push("--base-url".into());
        args.push(sh_quote(&a.endpoint.base_url));
    }
    if a.warn_only {
        args.push("--warn-only".into());
    }
    if a.strict {
        args.push("--strict".into());
    }
    let missing = match a.strict {
        true => "echo \"arc guard: $arc is missing; commit refused (--strict)\" >&2\n  exit 1",
        false => {
            "echo \"arc guard: $arc is missing; the commit is not checked (run arc guard install again)\" >&2\n  exit 0"
        }
    };
    Ok(format!(
        "#!/bin/sh\n\
         {MARKER} written by `arc guard install`; run that again to change it.\n\
         # It refuses a commit of paths another agent reserved or locked. A hook\n\
         # that was here before is kept beside it as {CHAINED} and runs first.\n\
         chained=\"$(dirname -- \"$0\")/{CHAINED}\"\n\
         if [ -x \"$chained\" ]; then\n  \"$chained\" \"$@\" || exit $?\nfi\n\
         arc={exe}\n\
         if [ ! -x \"$arc\" ]; then\n  {missing}\nfi\n\
         exec \"$arc\" {}\n",
        args.join(" ")
    ))
}

/// Writes `script` to `hook` atomically, executable.
fn write_hook(dir: &Path, hook: &Path, script: &str) -> std::result::Result<(), String> {
    let tmp = dir.join(format!(".pre-commit.{}.tmp", crate::ids::uuid4_hex()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(script.as_bytes())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        }
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, hook)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", hook.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_within_the_hubs_limits() {
        let many: Vec<String> = (0..150).map(|i| format!("src/f{i}.rs")).collect();
        let b = batches(&many);
        assert_eq!(b.iter().map(|x| x.len()).collect::<Vec<_>>(), [64, 64, 22]);
        let long: Vec<String> = (0..20)
            .map(|i| format!("{i}/{}", "é".repeat(300)))
            .collect();
        for batch in batches(&long) {
            let bytes: usize = batch.iter().map(|p| percent_encode(p).len() + 6).sum();
            assert!(bytes <= BATCH_BYTES || batch.len() == 1, "{bytes}");
        }
        assert_eq!(batches(&long).concat(), long);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn conflicts_name_the_path_they_were_asked_about() {
        let batch = ["./Src\\A.rs".to_string(), "b.rs".to_string()];
        assert_eq!(asked_as(&batch, "src/a.rs"), "./Src\\A.rs");
        assert_eq!(asked_as(&batch, "b.rs"), "b.rs");
        assert_eq!(asked_as(&batch, "c.rs"), "c.rs");
        assert_eq!(asked_as(&batch[1..], "whatever"), "b.rs");
    }

    #[test]
    fn descriptions_read_as_the_issue_gives_them() {
        let held = |mode: &str, reason: Value| Held {
            path: "src/a.rs".into(),
            conflict: json!({"agent_id": "bob", "pattern": "src/**", "mode": mode,
                "expires_at": "2026-12-01T11:00:00Z", "reason": reason}),
        };
        assert_eq!(
            describe(&held("exclusive", json!("parser work"))),
            "src/a.rs is reserved by bob until 2026-12-01T11:00:00Z: parser work"
        );
        assert_eq!(
            describe(&held("lock", Value::Null)),
            "src/a.rs is locked by bob until 2026-12-01T11:00:00Z"
        );
        assert_eq!(
            describe(&held("shared", json!("a\u{1b}[31m\nb"))),
            "src/a.rs is reserved by bob until 2026-12-01T11:00:00Z: a [31m b"
        );
        assert_eq!(
            report_line(&held("exclusive", json!(""))),
            "  src/a.rs: reserved by bob (pattern src/**, exclusive) until 2026-12-01T11:00:00Z"
        );
    }

    #[cfg(unix)]
    #[test]
    fn shell_quoting_round_trips() {
        let words = [
            "plain",
            "a b",
            "o'brien",
            "$HOME `x` \"q\" \\ ;&|",
            "",
            "ünï",
        ];
        let line: Vec<String> = words.iter().map(|w| sh_quote(w)).collect();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {}", line.join(" ")))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .collect::<Vec<_>>(),
            words
        );
    }
}
