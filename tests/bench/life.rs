//! Start and stop: spawn to the first answer from hub-info, `arc ensure`
//! to ready, and `arc stop` to the port being closed, for our hub and
//! (when available) the reference, each in a fresh directory every round.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arc_hub::client::http_request;

use crate::common::report;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The program and leading arguments that run `arc` for `who`.
fn arc(who: &str) -> Option<Vec<String>> {
    match who {
        "arc-rs" => Some(vec![
            std::env::var("ARC_BENCH_BIN").unwrap_or(env!("CARGO_BIN_EXE_arc").into()),
        ]),
        _ => std::env::var("ARC_REFERENCE_PYTHON")
            .ok()
            .map(|p| vec![p, "-m".into(), "arc".into()]),
    }
}

fn command(argv: &[String], cwd: &Path) -> Command {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Polls `f` every 0.2 ms until it holds (at most 30 s); the time taken.
fn until(mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if f() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    None
}

fn answers(port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}");
    http_request(
        &url,
        "GET",
        "/v1/hub-info",
        None,
        &[],
        Duration::from_secs(1),
    )
    .is_ok_and(|r| r.status == 200)
}

fn port_closed(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(200),
    )
    .is_err()
}

pub fn run(dir: &Path, rounds: usize) {
    for who in ["arc-rs", "reference"] {
        let Some(argv) = arc(who) else {
            println!("(reference not run: set ARC_REFERENCE_PYTHON to compare)");
            continue;
        };
        let (mut spawn, mut ensure, mut stop) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let cwd = dir.join(format!("life-{who}-{round}"));
            std::fs::create_dir_all(&cwd).unwrap();
            // Spawn in the foreground, to the first 200 from hub-info.
            let port = free_port();
            let t0 = Instant::now();
            let mut child = command(&argv, &cwd)
                .args(["--port", &port.to_string(), "--storage", "fg.sqlite3"])
                .spawn()
                .unwrap();
            if until(|| answers(port)).is_some() {
                spawn.push(t0.elapsed());
            }
            let _ = child.kill();
            let _ = child.wait();
            // `arc ensure` to ready (it returns once the hub answers), then
            // `arc stop` to the port closed.
            let port = free_port();
            let p = port.to_string();
            let t0 = Instant::now();
            let ok = command(&argv, &cwd)
                .args(["ensure", "--port", &p, "--storage", "bg.sqlite3"])
                .status()
                .is_ok_and(|s| s.success());
            if ok && answers(port) {
                ensure.push(t0.elapsed());
            }
            let t0 = Instant::now();
            let _ = command(&argv, &cwd)
                .args(["stop", "--port", &p, "--storage", "bg.sqlite3"])
                .status();
            if until(|| port_closed(port)).is_some() {
                stop.push(t0.elapsed());
            }
        }
        report(
            &format!("{who}: spawn to first 200 from hub-info"),
            spawn,
            "<= 10 ms",
        );
        report(&format!("{who}: arc ensure to ready"), ensure, "<= 50 ms");
        report(&format!("{who}: arc stop to port closed"), stop, "<= 50 ms");
    }
}
