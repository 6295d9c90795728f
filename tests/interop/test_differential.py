"""Differential test: the reference Python hub vs. our Rust hub, request by request.

Both hubs run side by side (each on its own free loopback port, each with its
own fresh temporary database). Every test method starts a fresh pair, sends
the *same* sequence of raw HTTP requests to both (reference first, then ours)
and compares status codes and JSON bodies after normalising the values that
are volatile by nature:

* session ids (UUID v4) -> ``<uuid#n>`` numbered in order of first appearance
  per hub, so identity structure is still compared;
* timestamps (``YYYY-MM-DDTHH:MM:SSZ``, the only format either hub may emit)
  -> ``<ts>``;
* ``instance_id`` (checked against the ``mh1-`` + 20 hex format and the
  ``X-Arc-Instance`` header) and ``storage_path`` (checked to be the hub's own
  database) -> placeholders;
* ``remaining_sec`` of a pending shutdown (checked to be in range).

Message and task ids are deterministic on fresh databases and are compared.

Where our hub deliberately differs (the fixes and extensions listed in
docs/COMPATIBILITY.md) the case names an entry of ``DEVIATIONS`` below; each
entry records the section that documents it and a check asserting that the
reference does what our docs say it does (the *Reference:* notes of
docs/PROTOCOL.md) *and* that our hub does what we documented. Everything else
must match exactly.

Run from the repository root:

    ARC_BIN=target/debug/arc <venv>/bin/python -m unittest tests.interop.test_differential -v

``sys.executable`` must be an interpreter with ``megastructure-arc==0.1.1``
installed (it runs the reference hub as ``python -m arc``).
"""

import http.client
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ARC_BIN = os.environ.get("ARC_BIN") or str(REPO_ROOT / "target" / "debug" / "arc")
REF_CMD = [sys.executable, "-m", "arc"]

START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
HTTP_TIMEOUT = 10.0

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
INSTANCE_RE = re.compile(r"^mh1-[0-9a-f]{20}$")

REF_FEATURES = ["sse", "relay", "long_poll_keepalive", "subtask_rollup", "rpc_kinds",
                "capability_filter", "shutdown_control", "session_rename"]

NETWORK_ERROR = ("cannot enable remote access at runtime: hub is bound to 127.0.0.1 and the "
                 "listening socket cannot be rebound. Restart the hub with "
                 "`--host 0.0.0.0 --allow-remote` to expose it on the LAN.")

NOBODY = object()  # marker: send no body at all


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Resp:
    """One HTTP answer. ``status`` is None when the connection dropped."""

    def __init__(self, status, body, headers=None, raw=b""):
        self.status = status
        self.body = body          # parsed JSON, or text, or "<dropped: ...>"
        self.norm = body          # normalised copy (filled by the hub)
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.raw = raw

    @property
    def ok(self):
        return isinstance(self.body, dict) and self.body.get("ok") is True

    @property
    def result(self):
        return self.body.get("result") if isinstance(self.body, dict) else None

    @property
    def error(self):
        return self.body.get("error") if isinstance(self.body, dict) else None

    def show(self):
        body = self.norm
        if isinstance(body, (dict, list)):
            body = json.dumps(body, indent=1, sort_keys=True)
        text = f"{self.status} {body}"
        return text if len(text) <= 3000 else text[:3000] + " ...<truncated>"


def strict(value):
    """Tags bools and floats so that True != 1 and 1.0 != 1 in comparisons."""
    if isinstance(value, bool):
        return f"<bool {value}>"
    if isinstance(value, float):
        return f"<float {value!r}>"
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict(v) for v in value]
    return value


