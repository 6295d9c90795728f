"""Shared helpers for the interop suite.

The suite runs the unchanged reference Python package (megastructure-arc
0.1.1, importable as ``arc`` from the venv that runs the tests) against our
Rust binary, named by the ``ARC_BIN`` environment variable.

Every wait here is bounded: hub start-up, HTTP requests, subprocesses and
polling loops all have explicit timeouts.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Our binary: $ARC_BIN, else the default cargo debug build.
ARC_BIN = os.environ.get("ARC_BIN") or str(REPO_ROOT / "target" / "debug" / "arc")

# The reference CLI: `python -m arc` with the interpreter running the tests
# (the venv that has megastructure-arc installed).
REF_ARC = [sys.executable, "-m", "arc"]

HUB_START_TIMEOUT = 20.0
HUB_STOP_TIMEOUT = 5.0
HTTP_TIMEOUT = 10.0


def tail_log(path):
    """The last 4000 characters of a log file ("" if unreadable)."""
    try:
        return Path(path).read_text(errors="replace")[-4000:]
    except OSError:
        return ""


def stop_process(proc):
    """Terminates `proc` (if running), then kills it after a bounded wait."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=HUB_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=HUB_STOP_TIMEOUT)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, *, raw=None, headers=None, timeout=HTTP_TIMEOUT):
    """One HTTP request. Returns (status, parsed JSON or text, headers).

    ``body`` is JSON-encoded; ``raw`` (bytes) is sent verbatim instead.
    HTTP error statuses are returned, not raised.
    """
    data = raw
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, text, rh = resp.status, resp.read().decode("utf-8"), resp.headers
    except urllib.error.HTTPError as exc:
        status, text, rh = exc.code, exc.read().decode("utf-8"), exc.headers
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = text
    return status, parsed, rh


def wait_until(predicate, timeout=10.0, interval=0.1):
    """Calls predicate until it returns a truthy value or timeout passes.

    Returns the last value (falsy on timeout). Exceptions count as falsy.
    """
    deadline = time.monotonic() + timeout
    value = None
    while True:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - a failed probe just means "not yet"
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class HubProcess:
    """A hub subprocess (ours or the reference) on a loopback port."""

    def __init__(self, kind, workdir, *, storage, spool_dir, extra_args=()):
        assert kind in ("ours", "ref")
        self.kind = kind
        self.workdir = Path(workdir)
        self.storage = str(storage)
        self.spool_dir = str(spool_dir)
        self.extra_args = list(extra_args)
        self.port = None
        self.proc = None
        self.log_path = None
        self.info = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def _command(self):
        prefix = [ARC_BIN] if self.kind == "ours" else list(REF_ARC)
        return prefix + [
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--storage", self.storage,
            "--spool-dir", self.spool_dir,
            "--quiet",
        ] + self.extra_args

    def start(self, attempts=3):
        last_error = None
        for attempt in range(attempts):
            self.port = free_port()
            self.log_path = self.workdir / f"hub-{self.kind}-{self.port}.log"
            log = open(self.log_path, "wb")
            try:
                self.proc = subprocess.Popen(
                    self._command(), cwd=str(self.workdir), stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT,
                )
            finally:
                log.close()
            deadline = time.monotonic() + HUB_START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    status, body, _ = http("GET", self.base_url + "/v1/hub-info", timeout=2.0)
                    if status == 200 and isinstance(body, dict) and body.get("ok"):
                        self.info = body["result"]
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            last_error = f"{self.kind} hub did not come up (attempt {attempt + 1}): {self.log()}"
            self.stop()
        raise RuntimeError(last_error)

    def log(self):
        return tail_log(self.log_path)

    def stop(self):
        proc, self.proc = self.proc, None
        stop_process(proc)

    # Convenience wrappers around http() against this hub.
    def get(self, path, **kw):
        return http("GET", self.base_url + path, **kw)

    def post(self, path, body=None, **kw):
        return http("POST", self.base_url + path, body if body is not None else {}, **kw)

    def result(self, method, path, body=None):
        """The `result` of a request that must succeed."""
        status, payload, _ = http(method, self.base_url + path, body)
        if not (isinstance(payload, dict) and payload.get("ok")):
            raise AssertionError(f"{method} {path} -> {status} {payload!r}")
        return payload["result"]


class BackgroundProcess:
    """A helper subprocess (e.g. the reference relay) stopped at cleanup."""

    def __init__(self, cmd, workdir, name):
        self.log_path = Path(workdir) / f"{name}.log"
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                cmd, cwd=str(workdir), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    def log(self):
        return tail_log(self.log_path)

    def stop(self):
        proc, self.proc = self.proc, None
        stop_process(proc)


def run(cmd, *, cwd, timeout=60.0):
    """Runs a command to completion (bounded). Returns CompletedProcess."""
    return subprocess.run(
        cmd, cwd=str(cwd), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=timeout,
    )


class InteropTestCase(unittest.TestCase):
    """A temp dir per test, plus hubs that are stopped in cleanup."""

    def setUp(self):
        super().setUp()
        if not os.path.isfile(ARC_BIN) or not os.access(ARC_BIN, os.X_OK):
            self.fail(f"ARC_BIN is not an executable file: {ARC_BIN!r}")
        self.tmp = Path(tempfile.mkdtemp(prefix="arc-interop-"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def start_hub(self, kind="ours", *, storage=None, spool_dir=None, extra_args=()):
        storage = storage or (self.tmp / "arc.sqlite3")
        spool_dir = spool_dir or (self.tmp / f"relay-{kind}")
        hub = HubProcess(kind, self.tmp, storage=storage, spool_dir=spool_dir,
                         extra_args=extra_args)
        hub.start()
        self.addCleanup(hub.stop)
        return hub

    def start_background(self, cmd, name):
        bg = BackgroundProcess(cmd, self.tmp, name)
        self.addCleanup(bg.stop)
        return bg
