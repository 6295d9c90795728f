//! The wake path: one post waking parked waiters (same hub and across
//! two hubs on one file), the hub with 1,000 long-polls and 50 streams
//! parked, and the file relay's round trip.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arc_hub::client::{http_request, read_response};

use crate::common::*;

/// Parks `waiters` long-polls, posts once, and records for each waiter the
/// time from just before the POST is sent until its answer arrives. One
/// thread watches every socket with poll(2), so the load generator adds no
/// per-waiter threads to the two cores it shares with the hub.
pub fn wake_latency(hub: &Hub, waiters: usize, rounds: usize) {
    let mut samples = Vec::new();
    for round in 0..rounds {
        let since = hub.max_id();
        let socks: Vec<TcpStream> = (0..waiters)
            .map(|i| {
                hub.park(&format!(
                    "/v1/events?agent_id=w{i}&since_id={since}&timeout=30&exclude_self=1"
                ))
            })
            .collect();
        wait_parked(hub, waiters);
        let t0 = Instant::now();
        let post = hub.send_post(&format!(
            r#"{{"from_agent":"poster","body":"round {round}"}}"#
        ));
        samples.extend(
            arrivals(&socks, Duration::from_secs(30))
                .into_iter()
                .map(|t| t - t0),
        );
        assert_eq!(read_response(post, false).unwrap().status, 201);
        for s in socks {
            let _ = read_response(s, false).unwrap();
        }
    }
    report(
        &format!("wake latency, {waiters} parked /v1/events waiter(s)"),
        samples,
        "p50 <= 2 ms, p99 <= 10 ms",
    );
}

pub fn cross_hub(a: &Hub, b: &Hub, rounds: usize) {
    let mut samples = Vec::new();
    for round in 0..rounds {
        let since = b.max_id();
        let s = b.park(&format!(
            "/v1/events?agent_id=x&since_id={since}&timeout=30&exclude_self=1"
        ));
        wait_parked(b, 1);
        let t0 = Instant::now();
        let post = a.send_post(&format!(
            r#"{{"from_agent":"poster","body":"cross {round}"}}"#
        ));
        samples.extend(
            arrivals(std::slice::from_ref(&s), Duration::from_secs(30))
                .into_iter()
                .map(|t| t - t0),
        );
        read_response(post, false).unwrap();
        let _ = read_response(s, false).unwrap();
    }
    report(
        "cross-hub wake latency (post on hub A, waiter on hub B)",
        samples,
        "p50 <= 100 ms",
    );
}

