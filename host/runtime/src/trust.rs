//! Workspace trust. Whoever can write the workspace can write its `plugboard.toml` and drop
//! files into `.plugboard/plugins/`: a cloned repository, the agent's own `write` tool, a
//! command it runs. So those files are policy only once the operator trusts them, the way
//! `direnv allow` and `mise trust` work: `plugboard trust` records the SHA-256 of the
//! workspace's configuration file and of each workspace plugin in `<data dir>/trust.json`,
//! outside the workspace, where no grant can reach (see [`protected_dirs`]).
//!
//! A workspace file whose content is not the trusted one is not applied. At start-up the
//! workspace runs with the built-in defaults (and without the untrusted plugins); while
//! serving, the configuration and plugins in force stay, and the change is announced
//! (`workspace.untrusted`, `/ready`, the CLI) with the command that reviews and trusts it.
//! Files the operator names (`--config`, `--plugins`, the user's plugins directory) are
//! trusted as they are.
//!
//! The content, not the time, is trusted: each check reads the file once, hashes those
//! bytes and uses those bytes, so nothing can swap the file between check and use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::runtime::discovery::WORKSPACE_PLUGINS_DIR;

/// The name of the trust file in the data directory.
pub const TRUST_FILE_NAME: &str = "trust.json";

/// Name of the configuration file looked up in the workspace.
pub const CONFIG_FILE_NAME: &str = "plugboard.toml";

/// What the operator trusted of one workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRecord {
    /// SHA-256 of `plugboard.toml`, when the workspace has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// SHA-256 of each file of `.plugboard/plugins/`, by file name.
    #[serde(default)]
    pub plugins: BTreeMap<String, String>,
}

/// The file `plugboard trust` writes.
#[derive(Debug, Default, Serialize, Deserialize)]
struct TrustFile {
    /// Trusted workspaces, by canonical path.
    #[serde(default)]
    workspaces: BTreeMap<PathBuf, TrustRecord>,
}

/// Why trust could not be read or recorded.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// There is no data directory to keep the trust file in.
    #[error("there is no data directory on this system to record trust in; pass --data-dir (or set PLUGBOARD_DATA_DIR)")]
    NoDataDir,
    /// The trust file or a workspace file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The trust file is not valid JSON; nothing in any workspace is trusted until it is
    /// fixed or removed.
    #[error("the trust file {path} is damaged ({message}); remove it and run `plugboard trust` again")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The parse error.
        message: String,
    },
}

/// One workspace file that is not applied because its content is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UntrustedFile {
    /// The file.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// What it is: `config` or `plugin`.
    pub kind: WorkspaceFileKind,
    /// The SHA-256 of its content now.
    pub sha256: String,
    /// The command that shows it and trusts it.
    pub review: String,
}

impl UntrustedFile {
    /// The `workspace.untrusted` event that announces it.
    pub fn event(&self) -> (&'static str, serde_json::Value) {
        ("workspace.untrusted", serde_json::json!({ "path": self.path, "kind": self.kind, "sha256": self.sha256, "review": self.review }))
    }
}

/// The kinds of workspace files that carry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WorkspaceFileKind {
    /// `plugboard.toml`.
    Config,
    /// A file of `.plugboard/plugins/`.
    Plugin,
}

/// The trust of one workspace, as the host checks it.
#[derive(Debug, Clone)]
pub struct WorkspaceTrust {
    /// The trust file; `None` when there is no data directory (nothing is trusted).
    file: Option<PathBuf>,
    /// The workspace, canonical.
    workspace: PathBuf,
}

impl WorkspaceTrust {
    /// The trust of `workspace` (canonical), recorded in `<data_dir>/trust.json` (default:
    /// the user's data directory).
    pub fn new(workspace: &Path, data_dir: Option<&Path>) -> Self {
        let file = data_dir.map(Path::to_path_buf).or_else(default_data_dir).map(|d| d.join(TRUST_FILE_NAME));
        WorkspaceTrust { file, workspace: workspace.to_path_buf() }
    }

    /// The trust file.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The workspace.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// The command an operator runs to review and trust the workspace.
    pub fn review_command(&self) -> String {
        format!("plugboard trust --workspace {}", self.workspace.display())
    }

