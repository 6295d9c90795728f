"""`arc mcp` against real MCP clients of both protocol eras (issue 15).

Each client spawns `$ARC_BIN mcp` through a stdio tap
(tests/mcp-clients/stdio_tap.py) that records every line on the pipe, so
besides what the client reports, the test checks from the server's side
what was really said: a 2025-era `initialize` and its negotiated version,
or a 2026-07-28 exchange with no `initialize`, `_meta` on every request and
`resultType` on every result. The clients:

1. the Python SDK 1.x (`mcp` 1.30.0, the venv running this suite), in process;
2. the Python SDK 2.x (`mcp` 2.3.0, target/mcp2-venv): its default `auto`
   negotiation, a pinned 2026-07-28 (no probe, no handshake) and `legacy`,
   by tests/mcp-clients/py_sdk2.py;
3. the TypeScript SDK 1.x (`@modelcontextprotocol/sdk`), ts_sdk1.mjs;
4. the TypeScript client 2.x (`@modelcontextprotocol/client`) pinned to
   2026-07-28, in `auto` mode, and in its default (legacy) mode, ts_client2.mjs.

Each lists tools, posts (checked through the hub's HTTP API), gets a hub
error as an `isError` result, polls a message another agent posted over
HTTP, and receives a push on arc://inbox (`resources/subscribe` on the 2025
era, `subscriptions/listen` on 2026-07-28). Besides: the tool profiles
(`--tools`) with the SDK 1.x, and Claude channel notifications with the
TypeScript SDK 1.x (turned on by `--claude-channel` or by the client's
capability; no other client may get them).
Scripts print one JSON summary line. tests/run.sh installs the clients;
one hub per class, a channel per test. Every wait is bounded.
"""

import asyncio
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from datetime import timedelta
from pathlib import Path

try:
    from . import support
except ImportError:  # run with `-s tests/interop` (no parent package)
    import support

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from pydantic import AnyUrl

CLIENTS = support.REPO_ROOT / "tests" / "mcp-clients"
TAP = CLIENTS / "stdio_tap.py"
MCP2_PYTHON = Path(os.environ.get("ARC_MCP2_PYTHON")
                   or support.REPO_ROOT / "target" / "mcp2-venv" / "bin" / "python")
NODE = shutil.which("node")

STEP = 20.0  # seconds for any single protocol step
SCRIPT_TIMEOUT = 150.0  # seconds for a whole client script
OTHER = "b"

# The pinned client versions (tests/run.sh, tests/mcp-clients/package.json).
PY1, PY2, TS1, TS2 = "1.30.0", "2.3.0", "1.32.2", "2.4.0"
HANDSHAKE_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN = "2026-07-28"
META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPS = "io.modelcontextprotocol/clientCapabilities"
META_SUB = "io.modelcontextprotocol/subscriptionId"
# The default (core) profile: the reference's post and poll, and the three
# coordination tools the issue adds to it.
CORE_TOOLS = ("arc_post_message", "arc_poll_messages", "arc_next_task", "arc_reserve",
              "arc_check_paths")


def read_taps(capture_dir):
    """The recorded sessions: one list of {"dir", "t", "line", "msg"} per tap file."""
    sessions = []
    for path in sorted(Path(capture_dir).glob("tap-*.jsonl")):
        entries = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(raw)
            try:
                entry["msg"] = json.loads(entry["line"]) if entry["line"].strip() else None
            except ValueError:
                entry["msg"] = None
            entries.append(entry)
        sessions.append(entries)
    return sessions


def transcript(sessions, limit=60):
    """The exchange, for failure messages: `>` client to server, `<` back."""
    lines = []
    for i, entries in enumerate(sessions):
        lines.append(f"--- session {i} ---")
        for e in entries[:limit]:
            arrow = ">" if e["dir"] == "in" else "<"
            lines.append(f"{arrow} {e['line'][:600]}")
        if len(entries) > limit:
            lines.append(f"... {len(entries) - limit} more lines")
    return "\n".join(lines)


