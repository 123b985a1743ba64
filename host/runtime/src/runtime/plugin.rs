//! A plugin: compiled and linked for its world ([`CompiledPlugin`]), then described by
//! running it once in its sandbox ([`LoadedPlugin`]): its tools, the models it serves, or
//! the hooks it handles. Calls dispatch to the world's own module (`tool`, `provider`,
//! `hook`), each running in the plugin's [`Sandbox`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use plugboard_provenance::{LockedPlugin, Provenance, ProvenanceError};
use serde::Serialize;
use wasmtime::Store;
use wasmtime::component::Linker;

use super::discovery::Candidate;
use super::error::{CallError, LoadError};
use super::hook::{HookRecipe, HookWorld};
use super::provider::{CompletionError, CompletionRequest, ProviderInfo, ProviderStream, ProviderWorld};
use super::sandbox::Sandbox;
use super::state::{CallState, ProgressSink};
use super::tool::{CallContext, ToolDefinition, ToolOutput, ToolWorld};
use crate::capability::{CapabilityPolicy, PolicyContext, ProviderOverrides};
use crate::hooks::HookInfo;
use crate::runtime::artifact_cache::{ArtifactCache, CacheOutcome, content_hash};
use crate::runtime::bindings::{ProviderPluginPre, ToolPluginPre, WIT_PACKAGE, compaction_types, hook_types};
use crate::runtime::config::{GrantSource, ProvenanceSettings, RuntimeConfig};
use crate::runtime::engine::PluginEngine;
use crate::runtime::manifest::{PluginManifest, World};

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PluginSource {
    /// Embedded in the binary (first-party).
    Bundled {
        /// Its short name.
        name: String,
    },
    /// A `.wasm` file.
    File {
        /// The file.
        path: PathBuf,
    },
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::Bundled { name } => write!(f, "bundled:{name}"),
            PluginSource::File { path } => write!(f, "{}", path.display()),
        }
    }
}

/// How a plugin was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LoadStats {
    /// Whether the compiled component came from the cache.
    #[serde(serialize_with = "serialize_outcome")]
    pub cache: CacheOutcome,
    /// Time from bytes to ready, in microseconds.
    pub micros: u64,
}

fn serialize_outcome<S: serde::Serializer>(o: &CacheOutcome, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match o {
        CacheOutcome::Precompiled => "precompiled",
        CacheOutcome::Hit => "cached",
        CacheOutcome::Compiled => "compiled",
        CacheOutcome::Uncached => "compiled (not cached)",
    })
}

/// How to instantiate a plugin, by world: linked, not yet described.
#[derive(Clone)]
enum Recipe {
    Tool(ToolPluginPre<CallState>),
    Provider(ProviderPluginPre<CallState>),
    Hook(HookRecipe),
}

impl Recipe {
    /// Runs the plugin once to learn what it offers.
    async fn describe(self, sandbox: &Sandbox) -> Result<Served, LoadError> {
        Ok(match self {
            Recipe::Tool(pre) => Served::Tools(ToolWorld::describe(pre, sandbox).await?),
            Recipe::Provider(pre) => Served::Provider(ProviderWorld::describe(pre, sandbox).await?),
            Recipe::Hook(pre) => Served::Hooks(HookWorld::describe(pre, sandbox).await?),
        })
    }
}

/// What a described plugin offers, by world.
#[derive(Clone)]
enum Served {
    Tools(ToolWorld),
    Provider(ProviderWorld),
    Hooks(HookWorld),
}

impl Served {
    fn recipe(&self) -> Recipe {
        match self {
            Served::Tools(w) => Recipe::Tool(w.pre().clone()),
            Served::Provider(w) => Recipe::Provider(w.pre().clone()),
            Served::Hooks(w) => Recipe::Hook(w.recipe().clone()),
        }
    }
}

