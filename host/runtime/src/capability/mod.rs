//! Capabilities, deny by default: a plugin gets what its manifest requests AND the operator
//! grants in `plugboard.toml`, per plugin id, and nothing else.
//!
//! One module per kind: [`filesystem`], [`network`], [`process`] (with [`confinement`]),
//! and environment variables here. [`CapabilityPolicy::resolve`] validates a plugin's grants
//! once, at load; the runtime prepares each call's sandbox from the result.

pub mod command_line;
pub mod confinement;
pub mod egress;
pub mod filesystem;
pub mod network;
pub mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runtime::manifest::PluginManifest;
use confinement::{ConfinementSupport, UnconfinedCommands};
use filesystem::{DirGrant, DirGrantSpec};
use network::{HostPattern, NetworkPolicy};
use process::{CommandPattern, CommandRunner, ProcessPolicy};

/// Resource limits of one call. Unset fields fall back to `[limits]`, then to the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory of the plugin, in MiB.
    pub memory_mib: u64,
    /// Wall-clock time per call, in milliseconds.
    pub timeout_ms: u64,
    /// Size of a call's output (text and metadata), in bytes.
    pub max_output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_mib: 128, timeout_ms: 30_000, max_output_bytes: 1 << 20 }
    }
}

impl Limits {
    /// The time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Overrides of some limits for one plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// See [`Limits::memory_mib`].
    pub memory_mib: Option<u64>,
    /// See [`Limits::timeout_ms`].
    pub timeout_ms: Option<u64>,
    /// See [`Limits::max_output_bytes`].
    pub max_output_bytes: Option<u64>,
}

impl LimitOverrides {
    /// These overrides, with the ones left unset taken from `fallback`.
    pub fn or(self, fallback: LimitOverrides) -> LimitOverrides {
        LimitOverrides {
            memory_mib: self.memory_mib.or(fallback.memory_mib),
            timeout_ms: self.timeout_ms.or(fallback.timeout_ms),
            max_output_bytes: self.max_output_bytes.or(fallback.max_output_bytes),
        }
    }

    fn apply(&self, base: Limits) -> Limits {
        Limits {
            memory_mib: self.memory_mib.unwrap_or(base.memory_mib),
            timeout_ms: self.timeout_ms.unwrap_or(base.timeout_ms),
            max_output_bytes: self.max_output_bytes.unwrap_or(base.max_output_bytes),
        }
    }
}

/// What the operator grants one plugin: a `[plugins.<id>]` table of `plugboard.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginGrants {
    /// Directories, each read-only (a plain path) or `{ path, access }`.
    #[serde(default)]
    pub filesystem: Vec<DirGrantSpec>,
    /// Host patterns for outgoing HTTP(S).
    #[serde(default)]
    pub network: Vec<String>,
    /// Command patterns for the process capability: globs, or rules with examples.
    #[serde(default)]
    pub process: Vec<process::CommandGrantSpec>,
    /// Names of environment variables the plugin may read.
    #[serde(default)]
    pub env: Vec<String>,
    /// Limit overrides for this plugin.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// The plugin's own settings, read through `host.config`.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
    /// A provider's API key, written out (prefer `api_key_env`). Never shown or logged.
    #[serde(default, skip_serializing)]
    pub api_key: Option<Secret>,
    /// The environment variable of Plugboard's that holds a provider's API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

/// A secret from the configuration. Its `Debug` form hides it, and it is never serialized.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An API key and the header that carries it. Its `Debug` form hides the key.
#[derive(Clone)]
pub struct Credential {
    /// The header.
    pub header: http::HeaderName,
    /// The header's value (prefix and key), marked sensitive.
    pub value: http::HeaderValue,
    /// Where the key came from, for `plugin inspect`: `api_key` or `env NAME`.
    pub origin: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential {{ header: {}, value: <redacted>, origin: {} }}", self.header, self.origin)
    }
}

