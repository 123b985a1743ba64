//! `plugboard plugin new`: a new tool (or hook) plugin crate, ready to build.

use std::path::{Path, PathBuf};

/// Why a plugin crate could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a valid plugin id.
    #[error("`{0}` is not a valid plugin name: use lowercase letters, digits and `-`, starting with a letter")]
    InvalidName(String),
    /// The directory exists already.
    #[error("{0} already exists; choose another name or remove it")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where the SDK's sources are, when this binary was built from a checkout that still
/// exists (then the new crate depends on them by path).
fn local_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    sdk.join("Cargo.toml").exists().then(|| sdk.canonicalize().ok()).flatten()
}

/// Creates the crate `name` in `parent/name` with one example tool, and returns its path.
pub fn new_tool_plugin(name: &str, parent: &Path) -> Result<PathBuf, ScaffoldError> {
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
    Ok(Output::text(format!("Hello, {{}}!", args.name)))
}}

export_tools!({tool});
"#,
        camel = camel_case(name)
    );
    let readme = format!(
        "# {name}\n\nA Plugboard tool plugin.\n\n```sh\ncargo build --release                 # builds target/wasm32-wasip2/release/{tool}.wasm\nplugboard tool call --plugins target/wasm32-wasip2/release {tool} '{{\"name\":\"world\"}}'\nplugboard plugin inspect target/wasm32-wasip2/release/{tool}.wasm\n```\n"
    );
    write_crate(name, parent, "A Plugboard tool plugin", &lib, &readme)
}

/// Creates the crate `name` in `parent/name` with example hooks (`tool.before` refuses
/// recursive deletes, `tool.after` marks outputs), and returns its path.
pub fn new_hook_plugin(name: &str, parent: &Path) -> Result<PathBuf, ScaffoldError> {
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
    let readme = format!(
        "# {name}\n\nA Plugboard hook plugin.\n\n```sh\ncargo build --release                 # builds target/wasm32-wasip2/release/{file}.wasm\nplugboard plugin inspect target/wasm32-wasip2/release/{file}.wasm\ncp target/wasm32-wasip2/release/{file}.wasm ../my-workspace/.plugboard/plugins/   # a running server picks it up\n```\n\nIts order and strictness are set in `plugboard.toml`: `[hooks.{name}] priority = 0, fail_closed = false`.\n"
    );
    write_crate(name, parent, "A Plugboard hook plugin", &lib, &readme)
}

/// Writes a plugin crate: its manifest, build settings, `src/lib.rs` and README.
fn write_crate(name: &str, parent: &Path, description: &str, lib: &str, readme: &str) -> Result<PathBuf, ScaffoldError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(ScaffoldError::InvalidName(name.to_string()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let sdk = match local_sdk() {
        Some(path) => format!("plugboard-sdk = {{ path = {:?} }}", path.display().to_string()),
        None => format!("plugboard-sdk = \"{}\"", env!("CARGO_PKG_VERSION")),
    };
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

# What this plugin asks for. It gets only what the operator also grants in plugboard.toml.
# filesystem = "read-only" | "read-write"; network = ["https://api.example.com"];
# process = ["git *"]; env = ["MY_TOKEN"]
[package.metadata.plugboard.capabilities]

# A crate of its own, not a member of an enclosing workspace.
[workspace]
"#
    );
    let files = [
        ("Cargo.toml", manifest.as_str()),
        (".cargo/config.toml", "[build]\ntarget = \"wasm32-wasip2\"\n"),
        (".gitignore", "/target\n"),
        ("src/lib.rs", lib),
        ("README.md", readme),
    ];
    for (relative, content) in files {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().expect("files have a parent"))
            .map_err(|source| ScaffoldError::Io { path: path.clone(), source })?;
        std::fs::write(&path, content).map_err(|source| ScaffoldError::Io { path: path.clone(), source })?;
    }
    Ok(dir)
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
        assert!(matches!(new_tool_plugin("Bad Name", &parent), Err(ScaffoldError::InvalidName(_))));
        let dir = new_tool_plugin("word-count", &parent).unwrap();
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("struct WordCountArgs") && lib.contains("fn word_count(") && lib.contains("export_tools!(word_count);"));
        assert!(matches!(new_tool_plugin("word-count", &parent), Err(ScaffoldError::Exists(_))));
        let hook = new_hook_plugin("guard-rails", &parent).unwrap();
        let lib = std::fs::read_to_string(hook.join("src/lib.rs")).unwrap();
        assert!(lib.contains("export_hooks!") && lib.contains("tool_before: guard") && lib.contains("checked by guard-rails"));
        assert!(matches!(new_hook_plugin("Bad", &parent), Err(ScaffoldError::InvalidName(_))));
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
