/*!
`GET /v1/stream`: server-sent events (docs/PROTOCOL.md, "Server-sent
events").

Each event carries `id: <message id>` so `EventSource` resumes with
`Last-Event-ID`; multi-channel filters run in SQL, so the cursor never
stalls; a `: keepalive` comment every 15 s detects dead peers (the write
fails and the thread ends); the stream touches presence at start and
every `clamp(TTL/3, 1, 30)` seconds. The stream parks on the same
notifier as long-polls, so events arrive the moment they commit.
*/

use std::io::Write;
use std::time::Instant;

use std::sync::Arc;

use super::{Call, Outcome};
use crate::error::{Error, Result};
use crate::notify::{Key, Subscription, Wake};
use crate::state::State;
use crate::store::EventQuery;

/// Rows fetched per query while catching up on a backlog.
const BATCH: i64 = 500;

/// Bytes one stream may hold for one write: its events are fetched only
/// after this much of the hub-wide [`State::sse_budget`] is granted, so
/// however many peers stop reading, what streams hold in memory stays
/// within that budget ([`crate::state::STREAM_BUDGET`]). A message larger than this waits for a grant of
/// its own size.
const GRANT: usize = 64 * 1024;

/// How soon a query that found the database busy is tried again.
const BUSY_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// An SSE stream ready to run.
pub struct Stream {
    pub agent_id: String,
    pub channels: Vec<String>,
    pub cursor: i64,
    pub exclude_self: bool,
    sub: Subscription,
}

/// Validates the request (errors are normal JSON answers, sent before any
/// stream header) and subscribes.
pub(super) fn open(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let q = &c.query;
    let agent = q
        .get("agent_id")
        .ok_or_else(|| Error::invalid("agent_id query parameter is required"))?
        .to_string();
    let channels: Vec<String> = q
        .get("channels")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let since = q.since_id()?;
    let cursor = match c
        .last_event_id
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        Some(v) => crate::input::py_int(v)
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::invalid("Last-Event-ID must be a non-negative integer"))?,
        None => since,
    };
    let mut keys = vec![Key::Recipient(agent.clone())];
    if channels.is_empty() {
        keys.push(Key::Broadcast);
    } else {
        keys.extend(channels.iter().cloned().map(Key::Channel));
    }
    let sub = s.notifier.subscribe(keys);
    Ok(Outcome::Stream(Stream {
        agent_id: agent,
        channels,
        cursor,
        exclude_self: q.flag("exclude_self"),
        sub,
    }))
}

/// Writes framed payloads: chunked for HTTP/1.1, close-delimited for 1.0.
struct Framer {
    out: Box<dyn Write + Send>,
    chunked: bool,
}

impl Framer {
    /// Writes one payload in one write (a peer that stops reading makes
    /// it fail after the socket's write timeout, which ends the stream).
    fn send(&mut self, payload: &str) -> std::io::Result<()> {
        if payload.is_empty() {
            return Ok(());
        }
        if self.chunked {
            let mut chunk = format!("{:x}\r\n", payload.len()).into_bytes();
            chunk.reserve(payload.len() + 2);
            chunk.extend_from_slice(payload.as_bytes());
            chunk.extend_from_slice(b"\r\n");
            self.out.write_all(&chunk)?;
        } else {
            self.out.write_all(payload.as_bytes())?;
        }
        self.out.flush()
    }

    fn finish(&mut self) {
        if self.chunked {
            let _ = self.out.write_all(b"0\r\n\r\n");
        }
        let _ = self.out.flush();
    }
}

/// Why [`send_backlog`] could not send.
enum Stop {
    /// The database was busy: try again soon.
    Busy,
    /// The peer is gone, too slow, or the hub has no room: end the stream
    /// (the client resumes with `Last-Event-ID`).
    End,
}