def _parse(status, headers, raw):
    text = raw.decode("utf-8", errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = text
    return Resp(status, body, headers, raw)


def http_request(port, method, path, data=None, headers=None, timeout=HTTP_TIMEOUT):
    """One request over a fresh connection; http.client gives header control."""
    headers = dict(headers or {})
    names = {k.lower() for k in headers}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host="host" in names, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        if data is not None and "content-length" not in names and "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        resp = conn.getresponse()
        raw = resp.read()
        return _parse(resp.status, dict(resp.getheaders()), raw)
    except (OSError, http.client.HTTPException) as exc:
        return Resp(None, f"<dropped: {type(exc).__name__}>")
    finally:
        conn.close()


def raw_request(port, payload, *, half_close=True, timeout=HTTP_TIMEOUT):
    """Sends bytes verbatim, optionally half-closes, reads the answer to EOF."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(payload)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            chunks = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    c = s.recv(65536)
                except ConnectionResetError:
                    break
                if not c:
                    break
                chunks.append(c)
                if _complete_http(b"".join(chunks)):
                    break
    except OSError as exc:
        return Resp(None, f"<dropped: {type(exc).__name__}>")
    data = b"".join(chunks)
    if not data:
        return Resp(None, "<dropped: empty>")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Resp(None, f"<garbage: {data[:80]!r}>")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip()] = v.strip()
    return _parse(status, hdrs, body)


def _complete_http(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return bool(m) and len(body) >= int(m.group(1))


class Hub:
    """A hub subprocess, its per-hub variables and its normaliser state."""

    def __init__(self, kind, workdir):
        self.kind = kind
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage = self.workdir / "arc.sqlite3"
        self.port = None
        self.proc = None
        self.vars = {}
        self.uuids = {}
        self.instance_id = None

    def start(self):
        prefix = [ARC_BIN] if self.kind == "ours" else list(REF_CMD)
        last = ""
        for _ in range(3):
            self.port = free_port()
            cmd = prefix + ["--host", "127.0.0.1", "--port", str(self.port),
                            "--storage", str(self.storage),
                            "--spool-dir", str(self.workdir / "spool"), "--quiet"]
            log = open(self.workdir / "hub.log", "ab")
            try:
                self.proc = subprocess.Popen(cmd, cwd=str(self.workdir), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT)
            finally:
                log.close()
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                r = http_request(self.port, "GET", "/v1/hub-info", timeout=2.0)
                if r.status == 200 and r.ok:
                    self.instance_id = r.result["instance_id"]
                    return self
                time.sleep(0.05)
            last = (self.workdir / "hub.log").read_text(errors="replace")[-2000:]
            self.stop()
        raise RuntimeError(f"{self.kind} hub did not start: {last}")

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)

    @property
    def base(self):
        return f"127.0.0.1:{self.port}"

    # -- normalisation -------------------------------------------------
    def normalise(self, value, key=None):
        if isinstance(value, dict):
            return {k: self.normalise(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self.normalise(v) for v in value]
        if isinstance(value, str):
            if key == "instance_id" and INSTANCE_RE.match(value):
                return "<instance>" if value == self.instance_id else f"<instance?{value}>"
            if key == "storage_path":
                ok = os.path.realpath(value) == os.path.realpath(self.storage) and os.path.isabs(value)
                return "<storage>" if ok else f"<storage?{value}>"
            if TS_RE.match(value):
                return "<ts>"
            if UUID_RE.match(value):
                if value not in self.uuids:
                    self.uuids[value] = f"<uuid#{len(self.uuids) + 1}>"
                return self.uuids[value]
        if key == "remaining_sec" and isinstance(value, int) and not isinstance(value, bool):
            return "<remaining>" if 0 <= value <= 3600 else f"<remaining?{value}>"
        return value


# ---------------------------------------------------------------------------
# Allowed deviations. Each check gets (testcase, ref Resp, our Resp) and must
# assert the reference behaviour our docs record and our documented one.
# ---------------------------------------------------------------------------

def _err(tc, r, status, message):
    tc.assertEqual(r.status, status, r.show())
    tc.assertEqual(r.body, {"ok": False, "error": message}, r.show())


def _dropped(tc, r):
    tc.assertIsNone(r.status, f"reference expected to drop the connection, got {r.show()}")


def _dev_identity(tc, ref, ours):
    # hub-info: implementation/version/features are ours; everything else equal.
    tc.assertEqual(ref.result["implementation"], "megastructure-arc")
    tc.assertEqual(ref.result["implementation_version"], "0.1.1")
    tc.assertEqual(ref.result["features"], REF_FEATURES)
    tc.assertEqual(ours.result["implementation"], "arc-rs")
    tc.assertRegex(ours.result["implementation_version"], r"^\d+\.\d+\.\d+")
    feats = ours.result["features"]
    tc.assertEqual(feats[:len(REF_FEATURES)], REF_FEATURES, "reference tokens first, all eight")
    for extra in feats[len(REF_FEATURES):]:
        tc.assertRegex(extra, r"^arc-rs:[a-z_]+$", "vendor tokens must be prefixed")
    # Our two added fields (docs/PROTOCOL.md, "Extensions"): the presence TTL, so
    # clients can pace keepalives, and the hub's pid, so `arc stop` can verify it.
    tc.assertNotIn("presence_ttl_sec", ref.result)
    tc.assertIsInstance(ours.result.get("presence_ttl_sec"), int)
    tc.assertNotIn("pid", ref.result)
    tc.assertEqual(ours.result.get("pid"), tc.ours.proc.pid)
    ours_only = ("implementation", "implementation_version", "features", "presence_ttl_sec", "pid")
    strip = lambda b: {k: v for k, v in b["result"].items() if k not in ours_only}
    tc.assertEqual(strip(ref.norm), strip(ours.norm))


def _dev_dashboard(tc, ref, ours):
    # We ship our own page (docs/COMPATIBILITY.md, "Dashboard and shutdown");
    # only status and content type must agree.
    for r in (ref, ours):
        tc.assertEqual(r.status, 200)
        tc.assertEqual(r.headers.get("content-type"), "text/html; charset=utf-8")
        tc.assertIn("<html", r.raw.decode("utf-8", "replace").lower())
    tc.assertEqual(ours.headers.get("x-arc-instance"), tc.ours.instance_id)


def _dev_method(tc, ref, ours):
    tc.assertEqual(ref.status, 501)
    tc.assertIn("Unsupported method", ref.raw.decode("utf-8", "replace"))
    tc.assertEqual(ours.status, 405, ours.show())
    tc.assertIs(ours.body.get("ok"), False, ours.show())
    tc.assertTrue(ours.headers.get("allow"), "405 must carry Allow")
    tc.assertEqual(ours.headers.get("x-arc-instance"), tc.ours.instance_id)


def _dev_head(tc, ref, ours):
    # HEAD is answered without a body by definition; same 501 -> 405 rule.
    tc.assertEqual(ref.status, 501)
    tc.assertEqual(ours.status, 405, ours.show())


def _dev_null_string(tc, ref, ours):
    tc.assertEqual(ref.status, 201, ref.show())
    tc.assertEqual(ref.result["from_agent"], "None")
    _err(tc, ours, 400, "from_agent is required")


def _dev_null_body(tc, ref, ours):
    tc.assertEqual(ref.status, 201, ref.show())
    tc.assertEqual(ref.result["body"], "None")
    tc.assertEqual(ours.status, 201, ours.show())
    tc.assertEqual(ours.result["body"], "")
    tc.assertEqual({**ref.norm["result"], "body": ""}, ours.norm["result"])


def _dev_null_kind(tc, ref, ours):
    _err(tc, ref, 400, "unsupported kind: none")
    tc.assertEqual(ours.status, 201, ours.show())
    tc.assertEqual(ours.result["kind"], "chat")


def _dev_truthy_bool_replace(tc, ref, ours):
    # {"replace": "false"}: reference replaces (truthy string); we read false -> 409.
    tc.assertEqual(ref.status, 201, ref.show())
    _err(tc, ours, 409, "agent_id already has an active session")


def _dev_bad_bool(tc, ref, ours):
    tc.assertEqual(ref.status, 201, ref.show())
    _err(tc, ours, 400, "replace must be a boolean")


def _dev_network_string_false(tc, ref, ours):
    _err(tc, ref, 400, NETWORK_ERROR)
    tc.assertEqual(ours.status, 200, ours.show())
    tc.assertEqual(ours.result, {"allow_remote": False, "listen_host": "127.0.0.1"})


def _dev_bool_wrong_type(tc, ref, ours):
    # {"replace": []}: falsy in Python (409 on a live agent); a type error for us.
    _err(tc, ref, 409, "agent_id already has an active session")
    _err(tc, ours, 400, "replace must be a boolean")


def _dev_network_wrong_type(tc, ref, ours):
    tc.assertEqual(ref.norm, {"ok": True, "result": {"allow_remote": False, "listen_host": "127.0.0.1"}})
    _err(tc, ours, 400, "allow_remote must be a boolean")


def _dev_network_bad_bool(tc, ref, ours):
    _err(tc, ref, 400, NETWORK_ERROR)
    _err(tc, ours, 400, "allow_remote must be a boolean")


def _dev_repr_string(field):
    def check(tc, ref, ours):
        tc.assertIn(ref.status, (200, 201), ref.show())
        _err(tc, ours, 400, f"{field} must be a string")
    return check


def _dev_int_bool(field, ref_check):
    def check(tc, ref, ours):
        ref_check(tc, ref)
        _err(tc, ours, 400, f"{field} must be an integer")
    return check


def _ref_created(tc, ref):
    tc.assertIn(ref.status, (200, 201), ref.show())


def _ref_ttl_too_small(tc, ref):
    _err(tc, ref, 400, "ttl_sec must be at least 5")


def _dev_ttl_max(tc, ref, ours):
    tc.assertEqual(ref.status, 201, ref.show())
    _err(tc, ours, 400, "ttl_sec must be at most 315360000")


def _dev_ttl_overflow(tc, ref, ours):
    _dropped(tc, ref)
    _err(tc, ours, 400, "ttl_sec must be at most 315360000")


def _dev_crash_400(message=None):
    def check(tc, ref, ours):
        _dropped(tc, ref)
        tc.assertEqual(ours.status, 400, ours.show())
        tc.assertIs(ours.body.get("ok"), False, ours.show())
        if message is not None:
            tc.assertEqual(ours.error, message, ours.show())
    return check


def _dev_crash_404_or_400(tc, ref, ours):
    _dropped(tc, ref)
    tc.assertIn(ours.status, (400, 404), ours.show())
    tc.assertIs(ours.body.get("ok"), False, ours.show())


def _dev_nan_int(tc, ref, ours):
    # Python maps NaN to int() ValueError -> field error; we reject NaN as malformed
    # JSON (docs/PROTOCOL.md, "Body parsing") or, accepted too, as the same
    # field error.
    _err(tc, ref, 400, "reply_to must be an integer")
    tc.assertEqual(ours.status, 400, ours.show())
    tc.assertIn(ours.error, ("malformed JSON", "reply_to must be an integer"))


def _dev_nonfinite(tc, ref, ours):
    # 1e400 parses to inf in Python, which it stores and echoes as the invalid
    # JSON token Infinity; we refuse non-finite numbers as malformed JSON.
    tc.assertEqual(ref.status, 201, ref.show())
    tc.assertIn(b"Infinity", ref.raw)
    _err(tc, ours, 400, "malformed JSON")


def _dev_surrogate(tc, ref, ours):
    # A lone surrogate escape: the reference leaks a Python codec message
    # (a ValueError, so 400); we refuse the body as malformed JSON.
    tc.assertEqual(ref.status, 400, ref.show())
    tc.assertIn("surrogates not allowed", ref.error)
    _err(tc, ours, 400, "malformed JSON")


def _ref_ttl_truncated_small(tc, ref):
    _err(tc, ref, 400, "ttl_sec must be at least 5")


def _dev_empty_thread(tc, ref, ours):
    tc.assertEqual(ref.status, 201, ref.show())
    tc.assertEqual(ref.result["thread_id"], "")
    tc.assertEqual(ours.status, 201, ours.show())
    tc.assertIsNone(ours.result["thread_id"])
    tc.assertEqual({**ref.norm["result"], "thread_id": None}, ours.norm["result"])


def _dev_strip_thread(tc, ref, ours):
    tc.assertEqual(ref.result["thread_id"], " spaced ")
    tc.assertEqual(ours.result["thread_id"], "spaced")
    tc.assertEqual({**ref.norm["result"], "thread_id": "spaced"}, ours.norm["result"])


def _dev_pct_rename(tc, ref, ours):
    _err(tc, ref, 404, "no active session for agent_id")
    tc.assertEqual(ours.status, 200, ours.show())
    tc.assertEqual(ours.result["agent_id"], "a b")


def _dev_pct_inbox(tc, ref, ours):
    tc.assertEqual(ref.norm, {"ok": True, "result": []})
    tc.assertEqual(ours.status, 200, ours.show())
    tc.assertEqual([m["to_agent"] for m in ours.result], ["a b"])


def _dev_pct_thread(tc, ref, ours):
    _err(tc, ref, 404, "thread not found")
    tc.assertEqual(ours.status, 200, ours.show())
    tc.assertEqual(ours.result["thread"]["thread_id"], "t x")


def _dev_forbidden(tc, ref, ours):
    tc.assertIn(ref.status, (200, 201), ref.show())
    tc.assertEqual(ours.status, 403, ours.show())
    tc.assertIs(ours.body.get("ok"), False, ours.show())
    tc.assertNotIn("access-control-allow-origin", ours.headers)


def _dev_thread_window(tail):
    # Thread detail honours limit (first N) and tail (last N); the reference
    # ignores both (docs/COMPATIBILITY.md, "Long-poll and streaming").
    # Everything but the message window is equal.
    def check(tc, ref, ours):
        tc.assertEqual(ref.status, 200, ref.show())
        tc.assertEqual(ours.status, 200, ours.show())
        everything = ref.norm["result"]["messages"]
        tc.assertGreater(len(everything), 1, "the case needs more than one message")
        want = everything[-1:] if tail else everything[:1]
        tc.assertEqual(ours.norm["result"]["messages"], want)
        strip = lambda r: {k: v for k, v in r.norm["result"].items() if k != "messages"}
        tc.assertEqual(strip(ref), strip(ours))
    return check


def _dev_rpc_rollup_tasks(tc, ref, ours):
    # A task_result that completes the last open child rolls the parent up at
    # once; the reference leaves the parent open until an explicit completion
    # (docs/PROTOCOL.md, "Tasks, RPC and rollup").
    tc.assertEqual([t["status"] for t in ref.result], ["open"])
    tc.assertEqual(ours.norm, {"ok": True, "result": []})


def _dev_rpc_rollup_late(tc, ref, ours):
    tc.assertIs(ref.body.get("parent_completed"), True, ref.show())
    tc.assertNotIn("parent_completed", ours.body, "parent was already rolled up")
    tc.assertEqual(ref.norm["result"], ours.norm["result"])


def _dev_short_body(tc, ref, ours):
    # The reference parses whatever arrived before EOF (here "{}"); we refuse a
    # body shorter than its Content-Length (docs/PROTOCOL.md, "Body parsing").
    _err(tc, ref, 400, "name is required")
    _err(tc, ours, 400, "request body is shorter than Content-Length")


def _dev_pct_thread_decoded(tc, ref, ours):
    _err(tc, ref, 404, "thread not found")
    tc.assertEqual(ours.status, 200, ours.show())
    tc.assertEqual(ours.result["thread"]["thread_id"], "t-chat")


def _dev_deep_rollup(tc, ref, ours):
    tc.assertEqual(ref.status, 200, ref.show())
    tc.assertEqual(ours.status, 200, ours.show())
    tc.assertEqual(ref.norm, ours.norm)  # the response itself agrees; the notices differ


def _dev_deep_rollup_tasks(tc, ref, ours):
    statuses = lambda r: [(t["task_id"], t["status"]) for t in r.result]
    tc.assertEqual(statuses(ref), [(1, "open"), (2, "done"), (3, "done")])
    tc.assertEqual(statuses(ours), [(1, "done"), (2, "done"), (3, "done")])


def _dev_deep_rollup_notices(tc, ref, ours):
    bodies = lambda r: [m["body"] for m in r.result if m["from_agent"] == "system"]
    tc.assertEqual(bodies(ref), ["All 1 subtasks of task 2 are complete."])
    tc.assertEqual(bodies(ours), ["All 1 subtasks of task 2 are complete.",
                                  "All 1 subtasks of task 1 are complete."])


def _dev_id_cap(tc, ref, ours):
    tc.assertEqual(ref.status, 201, ref.show())
    tc.assertGreaterEqual(ref.result["id"], 2 ** 53)
    tc.assertEqual(ours.status, 500, ours.show())
    tc.assertIs(ours.body.get("ok"), False, ours.show())


def _dev_id_cap_list(tc, ref, ours):
    tc.assertEqual([m["id"] for m in ref.result], [1, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 1])
    tc.assertEqual([m["id"] for m in ours.result], [1, 2 ** 53 - 1])


def _dev_sse(tc, ref, ours):
    # We add `id:` lines (docs/COMPATIBILITY.md, "Long-poll and streaming");
    # the data lines must be identical.
    tc.assertEqual(ref["data"], ours["data"])
    tc.assertEqual(ref["ids"], [])
    tc.assertEqual(ours["ids"], [str(d["id"]) for d in ours["data"]])


def _dev_immediate_shutdown(tc, ref, ours):
    tc.assertEqual(ref.norm, {"ok": True, "result": {"status": "shutdown_initiated"}})
    tc.assertEqual(ours.status, 200, ours.show())
    tc.assertEqual(ours.result.get("status"), "shutdown_initiated")


def _dev_chunked(tc, ref, ours):
    # The reference ignores Transfer-Encoding and reads an empty body; we
    # decode the chunks, so the request means what the client sent.
    tc.assertEqual((ref.status, ref.body.get("error")), (400, "name is required"), ref.show())
    tc.assertEqual(ours.status, 201, ours.show())
    tc.assertEqual(ours.result.get("name"), "chunky", ours.show())


def _dev_caps_repr(tc, ref, ours):
    tc.assertEqual(ref.status, 201, ref.show())
    tc.assertEqual(ref.result.get("capabilities"), ["{'a': 1}", "[1, 2]"], ref.show())
    tc.assertEqual((ours.status, ours.body.get("error")),
                   (400, "capabilities must not contain lists or objects"), ours.show())


# The section that documents each deviation, recorded with it and shown when
# its check fails: "COMPAT: X" is docs/COMPATIBILITY.md, "X", and "PROTOCOL: X"
# is docs/PROTOCOL.md, "X".
_C_IDENT = "COMPAT: Identification"
_C_LEASES = "COMPAT: Presence, recovery and leases"
_C_WIRE = "COMPAT: Wire and validation"
_C_STREAM = "COMPAT: Long-poll and streaming"
_C_SECURITY = "COMPAT: Security"  # "Security (still no authentication, as in v1)"
_C_DASH = "COMPAT: Dashboard and shutdown"
_P_BODY = "PROTOCOL: Body parsing"

DEVIATIONS = {
    # key: (documenting section, what differs, check)
    "chunked": (_C_WIRE, "a chunked POST body is decoded, not read as empty", _dev_chunked),
    "repr-capabilities": (_C_WIRE, "a list or object inside capabilities is 400, not Python repr",
                          _dev_caps_repr),
    "identity": (_C_IDENT, "implementation, implementation_version and features name our hub "
                 "(all eight reference tokens plus arc-rs: extras); presence_ttl_sec and pid added",
                 _dev_identity),
    "dashboard": (_C_DASH, "our own dashboard page; only status/content type compared", _dev_dashboard),
    "method-405": (_C_WIRE, "unsupported method: JSON 405 with Allow instead of HTML 501", _dev_method),
    "head-405": (_C_WIRE, "HEAD: 405 instead of 501", _dev_head),
    "null-from": (_C_WIRE, "from_agent null is 400 from_agent is required, not sender 'None'",
                  _dev_null_string),
    "null-body": (_C_WIRE, "body null is '' not 'None'", _dev_null_body),
    "null-kind": (_C_WIRE, "kind null means chat, not 'unsupported kind: none'", _dev_null_kind),
    "bool-string-false": (_C_WIRE, "replace: \"false\" is false (409), not truthy",
                          _dev_truthy_bool_replace),
    "bool-bad": (_C_WIRE, "replace: \"maybe\" is 400 replace must be a boolean", _dev_bad_bool),
    "network-string-false": (_C_WIRE, "allow_remote: \"false\" is false, not a request for remote",
                             _dev_network_string_false),
    "bool-wrong-type": (_C_WIRE, "replace: [] is 400, not falsy", _dev_bool_wrong_type),
    "network-wrong-type": (_C_WIRE, "allow_remote: {} is 400, not falsy", _dev_network_wrong_type),
    "network-bad-bool": (_C_WIRE, "allow_remote: \"maybe\" is 400 allow_remote must be a boolean",
                         _dev_network_bad_bool),
    "repr-agent_id": (_C_WIRE, "object in agent_id is 400, not Python repr", _dev_repr_string("agent_id")),
    "repr-name": (_C_WIRE, "array in channel name is 400, not Python repr", _dev_repr_string("name")),
    "repr-from_agent": (_C_WIRE, "object in from_agent is 400", _dev_repr_string("from_agent")),
    "repr-body": (_C_WIRE, "array in body is 400", _dev_repr_string("body")),
    "int-bool-reply": (_C_WIRE, "reply_to: true is 400, not 1",
                       _dev_int_bool("reply_to", _ref_created)),
    "int-frac-reply": (_C_WIRE, "reply_to: 2.9 is 400, not 2",
                       _dev_int_bool("reply_to", _ref_created)),
    "int-bool-ttl": (_C_WIRE, "ttl_sec: true is a type error, not 1 (< 5)",
                     _dev_int_bool("ttl_sec", _ref_ttl_too_small)),
    "int-frac-ttl": (_C_WIRE, "ttl_sec: 30.5 is 400, not 30",
                     _dev_int_bool("ttl_sec", _ref_created)),
    "ttl-max": (_C_LEASES, "ttl_sec above 315360000 is 400", _dev_ttl_max),
    "ttl-overflow": (_C_LEASES, "huge ttl_sec: 400 instead of a dropped connection",
                     _dev_ttl_overflow),
    "crash-int": (_C_WIRE, "out-of-range/Infinity integers: 400 instead of a dropped connection",
                  _dev_crash_400()),
    "crash-task-id": (_C_WIRE, "task id beyond 64 bits: 404/400 instead of a drop",
                      _dev_crash_404_or_400),
    "nan-int": (_P_BODY, "NaN: malformed JSON or field error", _dev_nan_int),
    "nonfinite": (_C_WIRE, "1e400 (inf) anywhere is malformed JSON, never stored", _dev_nonfinite),
    "surrogate": (_P_BODY, "lone surrogate: 400 malformed JSON instead of a Python codec text",
                  _dev_surrogate),
    "int-negfrac-ttl": (_C_WIRE, "ttl_sec: -0.5 is a type error, not 0 (< 5)",
                        _dev_int_bool("ttl_sec", _ref_ttl_truncated_small)),
    "empty-thread": (_C_WIRE, "thread_id \"\" is stored as null", _dev_empty_thread),
    "strip-thread": (_C_WIRE, "thread ids are trimmed", _dev_strip_thread),
    "pct-rename": (_C_WIRE, "path parameters are percent-decoded (rename)", _dev_pct_rename),
    "pct-inbox": (_C_WIRE, "path parameters are percent-decoded (inbox)", _dev_pct_inbox),
    "pct-thread": (_C_WIRE, "path parameters are percent-decoded (thread)", _dev_pct_thread),
    "id-cap": (_C_WIRE, "message id 2^53 is a 500 and nothing is inserted", _dev_id_cap),
    "sse-id": (_C_STREAM, "SSE events carry id: lines", _dev_sse),
    "thread-limit": (_C_STREAM, "thread detail honours limit (first N)", _dev_thread_window(False)),
    "thread-tail": (_C_STREAM, "thread detail honours tail+limit (last N)", _dev_thread_window(True)),
    "rpc-rollup-tasks": (_C_LEASES, "task_result completing the last child rolls up the parent",
                         _dev_rpc_rollup_tasks),
    "rpc-rollup-late": (_C_LEASES, "so a later explicit completion has no parent left to complete",
                        _dev_rpc_rollup_late),
    "short-body": (_P_BODY, "body shorter than Content-Length is refused, not parsed",
                   _dev_short_body),
    "pct-thread-decoded": (_C_WIRE, "%2D in a thread id is decoded to '-'", _dev_pct_thread_decoded),
    "crash-query": (_C_WIRE, "query integer beyond 64 bits: 400 instead of a dropped connection",
                    _dev_crash_400()),
    "id-cap-list": (_C_WIRE, "nothing was inserted past 2^53-1", _dev_id_cap_list),
    "origin": (_C_SECURITY, "foreign Origin (incl. null) is 403 JSON, no CORS headers", _dev_forbidden),
    "host": (_C_SECURITY, "non-loopback Host on a loopback bind is 403 JSON", _dev_forbidden),
    "deep-rollup": (_C_LEASES, "rollup climbs the ancestor chain (arc-rs:deep_rollup)", _dev_deep_rollup),
    "deep-rollup-tasks": (_C_LEASES, "grandparent completed too", _dev_deep_rollup_tasks),
    "deep-rollup-notices": (_C_LEASES, "one rollup notice per level", _dev_deep_rollup_notices),
    "immediate-shutdown": (_C_DASH, "delay 0: one notice, counted as pending", _dev_immediate_shutdown),
}


class DifferentialTest(unittest.TestCase):
    """Fresh reference + ours hub pair per test; same requests to both."""

    cases_run = 0
    maxDiff = 6000

    @classmethod
    def setUpClass(cls):
        if not (os.path.isfile(ARC_BIN) and os.access(ARC_BIN, os.X_OK)):
            raise unittest.SkipTest(f"ARC_BIN is not an executable file: {ARC_BIN!r}")
        check = subprocess.run([sys.executable, "-c", "import arc; print(arc.__version__)"],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0 or check.stdout.strip() != "0.1.1":
            raise unittest.SkipTest("sys.executable lacks megastructure-arc 0.1.1")
        cls.tmp = Path(tempfile.mkdtemp(prefix="arc-diff-"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        print(f"\n[differential] {DifferentialTest.cases_run} request cases compared",
              file=sys.stderr)

    def setUp(self):
        d = self.tmp / self._testMethodName
        self.ref = Hub("ref", d / "ref")
        self.ours = Hub("ours", d / "ours")
        self.addCleanup(self.ref.stop)   # cleanups also run if setUp fails half-way
        self.addCleanup(self.ours.stop)
        self.ref.start()
        self.ours.start()

    def tearDown(self):
        self.ref.stop()
        self.ours.stop()

    # -- the core ------------------------------------------------------
    def send(self, hub, method, path, body=NOBODY, *, raw=None, headers=None, data=None,
             timeout=HTTP_TIMEOUT):
        if "{" in path:
            path = path.format_map(hub.vars)
        hdrs = {k: (v.format_map(hub.vars) if "{" in v else v) for k, v in (headers or {}).items()}
        if raw is not None:
            payload = raw(hub) if callable(raw) else raw
            r = raw_request(hub.port, payload)
        else:
            if callable(body):
                body = body(hub)
            if data is None and body is not NOBODY:
                data = json.dumps(body).encode("utf-8")
                hdrs.setdefault("Content-Type", "application/json")
            r = http_request(hub.port, method, path, data, hdrs, timeout=timeout)
        r.norm = hub.normalise(r.body)
        return r

    def case(self, name, method, path, body=NOBODY, *, dev=None, save=None, **kw):
        """Sends one request to both hubs and compares. Returns (ref, ours)."""
        DifferentialTest.cases_run += 1
        ref = self.send(self.ref, method, path, body, **kw)
        ours = self.send(self.ours, method, path, body, **kw)
        if save:
            for hub, r in ((self.ref, ref), (self.ours, ours)):
                try:
                    hub.vars.update(save(r))
                except Exception:  # noqa: BLE001 - a failed save shows up in the compare
                    pass
        shown = body if not callable(body) and body is not NOBODY else ""
        label = f"[{name}] {method} {path} {json.dumps(shown)[:200] if shown != '' else ''}"
        with self.subTest(label):
            msg = f"\n{label}\n  REF : {ref.show()}\n  OURS: {ours.show()}"
            if dev is None:
                self.assertEqual((ref.status, strict(ref.norm)), (ours.status, strict(ours.norm)), msg)
                if isinstance(ours.body, dict):
                    self.assertEqual(ours.headers.get("content-type"), "application/json", msg)
                    self.assertEqual(ours.headers.get("x-arc-instance"), self.ours.instance_id, msg)
            else:
                item, _, check = DEVIATIONS[dev]
                try:
                    check(self, ref, ours)
                except AssertionError as exc:
                    raise AssertionError(f"deviation {dev} ({item}) not as documented: {exc}{msg}")
        return ref, ours

    def get(self, name, path, **kw):
        return self.case(name, "GET", path, **kw)

    def post(self, name, path, body=NOBODY, **kw):
        return self.case(name, "POST", path, body, **kw)

    # -- fixtures shared by several tests ------------------------------
    def register(self, agent, **extra):
        self.post(f"register {agent}", "/v1/sessions", {"agent_id": agent, **extra},
                  save=lambda r: {f"sid_{agent}": r.result["session_id"]})

    # ==================================================================
    def test_01_hub_info_and_routing(self):
        self.get("hub-info", "/v1/hub-info", dev="identity")
        self.get("hub-info query ignored", "/v1/hub-info?x=1", dev="identity")
        self.get("dashboard", "/", dev="dashboard")
        self.get("dashboard query", "/?a=b", dev="dashboard")
        for path in ("/index.html", "/v1", "/v1/", "/v1/channels/", "/v1/unknown", "/v1/claims/refresh",
                     "/v1/locks/release", "/v1/tasks/1/complete", "/v1/sessions", "/v1/sessions/x",
                     "/v1/shutdown/cancel", "/v1/network", "/v1/threads/", "/v1/inbox/",
                     "/v1/inbox/a/b", "/V1/CHANNELS", "/v1/tasks/1/complete/", "/v1/hub-info/"):
            self.get(f"404 GET {path}", path)
        for path in ("/v1/agents", "/v1/hub-info", "/v1/threads", "/v1/threads/x", "/v1/inbox/x",
                     "/v1/bootstrap", "/v1/stream", "/v1/events", "/", "/v1/tasks",
                     "/v1/tasks/abc/complete", "/v1/tasks/-1/complete", "/v1/sessions/x/y/rename",
                     "/v1/sessions/x", "/v1/channels/"):
            self.post(f"404 POST {path}", path, {"a": 1})
        self.post("404 POST unknown no body", "/v1/nothing")
        for path in ("/v1/channels", "/v1/sessions", "/v1/sessions/", "/v1/sessions/x/rename",
                     "/v1/claims", "/v1/messages", "/"):
            self.case(f"404 DELETE {path}", "DELETE", path)
        self.case("DELETE unknown session", "DELETE", "/v1/sessions/nope")
        self.case("DELETE unknown session w/ query", "DELETE", "/v1/sessions/nope?x=1")
        for method in ("PUT", "PATCH", "OPTIONS"):
            self.case(f"{method} unsupported", method, "/v1/channels", dev="method-405")
        self.case("HEAD unsupported", "HEAD", "/", dev="head-405")
        self.get("channels query ignored", "/v1/channels?name=zzz")
        # Python's BaseHTTPRequestHandler (3.11.4+) collapses leading slashes, so the
        # reference serves these, and so do we (docs/PROTOCOL.md, "Framing"); not a
        # deviation.
        self.get("leading double slash", "//v1/channels")
        self.get("leading triple slash", "///v1/agents?x=1")

    def test_02_body_framing(self):
        def raw_post(path, headers, body=b""):
            def build(hub):
                head = f"POST {path} HTTP/1.1\r\nHost: {hub.base}\r\n" + "".join(
                    f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
                return head.encode() + body
            return build
        self.post("CL not integer", "/v1/channels",
                  raw=raw_post("/v1/channels", {"Content-Length": "abc"}))
        self.post("CL negative", "/v1/channels",
                  raw=raw_post("/v1/channels", {"Content-Length": "-5"}))
        self.post("CL over cap", "/v1/channels",
                  raw=raw_post("/v1/channels", {"Content-Length": "8385537"}))
        self.post("CL at cap, short body, half-closed", "/v1/channels",
                  raw=raw_post("/v1/channels", {"Content-Length": "8385536"}, b"{}"),
                  dev="short-body")
        self.post("CL zero -> {}", "/v1/channels",
                  raw=raw_post("/v1/channels", {"Content-Length": "0"}))
        self.post("no CL -> {}", "/v1/channels", raw=raw_post("/v1/channels", {}))
        self.post("empty body", "/v1/messages", data=b"")
        self.post("invalid utf-8", "/v1/channels", data=b'{"name": "\xff\xfe"}')
        self.post("malformed JSON", "/v1/channels", data=b'{"name": ')
        self.post("BOM", "/v1/channels", data=b'\xef\xbb\xbf{"name": "x"}')
        self.post("array body", "/v1/channels", data=b'["name"]')
        self.post("string body", "/v1/channels", data=b'"name"')
        self.post("null body", "/v1/channels", data=b"null")
        self.post("number body", "/v1/channels", data=b"5")
        self.post("trailing garbage", "/v1/channels", data=b'{"name": "x"} x')
        self.post("whitespace only", "/v1/channels", data=b"   ")
        self.post("form content-type works", "/v1/channels", data=b'{"name": "form-ch"}',
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.post("text/plain works", "/v1/channels", data=b'{"name": "plain-ch"}',
                  headers={"Content-Type": "text/plain"})
        self.post("no content-type works", "/v1/channels", data=b'{"name": "noct-ch"}')
        self.post("GET-style body on DELETE ignored", "/v1/channels", {"name": "del-body"})
        self.case("DELETE with body", "DELETE", "/v1/sessions/nope", data=b'{"x": 1}')
        self.post("body on task complete must be object", "/v1/tasks/1/complete", data=b"[1]")
        self.post("malformed before route validation", "/v1/claims", data=b"{")
        self.post("malformed on shutdown/cancel", "/v1/shutdown/cancel", data=b"nope")
        self.post("malformed on network", "/v1/network", data=b"nope")
        self.post("duplicate keys: last wins", "/v1/channels",
                  data=b'{"name": "dup-a", "name": "dup-b"}')
        self.post("unicode escapes", "/v1/channels", {"name": "caf\u00e9 \U0001F600"})
        self.get("channels after framing", "/v1/channels")
        # Last, because the two hubs end up with different channel lists. The reference
        # reads a chunked POST as an empty body; we decode it (COMPATIBILITY.md).
        self.post("chunked body", "/v1/channels",
                  raw=raw_post("/v1/channels", {"Transfer-Encoding": "chunked"},
                               b'12\r\n{"name": "chunky"}\r\n0\r\n\r\n'), dev="chunked")

    def test_03_sessions_agents_bootstrap(self):
        self.post("register missing agent_id", "/v1/sessions", {})
        self.post("register null agent_id", "/v1/sessions", {"agent_id": None})
        self.post("register blank agent_id", "/v1/sessions", {"agent_id": "   "})
        self.post("register caps not list", "/v1/sessions", {"agent_id": "x", "capabilities": "a"})
        self.post("register caps object", "/v1/sessions", {"agent_id": "x", "capabilities": {"a": 1}})
        self.post("register metadata list", "/v1/sessions", {"agent_id": "x", "metadata": [1]})
        self.post("register metadata string", "/v1/sessions", {"agent_id": "x", "metadata": "m"})
        self.post("register order: caps before metadata", "/v1/sessions",
                  {"agent_id": "x", "capabilities": 1, "metadata": 1})
        self.post("register order: agent_id first", "/v1/sessions", {"capabilities": 1})
        self.register("alice", display_name="Alice", capabilities=["py", "rust"],
                      metadata={"k": [1, 2]})
        self.post("register conflict", "/v1/sessions", {"agent_id": "alice"})
        self.post("register conflict replace false", "/v1/sessions",
                  {"agent_id": "alice", "replace": False})
        self.post("register conflict replace 0", "/v1/sessions", {"agent_id": "alice", "replace": 0})
        self.post("register replace", "/v1/sessions", {"agent_id": "alice", "replace": True,
                  "display_name": "  Alice 2  ", "capabilities": ["py"]},
                  save=lambda r: {"sid_alice2": r.result["session_id"]})
        self.post("register replace 1", "/v1/sessions", {"agent_id": "alice", "replace": 1,
                  "capabilities": ["py"], "display_name": "Alice"},
                  save=lambda r: {"sid_alice3": r.result["session_id"]})
        self.register("  bob  ")
        self.register("carol", display_name="", capabilities=[1, None, "x"])
        self.register("dave", display_name=None, metadata=None, capabilities=None)
        self.post("register numeric agent_id", "/v1/sessions", {"agent_id": 123})
        self.post("register bool agent_id", "/v1/sessions", {"agent_id": True})
        self.post("register float display", "/v1/sessions", {"agent_id": "eve", "display_name": 1.5})
        self.post("register odd id", "/v1/sessions", {"agent_id": "we/ird \"id\""})
        self.get("agents", "/v1/agents")
        self.get("agents capability py", "/v1/agents?capability=py")
        self.get("agents capability rust (replaced away)", "/v1/agents?capability=rust")
        self.get("agents capability None-string", "/v1/agents?capability=None")
        self.get("agents capability empty = absent", "/v1/agents?capability=")
        self.get("agents capability repeated: first wins", "/v1/agents?capability=x&capability=py")
        self.get("agents as=alice", "/v1/agents?as=alice")
        self.get("agents as unknown", "/v1/agents?as=nobody&capability=1")
        # rename
        self.post("rename", "/v1/sessions/alice/rename", {"display_name": "  New Alice "})
        self.post("rename missing", "/v1/sessions/alice/rename", {})
        self.post("rename blank", "/v1/sessions/alice/rename", {"display_name": "  "})
        self.post("rename null", "/v1/sessions/alice/rename", {"display_name": None})
        self.post("rename 64", "/v1/sessions/alice/rename", {"display_name": "x" * 64})
        self.post("rename 65", "/v1/sessions/alice/rename", {"display_name": "y" * 65})
        self.post("rename 64 after strip", "/v1/sessions/alice/rename",
                  {"display_name": "  " + "z" * 64 + "  "})
        self.post("rename 64 astral", "/v1/sessions/alice/rename", {"display_name": "\U0001F600" * 64})
        self.post("rename 65 astral", "/v1/sessions/alice/rename", {"display_name": "\U0001F600" * 65})
        self.post("rename number", "/v1/sessions/alice/rename", {"display_name": 42})
        self.post("rename unknown agent", "/v1/sessions/nobody/rename", {"display_name": "n"})
        self.post("rename invalid before lookup", "/v1/sessions/nobody/rename", {"display_name": ""})
        self.post("rename no body", "/v1/sessions/alice/rename")
        self.get("agents after rename", "/v1/agents")
        # bootstrap
        self.get("bootstrap missing", "/v1/bootstrap")
        self.get("bootstrap empty", "/v1/bootstrap?agent_id=")
        self.get("bootstrap alice", "/v1/bootstrap?agent_id=alice")
        self.get("bootstrap unknown", "/v1/bootstrap?agent_id=nobody")
        self.post("msg public", "/v1/messages", {"from_agent": "bob", "body": "hi"})
        self.post("msg dm to alice", "/v1/messages", {"from_agent": "bob", "to_agent": "alice", "body": "psst"})
        self.post("msg dm to carol", "/v1/messages", {"from_agent": "bob", "to_agent": "carol", "body": "c"})
        self.get("bootstrap alice sees dm", "/v1/bootstrap?agent_id=alice")
        self.get("bootstrap dave (public only)", "/v1/bootstrap?agent_id=dave")
        self.get("bootstrap carol", "/v1/bootstrap?agent_id=carol")
        self.get("bootstrap bob (own DMs to others invisible)", "/v1/bootstrap?agent_id=bob")
        # delete
        self.case("delete replaced (inactive) session", "DELETE", "/v1/sessions/{sid_alice}")
        self.case("delete alice3", "DELETE", "/v1/sessions/{sid_alice3}")
        self.case("delete alice3 again", "DELETE", "/v1/sessions/{sid_alice3}")
        self.case("delete unknown", "DELETE", "/v1/sessions/00000000-0000-4000-8000-000000000000")
        self.case("delete by agent id is not found", "DELETE", "/v1/sessions/bob")
        self.post("rename after delete", "/v1/sessions/alice/rename", {"display_name": "gone"})
        self.get("bootstrap after delete", "/v1/bootstrap?agent_id=alice")
        self.post("re-register after delete", "/v1/sessions", {"agent_id": "alice"})
        self.get("agents final", "/v1/agents")

    def test_04_channels(self):
        self.get("channels seeded", "/v1/channels")
        self.post("create missing name", "/v1/channels", {})
        self.post("create blank name", "/v1/channels", {"name": " \t "})
        self.post("create metadata not object", "/v1/channels", {"name": "m", "metadata": [1]})
        self.post("create metadata null", "/v1/channels", {"name": "mnull", "metadata": None})
        self.post("create", "/v1/channels", {"name": " dev ", "created_by": "alice",
                                               "metadata": {"topic": "d"}})
        self.post("create existing", "/v1/channels", {"name": "dev", "created_by": "bob",
                                                        "metadata": {"topic": "other"}})
        self.post("create general (exists)", "/v1/channels", {"name": "general"})
        self.post("create created_by empty", "/v1/channels", {"name": "empty-by", "created_by": ""})
        self.post("create created_by blank", "/v1/channels", {"name": "blank-by", "created_by": "  "})
        self.post("create created_by number", "/v1/channels", {"name": "num-by", "created_by": 7})
        self.post("create odd name", "/v1/channels", {"name": "a b #c/d"})
        self.post("create numeric name", "/v1/channels", {"name": 5})
        self.get("channels list", "/v1/channels")
        self.post("post to new channel", "/v1/messages", {"from_agent": "a", "channel": "dev", "body": "x"})
        self.post("post to odd channel", "/v1/messages", {"from_agent": "a", "channel": "a b #c/d", "body": "x"})
        self.get("read odd channel (query decoded)", "/v1/messages?channel=a+b+%23c%2Fd")
        self.get("read odd channel %20", "/v1/messages?channel=a%20b%20%23c/d")

    def test_05_post_message_validation(self):
        P = "/v1/messages"
        m = lambda **kw: {"from_agent": "alice", "body": "b", **kw}
        self.post("post", P, m())
        self.post("ptid before from_agent", P, {"parent_task_id": "x"})
        self.post("ptid unknown before from_agent", P, {"parent_task_id": 99})
        self.post("ptid empty string", P, m(parent_task_id=""))
        self.post("ptid float string", P, m(parent_task_id="2.5"))
        self.post("ptid list", P, m(parent_task_id=[1]))
        self.post("ptid null ok", P, m(parent_task_id=None))
        self.post("from_agent missing", P, {"body": "b"})
        self.post("from_agent empty", P, {"from_agent": "", "body": "b"})
        self.post("from_agent blank", P, {"from_agent": "   ", "body": "b"})
        self.post("from_agent number", P, {"from_agent": 12, "body": "b"})
        self.post("from_agent stripped", P, {"from_agent": "  al  ", "body": "b"})
        self.post("from_agent false", P, {"from_agent": False, "body": "b"})
        self.post("to_agent blank -> public", P, m(to_agent="  "))
        self.post("to_agent number", P, m(to_agent=5))
        self.post("to_agent null", P, m(to_agent=None))
        self.post("channel blank", P, m(channel="  "))
        self.post("channel empty -> general", P, m(channel=""))
        self.post("channel 0 -> general", P, m(channel=0))
        self.post("channel false -> general", P, m(channel=False))
        self.post("channel null -> general", P, m(channel=None))
        self.post("channel stripped", P, m(channel=" general "))
        self.post("channel unknown", P, m(channel="nope"))
        self.post("channel unknown check is last", P, m(channel="nope", metadata=5))
        self.post("dm default channel direct", P, m(to_agent="bob"))
        self.post("dm any channel label", P, m(to_agent="bob", channel="made-up"))
        self.post("channel number unknown", P, m(channel=7))
        self.post("kind unsupported", P, m(kind="Shout"))
        self.post("kind empty", P, m(kind=""))
        self.post("kind case/space", P, m(kind="  TASK "))
        self.post("kind number", P, m(kind=3))
        self.post("kind before body check", P, {"from_agent": "a", "kind": "x"})
        for k in ("chat", "notice", "claim", "release", "artifact", "task_result"):
            self.post(f"kind {k}", P, m(kind=k))
        self.post("body missing", P, {"from_agent": "a"})
        self.post("body empty", P, {"from_agent": "a", "body": ""})
        self.post("body whitespace kept", P, {"from_agent": "a", "body": "  padded  "})
        self.post("body number", P, {"from_agent": "a", "body": 0})
        self.post("body false", P, {"from_agent": "a", "body": False})
        self.post("body max", P, {"from_agent": "a", "body": "\u00e9" * 128000})
        self.post("body max+1", P, {"from_agent": "a", "body": "e" * 128001})
        self.post("body astral max", P, {"from_agent": "a", "body": "\U0001F600" * 128000})
        self.post("attachments not list", P, m(attachments="x"))
        self.post("attachments object", P, m(attachments={"type": "text"}))
        self.post("attachments {} -> none", P, m(attachments={}))
        self.post("attachments empty string -> none", P, m(attachments=""))
        self.post("attachments null -> none", P, m(attachments=None))
        self.post("attachments too many", P, m(attachments=[{"type": "text", "content": i} for i in range(33)]))
        self.post("attachments 32 ok", P, m(attachments=[{"type": "text", "content": i} for i in range(32)]))
        self.post("attachment not object", P, m(attachments=["x"]))
        self.post("attachment type missing", P, m(attachments=[{}]))
        self.post("attachment type bad", P, m(attachments=[{"type": " Image "}]))
        self.post("attachment type spaced", P, m(attachments=[{"type": " text ", "content": "c"}]))
        self.post("attachment text no content", P, m(attachments=[{"type": "text"}]))
        self.post("attachment json null content", P, m(attachments=[{"type": "json", "content": None}]))
        self.post("attachment json object", P, m(attachments=[{"type": "json", "content": {"a": [1, 2.5]},
                                                                "extra": 1}]))
        self.post("attachment code language", P, m(attachments=[{"type": "code", "content": "x",
                                                                   "language": 3}]))
        self.post("attachment code null language", P, m(attachments=[{"type": "code", "content": "x",
                                                                        "language": None}]))
        self.post("attachment text language dropped", P, m(attachments=[{"type": "text", "content": "x",
                                                                           "language": "py"}]))
        self.post("attachment size 42666 e-acute", P,
                  m(attachments=[{"type": "text", "content": "\u00e9" * 42666}]))
        self.post("attachment size 42667 e-acute", P,
                  m(attachments=[{"type": "text", "content": "\u00e9" * 42667}]))
        self.post("attachment size ascii max", P,
                  m(attachments=[{"type": "code", "content": "a" * 255998}]))
        self.post("attachment size ascii max+1", P,
                  m(attachments=[{"type": "code", "content": "a" * 255999}]))
        self.post("attachment size astral", P,
                  m(attachments=[{"type": "json", "content": "\U0001F600" * 21333}]))
        self.post("attachment size astral+1", P,
                  m(attachments=[{"type": "json", "content": "\U0001F600" * 21334}]))
        self.post("attachment size nested json", P,
                  m(attachments=[{"type": "json", "content": {"k": ["\u00e9" * 42000, 1.5, None, True]}}]))
        self.post("file_ref no path", P, m(attachments=[{"type": "file_ref"}]))
        self.post("file_ref blank path", P, m(attachments=[{"type": "file_ref", "path": "  "}]))
        self.post("diff_ref number path", P, m(attachments=[{"type": "diff_ref", "path": 5}]))
        self.post("file_ref full", P, m(attachments=[{"type": "file_ref", "path": " src/x.rs ",
                  "description": {"d": 1}, "base": 1, "head": None, "start_line": "3",
                  "end_line": 4.0, "content": "dropped"}]))
        self.post("file_ref bad start_line", P, m(attachments=[{"type": "file_ref", "path": "p",
                                                                 "start_line": "x"}]))
        self.post("file_ref bad end_line", P, m(attachments=[{"type": "file_ref", "path": "p",
                                                               "end_line": "1.5"}]))
        self.post("attachment errors in element order", P,
                  m(attachments=[{"type": "text", "content": "ok"}, {"type": "bogus"}, "x"]))
        self.post("attachments only, empty body", P, {"from_agent": "a", "body": "",
                  "attachments": [{"type": "text", "content": ""}]})
        self.post("too many before body check", P, {"from_agent": "a",
                  "attachments": [{"type": "text", "content": 1}] * 33})
        self.post("body check before size", P, {"from_agent": "a", "body": ""})
        self.post("reply_to string int", P, m(reply_to=" 7 "))
        self.post("reply_to underscore", P, m(reply_to="1_0"))
        self.post("reply_to bad", P, m(reply_to="x"))
        self.post("reply_to fractional string", P, m(reply_to="2.5"))
        self.post("reply_to integral float", P, m(reply_to=3.0))
        self.post("reply_to negative", P, m(reply_to=-4))
        self.post("reply_to list", P, m(reply_to=[1]))
        self.post("reply_to after body size", P, {"from_agent": "a", "body": "e" * 128001, "reply_to": "x"})
        self.post("thread_id number", P, m(thread_id=12))
        self.post("thread_id bool", P, m(thread_id=True))
        self.post("metadata list -> {} when empty", P, m(metadata=[]))
        self.post("metadata zero -> {}", P, m(metadata=0))
        self.post("metadata non-empty list", P, m(metadata=[1]))
        self.post("metadata string", P, m(metadata="x"))
        self.post("metadata nested", P, m(metadata={"a": {"b": [None, 1.25, "\u00e9"]}}))
        self.post("metadata after reply_to", P, m(reply_to="x", metadata="x"))
        self.post("unknown keys ignored", P, m(id=999, ts="x", extra=[1]))
        self.get("all general", "/v1/messages?channel=general&limit=500")

    def test_06_reads_events_inbox(self):
        self.register("alice")
        self.register("bob")
        self.post("create dev", "/v1/channels", {"name": "dev"})
        P = "/v1/messages"
        for i in range(6):
            self.post(f"general {i}", P, {"from_agent": "alice" if i % 2 else "bob",
                                          "body": f"g{i}", "thread_id": "t1" if i < 3 else None})
        self.post("dev 1", P, {"from_agent": "alice", "channel": "dev", "body": "d1", "thread_id": "t1"})
        self.post("dm a->b", P, {"from_agent": "alice", "to_agent": "bob", "body": "dm1", "thread_id": "t1"})
        self.post("dm b->a label dev", P, {"from_agent": "bob", "to_agent": "alice", "channel": "dev",
                                           "body": "dm2"})
        self.post("dm a->c", P, {"from_agent": "alice", "to_agent": "carol", "body": "dm3"})
        M = "/v1/messages"
        for q in ("", "?", "?channel=", "?thread_id=", "?since_id=1", "?channel=nope",
                  "?channel=nope&since_id=x", "?channel=general", "?channel=dev", "?channel=direct",
                  "?channel=general&since_id=2", "?channel=general&since_id=+2",
                  "?channel=general&since_id=%202%20", "?channel=general&since_id=1_0",
                  "?channel=general&since_id=x", "?channel=general&since_id=-1",
                  "?channel=general&since_id=1.0", "?channel=general&since_id=",
                  "?channel=general&limit=99999999999999999999",
                  "?channel=general&limit=2", "?channel=general&limit=0", "?channel=general&limit=-3",
                  "?channel=general&limit=x", "?channel=general&limit=501", "?channel=general&limit=",
                  "?channel=general&limit=2.0", "?channel=general&since_id=x&limit=x",
                  "?channel=general&limit=x&timeout=x", "?channel=general&timeout=x",
                  "?channel=general&timeout=nan", "?channel=general&timeout=inf",
                  "?channel=general&timeout=-5", "?channel=general&timeout=1e1",
                  "?channel=general&timeout=%201%20", "?channel=general&tail=1&limit=2",
                  "?channel=general&tail=true&limit=2", "?channel=general&tail=YES&limit=2",
                  "?channel=general&tail=on&limit=2", "?channel=general&tail=1&limit=2&since_id=1",
                  "?channel=general&tail=1", "?thread_id=t1", "?thread_id=t1&channel=general",
                  "?thread_id=t1&channel=dev", "?thread_id=t1&tail=1&limit=1", "?thread_id=none",
                  "?thread_id=t1&channel=nope", "?channel=general&channel=dev",
                  "?channel=general&limit=1&limit=5", "?thread_id=t1&since_id=4"):
            self.get(f"messages {q}", M + q)
        self.get("messages since_id beyond 64 bits", M + "?channel=general&since_id=99999999999999999999",
                 dev="crash-query")
        self.get("events since_id beyond 64 bits", "/v1/events?agent_id=bob&since_id=99999999999999999999",
                 dev="crash-query")
        self.get("messages short long-poll, empty", M + "?channel=dev&since_id=100&timeout=0.3")
        E = "/v1/events"
        for q in ("", "?agent_id=", "?channel=general", "?agent_id=alice", "?agent_id=bob",
                  "?agent_id=carol", "?agent_id=nobody", "?agent_id=alice&exclude_self=true",
                  "?agent_id=alice&exclude_self=1", "?agent_id=alice&exclude_self=no",
                  "?agent_id=bob&channel=dev", "?agent_id=bob&channel=direct",
                  "?agent_id=bob&channel=nope", "?agent_id=bob&channel=nope&since_id=x",
                  "?agent_id=bob&thread_id=t1", "?agent_id=bob&thread_id=t1&channel=general",
                  "?agent_id=bob&since_id=5", "?agent_id=bob&since_id=x", "?agent_id=bob&since_id=-2",
                  "?agent_id=bob&limit=3", "?agent_id=bob&limit=0", "?agent_id=bob&limit=y",
                  "?agent_id=bob&timeout=abc", "?agent_id=bob&since_id=x&limit=y",
                  "?agent_id=bob&limit=y&timeout=z", "?agent_id=bob&timeout=inf",
                  "?agent_id=bob&tail=1&limit=2", "?agent_id=alice&limit=501&exclude_self=TRUE",
                  "?agent_id=bob&limit=99999999999999999999"):
            self.get(f"events {q}", E + q)
        self.get("events short long-poll, empty", E + "?agent_id=bob&since_id=100&timeout=0.3")
        I = "/v1/inbox/"
        for q in ("bob", "alice", "carol", "nobody", "bob?since_id=8", "bob?since_id=x",
                  "bob?since_id=-1", "bob?limit=0", "bob?limit=x", "alice?tail=1&limit=1",
                  "bob?timeout=0",
                  # The reference ignores timeout on the inbox; our long-poll extension
                  # (docs/COMPATIBILITY.md, "Long-poll and streaming") should not
                  # turn a previously accepted request into a 400.
                  "bob?timeout=x"):
            self.get(f"inbox {q}", I + q)
        self.get("agents last_seen untouched/structure", "/v1/agents")

    def test_07_tasks(self):
        P = "/v1/messages"
        self.post("create ops", "/v1/channels", {"name": "ops"})
        self.post("parent task", P, {"from_agent": "lead", "kind": "task", "body": "root",
                                     "thread_id": "build"})                       # 1
        self.post("child 1", P, {"from_agent": "lead", "kind": "task", "body": "c1",
                                 "parent_task_id": 1, "channel": "ops"})          # 2
        self.post("child 2 (ptid string)", P, {"from_agent": "lead", "kind": "task_request",
                                               "body": "c2", "parent_task_id": "1",
                                               "to_agent": "w", "thread_id": "build"})  # 3
        self.post("chat with ptid: ignored", P, {"from_agent": "lead", "body": "chat",
                                                 "parent_task_id": 1})          # 4
        self.post("ptid refers to chat message", P, {"from_agent": "lead", "kind": "task",
                                                     "body": "x", "parent_task_id": 4})
        self.post("ptid 0", P, {"from_agent": "lead", "kind": "task", "body": "x", "parent_task_id": 0})
        self.post("ptid integral float", P, {"from_agent": "lead", "kind": "task", "body": "gc",
                                             "parent_task_id": 2.0})            # 5
        T = "/v1/tasks"
        for q in ("", "?parent_id=1", "?parent_id=%201", "?parent_id=x", "?parent_id=",
                  "?parent_id=1.0", "?status=open", "?status=done", "?status=OPEN", "?status=x",
                  "?parent_id=x&status=x", "?channel=ops", "?channel=general", "?channel=nope",
                  "?thread_id=build", "?thread_id=build&status=open&parent_id=1",
                  "?channel=direct&parent_id=1", "?parent_id=-1"):
            self.get(f"tasks {q}", T + q)
        self.get("tasks parent_id beyond 64 bits", T + "?parent_id=99999999999999999999",
                 dev="crash-query")
        self.post("complete 0", "/v1/tasks/0/complete")
        self.post("complete 999", "/v1/tasks/999/complete")
        self.post("complete chat message id", "/v1/tasks/4/complete")
        self.post("complete 00005 (leading zeros)", "/v1/tasks/00005/complete", {})
        self.post("complete child 1", "/v1/tasks/2/complete", {"ignored": True})
        self.get("tasks after child 1", T + "?parent_id=1")
        self.post("complete child 2 -> rollup", "/v1/tasks/3/complete")
        self.post("complete child 2 again (idempotent)", "/v1/tasks/3/complete")
        self.post("complete parent again", "/v1/tasks/1/complete")
        self.get("tasks all", T)
        self.get("rollup notice", "/v1/messages?channel=general")
        # RPC
        self.post("rpc request", P, {"from_agent": "caller", "to_agent": "worker",
                                     "kind": "task_request", "body": "do", "thread_id": "rpc"},
                  save=lambda r: {"rpc": r.result["id"]})
        self.post("rpc result wrong reply_to", P, {"from_agent": "worker", "to_agent": "caller",
                                                   "kind": "task_result", "body": "r", "reply_to": 4})
        self.post("rpc result to unknown", P, {"from_agent": "worker", "kind": "task_result",
                                               "body": "r", "reply_to": 999})
        self.post("rpc result", P, lambda h: {"from_agent": "worker", "to_agent": "caller",
                                              "kind": "task_result", "body": "done",
                                              "reply_to": str(h.vars.get("rpc")),
                                              "metadata": {"task_completed": "x", "k": 1}})
        self.post("rpc result second", P, lambda h: {"from_agent": "worker", "kind": "task_result",
                                                     "body": "again", "reply_to": h.vars.get("rpc"),
                                                     "thread_id": "rpc"})
        self.post("task_result to a plain task", P, {"from_agent": "w", "kind": "task_result",
                                                     "body": "r", "reply_to": 1})
        self.post("task_result no reply_to", P, {"from_agent": "w", "kind": "task_result", "body": "r"})
        self.get("tasks after rpc", T)
        self.get("inbox caller", "/v1/inbox/caller")
        # task_result completes a child: the reference does not roll up from this path.
        self.post("parent 2", P, {"from_agent": "lead", "kind": "task", "body": "p2"},
                  save=lambda r: {"p2": r.result["id"]})
        self.post("child request of parent 2", P, lambda h: {
                  "from_agent": "lead", "kind": "task_request", "body": "c",
                  "parent_task_id": h.vars.get("p2"), "to_agent": "w"},
                  save=lambda r: {"c2": r.result["id"]})
        self.post("result for child -> no rollup", P, lambda h: {
                  "from_agent": "w", "kind": "task_result", "body": "ok", "reply_to": h.vars.get("c2")})
        self.get("tasks: parent 2 still open", T + "?parent_id={p2}")
        self.get("open tasks", T + "?status=open", dev="rpc-rollup-tasks")
        self.post("explicit complete of done child rolls up", "/v1/tasks/{c2}/complete",
                  dev="rpc-rollup-late")
        self.get("tasks final", T)
        self.get("general final", "/v1/messages?channel=general")

    def test_08_claims(self):
        C = "/v1/claims"
        self.register("alice")
        self.post("missing owner", C, {})
        self.post("blank owner", C, {"owner_agent_id": " "})
        self.post("no key no task", C, {"owner_agent_id": "alice"})
        self.post("empty key no task", C, {"owner_agent_id": "alice", "claim_key": "  "})
        self.post("bad task_message_id", C, {"owner_agent_id": "alice", "task_message_id": "x"})
        self.post("bad thread type ok", C, {"owner_agent_id": "alice", "claim_key": "k-num-thread",
                                            "thread_id": 5})
        self.post("ttl 4", C, {"owner_agent_id": "alice", "claim_key": "k", "ttl_sec": 4})
        self.post("ttl -1", C, {"owner_agent_id": "alice", "claim_key": "k", "ttl_sec": -1})
        self.post("ttl string", C, {"owner_agent_id": "alice", "claim_key": "k", "ttl_sec": "abc"})
        self.post("ttl before metadata", C, {"owner_agent_id": "alice", "claim_key": "k",
                                             "ttl_sec": 1, "metadata": 1})
        self.post("metadata not object", C, {"owner_agent_id": "alice", "claim_key": "k", "metadata": 1})
        self.post("task id before ttl", C, {"owner_agent_id": "alice", "task_message_id": "x",
                                            "ttl_sec": 1})
        self.post("acquire", C, {"owner_agent_id": "alice", "claim_key": " k ", "thread_id": "th",
                                 "task_message_id": 3, "ttl_sec": 5, "metadata": {"m": 1}})
        self.post("acquire same owner", C, {"owner_agent_id": "alice", "claim_key": "k",
                                            "thread_id": "other", "ttl_sec": "60", "metadata": {"m": 2}})
        self.post("acquire other owner denied", C, {"owner_agent_id": "bob", "claim_key": "k"})
        self.post("refresh missing fields", C + "/refresh", {})
        self.post("refresh missing owner", C + "/refresh", {"claim_key": "k"})
        self.post("refresh wrong owner", C + "/refresh", {"claim_key": "k", "owner_agent_id": "bob"})
        self.post("refresh ttl 4", C + "/refresh", {"claim_key": "k", "owner_agent_id": "alice",
                                                    "ttl_sec": 4})
        self.post("refresh unknown", C + "/refresh", {"claim_key": "zz", "owner_agent_id": "alice"})
        self.post("refresh", C + "/refresh", {"claim_key": "k", "owner_agent_id": "alice",
                                              "ttl_sec": 30.0})
        self.post("release missing", C + "/release", {})
        self.post("release owner field name", C + "/release", {"claim_key": "k", "owner_agent_id": "alice"})
        self.post("release wrong agent", C + "/release", {"claim_key": "k", "agent_id": "bob"})
        self.post("release", C + "/release", {"claim_key": "k", "agent_id": "alice"})
        self.post("release again", C + "/release", {"claim_key": "k", "agent_id": "alice"})
        self.post("refresh released", C + "/refresh", {"claim_key": "k", "owner_agent_id": "alice"})
        self.post("takeover released", C, {"owner_agent_id": "bob", "claim_key": "k",
                                           "thread_id": "", "metadata": {"new": True}})
        self.post("by task id", C, {"owner_agent_id": "alice", "task_message_id": "12"})
        self.post("by task id, empty key", C, {"owner_agent_id": "carol", "claim_key": "",
                                               "task_message_id": 12})
        self.post("key wins over task id", C, {"owner_agent_id": "alice", "claim_key": "kk",
                                               "task_message_id": 9, "thread_id": "th"})
        self.post("ttl max ok", C, {"owner_agent_id": "alice", "claim_key": "long",
                                    "ttl_sec": 315360000})
        self.post("ttl integral float", C, {"owner_agent_id": "alice", "claim_key": "f", "ttl_sec": 10.0})
        self.post("ttl string padded", C, {"owner_agent_id": "alice", "claim_key": "g", "ttl_sec": " 10 "})
        self.post("no body", C)
        for q in ("", "?active_only=true", "?active_only=1", "?active_only=no", "?thread_id=th",
                  "?thread_id=th&active_only=yes", "?thread_id=nope", "?thread_id=",
                  "?owner_agent_id=alice"):
            self.get(f"claims {q}", C + q)
        self.get("agents (touch is invisible after normalisation)", "/v1/agents")

    def test_09_locks(self):
        L = "/v1/locks"
        self.post("missing agent", L, {})
        self.post("missing path", L, {"agent_id": "a"})
        self.post("blank path", L, {"agent_id": "a", "file_path": "  "})
        self.post("path before ttl", L, {"agent_id": "a", "ttl_sec": 1})
        self.post("ttl 4", L, {"agent_id": "a", "file_path": "f", "ttl_sec": 4})
        self.post("ttl bad", L, {"agent_id": "a", "file_path": "f", "ttl_sec": "1.5"})
        self.post("metadata bad", L, {"agent_id": "a", "file_path": "f", "metadata": "m"})
        self.post("acquire", L, {"agent_id": "a", "file_path": " src/Main.rs ", "ttl_sec": 5,
                                 "metadata": {"thread_id": "lk", "channel": "general"}})
        self.post("acquire same", L, {"agent_id": "a", "file_path": "src/Main.rs", "ttl_sec": 50,
                                      "metadata": {"x": 1}})
        self.post("acquire case differs", L, {"agent_id": "b", "file_path": "src/main.rs"})
        self.post("acquire denied", L, {"agent_id": "b", "file_path": "src/Main.rs"})
        self.post("refresh missing", L + "/refresh", {"agent_id": "a"})
        self.post("refresh wrong", L + "/refresh", {"agent_id": "b", "file_path": "src/Main.rs"})
        self.post("refresh ttl 4", L + "/refresh", {"agent_id": "a", "file_path": "src/Main.rs",
                                                    "ttl_sec": 4})
        self.post("refresh", L + "/refresh", {"agent_id": "a", "file_path": "src/Main.rs", "ttl_sec": 9})
        self.post("release wrong", L + "/release", {"agent_id": "b", "file_path": "src/Main.rs"})
        self.post("release missing path", L + "/release", {"agent_id": "a"})
        self.post("release", L + "/release", {"agent_id": "a", "file_path": "src/Main.rs"})
        self.post("release again", L + "/release", {"agent_id": "a", "file_path": "src/Main.rs"})
        self.post("refresh released", L + "/refresh", {"agent_id": "a", "file_path": "src/Main.rs"})
        self.post("takeover", L, {"agent_id": "b", "file_path": "src/Main.rs", "metadata": {"t": 2}})
        self.post("numeric path", L, {"agent_id": "c", "file_path": 42})
        for q in ("", "?agent_id=b", "?agent_id=a", "?agent_id=", "?active_only=true",
                  "?agent_id=b&active_only=1", "?file_path=x"):
            self.get(f"locks {q}", L + q)

    def test_10_threads(self):
        P = "/v1/messages"
        self.get("threads empty", "/v1/threads")
        self.get("thread unknown", "/v1/threads/nope")
        self.post("t-chat 1", P, {"from_agent": "a", "body": "1", "thread_id": "t-chat"})
        self.post("t-task root", P, {"from_agent": "a", "kind": "task", "body": "2", "thread_id": "t-task"})
        self.post("create side", "/v1/channels", {"name": "side"})
        self.post("t-task child other channel", P, {"from_agent": "a", "kind": "task", "body": "3",
                                                    "thread_id": "t-task", "channel": "side",
                                                    "parent_task_id": 2})
        self.post("t-task artifact", P, {"from_agent": "b", "kind": "artifact", "body": "4",
                                         "thread_id": "t-task"})
        self.post("t-dm", P, {"from_agent": "a", "to_agent": "b", "body": "5", "thread_id": "t-dm"})
        self.post("t-chat dm", P, {"from_agent": "b", "to_agent": "a", "body": "6", "thread_id": "t-chat"})
        self.post("claim in t-claim", "/v1/claims", {"owner_agent_id": "a", "claim_key": "c1",
                                                     "thread_id": "t-claim"})
        self.post("claim in t-task", "/v1/claims", {"owner_agent_id": "a", "claim_key": "c2",
                                                    "thread_id": "t-task"})
        self.post("released claim in t-rel", "/v1/claims", {"owner_agent_id": "a", "claim_key": "c3",
                                                           "thread_id": "t-rel"})
        self.post("release c3", "/v1/claims/release", {"claim_key": "c3", "agent_id": "a"})
        self.post("lock for t-task", "/v1/locks", {"agent_id": "a", "file_path": "f1",
                                                   "metadata": {"thread_id": "t-task"}})
        self.post("lock-only thread", "/v1/locks", {"agent_id": "a", "file_path": "f2",
                                                    "metadata": {"thread_id": "t-lock"}})
        self.post("lock numeric thread", "/v1/locks", {"agent_id": "a", "file_path": "f3",
                                                       "metadata": {"thread_id": 5}})
        self.post("t-num message", P, {"from_agent": "a", "body": "7", "thread_id": "5"})
        self.post("complete t-task children", "/v1/tasks/3/complete")
        self.post("a space thread", P, {"from_agent": "a", "body": "8", "thread_id": "t x"})
        self.post("same id for ordering tie", P, {"from_agent": "a", "body": "9", "thread_id": "t-z"})
        self.get("threads", "/v1/threads")
        self.get("threads query ignored", "/v1/threads?thread_id=t-chat")
        for t in ("t-chat", "t-task", "t-dm", "t-claim", "t-rel", "t-lock", "5", "t-z", "nope",
                  "t-chat?tail=1"):
            self.get(f"thread {t}", "/v1/threads/" + t)
        self.get("thread t%2Dchat", "/v1/threads/t%2Dchat", dev="pct-thread-decoded")
        self.post("complete t-task root", "/v1/tasks/2/complete")
        self.get("thread t-task completed", "/v1/threads/t-task")
        self.get("thread detail limit", "/v1/threads/t-chat?limit=1", dev="thread-limit")
        self.post("third t-chat", P, {"from_agent": "a", "body": "10", "thread_id": "t-chat"})
        self.get("thread detail tail", "/v1/threads/t-chat?limit=1&tail=1", dev="thread-tail")
        self.get("thread with space: raw path", "/v1/threads/t%20x", dev="pct-thread")

    def test_11_shutdown_network(self):
        S = "/v1/shutdown"
        self.get("status idle", S)
        self.get("status idle query", S + "?delay_sec=5")
        self.post("cancel nothing", S + "/cancel")
        self.post("cancel nothing w/ body", S + "/cancel", {"x": 1})
        self.post("delay -1", S, {"delay_sec": -1})
        self.post("delay 3601", S, {"delay_sec": 3601})
        self.post("delay string", S, {"delay_sec": "x"})
        self.post("delay fractional string", S, {"delay_sec": "1.5"})
        self.post("arm 3600 (string)", S + "?delay_sec=0", {"delay_sec": "3600"})
        self.get("status pending", S)
        self.post("already pending", S, {"delay_sec": 100})
        self.post("already pending invalid first", S, {"delay_sec": -1})
        self.post("cancel", S + "/cancel")
        self.post("cancel again", S + "/cancel")
        self.get("status after cancel", S)
        self.post("arm default (60)", S)
        self.get("status default", S)
        self.post("cancel default", S + "/cancel", {})
        self.post("arm integral float", S, {"delay_sec": 3000.0})
        self.post("cancel float", S + "/cancel")
        self.get("shutdown notices", "/v1/messages?channel=general")
        N = "/v1/network"
        self.post("network report", N)
        self.post("network report {}", N, {})
        self.post("network other keys", N, {"x": True})
        self.post("network false", N, {"allow_remote": False})
        self.post("network null", N, {"allow_remote": None})
        self.post("network true", N, {"allow_remote": True})
        self.post("network string false", N, {"allow_remote": "false"}, dev="network-string-false")
        self.post("network string maybe", N, {"allow_remote": "maybe"}, dev="network-bad-bool")
        self.post("network string no", N, {"allow_remote": "no"}, dev="network-string-false")
        self.post("network empty object", N, {"allow_remote": {}}, dev="network-wrong-type")
        for v in (0, 1, 0.0, "", None):
            self.post(f"network {v!r}", N, {"allow_remote": v})
        self.get("hub-info allow_remote still false", "/v1/hub-info", dev="identity")

    def test_12_stream(self):
        self.get("stream no agent", "/v1/stream")
        self.get("stream empty agent", "/v1/stream?agent_id=")
        self.get("stream bad since_id", "/v1/stream?agent_id=a&since_id=x")
        self.get("stream negative since_id", "/v1/stream?agent_id=a&since_id=-1")
        P = "/v1/messages"
        self.post("dev", "/v1/channels", {"name": "dev"})
        self.post("m1", P, {"from_agent": "x", "body": "one"})
        self.post("m2", P, {"from_agent": "x", "channel": "dev", "body": "two"})
        self.post("m3 dm", P, {"from_agent": "x", "to_agent": "a", "body": "three"})
        self.post("m4 dm other", P, {"from_agent": "x", "to_agent": "b", "body": "four"})
        for q, n in (("agent_id=a", 3), ("agent_id=a&channels=dev", 1), ("agent_id=a&since_id=1", 2),
                     ("agent_id=a&channels=general,dev", 2), ("agent_id=x&exclude_self=1", 0)):
            DifferentialTest.cases_run += 1
            with self.subTest(f"stream ?{q}"):
                ref = self.read_sse(self.ref, q, n)
                ours = self.read_sse(self.ours, q, n)
                self.assertEqual(ref["status"], 200)
                self.assertEqual(ours["status"], 200)
                self.assertEqual(ours["ctype"], "text/event-stream")
                self.assertEqual(ref["ctype"], "text/event-stream")
                self.assertEqual(len(ref["data"]), n, ref)
                _dev_sse(self, ref, ours)

    def read_sse(self, hub, query, want, wait=1.0):
        """Reads `want` events from /v1/stream; with want=0, listens for `wait` s.

        The reference's first poll is immediate and repeats every 0.5 s, so
        one second of silence is enough to show that nothing is coming.
        """
        out = {"status": None, "ctype": None, "data": [], "ids": []}
        try:
            sock = socket.create_connection(("127.0.0.1", hub.port), timeout=0.25)
        except OSError:
            return out
        buf = b""
        with sock:
            sock.sendall(f"GET /v1/stream?{query} HTTP/1.1\r\nHost: {hub.base}\r\n\r\n".encode())
            deadline = time.monotonic() + (wait if want == 0 else wait + 4.0)
            while time.monotonic() < deadline:
                try:
                    c = sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not c:
                    break
                buf += c
                if want and len(_sse_events(buf)) >= want:
                    break
        head, _, _ = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if lines and lines[0].startswith("HTTP/"):
            out["status"] = int(lines[0].split()[1])
            for line in lines[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-type":
                    out["ctype"] = v.strip()
        for event in _sse_events(buf):
            for line in event.split("\n"):
                if line.startswith("data: "):
                    out["data"].append(hub.normalise(json.loads(line[6:])))
                elif line.startswith("id: "):
                    out["ids"].append(line[4:].strip())
        return out

    # ------------------------------------------------------------------
    # Documented deviations: each in its own sequence so state divergence
    # they cause cannot cascade into unrelated comparisons.
    def test_14_lease_expiry(self):
        """Claims and locks past their TTL (5 s, the minimum): one wait for both."""
        self.post("claim short", "/v1/claims", {"owner_agent_id": "a", "claim_key": "k", "ttl_sec": 5,
                                                "thread_id": "exp", "metadata": {"v": 1}})
        self.post("lock short", "/v1/locks", {"agent_id": "a", "file_path": "f", "ttl_sec": 5,
                                              "metadata": {"thread_id": "exp"}})
        self.post("claim long", "/v1/claims", {"owner_agent_id": "a", "claim_key": "long",
                                               "thread_id": "exp"})
        self.get("thread before expiry", "/v1/threads/exp")
        time.sleep(6.5)
        self.get("claims active_only", "/v1/claims?active_only=1")
        self.get("claims all", "/v1/claims")
        self.get("locks active_only", "/v1/locks?active_only=true")
        self.get("thread after expiry", "/v1/threads/exp")
        self.get("threads after expiry", "/v1/threads")
        self.post("refresh expired claim", "/v1/claims/refresh", {"claim_key": "k", "owner_agent_id": "a"})
        self.post("release expired claim", "/v1/claims/release", {"claim_key": "k", "agent_id": "a"})
        self.post("refresh expired lock", "/v1/locks/refresh", {"agent_id": "a", "file_path": "f"})
        self.post("release expired lock", "/v1/locks/release", {"agent_id": "a", "file_path": "f"})
        self.post("take over expired claim", "/v1/claims", {"owner_agent_id": "b", "claim_key": "k",
                                                           "metadata": {"v": 2}})
        self.post("same owner re-acquires expired lock", "/v1/locks", {"agent_id": "a", "file_path": "f",
                                                                      "metadata": {"n": 1}})
        self.get("claims final", "/v1/claims")
        self.get("locks final", "/v1/locks")
        self.get("thread final", "/v1/threads/exp")

    def test_13_json_fidelity(self):
        """Client JSON (metadata, attachment content) must round-trip exactly."""
        P = "/v1/messages"
        floats = {"one": 1.0, "neg0": -0.0, "tiny": 1e-7, "huge": 1e300, "ulp": 1.0000000000000002,
                  "third": 1 / 3, "int": 1, "bool": True, "null": None}
        self.post("metadata floats", P, {"from_agent": "a", "body": "f", "metadata": floats})
        self.post("attachment floats", P, {"from_agent": "a", "body": "f",
                  "attachments": [{"type": "json", "content": floats}]})
        ints = {"i64max": 2 ** 63 - 1, "i64min": -2 ** 63, "u64max": 2 ** 64 - 1}
        self.post("metadata 64-bit ints", P, {"from_agent": "a", "body": "i", "metadata": ints})
        self.post("channel metadata 64-bit ints", "/v1/channels", {"name": "c", "metadata": ints})
        self.post("session metadata floats", "/v1/sessions", {"agent_id": "s", "metadata": floats,
                                                              "capabilities": [1.5, True, False, 2]})
        self.post("float agent ids", "/v1/sessions", {"agent_id": 1e20})
        self.post("float body", P, {"from_agent": 0.1, "body": 1e16, "to_agent": -0.0})
        self.post("lock metadata", "/v1/locks", {"agent_id": "a", "file_path": "p", "metadata": floats})
        self.post("claim metadata", "/v1/claims", {"owner_agent_id": "a", "claim_key": "k",
                                                   "metadata": floats})
        self.get("read back", P + "?channel=general")
        # Integers beyond 64 bits: the reference keeps them exact (and stringifies
        # them exactly in string fields), and so do we (docs/PROTOCOL.md, "Body
        # parsing" and "Body coercions"); not a deviation.
        self.post("metadata int beyond 64 bits", P, {"from_agent": "a", "body": "b",
                                                     "metadata": {"big": 2 ** 70, "neg": -2 ** 70}})
        self.post("attachment int beyond 64 bits", P, {"from_agent": "a", "body": "b",
                  "attachments": [{"type": "json", "content": [2 ** 80]}]})
        self.post("agent_id int beyond 64 bits", "/v1/sessions", {"agent_id": 12345678901234567890123})
        self.post("body int beyond 64 bits", P, {"from_agent": "a", "body": 12345678901234567890123})
        self.post("capabilities with an object", "/v1/sessions",
                  {"agent_id": "caps", "capabilities": [{"a": 1}, [1, 2]]}, dev="repr-capabilities")
        self.post("inf in metadata", P, data=b'{"from_agent": "a", "body": "x", "metadata": {"x": 1e400}}',
                  dev="nonfinite")
        self.post("lone surrogate", P, data=b'{"from_agent": "a", "body": "\\ud800"}', dev="surrogate")

    def test_20_null_and_coercion_fixes(self):
        P = "/v1/messages"
        self.post("body null with attachment", P, {"from_agent": "a", "body": None,
                  "attachments": [{"type": "text", "content": "c"}]}, dev="null-body")   # 1 both
        self.post("thread_id empty", P, {"from_agent": "a", "body": "b", "thread_id": ""},
                  dev="empty-thread")                                                    # 2 both
        self.post("thread_id spaced", P, {"from_agent": "a", "body": "b", "thread_id": " spaced "},
                  dev="strip-thread")                                                    # 3 both
        # From here on the reference stores messages we refuse; ids diverge.
        self.post("from_agent null", P, {"from_agent": None, "body": "b"}, dev="null-from")
        self.post("kind null", P, {"from_agent": "a", "body": "b", "kind": None}, dev="null-kind")
        self.post("reply_to true", P, {"from_agent": "a", "body": "b", "reply_to": True},
                  dev="int-bool-reply")
        self.post("reply_to 2.9", P, {"from_agent": "a", "body": "b", "reply_to": 2.9},
                  dev="int-frac-reply")
        self.post("from_agent object", P, {"from_agent": {"a": 1}, "body": "b"}, dev="repr-from_agent")
        self.post("body list", P, {"from_agent": "a", "body": [1]}, dev="repr-body")
        self.post("reply_to NaN", P, data=b'{"from_agent": "a", "body": "b", "reply_to": NaN}',
                  dev="nan-int")
        self.post("reply_to Infinity", P, data=b'{"from_agent": "a", "body": "b", "reply_to": Infinity}',
                  dev="crash-int")
        self.post("reply_to 2^64", P, {"from_agent": "a", "body": "b", "reply_to": 2 ** 64},
                  dev="crash-int")
        self.post("ptid 2^70", P, {"from_agent": "a", "body": "b", "parent_task_id": 2 ** 70},
                  dev="crash-int")
        self.post("channel object", "/v1/channels", {"name": ["x"]}, dev="repr-name")

    def test_21_session_and_lease_fixes(self):
        self.post("register", "/v1/sessions", {"agent_id": "alice"})
        self.post("register object id", "/v1/sessions", {"agent_id": {"a": 1}}, dev="repr-agent_id")
        self.post("replace 'false'", "/v1/sessions", {"agent_id": "alice", "replace": "false"},
                  dev="bool-string-false")
        self.post("replace 'maybe'", "/v1/sessions", {"agent_id": "alice", "replace": "maybe"},
                  dev="bool-bad")
        self.post("replace '0'", "/v1/sessions", {"agent_id": "alice", "replace": "0"},
                  dev="bool-string-false")
        self.post("replace 'No'", "/v1/sessions", {"agent_id": "alice", "replace": "No"},
                  dev="bool-string-false")
        self.post("replace []", "/v1/sessions", {"agent_id": "alice", "replace": []},
                  dev="bool-wrong-type")
        C = "/v1/claims"
        self.post("ttl true", C, {"owner_agent_id": "a", "claim_key": "k1", "ttl_sec": True},
                  dev="int-bool-ttl")
        self.post("ttl 30.5", C, {"owner_agent_id": "a", "claim_key": "k2", "ttl_sec": 30.5},
                  dev="int-frac-ttl")
        self.post("ttl above 10y", C, {"owner_agent_id": "a", "claim_key": "k3",
                                       "ttl_sec": 315360001}, dev="ttl-max")
        self.post("ttl 10^12", C, {"owner_agent_id": "a", "claim_key": "k4", "ttl_sec": 10 ** 12},
                  dev="ttl-overflow")
        self.post("lock ttl 10^12", "/v1/locks", {"agent_id": "a", "file_path": "f",
                                                  "ttl_sec": 10 ** 12}, dev="ttl-overflow")
        self.post("ttl -0.5", C, {"owner_agent_id": "a", "claim_key": "k5", "ttl_sec": -0.5},
                  dev="int-negfrac-ttl")
        self.post("ttl 1e20", C, {"owner_agent_id": "a", "claim_key": "k6", "ttl_sec": 1e20},
                  dev="crash-int")
        self.post("task_message_id 2^70", C, {"owner_agent_id": "a", "task_message_id": 2 ** 70},
                  dev="crash-int")
        self.post("task id 2^64", "/v1/tasks/18446744073709551616/complete", dev="crash-task-id")

    def test_22_percent_decoding_and_security(self):
        self.post("register a b", "/v1/sessions", {"agent_id": "a b"})
        self.post("dm to a b", "/v1/messages", {"from_agent": "x", "to_agent": "a b", "body": "hi"})
        self.get("inbox plain id", "/v1/inbox/x")
        self.get("inbox a%20b", "/v1/inbox/a%20b", dev="pct-inbox")
        self.post("rename a%20b", "/v1/sessions/a%20b/rename", {"display_name": "AB"}, dev="pct-rename")
        own = {"Origin": "http://127.0.0.1:{port}"}
        self.ref.vars["port"] = self.ref.port
        self.ours.vars["port"] = self.ours.port
        self.get("own origin ok", "/v1/channels", headers=own)
        self.get("localhost origin ok", "/v1/channels", headers={"Origin": "http://localhost:{port}"})
        self.get("foreign origin", "/v1/channels", headers={"Origin": "http://evil.example"},
                 dev="origin")
        self.get("null origin", "/v1/channels", headers={"Origin": "null"}, dev="origin")
        self.get("other port origin", "/v1/channels", headers={"Origin": "http://127.0.0.1:1"},
                 dev="origin")
        self.get("localhost host ok", "/v1/channels", headers={"Host": "localhost:{port}"})
        self.get("bare loopback host ok", "/v1/channels", headers={"Host": "127.0.0.1"})
        self.get("rebinding host", "/v1/channels", headers={"Host": "evil.example:{port}"}, dev="host")
        # A rejected cross-site POST must not have posted anything.
        self.post("foreign origin post", "/v1/channels", {"name": "csrf"},
                  headers={"Origin": "http://evil.example", "Content-Type": "text/plain"}, dev="origin")

    def test_23_deep_rollup(self):
        P = "/v1/messages"
        self.post("grandparent", P, {"from_agent": "l", "kind": "task", "body": "g"})          # 1
        self.post("parent", P, {"from_agent": "l", "kind": "task", "body": "p", "parent_task_id": 1})  # 2
        self.post("child", P, {"from_agent": "l", "kind": "task", "body": "c", "parent_task_id": 2})   # 3
        self.post("complete child", "/v1/tasks/3/complete", dev="deep-rollup")
        self.get("tasks", "/v1/tasks", dev="deep-rollup-tasks")
        self.get("notices", "/v1/messages?channel=general", dev="deep-rollup-notices")

    def test_24_message_id_cap(self):
        P = "/v1/messages"
        self.post("first", P, {"from_agent": "a", "body": "1"})
        for hub in (self.ref, self.ours):
            db = sqlite3.connect(str(hub.storage), timeout=5)
            try:
                db.execute("UPDATE sqlite_sequence SET seq=? WHERE name='messages'", (2 ** 53 - 2,))
                db.commit()
            finally:
                db.close()
        self.post("id 2^53-1 is fine", P, {"from_agent": "a", "body": "2"})
        self.post("id 2^53 refused", P, {"from_agent": "a", "body": "3"}, dev="id-cap")
        self.post("still refused (nothing inserted)", P, {"from_agent": "a", "body": "4"}, dev="id-cap")
        self.get("list after cap", "/v1/messages?channel=general", dev="id-cap-list")

    def test_25_immediate_shutdown(self):
        self.post("shutdown now", "/v1/shutdown", {"delay_sec": 0}, dev="immediate-shutdown")
        for hub in (self.ref, self.ours):
            with self.subTest(f"{hub.kind} exits after immediate shutdown"):
                try:
                    code = hub.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    code = None
                self.assertEqual(code, 0, f"{hub.kind} hub did not exit 0 after delay_sec 0")


def _sse_events(buf):
    """Complete SSE events (text blocks ending in a blank line) in a raw response."""
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return []
    if b"chunked" in head.lower():
        body = _dechunk(body)
    text = body.decode("utf-8", "replace").replace("\r\n", "\n")
    blocks = text.split("\n\n")[:-1]  # the last piece is incomplete (or empty)
    return [b for b in blocks if any(line.startswith("data: ") for line in b.split("\n"))]


def _dechunk(body):
    out, rest = b"", body
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        try:
            n = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if n == 0:
            break
        out += rest[:n]
        rest = rest[n + 2:]
    return out


if __name__ == "__main__":
    unittest.main()
