use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Control<T> {
    Elem(T),
    Unblock,
}

pub struct MessagesQueue<T>
where
    T: Send,
{
    queue: Mutex<VecDeque<Control<T>>>,
    condvar: Condvar,
    // set by `close` (an addition of this copy): pushes are refused
    closed: std::sync::atomic::AtomicBool,
}

impl<T> MessagesQueue<T>
where
    T: Send,
{
    pub fn with_capacity(capacity: usize) -> Arc<MessagesQueue<T>> {
        Arc::new(MessagesQueue {
            queue: Mutex::new(VecDeque::with_capacity(capacity)),
            condvar: Condvar::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Pushes an element to the queue.
    /// Pushes an element; gives it back once the queue is closed.
    pub fn push(&self, value: T) -> Result<(), T> {
        let mut queue = lock(&self.queue);
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(value);
        }
        queue.push_back(Control::Elem(value));
        self.condvar.notify_one();
        Ok(())
    }

    /// Refuses every later push and returns the elements still queued
    /// (atomically: an element is either returned here or refused).
    pub fn close(&self) -> Vec<T> {
        let mut queue = lock(&self.queue);
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let items = queue
            .drain(..)
            .filter_map(|c| match c {
                Control::Elem(v) => Some(v),
                Control::Unblock => None,
            })
            .collect();
        self.condvar.notify_all();
        items
    }

    /// Unblock one thread stuck in pop loop.
    pub fn unblock(&self) {
        let mut queue = lock(&self.queue);
        queue.push_back(Control::Unblock);
        self.condvar.notify_one();
    }

    /// Pops an element. Blocks until one is available.
    /// Returns None in case unblock() was issued.
    pub fn pop(&self) -> Option<T> {
        let mut queue = lock(&self.queue);

        loop {
            match queue.pop_front() {
                Some(Control::Elem(value)) => return Some(value),
                Some(Control::Unblock) => return None,
                None => (),
            }

            queue = self.condvar.wait(queue).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Tries to pop an element without blocking.
    pub fn try_pop(&self) -> Option<T> {
        let mut queue = lock(&self.queue);
        match queue.pop_front() {
            Some(Control::Elem(value)) => Some(value),
            Some(Control::Unblock) | None => None,
        }
    }

    /// Tries to pop an element without blocking
    /// more than the specified timeout duration
    /// or unblock() was issued
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        let mut queue = lock(&self.queue);
        let mut duration = timeout;
        loop {
            match queue.pop_front() {
                Some(Control::Elem(value)) => return Some(value),
                Some(Control::Unblock) => return None,
                None => (),
            }
            let now = Instant::now();
            let (_queue, result) = self
                .condvar
                .wait_timeout(queue, duration)
                .unwrap_or_else(|p| p.into_inner());
            queue = _queue;
            let sleep_time = now.elapsed();
            duration = if duration > sleep_time {
                duration - sleep_time
            } else {
                Duration::from_millis(0)
            };
            if result.timed_out()
                || (duration.as_secs() == 0 && duration.subsec_nanos() < 1_000_000)
            {
                return None;
            }
        }
    }
}
