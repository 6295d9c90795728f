#!/usr/bin/env python3
"""A transparent stdio tap: runs a command and records what crosses its pipes.

    stdio_tap.py LOG_DIR -- COMMAND [ARG...]

The MCP client under test spawns this instead of `arc mcp`, so the test can
check from the server's side what the client really sent (the handshake or
its absence, `_meta` on every request) and what the server answered.

Bytes are forwarded unchanged, as soon as they arrive. Every complete line
is also appended to LOG_DIR/tap-<pid>.jsonl as
`{"dir": "in"|"out", "t": <seconds>, "line": <text>}` ("in" is client to
server). One file per tap process, because some clients spawn the server
more than once (a probe process, then the session). stderr is inherited.

When the client closes our stdin we close the child's and wait for it; a
SIGTERM or SIGINT is passed on to the child. We exit with the child's
status. Only the standard library is used, so any Python 3 runs it.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

CHILD_EXIT_TIMEOUT = 10.0


def main():
    argv = sys.argv[1:]
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: stdio_tap.py LOG_DIR -- COMMAND [ARG...]\n")
        return 2
    log_dir, cmd = argv[0], argv[2:]
    os.makedirs(log_dir, exist_ok=True)
    log = open(os.path.join(log_dir, f"tap-{os.getpid()}.jsonl"), "a", encoding="utf-8")
    lock = threading.Lock()
    start = time.monotonic()

    def record(direction, line):
        entry = {"dir": direction, "t": round(time.monotonic() - start, 4),
                 "line": line.decode("utf-8", errors="replace")}
        with lock:
            log.write(json.dumps(entry) + "\n")
            log.flush()

    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

    def forward_signal(signum, _frame):
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward_signal)
    signal.signal(signal.SIGINT, forward_signal)

    def pump(src_fd, dst, direction, on_eof):
        pending = b""
        while True:
            try:
                chunk = os.read(src_fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            try:
                dst.write(chunk)
                dst.flush()
            except (BrokenPipeError, OSError):
                pass
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                record(direction, line.rstrip(b"\r"))
        if pending:
            record(direction, pending)
        on_eof()

    def close_child_stdin():
        try:
            child.stdin.close()
        except OSError:
            pass

    upstream = threading.Thread(
        target=pump, args=(sys.stdin.fileno(), child.stdin, "in", close_child_stdin), daemon=True)
    upstream.start()
    out = sys.stdout.buffer
    downstream = threading.Thread(
        target=pump, args=(child.stdout.fileno(), out, "out", lambda: None), daemon=True)
    downstream.start()

    # The child ends when its stdin closes (or on a forwarded signal).
    while True:
        try:
            code = child.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            continue
    downstream.join(CHILD_EXIT_TIMEOUT)
    log.close()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
