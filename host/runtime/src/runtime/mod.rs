//! The plugin runtime: loads plugins, keeps the registry of their tools, and runs calls,
//! each in a fresh instance under the plugin's capabilities and limits.
//!
//! Its parts, lowest first: [`engine`] (the one wasmtime engine, its instance slots and guest
//! threads), [`artifact_cache`], [`bindings`] and [`manifest`]; [`state`] (what one store
//! holds) and [`sandbox`] (the one way an export runs); the worlds [`tool`], [`provider`]
//! and [`hook`]; [`plugin`] (compiling, describing, dispatching); then [`registry`],
//! [`discovery`], [`reload`] and [`reconfigure`] around [`PluginHost`]. The host is
//! configured with its own slice of the file, [`config::RuntimeConfig`], handed to it by
//! the application layer at start and on each reload.

pub mod artifact_cache;
pub mod bindings;
pub mod config;
pub mod connections;
pub mod discovery;
pub mod engine;
pub mod error;
pub mod hook;
pub mod manifest;
pub mod mcp;
mod open_at;
pub mod plugin;
pub mod provider;
pub mod reconfigure;
pub mod registry;
pub mod reload;
pub mod sandbox;
pub mod state;
pub mod test_binary;
pub mod tool;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock, Weak};

use serde::Serialize;
use wasmtime::component::{HasSelf, Linker};

use crate::capability::PolicyContext;
use crate::capability::confinement::{self, ConfinementSupport};
use crate::runtime::artifact_cache::ArtifactCache;
use crate::runtime::bindings::ToolPlugin;
use crate::runtime::config::RuntimeConfig;
use crate::runtime::engine::PluginEngine;
pub use error::{CallError, LoadError};
pub use plugin::{CompiledPlugin, LoadedPlugin, PluginSource};
pub use registry::{Registry, ToolOwner};
pub use reload::{EventSink, ReloadReport};
use state::{CallState, ProgressSink};
pub use tool::{CallContext, ToolDefinition, ToolOutput};

/// How to start a [`PluginHost`].
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// The workspace directory (default: the current directory).
    pub workspace: Option<PathBuf>,
    /// `--config FILE` (default: `<workspace>/plugboard.toml` when present); read by the
    /// application layer, not by the host.
    pub config_file: Option<PathBuf>,
    /// `--plugins DIR`s.
    pub plugin_dirs: Vec<PathBuf>,
    /// Overrides the cache directory (and `[cache]`).
    pub cache_dir: Option<PathBuf>,
    /// Skip the user's plugins directory (tests use this for isolation).
    pub skip_user_plugins: bool,
    /// The data directory: sessions and workspace trust (default: the user's).
    pub data_dir: Option<PathBuf>,
}

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The workspace directory is not usable.
    #[error("workspace `{path}` is not usable: {message}")]
    Workspace {
        /// The directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The engine could not be created.
    #[error("{0}")]
    Engine(String),
}

/// The workspace directory, canonical: the one given, or the current directory.
pub fn workspace_dir(given: Option<&Path>) -> Result<PathBuf, StartError> {
    let workspace = match given {
        Some(w) => w.to_path_buf(),
        None => std::env::current_dir().map_err(|e| StartError::Workspace { path: ".".into(), message: e.to_string() })?,
    };
    workspace.canonicalize().map_err(|e| StartError::Workspace { path: workspace.clone(), message: e.to_string() })
}

/// A plugin file that is not loaded because another with its id took precedence (a
/// `--plugins` directory over the user's, over the workspace's, over the bundled plugins).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shadowed {
    /// The id both have.
    pub id: String,
    /// The file that is not loaded.
    pub source: PluginSource,
    /// The one that serves the id.
    pub by: PluginSource,
}

/// A plugin that could not be loaded, and why. The others are loaded regardless.
#[derive(Debug, Clone, Serialize)]
pub struct LoadFailure {
    /// Where it is.
    pub source: PluginSource,
    /// Why it failed.
    pub reason: String,
}

