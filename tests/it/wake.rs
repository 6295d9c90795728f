//! `arc hook` and `arc watch` through the real binary, against in-process
//! hubs, and the delivery record behind them (docs/PROTOCOL.md, "Delivery
//! and wake"). Every hook reads a recorded harness event from
//! `tests/fixtures/hooks/<harness>/<Event>.json` and runs in a temp dir
//! of its own; every wait is bounded in count and time.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_hub::client::Client;
use arc_hub::relay::{RelayConfig, RelayHandle};
use arc_hub::{Hub, HubConfig};
use serde_json::{Value, json};

use crate::support::{TempDir, TestHub, eventually};

const ARC: &str = env!("CARGO_BIN_EXE_arc");

/// The longest any one process of these tests may run before it counts
/// as hung (and is killed).
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// The events each harness takes `additionalContext` on (docs/WAKE.md),
/// written down here independently of `src/wake`.
const CONTEXT_EVENTS: [(&str, &[&str]); 3] = [
    (
        "claude-code",
        &["SessionStart", "UserPromptSubmit", "PostToolUse"],
    ),
    (
        "codex",
        &["SessionStart", "UserPromptSubmit", "PostToolUse"],
    ),
    ("gemini", &["SessionStart", "BeforeAgent", "AfterTool"]),
];

/// The end of every long body: it must not appear in a headers-only text.
const TAIL: &str = "TAIL-OF-THE-BODY-7f3a";

fn is_context(harness: &str, event: &str) -> bool {
    CONTEXT_EVENTS
        .iter()
        .any(|(h, evs)| *h == harness && evs.contains(&event))
}

fn long_body() -> String {
    format!("{}{TAIL}", "lorem ipsum dolor sit amet ".repeat(20))
}

// ---------------------------------------------------------------- fixtures

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hooks")
}

/// Every recorded event: (harness, event, bytes), in a stable order. Each
/// file's `hook_event_name` is its name; each harness has a fixture for
/// every one of its context events.
fn fixtures() -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (harness, events) in CONTEXT_EVENTS {
        let dir = fixtures_dir().join(harness);
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        for path in names {
            let event = path.file_stem().unwrap().to_str().unwrap().to_string();
            let bytes = std::fs::read(&path).unwrap();
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["hook_event_name"], json!(event), "{}", path.display());
            assert!(v["session_id"].is_string(), "{}", path.display());
            assert!(v["cwd"].is_string(), "{}", path.display());
            out.push((harness.to_string(), event, bytes));
        }
        for e in events {
            assert!(
                out.iter().any(|(h, ev, _)| h == harness && ev == e),
                "no fixture for {harness} {e}"
            );
        }
    }
    out
}

fn fixture(harness: &str, event: &str) -> Vec<u8> {
    let p = fixtures_dir().join(harness).join(format!("{event}.json"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// --------------------------------------------------------------- processes

/// What a finished process said.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

enum Input {
    Bytes(Vec<u8>),
    /// A pipe that is never written to nor closed (until the end).
    Open,
}

/// A running `arc` in a temp dir of its own (also its `HOME`).
struct Proc {
    child: Child,
    started: Instant,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
    _stdin: Option<std::process::ChildStdin>,
    _dir: TempDir,
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

fn spawn(args: &[&str], input: Input) -> Proc {
    let dir = TempDir::new("wake");
    let mut child = Command::new(ARC)
        .args(args)
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env_remove("ARC_BASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("arc starts");
    let started = Instant::now();
    let mut stdin = child.stdin.take();
    if let Input::Bytes(bytes) = input {
        let mut pipe = stdin.take().unwrap();
        // From a thread: a hook that stops reading must not block us.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    Proc {
        out: Some(drain(child.stdout.take().unwrap())),
        err: Some(drain(child.stderr.take().unwrap())),
        child,
        started,
        _stdin: stdin,
        _dir: dir,
    }
}

impl Proc {
    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the exit, at most `limit` (then kills it and fails).
    fn finish(mut self, limit: Duration) -> Out {
        let deadline = self.started + limit;
        let mut status = None;
        for _ in 0..1_000_000 {
            status = self.child.try_wait().unwrap();
            if status.is_some() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let took = self.started.elapsed();
        let hung = status.is_none();
        if hung {
            let _ = self.child.kill();
            status = self.child.wait().ok();
        }
        let text = |h: Option<JoinHandle<Vec<u8>>>| {
            String::from_utf8_lossy(&h.unwrap().join().unwrap()).into_owned()
        };
        let out = Out {
            code: status.and_then(|s| s.code()),
            stdout: text(self.out.take()),
            stderr: text(self.err.take()),
            took,
        };
        assert!(!hung, "arc did not exit within {limit:?}: {out:?}");
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn hook_args<'a>(
    harness: &'a str,
    agent: &'a str,
    url: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["hook", harness, "--agent", agent, "--base-url", url];
    args.extend_from_slice(extra);
    args
}

fn spawn_hook(url: &str, harness: &str, agent: &str, event: &[u8], extra: &[&str]) -> Proc {
    spawn(
        &hook_args(harness, agent, url, extra),
        Input::Bytes(event.to_vec()),
    )
}

fn hook(url: &str, harness: &str, agent: &str, event: &[u8], extra: &[&str]) -> Out {
    spawn_hook(url, harness, agent, event, extra).finish(RUN_LIMIT)
}

/// A context hook of `harness` for `event` (its fixture), with `extra`.
fn context(url: &str, harness: &str, event: &str, agent: &str, extra: &[&str]) -> Option<String> {
    let out = hook(url, harness, agent, &fixture(harness, event), extra);
    context_of(&out, event)
}

/// The `additionalContext` a context hook printed, after checking the
/// whole output: exit 0, nothing on stderr, and on stdout nothing or
/// exactly one line holding exactly one object of exactly the shape
/// `{"hookSpecificOutput":{"hookEventName","additionalContext"}}`.
#[track_caller]
fn context_of(out: &Out, event: &str) -> Option<String> {
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stderr, "", "{out:?}");
    if out.stdout.is_empty() {
        return None;
    }
    assert!(out.stdout.ends_with('\n'), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "one line: {out:?}");
    let values: Vec<Value> = serde_json::Deserializer::from_str(&out.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out:?}"));
    assert_eq!(values.len(), 1, "one object: {out:?}");
    let v = &values[0];
    let top: Vec<&String> = v.as_object().expect("an object").keys().collect();
    assert_eq!(top, ["hookSpecificOutput"], "{v}");
    let inner = v["hookSpecificOutput"].as_object().expect("an object");
    let keys: BTreeSet<&str> = inner.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["additionalContext", "hookEventName"]),
        "{v}"
    );
    assert_eq!(inner["hookEventName"], json!(event), "{v}");
    Some(
        inner["additionalContext"]
            .as_str()
            .expect("a string")
            .to_string(),
    )
}

/// The message ids of a text's header lines (`- #ID from ...`), in order.
fn header_ids(text: &str) -> Vec<i64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("- #"))
        .map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits
                .parse()
                .unwrap_or_else(|_| panic!("bad header line: {rest}"))
        })
        .collect()
}

