//! End-to-end tests: a real host, real compiled plugins, real files and sockets.

mod agent;
mod config_reload;
mod context;
mod first_party;
mod hooks;
mod hostile;
mod http;
mod languages;
mod lifecycle;
mod mcp;
mod mcp_sources;
mod providers;
mod reload;
mod runtime;
mod sessions;
mod trust_boundary;
