//! `arc hooks install|uninstall`, through the real binary: each test in a
//! temp dir of its own, with `HOME` pointed into it so nothing can reach
//! the real user's settings.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use serde_json::{Value, json};

use super::support::TempDir;

/// (harness, settings file, the events Arc installs into, timeout unit).
const HARNESSES: [(&str, &str, &[&str], u64); 3] = [
    (
        "claude-code",
        ".claude/settings.json",
        &[
            "SessionStart",
            "UserPromptSubmit",
            "PostToolUse",
            "PreToolUse",
            "Stop",
        ],
        1,
    ),
    (
        "codex",
        ".codex/hooks.json",
        &[
            "SessionStart",
            "UserPromptSubmit",
            "PostToolUse",
            "PreToolUse",
        ],
        1,
    ),
    (
        "gemini",
        ".gemini/settings.json",
        &["SessionStart", "BeforeAgent", "AfterTool", "BeforeTool"],
        1000,
    ),
];

/// (harness, its guard event, the matcher of the guard's group): the
/// tools that write files (docs/WAKE.md, "Guards").
const GUARDS: [(&str, &str, &str); 3] = [
    ("claude-code", "PreToolUse", "Edit|Write|MultiEdit"),
    ("codex", "PreToolUse", "apply_patch"),
    ("gemini", "BeforeTool", "^(write_file|replace)$"),
];

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// A project directory and a home directory, both empty.
struct Dirs {
    _tmp: TempDir,
    project: PathBuf,
    home: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let tmp = TempDir::new("hooks");
        let project = tmp.path().join("project dir");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        Dirs {
            _tmp: tmp,
            project,
            home,
        }
    }

    /// Runs `arc ARGS` in the project directory.
    fn arc(&self, args: &[&str]) -> Run {
        let out = Command::new(env!("CARGO_BIN_EXE_arc"))
            .args(args)
            .current_dir(&self.project)
            .env("HOME", &self.home)
            .env("USERPROFILE", &self.home)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `arc hooks VERB HARNESS --agent AGENT --project <project> MORE...`.
    fn hooks(&self, verb: &str, harness: &str, agent: &str, more: &[&str]) -> Run {
        let project = self.project.to_str().unwrap();
        let mut args = vec![
            "hooks",
            verb,
            harness,
            "--agent",
            agent,
            "--project",
            project,
        ];
        args.extend_from_slice(more);
        self.arc(&args)
    }

    fn settings(&self, file: &str) -> PathBuf {
        self.project.join(file)
    }
}

fn ok(run: &Run) {
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
}

fn backup(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.arc-backup", path.display()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn is_this_arc(h: &Value) -> bool {
    let exe = env!("CARGO_BIN_EXE_arc");
    h["command"]
        .as_str()
        .is_some_and(|c| c.starts_with(&format!("{exe} hook ")))
}

/// Every hook under `event` whose command runs this `arc hook`.
fn arc_hooks(doc: &Value, event: &str) -> Vec<Value> {
    doc["hooks"][event]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["hooks"].as_array().cloned().unwrap_or_default())
        .filter(is_this_arc)
        .collect()
}

/// The groups under `event` that hold a hook running this `arc hook`.
fn arc_groups(doc: &Value, event: &str) -> Vec<Value> {
    doc["hooks"][event]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| {
            g["hooks"]
                .as_array()
                .is_some_and(|h| h.iter().any(is_this_arc))
        })
        .cloned()
        .collect()
}

/// Checks that `doc` holds exactly one Arc hook per event of `harness`,
/// for `agent`, with the harness's timeouts.
fn assert_installed(doc: &Value, harness: &str, agent: &str) {
    let (_, _, events, unit) = HARNESSES.iter().find(|h| h.0 == harness).unwrap();
    let exe = env!("CARGO_BIN_EXE_arc");
    for event in *events {
        let hooks = arc_hooks(doc, event);
        assert_eq!(hooks.len(), 1, "{harness} {event}: {doc:#}");
        let h = &hooks[0];
        assert_eq!(h["type"], "command");
        assert_eq!(
            h["command"],
            format!("{exe} hook {harness} --agent {agent}"),
            "{doc:#}"
        );
        let wake = *event == "Stop";
        assert_eq!(h["timeout"], if wake { 600 } else { 10 } * unit);
        assert_eq!(h.get("asyncRewake"), wake.then_some(&Value::Bool(true)));
        let guard = GUARDS.iter().find(|g| g.0 == harness && g.1 == *event);
        if let Some((_, _, matcher)) = guard {
            let groups = arc_groups(doc, event);
            assert_eq!(groups.len(), 1, "{harness} {event}: {doc:#}");
            assert_eq!(groups[0]["matcher"], json!(matcher), "{doc:#}");
        }
    }
}

