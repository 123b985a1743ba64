//! The `hook-plugin` world on top of the sandbox: what a hook plugin handles (asked once,
//! at load), and one export run on a fresh instance. A hook plugin may also export the
//! `compaction-hook` world (since 0.1.1); it then handles `session.compacting` as well.
//! Ordering, drafts and failures are the hook chain's (`crate::hooks`).

use futures::future::BoxFuture;
use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::error::{CallError, LoadError};
use super::sandbox::Sandbox;
use super::state::CallState;
use crate::hooks::{HookInfo, HookPoint};
use crate::runtime::bindings::{CompactionHook, CompactionHookPre, HookPlugin, HookPluginPre, compaction_types, hook_types};

/// How to instantiate a hook plugin: its `hooks` export, and its `compaction` export when
/// it has one.
#[derive(Clone)]
pub(crate) struct HookRecipe {
    hooks: HookPluginPre<CallState>,
    compaction: Option<CompactionHookPre<CallState>>,
}

impl HookRecipe {
    /// Links `instance_pre` as a hook plugin; fails when it does not export `hooks`.
    pub(crate) fn new(instance_pre: InstancePre<CallState>) -> wasmtime::Result<Self> {
        let compaction = CompactionHookPre::new(instance_pre.clone()).ok();
        Ok(HookRecipe { hooks: HookPluginPre::new(instance_pre)?, compaction })
    }
}

/// A hook plugin, described.
#[derive(Clone)]
pub(crate) struct HookWorld {
    recipe: HookRecipe,
    pub(crate) info: HookInfo,
}

impl HookWorld {
    pub(crate) fn recipe(&self) -> &HookRecipe {
        &self.recipe
    }

    /// Asks the plugin which hook points and events it handles.
    pub(crate) async fn describe(recipe: HookRecipe, sandbox: &Sandbox) -> Result<Self, LoadError> {
        let pre = recipe.hooks.clone();
        let (info, _) = sandbox
            .run(None, move |store| {
                Box::pin(async move { pre.instantiate_async(&mut *store).await?.plugboard_plugin_hooks().call_describe(store).await })
            })
            .await
            .map_err(|e| LoadError::Hooks(e.to_string()))?;
        let extra = recipe.compaction.as_ref().map(|_| HookPoint::Compacting);
        Ok(HookWorld { info: HookInfo::described(info, extra).map_err(LoadError::Hooks)?, recipe })
    }

    /// Runs one export on a fresh instance in `sandbox`; the instance is dropped afterwards.
    /// `run` gets the store and the `hooks` export.
    pub(crate) async fn run<T, F>(&self, sandbox: &Sandbox, run: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: for<'s> FnOnce(&'s mut Store<CallState>, &'s hook_types::Guest) -> BoxFuture<'s, wasmtime::Result<T>> + Send + 'static,
    {
        let pre = self.recipe.hooks.clone();
        let (value, _) = sandbox
            .run(None, move |store| {
                Box::pin(async move {
                    let instance: HookPlugin = pre.instantiate_async(&mut *store).await?;
                    run(store, instance.plugboard_plugin_hooks()).await
                })
            })
            .await?;
        Ok(value)
    }

    /// Runs the `compaction` export on a fresh instance in `sandbox`, like [`Self::run`];
    /// `None` when the plugin does not export it.
    pub(crate) async fn run_compaction<T, F>(&self, sandbox: &Sandbox, run: F) -> Option<Result<T, CallError>>
    where
        T: Send + 'static,
        F: for<'s> FnOnce(&'s mut Store<CallState>, &'s compaction_types::Guest) -> BoxFuture<'s, wasmtime::Result<T>> + Send + 'static,
    {
        let pre = self.recipe.compaction.clone()?;
        let result = sandbox
            .run(None, move |store| {
                Box::pin(async move {
                    let instance: CompactionHook = pre.instantiate_async(&mut *store).await?;
                    run(store, instance.plugboard_plugin_compaction()).await
                })
            })
            .await;
        Some(result.map(|(value, _)| value))
    }
}
