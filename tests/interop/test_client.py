"""The reference Python ArcClient (unchanged) against our hub over HTTP.

Set ARC_INTEROP_CLIENT_HUB=ref to run the same tests against the reference
hub instead (a check that the expectations here are the reference's own).
"""

import json
import os
import re
import threading
import time
import urllib.parse

import arc  # the reference package, megastructure-arc 0.1.1
from arc import ArcClient, ArcError

try:
    from . import support
except ImportError:  # run with `-s tests/interop` (no parent package)
    import support

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class ClientTestCase(support.InteropTestCase):
    def setUp(self):
        super().setUp()
        self.hub = self.start_hub(os.environ.get("ARC_INTEROP_CLIENT_HUB", "ours"))
        self.url = self.hub.base_url

    def client(self, agent_id, **kw):
        c = ArcClient.quickstart(agent_id, base_url=self.url, timeout=10.0, **kw)
        self.addCleanup(c.close)
        return c


class TestSessions(ClientTestCase):
    def test_reference_package_is_the_expected_version(self):
        self.assertEqual(arc.__version__, "0.1.1")

    def test_quickstart_registers_and_bootstraps(self):
        a = self.client("alpha", display_name="Alpha", capabilities=["python", "review"])
        self.assertTrue(a.session_id)
        me = a.whoami()
        self.assertEqual(me["agent_id"], "alpha")
        self.assertEqual(me["default_channel"], "general")
        self.assertEqual(me["session"]["session_id"], a.session_id)
        self.assertEqual(me["session"]["display_name"], "Alpha")
        self.assertEqual(me["session"]["capabilities"], ["python", "review"])
        self.assertIs(me["session"]["active"], True)
        self.assertRegex(me["session"]["created_at"], ISO_Z)
        self.assertIn("alpha", [s["agent_id"] for s in me["live_agents"]])
        self.assertEqual(me["latest_visible_id"], 0)

    def test_bootstrap_advances_cursor_past_history(self):
        old = self.client("old")
        old.post("general", "history 1")
        old.post("general", "history 2")
        fresh = self.client("fresh")
        self.assertEqual(fresh.poll(timeout=0), [])
        old.post("general", "new one")
        got = fresh.poll(timeout=5)
        self.assertEqual([m["body"] for m in got], ["new one"])

    def test_register_conflict_without_replace(self):
        self.client("dup")
        other = ArcClient("dup", base_url=self.url, timeout=10.0)
        with self.assertRaises(ArcError) as cm:
            other.register(replace=False)
        self.assertEqual(cm.exception.error, "agent_id already has an active session")
        # replace=True takes over.
        sess = other.register(replace=True)
        self.addCleanup(other.close)
        self.assertEqual(sess["agent_id"], "dup")

    def test_close_deletes_session_and_is_idempotent(self):
        c = ArcClient.quickstart("closer", base_url=self.url)
        sid = c.session_id
        agents = [s["agent_id"] for s in self.hub.result("GET", "/v1/agents")]
        self.assertIn("closer", agents)
        c.close()
        self.assertIsNone(c.session_id)
        c.close()  # second close is a no-op
        agents = [s["agent_id"] for s in self.hub.result("GET", "/v1/agents")]
        self.assertNotIn("closer", agents)
        status, body, _ = support.http("DELETE", f"{self.url}/v1/sessions/{sid}")
        self.assertEqual((status, body), (404, {"ok": False, "error": "session not found"}))

    def test_context_manager_closes(self):
        with ArcClient("ctx", base_url=self.url) as c:
            c.register()
            self.assertIn("ctx", [s["agent_id"] for s in self.hub.result("GET", "/v1/agents")])
        self.assertNotIn("ctx", [s["agent_id"] for s in self.hub.result("GET", "/v1/agents")])

    def test_agents_capability_filter(self):
        self.client("py1", capabilities=["python"])
        self.client("rs1", capabilities=["rust", "review"])
        self.client("py2", capabilities=["python", "review"])
        c = self.client("asker")
        res = c._call("GET", "/v1/agents?capability=python")["result"]
        self.assertEqual([s["agent_id"] for s in res], ["py1", "py2"])
        res = c._call("GET", "/v1/agents?capability=review")["result"]
        self.assertEqual([s["agent_id"] for s in res], ["py2", "rs1"])
        res = c._call("GET", "/v1/agents")["result"]
        self.assertEqual([s["agent_id"] for s in res], ["asker", "py1", "py2", "rs1"])
        res = c._call("GET", "/v1/agents?capability=cobol")["result"]
        self.assertEqual(res, [])


