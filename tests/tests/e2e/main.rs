//! End-to-end tests: a real host, real compiled plugins, real files and sockets.

mod first_party;
mod hostile;
mod providers;
mod runtime;
