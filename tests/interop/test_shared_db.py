"""Our hub and the reference Python hub on the same SQLite file.

Shared-file multi-hub mode (docs/PROTOCOL.md, "Schema"): two hub processes on
different ports open one database; each agent talks to its own hub and sees
the other's writes. This needs the same schema, timestamp format and row
semantics.
"""

import re
import sqlite3
import threading
import time

from arc import ArcClient, ArcError

try:
    from . import support
except ImportError:  # run with `-s tests/interop` (no parent package)
    import support

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def normalise_sql(sql):
    """DDL text with insignificant whitespace removed.

    The reference writes its CREATE statements on long lines with no space
    after commas; ours puts one column per line. SQLite stores the text as
    written, so only whitespace next to punctuation and runs of whitespace
    are normalised; names, types, constraints and defaults must be equal.
    """
    if sql is None:
        return None
    sql = re.sub(r"\s+", " ", sql.strip())
    return re.sub(r"\s*([(),])\s*", r"\1", sql)


def schema_of(path):
    """Everything about a database's schema that a hub could depend on."""
    con = sqlite3.connect(str(path))
    try:
        # Our extension tables (prefix arc_, docs/PROTOCOL.md "Extension
        # tables") are additive: the reference's schema is compared without them.
        master = sorted(
            (row[0], row[1], row[2], normalise_sql(row[3]))
            for row in con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
            if not row[2].startswith("arc_")
        )
        tables = [r[1] for r in master if r[0] == "table"]
        details = {}
        for t in tables:
            details[t] = {
                "columns": con.execute(f"PRAGMA table_info('{t}')").fetchall(),
                "foreign_keys": con.execute(f"PRAGMA foreign_key_list('{t}')").fetchall(),
                "indexes": sorted(
                    (ix[1], ix[2], tuple(c[2] for c in con.execute(f"PRAGMA index_info('{ix[1]}')")))
                    for ix in con.execute(f"PRAGMA index_list('{t}')")
                ),
            }
        user_version = con.execute("PRAGMA user_version").fetchone()[0]
        journal_mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        channels = con.execute(
            "SELECT name, created_by, metadata_json FROM channels ORDER BY name").fetchall()
        return {"master": master, "details": details, "user_version": user_version,
                "journal_mode": journal_mode, "channels": channels}
    finally:
        con.close()


class TestSchema(support.InteropTestCase):
    def test_schema_created_by_our_hub_equals_reference(self):
        ours_db = self.tmp / "ours" / "arc.sqlite3"
        ref_db = self.tmp / "ref" / "arc.sqlite3"
        ours = self.start_hub("ours", storage=ours_db, spool_dir=self.tmp / "s1")
        ref = self.start_hub("ref", storage=ref_db, spool_dir=self.tmp / "s2")
        ours.stop()
        ref.stop()
        a, b = schema_of(ours_db), schema_of(ref_db)
        self.assertEqual(a["master"], b["master"])
        self.assertEqual(a["details"], b["details"])
        self.assertEqual(a["user_version"], 0)
        self.assertEqual(a["journal_mode"], "wal")
        self.assertEqual(a["journal_mode"], b["journal_mode"])
        self.assertEqual(a["channels"], b["channels"])
        self.assertEqual(a["channels"], [("direct", "system", "{}"), ("general", "system", "{}")])
        # Sanity: the comparison really covers the tables and indexes.
        names = {m[1] for m in a["master"]}
        for name in ("channels", "messages", "sessions", "claims", "locks", "tasks",
                     "sqlite_sequence", "ix_m_ch", "ix_m_to", "ix_m_th", "ix_s_ag", "ix_s_ac",
                     "ix_c_th", "ix_l_ag", "ix_t_par", "ix_t_st"):
            self.assertIn(name, names)

    def test_our_hub_opens_reference_schema_without_changes(self):
        db = self.tmp / "arc.sqlite3"
        ref = self.start_hub("ref", storage=db)
        ref.stop()
        before = schema_of(db)
        ours = self.start_hub("ours", storage=db)
        ours.result("POST", "/v1/messages", {"from_agent": "x", "body": "hi"})
        ours.stop()
        self.assertEqual(schema_of(db)["master"], before["master"])


