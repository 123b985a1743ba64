//! The HTTP API end to end: a real server on a loopback port, real plugins, the openai
//! provider against a scripted server, and a real HTTP client reading the event streams.

use std::time::Duration;

use plugboard::agent::SessionSettings;
use plugboard::agent::permission::AskMode;
use plugboard::server::settings::ServerConfig;
use plugboard::server::state::AppState;
use plugboard::server::{ServerSettings, serve_with};
use plugboard_tests::{Scripted, SseFrame, SseReader};
use serde_json::{Value, json};

use crate::agent::{Fixture, call, fixture, request_body, say};
use crate::sessions::slow_text;

const WITHIN: Duration = Duration::from_secs(30);

/// An OpenAI-style answer of `words` chunks, one every `delay`, that finishes normally.
fn slow_answer(words: usize, delay: Duration) -> Scripted {
    let mut script = slow_text(words, delay);
    let end = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    let at = script.pieces.len() - 1;
    script.pieces.insert(at, format!("data: {end}\n\n").into_bytes());
    script
}

pub(crate) struct Api {
    pub f: Fixture,
    pub base: String,
    pub http: reqwest::Client,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn api(script: Vec<Scripted>, extra_config: &str, secret: Option<&str>) -> Api {
    api_with(script, extra_config, secret, ServerConfig::default()).await
}

/// [`api`] with `[server]` settings of its own (heartbeats are always 1 s).
pub(crate) async fn api_with(script: Vec<Scripted>, extra_config: &str, secret: Option<&str>, config: ServerConfig) -> Api {
    serve_fixture(fixture(script, extra_config, AskMode::Prompt).await, secret, config).await
}

/// Serves the runtime of `f` over HTTP.
pub(crate) async fn serve_fixture(f: Fixture, secret: Option<&str>, config: ServerConfig) -> Api {
    let config = ServerConfig { heartbeat_seconds: 1, ..config };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = ServerSettings::resolve(&config, addr, secret.map(str::to_string), false, SessionSettings::default()).unwrap();
    let state = AppState::ready(settings, f.app.clone(), f.runtime.clone());
    let task = tokio::spawn(serve_with(listener, state, std::future::pending()));
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(secret) = secret {
        headers.insert("authorization", format!("Bearer {secret}").parse().unwrap());
    }
    let http = reqwest::Client::builder().default_headers(headers).build().unwrap();
    Api { f, base: format!("http://{addr}"), http, task }
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.patch(self.url(path)).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(self.url(path))).await
    }

    pub async fn stream(&self, path: &str, last_event_id: Option<i64>) -> SseReader {
        let mut request = self.http.get(self.url(path));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        SseReader::new(request.send().await.unwrap())
    }

    /// Creates a session with a first prompt; returns its id.
    pub async fn start(&self, prompt: &str) -> String {
        let (status, body) = self.post("/sessions", json!({ "prompt": prompt })).await;
        assert_eq!(status, 201, "{body}");
        body["session_id"].as_str().unwrap().to_string()
    }
}

fn kinds(frames: &[SseFrame]) -> Vec<&str> {
    frames.iter().map(|f| f.event.as_str()).collect()
}

/// The events of the log, as a stream sends them (heartbeats left out).
fn logged(frames: &[SseFrame]) -> Vec<&SseFrame> {
    frames.iter().filter(|f| f.event != "heartbeat").collect()
}

fn assert_error_body(body: &Value) {
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    assert!(body["details"].is_object(), "{body}");
    assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{body}");
}

