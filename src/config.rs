/*!
Hub configuration: defaults, validation, and the derived addresses.

Defaults follow the reference (docs/PROTOCOL.md, "CLI"). Validation produces one clear
line per problem; it never panics. Checks that need the file system (the
storage path) live in `hub.rs`, which opens things.
*/

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Hosts that count as loopback for the allow-remote rule (docs/PROTOCOL.md, "CLI").
pub const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "::1"];

/// Everything a hub needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct HubConfig {
    pub host: String,
    pub port: u16,
    pub storage: PathBuf,
    pub allow_remote: bool,
    pub quiet: bool,
    pub spool_dir: PathBuf,
    pub max_body_chars: usize,
    pub max_attachment_chars: usize,
    pub max_attachments: usize,
    pub presence_ttl_sec: i64,
    /// Clamp for `limit` query parameters.
    pub max_query_limit: i64,
    /// Longest long-poll wait, in seconds (the reference clamps to 60).
    pub max_poll_sec: f64,
    /// Worker threads answering short requests.
    pub workers: usize,
    /// Cap on parked long-polls and SSE streams, hub-wide (503 beyond it).
    pub max_waiters: usize,
    /// Cap on parked long-polls and SSE streams per agent (429 beyond it).
    pub max_waiters_per_agent: usize,
    /// Cap on open client connections (one more is answered 503 and
    /// closed at once); also bounded by the descriptor limit.
    pub max_connections: usize,
    /// How long a write waits for a database locked by another process.
    pub busy_timeout: Duration,
    /// Enables test-only routes (`GET /v1/_test/panic`). Never set by the CLI.
    #[doc(hidden)]
    pub test_hooks: bool,
    /// Socket read/write timeout: bounds slow or lying clients.
    pub io_timeout: Duration,
    /// SSE comment heartbeat interval.
    pub sse_keepalive: Duration,
    /// How often waiters check for commits made by other processes.
    pub foreign_poll: Duration,
    /// Write and remove `.arc.pid` next to the database.
    pub pidfile: bool,
    /// Run the built-in file relay on `spool_dir`.
    pub relay: bool,
    /// Relay scan interval.
    pub relay_poll: Duration,
    /// Relayed long-polls are clamped to this many seconds (docs/PROTOCOL.md, "Relay spool format").
    pub relay_max_wait_sec: f64,
    /// Relay `.work` and response files older than this are deleted.
    pub relay_retention: Duration,
    /// The relay forwards the admin routes (shutdown, network) too; off
    /// by default (docs/SECURITY.md, "A spool writer cannot reach outside
    /// the spool").
    pub relay_allow_admin: bool,
    /// Reservation patterns and paths compare without case (the default on
    /// Windows and macOS, whose file systems usually do).
    pub case_insensitive_paths: bool,
    /// The project reservation paths are relative to; absolute paths
    /// under it are accepted. `None`: the hub's working directory.
    pub project_root: Option<PathBuf>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            host: "127.0.0.1".into(),
            port: 6969,
            storage: PathBuf::from("arc.sqlite3"),
            allow_remote: false,
            quiet: false,
            spool_dir: PathBuf::from(".arc-relay"),
            max_body_chars: 128_000,
            max_attachment_chars: 256_000,
            max_attachments: 32,
            presence_ttl_sec: 120,
            max_query_limit: 500,
            max_poll_sec: 60.0,
            workers: 16,
            max_waiters: 2048,
            max_waiters_per_agent: 16,
            max_connections: 4096,
            busy_timeout: Duration::from_secs(10),
            test_hooks: false,
            io_timeout: Duration::from_secs(15),
            sse_keepalive: Duration::from_secs(15),
            foreign_poll: Duration::from_millis(25),
            pidfile: true,
            relay: true,
            relay_poll: Duration::from_millis(10),
            relay_max_wait_sec: 20.0,
            relay_retention: Duration::from_secs(3600),
            relay_allow_admin: false,
            case_insensitive_paths: cfg!(any(windows, target_os = "macos")),
            project_root: None,
        }
    }
}

