//! The model's context end to end: requests held to the model's window, compaction on its
//! own and on request (API, HTTP), and long tool outputs cut for the model, against the
//! scripted OpenAI-compatible server.

use plugboard::agent::AgentError;
use plugboard::agent::permission::AskMode;
use plugboard::server::settings::ServerConfig;
use serde_json::{Value, json};

use crate::agent::{call, fixture_of, request_body, say};
use crate::http::serve_fixture;

/// A model of 16,000 tokens that answers with up to 2,000: requests may hold 14,000.
const WINDOW: &str = "context_tokens = 16000, output_tokens = 2000, ";

/// The system prompt of request `n`.
fn system_of(body: &Value) -> String {
    body["messages"][0]["content"].as_str().unwrap_or_default().to_string()
}

/// The text of the last message of a request.
fn last_message(body: &Value) -> String {
    let last = body["messages"].as_array().unwrap().last().unwrap().clone();
    match &last["content"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn a_request_that_cannot_fit_the_models_context_is_never_sent_and_the_session_goes_on() {
    let f = fixture_of(vec![say("The user pasted a long log."), say("hello back")], "", AskMode::DenyAll, |_| {}, WINDOW).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let paste = "a log line that repeats\n".repeat(5_000);
    let err = f.runtime.prompt(&session.id, &paste).await.unwrap_err();
    assert!(matches!(err, AgentError::ContextOverflow { budget: 14_000, context: 16_000, .. }), "{err}");
    assert!(err.to_string().contains("it was not sent"), "{err}");
    assert!(f.server.received().is_empty(), "nothing was sent");

    // The next prompt first compacts the paste, then goes out with its summary.
    let outcome = f.runtime.prompt(&session.id, "hello").await.unwrap();
    assert_eq!(outcome.text, "hello back");
    let compaction = outcome.compaction.expect("the paste was compacted");
    assert_eq!(compaction.reason.as_str(), "auto");
    assert!(compaction.tokens_before > 14_000 && compaction.tokens_after < 14_000, "{compaction:?}");
    let received = f.server.received();
    assert_eq!(received.len(), 2);
    for request in &received {
        assert!(request.body.len() / 4 < 16_000, "every request fits the context: {} bytes", request.body.len());
    }
    let summarizing = request_body(&f.server, 0);
    assert!(system_of(&summarizing).starts_with("You summarize"), "{summarizing}");
    assert_eq!(summarizing["tools"], Value::Null, "the summarizer gets no tools");
    let turn = request_body(&f.server, 1);
    let sent = turn.to_string();
    assert!(sent.contains("The user pasted a long log.") && last_message(&turn).ends_with("hello"), "{sent}");
    assert!(sent.matches("a log line that repeats").count() < 2, "the paste itself is not sent again");
    // The history keeps the paste whole.
    let history = f.store.history(&session.id).await.unwrap();
    assert!(history.iter().any(|m| m.parts.iter().any(|p| p.data["text"].as_str() == Some(paste.as_str()))));
}

#[tokio::test]
async fn a_long_history_is_compacted_before_it_overflows_and_its_usage_is_counted() {
    // Every answer (the summaries too) is `ok`, reporting 100 tokens in and 10 out.
    let f = fixture_of(vec![say("ok")], "", AskMode::DenyAll, |_| {}, WINDOW).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let mut compactions = Vec::new();
    for i in 0..6 {
        let prompt = format!("MARK{i} {}", "words to keep in mind ".repeat(600));
        let outcome = f.runtime.prompt(&session.id, &prompt).await.unwrap();
        assert_eq!(outcome.text, "ok");
        if let Some(compaction) = outcome.compaction {
            compactions.push((i, compaction));
        }
    }
    assert!(!compactions.is_empty(), "six prompts of about 3,300 tokens pass 80% of 14,000");
    let received = f.server.received();
    for request in &received {
        assert!(request.body.len() / 4 < 16_000, "every request fits the context: {} bytes", request.body.len());
    }
    // Each summarizer request is followed by the turn it made room for: the summary, then
    // the prompt of that turn; earlier prompts are no longer sent.
    let (at, first) = &compactions[0];
    assert!(first.tokens_before > 11_200 && first.tokens_after < first.tokens_before / 2, "{first:?}");
    let summarizer = received.iter().position(|r| r.body.contains("You summarize")).expect("a summarizer request");
    let turn = request_body(&f.server, summarizer + 1).to_string();
    assert!(turn.contains("<summary>\\nok\\n</summary>") && turn.contains(&format!("MARK{at}")), "{turn}");
    assert!(!turn.contains("MARK0 "), "the first prompt is in the summary only");
    // Events tell it, with the tokens before and after.
    let events = f.store.events_after(0, Some(session.id.clone()), 100_000).await.unwrap();
    let compacting = events.iter().filter(|e| e.kind == "session.compacting").count();
    let compacted: Vec<&Value> = events.iter().filter(|e| e.kind == "session.compacted").map(|e| &e.data).collect();
    assert_eq!((compacting, compacted.len()), (compactions.len(), compactions.len()));
    assert_eq!(compacted[0]["tokens_before"], json!(first.tokens_before));
    // The history keeps every prompt, and the usage counts every request, summaries too.
    let history = f.store.history(&session.id).await.unwrap();
    let prompts = history.iter().filter(|m| m.role == "user").count();
    assert_eq!(prompts, 6);
    let stored = f.store.session(&session.id).await.unwrap();
    assert_eq!((stored.tokens.input, stored.tokens.output), (100 * received.len() as u64, 10 * received.len() as u64));
    let cost: f64 = history.iter().map(|m| m.cost).sum();
    assert!((stored.cost - cost).abs() < 1e-12 && cost > 0.0);
}

#[tokio::test]
async fn a_compaction_on_request_over_http_summarizes_the_older_part_and_says_when_there_is_nothing_to_compact() {
    let f = fixture_of(vec![say("ok"), say("ok"), say("The user shared notes."), say("ok")], "", AskMode::DenyAll, |_| {}, WINDOW).await;
    let runtime = f.runtime.clone();
    let api = serve_fixture(f, None, ServerConfig::default()).await;
    let session = runtime.create_session(None, "build", None, "t").await.unwrap();
    runtime.prompt(&session.id, "hi").await.unwrap();
    let (status, body) = api.post(&format!("/sessions/{}/compact", session.id), json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nothing to compact"), "{body}");

    runtime.prompt(&session.id, &format!("NOTES {}", "a note worth keeping ".repeat(1_000))).await.unwrap();
    let mut stream = api.stream(&format!("/sessions/{}/stream?types=session.compacting,session.compacted", session.id), None).await;
    let (status, body) = api.post(&format!("/sessions/{}/compact", session.id), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let frames = stream.until("session.compacted", std::time::Duration::from_secs(30)).await;
    let kinds: Vec<&str> = frames.iter().map(|f| f.event.as_str()).filter(|k| *k != "heartbeat").collect();
    assert_eq!(kinds, ["session.compacting", "session.compacted"], "a stream can follow compactions alone");
    assert_eq!(body["reason"], "requested");
    assert!(body["tokens_after"].as_u64().unwrap() < body["tokens_before"].as_u64().unwrap(), "{body}");
    let history = runtime.store().history(&session.id).await.unwrap();
    let notes = history.iter().find(|m| m.parts.iter().any(|p| p.data["text"].as_str().is_some_and(|t| t.starts_with("NOTES")))).unwrap();
    assert_eq!(body["through"].as_str(), Some(notes.id.as_str()), "the notes and what came before are summarized");
    // The next turn sends the summary in their place.
    runtime.prompt(&session.id, "go on").await.unwrap();
    let turn = request_body(&api.f.server, 3).to_string();
    assert!(turn.contains("The user shared notes.") && !turn.contains("NOTES"), "{turn}");
    let (status, _) = api.post("/sessions/ses_missing/compact", json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_long_tool_output_is_cut_for_the_model_and_stored_whole() {
    let log: String = (0..1_000).map(|i| format!("line {i:04} of a long build log\n")).collect();
    let script = vec![call(&[("c1", "read", json!({"path": "build.log"}))]), say("done")];
    let f = fixture_of(
        script,
        "[sessions]\ntool_output_limit = 4096",
        AskMode::DenyAll,
        |ws| {
            ws.file("build.log", &log);
        },
        "",
    )
    .await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "read the log").await.unwrap();
    let turn = request_body(&f.server, 1);
    let result =
        turn["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap()["content"].as_str().unwrap().to_string();
    assert!(result.len() < 4_096 + 400, "{} bytes", result.len());
    assert!(result.contains("line 0000") && result.contains("line 0999") && !result.contains("line 0500"), "{result}");
    let history = f.store.history(&session.id).await.unwrap();
    let part = history.iter().flat_map(|m| &m.parts).find(|p| p.kind == "tool").unwrap();
    assert!(result.contains(&format!("part {}", part.id)), "the note names the stored part: {result}");
    let stored = part.data["output"].as_str().unwrap();
    assert!(stored.contains("line 0500") && stored.len() > 30_000, "stored whole: {} bytes", stored.len());
}

#[tokio::test]
#[ignore = "needs Node.js for @copilotkit/aimock; .ci/run runs it with --include-ignored"]
async fn against_aimock_a_long_history_is_compacted_and_the_session_goes_on() {
    // Fixtures are tried in order; each matches a substring of the last user message.
    let aimock = plugboard_tests::Aimock::start(&json!({ "fixtures": [
        { "match": { "userMessage": "Summarize the conversation above" }, "response": { "content": "Summary: two long notes." } },
        { "match": { "userMessage": "Summary: two long notes." }, "response": { "content": "Going on from the summary." } },
        { "match": { "userMessage": "first note" }, "response": { "content": "Noted." } }
    ]}));
    let ws = plugboard_tests::Workspace::new();
    ws.operator_config(&format!(
        "default_model = \"openai/gpt-4o\"\n[plugins.openai]\nnetwork = [\"{url}\"]\napi_key = \"test-key\"\n\
         settings = {{ base_url = \"{url}/v1\", models = [{{ id = \"gpt-4o\", {WINDOW}input_price = 1.0 }}] }}\n",
        url = aimock.url
    ));
    let app = ws.app().await;
    let store = plugboard::store::SessionStore::open(&ws.data.join("plugboard.db")).unwrap();
    let runtime = app.agent_runtime(store.clone(), AskMode::DenyAll).unwrap();
    let session = runtime.create_session(None, "build", None, "t").await.unwrap();
    let note = "a long note that has to be kept in mind ".repeat(500);
    assert_eq!(runtime.prompt(&session.id, &format!("first note: {note}")).await.unwrap().text, "Noted.");
    let outcome = runtime.prompt(&session.id, &format!("first note, again: {note}")).await.unwrap();
    let compaction = outcome.compaction.expect("the second note passes 80% of the budget");
    assert!(compaction.tokens_before > 11_200 && compaction.tokens_after < compaction.tokens_before / 3, "{compaction:?}");
    assert_eq!(outcome.text, "Going on from the summary.");
    let history = store.history(&session.id).await.unwrap();
    let summary = history.iter().flat_map(|m| &m.parts).find(|p| p.kind == "compaction").expect("stored");
    assert_eq!(summary.data["summary"], "Summary: two long notes.");
    let stored = store.session(&session.id).await.unwrap();
    assert!(stored.cost > 0.0 && stored.tokens.input > 0, "aimock's usage, summaries included: {:?}", stored.tokens);
}

#[tokio::test]
#[ignore = "needs Node.js for @copilotkit/aimock; .ci/run runs it with --include-ignored"]
async fn against_aimock_a_session_switches_from_an_openai_model_to_an_anthropic_one() {
    let aimock = plugboard_tests::Aimock::start(&json!({ "fixtures": [
        { "match": { "userMessage": "second question" }, "response": { "content": "Claude, going on." } },
        { "match": { "userMessage": "first question" }, "response": { "content": "GPT, first." } }
    ]}));
    let ws = plugboard_tests::Workspace::new();
    ws.operator_config(&format!(
        "default_model = \"openai/gpt-4o\"\n\
         [plugins.openai]\nnetwork = [\"{url}\"]\napi_key = \"test-key\"\nsettings = {{ base_url = \"{url}/v1\", models = [{{ id = \"gpt-4o\" }}] }}\n\
         [plugins.anthropic]\nnetwork = [\"{url}\"]\napi_key = \"test-key\"\nsettings = {{ base_url = \"{url}\", models = [{{ id = \"claude-sonnet-4-5\" }}] }}\n",
        url = aimock.url
    ));
    let app = ws.app().await;
    let store = plugboard::store::SessionStore::open(&ws.data.join("plugboard.db")).unwrap();
    let runtime = app.agent_runtime(store.clone(), AskMode::DenyAll).unwrap();
    let session = runtime.create_session(None, "build", None, "t").await.unwrap();
    assert_eq!(runtime.prompt(&session.id, "first question").await.unwrap().text, "GPT, first.");
    runtime.set_model(&session.id, "anthropic/claude-sonnet-4-5").await.unwrap();
    assert_eq!(runtime.prompt(&session.id, "second question").await.unwrap().text, "Claude, going on.");
    let history = store.history(&session.id).await.unwrap();
    let models: Vec<Option<&str>> = history.iter().filter(|m| m.role == "assistant").map(|m| m.model.as_deref()).collect();
    assert_eq!(models, [Some("openai/gpt-4o"), Some("anthropic/claude-sonnet-4-5")]);
}
