//! `plugboard mcp`: the tools served over standard input and output to the official Rust
//! SDK's client, as Claude Code or Cursor start it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use plugboard_tests::components;
use plugboard_tests::mcp::{self, Answer, Recorder};
use serde_json::json;

use super::{TempDir, isolated, plugboard, text};

/// `plugboard mcp` in `workspace`, with `args` before the subcommand.
fn server(workspace: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plugboard"));
    isolated(&mut command, workspace).args(args).arg("mcp").env("LOG_LEVEL", "warn");
    tokio::process::Command::from(command)
}

#[tokio::test]
async fn plugboard_mcp_serves_the_tools_over_stdio_and_announces_a_new_plugin() {
    let tmp = TempDir::new("mcp-stdio");
    let ws = tmp.workspace();
    std::fs::write(ws.join("README.md"), "# Title\n").unwrap();
    let extra = tmp.0.join("extra-plugins");
    std::fs::create_dir_all(&extra).unwrap();
    let recorder = Recorder::new(Answer::CannotBeAsked);
    // The directory is given relative to the workspace, as people type it.
    let client = mcp::connect_stdio(server(&ws, &["--plugins", "../extra-plugins"]), recorder.clone()).await;

    let read = mcp::call(&client, "read", json!({ "path": "README.md" })).await.unwrap();
    assert_eq!((read.is_error, mcp::text(&read)), (Some(false), "     1\t# Title\n".to_string()));
    let shell = mcp::call(&client, "shell", json!({ "command": "touch ran" })).await.unwrap();
    assert!(mcp::text(&shell).contains("cannot be asked"), "{shell:?}");
    assert!(!ws.join("ran").exists());

    // The plugin directories are watched: a new plugin reaches the client's list.
    assert!(!mcp::tool_names(&client).await.contains(&"which".to_string()));
    std::fs::copy(components::VERSIONED_A, extra.join("versioned.wasm")).unwrap();
    assert!(recorder.wait_list_changes(1, Duration::from_secs(30)).await, "tools/list_changed arrived");
    assert!(mcp::tool_names(&client).await.contains(&"which".to_string()));
    client.cancel().await.unwrap();
}

