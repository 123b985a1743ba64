//! The agent loop end to end: real tool plugins, the openai provider against a scripted
//! server, and the SQLite store.

use std::sync::Arc;

use plugboard::agent::permission::{AskMode, Reply};
use plugboard::agent::{AgentError, AgentRuntime};
use plugboard::store::SessionStore;
use plugboard_tests::{Scripted, ScriptedServer, Workspace};
use serde_json::{Value, json};

/// An OpenAI-style streamed answer with text.
pub(crate) fn say(text: &str) -> Scripted {
    let chunk = json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]});
    let usage = json!({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 10}});
    Scripted::sse(&format!("data: {chunk}\n\ndata: {usage}\n\ndata: [DONE]\n\n"), 4096)
}

/// An OpenAI-style streamed answer with tool calls `(id, tool, arguments)`.
pub(crate) fn call(calls: &[(&str, &str, Value)]) -> Scripted {
    let tool_calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (id, name, args))| json!({"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}))
        .collect();
    let chunk = json!({"choices": [{"index": 0, "delta": {"tool_calls": tool_calls}}]});
    let end = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]});
    let usage = json!({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 5}});
    Scripted::sse(&format!("data: {chunk}\n\ndata: {end}\n\ndata: {usage}\n\ndata: [DONE]\n\n"), 4096)
}

pub(crate) struct Fixture {
    pub ws: Workspace,
    pub server: ScriptedServer,
    pub app: Arc<plugboard::app::App>,
    pub runtime: Arc<AgentRuntime>,
    pub store: SessionStore,
    pub db: std::path::PathBuf,
}

pub(crate) async fn fixture(script: Vec<Scripted>, extra_config: &str, mode: AskMode) -> Fixture {
    fixture_with(script, extra_config, mode, |_| {}).await
}

/// [`fixture`], with `setup` run on the workspace before the host starts (to add plugins).
pub(crate) async fn fixture_with(script: Vec<Scripted>, extra_config: &str, mode: AskMode, setup: impl FnOnce(&Workspace)) -> Fixture {
    fixture_of(script, extra_config, mode, setup, "").await
}

/// [`fixture_with`], the model `openai/test-model` described further by `model_fields`
/// (`context_tokens = 1000, `, each followed by a comma).
pub(crate) async fn fixture_of(
    script: Vec<Scripted>,
    extra_config: &str,
    mode: AskMode,
    setup: impl FnOnce(&Workspace),
    model_fields: &str,
) -> Fixture {
    let server = ScriptedServer::start(script);
    let ws = Workspace::new();
    setup(&ws);
    ws.operator_config(&format!(
        "default_model = \"openai/test-model\"\n{extra_config}\n[plugins.openai]\nnetwork = [\"{url}\"]\napi_key = \"sk-test\"\nsettings = {{ base_url = \"{url}/v1\", models = [{{ id = \"test-model\", {model_fields}input_price = 1.0, output_price = 2.0 }}] }}\n",
        url = server.url()
    ));
    let db = ws.data.join("plugboard.db");
    let app = ws.app().await;
    let store = SessionStore::open(&db).unwrap();
    let runtime = app.agent_runtime(store.clone(), mode).unwrap();
    Fixture { ws, server, app, runtime, store, db }
}

pub(crate) fn request_body(server: &ScriptedServer, n: usize) -> Value {
    serde_json::from_str(&server.received()[n].body).unwrap()
}

