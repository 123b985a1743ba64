//! The process-wide `wasmtime::Engine`, configured in one place; the epoch ticker that
//! makes guests yield; and the guest threads, a runtime of their own to which every guest
//! moves once it waits or computes past a tick, so that guests that compute share those
//! threads and the server's workers stay free to answer (`/healthz`, the event streams,
//! other sessions' store writes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. Call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorKind {
    /// Pre-reserved slots: fast instantiation (the default where the machine allows it).
    Pooling,
    /// Memory mapped per instance: used where the address space for the pool is not there.
    OnDemand,
}

impl std::fmt::Display for AllocatorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AllocatorKind::Pooling => "pooling",
            AllocatorKind::OnDemand => "on-demand",
        })
    }
}

/// Engine settings that operators may override (`[engine]` in `plugboard.toml`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// Use the pooling allocator when the machine allows it.
    pub pooling: bool,
    /// Component instances that may be live at once (pooling only).
    pub max_instances: u32,
    /// The largest linear memory any plugin may be granted, in MiB (pooling slot size).
    pub max_memory_mib: u64,
    /// KiB at the start of each memory and table slot kept resident between instances
    /// (pooling only).
    pub keep_resident_kib: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings { pooling: true, max_instances: 1000, max_memory_mib: 1024, keep_resident_kib: 1024 }
    }
}

/// The engine and how it was set up.
#[derive(Clone)]
pub struct PluginEngine {
    /// The engine shared by every plugin of this process.
    pub engine: Engine,
    /// The allocator in use.
    pub allocator: AllocatorKind,
    /// Why pooling is not in use, when it is not.
    pub pooling_fallback_reason: Option<String>,
    /// The pool's instance slots, when pooling: instantiation waits for one.
    slots: Option<Arc<InstanceSlots>>,
    _ticker: Arc<EpochTicker>,
}

/// The pool's instance slots: a call takes one before it instantiates and holds it until
/// its store is dropped, so an exhausted pool makes callers wait (at most
/// [`MAX_WAITING_PER_SLOT`] per slot, each up to its time limit) instead of failing.
struct InstanceSlots {
    semaphore: Arc<tokio::sync::Semaphore>,
    capacity: usize,
    waiting: std::sync::atomic::AtomicUsize,
}

/// How many callers may wait for slots, per slot, before the next one is refused at once.
pub const MAX_WAITING_PER_SLOT: usize = 8;

