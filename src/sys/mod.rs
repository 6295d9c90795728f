/*!
Platform glue: termination signals, process checks, detached spawning,
descriptor limits, process identity and directory change events, plus
[`dir`] (spool directories that are never left through a symlink),
[`memory`] (giving freed heap back after large requests) and
[`file`] (small files read without following links, blocking or limit).
Everything `unsafe` or `cfg`-split in the crate lives in this module and
its children, behind safe functions.

On Unix this uses `libc`; on Windows it declares the handful of kernel32
functions it needs directly, so no Windows binding crate is pulled in.
*/

pub mod dir;
pub mod file;
pub mod memory;

use std::process::Command;
use std::time::Duration;

/// How many client connections this process can hold open: each costs
/// two descriptors (its read and write halves), and some are kept for the
/// database, the relay and the log. Unbounded where descriptors are not
/// limited this way (Windows).
pub fn connection_budget() -> usize {
    #[cfg(unix)]
    // SAFETY: plain getrlimit on a stack value.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            let soft = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
            return (soft.saturating_sub(256) / 2).max(16);
        }
        usize::MAX
    }
    #[cfg(not(unix))]
    usize::MAX
}

/// Lets up to `backlog` connections wait to be accepted (the kernel caps
/// it at its own `somaxconn`). On Unix, `listen` on a listening socket
/// only changes its queue length; elsewhere the standard library's queue
/// stays.
pub fn widen_backlog(listener: &std::net::TcpListener, backlog: i32) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: listen on a descriptor the listener owns, kept open by
        // the borrow for the duration of the call.
        unsafe {
            libc::listen(listener.as_raw_fd(), backlog);
        }
    }
    #[cfg(not(unix))]
    let _ = (listener, backlog);
}

/// Raises the soft open-file limit to the hard limit (Unix), since every
/// connection costs two descriptors.
pub fn raise_fd_limit() {
    #[cfg(unix)]
    // SAFETY: plain getrlimit/setrlimit on a stack value.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            #[cfg(target_os = "macos")]
            let want = lim.rlim_max.min(10_240);
            #[cfg(not(target_os = "macos"))]
            let want = lim.rlim_max;
            lim.rlim_cur = want;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(unix)]
mod term {
    use std::sync::atomic::{AtomicI32, Ordering};

    static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

