//! # plugboard-sdk
//!
//! Write a [Plugboard](https://example.invalid/plugboard) tool plugin as a plain, typed Rust
//! function. The SDK derives the JSON Schema of its arguments, validates what the model sends
//! (naming the field that is wrong), embeds the plugin's manifest in the component, and hides
//! the WebAssembly bindings.
//!
//! ```text
//! use plugboard_sdk::prelude::*;
//!
//! #[args]
//! struct GreetArgs {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! /// Greets someone by name.
//! #[tool]
//! fn greet(args: GreetArgs, _ctx: &Context) -> Result<Output, ToolError> {
//!     Ok(Output::text(format!("Hello, {}!", args.name)))
//! }
//!
//! export_tools!(greet);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` file under
//! `target/wasm32-wasip2/release/` is the plugin. The capabilities a plugin requests are
//! declared in its `Cargo.toml` under `[package.metadata.plugboard]` (see the authors'
//! guide in `docs/plugin-authors.md`).

pub mod fs;
pub mod hook;
pub mod host;
pub mod http;
pub mod process;
pub mod provider;
pub mod sse;
mod tool;

pub use plugboard_sdk_macros::{args, export_hooks, export_provider, export_tools, tool};
pub use tool::{Access, CapabilityKind, Context, Output, ToolError};

/// The generated WebAssembly bindings of the `plugboard:plugin` WIT package. Authors do not
/// need them; they are public for the macros and for advanced uses.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit/since_v0.1.0",
        world: "tool-plugin",
        pub_export_macro: true,
        default_bindings_module: "plugboard_sdk::bindings",
    });
}

/// The generated bindings of the `provider-plugin` world, sharing the `host` and `types`
/// interfaces with [`bindings`].
#[doc(hidden)]
pub mod provider_bindings {
    wit_bindgen::generate!({
        path: "wit/since_v0.1.0",
        world: "provider-plugin",
        pub_export_macro: true,
        export_macro_name: "export_provider_world",
        default_bindings_module: "plugboard_sdk::provider_bindings",
        with: {
            "plugboard:plugin/host@0.1.1": crate::bindings::plugboard::plugin::host,
            "plugboard:plugin/types@0.1.1": crate::bindings::plugboard::plugin::types,
        },
    });
}

/// The generated bindings of the `hook-plugin` world, sharing the `host`, `process` and
/// `types` interfaces with [`bindings`].
#[doc(hidden)]
pub mod hook_bindings {
    wit_bindgen::generate!({
        path: "wit/since_v0.1.0",
        world: "hook-plugin",
        pub_export_macro: true,
        export_macro_name: "export_hook_world",
        default_bindings_module: "plugboard_sdk::hook_bindings",
        with: {
            "plugboard:plugin/host@0.1.1": crate::bindings::plugboard::plugin::host,
            "plugboard:plugin/process@0.1.1": crate::bindings::plugboard::plugin::process,
            "plugboard:plugin/types@0.1.1": crate::bindings::plugboard::plugin::types,
        },
    });
}

/// The generated bindings of the `compaction-hook` world (since WIT 0.1.1), which a hook
/// plugin exports beside [`hook_bindings`] when it handles compactions; it shares the
/// `host`, `process` and `types` interfaces with [`bindings`].
#[doc(hidden)]
pub mod compaction_bindings {
    wit_bindgen::generate!({
        path: "wit/since_v0.1.0",
        world: "compaction-hook",
        pub_export_macro: true,
        export_macro_name: "export_compaction_world",
        default_bindings_module: "plugboard_sdk::compaction_bindings",
        with: {
            "plugboard:plugin/host@0.1.1": crate::bindings::plugboard::plugin::host,
            "plugboard:plugin/process@0.1.1": crate::bindings::plugboard::plugin::process,
            "plugboard:plugin/types@0.1.1": crate::bindings::plugboard::plugin::types,
        },
    });
}

/// Serialization, as used by `#[args]` and settings.
pub use serde;
/// JSON, as used for arguments, settings and API bodies.
pub use serde_json;

/// Everything a tool author usually needs, in one import.
pub mod prelude {
    pub use crate::{Access, CapabilityKind, Context, Output, ToolError, args, export_tools, tool};
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::json;
}

/// Re-exports used by the code the macros generate. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
    pub use serde_json;

    pub use crate::tool::{ToolDescriptor, definitions, dispatch, parse_arguments, schema_of};
}
