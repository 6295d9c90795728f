//! A database in the reference's formats (docs/PROTOCOL.md, "Data model"): created with the
//! reference DDL and filled with rows the way the Python hub writes them,
//! then opened and served by our hub, which must leave the schema alone.

use serde_json::json;

use crate::support::{TempDir, TestHub, ids};

/// The reference schema as the Python hub creates it (docs/PROTOCOL.md, "Schema").
const REFERENCE_DDL: &str = "
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS channels(name TEXT PRIMARY KEY,created_at TEXT NOT NULL,created_by TEXT,metadata_json TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY AUTOINCREMENT,ts TEXT NOT NULL,from_agent TEXT NOT NULL,to_agent TEXT,channel TEXT NOT NULL,kind TEXT NOT NULL,body TEXT NOT NULL,attachments_json TEXT NOT NULL DEFAULT '[]',reply_to INTEGER,thread_id TEXT,metadata_json TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS ix_m_ch ON messages(channel,id);
CREATE INDEX IF NOT EXISTS ix_m_to ON messages(to_agent,id);
CREATE INDEX IF NOT EXISTS ix_m_th ON messages(thread_id,id);
CREATE TABLE IF NOT EXISTS sessions(session_id TEXT PRIMARY KEY,agent_id TEXT NOT NULL,display_name TEXT NOT NULL,capabilities_json TEXT NOT NULL DEFAULT '[]',metadata_json TEXT NOT NULL DEFAULT '{}',created_at TEXT NOT NULL,last_seen TEXT NOT NULL,active INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS ix_s_ag ON sessions(agent_id);
CREATE INDEX IF NOT EXISTS ix_s_ac ON sessions(active,last_seen);
CREATE TABLE IF NOT EXISTS claims(claim_key TEXT PRIMARY KEY,thread_id TEXT,task_message_id INTEGER,owner_agent_id TEXT NOT NULL,claimed_at TEXT NOT NULL,expires_at TEXT NOT NULL,released_at TEXT,metadata_json TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS ix_c_th ON claims(thread_id);
CREATE TABLE IF NOT EXISTS locks(file_path TEXT PRIMARY KEY,agent_id TEXT NOT NULL,locked_at TEXT NOT NULL,expires_at TEXT NOT NULL,released_at TEXT,metadata_json TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS ix_l_ag ON locks(agent_id);
CREATE TABLE IF NOT EXISTS tasks(task_id INTEGER PRIMARY KEY,parent_task_id INTEGER,channel TEXT NOT NULL,thread_id TEXT,status TEXT NOT NULL DEFAULT 'open',created_at TEXT NOT NULL,completed_at TEXT,FOREIGN KEY(parent_task_id) REFERENCES tasks(task_id));
CREATE INDEX IF NOT EXISTS ix_t_par ON tasks(parent_task_id);
CREATE INDEX IF NOT EXISTS ix_t_st ON tasks(status);
";

/// The schema of the reference's tables (our `arc_` extension tables,
/// their indexes included, are additive and left out).
fn schema(conn: &rusqlite::Connection) -> Vec<(String, String)> {
    let mut st = conn
        .prepare(
            "SELECT name, COALESCE(sql, '') FROM sqlite_master WHERE tbl_name NOT LIKE 'arc\\_%' ESCAPE '\\' ORDER BY name",
        )
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_reference_database_opens_serves_and_keeps_its_schema() {
    let dir = TempDir::new("compat");
    let db = dir.path().join("arc.sqlite3");
    let now = arc_hub::time::now();
    let soon = arc_hub::time::format(arc_hub::time::now_secs() + 600);
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(REFERENCE_DDL).unwrap();
        c.execute_batch(&format!(
            r#"
            INSERT INTO channels VALUES('general','2026-01-02T03:04:05Z','system','{{}}');
            INSERT INTO channels VALUES('direct','2026-01-02T03:04:05Z','system','{{}}');
            INSERT INTO channels VALUES('ops','2026-01-02T03:04:06Z','alice','{{"topic": "caf\u00e9"}}');
            INSERT INTO sessions VALUES('0f0e5c1e-8d6b-4f4a-9d53-9e2f3c1b2a10','alice','Alice','["py", "review"]','{{"tz": "UTC"}}','{now}','{now}',1);
            INSERT INTO messages VALUES(1,'2026-01-02T03:04:07Z','alice',NULL,'ops','task','ship it','[]',NULL,'th-1','{{}}');
            INSERT INTO messages VALUES(2,'2026-01-02T03:04:08Z','bob',NULL,'ops','artifact','done','[{{"type": "text", "content": "\u00e9t\u00e9"}}]',1,'th-1','{{"score": NaN}}');
            INSERT INTO messages VALUES(3,'2026-01-02T03:04:09Z','bob','alice','direct','chat','psst','',NULL,'','');
            INSERT INTO tasks VALUES(1,NULL,'ops','th-1','open','2026-01-02T03:04:07Z',NULL);
            INSERT INTO claims VALUES('task-1','th-1',1,'bob','{now}','{soon}',NULL,'{{}}');
            INSERT INTO locks VALUES('src/app.py','bob','{now}','{soon}',NULL,'{{"thread_id": "th-1"}}');
            "#
        ))
        .unwrap();
    }
    let before = schema(&rusqlite::Connection::open(&db).unwrap());

    let h = TestHub::start_with(|c| c.storage = db.clone());
    let msgs = h.get("/v1/messages?channel=ops").result().clone();
    assert_eq!(ids(&msgs), [1, 2]);
    assert_eq!(
        msgs[1]["attachments"],
        json!([{"type": "text", "content": "été"}])
    );
    assert_eq!(
        msgs[1]["metadata"],
        json!({"score": null}),
        "Python's NaN reads as null"
    );
    assert_eq!(msgs[1]["reply_to"], 1);
    let inbox = h.get("/v1/inbox/alice").result().clone();
    assert_eq!(
        inbox[0]["attachments"],
        json!([]),
        "empty JSON columns read as defaults"
    );
    assert_eq!(inbox[0]["metadata"], json!({}));
    let ch = h.get("/v1/channels").result().clone();
    assert_eq!(ch[2]["metadata"], json!({"topic": "café"}));
    let agents = h.get("/v1/agents").result().clone();
    assert_eq!(agents[0]["capabilities"], json!(["py", "review"]));
    let thread = h.get("/v1/threads/th-1").result().clone();
    assert_eq!(thread["thread"]["status"], "open");
    assert_eq!(thread["thread"]["active_lock_count"], 1);
    assert_eq!(thread["thread"]["active_claim_count"], 1);
    // The ids continue the reference's AUTOINCREMENT sequence.
    let next = h.say("carol", "general", "after");
    assert_eq!(next["id"], 4);
    // Same fingerprint formula: resolved path and general's birth time.
    let info = h.get("/v1/hub-info").result().clone();
    let path = std::fs::canonicalize(&db).unwrap();
    assert_eq!(
        info["instance_id"],
        arc_hub::ids::instance_id(&path.to_string_lossy(), Some("2026-01-02T03:04:05Z"))
    );
    drop(h);

    let c = rusqlite::Connection::open(&db).unwrap();
    assert_eq!(schema(&c), before, "schema text untouched");
    let extension: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'arc\\_%' ESCAPE '\\'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        extension >= 1,
        "our extension tables were added beside them"
    );
    let uv: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(uv, 0);
    let (ts, meta): (String, String) = c
        .query_row(
            "SELECT ts, metadata_json FROM messages WHERE id = 4",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(ts.len(), 20);
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
    assert_eq!(meta, "{}");
}

#[test]
fn a_fresh_database_has_exactly_the_reference_schema() {
    let ours = TestHub::start();
    let ref_dir = TempDir::new("refddl");
    let reference = rusqlite::Connection::open(ref_dir.path().join("ref.sqlite3")).unwrap();
    reference.execute_batch(REFERENCE_DDL).unwrap();
    let mine = ours.sql();
    let tables = [
        "channels", "messages", "sessions", "claims", "locks", "tasks",
    ];
    for t in tables {
        let info = |c: &rusqlite::Connection| -> Vec<(String, String, i64, Option<String>, i64)> {
            let mut st = c.prepare(&format!("PRAGMA table_info({t})")).unwrap();
            st.query_map([], |r| {
                Ok((r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        };
        assert_eq!(info(&mine), info(&reference), "columns of {t}");
        let idx = |c: &rusqlite::Connection| -> Vec<(String, Vec<String>)> {
            let mut st = c.prepare(&format!("PRAGMA index_list({t})")).unwrap();
            let mut names: Vec<String> = st
                .query_map([], |r| r.get(1))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            names.sort();
            names
                .into_iter()
                .map(|n| {
                    let mut st = c.prepare(&format!("PRAGMA index_info({n})")).unwrap();
                    let cols = st
                        .query_map([], |r| r.get(2))
                        .unwrap()
                        .map(Result::unwrap)
                        .collect();
                    (n, cols)
                })
                .collect()
        };
        assert_eq!(idx(&mine), idx(&reference), "indexes of {t}");
    }
    let fk = |c: &rusqlite::Connection| -> Vec<(String, String, String)> {
        let mut st = c.prepare("PRAGMA foreign_key_list(tasks)").unwrap();
        st.query_map([], |r| Ok((r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(fk(&mine), fk(&reference));
    let seq: i64 = mine
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'sqlite_sequence'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seq, 1, "AUTOINCREMENT creates sqlite_sequence");
    let mode: String = mine
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let seeded: Vec<(String, String)> = {
        let mut st = mine
            .prepare("SELECT name, created_by FROM channels ORDER BY name")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        seeded,
        [
            ("direct".to_string(), "system".to_string()),
            ("general".into(), "system".into())
        ]
    );
}

/// Found by the differential test against the reference hub: these are
/// places where our answers differed from Python's without a reason.
#[test]
fn numbers_round_trip_the_way_python_writes_them() {
    let h = TestHub::start();
    // Integers beyond 64 bits keep every digit (stored and echoed);
    // floats come back in Python's repr.
    let raw = br#"{"from_agent": "a", "body": 12345678901234567890123,
        "metadata": {"big": 1180591620717411303424, "neg": -1180591620717411303424,
                     "e": 1E5, "f": 1.50, "g": 1e22, "h": 0.00001}}"#;
    let r = h.call("POST", "/v1/messages", Some(raw.to_vec()));
    assert_eq!(r.status, 201, "{r}");
    let text = r.text();
    for want in [
        r#""body":"12345678901234567890123""#,
        r#""big":1180591620717411303424"#,
        r#""neg":-1180591620717411303424"#,
        r#""e":100000.0"#,
        r#""f":1.5"#,
        r#""g":1e+22"#,
        r#""h":1e-05"#,
    ] {
        assert!(text.contains(want), "{want} missing in {text}");
    }
    let stored: String = h
        .sql()
        .query_row(
            "SELECT metadata_json FROM messages WHERE from_agent = 'a'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(stored.contains("1180591620717411303424"), "{stored}");
    // Read back through the API, still exact.
    let back = h.get("/v1/messages?channel=general").text();
    assert!(back.contains(r#""big":1180591620717411303424"#), "{back}");
    // A float that overflows is malformed JSON, as before.
    let r = h.call(
        "POST",
        "/v1/messages",
        Some(br#"{"from_agent": "a", "body": "x", "metadata": {"x": 1e400}}"#.to_vec()),
    );
    r.expect_err(400, "malformed JSON");
}

#[test]
fn huge_limits_clamp_and_inbox_ignores_a_bad_timeout_like_the_reference() {
    let h = TestHub::start();
    h.say("a", "general", "one");
    let r = h.get("/v1/messages?channel=general&limit=99999999999999999999");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.result().as_array().unwrap().len(), 1);
    let r = h.get("/v1/events?agent_id=bob&limit=99999999999999999999");
    assert_eq!(r.status, 200, "{r}");
    h.get("/v1/messages?channel=general&limit=-99999999999999999999")
        .expect_err(400, "limit must be at least 1");
    h.get("/v1/messages?channel=general&limit=x")
        .expect_err(400, "limit must be an integer");
    let r = h.get("/v1/inbox/bob?timeout=x");
    assert_eq!(r.status, 200, "{r}");
    // Leading slashes collapse, as Python's http.server does.
    let r = h.get("//v1/channels");
    assert_eq!(r.status, 200, "{r}");
}

#[test]
fn capabilities_refuse_lists_and_objects_but_stringify_scalars() {
    let h = TestHub::start();
    h.post(
        "/v1/sessions",
        json!({"agent_id": "caps", "capabilities": [{"a": 1}, [1, 2]]}),
    )
    .expect_err(400, "capabilities must not contain lists or objects");
    let r = h.post(
        "/v1/sessions",
        json!({"agent_id": "caps", "capabilities": [1, null, true, "py"]}),
    );
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(
        r.result()["capabilities"],
        json!(["1", "None", "True", "py"])
    );
}
