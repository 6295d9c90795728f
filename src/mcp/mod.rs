/*!
`arc mcp`: a Model Context Protocol server on stdio for one agent.

An MCP host (Claude Desktop, Claude Code, Cursor, ...) starts
`arc mcp --agent <id>` and speaks JSON-RPC 2.0 over the process's stdin and
stdout. [`serve`] is the whole protocol loop, generic over any `BufRead` and
`Write`, so tests drive it in memory; [`run_stdio`] binds it to the real
stdio and to a [`Client`] for `--base-url` or `--relay-dir`.

Eras. Both eras of MCP share the one stream (module `era`):

* the legacy era (2024-11-05 to 2025-11-25): `initialize` negotiates a
  version ([`PROTOCOL_VERSIONS`]; an unknown or modern one gets the newest
  of them, never 2026-07-28) and fixes it for the process; requests
  without `_meta` are served after it (only `ping` before it);
* the modern era (2026-07-28, [`MODERN_VERSIONS`]): no handshake; a request
  whose `_meta` carries `io.modelcontextprotocol/protocolVersion` and
  `io.modelcontextprotocol/clientCapabilities` is served on its own, its
  result carries `resultType` (and cache hints where the spec wants them),
  `server/discover` answers, `subscriptions/listen` replaces
  `resources/subscribe`, and `ping` and `logging/setLevel` are gone.

Each request is judged by its own `_meta`, so a client may discover, then
initialize (as Claude Code does), or mix the two.

Framing. The MCP stdio transport carries one JSON message per line, and
that is what we read and write by default. Input whose first line starts
with `Content-Length:` or `Content-Type:` (any case) is read as an
LSP-style header block plus a body of exactly that many **bytes**, which is
what the reference adapter spoke; the framing of the first message read
then fixes the framing of every reply. Stdout carries protocol messages
only; logs go to stderr.

Threads. The main loop handles one request at a time (a slow tool call,
such as `arc_rpc_call`, delays the next request). Three helper threads
share its state:

* the keepalive thread registers the agent (lazily: the hub may be down
  when the host starts us; tool calls also try), refreshes presence every
  [`Options::keepalive`] with `GET /v1/agents?as=<id>`, and registers again
  if the hub forgot the agent;
* the push thread sleeps until a client subscribes to [`INBOX_URI`]
  (`resources/subscribe`, or `subscriptions/listen` with it among
  `resourceSubscriptions`), then long-polls `/v1/events` and sends
  `notifications/resources/updated` (tagged with the subscription's id for
  a listen) when a message visible to the agent (and not its own) arrives;
* the channel thread sleeps until Claude Code channels are on
  ([`Options::claude_channel`], or the client declares
  `experimental["claude/channel"]`), then waits at the hub's
  `POST /v1/agents/{id}/surface` (a peek, which marks nothing), takes what
  is new (which moves the surfaced mark the wake hooks share) and sends it
  as `notifications/claude/channel`; after a take that left a backlog it
  waits for a new message instead (`/v1/events`), so a backlog is one
  notification, not a flood.

The writer sits behind one mutex, so a reply and a notification never
interleave. On EOF the loop stops the helpers, closes the hub session
and returns; a helper still parked in a long-poll is left to finish on its
own (it writes nothing once the loop has stopped, and the channel
thread's parked wait marks nothing), so returning is bounded by
[`Options::exit_grace`], not by the poll.

Invariant: this module talks to the hub only through [`Client`]; it never
touches the store.
*/

mod era;
mod framing;
pub mod profile;
mod rpc;
mod server;
mod session;
mod tools;

pub use era::{MODERN_VERSIONS, SUPPORTED_VERSIONS};
pub use framing::{Framing, Incoming, MAX_MESSAGE_BYTES, frame, read_message};
pub use rpc::{
    INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR,
    RESOURCE_NOT_FOUND, RpcError, UNSUPPORTED_PROTOCOL_VERSION,
};
pub use tools::{TOOLS, tools};

