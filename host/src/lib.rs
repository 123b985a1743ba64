//! # Plugboard
//!
//! A host for AI-agent plugins: tools, providers and lifecycle hooks are sandboxed
//! WebAssembly components typed by the `plugboard:plugin` WIT package.
//!
//! - [`config`]: the operator's `plugboard.toml`;
//! - [`first_party`]: what the host knows of its bundled plugins (default grants, effects);
//! - [`trust`]: which workspace files the operator trusts, and the directories no grant reaches;
//! - [`capability`]: deny-by-default grants (filesystem, network, process, env, limits);
//! - [`runtime`]: the wasmtime engine, the compiled-component cache, the bindings, plugin
//!   manifests; loading plugins, and running tool calls, provider completions and hooks;
//! - [`hooks`]: lifecycle hooks (`hook-plugin` world): ordering, drafts, `hook.failed`;
//! - [`agent`]: agents, permission rules and the agent loop;
//! - [`store`]: durable sessions and the sequenced event log (SQLite);
//! - [`secrets`]: configured secrets masked by value where text comes back in;
//! - [`server`]: `plugboard serve`, the HTTP API with Server-Sent Events;
//! - [`app`]: the top layer: reads and reloads `plugboard.toml`, hands each layer its part,
//!   watches the files that carry policy;
//! - [`suggest`]: the nearest known name, for errors about a misspelt one;
//! - [`cli`]: the `plugboard` command (`plugin new` included).

#![warn(missing_docs)]

pub mod agent;
pub mod app;
pub mod capability;
pub mod cli;
pub mod config;
pub mod first_party;
pub mod hooks;
pub mod runtime;
pub mod secrets;
pub mod server;
pub mod store;
pub mod suggest;
pub mod trust;
