//! Builds the first-party plugins to components and embeds them in this crate.

use std::fmt::Write;
use std::path::Path;

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
    let mut code = String::from("/// The first-party plugins, built for wasm32-wasip2.\npub static PLUGINS: &[BundledPlugin] = &[\n");
    for c in &components {
        let name = c.package.strip_prefix("plugboard-plugin-").unwrap_or(&c.package);
        writeln!(code, "    BundledPlugin {{ name: {name:?}, component: include_bytes!({:?}) }},", c.path.display().to_string()).unwrap();
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").unwrap()).join("bundled.rs");
    std::fs::write(out, code).unwrap();
}
