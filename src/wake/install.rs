/*!
`arc hooks install|uninstall`: merges Arc's entries into a harness's
settings file (or takes them out), keeping everything else.

Arc's entries are the command hooks whose program is `arc` (in any
directory, `.exe` allowed) run as `arc hook ...`. Installing puts one in
each of the harness's context events (and Claude Code's `Stop`, in the
background with `asyncRewake`), in place of the one already there, or in
a matcher group of its own at the end; the guard event's hook goes in a
group with the guard's matcher (its tools that write files).
Uninstalling takes them out, and the groups and events that held nothing
else. Every other key, event,
group and hook stays where it was: the file is read into [`Json`], which
keeps the order of keys (this crate's serde_json map sorts them).

A file that is not a settings object is refused untouched. A changed
file is written atomically, with the old one's permissions, after its
previous bytes are saved beside it as `<file>.arc-backup`; an unchanged
one is not written at all. Timeouts are in seconds, except Gemini CLI's,
which are in milliseconds (docs/WAKE.md).
*/

use std::fmt::{self, Write as _};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{
    CONTEXT_HOOK_TIMEOUT_SEC, GUARD_HOOK_TIMEOUT_SEC, Harness, InstallArgs, STOP_HOOK_TIMEOUT_SEC,
    Scope, WAKE_EVENT,
};
use crate::error::{Error, Result};

/// The largest settings file Arc reads.
const MAX_SETTINGS_BYTES: u64 = 4 << 20;

/// What the previous file is saved as, beside it.
const BACKUP_SUFFIX: &str = ".arc-backup";

/// Keys under Gemini CLI's `hooks` that were switches, not events, before
/// version 0.26 moved them to `hooksConfig`: kept, never read as events.
const GEMINI_LEGACY_KEYS: &[&str] = &["enabled", "disabled", "notifications"];

/// Runs the command; returns what to print.
pub fn run(a: &InstallArgs) -> Result<String> {
    let path = settings_path(a)?;
    let before = read(&path)?;
    let mut doc = match &before {
        Some(bytes) => parse(bytes).map_err(|why| refuse(&path, &why))?,
        None => Json::Object(Vec::new()),
    };
    let wanted = match a.uninstall {
        true => Vec::new(),
        false => wanted_hooks(a.harness, &hook_command(a)?),
    };
    let skip = match a.harness {
        Harness::Gemini => GEMINI_LEGACY_KEYS,
        _ => &[],
    };
    let arc_before = count_arc(&doc);
    let changes = merge(&mut doc, &wanted, skip).map_err(|why| refuse(&path, &why))?;
    let text = render(&doc)?;

    let mut out = String::new();
    if changes.is_empty() {
        let _ = writeln!(out, "nothing to change in {}", path.display());
    } else {
        let did = match (a.uninstall, a.dry_run) {
            (false, true) => "would install",
            (false, false) => "installed",
            (true, true) => "would remove",
            (true, false) => "removed",
        };
        let what = match a.uninstall {
            false => format!("{} hooks for agent {} in", wanted.len(), a.agent),
            true => format!("{} Arc hooks from", arc_before),
        };
        let note = match (&before, a.dry_run) {
            (_, true) => String::new(),
            (Some(_), false) => format!(" (backup: {})", backup_path(&path).display()),
            (None, false) => " (new file)".to_string(),
        };
        let _ = writeln!(out, "{did} {what} {}{note}", path.display());
        for (event, change) in &changes {
            let _ = writeln!(out, "  {event}: {}", change.word());
        }
    }
    if a.dry_run {
        out.push_str(&text);
        out.push_str("(dry run: nothing written)\n");
    } else if !changes.is_empty() {
        write(&path, before.as_deref(), &text)?;
    }
    Ok(out)
}

/// The error for a settings file Arc will not change.
fn refuse(path: &Path, why: &str) -> Error {
    Error::invalid(format!(
        "hooks: {}: {why}; nothing was changed",
        path.display()
    ))
}

