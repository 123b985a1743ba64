//! Workspace snapshots, for undo. A snapshot is the content hash of every file of the
//! workspace (`.gitignore` applied, `.git` left out, regular files up to
//! [`MAX_FILE_BYTES`]); each content is kept once in a content-addressed store in the data
//! directory (`snapshots/objects/<sha256>`), so a file can be put back as it was. Files
//! whose size, times and inode did not change since the last snapshot are not read again.
//!
//! The agent takes one before and one after a turn's tool calls that may change files,
//! records what changed (with a unified diff) in the turn's message, and restores the files
//! on revert. Nothing here follows a symbolic link or opens a file that is not regular; a
//! restore writes only beneath the workspace (through `cap-std`), so a link or a path in a
//! recorded change cannot send it elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest file tracked, in bytes: changes to a larger one are not recorded or undone.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Most files tracked in one workspace: past it, snapshots are skipped and say why.
pub const MAX_FILES: usize = 50_000;
/// Longest diff recorded for one file, in bytes.
const MAX_DIFF_BYTES: usize = 64 * 1024;

/// What a snapshot saw: each file's path (relative, `/`-separated) and state.
pub type Tree = BTreeMap<String, FileState>;

/// A file as a snapshot saw it: its content, and whether it was executable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// The content's SHA-256, hex.
    pub hash: String,
    /// Whether its owner could execute it.
    pub executable: bool,
}

/// How a file changed between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileChange {
    /// The file, relative to the workspace.
    pub path: String,
    /// `added`, `modified` or `deleted`.
    pub change: String,
    /// Its content hash before (none when it was added).
    pub before: Option<String>,
    /// Its content hash after (none when it was deleted).
    pub after: Option<String>,
    /// Whether it was executable before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable_before: bool,
    /// A unified diff (empty for a binary file).
    pub diff: String,
}

/// The snapshots of one workspace.
pub struct Snapshots {
    workspace: PathBuf,
    objects: PathBuf,
    /// What each file was when last read: (size, mtime, ctime, inode) and its state.
    known: Mutex<HashMap<String, (Stamp, FileState)>>,
    /// Set once the workspace was found to hold more than [`MAX_FILES`] files: snapshots
    /// are not tried again (each try would walk that many files).
    too_large: AtomicBool,
}

type Stamp = (u64, i64, i64, i64, i64, u64);

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ctime(), meta.ctime_nsec(), meta.ino())
}

impl Snapshots {
    /// The snapshots of `workspace`, their contents kept under `data_dir/snapshots`.
    pub fn new(workspace: &Path, data_dir: &Path) -> Self {
        Snapshots {
            workspace: workspace.to_path_buf(),
            objects: data_dir.join("snapshots").join("objects"),
            known: Mutex::default(),
            too_large: AtomicBool::new(false),
        }
    }

    /// The workspace as it is now, each file's content stored. Blocking: run it off the
    /// async threads.
    pub fn take(&self) -> Result<Tree, String> {
        let too_large = || format!("the workspace has more than {MAX_FILES} files; changes are not tracked ([sessions] snapshots = false)");
        if self.too_large.load(Ordering::Relaxed) {
            return Err(too_large());
        }
        std::fs::create_dir_all(&self.objects).map_err(|e| format!("cannot create {}: {e}", self.objects.display()))?;
        let walk = ignore::WalkBuilder::new(&self.workspace)
            .hidden(false)
            .git_global(false)
            .require_git(false)
            .follow_links(false)
            .filter_entry(|entry| entry.file_name() != ".git")
            .build();
        let mut tree = Tree::new();
        let mut known = self.known.lock().expect("not poisoned");
        for entry in walk.flatten() {
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let Some(relative) = entry.path().strip_prefix(&self.workspace).ok().and_then(|p| p.to_str()).map(str::to_string) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if meta.len() > MAX_FILE_BYTES {
                continue;
            }
            if tree.len() == MAX_FILES {
                self.too_large.store(true, Ordering::Relaxed);
                return Err(too_large());
            }
            let state = match known.get(&relative) {
                Some((seen, state)) if *seen == stamp(&meta) => state.clone(),
                _ => match self.store(entry.path()) {
                    Some((hash, meta)) => {
                        let state = FileState { hash, executable: meta.mode() & 0o100 != 0 };
                        known.insert(relative.clone(), (stamp(&meta), state.clone()));
                        state
                    }
                    None => continue,
                },
            };
            tree.insert(relative, state);
        }
        Ok(tree)
    }