// --------------------------------------------------------------------- hub

fn dm(h: &TestHub, from: &str, to: &str, body: &str) -> i64 {
    let r = h.post(
        "/v1/messages",
        json!({"from_agent": from, "to_agent": to, "body": body}),
    );
    assert_eq!(r.status, 201, "{r}");
    r.result()["id"].as_i64().unwrap()
}

fn say(h: &TestHub, from: &str, channel: &str, body: &str) -> i64 {
    h.say(from, channel, body)["id"].as_i64().unwrap()
}

fn pending(h: &TestHub, agent: &str) -> Value {
    h.get(&format!("/v1/agents/{agent}/pending?limit=1000"))
        .result()
        .clone()
}

fn int_list(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn deliveries(h: &TestHub, id: i64) -> Value {
    h.get(&format!("/v1/messages/{id}/deliveries"))
        .result()
        .clone()
}

fn state_of(h: &TestHub, id: i64, agent: &str) -> String {
    let d = deliveries(h, id);
    let row = d
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agent_id"] == json!(agent))
        .unwrap_or_else(|| panic!("{agent} is not a recipient of #{id}: {d}"));
    row["state"].as_str().unwrap().to_string()
}

fn parked(h: &TestHub) -> usize {
    h.hub().state().parked_count()
}

#[track_caller]
fn wait_parked(h: &TestHub, n: usize) {
    eventually(
        Duration::from_secs(15),
        &format!("{n} parked request(s)"),
        || (parked(h) == n).then_some(()),
    );
}

/// A URL with nothing listening.
fn closed_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

// ================================================================== tests

#[test]
fn every_fixture_gets_context_only_when_something_is_pending() {
    let h = TestHub::start();
    h.register("alice");
    for (harness, event, bytes) in fixtures() {
        let what = format!("{harness} {event}");
        let agent = format!("bob-{harness}-{event}");
        h.register(&agent);
        let quiet = hook(&h.url, &harness, &agent, &bytes, &["--max-wait", "1"]);
        assert_eq!(
            (quiet.code, quiet.stdout.as_str(), quiet.stderr.as_str()),
            (Some(0), "", ""),
            "{what}, nothing pending: {quiet:?}"
        );
        let id = dm(&h, "alice", &agent, &long_body());
        // A Stop hook that did not answer at once would wait 30 s.
        let out = hook(&h.url, &harness, &agent, &bytes, &["--max-wait", "30"]);
        if is_context(&harness, &event) {
            let text = context_of(&out, &event)
                .unwrap_or_else(|| panic!("{what}: nothing printed, #{id} pending"));
            assert_eq!(header_ids(&text), [id], "{what}: {text}");
            assert!(
                text.contains(&format!("- #{id} from alice in DM (chat): lorem ipsum")),
                "{what}: {text}"
            );
            assert!(
                !text.contains(TAIL),
                "{what}: a body's tail in headers: {text}"
            );
            let last = text.lines().last().unwrap();
            assert!(
                last.contains("arc poll"),
                "{what}: ends with how to read: {text}"
            );
            let again = hook(&h.url, &harness, &agent, &bytes, &[]);
            assert_eq!(context_of(&again, &event), None, "{what}: surfaced twice");
        } else if harness == "claude-code" && event == "Stop" {
            assert_eq!(out.code, Some(2), "{what}: {out:?}");
            assert_eq!(out.stdout, "", "{what}: {out:?}");
            assert!(out.stderr.contains(&format!("#{id} from alice")), "{out:?}");
            assert!(out.took < Duration::from_secs(10), "at once: {out:?}");
        } else {
            assert_eq!(
                (out.code, out.stdout.as_str(), out.stderr.as_str()),
                (Some(0), "", ""),
                "{what} is not a context event: {out:?}"
            );
            let p = pending(&h, &agent);
            assert_eq!(int_list(&p["unsurfaced"]), [id], "{what} surfaced: {p}");
        }
    }
    // Stop is the wake event of Claude Code only: Gemini has no such event.
    let agent = "bob-gemini-stop";
    h.register(agent);
    let id = dm(&h, "alice", agent, "for gemini");
    let stop = br#"{"session_id":"s","transcript_path":"/t","cwd":"/w","hook_event_name":"Stop","timestamp":"2026-12-01T10:00:00Z"}"#;
    let out = hook(&h.url, "gemini", agent, stop, &["--max-wait", "1"]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "", ""),
        "{out:?}"
    );
    assert_eq!(int_list(&pending(&h, agent)["unsurfaced"]), [id]);
}