/// The settings file the command changes, through a symlink at it (a
/// dotfile manager's link stays a link).
fn settings_path(a: &InstallArgs) -> Result<PathBuf> {
    let base = match &a.scope {
        Scope::Project(dir) => crate::paths::absolute(dir)?,
        Scope::User => home()?,
    };
    let path = base.join(a.harness.def().settings);
    let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return Ok(path);
    }
    std::fs::canonicalize(&path)
        .map_err(|e| refuse(&path, &format!("cannot follow the symlink ({e})")))
}

/// The home directory, as the harnesses find it (Node's `os.homedir()`:
/// `USERPROFILE` first on Windows, `HOME` elsewhere).
fn home() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    #[cfg(windows)]
    let found = var("USERPROFILE").or_else(|| var("HOME"));
    #[cfg(not(windows))]
    let found = var("HOME");
    match found {
        Some(h) => crate::paths::absolute(Path::new(&h)),
        None => Err(Error::invalid(
            "hooks: --user needs the home directory, and HOME is not set",
        )),
    }
}

/// The file's bytes, or `None` when there is no file.
fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    match crate::sys::file::read_small(path, MAX_SETTINGS_BYTES) {
        Ok(small) => Ok(Some(small.bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(refuse(path, &e.to_string())),
    }
}

/// The settings object in `bytes` (an empty file is an empty object).
fn parse(bytes: &[u8]) -> std::result::Result<Json, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Ok(Json::Object(Vec::new()));
    }
    // The plain parse first: its error says where, and it bounds the depth
    // the ordered parse recurses to.
    serde_json::from_str::<Value>(text).map_err(|e| format!("not JSON ({e})"))?;
    let doc = Json::parse(text).map_err(|e| format!("not JSON ({e})"))?;
    match doc {
        Json::Object(_) => Ok(doc),
        _ => Err("the top level is not a JSON object".into()),
    }
}

/// The file's new text: 2-space pretty JSON and a newline.
fn render(doc: &Json) -> Result<String> {
    let mut text = serde_json::to_string_pretty(doc)?;
    text.push('\n');
    Ok(text)
}

fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(BACKUP_SUFFIX);
    PathBuf::from(name)
}

