//! wasmtime bindings of the `plugboard:plugin` WIT package, one module per released version
//! so that plugins built against an older version keep working when a newer one ships.
//! This module rarely changes: the `bindgen!` expansion is heavy to compile.

/// `plugboard:plugin@0.1.0`.
#[allow(missing_docs)]
pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "tool-plugin",
        imports: { default: async },
        exports: { default: async },
    });
}

pub use v0_1_0::plugboard::plugin::{host, process, types};
pub use v0_1_0::{ToolPlugin, ToolPluginPre};