/// A plugin compiled and linked for its world, with its policy resolved.
pub struct CompiledPlugin {
    manifest: PluginManifest,
    source: PluginSource,
    content_hash: String,
    policy: Arc<CapabilityPolicy>,
    grant_source: GrantSource,
    stats: LoadStats,
    engine: PluginEngine,
    recipe: Recipe,
    installed: Option<LockedPlugin>,
    provenance: Option<Provenance>,
}

impl CompiledPlugin {
    /// Reads the manifest, resolves the plugin's grants, compiles (or loads its code compiled
    /// ahead of time, or from the cache) and links for its world. Blocking (compiling takes
    /// up to a few hundred milliseconds): run it off the async workers, then
    /// [`Self::describe`].
    pub fn new(
        candidate: Candidate,
        engine: &PluginEngine,
        linker: &Linker<CallState>,
        cache: &ArtifactCache,
        config: &RuntimeConfig,
        policy_ctx: &PolicyContext,
    ) -> Result<Self, LoadError> {
        let started = Instant::now();
        let Candidate { source, bytes, first_party, precompiled, installed, .. } = candidate;
        let bytes = &*bytes;
        let path = match &source {
            PluginSource::File { path } => Some(path.as_path()),
            PluginSource::Bundled { .. } => None,
        };
        let hash = content_hash(bytes);
        let provenance = provenance_of(&source, installed.as_ref(), &hash, &config.provenance)?;
        let manifest = PluginManifest::read(bytes, path)?;
        let (grants, grant_source) = config.grants_for(&manifest.id, first_party);
        let policy = Arc::new(CapabilityPolicy::resolve(&manifest, grants.as_ref(), policy_ctx)?);
        let (component, cache_outcome) = cache
            .load_or_compile(&engine.engine, bytes, &hash, precompiled)
            .map_err(|e| LoadError::Component(format!("does not compile: {e:#}")))?;
        let world = manifest.world;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Component(format!("does not fit the `{world}` world of {WIT_PACKAGE}: {e:#}")))?;
        let exports = |e: wasmtime::Error| LoadError::Component(format!("does not export `{}`: {e:#}", world.export()));
        let recipe = match world {
            World::ToolPlugin => Recipe::Tool(ToolPluginPre::new(instance_pre).map_err(exports)?),
            World::ProviderPlugin => Recipe::Provider(ProviderPluginPre::new(instance_pre).map_err(exports)?),
            World::HookPlugin => Recipe::Hook(HookRecipe::new(instance_pre).map_err(exports)?),
        };
        let stats = LoadStats { cache: cache_outcome, micros: started.elapsed().as_micros() as u64 };
        Ok(CompiledPlugin {
            manifest,
            source,
            content_hash: hash,
            policy,
            grant_source,
            stats,
            engine: engine.clone(),
            recipe,
            installed,
            provenance,
        })
    }

    /// Asks the plugin what it offers, once, under its limits: its tools, the models a
    /// provider serves, or the hooks it handles.
    pub async fn describe(self) -> Result<LoadedPlugin, LoadError> {
        let started = Instant::now();
        let sandbox = Sandbox::new(&self.manifest.id, &self.engine, self.policy);
        let served = self.recipe.describe(&sandbox).await?;
        let mut stats = self.stats;
        stats.micros += started.elapsed().as_micros() as u64;
        Ok(LoadedPlugin {
            manifest: self.manifest,
            source: self.source,
            content_hash: self.content_hash,
            grant_source: self.grant_source,
            stats,
            engine: self.engine,
            sandbox,
            served,
            installed: self.installed,
            provenance: self.provenance,
        })
    }
}

