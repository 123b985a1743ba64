//! Plugins in other languages, end to end: scaffolded by `plugboard plugin new --lang`,
//! built with their language's toolchain, checked by `plugboard plugin test`, loaded with
//! their schema, and called within and past their grants.

use std::path::Path;

use plugboard::cli::plugin_test;
use plugboard::runtime::HostOptions;
use plugboard::runtime::provider::{
    CompletionError, CompletionRequest, ContentPart, FinishReason, Message, Role, StreamEvent, ToolCall, ToolResult, ToolSpec,
};
use plugboard_tests::{Scripted, ScriptedServer};

/// One language test at a time: each builds and compiles components of 12 to 19 MB, which
/// would otherwise take every core from the tests that run beside them.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Builds `spec`'s plugin in `project` and runs its cases, which must be `cases` and pass.
async fn build_and_pass(spec: &plugin_test::Spec, project: &Path, cases: usize) {
    plugin_test::build(spec, project).unwrap_or_else(|e| panic!("{e}"));
    let results = plugin_test::run(spec, project).await.unwrap_or_else(|e| panic!("{e}"));
    let failed: Vec<_> = results.iter().filter(|r| !r.differences.is_empty()).map(|r| (&r.label, &r.differences)).collect();
    assert!(failed.is_empty() && results.len() == cases, "{failed:?}");
}

/// Plugboard with the plugins of `project` (as an operator's `--plugins` loads them), in a
/// workspace under `root`.
async fn load(root: &Path, project: &Path) -> std::sync::Arc<plugboard::app::App> {
    load_with(root, project, "").await
}

/// [`load`], with `config` as the operator's `plugboard.toml`.
async fn load_with(root: &Path, project: &Path, config: &str) -> std::sync::Arc<plugboard::app::App> {
    let workspace = root.join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(root.join("plugboard.toml"), config).unwrap();
    let options = HostOptions {
        workspace: Some(workspace),
        config_file: Some(root.join("plugboard.toml")),
        plugin_dirs: vec![project.to_path_buf()],
        cache_dir: None,
        skip_user_plugins: true,
        data_dir: Some(root.join("data")),
    };
    plugboard::app::App::start(options).await.unwrap()
}

/// A second tool for the scaffolded Python plugin: it reads a file of the workspace.
const READ_NOTE: &str = r#"

@dataclass
class NoteArgs:
    path: str = field(metadata={"description": "The file, from the workspace."})


@tool(description="Reads a note of the workspace.")
def read_note(args: NoteArgs, context) -> str:
    import os

    with open(os.path.join(context.working_directory, args.path)) as f:
        return f.read()


@tool(description="Writes a note of the workspace.")
def write_note(args: NoteArgs, context) -> str:
    import os

    with open(os.path.join(context.working_directory, args.path), "w") as f:
        f.write("changed")
    return "written"


Tool = export(py_notes, read_note, write_note)
"#;

const SPEC: &str = r#"
plugin = "py_notes.wasm"
config = """
[plugins.py-notes]
filesystem = [{ path = "notes", access = "read-only" }]
"""

[files]
"notes/a.txt" = "granted note"
"secret.txt" = "not granted"

[[call]]
name = "greets by name"
tool = "py_notes"
arguments = { name = "world" }
output = "Hello, world!"

[[call]]
name = "reads a file beneath its grant"
tool = "read_note"
arguments = { path = "notes/a.txt" }
output = "granted note"

[[call]]
name = "does not see a file outside its grant"
tool = "read_note"
arguments = { path = "secret.txt" }
error = "No such file or directory"

[[call]]
name = "is denied a write to its read-only grant"
tool = "write_note"
arguments = { path = "notes/a.txt" }
error = "was denied filesystem access"