class TestMessaging(ClientTestCase):
    def test_post_and_poll(self):
        a, b = self.client("a"), self.client("b")
        msg = a.post("general", "hello b", thread_id="t-1", metadata={"x": 1})
        self.assertEqual(msg["from_agent"], "a")
        self.assertEqual(msg["channel"], "general")
        self.assertEqual(msg["kind"], "chat")
        self.assertIsNone(msg["to_agent"])
        self.assertEqual(msg["thread_id"], "t-1")
        self.assertEqual(msg["metadata"], {"x": 1})
        self.assertEqual(msg["attachments"], [])
        self.assertRegex(msg["ts"], ISO_Z)
        got = b.poll(timeout=5)
        self.assertEqual([m["id"] for m in got], [msg["id"]])
        self.assertEqual(got[0]["body"], "hello b")
        # Cursor advanced: nothing new.
        self.assertEqual(b.poll(timeout=0), [])
        # exclude_self: a does not see its own post, but does with exclude_self=False.
        self.assertEqual(a.poll(timeout=0), [])
        a._since_id = 0
        self.assertEqual([m["id"] for m in a.poll(timeout=0, exclude_self=False)], [msg["id"]])

    def test_poll_channel_and_thread_filters(self):
        a, b = self.client("a"), self.client("b")
        a.create_channel("dev")
        a.post("general", "in general")
        m2 = a.post("dev", "in dev", thread_id="th")
        a.post("dev", "in dev, other thread", thread_id="other")
        got = b.poll(timeout=0, channel="dev", thread_id="th")
        self.assertEqual([m["id"] for m in got], [m2["id"]])

    def test_attachments_round_trip(self):
        a, b = self.client("a"), self.client("b")
        atts = [
            {"type": "text", "content": "plain"},
            {"type": "code", "content": "fn main() {}", "language": "rust"},
            {"type": "file_ref", "path": " src/lib.rs ", "start_line": "3", "end_line": 9,
             "junk": "dropped"},
        ]
        msg = a.post("general", "", attachments=atts)
        self.assertEqual(msg["attachments"], [
            {"type": "text", "content": "plain"},
            {"type": "code", "content": "fn main() {}", "language": "rust"},
            {"type": "file_ref", "path": "src/lib.rs", "start_line": 3, "end_line": 9},
        ])
        self.assertEqual(b.poll(timeout=5)[0]["attachments"], msg["attachments"])

    def test_long_poll_wakes_on_post(self):
        a, b = self.client("a"), self.client("b")
        out = {}

        def waiter():
            t0 = time.monotonic()
            try:
                out["msgs"] = b.poll(timeout=15)
            except Exception as exc:  # noqa: BLE001
                out["error"] = exc
            out["elapsed"] = time.monotonic() - t0

        th = threading.Thread(target=waiter, daemon=True)
        th.start()
        time.sleep(0.7)
        self.assertTrue(th.is_alive(), "poll returned before anything was posted")
        a.post("general", "wake up")
        th.join(timeout=20)
        self.assertFalse(th.is_alive())
        self.assertNotIn("error", out)
        self.assertEqual([m["body"] for m in out["msgs"]], ["wake up"])
        self.assertLess(out["elapsed"], 5.0)

    def test_long_poll_times_out_empty(self):
        b = self.client("b")
        t0 = time.monotonic()
        self.assertEqual(b.poll(timeout=1.5), [])
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, 1.0)
        self.assertLess(elapsed, 6.0)

    def test_dm_and_inbox(self):
        a, b, c = self.client("a"), self.client("b"), self.client("c")
        dm = a.dm("b", "secret", thread_id="dm-thread")
        self.assertEqual(dm["channel"], "direct")
        self.assertEqual(dm["to_agent"], "b")
        self.assertEqual([m["id"] for m in b.poll(timeout=5)], [dm["id"]])
        self.assertEqual(c.poll(timeout=0), [])
        inbox = b._call("GET", "/v1/inbox/b?since_id=0")["result"]
        self.assertEqual([m["id"] for m in inbox], [dm["id"]])
        # DMs never appear in the channel feed.
        feed = b._call("GET", "/v1/messages?channel=direct")["result"]
        self.assertEqual(feed, [])

    def test_channels(self):
        a = self.client("a")
        ch = a.create_channel("project-x", metadata={"topic": "x"})
        self.assertEqual(ch["name"], "project-x")
        self.assertEqual(ch["created_by"], "a")
        self.assertEqual(ch["metadata"], {"topic": "x"})
        again = a.create_channel("project-x", metadata={"topic": "changed"})
        self.assertEqual(again, ch)  # existing row returned unchanged
        names = [c["name"] for c in a._call("GET", "/v1/channels")["result"]]
        self.assertEqual(names, sorted(names))
        self.assertTrue({"general", "direct", "project-x"} <= set(names))
        msg = a.post("project-x", "hi x")
        self.assertEqual(msg["channel"], "project-x")

    def test_missing_channel_errors(self):
        a = self.client("a")
        with self.assertRaises(ArcError) as cm:
            a.post("nope", "hello")
        self.assertEqual(cm.exception.error, "channel does not exist: nope")
        with self.assertRaises(ArcError) as cm:
            a.poll(timeout=0, channel="nope")
        self.assertEqual(cm.exception.error, "channel not found")
        with self.assertRaises(ArcError) as cm:
            a._call("GET", "/v1/messages?channel=nope")
        self.assertEqual(cm.exception.error, "channel not found")

    def test_unsupported_kind(self):
        a = self.client("a")
        with self.assertRaises(ArcError) as cm:
            a.post("general", "x", kind="Bogus")
        self.assertEqual(cm.exception.error, "unsupported kind: bogus")

    def test_threads(self):
        a, b = self.client("a"), self.client("b")
        m1 = a.post("general", "first", thread_id="feature-1")
        m2 = b.post("general", "second", thread_id="feature-1", kind="artifact", reply_to=m1["id"])
        a.post("general", "elsewhere", thread_id="feature-2")
        thread = a.get_thread("feature-1")
        self.assertEqual([m["id"] for m in thread["messages"]], [m1["id"], m2["id"]])
        self.assertEqual(thread["thread"]["thread_id"], "feature-1")
        self.assertEqual(thread["thread"]["message_count"], 2)
        self.assertEqual(thread["thread"]["latest_artifact_id"], m2["id"])
        summaries = a._call("GET", "/v1/threads")["result"]
        self.assertEqual([s["thread_id"] for s in summaries], ["feature-2", "feature-1"])
        with self.assertRaises(ArcError) as cm:
            a.get_thread("no-such-thread")
        self.assertEqual(cm.exception.error, "thread not found")
        # thread feed via /v1/messages?thread_id=
        feed = a._call("GET", "/v1/messages?" + urllib.parse.urlencode({"thread_id": "feature-1"}))
        self.assertEqual([m["id"] for m in feed["result"]], [m1["id"], m2["id"]])


