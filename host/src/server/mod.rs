//! `plugboard serve`: the HTTP API. Sessions are driven over HTTP and followed live over
//! Server-Sent Events with replay from the durable event log.
//!
//! - [`settings`]: where it listens and its limits, from flags, environment and `[server]`;
//! - [`state`]: what handlers share, and readiness (plugins load after the port is open);
//! - [`error`]: the one error shape; [`extract`]: JSON bodies checked field by field;
//! - [`guard`]: the browser boundary (Host, Origin, content type, CORS);
//! - [`auth`]: the shared secret and browser sessions; [`observe`]: request ids, logs and
//!   request metrics;
//! - [`metrics`]: the Prometheus registry and the event observer that feeds it;
//! - [`sse`]: event streams (replay, then live, heartbeats, the reconnect signal);
//! - [`routes`]: the handlers, one module per resource; [`openapi`]: the document.

pub mod auth;
pub mod error;
pub mod extract;
pub mod guard;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod routes;
pub mod settings;
pub mod sse;
pub mod state;

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;

use crate::agent::permission::AskMode;
use crate::app::App;
use crate::runtime::HostOptions;
pub use settings::ServerSettings;
use state::AppState;

/// What `plugboard serve` starts from.
pub struct ServeOptions {
    /// How the plugins are found and configured.
    pub host: HostOptions,
    /// The server's settings.
    pub settings: ServerSettings,
}

/// The application: every route, with its layers, over `state`.
pub fn app(state: AppState) -> Router {
    let (router, api) = routes::router().split_for_parts();
    let api = Arc::new(api);
    let max_body = state.settings().max_body_bytes;
    let router = router
        .route("/openapi.json", axum::routing::get(move || openapi::document(api.clone())))
        .nest_service("/mcp", mcp_endpoint(&state))
        .fallback(routes::unknown_route)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_secret));
    // CORS answers preflights before the secret is asked for; the guard refuses forged
    // requests before either.
    let router = match guard::cors_layer(state.settings()) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::refuse_cross_site))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(observe::panic_response))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe::observe_request))
        .with_state(state)
}

/// `/mcp`: the tools over MCP's streamable HTTP, one [`crate::mcp::ToolServer`] per client
/// session, under `[mcp]` as it stands when the session starts.
fn mcp_endpoint(state: &AppState) -> crate::mcp::server::HttpEndpoint {
    let ready = state.clone();
    let connect = move || {
        let app = ready.app().ok_or_else(|| std::io::Error::other("plugboard is starting: its plugins are still loading (see /ready)"))?;
        crate::mcp::ToolServer::new(app.host().clone(), app.agents(), app.config().mcp.agent()).map_err(std::io::Error::other)
    };
    crate::mcp::server::http_service(connect, state.settings().max_body_bytes, state.shutdown_token())
}

/// Runs the server until SIGTERM or SIGINT: binds first (so `/healthz` answers at once),
/// then loads the plugins and opens the store in the background (`/ready` says when).
/// On a signal it stops accepting, ends the event streams, lets running activities reach
/// a safe point within the grace period (the rest are recorded as interrupted and resume
/// at the next start), flushes the store and returns.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let settings = options.settings;
    let listener = tokio::net::TcpListener::bind(settings.addr).await.with_context(|| format!("cannot listen on {}", settings.addr))?;
    let addr = listener.local_addr()?;
    let state = AppState::new(settings.clone());
    tracing::info!(%addr, auth = settings.shared_secret.is_some(), "listening");
    // A line for scripts that start the server on port 0 and need the port.
    println!("plugboard listening on http://{addr}");
    tokio::spawn(start(state.clone(), options.host));
    let stop = async {
        wait_for_signal().await;
        tracing::info!("shutting down: no new connections; event streams end");
    };
    serve_with(listener, state.clone(), stop).await.context("the server failed")?;
    if let Some(runtime) = state.runtime() {
        let stopped = runtime.shutdown(settings.shutdown_grace).await;
        if !stopped.is_empty() {
            tracing::warn!(sessions = %stopped.join(", "), "activities still running after the grace period were interrupted; they resume at the next start");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Serves `state` on `listener` until `stop` completes; then stops accepting, ends the
/// event streams and waits for the requests in progress. (The agent runtime is not shut
/// down here: see [`crate::agent::AgentRuntime::shutdown`].)
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shutdown = state.shutdown_token();
    let _own_api = crate::capability::network::serving(listener.local_addr()?.port());
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            stop.await;
            shutdown.cancel();
        })
        .await
}

/// Loads plugins and opens the store; makes the server ready, or records why it is not.
async fn start(state: AppState, host: HostOptions) {
    let started = std::time::Instant::now();
    let store = match crate::store::SessionStore::open_in(host.data_dir.as_deref()) {
        Ok(store) => store,
        Err(e) => return state.fail(format!("the session database cannot be opened: {e:#}")),
    };
    let app = match App::start(host).await {
        Ok(app) => app,
        Err(e) => return state.fail(format!("the plugins cannot be loaded: {e}")),
    };
    for failure in app.host().registry().failures() {
        tracing::warn!(source = %failure.source, reason = %failure.reason, "plugin not loaded");
    }
    let sessions = state.settings().sessions.clone();
    let runtime = match app.agent_runtime_with(store, AskMode::Prompt, &sessions) {
        Ok(runtime) => runtime,
        Err(e) => return state.fail(e.to_string()),
    };
    app.host().announce_loaded();
    if state.settings().watch {
        match app.watch() {
            Ok(guard) => state.keep_watch(guard),
            Err(e) => tracing::warn!(error = %e, "cannot watch the plugin directories; reload with POST /plugins/reload"),
        }
    }
    match runtime.recover().await {
        Ok(recovered) if !recovered.is_empty() => {
            tracing::info!(sessions = %recovered.join(", "), "recovered sessions a stopped process left")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot recover sessions"),
    }
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, plugins = runtime.host().registry().plugins().count(), "ready");
    state.set_ready(app, runtime);
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
