//! Plugboard as an MCP server over streamable HTTP (`/mcp` of `plugboard serve`), driven by
//! the official Rust SDK's client: tools listed and called under the grants and the rules,
//! questions asked by elicitation, reloads announced, and the server's own HTTP rules.

use std::path::Path;
use std::time::Duration;

use plugboard::server::settings::ServerConfig;
use plugboard_tests::components;
use plugboard_tests::mcp::{self, Answer, Recorder};
use serde_json::json;

use crate::agent::{fixture, say};
use crate::http::{Api, serve_fixture};

const SECRET: &str = "mcp-s3cret";

/// A server with `config` appended, guarded by [`SECRET`].
async fn served(config: &str) -> Api {
    let f = fixture(vec![say("unused")], config, plugboard::agent::permission::AskMode::Prompt).await;
    serve_fixture(f, Some(SECRET), ServerConfig::default()).await
}

async fn client(api: &Api, answer: Answer) -> (mcp::Client, Recorder) {
    let recorder = Recorder::new(answer);
    (mcp::connect_http(&api.url("/mcp"), Some(SECRET), recorder.clone()).await, recorder)
}

#[tokio::test]
async fn an_mcp_client_lists_and_calls_the_tools_under_their_grants_and_the_build_agents_rules() {
    let api = served("").await;
    std::fs::write(api.f.ws.dir.join("notes.txt"), "one\ntwo\n").unwrap();
    let (client, _) = client(&api, Answer::CannotBeAsked).await;
    let info = client.peer_info().expect("initialized");
    assert_eq!(info.server_info.as_ref().map(|s| s.name.as_str()), Some("plugboard"));
    let tools = mcp::tool_names(&client).await;
    for tool in ["echo", "read", "shell", "write"] {
        assert!(tools.contains(&tool.to_string()), "{tool} is listed: {tools:?}");
    }

    // `read` is allowed by the build agent: its text, and its metadata as structured content.
    let read = mcp::call(&client, "read", json!({ "path": "notes.txt" })).await.unwrap();
    assert_eq!(read.is_error, Some(false));
    assert!(mcp::text(&read).contains("1\tone"), "{read:?}");
    assert_eq!(read.structured_content.as_ref().unwrap()["lines"], 2);

    // Outside every grant: a tool error with the host's explanation and the grant to add.
    let outside = mcp::call(&client, "read", json!({ "path": "/etc/hostname" })).await.unwrap();
    assert_eq!(outside.is_error, Some(true));
    let why = mcp::text(&outside);
    assert!(why.contains("/etc/hostname") && why.contains("[plugins.read]"), "{why}");

    // `shell` asks under the build agent; this client cannot be asked, so it is refused.
    let shell = mcp::call(&client, "shell", json!({ "command": "touch made-by-mcp" })).await.unwrap();
    assert_eq!(shell.is_error, Some(true));
    let why = mcp::text(&shell);
    assert!(why.contains("cannot be asked") && why.contains("tool = \"shell\", action = \"allow\""), "{why}");
    assert!(!api.f.ws.dir.join("made-by-mcp").exists(), "the command did not run");

    // An unknown tool is a protocol error that names the tools.
    let unknown = mcp::call(&client, "nope", json!({})).await.unwrap_err().to_string();
    assert!(unknown.contains("unknown tool `nope`") && unknown.contains("echo"), "{unknown}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_configured_agents_rules_apply_and_a_question_goes_to_the_client() {
    let api = served(
        r#"
        [mcp]
        agent = "remote"
        [agents.remote]
        permissions = [{ tool = "echo", action = "ask" }, { tool = "read", action = "deny" }]
        "#,
    )
    .await;
    let (allowing, recorder) = client(&api, Answer::Allow).await;
    assert!(!mcp::tool_names(&allowing).await.contains(&"read".to_string()), "a tool denied outright is not offered");
    let echoed = mcp::call(&allowing, "echo", json!({ "text": "asked first" })).await.unwrap();
    assert_eq!((echoed.is_error, mcp::text(&echoed)), (Some(false), "asked first".to_string()));
    assert_eq!(recorder.questions(), ["Allow `echo`? The permission rules of agent `remote` ask before this call."]);
    let read = mcp::call(&allowing, "read", json!({ "path": "x" })).await.unwrap();
    assert!(mcp::text(&read).contains("refused by the permission rules of agent `remote`"), "{read:?}");

    let (declining, _) = client(&api, Answer::Decline).await;
    let refused = mcp::call(&declining, "echo", json!({ "text": "no" })).await.unwrap();
    assert_eq!(refused.is_error, Some(true));
    assert!(mcp::text(&refused).contains("the user did not allow `echo`"), "{refused:?}");
    allowing.cancel().await.unwrap();
    declining.cancel().await.unwrap();
}

#[tokio::test]
async fn a_reload_tells_connected_clients_that_the_tools_changed() {
    let api = served("[agents.build]\npermissions = [{ tool = \"which\", action = \"allow\" }]").await;
    let (client, recorder) = client(&api, Answer::CannotBeAsked).await;
    assert!(!mcp::tool_names(&client).await.contains(&"which".to_string()));
    let file = api.f.ws.plugins.join(Path::new(components::VERSIONED_A).file_name().unwrap());
    std::fs::copy(components::VERSIONED_A, &file).unwrap();
    api.f.runtime.host().reload(None).await.unwrap();
    assert!(recorder.wait_list_changes(1, Duration::from_secs(20)).await, "tools/list_changed arrived");
    assert!(mcp::tool_names(&client).await.contains(&"which".to_string()));
    let which = mcp::call(&client, "which", json!({ "text": "x" })).await.unwrap();
    assert_eq!(which.is_error, Some(false), "{which:?}");

    std::fs::remove_file(&file).unwrap();
    api.f.runtime.host().reload(None).await.unwrap();
    assert!(recorder.wait_list_changes(2, Duration::from_secs(20)).await, "a removal is announced too");
    assert!(!mcp::tool_names(&client).await.contains(&"which".to_string()));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_mcp_endpoint_keeps_the_servers_secret_host_and_origin_rules() {
    let api = served("").await;
    let raw = reqwest::Client::new();
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "raw", "version": "0" } }
    });
    let post = || raw.post(api.url("/mcp")).header("accept", "application/json, text/event-stream").json(&initialize);
    assert_eq!(post().send().await.unwrap().status(), 401, "no secret");
    assert_eq!(post().bearer_auth("wrong").send().await.unwrap().status(), 401);
    let forged = post().bearer_auth(SECRET).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(forged.status(), 403, "a web page of another origin");
    let rebound = post().bearer_auth(SECRET).header("host", "evil.example").send().await.unwrap();
    assert_eq!(rebound.status(), 403, "a rebound DNS name");
    // The 2026-07-28 probe is refused, naming the versions served, so its clients fall back
    // to `initialize` (the Python SDK 2.x does: see the test below).
    let discover = json!({ "jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {
        "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientInfo": { "name": "raw", "version": "0" }, "io.modelcontextprotocol/clientCapabilities": {} } } });
    let probe = raw.post(api.url("/mcp")).bearer_auth(SECRET).header("accept", "application/json, text/event-stream");
    let probe = probe.header("mcp-protocol-version", "2026-07-28").header("mcp-method", "server/discover").json(&discover);
    let probe = probe.send().await.unwrap().text().await.unwrap();
    assert!(probe.contains("Unsupported protocol version") && probe.contains("\"supported\":[\"2024-11-05\""), "{probe}");
    let answered = post().bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(answered.status(), 200);
    let body = answered.text().await.unwrap();
    assert!(body.contains("\"protocolVersion\":\"2025-11-25\"") && body.contains("plugboard"), "{body}");
}