class TestCoordination(ClientTestCase):
    def test_claim_refresh_release(self):
        a, b = self.client("a"), self.client("b")
        got = a.claim("job-1", thread_id="th", ttl_sec=60, metadata={"why": "me"})
        self.assertEqual(got["owner_agent_id"], "a")
        self.assertEqual(got["thread_id"], "th")
        self.assertIsNone(got["released_at"])
        # A denial is not an exception: it returns the holder's row.
        denied = b.claim("job-1", ttl_sec=60)
        self.assertEqual(denied["owner_agent_id"], "a")
        self.assertEqual(denied["claimed_at"], got["claimed_at"])
        refreshed = a.refresh_claim("job-1", ttl_sec=600)
        self.assertEqual(refreshed["owner_agent_id"], "a")
        self.assertGreater(refreshed["expires_at"], got["expires_at"])
        with self.assertRaises(ArcError) as cm:
            b.refresh_claim("job-1")
        self.assertEqual(cm.exception.error, "claim not found or not owned by owner_agent_id")
        with self.assertRaises(ArcError) as cm:
            b.release("job-1")
        self.assertEqual(cm.exception.error, "claim not found or not owned by agent_id")
        released = a.release("job-1")
        self.assertRegex(released["released_at"], ISO_Z)
        active = a._call("GET", "/v1/claims?active_only=true")["result"]
        self.assertEqual(active, [])
        # Now b can take it over.
        taken = b.claim("job-1")
        self.assertEqual(taken["owner_agent_id"], "b")
        self.assertIsNone(taken["released_at"])
        self.assertIsNone(taken["thread_id"])

    def test_claim_by_task_message_id(self):
        a = self.client("a")
        task = a.post("general", "do it", kind="task")
        status, body, _ = self.hub.post("/v1/claims", {
            "owner_agent_id": "a", "task_message_id": task["id"]})
        self.assertEqual(status, 201)
        self.assertIs(body["acquired"], True)
        self.assertEqual(body["result"]["claim_key"], f"task-{task['id']}")
        status, body, _ = self.hub.post("/v1/claims", {"owner_agent_id": "b",
                                                        "claim_key": f"task-{task['id']}"})
        self.assertEqual(status, 200)
        self.assertIs(body["acquired"], False)

    def test_lock_unlock(self):
        a, b = self.client("a"), self.client("b")
        lk = a.lock("src/main.rs", ttl_sec=60, metadata={"thread_id": "lk-thread"})
        self.assertEqual(lk["agent_id"], "a")
        self.assertEqual(lk["file_path"], "src/main.rs")
        self.assertEqual(lk["metadata"], {"thread_id": "lk-thread"})
        held = b.lock("src/main.rs")
        self.assertEqual(held["agent_id"], "a")
        with self.assertRaises(ArcError) as cm:
            b.unlock("src/main.rs")
        self.assertEqual(cm.exception.error, "lock not found or not owned by agent_id")
        locks = a._call("GET", "/v1/locks?agent_id=a&active_only=1")["result"]
        self.assertEqual([l["file_path"] for l in locks], ["src/main.rs"])
        # Lock joins its thread through metadata.thread_id.
        detail = a.get_thread("lk-thread")
        self.assertEqual([l["file_path"] for l in detail["locks"]], ["src/main.rs"])
        un = a.unlock("src/main.rs")
        self.assertRegex(un["released_at"], ISO_Z)
        self.assertEqual(b.lock("src/main.rs")["agent_id"], "b")

    def test_tasks_subtasks_and_rollup(self):
        a = self.client("a")
        parent = a.post("general", "parent task", kind="task", thread_id="plan")
        s1 = a.post("general", "sub 1", kind="task", parent_task_id=parent["id"])
        s2 = a.post("general", "sub 2", kind="task", parent_task_id=parent["id"])
        tasks = a._call("GET", f"/v1/tasks?parent_id={parent['id']}")["result"]
        self.assertEqual([t["task_id"] for t in tasks], [s1["id"], s2["id"]])
        self.assertTrue(all(t["status"] == "open" for t in tasks))
        done = a.complete_task(s1["id"])
        self.assertEqual(done["status"], "done")
        self.assertRegex(done["completed_at"], ISO_Z)
        # The last child completes the parent (raw call to see parent_completed).
        status, body, _ = self.hub.post(f"/v1/tasks/{s2['id']}/complete", {})
        self.assertEqual(status, 200)
        self.assertIs(body.get("parent_completed"), True)
        ptask = a._call("GET", "/v1/tasks?status=done&thread_id=plan")["result"]
        self.assertEqual([t["task_id"] for t in ptask], [parent["id"]])
        a._since_id = 0
        notices = [m for m in a.poll(timeout=0, exclude_self=False) if m["kind"] == "notice"]
        self.assertEqual(len(notices), 1)
        self.assertEqual(notices[0]["from_agent"], "system")
        self.assertEqual(notices[0]["body"], f"All 2 subtasks of task {parent['id']} are complete.")
        self.assertEqual(notices[0]["reply_to"], parent["id"])
        self.assertEqual(notices[0]["metadata"], {"auto_rollup": True, "parent_task_id": parent["id"]})
        with self.assertRaises(ArcError) as cm:
            a.complete_task(999999)
        self.assertEqual(cm.exception.error, "task not found")
        with self.assertRaises(ArcError) as cm:
            a.post("general", "orphan", kind="task", parent_task_id=999999)
        self.assertEqual(cm.exception.error, "parent_task_id references unknown task")

    def test_task_result_auto_completes_request(self):
        a, b = self.client("a"), self.client("b")
        req = a.dm("b", "compute", kind="task_request")
        self.assertEqual(a._call("GET", f"/v1/tasks?status=open")["result"][0]["task_id"], req["id"])
        res = b.dm("a", "42", kind="task_result", reply_to=req["id"], metadata={"task_completed": 0})
        self.assertEqual(res["metadata"]["task_completed"], req["id"])
        tasks = a._call("GET", "/v1/tasks")["result"]
        self.assertEqual([(t["task_id"], t["status"]) for t in tasks], [(req["id"], "done")])
        # A second result for a done task gets no annotation.
        res2 = b.dm("a", "43", kind="task_result", reply_to=req["id"])
        self.assertNotIn("task_completed", res2["metadata"])

    def test_rpc_call_between_two_reference_clients(self):
        caller, worker = self.client("caller"), self.client("worker")
        stop = threading.Event()
        errors = []

        def serve():
            deadline = time.monotonic() + 20
            try:
                while not stop.is_set() and time.monotonic() < deadline:
                    for m in worker.poll(timeout=1):
                        if m["kind"] == "task_request":
                            # Reply as a DM on "direct" (found via the inbox), publicly
                            # otherwise (found via /v1/messages?channel=).
                            to = m["from_agent"] if m["channel"] == "direct" else None
                            worker.post(m["channel"], "pong: " + m["body"], kind="task_result",
                                        reply_to=m["id"], to_agent=to)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        th = threading.Thread(target=serve, daemon=True)
        th.start()
        self.addCleanup(th.join, 5)
        self.addCleanup(stop.set)
        t0 = time.monotonic()
        result = caller.call("worker", "ping", timeout=15, poll_interval=0.2)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(result["kind"], "task_result")
        self.assertEqual(result["body"], "pong: ping")
        self.assertEqual(result["from_agent"], "worker")
        # The reference inserts the message and its task row in two steps, so a
        # fast worker can race it (flaky with ARC_INTEROP_CLIENT_HUB=ref); ours
        # inserts both in one transaction.
        self.assertIn("task_completed", result["metadata"])
        self.assertEqual(result["to_agent"], "caller")
        # Public-channel variant: the result is found through /v1/messages.
        result = caller.call("worker", "ping 2", channel="general", timeout=15, poll_interval=0.2)
        self.assertEqual((result["body"], result["to_agent"], result["channel"]),
                         ("pong: ping 2", None, "general"))
        stop.set()
        th.join(5)
        self.assertEqual(errors, [])

    def test_rpc_call_for_agent_id_needing_quoting(self):
        # ArcClient.call() reads /v1/inbox/<quote(agent_id)>. The reference hub
        # does not percent-decode path segments (docs/COMPATIBILITY.md, "Wire and
        # validation"), so there a DM'd result for "my caller" is never found;
        # ours decodes.
        if self.hub.kind == "ref":
            self.skipTest("reference hub does not decode path parameters")
        caller, worker = self.client("my caller"), self.client("worker")

        def serve():
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                for m in worker.poll(timeout=1):
                    if m["kind"] == "task_request":
                        worker.dm(m["from_agent"], "ok", kind="task_result", reply_to=m["id"])
                        return

        th = threading.Thread(target=serve, daemon=True)
        th.start()
        self.addCleanup(th.join, 20)
        result = caller.call("worker", "hi", timeout=10, poll_interval=0.2)
        self.assertEqual((result["body"], result["to_agent"]), ("ok", "my caller"))
        inbox = caller._call("GET", "/v1/inbox/" + urllib.parse.quote("my caller"))["result"]
        self.assertEqual([m["id"] for m in inbox], [result["id"]])

    def test_rpc_call_timeout(self):
        caller = self.client("caller")
        with self.assertRaises(ArcError) as cm:
            caller.call("nobody", "hello?", timeout=1, poll_interval=0.2)
        self.assertEqual(cm.exception.error, "RPC to nobody timed out after 1s")
        self.assertEqual(cm.exception.status, 408)


