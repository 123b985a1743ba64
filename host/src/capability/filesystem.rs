//! Filesystem grants: directories, each read-only or read-write. Inside the sandbox they
//! are WASI preopens at their real absolute paths; nothing else is visible. `..`, absolute
//! paths outside a grant and symlinks leading outside are refused by wasmtime-wasi
//! (cap-std resolves every path beneath its directory handle).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How a directory may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Files may be read and directories listed.
    ReadOnly,
    /// Files may also be created, changed and removed.
    ReadWrite,
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::ReadOnly => "read-only",
            Access::ReadWrite => "read-write",
        })
    }
}

/// A directory grant as written in `plugboard.toml`: `"path"` (read-only) or
/// `{ path = "path", access = "read-write" }`. Relative paths are relative to the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DirGrantSpec {
    /// A directory, read-only.
    ReadOnly(String),
    /// A directory with an explicit access.
    WithAccess {
        /// The directory.
        path: String,
        /// Its access.
        access: Access,
    },
}

impl DirGrantSpec {
    /// The path as written.
    pub fn path(&self) -> &str {
        match self {
            DirGrantSpec::ReadOnly(p) | DirGrantSpec::WithAccess { path: p, .. } => p,
        }
    }

    /// The access granted.
    pub fn access(&self) -> Access {
        match self {
            DirGrantSpec::ReadOnly(_) => Access::ReadOnly,
            DirGrantSpec::WithAccess { access, .. } => *access,
        }
    }
}

/// A directory grant, resolved: an existing directory's canonical path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirGrant {
    /// Canonical absolute path (symlinks resolved).
    pub path: PathBuf,
    /// The access granted.
    pub access: Access,
}

/// Resolves a grant against the workspace: the directory must exist; its path is
/// canonicalized so that the sandbox and the kernel confinement see the real directory.
pub fn resolve(spec: &DirGrantSpec, workspace: &Path) -> Result<DirGrant, String> {
    let raw = expand_home(spec.path());
    let joined = if raw.is_absolute() { raw } else { workspace.join(raw) };
    let path = joined.canonicalize().map_err(|e| format!("directory `{}` cannot be granted: {e}", joined.display()))?;
    if !path.is_dir() {
        return Err(format!("`{}` is not a directory; grants name directories", path.display()));
    }
    Ok(DirGrant { path, access: spec.access() })
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_resolve_relative_to_the_workspace_and_canonicalize() {
        let dir = std::env::temp_dir().join(format!("plugboard-fs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let g = resolve(&DirGrantSpec::ReadOnly("sub/../sub".into()), &dir).unwrap();
        assert_eq!(g.path, dir.join("sub").canonicalize().unwrap());
        assert_eq!(g.access, Access::ReadOnly);
        let err = resolve(&DirGrantSpec::ReadOnly("missing".into()), &dir).unwrap_err();
        assert!(err.contains("missing"), "{err}");
        std::fs::write(dir.join("file"), "x").unwrap();
        let err = resolve(&DirGrantSpec::WithAccess { path: "file".into(), access: Access::ReadWrite }, &dir).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
