//! The reservation guards (docs/WAKE.md, "Guards"), through the real
//! binary: `arc guard pre-commit|install` in real temporary git
//! repositories, and the `PreToolUse`/`BeforeTool` hooks of each harness
//! fed the recorded events of `tests/fixtures/hooks/`, against real hubs
//! whose project root is the repository.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TempDir, TestHub, eventually};

const ARC: &str = env!("CARGO_BIN_EXE_arc");

/// What a finished process said.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

// Some helpers serve only the tests that need a POSIX shell.
#[cfg_attr(not(unix), allow(dead_code))]
impl Out {
    fn of(out: std::process::Output, took: Duration) -> Out {
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took,
        }
    }

    /// The lines of `arc guard` on stderr.
    fn guard_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("arc guard:"))
            .collect()
    }
}

/// Runs `cmd` with `input` on stdin, killing it if it outlives 30 s.
fn run(mut cmd: Command, input: &[u8]) -> Out {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    drop(stdin);
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    eventually(Duration::from_secs(30), "the process to finish", || {
        waiter.is_finished().then_some(())
    });
    Out::of(waiter.join().unwrap(), started.elapsed())
}

/// A real git repository in a temp dir, with a home of its own (so no
/// global git configuration or hooks path applies) and one commit.
struct Repo {
    _tmp: TempDir,
    dir: PathBuf,
    home: PathBuf,
}

#[cfg_attr(not(unix), allow(dead_code))]
impl Repo {
    fn new() -> Repo {
        let tmp = TempDir::new("guard");
        let dir = tmp.path().join("work tree");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let r = Repo {
            _tmp: tmp,
            dir,
            home,
        };
        r.ok(&["-c", "init.defaultBranch=main", "init", "-q"]);
        r.ok(&["config", "user.name", "Alice Example"]);
        r.ok(&["config", "user.email", "alice@example.com"]);
        r.write("README.md", "# proj\n");
        r.ok(&["add", "README.md"]);
        r.ok(&["commit", "-q", "-m", "initial"]);
        r
    }

    fn env(&self, cmd: &mut Command) {
        cmd.current_dir(&self.dir)
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE");
    }