/// The loaded plugins and their tools.
pub struct PluginHost {
    engine: PluginEngine,
    linker: Arc<Linker<CallState>>,
    cache: ArtifactCache,
    /// The runtime's configuration in force; replaced whole by a reconfiguration.
    config: RwLock<Arc<RuntimeConfig>>,
    /// What grants resolve against; `[limits]` and `[sandbox]` follow the configuration.
    policy_ctx: RwLock<PolicyContext>,
    workspace: PathBuf,
    confinement: Arc<ConfinementSupport>,
    /// Where plugin files are looked for.
    dirs: discovery::PluginDirs,
    /// What is loaded now; replaced whole by a reload ([`Self::install`]).
    registry: RwLock<Arc<Registry>>,
    /// How many registries were installed: followers learn of each change.
    installed: tokio::sync::watch::Sender<u64>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Where plugin events go (the event log), once attached.
    sink: RwLock<Option<EventSink>>,
    /// What the operator trusts of the workspace (its plugins are loaded only if trusted).
    trust: crate::trust::WorkspaceTrust,
    /// The MCP servers' tasks and status.
    mcp: mcp::McpSources,
    /// This host, for the tasks it starts, once shared ([`Self::start_mcp`]).
    this: OnceLock<Weak<PluginHost>>,
    /// Events emitted before a sink was attached, given to the first one.
    pending: std::sync::Mutex<Vec<(&'static str, serde_json::Value)>>,
}

impl PluginHost {
    /// Builds the engine under `config` and loads every plugin found, concurrently. A
    /// plugin that fails to load is recorded in the registry's [`Registry::failures`]; the
    /// others serve. (`plugboard::app::App::start` reads the configuration file first.)
    pub async fn start(options: HostOptions, config: RuntimeConfig) -> Result<Self, StartError> {
        let workspace = workspace_dir(options.workspace.as_deref())?;
        let trust = crate::trust::WorkspaceTrust::new(&workspace, options.data_dir.as_deref());
        crate::capability::network::install_tls_provider();
        let engine = PluginEngine::new(&config.engine).map_err(|e| StartError::Engine(format!("{e:#}")))?;
        let cache_dir = match (&options.cache_dir, config.cache.enabled) {
            (Some(dir), _) => Some(dir.clone()),
            (None, Some(false)) => None,
            (None, _) => config.cache.dir.clone().or_else(ArtifactCache::default_dir),
        };
        let cache = ArtifactCache::new(&engine.engine, cache_dir);
        let linker = Arc::new(new_linker(&engine).map_err(StartError::Engine)?);
        let confinement = Arc::new(confinement::probe());
        let protected = crate::trust::protected_dirs(options.data_dir.as_deref(), cache.dir());
        let mut policy_ctx = PolicyContext {
            protected,
            secrets: Arc::default(),
            redactor: Default::default(),
            workspace: workspace.clone(),
            default_limits: config.limits,
            sandbox: config.sandbox.clone(),
            confinement: confinement.clone(),
            max_memory_mib: (engine.allocator == crate::runtime::engine::AllocatorKind::Pooling).then_some(config.engine.max_memory_mib),
        };
        policy_ctx.set_secrets(crate::secrets::configured(&config));
        let user_dir = if options.skip_user_plugins { None } else { discovery::user_plugins_dir() };
        let dirs = discovery::PluginDirs {
            workspace: workspace.clone(),
            user: user_dir,
            extra: options.plugin_dirs.clone(),
            trust: trust.clone(),
        };
        let host = PluginHost {
            engine,
            linker,
            cache,
            config: RwLock::new(Arc::new(config)),
            policy_ctx: RwLock::new(policy_ctx),
            workspace: workspace.clone(),
            confinement,
            dirs,
            registry: RwLock::new(Arc::new(Registry::default())),
            installed: tokio::sync::watch::Sender::new(0),
            reloading: tokio::sync::Mutex::new(()),
            sink: RwLock::new(None),
            trust,
            mcp: mcp::McpSources::default(),
            this: OnceLock::new(),
            pending: std::sync::Mutex::new(Vec::new()),
        };
        let dirs = host.dirs.clone();
        let discovery::Discovered { candidates, errors, untrusted } = tokio::task::spawn_blocking(move || dirs.discover())
            .await
            .map_err(|e| StartError::Engine(format!("plugin discovery failed: {e}")))?;
        let mut registry = Registry::default();
        registry.failures.extend(errors.into_iter().map(|(source, reason)| LoadFailure { source, reason }));
        for file in &untrusted {
            tracing::warn!(path = %file.path.display(), review = %file.review, "a workspace plugin is not trusted, so it is not loaded");
        }
        registry.untrusted = untrusted;
        let hashes: std::collections::HashMap<PluginSource, String> = candidates
            .iter()
            .filter(|c| matches!(c.source, PluginSource::File { .. }))
            .map(|c| (c.source.clone(), c.failure_key(&crate::runtime::artifact_cache::content_hash(&c.bytes))))
            .collect();
        for (source, result) in host.load_all(candidates).await {
            match result {
                Ok(plugin) => registry.register(Arc::new(plugin)),
                Err(e) => {
                    tracing::warn!(%source, error = %e, "plugin not loaded");
                    if let Some(hash) = hashes.get(&source) {
                        registry.failed_hashes.insert(source.clone(), hash.clone());
                    }
                    registry.failures.push(LoadFailure { source, reason: e.to_string() });
                }
            }
        }
        host.install(registry);
        host.warn_if_unconfined();
        for warning in host.config_warnings() {
            tracing::warn!("{warning}");
        }
        Ok(host)
    }

