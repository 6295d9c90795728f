//! Every HTTP route, once, as data: method, path pattern, whether it
//! reads a body, its handler and a one-line description. Routing, the
//! 404/405 decision and the route table of docs/PROTOCOL.md ("Routes",
//! kept equal to this one by a test) all come from [`ROUTES`].
//!
//! A pattern is a path whose `{name}` segments match any non-empty
//! segment (percent-decoded, and given to the handler in order) and whose
//! `{name:digits}` segments match ASCII digits only. As in the reference,
//! there is no trailing-slash tolerance; leading slashes collapse.

use std::sync::Arc;

use super::{
    Call, Outcome, admin, dag, delivery, feeds, leases, messages, reservations, sessions, stream,
    tasks,
};
use crate::error::Result;
use crate::input;
use crate::state::State;

/// A handler: validates the call and produces the outcome.
pub type Handler = fn(&Arc<State>, &Call) -> Result<Outcome>;

/// One route.
pub struct RouteDef {
    pub method: &'static str,
    pub pattern: &'static str,
    /// The handler reads a JSON object body.
    pub body: bool,
    pub handler: Handler,
    pub doc: &'static str,
}

macro_rules! routes {
    ($( $method:literal $pattern:literal $body:literal $handler:path => $doc:literal; )*) => {
        /// The route table, in matching order.
        pub static ROUTES: &[RouteDef] = &[
            $( RouteDef { method: $method, pattern: $pattern, body: $body, handler: $handler, doc: $doc }, )*
        ];
    };
}

routes! {
    "GET" "/" false admin::dashboard => "the operator dashboard";
    "GET" "/assets/dashboard.css" false admin::dashboard_css => "the dashboard's style sheet";
    "GET" "/assets/dashboard.js" false admin::dashboard_js => "the dashboard's script";
    "GET" "/v1/agents" false sessions::agents => "live sessions (optionally by capability)";
    "GET" "/v1/channels" false sessions::channels => "every channel";
    "GET" "/v1/hub-info" false admin::hub_info => "what this hub is and implements";
    "GET" "/v1/events" false feeds::events => "what one agent can see (long-poll)";
    "GET" "/v1/messages" false feeds::messages => "a channel's or thread's messages (long-poll)";
    "GET" "/v1/threads" false tasks::threads => "thread summaries";
    "GET" "/v1/threads/{thread_id}" false tasks::thread => "one thread in full";
    "GET" "/v1/inbox/{agent_id}" false feeds::inbox => "direct messages to an agent (long-poll)";
    "GET" "/v1/claims" false leases::claims => "claims";
    "GET" "/v1/locks" false leases::locks => "file locks";
    "GET" "/v1/tasks" false tasks::tasks => "tasks";
    "GET" "/v1/shutdown" false admin::shutdown_status => "a pending shutdown, if any";
    "GET" "/v1/bootstrap" false sessions::bootstrap => "what an agent needs to start";
    "GET" "/v1/stream" false stream::open => "server-sent events for one agent";
    "GET" "/v1/agents/{agent_id}/pending" false delivery::pending => "what an agent has not been delivered, shown or read yet";
    "GET" "/v1/messages/{message_id:digits}/deliveries" false delivery::deliveries => "a message's state for each recipient";
    "GET" "/v1/deliveries/dead" false delivery::dead => "direct messages to ids that never had a session";
    "GET" "/v1/reservations" false reservations::list => "reservations (optionally one agent's, active only)";
    "GET" "/v1/reservations/check" false reservations::check => "whether an agent may touch paths (read-only)";
    "POST" "/v1/sessions" true sessions::create => "register an agent";
    "POST" "/v1/sessions/{agent_id}/rename" true sessions::rename => "change an agent's display name";
    "POST" "/v1/channels" true sessions::create_channel => "create a channel";
    "POST" "/v1/messages" true messages::post => "post a message";
    "POST" "/v1/claims" true leases::claim => "acquire a claim";
    "POST" "/v1/claims/refresh" true leases::claim_refresh => "extend a claim";
    "POST" "/v1/claims/release" true leases::claim_release => "release a claim";
    "POST" "/v1/locks" true leases::lock => "lock a file";
    "POST" "/v1/locks/refresh" true leases::lock_refresh => "extend a lock";
    "POST" "/v1/locks/release" true leases::lock_release => "release a lock";
    "POST" "/v1/tasks/next" true dag::next => "claim the best ready task and reserve its paths (may wait)";
    "POST" "/v1/tasks/{task_id:digits}/complete" true tasks::complete => "complete a task";
    "POST" "/v1/tasks/{task_id:digits}/handoff" true dag::handoff => "hand a claimed task to another agent";
    "POST" "/v1/shutdown" true admin::shutdown => "arm a shutdown";
    "POST" "/v1/shutdown/cancel" true admin::shutdown_cancel => "cancel a pending shutdown";
    "POST" "/v1/network" true admin::network => "switch remote access";
    "POST" "/v1/reservations" true reservations::reserve => "reserve path patterns";
    "POST" "/v1/reservations/{reservation_id}/renew" true reservations::renew => "extend a reservation";
    "POST" "/v1/reservations/{reservation_id}/release" true reservations::release => "release a reservation";
    "POST" "/v1/agents/{agent_id}/read" true delivery::read => "an agent read everything up to an id";
    "POST" "/v1/agents/{agent_id}/surface" true delivery::surface => "take what is not yet shown to an agent's model (hooks; may wait)";
    "POST" "/v1/agents/{agent_id}/surfaced" true delivery::surfaced => "mark messages shown to an agent's model";
    "DELETE" "/v1/sessions/{session_id}" false sessions::close => "close a session";
}

