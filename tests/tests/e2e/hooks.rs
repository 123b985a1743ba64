//! Lifecycle hooks end to end: the scripted test hooks (`tests/plugins/hook-a`, `hook-b`)
//! and the first-party `redact-secrets` and `audit-log`, in real agent runs against a
//! scripted provider.

use std::path::Path;

use plugboard::agent::AgentError;
use plugboard::agent::permission::AskMode;
use plugboard::store::events::Event;
use plugboard_tests::{Workspace, components};
use serde_json::{Value, json};

use crate::agent::{Fixture, call, fixture_with, request_body, say};

/// Both scripted hooks installed, echo calls allowed, and `config` appended.
async fn hooked(script: Vec<plugboard_tests::Scripted>, config: &str) -> Fixture {
    let config = format!("[agents.build]\npermissions = [{{ tool = \"echo\", action = \"allow\" }}]\n{config}");
    fixture_with(script, &config, AskMode::DenyAll, |ws: &Workspace| {
        for component in [components::HOOK_A, components::HOOK_B] {
            std::fs::copy(component, ws.plugins.join(Path::new(component).file_name().unwrap())).unwrap();
        }
        std::fs::create_dir_all(ws.dir.join("audit")).unwrap();
    })
    .await
}

async fn events(f: &Fixture, kind: &str) -> Vec<Event> {
    f.store.events_after(0, None, 100_000).await.unwrap().into_iter().filter(|e| e.kind == kind).collect()
}

/// The stored tool parts of a session, in order.
async fn tool_parts(f: &Fixture, session: &str) -> Vec<Value> {
    let history = f.store.history(session).await.unwrap();
    history.iter().flat_map(|m| &m.parts).filter(|p| p.kind == "tool").map(|p| p.data.clone()).collect()
}

#[tokio::test]
async fn hooks_run_by_priority_then_id_and_their_rewrites_apply() {
    let f = hooked(
        vec![call(&[("c1", "echo", json!({ "text": "hello" }))]), say("done")],
        r#"
        [hooks.hook-a]
        priority = 5
        [hooks.hook-b]
        priority = 1
        [plugins.hook-a.settings]
        tag = "a"
        tool_after = "tag"
        prompt_before = "rewrite:(checked by a)"
        chat_params = "temperature:0.25"
        [plugins.hook-b.settings]
        tag = "b"
        tool_after = "tag"
        chat_params = "system:Answer in French."
        "#,
    )
    .await;
    let chain = f.runtime.host().hooks();
    assert_eq!(chain.order(plugboard::hooks::HookPoint::ToolAfter), ["hook-b", "hook-a"], "priority 1 runs before priority 5");
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let outcome = f.runtime.prompt(&session.id, "Say hello").await.unwrap();
    assert_eq!(outcome.text, "done");

    // tool.after: b then a appended their tags; the model and the store saw the result.
    let parts = tool_parts(&f, &session.id).await;
    assert_eq!(parts[0]["output"], "hello[b][a]");
    let second = request_body(&f.server, 1);
    let result = second["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap().clone();
    assert_eq!(result["content"], "hello[b][a]");
    // prompt.before: the stored prompt and the provider's are the rewritten one.
    let first = request_body(&f.server, 0);
    let user = first["messages"].as_array().unwrap().iter().find(|m| m["role"] == "user").unwrap().clone();
    assert_eq!(user["content"], "Say hello (checked by a)");
    // chat.params: both turns got a's temperature and b's system prompt addition.
    for n in 0..2 {
        let body = request_body(&f.server, n);
        assert_eq!(body["temperature"], json!(0.25));
        assert!(body["messages"][0]["content"].as_str().unwrap().ends_with("\nAnswer in French."), "{}", body["messages"][0]);
    }
    assert!(events(&f, "hook.failed").await.is_empty());
}

#[tokio::test]
async fn a_configured_secret_a_hook_writes_is_masked_before_the_model_or_the_store_sees_it() {
    let key = "sk-ant-canary-7777766666";
    let f = hooked(
        vec![call(&[("c1", "echo", json!({ "text": "hello" }))]), say("done")],
        &format!(
            r#"
            [plugins.anthropic]
            api_key = "{key}"
            [plugins.hook-a.settings]
            tag = "{key}"
            tool_after = "tag"
            prompt_before = "rewrite:{key}"
            "#
        ),
    )
    .await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "Say hello").await.unwrap();
    assert_eq!(tool_parts(&f, &session.id).await[0]["output"], "hello[[redacted]]");
    let bodies: Vec<String> = f.server.received().iter().map(|r| r.body.clone()).collect();
    assert!(bodies[0].contains("Say hello [redacted]"), "{}", bodies[0]);
    assert!(bodies.iter().all(|b| !b.contains(key)), "the key reached the model");
    let stored = serde_json::to_string(&f.store.history(&session.id).await.unwrap()).unwrap();
    assert!(!stored.contains(key) && stored.contains("[redacted]"), "the key reached the store");
}