#[tokio::test]
async fn a_session_created_with_a_prompt_streams_to_complete() {
    let api = api(vec![call(&[("c1", "read", json!({"path": "a.txt"}))]), say("It says hello.")], "", None).await;
    api.f.ws.file("a.txt", "hello\n");
    let (status, body) = api.post("/sessions", json!({ "prompt": "What does a.txt say?" })).await;
    assert_eq!(status, 201, "{body}");
    let id = body["session_id"].as_str().unwrap();
    assert!(body["input_id"].as_str().unwrap().starts_with("inp_"), "{body}");
    let mut stream = api.stream(&format!("/sessions/{id}/stream"), None).await;
    let frames = stream.until("complete", WITHIN).await;
    let events = kinds(&frames);
    for expected in
        ["session.created", "input.admitted", "status", "message.created", "tool_call", "tool_result", "part.delta", "usage", "complete"]
    {
        assert!(events.contains(&expected), "no `{expected}` in {events:?}");
    }
    let logged = logged(&frames);
    let ids: Vec<i64> = logged.iter().map(|f| f.id.expect("every logged event has an id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    for frame in &logged {
        assert_eq!(frame.data["seq"], json!(frame.id.unwrap()));
        assert_eq!(frame.data["session_id"], json!(id));
        assert!(frame.data["timestamp"].as_i64().is_some(), "{:?}", frame);
    }
    let result = frames.iter().find(|f| f.event == "tool_result").unwrap();
    assert!(result.data["data"]["data"]["output"].as_str().unwrap().contains("hello"), "{:?}", result);
    let complete = frames.last().unwrap();
    assert_eq!(complete.data["data"]["finish"], "stop");
    assert_eq!(complete.data["data"]["text"], "It says hello.");
    // When nothing happens, heartbeats (without an id) keep the stream alive.
    let beat = stream.until("heartbeat", Duration::from_secs(5)).await.pop().unwrap();
    assert_eq!(beat.id, None);
    assert!(beat.data["timestamp"].as_i64().is_some(), "{beat:?}");

    let (status, body) = api.get(&format!("/sessions/{id}/status")).await;
    assert_eq!(status, 200);
    assert_eq!(body["session_id"], json!(id));
    let (_, body) = api.get(&format!("/sessions/{id}/messages")).await;
    let roles: Vec<&str> = body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "assistant"]);

    // The metrics saw the tool call, the turns and the tokens.
    let metrics = wait_for_metrics(&api, "plugboard_tool_calls_total{tool=\"read\",outcome=\"completed\"} 1").await;
    assert!(metrics.contains("plugboard_provider_turns_total{model=\"openai/test-model\"} 2"), "{metrics}");
    assert!(metrics.contains("plugboard_tokens_total{model=\"openai/test-model\",kind=\"input\"}"), "{metrics}");
    assert!(metrics.contains("plugboard_tool_call_duration_seconds_count{tool=\"read\"} 1"), "{metrics}");
    assert!(metrics.contains("plugboard_http_requests_total{route=\"/sessions\",method=\"POST\",status=\"201\"} 1"), "{metrics}");
    assert!(metrics.contains("plugboard_sse_subscribers{stream=\"session\"} 1"), "{metrics}");
    assert!(metrics.contains("plugboard_sessions{status=\"idle\"} 1"), "{metrics}");
    assert!(metrics.contains("plugboard_plugin_loads_total{outcome=\"loaded\"}"), "{metrics}");
    drop(stream);
}

