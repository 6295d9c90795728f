// `arc mcp` driven by the TypeScript SDK 1.x (@modelcontextprotocol/sdk):
// Client + StdioClientTransport, the 2025-era `initialize` handshake.
// Lists tools, posts, polls a message the other agent posted over HTTP, and
// gets a push: `resources/subscribe` to arc://inbox, then
// `notifications/resources/updated` after the other agent posts.
// With `claude_channel` in the config the client must also get
// `notifications/claude/channel` for the other agent's post: 'declare' has
// the client declare capabilities.experimental["claude/channel"]; 'flag'
// declares nothing (the test starts the server with --claude-channel, the
// way docs/MCP.md tells Claude Code users to turn channels on).
// Prints one JSON summary line (see common.mjs for the config).

import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { config, finish, hub, latch, otherPosts, payload, within } from './common.mjs';

const cfg = config();
const step = cfg.step_ms;
const opts = { timeout: step };
const sdkVersion = JSON.parse(readFileSync(new URL('./node_modules/@modelcontextprotocol/sdk/package.json', import.meta.url))).version;
const summary = { client: '@modelcontextprotocol/sdk', client_version: sdkVersion, stage: 'connect' };

const transport = new StdioClientTransport({
  command: cfg.command[0],
  args: cfg.command.slice(1),
  stderr: 'inherit',
});
const capabilities = cfg.claude_channel === 'declare' ? { experimental: { 'claude/channel': {} } } : {};
const client = new Client({ name: 'arc-interop-ts-sdk1', version: '0.0.0' }, { capabilities });
const updated = latch();
summary.notifications = [];
// Claude channel notifications are not in the SDK's schema: the fallback sees them.
const channelled = [];
let onChannel = () => {};
client.fallbackNotificationHandler = async (n) => {
  summary.notifications.push(n.method);
  if (n.method === 'notifications/claude/channel') {
    channelled.push(n.params);
    onChannel();
  }
};
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
  summary.notifications.push(n.method);
  if (n.params.uri === 'arc://inbox') updated.set(n.params);
});

let error;
try {
  await within(step, 'connect', client.connect(transport, opts));
  summary.era = 'legacy';
  summary.server_info = client.getServerVersion();
  summary.server_capabilities = client.getServerCapabilities();

  summary.stage = 'tools/list';
  const tools = await client.listTools(undefined, opts);
  summary.tools = tools.tools.map((t) => t.name);

  summary.stage = 'post';
  const body = `hello from ${cfg.agent}`;
  const mine = payload(await client.callTool(
    { name: 'arc_post_message', arguments: { channel: cfg.channel, body } }, undefined, opts), 'arc_post_message');
  summary.posted = { id: mine.id, from_agent: mine.from_agent, channel: mine.channel, body: mine.body };

  // A hub error reaches the model as an error result with the hub's text.
  summary.stage = 'hub error';
  const refused = await client.callTool(
    { name: 'arc_post_message', arguments: { channel: `no-such-${cfg.channel}`, body } }, undefined, opts);
  summary.hub_error = { isError: refused.isError, text: refused.content?.[0]?.text };

  summary.stage = 'poll';
  const theirs = await otherPosts(cfg, `for ${cfg.agent} to poll`);
  summary.theirs_poll = theirs.id;
  const got = payload(await client.callTool(
    { name: 'arc_poll_messages', arguments: { channel: cfg.channel, timeout: 5 } }, undefined, opts),
  'arc_poll_messages');
  summary.polled = got.map((m) => ({ id: m.id, from_agent: m.from_agent }));

  summary.stage = 'push';
  const resources = await client.listResources(undefined, opts);
  summary.resources = resources.resources.map((r) => r.uri);
  await client.subscribeResource({ uri: 'arc://inbox' }, opts);
  updated.armed = true;
  const pushed = await otherPosts(cfg, `push for ${cfg.agent}`);
  summary.theirs_push = pushed.id;
  summary.push = await updated.wait(step, 'notifications/resources/updated for arc://inbox');
  if (cfg.claude_channel) {
    const told = () => channelled.find((p) => p?.meta?.message_id === String(pushed.id));
    await within(step, 'notifications/claude/channel for the push', new Promise((resolve) => {
      onChannel = () => { if (told()) resolve(); };
      onChannel();
    }));
    summary.channel = channelled;
  }
  const inbox = await client.readResource({ uri: 'arc://inbox' }, opts);
  summary.inbox_ids = JSON.parse(inbox.contents[0].text).messages.map((m) => m.id);
  await client.unsubscribeResource({ uri: 'arc://inbox' }, opts);
  // Presence: the agent is live while its session is open.
  summary.agents_live = (await hub(cfg, 'GET', '/v1/agents')).map((a) => a.agent_id);
  summary.stage = 'close';
} catch (e) {
  error = e;
}
try {
  await within(step, 'close', client.close());
} catch (e) {
  error = error ?? e;
}
finish(summary, error);
