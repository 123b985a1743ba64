//! One activity: a prompt's provider turns. Stream the model's answer, record parts as they
//! arrive, run the turn's tool calls (in parallel) under the permission rules, feed the
//! results back, and repeat until the model stops or the step limit is reached. Inputs
//! steered into the session join at each provider-turn boundary.
//!
//! The conversation is held in memory for the whole activity (loaded once at its start),
//! and each step writes in a handful of transactions: the message and its step start; the
//! streamed text, in batches; the step's end with its tool calls; each tool call's state.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Agent;
use super::permission::{self, Action, AskMode, Reply, Rule};
use super::runtime::{AgentError, AgentRuntime, Driver, Outcome};
use crate::events::now_ms;
use crate::hooks::{HookContext, HookPoint, ToolDecision};
use crate::runtime::CallContext;
use crate::runtime::provider::{
    CompletionError, CompletionRequest, ContentPart, FinishReason, Message, Role, StreamEvent, ToolCall, ToolResult, ToolSpec,
};
use crate::runtime::state::ProgressSink;
use crate::store::inbox::InputRecord;
use crate::store::lease::{Claim, OwnerId};
use crate::store::sessions::{MessageRecord, SessionRecord, Tokens, load_history, new_id};
use crate::store::{PendingWrite, Tx};
use futures::FutureExt;

/// Retries of a retryable provider error within one step.
const MAX_RETRIES: u32 = 4;
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Identical consecutive tool calls that trigger the doom-loop guard.
const DOOM_LOOP_CALLS: usize = 3;
/// Tools whose completed calls change the file named by their `path`.
const FILE_WRITING_TOOLS: &[&str] = &["write", "edit"];
/// Streamed text is written (and announced) in batches at most this far apart.
const DELTA_BATCH: Duration = Duration::from_millis(30);

/// A running activity.
pub(super) struct Activity<'a> {
    runtime: &'a AgentRuntime,
    driver: &'a Driver,
    session: SessionRecord,
    agent: Agent,
    /// The agent's rules, then the session's (`always` answers add to them).
    rules: Mutex<Vec<Rule>>,
    /// The conversation as the provider sees it.
    messages: Vec<Message>,
    /// Inputs this activity took from the inbox.
    consumed: &'a Consumed,
    /// The driver's wake-up count when the inbox was last looked at.
    inbox_seen: u64,
    recent_calls: Vec<(String, String)>,
    /// Writes queued and not yet known to be stored (see [`Activity::later`]).
    unsynced: Mutex<Vec<PendingWrite<()>>>,
    /// Files changed by `write` and `edit` calls.
    files_modified: Mutex<std::collections::BTreeSet<String>>,
}

/// Text or reasoning as it streams: what is stored, and what still waits for the next batch.
#[derive(Default)]
struct StreamedText {
    /// Its part, once it has one; `created` once the part is written.
    part: Option<String>,
    created: bool,
    text: String,
    unwritten: String,
    signature: Option<String>,
    signature_changed: bool,
}

/// One batch of a [`StreamedText`] to write.
struct TextWrite {
    part: String,
    create: bool,
    kind: &'static str,
    delta: String,
    signed: Option<(String, String)>,
}

impl StreamedText {
    fn push(&mut self, delta: &str) {
        self.text.push_str(delta);
        self.unwritten.push_str(delta);
    }

    fn take(&mut self, kind: &'static str) -> Option<TextWrite> {
        if self.unwritten.is_empty() && !self.signature_changed {
            return None;
        }
        let signed = std::mem::take(&mut self.signature_changed).then(|| (self.text.clone(), self.signature.clone().unwrap_or_default()));
        let part = self.part.get_or_insert_with(|| new_id("prt")).clone();
        let create = !std::mem::replace(&mut self.created, true);
        Some(TextWrite { part, create, kind, delta: std::mem::take(&mut self.unwritten), signed })
    }
}

