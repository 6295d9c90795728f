/*!
`arc mcp`: a Model Context Protocol server on stdio for one agent.
(Being written; see issue 7.)
*/

use crate::cli::AgentArgs;
use crate::error::{Error, Result};

/// Serves MCP on stdin/stdout until EOF.
pub fn run_stdio(_args: &AgentArgs) -> Result<()> {
    Err(Error::Usage(
        "mcp is not available in this build yet".into(),
    ))
}
