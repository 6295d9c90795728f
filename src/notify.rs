/*!
Waking and waiting: the only module that parks a thread.

Every wait in the crate is [`wait_until`] (a condition variable, a
predicate, and one fixed deadline: a wake-up never restarts the clock),
or, where no event can end it, [`poll_until`] and [`pause`], each call
of which states why it polls. [`lock`] is the crate's one mutex helper.

* [`Notifier`] is a registry of subscriptions keyed by what a waiter cares
  about (a channel, a thread, a DM recipient, or "any broadcast"). When a
  message commits, the store's commit hook calls [`Notifier::notify_posted`],
  which bumps a counter in each matching subscription and signals its
  condvar. Waiters then re-run their full query; a spurious wake costs one
  query, a missed one is impossible because a waiter subscribes *before*
  it first queries and compares counters, not flags.
* [`Alarm`] is a cancellable sleep for timers (expiry, shutdown, relay and
  watcher intervals).
* [`Watch`] is a value whose changes wake waiters (the parked count,
  `arc mcp`'s flags); [`Latch`] a one-way stop signal.
* [`Budget`] shares a byte budget among threads (event streams, parsed
  bodies); [`Pool`] runs parked requests on small-stack threads, fed by
  a [`Queue`].

Nothing here touches SQLite or HTTP, and no lock in this module is held
while calling out of it.
*/

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::wire::Message;

/// What a waiter is interested in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// Any message without a recipient.
    Broadcast,
    /// Broadcast messages in one channel.
    Channel(String),
    /// Broadcast messages in one thread.
    Thread(String),
    /// Direct messages to one agent.
    Recipient(String),
    /// A newer hook waiter of one agent took over (docs/WAKE.md).
    Waiter(String),
    /// Tasks or claims changed, so a task may have become ready.
    Tasks,
}

/// The routing facts of an inserted message, for waking waiters.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub id: i64,
    pub channel: String,
    pub to_agent: Option<String>,
    pub thread_id: Option<String>,
}

impl Posted {
    pub fn of(m: &Message) -> Posted {
        Posted {
            id: m.id,
            channel: m.channel.clone(),
            to_agent: m.to_agent.clone(),
            thread_id: m.thread_id.clone(),
        }
    }
}

impl Key {
    /// The keys a committed message wakes.
    pub fn of(p: &Posted) -> Vec<Key> {
        match &p.to_agent {
            Some(to) => vec![Key::Recipient(to.clone())],
            None => {
                let mut keys = vec![Key::Broadcast, Key::Channel(p.channel.clone())];
                if let Some(t) = &p.thread_id {
                    keys.push(Key::Thread(t.clone()));
                }
                keys
            }
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Something matching may have committed; re-check.
    Signaled,
    /// The deadline passed.
    TimedOut,
    /// The hub is stopping; answer with what you have.
    Shutdown,
}

struct Cell {
    state: Mutex<CellState>,
    cv: Condvar,
}

#[derive(Default)]
struct CellState {
    seq: u64,
    closed: bool,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    cells: HashMap<u64, (Vec<Key>, Arc<Cell>)>,
    by_key: HashMap<Key, HashSet<u64>>,
}

/// The wake-up registry shared by every waiter in one hub.
#[derive(Default)]
pub struct Notifier {
    registry: Mutex<Registry>,
    /// Signalled when the first subscription appears (for the watcher).
    has_waiters: Condvar,
    shutdown: AtomicBool,
}

/// A registered interest. Dropping it unregisters.
pub struct Subscription {
    id: u64,
    cell: Arc<Cell>,
    notifier: Arc<Notifier>,
    seen: u64,
}

/// Locks `m`. A panic while it was held cannot leave the data half
/// written in this crate (every critical section either completes or
/// only reads), so a poisoned lock is taken over rather than propagated.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The one deadline wait: parks on `cv` (with `g` held by the caller)
/// until `done` holds for the guarded value or `deadline` passes (`None`:
/// no deadline). Returns the guard and whether `done` held.
pub fn wait_until<'a, T>(
    cv: &Condvar,
    mut g: MutexGuard<'a, T>,
    deadline: Option<Instant>,
    mut done: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    loop {
        if done(&mut g) {
            return (g, true);
        }
        g = match deadline {
            None => cv.wait(g).unwrap_or_else(|p| p.into_inner()),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return (g, false);
                }
                cv.wait_timeout(g, d - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
    }
}

/// Checks `f` every `every` until it gives a value or `limit` passes,
/// for conditions that no event announces (another process starting or
/// exiting, a file another process writes). Always checks at least once.
pub fn poll_until<T>(
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        pause(every.min(deadline.saturating_duration_since(Instant::now())));
    }
}

impl Notifier {
    pub fn new() -> Arc<Notifier> {
        Arc::new(Notifier::default())
    }

