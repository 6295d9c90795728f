/*!
The v1 HTTP API: the route table, request validation, and the handlers.

Handlers take a parsed [`Call`] and return an [`Outcome`]: a finished
[`Reply`], a long-poll to park ([`Wait`]), or an event stream to run. They
never touch sockets or threads (the edge does) and never write SQL (the
store does). Validation follows docs/PROTOCOL.md, "Endpoints", in the
order and the words given there.

Files: `routes.rs` (the table: every route once, as data), `sessions.rs`
(sessions, agents, bootstrap, channels), `messages.rs` (posting),
`feeds.rs` (feeds and long-polls), `leases.rs` (claims and locks), `reservations.rs` (leases on path
patterns),
`tasks.rs` (tasks and threads), `dag.rs` (claim-next and handoff), `delivery.rs` (delivery marks, dead
letters, surfacing for hooks), `admin.rs` (hub-info, shutdown, network,
the dashboard), `stream.rs` (server-sent events).
*/

mod admin;
mod dag;
mod delivery;
mod feeds;
mod leases;
mod messages;
mod reservations;
mod routes;
mod sessions;
mod stream;
mod tasks;

pub use feeds::{Wait, WaitKind, finish_wait, touch_interval};
pub use routes::{NoRoute, ROUTES, RouteDef, Routed, markdown_table, methods, route};
pub use stream::{Stream, run as run_stream};

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::input::Query;
use crate::state::State;
use crate::wire::{self, Envelope};

/// One request, parsed.
#[derive(Debug, Default)]
pub struct Call {
    pub query: Query,
    /// The JSON object body of a POST (empty object when no body was sent).
    pub body: Map<String, Value>,
    /// The `Last-Event-ID` header (SSE resume).
    pub last_event_id: Option<String>,
    /// The path parameters, percent-decoded, in the order of the route's
    /// pattern.
    pub params: Vec<String>,
}

impl Call {
    /// The `i`th path parameter (empty if the route has none there).
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map(String::as_str).unwrap_or("")
    }
}

/// A finished response.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// The delivered mark this answer moves, queued for the mark writer
    /// as the answer is sent ([`Reply::answered`]), off the answer's path.
    pub delivers: Option<Delivers>,
}

/// A feed's answer handed messages up to `last_id` to `agent`.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivers {
    pub agent: String,
    pub scope: crate::store::DeliveryScope,
    pub last_id: i64,
}

impl Reply {
    pub fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.into_bytes(),
            delivers: None,
        }
    }

    /// Call as the answer is sent: queues the mark of what it delivered.
    pub fn answered(state: &State, delivers: Option<Delivers>) {
        if let Some(d) = delivers {
            delivery::record(state, &d.agent, Some(d.scope), Some(d.last_id));
        }
    }

    pub fn ok<T: Serialize>(result: T) -> Reply {
        Reply::envelope(200, Envelope::new(result))
    }

    pub fn created<T: Serialize>(result: T) -> Reply {
        Reply::envelope(201, Envelope::new(result))
    }

    pub fn envelope<T: Serialize>(status: u16, env: Envelope<T>) -> Reply {
        match serde_json::to_string(&env) {
            Ok(s) => Reply::json(status, s),
            Err(e) => Reply::error(500, &format!("internal error: json: {e}")),
        }
    }

    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, wire::error_body(message))
    }

    pub fn from_error(e: &Error) -> Reply {
        let (status, message) = status_of(e);
        Reply::error(status, &message)
    }

    fn with_status(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }
}

/// The HTTP status and envelope text an error becomes.
pub fn status_of(e: &Error) -> (u16, String) {
    match e {
        Error::Invalid(m) => (400, m.clone()),
        Error::NotFound(m) => (404, m.clone()),
        Error::Conflict(m) => (409, m.clone()),
        Error::Unavailable(m) => (503, m.clone()),
        Error::Limited(m) => (429, m.clone()),
        Error::Internal(m) => (500, m.clone()),
        Error::Hub { status, message } => (*status, message.clone()),
        e if e.is_busy() => (503, "database is busy, try again".into()),
        other => (500, format!("internal error: {other}")),
    }
}

/// What a handler produced.
pub enum Outcome {
    Reply(Reply),
    /// A long-poll with nothing to return yet: park it.
    Wait(Wait),
    /// An SSE stream to run.
    Stream(Stream),
}

impl From<Reply> for Outcome {
    fn from(r: Reply) -> Outcome {
        Outcome::Reply(r)
    }
}

/// Handles one routed request: runs its handler, turning an error into
/// its reply.
pub fn handle(state: &Arc<State>, routed: &Routed, call: &Call) -> Outcome {
    match (routed.def.handler)(state, call) {
        Ok(o) => o,
        Err(e) => Outcome::Reply(Reply::from_error(&e)),
    }
}
