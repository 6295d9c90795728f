/*!
Path logic: absolute storage paths, the pidfile next to the database, and
pidfile discovery (docs/PROTOCOL.md, "Pidfile"). Nothing here opens a database or a socket.
*/

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::error::Result;

/// `p` made absolute against the working directory, lexically (no
/// symlink resolution: sandbox mounts make resolved paths unusable).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    Ok(normalize(&joined))
}

/// Removes `.` and resolves `..` lexically.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The absolute, symlink-resolved form of `p` as Python's `Path.resolve()`
/// prints it (no `\\?\` prefix on Windows); falls back to the lexical form.
pub fn display_resolved(p: &Path) -> String {
    let resolved = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let s = resolved.to_string_lossy().into_owned();
    match s.strip_prefix(r"\\?\UNC\") {
        Some(rest) => format!(r"\\{rest}"),
        None => s.strip_prefix(r"\\?\").map(str::to_string).unwrap_or(s),
    }
}

/// `<directory of the database>/.arc.pid`.
pub fn pidfile_for(resolved_db: &Path) -> PathBuf {
    resolved_db
        .parent()
        .unwrap_or(Path::new("."))
        .join(".arc.pid")
}

/// What a pidfile says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidInfo {
    pub pid: u32,
    pub port: u16,
    pub url: String,
}

/// Writes the pidfile atomically, in the reference's exact format.
pub fn write_pidfile(path: &Path, pid: u32, port: u16, url: &str) -> Result<()> {
    let text = format!(
        "{{\"pid\": {pid}, \"port\": {port}, \"url\": {}}}",
        serde_json::to_string(url)?
    );
    write_atomic(path, text.as_bytes())
}

/// The largest pidfile read (the reference's are about 60 bytes).
pub const PIDFILE_MAX_BYTES: u64 = 4096;

/// Reads a pidfile; anything that is not a JSON object with integer-like
/// `pid` and `port` and a string `url` is ignored, and so is anything that
/// is not a regular file of at most [`PIDFILE_MAX_BYTES`]: a symlink, FIFO
/// or device there is refused without following it or waiting
/// (`sys::file::read_small`).
pub fn read_pidfile(path: &Path) -> Option<PidInfo> {
    let small = crate::sys::file::read_small(path, PIDFILE_MAX_BYTES).ok()?;
    parse_pidfile(&small.bytes)
}

/// What a pidfile candidate turned out to be (see [`read_trusted_pidfile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pidfile {
    /// Nothing there, or not a pidfile: passed over without a word, as
    /// the reference does.
    Absent,
    /// There, but another user could have written or replaced it, or it
    /// is no regular file: why, to be shown in a `note`.
    Untrusted(String),
    Found(PidInfo),
}

/// Reads a pidfile that `arc ensure`, `stop` and `reset` may act on
/// (docs/SECURITY.md, "`arc stop` signals only a verified hub"): a
/// regular file of at most [`PIDFILE_MAX_BYTES`], not reached through a
/// symlink, and on Unix owned by the user we run as and, unless it lies
/// in the database's own directory (`own_dir`: whoever can write there
/// can replace the database too), in a directory that only its owner can
/// write. Windows has no such owners and modes; there only the file's
/// kind and size are checked.
pub fn read_trusted_pidfile(path: &Path, own_dir: bool) -> Pidfile {
    use crate::sys::file;
    let small = match file::read_small(path, PIDFILE_MAX_BYTES) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Pidfile::Absent,
        Err(e)
            if crate::sys::dir::is_refusal(&e) || e.kind() == std::io::ErrorKind::FileTooLarge =>
        {
            return Pidfile::Untrusted(e.to_string());
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Pidfile::Untrusted(format!("cannot be read: {e}"));
        }
        Err(_) => return Pidfile::Absent,
    };
    if file::owned_by_us(small.owner) == Some(false) {
        let uid = small.owner.unwrap_or_default();
        return Pidfile::Untrusted(format!("is owned by another user (uid {uid})"));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    if !own_dir && file::writable_by_others(dir) == Some(true) {
        return Pidfile::Untrusted("its directory can be written by other users".into());
    }
    match parse_pidfile(&small.bytes) {
        Some(info) => Pidfile::Found(info),
        None => Pidfile::Absent,
    }
}

/// A pidfile's text, in the reference's format.
fn parse_pidfile(bytes: &[u8]) -> Option<PidInfo> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let obj = v.as_object()?;
    let num = |k: &str| -> Option<i64> {
        match obj.get(k)? {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => crate::input::py_int(s),
            _ => None,
        }
    };
    let pid = u32::try_from(num("pid")?).ok()?;
    let port = u16::try_from(num("port")?).ok()?;
    let url = match obj.get("url")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(PidInfo { pid, port, url })
}

/// Deletes the pidfile only if it still names this process and port.
pub fn remove_pidfile_if_ours(path: &Path, pid: u32, port: u16) -> Result<()> {
    match read_pidfile(path) {
        Some(info) if info.pid == pid && info.port == port => Ok(std::fs::remove_file(path)?),
        _ => Ok(()),
    }
}