    /// Registers interest in `keys`. Subscribe first, then query: anything
    /// that commits after this call is guaranteed to wake [`Subscription::wait`].
    pub fn subscribe(self: &Arc<Self>, keys: Vec<Key>) -> Subscription {
        // The flag is read under the registry lock, which `shutdown` also
        // holds while setting it: a cell is either born closed or is in
        // the set that `shutdown` closes.
        let mut reg = lock(&self.registry);
        let cell = Arc::new(Cell {
            state: Mutex::new(CellState {
                seq: 0,
                closed: self.shutdown.load(Ordering::SeqCst),
            }),
            cv: Condvar::new(),
        });
        let id = reg.next_id;
        reg.next_id += 1;
        for k in &keys {
            reg.by_key.entry(k.clone()).or_default().insert(id);
        }
        reg.cells.insert(id, (keys, cell.clone()));
        if reg.cells.len() == 1 {
            self.has_waiters.notify_all();
        }
        drop(reg);
        Subscription {
            id,
            cell,
            notifier: self.clone(),
            seen: 0,
        }
    }

    /// Wakes every subscription registered under any of `keys`.
    pub fn notify(&self, keys: &[Key]) {
        let cells: Vec<Arc<Cell>> = {
            let reg = lock(&self.registry);
            let mut ids = HashSet::new();
            for k in keys {
                if let Some(set) = reg.by_key.get(k) {
                    ids.extend(set.iter().copied());
                }
            }
            ids.iter()
                .filter_map(|id| reg.cells.get(id).map(|(_, c)| c.clone()))
                .collect()
        };
        for cell in cells {
            lock(&cell.state).seq += 1;
            cell.cv.notify_all();
        }
    }

    /// Wakes the waiters interested in these committed messages.
    pub fn notify_posted(&self, posted: &[Posted]) {
        if posted.is_empty() {
            return;
        }
        let mut keys: Vec<Key> = Vec::new();
        for p in posted {
            for k in Key::of(p) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        self.notify(&keys);
    }

    /// Wakes every waiter for good: the hub is stopping.
    pub fn shutdown(&self) {
        let cells: Vec<Arc<Cell>> = {
            let reg = lock(&self.registry);
            self.shutdown.store(true, Ordering::SeqCst);
            reg.cells.values().map(|(_, c)| c.clone()).collect()
        };
        for cell in cells {
            lock(&cell.state).closed = true;
            cell.cv.notify_all();
        }
        self.has_waiters.notify_all();
    }

    pub fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Number of live subscriptions.
    pub fn waiter_count(&self) -> usize {
        lock(&self.registry).cells.len()
    }

    /// Parks until at least one subscription exists or the hub stops.
    pub fn wait_for_waiters(&self) {
        let reg = lock(&self.registry);
        let _ = wait_until(&self.has_waiters, reg, None, |r| {
            !r.cells.is_empty() || self.is_shutdown()
        });
    }
}

impl Subscription {
    /// Parks until a matching commit, the deadline, or shutdown. Signals
    /// that arrived since the previous call (or since subscribing) return
    /// at once, so nothing that commits between a query and this call is lost.
    pub fn wait(&mut self, deadline: Instant) -> Wake {
        let seen = self.seen;
        let st = lock(&self.cell.state);
        let (st, _) = wait_until(&self.cell.cv, st, Some(deadline), |st| {
            st.closed || st.seq != seen
        });
        if st.closed {
            return Wake::Shutdown;
        }
        if st.seq != seen {
            self.seen = st.seq;
            return Wake::Signaled;
        }
        Wake::TimedOut
    }

