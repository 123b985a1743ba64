//! One live connection to an MCP server, on the official Rust SDK's client (`rmcp`): a
//! stdio server started as a confined command (the `process` capability's confinement,
//! with only the grants of its table), or a remote one over streamable HTTP. Every message
//! is bounded in size (a longer line or event is dropped, not buffered), and the server's
//! standard error is read as it comes, so a server that floods cannot grow the host's
//! memory or block on a full pipe.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use tokio::io::AsyncReadExt;

use super::config::{McpServerConfig, ResolvedServer, Transport};
use crate::capability::process::{CommandError, CommandRunner, ProcessPolicy, Spawned};
use crate::capability::{Limits, PolicyContext};

/// The most pages of a tool list read.
const MAX_PAGES: usize = 16;

/// Bytes of a server's standard error kept to explain its end.
const STDERR_TAIL: usize = 4 * 1024;

/// Why a connection could not be made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The table cannot work as written (a grant, a variable, the program): trying again
    /// changes nothing until the configuration or the environment does.
    #[error("{0}")]
    Config(String),
    /// The server did not start, or stopped answering: worth trying again later.
    #[error("{0}")]
    Failed(String),
}

/// What the SDK calls back: the server's tool list changed.
#[derive(Clone)]
pub(super) struct Client {
    changed: Arc<tokio::sync::Notify>,
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("plugboard", env!("CARGO_PKG_VERSION")))
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changed.notify_one();
    }
}

/// A connected server.
pub struct Connection {
    service: RunningService<RoleClient, Client>,
    /// The stdio server's process tree, killed when the connection is dropped.
    process: Mutex<Option<Spawned>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Told when the server's tool list changed.
    pub changed: Arc<tokio::sync::Notify>,
    /// Told when a call found the transport broken (a remote server that went away shows
    /// it only so).
    pub broken: tokio::sync::Notify,
}