/// The official Python or TypeScript SDK's client over `/mcp`: lists, calls, refusals with
/// their explanations, and a reload announced.
async fn another_sdk_over_http(sdk: mcp::Sdk) {
    let api = served("[agents.build]\npermissions = [{ tool = \"echo\", action = \"allow\" }]").await;
    let url = api.url("/mcp");
    let reload = async || {
        let file = api.f.ws.plugins.join(Path::new(components::VERSIONED_A).file_name().unwrap());
        std::fs::copy(components::VERSIONED_A, file).unwrap();
        api.f.runtime.host().reload(None).await.unwrap();
    };
    mcp::check_sdk_client(sdk, &["http", &url, SECRET], &api.f.ws.dir, reload).await;
    assert!(!api.f.ws.dir.join("made-by-python").exists() && !api.f.ws.dir.join("made-by-typescript").exists());
}

#[tokio::test]
#[ignore = "needs Python 3 with venv (installs `mcp` from PyPI); run with --include-ignored"]
async fn the_official_python_sdk_uses_the_tools_over_http() {
    another_sdk_over_http(mcp::Sdk::Python).await;
}

#[tokio::test]
#[ignore = "needs Node.js and npm (installs `@modelcontextprotocol/sdk`); run with --include-ignored"]
async fn the_official_typescript_sdk_uses_the_tools_over_http() {
    another_sdk_over_http(mcp::Sdk::TypeScript).await;
}

#[tokio::test]
async fn a_page_of_an_allowed_origin_may_use_mcp_from_the_browser() {
    let origin = "https://inspector.example";
    let config = ServerConfig { allowed_origins: vec![origin.into()], ..ServerConfig::default() };
    let f = fixture(vec![say("unused")], "", plugboard::agent::permission::AskMode::Prompt).await;
    let api = serve_fixture(f, Some(SECRET), config).await;
    let raw = reqwest::Client::new();
    // The preflight of a request that carries MCP's headers.
    let preflight = raw
        .request(reqwest::Method::OPTIONS, api.url("/mcp"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type,mcp-session-id,mcp-protocol-version")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("mcp-session-id") && allowed.contains("mcp-protocol-version"), "{allowed}");
    // `initialize`: the page may read the session id it must send back.
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "page", "version": "0" } }
    });
    let answer = raw
        .post(api.url("/mcp"))
        .bearer_auth(SECRET)
        .header("origin", origin)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers().contains_key("mcp-session-id"));
    let exposed = answer.headers()["access-control-expose-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(exposed.contains("mcp-session-id"), "{exposed}");
}
