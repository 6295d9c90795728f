//! The house rules that docs/ARCHITECTURE.md states as invariants, checked
//! on the source tree itself: what is deliberately absent stays absent.
//! The vendored HTTP server (`src/vendor/`) is someone else's house and is
//! left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/` but the vendored code, with its text and
/// its path relative to `src/`, with `/` separators.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    for _ in 0..10_000 {
        let Some(dir) = dirs.pop() else { break };
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path: PathBuf = entry.unwrap().path();
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if rel == "vendor" {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else if rel.ends_with(".rs") {
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    assert!(out.len() > 20, "found only {} source files", out.len());
    out.sort();
    out
}

/// The code of a file without its `#[cfg(test)] mod tests` block (which
/// rustfmt always places last) and without line comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to (`api/feeds.rs` is `api`).
fn top(rel: &str) -> String {
    rel.split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_string()
}

#[test]
fn no_source_file_is_over_a_thousand_lines() {
    let long: Vec<_> = sources()
        .into_iter()
        .map(|(rel, text)| (text.lines().count(), rel))
        .filter(|(n, _)| *n > 1000)
        .collect();
    assert!(long.is_empty(), "split these files: {long:?}");
}

/// Functions as (lines, file, name), found from rustfmt's layout: a body
/// ends at the first line that closes it at the indentation it opened.
fn functions() -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    for (rel, text) in sources() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let Some(at) = trimmed.find("fn ") else {
                continue;
            };
            let head = &trimmed[..at];
            let is_fn = head.split_whitespace().all(|w| {
                w.starts_with("pub") || ["const", "unsafe", "extern", "\"C\""].contains(&w)
            });
            if !is_fn || line.trim_end().ends_with(';') {
                continue;
            }
            let indent = &line[..line.len() - trimmed.len()];
            let close = format!("{indent}}}");
            let name: String = trimmed[at + 3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if let Some(end) = lines[i + 1..].iter().position(|l| *l == close) {
                out.push((end + 2, rel.clone(), name));
            }
        }
    }
    out
}

#[test]
fn no_function_is_over_about_120_lines() {
    let all = functions();
    assert!(all.len() > 300, "found only {} functions", all.len());
    let long: Vec<_> = all.into_iter().filter(|(n, _, _)| *n > 120).collect();
    assert!(long.is_empty(), "split these functions: {long:?}");
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    // `crate::Hub` and friends are re-exports: count them as their modules.
    let aliases = [
        ("Hub", "server"),
        ("HubConfig", "config"),
        ("Error", "error"),
        ("Result", "error"),
    ];
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in sources() {
        let from = top(&rel);
        if from == "lib" || from == "main" {
            continue;
        }
        for piece in code(&text).split("crate::").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let name = aliases
                .iter()
                .find(|(a, _)| *a == name)
                .map_or(name.clone(), |(_, m)| m.to_string());
            if !name.is_empty() && name != from {
                graph.entry(from.clone()).or_default().insert(name);
            }
        }
    }
    assert!(graph.len() > 10, "{graph:?}");
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit<'a>(
        g: &'a BTreeMap<String, BTreeSet<String>>,
        u: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == u) {
            return Some(
                path[i..]
                    .iter()
                    .map(|s| s.to_string())
                    .chain([u.to_string()])
                    .collect(),
            );
        }
        if !done.insert(u) {
            return None;
        }
        path.push(u);
        for v in g.get(u).into_iter().flatten() {
            if let Some(c) = visit(g, v, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for u in graph.keys() {
        if let Some(cycle) = visit(&graph, u, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

/// Files (outside `allowed`) whose code contains any of `needles`.
fn offenders(needles: &[&str], allowed: impl Fn(&str) -> bool) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(rel, _)| !allowed(rel))
        .filter(|(_, text)| {
            let c = code(text);
            needles.iter().any(|n| c.contains(n))
        })
        .map(|(rel, _)| rel)
        .collect()
}

#[test]
fn unsafe_code_lives_only_in_sys() {
    let bad = offenders(&["unsafe {", "unsafe fn", "unsafe impl"], |r| {
        r.starts_with("sys/")
    });
    assert!(bad.is_empty(), "unsafe outside src/sys/: {bad:?}");
}

#[test]
fn sql_lives_only_in_the_store() {
    let sql = [
        "\"SELECT ",
        "\"INSERT ",
        "\"UPDATE ",
        "\"DELETE FROM",
        "\"CREATE ",
        "\"PRAGMA ",
        "\"BEGIN",
        "rusqlite::",
    ];
    // error.rs names rusqlite's error type to wrap it, and nothing else.
    let bad = offenders(&sql, |r| r.starts_with("store/") || r == "error.rs");
    assert!(bad.is_empty(), "SQL outside src/store/: {bad:?}");
}

#[test]
fn parking_lives_only_in_notify() {
    let bad = offenders(&["Condvar", "thread::sleep", "thread::park"], |r| {
        r == "notify.rs"
    });
    assert!(bad.is_empty(), "waiting outside src/notify.rs: {bad:?}");
}

#[test]
fn handlers_never_see_the_server_or_http() {
    let bad = offenders(
        &["tiny_http", "crate::server", "crate::edge", "crate::Hub"],
        |r| !r.starts_with("api/"),
    );
    assert!(bad.is_empty(), "handlers that import the server: {bad:?}");
}
