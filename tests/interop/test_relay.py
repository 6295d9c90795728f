"""The file-spool relay (docs/PROTOCOL.md, "Relay spool format") in both directions.

- The reference client (`ArcClient.over_relay`, `FileRelayClient`) against
  our hub's built-in relay.
- Our CLI's relay client (`arc post/whoami/poll --relay-dir`) served by the
  reference relay process (`python -m arc relay`) forwarding to our hub.
"""

import json
import re
import threading
import time
import uuid

from arc import ArcClient, ArcError, FileRelayClient

try:
    from . import support
except ImportError:  # run with `-s tests/interop` (no parent package)
    import support

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


class RelayTestCase(support.InteropTestCase):
    hub_args = ()

    def setUp(self):
        super().setUp()
        self.spool = self.tmp / "spool"
        self.hub = self.start_hub("ours", spool_dir=self.spool, extra_args=self.hub_args)

    def relay_client(self, agent_id, timeout=30.0):
        c = ArcClient.over_relay(agent_id, spool_dir=str(self.spool), timeout=timeout)
        self.addCleanup(c.close)
        return c

    def http_client(self, agent_id):
        c = ArcClient.quickstart(agent_id, base_url=self.hub.base_url, timeout=10.0)
        self.addCleanup(c.close)
        return c