    fn git(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new("git");
        cmd.args(args);
        self.env(&mut cmd);
        run(cmd, b"")
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Out {
        let out = self.git(args);
        assert_eq!(out.code, Some(0), "git {args:?}: {out:?}");
        out
    }

    fn arc(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new(ARC);
        cmd.args(args);
        self.env(&mut cmd);
        run(cmd, b"")
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Writes and stages `rel`.
    fn stage(&self, rel: &str) {
        self.write(rel, &format!("changed {}\n", arc_hub::ids::uuid4_hex()));
        self.ok(&["add", "--", rel]);
    }

    fn commit(&self) -> Out {
        self.git(&["commit", "-m", "change"])
    }

    fn commits(&self) -> usize {
        let out = self.ok(&["rev-list", "--count", "HEAD"]);
        out.stdout.trim().parse().unwrap()
    }

    fn hooks(&self) -> PathBuf {
        self.dir.join(".git").join("hooks")
    }

    /// `arc guard install --agent AGENT --base-url URL MORE...`, checked.
    #[track_caller]
    fn install(&self, agent: &str, url: &str, more: &[&str]) -> Out {
        let mut args = vec!["guard", "install", "--agent", agent, "--base-url", url];
        args.extend_from_slice(more);
        let out = self.arc(&args);
        assert_eq!(out.code, Some(0), "{out:?}");
        out
    }

    fn pre_commit(&self, agent: &str, url: &str, more: &[&str]) -> Out {
        let mut args = vec!["guard", "pre-commit", "--agent", agent, "--base-url", url];
        args.extend_from_slice(more);
        self.arc(&args)
    }
}

/// A hub whose project root is `repo`'s work tree.
fn hub_for(root: &Path) -> TestHub {
    let root = root.to_path_buf();
    TestHub::start_with(move |c| c.project_root = Some(root))
}

/// `agent` reserves `paths` with `reason`; returns the reservation.
fn reserve(h: &TestHub, agent: &str, paths: &[&str], reason: Option<&str>) -> Value {
    let mut body = json!({"agent_id": agent, "paths": paths, "mode": "exclusive", "ttl_sec": 600});
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    let r = h.post("/v1/reservations", body);
    assert_eq!(r.status, 201, "{r}");
    r.result().clone()
}

/// `agent` takes the reference lock on `path`; returns the lock.
fn lock(h: &TestHub, agent: &str, path: &str) -> Value {
    let r = h.post(
        "/v1/locks",
        json!({"agent_id": agent, "file_path": path, "ttl_sec": 600}),
    );
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(r.json["acquired"], json!(true), "{r}");
    r.result().clone()
}

/// The guard notices in `general`.
fn notices(h: &TestHub) -> Vec<Value> {
    let r = h.get("/v1/messages?channel=general&limit=500");
    r.result()
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["metadata"].get("arc_guard").is_some())
        .cloned()
        .collect()
}

/// A port nothing listens on.
fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

/// A stand-in hub that answers every request with `status` and a JSON
/// error (a hub without the route, or a busy one), for the test's life.
fn fixed_status_url(status: u16) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 8192];
            let _ = c.read(&mut buf);
            let body = r#"{"ok":false,"error":"not here"}"#;
            let _ = write!(
                c,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

// ============================================================ git guard

#[cfg(unix)]
#[test]
fn a_commit_of_a_path_another_agent_reserved_is_refused() {
    let repo = Repo::new();
    let h = hub_for(&repo.dir);
    let res = reserve(&h, "bob", &["src/**"], Some("parser rewrite"));
    let expires = res["expires_at"].as_str().unwrap().to_string();
    let installed = repo.install("alice", &h.url, &[]);
    let hook = repo.hooks().join("pre-commit");
    assert_eq!(
        installed.stdout,
        format!("installed the Arc guard in {}\n", hook.display())
    );

    repo.stage("src/parser.rs");
    let before = repo.commits();
    let out = repo.commit();
    assert_ne!(out.code, Some(0), "{out:?}");
    assert_eq!(repo.commits(), before, "nothing was committed");
    let line = "  src/parser.rs: reserved by bob (pattern src/**, exclusive) until ";
    assert!(
        out.stderr
            .contains(&format!("{line}{expires}: parser rewrite\n")),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("arc guard: 1 staged path is held by another agent:\n"),
        "{out:?}"
    );
    assert!(out.stderr.contains("arc guard: commit refused"), "{out:?}");

    // The refusal is in the feed, once.
    let n = notices(&h);
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0]["from_agent"], json!("alice"));
    assert_eq!(n[0]["kind"], json!("notice"));
    assert_eq!(
        n[0]["body"],
        json!(format!(
            "guard: alice was refused src/parser.rs (reserved by bob until {expires}: parser rewrite)"
        ))
    );
    let g = &n[0]["metadata"]["arc_guard"];
    assert_eq!(g["source"], json!("pre-commit"));
    assert_eq!(g["action"], json!("deny"));
    assert_eq!(g["paths"], json!(["src/parser.rs"]));
    assert_eq!(g["conflicts"][0]["agent_id"], json!("bob"));
    assert_eq!(g["conflicts"][0]["pattern"], json!("src/**"));
    assert_eq!(g["conflicts"][0]["reservation_id"], res["reservation_id"]);

    // Unstaged, the reserved path is no obstacle to another commit.
    repo.ok(&["reset", "-q", "--", "src/parser.rs"]);
    repo.stage("docs/guide.md");
    let out = repo.commit();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(repo.commits(), before + 1);
    assert_eq!(notices(&h).len(), 1, "a free commit posts nothing");
}

