//! HTTP API benchmark: `cargo bench -p plugboard-tests --bench http`.
//!
//! A server on a loopback port in this process, over the instant provider
//! (`tests/plugins/instant-provider`), so what is measured is Plugboard. Prints:
//! - the time from `POST /sessions` (with a prompt) to the session's first event on an open
//!   `/events` stream, and to its `complete` event;
//! - events per second delivered to 100 concurrent SSE subscribers;
//! - requests per second of `GET /sessions/{id}/status`, with `wrk` when it is installed
//!   (`apt install wrk`), else with an in-process client (said so in the output);
//! - one call of a stdio MCP server's tool (`[mcp.inner]`, a confined `plugboard mcp`)
//!   against the host's own, in-process;
//! - one `echo` call three ways: `POST /tools/echo/call`, `tools/call` through `/mcp` (the
//!   official Rust SDK's client), and through `plugboard mcp` over stdio (when
//!   `target/release/plugboard` is built);
//! - `GET /healthz` latency while 40 calls of a spinning plugin (`hostile`'s `spin`) run on
//!   the server's 2 workers, against the same figure at rest.

use std::time::{Duration, Instant};

use plugboard::server::settings::ServerConfig;
use plugboard::server::state::AppState;
use plugboard::server::{ServerSettings, serve_with};
use plugboard::store::SessionStore;
use plugboard_tests::SseReader;
use serde_json::json;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples[(samples.len() * p / 100).min(samples.len() - 1)]
}

async fn run() {
    let agent = plugboard_tests::instant_agent().await;
    let store = agent.store.clone();
    let base = start_server(agent.app.clone(), agent.runtime.clone()).await;
    let http = reqwest::Client::new();
    println!("plugboard HTTP benchmark (server and clients share this machine's cores)\n");

    first_event(&http, &base).await;
    fan_out(&http, &base, &store).await;
    status_requests(&http, &base).await;
    mcp_calls(&http, &base, &agent.ws).await;
    healthz_under_cpu_flood(&http).await;
}

/// One `echo` call, sequentially, directly and through both MCP transports.
async fn mcp_calls(http: &reqwest::Client, base: &str, ws: &plugboard_tests::Workspace) {
    use plugboard_tests::mcp::{self, Answer, Recorder};
    const CALLS: usize = 1000;
    const WARM_UP: usize = 50;
    let mut direct = Vec::with_capacity(CALLS);
    for i in 0..WARM_UP + CALLS {
        let started = Instant::now();
        let response = http.post(format!("{base}/tools/echo/call")).json(&json!({ "arguments": { "text": "hi" } })).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
        if i >= WARM_UP {
            direct.push(started.elapsed());
        }
    }
    let measure = async |client: &mcp::Client| {
        let mut samples = Vec::with_capacity(CALLS);
        for i in 0..WARM_UP + CALLS {
            let started = Instant::now();
            let result = mcp::call(client, "echo", json!({ "text": "hi" })).await.unwrap();
            assert_eq!(result.is_error, Some(false), "{result:?}");
            if i >= WARM_UP {
                samples.push(started.elapsed());
            }
        }
        samples
    };
    let client = mcp::connect_http(&format!("{base}/mcp"), None, Recorder::new(Answer::CannotBeAsked)).await;
    let mut over_http = measure(&client).await;
    client.cancel().await.unwrap();
    println!("one `echo` call, {CALLS} in a row (a fresh sandboxed instance each)");
    println!("  POST /tools/echo/call           p50 {:>8.2?}  p99 {:>8.2?}", percentile(&mut direct, 50), percentile(&mut direct, 99));
    println!(
        "  tools/call through /mcp         p50 {:>8.2?}  p99 {:>8.2?}",
        percentile(&mut over_http, 50),
        percentile(&mut over_http, 99)
    );
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/plugboard");
    if !bin.exists() {
        println!("  tools/call through `plugboard mcp` (stdio): skipped, build the binary first (cargo build --release)\n");
        return;
    }
    let config = ws.outside.join("bench-operator.toml");
    std::fs::write(&config, "[agents.build]\npermissions = [{ tool = \"echo\", action = \"allow\" }]\n").unwrap();
    let mut command = tokio::process::Command::new(&bin);
    command.current_dir(&ws.dir).env("LOG_LEVEL", "warn").arg("--config").arg(&config).arg("--plugins").arg(&ws.plugins);
    command.arg("--data-dir").arg(ws.data.join("bench-mcp")).arg("mcp");
    let client = mcp::connect_stdio(command, Recorder::new(Answer::CannotBeAsked)).await;
    let mut over_stdio = measure(&client).await;
    client.cancel().await.unwrap();
    println!(
        "  tools/call through `plugboard mcp` (stdio) p50 {:>8.2?}  p99 {:>8.2?}\n",
        percentile(&mut over_stdio, 50),
        percentile(&mut over_stdio, 99)
    );
    mcp_source_calls(&bin, ws, &config).await;
}

