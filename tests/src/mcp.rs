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
    // The SDK's HTTP client takes TLS from the process's provider, which the host installs.
    plugboard::capability::network::install_tls_provider();
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

/// An official MCP SDK in another language, whose client the tests run
/// (`tests/mcp-clients/`); installed on first use under `target/mcp-clients`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    /// `mcp` from PyPI.
    Python,
    /// `@modelcontextprotocol/sdk` from npm.
    TypeScript,
}

/// The versions the tests run against.
pub const PYTHON_SDK: &str = "2.3.0";
/// See [`PYTHON_SDK`].
pub const TYPESCRIPT_SDK: &str = "1.32.2";

static PYTHON_INSTALL: std::sync::OnceLock<Result<std::path::PathBuf, String>> = std::sync::OnceLock::new();
static TYPESCRIPT_INSTALL: std::sync::OnceLock<Result<std::path::PathBuf, String>> = std::sync::OnceLock::new();

fn clients_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/mcp-clients")
}

fn scripts_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp-clients")
}

pub(crate) fn run(command: &mut std::process::Command, what: &str) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("{what} could not run: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Installs `package` at `version` under `prefix` with npm, unless it is there already.
pub(crate) fn npm_install(prefix: &std::path::Path, package: &str, version: &str, needed_by: &str) -> Result<(), String> {
    let manifest = prefix.join("node_modules").join(package).join("package.json");
    if std::fs::read_to_string(&manifest).is_ok_and(|p| p.contains(&format!("\"version\": \"{version}\""))) {
        return Ok(());
    }
    std::fs::create_dir_all(prefix).map_err(|e| e.to_string())?;
    run(
        std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--no-save", "--prefix"])
            .arg(prefix)
            .arg(format!("{package}@{version}")),
        &format!("npm install {package} ({needed_by} need Node.js and npm)"),
    )
    .map(drop)
}

/// The Python interpreter of a virtual environment holding `mcp` [`PYTHON_SDK`].
fn python() -> Result<std::path::PathBuf, String> {
    PYTHON_INSTALL
        .get_or_init(|| {
            let venv = clients_dir().join("venv");
            let python = venv.join("bin/python");
            let version = |python: &std::path::Path| {
                run(std::process::Command::new(python).args(["-c", "import importlib.metadata as m; print(m.version('mcp'))"]), "python")
            };
            if version(&python).ok().as_deref() != Some(PYTHON_SDK) {
                run(
                    std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv),
                    "`python3 -m venv` (the Python SDK tests need Python 3 with venv)",
                )?;
                run(
                    std::process::Command::new(&python).args(["-m", "pip", "install", "--quiet", &format!("mcp=={PYTHON_SDK}")]),
                    "pip install mcp",
                )?;
            }
            Ok(python)
        })
        .clone()
}

/// Node.js's directory holding `@modelcontextprotocol/sdk` [`TYPESCRIPT_SDK`] and the
/// client script.
fn typescript() -> Result<std::path::PathBuf, String> {
    TYPESCRIPT_INSTALL
        .get_or_init(|| {
            let prefix = clients_dir().join("node");
            npm_install(&prefix, "@modelcontextprotocol/sdk", TYPESCRIPT_SDK, "the TypeScript SDK tests")?;
            // The script runs from beside `node_modules`, where its imports resolve.
            std::fs::copy(scripts_dir().join("client.mjs"), prefix.join("client.mjs")).map_err(|e| e.to_string())?;
            Ok(prefix.join("client.mjs"))
        })
        .clone()
}