#[test]
fn hooks_install_creates_a_missing_file() {
    for (harness, file, events, _) in HARNESSES {
        let d = Dirs::new();
        let run = d.hooks("install", harness, "bob", &[]);
        ok(&run);
        let path = d.settings(file);
        assert!(
            run.stdout.starts_with(&format!(
                "installed {} hooks for agent bob in {}",
                events.len(),
                path.display()
            )),
            "{}",
            run.stdout
        );
        for event in events {
            assert!(
                run.stdout.contains(&format!("  {event}: added\n")),
                "{}",
                run.stdout
            );
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\n  \"hooks\": {\n    \""), "{text}");
        assert!(text.ends_with("}\n"), "{text}");
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_installed(&doc, harness, "bob");
        assert_eq!(doc["hooks"].as_object().unwrap().len(), events.len());
        assert!(!backup(&path).exists(), "no backup for a new file");
    }
}

/// A settings file of a user's own: other keys before and after `hooks`,
/// a hook of theirs on each of Arc's events, and an event Arc leaves be.
fn users_file(events: &[&str]) -> String {
    let mut hooks = serde_json::Map::new();
    for event in events {
        hooks.insert(
            event.to_string(),
            json!([{"matcher": "", "hooks": [{"type": "command", "command": format!("echo {event}")}]}]),
        );
    }
    hooks.insert(
        "Notification".into(),
        json!([{"hooks": [{"type": "command", "command": "notify-send hi"}]}]),
    );
    let hooks = serde_json::to_string(&Value::Object(hooks)).unwrap();
    // Written by hand so that the key order is not alphabetical.
    format!("{{\"zeta\": {{\"y\": 1, \"x\": 2}}, \"hooks\": {hooks}, \"alpha\": [1, 2.50]}}\n")
}

#[test]
fn hooks_install_merges_into_an_existing_file_and_is_idempotent() {
    for (harness, file, events, _) in HARNESSES {
        let d = Dirs::new();
        let path = d.settings(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let original = users_file(events);
        std::fs::write(&path, &original).unwrap();

        let run = d.hooks("install", harness, "bob", &[]);
        ok(&run);
        assert!(
            run.stdout
                .contains(&format!("(backup: {})", backup(&path).display())),
            "{}",
            run.stdout
        );
        assert_eq!(std::fs::read_to_string(backup(&path)).unwrap(), original);

        let text = std::fs::read_to_string(&path).unwrap();
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {text}"))
        };
        assert!(at("\"zeta\"") < at("\"hooks\"") && at("\"hooks\"") < at("\"alpha\""));
        assert!(
            at("\"y\"") < at("\"x\""),
            "key order inside objects is kept"
        );
        assert!(text.contains("2.50"), "numbers are kept as written");
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_installed(&doc, harness, "bob");
        let old: Value = serde_json::from_str(&original).unwrap();
        assert_eq!(doc["zeta"], old["zeta"]);
        assert_eq!(doc["alpha"], old["alpha"]);
        assert_eq!(doc["hooks"]["Notification"], old["hooks"]["Notification"]);
        for event in events {
            let groups = doc["hooks"][event].as_array().unwrap();
            assert_eq!(groups.len(), 2, "{event}: {doc:#}");
            assert_eq!(
                groups[0], old["hooks"][event][0],
                "the user's group stays first"
            );
        }

        let installed = std::fs::read(&path).unwrap();
        let stamp = mtime(&path);
        let again = d.hooks("install", harness, "bob", &[]);
        ok(&again);
        assert_eq!(
            again.stdout,
            format!("nothing to change in {}\n", path.display())
        );
        assert_eq!(std::fs::read(&path).unwrap(), installed);
        assert_eq!(mtime(&path), stamp, "an unchanged file is not rewritten");
        assert_eq!(
            std::fs::read_to_string(backup(&path)).unwrap(),
            original,
            "nor backed up again"
        );
    }
}

