//! Which tools `arc mcp` offers (`--tools core|all|LIST`): the profile,
//! and the tool list and lookup under it.

use serde_json::Value;

use super::tools::{TOOLS, Tool};

/// The tools on offer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    /// `None`: every tool.
    pub names: Option<Vec<String>>,
}

/// The `tools/list` entries under `p`.
pub fn tools_for(p: &Profile) -> Value {
    Value::Array(
        TOOLS
            .iter()
            .filter(|t| permits(p, t))
            .map(Tool::describe)
            .collect(),
    )
}

/// The tool named `name`, if `p` offers it.
pub fn find_in(p: &Profile, name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.name == name && permits(p, t))
}

fn permits(p: &Profile, t: &Tool) -> bool {
    p.names
        .as_ref()
        .is_none_or(|names| names.iter().any(|n| n == t.name))
}
