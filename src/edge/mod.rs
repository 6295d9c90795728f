/*!
The HTTP edge: from a tiny_http request to a handler's [`Outcome`] and
back. [`serve`] answers protocol errors the HTTP layer found, runs the
guard ([`guard`]), routes, takes the body ([`body`]), calls the handler,
and sends the reply ([`respond`]) or hands a waiting request to a parked
thread. Handlers never see tiny_http; this module never sees SQL.
*/

mod body;
mod guard;
mod respond;

pub use respond::respond;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde_json::Map;

use crate::api::{self, Call, NoRoute, Outcome, Reply};
use crate::input::Query;
use crate::state::State;

/// The first value of a request header (case-insensitive name).
pub(crate) fn header<'a>(rq: &'a tiny_http::Request, name: &str) -> Option<&'a str> {
    rq.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// What serving a request decided.
enum Action {
    Reply(Reply),
    Wait(api::Wait),
    Stream(crate::api::Stream),
}

/// Serves one request on a worker.
pub fn serve(state: &Arc<State>, mut rq: tiny_http::Request) {
    // A request the HTTP layer could not parse is answered in our
    // envelope; its connection closes after the answer.
    if let Some(e) = rq.protocol_error() {
        let reply = Reply::error(e.status(), &e.to_string());
        return respond(state, rq, reply);
    }
    // A large body's room in the parse budget is held until its answer
    // has been serialised.
    let mut grant = None;
    let action = catch_unwind(AssertUnwindSafe(|| process(state, &mut rq, &mut grant)))
        .unwrap_or_else(|_| Action::Reply(Reply::error(500, "internal error: handler panicked")));
    match action {
        Action::Reply(r) => respond(state, rq, r),
        Action::Wait(w) => park(state, rq, w),
        Action::Stream(s) => stream(state, rq, s),
    }
    if grant.take().is_some() {
        crate::sys::memory::release_free_memory();
    }
}

fn process(
    state: &Arc<State>,
    rq: &mut tiny_http::Request,
    grant: &mut Option<crate::notify::Grant>,
) -> Action {
    if let Err(r) = guard::check(state, rq) {
        return Action::Reply(r);
    }
    let method = rq.method().as_str().to_ascii_uppercase();
    let url = rq.url().to_string();
    let (path, query) = split_target(&url);
    if state.config.test_hooks && path == "/v1/_test/panic" {
        panic!("test hook: deliberate handler panic");
    }
    let route = match api::route(&method, path) {
        Ok(r) => r,
        Err(NoRoute::NotFound) => return Action::Reply(Reply::error(404, "not found")),
        Err(NoRoute::MethodNotAllowed) => {
            return Action::Reply(Reply::error(405, &format!("method not allowed: {method}")));
        }
    };
    let mut call = Call {
        query: Query::parse(query),
        body: Map::new(),
        last_event_id: header(rq, "Last-Event-ID").map(str::to_string),
        params: route.params.clone(),
    };
    // Routes without a body ignore one, as the reference does; the HTTP
    // layer discards it after the answer (or closes the connection).
    if route.takes_body() {
        let body = match body::take(state, rq) {
            Ok(body) => body,
            Err(r) => return Action::Reply(r),
        };
        match body::reserve(state, &body) {
            Ok(g) => *grant = g,
            Err(r) => return Action::Reply(r),
        }
        match body::parse(&body) {
            Ok(map) => call.body = map,
            Err(msg) => return Action::Reply(Reply::error(400, &msg)),
        }
    }
    match api::handle(state, &route, &call) {
        Outcome::Reply(r) => Action::Reply(r),
        Outcome::Wait(w) => Action::Wait(w),
        Outcome::Stream(s) => Action::Stream(s),
    }
}

/// Splits a request target into path and query (absolute-form tolerated).
fn split_target(url: &str) -> (&str, &str) {
    let url = url.split('#').next().unwrap_or("");
    // Only a target that does not start with `/` can be absolute-form; a
    // `://` later on (in the query, say) is data.
    let absolute = if url.starts_with('/') {
        None
    } else {
        url.find("://")
    };
    let url = match absolute {
        Some(i) => url[i + 3..]
            .find('/')
            .map(|j| &url[i + 3 + j..])
            .unwrap_or("/"),
        None => url,
    };
    url.split_once('?').unwrap_or((url, ""))
}

