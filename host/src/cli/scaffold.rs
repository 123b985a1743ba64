//! `plugboard plugin new`: a new tool, hook or provider plugin, in Rust, Python or
//! JavaScript, ready to build and to test (providers: [`provider`]).
//!
//! The crate depends on `plugboard-sdk` by version (from crates.io), or on a local copy when
//! told to (`--sdk-path`, for work on Plugboard itself). Its `.cargo/config.toml` builds for
//! `wasm32-wasip2` and makes `plugboard plugin test-runner` cargo's runner, so `cargo test`
//! runs the unit tests in a sandbox and then the calls of its `plugboard-test.toml`.

use std::path::{Path, PathBuf};

mod provider;

pub use provider::{new_js_provider_plugin, new_provider_plugin, new_python_provider_plugin};

/// Why a plugin crate could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a valid plugin id.
    #[error("`{0}` is not a valid plugin name: use lowercase letters, digits and `-`, starting with a letter")]
    InvalidName(String),
    /// The directory exists already.
    #[error("{0} already exists; choose another name or remove it")]
    Exists(PathBuf),
    /// `--sdk-path` is not the SDK's folder.
    #[error("{0} is not plugboard-sdk's folder (it has no Cargo.toml): give the `sdk` folder of a Plugboard checkout")]
    NotSdk(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where the new crate gets `plugboard-sdk` from.
#[derive(Debug, Clone)]
pub enum SdkSource {
    /// crates.io, this version.
    Version(String),
    /// A local copy (its folder).
    Path(PathBuf),
}

impl SdkSource {
    /// The version of this binary, from crates.io.
    pub fn published() -> Self {
        SdkSource::Version(env!("CARGO_PKG_VERSION").to_string())
    }

    /// The dependency line of `Cargo.toml`.
    fn dependency(&self) -> Result<String, ScaffoldError> {
        match self {
            SdkSource::Version(version) => Ok(format!("plugboard-sdk = \"{version}\"")),
            SdkSource::Path(path) => {
                let path = path.canonicalize().map_err(|source| ScaffoldError::Io { path: path.clone(), source })?;
                if !path.join("Cargo.toml").is_file() {
                    return Err(ScaffoldError::NotSdk(path));
                }
                Ok(format!("plugboard-sdk = {{ path = {:?} }}", path.display().to_string()))
            }
        }
    }
}

/// Creates the crate `name` in `parent/name` with one example tool, and returns its path.
pub fn new_tool_plugin(name: &str, parent: &Path, sdk: &SdkSource) -> Result<PathBuf, ScaffoldError> {
    let tool = name.replace('-', "_");
    let lib = format!(
        r#"//! The `{name}` plugin.

use plugboard_sdk::prelude::*;

/// The arguments of `{tool}`. Doc comments become the descriptions the model sees.
#[args]
struct {camel}Args {{
    /// Who to greet.
    name: String,
}}

/// Greets someone by name.
#[tool]
fn {tool}(args: {camel}Args, _ctx: &Context) -> Result<Output, ToolError> {{
    if args.name.trim().is_empty() {{
        return Err(ToolError::InvalidArguments("`name` must not be empty".into()));
    }}
    Ok(Output::text(format!("Hello, {{}}!", args.name)))
}}

export_tools!({tool});

// Unit tests run in the sandbox (`cargo test`); the calls through Plugboard are in
// plugboard-test.toml, which `cargo test` runs next.
#[cfg(test)]
mod tests {{
    use super::*;

    fn context() -> Context {{
        Context {{ session_id: String::new(), call_id: "test".into(), working_directory: ".".into() }}
    }}

    #[test]
    fn greets_by_name() {{
        let output = {tool}({camel}Args {{ name: "world".into() }}, &context()).unwrap();
        assert_eq!(output.text, "Hello, world!");
    }}

    #[test]
    fn refuses_an_empty_name() {{
        assert!({tool}({camel}Args {{ name: " ".into() }}, &context()).is_err());
    }}
}}
"#,
        camel = camel_case(name)
    );
    let spec = tool_spec(
        name,
        &tool,
        &format!("{{cargo-target}}/wasm32-wasip2/release/{tool}.wasm"),
        r#"["cargo", "build", "--release"]"#,
        ("names the missing argument", "{}", "name"),
    );
    let readme = format!(
        "# {name}\n\nA Plugboard tool plugin.\n\n```sh\ncargo build --release                 # builds target/wasm32-wasip2/release/{tool}.wasm\ncargo test                            # unit tests in the sandbox, then plugboard-test.toml\nplugboard tool call --plugins target/wasm32-wasip2/release {tool} '{{\"name\":\"world\"}}'\nplugboard plugin inspect target/wasm32-wasip2/release/{tool}.wasm\n```\n\n`cargo test` needs `plugboard` on the PATH: it is the runner of `.cargo/config.toml`.\n"
    );
    write_crate(
        name,
        parent,
        "A Plugboard tool plugin",
        sdk,
        NO_CAPABILITIES,
        &[("src/lib.rs", &lib), ("plugboard-test.toml", &spec), ("README.md", &readme)],
    )
}

/// The Python helper every Python plugin carries: the schema derived from a dataclass,
/// arguments checked against it, errors mapped to the WIT's.
const PYTHON_HELPER: &str = include_str!("../../../sdk/python/plugboard_tool.py");

/// Creates the Python project `name` in `parent/name`: one typed tool (`app.py`), the helper
/// (`plugboard_tool.py`), the manifest (`plugin.toml`), the WIT package, a spec whose build
/// is `componentize-py`, and a README.
pub fn new_python_tool_plugin(name: &str, parent: &Path) -> Result<PathBuf, ScaffoldError> {
    let tool = name.replace('-', "_");
    let folder = crate::cli::wit::LINES.last().expect("one line of releases at least").folder;
    let app = format!(
        r#""""The `{name}` plugin: one typed tool."""

from dataclasses import dataclass, field

from plugboard_tool import ToolFailure, export, tool


@dataclass
class {camel}Args:
    # The fields' types and descriptions become the JSON Schema the model sees; a call
    # whose arguments do not fit it is refused before this code runs, naming the field.
    name: str = field(metadata={{"description": "Who to greet."}})


@tool(description="Greets someone by name.")
def {tool}(args: {camel}Args, context) -> str:
    if not args.name.strip():
        raise ToolFailure("`name` must not be empty")
    return f"Hello, {{args.name}}!"


# The class componentize-py exports: list every tool here.
Tool = export({tool})
"#,
        camel = camel_case(name)
    );
    let manifest = guest_manifest(
        name,
        &tool,
        "Python",
        "filesystem = \"read-only\" | \"read-write\"; network = [\"https://api.example.com\"]; env = [\"MY_TOKEN\"]",
    );
    let build = format!(r#"["componentize-py", "-d", "wit/{folder}", "-w", "tool-plugin", "componentize", "app", "-o", "{tool}.wasm"]"#);
    let spec = tool_spec(name, &tool, &format!("{tool}.wasm"), &build, WRONG_TYPE);
    let readme = format!(
        "# {name}\n\nA Plugboard tool plugin in Python, built with [componentize-py](https://pypi.org/project/componentize-py/).\n\n```sh\npip install componentize-py\ncomponentize-py -d wit/{folder} -w tool-plugin componentize app -o {tool}.wasm\nplugboard plugin test                 # builds, then runs plugboard-test.toml\nplugboard tool call --plugins . {tool} '{{\"name\":\"world\"}}'\n```\n\n`plugin.toml` is the manifest: keep it beside `{tool}.wasm`. `wit/` is Plugboard's WIT package (`plugboard plugin wit` writes it again). Only the standard library and pure-Python packages can be bundled.\n"
    );
    let files = [
        ("app.py", app.as_str()),
        ("plugboard_tool.py", PYTHON_HELPER),
        ("plugin.toml", &manifest),
        ("plugboard-test.toml", &spec),
        ("README.md", &readme),
        (".gitignore", "*.wasm\n__pycache__/\n"),
    ];
    write_guest_project(name, parent, &files)
}

/// The JavaScript helper and build script every JavaScript plugin carries.
const JS_HELPER: &str = include_str!("../../../sdk/js/plugboard-tool.js");
const JS_BUILD: &str = include_str!("../../../sdk/js/build.mjs");

/// The componentize-js release a JavaScript plugin builds with.
pub const COMPONENTIZE_JS: &str = "0.23.0";

/// The Python hook helper (`export_hooks`, `Deny`, `Rewrite`).
const PYTHON_HOOK_HELPER: &str = include_str!("../../../sdk/python/plugboard_hook.py");
/// The JavaScript hook helper (`exportHooks`).
const JS_HOOK_HELPER: &str = include_str!("../../../sdk/js/plugboard-hook.js");

/// Creates the Python hook project `name` in `parent/name`: `tool.before` refuses recursive
/// deletes, `tool.after` marks titles (as the Rust hook scaffold), built with componentize-py.
pub fn new_python_hook_plugin(name: &str, parent: &Path) -> Result<PathBuf, ScaffoldError> {
    let file = name.replace('-', "_");
    let folder = crate::cli::wit::LINES.last().expect("one line of releases at least").folder;
    let app = format!(
        r#""""The `{name}` hook plugin: one plain function per hook point."""

from plugboard_hook import Deny, export_hooks


def guard(context, tool, arguments):
    """Refuses shell commands that delete recursively, whatever the permission rules say."""
    if tool == "shell" and "rm -rf" in str(arguments.get("command", "")):
        return Deny("recursive deletes are not allowed here")
    return None


def mark(context, tool, arguments, result):
    """Notes in each call's title that this hook saw it."""
    return {{"title": f"{{result.title or ''}} (checked by {name})".strip()}}


# The class componentize-py exports: only the points given here are called.
Hooks = export_hooks(tool_before=guard, tool_after=mark)
"#
    );
    let manifest = guest_manifest_of(name, &file, "Python", "hook-plugin", "filesystem = \"read-only\"; process = [\"git *\"]");
    let build = format!(r#"["componentize-py", "-d", "wit/{folder}", "-w", "hook-plugin", "componentize", "app", "-o", "{file}.wasm"]"#);
    let spec = hook_spec(name, &format!("{file}.wasm"), &build);
    let readme = format!(
        "# {name}\n\nA Plugboard hook plugin in Python, built with componentize-py.\n\n```sh\npip install componentize-py\nplugboard plugin test                 # builds {file}.wasm, then checks the hooks' decisions\n```\n\nKeep `plugin.toml` beside `{file}.wasm`; its order and strictness are set in `plugboard.toml`: `[hooks.{name}] priority = 0, fail_closed = false`.\n"
    );
    let files = [
        ("app.py", app.as_str()),
        ("plugboard_hook.py", PYTHON_HOOK_HELPER),
        ("plugin.toml", &manifest),
        ("plugboard-test.toml", &spec),
        ("README.md", &readme),
        (".gitignore", "*.wasm\n__pycache__/\n"),
    ];
    write_guest_project(name, parent, &files)
}

/// Creates the JavaScript hook project `name` in `parent/name`, as
/// [`new_python_hook_plugin`] does in Python, built with componentize-js.
pub fn new_js_hook_plugin(name: &str, parent: &Path) -> Result<PathBuf, ScaffoldError> {
    let file = name.replace('-', "_");
    let app = format!(
        r#"// The `{name}` hook plugin: one plain function per hook point.
import {{ exportHooks }} from "./plugboard-hook.js";

// The `hooks` interface componentize-js exports: only the points given here are called.
export const hooks = exportHooks({{
  // Refuses shell commands that delete recursively, whatever the permission rules say.
  toolBefore(context, call) {{
    if (call.tool === "shell" && String(call.args.command ?? "").includes("rm -rf")) {{
      return {{ deny: "recursive deletes are not allowed here" }};
    }}
  }},
  // Notes in each call's title that this hook saw it.
  toolAfter(context, call, result) {{
    return {{ title: `${{result.title ?? ""}} (checked by {name})`.trim() }};
  }},
}});
"#
    );
    let manifest = guest_manifest_of(name, &file, "JavaScript", "hook-plugin", "process = [\"git *\"]");
    let spec = hook_spec(name, &format!("{file}.wasm"), r#"["npm", "run", "build"]"#);
    let readme = format!(
        "# {name}\n\nA Plugboard hook plugin in JavaScript, built with componentize-js.\n\n```sh\nnpm install\nplugboard plugin test                 # builds {file}.wasm, then checks the hooks' decisions\n```\n\nKeep `plugin.toml` beside `{file}.wasm`; its order and strictness are set in `plugboard.toml`: `[hooks.{name}] priority = 0, fail_closed = false`.\n"
    );
    write_js_project(name, parent, ("plugboard-hook.js", JS_HOOK_HELPER), [&app, &manifest, &spec, &readme], &[])
}

/// Writes the JavaScript project `name`: `app.js` and its helper `(file, text)`, the build
/// script and `package.json` (componentize-js from npm), the manifest, the spec, the README,
/// `extra` files, and the WIT package.
fn write_js_project(
    name: &str,
    parent: &Path,
    helper: (&str, &str),
    [app, manifest, spec, readme]: [&str; 4],
    extra: &[(&str, &str)],
) -> Result<PathBuf, ScaffoldError> {
    let package = js_package(name, &name.replace('-', "_"));
    let mut files = vec![
        ("app.js", app),
        helper,
        ("build.mjs", JS_BUILD),
        ("package.json", &package),
        ("plugin.toml", manifest),
        ("plugboard-test.toml", spec),
        ("README.md", readme),
        (".gitignore", "node_modules/\n*.wasm\n"),
    ];
    files.extend_from_slice(extra);
    write_guest_project(name, parent, &files)
}

/// The `package.json` of a JavaScript plugin: `npm run build` makes `<file>.wasm`.
fn js_package(name: &str, file: &str) -> String {
    format!(
        r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": {{
    "build": "node build.mjs {file}.wasm"
  }},
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "{COMPONENTIZE_JS}"
  }}
}}
"#
    )
}

