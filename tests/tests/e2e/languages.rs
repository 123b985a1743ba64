//! Plugins in other languages, end to end: scaffolded by `plugboard plugin new --lang`,
//! built with their language's toolchain, checked by `plugboard plugin test`, loaded with
//! their schema, and called within and past their grants.

use std::path::Path;

use plugboard::cli::plugin_test;
use plugboard::runtime::HostOptions;

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
    let componentize_py = plugboard_tests::toolchains::componentize_py().unwrap_or_else(|e| panic!("{e}"));
    let root = std::env::temp_dir().join(format!("plugboard-python-plugin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let project = plugboard::cli::scaffold::new_python_tool_plugin("py-notes", &root).unwrap();

    // The scaffold as it is: its own spec builds it and passes.
    let mut spec = plugin_test::read(&project.join("plugboard-test.toml")).unwrap();
    assert_eq!(spec.build[0], "componentize-py");
    spec.build[0] = componentize_py.display().to_string();
    plugin_test::build(&spec, &project).unwrap_or_else(|e| panic!("{e}"));
    let results = plugin_test::run(&spec, &project).await.unwrap_or_else(|e| panic!("{e}"));
    let failed: Vec<_> = results.iter().filter(|r| !r.differences.is_empty()).map(|r| (&r.label, &r.differences)).collect();
    assert!(failed.is_empty() && results.len() == 3, "{failed:?}");

    // Two tools that reach files, under a read-only grant of `notes`.
    let app = std::fs::read_to_string(project.join("app.py")).unwrap().replace("Tool = export(py_notes)\n", "");
    std::fs::write(project.join("app.py"), format!("{app}{READ_NOTE}")).unwrap();
    let manifest = std::fs::read_to_string(project.join("plugin.toml")).unwrap();
    std::fs::write(project.join("plugin.toml"), format!("{manifest}filesystem = \"read-write\"\n")).unwrap();
    std::fs::write(project.join("plugboard-test.toml"), SPEC).unwrap();
    let spec = plugin_test::Spec { build: spec.build, ..plugin_test::read(&project.join("plugboard-test.toml")).unwrap() };
    plugin_test::build(&spec, &project).unwrap_or_else(|e| panic!("{e}"));
    let results = plugin_test::run(&spec, &project).await.unwrap_or_else(|e| panic!("{e}"));
    let failed: Vec<_> = results.iter().filter(|r| !r.differences.is_empty()).map(|r| (&r.label, &r.differences)).collect();
    assert!(failed.is_empty() && results.len() == 5, "{failed:?}");

    // Loaded as an operator loads it: the schema derived from the dataclass.
    let workspace = root.join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let options = HostOptions {
        workspace: Some(workspace),
        config_file: Some(root.join("none.toml")),
        plugin_dirs: vec![project.clone()],
        cache_dir: None,
        skip_user_plugins: true,
        data_dir: Some(root.join("data")),
    };
    std::fs::write(root.join("none.toml"), "").unwrap();
    let app = plugboard::app::App::start(options).await.unwrap();
    let registry = app.host().registry();
    let (tool, owner) = registry.tool("read_note").expect("the Python plugin's tool is loaded");
    assert_eq!(owner.label(), "py-notes");
    assert_eq!(tool.description, "Reads a note of the workspace.");
    assert_eq!(tool.parameters["required"], serde_json::json!(["path"]));
    assert_eq!(tool.parameters["properties"]["path"]["type"], "string");
    assert_eq!(tool.parameters["additionalProperties"], false);
    assert!(Path::new(&project.join("py_notes.wasm")).is_file());
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
    let node_modules = plugboard_tests::toolchains::componentize_js().unwrap_or_else(|e| panic!("{e}"));
    let root = std::env::temp_dir().join(format!("plugboard-js-plugin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let project = plugboard::cli::scaffold::new_js_tool_plugin("js-notes", &root).unwrap();
    // `npm install`, from the copy the tests keep.
    std::os::unix::fs::symlink(&node_modules, project.join("node_modules")).unwrap();

    // The scaffold as it is: its own spec builds it and passes.
    let spec = plugin_test::read(&project.join("plugboard-test.toml")).unwrap();
    plugin_test::build(&spec, &project).unwrap_or_else(|e| panic!("{e}"));
    let results = plugin_test::run(&spec, &project).await.unwrap_or_else(|e| panic!("{e}"));
    let failed: Vec<_> = results.iter().filter(|r| !r.differences.is_empty()).map(|r| (&r.label, &r.differences)).collect();
    assert!(failed.is_empty() && results.len() == 3, "{failed:?}");

    // A tool that runs commands, granted `echo` only.
    let app = std::fs::read_to_string(project.join("app.js")).unwrap().replace("export const tool = exportTools(js_notes);\n", "");
    std::fs::write(project.join("app.js"), format!("{app}{RUN_COMMAND}")).unwrap();
    let manifest = std::fs::read_to_string(project.join("plugin.toml")).unwrap();
    std::fs::write(project.join("plugin.toml"), format!("{manifest}process = [\"echo *\", \"cat *\"]\n")).unwrap();
    std::fs::write(project.join("plugboard-test.toml"), JS_SPEC).unwrap();
    let spec = plugin_test::read(&project.join("plugboard-test.toml")).unwrap();
    plugin_test::build(&spec, &project).unwrap_or_else(|e| panic!("{e}"));
    let results = plugin_test::run(&spec, &project).await.unwrap_or_else(|e| panic!("{e}"));
    let failed: Vec<_> = results.iter().filter(|r| !r.differences.is_empty()).map(|r| (&r.label, &r.differences)).collect();
    assert!(failed.is_empty() && results.len() == 4, "{failed:?}");

    // Loaded as an operator loads it: the schema as the author wrote it.
    let workspace = root.join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(root.join("none.toml"), "").unwrap();
    let options = HostOptions {
        workspace: Some(workspace),
        config_file: Some(root.join("none.toml")),
        plugin_dirs: vec![project.clone()],
        cache_dir: None,
        skip_user_plugins: true,
        data_dir: Some(root.join("data")),
    };
    let app = plugboard::app::App::start(options).await.unwrap();
    let registry = app.host().registry();
    let (tool, owner) = registry.tool("js_notes").expect("the JavaScript plugin's tool is loaded");
    assert_eq!((owner.label().as_str(), tool.description.as_str()), ("js-notes", "Greets someone by name."));
    assert_eq!(tool.parameters["properties"]["name"]["description"], "Who to greet.");
    std::fs::remove_dir_all(&root).unwrap();
}