/// Settings that apply to every plugin's sandbox (`[sandbox]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    /// What to do with commands when the kernel cannot confine them.
    pub unconfined_commands: UnconfinedCommands,
    /// Directories every command may read and execute from.
    pub system_paths: Vec<PathBuf>,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings { unconfined_commands: UnconfinedCommands::Refuse, system_paths: confinement::default_system_paths() }
    }
}

/// A grant that could not be resolved, named precisely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[plugins.{plugin}] {field}: {message}")]
pub struct GrantError {
    /// The plugin id.
    pub plugin: String,
    /// The field of its table.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The effective capabilities of one plugin: requested ∩ granted, resolved and validated.
#[derive(Debug, Clone)]
pub struct CapabilityPolicy {
    /// The plugin id.
    pub plugin_id: String,
    /// Directories visible in the sandbox, each with its effective access.
    pub filesystem: Vec<DirGrant>,
    /// Hosts it may reach.
    pub network: NetworkPolicy,
    /// Commands it may run, and how.
    pub process: CommandRunner,
    /// Environment variables it sees, with their values.
    pub env: Vec<(String, String)>,
    /// Its limits.
    pub limits: Limits,
    /// Its settings, as JSON documents.
    pub settings: BTreeMap<String, String>,
    /// What the plugin requested (for `plugin inspect` and denial messages).
    pub requested: crate::runtime::manifest::RequestedCapabilities,
    /// What the operator granted, as written (or the built-in default).
    pub granted: PluginGrants,
    /// A provider's API key, added by the host to requests to granted hosts.
    pub credential: Option<Credential>,
    /// Masks the known secrets in what reaches the plugin (HTTP responses, command output).
    pub redactor: crate::secrets::Redactor,
    /// The secret values the redactor masks.
    pub secrets: Arc<Vec<String>>,
}

/// What one session changes in its provider's policy: its own API key (in the header the
/// provider declares) and its own endpoint (the provider's `base_url` setting), which must
/// still be within the provider's network grant. Held in memory only; `Debug` hides the key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProviderOverrides {
    /// The API key.
    pub api_key: Option<Secret>,
    /// The API's base URL, e.g. `http://127.0.0.1:8080/v1`.
    pub api_endpoint: Option<String>,
}

impl std::fmt::Debug for ProviderOverrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderOverrides")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_endpoint", &self.api_endpoint)
            .finish()
    }
}

impl Secret {
    /// Wraps a secret given at run time (e.g. a per-session API key).
    pub fn new(value: String) -> Self {
        Secret(value)
    }
}

impl CapabilityPolicy {
    /// This policy with a session's overrides applied; an error names the field that cannot
    /// apply (a key for a provider without a credentials header, an endpoint outside the
    /// grant, a malformed URL).
    pub fn with_overrides(
        &self,
        manifest: &PluginManifest,
        overrides: &ProviderOverrides,
    ) -> Result<CapabilityPolicy, (&'static str, String)> {
        let mut policy = self.clone();
        if let Some(key) = &overrides.api_key {
            let grants = PluginGrants { api_key: Some(key.clone()), ..Default::default() };
            policy.credential = resolve_credential(manifest, &grants).map_err(|m| ("api_key", m))?;
            policy.redactor = crate::secrets::Redactor::new(self.secrets.iter().map(String::as_str).chain([key.expose()]));
        }
        if let Some(endpoint) = &overrides.api_endpoint {
            let uri: http::Uri = endpoint.parse().map_err(|e| ("api_endpoint", format!("`{endpoint}` is not a URL: {e}")))?;
            let scheme = uri.scheme_str().filter(|s| *s == "http" || *s == "https");
            let (Some(scheme), Some(host)) = (scheme, uri.host()) else {
                return Err(("api_endpoint", format!("`{endpoint}` must be an http:// or https:// URL with a host")));
            };
            self.network.check(scheme, host, uri.port_u16()).map_err(|denial| {
                let why = match denial {
                    network::NetworkDenial::NotRequested => "the provider's manifest does not request this host",
                    network::NetworkDenial::NotGranted => "the host is not in the provider's network grant",
                };
                ("api_endpoint", format!("`{endpoint}` cannot be used: {why} (grant it in [plugins.{}] network)", self.plugin_id))
            })?;
            policy.settings.insert("base_url".into(), serde_json::Value::String(endpoint.trim_end_matches('/').into()).to_string());
        }
        Ok(policy)
    }
}

