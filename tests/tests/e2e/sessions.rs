//! Sessions over time: inputs that arrive while a session is busy (`steer` and `queue`),
//! cancellation mid-stream and mid-tool, the limit on sessions running at once, and
//! permission rules that outlive the process that was granted them.

use std::time::Duration;

use plugboard::agent::permission::{AskMode, Reply};
use plugboard::agent::{AgentError, Delivery};
use plugboard::store::SessionStore;
use plugboard::store::events::{Event, Subscription};
use plugboard::store::model::{MessageRole, MessageStatus, PartKind};
use plugboard_tests::Scripted;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::agent::{call, fixture, request_body, say};

/// The next event of `session` that satisfies `wanted` (fails after 20 s without one).
async fn next_event(events: &mut Subscription, session: &str, wanted: impl Fn(&Event) -> bool) -> std::sync::Arc<Event> {
    let search = async {
        loop {
            match events.recv().await {
                Ok(event) if event.session_id.as_deref() == Some(session) && wanted(&event) => return event,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the event bus closed"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), search).await.expect("the awaited event came")
}

/// An OpenAI-style stream of `words` text chunks, one every `delay`.
pub(crate) fn slow_text(words: usize, delay: Duration) -> Scripted {
    let mut pieces: Vec<Vec<u8>> = (0..words)
        .map(|i| {
            let chunk = json!({"choices": [{"index": 0, "delta": {"content": format!("w{i} ")}}]});
            format!("data: {chunk}\n\n").into_bytes()
        })
        .collect();
    pieces.push(b"data: [DONE]\n\n".to_vec());
    Scripted { status: 200, headers: vec![("content-type".into(), "text/event-stream".into())], pieces, delay }
}

fn messages_of(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap_or("").to_string()))
        .collect()
}

const ASK_FOR_SECRETS: &str = "[agents.build]\npermissions = [{ tool = \"read\", pattern = \"secret*\", action = \"ask\" }]\n";

#[tokio::test]
async fn steer_joins_the_running_activity_and_queue_waits_for_an_activity_of_its_own() {
    let f = fixture(
        vec![call(&[("c1", "read", json!({"path": "secret.txt"}))]), say("steered answer"), say("queued answer")],
        ASK_FOR_SECRETS,
        AskMode::Prompt,
    )
    .await;
    f.ws.file("secret.txt", "the secret\n");
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let mut events = f.store.bus().subscribe();
    let (runtime, id) = (f.runtime.clone(), session.id.clone());
    let first = tokio::spawn(async move { runtime.prompt(&id, "read the secret").await });

    // While the first activity waits on a question, a queued and then a steered input arrive.
    let asked = next_event(&mut events, &session.id, |e| e.kind == "permission.asked").await;
    let queued = f.runtime.submit(&session.id, "then summarize", Delivery::Queue).await.unwrap();
    let steered = f.runtime.submit(&session.id, "and mention the date", Delivery::Steer).await.unwrap();
    let admitted = f.store.events_after(0, Some(session.id.clone()), 10_000).await.unwrap();
    let admitted: Vec<&Value> = admitted.iter().filter(|e| e.kind == "input.admitted").map(|e| &e.data).collect();
    assert_eq!(admitted.len(), 3, "every input is stored and announced on arrival: {admitted:?}");
    assert_eq!(admitted[1]["input_id"], queued.input_id.as_str());
    assert_eq!(admitted[2]["delivery"], "steer");
    assert!(f.runtime.broker().reply(asked.data["id"].as_str().unwrap(), Reply::Once));

    // The steer joined the running activity at its next provider turn...
    let outcome = first.await.unwrap().unwrap();
    assert_eq!((outcome.text.as_str(), outcome.steps), ("steered answer", 2));
    let second = messages_of(&request_body(&f.server, 1));
    let roles: Vec<&str> = second.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "user"], "{second:?}");
    assert_eq!(second[4].1, "and mention the date");

    // ...and the queued input, though it came first, opened the next activity.
    next_event(&mut events, &session.id, |e| e.kind == "message.created" && e.data["input_id"] == queued.input_id.as_str()).await;
    next_event(&mut events, &session.id, |e| e.kind == "session.status" && e.data["status"] == "idle").await;
    let third = messages_of(&request_body(&f.server, 2));
    assert_eq!(third.last().unwrap(), &("user".to_string(), "then summarize".to_string()));
    assert_eq!(third[third.len() - 2], ("assistant".to_string(), "steered answer".to_string()));

    let history = f.store.history(&session.id).await.unwrap();
    let users: Vec<&str> = history.iter().filter(|m| m.role == "user").map(|m| m.parts[0].data["text"].as_str().unwrap()).collect();
    assert_eq!(users, ["read the secret", "and mention the date", "then summarize"]);
    assert_eq!(f.server.received().len(), 3);
    assert!(steered.input_id != queued.input_id);
}

