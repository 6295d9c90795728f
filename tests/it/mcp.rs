//! MCP server tests (in-memory JSON-RPC loop against an in-process hub).
