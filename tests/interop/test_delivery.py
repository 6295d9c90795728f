"""Delivery marks and hooks while the reference Python hub writes the file.

Our hub and the reference hub share one SQLite file (docs/PROTOCOL.md,
"Extension tables"): the reference knows nothing of ``arc_marks`` or
``arc_dead_letters``, so what it writes to ``messages`` must be caught up
by our hub: the pending lists, each message's delivery state, dead
letters (with their suggestion), the sender's hook context, and a parked
``Stop`` hook must wake for a DM the other process wrote.

These live here rather than in ``tests/it`` because ``tests/run.sh`` runs
``cargo test`` before it creates the venv that holds the reference.
Every wait is bounded.
"""

import json
import subprocess
import time

try:
    from . import support
except ImportError:  # run with `-s tests/interop` (no parent package)
    import support

FIXTURES = support.REPO_ROOT / "tests" / "fixtures" / "hooks"
HOOK_TIMEOUT = 30.0


def fixture(harness, event):
    return (FIXTURES / harness / f"{event}.json").read_bytes()


class DeliveryTestCase(support.InteropTestCase):
    def setUp(self):
        super().setUp()
        self.db = self.tmp / "shared.sqlite3"
        self.ours = self.start_hub("ours", storage=self.db, spool_dir=self.tmp / "relay-ours")
        self.ref = self.start_hub("ref", storage=self.db, spool_dir=self.tmp / "relay-ref")
        self.runs = 0

    def hook_cmd(self, harness, agent, *extra):
        return [support.ARC_BIN, "hook", harness, "--agent", agent,
                "--base-url", self.ours.base_url, *extra]

    def hook(self, harness, event, agent, *extra):
        """Runs `arc hook` to the end in a directory of its own."""
        self.runs += 1
        cwd = self.tmp / f"hook-{self.runs}"
        cwd.mkdir()
        return subprocess.run(
            self.hook_cmd(harness, agent, *extra), input=fixture(harness, event),
            capture_output=True, timeout=HOOK_TIMEOUT, cwd=str(cwd),
        )

    def context(self, harness, event, agent):
        """The additionalContext a context hook printed, or None."""
        p = self.hook(harness, event, agent)
        self.assertEqual(p.returncode, 0, p)
        self.assertEqual(p.stderr, b"", p)
        if not p.stdout:
            return None
        lines = p.stdout.decode().splitlines()
        self.assertEqual(len(lines), 1, p)
        out = json.loads(lines[0])
        self.assertEqual(list(out), ["hookSpecificOutput"])
        self.assertEqual(out["hookSpecificOutput"]["hookEventName"], event)
        return out["hookSpecificOutput"]["additionalContext"]

    def register(self, hub, agent):
        return hub.result("POST", "/v1/sessions", {"agent_id": agent, "replace": True})

    def post(self, hub, body):
        status, payload, _ = hub.post("/v1/messages", body)
        self.assertEqual(status, 201, payload)
        self.assertTrue(payload["ok"], payload)
        return payload["result"]


