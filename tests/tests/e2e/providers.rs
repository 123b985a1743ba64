//! Provider plugins against a scripted local server: streaming text, tool calls split at
//! any byte, parallel tool calls, usage, errors that say whether to retry, cut and slow
//! streams, and the network grant.

use std::time::{Duration, Instant};

use plugboard::runtime::PluginHost;
use plugboard::runtime::provider::{
    CompletionError, CompletionRequest, ContentPart, FinishReason, Message, Role, StreamEvent, ToolSpec, Usage,
};
use plugboard_tests::{Scripted, ScriptedServer, Workspace};

/// What a stream produced, assembled.
#[derive(Debug, Default)]
struct Collected {
    text: String,
    reasoning: String,
    /// (index, id, name, arguments)
    calls: Vec<(u32, String, String, String)>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    events: usize,
}

async fn collect(host: &PluginHost, model: &str, request: CompletionRequest) -> Result<Collected, CompletionError> {
    let mut stream = host.complete(model, request).await?;
    let mut out = Collected::default();
    while let Some(event) = stream.next().await? {
        out.events += 1;
        match event {
            StreamEvent::TextDelta(t) => out.text.push_str(&t),
            StreamEvent::ReasoningDelta(t) => out.reasoning.push_str(&t),
            StreamEvent::ReasoningSignature(_) => {}
            StreamEvent::ToolCallStart(s) => out.calls.push((s.index, s.id, s.name, String::new())),
            StreamEvent::ToolCallDelta(d) => {
                let call = out.calls.iter_mut().find(|c| c.0 == d.index).expect("a delta follows its start");
                call.3.push_str(&d.arguments);
            }
            StreamEvent::Usage(u) => out.usage = Some(u),
            StreamEvent::Finish(f) => out.finish = Some(f),
        }
    }
    Ok(out)
}

fn request(prompt: &str) -> CompletionRequest {
    CompletionRequest {
        model: String::new(),
        system: Some("You are terse.".into()),
        messages: vec![Message { role: Role::User, parts: vec![ContentPart::Text(prompt.into())] }],
        tools: vec![ToolSpec {
            name: "read".into(),
            description: "Reads a file".into(),
            parameters_schema: r#"{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}"#.into(),
        }],
        temperature: Some(0.2),
        max_output_tokens: Some(256),
        options: None,
    }
}

/// A workspace whose `openai` provider points at `server`, with key `sk-test`.
fn openai_workspace(server: &ScriptedServer, extra_settings: &str) -> Workspace {
    let ws = Workspace::new();
    ws.operator_config(&format!(
        "[plugins.openai]\nnetwork = [\"{url}\"]\napi_key = \"sk-test\"\nsettings = {{ base_url = \"{url}/v1\", models = [{{ id = \"test-model\" }}] {extra_settings} }}\n",
        url = server.url()
    ));
    ws
}

/// A server that streams `chunks` as OpenAI events, each after `delay`.
fn slow_sse_server(chunks: &[&str], delay: Duration) -> ScriptedServer {
    let pieces = openai_sse(chunks).split_inclusive("\n\n").map(|p| p.as_bytes().to_vec()).collect();
    ScriptedServer::start(vec![Scripted { status: 200, headers: vec![("content-type".into(), "text/event-stream".into())], pieces, delay }])
}

/// A server that keeps its connections open and answers every request with `chunks` as
/// OpenAI events, each after `delay`.
fn keep_alive_server(chunks: &[&str], delay: Duration) -> ScriptedServer {
    let pieces = openai_sse(chunks).split_inclusive("\n\n").map(|p| p.as_bytes().to_vec()).collect();
    ScriptedServer::keep_alive(vec![Scripted {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        pieces,
        delay,
    }])
}

