//! The agent loop: a prompt runs provider turns — stream the answer, record parts as they
//! arrive, run the turn's tool calls (in parallel) under the permission rules, feed the
//! results back — until the model stops or the step limit is reached.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::Agent;
use super::permission::{self, Action, AskMode, PermissionBroker, Reply};
use crate::events::now_ms;
use crate::runtime::provider::{
    CompletionError, CompletionRequest, ContentPart, FinishReason, Message, Role, StreamEvent, ToolCall, ToolResult, ToolSpec,
};
use crate::runtime::{CallContext, PluginHost};
use crate::store::sessions::{MessageRecord, SessionRecord, Tokens};
use crate::store::{SessionStore, StoreError};

/// Retries of a retryable provider error within one step.
const MAX_RETRIES: u32 = 4;
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Identical consecutive tool calls that trigger the doom-loop guard.
const DOOM_LOOP_CALLS: usize = 3;

/// Why an activity could not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No session with this id.
    #[error("no session `{0}`")]
    NotFound(String),
    /// No agent with this name.
    #[error("no agent `{name}` (available: {})", available.join(", "))]
    UnknownAgent {
        /// The name asked for.
        name: String,
        /// The agents that exist.
        available: Vec<String>,
    },
    /// No model was given and none is configured.
    #[error("no model: pass --model provider/model, or set `model` in [agents.<name>] or `default_model` in plugboard.toml (available: {})", available.join(", "))]
    NoModel {
        /// The models that exist.
        available: Vec<String>,
    },
    /// The session is running an activity.
    #[error("session `{0}` is busy")]
    Busy(String),
    /// The provider failed (after retries, when retryable).
    #[error(transparent)]
    Provider(#[from] CompletionError),
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => AgentError::NotFound(id),
            other => AgentError::Store(other),
        }
    }
}

/// How an activity ended.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The session.
    pub session_id: String,
    /// The final assistant text.
    pub text: String,
    /// Provider turns taken.
    pub steps: u32,
    /// Why it ended: `stop`, `length`, `content-filter`, `step-limit`.
    pub finish: String,
    /// Tokens used by this activity.
    pub tokens: Tokens,
    /// Cost of this activity, in US dollars.
    pub cost: f64,
}

/// Runs sessions: the plugins, the store, the permission broker and the agents.
pub struct AgentRuntime {
    host: Arc<PluginHost>,
    store: SessionStore,
    broker: Arc<PermissionBroker>,
    agents: BTreeMap<String, Agent>,
    default_model: Option<String>,
    running: Mutex<HashMap<String, ()>>,
}

/// The result of one provider turn.
struct Turn {
    message_id: String,
    text: String,
    calls: Vec<ToolCall>,
    tokens: Tokens,
    finish: Option<FinishReason>,
}

/// A step's failure, after its message was closed.
struct StepFailure {
    error: CompletionError,
    retry: bool,
}

impl AgentRuntime {
    /// A runtime over loaded plugins and an open store.
    pub fn new(
        host: Arc<PluginHost>,
        store: SessionStore,
        broker: Arc<PermissionBroker>,
        agents: BTreeMap<String, Agent>,
        default_model: Option<String>,
    ) -> Self {
        AgentRuntime { host, store, broker, agents, default_model, running: Mutex::new(HashMap::new()) }
    }

    /// The store.
    pub fn store(&self) -> &SessionStore {
        &self.store
    }

    /// The permission broker.
    pub fn broker(&self) -> &Arc<PermissionBroker> {
        &self.broker
    }