/// The other direction: `echo` of a stdio MCP server (`plugboard mcp` again, started
/// confined by a host whose `[mcp.inner]` names it), called as `inner_echo` in-process,
/// against the same host's own `echo`.
async fn mcp_source_calls(bin: &std::path::Path, ws: &plugboard_tests::Workspace, inner_config: &std::path::Path) {
    const CALLS: usize = 1000;
    const WARM_UP: usize = 50;
    let source = plugboard_tests::Workspace::new();
    let (data, cache) = (source.outside.join("inner-data"), source.outside.join("inner-cache"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    let q = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    source.operator_config(&format!(
        "[mcp.inner]\ncommand = {}\nargs = [\"--workspace\", {}, \"--config\", {}, \"--plugins\", {}, \"--data-dir\", {}, \"--cache-dir\", {}, \"mcp\"]\nenv = {{ LOG_LEVEL = \"warn\" }}\nfilesystem = [{}, {}, {}, {}, {{ path = {}, access = \"read-write\" }}, {{ path = {}, access = \"read-write\" }}]\n",
        q(bin), q(&ws.dir), q(inner_config), q(&ws.plugins), q(&data), q(&cache),
        q(bin.parent().unwrap()), q(&ws.dir), q(inner_config.parent().unwrap()), q(&ws.plugins), q(&data), q(&cache),
    ));
    let app = source.app().await;
    let host = app.host().clone();
    host.mcp().settled(Duration::from_secs(60)).await;
    let measure = async |tool: &str| {
        let mut samples = Vec::with_capacity(CALLS);
        for i in 0..WARM_UP + CALLS {
            let started = Instant::now();
            plugboard_tests::call(&host, tool, json!({ "text": "hi" })).await.unwrap_or_else(|e| panic!("{tool}: {e}"));
            if i >= WARM_UP {
                samples.push(started.elapsed());
            }
        }
        samples
    };
    let mut direct = measure("echo").await;
    let mut through = measure("inner_echo").await;
    println!("one `echo` call in-process, {CALLS} in a row: the host's own, and a stdio MCP server's (confined `plugboard mcp`)");
    println!("  echo (a plugin)                 p50 {:>8.2?}  p99 {:>8.2?}", percentile(&mut direct, 50), percentile(&mut direct, 99));
    println!("  inner_echo ([mcp.inner], stdio) p50 {:>8.2?}  p99 {:>8.2?}\n", percentile(&mut through, 50), percentile(&mut through, 99));
}

/// Serves `runtime` on a loopback port of this process; its base URL.
async fn start_server(app: std::sync::Arc<plugboard::app::App>, runtime: std::sync::Arc<plugboard::agent::AgentRuntime>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings =
        ServerSettings::resolve(&ServerConfig::default(), addr, None, false, plugboard::agent::SessionSettings::default()).unwrap();
    tokio::spawn(serve_with(listener, AppState::ready(settings, app, runtime), std::future::pending()));
    format!("http://{addr}")
}

/// `GET /healthz` latencies: `samples` requests, one every 10 ms.
async fn healthz_latencies(http: &reqwest::Client, base: &str, samples: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let response = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    latencies
}

/// `/healthz` while more spinning guests than worker threads run, and at rest.
async fn healthz_under_cpu_flood(http: &reqwest::Client) {
    const SPINNERS: usize = 40;
    let ws = plugboard_tests::Workspace::new();
    ws.config("[plugins.hostile]\nlimits = { timeout_ms = 4000 }\n");
    let app = ws.app().await;
    let store = SessionStore::open(&ws.dir.join(".data/plugboard.db")).unwrap();
    let runtime = app.agent_runtime(store, plugboard::agent::permission::AskMode::DenyAll).unwrap();
    let base = start_server(app, runtime).await;
    let mut rest = healthz_latencies(http, &base, 100).await;
    let spinners: Vec<_> = (0..SPINNERS)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{base}/tools/spin/call"));
            tokio::spawn(async move { http.post(url).json(&json!({ "arguments": {} })).send().await.unwrap().status().as_u16() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut flood = healthz_latencies(http, &base, 200).await;
    let mut statuses = Vec::new();
    for spinner in spinners {
        statuses.push(spinner.await.unwrap());
    }
    assert!(statuses.iter().all(|s| *s >= 400), "every spinning call ends at its time limit: {statuses:?}");
    println!("GET /healthz, one request every 10 ms (server on 2 workers)");
    println!("  at rest                          p50 {:>8.2?}  p99 {:>8.2?}", percentile(&mut rest, 50), percentile(&mut rest, 99));
    println!(
        "  during {SPINNERS} spinning calls         p50 {:>8.2?}  p99 {:>8.2?}  max {:>8.2?}",
        percentile(&mut flood, 50),
        percentile(&mut flood, 99),
        percentile(&mut flood, 100)
    );
}

/// `POST /sessions` with a prompt → the session's first event, and its `complete`.
async fn first_event(http: &reqwest::Client, base: &str) {
    let rounds = 200;
    let mut events = SseReader::new(http.get(format!("{base}/events?types=session.created,complete")).send().await.unwrap());
    let (mut created, mut first, mut complete) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds + 20 {
        let started = Instant::now();
        let response = http.post(format!("{base}/sessions")).json(&json!({ "prompt": "go" })).send().await.unwrap();
        let answered = started.elapsed();
        let body: serde_json::Value = response.json().await.unwrap();
        let id = body["session_id"].as_str().unwrap().to_string();
        let mut first_at = None;
        loop {
            let frame = events.next().await.unwrap();
            if frame.data["session_id"] != json!(id) {
                continue;
            }
            first_at.get_or_insert(started.elapsed());
            if frame.event == "complete" {
                break;
            }
        }
        if round >= 20 {
            created.push(answered);
            first.push(first_at.unwrap());
            complete.push(started.elapsed());
        }
    }
    println!("POST /sessions with a prompt ({rounds} rounds; the prompt: 2 turns, 3 tool calls)");
    println!("  201 answered           p50 {:>8.2?}  p99 {:>8.2?}", percentile(&mut created, 50), percentile(&mut created, 99));
    println!("  first event received   p50 {:>8.2?}  p99 {:>8.2?}", percentile(&mut first, 50), percentile(&mut first, 99));
    println!("  `complete` received    p50 {:>8.2?}  p99 {:>8.2?}\n", percentile(&mut complete, 50), percentile(&mut complete, 99));
}

/// Events per second delivered to 100 subscribers of `/events`.
async fn fan_out(http: &reqwest::Client, base: &str, store: &SessionStore) {
    const SUBSCRIBERS: usize = 100;
    const EVENTS: i64 = 3_000;
    const BATCH: i64 = 100;
    let start = store.last_seq().await.unwrap();
    let end = start + EVENTS;
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let response = http.get(format!("{base}/events?types=part.delta")).header("last-event-id", start.to_string()).send().await.unwrap();
        let mut reader = SseReader::new(response);
        readers.push(tokio::spawn(async move {
            let mut received = 0;
            while let Some(frame) = reader.next().await {
                if frame.event == "reconnect" {
                    panic!("a subscriber fell behind");
                }
                if frame.id.is_some() {
                    received += 1;
                }
                if frame.id == Some(end) {
                    break;
                }
            }
            received
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    for batch in 0..EVENTS / BATCH {
        store.write(move |tx| (0..BATCH).try_for_each(|i| tx.emit(None, "part.delta", json!({ "n": batch * BATCH + i })))).await.unwrap();
    }
    let mut delivered = 0;
    for reader in readers {
        delivered += reader.await.unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(delivered, SUBSCRIBERS as i64 * EVENTS, "every subscriber got every event");
    println!("fan-out: {EVENTS} events to {SUBSCRIBERS} SSE subscribers of /events (written in batches of {BATCH})");
    println!("  {delivered} events delivered in {elapsed:.2?}: {:.0} events/s\n", delivered as f64 / elapsed.as_secs_f64());
}

/// Requests per second of `GET /sessions/{id}/status`.
async fn status_requests(http: &reqwest::Client, base: &str) {
    let body: serde_json::Value = http.post(format!("{base}/sessions")).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let url = format!("{base}/sessions/{}/status", body["session_id"].as_str().unwrap());
    let wrk = tokio::process::Command::new("wrk").args(["-t2", "-c64", "-d5s", "--latency", &url]).output().await;
    match wrk {
        Ok(out) if out.status.success() => {
            println!("GET /sessions/{{id}}/status with wrk -t2 -c64 -d5s");
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let line = line.trim();
                if line.starts_with("Requests/sec") || line.starts_with("50%") || line.starts_with("99%") || line.contains("requests in") {
                    println!("  {line}");
                }
            }
        }
        _ => {
            // No wrk: 64 concurrent in-process clients for 5 s.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut tasks = Vec::new();
            for _ in 0..64 {
                let (http, url) = (http.clone(), url.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let r = http.get(&url).send().await.unwrap();
                        assert_eq!(r.status(), 200);
                        r.bytes().await.unwrap();
                        n += 1;
                    }
                    n
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            println!("GET /sessions/{{id}}/status, 64 in-process clients for 5 s (install wrk for the load-tool figure)");
            println!("  {:.0} requests/s", total as f64 / 5.0);
        }
    }
}
