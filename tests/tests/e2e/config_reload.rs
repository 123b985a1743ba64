//! Configuration reload: grants, agents, provider settings and hooks changed while
//! Plugboard runs; invalid files rejected with the previous configuration kept.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plugboard::agent::permission::AskMode;
use plugboard::hooks::HookPoint;
use plugboard::runtime::{CallError, PluginHost};
use plugboard_tests::{ScriptedServer, Workspace, call as call_tool, components};
use serde_json::{Value, json};

use crate::agent::{call, fixture, request_body, say};

type Events = Arc<Mutex<Vec<(String, Value)>>>;

pub(crate) fn record(host: &PluginHost) -> Events {
    let events: Events = Arc::default();
    let sink = events.clone();
    host.attach_events(Arc::new(move |_, batch| sink.lock().unwrap().extend(batch.into_iter().map(|(k, d)| (k.to_string(), d)))));
    events
}

pub(crate) fn of(events: &Events, kind: &str) -> Vec<Value> {
    events.lock().unwrap().iter().filter(|(k, _)| k == kind).map(|(_, d)| d.clone()).collect()
}

async fn wait_for(events: &Events, kind: &str, n: usize) {
    for _ in 0..400 {
        if of(events, kind).len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no {n} × `{kind}` in {:?}", events.lock().unwrap());
}

#[tokio::test]
async fn a_grant_narrowed_while_running_applies_to_the_next_call_and_invalid_files_are_rejected() {
    let ws = Workspace::new();
    ws.file("top.txt", "top\n").file("sub/inner.txt", "inner\n");
    let app = ws.app().await;
    let host = app.host();
    let events = record(host);
    let watch = app.watch().unwrap();
    assert!(call_tool(host, "read", json!({ "path": "top.txt" })).await.is_ok(), "the built-in grant is the workspace");

    // Narrowed through the watcher: only `sub` stays readable.
    ws.config("[plugins.read]\nfilesystem = [\"sub\"]\n").trust();
    wait_for(&events, "config.changed", 1).await;
    assert_eq!(of(&events, "config.changed")[0]["sections"], json!(["plugins"]));
    let denied = call_tool(host, "read", json!({ "path": "top.txt" })).await.unwrap_err();
    assert!(matches!(denied, CallError::Denied { .. }), "{denied}");
    assert!(call_tool(host, "read", json!({ "path": "sub/inner.txt" })).await.unwrap().text.contains("inner"));

    // A misspelt key is rejected with its line; the narrowed grant stays in force.
    ws.config("[plugins.read]\nfilesytem = [\".\"]\n").trust();
    wait_for(&events, "config.rejected", 1).await;
    let reason = of(&events, "config.rejected")[0]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("filesytem") && reason.contains("line 2"), "{reason}");
    assert!(call_tool(host, "read", json!({ "path": "top.txt" })).await.is_err(), "the previous configuration stays");

    // The watcher's work is checked; what follows reloads on request only.
    drop(watch);
    // A grant that cannot resolve is rejected too, naming the plugin.
    let rejected = {
        ws.config("[plugins.read]\nfilesystem = [\"missing-dir\"]\n").trust();
        app.reload_config().await.unwrap_err()
    };
    assert!(rejected.reason.contains("plugin `read`") && rejected.reason.contains("missing-dir"), "{}", rejected.reason);
    assert!(call_tool(host, "read", json!({ "path": "sub/inner.txt" })).await.is_ok());
    // Asked again, it is checked again (the directory may have been created since), but the
    // same rejection is not announced twice.
    assert!(app.reload_config().await.is_err());
    std::fs::create_dir(ws.dir.join("missing-dir")).unwrap();
    assert_eq!(app.reload_config().await.unwrap().sections, ["plugins"]);
    assert!(call_tool(host, "read", json!({ "path": "sub/inner.txt" })).await.is_err(), "only missing-dir is granted now");

    // Writing the same valid file twice changes nothing the second time, and says nothing.
    ws.config("[plugins.read]\nfilesystem = [\".\"]\n").trust();
    let change = app.reload_config().await.unwrap();
    assert_eq!(change.sections, ["plugins"]);
    assert!(app.reload_config().await.unwrap().sections.is_empty());
    assert!(call_tool(host, "read", json!({ "path": "top.txt" })).await.is_ok());
    assert_eq!(of(&events, "config.changed").len(), 3, "{:?}", events.lock().unwrap());
    assert_eq!(of(&events, "config.rejected").len(), 2, "{:?}", events.lock().unwrap());
}

