//! Hot reload: plugins replaced, broken, fixed and removed while calls run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plugboard::runtime::{CallContext, CallError, PluginHost};
use plugboard_tests::{Workspace, components};
use serde_json::Value;

/// Puts a component in place the way a deploy does: written beside, then renamed over.
fn install(ws: &Workspace, component: &str) {
    let staged = ws.plugins.join(".versioned.wasm.tmp");
    std::fs::copy(component, &staged).unwrap();
    std::fs::rename(&staged, ws.plugins.join("versioned.wasm")).unwrap();
}

type Events = Arc<Mutex<Vec<(String, Value)>>>;

async fn host_with_versioned() -> (Workspace, Arc<PluginHost>, Events) {
    let (ws, app, events) = app_with_versioned().await;
    (ws, app.host().clone(), events)
}

async fn app_with_versioned() -> (Workspace, Arc<plugboard::app::App>, Events) {
    let ws = Workspace::new();
    install(&ws, components::VERSIONED_A);
    let app = ws.app().await;
    let events: Events = Arc::default();
    let sink = events.clone();
    app.host().attach_events(Arc::new(move |_, batch| sink.lock().unwrap().extend(batch.into_iter().map(|(k, d)| (k.to_string(), d)))));
    (ws, app, events)
}

async fn which(host: &PluginHost, text: &str) -> Result<String, CallError> {
    let context = CallContext { session_id: String::new(), call_id: "c".into() };
    host.call_tool("which", &format!(r#"{{"text":"{text}"}}"#), &context, None).await.map(|o| o.text)
}

fn count(events: &Events, kind: &str) -> usize {
    events.lock().unwrap().iter().filter(|(k, _)| k == kind).count()
}

async fn wait_for(events: &Events, kind: &str, n: usize) {
    for _ in 0..400 {
        if count(events, kind) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no {n} × `{kind}` in {:?}", events.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_under_load_fail_no_call_and_each_call_is_one_version() {
    let (ws, host, events) = host_with_versioned().await;
    assert_eq!(which(&host, "0").await.unwrap(), "a:0");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for caller in 0..2 {
        let (host, stop) = (host.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let (mut seen, mut n) = ((0u64, 0u64), 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let marker = format!("{caller}-{n}");
                let answer = which(&host, &marker).await.unwrap_or_else(|e| panic!("call {marker} failed during a reload: {e}"));
                match answer.split_once(':') {
                    Some(("a", m)) if m == marker => seen.0 += 1,
                    Some(("b", m)) if m == marker => seen.1 += 1,
                    _ => panic!("call {marker} got `{answer}`, not one version's whole answer"),
                }
                n += 1;
                // A call that never waits would keep this worker to itself.
                tokio::task::yield_now().await;
            }
            seen
        }));
    }
    for round in 0..100 {
        let (component, version) = if round % 2 == 0 { (components::VERSIONED_B, "2.0.0") } else { (components::VERSIONED_A, "1.0.0") };
        install(&ws, component);
        let report = host.reload(None).await.unwrap();
        assert_eq!(report.reloaded, ["versioned"], "round {round}: {report:?}");
        assert!(report.failed.is_empty());
        assert_eq!(host.registry().plugin("versioned").unwrap().manifest.version, version);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = (0, 0);
    for caller in callers {
        let (a, b) = caller.await.unwrap();
        (seen.0, seen.1) = (seen.0 + a, seen.1 + b);
    }
    assert!(seen.0 > 0 && seen.1 > 0, "both versions served calls: {seen:?}");
    assert_eq!(count(&events, "plugin.reloaded"), 100, "one event per reload");
    assert_eq!(
        count(&events, "tool.changed") + count(&events, "tool.added") + count(&events, "tool.removed"),
        0,
        "the tool stayed the same"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_keeps_the_old_version_when_the_new_one_is_broken_and_takes_the_fix() {
    let (ws, app, events) = app_with_versioned().await;
    let (host, _watch) = (app.host(), app.watch().unwrap());

    std::fs::write(ws.plugins.join("versioned.wasm"), b"\0asm this is not a component").unwrap();
    wait_for(&events, "plugin.failed", 1).await;
    let failed = events.lock().unwrap().iter().find(|(k, _)| k == "plugin.failed").unwrap().1.clone();
    assert_eq!(failed["id"], "versioned");
    assert_eq!(failed["kept_version"], "1.0.0");
    assert!(!failed["reason"].as_str().unwrap().is_empty());
    assert_eq!(which(host, "x").await.unwrap(), "a:x", "the old version still serves");

    install(&ws, components::VERSIONED_B);
    wait_for(&events, "plugin.reloaded", 1).await;
    let reloaded = events.lock().unwrap().iter().find(|(k, _)| k == "plugin.reloaded").unwrap().1.clone();
    assert_eq!((reloaded["old_version"].as_str(), reloaded["new_version"].as_str()), (Some("1.0.0"), Some("2.0.0")));
    assert_eq!(which(host, "y").await.unwrap(), "b:y");

    std::fs::remove_file(ws.plugins.join("versioned.wasm")).unwrap();
    wait_for(&events, "plugin.unloaded", 1).await;
    wait_for(&events, "tool.removed", 1).await;
    assert!(matches!(which(host, "z").await, Err(CallError::UnknownTool { .. })));
    // Each change was announced once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for kind in ["plugin.failed", "plugin.reloaded", "plugin.unloaded", "tool.removed"] {
        assert_eq!(count(&events, kind), 1, "{kind}: {:?}", events.lock().unwrap());
    }
}

#[tokio::test]
async fn a_new_file_adds_its_tools_and_a_reload_of_an_unknown_plugin_is_refused() {
    let ws = Workspace::new();
    let host = Arc::new(ws.host().await);
    let events: Events = Arc::default();
    let sink = events.clone();
    host.attach_events(Arc::new(move |_, batch| sink.lock().unwrap().extend(batch.into_iter().map(|(k, d)| (k.to_string(), d)))));
    assert!(matches!(which(&host, "x").await, Err(CallError::UnknownTool { .. })));
    install(&ws, components::VERSIONED_A);
    let report = host.reload(None).await.unwrap();
    assert_eq!(report.loaded, ["versioned"]);
    assert_eq!(which(&host, "x").await.unwrap(), "a:x");
    let kinds: Vec<String> = events.lock().unwrap().iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(kinds, ["plugin.loading", "plugin.loaded", "tool.added"]);
    // Nothing changed: nothing to announce.
    let report = host.reload(Some("versioned")).await.unwrap();
    assert!(report.reloaded.is_empty() && report.loaded.is_empty());
    assert_eq!(events.lock().unwrap().len(), 3);
    assert!(host.reload(Some("nope")).await.is_err());
}

#[tokio::test]
async fn a_removed_plugin_is_gone_from_the_next_turns_tool_list() {
    use crate::agent::{fixture, request_body, say};
    let f = fixture(vec![say("one"), say("two")], "", plugboard::agent::permission::AskMode::DenyAll).await;
    let tool_names = |n: usize| -> Vec<String> {
        request_body(&f.server, n)["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "first").await.unwrap();
    assert!(tool_names(0).contains(&"echo".to_string()), "{:?}", tool_names(0));
    let echo = std::fs::read_dir(&f.ws.plugins)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().contains("echo"))
        .unwrap();
    std::fs::remove_file(echo.path()).unwrap();
    let report = f.runtime.host().reload(None).await.unwrap();
    assert_eq!(report.unloaded, ["echo"]);
    f.runtime.prompt(&session.id, "second").await.unwrap();
    assert!(!tool_names(1).contains(&"echo".to_string()), "{:?}", tool_names(1));
    assert!(tool_names(1).contains(&"read".to_string()));
}