#[tokio::test]
async fn a_multi_step_task_edits_files_and_records_everything() {
    let f = fixture(
        vec![
            call(&[("c1", "read", json!({"path": "notes.txt"}))]),
            call(&[("c2", "edit", json!({"path": "notes.txt", "old_string": "draft", "new_string": "final"}))]),
            say("Done: the notes are final."),
        ],
        "",
        AskMode::DenyAll,
    )
    .await;
    f.ws.file("notes.txt", "status: draft\n");
    let session = f.runtime.create_session(None, "build", None, "finalize notes").await.unwrap();
    let outcome = f.runtime.prompt(&session.id, "Make the notes final").await.unwrap();
    assert_eq!(outcome.text, "Done: the notes are final.");
    assert_eq!((outcome.steps, outcome.finish.as_str()), (3, "stop"));
    assert_eq!(std::fs::read_to_string(f.ws.dir.join("notes.txt")).unwrap(), "status: final\n");
    let notes = f.ws.dir.join("notes.txt").canonicalize().unwrap().display().to_string();
    assert_eq!(outcome.files_modified, std::slice::from_ref(&notes), "the edit is reported, the read is not");
    // The end of the activity is an event too, with the answer and the files changed.
    let events = f.store.events_after(0, Some(session.id.clone()), 10_000).await.unwrap();
    let ended: Vec<&Value> = events.iter().filter(|e| e.kind == "activity.completed").map(|e| &e.data).collect();
    assert_eq!(ended.len(), 1);
    assert_eq!((ended[0]["finish"].as_str(), ended[0]["text"].as_str()), (Some("stop"), Some("Done: the notes are final.")));
    assert_eq!(ended[0]["files_modified"], json!([notes]));

    // The model saw the read's output in the next turn, as a tool result.
    let second = request_body(&f.server, 1);
    let messages = second["messages"].as_array().unwrap();
    let result = messages.iter().find(|m| m["role"] == "tool").expect("a tool result");
    assert_eq!(result["tool_call_id"], "c1");
    assert!(result["content"].as_str().unwrap().contains("status: draft"), "{result}");
    assert_eq!(messages.iter().find(|m| m["role"] == "assistant").unwrap()["tool_calls"][0]["function"]["name"], "read");

    // Everything is in the store.
    let history = f.store.history(&session.id).await.unwrap();
    assert_eq!(history.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(), ["user", "assistant", "assistant", "assistant"]);
    assert!(history.iter().all(|m| m.status == "completed"));
    let tools: Vec<&Value> = history.iter().flat_map(|m| &m.parts).filter(|p| p.kind == "tool").map(|p| &p.data).collect();
    assert_eq!(tools.len(), 2);
    assert!(tools.iter().all(|t| t["state"] == "completed"), "{tools:?}");
    assert_eq!(history[3].parts.iter().find(|p| p.kind == "text").unwrap().data["text"], "Done: the notes are final.");
    // Usage and cost per message, summed per session.
    let stored = f.store.session(&session.id).await.unwrap();
    assert_eq!((stored.tokens.input, stored.tokens.output), (50 + 50 + 100, 5 + 5 + 10));
    assert!((stored.cost - (200.0 * 1.0 + 20.0 * 2.0) / 1e6).abs() < 1e-12, "{}", stored.cost);
    assert_eq!(stored.status, "idle");
}

#[tokio::test]
async fn events_are_sequenced_durable_and_match_what_subscribers_saw() {
    let f = fixture(vec![call(&[("c1", "list", json!({}))]), say("ok")], "", AskMode::DenyAll).await;
    let mut live = f.store.bus().subscribe();
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "list").await.unwrap();
    let stored = f.store.events_after(0, Some(session.id.clone()), 10_000).await.unwrap();
    let mut seen = Vec::new();
    while let Ok(event) = live.try_recv() {
        seen.push(std::sync::Arc::unwrap_or_clone(event));
    }
    assert_eq!(seen, stored, "live subscribers see exactly the stored events, in order");
    let session_seqs: Vec<i64> = stored.iter().map(|e| e.session_seq).collect();
    assert_eq!(session_seqs, (1..=stored.len() as i64).collect::<Vec<_>>(), "per-session sequence has no gap");
    assert!(stored.windows(2).all(|w| w[0].seq < w[1].seq));
    let kinds: Vec<&str> = stored.iter().map(|e| e.kind.as_str()).collect();
    for expected in
        ["session.created", "session.status", "message.created", "part.created", "part.delta", "tool.state", "message.completed", "usage"]
    {
        assert!(kinds.contains(&expected), "{expected} missing from {kinds:?}");
    }
}