#[test]
fn hooks_install_with_another_agent_replaces_instead_of_adding() {
    for (harness, file, events, _) in HARNESSES {
        let d = Dirs::new();
        ok(&d.hooks("install", harness, "bob", &[]));
        let run = d.hooks("install", harness, "carol", &[]);
        ok(&run);
        for event in events {
            assert!(
                run.stdout.contains(&format!("  {event}: replaced\n")),
                "{}",
                run.stdout
            );
        }
        let path = d.settings(file);
        let doc = read_json(&path);
        assert_installed(&doc, harness, "carol");
        assert!(!std::fs::read_to_string(&path).unwrap().contains("bob"));
        let before = read_json(&backup(&path));
        assert_installed(&before, harness, "bob");
    }
}

#[test]
fn hooks_uninstall_removes_only_arcs_entries() {
    for (harness, file, events, _) in HARNESSES {
        let d = Dirs::new();
        let path = d.settings(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let original = users_file(events);
        std::fs::write(&path, &original).unwrap();
        ok(&d.hooks("install", harness, "bob", &[]));

        let run = d.hooks("uninstall", harness, "bob", &[]);
        ok(&run);
        assert!(
            run.stdout.starts_with(&format!(
                "removed {} Arc hooks from {}",
                events.len(),
                path.display()
            )),
            "{}",
            run.stdout
        );
        for event in events {
            assert!(
                run.stdout.contains(&format!("  {event}: removed\n")),
                "{}",
                run.stdout
            );
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc, serde_json::from_str::<Value>(&original).unwrap());
        assert!(text.find("\"zeta\"").unwrap() < text.find("\"alpha\"").unwrap());

        let again = d.hooks("uninstall", harness, "bob", &[]);
        ok(&again);
        assert_eq!(
            again.stdout,
            format!("nothing to change in {}\n", path.display())
        );
    }
}

#[test]
fn hooks_uninstall_of_a_file_arc_made_leaves_an_empty_object() {
    for (harness, file, _, _) in HARNESSES {
        let d = Dirs::new();
        ok(&d.hooks("install", harness, "bob", &[]));
        ok(&d.hooks("uninstall", harness, "someone-else", &[]));
        assert_eq!(std::fs::read_to_string(d.settings(file)).unwrap(), "{}\n");
    }
}

#[test]
fn hooks_uninstall_without_a_file_changes_nothing() {
    for (harness, file, _, _) in HARNESSES {
        let d = Dirs::new();
        let run = d.hooks("uninstall", harness, "bob", &[]);
        ok(&run);
        let path = d.settings(file);
        assert_eq!(
            run.stdout,
            format!("nothing to change in {}\n", path.display())
        );
        assert!(!path.parent().unwrap().exists(), "no directory made");
    }
}

#[test]
fn hooks_install_refuses_an_unparseable_file() {
    for (harness, file, events, _) in HARNESSES {
        let bad_event = format!("{{\"hooks\": {{\"{}\": 3}}}}", events[0]);
        let contents = [
            "{\"hooks\": [",
            "[]",
            "{\"hooks\": {\"Stop\": 3}}",
            "{\"hooks\": []}",
            "{\"hooks\": {\"Stop\": [],",
            bad_event.as_str(),
        ];
        for content in contents {
            for verb in ["install", "uninstall"] {
                let d = Dirs::new();
                let path = d.settings(file);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, content).unwrap();
                let stamp = mtime(&path);
                let run = d.hooks(verb, harness, "bob", &[]);
                assert_eq!(
                    run.code,
                    Some(1),
                    "{harness} {verb} {content}: {}",
                    run.stdout
                );
                assert!(run.stdout.is_empty(), "{}", run.stdout);
                let first = run.stderr.lines().next().unwrap_or_default();
                assert!(
                    first.starts_with(&format!("arc: invalid: hooks: {}: ", path.display()))
                        && first.ends_with("; nothing was changed"),
                    "{harness} {content}: {}",
                    run.stderr
                );
                assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
                assert_eq!(mtime(&path), stamp);
                assert!(!backup(&path).exists());
                let dir: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
                assert_eq!(dir.len(), 1, "no temp file left behind");
            }
        }
    }
}

