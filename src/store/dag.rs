//! The task DAG (docs/PROTOCOL.md, "Task DAG"): dependencies, priority,
//! required capabilities and paths live in a task message's `metadata`,
//! so the reference's own tables hold whole tasks. A task is ready when it
//! is open, every dependency is done, and no active claim holds it.
//! `next` picks, claims and reserves in one transaction; `handoff` moves a
//! claim and its reservations in one.

use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value, json};

use super::leases::Want;
use super::reservations::{NewReservation, PathRules, Reservation, Reserved, active};
use super::rows::{claim_row, message_row, text};
use super::schema::{CLAIM_COLS, MSG_COLS};
use super::tx::Tx;
use super::{Cached, Store};
use crate::error::{Error, Result};
use crate::wire::{Claim, Message, Task};

/// How long a claim taken by `next` lasts; the holder refreshes it.
pub const NEXT_CLAIM_TTL_SEC: i64 = 900;

/// Dependencies one task may name at most.
const MAX_DEPENDS: usize = 256;

/// The claim key `next` uses for a task.
pub fn claim_key_of(task_id: i64) -> String {
    format!("task:{task_id}")
}

/// The DAG fields of a task's metadata, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskSpec {
    pub depends_on: Vec<i64>,
    pub priority: i64,
    pub capabilities: Vec<String>,
    pub paths: Vec<String>,
}

/// Reads the DAG fields of `metadata` (400 on a malformed one). Paths
/// are checked as patterns by the caller.
pub fn spec_of(metadata: &Map<String, Value>) -> Result<TaskSpec> {
    let ints = |key: &str| -> Result<Vec<i64>> {
        match metadata.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    crate::input::coerce_int(v).ok_or_else(|| {
                        Error::invalid(format!("metadata.{key} must be a list of task ids"))
                    })
                })
                .collect(),
            Some(_) => Err(Error::invalid(format!(
                "metadata.{key} must be a list of task ids"
            ))),
        }
    };
    let strings = |key: &str| -> Result<Vec<String>> {
        match metadata.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        Error::invalid(format!("metadata.{key} must be a list of strings"))
                    })
                })
                .collect(),
            Some(_) => Err(Error::invalid(format!(
                "metadata.{key} must be a list of strings"
            ))),
        }
    };
    let depends_on = ints("depends_on")?;
    if depends_on.len() > MAX_DEPENDS {
        return Err(Error::invalid(format!(
            "metadata.depends_on may name at most {MAX_DEPENDS} tasks"
        )));
    }
    let priority = match metadata.get("priority") {
        None | Some(Value::Null) => 0,
        Some(v) => crate::input::coerce_int(v)
            .ok_or_else(|| Error::invalid("metadata.priority must be an integer"))?,
    };
    Ok(TaskSpec {
        depends_on,
        priority,
        capabilities: strings("capabilities")?,
        paths: strings("paths")?,
    })
}

/// What `next` hands out.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub task: Task,
    pub message: Message,
    pub claim: Claim,
    pub reservations: Vec<Reservation>,
    pub briefing: Value,
}

/// A task row and its message, for the DAG.
struct Node {
    task: Task,
    message: Message,
    spec: TaskSpec,
}

