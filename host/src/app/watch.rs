//! The file watcher: the plugin directories, the configuration file and the trust file,
//! debounced, each change handed to the layer it concerns.

use std::sync::Arc;
use std::time::Duration;

use super::App;

/// How long the file watcher waits for quiet before it reloads, after an event that may be
/// part of a write still going on (a file created or written to).
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// How long it waits after an event that completes a change (a file renamed into place,
/// closed after writing, or removed): just enough to take in the rest of a burst.
pub const SETTLE: Duration = Duration::from_millis(10);

impl App {
    /// Watches the plugin directories, the configuration file and the trust file: reloads
    /// the plugins when a `.wasm` file in them changes, the configuration when its file
    /// does, and both when the operator trusts the workspace. It waits
    /// for quiet: [`SETTLE`] after an event that completes a change (a rename into place, a
    /// close after writing, a removal), [`DEBOUNCE`] after one that may be part of a write
    /// still going on (where the platform does not report closes, every write is such an
    /// event). Watching stops when the guard is dropped.
    pub fn watch(self: &Arc<Self>) -> notify::Result<WatchGuard> {
        use notify::Watcher;
        let config_file = self.config_file().to_path_buf();
        let host = self.host.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // The directories are watched as resolved paths, so the events name them as they are
        // compared here (a relative `--plugins` or `--config` would be named otherwise).
        let watched_config = resolved(&config_file);
        let trust_file = host.trust().file().map(std::path::Path::to_path_buf);
        let watched_trust = trust_file.as_deref().and_then(resolved);
        let plugin_dirs: Vec<std::path::PathBuf> = host.plugin_dirs().iter().filter_map(|d| std::fs::canonicalize(d).ok()).collect();
        let watched_dirs = plugin_dirs.clone();
        let (config_dir, trust_dir) = (watched_config.clone(), watched_trust.clone());
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            use notify::EventKind;
            use notify::event::{AccessKind, AccessMode, ModifyKind};
            let Ok(event) = event else { return };
            let complete = match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                EventKind::Access(_) => return,
                EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => true,
                _ => false,
            };
            // The configuration's directory (the workspace) is watched too: only `.wasm` files
            // of the plugin directories count as plugins.
            let paths = &event.paths;
            let is_plugin = |p: &std::path::PathBuf| {
                p.extension().is_some_and(|x| x == "wasm") && p.parent().is_some_and(|d| plugin_dirs.iter().any(|w| w == d))
            };
            if paths.iter().any(is_plugin) {
                let _ = tx.send((Change::Plugins, complete));
            }
            if watched_config.as_ref().is_some_and(|c| paths.contains(c)) {
                let _ = tx.send((Change::Config, complete));
            }
            // `plugboard trust` renames the trust file into place: what it trusts may apply now.
            if watched_trust.as_ref().is_some_and(|t| paths.contains(t)) {
                let _ = tx.send((Change::Config, complete));
                let _ = tx.send((Change::Plugins, complete));
            }
        })?;
        for dir in watched_dirs.iter().filter(|d| d.is_dir()) {
            watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
            tracing::info!(dir = %dir.display(), "watching for plugin changes");
        }
        // The directory, not the file: editors replace a file by renaming a new one over it.
        if let Some(dir) = config_dir.as_deref().and_then(std::path::Path::parent).filter(|d| d.is_dir()) {
            watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
            tracing::info!(file = %config_file.display(), "watching for configuration changes");
        }
        if let Some(dir) = trust_dir.as_deref().and_then(std::path::Path::parent).filter(|d| d.is_dir()) {
            watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
            tracing::info!(dir = %dir.display(), "watching for workspace trust");
        }
        let app = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while let Some((first, mut complete)) = rx.recv().await {
                let (mut plugins, mut config) = (first == Change::Plugins, first == Change::Config);
                while let Ok(Some((change, done))) = tokio::time::timeout(if complete { SETTLE } else { DEBOUNCE }, rx.recv()).await {
                    plugins |= change == Change::Plugins;
                    config |= change == Change::Config;
                    complete = done;
                }
                let Some(app) = app.upgrade() else { return };
                // A configuration change retries failed plugins itself, so it goes first.
                // A rejection was logged and announced by the reload itself.
                if config {
                    let _ = app.reload_config().await;
                }
                if plugins && let Err(e) = app.host.reload(None).await {
                    tracing::warn!(error = %e, "reload after a file change failed");
                }
            }
        });
        Ok(WatchGuard { _watcher: watcher, task })
    }
}

/// What the watcher saw change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Plugins,
    Config,
}

/// Keeps the watch alive; watching stops when it is dropped.
pub struct WatchGuard {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `path` with its directory resolved (absolute, links followed), whether or not the file
/// itself exists; `None` when its directory does not.
fn resolved(path: &std::path::Path) -> Option<std::path::PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    Some(std::fs::canonicalize(dir).ok()?.join(path.file_name()?))
}