class SharedTestCase(support.InteropTestCase):
    def setUp(self):
        super().setUp()
        self.db = self.tmp / "shared.sqlite3"
        self.ours = self.start_hub("ours", storage=self.db, spool_dir=self.tmp / "relay-ours")
        self.ref = self.start_hub("ref", storage=self.db, spool_dir=self.tmp / "relay-ref")

    def client(self, agent_id, hub):
        c = ArcClient.quickstart(agent_id, base_url=hub.base_url, timeout=10.0)
        self.addCleanup(c.close)
        return c


class TestSharedFile(SharedTestCase):
    def test_both_hubs_report_same_instance(self):
        self.assertEqual(self.ours.info["storage_path"], self.ref.info["storage_path"])
        self.assertEqual(self.ours.info["instance_id"], self.ref.info["instance_id"])

    def test_message_posted_on_ours_is_seen_via_reference(self):
        a = self.client("on-ours", self.ours)
        b = self.client("on-ref", self.ref)
        msg = a.post("general", "from the rust hub", thread_id="x-hub")
        got = support.wait_until(lambda: b.poll(timeout=1), timeout=10)
        self.assertEqual([m["id"] for m in got or []], [msg["id"]])
        self.assertEqual(got[0]["body"], "from the rust hub")
        self.assertEqual(got[0]["ts"], msg["ts"])

    def test_message_posted_on_reference_is_seen_via_ours(self):
        a = self.client("on-ref", self.ref)
        b = self.client("on-ours", self.ours)
        msg = a.post("general", "from the python hub", metadata={"k": [1, 2]},
                     attachments=[{"type": "json", "content": {"a": 1}}])
        got = support.wait_until(lambda: b.poll(timeout=1), timeout=10)
        self.assertEqual(got, [msg])

    def test_our_long_poll_wakes_on_write_by_other_process(self):
        writer = self.client("on-ref", self.ref)
        reader = self.client("on-ours", self.ours)
        out = {}

        def wait():
            t0 = time.monotonic()
            try:
                out["msgs"] = reader.poll(timeout=15)
            except Exception as exc:  # noqa: BLE001
                out["error"] = exc
            out["elapsed"] = time.monotonic() - t0

        th = threading.Thread(target=wait, daemon=True)
        th.start()
        time.sleep(0.7)
        writer.post("general", "written by python")
        th.join(20)
        self.assertFalse(th.is_alive())
        self.assertNotIn("error", out)
        self.assertEqual([m["body"] for m in out["msgs"]], ["written by python"])
        # The reference itself rescans every 0.25 s; allow a generous bound.
        self.assertLess(out["elapsed"], 6.0)

    def test_concurrent_writers_on_both_hubs_lose_nothing(self):
        """Readers long-polling either hub see every message, in id order,
        while both hubs insert into the same file at the same time."""
        n = 25
        writers = [self.client(f"w{i}-{name}", hub) for i in range(2)
                   for name, hub in (("ours", self.ours), ("ref", self.ref))]
        readers = {"ours": self.client("r-ours", self.ours), "ref": self.client("r-ref", self.ref)}
        seen = {name: [] for name in readers}
        errors = []
        done = threading.Event()

        def write(c):
            try:
                for i in range(n):
                    c.post("general", f"{c.agent_id} {i}")
                    if i % 8 == 0:
                        c.dm("r-ours", f"dm {c.agent_id} {i}")
            except Exception as exc:  # noqa: BLE001
                errors.append(("write", c.agent_id, exc))

        def read(name, c):
            deadline = time.monotonic() + 40
            try:
                while time.monotonic() < deadline:
                    batch = c.poll(timeout=1)
                    seen[name].extend(m["id"] for m in batch)
                    if done.is_set() and not batch:
                        return
            except Exception as exc:  # noqa: BLE001
                errors.append(("read", name, exc))

        rthreads = [threading.Thread(target=read, args=(k, v), daemon=True)
                    for k, v in readers.items()]
        wthreads = [threading.Thread(target=write, args=(c,), daemon=True) for c in writers]
        for t in rthreads + wthreads:
            t.start()
        for t in wthreads:
            t.join(60)
        done.set()
        for t in rthreads:
            t.join(45)
        self.assertEqual(errors, [])
        all_msgs = self.ours.result("GET", "/v1/messages?channel=general&limit=500")
        public = [m["id"] for m in all_msgs]
        self.assertEqual(len(public), len(writers) * n)
        self.assertEqual(public, sorted(public))
        dms = [m["id"] for m in self.ref.result("GET", "/v1/inbox/r-ours?limit=500")]
        self.assertEqual(len(dms), len(writers) * len(range(0, n, 8)))
        # Each reader got each visible message exactly once, in id order.
        self.assertEqual(seen["ref"], public)
        self.assertEqual(seen["ours"], sorted(public + dms))

    def test_dm_across_hubs(self):
        a = self.client("on-ours", self.ours)
        b = self.client("on-ref", self.ref)
        dm = a.dm("on-ref", "psst")
        inbox = b._call("GET", "/v1/inbox/on-ref?since_id=0")["result"]
        self.assertEqual([m["id"] for m in inbox], [dm["id"]])
        reply = b.dm("on-ours", "back")
        inbox = a._call("GET", "/v1/inbox/on-ours?since_id=0")["result"]
        self.assertEqual([m["id"] for m in inbox], [reply["id"]])

    def test_sessions_channels_claims_locks_are_shared(self):
        py = self.client("py-agent", self.ref)
        rs = self.client("rs-agent", self.ours)
        agents_ours = [s["agent_id"] for s in self.ours.result("GET", "/v1/agents")]
        agents_ref = [s["agent_id"] for s in self.ref.result("GET", "/v1/agents")]
        self.assertEqual(agents_ours, ["py-agent", "rs-agent"])
        self.assertEqual(agents_ref, agents_ours)
        # One active session per agent, across both hubs.
        with self.assertRaises(ArcError) as cm:
            ArcClient("py-agent", base_url=self.ours.base_url).register(replace=False)
        self.assertEqual(cm.exception.error, "agent_id already has an active session")

        py.create_channel("shared-room")
        self.assertIn("shared-room", [c["name"] for c in rs._call("GET", "/v1/channels")["result"]])
        rs.post("shared-room", "rust can post here")

        self.assertEqual(py.claim("k1", ttl_sec=60)["owner_agent_id"], "py-agent")
        self.assertEqual(rs.claim("k1", ttl_sec=60)["owner_agent_id"], "py-agent")  # denied
        self.assertEqual(rs.claim("k2", ttl_sec=60)["owner_agent_id"], "rs-agent")
        self.assertEqual(py.claim("k2", ttl_sec=60)["owner_agent_id"], "rs-agent")  # denied
        rs.release("k2")
        self.assertEqual(py.claim("k2", ttl_sec=60)["owner_agent_id"], "py-agent")

        self.assertEqual(rs.lock("a.txt")["agent_id"], "rs-agent")
        self.assertEqual(py.lock("a.txt")["agent_id"], "rs-agent")  # denied
        rs.unlock("a.txt")
        self.assertEqual(py.lock("a.txt")["agent_id"], "py-agent")

        active_ref = sorted(c["claim_key"] for c in
                            self.ref.result("GET", "/v1/claims?active_only=true"))
        active_ours = sorted(c["claim_key"] for c in
                             self.ours.result("GET", "/v1/claims?active_only=true"))
        self.assertEqual(active_ref, ["k1", "k2"])
        self.assertEqual(active_ours, active_ref)

    def test_tasks_rpc_across_hubs(self):
        py = self.client("py-agent", self.ref)
        rs = self.client("rs-agent", self.ours)
        req = py.dm("rs-agent", "please", kind="task_request")
        got = support.wait_until(lambda: rs.poll(timeout=1), timeout=10)
        self.assertEqual([m["id"] for m in got or []], [req["id"]])
        res = rs.dm("py-agent", "done", kind="task_result", reply_to=req["id"])
        self.assertEqual(res["metadata"].get("task_completed"), req["id"])
        tasks = self.ref.result("GET", "/v1/tasks")
        self.assertEqual([(t["task_id"], t["status"]) for t in tasks], [(req["id"], "done")])
        # Subtask rollup on our hub for tasks created through the reference.
        parent = py.post("general", "parent", kind="task")
        child = py.post("general", "child", kind="task", parent_task_id=parent["id"])
        status, body, _ = self.ours.post(f"/v1/tasks/{child['id']}/complete", {})
        self.assertEqual(status, 200)
        self.assertIs(body.get("parent_completed"), True)
        parent_row = [t for t in self.ref.result("GET", "/v1/tasks") if t["task_id"] == parent["id"]]
        self.assertEqual(parent_row[0]["status"], "done")

    def test_rows_written_by_our_hub_use_reference_formats(self):
        rs = self.client("rs-agent", self.ours)
        rs.post("general", "x", metadata={"a": 1})
        rs.claim("k", ttl_sec=60)
        rs.lock("f", ttl_sec=60)
        rs.post("general", "t", kind="task")
        con = sqlite3.connect(str(self.db))
        self.addCleanup(con.close)
        stamps = []
        stamps += con.execute("SELECT ts FROM messages").fetchall()
        stamps += con.execute("SELECT created_at, last_seen FROM sessions").fetchall()
        stamps += con.execute("SELECT claimed_at, expires_at FROM claims").fetchall()
        stamps += con.execute("SELECT locked_at, expires_at FROM locks").fetchall()
        stamps += con.execute("SELECT created_at FROM tasks").fetchall()
        flat = [v for row in stamps for v in row]
        self.assertGreaterEqual(len(flat), 8)
        for v in flat:
            self.assertRegex(v, ISO_Z)
        active = con.execute("SELECT DISTINCT active FROM sessions").fetchall()
        self.assertEqual(active, [(1,)])
        # The reference reads what we wrote.
        thread_rows = self.ref.result("GET", "/v1/claims")
        self.assertEqual(thread_rows[0]["owner_agent_id"], "rs-agent")
        self.assertEqual(self.ref.result("GET", "/v1/locks")[0]["agent_id"], "rs-agent")


