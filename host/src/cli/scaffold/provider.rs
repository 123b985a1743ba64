//! `plugboard plugin new NAME --provider [--lang rust|python|js]`: a provider plugin for an
//! OpenAI-compatible Chat Completions API (the most common shape: vLLM, llama.cpp's
//! server, Ollama, LM Studio, OpenRouter), streamed, with recorded answers its
//! `plugboard-test.toml` replays. The templates live in `sdk/templates/provider/` as real
//! Rust, Python and JavaScript files; `{plugin-id}` in them becomes the plugin's id.

use std::path::{Path, PathBuf};

use super::{ScaffoldError, SdkSource, new_folder, write_crate, write_files};

const RUST_LIB: &str = include_str!("../../../../sdk/templates/provider/lib.rs");
const PYTHON_APP: &str = include_str!("../../../../sdk/templates/provider/app.py");
const JS_APP: &str = include_str!("../../../../sdk/templates/provider/app.js");
const PYTHON_HELPER: &str = include_str!("../../../../sdk/python/plugboard_provider.py");
const JS_HELPER: &str = include_str!("../../../../sdk/js/plugboard-provider.js");

/// The answers the spec replays: text, a tool call split across events, a rate limit.
const RECORDED: &[(&str, &str)] = &[
    ("recorded/hello.sse", include_str!("../../../../sdk/templates/provider/recorded/hello.sse")),
    ("recorded/tool-call.sse", include_str!("../../../../sdk/templates/provider/recorded/tool-call.sse")),
    ("recorded/rate-limited.json", include_str!("../../../../sdk/templates/provider/recorded/rate-limited.json")),
];

/// The WASI packages a Python provider's world imports wasi:http from (componentize-py
/// generates its bindings from them); see `sdk/wit-deps/README.md`.
const WASI_DEPS: &[(&str, &str)] = &[
    ("cli.wit", include_str!("../../../../sdk/wit-deps/cli.wit")),
    ("clocks.wit", include_str!("../../../../sdk/wit-deps/clocks.wit")),
    ("filesystem.wit", include_str!("../../../../sdk/wit-deps/filesystem.wit")),
    ("http.wit", include_str!("../../../../sdk/wit-deps/http.wit")),
    ("io.wit", include_str!("../../../../sdk/wit-deps/io.wit")),
    ("random.wit", include_str!("../../../../sdk/wit-deps/random.wit")),
    ("sockets.wit", include_str!("../../../../sdk/wit-deps/sockets.wit")),
];

/// The world a Python provider is built for: Plugboard's provider world, and wasi:http to
/// reach its API.
fn python_world() -> String {
    let (package, version) = crate::runtime::bindings::WIT_PACKAGE.split_once('@').expect("the package names its version");
    format!(
        "// The world this plugin is built for: Plugboard's provider world, and wasi:http to reach\n\
         // the API (the host lets requests through only to the hosts the operator grants).\n\
         package local:plugin;\n\n\
         world provider {{\n    include {package}/provider-plugin@{version};\n    import wasi:http/outgoing-handler@0.2.12;\n}}\n"
    )
}

