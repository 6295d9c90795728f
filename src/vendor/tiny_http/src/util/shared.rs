//! State shared between a connection's thread and its requests (an
//! addition of this copy): the connection count, and the flag that stops
//! a connection from reading another request.

use std::io::{Read, Result as IoResult};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::body::Leftover;

/// Counts live connections; [`Counter::try_acquire`] hands out slots.
#[derive(Debug, Default)]
pub struct Counter(AtomicUsize);

impl Counter {
    /// A slot if fewer than `max` are taken; released when dropped.
    pub fn try_acquire(self: &Arc<Self>, max: usize) -> Option<Slot> {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One taken connection slot.
#[derive(Debug)]
pub struct Slot(Arc<Counter>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Bytes that request bodies held in memory may use, all connections
/// together.
#[derive(Debug)]
pub struct Budget {
    used: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: Mutex::new(0),
            freed: Condvar::new(),
            max,
        })
    }

    /// Takes `n` bytes, waiting until `deadline` for them to be free.
    /// A request larger than the whole budget gets it when nothing else
    /// holds any (so one maximal body always fits).
    pub fn acquire(self: &Arc<Self>, n: usize, deadline: Instant) -> Option<Share> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if *used == 0 || *used + n <= self.max {
                *used += n;
                return Some(Share {
                    budget: self.clone(),
                    n,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            used = self
                .freed
                .wait_timeout(used, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits until nothing is held, at most until `deadline`.
    pub fn wait_empty(&self, deadline: Instant) -> bool {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            used = self
                .freed
                .wait_timeout(used, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    #[cfg(test)]
    pub fn used(&self) -> usize {
        *self.used.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Bytes taken from a [`Budget`], given back when dropped.
#[derive(Debug)]
pub struct Share {
    budget: Arc<Budget>,
    n: usize,
}

impl Share {
    /// Grows the share by `more` bytes (waiting as in [`Budget::acquire`]).
    pub fn grow(&mut self, more: usize, deadline: Instant) -> bool {
        match self.budget.acquire(more, deadline) {
            Some(extra) => {
                self.n += extra.n;
                std::mem::forget(extra);
                true
            }
            None => false,
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|p| p.into_inner());
        *used = used.saturating_sub(self.n);
        drop(used);
        self.budget.freed.notify_all();
    }
}

/// Per-connection flags.
#[derive(Debug, Default)]
pub struct Shared {
    /// No further request may be read from this connection (its stream
    /// position is unknown, or a response said `Connection: close`).
    closing: AtomicBool,
    /// The connection is being wound down: reads go through again, so
    /// what the client still sends can be discarded.
    lingering: AtomicBool,
    /// The unread rest of the last request's body.
    leftover: Mutex<Option<Leftover>>,
}

impl Shared {
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Records the unread rest of a body for the connection thread.
    pub fn leave(&self, rest: Leftover) {
        *self.leftover.lock().unwrap_or_else(|p| p.into_inner()) = Some(rest);
    }

    pub fn take_leftover(&self) -> Option<Leftover> {
        self.leftover
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    pub fn start_linger(&self) {
        self.lingering.store(true, Ordering::SeqCst);
    }
}

/// A reader that reports end-of-stream once its connection is closing,
/// so bytes after an unread body are never parsed as a request.
pub struct Guarded<R> {
    inner: R,
    shared: Arc<Shared>,
}

impl<R> Guarded<R> {
    pub fn new(inner: R, shared: Arc<Shared>) -> Guarded<R> {
        Guarded { inner, shared }
    }
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.shared.is_closing() && !self.shared.lingering.load(Ordering::SeqCst) {
            return Ok(0);
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_released() {
        let c = Arc::new(Counter::default());
        let a = c.try_acquire(2).unwrap();
        let _b = c.try_acquire(2).unwrap();
        assert!(c.try_acquire(2).is_none());
        drop(a);
        assert_eq!(c.get(), 1);
        assert!(c.try_acquire(2).is_some());
    }

    #[test]
    fn the_body_budget_is_shared_and_given_back() {
        let b = Budget::new(100);
        let soon = Instant::now() + std::time::Duration::from_millis(20);
        let a = b.acquire(60, soon).unwrap();
        assert!(b.acquire(60, soon).is_none(), "over budget");
        let mut c = b.acquire(40, soon).unwrap();
        assert!(!c.grow(1, Instant::now()));
        drop(a);
        assert!(c.grow(50, soon));
        assert_eq!(b.used(), 90);
        drop(c);
        assert_eq!(b.used(), 0);
        // A body larger than the whole budget still fits alone.
        assert!(b.acquire(500, soon).is_some());
    }

    #[test]
    fn a_closing_connection_reads_nothing_until_it_lingers() {
        let shared = Arc::new(Shared::default());
        let mut r = Guarded::new(&b"GET / HTTP/1.1\r\n"[..], shared.clone());
        let mut buf = [0u8; 4];
        assert_eq!(r.read(&mut buf).unwrap(), 4);
        shared.close();
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        shared.start_linger();
        assert_eq!(r.read(&mut buf).unwrap(), 4);
    }
}