class TestOpenReferenceDatabase(support.InteropTestCase):
    def test_our_hub_serves_a_database_created_by_the_reference(self):
        db = self.tmp / "arc.sqlite3"
        ref = self.start_hub("ref", storage=db, spool_dir=self.tmp / "relay-ref")
        ref_info = ref.info
        py = ArcClient.quickstart("py-agent", base_url=ref.base_url)
        py.create_channel("legacy")
        m1 = py.post("legacy", "old message", thread_id="old-thread")
        m2 = py.dm("someone", "old dm")
        task = py.post("general", "old task", kind="task", thread_id="old-thread")
        py.claim("old-claim", thread_id="old-thread", ttl_sec=600)
        py.lock("old/file.txt", ttl_sec=600)
        ref.stop()

        ours = self.start_hub("ours", storage=db, spool_dir=self.tmp / "relay-ours")
        # Same path, same birth time -> same instance id (docs/PROTOCOL.md, "Schema").
        self.assertEqual(ours.info["instance_id"], ref_info["instance_id"])
        self.assertEqual(ours.info["storage_path"], ref_info["storage_path"])
        # The reference's session survives our start-up (no global reset).
        agents = [s["agent_id"] for s in ours.result("GET", "/v1/agents")]
        self.assertEqual(agents, ["py-agent"])
        self.assertIn("legacy", [c["name"] for c in ours.result("GET", "/v1/channels")])
        feed = ours.result("GET", "/v1/messages?channel=legacy")
        self.assertEqual(feed, [m1])
        self.assertEqual(ours.result("GET", "/v1/inbox/someone"), [m2])
        detail = ours.result("GET", "/v1/threads/old-thread")
        self.assertEqual([m["id"] for m in detail["messages"]], [m1["id"], task["id"]])
        self.assertEqual([t["task_id"] for t in detail["tasks"]], [task["id"]])
        self.assertEqual([c["claim_key"] for c in detail["claims"]], ["old-claim"])
        self.assertEqual([l["file_path"] for l in
                          ours.result("GET", "/v1/locks?active_only=true")], ["old/file.txt"])
        # New ids continue after the reference's (AUTOINCREMENT sequence shared).
        rs = ArcClient("rs-agent", base_url=ours.base_url)
        rs.register()
        self.addCleanup(rs.close)
        m3 = rs.post("legacy", "new message")
        self.assertGreater(m3["id"], task["id"])
        # The claim is still held by the reference's agent.
        self.assertEqual(rs.claim("old-claim")["owner_agent_id"], "py-agent")
