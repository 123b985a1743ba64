//! Prometheus metrics (`GET /metrics`): requests by route and status, sessions by status,
//! tool calls by tool and outcome with durations, provider turns and tokens by model,
//! plugin loads and reloads, and event-stream subscribers.
//!
//! Requests are counted by [`super::observe`]; sessions are counted from the store when
//! scraped; tool calls, turns and tokens come from the event log ([`observe_events`]), so
//! the agent loop knows nothing of metrics.

use std::time::Duration;

use futures::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::store::SessionStore;
use crate::store::events::Event;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolNameLabels {
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

type Timings<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The server's metrics (cheap to clone: every handle shares the registry's series).
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Timings<RouteLabels>,
    sessions: Family<StatusLabels, Gauge>,
    tool_calls: Family<ToolLabels, Counter>,
    tool_seconds: Timings<ToolNameLabels>,
    provider_turns: Family<ModelLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    plugin_loads: Family<OutcomeLabels, Counter>,
    plugin_reloads: Family<OutcomeLabels, Counter>,
    subscribers: Family<StreamLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every series of the server.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("plugboard_http_requests", "HTTP requests by route, method and status", requests.clone());
        let request_seconds = Timings::<RouteLabels>::new_with_constructor(seconds as fn() -> Histogram);
        registry.register("plugboard_http_request_duration_seconds", "HTTP request durations by route", request_seconds.clone());
        let sessions = Family::<StatusLabels, Gauge>::default();
        registry.register("plugboard_sessions", "Sessions by status", sessions.clone());
        let tool_calls = Family::<ToolLabels, Counter>::default();
        registry.register("plugboard_tool_calls", "Tool calls of the agent loop by tool and outcome", tool_calls.clone());
        let tool_seconds = Timings::<ToolNameLabels>::new_with_constructor(seconds as fn() -> Histogram);
        registry.register("plugboard_tool_call_duration_seconds", "Tool call durations by tool", tool_seconds.clone());
        let provider_turns = Family::<ModelLabels, Counter>::default();
        registry.register("plugboard_provider_turns", "Provider turns by model", provider_turns.clone());
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register("plugboard_tokens", "Tokens by model and kind (input, output, cache_read, cache_write)", tokens.clone());
        let plugin_loads = Family::<OutcomeLabels, Counter>::default();
        registry.register("plugboard_plugin_loads", "Plugin loads by outcome (loaded, failed)", plugin_loads.clone());
        let plugin_reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register("plugboard_plugin_reloads", "Plugin reloads by outcome (reloaded, failed)", plugin_reloads.clone());
        let subscribers = Family::<StreamLabels, Gauge>::default();
        registry.register(
            "plugboard_sse_subscribers",
            "Open event streams (events: the server's; session: one session's)",
            subscribers.clone(),
        );
        Metrics {
            registry: std::sync::Arc::new(registry),
            requests,
            request_seconds,
            sessions,
            tool_calls,
            tool_seconds,
            provider_turns,
            tokens,
            plugin_loads,
            plugin_reloads,
            subscribers,
        }
    }

    /// Counts a finished request.
    pub fn record_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests.get_or_create(&RequestLabels { route: route.into(), method: method.into(), status }).inc();
        self.request_seconds.get_or_create(&RouteLabels { route: route.into() }).observe(elapsed.as_secs_f64());
    }

    /// Counts the plugins of a load.
    pub fn record_plugin_loads(&self, loaded: usize, failed: usize) {
        self.plugin_loads.get_or_create(&OutcomeLabels { outcome: "loaded".into() }).inc_by(loaded as u64);
        self.plugin_loads.get_or_create(&OutcomeLabels { outcome: "failed".into() }).inc_by(failed as u64);
    }

    /// Counts a plugin reload.
    pub fn record_plugin_reload(&self, succeeded: bool) {
        let outcome = if succeeded { "reloaded" } else { "failed" };
        self.plugin_reloads.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
    }

    /// An open event stream, counted until the guard is dropped.
    pub fn subscriber(&self, stream: &str) -> SubscriberGuard {
        let gauge = self.subscribers.get_or_create(&StreamLabels { stream: stream.into() }).clone();
        gauge.inc();
        SubscriberGuard(gauge)
    }

    /// Counts what an event of the log says (tool calls, provider turns, tokens).
    pub fn observe(&self, event: &Event) {
        let data = &event.data;
        match event.kind.as_str() {
            "tool.state" => {
                // Only the state, tool and timing are read: the part's output is not copied.
                let part = &data["data"];
                let state = part["state"].as_str().and_then(crate::store::model::ToolState::parse);
                let Some(state) = state.filter(|s| s.is_final()) else { return };
                let tool = part["tool"].as_str().unwrap_or("unknown").to_string();
                self.tool_calls.get_or_create(&ToolLabels { tool: tool.clone(), outcome: state.to_string() }).inc();
                if let (Some(start), Some(end)) = (part["time"]["start"].as_i64(), part["time"]["end"].as_i64()) {
                    let seconds = (end - start).max(0) as f64 / 1000.0;
                    self.tool_seconds.get_or_create(&ToolNameLabels { tool }).observe(seconds);
                }
            }
            "message.created" if data["role"] == "assistant" => {
                let model = data["model"].as_str().unwrap_or("unknown").to_string();
                self.provider_turns.get_or_create(&ModelLabels { model }).inc();
            }
            "plugin.reloaded" => self.record_plugin_reload(true),
            "plugin.failed" => self.record_plugin_reload(false),
            "usage" => {
                let model = data["model"].as_str().unwrap_or("unknown");
                for kind in ["input", "output", "cache_read", "cache_write"] {
                    let n = data["tokens"][kind].as_u64().unwrap_or(0);
                    if n > 0 {
                        self.tokens.get_or_create(&TokenLabels { model: model.into(), kind: kind.into() }).inc_by(n);
                    }
                }
            }
            _ => {}
        }
    }

    /// The text exposition, with sessions by status counted now from `store`.
    pub async fn render(&self, store: Option<&SessionStore>) -> Result<String, String> {
        if let Some(store) = store {
            let counts = store.count_by_status().await.map_err(|e| e.to_string())?;
            self.sessions.clear();
            for status in crate::store::model::SessionStatus::ALL {
                self.sessions.get_or_create(&StatusLabels { status: status.to_string() }).set(0);
            }
            for (status, n) in counts {
                self.sessions.get_or_create(&StatusLabels { status: status.to_string() }).set(n as i64);
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).map_err(|e| e.to_string())?;
        Ok(text)
    }
}

/// Keeps an event stream counted while it lives.
pub struct SubscriberGuard(Gauge);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Feeds the metrics from the event log, from now on, until `stop`. When it falls behind
/// the live bus, it reads what it missed from the store, so no event is counted twice or
/// missed.
pub async fn observe_events(store: SessionStore, metrics: Metrics, stop: CancellationToken) {
    let last = match store.last_seq().await {
        Ok(seq) => seq,
        Err(e) => {
            tracing::warn!(error = %e, "metrics from events are off: cannot read the event log");
            return;
        }
    };
    let events = store.tail(Some(last));
    futures::pin_mut!(events);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            event = events.next() => match event {
                Some(event) => metrics.observe(&event),
                None => return,
            },
        }
    }
}
