//! # Plugboard
//!
//! A host for AI-agent plugins: tools, providers and lifecycle hooks are sandboxed
//! WebAssembly components typed by the `plugboard:plugin` WIT package.
//!
//! The plugin runtime is the `plugboard-runtime` crate (`host/runtime`), re-exported here
//! under the same names; this crate holds the layers above it.
//!
//! From the `plugboard-runtime` crate:
//! - [`first_party`]: what the host knows of its bundled plugins (default grants, effects);
//! - [`trust`]: which workspace files the operator trusts, and the directories no grant reaches;
//! - [`capability`]: deny-by-default grants (filesystem, network, process, env, limits);
//! - [`secrets`]: configured secrets masked by value where text comes back in;
//! - [`runtime`]: the wasmtime engine, the compiled-component cache, the bindings, plugin
//!   manifests; loading plugins, and running tool calls, provider completions and hooks;
//! - [`hooks`]: lifecycle hooks (`hook-plugin` world): ordering, drafts, `hook.failed`;
//! - [`suggest`]: the nearest known name, for errors about a misspelt one.
//!
//! Of this crate, lowest first:
//! - [`store`]: durable sessions and the sequenced event log (SQLite);
//! - [`snapshot`]: workspace snapshots, for undoing what tools changed;
//! - [`agent`]: agents, permission rules and the agent loop;
//! - [`config`]: the format of `plugboard.toml`;
//! - [`app`]: the top layer: reads and reloads `plugboard.toml`, hands each layer its part,
//!   watches the files that carry policy;
//! - [`mcp`]: the tools served to MCP clients (stdio and streamable HTTP);
//! - [`oci`]: plugins in OCI registries: push, pull, cosign signatures;
//! - [`server`]: `plugboard serve`, the HTTP API with Server-Sent Events (and `/mcp`);
//! - [`cli`]: the `plugboard` command (`plugin new` included).

#![warn(missing_docs)]

/// Where an installed plugin came from and who signed it (the `plugboard-provenance` crate).
pub use plugboard_provenance as provenance;
pub use plugboard_runtime::{capability, first_party, hooks, runtime, secrets, suggest, trust};

pub mod agent;
pub mod app;
pub mod cli;
pub mod config;
pub mod mcp;
pub mod oci;
pub mod server;
pub mod snapshot;
pub mod store;
