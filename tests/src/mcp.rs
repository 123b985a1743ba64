//! An MCP client for the tests, on the official Rust SDK (`rmcp`): it records the
//! `notifications/tools/list_changed` it gets and answers permission questions
//! (elicitation) as told.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction,
    Implementation,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};

/// How the client answers when the server asks it to allow a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// It cannot be asked: it declares no elicitation capability.
    CannotBeAsked,
    /// It allows the call.
    Allow,
    /// It declines.
    Decline,
}

/// The client's handler: what it was told and asked.
#[derive(Clone)]
pub struct Recorder {
    answer: Answer,
    list_changed: Arc<AtomicUsize>,
    changed: Arc<tokio::sync::Notify>,
    questions: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    /// A client that answers `answer`.
    pub fn new(answer: Answer) -> Self {
        Recorder { answer, list_changed: Arc::default(), changed: Arc::default(), questions: Arc::default() }
    }

    /// The questions the server asked.
    pub fn questions(&self) -> Vec<String> {
        self.questions.lock().unwrap().clone()
    }

    /// How many `tools/list_changed` notifications arrived.
    pub fn list_changes(&self) -> usize {
        self.list_changed.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` `tools/list_changed` notifications arrived; false on timeout.
    pub async fn wait_list_changes(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.list_changes() < n {
            if tokio::time::timeout_at(deadline, self.changed.notified()).await.is_err() {
                return self.list_changes() >= n;
            }
        }
        true
    }
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        let capabilities = match self.answer {
            Answer::CannotBeAsked => ClientCapabilities::default(),
            Answer::Allow | Answer::Decline => ClientCapabilities::builder().enable_elicitation().build(),
        };
        ClientConfig::new(capabilities, Implementation::new("plugboard-tests", "0"))
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.list_changed.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        if let ElicitRequestParams::FormElicitationParams { message, .. } = &request {
            self.questions.lock().unwrap().push(message.clone());
        }
        Ok(match self.answer {
            Answer::Allow => ElicitResult::new(ElicitationAction::Accept).with_content(json!({ "allow": true })),
            Answer::Decline | Answer::CannotBeAsked => ElicitResult::new(ElicitationAction::Decline),
        })
    }
}

/// A connected client.
pub type Client = RunningService<RoleClient, Recorder>;

/// Connects to the streamable HTTP endpoint `url`, with the server's `secret` if any.
pub async fn connect_http(url: &str, secret: Option<&str>, recorder: Recorder) -> Client {
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(secret) = secret {
        config = config.auth_header(secret.to_string());
    }
    recorder.serve(StreamableHttpClientTransport::from_config(config)).await.expect("the MCP client connects")
}

/// Connects to the server `command` starts, over its standard input and output.
pub async fn connect_stdio(command: tokio::process::Command, recorder: Recorder) -> Client {
    let transport = rmcp::transport::TokioChildProcess::new(command).expect("the MCP server starts");
    recorder.serve(transport).await.expect("the MCP client connects")
}

/// Calls `tool` with `arguments` (a JSON object).
pub async fn call(client: &Client, tool: &str, arguments: Value) -> Result<CallToolResult, rmcp::ServiceError> {
    let Value::Object(arguments) = arguments else { panic!("arguments are an object") };
    client.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments)).await
}

/// The text of a result's content.
pub fn text(result: &CallToolResult) -> String {
    result.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("\n")
}

/// The names of the tools the server lists.
pub async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client.list_all_tools().await.expect("tools/list").into_iter().map(|t| t.name.to_string()).collect();
    names.sort();
    names
}
