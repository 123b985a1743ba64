//! The plugin manifest: id, version, description and the capabilities a plugin requests.
//! It travels inside the component as the `plugboard-manifest` custom section (written by
//! the SDK), or in a `plugin.toml` beside the `.wasm` file. The host reads it without
//! running the plugin.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Name of the custom section the SDK embeds the manifest in.
pub const MANIFEST_SECTION: &str = "plugboard-manifest";

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginManifest {
    /// Unique id, e.g. `read`. Grants in `plugboard.toml` are keyed by it.
    pub id: String,
    /// The plugin's version.
    pub version: String,
    /// One line about the plugin.
    #[serde(default)]
    pub description: String,
    /// The WIT world the plugin targets (`tool-plugin` when not said).
    #[serde(default)]
    pub world: World,
    /// The WIT package version it was built against, e.g. `plugboard:plugin@0.1.1`.
    #[serde(default)]
    pub wit: Option<String>,
    /// The SDK version that built it, when built with the SDK.
    #[serde(default)]
    pub sdk: Option<String>,
    /// The capabilities it requests. It gets only those the operator also grants.
    #[serde(default)]
    pub capabilities: RequestedCapabilities,
    /// For providers: the header that carries the API key, which the host adds to requests
    /// to the plugin's granted hosts (the plugin never sees the key).
    #[serde(default)]
    pub credentials: Option<CredentialsSpec>,
}

/// Where a provider's API key goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSpec {
    /// The header, e.g. `authorization` or `x-api-key`.
    pub header: String,
    /// Text before the key, e.g. `Bearer `.
    #[serde(default)]
    pub prefix: String,
}

/// The worlds of `plugboard:plugin` this host runs; a manifest naming another is refused
/// with the list of these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// Tools the model calls (`plugboard:plugin/tool`).
    #[default]
    ToolPlugin,
    /// A model provider (`plugboard:plugin/provider`).
    ProviderPlugin,
    /// Lifecycle hooks (`plugboard:plugin/hooks`).
    HookPlugin,
}

impl World {
    /// Its name in the WIT package, e.g. `tool-plugin`.
    pub fn name(self) -> &'static str {
        match self {
            World::ToolPlugin => "tool-plugin",
            World::ProviderPlugin => "provider-plugin",
            World::HookPlugin => "hook-plugin",
        }
    }

    /// The interface the world exports.
    pub fn export(self) -> &'static str {
        match self {
            World::ToolPlugin => "plugboard:plugin/tool@0.1.1",
            World::ProviderPlugin => "plugboard:plugin/provider@0.1.1",
            World::HookPlugin => "plugboard:plugin/hooks@0.1.1",
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The capabilities a plugin requests in its manifest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedCapabilities {
    /// `read-only` or `read-write` access to whatever directories the operator grants.
    #[serde(default)]
    pub filesystem: Option<crate::capability::filesystem::Access>,
    /// Host patterns the plugin may want to reach (`*` for any the operator grants).
    #[serde(default)]
    pub network: Vec<String>,
    /// Command patterns the plugin may want to run (`*` for any the operator grants).
    #[serde(default)]
    pub process: Vec<String>,
    /// Environment variables the plugin wants to read (`*` for any the operator grants).
    #[serde(default)]
    pub env: Vec<String>,
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not a WebAssembly component.
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// Neither an embedded manifest nor a `plugin.toml` was found.
    #[error(
        "no manifest: the component has no `{MANIFEST_SECTION}` section (build it with plugboard-sdk's export_tools!) and there is no plugin.toml beside it"
    )]
    Missing,
    /// The manifest is there but malformed.
    #[error("invalid manifest in {origin}: {message}")]
    Invalid {
        /// Where it came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

impl PluginManifest {
    /// Reads the manifest of the component `bytes`, preferring a `plugin.toml` beside
    /// `path` (when given) over the embedded one.
    pub fn read(bytes: &[u8], path: Option<&Path>) -> Result<Self, ManifestError> {
        if let Some(toml_path) = path.map(|p| p.with_file_name("plugin.toml"))
            && toml_path.exists()
        {
            let origin = toml_path.display().to_string();
            let text = std::fs::read_to_string(&toml_path)
                .map_err(|e| ManifestError::Invalid { origin: origin.clone(), message: e.to_string() })?;
            let manifest: PluginManifest =
                toml::from_str(&text).map_err(|e| ManifestError::Invalid { origin: origin.clone(), message: e.to_string() })?;
            return manifest.validated(&origin);
        }
        let section = embedded_section(bytes)?.ok_or(ManifestError::Missing)?;
        let origin = format!("the `{MANIFEST_SECTION}` section");
        let manifest: PluginManifest =
            serde_json::from_slice(&section).map_err(|e| ManifestError::Invalid { origin: origin.clone(), message: e.to_string() })?;
        manifest.validated(&origin)
    }

    fn validated(self, origin: &str) -> Result<Self, ManifestError> {
        let invalid = |message: String| ManifestError::Invalid { origin: origin.to_string(), message };
        if self.id.is_empty() || !self.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
            return Err(invalid(format!("id `{}` must use only lowercase letters, digits, `-` and `_`", self.id)));
        }
        if let Some(c) = &self.credentials
            && http::HeaderName::from_bytes(c.header.as_bytes()).is_err()
        {
            return Err(invalid(format!("credentials header `{}` is not a valid header name", c.header)));
        }
        Ok(self)
    }
}

/// The contents of the first `plugboard-manifest` custom section anywhere in the component
/// (the SDK's lands in the core module nested inside it).
fn embedded_section(bytes: &[u8]) -> Result<Option<Vec<u8>>, ManifestError> {
    if !wasmparser::Parser::is_component(bytes) {
        return Err(ManifestError::NotAComponent(if wasmparser::Parser::is_core_wasm(bytes) {
            "it is a core module; plugins must be components (build for wasm32-wasip2)".into()
        } else {
            "the file does not start with the WebAssembly magic bytes".into()
        }));
    }
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| ManifestError::NotAComponent(e.to_string()))?;
        if let wasmparser::Payload::CustomSection(section) = payload
            && section.name() == MANIFEST_SECTION
        {
            return Ok(Some(section.data().to_vec()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> Result<PluginManifest, ManifestError> {
        let dir = std::env::temp_dir().join(format!("plugboard-manifest-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("plugin.toml"), text).unwrap();
        let read = PluginManifest::read(b"", Some(&dir.join("x.wasm")));
        std::fs::remove_dir_all(&dir).unwrap();
        read
    }

    #[test]
    fn a_manifest_names_one_of_the_worlds_this_host_runs_or_is_told_which_exist() {
        assert_eq!(from_toml("id = \"a\"\nversion = \"1\"\n").unwrap().world, World::ToolPlugin);
        assert_eq!(from_toml("id = \"a\"\nversion = \"1\"\nworld = \"hook-plugin\"\n").unwrap().world, World::HookPlugin);
        let err = from_toml("id = \"a\"\nversion = \"1\"\nworld = \"tools-plugin\"\n").unwrap_err().to_string();
        assert!(err.contains("tools-plugin") && err.contains("`tool-plugin`, `provider-plugin`, `hook-plugin`"), "{err}");
        assert_eq!(serde_json::to_value(World::ProviderPlugin).unwrap(), "provider-plugin");
        assert_eq!(World::ProviderPlugin.to_string(), "provider-plugin");
    }
}
