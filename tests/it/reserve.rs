//! Reservations through the HTTP API and the CLI (docs/PROTOCOL.md,
//! "Reservations"): normalisation and exact overlap, shared and
//! exclusive, the tie to reference locks, claims and tasks, the
//! read-only check, renew and release, and leases that lapse with a
//! notice and a DM exactly once (also with two hubs on one file).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use arc_hub::client::http_request;
use arc_hub::input::percent_encode;
use serde_json::{Value, json};

use crate::support::{Resp, TestHub, eventually};

/// `POST /v1/reservations` with `paths` and any other fields of `extra`.
pub(crate) fn reserve(h: &TestHub, agent: &str, paths: &[&str], extra: Value) -> Resp {
    let mut body = json!({"agent_id": agent, "paths": paths});
    if let Value::Object(more) = extra {
        body.as_object_mut().unwrap().extend(more);
    }
    h.post("/v1/reservations", body)
}

/// Reserves and insists on 201; returns the row.
#[track_caller]
pub(crate) fn granted(h: &TestHub, agent: &str, paths: &[&str], extra: Value) -> Value {
    let r = reserve(h, agent, paths, extra);
    assert_eq!(r.status, 201, "{agent} reserving {paths:?}: {r}");
    r.result().clone()
}

pub(crate) fn release(h: &TestHub, id: &str, agent: &str) -> Resp {
    h.post(
        &format!("/v1/reservations/{}/release", percent_encode(id)),
        json!({"agent_id": agent}),
    )
}

/// Every reservation of `agent` (active ones only when `active_only`).
pub(crate) fn list_of(h: &TestHub, agent: &str, active_only: bool) -> Vec<Value> {
    let r = h.get(&format!(
        "/v1/reservations?agent_id={}&active_only={}",
        percent_encode(agent),
        u8::from(active_only)
    ));
    assert_eq!(r.status, 200, "{r}");
    r.result().as_array().unwrap().clone()
}

fn all_reservations(h: &TestHub) -> Value {
    let r = h.get("/v1/reservations");
    assert_eq!(r.status, 200, "{r}");
    r.result().clone()
}

fn check(h: &TestHub, agent: &str, paths: &[&str]) -> Value {
    let mut q = format!("/v1/reservations/check?agent_id={}", percent_encode(agent));
    for p in paths {
        q.push_str(&format!("&path={}", percent_encode(p)));
    }
    let r = h.get(&q);
    assert_eq!(r.status, 200, "{r}");
    r.result().clone()
}

fn id_of(row: &Value) -> String {
    row["reservation_id"].as_str().unwrap().to_string()
}

/// A notice or DM, read straight from the database (no hub traffic).
#[derive(Debug)]
pub(crate) struct Row {
    pub from_agent: String,
    pub to_agent: Option<String>,
    pub channel: String,
    pub kind: String,
    pub body: String,
    pub metadata: Value,
}

pub(crate) fn messages_sql(h: &TestHub) -> Vec<Row> {
    let c = h.sql();
    let mut st = c
        .prepare("SELECT from_agent, to_agent, channel, kind, body, metadata_json FROM messages ORDER BY id")
        .unwrap();
    st.query_map([], |r| {
        Ok(Row {
            from_agent: r.get(0)?,
            to_agent: r.get(1)?,
            channel: r.get(2)?,
            kind: r.get(3)?,
            body: r.get(4)?,
            metadata: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or(Value::Null),
        })
    })
    .unwrap()
    .collect::<rusqlite::Result<Vec<_>>>()
    .unwrap()
}

/// The broadcast notices and the DMs that announce reservation `id`.
fn announcements(h: &TestHub, id: &str) -> (Vec<Row>, Vec<Row>) {
    messages_sql(h)
        .into_iter()
        .filter(|m| m.metadata["reservation_id"] == json!(id))
        .partition(|m| m.to_agent.is_none())
}