[[call]]
name = "names an unknown argument"
tool = "read_note"
arguments = { path = "notes/a.txt", mode = "w" }
error = "unknown field `mode`"
"#;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Python 3 with venv (installs componentize-py from PyPI); run with --include-ignored"]
async fn a_python_tool_plugin_is_scaffolded_built_and_called_within_its_grant_and_refused_past_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let componentize_py = plugboard_tests::toolchains::componentize_py().unwrap_or_else(|e| panic!("{e}"));
    let root = std::env::temp_dir().join(format!("plugboard-python-plugin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let project = plugboard::cli::scaffold::new_python_tool_plugin("py-notes", &root).unwrap();

    // The scaffold as it is: its own spec builds it and passes.
    let mut spec = plugin_test::read(&project.join("plugboard-test.toml")).unwrap();
    assert_eq!(spec.build[0], "componentize-py");
    spec.build[0] = componentize_py.display().to_string();
    build_and_pass(&spec, &project, 3).await;

    // Two tools that reach files, under a read-only grant of `notes`.
    let app = std::fs::read_to_string(project.join("app.py")).unwrap().replace("Tool = export(py_notes)\n", "");
    std::fs::write(project.join("app.py"), format!("{app}{READ_NOTE}")).unwrap();
    let manifest = std::fs::read_to_string(project.join("plugin.toml")).unwrap();
    std::fs::write(project.join("plugin.toml"), format!("{manifest}filesystem = \"read-write\"\n")).unwrap();
    std::fs::write(project.join("plugboard-test.toml"), SPEC).unwrap();
    let spec = plugin_test::Spec { build: spec.build, ..plugin_test::read(&project.join("plugboard-test.toml")).unwrap() };
    build_and_pass(&spec, &project, 5).await;

    // Loaded as an operator loads it: the schema derived from the dataclass.
    let app = load(&root, &project).await;
    let registry = app.host().registry();
    let (tool, owner) = registry.tool("read_note").expect("the Python plugin's tool is loaded");
    assert_eq!(owner.label(), "py-notes");
    assert_eq!(tool.description, "Reads a note of the workspace.");
    assert_eq!(tool.parameters["required"], serde_json::json!(["path"]));
    assert_eq!(tool.parameters["properties"]["path"]["type"], "string");
    assert_eq!(tool.parameters["additionalProperties"], false);
    std::fs::remove_dir_all(&root).unwrap();
}

/// A second tool for the scaffolded JavaScript plugin: it runs a command under its grant.
const RUN_COMMAND: &str = r#"
import { runCommand } from "./plugboard-tool.js";

const run_command = defineTool({
  name: "run_command",
  description: "Runs a command line.",
  parameters: { type: "object", properties: { command: { type: "string" } }, required: ["command"], additionalProperties: false },
  run(args) {
    const out = runCommand(args.command);
    return { text: out.stdout, title: `exit ${out.exitCode}` };
  },
});

export const tool = exportTools(js_notes, run_command);
"#;

const JS_SPEC: &str = r#"
plugin = "js_notes.wasm"
build = ["npm", "run", "build"]
config = """
[plugins.js-notes]
process = ["echo *"]
"""

[[call]]
name = "greets by name"
tool = "js_notes"
arguments = { name = "world" }
output = "Hello, world!"

[[call]]
name = "runs a granted command"
tool = "run_command"
arguments = { command = "echo granted" }
output = "granted\n"
title = "exit 0"

[[call]]
name = "is denied a command outside its grant"
tool = "run_command"
arguments = { command = "cat /etc/hostname" }
error = "was denied process access to `cat /etc/hostname`"

[[call]]
name = "names an unknown argument"
tool = "run_command"
arguments = { command = "echo x", shell = "bash" }
error = "unknown field `shell`"
"#;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Node.js and npm (installs @bytecodealliance/componentize-js); run with --include-ignored"]
async fn a_javascript_tool_plugin_is_scaffolded_built_and_runs_only_its_granted_commands() {
    let _one = ONE_AT_A_TIME.lock().await;
    let node_modules = plugboard_tests::toolchains::componentize_js().unwrap_or_else(|e| panic!("{e}"));
    let root = std::env::temp_dir().join(format!("plugboard-js-plugin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let project = plugboard::cli::scaffold::new_js_tool_plugin("js-notes", &root).unwrap();
    // `npm install`, from the copy the tests keep.
    std::os::unix::fs::symlink(&node_modules, project.join("node_modules")).unwrap();

    // The scaffold as it is: its own spec builds it and passes.
    let spec = plugin_test::read(&project.join("plugboard-test.toml")).unwrap();
    build_and_pass(&spec, &project, 3).await;

    // A tool that runs commands, granted `echo` only.
    let app = std::fs::read_to_string(project.join("app.js")).unwrap().replace("export const tool = exportTools(js_notes);\n", "");
    std::fs::write(project.join("app.js"), format!("{app}{RUN_COMMAND}")).unwrap();
    let manifest = std::fs::read_to_string(project.join("plugin.toml")).unwrap();
    std::fs::write(project.join("plugin.toml"), format!("{manifest}process = [\"echo *\", \"cat *\"]\n")).unwrap();
    std::fs::write(project.join("plugboard-test.toml"), JS_SPEC).unwrap();
    let spec = plugin_test::read(&project.join("plugboard-test.toml")).unwrap();
    build_and_pass(&spec, &project, 4).await;

    // Loaded as an operator loads it: the schema as the author wrote it.
    let app = load(&root, &project).await;
    let registry = app.host().registry();
    let (tool, owner) = registry.tool("js_notes").expect("the JavaScript plugin's tool is loaded");
    assert_eq!((owner.label().as_str(), tool.description.as_str()), ("js-notes", "Greets someone by name."));
    assert_eq!(tool.parameters["properties"]["name"]["description"], "Who to greet.");
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Python 3 with venv, Node.js and npm (installs componentize-py and componentize-js); run with --include-ignored"]
async fn hook_plugins_in_python_and_javascript_decide_as_their_specs_say() {
    let _one = ONE_AT_A_TIME.lock().await;
    let componentize_py = plugboard_tests::toolchains::componentize_py().unwrap_or_else(|e| panic!("{e}"));
    let node_modules = plugboard_tests::toolchains::componentize_js().unwrap_or_else(|e| panic!("{e}"));
    let root = std::env::temp_dir().join(format!("plugboard-hook-plugins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();

    let python = plugboard::cli::scaffold::new_python_hook_plugin("py-guard", &root).unwrap();
    let mut spec = plugin_test::read(&python.join("plugboard-test.toml")).unwrap();
    spec.build[0] = componentize_py.display().to_string();
    build_and_pass(&spec, &python, 3).await;

    let js = plugboard::cli::scaffold::new_js_hook_plugin("js-guard", &root).unwrap();
    std::os::unix::fs::symlink(&node_modules, js.join("node_modules")).unwrap();
    let spec = plugin_test::read(&js.join("plugboard-test.toml")).unwrap();
    build_and_pass(&spec, &js, 3).await;

    // Loaded as an operator loads it, the hook declares its two points and is on.
    let app = load(&root, &python).await;
    let hooks = app.host().hooks();
    assert_eq!(hooks.order(plugboard::hooks::HookPoint::ToolBefore), ["py-guard"]);
    assert_eq!(hooks.order(plugboard::hooks::HookPoint::ToolAfter), ["py-guard"]);
    assert!(hooks.order(plugboard::hooks::HookPoint::PromptBefore).is_empty(), "only the points it gives are declared");
    std::fs::remove_dir_all(&root).unwrap();
}

/// A conversation that has been through one tool call, with the `read` tool offered.
fn after_a_tool_call() -> CompletionRequest {
    let read = r#"{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}"#;
    CompletionRequest {
        model: String::new(),
        system: Some("You are terse.".into()),
        messages: vec![
            Message { role: Role::User, parts: vec![ContentPart::Text("What is in a.rs?".into())] },
            Message {
                role: Role::Assistant,
                parts: vec![ContentPart::ToolCall(ToolCall {
                    id: "call_1".into(),
                    name: "read".into(),
                    arguments: r#"{"path":"a.rs"}"#.into(),
                })],
            },
            Message {
                role: Role::Tool,
                parts: vec![ContentPart::ToolResult(ToolResult {
                    call_id: "call_1".into(),
                    content: "fn main() {}".into(),
                    is_error: false,
                })],
            },
        ],
        tools: vec![ToolSpec { name: "read".into(), description: "Reads a file".into(), parameters_schema: read.into() }],
        temperature: None,
        max_output_tokens: Some(256),
        options: None,
    }
}

/// An answer with text, a tool call whose arguments come in two pieces, and usage.
const ANSWER: &str = concat!(
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"An empty main; \"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"now b.rs. ✓\"}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_2\",\"function\":{\"name\":\"read\",\"arguments\":\"{\\\"pa\"}}]}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"th\\\":\\\"b.rs\\\"}\"}}]}}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":9}}\n\n",
    "data: [DONE]\n\n",
);

/// What a completion streamed: text, tool calls `(id, name, arguments)`, finish, usage.
async fn stream(
    host: &plugboard::runtime::PluginHost,
    model: &str,
    request: CompletionRequest,
) -> Result<(String, Vec<(String, String, String)>, Option<FinishReason>, Option<(u64, u64)>), CompletionError> {
    let mut stream = host.complete(model, request).await?;
    let (mut text, mut calls, mut finish, mut usage) = (String::new(), Vec::new(), None, None);
    while let Some(event) = stream.next().await? {
        match event {
            StreamEvent::TextDelta(t) => text.push_str(&t),
            StreamEvent::ToolCallStart(start) => calls.push((start.id, start.name, String::new())),
            StreamEvent::ToolCallDelta(delta) => calls[delta.index as usize].2.push_str(&delta.arguments),
            StreamEvent::Finish(reason) => finish = Some(reason),
            StreamEvent::Usage(u) => usage = Some((u.input_tokens, u.output_tokens)),
            StreamEvent::ReasoningDelta(_) | StreamEvent::ReasoningSignature(_) => {}
        }
    }
    Ok((text, calls, finish, usage))
}

/// The scaffolded provider `id` in `project`, built, against a server on 127.0.0.1 that
/// splits its answers every 5 bytes: what it streams, the request it sends (with the key the
/// host adds), a rate limit, and a base URL outside its network grant.
async fn check_provider(root: &Path, project: &Path, id: &str) {
    let server = ScriptedServer::start(vec![
        Scripted::sse(ANSWER, 5),
        Scripted::error(
            429,
            &[("retry-after", "3"), ("content-type", "application/json")],
            r#"{"error":{"message":"Rate limit reached"}}"#,
        ),
        Scripted::sse("data: {not json}\n\n", 64),
    ]);
    let config = format!(
        "[plugins.{id}]\nnetwork = [\"{url}\"]\napi_key = \"sk-test\"\nsettings = {{ base_url = \"{url}/v1\", models = [\"m\", {{ id = \"big\", context_tokens = 200000 }}] }}\n",
        url = server.url()
    );
    let app = load_with(root, project, &config).await;
    let host = app.host();
    let registry = host.registry();
    let models: Vec<(String, u32)> =
        registry.models().filter(|(name, ..)| name.starts_with(id)).map(|(name, m, _)| (name, m.context_tokens)).collect();
    assert_eq!(models, [(format!("{id}/m"), 32768), (format!("{id}/big"), 200000)], "{id}: the models setting, in both shapes");

    let (text, calls, finish, usage) = stream(host, &format!("{id}/m"), after_a_tool_call()).await.unwrap_or_else(|e| panic!("{id}: {e}"));
    assert_eq!(text, "An empty main; now b.rs. ✓", "{id}");
    assert_eq!(calls, [("call_2".to_string(), "read".to_string(), r#"{"path":"b.rs"}"#.to_string())], "{id}");
    assert_eq!((finish, usage), (Some(FinishReason::ToolCalls), Some((40, 9))), "{id}");
    let received = server.received();
    assert!(received[0].line.starts_with("POST /v1/chat/completions "), "{id}: {}", received[0].line);
    assert_eq!(received[0].header("authorization"), Some("Bearer sk-test"), "{id}: the host adds the key");
    let body: serde_json::Value = serde_json::from_str(&received[0].body).unwrap();
    let roles: Vec<&str> = body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool"], "{id}: {body}");
    assert_eq!(body["messages"][2]["tool_calls"][0]["id"], "call_1", "{id}: {body}");
    assert_eq!(body["messages"][3], serde_json::json!({"role": "tool", "tool_call_id": "call_1", "content": "fn main() {}"}), "{id}");
    assert_eq!(body["tools"][0]["function"]["parameters"]["required"], serde_json::json!(["path"]), "{id}: {body}");
    assert_eq!((body["model"].as_str(), body["stream"].as_bool(), body["max_tokens"].as_u64()), (Some("m"), Some(true), Some(256)), "{id}");

    match stream(host, &format!("{id}/m"), after_a_tool_call()).await {
        Err(CompletionError::Api { status, retryable, retry_after_ms, message, .. }) => {
            assert_eq!((status, retryable, retry_after_ms), (Some(429), true, Some(3000)), "{id}: {message}");
            assert!(message.contains("Rate limit reached") && message.contains(&server.url()), "{id}: {message}");
        }
        other => panic!("{id}: expected the API's 429, got {:?}", other.map(|o| o.0)),
    }
    // A chunk the template cannot parse fails the completion with the language's error, and
    // the plugin keeps serving.
    match stream(host, &format!("{id}/m"), after_a_tool_call()).await {
        Err(CompletionError::Api { retryable, message, .. }) => assert!(message.contains("JSON") && !retryable, "{id}: {message}"),
        other => panic!("{id}: expected the parse error, got {:?}", other.map(|o| o.0)),
    }
    drop(app);

    // Sent elsewhere than its grant, nothing leaves, and the error says why.
    let elsewhere = config.replace(&format!("base_url = \"{}/v1\"", server.url()), "base_url = \"http://127.0.0.1:9/v1\"");
    let app = load_with(root, project, &elsewhere).await;
    // (componentize-js's `fetch` aborts the plugin on a refused request: the host names the
    // refusal in the crash it reports.)
    let error = stream(app.host(), &format!("{id}/m"), after_a_tool_call()).await.map(|o| o.0).expect_err("a denial");
    let message = error.to_string();
    assert!(message.contains("denied network access") && message.contains("127.0.0.1:9"), "{id}: {message}");
    assert!(!error.is_retryable(), "{id}: a denial is not retried: {message}");
    assert_eq!(server.received().len(), 3, "{id}: the refused request reached no server");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Python 3 with venv, Node.js and npm (installs componentize-py and componentize-js); run with --include-ignored"]
async fn provider_plugins_in_python_and_javascript_stream_translate_and_get_their_key_from_the_host() {
    let _one = ONE_AT_A_TIME.lock().await;
    let componentize_py = plugboard_tests::toolchains::componentize_py().unwrap_or_else(|e| panic!("{e}"));
    let node_modules = plugboard_tests::toolchains::componentize_js().unwrap_or_else(|e| panic!("{e}"));
    let root = std::env::temp_dir().join(format!("plugboard-provider-plugins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();

    // Each scaffold as it is: its own spec builds it and passes against its recordings.
    let python = plugboard::cli::scaffold::new_python_provider_plugin("py-chat", &root).unwrap();
    let mut spec = plugin_test::read(&python.join("plugboard-test.toml")).unwrap();
    spec.build[0] = componentize_py.display().to_string();
    build_and_pass(&spec, &python, 3).await;
    check_provider(&root.join("py"), &python, "py-chat").await;

    let js = plugboard::cli::scaffold::new_js_provider_plugin("js-chat", &root).unwrap();
    std::os::unix::fs::symlink(&node_modules, js.join("node_modules")).unwrap();
    let spec = plugin_test::read(&js.join("plugboard-test.toml")).unwrap();
    build_and_pass(&spec, &js, 3).await;
    check_provider(&root.join("js"), &js, "js-chat").await;
    std::fs::remove_dir_all(&root).unwrap();
}
