/*!
The in-memory tail of recent messages, so woken waiters can answer
without taking the connection mutex, and one [`Page`] of answers.

Invariants (each kept by a test in this file):

* The tail is *complete*: every message with an id in `(from, last id]`
  is in `msgs`, in id order. A batch that does not continue the tail
  (another process wrote in between, or two of our commits reported out
  of order) restarts it; a query the tail cannot answer completely
  (`since < from`) goes to SQL.
* It holds only rows that can no longer change: a `task_result` another
  process wrote may still get `metadata.task_completed` stamped in a later
  commit, so such a row restarts the tail after it.
* It is bounded by count and by bytes (every field counted).
* A commit reaches the tail before the commit hook wakes anyone, so a
  waiter woken for a message always finds it, here or in the database.
*/

use std::sync::{Mutex, MutexGuard};

use crate::wire::Message;

/// The newest messages, kept in memory so woken waiters can answer
/// without taking the connection mutex. The tail is *complete*: every
/// message with an id in `(from, last id]` is in `msgs`, in order. A batch
/// that does not continue the tail (another process wrote in between, or
/// two of our commits reported out of order) restarts it; queries the
/// tail cannot answer completely fall back to SQL.
#[derive(Debug, Default)]
pub(super) struct Recent {
    pub(super) from: i64,
    pub(super) msgs: std::collections::VecDeque<Message>,
    /// `approx_size` of each message in `msgs`, computed once.
    sizes: std::collections::VecDeque<usize>,
    pub(super) bytes: usize,
}

/// Most message data one page carries (an answer to `GET /v1/messages`,
/// `/v1/events`, `/v1/inbox` or one SSE batch): pages are cut at
/// `limit` messages or at about this many bytes, whichever comes first,
/// and always hold at least one message (docs/PROTOCOL.md, "Pages").
pub const PAGE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Bounds of the in-memory tail.
const RECENT_MAX_MSGS: usize = 4096;
const RECENT_MAX_BYTES: usize = 16 * 1024 * 1024;

impl Recent {
    /// An empty tail that covers everything after `from`.
    pub(super) fn after_id(from: i64) -> Recent {
        Recent {
            from,
            ..Recent::default()
        }
    }

    pub(super) fn last_id(&self) -> i64 {
        self.msgs.back().map(|m| m.id).unwrap_or(self.from)
    }

    /// Adds a committed batch (ids ascending, contiguous within the batch).
    pub(super) fn extend(&mut self, batch: &[Message]) {
        let fresh: Vec<&Message> = batch.iter().filter(|m| m.id > self.last_id()).collect();
        let Some(first) = fresh.first() else { return };
        let contiguous = fresh.windows(2).all(|w| w[1].id == w[0].id + 1);
        if !contiguous {
            *self = Recent {
                from: fresh.last().map(|m| m.id).unwrap_or(0),
                ..Recent::default()
            };
            return;
        }
        if first.id != self.last_id() + 1 {
            *self = Recent {
                from: first.id - 1,
                ..Recent::default()
            };
        }
        for m in fresh {
            let size = approx_size(m);
            self.bytes += size;
            self.sizes.push_back(size);
            self.msgs.push_back(m.clone());
        }
        while self.msgs.len() > RECENT_MAX_MSGS || self.bytes > RECENT_MAX_BYTES {
            match self.msgs.pop_front() {
                Some(old) => {
                    self.bytes -= self.sizes.pop_front().unwrap_or(0);
                    self.from = old.id;
                }
                None => break,
            }
        }
    }

    /// Adds rows read back from the database (other processes' commits):
    /// like [`Recent::extend`], except that the tail restarts after any row
    /// that may still change, so reads that include it go to SQL.
    pub(super) fn extend_foreign(&mut self, batch: &[Message]) {
        let mut rest = batch;
        while let Some(i) = rest.iter().position(may_still_change) {
            self.extend(&rest[..i]);
            if rest[i].id > self.last_id() {
                *self = Recent {
                    from: rest[i].id,
                    ..Recent::default()
                };
            }
            rest = &rest[i + 1..];
        }
        self.extend(rest);
    }

    /// Messages after `since` matching `keep` (one page: at most `limit`
    /// and about [`PAGE_MAX_BYTES`]), if the tail covers `since`.
    pub(super) fn after(
        &self,
        since: i64,
        mut page: Page,
        keep: impl Fn(&Message) -> bool,
    ) -> Option<Page> {
        if since < self.from {
            return None;
        }
        let start = self.msgs.partition_point(|m| m.id <= since);
        for (m, size) in self.msgs.range(start..).zip(self.sizes.range(start..)) {
            if keep(m) && !page.push(m.clone(), *size) {
                break;
            }
        }
        Some(page)
    }
}

/// A page of messages being filled: stops at `limit` rows or once the
/// next row would pass [`PAGE_MAX_BYTES`] (never before the first row).
pub(super) struct Page {
    pub(super) rows: Vec<Message>,
    pub(super) limit: usize,
    bytes: usize,
    max_bytes: usize,
    strict: bool,
    pub(super) blocked_by: Option<usize>,
}

impl Page {
    pub(super) fn new(limit: i64, max_bytes: usize) -> Page {
        Page {
            rows: Vec::new(),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            bytes: 0,
            max_bytes,
            strict: false,
            blocked_by: None,
        }
    }

    pub(super) fn strict(mut self, on: bool) -> Page {
        self.strict = on;
        self
    }

