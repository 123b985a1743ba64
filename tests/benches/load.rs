//! Load over a model that streams from another process: `cargo bench -p plugboard-tests
//! --bench load`.
//!
//! The model is `scripted-model` (this package's binary), an OpenAI-compatible server in a
//! process of its own that streams one chunk every `PLUGBOARD_BENCH_DELAY_MS` (2 by
//! default), with `TCP_NODELAY` as the big APIs' servers set it
//! (`PLUGBOARD_BENCH_NODELAY=0` leaves Nagle's algorithm on, as some self-hosted servers
//! do). Every prompt is two turns of the bundled `openai` provider: three parallel calls of
//! the bundled `read` tool, then an answer that says how many of the three reads returned
//! their file, so a wrong result is counted as one. The host runs in this process
//! with the default `[engine]` settings and `[sessions] max_concurrent = 1000`. Prints:
//! - a prompt at a time: latency, and the host's CPU, context switches and page faults per
//!   prompt;
//! - a direct `read` call: latency, CPU, context switches and page faults;
//! - 1,000 sessions prompted at once, twice (the first run also touches the instance pools'
//!   memory for the first time, the second runs on warm pools as a server that has been up
//!   a while does), then `PLUGBOARD_BENCH_BURST` (10,000 by default) in one burst (all but
//!   1,000 queue; 0 skips it): sessions/s, time to all done, errors, wrong answers, CPU and
//!   page faults per prompt, and the process's peak RSS.

use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugboard::agent::AgentRuntime;
use plugboard_tests::Workspace;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

/// The scripted model's process, killed when dropped.
struct Model {
    child: std::process::Child,
    url: String,
}

