"""Our CLI clients (`arc post/poll/whoami`, `arc smoke-agent`) against the
reference Python hub: the reverse direction of test_client.py."""

import json
import subprocess
import time

from arc import ArcClient

try:
    from . import support
    from .test_smoke import CHANNEL, THREAD, EXPECTED
except ImportError:  # run with `-s tests/interop` (no parent package)
    import support
    from test_smoke import CHANNEL, THREAD, EXPECTED


class RustClientTestCase(support.InteropTestCase):
    def setUp(self):
        super().setUp()
        self.spool = self.tmp / "ref-spool"
        self.hub = self.start_hub("ref", spool_dir=self.spool)
        self.url = self.hub.base_url

    def arc(self, *args, timeout=60):
        return support.run([support.ARC_BIN, *args], cwd=self.tmp, timeout=timeout)


class TestCliAgainstReferenceHub(RustClientTestCase):
    def test_post_poll_whoami(self):
        p = self.arc("post", "--base-url", self.url, "--agent", "rs", "--channel", "general",
                     "--thread-id", "cli-thread", "hello from rust")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        msg = json.loads(p.stdout)
        self.assertEqual((msg["from_agent"], msg["channel"], msg["body"], msg["thread_id"]),
                         ("rs", "general", "hello from rust", "cli-thread"))
        feed = self.hub.result("GET", "/v1/messages?channel=general")
        self.assertEqual([m["id"] for m in feed], [msg["id"]])

        p = self.arc("post", "--base-url", self.url, "--agent", "rs", "--to", "py",
                     "--kind", "task_request", "direct hello")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        dm = json.loads(p.stdout)
        self.assertEqual((dm["to_agent"], dm["channel"], dm["kind"]), ("py", "direct", "task_request"))
        self.assertEqual([t["task_id"] for t in self.hub.result("GET", "/v1/tasks")], [dm["id"]])

        # poll replays history from --since-id 0, excluding the agent's own posts.
        p = self.arc("poll", "--base-url", self.url, "--agent", "py", "--timeout", "2")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
        self.assertEqual([m["id"] for m in lines], [msg["id"], dm["id"]])
        p = self.arc("poll", "--base-url", self.url, "--agent", "rs", "--timeout", "0.5")
        self.assertEqual((p.returncode, p.stdout), (0, ""))
        p = self.arc("poll", "--base-url", self.url, "--agent", "rs", "--timeout", "0.5",
                     "--include-self", "--since-id", str(msg["id"]))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # rs sees neither py's DM (not addressed to it) nor messages at or below since-id.
        self.assertEqual(p.stdout, "")

        p = self.arc("whoami", "--base-url", self.url, "--agent", "py")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        me = json.loads(p.stdout)
        self.assertEqual(me["agent_id"], "py")
        self.assertEqual(me["session"]["agent_id"], "py")
        self.assertEqual(me["latest_visible_id"], dm["id"])
        self.assertEqual(sorted(s["agent_id"] for s in me["live_agents"]), ["py", "rs"])

    def test_poll_wakes_on_reference_client_post(self):
        py = ArcClient.quickstart("py", base_url=self.url)
        self.addCleanup(py.close)
        p = subprocess.Popen([support.ARC_BIN, "poll", "--base-url", self.url, "--agent", "rs",
                              "--timeout", "15", "--from-now"],
                             cwd=str(self.tmp), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait(5)))
        time.sleep(1.5)
        sent = py.post("general", "ping rust")
        t0 = time.monotonic()
        out, err = p.communicate(timeout=25)
        self.assertEqual(p.returncode, 0, out + err)
        self.assertLess(time.monotonic() - t0, 10)
        lines = [json.loads(l) for l in out.splitlines() if l.strip()]
        self.assertEqual([m["id"] for m in lines], [sent["id"]])

    def test_errors(self):
        p = self.arc("post", "--base-url", self.url, "--agent", "rs", "--channel", "ghost", "x")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stdout.strip(), "arc error: channel does not exist: ghost")
        p = self.arc("poll", "--base-url", self.url, "--agent", "rs", "--channel", "ghost",
                     "--timeout", "0")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stdout.strip(), "arc error: channel not found")
        p = self.arc("whoami", "--base-url", f"http://127.0.0.1:{support.free_port()}",
                     "--agent", "rs", timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stdout.startswith("arc error: connection error:"), p.stdout)


class TestOurSmokeRolesAgainstReferenceHub(RustClientTestCase):
    def test_all_our_roles_with_relay_served_by_reference_hub(self):
        procs = []
        for role, transport in (("smoke-a", "http"), ("smoke-b", "relay"), ("smoke-c", "http")):
            base = self.url if transport == "http" else "http://127.0.0.1:9"
            cmd = [support.ARC_BIN, "smoke-agent", "--role", role, "--transport", transport,
                   "--base-url", base, "--relay-dir", str(self.spool),
                   "--timeout-sec", "45", "--poll-interval-sec", "0.2"]
            p = subprocess.Popen(cmd, cwd=str(self.tmp), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.addCleanup(lambda p=p: p.poll() is None and (p.kill(), p.wait(5)))
            procs.append((role, p))
        deadline = time.monotonic() + 60
        for role, p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            self.assertEqual(p.returncode, 0, f"{role}: {out!r} {err!r}")
            self.assertEqual(out.strip(), "")
        msgs = self.hub.result("GET", f"/v1/messages?channel={CHANNEL}&thread_id={THREAD}")
        got = [(m["from_agent"], m["kind"]) for m in msgs]
        self.assertEqual(got[:3], [(a, k) for a, k, _ in EXPECTED[:3]])
        self.assertEqual(sorted(got[3:]), sorted((a, k) for a, k, _ in EXPECTED[3:]))
        self.assertEqual(msgs[1]["body"], EXPECTED[1][2])
