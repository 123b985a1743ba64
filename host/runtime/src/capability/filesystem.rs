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
    // Whatever runs in the workspace can replace a directory there with a symlink: a
    // directory inside the workspace is granted only as itself.
    let lexical = normalize(&joined);
    if lexical.starts_with(workspace) && lexical != path {
        return Err(format!(
            "`{}` inside the workspace resolves to `{}` through a symlink; a workspace directory is granted only as itself, since plugins and commands can replace it",
            lexical.display(),
            path.display()
        ));
    }
    Ok(DirGrant { path, access: spec.access() })
}

/// Refuses a granted directory that contains one of Plugboard's own directories, or lies
/// inside one: sessions, trust, user plugins and compiled code are never a plugin's to
/// read or change.
pub fn refuse_protected(granted: &Path, protected: &[PathBuf]) -> Result<(), String> {
    for dir in protected {
        if dir.starts_with(granted) {
            return Err(format!(
                "`{}` cannot be granted: it contains Plugboard's own directory `{}` (sessions, trust, user plugins or compiled plugins), which no plugin may reach; grant the directories beneath it that the plugin needs",
                granted.display(),
                dir.display()
            ));
        }
        if granted.starts_with(dir) {
            return Err(format!(
                "`{}` cannot be granted: it is inside Plugboard's own directory `{}`, which no plugin may reach",
                granted.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}

/// Refuses a grant nested in another grant of the same plugin with different access: the
/// sandbox and the kernel both give a path the widest access of the grants it lies in, so a
/// read-only directory inside a read-write one would be writable.
pub fn refuse_nested(grants: &[DirGrant]) -> Result<(), String> {
    for inner in grants {
        if let Some(outer) = grants.iter().find(|o| o.path != inner.path && inner.path.starts_with(&o.path) && o.access != inner.access) {
            return Err(format!(
                "`{}` ({}) lies inside `{}` ({}); a nested grant would get the wider access of the two, so grant directories that do not contain each other",
                inner.path.display(),
                inner.access,
                outer.path.display(),
                outer.access
            ));
        }
    }
    Ok(())
}

impl DirGrant {
    /// Checks, where the grant is used, that its path still is the directory that was
    /// granted: a directory replaced by a symlink (or by anything else) since the grant
    /// loaded is refused, so a grant cannot be moved by writing into another one.
    pub fn still_in_place(&self) -> Result<(), String> {
        let moved = |now: &str| {
            format!(
                "the granted directory `{}` {now} since it was granted; reload the configuration to grant it again",
                self.path.display()
            )
        };
        let meta = std::fs::symlink_metadata(&self.path).map_err(|e| moved(&format!("cannot be read ({e})")))?;
        if meta.file_type().is_symlink() {
            return Err(moved("was replaced by a symlink"));
        }
        if !meta.is_dir() {
            return Err(moved("is no longer a directory"));
        }
        match self.path.canonicalize() {
            Ok(now) if now == self.path => Ok(()),
            Ok(now) => Err(moved(&format!("now resolves to `{}`", now.display()))),
            Err(e) => Err(moved(&format!("cannot be resolved ({e})"))),
        }
    }
}

/// `path` with `.` and `..` resolved lexically (symlinks are not followed).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
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

    #[test]
    fn a_nested_grant_with_other_access_is_refused_and_a_moved_grant_is_noticed() {
        let dir = std::env::temp_dir().join(format!("plugboard-nested-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ro")).unwrap();
        let dir = dir.canonicalize().unwrap();
        let rw = DirGrant { path: dir.clone(), access: Access::ReadWrite };
        let ro = DirGrant { path: dir.join("ro"), access: Access::ReadOnly };
        let err = refuse_nested(&[rw.clone(), ro.clone()]).unwrap_err();
        assert!(err.contains("lies inside") && err.contains("read-only"), "{err}");
        assert!(refuse_nested(&[rw.clone(), DirGrant { access: Access::ReadWrite, ..ro.clone() }]).is_ok());
        assert!(ro.still_in_place().is_ok());
        std::fs::remove_dir(dir.join("ro")).unwrap();
        std::os::unix::fs::symlink("/", dir.join("ro")).unwrap();
        assert!(ro.still_in_place().unwrap_err().contains("replaced by a symlink"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn grants_that_contain_or_enter_a_protected_directory_are_refused() {
        let protected = [PathBuf::from("/home/u/.local/share/plugboard")];
        assert!(refuse_protected(Path::new("/"), &protected).unwrap_err().contains("contains Plugboard's own directory"));
        assert!(refuse_protected(Path::new("/home/u"), &protected).is_err());
        assert!(refuse_protected(Path::new("/home/u/.local/share/plugboard/x"), &protected).unwrap_err().contains("inside"));
        assert!(refuse_protected(Path::new("/home/u/project"), &protected).is_ok());
        // A sibling whose name starts the same is not inside it.
        assert!(refuse_protected(Path::new("/home/u/.local/share/plugboard-other"), &protected).is_ok());
    }
}