#[tokio::test]
async fn cancel_mid_stream_stops_the_stream_records_it_aborted_and_leaves_the_session_usable() {
    let f = fixture(vec![slow_text(100, Duration::from_millis(50)), say("a fresh start")], "", AskMode::DenyAll).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let mut events = f.store.bus().subscribe();
    let (runtime, id) = (f.runtime.clone(), session.id.clone());
    let running = tokio::spawn(async move { runtime.prompt(&id, "talk slowly").await });
    next_event(&mut events, &session.id, |e| e.kind == "part.delta").await;

    let cancellation = f.runtime.cancel(&session.id).await.unwrap();
    assert!(cancellation.was_running);
    assert!(matches!(running.await.unwrap(), Err(AgentError::Cancelled)));
    let ended = next_event(&mut events, &session.id, |e| e.kind == "activity.completed").await;
    assert_eq!(ended.data["finish"], "cancelled");
    // When cancel returns, everything is recorded and the session is idle.
    let stored = f.store.session(&session.id).await.unwrap();
    assert_eq!(stored.status, "idle");
    let history = f.store.history(&session.id).await.unwrap();
    assert_eq!(history.iter().map(|m| m.status.as_str()).collect::<Vec<_>>(), ["completed", "aborted"]);
    let text = history[1].parts.iter().find(|p| p.kind == "text").expect("the streamed text was kept").data["text"].as_str().unwrap();
    assert!(text.starts_with("w0 ") && !text.contains("w99"), "the partial answer, and no more: {text}");
    // What was streamed was billed: the cut turn counts, estimated (its usage never came).
    let aborted = &history[1];
    assert!(aborted.tokens.input > 0 && aborted.tokens.output > 0 && aborted.cost > 0.0, "{:?} ${}", aborted.tokens, aborted.cost);
    assert_eq!((stored.tokens, stored.cost), (aborted.tokens, aborted.cost), "the session counts it");

    // The session takes the next prompt; the model sees the interrupted answer.
    let outcome = f.runtime.prompt(&session.id, "start again").await.unwrap();
    assert_eq!(outcome.text, "a fresh start");
    let roles: Vec<String> = messages_of(&request_body(&f.server, 1)).into_iter().map(|(r, _)| r).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
}

