/*!
Path patterns for file reservations: normalising, matching and overlap.

Two reservations conflict when some path could match both patterns, which
[`Pattern::overlaps`] decides exactly. The model: a path is a non-empty
sequence of non-empty segments of chars other than `/` and the control
chars (as [`normalize`] leaves it). A pattern is anchored at the project
root and matches whole paths: `src/a.rs` is that file; `src` followed by
a `**` segment (or by a trailing slash, which normalises to that) is the
directory and everything below. Two
patterns meet iff some path matches both, decided by a product automaton
over segments (`**` = zero or more segments) and, per pair of ordinary
segments, over their chars; each state pair is visited once and segment
pairs are memoised: O(len(a) * len(b)).
*/

use unicode_normalization::UnicodeNormalization;

/// Largest input [`normalize`] accepts, in bytes.
pub const MAX_BYTES: usize = 1024;
/// Most segments a normalised path or pattern may have.
pub const MAX_SEGMENTS: usize = 64;

/// How paths compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fold {
    pub case_insensitive: bool,
}

/// The start of an absolute path.
#[derive(Debug, PartialEq, Eq)]
enum Prefix {
    /// `/x/y`.
    Slash,
    /// `C:/x`, the letter lowercased (drive letters never fold-sensitive).
    Drive(char),
    /// `//server/share/x`, both lowercased (Windows compares them so).
    Unc(String, String),
}

/// Normalises a pattern or a path to its canonical, project-relative form:
/// `\` becomes `/`; a leading `./` is dropped and `.` and empty segments collapse;
/// `a/../b` resolves to `b`, but a `..` that climbs out of the project is an error;
/// an absolute path (`/x/y`, `C:\x`, `C:/x`, `\\server\share\x`) is made relative to `root`
/// when it lies under it (compare the root with the same folding; Windows drive letters
/// compare case-insensitively always), otherwise an error; Unicode NFC; case folding
/// (lowercase, full Unicode) when `fold.case_insensitive`; a trailing `/` means the
/// directory and everything below it, so it becomes `/**`.
/// The empty result (the project itself) is an error, as are NUL and control characters,
/// and inputs over 1,024 bytes or 64 segments.
/// Errors are short English phrases used after "invalid path pattern <raw>: ".
///
/// Also refused: a drive-relative `C:x` (so a top-level name cannot start
/// with a letter and a colon), and `..` straight after a `**` segment,
/// whose lexical resolution would shrink what the pattern covers.
pub fn normalize(raw: &str, root: Option<&str>, fold: Fold) -> Result<String, String> {
    check_chars(raw)?;
    let unified = raw.replace('\\', "/");
    let (prefix, rest) = split_absolute(&unified)?;
    let segs = resolve(rest, fold, prefix.is_some())?;
    let rel = match prefix {
        None => segs,
        Some(p) => strip_root(p, segs, root, fold)?,
    };
    if rel.is_empty() {
        return Err("empty: it names the project itself".into());
    }
    let mut rel = rel;
    if unified.ends_with('/') && rel.last().is_some_and(|l| l != "**") {
        rel.push("**".into());
    }
    if rel.len() > MAX_SEGMENTS {
        return Err(format!("over {MAX_SEGMENTS} segments"));
    }
    let out = rel.join("/");
    if out.len() > MAX_BYTES {
        return Err("over 1,024 bytes once normalised".into());
    }
    Ok(out)
}

fn check_chars(raw: &str) -> Result<(), String> {
    if raw.len() > MAX_BYTES {
        return Err("over 1,024 bytes".into());
    }
    if raw.contains('\0') {
        return Err("contains NUL".into());
    }
    if raw.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    Ok(())
}

/// Splits off an absolute prefix; `s` already uses `/` only.
fn split_absolute(s: &str) -> Result<(Option<Prefix>, &str), String> {
    if let Some(unc) = s.strip_prefix("//") {
        let mut parts = unc.splitn(3, '/');
        let server = parts.next().unwrap_or("");
        let share = parts.next().unwrap_or("");
        if server.is_empty() || share.is_empty() {
            return Err("incomplete UNC path (\\\\server\\share\\...)".into());
        }
        let p = Prefix::Unc(fold_segment(server, true), fold_segment(share, true));
        return Ok((Some(p), parts.next().unwrap_or("")));
    }
    if let Some(rest) = s.strip_prefix('/') {
        return Ok((Some(Prefix::Slash), rest));
    }
    let mut chars = s.chars();
    if let (Some(letter), Some(':')) = (chars.next(), chars.next())
        && letter.is_ascii_alphabetic()
    {
        let rest = &s[2..];
        return match rest.strip_prefix('/') {
            Some(r) => Ok((Some(Prefix::Drive(letter.to_ascii_lowercase())), r)),
            None if rest.is_empty() => Ok((Some(Prefix::Drive(letter.to_ascii_lowercase())), "")),
            None => Err("drive-relative path (C:x)".into()),
        };
    }
    Ok((None, s))
}