/// Why a request matched no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    /// 404: no handler for this method and path.
    NotFound,
    /// 405: a method no route uses.
    MethodNotAllowed,
}

/// A matched route and its path parameters.
pub struct Routed {
    pub def: &'static RouteDef,
    pub params: Vec<String>,
}

impl Routed {
    /// True for routes whose handler reads a JSON body.
    pub fn takes_body(&self) -> bool {
        self.def.body
    }
}

/// Matches one segment of a pattern; `Some(param)` for a placeholder.
fn segment(pattern: &str, seg: &str) -> Option<Option<String>> {
    match pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        None => (pattern == seg).then_some(None),
        Some(_) if seg.is_empty() => None,
        Some(spec) if spec.ends_with(":digits") => seg
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| Some(seg.to_string())),
        Some(_) => Some(Some(input::percent_decode(seg))),
    }
}

/// Matches `method` and the raw `path` (query already removed).
pub fn route(method: &str, path: &str) -> std::result::Result<Routed, NoRoute> {
    if !ROUTES.iter().any(|r| r.method == method) {
        return Err(NoRoute::MethodNotAllowed);
    }
    // Python's http.server (3.11+) collapses leading slashes: `//v1/x`
    // is `/v1/x` for the reference, so it is for us.
    let trimmed = path.trim_start_matches('/');
    if trimmed.len() == path.len() {
        return Err(NoRoute::NotFound);
    }
    let segs: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    'routes: for def in ROUTES.iter().filter(|r| r.method == method) {
        let pattern: Vec<&str> = def
            .pattern
            .split('/')
            .skip(1)
            .filter(|s| !s.is_empty())
            .collect();
        if pattern.len() != segs.len() {
            continue;
        }
        let mut params = Vec::new();
        for (p, s) in pattern.iter().zip(&segs) {
            match segment(p, s) {
                None => continue 'routes,
                Some(Some(v)) => params.push(v),
                Some(None) => {}
            }
        }
        return Ok(Routed { def, params });
    }
    Err(NoRoute::NotFound)
}

