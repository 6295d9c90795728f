/*!
Directories that are never left through a symlink, for the relay spool.

A [`SpoolDir`] is a directory handle whose type and location have been
verified. The spool root is opened the way the operator named it (symlinks
*above* it are the operator's business); everything below it is reached
one name at a time relative to a verified handle, and a name that is a
symlink is refused, never followed. Files are read only after the opened
handle shows a regular file, FIFOs and devices are opened non-blocking so
they can be looked at and refused without waiting, and deletes and renames
act on names inside a verified directory only.

On Unix every operation is relative to a directory descriptor (`openat`
with `O_NOFOLLOW`, `fstatat` with `AT_SYMLINK_NOFOLLOW`, `renameat`,
`unlinkat`), so a swapped-in symlink can never redirect it. Elsewhere
(Windows) a handle is a path whose components below the root are
re-checked before each use, and reparse points (symlinks, junctions) count
as symlinks. That is best effort: a path can change between the check and
the use.
*/

use std::io;
use std::time::SystemTime;

pub use imp::SpoolDir;

/// What a directory entry is, seen without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A symlink (or, on Windows, any reparse point).
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

impl Kind {
    /// Why an entry of this kind is refused where another kind was
    /// expected, e.g. "is a symbolic link".
    pub fn refusal(self) -> &'static str {
        match self {
            Kind::File => "is a regular file",
            Kind::Dir => "is a directory",
            Kind::Symlink => "is a symbolic link",
            Kind::Other => "is a FIFO, socket or device",
        }
    }
}

/// One directory entry, as `lstat` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub mtime: SystemTime,
    pub len: u64,
}

/// The error for an entry that exists but is not what was asked for.
fn refused(kind: Kind) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, kind.refusal())
}

/// True if `e` means "exists, but is not what was asked for" (a symlink,
/// a FIFO, a file where a directory was wanted, or a bad name), as
/// opposed to missing or an I/O failure.
pub fn is_refusal(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput
}

/// Only plain names are accepted: no separators, not `.` or `..`.
fn check_name(name: &str) -> io::Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\0'])
        || (cfg!(windows) && name.contains(['\\', ':']));
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a plain file name: {name:?}"),
        ));
    }
    Ok(())
}

/// The error for a file that has other names besides its spool one: it
/// may be a hard link to a file outside the spool. (Unix only: see the
/// Windows `read_regular`.)
#[cfg(unix)]
fn linked(links: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("has {links} hard links (a spool file must have exactly one)"),
    )
}

/// The error for a file bigger than a read allows.
fn too_large(max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("file exceeds {max} bytes"),
    )
}

/// Reads at most `max` bytes from `f`, failing if there are more.
fn read_bounded(f: std::fs::File, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    f.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(max));
    }
    Ok(bytes)
}

/// The temp name [`SpoolDir::write_atomic`] writes before renaming, in the
/// spool's format: `.<name>.<32 hex>.tmp`.
fn temp_name(name: &str) -> String {
    format!(".{name}.{}.tmp", crate::ids::uuid4_hex())
}

impl SpoolDir {
    /// Every entry of this directory whose name passes `want` (see
    /// `list_at_most`).
    pub fn list(&self, want: &dyn Fn(&str) -> bool) -> io::Result<Vec<Entry>> {
        self.list_at_most(want, usize::MAX)
            .map(|(entries, _)| entries)
    }

    /// Opens `name`, creating it first if it is missing. An existing entry
    /// that is not a real directory is refused, never replaced.
    pub fn open_or_create_subdir(&self, name: &str) -> io::Result<SpoolDir> {
        match self.open_subdir(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match self.create_subdir(name) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
                self.open_subdir(name)
            }
            other => other,
        }
    }

    /// Deletes `name` if it is a regular file; anything else is refused.
    pub fn remove_regular(&self, name: &str) -> io::Result<()> {
        let entry = self.stat(name)?;
        if entry.kind != Kind::File {
            return Err(refused(entry.kind));
        }
        self.unlink(name)
    }

    /// Writes `bytes` to `name` through a new temp file in this directory
    /// (created exclusively, never through a symlink), synced, then renamed
    /// over `name`, so readers never see a partial file. A symlink already
    /// at `name` is replaced, not followed.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        check_name(name)?;
        let tmp = temp_name(name);
        let mut f = self.create_new(&tmp)?;
        let written = f.write_all(bytes).and_then(|_| f.sync_all()).and_then(|_| {
            drop(f);
            self.rename(&tmp, name)
        });
        if written.is_err() {
            let _ = self.unlink(&tmp);
        }
        written
    }
}

