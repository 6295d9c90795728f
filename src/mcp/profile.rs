//! Which tools `arc mcp` offers (`--tools core|all|LIST`): the profile,
//! the tool list and lookup under it, and what the list costs a host in
//! context.
//!
//! `core` (the CLI's default, [`DEFAULT_SPEC`]) is the reference adapter's
//! six tools plus claim-next, reserve and the path check: enough to talk,
//! take work and stay off other agents' files, in under 2,000 tokens.
//! `all` is every tool; a LIST picks tools by name or tag
//! (`reservations,arc_post_message`), in table order.
//! [`Profile::default`] offers every tool, as `serve` did before
//! profiles, so a program that embeds the server keeps its tools.

use serde_json::{Value, json};

pub use super::tools::tags;
use super::tools::{TOOLS, Tool, find};
use crate::error::{Error, Result};

/// What `arc mcp` offers when `--tools` is not given.
pub const DEFAULT_SPEC: &str = "core";

/// The tools on offer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    /// `None`: every tool.
    pub names: Option<Vec<String>>,
}

impl Profile {
    /// Every tool.
    pub fn all() -> Profile {
        Profile { names: None }
    }

    /// The tools tagged `core`.
    pub fn core() -> Profile {
        Profile {
            names: Some(
                TOOLS
                    .iter()
                    .filter(|t| t.has_tag("core"))
                    .map(|t| t.name.to_string())
                    .collect(),
            ),
        }
    }

    /// Reads a `--tools` value: `all`, or tool names and tags separated by
    /// commas. Unknown words are a usage error that names each of them.
    pub fn parse(spec: &str) -> Result<Profile> {
        let words: Vec<&str> = spec
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .collect();
        if words.is_empty() {
            return Err(Error::Usage(
                "--tools needs a tool name or tag (core, all, ...)".into(),
            ));
        }
        let tags = tags();
        let unknown: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| *w != "all" && !tags.contains(w) && find(w).is_none())
            .collect();
        if !unknown.is_empty() {
            return Err(Error::Usage(format!(
                "--tools: unknown tool or tag: {} (tags: all, {}; `arc mcp --help` lists the tools)",
                unknown.join(", "),
                tags.join(", ")
            )));
        }
        if words.contains(&"all") {
            return Ok(Profile::all());
        }
        let picked = TOOLS
            .iter()
            .filter(|t| words.iter().any(|w| *w == t.name || t.has_tag(w)))
            .map(|t| t.name.to_string())
            .collect();
        Ok(Profile {
            names: Some(picked),
        })
    }

    /// The tools on offer, in table order.
    pub fn tools(&self) -> impl Iterator<Item = &'static Tool> + '_ {
        TOOLS.iter().filter(move |t| permits(self, t))
    }
}

/// The `tools/list` entries under `p`.
pub fn tools_for(p: &Profile) -> Value {
    Value::Array(p.tools().map(Tool::describe).collect())
}

/// The tool named `name`, if `p` offers it.
pub fn find_in(p: &Profile, name: &str) -> Option<&'static Tool> {
    p.tools().find(|t| t.name == name)
}

fn permits(p: &Profile, t: &Tool) -> bool {
    p.names
        .as_ref()
        .is_none_or(|names| names.iter().any(|n| n == t.name))
}

/// The size of `tools/list` under `p`: the bytes of `{"tools": [...]}` as
/// compact JSON, which is what a host puts into the model's context.
pub fn list_bytes(p: &Profile) -> usize {
    json!({"tools": tools_for(p)}).to_string().len()
}

/// A rough token count for `bytes` of JSON: a quarter of them, rounded up
/// (tokenisers differ; JSON schemas run at about four bytes a token).
pub fn approx_tokens(bytes: usize) -> usize {
    bytes.div_ceil(4)
}

/// For help and docs: (profile, tools, bytes, approximate tokens) of
/// `core` and `all`.
pub fn sizes() -> [(&'static str, usize, usize, usize); 2] {
    [("core", Profile::core()), ("all", Profile::all())].map(|(name, p)| {
        let bytes = list_bytes(&p);
        (name, p.tools().count(), bytes, approx_tokens(bytes))
    })
}

/// `n` with a comma between thousands (`12,345`).
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The rows of the size table in docs/MCP.md, as they must read there.
pub fn size_rows() -> Vec<String> {
    sizes()
        .iter()
        .map(|(name, count, bytes, tokens)| {
            format!(
                "| `{name}` | {count} | {} | {} |",
                thousands(*bytes),
                thousands(*tokens)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Profile) -> Vec<&'static str> {
        p.tools().map(|t| t.name).collect()
    }

    #[test]
    fn core_is_the_reference_six_plus_next_reserve_and_check() {
        assert_eq!(
            names(&Profile::core()),
            [
                "arc_post_message",
                "arc_poll_messages",
                "arc_dm",
                "arc_list_agents",
                "arc_create_channel",
                "arc_rpc_call",
                "arc_next_task",
                "arc_reserve",
                "arc_check_paths",
            ]
        );
        assert_eq!(Profile::parse(DEFAULT_SPEC).unwrap(), Profile::core());
        assert_eq!(Profile::default(), Profile::all());
        assert_eq!(names(&Profile::all()).len(), TOOLS.len());
    }

    #[test]
    fn lists_pick_by_name_and_tag_in_table_order() {
        let p = Profile::parse(" reservations, arc_post_message ,,").unwrap();
        assert_eq!(
            names(&p),
            [
                "arc_post_message",
                "arc_reserve",
                "arc_check_paths",
                "arc_list_reservations",
                "arc_renew_reservation",
                "arc_release_reservation",
            ]
        );
        assert_eq!(Profile::parse("core,all").unwrap(), Profile::all());
        assert!(find_in(&p, "arc_reserve").is_some());
        assert!(find_in(&p, "arc_dm").is_none());
        assert_eq!(tools_for(&p).as_array().unwrap().len(), 6);
        for bad in ["", " , ", "core,arc_bogus,nope"] {
            assert!(
                matches!(Profile::parse(bad), Err(Error::Usage(_))),
                "{bad:?}"
            );
        }
        match Profile::parse("core,arc_bogus,nope") {
            Err(Error::Usage(m)) => assert!(
                m.starts_with("--tools: unknown tool or tag: arc_bogus, nope (tags: all, core, "),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn core_stays_under_two_thousand_tokens() {
        let [(_, n, bytes, tokens), (_, all, all_bytes, _)] = sizes();
        assert_eq!(n, 9);
        assert_eq!(all, TOOLS.len());
        assert!(
            tokens < 2000,
            "core's tools/list is {bytes} bytes, ~{tokens} tokens"
        );
        assert!(bytes < all_bytes);
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(approx_tokens(9), 3);
    }

    #[test]
    fn the_docs_size_figures_are_the_computed_ones() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/MCP.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let rows = size_rows();
        for row in &rows {
            assert!(
                doc.contains(row.as_str()),
                "docs/MCP.md must show the tools/list sizes as they are now; its table rows should read:\n{}",
                rows.join("\n")
            );
        }
    }
}
