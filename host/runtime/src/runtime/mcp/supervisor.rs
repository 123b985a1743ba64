//! The lifecycle of the MCP servers: one task per enabled `[mcp.<name>]` table that
//! connects, puts the server's tools in the registry, follows its `list_changed`, and when
//! the connection ends takes the tools out, says why (`mcp.server.crashed`) and connects
//! again after a backoff (1 s, doubling to 60 s; back to 1 s after a minute up). A table
//! that cannot work as written (`mcp.server.failed`, `restart_in_ms: null`) waits for the
//! configuration to change. A new configuration stops the servers whose table is gone or
//! changed and starts the new ones; the others keep running untouched.
//!
//! Each task has a number: a task that was stopped while it connected cannot put its tools
//! in afterwards, since the registry takes a server's tools only from its current task.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::McpTools;
use super::config::McpServerConfig;
use super::connection::{ConnectError, Connection};
use crate::runtime::PluginHost;

/// The first wait before a restart, doubled after each until [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A server up this long restarts after [`FIRST_BACKOFF`] again.
const STABLE: Duration = Duration::from_secs(60);
/// How often a connection is checked for its end.
const POLL: Duration = Duration::from_millis(250);
/// The least time between two listings a server asks for (`tools/list_changed`): the
/// notifications of a server that sends them on and on are taken together.
const RELIST_EVERY: Duration = Duration::from_secs(1);

/// Where a server is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum McpServerState {
    /// Connecting and listing its tools.
    Starting,
    /// Connected; its tools are in the registry.
    Running,
    /// It ended or did not start; it is tried again after a backoff.
    Restarting,
    /// Its table cannot work as written; it waits for a configuration change.
    Failed,
    /// `enabled = false`.
    Disabled,
}

/// What `plugin list` and `GET /plugins` say of a server.
#[derive(Debug, Clone, Serialize)]
pub struct McpServerStatus {
    /// Its table's name.
    pub name: String,
    /// `stdio` or `http`.
    pub transport: &'static str,
    /// Its command line or URL.
    pub target: String,
    /// Where it is.
    pub state: McpServerState,
    /// Its tools in the registry.
    pub tools: Vec<String>,
    /// Tools it lists that are not offered, and why.
    pub skipped: Vec<String>,
    /// How many times it was started again.
    pub restarts: u32,
    /// Why it last ended or failed.
    pub error: Option<String>,
}

/// One running task.
struct Supervised {
    id: u64,
    config: McpServerConfig,
    stop: CancellationToken,
}

/// The servers' tasks and their status.
pub struct McpSources {
    tasks: Mutex<BTreeMap<String, Supervised>>,
    status: tokio::sync::watch::Sender<BTreeMap<String, McpServerStatus>>,
    next_id: AtomicU64,
}

impl Default for McpSources {
    fn default() -> Self {
        McpSources { tasks: Mutex::default(), status: tokio::sync::watch::Sender::new(BTreeMap::new()), next_id: AtomicU64::new(1) }
    }
}

impl McpSources {
    /// Every configured server's status, by name.
    pub fn status(&self) -> Vec<McpServerStatus> {
        self.status.borrow().values().cloned().collect()
    }

    /// Waits until no server is starting (each is running, restarting, failed or off), at
    /// most `timeout`; for commands that list tools once.
    pub async fn settled(&self, timeout: Duration) {
        let mut status = self.status.subscribe();
        let starting = |s: &BTreeMap<String, McpServerStatus>| s.values().any(|s| s.state == McpServerState::Starting);
        let _ = tokio::time::timeout(timeout, status.wait_for(|s| !starting(s))).await;
    }

    /// Whether task `id` is the one of server `name`.
    fn is_current(&self, name: &str, id: u64) -> bool {
        self.tasks.lock().expect("not poisoned").get(name).is_some_and(|t| t.id == id)
    }

    /// The servers `servers` keeps as they are (same table, still enabled, running now).
    pub(crate) fn unchanged(&self, servers: &BTreeMap<String, McpServerConfig>) -> Vec<String> {
        let tasks = self.tasks.lock().expect("not poisoned");
        tasks.iter().filter(|(name, task)| servers.get(*name) == Some(&task.config)).map(|(name, _)| name.clone()).collect()
    }

