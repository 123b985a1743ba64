//! Hot-reload and hook benchmarks: `cargo bench -p plugboard-tests --bench reload`.
//!
//! Prints:
//! - reload latency of a first-party plugin (`read`), from the file's rename into the
//!   plugins directory to its `plugin.reloaded` event, through the file watcher (100 ms
//!   debounce included) and on request; every version is new bytes, so each one compiles;
//! - tool-call latency (`echo`) with and without reloads happening meanwhile;
//! - the overhead per tool call of hooks: two scripted hooks at `tool.before` and
//!   `tool.after`, and the first-party `redact-secrets` at `tool.after`.
//!
//! `PLUGBOARD_BENCH_RELOADS` (default 30) and `PLUGBOARD_BENCH_CALLS` (default 5,000) change
//! the counts.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plugboard::hooks::HookContext;
use plugboard::runtime::{CallContext, PluginHost};
use plugboard_tests::{Workspace, components};
use serde_json::json;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `read` component with a custom section that makes version `n` of this run new bytes
/// (a new content hash: no cache hit, a real compile).
fn read_version(n: usize) -> Vec<u8> {
    static RUN: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let run = *RUN.get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    let mut payload = run.to_le_bytes().to_vec();
    payload.extend_from_slice(&n.to_le_bytes());
    plugboard_tests::with_custom_section(plugboard_tests::bundled("read"), "bench-version", &payload)
}

/// Installs `bytes` as `read.wasm` the way a deploy does: written beside, renamed over.
fn install(dir: &Path, bytes: &[u8]) {
    let staged = dir.join(".read.wasm.tmp");
    std::fs::write(&staged, bytes).unwrap();
    std::fs::rename(&staged, dir.join("read.wasm")).unwrap();
}

fn report(label: &str, samples: &mut [Duration]) {
    samples.sort();
    println!(
        "  {label:<34} p50 {:>8.1} ms   p99 {:>8.1} ms   (n = {})",
        ms(percentile(samples, 0.5)),
        ms(percentile(samples, 0.99)),
        samples.len()
    );
}