    /// Reads a regular file (never through a link, never blocking on a FIFO) and stores its
    /// content; its hash, and what it was when read. `None` when it is not a regular file
    /// or cannot be read.
    fn store(&self, path: &Path) -> Option<(String, std::fs::Metadata)> {
        let mut file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
            return None;
        }
        let mut content = Vec::with_capacity(meta.len() as usize);
        file.by_ref().take(MAX_FILE_BYTES + 1).read_to_end(&mut content).ok()?;
        let hash = hex::encode(Sha256::digest(&content));
        let object = self.object(&hash);
        if !object.exists() {
            let partial = self.objects.join(format!(".{hash}.{}", std::process::id()));
            std::fs::write(&partial, &content).ok()?;
            std::fs::rename(&partial, &object).ok()?;
        }
        Some((hash, meta))
    }

    fn object(&self, hash: &str) -> PathBuf {
        self.objects.join(hash)
    }

    /// A stored content.
    pub fn content(&self, hash: &str) -> Option<Vec<u8>> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        std::fs::read(self.object(hash)).ok()
    }

    /// What changed from `before` to `after`, each with its diff.
    pub fn changes(&self, before: &Tree, after: &Tree) -> Vec<FileChange> {
        let paths: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        paths
            .into_iter()
            .filter_map(|path| {
                let (old, new) = (before.get(path), after.get(path));
                let change = match (old, new) {
                    (Some(a), Some(b)) if a == b => return None,
                    (None, None) => return None,
                    (None, Some(_)) => "added",
                    (Some(_), None) => "deleted",
                    (Some(_), Some(_)) => "modified",
                };
                let (old_hash, new_hash) = (old.map(|s| s.hash.as_str()), new.map(|s| s.hash.as_str()));
                Some(FileChange {
                    path: path.clone(),
                    change: change.into(),
                    before: old_hash.map(str::to_string),
                    after: new_hash.map(str::to_string),
                    executable_before: old.is_some_and(|s| s.executable),
                    diff: self.diff(path, old_hash, new_hash),
                })
            })
            .collect()
    }

    /// A unified diff of `path` between two contents (empty when either is not text).
    fn diff(&self, path: &str, before: Option<&str>, after: Option<&str>) -> String {
        let text = |hash: Option<&str>| match hash {
            None => Some(String::new()),
            Some(h) => self.content(h).and_then(|c| String::from_utf8(c).ok()),
        };
        let (Some(old), Some(new)) = (text(before), text(after)) else { return String::new() };
        let diff = similar::TextDiff::from_lines(&old, &new);
        let mut unified = diff.unified_diff().context_radius(3).header(&format!("a/{path}"), &format!("b/{path}")).to_string();
        if unified.len() > MAX_DIFF_BYTES {
            let mut end = MAX_DIFF_BYTES;
            while !unified.is_char_boundary(end) {
                end -= 1;
            }
            unified.truncate(end);
            unified.push_str("\n[… the diff goes on; the whole file is kept for undo]\n");
        }
        unified
    }

    /// Puts each file back as it was (or removes it, for none), after checking that every
    /// content is stored. Says for each whether it was restored (or removed).
    pub fn put_back(&self, files: &BTreeMap<String, Option<FileState>>) -> Result<Vec<(String, bool)>, String> {
        let missing = files.iter().find_map(|(p, s)| s.as_ref().filter(|s| self.content(&s.hash).is_none()).map(|s| (p, &s.hash)));
        if let Some((path, hash)) = missing {
            return Err(format!("the content of {path} before the change ({hash}) is not stored; nothing was put back"));
        }
        let mut done = Vec::new();
        for (path, state) in files {
            if let Err(why) = self.restore(path, state.as_ref()) {
                let earlier: Vec<&str> = done.iter().map(|(p, _): &(String, bool)| p.as_str()).collect();
                let earlier = if earlier.is_empty() { "none".to_string() } else { earlier.join(", ") };
                return Err(format!("{why}; put back before it: {earlier}"));
            }
            done.push((path.clone(), state.is_some()));
        }
        Ok(done)
    }

    /// Puts `path` back as it was: the stored content of `to` with its executable bit, or
    /// no file when `None`. Writes only beneath the workspace.
    pub fn restore(&self, path: &str, to: Option<&FileState>) -> Result<(), String> {
        let relative = Path::new(path);
        if path.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!("`{path}` is not a path inside the workspace"));
        }
        let dir = cap_std::fs::Dir::open_ambient_dir(&self.workspace, cap_std::ambient_authority())
            .map_err(|e| format!("cannot open the workspace {}: {e}", self.workspace.display()))?;
        let Some(state) = to else {
            return match dir.remove_file(relative) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("cannot remove {path}: {e}")),
                _ => Ok(()),
            };
        };
        let hash = &state.hash;
        let content = self.content(hash).ok_or_else(|| format!("the content of {path} before the change ({hash}) is not stored"))?;
        if let Some(parent) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
            dir.create_dir_all(parent).map_err(|e| format!("cannot create the directory of {path}: {e}"))?;
        }
        dir.write(relative, content).map_err(|e| format!("cannot write {path}: {e}"))?;
        let mode = if state.executable { 0o755 } else { 0o644 };
        let permissions = cap_std::fs::Permissions::from_std(std::fs::Permissions::from_mode(mode));
        dir.set_permissions(relative, permissions).map_err(|e| format!("cannot set the permissions of {path}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("plugboard-snapshot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ws")).unwrap();
        dir
    }

    #[test]
    fn a_change_is_seen_with_its_diff_and_undone_and_ignored_files_are_left_out() {
        let root = temp("undo");
        let ws = root.join("ws");
        std::fs::write(ws.join("a.txt"), "one\ntwo\n").unwrap();
        std::fs::write(ws.join(".gitignore"), "build/\n").unwrap();
        std::fs::create_dir_all(ws.join("build")).unwrap();
        std::fs::write(ws.join("build/out.bin"), "ignored").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", ws.join("link")).unwrap();
        let snapshots = Snapshots::new(&ws, &root.join("data"));
        let before = snapshots.take().unwrap();
        assert_eq!(before.keys().collect::<Vec<_>>(), [".gitignore", "a.txt"], "no ignored file, no link");

        std::fs::write(ws.join("a.txt"), "one\nTWO\n").unwrap();
        std::fs::create_dir_all(ws.join("src")).unwrap();
        std::fs::write(ws.join("src/new.rs"), "fn main() {}\n").unwrap();
        std::fs::remove_file(ws.join(".gitignore")).unwrap();
        let after = snapshots.take().unwrap();
        let changes = snapshots.changes(&before, &after);
        let summary: Vec<(&str, &str)> = changes.iter().map(|c| (c.path.as_str(), c.change.as_str())).collect();
        assert_eq!(summary, [(".gitignore", "deleted"), ("a.txt", "modified"), ("build/out.bin", "added"), ("src/new.rs", "added")]);
        assert!(changes[1].diff.contains("-two\n+TWO\n") && changes[1].diff.starts_with("--- a/a.txt"), "{}", changes[1].diff);

        for change in &changes {
            let state = change.before.clone().map(|hash| FileState { hash, executable: change.executable_before });
            snapshots.restore(&change.path, state.as_ref()).unwrap();
        }
        assert_eq!(std::fs::read_to_string(ws.join("a.txt")).unwrap(), "one\ntwo\n");
        assert!(ws.join(".gitignore").exists() && !ws.join("src/new.rs").exists());
        assert_eq!(snapshots.take().unwrap(), before);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_deleted_script_comes_back_executable_and_a_mode_change_is_a_change() {
        let root = temp("modes");
        let ws = root.join("ws");
        std::fs::write(ws.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(ws.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(ws.join("data"), "x").unwrap();
        let snapshots = Snapshots::new(&ws, &root.join("data-dir"));
        let before = snapshots.take().unwrap();
        std::fs::remove_file(ws.join("run.sh")).unwrap();
        std::fs::set_permissions(ws.join("data"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let changes = snapshots.changes(&before, &snapshots.take().unwrap());
        let summary: Vec<(&str, &str, bool)> = changes.iter().map(|c| (c.path.as_str(), c.change.as_str(), c.executable_before)).collect();
        assert_eq!(summary, [("data", "modified", false), ("run.sh", "deleted", true)]);
        for change in &changes {
            let state = change.before.clone().map(|hash| FileState { hash, executable: change.executable_before });
            snapshots.restore(&change.path, state.as_ref()).unwrap();
        }
        assert_eq!(std::fs::metadata(ws.join("run.sh")).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(std::fs::metadata(ws.join("data")).unwrap().permissions().mode() & 0o777, 0o644);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_restore_never_writes_outside_the_workspace() {
        let root = temp("escape");
        let ws = root.join("ws");
        std::fs::create_dir_all(root.join("outside")).unwrap();
        std::os::unix::fs::symlink(root.join("outside"), ws.join("out")).unwrap();
        let snapshots = Snapshots::new(&ws, &root.join("data"));
        std::fs::write(ws.join("f"), "x").unwrap();
        let state = snapshots.take().unwrap()["f"].clone();
        assert!(snapshots.restore("../escaped", Some(&state)).unwrap_err().contains("not a path inside"));
        assert!(snapshots.restore("/etc/escaped", Some(&state)).is_err());
        assert!(snapshots.restore("out/escaped", Some(&state)).is_err(), "not through a link to elsewhere");
        assert!(!root.join("outside/escaped").exists() && !root.join("escaped").exists());
        let forged = FileState { hash: "../../etc/passwd".into(), executable: false };
        assert!(snapshots.restore("f", Some(&forged)).is_err(), "a hash is a hash");
        let _ = std::fs::remove_dir_all(&root);
    }
}