/// Runs `sdk`'s client with `args` (`http URL SECRET` or `stdio COMMAND ARG...`) in `dir`,
/// and checks each step it reports (see `tests/mcp-clients/client.py`): the tools listed,
/// `echo` answered, `read` outside its grant and `shell` without a way to ask refused with
/// their explanations. When the client waits for `tools/list_changed`, `reload` must make
/// the tool `which` appear.
pub async fn check_sdk_client<F: std::future::Future<Output = ()>>(
    sdk: Sdk,
    args: &[&str],
    dir: &std::path::Path,
    reload: impl FnOnce() -> F,
) {
    use tokio::io::AsyncBufReadExt;
    let mut command = match sdk {
        Sdk::Python => {
            let mut c = tokio::process::Command::new(python().unwrap_or_else(|e| panic!("{e}")));
            c.arg(scripts_dir().join("client.py"));
            c
        }
        Sdk::TypeScript => {
            let mut c = tokio::process::Command::new("node");
            c.arg(typescript().unwrap_or_else(|e| panic!("{e}")));
            c
        }
    };
    let mut child = command
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("the {sdk:?} client starts: {e}"));
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        let line = line
            .unwrap_or_else(|_| panic!("the {sdk:?} client answered within 60 s"))
            .unwrap()
            .unwrap_or_else(|| panic!("the {sdk:?} client ended early (its errors are above)"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    let connected = next().await;
    assert!(matches!(connected["protocol"].as_str(), None | Some("2025-11-25")), "{sdk:?}: {connected}");
    let tools = next().await;
    for tool in ["echo", "read", "shell"] {
        assert!(tools["names"].as_array().unwrap().contains(&json!(tool)), "{sdk:?} lists {tool}: {tools}");
    }
    let echo = next().await;
    assert!(echo["is_error"] == false && echo["text"].as_str().unwrap().starts_with("from "), "{sdk:?}: {echo}");
    let read = next().await;
    assert!(read["is_error"] == true && read["text"].as_str().unwrap().contains("[plugins.read]"), "{sdk:?}: {read}");
    let shell = next().await;
    assert!(shell["is_error"] == true && shell["text"].as_str().unwrap().contains("cannot be asked"), "{sdk:?}: {shell}");
    assert_eq!(next().await["step"], "waiting");
    reload().await;
    let changed = next().await;
    assert_eq!(changed["arrived"], true, "{sdk:?} got tools/list_changed: {changed}");
    assert!(changed["names"].as_array().unwrap().contains(&json!("which")), "{sdk:?}: {changed}");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("the client ends").unwrap();
    assert!(status.success(), "{sdk:?} client: {status}");
}

/// The version of `@modelcontextprotocol/server-everything` the tests use as a tool source.
pub const EVERYTHING_SERVER: &str = "2026.8.31";

static EVERYTHING_INSTALL: std::sync::OnceLock<Result<std::path::PathBuf, String>> = std::sync::OnceLock::new();

/// The directory holding `@modelcontextprotocol/server-everything` [`EVERYTHING_SERVER`]
/// (installed on first use under `target/mcp-servers/node`).
pub fn everything_server() -> Result<std::path::PathBuf, String> {
    EVERYTHING_INSTALL
        .get_or_init(|| {
            let prefix = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/mcp-servers/node");
            npm_install(&prefix, "@modelcontextprotocol/server-everything", EVERYTHING_SERVER, "the MCP tool source tests")?;
            prefix.canonicalize().map_err(|e| e.to_string())
        })
        .clone()
}

/// The `[mcp.NAME]` table of server-everything over stdio, granted (read-only) only the
/// directory it is installed in.
pub fn everything_table(name: &str) -> String {
    let prefix = everything_server().unwrap_or_else(|e| panic!("{e}"));
    let script = prefix.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    format!(
        "[mcp.{name}]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\nfilesystem = [{:?}]\n",
        script.display().to_string(),
        prefix.display().to_string()
    )
}

/// The Python `MCPServer` of `tests/mcp-servers/server.py`: its interpreter (in the
/// virtual environment holding `mcp`), the script, and the directories it needs to run.
pub struct PythonServer {
    /// The virtual environment's interpreter.
    pub python: std::path::PathBuf,
    /// `server.py`.
    pub script: std::path::PathBuf,
    /// The virtual environment, the Python installation it was made from, and the script's
    /// directory.
    pub dirs: Vec<std::path::PathBuf>,
}

/// See [`PythonServer`]; installs `mcp` on first use.
pub fn python_server() -> PythonServer {
    let python = python().unwrap_or_else(|e| panic!("{e}"));
    let base = run(std::process::Command::new(&python).args(["-c", "import sys; print(sys.base_prefix)"]), "python").unwrap();
    let venv = python.parent().and_then(|bin| bin.parent()).expect("venv/bin/python").canonicalize().unwrap();
    let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp-servers").canonicalize().unwrap();
    let base = std::path::PathBuf::from(base).canonicalize().unwrap();
    PythonServer { python, script: scripts.join("server.py"), dirs: vec![venv, base, scripts] }
}

impl PythonServer {
    /// The `[mcp.NAME]` table of this server over stdio, granted (read-only) only the
    /// directories it needs to run, with `extra` lines appended.
    pub fn stdio_table(&self, name: &str, extra: &str) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| format!("{:?}", d.display().to_string())).collect();
        format!(
            "[mcp.{name}]\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\nfilesystem = [{}]\n{extra}\n",
            self.python.display().to_string(),
            self.script.display().to_string(),
            dirs.join(", ")
        )
    }

    /// Starts the server over streamable HTTP on a free port of 127.0.0.1, answering only
    /// `Authorization: Bearer TOKEN`; killed when the returned child is dropped. Waits until
    /// it accepts connections.
    pub async fn serve_http(&self, token: &str) -> (tokio::process::Child, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        (self.serve_http_on(port, token).await, port)
    }

    /// [`Self::serve_http`] on `port`.
    pub async fn serve_http_on(&self, port: u16, token: &str) -> tokio::process::Child {
        let child = tokio::process::Command::new(&self.python)
            .arg(&self.script)
            .args(["http", &port.to_string(), token])
            .kill_on_drop(true)
            .spawn()
            .expect("the Python MCP server starts");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return child;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the Python MCP server did not listen on port {port}");
    }
}
