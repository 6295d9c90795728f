//! Tolerant row readers: any storage class a Python hub may have written
//! reads as the JSON shape of docs/PROTOCOL.md, "Data model".

use rusqlite::Row;
use rusqlite::types::ValueRef;
use serde_json::{Value, json};

use crate::wire::{Channel, Claim, Lock, Message, Session, Task};

/// A column as text whatever its storage class (NULL stays `None`).
pub(super) fn text(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    Ok(match r.get_ref(i)? {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
    })
}

/// A column as an integer when it holds one (or numeric text).
pub(super) fn int(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<i64>> {
    Ok(match r.get_ref(i)? {
        ValueRef::Integer(n) => Some(n),
        ValueRef::Real(f) if f.fract() == 0.0 => Some(f as i64),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        _ => None,
    })
}

/// A JSON column; empty, NULL or unparsable text reads as `default`.
/// Python writes `NaN` and `Infinity` for non-finite floats; those read
/// as `null` rather than discarding the whole value.
pub(super) fn json_col(r: &Row<'_>, i: usize, default: Value) -> rusqlite::Result<Value> {
    Ok(text(r, i)?
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| {
            serde_json::from_str(&s)
                .ok()
                .or_else(|| serde_json::from_str(&null_non_finite(&s)).ok())
        })
        .unwrap_or(default))
}

/// Replaces the bare tokens `NaN`, `Infinity` and `-Infinity` (outside
/// strings) with `null`.
fn null_non_finite(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_str = false;
    let mut escaped = false;
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if c == '"' {
            in_str = true;
        }
        let token = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        match token {
            Some(t) => {
                out.push_str("null");
                rest = &rest[t.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// What a message row weighs, from its stored text (as
/// [`approx_size`] counts a parsed message, without parsing it).
pub(super) fn row_size(r: &Row<'_>) -> rusqlite::Result<usize> {
    let mut n = 256;
    for i in 1..=10 {
        n += match r.get_ref(i)? {
            ValueRef::Text(t) | ValueRef::Blob(t) => t.len(),
            _ => 8,
        };
    }
    Ok(n)
}

pub(super) fn message_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    let attachments = match json_col(r, 7, Value::Array(Vec::new()))? {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    Ok(Message {
        id: r.get(0)?,
        ts: text(r, 1)?.unwrap_or_default(),
        from_agent: text(r, 2)?.unwrap_or_default(),
        to_agent: text(r, 3)?,
        channel: text(r, 4)?.unwrap_or_default(),
        kind: text(r, 5)?.unwrap_or_default(),
        body: text(r, 6)?.unwrap_or_default(),
        attachments,
        reply_to: int(r, 8)?,
        thread_id: text(r, 9)?,
        metadata: json_col(r, 10, json!({}))?,
    })
}

pub(super) fn session_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        session_id: text(r, 0)?.unwrap_or_default(),
        agent_id: text(r, 1)?.unwrap_or_default(),
        display_name: text(r, 2)?.unwrap_or_default(),
        capabilities: json_col(r, 3, json!([]))?,
        metadata: json_col(r, 4, json!({}))?,
        created_at: text(r, 5)?.unwrap_or_default(),
        last_seen: text(r, 6)?.unwrap_or_default(),
        active: int(r, 7)?.unwrap_or(0) != 0,
    })
}

pub(super) fn channel_row(r: &Row<'_>) -> rusqlite::Result<Channel> {
    Ok(Channel {
        name: text(r, 0)?.unwrap_or_default(),
        created_at: text(r, 1)?.unwrap_or_default(),
        created_by: text(r, 2)?,
        metadata: json_col(r, 3, json!({}))?,
    })
}

pub(super) fn claim_row(r: &Row<'_>) -> rusqlite::Result<Claim> {
    Ok(Claim {
        claim_key: text(r, 0)?.unwrap_or_default(),
        thread_id: text(r, 1)?,
        task_message_id: int(r, 2)?,
        owner_agent_id: text(r, 3)?.unwrap_or_default(),
        claimed_at: text(r, 4)?.unwrap_or_default(),
        expires_at: text(r, 5)?.unwrap_or_default(),
        released_at: text(r, 6)?,
        metadata: json_col(r, 7, json!({}))?,
    })
}

pub(super) fn lock_row(r: &Row<'_>) -> rusqlite::Result<Lock> {
    Ok(Lock {
        file_path: text(r, 0)?.unwrap_or_default(),
        agent_id: text(r, 1)?.unwrap_or_default(),
        locked_at: text(r, 2)?.unwrap_or_default(),
        expires_at: text(r, 3)?.unwrap_or_default(),
        released_at: text(r, 4)?,
        metadata: json_col(r, 5, json!({}))?,
    })
}

pub(super) fn task_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        task_id: r.get(0)?,
        parent_task_id: int(r, 1)?,
        channel: text(r, 2)?.unwrap_or_default(),
        thread_id: text(r, 3)?,
        status: text(r, 4)?.unwrap_or_default(),
        created_at: text(r, 5)?.unwrap_or_default(),
        completed_at: text(r, 6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_python_floats_read_as_null() {
        assert_eq!(
            null_non_finite(r#"{"a": NaN, "b": -Infinity, "c": "NaN", "d": [Infinity]}"#),
            r#"{"a": null, "b": null, "c": "NaN", "d": [null]}"#
        );
        assert_eq!(null_non_finite(r#"{"e": "q\"NaN"}"#), r#"{"e": "q\"NaN"}"#);
    }
}
