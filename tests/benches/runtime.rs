//! Runtime benchmarks: `cargo bench -p plugboard-tests --bench runtime`.
//!
//! Prints: cold compile, cached load and load of the code compiled at build time of a
//! first-party plugin, and a host's start on an empty cache; a fresh-instance call of a
//! trivial tool through the host (dispatch, argument JSON, policy, instantiate, call, drop),
//! median and p99, beside the same work as a native Rust call; calls per second with
//! concurrent callers; and a confined command (`true`), without network and with the proxy
//! of a network grant. Set `PLUGBOARD_BENCH_CALLS` to change the number of calls.

use std::time::{Duration, Instant};

use plugboard::runtime::discovery::Candidate;
use plugboard::runtime::{CallContext, HostOptions, PluginSource};
use plugboard_tests::Workspace;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn run() {
    let calls: usize = std::env::var("PLUGBOARD_BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let ws = Workspace::new();
    let host = ws.host().await;
    println!("plugboard runtime benchmark ({} allocator, {} calls)\n", host.engine().allocator, calls);

    // Loading: cold compile, cached load and load of the code compiled at build time, of the
    // `read` plugin; then whole starts on empty caches.
    let read = plugboard_bundled_plugins::PLUGINS.iter().find(|p| p.name == "read").expect("bundled plugin");
    let uncached_ws = Workspace::new();
    uncached_ws.config("[cache]\nenabled = false\n");
    let uncached =
        plugboard_tests::start_host(HostOptions { plugin_dirs: vec![], cache_dir: None, ..uncached_ws.trust().options() }).await.unwrap();
    let candidate = |precompiled| Candidate {
        source: PluginSource::Bundled { name: "read".into() },
        bytes: read.component.into(),
        first_party: true,
        precedence: 0,
        precompiled,
        installed: None,
    };
    let (mut cold, mut cached, mut built_in) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        uncached.loader().load(candidate(None)).await.unwrap();
        cold.push(t.elapsed());
        let t = Instant::now();
        host.loader().load(candidate(None)).await.unwrap();
        cached.push(t.elapsed());
        let t = Instant::now();
        uncached.loader().load(candidate(Some(read.precompiled))).await.unwrap();
        built_in.push(t.elapsed());
    }
    let mut starts = Vec::new();
    for _ in 0..5 {
        let fresh = Workspace::new();
        let empty_cache = fresh.data.join("empty-cache");
        let t = Instant::now();
        let started = plugboard_tests::start_host(HostOptions { plugin_dirs: vec![], cache_dir: Some(empty_cache), ..fresh.options() })
            .await
            .unwrap();
        starts.push(t.elapsed());
        assert_eq!(started.registry().plugins().count(), plugboard_bundled_plugins::PLUGINS.len());
    }
    for samples in [&mut cold, &mut cached, &mut built_in, &mut starts] {
        samples.sort();
    }
    println!("load `read` plugin ({} KB)", read.component.len() / 1024);
    println!("  cold compile            median {:>9.2} ms", micros(percentile(&cold, 0.5)) / 1000.0);
    println!("  cached load             median {:>9.2} ms", micros(percentile(&cached, 0.5)) / 1000.0);
    println!("  compiled at build time  median {:>9.2} ms", micros(percentile(&built_in, 0.5)) / 1000.0);
    println!(
        "host start on an empty cache, all {} bundled plugins: median {:.1} ms",
        plugboard_bundled_plugins::PLUGINS.len(),
        micros(percentile(&starts, 0.5)) / 1000.0
    );

    // One caller: fresh instance per call.
    let args = r#"{"text":"hello"}"#;
    let ctx = CallContext::default();
    for _ in 0..1000 {
        host.call_tool("echo", args, &ctx, None).await.unwrap();
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let out = host.call_tool("echo", args, &ctx, None).await.unwrap();
        samples.push(t.elapsed());
        std::hint::black_box(out);
    }
    samples.sort();
    let median = percentile(&samples, 0.5);
    let p99 = percentile(&samples, 0.99);

    // The same work natively: parse the JSON arguments, build the output.
    let mut native = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        let value: serde_json::Value = serde_json::from_str(std::hint::black_box(args)).unwrap();
        let text = value["text"].as_str().unwrap().to_string();
        std::hint::black_box(text);
        native.push(t.elapsed());
    }
    native.sort();
    let native_median = percentile(&native, 0.5);
    println!("\ntrivial tool call, fresh instance (dispatch + JSON + policy + instantiate + call + drop)");
    println!("  median                         {:>9.2} µs", micros(median));
    println!("  p99                            {:>9.2} µs", micros(p99));
    println!(
        "  native Rust, same work, median {:>9.3} µs  (wasm/native ratio {:.0}x)",
        micros(native_median),
        micros(median) / micros(native_median).max(0.001)
    );

    // Throughput with concurrent callers on the runtime's 2 worker threads.
    for callers in [2usize, 4] {
        let per_caller = calls / callers;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..callers {
            let host = host.clone();
            tasks.push(tokio::spawn(async move {
                let ctx = CallContext::default();
                for _ in 0..per_caller {
                    host.call_tool("echo", r#"{"text":"hello"}"#, &ctx, None).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = started.elapsed();
        println!(
            "\nthroughput, {callers} concurrent callers, 2 worker threads: {:>8.0} calls/s",
            (per_caller * callers) as f64 / elapsed.as_secs_f64()
        );
    }
    commands().await;
}

/// A confined `true` through the hostile plugin's `run`: the whole call, without network and
/// with a network grant (its namespace and proxy made and ended with the command).
async fn commands() {
    let plain = Workspace::new();
    plain.config("[plugins.hostile]\nprocess = [\"true\"]\n");
    let proxied = Workspace::new();
    proxied.config("[plugins.hostile]\nprocess = [\"true\"]\nnetwork = [\"https://example.com\"]\n");
    println!("\nconfined command `true`, the whole tool call, median of 100");
    for (label, ws) in [("no network", &plain), ("network grant (proxy)", &proxied)] {
        let host = ws.host().await;
        if let plugboard::capability::confinement::ConfinementSupport::Unavailable(reason) = host.confinement() {
            println!("  skipped: commands cannot be confined here ({reason})");
            return;
        }
        let ctx = CallContext::default();
        let mut samples = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            host.call_tool("run", r#"{"command":"true"}"#, &ctx, None).await.unwrap();
            samples.push(t.elapsed());
        }
        samples.sort();
        println!(
            "  {label:<24} median {:>9.2} ms  p99 {:>9.2} ms",
            micros(percentile(&samples, 0.5)) / 1000.0,
            micros(percentile(&samples, 0.99)) / 1000.0
        );
    }
}
