//! A 1,000-agent simulation. Agents form 50 teams of 20, each team with a
//! channel. 900 agents hold a long-poll on `/v1/events` for their team's
//! channel and 100 hold an SSE stream on it. Poster threads (25, each on its own connection) send about
//! 500 messages a second for the run (80% team broadcasts, 20% direct
//! messages to a teammate, posted in the team's channel), and 50 agents
//! claim and release work and lock and unlock files the whole time.
//!
//! Every message carries the time it was sent, so each delivery gives a
//! wake latency; each agent records the ids it received, so messages
//! missed or delivered twice are counted exactly against what was posted.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_hub::client::http_request;
use serde_json::{Value, json};

use crate::common::*;

const AGENTS: usize = 1000;
const TEAM: usize = 20;
const STREAMS: usize = 100;
const RATE: f64 = 500.0;
const POSTERS: usize = 25;
const LEASERS: usize = 50;

fn team_of(agent: usize) -> usize {
    agent / TEAM
}

/// What everyone shares: the clock, the stop flag, and the records.
struct Run {
    t0: Instant,
    stop: AtomicBool,
    /// Per agent: ids received (a second sighting is a duplicate).
    seen: Vec<Mutex<HashSet<i64>>>,
    duplicates: Mutex<u64>,
    wakes: Mutex<Vec<Duration>>,
    /// Per posted id: who should receive it.
    expected: Mutex<HashMap<i64, Vec<usize>>>,
    posts: Mutex<Vec<Duration>>,
    leases: Mutex<(u64, u64)>,
    /// SSE streams the hub ended, resumed from their last id.
    reconnects: Mutex<u64>,
}

