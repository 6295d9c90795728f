/*
 * Arc operator dashboard.
 *
 * The page is an ordinary registered agent: it talks to the hub through the
 * same v1 API as every other agent. Live updates come from one SSE stream
 * (GET /v1/stream) carrying every message the operator may see; when the
 * stream is unavailable it falls back to long-polling GET /v1/events.
 *
 * Where the hub keeps a delivery record (hub-info feature arc-rs:delivery),
 * the page also shows each direct message's state (queued, delivered,
 * surfaced, read or dead letter), pending counts per agent and the dead
 * letters; these are polled with the agent list. A hub without the feature
 * (the Python reference) is never asked for them, and nothing extra shows.
 *
 * The same holds for reservations (arc-rs:reservations: a panel of active
 * leases on path patterns, polled with the claims and locks) and the task
 * DAG (arc-rs:task_dag: every task's state, worked out here from the task
 * rows, the active claims and each task message's metadata, so it needs no
 * route the reference lacks). Guard notices (metadata.arc_guard) are
 * marked in the feed on any hub: that needs nothing but the message.
 *
 * Safety rule for this file: agent-supplied text only ever reaches the DOM
 * through textContent / createElement (see el()). Nothing here parses HTML.
 */
"use strict";

(function () {
  // ---------------------------------------------------------------- config
  const FEED_CAP = 500;        // message nodes kept in the feed
  const SEED = 50;             // messages fetched when a view opens
  const INBOX_CAP = 200;
  const RECENT_CAP = 2000;     // live public messages remembered for view switches
  const BODY_SHOWN = 4000;     // characters of a body shown before "show all"
  const SUMMARY_CHARS = 240;   // characters of an attachment summary
  const POLL_TIMEOUT = 25;     // long-poll fallback wait, seconds
  const KIND_EVENTS = new Set(["task", "task_request", "task_result"]);
  const DELIVERY_FEATURE = "arc-rs:delivery";
  const RESERVATIONS_FEATURE = "arc-rs:reservations";
  const DAG_FEATURE = "arc-rs:task_dag";
  const DAG_CAP = 100;         // newest tasks the DAG panel shows
  const TITLE_BATCH = 12;      // task messages looked up at once
  const PENDING_CAP = 50;      // agents whose /pending one refresh asks for
  const PENDING_PARALLEL = 3;  // of those, requests in flight at once
  const OUTBOX_CAP = 50;       // sent DMs remembered (per browser and hub)
  const DEAD_CAP = 50;         // dead letters listed
  const SENT_KEY = "arcSentDms";

  const params = new URLSearchParams(location.search);
  const forcePoll = params.get("transport") === "poll";

  // ---------------------------------------------------------------- state
  const S = {
    me: null,
    display: "operator",
    sessionId: null,
    skewMs: 0,               // server clock minus local clock
    channel: "general",
    thread: "",
    viewGen: 0,
    channels: new Map(),     // name -> {name, unread, node}
    lastRead: {},            // channel -> highest id seen there
    agents: new Map(),       // agent_id -> session
    threads: new Map(),      // thread_id -> summary
    feedIds: [],             // ids of message nodes, ascending
    feedNodes: new Map(),    // id -> li
    pending: [],             // messages waiting for the next render frame
    unseenBelow: 0,
    seedLimit: SEED,
    recent: [],              // live public messages (ring)
    inboxIds: new Set(),
    titles: new Map(),       // task id -> first line of its message (or null)
    cursor: 0,               // highest message id received live
    transport: forcePoll ? "poll" : "sse",
    es: null,
    streamGen: 0,
    sseErrors: 0,
    shutdown: null,          // {deadline, delay}
    hubInfo: null,
    started: false,
    delivery: false,         // the hub keeps a delivery record (arc-rs:delivery)
    pendingOf: new Map(),    // agent_id -> its last GET /v1/agents/{id}/pending answer
    pendingRotate: 0,        // where the next refresh starts among agents past the cap
    sent: [],                // DMs this browser sent, newest first
    sentLoaded: false,
    dead: [],                // GET /v1/deliveries/dead
    deadTo: new Set(),       // recipients of those
    deadSig: "",
    reservationsOn: false,   // the hub keeps reservations (arc-rs:reservations)
    reservations: [],        // GET /v1/reservations?active_only=1
    resSig: null,
    dagOn: false,            // the hub understands task dependencies (arc-rs:task_dag)
    taskRows: [],            // GET /v1/tasks, the last answer
    claims: [],              // GET /v1/claims?active_only=1, the last answer
    taskInfo: new Map(),     // task id -> {kind, deps, priority, capabilities, paths} of its message, or null
    dagSig: null,
  };

  // ---------------------------------------------------------------- DOM helpers
  const $ = (id) => document.getElementById(id);

  // el("li", {className: "x", title: "t"}, child, "text", ...) — strings become text nodes.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null) continue;
        if (k === "className" || k === "textContent" || k === "title" || k === "type" ||
            k === "value" || k === "hidden" || k === "disabled") node[k] = v;
        else if (k.startsWith("data-") || k.startsWith("aria-")) node.setAttribute(k, String(v));
        else if (k === "onclick") node.addEventListener("click", v);
        else throw new Error("el: unsupported property " + k);
      }
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function truncate(s, n) {
    s = String(s);
    return s.length > n ? s.slice(0, n) + "…" : s;
  }

  function asText(v) {
    if (typeof v === "string") return v;
    try { return JSON.stringify(v); } catch (_) { return String(v); }
  }

  function hashClass(id) {
    let h = 2166136261;
    for (let i = 0; i < id.length; i++) {
      h ^= id.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return "c" + ((h >>> 0) % 10);
  }

  function nowServer() {
    return Date.now() + S.skewMs;
  }

  function parseTs(ts) {
    const t = Date.parse(ts);
    return Number.isNaN(t) ? null : t;
  }

  function fmtTime(ts) {
    const t = parseTs(ts);
    if (t === null) return String(ts);
    const d = new Date(t - S.skewMs);
    const today = new Date();
    const opts = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
    if (d.toDateString() !== today.toDateString()) {
      return d.toLocaleDateString() + " " + d.toLocaleTimeString([], opts);
    }
    return d.toLocaleTimeString([], opts);
  }

  function fmtLeft(ms) {
    if (ms <= 0) return "expired";
    let s = Math.floor(ms / 1000);
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    const two = (n) => (n < 10 ? "0" + n : String(n));
    return h > 0 ? h + ":" + two(m) + ":" + two(s) : m + ":" + two(s);
  }

  function displayName(agentId) {
    if (agentId === S.me) return S.display;
    const a = S.agents.get(agentId);
    return a && a.display_name ? a.display_name : agentId;
  }

  // A frame-or-timeout scheduler (rAF alone stalls in background tabs).
  function later(fn) {
    let done = false;
    const run = () => { if (!done) { done = true; fn(); } };
    requestAnimationFrame(run);
    setTimeout(run, 120);
  }

  // Debounced refreshers keyed by name.
  const timers = {};
  function soon(name, fn, ms) {
    if (timers[name]) return;
    timers[name] = setTimeout(() => { timers[name] = null; fn(); }, ms);
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // Polled panels are refreshed from several places (their timer, live
  // events, commands), so two requests for one panel can be in flight at
  // once and answer in either order. Each refresh takes a ticket before it
  // asks; its answer is applied only if no refresh of that panel started
  // later has been applied already, so a slow answer never overwrites a
  // newer one.
  const tickets = {};
  function ticket(name) {
    const t = tickets[name] || (tickets[name] = { issued: 0, applied: 0 });
    const n = ++t.issued;
    return () => {
      if (n <= t.applied) return false;
      t.applied = n;
      return true;
    };
  }

  // The page changed what it knows itself (e.g. a shutdown it just
  // cancelled): answers to requests already in flight are stale.
  function invalidate(name) {
    const t = tickets[name];
    if (t) t.applied = t.issued;
  }

  // ---------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body, timeoutMs) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs || 15000);
    const init = { method, cache: "no-store", signal: ctl.signal, headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      clearTimeout(timer);
      throw new ApiError(0, "hub unreachable (" + method + " " + path.split("?")[0] + ")");
    }
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    clearTimeout(timer);
    if (!res.ok || !data || data.ok === false) {
      const msg = data && typeof data.error === "string" ? data.error : "HTTP " + res.status;
      throw new ApiError(res.status, msg);
    }
    return data;
  }

  const q = encodeURIComponent;

  // ---------------------------------------------------------------- status line
  function setConn(state) {
    const c = $("conn");
    const labels = {
      sse: ["Connected · live", "conn-ok"],
      poll: ["Connected · long-poll", "conn-ok"],
      wait: ["Connecting…", "conn-wait"],
      down: ["Disconnected", "conn-down"],
    };
    const [text, cls] = labels[state] || labels.wait;
    c.textContent = text;
    c.className = "conn " + cls;
    c.setAttribute("data-state", state);
  }

  function showError(msg) {
    $("error-text").textContent = msg;
    $("error").hidden = false;
    localNotice(msg, "error");
  }

  function hideError() {
    $("error").hidden = true;
  }

  // ---------------------------------------------------------------- identity
  function randomSuffix() {
    const a = new Uint32Array(1);
    crypto.getRandomValues(a);
    return (a[0] % 1679616).toString(36).padStart(4, "0");
  }

  function noteSkew(serverTs) {
    const t = parseTs(serverTs);
    if (t === null) return;
    const skew = t + 500 - Date.now();
    S.skewMs = Math.abs(skew) < 1500 ? 0 : skew;
  }

  async function register(agentId, replace) {
    const d = await api("POST", "/v1/sessions", {
      agent_id: agentId,
      display_name: S.display,
      replace,
    });
    return d.result;
  }

  async function bootstrapIdentity() {
    let stored = null;
    try {
      stored = localStorage.getItem("arcAgentId");
      S.display = localStorage.getItem("arcDisplayName") || "operator";
    } catch (_) { /* storage disabled */ }
    let session = null;
    if (stored) {
      try { session = await register(stored, true); } catch (e) { if (e.status === 0) throw e; }
    }
    if (!session) {
      try {
        session = await register("operator", false);
      } catch (e) {
        if (e.status !== 409) throw e;
        session = await register("operator-" + randomSuffix(), false);
      }
    }
    adoptSession(session);
  }

  function adoptSession(session) {
    S.me = session.agent_id;
    S.display = session.display_name || session.agent_id;
    S.sessionId = session.session_id;
    noteSkew(session.created_at);
    try {
      localStorage.setItem("arcAgentId", S.me);
      localStorage.setItem("arcDisplayName", S.display);
    } catch (_) { /* storage disabled */ }
    const w = $("whoami");
    w.textContent = "You: " + S.display + (S.display !== S.me ? " (" + S.me + ")" : "");
    w.setAttribute("data-agent", S.me);
  }

  function closeSession() {
    if (!S.sessionId) return;
    const sid = S.sessionId;
    S.sessionId = null;
    try {
      fetch("/v1/sessions/" + q(sid), { method: "DELETE", keepalive: true }).catch(() => {});
    } catch (_) { /* page is going away */ }
  }

  // ---------------------------------------------------------------- live transport
  function startLive() {
    S.streamGen += 1;
    const gen = S.streamGen;
    if (S.es) { S.es.close(); S.es = null; }
    if (S.transport === "sse" && typeof EventSource === "function") startSse(gen);
    else { S.transport = "poll"; pollLoop(gen); }
  }

  function startSse(gen) {
    const url = "/v1/stream?agent_id=" + q(S.me) + "&since_id=" + S.cursor;
    const es = new EventSource(url);
    S.es = es;
    S.sseErrors = 0;
    es.onopen = () => {
      if (gen !== S.streamGen) return;
      S.sseErrors = 0;
      setConn("sse");
    };
    es.onmessage = (ev) => {
      if (gen !== S.streamGen) return;
      S.sseErrors = 0;
      let m;
      try { m = JSON.parse(ev.data); } catch (_) { return; }
      ingest(m);
    };
    es.onerror = () => {
      if (gen !== S.streamGen) return;
      S.sseErrors += 1;
      setConn(es.readyState === EventSource.CLOSED ? "down" : "wait");
      // A refused stream (non-200, wrong type) closes for good; repeated
      // failures to reconnect mean a proxy or hub that cannot stream.
      if (es.readyState === EventSource.CLOSED || S.sseErrors >= 3) {
        es.close();
        S.es = null;
        S.transport = "poll";
        startLive();
      }
    };
  }

  async function pollLoop(gen) {
    let failures = 0;
    setConn("poll");
    while (gen === S.streamGen) {
      try {
        const d = await api(
          "GET",
          "/v1/events?agent_id=" + q(S.me) + "&since_id=" + S.cursor + "&limit=500&timeout=" + POLL_TIMEOUT,
          undefined,
          (POLL_TIMEOUT + 10) * 1000,
        );
        if (gen !== S.streamGen) return;
        failures = 0;
        setConn("poll");
        for (const m of d.result) ingest(m);
      } catch (e) {
        if (gen !== S.streamGen) return;
        setConn("down");
        failures += 1;
        await sleep(Math.min(15000, 500 * 2 ** Math.min(failures, 5)));
      }
    }
  }

  // Every message the operator may see passes through here exactly once
  // per delivery (duplicates are dropped by id).
  function ingest(m) {
    if (!m || typeof m.id !== "number") return;
    if (m.id > S.cursor) S.cursor = m.id;
    if (m.kind === "task" || m.kind === "task_request") noteTaskMessage(m);
    if (m.to_agent !== null && m.to_agent !== undefined) {
      if (m.to_agent === S.me) addInbox([m], true);
      return;
    }
    S.recent.push(m);
    if (S.recent.length > RECENT_CAP * 2) S.recent = S.recent.slice(-RECENT_CAP);

    if (matchesView(m)) {
      queueFeed(m);
      if (!S.thread) markRead(m.channel, m.id);
    } else if (m.from_agent !== S.me) {
      bumpUnread(m.channel, m.id);
    }
    if (!S.channels.has(m.channel)) soon("channels", refreshChannels, 300);
    if (m.thread_id) soon("threads", refreshThreads, S.threads.has(m.thread_id) ? 3000 : 300);
    const meta = m.metadata || {};
    if (KIND_EVENTS.has(m.kind) || meta.auto_rollup) soon("tasks", refreshTasks, 300);
    if (meta.recovery) soon("leases", refreshLeases, 300);
    // A reservation released (or lapsed) or a task handed over: both
    // announce themselves with a notice.
    if (meta.handoff === true) { soon("leases", refreshLeases, 300); soon("tasks", refreshTasks, 300); }
    if (S.reservationsOn && meta.reservation_id !== undefined && meta.release_reason !== undefined) {
      soon("leases", refreshLeases, 300);
    }
    if (m.from_agent === "system" && (meta.shutdown || meta.shutdown_cancelled)) {
      soon("shutdown", refreshShutdown, 100);
    }
  }

  function firstLine(body) {
    const s = String(body || "").trim().split("\n")[0];
    return s ? truncate(s, 120) : null;
  }

  // What the DAG needs of a task's message (its metadata, read
  // defensively: a hub without arc-rs:task_dag stores whatever was posted).
  function noteTaskMessage(m) {
    S.titles.set(m.id, firstLine(m.body));
    const meta = m.metadata && typeof m.metadata === "object" && !Array.isArray(m.metadata) ? m.metadata : {};
    const ids = [];
    if (Array.isArray(meta.depends_on)) {
      for (const d of meta.depends_on) {
        const n = typeof d === "number" ? d : typeof d === "string" && /^\s*\d+\s*$/.test(d) ? Number(d) : NaN;
        if (Number.isSafeInteger(n) && !ids.includes(n)) ids.push(n);
      }
    }
    const strings = (v) => (Array.isArray(v) ? v.filter((x) => typeof x === "string") : []);
    let prio = meta.priority;
    if (typeof prio === "string" && /^\s*-?\d+\s*$/.test(prio)) prio = Number(prio);
    S.taskInfo.set(m.id, {
      kind: String(m.kind),
      deps: ids,
      priority: Number.isSafeInteger(prio) ? prio : 0,
      capabilities: strings(meta.capabilities),
      paths: strings(meta.paths),
    });
  }

  // ---------------------------------------------------------------- views
  function matchesView(m) {
    if (m.to_agent !== null && m.to_agent !== undefined) return false;
    if (S.thread) return m.thread_id === S.thread;
    return m.channel === S.channel;
  }

  function viewUrl(channel, thread, limit) {
    const tail = "&limit=" + limit + "&tail=1";
    return thread
      ? "/v1/messages?thread_id=" + q(thread) + tail
      : "/v1/messages?channel=" + q(channel) + tail;
  }

  // Opens a channel or a thread: fetches the seed first, so a missing
  // channel reports an error and leaves the current view as it was.
  async function showView(channel, thread, limit) {
    limit = limit || SEED;
    const gen = ++S.viewGen;
    let seed;
    try {
      seed = (await api("GET", viewUrl(channel, thread, limit))).result;
    } catch (e) {
      if (gen !== S.viewGen) return false;
      if (e.status === 404) {
        showError(thread ? "Thread not found: " + thread : "Channel not found: #" + channel + " (" + e.message + ")");
      } else {
        showError("Could not open " + (thread ? "thread " + thread : "#" + channel) + ": " + e.message);
      }
      return false;
    }
    if (gen !== S.viewGen) return false;
    hideError();
    S.channel = channel;
    S.thread = thread || "";
    S.seedLimit = limit;
    resetFeed();
    const maxSeed = seed.length ? seed[seed.length - 1].id : 0;
    for (const m of seed) queueFeed(m);
    // Live messages that raced the seed request.
    for (const m of S.recent) if (m.id > maxSeed && matchesView(m)) queueFeed(m);
    flushFeed(true);
    if (!S.thread) {
      const top = S.feedIds.length ? S.feedIds[S.feedIds.length - 1] : 0;
      markRead(channel, Math.max(top, S.cursor));
      const ch = S.channels.get(channel);
      if (ch) { ch.unread = 0; }
    }
    $("load-older").hidden = seed.length < limit || limit >= FEED_CAP;
    renderViewHead();
    renderChannels();
    try {
      const hash = thread ? "#thread=" + q(thread) : "#channel=" + q(channel);
      history.replaceState(null, "", location.pathname + location.search + hash);
    } catch (_) { /* ignore */ }
    return true;
  }

  function renderViewHead() {
    const t = $("view-title");
    clear(t);
    if (S.thread) {
      const sum = S.threads.get(S.thread);
      t.append(el("span", { className: "muted" }, "Thread "), el("span", null, S.thread));
      if (sum && sum.channel) t.append(el("span", { className: "muted" }, " in #" + sum.channel));
    } else {
      t.append(el("span", null, "#" + S.channel));
    }
    const pick = $("thread-picker");
    ensureThreadOption(S.thread);
    pick.value = S.thread;
    $("input").placeholder = (S.thread ? "Reply in thread " + truncate(S.thread, 40) : "Message #" + truncate(S.channel, 40)) +
      "   (/help lists commands)";
  }

  function threadPostChannel() {
    const sum = S.threads.get(S.thread);
    if (sum && sum.channel && S.channels.has(sum.channel)) return sum.channel;
    return S.channel;
  }

  // ---------------------------------------------------------------- feed
  function resetFeed() {
    clear($("messages"));
    S.feedIds = [];
    S.feedNodes.clear();
    S.pending = [];
    S.unseenBelow = 0;
    $("jump").hidden = true;
    $("trimmed").hidden = true;
  }

  function queueFeed(m) {
    if (S.feedNodes.has(m.id)) return;
    S.pending.push(m);
    if (S.pending.length === 1) later(() => flushFeed(false));
  }

  function atBottom() {
    const f = $("feed");
    return f.scrollHeight - f.scrollTop - f.clientHeight < 48;
  }

  function scrollToBottom() {
    const f = $("feed");
    f.scrollTop = f.scrollHeight;
  }

  function flushFeed(forceBottom) {
    if (!S.pending.length) return;
    const feed = $("feed");
    const list = $("messages");
    const stick = forceBottom || atBottom();
    let batch = S.pending;
    S.pending = [];
    batch.sort((a, b) => a.id - b.id);
    if (batch.length > FEED_CAP) batch = batch.slice(batch.length - FEED_CAP);
    const frag = document.createDocumentFragment();
    let added = 0;
    for (const m of batch) {
      if (S.feedNodes.has(m.id)) continue;
      const node = renderMessage(m);
      const last = S.feedIds.length ? S.feedIds[S.feedIds.length - 1] : 0;
      if (m.id > last) {
        frag.append(node);
        S.feedIds.push(m.id);
      } else {
        // Out of order (e.g. our own post answered before the stream caught up).
        list.append(frag);
        let i = S.feedIds.findIndex((id) => id > m.id);
        list.insertBefore(node, S.feedNodes.get(S.feedIds[i]));
        S.feedIds.splice(i, 0, m.id);
      }
      S.feedNodes.set(m.id, node);
      added += 1;
    }
    list.append(frag);
    // Cap the DOM: drop the oldest nodes (and local notices among them).
    if (S.feedIds.length > FEED_CAP) {
      const before = feed.scrollHeight;
      while (S.feedIds.length > FEED_CAP && list.firstChild) {
        const first = list.firstChild;
        const id = Number(first.getAttribute("data-id"));
        if (first.classList.contains("msg") && S.feedNodes.get(id) === first) {
          S.feedNodes.delete(id);
          S.feedIds.shift();
        }
        list.removeChild(first);
      }
      $("trimmed").hidden = false;
      $("load-older").hidden = true;
      if (!stick) feed.scrollTop -= before - feed.scrollHeight;
    }
    if (stick) {
      scrollToBottom();
      S.unseenBelow = 0;
      $("jump").hidden = true;
    } else if (added) {
      S.unseenBelow += added;
      const j = $("jump");
      j.textContent = S.unseenBelow + " new message" + (S.unseenBelow === 1 ? "" : "s") + " ↓";
      j.hidden = false;
    }
  }

  function attachmentSummary(a) {
    if (!a || typeof a !== "object") return asText(a);
    const type = String(a.type);
    const lines = (v) => (v === undefined || v === null ? "" : String(v));
    switch (type) {
      case "text":
        return "text: " + truncate(asText(a.content), SUMMARY_CHARS);
      case "json":
        return "json: " + truncate(JSON.stringify(a.content), SUMMARY_CHARS);
      case "code": {
        const lang = a.language ? " [" + a.language + "]" : "";
        return "code" + lang + ": " + truncate(asText(a.content), SUMMARY_CHARS);
      }
      case "file_ref": {
        let s = "file: " + a.path;
        if (a.start_line !== undefined && a.start_line !== null) {
          s += " (" + lines(a.start_line) + (a.end_line !== undefined && a.end_line !== null ? "-" + a.end_line : "") + ")";
        }
        if (a.description !== undefined && a.description !== null) s += " - " + asText(a.description);
        return truncate(s, SUMMARY_CHARS);
      }
      case "diff_ref": {
        let s = "diff: " + a.path;
        if (a.base !== undefined || a.head !== undefined) {
          s += " " + asText(a.base === undefined ? "?" : a.base) + " -> " + asText(a.head === undefined ? "?" : a.head);
        }
        if (a.description !== undefined && a.description !== null) s += " - " + asText(a.description);
        return truncate(s, SUMMARY_CHARS);
      }
      default:
        return truncate(type + ": " + asText(a), SUMMARY_CHARS);
    }
  }

  function senderNode(agentId) {
    const own = agentId === S.me;
    const system = agentId === "system";
    return el("span", {
      className: "sender " + (own ? "own" : system ? "system" : hashClass(agentId)),
      title: agentId,
      "data-agent": agentId,
    }, displayName(agentId));
  }

  function renderMessage(m) {
    const meta = m.metadata && typeof m.metadata === "object" ? m.metadata : {};
    const cls = ["msg"];
    if (m.from_agent === S.me) cls.push("mine");
    if (m.from_agent === "system") cls.push("sys");
    if (m.kind !== "chat") cls.push("k-" + String(m.kind).replace(/[^a-z_]/g, ""));
    const head = el("div", { className: "meta" },
      el("time", { title: String(m.ts) }, fmtTime(m.ts)),
      senderNode(m.from_agent));
    if (m.kind !== "chat") head.append(el("span", { className: "badge kind-" + String(m.kind).replace(/[^a-z_]/g, "") }, String(m.kind)));
    if (m.thread_id && !S.thread) {
      head.append(el("button", {
        type: "button",
        className: "chip",
        title: "Open thread " + m.thread_id,
        onclick: () => showView(S.channel, m.thread_id),
      }, "⤷ " + truncate(m.thread_id, 32)));
    }
    if (S.thread && m.channel !== S.channel) head.append(el("span", { className: "chip muted" }, "#" + m.channel));
    if (m.reply_to !== null && m.reply_to !== undefined) head.append(el("span", { className: "muted" }, "↪ #" + m.reply_to));
    if (meta.task_completed !== undefined) head.append(el("span", { className: "badge done" }, "completes #" + asText(meta.task_completed)));
    const guard = guardOf(m);
    if (guard) {
      cls.push("guard", "guard-" + guard.cls);
      head.append(el("span", { className: "badge guard-badge guard-" + guard.cls, title: guard.help }, guard.label));
    }
    head.append(el("span", { className: "msg-id muted" }, "#" + m.id));

    const li = el("li", { className: cls.join(" "), "data-id": m.id, "data-guard": guard ? guard.cls : null }, head);
    if (guard) li.append(guardDetail(guard));
    const body = String(m.body === undefined || m.body === null ? "" : m.body);
    if (body) {
      const b = el("div", { className: "body" }, body.length > BODY_SHOWN ? body.slice(0, BODY_SHOWN) + "…" : body);
      li.append(b);
      if (body.length > BODY_SHOWN) {
        const more = el("button", { type: "button", className: "linkish" }, "Show all " + body.length + " characters");
        more.addEventListener("click", () => { b.textContent = body; more.remove(); });
        li.append(more);
      }
    }
    if (Array.isArray(m.attachments) && m.attachments.length) {
      const ul = el("ul", { className: "atts" });
      for (const a of m.attachments) ul.append(el("li", null, attachmentSummary(a)));
      li.append(ul);
    }
    const keys = Object.keys(meta).filter((k) => k !== "task_completed");
    if (keys.length) {
      let text;
      try { text = JSON.stringify(meta, null, 1); } catch (_) { text = String(meta); }
      li.append(el("details", { className: "metadata" },
        el("summary", null, "metadata: " + truncate(keys.join(", "), 80)),
        el("pre", null, truncate(text, 4000))));
    }
    return li;
  }

  // A guard's report (arc guard): a notice whose metadata.arc_guard is an
  // object {source, paths, conflicts, action}.
  function guardOf(m) {
    if (m.kind !== "notice" || !m.metadata || typeof m.metadata !== "object") return null;
    const g = m.metadata.arc_guard;
    if (!g || typeof g !== "object" || Array.isArray(g)) return null;
    const action = typeof g.action === "string" ? g.action : "";
    const [cls, label, help] = action === "deny"
      ? ["deny", "guard: denied", "The guard refused the change: another agent holds these paths"]
      : action === "warn"
        ? ["warn", "guard: warned", "The guard warned about the change: another agent holds these paths"]
        : ["other", "guard: " + truncate(action || "report", 24), "A guard report"];
    const paths = Array.isArray(g.paths) ? g.paths.slice(0, 20).map(asText) : [];
    const conflicts = Array.isArray(g.conflicts) ? g.conflicts.filter((c) => c && typeof c === "object").slice(0, 10) : [];
    return { cls, label, help, paths, conflicts, source: g.source === undefined || g.source === null ? "" : asText(g.source) };
  }

  function guardDetail(g) {
    const div = el("div", { className: "guard-detail" });
    if (g.paths.length) {
      const p = el("span", { className: "guard-paths" }, "paths: ");
      g.paths.forEach((path, i) => {
        if (i) p.append(", ");
        p.append(el("code", { className: "guard-path" }, truncate(path, 200)));
      });
      div.append(p);
    }
    const holders = [];
    for (const c of g.conflicts) {
      if (typeof c.agent_id !== "string") continue;
      const what = [];
      if (c.pattern !== undefined && c.pattern !== null) what.push(truncate(asText(c.pattern), 200));
      if (c.mode !== undefined && c.mode !== null) what.push(asText(c.mode));
      const h = el("span", { className: "guard-holder", "data-holder": c.agent_id }, senderNode(c.agent_id));
      if (what.length) h.append(" (" + what.join(", ") + ")");
      if (typeof c.reason === "string" && c.reason) h.append(": " + truncate(c.reason, 200));
      holders.push(h);
    }
    if (holders.length) {
      const span = el("span", { className: "guard-holders" }, "held by ");
      holders.forEach((h, i) => { if (i) span.append("; "); span.append(h); });
      div.append(span);
    }
    if (g.source) div.append(el("span", { className: "muted" }, "via " + truncate(g.source, 60)));
    return div;
  }

  function localNotice(text, kind) {
    const li = el("li", { className: "local " + (kind || "info") }, el("span", { className: "muted" }, fmtTime(new Date(nowServer()).toISOString()) + " "), text);
    const stick = atBottom();
    $("messages").append(li);
    if (stick) scrollToBottom();
  }

  function refreshSenderNames() {
    for (const s of document.querySelectorAll(".sender[data-agent]")) {
      const name = displayName(s.getAttribute("data-agent"));
      if (s.textContent !== name) s.textContent = name;
    }
  }

  // ---------------------------------------------------------------- channels + unread
  function loadLastRead() {
    try {
      const raw = localStorage.getItem("arcLastRead");
      if (raw) {
        const v = JSON.parse(raw);
        if (v && typeof v === "object") { S.lastRead = v; return true; }
      }
    } catch (_) { /* ignore */ }
    return false;
  }

  function saveLastRead() {
    soon("saveRead", () => {
      try { localStorage.setItem("arcLastRead", JSON.stringify(S.lastRead)); } catch (_) { /* ignore */ }
    }, 1000);
  }

  function markRead(channel, id) {
    if (!(S.lastRead[channel] >= id)) {
      S.lastRead[channel] = id;
      saveLastRead();
    }
  }

  function bumpUnread(channel, id) {
    if (S.lastRead[channel] >= id) return;
    let ch = S.channels.get(channel);
    if (!ch) {
      ch = { name: channel, unread: 0 };
      S.channels.set(channel, ch);
    }
    ch.unread += 1;
    soon("renderChannels", renderChannels, 150);
  }

  async function refreshChannels() {
    let list;
    try {
      list = (await api("GET", "/v1/channels")).result;
    } catch (e) {
      return null;
    }
    for (const c of list) {
      if (!S.channels.has(c.name)) {
        S.channels.set(c.name, { name: c.name, unread: 0 });
        if (S.lastRead[c.name] === undefined && S.started) S.lastRead[c.name] = 0;
      }
    }
    renderChannels();
    return list;
  }

  // Counts what arrived since the operator last looked (persisted per browser).
  async function seedUnread() {
    const jobs = [];
    for (const ch of S.channels.values()) {
      if (ch.name === S.channel) continue;
      const since = S.lastRead[ch.name];
      if (since === undefined) continue;
      jobs.push(api("GET", "/v1/messages?channel=" + q(ch.name) + "&since_id=" + since + "&limit=100")
        .then((d) => {
          ch.unread = d.result.filter((m) => m.from_agent !== S.me && m.id > (S.lastRead[ch.name] || 0)).length;
        })
        .catch(() => {}));
    }
    await Promise.all(jobs);
    renderChannels();
  }

  function renderChannels() {
    const ul = $("channels");
    clear(ul);
    const names = [...S.channels.keys()].sort();
    for (const name of names) {
      const ch = S.channels.get(name);
      const current = !S.thread && name === S.channel;
      const btn = el("button", {
        type: "button",
        className: "chan" + (current ? " current" : "") + (ch.unread ? " has-unread" : ""),
        title: "#" + name,
        "data-channel": name,
        "aria-current": current ? "true" : null,
        onclick: () => { closeDrawers(); showView(name, ""); },
      }, el("span", { className: "chan-name" }, "#" + name));
      if (ch.unread) {
        btn.append(el("span", { className: "unread", "data-unread": ch.unread }, ch.unread > 99 ? "99+" : String(ch.unread)));
      }
      ul.append(el("li", null, btn));
    }
  }

  // ---------------------------------------------------------------- agents
  async function refreshAgents() {
    const fresh = ticket("agents");
    let list;
    try {
      list = (await api("GET", "/v1/agents?as=" + q(S.me))).result;
    } catch (e) {
      return;
    }
    if (!fresh()) return;
    const changed = list.length !== S.agents.size ||
      list.some((a) => { const o = S.agents.get(a.agent_id); return !o || o.display_name !== a.display_name; });
    S.agents = new Map(list.map((a) => [a.agent_id, a]));
    if (!S.agents.has(S.me) && S.sessionId) {
      // Our session lapsed (laptop asleep, hub restarted): take it back.
      try { adoptSession(await register(S.me, true)); } catch (_) { /* retry next tick */ }
    }
    renderAgents();
    if (changed) refreshSenderNames();
    if (!S.hubInfo) refreshHubInfo();
    refreshDelivery(false);
  }

  function dmPrefix(agentId) {
    const needsQuotes = /[\s"]/.test(agentId);
    return "/dm " + (needsQuotes ? JSON.stringify(agentId) : agentId) + " ";
  }

  function prefill(text) {
    const input = $("input");
    input.value = text;
    closeDrawers();
    input.focus();
    input.setSelectionRange(text.length, text.length);
  }

  function renderAgents() {
    const ul = $("agents");
    clear(ul);
    const list = [...S.agents.values()].sort((a, b) => a.agent_id.localeCompare(b.agent_id));
    $("agent-count").textContent = "(" + list.length + ")";
    for (const a of list) {
      const own = a.agent_id === S.me;
      const caps = Array.isArray(a.capabilities) && a.capabilities.length ? "\ncapabilities: " + a.capabilities.join(", ") : "";
      const pill = el("button", {
        type: "button",
        className: "pill " + (own ? "own" : hashClass(a.agent_id)),
        title: a.agent_id + caps + "\nlast seen " + fmtTime(a.last_seen) + (own ? "" : "\nClick to send a direct message"),
        "data-agent": a.agent_id,
        onclick: own ? null : () => prefill(dmPrefix(a.agent_id)),
      }, el("span", { className: "pill-name" }, a.display_name || a.agent_id));
      if (own) pill.append(el("span", { className: "pill-id" }, "you"));
      else if (a.display_name && a.display_name !== a.agent_id) pill.append(el("span", { className: "pill-id" }, a.agent_id));
      paintPending(pill);
      ul.append(el("li", null, pill));
    }
  }

  // ---------------------------------------------------------------- threads
  async function refreshThreads() {
    const fresh = ticket("threads");
    let list;
    try { list = (await api("GET", "/v1/threads")).result; } catch (_) { return; }
    if (!fresh()) return;
    S.threads = new Map(list.filter((t) => t.thread_id).map((t) => [t.thread_id, t]));
    const pick = $("thread-picker");
    const keep = S.thread;
    clear(pick);
    pick.append(el("option", { value: "" }, "(all channel messages)"));
    let n = 0;
    for (const t of S.threads.values()) {
      if (++n > 300) break;
      const where = t.channel ? " · #" + t.channel : "";
      pick.append(el("option", { value: t.thread_id },
        truncate(t.thread_id, 60) + " (" + t.message_count + ")" + where + " · " + t.status));
    }
    ensureThreadOption(keep);
    pick.value = keep;
    if (S.thread) renderViewHead();
  }

  function ensureThreadOption(id) {
    if (!id) return;
    const pick = $("thread-picker");
    for (const o of pick.options) if (o.value === id) return;
    pick.append(el("option", { value: id }, truncate(id, 60)));
  }

  // ---------------------------------------------------------------- inbox
  function addInbox(msgs, live) {
    const ol = $("inbox");
    for (const m of msgs) {
      if (S.inboxIds.has(m.id)) continue;
      S.inboxIds.add(m.id);
      const item = el("button", {
        type: "button",
        className: "inbox-item" + (live ? " fresh" : ""),
        title: "Reply to " + m.from_agent,
        "data-from": m.from_agent,
        onclick: () => { item.classList.remove("fresh"); prefill(dmPrefix(m.from_agent)); },
      },
      el("span", { className: "meta" }, el("time", { title: String(m.ts) }, fmtTime(m.ts)), senderNode(m.from_agent),
        m.kind !== "chat" ? el("span", { className: "badge" }, String(m.kind)) : null,
        stateNode()),
      el("span", { className: "body" }, truncate(String(m.body || ""), 400)));
      if (Array.isArray(m.attachments) && m.attachments.length) {
        item.append(el("span", { className: "atts" }, m.attachments.map(attachmentSummary).join(" · ")));
      }
      const li = el("li", { "data-id": m.id, "data-to": m.to_agent, "data-channel": m.channel }, item);
      paintDmState(li);
      ol.prepend(li);
    }
    while (ol.children.length > INBOX_CAP) ol.removeChild(ol.lastChild);
    $("inbox-count").textContent = String(ol.children.length);
    $("inbox-empty").hidden = ol.children.length > 0;
    if (live && msgs.length) $("inbox-panel").open = true;
  }

  // ---------------------------------------------------------------- sent DMs
  // The hub lists no "DMs sent by X", and reading another agent's inbox
  // would move its delivered mark: the DMs this page sends are remembered
  // here (localStorage, per hub database), so their state can be shown.
  function loadSent() {
    if (S.sentLoaded || !S.me || !S.hubInfo) return;
    S.sentLoaded = true;
    let items = [];
    try {
      const v = JSON.parse(localStorage.getItem(SENT_KEY) || "null");
      if (v && v.instance === S.hubInfo.instance_id && Array.isArray(v.items)) items = v.items;
    } catch (_) { /* storage disabled or garbled */ }
    const have = new Set(S.sent.map((m) => m.id));
    for (const m of items) {
      if (!m || typeof m.id !== "number" || typeof m.to_agent !== "string" || m.from_agent !== S.me || have.has(m.id)) continue;
      have.add(m.id);
      S.sent.push({ id: m.id, from_agent: m.from_agent, to_agent: m.to_agent, channel: String(m.channel || "direct"),
        kind: String(m.kind || "chat"), ts: String(m.ts || ""), body: truncate(String(m.body || ""), 400) });
    }
    S.sent.sort((a, b) => b.id - a.id);
    S.sent = S.sent.slice(0, OUTBOX_CAP);
    renderSent();
  }

  function saveSent() {
    if (!S.hubInfo) return;
    try {
      // Keep other operators' entries of this browser (another tab's id).
      let others = [];
      const v = JSON.parse(localStorage.getItem(SENT_KEY) || "null");
      if (v && v.instance === S.hubInfo.instance_id && Array.isArray(v.items)) {
        others = v.items.filter((m) => m && m.from_agent !== S.me).slice(0, OUTBOX_CAP);
      }
      localStorage.setItem(SENT_KEY, JSON.stringify({ instance: S.hubInfo.instance_id, items: S.sent.concat(others) }));
    } catch (_) { /* storage disabled or full */ }
  }

  function recordSent(m) {
    if (!m || typeof m.id !== "number" || S.sent.some((x) => x.id === m.id)) return;
    S.sent.unshift({ id: m.id, from_agent: m.from_agent, to_agent: String(m.to_agent), channel: String(m.channel),
      kind: String(m.kind), ts: String(m.ts), body: truncate(String(m.body || ""), 400) });
    S.sent.sort((a, b) => b.id - a.id);
    S.sent = S.sent.slice(0, OUTBOX_CAP);
    saveSent();
    renderSent();
  }

  function renderSent() {
    const ol = $("outbox");
    clear(ol);
    for (const m of S.sent) {
      const to = m.to_agent;
      const item = el("button", {
        type: "button",
        className: "inbox-item",
        title: "Direct message #" + m.id + " to " + to + "\nClick to write another",
        onclick: () => prefill(dmPrefix(to)),
      },
      el("span", { className: "meta" }, el("time", { title: m.ts }, fmtTime(m.ts)),
        el("span", { className: "muted" }, "to"), senderNode(to),
        m.kind !== "chat" ? el("span", { className: "badge" }, m.kind) : null,
        stateNode()),
      el("span", { className: "body" }, m.body));
      const li = el("li", { "data-id": m.id, "data-to": to, "data-channel": m.channel }, item);
      paintDmState(li);
      ol.append(li);
    }
    $("outbox-count").textContent = String(S.sent.length);
    $("outbox-empty").hidden = S.sent.length > 0;
  }

  // ---------------------------------------------------------------- delivery record
  // A DM's state is worked out here from its recipient's marks (one
  // /pending request per recipient, not one request per DM), the way the
  // hub does it (docs/PROTOCOL.md, "Delivery and wake").
  const STATE_TEXT = { queued: "queued", delivered: "delivered", surfaced: "surfaced", read: "read", dead_letter: "dead letter" };

  function stateHelp(state, to) {
    switch (state) {
      case "queued": return "Queued: " + to + " has not fetched it yet";
      case "delivered": return "Delivered: the hub handed it to " + to + "; not yet shown to its model";
      case "surfaced": return "Surfaced: shown to " + to + "'s model (hook, watch or push); not marked read";
      case "read": return "Read: " + to + " marked it read";
      case "dead_letter": return "Dead letter: no agent '" + to + "' has ever had a session";
      default: return "";
    }
  }

  function stateNode() {
    return el("span", { className: "dm-state", hidden: true }, "");
  }

  function markNum(v) {
    return typeof v === "number" && Number.isFinite(v) ? v : 0;
  }

  function dmState(id, to, channel) {
    if (!S.delivery || typeof to !== "string") return null;
    if (S.deadTo.has(to)) return "dead_letter";
    const p = S.pendingOf.get(to);
    const k = p && p.marks;
    if (!k || typeof k !== "object") return null;
    if (id <= markNum(k.read)) return "read";
    if (id <= markNum(k.surfaced)) return "surfaced";
    const chans = k.delivered_channels && typeof k.delivered_channels === "object" ? k.delivered_channels : {};
    if (id <= markNum(k.delivered) || id <= markNum(k.delivered_dm) ||
        (Object.prototype.hasOwnProperty.call(chans, channel) && id <= markNum(chans[channel]))) return "delivered";
    return "queued";
  }

  // li carries data-id, data-to and data-channel; its .dm-state shows the state.
  function paintDmState(li) {
    const node = li.querySelector(".dm-state");
    if (!node) return;
    const to = li.getAttribute("data-to");
    let state = dmState(Number(li.getAttribute("data-id")), to, li.getAttribute("data-channel"));
    // A DM in this page's inbox came through its stream, long-poll or inbox
    // read, each of which moved its delivered mark: marks fetched before
    // that only lag.
    if (state === "queued" && to === S.me) state = "delivered";
    if (!state) {
      if (!node.hidden) {
        node.hidden = true;
        node.textContent = "";
        node.removeAttribute("data-state");
      }
      return;
    }
    if (node.getAttribute("data-state") === state && !node.hidden) return;
    node.className = "dm-state state-" + state;
    node.textContent = STATE_TEXT[state];
    node.title = stateHelp(state, to);
    node.setAttribute("data-state", state);
    node.hidden = false;
  }

  function renderDmStates() {
    for (const li of document.querySelectorAll("#inbox > li[data-id], #outbox > li[data-id]")) paintDmState(li);
  }

  // The pill's "N unread", with what is not surfaced or delivered in its tooltip.
  function paintPending(pill) {
    const id = pill.getAttribute("data-agent");
    const p = S.delivery ? S.pendingOf.get(id) : null;
    const c = p && p.counts;
    let span = pill.querySelector(".pill-pending");
    if (!c || typeof c.unread !== "number") {
      if (span) span.remove();
      for (const a of ["data-unread", "data-unsurfaced", "data-undelivered"]) pill.removeAttribute(a);
      return;
    }
    const more = p.truncated ? "+" : "";
    pill.setAttribute("data-unread", String(c.unread));
    pill.setAttribute("data-unsurfaced", String(markNum(c.unsurfaced)));
    pill.setAttribute("data-undelivered", String(markNum(c.undelivered)));
    if (c.unread <= 0) {
      if (span) span.remove();
      return;
    }
    if (!span) {
      span = el("span", { className: "pill-pending" }, "");
      pill.insertBefore(span, pill.querySelector(".pill-id"));
    }
    span.textContent = c.unread + more + " unread";
    span.title = c.unread + more + " unread · " + markNum(c.unsurfaced) + more + " not yet surfaced to the model · " +
      markNum(c.undelivered) + more + " not yet delivered" + (p.truncated ? " (counted over the newest 20,000 messages)" : "");
  }

  function renderPillCounts() {
    for (const pill of document.querySelectorAll("#agents .pill[data-agent]")) paintPending(pill);
  }

  function renderDead() {
    const list = S.delivery ? S.dead : [];
    const sig = JSON.stringify(list.map((d) => [d.message_id, d.suggestion]));
    if (sig === S.deadSig) return;
    S.deadSig = sig;
    const ol = $("dead-letters");
    clear(ol);
    for (const d of list) {
      const to = String(d.to_agent);
      const from = String(d.from_agent);
      const note = el("span", { className: "dead-note" }, "No agent '" + to + "' has ever had a session");
      const suggestion = typeof d.suggestion === "string" && d.suggestion ? d.suggestion : null;
      if (suggestion) {
        note.append("; did you mean '" + suggestion + "'? ");
        note.append(el("button", {
          type: "button",
          className: "linkish dead-suggest",
          "data-suggest": suggestion,
          title: "Write a direct message to " + suggestion,
          onclick: () => prefill(dmPrefix(suggestion)),
        }, "Message " + suggestion));
      } else {
        note.append(".");
      }
      ol.append(el("li", { className: "dead-item", "data-id": d.message_id, "data-to": to },
        el("span", { className: "meta" }, el("time", { title: "#" + d.message_id + " at " + String(d.ts) }, fmtTime(d.ts)), senderNode(from),
          el("span", { className: "muted" }, "to"), el("span", { className: "dead-to", title: to }, to),
          d.kind && d.kind !== "chat" ? el("span", { className: "badge" }, String(d.kind)) : null),
        d.summary ? el("span", { className: "body" }, truncate(String(d.summary), 400)) : null,
        note));
    }
    $("dead-count").textContent = String(list.length);
    $("dead-empty").hidden = list.length > 0;
  }

  function setDelivery(on) {
    if (S.delivery === on) return;
    S.delivery = on;
    $("outbox-panel").hidden = !on;
    $("dead-panel").hidden = !on;
    if (!on) {
      S.pendingOf.clear();
      S.dead = [];
      S.deadTo = new Set();
    } else {
      loadSent();
    }
    renderDead();
    renderDmStates();
    renderPillCounts();
    if (on && S.started) refreshDelivery(true);
  }

  // Whose marks one refresh asks for, at most PENDING_CAP: the page's own
  // (its inbox) and the newest sent DM's recipient first, then the listed
  // agents and the other sent DMs' recipients, in turns when there are
  // more than fit.
  function deliveryTargets() {
    const out = [];
    const seen = new Set();
    // "." and ".." cannot be a path segment in a browser's URL.
    const usable = (id) => typeof id === "string" && id !== "" && id !== "." && id !== "..";
    for (const id of [S.me, S.sent.length ? S.sent[0].to_agent : null]) {
      if (usable(id) && !seen.has(id)) { seen.add(id); out.push(id); }
    }
    const rest = [...new Set([...S.agents.keys(), ...S.sent.map((m) => m.to_agent)])]
      .filter((id) => usable(id) && !seen.has(id)).sort();
    const room = PENDING_CAP - out.length;
    if (rest.length <= room) return out.concat(rest);
    const start = S.pendingRotate % rest.length;
    S.pendingRotate = (start + room) % rest.length;
    for (let i = 0; i < room; i++) out.push(rest[(start + i) % rest.length]);
    return out;
  }

  async function eachLimited(items, n, fn) {
    let next = 0;
    const worker = async () => {
      while (next < items.length) await fn(items[next++]);
    };
    await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  }

  // One refresh at a time. The periodic one (with the agent list) is
  // skipped while another runs, and while the hub is slow to answer (it
  // waits three times as long as the last refresh took); an urgent one
  // (the page just sent a DM) runs right after a running one.
  let deliveryBusy = false;
  let deliveryAgain = false;
  let deliveryRest = 0;
  async function refreshDelivery(urgent) {
    if (!S.delivery || !S.me) return;
    if (deliveryBusy) {
      if (urgent === true) deliveryAgain = true;
      return;
    }
    if (urgent !== true && Date.now() < deliveryRest) return;
    deliveryBusy = true;
    const t0 = Date.now();
    try {
      await deliveryRound();
    } finally {
      deliveryBusy = false;
      deliveryRest = Date.now() + 3 * (Date.now() - t0);
    }
    if (deliveryAgain) {
      deliveryAgain = false;
      refreshDelivery(true);
    }
  }

  async function deliveryRound() {
    const targets = deliveryTargets();
    const got = new Map();
    let missing = false;
    const [dead] = await Promise.all([
      api("GET", "/v1/deliveries/dead?limit=" + DEAD_CAP).then((d) => d.result, (e) => {
        if (e.status === 404) missing = true;
        return null;
      }),
      eachLimited(targets, PENDING_PARALLEL, async (id) => {
        try {
          const r = (await api("GET", "/v1/agents/" + q(id) + "/pending?limit=1")).result;
          if (r && r.counts && r.marks) got.set(id, r);
        } catch (_) { /* keep what was known */ }
      }),
    ]);
    if (!S.delivery) return;
    if (missing) {
      // The hub no longer has the routes (a different hub took the port).
      setDelivery(false);
      return;
    }
    for (const [id, r] of got) S.pendingOf.set(id, r);
    const keep = new Set([S.me, ...S.agents.keys(), ...S.sent.map((m) => m.to_agent)]);
    for (const id of [...S.pendingOf.keys()]) if (!keep.has(id)) S.pendingOf.delete(id);
    if (Array.isArray(dead)) {
      S.dead = dead.filter((d) => d && typeof d.message_id === "number").slice(0, DEAD_CAP);
      S.deadTo = new Set(S.dead.map((d) => String(d.to_agent)));
    }
    renderDead();
    renderDmStates();
    renderPillCounts();
  }

  async function seedInbox() {
    try {
      const d = await api("GET", "/v1/inbox/" + q(S.me) + "?limit=50&tail=1");
      addInbox(d.result, false);
    } catch (_) { /* shown as empty */ }
  }

  // ---------------------------------------------------------------- tasks
  async function refreshTasks() {
    const fresh = ticket("tasks");
    let tasks;
    try { tasks = (await api("GET", "/v1/tasks")).result; } catch (_) { return; }
    if (!fresh() || !Array.isArray(tasks)) return;
    S.taskRows = tasks.filter((t) => t && typeof t.task_id === "number");
    renderTasks();
  }

  function renderTasks() {
    const tasks = S.taskRows;
    const byId = new Map(tasks.map((t) => [t.task_id, t]));
    const kids = new Map();
    for (const t of tasks) {
      if (t.parent_task_id === null || t.parent_task_id === undefined) continue;
      if (!kids.has(t.parent_task_id)) kids.set(t.parent_task_id, []);
      kids.get(t.parent_task_id).push(t);
    }
    const open = tasks.filter((t) => t.status === "open");
    // Show every open task and its ancestors, rooted at the top-most shown one.
    const shown = new Set();
    for (const t of open) {
      let cur = t;
      let guard = 0;
      while (cur && !shown.has(cur.task_id) && guard++ < 64) {
        shown.add(cur.task_id);
        cur = byId.get(cur.parent_task_id);
      }
    }
    const roots = [...shown].map((id) => byId.get(id))
      .filter((t) => !shown.has(t.parent_task_id))
      .sort((a, b) => a.task_id - b.task_id);
    const ul = $("tasks");
    clear(ul);
    let budget = 300;
    const add = (t, parentUl, depth) => {
      if (budget-- <= 0 || depth > 20) return;
      const children = (kids.get(t.task_id) || []).slice().sort((a, b) => a.task_id - b.task_id);
      const li = el("li", { className: "task " + (t.status === "done" ? "done" : "open"), "data-task": t.task_id });
      const row = el("button", {
        type: "button",
        className: "task-row",
        title: "Task #" + t.task_id + " in #" + t.channel + (t.thread_id ? ", thread " + t.thread_id : "") + "\ncreated " + fmtTime(t.created_at),
        onclick: () => { closeDrawers(); showView(t.channel, t.thread_id || ""); },
      },
      el("span", { className: "badge " + (t.status === "done" ? "done" : "open") }, t.status),
      el("span", { className: "task-id" }, "#" + t.task_id),
      el("span", { className: "task-title" }, S.titles.get(t.task_id) || (t.thread_id ? "thread " + t.thread_id : "#" + t.channel)));
      li.append(row);
      if (children.length) {
        const done = children.filter((c) => c.status === "done").length;
        const roll = el("div", { className: "rollup" },
          el("progress", { value: done, "aria-label": "subtasks done" }),
          el("span", { className: "muted" }, done + "/" + children.length + " subtasks done" +
            (done === children.length && t.status === "open" ? " · ready to complete" : "")));
        roll.firstChild.max = children.length;
        roll.firstChild.value = done;
        li.append(roll);
        if (t.status === "open") {
          const sub = el("ul", null);
          for (const c of children) {
            if (c.status === "open" || shown.has(c.task_id)) add(c, sub, depth + 1);
            else addLeaf(c, sub);
          }
          li.append(sub);
        }
      }
      parentUl.append(li);
    };
    const addLeaf = (t, parentUl) => {
      parentUl.append(el("li", { className: "task done", "data-task": t.task_id },
        el("span", { className: "task-row" }, el("span", { className: "badge done" }, "done"),
          el("span", { className: "task-id" }, "#" + t.task_id),
          el("span", { className: "task-title" }, S.titles.get(t.task_id) || "#" + t.channel))));
    };
    for (const r of roots) add(r, ul, 0);
    $("task-count").textContent = String(open.length);
    $("tasks-empty").hidden = open.length > 0;
    const dagIds = renderDag(byId);
    fetchTitles(dagIds.concat([...shown], [...kids.values()].flat().map((t) => t.task_id)), byId);
  }

  // Task rows carry no body or metadata: look up a few of their messages
  // at a time (each at most once), redrawing after each batch, which
  // starts the next one. The DAG's tasks come first.
  // A lookup that failed (hub unreachable) is tried again after a while.
  let titleFetches = 0;
  const lookupFailed = new Map();   // task id -> when its lookup last failed
  const LOOKUP_RETRY_MS = 30000;
  async function fetchTitles(ids, byId) {
    if (titleFetches > 0) return;
    const now = Date.now();
    const want = [...new Set(ids)].filter((id) => !S.taskInfo.has(id) && byId.has(id) &&
      !(now - (lookupFailed.get(id) || -Infinity) < LOOKUP_RETRY_MS)).slice(0, TITLE_BATCH);
    if (!want.length) return;
    titleFetches = want.length;
    let learned = false;
    await Promise.all(want.map(async (id) => {
      const t = byId.get(id);
      try {
        const d = await api("GET", "/v1/messages?channel=" + q(t.channel) + "&since_id=" + (id - 1) + "&limit=1");
        const m = d.result[0];
        if (!S.taskInfo.has(id)) {
          if (m && m.id === id) noteTaskMessage(m);
          else { S.titles.set(id, null); S.taskInfo.set(id, null); }
        }
        lookupFailed.delete(id);
        learned = true;
      } catch (_) {
        lookupFailed.set(id, Date.now());
      }
    }));
    titleFetches = 0;
    if (learned) renderTasks();
  }

  // ---------------------------------------------------------------- task DAG
  // A task is done (status done), claimed (an active claim names it),
  // blocked (a dependency is not done) or ready; "open" while its message
  // (with the dependencies) is still unknown. docs/PROTOCOL.md, "Task DAG".
  const DAG_RANK = { ready: 0, claimed: 1, blocked: 2, open: 3, done: 4 };
  const DAG_HELP = {
    ready: "Ready: open, every dependency done, nobody holds it",
    claimed: "Claimed: an agent holds an active claim on it",
    blocked: "Blocked: waits for a dependency that is not done",
    open: "Open: its dependencies are not known to this page (yet)",
    done: "Done",
  };

  function dagStates(byId) {
    const now = nowServer();
    const owner = new Map();
    for (const c of S.claims) {
      if (!c || c.task_message_id === null || c.task_message_id === undefined) continue;
      const exp = parseTs(c.expires_at);
      if (exp !== null && exp < now) continue;
      const id = Number(c.task_message_id);
      if (!owner.has(id)) owner.set(id, String(c.owner_agent_id));
    }
    const isDone = (id) => { const t = byId.get(id); return !!t && t.status === "done"; };
    const pool = S.taskRows.filter((t) => {
      const info = S.taskInfo.get(t.task_id);
      return !info || info.kind === "task";
    });
    const shown = pool.slice(-DAG_CAP);
    const rows = shown.map((t) => {
      const info = S.taskInfo.get(t.task_id);
      const deps = info ? info.deps : [];
      const blocking = deps.filter((d) => !isDone(d));
      let state;
      if (t.status === "done") state = "done";
      else if (owner.has(t.task_id)) state = "claimed";
      else if (!info) state = "open";
      else state = blocking.length ? "blocked" : "ready";
      return {
        t, state, owner: owner.get(t.task_id) || null, deps, blocking,
        priority: info ? info.priority : 0,
        capabilities: info ? info.capabilities : [],
        paths: info ? info.paths : [],
      };
    });
    rows.sort((a, b) => (DAG_RANK[a.state] - DAG_RANK[b.state]) ||
      (a.state === "done" ? b.t.task_id - a.t.task_id : (b.priority - a.priority) || (a.t.task_id - b.t.task_id)));
    return { rows, total: pool.length };
  }

  // Draws the DAG panel (when the hub has it); answers the ids shown, for
  // fetchTitles.
  function renderDag(byId) {
    if (!S.dagOn) return [];
    byId = byId || new Map(S.taskRows.map((t) => [t.task_id, t]));
    const { rows, total } = dagStates(byId);
    const ids = rows.map((r) => r.t.task_id).sort((a, b) => b - a);
    const depState = (id) => {
      const t = byId.get(id);
      return t ? t.status : "unknown";
    };
    const sig = JSON.stringify([total, rows.map((r) => [r.t.task_id, r.state, r.owner, r.priority, r.deps.map(depState),
      S.titles.get(r.t.task_id) || null, r.capabilities, r.paths, r.t.completed_at])]);
    if (sig === S.dagSig) return ids;
    S.dagSig = sig;
    const ol = $("dag");
    // Keep the keyboard focus on the row it was on across a redraw.
    const focused = ol.contains(document.activeElement) ? document.activeElement.closest("li[data-task]") : null;
    const refocus = focused ? focused.getAttribute("data-task") : null;
    clear(ol);
    const counts = { ready: 0, claimed: 0, blocked: 0, open: 0, done: 0 };
    for (const r of rows) {
      counts[r.state] += 1;
      ol.append(dagItem(r, byId, depState));
    }
    $("dag-count").textContent = String(rows.length);
    $("dag-summary").textContent = rows.length
      ? ["ready", "claimed", "blocked", "open", "done"].filter((k) => counts[k]).map((k) => counts[k] + " " + k).join(" · ")
      : "";
    $("dag-more").textContent = total > rows.length ? "Showing the newest " + rows.length + " of " + total + " tasks." : "";
    $("dag-more").hidden = total <= rows.length;
    $("dag-empty").hidden = rows.length > 0;
    if (refocus) {
      const li = ol.querySelector('li[data-task="' + Number(refocus) + '"]');
      if (li) li.focus({ preventScroll: true });
    }
    return ids;
  }

  function openTask(t) {
    closeDrawers();
    showView(t.channel, t.thread_id || "");
  }

  // A dependency: shows the dependency's row in the panel when it is
  // listed, else opens its channel or thread.
  function depButton(id, byId, depState) {
    const st = depState(id);
    return el("button", {
      type: "button",
      className: "linkish dag-dep dep-" + (st === "done" ? "done" : st === "open" ? "open" : "unknown"),
      "data-dep": id,
      title: "Task #" + id + (st === "unknown" ? " (not known to this hub)" : " (" + st + ")"),
      onclick: () => {
        const li = $("dag").querySelector('li[data-task="' + id + '"]');
        if (li) {
          li.scrollIntoView({ block: "nearest" });
          li.focus({ preventScroll: true });
          li.classList.remove("flash");
          void li.offsetWidth;
          li.classList.add("flash");
        } else if (byId.has(id)) {
          openTask(byId.get(id));
        }
      },
    }, "#" + id);
  }

  function idList(label, ids, byId, depState, className) {
    const span = el("span", { className }, label);
    ids.forEach((id, i) => {
      if (i) span.append(", ");
      span.append(depButton(id, byId, depState));
    });
    return span;
  }

  function dagItem(r, byId, depState) {
    const t = r.t;
    const title = S.titles.get(t.task_id);
    const li = el("li", {
      className: "dag-task state-" + r.state,
      "data-task": t.task_id,
      "data-state": r.state,
      "data-priority": r.priority,
      "data-owner": r.owner,
    });
    li.tabIndex = -1;
    const head = el("div", { className: "dag-head" },
      el("span", { className: "dag-state state-" + r.state, title: DAG_HELP[r.state] }, r.state),
      el("button", {
        type: "button",
        className: "linkish task-id",
        title: "Open task #" + t.task_id + " in #" + t.channel + (t.thread_id ? ", thread " + t.thread_id : "") + "\ncreated " + fmtTime(t.created_at),
        onclick: () => openTask(t),
      }, "#" + t.task_id),
      el("span", { className: "dag-title", title: title || "" }, title || (t.thread_id ? "thread " + t.thread_id : "#" + t.channel)),
      el("span", { className: "dag-prio" + (r.priority ? " raised" : ""), title: "priority " + r.priority + " (higher first)" }, "p" + r.priority));
    li.append(head);
    const detail = el("div", { className: "dag-detail" });
    if (r.state === "claimed") {
      detail.append(el("span", { className: "dag-claim" }, "claimed by ", senderNode(r.owner)));
    } else if (r.state === "blocked") {
      detail.append(idList("blocked by ", r.blocking, byId, depState, "dag-blocked"));
    } else if (r.state === "done") {
      detail.append(el("span", { className: "muted" }, t.completed_at ? "done " + fmtTime(t.completed_at) : "done"));
    } else if (r.state === "ready") {
      detail.append(el("span", { className: "muted" }, r.deps.length ? "dependencies done, unclaimed" : "unclaimed"));
    } else {
      detail.append(el("span", { className: "muted" }, S.taskInfo.get(t.task_id) === null
        ? "its message could not be read: dependencies unknown" : "looking up its dependencies…"));
    }
    if (r.deps.length) detail.append(idList("depends on ", r.deps, byId, depState, "dag-deps"));
    const extra = [];
    if (r.capabilities.length) extra.push("needs " + truncate(r.capabilities.join(", "), 160));
    if (r.paths.length) extra.push("paths " + truncate(r.paths.join(", "), 200));
    if (extra.length) detail.append(el("span", { className: "dag-extra muted" }, extra.join(" · ")));
    li.append(detail);
    return li;
  }

  function setDag(on) {
    if (S.dagOn === on) return;
    S.dagOn = on;
    $("dag-panel").hidden = !on;
    S.dagSig = null;
    if (!on) {
      clear($("dag"));
      return;
    }
    if (S.started) renderTasks();
  }

  // ---------------------------------------------------------------- claims + locks
  // Taking or releasing a claim or lock posts no message, so nothing in the
  // stream announces it: these panels are polled (see main) and may lag the
  // hub by up to one period plus a round trip.
  async function refreshLeases() {
    const fresh = ticket("leases");
    const askReservations = S.reservationsOn;
    let claims, locks, reservations;
    let reservationsMissing = false;
    try {
      [claims, locks, reservations] = await Promise.all([
        api("GET", "/v1/claims?active_only=1").then((d) => d.result),
        api("GET", "/v1/locks?active_only=1").then((d) => d.result),
        askReservations
          ? api("GET", "/v1/reservations?active_only=1").then((d) => d.result, (e) => {
            if (e.status === 404) reservationsMissing = true;
            return null;
          })
          : null,
      ]);
    } catch (_) { return; }
    if (!fresh()) return;
    if (reservationsMissing) setReservations(false);   // a different hub took the port
    else if (askReservations && S.reservationsOn && Array.isArray(reservations)) renderReservations(reservations);
    S.claims = Array.isArray(claims) ? claims : [];
    renderDag();
    const cu = $("claims");
    clear(cu);
    for (const c of claims) {
      const extra = [];
      if (c.thread_id) extra.push("thread " + c.thread_id);
      if (c.task_message_id !== null && c.task_message_id !== undefined) extra.push("task #" + c.task_message_id);
      cu.append(leaseItem(c.claim_key, c.owner_agent_id, c.expires_at, extra.join(" · "), "data-claim", c.thread_id));
    }
    $("claim-count").textContent = String(claims.length);
    $("claims-empty").hidden = claims.length > 0;
    const lu = $("locks");
    clear(lu);
    for (const l of locks) {
      const meta = l.metadata || {};
      const extra = [];
      if (meta.thread_id !== undefined) extra.push("thread " + asText(meta.thread_id));
      if (meta.channel !== undefined) extra.push("#" + asText(meta.channel));
      lu.append(leaseItem(l.file_path, l.agent_id, l.expires_at, extra.join(" · "), "data-lock",
        typeof meta.thread_id === "string" ? meta.thread_id : ""));
    }
    $("lock-count").textContent = String(locks.length);
    $("locks-empty").hidden = locks.length > 0;
    tickCountdowns();
  }

  function leaseItem(key, owner, expiresAt, extra, attr, thread) {
    const li = el("li", { className: "lease", [attr]: key });
    const name = el("span", { className: "lease-key", title: key }, key);
    if (thread) {
      li.append(el("button", { type: "button", className: "linkish lease-key", title: "Open thread " + thread,
        onclick: () => { closeDrawers(); showView(S.channel, thread); } }, key));
    } else {
      li.append(name);
    }
    li.append(el("span", { className: "lease-owner" }, senderNode(owner)));
    li.append(el("span", { className: "countdown", "data-expires": expiresAt, title: "expires " + fmtTime(expiresAt) }, ""));
    if (extra) li.append(el("span", { className: "lease-extra muted" }, extra));
    return li;
  }

  // ---------------------------------------------------------------- reservations
  const MODE_HELP = {
    exclusive: "Exclusive: no other agent may reserve, lock or edit these paths",
    shared: "Shared: others may share them; an exclusive reservation may not",
  };

  function renderReservations(list) {
    const now = nowServer();
    // A lease past its expiry is gone, whatever an answer in flight said.
    const rows = list.filter((r) => r && typeof r.reservation_id === "string" && r.active !== false &&
      !(parseTs(r.expires_at) !== null && parseTs(r.expires_at) <= now));
    S.reservations = rows;
    const sig = JSON.stringify(rows.map((r) => [r.reservation_id, r.agent_id, r.paths, r.mode, r.reason, r.task_id,
      r.claim_key, r.channel, r.expires_at]));
    if (sig === S.resSig) return;
    S.resSig = sig;
    const ul = $("reservations");
    clear(ul);
    for (const r of rows) ul.append(reservationItem(r));
    $("reservation-count").textContent = String(rows.length);
    $("reservations-empty").hidden = rows.length > 0;
    tickCountdowns();
  }

  function reservationItem(r) {
    const mode = typeof r.mode === "string" ? r.mode : "exclusive";
    const modeCls = mode === "shared" ? "shared" : mode === "exclusive" ? "exclusive" : "other";
    const holder = String(r.agent_id);
    const li = el("li", {
      className: "lease reservation mode-" + modeCls,
      "data-reservation": r.reservation_id,
      "data-agent": holder,
      "data-mode": mode,
    });
    const paths = Array.isArray(r.paths) ? r.paths.map(asText) : [];
    const pats = el("span", { className: "res-paths", title: paths.join("\n") });
    paths.slice(0, 16).forEach((p, i) => {
      if (i) pats.append(" ");
      pats.append(el("code", { className: "res-path" }, truncate(p, 200)));
    });
    if (paths.length > 16) pats.append(el("span", { className: "muted" }, " +" + (paths.length - 16) + " more"));
    li.append(pats);
    li.append(el("span", { className: "countdown", "data-expires": r.expires_at, title: "expires " + fmtTime(r.expires_at) }, ""));
    li.append(el("span", { className: "lease-owner" }, senderNode(holder), " ",
      el("span", { className: "res-mode mode-" + modeCls, title: modeCls === "other" ? "mode " + mode : MODE_HELP[mode] }, truncate(mode, 20))));
    if (typeof r.reason === "string" && r.reason) li.append(el("span", { className: "res-reason", title: r.reason }, truncate(r.reason, 300)));
    const extra = el("span", { className: "lease-extra muted" });
    const bits = [];
    if (typeof r.task_id === "number") {
      const t = S.taskRows.find((x) => x.task_id === r.task_id);
      bits.push(t
        ? el("button", { type: "button", className: "linkish", title: "Open task #" + r.task_id, onclick: () => openTask(t) }, "task #" + r.task_id)
        : "task #" + r.task_id);
    }
    if (typeof r.claim_key === "string" && r.claim_key) bits.push("claim " + truncate(r.claim_key, 80));
    if (typeof r.channel === "string" && r.channel) bits.push("#" + truncate(r.channel, 60));
    bits.forEach((b, i) => { if (i) extra.append(" · "); extra.append(b); });
    if (bits.length) li.append(extra);
    return li;
  }

  function setReservations(on) {
    if (S.reservationsOn === on) return;
    S.reservationsOn = on;
    $("reservations-panel").hidden = !on;
    S.reservations = [];
    S.resSig = null;
    clear($("reservations"));
    $("reservation-count").textContent = "0";
    $("reservations-empty").hidden = false;
    if (on && S.started) refreshLeases();
  }

  function tickCountdowns() {
    const now = nowServer();
    for (const c of document.querySelectorAll(".countdown[data-expires]")) {
      const t = parseTs(c.getAttribute("data-expires"));
      const left = t === null ? 0 : t - now;
      c.textContent = left > 0 ? "expires in " + fmtLeft(left) : "expired";
      c.classList.toggle("soon", left > 0 && left < 60000);
      c.classList.toggle("gone", left <= 0);
    }
    tickShutdown();
  }

  // ---------------------------------------------------------------- shutdown
  async function refreshShutdown() {
    const fresh = ticket("shutdown");
    let r;
    try { r = (await api("GET", "/v1/shutdown")).result; } catch (_) { return; }
    if (!fresh()) return;
    if (r && typeof r.remaining_sec === "number") {
      // The hub floors the seconds left: keep our own deadline unless the
      // hub's differs by more than that rounding, so the countdown never
      // jumps back up.
      const deadline = Date.now() + r.remaining_sec * 1000;
      if (!S.shutdown || Math.abs(S.shutdown.deadline - deadline) > 1500) {
        S.shutdown = { deadline: deadline + 500, delay: r.delay_sec };
      }
    } else {
      S.shutdown = null;
    }
    tickShutdown();
  }

  function tickShutdown() {
    const b = $("shutdown-banner");
    if (!S.shutdown) { b.hidden = true; return; }
    const left = Math.max(0, Math.ceil((S.shutdown.deadline - Date.now()) / 1000));
    $("shutdown-text").textContent = left > 0
      ? "Hub shuts down in " + left + " s. Type anything and press Enter to cancel."
      : "Hub is shutting down…";
    b.setAttribute("data-remaining", String(left));
    b.hidden = false;
  }

  async function cancelShutdown() {
    try {
      await api("POST", "/v1/shutdown/cancel", {});
      localNotice("Shutdown cancelled.");
    } catch (e) {
      if (e.message !== "no shutdown pending") showError("Cancel failed: " + e.message);
    }
    // A poll that left before the cancel would bring the banner back.
    invalidate("shutdown");
    S.shutdown = null;
    tickShutdown();
    refreshShutdown();
  }

  // ---------------------------------------------------------------- hub info
  async function refreshHubInfo() {
    let info;
    try {
      info = (await api("GET", "/v1/hub-info")).result;
    } catch (_) { return; }
    if (!info || typeof info !== "object") return;
    S.hubInfo = info;
    renderFooter();
    const features = Array.isArray(info.features) ? info.features : [];
    setDelivery(features.includes(DELIVERY_FEATURE));
    setReservations(features.includes(RESERVATIONS_FEATURE));
    setDag(features.includes(DAG_FEATURE));
  }

  function renderFooter() {
    const i = S.hubInfo;
    if (!i) return;
    const parts = [
      "Instance: " + i.instance_id + " | " + (i.wal_mode ? "WAL" : "no WAL"),
      i.implementation + " " + i.implementation_version,
      "remote access " + (i.allow_remote ? "ON" : "off"),
      "storage " + i.storage_path,
    ];
    $("hub-info").textContent = parts.join("  ·  ");
    $("hub-info").title = "protocol " + i.protocol_version + "; features: " + (i.features || []).join(", ");
  }

  // ---------------------------------------------------------------- input + commands
  const HELP = [
    "/channels — list channels",
    "/channel <name> — switch channel",
    "/create-channel <name> — create a channel and switch to it",
    "/dm <agent> <text> — direct message (quote ids with spaces)",
    "/nick <name> — change your display name",
    "/network on|off — allow or refuse non-loopback clients",
    "/quit [sec], /exit [sec] — shut the hub down (default 60 s)",
    "Anything else is posted to the current channel or thread; while a shutdown is pending it also cancels it.",
  ];

  // Splits "/dm "agent x" text" into ["agent x", "text"].
  function splitTarget(rest) {
    rest = rest.replace(/^\s+/, "");
    if (rest.startsWith('"')) {
      const end = rest.indexOf('"', 1);
      if (end > 0) return [rest.slice(1, end), rest.slice(end + 1).replace(/^\s/, "")];
    }
    const m = /^(\S+)\s?([\s\S]*)$/.exec(rest);
    return m ? [m[1], m[2]] : ["", ""];
  }

  async function runCommand(line) {
    const m = /^\/(\S+)\s*([\s\S]*)$/.exec(line);
    const cmd = m ? m[1].toLowerCase() : "";
    const arg = m ? m[2].trim() : "";
    switch (cmd) {
      case "help":
        for (const h of HELP) localNotice(h);
        return true;
      case "nick": {
        if (!arg) { showError("usage: /nick <name>"); return false; }
        try {
          const d = await api("POST", "/v1/sessions/" + q(S.me) + "/rename", { display_name: arg });
          adoptSession(d.result);
          localNotice("You are now known as " + S.display);
          refreshAgents();
          refreshSenderNames();
          return true;
        } catch (e) { showError("/nick failed: " + e.message); return false; }
      }
      case "channels": {
        const list = await refreshChannels();
        if (!list) { showError("/channels failed: hub unreachable"); return false; }
        localNotice("Channels: " + list.map((c) => "#" + c.name).join(", "));
        return true;
      }
      case "channel": {
        const name = arg.replace(/^#/, "").trim();
        if (!name) { showError("usage: /channel <name>"); return false; }
        return showView(name, "");
      }
      case "create-channel": {
        const name = arg.replace(/^#/, "").trim();
        if (!name) { showError("usage: /create-channel <name>"); return false; }
        try {
          await api("POST", "/v1/channels", { name, created_by: S.me });
        } catch (e) { showError("/create-channel failed: " + e.message); return false; }
        await refreshChannels();
        S.lastRead[name] = S.lastRead[name] || 0;
        return showView(name, "");
      }
      case "dm": {
        const [to, text] = splitTarget(arg);
        if (!to || !text.trim()) { showError("usage: /dm <agent> <text>"); return false; }
        try {
          const d = await api("POST", "/v1/messages", {
            from_agent: S.me, to_agent: to, channel: "direct", kind: "chat", body: text,
          });
          localNotice("→ " + displayName(to) + " (direct, #" + d.result.id + "): " + truncate(text, 400));
          recordSent(d.result);
          refreshDelivery(true);
          return true;
        } catch (e) { showError("/dm failed: " + e.message); return false; }
      }
      case "network": {
        const v = arg.toLowerCase();
        if (v !== "on" && v !== "off") { showError("usage: /network on|off"); return false; }
        try {
          const d = await api("POST", "/v1/network", { allow_remote: v === "on" });
          localNotice("Network: remote access " + (d.result.allow_remote ? "ON" : "OFF"));
          refreshHubInfo();
          return true;
        } catch (e) { showError("/network failed: " + e.message); return false; }
      }
      case "quit":
      case "exit": {
        let delay = 60;
        if (arg) {
          if (!/^\d+$/.test(arg)) { showError("usage: /" + cmd + " [seconds]"); return false; }
          delay = Number(arg);
        }
        try {
          await api("POST", "/v1/shutdown", { delay_sec: delay });
          invalidate("shutdown");
          localNotice(delay > 0 ? "Shutdown armed: " + delay + " s. Type anything to cancel." : "Hub shutting down now.");
        } catch (e) { showError("/" + cmd + " failed: " + e.message); return false; }
        await refreshShutdown();
        return true;
      }
      default:
        showError("Unknown command /" + truncate(cmd, 40) + " — /help lists commands");
        return false;
    }
  }

  async function postLine(text) {
    if (S.shutdown) await cancelShutdown();
    const body = { from_agent: S.me, channel: S.channel, kind: "chat", body: text };
    if (S.thread) {
      body.thread_id = S.thread;
      body.channel = threadPostChannel();
    }
    try {
      const d = await api("POST", "/v1/messages", body);
      hideError();
      if (matchesView(d.result)) { queueFeed(d.result); later(() => flushFeed(true)); }
      return true;
    } catch (e) {
      showError("Post failed: " + e.message);
      return false;
    }
  }

  async function onSubmit(ev) {
    ev.preventDefault();
    const input = $("input");
    const line = input.value;
    if (!line.trim() || !S.me) return;
    input.disabled = true;
    let ok;
    try {
      ok = line.startsWith("/") ? await runCommand(line.trim()) : await postLine(line);
    } finally {
      input.disabled = false;
      input.focus();
    }
    if (ok) input.value = "";
  }

  // ---------------------------------------------------------------- drawers (phone layout)
  function closeDrawers() {
    document.body.classList.remove("show-side", "show-panels");
    $("toggle-side").setAttribute("aria-expanded", "false");
    $("toggle-panels").setAttribute("aria-expanded", "false");
  }

  function toggleDrawer(cls, btn, other, otherBtn) {
    const on = !document.body.classList.contains(cls);
    document.body.classList.remove(other);
    $(otherBtn).setAttribute("aria-expanded", "false");
    document.body.classList.toggle(cls, on);
    $(btn).setAttribute("aria-expanded", String(on));
  }

  // ---------------------------------------------------------------- wiring
  function wire() {
    $("composer").addEventListener("submit", onSubmit);
    $("thread-picker").addEventListener("change", (e) => {
      const v = e.target.value;
      const fallback = S.thread;
      showView(S.thread && !v ? (threadPostChannel() || S.channel) : S.channel, v).then((ok) => {
        if (!ok) e.target.value = fallback;
      });
    });
    $("error-close").addEventListener("click", hideError);
    $("shutdown-cancel").addEventListener("click", cancelShutdown);
    $("jump").addEventListener("click", () => { scrollToBottom(); S.unseenBelow = 0; $("jump").hidden = true; });
    $("feed").addEventListener("scroll", () => {
      if (!$("jump").hidden && atBottom()) { S.unseenBelow = 0; $("jump").hidden = true; }
    }, { passive: true });
    $("load-older").addEventListener("click", () => {
      showView(S.channel, S.thread, Math.min(FEED_CAP, S.seedLimit * 4));
    });
    $("toggle-side").addEventListener("click", () => toggleDrawer("show-side", "toggle-side", "show-panels", "toggle-panels"));
    $("toggle-panels").addEventListener("click", () => toggleDrawer("show-panels", "toggle-panels", "show-side", "toggle-side"));
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDrawers(); });

    window.addEventListener("pagehide", () => {
      S.streamGen += 1;
      if (S.es) { S.es.close(); S.es = null; }
      closeSession();
    });
    window.addEventListener("pageshow", (e) => {
      if (e.persisted && S.me) {
        // Back from the back/forward cache: the session was closed on pagehide.
        register(S.me, true).then((s) => { adoptSession(s); startLive(); refreshAgents(); }).catch(() => setConn("down"));
      }
    });
  }

  function initialView() {
    const h = location.hash.slice(1);
    const p = new URLSearchParams(h);
    if (p.get("thread")) return ["general", p.get("thread")];
    if (p.get("channel")) return [p.get("channel"), ""];
    return ["general", ""];
  }

  async function main() {
    wire();
    setConn("wait");
    const hubInfo = refreshHubInfo();
    for (let attempt = 0; ; attempt++) {
      try {
        await bootstrapIdentity();
        break;
      } catch (e) {
        setConn("down");
        $("whoami").textContent = "Not registered: " + e.message;
        await sleep(Math.min(10000, 1000 * (attempt + 1)));
      }
    }
    // The stream starts at the newest message we can see now; the views
    // are seeded by their own requests.
    try {
      const b = (await api("GET", "/v1/bootstrap?agent_id=" + q(S.me))).result;
      S.cursor = b.latest_visible_id || 0;
    } catch (_) { S.cursor = 0; }
    const hadReadState = loadLastRead();
    await refreshChannels();
    if (!hadReadState) {
      for (const name of S.channels.keys()) S.lastRead[name] = S.cursor;
      saveLastRead();
    }
    await hubInfo;
    loadSent();
    S.started = true;
    startLive();
    refreshAgents();
    refreshThreads();
    seedInbox();
    refreshTasks();
    refreshLeases();
    refreshShutdown();
    const [ch, th] = initialView();
    if (!(await showView(ch, th)) && (ch !== "general" || th)) await showView("general", "");
    seedUnread();

    setInterval(refreshAgents, 5000);
    setInterval(refreshLeases, 3000);
    setInterval(refreshTasks, 5000);
    setInterval(refreshThreads, 10000);
    setInterval(refreshShutdown, 5000);
    setInterval(refreshChannels, 15000);
    setInterval(tickCountdowns, 1000);
    $("input").focus();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