/// Saves `before` beside `path`, then replaces `path` with `text`.
fn write(path: &Path, before: Option<&[u8]>, text: &str) -> Result<()> {
    let fail = |e: io::Error| refuse(path, &format!("cannot write it ({e})"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let perms = std::fs::metadata(path).ok().map(|m| m.permissions());
    if let Some(old) = before {
        replace_file(&backup_path(path), old, perms.as_ref()).map_err(fail)?;
    }
    replace_file(path, text.as_bytes(), perms.as_ref()).map_err(fail)
}

/// Writes `bytes` to a temporary file beside `path` and renames it over
/// `path` ([`crate::paths::write_atomic`], keeping the permissions of the
/// file it replaces: a settings file may hold keys).
fn replace_file(path: &Path, bytes: &[u8], perms: Option<&std::fs::Permissions>) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", crate::ids::uuid4_hex()));
    let result = (|| -> io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        if perms.is_some() {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        #[cfg(unix)]
        if let Some(p) = perms {
            f.set_permissions(p.clone())?;
        }
        #[cfg(not(unix))]
        let _ = perms;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The command every installed hook runs: this `arc`, `hook`, the
/// harness, the agent and the way to the hub, each quoted for the shell.
fn hook_command(a: &InstallArgs) -> Result<String> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::invalid(format!("hooks: cannot find this arc executable: {e}")))?;
    // On Windows with `/` separators, which every shell there takes bare
    // (Git Bash, which Claude Code runs hooks with, eats bare backslashes).
    let utf8 = |p: &Path| match p.to_str() {
        Some(s) if cfg!(windows) => Ok(s.replace('\\', "/")),
        Some(s) => Ok(s.to_string()),
        None => Err(Error::invalid(format!(
            "hooks: {}: the path is not UTF-8",
            p.display()
        ))),
    };
    let mut words = vec![
        quote(&utf8(&exe)?),
        "hook".to_string(),
        quote(a.harness.name()),
        "--agent".to_string(),
        quote(&a.agent),
    ];
    if let Some(url) = &a.base_url {
        words.push("--base-url".to_string());
        words.push(quote(url));
    }
    if let Some(dir) = &a.relay_dir {
        words.push("--relay-dir".to_string());
        words.push(quote(&utf8(&crate::paths::absolute(dir)?)?));
    }
    Ok(words.join(" "))
}

/// One hook Arc installs: its event, the matcher of the group it must sit
/// in (`None`: any group of the event), and the hook.
#[derive(Debug, Clone, PartialEq)]
struct Wanted {
    event: String,
    matcher: Option<&'static str>,
    hook: Json,
}

/// Each hook Arc installs in `harness`.
fn wanted_hooks(harness: Harness, command: &str) -> Vec<Wanted> {
    // Gemini CLI counts hook timeouts in milliseconds, the others in seconds.
    let unit = match harness {
        Harness::Gemini => 1000,
        _ => 1,
    };
    let def = harness.def();
    let mut out: Vec<Wanted> = def
        .context_events
        .iter()
        .map(|e| Wanted {
            event: e.to_string(),
            matcher: None,
            hook: hook(command, false, CONTEXT_HOOK_TIMEOUT_SEC * unit),
        })
        .collect();
    out.push(Wanted {
        event: def.guard.event.to_string(),
        matcher: Some(def.guard.matcher),
        hook: hook(command, false, GUARD_HOOK_TIMEOUT_SEC * unit),
    });
    if harness.can_wake() {
        out.push(Wanted {
            event: WAKE_EVENT.to_string(),
            matcher: None,
            hook: hook(command, true, STOP_HOOK_TIMEOUT_SEC * unit),
        });
    }
    out
}

fn hook(command: &str, rewake: bool, timeout: u64) -> Json {
    let mut fields = vec![
        ("type".to_string(), Json::Scalar(Value::from("command"))),
        ("command".to_string(), Json::Scalar(Value::from(command))),
    ];
    if rewake {
        fields.push(("asyncRewake".to_string(), Json::Scalar(Value::Bool(true))));
    }
    fields.push(("timeout".to_string(), Json::Scalar(Value::from(timeout))));
    Json::Object(fields)
}

/// A matcher group holding only `w`'s hook, with its matcher (no matcher:
/// every harness runs such a group for every occurrence of the event).
fn group(w: &Wanted) -> Json {
    let mut fields = Vec::new();
    if let Some(m) = w.matcher {
        fields.push(("matcher".to_string(), Json::Scalar(Value::from(m))));
    }
    fields.push(("hooks".to_string(), Json::Array(vec![w.hook.clone()])));
    Json::Object(fields)
}

/// What happened to one event's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Added,
    Replaced,
    Removed,
}

impl Change {
    fn word(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Replaced => "replaced",
            Change::Removed => "removed",
        }
    }
}

/// Puts each hook of `wanted` into `doc` in place of Arc's
/// entries, and takes Arc's entries out of every other event (with an
/// empty `wanted`, out of all). Keys in `skip` under `hooks` are not
/// events. Returns each event that changed, in the file's order.
fn merge(
    doc: &mut Json,
    wanted: &[Wanted],
    skip: &[&str],
) -> std::result::Result<Vec<(String, Change)>, String> {
    let Json::Object(top) = doc else {
        return Err("the top level is not a JSON object".into());
    };
    let at = match top.iter().position(|(k, _)| k == "hooks") {
        Some(at) => at,
        None if wanted.is_empty() => return Ok(Vec::new()),
        None => {
            top.push(("hooks".to_string(), Json::Object(Vec::new())));
            top.len() - 1
        }
    };
    let Json::Object(events) = &mut top[at].1 else {
        return Err("\"hooks\" is not a JSON object".into());
    };
    let is_event = |name: &str| !skip.contains(&name);
    if let Some((name, _)) = events
        .iter()
        .find(|(name, v)| is_event(name) && !matches!(v, Json::Array(_)))
    {
        return Err(format!("hooks.{name} is not a JSON array"));
    }
    let mut changes = Vec::new();
    let mut emptied = Vec::new();
    for (i, (name, groups)) in events.iter_mut().enumerate() {
        let Json::Array(groups) = groups else {
            continue;
        };
        if !is_event(name) {
            continue;
        }
        let want = wanted.iter().find(|w| w.event == *name);
        let had = groups.len();
        if let Some(change) = merge_event(groups, want) {
            changes.push((name.clone(), change));
        }
        if had > 0 && groups.is_empty() {
            emptied.push(i);
        }
    }
    for i in emptied.iter().rev() {
        events.remove(*i);
    }
    for w in wanted {
        if !events.iter().any(|(name, _)| *name == w.event) {
            events.push((w.event.clone(), Json::Array(vec![group(w)])));
            changes.push((w.event.clone(), Change::Added));
        }
    }
    if events.is_empty() && !emptied.is_empty() {
        top.remove(at);
    }
    Ok(changes)
}

