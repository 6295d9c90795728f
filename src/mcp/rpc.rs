//! JSON-RPC 2.0 errors and replies (the codes of the JSON-RPC and MCP
//! specifications).

use serde_json::{Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP's code for an unknown resource URI, up to 2025-11-25 (2026-07-28
/// uses [`INVALID_PARAMS`] instead and forbids this one).
pub const RESOURCE_NOT_FOUND: i64 = -32002;
/// MCP 2026-07-28: the request's `_meta` names a protocol version the
/// server does not serve; `data` is `{"supported": [...], "requested"}`.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// A protocol error: what a JSON-RPC client gets as `error`.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    /// The error object's optional `data` member.
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::new(
            INVALID_PARAMS,
            format!("invalid params: {}", message.into()),
        )
    }

    /// This error with `data`.
    pub fn with_data(mut self, data: Value) -> RpcError {
        self.data = Some(data);
        self
    }

    /// The response carrying this error for request `id`.
    pub fn reply(&self, id: Value) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.data {
            error["data"] = d.clone();
        }
        json!({"jsonrpc": "2.0", "id": id, "error": error})
    }
}

/// What a method handler returns.
pub type RpcResult = std::result::Result<Value, RpcError>;

/// The response carrying `result` for request `id`.
pub fn result_reply(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}
