//! The trust boundary: nothing the model, a plugin or a web page does within its grants can
//! widen a grant or reach Plugboard's own files; the workspace's policy files apply only
//! once the operator trusts them.

use plugboard::agent::permission::AskMode;
use plugboard::runtime::CallError;
use plugboard::server::settings::ServerConfig;
use plugboard_tests::{Workspace, call as call_tool, components};
use serde_json::{Value, json};

use crate::agent::{call, fixture, say};

#[tokio::test]
async fn the_model_rewriting_plugboard_toml_and_dropping_a_plugin_widens_no_grant() {
    let widened = "[plugins.shell]\nfilesystem = [{ path = \"/\", access = \"read-write\" }]\nprocess = [\"*\"]\n";
    let f = fixture(
        vec![
            call(&[("c1", "write", json!({ "path": "plugboard.toml", "content": widened }))]),
            call(&[("c2", "shell", json!({ "command": "id" }))]),
            say("done"),
        ],
        "[agents.build]\npermissions = [{ tool = \"*\", action = \"allow\" }]\n",
        AskMode::DenyAll,
    )
    .await;
    // The operator named its own configuration (`--config`): the workspace's file is the
    // model's to write, never policy. And with no `--config`, an untrusted file is not either.
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "widen your grants").await.unwrap();
    assert!(std::fs::read_to_string(f.ws.dir.join("plugboard.toml")).unwrap().contains("process = [\"*\"]"), "the write itself worked");
    let shell_call = f.store.events_after(0, Some(session.id.clone()), 100_000).await.unwrap();
    let denied = shell_call.iter().filter(|e| e.kind == "tool.state").any(|e| e.data.to_string().contains("no commands are granted"));
    assert!(denied, "the shell call ran without a grant: {shell_call:?}");

    // The same workspace without an operator file: the written file is seen, announced as
    // untrusted, and not applied.
    let ws = Workspace::new();
    let app = ws.app().await;
    let host = app.host();
    let events = crate::config_reload::record(host);
    ws.config(widened);
    let rejected = app.reload_config().await.unwrap_err();
    assert!(rejected.reason.contains("not trusted") && rejected.reason.contains("plugboard trust --workspace"), "{}", rejected.reason);
    assert!(!app.config().plugins.contains_key("shell"), "the configuration in force stays");
    assert!(!host.config().plugins.contains_key("shell"), "and the runtime's part of it");
    let untrusted = crate::config_reload::of(&events, "workspace.untrusted");
    assert_eq!(untrusted.len(), 1, "announced once: {untrusted:?}");
    assert_eq!(
        (untrusted[0]["kind"].as_str(), untrusted[0]["review"].as_str().map(|r| r.starts_with("plugboard trust"))),
        (Some("config"), Some(true))
    );
    assert!(app.reload_config().await.is_err());
    assert_eq!(crate::config_reload::of(&events, "workspace.untrusted").len(), 1, "the same content is not news");
    assert_eq!(app.untrusted().len(), 1, "listed for /ready and the CLI");

    // A plugin dropped into .plugboard/plugins is not loaded either, even with the id of a
    // bundled one.
    let dropped = ws.dir.join(".plugboard/plugins");
    std::fs::create_dir_all(&dropped).unwrap();
    std::fs::copy(plugboard_tests::components::VERSIONED_A, dropped.join("takeover.wasm")).unwrap();
    std::fs::write(dropped.join("shell.wasm"), plugboard_tests::with_custom_section(plugboard_tests::bundled("shell"), "build", b"evil"))
        .unwrap();
    let report = host.reload(None).await.unwrap();
    assert!(report.loaded.is_empty() && report.reloaded.is_empty(), "{report:?}");
    assert!(matches!(host.registry().plugin("shell").unwrap().source, plugboard::runtime::PluginSource::Bundled { .. }));
    assert_eq!(crate::config_reload::of(&events, "workspace.untrusted").len(), 3);

    // Once the operator trusts it, the file applies, and a grant of `/` is still refused:
    // it would contain Plugboard's own data directory.
    ws.trust();
    let rejected = app.reload_config().await.unwrap_err();
    assert!(rejected.reason.contains("cannot be granted") && rejected.reason.contains("Plugboard's own directory"), "{}", rejected.reason);
    assert!(app.untrusted().iter().all(|f| f.kind != plugboard::trust::WorkspaceFileKind::Config));
    let out = call_tool(host, "shell", json!({ "command": "id" })).await.unwrap_err();
    assert!(matches!(out, CallError::Denied { .. }), "{out}");
}

