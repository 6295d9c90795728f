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

/// Reads a pidfile; anything that is not a JSON object with integer-like
/// `pid` and `port` and a string `url` is ignored.
pub fn read_pidfile(path: &Path) -> Option<PidInfo> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
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
