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
//! Its other direction, MCP servers as tool sources (`[mcp.<name>]`), is the plugin
//! runtime's: `plugboard_runtime::runtime::mcp`.
//!
//! [`McpSettings`] is the `[mcp]` table of `plugboard.toml`.

pub mod server;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::runtime::mcp::McpServerConfig;

pub use server::{McpError, ToolServer};

/// The agent whose rules judge MCP calls when `[mcp] agent` names none.
pub const DEFAULT_AGENT: &str = "build";

/// `[mcp]`: how Plugboard serves its tools to MCP clients (`agent`), and the MCP servers
/// whose tools it offers (`[mcp.<name>]` tables, handed to the plugin runtime).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct McpSettings {
    /// The agent whose permission rules judge the calls of MCP clients (default `build`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// `[mcp.<name>]`: every other key is a server's table.
    #[serde(flatten)]
    pub servers: BTreeMap<String, McpServerConfig>,
}

/// Reads `agent`, and every other key as a server's table, so that a misspelt setting is
/// named as such rather than as a server that is not a table.
impl<'de> Deserialize<'de> for McpSettings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Settings;
        impl<'de> serde::de::Visitor<'de> for Settings {
            type Value = McpSettings;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the [mcp] table")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<McpSettings, A::Error> {
                let mut settings = McpSettings::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "agent" {
                        settings.agent = Some(map.next_value()?);
                    } else {
                        let server = map.next_value_seed(ServerTable(&key))?;
                        settings.servers.insert(key, server);
                    }
                }
                Ok(settings)
            }
        }
        deserializer.deserialize_map(Settings)
    }
}

/// One `[mcp.<name>]` table; anything but a table is refused with what `[mcp]` holds.
struct ServerTable<'a>(&'a str);

impl<'de> serde::de::DeserializeSeed<'de> for ServerTable<'_> {
    type Value = McpServerConfig;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<McpServerConfig, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ServerTable<'_> {
    type Value = McpServerConfig;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self.0;
        write!(
            f,
            "a table: `{key}` is not a setting of [mcp] (its setting is `agent`; another key names an MCP server, as a [mcp.{key}] table)"
        )
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<McpServerConfig, A::Error> {
        McpServerConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
    }
}

impl McpSettings {
    /// The agent whose rules apply.
    pub fn agent(&self) -> &str {
        self.agent.as_deref().unwrap_or(DEFAULT_AGENT)
    }
}
