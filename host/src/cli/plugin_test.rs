//! `plugboard plugin test`: a plugin's calls checked against what its author expects, as
//! written in a `plugboard-test.toml` beside the plugin's sources:
//!
//! ```toml
//! plugin = "{cargo-target}/wasm32-wasip2/release/word_count.wasm"   # the component under test
//! build = ["cargo", "build", "--release"]                   # run first, from this folder
//! config = """                                              # as in plugboard.toml
//! [plugins.word-count]
//! filesystem = [{ path = "notes", access = "read-only" }]
//! """
//! [files]                                                   # the fresh workspace's files
//! "notes/a.txt" = "one two three"
//!
//! [[call]]                                                  # a tool call and its result
//! tool = "word_count"
//! arguments = { path = "notes/a.txt" }
//! output = "3"                                              # or contains = [...], or error = "..."
//!
//! [[hook]]                                                  # a hook's decision on a draft
//! point = "tool.before"
//! tool = "shell"
//! arguments = { command = "rm -rf /" }
//! decision = "deny"                                         # allow | deny | rewrite
//! reason = "recursive"
//! ```
//!
//! A provider plugin is checked against a recorded stream: each `[[provider]]` case has a
//! file of the body its API sent (e.g. server-sent events), which a server on 127.0.0.1
//! replays for the plugin's request; the configuration names that server as
//! `{recorded-server}` (`network = ["{recorded-server}"]`, `settings = { base_url = … }`).
//!
//! Each run is in a fresh workspace (under the system's temporary directory, removed after),
//! with the plugin and the bundled ones, and no user plugins. Calls go through the hooks in
//! force (as `tool call --with-hooks`); hook cases ask the hooks directly, and a hook that
//! fails (`hook.failed`) fails the case. Every failure says what differed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::hooks::{HookContext, HookPoint, ToolDecision};
use crate::runtime::HostOptions;

/// The name of the file `plugboard plugin test` reads by default.
pub const SPEC_FILE: &str = "plugboard-test.toml";

/// What a plugin is expected to do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The component under test, relative to the spec's folder; a leading `{cargo-target}`
    /// is the crate's cargo target directory (wherever `CARGO_TARGET_DIR` or the cargo
    /// configuration puts it).
    pub plugin: PathBuf,
    /// The command that builds it, run from the spec's folder first.
    #[serde(default)]
    pub build: Vec<String>,
    /// The configuration the calls run under, as in `plugboard.toml`.
    #[serde(default)]
    pub config: String,
    /// The workspace's files: relative path → content.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Tool calls.
    #[serde(default)]
    pub call: Vec<CallCase>,
    /// Hook decisions.
    #[serde(default)]
    pub hook: Vec<HookCase>,
    /// Completions against recorded streams.
    #[serde(default)]
    pub provider: Vec<ProviderCase>,
}

/// One completion, answered by a recorded response, and what the plugin should make of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderCase {
    /// What the case checks, for the report.
    pub name: Option<String>,
    /// `provider/model`.
    pub model: String,
    /// The user's message.
    #[serde(default = "hello")]
    pub prompt: String,
    /// The recorded response body, relative to the spec's folder.
    pub stream: PathBuf,
    /// Its HTTP status.
    #[serde(default = "ok_status")]
    pub status: u16,
    /// Its content type.
    #[serde(default = "event_stream")]
    pub content_type: String,
    /// The text the stream should give.
    pub expect_text: Option<String>,
    /// The tool calls it should give, in order: `{ name, arguments }`.
    pub expect_tool_calls: Option<Vec<ExpectedToolCall>>,
    /// How it should end: `stop`, `tool-calls`, `length`, `content-filter`, `other`.
    pub expect_finish: Option<String>,
    /// The completion should fail, with a message holding this.
    pub expect_error: Option<String>,
}

/// A tool call a stream should give.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedToolCall {
    /// The tool.
    pub name: String,
    /// Its arguments.
    pub arguments: Value,
}

fn hello() -> String {
    "Hello".into()
}

fn ok_status() -> u16 {
    200
}

fn event_stream() -> String {
    "text/event-stream".into()
}

/// One tool call and what it should give.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallCase {
    /// What the case checks, for the report (default: the tool and its arguments).
    pub name: Option<String>,
    /// The tool.
    pub tool: String,
    /// Its arguments.
    #[serde(default = "empty_object")]
    pub arguments: Value,
    /// The whole text of the result.
    pub output: Option<String>,
    /// Pieces the text must hold.
    #[serde(default)]
    pub contains: Vec<String>,
    /// The title.
    pub title: Option<String>,
    /// The call must fail, with a message holding this.
    pub error: Option<String>,
}

