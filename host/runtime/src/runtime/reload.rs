//! Reloading plugins while they serve. A reload reads the plugin directories again, loads
//! what is new or changed (compiling off the async workers), keeps what is unchanged, and
//! swaps the whole registry in at once. Calls that started keep the version they started
//! with (they hold it); calls that start after the swap use the new one. A new version
//! that does not load leaves the old one serving, and says why (`plugin.failed`).
//!
//! The application's file watcher (`plugboard::app::App::watch`) calls a reload when a
//! plugin file is added, changed or removed, and when the operator trusts the workspace.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use super::discovery::Discovered;
use super::plugin::{LoadedPlugin, PluginSource};
use super::registry::{Registry, loaded};
use super::{LoadFailure, PluginHost};
use crate::runtime::artifact_cache::content_hash;

/// Receives events (type and data), in order, to record them: of one session when the
/// first argument names it, else of the host.
pub type EventSink = Arc<dyn Fn(Option<&str>, Vec<(&'static str, Value)>) + Send + Sync>;

/// The most events kept for a sink not attached yet.
const PENDING_EVENTS: usize = 1024;

/// What a reload did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ReloadReport {
    /// Plugins loaded for the first time.
    pub loaded: Vec<String>,
    /// Plugins whose new version took over.
    pub reloaded: Vec<String>,
    /// Plugins removed.
    pub unloaded: Vec<String>,
    /// New versions that failed (the old version, if any, still serves), with the reason.
    #[schema(value_type = Vec<Object>)]
    pub failed: Vec<LoadFailure>,
    /// Plugins left as they were.
    pub unchanged: usize,
    /// How long the reload took, in milliseconds.
    pub elapsed_ms: f64,
}

/// Why a reload could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// No plugin with this id is loaded.
    #[error("no plugin `{0}` is loaded")]
    UnknownPlugin(String),
    /// The plugin directories could not be read.
    #[error("cannot read the plugin directories: {0}")]
    Discovery(String),
}

/// One candidate of a reload: kept as it was, or to load.
enum Slot {
    Keep(Arc<LoadedPlugin>),
    Load {
        previous: Option<Arc<LoadedPlugin>>,
        source: PluginSource,
    },
    Skip,
    /// A file that failed before and has not changed.
    StillBroken(LoadFailure, String),
}

impl PluginHost {
    /// Sends plugin events (loads, reloads, tools and models added or removed, hook
    /// failures) to `sink`.
    pub fn attach_events(&self, sink: EventSink) {
        *self.sink.write().expect("not poisoned") = Some(sink.clone());
        let pending = std::mem::take(&mut *self.pending.lock().expect("not poisoned"));
        if !pending.is_empty() {
            sink(None, pending);
        }
    }