class TestRawWire(ClientTestCase):
    """Exact status codes and error strings, via plain urllib."""

    def assertError(self, resp, status, error):
        self.assertEqual((resp[0], resp[1]), (status, {"ok": False, "error": error}))

    def test_instance_header_matches_hub_info(self):
        status, body, headers = self.hub.get("/v1/hub-info")
        self.assertEqual(status, 200)
        info = body["result"]
        self.assertRegex(info["instance_id"], r"^mh1-[0-9a-f]{20}$")
        self.assertEqual(headers.get("X-Arc-Instance"), info["instance_id"])
        self.assertEqual(info["protocol_version"], "1")
        self.assertEqual(info["default_channel"], "general")
        for feature in ("sse", "relay", "long_poll_keepalive", "subtask_rollup", "rpc_kinds",
                        "capability_filter", "shutdown_control", "session_rename"):
            self.assertIn(feature, info["features"])
        self.assertEqual(info["message_kinds"], sorted(arc.MSG_KINDS))
        self.assertTrue(info["wal_mode"])
        status, body, headers = self.hub.get("/nope")
        self.assertEqual(headers.get("X-Arc-Instance"), info["instance_id"])

    def test_route_and_framing_errors(self):
        self.assertError(self.hub.get("/v1/nope"), 404, "not found")
        self.assertError(self.hub.get("/v1/channels/"), 404, "not found")
        self.assertError(support.http("POST", self.url + "/v1/messages", raw=b"{not json"),
                         400, "malformed JSON")
        self.assertError(support.http("POST", self.url + "/v1/messages", raw=b"[1]"),
                         400, "request body must be a JSON object")
        self.assertError(support.http("POST", self.url + "/v1/messages", raw=b"\xff\xfe"),
                         400, "request body must be valid UTF-8")

    def test_query_errors(self):
        self.assertError(self.hub.get("/v1/events"), 400, "agent_id query parameter is required")
        self.assertError(self.hub.get("/v1/messages"), 400,
                         "channel or thread_id query parameter is required")
        self.assertError(self.hub.get("/v1/messages?channel=general&since_id=x"), 400,
                         "since_id must be an integer")
        self.assertError(self.hub.get("/v1/messages?channel=general&since_id=-1"), 400,
                         "since_id must be >= 0")
        self.assertError(self.hub.get("/v1/messages?channel=general&limit=0"), 400,
                         "limit must be at least 1")
        self.assertError(self.hub.get("/v1/events?agent_id=a&timeout=soon"), 400,
                         "timeout must be a number")
        self.assertError(self.hub.get("/v1/tasks?status=maybe"), 400,
                         "status must be 'open' or 'done'")
        self.assertError(self.hub.get("/v1/bootstrap"), 400, "agent_id query parameter is required")

    def test_body_errors_and_create_statuses(self):
        self.assertError(self.hub.post("/v1/sessions", {}), 400, "agent_id is required")
        status, body, _ = self.hub.post("/v1/sessions", {"agent_id": "raw"})
        self.assertEqual(status, 201)
        self.assertEqual(body["result"]["display_name"], "raw")
        self.assertError(self.hub.post("/v1/sessions", {"agent_id": "raw"}), 409,
                         "agent_id already has an active session")
        self.assertError(self.hub.post("/v1/messages", {"channel": "general", "body": "x"}), 400,
                         "from_agent is required")
        self.assertError(self.hub.post("/v1/messages", {"from_agent": "raw", "body": ""}), 400,
                         "body or attachments is required")
        self.assertError(self.hub.post("/v1/messages", {"from_agent": "raw", "body": "x",
                                                        "channel": "ghost"}),
                         400, "channel does not exist: ghost")
        self.assertError(self.hub.post("/v1/claims", {"owner_agent_id": "raw", "claim_key": "k",
                                                      "ttl_sec": 2}),
                         400, "ttl_sec must be at least 5")
        self.assertError(self.hub.post("/v1/tasks/12345/complete", {}), 404, "task not found")
        status, body, _ = self.hub.post("/v1/channels", {"name": "fresh"})
        self.assertEqual(status, 201)
        status, body, _ = self.hub.post("/v1/channels", {"name": "fresh"})
        self.assertEqual(status, 200)
        status, body, _ = self.hub.post("/v1/messages", {"from_agent": "raw", "body": "x"})
        self.assertEqual(status, 201)
        self.assertEqual(body["result"]["channel"], "general")
        self.assertError(self.hub.post("/v1/sessions/ghost/rename", {"display_name": "G"}), 404,
                         "no active session for agent_id")


TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
E_ACUTE = "\u00e9"

# (method, path, body). Sent in order to a fresh reference hub and a fresh
# hub of ours; the answers must agree once timestamps and session ids are
# masked. Inputs where we deliberately differ (docs/COMPATIBILITY.md, "Wire
# and validation": "false" as a boolean, null kind/body, fractional ints,
# empty/padded thread ids, crashes) are left out on purpose.
DIFFERENTIAL_REQUESTS = [
    ("POST", "/v1/sessions", {"agent_id": "a", "capabilities": [1, None], "metadata": {"m": "é"}}),
    ("POST", "/v1/sessions", {"agent_id": "a", "replace": False}),
    ("POST", "/v1/sessions", {"agent_id": "  b  ", "display_name": "  ", "metadata": None}),
    ("POST", "/v1/sessions", {"agent_id": 123}),
    ("POST", "/v1/sessions", {"agent_id": "c", "capabilities": "x"}),
    ("POST", "/v1/sessions", {"agent_id": "c", "metadata": [1]}),
    ("POST", "/v1/sessions/a/rename", {"display_name": "x" * 65}),
    ("POST", "/v1/sessions/a/rename", {"display_name": "  "}),
    ("POST", "/v1/sessions/a/rename", {"display_name": " Ok "}),
    ("POST", "/v1/sessions/nobody/rename", {"display_name": "Ok"}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "kind": ""}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "kind": " TASK ", "thread_id": "tt"}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "channel": "  "}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "channel": 0}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "attachments": {}}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "attachments": "abc"}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "attachments": [1]}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "attachments": [{"type": "zip"}]}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "attachments": [{"type": "text"}]}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "", "attachments":
                              [{"type": "json", "content": None}]}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "attachments":
                              [{"type": "text", "content": E_ACUTE * 42666}]}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "attachments":
                              [{"type": "text", "content": E_ACUTE * 42667}]}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "attachments": [{"type": "text"}] * 33}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "attachments":
                              [{"type": "diff_ref", "path": "  "}]}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "attachments":
                              [{"type": "diff_ref", "path": "p", "start_line": "x"}]}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "attachments":
                              [{"type": "diff_ref", "path": " p ", "description": {"a": 1},
                                "base": 1, "head": None, "end_line": " 7 ", "extra": 1}]}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": E_ACUTE * 128000}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": E_ACUTE * 128001}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "reply_to": "7"}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "reply_to": "x"}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "metadata": []}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "metadata": "m"}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "parent_task_id": ""}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "parent_task_id": 424242}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "to_agent": "  ", "channel": "nochan"}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "x", "to_agent": "z", "channel": "label"}),
    ("POST", "/v1/messages", {"from_agent": "a", "body": "h\u00e9llo \U0001F30D \u0000 \"q\""}),
    ("POST", "/v1/messages", {"from_agent": "z", "body": "r", "kind": "task_result", "reply_to": 2}),
    ("GET", "/v1/messages?channel=general&tail=1&limit=2", None),
    ("GET", "/v1/messages?channel=general&since_id=+3&limit=2", None),
    ("GET", "/v1/messages?channel=general&since_id=1_0&limit=1_0", None),
    ("GET", "/v1/messages?channel=general&limit=99999&since_id=12", None),
    ("GET", "/v1/messages?channel=&thread_id=tt", None),
    ("GET", "/v1/messages?channel=general&timeout=nan&since_id=100", None),
    ("GET", "/v1/messages?channel=general&since_id=3&tail=true&limit=1", None),
    ("GET", "/v1/events?agent_id=z&since_id=0&limit=3", None),
    ("GET", "/v1/events?agent_id=z&channel=label", None),
    ("GET", "/v1/events?agent_id=a&exclude_self=yes", None),
    ("GET", "/v1/inbox/z?tail=yes&limit=1", None),
    ("GET", "/v1/threads", None),
    ("GET", "/v1/threads/tt", None),
    ("GET", "/v1/threads/", None),
    ("POST", "/v1/claims", {"owner_agent_id": "a"}),
    ("POST", "/v1/claims", {"owner_agent_id": "a", "task_message_id": "x"}),
    ("POST", "/v1/claims", {"owner_agent_id": "a", "claim_key": "k", "ttl_sec": "10",
                            "thread_id": "tt", "metadata": {"a": 1}}),
    ("POST", "/v1/claims", {"owner_agent_id": "a", "claim_key": "k", "thread_id": "other",
                            "metadata": {"b": 2}}),
    ("POST", "/v1/claims", {"owner_agent_id": "b", "claim_key": "k"}),
    ("POST", "/v1/claims/refresh", {"owner_agent_id": "b", "claim_key": "k"}),
    ("POST", "/v1/claims/refresh", {"owner_agent_id": "a", "claim_key": "k", "ttl_sec": 4}),
    ("POST", "/v1/claims/release", {"agent_id": "a"}),
    ("POST", "/v1/claims/release", {"agent_id": "a", "claim_key": "k"}),
    ("POST", "/v1/claims", {"owner_agent_id": "b", "task_message_id": 2}),
    ("GET", "/v1/claims?active_only=true", None),
    ("GET", "/v1/claims?thread_id=tt", None),
    ("POST", "/v1/locks", {"agent_id": "a"}),
    ("POST", "/v1/locks", {"agent_id": "a", "file_path": " f ", "metadata": {"thread_id": "lt"}}),
    ("POST", "/v1/locks", {"agent_id": "b", "file_path": "f"}),
    ("POST", "/v1/locks/refresh", {"agent_id": "a", "file_path": "f", "ttl_sec": 30}),
    ("POST", "/v1/locks/refresh", {"agent_id": "b", "file_path": "f"}),
    ("GET", "/v1/threads/lt", None),
    ("GET", "/v1/locks?agent_id=a", None),
    ("POST", "/v1/locks/release", {"agent_id": "a", "file_path": "f"}),
    ("GET", "/v1/locks?active_only=1", None),
    ("GET", "/v1/tasks?parent_id=x", None),
    ("GET", "/v1/tasks?status=open", None),
    ("POST", "/v1/tasks/0/complete", None),
    ("POST", "/v1/tasks/2/complete", {"ignored": True}),
    ("POST", "/v1/tasks/2/complete", None),
    ("POST", "/v1/tasks/abc/complete", None),
    ("GET", "/v1/tasks", None),
    ("GET", "/v1/bootstrap?agent_id=z", None),
    ("GET", "/v1/shutdown", None),
    ("POST", "/v1/shutdown/cancel", {}),
    ("DELETE", "/v1/channels", None),
    ("DELETE", "/v1/sessions/not-a-session", None),
    ("GET", "/v1/claims/refresh", None),
    ("POST", "/v1/agents", {}),
    ("POST", "/v1/channels", {"name": "  n  ", "created_by": ""}),
    ("POST", "/v1/channels", {"name": ""}),
    ("POST", "/v1/channels", {"name": "m", "metadata": "x"}),
    ("GET", "/v1/channels", None),
    ("GET", "/v1/agents?capability=1", None),
    ("GET", "/v1/agents?capability=None&as=a", None),
]


def _mask(value):
    text = json.dumps(value, sort_keys=True)
    return UUID_RE.sub("<uuid>", TS_RE.sub("<ts>", text))


class TestDifferentialWithReference(support.InteropTestCase):
    """The same request sequence against the reference hub and ours."""

    def test_same_answers_as_reference(self):
        ours = self.start_hub("ours", storage=self.tmp / "ours.sqlite3")
        ref = self.start_hub("ref", storage=self.tmp / "ref.sqlite3")
        mismatches = []
        for method, path, body in DIFFERENTIAL_REQUESTS:
            got = support.http(method, ours.base_url + path, body)
            want = support.http(method, ref.base_url + path, body)
            if (got[0], _mask(got[1])) != (want[0], _mask(want[1])):
                mismatches.append(f"{method} {path} {json.dumps(body)[:120]}\n"
                                  f"   ours: {got[0]} {_mask(got[1])[:300]}\n"
                                  f"   ref:  {want[0]} {_mask(want[1])[:300]}")
        self.assertEqual(mismatches, [], "\n".join(mismatches))