class TestReferenceClientOverOurRelay(RelayTestCase):
    def test_register_post_poll(self):
        r = self.relay_client("sandboxed")
        sess = r.register(display_name="Sandboxed", capabilities=["relay"])
        self.assertEqual(sess["agent_id"], "sandboxed")
        self.assertTrue(r.session_id)
        r.bootstrap()
        h = self.http_client("host")
        sent = h.post("general", "to the sandbox")
        got = r.poll(timeout=5)
        self.assertEqual([m["id"] for m in got], [sent["id"]])
        mine = r.post("general", "from the sandbox", thread_id="relay-thread")
        self.assertEqual(mine["from_agent"], "sandboxed")
        self.assertEqual([m["id"] for m in h.poll(timeout=5)], [mine["id"]])
        dm = r.dm("host", "private")
        self.assertEqual(h._call("GET", "/v1/inbox/host")["result"][-1]["id"], dm["id"])
        agents = [s["agent_id"] for s in self.hub.result("GET", "/v1/agents?capability=relay")]
        self.assertEqual(agents, ["sandboxed"])
        r.close()
        agents = [s["agent_id"] for s in self.hub.result("GET", "/v1/agents")]
        self.assertNotIn("sandboxed", agents)

    def test_hub_errors_come_back_as_arc_error(self):
        r = self.relay_client("sandboxed", timeout=15)
        with self.assertRaises(ArcError) as cm:
            r.post("ghost", "x")
        self.assertEqual(cm.exception.error, "channel does not exist: ghost")
        with self.assertRaises(ArcError) as cm:
            r.get_thread("nothing-here")
        self.assertEqual(cm.exception.error, "thread not found")

    def test_claim_and_lock_over_relay(self):
        r = self.relay_client("sandboxed", timeout=15)
        r.register()
        self.assertEqual(r.claim("relay-claim", ttl_sec=60)["owner_agent_id"], "sandboxed")
        self.assertEqual(r.lock("relay.txt", ttl_sec=60)["agent_id"], "sandboxed")
        h = self.http_client("host")
        self.assertEqual(h.claim("relay-claim")["owner_agent_id"], "sandboxed")
        self.assertRegex(r.release("relay-claim")["released_at"], ISO_Z)
        self.assertRegex(r.unlock("relay.txt")["released_at"], ISO_Z)

    def test_relayed_long_poll_wakes(self):
        r = self.relay_client("sandboxed")
        r.register()
        r.bootstrap()
        h = self.http_client("host")
        out = {}

        def wait():
            t0 = time.monotonic()
            try:
                out["msgs"] = r.poll(timeout=30)
            except Exception as exc:  # noqa: BLE001
                out["error"] = exc
            out["elapsed"] = time.monotonic() - t0

        th = threading.Thread(target=wait, daemon=True)
        th.start()
        time.sleep(1.0)
        h.post("general", "wake the relay")
        th.join(35)
        self.assertFalse(th.is_alive())
        self.assertNotIn("error", out)
        self.assertEqual([m["body"] for m in out["msgs"]], ["wake the relay"])
        self.assertLess(out["elapsed"], 8.0)

    def test_one_agents_long_poll_does_not_block_another_agent(self):
        # The reference relay is serial; ours must not be (docs/COMPATIBILITY.md, "Relay").
        waiter = self.relay_client("waiter")
        waiter.register()
        waiter.bootstrap()
        other = self.relay_client("other", timeout=15)
        out = {}

        def wait():
            try:
                out["msgs"] = waiter.poll(timeout=10, channel="direct")
            except Exception as exc:  # noqa: BLE001
                out["error"] = exc

        th = threading.Thread(target=wait, daemon=True)
        th.start()
        self.addCleanup(th.join, 20)
        time.sleep(1.0)  # let the relay pick up the long-poll first
        t0 = time.monotonic()
        other.register()
        other.post("general", "not blocked")
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertTrue(th.is_alive(), "the long-poll should still be waiting")
        other.dm("waiter", "now wake")
        th.join(20)
        self.assertNotIn("error", out)
        self.assertEqual([m["body"] for m in out["msgs"]], ["now wake"])

    def test_poll_timeout_30_returns_a_list_with_default_clamp(self):
        # The reference's own relay makes this raise "relay timed out waiting
        # for response" (598) after 30 s; ours clamps the wait to 20 s.
        r = self.relay_client("sandboxed")
        r.register()
        r.bootstrap()
        t0 = time.monotonic()
        msgs = r.poll(timeout=30)
        elapsed = time.monotonic() - t0
        self.assertIsInstance(msgs, list)
        self.assertEqual(msgs, [])
        self.assertGreaterEqual(elapsed, 10.0)  # it really long-polled
        self.assertLess(elapsed, 29.0)

    def test_reference_file_relay_client_envelope_and_layout(self):
        rc = FileRelayClient(agent_id="relay agent/1", spool_dir=str(self.spool), timeout=15)
        resp = rc.call("GET", "/v1/hub-info")
        self.assertIs(resp["ok"], True)
        self.assertEqual(resp["status"], 200)
        self.assertRegex(resp["request_id"], HEX32)
        self.assertRegex(resp["completed_at"], ISO_Z)
        self.assertNotIn("error", resp)
        self.assertEqual(resp["body"]["result"]["instance_id"], self.hub.info["instance_id"])
        rid = resp["request_id"]
        self.assertTrue((self.spool / "requests" / "relay_agent_1" / f"{rid}.work").is_file())
        self.assertFalse((self.spool / "requests" / "relay_agent_1" / f"{rid}.json").exists())
        self.assertTrue((self.spool / "responses" / "relay_agent_1" / f"{rid}.json").is_file())

        resp = rc.call("POST", "/v1/sessions/ghost/rename", {"display_name": "G"})
        self.assertIs(resp["ok"], False)
        self.assertEqual(resp["status"], 404)
        self.assertEqual(resp["error"], "no active session for agent_id")
        self.assertEqual(resp["body"], {"ok": False, "error": "no active session for agent_id"})

        resp = rc.call("post", "/v1/messages", {"from_agent": "relay agent/1", "body": "hi"})
        self.assertIs(resp["ok"], True)
        self.assertEqual(resp["status"], 201)
        self.assertEqual(resp["body"]["result"]["from_agent"], "relay agent/1")

    def test_non_json_answer_is_relayed_as_a_string(self):
        rc = FileRelayClient(agent_id="viewer", spool_dir=str(self.spool), timeout=15)
        resp = rc.call("GET", "/")
        self.assertEqual(resp["status"], 200)
        self.assertIs(resp["ok"], True)
        self.assertIsInstance(resp["body"], str)
        self.assertIn("<html", resp["body"].lower())
        self.assertNotIn("error", resp)

    def _write_request(self, agent_dir, payload):
        rid = uuid.uuid4().hex
        d = self.spool / "requests" / agent_dir
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{rid}.json.{uuid.uuid4().hex}.tmp"
        tmp.write_text(payload if isinstance(payload, str) else json.dumps(payload, indent=2))
        tmp.rename(d / f"{rid}.json")
        return self.spool / "responses" / agent_dir / f"{rid}.json", rid

    def _read_response(self, path):
        ok = support.wait_until(path.is_file, timeout=10, interval=0.05)
        self.assertTrue(ok, f"no response at {path}")
        return json.loads(path.read_text())

    def test_invalid_request_envelopes(self):
        path, rid = self._write_request("bad", {
            "request_id": "x", "agent_id": "bad", "method": "GET",
            "path": "v1/hub-info", "body": None, "created_at": "2026-01-01T00:00:00Z"})
        resp = self._read_response(path)
        self.assertEqual(resp["status"], 400)
        self.assertIs(resp["ok"], False)
        self.assertEqual(resp["error"], "invalid relay request: request path must start with '/'")
        path, rid = self._write_request("bad", {"method": "POST", "path": "/v1/messages",
                                                "body": [1]})
        resp = self._read_response(path)
        self.assertEqual(resp["status"], 400)
        self.assertEqual(resp["error"],
                         "invalid relay request: request body must be a JSON object when provided")
        path, rid = self._write_request("bad", {"path": "/v1/hub-info"})
        resp = self._read_response(path)
        self.assertEqual(resp["error"], "invalid relay request: request envelope missing method")
        path, rid = self._write_request("bad", "[]")
        resp = self._read_response(path)
        self.assertEqual(resp["error"],
                         "invalid relay request: request envelope must be a JSON object")
        path, rid = self._write_request("bad", "{nope")
        resp = self._read_response(path)
        self.assertEqual(resp["status"], 400)
        self.assertTrue(resp["error"].startswith("invalid relay request: "), resp["error"])
        # A request with a missing request_id falls back to the file stem.
        path, rid = self._write_request("fallback", {"method": "get", "path": "/v1/channels"})
        resp = self._read_response(path)
        self.assertEqual(resp["request_id"], rid)
        self.assertEqual(resp["status"], 200)
        self.assertIs(resp["ok"], True)