    /// Creates a session for `agent` with `model` (default: the agent's, then the
    /// configured default, then the only model there is).
    pub async fn create_session(
        &self,
        id: Option<String>,
        agent: &str,
        model: Option<&str>,
        title: &str,
    ) -> Result<SessionRecord, AgentError> {
        let profile = self.agent(agent)?;
        let model = match model.map(str::to_string).or_else(|| profile.model.clone()).or_else(|| self.default_model.clone()) {
            Some(m) => m,
            None => {
                let models: Vec<String> = self.host.models().map(|(r, _, _)| r).collect();
                match models.as_slice() {
                    [only] => only.clone(),
                    _ => return Err(AgentError::NoModel { available: models }),
                }
            }
        };
        if !self.host.models().any(|(r, _, _)| r == model) {
            return Err(CompletionError::UnknownModel { model, available: self.host.models().map(|(r, _, _)| r).collect() }.into());
        }
        let workspace = self.host.workspace().display().to_string();
        Ok(self.store.create_session(id, agent, &model, &workspace, title).await?)
    }

    fn agent(&self, name: &str) -> Result<&Agent, AgentError> {
        self.agents
            .get(name)
            .ok_or_else(|| AgentError::UnknownAgent { name: name.into(), available: self.agents.keys().cloned().collect() })
    }

    /// Runs one prompt in session `id` to its end.
    pub async fn prompt(&self, session_id: &str, text: &str) -> Result<Outcome, AgentError> {
        let session = self.store.session(session_id).await?;
        let agent = self.agent(&session.agent)?.clone();
        {
            let mut running = self.running.lock().expect("not poisoned");
            if running.contains_key(session_id) {
                return Err(AgentError::Busy(session_id.into()));
            }
            running.insert(session_id.into(), ());
        }
        let result = self.run_activity(&session, &agent, text).await;
        self.running.lock().expect("not poisoned").remove(session_id);
        let _ = self.store.set_status(session_id, "idle", json!({})).await;
        if let Err(e) = &result {
            let _ = self.store.session_error(session_id, &e.to_string()).await;
        }
        result
    }

    async fn run_activity(&self, session: &SessionRecord, agent: &Agent, text: &str) -> Result<Outcome, AgentError> {
        let id = session.id.as_str();
        self.store.set_status(id, "busy", json!({})).await?;
        let user = self.store.add_message(id, "user", None, "completed").await?;
        self.store.add_part(id, &user, "text", json!({ "text": text })).await?;
        self.store.finish_message(id, &user, "completed", Tokens::default(), 0.0, None).await?;

        let mut outcome = Outcome {
            session_id: id.into(),
            text: String::new(),
            steps: 0,
            finish: "step-limit".into(),
            tokens: Tokens::default(),
            cost: 0.0,
        };
        let mut recent_calls: Vec<(String, String)> = Vec::new();
        for step in 1..=agent.max_steps {
            outcome.steps = step;
            let last_step = step == agent.max_steps;
            let turn = self.step_with_retries(session, agent, last_step).await?;
            add_tokens(&mut outcome.tokens, turn.tokens);
            outcome.cost += self.cost(&session.model, turn.tokens);
            outcome.text = turn.text.clone();
            if turn.calls.is_empty() {
                outcome.finish = match turn.finish {
                    Some(FinishReason::Length) => "length",
                    Some(FinishReason::ContentFilter) => "content-filter",
                    _ => "stop",
                }
                .into();
                break;
            }
            self.run_tool_calls(session, agent, &turn, &mut recent_calls).await?;
        }
        Ok(outcome)
    }

    async fn step_with_retries(&self, session: &SessionRecord, agent: &Agent, last_step: bool) -> Result<Turn, AgentError> {
        let mut attempt = 0;
        loop {
            match self.step(session, agent, last_step).await? {
                Ok(turn) => return Ok(turn),
                Err(StepFailure { error, retry }) if retry && attempt < MAX_RETRIES => {
                    attempt += 1;
                    let requested = match &error {
                        CompletionError::Api { retry_after_ms: Some(ms), .. } => Some(Duration::from_millis(*ms)),
                        _ => None,
                    };
                    let delay = requested.unwrap_or(Duration::from_millis(500 * 2u64.pow(attempt - 1))).min(MAX_BACKOFF);
                    self.store
                        .set_status(
                            &session.id,
                            "retry",
                            json!({ "attempt": attempt, "delay_ms": delay.as_millis() as u64, "error": error.to_string() }),
                        )
                        .await?;
                    tokio::time::sleep(delay).await;
                    self.store.set_status(&session.id, "busy", json!({})).await?;
                }
                Err(StepFailure { error, .. }) => return Err(error.into()),
            }
        }
    }