#[test]
fn plugboard_mcp_refuses_an_mcp_agent_that_does_not_exist() {
    let tmp = TempDir::new("mcp-agent");
    let config = tmp.0.join("operator.toml");
    std::fs::write(&config, "[mcp]\nagent = \"reviewer\"\n").unwrap();
    let out = plugboard(&tmp.workspace(), &["--config", config.to_str().unwrap(), "mcp"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("[mcp] agent `reviewer` is not an agent; the agents are build, plan"), "{stderr}");
}

/// The official Python or TypeScript SDK's client starts `plugboard mcp` itself: lists,
/// calls, refusals with their explanations, and a new plugin announced.
async fn another_sdk_over_stdio(sdk: mcp::Sdk, name: &str) {
    let tmp = TempDir::new(name);
    let ws = tmp.workspace();
    let extra = tmp.0.join("extra-plugins");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::copy(components::ECHO, extra.join("echo.wasm")).unwrap();
    let config = tmp.0.join("operator.toml");
    std::fs::write(&config, "[agents.build]\npermissions = [{ tool = \"echo\", action = \"allow\" }]\n").unwrap();
    let bin = env!("CARGO_BIN_EXE_plugboard");
    // The SDK starts the server with an environment of its own: the directories are given.
    let (cache, data) = (tmp.0.join("cache"), tmp.0.join("data"));
    let args = [
        "stdio",
        bin,
        "--config",
        config.to_str().unwrap(),
        "--plugins",
        extra.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "mcp",
    ];
    let reload = async || {
        std::fs::copy(components::VERSIONED_A, extra.join("versioned.wasm")).unwrap();
    };
    mcp::check_sdk_client(sdk, &args, &ws, reload).await;
}

#[tokio::test]
#[ignore = "needs Python 3 with venv (installs `mcp` from PyPI); run with --include-ignored"]
async fn the_official_python_sdk_starts_plugboard_mcp_and_uses_the_tools() {
    another_sdk_over_stdio(mcp::Sdk::Python, "mcp-python").await;
}

#[tokio::test]
#[ignore = "needs Node.js and npm (installs `@modelcontextprotocol/sdk`); run with --include-ignored"]
async fn the_official_typescript_sdk_starts_plugboard_mcp_and_uses_the_tools() {
    another_sdk_over_stdio(mcp::Sdk::TypeScript, "mcp-typescript").await;
}

/// Plugboard's own `plugboard mcp` is a stdio MCP server like any other: another Plugboard
/// starts it confined, with only the directories its table grants, and offers its tools as
/// `inner_<tool>` to one-off commands, which wait for it to come up.
#[test]
fn another_plugboard_serving_mcp_is_a_confined_tool_source() {
    let tmp = TempDir::new("mcp-source");
    let ws = tmp.workspace();
    let inner = tmp.0.join("inner");
    let (data, cache) = (tmp.0.join("inner-data"), tmp.0.join("inner-cache"));
    for dir in [&inner, &data, &cache] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(inner.join("notes.txt"), "inner notes\n").unwrap();
    std::fs::write(ws.join("outer.txt"), "outer only\n").unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_plugboard"));
    let quoted = |p: &Path| format!("{:?}", p.display().to_string());
    let config = tmp.0.join("operator.toml");
    std::fs::write(
        &config,
        format!(
            "[mcp.inner]\ncommand = {}\nargs = [\"--workspace\", {}, \"--data-dir\", {}, \"--cache-dir\", {}, \"mcp\"]\nenv = {{ LOG_LEVEL = \"warn\" }}\nfilesystem = [{}, {}, {{ path = {}, access = \"read-write\" }}, {{ path = {}, access = \"read-write\" }}]\n",
            quoted(binary),
            quoted(&inner),
            quoted(&data),
            quoted(&cache),
            quoted(binary.parent().unwrap()),
            quoted(&inner),
            quoted(&data),
            quoted(&cache),
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let listed = plugboard(&ws, &["--config", config, "tool", "list"]);
    let stdout = text(&listed.stdout);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(stdout.contains("inner_read  (mcp:inner)") && stdout.contains("inner_shell  (mcp:inner)"), "{stdout}");

    let read = plugboard(&ws, &["--config", config, "tool", "call", "inner_read", r#"{"path":"notes.txt"}"#]);
    assert!(read.status.success(), "{}", text(&read.stderr));
    assert!(text(&read.stdout).contains("inner notes"), "the inner Plugboard read its own workspace: {}", text(&read.stdout));
    let outer = ws.join("outer.txt").canonicalize().unwrap();
    let denied = plugboard(&ws, &["--config", config, "tool", "call", "inner_read", &json!({ "path": outer }).to_string()]);
    assert!(!denied.status.success());
    assert!(text(&denied.stderr).contains("outer.txt"), "the outer workspace is not the inner one's: {}", text(&denied.stderr));

    let plugins = plugboard(&ws, &["--config", config, "plugin", "list"]);
    let stdout = text(&plugins.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("mcp:inner  [stdio ") && l.contains("running")), "{stdout}");
}

/// A Plugboard that was itself started as an MCP server, three deep, starts no more servers:
/// a configuration that serves Plugboard to itself ends there instead of forking without end.
#[test]
fn a_plugboard_nested_three_deep_in_mcp_servers_starts_no_more() {
    let tmp = TempDir::new("mcp-depth");
    let ws = tmp.workspace();
    let config = tmp.0.join("operator.toml");
    std::fs::write(&config, "[mcp.again]\ncommand = \"plugboard\"\nargs = [\"mcp\"]\n").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_plugboard"));
    isolated(&mut command, &ws).env("PLUGBOARD_MCP_DEPTH", "3").args(["--config", config.to_str().unwrap(), "plugin", "list"]);
    let out = command.output().unwrap();
    let stdout = text(&out.stdout);
    assert!(stdout.contains("mcp:again") && stdout.contains("failed") && stdout.contains("by 3 others"), "{stdout}");
    let mut shallower = Command::new(env!("CARGO_BIN_EXE_plugboard"));
    isolated(&mut shallower, &ws).env("PLUGBOARD_MCP_DEPTH", "2").args(["--config", config.to_str().unwrap(), "plugin", "list"]);
    let stdout = text(&shallower.output().unwrap().stdout);
    assert!(!stdout.contains("by 2 others"), "two deep still starts its servers: {stdout}");
}