/// What is known of where the plugin at `source` (whose SHA-256 is `hash`) came from, from
/// its lock file record `installed`; under `require_signatures`, an error unless a trusted
/// key signed it. An embedded plugin has none and needs none.
pub(crate) fn provenance_of(
    source: &PluginSource,
    installed: Option<&LockedPlugin>,
    hash: &str,
    settings: &ProvenanceSettings,
) -> Result<Option<Provenance>, ProvenanceError> {
    let PluginSource::File { path } = source else { return Ok(None) };
    let digest = format!("sha256:{hash}");
    match (installed, settings.require_signatures) {
        (Some(entry), true) => plugboard_provenance::require_signed(entry, &digest, &settings.keys).map(Some),
        (Some(entry), false) => match plugboard_provenance::check(entry, &digest, &settings.keys) {
            Ok(provenance) => Ok(Some(provenance)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "a plugin's lock file record does not match it; it loads as a local file");
                Ok(None)
            }
        },
        (None, true) => Err(ProvenanceError::NotInstalled {
            file: path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            lock: plugboard_provenance::LockFile::path_in(path.parent().unwrap_or(Path::new("."))),
        }),
        (None, false) => Ok(None),
    }
}

/// A plugin ready to serve calls.
pub struct LoadedPlugin {
    /// What it says about itself.
    pub manifest: PluginManifest,
    /// Where it came from.
    pub source: PluginSource,
    /// SHA-256 of its component.
    pub content_hash: String,
    /// Where its grants came from.
    pub grant_source: GrantSource,
    /// How it was loaded.
    pub stats: LoadStats,
    engine: PluginEngine,
    /// Where its calls run: its engine under its effective capabilities.
    sandbox: Sandbox,
    served: Served,
    /// Its record in its directory's lock file.
    pub installed: Option<LockedPlugin>,
    /// Where it was installed from and who signed it, when it was installed from a registry.
    pub provenance: Option<Provenance>,
}

impl LoadedPlugin {
    /// Its effective capabilities.
    pub fn policy(&self) -> &Arc<CapabilityPolicy> {
        self.sandbox.policy()
    }

    /// Its tools (none unless it is a tool plugin).
    pub fn tools(&self) -> &[ToolDefinition] {
        match &self.served {
            Served::Tools(w) => &w.tools,
            _ => &[],
        }
    }

    /// What it serves, when it is a provider.
    pub fn provider(&self) -> Option<&ProviderInfo> {
        match &self.served {
            Served::Provider(w) => Some(&w.info),
            _ => None,
        }
    }

    /// What it handles, when it is a hook plugin.
    pub fn hook(&self) -> Option<&HookInfo> {
        match &self.served {
            Served::Hooks(w) => Some(&w.info),
            _ => None,
        }
    }

    /// What it is, where it came from, what it requested and was granted, as JSON (for
    /// `plugboard plugin list --json` and `GET /plugins`).
    pub fn summary(&self) -> serde_json::Value {
        let pol = self.policy();
        serde_json::json!({
            "manifest": self.manifest,
            "source": self.source,
            "sha256": self.content_hash,
            "provenance": self.provenance,
            "load": self.stats,
            "tools": self.tools(),
            "provider": self.provider(),
            "hooks": self.hook(),
            "api_key": pol.credential.as_ref().map(|c| c.origin.clone()),
            "grant_source": self.grant_source,
            "granted": pol.granted,
            "effective": {
                "filesystem": pol.filesystem,
                "network": pol.granted.network.iter().filter(|_| !pol.network.is_closed()).collect::<Vec<_>>(),
                "env": pol.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
                "limits": pol.limits,
            },
        })
    }

    /// This plugin with another policy (after a configuration reload): the same compiled
    /// component, description and version; calls that start on it get the new grants and
    /// limits.
    pub(crate) fn with_policy(&self, policy: Arc<CapabilityPolicy>, grant_source: GrantSource) -> LoadedPlugin {
        LoadedPlugin {
            manifest: self.manifest.clone(),
            source: self.source.clone(),
            content_hash: self.content_hash.clone(),
            grant_source,
            stats: self.stats,
            sandbox: Sandbox::new(&self.manifest.id, &self.engine, policy),
            engine: self.engine.clone(),
            served: self.served.clone(),
            installed: self.installed.clone(),
            provenance: self.provenance.clone(),
        }
    }

