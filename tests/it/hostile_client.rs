//! Hostile peers against the real `arc` binary as a client: a server that
//! never ends a line, announces or streams huge bodies, or answers JSON
//! too deep or too dense to parse; a relay spool whose answer is a FIFO,
//! a link to `/dev/zero` or a huge file; pidfiles planted to make
//! `arc stop` signal a stranger, or that are FIFOs. Every server here is
//! in-test on 127.0.0.1:0, every `arc` is run with a deadline (and, on
//! Linux, a 512 MiB address-space limit, so an unbounded reader dies
//! instead of answering), and every process killed is one started here.
//! See docs/SECURITY.md, "What a client reads".

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::lifecycle::ARC;
use crate::support::TempDir;

/// How long any one `arc` run here may take before it counts as hung.
const HANG: Duration = Duration::from_secs(60);

/// An upper bound for runs that must fail fast: far above what they take
/// (well under a second), far below what a hang or a wait for the
/// client's own deadline would take.
const QUICK: Duration = Duration::from_secs(20);

/// What one bounded `arc` run did.
struct Ran {
    /// `None` if it was still running at the limit (and was killed).
    status: Option<ExitStatus>,
    stdout: String,
    took: Duration,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }

    /// Asserts a clean failure (exit 1, within [`QUICK`]) whose output
    /// starts with `prefix` and contains `says`.
    fn failed_quickly(&self, prefix: &str, says: &str) {
        let status = self.status.expect("arc hung (killed at the limit)");
        assert_eq!(status.code(), Some(1), "{status:?}: {}", self.stdout);
        assert!(
            self.stdout.starts_with(prefix) && self.stdout.contains(says),
            "expected {prefix:?}..{says:?}, got {:?}",
            self.stdout
        );
        assert!(self.took < QUICK, "took {:?}", self.took);
    }
}

/// Runs `arc` in `dir` with no stdin, killing it (our own child, by its
/// handle) if it runs past `limit`. On Linux its address space is capped
/// at 512 MiB, so a reader that buffers without bound fails instead;
/// not for `ensure`, whose hub would inherit the cap (and a hub's
/// threads and their malloc arenas reserve more than that).
fn arc_bounded(dir: &Path, args: &[&str], limit: Duration) -> Ran {
    let mut cmd = Command::new(ARC);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    #[cfg(target_os = "linux")]
    if args.first() != Some(&"ensure") {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe and touches only the
        // child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 512 << 20,
                    rlim_max: 512 << 20,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("run arc");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    // Nothing wakes us when another process exits: look every 10 ms.
    let status = arc_hub::notify::poll_until(limit, Duration::from_millis(10), || {
        child.try_wait().unwrap()
    });
    let took = start.elapsed();
    if status.is_none() {
        let _ = child.kill();
    }
    let _ = child.wait();
    let stdout = reader.join().unwrap();
    eprintln!(
        "$ arc {}\n[{status:?} after {took:?}]\n{stdout}",
        args.join(" ")
    );
    Ran {
        status,
        stdout,
        took,
    }
}

/// A server on 127.0.0.1:0 that hands each connection's request line to
/// `answer` on a thread of its own, after reading the request (head and
/// body, so closing never resets the connection before the client reads).
/// It stops accepting on drop, when `answer` sets the flag it is given,
/// or after two minutes.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Answer = dyn Fn(&str, &mut TcpStream, &AtomicBool) + Send + Sync;

/// What a hostile server does with one connection.
type Respond = Box<dyn Fn(&mut TcpStream) + Send + Sync>;

impl Server {
    fn start(answer: impl Fn(&str, &mut TcpStream, &AtomicBool) + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let answer: Arc<Answer> = Arc::new(answer);
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let start = Instant::now();
                // About 5 ms a turn: two minutes at most.
                for _ in 0..25_000 {
                    if stop.load(Ordering::SeqCst) || start.elapsed() > Duration::from_secs(120) {
                        break;
                    }
                    match listener.accept() {
                        Ok((s, _)) => {
                            let (answer, stop) = (answer.clone(), stop.clone());
                            std::thread::spawn(move || serve(s, &*answer, &stop));
                        }
                        // Non-blocking, so the stop flag is seen: look
                        // again shortly.
                        Err(_) => arc_hub::notify::pause(Duration::from_millis(5)),
                    }
                }
            }
        });
        Server {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (head, then a Content-Length body) and answers it.
fn serve(mut s: TcpStream, answer: &Answer, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 << 10 {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<u64>().ok())?
        })
        .unwrap_or(0);
    let _ = std::io::copy(&mut (&mut s).take(len), &mut std::io::sink());
    let line = head.lines().next().unwrap_or("").to_string();
    answer(&line, &mut s, stop);
}