use std::io::{BufRead, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::Client;
use crate::error::Result;
use crate::notify::poll_until;

use server::Shared;

/// The handshake-era MCP revisions we speak, newest first; `initialize`
/// echoes the client's choice when it is one of these and answers with the
/// first otherwise (a modern version included: `initialize` is legacy).
pub const PROTOCOL_VERSIONS: [&str; 4] = era::LEGACY_VERSIONS;

/// The environment variable that turns Claude Code channel notifications
/// on for `arc mcp` (`1`, `true`, `yes` or `on`): the host cannot tell us that it
/// was started with `--channels` or `--dangerously-load-development-channels`.
pub const CHANNEL_ENV: &str = "ARC_MCP_CLAUDE_CHANNEL";

/// The agent `arc mcp` speaks for when `--agent` is not given.
pub const DEFAULT_AGENT: &str = "mcp-client";

/// The one resource: the agent's visible feed.
pub const INBOX_URI: &str = "arc://inbox";

/// Timings of the helper threads.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often presence is refreshed; below a third of the hub's
    /// presence TTL (120 s by default).
    pub keepalive: Duration,
    /// How long one push long-poll waits at the hub.
    pub push_wait: Duration,
    /// First delay before retrying a failed registration or push poll
    /// (doubled on each failure, capped at `keepalive`).
    pub retry: Duration,
    /// How long `serve` waits for its helpers after EOF.
    pub exit_grace: Duration,
    /// Log to stderr.
    pub log: bool,
    /// The tools on offer (`--tools`).
    pub tools: profile::Profile,
    /// Send `notifications/claude/channel` for new messages from the
    /// start (the host enabled channels); also turned on when a client
    /// declares `experimental["claude/channel"]`. Off by default: each one
    /// moves the agent's surfaced mark, so it must reach a listening host.
    pub claude_channel: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            keepalive: Duration::from_secs(30),
            push_wait: Duration::from_secs(25),
            retry: Duration::from_secs(1),
            exit_grace: Duration::from_secs(2),
            log: true,
            tools: profile::Profile::default(),
            claude_channel: false,
        }
    }
}

/// `arc mcp`'s arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct McpArgs {
    pub endpoint: crate::client::Endpoint,
    pub tools: profile::Profile,
    /// `--claude-channel`: push new messages as Claude Code channel
    /// notifications even if the host does not declare the capability.
    pub claude_channel: bool,
}

/// Serves MCP on stdin/stdout until EOF.
pub fn run_stdio(a: &McpArgs) -> Result<()> {
    let args = &a.endpoint;
    let client = match &args.relay_dir {
        Some(dir) => Client::over_relay(&args.agent, &crate::paths::absolute(dir)?),
        None => Client::http(&args.agent, &args.base_url),
    };
    let opts = Options {
        tools: a.tools.clone(),
        claude_channel: a.claude_channel || env_flag(CHANNEL_ENV),
        ..Options::default()
    };
    let shared = Shared::new(client, opts, Box::new(std::io::stdout()));
    let on_signal = shared.clone();
    // A host that kills us instead of closing stdin still gets the
    // session closed.
    crate::sys::on_terminate(move || {
        on_signal.stop();
        on_signal.close_session();
        std::process::exit(0);
    })?;
    shared.log(&format!(
        "serving agent {:?} via {}{}",
        args.agent,
        match &args.relay_dir {
            Some(d) => format!("relay spool {}", d.display()),
            None => args.base_url.clone(),
        },
        if shared.opts.claude_channel {
            format!("; Claude Code channel notifications on ({CHANNEL_ENV})")
        } else {
            String::new()
        }
    ));
    run(&shared, std::io::BufReader::new(std::io::stdin()))
}

/// Whether the environment variable `name` says yes.
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// Runs the protocol loop over `reader` and `writer` for `client`'s agent
/// until `reader` reaches EOF (or `writer` fails), then closes the session.
pub fn serve<R, W>(reader: R, writer: W, client: Client, opts: Options) -> Result<()>
where
    R: BufRead + Send + 'static,
    W: Write + Send + 'static,
{
    run(&Shared::new(client, opts, Box::new(writer)), reader)
}

/// What the loop waits for: input from the reader thread, or the answer
/// of the request being handled on a call thread.
enum Event {
    Input(std::io::Result<Incoming>),
    Done(Option<Value>),
}