#[tokio::test]
async fn provider_settings_and_permission_rules_changed_mid_session_serve_the_next_turn() {
    let f = fixture(vec![say("from A")], "[agents.build]\npermissions = [{ tool = \"echo\", action = \"allow\" }]", AskMode::DenyAll).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    assert_eq!(f.runtime.prompt(&session.id, "first").await.unwrap().text, "from A");

    // The provider now talks to server B, and `echo` is denied.
    let b = ScriptedServer::start(vec![call(&[("c1", "echo", json!({ "text": "hi" }))]), say("from B")]);
    f.ws.operator_config(&format!(
        "default_model = \"openai/test-model\"\n[agents.build]\npermissions = [{{ tool = \"echo\", action = \"deny\" }}]\n[plugins.openai]\nnetwork = [\"{url}\"]\napi_key = \"sk-test\"\nsettings = {{ base_url = \"{url}/v1\", models = [{{ id = \"test-model\" }}] }}\n",
        url = b.url()
    ));
    let change = f.app.reload_config().await.unwrap();
    assert_eq!(change.sections, ["agents", "plugins"]);
    let outcome = f.runtime.prompt(&session.id, "second").await.unwrap();
    assert_eq!(outcome.text, "from B");
    assert_eq!((f.server.received().len(), b.received().len()), (1, 2), "the next turns went to B");
    // B saw the whole conversation, A's answer included: the session went on.
    let body = request_body(&b, 0).to_string();
    assert!(body.contains("from A") && body.contains("second"), "{body}");
    let history = f.store.history(&session.id).await.unwrap();
    let tool = history.iter().flat_map(|m| &m.parts).find(|p| p.kind == "tool").unwrap();
    assert_eq!(tool.data["state"], "error");
    assert!(tool.data["error"].as_str().unwrap().contains("refused by the permission rules"), "{}", tool.data);
}

#[tokio::test]
async fn hooks_come_and_go_with_their_files_and_their_configuration() {
    let ws = Workspace::new();
    let app = ws.app().await;
    let host = app.host();
    let events = record(host);
    std::fs::copy(components::HOOK_A, ws.plugins.join("hook-a.wasm")).unwrap();
    host.reload(None).await.unwrap();
    let added = of(&events, "hook.added");
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0]["id"], "hook-a");
    assert_eq!(
        added[0]["hooks"]["points"],
        json!(["session.created", "prompt.before", "tool.before", "tool.after", "chat.params", "session.compacting", "event"])
    );
    assert_eq!(host.hooks().order(HookPoint::ToolBefore), ["hook-a"]);

    ws.config("[hooks.hook-a]\nenabled = false\n").trust();
    assert_eq!(app.reload_config().await.unwrap().sections, ["hooks"]);
    assert!(host.hooks().order(HookPoint::ToolBefore).is_empty(), "turned off by the configuration");

    std::fs::remove_file(ws.plugins.join("hook-a.wasm")).unwrap();
    host.reload(None).await.unwrap();
    assert_eq!(of(&events, "hook.removed").len(), 1);
    assert_eq!(of(&events, "hook.added").len(), 1, "each change is announced once");
    assert_eq!(of(&events, "plugin.loading").len(), 1, "one load started: the new file");
}

