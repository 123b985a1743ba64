//! Commands that act on a running `plugboard serve` over its HTTP API: `plugin reload`.
//! The bearer secret is taken from `PLUGBOARD_SHARED_SECRET`, as the server takes it.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

/// `plugboard plugin reload [ID]`: asks the server to reload, prints what changed, and
/// exits 1 when a new version failed to load.
pub async fn reload(server: &str, id: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let base = server.trim_end_matches('/');
    if !base.starts_with("http://") {
        anyhow::bail!("--server `{server}`: give an http:// address, e.g. http://127.0.0.1:3003 (this client does not speak TLS)");
    }
    let url = match id {
        Some(id) => format!("{base}/plugins/{id}/reload"),
        None => format!("{base}/plugins/reload"),
    };
    let mut request = reqwest::Client::new().post(&url);
    if let Ok(secret) = std::env::var("PLUGBOARD_SHARED_SECRET")
        && !secret.is_empty()
    {
        request = request.bearer_auth(secret);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("no Plugboard server answers at {base} (start one with `plugboard serve`, or pass --server URL)"))?;
    let status = response.status();
    let body: Value = response.json().await.with_context(|| format!("the server at {base} did not answer with JSON ({status})"))?;
    if !status.is_success() {
        let error = body["error"].as_str().unwrap_or("unknown error");
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED { " (set PLUGBOARD_SHARED_SECRET to the server's secret)" } else { "" };
        anyhow::bail!("the server refused the reload ({status}): {error}{hint}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print_report(&body);
    }
    let failed = body["failed"].as_array().is_some_and(|f| !f.is_empty());
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The report of a reload, a line per change.
fn print_report(report: &Value) {
    let names = |key: &str| -> Vec<String> {
        report[key].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    for (key, verb) in [("loaded", "loaded"), ("reloaded", "reloaded"), ("unloaded", "unloaded")] {
        for id in names(key) {
            println!("{verb:9} {id}");
        }
    }
    for failure in report["failed"].as_array().into_iter().flatten() {
        let source = match &failure["source"] {
            Value::Object(s) => s.get("path").or_else(|| s.get("name")).and_then(Value::as_str).unwrap_or("?").to_string(),
            other => other.to_string(),
        };
        println!("failed    {source}: {}", failure["reason"].as_str().unwrap_or("?"));
    }
    println!("{} unchanged, in {:.1} ms", report["unchanged"].as_u64().unwrap_or(0), report["elapsed_ms"].as_f64().unwrap_or(0.0));
}
