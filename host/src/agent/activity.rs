//! One activity: a prompt's provider turns. Stream the model's answer, record parts as they
//! arrive, run the turn's tool calls (in parallel) under the permission rules, feed the
//! results back, and repeat until the model stops or the step limit is reached. Inputs
//! steered into the session join at each provider-turn boundary.
//!
//! The conversation is held in memory for the whole activity (loaded once at its start),
//! and each step writes in a handful of transactions: the message and its step start; the
//! streamed text, in batches; the step's end with its tool calls; each tool call's state.
//!
//! Before each provider turn the request is held to the model's context ([`super::context`]):
//! past `[sessions] compact_at` of the budget the conversation is compacted first
//! ([`super::compaction`]); a request that still does not fit is never sent. An activity
//! opened by a `compact` input compacts and ends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::compaction::{self, Compaction};
use super::context::{self, Estimator, Window};
use super::conversation::{self, parse_arguments, provider_messages};
use super::error::AgentError;
use super::instructions;
use super::permission::{self, Action, AskMode, PermissionBroker, Reply, Rule};
use super::tool_hooks::{self, CallFailure};
use super::undo::{self, RestoredFile, Reverted};
use super::{Agent, agent_named};
use crate::capability::ProviderOverrides;
use crate::hooks::{HookContext, HookPoint, ToolDecision};
use crate::runtime::provider::{
    CompletionError, CompletionRequest, ContentPart, FinishReason, Message, ModelInfo, ModelPrice, Role, StreamEvent, ToolCall, ToolResult,
    ToolSpec, provider_of,
};
use crate::runtime::state::ProgressSink;
use crate::runtime::{CallContext, PluginHost};
use crate::store::events::now_ms;
use crate::store::inbox::InputRecord;
use crate::store::lease::{Claim, OwnerId};
use crate::store::model::{CompactionReason, Finish, InputKind, MessageRole, MessageStatus, PartKind, SessionStatus, ToolPart};
use crate::store::sessions::{MessageRecord, PartRecord, SessionRecord, Tokens, load_history, new_id};
use crate::store::{PendingWrite, SessionStore, Tx};

/// The first wait before a retry when the API asks for none; it doubles with each attempt.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Identical consecutive tool calls that trigger the doom-loop guard.
const DOOM_LOOP_CALLS: usize = 3;
/// Streamed text is written (and announced) in batches at most this far apart.
const DELTA_BATCH: Duration = Duration::from_millis(30);

/// How an activity ended.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The session.
    pub session_id: String,
    /// The final assistant text.
    pub text: String,
    /// Provider turns taken.
    pub steps: u32,
    /// Why it ended: `stop`, `length`, `content-filter` or `step-limit`.
    pub finish: Finish,
    /// Tokens used by this activity.
    pub tokens: Tokens,
    /// Cost of this activity, in US dollars.
    pub cost: f64,
    /// The inputs it answered (the one that opened it, then those steered in).
    pub input_ids: Vec<String>,
    /// Files that its `write` and `edit` calls changed, as the tools resolved them.
    pub files_modified: Vec<String>,
    /// Its latest compaction, when it compacted the conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compaction: Option<Compaction>,
    /// What it reverted, when it was a revert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverted: Option<Reverted>,
}

/// What an activity runs with, lent by the runtime for as long as it runs.
pub(super) struct Env<'a> {
    /// The plugins.
    pub host: &'a PluginHost,
    /// The store.
    pub store: &'a SessionStore,
    /// Who answers permission questions.
    pub broker: &'a PermissionBroker,
    /// The agents in force.
    pub agents: Arc<super::Agents>,
    /// The session's own API key or endpoint, when it has one.
    pub overrides: Option<Arc<ProviderOverrides>>,
    /// Bumped whenever an input is admitted for the session.
    pub wakeups: &'a AtomicU64,
    /// `[sessions]`: retries, compaction, the tool output limit.
    pub settings: &'a super::SessionSettings,
    /// The turn being streamed, for the runtime to record if the activity is stopped.
    pub in_flight: InFlight,
    /// The workspace's snapshots (`[sessions] snapshots`), for undo.
    pub snapshots: Option<Arc<crate::snapshot::Snapshots>>,
}

/// What the input that opened an activity asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Task {
    /// Answer a prompt.
    Prompt,
    /// Compact the conversation.
    Compact,
    /// Revert the session to this message.
    Revert(String),
}

/// A running activity.
pub(super) struct Activity<'a> {
    env: Env<'a>,
    session: SessionRecord,
    agent: Agent,
    /// The system prompt: the agent's, the environment and the project's instructions, as
    /// they were when the activity began.
    system_prompt: String,
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
    /// What the input that opened it asks for.
    task: Task,
    /// Tokens per character, as the provider's usage teaches it.
    estimator: Estimator,
    /// Its latest compaction, and the tokens and cost of all of them.
    compaction: Option<Compaction>,
    compaction_usage: (Tokens, f64),
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
    kind: PartKind,
    delta: String,
    signed: Option<(String, String)>,
}

