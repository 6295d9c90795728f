//! `POST /v1/messages`: validation in the reference's order and words
//! (docs/PROTOCOL.md, "Endpoints", "POST /v1/messages"), then the store.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{Call, Outcome, Reply};
use crate::error::{Error, Result};
use crate::input::{self, field, opt_int};
use crate::state::State;
use crate::store::NewMessage;
use crate::wire::{ATTACHMENT_TYPES, MESSAGE_KINDS};

/// `POST /v1/messages`.
pub(super) fn post(s: &Arc<State>, c: &Call) -> Result<Outcome> {
    let m = normalize_message(s, &c.body)?;
    if m.kind == "task" {
        // The DAG fields (docs/PROTOCOL.md, "Task DAG"): known
        // dependencies, an integer priority, lists of strings, patterns.
        s.store
            .check_task_spec(&crate::store::spec_of(&m.metadata)?)?;
    }
    Ok(Reply::created(s.store.post_message(m)?).into())
}

/// Python truthiness of a JSON value.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Bool(true)) => true,
    }
}

fn string_of(v: &Value, key: &str) -> Result<String> {
    input::scalar_string(v).ok_or_else(|| Error::invalid(format!("{key} must be a string")))
}

/// The validation steps in order; the channel's existence is checked in
/// the store's write transaction.
fn normalize_message(s: &State, b: &Map<String, Value>) -> Result<NewMessage> {
    let parent_task_id = match field(b, "parent_task_id") {
        None => None,
        Some(v) => {
            let id = input::coerce_int(v)
                .ok_or_else(|| Error::invalid("parent_task_id must be an integer"))?;
            if !s.store.task_exists(id)? {
                return Err(Error::invalid("parent_task_id references unknown task"));
            }
            Some(id)
        }
    };
    let from_agent = match field(b, "from_agent") {
        None => String::new(),
        Some(v) => string_of(v, "from_agent")?.trim().to_string(),
    };
    if from_agent.is_empty() {
        return Err(Error::invalid("from_agent is required"));
    }
    let to_agent = match field(b, "to_agent") {
        None => None,
        Some(v) => Some(string_of(v, "to_agent")?.trim().to_string()).filter(|t| !t.is_empty()),
    };
    let channel = match b.get("channel") {
        v if truthy(v) => string_of(v.unwrap_or(&Value::Null), "channel")?
            .trim()
            .to_string(),
        _ if to_agent.is_some() => "direct".to_string(),
        _ => "general".to_string(),
    };
    if channel.is_empty() {
        return Err(Error::invalid("channel must be non-empty"));
    }
    let kind = match field(b, "kind") {
        None => "chat".to_string(),
        Some(v) => string_of(v, "kind")?.trim().to_lowercase(),
    };
    if !MESSAGE_KINDS.contains(&kind.as_str()) {
        return Err(Error::invalid(format!("unsupported kind: {kind}")));
    }
    let body = match field(b, "body") {
        None => String::new(),
        Some(v) => string_of(v, "body")?,
    };
    let attachments = match b.get("attachments") {
        v if !truthy(v) => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > s.config.max_attachments {
                return Err(Error::invalid("too many attachments"));
            }
            items
                .iter()
                .map(|a| normalize_attachment(a, s.config.max_attachment_chars))
                .collect::<Result<Vec<_>>>()?
        }
        _ => return Err(Error::invalid("attachments must be a list")),
    };
    if body.is_empty() && attachments.is_empty() {
        return Err(Error::invalid("body or attachments is required"));
    }
    if body.chars().count() > s.config.max_body_chars {
        return Err(Error::invalid("body exceeds max size"));
    }
    let reply_to = opt_int(b, "reply_to")?;
    let thread_id = match field(b, "thread_id") {
        None => None,
        Some(v) => Some(string_of(v, "thread_id")?.trim().to_string()).filter(|t| !t.is_empty()),
    };
    let metadata = match b.get("metadata") {
        v if !truthy(v) => Map::new(),
        Some(v @ Value::Object(m)) => {
            input::within_size(v, "metadata", s.config.max_json_field_chars())?;
            m.clone()
        }
        _ => return Err(Error::invalid("metadata must be a JSON object")),
    };
    Ok(NewMessage {
        from_agent,
        to_agent,
        channel,
        kind,
        body,
        attachments,
        reply_to,
        thread_id,
        metadata,
        parent_task_id,
    })
}