    /// Sends `events` to the attached sink (nowhere before one is attached).
    pub fn emit(&self, events: Vec<(&'static str, Value)>) {
        if events.is_empty() {
            return;
        }
        match self.sink() {
            Some(sink) => sink(None, events),
            None => {
                // Before a sink is attached (the MCP servers may come up first), the first
                // events wait for it; a host that never gets one keeps at most this many.
                let mut pending = self.pending.lock().expect("not poisoned");
                let room = PENDING_EVENTS.saturating_sub(pending.len());
                pending.extend(events.into_iter().take(room));
            }
        }
    }

    /// Where events go, once attached.
    pub(crate) fn sink(&self) -> Option<EventSink> {
        self.sink.read().expect("not poisoned").clone()
    }

    /// Announces what the start-up load did: `plugin.loaded` for each plugin, and
    /// `plugin.failed` for each that did not load.
    pub fn announce_loaded(&self) {
        let registry = self.registry();
        let mut events: Vec<(&'static str, Value)> = registry.plugins().map(|p| ("plugin.loaded", loaded(p))).collect();
        events.extend(registry.failures().iter().map(|f| ("plugin.failed", json!({ "source": f.source, "reason": f.reason }))));
        self.emit(events);
    }

    /// Reloads every plugin whose file changed, appeared or disappeared (`only`: just the
    /// plugin with that id), and swaps the result in at once.
    pub async fn reload(&self, only: Option<&str>) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        self.reload_locked(only).await
    }

    /// [`Self::reload`], for a caller that holds the reload lock.
    pub(super) async fn reload_locked(&self, only: Option<&str>) -> Result<ReloadReport, ReloadError> {
        let started = Instant::now();
        let old = self.registry();
        let target = match only {
            Some(id) => Some(old.plugin(id).ok_or_else(|| ReloadError::UnknownPlugin(id.to_string()))?.source.clone()),
            None => None,
        };
        let dirs = self.dirs.clone();
        let Discovered { mut candidates, errors, untrusted } =
            tokio::task::spawn_blocking(move || dirs.discover()).await.map_err(|e| ReloadError::Discovery(e.to_string()))?;
        candidates.sort_by_key(|c| std::cmp::Reverse(c.precedence));
        let by_source: HashMap<&PluginSource, &Arc<LoadedPlugin>> = old.plugins().map(|p| (&p.source, p)).collect();
        let mut slots = Vec::with_capacity(candidates.len());
        // A trusted plugin whose file changed to untrusted content keeps serving as it was.
        for file in &untrusted {
            if let Some(previous) = by_source.get(&PluginSource::File { path: file.path.clone() }) {
                slots.push((Slot::Keep((*previous).clone()), usize::MAX));
            }
        }
        let mut untrusted_events: Vec<(&'static str, Value)> =
            untrusted.iter().filter(|f| !old.untrusted.contains(f)).map(crate::trust::UntrustedFile::event).collect();
        let mut hashes: HashMap<usize, String> = HashMap::new();
        let mut loads = tokio::task::JoinSet::new();
        let mut loading = Vec::new();
        for (index, candidate) in candidates.into_iter().enumerate() {
            let previous = by_source.get(&candidate.source).map(|p| (*p).clone());
            let in_scope = target.as_ref().is_none_or(|t| *t == candidate.source);
            let hash = match (&previous, &candidate.source) {
                (Some(_), PluginSource::Bundled { .. }) => None,
                _ => Some(content_hash(&candidate.bytes)),
            };
            let unchanged = match (&previous, &hash) {
                (Some(_), None) => true,
                (Some(p), Some(hash)) => p.content_hash == *hash && p.installed == candidate.installed,
                (None, _) => false,
            };
            let failure_key = hash.as_deref().map(|h| candidate.failure_key(h));
            let known_broken = failure_key.as_ref().is_some_and(|k| old.failed_hashes.get(&candidate.source) == Some(k));
            if known_broken {
                if let Some(p) = previous {
                    slots.push((Slot::Keep(p), index));
                } else if let Some(f) = old.failures.iter().find(|f| f.source == candidate.source) {
                    slots.push((Slot::StillBroken(f.clone(), failure_key.unwrap_or_default()), index));
                }
                continue;
            }
            let slot = match previous {
                Some(p) if !in_scope || unchanged => Slot::Keep(p),
                None if !in_scope => Slot::Skip,
                previous => {
                    let loader = self.loader();
                    let kept_source = candidate.source.clone();
                    if let Some(key) = failure_key {
                        hashes.insert(index, key);
                    }
                    let id = previous.as_ref().map(|p| p.manifest.id.clone());
                    loading.push(("plugin.loading", json!({ "id": id, "source": kept_source })));
                    loads.spawn(async move { (index, loader.load(candidate).await) });
                    Slot::Load { previous, source: kept_source }
                }
            };
            slots.push((slot, index));
        }
        self.emit(loading);
        let mut results = HashMap::new();
        while let Some(joined) = loads.join_next().await {
            if let Ok((index, result)) = joined {
                results.insert(index, result);
            }
        }

        let mut next = Registry::default();
        let mut report = ReloadReport::default();
        let mut failed_events = Vec::new();
        next.failures.extend(errors.into_iter().map(|(source, reason)| LoadFailure { source, reason }));
        next.untrusted = untrusted;
        for (slot, index) in slots {
            match slot {
                Slot::Skip => {}
                Slot::StillBroken(failure, hash) => {
                    next.failed_hashes.insert(failure.source.clone(), hash);
                    next.failures.push(failure);
                }
                Slot::Keep(plugin) => {
                    report.unchanged += 1;
                    next.register(plugin);
                }
                Slot::Load { previous, source } => match results.remove(&index) {
                    Some(Ok(plugin)) => next.register(Arc::new(plugin)),
                    Some(Err(e)) => {
                        let reason = e.to_string();
                        if let Some(hash) = &hashes.get(&index) {
                            next.failed_hashes.insert(source.clone(), (*hash).clone());
                        }
                        let (id, kept) = match &previous {
                            Some(p) => (Some(p.manifest.id.clone()), Some(p.manifest.version.clone())),
                            None => (None, None),
                        };
                        tracing::warn!(plugin = ?id, %reason, "a new plugin version failed to load; the old one (if any) keeps serving");
                        failed_events
                            .push(("plugin.failed", json!({ "id": id, "source": source, "reason": reason, "kept_version": kept })));
                        report.failed.push(LoadFailure { source: source.clone(), reason: reason.clone() });
                        match previous {
                            Some(p) => next.register(p),
                            None => next.failures.push(LoadFailure { source, reason }),
                        }
                    }
                    None => {
                        if let Some(p) = previous {
                            next.register(p);
                        }
                    }
                },
            }
        }
        next.adopt_mcp(&old, |_| true);
        let mut events = failed_events;
        events.append(&mut untrusted_events);
        let plugins = next.plugin_changes(&old);
        (report.loaded, report.reloaded, report.unloaded) = (plugins.loaded, plugins.reloaded, plugins.unloaded);
        events.extend(next.changes(&old));
        self.install(next);
        report.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(loaded = ?report.loaded, reloaded = ?report.reloaded, unloaded = ?report.unloaded, failed = report.failed.len(), ms = report.elapsed_ms, "plugins reloaded");
        self.emit(events);
        Ok(report)
    }
}
