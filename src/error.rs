/*!
The crate's one error type.

Messages read "area: detail" (`sqlite: database is locked`, `config: ...`),
except [`Error::Api`], whose message is the exact text a hub client sees in
the `{"ok": false, "error": ...}` envelope (spec Appendix A). This is the
only module that names foreign error types.
*/

use std::fmt;

/// Everything that can go wrong in the hub, the client and the CLI.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A request refused by the hub: the HTTP status and the envelope text.
    Api {
        status: u16,
        message: String,
    },
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
    Io(std::io::Error),
    Sql(rusqlite::Error),
    Json(serde_json::Error),
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad(message: impl Into<String>) -> Error {
        Error::Api {
            status: 400,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::Api {
            status: 404,
            message: message.into(),
        }
    }

    pub fn api(status: u16, message: impl Into<String>) -> Error {
        Error::Api {
            status,
            message: message.into(),
        }
    }

    /// The HTTP status the hub answers with for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::Api { status, .. } | Error::Hub { status, .. } => *status,
            Error::Sql(e) if is_busy(e) => 503,
            _ => 500,
        }
    }

    /// The text that goes into the error envelope.
    pub fn envelope_message(&self) -> String {
        match self {
            Error::Api { message, .. } => message.clone(),
            Error::Sql(e) if is_busy(e) => "database is busy, try again".into(),
            other => format!("internal error: {other}"),
        }
    }

    /// True for a SQLite busy/locked condition (worth retrying).
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Sql(e) if is_busy(e))
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api { message, .. } => f.write_str(message),
            Error::Hub { message, .. } => f.write_str(message),
            Error::Transport(m) => write!(f, "connection error: {m}"),
            Error::Config(m) => write!(f, "config: {m}"),
            Error::Usage(m) => write!(f, "usage: {m}"),
            Error::Protocol(m) => write!(f, "protocol: {m}"),
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
    fn api_errors_keep_their_exact_text() {
        let e = Error::bad("channel does not exist: x");
        assert_eq!(e.status(), 400);
        assert_eq!(e.envelope_message(), "channel does not exist: x");
        assert_eq!(e.to_string(), "channel does not exist: x");
    }

    #[test]
    fn internal_errors_read_area_detail() {
        let e = Error::Config("port out of range".into());
        assert_eq!(e.to_string(), "config: port out of range");
        assert_eq!(e.status(), 500);
        let busy = Error::Sql(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ));
        assert!(busy.is_busy());
        assert_eq!(busy.status(), 503);
    }
}
