//! Support for Plugboard's end-to-end tests and benchmarks: the compiled test plugins, a
//! scratch workspace, a host started on it, and a local HTTP server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use plugboard::app::App;
use plugboard::runtime::{CallContext, CallError, HostOptions, PluginHost, ToolOutput};

pub mod mcp;
pub mod registry;
pub mod toolchains;

/// Paths of the compiled test plugins.
pub mod components {
    include!(concat!(env!("OUT_DIR"), "/test_plugins.rs"));
}

/// A scratch workspace directory, removed on drop, with a plugins directory holding the
/// test plugins.
pub struct Workspace {
    root: PathBuf,
    /// The workspace directory itself (a subdirectory of `root`, so tests can put files
    /// outside it).
    pub dir: PathBuf,
    /// A directory outside the workspace.
    pub outside: PathBuf,
    /// The plugins directory the host loads from (`--plugins`).
    pub plugins: PathBuf,
    /// The data directory (sessions, workspace trust), outside the workspace.
    pub data: PathBuf,
    cache: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Workspace {
    /// A fresh workspace with `secret.txt` in a sibling directory outside it.
    pub fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("plugboard-e2e-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("workspace");
        let outside = root.join("outside");
        let plugins = root.join("plugins");
        let data = root.join("data");
        for d in [&dir, &outside, &plugins, &data] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(outside.join("secret.txt"), "TOP-SECRET").unwrap();
        for component in [components::ECHO, components::HOSTILE, components::INSTANT_PROVIDER] {
            let name = Path::new(component).file_name().unwrap();
            std::fs::copy(component, plugins.join(name)).unwrap();
        }
        let cache = std::env::temp_dir().join("plugboard-e2e-cache");
        let dir = dir.canonicalize().unwrap();
        let outside = outside.canonicalize().unwrap();
        Workspace { root, dir, outside, plugins, data, cache }
    }

    /// Trusts the workspace's own files as they are now, as the operator does with
    /// `plugboard trust`.
    pub fn trust(&self) -> &Self {
        self.workspace_trust().trust_current().expect("the workspace can be trusted");
        self
    }

    /// The workspace's trust, as the host sees it.
    pub fn workspace_trust(&self) -> plugboard::trust::WorkspaceTrust {
        plugboard::trust::WorkspaceTrust::new(&self.dir, Some(&self.data))
    }

    /// The options of a host on this workspace, with the test plugins.
    pub fn options(&self) -> HostOptions {
        HostOptions {
            workspace: Some(self.dir.clone()),
            config_file: Some(self.operator_config_path()).filter(|p| p.exists()),
            plugin_dirs: vec![self.plugins.clone()],
            cache_dir: Some(self.cache.clone()),
            skip_user_plugins: true,
            data_dir: Some(self.data.clone()),
        }
    }

    /// Writes `plugboard.toml` in the workspace.
    pub fn config(&self, toml: &str) -> &Self {
        std::fs::write(self.dir.join("plugboard.toml"), toml).unwrap();
        self
    }

    /// Writes the operator's configuration file, outside the workspace (`--config`): from
    /// then on the host reads it instead of the workspace's `plugboard.toml`. Secrets such as
    /// `api_key` are allowed only there.
    pub fn operator_config(&self, toml: &str) -> &Self {
        std::fs::write(self.operator_config_path(), toml).unwrap();
        self
    }

    /// Where [`Self::operator_config`] writes.
    pub fn operator_config_path(&self) -> PathBuf {
        self.root.join("operator.toml")
    }

    /// Writes a file in the workspace.
    pub fn file(&self, relative: &str, content: impl AsRef<[u8]>) -> &Self {
        let path = self.dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    /// Starts Plugboard on this workspace (its configuration and plugins), with the test
    /// plugins, after trusting the workspace's files as they are (the operator's
    /// `plugboard trust`).
    pub async fn app(&self) -> Arc<App> {
        self.trust();
        let app = App::start(self.options()).await.expect("Plugboard starts");
        let failures = app.host().registry().failures().to_vec();
        assert!(failures.is_empty(), "plugins failed to load: {failures:?}");
        app
    }

    /// The plugin runtime of [`Self::app`].
    pub async fn host(&self) -> Arc<PluginHost> {
        self.app().await.host().clone()
    }
}

/// Starts Plugboard with `options`, allowing plugins to fail to load: its plugin runtime.
pub async fn start_host(options: HostOptions) -> Result<Arc<PluginHost>, plugboard::app::StartError> {
    Ok(App::start(options).await?.host().clone())
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Calls a tool with JSON arguments.
pub async fn call(host: &PluginHost, tool: &str, arguments: serde_json::Value) -> Result<ToolOutput, CallError> {
    host.call_tool(tool, &arguments.to_string(), &CallContext::default(), None).await
}

/// A local HTTP server on 127.0.0.1 that answers every request with `200 <body>` and
/// counts the requests. It stops when dropped.
pub struct LocalServer {
    /// Its address.
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl LocalServer {
    /// Starts a server answering `body`.
    pub fn start(body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                            head.push(byte[0]);
                        }
                        h.fetch_add(1, Ordering::SeqCst);
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(response.as_bytes());
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        LocalServer { addr, hits, stop }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One scripted HTTP response.
#[derive(Debug, Clone)]
pub struct Scripted {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body pieces, each written and flushed on its own after `delay`.
    pub pieces: Vec<Vec<u8>>,
    /// Pause before each piece.
    pub delay: std::time::Duration,
}

impl Scripted {
    /// A `text/event-stream` answer of `sse`, written in pieces of `piece` bytes.
    pub fn sse(sse: &str, piece: usize) -> Self {
        Scripted {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            pieces: sse.as_bytes().chunks(piece.max(1)).map(|c| c.to_vec()).collect(),
            delay: std::time::Duration::ZERO,
        }
    }

    /// An error answer with a JSON body.
    pub fn error(status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        Scripted {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            pieces: vec![body.as_bytes().to_vec()],
            delay: std::time::Duration::ZERO,
        }
    }
}

/// A request the scripted server received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request line, e.g. `POST /v1/chat/completions HTTP/1.1`.
    pub line: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
    /// Which connection it came on: 1 for the first the server accepted, and so on.
    pub connection: usize,
}

impl Received {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A local HTTP server that answers the n-th request with the n-th scripted response
/// (the last one repeats) and records every request. It stops when dropped.
pub struct ScriptedServer {
    /// Its address.
    pub addr: SocketAddr,
    received: Arc<std::sync::Mutex<Vec<Received>>>,
    cut: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// What a [`ScriptedServer`]'s connections share.
struct ScriptState {
    script: Vec<Scripted>,
    served: std::sync::atomic::AtomicUsize,
    received: Arc<std::sync::Mutex<Vec<Received>>>,
    cut: Arc<std::sync::atomic::AtomicUsize>,
}

impl ScriptState {
    /// Answers the next request on `stream`; false when the connection is done.
    fn answer(&self, stream: &mut std::net::TcpStream, connection: usize, keep_alive: bool) -> bool {
        let Some(mut request) = read_request(stream) else { return false };
        request.connection = connection;
        self.received.lock().unwrap().push(request);
        let answer = &self.script[self.served.fetch_add(1, Ordering::SeqCst).min(self.script.len() - 1)];
        let mut head = format!("HTTP/1.1 {} Scripted\r\n", answer.status);
        if keep_alive {
            head.push_str(&format!("content-length: {}\r\n", answer.pieces.iter().map(Vec::len).sum::<usize>()));
        } else {
            head.push_str("connection: close\r\n");
        }
        for (k, v) in &answer.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut whole = stream.write_all(head.as_bytes()).is_ok();
        for piece in &answer.pieces {
            if !whole {
                break;
            }
            if !answer.delay.is_zero() {
                std::thread::sleep(answer.delay);
            }
            whole = stream.write_all(piece).and_then(|_| stream.flush()).is_ok();
        }
        if !whole {
            self.cut.fetch_add(1, Ordering::SeqCst);
        }
        whole && keep_alive
    }
}

impl ScriptedServer {
    /// Starts a server with its script; it closes each connection after one answer.
    pub fn start(script: Vec<Scripted>) -> Self {
        Self::serve(script, false)
    }

    /// Starts a server with its script that keeps connections open (HTTP/1.1 keep-alive,
    /// each answer with its length) and serves each on a thread of its own.
    pub fn keep_alive(script: Vec<Scripted>) -> Self {
        Self::serve(script, true)
    }

    fn serve(script: Vec<Scripted>, keep_alive: bool) -> Self {
        assert!(!script.is_empty(), "a script needs at least one response");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let cut = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let state = Arc::new(ScriptState { script, served: Default::default(), received: received.clone(), cut: cut.clone() });
        let s = stop.clone();
        std::thread::spawn(move || {
            let mut accepted = 0usize;
            while !s.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    continue;
                };
                accepted += 1;
                stream.set_nonblocking(false).unwrap();
                if keep_alive {
                    let state = state.clone();
                    std::thread::spawn(move || while state.answer(&mut stream, accepted, true) {});
                } else {
                    state.answer(&mut stream, accepted, false);
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                }
            }
        });
        ScriptedServer { addr, received, cut, stop }
    }

    /// How many answers the client stopped reading before their end (their connection
    /// closed under them).
    pub fn answers_cut(&self) -> usize {
        self.cut.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Received> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? != 1 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next()?.to_string();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    let length = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0usize);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some(Received { line, headers, body: String::from_utf8_lossy(&body).into_owned(), connection: 0 })
}

/// The version of `@copilotkit/aimock` the conformance tests run against.
pub const AIMOCK_VERSION: &str = "1.43.0";

/// A third-party mock of the OpenAI and Anthropic APIs (`@copilotkit/aimock` from npm),
/// serving fixtures on 127.0.0.1. Installed with npm on first use; needs Node.js. Killed
/// when dropped.
pub struct Aimock {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    child: std::process::Child,
    _fixtures: PathBuf,
}

static AIMOCK_INSTALL: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();

fn aimock_cli() -> Result<PathBuf, String> {
    AIMOCK_INSTALL
        .get_or_init(|| {
            let prefix = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/aimock");
            let cli = prefix.join("node_modules/@copilotkit/aimock/dist/cli.js");
            let installed = std::fs::read_to_string(prefix.join("node_modules/@copilotkit/aimock/package.json"))
                .map(|p| p.contains(&format!("\"version\": \"{AIMOCK_VERSION}\"")))
                .unwrap_or(false);
            if !installed {
                std::fs::create_dir_all(&prefix).map_err(|e| e.to_string())?;
                let status = std::process::Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--no-save", "--prefix"])
                    .arg(&prefix)
                    .arg(format!("@copilotkit/aimock@{AIMOCK_VERSION}"))
                    .status()
                    .map_err(|e| format!("the aimock tests need Node.js and npm (`npm` could not run: {e})"))?;
                if !status.success() {
                    return Err(format!("npm install @copilotkit/aimock@{AIMOCK_VERSION} failed ({status})"));
                }
            }
            Ok(cli)
        })
        .clone()
}

impl Aimock {
    /// Starts aimock with `fixtures` (the JSON of one fixture file).
    pub fn start(fixtures: &serde_json::Value) -> Self {
        let cli = aimock_cli().unwrap_or_else(|e| panic!("{e}"));
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("plugboard-aimock-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fixtures.json"), fixtures.to_string()).unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("node")
            .arg(&cli)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "silent", "--fixtures"])
            .arg(dir.join("fixtures.json"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start aimock with node: {e}"));
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "aimock did not listen on port {port} within 30 s");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Aimock { url: format!("http://127.0.0.1:{port}"), child, _fixtures: dir }
    }
}

impl Drop for Aimock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._fixtures);
    }
}

