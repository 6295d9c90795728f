/*!
The operator dashboard served at `GET /`: static assets compiled into the
binary with `include_str!`. All behaviour is in `assets/dashboard.js`,
which talks to the hub through the same v1 API as every agent.
*/

/// The page.
pub const HTML: &str = include_str!("../assets/dashboard.html");
const CSS: &str = include_str!("../assets/dashboard.css");
const JS: &str = include_str!("../assets/dashboard.js");

/// The Content-Security-Policy sent with the page: same-origin scripts,
/// styles and connections only; no inline script, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A static asset by name: its content type and text.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "dashboard.css" => Some(("text/css; charset=utf-8", CSS)),
        "dashboard.js" => Some(("text/javascript; charset=utf-8", JS)),
        _ => None,
    }
}