/// One event's groups: the first of Arc's hooks in a group with `want`'s
/// matcher (any group, when it has none) becomes `want`'s hook (or, with
/// none, a new group at the end holds it), the others go, and so does a
/// group they leave empty.
fn merge_event(groups: &mut Vec<Json>, want: Option<&Wanted>) -> Option<Change> {
    let mut placed = false;
    let mut changed = false;
    let mut emptied = Vec::new();
    for (g, group) in groups.iter_mut().enumerate() {
        let fits =
            want.is_some_and(|w| w.matcher.is_none_or(|m| group.str_at("matcher") == Some(m)));
        let Some(Json::Array(hooks)) = group.get_mut("hooks") else {
            continue;
        };
        let had = hooks.len();
        let mut i = 0;
        while i < hooks.len() {
            if !is_arc_hook(&hooks[i]) {
                i += 1;
                continue;
            }
            match want {
                Some(w) if fits && !placed => {
                    placed = true;
                    if hooks[i] != w.hook {
                        hooks[i] = w.hook.clone();
                        changed = true;
                    }
                    i += 1;
                }
                _ => {
                    hooks.remove(i);
                    changed = true;
                }
            }
        }
        if had > 0 && hooks.is_empty() {
            emptied.push(g);
        }
    }
    for g in emptied.iter().rev() {
        groups.remove(*g);
    }
    match (want, placed) {
        (Some(w), false) => {
            groups.push(group(w));
            Some(Change::Added)
        }
        (Some(_), true) => changed.then_some(Change::Replaced),
        (None, _) => changed.then_some(Change::Removed),
    }
}

/// How many of Arc's hooks `doc` holds.
fn count_arc(doc: &Json) -> usize {
    let Some(Json::Object(events)) = doc.get("hooks") else {
        return 0;
    };
    let hooks = |g: &Json| match g.get("hooks") {
        Some(Json::Array(hooks)) => hooks.iter().filter(|h| is_arc_hook(h)).count(),
        _ => 0,
    };
    events
        .iter()
        .filter_map(|(_, groups)| match groups {
            Json::Array(groups) => Some(groups.iter().map(hooks).sum::<usize>()),
            _ => None,
        })
        .sum()
}

/// True for a command hook that runs `arc hook ...`.
fn is_arc_hook(hook: &Json) -> bool {
    hook.str_at("type") == Some("command") && hook.str_at("command").is_some_and(is_arc_command)
}

/// True if `command`'s program has the file stem `arc` (any case, `.exe`
/// allowed) and its first argument is `hook`.
fn is_arc_command(command: &str) -> bool {
    let (program, rest) = first_word(command);
    let name = program
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let stem = name.strip_suffix(".exe").unwrap_or(&name);
    let mut args = rest.split_whitespace();
    stem == "arc"
        && rest.starts_with(char::is_whitespace)
        && args.next() == Some("hook")
        && args.next().is_some()
}

/// The first shell word of `command`, unquoted, and the text after it.
/// A backslash outside quotes escapes only blanks, quotes and itself, so
/// an unquoted Windows path keeps its backslashes.
fn first_word(command: &str) -> (String, &str) {
    let s = command.trim_start();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => return (word, &s[i..]),
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None | Some('"'), '\\') => match chars.peek() {
                Some(&(_, n))
                    if n == '"'
                        || n == '\\'
                        || (quote.is_none() && (n == '\'' || n.is_whitespace())) =>
                {
                    word.push(n);
                    chars.next();
                }
                _ => word.push('\\'),
            },
            (_, c) => word.push(c),
        }
    }
    (word, "")
}

