//! Tasks and their rollup, and RPC completion (docs/PROTOCOL.md, "Tasks,
//! RPC and rollup").

use super::Cached;
use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::Store;
use super::rows::task_row;
use super::schema::TASK_COLS;
use super::tx::Tx;
use crate::error::{Error, Result};
use crate::wire::Task;

impl Store {
    // ----- tasks ----------------------------------------------------------

    pub fn list_tasks(
        &self,
        parent_id: Option<i64>,
        status: Option<&str>,
        channel: Option<&str>,
        thread_id: Option<&str>,
    ) -> Result<Vec<Task>> {
        self.read(|c, _| {
            let mut sql = format!("SELECT {TASK_COLS} FROM tasks WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(p) = parent_id {
                sql.push_str(" AND parent_task_id = ?");
                args.push(p.into());
            }
            for (col, v) in [
                ("status", status),
                ("channel", channel),
                ("thread_id", thread_id),
            ] {
                if let Some(v) = v {
                    sql.push_str(&format!(" AND {col} = ?"));
                    args.push(v.to_string().into());
                }
            }
            sql.push_str(" ORDER BY task_id");
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), task_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// `POST /v1/tasks/{id}/complete`: returns the task and whether this
    /// call completed its parent. Rollup continues up the whole tree.
    pub fn complete_task(&self, task_id: i64) -> Result<(Task, bool)> {
        self.write(|t| {
            if t.task(task_id)?.is_none() {
                return Err(Error::not_found("task not found"));
            }
            t.tx.run(
                "UPDATE tasks SET status = 'done', completed_at = ?1 WHERE task_id = ?2 AND status = 'open'",
                params![t.now, task_id],
            )?;
            let parent_completed = t.rollup(task_id)?;
            t.release_tied(None, true)?;
            t.out.work = true;
            let task = t.task(task_id)?.ok_or_else(|| Error::not_found("task not found"))?;
            Ok((task, parent_completed))
        })
    }
}

impl Tx<'_> {
    pub(super) fn open_task_request(&self, id: i64) -> Result<bool> {
        Ok(self
            .tx
            .one(
                "SELECT 1 FROM messages m JOIN tasks t ON t.task_id = m.id WHERE m.id = ?1 AND m.kind = 'task_request' AND t.status = 'open'",
                [id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Completes ancestors whose children are all done, one notice per
    /// level. Returns whether the direct parent of `task_id` was completed.
    pub(super) fn rollup(&mut self, task_id: i64) -> Result<bool> {
        let mut child = task_id;
        let mut direct = false;
        for level in 0.. {
            let Some(parent_id) = self.task(child)?.and_then(|t| t.parent_task_id) else {
                break;
            };
            let Some(parent) = self.task(parent_id)? else {
                break;
            };
            if parent.status != "open" {
                break;
            }
            let (children, open): (i64, i64) = self.tx.one(
                "SELECT COUNT(*), COALESCE(SUM(status != 'done'), 0) FROM tasks WHERE parent_task_id = ?1",
                [parent_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if open > 0 {
                break;
            }
            let n = self.tx.run(
                "UPDATE tasks SET status = 'done', completed_at = ?1 WHERE task_id = ?2 AND status = 'open'",
                params![self.now, parent_id],
            )?;
            if n != 1 {
                break;
            }
            self.notice(
                &parent.channel,
                &format!("All {children} subtasks of task {parent_id} are complete."),
                json!({"auto_rollup": true, "parent_task_id": parent_id}),
                Some(parent_id),
                parent.thread_id.as_deref(),
            )?;
            if level == 0 {
                direct = true;
            }
            child = parent_id;
        }
        Ok(direct)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{FeedQuery, NewMessage};

    #[test]
    fn rollup_climbs_the_tree_once() {
        let (store, dir) = temp_store(120);
        let root = post(&store, "general", "task", "root");
        let mid = store
            .post_message(NewMessage {
                from_agent: "a".into(),
                channel: "general".into(),
                kind: "task".into(),
                body: "mid".into(),
                parent_task_id: Some(root.id),
                ..Default::default()
            })
            .unwrap();
        let leaf = store
            .post_message(NewMessage {
                from_agent: "a".into(),
                channel: "general".into(),
                kind: "task".into(),
                body: "leaf".into(),
                parent_task_id: Some(mid.id),
                ..Default::default()
            })
            .unwrap();
        let (task, parent_completed) = store.complete_task(leaf.id).unwrap();
        assert_eq!(task.status, "done");
        assert!(parent_completed);
        let tasks = store.list_tasks(None, Some("open"), None, None).unwrap();
        assert!(tasks.is_empty(), "{tasks:?}");
        let notices: Vec<_> = store
            .feed(
                &FeedQuery {
                    channel: Some("general".into()),
                    limit: 100,
                    ..Default::default()
                },
                None,
            )
            .unwrap()
            .into_iter()
            .filter(|m| m.kind == "notice")
            .map(|m| m.body)
            .collect();
        assert_eq!(
            notices,
            [
                format!("All 1 subtasks of task {} are complete.", mid.id),
                format!("All 1 subtasks of task {} are complete.", root.id)
            ]
        );
        // Completing again is idempotent and posts nothing new.
        let (_, again) = store.complete_task(leaf.id).unwrap();
        assert!(!again);
        std::fs::remove_dir_all(dir).ok();
    }
}