#[tokio::test]
async fn parallel_tool_calls_all_run_and_all_results_go_back() {
    let f = fixture(
        vec![call(&[("a", "read", json!({"path": "a.txt"})), ("b", "read", json!({"path": "b.txt"}))]), say("Both read.")],
        "",
        AskMode::DenyAll,
    )
    .await;
    f.ws.file("a.txt", "alpha\n").file("b.txt", "beta\n");
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "read both").await.unwrap();
    let second = request_body(&f.server, 1);
    let results: Vec<&Value> = second["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(results.len(), 2);
    assert!(results[0]["content"].as_str().unwrap().contains("alpha"));
    assert!(results[1]["content"].as_str().unwrap().contains("beta"));
}

#[tokio::test]
async fn the_step_limit_ends_the_activity_and_the_last_step_offers_no_tools() {
    let f = fixture(vec![call(&[("c", "list", json!({}))])], "[agents.build]\nmax_steps = 2\n", AskMode::DenyAll).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let outcome = f.runtime.prompt(&session.id, "loop forever").await.unwrap();
    assert_eq!((outcome.steps, outcome.finish.as_str()), (2, "step-limit"));
    assert_eq!(f.server.received().len(), 2);
    assert!(request_body(&f.server, 0)["tools"].is_array());
    let last = request_body(&f.server, 1);
    assert!(last.get("tools").is_none(), "no tools on the last step");
    assert!(last["messages"][0]["content"].as_str().unwrap().contains("last step"), "{}", last["messages"][0]);
}