/// The pids of processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn cancel_mid_tool_kills_the_command_and_records_the_call_aborted() {
    let f = fixture(
        vec![call(&[("c1", "shell", json!({"command": "sleep 29.5 && sleep 0"}))]), say("unused")],
        "[plugins.shell]\nfilesystem = [{ path = \".\", access = \"read-write\" }]\nprocess = [\"sleep *\"]\n[sandbox]\nunconfined_commands = \"allow\"\n\
         [agents.build]\npermissions = [{ tool = \"shell\", pattern = \"sleep *\", action = \"allow\" }]\n",
        AskMode::DenyAll,
    )
    .await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let mut events = f.store.bus().subscribe();
    let (runtime, id) = (f.runtime.clone(), session.id.clone());
    let running = tokio::spawn(async move { runtime.prompt(&id, "wait a while").await });
    next_event(&mut events, &session.id, |e| e.kind == "tool.state" && e.data["data"]["state"] == "running").await;
    wait_until("the command runs", || !processes_running(&["sleep", "29.5"]).is_empty()).await;

    f.runtime.cancel(&session.id).await.unwrap();
    assert!(matches!(running.await.unwrap(), Err(AgentError::Cancelled)));
    wait_until("the command is gone", || processes_running(&["sleep", "29.5"]).is_empty()).await;
    let history = f.store.history(&session.id).await.unwrap();
    let tool = history.iter().flat_map(|m| &m.parts).find(|p| p.kind == "tool").unwrap();
    assert_eq!(tool.data["state"], "error");
    assert!(tool.data["error"].as_str().unwrap().starts_with("aborted"), "{}", tool.data);
    assert!(tool.data["time"]["end"].is_i64());
    assert_eq!(f.store.session(&session.id).await.unwrap().status, "idle");
    assert_eq!(f.server.received().len(), 1, "no provider turn after the cancel");
}

#[tokio::test]
async fn sessions_beyond_the_limit_wait_queued_and_run_when_a_slot_frees() {
    let f = fixture(
        vec![call(&[("c1", "read", json!({"path": "secret.txt"}))]), say("first done"), say("second done")],
        &format!("[sessions]\nmax_concurrent = 1\n{ASK_FOR_SECRETS}"),
        AskMode::Prompt,
    )
    .await;
    f.ws.file("secret.txt", "s\n");
    let a = f.runtime.create_session(None, "build", None, "a").await.unwrap();
    let b = f.runtime.create_session(None, "build", None, "b").await.unwrap();
    let mut events_a = f.store.bus().subscribe();
    let mut events_b = f.store.bus().subscribe();
    let (runtime, id) = (f.runtime.clone(), a.id.clone());
    let first = tokio::spawn(async move { runtime.prompt(&id, "prompt A").await });
    let asked = next_event(&mut events_a, &a.id, |e| e.kind == "permission.asked").await;
    let (runtime, id) = (f.runtime.clone(), b.id.clone());
    let second = tokio::spawn(async move { runtime.prompt(&id, "prompt B").await });

    next_event(&mut events_b, &b.id, |e| e.kind == "session.status" && e.data["status"] == "queued").await;
    assert_eq!(f.store.session(&b.id).await.unwrap().status, "queued");
    assert_eq!(f.server.received().len(), 1, "B waits while A holds the only slot");

    assert!(f.runtime.broker().reply(asked.data["id"].as_str().unwrap(), Reply::Once));
    assert_eq!(first.await.unwrap().unwrap().text, "first done");
    assert_eq!(second.await.unwrap().unwrap().text, "second done");
    let third = messages_of(&request_body(&f.server, 2));
    assert_eq!(third.last().unwrap().1, "prompt B", "B's turn came after both of A's");
}

