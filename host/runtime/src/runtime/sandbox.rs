//! The sandbox: the one way any export of any world runs. A [`Sandbox`] is a plugin's
//! engine and policy; `Sandbox::run` takes an instance slot, makes a fresh store under the
//! policy's memory limit, and runs the caller's instantiate-and-call on the guest threads
//! under the time limit plus [`GRACE`]; `Sandbox::resume` runs a further step on a store
//! that lives on. `run_here` and `resume_here` do the same on the current thread, for work
//! already on the guest threads (a provider's stream, a task of its own there). A trap is
//! explained once, here: memory limit, time limit, or a crash with the last lines the
//! guest wrote to stderr (masked).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use wasmtime::Store;

use super::connections::Connections;
use super::error::CallError;
use super::state::{CallState, ProgressSink};
use crate::capability::CapabilityPolicy;
use crate::runtime::engine::{InstanceSlot, PluginEngine};

/// What a call may run past its time limit: host calls bounded by the same limit (a
/// command, an HTTP request) end first and report their own, more precise error.
pub const GRACE: Duration = Duration::from_millis(100);

/// A call's store with the engine's instance slot it holds (`slot`), released only once
/// the store is gone. Fields drop in order: the store first, which gives its instances back
/// to the pool, then the slot. (wasmtime drops a store's data before it gives the instances
/// back, so a slot kept in the data would let the next caller in while the pool is still
/// full, and its instantiation would fail.)
pub struct Slotted<S = Store<CallState>, L = Option<InstanceSlot>> {
    store: S,
    #[allow(dead_code)]
    slot: L,
}

/// See [`Slotted`].
pub type SlottedStore = Slotted;

impl<S, L> std::ops::Deref for Slotted<S, L> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.store
    }
}

impl<S, L> std::ops::DerefMut for Slotted<S, L> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.store
    }
}

/// A plugin's engine and policy: where and under which limits its instances run.
#[derive(Clone)]
pub struct Sandbox {
    plugin: Arc<str>,
    engine: PluginEngine,
    policy: Arc<CapabilityPolicy>,
    connections: Arc<Connections>,
}

impl Sandbox {
    /// The sandbox of plugin `plugin` under `policy`.
    pub(crate) fn new(plugin: &str, engine: &PluginEngine, policy: Arc<CapabilityPolicy>) -> Self {
        Sandbox { plugin: plugin.into(), engine: engine.clone(), policy, connections: Arc::default() }
    }

    /// The plugin's id.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The policy its instances run under.
    pub fn policy(&self) -> &Arc<CapabilityPolicy> {
        &self.policy
    }

    /// Runs `run` on a fresh store; the store comes back for what the caller reads from it
    /// afterwards (denials, a provider's stream).
    pub(crate) async fn run<T, F>(&self, progress: Option<ProgressSink>, run: F) -> Result<(T, SlottedStore), CallError>
    where
        T: Send + 'static,
        F: for<'s> FnOnce(&'s mut Store<CallState>) -> BoxFuture<'s, wasmtime::Result<T>> + Send + 'static,
    {
        let store = self.new_store(progress).await?;
        self.resume(store, run).await
    }

    /// [`Sandbox::run`] on the current thread: for work already on the guest threads.
    pub(crate) async fn run_here<T, F>(&self, progress: Option<ProgressSink>, run: F) -> Result<(T, SlottedStore), CallError>
    where
        F: for<'s> FnOnce(&'s mut Store<CallState>) -> BoxFuture<'s, wasmtime::Result<T>>,
    {
        let store = self.new_store(progress).await?;
        self.resume_here(store, run).await
    }

    /// Runs `run` on `store` on the guest threads, under the plugin's time limit plus
    /// [`GRACE`]. Epochs only make a computing guest yield; this limit ends it, and ends one
    /// that waits inside a host call.
    pub(crate) async fn resume<T, F>(&self, mut store: SlottedStore, run: F) -> Result<(T, SlottedStore), CallError>
    where
        T: Send + 'static,
        F: for<'s> FnOnce(&'s mut Store<CallState>) -> BoxFuture<'s, wasmtime::Result<T>> + Send + 'static,
    {
        let limits = self.policy.limits;
        let (outcome, store) = crate::runtime::engine::on_guest_threads(async move {
            let outcome = tokio::time::timeout(limits.timeout() + GRACE, run(&mut store.store)).await;
            (outcome, store)
        })
        .await;
        self.settle(outcome, store)
    }

    /// [`Sandbox::resume`] on the current thread: for work already on the guest threads.
    pub(crate) async fn resume_here<T, F>(&self, mut store: SlottedStore, run: F) -> Result<(T, SlottedStore), CallError>
    where
        F: for<'s> FnOnce(&'s mut Store<CallState>) -> BoxFuture<'s, wasmtime::Result<T>>,
    {
        let outcome = tokio::time::timeout(self.policy.limits.timeout() + GRACE, run(&mut store.store)).await;
        self.settle(outcome, store)
    }

    /// A step's outcome: its value, or the time limit, or the trap explained.
    fn settle<T>(
        &self,
        outcome: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
        mut store: SlottedStore,
    ) -> Result<(T, SlottedStore), CallError> {
        let limits = self.policy.limits;
        match outcome {
            Err(_) => Err(CallError::Timeout { plugin: self.plugin.to_string(), limit_ms: limits.timeout_ms }),
            Ok(Err(trap)) => Err(self.explain_trap(trap, &mut store)),
            Ok(Ok(value)) => Ok((value, store)),
        }
    }

    /// A store for one instance: it first takes an instance slot of the engine (waiting up
    /// to the plugin's time limit), held until the store is dropped. The guest yields to
    /// the async runtime at every epoch tick, so a spinning guest never holds a worker.
    async fn new_store(&self, progress: Option<ProgressSink>) -> Result<SlottedStore, CallError> {
        let slot = self.engine.acquire_slot(self.policy.limits.timeout()).await.map_err(|busy| {
            let error =
                CallError::Busy { plugin: self.plugin.to_string(), capacity: busy.capacity, waited_ms: busy.waited.as_millis() as u64 };
            tracing::warn!(%error, "a call found no instance slot");
            error
        })?;
        let state = CallState::new(self.policy.clone(), progress, self.connections.clone())
            .map_err(|e| CallError::Host { plugin: self.plugin.to_string(), message: format!("{e:#}") })?;
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        Ok(Slotted { store, slot })
    }

    fn explain_trap(&self, error: wasmtime::Error, store: &mut Store<CallState>) -> CallError {
        let plugin = self.plugin.to_string();
        let limits = self.policy.limits;
        if store.data().limiter.exceeded {
            return CallError::MemoryExceeded { plugin, limit_mib: limits.memory_mib };
        }
        if let Some(wasmtime::Trap::Interrupt) = error.downcast_ref::<wasmtime::Trap>() {
            return CallError::Timeout { plugin, limit_ms: limits.timeout_ms };
        }
        if let Some(message) = pool_exhausted(&error) {
            tracing::warn!(plugin, %message, "the instance pool is exhausted");
            return CallError::Host { plugin, message };
        }
        let stderr = store.data().stderr.contents();
        let stderr = String::from_utf8_lossy(&stderr);
        let stderr = store.data().redactor().redact(&stderr);
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).rev().take(5).collect();
        let trap = error.downcast_ref::<wasmtime::Trap>().map(|t| t.to_string()).unwrap_or_else(|| format!("{error:#}"));
        let mut message = if tail.is_empty() {
            trap
        } else {
            format!("{trap}; its last output: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | "))
        };
        // A guest that cannot handle a refusal (some language runtimes abort on one) still
        // gets its cause named: what the host refused it, and the line that would grant it.
        if let Some(denial) = store.data_mut().take_denials().into_iter().next() {
            message.push_str(&format!(
                "; before that it was denied {} access to `{}`: {}\n{}",
                denial.kind,
                denial.target,
                denial.reason,
                self.policy.grant_hint(denial.kind, &denial.target)
            ));
        }
        CallError::Crashed { plugin, message }
    }

    /// `text` with the configured secrets masked.
    pub(crate) fn mask(&self, text: &str) -> String {
        self.policy.redactor.redact(text).into_owned()
    }
}

