//! The operator's configuration: `plugboard.toml` in the workspace, or `--config FILE`.
//!
//! ```toml
//! [limits]                      # defaults for every plugin
//! memory_mib = 128
//! timeout_ms = 30000
//! max_output_bytes = 1048576
//!
//! [plugins.fetch]               # grants of the plugin with id `fetch`
//! network = ["https://*.rust-lang.org", "http://127.0.0.1:*"]
//! ```
//!
//! See `docs/configuration.md` for every key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::agent::{AgentConfig, AgentSettings, SessionSettings};
use crate::capability::{Limits, PluginGrants, SandboxSettings};
use crate::runtime::config::{CacheSettings, ProvenanceSettings, RuntimeConfig};
use crate::runtime::engine::EngineSettings;
use crate::server::settings::ServerConfig;

pub use crate::trust::CONFIG_FILE_NAME;

/// The whole configuration file. Each layer is handed only its own part of it:
/// [`Config::runtime`] for the plugin runtime, [`Config::agent_settings`] for the agents,
/// `server` for the HTTP server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[engine]`: allocator settings.
    #[serde(default)]
    pub engine: EngineSettings,
    /// `[limits]`: default limits of every plugin.
    #[serde(default)]
    pub limits: Limits,
    /// `[sandbox]`: settings of every plugin's sandbox.
    #[serde(default)]
    pub sandbox: SandboxSettings,
    /// `[cache]`: where compiled plugins are kept.
    #[serde(default)]
    pub cache: CacheSettings,
    /// `[plugins.<id>]`: grants per plugin id (see [`RuntimeConfig::grants_for`]).
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginGrants>,
    /// `[hooks.<id>]`: whether, in which order and how strictly each hook plugin runs.
    #[serde(default)]
    pub hooks: BTreeMap<String, crate::hooks::HookSettings>,
    /// `[agents.<name>]`: agents, refining the built-in `build` and `plan`.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentConfig>,
    /// The model of sessions that name none, as `provider/model`.
    #[serde(default)]
    pub default_model: Option<String>,
    /// `[sessions]`: how many sessions run at once.
    #[serde(default)]
    pub sessions: SessionSettings,
    /// `[server]`: `plugboard serve`'s address and limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[mcp]`: how the tools are served to MCP clients.
    #[serde(default)]
    pub mcp: crate::mcp::McpSettings,
    /// `[provenance]`: whether plugin files must be installed from a registry and signed.
    #[serde(default)]
    pub provenance: ProvenanceSettings,
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid (TOML syntax, an unknown key, a wrong type); the message
    /// carries the line and column.
    #[error("invalid configuration in {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
}

/// The configuration to put in force, and where it came from.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The configuration (the defaults when there is no file, or the workspace's file is
    /// not trusted).
    pub config: Config,
    /// The file it was read from, or that a reload would read.
    pub path: Option<PathBuf>,
    /// The workspace's `plugboard.toml`, when it is there but not trusted, so not applied.
    pub untrusted: Option<crate::trust::UntrustedFile>,
}

/// Where a configuration file comes from, which decides what it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// Named by the operator (`--config`): trusted as it is.
    Operator,
    /// The workspace's `plugboard.toml`: applied only when trusted, and never holding a secret.
    Workspace,
}

impl Config {
    /// Loads `explicit` when given (it must exist), else `<workspace>/plugboard.toml` when
    /// present and trusted (see [`crate::trust`]), else the defaults.
    pub fn load(explicit: Option<&Path>, trust: &crate::trust::WorkspaceTrust) -> Result<LoadedConfig, ConfigError> {
        let (path, origin) = match explicit {
            Some(p) => (p.to_path_buf(), ConfigOrigin::Operator),
            None => (trust.workspace().join(CONFIG_FILE_NAME), ConfigOrigin::Workspace),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && origin == ConfigOrigin::Workspace => {
                return Ok(LoadedConfig { config: Config::default(), path: None, untrusted: None });
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        if origin == ConfigOrigin::Workspace
            && let Err(untrusted) = trust.config_trusted(&text)
        {
            return Ok(LoadedConfig { config: Config::default(), path: Some(path), untrusted: Some(untrusted) });
        }
        let config = Config::read(&text, origin, &path).map_err(|message| ConfigError::Invalid { path: path.clone(), message })?;
        Ok(LoadedConfig { config, path: Some(path), untrusted: None })
    }

    /// [`Self::parse_from`] for the file at `path`, then reads the files it names (the
    /// trusted keys of `[provenance]`, relative to the file's directory).
    pub fn read(text: &str, origin: ConfigOrigin, path: &Path) -> Result<Config, String> {
        let mut config = Config::parse_from(text, origin)?;
        config.provenance.read_keys(path.parent().unwrap_or(Path::new(".")))?;
        Ok(config)
    }

    /// Parses a configuration file from `origin`: a workspace file may not hold secrets.
    pub fn parse_from(text: &str, origin: ConfigOrigin) -> Result<Config, String> {
        let config = Config::parse(text)?;
        if origin == ConfigOrigin::Workspace {
            config.refuse_secrets()?;
        }
        Ok(config)
    }

    /// A workspace file is read by every plugin granted the workspace and is often
    /// committed: it may name where a secret is, never hold one.
    fn refuse_secrets(&self) -> Result<(), String> {
        let holders: Vec<String> =
            self.plugins.iter().filter(|(_, g)| g.api_key.is_some()).map(|(id, _)| format!("[plugins.{id}] api_key")).collect();
        if holders.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{} holds a secret in the workspace's {CONFIG_FILE_NAME}, where plugins and commands can read it; name the environment variable that holds it instead (`api_key_env = \"OPENAI_API_KEY\"`), or keep the key in a configuration file outside the workspace passed with --config",
            holders.join(", ")
        ))
    }

