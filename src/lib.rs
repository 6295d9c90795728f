/*!
Arc: a local coordination hub for AI agents.

Agents (Claude Code, Codex, Cursor, Gemini CLI, MCP hosts, scripts) sign in
to one hub on the operator's machine, post to channels, send direct
messages, claim work, lock files, hand off tasks and call each other; an
operator watches and steers on a live dashboard. This crate is a drop-in
replacement for the Python reference hub (`megastructure-arc` 0.1.1): same
wire protocol, same SQLite schema, same CLI, same relay spool format.

The design is deliberately synchronous: a tiny_http accept loop, a worker
pool, one SQLite connection behind a mutex, and condition variables for
long-polls and server-sent events. Blocking I/O keeps the code auditable
and the dependency tree small; see `docs/ARCHITECTURE.md`.

Module map (docs/ARCHITECTURE.md has the full one):

* [`cli`] parses the command line and runs a subcommand.
* [`server`] binds, runs workers and timers, and stops gracefully;
  [`edge`] turns a tiny_http request into a handler call and back.
* [`api`] routes requests to handlers; [`state`] is what they share.
* [`store`] holds every SQL statement; [`notify`] is where threads park.
* [`wire`] has the JSON shapes; [`input`] reads query strings and bodies.
* [`client`] talks to a hub over HTTP or the file relay; [`relay`] serves
  the spool; [`mcp`] is the stdio MCP server; [`smoke`] the smoke agent;
  [`lifecycle`] implements `ensure`, `stop` and `reset`; [`wake`] the
  harness hooks and `arc watch`.
*/

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod edge;
pub mod error;
pub mod glob;
pub mod guard;
pub mod ids;
pub mod input;
pub mod lifecycle;
pub mod mcp;
pub mod notify;
pub mod paths;
pub mod relay;
pub mod server;
pub mod smoke;
pub mod spool;
pub mod state;
pub mod store;
pub mod sys;
pub mod time;
pub mod wake;
pub mod wire;

pub use config::HubConfig;
pub use error::{Error, Result};
pub use server::Hub;

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn shared_types_are_send_and_sync() {
        assert_send_sync::<crate::state::State>();
        assert_send_sync::<crate::store::Store>();
        assert_send_sync::<crate::notify::Notifier>();
    }
}
