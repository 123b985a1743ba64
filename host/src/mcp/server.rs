//! Plugboard's tools as an MCP server. A [`ToolServer`] is one client connection's view of
//! the host: the tools loaded now, each call judged by one agent's permission rules and
//! run like a direct call (`PluginHost::call_tool`: the plugin's grants and limits).
//!
//! - `tools/list`: every loaded tool except those the rules deny outright (they are not
//!   offered to a model either).
//! - `tools/call`: `deny` answers a tool error naming the rules; `ask` asks the client by
//!   elicitation when it declared the capability (once per call: accept runs it, anything
//!   else refuses it), and otherwise refuses, saying which rule to add; `allow` runs it.
//!   Output is text content, plus `structuredContent` when the tool returns a JSON object as
//!   metadata; a failure is a tool error (`isError`) with the host's explanation, including
//!   the grant that would allow the call. An unknown tool is a protocol error.
//! - Each registry put in force (a reload, a reconfiguration) sends
//!   `notifications/tools/list_changed`.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Map, Value};

use crate::agent::AgentsFeed;
use crate::agent::permission::{self, Action, Rule};
use crate::runtime::{CallContext, PluginHost, ToolOutput};

/// The protocol versions served: those of the `initialize` handshake, up to 2025-11-25.
/// 2026-07-28 (stateless requests, `server/discover`, `subscriptions/listen`) is not served
/// yet: its probe is refused with the versions served, and the client falls back to
/// `initialize`.
const PROTOCOL_VERSIONS: &[ProtocolVersion] =
    &[ProtocolVersion::V_2024_11_05, ProtocolVersion::V_2025_03_26, ProtocolVersion::V_2025_06_18, ProtocolVersion::V_2025_11_25];

/// How long a client has to answer a permission question.
const ASK_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a connection's follower of the registry checks that its client is still there.
const FOLLOW_CHECK: Duration = Duration::from_secs(15);

/// Why the tools cannot be served over MCP.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// `[mcp] agent` names no agent.
    #[error("[mcp] agent `{agent}` is not an agent; the agents are {known} (define it under [agents.{agent}])")]
    UnknownAgent {
        /// The name given.
        agent: String,
        /// The agents there are.
        known: String,
    },
    /// The connection with the client failed.
    #[error("the MCP connection failed: {0}")]
    Connection(String),
}

/// One MCP client's view of the tools.
#[derive(Clone)]
pub struct ToolServer {
    host: Arc<PluginHost>,
    agents: AgentsFeed,
    agent: String,
}

/// The answer asked of the client for a call the rules ask about.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct Approval {
    /// Run this one call.
    allow: bool,
}

rmcp::elicit_safe!(Approval);

impl ToolServer {
    /// The tools of `host`, judged by the rules of `agent` as `agents` has them now.
    pub fn new(host: Arc<PluginHost>, agents: AgentsFeed, agent: &str) -> Result<Self, McpError> {
        let known: Vec<String> = agents.borrow().profiles.keys().cloned().collect();
        if !known.iter().any(|k| k == agent) {
            return Err(McpError::UnknownAgent { agent: agent.to_string(), known: known.join(", ") });
        }
        Ok(ToolServer { host, agents, agent: agent.to_string() })
    }

    /// The agent's rules now (none when a reload removed the agent: then every call asks).
    fn rules(&self) -> Vec<Rule> {
        self.agents.borrow().profiles.get(&self.agent).map(|a| a.rules.clone()).unwrap_or_default()
    }

    /// The tools offered: every loaded tool the rules do not deny outright.
    fn tools(&self) -> Vec<Tool> {
        let rules = self.rules();
        let registry = self.host.registry();
        registry
            .tools()
            .filter(|(definition, _)| !permission::denied_outright(&rules, &definition.name))
            .map(|(definition, _)| {
                let schema = match &definition.parameters {
                    Value::Object(schema) => schema.clone(),
                    _ => Map::from_iter([("type".to_string(), Value::from("object"))]),
                };
                Tool::new(definition.name.clone(), definition.description.clone(), Arc::new(schema))
            })
            .collect()
    }

