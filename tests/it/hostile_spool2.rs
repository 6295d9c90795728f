//! A spool writer must not be able to make the relay amplify memory, pass
//! broken answers off as good ones, smuggle raw HTTP onto its connection,
//! use up the hub's waiter slots, make scans cost more per claim the more
//! it queues, read files outside the spool through hard links, or stop
//! the hub. Each test plants what a sandboxed agent could plant and checks
//! the promise docs/SECURITY.md makes ("A spool writer cannot reach
//! outside the spool").

use std::time::Duration;

use serde_json::json;

use crate::relay::{await_response, envelope, relay_hub, spool};
use crate::support::{TempDir, TestHub};

const LIMIT: Duration = Duration::from_secs(30);

fn messages_from(h: &TestHub, agent: &str) -> i64 {
    h.sql()
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE from_agent = ?1",
            [agent],
            |r| r.get(0),
        )
        .unwrap()
}

#[cfg(unix)]
#[test]
fn hard_linked_request_files_are_refused_not_read() {
    // Defect: a hard link to a file outside the spool was read and
    // forwarded like any request.
    let outside = TempDir::new("host-secrets");
    let secret = outside.path().join("secret.json");
    let text = envelope(
        "POST",
        "/v1/messages",
        Some(json!({"from_agent": "leak", "channel": "general", "body": "OUTSIDE-SECRET"})),
        "2026-01-01T00:00:00Z",
    );
    std::fs::write(&secret, &text).unwrap();
    let h = relay_hub(|_| {});
    let sp = spool(&h);
    let dir = sp.join("requests/linker");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::hard_link(&secret, dir.join("h.json")).unwrap();
    let r = await_response(&sp, "linker", "h", LIMIT);
    assert_eq!(r["status"], 400, "{r}");
    let err = r["error"].as_str().unwrap();
    assert!(err.contains("hard links"), "{err}");
    assert_eq!(messages_from(&h, "leak"), 0);
    assert_eq!(std::fs::read(&secret).unwrap(), text);
    let stats = h.hub().relay_stats().unwrap();
    assert!(
        stats
            .refused
            .iter()
            .any(|l| l.contains("requests/linker/h.work") && l.contains("hard links")),
        "{:?}",
        stats.refused
    );
}
