//! The first-party Plugboard plugins (the tools `read`, `write`, `edit`, `list`, `glob`,
//! `grep`, `fetch`, `shell`; the providers `openai` and `anthropic`; the hooks
//! `redact-secrets` and `audit-log`), compiled to `wasm32-wasip2` components by this crate's
//! build script and embedded, so that the `plugboard` binary always has them; each also
//! compiled ahead of time to native code, so that a first start compiles nothing.

/// One embedded first-party plugin.
#[derive(Debug, Clone, Copy)]
pub struct BundledPlugin {
    /// Short name, e.g. `read`.
    pub name: &'static str,
    /// The component's bytes.
    pub component: &'static [u8],
    /// The component compiled at build time for this machine, with the runtime's compiler
    /// settings (`plugboard-engine-config`): loading it takes no compile. wasmtime refuses it
    /// (and the host compiles `component` instead) on a machine whose CPU lacks a feature
    /// the build machine had, or under `[engine]` settings that change compiled code.
    pub precompiled: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