/// The protocol loop. Input is read on its own thread and requests are
/// handled one at a time on a call thread, so this loop always sees EOF:
/// once stdin closes, what is still queued or in flight gets at most
/// [`Options::exit_grace`], then the loop stops (a tool call that waits
/// for a long time is abandoned; it writes nothing once stopped).
fn run<R: BufRead + Send + 'static>(shared: &Arc<Shared>, mut reader: R) -> Result<()> {
    let helpers = [
        spawn("arc-mcp-keepalive", shared, Shared::keepalive_loop)?,
        spawn("arc-mcp-push", shared, Shared::push_loop)?,
        spawn("arc-mcp-channel", shared, Shared::channel_loop)?,
    ];
    let (tx, rx) = std::sync::mpsc::channel::<Event>();
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("arc-mcp-stdin".into())
            .spawn(move || {
                loop {
                    let item = read_message(&mut reader);
                    let last = !matches!(item, Ok(Incoming::Message(..)) | Ok(Incoming::Bad(..)));
                    if tx.send(Event::Input(item)).is_err() || last {
                        return;
                    }
                }
            })?;
    }
    let mut queue = Backlog::default();
    let mut busy = false;
    let mut eof_at: Option<Instant> = None;
    let outcome = loop {
        if eof_at.is_some() && !busy && queue.is_empty() {
            break Ok(());
        }
        let event = match eof_at {
            None => rx.recv().ok(),
            Some(t) => {
                let left = (t + shared.opts.exit_grace).saturating_duration_since(Instant::now());
                rx.recv_timeout(left).ok()
            }
        };
        let Some(event) = event else {
            if busy {
                shared.log("stdin closed while a request was in flight; stopping");
            }
            break Ok(());
        };
        let reply = match event {
            Event::Input(Ok(Incoming::Message(bytes, framing))) => {
                shared.set_framing(framing);
                queue.push(bytes)
            }
            Event::Input(Ok(Incoming::Bad(message, framing))) => {
                shared.set_framing(framing);
                Some(RpcError::new(PARSE_ERROR, message).reply(Value::Null))
            }
            Event::Input(Ok(Incoming::Eof)) => {
                eof_at = Some(Instant::now());
                None
            }
            Event::Input(Err(e)) => {
                shared.log(&format!("stdin: {e}"));
                eof_at = Some(Instant::now());
                None
            }
            Event::Done(reply) => {
                busy = false;
                reply
            }
        };
        if let Some(reply) = reply {
            if !shared.send(&reply) {
                shared.log("stdout is closed; stopping");
                break Ok(());
            }
        }
        if !busy {
            if let Some(bytes) = queue.pop_front() {
                busy = true;
                let (sh, tx) = (shared.clone(), tx.clone());
                std::thread::Builder::new()
                    .name("arc-mcp-call".into())
                    .spawn(move || {
                        let reply = catch_unwind(AssertUnwindSafe(|| sh.handle_bytes(&bytes)))
                            .unwrap_or_else(|_| {
                                Some(
                                    RpcError::new(
                                        INTERNAL_ERROR,
                                        "internal error: request handler panicked",
                                    )
                                    .reply(Value::Null),
                                )
                            });
                        let _ = tx.send(Event::Done(reply));
                    })?;
            }
        }
    };
    shared.stop();
    shared.close_session();
    let deadline = Instant::now() + shared.opts.exit_grace;
    for h in helpers {
        join_until(h, deadline);
    }
    outcome
}

fn spawn(name: &str, shared: &Arc<Shared>, f: fn(&Shared)) -> Result<JoinHandle<()>> {
    let shared = shared.clone();
    Ok(std::thread::Builder::new()
        .name(name.into())
        .spawn(move || f(&shared))?)
}

/// Joins `h` if it finishes before `deadline`; otherwise leaves it
/// running. A thread's end is announced to no one but `join`, which
/// cannot time out, so it is polled.
fn join_until(h: JoinHandle<()>, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    if poll_until(left, Duration::from_millis(5), || {
        h.is_finished().then_some(())
    })
    .is_some()
    {
        let _ = h.join();
    }
}

/// Most request bytes waiting behind the one in flight; a request past it
/// is answered at once with an error instead of being held.
const BACKLOG_MAX_BYTES: usize = 32 << 20;

/// Requests read but not yet handled, bounded by [`BACKLOG_MAX_BYTES`].
#[derive(Default)]
struct Backlog {
    items: std::collections::VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Backlog {
    /// Queues `bytes`, or gives the error reply when the backlog is full.
    fn push(&mut self, bytes: Vec<u8>) -> Option<Value> {
        if self.bytes + bytes.len() > BACKLOG_MAX_BYTES {
            let id = server::request_id(&bytes)?;
            let message =
                format!("server busy: more than {BACKLOG_MAX_BYTES} bytes of requests are waiting");
            return Some(RpcError::new(INTERNAL_ERROR, message).reply(id));
        }
        self.bytes += bytes.len();
        self.items.push_back(bytes);
        None
    }

    fn pop_front(&mut self) -> Option<Vec<u8>> {
        let item = self.items.pop_front()?;
        self.bytes -= item.len();
        Some(item)
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

// ---------------------------------------------------------------------------