/// An instance slot, released when dropped.
pub struct InstanceSlot(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

/// No instance slot came free in time, or too many callers wait already.
#[derive(Debug, Clone, Copy)]
pub struct Busy {
    /// How many instances may live at once.
    pub capacity: usize,
    /// How long the caller waited.
    pub waited: Duration,
}

impl PluginEngine {
    /// Builds the engine: component model, epoch interruption, no component-model
    /// concurrency (plugins are synchronous guests; this makes instantiation several times
    /// cheaper), and the pooling allocator where the machine allows it. Starts the ticker.
    pub fn new(settings: &EngineSettings) -> anyhow::Result<Self> {
        let (engine, allocator, reason) = if settings.pooling {
            match Engine::new(&base_config(Some(settings))) {
                Ok(engine) => match probe_pool(&engine) {
                    Ok(()) => (engine, AllocatorKind::Pooling, None),
                    Err(e) => (on_demand()?, AllocatorKind::OnDemand, Some(e)),
                },
                Err(e) => (on_demand()?, AllocatorKind::OnDemand, Some(format!("{e:#}"))),
            }
        } else {
            (on_demand()?, AllocatorKind::OnDemand, Some("disabled by configuration".into()))
        };
        if let Some(reason) = &reason {
            tracing::info!(%reason, "pooling allocator not in use; instances are allocated on demand");
        }
        let ticker = Arc::new(EpochTicker::start(engine.clone()));
        let slots = (allocator == AllocatorKind::Pooling).then(|| {
            let capacity = settings.max_instances.max(1) as usize;
            Arc::new(InstanceSlots {
                semaphore: Arc::new(tokio::sync::Semaphore::new(capacity)),
                capacity,
                waiting: std::sync::atomic::AtomicUsize::new(0),
            })
        });
        Ok(PluginEngine { engine, allocator, pooling_fallback_reason: reason, slots, _ticker: ticker })
    }

    /// Takes an instance slot, waiting up to `wait` for one (`None`: on-demand allocation
    /// has no slots to take).
    pub async fn acquire_slot(&self, wait: Duration) -> Result<Option<InstanceSlot>, Busy> {
        use std::sync::atomic::Ordering;
        let Some(slots) = &self.slots else { return Ok(None) };
        if let Ok(permit) = slots.semaphore.clone().try_acquire_owned() {
            return Ok(Some(InstanceSlot(permit)));
        }
        let busy = |waited| Busy { capacity: slots.capacity, waited };
        if slots.waiting.fetch_add(1, Ordering::AcqRel) >= slots.capacity * MAX_WAITING_PER_SLOT {
            slots.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(busy(Duration::ZERO));
        }
        let started = std::time::Instant::now();
        let permit = tokio::time::timeout(wait, slots.semaphore.clone().acquire_owned()).await;
        slots.waiting.fetch_sub(1, Ordering::AcqRel);
        match permit {
            Ok(Ok(permit)) => Ok(Some(InstanceSlot(permit))),
            _ => Err(busy(started.elapsed())),
        }
    }
}

fn on_demand() -> anyhow::Result<Engine> {
    Engine::new(&base_config(None)).map_err(|e| anyhow::anyhow!("cannot create the WebAssembly engine: {e:#}"))
}

/// The compiler's settings, shared with the build that precompiles the bundled plugins (so
/// that their code fits this engine), and the instance allocator.
fn base_config(pooling: Option<&EngineSettings>) -> Config {
    let mut config = plugboard_engine_config::compiler_config();
    if let Some(settings) = pooling {
        let instances = settings.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        // Every pool follows `max_instances`, so the instance slots are the one limit a
        // caller can meet (and wait for): each Rust component has about 3 core modules, 1
        // memory and 2 tables; a call runs on one fiber stack, and a store may hold one GC
        // heap.
        pool.total_component_instances(instances)
            .total_stacks(instances)
            .total_gc_heaps(instances)
            .total_core_instances(instances * 4)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_core_instances_per_component(16)
            .max_memory_size((settings.max_memory_mib as usize) << 20)
            .pagemap_scan(Enabled::Auto)
            // Reset the first pages of a slot with memset instead of returning them to the
            // kernel: a fresh instance then neither faults them in again nor makes the
            // kernel flush other cores' TLBs. This is most of the cost of a short call.
            .linear_memory_keep_resident(settings.keep_resident_kib as usize * 1024)
            .table_keep_resident(settings.keep_resident_kib as usize * 1024);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Instantiates a trivial module to check that the pool's address space really is there.
fn probe_pool(engine: &Engine) -> Result<(), String> {
    let module = wasmtime::Module::new(engine, "(module (memory 1))").map_err(|e| format!("{e:#}"))?;
    let mut store = wasmtime::Store::new(engine, ());
    store.set_epoch_deadline(1);
    wasmtime::Instance::new(&mut store, &module, &[]).map(|_| ()).map_err(|e| format!("{e:#}"))
}

/// Runs `work` off the server's workers: it starts on the caller's thread, and moves to the
/// guest threads the first time it waits (for I/O, a timer, or the yield at an epoch tick
/// of a guest that computes). A short call that never waits, most tool calls, thus costs no
/// thread hand-off; one that computes holds the caller's thread for one tick at most.
/// Dropping the returned future stops `work` at its next yield; a panic in `work` is
/// raised again here.
pub async fn on_guest_threads<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    let mut work = Box::pin(work);
    if let std::task::Poll::Ready(value) = futures::poll!(&mut work) {
        return value;
    }
    let mut task = spawn_on_guest_threads(work);
    match (&mut task.0).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => unreachable!("guest tasks are aborted only by their waiter: {e}"),
    }
}

/// A task on the guest threads, stopped at its next yield when this handle is dropped.
pub struct GuestTask<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for GuestTask<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts `work` on the guest threads at once, as a task of its own: for work that waits
/// for I/O from its start and runs for long, such as a provider's stream, whose HTTP
/// connection then lives on the same threads as the guest that reads it.
pub fn spawn_on_guest_threads<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> GuestTask<T> {
    GuestTask(guest_runtime().spawn(work))
}

/// The guest threads: one worker per core, made once per process and never shut down.
fn guest_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name("plugboard-guest")
            .enable_all()
            .build()
            .expect("starting the guest threads")
    })
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("plugboard-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Instances that all wait inside a host call at once, each on a fiber stack of its own:
    /// more than wasmtime's default pool of 1,000 stacks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_instance_the_pool_admits_can_wait_inside_a_host_call_at_once() {
        const INSTANCES: u32 = 1001;
        let settings = EngineSettings { max_instances: INSTANCES, max_memory_mib: 1, ..EngineSettings::default() };
        let engine = PluginEngine::new(&settings).unwrap();
        assert_eq!(engine.allocator, AllocatorKind::Pooling, "{:?}", engine.pooling_fallback_reason);
        let module = wasmtime::Module::new(
            &engine.engine,
            r#"(module (import "host" "wait" (func $wait)) (memory 1) (func (export "run") call $wait))"#,
        )
        .unwrap();
        let entered = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut linker = wasmtime::Linker::<()>::new(&engine.engine);
        let (e, g) = (entered.clone(), gate.clone());
        linker
            .func_wrap_async("host", "wait", move |_, (): ()| {
                let (entered, gate) = (e.clone(), g.clone());
                Box::new(async move {
                    entered.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.unwrap().forget();
                })
            })
            .unwrap();
        let pre = Arc::new(linker.instantiate_pre(&module).unwrap());
        let calls: Vec<_> = (0..INSTANCES)
            .map(|_| {
                let (engine, pre) = (engine.clone(), pre.clone());
                tokio::spawn(async move {
                    let _slot = engine.acquire_slot(Duration::from_secs(30)).await.map_err(|b| format!("{b:?}"))?;
                    let mut store = wasmtime::Store::new(&engine.engine, ());
                    store.set_epoch_deadline(1);
                    store.epoch_deadline_async_yield_and_update(1);
                    let instance = pre.instantiate_async(&mut store).await.map_err(|e| format!("{e:#}"))?;
                    let run = instance.get_typed_func::<(), ()>(&mut store, "run").map_err(|e| format!("{e:#}"))?;
                    run.call_async(&mut store, ()).await.map_err(|e| format!("{e:#}"))
                })
            })
            .collect();
        let all_inside = async {
            while entered.load(Ordering::SeqCst) < INSTANCES as usize && !calls.iter().any(|c| c.is_finished()) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), all_inside).await.expect("the calls entered the host");
        gate.add_permits(INSTANCES as usize);
        let mut failures = Vec::new();
        for call in calls {
            if let Err(e) = call.await.unwrap() {
                failures.push(e);
            }
        }
        assert!(failures.is_empty(), "{} of {INSTANCES} calls failed, the first: {}", failures.len(), failures[0]);
    }
}
