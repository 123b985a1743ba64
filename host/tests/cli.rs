//! The `plugboard` binary, run as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn plugboard(workspace: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plugboard"))
        .args(args)
        .current_dir(workspace)
        .env("XDG_CACHE_HOME", std::env::temp_dir().join("plugboard-cli-cache"))
        .env("XDG_CONFIG_HOME", workspace.join(".no-user-config"))
        .env_remove("WORKSPACE_DIR")
        .output()
        .expect("the binary runs")
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
    let out = plugboard(&ws, &["tool", "list"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("plugboard.toml") && stderr.contains("timeout") && stderr.contains("line 2"), "{stderr}");
}

#[test]
fn a_scaffolded_plugin_builds_and_runs() {
    let tmp = TempDir::new("scaffold");
    let out = plugboard(&tmp.0, &["plugin", "new", "greeter"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let crate_dir = tmp.0.join("greeter");
    // Share the workspace's guest build directory so the SDK's dependencies are not
    // compiled again.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests");
    let build = Command::new(env!("CARGO"))
        .args(["build", "--release"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap();
    assert!(build.status.success(), "the scaffolded crate builds: {}", text(&build.stderr));
    let plugins = tmp.0.join("built");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(target.join("wasm32-wasip2/release/greeter.wasm"), plugins.join("greeter.wasm")).unwrap();
    let out = plugboard(&tmp.workspace(), &["tool", "call", "--plugins", plugins.to_str().unwrap(), "greeter", r#"{"name":"world"}"#]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hello, world!\n");
}