impl Connection {
    /// Starts (stdio) or reaches (HTTP) the server and completes the MCP handshake within
    /// the table's start-up time.
    pub async fn open(name: &str, config: &McpServerConfig, ctx: &PolicyContext, limits: Limits) -> Result<Connection, ConnectError> {
        let resolved = config.resolve(name, ctx).map_err(ConnectError::Config)?;
        let changed = Arc::new(tokio::sync::Notify::new());
        let client = Client { changed: changed.clone() };
        let max_message = message_cap(limits);
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let connecting = async {
            match &resolved.transport {
                Transport::Stdio { command } => {
                    let mut spawned = spawn(name, command, config, &resolved, ctx, limits).await?;
                    let stdout = spawned.child.stdout.take().expect("stdout is piped");
                    let stdin = spawned.child.stdin.take().expect("stdin is piped");
                    let errors = spawned.child.stderr.take().expect("stderr is piped");
                    tokio::spawn(read_stderr(name.to_string(), errors, stderr.clone(), ctx.redactor.clone()));
                    let transport =
                        rmcp::transport::async_rw::AsyncRwTransport::new_client(stdout, stdin).with_max_line_length(max_message);
                    let service = client.serve(transport).await.map_err(|e| {
                        ConnectError::Failed(format!("the MCP handshake with `{}` failed: {e}{}", config.describe(), tail(&stderr)))
                    })?;
                    Ok((service, Some(spawned)))
                }
                Transport::Http { url } => {
                    use rmcp::transport::StreamableHttpClientTransport;
                    crate::capability::network::install_tls_provider();
                    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
                    let port =
                        url.port_u16().unwrap_or_else(|| crate::capability::network::default_port(url.scheme_str().unwrap_or("https")));
                    let host = url.host().unwrap_or_default();
                    if crate::capability::network::names_plugboard(host, port)
                        || crate::capability::network::resolves_to_plugboard(host, port).await
                    {
                        return Err(ConnectError::Config(format!(
                            "[mcp.{name}]: `url` {url} is refused: {}",
                            crate::capability::network::OWN_API
                        )));
                    }
                    let mut transport_config = StreamableHttpClientTransportConfig::with_uri(url.to_string())
                        .custom_headers(resolved.headers.iter().cloned().collect())
                        .max_json_response_size(max_message)
                        .max_sse_event_size(max_message);
                    // A server that restarted forgets its sessions: the SDK starts a new one.
                    transport_config.reinit_on_expired_session = true;
                    let service = client
                        .serve(StreamableHttpClientTransport::from_config(transport_config))
                        .await
                        .map_err(|e| ConnectError::Failed(format!("the MCP handshake with {url} failed: {e}")))?;
                    Ok((service, None))
                }
            }
        };
        let timeout = config.startup_timeout();
        let (service, process) = match tokio::time::timeout(timeout, connecting).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ConnectError::Failed(format!(
                    "the server did not complete the MCP handshake within {} ms (`startup_timeout_ms`){}",
                    timeout.as_millis(),
                    tail(&stderr)
                )));
            }
        };
        Ok(Connection { service, process: Mutex::new(process), stderr, changed, broken: tokio::sync::Notify::new() })
    }

    /// The server's tools, page after page up to [`MAX_PAGES`] or a few more tools than a
    /// source may offer: a server that pages on forever is listed in part.
    pub async fn list_tools(&self, timeout: Duration) -> Result<Vec<rmcp::model::Tool>, ConnectError> {
        let listing = async {
            let (mut tools, mut cursor) = (Vec::new(), None);
            for _ in 0..MAX_PAGES {
                let params = rmcp::model::PaginatedRequestParams::default().with_cursor(cursor.take());
                let page = self.service.peer().list_tools(Some(params)).await?;
                tools.extend(page.tools);
                match page.next_cursor {
                    Some(next) if tools.len() <= crate::runtime::tool::MAX_TOOLS => cursor = Some(next),
                    _ => break,
                }
            }
            Ok::<_, rmcp::ServiceError>(tools)
        };
        match tokio::time::timeout(timeout, listing).await {
            Ok(Ok(tools)) => Ok(tools),
            Ok(Err(e)) => Err(ConnectError::Failed(format!("listing its tools failed: {e}"))),
            Err(_) => Err(ConnectError::Failed(format!("listing its tools took more than {} ms", timeout.as_millis()))),
        }
    }

    /// Calls `tool`; `Ok(None)` when the time limit passed first (the server is told the
    /// request is cancelled).
    pub async fn call(
        &self,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
        timeout: Duration,
    ) -> Result<Option<CallToolResult>, String> {
        let request = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        match tokio::time::timeout(timeout, self.service.peer().call_tool_once(request)).await {
            Err(_) => Ok(None),
            Ok(Ok(CallToolResponse::Complete(result))) => Ok(Some(result)),
            Ok(Ok(_)) => Err("the server asked for more input or made a task of the call, which Plugboard does not support".into()),
            Ok(Err(e)) => {
                if matches!(e, rmcp::ServiceError::TransportSend(_) | rmcp::ServiceError::TransportClosed) {
                    self.broken.notify_one();
                }
                Err(e.to_string())
            }
        }
    }

    /// Whether the connection ended (the process exited, the stream closed).
    pub fn is_closed(&self) -> bool {
        self.service.is_closed() || self.service.peer().is_transport_closed()
    }

    /// Ends the connection: the stdio server's whole process tree is killed.
    pub fn shutdown(&self) {
        self.service.cancellation_token().cancel();
        if let Ok(mut process) = self.process.lock() {
            process.take();
        }
    }

    /// Why it ended, as far as can be told: the process's exit (waited for briefly) and its
    /// last standard error.
    pub async fn end_reason(&self) -> String {
        let process = self.process.lock().ok().and_then(|mut p| p.take());
        let status = match process {
            Some(mut spawned) => tokio::time::timeout(Duration::from_millis(500), spawned.child.wait()).await.ok().and_then(Result::ok),
            None => None,
        };
        let how = match status {
            Some(status) => format!("the server exited ({status})"),
            None => "the connection closed".to_string(),
        };
        format!("{how}{}", tail(&self.stderr))
    }
}

