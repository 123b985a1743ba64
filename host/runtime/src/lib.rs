//! # Plugboard's plugin runtime
//!
//! The layers of Plugboard under the agent: everything that runs a plugin and decides what
//! it may do. It knows nothing of sessions, agents, the configuration file or the server;
//! the `plugboard` crate builds those on top of it and re-exports these modules under its
//! own name (`plugboard::runtime`, `plugboard::capability`, ...).
//!
//! - [`first_party`]: what the host knows of its bundled plugins (default grants, effects);
//! - [`trust`]: which workspace files the operator trusts, and the directories no grant reaches;
//! - [`capability`]: deny-by-default grants (filesystem, network, process, env, limits);
//! - [`secrets`]: configured secrets masked by value where text comes back in;
//! - [`runtime`]: the wasmtime engine, the compiled-component cache, the bindings, plugin
//!   manifests; loading plugins, and running tool calls, provider completions and hooks;
//! - [`hooks`]: lifecycle hooks (`hook-plugin` world): ordering, drafts, `hook.failed`;
//! - [`suggest`]: the nearest known name, for errors about a misspelt one.

#![warn(missing_docs)]

pub mod capability;
pub mod first_party;
pub mod hooks;
pub mod runtime;
pub mod secrets;
pub mod suggest;
pub mod trust;