/// Inputs shared by every plugin's policy.
#[derive(Debug, Clone)]
pub struct PolicyContext {
    /// The workspace directory, canonical.
    pub workspace: PathBuf,
    /// `[limits]`.
    pub default_limits: Limits,
    /// `[sandbox]`.
    pub sandbox: SandboxSettings,
    /// Whether commands can be confined here.
    pub confinement: Arc<ConfinementSupport>,
    /// The largest memory a plugin may be given (the pool's slot size), when pooling.
    pub max_memory_mib: Option<u64>,
    /// Directories no grant may reach (see [`crate::trust::protected_dirs`]).
    pub protected: Vec<PathBuf>,
    /// The secret values to mask (see [`crate::secrets`]).
    pub secrets: Arc<Vec<String>>,
    /// A redactor of [`Self::secrets`], built once for every plugin and MCP call to share.
    pub redactor: crate::secrets::Redactor,
}

impl PolicyContext {
    /// Puts `secrets` in force, and the redactor that masks them.
    pub fn set_secrets(&mut self, secrets: Vec<String>) {
        self.redactor = crate::secrets::Redactor::new(secrets.iter().map(String::as_str));
        self.secrets = Arc::new(secrets);
    }
}

impl CapabilityPolicy {
    /// Resolves what `manifest` requests against `grants` (none: nothing is granted).
    pub fn resolve(manifest: &PluginManifest, grants: Option<&PluginGrants>, ctx: &PolicyContext) -> Result<Self, GrantError> {
        let id = manifest.id.clone();
        let grants = grants.cloned().unwrap_or_default();
        let requested = manifest.capabilities.clone();
        let error = |field: &'static str, message: String| GrantError { plugin: id.clone(), field, message };

        let mut filesystem = Vec::new();
        for spec in &grants.filesystem {
            let grant = filesystem::resolve(spec, &ctx.workspace).map_err(|m| error("filesystem", m))?;
            filesystem::refuse_protected(&grant.path, &ctx.protected).map_err(|m| error("filesystem", m))?;
            if let Some(wanted) = requested.filesystem {
                filesystem.push(DirGrant { access: grant.access.min(wanted), ..grant });
            }
        }
        filesystem::refuse_nested(&filesystem).map_err(|m| error("filesystem", m))?;

        let parse_hosts = |list: &[String], field| -> Result<Vec<HostPattern>, GrantError> {
            list.iter().map(|p| HostPattern::parse(p).map_err(|m| error(field, m))).collect()
        };
        let network = NetworkPolicy {
            requested: parse_hosts(&requested.network, "network (requested)")?,
            granted: parse_hosts(&grants.network, "network")?,
        };

        let parse_commands = |list: &[String], field| -> Result<Vec<CommandPattern>, GrantError> {
            list.iter().map(|p| CommandPattern::parse(p).map_err(|m| error(field, m))).collect()
        };
        let process_policy = ProcessPolicy {
            requested: parse_commands(&requested.process, "process (requested)")?,
            granted: grants
                .process
                .iter()
                .map(|spec| CommandPattern::from_spec(spec).map_err(|m| error("process", m)))
                .collect::<Result<_, _>>()?,
        };

        let mut env = Vec::new();
        for name in &grants.env {
            if name.is_empty() || name.contains('=') {
                return Err(error("env", format!("`{name}` is not a variable name")));
            }
            let wanted = requested.env.iter().any(|r| r == name || r == "*");
            if let (true, Ok(value)) = (wanted, std::env::var(name)) {
                env.push((name.clone(), value));
            }
        }

        let limits = grants.limits.apply(ctx.default_limits);
        if limits.memory_mib == 0 || limits.timeout_ms == 0 || limits.max_output_bytes == 0 {
            return Err(error("limits", "limits must be greater than zero".into()));
        }
        if let Some(max) = ctx.max_memory_mib
            && limits.memory_mib > max
        {
            return Err(error(
                "limits",
                format!(
                    "memory_mib = {} is more than the engine's slots hold ({max} MiB); raise `[engine] max_memory_mib`",
                    limits.memory_mib
                ),
            ));
        }

        let mut settings = BTreeMap::new();
        for (key, value) in &grants.settings {
            let json = serde_json::to_string(value).map_err(|e| error("settings", format!("`{key}`: {e}")))?;
            settings.insert(key.clone(), json);
        }

        let credential = resolve_credential(manifest, &grants).map_err(|m| error("api_key", m))?;

        let mut command_env = env.clone();
        command_env.push(("PATH".into(), std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())));
        let process = CommandRunner {
            policy: process_policy,
            workspace: ctx.workspace.clone(),
            grants: filesystem.clone(),
            system_paths: ctx.sandbox.system_paths.clone(),
            confinement: ctx.confinement.clone(),
            unconfined: ctx.sandbox.unconfined_commands,
            env: command_env,
            network: network.clone(),
            max_output_bytes: limits.max_output_bytes as usize,
            max_timeout: limits.timeout(),
        };
        let redactor = ctx.redactor.clone();
        Ok(CapabilityPolicy {
            plugin_id: id,
            filesystem,
            network,
            process,
            env,
            limits,
            settings,
            requested,
            granted: grants,
            credential,
            redactor,
            secrets: ctx.secrets.clone(),
        })
    }

    /// The `plugboard.toml` lines that would grant `target` of `kind`, or why no grant can
    /// help (the plugin does not request that capability).
    pub fn grant_hint(&self, kind: CapabilityKind, target: &str) -> String {
        let id = &self.plugin_id;
        let not_requested = |what: &str| format!("plugin `{id}` does not request {what} in its manifest, so no grant can allow it");
        match kind {
            CapabilityKind::Filesystem => {
                let Some(access) = self.requested.filesystem else {
                    return not_requested("filesystem access");
                };
                // A grant is a directory that exists: a file (or a path not yet made) gets the
                // directory it is in.
                let path = Path::new(target);
                let dir = if path.is_dir() { path } else { path.parent().unwrap_or(path) };
                format!(
                    "to grant it, add to plugboard.toml:\n  [plugins.{id}]\n  filesystem = [{{ path = {:?}, access = \"{access}\" }}]",
                    dir.display().to_string()
                )
            }
            CapabilityKind::Network => {
                if self.requested.network.is_empty() {
                    return not_requested("network access");
                }
                let uri = target.parse::<http::Uri>().ok();
                let destination = uri.as_ref().and_then(|u| Some((u.scheme_str()?, u.host()?, u.port_u16())));
                if let Some((scheme, host, port)) = destination
                    && self.network.check(scheme, host, port) == Err(network::NetworkDenial::NotRequested)
                {
                    return format!(
                        "plugin `{id}` requests network access only to {} in its manifest; `{target}` is not among them, so no grant can allow it",
                        self.requested.network.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", ")
                    );
                }
                format!("to grant it, add to plugboard.toml:\n  [plugins.{id}]\n  network = [{target:?}]")
            }
            CapabilityKind::Process => {
                if self.requested.process.is_empty() {
                    return not_requested("the process capability");
                }
                let program = target.split_whitespace().next().unwrap_or(target);
                format!("to grant it, add to plugboard.toml:\n  [plugins.{id}]\n  process = [\"{program}\", \"{program} *\"]")
            }
            CapabilityKind::Env => {
                if !self.requested.env.iter().any(|r| r == target || r == "*") {
                    return not_requested(&format!("the environment variable `{target}`"));
                }
                format!("to grant it, add to plugboard.toml:\n  [plugins.{id}]\n  env = [{target:?}]")
            }
        }
    }
}

