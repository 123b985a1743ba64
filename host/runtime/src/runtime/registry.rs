//! What is loaded at one moment: plugins by id, the connected MCP servers by name, tools by
//! name (each owned by a plugin or a server), providers by id, and the plugins that failed. A registry is never changed in place: a reload builds a new one and
//! swaps it in whole, so a call that started keeps the plugin version it started with, and
//! [`Registry::changes`] says what differs between two of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::mcp::McpTools;
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

/// What provides a tool: a plugin, or an MCP server (`[mcp.<name>]`).
#[derive(Clone)]
pub enum ToolOwner {
    /// A loaded plugin.
    Plugin(Arc<LoadedPlugin>),
    /// A connected MCP server.
    Mcp(Arc<McpTools>),
}

impl ToolOwner {
    /// The plugin's id, or `mcp:<server>`.
    pub fn label(&self) -> String {
        match self {
            ToolOwner::Plugin(plugin) => plugin.manifest.id.clone(),
            ToolOwner::Mcp(server) => super::mcp::owner_label(&server.server),
        }
    }

    /// Every tool it provides.
    pub fn definitions(&self) -> &[ToolDefinition] {
        match self {
            ToolOwner::Plugin(plugin) => plugin.tools(),
            ToolOwner::Mcp(server) => &server.tools,
        }
    }

    /// The plugin, when a plugin provides the tool.
    pub fn plugin(&self) -> Option<&Arc<LoadedPlugin>> {
        match self {
            ToolOwner::Plugin(plugin) => Some(plugin),
            ToolOwner::Mcp(_) => None,
        }
    }

    /// Whether a call may change files: a plugin or a server with a directory granted
    /// read-write, or a plugin that runs commands.
    pub fn may_write(&self) -> bool {
        use crate::capability::filesystem::Access;
        match self {
            ToolOwner::Plugin(plugin) => {
                let policy = plugin.policy();
                policy.filesystem.iter().any(|g| g.access == Access::ReadWrite) || !policy.process.policy.granted.is_empty()
            }
            ToolOwner::Mcp(server) => server.config.filesystem.iter().any(|g| g.access() == Access::ReadWrite),
        }
    }
}

/// The loaded plugins and what they provide.
#[derive(Default, Clone)]
pub struct Registry {
    pub(super) plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// The connected MCP servers, by name.
    pub(super) mcp: BTreeMap<String, Arc<McpTools>>,
    pub(super) tools: BTreeMap<String, ToolOwner>,
    pub(super) providers: BTreeMap<String, Arc<LoadedPlugin>>,
    pub(super) hooks: BTreeMap<String, Arc<LoadedPlugin>>,
    pub(super) failures: Vec<LoadFailure>,
    /// What each file that failed to load is remembered by ([`super::discovery::Candidate::failure_key`]),
    /// so an unchanged broken file is not tried (and reported) again at every reload.
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
        if let Some(clash) = plugin.tools().iter().find_map(|t| self.tools.get(&t.name).map(|other| (t.name.clone(), other.label()))) {
            self.failures.push(LoadFailure {
                source: plugin.source.clone(),
                reason: format!("plugin `{id}` provides the tool `{}`, which plugin `{}` already provides", clash.0, clash.1),
            });
            return;
        }
        for tool in plugin.tools() {
            self.tools.insert(tool.name.clone(), ToolOwner::Plugin(plugin.clone()));
        }
        if plugin.provider().is_some() {
            self.providers.insert(id.clone(), plugin.clone());
        }
        if plugin.hook().is_some() {
            self.hooks.insert(id.clone(), plugin.clone());
        }
        self.plugins.insert(id, plugin);
    }

    /// Puts server `name`'s tools in (`Some`) or takes them out (`None`). A tool whose name
    /// is taken by a plugin is left out; the result names each, with why.
    pub(crate) fn set_mcp(&mut self, name: &str, server: Option<Arc<McpTools>>) -> Vec<(String, String)> {
        self.tools.retain(|_, owner| !matches!(owner, ToolOwner::Mcp(m) if m.server == name));
        self.mcp.remove(name);
        let Some(server) = server else { return Vec::new() };
        let mut skipped = Vec::new();
        for tool in &server.tools {
            match self.taken(&tool.name, name) {
                Some(clash) => skipped.push(clash),
                None => {
                    self.tools.insert(tool.name.clone(), ToolOwner::Mcp(server.clone()));
                }
            }
        }
        self.mcp.insert(name.to_string(), server);
        skipped
    }

    /// Why server `server`'s tool `tool` is not offered, when another owner has its name.
    pub(crate) fn taken(&self, tool: &str, server: &str) -> Option<(String, String)> {
        let other = self.tools.get(tool).filter(|owner| !matches!(owner, ToolOwner::Mcp(m) if m.server == server))?;
        Some((tool.to_string(), format!("`{tool}`: the name is taken by {}", other.label())))
    }

    /// Takes over `old`'s connected servers that `keep` names, after the plugins are in.
    pub(crate) fn adopt_mcp(&mut self, old: &Registry, keep: impl Fn(&str) -> bool) {
        for (name, server) in old.mcp.iter().filter(|(name, _)| keep(name)) {
            self.set_mcp(name, Some(server.clone()));
        }
    }

    /// Every tool with what provides it, by name.
    pub fn tools(&self) -> impl Iterator<Item = (&ToolDefinition, &ToolOwner)> {
        self.tools.iter().filter_map(|(name, owner)| owner.definitions().iter().find(|t| &t.name == name).map(|t| (t, owner)))
    }

    /// Tool `name` and what provides it.
    pub fn tool(&self, name: &str) -> Option<(&ToolDefinition, &ToolOwner)> {
        let owner = self.tools.get(name)?;
        owner.definitions().iter().find(|t| t.name == name).map(|t| (t, owner))
    }

    /// The plugin providing tool `name`, when a plugin does.
    pub fn tool_plugin(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.tools.get(name).and_then(ToolOwner::plugin)
    }

    /// The connected MCP servers, by name.
    pub fn mcp_servers(&self) -> impl Iterator<Item = &Arc<McpTools>> {
        self.mcp.values()
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
            r.tools().map(|(t, owner)| (t.name.clone(), (t.clone(), owner.label()))).collect()
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