impl TextWrite {
    /// Writes the batch (the part is created with the first one).
    fn apply(self, tx: &mut Tx, session: &str, message: &str) -> rusqlite::Result<()> {
        if self.create {
            tx.insert_part(&self.part, session, message, self.kind, &json!({ "text": "" }))?;
        }
        if !self.delta.is_empty() {
            tx.append_text(session, &self.part, &self.delta)?;
        }
        if let Some((text, signature)) = self.signed {
            tx.update_part(session, &self.part, &json!({ "text": text, "signature": signature }), "part.updated")?;
        }
        Ok(())
    }
}

/// The result of one provider turn.
struct Turn {
    message_id: String,
    text: StreamedText,
    reasoning: StreamedText,
    calls: Vec<ToolCall>,
    /// The stored `tool` part of each call, in order.
    tool_parts: Vec<String>,
    tokens: Tokens,
    finish: Option<FinishReason>,
}

/// A step's failure, after its message was closed.
struct StepFailure {
    error: CompletionError,
    retry: bool,
}

/// A tool call ready to run, with its stored part and the rules' decision.
struct PreparedCall {
    call: ToolCall,
    part: String,
    input: Value,
    subject: String,
    decision: Action,
    doom_loop: bool,
    /// Why a `tool.before` hook refused the call, when one did.
    hook_refusal: Option<String>,
}

/// How a tool call ended, as the model will see it.
struct CallEnd {
    content: String,
    is_error: bool,
}

/// The inputs an activity took from the inbox. They are noted inside the transaction that
/// takes them, so that a cancelled activity still knows whom to answer.
pub(super) type Consumed = Arc<Mutex<Vec<String>>>;

/// What [`Activity::begin`] found in its transaction.
enum Begin {
    Started(Box<(SessionRecord, Vec<MessageRecord>, Vec<permission::RuleSpec>)>),
    Empty,
    NotFound,
    HeldBy(String),
}