    /// Puts `servers` in force: stops the tasks whose table is gone, changed or disabled,
    /// and starts tasks for new or changed tables. The names stopped are returned.
    pub(crate) fn apply(&self, host: &Weak<PluginHost>, servers: &BTreeMap<String, McpServerConfig>) -> Vec<String> {
        let mut tasks = self.tasks.lock().expect("not poisoned");
        let mut stopped = Vec::new();
        tasks.retain(|name, task| {
            let keep = servers.get(name) == Some(&task.config);
            if !keep {
                task.stop.cancel();
                stopped.push(name.clone());
            }
            keep
        });
        self.status.send_modify(|status| status.retain(|name, _| servers.contains_key(name)));
        for (name, config) in servers {
            if tasks.contains_key(name) {
                continue;
            }
            let status = McpServerStatus {
                name: name.clone(),
                transport: if config.url.is_some() { "http" } else { "stdio" },
                target: config.describe(),
                state: if config.enabled { McpServerState::Starting } else { McpServerState::Disabled },
                tools: Vec::new(),
                skipped: Vec::new(),
                restarts: 0,
                error: None,
            };
            self.status.send_modify(|all| {
                all.insert(name.clone(), status);
            });
            if !config.enabled {
                continue;
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let stop = CancellationToken::new();
            tasks.insert(name.clone(), Supervised { id, config: config.clone(), stop: stop.clone() });
            let task = Task { host: host.clone(), name: name.clone(), id, config: config.clone(), stop };
            tokio::spawn(task.run());
        }
        stopped
    }

    /// Stops every task (the host is going away).
    pub(crate) fn stop_all(&self) {
        for task in self.tasks.lock().expect("not poisoned").values() {
            task.stop.cancel();
        }
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut McpServerStatus)) {
        self.status.send_modify(|all| {
            if let Some(status) = all.get_mut(name) {
                change(status);
            }
        });
    }
}

impl Drop for McpSources {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// How a connection ended.
enum End {
    /// Told to stop.
    Stopped,
    /// It ended by itself, or could not be made; `up`: it had come up (so it crashed).
    Ended { error: ConnectError, up: bool },
}

/// One server's task.
struct Task {
    host: Weak<PluginHost>,
    name: String,
    id: u64,
    config: McpServerConfig,
    stop: CancellationToken,
}

impl Task {
    async fn run(self) {
        let mut backoff = FIRST_BACKOFF;
        let mut restarts = 0u32;
        loop {
            let started = Instant::now();
            let end = self.connect_and_serve(restarts).await;
            let Some(host) = self.host.upgrade() else { return };
            let (error, up) = match end {
                End::Stopped => return,
                End::Ended { error, up } => (error, up),
            };
            host.put_mcp(&self.name, self.id, None).await;
            if started.elapsed() >= STABLE {
                backoff = FIRST_BACKOFF;
            }
            let reason = error.to_string();
            tracing::warn!(mcp_server = %self.name, %reason, "MCP server not available");
            match error {
                ConnectError::Config(_) => {
                    host.mcp()
                        .update(&self.name, |s| (s.state, s.error, s.tools) = (McpServerState::Failed, Some(reason.clone()), Vec::new()));
                    host.emit(vec![(
                        "mcp.server.failed",
                        json!({ "name": self.name, "reason": reason, "restart_in_ms": null, "restarts": restarts }),
                    )]);
                    drop(host);
                    self.stop.cancelled().await;
                    return;
                }
                ConnectError::Failed(_) => {
                    host.mcp().update(&self.name, |s| {
                        (s.state, s.error, s.tools) = (McpServerState::Restarting, Some(reason.clone()), Vec::new())
                    });
                    let kind = if up { "mcp.server.crashed" } else { "mcp.server.failed" };
                    host.emit(vec![(
                        kind,
                        json!({ "name": self.name, "reason": reason, "restart_in_ms": backoff.as_millis() as u64, "restarts": restarts }),
                    )]);
                }
            }
            drop(host);
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            restarts += 1;
        }
    }

    /// Connects, puts the tools in, and follows the connection until it ends or the task
    /// is told to stop.
    async fn connect_and_serve(&self, restarts: u32) -> End {
        let Some(host) = self.host.upgrade() else { return End::Stopped };
        host.mcp().update(&self.name, |s| s.state = McpServerState::Starting);
        if super::depth() >= super::MAX_DEPTH {
            return End::Ended {
                error: ConnectError::Config(format!(
                    "[mcp.{}]: this Plugboard was started as an MCP server by {} others, one inside the other; it starts no more servers (a configuration that serves Plugboard to itself would not end)",
                    self.name,
                    super::depth()
                )),
                up: false,
            };
        }
        let (ctx, limits) = (host.policy_ctx(), self.config.limits(host.config().limits));
        drop(host);
        let opened = tokio::select! {
            _ = self.stop.cancelled() => return End::Stopped,
            opened = Connection::open(&self.name, &self.config, &ctx, limits) => opened,
        };
        let connection = match opened {
            Ok(connection) => Arc::new(connection),
            Err(error) => return End::Ended { error, up: false },
        };
        let end = self.serve(&connection, restarts).await;
        // A server that ended is made sure to be gone. One told to stop (its table changed or
        // went) ends when the last call in flight on it lets go of the connection.
        if !matches!(end, End::Stopped) {
            connection.shutdown();
        }
        end
    }

