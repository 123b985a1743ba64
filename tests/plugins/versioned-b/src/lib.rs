//! Version b of the `versioned` test plugin (for the hot-reload tests).

const VERSION: &str = "b";

include!("../../versioned-a/src/tool.rs");