    /// One provider turn: a new assistant message whose parts are recorded as they stream.
    async fn step(&self, session: &SessionRecord, agent: &Agent, last_step: bool) -> Result<Result<Turn, StepFailure>, AgentError> {
        let id = session.id.as_str();
        let history = self.store.history(id).await?;
        let rules: Vec<_> = agent.rules.iter().cloned().chain(self.broker.session_rules(id)).collect();
        let tools: Vec<ToolSpec> = if last_step {
            Vec::new()
        } else {
            self.host
                .tools()
                .filter(|(t, _)| !permission::denied_outright(&rules, &t.name))
                .map(|(t, _)| ToolSpec {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters_schema: t.parameters.to_string(),
                })
                .collect()
        };
        let mut system = agent.system_prompt.clone();
        if last_step {
            system.push_str("\n\nThis is the last step: answer now, without calling tools.");
        }
        let request = CompletionRequest {
            model: String::new(),
            system: Some(system),
            messages: provider_messages(&history),
            tools,
            temperature: None,
            max_output_tokens: None,
            options: None,
        };
        let message = self.store.add_message(id, "assistant", Some(&session.model), "running").await?;
        self.store.add_part(id, &message, "step-start", json!({})).await?;
        let mut turn =
            Turn { message_id: message.clone(), text: String::new(), calls: Vec::new(), tokens: Tokens::default(), finish: None };
        let failure = self.stream(session, &message, request, &mut turn).await?.err();
        let cost = self.cost(&session.model, turn.tokens);
        if let Some(error) = failure {
            let retry = error.is_retryable();
            self.store.finish_message(id, &message, "error", turn.tokens, cost, Some(error.to_string())).await?;
            return Ok(Err(StepFailure { error, retry }));
        }
        let finish = match turn.finish {
            Some(FinishReason::ToolCalls) => "tool-calls",
            Some(FinishReason::Length) => "length",
            Some(FinishReason::ContentFilter) => "content-filter",
            Some(FinishReason::Other) => "other",
            Some(FinishReason::Stop) | None => "stop",
        };
        self.store.add_part(id, &message, "step-finish", json!({ "finish": finish, "tokens": turn.tokens, "cost": cost })).await?;
        self.store.finish_message(id, &message, "completed", turn.tokens, cost, None).await?;
        Ok(Ok(turn))
    }

    /// Streams one completion into `message`, recording parts as they arrive.
    async fn stream(
        &self,
        session: &SessionRecord,
        message: &str,
        request: CompletionRequest,
        turn: &mut Turn,
    ) -> Result<Result<(), CompletionError>, AgentError> {
        let id = session.id.as_str();
        let mut stream = match self.host.complete(&session.model, request).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let mut text_part: Option<String> = None;
        let mut reasoning_part: Option<(String, String, Option<String>)> = None;
        let mut calls: BTreeMap<u32, ToolCall> = BTreeMap::new();
        loop {
            let event = match stream.next().await {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => return Ok(Err(e)),
            };
            match event {
                StreamEvent::TextDelta(delta) => {
                    let part = match &text_part {
                        Some(p) => p.clone(),
                        None => {
                            let p = self.store.add_part(id, message, "text", json!({ "text": "" })).await?;
                            text_part = Some(p.clone());
                            p
                        }
                    };
                    turn.text.push_str(&delta);
                    self.store.append_text(id, &part, &delta).await?;
                }
                StreamEvent::ReasoningDelta(delta) => {
                    if reasoning_part.is_none() {
                        let p = self.store.add_part(id, message, "reasoning", json!({ "text": "" })).await?;
                        reasoning_part = Some((p, String::new(), None));
                    }
                    let (part, text, _) = reasoning_part.as_mut().expect("set above");
                    text.push_str(&delta);
                    self.store.append_text(id, part, &delta).await?;
                }
                StreamEvent::ReasoningSignature(signature) => {
                    if let Some((part, text, sig)) = reasoning_part.as_mut() {
                        *sig = Some(signature.clone());
                        self.store.update_part(id, part, json!({ "text": text, "signature": signature }), "part.updated").await?;
                    }
                }
                StreamEvent::ToolCallStart(start) => {
                    calls.insert(start.index, ToolCall { id: start.id, name: start.name, arguments: String::new() });
                }
                StreamEvent::ToolCallDelta(delta) => {
                    if let Some(call) = calls.get_mut(&delta.index) {
                        call.arguments.push_str(&delta.arguments);
                    }
                }
                StreamEvent::Usage(u) => {
                    turn.tokens = Tokens {
                        input: u.input_tokens,
                        output: u.output_tokens,
                        cache_read: u.cache_read_tokens,
                        cache_write: u.cache_write_tokens,
                    };
                }
                StreamEvent::Finish(reason) => turn.finish = Some(reason),
            }
        }
        turn.calls = calls.into_values().collect();
        Ok(Ok(()))
    }