    async fn serve(&self, connection: &Arc<Connection>, restarts: u32) -> End {
        let mut first = true;
        loop {
            let listed = tokio::select! {
                _ = self.stop.cancelled() => return End::Stopped,
                listed = connection.list_tools(self.config.startup_timeout()) => listed,
            };
            let listed = match listed {
                Ok(listed) => listed,
                Err(error) => return End::Ended { error, up: !first },
            };
            let Some(host) = self.host.upgrade() else { return End::Stopped };
            let (tools, mut skipped) = McpTools::new(&self.name, self.config.clone(), listed, connection.clone());
            let mut offered: Vec<String> = tools.tools.iter().map(|t| t.name.clone()).collect();
            let Some(clashes) = host.put_mcp(&self.name, self.id, Some(Arc::new(tools))).await else { return End::Stopped };
            offered.retain(|name| !clashes.iter().any(|(taken, _)| taken == name));
            skipped.extend(clashes.into_iter().map(|(_, why)| why));
            for why in &skipped {
                tracing::warn!(mcp_server = %self.name, "a tool of the server is not offered: {why}");
            }
            host.mcp().update(&self.name, |s| {
                (s.state, s.tools, s.skipped, s.restarts, s.error) =
                    (McpServerState::Running, offered.clone(), skipped.clone(), restarts, None)
            });
            if first {
                tracing::info!(mcp_server = %self.name, tools = offered.len(), "MCP server connected");
                host.emit(vec![(
                    "mcp.server.started",
                    json!({ "name": self.name, "transport": if self.config.url.is_some() { "http" } else { "stdio" }, "tools": offered, "restarts": restarts }),
                )]);
                first = false;
            }
            drop(host);
            if !first {
                tokio::select! {
                    _ = self.stop.cancelled() => return End::Stopped,
                    _ = tokio::time::sleep(RELIST_EVERY) => {}
                }
            }
            loop {
                tokio::select! {
                    _ = self.stop.cancelled() => return End::Stopped,
                    _ = connection.changed.notified() => break,
                    _ = connection.broken.notified() => {
                        return End::Ended { error: ConnectError::Failed(format!("a call found the connection broken; {}", connection.end_reason().await)), up: true };
                    }
                    _ = tokio::time::sleep(POLL) => {
                        if connection.is_closed() {
                            return End::Ended { error: ConnectError::Failed(connection.end_reason().await), up: true };
                        }
                    }
                }
            }
        }
    }
}

impl PluginHost {
    /// Starts the MCP servers of the configuration in force, each in a task of its own;
    /// nothing waits for them. Called once the host is shared (and, for the event log,
    /// once its events are attached).
    pub fn start_mcp(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let _ = self.this.set(weak.clone());
        self.mcp.apply(&weak, &self.config().mcp_servers);
    }

    /// The MCP servers' tasks and status.
    pub fn mcp(&self) -> &McpSources {
        &self.mcp
    }

    /// Puts server `name`'s tools in force (`None`: takes them out), if task `id` is still
    /// its task; `None` when it is not. Returns the tools left out for a name clash.
    async fn put_mcp(&self, name: &str, id: u64, tools: Option<Arc<McpTools>>) -> Option<Vec<(String, String)>> {
        let _one_at_a_time = self.reloading.lock().await;
        if !self.mcp.is_current(name, id) {
            return None;
        }
        let old = self.registry();
        let current = old.mcp.get(name);
        let unchanged = match (&tools, current) {
            (None, None) => true,
            (Some(new), Some(current)) => new.tools == current.tools && Arc::ptr_eq(new.connection(), current.connection()),
            _ => false,
        };
        if unchanged {
            // The same list again: the registry and its followers stay as they are.
            return Some(tools.iter().flat_map(|t| &t.tools).filter_map(|t| old.taken(&t.name, name)).collect());
        }
        let mut next = (*old).clone();
        let skipped = next.set_mcp(name, tools);
        let events = next.changes(&old);
        self.install(next);
        self.emit(events);
        Some(skipped)
    }
}
