//! The dashboard as served: headers, assets, CSP, and static checks on the
//! page's script. (The browser test that drives it is tests/browser.)

use crate::support::TestHub;

const PAGE: &str = include_str!("../../assets/dashboard.html");
const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");

#[test]
fn page_is_served_with_a_strict_csp() {
    let hub = TestHub::start();
    for path in ["/", "/?channel=general", "/?x=%3Cscript%3E"] {
        let r = hub.get(path);
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.text(), PAGE, "{path}: the embedded page");
        let csp = r.header("Content-Security-Policy").expect("CSP header");
        assert_eq!(csp, arc_hub::dashboard::CSP);
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "CSP lacks {directive}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(r.header("X-Frame-Options"), Some("DENY"));
        assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
        assert!(r.header("X-Arc-Instance").unwrap().starts_with("mh1-"));
    }
}

#[test]
fn assets_are_served_with_their_types() {
    let hub = TestHub::start();
    let css = hub.get("/assets/dashboard.css");
    assert_eq!(css.status, 200, "{css}");
    assert_eq!(css.header("Content-Type"), Some("text/css; charset=utf-8"));
    assert_eq!(css.text(), CSS);
    let js = hub.get("/assets/dashboard.js");
    assert_eq!(js.status, 200, "{js}");
    assert_eq!(
        js.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(js.text(), JS);
    assert_eq!(js.header("X-Content-Type-Options"), Some("nosniff"));
    for missing in [
        "/assets/nope.js",
        "/assets/",
        "/assets/dashboard.js/",
        "/index.html",
        "/dashboard.js",
    ] {
        let r = hub.get(missing);
        assert_eq!(r.status, 404, "{missing}: {r}");
    }
}

#[test]
fn page_references_only_its_own_assets() {
    // No external URLs anywhere: the page must work offline and the CSP
    // would block them anyway.
    for (name, text) in [("html", PAGE), ("css", CSS), ("js", JS)] {
        for scheme in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(
                !text.contains(scheme),
                "dashboard.{name} contains {scheme:?}"
            );
        }
    }
    // Exactly one script, loaded from /assets, nothing inline.
    assert_eq!(PAGE.matches("<script").count(), 1);
    assert!(PAGE.contains(r#"<script src="/assets/dashboard.js" defer></script>"#));
    assert!(PAGE.contains(r#"<link rel="stylesheet" href="/assets/dashboard.css">"#));
    assert!(!PAGE.contains("<style"), "inline style element");
    assert!(!PAGE.contains(" style="), "inline style attribute");
    let lower = PAGE.to_ascii_lowercase();
    for handler in [
        " onclick=",
        " onload=",
        " onerror=",
        " onsubmit=",
        "javascript:",
    ] {
        assert!(!lower.contains(handler), "inline handler {handler}");
    }
}

#[test]
fn script_never_parses_html() {
    // Agent-supplied text reaches the DOM only through textContent and
    // createElement; these sinks would turn it into markup.
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "setAttribute(\"on",
        "DOMParser",
        "createContextualFragment",
        "srcdoc",
    ] {
        assert!(!JS.contains(sink), "dashboard.js uses {sink}");
    }
    assert!(JS.starts_with("/*") && JS.contains("\"use strict\";"));
}

#[test]
fn every_element_the_script_uses_exists() {
    // $("id") lookups in the script must name ids present in the page.
    let mut ids = Vec::new();
    let mut rest = JS;
    while let Some(i) = rest.find("$(\"") {
        rest = &rest[i + 3..];
        let end = rest.find('"').unwrap();
        ids.push(&rest[..end]);
    }
    assert!(ids.len() > 20, "found only {} lookups", ids.len());
    for id in ids {
        assert!(
            PAGE.contains(&format!("id=\"{id}\"")),
            "dashboard.js looks up #{id}, which dashboard.html lacks"
        );
    }
}

#[test]
fn script_uses_the_live_endpoints_and_closes_its_session() {
    for needle in [
        "/v1/stream?agent_id=",
        "/v1/events?agent_id=",
        "new EventSource(",
        "\"pagehide\"",
        "keepalive: true",
        "method: \"DELETE\"",
        "arcAgentId",
        "arcDisplayName",
        "e.status !== 409",
        "\"operator-\"",
        "body.thread_id = S.thread",
    ] {
        assert!(JS.contains(needle), "dashboard.js lacks {needle:?}");
    }
    for command in [
        "\"channels\"",
        "\"channel\"",
        "\"create-channel\"",
        "\"dm\"",
        "\"nick\"",
        "\"network\"",
        "\"quit\"",
        "\"exit\"",
    ] {
        assert!(
            JS.contains(&format!("case {command}:")),
            "slash command {command} missing"
        );
    }
}