/// Sends one page of the events after the cursor, within a grant of the
/// hub's stream budget. True if something was sent.
fn send_backlog(s: &State, st: &mut Stream, f: &mut Framer) -> std::result::Result<bool, Stop> {
    let deadline = Instant::now() + s.config.io_timeout;
    let mut grant = s.sse_budget.acquire(GRANT, deadline).ok_or(Stop::End)?;
    loop {
        let q = EventQuery {
            agent_id: st.agent_id.clone(),
            channels: st.channels.clone(),
            thread_id: None,
            since_id: st.cursor,
            limit: BATCH,
            exclude_self: st.exclude_self,
            max_bytes: grant.size(),
            strict_bytes: true,
        };
        let page = match s.store.events_page(&q, crate::store::Freshness::CatchUp) {
            Ok(page) => page,
            Err(e) if e.is_busy() => return Err(Stop::Busy),
            Err(_) => return Err(Stop::End),
        };
        if let Some(needed) = page.blocked_by {
            // One message larger than the grant: wait for room for it.
            if !grant.grow_to(needed, deadline) {
                return Err(Stop::End);
            }
            continue;
        }
        if page.rows.is_empty() {
            return Ok(false);
        }
        let mut payload = String::new();
        for m in &page.rows {
            let json = serde_json::to_string(m).unwrap_or_default();
            payload.push_str(&format!("id: {}\ndata: {json}\n\n", m.id));
            st.cursor = st.cursor.max(m.id);
        }
        return match f.send(&payload) {
            Ok(()) => {
                // Written to the peer: delivered (a multi-channel stream
                // covers no single scope, so it moves no mark).
                let scope = match st.channels.as_slice() {
                    [] => Some(crate::store::DeliveryScope::All),
                    [ch] => Some(crate::store::DeliveryScope::Channel(ch.clone())),
                    _ => None,
                };
                super::delivery::record(s, &st.agent_id, scope, Some(st.cursor));
                Ok(true)
            }
            Err(_) => Err(Stop::End),
        };
    }
}

/// Runs a stream until the peer goes away or the hub stops.
pub fn run(s: &State, mut st: Stream, out: Box<dyn Write + Send>, http10: bool) {
    let mut f = Framer {
        out,
        chunked: !http10,
    };
    let head = format!(
        "HTTP/{} 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: {}\r\nX-Accel-Buffering: no\r\nX-Arc-Instance: {}\r\nServer: arc-hub/{}\r\n{}\r\n",
        if http10 { "1.0" } else { "1.1" },
        if http10 { "close" } else { "keep-alive" },
        s.instance_id,
        crate::wire::VERSION,
        if http10 {
            ""
        } else {
            "Transfer-Encoding: chunked\r\n"
        },
    );
    if f.out.write_all(head.as_bytes()).is_err() || f.send("retry: 3000\n\n").is_err() {
        return;
    }
    let _ = s.store.touch(&st.agent_id);
    let touch_every = super::touch_interval(s.config.presence_ttl_sec);
    let mut next_touch = Instant::now() + touch_every;
    let mut next_beat = Instant::now() + s.config.sse_keepalive;
    // A query that lost to a busy database is retried soon: the wake-up
    // that prompted it has been used up.
    let mut retry_at: Option<Instant>;
    loop {
        retry_at = None;
        match send_backlog(s, &mut st, &mut f) {
            Ok(true) => {
                next_beat = Instant::now() + s.config.sse_keepalive;
                continue; // more may follow: fetch again before parking
            }
            Ok(false) => {}
            Err(Stop::Busy) => retry_at = Some(Instant::now() + BUSY_RETRY),
            Err(Stop::End) => break,
        }
        loop {
            let until = next_beat.min(next_touch);
            match st.sub.wait(retry_at.map_or(until, |r| r.min(until))) {
                Wake::Signaled => break,
                Wake::Shutdown => {
                    f.finish();
                    return;
                }
                Wake::TimedOut => {
                    let now = Instant::now();
                    if retry_at.is_some_and(|r| now >= r) {
                        break;
                    }
                    if now >= next_beat {
                        if f.send(": keepalive\n\n").is_err() {
                            return;
                        }
                        next_beat = now + s.config.sse_keepalive;
                    }
                    if now >= next_touch {
                        let _ = s.store.touch(&st.agent_id);
                        next_touch = now + touch_every;
                    }
                }
            }
        }
    }
    f.finish();
}