#[test]
fn headers_only_unless_bodies_and_never_ones_own_messages() {
    let h = TestHub::start();
    for a in ["alice", "bob", "carol"] {
        h.register(a);
    }
    let long = say(&h, "alice", "general", &long_body());
    let r = h.post(
        "/v1/messages",
        json!({"from_agent": "carol", "to_agent": "bob", "kind": "notice", "body": "build is\ngreen"}),
    );
    let notice = r.result()["id"].as_i64().unwrap();
    let own = say(&h, "bob", "general", "bob's own words");
    let text = context(&h.url, "codex", "UserPromptSubmit", "bob", &[]).expect("pending");
    assert_eq!(
        header_ids(&text),
        [long, notice],
        "own #{own} left out: {text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("- #{long} ")))
        .unwrap();
    let prefix = format!("- #{long} from alice in #general (chat): ");
    let summary = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        summary.chars().count() <= 120,
        "summary of {} chars",
        summary.len()
    );
    assert!(
        summary.starts_with("lorem ipsum") && summary.ends_with('…'),
        "{line}"
    );
    assert!(!text.contains(TAIL), "headers only: {text}");
    assert!(!text.contains("bob's own words"), "{text}");
    assert!(
        text.lines()
            .any(|l| l == format!("- #{notice} from carol in DM (notice): build is green")),
        "{text}"
    );
    assert!(text.contains("arc poll --agent bob"), "{text}");

    // --bodies: the tail of a long body appears.
    let long2 = say(&h, "alice", "general", &long_body());
    let text = context(&h.url, "claude-code", "PostToolUse", "bob", &["--bodies"]).unwrap();
    assert_eq!(header_ids(&text), [long2], "{text}");
    assert!(text.contains(TAIL), "--bodies shows the body: {text}");

    // Alice sees Bob's post, never her own, never Bob's DMs.
    let text = context(&h.url, "gemini", "SessionStart", "alice", &[]).unwrap();
    assert_eq!(header_ids(&text), [own], "{text}");
    // Only own messages pending: nothing at all.
    say(&h, "bob", "general", "more of bob");
    let mine = context(&h.url, "gemini", "AfterTool", "bob", &[]);
    assert_eq!(mine, None, "own messages are never surfaced");
}

#[test]
fn the_text_cap_holds_and_every_message_is_shown_exactly_once() {
    let h = TestHub::start();
    h.register("bob");
    let body: String = "z".repeat(300);
    let all: Vec<i64> = (0..300)
        .map(|_| say(&h, "alice", "general", &body))
        .collect();
    let mut shown: Vec<i64> = Vec::new();
    let mut done = false;
    for _ in 0..40 {
        let Some(text) = context(&h.url, "gemini", "BeforeAgent", "bob", &[]) else {
            done = true;
            break;
        };
        assert!(
            text.chars().count() <= 10_000,
            "{} chars",
            text.chars().count()
        );
        let ids = header_ids(&text);
        assert!(!ids.is_empty(), "a run that shows nothing: {text}");
        shown.extend(&ids);
        let left = all.len() - shown.len();
        let lines: Vec<&str> = text.lines().collect();
        let (last, before) = (lines[lines.len() - 1], lines[lines.len() - 2]);
        if left > 0 {
            assert_eq!(
                last,
                format!("… and {left} more"),
                "after {} shown",
                shown.len()
            );
            assert!(
                before.contains("arc poll"),
                "how to read the rest: {before}"
            );
        } else {
            assert!(!text.contains("… and "), "{text}");
            assert!(last.contains("arc poll"), "how to read the rest: {last}");
        }
        let p = pending(&h, "bob");
        assert_eq!(p["counts"]["unsurfaced"], json!(left), "{p}");
    }
    assert!(done, "still pending after 40 runs");
    assert_eq!(shown, all, "every id once, oldest first");
}

#[test]
fn concurrent_hooks_for_one_agent_never_share_or_lose_a_message() {
    let h = TestHub::start();
    h.register("bob");
    for round in 0..20 {
        let posted: Vec<i64> = (0..4)
            .map(|i| say(&h, "alice", "general", &format!("round {round} #{i}")))
            .collect();
        let a = spawn_hook(
            &h.url,
            "claude-code",
            "bob",
            &fixture("claude-code", "UserPromptSubmit"),
            &[],
        );
        let b = spawn_hook(
            &h.url,
            "codex",
            "bob",
            &fixture("codex", "PostToolUse"),
            &[],
        );
        let ta = context_of(&a.finish(RUN_LIMIT), "UserPromptSubmit").unwrap_or_default();
        let tb = context_of(&b.finish(RUN_LIMIT), "PostToolUse").unwrap_or_default();
        let (ia, ib) = (header_ids(&ta), header_ids(&tb));
        assert!(
            ia.iter().all(|id| !ib.contains(id)),
            "round {round}: shown twice: {ia:?} and {ib:?}"
        );
        let mut union: Vec<i64> = ia.iter().chain(&ib).copied().collect();
        union.sort();
        assert_eq!(union, posted, "round {round}: {ia:?} + {ib:?}");
    }
}

#[test]
fn surfaced_marks_survive_a_restart_and_hold_across_hubs_on_one_file() {
    let mut h = TestHub::start();
    h.register("bob");
    let first: Vec<i64> = (0..3)
        .map(|i| say(&h, "alice", "general", &format!("m{i}")))
        .collect();
    let text = context(&h.url, "claude-code", "SessionStart", "bob", &[]).unwrap();
    assert_eq!(header_ids(&text), first);

    h.hub.take().unwrap().shutdown();
    let hub = Hub::start(HubConfig::ephemeral(h.dir.path())).expect("restarts");
    h.url = hub.url();
    h.hub = Some(hub);
    assert_eq!(
        context(&h.url, "claude-code", "SessionStart", "bob", &[]),
        None
    );
    let p = pending(&h, "bob");
    assert_eq!(p["marks"]["surfaced"], json!(first[2]), "{p}");
    let next = say(&h, "alice", "general", "after the restart");
    let text = context(&h.url, "codex", "SessionStart", "bob", &[]).unwrap();
    assert_eq!(header_ids(&text), [next]);

    // A second hub on the same file: what one surfaced, the other never shows.
    let sib = h.sibling(|_| {});
    let third = say(&h, "alice", "general", "third");
    let text = context(&sib.url(), "gemini", "SessionStart", "bob", &[]).unwrap();
    assert_eq!(header_ids(&text), [third]);
    assert_eq!(context(&h.url, "gemini", "SessionStart", "bob", &[]), None);
    sib.shutdown();
}

#[test]
fn a_stop_hook_wakes_on_a_dm_at_once_and_exits_2() {
    let h = TestHub::start();
    h.register("bob");
    let stop = fixture("claude-code", "Stop");
    let p = spawn_hook(&h.url, "claude-code", "bob", &stop, &["--max-wait", "60"]);
    wait_parked(&h, 1);
    let posted = Instant::now();
    let id = dm(&h, "alice", "bob", "wake up, bob");
    let out = p.finish(RUN_LIMIT);
    let woke = posted.elapsed();
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");
    assert!(
        out.stderr.contains(&format!("#{id} from alice in DM")),
        "{out:?}"
    );
    assert!(
        woke < Duration::from_secs(5),
        "woke {woke:?} after the post"
    );
    // It surfaced what it showed.
    assert_eq!(state_of(&h, id, "bob"), "surfaced");
    assert_eq!(
        context(&h.url, "claude-code", "UserPromptSubmit", "bob", &[]),
        None
    );
}