    /// What is loaded now. A reload replaces it; what a caller holds stays as it was.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.read().expect("not poisoned").clone()
    }

    /// Puts `next` in force, whole; calls in flight finish on the plugins they started on.
    fn install(&self, next: Registry) {
        *self.registry.write().expect("not poisoned") = Arc::new(next);
        self.installed.send_modify(|n| *n += 1);
    }

    /// Follows the registry: the receiver sees a new value each time a reload or a
    /// reconfiguration puts a new one in force (for `notifications/tools/list_changed`).
    pub fn registry_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.installed.subscribe()
    }

    /// Says at start-up when plugins that run commands cannot be confined by the kernel.
    fn warn_if_unconfined(&self) {
        let ConfinementSupport::Unavailable(reason) = &*self.confinement else { return };
        let registry = self.registry();
        let runners: Vec<&str> =
            registry.plugins().filter(|p| !p.manifest.capabilities.process.is_empty()).map(|p| p.manifest.id.as_str()).collect();
        if runners.is_empty() {
            return;
        }
        let consequence = match self.config().sandbox.unconfined_commands {
            confinement::UnconfinedCommands::Refuse => "their commands are refused ([sandbox] unconfined_commands = \"refuse\")",
            confinement::UnconfinedCommands::Allow => "their commands run UNCONFINED ([sandbox] unconfined_commands = \"allow\")",
        };
        tracing::warn!(plugins = %runners.join(", "), "kernel confinement of commands is unavailable ({reason}); {consequence}");
    }

    /// Loads candidates concurrently; the results come highest precedence first (the
    /// discovery order breaks ties), ready to register in that order.
    async fn load_all(&self, candidates: Vec<discovery::Candidate>) -> Vec<(PluginSource, Result<LoadedPlugin, LoadError>)> {
        let mut tasks = tokio::task::JoinSet::new();
        for (index, candidate) in candidates.into_iter().enumerate() {
            let loader = self.loader();
            tasks.spawn(async move {
                let (source, precedence) = (candidate.source.clone(), candidate.precedence);
                let result = loader.load(candidate).await;
                (index, precedence, source, result)
            });
        }
        let mut loaded = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(result) => loaded.push(result),
                Err(e) => tracing::error!(error = %e, "a plugin load task failed"),
            }
        }
        loaded.sort_by_key(|(index, precedence, _, _)| (std::cmp::Reverse(*precedence), *index));
        loaded.into_iter().map(|(_, _, source, result)| (source, result)).collect()
    }

    /// What loading one plugin needs, detached from `self` for concurrent loads.
    pub fn loader(&self) -> PluginLoader {
        PluginLoader {
            engine: self.engine.clone(),
            linker: self.linker.clone(),
            cache: self.cache.clone(),
            config: self.config(),
            policy_ctx: self.policy_ctx(),
        }
    }

    /// Starts a streamed completion with `model` (`provider/model`); `request.model` is set
    /// to the model's id, and the request is held to what the provider says of the model
    /// (see [`provider::fit_to_model`]): every provider sends at most its output limit, and
    /// no tools to a model that cannot call them.
    pub async fn complete(
        &self,
        model: &str,
        request: provider::CompletionRequest,
    ) -> Result<provider::ProviderStream, provider::CompletionError> {
        self.complete_with(model, request, None).await
    }

    /// [`Self::complete`] with a session's provider overrides (its own key or endpoint).
    pub async fn complete_with(
        &self,
        model: &str,
        mut request: provider::CompletionRequest,
        overrides: Option<&crate::capability::ProviderOverrides>,
    ) -> Result<provider::ProviderStream, provider::CompletionError> {
        let registry = self.registry();
        let unknown = || provider::CompletionError::UnknownModel {
            model: model.to_string(),
            available: registry.models().map(|(r, _, _)| r).collect(),
        };
        let (provider_id, model_id) = model.split_once('/').ok_or_else(unknown)?;
        let plugin = registry.provider(provider_id).ok_or_else(unknown)?.clone();
        let info = plugin.provider().and_then(|info| info.models.iter().find(|m| m.id == model_id)).ok_or_else(unknown)?;
        provider::fit_to_model(&mut request, info);
        request.model = model_id.to_string();
        plugin.complete(request, overrides).await
    }

    /// The hooks in force now, in order, reporting failures to the attached event sink.
    pub fn hooks(&self) -> crate::hooks::HookChain {
        let registry = self.registry();
        if registry.hooks.is_empty() {
            return crate::hooks::HookChain::default();
        }
        crate::hooks::HookChain::new(registry.hooks(), &self.config().hooks, self.sink(), self.workspace().display().to_string())
    }

    /// The engine in use.
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// The workspace directory (canonical).
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// The runtime's configuration in force now (a reconfiguration replaces it; what a
    /// caller holds stays).
    pub fn config(&self) -> Arc<RuntimeConfig> {
        self.config.read().expect("not poisoned").clone()
    }

    /// What grants resolve against now.
    fn policy_ctx(&self) -> PolicyContext {
        self.policy_ctx.read().expect("not poisoned").clone()
    }

    /// What the operator trusts of the workspace.
    pub fn trust(&self) -> &crate::trust::WorkspaceTrust {
        &self.trust
    }

    /// The directories watched for plugin files.
    pub fn plugin_dirs(&self) -> Vec<PathBuf> {
        self.dirs.watched()
    }

    /// Tables of the configuration that name no loaded plugin or hook (`[plugins.X]`,
    /// `[hooks.X]`), each with the nearest loaded id: a misspelt id grants nothing.
    pub fn config_warnings(&self) -> Vec<String> {
        let config = self.config();
        let registry = self.registry();
        let failed = |id: &str| registry.failures().iter().any(|f| f.source.to_string().contains(id));
        let mut warnings = Vec::new();
        for id in config.plugins.keys().filter(|id| registry.plugin(id).is_none() && !failed(id)) {
            let hint = crate::suggest::did_you_mean(id, registry.plugins().map(|p| p.manifest.id.as_str()));
            warnings.push(format!("[plugins.{id}] names no loaded plugin, so it grants nothing{hint}"));
        }
        let hooks: Vec<&str> = registry.plugins().filter(|p| p.hook().is_some()).map(|p| p.manifest.id.as_str()).collect();
        for id in config.hooks.keys().filter(|id| !hooks.contains(&id.as_str()) && !failed(id)) {
            let hint = crate::suggest::did_you_mean(id, hooks.iter().copied());
            warnings.push(format!("[hooks.{id}] names no loaded hook plugin, so it has no effect{hint}"));
        }
        warnings
    }

    /// Whether commands can be confined on this machine.
    pub fn confinement(&self) -> &ConfinementSupport {
        &self.confinement
    }

    /// Runs tool `name` with `arguments` (a JSON object) under its plugin's policy.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: &str,
        context: &CallContext,
        progress: Option<ProgressSink>,
    ) -> Result<ToolOutput, CallError> {
        let owner = {
            let registry = self.registry();
            match registry.tool(name) {
                Some((_, owner)) => owner.clone(),
                None => return Err(CallError::UnknownTool { name: name.to_string(), available: registry.tool_names() }),
            }
        };
        tool::check_arguments_object(name, arguments)?;
        match owner {
            ToolOwner::Plugin(plugin) => plugin.call(name, arguments, context, progress).await,
            ToolOwner::Mcp(server) => {
                let limits = server.config.limits(self.config().limits);
                server.call(name, arguments, limits, &self.redactor()).await
            }
        }
    }

    /// The most output a call of `tool` may return.
    pub fn output_limit(&self, tool: &str) -> u64 {
        match self.registry().tool(tool) {
            Some((_, ToolOwner::Plugin(plugin))) => plugin.policy().limits.max_output_bytes,
            Some((_, ToolOwner::Mcp(server))) => server.config.limits(self.config().limits).max_output_bytes,
            None => self.config().limits.max_output_bytes,
        }
    }

    /// Masks every configured secret (what each plugin's policy masks too).
    pub fn redactor(&self) -> crate::secrets::Redactor {
        self.policy_ctx.read().expect("not poisoned").redactor.clone()
    }
}

