//! The `hook-plugin` world on top of the sandbox: what a hook plugin handles (asked once,
//! at load), and one export run on a fresh instance. Ordering, drafts and failures are the
//! hook chain's (`crate::hooks`).

use futures::future::BoxFuture;
use wasmtime::Store;

use super::error::{CallError, LoadError};
use super::sandbox::Sandbox;
use super::state::CallState;
use crate::hooks::HookInfo;
use crate::runtime::bindings::{HookPlugin, HookPluginPre, hook_types};

/// A hook plugin, described.
#[derive(Clone)]
pub(crate) struct HookWorld {
    pre: HookPluginPre<CallState>,
    pub(crate) info: HookInfo,
}

impl HookWorld {
    pub(crate) fn pre(&self) -> &HookPluginPre<CallState> {
        &self.pre
    }

    /// Asks the plugin which hook points and events it handles.
    pub(crate) async fn describe(pre: HookPluginPre<CallState>, sandbox: &Sandbox) -> Result<Self, LoadError> {
        let recipe = pre.clone();
        let (info, _) = sandbox
            .run(None, move |store| {
                Box::pin(async move { recipe.instantiate_async(&mut *store).await?.plugboard_plugin_hooks().call_describe(store).await })
            })
            .await
            .map_err(|e| LoadError::Hooks(e.to_string()))?;
        Ok(HookWorld { pre, info: HookInfo::try_from(info).map_err(LoadError::Hooks)? })
    }

    /// Runs one export on a fresh instance in `sandbox`; the instance is dropped afterwards.
    /// `run` gets the store and the `hooks` export.
    pub(crate) async fn run<T, F>(&self, sandbox: &Sandbox, run: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: for<'s> FnOnce(&'s mut Store<CallState>, &'s hook_types::Guest) -> BoxFuture<'s, wasmtime::Result<T>> + Send + 'static,
    {
        let pre = self.pre.clone();
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
}