def requests_of(entries):
    return [e["msg"] for e in entries
            if e["dir"] == "in" and isinstance(e["msg"], dict) and "method" in e["msg"]
            and "id" in e["msg"]]


def responses_of(entries):
    """Server responses by request id (JSON-encoded, as ids may be strings or ints)."""
    return {json.dumps(e["msg"]["id"]): e["msg"] for e in entries
            if e["dir"] == "out" and isinstance(e["msg"], dict) and "id" in e["msg"]
            and "method" not in e["msg"]}


def server_notifications(entries):
    return [e["msg"] for e in entries
            if e["dir"] == "out" and isinstance(e["msg"], dict) and "method" in e["msg"]
            and "id" not in e["msg"]]


class McpClientsTestCase(unittest.TestCase):
    """One hub for the class; each test gets its own agent, channel and tap dir."""

    hub = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.path.isfile(support.ARC_BIN) or not os.access(support.ARC_BIN, os.X_OK):
            raise AssertionError(f"ARC_BIN is not an executable file: {support.ARC_BIN!r}")
        cls.tmp = Path(tempfile.mkdtemp(prefix="arc-mcp-clients-"))
        cls.hub = support.HubProcess("ours", cls.tmp, storage=cls.tmp / "arc.sqlite3",
                                     spool_dir=cls.tmp / "relay")
        try:
            cls.hub.start()
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.hub is not None:
            cls.hub.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.hub.result("POST", "/v1/sessions", {"agent_id": OTHER, "replace": True})
        self.capture = Path(tempfile.mkdtemp(prefix="tap-", dir=self.tmp))

    def start(self, agent):
        """This test's agent id and its own channel (created over HTTP)."""
        self.agent = agent
        self.channel = f"ch-{agent}"
        self.hub.result("POST", "/v1/channels", {"name": self.channel, "created_by": OTHER})

    def server_command(self, *extra):
        return [sys.executable, str(TAP), str(self.capture), "--", support.ARC_BIN, "mcp",
                "--agent", self.agent, "--base-url", self.hub.base_url, *extra]

    def script_config(self, mode=None, server_args=(), **extra):
        cfg = {"command": self.server_command(*server_args), "hub": self.hub.base_url, "agent": self.agent,
               "other": OTHER, "channel": self.channel, "step_ms": int(STEP * 1000), **extra}
        if mode is not None:
            cfg["mode"] = mode
        return cfg

    def run_script(self, argv, mode=None, **extra):
        """Runs a client script; returns (summary, sessions, stderr)."""
        proc = subprocess.Popen(
            argv + [json.dumps(self.script_config(mode, **extra))], cwd=str(CLIENTS),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = proc.communicate(timeout=SCRIPT_TIMEOUT)
        except subprocess.TimeoutExpired:
            # Killing the script closes the server's stdin: the tap and
            # `arc mcp` end with it.
            proc.kill()
            stdout, stderr = proc.communicate(timeout=STEP)
            self.fail(f"{argv[-1]} did not finish in {SCRIPT_TIMEOUT} s; stdout:\n{stdout[-2000:]}"
                      f"\nstderr:\n{stderr[-4000:]}\n{transcript(read_taps(self.capture))}")
        sessions = read_taps(self.capture)
        lines = [line for line in stdout.splitlines() if line.strip()]
        self.assertTrue(lines, f"no summary (exit {proc.returncode}); stderr:\n{stderr[-4000:]}"
                               f"\n{transcript(sessions)}")
        summary = json.loads(lines[-1])
        self.assertEqual(proc.returncode, 0 if summary.get("ok") else 1, stderr[-2000:])
        return summary, sessions, stderr

    def node_script(self, name, mode=None, **extra):
        if NODE is None:
            self.fail("node is not on PATH (tests/run.sh needs Node 20+)")
        if not (CLIENTS / "node_modules" / "@modelcontextprotocol").is_dir():
            self.fail(f"the Node clients are not installed: run `npm ci` in {CLIENTS}")
        return self.run_script([NODE, name], mode, **extra)

    def python2_script(self, mode):
        if not MCP2_PYTHON.exists():
            self.fail(f"no Python SDK 2.x venv at {MCP2_PYTHON} (tests/run.sh creates it)")
        return self.run_script([str(MCP2_PYTHON), "py_sdk2.py"], mode)

    # ----- checks shared by every client -----

    def live_agents(self):
        return [a["agent_id"] for a in self.hub.result("GET", "/v1/agents")]

    def check_summary(self, summary, sessions, stderr, client_version, *, legacy=None, modern=None,
                      channel_enabled=False):
        """Everything a client run must show; the era is checked first:
        `legacy` is the version the client offers to `initialize`, `modern`
        the keywords of `check_modern`."""
        context = f"\nsummary: {json.dumps(summary)[:3000]}\nstderr:\n{stderr[-3000:]}\n" \
                  f"{transcript(sessions)}"
        self.assertTrue(summary.get("ok"), f"client failed at {summary.get('stage')}: "
                                           f"{summary.get('error')}{context}")
        self.assertEqual(summary["client_version"], client_version, context)
        if legacy is not None:
            self.check_legacy(sessions, context, offered=legacy)
        if modern is not None:
            self.check_modern(sessions, context, **modern)

        # Tools: the core profile by default.
        for name in CORE_TOOLS:
            self.assertIn(name, summary["tools"], context)

        # Post: the message reached the hub (seen through its HTTP API).
        on_hub = {m["id"]: m for m in self.hub.result(
            "GET", f"/v1/messages?channel={self.channel}&since_id=0&limit=100")}
        posted = summary["posted"]
        self.assertEqual(posted["from_agent"], self.agent, context)
        self.assertIn(posted["id"], on_hub, context)
        self.assertEqual((on_hub[posted["id"]]["from_agent"], on_hub[posted["id"]]["body"]),
                         (self.agent, f"hello from {self.agent}"), context)

        # A hub error: an error result carrying the hub's own text (what
        # the HTTP API says to the same post).
        _, refused, _ = self.hub.post("/v1/messages", {
            "from_agent": OTHER, "channel": f"no-such-{self.channel}", "body": "x"})
        self.assertFalse(refused["ok"], refused)
        self.assertIs(summary["hub_error"]["isError"], True, context)
        self.assertIn(refused["error"], summary["hub_error"]["text"], context)

        # Poll: the other agent's HTTP post came back, and never our own.
        self.assertEqual(on_hub[summary["theirs_poll"]]["from_agent"], OTHER, context)
        polled = [m["id"] for m in summary["polled"]]
        self.assertIn(summary["theirs_poll"], polled, context)
        self.assertNotIn(self.agent, [m["from_agent"] for m in summary["polled"]], context)

        # Push: an update for arc://inbox after the other agent posted, and
        # the resource then holds that message.
        self.assertIn("arc://inbox", summary["resources"], context)
        self.assertEqual(summary["push"]["uri"], "arc://inbox", context)
        self.assertEqual(on_hub[summary["theirs_push"]]["from_agent"], OTHER, context)
        self.assertIn(summary["theirs_push"], summary["inbox_ids"], context)

        # Presence: live while the session was open, gone once the client
        # closed the server's stdin.
        self.assertIn(self.agent, summary["agents_live"], context)
        support.wait_until(lambda: self.agent not in self.live_agents(), timeout=STEP)
        self.assertNotIn(self.agent, self.live_agents(), context)

        # The wire: stdout held JSON-RPC lines only, every request was
        # answered, and Claude channel notifications only if enabled.
        for entries in sessions:
            for e in entries:
                if e["dir"] == "out":
                    self.assertIsInstance(e["msg"], dict, f"non-JSON on stdout: {e['line']!r}{context}")
                    self.assertEqual(e["msg"].get("jsonrpc"), "2.0", context)
            answered = responses_of(entries)
            for req in requests_of(entries):
                if req["method"] == "subscriptions/listen":
                    continue  # ends with the subscription (closed by a cancel)
                self.assertIn(json.dumps(req["id"]), answered,
                              f"request not answered: {req}{context}")
            methods = [n["method"] for n in server_notifications(entries)]
            if not channel_enabled:
                self.assertNotIn("notifications/claude/channel", methods, context)
        return context

    def check_legacy(self, sessions, context, offered, expected=None):
        """A 2025-era session: `initialize` first, the version negotiated properly."""
        expected = expected or offered
        self.assertEqual(len(sessions), 1, context)
        entries = sessions[0]
        reqs = requests_of(entries)
        self.assertEqual(reqs[0]["method"], "initialize", context)
        self.assertEqual(reqs[0]["params"]["protocolVersion"], offered, context)
        self.assertNotIn("server/discover", [r["method"] for r in reqs], context)
        answer = responses_of(entries)[json.dumps(reqs[0]["id"])]
        self.assertIn("result", answer, context)
        self.assertEqual(answer["result"]["protocolVersion"], expected, context)
        self.assertEqual(answer["result"]["serverInfo"]["name"], "arc-hub", context)
        self.assertTrue(answer["result"]["capabilities"]["resources"]["subscribe"], context)
        # The push came the 2025 way: resources/subscribe, then updated.
        self.assertIn("resources/subscribe", [r["method"] for r in reqs], context)
        self.assertIn("notifications/resources/updated",
                      [n["method"] for n in server_notifications(entries)], context)

    def check_modern(self, sessions, context, *, discover):
        """A 2026-07-28 exchange: no `initialize`, `_meta` on every request,
        `resultType` on every result; the push via `subscriptions/listen`."""
        all_reqs = [r for entries in sessions for r in requests_of(entries)]
        methods = [r["method"] for r in all_reqs]
        self.assertNotIn("initialize", methods, context)
        if discover:
            self.assertIn("server/discover", methods, context)
        else:
            self.assertNotIn("server/discover", methods, context)
        for entries in sessions:
            answered = responses_of(entries)
            for req in requests_of(entries):
                meta = (req.get("params") or {}).get("_meta") or {}
                self.assertEqual(meta.get(META_VERSION), MODERN, f"request {req}{context}")
                self.assertIn(META_CAPS, meta, f"request {req}{context}")
                answer = answered.get(json.dumps(req["id"]))
                if answer is None:
                    continue
                self.assertIn("result", answer, f"request {req} got {answer}{context}")
                self.assertIsInstance(answer["result"].get("resultType"), str,
                                      f"no resultType in the answer to {req['method']}: {answer}{context}")
                if req["method"] == "server/discover":
                    result = answer["result"]
                    self.assertIn(MODERN, result["supportedVersions"], context)
                    self.assertIn("tools", result["capabilities"], context)
                    for v in result["supportedVersions"]:
                        self.assertIn(v, HANDSHAKE_VERSIONS + (MODERN,), context)
        session = sessions[-1]
        self.assertIn("tools/list", [r["method"] for r in requests_of(session)], context)
        listens = [r for r in requests_of(session) if r["method"] == "subscriptions/listen"]
        self.assertEqual(len(listens), 1, context)
        self.assertEqual(listens[0]["params"]["notifications"]["resourceSubscriptions"],
                         ["arc://inbox"], context)
        self.assertNotIn("resources/subscribe", [r["method"] for r in requests_of(session)], context)
        sub_id = listens[0]["id"]
        stream = [n for n in server_notifications(session)
                  if ((n.get("params") or {}).get("_meta") or {}).get(META_SUB) == sub_id]
        self.assertTrue(stream, f"nothing on subscription {sub_id!r}{context}")
        self.assertEqual(stream[0]["method"], "notifications/subscriptions/acknowledged", context)
        self.assertEqual(stream[0]["params"]["notifications"].get("resourceSubscriptions"),
                         ["arc://inbox"], context)
        updates = [n for n in stream if n["method"] == "notifications/resources/updated"]
        self.assertTrue(updates, f"no resources/updated on subscription {sub_id!r}{context}")
        self.assertEqual(updates[0]["params"]["uri"], "arc://inbox", context)
        # A 2026-era client never asked for unsolicited 2025-style pushes.
        unsolicited = [n for n in server_notifications(session)
                       if n["method"] == "notifications/resources/updated"
                       and ((n.get("params") or {}).get("_meta") or {}).get(META_SUB) is None]
        self.assertEqual(unsolicited, [], context)

    # ----- 1. the Python SDK 1.x, in process -----

    async def py1_session(self, extra_args=(), tools_only=False):
        """Drives one SDK 1.x session; returns (summary, server stderr), the
        summary shaped like the scripts'. `extra_args` go to `arc mcp`;
        `tools_only` stops after `tools/list`."""
        summary = {"client_version": importlib.metadata.version("mcp"), "stage": "connect"}
        updated = asyncio.Event()
        armed = False

        async def on_message(message):
            if (armed and isinstance(message, types.ServerNotification)
                    and isinstance(message.root, types.ResourceUpdatedNotification)
                    and str(message.root.params.uri) == "arc://inbox"):
                summary["push"] = {"uri": str(message.root.params.uri)}
                updated.set()

        def other_posts(body):
            return self.hub.result("POST", "/v1/messages",
                                   {"from_agent": OTHER, "channel": self.channel, "body": body})

        def payload(result, tool):
            if result.isError:
                raise AssertionError(f"{tool} returned isError: {result.content!r}")
            return json.loads(result.content[0].text)

        cmd = self.server_command(*extra_args)
        params = StdioServerParameters(command=cmd[0], args=cmd[1:])
        step = timedelta(seconds=STEP)
        with tempfile.TemporaryFile(mode="w+") as errlog:
            try:
                async with stdio_client(params, errlog=errlog) as (read, write):
                    async with ClientSession(read, write, message_handler=on_message,
                                             read_timeout_seconds=step) as s:
                        init = await asyncio.wait_for(s.initialize(), STEP)
                        summary["protocol_version"] = init.protocolVersion
                        summary["stage"] = "tools/list"
                        tools = await asyncio.wait_for(s.list_tools(), STEP)
                        summary["tools"] = [t.name for t in tools.tools]
                        summary["tools_bytes"] = len(tools.model_dump_json(
                            by_alias=True, exclude_none=True))
                        if not tools_only:
                            summary["stage"] = "post"
                            mine = payload(await asyncio.wait_for(s.call_tool(
                                "arc_post_message",
                                {"channel": self.channel, "body": f"hello from {self.agent}"},
                                read_timeout_seconds=step), STEP), "arc_post_message")
                            summary["posted"] = {k: mine.get(k) for k in ("id", "from_agent", "body")}

                            summary["stage"] = "hub error"
                            refused = await asyncio.wait_for(s.call_tool(
                                "arc_post_message",
                                {"channel": f"no-such-{self.channel}", "body": "x"},
                                read_timeout_seconds=step), STEP)
                            summary["hub_error"] = {"isError": refused.isError,
                                                    "text": refused.content[0].text}

                            summary["stage"] = "poll"
                            summary["theirs_poll"] = other_posts(f"for {self.agent} to poll")["id"]
                            got = payload(await asyncio.wait_for(s.call_tool(
                                "arc_poll_messages", {"channel": self.channel, "timeout": 5},
                                read_timeout_seconds=step), STEP), "arc_poll_messages")
                            summary["polled"] = [{"id": m["id"], "from_agent": m["from_agent"]}
                                                 for m in got]

                            summary["stage"] = "push"
                            res = await asyncio.wait_for(s.list_resources(), STEP)
                            summary["resources"] = [str(x.uri) for x in res.resources]
                            await asyncio.wait_for(s.subscribe_resource(AnyUrl("arc://inbox")), STEP)
                            armed = True
                            summary["theirs_push"] = other_posts(f"push for {self.agent}")["id"]
                            await asyncio.wait_for(updated.wait(), STEP)
                            back = await asyncio.wait_for(
                                s.read_resource(AnyUrl("arc://inbox")), STEP)
                            summary["inbox_ids"] = [m["id"] for m in
                                                    json.loads(back.contents[0].text)["messages"]]
                            await asyncio.wait_for(
                                s.unsubscribe_resource(AnyUrl("arc://inbox")), STEP)
                            summary["agents_live"] = self.live_agents()
                        summary["stage"] = "close"
                summary["ok"] = True
            except Exception as exc:  # noqa: BLE001 - reported with the exchange
                summary["ok"] = False
                summary["error"] = repr(exc)
            errlog.seek(0)
            return summary, errlog.read()

    def test_python_sdk_1(self):
        self.start("py1")
        summary, stderr = asyncio.run(asyncio.wait_for(self.py1_session(), SCRIPT_TIMEOUT))
        sessions = read_taps(self.capture)
        context = self.check_summary(summary, sessions, stderr, PY1,
                                     legacy="2025-11-25")
        self.assertEqual(types.LATEST_PROTOCOL_VERSION, "2025-11-25")
        self.assertEqual(summary["protocol_version"], "2025-11-25", context)

    def test_python_sdk_1_tools_profiles(self):
        """`--tools core` is the default, `--tools all` a superset, and
        `--tools LIST` picks by tag and name."""
        self.start("py1-profiles")
        runs = {}
        for name, extra in (("default", ()), ("core", ("--tools", "core")),
                            ("all", ("--tools", "all")),
                            ("list", ("--tools", "claims,arc_post_message"))):
            summary, stderr = asyncio.run(asyncio.wait_for(
                self.py1_session(extra, tools_only=True), SCRIPT_TIMEOUT))
            self.assertTrue(summary.get("ok"), f"{name}: {summary} {stderr}")
            runs[name] = summary
        self.assertEqual(runs["default"]["tools"], runs["core"]["tools"])
        core, everything = set(runs["core"]["tools"]), set(runs["all"]["tools"])
        for name in CORE_TOOLS:
            self.assertIn(name, core)
        self.assertLess(core, everything)
        picked = set(runs["list"]["tools"])
        self.assertIn("arc_post_message", picked)
        self.assertIn("arc_claim", picked)
        self.assertNotIn("arc_poll_messages", picked)
        self.assertLess(picked, everything)
        # About 4 bytes a token: core stays under about 2,000 tokens.
        self.assertLess(runs["core"]["tools_bytes"], 8000, runs["core"]["tools_bytes"])

    # ----- 2. the Python SDK 2.x -----

    def test_python_sdk_2_default_auto_speaks_2026(self):
        """The SDK's default (`auto`) probes `server/discover` and adopts 2026-07-28."""
        self.start("py2-auto")
        summary, sessions, stderr = self.python2_script("auto")
        context = self.check_summary(summary, sessions, stderr, PY2,
                                     modern={"discover": True})
        self.assertEqual(summary["protocol_version"], MODERN, context)
        self.assertEqual(summary["push"]["via"], "listen", context)
        self.assertEqual(len(sessions), 1, context)
        first = requests_of(sessions[0])[0]
        self.assertEqual(first["method"], "server/discover", context)

    def test_python_sdk_2_pinned_stateless(self):
        """A pinned 2026-07-28 client sends neither discover nor initialize."""
        self.start("py2-pin")
        summary, sessions, stderr = self.python2_script(MODERN)
        context = self.check_summary(summary, sessions, stderr, PY2,
                                     modern={"discover": False})
        self.assertEqual(summary["protocol_version"], MODERN, context)
        self.assertEqual(summary["push"]["via"], "listen", context)

    def test_python_sdk_2_legacy(self):
        self.start("py2-legacy")
        summary, sessions, stderr = self.python2_script("legacy")
        context = self.check_summary(summary, sessions, stderr, PY2,
                                     legacy="2025-11-25")
        self.assertEqual(summary["protocol_version"], "2025-11-25", context)

    # ----- 3. the TypeScript SDK 1.x -----

    def test_typescript_sdk_1(self):
        self.start("ts1")
        summary, sessions, stderr = self.node_script("ts_sdk1.mjs")
        context = self.check_summary(summary, sessions, stderr, TS1,
                                     legacy="2025-11-25")
        self.assertEqual(summary["server_info"]["name"], "arc-hub", context)

    def test_typescript_sdk_1_claude_channel_flag(self):
        """`arc mcp --claude-channel` (how docs/MCP.md has Claude Code users
        turn channels on) pushes `notifications/claude/channel` to a client
        that declares nothing."""
        self.start("ts1-channel-flag")
        summary, sessions, stderr = self.node_script(
            "ts_sdk1.mjs", claude_channel="flag", server_args=("--claude-channel",))
        context = self.check_summary(summary, sessions, stderr, TS1, channel_enabled=True,
                                     legacy="2025-11-25")
        init = requests_of(sessions[0])[0]
        self.assertNotIn("experimental", init["params"]["capabilities"], context)
        self.check_channel(summary, sessions, context)

    def test_typescript_sdk_1_claude_channel_declared(self):
        """A client that declares experimental claude/channel gets
        `notifications/claude/channel` too."""
        self.start("ts1-channel")
        summary, sessions, stderr = self.node_script("ts_sdk1.mjs", claude_channel="declare")
        context = self.check_summary(summary, sessions, stderr, TS1, channel_enabled=True,
                                     legacy="2025-11-25")
        init = requests_of(sessions[0])[0]
        self.assertEqual(init["params"]["capabilities"]["experimental"], {"claude/channel": {}},
                         context)
        self.check_channel(summary, sessions, context)

    def check_channel(self, summary, sessions, context):
        """The channel notifications: headers as `content`, string `meta`
        with the message id, sender and channel, and no message told twice."""
        init = requests_of(sessions[0])[0]
        answer = responses_of(sessions[0])[json.dumps(init["id"])]["result"]
        self.assertIn("claude/channel", answer["capabilities"].get("experimental", {}), context)
        told = [n["params"] for n in server_notifications(sessions[0])
                if n["method"] == "notifications/claude/channel"]
        self.assertTrue(told, context)
        for params in told:
            self.assertIsInstance(params["content"], str, context)
            self.assertTrue(params["content"], context)
            self.assertTrue(all(isinstance(v, str) for v in params["meta"].values()), context)
        last = next(p for p in told if p["meta"].get("message_id") == str(summary["theirs_push"]))
        self.assertEqual((last["meta"]["from_agent"], last["meta"]["channel"]),
                         (OTHER, self.channel), context)
        self.assertIn(f"#{summary['theirs_push']} from {OTHER}", last["content"], context)
        # Each message is surfaced once.
        ids = [int(m) for p in told for m in re.findall(r"^- #(\d+) ", p["content"], re.M)]
        self.assertIn(summary["theirs_push"], ids, context)
        self.assertEqual(len(ids), len(set(ids)), context)

    # ----- 4. the TypeScript client 2.x -----

    def test_typescript_client_2_pinned_2026(self):
        """Pinned to 2026-07-28: `server/discover`, then stateless requests."""
        self.start("ts2-pin")
        summary, sessions, stderr = self.node_script("ts_client2.mjs", "pin")
        context = self.check_summary(summary, sessions, stderr, TS2,
                                     modern={"discover": True})
        self.assertEqual((summary["era"], summary["protocol_version"]), ("modern", MODERN), context)
        self.assertEqual(summary["honored"].get("resourceSubscriptions"), ["arc://inbox"], context)

    def test_typescript_client_2_auto_chooses_2026(self):
        """`auto` probes on a sibling process; the server's discover answer makes it modern."""
        self.start("ts2-auto")
        summary, sessions, stderr = self.node_script("ts_client2.mjs", "auto")
        context = self.check_summary(summary, sessions, stderr, TS2,
                                     modern={"discover": True})
        self.assertEqual((summary["era"], summary["protocol_version"]), ("modern", MODERN), context)

    def test_typescript_client_2_default_legacy(self):
        """Its default is the 2025 handshake, at 2025-11-25."""
        self.start("ts2-legacy")
        summary, sessions, stderr = self.node_script("ts_client2.mjs", "legacy")
        context = self.check_summary(summary, sessions, stderr, TS2,
                                     legacy="2025-11-25")
        self.assertEqual((summary["era"], summary["protocol_version"]), ("legacy", "2025-11-25"),
                         context)


if __name__ == "__main__":
    unittest.main()
