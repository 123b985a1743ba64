//! What every handler shares: the settings, the agent runtime once it is ready (or why it
//! is not), the metrics, and the shutdown signal.

use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use super::metrics::Metrics;
use super::settings::ServerSettings;
use crate::agent::AgentRuntime;
use crate::app::App;

/// The server's shared state (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    settings: ServerSettings,
    /// The configuration and the plugins, once ready.
    app: OnceLock<Arc<App>>,
    runtime: OnceLock<Arc<AgentRuntime>>,
    /// Why the runtime is not there: still loading, or failed.
    not_ready: Mutex<String>,
    metrics: Metrics,
    shutdown: CancellationToken,
    /// The plugin-directory watch, while the server runs.
    watch: Mutex<Option<crate::app::WatchGuard>>,
    /// Browser sessions (`POST /auth/login`).
    logins: super::auth::Logins,
}

impl AppState {
    /// A state that is not ready yet (plugins loading).
    pub fn new(settings: ServerSettings) -> Self {
        AppState(Arc::new(Shared {
            settings,
            app: OnceLock::new(),
            runtime: OnceLock::new(),
            not_ready: Mutex::new("plugins are loading".into()),
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            watch: Mutex::new(None),
            logins: super::auth::Logins::default(),
        }))
    }

    /// A state over an application and its agent runtime, ready (for tests and embedding).
    pub fn ready(settings: ServerSettings, app: Arc<App>, runtime: Arc<AgentRuntime>) -> Self {
        let state = AppState::new(settings);
        state.set_ready(app, runtime);
        state
    }

    /// The settings.
    pub fn settings(&self) -> &ServerSettings {
        &self.0.settings
    }

    /// The browser sessions.
    pub fn logins(&self) -> &super::auth::Logins {
        &self.0.logins
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The runtime, once ready.
    pub fn runtime(&self) -> Option<&Arc<AgentRuntime>> {
        self.0.runtime.get()
    }

    /// The application (configuration and plugins), once ready.
    pub fn app(&self) -> Option<&Arc<App>> {
        self.0.app.get()
    }

    /// Makes the server ready, and starts feeding the metrics from its event log.
    pub fn set_ready(&self, app: Arc<App>, runtime: Arc<AgentRuntime>) {
        let store = runtime.store().clone();
        let (loaded, failed) = (runtime.host().registry().plugins().count(), runtime.host().registry().failures().len());
        if self.0.app.set(app).is_err() {
            return;
        }
        if self.0.runtime.set(runtime).is_ok() {
            self.0.metrics.record_plugin_loads(loaded, failed);
            tokio::spawn(super::metrics::observe_events(store, self.0.metrics.clone(), self.0.shutdown.clone()));
        }
    }

    /// Keeps the plugin-directory watch alive while the server runs.
    pub fn keep_watch(&self, guard: crate::app::WatchGuard) {
        *self.0.watch.lock().expect("not poisoned") = Some(guard);
    }

    /// Records why the server cannot become ready; it keeps answering (with 503).
    pub fn fail(&self, reason: String) {
        tracing::error!(%reason, "not ready");
        *self.0.not_ready.lock().expect("not poisoned") = reason;
    }

    /// Why the server is not ready, or `None` when it is.
    pub async fn readiness(&self) -> Result<(), String> {
        if self.0.shutdown.is_cancelled() {
            return Err("shutting down".into());
        }
        let Some(runtime) = self.runtime() else { return Err(self.0.not_ready.lock().expect("not poisoned").clone()) };
        let workspace = runtime.host().workspace();
        std::fs::read_dir(workspace).map_err(|e| format!("the workspace {} is not accessible: {e}", workspace.display()))?;
        let path = runtime.store().path();
        if std::fs::metadata(path).map(|m| m.permissions().readonly()).unwrap_or(false) {
            return Err(format!("the session database {} is read-only", path.display()));
        }
        runtime.store().write(|_| Ok(())).await.map_err(|e| format!("the session database cannot commit: {e}"))?;
        Ok(())
    }

    /// Cancelled when the server shuts down (event streams end on it).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.0.shutdown.clone()
    }
}

/// The agent runtime, for handlers that need it: 503 until the server is ready.
pub struct Running(pub Arc<AgentRuntime>);

impl FromRequestParts<AppState> for Running {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.runtime().map(|runtime| Running(runtime.clone())).ok_or_else(|| state.not_ready_error())
    }
}

/// The application (the configuration and the plugins), for handlers that need it: 503
/// until the server is ready.
pub struct Configured(pub Arc<App>);

impl FromRequestParts<AppState> for Configured {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.app().map(|app| Configured(app.clone())).ok_or_else(|| state.not_ready_error())
    }
}

impl AppState {
    /// The 503 of a request that needs what is not ready yet, with the reason.
    fn not_ready_error(&self) -> ApiError {
        let reason = self.0.not_ready.lock().expect("not poisoned").clone();
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}"))
    }
}