#[cfg(unix)]
#[test]
fn warn_only_reports_the_holder_and_lets_the_commit_through() {
    let repo = Repo::new();
    let h = hub_for(&repo.dir);
    let res = reserve(&h, "bob", &["src/parser.rs"], None);
    let expires = res["expires_at"].as_str().unwrap();
    repo.stage("src/parser.rs");
    let line = format!(
        "  src/parser.rs: reserved by bob (pattern src/parser.rs, exclusive) until {expires}\n"
    );

    // Run directly.
    let out = repo.pre_commit("alice", &h.url, &["--warn-only"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains(&line), "{out:?}");
    assert!(
        out.stderr.contains("--warn-only: the commit goes ahead"),
        "{out:?}"
    );
    let direct = repo.pre_commit("alice", &h.url, &[]);
    assert_eq!(direct.code, Some(1), "{direct:?}");
    assert!(direct.stderr.contains(&line), "{direct:?}");

    // Installed with --warn-only.
    repo.install("alice", &h.url, &["--warn-only"]);
    let script = std::fs::read_to_string(repo.hooks().join("pre-commit")).unwrap();
    assert!(script.contains(" --warn-only\n"), "{script}");
    let before = repo.commits();
    let out = repo.commit();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(repo.commits(), before + 1);
    assert!(out.stderr.contains(&line), "{out:?}");

    let n = notices(&h);
    let actions: Vec<&Value> = n
        .iter()
        .map(|m| &m["metadata"]["arc_guard"]["action"])
        .collect();
    assert_eq!(
        actions,
        [&json!("warn"), &json!("deny"), &json!("warn")],
        "{n:?}"
    );
    assert_eq!(
        n[0]["body"],
        json!(format!(
            "guard: alice was warned about src/parser.rs (reserved by bob until {expires})"
        ))
    );
}

/// Writes an executable pre-commit hook of the user's.
#[cfg(unix)]
fn users_hook(repo: &Repo, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let hook = repo.hooks().join("pre-commit");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(&hook, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    hook
}

#[cfg(unix)]
#[test]
fn an_existing_pre_commit_hook_is_chained_and_runs_first() {
    let repo = Repo::new();
    let h = hub_for(&repo.dir);
    let marker = repo.home.join("marker");
    let hook = users_hook(&repo, &format!("echo ran >> '{}'", marker.display()));
    let original = std::fs::read(&hook).unwrap();
    let out = repo.install("alice", &h.url, &[]);
    let chained = repo.hooks().join("pre-commit.arc-chained");
    assert_eq!(
        out.stdout,
        format!(
            "installed the Arc guard in {}; the hook that was there runs first, from {}\n",
            hook.display(),
            chained.display()
        )
    );
    assert_eq!(std::fs::read(&chained).unwrap(), original);

    repo.stage("docs/free.md");
    let out = repo.commit();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "ran\n");

    reserve(&h, "bob", &["src/**"], None);
    repo.stage("src/held.rs");
    let out = repo.commit();
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("src/held.rs: reserved by bob"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "ran\nran\n",
        "the user's hook ran before the guard refused"
    );
}

#[cfg(unix)]
#[test]
fn a_failing_pre_existing_hook_still_fails_the_commit() {
    let repo = Repo::new();
    let h = hub_for(&repo.dir);
    users_hook(&repo, "echo 'lint: trailing whitespace' >&2\nexit 3");
    repo.install("alice", &h.url, &[]);
    repo.stage("docs/free.md");
    let before = repo.commits();
    let out = repo.commit();
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("lint: trailing whitespace"), "{out:?}");
    assert_eq!(repo.commits(), before);
    assert!(out.guard_lines().is_empty(), "the guard never ran: {out:?}");
}

#[cfg(unix)]
#[test]
fn installing_twice_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let repo = Repo::new();
    let h = hub_for(&repo.dir);
    let marker = repo.home.join("marker");
    let hook = users_hook(&repo, &format!("echo ran >> '{}'", marker.display()));
    let original = std::fs::read(&hook).unwrap();
    repo.install("alice", &h.url, &[]);
    let chained = repo.hooks().join("pre-commit.arc-chained");
    let installed = std::fs::read(&hook).unwrap();
    let again = repo.install("alice", &h.url, &[]);
    assert_eq!(
        again.stdout,
        format!("nothing to change in {}\n", hook.display())
    );
    assert_eq!(std::fs::read(&hook).unwrap(), installed);
    assert_eq!(
        std::fs::read(&chained).unwrap(),
        original,
        "not chained twice"
    );
    let names: Vec<String> = std::fs::read_dir(repo.hooks())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pre-commit") && !n.ends_with(".sample"))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // Another agent: the guard is rewritten, the chain kept.
    let other = repo.install("carol", &h.url, &[]);
    assert_eq!(
        other.stdout,
        format!("updated the Arc guard in {}\n", hook.display())
    );
    let script = std::fs::read_to_string(&hook).unwrap();
    assert!(script.contains(" --agent carol "), "{script}");
    assert_eq!(std::fs::read(&chained).unwrap(), original);
    let mode = std::fs::metadata(&hook).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "executable: {mode:o}");
    repo.stage("docs/free.md");
    assert_eq!(repo.commit().code, Some(0));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "ran\n",
        "run once"
    );

    // A new hook of the user's where Arc's was, with the chain taken:
    // refused, nothing lost.
    users_hook(&repo, "exit 0");
    let out = repo.arc(&["guard", "install", "--agent", "alice", "--base-url", &h.url]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("is already taken"), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&hook).unwrap(),
        "#!/bin/sh\nexit 0\n"
    );
    assert_eq!(std::fs::read(&chained).unwrap(), original);
}

