//! MCP, the Model Context Protocol, on the official Rust SDK (`rmcp`).
//!
//! - [`server`]: Plugboard's sandboxed tools for any MCP client, over stdio
//!   (`plugboard mcp`) and streamable HTTP (`/mcp` of `plugboard serve`, behind the
//!   server's Host, Origin and secret checks). Every call runs under its plugin's grants and
//!   under the permission rules of one agent (`[mcp] agent`, `build` by default); a rule of
//!   `ask` asks the client (elicitation) or is refused with the reason. A reload tells the
//!   clients (`notifications/tools/list_changed`); a call in flight finishes on the plugin
//!   it started on.
//!
//! [`McpSettings`] is the `[mcp]` table of `plugboard.toml`.

pub mod server;

use serde::{Deserialize, Serialize};

pub use server::{McpError, ToolServer};

/// The agent whose rules judge MCP calls when `[mcp] agent` names none.
pub const DEFAULT_AGENT: &str = "build";

/// `[mcp]`: how Plugboard serves its tools to MCP clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSettings {
    /// The agent whose permission rules judge the calls of MCP clients (default `build`).
    pub agent: Option<String>,
}

impl McpSettings {
    /// The agent whose rules apply.
    pub fn agent(&self) -> &str {
        self.agent.as_deref().unwrap_or(DEFAULT_AGENT)
    }
}