impl HubConfig {
    /// A configuration for tests and embedding: port 0, no pidfile, no relay,
    /// quiet, storage in `dir`.
    pub fn ephemeral(dir: &std::path::Path) -> HubConfig {
        HubConfig {
            port: 0,
            storage: dir.join("arc.sqlite3"),
            spool_dir: dir.join(".arc-relay"),
            quiet: true,
            pidfile: false,
            relay: false,
            ..HubConfig::default()
        }
    }

    /// Checks the values that need no I/O.
    pub fn validate(&self) -> Result<()> {
        if self.presence_ttl_sec < 5 {
            return Err(Error::Config(
                "presence TTL must be at least 5 seconds".into(),
            ));
        }
        if self.presence_ttl_sec > crate::store::MAX_TTL_SEC {
            return Err(Error::Config("presence TTL is too large".into()));
        }
        if self.max_body_chars < 1 {
            return Err(Error::Config("max_body_chars must be at least 1".into()));
        }
        if self.max_attachment_chars < 1 {
            return Err(Error::Config(
                "max_attachment_chars must be at least 1".into(),
            ));
        }
        if self.workers < 1
            || self.max_waiters < 1
            || self.max_waiters_per_agent < 1
            || self.max_connections < 1
        {
            return Err(Error::Config(
                "worker, waiter and connection limits must be at least 1".into(),
            ));
        }
        if self.host.trim().is_empty() {
            return Err(Error::Config("host must not be empty".into()));
        }
        if !self.host_is_loopback() && !self.allow_remote {
            return Err(Error::Config(format!(
                "remote bind requires --allow-remote (host {} is not loopback)",
                self.host
            )));
        }
        if self.storage.as_os_str().is_empty() {
            return Err(Error::Config("storage path must not be empty".into()));
        }
        Ok(())
    }

    /// True when the listen host is one of the loopback names.
    pub fn host_is_loopback(&self) -> bool {
        LOOPBACK_HOSTS.contains(&self.host.as_str())
    }

    /// Longest stored `metadata` or `capabilities` encoding: the
    /// attachment limit, measured the same way (docs/COMPATIBILITY.md).
    pub fn max_json_field_chars(&self) -> usize {
        self.max_attachment_chars
    }

    /// The request-size cap in bytes (docs/PROTOCOL.md, "Wire rules"): body plus every attachment
    /// at its maximum, plus 64 KiB of JSON overhead.
    pub fn request_cap(&self) -> usize {
        self.max_body_chars
            .saturating_add(
                self.max_attachment_chars
                    .saturating_mul(self.max_attachments),
            )
            .saturating_add(65_536)
    }

    /// `host:port` for binding (IPv6 literals bracketed).
    pub fn bind_addr(&self) -> String {
        format!("{}:{}", bracket(&self.host), self.port)
    }
}

/// Brackets an IPv6 literal for use in a URL or socket address.
pub fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The URL clients use to reach a hub listening on `host:port`: wildcard
/// addresses become 127.0.0.1, IPv6 literals are bracketed (docs/PROTOCOL.md, "Pidfile").
pub fn client_url(host: &str, port: u16) -> String {
    let host = match host {
        "0.0.0.0" | "::" | "[::]" | "" => "127.0.0.1",
        h => h,
    };
    format!("http://{}:{port}", bracket(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference() {
        let c = HubConfig::default();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 6969));
        assert_eq!(c.request_cap(), 8_385_536);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn remote_bind_needs_the_flag() {
        let mut c = HubConfig {
            host: "0.0.0.0".into(),
            ..HubConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--allow-remote"), "{e}");
        c.allow_remote = true;
        assert!(c.validate().is_ok());
        assert!(
            HubConfig {
                host: "::1".into(),
                ..HubConfig::default()
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn ttl_floor() {
        let c = HubConfig {
            presence_ttl_sec: 4,
            ..HubConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(client_url("0.0.0.0", 7), "http://127.0.0.1:7");
        assert_eq!(client_url("::1", 7), "http://[::1]:7");
        assert_eq!(client_url("::", 7), "http://127.0.0.1:7");
        assert_eq!(
            HubConfig {
                host: "::1".into(),
                port: 5,
                ..HubConfig::default()
            }
            .bind_addr(),
            "[::1]:5"
        );
    }
}
