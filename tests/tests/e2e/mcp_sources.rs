//! MCP servers as tool sources (`[mcp.<name>]`), with real servers: the official Python
//! SDK's `MCPServer` (`tests/mcp-servers/server.py`) and `@modelcontextprotocol/server-everything`
//! from npm. Their tools join the registry as `<name>_<tool>`, an agent session calls them
//! under the permission rules, a stdio server is confined to its grants, and a server that
//! crashes, hangs or floods neither stalls the host nor stays down.

use std::sync::Arc;
use std::time::Duration;

use plugboard::agent::permission::AskMode;
use plugboard::runtime::PluginHost;
use plugboard::runtime::mcp::McpServerState;
use plugboard_tests::mcp;
use serde_json::{Value, json};

use crate::agent::{call, fixture, request_body, say};

const UP: Duration = Duration::from_secs(60);

/// Waits until server `name` is in `state`.
async fn wait_for(host: &PluginHost, name: &str, state: McpServerState) -> plugboard::runtime::mcp::McpServerStatus {
    let deadline = tokio::time::Instant::now() + UP;
    loop {
        let status = host.mcp().status().into_iter().find(|s| s.name == name).expect("the server is configured");
        if status.state == state {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "server `{name}` never reached {state:?}: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call_tool(host: &Arc<PluginHost>, tool: &str, arguments: Value) -> Result<String, String> {
    plugboard_tests::call(host, tool, arguments).await.map(|o| o.text).map_err(|e| e.to_string())
}

#[tokio::test]
#[ignore = "needs Python 3 with venv (installs `mcp` from PyPI); run with --include-ignored"]
async fn an_agent_session_calls_a_python_mcp_servers_tool_under_the_rules_and_its_tools_are_announced() {
    let py = mcp::python_server();
    let config = format!("{}\n[agents.build]\npermissions = [{{ tool = \"py_add\", action = \"allow\" }}]\n", py.stdio_table("py", ""));
    let script =
        vec![call(&[("c1", "py_add", json!({ "a": 2, "b": 3 }))]), call(&[("c2", "py_env", json!({ "name": "HOME" }))]), say("done")];
    let f = fixture(script, &config, AskMode::DenyAll).await;
    let host = f.app.host().clone();
    let status = wait_for(&host, "py", McpServerState::Running).await;
    assert!(status.tools.contains(&"py_add".to_string()) && status.tools.contains(&"py_read_file".to_string()), "{status:?}");
    let registry = host.registry();
    let (add, owner) = registry.tool("py_add").expect("py_add is in the registry");
    assert_eq!(owner.label(), "mcp:py");
    assert_eq!(add.description, "Adds two integers.");
    assert_eq!(add.parameters["required"], json!(["a", "b"]));

    let session = f.runtime.create_session(None, "build", None, "mcp").await.unwrap();
    let outcome = f.runtime.prompt(&session.id, "add 2 and 3, then look at HOME").await.unwrap();
    assert_eq!(outcome.text, "done");
    let tool_result = |n: usize, id: &str| -> String {
        let body = request_body(&f.server, n);
        let message = body["messages"].as_array().unwrap().iter().find(|m| m["tool_call_id"] == id).cloned().expect("the tool result");
        message["content"].as_str().unwrap().to_string()
    };
    assert_eq!(tool_result(1, "c1"), "5", "the rule allows py_add: the server's answer reaches the model");
    let refused = tool_result(2, "c2");
    assert!(refused.contains("non-interactive"), "py_env is not allowed, and this run cannot ask: {refused}");

    // The server and its tools are announced in the event log.
    let events = f.store.events_after(0, None, 10_000).await.unwrap();
    let started = events.iter().find(|e| e.kind == "mcp.server.started").expect("mcp.server.started");
    assert_eq!((started.data["name"].as_str(), started.data["transport"].as_str()), (Some("py"), Some("stdio")));
    let added = events.iter().find(|e| e.kind == "tool.added" && e.data["name"] == "py_add").expect("tool.added for py_add");
    assert_eq!(added.data["plugin"], "mcp:py");
}

#[tokio::test]
#[ignore = "needs Python 3 with venv (installs `mcp` from PyPI); run with --include-ignored"]
async fn a_confined_stdio_server_reads_only_its_grants_opens_no_socket_and_sees_only_its_variables() {
    let py = mcp::python_server();
    // SAFETY: set before the server starts; no other test reads this name.
    unsafe { std::env::set_var("PLUGBOARD_TEST_HOST_ONLY", "host-value") };
    let ws = plugboard_tests::Workspace::new();
    ws.file("private.txt", "workspace secret");
    ws.operator_config(&py.stdio_table("py", "env = { GIVEN = \"granted-value\" }"));
    let app = ws.app().await;
    let host = app.host().clone();
    // The host is up before the server (Python takes a while to start): nothing waited.
    assert_eq!(host.mcp().status()[0].state, McpServerState::Starting);
    assert!(host.registry().tool("py_read_file").is_none());
    wait_for(&host, "py", McpServerState::Running).await;

    let granted = call_tool(&host, "py_read_file", json!({ "path": py.script.display().to_string() })).await;
    assert!(granted.unwrap().contains("MCPServer"), "a file beneath a filesystem grant is read");
    let private = ws.dir.join("private.txt").canonicalize().unwrap();
    let outside = call_tool(&host, "py_read_file", json!({ "path": private.display().to_string() })).await.unwrap_err();
    assert!(outside.contains("Permission denied"), "the workspace is not granted to this server: {outside}");
    let shadow = call_tool(&host, "py_read_file", json!({ "path": "/etc/shadow" })).await.unwrap_err();
    assert!(shadow.contains("Permission denied") || shadow.contains("No such file"), "{shadow}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let socket = call_tool(&host, "py_connect", json!({ "host": "127.0.0.1", "port": port })).await.unwrap_err();
    assert!(socket.contains("unreachable") || socket.contains("Permission denied") || socket.contains("refused"), "{socket}");
    assert!(tokio::time::timeout(Duration::from_millis(200), listener.accept()).await.is_err(), "nothing connected");

    assert_eq!(call_tool(&host, "py_env", json!({ "name": "GIVEN" })).await.unwrap(), "granted-value");
    assert_eq!(call_tool(&host, "py_env", json!({ "name": "PLUGBOARD_TEST_HOST_ONLY" })).await.unwrap(), "<unset>");
}

#[tokio::test]
#[ignore = "needs Python 3 with venv (installs `mcp` from PyPI); run with --include-ignored"]
async fn a_server_that_crashes_is_restarted_and_one_that_hangs_or_floods_is_cut_off() {
    let py = mcp::python_server();
    let ws = plugboard_tests::Workspace::new();
    ws.operator_config(&py.stdio_table("py", "timeout_ms = 1000\nmax_output_bytes = 1000"));
    let app = ws.app().await;
    let host = app.host().clone();
    let events = Arc::new(std::sync::Mutex::new(Vec::<(String, Value)>::new()));
    let record = events.clone();
    host.attach_events(Arc::new(move |_, batch| record.lock().unwrap().extend(batch.into_iter().map(|(k, v)| (k.to_string(), v)))));
    wait_for(&host, "py", McpServerState::Running).await;

    // A hang: the call ends at the time limit, and the host goes on serving.
    let hang = call_tool(&host, "py_sleep", json!({ "seconds": 30 })).await.unwrap_err();
    assert!(hang.contains("time limit of 1000 ms") && hang.contains("[mcp.py]"), "{hang}");
    assert_eq!(call_tool(&host, "py_add", json!({ "a": 1, "b": 1 })).await.unwrap(), "2", "the server still answers");

    // A flood: the text is cut at the cap.
    let flood = call_tool(&host, "py_flood", json!({ "size": 100_000 })).await.unwrap();
    assert!(flood.len() < 1200 && flood.contains("output cut at 1000 of 100000 bytes"), "{}", &flood[flood.len().saturating_sub(200)..]);

    // A message over the transport's bound (4 x max_output_bytes, at least 1 MiB) is dropped
    // unread: the call ends at its time limit, and the server keeps serving.
    let drowned = call_tool(&host, "py_flood", json!({ "size": 3 << 20 })).await.unwrap_err();
    assert!(drowned.contains("time limit of 1000 ms"), "{drowned}");
    assert_eq!(call_tool(&host, "py_add", json!({ "a": 3, "b": 3 })).await.unwrap(), "6");

    // A crash: the tools leave, the crash is announced, the server comes back.
    let crash = call_tool(&host, "py_crash", json!({})).await.unwrap_err();
    assert!(crash.contains("MCP server `py`"), "{crash}");
    let deadline = tokio::time::Instant::now() + UP;
    while !events.lock().unwrap().iter().any(|(k, _)| k == "mcp.server.crashed") {
        assert!(tokio::time::Instant::now() < deadline, "the crash was announced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let crashed = events.lock().unwrap().iter().find(|(k, _)| k == "mcp.server.crashed").unwrap().1.clone();
    assert!(crashed["reason"].as_str().unwrap().contains("exited"), "{crashed}");
    assert_eq!(crashed["restart_in_ms"], 1000);
    let status = wait_for(&host, "py", McpServerState::Running).await;
    assert_eq!(status.restarts, 1);
    assert_eq!(call_tool(&host, "py_add", json!({ "a": 2, "b": 2 })).await.unwrap(), "4", "the restarted server answers");
    let kinds: Vec<String> =
        events.lock().unwrap().iter().map(|(k, v)| format!("{k} {}", v["name"].as_str().unwrap_or_default())).collect();
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!(
        (count("tool.added py_add"), count("tool.removed py_add")),
        (2, 1),
        "in at the start, out at the crash, in again: {kinds:?}"
    );
}

#[tokio::test]
#[ignore = "needs Python 3 with venv (installs `mcp` from PyPI); run with --include-ignored"]
async fn a_remote_server_gets_its_header_secret_from_the_environment_and_the_model_never_sees_it() {
    let py = mcp::python_server();
    let token = "remote-token-4d1c9a";
    let (mut server, port) = py.serve_http(token).await;
    // SAFETY: set before the host starts; no other test reads this name.
    unsafe { std::env::set_var("PLUGBOARD_TEST_MCP_TOKEN", token) };
    let table = |network: &str| {
        format!(
            "[mcp.remote]\nurl = \"http://127.0.0.1:{port}/mcp\"\nheaders = {{ Authorization = \"Bearer ${{PLUGBOARD_TEST_MCP_TOKEN}}\" }}\n{network}"
        )
    };
    // Without a network grant, the URL is not reached at all.
    let ws = plugboard_tests::Workspace::new();
    ws.operator_config(&table(""));
    let app = ws.app().await;
    let failed = wait_for(app.host(), "remote", McpServerState::Failed).await;
    let why = failed.error.unwrap();
    assert!(why.contains(&format!("network = [\"http://127.0.0.1:{port}\"]")), "{why}");

    let ws = plugboard_tests::Workspace::new();
    ws.operator_config(&table(&format!("network = [\"http://127.0.0.1:{port}\"]")));
    let app = ws.app().await;
    let host = app.host().clone();
    wait_for(&host, "remote", McpServerState::Running).await;
    assert_eq!(call_tool(&host, "remote_add", json!({ "a": 20, "b": 22 })).await.unwrap(), "42", "the token was sent");
    let echoed = call_tool(&host, "remote_authorization", json!({})).await.unwrap();
    assert_eq!(echoed, "Bearer [redacted]", "what the server echoes of the secret is masked");

    // The remote server goes away and comes back: a call fails meanwhile, and the host
    // connects again on its own.
    server.kill().await.unwrap();
    let gone = call_tool(&host, "remote_add", json!({ "a": 1, "b": 1 })).await.unwrap_err();
    assert!(gone.contains("MCP server `remote`"), "{gone}");
    let _back = py.serve_http_on(port, token).await;
    let deadline = tokio::time::Instant::now() + UP;
    loop {
        let status = host.mcp().status().into_iter().find(|s| s.name == "remote").unwrap();
        if status.state == McpServerState::Running && status.restarts >= 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the remote server was reconnected: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(call_tool(&host, "remote_add", json!({ "a": 1, "b": 2 })).await.unwrap(), "3");
}

#[tokio::test]
#[ignore = "needs Node.js and npm (installs @modelcontextprotocol/server-everything); run with --include-ignored"]
async fn server_everything_from_npm_is_a_tool_source_and_a_config_change_restarts_only_the_server_it_touches() {
    let py = mcp::python_server();
    let ws = plugboard_tests::Workspace::new();
    let both = |extra: &str| format!("{}\n{}{extra}\n", mcp::everything_table("everything"), py.stdio_table("py", ""));
    ws.operator_config(&both(""));
    let app = ws.app().await;
    let host = app.host().clone();
    let status = wait_for(&host, "everything", McpServerState::Running).await;
    for tool in ["everything_echo", "everything_get-sum", "everything_get-tiny-image"] {
        assert!(status.tools.contains(&tool.to_string()), "{tool}: {status:?}");
    }
    wait_for(&host, "py", McpServerState::Running).await;
    assert_eq!(call_tool(&host, "everything_echo", json!({ "message": "hi" })).await.unwrap(), "Echo: hi");
    assert!(call_tool(&host, "everything_get-sum", json!({ "a": 2, "b": 40 })).await.unwrap().contains("42"));
    let image = call_tool(&host, "everything_get-tiny-image", json!({})).await.unwrap();
    assert!(image.contains("[image of type image/png"), "an image is described, not pasted: {image}");
    let env = call_tool(&host, "everything_get-env", json!({})).await.unwrap();
    assert!(!env.contains("CARGO") && !env.contains("RUST"), "only PATH reaches the server: {env}");

    // The table of `py` changes: `py` restarts, `everything` keeps its process.
    let restarts_before = host.mcp().status().iter().find(|s| s.name == "everything").unwrap().restarts;
    let events = Arc::new(std::sync::Mutex::new(Vec::<(String, Value)>::new()));
    let record = events.clone();
    host.attach_events(Arc::new(move |_, batch| record.lock().unwrap().extend(batch.into_iter().map(|(k, v)| (k.to_string(), v)))));
    std::fs::write(ws.operator_config_path(), both("timeout_ms = 5000")).unwrap();
    app.reload_config().await.unwrap();
    wait_for(&host, "py", McpServerState::Running).await;
    let deadline = tokio::time::Instant::now() + UP;
    while !events.lock().unwrap().iter().any(|(k, v)| k == "mcp.server.started" && v["name"] == "py") {
        assert!(tokio::time::Instant::now() < deadline, "py was started again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let named = |kind: &str, name: &str| events.lock().unwrap().iter().any(|(k, v)| k == kind && v["name"] == name);
    let seen: Vec<String> = events.lock().unwrap().iter().map(|(k, v)| format!("{k} {}", v["name"].as_str().unwrap_or_default())).collect();
    assert!(
        named("mcp.server.stopped", "py") && !named("mcp.server.stopped", "everything") && named("mcp.server.started", "py"),
        "{seen:?}"
    );
    assert_eq!(seen.iter().filter(|k| *k == "mcp.server.started everything").count(), 1, "only its start: {seen:?}");
    assert_eq!(host.mcp().status().iter().find(|s| s.name == "everything").unwrap().restarts, restarts_before);
    assert_eq!(call_tool(&host, "everything_echo", json!({ "message": "still" })).await.unwrap(), "Echo: still");

    // A table removed: its server stops and its tools leave.
    std::fs::write(ws.operator_config_path(), mcp::everything_table("everything")).unwrap();
    app.reload_config().await.unwrap();
    assert!(host.registry().tool("py_add").is_none());
    assert!(host.mcp().status().iter().all(|s| s.name != "py"));
}