/// One Server-Sent Event as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseFrame {
    /// `id:`, when the event has one.
    pub id: Option<i64>,
    /// `event:` (`message` when absent).
    pub event: String,
    /// `data:`, parsed as JSON.
    pub data: serde_json::Value,
}

/// A Server-Sent Events reader over an HTTP response.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// Reads the events of `response` (which must be `text/event-stream`).
    pub fn new(response: reqwest::Response) -> Self {
        let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(kind.starts_with("text/event-stream"), "not an event stream: {kind} ({})", response.status());
        SseReader { response, buffer: String::new() }
    }

    /// The next event, or `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseFrame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(frame) = parse_frame(&block) {
                    return Some(frame);
                }
                continue;
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Events up to and including the first of type `event`; panics after `within`.
    pub async fn until(&mut self, event: &str, within: std::time::Duration) -> Vec<SseFrame> {
        let mut frames = Vec::new();
        let search = async {
            while let Some(frame) = self.next().await {
                let done = frame.event == event;
                frames.push(frame);
                if done {
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(within, search).await {
            Ok(true) => frames,
            Ok(false) => panic!("the stream ended before `{event}`"),
            Err(_) => panic!("no `{event}` within {within:?}"),
        }
    }
}

fn parse_frame(block: &str) -> Option<SseFrame> {
    let (mut id, mut event, mut data) = (None, "message".to_string(), String::new());
    let mut any = false;
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "id" => id = value.parse().ok(),
            "event" => event = value.to_string(),
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    any.then(|| SseFrame { id, event, data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)) })
}