/// Starts a stdio server: its program and arguments, in the workspace (or `cwd`), with its
/// environment and `PATH` only, confined to its grants.
async fn spawn(
    name: &str,
    command: &str,
    config: &McpServerConfig,
    resolved: &ResolvedServer,
    ctx: &PolicyContext,
    limits: Limits,
) -> Result<Spawned, ConnectError> {
    let mut env = resolved.env.clone();
    // The program is looked up on the server's own `PATH`: the table's, else Plugboard's.
    let path = match env.iter().find(|(k, _)| k == "PATH") {
        Some((_, path)) => path.clone(),
        None => {
            let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
            env.push(("PATH".into(), path.clone()));
            path
        }
    };
    env.retain(|(k, _)| k != super::DEPTH_VARIABLE);
    env.push((super::DEPTH_VARIABLE.into(), (super::depth() + 1).to_string()));
    let runner = CommandRunner {
        policy: ProcessPolicy::default(),
        workspace: ctx.workspace.clone(),
        grants: resolved.filesystem.clone(),
        system_paths: ctx.sandbox.system_paths.clone(),
        confinement: ctx.confinement.clone(),
        unconfined: ctx.sandbox.unconfined_commands,
        env,
        network: resolved.network.clone(),
        max_output_bytes: limits.max_output_bytes as usize,
        max_timeout: limits.timeout(),
    };
    let refused = |e: CommandError| match e {
        CommandError::Denied(denial) => ConnectError::Config(format!("[mcp.{name}]: {}", denial.reason)),
        CommandError::Failed(message) => ConnectError::Config(format!("[mcp.{name}]: {message}")),
    };
    let cwd = runner.working_directory(config.cwd.as_deref().unwrap_or("")).map_err(refused)?;
    let Some(program) = super::config::find_program(command, &path) else {
        return Err(ConnectError::Config(format!("[mcp.{name}]: `{command}` is not found on PATH ({path})")));
    };
    let mut process = tokio::process::Command::new(program);
    process.args(&config.args).current_dir(cwd).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    runner.spawn(process, &config.describe()).await.map_err(|e| match e {
        CommandError::Failed(message) => ConnectError::Failed(message),
        denied => refused(denied),
    })
}

/// The largest message a server may send: a call's output, escaped, with room for the
/// envelope; at least 1 MiB (a tool list can be long).
fn message_cap(limits: Limits) -> usize {
    (limits.max_output_bytes as usize).saturating_mul(4).saturating_add(64 * 1024).max(1 << 20)
}

/// Reads a server's standard error to its end: each line to the log (at debug, secrets
/// masked), the last few kilobytes kept to explain a crash.
async fn read_stderr(name: String, mut stderr: tokio::process::ChildStderr, tail: Arc<Mutex<Vec<u8>>>, redactor: crate::secrets::Redactor) {
    let mut buffer = vec![0u8; 8 * 1024];
    while let Ok(n) = stderr.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&buffer[..n]);
        let text = redactor.redact(&text);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::debug!(mcp_server = %name, "{}", line.chars().take(512).collect::<String>());
        }
        if let Ok(mut kept) = tail.lock() {
            kept.extend_from_slice(text.as_bytes());
            let excess = kept.len().saturating_sub(STDERR_TAIL);
            kept.drain(..excess);
        }
    }
}

/// The kept standard error, as a clause to append to a reason.
fn tail(stderr: &Mutex<Vec<u8>>) -> String {
    let kept = stderr.lock().map(|k| String::from_utf8_lossy(&k).trim().to_string()).unwrap_or_default();
    if kept.is_empty() { String::new() } else { format!("; its last standard error: {kept}") }
}
