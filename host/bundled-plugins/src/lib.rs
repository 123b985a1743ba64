//! The first-party Plugboard plugins (the tools `read`, `write`, `edit`, `list`, `glob`,
//! `grep`, `fetch`, `shell`; the providers `openai` and `anthropic`; the hooks
//! `redact-secrets` and `audit-log`), compiled to `wasm32-wasip2` components by this crate's
//! build script and embedded, so that the `plugboard` binary always has them.

/// One embedded first-party plugin.
#[derive(Debug, Clone, Copy)]
pub struct BundledPlugin {
    /// Short name, e.g. `read`.
    pub name: &'static str,
    /// The component's bytes.
    pub component: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
