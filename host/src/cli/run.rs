//! `plugboard run` and `plugboard session ...`: sessions from the terminal.

use crate::store::model::{Finish, MessageStatus, PartKind, SessionStatus, ToolPart, ToolState};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::Value;

use crate::agent::AgentError;
use crate::agent::permission::{AskMode, PermissionBroker, Reply};
use crate::store::SessionStore;

/// Options of `plugboard run`.
pub struct RunOptions {
    /// The prompt.
    pub prompt: String,
    /// `provider/model`.
    pub model: Option<String>,
    /// The agent.
    pub agent: String,
    /// A session to continue.
    pub session: Option<String>,
    /// Allow every permission question.
    pub yes: bool,
    /// Stream the answer's text into a pipe or file too (a terminal always gets it streamed).
    pub stream: bool,
}

/// Runs one prompt, streaming the answer to stdout and tool calls to stderr.
pub async fn run(app: &crate::app::App, store: SessionStore, options: RunOptions) -> anyhow::Result<ExitCode> {
    let interactive = std::io::stdin().is_terminal();
    let mode = if options.yes {
        AskMode::AllowAll
    } else if interactive {
        AskMode::Prompt
    } else {
        AskMode::DenyAll
    };
    let runtime = app.agent_runtime(store.clone(), mode)?;
    let broker = runtime.broker().clone();
    let session = match &options.session {
        Some(id) => {
            let session = store.session(id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            match options.model.as_deref().filter(|m| *m != session.model) {
                Some(model) => {
                    let switched = runtime.set_model(id, model).await?;
                    eprintln!("session {id} switches from {} to {}", session.model, switched.model);
                    switched
                }
                None => session,
            }
        }
        None => {
            let title: String = options.prompt.chars().take(60).collect();
            runtime.create_session(None, &options.agent, options.model.as_deref(), &title).await?
        }
    };
    let terminal = Arc::new(Terminal::default());
    let streaming = options.stream || std::io::stdout().is_terminal();
    let printer = tokio::spawn(print_events(store.clone(), session.id.clone(), broker.clone(), terminal.clone(), streaming));
    let spinner = std::io::stderr().is_terminal().then(|| tokio::spawn(spin(terminal.clone())));
    // Ctrl-C cancels the activity: what was streamed stays, recorded as aborted.
    let result = tokio::select! {
        result = runtime.prompt(&session.id, &options.prompt) => result,
        _ = tokio::signal::ctrl_c() => {
            runtime.cancel(&session.id).await.map(|_| ()).err().map_or(Err(AgentError::Cancelled), Err)
        }
    };
    // Let the printer drain what was published.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    printer.abort();
    if let Some(spinner) = spinner {
        spinner.abort();
    }
    terminal.output(|| {});
    println!();
    let session = store.session(&session.id).await?;
    match result {
        Ok(outcome) => {
            eprintln!(
                "\nsession {} · {} step{} · {} in / {} out tokens · ${:.4}{}",
                session.id,
                outcome.steps,
                if outcome.steps == 1 { "" } else { "s" },
                outcome.tokens.input + outcome.tokens.cache_read,
                outcome.tokens.output,
                outcome.cost,
                if outcome.finish == Finish::Stop { String::new() } else { format!(" · ended: {}", outcome.finish) }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(AgentError::Cancelled) => {
            eprintln!("\ncancelled · session {}", session.id);
            Ok(ExitCode::from(130))
        }
        Err(e) => {
            eprintln!("\nerror: {e}\nsession {}", session.id);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What the terminal shows, shared by the event printer and the spinner.
#[derive(Default)]
struct Terminal {
    /// Milliseconds since the epoch of the last output.
    last_output: std::sync::atomic::AtomicI64,
    /// Whether the cursor is at the start of a line (the spinner may draw only there).
    mid_line: std::sync::atomic::AtomicBool,
    /// Whether the spinner is on screen.
    spinning: std::sync::atomic::AtomicBool,
}

impl Terminal {
    /// Clears the spinner, prints, and notes where the cursor is.
    fn output(&self, print: impl FnOnce()) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.spinning.swap(false, SeqCst) {
            eprint!("\r\x1b[2K");
        }
        print();
        self.last_output.store(crate::store::events::now_ms(), SeqCst);
    }
}

/// Shows a spinner on stderr while the model thinks (nothing printed for a moment).
async fn spin(terminal: Arc<Terminal>) {
    use std::sync::atomic::Ordering::SeqCst;
    const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
    let mut frame = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let quiet = crate::store::events::now_ms() - terminal.last_output.load(SeqCst) > 250;
        if quiet && !terminal.mid_line.load(SeqCst) {
            eprint!("\r{} thinking…", FRAMES[frame % FRAMES.len()]);
            terminal.spinning.store(true, SeqCst);
            frame += 1;
        }
    }
}

/// Prints a session's events as they happen: text to stdout, the rest to stderr; answers
/// permission questions from the terminal. `streaming`, the text goes out as it arrives;
/// otherwise (a pipe or a file, without `--stream`) a message's text is printed once the
/// message ended, and not at all when its attempt failed, so the text of a failed attempt
/// that was retried never reaches a script.
async fn print_events(store: SessionStore, session: String, broker: Arc<PermissionBroker>, terminal: Arc<Terminal>, streaming: bool) {
    let mut events = store.bus().subscribe_session(&session);
    // Text parts, each with its message; and the text held back per message.
    let mut text_parts = std::collections::HashMap::new();
    let mut held: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let print_text = |text: &str| {
        terminal.output(|| {
            print!("{text}");
            let _ = std::io::stdout().flush();
        });
        if !text.is_empty() {
            terminal.mid_line.store(!text.ends_with('\n'), std::sync::atomic::Ordering::SeqCst);
        }
    };
    while let Ok(event) = events.recv().await {
        let d = &event.data;
        match event.kind.as_str() {
            "part.created" if d["kind"] == PartKind::Text.as_str() => {
                text_parts.insert(d["part_id"].as_str().unwrap_or("").to_string(), d["message_id"].as_str().unwrap_or("").to_string());
            }
            "part.delta" => {
                let Some(message) = text_parts.get(d["part_id"].as_str().unwrap_or("")) else { continue };
                let delta = d["delta"].as_str().unwrap_or("");
                if streaming {
                    print_text(delta);
                } else {
                    held.entry(message.clone()).or_default().push_str(delta);
                }
            }
            "message.completed" => {
                let text = held.remove(d["message_id"].as_str().unwrap_or("")).unwrap_or_default();
                if d["status"] != MessageStatus::Error.as_str() {
                    print_text(&text);
                }
            }
            "tool.state" => {
                let Some(t) = ToolPart::from_value(&d["data"]) else { continue };
                let tool = &t.tool;
                let line = match t.state {
                    ToolState::Running => format!("\n→ {tool} {}", compact(&t.input)),
                    ToolState::Completed => format!("✓ {tool}: {}", t.title.as_deref().unwrap_or("done")),
                    ToolState::Error => format!("✗ {tool}: {}", t.error.as_deref().unwrap_or("failed")),
                    ToolState::Pending => continue,
                };
                terminal.output(|| eprintln!("{line}"));
                terminal.mid_line.store(false, std::sync::atomic::Ordering::SeqCst);
            }
            "session.status" if d["status"] == SessionStatus::Retry.as_str() => {
                let detail = &d["detail"];
                let line = format!(
                    "… retrying in {} ms (attempt {}): {}",
                    detail["delay_ms"],
                    detail["attempt"],
                    detail["error"].as_str().unwrap_or("")
                );
                terminal.output(|| eprintln!("{line}"));
                terminal.mid_line.store(false, std::sync::atomic::Ordering::SeqCst);
            }
            "permission.asked" if broker.mode() == AskMode::Prompt => {
                let id = d["id"].as_str().unwrap_or("").to_string();
                let question = format!(
                    "Allow {} `{}`? [o]nce, [a]lways, [r]eject: ",
                    d["tool"].as_str().unwrap_or("?"),
                    d["subject"].as_str().unwrap_or("")
                );
                terminal.output(|| {});
                terminal.mid_line.store(true, std::sync::atomic::Ordering::SeqCst);
                let answer = tokio::task::spawn_blocking(move || {
                    eprint!("\n{question}");
                    let mut line = String::new();
                    let _ = std::io::stdin().read_line(&mut line);
                    line
                })
                .await
                .unwrap_or_default();
                let reply = match answer.trim().to_ascii_lowercase().as_str() {
                    "o" | "once" | "y" | "yes" => Reply::Once,
                    "a" | "always" => Reply::Always,
                    _ => Reply::Reject(None),
                };
                broker.reply(&id, reply);
                terminal.mid_line.store(false, std::sync::atomic::Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

fn compact(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 120 { format!("{}…", text.chars().take(120).collect::<String>()) } else { text }
}

/// `plugboard session list`.
pub async fn list(store: &SessionStore, page: &ListOptions) -> anyhow::Result<ExitCode> {
    let workspace = match &page.workspace {
        Some(dir) => Some(crate::runtime::workspace_dir(Some(dir))?.display().to_string()),
        None => None,
    };
    let mut sessions = store.list_sessions_in(workspace, page.limit + 1, page.offset).await?;
    let more = sessions.len() > page.limit;
    sessions.truncate(page.limit);
    if page.json {
        println!("{}", serde_json::to_string_pretty(&sessions)?);
        return Ok(ExitCode::SUCCESS);
    }
    if sessions.is_empty() {
        eprintln!("no sessions");
    }
    for s in sessions {
        // Minutes are enough to tell sessions apart: `2026-12-04 03:28`.
        let updated = crate::server::error::rfc3339(s.updated_at).replacen('T', " ", 1);
        println!(
            "{}  {}  {:<6} {:<8} {:<28} ${:<8.4} {}  {}",
            s.id,
            &updated[..16.min(updated.len())],
            s.status,
            s.agent,
            s.model,
            s.cost,
            s.workspace,
            s.title
        );
    }
    if more {
        eprintln!("more: --offset {}", page.offset + page.limit);
    }
    Ok(ExitCode::SUCCESS)
}

/// `plugboard session list`'s filter and page.
pub struct ListOptions {
    /// Only this workspace's sessions.
    pub workspace: Option<std::path::PathBuf>,
    /// At most this many.
    pub limit: usize,
    /// Skip this many.
    pub offset: usize,
    /// Print JSON.
    pub json: bool,
}

/// `plugboard session compact|delete|import|fork`: changes that run through the agent
/// runtime (with the plugins loaded), each printing what it did.
pub async fn session_change(app: &crate::app::App, store: SessionStore, command: crate::cli::SessionCommand) -> anyhow::Result<ExitCode> {
    use crate::cli::SessionCommand;
    let runtime = app.agent_runtime(store, AskMode::DenyAll)?;
    let (json, done): (bool, Result<(Value, String), AgentError>) = match command {
        SessionCommand::Compact { id, json } => (
            json,
            runtime.compact(&id).await.map(|c| {
                let text = format!(
                    "compacted session {id}: about {} → {} tokens, through message {}; summary by {} ({} in / {} out tokens, ${:.4})",
                    c.tokens_before, c.tokens_after, c.through, c.model, c.tokens.input, c.tokens.output, c.cost
                );
                (serde_json::to_value(&c).unwrap_or_default(), text)
            }),
        ),
        SessionCommand::Delete { id, json } => (
            json,
            runtime.delete(&id).await.map(|r| {
                let text = format!(
                    "deleted session {id}: {} messages, {} parts, {} events, {} inputs, {} rules",
                    r.messages, r.parts, r.events, r.inputs, r.rules
                );
                (serde_json::json!({ "session_id": id, "removed": r }), text)
            }),
        ),
        SessionCommand::Import { file, json } => {
            let text = if file.as_os_str() == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(&file) };
            let text = text.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let doc = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{} is not a session export: {e}", file.display()))?;
            (json, runtime.import(doc).await.map(|s| (serde_json::to_value(&s).unwrap_or_default(), format!("imported session {}", s.id))))
        }
        SessionCommand::Revert { id, to, json } => (
            json,
            runtime.revert(&id, &to).await.map(|r| {
                let mut text = format!("reverted session {id} to {to}: {} later messages undone", r.messages.len());
                for file in &r.files {
                    text.push_str(&format!("\n  {} {}", file.action, file.path));
                }
                (serde_json::to_value(&r).unwrap_or_default(), text)
            }),
        ),
        SessionCommand::Fork { id, message, new_id, json } => (
            json,
            runtime
                .fork(&id, message, new_id, None)
                .await
                .map(|s| (serde_json::to_value(&s).unwrap_or_default(), format!("forked {id} into {}", s.id))),
        ),
        other => unreachable!("{other:?} does not change a session"),
    };
    match done {
        Ok((value, text)) => {
            println!("{}", if json { serde_json::to_string_pretty(&value)? } else { text });
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `plugboard session export ID`: the session as one JSON document, on stdout.
pub async fn export(store: &SessionStore, id: &str) -> anyhow::Result<ExitCode> {
    match store.export_session(id).await {
        Ok(doc) => {
            println!("{}", serde_json::to_string(&doc)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `plugboard session show ID`.
pub async fn show(store: &SessionStore, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let session = match store.session(id).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let history = store.history(id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "session": session, "messages": history }))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "session {} · agent {} · {} · {} in / {} out tokens · ${:.4}",
        session.id,
        session.agent,
        session.model,
        session.tokens.input + session.tokens.cache_read,
        session.tokens.output,
        session.cost
    );
    for message in history {
        let status = if message.status == MessageStatus::Completed { String::new() } else { format!(" [{}]", message.status) };
        let reverted = if message.reverted_at.is_some() { " [reverted]" } else { "" };
        println!("\n── {}{status}{reverted} · {}", message.role, message.id);
        for part in &message.parts {
            let d = &part.data;
            match part.kind {
                PartKind::Text => println!("{}", d["text"].as_str().unwrap_or("")),
                PartKind::Reasoning => println!("(thinking) {}", d["text"].as_str().unwrap_or("")),
                PartKind::Tool => {
                    let Some(t) = ToolPart::from_value(d) else { continue };
                    let outcome = match t.state {
                        ToolState::Completed => format!("✓ {}", t.title.as_deref().unwrap_or("")),
                        ToolState::Error => format!("✗ {}", t.error.as_deref().unwrap_or("")),
                        other => other.to_string(),
                    };
                    println!("[{}] {} {}", t.tool, compact(&t.input), outcome);
                }
                PartKind::Compaction => println!(
                    "(compaction, {}: about {} → {} tokens; the model sees this summary in place of what came before, through {})\n{}",
                    d["reason"].as_str().unwrap_or(""),
                    d["tokens_before"],
                    d["tokens_after"],
                    d["through"].as_str().unwrap_or(""),
                    d["summary"].as_str().unwrap_or("")
                ),
                PartKind::Patch => {
                    for file in d["files"].as_array().into_iter().flatten() {
                        println!("(changed) {} {}", file["change"].as_str().unwrap_or(""), file["path"].as_str().unwrap_or(""));
                        print!("{}", file["diff"].as_str().unwrap_or(""));
                    }
                }
                PartKind::StepStart | PartKind::StepFinish => {}
            }
        }
        if let Some(error) = &message.error {
            println!("error: {error}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