#[tokio::test]
async fn a_session_whose_model_disappeared_gets_a_clear_error_at_its_next_turn() {
    let f = fixture(vec![say("one"), say("three")], "", AskMode::DenyAll).await;
    let config = |model: &str| {
        format!(
            "default_model = \"openai/test-model\"\n[plugins.openai]\nnetwork = [\"{url}\"]\napi_key = \"sk-test\"\nsettings = {{ base_url = \"{url}/v1\", models = [{{ id = \"{model}\" }}] }}\n",
            url = f.server.url()
        )
    };
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    assert_eq!(f.runtime.prompt(&session.id, "first").await.unwrap().text, "one");

    f.ws.operator_config(&config("other-model"));
    f.app.reload_config().await.unwrap();
    let log = f.store.events_after(0, None, 10_000).await.unwrap();
    let models = |kind: &str| -> Vec<Value> { log.iter().filter(|e| e.kind == kind).map(|e| e.data["model"].clone()).collect() };
    assert_eq!((models("model.removed"), models("model.added")), (vec![json!("openai/test-model")], vec![json!("openai/other-model")]));

    let error = f.runtime.prompt(&session.id, "second").await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("no model `openai/test-model`") && message.contains("available: ") && message.contains("openai/other-model"),
        "{message}"
    );
    assert_eq!(f.store.session(&session.id).await.unwrap().status, "idle", "the session is not stuck");
    assert_eq!(f.server.received().len(), 1, "nothing was sent");

    // The model back, the session goes on.
    f.ws.operator_config(&config("test-model"));
    f.app.reload_config().await.unwrap();
    assert_eq!(f.runtime.prompt(&session.id, "third").await.unwrap().text, "three");
}

#[tokio::test]
async fn a_provider_replaced_by_a_new_file_mid_session_serves_the_next_turn() {
    let f = fixture(vec![say("from the bundled version"), say("from the new version")], "", AskMode::DenyAll).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    assert_eq!(f.runtime.prompt(&session.id, "first").await.unwrap().text, "from the bundled version");
    let bundled_hash = f.runtime.host().registry().plugin("openai").unwrap().content_hash.clone();

    // A new build of the provider is dropped in: it shadows the bundled one.
    let new_version = plugboard_tests::with_custom_section(plugboard_tests::bundled("openai"), "build", b"2");
    std::fs::write(f.ws.plugins.join("openai.wasm"), new_version).unwrap();
    let report = f.runtime.host().reload(None).await.unwrap();
    assert_eq!(report.reloaded, ["openai"]);
    let provider = f.runtime.host().registry().plugin("openai").unwrap().clone();
    assert!(matches!(provider.source, plugboard::runtime::PluginSource::File { .. }));
    assert_ne!(provider.content_hash, bundled_hash);

    assert_eq!(f.runtime.prompt(&session.id, "second").await.unwrap().text, "from the new version");
    let body = request_body(&f.server, 1).to_string();
    assert!(body.contains("from the bundled version"), "the new version got the whole conversation: {body}");
    let log = f.store.events_after(0, None, 10_000).await.unwrap();
    let reloaded: Vec<&Value> = log.iter().filter(|e| e.kind == "plugin.reloaded").map(|e| &e.data).collect();
    assert_eq!(reloaded.len(), 1);
    assert_eq!((reloaded[0]["id"].as_str(), reloaded[0]["new_hash"].as_str()), (Some("openai"), Some(provider.content_hash.as_str())));
}

#[tokio::test]
async fn a_reload_that_one_layer_refuses_changes_no_other_layer() {
    let ws = Workspace::new();
    ws.file("top.txt", "top\n").file("sub/inner.txt", "inner\n");
    let app = ws.app().await;
    let events = record(app.host());
    // The grant would narrow `read` to `sub`, but the agent layer refuses its part: the
    // runtime's part is not applied either.
    ws.config("[plugins.read]\nfilesystem = [\"sub\"]\n[agents.build]\nmax_steps = 0\n").trust();
    let rejected = app.reload_config().await.unwrap_err();
    assert!(rejected.reason.starts_with("agents:") && rejected.reason.contains("max_steps"), "{}", rejected.reason);
    assert!(call_tool(app.host(), "read", json!({ "path": "top.txt" })).await.is_ok(), "the old grant stays in force");
    assert!(app.host().config().plugins.is_empty() && app.config().plugins.is_empty());
    assert!(of(&events, "config.changed").is_empty());
    assert_eq!(of(&events, "config.rejected").len(), 1);
}

#[tokio::test]
async fn an_agent_rule_that_does_not_parse_stops_the_start_and_names_the_file() {
    let ws = Workspace::new();
    ws.config("[agents.review]\nmax_steps = 0\n").trust();
    let err = plugboard_tests::start_host(ws.options()).await.err().expect("the start is refused");
    let text = err.to_string();
    assert!(text.contains("plugboard.toml") && text.contains("[agents.review] max_steps must be at least 1"), "{text}");
}