impl Tx<'_> {
    fn node(&self, id: i64) -> Result<Option<Node>> {
        let Some(task) = self.task(id)? else {
            return Ok(None);
        };
        let message = self
            .tx
            .one(
                &format!("SELECT {MSG_COLS} FROM messages WHERE id = ?1"),
                [id],
                message_row,
            )
            .optional()?
            .unwrap_or_default();
        let meta = message.metadata.as_object().cloned().unwrap_or_default();
        // A malformed row another hub wrote reads as no DAG fields.
        let spec = spec_of(&meta).unwrap_or_default();
        Ok(Some(Node {
            task,
            message,
            spec,
        }))
    }

    fn held(&self, task_id: i64) -> Result<bool> {
        Ok(self
            .tx
            .one(
                "SELECT 1 FROM claims WHERE task_message_id = ?1 AND released_at IS NULL AND expires_at >= ?2",
                params![task_id, self.now],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    fn ready(&self, n: &Node) -> Result<bool> {
        if n.task.status != "open" || self.held(n.task.task_id)? {
            return Ok(false);
        }
        for d in &n.spec.depends_on {
            match self.task(*d)? {
                Some(t) if t.status == "done" => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The open `task` tasks, best first: priority, then oldest.
    fn candidates(&self, channel: Option<&str>) -> Result<Vec<Node>> {
        let mut st = self.tx.prepare_cached(
            "SELECT t.task_id FROM tasks t JOIN messages m ON m.id = t.task_id \
             WHERE t.status = 'open' AND m.kind = 'task' AND (?1 IS NULL OR t.channel = ?1) ORDER BY t.task_id LIMIT 5000",
        )?;
        let ids = st
            .query_map(params![channel], |r| r.get::<_, i64>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        drop(st);
        let mut nodes = Vec::new();
        for id in ids {
            if let Some(n) = self.node(id)? {
                nodes.push(n);
            }
        }
        nodes.sort_by(|a, b| {
            b.spec
                .priority
                .cmp(&a.spec.priority)
                .then(a.task.task_id.cmp(&b.task.task_id))
        });
        Ok(nodes)
    }

    /// Claims `n` for `agent` and reserves its paths, or takes nothing.
    fn take(&mut self, rules: &PathRules, n: &Node, agent: &str) -> Result<Option<Assignment>> {
        self.tx.run("SAVEPOINT arc_next", [])?;
        let key = claim_key_of(n.task.task_id);
        let meta = Map::new();
        let want = Want {
            key: &key,
            owner: agent,
            ttl_sec: NEXT_CLAIM_TTL_SEC,
            metadata: &meta,
            extra: vec![
                ("thread_id", n.task.thread_id.clone().into()),
                ("task_message_id", Some(n.task.task_id).into()),
            ],
        };
        let (claim, got) = self.acquire::<Claim>(&want)?;
        if !got {
            self.tx.run("ROLLBACK TO arc_next", [])?;
            self.tx.run("RELEASE arc_next", [])?;
            return Ok(None);
        }
        let mut reservations = Vec::new();
        if !n.spec.paths.is_empty() {
            let mut paths = Vec::new();
            for p in &n.spec.paths {
                if let Ok(pat) = rules.pattern(p) {
                    paths.push(pat.as_str().to_string());
                }
            }
            let r = NewReservation {
                agent_id: agent.to_string(),
                paths,
                exclusive: true,
                ttl_sec: NEXT_CLAIM_TTL_SEC,
                reason: Some(format!("task #{}", n.task.task_id)),
                task_id: Some(n.task.task_id),
                claim_key: Some(key.clone()),
            };
            match self.reserve(rules, &r)? {
                Reserved::Granted(r) => reservations.push(*r),
                Reserved::Refused(_) => {
                    self.tx.run("ROLLBACK TO arc_next", [])?;
                    self.tx.run("RELEASE arc_next", [])?;
                    return Ok(None);
                }
            }
        }
        self.tx.run("RELEASE arc_next", [])?;
        self.out.work = true;
        let briefing = self.briefing(rules, n, agent)?;
        Ok(Some(Assignment {
            task: n.task.clone(),
            message: n.message.clone(),
            claim,
            reservations,
            briefing,
        }))
    }

    /// Who holds reserved paths near the task's own, and where to talk.
    fn briefing(&self, rules: &PathRules, n: &Node, agent: &str) -> Result<Value> {
        let dirs: Vec<String> = n
            .spec
            .paths
            .iter()
            .filter_map(|p| rules.normalize(p).ok())
            .map(|p| p.split('/').next().unwrap_or("").to_string())
            .collect();
        let mut nearby = Vec::new();
        for r in active(self.tx, &self.now)?
            .into_iter()
            .filter(|r| r.agent_id != agent)
        {
            for p in &r.paths {
                let top = p.split('/').next().unwrap_or("");
                if dirs.iter().any(|d| d == top || top.contains('*')) {
                    nearby.push(json!({"agent_id": r.agent_id, "pattern": p, "mode": r.mode, "expires_at": r.expires_at, "reservation_id": r.reservation_id}));
                }
            }
        }
        Ok(json!({
            "task_id": n.task.task_id,
            "thread_id": n.task.thread_id,
            "channel": n.task.channel,
            "summary": crate::wire::headers::summary(&n.message.body, 200),
            "depends_on": n.spec.depends_on,
            "paths": n.spec.paths,
            "nearby": nearby,
        }))
    }
}

impl Store {
    /// `POST /v1/tasks/next`: the best ready task the agent may take,
    /// claimed with its paths reserved, or `None`.
    pub fn next_task(
        &self,
        agent: &str,
        channel: Option<&str>,
        capabilities: Option<&[String]>,
    ) -> Result<Option<Assignment>> {
        let rules = self.path_rules();
        self.write(|t| {
            let caps: Vec<String> = match capabilities {
                Some(c) => c.to_vec(),
                None => t
                    .tx
                    .one(
                        "SELECT capabilities_json FROM sessions WHERE agent_id = ?1 AND active = 1 ORDER BY created_at DESC LIMIT 1",
                        [agent],
                        |r| text(r, 0),
                    )
                    .optional()?
                    .flatten()
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .unwrap_or_default(),
            };
            for n in t.candidates(channel)? {
                if !n.spec.capabilities.iter().all(|c| caps.contains(c)) || !t.ready(&n)? {
                    continue;
                }
                if let Some(a) = t.take(&rules, &n, agent)? {
                    t.touch(agent)?;
                    return Ok(Some(a));
                }
            }
            Ok(None)
        })
    }

    /// `POST /v1/tasks/{id}/handoff`: the claim and the task's
    /// reservations move to `to`, a notice goes to the thread and a DM
    /// with the note to the new holder.
    pub fn handoff(
        &self,
        task_id: i64,
        from: &str,
        to: &str,
        note: Option<&str>,
    ) -> Result<(Claim, Vec<Reservation>)> {
        self.write(|t| {
            let task = t.task(task_id)?.ok_or_else(|| Error::not_found("task not found"))?;
            let claim = t
                .tx
                .one(
                    &format!("SELECT {CLAIM_COLS} FROM claims WHERE task_message_id = ?1 AND owner_agent_id = ?2 AND released_at IS NULL AND expires_at >= ?3 ORDER BY claimed_at DESC LIMIT 1"),
                    params![task_id, from, t.now],
                    claim_row,
                )
                .optional()?
                .ok_or_else(|| Error::conflict("the task has no active claim held by from_agent"))?;
            t.tx.run(
                "UPDATE claims SET owner_agent_id = ?1 WHERE claim_key = ?2",
                params![to, claim.claim_key],
            )?;
            t.tx.run(
                "UPDATE arc_reservations SET agent_id = ?1 WHERE agent_id = ?2 AND released_at IS NULL AND expires_at > ?3 AND (task_id = ?4 OR claim_key = ?5)",
                params![to, from, t.now, task_id, claim.claim_key],
            )?;
            let note_text = note.unwrap_or("");
            let meta = json!({"handoff": true, "task_id": task_id, "from_agent": from, "to_agent": to, "note": note_text});
            t.notice(
                &task.channel,
                &format!("{from} handed task #{task_id} to {to}."),
                meta.clone(),
                Some(task_id),
                task.thread_id.as_deref(),
            )?;
            let body = if note_text.is_empty() {
                format!("{from} handed you task #{task_id}.")
            } else {
                format!("{from} handed you task #{task_id}: {note_text}")
            };
            t.insert_message(from, Some(to), "direct", "notice", &body, &[], Some(task_id), task.thread_id.as_deref(), meta.as_object().expect("an object"))?;
            t.out.work = true;
            t.touch(from)?;
            let claim = t
                .tx
                .one(&format!("SELECT {CLAIM_COLS} FROM claims WHERE claim_key = ?1"), [&claim.claim_key], claim_row)?;
            let now = t.now.clone();
            let moved = active(t.tx, &now)?
                .into_iter()
                .filter(|r| r.agent_id == to && (r.task_id == Some(task_id) || r.claim_key.as_deref() == Some(claim.claim_key.as_str())))
                .collect();
            Ok((claim, moved))
        })
    }

    /// A posted task's DAG fields must be sound: known dependencies, no
    /// cycle, valid patterns.
    pub fn check_task_spec(&self, spec: &TaskSpec) -> Result<()> {
        let rules = self.path_rules();
        for p in &spec.paths {
            rules.pattern(p)?;
        }
        if spec.depends_on.is_empty() {
            return Ok(());
        }
        self.read(|c, _| {
            for d in &spec.depends_on {
                let exists = c
                    .one("SELECT 1 FROM tasks WHERE task_id = ?1", [d], |_| Ok(()))
                    .optional()?
                    .is_some();
                if !exists {
                    return Err(Error::invalid(format!(
                        "metadata.depends_on names an unknown task: {d}"
                    )));
                }
            }
            Ok(())
        })
    }
}