#[test]
fn a_stop_hook_exits_0_silently_at_max_wait() {
    let h = TestHub::start();
    h.register("bob");
    let out = hook(
        &h.url,
        "claude-code",
        "bob",
        &fixture("claude-code", "Stop"),
        &["--max-wait", "1.5"],
    );
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "", ""),
        "{out:?}"
    );
    assert!(
        out.took >= Duration::from_millis(1400),
        "left early: {out:?}"
    );
    assert!(
        out.took < Duration::from_millis(1500) + Duration::from_secs(5),
        "{out:?}"
    );
    assert_eq!(parked(&h), 0, "its wait ended with it");
    // It took nothing: a message after it is still pending.
    let id = dm(&h, "alice", "bob", "late");
    assert_eq!(int_list(&pending(&h, "bob")["unsurfaced"]), [id]);
}

#[test]
fn a_newer_stop_hook_supersedes_the_older() {
    let h = TestHub::start();
    h.register("bob");
    let stop = fixture("claude-code", "Stop");
    let first = spawn_hook(&h.url, "claude-code", "bob", &stop, &["--max-wait", "60"]);
    wait_parked(&h, 1);
    let mut second = spawn_hook(&h.url, "claude-code", "bob", &stop, &["--max-wait", "60"]);
    let out = first.finish(Duration::from_secs(15));
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "", ""),
        "{out:?}"
    );
    assert!(out.took < Duration::from_secs(15), "{out:?}");
    wait_parked(&h, 1);
    assert!(second.running(), "the newer waiter still waits");
    let id = dm(&h, "alice", "bob", "for the newest waiter");
    let out = second.finish(RUN_LIMIT);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains(&format!("#{id} ")), "{out:?}");
}

/// A server that answers every request `503` until dropped.
struct Busy {
    url: String,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
}

impl Busy {
    fn start() -> Busy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (s, n) = (stop.clone(), served.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let body = r#"{"ok": false, "error": "database is busy, try again"}"#;
                let _ = write!(
                    c,
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                n.fetch_add(1, Ordering::Relaxed);
            }
        });
        Busy { url, stop, served }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_silent_busy_or_missing_hub_never_holds_a_hook() {
    // Accepts TCP (the kernel's backlog) but never reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let busy = Busy::start();
    let stop = fixture("claude-code", "Stop");
    for (what, url) in [
        ("silent", &silent_url),
        ("busy", &busy.url),
        ("missing", &closed_url()),
    ] {
        let out = hook(url, "claude-code", "bob", &stop, &["--max-wait", "2"]);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (Some(0), ""),
            "{what}: {out:?}"
        );
        assert!(out.stderr.lines().count() <= 1, "{what}: {out:?}");
        assert!(
            out.took >= Duration::from_millis(1900),
            "{what}: gave up early: {out:?}"
        );
        assert!(out.took < Duration::from_secs(2 + 4), "{what}: {out:?}");
        for (harness, event) in [("claude-code", "SessionStart"), ("gemini", "BeforeAgent")] {
            let out = hook(url, harness, "bob", &fixture(harness, event), &[]);
            assert_eq!(
                (out.code, out.stdout.as_str()),
                (Some(0), ""),
                "{what}: {out:?}"
            );
            assert!(out.stderr.lines().count() <= 1, "{what}: {out:?}");
            // Within the 10 s the installed context hooks are given.
            assert!(out.took < Duration::from_secs(9), "{what}: {out:?}");
        }
    }
    assert!(
        busy.served.load(Ordering::Relaxed) >= 2,
        "the busy hub was asked again"
    );
}