    /// True once the hub has started stopping.
    pub fn is_shutdown(&self) -> bool {
        lock(&self.cell.state).closed
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut reg = lock(&self.notifier.registry);
        if let Some((keys, _)) = reg.cells.remove(&self.id) {
            for k in keys {
                if let Some(set) = reg.by_key.get_mut(&k) {
                    set.remove(&self.id);
                    if set.is_empty() {
                        reg.by_key.remove(&k);
                    }
                }
            }
        }
    }
}

/// A cancellable sleep: [`Alarm::sleep_until`] returns early when rung.
#[derive(Default)]
pub struct Alarm {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Alarm {
    pub fn new() -> Arc<Alarm> {
        Arc::new(Alarm::default())
    }

    /// Sleeps until `deadline`; returns true if rung (and resets the bell).
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        let (mut rung, was) = wait_until(&self.cv, lock(&self.rung), Some(deadline), |r| *r);
        *rung = false;
        was
    }

    /// Sleeps for `d`; returns true if rung.
    pub fn sleep(&self, d: Duration) -> bool {
        self.sleep_until(Instant::now() + d)
    }

    /// Wakes the sleeper (or the next one, if none sleeps now).
    pub fn ring(&self) {
        *lock(&self.rung) = true;
        self.cv.notify_all();
    }
}

/// A one-way flag that any number of threads can wait on (the stop signal).
/// Unlike [`Alarm`], setting it wakes every waiter and it stays set.
#[derive(Default)]
pub struct Latch {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Latch {
    pub fn new() -> Arc<Latch> {
        Arc::new(Latch::default())
    }

    /// Sets the latch and wakes every waiter.
    pub fn set(&self) {
        *lock(&self.set) = true;
        self.cv.notify_all();
    }

    pub fn is_set(&self) -> bool {
        *lock(&self.set)
    }

    /// Waits up to `d`; returns true once the latch is set.
    pub fn wait_for(&self, d: Duration) -> bool {
        let deadline = Instant::now().checked_add(d);
        wait_until(&self.cv, lock(&self.set), deadline, |set| *set).1
    }
}

/// A value guarded by a mutex whose changes wake waiters: the building
/// block for small state machines (such as `arc mcp`'s stop and
/// subscription flags) that must park until some condition holds.
pub struct Watch<T> {
    state: Mutex<T>,
    cv: Condvar,
}

impl<T> Watch<T> {
    pub fn new(value: T) -> Watch<T> {
        Watch {
            state: Mutex::new(value),
            cv: Condvar::new(),
        }
    }

    /// Reads or changes the value without waking anyone.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        lock(&self.state)
    }

    /// Changes the value and wakes every waiter.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let r = f(&mut lock(&self.state));
        self.cv.notify_all();
        r
    }

    /// Parks until `done` holds or `deadline` (if any) passes, and returns
    /// the guard so the caller can act on the state it saw.
    pub fn wait_until(
        &self,
        deadline: Option<Instant>,
        mut done: impl FnMut(&T) -> bool,
    ) -> MutexGuard<'_, T> {
        wait_until(&self.cv, lock(&self.state), deadline, |v| done(v)).0
    }
}

/// A blocking multi-producer, multi-consumer queue that can be closed.
pub struct Queue<T> {
    items: Mutex<(VecDeque<T>, bool)>,
    cv: Condvar,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            items: Mutex::new((VecDeque::new(), false)),
            cv: Condvar::new(),
        }
    }
}