#[tokio::test]
async fn the_plan_agent_is_not_offered_denied_tools() {
    let f = fixture(vec![say("A plan.")], "", AskMode::DenyAll).await;
    let session = f.runtime.create_session(None, "plan", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "plan it").await.unwrap();
    let body = request_body(&f.server, 0);
    let offered: Vec<&str> = body["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert!(offered.contains(&"read") && offered.contains(&"grep"), "{offered:?}");
    for denied in ["edit", "write", "shell"] {
        assert!(!offered.contains(&denied), "{denied} offered to plan: {offered:?}");
    }
}

#[tokio::test]
async fn permission_asks_are_answered_through_the_broker() {
    let f = fixture(
        vec![
            call(&[("c1", "read", json!({"path": "secret.txt"}))]),
            say("ok"),
            call(&[("c2", "read", json!({"path": "secret.txt"}))]),
            say("ok"),
            call(&[("c3", "read", json!({"path": "secret.txt"}))]),
            say("ok"),
        ],
        "[agents.build]\npermissions = [{ tool = \"read\", pattern = \"secret*\", action = \"ask\" }]\n",
        AskMode::Prompt,
    )
    .await;
    f.ws.file("secret.txt", "the secret\n");
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let broker = f.runtime.broker().clone();
    let mut events = f.store.bus().subscribe();
    let answers = tokio::spawn(async move {
        let mut asked = 0;
        let replies = [Reply::Reject(Some("not that file".into())), Reply::Always];
        while let Ok(event) = events.recv().await {
            if event.kind == "permission.asked" {
                assert_eq!(event.data["tool"], "read");
                assert_eq!(event.data["subject"], "secret.txt");
                assert!(broker.reply(event.data["id"].as_str().unwrap(), replies[asked].clone()));
                asked += 1;
            }
        }
        asked
    });
    // First prompt: rejected; the model sees the reason.
    f.runtime.prompt(&session.id, "read it").await.unwrap();
    let second = request_body(&f.server, 1);
    let result = second["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap().clone();
    assert!(result["content"].as_str().unwrap().contains("rejected this call: not that file"), "{result}");
    // Second prompt: allowed always; third: no question, the session rule allows it.
    f.runtime.prompt(&session.id, "read it again").await.unwrap();
    f.runtime.prompt(&session.id, "and again").await.unwrap();
    let history = f.store.history(&session.id).await.unwrap();
    let states: Vec<String> =
        history.iter().flat_map(|m| &m.parts).filter(|p| p.kind == "tool").map(|p| p.data["state"].as_str().unwrap().to_string()).collect();
    assert_eq!(states, ["error", "completed", "completed"]);
    let asked =
        f.store.events_after(0, Some(session.id.clone()), 10_000).await.unwrap().iter().filter(|e| e.kind == "permission.asked").count();
    assert_eq!(asked, 2, "the `always` answer stopped further questions");
    answers.abort();
}

#[tokio::test]
async fn a_non_interactive_run_refuses_questions_and_the_model_sees_it() {
    let f = fixture(vec![call(&[("c1", "fetch", json!({"url": "https://example.com"}))]), say("ok")], "", AskMode::DenyAll).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "fetch").await.unwrap();
    let result = request_body(&f.server, 1)["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap().clone();
    assert!(result["content"].as_str().unwrap().contains("non-interactive"), "{result}");
}

#[tokio::test]
async fn three_identical_calls_trip_the_doom_loop_guard() {
    let same = || call(&[("c", "list", json!({}))]);
    let f = fixture(vec![same(), same(), same(), say("giving up")], "", AskMode::DenyAll).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "go").await.unwrap();
    let history = f.store.history(&session.id).await.unwrap();
    let tools: Vec<&Value> = history.iter().flat_map(|m| &m.parts).filter(|p| p.kind == "tool").map(|p| &p.data).collect();
    assert_eq!(tools.iter().map(|t| t["state"].as_str().unwrap()).collect::<Vec<_>>(), ["completed", "completed", "error"]);
    assert!(tools[2]["error"].as_str().unwrap().contains("3 times in a row"), "{}", tools[2]);
}

#[tokio::test]
async fn a_retryable_error_is_retried_visibly_and_the_failed_attempt_is_not_replayed() {
    let f = fixture(
        vec![Scripted::error(429, &[("retry-after", "0.2")], r#"{"error":{"message":"slow down"}}"#), say("after retry")],
        "",
        AskMode::DenyAll,
    )
    .await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let outcome = f.runtime.prompt(&session.id, "hi").await.unwrap();
    assert_eq!(outcome.text, "after retry");
    let events = f.store.events_after(0, Some(session.id.clone()), 10_000).await.unwrap();
    let retry = events.iter().find(|e| e.kind == "session.status" && e.data["status"] == "retry").expect("a retry status");
    assert_eq!(retry.data["detail"]["delay_ms"], 200);
    assert_eq!(retry.data["detail"]["attempt"], 1);
    let history = f.store.history(&session.id).await.unwrap();
    assert_eq!(history.iter().map(|m| m.status.as_str()).collect::<Vec<_>>(), ["completed", "error", "completed"]);
    assert_eq!(request_body(&f.server, 1)["messages"].as_array().unwrap().len(), 2, "system + user: the failed attempt is not sent");
}

#[tokio::test]
async fn a_turn_cut_before_its_usage_came_is_counted_by_estimate_not_as_free() {
    // 40 characters stream back, then the connection drops: no usage, retried.
    let text = json!({"choices": [{"index": 0, "delta": {"content": "x".repeat(40)}}]});
    let cut = Scripted::sse(&format!("data: {text}\n\n"), 4096);
    let f = fixture(vec![cut, say("done")], "", AskMode::DenyAll).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    assert_eq!(f.runtime.prompt(&session.id, "hi").await.unwrap().text, "done");
    let history = f.store.history(&session.id).await.unwrap();
    let failed = history.iter().find(|m| m.status == "error").expect("the cut attempt");
    assert_eq!(failed.tokens.output, 10, "40 characters at 4 a token");
    assert!(failed.tokens.input > 0 && failed.cost > 0.0, "{:?} ${}", failed.tokens, failed.cost);
    let stored = f.store.session(&session.id).await.unwrap();
    assert_eq!(stored.tokens.output, 10 + 10, "the session counts the cut attempt and the answer");
}

#[tokio::test]
async fn when_the_retries_run_out_the_error_says_so_and_no_longer_calls_itself_retryable() {
    let busy = || Scripted::error(503, &[("retry-after", "0")], r#"{"error":{"message":"busy"}}"#);
    // Four answers are scripted, but `[sessions] max_retries` allows three attempts in all.
    let f = fixture((0..4).map(|_| busy()).collect(), "[sessions]\nmax_retries = 2", AskMode::DenyAll).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let err = f.runtime.prompt(&session.id, "hi").await.unwrap_err();
    assert!(matches!(&err, AgentError::GaveUp { attempts: 3, .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("busy") && text.ends_with("gave up after 3 attempts") && !text.contains("retryable"), "{text}");
    assert_eq!(f.server.received().len(), 3);
}

#[tokio::test]
async fn the_projects_agents_md_and_the_environment_reach_the_model_and_an_edit_applies_from_the_next_prompt() {
    let f = fixture_with(vec![say("one"), say("two")], "", AskMode::DenyAll, |ws| {
        ws.file("AGENTS.md", "Run `make check` before you say you are done.");
    })
    .await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "hi").await.unwrap();
    let system = request_body(&f.server, 0)["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(system.starts_with("You are Plugboard, a coding agent"), "{system}");
    assert!(system.contains(&format!("workspace: {}", f.ws.dir.display())) && system.contains("date: 20"), "{system}");
    assert!(system.contains("Run `make check` before you say you are done."), "{system}");
    f.ws.file("AGENTS.md", "Answer in French.");
    f.runtime.prompt(&session.id, "again").await.unwrap();
    let system = request_body(&f.server, 1)["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(system.contains("Answer in French.") && !system.contains("make check"), "{system}");
}

#[tokio::test]
async fn an_agent_profile_replaces_the_base_prompt_or_adds_to_it() {
    let config = "[agents.build]\nbase_prompt = \"You are a careful reviewer.\"\nsystem_prompt = \"Never edit files.\"";
    let f = fixture(vec![say("ok")], config, AskMode::DenyAll).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "hi").await.unwrap();
    let system = request_body(&f.server, 0)["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(system.starts_with("You are a careful reviewer.\n\nNever edit files.") && !system.contains("You are Plugboard"), "{system}");
}

#[tokio::test]
async fn a_session_switches_from_an_openai_model_to_an_anthropic_one_and_carries_its_history_and_tool_calls() {
    let claude = ScriptedServer::start(vec![Scripted::sse(
        &[
            ("message_start", json!({"type": "message_start", "message": {"usage": {"input_tokens": 50, "output_tokens": 0}}})),
            ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "claude here"}}),
            ),
            ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}})),
            ("message_stop", json!({"type": "message_stop"})),
        ]
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect::<String>(),
        4096,
    )]);
    let anthropic = format!(
        "[plugins.anthropic]\nnetwork = [\"{url}\"]\napi_key = \"sk-ant\"\nsettings = {{ base_url = \"{url}\", models = [{{ id = \"claude-test\" }}] }}",
        url = claude.url()
    );
    let script = vec![call(&[("call_1", "read", json!({"path": "notes.txt"}))]), say("openai here")];
    let f = fixture_with(script, &anthropic, AskMode::DenyAll, |ws| {
        ws.file("notes.txt", "the notes");
    })
    .await;
    // The session brings its own OpenAI key, which must never reach another provider's API.
    let spec = plugboard::agent::SessionSpec {
        id: None,
        agent: "build".into(),
        model: None,
        title: "t".into(),
        options: Default::default(),
        overrides: plugboard::agent::ProviderOverrides {
            api_key: Some(plugboard::capability::Secret::new("sk-session-only".into())),
            api_endpoint: None,
        },
    };
    let session = f.runtime.create_session_with(spec).await.unwrap();
    assert_eq!(f.runtime.prompt(&session.id, "read the notes").await.unwrap().text, "openai here");
    assert_eq!(f.server.received()[0].header("authorization"), Some("Bearer sk-session-only"));
    let unknown = f.runtime.set_model(&session.id, "anthropic/nope").await.unwrap_err();
    let text = unknown.to_string();
    assert!(
        text.contains("no model `anthropic/nope`") && text.contains("anthropic/claude-test") && text.contains("openai/test-model"),
        "{text}"
    );
    let switched = f.runtime.set_model(&session.id, "anthropic/claude-test").await.unwrap();
    assert_eq!(switched.model, "anthropic/claude-test");
    assert_eq!(f.runtime.prompt(&session.id, "and now?").await.unwrap().text, "claude here");

    let sent = &claude.received()[0];
    assert_eq!(sent.header("x-api-key"), Some("sk-ant"), "the configured key of the new provider");
    assert!(!format!("{:?}", sent.headers).contains("sk-session-only"), "{:?}", sent.headers);
    let body: Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(body["model"], "claude-test");
    let messages = body["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant", "user"], "{body}");
    assert_eq!(messages[1]["content"][0], json!({"type": "tool_use", "id": "call_1", "name": "read", "input": {"path": "notes.txt"}}));
    assert_eq!(messages[2]["content"][0]["tool_use_id"], "call_1");
    assert!(messages[2]["content"][0]["content"].as_str().unwrap().contains("the notes"), "{body}");
    assert_eq!(messages[3]["content"][0]["text"], "openai here");
    let events = f.store.events_after(0, Some(session.id.clone()), 10_000).await.unwrap();
    let change = events.iter().find(|e| e.kind == "session.model").expect("a session.model event");
    assert_eq!(change.data, json!({"model": "anthropic/claude-test", "previous": "openai/test-model"}));
    let history = f.store.history(&session.id).await.unwrap();
    let models: Vec<Option<&str>> = history.iter().filter(|m| m.role.as_str() == "assistant").map(|m| m.model.as_deref()).collect();
    assert_eq!(models, [Some("openai/test-model"), Some("openai/test-model"), Some("anthropic/claude-test")]);
}