impl<'a> Activity<'a> {
    /// Starts an activity for the next input of session `id`, in one transaction: takes the
    /// session's lease, consumes the input into a user message, sets the session busy, and
    /// loads the conversation. `None` when the inbox is empty (the lease is then released).
    /// When another live process holds the session, the input fails and says so.
    pub(super) async fn begin(
        runtime: &'a AgentRuntime,
        driver: &'a Driver,
        id: &str,
        consumed: &'a Consumed,
    ) -> Result<Option<Activity<'a>>, AgentError> {
        let inbox_seen = driver.wakeups.load(Ordering::SeqCst);
        let (key, taken) = (id.to_string(), consumed.clone());
        let begun = runtime
            .store
            .write(move |tx| {
                let me = OwnerId::current();
                match tx.claim_session(&key, me)? {
                    None => return Ok(Begin::NotFound),
                    Some(Claim::HeldBy(owner)) => {
                        if let Some(input) = tx.next_input(&key)? {
                            let error = format!("session `{key}` is running in another Plugboard process ({owner})");
                            tx.fail_input(&key, &input.id, &error)?;
                            taken.lock().expect("not poisoned").push(input.id);
                        }
                        return Ok(Begin::HeldBy(owner));
                    }
                    Some(Claim::Taken { .. }) => {}
                }
                let Some(input) = tx.next_input(&key)? else {
                    tx.release_session(&key, me)?;
                    return Ok(Begin::Empty);
                };
                tx.set_status(&key, "busy", json!({}))?;
                add_user_message(tx, &input)?;
                taken.lock().expect("not poisoned").push(input.id);
                let session = tx.session(&key)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                let history = load_history(tx.conn(), &key)?;
                let rules = tx.session_rules(&key)?;
                Ok(Begin::Started(Box::new((session, history, rules))))
            })
            .await?;
        let (session, history, session_rules) = match begun {
            Begin::Started(b) => *b,
            Begin::Empty => return Ok(None),
            Begin::NotFound => return Err(AgentError::NotFound(id.into())),
            Begin::HeldBy(owner) => return Err(AgentError::HeldElsewhere { session: id.into(), owner }),
        };
        let agent = runtime.agent(&session.agent)?;
        let mut rules = agent.rules.clone();
        rules.extend(session_rules.into_iter().filter_map(|spec| Rule::new(spec).ok()));
        Ok(Some(Activity {
            runtime,
            driver,
            session,
            agent,
            rules: Mutex::new(rules),
            messages: provider_messages(&history),
            consumed,
            inbox_seen,
            recent_calls: Vec::new(),
            unsynced: Mutex::new(Vec::new()),
            files_modified: Mutex::default(),
        }))
    }

    /// Queues a write without waiting for it: the loop goes on while the storage thread
    /// commits (in order, and before announcing its events). Errors surface at the next
    /// [`Activity::check`] or [`Activity::sync`].
    fn later(&self, f: impl FnOnce(&mut Tx) -> rusqlite::Result<()> + Send + 'static) {
        let pending = self.runtime.store.write(f);
        self.unsynced.lock().expect("not poisoned").push(pending);
    }

    /// Fails when a queued write that already finished failed; never waits.
    fn check(&self) -> Result<(), AgentError> {
        let mut unsynced = self.unsynced.lock().expect("not poisoned");
        let mut failure = None;
        unsynced.retain_mut(|pending| match (&mut *pending).now_or_never() {
            Some(Ok(())) => false,
            Some(Err(e)) => {
                failure.get_or_insert(e);
                false
            }
            None => true,
        });
        failure.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Waits until every queued write is stored.
    async fn sync(&self) -> Result<(), AgentError> {
        let unsynced = std::mem::take(&mut *self.unsynced.lock().expect("not poisoned"));
        for result in futures::future::join_all(unsynced).await {
            result?;
        }
        Ok(())
    }

    /// Runs the activity to its end.
    pub(super) async fn run(mut self) -> Result<Outcome, AgentError> {
        let mut outcome = Outcome {
            session_id: self.session.id.clone(),
            text: String::new(),
            steps: 0,
            finish: "step-limit".into(),
            tokens: Tokens::default(),
            cost: 0.0,
            input_ids: Vec::new(),
            files_modified: Vec::new(),
        };
        let max_steps = self.agent.max_steps;
        let mut step = 1;
        while step <= max_steps {
            self.check()?;
            outcome.steps = step;
            let last_step = step == max_steps;
            let turn = self.step_with_retries(last_step).await?;
            add_tokens(&mut outcome.tokens, turn.tokens);
            outcome.cost += self.runtime.cost(&self.session.model, turn.tokens);
            outcome.text = turn.text.text.clone();
            step += 1;
            if turn.calls.is_empty() {
                outcome.finish = match turn.finish {
                    Some(FinishReason::Length) => "length",
                    Some(FinishReason::ContentFilter) => "content-filter",
                    _ => "stop",
                }
                .into();
                // Input steered in while the model answered gets its turn now.
                if !last_step && self.take_steers().await? {
                    continue;
                }
                break;
            }
            self.run_tool_calls(&turn).await?;
            // Steered input joins at the boundary, when a turn follows; otherwise it stays
            // in the inbox and opens the next activity.
            if step <= max_steps {
                self.take_steers().await?;
            }
        }
        outcome.input_ids = self.consumed.lock().expect("not poisoned").clone();
        outcome.files_modified = self.files_modified.lock().expect("not poisoned").iter().cloned().collect();
        let (id, ended) = (self.session.id.clone(), serde_json::to_value(&outcome).unwrap_or_default());
        self.later(move |tx| {
            tx.emit(Some(&id), "activity.completed", ended)?;
            tx.set_status(&id, "idle", json!({}))
        });
        self.sync().await?;
        Ok(outcome)
    }

    /// Moves pending `steer` inputs into the conversation; true when there were some.
    async fn take_steers(&mut self) -> Result<bool, AgentError> {
        let wakeups = self.driver.wakeups.load(Ordering::SeqCst);
        if wakeups == self.inbox_seen {
            return Ok(false);
        }
        self.inbox_seen = wakeups;
        let (id, taken) = (self.session.id.clone(), self.consumed.clone());
        let steered = self
            .runtime
            .store
            .write(move |tx| {
                let steers = tx.pending_steers(&id)?;
                for input in &steers {
                    add_user_message(tx, input)?;
                    taken.lock().expect("not poisoned").push(input.id.clone());
                }
                Ok(steers)
            })
            .await?;
        for input in &steered {
            self.messages.push(Message { role: Role::User, parts: vec![ContentPart::Text(input.prompt.clone())] });
        }
        Ok(!steered.is_empty())
    }

    async fn step_with_retries(&mut self, last_step: bool) -> Result<Turn, AgentError> {
        let mut attempt = 0;
        loop {
            match self.step(last_step, attempt > 0).await? {
                Ok(turn) => return Ok(turn),
                Err(StepFailure { error, retry }) if retry && attempt < MAX_RETRIES => {
                    attempt += 1;
                    let requested = match &error {
                        CompletionError::Api { retry_after_ms: Some(ms), .. } => Some(Duration::from_millis(*ms)),
                        _ => None,
                    };
                    let delay = requested.unwrap_or(Duration::from_millis(500 * 2u64.pow(attempt - 1))).min(MAX_BACKOFF);
                    let id = self.session.id.clone();
                    let detail = json!({ "attempt": attempt, "delay_ms": delay.as_millis() as u64, "error": error.to_string() });
                    self.later(move |tx| tx.set_status(&id, "retry", detail));
                    tokio::time::sleep(delay).await;
                }
                Err(StepFailure { error, .. }) => return Err(error.into()),
            }
        }
    }

    /// The tools offered this step: all loaded ones, but those the rules deny outright.
    fn offered_tools(&self, last_step: bool) -> Vec<ToolSpec> {
        if last_step {
            return Vec::new();
        }
        let rules = self.rules.lock().expect("not poisoned");
        self.runtime
            .host
            .registry()
            .tools()
            .filter(|(t, _)| !permission::denied_outright(rules.iter(), &t.name))
            .filter(|(t, _)| self.session.options.enabled_tools.as_ref().is_none_or(|enabled| enabled.contains(&t.name)))
            .map(|(t, _)| ToolSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters_schema: t.parameters.to_string(),
            })
            .collect()
    }

    /// One provider turn: a new assistant message whose parts are recorded as they stream.
    async fn step(&mut self, last_step: bool, retrying: bool) -> Result<Result<Turn, StepFailure>, AgentError> {
        let mut system = self.agent.system_prompt.clone();
        if let Some(extra) = &self.session.options.system_prompt {
            system.push_str("\n\n");
            system.push_str(extra);
        }
        if last_step {
            system.push_str("\n\nThis is the last step: answer now, without calling tools.");
        }
        let (mut temperature, mut max_tokens) = (self.session.options.temperature, self.session.options.max_tokens);
        let hooks = self.runtime.host.hooks();
        if hooks.handles(HookPoint::ChatParams) {
            let params = crate::hooks::ChatParams { model: self.session.model.clone(), temperature, max_tokens, system_prompt: system };
            let params = hooks.chat_params(&self.hook_context(), params).await;
            (system, temperature, max_tokens) = (params.system_prompt, params.temperature, params.max_tokens);
        }
        let request = CompletionRequest {
            model: String::new(),
            system: Some(system),
            messages: self.messages.clone(),
            tools: self.offered_tools(last_step),
            temperature,
            max_output_tokens: max_tokens,
            options: None,
        };
        let (id, model, message) = (self.session.id.clone(), self.session.model.clone(), new_id("msg"));
        let key = message.clone();
        self.later(move |tx| {
            if retrying {
                tx.set_status(&id, "busy", json!({}))?;
            }
            tx.insert_message(&key, &id, "assistant", Some(&model), "running", None)?;
            tx.insert_part(&new_id("prt"), &id, &key, "step-start", &json!({}))
        });
        let mut turn = Turn {
            message_id: message,
            text: StreamedText::default(),
            reasoning: StreamedText::default(),
            calls: Vec::new(),
            tool_parts: Vec::new(),
            tokens: Tokens::default(),
            finish: None,
        };
        let failure = self.stream(request, &mut turn).await?.err();
        let cost = self.runtime.cost(&self.session.model, turn.tokens);
        let (id, message, tokens) = (self.session.id.clone(), turn.message_id.clone(), turn.tokens);
        let writes = [turn.text.take("text"), turn.reasoning.take("reasoning")];
        if let Some(error) = failure {
            let (retry, text) = (error.is_retryable(), error.to_string());
            self.later(move |tx| {
                for write in writes.into_iter().flatten() {
                    write.apply(tx, &id, &message)?;
                }
                tx.finish_message(&id, &message, "error", tokens, cost, Some(&text))
            });
            return Ok(Err(StepFailure { error, retry }));
        }
        let finish = match turn.finish {
            Some(FinishReason::ToolCalls) => "tool-calls",
            Some(FinishReason::Length) => "length",
            Some(FinishReason::ContentFilter) => "content-filter",
            Some(FinishReason::Other) => "other",
            Some(FinishReason::Stop) | None => "stop",
        };
        turn.tool_parts = turn.calls.iter().map(|_| new_id("prt")).collect();
        let calls: Vec<(String, Value)> = turn
            .calls
            .iter()
            .zip(&turn.tool_parts)
            .map(|(c, part)| {
                (part.clone(), json!({ "call_id": c.id, "tool": c.name, "state": "pending", "input": parse_arguments(&c.arguments) }))
            })
            .collect();
        self.later(move |tx| {
            for write in writes.into_iter().flatten() {
                write.apply(tx, &id, &message)?;
            }
            for (part, data) in &calls {
                tx.insert_part(part, &id, &message, "tool", data)?;
            }
            tx.insert_part(&new_id("prt"), &id, &message, "step-finish", &json!({ "finish": finish, "tokens": tokens, "cost": cost }))?;
            tx.finish_message(&id, &message, "completed", tokens, cost, None)
        });
        let mut parts = Vec::new();
        if !turn.reasoning.text.is_empty() {
            parts.push(ContentPart::Reasoning((turn.reasoning.text.clone(), turn.reasoning.signature.clone())));
        }
        if !turn.text.text.is_empty() {
            parts.push(ContentPart::Text(turn.text.text.clone()));
        }
        parts.extend(turn.calls.iter().cloned().map(ContentPart::ToolCall));
        if !parts.is_empty() {
            self.messages.push(Message { role: Role::Assistant, parts });
        }
        Ok(Ok(turn))
    }

    /// Streams one completion into the turn, writing text in batches as it arrives.
    async fn stream(&self, request: CompletionRequest, turn: &mut Turn) -> Result<Result<(), CompletionError>, AgentError> {
        let overrides = self.runtime.provider_overrides(&self.session.id);
        let mut stream = match self.runtime.host.complete_with(&self.session.model, request, overrides.as_deref()).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let mut calls: BTreeMap<u32, ToolCall> = BTreeMap::new();
        let mut flush_at: Option<Instant> = None;
        loop {
            let next = stream.next();
            tokio::pin!(next);
            let event = loop {
                tokio::select! {
                    event = &mut next => break event,
                    _ = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                        flush_at = None;
                        self.flush(turn);
                    }
                }
            };
            let event = match event {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) => return Ok(Err(e)),
            };
            match event {
                StreamEvent::TextDelta(delta) => turn.text.push(&delta),
                StreamEvent::ReasoningDelta(delta) => turn.reasoning.push(&delta),
                StreamEvent::ReasoningSignature(signature) => {
                    turn.reasoning.signature = Some(signature);
                    turn.reasoning.signature_changed = true;
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
            let unwritten = !turn.text.unwritten.is_empty() || !turn.reasoning.unwritten.is_empty() || turn.reasoning.signature_changed;
            if unwritten && flush_at.is_none() {
                flush_at = Some(Instant::now() + DELTA_BATCH);
            }
        }
        turn.calls = calls.into_values().collect();
        Ok(Ok(()))
    }

    /// Writes the streamed text not yet written, as one batch.
    fn flush(&self, turn: &mut Turn) {
        let writes = [turn.reasoning.take("reasoning"), turn.text.take("text")];
        if writes.iter().all(Option::is_none) {
            return;
        }
        let (id, message) = (self.session.id.clone(), turn.message_id.clone());
        self.later(move |tx| writes.into_iter().flatten().try_for_each(|write| write.apply(tx, &id, &message)));
    }

    /// Runs the turn's tool calls in parallel; each `tool` part moves pending → running →
    /// completed or error. The results join the conversation.
    async fn run_tool_calls(&mut self, turn: &Turn) -> Result<(), AgentError> {
        let rules = self.rules.lock().expect("not poisoned").clone();
        let verdicts = self.tool_before_hooks(turn).await;
        let mut prepared = Vec::new();
        for ((call, part), verdict) in turn.calls.iter().zip(&turn.tool_parts).zip(verdicts) {
            self.recent_calls.push((call.name.clone(), call.arguments.clone()));
            let recent = &self.recent_calls;
            let doom_loop = recent.len() >= DOOM_LOOP_CALLS
                && recent[recent.len() - DOOM_LOOP_CALLS..].iter().all(|c| c == recent.last().expect("not empty"));
            let (input, hook_refusal) = match verdict {
                None => (parse_arguments(&call.arguments), None),
                Some(ToolDecision::Run { arguments }) => (arguments, None),
                Some(ToolDecision::Deny { hook, reason }) => {
                    (parse_arguments(&call.arguments), Some(format!("refused by hook `{hook}`: {reason}")))
                }
            };
            // The rules judge the arguments the call will run with, after any rewrite.
            let subject = permission::main_argument(&call.name, &input);
            let mut decision = permission::evaluate(&rules, &call.name, &subject);
            if hook_refusal.is_some() {
                decision = Action::Deny;
            }
            if doom_loop && decision != Action::Deny {
                decision = if self.runtime.broker.mode() == AskMode::Prompt { Action::Ask } else { Action::Deny };
            }
            prepared.push(PreparedCall { call: call.clone(), part: part.clone(), input, subject, decision, doom_loop, hook_refusal });
        }
        // The calls the rules settle start (or are refused) together, in one transaction.
        let started = now_ms();
        let settled: Vec<(String, Value)> = prepared
            .iter()
            .filter(|p| p.decision != Action::Ask)
            .map(|p| {
                let mut data = json!({ "call_id": p.call.id, "tool": p.call.name, "input": p.input });
                match p.decision {
                    Action::Allow => {
                        data["state"] = json!("running");
                        data["time"] = json!({ "start": started });
                    }
                    _ => {
                        data["state"] = json!("error");
                        data["error"] = json!(self.refusal(p));
                        data["time"] = json!({ "start": started, "end": started });
                    }
                }
                (p.part.clone(), data)
            })
            .collect();
        if !settled.is_empty() {
            let id = self.session.id.clone();
            self.later(move |tx| settled.iter().try_for_each(|(part, data)| tx.update_part(&id, part, data, "tool.state")));
        }
        let ends = futures::future::join_all(prepared.iter().map(|p| self.run_tool_call(p, started))).await;
        let mut results = Vec::new();
        for (p, end) in prepared.iter().zip(ends) {
            let end = end?;
            results.push(ContentPart::ToolResult(ToolResult { call_id: p.call.id.clone(), content: end.content, is_error: end.is_error }));
        }
        if !results.is_empty() {
            self.messages.push(Message { role: Role::Tool, parts: results });
        }
        Ok(())
    }

    /// What the `tool.before` hooks decided for each call of the turn, in order; `None` for
    /// every call when no hook handles that point.
    async fn tool_before_hooks(&self, turn: &Turn) -> Vec<Option<ToolDecision>> {
        let hooks = self.runtime.host.hooks();
        if !hooks.handles(HookPoint::ToolBefore) {
            return turn.calls.iter().map(|_| None).collect();
        }
        let (ctx, registry) = (self.hook_context(), self.runtime.host.registry());
        let decisions = turn.calls.iter().map(|call| {
            let schema =
                registry.tool_plugin(&call.name).and_then(|p| p.tools().iter().find(|t| t.name == call.name)).map(|t| &t.parameters);
            let (hooks, ctx) = (&hooks, &ctx);
            async move { Some(hooks.tool_before(ctx, &call.id, &call.name, parse_arguments(&call.arguments), schema).await) }
        });
        futures::future::join_all(decisions).await
    }

    /// Where hooks run: this session and its agent.
    fn hook_context(&self) -> HookContext {
        HookContext { session_id: self.session.id.clone(), agent: self.agent.name.clone() }
    }

    /// Why the rules (or a hook) refused a call.
    fn refusal(&self, p: &PreparedCall) -> String {
        if let Some(refusal) = &p.hook_refusal {
            refusal.clone()
        } else if p.doom_loop {
            format!("refused: the same `{}` call was made {DOOM_LOOP_CALLS} times in a row; try something else", p.call.name)
        } else {
            format!("refused by the permission rules of agent `{}` for `{}` on `{}`", self.agent.name, p.call.name, p.subject)
        }
    }

    /// One call: asks when the rules say so, then runs it and records how it ended.
    async fn run_tool_call(&self, p: &PreparedCall, started: i64) -> Result<CallEnd, AgentError> {
        let id = self.session.id.as_str();
        let mut data = json!({ "call_id": p.call.id, "tool": p.call.name, "input": p.input });
        let mut started = started;
        match p.decision {
            Action::Deny => return Ok(CallEnd { content: self.refusal(p), is_error: true }),
            Action::Allow => {}
            Action::Ask => {
                let reason = if p.doom_loop { "doom-loop" } else { "rule" };
                let reply = self.runtime.broker.ask(id, &p.call.id, &p.call.name, &p.subject, reason).await;
                started = now_ms();
                let refusal = match reply {
                    Reply::Once => None,
                    Reply::Always => {
                        let rule = Rule::new(permission::session_rule(&p.call.name, &p.subject)).expect("escaped globs are valid");
                        self.rules.lock().expect("not poisoned").push(rule);
                        None
                    }
                    Reply::Reject(why) => Some(format!("the user rejected this call{}", why.map(|w| format!(": {w}")).unwrap_or_default())),
                };
                match refusal {
                    Some(refusal) => {
                        data["state"] = json!("error");
                        data["error"] = json!(refusal);
                        data["time"] = json!({ "start": started, "end": started });
                        self.record(&p.part, data);
                        return Ok(CallEnd { content: refusal, is_error: true });
                    }
                    None => {
                        data["state"] = json!("running");
                        data["time"] = json!({ "start": started });
                        self.record(&p.part, data.clone());
                    }
                }
            }
        }
        let context = CallContext { session_id: id.into(), call_id: p.call.id.clone() };
        let arguments = if p.input.is_object() { p.input.to_string() } else { p.call.arguments.clone() };
        let result = self.runtime.host.call_tool(&p.call.name, &arguments, &context, Some(self.output_sink(p))).await;
        let result = self.tool_after_hooks(p, result).await;
        let end = match result {
            Ok(output) => {
                if FILE_WRITING_TOOLS.contains(&p.call.name.as_str()) {
                    let path = output.metadata.as_ref().and_then(|m| m["path"].as_str()).unwrap_or(&p.subject);
                    self.files_modified.lock().expect("not poisoned").insert(path.to_string());
                }
                data["state"] = json!("completed");
                data["output"] = json!(output.text);
                data["title"] = json!(output.title);
                data["metadata"] = output.metadata.unwrap_or(Value::Null);
                CallEnd { content: output.text, is_error: false }
            }
            Err(failure) => {
                data["state"] = json!("error");
                data["error"] = json!(failure.for_model);
                if failure.detail != failure.for_model {
                    // For the operator (the event log, the API): what would grant it.
                    data["detail"] = json!(failure.detail);
                }
                CallEnd { content: failure.for_model, is_error: true }
            }
        };
        data["time"] = json!({ "start": started, "end": now_ms() });
        self.record(&p.part, data);
        Ok(end)
    }

    /// Runs the `tool.after` hooks on a call's result (an error as the model is told it): they may replace its text and title
    /// (or the text of an error).
    async fn tool_after_hooks(
        &self,
        p: &PreparedCall,
        result: Result<crate::runtime::ToolOutput, crate::runtime::CallError>,
    ) -> Result<crate::runtime::ToolOutput, CallFailure> {
        let hooks = self.runtime.host.hooks();
        let failure = |e: &crate::runtime::CallError| CallFailure { detail: e.to_string(), for_model: e.for_model() };
        if !hooks.handles(HookPoint::ToolAfter) {
            return result.map_err(|e| failure(&e));
        }
        let limit = self.runtime.host.registry().tool_plugin(&p.call.name).map_or(1 << 20, |plugin| plugin.policy.limits.max_output_bytes);
        let ctx = self.hook_context();
        let (text, title, is_error) = match &result {
            Ok(output) => (output.text.clone(), output.title.clone(), false),
            Err(error) => (error.for_model(), None, true),
        };
        let (text, title) = hooks.tool_after(&ctx, &p.call.id, &p.call.name, &p.input, text, title, is_error, limit).await;
        match result {
            Ok(output) => Ok(crate::runtime::ToolOutput { text, title, metadata: output.metadata }),
            Err(error) => Err(CallFailure { detail: error.to_string(), for_model: text }),
        }
    }

    /// Where a call's live output goes: `tool.output` events, in order with its states.
    fn output_sink(&self, p: &PreparedCall) -> ProgressSink {
        let store = self.runtime.store.clone();
        let (id, part, call, tool) = (self.session.id.clone(), p.part.clone(), p.call.id.clone(), p.call.name.clone());
        Arc::new(move |text: &str| {
            let (id, data) = (id.clone(), json!({ "part_id": part, "call_id": call, "tool": tool, "text": text }));
            drop(store.write(move |tx| tx.emit(Some(&id), "tool.output", data)));
        })
    }

    /// Records a tool part's new state.
    fn record(&self, part: &str, data: Value) {
        let (id, part) = (self.session.id.clone(), part.to_string());
        self.later(move |tx| tx.update_part(&id, &part, &data, "tool.state"));
    }
}

/// A user message from an inbox input, which is consumed.
fn add_user_message(tx: &mut Tx, input: &InputRecord) -> rusqlite::Result<()> {
    tx.consume_input(&input.id)?;
    let message = new_id("msg");
    tx.insert_message(&message, &input.session_id, "user", None, "completed", Some(&input.id))?;
    tx.insert_part(&new_id("prt"), &input.session_id, &message, "text", &json!({ "text": input.prompt }))?;
    tx.finish_message(&input.session_id, &message, "completed", Tokens::default(), 0.0, None)
}

/// A call's arguments as JSON, or as the raw text when they are not JSON.
fn parse_arguments(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
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

/// A failed call, told two ways: in full for the operator (with the configuration that
/// would grant what was denied), and as the model is told it (what was denied and why).
struct CallFailure {
    detail: String,
    for_model: String,
}
