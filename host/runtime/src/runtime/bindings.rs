//! wasmtime bindings of the `plugboard:plugin` WIT package, one module per line of
//! compatible versions (Zed-style), so that plugins built against an older line keep working
//! when a newer one ships. Within a line, a release only adds interfaces and worlds, and
//! wasmtime links a plugin built against an earlier release of it by semver (its
//! `host@0.1.0` import is served by `host@0.1.1`, its `tool@0.1.0` export found as
//! `tool@0.1.1`). Within a line, one module per world. This module rarely changes: the
//! `bindgen!` expansions are heavy to compile.

/// The package release this host implements.
pub const WIT_PACKAGE: &str = "plugboard:plugin@0.1.1";

/// `plugboard:plugin@0.1.x`.
#[allow(missing_docs)]
pub mod v0_1 {
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

    /// The `compaction-hook` world (since 0.1.1), which a hook plugin may export beside
    /// `hook-plugin`; it shares the imports with the tool world.
    pub mod compaction {
        wasmtime::component::bindgen!({
            path: "../../wit/since_v0.1.0",
            world: "compaction-hook",
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

pub use v0_1::compaction::exports::plugboard::plugin::compaction as compaction_types;
pub use v0_1::compaction::{CompactionHook, CompactionHookPre};
pub use v0_1::hook::exports::plugboard::plugin::hooks as hook_types;
pub use v0_1::hook::{HookPlugin, HookPluginPre};
pub use v0_1::provider::exports::plugboard::plugin::provider as provider_types;
pub use v0_1::provider::{ProviderPlugin, ProviderPluginPre};
pub use v0_1::tool::plugboard::plugin::{host, process, types};
pub use v0_1::tool::{ToolPlugin, ToolPluginPre};