#[tokio::test]
async fn an_always_answer_is_kept_with_the_session_for_the_next_process() {
    let f = fixture(
        vec![
            call(&[("c1", "read", json!({"path": "secret.txt"}))]),
            say("ok"),
            call(&[("c2", "read", json!({"path": "secret.txt"}))]),
            say("again"),
        ],
        ASK_FOR_SECRETS,
        AskMode::Prompt,
    )
    .await;
    f.ws.file("secret.txt", "s\n");
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let mut events = f.store.bus().subscribe();
    let (runtime, id) = (f.runtime.clone(), session.id.clone());
    let first = tokio::spawn(async move { runtime.prompt(&id, "read it").await });
    let asked = next_event(&mut events, &session.id, |e| e.kind == "permission.asked").await;
    assert!(f.runtime.broker().reply(asked.data["id"].as_str().unwrap(), Reply::Always));
    first.await.unwrap().unwrap();

    // Another runtime on its own connection, refusing every question: the stored rule
    // allows the call without one.
    let store = SessionStore::open(&f.db).unwrap();
    let other = f.ws.app().await.agent_runtime(store, AskMode::DenyAll).unwrap();
    assert_eq!(other.prompt(&session.id, "read it again").await.unwrap().text, "again");
    let history = f.store.history(&session.id).await.unwrap();
    let states: Vec<&str> =
        history.iter().flat_map(|m| &m.parts).filter(|p| p.kind == "tool").map(|p| p.data["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["completed", "completed"]);
    let asks = f.store.events_after(0, Some(session.id.clone()), 10_000).await.unwrap();
    assert_eq!(asks.iter().filter(|e| e.kind == "permission.asked").count(), 1);
}

#[tokio::test]
async fn inputs_for_unknown_sessions_and_empty_prompts_are_refused_and_nothing_is_stored() {
    let f = fixture(vec![say("unused")], "", AskMode::DenyAll).await;
    let err = f.runtime.submit("ses_missing", "hi", Delivery::Queue).await.unwrap_err();
    assert!(matches!(&err, AgentError::NotFound(id) if id == "ses_missing"), "{err}");
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let err = f.runtime.submit(&session.id, "  \n", Delivery::Steer).await.unwrap_err();
    assert!(err.to_string().contains("prompt is empty"), "{err}");
    let events = f.store.events_after(0, None, 10_000).await.unwrap();
    assert!(events.iter().all(|e| e.kind != "input.admitted"), "{events:?}");
    // Cancelling an idle session is not an error and changes nothing.
    assert!(!f.runtime.cancel(&session.id).await.unwrap().was_running);
    assert!(matches!(f.runtime.cancel("ses_missing").await, Err(AgentError::NotFound(_))));
    assert!(f.server.received().is_empty());
}

#[tokio::test]
async fn recovery_closes_what_a_dead_process_left_and_runs_its_pending_inputs() {
    let f = fixture(vec![say("picked up")], "", AskMode::DenyAll).await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    // What a process on another machine left when it died mid-turn: the session busy
    // under its expired lease, an answer streaming, a tool call running, an input waiting.
    let id = session.id.clone();
    f.store
        .write(move |tx| {
            tx.conn()
                .execute("UPDATE sessions SET status = 'busy', owner = 'elsewhere:42:gone', lease_expires_at = 1 WHERE id = ?1", [&id])?;
            tx.insert_message("msg_dead", &id, MessageRole::Assistant, Some("openai/test-model"), MessageStatus::Running, None)?;
            tx.insert_part("prt_text", &id, "msg_dead", PartKind::Text, &json!({ "text": "half an ans" }))?;
            tx.insert_part(
                "prt_tool",
                &id,
                "msg_dead",
                PartKind::Tool,
                &json!({ "call_id": "c1", "tool": "list", "state": "running", "input": {} }),
            )?;
            tx.admit_input(&id, "inp_left", Delivery::Queue, "are you there?").map(|_| ())
        })
        .await
        .unwrap();
    let mut events = f.store.bus().subscribe();

    let recovered = f.runtime.recover().await.unwrap();
    assert_eq!(recovered, std::slice::from_ref(&session.id));
    next_event(&mut events, &session.id, |e| e.kind == "message.created" && e.data["input_id"] == "inp_left").await;
    next_event(&mut events, &session.id, |e| e.kind == "session.status" && e.data["status"] == "idle").await;

    let history = f.store.history(&session.id).await.unwrap();
    let dead = history.iter().find(|m| m.id == "msg_dead").unwrap();
    assert_eq!(dead.status, "interrupted");
    assert_eq!(dead.parts[0].data["text"], "half an ans", "what was recorded stays");
    assert_eq!(dead.parts[1].data["state"], "error");
    assert!(dead.parts[1].data["error"].as_str().unwrap().starts_with("interrupted"));
    assert_eq!(history.last().unwrap().parts.iter().find(|p| p.kind == "text").unwrap().data["text"], "picked up");
    // The model was told the interrupted call has no result.
    let messages = request_body(&f.server, 0)["messages"].clone();
    let tool = messages.as_array().unwrap().iter().find(|m| m["role"] == "tool").unwrap();
    assert!(tool["content"].as_str().unwrap().starts_with("interrupted"), "{tool}");
    // A second recovery finds nothing to do.
    assert!(f.runtime.recover().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_steer_that_arrives_during_the_last_step_opens_the_next_activity() {
    let read = || call(&[("c", "read", json!({"path": "secret.txt"}))]);
    let f = fixture(vec![read(), read(), say("answer to the steer")], &format!("{ASK_FOR_SECRETS}max_steps = 2\n"), AskMode::Prompt).await;
    f.ws.file("secret.txt", "s\n");
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let mut events = f.store.bus().subscribe();
    let (runtime, id) = (f.runtime.clone(), session.id.clone());
    let first = tokio::spawn(async move { runtime.prompt(&id, "read twice").await });
    let asked = next_event(&mut events, &session.id, |e| e.kind == "permission.asked").await;
    assert!(f.runtime.broker().reply(asked.data["id"].as_str().unwrap(), Reply::Once));
    // The second ask is in the last step: no turn follows it in this activity.
    let asked = next_event(&mut events, &session.id, |e| e.kind == "permission.asked").await;
    let steered = f.runtime.submit(&session.id, "one more thing", Delivery::Steer).await.unwrap();
    assert!(f.runtime.broker().reply(asked.data["id"].as_str().unwrap(), Reply::Once));
    assert_eq!(first.await.unwrap().unwrap().finish, "step-limit");

    next_event(&mut events, &session.id, |e| e.kind == "message.created" && e.data["input_id"] == steered.input_id.as_str()).await;
    next_event(&mut events, &session.id, |e| e.kind == "session.status" && e.data["status"] == "idle").await;
    let third = messages_of(&request_body(&f.server, 2));
    assert_eq!(third.last().unwrap(), &("user".to_string(), "one more thing".to_string()));
    let history = f.store.history(&session.id).await.unwrap();
    assert_eq!(history.last().unwrap().parts.iter().find(|p| p.kind == "text").unwrap().data["text"], "answer to the steer");
}

#[tokio::test]
async fn an_activity_past_the_session_timeout_is_stopped_and_queued_inputs_still_run() {
    let f = fixture(
        vec![slow_text(200, Duration::from_millis(50)), say("the next one")],
        "[sessions]\ntimeout_seconds = 1\n",
        AskMode::DenyAll,
    )
    .await;
    let session = f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let mut events = f.store.bus().subscribe();
    let (runtime, id) = (f.runtime.clone(), session.id.clone());
    let slow = tokio::spawn(async move { runtime.prompt(&id, "talk for ten seconds").await });
    next_event(&mut events, &session.id, |e| e.kind == "part.delta").await;
    let queued = f.runtime.submit(&session.id, "and then this", Delivery::Queue).await.unwrap();

    let err = slow.await.unwrap().unwrap_err();
    assert!(matches!(err, AgentError::TimedOut(1)), "{err}");
    let ended = next_event(&mut events, &session.id, |e| e.kind == "activity.completed").await;
    assert_eq!(ended.data["finish"], "timeout");
    // The queued input was kept and runs next.
    next_event(&mut events, &session.id, |e| e.kind == "message.created" && e.data["input_id"] == queued.input_id.as_str()).await;
    let ended = next_event(&mut events, &session.id, |e| e.kind == "activity.completed").await;
    assert_eq!((ended.data["finish"].as_str(), ended.data["text"].as_str()), (Some("stop"), Some("the next one")));
    let history = f.store.history(&session.id).await.unwrap();
    assert_eq!(history.iter().map(|m| m.status.as_str()).collect::<Vec<_>>(), ["completed", "aborted", "completed", "completed"]);
    assert!(history[1].error.as_deref().unwrap().contains("session timeout of 1 s"), "{:?}", history[1].error);
}