impl StreamedText {
    fn push(&mut self, delta: &str) {
        self.text.push_str(delta);
        self.unwritten.push_str(delta);
    }

    fn take(&mut self, kind: PartKind) -> Option<TextWrite> {
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
            tx.update_part(session, &self.part, &json!({ "text": text, "signature": signature }))?;
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

impl PreparedCall {
    /// Its `tool` part, pending, with the arguments it runs with.
    fn tool_part(&self) -> ToolPart {
        ToolPart::pending(&self.call.id, &self.call.name, self.input.clone())
    }
}

/// How a tool call ended, as the model will see it.
struct CallEnd {
    content: String,
    is_error: bool,
}

/// The provider turn an activity is streaming, as far as it got: what a cancel, a timeout
/// or a shutdown records as spent (the tokens were billed all the same). Shared with the
/// runtime, which outlives the activity's future.
#[derive(Debug, Clone)]
pub(super) struct TurnInFlight {
    message: String,
    price: Option<ModelPrice>,
    sent: usize,
    streamed: usize,
    reported: Option<Tokens>,
}

impl TurnInFlight {
    /// Its message, with the tokens it used (as reported, else estimated) and their cost.
    pub(super) fn spent(&self) -> (String, Tokens, f64) {
        let tokens = self.reported.unwrap_or_else(|| context::estimated_usage(self.sent, self.streamed));
        let cost = self.price.as_ref().map_or(0.0, |price| conversation::cost(price, tokens));
        (self.message.clone(), tokens, cost)
    }
}

/// See [`TurnInFlight`].
pub(super) type InFlight = Arc<Mutex<Option<TurnInFlight>>>;

/// The inputs an activity took from the inbox. They are noted inside the transaction that
/// takes them, so that a cancelled activity still knows whom to answer.
pub(super) type Consumed = Arc<Mutex<Vec<String>>>;

/// What [`Activity::begin`] found in its transaction.
enum Begin {
    Started(Box<(SessionRecord, Vec<MessageRecord>, Vec<permission::RuleSpec>, Task)>),
    Empty,
    NotFound,
    HeldBy(String),
}

impl<'a> Activity<'a> {
    /// Starts an activity for the next input of session `id`, in one transaction: takes the
    /// session's lease, consumes the input into a user message, sets the session busy, and
    /// loads the conversation. `None` when the inbox is empty (the lease is then released).
    /// When another live process holds the session, the input fails and says so.
    pub(super) async fn begin(env: Env<'a>, id: &str, consumed: &'a Consumed) -> Result<Option<Activity<'a>>, AgentError> {
        let inbox_seen = env.wakeups.load(Ordering::SeqCst);
        let (key, taken) = (id.to_string(), consumed.clone());
        let begun = env
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
                tx.set_status(&key, SessionStatus::Busy, json!({}))?;
                let kind = match input.kind {
                    InputKind::Prompt => {
                        add_user_message(tx, &input)?;
                        Task::Prompt
                    }
                    InputKind::Compact => {
                        tx.consume_input(&input.id)?;
                        Task::Compact
                    }
                    InputKind::Revert => {
                        tx.consume_input(&input.id)?;
                        Task::Revert(input.prompt.clone())
                    }
                };
                taken.lock().expect("not poisoned").push(input.id);
                let session = tx.session(&key)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                let history = load_history(tx.conn(), &key)?;
                let rules = tx.session_rules(&key)?;
                Ok(Begin::Started(Box::new((session, history, rules, kind))))
            })
            .await?;
        let (session, history, session_rules, task) = match begun {
            Begin::Started(b) => *b,
            Begin::Empty => return Ok(None),
            Begin::NotFound => return Err(AgentError::NotFound(id.into())),
            Begin::HeldBy(owner) => return Err(AgentError::HeldElsewhere { session: id.into(), owner }),
        };
        let agent = agent_named(&env.agents.profiles, &session.agent)?;
        let sources = (agent.system_prompt.clone(), PathBuf::from(&session.workspace));
        let system_prompt = tokio::task::spawn_blocking(move || {
            let (agent_prompt, workspace) = sources;
            let user_file = instructions::user_instructions_file();
            instructions::system_prompt(&instructions::PromptSources {
                agent_prompt: &agent_prompt,
                workspace: &workspace,
                user_file,
                date: instructions::today(),
            })
        })
        .await
        .map_err(|e| AgentError::Internal(format!("reading the project's instructions: {e}")))?;
        let mut rules = agent.rules.clone();
        rules.extend(session_rules.into_iter().filter_map(|spec| Rule::new(spec).ok()));
        let messages = provider_messages(&history, env.settings.tool_output_limit);
        Ok(Some(Activity {
            env,
            session,
            agent,
            system_prompt,
            rules: Mutex::new(rules),
            messages,
            consumed,
            inbox_seen,
            recent_calls: Vec::new(),
            unsynced: Mutex::new(Vec::new()),
            files_modified: Mutex::default(),
            task,
            estimator: Estimator::default(),
            compaction: None,
            compaction_usage: (Tokens::default(), 0.0),
        }))
    }

    /// Queues a write without waiting for it: the loop goes on while the storage thread
    /// commits (in order, and before announcing its events). Errors surface at the next
    /// [`Activity::check`] or [`Activity::sync`].
    fn later(&self, f: impl FnOnce(&mut Tx) -> rusqlite::Result<()> + Send + 'static) {
        let pending = self.env.store.write(f);
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
            finish: Finish::StepLimit,
            tokens: Tokens::default(),
            cost: 0.0,
            input_ids: Vec::new(),
            files_modified: Vec::new(),
            compaction: None,
            reverted: None,
        };
        let max_steps = if self.task == Task::Prompt { self.agent.max_steps } else { 0 };
        match self.task.clone() {
            Task::Prompt => {}
            Task::Compact => {
                let fixed = self.fixed_chars();
                self.compact(CompactionReason::Requested, fixed).await?;
                outcome.finish = Finish::Stop;
            }
            Task::Revert(to) => {
                outcome.reverted = Some(self.revert(&to).await?);
                outcome.finish = Finish::Stop;
            }
        }
        let mut step = 1;
        while step <= max_steps {
            self.check()?;
            outcome.steps = step;
            let last_step = step == max_steps;
            let turn = self.step_with_retries(last_step).await?;
            outcome.tokens += turn.tokens;
            outcome.cost += self.cost(turn.tokens);
            outcome.text = turn.text.text.clone();
            step += 1;
            if turn.calls.is_empty() {
                outcome.finish = conversation::activity_finish(conversation::turn_finish(turn.finish));
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
        outcome.tokens += self.compaction_usage.0;
        outcome.cost += self.compaction_usage.1;
        outcome.compaction = self.compaction.take();
        outcome.input_ids = self.consumed.lock().expect("not poisoned").clone();
        outcome.files_modified = self.files_modified.lock().expect("not poisoned").iter().cloned().collect();
        let (id, ended) = (self.session.id.clone(), serde_json::to_value(&outcome).unwrap_or_default());
        self.later(move |tx| {
            tx.emit(Some(&id), "activity.completed", ended)?;
            tx.set_status(&id, SessionStatus::Idle, json!({}))
        });
        self.sync().await?;
        Ok(outcome)
    }

    /// Moves pending `steer` inputs into the conversation; true when there were some.
    async fn take_steers(&mut self) -> Result<bool, AgentError> {
        let wakeups = self.env.wakeups.load(Ordering::SeqCst);
        if wakeups == self.inbox_seen {
            return Ok(false);
        }
        self.inbox_seen = wakeups;
        let (id, taken) = (self.session.id.clone(), self.consumed.clone());
        let steered = self
            .env
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
                Err(StepFailure { error, retry }) if retry && attempt < self.env.settings.max_retries => {
                    attempt += 1;
                    let requested = match &error {
                        CompletionError::Api { retry_after_ms: Some(ms), .. } => Some(Duration::from_millis(*ms)),
                        _ => None,
                    };
                    let delay = requested.unwrap_or(FIRST_BACKOFF.saturating_mul(1 << (attempt - 1).min(16))).min(MAX_BACKOFF);
                    let id = self.session.id.clone();
                    let detail = json!({ "attempt": attempt, "delay_ms": delay.as_millis() as u64, "error": error.to_string() });
                    self.later(move |tx| tx.set_status(&id, SessionStatus::Retry, detail));
                    tokio::time::sleep(delay).await;
                }
                Err(StepFailure { error, retry: true }) => return Err(AgentError::GaveUp { error, attempts: attempt + 1 }),
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
        self.env
            .host
            .registry()
            .tools()
            .filter(|(t, _)| !permission::denied_outright(rules.iter(), &t.name))
            .filter(|(t, _)| self.session.options.enabled_tools.as_ref().is_none_or(|enabled| enabled.contains(&t.name)))
            .map(|(t, _)| ToolSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters_schema: t.parameters_json().to_string(),
            })
            .collect()
    }

    /// One provider turn: a new assistant message whose parts are recorded as they stream.
    async fn step(&mut self, last_step: bool, retrying: bool) -> Result<Result<Turn, StepFailure>, AgentError> {
        let mut system = self.system_prompt.clone();
        if let Some(extra) = &self.session.options.system_prompt {
            system.push_str("\n\n");
            system.push_str(extra);
        }
        if last_step {
            system.push_str("\n\nThis is the last step: answer now, without calling tools.");
        }
        let (mut temperature, mut max_tokens) = (self.session.options.temperature, self.session.options.max_tokens);
        let hooks = self.env.host.hooks();
        if hooks.handles(HookPoint::ChatParams) {
            let params = crate::hooks::ChatParams { model: self.session.model.clone(), temperature, max_tokens, system_prompt: system };
            let params = hooks.chat_params(&self.hook_context(), params).await;
            (system, temperature, max_tokens) = (params.system_prompt, params.temperature, params.max_tokens);
        }
        let mut request = CompletionRequest {
            model: String::new(),
            system: Some(system),
            messages: self.messages.clone(),
            tools: self.offered_tools(last_step),
            temperature,
            max_output_tokens: max_tokens,
            options: None,
        };
        let info = self.model_info(&self.session.model);
        if let Some(info) = &info {
            self.fit_to_context(&mut request, info).await?;
        }
        let (id, model, message) = (self.session.id.clone(), self.session.model.clone(), new_id("msg"));
        let key = message.clone();
        self.later(move |tx| {
            if retrying {
                tx.set_status(&id, SessionStatus::Busy, json!({}))?;
            }
            tx.insert_message(&key, &id, MessageRole::Assistant, Some(&model), MessageStatus::Running, None)?;
            tx.insert_part(&new_id("prt"), &id, &key, PartKind::StepStart, &json!({}))
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
        let sent = context::request_chars(&request);
        let price = info.map(|info| info.price);
        let tracked = TurnInFlight { message: turn.message_id.clone(), price, sent, streamed: 0, reported: None };
        *self.env.in_flight.lock().expect("not poisoned") = Some(tracked);
        let failure = self.stream(request, &mut turn).await?.err();
        *self.env.in_flight.lock().expect("not poisoned") = None;
        if turn.tokens == Tokens::default() {
            let streamed = turn.text.text.len() + turn.reasoning.text.len() + turn.calls.iter().map(|c| c.arguments.len()).sum::<usize>();
            turn.tokens = context::estimated_usage(sent, streamed);
        } else {
            self.estimator.observe(sent, turn.tokens.input + turn.tokens.cache_read + turn.tokens.cache_write);
        }
        let cost = self.cost(turn.tokens);
        let (id, message, tokens) = (self.session.id.clone(), turn.message_id.clone(), turn.tokens);
        let writes = [turn.text.take(PartKind::Text), turn.reasoning.take(PartKind::Reasoning)];
        if let Some(error) = failure {
            let (retry, text) = (error.is_retryable(), error.to_string());
            self.later(move |tx| {
                for write in writes.into_iter().flatten() {
                    write.apply(tx, &id, &message)?;
                }
                tx.finish_message(&id, &message, MessageStatus::Error, tokens, cost, Some(&text))
            });
            return Ok(Err(StepFailure { error, retry }));
        }
        let finish = conversation::turn_finish(turn.finish);
        turn.tool_parts = turn.calls.iter().map(|_| new_id("prt")).collect();
        let calls: Vec<(String, Value)> = turn
            .calls
            .iter()
            .zip(&turn.tool_parts)
            .map(|(c, part)| (part.clone(), ToolPart::pending(&c.id, &c.name, parse_arguments(&c.arguments)).to_value()))
            .collect();
        self.later(move |tx| {
            for write in writes.into_iter().flatten() {
                write.apply(tx, &id, &message)?;
            }
            for (part, data) in &calls {
                tx.insert_part(part, &id, &message, PartKind::Tool, data)?;
            }
            let end = json!({ "finish": finish, "tokens": tokens, "cost": cost });
            tx.insert_part(&new_id("prt"), &id, &message, PartKind::StepFinish, &end)?;
            tx.finish_message(&id, &message, MessageStatus::Completed, tokens, cost, None)
        });
        let reasoning = &turn.reasoning;
        if let Some(said) = conversation::assistant_message(&reasoning.text, reasoning.signature.as_deref(), &turn.text.text, &turn.calls) {
            self.messages.push(said);
        }
        Ok(Ok(turn))
    }

    /// Streams one completion into the turn, writing text in batches as it arrives.
    async fn stream(&self, request: CompletionRequest, turn: &mut Turn) -> Result<Result<(), CompletionError>, AgentError> {
        let mut stream = match self.env.host.complete_with(&self.session.model, request, self.env.overrides.as_deref()).await {
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
            self.track(&event);
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
                StreamEvent::Usage(u) => turn.tokens = conversation::reported_tokens(&u),
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

    /// Notes what `event` adds to the turn in flight.
    fn track(&self, event: &StreamEvent) {
        let mut in_flight = self.env.in_flight.lock().expect("not poisoned");
        let Some(turn) = in_flight.as_mut() else { return };
        match event {
            StreamEvent::TextDelta(delta) | StreamEvent::ReasoningDelta(delta) => turn.streamed += delta.len(),
            StreamEvent::ToolCallDelta(delta) => turn.streamed += delta.arguments.len(),
            StreamEvent::Usage(u) => turn.reported = Some(conversation::reported_tokens(u)),
            _ => {}
        }
    }

    /// Writes the streamed text not yet written, as one batch.
    fn flush(&self, turn: &mut Turn) {
        let writes = [turn.reasoning.take(PartKind::Reasoning), turn.text.take(PartKind::Text)];
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
                decision = if self.env.broker.mode() == AskMode::Prompt { Action::Ask } else { Action::Deny };
            }
            prepared.push(PreparedCall { call: call.clone(), part: part.clone(), input, subject, decision, doom_loop, hook_refusal });
        }
        // What the calls change in the workspace is seen between two snapshots.
        let writers = prepared.iter().any(|p| p.decision != Action::Deny && self.may_change_files(&p.call.name));
        let snapshots = self.env.snapshots.clone().filter(|_| writers);
        let before = match &snapshots {
            Some(s) => self.snapshot(s).await,
            None => None,
        };
        // The calls the rules settle start (or are refused) together, in one transaction.
        let started = now_ms();
        let settled: Vec<(String, ToolPart)> = prepared
            .iter()
            .filter(|p| p.decision != Action::Ask)
            .map(|p| {
                let tool = p.tool_part();
                let tool = match p.decision {
                    Action::Allow => tool.running(started),
                    _ => tool.failed(started, self.refusal(p), None),
                };
                (p.part.clone(), tool)
            })
            .collect();
        if !settled.is_empty() {
            let id = self.session.id.clone();
            self.later(move |tx| settled.iter().try_for_each(|(part, tool)| tx.update_tool(&id, part, tool)));
        }
        let ends = futures::future::join_all(prepared.iter().map(|p| self.run_tool_call(p, started))).await;
        let mut results = Vec::new();
        let limit = self.env.settings.tool_output_limit;
        for (p, end) in prepared.iter().zip(ends) {
            let end = end?;
            let content = match context::cut_tool_output(&end.content, limit, &p.part) {
                std::borrow::Cow::Borrowed(_) => end.content,
                std::borrow::Cow::Owned(cut) => cut,
            };
            results.push(ContentPart::ToolResult(ToolResult { call_id: p.call.id.clone(), content, is_error: end.is_error }));
        }
        if !results.is_empty() {
            self.messages.push(Message { role: Role::Tool, parts: results });
        }
        if let (Some(snapshots), Some(before)) = (snapshots, before)
            && let Some(after) = self.snapshot(&snapshots).await
        {
            let mut changes = tokio::task::spawn_blocking(move || snapshots.changes(&before, &after)).await.unwrap_or_default();
            // A diff can hold what a command copied from anywhere: the secrets are masked, as
            // in any tool output (every plugin's redactor masks the same values).
            let redactor = self.env.host.redactor();
            for change in &mut changes {
                change.diff = redactor.redact(&change.diff).into_owned();
            }
            if !changes.is_empty() {
                let (id, message, data) = (self.session.id.clone(), turn.message_id.clone(), json!({ "files": changes }));
                self.later(move |tx| tx.insert_part(&new_id("prt"), &id, &message, PartKind::Patch, &data));
            }
        }
        Ok(())
    }

    /// Whether a call of `tool` may change files: its plugin may write somewhere, or run
    /// commands.
    fn may_change_files(&self, tool: &str) -> bool {
        self.env.host.registry().tool(tool).is_some_and(|(_, owner)| owner.may_write())
    }

    /// The workspace as it is now; `None` (with a warning) when it cannot be taken.
    async fn snapshot(&self, snapshots: &Arc<crate::snapshot::Snapshots>) -> Option<crate::snapshot::Tree> {
        let snapshots = snapshots.clone();
        match tokio::task::spawn_blocking(move || snapshots.take()).await {
            Ok(Ok(tree)) => Some(tree),
            Ok(Err(why)) => {
                tracing::warn!(session = %self.session.id, "cannot snapshot the workspace, so this turn's changes cannot be undone: {why}");
                None
            }
            Err(e) => {
                tracing::warn!(session = %self.session.id, error = %e, "the workspace snapshot failed");
                None
            }
        }
    }

    /// Reverts the session to its message `to` ([`undo::plan`]): puts back the files the
    /// later turns changed, then marks those turns reverted (`session.reverted`).
    async fn revert(&mut self, to: &str) -> Result<Reverted, AgentError> {
        self.sync().await?;
        let history = self.env.store.history(&self.session.id).await?;
        let plan = undo::plan(&history, to).map_err(AgentError::Invalid)?;
        let done = match (&self.env.snapshots, plan.files.is_empty()) {
            (_, true) => Vec::new(),
            (None, false) => {
                return Err(AgentError::Invalid("the files cannot be put back: [sessions] snapshots is off".into()));
            }
            (Some(snapshots), false) => {
                let (snapshots, files) = (snapshots.clone(), plan.files.clone());
                tokio::task::spawn_blocking(move || snapshots.put_back(&files))
                    .await
                    .map_err(|e| AgentError::Internal(format!("putting the files back: {e}")))?
                    .map_err(AgentError::Invalid)?
            }
        };
        let files = done
            .into_iter()
            .map(|(path, restored)| RestoredFile { path, action: if restored { "restored" } else { "removed" }.into() })
            .collect();
        let reverted = Reverted { to: to.to_string(), messages: plan.messages, files };
        let (id, ids, detail) = (self.session.id.clone(), reverted.messages.clone(), serde_json::to_value(&reverted).unwrap_or_default());
        self.env.store.write(move |tx| tx.revert_messages(&id, &ids, detail)).await?;
        Ok(reverted)
    }

    /// What the `tool.before` hooks decided for each call of the turn, in order; `None` for
    /// every call when no hook handles that point.
    async fn tool_before_hooks(&self, turn: &Turn) -> Vec<Option<ToolDecision>> {
        let (host, ctx) = (&self.env.host, self.hook_context());
        let ctx = &ctx;
        let decisions = turn.calls.iter().map(|call| tool_hooks::before(host, ctx, &call.id, &call.name, parse_arguments(&call.arguments)));
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
        let mut tool = p.tool_part().running(started);
        match p.decision {
            Action::Deny => return Ok(CallEnd { content: self.refusal(p), is_error: true }),
            Action::Allow => {}
            Action::Ask => {
                let reason = if p.doom_loop { "doom-loop" } else { "rule" };
                let reply = self.env.broker.ask(id, &p.call.id, &p.call.name, &p.subject, reason).await;
                let started = now_ms();
                let refusal = match reply {
                    Reply::Once => None,
                    Reply::Always => {
                        let rule = Rule::new(permission::session_rule(&p.call.name, &p.subject)).expect("escaped globs are valid");
                        self.rules.lock().expect("not poisoned").push(rule);
                        None
                    }
                    Reply::Reject(why) => Some(format!("the user rejected this call{}", why.map(|w| format!(": {w}")).unwrap_or_default())),
                };
                if let Some(refusal) = refusal {
                    self.record(&p.part, p.tool_part().failed(started, refusal.clone(), None));
                    return Ok(CallEnd { content: refusal, is_error: true });
                }
                tool = p.tool_part().running(started);
                self.record(&p.part, tool.clone());
            }
        }
        let context = CallContext { session_id: id.into(), call_id: p.call.id.clone() };
        let arguments = if p.input.is_object() { p.input.to_string() } else { p.call.arguments.clone() };
        let result = self.env.host.call_tool(&p.call.name, &arguments, &context, Some(self.output_sink(p))).await;
        let result = self.tool_after_hooks(p, result).await;
        let (end, tool) = match result {
            Ok(output) => {
                if crate::first_party::writes_files(&p.call.name) {
                    let path = output.metadata.as_ref().and_then(|m| m["path"].as_str()).unwrap_or(&p.subject);
                    self.files_modified.lock().expect("not poisoned").insert(path.to_string());
                }
                let end = CallEnd { content: output.text.clone(), is_error: false };
                (end, tool.completed(now_ms(), output.text, output.title, output.metadata))
            }
            Err(failure) => {
                // The detail is for the operator (the event log, the API): what would grant it.
                let end = CallEnd { content: failure.for_model.clone(), is_error: true };
                (end, tool.failed(now_ms(), failure.for_model, Some(failure.error.to_string())))
            }
        };
        self.record(&p.part, tool);
        Ok(end)
    }

    /// Runs the `tool.after` hooks on a call's result (an error as the model is told it): they may replace its text and title
    /// (or the text of an error).
    async fn tool_after_hooks(
        &self,
        p: &PreparedCall,
        result: Result<crate::runtime::ToolOutput, crate::runtime::CallError>,
    ) -> Result<crate::runtime::ToolOutput, CallFailure> {
        tool_hooks::after(self.env.host, &self.hook_context(), &p.call.id, &p.call.name, &p.input, result).await
    }

    /// Where a call's live output goes: `tool.output` events, in order with its states.
    fn output_sink(&self, p: &PreparedCall) -> ProgressSink {
        let store = self.env.store.clone();
        let (id, part, call, tool) = (self.session.id.clone(), p.part.clone(), p.call.id.clone(), p.call.name.clone());
        Arc::new(move |text: &str| {
            let (id, data) = (id.clone(), json!({ "part_id": part, "call_id": call, "tool": tool, "text": text }));
            drop(store.write(move |tx| tx.emit(Some(&id), "tool.output", data)));
        })
    }

    /// Records a tool part's new state.
    fn record(&self, part: &str, tool: ToolPart) {
        let (id, part) = (self.session.id.clone(), part.to_string());
        self.later(move |tx| tx.update_tool(&id, &part, &tool));
    }

    /// What `tokens` cost on the session's model, in US dollars (nothing when the model is
    /// no longer loaded).
    fn cost(&self, tokens: Tokens) -> f64 {
        self.cost_on(&self.session.model, tokens)
    }

    /// What `tokens` cost on `model`.
    fn cost_on(&self, model: &str, tokens: Tokens) -> f64 {
        self.model_info(model).map_or(0.0, |info| conversation::cost(&info.price, tokens))
    }

    /// What the registry says of `model` (`None` when it is no longer served).
    fn model_info(&self, model: &str) -> Option<ModelInfo> {
        self.env.host.registry().models().find(|(r, _, _)| r == model).map(|(_, info, _)| info.clone())
    }

    /// The characters a request sends beside the conversation: the system prompt and the
    /// tools, as a turn now would send them.
    fn fixed_chars(&self) -> usize {
        let system = self.system_prompt.len() + self.session.options.system_prompt.as_ref().map_or(0, |s| s.len() + 2);
        system + context::tools_chars(&self.offered_tools(false))
    }

    /// Holds `request` to the model's context: past `[sessions] compact_at` of the budget
    /// the conversation is compacted first; a request that still does not fit is refused
    /// (never sent); and the answer asked for is no longer than the context has room for.
    /// A prompt too large for half the budget is not summarized away: it is refused.
    async fn fit_to_context(&mut self, request: &mut CompletionRequest, info: &ModelInfo) -> Result<(), AgentError> {
        let window = Window::new(info.context_tokens, info.output_tokens);
        let budget = window.budget();
        let mut input = self.estimator.tokens(context::request_chars(request));
        let settings = self.env.settings;
        let over_threshold = input as f64 > budget as f64 * settings.compact_at;
        if settings.auto_compact && over_threshold && !self.newest_prompt_exceeds(budget / 2) {
            match self.compact(CompactionReason::Auto, context::fixed_chars(request)).await {
                Ok(Some(_)) => {
                    request.messages = self.messages.clone();
                    input = self.estimator.tokens(context::request_chars(request));
                }
                Ok(None) => {}
                Err(e) if input <= budget => {
                    tracing::warn!(session = %self.session.id, error = %e, "the compaction failed; the request still fits and is sent as it is");
                }
                Err(e) => return Err(e),
            }
        }
        if input > budget {
            return Err(AgentError::ContextOverflow {
                model: self.session.model.clone(),
                estimated: input,
                budget,
                context: window.context,
            });
        }
        let wanted = request.max_output_tokens.unwrap_or(info.output_tokens).min(info.output_tokens);
        request.max_output_tokens = Some(wanted.min(window.room_after(input)).max(1));
        Ok(())
    }

    /// Whether the newest prompt alone is estimated at more than `tokens`: the last part of
    /// the last user message (prompts in a row are sent as one message, newest last).
    fn newest_prompt_exceeds(&self, tokens: u64) -> bool {
        let newest = self.messages.iter().rev().find(|m| m.role == Role::User).and_then(|m| m.parts.last());
        newest.is_some_and(|part| self.estimator.tokens(context::part_chars(part)) > tokens)
    }

    /// Compacts the conversation ([`compaction`]): summarizes what [`compaction::plan`]
    /// picks with `[sessions] compaction_model` (the session's model by default), records
    /// it as a message of its own (`session.compacting`, then `session.compacted` or
    /// `session.compaction_failed`), and goes on with the summary in place of what it
    /// covers. `fixed_chars` is what the request sends beside the conversation (for the
    /// tokens before and after). `None` when there is nothing to compact.
    async fn compact(&mut self, reason: CompactionReason, fixed_chars: usize) -> Result<Option<Compaction>, AgentError> {
        let model = self.env.settings.compaction_model.clone().unwrap_or_else(|| self.session.model.clone());
        let Some(summarizer) = self.model_info(&model) else {
            let available = self.env.host.registry().models().map(|(r, _, _)| r).collect();
            return Err(CompletionError::UnknownModel { model, available }.into());
        };
        let own = self.model_info(&self.session.model).unwrap_or_else(|| summarizer.clone());
        let budget = Window::new(own.context_tokens, own.output_tokens).budget();
        let limit = self.env.settings.tool_output_limit;
        self.sync().await?;
        let mut history = self.env.store.history(&self.session.id).await?;
        let Some(plan) = compaction::plan(&history, budget, limit, &self.estimator) else { return Ok(None) };
        let tokens_before = self.estimator.tokens(fixed_chars + context::message_chars(&self.messages));
        let window = Window::new(summarizer.context_tokens, summarizer.output_tokens);
        let max_summary = self.estimator.chars(u64::from(compaction::summary_tokens(Window::new(own.context_tokens, own.output_tokens))));
        let (instructions, written) = self.compaction_hooks(&plan, reason, &model, window, max_summary).await;
        let by_hook = written.as_ref().map(|s| s.hook.clone());
        let (id, message) = (self.session.id.clone(), new_id("msg"));
        let writer = by_hook.is_none().then(|| model.clone());
        let mut started = json!({ "message_id": message, "reason": reason, "model": model, "tokens_before": tokens_before });
        if let Some(hook) = by_hook {
            started["hook"] = json!(hook);
        }
        let key = message.clone();
        self.later(move |tx| {
            tx.emit(Some(&id), "session.compacting", started)?;
            tx.insert_message(&key, &id, MessageRole::Assistant, writer.as_deref(), MessageStatus::Running, None)
        });
        let summarized = match written {
            Some(written) => Ok((written.text, Tokens::default(), Some(written.hook))),
            None => {
                let request = compaction::request(&plan.summarized, window, &self.estimator, &instructions);
                let same_provider = provider_of(&model) == provider_of(&self.session.model);
                let overrides = if same_provider { self.env.overrides.clone() } else { None };
                compaction::summarize(self.env.host, &model, request, overrides.as_deref()).await.map(|(s, t)| (s, t, None))
            }
        };
        let (summary, tokens, hook) = match summarized {
            Ok(done) => done,
            Err(error) => {
                let (id, key, text) = (self.session.id.clone(), message.clone(), error.to_string());
                self.later(move |tx| {
                    tx.finish_message(&id, &key, MessageStatus::Error, Tokens::default(), 0.0, Some(&text))?;
                    tx.emit(Some(&id), "session.compaction_failed", json!({ "message_id": key, "error": text }))
                });
                return Err(error.into());
            }
        };
        let cost = self.cost_on(&model, tokens);
        let mut data = json!({ "summary": summary, "through": plan.through, "reason": reason });
        if let Some(hook) = &hook {
            data["hook"] = json!(hook);
        }
        let part = PartRecord { id: new_id("prt"), kind: PartKind::Compaction, data: data.clone() };
        history.push(MessageRecord {
            id: message.clone(),
            role: MessageRole::Assistant,
            status: MessageStatus::Completed,
            model: hook.is_none().then(|| model.clone()),
            error: None,
            tokens,
            cost,
            created_at: now_ms(),
            reverted_at: None,
            parts: vec![part.clone()],
        });
        self.messages = provider_messages(&history, limit);
        let tokens_after = self.estimator.tokens(fixed_chars + context::message_chars(&self.messages));
        let done =
            Compaction { message_id: message, through: plan.through, reason, model, hook, tokens_before, tokens_after, tokens, cost };
        (data["tokens_before"], data["tokens_after"]) = (json!(tokens_before), json!(tokens_after));
        let (id, key, event) = (self.session.id.clone(), done.message_id.clone(), serde_json::to_value(&done).unwrap_or_default());
        self.later(move |tx| {
            tx.insert_part(&part.id, &id, &key, PartKind::Compaction, &data)?;
            tx.finish_message(&id, &key, MessageStatus::Completed, tokens, cost, None)?;
            tx.emit(Some(&id), "session.compacted", event)
        });
        self.compaction_usage.0 += tokens;
        self.compaction_usage.1 += cost;
        self.compaction = Some(done.clone());
        Ok(Some(done))
    }

    /// Runs the `session.compacting` hooks on what `plan` summarizes: the instructions to
    /// send after the transcript, and the summary with the hook that wrote it when one did.
    async fn compaction_hooks(
        &self,
        plan: &compaction::Plan,
        reason: CompactionReason,
        model: &str,
        window: Window,
        max_summary: usize,
    ) -> (compaction::Instructions, Option<crate::hooks::HookSummary>) {
        let hooks = self.env.host.hooks();
        let instructions = compaction::Instructions::default();
        if !hooks.handles(HookPoint::Compacting) {
            return (instructions, None);
        }
        let transcript = compaction::fitted_transcript(&plan.summarized, window, &self.estimator, &instructions.prompt);
        let info = crate::hooks::CompactionInfo {
            reason: reason.into(),
            model: model.to_string(),
            messages: u32::try_from(plan.messages).unwrap_or(u32::MAX),
            transcript,
        };
        let draft = crate::hooks::CompactionDraft { prompt: instructions.prompt, context: instructions.context, summary: None };
        let draft = hooks.compacting(&self.hook_context(), &info, draft, max_summary).await;
        let written = draft.summary.map(|s| crate::hooks::HookSummary { text: s.text.trim().to_string(), hook: s.hook });
        (compaction::Instructions { prompt: draft.prompt, context: draft.context }, written)
    }
}

/// A user message from an inbox input, which is consumed.
fn add_user_message(tx: &mut Tx, input: &InputRecord) -> rusqlite::Result<()> {
    tx.consume_input(&input.id)?;
    let message = new_id("msg");
    tx.insert_message(&message, &input.session_id, MessageRole::User, None, MessageStatus::Completed, Some(&input.id))?;
    tx.insert_part(&new_id("prt"), &input.session_id, &message, PartKind::Text, &json!({ "text": input.prompt }))?;
    tx.finish_message(&input.session_id, &message, MessageStatus::Completed, Tokens::default(), 0.0, None)
}