    /// What is trusted now (read afresh, so a `plugboard trust` in another process counts
    /// at once). A missing or damaged trust file trusts nothing.
    pub fn record(&self) -> TrustRecord {
        match self.read() {
            Ok(mut file) => file.workspaces.remove(&self.workspace).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "workspace trust cannot be read; the workspace's own files are not applied");
                TrustRecord::default()
            }
        }
    }

    /// Whether `text` is the trusted content of the workspace's `plugboard.toml`.
    pub fn config_trusted(&self, text: &str) -> Result<(), UntrustedFile> {
        let sha256 = sha256(text.as_bytes());
        if self.record().config.as_deref() == Some(sha256.as_str()) {
            return Ok(());
        }
        Err(self.untrusted(self.workspace.join(CONFIG_FILE_NAME), WorkspaceFileKind::Config, sha256))
    }

    /// Whether `bytes` are the trusted content of the workspace plugin at `path`.
    pub fn plugin_trusted(&self, record: &TrustRecord, path: &Path, bytes: &[u8]) -> Result<(), UntrustedFile> {
        let sha256 = sha256(bytes);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if record.plugins.get(&name) == Some(&sha256) {
            return Ok(());
        }
        Err(self.untrusted(path.to_path_buf(), WorkspaceFileKind::Plugin, sha256))
    }

    fn untrusted(&self, path: PathBuf, kind: WorkspaceFileKind, sha256: String) -> UntrustedFile {
        UntrustedFile { path, kind, sha256, review: self.review_command() }
    }

    /// The workspace's policy files as they are now.
    pub fn current(&self) -> Result<TrustRecord, TrustError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TrustError::Io { path, source }
        };
        let config_path = self.workspace.join(CONFIG_FILE_NAME);
        let config = match std::fs::read(&config_path) {
            Ok(bytes) => Some(sha256(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&config_path)(e)),
        };
        let dir = self.workspace.join(WORKSPACE_PLUGINS_DIR);
        let mut plugins = BTreeMap::new();
        if dir.is_dir() {
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let path = entry.map_err(io(&dir))?.path();
                if path.extension().is_some_and(|x| x == "wasm") && path.is_file() {
                    let bytes = std::fs::read(&path).map_err(io(&path))?;
                    plugins.insert(path.file_name().unwrap_or_default().to_string_lossy().into_owned(), sha256(&bytes));
                }
            }
        }
        Ok(TrustRecord { config, plugins })
    }

    /// Trusts the workspace's files as they are now, and returns what was trusted.
    pub fn trust_current(&self) -> Result<TrustRecord, TrustError> {
        let record = self.current()?;
        self.trust(&record)?;
        Ok(record)
    }

    /// Trusts exactly `record` (what the operator reviewed), whatever the files hold now.
    pub fn trust(&self, record: &TrustRecord) -> Result<(), TrustError> {
        self.write(|file| {
            file.workspaces.insert(self.workspace.clone(), record.clone());
        })
    }

    /// Forgets the workspace: its files are no longer applied.
    pub fn revoke(&self) -> Result<bool, TrustError> {
        let mut removed = false;
        self.write(|file| removed = file.workspaces.remove(&self.workspace).is_some())?;
        Ok(removed)
    }

    fn read(&self) -> Result<TrustFile, TrustError> {
        let path = self.file.as_ref().ok_or(TrustError::NoDataDir)?;
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TrustError::Damaged { path: path.clone(), message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TrustFile::default()),
            Err(source) => Err(TrustError::Io { path: path.clone(), source }),
        }
    }

    /// Changes the trust file: written to a temporary file (mode 0600) and renamed over it.
    fn write(&self, change: impl FnOnce(&mut TrustFile)) -> Result<(), TrustError> {
        let path = self.file.as_ref().ok_or(TrustError::NoDataDir)?;
        let io = |source| TrustError::Io { path: path.clone(), source };
        let mut file = self.read()?;
        change(&mut file);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let text = serde_json::to_vec_pretty(&file).expect("the trust file serializes");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut out = options.open(&tmp).map_err(io)?;
            out.write_all(&text).and_then(|_| out.sync_all()).map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Plugboard's directories for this user, as the platform places them.
fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "plugboard")
}