#[cfg(unix)]
#[test]
fn the_hook_is_posix_sh_naming_this_arc_and_the_hub() {
    use std::os::unix::fs::PermissionsExt;
    let repo = Repo::new();
    let h = hub_for(&repo.dir);
    repo.install("o'brien & co", &h.url, &["--strict"]);
    let hook = repo.hooks().join("pre-commit");
    let script = std::fs::read_to_string(&hook).unwrap();
    assert!(script.starts_with("#!/bin/sh\n"), "{script}");
    assert!(script.contains(&format!("\narc='{ARC}'\n")), "{script}");
    assert!(
        script.ends_with(&format!(
            "exec \"$arc\" guard pre-commit --agent 'o'\\''brien & co' --base-url {} --strict\n",
            h.url
        )),
        "{script}"
    );
    let mode = std::fs::metadata(&hook).unwrap().permissions().mode();
    assert_eq!(mode & 0o755, 0o755, "{mode:o}");
    let syntax = Command::new("sh").arg("-n").arg(&hook).output().unwrap();
    assert!(syntax.status.success(), "{syntax:?}");

    // Through a relay: the spool directory, made absolute.
    let out = repo.arc(&[
        "guard",
        "install",
        "--agent",
        "alice",
        "--relay-dir",
        "spool",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let script = std::fs::read_to_string(&hook).unwrap();
    let spool = repo.dir.join("spool");
    assert!(
        script.ends_with(&format!(
            "guard pre-commit --agent alice --relay-dir '{}'\n",
            spool.display()
        )),
        "{script}"
    );
}

#[cfg(unix)]
#[test]
fn core_hooks_path_is_honoured() {
    let repo = Repo::new();
    let h = hub_for(&repo.dir);
    repo.ok(&["config", "core.hooksPath", "githooks"]);
    let out = repo.install("alice", &h.url, &[]);
    let hook = repo.dir.join("githooks").join("pre-commit");
    assert_eq!(
        out.stdout,
        format!("installed the Arc guard in {}\n", hook.display())
    );
    assert!(!repo.hooks().join("pre-commit").exists());
    reserve(&h, "bob", &["src/**"], None);
    repo.stage("src/a.rs");
    assert_ne!(repo.commit().code, Some(0));
}

#[cfg(unix)]
#[test]
fn a_path_locked_by_another_agent_is_refused_too() {
    let repo = Repo::new();
    let h = hub_for(&repo.dir);
    let l = lock(&h, "bob", "src/parser.rs");
    repo.install("alice", &h.url, &[]);
    repo.stage("src/parser.rs");
    let out = repo.commit();
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "  src/parser.rs: locked by bob (lock on src/parser.rs) until {}\n",
            l["expires_at"].as_str().unwrap()
        )),
        "{out:?}\n{l}"
    );
    let n = notices(&h);
    assert_eq!(n.len(), 1);
    assert_eq!(
        n[0]["metadata"]["arc_guard"]["conflicts"][0]["mode"],
        json!("lock")
    );
    assert_eq!(
        n[0]["metadata"]["arc_guard"]["conflicts"][0]["reservation_id"],
        Value::Null
    );
}