/// `s` as one word for the shell the harness runs hooks through.
fn quote(s: &str) -> String {
    match cfg!(windows) {
        true => quote_windows(s),
        false => quote_posix(s),
    }
}

/// True if `s` is one word in any shell as it is.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+:,./-".contains(c))
}

/// POSIX: bare when plain, else in single quotes (`'` as `'\''`).
fn quote_posix(s: &str) -> String {
    match plain(s) {
        true => s.to_string(),
        false => format!("'{}'", s.replace('\'', r"'\''")),
    }
}

/// Windows: bare when plain, else in double quotes (`"` as `\"`), which
/// Git Bash and cmd.exe both read (PowerShell would want `&` before a
/// quoted program).
fn quote_windows(s: &str) -> String {
    match plain(s) {
        true => s.to_string(),
        false => format!("\"{}\"", s.replace('"', "\\\"")),
    }
}

/// A JSON value whose objects keep their keys in the file's order.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Scalar(Value),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses `text`, one level at a time through [`RawValue`] (its depth
    /// is bounded by the caller's plain parse).
    fn parse(text: &str) -> serde_json::Result<Json> {
        let text = text.trim_start();
        match text.as_bytes().first() {
            Some(b'{') => {
                let Entries(entries) = serde_json::from_str(text)?;
                entries
                    .into_iter()
                    .map(|(k, v)| Ok((k, Json::parse(v.get())?)))
                    .collect::<serde_json::Result<_>>()
                    .map(Json::Object)
            }
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text)?;
                items
                    .into_iter()
                    .map(|v| Json::parse(v.get()))
                    .collect::<serde_json::Result<_>>()
                    .map(Json::Array)
            }
            _ => serde_json::from_str(text).map(Json::Scalar),
        }
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        match self {
            Json::Object(entries) => entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str_at(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Json::Scalar(Value::String(s))) => Some(s),
            _ => None,
        }
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Json::Scalar(v) => v.serialize(s),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// One object's members in order, their values unparsed.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Entries<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Json {
        parse(text.as_bytes()).unwrap()
    }

    fn arc(agent: &str) -> String {
        format!("/opt/bin/arc hook claude-code --agent {agent}")
    }

    #[test]
    fn posix_quoting_leaves_plain_words_bare() {
        assert_eq!(quote_posix("/usr/local/bin/arc"), "/usr/local/bin/arc");
        assert_eq!(
            quote_posix("http://127.0.0.1:8765"),
            "http://127.0.0.1:8765"
        );
        assert_eq!(quote_posix(""), "''");
        assert_eq!(quote_posix("a b"), "'a b'");
        assert_eq!(quote_posix("o'brien"), r"'o'\''brien'");
        assert_eq!(quote_posix("$HOME;rm -rf ~"), "'$HOME;rm -rf ~'");
        assert_eq!(quote_posix("a=b"), "'a=b'");
    }

    #[test]
    fn windows_quoting_uses_double_quotes() {
        assert_eq!(quote_windows("C:/bin/arc.exe"), "C:/bin/arc.exe");
        assert_eq!(quote_windows(r"C:\bin\arc.exe"), r#""C:\bin\arc.exe""#);
        assert_eq!(
            quote_windows(r"C:\Program Files\arc.exe"),
            r#""C:\Program Files\arc.exe""#
        );
        assert_eq!(quote_windows(r#"say "hi""#), r#""say \"hi\"""#);
    }

    #[cfg(unix)]
    #[test]
    fn posix_quoting_round_trips_through_sh() {
        let words = [
            "plain",
            "a b",
            "o'brien",
            "$HOME `x` \"q\" \\ ;&|<>*?",
            "",
            "ünï",
        ];
        let line: Vec<String> = words.iter().map(|w| quote_posix(w)).collect();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {}", line.join(" ")))
            .output()
            .unwrap();
        let printed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(printed.lines().collect::<Vec<_>>(), words);
    }

    #[test]
    fn first_word_unquotes_the_program() {
        assert_eq!(first_word("arc hook x").0, "arc");
        assert_eq!(
            first_word("  '/a b/arc' hook x"),
            ("/a b/arc".to_string(), " hook x")
        );
        assert_eq!(
            first_word(r#""C:\Program Files\arc.exe" hook"#).0,
            r"C:\Program Files\arc.exe"
        );
        assert_eq!(first_word(r"/my\ dir/arc hook").0, "/my dir/arc");
        assert_eq!(first_word(r"C:\bin\arc.exe hook").0, r"C:\bin\arc.exe");
        assert_eq!(first_word("'it'\\''s'/arc hook").0, "it's/arc");
    }

    #[test]
    fn arc_commands_are_recognised_by_their_program() {
        assert!(is_arc_command("/usr/bin/arc hook codex --agent a"));
        assert!(is_arc_command("'/x y/ARC.EXE' hook gemini --agent 'b c'"));
        assert!(is_arc_command(r"C:\tools\Arc.exe  hook claude-code"));
        assert!(is_arc_command("arc\thook claude-code --agent a"));
        assert!(!is_arc_command("arc hook"));
        assert!(!is_arc_command("arc watch --agent a"));
        assert!(!is_arc_command("/usr/bin/archive hook x"));
        assert!(!is_arc_command("echo arc hook x"));
        assert!(!is_arc_command("arc.sh hook x"));
        assert!(!is_arc_command(""));
    }

    #[test]
    fn parsing_keeps_key_order_and_values() {
        let text = "{\n  \"zeta\": 1,\n  \"alpha\": {\n    \"b\": [\n      1.50,\n      \"\\u00e9\",\n      null\n    ],\n    \"a\": true\n  }\n}\n";
        let d = doc(text);
        let out = render(&d).unwrap();
        assert!(out.find("zeta").unwrap() < out.find("alpha").unwrap());
        assert!(out.find("\"b\"").unwrap() < out.find("\"a\"").unwrap());
        assert!(out.contains("1.50"), "{out}");
        let again = render(&doc(&out)).unwrap();
        assert_eq!(again, out);
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    fn wanted(agent: &str) -> Vec<Wanted> {
        wanted_hooks(Harness::ClaudeCode, &arc(agent))
    }

    #[test]
    fn merge_replaces_in_place_and_drops_duplicates() {
        let mut d = doc(&format!(
            r#"{{"hooks": {{"PostToolUse": [
                {{"matcher": "Bash", "hooks": [{{"type": "command", "command": "lint"}}, {{"type": "command", "command": "{}"}}]}},
                {{"hooks": [{{"type": "command", "command": "{}"}}]}}
            ], "Notification": [{{"hooks": [{{"type": "command", "command": "{}"}}]}}]}}}}"#,
            arc("old"),
            arc("old2"),
            arc("old3"),
        ));
        let changes = merge(&mut d, &wanted("bob"), &[]).unwrap();
        assert!(changes.contains(&("PostToolUse".to_string(), Change::Replaced)));
        assert!(changes.contains(&("Notification".to_string(), Change::Removed)));
        let hooks = d.get("hooks").unwrap();
        assert!(hooks.get("Notification").is_none());
        let Some(Json::Array(post)) = hooks.get("PostToolUse") else {
            panic!()
        };
        assert_eq!(post.len(), 1, "the emptied group is gone");
        assert_eq!(post[0].str_at("matcher"), Some("Bash"));
        let Some(Json::Array(inner)) = post[0].get("hooks") else {
            panic!()
        };
        assert_eq!(inner[0].str_at("command"), Some("lint"));
        assert_eq!(inner[1].str_at("command"), Some(arc("bob").as_str()));
        assert_eq!(count_arc(&d), 5);
    }

    #[test]
    fn the_guard_hook_sits_in_a_group_with_its_matcher() {
        let mut d = doc(&format!(
            r#"{{"hooks": {{"PreToolUse": [
                {{"matcher": "Bash", "hooks": [{{"type": "command", "command": "{}"}}, {{"type": "command", "command": "audit"}}]}},
                {{"matcher": "Edit|Write|MultiEdit", "hooks": [{{"type": "command", "command": "fmt"}}]}}
            ]}}}}"#,
            arc("old"),
        ));
        let changes = merge(&mut d, &wanted("bob"), &[]).unwrap();
        assert!(changes.contains(&("PreToolUse".to_string(), Change::Added)));
        let Some(Json::Array(pre)) = d.get("hooks").unwrap().get("PreToolUse") else {
            panic!()
        };
        assert_eq!(pre.len(), 3, "the user's groups stay, Arc's gets its own");
        assert_eq!(
            pre[0].get("hooks").unwrap(),
            &Json::Array(vec![doc(r#"{"type": "command", "command": "audit"}"#)])
        );
        assert_eq!(pre[2].str_at("matcher"), Some("Edit|Write|MultiEdit"));
        let want = wanted("bob")
            .into_iter()
            .find(|w| w.event == "PreToolUse")
            .unwrap();
        assert_eq!(
            pre[2].get("hooks").unwrap(),
            &Json::Array(vec![want.hook.clone()])
        );
        let keys: Vec<&str> = match &pre[2] {
            Json::Object(f) => f.iter().map(|(k, _)| k.as_str()).collect(),
            _ => panic!(),
        };
        assert_eq!(keys, ["matcher", "hooks"]);

        // In a group with the right matcher, it is replaced where it is.
        let before = render(&d).unwrap();
        assert!(merge(&mut d, &wanted("bob"), &[]).unwrap().is_empty());
        assert_eq!(render(&d).unwrap(), before);
        let changes = merge(&mut d, &wanted("carol"), &[]).unwrap();
        assert!(changes.contains(&("PreToolUse".to_string(), Change::Replaced)));
        let Some(Json::Array(pre)) = d.get("hooks").unwrap().get("PreToolUse") else {
            panic!()
        };
        assert_eq!(pre.len(), 3);
    }

    #[test]
    fn unmerge_takes_out_only_arcs_entries() {
        let original = r#"{"a": 1, "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "say done"}]}], "Empty": []}}"#;
        let mut d = doc(original);
        merge(&mut d, &wanted("bob"), &[]).unwrap();
        let changes = merge(&mut d, &[], &[]).unwrap();
        assert_eq!(changes.len(), 5);
        assert!(changes.iter().all(|(_, c)| *c == Change::Removed));
        assert_eq!(d, doc(original));
        assert!(merge(&mut d, &[], &[]).unwrap().is_empty());

        let mut only = doc(r#"{"a": 1}"#);
        merge(&mut only, &wanted("bob"), &[]).unwrap();
        merge(&mut only, &[], &[]).unwrap();
        assert_eq!(only, doc(r#"{"a": 1}"#), "an emptied hooks object goes");
    }

    #[test]
    fn gemini_legacy_switches_are_not_events() {
        let text = r#"{"hooks": {"enabled": true, "disabled": ["x"], "AfterTool": []}}"#;
        let mut d = doc(text);
        assert!(merge(&mut d.clone(), &[], &[]).is_err());
        let want = wanted_hooks(Harness::Gemini, "arc hook gemini --agent a");
        merge(&mut d, &want, GEMINI_LEGACY_KEYS).unwrap();
        let hooks = d.get("hooks").unwrap();
        assert_eq!(hooks.get("enabled"), Some(&Json::Scalar(Value::Bool(true))));
        let Some(Json::Array(after)) = hooks.get("AfterTool") else {
            panic!()
        };
        assert_eq!(
            after[0].get("hooks").unwrap(),
            &Json::Array(vec![want[2].hook.clone()])
        );
        assert_eq!(
            want[2].hook.get("timeout"),
            Some(&Json::Scalar(Value::from(CONTEXT_HOOK_TIMEOUT_SEC * 1000)))
        );
        assert_eq!(want[3].event, "BeforeTool");
        assert_eq!(want[3].matcher, Some("^(write_file|replace)$"));
        assert_eq!(
            want[3].hook.get("timeout"),
            Some(&Json::Scalar(Value::from(GUARD_HOOK_TIMEOUT_SEC * 1000)))
        );
    }
}