    /// Runs the turn's tool calls in parallel; each gets a `tool` part in the turn's
    /// message that moves pending → running → completed or error.
    async fn run_tool_calls(
        &self,
        session: &SessionRecord,
        agent: &Agent,
        turn: &Turn,
        recent: &mut Vec<(String, String)>,
    ) -> Result<(), AgentError> {
        let id = session.id.as_str();
        let mut prepared = Vec::new();
        for call in &turn.calls {
            let input: Value = serde_json::from_str(&call.arguments).unwrap_or(Value::String(call.arguments.clone()));
            let data = json!({ "call_id": call.id, "tool": call.name, "state": "pending", "input": input });
            let part = self.store.add_part(id, &turn.message_id, "tool", data.clone()).await?;
            recent.push((call.name.clone(), call.arguments.clone()));
            let doom_loop = recent.len() >= DOOM_LOOP_CALLS
                && recent[recent.len() - DOOM_LOOP_CALLS..].iter().all(|c| c == recent.last().expect("not empty"));
            prepared.push((call.clone(), part, data, doom_loop));
        }
        let runs =
            prepared.into_iter().map(|(call, part, data, doom_loop)| self.run_tool_call(session, agent, call, part, data, doom_loop));
        for result in futures::future::join_all(runs).await {
            result?;
        }
        Ok(())
    }

    async fn run_tool_call(
        &self,
        session: &SessionRecord,
        agent: &Agent,
        call: ToolCall,
        part: String,
        mut data: Value,
        doom_loop: bool,
    ) -> Result<(), AgentError> {
        let id = session.id.as_str();
        let input = data["input"].clone();
        let subject = permission::main_argument(&call.name, &input);
        let rules: Vec<_> = agent.rules.iter().cloned().chain(self.broker.session_rules(id)).collect();
        let mut decision = permission::evaluate(&rules, &call.name, &subject);
        let mut reason = "rule";
        if doom_loop && decision != Action::Deny {
            reason = "doom-loop";
            decision = if self.broker.mode() == AskMode::Prompt { Action::Ask } else { Action::Deny };
        }
        let refusal = match decision {
            Action::Allow => None,
            Action::Deny if reason == "doom-loop" => {
                Some(format!("refused: the same `{}` call was made {DOOM_LOOP_CALLS} times in a row; try something else", call.name))
            }
            Action::Deny => Some(format!("refused by the permission rules of agent `{}` for `{}` on `{subject}`", agent.name, call.name)),
            Action::Ask => match self.broker.ask(id, &call.id, &call.name, &subject, reason).await {
                Reply::Once | Reply::Always => None,
                Reply::Reject(why) => Some(format!("the user rejected this call{}", why.map(|w| format!(": {w}")).unwrap_or_default())),
            },
        };
        let started = now_ms();
        if let Some(refusal) = refusal {
            data["state"] = json!("error");
            data["error"] = json!(refusal);
            data["time"] = json!({ "start": started, "end": started });
            self.store.update_part(id, &part, data, "tool.state").await?;
            return Ok(());
        }
        data["state"] = json!("running");
        data["time"] = json!({ "start": started });
        self.store.update_part(id, &part, data.clone(), "tool.state").await?;
        let context = CallContext { session_id: id.into(), call_id: call.id.clone() };
        let arguments = if input.is_object() { input.to_string() } else { call.arguments.clone() };
        let result = self.host.call_tool(&call.name, &arguments, &context, None).await;
        let ended = now_ms();
        match result {
            Ok(output) => {
                data["state"] = json!("completed");
                data["output"] = json!(output.text);
                data["title"] = json!(output.title);
                data["metadata"] = output.metadata.unwrap_or(Value::Null);
            }
            Err(error) => {
                data["state"] = json!("error");
                data["error"] = json!(error.to_string());
            }
        }
        data["time"] = json!({ "start": started, "end": ended });
        self.store.update_part(id, &part, data, "tool.state").await?;
        Ok(())
    }

