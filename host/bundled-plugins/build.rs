//! Builds the first-party plugins to components and embeds them in this crate.

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The first-party plugins, by directory under the workspace root.
#[rustfmt::skip]
const PLUGINS: &[&str] = &[
    // tools
    "plugins/read",
    "plugins/write",
    "plugins/edit",
    "plugins/list",
    "plugins/glob",
    "plugins/grep",
    "plugins/fetch",
    "plugins/shell",
    // providers
    "plugins/openai",
    "plugins/anthropic",
    // hooks (off until enabled in [hooks.<id>])
    "plugins/redact-secrets",
    "plugins/audit-log",
];

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let components = plugboard_guest_build::build_components(&workspace, PLUGINS);
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let precompiled = precompile(&components, &out);
    let mut code = String::from("/// The first-party plugins, built for wasm32-wasip2.\npub static PLUGINS: &[BundledPlugin] = &[\n");
    for (c, cwasm) in components.iter().zip(&precompiled) {
        let name = c.package.strip_prefix("plugboard-plugin-").unwrap_or(&c.package);
        writeln!(
            code,
            "    BundledPlugin {{ name: {name:?}, component: include_bytes!({:?}), precompiled: include_bytes!({:?}) }},",
            c.path.display().to_string(),
            cwasm.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    std::fs::write(out.join("bundled.rs"), code).unwrap();
}

/// Compiles each component for this machine with the runtime's compiler settings, two at a
/// time (wasmtime compiles the functions of each in parallel too), into `out`.
fn precompile(components: &[plugboard_guest_build::Component], out: &Path) -> Vec<PathBuf> {
    let engine = wasmtime::Engine::new(&plugboard_engine_config::compiler_config())
        .unwrap_or_else(|e| panic!("cannot create the engine that precompiles the bundled plugins: {e:#}"));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let paths: Vec<PathBuf> = components.iter().map(|c| out.join(format!("{}.cwasm", c.package))).collect();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(component) = components.get(i) else { break };
                    let bytes = std::fs::read(&component.path).unwrap_or_else(|e| panic!("cannot read {}: {e}", component.path.display()));
                    let compiled =
                        engine.precompile_component(&bytes).unwrap_or_else(|e| panic!("{} does not compile: {e:#}", component.package));
                    std::fs::write(&paths[i], compiled).unwrap_or_else(|e| panic!("cannot write {}: {e}", paths[i].display()));
                }
            });
        }
    });
    paths
}
