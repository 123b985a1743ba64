//! `plugboard.lock`: what `plugboard plugin install` put into a plugins directory, pinned by
//! digest, with what is needed to check each file offline (see [`crate::check`]).
//!
//! ```toml
//! version = 1
//!
//! [[plugin]]
//! file = "greet.wasm"
//! source = "oci://registry.example/plugins/greet:1.0.0"
//! digest = "sha256:…"           # of the manifest: what `install --locked` pulls
//! manifest = '{"schemaVersion":2,…}'
//!
//! [[plugin.signatures]]          # cosign's: the payload and its signature, base64
//! payload = "…"
//! signature = "…"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ProvenanceError;

/// The lock file's name in a plugins directory.
pub const LOCK_FILE_NAME: &str = "plugboard.lock";

const VERSION: u32 = 1;

/// A plugins directory's lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    /// The format's version (1).
    pub version: u32,
    /// The installed plugins, by file name.
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<LockedPlugin>,
}

/// One installed plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPlugin {
    /// Its file in the directory.
    pub file: String,
    /// The reference it was installed from, as given (`oci://registry/repository:tag`).
    pub source: String,
    /// The digest of its manifest.
    pub digest: String,
    /// The manifest, as the registry served it (its digest is [`Self::digest`]).
    pub manifest: String,
    /// The signatures the registry held for the digest when it was installed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<SignatureRecord>,
}

/// A cosign signature: the simple-signing payload and the ECDSA signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRecord {
    /// The payload, base64.
    pub payload: String,
    /// The signature (ASN.1 DER), base64.
    pub signature: String,
}

impl LockFile {
    /// The lock file of plugins directory `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(LOCK_FILE_NAME)
    }

    /// Reads `dir`'s lock file; `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<LockFile>, ProvenanceError> {
        let path = Self::path_in(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ProvenanceError::File { path, message: format!("cannot read: {e}") }),
        };
        Self::parse(&text).map(Some).map_err(|message| ProvenanceError::File { path, message })
    }

    /// Parses a lock file's text.
    pub fn parse(text: &str) -> Result<LockFile, String> {
        let lock: LockFile = toml::from_str(text).map_err(|e| format!("not a valid lock file: {}", e.to_string().trim_end()))?;
        if lock.version != VERSION {
            return Err(format!("lock file version {} is not known to this Plugboard (it reads version {VERSION})", lock.version));
        }
        // `install --locked` writes these names into the directory: none may leave it.
        if let Some(entry) = lock.plugins.iter().find(|p| !is_plugin_file_name(&p.file)) {
            return Err(format!("`{}` is not a plugin file name (a name ending in .wasm, without a directory)", entry.file));
        }
        Ok(lock)
    }

    /// Writes it into `dir`, replacing the file at once (a reader sees the old or the new).
    pub fn write(&self, dir: &Path) -> Result<(), ProvenanceError> {
        let path = Self::path_in(dir);
        let failed = |e: std::io::Error| ProvenanceError::File { path: path.clone(), message: format!("cannot write: {e}") };
        let mut lock = self.clone();
        lock.version = VERSION;
        lock.plugins.sort_by(|a, b| a.file.cmp(&b.file));
        let text = toml::to_string(&lock).map_err(|e| ProvenanceError::File { path: path.clone(), message: e.to_string() })?;
        let header = "# Written by `plugboard plugin install`; `plugboard plugin install --locked` installs exactly these.\n";
        let temporary = dir.join(format!(".{LOCK_FILE_NAME}.tmp"));
        std::fs::write(&temporary, format!("{header}{text}")).map_err(failed)?;
        std::fs::rename(&temporary, &path).map_err(failed)
    }

    /// The record of plugin file `file`.
    pub fn entry(&self, file: &str) -> Option<&LockedPlugin> {
        self.plugins.iter().find(|p| p.file == file)
    }

    /// Records `entry`, replacing the record of the same file.
    pub fn upsert(&mut self, entry: LockedPlugin) {
        self.plugins.retain(|p| p.file != entry.file);
        self.plugins.push(entry);
    }
}

/// A file directly in the plugins directory, named `*.wasm`, not hidden.
pub fn is_plugin_file_name(name: &str) -> bool {
    name.len() > ".wasm".len() && name.ends_with(".wasm") && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_file_round_trips_and_an_unknown_version_is_named() {
        let dir = std::env::temp_dir().join(format!("plugboard-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut lock = LockFile::default();
        let entry = LockedPlugin {
            file: "greet.wasm".into(),
            source: "oci://127.0.0.1:5000/greet:1".into(),
            digest: "sha256:ab".into(),
            manifest: "{\"schemaVersion\":2}".into(),
            signatures: vec![SignatureRecord { payload: "cA==".into(), signature: "cw==".into() }],
        };
        lock.upsert(entry.clone());
        lock.upsert(entry.clone());
        lock.write(&dir).unwrap();
        let read = LockFile::read(&dir).unwrap().unwrap();
        assert_eq!(read.plugins, vec![entry]);
        let err = LockFile::parse("version = 2\n").unwrap_err();
        assert!(err.contains("version 2"), "{err}");
        for file in ["../escape.wasm", "/etc/x.wasm", ".hidden.wasm", "plugin.so", ".wasm"] {
            let text = format!("version = 1\n[[plugin]]\nfile = {file:?}\nsource = \"s\"\ndigest = \"d\"\nmanifest = \"m\"\n");
            let err = LockFile::parse(&text).unwrap_err();
            assert!(err.contains("is not a plugin file name"), "{file}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