    extern "C" fn on_signal(_sig: libc::c_int) {
        let fd = PIPE_WRITE.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: write(2) is async-signal-safe; the buffer is static.
            unsafe {
                libc::write(fd, b"x".as_ptr().cast(), 1);
            }
        }
    }

    pub fn install(f: Box<dyn Fn() + Send>) -> std::io::Result<()> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe/fcntl/sigaction with valid arguments; the handler only
        // touches an atomic and write(2).
        unsafe {
            if libc::pipe(fds.as_mut_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for fd in fds {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
            PIPE_WRITE.store(fds[1], Ordering::SeqCst);
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                if libc::sigaction(sig, &action, std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        let read_fd = fds[0];
        std::thread::Builder::new()
            .name("arc-signals".into())
            .spawn(move || {
                let mut buf = [0u8; 16];
                loop {
                    // SAFETY: reading into a stack buffer of the given length.
                    let n = unsafe { libc::read(read_fd, buf.as_mut_ptr().cast(), buf.len()) };
                    if n > 0 {
                        f();
                    } else if n < 0
                        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                    {
                        continue;
                    } else {
                        return;
                    }
                }
            })?;
        Ok(())
    }
}

#[cfg(windows)]
mod term {
    use std::sync::OnceLock;

    static HANDLER: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn SetConsoleCtrlHandler(
            handler: Option<unsafe extern "system" fn(u32) -> i32>,
            add: i32,
        ) -> i32;
    }

    unsafe extern "system" fn on_ctrl(kind: u32) -> i32 {
        // CTRL_C, CTRL_BREAK, CTRL_CLOSE, CTRL_LOGOFF, CTRL_SHUTDOWN
        if !matches!(kind, 0 | 1 | 2 | 5 | 6) {
            return 0;
        }
        if let Some(f) = HANDLER.get() {
            f();
        }
        // After Ctrl-C or Ctrl-Break the process lives on and stops by
        // itself. After close, logoff or shutdown Windows ends it as soon
        // as this returns (and at the latest about 5 s later), so wait
        // here for the graceful stop to report that it is done.
        if matches!(kind, 2 | 5 | 6) {
            // A console handler runs on a thread of its own that nothing
            // can wake, so the flag is polled.
            let stopped = || super::STOPPED.load(std::sync::atomic::Ordering::SeqCst);
            crate::notify::poll_until(
                std::time::Duration::from_millis(4500),
                std::time::Duration::from_millis(20),
                || stopped().then_some(()),
            );
        }
        1
    }

    pub fn install(f: Box<dyn Fn() + Send>) -> std::io::Result<()> {
        let f = std::sync::Mutex::new(f);
        let _ = HANDLER.set(Box::new(move || {
            if let Ok(g) = f.lock() {
                g();
            }
        }));
        // SAFETY: registering a handler with the documented signature.
        if unsafe { SetConsoleCtrlHandler(Some(on_ctrl), 1) } == 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Set once a graceful stop has finished (see [`mark_stopped`]).
static STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records that the graceful stop started by an [`on_terminate`] callback
/// has finished (database checkpointed, pidfile removed). On Windows the
/// console-close handler waits for this before letting the OS end us.
pub fn mark_stopped() {
    STOPPED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Calls `f` (on a helper thread) on SIGINT, SIGTERM or SIGHUP, or on
/// Ctrl-C, Ctrl-Break, console close or shutdown on Windows.
pub fn on_terminate(f: impl Fn() + Send + 'static) -> std::io::Result<()> {
    #[cfg(any(unix, windows))]
    {
        term::install(Box::new(f))
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = f;
        Ok(())
    }
}

#[cfg(windows)]
mod win {
    pub const PROCESS_TERMINATE: u32 = 0x0001;
    pub const PROCESS_QUERY_LIMITED_INFORMATION: u32 = 0x1000;
    pub const STILL_ACTIVE: u32 = 259;

    #[link(name = "kernel32")]
    unsafe extern "system" {
        pub fn OpenProcess(access: u32, inherit: i32, pid: u32) -> isize;
        pub fn CloseHandle(h: isize) -> i32;
        pub fn GetExitCodeProcess(h: isize, code: *mut u32) -> i32;
        pub fn TerminateProcess(h: isize, code: u32) -> i32;
    }
}

/// True if a process with this id exists.
pub fn pid_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: kill with signal 0 only checks for existence.
        let r = unsafe { libc::kill(pid, 0) };
        let exists = r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        // A zombie (exited, not yet reaped by its parent) still answers
        // kill(0) but holds no files or sockets any more: it is gone.
        exists && !is_zombie(pid)
    }
    #[cfg(windows)]
    // SAFETY: handle opened and closed here; out-pointer to a stack value.
    unsafe {
        let h = win::OpenProcess(win::PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
        if h == 0 {
            return false;
        }
        let mut code = 0u32;
        let ok = win::GetExitCodeProcess(h, &mut code) != 0;
        win::CloseHandle(h);
        ok && code == win::STILL_ACTIVE
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = pid;
        false
    }
}

/// True if `pid` is a zombie. Reads `/proc/<pid>/stat` where there is one
/// (Linux); elsewhere zombies cannot be told apart and count as alive.
#[cfg(unix)]
fn is_zombie(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // "<pid> (<comm>) <state> ...": comm may contain spaces and ')'.
            let after = &stat[stat.rfind(')')? + 1..];
            after.split_whitespace().next().map(|s| s == "Z")
        })
        .unwrap_or(false)
}

/// Asks a process to terminate (SIGTERM on Unix, TerminateProcess on Windows).
pub fn terminate(pid: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let pid = libc::pid_t::try_from(pid).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range")
        })?;
        // SAFETY: sending SIGTERM to a verified pid.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(windows)]
    // SAFETY: handle opened and closed here.
    unsafe {
        let h = win::OpenProcess(win::PROCESS_TERMINATE, 0, pid);
        if h == 0 {
            return Err(std::io::Error::last_os_error());
        }
        let ok = win::TerminateProcess(h, 0) != 0;
        let err = std::io::Error::last_os_error();
        win::CloseHandle(h);
        if ok { Ok(()) } else { Err(err) }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = pid;
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "cannot signal processes here",
        ))
    }
}