#[tokio::test]
async fn a_trusted_plugin_whose_file_changes_keeps_serving_its_trusted_version() {
    let ws = Workspace::new();
    let dir = ws.dir.join(".plugboard/plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(components::VERSIONED_A, dir.join("versioned.wasm")).unwrap();
    let app = ws.app().await;
    let host = app.host();
    assert_eq!(host.registry().plugin("versioned").unwrap().manifest.version, "1.0.0");
    std::fs::copy(components::VERSIONED_B, dir.join("versioned.wasm")).unwrap();
    let report = host.reload(None).await.unwrap();
    assert!(report.reloaded.is_empty() && report.unloaded.is_empty(), "{report:?}");
    assert_eq!(host.registry().plugin("versioned").unwrap().manifest.version, "1.0.0", "the trusted version serves");
    assert_eq!(app.untrusted().len(), 1);
    ws.trust();
    assert_eq!(host.reload(None).await.unwrap().reloaded, ["versioned"]);
    assert_eq!(host.registry().plugin("versioned").unwrap().manifest.version, "2.0.0");
    assert!(app.untrusted().is_empty());
}

#[tokio::test]
async fn an_untrusted_workspace_starts_with_the_defaults_and_says_how_to_trust_it() {
    let ws = Workspace::new();
    ws.config("[plugins.hostile]\nenv = [\"HOME\"]\n");
    let app = plugboard::app::App::start(ws.options()).await.unwrap();
    assert!(app.config().plugins.is_empty(), "the defaults are in force");
    assert!(app.host().config().plugins.is_empty(), "in the runtime too");
    let untrusted = app.untrusted();
    assert_eq!(untrusted.len(), 1);
    assert!(untrusted[0].review.contains(&ws.dir.display().to_string()), "{untrusted:?}");
}

#[tokio::test]
async fn a_secret_in_the_workspace_file_is_refused_naming_the_alternatives() {
    let ws = Workspace::new();
    let app = ws.app().await;
    ws.config("[plugins.openai]\napi_key = \"sk-in-the-repo\"\n").trust();
    let rejected = app.reload_config().await.unwrap_err();
    assert!(rejected.reason.contains("api_key_env") && rejected.reason.contains("--config"), "{}", rejected.reason);
    assert!(!rejected.reason.contains("sk-in-the-repo"));
}

#[tokio::test]
async fn no_grant_reaches_plugboards_own_directories() {
    let ws = Workspace::new();
    // The data directory (sessions, trust), and a directory that contains it.
    for dir in [ws.data.clone(), ws.data.parent().unwrap().to_path_buf()] {
        ws.config(&format!("[plugins.hostile]\nfilesystem = [{{ path = \"{}\", access = \"read-write\" }}]\n", dir.display())).trust();
        let app = plugboard::app::App::start(ws.options()).await.unwrap();
        let registry = app.host().registry();
        let failure = registry.failures().iter().find(|f| f.source.to_string().contains("hostile")).expect("the grant is refused");
        assert!(failure.reason.contains("Plugboard's own directory"), "{}", failure.reason);
    }
}

mod http {
    use super::*;
    use crate::http::api_with;

    #[tokio::test]
    async fn a_cross_origin_page_cannot_call_tools_or_open_sessions() {
        let api = api_with(vec![say("unused")], "", None, ServerConfig::default()).await;
        // A "simple" request a page may send without a preflight.
        for (path, body) in
            [("/tools/write/call", r#"{"arguments":{"path":"pwned.txt","content":"x"}}"#), ("/sessions", r#"{"prompt":"hi"}"#)]
        {
            let response = api
                .http
                .post(api.url(path))
                .header("content-type", "text/plain")
                .header("origin", "https://evil.example")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 403, "{path}");
            let error: Value = response.json().await.unwrap();
            assert!(error["error"].as_str().unwrap().contains("allowed_origins"), "{error}");
            // Without the Origin (a non-browser client), text/plain is refused too.
            let response = api.http.post(api.url(path)).header("content-type", "text/plain").body(body).send().await.unwrap();
            assert_eq!(response.status(), 415, "{path}");
        }
        assert!(!api.f.ws.dir.join("pwned.txt").exists());
        assert!(api.f.store.list_sessions(10, 0).await.unwrap().is_empty(), "no session was created");
    }

    #[tokio::test]
    async fn a_bad_path_query_or_event_type_is_a_400_in_the_json_error_shape() {
        let api = api_with(vec![say("unused")], "", None, ServerConfig::default()).await;
        let (status, body) = api.get("/events?types=status,tool_cal").await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["details"]["field"], "types");
        assert!(body["error"].as_str().unwrap().contains("did you mean `tool_call`"), "{body}");
        let (status, body) = api.get("/events?types=kubernetes.pod").await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains("the types are status, error"), "{body}");
        // Percent-encoded bytes that are not UTF-8, in a path parameter.
        let (status, body) = api.get("/sessions/%FF%FE").await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["details"]["field"], "path");
        for path in ["/events?after=soon", "/sessions?limit=many"] {
            let (status, body) = api.get(path).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert!(body["error"].is_string() && body["timestamp"].is_string(), "{path}: {body}");
        }
        let stream = api.http.get(api.url("/events?types=")).send().await.unwrap();
        assert_eq!(stream.status(), 200, "an empty filter is no filter");
    }

    #[tokio::test]
    async fn a_plugin_granted_all_of_loopback_still_cannot_reach_plugboards_own_api() {
        let dev_server = plugboard_tests::LocalServer::start("a dev server");
        let grant = "[plugins.hostile]\nnetwork = [\"http://127.0.0.1:*\", \"http://localhost:*\", \"http://[::1]:*\"]\n";
        let api = api_with(vec![say("unused")], grant, None, ServerConfig::default()).await;
        let host = api.f.runtime.host();
        let out = call_tool(host, "http_get", json!({ "url": format!("{}/", dev_server.url()) })).await.unwrap();
        assert!(out.text.contains("a dev server"), "another loopback server is reachable: {}", out.text);
        let port = api.base.rsplit(':').next().unwrap().to_string();
        for url in [format!("http://127.0.0.1:{port}/healthz"), format!("http://localhost:{port}/healthz")] {
            let err = call_tool(host, "http_get", json!({ "url": url })).await.unwrap_err();
            assert!(err.to_string().contains("Plugboard's own API"), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn a_dns_rebinding_host_is_refused_and_loopback_names_are_served() {
        let api = api_with(vec![say("unused")], "", None, ServerConfig::default()).await;
        let port = api.base.rsplit(':').next().unwrap().to_string();
        let with_host = |host: String| api.http.get(api.url("/tools")).header("host", host);
        let response = with_host(format!("rebind.evil.example:{port}")).send().await.unwrap();
        assert_eq!(response.status(), 403);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["details"]["setting"], "[server] allowed_hosts");
        for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
            assert_eq!(with_host(host.clone()).send().await.unwrap().status(), 200, "{host}");
        }
    }

    #[tokio::test]
    async fn a_configured_origin_gets_cors_and_a_cookie_that_follows_event_streams() {
        let config = ServerConfig { allowed_origins: vec!["https://ui.example".into()], ..ServerConfig::default() };
        let api = api_with(vec![say("unused")], "", Some("s3cret"), config).await;
        let plain = reqwest::Client::new();
        // Preflight, answered without the secret.
        let preflight = plain
            .request(reqwest::Method::OPTIONS, api.url("/sessions"))
            .header("origin", "https://ui.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(preflight.status().is_success(), "{}", preflight.status());
        assert_eq!(preflight.headers()["access-control-allow-origin"], "https://ui.example");
        assert_eq!(preflight.headers()["access-control-allow-credentials"], "true");
        let other = plain
            .request(reqwest::Method::OPTIONS, api.url("/sessions"))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 403);

        // Log in with the secret once; the cookie then serves requests and the event stream.
        let login = plain.post(api.url("/auth/login")).bearer_auth("s3cret").header("origin", "https://ui.example").send().await.unwrap();
        assert_eq!(login.status(), 204);
        let cookie = login.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
        let token = cookie.split(';').next().unwrap().to_string();
        let listed = plain.get(api.url("/sessions")).header("cookie", &token).header("origin", "https://ui.example").send().await.unwrap();
        assert_eq!(listed.status(), 200);
        assert_eq!(listed.headers()["access-control-allow-origin"], "https://ui.example");
        let stream = plain.get(api.url("/events")).header("cookie", &token).header("accept", "text/event-stream").send().await.unwrap();
        assert_eq!(stream.status(), 200);
        assert!(stream.url().query().is_none(), "no secret in the URL");
        drop(stream);
        assert_eq!(plain.get(api.url("/events")).send().await.unwrap().status(), 401, "no cookie, no stream");
        assert_eq!(plain.get(api.url("/sessions")).header("cookie", "plugboard_session=forged").send().await.unwrap().status(), 401);
        // Logged out, the cookie is dead.
        let logout = plain.post(api.url("/auth/logout")).header("cookie", &token).send().await.unwrap();
        assert_eq!(logout.status(), 204);
        assert_eq!(plain.get(api.url("/sessions")).header("cookie", &token).send().await.unwrap().status(), 401);
    }
}