#[test]
fn a_hook_never_breaks_the_harness() {
    let h = TestHub::start();
    h.register("bob");
    let id = dm(&h, "alice", "bob", "stay pending");
    let url = h.url.clone();
    let good = fixture("claude-code", "UserPromptSubmit");
    let missing = closed_url();
    let nested = "[".repeat(100_000);
    let huge = format!(
        "{{\"hook_event_name\":\"SessionStart\",\"x\":\"{}\"}}",
        "a".repeat(2 << 20)
    );
    let cases: Vec<(&str, Vec<&str>, Input)> = vec![
        (
            "garbage",
            hook_args("claude-code", "bob", &url, &[]),
            Input::Bytes(b"\x00\xffnot json{{".to_vec()),
        ),
        (
            "empty",
            hook_args("claude-code", "bob", &url, &[]),
            Input::Bytes(Vec::new()),
        ),
        (
            "no event name",
            hook_args("codex", "bob", &url, &[]),
            Input::Bytes(br#"{"session_id":"x","cwd":"/w"}"#.to_vec()),
        ),
        (
            "event name not a string",
            hook_args("codex", "bob", &url, &[]),
            Input::Bytes(br#"{"hook_event_name":7}"#.to_vec()),
        ),
        (
            "a list",
            hook_args("gemini", "bob", &url, &[]),
            Input::Bytes(br#"[{"hook_event_name":"BeforeAgent"}]"#.to_vec()),
        ),
        (
            "deeply nested",
            hook_args("gemini", "bob", &url, &[]),
            Input::Bytes(nested.into_bytes()),
        ),
        (
            "over 1 MiB",
            hook_args("claude-code", "bob", &url, &[]),
            Input::Bytes(huge.into_bytes()),
        ),
        (
            "stdin never closed",
            hook_args("claude-code", "bob", &url, &[]),
            Input::Open,
        ),
        (
            "unknown event",
            hook_args("claude-code", "bob", &url, &[]),
            Input::Bytes(br#"{"hook_event_name":"PreCompact","trigger":"auto"}"#.to_vec()),
        ),
        (
            "unknown harness",
            hook_args("cursor", "bob", &url, &[]),
            Input::Bytes(good.clone()),
        ),
        (
            "no harness",
            vec!["hook", "--agent", "bob", "--base-url", &url],
            Input::Bytes(good.clone()),
        ),
        (
            "missing --agent",
            vec!["hook", "claude-code", "--base-url", &url],
            Input::Bytes(good.clone()),
        ),
        (
            "empty --agent",
            hook_args("claude-code", "", &url, &[]),
            Input::Bytes(good.clone()),
        ),
        (
            "bad --max-wait",
            hook_args("claude-code", "bob", &url, &["--max-wait", "soon"]),
            Input::Bytes(good.clone()),
        ),
        (
            "unknown flag",
            hook_args("claude-code", "bob", &url, &["--bogus"]),
            Input::Bytes(good.clone()),
        ),
        (
            "unreachable hub",
            hook_args("claude-code", "bob", &missing, &[]),
            Input::Bytes(good.clone()),
        ),
    ];
    for (what, args, input) in cases {
        let out = spawn(&args, input).finish(Duration::from_secs(15));
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (Some(0), ""),
            "{what}: {out:?}"
        );
        assert!(
            out.stderr.lines().count() <= 1,
            "{what}: one line at most: {out:?}"
        );
        assert!(out.took < Duration::from_secs(10), "{what}: {out:?}");
    }
    // None of them took the message.
    assert_eq!(int_list(&pending(&h, "bob")["unsurfaced"]), [id]);
}

#[test]
fn a_hook_never_creates_or_replaces_a_session() {
    let h = TestHub::start();
    let session = h.register("bob")["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    dm(&h, "alice", "bob", "for bob");
    dm(&h, "alice", "ghost", "for nobody");
    for (harness, event, _) in fixtures() {
        for agent in ["bob", "ghost"] {
            let out = hook(
                &h.url,
                &harness,
                agent,
                &fixture(&harness, &event),
                &["--max-wait", "0.2"],
            );
            assert!(matches!(out.code, Some(0 | 2)), "{out:?}");
        }
    }
    let agents = h.get("/v1/agents").result().clone();
    let live: Vec<(&str, &str)> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent_id"].as_str().unwrap(),
                a["session_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(live, [("bob", session.as_str())], "{agents}");
    let rows: Vec<(String, String, bool)> = h
        .sql()
        .prepare("SELECT agent_id, session_id, active FROM sessions ORDER BY agent_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        [("bob".to_string(), session.clone(), true)],
        "no session made or replaced"
    );
    // The ghost is still unknown: a DM to it is still a dead letter.
    let dead = h.get("/v1/deliveries/dead").result().clone();
    assert_eq!(dead[0]["to_agent"], json!("ghost"), "{dead}");
}

#[test]
fn hooks_over_the_relay_print_the_same_shape_and_wake() {
    let h = TestHub::start_with(|c| c.relay = true);
    let spool = h.dir.path().join(".arc-relay");
    let spool = spool.to_str().unwrap();
    h.register("bob");
    let id = dm(&h, "alice", "bob", "through the spool");
    let relay = |harness: &str, event: &str, extra: &[&str]| {
        let mut args = vec!["hook", harness, "--agent", "bob", "--relay-dir", spool];
        args.extend_from_slice(extra);
        spawn(&args, Input::Bytes(fixture(harness, event)))
    };
    let text = context_of(
        &relay("codex", "SessionStart", &[]).finish(RUN_LIMIT),
        "SessionStart",
    )
    .expect("the pending DM");
    assert_eq!(header_ids(&text), [id], "{text}");
    assert!(text.contains(&format!(
        "- #{id} from alice in DM (chat): through the spool"
    )));
    let again = relay("gemini", "AfterTool", &[]).finish(RUN_LIMIT);
    assert_eq!(
        context_of(&again, "AfterTool"),
        None,
        "surfaced once, by either transport"
    );

    // The Stop hook waits through the relay too.
    let p = relay("claude-code", "Stop", &["--max-wait", "30"]);
    wait_parked(&h, 1);
    let id = dm(&h, "alice", "bob", "wake through the spool");
    let out = p.finish(RUN_LIMIT);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains(&format!("#{id} ")), "{out:?}");

    // The relay's feeds move the delivered mark like HTTP ones.
    let later = say(&h, "alice", "general", "relayed feed");
    let c = Client::over_relay("bob", Path::new(spool));
    let r = c
        .request(
            "GET",
            "/v1/events?agent_id=bob&since_id=0",
            None,
            Duration::from_secs(20),
        )
        .unwrap();
    assert!(
        r["result"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == json!(later)),
        "{r}"
    );
    assert_eq!(pending(&h, "bob")["marks"]["delivered"], json!(later));
    assert_eq!(state_of(&h, later, "bob"), "delivered");
}

/// Files in `dir` whose names end with `ext`.
fn count_ext(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(ext))
            .count()
    })
}

#[test]
fn a_relayed_hook_that_got_no_answer_surfaces_nothing_later() {
    let h = TestHub::start(); // no relay serves the spool yet
    h.register("bob");
    let spool = h.dir.path().join("spool");
    let id = dm(&h, "alice", "bob", "while the relay is down");
    let args = [
        "hook",
        "codex",
        "--agent",
        "bob",
        "--relay-dir",
        spool.to_str().unwrap(),
    ];
    let out = spawn(&args, Input::Bytes(fixture("codex", "SessionStart"))).finish(RUN_LIMIT);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), ""), "{out:?}");
    assert!(out.stderr.lines().count() <= 1, "{out:?}");
    // The relay comes up and serves whatever the spool still holds.
    let relay = RelayHandle::start(RelayConfig::new(&h.url, &spool)).unwrap();
    let (requests, responses) = (spool.join("requests/bob"), spool.join("responses/bob"));
    eventually(Duration::from_secs(15), "the spool served or empty", || {
        let waiting = count_ext(&requests, ".json");
        let served = count_ext(&requests, ".work") == count_ext(&responses, ".json");
        (waiting == 0 && served).then_some(())
    });
    let p = pending(&h, "bob");
    relay.stop();
    assert_eq!(
        int_list(&p["unsurfaced"]),
        [id],
        "the hook printed nothing, yet #{id} is marked surfaced: its `surface` request file \
         outlived the hook (src/client/relay.rs `send` leaves it in requests/ on a timeout) and \
         the relay ran it later, so no model will ever be shown #{id}: {p}"
    );
}

