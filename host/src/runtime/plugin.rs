//! A loaded plugin: its manifest, policy, compiled component and tools; and one call.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::Store;
use wasmtime::component::Linker;

use super::error::CallError;
use super::state::{CallState, HostDenial, ProgressSink};
use crate::artifact_cache::{ArtifactCache, CacheOutcome, content_hash};
use crate::bindings::{HookPlugin, HookPluginPre, ProviderPluginPre, ToolPluginPre, provider_types, types};
use crate::capability::{CapabilityKind, CapabilityPolicy, PolicyContext, ProviderOverrides};
use crate::config::{Config, GrantSource};
use crate::engine::PluginEngine;
use crate::manifest::{ManifestError, PluginManifest};

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

/// One tool as offered to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolDefinition {
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: serde_json::Value,
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
        CacheOutcome::Hit => "cached",
        CacheOutcome::Compiled => "compiled",
        CacheOutcome::Uncached => "compiled (not cached)",
    })
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Its manifest is missing or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Its grants in the configuration are invalid.
    #[error(transparent)]
    Grant(#[from] crate::capability::GrantError),
    /// It does not compile, or does not fit its world.
    #[error("{0}")]
    Component(String),
    /// Listing its tools failed.
    #[error("listing its tools failed: {0}")]
    Tools(String),
    /// Asking a provider what it serves failed, or its answer is invalid.
    #[error("describing the provider failed: {0}")]
    Provider(String),
    /// Asking a hook plugin what it handles failed, or its answer is invalid.
    #[error("describing the hooks failed: {0}")]
    Hooks(String),
}

/// The instantiation recipe of a plugin, by world.
#[derive(Clone)]
enum WorldPre {
    Tool(ToolPluginPre<CallState>),
    Provider(ProviderPluginPre<CallState>),
    Hook(HookPluginPre<CallState>),
}

/// A plugin ready to serve calls.
pub struct LoadedPlugin {
    /// What it says about itself.
    pub manifest: PluginManifest,
    /// Where it came from.
    pub source: PluginSource,
    /// SHA-256 of its component.
    pub content_hash: String,
    /// Its effective capabilities.
    pub policy: Arc<CapabilityPolicy>,
    /// Where its grants came from.
    pub grant_source: GrantSource,
    /// Its tools (tool plugins).
    pub tools: Vec<ToolDefinition>,
    /// What it serves (provider plugins).
    pub provider: Option<super::provider::ProviderInfo>,
    /// What it handles (hook plugins).
    pub hook: Option<crate::hooks::HookInfo>,
    /// How it was loaded.
    pub stats: LoadStats,
    engine: PluginEngine,
    pre: WorldPre,
}

/// What a call needs besides the tool and its arguments.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The session (empty outside one).
    pub session_id: String,
    /// The call's id.
    pub call_id: String,
}

/// A successful call's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolOutput {
    /// The text the model sees.
    pub text: String,
    /// A short title.
    pub title: Option<String>,
    /// Structured metadata.
    pub metadata: Option<serde_json::Value>,
}

impl LoadedPlugin {
    /// What it is, where it came from, what it requested and was granted, as JSON (for
    /// `plugboard plugin list --json` and `GET /plugins`).
    pub fn summary(&self) -> serde_json::Value {
        let p = self;
        let pol = &p.policy;
        serde_json::json!({
            "manifest": p.manifest,
            "source": p.source,
            "sha256": p.content_hash,
            "load": p.stats,
            "tools": p.tools,
            "provider": p.provider,
            "hooks": p.hook,
            "api_key": p.policy.credential.as_ref().map(|c| c.origin.clone()),
            "grant_source": p.grant_source,
            "granted": pol.granted,
            "effective": {
                "filesystem": pol.filesystem,
                "network": pol.granted.network.iter().filter(|_| !pol.network.is_closed()).collect::<Vec<_>>(),
                "env": pol.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
                "limits": pol.limits,
            },
        })
    }