#[cfg(unix)]
mod imp {
    use std::ffi::{CStr, CString};
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::{Entry, Kind, check_name, linked, read_bounded, refused, too_large};

    /// A verified directory: an open descriptor plus its device and inode.
    #[derive(Debug)]
    pub struct SpoolDir {
        file: std::fs::File,
        id: (u64, u64),
    }

    /// `name` as a C string, after [`check_name`].
    fn c_name(name: &str) -> io::Result<CString> {
        check_name(name)?;
        CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    }

    /// `openat(dir, name, flags | O_CLOEXEC, mode)`.
    fn open_at(
        dir: RawFd,
        name: &CStr,
        flags: libc::c_int,
        mode: libc::c_uint,
    ) -> io::Result<OwnedFd> {
        // SAFETY: a valid descriptor and a NUL-terminated name; a
        // non-negative result is a new descriptor that we own.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is valid and owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
    fn lstat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: valid descriptor, NUL-terminated name, and an out-pointer
        // to a properly sized stat buffer.
        let r = unsafe {
            libc::fstatat(
                dir,
                name.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstatat succeeded, so the buffer is initialised.
        Ok(unsafe { st.assume_init() })
    }

    fn kind_of(mode: libc::mode_t) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }
    }

    /// A timestamp from seconds and nanoseconds since the epoch.
    fn time_of(secs: i64, nsec: i64) -> SystemTime {
        let nanos = Duration::from_nanos(u64::try_from(nsec).unwrap_or(0));
        match u64::try_from(secs) {
            Ok(s) => UNIX_EPOCH + Duration::from_secs(s) + nanos,
            Err(_) => UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos,
        }
    }

    /// Device and inode.
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    fn id_of(st: &libc::stat) -> (u64, u64) {
        (st.st_dev as u64, st.st_ino as u64)
    }

    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    fn entry_of(name: &str, st: &libc::stat) -> Entry {
        Entry {
            name: name.to_string(),
            kind: kind_of(st.st_mode),
            mtime: time_of(st.st_mtime as i64, st.st_mtime_nsec as i64),
            len: u64::try_from(st.st_size).unwrap_or(0),
        }
    }

    /// Closes a `DIR` stream when dropped.
    struct DirStream(*mut libc::DIR);

    impl Drop for DirStream {
        fn drop(&mut self) {
            // SAFETY: the stream came from fdopendir and is closed once.
            unsafe { libc::closedir(self.0) };
        }
    }

    impl SpoolDir {
        /// Wraps an open descriptor after checking it is a directory.
        fn from_fd(fd: OwnedFd) -> io::Result<SpoolDir> {
            let file = std::fs::File::from(fd);
            let meta = file.metadata()?;
            if !meta.is_dir() {
                return Err(io::Error::from(io::ErrorKind::NotADirectory));
            }
            Ok(SpoolDir {
                id: (meta.dev(), meta.ino()),
                file,
            })
        }

        fn raw(&self) -> RawFd {
            self.file.as_raw_fd()
        }

        /// Opens the spool root at `path`, following symlinks in the path
        /// (it is the operator's), and checks that it is a directory.
        pub fn open_root(path: &Path) -> io::Result<SpoolDir> {
            use std::os::unix::ffi::OsStrExt;
            let c = CString::new(path.as_os_str().as_bytes())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NONBLOCK;
            SpoolDir::from_fd(open_at(libc::AT_FDCWD, &c, flags, 0)?)
        }

        /// Opens the directory `name` inside this one without following a
        /// symlink; anything but a real directory is refused.
        pub fn open_subdir(&self, name: &str) -> io::Result<SpoolDir> {
            let c = c_name(name)?;
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
            match open_at(self.raw(), &c, flags, 0) {
                Ok(fd) => SpoolDir::from_fd(fd),
                Err(e) => Err(self.explain(&c, e)),
            }
        }

        /// Turns the error of a failed open into a refusal if the entry
        /// exists but has the wrong type.
        fn explain(&self, name: &CStr, e: io::Error) -> io::Error {
            if e.kind() == io::ErrorKind::NotFound {
                return e;
            }
            match lstat_at(self.raw(), name) {
                Ok(st) if kind_of(st.st_mode) != Kind::Dir => refused(kind_of(st.st_mode)),
                _ => e,
            }
        }

