//! A plugin crate's test binary: a `wasi:cli/command` component that `cargo test` builds
//! for `wasm32-wasip2` and hands to its runner (`plugboard plugin test-runner`). It runs on
//! an engine of its own, with its arguments, its standard streams, the crate's directory
//! read-only as `.`, the `RUST_TEST_*` and `RUST_BACKTRACE` variables, and nothing else: no
//! network (wasi:http refuses every request), no other file, no Plugboard interface. A
//! binary that imports those (every provider does) still runs; a test that calls a
//! Plugboard function traps, naming it (test those calls with `plugboard plugin test`).

use std::path::Path;

use anyhow::Context as _;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

struct TestState {
    ctx: WasiCtx,
    http: WasiHttpCtx,
    no_network: NoNetwork,
    table: ResourceTable,
}

impl WasiView for TestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

impl WasiHttpView for TestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.no_network }
    }
}

/// wasi:http for a test binary: every request is refused before anything is sent.
struct NoNetwork;

impl WasiHttpHooks for NoNetwork {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> super::state::SentRequest {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// Links each of the component's Plugboard imports as a function that traps, naming it.
fn trap_plugboard_imports(linker: &mut Linker<TestState>, component: &Component, engine: &Engine) -> anyhow::Result<()> {
    use wasmtime::component::types::ComponentItem;
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else { continue };
        if !name.starts_with("plugboard:") {
            continue;
        }
        let mut linked = linker.instance(name).map_err(|e| anyhow::anyhow!("{e}"))?;
        for (function, item) in instance.exports(engine) {
            if let ComponentItem::ComponentFunc(_) = item.ty {
                let called = format!("{name}#{function}");
                linked
                    .func_new(function, move |_, _, _, _| {
                        wasmtime::bail!("the test called `{called}`, a Plugboard host function, which a unit test does not have")
                    })
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
    }
    Ok(())
}

/// The variables a test binary sees: those of the Rust test harness.
fn passed_on(name: &str) -> bool {
    name.starts_with("RUST_TEST_") || name == "RUST_BACKTRACE"
}

/// Runs the test binary `binary` with `args` (cargo's, after the binary), `dir` readable as
/// `.`; its exit status (0 when it returned normally). On `wasm32-wasip2` a panic aborts the
/// whole binary, and the harness loses the message it captured: then the binary runs again
/// with `--nocapture`, so that the panic's message is seen.
pub async fn run(binary: &Path, args: &[String], dir: &Path) -> anyhow::Result<i32> {
    match run_once(binary, args, dir).await? {
        Ended::Exit(status) => Ok(status),
        Ended::Panicked if args.iter().any(|a| a == "--nocapture" || a == "--no-capture") => Ok(101),
        Ended::Panicked => {
            eprintln!("a test panicked; on wasm32-wasip2 a panic aborts the test binary. Again with --nocapture, to show it:");
            let again: Vec<String> = args.iter().cloned().chain(["--nocapture".to_string(), "--test-threads=1".to_string()]).collect();
            run_once(binary, &again, dir).await?;
            Ok(101)
        }
    }
}

/// How a test binary ended.
enum Ended {
    /// With this status.
    Exit(i32),
    /// A test panicked (the binary aborted).
    Panicked,
}

async fn run_once(binary: &Path, args: &[String], dir: &Path) -> anyhow::Result<Ended> {
    let engine = Engine::new(&Config::new()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let component = Component::from_file(&engine, binary)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{} is not a WebAssembly component", binary.display()))?;
    let mut linker: Linker<TestState> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e}"))?;
    trap_plugboard_imports(&mut linker, &component, &engine)?;
    let name = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut ctx = WasiCtxBuilder::new();
    ctx.inherit_stdio()
        .args(&std::iter::once(name).chain(args.iter().cloned()).collect::<Vec<_>>())
        .preopened_dir(dir, ".", FsPerms::ReadOnly)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot open {}", dir.display()))?;
    for (key, value) in std::env::vars().filter(|(k, _)| passed_on(k)) {
        ctx.env(key, value);
    }
    let state = TestState { ctx: ctx.build(), http: WasiHttpCtx::new(), no_network: NoNetwork, table: ResourceTable::new() };
    let mut store = Store::new(&engine, state);
    let command = Command::instantiate_async(&mut store, &component, &linker)
        .await
        .map_err(|e| anyhow::anyhow!("{} cannot run as a test: {e}", binary.display()))?;
    match command.wasi_cli_run().call_run(&mut store).await {
        Ok(Ok(())) => Ok(Ended::Exit(0)),
        Ok(Err(())) => Ok(Ended::Exit(1)),
        Err(e) => match (e.downcast_ref::<I32Exit>(), e.downcast_ref::<wasmtime::Trap>()) {
            (Some(exit), _) => Ok(Ended::Exit(exit.0)),
            (None, Some(wasmtime::Trap::UnreachableCodeReached)) => Ok(Ended::Panicked),
            (None, _) => Err(anyhow::anyhow!(
                "{} trapped: {e:#}\n(a test binary gets WASI only; test calls to Plugboard's host functions and the network with `plugboard plugin test`)",
                binary.display()
            )),
        },
    }
}