#[tokio::test]
async fn tool_before_rewrites_are_validated_against_the_schema_and_denials_refuse() {
    let f = hooked(
        vec![
            call(&[("c1", "echo", json!({ "text": "original" }))]),
            say("first"),
            call(&[("c2", "echo", json!({ "text": "x" }))]),
            say("second"),
        ],
        r#"
        [plugins.hook-a.settings]
        tool_before = 'rewrite:{"text":"rewritten"}'
        "#,
    )
    .await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "one").await.unwrap();
    let parts = tool_parts(&f, &session.id).await;
    assert_eq!((parts[0]["state"].as_str(), parts[0]["output"].as_str()), (Some("completed"), Some("rewritten")));
    assert_eq!(parts[0]["input"], json!({ "text": "rewritten" }), "the recorded input is what ran");

    // A rewrite that breaks the schema is thrown away: the call runs as the model made it.
    let f = hooked(
        vec![call(&[("c1", "echo", json!({ "text": "original" }))]), say("done")],
        r#"
        [plugins.hook-a.settings]
        tool_before = 'rewrite:{"text":42,"extra":true}'
        [plugins.hook-b.settings]
        tool_before = "deny:not today"
        [hooks.hook-b]
        priority = 10
        "#,
    )
    .await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "one").await.unwrap();
    let parts = tool_parts(&f, &session.id).await;
    assert_eq!(parts[0]["state"], "error");
    assert_eq!(parts[0]["error"], "refused by hook `hook-b`: not today");
    let failed = events(&f, "hook.failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let data = &failed[0].data;
    assert_eq!((data["hook"].as_str(), data["point"].as_str(), data["tool"].as_str()), (Some("hook-a"), Some("tool.before"), Some("echo")));
    let reason = data["reason"].as_str().unwrap();
    assert!(reason.contains("invalid rewrite") && reason.contains("/text"), "{reason}");
    assert_eq!(failed[0].session_id.as_deref(), Some(session.id.as_str()), "the failure is in the session's log");
    // The model was told why.
    let second = request_body(&f.server, 1);
    let result = second["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap().clone();
    assert_eq!(result["content"], "refused by hook `hook-b`: not today");
}

#[tokio::test]
async fn trapping_slow_and_invalid_hooks_are_discarded_and_reported() {
    let f = hooked(
        vec![call(&[("c1", "echo", json!({ "text": "kept" }))]), say("done")],
        r#"
        [plugins.hook-a]
        limits = { timeout_ms = 300 }
        [plugins.hook-a.settings]
        tool_before = "trap"
        tool_after = "spin"
        chat_params = "invalid"
        [plugins.hook-b.settings]
        tool_after = "huge"
        prompt_before = "empty"
        "#,
    )
    .await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let outcome = f.runtime.prompt(&session.id, "go").await.unwrap();
    assert_eq!(outcome.text, "done", "the chain went on after every failure");
    let parts = tool_parts(&f, &session.id).await;
    assert_eq!((parts[0]["state"].as_str(), parts[0]["output"].as_str()), (Some("completed"), Some("kept")));
    let first = request_body(&f.server, 0);
    assert!(first.get("temperature").is_none() || first["temperature"].is_null(), "the invalid temperature was not used: {first}");
    let user = first["messages"].as_array().unwrap().iter().find(|m| m["role"] == "user").unwrap().clone();
    assert_eq!(user["content"], "go", "the empty rewrite was not used");

    let failed = events(&f, "hook.failed").await;
    let seen: Vec<(String, String)> =
        failed.iter().map(|e| (e.data["hook"].as_str().unwrap().to_string(), e.data["point"].as_str().unwrap().to_string())).collect();
    let reason = |hook: &str, point: &str| -> String {
        failed
            .iter()
            .find(|e| e.data["hook"] == hook && e.data["point"] == point)
            .map(|e| e.data["reason"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no hook.failed for {hook} at {point}: {seen:?}"))
    };
    assert!(reason("hook-b", "prompt.before").contains("empty"));
    assert!(reason("hook-a", "tool.before").contains("scripted trap in tool_before"), "{}", reason("hook-a", "tool.before"));
    assert!(reason("hook-a", "tool.after").contains("300 ms"), "{}", reason("hook-a", "tool.after"));
    assert!(reason("hook-b", "tool.after").contains("over the tool's limit"), "{}", reason("hook-b", "tool.after"));
    assert!(reason("hook-a", "chat.params").contains("temperature 9"));
    // Each failure once per call: one prompt, one tool call, two provider turns.
    let count = |hook: &str, point: &str| seen.iter().filter(|(h, p)| h == hook && p == point).count();
    assert_eq!(
        [
            count("hook-b", "prompt.before"),
            count("hook-a", "tool.before"),
            count("hook-a", "tool.after"),
            count("hook-b", "tool.after"),
            count("hook-a", "chat.params")
        ],
        [1, 1, 1, 1, 2]
    );
}

#[tokio::test]
async fn a_fail_closed_hook_that_fails_refuses_the_call_and_the_prompt() {
    let f = hooked(
        vec![call(&[("c1", "echo", json!({ "text": "never" }))]), say("done")],
        r#"
        [hooks.hook-a]
        fail_closed = true
        [plugins.hook-a.settings]
        tool_before = "trap"
        "#,
    )
    .await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "go").await.unwrap();
    let parts = tool_parts(&f, &session.id).await;
    assert_eq!(parts[0]["state"], "error");
    let error = parts[0]["error"].as_str().unwrap();
    assert!(error.starts_with("refused by hook `hook-a`: the hook failed and is fail-closed:"), "{error}");
    assert!(parts[0].get("output").is_none_or(Value::is_null), "the call did not run");

    // A rejecting prompt hook refuses the input: nothing is queued or stored.
    let f = hooked(vec![say("unused")], "[plugins.hook-b.settings]\nprompt_before = \"reject:no prompts on Sunday\"\n").await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let error = f.runtime.submit(&session.id, "hello", plugboard::store::inbox::Delivery::Queue).await.unwrap_err();
    match &error {
        AgentError::PromptRejected(r) => assert_eq!((r.hook.as_str(), r.reason.as_str()), ("hook-b", "no prompts on Sunday")),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(f.store.history(&session.id).await.unwrap().is_empty());
    assert!(events(&f, "input.admitted").await.is_empty());
}

#[tokio::test]
async fn observing_hooks_see_sessions_and_events_and_their_failures_are_reported_once() {
    let f = hooked(
        vec![call(&[("c1", "echo", json!({ "text": "hi" }))]), say("done")],
        "[plugins.hook-a.settings]\nsession_created = \"fail\"\non_event = \"fail\"\n",
    )
    .await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "go").await.unwrap();
    // The event hook is asynchronous: wait until it has seen the last tool.state event.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let tool_states = events(&f, "tool.state").await.len();
    loop {
        let failed = events(&f, "hook.failed").await;
        let on_events = failed.iter().filter(|e| e.data["point"] == "event").count();
        if on_events == tool_states + 1 || tokio::time::Instant::now() > deadline {
            let created: Vec<&Event> = failed.iter().filter(|e| e.data["point"] == "session.created").collect();
            assert_eq!(created.len(), 1);
            assert!(created[0].data["reason"].as_str().unwrap().contains("scripted failure"));
            // One failure per event it wanted: each tool.state, and session.created.
            assert_eq!(on_events, tool_states + 1, "{failed:?}");
            let types: Vec<&str> =
                failed.iter().filter(|e| e.data["point"] == "event").map(|e| e.data["event_type"].as_str().unwrap()).collect();
            assert!(types.iter().all(|t| *t == "tool.state" || *t == "session.created"), "{types:?}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_direct_call_with_hooks_is_rewritten_refused_and_recorded_without_a_session() {
    let f = hooked(
        vec![say("unused")],
        r#"
        [plugins.hook-a.settings]
        tool_before = 'rewrite:{"text":"rewritten"}'
        tag = "a"
        tool_after = "tag"
        "#,
    )
    .await;
    let before = f.store.last_seq().await.unwrap();
    let call = f.runtime.call_tool_with_hooks("echo", json!({ "text": "original" }), None).await;
    let output = call.result.expect("the call runs");
    assert_eq!(output.text, "rewritten[a]", "tool.before rewrote the arguments, tool.after tagged the result");
    let states: Vec<Event> = events(&f, "tool.state").await.into_iter().filter(|e| e.seq > before).collect();
    let kinds: Vec<&str> = states.iter().map(|e| e.data["data"]["state"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["running", "completed"]);
    assert!(states.iter().all(|e| e.session_id.is_none()), "a direct call belongs to no session");
    assert_eq!(states[1].seq, call.seq, "the call names the event that recorded its end");
    assert_eq!(
        (states[1].data["data"]["input"].clone(), states[1].data["data"]["output"].as_str()),
        (json!({ "text": "rewritten" }), Some("rewritten[a]"))
    );
    assert!(f.runtime.event_hooks_reached(call.seq, std::time::Duration::from_secs(10)).await);

    // A refusal: the tool does not run, the refusal names the hook and is recorded.
    let f = hooked(vec![say("unused")], "[plugins.hook-b.settings]\ntool_before = \"deny:not today\"\n").await;
    let call = f.runtime.call_tool_with_hooks("echo", json!({ "text": "x" }), None).await;
    match call.result {
        Err(plugboard::agent::tool_hooks::DirectCallError::Refused { hook, reason }) => {
            assert_eq!((hook.as_str(), reason.as_str()), ("hook-b", "not today"))
        }
        other => panic!("not refused: {other:?}"),
    }
    let states = events(&f, "tool.state").await;
    assert_eq!(states.last().unwrap().data["data"]["error"], "refused by hook `hook-b`: not today");
    // An unknown tool runs no hook and records nothing.
    let recorded = events(&f, "tool.state").await.len();
    let call = f.runtime.call_tool_with_hooks("teleport", json!({}), None).await;
    assert!(call.result.unwrap_err().for_operator().contains("no tool named `teleport`"));
    assert_eq!((call.seq, events(&f, "tool.state").await.len()), (0, recorded));
}

#[tokio::test]
async fn redact_secrets_masks_keys_in_tool_results_before_the_model_sees_them() {
    let leaked = "config: OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz0123 and ghp_abcdefghijklmnopqrstuvwxyz0123456789 \
                  and AKIAABCDEFGHIJKLMNOP; Authorization: Bearer abcdefghijklmnopqrstuvwxyz.0123; password = hunter2hunter2; \
                  -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY----- corp-deadbeef but sk-short stays";
    let config = "[hooks.redact-secrets]\nenabled = true\n[plugins.redact-secrets.settings]\nextra_patterns = [\"corp-[0-9a-f]{8}\"]\n";
    let f = hooked(vec![call(&[("c1", "echo", json!({ "text": leaked }))]), say("done")], config).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "show me").await.unwrap();
    let parts = tool_parts(&f, &session.id).await;
    let output = parts[0]["output"].as_str().unwrap().to_string();
    for secret in ["sk-proj-abc", "ghp_abc", "AKIAABCDEFGHIJKLMNOP", "abcdefghijklmnopqrstuvwxyz.0123", "hunter2", "MIIEpAIBAAKCAQEA"] {
        assert!(!output.contains(secret), "{secret} leaked: {output}");
    }
    for mask in [
        "[REDACTED:openai-key]",
        "[REDACTED:github-token]",
        "[REDACTED:aws-access-key]",
        "Bearer [REDACTED:bearer-token]",
        "password = [REDACTED:assignment]",
        "[REDACTED:private-key]",
        "[REDACTED:custom]",
    ] {
        assert!(output.contains(mask), "no {mask}: {output}");
    }
    assert!(output.starts_with("config: ") && output.ends_with("but sk-short stays"), "{output}");
    let second = request_body(&f.server, 1);
    let result = second["messages"].as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap()["content"].to_string();
    assert!(!result.contains("sk-proj-abc") && result.contains("[REDACTED:openai-key]"), "{result}");
    assert!(events(&f, "hook.failed").await.is_empty());
    // Bundled hooks are off until enabled.
    let off = hooked(vec![say("unused")], "").await;
    assert!(!off.runtime.host().hooks().enabled("redact-secrets"));
}

#[tokio::test]
async fn audit_log_appends_one_line_per_tool_call_to_its_granted_file() {
    let f = hooked(
        vec![call(&[("c1", "echo", json!({ "text": "one" })), ("c2", "nope", json!({}))]), say("done")],
        r#"
        [hooks.audit-log]
        enabled = true
        [plugins.audit-log]
        filesystem = [{ path = "audit", access = "read-write" }]
        settings = { path = "audit/tool-calls.jsonl" }
        "#,
    )
    .await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, "go").await.unwrap();
    let file = f.ws.dir.join("audit/tool-calls.jsonl");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        // Only whole lines: the hook may be writing the next one.
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let lines: Vec<Value> = whole.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
        if lines.len() >= 2 || tokio::time::Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(lines.len(), 2, "{lines:?}; hook failures: {:?}", events(&f, "hook.failed").await);
    let by_call = |id: &str| lines.iter().find(|l| l["call_id"] == id).unwrap_or_else(|| panic!("no line for {id}: {lines:?}"));
    let echo = by_call("c1");
    assert_eq!(
        (echo["tool"].as_str(), echo["state"].as_str(), echo["session_id"].as_str()),
        (Some("echo"), Some("completed"), Some(session.id.as_str()))
    );
    assert_eq!((echo["input"].clone(), echo["output_bytes"].as_u64()), (json!({ "text": "one" }), Some(3)));
    let unknown = by_call("c2");
    assert_eq!(unknown["state"], "error");
    assert!(events(&f, "hook.failed").await.is_empty());
}

/// [`hooked`] with a model of 16,000 tokens that answers with up to 2,000, and a session
/// holding one long prompt (about 5,000 tokens) for a compaction on request to summarize.
async fn hooked_with_notes(script: Vec<plugboard_tests::Scripted>, config: &str) -> (Fixture, String) {
    let config = format!("[agents.build]\npermissions = [{{ tool = \"echo\", action = \"allow\" }}]\n{config}");
    let f = crate::agent::fixture_of(
        script,
        &config,
        AskMode::DenyAll,
        |ws: &Workspace| {
            for component in [components::HOOK_A, components::HOOK_B] {
                std::fs::copy(component, ws.plugins.join(Path::new(component).file_name().unwrap())).unwrap();
            }
        },
        "context_tokens = 16000, output_tokens = 2000, ",
    )
    .await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    f.runtime.prompt(&session.id, &format!("NOTES {}", "a note worth keeping ".repeat(1_000))).await.unwrap();
    (f, session.id)
}

#[tokio::test]
async fn compaction_hooks_replace_the_summarizers_instructions_and_add_context_in_order() {
    let (f, session) = hooked_with_notes(
        vec![say("ok"), say("The user shared notes."), say("ok")],
        r#"
        [hooks.hook-b]
        priority = -1
        [plugins.hook-a.settings]
        compacting = "context:Keep the ticket number PB-7."
        [plugins.hook-b.settings]
        compacting = "prompt:Summarize in one line."
        "#,
    )
    .await;
    assert_eq!(f.runtime.host().hooks().order(plugboard::hooks::HookPoint::Compacting), ["hook-b", "hook-a"]);
    let compaction = f.runtime.compact(&session).await.unwrap();
    assert_eq!((compaction.hook.as_deref(), compaction.tokens.output), (None, 10), "the model wrote the summary");
    let summarizing = request_body(&f.server, 1);
    let asked = summarizing["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_string();
    assert!(asked.contains("## User\nNOTES a note worth keeping"), "the transcript comes first: {asked}");
    assert!(asked.ends_with("\n\nSummarize in one line.\n\nKeep the ticket number PB-7."), "b replaced, then a added: {asked}");
    assert!(!asked.contains("Summarize the conversation above"), "the default instructions are gone: {asked}");
    f.runtime.prompt(&session, "go on").await.unwrap();
    assert!(request_body(&f.server, 2).to_string().contains("The user shared notes."));
    assert!(events(&f, "hook.failed").await.is_empty());
}

#[tokio::test]
async fn a_compaction_hook_can_write_the_summary_and_the_model_is_not_asked() {
    let (f, session) = hooked_with_notes(
        vec![say("ok"), say("after the summary")],
        r#"
        [plugins.hook-a.settings]
        compacting = "summary:Notes about PB-7"
        [plugins.hook-b.settings]
        compacting = "context:ignored, since no model is asked"
        "#,
    )
    .await;
    let compaction = f.runtime.compact(&session).await.unwrap();
    assert_eq!(f.server.received().len(), 1, "no summarizer request was sent");
    assert_eq!(compaction.hook.as_deref(), Some("hook-a"));
    assert_eq!((compaction.tokens.input, compaction.tokens.output, compaction.cost), (0, 0, 0.0));
    let expected = "Notes about PB-7 (1 messages; ## User)";
    let history = f.store.history(&session).await.unwrap();
    let message = history.iter().find(|m| m.id == compaction.message_id).unwrap();
    assert_eq!((message.model.as_deref(), message.parts[0].data["summary"].as_str()), (None, Some(expected)));
    assert_eq!(message.parts[0].data["hook"], "hook-a");
    let compacted = events(&f, "session.compacted").await;
    assert_eq!(compacted[0].data["hook"], "hook-a");
    let outcome = f.runtime.prompt(&session, "go on").await.unwrap();
    assert_eq!(outcome.text, "after the summary");
    let turn = request_body(&f.server, 1).to_string();
    assert!(turn.contains(expected) && !turn.contains("NOTES"), "the hook's summary replaces the notes: {turn}");
}

#[tokio::test]
async fn a_compaction_hook_that_traps_or_writes_an_empty_summary_is_discarded_and_the_model_summarizes() {
    let (f, session) = hooked_with_notes(
        vec![say("ok"), say("The user shared notes.")],
        r#"
        [plugins.hook-a.settings]
        compacting = "empty"
        [plugins.hook-b.settings]
        compacting = "trap"
        "#,
    )
    .await;
    let compaction = f.runtime.compact(&session).await.unwrap();
    assert_eq!(compaction.hook, None);
    let asked = request_body(&f.server, 1).to_string();
    assert!(asked.contains("Summarize the conversation above"), "the default instructions: {asked}");
    let failed = events(&f, "hook.failed").await;
    let reasons: Vec<(String, String)> =
        failed.iter().map(|e| (e.data["hook"].as_str().unwrap().to_string(), e.data["reason"].as_str().unwrap().to_string())).collect();
    assert_eq!(failed.len(), 2, "{reasons:?}");
    assert!(failed.iter().all(|e| e.data["point"] == "session.compacting"));
    assert!(reasons[0].0 == "hook-a" && reasons[0].1.contains("the summary would be empty"), "{reasons:?}");
    assert!(reasons[1].0 == "hook-b" && reasons[1].1.contains("scripted trap in compacting"), "{reasons:?}");
}

#[tokio::test]
async fn plugins_built_against_wit_0_1_0_still_load_and_run() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v0.1.0");
    let f = fixture_with(
        vec![say("unused: the instant provider answers")],
        r#"
        [agents.build]
        permissions = [{ tool = "echo", action = "allow" }]
        [plugins.hook-a.settings]
        prompt_before = "rewrite:(seen by an old hook)"
        "#,
        AskMode::DenyAll,
        |ws: &Workspace| {
            // The workspace's echo and instant provider, replaced by their 0.1.0 builds.
            for (old, current) in [("echo.wasm", components::ECHO), ("instant-provider.wasm", components::INSTANT_PROVIDER)] {
                std::fs::copy(fixtures.join(old), ws.plugins.join(Path::new(current).file_name().unwrap())).unwrap();
            }
            std::fs::copy(fixtures.join("hook-a.wasm"), ws.plugins.join("hook-a.wasm")).unwrap();
        },
    )
    .await;
    let registry = f.runtime.host().registry();
    for id in ["echo", "instant", "hook-a"] {
        let plugin = registry.plugin(id).unwrap_or_else(|| panic!("`{id}` loaded"));
        assert_eq!(plugin.manifest.wit.as_deref(), Some("plugboard:plugin@0.1.0"), "{id} was built against 0.1.0");
    }
    let chain = f.runtime.host().hooks();
    assert_eq!(chain.order(plugboard::hooks::HookPoint::PromptBefore), ["hook-a"]);
    assert!(chain.order(plugboard::hooks::HookPoint::Compacting).is_empty(), "0.1.0 has no compaction export");
    let session = f.runtime.create_session(None, "build", Some("instant/script"), "t").await.unwrap();
    let outcome = f.runtime.prompt(&session.id, "Echo three times").await.unwrap();
    assert_eq!(outcome.text, "All three echoed.");
    let outputs: Vec<Value> = tool_parts(&f, &session.id).await.into_iter().map(|p| p["output"].clone()).collect();
    assert_eq!(outputs, [json!("hello 0"), json!("hello 1"), json!("hello 2")], "the old echo ran");
    let history = f.store.history(&session.id).await.unwrap();
    assert_eq!(history[0].parts[0].data["text"], "Echo three times (seen by an old hook)");
}
