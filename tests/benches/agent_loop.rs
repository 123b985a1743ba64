//! Agent-loop benchmark: `cargo bench -p plugboard-tests --bench agent_loop`.
//!
//! A provider that answers at once (`tests/plugins/instant-provider`) makes every prompt two
//! turns: three parallel `echo` tool calls, then an answer. What is measured is the host:
//! history load, request building, recording every part and event in SQLite, permission
//! checks, tool calls (fresh instances) and the provider instance.
//!
//! Prints the time per prompt and per turn, sessions per second, 1,000 sessions running at
//! once (errors, and memory per idle session), and the write-ahead log under prompts back
//! to back (`PLUGBOARD_BENCH_WAL_PROMPTS`, 10,000 by default): its peak size, the slowest
//! prompts (a truncation that makes writes wait shows there), and what is left after close.

use std::time::Instant;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

async fn run() {
    let prompts: usize = std::env::var("PLUGBOARD_BENCH_PROMPTS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let agent = plugboard_tests::instant_agent().await;
    let runtime = agent.runtime.clone();
    println!("plugboard agent-loop benchmark ({prompts} prompts; each: 2 turns, 3 parallel tool calls)\n");

    // Warm up.
    for _ in 0..20 {
        let s = runtime.create_session(None, "build", None, "warm").await.unwrap();
        runtime.prompt(&s.id, "go").await.unwrap();
    }

    // One session after another: latency per prompt.
    let mut samples = Vec::with_capacity(prompts);
    for _ in 0..prompts {
        let s = runtime.create_session(None, "build", None, "bench").await.unwrap();
        let started = Instant::now();
        let outcome = runtime.prompt(&s.id, "go").await.unwrap();
        samples.push(started.elapsed());
        assert_eq!(outcome.steps, 2);
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99) / 100];
    println!("prompt (2 turns, 3 tool calls), sequential");
    println!("  median {:>8.2} ms   p99 {:>8.2} ms", median.as_secs_f64() * 1e3, p99.as_secs_f64() * 1e3);
    println!("  per turn (median / 2) {:>6.2} ms", median.as_secs_f64() * 1e3 / 2.0);

    // Many sessions at once: throughput.
    for concurrent in [16usize, 1000] {
        let rss_before = rss_kib();
        let mut sessions = Vec::with_capacity(concurrent);
        for _ in 0..concurrent {
            sessions.push(runtime.create_session(None, "build", None, "load").await.unwrap().id);
        }
        let rss_idle = rss_kib();
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(concurrent);
        for id in sessions {
            let runtime = runtime.clone();
            tasks.push(tokio::spawn(async move { runtime.prompt(&id, "go").await.map(|_| ()) }));
        }
        let mut errors = 0;
        for task in tasks {
            if !matches!(task.await, Ok(Ok(()))) {
                errors += 1;
            }
        }
        let elapsed = started.elapsed();
        println!("\n{concurrent} sessions prompted at once");
        println!(
            "  {:>8.0} sessions/s   {:.2} s in all   errors: {errors}",
            concurrent as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64()
        );
        println!(
            "  memory per idle session: {:.1} KiB (an idle session is a database row; process RSS {} -> {} KiB after creating them)",
            (rss_idle.saturating_sub(rss_before)) as f64 / concurrent as f64,
            rss_before,
            rss_idle
        );
    }

    long_session(&runtime, &agent.store).await;
    wal_under_load(&runtime, &agent.store).await;
}

