//! Presence and push for the agent `arc mcp` speaks for: lazy
//! registration, the keepalive that holds the session, the push loop that
//! notifies subscribed clients of new messages (both eras), and the Claude
//! Code channel loop.

use std::sync::TryLockError;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::INBOX_URI;
use super::era::META_SUBSCRIPTION_ID;
use super::server::Shared;
use crate::error::Result;
use crate::input::percent_encode;
use crate::notify::{lock, poll_until};

impl Shared {
    /// Registers the agent unless a session is already known.
    pub(super) fn ensure_session(&self) -> Result<()> {
        let mut reg = lock(&self.reg);
        if reg.session_id.is_some() {
            return Ok(());
        }
        let mut c = self.client.clone();
        let agent = self.agent().to_string();
        let attempt = c
            .register(Some(&agent), true, None, None)
            .and_then(|_| c.bootstrap());
        match attempt {
            Ok(b) => {
                reg.session_id = c.session_id.clone();
                reg.cursor.get_or_insert(b.latest_visible_id);
                reg.ttl = c
                    .request("GET", "/v1/hub-info", None, c.timeout)
                    .ok()
                    .and_then(|v| v["result"]["presence_ttl_sec"].as_u64())
                    .filter(|t| *t > 0)
                    .map(Duration::from_secs);
                reg.last_error = None;
                self.log(&format!("registered as {agent:?}"));
                Ok(())
            }
            Err(e) => {
                let text = e.to_string();
                if reg.last_error.as_deref() != Some(text.as_str()) {
                    self.log(&format!("cannot register yet: {text}"));
                    reg.last_error = Some(text);
                }
                Err(e)
            }
        }
    }

    /// Closes the session. A registration still in flight is waited for
    /// at most [`Options::exit_grace`].
    pub(super) fn close_session(&self) {
        // A registration in flight holds the lock while it waits on the
        // hub; no event announces its end, so the lock is polled.
        let sid = poll_until(
            self.opts.exit_grace,
            Duration::from_millis(5),
            || match self.reg.try_lock() {
                Ok(mut reg) => Some(reg.session_id.take()),
                Err(TryLockError::Poisoned(e)) => Some(e.into_inner().session_id.take()),
                Err(TryLockError::WouldBlock) => None,
            },
        )
        .flatten();
        if let Some(sid) = sid {
            let mut c = self.client.clone();
            c.timeout = Duration::from_secs(3);
            c.session_id = Some(sid);
            c.close();
        }
    }

    pub(super) fn keepalive_loop(&self) {
        let mut backoff = self.opts.retry;
        loop {
            let registered = lock(&self.reg).session_id.is_some();
            let ok = if registered {
                match self.client.agents(None) {
                    Ok(list) if !list.iter().any(|s| s.agent_id == self.agent()) => {
                        self.log("the hub forgot this agent; registering again");
                        lock(&self.reg).session_id = None;
                        self.ensure_session().is_ok()
                    }
                    Ok(_) => true,
                    Err(_) => false,
                }
            } else {
                self.ensure_session().is_ok()
            };
            let wait = if ok || registered {
                backoff = self.opts.retry;
                // A third of the hub's TTL when it is shorter than ours.
                match lock(&self.reg).ttl {
                    Some(ttl) => self
                        .opts
                        .keepalive
                        .min((ttl / 3).max(Duration::from_secs(1))),
                    None => self.opts.keepalive,
                }
            } else {
                backoff = (backoff * 2).min(self.opts.keepalive);
                backoff / 2
            };
            if self.sleep(wait) {
                return;
            }
        }
    }

