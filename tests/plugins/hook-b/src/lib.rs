//! Copy b of the scripted test hook (another plugin id, the same behaviour).

include!("../../hook-a/src/hooks.rs");