/// The user's data directory (sessions, trust).
pub fn default_data_dir() -> Option<PathBuf> {
    project_dirs().map(|d| d.data_dir().to_path_buf())
}

/// The user's configuration directory (user plugins).
pub fn default_config_dir() -> Option<PathBuf> {
    project_dirs().map(|d| d.config_dir().to_path_buf())
}

/// The user's cache directory (compiled components).
pub fn default_cache_dir() -> Option<PathBuf> {
    project_dirs().map(|d| d.cache_dir().to_path_buf())
}

/// The directories no grant may reach, whatever it says: the data directory (sessions and
/// trust), the configuration directory (the user's plugins) and the cache of compiled
/// plugins (native code the host loads), both the defaults and those in use. A grant that
/// contains one of them, or lies inside one, is refused at load.
pub fn protected_dirs(data_dir: Option<&Path>, cache_dir: Option<&Path>) -> Vec<PathBuf> {
    let defaults = [default_data_dir(), default_config_dir(), crate::runtime::artifact_cache::ArtifactCache::default_dir()];
    let in_use = [data_dir.map(Path::to_path_buf), cache_dir.map(Path::to_path_buf)];
    let mut dirs: Vec<PathBuf> = defaults.into_iter().chain(in_use).flatten().map(|d| resolve_existing_prefix(&d)).collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// `path` with its longest existing ancestor canonicalized, so it compares with canonical
/// grants even before it is created.
fn resolve_existing_prefix(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = existing.canonicalize() {
            return rest.iter().rev().fold(canonical, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// The hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("plugboard-trust-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ws/.plugboard/plugins")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        dir.canonicalize().unwrap()
    }

    #[test]
    fn a_file_is_trusted_only_with_the_content_that_was_trusted() {
        let dir = scratch("content");
        let trust = WorkspaceTrust::new(&dir.join("ws"), Some(&dir.join("data")));
        std::fs::write(dir.join("ws/plugboard.toml"), "[limits]\n").unwrap();
        assert!(trust.config_trusted("[limits]\n").is_err(), "nothing is trusted before `plugboard trust`");
        trust.trust_current().unwrap();
        assert!(trust.config_trusted("[limits]\n").is_ok());
        let changed = trust.config_trusted("[plugins.shell]\nprocess = [\"*\"]\n").unwrap_err();
        assert_eq!(changed.kind, WorkspaceFileKind::Config);
        assert!(changed.review.contains("plugboard trust --workspace"), "{}", changed.review);
        assert!(trust.revoke().unwrap());
        assert!(trust.config_trusted("[limits]\n").is_err(), "revoked");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plugins_are_trusted_by_name_and_content() {
        let dir = scratch("plugins");
        let trust = WorkspaceTrust::new(&dir.join("ws"), Some(&dir.join("data")));
        let plugin = dir.join("ws/.plugboard/plugins/a.wasm");
        std::fs::write(&plugin, b"one").unwrap();
        let record = trust.trust_current().unwrap();
        assert!(trust.plugin_trusted(&record, &plugin, b"one").is_ok());
        assert!(trust.plugin_trusted(&record, &plugin, b"two").is_err());
        assert!(trust.plugin_trusted(&record, &dir.join("ws/.plugboard/plugins/b.wasm"), b"one").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_trust_file_trusts_nothing() {
        let dir = scratch("damaged");
        let trust = WorkspaceTrust::new(&dir.join("ws"), Some(&dir.join("data")));
        trust.trust_current().unwrap();
        std::fs::write(dir.join("data").join(TRUST_FILE_NAME), "{ not json").unwrap();
        assert_eq!(trust.record(), TrustRecord::default());
        assert!(matches!(trust.trust_current(), Err(TrustError::Damaged { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn protected_dirs_are_absolute_even_before_they_exist() {
        let dir = scratch("protected");
        let dirs = protected_dirs(Some(&dir.join("data/not-yet")), Some(&dir.join("cache")));
        assert!(dirs.contains(&dir.join("data/not-yet")), "{dirs:?}");
        assert!(dirs.contains(&dir.join("cache")), "{dirs:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