async fn wait_for_metrics(api: &Api, line: &str) -> String {
    for _ in 0..100 {
        let text = api.http.get(api.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if text.contains(line) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no `{line}` in the metrics");
}

#[tokio::test]
async fn a_client_chosen_id_is_taken_once() {
    let api = api(vec![say("unused")], "", None).await;
    let (status, body) = api.post("/sessions", json!({ "session_id": "mine-1" })).await;
    assert_eq!((status, body["status"].as_str()), (201, Some("idle")), "{body}");
    let (status, body) = api.post("/sessions", json!({ "session_id": "mine-1" })).await;
    assert_eq!(status, 409, "{body}");
    assert_error_body(&body);
    assert_eq!(body["details"]["session_id"], "mine-1");
    let (status, body) = api.post("/sessions", json!({ "session_id": "../etc" })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"]["field"], "session_id");

    // Listing pages through them, newest first.
    for id in ["mine-2", "mine-3"] {
        assert_eq!(api.post("/sessions", json!({ "session_id": id })).await.0, 201);
    }
    let (_, page) = api.get("/sessions?limit=2").await;
    let ids: Vec<&str> = page["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!((ids, page["next_offset"].as_u64()), (vec!["mine-3", "mine-2"], Some(2)));
    let (_, page) = api.get("/sessions?limit=2&offset=2").await;
    assert_eq!(page["sessions"][0]["id"], "mine-1");
    assert!(page["next_offset"].is_null());
}

#[tokio::test]
async fn health_answers_at_once_and_ready_says_why_until_the_runtime_is_there() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = ServerSettings::resolve(&ServerConfig::default(), addr, None, false, SessionSettings::default()).unwrap();
    let state = AppState::new(settings);
    let task = tokio::spawn(serve_with(listener, state.clone(), std::future::pending()));
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("http://{addr}{path}")).send();
    let health = get("/healthz").await.unwrap();
    assert_eq!((health.status().as_u16(), health.json::<Value>().await.unwrap()), (200, json!({ "status": "ok" })));
    let ready = get("/ready").await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap(), json!({ "status": "not ready", "error": "plugins are loading" }));
    let sessions = get("/sessions").await.unwrap();
    assert_eq!(sessions.status(), 503);
    assert!(sessions.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("plugins are loading"));
    state.fail("the plugins cannot be loaded: invalid configuration".into());
    let ready: Value = get("/ready").await.unwrap().json().await.unwrap();
    assert_eq!(ready["error"], "the plugins cannot be loaded: invalid configuration");
    // Once the runtime is there, it is ready.
    let f = fixture(vec![say("unused")], "", AskMode::Prompt).await;
    state.set_ready(f.app.clone(), f.runtime.clone());
    assert_eq!(get("/ready").await.unwrap().status(), 200);
    assert_eq!(get("/sessions").await.unwrap().status(), 200);
    task.abort();
}

#[tokio::test]
async fn a_session_created_with_a_prompt_is_answered_as_running_not_idle() {
    let api = api(vec![slow_text(40, Duration::from_millis(25))], "", None).await;
    let (status, body) = api.post("/sessions", json!({ "prompt": "write a little" })).await;
    assert_eq!((status, body["status"].as_str()), (201, Some("busy")), "{body}");
    let (status, body) = api.post("/sessions", json!({})).await;
    assert_eq!((status, body["status"].as_str()), (201, Some("idle")), "without a prompt nothing runs: {body}");
}

#[tokio::test]
async fn patch_and_a_message_with_a_model_switch_the_sessions_model_and_an_unknown_one_is_refused() {
    let api = api(vec![say("unused")], "", None).await;
    let (_, created) = api.post("/sessions", json!({})).await;
    let id = created["session_id"].as_str().unwrap();
    let (status, body) = api.patch(&format!("/sessions/{id}"), json!({ "model": "openai/nope" })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"]["field"], "model");
    assert!(body["details"]["available"].as_array().unwrap().contains(&json!("openai/test-model")), "{body}");
    let (status, body) = api.post(&format!("/sessions/{id}/messages"), json!({ "prompt": "hi", "model": "nope/x" })).await;
    assert_eq!((status, body["details"]["field"].as_str()), (400, Some("model")), "{body}");
    assert!(api.f.server.received().is_empty(), "a prompt with an unknown model is not run");
    let (status, body) = api.patch(&format!("/sessions/{id}"), json!({ "model": "openai/test-model" })).await;
    assert_eq!((status, body["model"].as_str()), (200, Some("openai/test-model")), "{body}");
    let (status, body) = api.patch(&format!("/sessions/{id}"), json!({ "title": "no" })).await;
    assert_eq!(status, 400, "an unknown field is refused: {body}");
}

#[tokio::test]
async fn delete_cancels_a_running_turn_and_keeps_the_history() {
    let api = api(vec![slow_text(400, Duration::from_millis(25)), say("after")], "", None).await;
    let id = api.start("write a lot").await;
    let mut stream = api.stream(&format!("/sessions/{id}/stream"), None).await;
    stream.until("part.delta", WITHIN).await;
    let (status, body) = api.get(&format!("/sessions/{id}/status")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("busy")), "{body}");
    let (status, body) = api.delete(&format!("/sessions/{id}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["was_running"], true);
    assert!(body["cancelled_at"].as_str().unwrap().ends_with('Z'), "{body}");
    let frames = stream.until("complete", WITHIN).await;
    assert_eq!(frames.last().unwrap().data["data"]["finish"], "cancelled");
    let (_, body) = api.get(&format!("/sessions/{id}/status")).await;
    assert_eq!(body["status"], "idle");
    let (_, body) = api.get(&format!("/sessions/{id}/messages")).await;
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.last().unwrap()["status"], "aborted");
    assert!(messages.last().unwrap()["parts"].to_string().contains("w0 "), "the partial answer stays");
    // The session takes the next prompt.
    let (status, _) = api.post(&format!("/sessions/{id}/messages"), json!({ "prompt": "again" })).await;
    assert_eq!(status, 202);
    let frames = stream.until("complete", WITHIN).await;
    assert_eq!(frames.last().unwrap().data["data"]["text"], "after");
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_sees_exactly_the_log() {
    let api = api(vec![slow_answer(40, Duration::from_millis(20))], "", None).await;
    let id = api.start("count").await;
    let path = format!("/sessions/{id}/stream");
    let mut first = api.stream(&path, None).await;
    let mut received = Vec::new();
    while received.len() < 6 {
        let frame = first.next().await.expect("the stream goes on");
        if frame.id.is_some() {
            received.push(frame);
        }
    }
    drop(first); // the client goes away mid-turn
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last = received.last().unwrap().id;
    let mut second = api.stream(&path, last).await;
    let rest = second.until("complete", WITHIN).await;
    received.extend(rest.into_iter().filter(|f| f.id.is_some()));
    let end = received.last().unwrap().id.unwrap();
    let log = api.f.store.events_after(0, Some(id.clone()), 100_000).await.unwrap();
    let log: Vec<Value> = log.into_iter().filter(|e| e.seq <= end).map(|e| serde_json::to_value(e).unwrap()).collect();
    let got: Vec<Value> = received.iter().map(|f| f.data.clone()).collect();
    assert_eq!(got.len(), log.len(), "no gap and no duplicate");
    assert_eq!(got, log);
    assert!(received.iter().filter(|f| f.event == "part.delta").count() > 3, "the turn streamed while the client was away");
    for event in &log {
        assert!(plugboard::store::events::TYPES.contains(&event["type"].as_str().unwrap()), "`?types=` knows {}", event["type"]);
    }

    // `?after` works the same, and `?types` filters.
    let mut filtered = SseReader::new(api.http.get(api.url(&format!("{path}?after=0&types=status,complete"))).send().await.unwrap());
    let frames = filtered.until("complete", WITHIN).await;
    assert!(frames.iter().all(|f| f.event == "status" || f.event == "complete"), "{:?}", kinds(&frames));
}

#[tokio::test]
async fn two_sessions_run_at_once_and_streams_keep_to_their_own() {
    let api = api(vec![slow_answer(10, Duration::from_millis(30)), slow_answer(10, Duration::from_millis(30))], "", None).await;
    let a = api.start("one").await;
    let b = api.start("two").await;
    let mut all = api.stream("/events", None).await;
    for id in [&a, &b] {
        let mut stream = api.stream(&format!("/sessions/{id}/stream"), None).await;
        let frames = stream.until("complete", WITHIN).await;
        assert!(logged(&frames).iter().all(|f| f.data["session_id"] == json!(id)), "only {id}'s events");
        assert_eq!(frames.last().unwrap().data["data"]["finish"], "stop", "{:?}", frames.last());
    }
    let mut completed = Vec::new();
    while completed.len() < 2 {
        let frame = all.next().await.unwrap();
        if frame.event == "complete" {
            completed.push(frame.data["session_id"].as_str().unwrap().to_string());
        }
    }
    completed.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(completed, expected);
    // Both provider streams overlapped: the second request came before the first finished.
    assert_eq!(api.f.server.received().len(), 2);
}

#[tokio::test]
async fn steer_and_queue_over_http() {
    let api = api(vec![slow_answer(30, Duration::from_millis(30)), say("steered answer"), say("queued answer")], "", None).await;
    let id = api.start("first").await;
    let mut stream = api.stream(&format!("/sessions/{id}/stream"), None).await;
    stream.until("part.delta", WITHIN).await;
    let (status, queued) = api.post(&format!("/sessions/{id}/messages"), json!({ "prompt": "queued one", "delivery": "queue" })).await;
    assert_eq!(status, 202, "{queued}");
    let (status, steered) = api.post(&format!("/sessions/{id}/messages"), json!({ "prompt": "steered one", "delivery": "steer" })).await;
    assert_eq!(status, 202, "{steered}");
    assert_eq!(steered["delivery"], "steer");
    let first = stream.until("complete", WITHIN).await;
    let first_ids = &first.last().unwrap().data["data"]["input_ids"];
    assert!(first_ids.as_array().unwrap().contains(&steered["input_id"]), "the steer joined the first activity: {first_ids}");
    assert_eq!(
        first.last().unwrap().data["data"]["text"],
        "steered answer",
        "{:#?}",
        first.iter().filter(|f| f.event != "part.delta").collect::<Vec<_>>()
    );
    let second = stream.until("complete", WITHIN).await;
    assert_eq!(second.last().unwrap().data["data"]["input_ids"], json!([queued["input_id"]]));
    assert!(request_body(&api.f.server, 1).to_string().contains("steered one"));
    assert!(!request_body(&api.f.server, 1).to_string().contains("queued one"));
    assert!(request_body(&api.f.server, 2).to_string().contains("queued one"));
}

#[tokio::test]
async fn a_permission_question_is_answered_over_http_and_command_output_streams() {
    let config = "[plugins.shell]\nfilesystem = [{ path = \".\", access = \"read-write\" }]\nprocess = [\"echo *\"]\n[sandbox]\nunconfined_commands = \"allow\"\n";
    let api = api(vec![call(&[("c1", "shell", json!({"command": "echo hello-from-shell"}))]), say("ran it")], config, None).await;
    let id = api.start("run echo").await;
    let mut stream = api.stream(&format!("/sessions/{id}/stream"), None).await;
    let frames = stream.until("permission.asked", WITHIN).await;
    let ask = &frames.last().unwrap().data["data"];
    let (_, pending) = api.get("/permissions").await;
    assert_eq!(pending["permissions"][0]["id"], ask["id"], "{pending}");
    assert_eq!(pending["permissions"][0]["tool"], "shell");
    let (status, body) = api.post(&format!("/permissions/{}", ask["id"].as_str().unwrap()), json!({ "reply": "bogus" })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"]["field"], "reply");
    let (status, body) = api.post(&format!("/permissions/{}", ask["id"].as_str().unwrap()), json!({ "reply": "once" })).await;
    assert_eq!(status, 200, "{body}");
    let frames = stream.until("complete", WITHIN).await;
    let output = frames.iter().find(|f| f.event == "output").expect("the command's output streamed");
    assert!(output.data["data"]["text"].as_str().unwrap().contains("hello-from-shell"), "{:?}", output);
    assert_eq!(output.data["data"]["tool"], "shell");
    let result = frames.iter().find(|f| f.event == "tool_result").unwrap();
    assert!(output.id < result.id, "output comes before the result");
    assert_eq!(frames.last().unwrap().data["data"]["text"], "ran it");
    let (status, _) = api.post("/permissions/nope", json!({ "reply": "once" })).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_shared_secret_guards_every_route_but_health() {
    let api = api(vec![say("unused")], "", Some("s3cret-token")).await;
    let raw = reqwest::Client::new();
    for open in ["/healthz", "/health", "/ready"] {
        assert_eq!(raw.get(api.url(open)).send().await.unwrap().status(), 200, "{open}");
    }
    for guarded in ["/sessions", "/tools", "/metrics", "/openapi.json", "/events"] {
        let response = raw.get(api.url(guarded)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{guarded}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_error_body(&response.json().await.unwrap());
        let response = raw.get(api.url(guarded)).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(response.status(), 401, "{guarded}");
    }
    let (status, _) = api.get("/sessions").await;
    assert_eq!(status, 200);
    // Without a secret, no header is needed.
    let open = self::api(vec![say("unused")], "", None).await;
    assert_eq!(raw.get(open.url("/sessions")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_change_nothing() {
    let api = api(vec![say("unused")], "", None).await;
    let existing = api.post("/sessions", json!({})).await.1["session_id"].as_str().unwrap().to_string();
    let before = (api.f.store.list_sessions(1000, 0).await.unwrap().len(), api.f.store.last_seq().await.unwrap());
    let raw = |body: &str| api.http.post(api.url("/sessions")).header("content-type", "application/json").body(body.to_string());
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, Option<&str>)> = vec![
        ("malformed JSON", raw("{\"prompt\": "), 400, None),
        ("empty body", raw(""), 400, None),
        ("wrong type", raw(r#"{"prompt": 5}"#), 400, Some("prompt")),
        ("unknown field", raw(r#"{"prompt": "hi", "colour": "red"}"#), 400, Some("colour")),
        (
            "nested wrong type",
            raw(r#"{"model_config": {"provider": "openai", "model": "test-model", "temperature": "hot"}}"#),
            400,
            Some("model_config.temperature"),
        ),
        (
            "out of range",
            raw(r#"{"model_config": {"provider": "openai", "model": "test-model", "temperature": 9}}"#),
            400,
            Some("model_config.temperature"),
        ),
        ("unknown model", raw(r#"{"model_config": {"provider": "openai", "model": "nope"}}"#), 400, Some("model_config.model")),
        (
            "unknown tool",
            raw(r#"{"model_config": {"provider": "openai", "model": "test-model", "enabled_tools": ["read", "teleport"]}}"#),
            400,
            Some("model_config.enabled_tools"),
        ),
        (
            "endpoint outside the grant",
            raw(r#"{"model_config": {"provider": "openai", "model": "test-model", "api_endpoint": "https://evil.example/v1"}}"#),
            400,
            Some("model_config.api_endpoint"),
        ),
        ("unknown agent", raw(r#"{"agent": "wizard", "prompt": "hi"}"#), 400, Some("agent")),
        ("empty prompt", raw(r#"{"prompt": "  "}"#), 400, Some("prompt")),
        ("huge body", raw(&format!("{{\"prompt\": \"{}\"}}", "x".repeat(2 << 20))), 413, None),
        ("unknown session: status", api.http.get(api.url("/sessions/nope/status")), 404, None),
        ("unknown session: get", api.http.get(api.url("/sessions/nope")), 404, None),
        ("unknown session: messages", api.http.get(api.url("/sessions/nope/messages")), 404, None),
        ("unknown session: send", api.http.post(api.url("/sessions/nope/messages")).json(&json!({ "prompt": "hi" })), 404, None),
        ("unknown session: cancel", api.http.delete(api.url("/sessions/nope")), 404, None),
        ("unknown session: stream", api.http.get(api.url("/sessions/nope/stream")), 404, None),
        (
            "bad delivery",
            api.http.post(api.url(&format!("/sessions/{existing}/messages"))).json(&json!({ "prompt": "hi", "delivery": "sideways" })),
            400,
            Some("delivery"),
        ),
        ("bad Last-Event-ID", api.http.get(api.url("/events")).header("last-event-id", "abc"), 400, Some("Last-Event-ID")),
        ("bad page", api.http.get(api.url("/sessions?limit=0")), 400, Some("limit")),
        ("unknown route", api.http.get(api.url("/nowhere")), 404, None),
        ("wrong method", api.http.put(api.url("/sessions")), 405, None),
        ("unknown tool call", api.http.post(api.url("/tools/teleport/call")).json(&json!({})), 404, None),
        (
            "tool arguments not an object",
            api.http.post(api.url("/tools/read/call")).json(&json!({ "arguments": [1] })),
            400,
            Some("arguments"),
        ),
    ];
    for (what, request, status, field) in cases {
        let (got, body) = api.send(request).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_error_body(&body);
        if let Some(field) = field {
            assert_eq!(body["details"]["field"], field, "{what}: {body}");
        }
    }
    let after = (api.f.store.list_sessions(1000, 0).await.unwrap().len(), api.f.store.last_seq().await.unwrap());
    assert_eq!(before, after, "nothing was stored");
}

#[tokio::test]
async fn a_per_session_key_and_endpoint_are_used_and_never_stored() {
    let api = api(vec![say("keyed")], "", None).await;
    let endpoint = format!("{}/v1", api.f.server.url());
    let secret = "sk-session-only-4242";
    let body = json!({
        "prompt": "hi",
        "model_config": { "provider": "openai", "model": "test-model", "api_key": secret, "api_endpoint": endpoint, "temperature": 0.25, "max_tokens": 77, "system_prompt": "Answer in French." }
    });
    let (status, created) = api.post("/sessions", body).await;
    assert_eq!(status, 201, "{created}");
    assert!(!created.to_string().contains(secret));
    let id = created["session_id"].as_str().unwrap();
    let mut stream = api.stream(&format!("/sessions/{id}/stream"), None).await;
    stream.until("complete", WITHIN).await;
    let request = &api.f.server.received()[0];
    assert_eq!(request.header("authorization"), Some(format!("Bearer {secret}").as_str()));
    let sent = request_body(&api.f.server, 0);
    assert_eq!(sent["temperature"], json!(0.25));
    assert_eq!(sent["max_tokens"].as_u64().or(sent["max_completion_tokens"].as_u64()), Some(77), "{sent}");
    assert!(sent.to_string().contains("Answer in French."));
    let (_, record) = api.get(&format!("/sessions/{id}")).await;
    assert!(!record.to_string().contains(secret));
    assert_eq!(record["options"]["temperature"], json!(0.25));
    api.f.store.write(|_| Ok(())).await.unwrap();
    for file in ["plugboard.db", "plugboard.db-wal"] {
        let path = api.f.db.with_file_name(file);
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "the key is not in {file}");
        }
    }
}

#[tokio::test]
async fn every_documented_route_exists() {
    let api = api(vec![say("unused")], "", None).await;
    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/sessions",
        "/sessions/{id}",
        "/sessions/{id}/stream",
        "/sessions/{id}/messages",
        "/sessions/{id}/status",
        "/events",
        "/permissions",
        "/permissions/{id}",
        "/tools",
        "/tools/{name}/call",
        "/plugins",
        "/models",
        "/metrics",
        "/healthz",
        "/health",
        "/ready",
    ] {
        assert!(paths.contains_key(expected), "{expected} is documented");
    }
    for (path, methods) in paths {
        let concrete = path.replace("{id}", "x").replace("{name}", "x");
        for method in methods.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = api.http.request(method.clone(), api.url(&concrete));
            if method == reqwest::Method::POST {
                request = request.json(&json!({}));
            }
            let response = request.timeout(Duration::from_secs(5)).send().await.unwrap();
            let status = response.status().as_u16();
            assert_ne!(status, 405, "{method} {path}");
            if status == 404 {
                let body: Value = response.json().await.unwrap();
                assert!(!body["error"].as_str().unwrap().starts_with("no route"), "{method} {path}: {body}");
            }
        }
    }
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_told_to_reconnect_and_the_replay_fills_the_gap() {
    let api = api(vec![say("unused")], "", None).await;
    let start = api.f.store.last_seq().await.unwrap();
    let mut stream = api.stream("/events?types=part.delta", Some(start)).await;
    // Far more events at once than the live buffer holds (4,096).
    const BURST: i64 = 10_000;
    api.f.store.write(|tx| (0..BURST).try_for_each(|i| tx.emit(None, "part.delta", json!({ "i": i })))).await.unwrap();
    let frames = stream.until("reconnect", WITHIN).await;
    let reconnect = frames.last().unwrap();
    assert_eq!(reconnect.id, None);
    let received: Vec<i64> = frames.iter().filter_map(|f| f.id).collect();
    let last = reconnect.data["last_event_id"].as_i64().unwrap();
    assert!(last < start + BURST, "it fell behind before the end");
    assert_eq!(received, ((start + 1)..=received.last().copied().unwrap_or(start)).collect::<Vec<_>>(), "what it got has no gap");
    assert!(stream.next().await.is_none(), "the stream ends after `reconnect`");

    let mut again = api.stream("/events?types=part.delta", Some(last)).await;
    let mut next = last + 1;
    while next <= start + BURST {
        let frame = tokio::time::timeout(WITHIN, again.next()).await.unwrap().unwrap();
        if frame.event == "heartbeat" {
            continue;
        }
        assert_eq!(frame.id, Some(next), "the replay continues exactly after the last id");
        assert_eq!(frame.data["data"]["i"], json!(next - start - 1));
        next += 1;
    }
}

#[tokio::test]
async fn plugins_reload_over_http_and_the_changes_are_events() {
    let api = api(vec![say("unused")], "", None).await;
    let start = api.f.store.last_seq().await.unwrap();
    std::fs::copy(plugboard_tests::components::VERSIONED_A, api.f.ws.plugins.join("versioned.wasm")).unwrap();
    let (status, report) = api.post("/plugins/reload", json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["loaded"], json!(["versioned"]));
    let mut events = api.stream("/events?types=plugin.loaded,tool.added,plugin.reloaded", Some(start)).await;
    let frames = events.until("tool.added", WITHIN).await;
    assert_eq!(kinds(&frames), ["plugin.loaded", "tool.added"]);
    assert_eq!(frames[0].data["data"]["version"], "1.0.0");
    assert_eq!(frames[1].data["data"]["name"], "which");
    let (_, tools) = api.get("/tools").await;
    assert!(tools["tools"].as_array().unwrap().iter().any(|t| t["name"] == "which"));

    std::fs::copy(plugboard_tests::components::VERSIONED_B, api.f.ws.plugins.join("versioned.wasm")).unwrap();
    let (status, report) = api.post("/plugins/versioned/reload", json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["reloaded"], json!(["versioned"]));
    let reloaded = events.until("plugin.reloaded", WITHIN).await.pop().unwrap();
    assert_eq!(reloaded.data["data"]["new_version"], "2.0.0");
    let (status, body) = api.post("/plugins/nope/reload", json!({})).await;
    assert_eq!(status, 404, "{body}");
    wait_for_metrics(&api, "plugboard_plugin_reloads_total{outcome=\"reloaded\"} 1").await;
}

#[tokio::test]
async fn a_direct_call_over_http_runs_the_hooks_only_when_asked_and_a_refusal_is_a_403() {
    let config = "[hooks.redact-secrets]\nenabled = true\n[plugins.hook-b.settings]\ntool_before = \"deny:no reads today\"\n";
    let api = api(vec![say("unused")], config, None).await;
    std::fs::copy(plugboard_tests::components::HOOK_B, api.f.ws.plugins.join("hook-b.wasm")).unwrap();
    let (status, report) = api.post("/plugins/reload", json!({})).await;
    assert_eq!((status, report["loaded"].clone()), (200, json!(["hook-b"])));
    let key = "OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz0123";

    let (status, plain) = api.post("/tools/echo/call", json!({ "arguments": { "text": key } })).await;
    assert_eq!((status, plain["text"].as_str()), (200, Some(key)), "without hooks the call is the plugin's alone");
    let start = api.f.store.last_seq().await.unwrap();
    let (status, refused) = api.post("/tools/echo/call", json!({ "arguments": { "text": key }, "hooks": true })).await;
    assert_eq!(status, 403, "{refused}");
    assert_error_body(&refused);
    assert_eq!(
        (refused["details"]["hook"].as_str(), refused["error"].as_str()),
        (Some("hook-b"), Some("refused by hook `hook-b`: no reads today"))
    );

    // Without the refusal, redact-secrets masks the result; both calls are on the log.
    let base = std::fs::read_to_string(api.f.ws.operator_config_path()).unwrap();
    std::fs::write(api.f.ws.operator_config_path(), base.replace("deny:no reads today", "allow")).unwrap();
    let (status, _) = api.post("/config/reload", json!({})).await;
    assert_eq!(status, 200);
    let (status, masked) = api.post("/tools/echo/call", json!({ "arguments": { "text": key }, "hooks": true })).await;
    assert_eq!((status, masked["text"].as_str()), (200, Some("OPENAI_API_KEY=[REDACTED:openai-key]")), "{masked}");
    let mut events = api.stream("/events?types=tool.state", Some(start)).await;
    // The refused call, then the masked one: each a `tool_call`, then its `tool_result`.
    let mut frames = events.until("tool_result", WITHIN).await;
    frames.extend(events.until("tool_result", WITHIN).await);
    let states: Vec<&str> = frames.iter().map(|f| f.data["data"]["data"]["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["running", "error", "running", "completed"]);
    assert!(frames.iter().all(|f| f.data["session_id"].is_null()), "{:?}", frames.iter().map(|f| &f.data).collect::<Vec<_>>());
}

#[tokio::test]
async fn configuration_and_hooks_over_http_and_their_events_replay() {
    let api = api(vec![say("unused")], "", None).await;
    let start = api.f.store.last_seq().await.unwrap();
    let config = api.f.ws.operator_config_path();
    let base = std::fs::read_to_string(&config).unwrap();
    let (status, hooks) = api.get("/hooks").await;
    assert_eq!(status, 200, "{hooks}");
    let ids: Vec<&str> = hooks["hooks"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["audit-log", "redact-secrets"]);
    assert!(hooks["hooks"].as_array().unwrap().iter().all(|h| h["enabled"] == false), "bundled hooks start off: {hooks}");

    // An invalid file: 422 with the reason, and nothing changes.
    std::fs::write(&config, format!("{base}[hooks.redact-secrets]\nenabld = true\n")).unwrap();
    let (status, body) = api.post("/config/reload", json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["details"]["reason"].as_str().unwrap().contains("enabld"), "{body}");
    // A hook plugin dropped in, and the configuration that turns hooks on.
    std::fs::copy(plugboard_tests::components::HOOK_B, api.f.ws.plugins.join("hook-b.wasm")).unwrap();
    let (status, report) = api.post("/plugins/reload", json!({})).await;
    assert_eq!((status, report["loaded"].clone()), (200, json!(["hook-b"])));
    std::fs::write(
        &config,
        format!(
            "{base}[hooks.redact-secrets]\nenabled = true\n[plugins.hook-b.settings]\nprompt_before = \"reject:closed for maintenance\"\n"
        ),
    )
    .unwrap();
    let (status, change) = api.post("/config/reload", json!({})).await;
    assert_eq!(status, 200, "{change}");
    assert_eq!(change["sections"], json!(["hooks", "plugins"]));
    let (_, hooks) = api.get("/hooks").await;
    assert_eq!(hooks["order"]["tool.after"], json!(["hook-b", "redact-secrets"]), "{hooks}");
    assert_eq!(hooks["order"]["prompt.before"], json!(["hook-b"]));

    // A prompt the hook rejects: 422 naming the hook and the session, which has no input.
    let (status, body) = api.post("/sessions", json!({ "prompt": "hello" })).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!((body["details"]["hook"].as_str(), body["details"]["reason"].as_str()), (Some("hook-b"), Some("closed for maintenance")));
    let id = body["details"]["session_id"].as_str().expect("the created session is named").to_string();
    let (status, session) = api.get(&format!("/sessions/{id}/messages")).await;
    assert_eq!(status, 200, "{session}");
    assert!(session["messages"].as_array().unwrap().is_empty(), "{session}");

    // Every change is on the log once, and replays in order.
    let mut events = api.stream("/events?types=config.rejected,config.changed,hook.added,plugin.loaded", Some(start)).await;
    let frames = events.until("config.changed", WITHIN).await;
    assert_eq!(kinds(&frames), ["config.rejected", "plugin.loaded", "hook.added", "config.changed"]);
    assert_eq!(frames[0].data["data"]["path"], json!(config.display().to_string()));
    assert_eq!(frames[2].data["data"]["id"], "hook-b");
    assert_eq!(frames[3].data["data"]["sections"], json!(["hooks", "plugins"]));
}