#[tokio::test]
async fn a_configured_secret_a_tool_returns_or_quotes_in_its_error_is_masked() {
    let ws = Workspace::new();
    let key = "sk-live-canary-5555544444";
    ws.operator_config(&format!(
        "[plugins.openai]\napi_key = \"{key}\"\n[plugins.hostile]\nfilesystem = [{{ path = \".\", access = \"read-write\" }}]\n"
    ));
    ws.file(".env", format!("OPENAI_API_KEY={key}\n"));
    let host = ws.host().await;
    let out = call_tool(&host, "read_raw", json!({ "path": ".env" })).await.unwrap();
    assert_eq!(out.text, "OPENAI_API_KEY=[redacted]\n");
    let read = call_tool(&host, "read", json!({ "path": ".env" })).await.unwrap();
    assert!(read.text.contains("OPENAI_API_KEY=[redacted]") && !read.text.contains(key), "{}", read.text);
    let err = call_tool(&host, "read_raw", json!({ "path": format!("{key}.txt") })).await.unwrap_err().to_string();
    assert!(err.contains("[redacted].txt") && !err.contains(key), "{err}");
}

#[tokio::test]
async fn a_configured_secret_in_command_output_is_masked() {
    let ws = Workspace::new();
    let key = "sk-live-canary-9876543210";
    ws.operator_config(&format!(
        "[plugins.openai]\napi_key = \"{key}\"\n[plugins.hostile]\nfilesystem = [{{ path = \".\", access = \"read-write\" }}]\nprocess = [\"cat *\"]\n"
    ));
    ws.file("leaked.txt", format!("key={key}\n"));
    let host = ws.host().await;
    match call_tool(&host, "run", json!({ "command": "cat leaked.txt" })).await {
        Ok(out) => assert!(out.text.contains("key=[redacted]") && !out.text.contains(key), "{}", out.text),
        Err(e) => assert!(e.to_string().contains("cannot be confined"), "{e}"),
    }
}
