//! Plugins in other languages, end to end: scaffolded by `plugboard plugin new --lang`,
//! built with their language's toolchain, checked by `plugboard plugin test`, loaded with
//! their schema, and called within and past their grants.

use std::path::Path;

use plugboard::cli::plugin_test;
use plugboard::runtime::HostOptions;

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
    let workspace = root.join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(root.join("none.toml"), "").unwrap();
    let options = HostOptions {
        workspace: Some(workspace),
        config_file: Some(root.join("none.toml")),
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
