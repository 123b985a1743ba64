//! A scripted OpenAI-compatible model for load benchmarks, run as a process of its own so
//! that what it costs is not counted as the host's.
//!
//! `scripted-model [--delay-ms N] [--root DIR] [--nodelay false]` listens on a free loopback
//! port (with `TCP_NODELAY`, as the big APIs' servers set it, unless `--nodelay false`), prints
//! `listening on 127.0.0.1:PORT`, and answers every `POST /v1/chat/completions` with a
//! stream (one chunk every N ms, 2 by default), concurrently and without limit:
//! - a conversation without tool results: three parallel `read` calls, of `a.txt`, `b.txt`
//!   and `c.txt`, their arguments split across chunks. The arguments follow the `read`
//!   tool the request offers: `{"path": "a.txt"}` for Plugboard's, `{"filePath":
//!   "DIR/a.txt"}` for a tool that takes `filePath` (OpenCode's, which wants it absolute);
//! - one with tool results: the text `read 3 of 3`, where 3 counts the results that hold
//!   the file's expected content (`content of a.txt`, ...), so a benchmark can tell a
//!   correct answer from one whose tools failed;
//! - a request that offers no `read` tool (a client's title request): the text `title`.
//!
//! It stops when its standard input closes (the benchmark dropped it).

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

const FILES: [&str; 3] = ["a.txt", "b.txt", "c.txt"];

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut delay = Duration::from_millis(2);
    let mut root = String::new();
    let mut nodelay = true;
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--delay-ms", Some(ms)) if ms.parse::<u64>().is_ok() => delay = Duration::from_millis(ms.parse().unwrap()),
            ("--root", Some(dir)) => root = dir,
            ("--nodelay", Some(on)) if on.parse::<bool>().is_ok() => nodelay = on.parse().unwrap(),
            _ => {
                eprintln!("usage: scripted-model [--delay-ms N] [--root DIR] [--nodelay true|false]");
                std::process::exit(2);
            }
        }
    }
    let root: &'static str = root.leak();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    println!("listening on {}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(move |body: axum::Json<Value>| async move { complete(&body, delay, root) }));
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    });
    let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp| {
        let _ = tcp.set_nodelay(nodelay);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stdin_closed.await;
        })
        .await
        .unwrap();
}

fn complete(request: &Value, delay: Duration, root: &str) -> Response {
    // A tool result's content is a string, or (some clients) an array of text parts.
    let results: Vec<String> = request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .map(|m| match &m["content"] {
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
            content => content.as_str().unwrap_or_default().to_string(),
        })
        .collect();
    let read = request["tools"].as_array().into_iter().flatten().find(|t| t["function"]["name"] == "read");
    let chunks = match read {
        None => text("title"),
        Some(_) if !results.is_empty() => answer(&results),
        Some(tool) => {
            let absolute = tool["function"]["parameters"]["properties"].get("filePath").is_some();
            tool_calls(|file| if absolute { json!({ "filePath": format!("{root}/{file}") }) } else { json!({ "path": file }) })
        }
    };
    let stream = futures::stream::iter(chunks).then(move |chunk| async move {
        if !delay.is_zero() {
            // A zero sleep still waits for the timer's next millisecond tick.
            tokio::time::sleep(delay).await;
        }
        Ok::<_, std::convert::Infallible>(format!("data: {chunk}\n\n"))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream.chain(futures::stream::once(async { Ok("data: [DONE]\n\n".to_string()) }))))
        .unwrap()
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    json!({ "id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "test-model",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
    .to_string()
}

fn usage() -> String {
    json!({ "id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "test-model", "choices": [],
            "usage": { "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120 } })
    .to_string()
}

fn tool_calls(arguments: impl Fn(&str) -> Value) -> Vec<String> {
    let opened: Vec<Value> = FILES
        .iter()
        .enumerate()
        .map(|(i, _)| json!({ "index": i, "id": format!("call_{i}"), "type": "function", "function": { "name": "read", "arguments": "" } }))
        .collect();
    let mut chunks = vec![chunk(json!({ "role": "assistant", "tool_calls": opened }), None)];
    for (i, file) in FILES.iter().enumerate() {
        let arguments = arguments(file).to_string();
        let half = (0..=arguments.len() / 2).rev().find(|&i| arguments.is_char_boundary(i)).unwrap_or(0);
        let (first, rest) = arguments.split_at(half);
        for piece in [first, rest] {
            chunks.push(chunk(json!({ "tool_calls": [{ "index": i, "function": { "arguments": piece } }] }), None));
        }
    }
    chunks.push(chunk(json!({}), Some("tool_calls")));
    chunks.push(usage());
    chunks
}

fn answer(results: &[String]) -> Vec<String> {
    let correct = FILES.iter().filter(|f| results.iter().any(|r| r.contains(&format!("content of {f}")))).count();
    text(&format!("read {correct} of {}", FILES.len()))
}

fn text(text: &str) -> Vec<String> {
    let mut chunks: Vec<String> = text.split_inclusive(' ').map(|word| chunk(json!({ "content": word }), None)).collect();
    chunks.push(chunk(json!({}), Some("stop")));
    chunks.push(usage());
    chunks
}
