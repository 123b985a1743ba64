//! MCP servers as tool sources. Each `[mcp.<name>]` table names a server whose tools join
//! the registry as `<name>_<tool>`, beside the plugins' and under the same permission
//! rules and hooks. A stdio server runs under the `process` capability's confinement with
//! only the files, hosts and variables its table grants; a remote one is reached only where
//! its table's network grant allows, with headers whose secrets the host fills in.
//!
//! - [`config`]: the table, and what it resolves to at a start.
//! - [`connection`]: one live connection (the official SDK's client), bounded messages.
//! - [`supervisor`]: the lifecycle: servers start concurrently after the plugins (readiness
//!   does not wait), a server that ends is restarted with backoff and announced, a
//!   configuration change restarts only the servers whose table changed. Its tools enter
//!   and leave the registry by the same whole swap as plugins, so `tool.added` and
//!   `tool.removed` follow.
//!
//! A call has the table's time limit (the server is told the request is cancelled) and
//! output cap (the text is cut), and the secrets are masked in what it returns.

pub mod config;
pub mod connection;
pub mod supervisor;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

pub use config::McpServerConfig;
pub use supervisor::{McpServerState, McpServerStatus, McpSources};

use super::{CallError, ToolDefinition, ToolOutput};
use crate::capability::Limits;
use connection::Connection;

/// Set in a stdio server's environment: how many Plugboards started it, one inside the
/// other. A Plugboard configured to serve itself as its own MCP server would otherwise start
/// itself without end.
pub const DEPTH_VARIABLE: &str = "PLUGBOARD_MCP_DEPTH";

/// The deepest a Plugboard started as an MCP server may still start MCP servers.
pub const MAX_DEPTH: u32 = 3;

/// How many Plugboards started this one as a stdio MCP server (0: none).
pub fn depth() -> u32 {
    std::env::var(DEPTH_VARIABLE).ok().and_then(|d| d.parse().ok()).unwrap_or(0)
}

/// The longest tool name offered to models (what the OpenAI and Anthropic APIs accept).
pub const MAX_TOOL_NAME: usize = 64;

/// The label of a server's tools where a plugin's id would be (`GET /tools`, events).
pub fn owner_label(server: &str) -> String {
    format!("mcp:{server}")
}

/// A connected server's tools, as one registry holds them.
pub struct McpTools {
    /// The server's name (its table).
    pub server: String,
    /// Its table as the server was started with it.
    pub config: McpServerConfig,
    /// The tools, named `<server>_<tool>`.
    pub tools: Vec<ToolDefinition>,
    /// Each tool's name on the server.
    remote: BTreeMap<String, String>,
    connection: Arc<Connection>,
}

impl McpTools {
    /// The tools of `listed`, named for the registry; the second list says which were left
    /// out and why.
    pub(super) fn new(
        server: &str,
        config: McpServerConfig,
        listed: Vec<rmcp::model::Tool>,
        connection: Arc<Connection>,
    ) -> (McpTools, Vec<String>) {
        let (mut tools, mut remote, mut skipped) = (Vec::new(), BTreeMap::new(), Vec::new());
        for tool in listed {
            let name = local_name(server, &tool.name);
            if name.len() > MAX_TOOL_NAME {
                skipped.push(format!("`{}`: `{name}` is longer than {MAX_TOOL_NAME} characters", tool.name));
            } else if tools.len() >= super::tool::MAX_TOOLS {
                skipped.push(format!(
                    "`{}` and every tool after it: a source may offer at most {} tools",
                    tool.name,
                    super::tool::MAX_TOOLS
                ));
                break;
            } else if let std::collections::btree_map::Entry::Vacant(slot) = remote.entry(name.clone()) {
                slot.insert(tool.name.to_string());
                let description = tool.description.as_deref().or(tool.title.as_deref()).unwrap_or_default().to_string();
                tools.push(ToolDefinition::new(name, description, Value::Object((*tool.input_schema).clone())));
            } else {
                skipped.push(format!("`{}`: another of its tools is also named `{name}` here", tool.name));
            }
        }
        (McpTools { server: server.to_string(), config, tools, remote, connection }, skipped)
    }