/// Parks a long-poll on its connection's own thread (which would only
/// wait for the answer anyway), so it holds no worker and no thread of
/// its own.
fn park(state: &Arc<State>, rq: tiny_http::Request, w: api::Wait) {
    let slot = match state.reserve_parked(w.agent.as_deref()) {
        Ok(slot) => slot,
        Err(e) => return respond(state, rq, Reply::from_error(&e)),
    };
    let st = state.clone();
    rq.defer(move |rq| {
        let reply = catch_unwind(AssertUnwindSafe(|| api::finish_wait(&st, w)))
            .unwrap_or_else(|_| Reply::error(500, "internal error: long-poll panicked"));
        // No longer parked: free the slot before answering, so a client
        // that sees the answer also sees the count go down.
        drop(slot);
        respond(&st, rq, reply);
    });
}

fn stream(state: &Arc<State>, rq: tiny_http::Request, s: crate::api::Stream) {
    let slot = match state.reserve_parked(Some(&s.agent_id)) {
        Ok(slot) => slot,
        Err(e) => return respond(state, rq, Reply::from_error(&e)),
    };
    let st = state.clone();
    let spawned = state.pool.run(move || {
        let _slot = slot;
        let http10 = *rq.http_version() == tiny_http::HTTPVersion(1, 0);
        let writer = rq.into_writer();
        let _ = catch_unwind(AssertUnwindSafe(|| {
            crate::api::run_stream(&st, s, writer, http10)
        }));
    });
    if let Err(e) = spawned {
        state.log.log(&format!("cannot start a stream: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::body::parse as parse_body;
    use super::guard::{host_name, is_loopback_peer};
    use super::*;

    #[test]
    fn targets_split_into_path_and_query() {
        assert_eq!(
            split_target("/v1/messages?channel=x"),
            ("/v1/messages", "channel=x")
        );
        assert_eq!(split_target("/v1/hub-info"), ("/v1/hub-info", ""));
        assert_eq!(
            split_target("http://127.0.0.1:6969/v1/x?a=1#frag"),
            ("/v1/x", "a=1")
        );
        assert_eq!(split_target("http://h"), ("/", ""));
        // A `://` in the query never makes the target absolute-form.
        assert_eq!(
            split_target("/v1/messages?x=a://b/v1/shutdown"),
            ("/v1/messages", "x=a://b/v1/shutdown")
        );
    }

    #[test]
    fn host_names_drop_the_port() {
        assert_eq!(host_name("LOCALHOST:6969"), "localhost");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("evil.example:6969"), "evil.example");
    }

    #[test]
    fn bodies_parse_per_spec_order() {
        let err = |b: &[u8]| parse_body(b).unwrap_err();
        assert_eq!(parse_body(b""), Ok(Map::new()));
        assert_eq!(err(b"\xff"), "request body must be valid UTF-8");
        assert_eq!(err(b"{"), "malformed JSON");
        assert_eq!(err(b"{\"a\": NaN}"), "malformed JSON");
        assert_eq!(err("\u{feff}{}".as_bytes()), "malformed JSON");
        assert_eq!(err(b"[1]"), "request body must be a JSON object");
        assert!(parse_body(b"{\"a\": 1}").is_ok());
        // The shape limits come before parsing, and name themselves.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(64), "]".repeat(64));
        assert_eq!(
            err(deep.as_bytes()),
            "request body nested deeper than 64 levels"
        );
        let wide = format!("{{\"a\":[{}0]}}", "0,".repeat(300_000));
        assert_eq!(
            err(wide.as_bytes()),
            "request body holds more than 262144 JSON values"
        );
    }

    #[test]
    fn loopback_peers() {
        assert!(is_loopback_peer(Some(&"127.0.0.1:1".parse().unwrap())));
        assert!(is_loopback_peer(Some(&"[::1]:1".parse().unwrap())));
        assert!(is_loopback_peer(Some(
            &"[::ffff:127.0.0.1]:1".parse().unwrap()
        )));
        assert!(!is_loopback_peer(Some(&"10.0.0.2:1".parse().unwrap())));
    }
}