#[test]
fn feeds_move_the_delivered_mark_for_their_scope() {
    let h = TestHub::start();
    for a in ["alice", "ev", "chf", "inb"] {
        h.register(a);
    }
    h.post(
        "/v1/channels",
        json!({"name": "ops", "created_by": "alice"}),
    );
    let g = say(&h, "alice", "general", "in general");
    let o = say(&h, "alice", "ops", "in ops");
    let to_ev = dm(&h, "alice", "ev", "dm ev");
    let to_inb = dm(&h, "alice", "inb", "dm inb");
    for (agent, list) in [
        ("ev", vec![g, o, to_ev]),
        ("chf", vec![g, o]),
        ("inb", vec![g, o, to_inb]),
    ] {
        let p = pending(&h, agent);
        assert_eq!(int_list(&p["undelivered"]), list, "{agent} before: {p}");
        assert_eq!(state_of(&h, g, agent), "queued");
    }
    // No filter: everything visible.
    h.get("/v1/events?agent_id=ev&since_id=0").result();
    let p = pending(&h, "ev");
    assert_eq!(int_list(&p["undelivered"]), Vec::<i64>::new(), "{p}");
    assert_eq!(p["marks"]["delivered"], json!(to_ev), "{p}");
    assert_eq!(
        int_list(&p["unsurfaced"]),
        [g, o, to_ev],
        "delivered is not surfaced: {p}"
    );
    // A channel filter: that channel's messages only.
    h.get("/v1/events?agent_id=chf&channel=general&since_id=0")
        .result();
    let p = pending(&h, "chf");
    assert_eq!(int_list(&p["undelivered"]), [o], "{p}");
    assert_eq!(
        p["marks"]["delivered_channels"],
        json!({"general": g}),
        "{p}"
    );
    assert_eq!(
        (state_of(&h, g, "chf"), state_of(&h, o, "chf")),
        ("delivered".into(), "queued".into())
    );
    // The inbox: DMs only.
    let inbox = h.get("/v1/inbox/inb").result().clone();
    assert_eq!(crate::support::ids(&inbox), [to_inb]);
    let p = pending(&h, "inb");
    assert_eq!(int_list(&p["undelivered"]), [g, o], "{p}");
    assert_eq!(p["marks"]["delivered_dm"], json!(to_inb), "{p}");
    assert_eq!(state_of(&h, to_inb, "inb"), "delivered");
    // A thread filter moves no mark.
    h.register("thr");
    let r = h.post(
        "/v1/messages",
        json!({"from_agent": "alice", "channel": "general", "thread_id": "t-1", "body": "threaded"}),
    );
    let t = r.result()["id"].as_i64().unwrap();
    let got = h
        .get("/v1/events?agent_id=thr&thread_id=t-1&since_id=0")
        .result()
        .clone();
    assert_eq!(crate::support::ids(&got), [t], "{got}");
    let p = pending(&h, "thr");
    assert_eq!(p["marks"]["delivered"], json!(0), "{p}");
    assert!(int_list(&p["undelivered"]).contains(&t), "{p}");
}

#[test]
fn streams_and_arc_poll_move_their_marks() {
    let h = TestHub::start();
    for a in ["alice", "sse", "pol"] {
        h.register(a);
    }
    let a = say(&h, "alice", "general", "one");
    let b = dm(&h, "alice", "sse", "two");
    let c = dm(&h, "alice", "pol", "three");
    // SSE: a raw stream, read until the last event has been written.
    let mut s = TcpStream::connect(h.hub().addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    write!(
        s,
        "GET /v1/stream?agent_id=sse&since_id=0 HTTP/1.1\r\nHost: {}\r\n\r\n",
        h.hub().addr()
    )
    .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !String::from_utf8_lossy(&got).contains(&format!("id: {b}\n"))
        && Instant::now() < deadline
    {
        let mut buf = [0u8; 4096];
        if let Ok(n @ 1..) = s.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert!(
        String::from_utf8_lossy(&got).contains(&format!("id: {b}\n")),
        "{}",
        String::from_utf8_lossy(&got)
    );
    eventually(
        Duration::from_secs(10),
        "the stream's delivered mark",
        || (pending(&h, "sse")["marks"]["delivered"] == json!(b)).then_some(()),
    );
    assert_eq!(state_of(&h, b, "sse"), "delivered");
    drop(s);

    // arc poll prints, then marks what it printed as read.
    let url = h.url.clone();
    let out = spawn(
        &[
            "poll",
            "--agent",
            "pol",
            "--base-url",
            &url,
            "--timeout",
            "0",
        ],
        Input::Bytes(Vec::new()),
    )
    .finish(RUN_LIMIT);
    assert_eq!(out.code, Some(0), "{out:?}");
    let printed: Vec<i64> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(printed, [a, c], "{out:?}");
    let p = pending(&h, "pol");
    assert_eq!(p["marks"]["read"], json!(c), "{p}");
    for list in ["undelivered", "unsurfaced", "unread"] {
        assert_eq!(int_list(&p[list]), Vec::<i64>::new(), "{list}: {p}");
    }
    assert_eq!(
        (state_of(&h, a, "pol"), state_of(&h, c, "pol")),
        ("read".into(), "read".into())
    );
}

#[test]
fn a_message_goes_queued_delivered_surfaced_read() {
    let h = TestHub::start();
    for a in ["alice", "bob", "carol"] {
        h.register(a);
    }
    let r = h.post(
        "/v1/messages",
        json!({"from_agent": "alice", "to_agent": "bob", "body": "step by step"}),
    );
    let (id, ts) = (r.result()["id"].as_i64().unwrap(), r.result()["ts"].clone());
    assert_eq!(
        deliveries(&h, id),
        json!([{"agent_id": "bob", "state": "queued", "at": ts}])
    );
    let lists = |want: [bool; 3]| {
        let p = pending(&h, "bob");
        for (list, has) in ["undelivered", "unsurfaced", "unread"].iter().zip(want) {
            assert_eq!(int_list(&p[*list]).contains(&id), has, "{list}: {p}");
        }
    };
    lists([true, true, true]);
    h.get("/v1/inbox/bob").result();
    assert_eq!(state_of(&h, id, "bob"), "delivered");
    lists([false, true, true]);
    let text = context(&h.url, "claude-code", "UserPromptSubmit", "bob", &[]).unwrap();
    assert_eq!(header_ids(&text), [id]);
    assert_eq!(state_of(&h, id, "bob"), "surfaced");
    lists([false, false, true]);
    let r = h.post("/v1/agents/bob/read", json!({"up_to_id": id}));
    assert_eq!(r.result(), &json!({"agent_id": "bob", "read_up_to": id}));
    assert_eq!(state_of(&h, id, "bob"), "read");
    lists([false, false, false]);
    let d = deliveries(&h, id);
    assert!(
        d[0]["at"].as_str().is_some_and(|at| at.ends_with('Z')),
        "{d}"
    );
    // Marks only move forward.
    let back = h.post("/v1/agents/bob/read", json!({"up_to_id": 0}));
    assert_eq!(back.result()["read_up_to"], json!(id));

    // A broadcast: every live agent but the sender; never a stranger.
    let b = say(&h, "alice", "general", "to all");
    let d = deliveries(&h, b);
    let who: Vec<(&str, &str)> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["agent_id"].as_str().unwrap(),
                r["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(who, [("bob", "queued"), ("carol", "queued")], "{d}");
    assert!(
        d.as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("dead_letter").is_none()),
        "{d}"
    );
}

#[test]
fn a_dm_to_an_unknown_id_is_a_dead_letter_told_to_its_sender_once() {
    let h = TestHub::start();
    for a in ["alice", "bob"] {
        h.register(a);
    }
    let normal = h.post(
        "/v1/messages",
        json!({"from_agent": "alice", "to_agent": "bob", "body": "hi"}),
    );
    let r = h.post(
        "/v1/messages",
        json!({"from_agent": "alice", "to_agent": "bbo", "body": "typo"}),
    );
    assert_eq!(r.status, 201, "{r}");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&r.json), keys(&normal.json), "the normal envelope");
    assert_eq!(
        keys(r.result()),
        keys(normal.result()),
        "the normal message"
    );
    let id = r.result()["id"].as_i64().unwrap();
    let dead = h.get("/v1/deliveries/dead").result().clone();
    assert_eq!(dead.as_array().unwrap().len(), 1, "{dead}");
    crate::support::assert_subset(
        &dead[0],
        &json!({"message_id": id, "from_agent": "alice", "to_agent": "bbo", "channel": "direct",
                "kind": "chat", "summary": "typo", "suggestion": "bob", "ts": r.result()["ts"]}),
    );
    assert_eq!(
        deliveries(&h, id),
        json!([{"agent_id": "bbo", "state": "queued", "at": r.result()["ts"], "dead_letter": true}])
    );
    let told = "no agent 'bbo': did you mean 'bob'?";
    let first = context(&h.url, "claude-code", "SessionStart", "alice", &[]).expect("told");
    let second =
        context(&h.url, "claude-code", "UserPromptSubmit", "alice", &[]).unwrap_or_default();
    assert_eq!(
        first.matches(told).count() + second.matches(told).count(),
        1,
        "{first}\n{second}"
    );
    // A DM to an id nothing is close to: no suggestion.
    dm(&h, "alice", "zzzzzzzzzz", "nobody close");
    assert_eq!(
        h.get("/v1/deliveries/dead").result()[0]["suggestion"],
        Value::Null
    );
    // Once the id signs in, it is no dead letter any more.
    h.register("bbo");
    let dead = h.get("/v1/deliveries/dead").result().clone();
    assert!(
        dead.as_array()
            .unwrap()
            .iter()
            .all(|d| d["to_agent"] != json!("bbo")),
        "{dead}"
    );
}