/// A session whose history holds `count` messages (user and assistant text in turn, 200
/// characters each), written straight into the store.
async fn seeded_session(
    runtime: &std::sync::Arc<plugboard::agent::AgentRuntime>,
    store: &plugboard::store::SessionStore,
    count: usize,
) -> String {
    use plugboard::store::model::{MessageRole, MessageStatus, PartKind};
    use plugboard::store::sessions::{Tokens, new_id};
    let id = runtime.create_session(None, "build", None, "long").await.unwrap().id;
    let key = id.clone();
    store
        .write(move |tx| {
            for i in 0..count {
                let (message, role) = (new_id("msg"), if i % 2 == 0 { MessageRole::User } else { MessageRole::Assistant });
                tx.insert_message(&message, &key, role, None, MessageStatus::Running, None)?;
                let text = format!("message {i}: {}", "words of a long working session ".repeat(6));
                tx.insert_part(&new_id("prt"), &key, &message, PartKind::Text, &serde_json::json!({ "text": text }))?;
                tx.finish_message(&key, &message, MessageStatus::Completed, Tokens::default(), 0.0, None)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    id
}

/// Host overhead per turn on a session of 1,000 messages, against a fresh one, and what a
/// compaction of such a session costs besides the model's time (the instant provider writes
/// the summary at once).
async fn long_session(runtime: &std::sync::Arc<plugboard::agent::AgentRuntime>, store: &plugboard::store::SessionStore) {
    let prompts: usize = std::env::var("PLUGBOARD_BENCH_LONG_PROMPTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!("\nlong sessions ({prompts} prompts each; one text turn per prompt once the history has tool results)");
    for messages in [0usize, 1_000] {
        let id = seeded_session(runtime, store, messages).await;
        runtime.prompt(&id, "go").await.unwrap();
        let mut per_turn = Vec::with_capacity(prompts);
        for _ in 0..prompts {
            let started = Instant::now();
            let outcome = runtime.prompt(&id, "go on").await.unwrap();
            per_turn.push(started.elapsed() / outcome.steps.max(1));
        }
        per_turn.sort();
        let total = store.history(&id).await.unwrap().len();
        println!(
            "  {messages:>5} messages seeded ({total} at the end): per turn median {:.2} ms   p99 {:.2} ms",
            ms(per_turn[prompts / 2]),
            ms(per_turn[prompts * 99 / 100])
        );
    }
    let mut compactions = Vec::new();
    let mut sizes = (0, 0);
    for _ in 0..10 {
        let id = seeded_session(runtime, store, 1_000).await;
        let started = Instant::now();
        let done = runtime.compact(&id).await.unwrap();
        compactions.push(started.elapsed());
        sizes = (done.tokens_before, done.tokens_after);
    }
    compactions.sort();
    println!(
        "  compaction of 1,000 messages (about {} → {} tokens), the model's time excluded: median {:.2} ms   max {:.2} ms",
        sizes.0,
        sizes.1,
        ms(compactions[compactions.len() / 2]),
        ms(compactions[compactions.len() - 1])
    );
}

/// Prompts back to back, the log's size after each; then closes the store.
async fn wal_under_load(runtime: &std::sync::Arc<plugboard::agent::AgentRuntime>, store: &plugboard::store::SessionStore) {
    let prompts: usize = std::env::var("PLUGBOARD_BENCH_WAL_PROMPTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let wal = store.path().with_extension("db-wal");
    let wal_bytes = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let mut peak = 0;
    let mut samples = Vec::with_capacity(prompts);
    let started = Instant::now();
    for _ in 0..prompts {
        let s = runtime.create_session(None, "build", None, "wal").await.unwrap();
        let prompted = Instant::now();
        runtime.prompt(&s.id, "go").await.unwrap();
        samples.push(prompted.elapsed());
        peak = peak.max(wal_bytes());
    }
    let elapsed = started.elapsed();
    samples.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let database = std::fs::metadata(store.path()).map_or(0, |m| m.len());
    println!(
        "
write-ahead log under {prompts} prompts back to back ({:.1} s)",
        elapsed.as_secs_f64()
    );
    println!("  peak {:.1} MiB   database {:.1} MiB", peak as f64 / 1048576.0, database as f64 / 1048576.0);
    println!(
        "  prompt median {:.2} ms   p99 {:.2} ms   p99.9 {:.2} ms   max {:.2} ms",
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() * 99 / 100]),
        ms(samples[samples.len() * 999 / 1000]),
        ms(samples[samples.len() - 1])
    );
    store.close().await.unwrap();
    println!("  after close: {} bytes of log", wal_bytes());
}
