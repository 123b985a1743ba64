//! The wasmtime settings that decide what compiled plugin code looks like: the one source for
//! the runtime's engine (`plugboard-runtime`, which adds the instance allocator on top) and
//! for the build script of `plugboard-bundled-plugins`, which compiles the first-party
//! plugins ahead of time with them. A setting changed here changes both, so the plugins the
//! binary carries compiled always fit the engine the host builds. (wasmtime checks the fit
//! again when it loads them: its version, these settings and the CPU's features.)

/// The compiler's settings: the component model, epoch interruption (how a call's time
/// limit is enforced), and no component-model concurrency (plugins are synchronous guests;
/// this makes instantiation several times cheaper).
pub fn compiler_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.concurrency_support(false);
    config
}
