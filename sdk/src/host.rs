//! The functions the host provides to every plugin: logging, live progress, settings.

use crate::bindings::plugboard::plugin::host as wit_host;
use crate::bindings::plugboard::plugin::types::LogLevel;

/// Log levels for [`log`].
pub use crate::bindings::plugboard::plugin::types::LogLevel as Level;

/// Writes a line to the host's log, attributed to this plugin.
pub fn log(level: Level, message: &str) {
    wit_host::log(level, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// Shows partial output of the running call live to the user.
pub fn progress(text: &str) {
    wit_host::progress(text);
}

/// Reads this plugin's setting `key` (set by the operator under
/// `[plugins.<id>.settings]` in `plugboard.toml`), deserialized from JSON.
/// `Ok(None)` when unset; an error names the key when the value has the wrong shape.
pub fn setting<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>, crate::ToolError> {
    match wit_host::config(key) {
        None => Ok(None),
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| crate::ToolError::failed(format!("plugin setting `{key}` has the wrong shape: {e}"))),
    }
}

/// Reads the environment variable `name`, which the operator must have granted to this
/// plugin (`env = ["NAME"]`). A missing variable is reported as a missing env grant.
pub fn env(name: &str) -> Result<String, crate::ToolError> {
    std::env::var(name).map_err(|_| {
        crate::ToolError::denied(crate::CapabilityKind::Env, name, "the variable is not granted to this plugin (or is not set)")
    })
}