fn openai_sse(chunks: &[&str]) -> String {
    let mut out = String::new();
    for c in chunks {
        out.push_str(&format!("data: {c}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

#[tokio::test]
async fn openai_streams_text_usage_and_sends_the_key_only_from_the_host() {
    let sse = openai_sse(&[
        r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"lo!"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}}"#,
    ]);
    let server = ScriptedServer::start(vec![Scripted::sse(&sse, 64)]);
    let ws = openai_workspace(&server, "");
    let host = ws.host().await;
    let out = collect(&host, "openai/test-model", request("Say hello")).await.unwrap();
    assert_eq!(out.text, "Hello!");
    assert_eq!(out.finish, Some(FinishReason::Stop));
    let usage = out.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens, usage.cache_read_tokens), (8, 3, 4), "cached tokens are counted apart");

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].line.starts_with("POST /v1/chat/completions "), "{}", received[0].line);
    assert_eq!(received[0].header("authorization"), Some("Bearer sk-test"));
    let body: serde_json::Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["messages"][0], serde_json::json!({"role": "system", "content": "You are terse."}));
    assert_eq!(body["messages"][1], serde_json::json!({"role": "user", "content": "Say hello"}));
    assert_eq!(body["tools"][0]["function"]["name"], "read");
    assert_eq!(body["max_tokens"], 256);
}