class TestSmallerRelayClamp(RelayTestCase):
    hub_args = ("--relay-max-wait-sec", "2")

    def test_poll_timeout_30_is_clamped_to_configured_wait(self):
        r = self.relay_client("sandboxed")
        r.register()
        r.bootstrap()
        t0 = time.monotonic()
        msgs = r.poll(timeout=30)
        elapsed = time.monotonic() - t0
        self.assertEqual(msgs, [])
        self.assertGreaterEqual(elapsed, 1.5)
        self.assertLess(elapsed, 10.0)
        # Direct HTTP long-polls are not clamped by the relay setting.
        h = self.http_client("host")
        t0 = time.monotonic()
        self.assertEqual(h.poll(timeout=3), [])
        self.assertGreaterEqual(time.monotonic() - t0, 2.5)


class TestOurStandaloneRelay(support.InteropTestCase):
    """`arc relay` (ours, standalone) serving the reference FileRelayClient."""

    def start_relay(self, base_url):
        self.spool = self.tmp / "spool"
        return self.start_background(
            [support.ARC_BIN, "relay", "--base-url", base_url, "--spool-dir", str(self.spool),
             "--poll-interval-sec", "0.1"], "our-relay")

    def test_forwards_to_the_reference_hub(self):
        hub = self.start_hub("ref", spool_dir=self.tmp / "ref-own-spool")
        self.start_relay(hub.base_url)
        c = ArcClient.over_relay("sandboxed", spool_dir=str(self.tmp / "spool"), timeout=15)
        c.register()
        msg = c.post("general", "via our relay to the python hub")
        feed = hub.result("GET", "/v1/messages?channel=general")
        self.assertEqual([m["id"] for m in feed], [msg["id"]])
        c.close()

    def test_unreachable_hub_gives_599(self):
        relay = self.start_relay(f"http://127.0.0.1:{support.free_port()}")
        rc = FileRelayClient(agent_id="lost", spool_dir=str(self.tmp / "spool"), timeout=20)
        resp = rc.call("GET", "/v1/hub-info")
        self.assertEqual(resp["status"], 599, (resp, relay.log()))
        self.assertIs(resp["ok"], False)
        self.assertTrue(resp["error"].startswith("connection error: "), resp["error"])


class TestTwoRelaysOneSpool(support.InteropTestCase):
    """Our hub and the reference hub share a database and a spool: their
    relays compete for request files (claimed by rename), and every request
    must be answered exactly once."""

    def test_competing_relays(self):
        db, spool = self.tmp / "arc.sqlite3", self.tmp / "spool"
        self.start_hub("ours", storage=db, spool_dir=spool)
        hub = self.start_hub("ref", storage=db, spool_dir=spool)
        clients = [ArcClient.over_relay(f"sb{i}", spool_dir=str(spool), timeout=20)
                   for i in range(3)]
        errors, posted = [], []

        def work(c):
            try:
                c.register()
                for i in range(8):
                    posted.append(c.post("general", f"{c.agent_id} {i}")["id"])
                c.close()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        feed = hub.result("GET", "/v1/messages?channel=general&limit=500")
        self.assertEqual(sorted(m["id"] for m in feed), sorted(posted))
        self.assertEqual(len(posted), 24)  # each post executed exactly once
        works = list((spool / "requests").glob("*/*.work"))
        responses = list((spool / "responses").glob("*/*.json"))
        self.assertEqual(len(works), 3 * 10)
        self.assertEqual(sorted(p.name for p in responses),
                         sorted(p.stem + ".json" for p in works))
        self.assertEqual(list((spool / "requests").glob("*/*.json")), [])