    /// The plugin runtime's part.
    pub fn runtime(&self) -> RuntimeConfig {
        RuntimeConfig {
            engine: self.engine.clone(),
            limits: self.limits,
            sandbox: self.sandbox.clone(),
            cache: self.cache.clone(),
            plugins: self.plugins.clone(),
            hooks: self.hooks.clone(),
            mcp_servers: self.mcp.servers.clone(),
            provenance: self.provenance.clone(),
        }
    }

    /// The agent runtime's part.
    pub fn agent_settings(&self) -> AgentSettings {
        AgentSettings { agents: self.agents.clone(), default_model: self.default_model.clone(), sessions: self.sessions.clone() }
    }

    /// The agents this configuration defines, checked against the one `[mcp] agent` names.
    pub fn resolve_agents(&self) -> Result<crate::agent::Agents, String> {
        let agents = self.agent_settings().resolve()?;
        let mcp = self.mcp.agent();
        if !agents.profiles.contains_key(mcp) {
            let known: Vec<&str> = agents.profiles.keys().map(String::as_str).collect();
            return Err(format!("[mcp] agent `{mcp}` is not an agent; the agents are {}", known.join(", ")));
        }
        Ok(agents)
    }

    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        for (name, server) in &config.mcp.servers {
            server.validate(name)?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::filesystem::Access;

    #[test]
    fn a_full_file_parses() {
        let config = Config::parse(
            r#"
            [limits]
            memory_mib = 64
            timeout_ms = 1000
            max_output_bytes = 4096

            [sandbox]
            unconfined_commands = "allow"

            [plugins.fetch]
            network = ["http://127.0.0.1:*"]

            [plugins.shell]
            filesystem = [".", { path = "/tmp", access = "read-write" }]
            process = ["ls*"]
            env = ["HOME"]
            limits = { timeout_ms = 5000 }
            settings = { shell = "/bin/sh" }
            "#,
        )
        .unwrap();
        assert_eq!(config.limits.memory_mib, 64);
        let shell = &config.plugins["shell"];
        assert_eq!(shell.filesystem[0].access(), Access::ReadOnly);
        assert_eq!(shell.filesystem[1].access(), Access::ReadWrite);
        assert_eq!(shell.limits.timeout_ms, Some(5000));
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named() {
        let err = Config::parse("[plugins.read]\nfilesytem = [\".\"]\n").unwrap_err();
        assert!(err.contains("filesytem") && err.contains("line 2"), "{err}");
        let err = Config::parse("[limits]\nmemory_mib = \"lots\"\n").unwrap_err();
        assert!(err.contains("memory_mib") || err.contains("line 2"), "{err}");
    }

    #[test]
    fn api_keys_never_show_in_debug_output_or_serialization() {
        let config = Config::parse("[plugins.openai]\napi_key = \"sk-very-secret\"\n").unwrap();
        let grants = &config.plugins["openai"];
        assert_eq!(grants.api_key.as_ref().unwrap().expose(), "sk-very-secret");
        assert!(!format!("{config:?}").contains("sk-very-secret"));
        assert!(!serde_json::to_string(grants).unwrap().contains("sk-very-secret"));
    }

    #[test]
    fn a_workspace_file_may_not_hold_an_api_key_but_may_name_its_variable() {
        let text = "[plugins.openai]\napi_key = \"sk-very-secret\"\n";
        let err = Config::parse_from(text, ConfigOrigin::Workspace).unwrap_err();
        assert!(err.contains("[plugins.openai] api_key") && err.contains("api_key_env") && err.contains("--config"), "{err}");
        assert!(!err.contains("sk-very-secret"), "{err}");
        assert!(Config::parse_from(text, ConfigOrigin::Operator).is_ok());
        assert!(Config::parse_from("[plugins.openai]\napi_key_env = \"MY_KEY\"\n", ConfigOrigin::Workspace).is_ok());
    }

    #[test]
    fn mcp_holds_its_agent_and_server_tables_and_a_misspelt_key_is_named() {
        let config = Config::parse("[mcp]\nagent = \"plan\"\n[mcp.docs]\nurl = \"https://mcp.example.com/mcp\"\n").unwrap();
        assert_eq!(config.mcp.agent(), "plan");
        assert_eq!(config.runtime().mcp_servers["docs"].url.as_deref(), Some("https://mcp.example.com/mcp"));
        let typo = Config::parse("[mcp]\nagnet = \"plan\"\n").unwrap_err();
        assert!(typo.contains("`agnet` is not a setting of [mcp]") && typo.contains("line 2"), "{typo}");
        let unknown = Config::parse("[mcp.docs]\nurl = \"https://a.example/mcp\"\nheader = {}\n").unwrap_err();
        assert!(unknown.contains("unknown field `header`") && unknown.contains("line 3"), "{unknown}");
        let invalid = Config::parse("[mcp.docs]\ncommand = \"node\"\nurl = \"https://a.example/mcp\"\n").unwrap_err();
        assert!(invalid.contains("[mcp.docs]") && invalid.contains("not both"), "{invalid}");
    }
}
