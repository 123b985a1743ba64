//! What is loaded at one moment: plugins by id, tools by name, providers by id, and the
//! plugins that failed. A registry is never changed in place: a reload builds a new one and
//! swaps it in whole, so a call that started keeps the plugin version it started with, and
//! [`Registry::changes`] says what differs between two of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::plugin::LoadedPlugin;
use super::provider::ModelInfo;
use super::{LoadFailure, Shadowed, ToolDefinition};

/// Which plugins a registry swap loaded, reloaded and unloaded, by id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PluginChanges {
    /// New ids.
    pub loaded: Vec<String>,
    /// Ids whose component changed.
    pub reloaded: Vec<String>,
    /// Ids gone.
    pub unloaded: Vec<String>,
}

/// The loaded plugins and what they provide.
#[derive(Default, Clone)]
pub struct Registry {
    pub(super) plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    pub(super) tools: BTreeMap<String, Arc<LoadedPlugin>>,
    pub(super) providers: BTreeMap<String, Arc<LoadedPlugin>>,
    pub(super) hooks: BTreeMap<String, Arc<LoadedPlugin>>,
    pub(super) failures: Vec<LoadFailure>,
    /// The content hash of each file that failed to load, so an unchanged broken file is
    /// not tried (and reported) again at every reload.
    pub(super) failed_hashes: std::collections::HashMap<super::PluginSource, String>,
    /// Workspace plugin files that are not loaded because their content is not trusted.
    pub(super) untrusted: Vec<crate::trust::UntrustedFile>,
    /// Files not loaded because a plugin with their id took precedence.
    pub(super) shadowed: Vec<Shadowed>,
}

impl Registry {
    /// Adds a plugin, unless a plugin with its id is there already (it was of higher
    /// precedence) or one of its tools is taken (recorded as a failure).
    pub(crate) fn register(&mut self, plugin: Arc<LoadedPlugin>) {
        let id = plugin.manifest.id.clone();
        if let Some(existing) = self.plugins.get(&id) {
            tracing::warn!(plugin = %id, shadowed = %plugin.source, by = %existing.source, "plugin shadowed by one of higher precedence");
            self.shadowed.push(Shadowed { id, source: plugin.source.clone(), by: existing.source.clone() });
            return;
        }
        if let Some(clash) =
            plugin.tools().iter().find_map(|t| self.tools.get(&t.name).map(|other| (t.name.clone(), other.manifest.id.clone())))
        {
            self.failures.push(LoadFailure {
                source: plugin.source.clone(),
                reason: format!("plugin `{id}` provides the tool `{}`, which plugin `{}` already provides", clash.0, clash.1),
            });
            return;
        }
        for tool in plugin.tools() {
            self.tools.insert(tool.name.clone(), plugin.clone());
        }
        if plugin.provider().is_some() {
            self.providers.insert(id.clone(), plugin.clone());
        }
        if plugin.hook().is_some() {
            self.hooks.insert(id.clone(), plugin.clone());
        }
        self.plugins.insert(id, plugin);
    }

    /// Every tool with its plugin, by name.
    pub fn tools(&self) -> impl Iterator<Item = (&ToolDefinition, &Arc<LoadedPlugin>)> {
        self.tools.iter().filter_map(|(name, plugin)| plugin.tools().iter().find(|t| &t.name == name).map(|t| (t, plugin)))
    }

    /// The plugin providing tool `name`.
    pub fn tool_plugin(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.tools.get(name)
    }

    /// The names of every tool.
    pub fn tool_names(&self) -> Vec<String> {
        self.tools.keys().cloned().collect()
    }

