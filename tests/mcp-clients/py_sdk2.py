"""`arc mcp` driven by the official Python SDK 2.x (`mcp` 2.3.0).

Run with the interpreter of target/mcp2-venv:

    python py_sdk2.py CONFIG_JSON

CONFIG_JSON is the same object the Node scripts take (common.mjs): command,
hub, agent, other, channel, step_ms, and `mode`, passed to `mcp.Client`:
  "auto"        the SDK's default: a `server/discover` probe, the modern era
                when the server offers 2026-07-28, else `initialize`;
  "legacy"      the 2025 `initialize` handshake only;
  "2026-07-28"  adopt that version with no probe and no handshake: every
                request is stateless, judged by its own `_meta`.
Lists tools, posts, polls a message the other agent posted over HTTP, and
gets a push: `Client.listen(resource_subscriptions=["arc://inbox"])` on the
modern era, `resources/subscribe` plus the message handler on the legacy one.
Prints one JSON summary line. Every step is bounded.
"""

import json
import sys
import traceback
import urllib.request
import warnings
from importlib.metadata import version

import anyio
import anyio.to_thread
import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.subscriptions import ResourceUpdated

cfg = json.loads(sys.argv[1])
STEP = cfg.get("step_ms", 20000) / 1000.0
MODE = cfg.get("mode", "auto")
summary = {"client": "mcp (Python)", "client_version": version("mcp"), "mode": MODE,
           "stage": "connect", "notifications": []}


def other_posts(body):
    """The other agent posts to the test's channel over HTTP (off the event loop)."""
    data = json.dumps({"from_agent": cfg["other"], "channel": cfg["channel"], "body": body}).encode()
    req = urllib.request.Request(cfg["hub"] + "/v1/messages", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=STEP) as resp:
        env = json.loads(resp.read())
    assert env["ok"], env
    return env["result"]


def live_agents():
    with urllib.request.urlopen(cfg["hub"] + "/v1/agents", timeout=STEP) as resp:
        env = json.loads(resp.read())
    assert env["ok"], env
    return [a["agent_id"] for a in env["result"]]


def payload(result, tool):
    if result.is_error:
        raise AssertionError(f"{tool} returned isError: {result.content!r}")
    item = result.content[0]
    assert item.type == "text", result
    return json.loads(item.text)


class Push:
    """The 2025-era push, seen by the message handler once armed."""

    def __init__(self):
        self.armed = False
        self.updated = anyio.Event()

    async def on_message(self, message):
        if isinstance(message, types.ResourceUpdatedNotification):
            summary["notifications"].append(message.method)
            if self.armed and str(message.params.uri) == "arc://inbox":
                summary["push"] = {"uri": str(message.params.uri), "via": "message_handler"}
                self.updated.set()


async def main():
    push = Push()
    params = StdioServerParameters(command=cfg["command"][0], args=cfg["command"][1:])
    client = Client(stdio_client(params, errlog=sys.stderr), mode=MODE, read_timeout_seconds=STEP,
                    message_handler=push.on_message,
                    client_info=types.Implementation(name="arc-interop-py-sdk2", version="0.0.0"))
    # Each step has its own bound, the whole run one more. (The client's
    # task groups must be entered and left inside the same cancel scope.)
    with anyio.fail_after(STEP * 8):
        async with client:
            await exercise(client, push)


async def exercise(client, push):
    summary["protocol_version"] = client.protocol_version
    summary["era"] = "modern" if client.protocol_version == "2026-07-28" else "legacy"
    info = client.server_info
    summary["server_info"] = None if info is None else {"name": info.name, "version": info.version}
    summary["server_capabilities"] = client.server_capabilities.model_dump(
        by_alias=True, mode="json", exclude_none=True)

    summary["stage"] = "tools/list"
    with anyio.fail_after(STEP):
        tools = await client.list_tools()
    summary["tools"] = [t.name for t in tools.tools]

    summary["stage"] = "post"
    body = f"hello from {cfg['agent']}"
    with anyio.fail_after(STEP):
        mine = payload(await client.call_tool(
            "arc_post_message", {"channel": cfg["channel"], "body": body}), "arc_post_message")
    summary["posted"] = {k: mine.get(k) for k in ("id", "from_agent", "channel", "body")}

    # A hub error reaches the model as an error result with the hub's text.
    summary["stage"] = "hub error"
    with anyio.fail_after(STEP):
        refused = await client.call_tool(
            "arc_post_message", {"channel": f"no-such-{cfg['channel']}", "body": body})
    summary["hub_error"] = {"isError": refused.is_error, "text": refused.content[0].text}

    summary["stage"] = "poll"
    theirs = await anyio.to_thread.run_sync(other_posts, f"for {cfg['agent']} to poll")
    summary["theirs_poll"] = theirs["id"]
    with anyio.fail_after(STEP):
        got = payload(await client.call_tool(
            "arc_poll_messages", {"channel": cfg["channel"], "timeout": 5}), "arc_poll_messages")
    summary["polled"] = [{"id": m["id"], "from_agent": m["from_agent"]} for m in got]

    summary["stage"] = "push"
    with anyio.fail_after(STEP):
        resources = await client.list_resources()
    summary["resources"] = [str(r.uri) for r in resources.resources]
    if summary["era"] == "modern":
        # Entering waits for the acknowledgement (bounded by the read timeout).
        async with client.listen(resource_subscriptions=["arc://inbox"]) as sub:
            summary["honored"] = sub.honored.model_dump(by_alias=True, mode="json", exclude_none=True)
            pushed = await anyio.to_thread.run_sync(other_posts, f"push for {cfg['agent']}")
            summary["theirs_push"] = pushed["id"]
            with anyio.fail_after(STEP):
                async for event in sub:
                    if isinstance(event, ResourceUpdated) and event.uri == "arc://inbox":
                        summary["push"] = {"uri": event.uri, "via": "listen"}
                        break
                    summary.setdefault("other_events", []).append(repr(event))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # resources/subscribe is deprecated in 2.x
            with anyio.fail_after(STEP):
                await client.subscribe_resource("arc://inbox")
            push.armed = True
            pushed = await anyio.to_thread.run_sync(other_posts, f"push for {cfg['agent']}")
            summary["theirs_push"] = pushed["id"]
            with anyio.fail_after(STEP):
                await push.updated.wait()
            with anyio.fail_after(STEP):
                await client.unsubscribe_resource("arc://inbox")
    with anyio.fail_after(STEP):
        inbox = await client.read_resource("arc://inbox", cache_mode="refresh")
    summary["inbox_ids"] = [m["id"] for m in json.loads(inbox.contents[0].text)["messages"]]
    # Presence: the agent is live while its session is open.
    summary["agents_live"] = await anyio.to_thread.run_sync(live_agents)
    summary["stage"] = "close"


if __name__ == "__main__":
    code = 0
    try:
        anyio.run(main)
        summary["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - the summary reports every failure
        summary["ok"] = False
        summary["error"] = "".join(traceback.format_exception(exc))[-6000:]
        code = 1
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    sys.exit(code)