    /// Prepares a plugin from its component bytes: reads the manifest, resolves its grants,
    /// compiles (or loads from the cache) and links. Blocking (compiling takes up to a few
    /// hundred milliseconds): run it off the async workers, then [`Self::describe`].
    #[allow(clippy::too_many_arguments)]
    pub fn compile(
        bytes: &[u8],
        source: PluginSource,
        first_party: bool,
        engine: &PluginEngine,
        linker: &Linker<CallState>,
        cache: &ArtifactCache,
        config: &Config,
        policy_ctx: &PolicyContext,
    ) -> Result<Self, LoadError> {
        let started = Instant::now();
        let path = match &source {
            PluginSource::File { path } => Some(path.as_path()),
            PluginSource::Bundled { .. } => None,
        };
        let manifest = PluginManifest::read(bytes, path)?;
        let (grants, grant_source) = config.grants_for(&manifest.id, first_party);
        let policy = Arc::new(CapabilityPolicy::resolve(&manifest, grants.as_ref(), policy_ctx)?);
        let hash = content_hash(bytes);
        let (component, cache_outcome) =
            cache.load_or_compile(&engine.engine, bytes, &hash).map_err(|e| LoadError::Component(format!("does not compile: {e:#}")))?;
        let world = manifest.world.clone();
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Component(format!("does not fit the `{world}` world of plugboard:plugin@0.1.0: {e:#}")))?;
        let pre = match world.as_str() {
            "provider-plugin" => WorldPre::Provider(
                ProviderPluginPre::new(instance_pre)
                    .map_err(|e| LoadError::Component(format!("does not export `plugboard:plugin/provider@0.1.0`: {e:#}")))?,
            ),
            "hook-plugin" => WorldPre::Hook(
                HookPluginPre::new(instance_pre)
                    .map_err(|e| LoadError::Component(format!("does not export `plugboard:plugin/hooks@0.1.0`: {e:#}")))?,
            ),
            _ => WorldPre::Tool(
                ToolPluginPre::new(instance_pre)
                    .map_err(|e| LoadError::Component(format!("does not export `plugboard:plugin/tool@0.1.0`: {e:#}")))?,
            ),
        };
        let mut plugin = LoadedPlugin {
            manifest,
            source,
            content_hash: hash,
            policy,
            grant_source,
            tools: Vec::new(),
            provider: None,
            hook: None,
            stats: LoadStats { cache: cache_outcome, micros: 0 },
            engine: engine.clone(),
            pre,
        };
        plugin.stats.micros = started.elapsed().as_micros() as u64;
        Ok(plugin)
    }

    /// This plugin with another policy (after a configuration reload): the same compiled
    /// component, tools and version; calls that start on it get the new grants and limits.
    pub(crate) fn with_policy(&self, policy: Arc<CapabilityPolicy>, grant_source: GrantSource) -> LoadedPlugin {
        LoadedPlugin {
            manifest: self.manifest.clone(),
            source: self.source.clone(),
            content_hash: self.content_hash.clone(),
            policy,
            grant_source,
            tools: self.tools.clone(),
            provider: self.provider.clone(),
            hook: self.hook.clone(),
            stats: self.stats,
            engine: self.engine.clone(),
            pre: self.pre.clone(),
        }
    }

    /// A store for one instance: it first takes an instance slot of the engine (waiting up
    /// to the plugin's time limit), held until the store is dropped. The guest yields to
    /// the async runtime at every epoch tick, so a spinning guest never holds a worker; the
    /// caller's wall-clock timeout ends it.
    async fn new_store_with(&self, policy: Arc<CapabilityPolicy>, progress: Option<ProgressSink>) -> Result<Store<CallState>, CallError> {
        let plugin = || self.manifest.id.clone();
        let slot = self.engine.acquire_slot(policy.limits.timeout()).await.map_err(|busy| CallError::Busy {
            plugin: plugin(),
            capacity: busy.capacity,
            waited_ms: busy.waited.as_millis() as u64,
        })?;
        let mut state = CallState::new(policy, progress).map_err(|e| CallError::Host { plugin: plugin(), message: format!("{e:#}") })?;
        state.slot = slot;
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        Ok(store)
    }

    /// Asks the plugin what it offers, once, under its limits: its tools, or the models a
    /// provider serves.
    pub async fn describe(&mut self) -> Result<(), LoadError> {
        let started = Instant::now();
        match &self.pre {
            WorldPre::Tool(_) => self.list_tools().await?,
            WorldPre::Provider(_) => self.describe_provider().await?,
            WorldPre::Hook(_) => self.describe_hooks().await?,
        }
        self.stats.micros += started.elapsed().as_micros() as u64;
        Ok(())
    }

    async fn describe_provider(&mut self) -> Result<(), LoadError> {
        let WorldPre::Provider(pre) = &self.pre else { unreachable!("called for providers") };
        let pre = pre.clone();
        let (info, _) = self
            .sandboxed(self.policy.clone(), None, move |store| {
                Box::pin(async move { pre.instantiate_async(&mut *store).await?.plugboard_plugin_provider().call_info(store).await })
            })
            .await
            .map_err(|e| LoadError::Provider(e.to_string()))?;
        if info.id != self.manifest.id {
            return Err(LoadError::Provider(format!("it calls itself `{}`, but its manifest id is `{}`", info.id, self.manifest.id)));
        }
        if info.models.is_empty() {
            return Err(LoadError::Provider("it serves no models".into()));
        }
        self.provider = Some(super::provider::ProviderInfo::from(info));
        Ok(())
    }

    async fn describe_hooks(&mut self) -> Result<(), LoadError> {
        let info = self.run_hook(|store, hooks| Box::pin(async move { hooks.call_describe(store).await })).await;
        let info = info.map_err(|e| LoadError::Hooks(e.to_string()))?;
        self.hook = Some(crate::hooks::HookInfo::try_from(info).map_err(LoadError::Hooks)?);
        Ok(())
    }

    /// Runs one export of a hook plugin on a fresh instance under the plugin's limits; the
    /// instance is dropped afterwards. `run` gets the store and the `hooks` export.
    pub async fn run_hook<T, F>(&self, run: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: for<'s> FnOnce(
                &'s mut Store<CallState>,
                &'s crate::bindings::hook_types::Guest,
            ) -> futures::future::BoxFuture<'s, wasmtime::Result<T>>
            + Send
            + 'static,
    {
        let WorldPre::Hook(pre) = &self.pre else {
            return Err(CallError::Host { plugin: self.manifest.id.clone(), message: "it is not a hook plugin".into() });
        };
        let pre = pre.clone();
        let (value, _) = self
            .sandboxed(self.policy.clone(), None, move |store| {
                Box::pin(async move {
                    let instance: HookPlugin = pre.instantiate_async(&mut *store).await?;
                    run(store, instance.plugboard_plugin_hooks()).await
                })
            })
            .await?;
        Ok(value)
    }

    /// Runs the plugin's `tools` export once, under its limits, to learn its tools. What it
    /// lists is bounded: [`MAX_TOOLS`] tools, names in the WIT's format, and descriptions and
    /// schemas of bounded size, so a hostile list costs the host little to refuse.
    async fn list_tools(&mut self) -> Result<(), LoadError> {
        let WorldPre::Tool(pre) = &self.pre else { unreachable!("called for tool plugins") };
        let pre = pre.clone();
        let (definitions, _) = self
            .sandboxed(self.policy.clone(), None, move |store| {
                Box::pin(async move { pre.instantiate_async(&mut *store).await?.plugboard_plugin_tool().call_tools(store).await })
            })
            .await
            .map_err(|e| LoadError::Tools(e.to_string()))?;
        if definitions.len() > MAX_TOOLS {
            return Err(LoadError::Tools(format!("it lists {} tools; a plugin may provide at most {MAX_TOOLS}", definitions.len())));
        }
        let mut tools = Vec::with_capacity(definitions.len());
        for d in definitions {
            check_tool_name(&d.name).map_err(LoadError::Tools)?;
            if d.description.len() > MAX_DESCRIPTION_BYTES {
                return Err(LoadError::Tools(format!(
                    "tool `{}` has a description of {} bytes; at most {MAX_DESCRIPTION_BYTES}",
                    d.name,
                    d.description.len()
                )));
            }
            if d.parameters_schema.len() > MAX_SCHEMA_BYTES {
                return Err(LoadError::Tools(format!(
                    "tool `{}` has a parameters schema of {} bytes; at most {MAX_SCHEMA_BYTES}",
                    d.name,
                    d.parameters_schema.len()
                )));
            }
            let parameters = serde_json::from_str(&d.parameters_schema)
                .map_err(|e| LoadError::Tools(format!("tool `{}` has a parameters schema that is not JSON: {e}", d.name)))?;
            if tools.iter().any(|t: &ToolDefinition| t.name == d.name) {
                return Err(LoadError::Tools(format!("the tool `{}` is listed twice", d.name)));
            }
            tools.push(ToolDefinition { name: d.name, description: d.description, parameters });
        }
        self.tools = tools;
        Ok(())
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
        let plugin = self.manifest.id.clone();
        let limits = self.policy.limits;
        let WorldPre::Tool(pre) = &self.pre else {
            return Err(CallError::Host { plugin, message: "it is not a tool plugin".into() });
        };
        let wit_context = types::CallContext {
            session_id: context.session_id.clone(),
            call_id: context.call_id.clone(),
            working_directory: self.policy.process.workspace.to_string_lossy().into_owned(),
        };
        let (pre, tool, arguments) = (pre.clone(), name.to_string(), arguments.to_string());
        let (result, mut store) = self
            .sandboxed(self.policy.clone(), progress, move |store| {
                Box::pin(async move {
                    let instance = pre.instantiate_async(&mut *store).await?;
                    instance.plugboard_plugin_tool().call_call(store, &tool, &arguments, &wit_context).await
                })
            })
            .await?;
        let denials = store.data_mut().take_denials();
        match result {
            Ok(output) => {
                let size = (output.text.len() + output.metadata.as_ref().map_or(0, |m| m.len())) as u64;
                if size > limits.max_output_bytes {
                    return Err(CallError::OutputTooLarge { plugin, size, limit: limits.max_output_bytes });
                }
                let mask = |text: String| self.policy.redactor.redact(&text).into_owned();
                let metadata = match output.metadata.map(mask) {
                    None => None,
                    Some(m) => Some(serde_json::from_str(&m).map_err(|e| CallError::Failed {
                        tool: name.to_string(),
                        message: format!("the plugin returned metadata that is not JSON: {e}"),
                    })?),
                };
                Ok(ToolOutput { text: mask(output.text), title: output.title.map(mask), metadata })
            }
            Err(error) => Err(self.explain_tool_error(name, self.masked(error), denials)),
        }
    }

    /// `error` with the configured secrets masked in the plugin's own words.
    fn masked(&self, error: types::ToolError) -> types::ToolError {
        let mask = |text: String| self.policy.redactor.redact(&text).into_owned();
        match error {
            types::ToolError::InvalidArguments(m) => types::ToolError::InvalidArguments(mask(m)),
            types::ToolError::UnknownTool(m) => types::ToolError::UnknownTool(mask(m)),
            types::ToolError::Failed(m) => types::ToolError::Failed(mask(m)),
            types::ToolError::Denied(d) => {
                types::ToolError::Denied(types::CapabilityDenied { target: mask(d.target), reason: mask(d.reason), ..d })
            }
        }
    }

    fn explain_tool_error(&self, tool: &str, error: types::ToolError, denials: Vec<HostDenial>) -> CallError {
        match error {
            types::ToolError::InvalidArguments(message) => CallError::InvalidArguments { tool: tool.into(), message },
            types::ToolError::UnknownTool(name) => {
                CallError::Failed { tool: tool.into(), message: format!("the plugin has no tool `{name}`") }
            }
            types::ToolError::Failed(message) => CallError::Failed { tool: tool.into(), message },
            types::ToolError::Denied(d) => {
                let kind = match d.kind {
                    types::CapabilityKind::Filesystem => CapabilityKind::Filesystem,
                    types::CapabilityKind::Network => CapabilityKind::Network,
                    types::CapabilityKind::Process => CapabilityKind::Process,
                    types::CapabilityKind::Env => CapabilityKind::Env,
                };
                // What the host itself refused is the most precise account, and names the
                // capability that would allow it (a command's working directory is a
                // filesystem matter, whatever the plugin reports).
                let (kind, target, reason) = match denials.iter().find(|h| h.kind == kind).or(denials.first()) {
                    Some(h) => (h.kind, h.target.clone(), h.reason.clone()),
                    None => (kind, d.target, d.reason),
                };
                let hint = self.policy.grant_hint(kind, &target);
                CallError::Denied { plugin: self.manifest.id.clone(), kind, target, reason, hint }
            }
        }
    }

    /// Starts a streamed completion on a fresh instance of this provider plugin.
    pub async fn complete(
        self: &Arc<Self>,
        request: provider_types::CompletionRequest,
        overrides: Option<&ProviderOverrides>,
    ) -> Result<super::provider::ProviderStream, super::provider::CompletionError> {
        use super::provider::CompletionError;
        let plugin = self.manifest.id.clone();
        let WorldPre::Provider(pre) = &self.pre else {
            return Err(CompletionError::Plugin(CallError::Host { plugin, message: "it is not a provider plugin".into() }));
        };
        let policy = match overrides {
            None => self.policy.clone(),
            Some(o) => Arc::new(self.policy.with_overrides(&self.manifest, o).map_err(|(field, message)| {
                CompletionError::Plugin(CallError::Host { plugin: plugin.clone(), message: format!("model_config.{field}: {message}") })
            })?),
        };
        let pre = pre.clone();
        let ((instance, started), store) = self
            .sandboxed(policy, None, move |store| {
                Box::pin(async move {
                    let instance = pre.instantiate_async(&mut *store).await?;
                    let started = instance.plugboard_plugin_provider().call_complete(&mut *store, &request).await?;
                    Ok((instance, started))
                })
            })
            .await
            .map_err(CompletionError::Plugin)?;
        match started {
            Err(api) => Err(CompletionError::api(&plugin, api, store.data().redactor())),
            Ok(completion) => Ok(super::provider::ProviderStream::new(self.clone(), store, instance, completion)),
        }
    }

    /// Runs `run` on a fresh store of this plugin under `policy`: the one way any export of
    /// any world is run. The store takes an instance slot first; `run` (instantiating and
    /// calling) goes to the guest threads, under the plugin's time limit plus [`GRACE`];
    /// a trap is explained once, here. The store comes back for what the caller reads
    /// from it afterwards (denials, a provider's stream).
    async fn sandboxed<T, F>(
        &self,
        policy: Arc<CapabilityPolicy>,
        progress: Option<ProgressSink>,
        run: F,
    ) -> Result<(T, Store<CallState>), CallError>
    where
        T: Send + 'static,
        F: for<'s> FnOnce(&'s mut Store<CallState>) -> futures::future::BoxFuture<'s, wasmtime::Result<T>> + Send + 'static,
    {
        let store = self.new_store_with(policy, progress).await?;
        self.in_guest(store, run).await
    }

    /// Runs `run` on `store` on the guest threads, under the plugin's time limit plus
    /// [`GRACE`]. Epochs only make a computing guest yield; this limit ends it, and ends one
    /// that waits inside a host call.
    pub(crate) async fn in_guest<T, F>(&self, mut store: Store<CallState>, run: F) -> Result<(T, Store<CallState>), CallError>
    where
        T: Send + 'static,
        F: for<'s> FnOnce(&'s mut Store<CallState>) -> futures::future::BoxFuture<'s, wasmtime::Result<T>> + Send + 'static,
    {
        let limits = self.policy.limits;
        let (outcome, mut store) = crate::engine::on_guest_threads(async move {
            let outcome = tokio::time::timeout(limits.timeout() + GRACE, run(&mut store)).await;
            (outcome, store)
        })
        .await;
        match outcome {
            Err(_) => Err(CallError::Timeout { plugin: self.manifest.id.clone(), limit_ms: limits.timeout_ms }),
            Ok(Err(trap)) => Err(self.explain_trap(trap, &mut store)),
            Ok(Ok(value)) => Ok((value, store)),
        }
    }

    pub(crate) fn explain_trap(&self, error: wasmtime::Error, store: &mut Store<CallState>) -> CallError {
        let plugin = self.manifest.id.clone();
        let limits = self.policy.limits;
        if store.data().limiter.exceeded {
            return CallError::MemoryExceeded { plugin, limit_mib: limits.memory_mib };
        }
        if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
            return CallError::Timeout { plugin, limit_ms: limits.timeout_ms };
        }
        let stderr = store.data().stderr.contents();
        let stderr = String::from_utf8_lossy(&stderr);
        let stderr = store.data().redactor().redact(&stderr);
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).rev().take(5).collect();
        let trap = error.downcast_ref::<wasmtime::Trap>().map(|t| t.to_string()).unwrap_or_else(|| format!("{error:#}"));
        let message = if tail.is_empty() {
            trap
        } else {
            format!("{trap}; its last output: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | "))
        };
        CallError::Crashed { plugin, message }
    }
}