/// Creates the provider crate `name` in `parent/name`, on plugboard-sdk.
pub fn new_provider_plugin(name: &str, parent: &Path, sdk: &SdkSource) -> Result<PathBuf, ScaffoldError> {
    let file = name.replace('-', "_");
    let lib = RUST_LIB.replace("{plugin-id}", name);
    let spec = spec(name, &format!("{{cargo-target}}/wasm32-wasip2/release/{file}"), r#"["cargo", "build", "--release"]"#);
    let readme = readme(
        name,
        "in Rust",
        &format!(
            "cargo build --release        # builds target/wasm32-wasip2/release/{file}.wasm\ncargo test                   # unit tests in the sandbox, then plugboard-test.toml (needs `plugboard` on the PATH)"
        ),
        &format!("`target/wasm32-wasip2/release/{file}.wasm`"),
    );
    let capabilities = r#"# It asks for the network; it reaches only the hosts the operator grants in plugboard.toml.
[package.metadata.plugboard.capabilities]
network = ["*"]

# The header the host adds the API key to (`api_key_env` in plugboard.toml). The plugin never
# sees the key.
[package.metadata.plugboard.credentials]
header = "authorization"
prefix = "Bearer "
"#;
    let mut files = vec![("src/lib.rs", lib.as_str()), ("plugboard-test.toml", &spec), ("README.md", &readme)];
    files.extend(RECORDED);
    write_crate(name, parent, "A Plugboard provider plugin", sdk, capabilities, &files)
}

/// Creates the Python provider project `name` in `parent/name`, built with componentize-py.
pub fn new_python_provider_plugin(name: &str, parent: &Path) -> Result<PathBuf, ScaffoldError> {
    let file = name.replace('-', "_");
    let build = format!(r#"["componentize-py", "-d", "wit", "-w", "provider", "componentize", "app", "-o", "{file}.wasm"]"#);
    let (app, manifest, spec) = (PYTHON_APP.replace("{plugin-id}", name), manifest(name, "Python"), spec(name, &file, &build));
    let readme = readme(
        name,
        "in Python, built with componentize-py",
        &format!("pip install componentize-py\nplugboard plugin test        # builds {file}.wasm, then replays recorded/ against it"),
        &format!("`{file}.wasm` and `plugin.toml`"),
    );
    let world = python_world();
    let mut files = vec![
        ("app.py", app.as_str()),
        ("plugboard_provider.py", PYTHON_HELPER),
        ("plugin.toml", &manifest),
        ("plugboard-test.toml", &spec),
        ("README.md", &readme),
        (".gitignore", "*.wasm\n__pycache__/\n"),
        ("wit/world.wit", &world),
    ];
    files.extend(RECORDED);
    let dir = new_folder(name, parent)?;
    write_files(&dir, &files)?;
    // Plugboard's package and WASI's, as the world's dependencies.
    let deps = dir.join("wit/deps");
    crate::cli::wit::write(&deps).map_err(|source| ScaffoldError::Io { path: deps.clone(), source })?;
    write_files(&deps, WASI_DEPS)?;
    Ok(dir)
}

/// Creates the JavaScript provider project `name` in `parent/name`, built with
/// componentize-js (whose `fetch` goes through wasi:http).
pub fn new_js_provider_plugin(name: &str, parent: &Path) -> Result<PathBuf, ScaffoldError> {
    let file = name.replace('-', "_");
    let (app, manifest, spec) =
        (JS_APP.replace("{plugin-id}", name), manifest(name, "JavaScript"), spec(name, &file, r#"["npm", "run", "build"]"#));
    let readme = readme(
        name,
        "in JavaScript, built with componentize-js",
        &format!("npm install\nplugboard plugin test        # builds {file}.wasm, then replays recorded/ against it"),
        &format!("`{file}.wasm` and `plugin.toml`"),
    );
    super::write_js_project(name, parent, ("plugboard-provider.js", JS_HELPER), [&app, &manifest, &spec, &readme], RECORDED)
}

/// The `plugin.toml`: the provider world, the network, and where the host puts the key.
fn manifest(name: &str, language: &str) -> String {
    format!(
        r#"# The manifest Plugboard reads beside the .wasm: what this plugin is and asks for.
id = "{name}"
version = "0.1.0"
description = "A Plugboard provider plugin in {language}"
world = "provider-plugin"

# It asks for the network; it reaches only the hosts the operator grants in plugboard.toml.
[capabilities]
network = ["*"]

# The header the host adds the API key to (`api_key_env` in plugboard.toml). The plugin never
# sees the key.
[credentials]
header = "authorization"
prefix = "Bearer "
"#
    )
}

/// The `plugboard-test.toml`: each recorded answer and what the provider should make of it.
fn spec(name: &str, file: &str, build: &str) -> String {
    format!(
        r#"# What this provider should make of its API's answers, checked by `plugboard plugin test`
# (it builds first). A server on 127.0.0.1, `{{recorded-server}}`, answers each case's
# request with its recorded body.
plugin = "{file}.wasm"
build = {build}

config = """
[plugins.{name}]
network = ["{{recorded-server}}"]
settings = {{ base_url = "{{recorded-server}}/v1", models = [{{ id = "test-model" }}] }}
"""

[[provider]]
name = "streams text"
model = "{name}/test-model"
stream = "recorded/hello.sse"
expect_text = "Hello!"
expect_finish = "stop"

[[provider]]
name = "assembles a tool call sent in pieces"
model = "{name}/test-model"
stream = "recorded/tool-call.sse"
expect_tool_calls = [{{ name = "read", arguments = {{ path = "README.md" }} }}]
expect_finish = "tool-calls"

[[provider]]
name = "a rate limit fails with the API's message"
model = "{name}/test-model"
stream = "recorded/rate-limited.json"
status = 429
content_type = "application/json"
expect_error = "Rate limit reached"
"#
    )
}

/// The README: `built` says what the project is built with, `commands` how to build and
/// test it, `files` what to copy into a plugins directory.
fn readme(name: &str, built: &str, commands: &str, files: &str) -> String {
    let key = format!("{}_API_KEY", name.replace('-', "_").to_ascii_uppercase());
    format!(
        r#"# {name}

A Plugboard provider plugin {built}: a model served over an OpenAI-compatible Chat
Completions API, streamed.

```sh
{commands}
```

To use it, put {files} in a plugins directory and grant it its API in `plugboard.toml`:

```toml
default_model = "{name}/my-model"

[plugins.{name}]
network = ["https://api.example.com"]
api_key_env = "{key}"          # the host adds it as `authorization: Bearer …`
settings = {{ base_url = "https://api.example.com/v1", models = [{{ id = "my-model" }}] }}
```

To support another API, change how `complete` writes the request and reads the stream, and
record that API's answers under `recorded/` for `plugboard-test.toml`.
"#
    )
}
