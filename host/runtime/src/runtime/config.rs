//! The runtime's slice of the configuration: `[engine]`, `[limits]`, `[sandbox]`,
//! `[cache]`, `[plugins.<id>]`, `[hooks.<id>]`, `[provenance]` and the servers of `[mcp.<name>]`, and how a plugin's grants are found in
//! it. The runtime never sees the rest of the file: the application layer
//! (`plugboard::app`) reads the file and hands this part over, at start and on each reload.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::capability::filesystem::DirGrantSpec;
use crate::capability::{LimitOverrides, Limits, PluginGrants, SandboxSettings};
use crate::runtime::engine::EngineSettings;

/// What the runtime is configured with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConfig {
    /// `[engine]`: allocator settings (read at start only).
    pub engine: EngineSettings,
    /// `[limits]`: default limits of every plugin.
    pub limits: Limits,
    /// `[sandbox]`: settings of every plugin's sandbox.
    pub sandbox: SandboxSettings,
    /// `[cache]`: where compiled plugins are kept (read at start only).
    pub cache: CacheSettings,
    /// `[plugins.<id>]`: grants per plugin id. A first-party plugin without a table here
    /// gets its built-in default grant (see [`builtin_grants`]); any other plugin gets none.
    pub plugins: BTreeMap<String, PluginGrants>,
    /// `[hooks.<id>]`: whether, in which order and how strictly each hook plugin runs.
    pub hooks: BTreeMap<String, crate::hooks::HookSettings>,
    /// `[mcp.<name>]`: the MCP servers whose tools join the registry.
    pub mcp_servers: BTreeMap<String, crate::runtime::mcp::McpServerConfig>,
    /// `[provenance]`: whether plugin files must be installed and signed, and by whom.
    pub provenance: ProvenanceSettings,
}

/// `[provenance]`. With `require_signatures`, a plugin file loads only when its directory's
/// `plugboard.lock` records it (`plugboard plugin install`), its bytes are the ones
/// recorded, and one of `trusted_keys` signed it; the embedded first-party plugins are
/// part of the binary and exempt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvenanceSettings {
    /// Refuse plugin files no trusted key signed.
    pub require_signatures: bool,
    /// Public keys (PEM files, as `cosign.pub`) whose signatures count; a relative path is
    /// relative to the configuration file's directory.
    pub trusted_keys: Vec<PathBuf>,
    /// The keys read from `trusted_keys` ([`Self::read_keys`]).
    #[serde(skip)]
    pub keys: Vec<plugboard_provenance::TrustedKey>,
}

impl ProvenanceSettings {
    /// Reads `trusted_keys` (relative to `base`); the error names the file and what is wrong.
    pub fn read_keys(&mut self, base: &std::path::Path) -> Result<(), String> {
        self.keys = self
            .trusted_keys
            .iter()
            .map(|path| plugboard_provenance::TrustedKey::read(&base.join(path)).map_err(|e| format!("[provenance] trusted_keys: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(())
    }
}

/// `[cache]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Directory of compiled plugins; default: the user's cache directory.
    pub dir: Option<PathBuf>,
    /// Set to false to compile on every start.
    pub enabled: Option<bool>,
}

/// Where a plugin's grants came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantSource {
    /// A `[plugins.<id>]` table.
    Config,
    /// The built-in default of a first-party plugin.
    BuiltinDefault,
    /// Nothing is granted.
    None,
}

impl RuntimeConfig {
    /// The grants of plugin `id`: its table, or the built-in default of a first-party plugin.
    /// A table replaces the default's grants whole, but the limits it leaves unset keep the
    /// default's (a provider's table that only grants a local host keeps its long time limit).
    pub fn grants_for(&self, id: &str, first_party: bool) -> (Option<PluginGrants>, GrantSource) {
        match self.plugins.get(id) {
            Some(g) => {
                let mut grants = g.clone();
                if let Some(builtin) = builtin_grants(id).filter(|_| first_party) {
                    grants.limits = grants.limits.or(builtin.limits);
                }
                (Some(grants), GrantSource::Config)
            }
            None if first_party => match builtin_grants(id) {
                Some(g) => (Some(g), GrantSource::BuiltinDefault),
                None => (None, GrantSource::None),
            },
            None => (None, GrantSource::None),
        }
    }
}

/// Providers wait on remote models: each step of a stream may take up to five minutes.
const PROVIDER_LIMITS: LimitOverrides = LimitOverrides { memory_mib: None, timeout_ms: Some(300_000), max_output_bytes: None };

/// The built-in grants of the first-party plugins, used when the configuration has no table
/// for them: the file tools see the workspace (read-only for the readers, read-write for
/// `write` and `edit`); `shell` has the workspace read-write but no commands; `fetch` has no
/// hosts; the `openai` and `anthropic` providers reach their API host with the key from
/// `OPENAI_API_KEY` / `ANTHROPIC_API_KEY`. Everything beyond that must be granted.
pub fn builtin_grants(id: &str) -> Option<PluginGrants> {
    use crate::first_party::DefaultGrant;
    Some(match crate::first_party::plugin(id)?.default_grant? {
        DefaultGrant::Workspace(access) => {
            PluginGrants { filesystem: vec![DirGrantSpec::WithAccess { path: ".".into(), access }], ..Default::default() }
        }
        DefaultGrant::Nothing => PluginGrants::default(),
        DefaultGrant::Provider { host, api_key_env } => PluginGrants {
            network: vec![host.into()],
            api_key_env: Some(api_key_env.into()),
            limits: PROVIDER_LIMITS,
            ..Default::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_party_plugins_get_defaults_and_others_nothing() {
        let config = RuntimeConfig::default();
        assert_eq!(config.grants_for("read", true).1, GrantSource::BuiltinDefault);
        assert_eq!(config.grants_for("read", false).1, GrantSource::None);
        assert_eq!(config.grants_for("thirdparty", false).0, None);
    }

    #[test]
    fn a_plugins_own_table_replaces_its_builtin_default() {
        let mut config = RuntimeConfig::default();
        config.plugins.insert("read".into(), PluginGrants::default());
        let (grants, source) = config.grants_for("read", true);
        assert_eq!(source, GrantSource::Config);
        assert!(grants.unwrap().filesystem.is_empty(), "the table grants nothing, so the default's workspace is gone");
    }

    #[test]
    fn a_providers_table_keeps_the_builtin_time_limit_it_does_not_set() {
        let mut config = RuntimeConfig::default();
        let table = PluginGrants { network: vec!["http://127.0.0.1:8080".into()], ..Default::default() };
        config.plugins.insert("openai".into(), table.clone());
        let (grants, _) = config.grants_for("openai", true);
        let grants = grants.unwrap();
        assert_eq!(grants.network, table.network, "the table's grants replace the default's");
        assert_eq!(grants.limits.timeout_ms, Some(300_000), "the provider's own time limit stays");
        let set = PluginGrants { limits: LimitOverrides { timeout_ms: Some(5_000), ..Default::default() }, ..table };
        config.plugins.insert("openai".into(), set);
        assert_eq!(config.grants_for("openai", true).0.unwrap().limits.timeout_ms, Some(5_000), "a limit the table sets wins");
        config.plugins.insert("thirdparty".into(), PluginGrants::default());
        assert_eq!(config.grants_for("thirdparty", false).0.unwrap().limits, LimitOverrides::default(), "others get no default");
    }
}