class TestOurCliOverReferenceRelay(support.InteropTestCase):
    """Our relay client, served by the reference's `arc relay` process."""

    def setUp(self):
        super().setUp()
        self.hub = self.start_hub("ours", spool_dir=self.tmp / "hub-spool")
        self.spool = self.tmp / "ref-spool"
        self.relay = self.start_background(
            support.REF_ARC + ["relay", "--base-url", self.hub.base_url,
                               "--spool-dir", str(self.spool), "--poll-interval-sec", "0.1"],
            "ref-relay")

    def arc(self, *args, timeout=60):
        return support.run([support.ARC_BIN, *args], cwd=self.tmp, timeout=timeout)

    def test_post_whoami_poll_through_reference_relay(self):
        p = self.arc("post", "--relay-dir", str(self.spool), "--agent", "x",
                     "--channel", "general", "hi")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr + self.relay.log())
        msg = json.loads(p.stdout)
        self.assertEqual((msg["from_agent"], msg["channel"], msg["body"]), ("x", "general", "hi"))
        feed = self.hub.result("GET", "/v1/messages?channel=general")
        self.assertEqual([(m["id"], m["body"]) for m in feed], [(msg["id"], "hi")])

        # The files our client wrote follow the reference layout and envelope.
        works = list((self.spool / "requests" / "x").glob("*.work"))
        self.assertGreaterEqual(len(works), 1)
        for w in works:
            env = json.loads(w.read_text())
            self.assertEqual(env["request_id"], w.stem)
            self.assertRegex(env["request_id"], HEX32)
            self.assertEqual(env["agent_id"], "x")
            self.assertIn(env["method"], ("GET", "POST", "DELETE"))
            self.assertTrue(env["path"].startswith("/v1/"))
            self.assertRegex(env["created_at"], ISO_Z)
            self.assertTrue((self.spool / "responses" / "x" / f"{w.stem}.json").is_file())
        self.assertEqual(list((self.spool / "requests" / "x").glob("*.json")), [])

        p = self.arc("post", "--relay-dir", str(self.spool), "--agent", "x", "--to", "y",
                     "--kind", "task", "--thread-id", "t1", "for y")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        dm = json.loads(p.stdout)
        self.assertEqual((dm["to_agent"], dm["channel"], dm["kind"], dm["thread_id"]),
                         ("y", "direct", "task", "t1"))

        p = self.arc("whoami", "--relay-dir", str(self.spool), "--agent", "y")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        me = json.loads(p.stdout)
        self.assertEqual(me["agent_id"], "y")
        self.assertEqual(me["session"]["agent_id"], "y")
        self.assertEqual(me["latest_visible_id"], dm["id"])

        p = self.arc("poll", "--relay-dir", str(self.spool), "--agent", "y", "--timeout", "2")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        lines = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
        self.assertEqual([m["id"] for m in lines], [msg["id"], dm["id"]])

    def test_agent_id_needing_a_safe_directory_name(self):
        p = self.arc("post", "--relay-dir", str(self.spool), "--agent", "sand box/1",
                     "--channel", "general", "odd name")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr + self.relay.log())
        self.assertEqual(json.loads(p.stdout)["from_agent"], "sand box/1")
        self.assertTrue(list((self.spool / "requests" / "sand_box_1").glob("*.work")))
        self.assertTrue(list((self.spool / "responses" / "sand_box_1").glob("*.json")))
        p = self.arc("whoami", "--relay-dir", str(self.spool), "--agent", "sand box/1")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(json.loads(p.stdout)["session"]["agent_id"], "sand box/1")

    def test_hub_error_through_reference_relay(self):
        p = self.arc("post", "--relay-dir", str(self.spool), "--agent", "x",
                     "--channel", "ghost", "hi")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(p.stdout.strip(), "arc error: channel does not exist: ghost")