/// The API key of a provider that declares `credentials`: `api_key`, else the variable
/// named by `api_key_env`. `None` when no key is configured or the variable is unset.
fn resolve_credential(manifest: &PluginManifest, grants: &PluginGrants) -> Result<Option<Credential>, String> {
    let Some(spec) = &manifest.credentials else {
        if grants.api_key.is_some() || grants.api_key_env.is_some() {
            return Err("this plugin declares no credentials header, so an API key cannot be given to it".into());
        }
        return Ok(None);
    };
    let (key, origin) = match (&grants.api_key, &grants.api_key_env) {
        (Some(key), _) => (key.expose().to_string(), "api_key".to_string()),
        (None, Some(var)) => match std::env::var(var) {
            Ok(key) if !key.is_empty() => (key, format!("env {var}")),
            _ => return Ok(None),
        },
        (None, None) => return Ok(None),
    };
    let header = http::HeaderName::from_bytes(spec.header.as_bytes()).map_err(|e| format!("credentials header `{}`: {e}", spec.header))?;
    let mut value = http::HeaderValue::from_str(&format!("{}{key}", spec.prefix))
        .map_err(|_| "the API key has characters a header cannot carry".to_string())?;
    value.set_sensitive(true);
    Ok(Some(Credential { header, value, origin }))
}