#[test]
fn the_agents_own_reservation_does_not_block() {
    let repo = Repo::new();
    let h = hub_for(&repo.dir);
    reserve(&h, "alice", &["src/**"], Some("mine"));
    lock(&h, "alice", "docs/guide.md");
    repo.stage("src/parser.rs");
    repo.stage("docs/guide.md");
    let out = repo.pre_commit("alice", &h.url, &[]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "", ""),
        "{out:?}"
    );
    assert!(notices(&h).is_empty());
    let bob = repo.pre_commit("bob", &h.url, &[]);
    assert_eq!(bob.code, Some(1), "{bob:?}");
    assert!(
        bob.stderr
            .contains("arc guard: 2 staged paths are held by other agents:"),
        "{bob:?}"
    );
}

#[test]
fn many_staged_paths_are_all_checked() {
    let repo = Repo::new();
    let h = hub_for(&repo.dir);
    for i in 0..150 {
        repo.write(&format!("gen/f{i:03}.txt"), "x\n");
    }
    repo.ok(&["add", "gen"]);
    reserve(&h, "bob", &["gen/f140.txt"], None);
    let out = repo.pre_commit("alice", &h.url, &[]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("  gen/f140.txt: reserved by bob"),
        "{out:?}"
    );
    assert_eq!(out.stderr.matches("reserved by").count(), 1, "{out:?}");
}

#[test]
fn a_hub_that_cannot_answer_allows_in_one_line_and_strict_refuses() {
    let repo = Repo::new();
    repo.stage("src/parser.rs");
    let cases = [
        ("unreachable", dead_url()),
        ("no such route", fixed_status_url(404)),
        ("busy", fixed_status_url(503)),
    ];
    for (what, url) in cases {
        let out = repo.pre_commit("alice", &url, &[]);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (Some(0), ""),
            "{what}: {out:?}"
        );
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {out:?}");
        assert!(
            out.stderr
                .starts_with("arc guard: cannot check the staged paths with the hub at ")
                && out.stderr.ends_with("; the commit is allowed\n"),
            "{what}: {out:?}"
        );
        assert!(out.took < Duration::from_secs(12), "{what}: {out:?}");
        let strict = repo.pre_commit("alice", &url, &["--strict"]);
        assert_eq!(
            (strict.code, strict.stdout.as_str()),
            (Some(1), ""),
            "{what}: {strict:?}"
        );
        assert_eq!(strict.stderr.lines().count(), 1, "{what}: {strict:?}");
        assert!(
            strict.stderr.ends_with("; commit refused (--strict)\n"),
            "{what}: {strict:?}"
        );
    }
}

#[cfg(unix)]
#[test]
fn an_unreachable_hub_never_blocks_a_commit_unless_strict() {
    let repo = Repo::new();
    let url = dead_url();
    repo.install("alice", &url, &[]);
    repo.stage("src/parser.rs");
    let out = repo.commit();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.guard_lines().len(), 1, "{out:?}");
    repo.install("alice", &url, &["--strict"]);
    repo.stage("src/parser.rs");
    let out = repo.commit();
    assert_ne!(out.code, Some(0), "{out:?}");
    assert_eq!(out.guard_lines().len(), 1, "{out:?}");
}

#[test]
fn nothing_staged_asks_nothing() {
    let repo = Repo::new();
    let out = repo.pre_commit("alice", &dead_url(), &["--strict"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "", ""),
        "{out:?}"
    );
}

// ========================================================= harness hooks

fn fixture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hooks")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `arc hook HARNESS --agent AGENT --base-url URL` with `event` on stdin,
/// in a temp dir of its own.
fn hook(harness: &str, agent: &str, url: &str, event: &[u8]) -> Out {
    let dir = TempDir::new("guard-hook");
    let mut cmd = Command::new(ARC);
    cmd.args(["hook", harness, "--agent", agent, "--base-url", url])
        .current_dir(dir.path())
        .env("HOME", dir.path());
    run(cmd, event)
}

/// The one object a refusing hook printed, after checking the whole
/// output: exit 0, nothing on stderr, one line holding one object.
#[track_caller]
fn refusal(out: &Out) -> Value {
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stderr, "", "{out:?}");
    assert!(out.stdout.ends_with('\n'), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "{out:?}");
    let values: Vec<Value> = serde_json::Deserializer::from_str(&out.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"));
    assert_eq!(values.len(), 1, "{out:?}");
    values.into_iter().next().unwrap()
}