/// The hook points a case can ask.
#[derive(Debug, Clone, Copy, Deserialize)]
pub enum Point {
    /// `tool.before`: a decision on a call.
    #[serde(rename = "tool.before")]
    ToolBefore,
    /// `tool.after`: a rewrite of a result.
    #[serde(rename = "tool.after")]
    ToolAfter,
    /// `prompt.before`: a prompt kept, rewritten or rejected.
    #[serde(rename = "prompt.before")]
    PromptBefore,
}

impl Point {
    /// The hook point it asks.
    fn hook_point(self) -> HookPoint {
        match self {
            Point::ToolBefore => HookPoint::ToolBefore,
            Point::ToolAfter => HookPoint::ToolAfter,
            Point::PromptBefore => HookPoint::PromptBefore,
        }
    }
}

/// What a `tool.before` or `prompt.before` hook decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The call runs (or the prompt goes on) unchanged.
    Allow,
    /// Refused.
    Deny,
    /// Changed: the call's arguments or the prompt.
    Rewrite,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Rewrite => "rewrite",
        })
    }
}

/// One draft offered to the hooks and what they should make of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookCase {
    /// What the case checks, for the report.
    pub name: Option<String>,
    /// The hook point.
    pub point: Point,
    /// The tool of the call (`tool.before`, `tool.after`).
    #[serde(default)]
    pub tool: String,
    /// The call's arguments.
    #[serde(default = "empty_object")]
    pub arguments: Value,
    /// The result's text (`tool.after`) or the prompt (`prompt.before`).
    #[serde(default)]
    pub text: String,
    /// The result's title (`tool.after`).
    pub title: Option<String>,
    /// Whether the result is an error (`tool.after`).
    #[serde(default)]
    pub is_error: bool,
    /// The decision expected (`tool.before`, `prompt.before`).
    pub decision: Option<Decision>,
    /// A refusal's reason must hold this.
    pub reason: Option<String>,
    /// The arguments (`tool.before`) or the prompt (`prompt.before`, as a string) a rewrite
    /// should give.
    pub rewritten: Option<Value>,
    /// The text the hooks should leave (`tool.after`).
    pub expect_text: Option<String>,
    /// The title the hooks should leave (`tool.after`).
    pub expect_title: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Why the spec cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// It cannot be read or parsed.
    #[error("{path}: {message}")]
    Invalid {
        /// The spec.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
    /// The build command failed.
    #[error("the build `{command}` failed{status}:\n{output}")]
    Build {
        /// The command.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// The plugin did not load.
    #[error("{path} did not load: {reason}")]
    Load {
        /// The component.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Plugboard could not start around it.
    #[error("{0}")]
    Start(String),
}

/// The outcome of one case.
pub struct CaseResult {
    /// `call` or `hook`, and the case's name.
    pub label: String,
    /// What differed; empty when it passed.
    pub differences: Vec<String>,
}

/// Reads the spec at `path`.
pub fn read(path: &Path) -> Result<Spec, SpecError> {
    let invalid = |message: String| SpecError::Invalid { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read it: {e}")))?;
    let spec: Spec = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    for (n, case) in spec.call.iter().enumerate() {
        if case.output.is_none() && case.contains.is_empty() && case.error.is_none() {
            return Err(invalid(format!(
                "[[call]] number {} ({}) expects nothing: give `output`, `contains` or `error`",
                n + 1,
                case.tool
            )));
        }
        if case.error.is_some() && (case.output.is_some() || !case.contains.is_empty() || case.title.is_some()) {
            return Err(invalid(format!("[[call]] number {} ({}) expects both an error and a result", n + 1, case.tool)));
        }
    }
    for (n, case) in spec.hook.iter().enumerate() {
        let expects = match case.point {
            Point::ToolBefore | Point::PromptBefore => case.decision.is_some(),
            Point::ToolAfter => case.expect_text.is_some() || case.expect_title.is_some(),
        };
        if !expects {
            return Err(invalid(format!(
                "[[hook]] number {} expects nothing: give `decision` (tool.before, prompt.before) or `expect_text`/`expect_title` (tool.after)",
                n + 1
            )));
        }
        if matches!(case.point, Point::ToolBefore | Point::ToolAfter) && case.tool.is_empty() {
            return Err(invalid(format!("[[hook]] number {} names no `tool`", n + 1)));
        }
    }
    for (n, case) in spec.provider.iter().enumerate() {
        let expects = case.expect_text.is_some() || case.expect_tool_calls.is_some() || case.expect_finish.is_some();
        if expects == case.expect_error.is_some() {
            return Err(invalid(format!(
                "[[provider]] number {} ({}) must expect either a result (`expect_text`, `expect_tool_calls`, `expect_finish`) or `expect_error`",
                n + 1,
                case.model
            )));
        }
    }
    for file in spec.files.keys() {
        let relative = Path::new(file);
        if relative.is_absolute() || relative.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(invalid(format!("[files] `{file}` must be a relative path beneath the workspace")));
        }
    }
    Ok(spec)
}

/// Runs the spec's build command from `folder`.
pub fn build(spec: &Spec, folder: &Path) -> Result<(), SpecError> {
    let Some((program, args)) = spec.build.split_first() else { return Ok(()) };
    let command = spec.build.join(" ");
    let out = std::process::Command::new(program).args(args).current_dir(folder).output().map_err(|e| SpecError::Build {
        command: command.clone(),
        status: String::new(),
        output: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Err(SpecError::Build { command, status: format!(" ({})", out.status), output })
}

/// A fresh folder for one run, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What stands for the cargo target directory in `plugin`.
const CARGO_TARGET: &str = "{cargo-target}";

/// The component under test: `plugin`, from `folder`, with `{cargo-target}` resolved by
/// `cargo metadata`.
fn component_path(spec: &Spec, folder: &Path) -> Result<PathBuf, SpecError> {
    let Ok(rest) = spec.plugin.strip_prefix(CARGO_TARGET) else { return Ok(folder.join(&spec.plugin)) };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let failed =
        |why: String| SpecError::Load { path: spec.plugin.clone(), reason: format!("cannot find the cargo target directory: {why}") };
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(folder)
        .output()
        .map_err(|e| failed(format!("cargo metadata: {e}")))?;
    if !out.status.success() {
        return Err(failed(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let metadata: Value = serde_json::from_slice(&out.stdout).map_err(|e| failed(e.to_string()))?;
    let target = metadata["target_directory"].as_str().ok_or_else(|| failed("cargo metadata names none".into()))?;
    Ok(Path::new(target).join(rest))
}

/// Runs every case of `spec` (its folder `folder`) against its plugin, in a fresh workspace.
pub async fn run(spec: &Spec, folder: &Path) -> Result<Vec<CaseResult>, SpecError> {
    let component = component_path(spec, folder)?;
    if !component.is_file() {
        return Err(SpecError::Load { path: component, reason: "there is no such file (build the plugin first)".into() });
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let scratch = Scratch(std::env::temp_dir().join(format!("plugboard-test-{}-{stamp}", std::process::id())));
    let (workspace, plugins, data) = (scratch.0.join("workspace"), scratch.0.join("plugins"), scratch.0.join("data"));
    let io = |what: &Path, e: std::io::Error| SpecError::Start(format!("cannot write {}: {e}", what.display()));
    for dir in [&workspace, &plugins, &data] {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    for (file, content) in &spec.files {
        let path = workspace.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        std::fs::write(&path, content).map_err(|e| io(&path, e))?;
    }
    let copy = plugins.join(component.file_name().unwrap_or_default());
    std::fs::copy(&component, &copy).map_err(|e| io(&copy, e))?;
    let beside = component.with_file_name("plugin.toml");
    if beside.is_file() {
        std::fs::copy(&beside, plugins.join("plugin.toml")).map_err(|e| io(&beside, e))?;
    }
    let recorded = if spec.provider.is_empty() {
        None
    } else {
        Some(recorded::Server::start().await.map_err(|e| SpecError::Start(format!("cannot start the recorded server: {e}")))?)
    };
    let config_text = match &recorded {
        Some(server) => spec.config.replace(RECORDED_SERVER, &server.url()),
        None => spec.config.clone(),
    };
    let config = scratch.0.join("plugboard.toml");
    std::fs::write(&config, config_text).map_err(|e| io(&config, e))?;
    let options = HostOptions {
        workspace: Some(workspace),
        config_file: Some(config),
        plugin_dirs: vec![plugins],
        cache_dir: None,
        skip_user_plugins: true,
        data_dir: Some(data.clone()),
    };
    let app = crate::app::App::start(options).await.map_err(|e| SpecError::Start(e.to_string()))?;
    let host = app.host();
    let is_ours = |source: &crate::runtime::plugin::PluginSource| matches!(source, crate::runtime::plugin::PluginSource::File { path } if *path == copy);
    if let Some(failure) = host.registry().failures().iter().find(|f| is_ours(&f.source)) {
        return Err(SpecError::Load { path: component, reason: failure.reason.clone() });
    }
    if !host.registry().plugins().any(|p| is_ours(&p.source)) {
        return Err(SpecError::Load { path: component, reason: "another plugin of the same id took precedence".into() });
    }
    host.mcp().settled(std::time::Duration::from_secs(60)).await;
    let store = crate::store::SessionStore::open_in(Some(&data)).map_err(|e| SpecError::Start(e.to_string()))?;
    let runtime =
        app.agent_runtime(store.clone(), crate::agent::permission::AskMode::DenyAll).map_err(|e| SpecError::Start(e.to_string()))?;
    let mut results = Vec::new();
    for case in &spec.call {
        let since = store.last_seq().await.unwrap_or(0);
        let call = runtime.call_tool_with_hooks(&case.tool, case.arguments.clone(), None).await;
        let mut differences = check_call(case, call.result.map_err(|e| e.for_operator()));
        differences.extend(hook_failures(&store, since).await);
        results.push(CaseResult {
            label: format!("call {}", case.name.clone().unwrap_or_else(|| describe(&case.tool, &case.arguments))),
            differences,
        });
    }
    for case in &spec.hook {
        let since = store.last_seq().await.unwrap_or(0);
        let mut differences = check_hook(host, case).await;
        differences.extend(hook_failures(&store, since).await);
        let default = format!("{} {}", case.point.hook_point().name(), describe(&case.tool, &case.arguments));
        results.push(CaseResult { label: format!("hook {}", case.name.clone().unwrap_or(default)), differences });
    }
    for case in &spec.provider {
        let server = recorded.as_ref().expect("started when there are provider cases");
        let differences = match std::fs::read(folder.join(&case.stream)) {
            Ok(body) => {
                server.answer(case.status, &case.content_type, body);
                check_provider(host, case).await
            }
            Err(e) => vec![format!("cannot read the recorded stream {}: {e}", folder.join(&case.stream).display())],
        };
        results.push(CaseResult { label: format!("provider {}", case.name.clone().unwrap_or_else(|| case.model.clone())), differences });
    }
    drop(runtime);
    let _ = store.close().await;
    Ok(results)
}

/// What stands for the recorded server's address in `config`.
const RECORDED_SERVER: &str = "{recorded-server}";

/// What a stream gave.
#[derive(Default)]
struct Streamed {
    text: String,
    /// By index: name and the arguments' text.
    calls: BTreeMap<u32, (String, String)>,
    finish: Option<String>,
}

/// What differed between a completion over the recorded stream and the case.
async fn check_provider(host: &crate::runtime::PluginHost, case: &ProviderCase) -> Vec<String> {
    use crate::runtime::provider::{CompletionRequest, ContentPart, FinishReason, Message, Role, StreamEvent};
    let request = CompletionRequest {
        model: String::new(),
        system: None,
        messages: vec![Message { role: Role::User, parts: vec![ContentPart::Text(case.prompt.clone())] }],
        tools: Vec::new(),
        temperature: None,
        max_output_tokens: None,
        options: None,
    };
    let mut streamed = Streamed::default();
    let outcome: Result<(), String> = async {
        let mut stream = host.complete(&case.model, request).await.map_err(|e| e.to_string())?;
        while let Some(event) = stream.next().await.map_err(|e| e.to_string())? {
            match event {
                StreamEvent::TextDelta(delta) => streamed.text.push_str(&delta),
                StreamEvent::ToolCallStart(start) => {
                    streamed.calls.insert(start.index, (start.name, String::new()));
                }
                StreamEvent::ToolCallDelta(delta) => streamed.calls.entry(delta.index).or_default().1.push_str(&delta.arguments),
                StreamEvent::Finish(reason) => {
                    let reason = match reason {
                        FinishReason::Stop => "stop",
                        FinishReason::ToolCalls => "tool-calls",
                        FinishReason::Length => "length",
                        FinishReason::ContentFilter => "content-filter",
                        FinishReason::Other => "other",
                    };
                    streamed.finish = Some(reason.to_string());
                }
                StreamEvent::ReasoningDelta(_) | StreamEvent::ReasoningSignature(_) | StreamEvent::Usage(_) => {}
            }
        }
        Ok(())
    }
    .await;
    let mut differences = Vec::new();
    match (outcome, &case.expect_error) {
        (Err(error), Some(expected)) if !error.contains(expected.as_str()) => {
            differences.push(format!("error: expected one holding {expected:?}\n        got {error:?}"));
        }
        (Err(_), Some(_)) => {}
        (Ok(()), Some(expected)) => differences.push(format!("expected an error holding {expected:?}, but the stream ended normally")),
        (Err(error), None) => differences.push(format!("the completion failed: {error}")),
        (Ok(()), None) => {
            if let Some(expected) = &case.expect_text
                && *expected != streamed.text
            {
                differences.push(format!("text: expected {expected:?}\n        got      {:?}", streamed.text));
            }
            if let Some(expected) = &case.expect_finish
                && Some(expected) != streamed.finish.as_ref()
            {
                differences.push(format!("finish: expected {expected}, got {}", streamed.finish.as_deref().unwrap_or("none")));
            }
            if let Some(expected) = &case.expect_tool_calls {
                let got: Vec<(String, Value)> = streamed
                    .calls
                    .into_values()
                    .map(|(name, arguments)| (name, serde_json::from_str(&arguments).unwrap_or(Value::String(arguments))))
                    .collect();
                let wanted: Vec<(String, Value)> = expected.iter().map(|c| (c.name.clone(), c.arguments.clone())).collect();
                if got != wanted {
                    differences.push(format!("tool calls: expected {wanted:?}\n        got        {got:?}"));
                }
            }
        }
    }
    differences
}

/// The server on 127.0.0.1 that answers every request with the current case's recording.
mod recorded {
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};

    /// What the next requests get.
    #[derive(Clone, Default)]
    struct Answer {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    }

    /// The server; it stops when dropped.
    pub struct Server {
        address: std::net::SocketAddr,
        answer: Arc<Mutex<Answer>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Server {
        /// Listens on a free port of 127.0.0.1.
        pub async fn start() -> std::io::Result<Server> {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
            let address = listener.local_addr()?;
            let answer = Arc::new(Mutex::new(Answer::default()));
            let app = axum::Router::new().fallback(replay).with_state(answer.clone());
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Ok(Server { address, answer, task })
        }

        /// `http://127.0.0.1:PORT`.
        pub fn url(&self) -> String {
            format!("http://{}", self.address)
        }

        /// What every request gets from now on.
        pub fn answer(&self, status: u16, content_type: &str, body: Vec<u8>) {
            *self.answer.lock().expect("not poisoned") = Answer { status, content_type: content_type.into(), body };
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Answers once the whole request is read (a reply before the client has sent its body
    /// makes the connection close under it).
    async fn replay(State(answer): State<Arc<Mutex<Answer>>>, _request: axum::body::Bytes) -> Response {
        let answer = answer.lock().expect("not poisoned").clone();
        let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, [(header::CONTENT_TYPE, answer.content_type)], answer.body).into_response()
    }
}

/// `tool {"a": 1}`, shortened.
fn describe(tool: &str, arguments: &Value) -> String {
    let arguments = arguments.to_string();
    let arguments: String =
        if arguments.chars().count() > 60 { format!("{}…", arguments.chars().take(60).collect::<String>()) } else { arguments };
    format!("{tool} {arguments}").trim().to_string()
}

/// What differed between a call's result and the case.
fn check_call(case: &CallCase, result: Result<crate::runtime::ToolOutput, String>) -> Vec<String> {
    let mut differences = Vec::new();
    match (result, &case.error) {
        (Ok(output), None) => {
            if let Some(expected) = &case.output
                && *expected != output.text
            {
                differences.push(format!("output: expected {expected:?}\n        got      {:?}", output.text));
            }
            for piece in &case.contains {
                if !output.text.contains(piece.as_str()) {
                    differences.push(format!("output does not contain {piece:?}; it is {:?}", output.text));
                }
            }
            if let Some(expected) = &case.title
                && Some(expected) != output.title.as_ref()
            {
                differences.push(format!("title: expected {expected:?}, got {:?}", output.title));
            }
        }
        (Ok(output), Some(expected)) => {
            differences.push(format!("expected an error holding {expected:?}, but the call succeeded with {:?}", output.text))
        }
        (Err(error), None) => differences.push(format!("the call failed: {error}")),
        (Err(error), Some(expected)) if !error.contains(expected.as_str()) => {
            differences.push(format!("error: expected one holding {expected:?}\n        got {error:?}"));
        }
        (Err(_), Some(_)) => {}
    }
    differences
}

/// What differed between the hooks' answer and the case.
async fn check_hook(host: &crate::runtime::PluginHost, case: &HookCase) -> Vec<String> {
    let ctx = HookContext { session_id: String::new(), agent: String::new() };
    let hooks = host.hooks();
    let mut differences = Vec::new();
    let point = case.point.hook_point();
    if !hooks.handles(point) {
        return vec![format!("no hook handles {}: export it (and enable the hook in `config` if it is off)", point.name())];
    }
    match case.point {
        Point::ToolBefore => {
            let (decision, detail) = match crate::agent::tool_hooks::before(host, &ctx, "test", &case.tool, case.arguments.clone()).await {
                Some(ToolDecision::Deny { hook, reason }) => {
                    (Decision::Deny, Some(Value::String(format!("refused by hook `{hook}`: {reason}"))))
                }
                Some(ToolDecision::Run { arguments }) if arguments == case.arguments => (Decision::Allow, None),
                Some(ToolDecision::Run { arguments }) => (Decision::Rewrite, Some(arguments)),
                None => unreachable!("a hook handles the point"),
            };
            compare_decision(case, decision, detail, &mut differences);
        }
        Point::PromptBefore => {
            let (decision, detail) = match hooks.prompt_before(&ctx, case.text.clone()).await {
                Err(rejected) => (Decision::Deny, Some(Value::String(rejected.to_string()))),
                Ok(prompt) if prompt == case.text => (Decision::Allow, None),
                Ok(prompt) => (Decision::Rewrite, Some(Value::String(prompt))),
            };
            compare_decision(case, decision, detail, &mut differences);
        }
        Point::ToolAfter => {
            let limit = host.output_limit(&case.tool);
            let (text, title) = hooks
                .tool_after(&ctx, "test", &case.tool, &case.arguments, case.text.clone(), case.title.clone(), case.is_error, limit)
                .await;
            if let Some(expected) = &case.expect_text
                && *expected != text
            {
                differences.push(format!("text: expected {expected:?}\n        got      {text:?}"));
            }
            if let Some(expected) = &case.expect_title
                && Some(expected) != title.as_ref()
            {
                differences.push(format!("title: expected {expected:?}, got {title:?}"));
            }
        }
    }
    differences
}

/// Compares a decision (and its reason or rewrite) with the case.
fn compare_decision(case: &HookCase, got: Decision, detail: Option<Value>, differences: &mut Vec<String>) {
    let shown = detail.as_ref().map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_string)).unwrap_or_default();
    if case.decision != Some(got) {
        let expected = case.decision.map(|d| d.to_string()).unwrap_or_default();
        differences.push(format!(
            "decision: expected {expected}, got {got}{}",
            if shown.is_empty() { String::new() } else { format!(" ({shown})") }
        ));
        return;
    }
    if let Some(reason) = &case.reason
        && !shown.contains(reason.as_str())
    {
        differences.push(format!("reason: expected one holding {reason:?}, got {shown:?}"));
    }
    if let Some(expected) = &case.rewritten
        && detail.as_ref() != Some(expected)
    {
        differences.push(format!("rewrite: expected {expected}, got {shown}"));
    }
}

/// The hooks that failed since `since` (`hook.failed` events), as differences.
async fn hook_failures(store: &crate::store::SessionStore, since: i64) -> Vec<String> {
    // The failures are written by the one writer in order: once this write is done, so are they.
    let _ = store.write(|_| Ok(())).await;
    let events = store.events_after(since, None, 1000).await.unwrap_or_default();
    events
        .iter()
        .filter(|e| e.kind == "hook.failed")
        .map(|e| {
            format!(
                "hook `{}` failed at {}: {}",
                e.data["hook"].as_str().unwrap_or("?"),
                e.data["point"].as_str().unwrap_or("?"),
                e.data["reason"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// Prints the results; whether every case passed.
pub fn report(spec_path: &Path, results: &[CaseResult]) -> bool {
    let failed = results.iter().filter(|r| !r.differences.is_empty()).count();
    for result in results {
        if result.differences.is_empty() {
            println!("  ok    {}", result.label);
        } else {
            println!("  FAIL  {}", result.label);
            for difference in &result.differences {
                println!("        {difference}");
            }
        }
    }
    println!("{}: {} passed, {failed} failed", spec_path.display(), results.len() - failed);
    failed == 0
}
