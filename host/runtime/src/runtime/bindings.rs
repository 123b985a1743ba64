//! wasmtime bindings of the `plugboard:plugin` WIT package, one module per released version
//! so that plugins built against an older version keep working when a newer one ships, and
//! within a version one module per world. This module rarely changes: the `bindgen!`
//! expansions are heavy to compile.

/// `plugboard:plugin@0.1.0`.
#[allow(missing_docs)]
pub mod v0_1_0 {
    /// The `tool-plugin` world.
    pub mod tool {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.1.0",
            world: "tool-plugin",
            imports: { default: async },
            exports: { default: async },
        });
    }

    /// The `provider-plugin` world; it shares `host` and `types` with the tool world.
    pub mod provider {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.1.0",
            world: "provider-plugin",
            imports: { default: async },
            exports: { default: async },
            with: {
                "plugboard:plugin/host": super::tool::plugboard::plugin::host,
                "plugboard:plugin/types": super::tool::plugboard::plugin::types,
            },
        });
    }

    /// The `hook-plugin` world; it shares `host`, `process` and `types` with the tool world.
    pub mod hook {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.1.0",
            world: "hook-plugin",
            imports: { default: async },
            exports: { default: async },
            with: {
                "plugboard:plugin/host": super::tool::plugboard::plugin::host,
                "plugboard:plugin/process": super::tool::plugboard::plugin::process,
                "plugboard:plugin/types": super::tool::plugboard::plugin::types,
            },
        });
    }
}

pub use v0_1_0::hook::exports::plugboard::plugin::hooks as hook_types;
pub use v0_1_0::hook::{HookPlugin, HookPluginPre};
pub use v0_1_0::provider::exports::plugboard::plugin::provider as provider_types;
pub use v0_1_0::provider::{ProviderPlugin, ProviderPluginPre};
pub use v0_1_0::tool::plugboard::plugin::{host, process, types};
pub use v0_1_0::tool::{ToolPlugin, ToolPluginPre};