/// What a refusal of `harness` is, exactly, as text.
fn expected(harness: &str, why: &str) -> String {
    let why = Value::from(why);
    match harness {
        "gemini" => format!("{{\"decision\":\"deny\",\"reason\":{why}}}\n"),
        _ => format!(
            "{{\"hookSpecificOutput\":{{\"hookEventName\":\"PreToolUse\",\"permissionDecision\":\"deny\",\"permissionDecisionReason\":{why}}}}}\n"
        ),
    }
}

/// (harness, fixture, the project-relative path its tool writes).
const GUARDED: [(&str, &str, &str); 7] = [
    (
        "claude-code",
        "claude-code/PreToolUse.json",
        "src/parser.rs",
    ),
    (
        "claude-code",
        "claude-code/guard/PreToolUse-Write.json",
        "docs/parser.md",
    ),
    (
        "claude-code",
        "claude-code/guard/PreToolUse-MultiEdit.json",
        "src/lib.rs",
    ),
    ("codex", "codex/PreToolUse.json", "src/parse.rs"),
    ("codex", "codex/PreToolUse.json", "tests/parse.rs"),
    ("gemini", "gemini/BeforeTool.json", "src/config.rs"),
    (
        "gemini",
        "gemini/guard/BeforeTool-replace.json",
        "src/parser.rs",
    ),
];

#[test]
fn harness_hooks_refuse_a_path_another_agent_reserved() {
    let root = TempDir::new("guard-root");
    let h = hub_for(root.path());
    for (i, (harness, file, path)) in GUARDED.iter().enumerate() {
        let holder = format!("bob{i}");
        let res = reserve(&h, &holder, &[path], Some("parser rewrite"));
        let expires = res["expires_at"].as_str().unwrap();
        let out = hook(harness, "alice", &h.url, &fixture(file));
        let why = format!("{path} is reserved by {holder} until {expires}: parser rewrite");
        refusal(&out);
        assert_eq!(out.stdout, expected(harness, &why), "{file}: {out:?}");
        assert!(out.took < Duration::from_secs(5), "{file}: {out:?}");
        let r = h.post(
            &format!(
                "/v1/reservations/{}/release",
                res["reservation_id"].as_str().unwrap()
            ),
            json!({"agent_id": holder}),
        );
        assert_eq!(r.status, 200, "{r}");
    }
}

#[test]
fn harness_hooks_refuse_a_locked_path_and_name_every_holder() {
    let root = TempDir::new("guard-root");
    let h = hub_for(root.path());
    let l = lock(&h, "carol", "src/parser.rs");
    let until = l["expires_at"].as_str().unwrap().to_string();
    let out = hook(
        "claude-code",
        "alice",
        &h.url,
        &fixture("claude-code/PreToolUse.json"),
    );
    refusal(&out);
    let why = format!("src/parser.rs is locked by carol until {until}");
    assert_eq!(out.stdout, expected("claude-code", &why), "{out:?}");

    // A patch naming two held files names both.
    let res = reserve(&h, "bob", &["tests/**"], None);
    let out = hook("codex", "alice", &h.url, &fixture("codex/PreToolUse.json"));
    let v = refusal(&out);
    let text = v["hookSpecificOutput"]["permissionDecisionReason"]
        .as_str()
        .unwrap();
    assert_eq!(
        text,
        format!(
            "src/parser.rs is locked by carol until {until}; tests/parse.rs is reserved by bob until {}",
            res["expires_at"].as_str().unwrap()
        ),
        "{out:?}"
    );
}

