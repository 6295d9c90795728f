//! The pending requests of agent directories, each taken from one listing
//! and claimed oldest first, so that a directory holding many requests is
//! listed once per batch, not once per claim. A listing reads at most
//! [`MAX_LISTED`] requests, and all the backlogs together hold at most
//! [`MAX_HELD`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

/// A claimable request file.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) name: String,
    pub(super) created_at: String,
    pub(super) mtime: SystemTime,
}

impl Pending {
    /// The serving order: the envelope's `created_at`, then modification
    /// time, then name.
    fn key(&self) -> (&str, SystemTime, &str) {
        (&self.created_at, self.mtime, &self.name)
    }
}

/// Requests read per listing of one agent directory. Order is oldest
/// first among those; a directory holding more is served in batches.
pub(super) const MAX_LISTED: usize = 512;

/// Requests held in all backlogs together; filling one beyond this drops
/// the others (they are listed again when their turn comes).
pub(super) const MAX_HELD: usize = 65_536;

/// While its backlog lasts, a directory that changed is listed again at
/// most this often (its new requests join the next batch).
pub(super) const RELIST_AFTER: Duration = Duration::from_millis(250);

/// One directory's backlog.
#[derive(Default)]
struct Backlog {
    queue: VecDeque<Pending>,
    /// The directory's modification time while the queue is known to be
    /// all there is: at the listing, then after each claim of ours.
    expect: Option<SystemTime>,
    listed: Option<Instant>,
}

/// The backlogs of all agent directories.
#[derive(Default)]
pub(super) struct Backlogs {
    by_agent: HashMap<String, Backlog>,
    held: usize,
}

impl Backlogs {
    /// True if `agent`'s next request may come from its backlog without
    /// listing the directory again: there is one, and the directory (now
    /// at `mtime`) has not changed since, or was listed only just now.
    pub(super) fn current(&self, agent: &str, mtime: SystemTime) -> bool {
        self.by_agent.get(agent).is_some_and(|b| {
            !b.queue.is_empty()
                && (b.expect == Some(mtime) || b.listed.is_some_and(|t| t.elapsed() < RELIST_AFTER))
        })
    }

    /// Replaces `agent`'s backlog with a fresh listing, taken when the
    /// directory's modification time was `mtime`.
    pub(super) fn fill(&mut self, agent: &str, mut pending: Vec<Pending>, mtime: SystemTime) {
        self.forget(agent);
        if self.held + pending.len() > MAX_HELD {
            self.by_agent.clear();
            self.held = 0;
        }
        pending.sort_by(|a, b| a.key().cmp(&b.key()));
        self.held += pending.len();
        self.by_agent.insert(
            agent.to_string(),
            Backlog {
                queue: pending.into(),
                expect: Some(mtime),
                listed: Some(Instant::now()),
            },
        );
    }

    /// The oldest request of `agent`'s backlog, taken out of it.
    pub(super) fn take(&mut self, agent: &str) -> Option<Pending> {
        let p = self.by_agent.get_mut(agent)?.queue.pop_front()?;
        self.held -= 1;
        Some(p)
    }

    /// Puts back a request that was taken but could not be claimed, as
    /// the next one.
    pub(super) fn put_back(&mut self, agent: &str, p: Pending) {
        if let Some(b) = self.by_agent.get_mut(agent) {
            b.queue.push_front(p);
            self.held += 1;
        }
    }

    /// Records one of our claims in `agent`'s directory: its modification
    /// time went from `before` to `after` because of it. If it was not as
    /// expected before, the change someone else made stays noticed.
    pub(super) fn claimed(&mut self, agent: &str, before: SystemTime, after: Option<SystemTime>) {
        if let Some(b) = self.by_agent.get_mut(agent) {
            if b.expect == Some(before) {
                b.expect = after;
            }
        }
    }

    /// True if `agent` has nothing left in its backlog.
    pub(super) fn is_empty(&self, agent: &str) -> bool {
        self.by_agent.get(agent).is_none_or(|b| b.queue.is_empty())
    }

    /// Drops `agent`'s backlog.
    pub(super) fn forget(&mut self, agent: &str) {
        if let Some(b) = self.by_agent.remove(agent) {
            self.held -= b.queue.len();
        }
    }

    /// Keeps only the backlogs of agents for which `keep` holds.
    pub(super) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.by_agent.retain(|n, _| keep(n));
        self.held = self.by_agent.values().map(|b| b.queue.len()).sum();
    }

    /// How many requests all backlogs hold.
    pub(super) fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, created_at: &str) -> Pending {
        Pending {
            name: name.into(),
            created_at: created_at.into(),
            mtime: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn claims_come_oldest_first_until_the_directory_changes() {
        let mut b = Backlogs::default();
        let m0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let m1 = m0 + Duration::from_secs(1);
        b.fill("a", vec![p("z", "2"), p("y", "1"), p("x", "2")], m0);
        assert_eq!(b.held(), 3);
        assert!(b.current("a", m0));
        assert_eq!(b.take("a").unwrap().name, "y");
        // Our own claim moved the mtime: still current.
        b.claimed("a", m0, Some(m1));
        assert!(b.current("a", m1));
        let x = b.take("a").unwrap();
        assert_eq!(x.name, "x");
        b.put_back("a", x);
        assert_eq!(b.held(), 2);
        // Someone else changed it (and it was listed long enough ago).
        b.by_agent.get_mut("a").unwrap().listed = None;
        assert!(!b.current("a", m1 + Duration::from_secs(1)));
        // A claim made while a foreign change is pending keeps it noticed.
        b.claimed(
            "a",
            m1 + Duration::from_secs(1),
            Some(m1 + Duration::from_secs(2)),
        );
        assert!(!b.current("a", m1 + Duration::from_secs(2)));
        b.forget("a");
        assert_eq!(b.held(), 0);
        assert!(b.is_empty("a"));
    }

    #[test]
    fn all_backlogs_together_stay_bounded() {
        let mut b = Backlogs::default();
        let m = SystemTime::UNIX_EPOCH;
        let many = |n: usize| (0..n).map(|i| p(&i.to_string(), "")).collect::<Vec<_>>();
        b.fill("a", many(MAX_HELD - 10), m);
        b.fill("b", many(5), m);
        assert_eq!(b.held(), MAX_HELD - 5);
        b.fill("c", many(20), m);
        assert_eq!(b.held(), 20);
        assert!(b.is_empty("a") && b.is_empty("b"));
        b.retain(|n| n != "c");
        assert_eq!(b.held(), 0);
    }
}