#[tokio::test]
async fn a_session_created_by_one_process_is_continued_by_another() {
    let f = fixture(vec![say("first answer"), say("second answer")], "", AskMode::DenyAll).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "first").await.unwrap();
    // A second runtime with its own connection to the same database, as another process.
    let store2 = SessionStore::open(&f.db).unwrap();
    let runtime2 = f.ws.app().await.agent_runtime(store2, AskMode::DenyAll).unwrap();
    let outcome = runtime2.prompt(&session.id, "second").await.unwrap();
    assert_eq!(outcome.text, "second answer");
    let second = request_body(&f.server, 1);
    let roles: Vec<&str> = second["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"], "the second process sent the whole history");
    assert_eq!(f.store.history(&session.id).await.unwrap().len(), 4, "both processes wrote to one history");
}

#[tokio::test]
async fn an_unknown_session_fails_at_once() {
    let f = fixture(vec![say("unused")], "", AskMode::DenyAll).await;
    let started = std::time::Instant::now();
    let err = f.runtime.prompt("ses_does_not_exist", "hi").await.unwrap_err();
    assert!(matches!(&err, AgentError::NotFound(id) if id == "ses_does_not_exist"), "{err}");
    assert!(started.elapsed().as_secs() < 5);
    assert!(f.server.received().is_empty());
}