#[tokio::test]
async fn openai_provider_options_replace_the_fields_they_name_once_and_a_bad_schema_is_named() {
    let done = openai_sse(&[r#"{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}"#]);
    let server = ScriptedServer::start(vec![Scripted::sse(&done, 64)]);
    let ws = openai_workspace(&server, "");
    let host = ws.host().await;
    let mut with_options = request("hi");
    with_options.options = Some(r#"{"temperature": 1.5, "max_tokens": 99, "seed": 7}"#.into());
    collect(&host, "openai/test-model", with_options).await.unwrap();
    let raw = &server.received()[0].body;
    let body: serde_json::Value = serde_json::from_str(raw).unwrap();
    assert_eq!((body["temperature"].as_f64(), body["max_tokens"].as_u64(), body["seed"].as_u64()), (Some(1.5), Some(99), Some(7)));
    assert_eq!(raw.matches("\"temperature\"").count(), 1, "each field is written once: {raw}");
    assert_eq!(raw.matches("\"max_tokens\"").count(), 1, "each field is written once: {raw}");
    let schema: serde_json::Value = serde_json::from_str(&request("hi").tools[0].parameters_schema).unwrap();
    assert_eq!(body["tools"][0]["function"]["parameters"], schema, "the schema goes out as it came");

    let mut not_an_object = request("hi");
    not_an_object.options = Some("[1]".into());
    let err = collect(&host, "openai/test-model", not_an_object).await.expect_err("refused");
    assert!(err.to_string().contains("provider options must be a JSON object"), "{err}");
    let mut bad_schema = request("hi");
    bad_schema.tools[0].parameters_schema = "{not json".into();
    let err = collect(&host, "openai/test-model", bad_schema).await.expect_err("refused");
    assert!(err.to_string().contains("tool `read` has a schema that is not JSON"), "{err}");
    assert_eq!(server.received().len(), 1, "refused requests are not sent");
}

#[tokio::test]
async fn openai_tool_calls_split_at_every_byte_and_in_parallel_reassemble() {
    let sse = openai_sse(&[
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"read","arguments":""}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"read","arguments":"{\"pa"}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"path\":"}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"th\":\"b.rs\"}"}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"a.rs\"}"}}]}}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
    ]);
    // Every piece size from 1 byte up splits chunks, JSON and UTF-8 at different places.
    for piece in [1, 2, 3, 7, 13, 4096] {
        let server = ScriptedServer::start(vec![Scripted::sse(&sse, piece)]);
        let ws = openai_workspace(&server, ", include_usage = false");
        let host = ws.host().await;
        let out = collect(&host, "openai/test-model", request("Read two files")).await.unwrap();
        assert_eq!(out.finish, Some(FinishReason::ToolCalls), "piece {piece}");
        assert_eq!(
            out.calls,
            vec![
                (0, "call_a".into(), "read".into(), r#"{"path":"a.rs"}"#.into()),
                (1, "call_b".into(), "read".into(), r#"{"path":"b.rs"}"#.into()),
            ],
            "piece {piece}"
        );
        assert!(out.usage.is_none(), "no usage was sent, none is invented");
        let body: serde_json::Value = serde_json::from_str(&server.received()[0].body).unwrap();
        assert!(body.get("stream_options").is_none(), "include_usage = false leaves stream_options out");
    }
}

#[tokio::test]
async fn a_429_is_retryable_with_its_retry_after_and_the_next_request_succeeds() {
    let ok = openai_sse(&[r#"{"choices":[{"index":0,"delta":{"content":"fine"},"finish_reason":"stop"}]}"#]);
    let server = ScriptedServer::start(vec![
        Scripted::error(
            429,
            &[("retry-after", "2"), ("content-type", "application/json")],
            r#"{"error":{"message":"Rate limit reached"}}"#,
        ),
        Scripted::sse(&ok, 4096),
    ]);
    let ws = openai_workspace(&server, "");
    let host = ws.host().await;
    let err = collect(&host, "openai/test-model", request("hi")).await.unwrap_err();
    match &err {
        CompletionError::Api { status, retryable, retry_after_ms, message, .. } => {
            assert_eq!(*status, Some(429));
            assert!(*retryable);
            assert_eq!(*retry_after_ms, Some(2000));
            assert!(message.contains("Rate limit reached"), "{message}");
        }
        e => panic!("expected an API error, got {e}"),
    }
    assert_eq!(collect(&host, "openai/test-model", request("hi")).await.unwrap().text, "fine");
}

#[tokio::test]
async fn client_errors_are_not_retryable_and_5xx_are() {
    let server = ScriptedServer::start(vec![
        Scripted::error(401, &[], r#"{"error":{"message":"Incorrect API key provided"}}"#),
        Scripted::error(503, &[], "overloaded"),
    ]);
    let ws = openai_workspace(&server, "");
    let host = ws.host().await;
    let err = collect(&host, "openai/test-model", request("hi")).await.unwrap_err();
    assert!(matches!(&err, CompletionError::Api { status: Some(401), retryable: false, .. }), "{err}");
    assert!(err.to_string().contains("Incorrect API key"), "{err}");
    let err = collect(&host, "openai/test-model", request("hi")).await.unwrap_err();
    assert!(matches!(&err, CompletionError::Api { status: Some(503), retryable: true, .. }), "{err}");
}

#[tokio::test]
async fn a_stream_cut_in_the_middle_is_a_retryable_error_after_what_arrived() {
    let full = openai_sse(&[
        r#"{"choices":[{"index":0,"delta":{"content":"partial "}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"answer"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
    ]);
    let cut_at = full.find("answer").unwrap();
    let server = ScriptedServer::start(vec![Scripted::sse(&full[..cut_at], 4096)]);
    let ws = openai_workspace(&server, "");
    let host = ws.host().await;
    let mut stream = host.complete("openai/test-model", request("hi")).await.unwrap();
    assert!(matches!(stream.next().await.unwrap(), Some(StreamEvent::TextDelta(t)) if t == "partial "));
    let err = stream.next().await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(stream.next().await.unwrap().is_none(), "a failed stream stays ended");
}

#[tokio::test]
async fn a_slow_stream_delivers_events_as_they_arrive() {
    let delay = Duration::from_millis(150);
    let server = slow_sse_server(
        &[
            r#"{"choices":[{"index":0,"delta":{"content":"one "}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"two "}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"three"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        ],
        delay,
    );
    let ws = openai_workspace(&server, "");
    let host = ws.host().await;
    let started = Instant::now();
    let mut stream = host.complete("openai/test-model", request("count")).await.unwrap();
    let mut arrivals = Vec::new();
    while let Some(event) = stream.next().await.unwrap() {
        if let StreamEvent::TextDelta(t) = event {
            arrivals.push((t, started.elapsed()));
        }
    }
    assert_eq!(arrivals.iter().map(|(t, _)| t.as_str()).collect::<String>(), "one two three");
    // The first words are delivered before the last ones are even sent.
    assert!(arrivals[2].1 - arrivals[0].1 >= delay, "{arrivals:?}");
}

#[tokio::test]
async fn a_caller_that_stops_waiting_for_an_event_loses_nothing_and_gets_it_next_time() {
    let server = slow_sse_server(
        &[
            r#"{"choices":[{"index":0,"delta":{"content":"late "}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"words"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        ],
        Duration::from_millis(300),
    );
    let ws = openai_workspace(&server, "");
    let host = ws.host().await;
    let mut stream = host.complete("openai/test-model", request("hi")).await.unwrap();
    // A caller racing the stream against something else (a timer) drops `next` midway.
    let gave_up = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
    assert!(gave_up.is_err(), "the first event cannot have arrived within 50 ms: {gave_up:?}");
    let mut text = String::new();
    while let Some(event) = stream.next().await.expect("the stream goes on after a caller gave up waiting") {
        if let StreamEvent::TextDelta(t) = event {
            text.push_str(&t);
        }
    }
    assert_eq!(text, "late words");
}

#[tokio::test]
async fn a_providers_next_request_goes_out_on_its_open_connection_and_no_other_plugin_gets_it() {
    let server = keep_alive_server(
        &[r#"{"choices":[{"index":0,"delta":{"content":"hello"}}]}"#, r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#],
        Duration::ZERO,
    );
    let ws = openai_workspace(&server, "");
    let openai = std::fs::read_to_string(ws.operator_config_path()).unwrap();
    ws.operator_config(&format!("{openai}[plugins.fetch]\nnetwork = [\"{}\"]\n", server.url()));
    let host = ws.host().await;
    for _ in 0..2 {
        assert_eq!(collect(&host, "openai/test-model", request("hi")).await.unwrap().text, "hello");
    }
    let fetched = plugboard_tests::call(&host, "fetch", serde_json::json!({ "url": format!("{}/page", server.url()) })).await.unwrap();
    assert!(fetched.text.contains("hello"), "{}", fetched.text);
    assert_eq!(collect(&host, "openai/test-model", request("hi")).await.unwrap().text, "hello");

    let received = server.received();
    let connections: Vec<usize> = received.iter().map(|r| r.connection).collect();
    assert_eq!(connections, [1, 1, 2, 1], "the provider's turns share one connection; the fetch tool opens one of its own");
    // The key goes with each of the provider's requests, and never with another plugin's.
    let keys: Vec<Option<&str>> = received.iter().map(|r| r.header("authorization")).collect();
    assert_eq!(keys, [Some("Bearer sk-test"), Some("Bearer sk-test"), None, Some("Bearer sk-test")]);
}

#[tokio::test]
async fn a_stream_dropped_midway_closes_its_connection_and_the_next_request_opens_a_new_one() {
    let words: Vec<String> = (0..20).map(|i| format!(r#"{{"choices":[{{"index":0,"delta":{{"content":"w{i} "}}}}]}}"#)).collect();
    let mut chunks: Vec<&str> = words.iter().map(String::as_str).collect();
    chunks.push(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#);
    let server = keep_alive_server(&chunks, Duration::from_millis(30));
    let ws = openai_workspace(&server, "");
    let host = ws.host().await;
    let mut stream = host.complete("openai/test-model", request("count")).await.unwrap();
    assert!(matches!(stream.next().await.unwrap(), Some(StreamEvent::TextDelta(t)) if t == "w0 "));
    drop(stream);
    // The server finds its answer cut: the connection was closed, not kept for the rest
    // (a model behind it stops generating).
    let started = Instant::now();
    while server.answers_cut() == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the connection of a dropped stream stays open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let whole = collect(&host, "openai/test-model", request("count")).await.unwrap();
    assert!(whole.text.starts_with("w0 w1 ") && whole.text.ends_with("w19 "), "{}", whole.text);
    let connections: Vec<usize> = server.received().iter().map(|r| r.connection).collect();
    assert_eq!(connections, [1, 2]);
}

#[tokio::test]
async fn an_ungranted_api_host_is_refused_and_nothing_is_sent() {
    let server = ScriptedServer::start(vec![Scripted::error(500, &[], "must not be reached")]);
    let ws = Workspace::new();
    ws.operator_config(&format!(
        "[plugins.openai]\nnetwork = [\"https://api.openai.com\"]\napi_key = \"sk-test\"\nsettings = {{ base_url = \"{}/v1\", models = [{{ id = \"m\" }}] }}\n",
        server.url()
    ));
    let host = ws.host().await;
    let err = collect(&host, "openai/m", request("hi")).await.unwrap_err();
    assert!(matches!(&err, CompletionError::Api { retryable: false, .. }), "{err}");
    assert!(err.to_string().contains("network grant"), "{err}");
    let text = err.to_string();
    let hint = text.split_once("add to plugboard.toml:\n  [plugins.openai]\n  network = [").map(|(_, line)| line);
    assert!(hint.is_some_and(|line| line.contains(&server.url())), "the denial says which line grants it: {err}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn models_are_listed_as_provider_slash_model_and_unknown_ones_fail_at_once() {
    let server = ScriptedServer::start(vec![Scripted::error(500, &[], "unused")]);
    let ws = openai_workspace(&server, "");
    let host = ws.host().await;
    let models: Vec<String> = host.registry().models().map(|(r, _, _)| r).collect();
    assert!(models.contains(&"openai/test-model".to_string()), "{models:?}");
    let err = collect(&host, "openai/nope", request("hi")).await.unwrap_err();
    assert!(
        matches!(&err, CompletionError::UnknownModel { available, .. } if available.contains(&"openai/test-model".to_string())),
        "{err}"
    );
    assert!(matches!(collect(&host, "nobody/x", request("hi")).await.unwrap_err(), CompletionError::UnknownModel { .. }));
    assert!(server.received().is_empty());
}

/// A workspace whose `anthropic` provider points at `server`, with key `sk-ant-test`.
#[tokio::test]
async fn a_malformed_models_setting_keeps_the_provider_from_loading_and_names_the_field() {
    for (provider, models, field) in [
        ("openai", "[{ name = \"no id\" }]", "missing field `id`"),
        ("anthropic", "[{ id = \"m\", context = 5 }]", "unknown field `context`"),
        ("openai", "[{ id = \"m\", output_tokens = \"many\" }]", "[0].output_tokens"),
    ] {
        let ws = Workspace::new();
        ws.operator_config(&format!("[plugins.{provider}]\nnetwork = [\"http://127.0.0.1:9\"]\nsettings = {{ models = {models} }}\n"));
        ws.trust();
        let host = plugboard_tests::start_host(ws.options()).await.expect("the host starts without the provider");
        assert!(host.registry().provider(provider).is_none(), "{provider} loaded with {models}");
        let failure = host.registry().failures().iter().find(|f| f.source.to_string() == format!("bundled:{provider}")).cloned();
        let reason = failure.map(|f| f.reason).unwrap_or_default();
        assert!(reason.contains("the setting `models` is invalid") && reason.contains(field), "{provider} {models}: {reason}");
    }
}

fn anthropic_workspace(server: &ScriptedServer) -> Workspace {
    let ws = Workspace::new();
    ws.operator_config(&format!(
        "[plugins.anthropic]\nnetwork = [\"{url}\"]\napi_key = \"sk-ant-test\"\nsettings = {{ base_url = \"{url}\", models = [{{ id = \"claude-test\" }}] }}\n",
        url = server.url()
    ));
    ws
}

fn anthropic_sse(events: &[(&str, &str)]) -> String {
    events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect()
}

#[tokio::test]
async fn anthropic_streams_thinking_text_and_tool_use_split_at_every_byte() {
    let sse = anthropic_sse(&[
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":25,"cache_read_input_tokens":5,"output_tokens":1}}}"#,
        ),
        ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Need the file."}}"#,
        ),
        ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig=="}}"#),
        ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
        ("ping", r#"{"type":"ping"}"#),
        ("content_block_start", r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#),
        ("content_block_delta", r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Reading é…"}}"#),
        ("content_block_stop", r#"{"type":"content_block_stop","index":1}"#),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"read","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"path\": \"sr"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"c/main.rs\"}"}}"#,
        ),
        ("content_block_stop", r#"{"type":"content_block_stop","index":2}"#),
        ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":42}}"#),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ]);
    for piece in [1, 5, 4096] {
        let server = ScriptedServer::start(vec![Scripted::sse(&sse, piece)]);
        let ws = anthropic_workspace(&server);
        let host = ws.host().await;
        let out = collect(&host, "anthropic/claude-test", request("Read main")).await.unwrap();
        assert_eq!(out.reasoning, "Need the file.", "piece {piece}");
        assert_eq!(out.text, "Reading é…", "piece {piece}");
        assert_eq!(out.calls, vec![(0, "toolu_1".into(), "read".into(), r#"{"path": "src/main.rs"}"#.into())], "piece {piece}");
        assert_eq!(out.finish, Some(FinishReason::ToolCalls));
        let usage = out.usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens, usage.cache_read_tokens), (25, 42, 5));
        let received = &server.received()[0];
        assert!(received.line.starts_with("POST /v1/messages "), "{}", received.line);
        assert_eq!(received.header("x-api-key"), Some("sk-ant-test"));
        assert_eq!(received.header("anthropic-version"), Some("2023-06-01"));
    }
}

#[tokio::test]
async fn anthropic_requests_alternate_roles_and_carry_tool_results_and_signed_thinking() {
    let sse = anthropic_sse(&[
        ("message_start", r#"{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":0}}}"#),
        ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"done"}}"#),
        ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}"#),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ]);
    let server = ScriptedServer::start(vec![Scripted::sse(&sse, 4096)]);
    let ws = anthropic_workspace(&server);
    let host = ws.host().await;
    let mut req = request("Read main");
    req.messages.push(Message {
        role: Role::Assistant,
        parts: vec![
            ContentPart::Reasoning(("Need the file.".into(), Some("sig==".into()))),
            ContentPart::ToolCall(plugboard::runtime::provider::ToolCall {
                id: "toolu_1".into(),
                name: "read".into(),
                arguments: r#"{"path":"a"}"#.into(),
            }),
        ],
    });
    req.messages.push(Message {
        role: Role::Tool,
        parts: vec![ContentPart::ToolResult(plugboard::runtime::provider::ToolResult {
            call_id: "toolu_1".into(),
            content: "fn main() {}".into(),
            is_error: false,
        })],
    });
    req.messages.push(Message { role: Role::User, parts: vec![ContentPart::Text("Now summarize.".into())] });
    let out = collect(&host, "anthropic/claude-test", req).await.unwrap();
    assert_eq!(out.text, "done");
    assert_eq!(out.finish, Some(FinishReason::Stop));
    let body: serde_json::Value = serde_json::from_str(&server.received()[0].body).unwrap();
    assert_eq!(body["system"], "You are terse.");
    assert_eq!(body["max_tokens"], 256);
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.iter().map(|m| m["role"].as_str().unwrap()).collect::<Vec<_>>(), ["user", "assistant", "user"]);
    assert_eq!(messages[1]["content"][0], serde_json::json!({"type": "thinking", "thinking": "Need the file.", "signature": "sig=="}));
    assert_eq!(messages[1]["content"][1], serde_json::json!({"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a"}}));
    assert_eq!(messages[2]["content"][0]["type"], "tool_result");
    assert_eq!(messages[2]["content"][0]["tool_use_id"], "toolu_1");
    assert_eq!(messages[2]["content"][1], serde_json::json!({"type": "text", "text": "Now summarize."}));
    assert_eq!(body["tools"][0]["input_schema"]["required"], serde_json::json!(["path"]));
}

#[tokio::test]
async fn anthropic_overloaded_mid_stream_is_retryable() {
    let sse = anthropic_sse(&[
        ("message_start", r#"{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":0}}}"#),
        ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
        ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#),
        ("error", r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
    ]);
    let server = ScriptedServer::start(vec![Scripted::sse(&sse, 4096)]);
    let ws = anthropic_workspace(&server);
    let host = ws.host().await;
    let err = collect(&host, "anthropic/claude-test", request("hi")).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("overloaded_error: Overloaded"), "{err}");
}

#[tokio::test]
async fn anthropic_reads_the_flat_error_event_some_compatible_servers_send_and_retries_it() {
    // No `event:` line and no `error` object: `{"code", "message", "type"}` at the top.
    let sse = "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n\
               data: {\"code\":500,\"message\":\"the model crashed\",\"type\":\"server_error\"}\n\n";
    let server = ScriptedServer::start(vec![Scripted::sse(sse, 4096)]);
    let ws = anthropic_workspace(&server);
    let host = ws.host().await;
    let err = collect(&host, "anthropic/claude-test", request("hi")).await.unwrap_err();
    assert!(matches!(&err, CompletionError::Api { status: Some(500), retryable: true, .. }), "{err}");
    assert!(err.to_string().contains("server_error: the model crashed"), "{err}");
}

#[tokio::test]
async fn anthropic_takes_a_base_url_with_or_without_v1_and_a_wrong_one_is_named_in_the_error() {
    for base in ["", "/v1", "/v1/"] {
        let sse = anthropic_sse(&[
            ("message_start", r#"{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":0}}}"#),
            ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}"#),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ]);
        let server = ScriptedServer::start(vec![Scripted::sse(&sse, 4096)]);
        let ws = Workspace::new();
        ws.operator_config(&format!(
            "[plugins.anthropic]\nnetwork = [\"{url}\"]\napi_key = \"k\"\nsettings = {{ base_url = \"{url}{base}\", models = [{{ id = \"c\" }}] }}\n",
            url = server.url()
        ));
        collect(&*ws.host().await, "anthropic/c", request("hi")).await.unwrap_or_else(|e| panic!("base_url ending `{base}`: {e}"));
        assert!(server.received()[0].line.starts_with("POST /v1/messages "), "{base}: {}", server.received()[0].line);
    }
    let server = ScriptedServer::start(vec![Scripted::error(404, &[], "not found")]);
    let ws = Workspace::new();
    ws.operator_config(&format!(
        "[plugins.anthropic]\nnetwork = [\"{url}\"]\napi_key = \"k\"\nsettings = {{ base_url = \"{url}/api\", models = [{{ id = \"c\" }}] }}\n",
        url = server.url()
    ));
    let err = collect(&*ws.host().await, "anthropic/c", request("hi")).await.unwrap_err();
    assert!(err.to_string().contains(&format!("{}/api/v1/messages answered HTTP 404", server.url())), "{err}");
}

#[tokio::test]
async fn every_provider_asks_for_at_most_the_models_output_limit_and_offers_tools_only_to_models_that_take_them() {
    let said = openai_sse(&[r#"{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}"#]);
    let server = ScriptedServer::start(vec![Scripted::sse(&said, 4096), Scripted::sse(&said, 4096), Scripted::sse(&said, 4096)]);
    let ws = Workspace::new();
    ws.operator_config(&format!(
        "[plugins.openai]\nnetwork = [\"{url}\"]\napi_key = \"k\"\nsettings = {{ base_url = \"{url}/v1\", models = [\
         {{ id = \"small\", output_tokens = 100 }}, {{ id = \"no-tools\", output_tokens = 1000, tools = false }}] }}\n",
        url = server.url()
    ));
    let host = ws.host().await;
    let mut unbounded = request("hi");
    unbounded.max_output_tokens = None;
    collect(&host, "openai/small", unbounded).await.unwrap();
    collect(&host, "openai/small", request("hi")).await.unwrap();
    collect(&host, "openai/no-tools", request("hi")).await.unwrap();
    let bodies: Vec<serde_json::Value> = server.received().iter().map(|r| serde_json::from_str(&r.body).unwrap()).collect();
    assert_eq!(bodies[0]["max_tokens"], 100, "no limit asked: the model's");
    assert_eq!(bodies[1]["max_tokens"], 100, "256 asked of a model that writes at most 100");
    assert!(bodies[1]["tools"].is_array());
    assert_eq!(bodies[2]["max_tokens"], 256);
    assert!(bodies[2].get("tools").is_none(), "a model without tools is sent none: {}", bodies[2]);
}

#[tokio::test]
async fn openai_puts_the_output_limit_in_the_field_the_setting_names_and_refuses_an_unknown_one() {
    let said = openai_sse(&[r#"{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}"#]);
    let server = ScriptedServer::start(vec![Scripted::sse(&said, 4096)]);
    let ws = openai_workspace(&server, ", max_tokens_field = \"max_completion_tokens\"");
    collect(&*ws.host().await, "openai/test-model", request("hi")).await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&server.received()[0].body).unwrap();
    assert_eq!((body["max_completion_tokens"].as_u64(), body.get("max_tokens")), (Some(256), None));
    let ws = openai_workspace(&server, ", max_tokens_field = \"limit\"");
    let err = collect(&*ws.host().await, "openai/test-model", request("hi")).await.unwrap_err();
    assert!(err.to_string().contains("`max_tokens_field` is `limit`"), "{err}");
    assert_eq!(server.received().len(), 1, "nothing is sent with an unknown field");
}

/// Fixtures for the conformance tests: a text answer and a tool call.
fn aimock_fixtures() -> serde_json::Value {
    serde_json::json!({ "fixtures": [
        { "match": { "userMessage": "hello" }, "response": { "content": "Hello from a server nobody here wrote." } },
        { "match": { "userMessage": "read the readme" }, "response": { "toolCalls": [ { "name": "read", "arguments": { "path": "README.md" } } ] } }
    ]})
}

fn conformance_workspace(provider: &str, base_url: &str, url: &str) -> Workspace {
    let ws = Workspace::new();
    ws.operator_config(&format!(
        "[plugins.{provider}]\nnetwork = [\"{url}\"]\napi_key = \"test-key\"\nsettings = {{ base_url = \"{base_url}\", models = [{{ id = \"gpt-4o\" }}, {{ id = \"claude-sonnet-4-5\" }}] }}\n"
    ));
    ws
}

#[tokio::test]
#[ignore = "needs Node.js for @copilotkit/aimock; .ci/run runs it with --include-ignored"]
async fn openai_against_aimock_streams_text_and_tool_calls() {
    let aimock = plugboard_tests::Aimock::start(&aimock_fixtures());
    let ws = conformance_workspace("openai", &format!("{}/v1", aimock.url), &aimock.url);
    let host = ws.host().await;
    let out = collect(&host, "openai/gpt-4o", request("hello")).await.unwrap();
    assert_eq!(out.text, "Hello from a server nobody here wrote.");
    assert_eq!(out.finish, Some(FinishReason::Stop));
    let out = collect(&host, "openai/gpt-4o", request("read the readme")).await.unwrap();
    assert_eq!(out.finish, Some(FinishReason::ToolCalls));
    assert_eq!(out.calls.len(), 1, "{out:?}");
    assert_eq!(out.calls[0].2, "read");
    assert!(!out.calls[0].1.is_empty(), "the call has an id");
    let arguments: serde_json::Value = serde_json::from_str(&out.calls[0].3).unwrap();
    assert_eq!(arguments, serde_json::json!({"path": "README.md"}));
}

#[tokio::test]
#[ignore = "needs Node.js for @copilotkit/aimock; .ci/run runs it with --include-ignored"]
async fn anthropic_against_aimock_streams_text_and_tool_use() {
    let aimock = plugboard_tests::Aimock::start(&aimock_fixtures());
    let ws = conformance_workspace("anthropic", &aimock.url, &aimock.url);
    let host = ws.host().await;
    let out = collect(&host, "anthropic/claude-sonnet-4-5", request("hello")).await.unwrap();
    assert_eq!(out.text, "Hello from a server nobody here wrote.");
    assert_eq!(out.finish, Some(FinishReason::Stop));
    let out = collect(&host, "anthropic/claude-sonnet-4-5", request("read the readme")).await.unwrap();
    assert_eq!(out.finish, Some(FinishReason::ToolCalls));
    assert_eq!(out.calls.len(), 1, "{out:?}");
    assert_eq!(out.calls[0].2, "read");
    let arguments: serde_json::Value = serde_json::from_str(&out.calls[0].3).unwrap();
    assert_eq!(arguments, serde_json::json!({"path": "README.md"}));
}

#[tokio::test]
async fn a_large_request_body_is_streamed_out_whole() {
    let ok = openai_sse(&[r#"{"choices":[{"index":0,"delta":{"content":"read it"},"finish_reason":"stop"}]}"#]);
    let server = ScriptedServer::start(vec![Scripted::sse(&ok, 4096)]);
    let ws = openai_workspace(&server, "");
    let host = ws.host().await;
    let prompt = "x".repeat(300 * 1024);
    let out = collect(&host, "openai/test-model", request(&prompt)).await.unwrap();
    assert_eq!(out.text, "read it");
    let body: serde_json::Value = serde_json::from_str(&server.received()[0].body).unwrap();
    assert_eq!(body["messages"][1]["content"].as_str().unwrap().len(), 300 * 1024);
}

#[tokio::test]
async fn a_key_echoed_by_the_endpoint_or_quoted_in_an_error_body_is_masked() {
    let key = "sk-live-canary-0123456789";
    let echo = openai_sse(&[
        &format!(r#"{{"choices":[{{"index":0,"delta":{{"content":"you sent Bearer {key} to me"}}}}]}}"#),
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
    ]);
    let quoted = format!(r#"{{"error":{{"message":"Incorrect API key provided: {key}"}}}}"#);
    // Pieces of 5 bytes split the key between chunks of the body.
    let server =
        ScriptedServer::start(vec![Scripted::sse(&echo, 5), Scripted::error(401, &[("x-echo", &format!("Bearer {key}"))], &quoted)]);
    let ws = Workspace::new();
    ws.operator_config(&format!(
        "[plugins.openai]\nnetwork = [\"{url}\"]\napi_key = \"{key}\"\nsettings = {{ base_url = \"{url}/v1\", models = [{{ id = \"test-model\" }}] }}\n",
        url = server.url()
    ));
    let host = ws.host().await;
    let out = collect(&host, "openai/test-model", request("echo my key")).await.unwrap();
    assert_eq!(out.text, "you sent Bearer [redacted] to me");
    assert_eq!(
        server.received()[0].header("authorization").map(String::from),
        Some(format!("Bearer {key}")),
        "the key itself is still sent"
    );
    let err = collect(&host, "openai/test-model", request("again")).await.unwrap_err().to_string();
    assert!(err.contains("Incorrect API key provided: [redacted]") && !err.contains(key), "{err}");
}