    /// Whether the rules let the call run: `Err` holds the refusal the client is told.
    async fn permit(&self, tool: &str, arguments: &Value, peer: &Peer<RoleServer>) -> Result<(), String> {
        let subject = permission::main_argument(tool, arguments);
        let on = if subject.is_empty() { String::new() } else { format!(" on `{subject}`") };
        match permission::evaluate(&self.rules(), tool, &subject) {
            Action::Allow => Ok(()),
            Action::Deny => Err(format!("refused by the permission rules of agent `{}`: `{tool}`{on} is denied", self.agent)),
            Action::Ask => {
                let question = format!("Allow `{tool}`{on}? The permission rules of agent `{}` ask before this call.", self.agent);
                use rmcp::service::ElicitationError;
                match peer.elicit_with_timeout::<Approval>(question, Some(ASK_TIMEOUT)).await {
                    Ok(Some(Approval { allow: true })) => Ok(()),
                    Ok(_) | Err(ElicitationError::UserDeclined | ElicitationError::UserCancelled) => {
                        Err(format!("refused: the user did not allow `{tool}`{on}"))
                    }
                    Err(ElicitationError::CapabilityNotSupported) => Err(format!(
                        "refused: the permission rules of agent `{agent}` ask before `{tool}`{on}, and this client cannot be asked \
                         (it does not support elicitation); allow it with a rule under [agents.{agent}], e.g. \
                         permissions = [{{ tool = \"{tool}\", action = \"allow\" }}]",
                        agent = self.agent
                    )),
                    Err(e) => Err(format!("refused: the question to allow `{tool}`{on} got no answer ({e})")),
                }
            }
        }
    }

    /// Runs an allowed call and tells its outcome as MCP content.
    async fn run(&self, tool: &str, arguments: &Value) -> CallToolResult {
        let context = CallContext { session_id: String::new(), call_id: crate::store::sessions::new_id("call") };
        match self.host.call_tool(tool, &arguments.to_string(), &context, None).await {
            Ok(output) => success(output),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        }
    }

    /// Sends `notifications/tools/list_changed` to `peer` each time a registry is put in
    /// force, until the client has gone.
    fn follow_registry(&self, peer: Peer<RoleServer>) {
        let mut changes = self.host.registry_changes();
        changes.mark_unchanged();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() || peer.notify_tool_list_changed().await.is_err() {
                            return;
                        }
                    }
                    _ = tokio::time::sleep(FOLLOW_CHECK) => {
                        if peer.is_transport_closed() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// A tool's output as MCP content: its text, and its metadata as structured content when
/// that is a JSON object.
fn success(output: ToolOutput) -> CallToolResult {
    let structured = output.metadata.filter(Value::is_object);
    let mut result = CallToolResult::success(vec![ContentBlock::text(output.text)]);
    result.structured_content = structured;
    result
}

impl ServerHandler for ToolServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build();
        ServerConfig::new(capabilities).with_server_info(Implementation::new("plugboard", env!("CARGO_PKG_VERSION"))).with_instructions(
            format!(
                "Plugboard's tools, each running in a WebAssembly sandbox with only what the operator granted its plugin. \
                 Calls are judged by the permission rules of agent `{}`.",
                self.agent
            ),
        )
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    async fn call_tool(&self, request: CallToolRequestParams, context: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        let tool = request.name.to_string();
        if self.host.registry().tool_plugin(&tool).is_none() {
            let available = self.host.registry().tool_names().join(", ");
            return Err(ErrorData::invalid_params(format!("unknown tool `{tool}`; the tools are: {available}"), None));
        }
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let result = match self.permit(&tool, &arguments, &context.peer).await {
            Ok(()) => self.run(&tool, &arguments).await,
            Err(refusal) => CallToolResult::error(vec![ContentBlock::text(refusal)]),
        };
        Ok(CallToolResponse::Complete(result))
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.follow_registry(context.peer);
    }
}

/// Serves `server` to one client over standard input and output, until the client closes
/// them.
pub async fn serve_stdio(server: ToolServer) -> Result<(), McpError> {
    let running = server.serve(rmcp::transport::stdio()).await.map_err(|e| McpError::Connection(e.to_string()))?;
    running.waiting().await.map_err(|e| McpError::Connection(e.to_string()))?;
    Ok(())
}

/// The streamable HTTP endpoint's service.
pub type HttpEndpoint = StreamableHttpService<ToolServer, LocalSessionManager>;

/// The streamable HTTP endpoint: one [`ToolServer`] per client session, made by `connect`
/// (which fails while the host is not ready). Host, Origin and the secret are checked by the
/// server's own layers in front of it; `max_body` bounds a request.
pub fn http_service(
    connect: impl Fn() -> Result<ToolServer, std::io::Error> + Send + Sync + 'static,
    max_body: usize,
    stop: tokio_util::sync::CancellationToken,
) -> HttpEndpoint {
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_max_request_body_bytes(max_body)
        .with_cancellation_token(stop)
        .with_sse_keep_alive(Some(Duration::from_secs(15)));
    StreamableHttpService::new(connect, Arc::new(LocalSessionManager::default()), config)
}
