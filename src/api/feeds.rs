//! Feeds and long-polls: `GET /v1/messages`, `/v1/events` and
//! `/v1/inbox/{agent_id}` (docs/PROTOCOL.md, "Long-poll", "Pages"). A
//! long-poll with nothing to answer yet becomes a [`Wait`], which the
//! edge parks on a thread of its own; the subscription is taken *before*
//! the first query, so nothing that commits in between is missed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Call, Outcome, Reply};
use crate::error::{Error, Result};
use crate::notify::{Key, Subscription, Wake};
use crate::state::State;
use crate::store::{DeliveryScope, EventQuery, FeedQuery, Freshness, PAGE_MAX_BYTES};
use crate::wire;

/// A parked long-poll.
pub struct Wait {
    pub kind: WaitKind,
    pub deadline: Instant,
    /// Agent whose presence the wait refreshes (`/v1/events`), also the
    /// agent the per-agent waiter cap counts against.
    pub agent: Option<String>,
    pub touch: bool,
    pub sub: Subscription,
}

/// The query a parked long-poll re-runs when woken.
pub enum WaitKind {
    Events(EventQuery),
    Feed(FeedQuery),
    Inbox(String, FeedQuery),
    /// A hook waiting for something to surface (`api/delivery.rs`).
    Surface(super::delivery::SurfaceReq),
    /// `tasks/next` waiting for a ready task (`api/dag.rs`).
    NextTask(super::dag::NextReq),
}

impl WaitKind {
    /// Whose delivered mark the answer moves, and which one.
    fn delivers(&self) -> Option<(&str, DeliveryScope)> {
        match self {
            WaitKind::Events(q) if q.thread_id.is_none() => match q.channels.as_slice() {
                [] => Some((&q.agent_id, DeliveryScope::All)),
                [ch] => Some((&q.agent_id, DeliveryScope::Channel(ch.clone()))),
                _ => None,
            },
            WaitKind::Inbox(agent, _) => Some((agent, DeliveryScope::Dm)),
            _ => None,
        }
    }
}

/// The answer to a feed, with the delivered mark it moves once sent.
fn feed_reply(kind: &WaitKind, rows: Vec<wire::Message>) -> Reply {
    let delivers = match (kind.delivers(), rows.last()) {
        (Some((agent, scope)), Some(last)) => Some(super::Delivers {
            agent: agent.to_string(),
            scope,
            last_id: last.id,
        }),
        _ => None,
    };
    Reply {
        delivers,
        ..Reply::ok(rows)
    }
}

/// Seconds between presence refreshes while a long-poll waits
/// (docs/PROTOCOL.md, "Presence, expiry and recovery").
pub fn touch_interval(ttl_sec: i64) -> Duration {
    Duration::from_secs((ttl_sec / 3).clamp(1, 30) as u64)
}

/// `GET /v1/messages`.
pub(super) fn messages(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let q = &c.query;
    let channel = q.get("channel").map(str::to_string);
    let thread_id = q.get("thread_id").map(str::to_string);
    if channel.is_none() && thread_id.is_none() {
        return Err(Error::invalid(
            "channel or thread_id query parameter is required",
        ));
    }
    if let Some(ch) = &channel {
        if !s.store.channel_exists(ch)? {
            return Err(Error::not_found("channel not found"));
        }
    }
    let fq = FeedQuery {
        since_id: q.since_id()?,
        limit: q.limit(s.config.max_query_limit)?,
        channel: channel.clone(),
        thread_id: thread_id.clone(),
        tail: false,
    };
    let timeout = q.timeout(s.config.max_poll_sec)?;
    let fq = FeedQuery {
        tail: q.flag("tail"),
        ..fq
    };
    let keys = match (&channel, &thread_id) {
        (Some(ch), _) => vec![Key::Channel(ch.clone())],
        (None, Some(t)) => vec![Key::Thread(t.clone())],
        (None, None) => vec![Key::Broadcast],
    };
    start_wait(s, WaitKind::Feed(fq), keys, timeout, None, false)
}

/// `GET /v1/events`.
pub(super) fn events(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let q = &c.query;
    let agent = q
        .get("agent_id")
        .ok_or_else(|| Error::invalid("agent_id query parameter is required"))?
        .to_string();
    let channel = q.get("channel").map(str::to_string);
    if let Some(ch) = &channel {
        if !s.store.channel_exists(ch)? {
            return Err(Error::not_found("channel not found"));
        }
    }
    let eq = EventQuery {
        agent_id: agent.clone(),
        channels: channel.clone().into_iter().collect(),
        thread_id: q.get("thread_id").map(str::to_string),
        since_id: q.since_id()?,
        limit: q.limit(s.config.max_query_limit)?,
        exclude_self: q.flag("exclude_self"),
        max_bytes: PAGE_MAX_BYTES,
        strict_bytes: false,
    };
    let timeout = q.timeout(s.config.max_poll_sec)?;
    let mut keys = vec![Key::Recipient(agent.clone())];
    match (&channel, &eq.thread_id) {
        (Some(ch), _) => keys.push(Key::Channel(ch.clone())),
        (None, Some(t)) => keys.push(Key::Thread(t.clone())),
        (None, None) => keys.push(Key::Broadcast),
    }
    s.store.touch(&agent)?;
    start_wait(s, WaitKind::Events(eq), keys, timeout, Some(agent), true)
}