/// NFC, then (when folding) lowercase and NFC again, since lowercasing
/// can leave a string that is not composed.
fn fold_segment(seg: &str, case_insensitive: bool) -> String {
    let composed: String = seg.nfc().collect();
    if case_insensitive {
        composed.to_lowercase().nfc().collect()
    } else {
        composed
    }
}

/// Splits on `/`, drops `.` and empty segments, resolves `..` lexically.
fn resolve(rest: &str, fold: Fold, absolute: bool) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for raw_seg in rest.split('/') {
        let seg = fold_segment(raw_seg, fold.case_insensitive);
        match seg.as_str() {
            "" | "." => {}
            ".." => match out.pop() {
                Some(prev) if prev == "**" => return Err("`..` after `**`".into()),
                Some(_) => {}
                None if absolute => return Err("`..` climbs above the filesystem root".into()),
                None => return Err("`..` climbs out of the project".into()),
            },
            _ => out.push(seg),
        }
    }
    Ok(out)
}

/// Makes an absolute path's segments relative to `root`.
fn strip_root(
    prefix: Prefix,
    segs: Vec<String>,
    root: Option<&str>,
    fold: Fold,
) -> Result<Vec<String>, String> {
    let Some(root) = root else {
        return Err("absolute, and no project root is known".into());
    };
    check_chars(root).map_err(|e| format!("project root {e}"))?;
    let unified = root.replace('\\', "/");
    let (root_prefix, root_rest) = split_absolute(&unified)?;
    let Some(root_prefix) = root_prefix else {
        return Err("the project root is not absolute".into());
    };
    let root_segs = resolve(root_rest, fold, true)?;
    if prefix != root_prefix || !segs.starts_with(&root_segs) {
        return Err("absolute, and outside the project root".into());
    }
    Ok(segs[root_segs.len()..].to_vec())
}

/// A set of chars: sorted, disjoint inclusive ranges of scalar values,
/// always within [`ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct CharSet(Vec<(u32, u32)>);

/// Every char a normalised segment can hold: all but `/` and the control
/// chars (`char::is_control`: U+0000-001F, U+007F-009F), which `normalize`
/// refuses; the surrogate gap holds no chars.
const ALL: [(u32, u32); 4] = [
    (0x20, 0x2E),
    (0x30, 0x7E),
    (0xA0, 0xD7FF),
    (0xE000, 0x10_FFFF),
];

impl CharSet {
    fn new(mut ranges: Vec<(u32, u32)>, negated: bool) -> CharSet {
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        if negated {
            let mut comp = Vec::new();
            let mut next = 0u32;
            for &(lo, hi) in &merged {
                if lo > next {
                    comp.push((next, lo - 1));
                }
                next = hi.saturating_add(1);
            }
            if next <= 0x10_FFFF {
                comp.push((next, 0x10_FFFF));
            }
            merged = comp;
        }
        CharSet(intersect(&merged, &ALL))
    }

    fn any() -> CharSet {
        CharSet(ALL.to_vec())
    }

    fn contains(&self, c: char) -> bool {
        let c = c as u32;
        self.0.iter().any(|&(lo, hi)| lo <= c && c <= hi)
    }

    fn meets(&self, other: &CharSet) -> bool {
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            if a.0.max(b.0) <= a.1.min(b.1) {
                return true;
            }
            if a.1 < b.1 { i += 1 } else { j += 1 }
        }
        false
    }
}

fn intersect(a: &[(u32, u32)], b: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (lo, hi) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if lo <= hi {
            out.push((lo, hi));
        }
        if a[i].1 < b[j].1 { i += 1 } else { j += 1 }
    }
    out
}

/// One char-level glob token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Any run of chars (`*`; also `**` inside a segment).
    Star,
    /// One given char.
    Lit(char),
    /// One char from a set (`?` or a class).
    Set(CharSet),
}

impl Tok {
    /// Some char matches this (single-char) token.
    fn nonempty(&self) -> bool {
        match self {
            Tok::Star | Tok::Lit(_) => true,
            Tok::Set(s) => !s.0.is_empty(),
        }
    }