/// Creates the JavaScript project `name` in `parent/name`: one typed tool (`app.js`), the
/// helper (`plugboard-tool.js`), `build.mjs` and `package.json` (componentize-js from npm),
/// the manifest (`plugin.toml`), the WIT package, a spec and a README.
pub fn new_js_tool_plugin(name: &str, parent: &Path) -> Result<PathBuf, ScaffoldError> {
    let tool = name.replace('-', "_");
    let app = format!(
        r#"// The `{name}` plugin: one typed tool.
import {{ defineTool, exportTools, ToolFailure }} from "./plugboard-tool.js";

const {tool} = defineTool({{
  name: "{tool}",
  description: "Greets someone by name.",
  // The JSON Schema the model sees; a call whose arguments do not fit it is refused
  // before `run`, naming the field.
  parameters: {{
    type: "object",
    properties: {{ name: {{ type: "string", description: "Who to greet." }} }},
    required: ["name"],
    additionalProperties: false,
  }},
  run(args, context) {{
    if (!args.name.trim()) throw new ToolFailure("`name` must not be empty");
    return `Hello, ${{args.name}}!`;
  }},
}});

// The `tool` interface componentize-js exports: list every tool here.
export const tool = exportTools({tool});
"#
    );
    let manifest = guest_manifest(name, &tool, "JavaScript", "process = [\"git *\"]; env = [\"MY_TOKEN\"]");
    let spec = tool_spec(name, &tool, &format!("{tool}.wasm"), r#"["npm", "run", "build"]"#, WRONG_TYPE);
    let readme = format!(
        "# {name}\n\nA Plugboard tool plugin in JavaScript, built with [componentize-js](https://www.npmjs.com/package/@bytecodealliance/componentize-js).\n\n```sh\nnpm install\nnpm run build                         # builds {tool}.wasm\nplugboard plugin test                 # builds, then runs plugboard-test.toml\nplugboard tool call --plugins . {tool} '{{\"name\":\"world\"}}'\n```\n\n`plugin.toml` is the manifest: keep it beside `{tool}.wasm`. `wit/` is Plugboard's WIT package (`plugboard plugin wit` writes it again). `app.js` may import other modules; they are bundled into the component.\n"
    );
    write_js_project(name, parent, ("plugboard-tool.js", JS_HELPER), [&app, &manifest, &spec, &readme], &[])
}

/// The `plugin.toml` of a tool plugin in `language` (beside its `.wasm`, as the SDK embeds
/// it in a Rust plugin), with `hint` naming the capabilities it may ask for.
fn guest_manifest(name: &str, tool: &str, language: &str, hint: &str) -> String {
    guest_manifest_of(name, tool, language, "tool-plugin", hint)
}

/// The `plugin.toml` of a plugin of `world` in `language`.
fn guest_manifest_of(name: &str, file: &str, language: &str, world: &str, hint: &str) -> String {
    let kind = if world == "hook-plugin" { "hook" } else { "tool" };
    format!(
        r#"# The manifest Plugboard reads beside {file}.wasm: what this plugin is and asks for.
id = "{name}"
version = "0.1.0"
description = "A Plugboard {kind} plugin in {language}"
world = "{world}"

# What it asks for; it gets only what the operator also grants in plugboard.toml.
# {hint}
[capabilities]
"#
    )
}

/// The `plugboard-test.toml` of a scaffolded hook plugin (every language's template refuses
/// `rm -rf` and marks titles): `plugin` built by `build` (a TOML array).
fn hook_spec(name: &str, plugin: &str, build: &str) -> String {
    format!(
        r#"# What this hook should decide, checked by `plugboard plugin test`.
plugin = "{plugin}"
build = {build}

[[hook]]
name = "refuses a recursive delete"
point = "tool.before"
tool = "shell"
arguments = {{ command = "rm -rf build" }}
decision = "deny"
reason = "recursive deletes"

[[hook]]
name = "lets other commands run"
point = "tool.before"
tool = "shell"
arguments = {{ command = "ls" }}
decision = "allow"

[[hook]]
name = "marks what it saw"
point = "tool.after"
tool = "read"
text = "1\tfn main() {{}}"
title = "src/main.rs"
expect_title = "src/main.rs (checked by {name})"
"#
    )
}

/// The third case of the Python and JavaScript specs: their helpers' message for an
/// argument of the wrong type.
const WRONG_TYPE: (&str, &str, &str) = ("names an argument of the wrong type", "{ name = 5 }", "field `name`: expected string");

/// The `plugboard-test.toml` of a scaffolded tool plugin (every language's template greets):
/// `plugin` built by `build` (a TOML array), and a last case `(name, arguments, error)`
/// with an argument the language's checks refuse.
fn tool_spec(name: &str, tool: &str, plugin: &str, build: &str, (last, arguments, error): (&str, &str, &str)) -> String {
    format!(
        r#"# What this plugin should do, checked by `plugboard plugin test` (it builds first).
plugin = "{plugin}"
build = {build}

# The configuration the calls run under, as in plugboard.toml: grants, settings, hooks.
config = """
[plugins.{name}]
"""

# Files of the fresh workspace each run gets.
[files]

[[call]]
name = "greets by name"
tool = "{tool}"
arguments = {{ name = "world" }}
output = "Hello, world!"

[[call]]
name = "refuses an empty name"
tool = "{tool}"
arguments = {{ name = "" }}
error = "must not be empty"

[[call]]
name = "{last}"
tool = "{tool}"
arguments = {arguments}
error = "{error}"
"#
    )
}

/// Writes a project in another language: `files`, and the WIT package under `wit/`.
fn write_guest_project(name: &str, parent: &Path, files: &[(&str, &str)]) -> Result<PathBuf, ScaffoldError> {
    let dir = new_folder(name, parent)?;
    write_files(&dir, files)?;
    crate::cli::wit::write(&dir.join("wit")).map_err(|source| ScaffoldError::Io { path: dir.join("wit"), source })?;
    Ok(dir)
}

/// Creates the crate `name` in `parent/name` with example hooks (`tool.before` refuses
/// recursive deletes, `tool.after` marks outputs), and returns its path.
pub fn new_hook_plugin(name: &str, parent: &Path, sdk: &SdkSource) -> Result<PathBuf, ScaffoldError> {
    let file = name.replace('-', "_");
    let lib = format!(
        r#"//! The `{name}` hook plugin: one plain function per hook point.
//!
//! Points: `session_created`, `prompt_before`, `tool_before`, `tool_after`, `chat_params`,
//! `on_event` (see `plugboard_sdk::hook`). What a hook returns is a draft the host checks.

use plugboard_sdk::hook::*;

/// Refuses shell commands that delete recursively, whatever the permission rules say.
fn guard(_ctx: &HookContext, call: &ToolCall) -> ToolVerdict {{
    match call.arguments["command"].as_str() {{
        Some(command) if command.contains("rm -rf") => ToolVerdict::Deny("recursive deletes are not allowed here".into()),
        _ => ToolVerdict::Allow,
    }}
}}

/// Notes in each call's title that this hook saw it.
fn mark(_ctx: &HookContext, _call: &ToolCall, result: &mut ToolResult) {{
    let title = result.title.take().unwrap_or_default();
    result.title = Some(format!("{{title}} (checked by {name})").trim().to_string());
}}

plugboard_sdk::export_hooks! {{
    tool_before: guard,
    tool_after: mark,
}}
"#
    );
    let spec = hook_spec(name, &format!("{{cargo-target}}/wasm32-wasip2/release/{file}.wasm"), r#"["cargo", "build", "--release"]"#);
    let readme = format!(
        "# {name}\n\nA Plugboard hook plugin.\n\n```sh\ncargo build --release                 # builds target/wasm32-wasip2/release/{file}.wasm\ncargo test                            # plugboard-test.toml: the hooks' decisions on given drafts\nplugboard plugin inspect target/wasm32-wasip2/release/{file}.wasm\ncp target/wasm32-wasip2/release/{file}.wasm ../my-workspace/.plugboard/plugins/   # a running server picks it up\n```\n\nIts order and strictness are set in `plugboard.toml`: `[hooks.{name}] priority = 0, fail_closed = false`.\n"
    );
    write_crate(
        name,
        parent,
        "A Plugboard hook plugin",
        sdk,
        NO_CAPABILITIES,
        &[("src/lib.rs", &lib), ("plugboard-test.toml", &spec), ("README.md", &readme)],
    )
}

/// Writes a plugin crate: its manifest, build and test settings, and `files`.
/// The capabilities a new tool or hook crate asks for: none yet, with what it may ask for.
const NO_CAPABILITIES: &str = r#"# What this plugin asks for. It gets only what the operator also grants in plugboard.toml.
# filesystem = "read-only" | "read-write"; network = ["https://api.example.com"];
# process = ["git *"]; env = ["MY_TOKEN"]
[package.metadata.plugboard.capabilities]
"#;

fn write_crate(
    name: &str,
    parent: &Path,
    description: &str,
    sdk: &SdkSource,
    capabilities: &str,
    files: &[(&str, &str)],
) -> Result<PathBuf, ScaffoldError> {
    let dir = new_folder(name, parent)?;
    let sdk = sdk.dependency()?;
    let manifest = format!(
        r#"[package]
name = "{name}"
description = "{description}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
{sdk}

{capabilities}
# A crate of its own, not a member of an enclosing workspace.
[workspace]
"#
    );
    let cargo_config = "[build]\ntarget = \"wasm32-wasip2\"\n\n# `cargo test`: the tests run in a sandbox, then plugboard-test.toml.\n[target.wasm32-wasip2]\nrunner = \"plugboard plugin test-runner\"\n";
    let common = [("Cargo.toml", manifest.as_str()), (".cargo/config.toml", cargo_config), (".gitignore", "/target\n")];
    write_files(&dir, &common)?;
    write_files(&dir, files)?;
    Ok(dir)
}

/// `parent/name`, when `name` is a valid plugin id and nothing is there yet.
fn new_folder(name: &str, parent: &Path) -> Result<PathBuf, ScaffoldError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(ScaffoldError::InvalidName(name.to_string()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    Ok(dir)
}

/// Writes `files` (relative path, content) beneath `dir`.
fn write_files(dir: &Path, files: &[(&str, &str)]) -> Result<(), ScaffoldError> {
    for (relative, content) in files {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().expect("files have a parent"))
            .map_err(|source| ScaffoldError::Io { path: path.clone(), source })?;
        std::fs::write(&path, content).map_err(|source| ScaffoldError::Io { path: path.clone(), source })?;
    }
    Ok(())
}

fn camel_case(name: &str) -> String {
    name.split('-').map(|part| part[..1].to_ascii_uppercase() + &part[1..]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_existing_directories_kept() {
        let parent = std::env::temp_dir().join(format!("plugboard-scaffold-{}", std::process::id()));
        std::fs::create_dir_all(&parent).unwrap();
        assert!(matches!(new_tool_plugin("Bad Name", &parent, &SdkSource::published()), Err(ScaffoldError::InvalidName(_))));
        let dir = new_tool_plugin("word-count", &parent, &SdkSource::published()).unwrap();
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("struct WordCountArgs") && lib.contains("fn word_count(") && lib.contains("export_tools!(word_count);"));
        assert!(matches!(new_tool_plugin("word-count", &parent, &SdkSource::published()), Err(ScaffoldError::Exists(_))));
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains(&format!("plugboard-sdk = \"{}\"", env!("CARGO_PKG_VERSION"))), "by version: {manifest}");
        let spec = crate::cli::plugin_test::read(&dir.join("plugboard-test.toml")).expect("the scaffold's spec is valid");
        assert_eq!((spec.call.len(), spec.plugin.as_path()), (3, Path::new("{cargo-target}/wasm32-wasip2/release/word_count.wasm")));
        let hook = new_hook_plugin("guard-rails", &parent, &SdkSource::published()).unwrap();
        let lib = std::fs::read_to_string(hook.join("src/lib.rs")).unwrap();
        assert!(lib.contains("export_hooks!") && lib.contains("tool_before: guard") && lib.contains("checked by guard-rails"));
        assert_eq!(crate::cli::plugin_test::read(&hook.join("plugboard-test.toml")).unwrap().hook.len(), 3);
        let python = new_python_tool_plugin("py-greeter", &parent).unwrap();
        let app = std::fs::read_to_string(python.join("app.py")).unwrap();
        assert!(
            app.contains("class PyGreeterArgs:") && app.contains("def py_greeter(") && app.contains("Tool = export(py_greeter)"),
            "{app}"
        );
        let spec = crate::cli::plugin_test::read(&python.join("plugboard-test.toml")).unwrap();
        assert_eq!((spec.plugin.as_path(), spec.build[0].as_str()), (Path::new("py_greeter.wasm"), "componentize-py"));
        assert!(python.join("wit/since_v0.1.0/tool.wit").is_file() && python.join("plugboard_tool.py").is_file());
        let manifest = std::fs::read_to_string(python.join("plugin.toml")).unwrap();
        assert!(manifest.contains("id = \"py-greeter\"") && manifest.contains("world = \"tool-plugin\""), "{manifest}");
        let js = new_js_tool_plugin("js-greeter", &parent).unwrap();
        let app = std::fs::read_to_string(js.join("app.js")).unwrap();
        assert!(app.contains("name: \"js_greeter\"") && app.contains("export const tool = exportTools(js_greeter);"), "{app}");
        let package: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(js.join("package.json")).unwrap()).unwrap();
        assert_eq!(package["devDependencies"]["@bytecodealliance/componentize-js"], COMPONENTIZE_JS);
        assert_eq!(crate::cli::plugin_test::read(&js.join("plugboard-test.toml")).unwrap().build, ["npm", "run", "build"]);
        for hook in [new_python_hook_plugin("py-guard", &parent).unwrap(), new_js_hook_plugin("js-guard", &parent).unwrap()] {
            let spec = crate::cli::plugin_test::read(&hook.join("plugboard-test.toml")).unwrap();
            assert_eq!(spec.hook.len(), 3);
            assert!(std::fs::read_to_string(hook.join("plugin.toml")).unwrap().contains("world = \"hook-plugin\""));
        }
        let providers = [
            new_python_provider_plugin("py-chat", &parent).unwrap(),
            new_js_provider_plugin("js-chat", &parent).unwrap(),
            new_provider_plugin("rs-chat", &parent, &SdkSource::published()).unwrap(),
        ];
        for (dir, source) in providers.iter().zip(["app.py", "app.js", "src/lib.rs"]) {
            let spec = crate::cli::plugin_test::read(&dir.join("plugboard-test.toml")).unwrap();
            assert_eq!(spec.provider.len(), 3);
            assert!(spec.provider.iter().all(|case| dir.join(&case.stream).is_file()), "every recorded answer is written");
            let id = dir.file_name().unwrap().to_str().unwrap();
            let code = std::fs::read_to_string(dir.join(source)).unwrap();
            assert!(code.contains(&format!("\"{id}\"")) && !code.contains("{plugin-id}"), "{code}");
        }
        for dir in &providers[..2] {
            let manifest = std::fs::read_to_string(dir.join("plugin.toml")).unwrap();
            assert!(manifest.contains("world = \"provider-plugin\"") && manifest.contains("[credentials]"), "{manifest}");
        }
        let world = std::fs::read_to_string(providers[0].join("wit/world.wit")).unwrap();
        assert!(world.contains("include plugboard:plugin/provider-plugin@0.1.1;"), "{world}");
        assert!(providers[0].join("wit/deps/since_v0.1.0/provider.wit").is_file() && providers[0].join("wit/deps/http.wit").is_file());
        let not_sdk = new_tool_plugin("other", &parent, &SdkSource::Path(parent.clone()));
        assert!(matches!(not_sdk, Err(ScaffoldError::NotSdk(_))), "{not_sdk:?}");
        assert!(matches!(new_hook_plugin("Bad", &parent, &SdkSource::published()), Err(ScaffoldError::InvalidName(_))));
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