impl Model {
    fn start(delay_ms: u64, nodelay: bool) -> Model {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_scripted-model"))
            .args(["--delay-ms", &delay_ms.to_string(), "--nodelay", &nodelay.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("scripted-model starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").expect("scripted-model prints its address").to_string();
        Model { child, url: format!("http://{addr}") }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's CPU time, context switches and page faults so far.
#[derive(Clone, Copy)]
struct Usage {
    cpu: Duration,
    switches: i64,
    faults: i64,
}

/// [`Usage`] per one of `n`: CPU in µs, context switches, page faults.
struct PerOne {
    cpu: f64,
    switches: f64,
    faults: f64,
}

impl Usage {
    fn now() -> Usage {
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Usage {
            cpu: time(usage.ru_utime) + time(usage.ru_stime),
            switches: usage.ru_nvcsw + usage.ru_nivcsw,
            faults: usage.ru_minflt + usage.ru_majflt,
        }
    }

    /// The usage since `self`, per one of `n`.
    fn per(self, n: usize) -> PerOne {
        let now = Usage::now();
        PerOne {
            cpu: (now.cpu - self.cpu).as_secs_f64() * 1e6 / n as f64,
            switches: (now.switches - self.switches) as f64 / n as f64,
            faults: (now.faults - self.faults) as f64 / n as f64,
        }
    }
}

/// The process's peak resident set, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e3
}

const EXPECTED: &str = "read 3 of 3";

async fn run() {
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let delay_ms = env("PLUGBOARD_BENCH_DELAY_MS", 2) as u64;
    let burst = env("PLUGBOARD_BENCH_BURST", 10_000);
    let nodelay = env("PLUGBOARD_BENCH_NODELAY", 1) != 0;
    let model = Model::start(delay_ms, nodelay);
    let ws = Workspace::new();
    for file in ["a.txt", "b.txt", "c.txt"] {
        ws.file(file, format!("content of {file}\n"));
    }
    ws.operator_config(&format!(
        "default_model = \"openai/test-model\"\n[sessions]\nmax_concurrent = 1000\n[agents.build]\npermissions = [{{ tool = \"read\", action = \"allow\" }}]\n[plugins.openai]\nnetwork = [\"{url}\"]\napi_key = \"sk-bench\"\nsettings = {{ base_url = \"{url}/v1\", models = [{{ id = \"test-model\" }}] }}\n",
        url = model.url
    ));
    let app = ws.app().await;
    let store = plugboard::store::SessionStore::open(&ws.data.join("plugboard.db")).unwrap();
    let runtime = app.agent_runtime(store.clone(), plugboard::agent::permission::AskMode::DenyAll).unwrap();
    println!(
        "plugboard load benchmark: a model streaming from another process (a chunk every {delay_ms} ms); each prompt: 2 turns, 3 parallel `read` calls\n"
    );

    sequential(&runtime, 200).await;
    direct_read(&app, 2_000).await;
    at_once(&runtime, 1_000, "1,000 sessions prompted at once").await;
    at_once(&runtime, 1_000, "1,000 sessions prompted at once, again (warm pools)").await;
    if burst > 0 {
        at_once(&runtime, burst, &format!("{burst} sessions in one burst (1,000 run at once, the rest queue)")).await;
    }

    runtime.shutdown(Duration::from_secs(10)).await;
    drop(model);
}

async fn sequential(runtime: &Arc<AgentRuntime>, prompts: usize) {
    let mut samples = Vec::with_capacity(prompts);
    let before = Usage::now();
    for _ in 0..prompts {
        let session = runtime.create_session(None, "build", None, "seq").await.unwrap();
        let started = Instant::now();
        let outcome = runtime.prompt(&session.id, "read the three files").await.expect("the prompt completes");
        assert_eq!(outcome.text, EXPECTED, "a sequential prompt's answer");
        samples.push(started.elapsed());
    }
    let used = before.per(prompts);
    println!("{prompts} prompts, one at a time");
    println!(
        "  median {:.2} ms   p99 {:.2} ms   host CPU per prompt {:.0} µs   context switches per prompt {:.0}   page faults per prompt {:.0}",
        percentile(&mut samples, 0.5),
        percentile(&mut samples, 0.99),
        used.cpu,
        used.switches,
        used.faults
    );
}

async fn direct_read(app: &plugboard::app::App, calls: usize) {
    let host = app.host();
    let mut samples = Vec::with_capacity(calls);
    let before = Usage::now();
    for _ in 0..calls {
        let started = Instant::now();
        let out = plugboard_tests::call(host, "read", serde_json::json!({ "path": "a.txt" })).await.expect("read answers");
        samples.push(started.elapsed());
        assert!(out.text.contains("content of a.txt"), "read returned {:?}", out.text);
    }
    let used = before.per(calls);
    println!("\n{calls} direct `read` calls");
    println!(
        "  median {:.0} µs   CPU per call {:.0} µs   context switches per call {:.1}   page faults per call {:.1}",
        percentile(&mut samples, 0.5) * 1e3,
        used.cpu,
        used.switches,
        used.faults
    );
}

async fn at_once(runtime: &Arc<AgentRuntime>, count: usize, title: &str) {
    let mut sessions = Vec::with_capacity(count);
    for _ in 0..count {
        sessions.push(runtime.create_session(None, "build", None, "load").await.unwrap().id);
    }
    let before = Usage::now();
    let started = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|id| {
            let runtime = runtime.clone();
            tokio::spawn(async move { runtime.prompt(&id, "read the three files").await })
        })
        .collect();
    let (mut errors, mut wrong, mut first_error) = (0, 0, None);
    for task in tasks {
        match task.await.unwrap() {
            Ok(outcome) if outcome.text == EXPECTED => {}
            Ok(outcome) => {
                wrong += 1;
                first_error.get_or_insert(format!("answered {:?}", outcome.text));
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let elapsed = started.elapsed();
    let used = before.per(count);
    println!("\n{title}");
    println!(
        "  {:.0} sessions/s   {:.2} s to all done   errors {errors}   wrong answers {wrong}   host CPU per prompt {:.0} µs   page faults per prompt {:.0}   peak RSS {:.0} MiB",
        count as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        used.cpu,
        used.faults,
        peak_rss_mib()
    );
    if let Some(e) = first_error {
        println!("  the first failure: {e}");
    }
}