    /// Some char matches both (single-char) tokens.
    fn meets(&self, other: &Tok) -> bool {
        match (self, other) {
            (Tok::Lit(a), Tok::Lit(b)) => a == b,
            (Tok::Lit(c), Tok::Set(s)) | (Tok::Set(s), Tok::Lit(c)) => s.contains(*c),
            (Tok::Set(a), Tok::Set(b)) => a.meets(b),
            (Tok::Star, _) | (_, Tok::Star) => false,
        }
    }
}

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// `**`: zero or more whole segments.
    Any,
    /// An ordinary segment: a char-level glob.
    Glob(Vec<Tok>),
}

impl Seg {
    /// Some segment (non-empty string) matches this, or it is `**`.
    fn satisfiable(&self) -> bool {
        match self {
            Seg::Any => true,
            Seg::Glob(toks) => toks.iter().all(Tok::nonempty),
        }
    }
}

/// A parsed, normalised pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segs: Vec<Seg>,
    literal: bool,
}

impl Pattern {
    /// Parses a pattern already passed through `normalize` (so `/`-separated, relative).
    /// Syntax per segment: literal chars, `?` (one char, not `/`), `*` (any run, not `/`),
    /// character classes `[abc]`, `[a-z]`, `[!a-z]` / `[^a-z]` (a class never matches `/`;
    /// an unterminated `[` is an error); a segment that is exactly `**` matches zero or more
    /// whole segments (`**` inside a segment, like `a**b`, behaves as `*`).
    ///
    /// In a class, a `]` first (after any `!`/`^`) is literal, as is a `-`
    /// first or last; a reversed range (`[z-a]`) is an error. There is no
    /// escape character (`normalize` turns `\` into `/`): write `[*]` for a
    /// literal `*`. Input that `normalize` could not have produced is refused.
    pub fn parse(normalized: &str) -> Result<Pattern, String> {
        check_chars(normalized)?;
        let mut segs = Vec::new();
        let mut literal = true;
        for raw in normalized.split('/') {
            if matches!(raw, "" | "." | "..") || raw.contains('\\') {
                return Err("not normalised (empty, `.`, `..` or `\\` segment)".into());
            }
            if raw == "**" {
                literal = false;
                if segs.last() != Some(&Seg::Any) {
                    segs.push(Seg::Any);
                }
                continue;
            }
            let toks = parse_segment(raw)?;
            literal &= raw.chars().all(|c| !matches!(c, '*' | '?' | '['));
            segs.push(Seg::Glob(toks));
        }
        if segs.len() > MAX_SEGMENTS {
            return Err(format!("over {MAX_SEGMENTS} segments"));
        }
        Ok(Pattern {
            text: normalized.to_owned(),
            segs,
            literal,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True if `path` (normalised) matches, whole: `src/*.rs` matches `src/a.rs` but not
    /// `src/sub/a.rs`; `src/**` matches `src` and everything below it. Anchored at the
    /// project root, unlike .gitignore: `*.rs` matches only top-level files; `**/*.rs`
    /// matches any depth.
    ///
    /// `path` is taken literally (a `*` in it is just a char); empty
    /// segments in it are skipped, and the empty path matches nothing.
    pub fn matches(&self, path: &str) -> bool {
        self.matches_path(&PathSegs::new(path))
    }

    /// [`Pattern::matches`] for a path split once ([`PathSegs::new`]), for
    /// checking one path against many patterns.
    pub fn matches_path(&self, path: &PathSegs) -> bool {
        !path.0.is_empty() && product(&self.segs, &path.0)
    }

    /// True if some path could match both.
    /// Symmetric. Decided exactly, by a product automaton over segments
    /// and, per segment pair, over chars; O(len(self) * len(other)).
    pub fn overlaps(&self, other: &Pattern) -> bool {
        product(&self.segs, &other.segs)
    }

    /// True if this pattern matches exactly one path (no wildcard or class): a literal.
    /// The first segment, when it is a literal: a path either pattern
    /// matches starts with it, so two patterns whose first literals differ
    /// can never overlap (a cheap test before [`Pattern::overlaps`]).
    pub fn first_literal(&self) -> Option<&str> {
        let first = self.text.split('/').next()?;
        (!first.contains(['*', '?', '['])).then_some(first)
    }

    pub fn is_literal(&self) -> bool {
        self.literal
    }
}

/// A path split into segments once, taken literally (a `*` in it is just
/// a char); empty segments are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSegs(Vec<Seg>);

impl PathSegs {
    pub fn new(path: &str) -> PathSegs {
        PathSegs(
            path.split('/')
                .filter(|s| !s.is_empty())
                .map(|s| Seg::Glob(s.chars().map(Tok::Lit).collect()))
                .collect(),
        )
    }
}

/// Parses one ordinary segment into tokens, runs of `*` collapsed.
fn parse_segment(raw: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        let tok = match c {
            '*' if toks.last() == Some(&Tok::Star) => continue,
            '*' => Tok::Star,
            '?' => Tok::Set(CharSet::any()),
            '[' => Tok::Set(parse_class(&mut chars)?),
            c => Tok::Lit(c),
        };
        toks.push(tok);
    }
    Ok(toks)
}

/// Parses a class after its `[`, through its `]`.
fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<CharSet, String> {
    let negated = matches!(chars.peek(), Some('!' | '^'));
    if negated {
        chars.next();
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(c) = chars.next() else {
            return Err("unterminated `[` class".into());
        };
        if c == ']' && !first {
            return Ok(CharSet::new(ranges, negated));
        }
        first = false;
        let mut ahead = chars.clone();
        match (ahead.next(), ahead.next()) {
            (Some('-'), Some(end)) if end != ']' => {
                chars.next();
                chars.next();
                if end < c {
                    return Err(format!("reversed range `{c}-{end}` in a class"));
                }
                ranges.push((c as u32, end as u32));
            }
            _ => ranges.push((c as u32, c as u32)),
        }
    }
}

/// A search over the states `(i, j)` of a product of two sequences of
/// lengths `n` and `m`, from `(0, 0)`: true once `(n, m)` is reached.
/// `next` pushes the successors of a state; each state is visited once.
fn reaches_end(
    n: usize,
    m: usize,
    mut next: impl FnMut(usize, usize, &mut Vec<(usize, usize)>),
) -> bool {
    let mut seen = vec![false; (n + 1) * (m + 1)];
    let mut stack = vec![(0usize, 0usize)];
    while let Some((i, j)) = stack.pop() {
        if std::mem::replace(&mut seen[i * (m + 1) + j], true) {
            continue;
        }
        if i == n && j == m {
            return true;
        }
        next(i, j, &mut stack);
    }
    false
}

/// The segment-level product automaton. A state `(i, j)` means a common
/// prefix of segments has been matched by `a[..i]` and `b[..j]`; it
/// accepts when both are done (`**` steps over itself as zero segments).
fn product(a: &[Seg], b: &[Seg]) -> bool {
    let m = b.len();
    let mut pair: Vec<Option<bool>> = vec![None; a.len() * m];
    reaches_end(a.len(), m, |i, j, stack| {
        let (sa, sb) = (a.get(i), b.get(j));
        if sa == Some(&Seg::Any) {
            stack.push((i + 1, j));
        }
        if sb == Some(&Seg::Any) {
            stack.push((i, j + 1));
        }
        match (sa, sb) {
            (Some(Seg::Any), Some(g @ Seg::Glob(_))) if g.satisfiable() => stack.push((i, j + 1)),
            (Some(g @ Seg::Glob(_)), Some(Seg::Any)) if g.satisfiable() => stack.push((i + 1, j)),
            (Some(Seg::Glob(x)), Some(Seg::Glob(y))) => {
                let memo = &mut pair[i * m + j];
                if *memo.get_or_insert_with(|| glob_overlap(x, y)) {
                    stack.push((i + 1, j + 1));
                }
            }
            _ => {}
        }
    })
}

/// The char-level product: do two segment globs share a string? A state
/// `(i, j)` means a common prefix has been matched by `a[..i]` and `b[..j]`.
/// (If the only shared string were empty, both would be `*`, which also
/// share every one-char string, so a shared non-empty segment exists.)
fn glob_overlap(a: &[Tok], b: &[Tok]) -> bool {
    reaches_end(a.len(), b.len(), |i, j, stack| {
        let (ta, tb) = (a.get(i), b.get(j));
        if ta == Some(&Tok::Star) {
            stack.push((i + 1, j));
        }
        if tb == Some(&Tok::Star) {
            stack.push((i, j + 1));
        }
        match (ta, tb) {
            (Some(Tok::Star), Some(Tok::Star)) | (None, _) | (_, None) => {}
            (Some(Tok::Star), Some(t)) if t.nonempty() => stack.push((i, j + 1)),
            (Some(t), Some(Tok::Star)) if t.nonempty() => stack.push((i + 1, j)),
            (Some(x), Some(y)) if x.meets(y) => stack.push((i + 1, j + 1)),
            _ => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFF: Fold = Fold {
        case_insensitive: false,
    };
    const ON: Fold = Fold {
        case_insensitive: true,
    };

    fn pat(raw: &str) -> Pattern {
        let n = normalize(raw, None, OFF).unwrap_or_else(|e| panic!("{raw}: {e}"));
        Pattern::parse(&n).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    /// Ok(normalised) or Err(part of the message).
    type Want = Result<&'static str, &'static str>;

    #[test]
    fn normalize_table() {
        let ux = Some("/home/me/proj");
        let win = Some("C:\\Users\\Me\\proj");
        let unc = Some("\\\\Server\\Share\\proj");
        let cases: &[(&str, Option<&str>, Fold, Want)] = &[
            ("./src//a.rs", None, OFF, Ok("src/a.rs")),
            ("src\\a.rs", None, OFF, Ok("src/a.rs")),
            ("a/./b/", None, OFF, Ok("a/b/**")),
            ("a/./b/**/", None, OFF, Ok("a/b/**")),
            ("a/./b", None, OFF, Ok("a/b")),
            ("a/../b", None, OFF, Ok("b")),
            ("a/b/../../c/", None, OFF, Ok("c/**")),
            ("../x", None, OFF, Err("climbs out of the project")),
            ("a/../../x", None, OFF, Err("climbs out of the project")),
            ("a/**/../b", None, OFF, Err("after `**`")),
            ("/home/me/proj/src/a.rs", ux, OFF, Ok("src/a.rs")),
            ("/home/me/proj/../proj/src/", ux, OFF, Ok("src/**")),
            ("/home/me/proj", ux, OFF, Err("names the project itself")),
            ("/home/me/projX/a", ux, OFF, Err("outside the project root")),
            ("/home/me/../a", ux, OFF, Err("outside the project root")),
            ("/..", ux, OFF, Err("climbs above the filesystem root")),
            ("/HOME/me/proj/a", ux, OFF, Err("outside the project root")),
            ("/HOME/me/proj/A", ux, ON, Ok("a")),
            ("C:\\Users\\Me\\proj\\src\\a.rs", win, OFF, Ok("src/a.rs")),
            ("c:/Users/Me/proj/src/a.rs", win, OFF, Ok("src/a.rs")),
            (
                "c:/users/me/proj/src/a.rs",
                win,
                OFF,
                Err("outside the project root"),
            ),
            ("c:/USERS/me/PROJ/Src/A.rs", win, ON, Ok("src/a.rs")),
            (
                "D:\\Users\\Me\\proj\\a",
                win,
                OFF,
                Err("outside the project root"),
            ),
            (
                "/Users/Me/proj/a",
                win,
                OFF,
                Err("outside the project root"),
            ),
            ("C:x", win, OFF, Err("drive-relative")),
            ("\\\\server\\share\\proj\\a", unc, OFF, Ok("a")),
            ("\\\\server\\", unc, OFF, Err("incomplete UNC path")),
            ("/x/y", None, OFF, Err("no project root is known")),
            ("C:\\x", None, OFF, Err("no project root is known")),
            ("/x/y", Some("rel/root"), OFF, Err("root is not absolute")),
            ("e\u{301}.md", None, OFF, Ok("\u{e9}.md")),
            ("SRC/A.rs", None, OFF, Ok("SRC/A.rs")),
            ("SRC/A.rs", None, ON, Ok("src/a.rs")),
            ("[A-Z]*.MD", None, ON, Ok("[a-z]*.md")),
            ("\u{130}", None, ON, Ok("i\u{307}")),
            ("", None, OFF, Err("names the project itself")),
            (".", None, OFF, Err("names the project itself")),
            ("./", None, OFF, Err("names the project itself")),
            ("a/..", None, OFF, Err("names the project itself")),
            ("a\u{7}b", None, OFF, Err("control character")),
            ("a\u{85}b", None, OFF, Err("control character")),
            ("a\0b", None, OFF, Err("NUL")),
        ];
        for (raw, root, fold, want) in cases {
            match (normalize(raw, *root, *fold), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{raw:?}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{raw:?}: {got}"),
                (got, _) => panic!("{raw:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn normalize_limits() {
        assert!(normalize(&"a".repeat(MAX_BYTES), None, OFF).is_ok());
        let most = "a/".repeat(MAX_SEGMENTS);
        let most = &most[..most.len() - 1];
        assert_eq!(normalize(most, None, OFF).as_deref(), Ok(most));
        let too_long = normalize(&"a".repeat(MAX_BYTES + 1), None, OFF);
        assert_eq!(too_long, Err("over 1,024 bytes".into()));
        let segs = "a/".repeat(MAX_SEGMENTS + 1);
        assert_eq!(normalize(&segs, None, OFF), Err("over 64 segments".into()));
        // A root deeper than the limit is fine: only the relative part counts.
        let deep = format!("/{}", "d/".repeat(MAX_SEGMENTS));
        assert_eq!(
            normalize(&format!("{deep}x"), Some(&deep), OFF),
            Ok("x".into())
        );
    }

    #[test]
    fn parse_table() {
        // Each line: patterns, then `literal`, `wild` or part of the error.
        let table = r"
            src/a.rs  a]b                  literal
            src/*.rs  a?c  [ab]  **  []]  [!]a]  [a-]  wild
            [a  [!  []                      unterminated
            [z-a]                           reversed range `z-a`
            a//b  /a  a/../b  a/.  a\b     not normalised
        ";
        for line in table.lines().filter(|l| !l.trim().is_empty()) {
            let (raws, want) = line.trim().split_at(line.trim().rfind("  ").unwrap_or(0));
            for raw in raws.split_whitespace() {
                match (Pattern::parse(raw), want.trim()) {
                    (Ok(p), "literal" | "wild") => {
                        assert_eq!(p.is_literal(), want.trim() == "literal", "{raw:?}");
                    }
                    (Err(got), want) => assert!(got.contains(want), "{raw:?}: {got}"),
                    (got, want) => panic!("{raw:?}: got {got:?}, want {want}"),
                }
            }
        }
        assert!(Pattern::parse("").is_err());
        // `[a` split by normalize across a `/` is unterminated too.
        assert!(Pattern::parse(&normalize("[a/b]", None, OFF).unwrap()).is_err());
        assert_eq!(pat("./src//a.rs").as_str(), "src/a.rs");
        assert_eq!(pat("a/**/**/b"), Pattern::parse("a/**/**/b").unwrap());
    }

    /// Each line of `table`: a pattern, then the strings it is checked
    /// against; one marked `!` must give false, the others true.
    fn each(table: &str, check: impl Fn(&str, &str) -> bool) {
        for line in table.lines().filter(|l| !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            let head = words.next().unwrap_or_default();
            for word in words {
                let (other, want) = word.strip_prefix('!').map_or((word, true), |w| (w, false));
                assert_eq!(check(head, other), want, "{head:?} vs {other:?}");
            }
        }
    }

    #[test]
    fn matches_table() {
        each(
            r"
            src           src  !src/a.rs  !srcx/a.rs  !sr
            src/a.rs      src/a.rs  !src  !src/a.rs/x  !src/a.rsx
            src/*.rs      src/a.rs  !src/a.rs/x  !src/sub/a.rs  !src/a.md
            *.rs          a.rs  !src/a.rs
            **/*.rs       a.rs  src/x/a.rs  !src/x/a.md
            **            anything/at/all  a
            src/**        src  src/x/y.rs  !srcx
            docs/**/x.md  docs/x.md  docs/a/b/x.md  !docs/a/b/y.md  !x.md
            a**b          axxb  ab  !ax/xb
            a?c           abc  !ac  !a/c  !abbc
            [a-c]x        bx  !dx  !x
            [!a-c]x       dx  !bx
            [^a-c]x       !bx  ex
            []]           ]  !a
            [a-]          -  a  !b
            [*]           *  !a
            ",
            |p, path| pat(p).matches(path),
        );
        assert!(!pat("*").matches(""));
    }

    #[test]
    fn overlap_table() {
        // Both orders are checked, so the table also checks symmetry.
        each(
            r"
            **            src/a.rs  a  **/x
            src/**        src/x/y.rs  src  !docs/**/x.md  !srcx/**
            src/*.rs      src/a.rs  !src/a.rs/x  !src/sub/a.rs  !src/a.md  src/**
            *.rs          !*.md  !src/a.rs  a.rs/**
            a*            *b  !b*
            a?c           abc  !ac  !abbc
            [a-c]x        bx  !dx
            [!a]x         !ax  bx  ?x
            [a-c]         [c-e]  ![d-e]
            [ab]          ![cd]  [!a]
            src           !src/a.rs  !srcx  src  src/**  src/
            src/a.rs      !src/b.rs  src/*  !src  src/
            docs/**/x.md  docs/x.md  docs/**  !docs/y.md  !docs2/x.md
            a/**/b/**/c   a/b/c  a/x/b/y/z/c  !a/c  !b/a/b/c
            **/test_*.py  tests/test_a.py  test_b.py  !tests/a.py  !src/a.rs  !**/*.rs
            src\a.rs      src/a.rs
            **/a          b/b/**  !b/b
            *             *  a
            *a*           *b*
            *a            !*b  *
            [!a]          ?  !a
            a/*/c         !a/b  !a/b/d  a/b/c
            a?            !a  a*
            ",
            |a, b| {
                let (a, b) = (pat(a), pat(b));
                assert_eq!(a.overlaps(&b), b.overlaps(&a), "symmetry");
                a.overlaps(&b)
            },
        );
    }

    #[test]
    fn overlap_after_folding_and_nfc() {
        let both = |a: &str, b: &str, fold: Fold| {
            let pa = Pattern::parse(&normalize(a, None, fold).unwrap()).unwrap();
            let pb = Pattern::parse(&normalize(b, None, fold).unwrap()).unwrap();
            assert_eq!(pa.overlaps(&pb), pb.overlaps(&pa));
            pa.overlaps(&pb)
        };
        assert!(both("SRC/A.rs", "src/a.rs", ON));
        assert!(!both("SRC/A.rs", "src/a.rs", OFF));
        // Classes fold too: `[A-Z]` becomes `[a-z]`, so it meets `q` only when folding.
        assert!(both("[A-Z].md", "Q.MD", ON));
        assert!(both("[A-Z].md", "q.md", ON));
        assert!(!both("[A-Z].md", "q.md", OFF));
        assert!(both("caf\u{e9}/x", "cafe\u{301}/**", OFF));
        assert!(both("CAFE\u{301}", "caf\u{e9}", ON));
        assert!(both("src\\sub\\a.rs", "src/sub/*.rs", OFF));
    }

    #[test]
    fn different_first_literals_never_overlap() {
        let pairs = [("src/a.rs", "docs/**"), ("a/**", "b/*"), ("x", "y/z")];
        for (a, b) in pairs {
            assert_ne!(pat(a).first_literal(), pat(b).first_literal());
            assert!(!pat(a).overlaps(&pat(b)), "{a} {b}");
        }
        assert_eq!(pat("**/x").first_literal(), None);
        assert_eq!(pat("s*/x").first_literal(), None);
        assert_eq!(pat("src/*.rs").first_literal(), Some("src"));
    }

    #[test]
    fn empty_class_matches_nothing() {
        // This class holds only `/` and the control chars, which no
        // normalised segment holds, so nothing matches it.
        let p = Pattern::parse("[! -.0-\u{10FFFF}]").unwrap();
        assert!(!p.overlaps(&pat("**")));
        assert!(!pat("**").overlaps(&p));
        assert!(!p.overlaps(&p));
        assert!(!pat("x/**").overlaps(&Pattern::parse("x/[! -.0-\u{10FFFF}]").unwrap()));
    }

    /// A tiny deterministic PRNG (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
        }
    }

    /// An independent backtracking matcher for the generated syntax
    /// (`a`, `b`, `*`, `?`, `[ab]`, `[!a]`, `**`), matching whole paths.
    fn reference(pat: &[&str], path: &[&str]) -> bool {
        match pat.split_first() {
            None => path.is_empty(),
            Some((&"**", rest)) => (0..=path.len()).any(|k| reference(rest, &path[k..])),
            Some((g, rest)) => {
                !path.is_empty()
                    && ref_chars(g.as_bytes(), path[0].as_bytes())
                    && reference(rest, &path[1..])
            }
        }
    }

    fn ref_chars(p: &[u8], s: &[u8]) -> bool {
        let one = |n: usize, ok: bool| ok && !s.is_empty() && ref_chars(&p[n..], &s[1..]);
        match p {
            [] => s.is_empty(),
            [b'*', rest @ ..] => (0..=s.len()).any(|k| ref_chars(rest, &s[k..])),
            [b'?', ..] => one(1, true),
            [b'[', b'a', b'b', b']', ..] => one(4, true),
            [b'[', b'!', b'a', b']', ..] => one(4, s.first() != Some(&b'a')),
            [c, ..] => one(1, s.first() == Some(c)),
        }
    }

    /// Every normalised path over {a, b, /} of 1 to `max` bytes.
    fn all_paths(max: usize) -> Vec<String> {
        let mut out: Vec<String> = vec!["a".into(), "b".into()];
        let mut k = 0;
        while k < out.len() {
            for tail in ["a", "b", "/a", "/b"] {
                if out[k].len() + tail.len() <= max {
                    out.push(format!("{}{tail}", out[k]));
                }
            }
            k += 1;
        }
        out
    }

    /// Patterns of 1-2 segments; a segment is `**` or 1-2 tokens from
    /// {a, b, *, ?, **, [ab], [!a]} (`**` inside a segment acts as `*`).
    fn random_pattern(rng: &mut Rng) -> String {
        const TOKS: [&str; 7] = ["a", "b", "*", "?", "**", "[ab]", "[!a]"];
        let segs: Vec<String> = (0..1 + rng.below(2))
            .map(|_| match rng.below(4) {
                0 => "**".to_string(),
                _ => (0..1 + rng.below(2))
                    .map(|_| TOKS[rng.below(TOKS.len())])
                    .collect(),
            })
            .collect();
        segs.join("/")
    }

    /// Exactness against brute force, both directions. Why paths of at
    /// most 8 bytes hold a witness whenever one exists: every non-empty
    /// set here contains `a` or `b` (the only negated class is `[!a]`, and
    /// no two sets meet outside {a, b}), so witness chars can be a or b. A
    /// segment glob of <= 2 tokens that shares a string with another
    /// shares one of <= 2 chars (a side with two single-char tokens has
    /// only 2-char words; otherwise each char of a shortest common word
    /// consumes one of the <= 2 single-char tokens). A shortest witness
    /// spends each ordinary segment of either pattern at most once, and a
    /// pattern with a `**` has at most one ordinary segment, so it has at
    /// most 3 segments (2 without `**`, where segments pair off): 3*2+2 = 8.
    #[test]
    fn overlaps_agrees_with_brute_force() {
        let paths = all_paths(8);
        let split: Vec<Vec<&str>> = paths.iter().map(|p| p.split('/').collect()).collect();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut pats: Vec<String> = (0..220).map(|_| random_pattern(&mut rng)).collect();
        pats.extend(["**/aa", "bb/bb", "a*/**", "**/*b"].map(String::from));
        let mut parsed = Vec::new();
        let mut bits: Vec<Vec<bool>> = Vec::new();
        for text in &pats {
            assert_eq!(normalize(text, None, OFF).as_deref(), Ok(text.as_str()));
            let p = Pattern::parse(text).unwrap();
            let segs: Vec<&str> = text.split('/').collect();
            let row: Vec<bool> = split.iter().map(|s| reference(&segs, s)).collect();
            for (path, &want) in paths.iter().zip(&row) {
                assert_eq!(p.matches(path), want, "{text:?} matches {path:?}");
            }
            parsed.push(p);
            bits.push(row);
        }
        let mut counts = [0usize; 2];
        for i in 0..parsed.len() {
            for j in i..parsed.len() {
                let brute = bits[i].iter().zip(&bits[j]).any(|(x, y)| *x && *y);
                let fast = parsed[i].overlaps(&parsed[j]);
                assert_eq!(fast, brute, "{:?} vs {:?}", pats[i], pats[j]);
                assert_eq!(parsed[j].overlaps(&parsed[i]), fast, "symmetry");
                counts[usize::from(fast)] += 1;
            }
        }
        // Both answers are well represented, so the check is not vacuous.
        assert!(counts[0] > 1000 && counts[1] > 1000, "{counts:?}");
    }

    #[test]
    fn pathological_patterns_finish() {
        let stars = |tail: &str| format!("{}{tail}", "*a".repeat(30));
        let (b, c) = (pat(&stars("*b")), pat(&stars("*c")));
        assert!(!b.overlaps(&c));
        assert!(b.overlaps(&pat("*b")));
        assert!(b.overlaps(&b));
        assert!(!b.matches(&format!("{}c", "a".repeat(40))));
        let deep = |tail: &str| format!("{}{tail}", "**/*a*/".repeat(30));
        let (x, y) = (pat(&deep("b")), pat(&deep("c/d")));
        assert!(!x.overlaps(&y));
        assert!(x.overlaps(&pat(&deep("*"))));
        assert!(!x.matches("a/a/b"));
        let wide = pat(&"?*".repeat(500));
        assert!(wide.overlaps(&pat(&"*?".repeat(500))));
    }
}
