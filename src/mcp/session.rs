//! Presence and push for the agent `arc mcp` speaks for: lazy
//! registration, the keepalive that holds the session, and the push loop
//! that notifies a subscribed client of new messages.

use std::sync::TryLockError;
use std::time::Duration;

use serde_json::json;

use super::INBOX_URI;
use super::server::Shared;
use crate::error::Result;
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

    pub(super) fn push_loop(&self) {
        let mut backoff = self.opts.retry;
        loop {
            let (generation, cursor) = {
                let f = self.flags.wait_until(None, |f| f.stop || f.subscribed);
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
                    {
                        let mut f = self.flags.lock();
                        if f.stop {
                            return;
                        }
                        if f.generation != generation || !f.subscribed {
                            continue;
                        }
                        f.push_cursor = Some(next);
                    }
                    if !msgs.is_empty() {
                        self.send(&json!({
                            "jsonrpc": "2.0",
                            "method": "notifications/resources/updated",
                            "params": {"uri": INBOX_URI},
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
}