    /// True if a message of `size` bytes fits (checked before the message
    /// is even built); false once the page is full.
    pub(super) fn fits(&mut self, size: usize) -> bool {
        if self.rows.len() >= self.limit {
            return false;
        }
        if self.bytes + size <= self.max_bytes {
            return true;
        }
        if self.rows.is_empty() {
            if self.strict {
                self.blocked_by = Some(size);
                return false;
            }
            return true;
        }
        false
    }

    /// Adds `m` if it fits; false once the page is full (and `m` was not
    /// added).
    pub(super) fn push(&mut self, m: Message, size: usize) -> bool {
        if !self.fits(size) {
            return false;
        }
        self.bytes += size;
        self.rows.push(m);
        true
    }
}

/// Roughly the bytes a message holds: every string field, attachments
/// and metadata (each may be megabytes), plus a fixed overhead.
pub(super) fn approx_size(m: &Message) -> usize {
    256 + m.ts.len()
        + m.from_agent.len()
        + m.to_agent.as_ref().map_or(0, String::len)
        + m.channel.len()
        + m.kind.len()
        + m.body.len()
        + m.thread_id.as_ref().map_or(0, String::len)
        + m.attachments
            .iter()
            .map(|a| a.to_string().len())
            .sum::<usize>()
        + m.metadata.to_string().len()
}

/// True for a row another hub process may still rewrite: the Python
/// reference inserts a `task_result` and only in a later commit stamps
/// `metadata.task_completed` into it. Such a row must not be cached.
fn may_still_change(m: &Message) -> bool {
    m.kind == "task_result" && m.reply_to.is_some() && m.metadata.get("task_completed").is_none()
}

pub(super) fn lock_recent(m: &Mutex<Recent>) -> MutexGuard<'_, Recent> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: i64, to: Option<&str>) -> Message {
        Message {
            id,
            to_agent: to.map(Into::into),
            channel: "general".into(),
            ..Message::default()
        }
    }

    #[test]
    fn recent_tail_is_complete_or_declines() {
        let mut r = Recent {
            from: 10,
            ..Recent::default()
        };
        r.extend(&[m(11, None), m(12, Some("bob"))]);
        assert_eq!(
            r.after(10, Page::new(100, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            r.after(11, Page::new(100, PAGE_MAX_BYTES), |x| x.to_agent.is_none())
                .map(|p| p.rows)
                .unwrap()
                .len(),
            0
        );
        assert!(
            r.after(9, Page::new(100, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .is_none(),
            "before the tail: use SQL"
        );
        // A gap (id 13 written by someone else) restarts the tail after it.
        r.extend(&[m(14, None)]);
        assert!(
            r.after(12, Page::new(100, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .is_none()
        );
        assert_eq!(
            r.after(13, Page::new(100, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .unwrap()
                .len(),
            1
        );
        // Late, already covered or older batches are ignored.
        r.extend(&[m(13, None), m(14, None)]);
        assert!(
            r.after(12, Page::new(100, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .is_none()
        );
        r.extend(&[m(15, None), m(16, None)]);
        assert_eq!(
            r.after(13, Page::new(2, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .unwrap()
                .iter()
                .map(|x| x.id)
                .collect::<Vec<_>>(),
            [14, 15]
        );
    }

    #[test]
    fn recent_tail_is_bounded() {
        let mut r = Recent {
            from: 0,
            ..Recent::default()
        };
        let batch: Vec<Message> = (1..=(RECENT_MAX_MSGS as i64 + 10))
            .map(|i| m(i, None))
            .collect();
        r.extend(&batch);
        assert_eq!(r.msgs.len(), RECENT_MAX_MSGS);
        assert_eq!(r.from, 10);
        assert!(
            r.after(5, Page::new(10, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .is_none()
        );
    }

    #[test]
    fn the_tail_counts_metadata_and_long_fields_against_its_byte_cap() {
        // Regression: only body and attachments were counted, so 4 MB
        // metadata blobs were kept 4096 at a time.
        let mut r = Recent::default();
        let blob = "A".repeat(1 << 20);
        let batch: Vec<Message> = (1..=64)
            .map(|i| Message {
                metadata: serde_json::json!({ "blob": blob }),
                thread_id: Some("t".repeat(1000)),
                ..m(i, None)
            })
            .collect();
        r.extend(&batch);
        assert!(r.bytes <= RECENT_MAX_BYTES, "{}", r.bytes);
        assert!(r.msgs.len() <= 16, "{} messages kept", r.msgs.len());
    }

    #[test]
    fn foreign_rows_that_may_still_change_are_not_cached() {
        // The Python hub inserts a task_result and stamps task_completed
        // into it in a later commit: reads spanning it must use SQL.
        let mut r = Recent {
            from: 10,
            ..Recent::default()
        };
        let pending_result = Message {
            kind: "task_result".into(),
            reply_to: Some(5),
            ..m(12, None)
        };
        r.extend_foreign(&[m(11, None), pending_result, m(13, None)]);
        assert!(
            r.after(11, Page::new(10, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .is_none(),
            "12 must come from SQL"
        );
        assert_eq!(
            r.after(12, Page::new(10, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .unwrap()
                .len(),
            1
        );
        let done = Message {
            kind: "task_result".into(),
            reply_to: Some(5),
            metadata: serde_json::json!({"task_completed": 5}),
            ..m(14, None)
        };
        r.extend_foreign(&[done]);
        assert_eq!(
            r.after(12, Page::new(10, PAGE_MAX_BYTES), |_| true)
                .map(|p| p.rows)
                .unwrap()
                .len(),
            2
        );
    }
}
