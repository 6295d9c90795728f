/*!
`arc smoke-agent`: the reference's three-role smoke test (docs/PROTOCOL.md,
"CLI").

smoke-a opens the channel and posts a task; smoke-b claims the work,
posts an artifact (the role meant to run through the relay) and releases;
smoke-c checks shared visibility and posts a verdict; smoke-a and smoke-b
finish with notices. Roles run as separate processes over `http` or
`relay`, so mixing them checks that both transports see the same state.
`--run-id` suffixes the channel, thread and claim key so repeated runs in
one database stay isolated (the defaults match the reference). Every
request goes through [`Client`].
*/

use std::path::PathBuf;
use std::time::Duration;

use crate::client::{Client, Post};
use crate::error::{Error, Result};
use crate::wire::Message;

/// The reference's defaults for the roles' shared names and pace.
pub const DEFAULT_CHANNEL: &str = "smoke-room";
pub const DEFAULT_THREAD: &str = "smoke-relay-001";
pub const DEFAULT_CLAIM_KEY: &str = "smoke-claim-001";
pub const DEFAULT_TIMEOUT_SEC: f64 = 120.0;
pub const DEFAULT_POLL_SEC: f64 = 1.0;

/// What `arc smoke-agent` was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct SmokeArgs {
    pub role: String,
    pub transport: String,
    pub base_url: String,
    pub relay_dir: PathBuf,
    pub channel: String,
    pub thread_id: String,
    pub claim_key: String,
    pub timeout_sec: f64,
    pub poll_interval_sec: f64,
    pub run_id: Option<String>,
}

/// One role's view of the run.
struct Run<'a> {
    a: &'a SmokeArgs,
    c: Client,
    channel: String,
    thread: String,
    claim_key: String,
}

/// `<action> failed: <error>`, the reference's wording.
fn step<T>(action: &str, r: Result<T>) -> Result<T> {
    r.map_err(|e| Error::Smoke(format!("{action} failed: {}", e.detail())))
}

fn has(msgs: &[Message], from: &str, kind: &str, contains: Option<&str>) -> bool {
    msgs.iter().any(|m| {
        m.from_agent == from && m.kind == kind && contains.is_none_or(|c| m.body.contains(c))
    })
}

impl Run<'_> {
    fn post(&self, action: &str, kind: &str, body: &str) -> Result<()> {
        let opts = Post {
            kind: Some(kind.into()),
            thread_id: Some(self.thread.clone()),
            ..Post::default()
        };
        step(action, self.c.post(&self.channel, body, opts)).map(|_| ())
    }

    /// Reads the thread every poll interval (the reference's pace) until
    /// `done` holds or the role's timeout passes.
    fn wait(&self, done: impl Fn(&[Message]) -> bool) -> Result<()> {
        let every = Duration::from_secs_f64(self.a.poll_interval_sec.max(0.01));
        let limit = Duration::from_secs_f64(self.a.timeout_sec.max(0.0));
        let seen = crate::notify::poll_until(limit, every, || {
            let msgs = self.c.messages(&self.channel, Some(&self.thread), 0).ok()?;
            done(&msgs).then_some(())
        });
        seen.ok_or_else(|| {
            Error::Smoke(format!(
                "timed out waiting for messages on thread {}",
                self.thread
            ))
        })
    }

    fn smoke_a(&self) -> Result<()> {
        step("create channel", self.c.create_channel(&self.channel, None))?;
        self.post("post task", "task", "smoke task from smoke-a")?;
        self.wait(|m| {
            has(m, "smoke-b", "artifact", None) && has(m, "smoke-c", "notice", Some("verified"))
        })?;
        self.post(
            "post final notice",
            "notice",
            "smoke-a saw both agents and the smoke test passed from the host side",
        )
    }

    fn smoke_b(&self) -> Result<()> {
        self.wait(|m| has(m, "smoke-a", "task", None))?;
        let lease = step(
            "acquire claim",
            self.c
                .claim(&self.claim_key, Some(&self.thread), None, 300, None),
        )?;
        if !lease.acquired {
            return Err(Error::Smoke("claim denied to smoke-b".into()));
        }
        self.post(
            "post artifact",
            "artifact",
            "smoke-b reached the hub through relay mode",
        )?;
        step("release claim", self.c.release(&self.claim_key))?;
        self.wait(|m| has(m, "smoke-c", "notice", Some("verified")))?;
        self.post(
            "post confirmation notice",
            "notice",
            "smoke-b confirms relay interop works",
        )
    }

    fn smoke_c(&self) -> Result<()> {
        self.wait(|m| has(m, "smoke-a", "task", None) && has(m, "smoke-b", "artifact", None))?;
        let claims = step("list claims", self.c.claims(Some(&self.thread), true))?;
        let state = match claims.iter().find(|c| c.claim_key == self.claim_key) {
            Some(c) => format!("held by {}", c.owner_agent_id),
            None => "released".to_string(),
        };
        self.post(
            "post verifier notice",
            "notice",
            &format!(
                "smoke-c verified shared visibility across direct HTTP and relay mode ({state})"
            ),
        )
    }
}

/// Runs one role to completion.
pub fn run(a: &SmokeArgs) -> Result<()> {
    let suffix = a
        .run_id
        .as_deref()
        .map(|r| format!("-{r}"))
        .unwrap_or_default();
    let mut c = match a.transport.as_str() {
        "relay" => Client::over_relay(&a.role, &a.relay_dir),
        _ => Client::http(&a.role, &a.base_url),
    };
    c.timeout = Duration::from_secs_f64(a.timeout_sec.clamp(5.0, 30.0));
    step("open session", c.register(Some(&a.role), true, None, None))?;
    let run = Run {
        a,
        c,
        channel: format!("{}{suffix}", a.channel),
        thread: format!("{}{suffix}", a.thread_id),
        claim_key: format!("{}{suffix}", a.claim_key),
    };
    match a.role.as_str() {
        "smoke-a" => run.smoke_a(),
        "smoke-b" => run.smoke_b(),
        "smoke-c" => run.smoke_c(),
        other => Err(Error::Smoke(format!("unknown role: {other}"))),
    }
}
