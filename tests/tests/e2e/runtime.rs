//! The runtime itself: the compile cache, isolation between calls, plugin discovery and
//! load failures.

use plugboard::runtime::artifact_cache::CacheOutcome;
use plugboard::runtime::{HostOptions, PluginSource};
use plugboard_tests::{Workspace, call, components};
use serde_json::json;

#[tokio::test]
async fn a_first_start_compiles_only_plugins_not_bundled_and_a_second_loads_them_from_the_cache() {
    let ws = Workspace::new();
    let cache = ws.data.join("cache");
    let options = HostOptions { cache_dir: Some(cache.clone()), ..ws.options() };
    let bundled = |p: &&std::sync::Arc<plugboard::runtime::LoadedPlugin>| matches!(p.source, PluginSource::Bundled { .. });
    let first = plugboard_tests::start_host(options.clone()).await.unwrap();
    let registry = first.registry();
    let (built_in, files): (Vec<_>, Vec<_>) = registry.plugins().partition(bundled);
    assert_eq!(built_in.len(), plugboard_bundled_plugins::PLUGINS.len());
    assert!(built_in.iter().all(|p| p.stats.cache == CacheOutcome::Precompiled), "the bundled plugins come compiled");
    assert!(!files.is_empty() && files.iter().all(|p| p.stats.cache == CacheOutcome::Compiled), "a fresh cache compiles the rest");
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), files.len(), "only what was compiled is cached");

    let second = plugboard_tests::start_host(options).await.unwrap();
    let registry = second.registry();
    let (built_in, files): (Vec<_>, Vec<_>) = registry.plugins().partition(bundled);
    assert!(built_in.iter().all(|p| p.stats.cache == CacheOutcome::Precompiled));
    assert!(files.iter().all(|p| p.stats.cache == CacheOutcome::Hit), "the second start hits the cache");
    std::fs::write(ws.dir.join("cached.txt"), "served from code compiled at build time\n").unwrap();
    let out = call(&second, "read", json!({"path": "cached.txt"})).await.unwrap();
    assert_eq!(out.text, "     1\tserved from code compiled at build time\n", "a precompiled plugin serves calls");
    let out = call(&second, "echo", json!({"text": "from the cache"})).await.unwrap();
    assert_eq!(out.text, "from the cache", "a plugin loaded from the cache serves calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_are_isolated() {
    let ws = Workspace::new();
    let host = ws.host().await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let host = host.clone();
        tasks.push(tokio::spawn(async move { call(&host, "echo", json!({"text": format!("call {i}")})).await.unwrap().text }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), format!("call {i}"));
    }
}

#[tokio::test]
async fn broken_plugins_are_reported_and_the_rest_load() {
    let ws = Workspace::new();
    let plugins = ws.dir.join(".plugboard/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("garbage.wasm"), b"not wasm at all").unwrap();
    std::fs::write(plugins.join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let host = plugboard_tests::start_host(HostOptions { plugin_dirs: vec![], ..ws.trust().options() }).await.unwrap();
    let reasons: Vec<String> = host.registry().failures().iter().map(|f| format!("{}: {}", f.source, f.reason)).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("garbage.wasm") && r.contains("magic")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("core.wasm") && r.contains("core module")), "{reasons:?}");
    assert!(host.registry().plugin("read").is_some(), "first-party plugins still load");
}

#[tokio::test]
async fn plugins_shadow_by_precedence() {
    let ws = Workspace::new();
    let plugins = ws.dir.join(".plugboard/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(components::ECHO, plugins.join("echo.wasm")).unwrap();
    // Without --plugins, the workspace's copy serves.
    let host = plugboard_tests::start_host(HostOptions { plugin_dirs: vec![], ..ws.trust().options() }).await.unwrap();
    assert!(host.registry().plugin("echo").unwrap().source.to_string().ends_with(".plugboard/plugins/echo.wasm"));
    // A --plugins directory wins over the workspace; the copy it shadows is announced.
    let host = ws.host().await;
    let registry = host.registry();
    assert!(registry.plugin("echo").unwrap().source.to_string().ends_with("plugins/plugboard_test_echo.wasm"));
    assert!(registry.failures().is_empty());
    let [shadowed] = registry.shadowed() else { panic!("one shadowed file: {:?}", registry.shadowed()) };
    assert_eq!(shadowed.id, "echo");
    assert!(shadowed.source.to_string().ends_with(".plugboard/plugins/echo.wasm"), "{}", shadowed.source);
    assert_eq!(shadowed.by, registry.plugin("echo").unwrap().source);
    let events = registry.changes(&plugboard::runtime::Registry::default());
    let announced = events.iter().find(|(kind, _)| *kind == "plugin.shadowed").expect("a plugin.shadowed event");
    assert_eq!(announced.1["id"], "echo");
}

#[tokio::test]
async fn a_config_table_naming_no_loaded_plugin_or_hook_is_warned_about_with_the_nearest_id() {
    let ws = Workspace::new();
    ws.config("[plugins.shel]\nprocess = [\"ls\"]\n[plugins.kubernetes]\n[hooks.audit-logs]\nenabled = true\n[plugins.read]\n");
    let host = ws.host().await;
    let warnings = host.config_warnings();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("[plugins.shel]") && w.contains("did you mean `shell`?")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("[plugins.kubernetes]") && !w.contains("did you mean")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("[hooks.audit-logs]") && w.contains("did you mean `audit-log`?")), "{warnings:?}");
}

#[tokio::test]
async fn an_invalid_grant_names_the_plugin_and_field() {
    let ws = Workspace::new();
    ws.config("[plugins.fetch]\nnetwork = [\"example.com\"]\n");
    let host = plugboard_tests::start_host(HostOptions { plugin_dirs: vec![], ..ws.trust().options() }).await.unwrap();
    let registry = host.registry();
    let failure = registry.failures().iter().find(|f| f.source.to_string() == "bundled:fetch").expect("fetch fails to load");
    assert!(failure.reason.contains("[plugins.fetch] network") && failure.reason.contains("needs a scheme"), "{}", failure.reason);
}

#[tokio::test]
async fn an_invalid_configuration_file_is_rejected_with_its_line() {
    let ws = Workspace::new();
    ws.config("[limits]\nmemory_mb = 5\n");
    let err = plugboard_tests::start_host(HostOptions { plugin_dirs: vec![], ..ws.trust().options() }).await.err().unwrap();
    let text = err.to_string();
    assert!(text.contains("plugboard.toml") && text.contains("memory_mb") && text.contains("line 2"), "{text}");
}
