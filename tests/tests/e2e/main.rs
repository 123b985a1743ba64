//! End-to-end tests: a real host, real compiled plugins, real files and sockets.

mod agent;
mod first_party;
mod hostile;
mod http;
mod providers;
mod reload;
mod runtime;
mod sessions;
