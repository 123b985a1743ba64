//! Builds the plugin manifest embedded by `export_tools!`, from the environment cargo gives
//! the compiler and the crate's `[package.metadata.plugboard]` table.

use serde_json::{Map, Value, json};

const KNOWN_KEYS: &[&str] = &["id", "capabilities", "credentials"];
const KNOWN_CAPABILITIES: &[&str] = &["filesystem", "network", "process", "env"];

/// The manifest of the crate being compiled, as JSON.
pub fn from_cargo_env(world: &str) -> Result<String, String> {
    let name = std::env::var("CARGO_PKG_NAME").map_err(|_| "CARGO_PKG_NAME is not set: build the plugin with cargo".to_string())?;
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let description = std::env::var("CARGO_PKG_DESCRIPTION").unwrap_or_default();
    let dir = std::env::var("CARGO_MANIFEST_DIR").map_err(|_| "CARGO_MANIFEST_DIR is not set: build the plugin with cargo".to_string())?;
    let path = std::path::Path::new(&dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc: toml::Table = text.parse().map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
    let metadata = doc
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("plugboard"))
        .cloned()
        .unwrap_or(toml::Value::Table(Default::default()));
    let metadata = metadata.as_table().ok_or("[package.metadata.plugboard] must be a table")?;
    for key in metadata.keys() {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            return Err(format!("unknown key `{key}` in [package.metadata.plugboard]; known keys: {}", KNOWN_KEYS.join(", ")));
        }
    }
    let id = match metadata.get("id") {
        Some(toml::Value::String(s)) => s.clone(),
        Some(_) => return Err("[package.metadata.plugboard] id must be a string".into()),
        None => name.strip_prefix("plugboard-plugin-").unwrap_or(&name).to_string(),
    };
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        return Err(format!("plugin id `{id}` must use only lowercase letters, digits, `-` and `_`"));
    }
    let capabilities = match metadata.get("capabilities") {
        None => Map::new(),
        Some(toml::Value::Table(t)) => {
            for key in t.keys() {
                if !KNOWN_CAPABILITIES.contains(&key.as_str()) {
                    return Err(format!(
                        "unknown capability `{key}` in [package.metadata.plugboard.capabilities]; known: {}",
                        KNOWN_CAPABILITIES.join(", ")
                    ));
                }
            }
            match serde_json::to_value(t).map_err(|e| e.to_string())? {
                Value::Object(m) => m,
                _ => unreachable!("a TOML table serializes to a JSON object"),
            }
        }
        Some(_) => return Err("[package.metadata.plugboard.capabilities] must be a table".into()),
    };
    let credentials = match metadata.get("credentials") {
        None => Value::Null,
        Some(toml::Value::Table(t)) => {
            for key in t.keys() {
                if key != "header" && key != "prefix" {
                    return Err(format!("unknown key `{key}` in [package.metadata.plugboard.credentials]; known: header, prefix"));
                }
            }
            if !matches!(t.get("header"), Some(toml::Value::String(_))) {
                return Err("[package.metadata.plugboard.credentials] needs `header`, e.g. header = \"authorization\"".into());
            }
            serde_json::to_value(t).map_err(|e| e.to_string())?
        }
        Some(_) => return Err("[package.metadata.plugboard.credentials] must be a table".into()),
    };
    let manifest = json!({
        "id": id,
        "version": version,
        "description": description,
        "world": world,
        "wit": "plugboard:plugin@0.1.1",
        "sdk": env!("CARGO_PKG_VERSION"),
        "capabilities": capabilities,
        "credentials": credentials,
    });
    Ok(manifest.to_string())
}
