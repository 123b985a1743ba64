//! Version a of the `versioned` test plugin (for the hot-reload tests).

const VERSION: &str = "a";

include!("tool.rs");