impl<T> Queue<T> {
    /// Adds an item; returns it back if the queue is closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        let mut g = lock(&self.items);
        if g.1 {
            return Err(item);
        }
        g.0.push_back(item);
        drop(g);
        self.cv.notify_one();
        Ok(())
    }

    /// Takes the next item, parking while empty; `None` once closed and drained.
    pub fn pop(&self) -> Option<T> {
        self.pop_until(None)
    }

    /// [`Queue::pop`] that gives up after `d` (returns `None`).
    pub fn pop_timeout(&self, d: Duration) -> Option<T> {
        self.pop_until(Instant::now().checked_add(d))
    }

    fn pop_until(&self, deadline: Option<Instant>) -> Option<T> {
        let g = lock(&self.items);
        let (mut g, _) = wait_until(&self.cv, g, deadline, |(items, closed)| {
            !items.is_empty() || *closed
        });
        g.0.pop_front()
    }

    /// Refuses new items and wakes every consumer once the queue drains.
    pub fn close(&self) {
        lock(&self.items).1 = true;
        self.cv.notify_all();
    }

    pub fn len(&self) -> usize {
        lock(&self.items).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bytes shared by many threads (for example, what all event streams
/// may hold in memory at once): [`Budget::acquire`] parks until enough is
/// free or a deadline passes.
pub struct Budget {
    used: Mutex<usize>,
    cv: Condvar,
    max: usize,
}

/// Bytes taken from a [`Budget`], given back when dropped.
pub struct Grant {
    budget: Arc<Budget>,
    n: usize,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: Mutex::new(0),
            cv: Condvar::new(),
            max,
        })
    }

    /// Takes `n` bytes, parking until `deadline` for them to be free. A
    /// request larger than the whole budget is granted when nothing else
    /// is held, so it cannot starve.
    pub fn acquire(self: &Arc<Self>, n: usize, deadline: Instant) -> Option<Grant> {
        let max = self.max;
        let used = lock(&self.used);
        let (mut used, fits) =
            wait_until(&self.cv, used, Some(deadline), |u| *u == 0 || *u + n <= max);
        if !fits {
            return None;
        }
        *used += n;
        Some(Grant {
            budget: self.clone(),
            n,
        })
    }

    /// Bytes held right now.
    pub fn used(&self) -> usize {
        *lock(&self.used)
    }
}

impl Grant {
    /// How many bytes this grant holds.
    pub fn size(&self) -> usize {
        self.n
    }