        /// Creates the directory `name` (mode 0777 before the umask).
        pub fn create_subdir(&self, name: &str) -> io::Result<()> {
            let c = c_name(name)?;
            // SAFETY: valid descriptor and NUL-terminated name.
            if unsafe { libc::mkdirat(self.raw(), c.as_ptr(), 0o777) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// The entries of this directory (without `.` and `..`) whose
        /// names pass `want`, each `lstat`ed, at most `max` of them (in
        /// the order the directory gives; true if more were left out).
        /// Names that are not UTF-8 and entries that vanish while listing
        /// are left out.
        pub fn list_at_most(
            &self,
            want: &dyn Fn(&str) -> bool,
            max: usize,
        ) -> io::Result<(Vec<Entry>, bool)> {
            // A fresh descriptor, so the stream has its own offset.
            let fd = open_at(self.raw(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
            // SAFETY: a valid descriptor; on success the stream owns it.
            let dirp = unsafe { libc::fdopendir(fd.as_raw_fd()) };
            if dirp.is_null() {
                return Err(io::Error::last_os_error());
            }
            let _owned_by_stream = fd.into_raw_fd();
            let stream = DirStream(dirp);
            let mut out = Vec::new();
            loop {
                // SAFETY: the stream is open; the entry is used before the
                // next readdir call on it.
                let ent = unsafe { libc::readdir(stream.0) };
                if ent.is_null() {
                    break;
                }
                // SAFETY: d_name is NUL-terminated within the entry.
                let cname = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
                let Ok(name) = cname.to_str() else { continue };
                if name == "." || name == ".." || !want(name) {
                    continue;
                }
                if out.len() == max {
                    return Ok((out, true));
                }
                if let Ok(st) = lstat_at(self.raw(), cname) {
                    out.push(entry_of(name, &st));
                }
            }
            Ok((out, false))
        }

        /// The entry `name`, not following a symlink.
        pub fn stat(&self, name: &str) -> io::Result<Entry> {
            let c = c_name(name)?;
            Ok(entry_of(name, &lstat_at(self.raw(), &c)?))
        }

        /// This directory's own modification time.
        pub fn mtime(&self) -> io::Result<SystemTime> {
            let m = self.file.metadata()?;
            Ok(time_of(m.mtime(), m.mtime_nsec()))
        }

        /// True if `parent`'s entry `name` is still this very directory
        /// (not a symlink, not a different directory).
        pub fn is_at(&self, parent: &SpoolDir, name: &str) -> bool {
            let Ok(c) = c_name(name) else { return false };
            lstat_at(parent.raw(), &c)
                .is_ok_and(|st| kind_of(st.st_mode) == Kind::Dir && id_of(&st) == self.id)
        }

        /// True if `path` (symlinks followed) still names this directory.
        pub fn is_still(&self, path: &Path) -> bool {
            std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
        }

        /// Reads the regular file `name`, at most `max` bytes. The file is
        /// opened without following a symlink and without blocking (a
        /// FIFO or device opens at once), and refused unless the opened
        /// descriptor shows a regular file with no other hard link (one
        /// could be a file outside the spool). A file larger than `max`
        /// fails with [`io::ErrorKind::FileTooLarge`] before anything is
        /// read.
        pub fn read_regular(&self, name: &str, max: u64) -> io::Result<Vec<u8>> {
            let c = c_name(name)?;
            let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
            let fd = open_at(self.raw(), &c, flags, 0).map_err(|e| self.explain_file(&c, e))?;
            let file = std::fs::File::from(fd);
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Err(refused(kind_of(meta.mode() as libc::mode_t)));
            }
            if meta.nlink() != 1 {
                return Err(linked(meta.nlink()));
            }
            if meta.len() > max {
                return Err(too_large(max));
            }
            read_bounded(file, max)
        }

        /// Like [`SpoolDir::explain`], for an entry that should be a file.
        fn explain_file(&self, name: &CStr, e: io::Error) -> io::Error {
            match lstat_at(self.raw(), name) {
                Ok(st) if kind_of(st.st_mode) != Kind::File => refused(kind_of(st.st_mode)),
                _ => e,
            }
        }

        /// Renames `from` to `to`, both in this directory. A symlink is
        /// renamed as itself, never followed.
        pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
            let (a, b) = (c_name(from)?, c_name(to)?);
            // SAFETY: valid descriptors and NUL-terminated names.
            let r = unsafe { libc::renameat(self.raw(), a.as_ptr(), self.raw(), b.as_ptr()) };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Removes the non-directory entry `name` (a symlink itself, not
        /// its target).
        pub(super) fn unlink(&self, name: &str) -> io::Result<()> {
            let c = c_name(name)?;
            // SAFETY: valid descriptor and NUL-terminated name.
            if unsafe { libc::unlinkat(self.raw(), c.as_ptr(), 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Creates the new file `name` for writing (mode 0666 before the
        /// umask); fails if anything, even a dangling symlink, is there.
        pub(super) fn create_new(&self, name: &str) -> io::Result<std::fs::File> {
            let c = c_name(name)?;
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            Ok(std::fs::File::from(open_at(self.raw(), &c, flags, 0o666)?))
        }
    }

    impl AsRawFd for SpoolDir {
        fn as_raw_fd(&self) -> RawFd {
            self.raw()
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use std::fs::Metadata;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::time::SystemTime;

    use super::{Entry, Kind, check_name, read_bounded, refused, too_large};

    /// A verified directory: its path, plus every directory below the
    /// spool root on the way to it, re-checked before each use.
    #[derive(Debug)]
    pub struct SpoolDir {
        path: PathBuf,
        chain: Vec<PathBuf>,
    }

    /// Windows' FILE_ATTRIBUTE_REPARSE_POINT.
    #[cfg(windows)]
    const REPARSE_POINT: u32 = 0x400;

    /// Windows' FILE_FLAG_OPEN_REPARSE_POINT: open a reparse point itself.
    #[cfg(windows)]
    const OPEN_REPARSE_POINT: u32 = 0x0020_0000;

    fn kind_of(m: &Metadata) -> Kind {
        #[cfg(windows)]
        let link = {
            use std::os::windows::fs::MetadataExt;
            m.file_attributes() & REPARSE_POINT != 0
        };
        #[cfg(not(windows))]
        let link = false;
        if link || m.file_type().is_symlink() {
            Kind::Symlink
        } else if m.is_dir() {
            Kind::Dir
        } else if m.is_file() {
            Kind::File
        } else {
            Kind::Other
        }
    }

    fn entry_of(name: &str, m: &Metadata) -> Entry {
        Entry {
            name: name.to_string(),
            kind: kind_of(m),
            mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            len: m.len(),
        }
    }

    /// Options that open a reparse point itself instead of its target.
    fn no_follow(opts: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
        #[cfg(windows)]
        {
            use std::os::windows::fs::OpenOptionsExt;
            opts.custom_flags(OPEN_REPARSE_POINT);
        }
        opts
    }

    impl SpoolDir {
        /// Checks that every directory on the way here is still a real
        /// directory.
        fn verify(&self) -> io::Result<()> {
            for p in &self.chain {
                let kind = kind_of(&std::fs::symlink_metadata(p)?);
                if kind != Kind::Dir {
                    return Err(refused(kind));
                }
            }
            Ok(())
        }

        /// `name` inside this directory, after checking the name and the
        /// way here.
        fn child(&self, name: &str) -> io::Result<PathBuf> {
            check_name(name)?;
            self.verify()?;
            Ok(self.path.join(name))
        }

        /// Opens the spool root at `path` (following links in the path:
        /// it is the operator's) and checks that it is a directory.
        pub fn open_root(path: &Path) -> io::Result<SpoolDir> {
            if !std::fs::metadata(path)?.is_dir() {
                return Err(io::Error::from(io::ErrorKind::NotADirectory));
            }
            Ok(SpoolDir {
                path: path.to_path_buf(),
                chain: Vec::new(),
            })
        }

        /// Opens the directory `name` inside this one; anything but a real
        /// directory (a symlink, a junction, a file) is refused.
        pub fn open_subdir(&self, name: &str) -> io::Result<SpoolDir> {
            let path = self.child(name)?;
            let kind = kind_of(&std::fs::symlink_metadata(&path)?);
            if kind != Kind::Dir {
                return Err(refused(kind));
            }
            let mut chain = self.chain.clone();
            chain.push(path.clone());
            Ok(SpoolDir { path, chain })
        }

        /// Creates the directory `name`.
        pub fn create_subdir(&self, name: &str) -> io::Result<()> {
            std::fs::create_dir(self.child(name)?)
        }

        /// The entries of this directory whose names pass `want`, seen
        /// without following links, at most `max` of them (true if more
        /// were left out).
        pub fn list_at_most(
            &self,
            want: &dyn Fn(&str) -> bool,
            max: usize,
        ) -> io::Result<(Vec<Entry>, bool)> {
            self.verify()?;
            let mut out = Vec::new();
            for e in std::fs::read_dir(&self.path)?.flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if !want(name) {
                    continue;
                }
                if out.len() == max {
                    return Ok((out, true));
                }
                if let Ok(m) = std::fs::symlink_metadata(e.path()) {
                    out.push(entry_of(name, &m));
                }
            }
            Ok((out, false))
        }

        /// The entry `name`, not following a link.
        pub fn stat(&self, name: &str) -> io::Result<Entry> {
            Ok(entry_of(
                name,
                &std::fs::symlink_metadata(self.child(name)?)?,
            ))
        }

        /// This directory's own modification time.
        pub fn mtime(&self) -> io::Result<SystemTime> {
            self.verify()?;
            std::fs::symlink_metadata(&self.path)?.modified()
        }

        /// True if `parent`'s entry `name` is still a real directory.
        pub fn is_at(&self, parent: &SpoolDir, name: &str) -> bool {
            parent.stat(name).is_ok_and(|e| e.kind == Kind::Dir)
        }

        /// True if `path` still names a directory.
        pub fn is_still(&self, path: &Path) -> bool {
            path == self.path && std::fs::metadata(path).is_ok_and(|m| m.is_dir())
        }

        /// Reads the regular file `name`, at most `max` bytes, refusing
        /// links and anything the opened handle does not show as a file.
        /// Unlike on Unix, hard links are not detected here (the link
        /// count needs `GetFileInformationByHandle`, which std does not
        /// offer on stable): docs/SECURITY.md says so.
        pub fn read_regular(&self, name: &str, max: u64) -> io::Result<Vec<u8>> {
            let path = self.child(name)?;
            let file = no_follow(std::fs::OpenOptions::new().read(true)).open(&path)?;
            let kind = kind_of(&file.metadata()?);
            if kind != Kind::File {
                return Err(refused(kind));
            }
            if file.metadata()?.len() > max {
                return Err(too_large(max));
            }
            read_bounded(file, max)
        }

        /// Renames `from` to `to`, both in this directory (a link is
        /// renamed as itself).
        pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
            std::fs::rename(self.child(from)?, self.child(to)?)
        }

        /// Removes the file or link `name` itself.
        pub(super) fn unlink(&self, name: &str) -> io::Result<()> {
            std::fs::remove_file(self.child(name)?)
        }

        /// Creates the new file `name` for writing; fails if anything is
        /// there already.
        pub(super) fn create_new(&self, name: &str) -> io::Result<std::fs::File> {
            let path = self.child(name)?;
            no_follow(std::fs::OpenOptions::new().write(true).create_new(true)).open(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A fresh directory under the system temp dir, removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            let p = std::env::temp_dir().join(format!("arc-dir-{}", crate::ids::uuid4_hex()));
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn all(_: &str) -> bool {
        true
    }

    #[test]
    fn names_must_be_plain() {
        let s = Scratch::new();
        let root = SpoolDir::open_root(&s.0).unwrap();
        for bad in ["", ".", "..", "a/b", "../x", "nul\0"] {
            let e = root.open_subdir(bad).unwrap_err();
            assert!(is_refusal(&e), "{bad:?}: {e}");
            assert!(root.stat(bad).is_err(), "{bad:?}");
            assert!(root.write_atomic(bad, b"x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subdirs_are_created_opened_and_listed() {
        let s = Scratch::new();
        let root = SpoolDir::open_root(&s.0).unwrap();
        let a = root.open_or_create_subdir("a").unwrap();
        let again = root.open_or_create_subdir("a").unwrap();
        assert!(a.is_at(&root, "a") && again.is_at(&root, "a"));
        assert!(root.is_still(&s.0));
        a.write_atomic("x.json", b"{}").unwrap();
        a.write_atomic("y.txt", b"hello").unwrap();
        let mut names: Vec<String> = a.list(&all).unwrap().into_iter().map(|e| e.name).collect();
        names.sort();
        assert_eq!(names, ["x.json", "y.txt"], "no temp file is left");
        let only_json = a.list(&|n: &str| n.ends_with(".json")).unwrap();
        assert_eq!(only_json.len(), 1);
        assert_eq!((only_json[0].kind, only_json[0].len), (Kind::File, 2));
        let root_list = root.list(&all).unwrap();
        assert_eq!(root_list.len(), 1);
        assert_eq!(
            (root_list[0].name.as_str(), root_list[0].kind),
            ("a", Kind::Dir)
        );
        // A file is not a directory.
        let e = a.open_subdir("x.json").unwrap_err();
        assert!(is_refusal(&e), "{e}");
        assert!(a.open_or_create_subdir("x.json").is_err());
        assert_eq!(
            root.open_subdir("missing").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        // A directory replaced by another one is noticed.
        std::fs::rename(s.0.join("a"), s.0.join("b")).unwrap();
        std::fs::create_dir(s.0.join("a")).unwrap();
        assert!(!a.is_at(&root, "a"));
        assert!(a.is_at(&root, "b"));
    }

    #[test]
    fn reads_are_bounded_and_files_only() {
        let s = Scratch::new();
        let root = SpoolDir::open_root(&s.0).unwrap();
        root.write_atomic("small.json", b"12345").unwrap();
        assert_eq!(root.read_regular("small.json", 5).unwrap(), b"12345");
        let e = root.read_regular("small.json", 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        root.create_subdir("d").unwrap();
        assert!(is_refusal(&root.read_regular("d", 10).unwrap_err()));
        let missing = root.read_regular("none", 10).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn listings_can_be_bounded() {
        let s = Scratch::new();
        let root = SpoolDir::open_root(&s.0).unwrap();
        for i in 0..10 {
            root.write_atomic(&format!("{i}.json"), b"{}").unwrap();
        }
        root.write_atomic("x.txt", b"").unwrap();
        let json = |n: &str| n.ends_with(".json");
        let (some, more) = root.list_at_most(&json, 4).unwrap();
        assert_eq!((some.len(), more), (4, true));
        let (all, more) = root.list_at_most(&json, 10).unwrap();
        assert_eq!((all.len(), more), (10, false));
        assert_eq!(root.list(&|_| true).unwrap().len(), 11);
    }

    #[test]
    fn rename_and_remove_stay_in_the_directory() {
        let s = Scratch::new();
        let root = SpoolDir::open_root(&s.0).unwrap();
        root.write_atomic("a.json", b"{}").unwrap();
        root.rename("a.json", "a.work").unwrap();
        assert!(s.0.join("a.work").is_file());
        root.remove_regular("a.work").unwrap();
        assert!(!s.0.join("a.work").exists());
        root.create_subdir("d").unwrap();
        assert!(is_refusal(&root.remove_regular("d").unwrap_err()));
        assert!(s.0.join("d").is_dir());
        // The mtime is the directory's own, and moves with changes.
        let before = root.mtime().unwrap();
        std::fs::File::open(&s.0)
            .unwrap()
            .set_modified(before - Duration::from_secs(60))
            .unwrap();
        assert_eq!(root.mtime().unwrap(), before - Duration::from_secs(60));
        assert_eq!(root.stat("d").unwrap().kind, Kind::Dir);
    }

    #[cfg(unix)]
    mod unix {
        use super::*;
        use std::os::unix::fs::symlink;
        use std::path::Path;

        fn mkfifo(p: &Path) {
            use std::os::unix::ffi::OsStrExt;
            let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
            // SAFETY: a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }

        #[test]
        fn symlinked_directories_are_refused_not_followed() {
            let s = Scratch::new();
            let outside = Scratch::new();
            std::fs::write(outside.0.join("settings.json"), b"{}").unwrap();
            symlink(&outside.0, s.0.join("evil")).unwrap();
            symlink(s.0.join("nowhere"), s.0.join("dangling")).unwrap();
            let root = SpoolDir::open_root(&s.0).unwrap();
            for name in ["evil", "dangling"] {
                let e = root.open_subdir(name).unwrap_err();
                assert!(is_refusal(&e), "{name}: {e}");
                assert_eq!(e.to_string(), "is a symbolic link");
                // Never replaced by a real directory either.
                assert!(root.open_or_create_subdir(name).is_err());
                assert_eq!(root.stat(name).unwrap().kind, Kind::Symlink);
            }
            let mut kinds: Vec<(String, Kind)> = root
                .list(&all)
                .unwrap()
                .into_iter()
                .map(|e| (e.name, e.kind))
                .collect();
            kinds.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                kinds,
                [
                    ("dangling".into(), Kind::Symlink),
                    ("evil".into(), Kind::Symlink)
                ]
            );
            assert!(!s.0.join("nowhere").exists());
            assert!(outside.0.join("settings.json").exists());
        }

        #[test]
        fn symlinked_files_are_never_read_removed_or_written_through() {
            let s = Scratch::new();
            let outside = Scratch::new();
            let secret = outside.0.join("secret.json");
            std::fs::write(&secret, b"secret").unwrap();
            symlink(&secret, s.0.join("link.json")).unwrap();
            symlink(s.0.join("nowhere.json"), s.0.join("dangling.json")).unwrap();
            let root = SpoolDir::open_root(&s.0).unwrap();
            for name in ["link.json", "dangling.json"] {
                let e = root.read_regular(name, 100).unwrap_err();
                assert!(is_refusal(&e), "{name}: {e}");
                assert!(is_refusal(&root.remove_regular(name).unwrap_err()));
            }
            // An atomic write replaces the link itself.
            root.write_atomic("link.json", b"mine").unwrap();
            root.write_atomic("dangling.json", b"mine too").unwrap();
            assert_eq!(std::fs::read(&secret).unwrap(), b"secret");
            assert!(!s.0.join("nowhere.json").exists());
            assert_eq!(root.read_regular("link.json", 100).unwrap(), b"mine");
            // Renaming a link renames the link.
            symlink(&secret, s.0.join("again.json")).unwrap();
            root.rename("again.json", "again.work").unwrap();
            assert!(
                std::fs::symlink_metadata(s.0.join("again.work"))
                    .unwrap()
                    .is_symlink()
            );
            assert_eq!(std::fs::read(&secret).unwrap(), b"secret");
        }

        #[test]
        fn hard_linked_files_are_refused_and_written_around() {
            let s = Scratch::new();
            let secret = s.0.join("outside-secret");
            std::fs::write(&secret, b"secret").unwrap();
            let spool = s.0.join("spool");
            std::fs::create_dir(&spool).unwrap();
            std::fs::hard_link(&secret, spool.join("h.json")).unwrap();
            let root = SpoolDir::open_root(&spool).unwrap();
            let e = root.read_regular("h.json", 100).unwrap_err();
            assert!(is_refusal(&e), "{e}");
            assert!(e.to_string().contains("2 hard links"), "{e}");
            // A write replaces the name; the other file keeps its content.
            root.write_atomic("h.json", b"mine").unwrap();
            assert_eq!(std::fs::read(&secret).unwrap(), b"secret");
            assert_eq!(root.read_regular("h.json", 100).unwrap(), b"mine");
        }

        #[test]
        fn fifos_are_refused_without_blocking() {
            let s = Scratch::new();
            mkfifo(&s.0.join("pipe.json"));
            symlink("pipe.json", s.0.join("to-pipe.json")).unwrap();
            mkfifo(&s.0.join("pipe-dir"));
            let root = SpoolDir::open_root(&s.0).unwrap();
            // No writer exists: a blocking open would hang here forever.
            let e = root.read_regular("pipe.json", 100).unwrap_err();
            assert!(is_refusal(&e), "{e}");
            assert_eq!(e.to_string(), "is a FIFO, socket or device");
            assert!(is_refusal(
                &root.read_regular("to-pipe.json", 100).unwrap_err()
            ));
            assert!(is_refusal(&root.open_subdir("pipe-dir").unwrap_err()));
            assert!(is_refusal(&root.remove_regular("pipe.json").unwrap_err()));
            assert_eq!(root.stat("pipe.json").unwrap().kind, Kind::Other);
        }

        #[test]
        fn a_root_reached_through_a_symlink_is_fine() {
            let s = Scratch::new();
            std::fs::create_dir(s.0.join("real")).unwrap();
            symlink(s.0.join("real"), s.0.join("alias")).unwrap();
            let root = SpoolDir::open_root(&s.0.join("alias")).unwrap();
            root.create_subdir("requests").unwrap();
            assert!(s.0.join("real/requests").is_dir());
            assert!(root.is_still(&s.0.join("alias")));
            assert!(root.is_still(&s.0.join("real")));
            std::fs::remove_file(s.0.join("alias")).unwrap();
            assert!(!root.is_still(&s.0.join("alias")));
        }
    }
}