    /// This plugin with `provenance` (after a configuration reload changed the trusted keys).
    pub(crate) fn with_provenance(self, provenance: Option<Provenance>) -> LoadedPlugin {
        LoadedPlugin { provenance, ..self }
    }

    /// Its provenance under other `[provenance]` settings (see [`provenance_of`]).
    pub(crate) fn provenance_under(&self, settings: &ProvenanceSettings) -> Result<Option<Provenance>, ProvenanceError> {
        provenance_of(&self.source, self.installed.as_ref(), &self.content_hash, settings)
    }

    /// [`Self::with_policy`], described again under the new policy (a provider's models
    /// may come from its settings).
    pub(crate) async fn redescribed(&self, policy: Arc<CapabilityPolicy>, grant_source: GrantSource) -> Result<LoadedPlugin, LoadError> {
        let updated = self.with_policy(policy, grant_source);
        let served = self.served.recipe().describe(&updated.sandbox).await?;
        Ok(LoadedPlugin { served, ..updated })
    }

    fn not_a(&self, what: &str) -> CallError {
        CallError::Host { plugin: self.manifest.id.clone(), message: format!("it is not a {what} plugin") }
    }

    /// Runs tool `name` of this plugin: a fresh instance, the call under the plugin's
    /// limits, then the instance is dropped.
    pub async fn call(
        &self,
        name: &str,
        arguments: &str,
        context: &CallContext,
        progress: Option<ProgressSink>,
    ) -> Result<ToolOutput, CallError> {
        let Served::Tools(tools) = &self.served else { return Err(self.not_a("tool")) };
        tools.call(&self.sandbox, name, arguments, context, progress).await
    }

    /// Starts a streamed completion on a fresh instance of this provider plugin, under the
    /// session's `overrides` (its own key or endpoint) when given.
    pub async fn complete(
        &self,
        request: CompletionRequest,
        overrides: Option<&ProviderOverrides>,
    ) -> Result<ProviderStream, CompletionError> {
        let Served::Provider(provider) = &self.served else { return Err(CompletionError::Plugin(self.not_a("provider"))) };
        let sandbox = match overrides {
            None => self.sandbox.clone(),
            Some(o) => {
                let policy = self.policy().with_overrides(&self.manifest, o).map_err(|(field, message)| {
                    CompletionError::Plugin(CallError::Host {
                        plugin: self.manifest.id.clone(),
                        message: format!("model_config.{field}: {message}"),
                    })
                })?;
                Sandbox::new(&self.manifest.id, &self.engine, Arc::new(policy))
            }
        };
        provider.complete(sandbox, request).await
    }

    /// Runs one export of a hook plugin on a fresh instance under the plugin's limits; the
    /// instance is dropped afterwards. `run` gets the store and the `hooks` export.
    pub async fn run_hook<T, F>(&self, run: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: for<'s> FnOnce(&'s mut Store<CallState>, &'s hook_types::Guest) -> BoxFuture<'s, wasmtime::Result<T>> + Send + 'static,
    {
        let Served::Hooks(hooks) = &self.served else { return Err(self.not_a("hook")) };
        hooks.run(&self.sandbox, run).await
    }

    /// Runs the `compaction` export of a hook plugin, like [`Self::run_hook`].
    pub async fn run_compaction_hook<T, F>(&self, run: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: for<'s> FnOnce(&'s mut Store<CallState>, &'s compaction_types::Guest) -> BoxFuture<'s, wasmtime::Result<T>> + Send + 'static,
    {
        let Served::Hooks(hooks) = &self.served else { return Err(self.not_a("hook")) };
        match hooks.run_compaction(&self.sandbox, run).await {
            Some(result) => result,
            None => {
                Err(CallError::Host { plugin: self.manifest.id.clone(), message: "it does not export the `compaction` interface".into() })
            }
        }
    }
}