/// When a process started, in clock ticks since boot (Linux, from
/// `/proc/<pid>/stat`); `None` where that cannot be read. Together with
/// the pid it names one process for good: a reused pid has another
/// start time.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "<pid> (<comm>) <state> ...": comm may contain spaces and ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    // starttime is field 22 overall, the 20th after the comm.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` holds a TCP socket listening on `port` (Linux: the
/// process's socket inodes against `/proc/net/tcp` and `tcp6`); `None`
/// where that cannot be told.
pub fn process_listens_on(pid: u32, port: u16) -> Option<bool> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut inodes = std::collections::HashSet::new();
    for fd in fds.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(n.to_string());
            }
        }
    }
    let mut any_table = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        any_table = true;
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address is "ADDR:PORT" in hex; state 0A is LISTEN.
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let listening_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && listening_port == Some(port) && inodes.contains(*inode) {
                return Some(true);
            }
        }
    }
    any_table.then_some(false)
}

/// Processes that hold `path` open (Linux, by their descriptors in
/// `/proc`; processes we may not inspect are not seen). Used by
/// `arc reset` to refuse deleting a database in use.
pub fn processes_holding(path: &std::path::Path) -> Vec<u32> {
    let Ok(want) = std::fs::canonicalize(path) else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == want))
        {
            out.push(pid);
        }
    }
    out
}

/// Whether another process has SQLite's shared-memory index of `db` open
/// (Unix): every connection in WAL mode holds a read lock on byte 128 of
/// `<db>-shm` while connected, which `F_GETLK` reports without taking
/// it. `None` when there is no `-shm` file or the probe is unavailable.
pub fn sqlite_shm_in_use(db: &std::path::Path) -> Option<bool> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let mut name = db.as_os_str().to_owned();
        name.push("-shm");
        let f = std::fs::File::open(std::path::PathBuf::from(name)).ok()?;
        // SAFETY: a zeroed flock is a valid argument; F_GETLK only fills it.
        let mut lk: libc::flock = unsafe { std::mem::zeroed() };
        lk.l_type = libc::F_WRLCK as _;
        lk.l_whence = libc::SEEK_SET as _;
        lk.l_start = 128;
        lk.l_len = 1;
        // SAFETY: valid descriptor and a pointer to a stack flock.
        let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut lk) };
        (r == 0).then(|| i32::from(lk.l_type) != libc::F_UNLCK)
    }
    #[cfg(not(unix))]
    {
        let _ = db;
        None
    }
}

/// A file's identity: device and inode on Unix. On Windows a file that
/// is open cannot be deleted or replaced (SQLite opens without
/// `FILE_SHARE_DELETE`), so existence is what is compared there.
pub fn file_identity(path: &std::path::Path) -> Option<(u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Some((0, 0))
    }
}

/// Makes `cmd` start detached from our session and console: `setsid` on
/// Unix; `DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP` on Windows.
pub fn detach(cmd: &mut Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe and allowed between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        const DETACHED_PROCESS: u32 = 0x0000_0008;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        cmd.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
    }
    #[cfg(not(any(unix, windows)))]
    let _ = cmd;
}

