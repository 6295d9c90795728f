/*!
The crate's one error type.

Every message reads "area: detail" (`invalid: channel does not exist: x`,
`sqlite: database is locked`, `config: ...`). The variants that a hub
client sees ([`Error::Invalid`], [`Error::NotFound`], [`Error::Conflict`],
[`Error::Unavailable`], [`Error::Limited`], [`Error::Internal`]) carry the exact text of the
`{"ok": false, "error": ...}` envelope, which [`Error::detail`] returns
(docs/PROTOCOL.md, "Appendix: error texts"); which HTTP status each one
becomes is the API layer's decision (`api::status_of`), not this
module's. This is the only module that names foreign error types.
*/

use std::fmt;

/// Everything that can go wrong in the hub, the client and the CLI.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The request is not valid (the hub answers 400).
    Invalid(String),
    /// What the request names does not exist (404).
    NotFound(String),
    /// The request conflicts with the current state (409).
    Conflict(String),
    /// The hub cannot do it right now (503).
    Unavailable(String),
    /// The caller is over a limit of its own (429).
    Limited(String),
    /// The hub broke a rule of its own (500).
    Internal(String),
    /// A hub answered `{"ok": false}` (client side); `status` is the HTTP status.
    Hub {
        status: u16,
        message: String,
    },
    /// The hub could not be reached, or the exchange broke off (client side).
    Transport(String),
    /// Invalid configuration: one line, shown before the process exits.
    Config(String),
    /// A command line that cannot be parsed (exit code 2).
    Usage(String),
    /// A peer sent something that does not follow the protocol.
    Protocol(String),
    /// A step of `arc smoke-agent` failed (printed as
    /// `Smoke test failed: <detail>`).
    Smoke(String),
    Io(std::io::Error),
    Sql(rusqlite::Error),
    Json(serde_json::Error),
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::NotFound(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Error {
        Error::Conflict(message.into())
    }

    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::Unavailable(message.into())
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal(message.into())
    }

    /// The text without its area: what a hub client reads in the error
    /// envelope, and what `arc` prints after `arc error: `.
    pub fn detail(&self) -> String {
        match self {
            Error::Invalid(m)
            | Error::NotFound(m)
            | Error::Conflict(m)
            | Error::Unavailable(m)
            | Error::Limited(m)
            | Error::Internal(m)
            | Error::Smoke(m)
            | Error::Hub { message: m, .. } => m.clone(),
            Error::Transport(m) => format!("connection error: {m}"),
            other => other.to_string(),
        }
    }

    /// True for a SQLite busy/locked condition (worth retrying).
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Sql(e) if matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid(m) => write!(f, "invalid: {m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::Conflict(m) => write!(f, "conflict: {m}"),
            Error::Unavailable(m) => write!(f, "unavailable: {m}"),
            Error::Limited(m) => write!(f, "limited: {m}"),
            Error::Internal(m) => write!(f, "internal: {m}"),
            Error::Hub { status, message } => write!(f, "hub: {message} (HTTP {status})"),
            Error::Transport(m) => write!(f, "connection error: {m}"),
            Error::Config(m) => write!(f, "config: {m}"),
            Error::Usage(m) => write!(f, "usage: {m}"),
            Error::Protocol(m) => write!(f, "protocol: {m}"),
            Error::Smoke(m) => write!(f, "smoke: {m}"),
            Error::Io(e) => write!(f, "io: {e}"),
            Error::Sql(e) => write!(f, "sqlite: {e}"),
            Error::Json(e) => write!(f, "json: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Sql(e) => Some(e),
            Error::Json(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Sql(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::Json(e)
    }
}

impl From<lexopt::Error> for Error {
    fn from(e: lexopt::Error) -> Error {
        Error::Usage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_facing_errors_keep_their_exact_text_as_detail() {
        let e = Error::invalid("channel does not exist: x");
        assert_eq!(e.detail(), "channel does not exist: x");
        assert_eq!(e.to_string(), "invalid: channel does not exist: x");
        let e = Error::Transport("http://h: refused".into());
        assert_eq!(e.detail(), "connection error: http://h: refused");
    }

    #[test]
    fn every_message_reads_area_detail() {
        let e = Error::Config("port out of range".into());
        assert_eq!(e.to_string(), "config: port out of range");
        let busy = Error::Sql(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ));
        assert!(busy.is_busy());
        assert!(busy.to_string().starts_with("sqlite: "));
    }
}
