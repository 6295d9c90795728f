//! `arc post`, `arc poll` and `arc whoami`: one agent talking to a hub,
//! printing what the reference prints (`arc error: <message>` on stdout
//! for hub and transport errors, exit 1).

use std::path::PathBuf;
use std::process::ExitCode;

use super::flags::Raw;
use crate::client::{Client, Endpoint, Post};
use crate::error::{Error, Result};
use crate::wire::to_python_json;

/// `poll --timeout` by default, in seconds.
pub const POLL_TIMEOUT_SEC: f64 = 30.0;

/// `arc post`.
#[derive(Debug, Clone, PartialEq)]
pub struct PostArgs {
    pub agent: Endpoint,
    pub channel: String,
    pub to: Option<String>,
    pub kind: String,
    pub thread_id: Option<String>,
    pub body: String,
}

/// `arc poll`.
#[derive(Debug, Clone, PartialEq)]
pub struct PollArgs {
    pub agent: Endpoint,
    pub channel: Option<String>,
    pub thread_id: Option<String>,
    pub timeout: f64,
    pub since_id: i64,
    pub include_self: bool,
    pub from_now: bool,
    pub cursor_file: Option<PathBuf>,
}

/// `--agent`, `--base-url` and `--relay-dir`.
pub fn endpoint(raw: &Raw, default_agent: Option<&str>) -> Result<Endpoint> {
    let agent = match (raw.value("agent"), default_agent) {
        (Some(a), _) => a.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => return Err(Error::Usage("the --agent flag is required".into())),
    };
    if agent.trim().is_empty() {
        return Err(Error::Usage("--agent must not be empty".into()));
    }
    Ok(Endpoint {
        agent,
        base_url: raw
            .value_or("base-url", crate::client::DEFAULT_BASE_URL)
            .trim_end_matches('/')
            .to_string(),
        relay_dir: raw.value("relay-dir").map(PathBuf::from),
    })
}

pub fn post_args(raw: &Raw) -> Result<PostArgs> {
    let agent = endpoint(raw, None)?;
    let body = match raw.positionals.as_slice() {
        [body] => body.clone(),
        [] => return Err(Error::Usage("post needs a message body".into())),
        more => return Err(Error::Usage(format!("unexpected argument {:?}", more[1]))),
    };
    let kind = raw.value_or("kind", "chat").to_lowercase();
    if !crate::wire::MESSAGE_KINDS.contains(&kind.as_str()) {
        return Err(Error::Usage(format!(
            "--kind must be one of: {}",
            crate::wire::MESSAGE_KINDS.join(", ")
        )));
    }
    Ok(PostArgs {
        agent,
        channel: raw.value_or("channel", "general").to_string(),
        to: raw.value("to").map(str::to_string),
        kind,
        thread_id: raw.value("thread-id").map(str::to_string),
        body,
    })
}

pub fn poll_args(raw: &Raw) -> Result<PollArgs> {
    Ok(PollArgs {
        agent: endpoint(raw, None)?,
        channel: raw.value("channel").map(str::to_string),
        thread_id: raw.value("thread-id").map(str::to_string),
        timeout: raw.seconds("timeout")?.unwrap_or(POLL_TIMEOUT_SEC),
        since_id: match raw.parsed::<i64>("since-id", "an integer")? {
            Some(n) if n < 0 => return Err(Error::Usage("--since-id must be >= 0".into())),
            other => other.unwrap_or(0),
        },
        include_self: raw.switch("include-self"),
        from_now: raw.switch("from-now"),
        cursor_file: raw.value("cursor-file").map(PathBuf::from),
    })
}

/// Builds the agent's client and runs `f`; hub and transport errors print
/// `arc error: <message>` on stdout (the reference's format) and exit 1.
pub fn run(e: &Endpoint, f: impl FnOnce(&mut Client) -> Result<()>) -> ExitCode {
    let mut client = e.client();
    match f(&mut client) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Transport(detail)) => {
            match &e.relay_dir {
                Some(dir) => println!(
                    "arc error: connection error: {detail} (is a hub relaying {}?)",
                    dir.display()
                ),
                None => println!(
                    "arc error: connection error: cannot reach the hub ({detail}); start one with `arc ensure`"
                ),
            }
            ExitCode::from(1)
        }
        Err(err) => {
            println!("arc error: {}", err.detail());
            ExitCode::from(1)
        }
    }
}

/// Makes sure the agent has a session without evicting a live one: an
/// existing session (and its display name and capabilities) is kept; only
/// an agent without one is registered.
fn ensure_session(c: &mut Client) -> Result<()> {
    if c.whoami()?.session.is_none() {
        c.register(None, true, None, None)?;
    }
    Ok(())
}

pub fn post(c: &mut Client, a: &PostArgs) -> Result<()> {
    ensure_session(c)?;
    let opts = Post {
        kind: Some(a.kind.clone()),
        thread_id: a.thread_id.clone(),
        ..Post::default()
    };
    let msg = match &a.to {
        Some(to) => c.dm(to, &a.body, opts)?,
        None => c.post(&a.channel, &a.body, opts)?,
    };
    println!("{}", to_python_json(&msg, true));
    Ok(())
}

pub fn poll(c: &mut Client, a: &PollArgs) -> Result<()> {
    let mut since = a.since_id;
    if let Some(path) = &a.cursor_file {
        since = since.max(read_cursor(path)?);
    }
    ensure_session(c)?;
    c.cursor = since;
    if a.from_now && since == 0 {
        c.cursor = c.bootstrap()?.latest_visible_id;
    }
    let msgs = c.poll(
        a.timeout,
        a.channel.as_deref(),
        a.thread_id.as_deref(),
        !a.include_self,
        100,
    )?;
    for m in &msgs {
        println!("{}", to_python_json(m, false));
    }
    if let Some(last) = msgs.last() {
        c.mark_read(last.id);
    }
    if let Some(path) = &a.cursor_file {
        crate::paths::write_atomic(path, c.cursor.to_string().as_bytes())?;
    }
    Ok(())
}

/// The largest cursor file read: an id is at most 20 digits.
pub const CURSOR_MAX_BYTES: u64 = 64;

/// The id a cursor file holds: 0 when it is missing or holds no number
/// (as before). It is read like a pidfile (docs/SECURITY.md, "What a
/// client reads"): a symlink, FIFO or device there, or a file over
/// [`CURSOR_MAX_BYTES`], is an error instead of a hang or a huge read.
fn read_cursor(path: &std::path::Path) -> Result<i64> {
    match crate::sys::file::read_small(path, CURSOR_MAX_BYTES) {
        Ok(small) => Ok(String::from_utf8_lossy(&small.bytes)
            .trim()
            .parse()
            .unwrap_or(0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::invalid(format!(
            "cursor file {}: {e}",
            path.display()
        ))),
    }
}

/// `arc whoami`: the bootstrap view; an agent without a session gets one.
pub fn whoami(c: &mut Client) -> Result<()> {
    let b = c.whoami()?;
    if b.session.is_none() {
        c.register(None, true, None, None)?;
        println!("{}", to_python_json(&c.whoami()?, true));
    } else {
        println!("{}", to_python_json(&b, true));
    }
    Ok(())
}
