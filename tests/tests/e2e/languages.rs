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