/// Pidfile candidates, in the reference's order: the working directory
/// and its ancestors, then the storage directory and its ancestors.
pub fn pidfile_candidates(cwd: &Path, storage: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let storage_dir = storage.parent().map(Path::to_path_buf).unwrap_or_default();
    for start in [cwd.to_path_buf(), storage_dir] {
        let start = std::fs::canonicalize(&start).unwrap_or(start);
        for dir in start.ancestors() {
            let candidate = dir.join(".arc.pid");
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
    }
    out
}

/// Writes `bytes` to `path` through a temp file in the same directory
/// (`.<name>.<32 hex>.tmp`) and a rename, so readers never see a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", crate::ids::uuid4_hex()));
    let result = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("a/../../b")), PathBuf::from("../b"));
    }

    #[test]
    fn pidfile_round_trip_and_format() {
        let dir = std::env::temp_dir().join(format!("arc-paths-{}", crate::ids::uuid4_hex()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(".arc.pid");
        write_pidfile(&p, 9017, 7111, "http://127.0.0.1:7111").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            r#"{"pid": 9017, "port": 7111, "url": "http://127.0.0.1:7111"}"#
        );
        assert_eq!(
            read_pidfile(&p),
            Some(PidInfo {
                pid: 9017,
                port: 7111,
                url: "http://127.0.0.1:7111".into()
            })
        );
        remove_pidfile_if_ours(&p, 1, 7111).unwrap();
        assert!(p.exists(), "another pid's file must stay");
        remove_pidfile_if_ours(&p, 9017, 7111).unwrap();
        assert!(!p.exists());
        std::fs::write(&p, "not json").unwrap();
        assert_eq!(read_pidfile(&p), None);
        std::fs::write(&p, r#"{"pid": "12", "port": 80.0, "url": "u"}"#).unwrap();
        assert_eq!(
            read_pidfile(&p),
            Some(PidInfo {
                pid: 12,
                port: 80,
                url: "u".into()
            })
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[cfg(unix)]
    #[test]
    fn pidfiles_others_could_have_written_are_untrusted_and_say_why() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("arc-paths-{}", crate::ids::uuid4_hex()));
        std::fs::create_dir_all(&dir).unwrap();
        let mode = |m: u32| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m));
        mode(0o755).unwrap();
        let p = dir.join(".arc.pid");
        write_pidfile(&p, 9017, 7111, "http://127.0.0.1:7111").unwrap();
        let info = read_pidfile(&p).unwrap();
        assert_eq!(
            read_trusted_pidfile(&p, false),
            Pidfile::Found(info.clone())
        );
        let shared = Pidfile::Untrusted("its directory can be written by other users".into());
        for m in [0o775, 0o757, 0o1777] {
            mode(m).unwrap();
            assert_eq!(read_trusted_pidfile(&p, false), shared, "{m:o}");
            // Beside the database, the directory is the database's business.
            assert_eq!(read_trusted_pidfile(&p, true), Pidfile::Found(info.clone()));
        }
        mode(0o755).unwrap();
        if crate::sys::file::owned_by_us(Some(0)) == Some(true) {
            // As root, a file can be given to another user.
            std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
            assert_eq!(
                read_trusted_pidfile(&p, true),
                Pidfile::Untrusted("is owned by another user (uid 65534)".into())
            );
            assert_eq!(
                read_pidfile(&p),
                Some(info.clone()),
                "still readable as such"
            );
        }
        std::fs::remove_file(&p).unwrap();
        assert_eq!(read_trusted_pidfile(&p, true), Pidfile::Absent);
        // A FIFO (no writer: a blocking read would wait forever), a link
        // to /dev/zero (endless) or to a good pidfile, a huge file.
        crate::sys::file::make_fifo(&p);
        let fifo = Pidfile::Untrusted("is a FIFO, socket or device".into());
        assert_eq!(read_trusted_pidfile(&p, true), fifo);
        assert_eq!(read_pidfile(&p), None);
        std::fs::remove_file(&p).unwrap();
        let elsewhere = dir.join("real.pid");
        write_pidfile(&elsewhere, 9017, 7111, "http://127.0.0.1:7111").unwrap();
        for target in [Path::new("/dev/zero"), &elsewhere] {
            std::os::unix::fs::symlink(target, &p).unwrap();
            let link = Pidfile::Untrusted("is a symbolic link".into());
            assert_eq!(read_trusted_pidfile(&p, true), link);
            assert_eq!(read_pidfile(&p), None);
            std::fs::remove_file(&p).unwrap();
        }
        std::fs::write(&p, vec![b' '; 5000]).unwrap();
        let big = Pidfile::Untrusted("is larger than 4096 bytes".into());
        assert_eq!(read_trusted_pidfile(&p, true), big);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn candidates_walk_both_ancestries_without_duplicates() {
        let c = pidfile_candidates(
            Path::new("/nonexistent/a/b"),
            Path::new("/nonexistent/a/db.sqlite3"),
        );
        assert_eq!(c[0], PathBuf::from("/nonexistent/a/b/.arc.pid"));
        assert_eq!(
            c.iter()
                .filter(|p| p.as_path() == Path::new("/nonexistent/a/.arc.pid"))
                .count(),
            1
        );
    }
}
