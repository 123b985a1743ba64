//! Reloading `plugboard.toml` while Plugboard runs. The new file is read and checked whole
//! before anything changes: the TOML, the trust of a workspace file, the agents and their
//! permission rules, and every loaded plugin's grants (the plugin runtime's first phase,
//! [`PluginHost::prepare_config`]). An invalid file is rejected with `config.rejected`
//! saying why, and the previous configuration stays in force. A valid one is swapped in at
//! once, with `config.changed` naming the sections that differ: grants, limits, settings
//! and hooks apply to calls that start after the swap (calls in flight keep the policy they
//! started with), agents and permission rules to the next activity, `default_model` to the
//! next session. `[engine]`, `[cache]`, `[server]` and `[sessions]` are reported as needing
//! a restart.
//!
//! [`PluginHost::prepare_config`]: crate::runtime::PluginHost::prepare_config

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::App;
use crate::config::{Config, ConfigOrigin};

/// Sections that only take effect when Plugboard restarts.
const RESTART_SECTIONS: &[&str] = &["engine", "cache", "server", "sessions"];

/// What a configuration reload changed.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ConfigChange {
    /// The file read.
    #[schema(value_type = Option<String>)]
    pub path: Option<PathBuf>,
    /// The top-level sections that differ (`plugins`, `agents`, `limits`, ...); empty when
    /// the file did not change anything.
    pub sections: Vec<String>,
    /// Those of them that take effect only after a restart.
    pub restart_required: Vec<String>,
}

/// Why a configuration was rejected; the previous one stays in force.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the configuration in {path} was rejected, the previous one stays in force: {reason}")]
pub struct ConfigRejected {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl App {
    /// Reads the configuration file again and, when it is valid, puts it in force (see the
    /// module's documentation).
    pub async fn reload_config(&self) -> Result<ConfigChange, ConfigRejected> {
        let _one_at_a_time = self.reloading.lock().await;
        let path = self.file.clone();
        let read = std::fs::read_to_string(&path);
        // What a rejection is remembered by: the text (`None` when there is none to read).
        let text = read.as_ref().ok().cloned();
        let reject = |reason: String| self.reject(&path, text.clone(), reason);
        let text = match read {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(reject("the file was removed (restart to run with the defaults)".into()));
            }
            Err(e) => return Err(reject(format!("cannot read it: {e}"))),
        };
        if self.origin == ConfigOrigin::Workspace {
            self.check_trusted(&text)?;
        }
        let new = Config::read(&text, self.origin, &path).map_err(reject)?;
        let sections = changed_sections(&self.config(), &new);
        if sections.is_empty() {
            *self.rejected.lock().expect("not poisoned") = None;
            return Ok(ConfigChange { path: Some(path), ..ConfigChange::default() });
        }
        let restart_required: Vec<String> = sections.iter().filter(|s| RESTART_SECTIONS.contains(&s.as_str())).cloned().collect();
        // Every layer checks its part before any of them changes.
        let agents = new.resolve_agents().map_err(|e| reject(format!("agents: {e}")))?;
        let runtime = self.host.prepare_config(new.runtime()).await.map_err(reject)?;
        *self.rejected.lock().expect("not poisoned") = None;
        *self.config.write().expect("not poisoned") = Arc::new(new);
        self.agents.send_replace(Arc::new(agents));
        let announce = vec![("config.changed", json!({ "path": path, "sections": sections, "restart_required": restart_required }))];
        runtime.apply(announce).await;
        tracing::info!(path = %path.display(), ?sections, ?restart_required, "configuration reloaded");
        Ok(ConfigChange { path: Some(path), sections, restart_required })
    }

    /// Refuses a workspace file whose content the operator has not trusted. The first sight
    /// of each such content is announced (`workspace.untrusted`) with the command that
    /// reviews and trusts it; the configuration in force stays.
    fn check_trusted(&self, text: &str) -> Result<(), ConfigRejected> {
        let mut pending = self.untrusted_config.lock().expect("not poisoned");
        match self.host.trust().config_trusted(text) {
            Ok(()) => {
                *pending = None;
                Ok(())
            }
            Err(untrusted) => {
                if pending.as_ref().is_none_or(|p| p.sha256 != untrusted.sha256) {
                    tracing::warn!(path = %untrusted.path.display(), review = %untrusted.review, "the workspace's configuration changed and is not trusted; the configuration in force stays");
                    self.host.emit(vec![untrusted.event()]);
                }
                let reason = format!("its content is not trusted; review it and run `{}` to apply it", untrusted.review);
                let rejected = ConfigRejected { path: untrusted.path.clone(), reason };
                *pending = Some(untrusted);
                Err(rejected)
            }
        }
    }

    /// Records a rejection and announces it (`config.rejected`), unless the same file was
    /// rejected for the same reason last time (the watcher may see one edit twice).
    fn reject(&self, path: &Path, text: Option<String>, reason: String) -> ConfigRejected {
        let rejected = ConfigRejected { path: path.to_path_buf(), reason };
        let mut last = self.rejected.lock().expect("not poisoned");
        let repeat = last.as_ref().is_some_and(|(t, r)| *t == text && r.reason == rejected.reason);
        if !repeat {
            tracing::warn!(path = %path.display(), reason = %rejected.reason, "configuration rejected; the previous one stays in force");
            self.host.emit(vec![("config.rejected", json!({ "path": path, "reason": rejected.reason }))]);
            *last = Some((text, rejected.clone()));
        }
        rejected
    }
}

/// The top-level sections of `new` that differ from `old`.
fn changed_sections(old: &Config, new: &Config) -> Vec<String> {
    let (a, b) = (serde_json::to_value(old).unwrap_or_default(), serde_json::to_value(new).unwrap_or_default());
    let mut keys: Vec<String> = a.as_object().into_iter().chain(b.as_object()).flat_map(|o| o.keys().cloned()).collect();
    keys.sort();
    keys.dedup();
    // API keys and trusted keys are never serialized: compare those tables themselves.
    keys.into_iter()
        .filter(|k| match k.as_str() {
            "plugins" => old.plugins != new.plugins,
            "provenance" => old.provenance != new.provenance,
            _ => a.get(k) != b.get(k),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sections_that_differ_are_named_even_for_a_secret() {
        let limits = |ms| format!("[limits]\nmemory_mib = 64\ntimeout_ms = {ms}\nmax_output_bytes = 4096\n");
        let old = Config::parse(&format!("{}[plugins.openai]\napi_key = \"sk-a\"\n", limits(1000))).unwrap();
        let same = Config::parse(&format!("[plugins.openai]\napi_key = \"sk-b\"\n{}", limits(1000))).unwrap();
        assert_eq!(changed_sections(&old, &same), ["plugins"], "a changed key is a change even though it is never shown");
        let same = Config::parse(&format!("[plugins.openai]\napi_key = \"sk-a\"\n{}", limits(1000))).unwrap();
        assert!(changed_sections(&old, &same).is_empty());
        let new = Config::parse(&format!("{}[plugins.openai]\napi_key = \"sk-b\"\n[server]\nport = 9\n", limits(2000))).unwrap();
        assert_eq!(changed_sections(&old, &new), ["limits", "plugins", "server"]);
    }
}