/// A workspace whose agent runs on the instant provider (`tests/plugins/instant-provider`),
/// with its `echo` calls allowed and up to 1,000 sessions at once: what the benchmarks
/// measure is the host, not a model.
pub async fn instant_agent() -> InstantAgent {
    let ws = Workspace::new();
    ws.config(
        "default_model = \"instant/script\"\n[sessions]\nmax_concurrent = 1000\n[agents.build]\npermissions = [{ tool = \"echo\", action = \"allow\" }]\n",
    );
    let app = ws.app().await;
    let store = plugboard::store::SessionStore::open(&ws.dir.join(".data/plugboard.db")).unwrap();
    let runtime = app.agent_runtime(store.clone(), plugboard::agent::permission::AskMode::DenyAll).unwrap();
    InstantAgent { ws, app, runtime, store }
}

/// What [`instant_agent`] starts.
pub struct InstantAgent {
    /// The workspace.
    pub ws: Workspace,
    /// The configuration and plugins.
    pub app: Arc<App>,
    /// The agent runtime.
    pub runtime: Arc<plugboard::agent::AgentRuntime>,
    /// Its store.
    pub store: plugboard::store::SessionStore,
}

/// `component` with a custom section appended: the same plugin as new bytes (a new content
/// hash, so a reload sees a new version and compiles it).
pub fn with_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut content = Vec::new();
    leb128(name.len(), &mut content);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut bytes = component.to_vec();
    bytes.push(0); // a custom section
    leb128(content.len(), &mut bytes);
    bytes.extend_from_slice(&content);
    bytes
}

/// The bytes of the first-party plugin `name`, as embedded in the binary.
pub fn bundled(name: &str) -> &'static [u8] {
    plugboard_bundled_plugins::PLUGINS.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no bundled plugin `{name}`")).component
}
