// `arc mcp` driven by the 2026-era TypeScript client 2.x
// (@modelcontextprotocol/client). Its default negotiation is 'legacy' (a
// plain 2025 `initialize`), so `cfg.mode` picks:
//   'pin'    versionNegotiation { mode: { pin: '2026-07-28' } }: the modern
//            era or a loud failure, no fallback;
//   'auto'   versionNegotiation { mode: 'auto' }: a `server/discover` probe
//            (on a short-lived sibling process, for the SDK's stdio
//            transport), then the modern era if the server offers it;
//   'legacy' the default: `initialize` at the client's newest 2025 version.
// Lists tools, posts, polls a message the other agent posted over HTTP, and
// gets a push: on the modern era `subscriptions/listen` with
// resourceSubscriptions [arc://inbox]; on the legacy era `resources/subscribe`.
// Either way the update arrives as `notifications/resources/updated`.
// Prints one JSON summary line (see common.mjs for the config).

import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { config, finish, hub, latch, otherPosts, payload, within } from './common.mjs';

const cfg = config();
const step = cfg.step_ms;
const opts = { timeout: step };
const clientVersion = JSON.parse(readFileSync(new URL('./node_modules/@modelcontextprotocol/client/package.json', import.meta.url))).version;
const mode = cfg.mode ?? 'pin';
const summary = { client: '@modelcontextprotocol/client', client_version: clientVersion, mode, stage: 'connect' };

const negotiation = {
  pin: { versionNegotiation: { mode: { pin: '2026-07-28' } } },
  auto: { versionNegotiation: { mode: 'auto', probe: { timeoutMs: step } } },
  legacy: {},
}[mode];
if (!negotiation) throw new Error(`unknown mode ${mode}`);

const transport = new StdioClientTransport({
  command: cfg.command[0],
  args: cfg.command.slice(1),
  stderr: 'inherit',
});
const client = new Client(
  { name: 'arc-interop-ts-client2', version: '0.0.0' },
  { capabilities: {}, ...negotiation },
);
const updated = latch();
summary.notifications = [];
client.setNotificationHandler('notifications/resources/updated', (n) => {
  summary.notifications.push(n.method);
  if (n.params.uri === 'arc://inbox') updated.set({ uri: n.params.uri, _meta: n.params._meta });
});

let error;
try {
  await within(step * 2, 'connect', client.connect(transport, opts));
  summary.era = client.getProtocolEra();
  summary.protocol_version = client.getNegotiatedProtocolVersion();
  summary.server_info = client.getServerVersion();
  summary.server_capabilities = client.getServerCapabilities();

  summary.stage = 'tools/list';
  const tools = await client.listTools(undefined, opts);
  summary.tools = tools.tools.map((t) => t.name);

  summary.stage = 'post';
  const body = `hello from ${cfg.agent}`;
  const mine = payload(await client.callTool(
    { name: 'arc_post_message', arguments: { channel: cfg.channel, body } }, opts), 'arc_post_message');
  summary.posted = { id: mine.id, from_agent: mine.from_agent, channel: mine.channel, body: mine.body };

  // A hub error reaches the model as an error result with the hub's text.
  summary.stage = 'hub error';
  const refused = await client.callTool(
    { name: 'arc_post_message', arguments: { channel: `no-such-${cfg.channel}`, body } }, opts);
  summary.hub_error = { isError: refused.isError, text: refused.content?.[0]?.text };

  summary.stage = 'poll';
  const theirs = await otherPosts(cfg, `for ${cfg.agent} to poll`);
  summary.theirs_poll = theirs.id;
  const got = payload(await client.callTool(
    { name: 'arc_poll_messages', arguments: { channel: cfg.channel, timeout: 5 } }, opts), 'arc_poll_messages');
  summary.polled = got.map((m) => ({ id: m.id, from_agent: m.from_agent }));

  summary.stage = 'push';
  const resources = await client.listResources(undefined, opts);
  summary.resources = resources.resources.map((r) => r.uri);
  let subscription;
  if (summary.era === 'modern') {
    subscription = await client.listen({ resourceSubscriptions: ['arc://inbox'] }, opts);
    summary.honored = subscription.honoredFilter;
  } else {
    await client.subscribeResource({ uri: 'arc://inbox' }, opts);
  }
  updated.armed = true;
  const pushed = await otherPosts(cfg, `push for ${cfg.agent}`);
  summary.theirs_push = pushed.id;
  summary.push = await updated.wait(step, 'notifications/resources/updated for arc://inbox');
  const inbox = await client.readResource({ uri: 'arc://inbox' }, { ...opts, cacheMode: 'refresh' });
  summary.inbox_ids = JSON.parse(inbox.contents[0].text).messages.map((m) => m.id);
  if (subscription) {
    await within(step, 'subscription close', subscription.close());
    summary.subscription_closed = await within(step, 'subscription closed', subscription.closed);
  } else {
    await client.unsubscribeResource({ uri: 'arc://inbox' }, opts);
  }
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