#[test]
fn harness_hooks_say_nothing_for_free_paths_and_other_tools() {
    let root = TempDir::new("guard-root");
    let h = hub_for(root.path());
    let quiet = |url: &str, harness: &str, file: &str| {
        let out = hook(harness, "alice", url, &fixture(file));
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (Some(0), "", ""),
            "{harness} {file}: {out:?}"
        );
    };
    for (harness, file, _) in GUARDED {
        quiet(&h.url, harness, file);
    }
    // Held, but by the agent itself.
    reserve(&h, "alice", &["src/**", "docs/**", "tests/**"], None);
    for (harness, file, _) in GUARDED {
        quiet(&h.url, harness, file);
    }
    assert!(notices(&h).is_empty());

    // Everything held by another agent, touched by tools that are not
    // guarded, or by an event that is not this harness's guard event.
    let h2 = hub_for(root.path());
    reserve(&h2, "bob", &["**"], None);
    quiet(
        &h2.url,
        "claude-code",
        "claude-code/guard/PreToolUse-Bash.json",
    );
    quiet(&h2.url, "codex", "codex/guard/PreToolUse-Bash.json");
    quiet(&h2.url, "gemini", "gemini/guard/BeforeTool-read_file.json");
    quiet(&h2.url, "gemini", "claude-code/PreToolUse.json");
    quiet(&h2.url, "claude-code", "gemini/BeforeTool.json");
    assert!(notices(&h2).is_empty());
    let out = hook(
        "claude-code",
        "alice",
        &h2.url,
        &fixture("claude-code/PreToolUse.json"),
    );
    assert!(refusal(&out)["hookSpecificOutput"].is_object(), "{out:?}");
}

/// `file_path` under the event's `cwd` is sent relative to it; anywhere
/// else it is sent as given, and the hub makes an absolute path under its
/// project root relative.
#[test]
fn harness_hooks_relativise_paths_only_under_cwd() {
    let root = TempDir::new("guard-root");
    let h = hub_for(root.path());
    let res = reserve(&h, "bob", &["src/parser.rs"], None);
    let expires = res["expires_at"].as_str().unwrap();
    let abs = root.path().join("src/parser.rs");
    let abs = abs.to_str().unwrap();
    let mut event: Value = serde_json::from_slice(&fixture("claude-code/PreToolUse.json")).unwrap();
    event["cwd"] = json!("/somewhere/else");
    event["tool_input"]["file_path"] = json!(abs);
    let out = hook("claude-code", "alice", &h.url, event.to_string().as_bytes());
    refusal(&out);
    let why = format!("{abs} is reserved by bob until {expires}");
    assert_eq!(out.stdout, expected("claude-code", &why), "{out:?}");

    // Outside the hub's project root too: the hub cannot check it, so the
    // hook allows.
    event["tool_input"]["file_path"] = json!("/elsewhere/src/parser.rs");
    let out = hook("claude-code", "alice", &h.url, event.to_string().as_bytes());
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), ""), "{out:?}");
    assert!(out.stderr.lines().count() <= 1, "{out:?}");
}

#[test]
fn harness_hooks_allow_when_the_hub_cannot_answer() {
    let urls = [dead_url(), fixed_status_url(404), fixed_status_url(503)];
    for url in &urls {
        for (harness, file, _) in GUARDED {
            let out = hook(harness, "alice", url, &fixture(file));
            assert_eq!(
                (out.code, out.stdout.as_str()),
                (Some(0), ""),
                "{url} {file}: {out:?}"
            );
            assert!(out.stderr.lines().count() <= 1, "{url} {file}: {out:?}");
            assert!(out.took < Duration::from_secs(5), "{url} {file}: {out:?}");
        }
    }
}

