/*!
Shutdown control (`POST /v1/shutdown`, `/v1/shutdown/cancel`,
`GET /v1/shutdown`) and the run-time remote-access flag
(`POST /v1/network`): docs/PROTOCOL.md, "Shutdown and network".
*/

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::notify::{Alarm, lock};
use crate::state::State;
use crate::store::NewMessage;
use crate::wire::ShutdownStatus;

/// An armed shutdown.
#[derive(Clone)]
pub(crate) struct Pending {
    deadline: Instant,
    delay: i64,
    alarm: Arc<Alarm>,
    /// Set (under the lock) by the timer when it fires, so a cancel that
    /// races the deadline is refused rather than reported as done.
    firing: bool,
}

impl State {
    /// but turned on only when the socket is already bound beyond loopback.
    pub fn set_allow_remote(&self, want: bool) -> Result<()> {
        if want && self.config.host_is_loopback() {
            return Err(Error::invalid(format!(
                "cannot enable remote access at runtime: hub is bound to {} and the listening socket cannot be rebound. Restart the hub with `--host 0.0.0.0 --allow-remote` to expose it on the LAN.",
                self.config.host
            )));
        }
        self.allow_remote.store(want, Ordering::SeqCst);
        Ok(())
    }

    pub fn shutdown_status(&self) -> Option<ShutdownStatus> {
        lock(&self.pending).as_ref().map(|p| ShutdownStatus {
            remaining_sec: p
                .deadline
                .saturating_duration_since(Instant::now())
                .as_secs() as i64,
            delay_sec: p.delay,
        })
    }

    fn system_notice(&self, body: &str, metadata: Value) -> Result<()> {
        let metadata = match metadata {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.store.post_message(NewMessage {
            from_agent: "system".into(),
            channel: "general".into(),
            kind: "notice".into(),
            body: body.into(),
            metadata,
            ..NewMessage::default()
        })?;
        Ok(())
    }

    /// `POST /v1/shutdown`. An immediate shutdown also counts as pending,
    /// so repeating it is refused instead of posting more notices.
    pub fn arm_shutdown(self: &Arc<Self>, delay: i64) -> Result<Value> {
        let alarm = Alarm::new();
        {
            let mut pending = lock(&self.pending);
            if pending.is_some() {
                return Err(Error::invalid("shutdown already pending"));
            }
            *pending = Some(Pending {
                deadline: Instant::now() + Duration::from_secs(delay as u64),
                delay,
                alarm: alarm.clone(),
                firing: false,
            });
        }
        if delay == 0 {
            self.log.log("shutdown initiated (immediate)");
            // Stop on another thread, so this handler answers first; the
            // stop waits for every answer to be written before the process
            // exits (`Hub::finish`).
            let me = self.clone();
            std::thread::spawn(move || {
                me.fire_shutdown(json!({"shutdown": true, "delay_sec": 0, "final": true}));
            });
            return Ok(json!({"status": "shutdown_initiated"}));
        }
        if let Err(e) = self.system_notice(
            &format!("Hub shutdown initiated. Shutting down in {delay} seconds."),
            json!({"shutdown": true, "delay_sec": delay}),
        ) {
            // Not armed after all: leave nothing pending without a timer.
            *lock(&self.pending) = None;
            return Err(e);
        }
        self.log
            .log(&format!("shutdown initiated (delay={delay}s)"));
        let me = self.clone();
        let deadline = Instant::now() + Duration::from_secs(delay as u64);
        std::thread::spawn(move || {
            if alarm.sleep_until(deadline) {
                return; // cancelled
            }
            let ours = match lock(&me.pending).as_mut() {
                Some(p) if Arc::ptr_eq(&p.alarm, &alarm) => {
                    p.firing = true;
                    true
                }
                _ => false,
            };
            if ours {
                me.fire_shutdown(json!({"shutdown": true, "final": true}));
            }
        });
        let remaining = self.shutdown_status().map(|s| s.remaining_sec).unwrap_or(0);
        Ok(json!({"status": "shutdown_initiated", "remaining_sec": remaining, "delay_sec": delay}))
    }

    /// `POST /v1/shutdown/cancel`.
    pub fn cancel_shutdown(&self) -> Result<Value> {
        let mut pending = lock(&self.pending);
        match pending.as_ref() {
            None => return Err(Error::invalid("no shutdown pending")),
            Some(p) if p.delay == 0 || p.firing || self.stopping() => {
                return Err(Error::invalid("shutdown already executing"));
            }
            Some(p) => p.alarm.ring(),
        }
        *pending = None;
        drop(pending);
        self.system_notice(
            "Hub shutdown cancelled.",
            json!({"shutdown_cancelled": true}),
        )?;
        self.log.log("shutdown cancelled");
        Ok(json!({"status": "shutdown_cancelled"}))
    }

    fn fire_shutdown(&self, metadata: Value) {
        if let Err(e) = self.system_notice("Hub is shutting down now.", metadata) {
            self.log.log(&format!("shutdown notice error: {e}"));
        }
        self.log.log("executing shutdown");
        self.request_stop();
    }
}