fn normalize_attachment(a: &Value, max_chars: usize) -> Result<Value> {
    let Value::Object(a) = a else {
        return Err(Error::invalid("attachments must contain JSON objects"));
    };
    let t = match field(a, "type") {
        None => String::new(),
        Some(v) => input::scalar_string(v)
            .unwrap_or_else(|| v.to_string())
            .trim()
            .to_string(),
    };
    if !ATTACHMENT_TYPES.contains(&t.as_str()) {
        return Err(Error::invalid(format!("unsupported attachment type: {t}")));
    }
    let mut out = Map::new();
    out.insert("type".into(), Value::String(t.clone()));
    if matches!(t.as_str(), "text" | "json" | "code") {
        let Some(content) = a.get("content") else {
            return Err(Error::invalid(format!(
                "attachment type {t} requires content"
            )));
        };
        if input::py_json_len(content) > max_chars {
            return Err(Error::invalid(format!(
                "attachment type {t} exceeds max size"
            )));
        }
        out.insert("content".into(), content.clone());
        if t == "code" {
            if let Some(lang) = field(a, "language") {
                out.insert(
                    "language".into(),
                    Value::String(input::scalar_string(lang).unwrap_or_else(|| lang.to_string())),
                );
            }
        }
    } else {
        let path = match field(a, "path") {
            None => String::new(),
            Some(v) => input::scalar_string(v)
                .unwrap_or_else(|| v.to_string())
                .trim()
                .to_string(),
        };
        if path.is_empty() {
            return Err(Error::invalid(format!("attachment type {t} requires path")));
        }
        out.insert("path".into(), Value::String(path));
        for k in ["description", "base", "head"] {
            if let Some(v) = field(a, k) {
                out.insert(k.into(), v.clone());
            }
        }
        for k in ["start_line", "end_line"] {
            if let Some(v) = opt_int(a, k)? {
                out.insert(k.into(), json!(v));
            }
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthiness_is_pythons() {
        assert!(!truthy(None));
        assert!(!truthy(Some(&json!(0))));
        assert!(!truthy(Some(&json!(""))));
        assert!(!truthy(Some(&json!({}))));
        assert!(truthy(Some(&json!("0"))));
        assert!(truthy(Some(&json!([0]))));
    }

    #[test]
    fn attachments_normalise_in_order() {
        let a = normalize_attachment(
            &json!({"type": " file_ref ", "path": " src/x.rs ", "start_line": "3", "junk": 1, "base": null}),
            100,
        )
        .unwrap();
        assert_eq!(
            a,
            json!({"type": "file_ref", "path": "src/x.rs", "start_line": 3})
        );
        let e = normalize_attachment(&json!({"type": "code"}), 100).unwrap_err();
        assert_eq!(e.detail(), "attachment type code requires content");
        let e = normalize_attachment(&json!({"type": "text", "content": "x".repeat(200)}), 100)
            .unwrap_err();
        assert_eq!(e.detail(), "attachment type text exceeds max size");
        let e = normalize_attachment(&json!({"type": "zip"}), 100).unwrap_err();
        assert_eq!(e.detail(), "unsupported attachment type: zip");
        let e = normalize_attachment(&json!(["x"]), 100).unwrap_err();
        assert_eq!(e.detail(), "attachments must contain JSON objects");
        let e = normalize_attachment(
            &json!({"type": "diff_ref", "path": "p", "end_line": 1.5}),
            100,
        )
        .unwrap_err();
        assert_eq!(e.detail(), "end_line must be an integer");
    }
}