    /// The connection its tools are called on.
    pub(super) fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// Calls tool `name` (a registry name) with `arguments` (a JSON object), within
    /// `limits`, masking `redactor`'s secrets in what comes back.
    pub async fn call(
        &self,
        name: &str,
        arguments: &str,
        limits: Limits,
        redactor: &crate::secrets::Redactor,
    ) -> Result<ToolOutput, CallError> {
        let server = self.server.clone();
        let remote = self
            .remote
            .get(name)
            .ok_or_else(|| CallError::UnknownTool { name: name.into(), available: self.remote.keys().cloned().collect() })?;
        let Ok(Value::Object(arguments)) = serde_json::from_str::<Value>(arguments) else {
            return Err(CallError::InvalidArguments { tool: name.into(), message: "the arguments are not a JSON object".into() });
        };
        let result = match self.connection.call(remote, arguments, limits.timeout()).await {
            Ok(Some(result)) => result,
            Ok(None) => return Err(CallError::McpTimeout { server, limit_ms: limits.timeout_ms }),
            Err(message) => return Err(CallError::McpServer { server, message: redactor.redact(&message).into_owned() }),
        };
        let text = redactor.redact(&content_text(&result.content)).into_owned();
        let text = cut(text, limits.max_output_bytes as usize, &server);
        if result.is_error == Some(true) {
            return Err(CallError::Failed { tool: name.into(), message: text });
        }
        let metadata = match result.structured_content {
            Some(Value::Object(object)) => serde_json::from_str(&redactor.redact(&Value::Object(object).to_string())).ok(),
            _ => None,
        };
        Ok(ToolOutput { text, title: None, metadata })
    }
}

/// `<server>_<tool>`, with what a model's tool name may not hold (anything but ASCII
/// letters, digits, `_` and `-`) replaced by `_`.
pub fn local_name(server: &str, tool: &str) -> String {
    let tool: String = tool.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    format!("{server}_{tool}")
}

/// A result's content as text: text as it is; images and audio by their type and size (a
/// model reads no base64 here); resources as their JSON.
fn content_text(content: &[rmcp::model::ContentBlock]) -> String {
    let mut parts = Vec::new();
    for block in content {
        if let Some(text) = block.as_text() {
            parts.push(text.text.clone());
            continue;
        }
        let json = serde_json::to_value(block).unwrap_or(Value::Null);
        match json["type"].as_str() {
            Some(kind @ ("image" | "audio")) => parts.push(format!(
                "[{kind} of type {}, {} bytes of base64, not shown]",
                json["mimeType"].as_str().unwrap_or("unknown"),
                json["data"].as_str().map_or(0, str::len)
            )),
            _ => parts.push(json.to_string()),
        }
    }
    parts.join("\n")
}

/// `text` within `cap` bytes, with a note of the cut.
fn cut(mut text: String, cap: usize, server: &str) -> String {
    if text.len() <= cap {
        return text;
    }
    let total = text.len();
    let mut end = cap;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("\n[output cut at {cap} of {total} bytes: the limit of [mcp.{server}] max_output_bytes]"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_keep_what_models_accept() {
        assert_eq!(local_name("everything", "get-sum"), "everything_get-sum");
        assert_eq!(local_name("fs", "read.file/v2"), "fs_read_file_v2");
    }

    #[test]
    fn output_over_the_cap_is_cut_on_a_character_boundary_with_a_note() {
        let text = cut("ééééé".to_string(), 5, "x");
        assert!(text.starts_with("éé\n"), "{text}");
        assert!(text.contains("[mcp.x] max_output_bytes"), "{text}");
        assert_eq!(cut("short".into(), 5, "x"), "short");
    }
}
