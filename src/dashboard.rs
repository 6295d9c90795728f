/*!
The operator dashboard served at `GET /`: static assets compiled into the
binary with `include_str!`. All behaviour is in `assets/dashboard.js`,
which talks to the hub through the same v1 API as every agent.
*/

use crate::api::Reply;

/// The page.
pub const HTML: &str = include_str!("../assets/dashboard.html");
const CSS: &str = include_str!("../assets/dashboard.css");
const JS: &str = include_str!("../assets/dashboard.js");

/// The Content-Security-Policy sent with the page: same-origin scripts,
/// styles and connections only; no inline script, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A static asset by name.
pub fn asset(name: &str) -> Reply {
    let (content_type, body) = match name {
        "dashboard.css" => ("text/css; charset=utf-8", CSS),
        "dashboard.js" => ("text/javascript; charset=utf-8", JS),
        _ => return Reply::error(404, "not found"),
    };
    Reply {
        status: 200,
        content_type,
        body: body.as_bytes().to_vec(),
    }
}
