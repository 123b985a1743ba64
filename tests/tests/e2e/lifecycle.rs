//! The session life cycle over HTTP: delete with purge, export and import into another data
//! dir (then resume there), and fork from a message.

use plugboard::agent::permission::AskMode;
use plugboard::server::settings::ServerConfig;
use serde_json::{Value, json};

use crate::agent::{call, fixture, request_body, say};
use crate::http::{Api, serve_fixture};

async fn served(script: Vec<plugboard_tests::Scripted>) -> Api {
    serve_fixture(fixture(script, "", AskMode::DenyAll).await, None, ServerConfig::default()).await
}

/// The texts of the messages a request sent, by role.
fn sent(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|m| (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[tokio::test]
async fn a_purge_deletes_the_session_with_its_messages_and_events_and_says_what_it_removed() {
    let api = served(vec![say("hello")]).await;
    let session = api.f.runtime.create_session(None, "build", None, "t").await.unwrap();
    let other = api.f.runtime.create_session(None, "build", None, "kept").await.unwrap();
    api.f.runtime.prompt(&session.id, "hi").await.unwrap();
    let before = api.f.store.last_seq().await.unwrap();

    let (status, body) = api.delete(&format!("/sessions/{}?purge=true", session.id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session_id"], session.id.as_str());
    assert_eq!((body["removed"]["messages"].as_u64(), body["removed"]["parts"].as_u64()), (Some(2), Some(4)), "{body}");
    assert!(body["removed"]["events"].as_u64().unwrap() > 5, "{body}");
    let (status, _) = api.get(&format!("/sessions/{}", session.id)).await;
    assert_eq!(status, 404);
    assert!(api.f.store.history(&session.id).await.unwrap().is_empty());
    // Its only event left is the tombstone, numbered after everything before it.
    let events = api.f.store.events_after(0, Some(session.id.clone()), 1_000).await.unwrap();
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["session.deleted"]);
    assert!(events[0].seq > before);
    // Other sessions are untouched, and a second delete finds nothing.
    assert_eq!(api.f.store.session(&other.id).await.unwrap().title, "kept");
    let (status, _) = api.delete(&format!("/sessions/{}?purge=true", session.id)).await;
    assert_eq!(status, 404);
    let (status, body) = api.delete(&format!("/sessions/{}?purge=yes", other.id)).await;
    assert_eq!(status, 400, "a bad flag is refused, not read as false: {body}");
}

#[tokio::test]
async fn an_export_imported_into_another_data_dir_reproduces_the_session_and_is_resumed_there() {
    let a = served(vec![call(&[("c1", "read", json!({"path": "a.txt"}))]), say("It says hi.")]).await;
    a.f.ws.file("a.txt", "hi\n");
    let session = a.f.runtime.create_session(None, "build", None, "travels").await.unwrap();
    a.f.runtime.prompt(&session.id, "What does a.txt say?").await.unwrap();
    let (status, doc) = a.get(&format!("/sessions/{}/export", session.id)).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["format"], "plugboard.session.v1");

    let b = served(vec![say("Still hi.")]).await;
    let (status, body) = b.post("/sessions/import", doc.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["id"].as_str(), body["status"].as_str()), (Some(session.id.as_str()), Some("idle")));
    // The same messages, parts, usage and events (with `session.imported` after them).
    assert_eq!(b.f.store.history(&session.id).await.unwrap(), a.f.store.history(&session.id).await.unwrap());
    let (x, y) = (a.f.store.session(&session.id).await.unwrap(), b.f.store.session(&session.id).await.unwrap());
    assert_eq!((x.tokens, x.cost, x.created_at, x.title), (y.tokens, y.cost, y.created_at, y.title));
    let kinds = |events: Vec<plugboard::store::events::Event>| events.into_iter().map(|e| (e.session_seq, e.kind)).collect::<Vec<_>>();
    let (mut from, to) = (
        kinds(a.f.store.events_after(0, Some(session.id.clone()), 10_000).await.unwrap()),
        kinds(b.f.store.events_after(0, Some(session.id.clone()), 10_000).await.unwrap()),
    );
    from.push((from.last().unwrap().0 + 1, "session.imported".into()));
    assert_eq!(from, to);

    // The other process resumes it: the model sees the whole conversation.
    let outcome = b.f.runtime.prompt(&session.id, "And now?").await.unwrap();
    assert_eq!(outcome.text, "Still hi.");
    let resumed = request_body(&b.f.server, 0);
    let messages = resumed["messages"].as_array().unwrap();
    assert!(messages.iter().any(|m| m["role"] == "tool" && m["content"].as_str().unwrap().contains("hi")), "{resumed}");
    assert_eq!(sent(&resumed).last().unwrap(), &("user".to_string(), "And now?".to_string()));

    // Importing it again, or a damaged export, is refused with the reason.
    let (status, body) = b.post("/sessions/import", doc.clone()).await;
    assert_eq!(status, 409, "{body}");
    let mut damaged = doc.clone();
    damaged["session"]["id"] = json!("copy");
    damaged["parts"][0]["message_id"] = json!("msg_missing");
    let (status, body) = b.post("/sessions/import", damaged).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("which is not in the export"), "{body}");
    let mut wrong = doc;
    wrong["format"] = json!("something.else");
    let (status, body) = b.post("/sessions/import", wrong).await;
    assert!(status == 400 && body["error"].as_str().unwrap().contains("plugboard.session.v1"), "{body}");
}

