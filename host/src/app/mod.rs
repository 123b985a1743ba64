//! The application layer: the configuration file and the layers it configures. [`App`]
//! reads `plugboard.toml` (applying the workspace's copy only when the operator trusts it),
//! hands each layer its own part (the plugin runtime its [`RuntimeConfig`], the agent
//! runtime its [`Agents`]), and on a change reads the whole file again, checks every part
//! against its layer before any layer changes ([`reload`]), and watches the files that
//! carry policy ([`watch`]). The CLI and the server start from here; nothing below this
//! layer reads the file.
//!
//! [`RuntimeConfig`]: crate::runtime::config::RuntimeConfig

pub mod reload;
pub mod watch;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch as feed;

use crate::agent::permission::AskMode;
use crate::agent::{AgentError, AgentRuntime, Agents, AgentsFeed, SessionSettings};
use crate::config::{CONFIG_FILE_NAME, Config, ConfigError, ConfigOrigin};
use crate::runtime::{HostOptions, PluginHost};
use crate::store::SessionStore;
use crate::trust::UntrustedFile;
pub use reload::{ConfigChange, ConfigRejected};
pub use watch::WatchGuard;

/// Why Plugboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration file cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The plugin runtime could not start.
    #[error(transparent)]
    Host(#[from] crate::runtime::StartError),
}

/// The configuration in force and the plugin runtime it configures.
pub struct App {
    host: Arc<PluginHost>,
    /// The file a reload reads: the one named with `--config`, or the workspace's.
    file: PathBuf,
    /// Whether the operator named the file, or it is the workspace's.
    origin: ConfigOrigin,
    /// The whole configuration in force; replaced whole by a reload.
    config: RwLock<Arc<Config>>,
    /// The agents in force, for every agent runtime made from this application.
    agents: feed::Sender<Arc<Agents>>,
    /// The workspace's configuration file, when its content now is not trusted (so the
    /// configuration in force is an older one, or the defaults).
    untrusted_config: Mutex<Option<UntrustedFile>>,
    /// The text of the configuration file last rejected (`None`: it could not be read),
    /// and why, so that the same rejection is not announced twice.
    rejected: Mutex<Option<(Option<String>, ConfigRejected)>>,
    /// One configuration reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl App {
    /// Reads the configuration (`options.config_file`, else the workspace's file when it is
    /// trusted, else the defaults), checks its agents, and starts the plugin runtime with
    /// its part.
    pub async fn start(options: HostOptions) -> Result<Arc<App>, StartError> {
        let workspace = crate::runtime::workspace_dir(options.workspace.as_deref())?;
        let trust = crate::trust::WorkspaceTrust::new(&workspace, options.data_dir.as_deref());
        let loaded = Config::load(options.config_file.as_deref(), &trust)?;
        if let Some(untrusted) = &loaded.untrusted {
            tracing::warn!(path = %untrusted.path.display(), review = %untrusted.review, "the workspace's configuration is not trusted, so it is not applied; the defaults are in force");
        }
        let file = loaded.path.clone().unwrap_or_else(|| workspace.join(CONFIG_FILE_NAME));
        let agents = loaded
            .config
            .resolve_agents()
            .map_err(|message| ConfigError::Invalid { path: file.clone(), message: format!("agents: {message}") })?;
        let origin = if options.config_file.is_some() { ConfigOrigin::Operator } else { ConfigOrigin::Workspace };
        let host = Arc::new(PluginHost::start(options, loaded.config.runtime()).await?);
        host.start_mcp();
        Ok(Arc::new(App {
            host,
            file,
            origin,
            config: RwLock::new(Arc::new(loaded.config)),
            agents: feed::channel(Arc::new(agents)).0,
            untrusted_config: Mutex::new(loaded.untrusted),
            rejected: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
        }))
    }

    /// The plugin runtime.
    pub fn host(&self) -> &Arc<PluginHost> {
        &self.host
    }

    /// The whole configuration in force now (a reload replaces it; what a caller holds
    /// stays).
    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("not poisoned").clone()
    }

    /// The configuration file a reload reads: the one given at start, else the
    /// workspace's `plugboard.toml`.
    pub fn config_file(&self) -> &std::path::Path {
        &self.file
    }

    /// The agents in force, now and after each reload.
    pub fn agents(&self) -> AgentsFeed {
        self.agents.subscribe()
    }

    /// An agent runtime over this application's plugins and agents, with the session
    /// limits of `[sessions]`.
    pub fn agent_runtime(&self, store: SessionStore, mode: AskMode) -> Result<Arc<AgentRuntime>, AgentError> {
        self.agent_runtime_with(store, mode, &self.config().sessions)
    }

    /// [`Self::agent_runtime`] with session limits of the caller's choosing (e.g. from the
    /// server's flags and environment).
    pub fn agent_runtime_with(
        &self,
        store: SessionStore,
        mode: AskMode,
        sessions: &SessionSettings,
    ) -> Result<Arc<AgentRuntime>, AgentError> {
        AgentRuntime::new(self.host.clone(), self.agents(), sessions, store, mode)
    }

    /// The workspace files that are there but not applied, because their content is not
    /// the one the operator trusted: the configuration file, then plugins.
    pub fn untrusted(&self) -> Vec<UntrustedFile> {
        let config = self.untrusted_config.lock().expect("not poisoned").clone();
        config.into_iter().chain(self.host.registry().untrusted().iter().cloned()).collect()
    }
}
