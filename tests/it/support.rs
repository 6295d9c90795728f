//! Test harness: temp dirs, an in-process hub on 127.0.0.1:0, raw HTTP
//! helpers, and JSON assertions that print both sides on failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arc_hub::client::{HttpResponse, http_request};
use arc_hub::{Hub, HubConfig};
use serde_json::Value;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("arc-it-{tag}-{}", arc_hub::ids::uuid4_hex()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An in-process hub with its own temp dir.
pub struct TestHub {
    pub hub: Option<Hub>,
    pub url: String,
    pub dir: TempDir,
}

impl TestHub {
    pub fn start() -> TestHub {
        TestHub::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut HubConfig)) -> TestHub {
        let dir = TempDir::new("hub");
        let mut cfg = HubConfig::ephemeral(dir.path());
        tweak(&mut cfg);
        let hub = Hub::start(cfg).expect("hub starts");
        let url = hub.url();
        TestHub {
            hub: Some(hub),
            url,
            dir,
        }
    }

    /// Another hub on the same database file (shared-file mode).
    pub fn sibling(&self, tweak: impl FnOnce(&mut HubConfig)) -> Hub {
        let mut cfg = HubConfig::ephemeral(self.dir.path());
        tweak(&mut cfg);
        Hub::start(cfg).expect("sibling hub starts")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("arc.sqlite3")
    }

    pub fn hub(&self) -> &Hub {
        self.hub.as_ref().unwrap()
    }

    pub fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(body.to_string().into_bytes()))
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, None)
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Resp {
        self.raw(method, path, body.as_deref(), &[])
    }

    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let r = http_request(
            &self.url,
            method,
            path,
            body,
            headers,
            Duration::from_secs(90),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        Resp::from(r, method, path)
    }

    /// Registers an agent and returns its session JSON.
    pub fn register(&self, agent: &str) -> Value {
        let r = self.post(
            "/v1/sessions",
            serde_json::json!({"agent_id": agent, "replace": true}),
        );
        assert_eq!(r.status, 201, "{r}");
        r.result().clone()
    }

    /// Posts a chat and returns the stored message.
    pub fn say(&self, from: &str, channel: &str, body: &str) -> Value {
        let r = self.post(
            "/v1/messages",
            serde_json::json!({"from_agent": from, "channel": channel, "body": body}),
        );
        assert_eq!(r.status, 201, "{r}");
        r.result().clone()
    }

    /// Opens the database directly (for checks and fault injection).
    pub fn sql(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.db_path()).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(h) = self.hub.take() {
            h.shutdown();
        }
    }
}

/// A response with its request, for readable failures.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub json: Value,
    pub what: String,
}

impl Resp {
    pub fn from(r: HttpResponse, method: &str, path: &str) -> Resp {
        Resp {
            status: r.status,
            json: r.json(),
            headers: r.headers,
            body: r.body,
            what: format!("{method} {path}"),
        }
    }

    pub fn result(&self) -> &Value {
        assert_eq!(self.json["ok"], Value::Bool(true), "{self}");
        &self.json["result"]
    }

    pub fn error(&self) -> &str {
        assert_eq!(self.json["ok"], Value::Bool(false), "{self}");
        self.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error text: {self}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts an error status and exact error text.
    pub fn expect_err(&self, status: u16, message: &str) {
        assert_eq!((self.status, self.error()), (status, message), "{self}");
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n--- {} -> {}\n{}\n",
            self.what,
            self.status,
            self.text()
        )
    }
}

/// Asserts that every key in `expected` appears in `actual` with an equal
/// value (recursively for objects); prints both documents on failure.
#[track_caller]
pub fn assert_subset(actual: &Value, expected: &Value) {
    if let Some(path) = mismatch(actual, expected, String::from("$")) {
        panic!(
            "JSON mismatch at {path}\n--- expected (subset)\n{}\n--- actual\n{}",
            serde_json::to_string_pretty(expected).unwrap(),
            serde_json::to_string_pretty(actual).unwrap()
        );
    }
}

fn mismatch(actual: &Value, expected: &Value, path: String) -> Option<String> {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => {
                        if let Some(p) = mismatch(av, ev, format!("{path}.{k}")) {
                            return Some(p);
                        }
                    }
                    None => return Some(format!("{path}.{k} (missing)")),
                }
            }
            None
        }
        (Value::Array(a), Value::Array(e)) => {
            if a.len() != e.len() {
                return Some(format!("{path} (length {} != {})", a.len(), e.len()));
            }
            a.iter()
                .zip(e)
                .enumerate()
                .find_map(|(i, (av, ev))| mismatch(av, ev, format!("{path}[{i}]")))
        }
        _ => (actual != expected).then_some(path),
    }
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `limit`.
#[track_caller]
pub fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    for _ in 0..100_000 {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// The ids in a JSON array of messages.
pub fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}
