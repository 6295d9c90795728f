//! What every section shares: the hub under test (ours, or the Python
//! reference), percentiles and the report line, `/proc` figures, and
//! watching many sockets at once.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arc_hub::client::http_request;

/// A hub process.
pub struct Hub {
    pub child: Child,
    pub url: String,
    pub port: u16,
    /// A label for reports: `arc-rs` or `reference`.
    pub name: &'static str,
}

impl Hub {
    pub fn spawn(cwd: &Path, storage: &Path, extra: &[&str]) -> Hub {
        std::fs::create_dir_all(cwd).unwrap();
        // `ARC_BENCH_BIN` measures another build (an older commit, say).
        let bin = std::env::var("ARC_BENCH_BIN").unwrap_or(env!("CARGO_BIN_EXE_arc").into());
        let mut child = Command::new(bin)
            .args(["--port", "0", "--storage"])
            .arg(storage)
            .args(["--max-waiters", "5000", "--max-waiters-per-agent", "5000"])
            .args(extra)
            .current_dir(cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn arc");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut port = 0;
        for _ in 0..20 {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                port = addr.rsplit(':').next().unwrap().parse().unwrap();
                break;
            }
        }
        assert!(port != 0, "hub did not report its port");
        std::thread::spawn(move || {
            let mut sink = String::new();
            while out.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        Hub {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
            name: "arc-rs",
        }
    }

    /// The Python reference hub, when `ARC_REFERENCE_PYTHON` names a
    /// Python that has it installed (the interop venv does).
    pub fn reference(cwd: &Path, storage: &Path) -> Option<Hub> {
        let python = std::env::var("ARC_REFERENCE_PYTHON").ok()?;
        std::fs::create_dir_all(cwd).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ok()?;
        let child = Command::new(python)
            .args([
                "-m",
                "arc",
                "--port",
                &port.to_string(),
                "--quiet",
                "--storage",
            ])
            .arg(storage)
            .arg("--spool-dir")
            .arg(cwd.join(".arc-relay"))
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let hub = Hub {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
            name: "reference",
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let up = http_request(
                &hub.url,
                "GET",
                "/v1/hub-info",
                None,
                &[],
                Duration::from_secs(2),
            );
            if up.is_ok_and(|r| r.status == 200) {
                return Some(hub);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn post(&self, body: &str) -> serde_json::Value {
        http_request(
            &self.url,
            "POST",
            "/v1/messages",
            Some(body.as_bytes()),
            &[],
            Duration::from_secs(30),
        )
        .unwrap()
        .json()
    }

    pub fn max_id(&self) -> i64 {
        let r = http_request(
            &self.url,
            "GET",
            "/v1/bootstrap?agent_id=bench",
            None,
            &[],
            Duration::from_secs(30),
        )
        .unwrap();
        r.json()["result"]["latest_visible_id"].as_i64().unwrap()
    }

    /// Sends a POST of a message without waiting for the answer.
    pub fn send_post(&self, body: &str) -> TcpStream {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let req = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        s
    }

    /// Opens a connection and sends a GET without reading the answer.
    pub fn park(&self, path: &str) -> TcpStream {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        s
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn report(label: &str, mut samples: Vec<Duration>, target: &str) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<58} p50 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms   (n={}; target {target})",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap_or(&Duration::ZERO)),
        samples.len()
    );
}

/// The instant each socket first becomes readable (its answer arrived).
#[cfg(unix)]
pub fn arrivals(socks: &[TcpStream], limit: Duration) -> Vec<Instant> {
    use std::os::fd::AsRawFd;
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut seen = vec![None; socks.len()];
    let deadline = Instant::now() + limit;
    while seen.iter().any(Option::is_none) && Instant::now() < deadline {
        // SAFETY: fds is a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
        let now = Instant::now();
        if n <= 0 {
            continue;
        }
        for (i, fd) in fds.iter_mut().enumerate() {
            if fd.revents != 0 && seen[i].is_none() {
                seen[i] = Some(now);
                fd.fd = -1;
            }
            fd.revents = 0;
        }
    }
    seen.into_iter().flatten().collect()
}

#[cfg(not(unix))]
pub fn arrivals(socks: &[TcpStream], limit: Duration) -> Vec<Instant> {
    socks
        .iter()
        .map(|s| {
            let _ = s.set_read_timeout(Some(limit));
            let mut b = [0u8; 1];
            let _ = s.peek(&mut b);
            Instant::now()
        })
        .collect()
}

/// Waits until the hub reports `n` parked waiters (via the count of
/// subscriptions visible in its own answers is not exposed, so we give the
/// workers a moment per hundred connections).
pub fn wait_parked(hub: &Hub, n: usize) {
    let _ = hub;
    std::thread::sleep(Duration::from_millis(30 + (n as u64 / 100) * 60));
}

pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit(')').next()?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

pub fn proc_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn proc_threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("Threads:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