/// `released_at` and `release_reason` of a reservation, from the database.
fn released_sql(h: &TestHub, id: &str) -> (Option<String>, Option<String>) {
    h.sql()
        .query_row(
            "SELECT released_at, release_reason FROM arc_reservations WHERE reservation_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// A hub whose project root is its own temp dir.
fn rooted_hub(case_insensitive: bool) -> TestHub {
    TestHub::start_with(|cfg| {
        cfg.case_insensitive_paths = case_insensitive;
        cfg.project_root = cfg.storage.parent().map(Path::to_path_buf);
    })
}

fn root_of(h: &TestHub) -> String {
    h.dir.path().to_string_lossy().into_owned()
}

/// A reserves `x`, B asks for `y`: 409 naming A's reservation and
/// pattern, or 201. Both are released afterwards.
#[track_caller]
fn pair(h: &TestHub, n: usize, x: &str, y: &str, conflict: bool) {
    let (a, b) = (format!("a{n}"), format!("b{n}"));
    let held = granted(h, &a, &[x], json!({"reason": "pair"}));
    let r = reserve(h, &b, &[y], json!({}));
    let theirs = held["paths"][0].as_str().unwrap();
    if conflict {
        assert_eq!(r.status, 409, "{x:?} vs {y:?} must conflict: {r}");
        let conflicts = r.json["conflicts"].as_array().unwrap();
        assert_eq!(conflicts.len(), 1, "{x:?} vs {y:?}: {r}");
        let c = &conflicts[0];
        assert_eq!(c["reservation_id"], held["reservation_id"], "{r}");
        assert_eq!(c["agent_id"], json!(a), "{r}");
        assert_eq!(c["pattern"], json!(theirs), "{r}");
        assert_eq!(c["mode"], json!("exclusive"), "{r}");
        assert_eq!(c["reason"], json!("pair"), "{r}");
        assert_eq!(c["expires_at"], held["expires_at"], "{r}");
        assert_eq!(
            r.error(),
            format!("reservation conflicts with {theirs} held by {a} (exclusive)"),
        );
        assert!(list_of(h, &b, false).is_empty(), "{b} holds something");
    } else {
        assert_eq!(r.status, 201, "{x:?} vs {y:?} must not conflict: {r}");
        assert_eq!(release(h, &id_of(r.result()), &b).status, 200);
    }
    assert_eq!(release(h, &id_of(&held), &a).status, 200);
}

#[test]
fn overlapping_patterns_conflict_and_disjoint_ones_do_not() {
    let h = rooted_hub(false);
    let root = root_of(&h);
    let abs = format!("{root}/src/a.rs");
    let abs_dir = format!("{root}/src/");
    let conflicting: Vec<(&str, &str)> = vec![
        ("**", "src/a.rs"),
        ("src/a.rs", "**"),
        ("src/**", "src/deep/x/y.rs"),
        ("src/**", "src"),
        ("src/", "src/a.rs"),
        ("src/*.rs", "src/a.rs"),
        ("*", "README.md"),
        ("[abc].rs", "b.rs"),
        ("[a-c]x", "[c-e]x"),
        ("[!a]x", "bx"),
        ("a?c", "abc"),
        ("**/*.md", "docs/a/b.md"),
        ("docs/**/x.md", "docs/x.md"),
        ("a*", "*b"),
        ("caf\u{e9}.md", "cafe\u{301}.md"),
        ("cafe\u{301}/**", "caf\u{e9}/x"),
        ("src\\a.rs", "src/a.rs"),
        ("src\\sub\\a.rs", "src/sub/*.rs"),
        ("./src//a.rs", "src/a.rs"),
        ("src/./a.rs", "src/a.rs"),
        ("a/b/../c.rs", "a/c.rs"),
        (&abs, "src/a.rs"),
        ("src/a.rs", &abs),
        (&abs_dir, "src/x/y.rs"),
        ("SRC/A.rs", "SRC/*.rs"),
    ];
    let disjoint: Vec<(&str, &str)> = vec![
        ("src/a.rs", "src/b.rs"),
        ("src/*.rs", "src/sub/a.rs"),
        ("src/*.rs", "src/a.md"),
        ("*.rs", "src/a.rs"),
        ("src", "src/a.rs"),
        ("src/**", "srcx/a.rs"),
        ("[abc].rs", "d.rs"),
        ("[!a]x", "ax"),
        ("[a-c]", "[d-e]"),
        ("a?c", "abbc"),
        ("docs/**/x.md", "docs/y.md"),
        ("a*", "b*"),
        ("**/*.md", "**/*.rs"),
        ("caf\u{e9}.md", "cafe.md"),
        (&abs, "src/b.rs"),
        ("SRC/A.rs", "src/a.rs"),
    ];
    let mut n = 0;
    for (x, y) in conflicting {
        n += 1;
        pair(&h, n, x, y, true);
    }
    for (x, y) in disjoint {
        n += 1;
        pair(&h, n, x, y, false);
    }
    // The answer carries the normalised forms.
    let r = granted(
        &h,
        "norm",
        &[&abs_dir, "./docs//a\\b.md", "cafe\u{301}.md"],
        json!({}),
    );
    assert_eq!(r["paths"], json!(["src/**", "docs/a/b.md", "caf\u{e9}.md"]));
}

#[test]
fn a_case_difference_conflicts_only_in_case_insensitive_mode() {
    for insensitive in [false, true] {
        let h = rooted_hub(insensitive);
        let a = granted(&h, "a", &["SRC/A.rs"], json!({}));
        let r = reserve(&h, "b", &["src/a.rs"], json!({}));
        if insensitive {
            assert_eq!(r.status, 409, "case-insensitive: {r}");
            assert_eq!(a["paths"], json!(["src/a.rs"]), "folded when stored");
            assert_eq!(
                r.json["conflicts"][0]["reservation_id"],
                a["reservation_id"]
            );
            assert_eq!(r.json["conflicts"][0]["pattern"], json!("src/a.rs"));
        } else {
            assert_eq!(r.status, 201, "case-sensitive: {r}");
            assert_eq!(a["paths"], json!(["SRC/A.rs"]), "kept as given");
        }
        // A reference lock in another case meets the reservation only when folding.
        let r = h.post(
            "/v1/locks",
            json!({"agent_id": "l", "file_path": "Src/a.RS"}),
        );
        // Refused in the lock-denied shape, or granted.
        let want = if insensitive {
            (200, false)
        } else {
            (201, true)
        };
        assert_eq!(
            (r.status, r.json["acquired"].clone()),
            (want.0, json!(want.1)),
            "{r}"
        );
        // An absolute path in another case: the root compares folded too.
        let root = root_of(&h).to_uppercase();
        let r = reserve(&h, "c", &[&format!("{root}/SRC/A.rs")], json!({}));
        if insensitive {
            assert_eq!(r.status, 409, "{r}");
        } else {
            assert_eq!(r.status, 400, "outside the (case-sensitive) root: {r}");
        }
    }
}

#[test]
fn climbing_out_of_the_project_is_400() {
    let h = rooted_hub(false);
    let root = root_of(&h);
    let outside = format!("{root}x/a.rs");
    let cases = [
        ("../x", "`..` climbs out of the project"),
        ("src/../../x", "`..` climbs out of the project"),
        ("..\\x", "`..` climbs out of the project"),
        ("/etc/passwd", "absolute, and outside the project root"),
        (outside.as_str(), "absolute, and outside the project root"),
        ("", "empty: it names the project itself"),
        ("./", "empty: it names the project itself"),
        ("[a", "unterminated `[` class"),
        ("**/../x", "`..` after `**`"),
    ];
    for (raw, why) in cases {
        reserve(&h, "a", &["ok/**", raw], json!({}))
            .expect_err(400, &format!("invalid path pattern {raw:?}: {why}"));
    }
    // The root itself, relative and absolute.
    reserve(&h, "a", &[&root], json!({})).expect_err(
        400,
        &format!("invalid path pattern {root:?}: empty: it names the project itself"),
    );
    assert_eq!(
        all_reservations(&h),
        json!([]),
        "a refused request took nothing"
    );
}

#[test]
fn shared_meets_shared_but_not_exclusive() {
    let h = TestHub::start();
    let s1 = granted(&h, "a", &["docs/**"], json!({"mode": "shared"}));
    assert_eq!(s1["mode"], "shared");
    let s2 = granted(&h, "b", &["docs/*.md"], json!({"mode": "shared"}));
    assert_ne!(s1["reservation_id"], s2["reservation_id"]);
    // Exclusive against two shared holders: both named.
    let r = reserve(&h, "c", &["docs/a.md"], json!({"mode": "exclusive"}));
    assert_eq!(r.status, 409, "{r}");
    // (Both were made in the same second: their order is not defined.)
    let mut holders: Vec<(&str, &str)> = r.json["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["agent_id"].as_str().unwrap(), c["mode"].as_str().unwrap()))
        .collect();
    holders.sort();
    assert_eq!(holders, [("a", "shared"), ("b", "shared")], "{r}");
    assert!(r.error().ends_with(" and 1 more"), "{r}");
    // Shared against an exclusive holder.
    let x = granted(&h, "d", &["src/**"], json!({}));
    assert_eq!(x["mode"], "exclusive", "the default mode");
    let r = reserve(&h, "e", &["src/a.rs"], json!({"mode": "shared"}));
    assert_eq!(r.status, 409, "{r}");
    assert_eq!(r.json["conflicts"][0]["mode"], "exclusive");
    assert_eq!(r.json["conflicts"][0]["agent_id"], "d");
}

#[test]
fn an_agent_never_conflicts_with_itself_and_re_reserving_extends_the_lease() {
    let h = TestHub::start();
    let first = granted(&h, "a", &["src/**", "Cargo.toml"], json!({"ttl_sec": 60}));
    let inner = granted(&h, "a", &["src/a.rs"], json!({}));
    assert_ne!(first["reservation_id"], inner["reservation_id"]);
    let shared = granted(&h, "a", &["src/b.rs"], json!({"mode": "shared"}));
    assert_ne!(first["reservation_id"], shared["reservation_id"]);
    // The same patterns (in another spelling) again: the same lease, longer.
    let again = granted(&h, "a", &["./src/", "Cargo.toml"], json!({"ttl_sec": 600}));
    assert_eq!(again["reservation_id"], first["reservation_id"]);
    assert_eq!(again["created_at"], first["created_at"]);
    assert!(
        again["expires_at"].as_str() > first["expires_at"].as_str(),
        "re-reserving must extend the lease: {} then {}",
        first["expires_at"],
        again["expires_at"]
    );
    assert_eq!(list_of(&h, "a", true).len(), 3);
    // Another agent is still refused.
    assert_eq!(reserve(&h, "b", &["src/z.rs"], json!({})).status, 409);
}

#[test]
fn a_request_with_one_conflicting_pattern_takes_nothing() {
    let h = TestHub::start();
    let held = granted(&h, "a", &["src/a.rs"], json!({}));
    let r = reserve(&h, "b", &["docs/**", "src/*.rs", "README.md"], json!({}));
    assert_eq!(r.status, 409, "{r}");
    let c = r.json["conflicts"].as_array().unwrap();
    assert_eq!(c.len(), 1, "only the conflicting pattern is named: {r}");
    assert_eq!(c[0]["requested"], "src/*.rs");
    assert_eq!(c[0]["reservation_id"], held["reservation_id"]);
    assert!(
        list_of(&h, "b", false).is_empty(),
        "b took part of its request"
    );
    // The free paths really are free.
    granted(&h, "c", &["docs/x.md", "README.md"], json!({}));
}

#[test]
fn bad_reservation_requests_are_refused_with_clear_messages() {
    let h = TestHub::start();
    let post = |body: Value| h.post("/v1/reservations", body);
    post(json!({"paths": ["a"]})).expect_err(400, "agent_id is required");
    post(json!({"agent_id": " ", "paths": ["a"]})).expect_err(400, "agent_id is required");
    post(json!({"agent_id": "a"})).expect_err(400, "paths is required");
    post(json!({"agent_id": "a", "paths": "src/**"})).expect_err(400, "paths must be a list");
    post(json!({"agent_id": "a", "paths": []}))
        .expect_err(400, "paths must name at least one pattern");
    post(json!({"agent_id": "a", "paths": ["ok", 7]}))
        .expect_err(400, "paths must be a list of strings");
    post(json!({"agent_id": "a", "paths": [null]}))
        .expect_err(400, "paths must be a list of strings");
    let many: Vec<String> = (0..65).map(|i| format!("f{i}")).collect();
    post(json!({"agent_id": "a", "paths": many}))
        .expect_err(400, "paths may name at most 64 patterns");
    post(json!({"agent_id": "a", "paths": ["a"], "mode": "x"}))
        .expect_err(400, "mode must be 'exclusive' or 'shared'");
    post(json!({"agent_id": "a", "paths": ["a"], "ttl_sec": 4}))
        .expect_err(400, "ttl_sec must be at least 5");
    post(json!({"agent_id": "a", "paths": ["a"], "ttl_sec": "soon"}))
        .expect_err(400, "ttl_sec must be an integer");
    post(json!({"agent_id": "a", "paths": ["a"], "ttl_sec": 315_360_001}))
        .expect_err(400, "ttl_sec must be at most 315360000");
    post(json!({"agent_id": "a", "paths": ["a"], "task_id": 987_654}))
        .expect_err(404, "task not found");
    assert_eq!(all_reservations(&h), json!([]), "nothing was taken");
    // The smallest TTL is fine.
    granted(&h, "a", &["a"], json!({"ttl_sec": 5}));
}

#[test]
fn reference_locks_and_reservations_are_one_truth() {
    let h = TestHub::start();
    // Another agent's lock on a covered path refuses the reservation.
    let lock = h.post(
        "/v1/locks",
        json!({"agent_id": "l", "file_path": "src/a.rs"}),
    );
    assert_eq!(lock.status, 201, "{lock}");
    let r = reserve(&h, "a", &["src/**"], json!({}));
    assert_eq!(r.status, 409, "{r}");
    let c = &r.json["conflicts"][0];
    assert_eq!(
        (
            &c["mode"],
            &c["agent_id"],
            &c["pattern"],
            &c["reservation_id"]
        ),
        (
            &json!("lock"),
            &json!("l"),
            &json!("src/a.rs"),
            &Value::Null
        ),
        "{r}"
    );
    assert_eq!(c["expires_at"], lock.result()["expires_at"]);
    assert_eq!(
        r.error(),
        "reservation conflicts with src/a.rs held by l (lock)"
    );
    // A pattern that does not cover the lock is fine, and so is the
    // lock holder's own reservation.
    granted(&h, "a", &["src/b.rs"], json!({}));
    granted(&h, "l", &["src/a.rs"], json!({}));

    // A lock on a path another agent's exclusive reservation covers is
    // refused in the reference's shape, naming the reservation's holder.
    let held = granted(&h, "x", &["lib/**"], json!({"reason": "refactor"}));
    let r = h.post(
        "/v1/locks",
        json!({"agent_id": "y", "file_path": "lib/m.rs"}),
    );
    assert_eq!((r.status, &r.json["acquired"]), (200, &json!(false)), "{r}");
    let row = r.result();
    assert_eq!(row["agent_id"], "x", "the holder is the reservation's: {r}");
    assert_eq!(row["file_path"], "lib/m.rs");
    assert_eq!(row["locked_at"], held["created_at"]);
    assert_eq!(row["expires_at"], held["expires_at"]);
    assert_eq!(
        row["metadata"],
        json!({"reservation_id": held["reservation_id"], "pattern": "lib/**", "reason": "refactor"})
    );
    let locks = h.get("/v1/locks?active_only=1");
    assert!(
        locks
            .result()
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["file_path"] != "lib/m.rs"),
        "a refused lock was stored: {locks}"
    );
    // The holder's own lock is not blocked by its reservation.
    let own = h.post(
        "/v1/locks",
        json!({"agent_id": "x", "file_path": "lib/m.rs"}),
    );
    assert_eq!(
        (own.status, &own.json["acquired"]),
        (201, &json!(true)),
        "{own}"
    );
    // A shared reservation does not block a lock.
    granted(&h, "s", &["docs/**"], json!({"mode": "shared"}));
    let r = h.post(
        "/v1/locks",
        json!({"agent_id": "y", "file_path": "docs/a.md"}),
    );
    assert_eq!((r.status, &r.json["acquired"]), (201, &json!(true)), "{r}");
}

#[test]
fn check_answers_allowed_and_conflicts_and_changes_nothing() {
    let h = TestHub::start();
    let held = granted(&h, "a", &["src/**"], json!({"reason": "big change"}));
    let lock = h.post(
        "/v1/locks",
        json!({"agent_id": "l", "file_path": "lib/x.rs"}),
    );
    assert_eq!(lock.status, 201);
    let before = all_reservations(&h);

    let r = check(&h, "b", &["src/a.rs", "README.md", "./lib//x.rs"]);
    assert_eq!(r["allowed"], false, "{r}");
    let c = r["conflicts"].as_array().unwrap();
    assert_eq!(c.len(), 2, "{r}");
    assert_eq!(c[0]["reservation_id"], held["reservation_id"]);
    assert_eq!(c[0]["requested"], "src/a.rs");
    assert_eq!(c[0]["pattern"], "src/**");
    assert_eq!(c[0]["reason"], "big change");
    assert_eq!(
        (&c[1]["mode"], &c[1]["agent_id"]),
        (&json!("lock"), &json!("l"))
    );
    assert_eq!(c[1]["requested"], "lib/x.rs");

    let r = check(&h, "b", &["README.md", "docs/a.md"]);
    assert_eq!(r, json!({"allowed": true, "conflicts": []}));
    // The holder itself may touch its paths.
    assert_eq!(check(&h, "a", &["src/a.rs"])["allowed"], true);

    // Read-only: no reservation was made, extended or released.
    assert_eq!(all_reservations(&h), before);
    assert!(list_of(&h, "b", false).is_empty());

    // Bad input.
    h.get("/v1/reservations/check?path=a")
        .expect_err(400, "agent_id query parameter is required");
    h.get("/v1/reservations/check?agent_id=b")
        .expect_err(400, "path query parameter is required");
    h.get("/v1/reservations/check?agent_id=b&path=..%2Fx")
        .expect_err(
            400,
            "invalid path pattern \"../x\": `..` climbs out of the project",
        );
}

#[test]
fn check_ignores_other_agents_shared_reservations() {
    let h = TestHub::start();
    granted(&h, "a", &["docs/**"], json!({"mode": "shared"}));
    let r = check(&h, "b", &["docs/a.md"]);
    assert_eq!(
        r,
        json!({"allowed": true, "conflicts": []}),
        "/v1/reservations/check counted another agent's shared reservation as a conflict; \
         only other agents' exclusive reservations and locks may count"
    );
    // Another agent's exclusive one does count.
    granted(&h, "c", &["notes/**"], json!({}));
    assert_eq!(check(&h, "b", &["notes/a.md"])["allowed"], false);
}

#[test]
fn check_takes_its_paths_literally() {
    let h = TestHub::start();
    // As a reservation, `[id]` is a class: the files `i.tsx` and `d.tsx`.
    granted(&h, "a", &["web/[id].tsx"], json!({}));
    assert_eq!(check(&h, "b", &["web/i.tsx"])["allowed"], false);
    assert_eq!(
        check(&h, "b", &["web/[id].tsx"])["allowed"],
        true,
        "a checked path is a file name, not a pattern"
    );
    // The literal file `[slug].tsx` is reserved with `[[]`.
    granted(&h, "a", &["pages/[[]slug].tsx"], json!({}));
    let r = check(&h, "b", &["pages/[slug].tsx", "pages/s.tsx"]);
    assert_eq!(r["allowed"], false);
    assert_eq!(r["conflicts"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["conflicts"][0]["requested"], "pages/[slug].tsx");
    // `*` in a checked path is a character, not a wildcard.
    granted(&h, "a", &["lit/a.rs"], json!({}));
    assert_eq!(check(&h, "b", &["lit/*"])["allowed"], true);
    assert_eq!(check(&h, "b", &["lit/a.rs"])["allowed"], false);
    let many: String = (0..65).map(|i| format!("&path=f{i}")).collect();
    h.get(&format!("/v1/reservations/check?agent_id=b{many}"))
        .expect_err(400, "at most 64 paths per check");
}

#[test]
fn renew_and_release_are_for_the_holder_only() {
    let h = TestHub::start();
    let held = granted(&h, "a", &["src/**"], json!({"ttl_sec": 60}));
    let id = id_of(&held);
    let missing = "reservation not found, not active or not held by agent_id";
    let renew = |agent: &str, ttl: i64| {
        h.post(
            &format!("/v1/reservations/{id}/renew"),
            json!({"agent_id": agent, "ttl_sec": ttl}),
        )
    };
    renew("b", 600).expect_err(404, missing);
    release(&h, &id, "b").expect_err(404, missing);
    assert_eq!(list_of(&h, "a", true).len(), 1, "another agent changed it");
    renew("a", 4).expect_err(400, "ttl_sec must be at least 5");

    let r = renew("a", 7200);
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.result()["expires_at"].as_str() > held["expires_at"].as_str(),
        "{r}"
    );
    assert_eq!(r.result()["reservation_id"], held["reservation_id"]);
    // Renewal may also shorten it.
    let r = renew("a", 30);
    assert!(
        r.result()["expires_at"].as_str() < held["expires_at"].as_str(),
        "{r}"
    );

    assert_eq!(reserve(&h, "b", &["src/x.rs"], json!({})).status, 409);
    let r = release(&h, &id, "a");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.result()["active"], false);
    assert_eq!(r.result()["release_reason"], "released by its holder");
    assert!(r.result()["released_at"].is_string());
    // Released: free for others, and not renewable or releasable again.
    granted(&h, "b", &["src/x.rs"], json!({}));
    release(&h, &id, "a").expect_err(404, missing);
    renew("a", 60).expect_err(404, missing);
    release(&h, "res-nope", "a").expect_err(404, missing);
    // The holder's release posts no notice: nothing lapsed.
    let (notices, dms) = announcements(&h, &id);
    assert!(notices.is_empty() && dms.is_empty(), "{notices:?} {dms:?}");
}

/// Checks one lapse: released for `why`, one notice in `channel` and
/// one DM to `holder`, with the documented texts.
#[track_caller]
fn announced_once(h: &TestHub, id: &str, holder: &str, paths: &str, why: &str, channel: &str) {
    let (notices, dms) = announcements(h, id);
    assert_eq!(notices.len(), 1, "notices for {id}: {notices:?}");
    assert_eq!(dms.len(), 1, "DMs for {id}: {dms:?}");
    let n = &notices[0];
    assert_eq!(
        (n.from_agent.as_str(), n.kind.as_str()),
        ("system", "notice")
    );
    assert_eq!(n.channel, channel);
    assert_eq!(
        n.body,
        format!("Released {holder}'s reservation of {paths} ({why}). The paths are free.")
    );
    assert_eq!(n.metadata["agent_id"], holder);
    assert_eq!(n.metadata["release_reason"], why);
    let d = &dms[0];
    assert_eq!(d.from_agent, "system");
    assert_eq!(d.to_agent.as_deref(), Some(holder));
    assert!(d.body.contains(id) && d.body.contains(why), "{d:?}");
}

/// Many writes, each running the expiry routine again.
fn churn(h: &TestHub, n: usize) {
    for i in 0..n {
        h.say("churn", "general", &format!("churn {i}"));
    }
}

#[test]
fn an_expired_session_loses_its_reservations_announced_once() {
    let h = TestHub::start_with(|cfg| cfg.presence_ttl_sec = 5);
    h.register("gone");
    h.register("other");
    let r = granted(&h, "gone", &["src/**", "docs/a.md"], json!({}));
    let id = id_of(&r);
    let other = granted(&h, "nosession", &["lib/**"], json!({}));
    let why = "its holder's session expired";
    let row = eventually(
        Duration::from_secs(30),
        "the session's reservation to go",
        || {
            list_of(&h, "gone", false)
                .into_iter()
                .find(|r| r["active"] == false)
        },
    );
    assert_eq!(row["release_reason"], why);
    assert_eq!(released_sql(&h, &id).1.as_deref(), Some(why));
    churn(&h, 5);
    announced_once(&h, &id, "gone", "src/**, docs/a.md", why, "general");
    // An agent that never had a session keeps its lease until it lapses.
    assert_eq!(list_of(&h, "nosession", true).len(), 1);
    assert_eq!(
        list_of(&h, "nosession", true)[0]["reservation_id"],
        other["reservation_id"]
    );
    // The paths are free.
    granted(&h, "other", &["src/a.rs"], json!({}));
}

#[test]
fn two_hubs_on_one_file_announce_an_expiry_once() {
    let h = TestHub::start_with(|cfg| cfg.presence_ttl_sec = 5);
    let sib = h.sibling(|cfg| cfg.presence_ttl_sec = 5);
    let sib_url = sib.url();
    let mut ids = Vec::new();
    for i in 0..4 {
        let agent = format!("s{i}");
        h.register(&agent);
        // Reserve through either hub.
        let body = json!({"agent_id": agent, "paths": [format!("m{i}/**")]}).to_string();
        let r = if i % 2 == 0 {
            reserve(&h, &agent, &[&format!("m{i}/**")], json!({}))
                .result()
                .clone()
        } else {
            let r = http_request(
                &sib_url,
                "POST",
                "/v1/reservations",
                Some(body.as_bytes()),
                &[],
                Duration::from_secs(30),
            )
            .unwrap();
            assert_eq!(r.status, 201);
            r.json()["result"].clone()
        };
        ids.push((agent, id_of(&r)));
    }
    eventually(Duration::from_secs(30), "every reservation to go", || {
        ids.iter()
            .all(|(_, id)| released_sql(&h, id).0.is_some())
            .then_some(())
    });
    // Both hubs write a while longer (each write runs the expiry routine).
    for i in 0..5 {
        h.say("churn", "general", &format!("a {i}"));
        let body = json!({"from_agent": "churn", "body": format!("b {i}")}).to_string();
        let r = http_request(
            &sib_url,
            "POST",
            "/v1/messages",
            Some(body.as_bytes()),
            &[],
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(r.status, 201);
    }
    for (i, (agent, id)) in ids.iter().enumerate() {
        announced_once(
            &h,
            id,
            agent,
            &format!("m{i}/**"),
            "its holder's session expired",
            "general",
        );
    }
    sib.shutdown();
}

#[test]
fn a_reservation_lapses_on_its_own_by_the_expiry_timer() {
    // The default presence TTL (120 s): the session timer alone would not
    // come round in time, so only the reservation's own expiry counts.
    let h = TestHub::start();
    h.register("brief");
    let r = granted(&h, "brief", &["tmp/**"], json!({"ttl_sec": 5}));
    let id = id_of(&r);
    let t0 = Instant::now();
    // Watched through the database only: no request reaches the hub.
    let done = {
        let mut found = None;
        for _ in 0..1000 {
            if released_sql(&h, &id).0.is_some() {
                found = Some(t0.elapsed());
                break;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        found
    };
    assert!(
        done.is_some(),
        "BUG (src/server/mod.rs expiry_loop / src/store/reservations.rs reserve): a reservation \
         with ttl_sec 5 was still unreleased 20 s later with no other traffic; the expiry timer \
         sleeps up to presence_ttl_sec (120 s) and is not re-armed when a reservation with an \
         earlier expiry is made, so the lease lapses silently until some write happens"
    );
    announced_once(&h, &id, "brief", "tmp/**", "expired", "general");
    assert_eq!(list_of(&h, "brief", false)[0]["active"], false);
}

#[test]
fn a_reservation_lapses_with_a_notice_once_when_writes_run_the_expiry() {
    // Whatever the timer does, the next write past the expiry releases it.
    let h = TestHub::start();
    let r = granted(&h, "w", &["tmp/**"], json!({"ttl_sec": 5}));
    let id = id_of(&r);
    eventually(Duration::from_secs(20), "the lease to lapse", || {
        h.say("churn", "general", "tick");
        released_sql(&h, &id).0.map(|_| ())
    });
    churn(&h, 3);
    announced_once(&h, &id, "w", "tmp/**", "expired", "general");
}

#[test]
fn reservations_tied_to_a_claim_or_a_task_are_released_with_it() {
    let h = TestHub::start();
    // A claim.
    let c = h.post(
        "/v1/claims",
        json!({"owner_agent_id": "a", "claim_key": "job-1"}),
    );
    assert_eq!(c.status, 201, "{c}");
    let by_claim = granted(&h, "a", &["app/**"], json!({"claim_key": "job-1"}));
    let other_claim = granted(&h, "a", &["lib/**"], json!({"claim_key": "job-2"}));
    assert_eq!(by_claim["claim_key"], "job-1");
    let r = h.post(
        "/v1/claims/release",
        json!({"agent_id": "a", "claim_key": "job-1"}),
    );
    assert_eq!(r.status, 200, "{r}");
    let active: Vec<Value> = list_of(&h, "a", true);
    assert_eq!(
        active.iter().map(id_of).collect::<Vec<_>>(),
        [id_of(&other_claim)],
        "only the reservation tied to the released claim goes"
    );
    let row = list_of(&h, "a", false)
        .into_iter()
        .find(|r| r["reservation_id"] == by_claim["reservation_id"])
        .unwrap();
    assert_eq!(row["release_reason"], "its claim was released");
    granted(&h, "b", &["app/x.rs"], json!({}));

    // A task, in its own channel.
    let ch = h.post("/v1/channels", json!({"name": "work"}));
    assert!(ch.status == 201 || ch.status == 200, "{ch}");
    let task = |body: &str| {
        let r = h.post(
            "/v1/messages",
            json!({"from_agent": "boss", "channel": "work", "kind": "task", "body": body}),
        );
        assert_eq!(r.status, 201, "{r}");
        r.result()["id"].as_i64().unwrap()
    };
    let (t1, t2) = (task("one"), task("two"));
    let by_task = granted(&h, "c", &["web/**"], json!({"task_id": t1}));
    let other_task = granted(&h, "c", &["api/**"], json!({"task_id": t2}));
    assert_eq!(
        (&by_task["task_id"], &by_task["channel"]),
        (&json!(t1), &json!("work"))
    );
    let r = h.post(&format!("/v1/tasks/{t1}/complete"), json!({}));
    assert_eq!(r.status, 200, "{r}");
    let active: Vec<String> = list_of(&h, "c", true).iter().map(id_of).collect();
    assert_eq!(active, [id_of(&other_task)]);
    let row = list_of(&h, "c", false)
        .into_iter()
        .find(|r| r["reservation_id"] == by_task["reservation_id"])
        .unwrap();
    assert_eq!(row["release_reason"], "its task completed");
    // Neither was announced: nothing lapsed.
    for id in [id_of(&by_claim), id_of(&by_task)] {
        let (notices, dms) = announcements(&h, &id);
        assert!(
            notices.is_empty() && dms.is_empty(),
            "{id}: {notices:?} {dms:?}"
        );
    }
    granted(&h, "d", &["web/x.rs"], json!({}));
}

#[test]
fn a_lapsed_reservation_tied_to_a_task_is_announced_in_the_task_channel() {
    let h = TestHub::start();
    assert!(h.post("/v1/channels", json!({"name": "work"})).status < 300);
    let t = h.post(
        "/v1/messages",
        json!({"from_agent": "boss", "channel": "work", "kind": "task", "body": "t"}),
    );
    let t = t.result()["id"].as_i64().unwrap();
    let r = granted(&h, "z", &["q/**"], json!({"task_id": t, "ttl_sec": 5}));
    let id = id_of(&r);
    eventually(Duration::from_secs(20), "the lease to lapse", || {
        h.say("churn", "general", "tick");
        released_sql(&h, &id).0.map(|_| ())
    });
    announced_once(&h, &id, "z", "q/**", "expired", "work");
}

// ----- the CLI --------------------------------------------------------

/// Runs the real `arc` with `args`, bounded; kills it (by its handle) if
/// it overruns.
pub(crate) fn arc(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arc"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn arc");
    let start = Instant::now();
    for _ in 0..3000 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("arc {args:?} did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "$ arc {}\n[rc={:?}]\n{}{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn cli_reserve_conflict_and_release() {
    let h = TestHub::start();
    let url = h.url.clone();
    let out = arc(&[
        "reserve",
        "--agent",
        "A",
        "--base-url",
        &url,
        "src/**",
        "--reason",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let row: Value = serde_json::from_str(&stdout(&out)).expect("the reservation JSON");
    assert_eq!(
        (
            &row["agent_id"],
            &row["paths"],
            &row["reason"],
            &row["mode"],
            &row["active"]
        ),
        (
            &json!("A"),
            &json!(["src/**"]),
            &json!("x"),
            &json!("exclusive"),
            &json!(true)
        ),
    );
    let id = id_of(&row);
    assert_eq!(
        list_of(&h, "A", true)[0]["reservation_id"],
        row["reservation_id"]
    );

    let out = arc(&[
        "reserve",
        "--agent",
        "B",
        "--base-url",
        &url,
        "src/a.rs",
        "--shared",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let c: Value = serde_json::from_str(lines[0]).expect("a conflict line");
    assert_eq!(
        (&c["agent_id"], &c["pattern"], &c["reservation_id"]),
        (&json!("A"), &json!("src/**"), &json!(id))
    );
    assert_eq!(
        lines[1],
        "arc error: reservation conflicts with src/** held by A (exclusive)"
    );
    assert!(list_of(&h, "B", false).is_empty());

    // Release: by someone else refused, by the holder done.
    let out = arc(&[
        "release-reservation",
        "--agent",
        "B",
        "--base-url",
        &url,
        &id,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).trim(),
        "arc error: reservation not found, not active or not held by agent_id"
    );
    let out = arc(&[
        "release-reservation",
        "--agent",
        "A",
        "--base-url",
        &url,
        &id,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let row: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (&row["active"], &row["release_reason"]),
        (&json!(false), &json!("released by its holder"))
    );
    let out = arc(&[
        "reserve",
        "--agent",
        "B",
        "--base-url",
        &url,
        "src/a.rs",
        "--ttl",
        "30",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // A bad pattern: the hub's 400 text.
    let out = arc(&["reserve", "--agent", "B", "--base-url", &url, "../x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).trim(),
        "arc error: invalid path pattern \"../x\": `..` climbs out of the project"
    );
}