/// Records `file` in the plugins directory's lock file as installed from a registry, signed
/// by `key` (what `plugboard plugin install` writes after pulling it).
fn record_installed(plugins: &std::path::Path, file: &str, key: &plugboard::provenance::SigningKey) {
    use plugboard::provenance::{LockFile, LockedPlugin, artifact, digest};
    let wasm = std::fs::read(plugins.join(file)).unwrap();
    let manifest = artifact::manifest(&digest(b"{}"), 2, &digest(&wasm), wasm.len());
    let manifest_digest = digest(manifest.as_bytes());
    let mut lock = LockFile::read(plugins).unwrap().unwrap_or_default();
    let name = file.trim_end_matches(".wasm");
    lock.upsert(LockedPlugin {
        file: file.into(),
        source: format!("oci://registry.example/plugins/{name}:1.0.0"),
        signatures: vec![key.sign(&format!("registry.example/plugins/{name}"), &manifest_digest)],
        digest: manifest_digest,
        manifest,
    });
    lock.write(plugins).unwrap();
}

#[tokio::test]
async fn requiring_signatures_while_running_unloads_the_unsigned_plugins_and_dropping_it_brings_them_back() {
    let ws = Workspace::new();
    let alice = plugboard::provenance::SigningKey::generate().unwrap();
    std::fs::write(ws.outside.join("alice.pub"), alice.public_pem()).unwrap();
    record_installed(&ws.plugins, "plugboard_test_echo.wasm", &alice);
    let app = ws.app().await;
    let host = app.host();
    let echo = host.registry().plugin("echo").unwrap().clone();
    let provenance = echo.provenance.as_ref().expect("echo was installed");
    assert_eq!(provenance.source, "oci://registry.example/plugins/plugboard_test_echo:1.0.0");
    assert!(provenance.signer.is_none(), "no key is trusted yet");

    let key = ws.outside.join("alice.pub");
    ws.config(&format!("[provenance]\nrequire_signatures = true\ntrusted_keys = [{:?}]\n", key.display().to_string())).trust();
    assert_eq!(app.reload_config().await.unwrap().sections, ["provenance"]);
    let registry = host.registry();
    assert_eq!(registry.plugin("echo").unwrap().provenance.as_ref().unwrap().signer.as_ref().unwrap().name, "alice");
    assert!(call_tool(host, "echo", json!({ "text": "still here" })).await.is_ok());
    assert!(registry.plugin("hostile").is_none(), "an unsigned plugin is unloaded");
    let failure = registry.failures().iter().find(|f| f.source.to_string().ends_with("plugboard_test_hostile.wasm")).expect("and named");
    assert!(failure.reason.contains("was not installed from a registry"), "{}", failure.reason);

    ws.config("").trust();
    assert_eq!(app.reload_config().await.unwrap().sections, ["provenance"]);
    assert!(host.registry().plugin("hostile").is_some(), "back once signatures are no longer required");
    assert!(host.registry().failures().is_empty(), "{:?}", host.registry().failures());
}

#[tokio::test]
async fn a_plugin_refused_at_start_loads_once_the_same_bytes_are_installed_with_a_signature() {
    let ws = Workspace::new();
    let alice = plugboard::provenance::SigningKey::generate().unwrap();
    let key = ws.outside.join("alice.pub");
    std::fs::write(&key, alice.public_pem()).unwrap();
    ws.config(&format!("[provenance]\nrequire_signatures = true\ntrusted_keys = [{:?}]\n", key.display().to_string())).trust();
    let app = plugboard::app::App::start(ws.options()).await.unwrap();
    let host = app.host();
    assert!(host.registry().plugin("echo").is_none(), "copied in by hand, it is refused");
    // A reload with nothing changed does not try it again; installing the same bytes with a
    // signed record is a change.
    host.reload(None).await.unwrap();
    assert!(host.registry().plugin("echo").is_none());
    record_installed(&ws.plugins, "plugboard_test_echo.wasm", &alice);
    let report = host.reload(None).await.unwrap();
    let echo = host.registry().plugin("echo").cloned();
    assert!(echo.is_some_and(|p| p.provenance.as_ref().is_some_and(|p| p.signer.is_some())), "{report:?}");
}