pub fn parked_load(hub: &Hub, polls: usize, streams: usize, samples_n: usize) {
    http_request(
        &hub.url,
        "POST",
        "/v1/channels",
        Some(br#"{"name":"parked"}"#),
        &[],
        Duration::from_secs(10),
    )
    .unwrap();
    let rss_before = proc_rss_mb(hub.pid());
    let since = hub.max_id();
    let mut conns: Vec<TcpStream> = Vec::new();
    for i in 0..polls {
        conns.push(hub.park(&format!(
            "/v1/events?agent_id=p{i}&channel=parked&since_id={since}&timeout=60"
        )));
    }
    for i in 0..streams {
        conns.push(hub.park(&format!(
            "/v1/stream?agent_id=s{i}&channels=parked&since_id={since}"
        )));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let cpu0 = proc_cpu_secs(hub.pid());
    std::thread::sleep(Duration::from_secs(10));
    let cpu1 = proc_cpu_secs(hub.pid());
    let rss = proc_rss_mb(hub.pid());
    let threads = proc_threads(hub.pid());
    match (cpu0, cpu1, rss, rss_before) {
        (Some(c0), Some(c1), Some(r), Some(rb)) => println!(
            "{:<58} cpu {:>6.3} s over 10 s   rss {:>6.1} MB (idle hub {rb:.1} MB)   threads {}   (target cpu ~0, rss <= 64 MB)",
            format!("idle cost, {polls} long-polls + {streams} SSE parked"),
            c1 - c0,
            r,
            threads.unwrap_or(0)
        ),
        _ => println!("idle cost: /proc not available on this platform"),
    }
    let mut gets = Vec::new();
    let mut posts = Vec::new();
    for i in 0..samples_n {
        let t = Instant::now();
        let r = http_request(
            &hub.url,
            "GET",
            "/v1/hub-info",
            None,
            &[],
            Duration::from_secs(30),
        )
        .unwrap();
        gets.push(t.elapsed());
        assert_eq!(r.status, 200);
        let t = Instant::now();
        hub.post(&format!(
            r#"{{"from_agent":"load","channel":"general","body":"under load {i}"}}"#
        ));
        posts.push(t.elapsed());
    }
    report(
        &format!("GET /v1/hub-info with {polls} polls + {streams} streams parked"),
        gets,
        "p99 <= 20 ms",
    );
    report(
        &format!("POST /v1/messages with {polls} polls + {streams} streams parked"),
        posts,
        "p99 <= 20 ms",
    );
    // Release everyone with one post to their channel and count answers.
    let t0 = Instant::now();
    hub.post(r#"{"from_agent":"load","channel":"parked","body":"release"}"#);
    let mut answered = 0;
    for c in conns.iter_mut().take(polls) {
        let mut buf = [0u8; 64];
        if c.read(&mut buf).map(|n| n > 0).unwrap_or(false) {
            answered += 1;
        }
    }
    println!(
        "{:<58} {answered}/{polls} answered in {:.1} ms",
        "release of every parked long-poll by one post",
        t0.elapsed().as_secs_f64() * 1000.0
    );
}

pub fn relay_round_trip(dir: &Path, rounds: usize, idle_rounds: usize) {
    let cwd: PathBuf = dir.join("relay");
    let spool = cwd.join(".arc-relay");
    let hub = Hub::spawn(
        &cwd,
        &dir.join("relay.sqlite3"),
        &["--spool-dir", spool.to_str().unwrap()],
    );
    let info = http_request(
        &hub.url,
        "GET",
        "/v1/hub-info",
        None,
        &[],
        Duration::from_secs(10),
    )
    .unwrap()
    .json();
    let has_relay = info["result"]["features"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "relay"));
    if !has_relay {
        println!(
            "{:<58} (relay not running in this build)",
            "relay round trip"
        );
        return;
    }
    let client = arc_hub::client::RelayClient::new(&spool, "bench-relay");
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let r = client
            .call("GET", "/v1/hub-info", None, Duration::from_secs(30))
            .unwrap();
        samples.push(t.elapsed());
        assert_eq!(r["status"], 200, "{r}");
    }
    report(
        "relay round trip (write request file .. read response)",
        samples,
        "p50 <= 30 ms",
    );
    // The relay scans faster while requests flow; measure the first
    // request after a quiet spell too (the idle scan interval).
    let mut cold = Vec::new();
    for _ in 0..idle_rounds {
        std::thread::sleep(Duration::from_millis(2500));
        let t = Instant::now();
        let r = client
            .call("GET", "/v1/hub-info", None, Duration::from_secs(30))
            .unwrap();
        cold.push(t.elapsed());
        assert_eq!(r["status"], 200, "{r}");
    }
    report(
        "relay round trip, first request after 2.5 s idle",
        cold,
        "p50 <= 30 ms",
    );
    // Ten idle agent directories, as a busy sandbox host would have.
    for i in 0..10 {
        let _ = std::fs::create_dir_all(spool.join("requests").join(format!("idle-{i}")));
    }
    // Let them settle (the relay trusts directory mtimes after 5 s).
    std::thread::sleep(Duration::from_secs(6));
    let cpu0 = proc_cpu_secs(hub.pid());
    std::thread::sleep(Duration::from_secs(10));
    let cpu1 = proc_cpu_secs(hub.pid());
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        println!(
            "{:<58} cpu {:>6.3} s over 10 s (target ~0)",
            "idle hub with relay (11 agent dirs)",
            b - a
        );
    }
    // Ten thousand agent directories nobody uses any more: an idle scan
    // looks at a bounded slice of them, not at every one.
    for i in 0..10_000 {
        let _ = std::fs::create_dir_all(spool.join("requests").join(format!("stale-{i:05}")));
    }
    std::thread::sleep(Duration::from_secs(8));
    let cpu0 = proc_cpu_secs(hub.pid());
    std::thread::sleep(Duration::from_secs(10));
    let cpu1 = proc_cpu_secs(hub.pid());
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        println!(
            "{:<58} cpu {:>6.3} s over 10 s (target ~0)",
            "idle hub with relay (10,011 agent dirs)",
            b - a
        );
    }
}