#[test]
fn bad_delivery_requests_are_refused() {
    let h = TestHub::start();
    h.register("bob");
    let newest = say(&h, "alice", "general", "x");
    h.post("/v1/agents/bob/read", json!({}))
        .expect_err(400, "up_to_id is required");
    h.post("/v1/agents/bob/read", json!({"up_to_id": -1}))
        .expect_err(400, "up_to_id must be >= 0");
    h.post("/v1/agents/bob/read", json!({"up_to_id": "x"}))
        .expect_err(400, "up_to_id must be an integer");
    h.post("/v1/agents/bob/read", json!({"up_to_id": newest + 1}))
        .expect_err(
            400,
            &format!(
                "up_to_id {} is past the newest message ({newest})",
                newest + 1
            ),
        );
    h.post("/v1/agents/bob/surfaced", json!({}))
        .expect_err(400, "up_to_id is required");
    h.get("/v1/messages/999999/deliveries")
        .expect_err(404, "message not found");
    for bad in ["0", "1001", "-3"] {
        let r = h.get(&format!("/v1/agents/bob/pending?limit={bad}"));
        assert_eq!(r.status, 400, "limit={bad}: {r}");
    }
    h.get("/v1/agents/bob/pending?limit=abc")
        .expect_err(400, "limit must be an integer");
    assert_eq!(h.get("/v1/agents/bob/pending?limit=1000").status, 200);
    // Nothing moved.
    let p = pending(&h, "bob");
    assert_eq!(
        (p["marks"]["read"].clone(), p["marks"]["surfaced"].clone()),
        (json!(0), json!(0)),
        "{p}"
    );
}

// ------------------------------------------------------------------- watch

/// A command for `--exec` that records each run in `dir` (`call-N.in`:
/// its stdin; `call-N.env`: its ARC_* variables; `call-N.done` last) and
/// exits `code`.
fn recorder(dir: &Path, code: i32) -> String {
    let script = dir.join("record.sh");
    let d = dir.display();
    std::fs::write(
        &script,
        format!(
            "n=$(cat '{d}/count' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{d}/count'\n\
             cat > '{d}/call-'$n.in\nenv | grep '^ARC_' | sort > '{d}/call-'$n.env\n\
             : > '{d}/call-'$n.done\nexit {code}\n"
        ),
    )
    .unwrap();
    format!("sh '{}'", script.display())
}

/// The finished runs so far: (ids on stdin, ARC_* variables).
fn calls(dir: &Path) -> Vec<(Vec<i64>, Vec<String>)> {
    let mut out = Vec::new();
    for n in 1..10_000 {
        if !dir.join(format!("call-{n}.done")).exists() {
            break;
        }
        let input = std::fs::read_to_string(dir.join(format!("call-{n}.in"))).unwrap();
        let ids = input
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        let env = std::fs::read_to_string(dir.join(format!("call-{n}.env"))).unwrap();
        out.push((ids, env.lines().map(str::to_string).collect()));
    }
    out
}

fn watch(h: &TestHub, agent: &str, exec: &str) -> Proc {
    spawn(
        &[
            "watch",
            "--agent",
            agent,
            "--base-url",
            &h.url,
            "--exec",
            exec,
            "--debounce-ms",
            "20",
        ],
        Input::Open,
    )
}

