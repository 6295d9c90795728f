// Shared by the Node client scripts: the config they are given, the hub's
// HTTP API (the "other agent" posts through it), bounded waits, and the one
// JSON summary line each script prints.
//
// A script is run as `node SCRIPT.mjs CONFIG_JSON`, where CONFIG_JSON holds
//   command   the server command to spawn, [program, ...args] (a stdio tap
//             around `arc mcp --agent ... --base-url ...`)
//   hub       the hub's base URL
//   agent     the agent id the server registers as
//   other     another agent id, registered by the test, that posts over HTTP
//   channel   a channel of this test's own (created by the test)
//   step_ms   the bound on any single protocol step
//   mode      client-specific (the 2.x client's version negotiation)

export function config() {
  const raw = process.argv[2];
  if (!raw) {
    throw new Error('usage: node SCRIPT.mjs CONFIG_JSON');
  }
  const cfg = JSON.parse(raw);
  for (const key of ['command', 'hub', 'agent', 'other', 'channel']) {
    if (cfg[key] === undefined) throw new Error(`config lacks ${key}`);
  }
  cfg.step_ms = cfg.step_ms ?? 20000;
  return cfg;
}

// Rejects if `promise` has not settled within `ms`.
export function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// One call to the hub's HTTP API; returns the envelope's `result`.
export async function hub(cfg, method, path, body) {
  const res = await fetch(cfg.hub + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(cfg.step_ms),
  });
  const env = await res.json();
  if (!env.ok) throw new Error(`${method} ${path} -> ${res.status} ${JSON.stringify(env)}`);
  return env.result;
}

// The other agent posts to the test's channel over HTTP.
export function otherPosts(cfg, body) {
  return hub(cfg, 'POST', '/v1/messages', { from_agent: cfg.other, channel: cfg.channel, body });
}

// The JSON payload of a successful tool result (one text item).
export function payload(result, tool) {
  if (result.isError) throw new Error(`${tool} returned isError: ${JSON.stringify(result.content)}`);
  const item = result.content?.[0];
  if (!item || item.type !== 'text') throw new Error(`${tool}: no text item in ${JSON.stringify(result)}`);
  return JSON.parse(item.text);
}

// A latch: `wait(ms)` resolves with the first value `set` after `armed`.
export function latch() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return {
    armed: false,
    set(value) { if (this.armed) resolve(value); },
    wait(ms, what) { return within(ms, what, promise); },
  };
}

// Prints the summary line and sets the exit status.
export function finish(summary, error) {
  if (error) {
    summary.ok = false;
    summary.error = String(error?.stack ?? error);
  } else {
    summary.ok = true;
  }
  process.stdout.write(JSON.stringify(summary) + '\n');
  process.exitCode = summary.ok ? 0 : 1;
}
