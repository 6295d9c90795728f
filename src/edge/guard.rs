//! The guard every request passes before routing: remote access,
//! `Host` (DNS rebinding), `Origin` and `Sec-Fetch-Site` (cross-site
//! requests). See docs/SECURITY.md, "Browsers".

use std::net::SocketAddr;

use crate::api::Reply;
use crate::state::State;

pub(super) fn is_loopback_peer(addr: Option<&SocketAddr>) -> bool {
    match addr {
        None => true,
        Some(a) => match a.ip() {
            std::net::IpAddr::V4(v4) => v4.is_loopback(),
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        },
    }
}

/// The host part of a `Host` header value, lower-cased, without the port.
pub(super) fn host_name(value: &str) -> String {
    let v = value.trim().to_ascii_lowercase();
    if let Some(rest) = v.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, _)) => format!("[{h}]"),
            None => v,
        };
    }
    match v.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => v,
    }
}

/// Every value of a request header (case-insensitive name).
fn headers_named<'a>(rq: &'a tiny_http::Request, name: &'a str) -> impl Iterator<Item = &'a str> {
    rq.headers()
        .iter()
        .filter(move |h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// The origins a browser page of this hub sends.
fn own_origins(state: &State, host: Option<&str>) -> Vec<String> {
    let port = state.port();
    let mut allowed = vec![
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::1]:{port}"),
    ];
    if port == 80 {
        allowed.extend([
            "http://127.0.0.1".into(),
            "http://localhost".into(),
            "http://[::1]".into(),
        ]);
    }
    if state.allow_remote() {
        if let Some(h) = host {
            allowed.push(format!("http://{}", h.trim().to_ascii_lowercase()));
        }
    }
    allowed
}

/// Cross-site and remote-access checks (docs/SECURITY.md): peer address
/// when remote access is off, `Host` against DNS rebinding, every
/// `Origin` against the hub's own, and `Sec-Fetch-Site` on requests that
/// change state (a browser that strips `Origin` still sends it).
pub(super) fn check(state: &State, rq: &tiny_http::Request) -> std::result::Result<(), Reply> {
    let allow_remote = state.allow_remote();
    if !allow_remote && !is_loopback_peer(rq.remote_addr()) {
        return Err(Reply::error(403, "remote access is disabled on this hub"));
    }
    let hosts: Vec<&str> = headers_named(rq, "Host").collect();
    if hosts.len() > 1 {
        return Err(Reply::error(400, "more than one Host header"));
    }
    let host = hosts.first().copied();
    if state.config.host_is_loopback() || !allow_remote {
        if let Some(value) = host {
            if !matches!(
                host_name(value).as_str(),
                "127.0.0.1" | "localhost" | "[::1]"
            ) {
                return Err(Reply::error(403, &format!("host not allowed: {value}")));
            }
        }
    }
    let allowed = own_origins(state, host);
    for origin in headers_named(rq, "Origin") {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if !allowed.contains(&origin) {
            return Err(Reply::error(403, "cross-origin requests are not allowed"));
        }
    }
    let changes_state = !matches!(
        rq.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    );
    if changes_state {
        for site in headers_named(rq, "Sec-Fetch-Site") {
            let site = site.trim().to_ascii_lowercase();
            if site != "same-origin" && site != "none" {
                return Err(Reply::error(403, "cross-site requests are not allowed"));
            }
        }
    }
    Ok(())
}
