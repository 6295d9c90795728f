"""Lifecycle interop: the pidfile (docs/PROTOCOL.md, "Pidfile") is shared
between implementations, so the reference's `ensure`/`stop`/`reset` work on
our hub and ours work on the reference hub."""

import json

try:
    from . import support
except ImportError:  # run with `-s tests/interop` (no parent package)
    import support


class TestLifecycleInterop(support.InteropTestCase):
    def ref_cli(self, *args):
        return support.run(support.REF_ARC + list(args), cwd=self.tmp, timeout=30)

    def our_cli(self, *args):
        return support.run([support.ARC_BIN, *args], cwd=self.tmp, timeout=30)

    def test_our_pidfile_has_the_reference_format(self):
        hub = self.start_hub("ours")
        raw = (self.tmp / ".arc.pid").read_text()
        self.assertEqual(json.loads(raw), {"pid": hub.proc.pid, "port": hub.port,
                                           "url": hub.base_url})
        import arc  # the reference reads it back with its own parser
        info = arc._read_pidfile(self.tmp / ".arc.pid")
        self.assertEqual((info["pid"], info["port"], info["url"]),
                         (hub.proc.pid, hub.port, hub.base_url))

    def test_reference_ensure_and_stop_manage_our_hub(self):
        hub = self.start_hub("ours")
        p = self.ref_cli("ensure", "--port", str(hub.port), "--storage", "arc.sqlite3",
                         "--timeout", "5")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(json.loads(p.stdout),
                         {"running": True, "started": False, "url": hub.base_url})
        proc = hub.proc
        p = self.ref_cli("stop", "--port", str(hub.port), "--storage", "arc.sqlite3")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(json.loads(p.stdout),
                         {"stopped": True, "pid": proc.pid, "url": hub.base_url})
        # SIGTERM is a graceful stop for our hub.
        self.assertEqual(proc.wait(timeout=10), 0)
        self.assertFalse((self.tmp / ".arc.pid").exists())

    def test_reference_reset_removes_our_database(self):
        hub = self.start_hub("ours")
        hub.result("POST", "/v1/messages", {"from_agent": "x", "body": "soon gone"})
        proc = hub.proc
        p = self.ref_cli("reset", "--port", str(hub.port), "--storage", "arc.sqlite3")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = json.loads(p.stdout)
        self.assertIs(out["reset"], True)
        self.assertIn("arc.sqlite3", out.get("removed", []))
        self.assertEqual(proc.wait(timeout=10), 0)
        self.assertFalse((self.tmp / "arc.sqlite3").exists())

    def test_our_ensure_and_stop_manage_the_reference_hub(self):
        hub = self.start_hub("ref")
        p = self.our_cli("ensure", "--port", str(hub.port), "--storage", "arc.sqlite3",
                         "--timeout", "5")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = json.loads(p.stdout)
        self.assertEqual((out["running"], out["started"], out["url"]),
                         (True, False, hub.base_url))
        proc = hub.proc
        p = self.our_cli("stop", "--port", str(hub.port), "--storage", "arc.sqlite3")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = json.loads(p.stdout)
        self.assertIs(out["stopped"], True)
        self.assertEqual(out["url"], hub.base_url)
        proc.wait(timeout=10)
        status = support.wait_until(lambda: proc.poll() is not None, timeout=5)
        self.assertTrue(status)
        p = self.our_cli("stop", "--port", str(hub.port), "--storage", "arc.sqlite3")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(json.loads(p.stdout),
                         {"stopped": False, "error": "no running hub found"})