class TestReferenceWrites(DeliveryTestCase):
    def test_reference_messages_show_in_pending_deliveries_and_hooks(self):
        self.register(self.ours, "bob")
        self.register(self.ref, "alice")
        dm = self.post(self.ref, {"from_agent": "alice", "to_agent": "bob", "body": "from python"})
        bc = self.post(self.ref, {"from_agent": "alice", "channel": "general", "body": "to all"})
        pending = self.ours.result("GET", "/v1/agents/bob/pending")
        for key in ("undelivered", "unsurfaced", "unread"):
            self.assertEqual(pending[key], [dm["id"], bc["id"]], (key, pending))
        self.assertEqual(
            self.ours.result("GET", f"/v1/messages/{dm['id']}/deliveries"),
            [{"agent_id": "bob", "state": "queued", "at": dm["ts"]}],
        )
        recipients = self.ours.result("GET", f"/v1/messages/{bc['id']}/deliveries")
        self.assertEqual([r["agent_id"] for r in recipients], ["bob"], recipients)

        text = self.context("codex", "UserPromptSubmit", "bob")
        self.assertIsNotNone(text, "the reference's messages are pending for bob")
        self.assertIn(f"- #{dm['id']} from alice in DM (chat): from python", text)
        self.assertIn(f"- #{bc['id']} from alice in #general (chat): to all", text)
        for m in (dm, bc):
            rows = self.ours.result("GET", f"/v1/messages/{m['id']}/deliveries")
            self.assertEqual([(r["agent_id"], r["state"]) for r in rows], [("bob", "surfaced")])
        self.assertIsNone(self.context("gemini", "BeforeAgent", "bob"), "surfaced once")

        # The reference keeps writing: the marks hold and new rows are pending.
        later = self.post(self.ref, {"from_agent": "alice", "to_agent": "bob", "body": "later"})
        pending = self.ours.result("GET", "/v1/agents/bob/pending")
        self.assertEqual(pending["unsurfaced"], [later["id"]], pending)
        self.assertEqual(pending["marks"]["surfaced"], bc["id"], pending)

    def test_reference_dead_letter_is_caught_up_with_its_suggestion(self):
        self.register(self.ref, "bob")
        self.register(self.ref, "alice")
        typo = self.post(self.ref, {"from_agent": "alice", "to_agent": "bbo", "body": "typo"})
        fine = self.post(self.ref, {"from_agent": "alice", "to_agent": "bob", "body": "fine"})
        dead = self.ours.result("GET", "/v1/deliveries/dead")
        self.assertEqual([d["message_id"] for d in dead], [typo["id"]], dead)
        self.assertEqual(dead[0]["suggestion"], "bob", dead)
        self.assertEqual((dead[0]["from_agent"], dead[0]["to_agent"]), ("alice", "bbo"))
        rows = self.ours.result("GET", f"/v1/messages/{typo['id']}/deliveries")
        self.assertEqual(rows, [{"agent_id": "bbo", "state": "queued", "at": typo["ts"],
                                 "dead_letter": True}])
        rows = self.ours.result("GET", f"/v1/messages/{fine['id']}/deliveries")
        self.assertNotIn("dead_letter", rows[0], rows)
        told = "no agent 'bbo': did you mean 'bob'?"
        first = self.context("claude-code", "SessionStart", "alice") or ""
        second = self.context("claude-code", "UserPromptSubmit", "alice") or ""
        self.assertEqual(first.count(told) + second.count(told), 1, (first, second))
        # Once `bbo` signs in (on the reference), it is no dead letter.
        self.register(self.ref, "bbo")
        self.assertEqual(self.ours.result("GET", "/v1/deliveries/dead"), [])

    def test_reference_dead_letter_reaches_the_senders_next_hook(self):
        """The sender's next surface names the dead letter, even when
        nobody listed /v1/deliveries/dead first."""
        self.register(self.ref, "bob")
        self.register(self.ref, "alice")
        typo = self.post(self.ref, {"from_agent": "alice", "to_agent": "bbo", "body": "typo"})
        text = self.context("claude-code", "SessionStart", "alice") or ""
        self.assertIn(
            "no agent 'bbo': did you mean 'bob'?", text,
            f"the dead letter #{typo['id']} a Python hub wrote is not told to its sender: "
            "Store::surface_take (src/store/delivery.rs) returns early when its peek finds "
            "nothing, and the peek reads arc_dead_letters without catch_up_dead, which only "
            "GET /v1/deliveries/dead or a non-empty take runs",
        )

    def test_a_parked_stop_hook_wakes_for_a_dm_the_reference_wrote(self):
        self.register(self.ours, "bob")
        cwd = self.tmp / "stop"
        cwd.mkdir()
        proc = subprocess.Popen(
            self.hook_cmd("claude-code", "bob", "--max-wait", "30"), cwd=str(cwd),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.addCleanup(support.stop_process, proc)
        proc.stdin.write(fixture("claude-code", "Stop"))
        proc.stdin.close()
        time.sleep(0.5)  # let it park; the result does not depend on it
        self.assertIsNone(proc.poll(), "nothing pending: the Stop hook waits")
        t0 = time.monotonic()
        dm = self.post(self.ref, {"from_agent": "alice", "to_agent": "bob", "body": "wake"})
        proc.wait(timeout=HOOK_TIMEOUT)
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        self.assertEqual(proc.returncode, 2, (out, err))
        self.assertEqual(out, b"")
        self.assertIn(f"#{dm['id']} from alice in DM".encode(), err)
        self.assertLess(time.monotonic() - t0, 10.0)


if __name__ == "__main__":
    import unittest

    unittest.main()