#[test]
fn hooks_install_says_why_a_file_is_refused() {
    let d = Dirs::new();
    let path = d.settings(".claude/settings.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let cases = [
        ("{\"hooks\": [", "not JSON"),
        ("[]", "the top level is not a JSON object"),
        (
            "{\"hooks\": {\"Stop\": 3}}",
            "hooks.Stop is not a JSON array",
        ),
        ("{\"hooks\": []}", "\"hooks\" is not a JSON object"),
    ];
    for (content, why) in cases {
        std::fs::write(&path, content).unwrap();
        let run = d.hooks("install", "claude-code", "bob", &[]);
        assert_eq!(run.code, Some(1));
        assert!(run.stderr.contains(why), "{content}: {}", run.stderr);
    }
}

#[test]
fn hooks_install_dry_run_writes_nothing() {
    for (harness, file, _, _) in HARNESSES {
        let d = Dirs::new();
        let path = d.settings(file);
        let run = d.hooks("install", harness, "bob", &["--dry-run"]);
        ok(&run);
        assert!(run.stdout.starts_with("would install "), "{}", run.stdout);
        assert!(
            run.stdout.ends_with("}\n(dry run: nothing written)\n"),
            "{}",
            run.stdout
        );
        let json_text = &run.stdout[run.stdout.find("\n{").unwrap() + 1..]
            .trim_end_matches("(dry run: nothing written)\n");
        assert_installed(&serde_json::from_str(json_text).unwrap(), harness, "bob");
        assert!(
            !path.parent().unwrap().exists(),
            "{harness}: no directory made"
        );

        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{\"keep\": true}").unwrap();
        let run = d.hooks("install", harness, "bob", &["--dry-run"]);
        ok(&run);
        assert!(run.stdout.contains("\"keep\": true"), "{}", run.stdout);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"keep\": true}");
        assert!(!backup(&path).exists());

        ok(&d.hooks("install", harness, "bob", &[]));
        let installed = std::fs::read(&path).unwrap();
        let run = d.hooks("uninstall", harness, "bob", &["--dry-run"]);
        ok(&run);
        assert!(run.stdout.starts_with("would remove "), "{}", run.stdout);
        assert_eq!(std::fs::read(&path).unwrap(), installed);
    }
}

#[test]
fn hooks_install_user_scope_writes_under_home() {
    for (harness, file, _, _) in HARNESSES {
        let d = Dirs::new();
        let run = d.arc(&["hooks", "install", harness, "--agent", "bob", "--user"]);
        ok(&run);
        let path = d.home.join(file);
        assert!(
            run.stdout.contains(&path.display().to_string()),
            "{}",
            run.stdout
        );
        assert_installed(&read_json(&path), harness, "bob");
        assert!(!d.settings(file).exists(), "the project is left alone");
        ok(&d.arc(&["hooks", "uninstall", harness, "--agent", "bob", "--user"]));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
    }
}

#[test]
fn hooks_install_defaults_to_the_current_directory() {
    let d = Dirs::new();
    ok(&d.arc(&["hooks", "install", "codex", "--agent", "bob"]));
    assert_installed(&read_json(&d.settings(".codex/hooks.json")), "codex", "bob");
}

#[cfg(unix)]
#[test]
fn hooks_install_keeps_a_private_files_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dirs::new();
    let path = d.settings(".claude/settings.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{\"env\": {\"KEY\": \"secret\"}}").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(&d.hooks("install", "claude-code", "bob", &[]));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&backup(&path)), 0o600);
}

/// The installed command, with its program swapped for `printf`, prints
/// the arguments `arc hook` would get: quoting survives the shell.
#[cfg(unix)]
#[test]
fn hooks_install_quotes_the_command_for_the_shell() {
    let d = Dirs::new();
    let relay = d.project.join("relay dir");
    let agent = "o'brien & co $HOME";
    let run = d.hooks(
        "install",
        "claude-code",
        agent,
        &["--relay-dir", relay.to_str().unwrap()],
    );
    ok(&run);
    let path = d.settings(".claude/settings.json");
    let doc = read_json(&path);
    let command = doc["hooks"]["SessionStart"][0]["hooks"][0]["command"]
        .as_str()
        .unwrap()
        .to_string();
    let exe = env!("CARGO_BIN_EXE_arc");
    assert!(command.starts_with(exe), "{command}");
    let shown = command.replacen(exe, "printf '%s\\n'", 1);
    let out = Command::new("sh").arg("-c").arg(&shown).output().unwrap();
    let args: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        args,
        [
            "hook",
            "claude-code",
            "--agent",
            agent,
            "--relay-dir",
            relay.to_str().unwrap()
        ]
    );
    // Quoted as it is, the entry is still recognised as Arc's.
    ok(&d.hooks("install", "claude-code", "plain", &[]));
    assert_installed(&read_json(&path), "claude-code", "plain");
}