    /// Long-polls `/v1/events` while anyone wants inbox updates, and
    /// tells each subscriber in its era's terms: a legacy
    /// `resources/subscribe` gets `notifications/resources/updated`, each
    /// open `subscriptions/listen` the same tagged with its id.
    pub(super) fn push_loop(&self) {
        let mut backoff = self.opts.retry;
        loop {
            let (generation, cursor) = {
                let f = self.flags.wait_until(None, |f| f.stop || f.inbox_wanted());
                if f.stop {
                    return;
                }
                (f.generation, f.push_cursor)
            };
            let mut c = self.client.clone();
            let outcome = match cursor {
                // Subscribed while the hub was down: start from now.
                None => c.bootstrap().map(|b| (Vec::new(), b.latest_visible_id)),
                Some(cur) => {
                    c.cursor = cur;
                    c.poll(self.opts.push_wait.as_secs_f64(), None, None, true, 100)
                        .map(|m| (m, c.cursor))
                }
            };
            match outcome {
                Ok((msgs, next)) => {
                    backoff = self.opts.retry;
                    // Sent under the lock, so a subscription cancelled
                    // meanwhile gets nothing more.
                    let mut f = self.flags.lock();
                    if f.stop {
                        return;
                    }
                    if f.generation != generation || !f.inbox_wanted() {
                        continue;
                    }
                    f.push_cursor = Some(next);
                    if msgs.is_empty() {
                        continue;
                    }
                    if f.subscribed {
                        self.send(&json!({
                            "jsonrpc": "2.0",
                            "method": "notifications/resources/updated",
                            "params": {"uri": INBOX_URI},
                        }));
                    }
                    for l in f.listens.iter().filter(|l| l.inbox) {
                        self.send(&json!({
                            "jsonrpc": "2.0",
                            "method": "notifications/resources/updated",
                            "params": {
                                "_meta": {(META_SUBSCRIPTION_ID): l.id},
                                "uri": INBOX_URI,
                            },
                        }));
                    }
                }
                Err(e) => {
                    self.log(&format!("push poll failed: {e}"));
                    if self.sleep(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(self.opts.keepalive);
                }
            }
        }
    }

    /// Claude Code channels: while on, waits at the hub for something the
    /// agent has not been shown, takes it with `surface` (which moves the
    /// surfaced mark the hooks share, atomically: a hook and this thread
    /// never get the same message) and sends it as
    /// `notifications/claude/channel`.
    ///
    /// The wait is a `peek` (it marks nothing), so a wait still parked at
    /// the hub when the host goes away cannot swallow a message; only the
    /// take, which does not wait, marks. When a take leaves messages
    /// pending (more than the text's budget), the next take waits for a
    /// new message instead, as the hooks wait for their next event, so a
    /// long backlog is one notification ("… and N more"), not a flood.
    pub(super) fn channel_loop(&self) {
        let path = format!("/v1/agents/{}/surface", percent_encode(self.agent()));
        let wait = self.opts.push_wait;
        let look = json!({"peek": true, "wait": wait.as_secs_f64(), "limit": 1});
        let mut backoff = self.opts.retry;
        let mut last_error: Option<String> = None;
        // The newest visible id when a take left a backlog.
        let mut behind: Option<i64> = None;
        loop {
            {
                let f = self.flags.wait_until(None, |f| f.stop || f.channel);
                if f.stop {
                    return;
                }
            }
            let step = (|| -> Result<Option<(Value, Option<i64>)>> {
                let woke = match behind {
                    None => self.client.request(
                        "POST",
                        &path,
                        Some(&look),
                        wait + Duration::from_secs(5),
                    )?["result"]["messages"]
                        .as_array()
                        .is_some_and(|m| !m.is_empty()),
                    Some(cursor) => {
                        let mut c = self.client.clone();
                        c.cursor = cursor;
                        !c.poll(wait.as_secs_f64(), None, None, true, 1)?.is_empty()
                    }
                };
                if !woke || self.stopping() {
                    return Ok(None);
                }
                let latest = self.client.clone().bootstrap()?.latest_visible_id;
                let took =
                    self.client
                        .request("POST", &path, Some(&json!({})), self.client.timeout)?;
                let left = took["result"]["more"].as_u64().is_some_and(|n| n > 0);
                Ok(Some((took, left.then_some(latest))))
            })();
            match step {
                Ok(None) => backoff = self.opts.retry,
                Ok(Some((took, left))) => {
                    backoff = self.opts.retry;
                    last_error = None;
                    behind = left;
                    let r = &took["result"];
                    match r["text"].as_str() {
                        Some(text) => {
                            if !self.send(&channel_notification(text, r)) {
                                return;
                            }
                        }
                        // A hook took it first; give the marks a moment.
                        None => {
                            if self.sleep(self.opts.retry) {
                                return;
                            }
                        }
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        self.log(&format!("channel push failed: {text}"));
                        last_error = Some(text);
                    }
                    if self.sleep(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(self.opts.keepalive);
                }
            }
        }
    }
}

/// `notifications/claude/channel` for one `surface` answer: the headers as
/// `content`, and in `meta` (strings only; keys are identifiers, as Claude
/// Code requires) the newest shown message's id, sender and channel, how
/// many were shown, and what is left or was told besides.
pub(super) fn channel_notification(text: &str, r: &Value) -> Value {
    let shown = r["messages"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut meta = Map::new();
    let mut put = |k: &str, v: &Value| {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Null => return,
            other => other.to_string(),
        };
        meta.insert(k.to_string(), Value::String(s));
    };
    if let Some(last) = shown.last() {
        put("message_id", &last["id"]);
        put("from_agent", &last["from_agent"]);
        put("channel", &last["channel"]);
        put("kind", &last["kind"]);
        put("to_agent", &last["to_agent"]);
        put("thread_id", &last["thread_id"]);
    }
    put("count", &json!(shown.len()));
    if let Some(more) = r["more"].as_u64().filter(|n| *n > 0) {
        put("more", &json!(more));
    }
    if let Some(dead) = r["dead_letters"].as_array().filter(|d| !d.is_empty()) {
        put("dead_letters", &json!(dead.len()));
    }
    json!({
        "jsonrpc": "2.0",
        "method": "notifications/claude/channel",
        "params": {"content": text, "meta": meta},
    })
}
