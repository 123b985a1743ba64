//! Putting a new [`RuntimeConfig`] in force while plugins serve, in two phases, so that a
//! configuration other layers refuse changes nothing here either:
//! [`PluginHost::prepare_config`] resolves every loaded plugin's grants under it (nothing
//! changes yet; the reason when one does not resolve), then [`Reconfiguration::apply`]
//! swaps the configuration and every plugin with its new policy in at once. Calls in flight
//! keep the policy they started with. A plugin reload cannot run between the two phases.
//! The MCP servers whose `[mcp.<name>]` table changed or went are stopped (their tools leave
//! in the same swap) and new or changed tables are started; the others keep running.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::PluginHost;
use super::config::{GrantSource, RuntimeConfig};
use super::plugin::PluginSource;
use super::registry::Registry;
use crate::capability::{CapabilityPolicy, PolicyContext};

/// A runtime configuration that every loaded plugin's grants resolve under, ready to put in
/// force. It holds the host's reload lock until it is applied or dropped.
pub struct Reconfiguration<'a> {
    host: &'a PluginHost,
    _one_at_a_time: tokio::sync::MutexGuard<'a, ()>,
    config: RuntimeConfig,
    policy_ctx: PolicyContext,
    policies: BTreeMap<String, (Arc<CapabilityPolicy>, GrantSource)>,
    /// Per plugin id, its provenance under the new `[provenance]`, or why it no longer loads.
    provenance: BTreeMap<String, Result<Option<plugboard_provenance::Provenance>, String>>,
}

impl PluginHost {
    /// Checks that every loaded plugin's grants resolve under `config`; the reason names the
    /// plugin when one does not.
    pub async fn prepare_config(&self, config: RuntimeConfig) -> Result<Reconfiguration<'_>, String> {
        let one_at_a_time = self.reloading.lock().await;
        let mut policy_ctx = self.policy_ctx();
        policy_ctx.default_limits = config.limits;
        policy_ctx.sandbox = config.sandbox.clone();
        policy_ctx.set_secrets(crate::secrets::configured(&config));
        let mut policies = BTreeMap::new();
        let mut provenance = BTreeMap::new();
        for plugin in self.registry().plugins() {
            provenance.insert(plugin.manifest.id.clone(), plugin.provenance_under(&config.provenance).map_err(|e| e.to_string()));
            let first_party = matches!(plugin.source, PluginSource::Bundled { .. });
            let (grants, grant_source) = config.grants_for(&plugin.manifest.id, first_party);
            let policy = CapabilityPolicy::resolve(&plugin.manifest, grants.as_ref(), &policy_ctx)
                .map_err(|e| format!("plugin `{}`: {e}", plugin.manifest.id))?;
            policies.insert(plugin.manifest.id.clone(), (Arc::new(policy), grant_source));
        }
        Ok(Reconfiguration { host: self, _one_at_a_time: one_at_a_time, config, policy_ctx, policies, provenance })
    }
}

impl Reconfiguration<'_> {
    /// Puts the configuration in force: grants, limits, settings and hooks apply to calls
    /// that start from now on. `announce` (the application's `config.changed`) is logged
    /// first, then what changed in the registry (a provider's models may follow from its
    /// settings). Plugins that failed to load are tried again, since a grant may have been
    /// the cause.
    pub async fn apply(self, announce: Vec<(&'static str, Value)>) {
        let Reconfiguration { host, _one_at_a_time, config, policy_ctx, mut policies, mut provenance } = self;
        let registry = host.registry();
        let config_servers = config.mcp_servers.clone();
        *host.config.write().expect("not poisoned") = Arc::new(config);
        *host.policy_ctx.write().expect("not poisoned") = policy_ctx;
        let mut next = Registry {
            failures: registry.failures.clone(),
            untrusted: registry.untrusted.clone(),
            shadowed: registry.shadowed.clone(),
            ..Registry::default()
        };
        for plugin in registry.plugins() {
            let (policy, grant_source) = policies.remove(&plugin.manifest.id).expect("resolved when prepared");
            let provenance = match provenance.remove(&plugin.manifest.id).expect("checked when prepared") {
                Ok(provenance) => provenance,
                Err(reason) => {
                    tracing::warn!(plugin = %plugin.manifest.id, %reason, "unloaded under the new [provenance] settings");
                    next.failures.push(crate::runtime::LoadFailure { source: plugin.source.clone(), reason });
                    continue;
                }
            };
            let settings_changed = policy.granted != plugin.policy().granted;
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
            next.register(Arc::new(updated.with_provenance(provenance)));
        }
        // `failed_hashes` stays empty: what failed is tried again under the new grants.
        let unchanged = host.mcp.unchanged(&config_servers);
        next.adopt_mcp(&registry, |name| unchanged.iter().any(|n| n == name));
        let mut events = announce;
        events.extend(next.changes(&registry));
        host.install(next);
        if let Some(this) = host.this.get() {
            let stopped = host.mcp.apply(this, &config_servers);
            events.extend(stopped.into_iter().map(|name| ("mcp.server.stopped", serde_json::json!({ "name": name }))));
        }
        for warning in host.config_warnings() {
            tracing::warn!("{warning}");
        }
        host.emit(events);
        if !registry.failures().is_empty()
            && let Err(e) = host.reload_locked(None).await
        {
            tracing::warn!(error = %e, "retrying the plugins that had failed did not work");
        }
    }
}
