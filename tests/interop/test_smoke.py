"""The three-role smoke test (`arc smoke-agent`: docs/PROTOCOL.md, "Commands and
flags"), mixing reference and our roles.

All three roles wait on each other through the hub, so they are started
concurrently; each is a separate process with its own bounded timeout.
smoke-b always runs over the relay (through our hub's built-in relay) with
an unreachable --base-url, as the reference's CI does; smoke-a and smoke-c
use HTTP. On success every role exits 0 and prints nothing.
"""

import subprocess
import time

try:
    from . import support
except ImportError:  # run with `-s tests/interop` (no parent package)
    import support

CHANNEL = "smoke-room"
THREAD = "smoke-relay-001"
CLAIM = "smoke-claim-001"
ROLE_TIMEOUT_SEC = 45  # the role's own --timeout-sec
PROCESS_TIMEOUT_SEC = 60  # hard bound on each process
UNREACHABLE = "http://127.0.0.1:9"  # the relay role must not need HTTP

EXPECTED = [
    ("smoke-a", "task", "smoke task from smoke-a"),
    ("smoke-b", "artifact", "smoke-b reached the hub through relay mode"),
    ("smoke-c", "notice", "smoke-c verified shared visibility across direct HTTP and relay mode"),
    ("smoke-b", "notice", "smoke-b confirms relay interop works"),
    ("smoke-a", "notice", "smoke-a saw both agents and the smoke test passed from the host side"),
]


class SmokeTestCase(support.InteropTestCase):
    def setUp(self):
        super().setUp()
        self.spool = self.tmp / "spool"
        self.hub = self.start_hub("ours", spool_dir=self.spool)

    def role_cmd(self, impl, role, transport):
        prefix = [support.ARC_BIN] if impl == "ours" else list(support.REF_ARC)
        base_url = self.hub.base_url if transport == "http" else UNREACHABLE
        return prefix + [
            "smoke-agent", "--role", role, "--transport", transport,
            "--base-url", base_url, "--relay-dir", str(self.spool),
            "--timeout-sec", str(ROLE_TIMEOUT_SEC), "--poll-interval-sec", "0.2",
        ]

    def run_smoke(self, a, b, c):
        """Runs smoke-a (http), smoke-b (relay), smoke-c (http) concurrently.

        a, b, c name the implementation of each role: "ours" or "ref".
        """
        specs = [("smoke-a", a, "http"), ("smoke-b", b, "relay"), ("smoke-c", c, "http")]
        procs = []
        for role, impl, transport in specs:
            p = subprocess.Popen(self.role_cmd(impl, role, transport), cwd=str(self.tmp),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            procs.append((role, impl, p))
            self.addCleanup(self._reap, p)
        results = {}
        deadline = time.monotonic() + PROCESS_TIMEOUT_SEC
        for role, impl, p in procs:
            try:
                out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate(timeout=5)
                self.fail(f"{impl} {role} did not finish within {PROCESS_TIMEOUT_SEC}s: "
                          f"{out}{err}")
            results[role] = (p.returncode, out, err)
        for role, (rc, out, err) in results.items():
            self.assertEqual(rc, 0, f"{role} failed: stdout={out!r} stderr={err!r}")
            self.assertNotIn("Smoke test failed", out)
            self.assertEqual(out.strip(), "", f"{role} printed {out!r}")
        self.check_hub_state()
        return results

    @staticmethod
    def _reap(p):
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)

    def check_hub_state(self):
        msgs = self.hub.result("GET", f"/v1/messages?channel={CHANNEL}&thread_id={THREAD}")
        got = [(m["from_agent"], m["kind"], m["body"]) for m in msgs]
        self.assertEqual(len(got), 5, got)
        # The verifier's notice names the claim state it observed.
        verifier = got[2][2]
        self.assertIn(verifier, [
            EXPECTED[2][2] + " (released)",
            EXPECTED[2][2] + " (held by smoke-b)",
        ])
        got[2] = (got[2][0], got[2][1], EXPECTED[2][2])
        # smoke-b's confirmation and smoke-a's final notice may come in either order.
        self.assertEqual(got[:3], EXPECTED[:3])
        self.assertEqual(sorted(got[3:]), sorted(EXPECTED[3:]))
        self.assertTrue(all(m["thread_id"] == THREAD for m in msgs))
        claims = self.hub.result("GET", f"/v1/claims?thread_id={THREAD}")
        self.assertEqual([(c["claim_key"], c["owner_agent_id"]) for c in claims],
                         [(CLAIM, "smoke-b")])
        self.assertIsNotNone(claims[0]["released_at"])
        channel = [ch for ch in self.hub.result("GET", "/v1/channels") if ch["name"] == CHANNEL]
        self.assertEqual(channel[0]["created_by"], "smoke-a")
        agents = {s["agent_id"]: s["display_name"] for s in self.hub.result("GET", "/v1/agents")}
        for role in ("smoke-a", "smoke-b", "smoke-c"):
            self.assertEqual(agents.get(role), role)


class TestSmokeMixes(SmokeTestCase):
    def test_reference_a_ours_b_over_relay_reference_c(self):
        self.run_smoke(a="ref", b="ours", c="ref")

    def test_ours_a_reference_b_over_relay_ours_c(self):
        self.run_smoke(a="ours", b="ref", c="ours")

    def test_all_reference_roles_against_our_hub(self):
        self.run_smoke(a="ref", b="ref", c="ref")

    def test_all_our_roles(self):
        self.run_smoke(a="ours", b="ours", c="ours")

    def test_our_role_reports_failure_like_the_reference(self):
        # smoke-c alone never sees smoke-a's task: both time out the same way.
        for impl in ("ours", "ref"):
            cmd = self.role_cmd(impl, "smoke-c", "http")
            cmd[cmd.index("--timeout-sec") + 1] = "1"
            p = support.run(cmd, cwd=self.tmp, timeout=30)
            self.assertEqual(p.returncode, 1, (impl, p.stdout, p.stderr))
            self.assertEqual(p.stdout.strip(),
                             f"Smoke test failed: timed out waiting for messages on thread {THREAD}",
                             impl)