#[tokio::test]
async fn a_fork_from_a_message_copies_the_conversation_up_to_it_and_goes_its_own_way() {
    let api = served(vec![say("one"), say("two"), say("another two")]).await;
    let session = api.f.runtime.create_session(None, "build", None, "origin").await.unwrap();
    api.f.runtime.prompt(&session.id, "first").await.unwrap();
    api.f.runtime.prompt(&session.id, "second").await.unwrap();
    let history = api.f.store.history(&session.id).await.unwrap();
    let answer_one = &history[1].id;

    let (status, body) =
        api.post(&format!("/sessions/{}/fork", session.id), json!({ "message_id": answer_one, "session_id": "branch" })).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["id"].as_str(), body["title"].as_str(), body["cost"].as_f64()), (Some("branch"), Some("origin (fork)"), Some(0.0)));
    let forked = api.f.store.history("branch").await.unwrap();
    assert_eq!(forked.len(), 2);
    assert!(forked.iter().zip(&history).all(|(f, o)| f.id != o.id && f.parts.len() == o.parts.len() && f.role == o.role));
    let events = api.f.store.events_after(0, Some("branch".into()), 100).await.unwrap();
    assert_eq!(events[0].data["forked_from"], json!({ "session_id": session.id, "message_id": answer_one, "messages": 2 }));

    api.f.runtime.prompt("branch", "second, differently").await.unwrap();
    let texts: Vec<String> = sent(&request_body(&api.f.server, 2)).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["first", "one", "second, differently"]);
    assert_eq!(api.f.store.history(&session.id).await.unwrap().len(), 4, "the original is untouched");

    let (status, body) = api.post(&format!("/sessions/{}/fork", session.id), json!({ "message_id": "msg_nowhere" })).await;
    assert!(status == 400 && body["error"].as_str().unwrap().contains("has no message `msg_nowhere`"), "{body}");
    let (status, _) = api.post(&format!("/sessions/{}/fork", session.id), json!({ "session_id": "branch" })).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn a_revert_puts_back_what_edit_and_a_command_changed_and_leaves_other_files_alone() {
    let config = "[plugins.shell]\nfilesystem = [{ path = \".\", access = \"read-write\" }]\nprocess = [\"cp *\", \"rm *\"]\n\
                  [plugins.anthropic]\napi_key = \"sk-ant-test-secret-0001\"\n\
                  [sandbox]\nunconfined_commands = \"allow\"\n\
                  [agents.build]\npermissions = [{ tool = \"shell\", pattern = \"*\", action = \"allow\" }]\n";
    let script = vec![
        say("hello"),
        call(&[("c1", "edit", json!({"path": "notes.txt", "old_string": "draft", "new_string": "final"}))]),
        call(&[("c2", "shell", json!({"command": "cp notes.txt copy.txt && cp key.env leak.txt && rm old.txt"}))]),
        say("done"),
        say("fresh"),
    ];
    let api = serve_fixture(fixture(script, config, AskMode::DenyAll).await, None, ServerConfig::default()).await;
    let ws = &api.f.ws;
    ws.file("notes.txt", "status: draft\n")
        .file("old.txt", "old\n")
        .file("other.txt", "mine\n")
        .file("key.env", "KEY=sk-ant-test-secret-0001\n");
    let session = api.f.runtime.create_session(None, "build", None, "t").await.unwrap();
    api.f.runtime.prompt(&session.id, "hi").await.unwrap();
    api.f.runtime.prompt(&session.id, "tidy up").await.unwrap();
    assert_eq!(std::fs::read_to_string(ws.dir.join("notes.txt")).unwrap(), "status: final\n");
    assert!(ws.dir.join("copy.txt").exists() && !ws.dir.join("old.txt").exists());
    ws.file("other.txt", "mine, edited by me\n");

    // Each turn that changed files records them, with diffs.
    let history = api.f.store.history(&session.id).await.unwrap();
    let patches: Vec<&Value> = history.iter().flat_map(|m| &m.parts).filter(|p| p.kind == "patch").map(|p| &p.data).collect();
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert_eq!(patches[0]["files"][0]["path"], "notes.txt");
    assert!(patches[0]["files"][0]["diff"].as_str().unwrap().contains("-status: draft\n+status: final\n"), "{}", patches[0]);
    let second: Vec<(&str, &str)> =
        patches[1]["files"].as_array().unwrap().iter().map(|f| (f["path"].as_str().unwrap(), f["change"].as_str().unwrap())).collect();
    assert_eq!(second, [("copy.txt", "added"), ("leak.txt", "added"), ("old.txt", "deleted")]);
    let leak = patches[1]["files"][1]["diff"].as_str().unwrap();
    assert!(leak.contains("+KEY=[redacted]") && !leak.contains("sk-ant-test"), "a configured secret is masked in diffs: {leak}");

    let hello = history.iter().find(|m| m.parts.iter().any(|p| p.data["text"] == "hello")).unwrap().id.clone();
    let (status, body) = api.post(&format!("/sessions/{}/revert", session.id), json!({ "message_id": hello })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"].as_array().unwrap().len(), 4, "the prompt and its three turns: {body}");
    assert_eq!(
        body["files"],
        json!([
            { "path": "copy.txt", "action": "removed" },
            { "path": "leak.txt", "action": "removed" },
            { "path": "notes.txt", "action": "restored" },
            { "path": "old.txt", "action": "restored" }
        ])
    );
    assert_eq!(std::fs::read_to_string(ws.dir.join("notes.txt")).unwrap(), "status: draft\n");
    assert_eq!(std::fs::read_to_string(ws.dir.join("old.txt")).unwrap(), "old\n");
    assert!(!ws.dir.join("copy.txt").exists());
    assert_eq!(std::fs::read_to_string(ws.dir.join("other.txt")).unwrap(), "mine, edited by me\n", "left alone");

    // The reverted turns stay in the history, marked, and the model no longer sees them.
    let history = api.f.store.history(&session.id).await.unwrap();
    assert_eq!(history.iter().filter(|m| m.reverted_at.is_some()).count(), 4);
    let events = api.f.store.events_after(0, Some(session.id.clone()), 10_000).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "session.reverted" && e.data["to"] == hello.as_str()));
    api.f.runtime.prompt(&session.id, "again").await.unwrap();
    let texts: Vec<String> = sent(&request_body(&api.f.server, 4)).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["hi", "hello", "again"]);
    let (status, body) = api.post(&format!("/sessions/{}/revert", session.id), json!({ "message_id": "msg_nowhere" })).await;
    assert!(status == 400 && body["error"].as_str().unwrap().contains("no message `msg_nowhere`"), "{body}");
}
