/*!
Small local files that anyone might have put there: pidfiles and cursor
files (docs/SECURITY.md, "What a client reads").

[`read_small`] never follows a symlink at the file itself, never blocks
(a FIFO or device is opened non-blocking and refused as soon as the
opened handle shows what it is), and never reads more than it was told.
[`owned_by_us`] and [`writable_by_others`] say whether another local user
could have written a file or replaced it; on Windows they say nothing
(`None`), and callers skip those checks there.
*/

use std::io::{self, Read};
use std::path::Path;

use super::dir::Kind;

/// A small file's bytes, and its owner where the system has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Small {
    pub bytes: Vec<u8>,
    /// The owner's user id (Unix).
    pub owner: Option<u32>,
}

/// The error for an entry that is not a regular file (see
/// [`super::dir::is_refusal`]).
fn refused(kind: Kind) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, kind.refusal())
}

/// What `path` is, seen without following it.
fn kind_at(path: &Path) -> Option<Kind> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let t = m.file_type();
    Some(if t.is_symlink() || is_reparse_point(&m) {
        Kind::Symlink
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_file() {
        Kind::File
    } else {
        Kind::Other
    })
}

#[cfg(windows)]
fn is_reparse_point(m: &std::fs::Metadata) -> bool {
    use std::os::windows::fs::MetadataExt;
    const FILE_ATTRIBUTE_REPARSE_POINT: u32 = 0x400;
    m.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0
}

#[cfg(not(windows))]
fn is_reparse_point(_: &std::fs::Metadata) -> bool {
    false
}

/// Options that open the file itself, not what a link at it points to,
/// and that never wait (for a FIFO's writer, a device, a terminal).
fn open_options() -> std::fs::OpenOptions {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
        opts.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    }
    opts
}

/// Reads the regular file at `path`, at most `max` bytes: a symlink, a
/// FIFO, a device or a directory is refused (an
/// [`io::ErrorKind::InvalidInput`] error saying what it is) without
/// waiting, and a file larger than `max` fails with
/// [`io::ErrorKind::FileTooLarge`] before anything is read.
pub fn read_small(path: &Path, max: u64) -> io::Result<Small> {
    let file = match open_options().open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
        Err(e) => {
            return Err(match kind_at(path) {
                Some(k) if k != Kind::File => refused(k),
                _ => e,
            });
        }
    };
    let meta = file.metadata()?;
    if is_reparse_point(&meta) {
        return Err(refused(Kind::Symlink));
    }
    if !meta.is_file() {
        return Err(refused(if meta.is_dir() {
            Kind::Dir
        } else {
            Kind::Other
        }));
    }
    if meta.len() > max {
        return Err(too_large(max));
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(max));
    }
    Ok(Small {
        bytes,
        owner: owner_of(&meta),
    })
}

fn too_large(max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("is larger than {max} bytes"),
    )
}

#[cfg(unix)]
fn owner_of(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    Some(meta.uid())
}

#[cfg(not(unix))]
fn owner_of(_: &std::fs::Metadata) -> Option<u32> {
    None
}

/// Whether a file with this owner belongs to the user we run as (the
/// effective user id); `None` where files have no such owner (Windows).
pub fn owned_by_us(owner: Option<u32>) -> Option<bool> {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no arguments and cannot fail.
        let me = unsafe { libc::geteuid() };
        owner.map(|o| o == me)
    }
    #[cfg(not(unix))]
    {
        let _ = owner;
        None
    }
}

/// Whether users other than the directory's owner may create, rename or
/// delete entries in `dir` (symlinks to it followed): its mode has the
/// group or other write bit (Unix; a sticky `/tmp` counts). `None` where
/// that cannot be told (Windows, or `dir` cannot be read).
pub fn writable_by_others(dir: &Path) -> Option<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).ok()?.permissions().mode();
        Some(mode & 0o022 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Makes a FIFO at `path`, for tests of readers that must not wait on one.
#[cfg(all(test, unix))]
pub(crate) fn make_fifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            let p = std::env::temp_dir().join(format!("arc-file-{}", crate::ids::uuid4_hex()));
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn regular_files_are_read_within_their_cap() {
        let s = Scratch::new();
        let p = s.0.join("f");
        std::fs::write(&p, b"12345").unwrap();
        let got = read_small(&p, 5).unwrap();
        assert_eq!(got.bytes, b"12345");
        assert_eq!(owned_by_us(got.owner), cfg!(unix).then_some(true));
        let e = read_small(&p, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(e.to_string(), "is larger than 4 bytes");
        assert_eq!(
            read_small(&s.0.join("none"), 5).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let e = read_small(&s.0, 5).unwrap_err();
        assert!(super::super::dir::is_refusal(&e), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn links_fifos_and_devices_are_refused_without_waiting() {
        use std::os::unix::fs::PermissionsExt;
        let s = Scratch::new();
        let fifo = s.0.join("fifo");
        make_fifo(&fifo);
        // No writer exists: a blocking open would wait here forever.
        let e = read_small(&fifo, 100).unwrap_err();
        assert_eq!(e.to_string(), "is a FIFO, socket or device");
        let zero = s.0.join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = read_small(&zero, 100).unwrap_err();
        assert_eq!(e.to_string(), "is a symbolic link");
        let e = read_small(Path::new("/dev/zero"), 100).unwrap_err();
        assert_eq!(e.to_string(), "is a FIFO, socket or device");
        std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(writable_by_others(&s.0), Some(false));
        std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert_eq!(writable_by_others(&s.0), Some(true));
        std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(writable_by_others(&s.0), Some(true));
        assert_eq!(owned_by_us(Some(u32::MAX - 7)), Some(false));
    }
}
