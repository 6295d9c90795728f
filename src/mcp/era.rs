//! The two eras of MCP that `arc mcp` speaks on one stream, and how each
//! request is placed in one.
//!
//! * **Legacy** (2024-11-05 to 2025-11-25): an `initialize` handshake fixes
//!   the version for the whole process; requests carry no version.
//! * **Modern** (2026-07-28): no handshake; every request carries
//!   `_meta["io.modelcontextprotocol/protocolVersion"]` and
//!   `_meta["io.modelcontextprotocol/clientCapabilities"]` and is judged on
//!   its own (specification 2026-07-28, basic/index "`_meta`" and
//!   basic/versioning "Protocol Version Negotiation").

use serde_json::{Map, Value, json};

use super::rpc::{RpcError, UNSUPPORTED_PROTOCOL_VERSION};

/// Versions served after an `initialize` handshake, newest first.
pub const LEGACY_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Versions served statelessly, from each request's `_meta`.
pub const MODERN_VERSIONS: [&str; 1] = ["2026-07-28"];

/// Every version we speak, newest first: `server/discover`'s
/// `supportedVersions` and the `supported` list of a -32022 error.
pub const SUPPORTED_VERSIONS: [&str; 5] = [
    "2026-07-28",
    "2025-11-25",
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
];

/// The only legacy version whose clients may send JSON-RPC batches
/// (2025-03-26 required servers to accept them; 2025-06-18 removed them).
pub const BATCH_VERSION: &str = "2025-03-26";

pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The experimental capability of Claude Code's channels.
pub const CLAUDE_CHANNEL: &str = "claude/channel";

/// The version `initialize` answers for `asked`: the client's if we serve
/// it, else our newest legacy one. Never a modern version: a client that
/// sends `initialize` speaks the handshake era.
pub fn negotiate(asked: Option<&str>) -> &'static str {
    LEGACY_VERSIONS
        .iter()
        .find(|v| Some(**v) == asked)
        .copied()
        .unwrap_or(LEGACY_VERSIONS[0])
}

/// A modern request's declared version and capabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Modern {
    pub version: &'static str,
    pub capabilities: Map<String, Value>,
}

/// What a request's `_meta` declares.
#[derive(Debug, Clone, PartialEq)]
pub enum Declared {
    /// No protocol version: a legacy request (or one sent too early).
    Nothing,
    /// A legacy version in `_meta`: served like a request without one.
    Legacy(&'static str),
    /// A modern request, well formed.
    Modern(Modern),
}

/// Reads `params._meta`. Errors are the spec's: -32602 for a malformed or
/// incomplete modern `_meta`, -32022 (with the supported list) for a
/// version we do not serve.
pub fn declared(params: &Map<String, Value>) -> Result<Declared, RpcError> {
    let meta = match params.get("_meta") {
        None | Some(Value::Null) => return Ok(Declared::Nothing),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(RpcError::invalid_params("_meta must be an object")),
    };
    let version = match meta.get(META_PROTOCOL_VERSION) {
        None => return Ok(Declared::Nothing),
        Some(Value::String(v)) => v.as_str(),
        Some(_) => {
            return Err(RpcError::invalid_params(format!(
                "_meta[\"{META_PROTOCOL_VERSION}\"] must be a string"
            )));
        }
    };
    if let Some(v) = LEGACY_VERSIONS.iter().find(|l| **l == version) {
        return Ok(Declared::Legacy(v));
    }
    let Some(version) = MODERN_VERSIONS.iter().find(|m| **m == version).copied() else {
        return Err(unsupported(version));
    };
    let capabilities = match meta.get(META_CLIENT_CAPABILITIES) {
        Some(Value::Object(c)) => c.clone(),
        Some(_) => {
            return Err(RpcError::invalid_params(format!(
                "_meta[\"{META_CLIENT_CAPABILITIES}\"] must be an object"
            )));
        }
        None => {
            return Err(RpcError::invalid_params(format!(
                "_meta[\"{META_CLIENT_CAPABILITIES}\"] is required with protocol version {version}"
            )));
        }
    };
    Ok(Declared::Modern(Modern {
        version,
        capabilities,
    }))
}

/// UnsupportedProtocolVersionError for `requested`.
pub fn unsupported(requested: &str) -> RpcError {
    RpcError::new(
        UNSUPPORTED_PROTOCOL_VERSION,
        format!(
            "Unsupported protocol version: {requested:?} (supported: {})",
            SUPPORTED_VERSIONS.join(", ")
        ),
    )
    .with_data(json!({"supported": SUPPORTED_VERSIONS, "requested": requested}))
}

/// Whether `capabilities` (a client's) declares Claude Code's channel.
pub fn asks_for_channel(capabilities: Option<&Value>) -> bool {
    capabilities
        .and_then(|c| c.get("experimental"))
        .and_then(|e| e.get(CLAUDE_CHANNEL))
        .is_some_and(|v| !v.is_null())
}

/// Methods of the legacy era we answer (`server/discover` included: it is
/// harmless to answer after a handshake).
pub const LEGACY_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "server/discover",
];