    /// Every loaded plugin, by id.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins.values()
    }

    /// The loaded plugin `id`.
    pub fn plugin(&self, id: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.get(id)
    }

    /// The provider plugin `id`.
    pub fn provider(&self, id: &str) -> Option<&Arc<LoadedPlugin>> {
        self.providers.get(id)
    }

    /// Every model of every loaded provider, as `(provider/model, model, provider plugin)`.
    pub fn models(&self) -> impl Iterator<Item = (String, &ModelInfo, &Arc<LoadedPlugin>)> {
        self.providers.iter().flat_map(|(id, plugin)| {
            plugin.provider().into_iter().flat_map(move |info| info.models.iter().map(move |m| (format!("{id}/{}", m.id), m, plugin)))
        })
    }

    /// Every hook plugin, by id (enabled or not: see [`crate::hooks::HookChain`]).
    pub fn hooks(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.hooks.values()
    }

    /// The plugin files not loaded because another with their id took precedence.
    pub fn shadowed(&self) -> &[Shadowed] {
        &self.shadowed
    }

    /// The plugins that could not be loaded.
    pub fn failures(&self) -> &[LoadFailure] {
        &self.failures
    }

    /// Workspace plugin files that are not loaded because their content is not trusted.
    pub fn untrusted(&self) -> &[crate::trust::UntrustedFile] {
        &self.untrusted
    }

    /// The plugins loaded, reloaded (a new content hash or source) and unloaded from `old`
    /// to `self`, by id.
    pub fn plugin_changes(&self, old: &Registry) -> PluginChanges {
        let mut changes = PluginChanges::default();
        for (id, plugin) in &self.plugins {
            match old.plugins.get(id) {
                None => changes.loaded.push(id.clone()),
                Some(before) if before.content_hash != plugin.content_hash || before.source != plugin.source => {
                    changes.reloaded.push(id.clone())
                }
                Some(_) => {}
            }
        }
        changes.unloaded = old.plugins.keys().filter(|id| !self.plugins.contains_key(*id)).cloned().collect();
        changes
    }

    /// The events that take `old` to `self`, each once: `plugin.loaded`, `plugin.reloaded`
    /// (a new content hash), `plugin.unloaded`; `tool.added`, `tool.removed`, `tool.changed`
    /// (description or schema); `provider.added`, `provider.removed`; `model.added`,
    /// `model.removed`; `hook.added`, `hook.removed` (a hook whose points changed is removed,
    /// then added); `plugin.shadowed` (a file newly shadowed by another with its id).
    pub fn changes(&self, old: &Registry) -> Vec<(&'static str, Value)> {
        let mut events = Vec::new();
        let plugins = self.plugin_changes(old);
        for id in &plugins.loaded {
            events.push(("plugin.loaded", loaded(&self.plugins[id])));
        }
        for id in &plugins.reloaded {
            let (before, plugin) = (&old.plugins[id], &self.plugins[id]);
            events.push((
                "plugin.reloaded",
                json!({ "id": id, "old_version": before.manifest.version, "new_version": plugin.manifest.version, "old_hash": before.content_hash, "new_hash": plugin.content_hash, "source": plugin.source, "load_ms": plugin.stats.micros as f64 / 1000.0 }),
            ));
        }
        for id in &plugins.unloaded {
            let before = &old.plugins[id];
            events.push(("plugin.unloaded", json!({ "id": id, "version": before.manifest.version, "source": before.source })));
        }
        let tools = |r: &Registry| -> BTreeMap<String, (ToolDefinition, String)> {
            r.tools().map(|(t, p)| (t.name.clone(), (t.clone(), p.manifest.id.clone()))).collect()
        };
        let (now, then) = (tools(self), tools(old));
        for (name, (tool, plugin)) in &now {
            match then.get(name) {
                None => events.push(("tool.added", json!({ "name": name, "plugin": plugin, "description": tool.description }))),
                Some((before, _)) if before.description != tool.description || before.parameters != tool.parameters => {
                    events.push(("tool.changed", json!({ "name": name, "plugin": plugin, "description": tool.description })))
                }
                Some(_) => {}
            }
        }
        for (name, (_, plugin)) in &then {
            if !now.contains_key(name) {
                events.push(("tool.removed", json!({ "name": name, "plugin": plugin })));
            }
        }
        for id in self.providers.keys().filter(|id| !old.providers.contains_key(*id)) {
            events.push(("provider.added", json!({ "id": id })));
        }
        for id in old.providers.keys().filter(|id| !self.providers.contains_key(*id)) {
            events.push(("provider.removed", json!({ "id": id })));
        }
        let models = |r: &Registry| -> Vec<String> { r.models().map(|(m, _, _)| m).collect() };
        let (now, then) = (models(self), models(old));
        for model in now.iter().filter(|m| !then.contains(m)) {
            events.push(("model.added", json!({ "model": model })));
        }
        for model in then.iter().filter(|m| !now.contains(m)) {
            events.push(("model.removed", json!({ "model": model })));
        }
        for (id, plugin) in &self.hooks {
            let before = old.hooks.get(id).and_then(|p| p.hook());
            if before != plugin.hook() {
                if before.is_some() {
                    events.push(("hook.removed", json!({ "id": id })));
                }
                events.push(("hook.added", json!({ "id": id, "version": plugin.manifest.version, "hooks": plugin.hook() })));
            }
        }
        for id in old.hooks.keys().filter(|id| !self.hooks.contains_key(*id)) {
            events.push(("hook.removed", json!({ "id": id })));
        }
        for s in self.shadowed.iter().filter(|s| !old.shadowed.contains(s)) {
            events.push(("plugin.shadowed", json!({ "id": s.id, "source": s.source, "by": s.by })));
        }
        events
    }
}

/// The data of `plugin.loaded`.
pub fn loaded(plugin: &LoadedPlugin) -> Value {
    let kind = if plugin.provider().is_some() {
        "provider"
    } else if plugin.hook().is_some() {
        "hook"
    } else {
        "tool"
    };
    json!({ "id": plugin.manifest.id, "version": plugin.manifest.version, "kind": kind, "hash": plugin.content_hash, "source": plugin.source, "load_ms": plugin.stats.micros as f64 / 1000.0 })
}
