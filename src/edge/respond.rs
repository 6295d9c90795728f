//! Sending a [`Reply`]: the common headers, the dashboard's security
//! headers, and `Connection: close` when the hub is stopping.

use crate::api::Reply;
use crate::state::State;
use crate::wire::VERSION;

fn header_pair(name: &str, value: &str) -> Option<tiny_http::Header> {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn common_headers(state: &State, content_type: &str) -> Vec<tiny_http::Header> {
    [
        ("Content-Type", content_type.to_string()),
        ("X-Arc-Instance", state.instance_id.clone()),
        ("Server", format!("arc-hub/{VERSION}")),
        ("Cache-Control", "no-store".to_string()),
        ("X-Content-Type-Options", "nosniff".to_string()),
    ]
    .iter()
    .filter_map(|(k, v)| header_pair(k, v))
    .collect()
}

/// Sends a reply (in one write; the HTTP layer adds `Connection: close`
/// when the connection ends after it).
pub fn respond(state: &State, rq: tiny_http::Request, reply: Reply) {
    let mut headers = common_headers(state, reply.content_type);
    if reply.content_type.starts_with("text/html") {
        headers.extend(header_pair(
            "Content-Security-Policy",
            crate::dashboard::CSP,
        ));
        headers.extend(header_pair("X-Frame-Options", "DENY"));
        headers.extend(header_pair("Referrer-Policy", "no-referrer"));
    }
    if reply.status == 405 {
        headers.extend(header_pair("Allow", &crate::api::methods()));
    }
    let delivers = reply.delivers.clone();
    let len = reply.body.len();
    let mut response = tiny_http::Response::new(
        tiny_http::StatusCode(reply.status),
        headers,
        std::io::Cursor::new(reply.body),
        Some(len),
        None,
    )
    .with_chunked_threshold(usize::MAX);
    if reply.status == 503 && state.stopping() {
        response = response.with_close();
    }
    // Queued before the answer leaves, so a client that reads its marks
    // right after the answer finds them (reads of marks flush the queue).
    Reply::answered(state, delivers);
    let _ = rq.respond(response);
}