/// What a call may run past its time limit: host calls bounded by the same limit (a
/// command, an HTTP request) end first and report their own, more precise error.
pub const GRACE: Duration = Duration::from_millis(100);

/// The most tools one plugin may provide.
pub const MAX_TOOLS: usize = 128;
/// The longest tool description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 8 * 1024;
/// The largest parameters schema, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// The longest tool name (the limit of the model APIs' function names).
pub const MAX_TOOL_NAME: usize = 64;

/// A tool name as the WIT states it: lowercase letters, digits, `_` and `-`, 1 to
/// [`MAX_TOOL_NAME`] characters.
fn check_tool_name(name: &str) -> Result<(), String> {
    let shown: String = name.chars().take(MAX_TOOL_NAME).flat_map(char::escape_default).collect();
    if name.is_empty() || name.len() > MAX_TOOL_NAME {
        return Err(format!("a tool name must have 1 to {MAX_TOOL_NAME} characters (`{shown}` has {})", name.chars().count()));
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
        return Err(format!("the tool name `{shown}` may hold only lowercase letters, digits, `_` and `-`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn tool_names_follow_the_wit() {
        use super::check_tool_name;
        assert!(check_tool_name("read_raw").is_ok() && check_tool_name("web-fetch2").is_ok());
        for bad in ["", "Read", "two words", "tab\there", "ctrl\u{7}", "ünïcode"] {
            assert!(check_tool_name(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(10_000);
        let err = check_tool_name(&long).unwrap_err();
        assert!(err.contains("10000") && err.len() < 200, "{err}");
    }
}