#[test]
fn a_harness_refusal_is_posted_to_general() {
    let root = TempDir::new("guard-root");
    let h = hub_for(root.path());
    let res = reserve(&h, "bob", &["src/**"], Some("parser rewrite"));
    let expires = res["expires_at"].as_str().unwrap();
    for (harness, file) in [
        ("claude-code", "claude-code/PreToolUse.json"),
        ("codex", "codex/PreToolUse.json"),
        ("gemini", "gemini/guard/BeforeTool-replace.json"),
    ] {
        let out = hook(harness, "alice", &h.url, &fixture(file));
        refusal(&out);
    }
    let n = notices(&h);
    assert_eq!(n.len(), 3, "{n:?}");
    let sources: Vec<&Value> = n
        .iter()
        .map(|m| &m["metadata"]["arc_guard"]["source"])
        .collect();
    assert_eq!(
        sources,
        [&json!("claude-code"), &json!("codex"), &json!("gemini")]
    );
    let held = format!("reserved by bob until {expires}: parser rewrite");
    assert_eq!(
        n[0]["body"],
        json!(format!("guard: alice was refused src/parser.rs ({held})"))
    );
    assert_eq!(
        n[1]["body"],
        json!(format!(
            "guard: alice was refused src/parser.rs, src/parse.rs ({held})"
        ))
    );
    for m in &n {
        assert_eq!(m["from_agent"], json!("alice"));
        assert_eq!(m["kind"], json!("notice"));
        assert_eq!(m["channel"], json!("general"));
        let g = &m["metadata"]["arc_guard"];
        assert_eq!(g["action"], json!("deny"), "{m}");
        assert_eq!(g["conflicts"][0]["agent_id"], json!("bob"), "{m}");
        assert_eq!(g["conflicts"][0]["pattern"], json!("src/**"), "{m}");
    }
    assert_eq!(
        n[1]["metadata"]["arc_guard"]["paths"],
        json!(["src/parser.rs", "src/parse.rs"])
    );
    // The hook never registered anyone.
    let agents = h.get("/v1/agents").result().clone();
    assert_eq!(agents, json!([]), "{agents}");
}

/// The guard command `arc hooks install` writes, run through `sh` as the
/// harness runs it, refuses.
#[cfg(unix)]
#[test]
fn the_installed_guard_hook_refuses_through_the_shell() {
    let root = TempDir::new("guard-root");
    let h = hub_for(root.path());
    let res = reserve(&h, "bob", &["src/parser.rs"], None);
    let project = root.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    let out = Command::new(ARC)
        .args([
            "hooks",
            "install",
            "claude-code",
            "--agent",
            "alice",
            "--base-url",
            &h.url,
        ])
        .current_dir(&project)
        .env("HOME", root.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let settings: Value =
        serde_json::from_slice(&std::fs::read(project.join(".claude/settings.json")).unwrap())
            .unwrap();
    let group = &settings["hooks"]["PreToolUse"][0];
    assert_eq!(group["matcher"], json!("Edit|Write|MultiEdit"));
    assert_eq!(group["hooks"][0]["timeout"], json!(10));
    let command = group["hooks"][0]["command"].as_str().unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&project)
        .env("HOME", root.path());
    let out = run(cmd, &fixture("claude-code/PreToolUse.json"));
    refusal(&out);
    let why = format!(
        "src/parser.rs is reserved by bob until {}",
        res["expires_at"].as_str().unwrap()
    );
    assert_eq!(out.stdout, expected("claude-code", &why));
}

/// Both guards reach the hub through a relay spool just as well.
#[test]
fn the_guards_work_through_the_relay() {
    let repo = Repo::new();
    let root = repo.dir.clone();
    let h = TestHub::start_with(move |c| {
        c.relay = true;
        c.project_root = Some(root);
    });
    let spool = h.dir.path().join(".arc-relay");
    let spool = spool.to_str().unwrap();
    let res = reserve(&h, "bob", &["src/**"], None);
    let expires = res["expires_at"].as_str().unwrap();
    repo.stage("src/parser.rs");
    let out = repo.arc(&[
        "guard",
        "pre-commit",
        "--agent",
        "alice",
        "--relay-dir",
        spool,
    ]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "  src/parser.rs: reserved by bob (pattern src/**, exclusive) until {expires}\n"
        )),
        "{out:?}"
    );

    let dir = TempDir::new("guard-hook");
    let mut cmd = Command::new(ARC);
    cmd.args(["hook", "gemini", "--agent", "alice", "--relay-dir", spool])
        .current_dir(dir.path())
        .env("HOME", dir.path());
    let out = run(cmd, &fixture("gemini/guard/BeforeTool-replace.json"));
    refusal(&out);
    let why = format!("src/parser.rs is reserved by bob until {expires}");
    assert_eq!(out.stdout, expected("gemini", &why), "{out:?}");
    let sources: Vec<Value> = eventually(Duration::from_secs(10), "both notices", || {
        let n = notices(&h);
        (n.len() == 2).then(|| {
            n.iter()
                .map(|m| m["metadata"]["arc_guard"]["source"].clone())
                .collect()
        })
    });
    assert_eq!(sources, [json!("pre-commit"), json!("gemini")]);
}