/// The guard's hook goes in a group with the guard's matcher: an Arc hook
/// left in another group of the guard event (an older install's) moves
/// there, and the user's hooks stay where they were.
#[test]
fn hooks_install_puts_the_guard_in_a_group_of_its_own_matcher() {
    let exe = env!("CARGO_BIN_EXE_arc");
    for (harness, event, matcher) in GUARDS {
        let d = Dirs::new();
        let (_, file, _, _) = HARNESSES.iter().find(|h| h.0 == harness).unwrap();
        let path = d.settings(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let old = json!({"hooks": {event: [
            {"matcher": "Bash", "hooks": [
                {"type": "command", "command": format!("{exe} hook {harness} --agent old")},
                {"type": "command", "command": "audit-shell"},
            ]},
        ]}});
        std::fs::write(&path, old.to_string()).unwrap();
        let run = d.hooks("install", harness, "bob", &[]);
        ok(&run);
        assert!(
            run.stdout.contains(&format!("  {event}: added\n")),
            "{}",
            run.stdout
        );
        let doc = read_json(&path);
        assert_installed(&doc, harness, "bob");
        let groups = doc["hooks"][event].as_array().unwrap();
        assert_eq!(groups.len(), 2, "{doc:#}");
        assert_eq!(
            groups[0],
            json!({"matcher": "Bash", "hooks": [{"type": "command", "command": "audit-shell"}]})
        );
        assert_eq!(groups[1]["matcher"], json!(matcher));
        let again = d.hooks("install", harness, "bob", &[]);
        assert_eq!(
            again.stdout,
            format!("nothing to change in {}\n", path.display())
        );
        ok(&d.hooks("uninstall", harness, "bob", &[]));
        assert_eq!(
            read_json(&path)["hooks"][event],
            json!([{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit-shell"}]}])
        );
    }
}

/// The installed `UserPromptSubmit` command, run as the harness runs it,
/// against a hub that is not there: it exits 0 and says nothing.
#[cfg(unix)]
#[test]
fn hooks_install_command_runs_and_never_breaks_the_harness() {
    use std::io::Write;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let d = Dirs::new();
    ok(&d.hooks("install", "claude-code", "bob", &["--base-url", &url]));
    let doc = read_json(&d.settings(".claude/settings.json"));
    let hooks = arc_hooks(&doc, "UserPromptSubmit");
    let command = hooks[0]["command"].as_str().unwrap();
    assert!(
        command.ends_with(&format!(" --base-url {url}")),
        "{command}"
    );

    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(&d.project)
        .env("HOME", &d.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"hook_event_name":"UserPromptSubmit"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A settings file that is a symlink (a dotfile manager's) stays one: the
/// file it points at is changed, and backed up beside itself.
#[cfg(unix)]
#[test]
fn hooks_install_follows_a_symlinked_settings_file() {
    let d = Dirs::new();
    let real = d.home.join("dotfiles").join("settings.json");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::write(&real, "{\"theme\": \"dark\"}\n").unwrap();
    let link = d.settings(".claude/settings.json");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    ok(&d.hooks("install", "claude-code", "bob", &[]));
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let doc = read_json(&real);
    assert_eq!(doc["theme"], "dark");
    assert_installed(&doc, "claude-code", "bob");
    assert_eq!(
        std::fs::read_to_string(backup(&real)).unwrap(),
        "{\"theme\": \"dark\"}\n"
    );
}

/// A FIFO where the settings file should be is refused at once, not read.
#[cfg(unix)]
#[test]
fn hooks_install_refuses_a_fifo_without_waiting() {
    let d = Dirs::new();
    let path = d.settings(".claude/settings.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let made = Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(made.success());
    let run = d.hooks("install", "claude-code", "bob", &[]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stderr
            .starts_with(&format!("arc: invalid: hooks: {}: ", path.display())),
        "{}",
        run.stderr
    );
    assert!(!backup(&path).exists());
}