    fn cost(&self, model: &str, tokens: Tokens) -> f64 {
        let Some((_, info, _)) = self.host.models().find(|(r, _, _)| r == model) else { return 0.0 };
        let p = info.price;
        (tokens.input as f64 * p.input
            + tokens.output as f64 * p.output
            + tokens.cache_read as f64 * p.cache_read
            + tokens.cache_write as f64 * p.cache_write)
            / 1_000_000.0
    }
}

fn add_tokens(total: &mut Tokens, more: Tokens) {
    total.input += more.input;
    total.output += more.output;
    total.cache_read += more.cache_read;
    total.cache_write += more.cache_write;
}

/// The conversation as the provider sees it. Failed attempts are left out; every tool call
/// gets a result (an unfinished one is reported as interrupted).
pub fn provider_messages(history: &[MessageRecord]) -> Vec<Message> {
    let mut out = Vec::new();
    for message in history.iter().filter(|m| m.status != "error") {
        match message.role.as_str() {
            "user" => {
                let parts: Vec<ContentPart> = message
                    .parts
                    .iter()
                    .filter(|p| p.kind == "text")
                    .map(|p| ContentPart::Text(p.data["text"].as_str().unwrap_or("").into()))
                    .collect();
                if !parts.is_empty() {
                    out.push(Message { role: Role::User, parts });
                }
            }
            "assistant" => {
                let mut parts = Vec::new();
                let mut results = Vec::new();
                for part in &message.parts {
                    match part.kind.as_str() {
                        "text" => parts.push(ContentPart::Text(part.data["text"].as_str().unwrap_or("").into())),
                        "reasoning" => parts.push(ContentPart::Reasoning((
                            part.data["text"].as_str().unwrap_or("").into(),
                            part.data["signature"].as_str().map(str::to_string),
                        ))),
                        "tool" => {
                            let d = &part.data;
                            let call_id = d["call_id"].as_str().unwrap_or("").to_string();
                            let arguments =
                                if d["input"].is_string() { d["input"].as_str().unwrap_or("").to_string() } else { d["input"].to_string() };
                            parts.push(ContentPart::ToolCall(ToolCall {
                                id: call_id.clone(),
                                name: d["tool"].as_str().unwrap_or("").into(),
                                arguments,
                            }));
                            let (content, is_error) = match d["state"].as_str() {
                                Some("completed") => (d["output"].as_str().unwrap_or("").to_string(), false),
                                Some("error") => (d["error"].as_str().unwrap_or("error").to_string(), true),
                                _ => ("interrupted: the call did not finish".to_string(), true),
                            };
                            results.push(ContentPart::ToolResult(ToolResult { call_id, content, is_error }));
                        }
                        _ => {}
                    }
                }
                if !parts.is_empty() {
                    out.push(Message { role: Role::Assistant, parts });
                }
                if !results.is_empty() {
                    out.push(Message { role: Role::Tool, parts: results });
                }
            }
            _ => {}
        }
    }
    out
}
