//! Reloading `plugboard.toml` while Plugboard runs. The new file is read and validated
//! whole (TOML, every loaded plugin's grants, the agents and their permission rules)
//! before anything changes; an invalid file is rejected with `config.rejected` saying why,
//! and the previous configuration stays in force. A valid one is swapped in at once, with
//! `config.changed` naming the sections that differ: grants, limits, settings and hooks
//! apply to calls that start after the swap (calls in flight keep the policy they started
//! with), agents and permission rules to the next activity, `default_model` to the next
//! session. `[engine]`, `[cache]`, `[server]` and `[sessions]` are reported as needing a
//! restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::registry::Registry;
use super::{PluginHost, PluginSource};
use crate::capability::CapabilityPolicy;
use crate::config::{CONFIG_FILE_NAME, Config, ConfigOrigin};
use crate::trust::UntrustedFile;

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

impl PluginHost {
    /// The configuration file a reload reads: the one given at start, else the
    /// workspace's `plugboard.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.config_path.clone().unwrap_or_else(|| self.workspace().join(CONFIG_FILE_NAME))
    }

    /// Reads the configuration file again and, when it is valid, puts it in force (see the
    /// module's documentation). Plugins that failed to load are tried again, since a grant
    /// may have been the cause.
    pub async fn reload_config(&self) -> Result<ConfigChange, ConfigRejected> {
        let _one_at_a_time = self.reloading.lock().await;
        let path = self.config_file();
        let Some(Validated { config: new, change, policy_ctx, mut policies }) = self.validate_config(&path)? else {
            return Ok(ConfigChange { path: Some(path), ..ConfigChange::default() });
        };
        let registry = self.registry();
        // Swap: the configuration, then every plugin with its new policy.
        *self.config.write().expect("not poisoned") = Arc::new(new);
        *self.policy_ctx.write().expect("not poisoned") = policy_ctx;
        let mut next = Registry {
            failures: registry.failures.clone(),
            untrusted: registry.untrusted.clone(),
            shadowed: registry.shadowed.clone(),
            ..Registry::default()
        };
        for plugin in registry.plugins() {
            let (policy, grant_source) = policies.remove(&plugin.manifest.id).expect("resolved above");
            let settings_changed = policy.granted != plugin.policy().granted;
            // A provider's models may come from its settings: ask it again what it serves.
            let updated = if plugin.provider().is_some() && settings_changed {
                match plugin.redescribed(policy.clone(), grant_source).await {
                    Ok(updated) => updated,
                    Err(e) => {
                        tracing::warn!(plugin = %plugin.manifest.id, error = %e, "the provider could not say what it serves under its new settings; its model list stays");
                        plugin.with_policy(policy, grant_source)
                    }
                }
            } else {
                plugin.with_policy(policy, grant_source)
            };
            next.register(Arc::new(updated));
        }
        // `failed_hashes` stays empty: what failed is tried again under the new grants.
        let mut events =
            vec![("config.changed", json!({ "path": path, "sections": change.sections, "restart_required": change.restart_required }))];
        events.extend(next.changes(&registry));
        *self.registry.write().expect("not poisoned") = Arc::new(next);
        tracing::info!(path = %path.display(), sections = ?change.sections, restart_required = ?change.restart_required, "configuration reloaded");
        for warning in self.config_warnings() {
            tracing::warn!("{warning}");
        }
        self.emit(events);
        if !registry.failures().is_empty()
            && let Err(e) = self.reload_locked(None).await
        {
            tracing::warn!(error = %e, "retrying the plugins that had failed did not work");
        }
        Ok(change)
    }
}

/// A configuration that passed every check, ready to put in force.
struct Validated {
    config: Config,
    change: ConfigChange,
    policy_ctx: crate::capability::PolicyContext,
    policies: BTreeMap<String, (Arc<CapabilityPolicy>, crate::config::GrantSource)>,
}