async fn run() {
    let reloads = env_count("PLUGBOARD_BENCH_RELOADS", 30);
    let calls = env_count("PLUGBOARD_BENCH_CALLS", 5_000);
    println!("plugboard reload and hook benchmark ({reloads} reloads, {calls} calls)\n");

    // Reload latency through the watcher: rename → `plugin.reloaded` for `read`.
    let ws = Workspace::new();
    let app = ws.app().await;
    let host = app.host().clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    host.attach_events(Arc::new(move |_, events| {
        let now = Instant::now();
        for (kind, data) in events {
            if kind == "plugin.reloaded" && data["id"] == "read" {
                let _ = tx.send(now);
            }
        }
    }));
    let _watch = app.watch().unwrap();
    install(&ws.plugins, &read_version(0));
    tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("the first version loads");
    let mut watched = Vec::new();
    for n in 1..=reloads {
        let written = Instant::now();
        install(&ws.plugins, &read_version(n));
        let seen = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("reloaded in time").unwrap();
        watched.push(seen - written);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(_watch);
    // On request (`POST /plugins/reload`, `plugboard plugin reload`): no debounce.
    let mut manual = Vec::new();
    for n in reloads + 1..=2 * reloads {
        install(&ws.plugins, &read_version(n));
        let t = Instant::now();
        let report = host.reload(None).await.unwrap();
        assert_eq!(report.reloaded, ["read"]);
        manual.push(t.elapsed());
    }
    while rx.try_recv().is_ok() {}
    println!("reload of a first-party plugin (`read`, {} KB), each version compiled", read_version(0).len() / 1024);
    report("file write → plugin.reloaded", &mut watched);
    report("reload on request", &mut manual);

    // Tool-call latency, alone and while `read` is reloaded (each reload compiles).
    let ctx = CallContext::default();
    let args = r#"{"text":"hello"}"#;
    for _ in 0..500 {
        host.call_tool("echo", args, &ctx, None).await.unwrap();
    }
    let call_once = |host: Arc<PluginHost>| async move {
        let t = Instant::now();
        host.call_tool("echo", args, &CallContext::default(), None).await.unwrap();
        let elapsed = t.elapsed();
        tokio::task::yield_now().await;
        elapsed
    };
    let stop = Arc::new(AtomicBool::new(false));
    let background = 10;
    let reloader = {
        let (host, stop, dir) = (host.clone(), stop.clone(), ws.plugins.clone());
        tokio::spawn(async move {
            for n in 10_000..10_000 + background {
                install(&dir, &read_version(n));
                host.reload(None).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    let mut busy = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        busy.push(call_once(host.clone()).await);
    }
    reloader.await.unwrap();
    let mut quiet = Vec::with_capacity(busy.len());
    for _ in 0..busy.len() {
        quiet.push(call_once(host.clone()).await);
    }
    quiet.sort();
    busy.sort();
    println!("\n`echo` call latency (fresh instance per call), one caller on the 2 workers");
    println!(
        "  without reloads                    p50 {:>8.1} µs   p99 {:>8.1} µs   (n = {})",
        us(percentile(&quiet, 0.5)),
        us(percentile(&quiet, 0.99)),
        quiet.len()
    );
    println!(
        "  during {background} reloads (each compiles)    p50 {:>8.1} µs   p99 {:>8.1} µs   (n = {})",
        us(percentile(&busy, 0.5)),
        us(percentile(&busy, 0.99)),
        busy.len()
    );

    // Hook overhead per call: the chain around a call, as the agent loop runs it.
    let hooked = Workspace::new();
    for component in [components::HOOK_A, components::HOOK_B] {
        std::fs::copy(component, hooked.plugins.join(Path::new(component).file_name().unwrap())).unwrap();
    }
    hooked.config("[plugins.hook-a.settings]\ntool_after = \"tag\"\ntag = \"a\"\n[plugins.hook-b.settings]\ntool_before = \"allow\"\n");
    let two = hooked.host().await;
    let redacting = Workspace::new();
    redacting.config("[hooks.redact-secrets]\nenabled = true\n");
    let redact = redacting.host().await;
    let (clean, secret) = ("hello world", "hello sk-abcdefghijklmnopqrstuvwxyz");
    let plain = measure_hooks(&host, calls, clean).await;
    let with_two = measure_hooks(&two, calls, clean).await;
    let redact_clean = measure_hooks(&redact, calls, clean).await;
    let redact_secret = measure_hooks(&redact, calls, secret).await;
    println!("\nhooks around one `echo` call (tool.before hooks + call + tool.after hooks)");
    let rows = [
        ("no hooks", &plain),
        ("two hooks (hook-a, hook-b)", &with_two),
        ("redact-secrets, nothing to mask", &redact_clean),
        ("redact-secrets, one key to mask", &redact_secret),
    ];
    for (label, samples) in rows {
        let overhead = us(percentile(samples, 0.5)) - us(percentile(&plain, 0.5));
        println!(
            "  {label:<34} p50 {:>8.1} µs   p99 {:>8.1} µs   overhead p50 {overhead:>7.1} µs",
            us(percentile(samples, 0.5)),
            us(percentile(samples, 0.99))
        );
    }
}

/// `tool.before` hooks, the `echo` call with `text`, then `tool.after` hooks, `calls` times.
async fn measure_hooks(host: &PluginHost, calls: usize, text: &str) -> Vec<Duration> {
    let ctx = HookContext { session_id: "ses_bench".into(), agent: "build".into() };
    let schema = host.registry().tool_plugin("echo").unwrap().tools()[0].parameters.clone();
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls + 200 {
        let t = Instant::now();
        let chain = host.hooks();
        let arguments = match chain.tool_before(&ctx, "c1", "echo", json!({ "text": text }), Some(&schema)).await {
            plugboard::hooks::ToolDecision::Run { arguments } => arguments,
            denied => panic!("{denied:?}"),
        };
        let output = host.call_tool("echo", &arguments.to_string(), &CallContext::default(), None).await.unwrap();
        let (text, _) = chain.tool_after(&ctx, "c1", "echo", &arguments, output.text, output.title, false, 1 << 20).await;
        std::hint::black_box(text);
        if i >= 200 {
            samples.push(t.elapsed());
        }
        tokio::task::yield_now().await;
    }
    samples.sort();
    samples
}