impl Run {
    fn micros(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    /// Records one delivered message for `agent`.
    fn deliver(&self, agent: usize, m: &Value) {
        let Some(id) = m["id"].as_i64() else { return };
        if m["from_agent"] == "seed" {
            return;
        }
        if !self.seen[agent].lock().unwrap().insert(id) {
            *self.duplicates.lock().unwrap() += 1;
            return;
        }
        let sent = m["body"]
            .as_str()
            .and_then(|b| b.split_whitespace().next())
            .and_then(|t| t.parse::<u64>().ok());
        if let Some(sent) = sent {
            let now = self.micros();
            self.wakes
                .lock()
                .unwrap()
                .push(Duration::from_micros(now.saturating_sub(sent)));
        }
    }
}

pub fn run(dir: &Path, quick: bool) {
    let secs = if quick { 10 } else { 30 };
    let hub = Hub::spawn(
        &dir.join("sim"),
        &dir.join("sim.sqlite3"),
        &["--max-connections", "4096"],
    );
    for t in 0..AGENTS / TEAM {
        let body = json!({"name": format!("team-{t}"), "created_by": "sim"}).to_string();
        http_request(
            &hub.url,
            "POST",
            "/v1/channels",
            Some(body.as_bytes()),
            &[],
            Duration::from_secs(10),
        )
        .unwrap();
    }
    let start_id = hub.max_id();
    let run = Arc::new(Run {
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        seen: (0..AGENTS).map(|_| Mutex::new(HashSet::new())).collect(),
        duplicates: Mutex::new(0),
        wakes: Mutex::new(Vec::new()),
        expected: Mutex::new(HashMap::new()),
        posts: Mutex::new(Vec::new()),
        leases: Mutex::new((0, 0)),
        reconnects: Mutex::new(0),
    });
    let cpu0 = proc_cpu_secs(hub.pid());
    let mut receivers = Vec::new();
    for a in 0..AGENTS {
        let (run, port) = (run.clone(), hub.port);
        let stream = a % (AGENTS / STREAMS) == 0;
        receivers.push(
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || match stream {
                    true => sse_agent(&run, port, a, start_id),
                    false => poll_agent(&run, port, a, start_id),
                })
                .unwrap(),
        );
    }
    wait_parked(&hub, AGENTS);
    let mut workers = Vec::new();
    for p in 0..POSTERS {
        let (run, port) = (run.clone(), hub.port);
        workers.push(std::thread::spawn(move || poster(&run, port, p, secs)));
    }
    for l in 0..LEASERS {
        let (run, url) = (run.clone(), hub.url.clone());
        workers.push(std::thread::spawn(move || leaser(&run, &url, l, secs)));
    }
    std::thread::sleep(Duration::from_secs(secs) / 2);
    let (rss, threads) = (proc_rss_mb(hub.pid()), proc_threads(hub.pid()));
    for w in workers {
        w.join().unwrap();
    }
    let cpu1 = proc_cpu_secs(hub.pid());
    // Let the last messages arrive, then stop the receivers.
    let expected = run.expected.lock().unwrap().clone();
    let drained = Instant::now() + Duration::from_secs(20);
    while Instant::now() < drained && missing(&run, &expected) > 0 {
        std::thread::sleep(Duration::from_millis(200));
    }
    run.stop.store(true, Ordering::SeqCst);
    let missed = missing(&run, &expected);
    let missed_by_streams: usize = expected
        .iter()
        .map(|(id, who)| {
            who.iter()
                .filter(|a| {
                    **a % (AGENTS / STREAMS) == 0 && !run.seen[**a].lock().unwrap().contains(id)
                })
                .count()
        })
        .sum();
    let unexpected = surplus(&run, &expected);
    let deliveries: usize = expected.values().map(Vec::len).sum();
    report(
        "sim: POST /v1/messages",
        run.posts.lock().unwrap().clone(),
        "p99 <= 50 ms",
    );
    report(
        "sim: post to delivery (wake)",
        run.wakes.lock().unwrap().clone(),
        "p99 <= 50 ms",
    );
    let (ok, failed) = *run.leases.lock().unwrap();
    println!(
        "{:<58} {} messages ({:.0}/s of {RATE} offered), {deliveries} deliveries: missed {missed} ({missed_by_streams} by streams), twice {}, unexpected {unexpected} (target 0); {} stream reconnects; lease ops {ok} ok, {failed} failed",
        "sim: delivery",
        expected.len(),
        expected.len() as f64 / secs as f64,
        run.duplicates.lock().unwrap(),
        run.reconnects.lock().unwrap(),
    );
    match (cpu0, cpu1, rss, threads) {
        (Some(c0), Some(c1), Some(r), Some(t)) => println!(
            "{:<58} cpu {:.1} s over {secs} s ({:.0}% of a core), rss {r:.1} MB, threads {t}",
            "sim: hub cost",
            c1 - c0,
            (c1 - c0) / secs as f64 * 100.0
        ),
        _ => println!("sim: hub cost: /proc not available"),
    }
    drop(hub);
    for r in receivers {
        let _ = r.join();
    }
}

fn missing(run: &Run, expected: &HashMap<i64, Vec<usize>>) -> usize {
    expected
        .iter()
        .map(|(id, who)| {
            who.iter()
                .filter(|a| !run.seen[**a].lock().unwrap().contains(id))
                .count()
        })
        .sum()
}

fn surplus(run: &Run, expected: &HashMap<i64, Vec<usize>>) -> usize {
    (0..AGENTS)
        .map(|a| {
            run.seen[a]
                .lock()
                .unwrap()
                .iter()
                .filter(|id| expected.get(id).is_some_and(|w| !w.contains(&a)))
                .count()
        })
        .sum()
}

/// An agent long-polling its team's channel until the run stops.
fn poll_agent(run: &Run, port: u16, a: usize, mut since: i64) {
    let url = format!("http://127.0.0.1:{port}");
    while !run.stop.load(Ordering::SeqCst) {
        let path = format!(
            "/v1/events?agent_id=a{a}&channel=team-{}&since_id={since}&timeout=5&exclude_self=1&limit=500",
            team_of(a)
        );
        let Ok(r) = http_request(&url, "GET", &path, None, &[], Duration::from_secs(30)) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        for m in r.json()["result"].as_array().into_iter().flatten() {
            since = since.max(m["id"].as_i64().unwrap_or(0));
            run.deliver(a, m);
        }
    }
}