impl PluginHost {
    /// Reads and checks the configuration file: `None` when it changes nothing. A rejection
    /// is announced (`config.rejected`) once per distinct file content and reason.
    fn validate_config(&self, path: &std::path::Path) -> Result<Option<Validated>, ConfigRejected> {
        let read = std::fs::read_to_string(path);
        // What the rejection is remembered by: the text (`None` when there is none to read).
        let text = read.as_ref().ok().cloned();
        let mut last_rejected = self.rejected_config.lock().expect("not poisoned");
        let mut reject = |reason: String| {
            let rejected = ConfigRejected { path: path.to_path_buf(), reason };
            // The same file rejected for the same reason (the watcher may see one edit
            // twice) is not news.
            let repeat = last_rejected.as_ref().is_some_and(|(t, r)| *t == text && r.reason == rejected.reason);
            if !repeat {
                tracing::warn!(path = %path.display(), reason = %rejected.reason, "configuration rejected; the previous one stays in force");
                self.emit(vec![("config.rejected", json!({ "path": path, "reason": rejected.reason }))]);
                *last_rejected = Some((text.clone(), rejected.clone()));
            }
            rejected
        };
        let text = match read {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(reject("the file was removed (restart to run with the defaults)".into()));
            }
            Err(e) => return Err(reject(format!("cannot read it: {e}"))),
        };
        if self.config_origin == ConfigOrigin::Workspace {
            self.check_trusted(&text)?;
        }
        let new = Config::parse_from(&text, self.config_origin).map_err(&mut reject)?;
        let sections = changed_sections(&self.config(), &new);
        if sections.is_empty() {
            *last_rejected = None;
            return Ok(None);
        }
        let restart_required = sections.iter().filter(|s| RESTART_SECTIONS.contains(&s.as_str())).cloned().collect();
        let change = ConfigChange { path: Some(path.to_path_buf()), sections, restart_required };
        crate::agent::resolve_agents(&new.agents).map_err(|e| reject(format!("agents: {e}")))?;
        let mut policy_ctx = self.policy_ctx();
        policy_ctx.default_limits = new.limits;
        policy_ctx.sandbox = new.sandbox.clone();
        policy_ctx.secrets = Arc::new(crate::secrets::configured(&new));
        let mut policies = BTreeMap::new();
        for plugin in self.registry().plugins() {
            let first_party = matches!(plugin.source, PluginSource::Bundled { .. });
            let (grants, grant_source) = new.grants_for(&plugin.manifest.id, first_party);
            let policy = CapabilityPolicy::resolve(&plugin.manifest, grants.as_ref(), &policy_ctx)
                .map_err(|e| reject(format!("plugin `{}`: {e}", plugin.manifest.id)))?;
            policies.insert(plugin.manifest.id.clone(), (Arc::new(policy), grant_source));
        }
        *last_rejected = None;
        Ok(Some(Validated { config: new, change, policy_ctx, policies }))
    }
}

impl PluginHost {
    /// Refuses a workspace configuration whose content the operator has not trusted. The
    /// first sight of each such content is announced (`workspace.untrusted`) with the
    /// command that reviews and trusts it; the configuration in force stays.
    fn check_trusted(&self, text: &str) -> Result<(), ConfigRejected> {
        let mut pending = self.untrusted_config.lock().expect("not poisoned");
        match self.trust().config_trusted(text) {
            Ok(()) => {
                *pending = None;
                Ok(())
            }
            Err(untrusted) => {
                let news = pending.as_ref().is_none_or(|p| p.sha256 != untrusted.sha256);
                if news {
                    tracing::warn!(path = %untrusted.path.display(), review = %untrusted.review, "the workspace's configuration changed and is not trusted; the configuration in force stays");
                    self.emit(vec![untrusted_event(&untrusted)]);
                }
                let reason = format!("its content is not trusted; review it and run `{}` to apply it", untrusted.review);
                *pending = Some(untrusted.clone());
                Err(ConfigRejected { path: untrusted.path, reason })
            }
        }
    }
}

/// The `workspace.untrusted` event of a file that is not applied.
pub(super) fn untrusted_event(file: &UntrustedFile) -> (&'static str, serde_json::Value) {
    ("workspace.untrusted", json!({ "path": file.path, "kind": file.kind, "sha256": file.sha256, "review": file.review }))
}

/// The top-level sections of `new` that differ from `old`.
fn changed_sections(old: &Config, new: &Config) -> Vec<String> {
    let (a, b) = (serde_json::to_value(old).unwrap_or_default(), serde_json::to_value(new).unwrap_or_default());
    let mut keys: Vec<String> = a.as_object().into_iter().chain(b.as_object()).flat_map(|o| o.keys().cloned()).collect();
    keys.sort();
    keys.dedup();
    // API keys are never serialized: compare the plugin tables themselves.
    keys.into_iter().filter(|k| if k == "plugins" { old.plugins != new.plugins } else { a.get(k) != b.get(k) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sections_that_differ_are_named_even_for_a_secret() {
        let limits = |ms| format!("[limits]\nmemory_mib = 64\ntimeout_ms = {ms}\nmax_output_bytes = 4096\n");
        let old = Config::parse(&format!("{}[plugins.openai]\napi_key = \"sk-a\"\n", limits(1000))).unwrap();
        let same = Config::parse(&format!("[plugins.openai]\napi_key = \"sk-a\"\n{}", limits(1000))).unwrap();
        assert!(changed_sections(&old, &same).is_empty());
        let new = Config::parse(&format!("{}[plugins.openai]\napi_key = \"sk-b\"\n[server]\nport = 9\n", limits(2000))).unwrap();
        assert_eq!(changed_sections(&old, &new), ["limits", "plugins", "server"]);
    }
}
