//! Copy a of the scripted test hook.

include!("hooks.rs");
