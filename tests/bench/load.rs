//! A closed-loop HTTP load generator: `conns` threads, each with its own
//! connection (kept alive, or one per request), sending a request, reading
//! the whole answer, and sending the next, for a fixed time. It reads
//! answers with a small parser of its own (`Content-Length` only, which is
//! all the hubs under test send for these routes), so it costs the two
//! cores it shares with the hub as little as it can.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a run measured.
pub struct Run {
    pub ok: u64,
    pub errors: u64,
    /// Answers whose status was not the expected one.
    pub wrong: u64,
    /// Answers to `Connection: close` requests that did not say so.
    pub unannounced_close: u64,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// One request to send: its bytes, given the connection and sequence
/// number (so bodies can differ).
pub type MakeRequest = Arc<dyn Fn(usize, u64) -> Vec<u8> + Send + Sync>;

/// How to run the load.
pub struct Plan {
    pub port: u16,
    pub conns: usize,
    pub duration: Duration,
    pub expect: u16,
    /// A new connection per request, sent with `Connection: close`.
    pub close_each: bool,
}

/// Runs `plan` with requests from `make`.
pub fn run(plan: &Plan, make: MakeRequest) -> Run {
    let start = Instant::now();
    let deadline = start + plan.duration;
    let threads: Vec<_> = (0..plan.conns)
        .map(|i| {
            let make = make.clone();
            let (port, expect, close_each) = (plan.port, plan.expect, plan.close_each);
            std::thread::spawn(move || worker(i, port, expect, close_each, deadline, make))
        })
        .collect();
    let mut total = Run {
        ok: 0,
        errors: 0,
        wrong: 0,
        unannounced_close: 0,
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for t in threads {
        let r = t.join().unwrap();
        total.ok += r.ok;
        total.errors += r.errors;
        total.wrong += r.wrong;
        total.unannounced_close += r.unannounced_close;
        total.latencies.extend(r.latencies);
    }
    total.elapsed = start.elapsed();
    total.latencies.sort();
    total
}

fn connect(port: u16) -> Option<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_nodelay(true).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    Some(s)
}

fn worker(
    i: usize,
    port: u16,
    expect: u16,
    close_each: bool,
    deadline: Instant,
    make: MakeRequest,
) -> Run {
    let mut r = Run {
        ok: 0,
        errors: 0,
        wrong: 0,
        unannounced_close: 0,
        latencies: Vec::with_capacity(1 << 16),
        elapsed: Duration::ZERO,
    };
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(64 * 1024);
    for seq in 0u64.. {
        if Instant::now() >= deadline {
            break;
        }
        if conn.is_none() {
            conn = connect(port);
        }
        let Some(s) = conn.as_mut() else {
            r.errors += 1;
            continue;
        };
        let req = make(i, seq);
        let t0 = Instant::now();
        let answer = s
            .write_all(&req)
            .ok()
            .and_then(|()| read_answer(s, &mut buf));
        match answer {
            Some(a) => {
                r.latencies.push(t0.elapsed());
                if a.status == expect {
                    r.ok += 1;
                } else {
                    r.wrong += 1;
                }
                if close_each {
                    if !a.close {
                        r.unannounced_close += 1;
                    }
                    conn = None;
                } else if a.close {
                    conn = None;
                }
            }
            None => {
                r.errors += 1;
                conn = None;
            }
        }
    }
    r
}

struct Answer {
    status: u16,
    close: bool,
}

/// Reads one answer (head and `Content-Length` body) from `s`.
fn read_answer(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Answer> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let mut length = 0usize;
    let mut close = false;
    for line in head.split("\r\n").skip(1) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = v.parse().ok()?;
        } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Answer { status, close })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A request's bytes.
pub fn request(method: &str, path: &str, port: u16, body: Option<&str>, close: bool) -> Vec<u8> {
    let conn = if close { "Connection: close\r\n" } else { "" };
    match body {
        Some(b) => format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{conn}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )
        .into_bytes(),
        None => {
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{conn}\r\n").into_bytes()
        }
    }
}