/// The kinds of capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CapabilityKind {
    /// Directories.
    Filesystem,
    /// Outgoing HTTP(S).
    Network,
    /// Commands.
    Process,
    /// Environment variables.
    Env,
}

impl std::fmt::Display for CapabilityKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CapabilityKind::Filesystem => "filesystem",
            CapabilityKind::Network => "network",
            CapabilityKind::Process => "process",
            CapabilityKind::Env => "env",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(capabilities: &str, grants: &str, workspace: &Path) -> CapabilityPolicy {
        let manifest: PluginManifest =
            toml::from_str(&format!("id = \"probe\"\nversion = \"1.0.0\"\n[capabilities]\n{capabilities}")).unwrap();
        let grants: PluginGrants = toml::from_str(grants).unwrap();
        let ctx = PolicyContext {
            workspace: workspace.to_path_buf(),
            default_limits: Limits::default(),
            sandbox: SandboxSettings::default(),
            confinement: Arc::new(confinement::ConfinementSupport::Unavailable("not needed here".into())),
            max_memory_mib: None,
            protected: Vec::new(),
            secrets: Arc::default(),
            redactor: Default::default(),
        };
        CapabilityPolicy::resolve(&manifest, Some(&grants), &ctx).unwrap()
    }

    #[test]
    fn a_denied_file_or_missing_path_is_hinted_as_the_directory_it_is_in() {
        let dir = std::env::temp_dir().join(format!("plugboard-hint-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("notes.d")).unwrap();
        std::fs::write(dir.join("Makefile"), "").unwrap();
        let p = policy("filesystem = \"read-only\"", "", &dir);
        let hint = |target: &Path| p.grant_hint(CapabilityKind::Filesystem, &target.display().to_string());
        let quoted = |path: &Path| format!("path = {:?}", path.display().to_string());
        // A file without an extension, a directory with a dot, a path that does not exist yet.
        assert!(hint(&dir.join("Makefile")).contains(&quoted(&dir)), "{}", hint(&dir.join("Makefile")));
        assert!(hint(&dir.join("notes.d")).contains(&quoted(&dir.join("notes.d"))));
        assert!(hint(&dir.join("new.txt")).contains(&quoted(&dir)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_host_the_manifest_does_not_request_is_said_to_be_out_of_reach() {
        let p = policy("network = [\"https://api.example.com\"]", "network = [\"https://api.example.com\"]", &std::env::temp_dir());
        let hint = p.grant_hint(CapabilityKind::Network, "https://evil.example");
        assert!(
            hint.contains("requests network access only to `https://api.example.com`") && hint.contains("no grant can allow it"),
            "{hint}"
        );
        let hint = p.grant_hint(CapabilityKind::Network, "https://api.example.com:8443");
        assert!(hint.contains("no grant can allow it"), "another port is another destination: {hint}");
        // A requested host that is not granted gets the line to add.
        let p = policy("network = [\"*\"]", "", &std::env::temp_dir());
        assert!(p.grant_hint(CapabilityKind::Network, "https://evil.example").contains("network = [\"https://evil.example\"]"));
    }
}
