//! Where plugins are found: the first-party plugins embedded in the binary, the user's
//! plugins directory, the workspace's `.plugboard/plugins/`, and `--plugins DIR`s. A
//! plugin id found in several places is taken from the most specific one (`--plugins`,
//! then the workspace, then the user's directory, then the embedded ones).
//!
//! The workspace's plugins load only when trusted (see [`crate::trust`]): a file whose
//! content the operator has not trusted is set aside as [`UntrustedFile`], not loaded. Each directory's `plugboard.lock` gives the
//! files `plugboard plugin install` put there their record (see `plugboard_provenance`).

use std::path::{Path, PathBuf};

use super::plugin::PluginSource;
use crate::trust::{UntrustedFile, WorkspaceTrust};

/// The workspace's plugins directory, relative to the workspace.
pub const WORKSPACE_PLUGINS_DIR: &str = ".plugboard/plugins";

/// A plugin to load, with its bytes.
pub struct Candidate {
    /// Where it is.
    pub source: PluginSource,
    /// Its component.
    pub bytes: std::borrow::Cow<'static, [u8]>,
    /// True for the embedded first-party plugins.
    pub first_party: bool,
    /// Higher wins when two candidates have the same plugin id.
    pub precedence: u8,
    /// Its code compiled ahead of time, which the embedded plugins carry.
    pub precompiled: Option<&'static [u8]>,
    /// Its record in its directory's lock file, when `plugboard plugin install` put it there.
    pub installed: Option<plugboard_provenance::LockedPlugin>,
}

impl Candidate {
    /// A `.wasm` file found in a plugins directory.
    pub fn file(path: PathBuf, bytes: Vec<u8>, precedence: u8) -> Self {
        Candidate {
            source: PluginSource::File { path },
            bytes: bytes.into(),
            first_party: false,
            precedence,
            precompiled: None,
            installed: None,
        }
    }

    /// What a failed load is remembered by, so that the same file is not tried again until
    /// it changes: its content, and its lock file record (installing the same bytes with a
    /// record or a new signature is a change).
    /// `hash` is its content hash.
    pub fn failure_key(&self, hash: &str) -> String {
        match &self.installed {
            Some(entry) => format!("{hash} {} {}", entry.digest, entry.signatures.len()),
            None => hash.to_string(),
        }
    }

    /// This candidate with its record from `lock` (the lock file of its directory).
    pub fn recorded_in(mut self, lock: Option<&plugboard_provenance::LockFile>) -> Self {
        if let (Some(lock), PluginSource::File { path }) = (lock, &self.source) {
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            self.installed = lock.entry(&file).cloned();
        }
        self
    }
}

/// The user's plugins directory: `$XDG_CONFIG_HOME/plugboard/plugins` or the platform's
/// equivalent.
pub fn user_plugins_dir() -> Option<PathBuf> {
    crate::trust::default_config_dir().map(|d| d.join("plugins"))
}

/// What a scan of the plugin directories found.
#[derive(Default)]
pub struct Discovered {
    /// Plugins to load, highest precedence first.
    pub candidates: Vec<Candidate>,
    /// Files or directories that could not be read, and why.
    pub errors: Vec<(PluginSource, String)>,
    /// Workspace plugins whose content is not trusted.
    pub untrusted: Vec<UntrustedFile>,
}

/// The directories plugin files are found in (the embedded plugins aside).
#[derive(Debug, Clone)]
pub struct PluginDirs {
    /// The workspace (its `.plugboard/plugins/`).
    pub workspace: PathBuf,
    /// The user's plugins directory, unless skipped.
    pub user: Option<PathBuf>,
    /// `--plugins DIR`s.
    pub extra: Vec<PathBuf>,
    /// What the operator trusts of the workspace.
    pub trust: WorkspaceTrust,
}

impl PluginDirs {
    /// Every candidate in these directories and the embedded plugins (see [`discover`]).
    pub fn discover(&self) -> Discovered {
        discover(&self.workspace, self.user.as_deref(), &self.extra, &self.trust)
    }

    /// The directories to watch for changes.
    pub fn watched(&self) -> Vec<PathBuf> {
        let mut dirs = self.extra.clone();
        dirs.push(self.workspace.join(WORKSPACE_PLUGINS_DIR));
        dirs.extend(self.user.clone());
        dirs
    }
}

/// Lists every candidate, highest precedence first. Unreadable files are returned as
/// errors beside the candidates, never silently skipped; untrusted workspace plugins are
/// set aside.
pub fn discover(workspace: &Path, user_dir: Option<&Path>, extra_dirs: &[PathBuf], trust: &WorkspaceTrust) -> Discovered {
    let mut candidates = Vec::new();
    let mut errors = Vec::new();
    let mut untrusted = Vec::new();
    let workspace_dir = workspace.join(WORKSPACE_PLUGINS_DIR);
    let record = workspace_dir.is_dir().then(|| trust.record());
    let mut scan = |dir: &Path, precedence: u8, must_exist: bool| {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                if must_exist {
                    errors.push((PluginSource::File { path: dir.to_path_buf() }, format!("cannot read the plugins directory: {e}")));
                }
                return;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect();
        files.sort();
        let lock = match plugboard_provenance::LockFile::read(dir) {
            Ok(lock) => lock,
            Err(e) => {
                errors.push((PluginSource::File { path: plugboard_provenance::LockFile::path_in(dir) }, e.to_string()));
                None
            }
        };
        for path in files {
            match std::fs::read(&path) {
                Ok(bytes) if dir == workspace_dir => match trust.plugin_trusted(record.as_ref().expect("read above"), &path, &bytes) {
                    Ok(()) => candidates.push(Candidate::file(path, bytes, precedence).recorded_in(lock.as_ref())),
                    Err(file) => untrusted.push(file),
                },
                Ok(bytes) => candidates.push(Candidate::file(path, bytes, precedence).recorded_in(lock.as_ref())),
                Err(e) => errors.push((PluginSource::File { path }, format!("cannot read: {e}"))),
            }
        }
    };
    for dir in extra_dirs {
        scan(dir, 3, true);
    }
    scan(&workspace_dir, 2, false);
    if let Some(dir) = user_dir {
        scan(dir, 1, false);
    }
    for plugin in plugboard_bundled_plugins::PLUGINS {
        candidates.push(Candidate {
            source: PluginSource::Bundled { name: plugin.name.to_string() },
            bytes: plugin.component.into(),
            first_party: true,
            precedence: 0,
            precompiled: Some(plugin.precompiled),
            installed: None,
        });
    }
    Discovered { candidates, errors, untrusted }
}
