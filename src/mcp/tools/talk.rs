//! The handlers of the talking tools: messages, DMs, the inbox and read
//! marks, channels, threads, agents, delivery state and hub info.
//! Arguments are checked before the hub is contacted.

use serde_json::{Value, json};

use super::{Args, hub_error, result, to_json};
use crate::client::Post;
use crate::input::percent_encode;
use crate::mcp::server::Shared;

type Res = std::result::Result<Value, String>;

pub(super) fn post_message(s: &Shared, a: &Args<'_>) -> Res {
    let (channel, body) = (a.string("channel")?, a.string("body")?);
    let opts = Post {
        kind: Some(a.string_or_default("kind")?),
        thread_id: a.opt_string("thread_id")?,
        to_agent: a.opt_string("to_agent")?,
        reply_to: a.opt_int("reply_to")?,
        parent_task_id: a.opt_int("parent_task_id")?,
        ..Post::default()
    };
    s.session()?;
    to_json(s.client.post(&channel, &body, opts))
}

pub(super) fn poll_messages(s: &Shared, a: &Args<'_>) -> Res {
    let channel = a.opt_string("channel")?;
    let thread = a.opt_string("thread_id")?;
    let timeout = a.number("timeout", 300.0)?;
    s.session()?;
    let mut p = s.client.clone();
    p.cursor = s.poll_cursor();
    let msgs = p
        .poll(timeout, channel.as_deref(), thread.as_deref(), true, 100)
        .map_err(hub_error)?;
    s.advance_poll_cursor(p.cursor);
    if let Some(last) = msgs.last() {
        p.mark_read(last.id);
    }
    to_json(Ok(msgs))
}

pub(super) fn dm(s: &Shared, a: &Args<'_>) -> Res {
    let (to, body) = (a.string("to_agent")?, a.string("body")?);
    s.session()?;
    to_json(s.client.dm(&to, &body, Post::default()))
}

pub(super) fn list_agents(s: &Shared, _: &Args<'_>) -> Res {
    s.session()?;
    to_json(s.client.agents(None))
}

pub(super) fn create_channel(s: &Shared, a: &Args<'_>) -> Res {
    let name = a.string("name")?;
    s.session()?;
    to_json(s.client.create_channel(&name, None))
}

pub(super) fn inbox(s: &Shared, a: &Args<'_>) -> Res {
    let since = a.opt_int("since_id")?;
    let limit = a.int_or_default("limit")?.clamp(1, 500);
    s.session()?;
    let query = match since {
        Some(since) => format!("since_id={since}&limit={limit}"),
        None => format!("tail=1&limit={limit}"),
    };
    let path = format!("/v1/inbox/{}?{query}", percent_encode(s.agent()));
    Ok(match result(s, "GET", &path, None)? {
        Value::Null => json!([]),
        v => v,
    })
}

pub(super) fn mark_read(s: &Shared, a: &Args<'_>) -> Res {
    let up_to = a.int("up_to_id")?;
    s.session()?;
    let path = format!("/v1/agents/{}/read", percent_encode(s.agent()));
    result(s, "POST", &path, Some(&json!({"up_to_id": up_to})))
}

pub(super) fn list_channels(s: &Shared, _: &Args<'_>) -> Res {
    s.session()?;
    to_json(s.client.channels())
}

pub(super) fn read_channel(s: &Shared, a: &Args<'_>) -> Res {
    let channel = a.string("channel")?;
    let thread = a.opt_string("thread_id")?;
    let since = a.opt_int("since_id")?;
    let limit = a.int_or_default("limit")?.clamp(1, 500);
    s.session()?;
    let mut path = format!(
        "/v1/messages?channel={}&limit={limit}",
        percent_encode(&channel)
    );
    match since {
        Some(since) => path.push_str(&format!("&since_id={since}")),
        None => path.push_str("&tail=1"),
    }
    if let Some(t) = thread {
        path.push_str(&format!("&thread_id={}", percent_encode(&t)));
    }
    result(s, "GET", &path, None)
}

pub(super) fn list_threads(s: &Shared, _: &Args<'_>) -> Res {
    s.session()?;
    result(s, "GET", "/v1/threads", None)
}

pub(super) fn read_thread(s: &Shared, a: &Args<'_>) -> Res {
    let id = a.string("thread_id")?;
    s.session()?;
    to_json(s.client.get_thread(&id))
}

pub(super) fn whoami(s: &Shared, _: &Args<'_>) -> Res {
    s.session()?;
    to_json(s.client.clone().bootstrap())
}

pub(super) fn rename(s: &Shared, a: &Args<'_>) -> Res {
    let name = a.string("display_name")?;
    s.session()?;
    let path = format!("/v1/sessions/{}/rename", percent_encode(s.agent()));
    result(s, "POST", &path, Some(&json!({"display_name": name})))
}

pub(super) fn pending(s: &Shared, a: &Args<'_>) -> Res {
    let limit = a.int_or_default("limit")?.clamp(1, 1000);
    s.session()?;
    let path = format!(
        "/v1/agents/{}/pending?limit={limit}",
        percent_encode(s.agent())
    );
    result(s, "GET", &path, None)
}

pub(super) fn deliveries(s: &Shared, a: &Args<'_>) -> Res {
    let id = a.int("message_id")?;
    s.session()?;
    result(s, "GET", &format!("/v1/messages/{id}/deliveries"), None)
}

pub(super) fn dead_letters(s: &Shared, a: &Args<'_>) -> Res {
    let limit = a.int_or_default("limit")?.clamp(1, 500);
    s.session()?;
    result(
        s,
        "GET",
        &format!("/v1/deliveries/dead?limit={limit}"),
        None,
    )
}

pub(super) fn hub_info(s: &Shared, _: &Args<'_>) -> Res {
    s.session()?;
    result(s, "GET", "/v1/hub-info", None)
}