/// `GET /v1/inbox/{agent_id}`.
pub(super) fn inbox(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let (q, agent) = (&c.query, c.param(0));
    let fq = FeedQuery {
        since_id: q.since_id()?,
        limit: q.limit(s.config.max_query_limit)?,
        tail: q.flag("tail"),
        ..FeedQuery::default()
    };
    // `timeout` is our extension here; the reference ignores the
    // parameter, so a value it would ignore must not become an error.
    let timeout = q.timeout(s.config.max_poll_sec).unwrap_or(0.0);
    start_wait(
        s,
        WaitKind::Inbox(agent.to_string(), fq),
        vec![Key::Recipient(agent.to_string())],
        timeout,
        Some(agent.to_string()),
        false,
    )
}

/// Runs a long-poll's query.
fn run_query(s: &State, kind: &WaitKind, fresh: Freshness) -> Result<Vec<wire::Message>> {
    match kind {
        WaitKind::Events(q) => s.store.events_with(q, fresh),
        WaitKind::Feed(q) => s.store.feed_with(q, None, fresh),
        WaitKind::Inbox(agent, q) => s.store.feed_with(q, Some(agent), fresh),
        WaitKind::Surface(_) | WaitKind::NextTask(_) => Ok(Vec::new()),
    }
}

/// Subscribes, queries once, and either answers or hands back a [`Wait`].
fn start_wait(
    s: &State,
    kind: WaitKind,
    keys: Vec<Key>,
    timeout: f64,
    agent: Option<String>,
    touch: bool,
) -> Result<Outcome> {
    let sub = (timeout > 0.0).then(|| s.notifier.subscribe(keys));
    let rows = run_query(s, &kind, Freshness::CatchUp)?;
    match sub {
        Some(sub) if rows.is_empty() && !s.notifier.is_shutdown() => Ok(Outcome::Wait(Wait {
            kind,
            deadline: Instant::now() + Duration::from_secs_f64(timeout),
            agent,
            touch,
            sub,
        })),
        _ => {
            if touch {
                if let Some(a) = &agent {
                    s.store.touch(a)?;
                }
            }
            Ok(feed_reply(&kind, rows).into())
        }
    }
}

/// Runs a parked long-poll to completion: re-query on every wake, refresh
/// presence on schedule, answer at the first rows, the deadline, or shutdown.
pub fn finish_wait(s: &State, mut w: Wait) -> Reply {
    match w.kind {
        WaitKind::Surface(_) => return super::delivery::finish(s, w),
        WaitKind::NextTask(_) => return super::dag::finish(s, w),
        _ => {}
    }
    let every = touch_interval(s.config.presence_ttl_sec);
    let mut next_touch = Instant::now() + every;
    // The wait began with a touch; timestamps have one-second precision, so
    // a final touch within the same second would write the same value.
    let mut last_touch = Instant::now();
    let result = (|| -> Result<Vec<wire::Message>> {
        loop {
            let wake_at = if w.touch {
                w.deadline.min(next_touch)
            } else {
                w.deadline
            };
            match w.sub.wait(wake_at) {
                Wake::Signaled => {
                    let rows = run_query(s, &w.kind, Freshness::TailMayLag)?;
                    if !rows.is_empty() {
                        return Ok(rows);
                    }
                }
                Wake::TimedOut if Instant::now() < w.deadline => {
                    if let Some(a) = w.agent.as_deref().filter(|_| w.touch) {
                        s.store.touch(a)?;
                        last_touch = Instant::now();
                    }
                    next_touch += every;
                }
                Wake::TimedOut | Wake::Shutdown => {
                    return run_query(s, &w.kind, Freshness::CatchUp);
                }
            }
        }
    })();
    let touched = match (&w.agent, w.touch) {
        (Some(a), true) if last_touch.elapsed() >= Duration::from_secs(1) => s.store.touch(a),
        _ => Ok(()),
    };
    match result.and_then(|rows| touched.map(|_| rows)) {
        Ok(rows) => feed_reply(&w.kind, rows),
        Err(e) => Reply::from_error(&e),
    }
}