#[test]
fn a_failing_watch_command_is_retried_and_nothing_is_marked() {
    let h = TestHub::start();
    h.register("bob");
    let rec = TempDir::new("watch-fail");
    let posted: Vec<i64> = (0..2)
        .map(|i| say(&h, "alice", "general", &format!("w{i}")))
        .collect();
    let mut w = watch(&h, "bob", &recorder(rec.path(), 1));
    eventually(Duration::from_secs(20), "a first run", || {
        (!calls(rec.path()).is_empty()).then_some(())
    });
    let third = say(&h, "alice", "general", "while failing");
    eventually(
        Duration::from_secs(30),
        "a retry with the new message",
        || {
            calls(rec.path())
                .iter()
                .any(|(ids, _)| ids.contains(&third))
                .then_some(())
        },
    );
    assert!(w.running(), "arc watch keeps going after failures");
    let _ = w.child.kill();
    let _ = w.child.wait();
    let runs = calls(rec.path());
    assert!(runs.len() >= 2, "{runs:?}");
    assert_eq!(runs[0].0, posted, "{runs:?}");
    for (ids, _) in &runs {
        assert!(
            ids.starts_with(&posted),
            "the same batch again, grown: {runs:?}"
        );
    }
    let p = pending(&h, "bob");
    assert_eq!(
        int_list(&p["unsurfaced"]),
        [posted[0], posted[1], third],
        "{p}"
    );
    assert_eq!(p["marks"]["surfaced"], json!(0), "{p}");
}

#[test]
fn a_succeeding_watch_command_runs_once_per_batch_with_its_environment() {
    let h = TestHub::start();
    h.register("bob");
    let rec = TempDir::new("watch-ok");
    let first = say(&h, "alice", "general", "first");
    let r = h.post(
        "/v1/messages",
        json!({"from_agent": "carol", "to_agent": "bob", "kind": "notice", "body": "second"}),
    );
    let second = r.result()["id"].as_i64().unwrap();
    let channel = r.result()["channel"].as_str().unwrap().to_string();
    let _own = say(&h, "bob", "general", "bob's own");
    let mut w = watch(&h, "bob", &recorder(rec.path(), 0));
    let unsurfaced_empty = || {
        eventually(Duration::from_secs(20), "the batch marked surfaced", || {
            let p = pending(&h, "bob");
            (p["counts"]["unsurfaced"] == json!(0)).then_some(())
        })
    };
    unsurfaced_empty();
    let runs = calls(rec.path());
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].0, [first, second], "{runs:?}");
    let env = &runs[0].1;
    for want in [
        "ARC_AGENT=bob".to_string(),
        "ARC_COUNT=2".to_string(),
        format!("ARC_MESSAGE_ID={second}"),
        "ARC_FROM_AGENT=carol".to_string(),
        format!("ARC_CHANNEL={channel}"),
        "ARC_KIND=notice".to_string(),
    ] {
        assert!(env.contains(&want), "{want} not in {env:?}");
    }
    assert_eq!(state_of(&h, second, "bob"), "surfaced");
    for round in 0..2 {
        let next = say(&h, "alice", "general", &format!("next {round}"));
        eventually(Duration::from_secs(20), "the next run", || {
            (calls(rec.path()).len() == round + 2).then_some(())
        });
        unsurfaced_empty();
        let runs = calls(rec.path());
        assert_eq!(
            runs.len(),
            round + 2,
            "never the same batch twice: {runs:?}"
        );
        assert_eq!(runs[round + 1].0, [next], "{runs:?}");
    }
    assert!(w.running());
    let _ = w.child.kill();
    let _ = w.child.wait();
}

/// Counts the connections made to `upstream` through it.
struct CountingProxy {
    url: String,
    conns: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl CountingProxy {
    fn start(upstream: std::net::SocketAddr) -> CountingProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let conns = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s) = (conns.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                n.fetch_add(1, Ordering::Relaxed);
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c1, mut s1) = (client, server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c1, &mut s1);
                    let _ = s1.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        CountingProxy { url, conns, stop }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn arc_watch_waits_quietly_when_its_agent_only_has_a_dead_letter() {
    let h = TestHub::start();
    for a in ["alice", "bob"] {
        h.register(a);
    }
    dm(&h, "alice", "bbo", "a typo nobody will read");
    let rec = TempDir::new("watch-dead");
    let proxy = CountingProxy::start(h.hub().addr());
    let exec = recorder(rec.path(), 0);
    let mut w = spawn(
        &[
            "watch",
            "--agent",
            "alice",
            "--base-url",
            &proxy.url,
            "--exec",
            &exec,
        ],
        Input::Open,
    );
    eventually(
        Duration::from_secs(10),
        "the watcher's first request",
        || (proxy.conns.load(Ordering::Relaxed) > 0).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2)); // a window to count requests in
    let asked = proxy.conns.load(Ordering::Relaxed);
    assert!(w.running(), "arc watch keeps running");
    let _ = w.child.kill();
    let _ = w.child.wait();
    assert_eq!(calls(rec.path()).len(), 0, "no messages, no run");
    // Waiting means one long-poll per 20 s slice; a handful at most.
    assert!(
        asked <= 5,
        "arc watch made {asked} requests in about 2 s for an agent whose only pending item \
         is a dead letter it sent: a peek answers at once with no messages (src/api/delivery.rs \
         `attempt`: `empty` counts dead letters), and src/wake/watch.rs `run` loops straight \
         back (`let Some(last) = batch.last() else {{ continue }}`)"
    );
}

/// Delivered marks are written by a thread of their own, after the
/// answers; a hub that stops right after answering still writes them.
#[test]
fn delivered_marks_answered_just_before_a_stop_are_written() {
    let mut h = TestHub::start();
    h.register("bob");
    let id = dm(&h, "alice", "bob", "just before the stop");
    let got = h.get("/v1/events?agent_id=bob&since_id=0&exclude_self=1");
    assert_eq!(got.result()[0]["id"], id);
    h.hub.take().expect("the hub runs").shutdown();
    let again = h.sibling(|_| {});
    let r = arc_hub::client::http_request(
        &again.url(),
        "GET",
        "/v1/agents/bob/pending",
        None,
        &[],
        Duration::from_secs(10),
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["result"]["marks"]["delivered"], id, "{v}");
    assert_eq!(v["result"]["undelivered"], json!([]), "{v}");
    again.shutdown();
}