/// The methods routes use (for `Allow` on a 405).
pub fn methods() -> String {
    let mut m: Vec<&str> = Vec::new();
    for r in ROUTES {
        if !m.contains(&r.method) {
            m.push(r.method);
        }
    }
    m.join(", ")
}

/// The route table as docs/PROTOCOL.md ("Routes") shows it.
pub fn markdown_table() -> String {
    let mut out = String::from("| Method | Path | Body | What |\n|---|---|---|---|\n");
    for r in ROUTES {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            r.method,
            r.pattern.replace(":digits", ""),
            if r.body { "yes" } else { "no" },
            r.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(method: &str, path: &str) -> std::result::Result<(&'static str, Vec<String>), NoRoute> {
        route(method, path).map(|r| (r.def.pattern, r.params))
    }

    #[test]
    fn routes_match_the_reference_table() {
        assert_eq!(hit("GET", "/"), Ok(("/", vec![])));
        assert_eq!(hit("GET", "/v1/channels/"), Err(NoRoute::NotFound));
        assert_eq!(hit("GET", "/v1/claims/refresh"), Err(NoRoute::NotFound));
        assert_eq!(hit("POST", "/v1/agents"), Err(NoRoute::NotFound));
        assert_eq!(hit("DELETE", "/v1/channels"), Err(NoRoute::NotFound));
        assert_eq!(hit("PUT", "/v1/channels"), Err(NoRoute::MethodNotAllowed));
        assert_eq!(hit("GET", "/index.html"), Err(NoRoute::NotFound));
        assert_eq!(hit("GET", "v1/channels"), Err(NoRoute::NotFound));
        assert_eq!(
            hit("POST", "/v1/tasks/12/complete"),
            Ok(("/v1/tasks/{task_id:digits}/complete", vec!["12".into()]))
        );
        assert_eq!(hit("POST", "/v1/tasks/x/complete"), Err(NoRoute::NotFound));
        assert_eq!(hit("POST", "/v1/tasks//complete"), Err(NoRoute::NotFound));
        // Leading slashes collapse, as in Python's http.server.
        assert_eq!(hit("GET", "//v1/channels").map(|r| r.0), Ok("/v1/channels"));
        assert_eq!(hit("GET", "///v1/agents").map(|r| r.0), Ok("/v1/agents"));
        assert_eq!(hit("GET", "//").map(|r| r.0), Ok("/"));
        assert_eq!(methods(), "GET, POST, DELETE");
    }

    #[test]
    fn path_parameters_are_percent_decoded() {
        assert_eq!(hit("GET", "/v1/inbox/a%20b").unwrap().1, ["a b"]);
        assert_eq!(hit("GET", "/v1/threads/x%2Fy").unwrap().1, ["x/y"]);
        assert_eq!(
            hit("POST", "/v1/sessions/caf%C3%A9/rename").unwrap().1,
            ["café"]
        );
        assert_eq!(hit("DELETE", "/v1/sessions/abc").unwrap().1, ["abc"]);
    }

    #[test]
    fn the_protocol_document_lists_exactly_these_routes() {
        let doc = include_str!("../../docs/PROTOCOL.md");
        let table = markdown_table();
        assert!(
            doc.contains(&table),
            "docs/PROTOCOL.md, \"Routes\", must hold this table:\n{table}"
        );
    }

    #[test]
    fn every_route_is_reachable_and_listed_once() {
        for r in ROUTES {
            let path = r
                .pattern
                .replace("{task_id:digits}", "7")
                .replace("{message_id:digits}", "7")
                .replace("{thread_id}", "t")
                .replace("{agent_id}", "a")
                .replace("{session_id}", "s")
                .replace("{reservation_id}", "r");
            let got = route(r.method, &path).unwrap_or_else(|e| panic!("{path}: {e:?}"));
            assert!(
                std::ptr::eq(got.def, r),
                "{} {} is shadowed",
                r.method,
                r.pattern
            );
        }
    }
}