/// Change notification for directories: inotify on Linux, nothing
/// elsewhere ([`DirEvents::new`] returns `None` and callers poll).
///
/// Used by the relay so an idle spool costs no wakeups while a new request
/// file is still noticed at once, in whichever agent directory it lands.
/// Events are only a hint to look again: the caller re-scans, so a lost or
/// coalesced event costs latency, never correctness.
pub struct DirEvents {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
    /// An eventfd that [`DirEvents::wake`] makes readable.
    #[cfg(target_os = "linux")]
    bell: std::os::fd::OwnedFd,
}

/// Names one watched directory in [`DirEvents::wait`]'s results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WatchId(i32);

/// What [`DirEvents::wait`] saw for one watched directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEvent {
    /// The directory; `None` if the kernel's queue overflowed, so events
    /// were lost and every directory deserves a look.
    pub watch: Option<WatchId>,
    /// The watched directory itself was deleted or moved away (its watch
    /// is gone, or follows it elsewhere).
    pub gone: bool,
}

#[cfg(target_os = "linux")]
impl DirEvents {
    pub fn new() -> Option<DirEvents> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall; a non-negative result is a new descriptor
        // that we own from here on.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is valid and owned by nobody else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain syscall, as above.
        let bell = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        (bell >= 0).then(|| DirEvents {
            fd,
            // SAFETY: `bell` is valid and owned by nobody else.
            bell: unsafe { std::os::fd::OwnedFd::from_raw_fd(bell) },
        })
    }

    /// Ends a [`DirEvents::wait`] in progress (or the next one) at once.
    pub fn wake(&self) {
        use std::os::fd::AsRawFd;
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a stack value to our own eventfd.
        unsafe { libc::write(self.bell.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Watches the already opened `dir` for files created, written or
    /// moved in, and for the directory itself going away. The watch is
    /// added through `/proc/self/fd`, so it lands on exactly the directory
    /// the descriptor holds, whatever its path has become. Watching a
    /// directory twice returns the same id.
    pub fn watch(&self, dir: &dir::SpoolDir) -> Option<WatchId> {
        use std::os::fd::AsRawFd;
        let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let c = std::ffi::CString::new(path).ok()?;
        let mask = libc::IN_CREATE
            | libc::IN_MOVED_TO
            | libc::IN_CLOSE_WRITE
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF
            | libc::IN_ONLYDIR;
        // SAFETY: valid descriptor and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        (wd >= 0).then_some(WatchId(wd))
    }

    /// Waits up to `timeout` for events and returns them, one per watched
    /// directory (all pending events are consumed).
    pub fn wait(&self, timeout: Duration) -> Vec<DirEvent> {
        use std::os::fd::AsRawFd;
        let fd = self.fd.as_raw_fd();
        let mut pfds = [self.fd.as_raw_fd(), self.bell.as_raw_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        let mut out: Vec<DirEvent> = Vec::new();
        // SAFETY: two valid pollfds on the stack.
        if unsafe { libc::poll(pfds.as_mut_ptr(), 2, ms) } <= 0 {
            return out;
        }
        if pfds[1].revents != 0 {
            let mut n = 0u64;
            // SAFETY: reading 8 bytes into a stack value from our eventfd.
            unsafe { libc::read(self.bell.as_raw_fd(), (&raw mut n).cast(), 8) };
            return out;
        }
        let mut buf = [0u8; 4096];
        // Bounded: the queue is finite and we stop at the first empty read.
        for _ in 0..1024 {
            // SAFETY: reading into a stack buffer of the given length.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            for ev in parse_inotify(&buf[..n]) {
                match out.iter_mut().find(|e| e.watch == ev.watch) {
                    Some(e) => e.gone |= ev.gone,
                    None => out.push(ev),
                }
            }
        }
        out
    }
}

/// Decodes a buffer of `struct inotify_event` records (the kernel only
/// returns whole records).
#[cfg(target_os = "linux")]
fn parse_inotify(buf: &[u8]) -> Vec<DirEvent> {
    const HEADER: usize = 16; // wd, mask, cookie, len
    let word = |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEADER <= buf.len() {
        let (wd, mask, len) = (word(at) as i32, word(at + 4), word(at + 12) as usize);
        at += HEADER + len;
        out.push(if mask & libc::IN_Q_OVERFLOW != 0 {
            DirEvent {
                watch: None,
                gone: false,
            }
        } else {
            DirEvent {
                watch: Some(WatchId(wd)),
                gone: mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_IGNORED) != 0,
            }
        });
    }
    out
}

#[cfg(not(target_os = "linux"))]
impl DirEvents {
    pub fn new() -> Option<DirEvents> {
        None
    }

    pub fn watch(&self, _dir: &dir::SpoolDir) -> Option<WatchId> {
        None
    }

    /// Without change events the relay's scan interval is the wait.
    pub fn wait(&self, timeout: Duration) -> Vec<DirEvent> {
        crate::notify::pause(timeout);
        Vec::new()
    }

    pub fn wake(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_listening_queue_is_widened() {
        // Read back from the kernel: `ss` reports a listening socket's
        // queue limit as its Send-Q.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let queue = || -> Option<u64> {
            let out = Command::new("ss")
                .args(["-ltnH", &format!("sport = :{port}")])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split_whitespace().nth(2)?.parse().ok()
        };
        let Some(before) = queue() else {
            eprintln!("skipping: `ss` is not available");
            return;
        };
        assert_eq!(before, 128, "the standard library's default");
        widen_backlog(&l, 1024);
        let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        assert_eq!(queue(), Some(1024.min(somaxconn)));
    }

    #[test]
    fn our_own_pid_is_alive() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
    }

    #[test]
    fn a_reaped_child_is_not_alive() {
        let mut child = Command::new(if cfg!(windows) { "cmd" } else { "true" })
            .args(if cfg!(windows) {
                &["/C", "exit"][..]
            } else {
                &[][..]
            })
            .spawn()
            .unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_exited_but_unreaped_child_is_not_alive() {
        // Regression: `arc stop` waited forever for a hub whose parent
        // had not reaped it yet, because kill(pid, 0) succeeds on zombies.
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pid_alive(pid) && std::time::Instant::now() < deadline {
            crate::notify::pause(std::time::Duration::from_millis(5));
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        assert!(
            stat.contains(") Z "),
            "child should still be a zombie: {stat}"
        );
        assert!(!pid_alive(pid));
        child.wait().unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn dir_events_name_the_directory_a_file_was_renamed_into() {
        let root = std::env::temp_dir().join(format!("arc-sys-{}", crate::ids::uuid4_hex()));
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        let top = dir::SpoolDir::open_root(&root).unwrap();
        let (a, b) = (top.open_subdir("a").unwrap(), top.open_subdir("b").unwrap());
        let ev = DirEvents::new().unwrap();
        let wa = ev.watch(&a).unwrap();
        let wb = ev.watch(&b).unwrap();
        assert_ne!(wa, wb);
        assert_eq!(ev.watch(&a), Some(wa), "watching twice gives the same id");
        assert!(
            ev.wait(Duration::from_millis(20)).is_empty(),
            "nothing happened yet"
        );
        std::fs::write(root.join("b/.tmp"), b"{}").unwrap();
        let seen = ev.wait(Duration::from_secs(5));
        assert_eq!(
            seen,
            [DirEvent {
                watch: Some(wb),
                gone: false
            }]
        );
        std::fs::rename(root.join("b/.tmp"), root.join("b/x.json")).unwrap();
        let seen = ev.wait(Duration::from_secs(5));
        assert_eq!(
            seen,
            [DirEvent {
                watch: Some(wb),
                gone: false
            }]
        );
        assert!(
            ev.wait(Duration::from_millis(20)).is_empty(),
            "events were drained"
        );
        // A watched directory moved away says so.
        std::fs::rename(root.join("a"), root.join("a2")).unwrap();
        let seen = ev.wait(Duration::from_secs(5));
        assert_eq!(
            seen,
            [DirEvent {
                watch: Some(wa),
                gone: true
            }]
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