/// An agent reading an SSE stream on its team's channel, reconnecting
/// from the last id it saw (as `EventSource` does) when the hub closes it.
fn sse_agent(run: &Run, port: u16, a: usize, mut since: i64) {
    while !run.stop.load(Ordering::SeqCst) {
        since = sse_session(run, port, a, since);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One stream, until it ends or the run stops; returns the last id seen.
fn sse_session(run: &Run, port: u16, a: usize, mut since: i64) -> i64 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return since;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = write!(
        s,
        "GET /v1/stream?agent_id=a{a}&channels=team-{}&since_id={since}&exclude_self=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
        team_of(a)
    );
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while !run.stop.load(Ordering::SeqCst) {
        // A timeout keeps what was read of the line so far.
        match r.read_line(&mut line) {
            Ok(0) => {
                if *run.reconnects.lock().unwrap() < 3 {
                    eprintln!("sse eof a{a}: {line:?}");
                }
                *run.reconnects.lock().unwrap() += 1;
                return since;
            }
            Ok(_) => {
                // Chunk framing lines are hex sizes; event lines start with `data: `.
                if let Some(data) = line.trim_end().strip_prefix("data: ") {
                    if let Ok(m) = serde_json::from_str::<Value>(data) {
                        since = since.max(m["id"].as_i64().unwrap_or(0));
                        run.deliver(a, &m);
                    }
                }
                line.clear();
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue;
            }
            Err(e) => {
                if *run.reconnects.lock().unwrap() < 3 {
                    eprintln!("sse err a{a}: {e} at {:?}, since {since}", run.t0.elapsed());
                }
                *run.reconnects.lock().unwrap() += 1;
                return since;
            }
        }
    }
    since
}

/// Posts `RATE / POSTERS` messages a second on one kept-alive connection.
fn poster(run: &Run, port: u16, p: usize, secs: u64) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let every = Duration::from_secs_f64(POSTERS as f64 / RATE);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut next = Instant::now();
    let mut n: u64 = 0;
    while Instant::now() < end {
        n += 1;
        let from = (p * 97 + n as usize * 31) % AGENTS;
        let team = team_of(from);
        let mates: Vec<usize> = (team * TEAM..(team + 1) * TEAM)
            .filter(|x| *x != from)
            .collect();
        let dm = (n % 5 == 0).then(|| mates[(n as usize) % mates.len()]);
        let mut body = json!({
            "from_agent": format!("a{from}"),
            "channel": format!("team-{team}"),
            "body": format!("{} from {from}", run.micros()),
        });
        if let Some(to) = dm {
            body["to_agent"] = json!(format!("a{to}"));
        }
        let text = body.to_string();
        let t = Instant::now();
        let req = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if s.write_all(req.as_bytes()).is_err() {
            return;
        }
        let Ok(resp) = arc_hub::client::read_response(&mut s, false) else {
            return;
        };
        run.posts.lock().unwrap().push(t.elapsed());
        if let Some(id) = resp.json()["result"]["id"].as_i64() {
            let who = match dm {
                Some(to) => vec![to],
                None => mates,
            };
            run.expected.lock().unwrap().insert(id, who);
        }
        next += every;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// Claims and releases work, and locks and unlocks a file, in a loop.
fn leaser(run: &Run, url: &str, l: usize, secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    let agent = format!("a{}", l * TEAM);
    let mut i = 0;
    while Instant::now() < end {
        i += 1;
        let key = format!("work-{l}-{}", i % 4);
        let file = format!("src/team{l}/file{}.rs", i % 4);
        let steps = [
            (
                "/v1/claims",
                json!({"owner_agent_id": agent, "claim_key": key, "ttl_sec": 60}),
            ),
            (
                "/v1/locks",
                json!({"agent_id": agent, "file_path": file, "ttl_sec": 60}),
            ),
            (
                "/v1/locks/release",
                json!({"agent_id": agent, "file_path": file}),
            ),
            (
                "/v1/claims/release",
                json!({"agent_id": agent, "claim_key": key}),
            ),
        ];
        for (path, body) in steps {
            let ok = http_request(
                url,
                "POST",
                path,
                Some(body.to_string().as_bytes()),
                &[],
                Duration::from_secs(30),
            )
            .is_ok_and(|r| r.status < 300);
            let mut c = run.leases.lock().unwrap();
            if ok { c.0 += 1 } else { c.1 += 1 }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