/// Writes `prefix`, then `fill` over and over until the peer goes away
/// (or 20 s pass).
fn endless(s: &mut TcpStream, prefix: &[u8], fill: &[u8]) {
    if s.write_all(prefix).is_err() {
        return;
    }
    let start = Instant::now();
    for _ in 0..1_000_000 {
        if start.elapsed() > Duration::from_secs(20) || s.write_all(fill).is_err() {
            return;
        }
    }
}

/// A 200 answer with this JSON text as its body.
fn answer_json(s: &mut TcpStream, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
}

/// `arc whoami` against a server that answers every request with `serve`.
fn whoami_against(respond: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> (Ran, String) {
    let server = Server::start(move |_, s, _| respond(s));
    let dir = TempDir::new("hostile-client");
    let url = server.url();
    let ran = arc_bounded(
        dir.path(),
        &["whoami", "--agent", "x", "--base-url", &url],
        HANG,
    );
    (ran, url)
}

#[test]
fn whoami_refuses_endless_lines_and_oversized_heads_at_once() {
    // Defect: the status line, header lines and chunk-size lines were read
    // with no limit (3.5 GB in seconds), and header lines had no count.
    let mb = vec![b'a'; 1 << 20];
    let zeros = vec![b'0'; 1 << 20];
    let cases: Vec<(Respond, &str)> = vec![
        (
            Box::new({
                let mb = mb.clone();
                move |s| endless(s, b"HTTP/1.1 200 ", &mb)
            }),
            "a response line exceeds 8192 bytes",
        ),
        (
            Box::new({
                let mb = mb.clone();
                move |s| endless(s, b"HTTP/1.1 200 OK\r\nX-A: ", &mb)
            }),
            "a response line exceeds 8192 bytes",
        ),
        (
            Box::new(move |s| {
                let prefix = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1";
                endless(s, prefix, &zeros)
            }),
            "a chunk-size line exceeds 8192 bytes",
        ),
        (
            Box::new(|s| endless(s, b"HTTP/1.1 200 OK\r\n", b"X-B: 1\r\n")),
            "more than 100 lines of headers",
        ),
        (
            Box::new(|s| {
                let line = format!("X-C: {}\r\n", "c".repeat(8000));
                endless(s, b"HTTP/1.1 200 OK\r\n", line.as_bytes())
            }),
            "the response head exceeds 65536 bytes",
        ),
    ];
    for (serve, says) in cases {
        let (ran, url) = whoami_against(serve);
        ran.failed_quickly(&format!("arc error: protocol: {url}: "), says);
    }
}

#[test]
fn whoami_refuses_bodies_past_the_cap_without_reading_them_all() {
    // Defect: a body of up to 256 MiB was read, then parsed whole.
    let mb = vec![b'0'; 1 << 20];
    let chunk = {
        let mut c = format!("{:x}\r\n", 1 << 20).into_bytes();
        c.extend_from_slice(&mb);
        c.extend_from_slice(b"\r\n");
        c
    };
    let cases: Vec<Respond> = vec![
        // Announced, then sent.
        Box::new({
            let mb = mb.clone();
            move |s| {
                endless(
                    s,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 268435456\r\n\r\n",
                    &mb,
                )
            }
        }),
        // Never announced: until the connection closes.
        Box::new(move |s| endless(s, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", &mb)),
        // Chunk after well-formed chunk.
        Box::new(move |s| {
            endless(
                s,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                &chunk,
            )
        }),
    ];
    for serve in cases {
        let (ran, url) = whoami_against(serve);
        ran.failed_quickly(
            &format!("arc error: protocol: {url}: "),
            "response body exceeds 67108864 bytes",
        );
    }
}

#[test]
fn whoami_never_parses_json_too_deep_or_too_dense() {
    // Defect: any answer under the body cap was parsed into a Value: 60 MB
    // of `0,` is some 30 million values, gigabytes once parsed.
    let mut dense = br#"{"ok": true, "result": {"junk": ["#.to_vec();
    dense.extend(b"0,".repeat(30 << 20));
    dense.extend_from_slice(b"0]}}");
    let deep = format!(
        r#"{{"ok": true, "result": {}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for (body, says) in [
        (dense, "holds more than 1048576 JSON values"),
        (deep.into_bytes(), "nested deeper than 80 levels"),
    ] {
        let (ran, url) = whoami_against(move |s| answer_json(s, &body));
        ran.failed_quickly(
            &format!("arc error: protocol: {url}: refused the answer to GET /v1/bootstrap ("),
            says,
        );
    }
}

/// A bootstrap answer for an agent with a session, so `arc poll` goes on
/// to poll.
fn bootstrap_body() -> Vec<u8> {
    json!({"ok": true, "result": {
        "agent_id": "reader", "session": {"agent_id": "reader", "session_id": "s1"},
        "latest_visible_id": 0, "default_channel": "general", "live_agents": []
    }})
    .to_string()
    .into_bytes()
}

fn message(id: i64, metadata: &str) -> String {
    format!(
        r#"{{"id": {id}, "ts": "2026-01-01T00:00:00Z", "from_agent": "m", "to_agent": null, "channel": "general", "kind": "chat", "body": "b{id}", "attachments": [], "reply_to": null, "thread_id": null, "metadata": {metadata}}}"#
    )
}

#[test]
fn poll_reads_past_a_page_it_cannot_parse_and_names_a_message_it_cannot_read() {
    // Defect: one deeply nested message made every page holding it
    // unreadable, with an unclear error, and the reader never got past it.
    // Here message 5 is fine, message 6 nests 100 levels deep.
    let deep = format!("{{\"x\": {}{}}}", "[".repeat(100), "]".repeat(100));
    let server = Server::start(move |line, s, _| {
        let since = line
            .split(['?', '&', ' '])
            .find_map(|p| p.strip_prefix("since_id="))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        let page = match (line.contains("/v1/events"), line.contains("limit=1&")) {
            (false, _) => return answer_json(s, &bootstrap_body()),
            (true, false) if since < 6 => vec![message(5, "{}"), message(6, &deep)],
            (true, false) => vec![message(6, &deep)],
            (true, true) if since < 5 => vec![message(5, "{}")],
            (true, true) => vec![message(6, &deep)],
        };
        let body = format!(r#"{{"ok": true, "result": [{}]}}"#, page.join(", "));
        answer_json(s, body.as_bytes());
    });
    let dir = TempDir::new("hostile-poll");
    let url = server.url();
    let args = [
        "poll",
        "--agent",
        "reader",
        "--base-url",
        &url,
        "--timeout",
        "1",
    ];
    let ran = arc_bounded(dir.path(), &args, HANG);
    assert_eq!(ran.status.and_then(|s| s.code()), Some(0), "{}", ran.stdout);
    assert_eq!(
        ran.json()["id"],
        5,
        "the readable message comes through alone"
    );
    let mut past = args.to_vec();
    past.extend(["--since-id", "5"]);
    arc_bounded(dir.path(), &past, HANG).failed_quickly(
        &format!("arc error: protocol: {url}: refused the answer to GET /v1/events (nested deeper than 80 levels)"),
        "message 6 cannot be read: poll from a later id to go past it",
    );
}

/// What needs FIFOs, symlinks, file modes and owners.
#[cfg(unix)]
mod unix {
    use std::path::PathBuf;

    use super::*;
    use crate::lifecycle::{Foreground, Site, free_port};
    use crate::support::eventually;

    /// A relay spool where, once `arc` writes its request, `plant` puts
    /// something where the answer goes; then `arc whoami` over that spool.
    fn whoami_over_relay(plant: impl FnOnce(&Path) + Send + 'static) -> Ran {
        let dir = TempDir::new("hostile-relay");
        let spool = dir.path().join("spool");
        let planter = std::thread::spawn({
            let spool = spool.clone();
            move || {
                let requests = spool.join("requests/victim");
                let req = eventually(Duration::from_secs(30), "the request file", || {
                    std::fs::read_dir(&requests)
                        .ok()?
                        .flatten()
                        .map(|e| e.path())
                        .find(|p| p.extension().is_some_and(|x| x == "json"))
                });
                let name = req.file_name().unwrap().to_owned();
                plant(&spool.join("responses/victim").join(name));
            }
        });
        let sp = spool.to_str().unwrap().to_string();
        let ran = arc_bounded(
            dir.path(),
            &["whoami", "--agent", "victim", "--relay-dir", &sp],
            HANG,
        );
        planter.join().unwrap();
        ran
    }

    fn mkfifo(p: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn whoami_over_a_relay_refuses_fifos_links_and_huge_answers_at_once() {
        // Defects: a FIFO as the answer hung the client in open() for good
        // (past its own 40 s deadline); a link to /dev/zero or a huge file was
        // read without bound.
        let prefix = "arc error: connection error: relay produced invalid response payload: ";
        let ran = whoami_over_relay(mkfifo);
        ran.failed_quickly(prefix, "is a FIFO, socket or device");
        let ran = whoami_over_relay(|p| std::os::unix::fs::symlink("/dev/zero", p).unwrap());
        ran.failed_quickly(prefix, "is a symbolic link");
        let ran = whoami_over_relay(|p| {
            let tmp = p.with_extension("tmp");
            std::fs::File::create(&tmp)
                .unwrap()
                .set_len(3 << 30)
                .unwrap();
            std::fs::rename(tmp, p).unwrap();
        });
        ran.failed_quickly(prefix, "exceeds 67108864 bytes");
        let ran = whoami_over_relay(|p| {
            let deep = format!(
                r#"{{"ok": true, "status": 200, "body": {{"ok": true, "result": {}{}}}}}"#,
                "[".repeat(5000),
                "]".repeat(5000)
            );
            let tmp = p.with_extension("tmp");
            std::fs::write(&tmp, deep).unwrap();
            std::fs::rename(tmp, p).unwrap();
        });
        ran.failed_quickly(
            "arc error: protocol: relay ",
            "refused the answer to GET /v1/bootstrap (nested deeper than 80 levels)",
        );
    }

    #[test]
    fn the_relay_client_never_writes_or_reads_through_a_symlinked_agent_directory() {
        let dir = TempDir::new("hostile-relay-dir");
        let spool = dir.path().join("spool");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(spool.join("requests")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, spool.join("requests/victim")).unwrap();
        let sp = spool.to_str().unwrap().to_string();
        let ran = arc_bounded(
            dir.path(),
            &["whoami", "--agent", "victim", "--relay-dir", &sp],
            HANG,
        );
        ran.failed_quickly(
            "arc error: connection error: relay spool write failed: ",
            "requests/victim: is a symbolic link",
        );
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn a_fifo_pidfile_never_holds_stop_ensure_or_poll() {
        // Defect: `.arc.pid` was read with a blocking read_to_string: a FIFO
        // there hung `arc ensure` and `arc stop` for good.
        let s = Site::new();
        mkfifo(&s.path().join(".arc.pid"));
        let port = s.port_arg();
        let ran = arc_bounded(s.path(), &["stop", "--port", &port], HANG);
        ran.failed_quickly("{", "no running hub found");
        let note = ran.json()["note"].as_str().unwrap_or_default().to_string();
        assert!(
            note.contains(".arc.pid: is a FIFO, socket or device"),
            "{note}"
        );
        let ran = arc_bounded(
            s.path(),
            &["ensure", "--port", &port, "--timeout", "20"],
            HANG,
        );
        assert_eq!(
            ran.status.and_then(|st| st.code()),
            Some(0),
            "{}",
            ran.stdout
        );
        assert_eq!(ran.json()["running"], true);
        assert!(ran.took < Duration::from_secs(30), "{:?}", ran.took);
        // The hub's own pidfile replaced the FIFO.
        assert!(s.pid().is_some());
        // A cursor file that is a FIFO is refused too.
        let cursor = s.path().join("cursor");
        mkfifo(&cursor);
        let c = cursor.to_str().unwrap().to_string();
        let url = s.url();
        let args = [
            "poll",
            "--agent",
            "a",
            "--base-url",
            &url,
            "--cursor-file",
            &c,
        ];
        let ran = arc_bounded(s.path(), &args, HANG);
        ran.failed_quickly("arc error: cursor file ", "is a FIFO, socket or device");
    }

    /// A fake hub: hub-info claims `storage` and `pid`; shutdown is accepted,
    /// and if `vanish` the server then stops (as a hub would).
    fn fake_hub(storage: String, pid: u32, vanish: bool) -> Server {
        Server::start(move |line, s, stop| {
            if line.starts_with("GET /v1/hub-info") {
                let info = json!({"ok": true, "result": {
                    "instance_id": "mh1-00000000000000000000", "storage_path": storage, "pid": pid
                }});
                answer_json(s, info.to_string().as_bytes());
            } else {
                answer_json(
                    s,
                    br#"{"ok": true, "result": {"status": "shutdown_initiated"}}"#,
                );
                if vanish && line.starts_with("POST /v1/shutdown") {
                    stop.store(true, Ordering::SeqCst);
                }
            }
        })
    }

    /// What hub-info reports for `arc.sqlite3` in `dir` (not yet created).
    fn storage_in(dir: &Path) -> String {
        std::fs::canonicalize(dir)
            .unwrap()
            .join("arc.sqlite3")
            .display()
            .to_string()
    }

    /// An unrelated process that listens on a port: another hub, in a
    /// directory of its own.
    struct Stranger {
        _dir: TempDir,
        hub: Foreground,
        port: u16,
    }

    impl Stranger {
        fn start() -> Stranger {
            let dir = TempDir::new("stranger");
            let port = free_port();
            let hub = Foreground::start(dir.path(), port, "theirs.sqlite3", &["--no-relay"]);
            Stranger {
                _dir: dir,
                hub,
                port,
            }
        }

        fn pid(&self) -> u32 {
            self.hub.child.id()
        }

        fn is_alive(&mut self) -> bool {
            self.hub.child.try_wait().unwrap().is_none()
                && matches!(
                    arc_hub::lifecycle::probe(&format!("http://127.0.0.1:{}", self.port)),
                    arc_hub::lifecycle::Probe::Hub { .. }
                )
        }
    }

    #[test]
    fn stop_and_reset_never_signal_a_stranger_through_a_planted_pidfile() {
        // Defect: a pidfile naming an unrelated process that listens on the
        // pidfile's port, with a URL whose fake hub claimed our database and
        // that pid, made `arc stop` SIGTERM that process after 15 s (the pid
        // was "verified" by the fake's word; the port was never the URL's).
        let mut stranger = Stranger::start();
        let s = Site::new();
        let fake = fake_hub(storage_in(s.path()), stranger.pid(), false);
        let planted = |port: u16| {
            arc_hub::paths::write_pidfile(&s.pidfile(), stranger.pid(), port, &fake.url()).unwrap()
        };
        planted(stranger.port);
        for cmd in ["stop", "reset"] {
            let ran = arc_bounded(s.path(), &[cmd, "--port", &s.port_arg()], HANG);
            let v = ran.json();
            let note = v["note"].as_str().unwrap_or_default();
            assert!(
                note.contains(&format!("is not on its port {}", stranger.port)),
                "{cmd}: {v}"
            );
            assert!(ran.took < QUICK, "{cmd}: {:?}", ran.took);
            assert!(stranger.is_alive(), "{cmd} must not signal the stranger");
        }
        // With the URL on the pidfile's port, the fake's word is not enough:
        // the stranger does not own the fake's socket, so its pid is stale.
        let fake = fake_hub(storage_in(s.path()), stranger.pid(), true);
        arc_hub::paths::write_pidfile(&s.pidfile(), stranger.pid(), fake.port, &fake.url())
            .unwrap();
        let ran = arc_bounded(s.path(), &["stop", "--port", &s.port_arg()], HANG);
        let v = ran.json();
        assert_eq!(v["stopped"], true, "{v}");
        assert!(v.get("pid").is_none(), "no pid was verified: {v}");
        let note = v["note"].as_str().unwrap_or_default();
        assert!(
            note.contains(&format!("stale pidfile {}", s.pidfile().display()))
                && note.contains(&format!("does not listen on port {}", fake.port)),
            "{v}"
        );
        assert!(ran.took < QUICK, "{:?}", ran.took);
        assert!(stranger.is_alive());
    }

    #[test]
    fn a_pidfile_others_could_have_planted_is_ignored_by_stop_and_ensure() {
        // Defect: pidfiles were taken from any ancestor directory, /tmp
        // included, whoever wrote them; `arc ensure` then reported the
        // planter's fake hub as ours.
        use std::os::unix::fs::PermissionsExt;
        let root = TempDir::new("planted");
        let shared = root.path().join("shared");
        let proj = shared.join("proj");
        std::fs::create_dir_all(&proj).unwrap();
        std::fs::set_permissions(&proj, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut stranger = Stranger::start();
        let fake = fake_hub(storage_in(&proj), stranger.pid(), false);
        let planted = std::fs::canonicalize(&shared).unwrap().join(".arc.pid");
        arc_hub::paths::write_pidfile(&planted, stranger.pid(), fake.port, &fake.url()).unwrap();
        let port = free_port().to_string();
        let why = format!(
            "ignored pidfile {}: its directory can be written by other users",
            planted.display()
        );
        let ran = arc_bounded(&proj, &["stop", "--port", &port], HANG);
        ran.failed_quickly("{", "no running hub found");
        let note = |v: &Value| v["note"].as_str().unwrap_or_default().to_string();
        assert!(note(&ran.json()).contains(&why), "{}", ran.stdout);
        let ran = arc_bounded(&proj, &["ensure", "--port", &port, "--timeout", "20"], HANG);
        let v = ran.json();
        let stop = || arc_bounded(&proj, &["stop", "--port", &port], HANG);
        let ours = format!("http://127.0.0.1:{port}");
        let started = (v["running"].clone(), v["started"].clone(), v["url"].clone());
        let stopped = stop().json();
        assert_eq!(started, (json!(true), json!(true), json!(ours)), "{v}");
        assert!(note(&v).contains(&why), "{v}");
        assert_eq!(stopped["stopped"], true, "{stopped}");
        assert!(stranger.is_alive());
        // As root, a pidfile beside the database that another user owns is
        // ignored as well.
        if arc_hub::sys::file::owned_by_us(Some(0)) == Some(true) {
            let own: PathBuf = std::fs::canonicalize(&proj).unwrap().join(".arc.pid");
            arc_hub::paths::write_pidfile(&own, stranger.pid(), fake.port, &fake.url()).unwrap();
            std::os::unix::fs::chown(&own, Some(65534), Some(65534)).unwrap();
            let v = arc_bounded(&proj, &["stop", "--port", &port], HANG).json();
            assert!(
                note(&v).contains(&format!(
                    "ignored pidfile {}: is owned by another user (uid 65534)",
                    own.display()
                )),
                "{v}"
            );
            assert!(stranger.is_alive());
        }
    }
}