/// Methods of the modern era we answer.
pub const MODERN_METHODS: &[&str] = &[
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "subscriptions/listen",
];

/// Legacy methods that 2026-07-28 removed (changelog items 2, 4 and 5).
pub const REMOVED_IN_MODERN: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// Whether any era knows `method`.
pub fn known(method: &str) -> bool {
    LEGACY_METHODS.contains(&method) || MODERN_METHODS.contains(&method)
}

/// Results that carry cache hints in the modern era (specification
/// 2026-07-28, server/utilities/caching), with their time to live.
pub fn cache_ttl_ms(method: &str) -> Option<u64> {
    match method {
        // Fixed for the life of the process (the tool profile, the one
        // resource, our identity).
        "server/discover" | "tools/list" | "resources/list" | "resources/templates/list" => {
            Some(3_600_000)
        }
        // The feed changes with every message.
        "resources/read" => Some(0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(meta: Value) -> Map<String, Value> {
        json!({"_meta": meta}).as_object().unwrap().clone()
    }

    #[test]
    fn negotiation_echoes_legacy_versions_and_never_answers_modern() {
        for v in LEGACY_VERSIONS {
            assert_eq!(negotiate(Some(v)), v);
        }
        assert_eq!(negotiate(Some("2026-07-28")), "2025-11-25");
        assert_eq!(negotiate(Some("1999-01-01")), "2025-11-25");
        assert_eq!(negotiate(None), "2025-11-25");
    }

    #[test]
    fn meta_is_read_as_the_spec_says() {
        assert_eq!(declared(&Map::new()), Ok(Declared::Nothing));
        assert_eq!(declared(&params(json!({}))), Ok(Declared::Nothing));
        assert_eq!(
            declared(&params(json!({META_PROTOCOL_VERSION: "2025-06-18"}))),
            Ok(Declared::Legacy("2025-06-18"))
        );
        let ok = declared(&params(json!({
            META_PROTOCOL_VERSION: "2026-07-28",
            META_CLIENT_CAPABILITIES: {"roots": {}},
        })))
        .unwrap();
        assert!(matches!(
            ok,
            Declared::Modern(Modern {
                version: "2026-07-28",
                ..
            })
        ));
        let e = declared(&params(json!({META_PROTOCOL_VERSION: "2026-07-28"}))).unwrap_err();
        assert_eq!(e.code, -32602);
        let e = declared(&params(json!({META_PROTOCOL_VERSION: 7}))).unwrap_err();
        assert_eq!(e.code, -32602);
        let e = declared(&params(json!({META_PROTOCOL_VERSION: "2099-01-01"}))).unwrap_err();
        assert_eq!(e.code, -32022);
        assert_eq!(
            e.data,
            Some(json!({"supported": SUPPORTED_VERSIONS, "requested": "2099-01-01"}))
        );
        let mut p = Map::new();
        p.insert("_meta".into(), json!([]));
        assert_eq!(declared(&p).unwrap_err().code, -32602);
    }

    #[test]
    fn the_channel_capability_is_found_only_where_it_is_declared() {
        assert!(asks_for_channel(Some(
            &json!({"experimental": {"claude/channel": {}}})
        )));
        assert!(!asks_for_channel(Some(&json!({"experimental": {}}))));
        assert!(!asks_for_channel(Some(&json!({}))));
        assert!(!asks_for_channel(None));
    }
}
