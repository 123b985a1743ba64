//! The `plugboard` binary, run as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "cli/mcp.rs"]
mod mcp;
#[path = "cli/registry.rs"]
mod registry;

fn plugboard(workspace: &Path, args: &[&str]) -> Output {
    isolated(&mut Command::new(env!("CARGO_BIN_EXE_plugboard")), workspace).args(args).output().expect("the binary runs")
}

/// The binary in `workspace`, with user directories of its own beside it (never the real
/// user's) and the provider key the test configurations name in `api_key_env`.
fn isolated<'a>(command: &'a mut Command, workspace: &Path) -> &'a mut Command {
    let beside = workspace.parent().expect("the workspace has a parent");
    command
        .current_dir(workspace)
        .env("XDG_CACHE_HOME", std::env::temp_dir().join("plugboard-cli-cache"))
        .env("XDG_CONFIG_HOME", beside.join("user-config"))
        .env("XDG_DATA_HOME", beside.join("user-data"))
        .env("PLUGBOARD_TEST_KEY", "sk-test")
        .env_remove("WORKSPACE_DIR")
}

/// Trusts the workspace's own files as they are, as the operator does (in `data_dir`, or
/// the user's data directory).
fn trust(workspace: &Path, data_dir: Option<&str>) {
    let mut args = vec!["trust"];
    args.extend(data_dir.iter().flat_map(|d| ["--data-dir", d]));
    let out = plugboard(workspace, &args);
    assert!(out.status.success(), "plugboard trust: {}{}", text(&out.stdout), text(&out.stderr));
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("plugboard-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("workspace")).unwrap();
        TempDir(dir)
    }

    fn workspace(&self) -> PathBuf {
        self.0.join("workspace")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn tool_call_read_prints_the_file_with_line_numbers() {
    let tmp = TempDir::new("read");
    let ws = tmp.workspace();
    std::fs::write(ws.join("README.md"), "# Title\n\nBody text.\n").unwrap();
    let out = plugboard(&ws, &["tool", "call", "read", r#"{"path":"README.md"}"#]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "     1\t# Title\n     2\t\n     3\tBody text.\n");
}

#[test]
fn tool_call_outside_the_workspace_fails_naming_the_filesystem_grant() {
    let tmp = TempDir::new("outside");
    let ws = tmp.workspace();
    std::fs::write(tmp.0.join("outside"), "secret").unwrap();
    let out = plugboard(&ws, &["tool", "call", "read", r#"{"path":"../outside"}"#]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("denied filesystem access"), "{stderr}");
    assert!(stderr.contains("[plugins.read]") && stderr.contains("filesystem = ["), "{stderr}");
    assert!(!text(&out.stdout).contains("secret"));
}

#[test]
fn tool_call_with_hooks_masks_the_output_and_records_the_call_for_audit_log() {
    let tmp = TempDir::new("with-hooks");
    let ws = tmp.workspace();
    std::fs::write(ws.join("env.txt"), "OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz0123\n").unwrap();
    std::fs::create_dir_all(ws.join("audit")).unwrap();
    let config = tmp.0.join("operator.toml");
    std::fs::write(
        &config,
        r#"
        [hooks.redact-secrets]
        enabled = true
        [hooks.audit-log]
        enabled = true
        [plugins.audit-log]
        filesystem = [{ path = "audit", access = "read-write" }]
        settings = { path = "audit/tool-calls.jsonl" }
        "#,
    )
    .unwrap();
    let data = tmp.0.join("data");
    let call = |extra: &[&str]| {
        let mut args = vec!["--config", config.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "tool", "call"];
        args.extend(extra);
        args.extend(["read", r#"{"path":"env.txt"}"#]);
        plugboard(&ws, &args)
    };
    let audit = ws.join("audit/tool-calls.jsonl");

    // Without the flag the call is the plugin's alone: nothing masks it, nothing records it.
    let plain = call(&[]);
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    assert!(text(&plain.stdout).contains("sk-proj-abcdefghijklmnopqrstuvwxyz0123"), "{}", text(&plain.stdout));
    assert!(!audit.exists(), "a call without hooks is not audited");

    let hooked = call(&["--with-hooks"]);
    assert!(hooked.status.success(), "{}", text(&hooked.stderr));
    let out = text(&hooked.stdout);
    assert!(out.contains("OPENAI_API_KEY=[REDACTED:openai-key]") && !out.contains("sk-proj-abc"), "{out}");
    // The command ended after audit-log had written its line.
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&audit).unwrap().lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!((lines[0]["tool"].as_str(), lines[0]["state"].as_str()), (Some("read"), Some("completed")));
    assert_eq!(lines[0]["input"], serde_json::json!({ "path": "env.txt" }));
    assert_eq!(lines[0]["session_id"], "", "a direct call belongs to no session");

    let as_json = call(&["--with-hooks", "--json"]);
    assert!(as_json.status.success(), "{}", text(&as_json.stderr));
    let result: serde_json::Value = serde_json::from_slice(&as_json.stdout).expect("--json prints JSON");
    assert!(result["text"].as_str().unwrap().contains("[REDACTED:openai-key]"), "{result}");
    let missing = plugboard(
        &ws,
        &[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "tool",
            "call",
            "--with-hooks",
            "read",
            r#"{"path":"gone.txt"}"#,
        ],
    );
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("gone.txt"), "{}", text(&missing.stderr));
    let lines = std::fs::read_to_string(&audit).unwrap();
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!((lines.lines().count(), last["state"].as_str()), (3, Some("error")), "{lines}");
}

#[test]
fn tool_list_json_lists_every_first_party_tool_with_its_schema() {
    let tmp = TempDir::new("list");
    let out = plugboard(&tmp.workspace(), &["tool", "list", "--json"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let tools: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = tools.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["edit", "fetch", "glob", "grep", "list", "read", "shell", "write"]);
    let read = &tools[5];
    assert_eq!(read["plugin"], "read");
    assert_eq!(read["parameters"]["required"], serde_json::json!(["path"]));
    assert_eq!(read["parameters"]["properties"]["path"]["type"], "string");
}

#[test]
fn plugin_inspect_shows_requested_and_granted_capabilities() {
    let tmp = TempDir::new("inspect");
    let ws = tmp.workspace();
    std::fs::write(ws.join("plugboard.toml"), "[plugins.fetch]\nnetwork = [\"https://*.example.com\"]\n").unwrap();
    trust(&ws, None);
    let out = plugboard(&ws, &["plugin", "inspect", "fetch"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("plugin      fetch 0.1.0"), "{stdout}");
    assert!(stdout.contains("network     requested: *"), "{stdout}");
    assert!(stdout.contains("granted:   https://*.example.com"), "{stdout}");
    assert!(stdout.contains("grants: from the configuration"), "{stdout}");
}

#[test]
fn an_invalid_configuration_stops_with_its_location() {
    let tmp = TempDir::new("badconfig");
    let ws = tmp.workspace();
    std::fs::write(ws.join("plugboard.toml"), "[limits]\ntimeout = 5\n").unwrap();
    // `plugboard trust` checks the file before it trusts it.
    let out = plugboard(&ws, &["trust"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("plugboard.toml") && stderr.contains("timeout") && stderr.contains("line 2"), "{stderr}");
    // An operator's own file is not asked to be trusted.
    std::fs::rename(ws.join("plugboard.toml"), ws.join("../operator.toml")).unwrap();
    let out = plugboard(&ws, &["tool", "list", "--config", "../operator.toml"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("operator.toml") && stderr.contains("timeout") && stderr.contains("line 2"), "{stderr}");
}

/// `cargo ARGS` in a scaffolded crate, with this build's `plugboard` first on the PATH (it is
/// the crate's test runner) and the workspace's guest build directory, so that the SDK's
/// dependencies are not compiled again.
fn cargo_in(crate_dir: &Path, args: &[&str]) -> Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_plugboard")).parent().unwrap();
    let path =
        std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap()))).unwrap();
    Command::new(env!("CARGO"))
        .args(args)
        .current_dir(crate_dir)
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", guest_target())
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap()
}

fn guest_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests")
}

/// `plugboard plugin new ARGS` in `tmp`, on this checkout's SDK.
fn scaffold(tmp: &TempDir, args: &[&str]) {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let mut all = vec!["plugin", "new"];
    all.extend(args);
    all.extend(["--sdk-path", sdk.to_str().unwrap()]);
    let out = plugboard(&tmp.0, &all);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
}

#[test]
fn a_scaffolded_plugin_passes_its_own_tests_builds_and_runs() {
    let tmp = TempDir::new("scaffold");
    scaffold(&tmp, &["greeter"]);
    let crate_dir = tmp.0.join("greeter");
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("plugboard-sdk = { path = "), "--sdk-path is a path dependency: {manifest}");
    // `cargo test`: the unit tests in the sandbox, then plugboard-test.toml through the host.
    let test = cargo_in(&crate_dir, &["test"]);
    let (stdout, stderr) = (text(&test.stdout), text(&test.stderr));
    assert!(test.status.success(), "the scaffold's own tests pass: {stdout}{stderr}");
    assert!(stdout.contains("test tests::greets_by_name ... ok"), "{stdout}");
    assert!(stdout.contains("ok    call greets by name") && stdout.contains("plugboard-test.toml: 3 passed, 0 failed"), "{stdout}");
    let plugins = tmp.0.join("built");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(guest_target().join("wasm32-wasip2/release/greeter.wasm"), plugins.join("greeter.wasm")).unwrap();
    let out = plugboard(&tmp.workspace(), &["tool", "call", "--plugins", plugins.to_str().unwrap(), "greeter", r#"{"name":"world"}"#]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hello, world!\n");

    // A case that does not hold fails the run and says what differed.
    let spec = crate_dir.join("plugboard-test.toml");
    std::fs::write(&spec, std::fs::read_to_string(&spec).unwrap().replace("output = \"Hello, world!\"", "output = \"Hi, world!\""))
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["plugin", "test", "--no-build"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", guest_target())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("FAIL  call greets by name\n        output: expected \"Hi, world!\"\n        got      \"Hello, world!\""),
        "{stdout}"
    );
    assert!(stdout.contains("2 passed, 1 failed"), "{stdout}");
    // A unit test that fails fails `cargo test` before the spec runs.
    let lib = crate_dir.join("src/lib.rs");
    std::fs::write(
        &lib,
        std::fs::read_to_string(&lib).unwrap().replace("assert_eq!(output.text, \"Hello, world!\")", "assert_eq!(output.text, \"Hey\")"),
    )
    .unwrap();
    let test = cargo_in(&crate_dir, &["test"]);
    let (stdout, stderr) = (text(&test.stdout), text(&test.stderr));
    assert!(!test.status.success() && !stdout.contains("running plugboard-test.toml"), "{stdout}");
    assert!(stderr.contains("right: \"Hey\"") && stderr.contains("a test panicked"), "{stderr}");
}

#[test]
fn the_sdk_as_packaged_for_crates_io_builds_a_new_plugin_without_the_repository() {
    let tmp = TempDir::new("sdk-package");
    let version = env!("CARGO_PKG_VERSION");
    // What `cargo publish` would upload: the SDK and its macros, each alone.
    let out = Command::new(env!("CARGO"))
        .args(["package", "-p", "plugboard-sdk-macros", "-p", "plugboard-sdk", "--no-verify", "--allow-dirty"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env("CARGO_TARGET_DIR", guest_target())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let registry = tmp.0.join("registry");
    std::fs::create_dir_all(&registry).unwrap();
    for name in ["plugboard-sdk", "plugboard-sdk-macros"] {
        let packaged = guest_target().join(format!("package/{name}-{version}.crate"));
        let out = Command::new("tar").arg("xzf").arg(&packaged).arg("-C").arg(&registry).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // A new plugin on the unpacked SDK, its macros resolved to their unpacked copy as
    // crates.io would resolve them.
    let sdk = registry.join(format!("plugboard-sdk-{version}"));
    let out = plugboard(&tmp.0, &["plugin", "new", "greeter", "--dir", tmp.0.to_str().unwrap(), "--sdk-path", sdk.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest = tmp.0.join("greeter/Cargo.toml");
    let macros = registry.join(format!("plugboard-sdk-macros-{version}"));
    let patch = format!("\n[patch.crates-io]\nplugboard-sdk-macros = {{ path = {:?} }}\n", macros.display().to_string());
    std::fs::write(&manifest, std::fs::read_to_string(&manifest).unwrap() + &patch).unwrap();
    let build = cargo_in(&tmp.0.join("greeter"), &["build", "--release"]);
    assert!(build.status.success(), "the packaged SDK builds a plugin: {}", text(&build.stderr));
    let compiled = format!("Compiling plugboard-sdk v{version} ({})", sdk.display());
    assert!(text(&build.stderr).contains(&compiled), "built from the package alone: {}", text(&build.stderr));
}

#[test]
fn a_scaffolded_provider_plugin_passes_its_unit_tests_and_its_recorded_streams() {
    let tmp = TempDir::new("scaffold-provider");
    scaffold(&tmp, &["my-api", "--provider"]);
    let crate_dir = tmp.0.join("my-api");
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("[package.metadata.plugboard.credentials]\nheader = \"authorization\""), "{manifest}");
    // The unit tests run although the crate imports Plugboard's host and wasi:http; then the
    // recorded streams, through the host.
    let test = cargo_in(&crate_dir, &["test"]);
    let (stdout, stderr) = (text(&test.stdout), text(&test.stderr));
    assert!(test.status.success(), "the scaffold's own tests pass: {stdout}{stderr}");
    assert!(stdout.contains("test tests::a_tool_result_follows_the_assistant_message_that_called_it ... ok"), "{stdout}");
    assert!(stdout.contains("ok    provider assembles a tool call sent in pieces") && stdout.contains("3 passed, 0 failed"), "{stdout}");
    let wasm = guest_target().join("wasm32-wasip2/release/my_api.wasm");
    let out = plugboard(&tmp.workspace(), &["plugin", "inspect", wasm.to_str().unwrap()]);
    assert!(text(&out.stdout).contains("world       provider-plugin"), "{}", text(&out.stdout));

    // A unit test that calls a host function fails, naming it: a test binary has none.
    let lib = crate_dir.join("src/lib.rs");
    let asks = "\n#[cfg(test)]\nmod asks_the_host {\n    #[test]\n    fn for_its_settings() {\n        let _ = <super::Api as plugboard_sdk::provider::Provider>::info();\n    }\n}\n";
    std::fs::write(&lib, std::fs::read_to_string(&lib).unwrap() + asks).unwrap();
    let test = cargo_in(&crate_dir, &["test"]);
    let (stdout, stderr) = (text(&test.stdout), text(&test.stderr));
    assert!(!test.status.success() && !stdout.contains("running plugboard-test.toml"), "{stdout}");
    assert!(stderr.contains("the test called `plugboard:plugin/host@0.1.1#config`, a Plugboard host function"), "{stderr}");
}

#[test]
fn a_scaffolded_hook_plugin_passes_its_own_tests_and_declares_its_hooks() {
    let tmp = TempDir::new("scaffold-hook");
    scaffold(&tmp, &["guard-rails", "--hook"]);
    let crate_dir = tmp.0.join("guard-rails");
    let test = cargo_in(&crate_dir, &["test"]);
    let stdout = text(&test.stdout);
    assert!(test.status.success(), "{stdout}{}", text(&test.stderr));
    assert!(stdout.contains("ok    hook refuses a recursive delete") && stdout.contains("3 passed, 0 failed"), "{stdout}");
    let wasm = guest_target().join("wasm32-wasip2/release/guard_rails.wasm");
    let out = plugboard(&tmp.workspace(), &["plugin", "inspect", wasm.to_str().unwrap()]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("world       hook-plugin") && stdout.contains("hooks       tool.before, tool.after"), "{stdout}");
    // Installed in a workspace, it is on by default.
    let plugins = tmp.workspace().join(".plugboard/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(&wasm, plugins.join("guard_rails.wasm")).unwrap();
    trust(&tmp.workspace(), None);
    let out = plugboard(&tmp.workspace(), &["plugin", "list"]);
    assert!(
        text(&out.stdout).contains("guard-rails 0.1.0") && text(&out.stdout).contains("hooks: tool.before, tool.after (on)"),
        "{}",
        text(&out.stdout)
    );
    // A decision other than the one expected is named, with the hook's reason.
    let spec = crate_dir.join("plugboard-test.toml");
    let text_of_spec = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text_of_spec.replacen("decision = \"deny\"", "decision = \"allow\"", 1)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(["plugin", "test", "--no-build"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", guest_target())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("decision: expected allow, got deny (refused by hook `guard-rails`: recursive deletes are not allowed here)"),
        "{stdout}"
    );
}

#[test]
fn plugin_test_checks_a_provider_plugin_against_recorded_streams() {
    let tmp = TempDir::new("provider-spec");
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let words = [
        chunk(r#"{"role":"assistant","content":"Hel"}"#, "null"),
        chunk(r#"{"content":"lo!"}"#, "null"),
        chunk("{}", "\"stop\""),
        "data: [DONE]\n\n".into(),
    ]
    .concat();
    let call = [
        chunk(
            r#"{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"read","arguments":"{\"path\":"}}]}"#,
            "null",
        ),
        chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"a.txt\"}"}}]}"#, "null"),
        chunk("{}", "\"tool_calls\""),
        "data: [DONE]\n\n".into(),
    ]
    .concat();
    std::fs::write(tmp.0.join("text.sse"), words).unwrap();
    std::fs::write(tmp.0.join("call.sse"), call).unwrap();
    std::fs::write(tmp.0.join("denied.json"), r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}"#)
        .unwrap();
    let openai = guest_target().join("wasm32-wasip2/release/plugboard_plugin_openai.wasm");
    assert!(openai.is_file(), "the first-party plugins are built into {}", guest_target().display());
    let spec = |expected_text: &str| {
        format!(
            r#"plugin = "{}"
config = """
[plugins.openai]
network = ["{{recorded-server}}"]
api_key = "sk-test"
settings = {{ base_url = "{{recorded-server}}/v1", models = [{{ id = "m" }}] }}
"""
[[provider]]
name = "streams text"
model = "openai/m"
stream = "text.sse"
expect_text = "{expected_text}"
expect_finish = "stop"

[[provider]]
name = "streams a tool call"
model = "openai/m"
stream = "call.sse"
expect_tool_calls = [{{ name = "read", arguments = {{ path = "a.txt" }} }}]
expect_finish = "tool-calls"

[[provider]]
name = "reports a refused key"
model = "openai/m"
stream = "denied.json"
status = 401
content_type = "application/json"
expect_error = "Incorrect API key provided"
"#,
            openai.display()
        )
    };
    let file = tmp.0.join("plugboard-test.toml");
    std::fs::write(&file, spec("Hello!")).unwrap();
    let out = plugboard(&tmp.workspace(), &["plugin", "test", file.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("ok    provider streams a tool call") && stdout.contains("3 passed, 0 failed"), "{stdout}");

    std::fs::write(&file, spec("Goodbye!")).unwrap();
    let out = plugboard(&tmp.workspace(), &["plugin", "test", file.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("FAIL  provider streams text\n        text: expected \"Goodbye!\"\n        got      \"Hello!\""), "{stdout}");
}

#[test]
fn a_plugin_test_spec_that_expects_nothing_or_escapes_the_workspace_is_refused_with_its_reason() {
    let tmp = TempDir::new("bad-spec");
    let spec = tmp.0.join("plugboard-test.toml");
    for (content, reason) in [
        ("plugin = \"x.wasm\"\n[[call]]\ntool = \"echo\"\n", "expects nothing: give `output`, `contains` or `error`"),
        ("plugin = \"x.wasm\"\n[files]\n\"../escape\" = \"x\"\n", "`../escape` must be a relative path beneath the workspace"),
        ("plugin = \"x.wasm\"\n[[hook]]\npoint = \"tool.whenever\"\n", "unknown variant `tool.whenever`"),
        ("plugin = \"x.wasm\"\nbuidl = []\n", "unknown field `buidl`"),
        ("plugin = \"missing.wasm\"\n", "missing.wasm did not load: there is no such file"),
    ] {
        std::fs::write(&spec, content).unwrap();
        let out = plugboard(&tmp.workspace(), &["plugin", "test", spec.to_str().unwrap()]);
        assert!(!out.status.success() && text(&out.stderr).contains(reason), "{content}: {}", text(&out.stderr));
    }
}

/// `tmp`'s workspace with `plugboard.toml` pointing the `openai` provider at `url`, trusted
/// for the data directory `tmp/data`: the workspace and that directory.
fn provider_workspace(tmp: &TempDir, url: &str) -> (PathBuf, PathBuf) {
    let (ws, data) = (tmp.workspace(), tmp.0.join("data"));
    std::fs::write(ws.join("plugboard.toml"), provider_config(url)).unwrap();
    trust(&ws, Some(data.to_str().unwrap()));
    (ws, data)
}

/// `plugboard.toml` pointing the `openai` provider at a local server.
fn provider_config(url: &str) -> String {
    format!(
        "default_model = \"openai/test-model\"\n[plugins.openai]\nnetwork = [\"{url}\"]\napi_key_env = \"PLUGBOARD_TEST_KEY\"\n\
         settings = {{ base_url = \"{url}/v1\", models = [{{ id = \"test-model\" }}] }}\n"
    )
}

/// An OpenAI-style stream: `words` text chunks, one every `delay`.
fn streamed_words(words: &[&str], delay: std::time::Duration) -> plugboard_tests::Scripted {
    let mut pieces: Vec<Vec<u8>> = words
        .iter()
        .map(|w| format!("data: {}\n\n", serde_json::json!({"choices": [{"index": 0, "delta": {"content": w}}]})).into_bytes())
        .collect();
    let finish = serde_json::json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    pieces.push(format!("data: {finish}\n\ndata: [DONE]\n\n").into_bytes());
    plugboard_tests::Scripted { status: 200, headers: vec![("content-type".into(), "text/event-stream".into())], pieces, delay }
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Starts `plugboard run "count slowly"` and returns once `marker` was printed (what is
/// printed was stored first).
fn run_until_streaming(ws: &Path, data_dir: &str, marker: &str) -> std::process::Child {
    use std::io::Read;
    let mut child = isolated(&mut Command::new(env!("CARGO_BIN_EXE_plugboard")), ws)
        .args(["run", "--stream", "--data-dir", data_dir, "count slowly"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(marker) {
        let mut buf = [0u8; 256];
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            panic!("plugboard run ended before streaming: {stderr}");
        }
        seen.extend_from_slice(&buf[..n]);
    }
    child.stdout = Some(stdout);
    child
}

fn slow_words(n: usize) -> plugboard_tests::Scripted {
    let words: Vec<String> = (0..n).map(|i| format!("w{i} ")).collect();
    streamed_words(&words.iter().map(String::as_str).collect::<Vec<_>>(), std::time::Duration::from_millis(40))
}

#[test]
fn ctrl_c_cancels_the_run_and_records_the_answer_aborted() {
    let server = plugboard_tests::ScriptedServer::start(vec![slow_words(200)]);
    let tmp = TempDir::new("ctrl-c");
    let (ws, data) = provider_workspace(&tmp, &server.url());
    let data_arg = data.to_str().unwrap();
    let child = run_until_streaming(&ws, data_arg, "w2 ");
    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cancelled"), "{}", text(&out.stderr));
    let sessions = json_of(&plugboard(&ws, &["session", "list", "--json", "--data-dir", data_arg]));
    assert_eq!(sessions[0]["status"], "idle");
    let id = sessions[0]["id"].as_str().unwrap();
    let shown = json_of(&plugboard(&ws, &["session", "show", id, "--json", "--data-dir", data_arg]));
    assert_eq!(shown["messages"][1]["status"], "aborted");
}

#[test]
fn a_turn_killed_with_sigkill_is_marked_interrupted_and_the_session_goes_on_after_a_restart() {
    let server = plugboard_tests::ScriptedServer::start(vec![
        slow_words(200),
        streamed_words(&["after ", "the ", "restart"], std::time::Duration::ZERO),
    ]);
    let tmp = TempDir::new("kill9");
    let (ws, data) = provider_workspace(&tmp, &server.url());
    let data_arg = data.to_str().unwrap();

    let mut child = run_until_streaming(&ws, data_arg, "w3 ");
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());

    // Before any restart: the history is intact up to the last recorded part.
    let sessions = json_of(&plugboard(&ws, &["session", "list", "--json", "--data-dir", data_arg]));
    let id = sessions[0]["id"].as_str().unwrap().to_string();
    let shown = json_of(&plugboard(&ws, &["session", "show", &id, "--json", "--data-dir", data_arg]));
    let answer = &shown["messages"][1];
    assert_eq!(answer["status"], "running");
    let partial =
        answer["parts"].as_array().unwrap().iter().find(|p| p["kind"] == "text").unwrap()["data"]["text"].as_str().unwrap().to_string();
    assert!(partial.starts_with("w0 w1 w2 w3 ") && !partial.contains("w199"), "{partial}");

    // A new process continues the session: the killed turn is closed as interrupted.
    let out = plugboard(&ws, &["run", "--data-dir", data_arg, "--session", &id, "go on"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("after the restart"), "{}", text(&out.stdout));
    let shown = json_of(&plugboard(&ws, &["session", "show", &id, "--json", "--data-dir", data_arg]));
    assert_eq!(shown["session"]["status"], "idle");
    let statuses: Vec<&str> = shown["messages"].as_array().unwrap().iter().map(|m| m["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["completed", "interrupted", "completed", "completed"]);
    assert!(shown["messages"][1]["error"].as_str().unwrap().contains("interrupted"));
    let kept = shown["messages"][1]["parts"].as_array().unwrap().iter().find(|p| p["kind"] == "text").unwrap()["data"]["text"].clone();
    assert_eq!(kept.as_str().unwrap(), partial, "recovery keeps what was recorded");
    // The model saw the interrupted answer as part of the conversation.
    let body: serde_json::Value = serde_json::from_str(&server.received()[1].body).unwrap();
    let roles: Vec<&str> = body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
}

/// The size of the session database's write-ahead log in `data_dir` (0 when there is none).
fn wal_bytes(data_dir: &Path) -> u64 {
    std::fs::metadata(data_dir.join("plugboard.db-wal")).map_or(0, |m| m.len())
}

/// `plugboard serve --port 0` in a workspace, killed on drop.
struct Serve {
    child: std::process::Child,
    url: String,
}

impl Serve {
    async fn start(ws: &Path, data_dir: &str) -> Serve {
        Self::start_with(ws, data_dir, &[]).await
    }

    async fn start_with(ws: &Path, data_dir: &str, extra: &[&str]) -> Serve {
        use std::io::BufRead;
        let mut child =
            isolated(&mut Command::new(env!("CARGO_BIN_EXE_plugboard")), ws)
                .args(["serve", "--port", "0", "--data-dir", data_dir])
                .args(extra)
                .env_remove("PLUGBOARD_SHARED_SECRET")
                .env_remove("PORT")
                .env("LOG_FORMAT", "json")
                .stdout(std::process::Stdio::piped())
                .stderr(
                    std::fs::File::create(ws.join(format!(
                        "serve-{}.log",
                        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                    )))
                    .unwrap(),
                )
                .spawn()
                .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("plugboard listening on ").expect("the address is printed").to_string();
        let serve = Serve { child, url };
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(format!("{}/ready", serve.url)).await
                && r.status() == 200
            {
                return serve;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the server did not become ready");
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new().post(format!("{}{path}", self.url)).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn stream(&self, path: &str) -> plugboard_tests::SseReader {
        plugboard_tests::SseReader::new(reqwest::get(format!("{}{path}", self.url)).await.unwrap())
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        assert!(Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success());
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the server did not stop within 15 s of SIGTERM");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `stream` until the `complete` event of the activity that answered `input`.
async fn until_answered(stream: &mut plugboard_tests::SseReader, input: &serde_json::Value) -> serde_json::Value {
    loop {
        let frame =
            tokio::time::timeout(std::time::Duration::from_secs(30), stream.next()).await.expect("in time").expect("the stream goes on");
        if frame.event == "complete" && frame.data["data"]["input_ids"].as_array().is_some_and(|ids| ids.contains(input)) {
            return frame.data["data"].clone();
        }
    }
}

#[tokio::test]
async fn a_session_created_by_run_is_prompted_over_http_by_id() {
    let server = plugboard_tests::ScriptedServer::start(vec![
        streamed_words(&["first ", "answer"], std::time::Duration::ZERO),
        streamed_words(&["over ", "http"], std::time::Duration::ZERO),
    ]);
    let tmp = TempDir::new("resume-http");
    let (ws, data) = provider_workspace(&tmp, &server.url());
    let data_arg = data.to_str().unwrap();
    let out = plugboard(&ws, &["run", "--data-dir", data_arg, "hello"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(wal_bytes(&data), 0, "`run` leaves its write-ahead log checkpointed");
    let id = json_of(&plugboard(&ws, &["session", "list", "--json", "--data-dir", data_arg]))[0]["id"].as_str().unwrap().to_string();

    let serve = Serve::start(&ws, data_arg).await;
    let (status, admitted) = serve.post(&format!("/sessions/{id}/messages"), serde_json::json!({ "prompt": "and now?" })).await;
    assert_eq!(status, 202, "{admitted}");
    let mut stream = serve.stream(&format!("/sessions/{id}/stream")).await;
    let outcome = until_answered(&mut stream, &admitted["input_id"]).await;
    assert_eq!(outcome["text"], "over http");
    // The model saw the whole conversation, the part from `plugboard run` included.
    let body: serde_json::Value = serde_json::from_str(&server.received()[1].body).unwrap();
    assert!(body.to_string().contains("first answer"), "{body}");
    drop(stream);
    assert!(serve.terminate().success());
    assert_eq!(wal_bytes(&data), 0, "a server stopped by SIGTERM leaves its write-ahead log checkpointed");

    // The JSON log lines of its requests carry the request id and the session id.
    let logs: String = std::fs::read_dir(&ws)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("serve-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    let request = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["span"]["route"] == "/sessions/{id}/messages")
        .unwrap_or_else(|| panic!("a log line of the request: {logs}"));
    assert_eq!(request["span"]["session_id"], serde_json::json!(id));
    assert!(request["span"]["request_id"].as_str().unwrap().starts_with("req_"), "{request}");
    assert_eq!(request["fields"]["status"], 202);
}

#[test]
fn serve_refuses_a_public_address_without_a_secret_and_a_bad_log_level() {
    let tmp = TempDir::new("serve-public");
    let ws = tmp.workspace();
    let out = plugboard(&ws, &["serve", "--host", "0.0.0.0", "--port", "0"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0 without a shared secret") && stderr.contains("--insecure"), "{stderr}");
    let out =
        Command::new(env!("CARGO_BIN_EXE_plugboard")).args(["tool", "list"]).current_dir(&ws).env("LOG_LEVEL", "loud").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid LOG_LEVEL `loud`"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn sigterm_mid_turn_interrupts_it_and_the_next_start_runs_the_queued_input() {
    let server = plugboard_tests::ScriptedServer::start(vec![slow_words(400), streamed_words(&["resumed"], std::time::Duration::ZERO)]);
    let tmp = TempDir::new("sigterm");
    let ws = tmp.workspace();
    let data = tmp.0.join("data");
    let data_arg = data.to_str().unwrap();
    std::fs::write(ws.join("plugboard.toml"), format!("{}[server]\nshutdown_grace_seconds = 1\n", provider_config(&server.url()))).unwrap();
    trust(&ws, Some(data_arg));

    let serve = Serve::start(&ws, data_arg).await;
    let (status, created) = serve.post("/sessions", serde_json::json!({ "prompt": "count slowly" })).await;
    assert_eq!(status, 201, "{created}");
    let id = created["session_id"].as_str().unwrap().to_string();
    let mut stream = serve.stream(&format!("/sessions/{id}/stream")).await;
    stream.until("part.delta", std::time::Duration::from_secs(30)).await;
    let (status, queued) = serve.post(&format!("/sessions/{id}/messages"), serde_json::json!({ "prompt": "then this" })).await;
    assert_eq!(status, 202, "{queued}");
    assert!(serve.terminate().success(), "a clean exit");
    assert!(stream.next().await.is_none() || stream.next().await.is_none(), "the stream ended");

    let shown = json_of(&plugboard(&ws, &["session", "show", &id, "--json", "--data-dir", data_arg]));
    let statuses: Vec<&str> = shown["messages"].as_array().unwrap().iter().map(|m| m["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["completed", "interrupted"], "the running turn was closed; the queued input waits");
    assert!(shown["messages"][1]["error"].as_str().unwrap().contains("shut down"), "{}", shown["messages"][1]);

    let serve = Serve::start(&ws, data_arg).await;
    let mut stream = serve.stream(&format!("/sessions/{id}/stream")).await;
    let outcome = until_answered(&mut stream, &queued["input_id"]).await;
    assert_eq!(outcome["text"], "resumed");
    drop(stream);
    assert!(serve.terminate().success());
}

#[tokio::test]
async fn plugin_reload_reloads_a_running_server_and_says_what_changed() {
    let tmp = TempDir::new("reload");
    let ws = tmp.workspace();
    let plugins = ws.join(".plugboard/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(plugboard_tests::components::VERSIONED_A, plugins.join("versioned.wasm")).unwrap();
    let data = tmp.0.join("data");
    let data_arg = data.to_str().unwrap();
    trust(&ws, Some(data_arg));
    // Without the watcher, only the command reloads.
    let serve = Serve::start_with(&ws, data_arg, &["--no-watch"]).await;
    std::fs::copy(plugboard_tests::components::VERSIONED_B, plugins.join("versioned.wasm")).unwrap();
    trust(&ws, Some(data_arg));

    let out = plugboard(&ws, &["plugin", "reload", "--server", &serve.url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("reloaded  versioned"), "{stdout}");
    assert!(stdout.contains("unchanged, in"), "{stdout}");
    let listed: serde_json::Value = reqwest::get(format!("{}/plugins", serve.url)).await.unwrap().json().await.unwrap();
    let versioned = listed["plugins"].as_array().unwrap().iter().find(|p| p["manifest"]["id"] == "versioned").unwrap().clone();
    assert_eq!(versioned["manifest"]["version"], "2.0.0");

    // One plugin by id; a broken new version fails the command and names the file.
    std::fs::write(plugins.join("versioned.wasm"), b"not a component").unwrap();
    trust(&ws, Some(data_arg));
    let out = plugboard(&ws, &["plugin", "reload", "versioned", "--server", &serve.url]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("failed") && stdout.contains("versioned.wasm") && stdout.contains("not a WebAssembly component"), "{stdout}");
    // An unknown id, and no server: errors that say what to do.
    let out = plugboard(&ws, &["plugin", "reload", "nope", "--server", &serve.url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("404") && text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
    let out = plugboard(&ws, &["plugin", "reload", "--server", "http://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no Plugboard server answers at http://127.0.0.1:9"), "{}", text(&out.stderr));
}

#[test]
fn a_workspace_config_applies_only_once_trusted_and_again_after_each_change() {
    let tmp = TempDir::new("trust");
    let ws = tmp.workspace();
    std::fs::write(ws.join("plugboard.toml"), "[plugins.fetch]\nnetwork = [\"https://*.example.com\"]\n").unwrap();
    let out = plugboard(&ws, &["plugin", "inspect", "fetch"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("https://*.example.com"), "not applied before it is trusted: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is not trusted") && stderr.contains("plugboard trust --workspace"), "{stderr}");

    let check = plugboard(&ws, &["trust", "--check"]);
    assert_eq!(check.status.code(), Some(1));
    let review = text(&check.stdout);
    assert!(review.contains("plugboard.toml is new") && review.contains("[plugins.fetch] network https://*.example.com"), "{review}");
    trust(&ws, None);
    assert_eq!(plugboard(&ws, &["trust", "--check"]).status.code(), Some(0));
    assert!(text(&plugboard(&ws, &["plugin", "inspect", "fetch"]).stdout).contains("granted:   https://*.example.com"));

    // Any later change, by anyone, is not applied until it is trusted again.
    std::fs::write(ws.join("plugboard.toml"), "[plugins.fetch]\nnetwork = [\"https://*\"]\n").unwrap();
    let out = plugboard(&ws, &["plugin", "inspect", "fetch"]);
    assert!(!text(&out.stdout).contains("granted:   https://*"), "{}", text(&out.stdout));
    assert!(text(&plugboard(&ws, &["trust", "--check"]).stdout).contains("plugboard.toml changed"));
    // A secret in the file is refused before it can be trusted.
    std::fs::write(ws.join("plugboard.toml"), "[plugins.openai]\napi_key = \"sk-in-the-repo\"\n").unwrap();
    let out = plugboard(&ws, &["trust"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("api_key_env") && !text(&out.stderr).contains("sk-in-the-repo"), "{}", text(&out.stderr));
    let revoked = plugboard(&ws, &["trust", "--revoke"]);
    assert!(text(&revoked.stdout).contains("no longer trusted"), "{}", text(&revoked.stdout));
}

#[test]
fn a_listing_whose_reader_goes_away_ends_quietly_instead_of_panicking() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = TempDir::new("pipe");
    let ws = tmp.workspace();
    let mut child = isolated(&mut Command::new(env!("CARGO_BIN_EXE_plugboard")), &ws)
        .args(["tool", "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader leaves before the first line is printed, as `head` does after its lines.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success() || out.status.signal() == Some(SIGPIPE), "{:?}: {stderr}", out.status);
}

/// `SIGPIPE`'s number on Linux.
const SIGPIPE: i32 = 13;

#[test]
fn piped_run_output_holds_the_answer_alone_without_the_text_of_a_failed_attempt() {
    // The first attempt streams two words and is cut before the model finished: retried.
    let mut cut = streamed_words(&["partial ", "words "], std::time::Duration::ZERO);
    cut.pieces.pop();
    let server = plugboard_tests::ScriptedServer::start(vec![cut, streamed_words(&["the ", "answer"], std::time::Duration::ZERO)]);
    let tmp = TempDir::new("retry-pipe");
    let (ws, data) = provider_workspace(&tmp, &server.url());
    let data_arg = data.to_str().unwrap();
    let out = plugboard(&ws, &["run", "--data-dir", data_arg, "hello"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "the answer\n");
    assert!(text(&out.stderr).contains("retrying"), "the retry is told on stderr: {}", text(&out.stderr));
    assert_eq!(server.received().len(), 2);
}

#[test]
fn session_list_shows_when_where_and_on_what_model_filters_by_workspace_and_pages() {
    let server = plugboard_tests::ScriptedServer::start(vec![
        streamed_words(&["one"], std::time::Duration::ZERO),
        streamed_words(&["two"], std::time::Duration::ZERO),
    ]);
    let tmp = TempDir::new("list-pages");
    let data = tmp.0.join("data");
    let data_arg = data.to_str().unwrap();
    let other = tmp.0.join("other");
    for ws in [tmp.workspace(), other.clone()] {
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(ws.join("plugboard.toml"), provider_config(&server.url())).unwrap();
        trust(&ws, Some(data_arg));
        let out = plugboard(&ws, &["run", "--data-dir", data_arg, "hello"]);
        assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    }
    let other_dir = other.canonicalize().unwrap();
    let listed = json_of(&plugboard(
        &tmp.workspace(),
        &["session", "list", "--json", "--data-dir", data_arg, "--workspace", other_dir.to_str().unwrap()],
    ));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["workspace"], other_dir.display().to_string());

    let out = plugboard(&tmp.workspace(), &["session", "list", "--data-dir", data_arg, "--limit", "1"]);
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("openai/test-model") && lines[0].contains(&other_dir.display().to_string()),
        "the newest, with its model and workspace: {}",
        lines[0]
    );
    assert!(lines[0].contains(" 20") && lines[0].contains('$'), "its date and cost: {}", lines[0]);
    assert!(text(&out.stderr).contains("more: --offset 1"), "{}", text(&out.stderr));
    let out = plugboard(&tmp.workspace(), &["session", "list", "--data-dir", data_arg, "--limit", "1", "--offset", "1"]);
    assert!(text(&out.stdout).contains(&tmp.workspace().canonicalize().unwrap().display().to_string()), "{}", text(&out.stdout));
    assert!(!text(&out.stderr).contains("more:"), "the last page: {}", text(&out.stderr));
}

#[test]
fn a_session_is_exported_imported_into_another_data_dir_forked_and_deleted_from_the_command_line() {
    let server = plugboard_tests::ScriptedServer::start(vec![streamed_words(&["hello ", "there"], std::time::Duration::ZERO)]);
    let tmp = TempDir::new("life-cycle");
    let (ws, data) = provider_workspace(&tmp, &server.url());
    let data_arg = data.to_str().unwrap();
    assert!(plugboard(&ws, &["run", "--data-dir", data_arg, "hi"]).status.success());
    let id = json_of(&plugboard(&ws, &["session", "list", "--json", "--data-dir", data_arg]))[0]["id"].as_str().unwrap().to_string();

    let out = plugboard(&ws, &["session", "export", &id, "--data-dir", data_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = tmp.0.join("session.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let elsewhere = tmp.0.join("elsewhere");
    let imported =
        json_of(&plugboard(&ws, &["session", "import", file.to_str().unwrap(), "--json", "--data-dir", elsewhere.to_str().unwrap()]));
    assert_eq!(imported["id"], id.as_str());
    let show = |dir: &Path| text(&plugboard(&ws, &["session", "show", &id, "--data-dir", dir.to_str().unwrap()]).stdout);
    assert_eq!(show(&elsewhere), show(&data), "the same history in both data dirs");
    assert!(show(&elsewhere).contains("hello there"));

    let forked = json_of(&plugboard(&ws, &["session", "fork", &id, "--as", "branch", "--json", "--data-dir", data_arg]));
    assert_eq!(forked["id"], "branch");
    let out = plugboard(&ws, &["session", "compact", "branch", "--data-dir", data_arg]);
    assert!(!out.status.success() && text(&out.stderr).contains("nothing to compact"), "{}", text(&out.stderr));

    let out = plugboard(&ws, &["session", "delete", &id, "--data-dir", data_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("deleted session {id}: 2 messages")), "{}", text(&out.stdout));
    let out = plugboard(&ws, &["session", "show", &id, "--data-dir", data_arg]);
    assert!(!out.status.success() && text(&out.stderr).contains("no session"), "{}", text(&out.stderr));
    assert!(show(&elsewhere).contains("hello there"), "the copy stays");
}

#[test]
fn session_revert_puts_back_a_file_the_agent_edited_and_show_prints_the_diff() {
    let call = serde_json::json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "type": "function",
        "function": {"name": "edit", "arguments": "{\"path\":\"notes.txt\",\"old_string\":\"draft\",\"new_string\":\"final\"}"}}]}, "finish_reason": "tool_calls"}]});
    let edit = plugboard_tests::Scripted::sse(&format!("data: {call}\n\ndata: [DONE]\n\n"), 4096);
    let server = plugboard_tests::ScriptedServer::start(vec![
        streamed_words(&["hello"], std::time::Duration::ZERO),
        edit,
        streamed_words(&["edited"], std::time::Duration::ZERO),
    ]);
    let tmp = TempDir::new("revert");
    let (ws, data) = provider_workspace(&tmp, &server.url());
    std::fs::write(ws.join("notes.txt"), "status: draft\n").unwrap();
    let data_arg = data.to_str().unwrap();
    assert!(plugboard(&ws, &["run", "--data-dir", data_arg, "hi"]).status.success());
    let id = json_of(&plugboard(&ws, &["session", "list", "--json", "--data-dir", data_arg]))[0]["id"].as_str().unwrap().to_string();
    let out = plugboard(&ws, &["run", "--data-dir", data_arg, "--session", &id, "--yes", "finish the notes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(ws.join("notes.txt")).unwrap(), "status: final\n");
    let shown = text(&plugboard(&ws, &["session", "show", &id, "--data-dir", data_arg]).stdout);
    assert!(shown.contains("(changed) modified notes.txt") && shown.contains("-status: draft\n+status: final"), "{shown}");

    let history = json_of(&plugboard(&ws, &["session", "show", &id, "--json", "--data-dir", data_arg]));
    let hello = history["messages"][1]["id"].as_str().unwrap().to_string();
    let out = plugboard(&ws, &["session", "revert", &id, "--to", &hello, "--data-dir", data_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("restored notes.txt"), "{}", text(&out.stdout));
    assert_eq!(std::fs::read_to_string(ws.join("notes.txt")).unwrap(), "status: draft\n");
    let shown = text(&plugboard(&ws, &["session", "show", &id, "--data-dir", data_arg]).stdout);
    assert_eq!(shown.matches("[reverted]").count(), 3, "the prompt and its two turns: {shown}");
}

#[test]
fn plugin_wit_writes_the_package_every_line_of_releases_as_in_the_repository() {
    let tmp = TempDir::new("wit");
    let out = plugboard(&tmp.workspace(), &["plugin", "wit", "--dir", "../wit-out"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("plugboard:plugin@0.1.1 (serves 0.1.0, 0.1.1)"), "{stdout}");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/since_v0.1.0");
    for entry in std::fs::read_dir(&repo).unwrap() {
        let entry = entry.unwrap();
        let written = std::fs::read(tmp.0.join("wit-out/since_v0.1.0").join(entry.file_name())).expect("each file is written");
        assert_eq!(written, std::fs::read(entry.path()).unwrap(), "{:?} is the repository's", entry.file_name());
    }
}
