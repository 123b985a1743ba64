//! Compile once: compiled components are cached on disk, keyed by the component's content
//! hash, the wasmtime version and the engine's compatibility hash, so a second start loads
//! a plugin without compiling it. The bundled plugins come compiled at build time, so even a
//! first start compiles them only when this engine refuses that code (another CPU, or
//! `[engine]` settings that change compiled code); they are then compiled and cached.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a component came from the cache or was compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the code compiled when the binary was built.
    Precompiled,
    /// Loaded from a cached artifact.
    Hit,
    /// Compiled, then written to the cache.
    Compiled,
    /// Compiled; no cache directory was configured or writing it failed.
    Uncached,
}

/// The SHA-256 of `bytes`, hex-encoded.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A directory of compiled components written by this host.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ArtifactCache {
    /// A cache in `dir` (created on first write), or no caching with `None`.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        // The compatibility hash covers the wasmtime version and every setting that affects
        // compiled code.
        let engine_key = format!("{:016x}", hasher.finish());
        ArtifactCache { dir, engine_key }
    }

    /// The default cache directory: `$XDG_CACHE_HOME/plugboard/components` or the platform's
    /// equivalent.
    pub fn default_dir() -> Option<PathBuf> {
        crate::trust::default_cache_dir().map(|d| d.join("components"))
    }

    /// The directory in use, if caching.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    fn path_for(&self, hash: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{hash}-{}.cwasm", self.engine_key)))
    }

    /// Loads the compiled form of `bytes` (whose hash is `hash`): the one compiled ahead of
    /// time when given and this engine accepts it, else the cached one, else compiles it
    /// and stores it. Blocking: call it off the async workers.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        hash: &str,
        precompiled: Option<&'static [u8]>,
    ) -> anyhow::Result<(Component, CacheOutcome)> {
        if let Some(code) = precompiled {
            // SAFETY: the code is part of this binary, written by its build from these very
            // bytes with `Engine::precompile_component`; wasmtime checks that it fits this
            // engine (its version, settings and the CPU's features) and refuses it otherwise.
            match unsafe { Component::deserialize(engine, code) } {
                Ok(component) => return Ok((component, CacheOutcome::Precompiled)),
                Err(e) => {
                    tracing::debug!(error = %format!("{e:#}"), "the plugin's code compiled at build time does not fit this engine; compiling it")
                }
            }
        }
        let path = self.path_for(hash);
        if let Some(path) = &path
            && path.exists()
        {
            // SAFETY: the file was written by `store` below from `Engine::precompile_component`
            // of this very engine configuration (its name carries the compatibility hash), in
            // a directory of this host's own.
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding an unusable cached component");
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let compiled = engine.precompile_component(bytes).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        // SAFETY: `compiled` was just produced by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled) }.map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let outcome = match &path {
            Some(path) => match store(path, &compiled) {
                Ok(()) => CacheOutcome::Compiled,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the component cache");
                    CacheOutcome::Uncached
                }
            },
            None => CacheOutcome::Uncached,
        };
        Ok((component, outcome))
    }
}

/// Writes atomically: a temporary file in the same directory, then a rename.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache paths have a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.{}.tmp", path.file_name().unwrap().to_string_lossy(), std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::engine::{EngineSettings, PluginEngine};

    fn bundled(name: &str) -> &'static plugboard_bundled_plugins::BundledPlugin {
        plugboard_bundled_plugins::PLUGINS.iter().find(|p| p.name == name).expect("bundled")
    }

    #[test]
    fn every_bundled_plugin_loads_the_code_compiled_at_build_time_into_engines_with_default_settings() {
        for pooling in [true, false] {
            let engine = PluginEngine::new(&EngineSettings { pooling, ..EngineSettings::default() }).unwrap();
            let cache = ArtifactCache::new(&engine.engine, None);
            for plugin in plugboard_bundled_plugins::PLUGINS {
                let hash = content_hash(plugin.component);
                let (_, outcome) = cache.load_or_compile(&engine.engine, plugin.component, &hash, Some(plugin.precompiled)).unwrap();
                assert_eq!(outcome, CacheOutcome::Precompiled, "bundled `{}` (pooling: {pooling})", plugin.name);
            }
        }
    }

    #[test]
    fn code_that_does_not_fit_the_engine_is_refused_and_the_component_compiled_instead() {
        let mut config = plugboard_engine_config::compiler_config();
        config.consume_fuel(true); // changes the compiled code
        let engine = Engine::new(&config).unwrap();
        let cache = ArtifactCache::new(&engine, None);
        let read = bundled("read");
        let hash = content_hash(read.component);
        for code in [read.precompiled, b"not compiled code".as_slice()] {
            let (component, outcome) = cache.load_or_compile(&engine, read.component, &hash, Some(code)).unwrap();
            assert_eq!(outcome, CacheOutcome::Uncached, "compiled, with no cache directory to keep it in");
            assert!(component.component_type().exports(&engine).any(|(name, _)| name.starts_with("plugboard:plugin/tool")));
        }
    }
}