/// Everything needed to load one plugin, cheap to clone.
#[derive(Clone)]
pub struct PluginLoader {
    engine: PluginEngine,
    linker: Arc<Linker<CallState>>,
    cache: ArtifactCache,
    config: Arc<RuntimeConfig>,
    policy_ctx: PolicyContext,
}

impl PluginLoader {
    /// Compiles (off the async workers) and prepares a plugin, then lists its tools.
    pub async fn load(&self, candidate: discovery::Candidate) -> Result<LoadedPlugin, LoadError> {
        let this = self.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            CompiledPlugin::new(candidate, &this.engine, &this.linker, &this.cache, &this.config, &this.policy_ctx)
        })
        .await
        .map_err(|e| LoadError::Component(format!("the compile task failed: {e}")))??;
        compiled.describe().await
    }

    /// Loads the plugin file at `path` without registering it (for `plugin inspect`).
    pub async fn load_file(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Component(format!("cannot read {}: {e}", path.display())))?;
        let lock = path.parent().and_then(|dir| plugboard_provenance::LockFile::read(dir).ok().flatten());
        self.load(discovery::Candidate::file(path.to_path_buf(), bytes, 0).recorded_in(lock.as_ref())).await
    }
}

/// The linker every plugin is instantiated with: WASI (filesystem through preopens only,
/// special files refused without blocking, no sockets), `wasi:http` (through the network
/// policy) and the Plugboard host interfaces.
fn new_linker(engine: &PluginEngine) -> Result<Linker<CallState>, String> {
    let mut linker = Linker::<CallState>::new(&engine.engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| format!("linking WASI: {e:#}"))?;
    open_at::replace_in(&mut linker).map_err(|e| format!("linking WASI's open-at: {e:#}"))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(|e| format!("linking wasi:http: {e:#}"))?;
    ToolPlugin::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)
        .map_err(|e| format!("linking the host interfaces: {e:#}"))?;
    Ok(linker)
}
