//! Facts of the spool format shared by both of its sides
//! (docs/PROTOCOL.md, "Relay spool format"): the spool-safe form of an
//! agent id, and the clamp on relayed long-polls.

/// The spool-safe form of an agent id: runs of characters outside
/// `[A-Za-z0-9._-]` become `_`; empty becomes `agent`; `.` and `..` become
/// `_` and `__` so no agent can write into the spool root.
pub fn safe_agent_id(agent: &str) -> String {
    let mut out = String::new();
    let mut in_run = false;
    for c in agent.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    match out.as_str() {
        "" => "agent".into(),
        "." => "_".into(),
        ".." => "__".into(),
        _ => out,
    }
}

/// Caps the `timeout` of relayed long-polls so an unchanged client with a
/// 30 s deadline always gets an answer. Returns the new path and the
/// longest wait it may take. Every `timeout` parameter counts, however
/// its name is encoded (the hub decodes names and reads the first one).
/// `path` starts with a single `/` (the relay collapses leading slashes).
pub fn clamp_long_poll(path: &str, max_wait: f64) -> (String, f64) {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let polls = route == "/v1/events" || route == "/v1/messages" || route.starts_with("/v1/inbox/");
    if !polls || query.is_empty() {
        return (path.to_string(), 0.0);
    }
    let mut wait: f64 = 0.0;
    let parts: Vec<String> = query
        .split('&')
        .map(|part| match part.split_once('=') {
            Some((k, v)) if crate::input::form_decode(k) == "timeout" => {
                let t = crate::input::py_float(&crate::input::form_decode(v)).unwrap_or(0.0);
                let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 60.0) };
                wait = wait.max(t.min(max_wait));
                if t > max_wait {
                    format!("timeout={max_wait}")
                } else {
                    part.to_string()
                }
            }
            _ => part.to_string(),
        })
        .collect();
    (format!("{route}?{}", parts.join("&")), wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_ids_match_the_reference_and_fix_dots() {
        assert_eq!(safe_agent_id("relay agent/1"), "relay_agent_1");
        assert_eq!(safe_agent_id("  ok.name-1_x "), "ok.name-1_x");
        assert_eq!(safe_agent_id("a//b"), "a_b");
        assert_eq!(safe_agent_id("é"), "_");
        assert_eq!(safe_agent_id(""), "agent");
        assert_eq!(safe_agent_id("."), "_");
        assert_eq!(safe_agent_id(".."), "__");
    }

    #[test]
    fn every_timeout_is_clamped_and_the_longest_counts() {
        assert_eq!(
            clamp_long_poll("/v1/events?agent_id=a&timeout=30", 20.0),
            ("/v1/events?agent_id=a&timeout=20".to_string(), 20.0)
        );
        // The hub reads the first non-blank one, by its decoded name.
        assert_eq!(
            clamp_long_poll("/v1/events?timeout=0&timeo%75t=60&timeout=", 20.0),
            ("/v1/events?timeout=0&timeout=20&timeout=".to_string(), 20.0)
        );
        assert_eq!(
            clamp_long_poll("/v1/inbox/a?timeout=20&timeout=0", 0.0),
            ("/v1/inbox/a?timeout=0&timeout=0".to_string(), 0.0)
        );
        assert_eq!(
            clamp_long_poll("/v1/hub-info?timeout=60", 20.0),
            ("/v1/hub-info?timeout=60".to_string(), 0.0)
        );
    }
}
