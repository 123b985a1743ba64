//! Why a plugin could not be loaded, and why a call failed, typed at the runtime's border.

use crate::capability::CapabilityKind;
use crate::runtime::manifest::ManifestError;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Its manifest is missing or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Its grants in the configuration are invalid.
    #[error(transparent)]
    Grant(#[from] crate::capability::GrantError),
    /// It does not compile, or does not fit its world.
    #[error("{0}")]
    Component(String),
    /// Listing its tools failed.
    #[error("listing its tools failed: {0}")]
    Tools(String),
    /// Asking a provider what it serves failed, or its answer is invalid.
    #[error("describing the provider failed: {0}")]
    Provider(String),
    /// Asking a hook plugin what it handles failed, or its answer is invalid.
    #[error("describing the hooks failed: {0}")]
    Hooks(String),
    /// `[provenance] require_signatures` is set and the file is not installed, not the one
    /// installed, or signed by no trusted key.
    #[error(transparent)]
    Provenance(#[from] plugboard_provenance::ProvenanceError),
}

/// Why a tool call failed. Every variant names the plugin or tool and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No loaded plugin provides a tool of this name.
    #[error("no tool named `{name}`{}", if available.is_empty() { String::new() } else { format!(" (available: {})", available.join(", ")) })]
    UnknownTool {
        /// The name asked for.
        name: String,
        /// The names that exist.
        available: Vec<String>,
    },
    /// The arguments are not valid JSON or do not match the tool's schema.
    #[error("invalid arguments for `{tool}`: {message}")]
    InvalidArguments {
        /// The tool.
        tool: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The call needed a capability the plugin was not granted.
    #[error("plugin `{plugin}` was denied {kind} access to `{target}`: {reason}\n{hint}")]
    Denied {
        /// The plugin.
        plugin: String,
        /// The kind of capability.
        kind: CapabilityKind,
        /// What was refused.
        target: String,
        /// Why.
        reason: String,
        /// The configuration that would grant it, or why none can.
        hint: String,
    },
    /// The tool ran and reported a failure.
    #[error("`{tool}` failed: {message}")]
    Failed {
        /// The tool.
        tool: String,
        /// Its message.
        message: String,
    },
    /// The call ran past its time limit and was stopped.
    #[error(
        "plugin `{plugin}` exceeded its time limit of {limit_ms} ms and was stopped (raise `limits.timeout_ms` in [plugins.{plugin}] to allow more)"
    )]
    Timeout {
        /// The plugin.
        plugin: String,
        /// The limit.
        limit_ms: u64,
    },
    /// The plugin tried to grow its memory past the limit and was stopped.
    #[error(
        "plugin `{plugin}` exceeded its memory limit of {limit_mib} MiB and was stopped (raise `limits.memory_mib` in [plugins.{plugin}] to allow more)"
    )]
    MemoryExceeded {
        /// The plugin.
        plugin: String,
        /// The limit.
        limit_mib: u64,
    },
    /// The output is larger than allowed.
    #[error("plugin `{plugin}` returned {size} bytes of output, over its limit of {limit} bytes (`limits.max_output_bytes`)")]
    OutputTooLarge {
        /// The plugin.
        plugin: String,
        /// The size returned.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The plugin trapped (a panic, an `unreachable`, an out-of-bounds access).
    #[error("plugin `{plugin}` crashed: {message}")]
    Crashed {
        /// The plugin.
        plugin: String,
        /// The trap, and the plugin's last stderr lines (a panic message) when any.
        message: String,
    },
    /// Every instance slot of the engine is in use, and none came free in time.
    #[error(
        "plugin `{plugin}` is busy: all {capacity} instance slots are in use and none came free within {waited_ms} ms; try again later, or raise `[engine] max_instances`"
    )]
    Busy {
        /// The plugin.
        plugin: String,
        /// How many instances may live at once.
        capacity: usize,
        /// How long the call waited.
        waited_ms: u64,
    },
    /// An MCP server's tool could not be called: the server is not connected, or the
    /// exchange failed.
    #[error("MCP server `{server}`: {message}")]
    McpServer {
        /// The server (its `[mcp.<name>]` table).
        server: String,
        /// What went wrong.
        message: String,
    },
    /// An MCP server did not answer a call within its time limit; the request was cancelled.
    #[error(
        "MCP server `{server}` did not answer within its time limit of {limit_ms} ms; the call was cancelled (raise `timeout_ms` in [mcp.{server}] to allow more)"
    )]
    McpTimeout {
        /// The server.
        server: String,
        /// The limit.
        limit_ms: u64,
    },
    /// The host could not set up the call.
    #[error("cannot run plugin `{plugin}`: {message}")]
    Host {
        /// The plugin.
        plugin: String,
        /// What went wrong.
        message: String,
    },
}

impl CallError {
    /// The error as the model is told it. A denial says what was denied and why, not which
    /// configuration lines would widen the grant: those are for the operator (the CLI, the
    /// logs, the event's `detail`, the API's error).
    pub fn for_model(&self) -> String {
        match self {
            CallError::Denied { plugin, kind, target, reason, .. } => {
                format!("plugin `{plugin}` was denied {kind} access to `{target}`: {reason}. This is outside what the operator granted.")
            }
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_is_told_what_was_denied_but_not_how_to_widen_the_grant() {
        let denied = CallError::Denied {
            plugin: "shell".into(),
            kind: crate::capability::CapabilityKind::Process,
            target: "id".into(),
            reason: "no commands are granted to this plugin".into(),
            hint: "to grant it, add to plugboard.toml:\n  [plugins.shell]\n  process = [\"id\"]".into(),
        };
        assert!(denied.to_string().contains("process = [\"id\"]"), "the operator sees the lines");
        let told = denied.for_model();
        assert!(told.contains("denied process access to `id`") && told.contains("no commands are granted"), "{told}");
        assert!(!told.contains("plugboard.toml") && !told.contains("process = "), "{told}");
    }
}