    /// Grows the grant to `n` bytes (parking as [`Budget::acquire`] does).
    pub fn grow_to(&mut self, n: usize, deadline: Instant) -> bool {
        if n <= self.n {
            return true;
        }
        match self.budget.acquire(n - self.n, deadline) {
            Some(extra) => {
                self.n += extra.n;
                std::mem::forget(extra);
                true
            }
            None => false,
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        let mut used = lock(&self.budget.used);
        *used = used.saturating_sub(self.n);
        drop(used);
        self.budget.cv.notify_all();
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// An elastic pool of small-stack threads for work that blocks for long
/// (parked long-polls, SSE streams). A job never waits for a busy thread:
/// it goes to an idle thread if one can be claimed, otherwise a new thread
/// starts. Idle threads retire after `idle_for`. Reusing threads keeps
/// thread creation and stack unmapping off the wake-up path.
pub struct Pool {
    name: &'static str,
    stack: usize,
    idle_for: Duration,
    jobs: Queue<Job>,
    idle: std::sync::atomic::AtomicUsize,
    live: std::sync::atomic::AtomicUsize,
}

impl Pool {
    pub fn new(name: &'static str, stack: usize, idle_for: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            name,
            stack,
            idle_for,
            jobs: Queue::default(),
            idle: Default::default(),
            live: Default::default(),
        })
    }

    /// Runs `job` on a pool thread, starting one if none is idle.
    pub fn run(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let claimed = self
            .idle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if claimed {
            if let Err(job) = self.jobs.push(Box::new(job)) {
                // The pool is closed: run on a fresh thread instead.
                return self.spawn(job);
            }
            return Ok(());
        }
        self.spawn(Box::new(job))
    }

    fn spawn(self: &Arc<Self>, job: Job) -> std::io::Result<()> {
        let pool = self.clone();
        self.live.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name(self.name.to_string())
            .stack_size(self.stack)
            .spawn(move || pool.work(job));
        if spawned.is_err() {
            self.live.fetch_sub(1, Ordering::SeqCst);
        }
        spawned.map(|_| ())
    }

    fn work(&self, first: Job) {
        let mut job = first;
        loop {
            job();
            self.idle.fetch_add(1, Ordering::SeqCst);
            job = loop {
                if let Some(next) = self.jobs.pop_timeout(self.idle_for) {
                    break next;
                }
                // Retire unless a submitter has just claimed this thread.
                let retired = self
                    .idle
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if retired {
                    self.live.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
            };
        }
    }

    /// Threads currently alive (busy or idle).
    pub fn threads(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

/// Sleeps the current thread; the one plain sleep in the crate. Only for
/// bounded back-offs and [`poll_until`], where no event can end the wait
/// early; every caller says why.
pub fn pause(d: Duration) {
    std::thread::sleep(d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_wakes_a_waiter_on_update_and_honours_deadlines() {
        let w = Arc::new(Watch::new(0u32));
        let t = {
            let w = w.clone();
            std::thread::spawn(move || *w.wait_until(None, |v| *v >= 2))
        };
        w.update(|v| *v = 1);
        w.update(|v| *v = 2);
        assert_eq!(t.join().unwrap(), 2);
        let start = Instant::now();
        let g = w.wait_until(Some(start + Duration::from_millis(50)), |v| *v > 9);
        assert_eq!(*g, 2);
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    fn posted(channel: &str, to: Option<&str>, thread: Option<&str>) -> Posted {
        Posted {
            id: 1,
            channel: channel.into(),
            to_agent: to.map(Into::into),
            thread_id: thread.map(Into::into),
        }
    }

    #[test]
    fn matching_commit_wakes_and_other_channels_do_not() {
        let n = Notifier::new();
        let mut sub = n.subscribe(vec![Key::Channel("a".into())]);
        n.notify_posted(&[posted("b", None, None)]);
        assert_eq!(
            sub.wait(Instant::now() + Duration::from_millis(20)),
            Wake::TimedOut
        );
        n.notify_posted(&[posted("a", None, None)]);
        assert_eq!(
            sub.wait(Instant::now() + Duration::from_secs(5)),
            Wake::Signaled
        );
    }

    #[test]
    fn signal_before_wait_is_not_lost() {
        let n = Notifier::new();
        let mut sub = n.subscribe(vec![Key::Broadcast]);
        n.notify(&[Key::Broadcast]);
        let start = Instant::now();
        assert_eq!(sub.wait(start + Duration::from_secs(5)), Wake::Signaled);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn dm_wakes_only_its_recipient() {
        let n = Notifier::new();
        let mut bob = n.subscribe(vec![Key::Broadcast, Key::Recipient("bob".into())]);
        let mut eve = n.subscribe(vec![Key::Broadcast, Key::Recipient("eve".into())]);
        n.notify_posted(&[posted("direct", Some("bob"), None)]);
        assert_eq!(
            bob.wait(Instant::now() + Duration::from_secs(5)),
            Wake::Signaled
        );
        assert_eq!(
            eve.wait(Instant::now() + Duration::from_millis(20)),
            Wake::TimedOut
        );
    }

    #[test]
    fn wakes_across_threads_and_shutdown_releases_everyone() {
        let n = Notifier::new();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let mut sub = n.subscribe(vec![Key::Thread("t".into())]);
                std::thread::spawn(move || sub.wait(Instant::now() + Duration::from_secs(30)))
            })
            .collect();
        n.notify_posted(&[posted("general", None, Some("t"))]);
        for h in handles {
            assert_eq!(h.join().unwrap(), Wake::Signaled);
        }
        let mut sub = n.subscribe(vec![Key::Broadcast]);
        let h = std::thread::spawn(move || sub.wait(Instant::now() + Duration::from_secs(30)));
        n.shutdown();
        assert_eq!(h.join().unwrap(), Wake::Shutdown);
        assert_eq!(n.waiter_count(), 0);
    }

    #[test]
    fn unsubscribe_on_drop() {
        let n = Notifier::new();
        {
            let _a = n.subscribe(vec![Key::Broadcast, Key::Channel("x".into())]);
            assert_eq!(n.waiter_count(), 1);
        }
        assert_eq!(n.waiter_count(), 0);
        assert!(lock(&n.registry).by_key.is_empty());
    }

    #[test]
    fn alarm_rings_early_and_times_out() {
        let a = Alarm::new();
        assert!(!a.sleep(Duration::from_millis(10)));
        let a2 = a.clone();
        let h = std::thread::spawn(move || a2.sleep(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        a.ring();
        assert!(h.join().unwrap());
    }

    #[test]
    fn latch_wakes_every_waiter_and_stays_set() {
        let l = Latch::new();
        assert!(!l.wait_for(Duration::from_millis(5)));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || l.wait_for(Duration::from_secs(30)))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        l.set();
        for w in waiters {
            assert!(w.join().unwrap());
        }
        assert!(l.wait_for(Duration::ZERO));
    }

    #[test]
    fn pool_reuses_idle_threads_and_never_queues_behind_busy_ones() {
        let pool = Pool::new("t", 64 * 1024, Duration::from_secs(30));
        let gate = Latch::new();
        let (tx, rx) = std::sync::mpsc::channel();
        // Two blocking jobs run at once: the second never waits for the first.
        for i in 0..2 {
            let (gate, tx) = (gate.clone(), tx.clone());
            pool.run(move || {
                tx.send(i).unwrap();
                gate.wait_for(Duration::from_secs(30));
            })
            .unwrap();
        }
        let mut got = vec![
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        ];
        got.sort();
        assert_eq!(got, [0, 1]);
        assert_eq!(pool.threads(), 2);
        gate.set();
        // Once idle, the threads are reused rather than new ones started.
        for _ in 0..100 {
            if pool.idle.load(Ordering::SeqCst) == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for i in 0..2 {
            let tx = tx.clone();
            pool.run(move || tx.send(10 + i).unwrap()).unwrap();
        }
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(pool.threads(), 2);
    }

    #[test]
    fn idle_pool_threads_retire() {
        let pool = Pool::new("t", 64 * 1024, Duration::from_millis(20));
        pool.run(|| {}).unwrap();
        for _ in 0..200 {
            if pool.threads() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(pool.threads(), 0);
    }

    #[test]
    fn a_budget_parks_until_bytes_are_given_back() {
        let b = Budget::new(100);
        let soon = || Instant::now() + Duration::from_millis(20);
        let a = b.acquire(70, soon()).unwrap();
        assert!(b.acquire(40, soon()).is_none(), "over budget");
        let b2 = b.clone();
        let t = std::thread::spawn(move || {
            b2.acquire(40, Instant::now() + Duration::from_secs(10))
                .map(|g| g.size())
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(a);
        assert_eq!(t.join().unwrap(), Some(40));
        assert_eq!(b.used(), 0);
        let mut g = b.acquire(10, soon()).unwrap();
        assert!(g.grow_to(90, soon()));
        assert_eq!(b.used(), 90);
        // One request larger than the whole budget fits when alone.
        drop(g);
        assert!(b.acquire(1000, soon()).is_some());
    }

    #[test]
    fn queue_drains_then_closes() {
        let q: Arc<Queue<u32>> = Arc::new(Queue::default());
        q.push(1).unwrap();
        q.close();
        assert_eq!(q.push(2), Err(2));
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.pop(), None);
    }
}
