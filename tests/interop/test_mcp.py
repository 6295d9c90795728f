"""`arc mcp` driven by the official MCP Python SDK (issue 7).

The SDK's stdio client launches `$ARC_BIN mcp --agent a --base-url ...`
against a hub this file starts itself ($ARC_BIN on port 0, temp storage),
so the test checks what real hosts see: newline-delimited JSON-RPC,
version negotiation, tools, and resource-updated notifications.

Self-contained on purpose: it needs only `mcp` (>=1.9,<2), the standard
library and $ARC_BIN. Every wait is bounded.
"""

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from pydantic import AnyUrl

ARC_BIN = os.environ.get("ARC_BIN", "")
STEP = 20  # seconds allowed for any single protocol step
REFERENCE_TOOLS = [
    "arc_post_message",
    "arc_poll_messages",
    "arc_dm",
    "arc_list_agents",
    "arc_create_channel",
    "arc_rpc_call",
]
OUR_VERSIONS = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"}


class Hub:
    """Our hub on a free port with its own temp directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="arc-mcp-interop-")
        self.proc = subprocess.Popen(
            [
                ARC_BIN,
                "--port", "0",
                "--storage", os.path.join(self.dir, "arc.sqlite3"),
                "--spool-dir", os.path.join(self.dir, "spool"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines = []
        found = threading.Event()
        self.port = None

        def drain():
            for line in self.proc.stdout:
                self.lines.append(line)
                m = re.search(r"listening on \S+:(\d+)", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    found.set()

        self.drainer = threading.Thread(target=drain, daemon=True)
        self.drainer.start()
        if not found.wait(STEP):
            self.stop()
            raise AssertionError("hub did not report its port: %r" % self.lines)
        self.url = "http://127.0.0.1:%d" % self.port

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=STEP) as r:
            env = json.loads(r.read())
        assert env["ok"], env
        return env["result"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STEP)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STEP)
        self.drainer.join(STEP)
        self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def text_of(result):
    """The JSON payload of a successful tool result."""
    assert not result.isError, result
    assert result.content[0].type == "text", result
    return json.loads(result.content[0].text)


@unittest.skipUnless(ARC_BIN, "set ARC_BIN to the arc binary under test")
class TestMcpWithOfficialSdk(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        self.hub = Hub()
        self.addCleanup(self.hub.stop)
        self.hub.call("POST", "/v1/sessions", {"agent_id": "b", "replace": True})
        self.errlog = tempfile.TemporaryFile(mode="w+")
        self.addCleanup(self.errlog.close)
        self.notes = []
        self.updated = asyncio.Event()

    def server(self, agent="a"):
        return StdioServerParameters(
            command=ARC_BIN,
            # Every tool: these tests call some beyond the lean default.
            args=["mcp", "--agent", agent, "--base-url", self.hub.url, "--tools", "all"],
        )

    async def on_message(self, message):
        if isinstance(message, types.ServerNotification):
            self.notes.append(message.root)
            if (
                isinstance(message.root, types.ResourceUpdatedNotification)
                and str(message.root.params.uri) == "arc://inbox"
            ):
                self.updated.set()

    def stderr_of_server(self):
        self.errlog.seek(0)
        return self.errlog.read()

    def agents(self):
        return [s["agent_id"] for s in self.hub.call("GET", "/v1/agents")]

    async def test_initialize_tools_post_and_poll(self):
        async with stdio_client(self.server(), errlog=self.errlog) as (read, write):
            async with ClientSession(read, write, message_handler=self.on_message) as s:
                init = await asyncio.wait_for(s.initialize(), STEP)
                self.assertEqual(init.serverInfo.name, "arc-hub")
                self.assertTrue(init.serverInfo.version)
                self.assertIn(init.protocolVersion, OUR_VERSIONS)
                if types.LATEST_PROTOCOL_VERSION in OUR_VERSIONS:
                    self.assertEqual(init.protocolVersion, types.LATEST_PROTOCOL_VERSION)
                else:
                    self.assertEqual(init.protocolVersion, "2025-11-25")
                self.assertIsNotNone(init.capabilities.tools)
                self.assertTrue(init.capabilities.resources.subscribe)
                await asyncio.wait_for(s.send_ping(), STEP)

                tools = await asyncio.wait_for(s.list_tools(), STEP)
                names = [t.name for t in tools.tools]
                for name in REFERENCE_TOOLS:
                    self.assertIn(name, names)
                post = next(t for t in tools.tools if t.name == "arc_post_message")
                self.assertEqual(post.inputSchema["required"], ["channel", "body"])
                self.assertEqual(post.inputSchema["properties"]["kind"]["default"], "chat")

                # The first tool call registers the agent.
                me = text_of(await asyncio.wait_for(s.call_tool("arc_whoami", {}), STEP))
                self.assertEqual(me["agent_id"], "a")
                self.assertIn("a", self.agents())

                msg = text_of(await asyncio.wait_for(
                    s.call_tool("arc_post_message", {"channel": "general", "body": "hello from mcp"}),
                    STEP,
                ))
                self.assertEqual(msg["from_agent"], "a")
                seen = self.hub.call("GET", "/v1/events?agent_id=b&since_id=0&timeout=0")
                self.assertIn(
                    (msg["id"], "a", "hello from mcp"),
                    [(m["id"], m["from_agent"], m["body"]) for m in seen],
                )

                theirs = self.hub.call(
                    "POST", "/v1/messages",
                    {"from_agent": "b", "channel": "general", "body": "hello a"},
                )
                got = text_of(await asyncio.wait_for(
                    s.call_tool("arc_poll_messages", {"timeout": 5}), STEP,
                ))
                self.assertEqual([m["id"] for m in got], [theirs["id"]])

                bad = await asyncio.wait_for(
                    s.call_tool("arc_post_message", {"body": "no channel"}), STEP,
                )
                self.assertTrue(bad.isError)
                self.assertIn("channel", bad.content[0].text)
        # Leaving the context closed stdin: the server closed its session.
        deadline = time.monotonic() + STEP
        while "a" in self.agents() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        self.assertNotIn("a", self.agents(), self.stderr_of_server())

    async def test_subscribed_client_receives_resource_updated(self):
        async with stdio_client(self.server(), errlog=self.errlog) as (read, write):
            async with ClientSession(read, write, message_handler=self.on_message) as s:
                await asyncio.wait_for(s.initialize(), STEP)
                res = await asyncio.wait_for(s.list_resources(), STEP)
                self.assertIn("arc://inbox", [str(r.uri) for r in res.resources])
                await asyncio.wait_for(s.call_tool("arc_whoami", {}), STEP)
                await asyncio.wait_for(s.subscribe_resource(AnyUrl("arc://inbox")), STEP)
                self.assertFalse(self.updated.is_set())

                posted = self.hub.call(
                    "POST", "/v1/messages",
                    {"from_agent": "b", "channel": "general", "body": "new work"},
                )
                await asyncio.wait_for(self.updated.wait(), STEP)

                read_back = await asyncio.wait_for(s.read_resource(AnyUrl("arc://inbox")), STEP)
                feed = json.loads(read_back.contents[0].text)
                self.assertEqual(feed["agent_id"], "a")
                self.assertIn(posted["id"], [m["id"] for m in feed["messages"]])
                await asyncio.wait_for(s.unsubscribe_resource(AnyUrl("arc://inbox")), STEP)


if __name__ == "__main__":
    unittest.main()
