//! # Plugboard
//!
//! A host for AI-agent plugins: tools, providers and lifecycle hooks are sandboxed
//! WebAssembly components typed by the `plugboard:plugin` WIT package.
//!
//! - [`engine`]: the process-wide wasmtime engine and its epoch ticker;
//! - [`artifact_cache`]: compiled components cached on disk;
//! - [`manifest`]: what a plugin says about itself;
//! - [`config`]: the operator's `plugboard.toml`;
//! - [`first_party`]: what the host knows of its bundled plugins (default grants, effects);
//! - [`trust`]: which workspace files the operator trusts, and the directories no grant reaches;
//! - [`capability`]: deny-by-default grants (filesystem, network, process, env, limits);
//! - [`runtime`]: loading plugins, running tool calls and provider completions;
//! - [`hooks`]: lifecycle hooks (`hook-plugin` world): ordering, drafts, `hook.failed`;
//! - [`agent`]: agents, permission rules and the agent loop;
//! - [`store`] and [`events`]: durable sessions and the sequenced event log (SQLite);
//! - [`scaffold`]: `plugboard plugin new`;
//! - [`secrets`]: configured secrets masked by value where text comes back in;
//! - [`server`]: `plugboard serve`, the HTTP API with Server-Sent Events;
//! - [`suggest`]: the nearest known name, for errors about a misspelt one;
//! - [`cli`]: the `plugboard` command.

#![warn(missing_docs)]

pub mod agent;
pub mod artifact_cache;
pub mod bindings;
pub mod capability;
pub mod cli;
mod cli_remote;
mod cli_run;
mod cli_trust;
pub mod config;
pub mod engine;
pub mod events;
pub mod first_party;
pub mod hooks;
pub mod manifest;
pub mod runtime;
pub mod scaffold;
pub mod secrets;
pub mod server;
pub mod store;
pub mod suggest;
pub mod trust;