/// What to tell the operator when an instance could not be allocated because one of the
/// engine's pools is full (not the plugin's fault: it did not crash).
fn pool_exhausted(error: &wasmtime::Error) -> Option<String> {
    let limit = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()?;
    Some(format!("{limit}; raise `[engine] max_instances`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::engine::EngineSettings;

    #[test]
    fn an_instance_the_full_pool_cannot_hold_is_reported_as_the_pool_limit_not_a_crash() {
        let engine = PluginEngine::new(&EngineSettings { max_instances: 1, max_memory_mib: 1, ..EngineSettings::default() }).unwrap();
        let module = wasmtime::Module::new(&engine.engine, "(module (memory 1))").unwrap();
        let mut stores: Vec<Store<()>> = Vec::new();
        let error = loop {
            let mut store = Store::new(&engine.engine, ());
            match wasmtime::Instance::new(&mut store, &module, &[]) {
                Ok(_) => stores.push(store),
                Err(e) => break e,
            }
            assert!(stores.len() < 64, "the pool for one instance held 64");
        };
        let message = pool_exhausted(&error).expect("a pool limit");
        assert!(message.contains("maximum concurrent") && message.contains("[engine] max_instances"), "{message}");
        assert_eq!(pool_exhausted(&wasmtime::Error::msg("a trap")), None);
    }

    /// Stands in for a slot: when it is released, it tries to instantiate in the pool.
    struct ReleaseProbe {
        engine: wasmtime::Engine,
        module: wasmtime::Module,
        pool_had_room: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Drop for ReleaseProbe {
        fn drop(&mut self) {
            let mut store = Store::new(&self.engine, ());
            let room = wasmtime::Instance::new(&mut store, &self.module, &[]).is_ok();
            self.pool_had_room.store(room, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_store_gives_its_instance_back_to_the_pool_before_its_slot_is_released() {
        let engine = PluginEngine::new(&EngineSettings { max_instances: 1, max_memory_mib: 1, ..EngineSettings::default() }).unwrap();
        if engine.allocator != crate::runtime::engine::AllocatorKind::Pooling {
            eprintln!("the pooling allocator is not in use here; there is no pool to wait for");
            return;
        }
        let module = wasmtime::Module::new(&engine.engine, "(module (memory 1))").unwrap();
        let mut store = Store::new(&engine.engine, ());
        wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let pool_had_room = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = ReleaseProbe { engine: engine.engine.clone(), module, pool_had_room: pool_had_room.clone() };
        drop(Slotted { store, slot: probe });
        assert!(pool_had_room.load(std::sync::atomic::Ordering::SeqCst), "the slot was released while the pool was still full");
    }
}
