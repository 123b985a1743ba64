//! Runs sessions: each session has at most one activity at a time, driven by a task of
//! its own that takes the session's inputs from the durable inbox in order; many sessions
//! run at once, up to `[sessions] max_concurrent` (the rest wait, with status `queued`).
//!
//! - [`AgentRuntime::submit`] stores an input (`steer` or `queue`) and wakes the session's
//!   driver; [`AgentRuntime::prompt`] does the same and waits for the activity's end.
//! - [`AgentRuntime::cancel`] stops the running activity (its provider stream and tool
//!   calls are dropped), records what was unfinished as aborted, drops pending inputs, and
//!   leaves the session idle.
//! - [`AgentRuntime::recover`] closes what crashed processes left unfinished and resumes
//!   their pending inputs.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::FutureExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::activity::{Activity, Consumed, Env, InFlight, Outcome};
use super::compaction::Compaction;
use super::error::AgentError;
use super::permission::{AskMode, PermissionBroker, Reply};
use super::tool_hooks::DirectCall;
use super::undo::Reverted;
use super::{Agent, Agents, AgentsFeed, agent_named};
use crate::capability::ProviderOverrides;
use crate::runtime::PluginHost;
use crate::runtime::provider::{CompletionError, provider_of};
use crate::runtime::state::ProgressSink;
use crate::store::events::now_ms;
use crate::store::inbox::{Delivery, InputKind, InputRecord};
use crate::store::lease::{Claim, LEASE_RENEWAL, OwnerId};
use crate::store::lifecycle::{Removed, SessionExport, check_export};
use crate::store::model::{Finish, MessageStatus, SessionStatus};
use crate::store::sessions::{SessionOptions, SessionRecord, Tokens, new_id};
use crate::store::{SessionStore, Tx};

/// An input that was stored and will be delivered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Admission {
    /// The input's id (user messages made from it carry it as `input_id`).
    pub input_id: String,
    /// The session.
    pub session_id: String,
    /// How it is delivered.
    pub delivery: Delivery,
}

/// What [`AgentRuntime::cancel`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Cancellation {
    /// The session.
    pub session_id: String,
    /// When (ms since the epoch).
    pub cancelled_at: i64,
    /// Whether an activity or pending inputs were stopped.
    pub was_running: bool,
}

/// `[sessions]` in `plugboard.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// Sessions running an activity at once; others wait with status `queued`.
    pub max_concurrent: usize,
    /// How long one activity may run, in seconds, before it is stopped (what it recorded
    /// stays, marked aborted); none by default. Queued inputs still run after it.
    pub timeout_seconds: Option<u64>,
    /// Attempts after the first when a provider turn fails with an error worth retrying
    /// (a 429, a 5xx, a cut stream). The waits are what the API asks (`retry-after`), else
    /// 1 s doubling up to 30 s: the default of 6 waits about a minute in all, which outlasts
    /// a rate limit window or a brief overload.
    pub max_retries: u32,
    /// Compact a session's conversation before a provider turn whose request passes this
    /// share of the model's budget (its context less the room kept for the answer).
    pub compact_at: f64,
    /// Whether to compact on its own (`compact_at`); requested compactions run either way.
    pub auto_compact: bool,
    /// The model that writes summaries (`provider/model`); the session's own by default.
    pub compaction_model: Option<String>,
    /// Longest tool output the model sees, in bytes: a longer one is cut in the middle,
    /// with a note of where the whole of it is stored.
    pub tool_output_limit: usize,
    /// Snapshot the workspace around tool calls that may change files, so that their
    /// changes are recorded with diffs and can be reverted.
    pub snapshots: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            max_concurrent: 64,
            timeout_seconds: None,
            max_retries: 6,
            compact_at: 0.8,
            auto_compact: true,
            compaction_model: None,
            tool_output_limit: 32 * 1024,
            snapshots: true,
        }
    }
}

/// What a new session is made of.
#[derive(Debug, Clone, Default)]
pub struct SessionSpec {
    /// Its id (a new one when absent): 1 to 128 letters, digits, `_`, `-` or `.`.
    pub id: Option<String>,
    /// The agent.
    pub agent: String,
    /// The model, as `provider/model` (default: the agent's, the configured default, or the
    /// only model there is).
    pub model: Option<String>,
    /// A title.
    pub title: String,
    /// Model options for each of its turns (stored with it).
    pub options: SessionOptions,
    /// Its own API key or endpoint (kept in memory only, for as long as this runtime lives).
    pub overrides: ProviderOverrides,
}

/// The task that runs one session's activities, as the rest of the runtime sees it.
pub(super) struct Driver {
    /// Bumped whenever an input is admitted for the session.
    pub(super) wakeups: AtomicU64,
    cancel: Mutex<CancellationToken>,
    cancel_requests: AtomicU64,
    /// Cancel requests handled so far (`u64::MAX` once the driver has stopped).
    acks: watch::Sender<u64>,
}

impl Driver {
    fn new() -> Self {
        Driver {
            wakeups: AtomicU64::new(0),
            cancel: Mutex::new(CancellationToken::new()),
            cancel_requests: AtomicU64::new(0),
            acks: watch::channel(0).0,
        }
    }

    fn token(&self) -> CancellationToken {
        self.cancel.lock().expect("not poisoned").clone()
    }

    /// When a cancel was requested: a fresh token for what comes next, and the number of
    /// requests this handles.
    fn take_cancel(&self) -> Option<u64> {
        let mut token = self.cancel.lock().expect("not poisoned");
        if !token.is_cancelled() {
            return None;
        }
        *token = CancellationToken::new();
        Some(self.cancel_requests.load(Ordering::SeqCst))
    }
}

type Waiter = oneshot::Sender<Result<Outcome, AgentError>>;

/// Why an activity was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// [`AgentRuntime::cancel`].
    Cancelled,
    /// `[sessions] timeout_seconds` (the limit).
    TimedOut(u64),
    /// [`AgentRuntime::shutdown`] after its grace period.
    Shutdown,
}

/// Runs sessions: the plugins, the store, the permission broker and the agents.
pub struct AgentRuntime {
    pub(super) host: Arc<PluginHost>,
    pub(super) store: SessionStore,
    pub(super) broker: Arc<PermissionBroker>,
    /// The agents in force (a configuration reload sends new ones).
    agents: AgentsFeed,
    slots: Arc<Semaphore>,
    /// `[sessions]`.
    settings: SessionSettings,
    /// The workspace's snapshots, when `[sessions] snapshots` is on.
    snapshots: Option<Arc<crate::snapshot::Snapshots>>,
    drivers: Mutex<HashMap<String, Arc<Driver>>>,
    /// Who waits for which input (by input id: the session and the answer's channel).
    waiters: Mutex<HashMap<String, (String, Waiter)>>,
    /// Per-session provider overrides (secrets: memory only).
    overrides: Mutex<HashMap<String, Arc<ProviderOverrides>>>,
    /// Set by [`AgentRuntime::shutdown`]: no new input, drivers stop at the next input.
    closing: AtomicBool,
    /// The last event the `event` hooks were offered.
    hooked: watch::Receiver<i64>,
}

impl AgentRuntime {
    /// A runtime over loaded plugins and an open store, running the agents `agents` sends
    /// under the session limits `settings`. Permission questions are answered per `mode`.
    /// Must be called inside a Tokio runtime (it starts the task that renews session
    /// leases). The application layer ([`crate::app::App::agent_runtime`]) makes one from
    /// the configuration.
    pub fn new(
        host: Arc<PluginHost>,
        agents: AgentsFeed,
        settings: &SessionSettings,
        store: SessionStore,
        mode: AskMode,
    ) -> Result<Arc<Self>, AgentError> {
        let max_concurrent = settings.max_concurrent;
        if max_concurrent == 0 {
            return Err(AgentError::Config("[sessions] max_concurrent must be at least 1".into()));
        }
        if settings.timeout_seconds == Some(0) {
            return Err(AgentError::Config("[sessions] timeout_seconds must be at least 1".into()));
        }
        if !(settings.compact_at > 0.0 && settings.compact_at <= 1.0) {
            return Err(AgentError::Config(format!("[sessions] compact_at must be above 0 and at most 1 (is {})", settings.compact_at)));
        }
        if settings.tool_output_limit < 1024 {
            return Err(AgentError::Config(format!(
                "[sessions] tool_output_limit must be at least 1024 bytes (is {})",
                settings.tool_output_limit
            )));
        }
        let snapshots = settings.snapshots.then(|| {
            let data_dir = store.path().parent().map(std::path::Path::to_path_buf).unwrap_or_default();
            Arc::new(crate::snapshot::Snapshots::new(host.workspace(), &data_dir))
        });
        let broker = Arc::new(PermissionBroker::new(store.clone(), mode));
        let log = store.clone();
        host.attach_events(Arc::new(move |session, events| {
            let session = session.map(str::to_string);
            drop(log.write(move |tx| events.into_iter().try_for_each(|(kind, data)| tx.emit(session.as_deref(), kind, data))));
        }));
        let hooked = super::event_hooks::deliver_events(&store, Arc::downgrade(&host));
        let runtime = Arc::new(AgentRuntime {
            hooked,
            host,
            store,
            broker,
            agents,
            slots: Arc::new(Semaphore::new(max_concurrent)),
            settings: settings.clone(),
            snapshots,
            drivers: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            overrides: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
        });
        tokio::spawn(renew_leases(Arc::downgrade(&runtime)));
        Ok(runtime)
    }

    /// One call of `tool` outside any session, with the hooks in force, recorded in the
    /// event log ([`super::tool_hooks`]): for `tool call --with-hooks` and the HTTP API.
    pub async fn call_tool_with_hooks(&self, tool: &str, arguments: Value, progress: Option<ProgressSink>) -> DirectCall {
        super::tool_hooks::direct_call(&self.host, &self.store, tool, arguments, progress).await
    }

    /// Waits until the `event` hooks have been offered every event up to `seq`, at most
    /// `patience`; whether they have. For a one-off command, before it exits.
    pub async fn event_hooks_reached(&self, seq: i64, patience: std::time::Duration) -> bool {
        let mut hooked = self.hooked.clone();
        tokio::time::timeout(patience, hooked.wait_for(|handled| *handled >= seq)).await.is_ok_and(|r| r.is_ok())
    }

    /// The store.
    pub fn store(&self) -> &SessionStore {
        &self.store
    }

    /// The permission broker.
    pub fn broker(&self) -> &Arc<PermissionBroker> {
        &self.broker
    }

    /// The plugins this runtime runs.
    pub fn host(&self) -> &Arc<PluginHost> {
        &self.host
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
        let spec = SessionSpec { id, agent: agent.into(), model: model.map(str::to_string), title: title.into(), ..Default::default() };
        self.create_session_with(spec).await
    }

    /// Creates a session as `spec` says, after checking every field of it: an error names
    /// the first field that cannot be used, and nothing is stored.
    pub async fn create_session_with(&self, spec: SessionSpec) -> Result<SessionRecord, AgentError> {
        let invalid = |field: &str, reason: String| AgentError::InvalidField { field: field.into(), reason };
        if let Some(id) = &spec.id {
            check_session_id(id)?;
        }
        let profile = self.agent(&spec.agent)?;
        let model = self.choose_model(spec.model.clone(), &profile)?;
        let options = &spec.options;
        crate::runtime::provider::check_sampling(options.temperature, options.max_tokens)
            .map_err(|(field, reason)| invalid(&format!("model_config.{field}"), reason))?;
        if let Some(tools) = &options.enabled_tools {
            let unknown: Vec<&str> =
                tools.iter().filter(|t| !self.host.registry().tools().any(|(d, _)| &d.name == *t)).map(String::as_str).collect();
            if !unknown.is_empty() {
                let available: Vec<String> = self.host.registry().tools().map(|(d, _)| d.name.clone()).collect();
                return Err(invalid(
                    "model_config.enabled_tools",
                    format!("no tool {} (available: {})", unknown.join(", "), available.join(", ")),
                ));
            }
        }
        let overrides = spec.overrides;
        if overrides != ProviderOverrides::default() {
            let provider = self.host.registry().models().find(|(r, _, _)| *r == model).map(|(_, _, p)| p.clone());
            if let Some(provider) = provider {
                provider
                    .policy()
                    .with_overrides(&provider.manifest, &overrides)
                    .map_err(|(f, m)| invalid(&format!("model_config.{f}"), m))?;
            }
        }
        let workspace = self.host.workspace().display().to_string();
        let record = self.store.create_session(spec.id, &spec.agent, &model, &workspace, &spec.title, options).await?;
        if overrides != ProviderOverrides::default() {
            self.overrides.lock().expect("not poisoned").insert(record.id.clone(), Arc::new(overrides));
        }
        let hooks = self.host.hooks();
        if hooks.handles(crate::hooks::HookPoint::SessionCreated) {
            let ctx = crate::hooks::HookContext { session_id: record.id.clone(), agent: record.agent.clone() };
            let (model, title) = (record.model.clone(), record.title.clone());
            tokio::spawn(async move { hooks.session_created(&ctx, &model, &title).await });
        }
        Ok(record)
    }

    /// Deletes session `id` with everything it recorded: what it is doing stops first, as
    /// with [`Self::cancel`]. Refused while another live process runs it. Says what was
    /// removed.
    pub async fn delete(self: &Arc<Self>, id: &str) -> Result<Removed, AgentError> {
        self.cancel(id).await?;
        // The driver leaves as soon as it finds the inbox empty.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.drivers.lock().expect("not poisoned").contains_key(id) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let key = id.to_string();
        let removed = self
            .store
            .write(move |tx| match claim(tx, &key, OwnerId::current())? {
                Err(refused) => Ok(Err(refused)),
                Ok(_) => Ok(tx.delete_session(&key)?.ok_or(AgentError::NotFound(key))),
            })
            .await??;
        self.overrides.lock().expect("not poisoned").remove(id);
        Ok(removed)
    }

    /// A new session (`new`, or a new id) from session `id` up to and including its message
    /// `through` (all of it when `None`); see [`crate::store::Tx::fork_session`].
    pub async fn fork(
        &self,
        id: &str,
        through: Option<String>,
        new: Option<String>,
        title: Option<String>,
    ) -> Result<SessionRecord, AgentError> {
        if let Some(new) = &new {
            check_session_id(new)?;
        }
        let (source, new) = (id.to_string(), new.unwrap_or_else(|| new_id("ses")));
        Ok(self.store.write(move |tx| tx.fork_session(&source, through.as_deref(), &new, title.as_deref())).await??)
    }

    /// Stores an exported session as it was (see [`crate::store::Tx::import_session`]); the
    /// inputs it left pending run here.
    pub async fn import(self: &Arc<Self>, doc: SessionExport) -> Result<SessionRecord, AgentError> {
        if let Some(why) = check_export(&doc) {
            return Err(AgentError::Invalid(format!("the export cannot be imported: {why}")));
        }
        let pending = doc.inputs.iter().any(|i| i.status == crate::store::model::InputStatus::Pending);
        let record = self.store.write(move |tx| tx.import_session(&doc)).await??;
        if pending {
            self.wake(&record.id);
        }
        Ok(record)
    }

    /// Switches session `id` to `model` (`provider/model`), which must be served, from its
    /// next activity on; a running activity ends on the model it began with. The history
    /// goes to the new provider as to any (each provider translates the conversation, and
    /// drops what its API cannot take, such as another provider's reasoning). The session's
    /// own API key and endpoint were given for its provider: they are dropped when the new
    /// model is another provider's, so they never reach another API.
    pub async fn set_model(&self, id: &str, model: &str) -> Result<SessionRecord, AgentError> {
        let registry = self.host.registry();
        if !registry.models().any(|(r, _, _)| r == model) {
            let available = registry.models().map(|(r, _, _)| r).collect();
            return Err(AgentError::Provider(CompletionError::UnknownModel { model: model.to_string(), available }));
        }
        let before = self.store.session(id).await?;
        let record = self.store.set_model(id, model).await?;
        if provider_of(&before.model) != provider_of(model) {
            self.overrides.lock().expect("not poisoned").remove(id);
        }
        Ok(record)
    }

    /// The provider overrides of session `id`, if it has any.
    fn provider_overrides(&self, id: &str) -> Option<Arc<ProviderOverrides>> {
        self.overrides.lock().expect("not poisoned").get(id).cloned()
    }

    /// The model of a new session: the one asked for, the agent's, the configured default,
    /// or the only one there is; it must be served.
    fn choose_model(&self, model: Option<String>, profile: &Agent) -> Result<String, AgentError> {
        let model = match model.or_else(|| profile.model.clone()).or_else(|| self.agents().default_model.clone()) {
            Some(m) => m,
            None => {
                let models: Vec<String> = self.host.registry().models().map(|(r, _, _)| r).collect();
                match models.as_slice() {
                    [only] => only.clone(),
                    _ => return Err(AgentError::NoModel { available: models }),
                }
            }
        };
        if !self.host.registry().models().any(|(r, _, _)| r == model) {
            return Err(
                CompletionError::UnknownModel { model, available: self.host.registry().models().map(|(r, _, _)| r).collect() }.into()
            );
        }
        Ok(model)
    }

    /// The agent `name` as the configuration in force defines it.
    fn agent(&self, name: &str) -> Result<Agent, AgentError> {
        agent_named(&self.agents().profiles, name)
    }

    /// The agents in force.
    fn agents(&self) -> Arc<Agents> {
        self.agents.borrow().clone()
    }

    /// Stores an input for session `id` and has it delivered: at once when the session is
    /// idle; otherwise a `steer` joins the running activity at its next provider-turn
    /// boundary and a `queue` waits for an activity of its own.
    pub async fn submit(self: &Arc<Self>, id: &str, text: &str, delivery: Delivery) -> Result<Admission, AgentError> {
        let input = self.admit(id, new_id("inp"), InputKind::Prompt, text, delivery).await?;
        self.wake(id);
        Ok(Admission { input_id: input.id, session_id: input.session_id, delivery })
    }

    /// The status of a session whose input was just admitted, before its driver records
    /// one: `queued` when every slot under `[sessions] max_concurrent` is taken, else `busy`.
    pub fn admitted_status(&self) -> SessionStatus {
        if self.slots.available_permits() == 0 { SessionStatus::Queued } else { SessionStatus::Busy }
    }

    /// Runs one prompt in session `id` (queued behind the running activity, if any) and
    /// waits for the end of the activity it opens.
    pub async fn prompt(self: &Arc<Self>, id: &str, text: &str) -> Result<Outcome, AgentError> {
        self.run_input(id, InputKind::Prompt, text).await
    }

    /// Compacts session `id` (after the inputs queued before this one): the older part of
    /// what its model sees is summarized and the summary sent in its place from then on.
    /// Fails when there is nothing to compact.
    pub async fn compact(self: &Arc<Self>, id: &str) -> Result<Compaction, AgentError> {
        let outcome = self.run_input(id, InputKind::Compact, "").await?;
        outcome.compaction.ok_or_else(|| AgentError::NothingToCompact(id.to_string()))
    }

    /// Reverts session `id` to its message `to` (after the inputs queued before this one):
    /// the files its later turns changed are put back as they were before them, and those
    /// turns are marked reverted (the model no longer sees them; the history keeps them).
    pub async fn revert(self: &Arc<Self>, id: &str, to: &str) -> Result<Reverted, AgentError> {
        if to.is_empty() {
            return Err(AgentError::InvalidField { field: "message_id".into(), reason: "name the message to revert to".into() });
        }
        let outcome = self.run_input(id, InputKind::Revert, to).await?;
        outcome.reverted.ok_or_else(|| AgentError::Internal("the revert ended without saying what it did".into()))
    }

    /// Stores an input of `kind` for session `id`, queued, and waits for the end of the
    /// activity it opens.
    async fn run_input(self: &Arc<Self>, id: &str, kind: InputKind, text: &str) -> Result<Outcome, AgentError> {
        let input_id = new_id("inp");
        let (sender, answer) = oneshot::channel();
        self.waiters.lock().expect("not poisoned").insert(input_id.clone(), (id.to_string(), sender));
        if let Err(e) = self.admit(id, input_id.clone(), kind, text, Delivery::Queue).await {
            self.waiters.lock().expect("not poisoned").remove(&input_id);
            return Err(e);
        }
        self.wake(id);
        answer.await.unwrap_or_else(|_| Err(AgentError::Internal("the session's driver stopped without an answer".into())))
    }

    /// Validates and stores an input, taking the session's lease (so a session that a live
    /// process runs refuses it, and one a dead process left is recovered first).
    async fn admit(&self, id: &str, input_id: String, kind: InputKind, text: &str, delivery: Delivery) -> Result<InputRecord, AgentError> {
        if self.closing.load(Ordering::SeqCst) {
            return Err(AgentError::ShuttingDown);
        }
        let mut text = text.to_string();
        let hooks = self.host.hooks();
        if kind == InputKind::Prompt {
            super::check_prompt(&text).map_err(|reason| AgentError::InvalidInput(format!("the prompt {reason}")))?;
        }
        if kind == InputKind::Prompt && hooks.handles(crate::hooks::HookPoint::PromptBefore) {
            let session = self.store.session(id).await?;
            let ctx = crate::hooks::HookContext { session_id: session.id, agent: session.agent };
            text = hooks.prompt_before(&ctx, text).await?;
        }
        let key = id.to_string();
        self.store
            .write(move |tx| match claim(tx, &key, OwnerId::current())? {
                Err(refused) => Ok(Err(refused)),
                Ok(_) => Ok(Ok(tx.admit(&key, &input_id, kind, delivery, &text)?)),
            })
            .await?
    }

    /// Makes sure a driver runs session `id` and tells it there is input.
    fn wake(self: &Arc<Self>, id: &str) {
        let mut drivers = self.drivers.lock().expect("not poisoned");
        if let Some(driver) = drivers.get(id) {
            driver.wakeups.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let driver = Arc::new(Driver::new());
        drivers.insert(id.to_string(), driver.clone());
        tokio::spawn(self.clone().drive(id.to_string(), driver));
    }

    /// Stops what session `id` is doing: the running activity (its provider stream and tool
    /// calls), and its pending inputs. Unfinished messages and tool calls are recorded as
    /// aborted; the session is idle when this returns. The history stays.
    pub async fn cancel(self: &Arc<Self>, id: &str) -> Result<Cancellation, AgentError> {
        let driver = self.drivers.lock().expect("not poisoned").get(id).cloned();
        if let Some(driver) = driver {
            let mut acks = driver.acks.subscribe();
            let target = {
                let token = driver.cancel.lock().expect("not poisoned");
                let target = driver.cancel_requests.fetch_add(1, Ordering::SeqCst) + 1;
                token.cancel();
                target
            };
            let _ = acks.wait_for(|handled| *handled >= target).await;
            return Ok(Cancellation { session_id: id.into(), cancelled_at: now_ms(), was_running: true });
        }
        // Nothing runs here: drop pending inputs, closing what a stopped process left.
        let key = id.to_string();
        let me = OwnerId::current();
        let cancelled = self
            .store
            .write(move |tx| match claim(tx, &key, me)? {
                Err(refused) => Ok(Err(refused)),
                Ok(recovered) => {
                    let cancelled = tx.cancel_pending_inputs(&key)?;
                    tx.release_session(&key, me)?;
                    Ok(Ok(recovered.is_some() || !cancelled.is_empty()))
                }
            })
            .await??;
        Ok(Cancellation { session_id: id.into(), cancelled_at: now_ms(), was_running: cancelled })
    }

    /// Closes what stopped processes left unfinished (their turns are marked interrupted)
    /// and runs the inputs they left pending. Returns the sessions recovered.
    pub async fn recover(self: &Arc<Self>) -> Result<Vec<String>, AgentError> {
        let (recovered, pending) = self.store.recover_orphans().await?;
        for id in &pending {
            self.wake(id);
        }
        Ok(recovered)
    }

    /// Stops taking input, lets running activities finish for up to `grace`, then stops
    /// those still running: what they left unfinished is recorded as interrupted. Pending
    /// inputs stay in the inbox, and the sessions' leases are handed over, so the next
    /// process to start ([`Self::recover`]) runs them. Returns once everything is stored
    /// and the store closed (its log checkpointed), with the sessions that were stopped.
    pub async fn shutdown(self: &Arc<Self>, grace: std::time::Duration) -> Vec<String> {
        self.closing.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        while !self.drivers.lock().expect("not poisoned").is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let running: Vec<(String, Arc<Driver>)> =
            self.drivers.lock().expect("not poisoned").iter().map(|(id, d)| (id.clone(), d.clone())).collect();
        for (_, driver) in &running {
            let mut acks = driver.acks.subscribe();
            driver.cancel.lock().expect("not poisoned").cancel();
            let _ = acks.wait_for(|handled| *handled == u64::MAX).await;
        }
        if let Err(e) = self.store.close().await {
            tracing::warn!(error = %e, "{}", crate::store::CLOSE_FAILED);
        }
        running.into_iter().map(|(id, _)| id).collect()
    }

    /// A session's driver: takes its inputs in order and runs an activity for each, until
    /// the inbox is empty (or the runtime shuts down).
    async fn drive(self: Arc<Self>, id: String, driver: Arc<Driver>) {
        loop {
            if self.closing.load(Ordering::SeqCst) {
                let key = id.clone();
                // Queued before the driver is gone, so before the shutdown closes the store.
                let handed_over = self.store.write(move |tx| tx.hand_over_session(&key, OwnerId::current()));
                self.drivers.lock().expect("not poisoned").remove(&id);
                if let Err(e) = handed_over.await {
                    tracing::error!(session = %id, error = %e, "cannot hand the session over at shutdown");
                }
                self.resolve_session(&id, &Err(AgentError::ShuttingDown));
                break;
            }
            if !self.closing.load(Ordering::SeqCst)
                && let Some(handled) = driver.take_cancel()
            {
                let dropped = self.abort(&id, &[], Stop::Cancelled, None).await;
                self.resolve(&dropped, &Err(AgentError::Cancelled));
                driver.acks.send_replace(handled);
            }
            let seen = driver.wakeups.load(Ordering::SeqCst);
            match self.run_next(&id, &driver).await {
                Ok(true) => {}
                Ok(false) => {
                    let mut drivers = self.drivers.lock().expect("not poisoned");
                    if driver.wakeups.load(Ordering::SeqCst) != seen || driver.token().is_cancelled() {
                        continue;
                    }
                    drivers.remove(&id);
                    break;
                }
                Err(e) => {
                    tracing::error!(session = %id, error = %e, "the session's driver stops");
                    self.drivers.lock().expect("not poisoned").remove(&id);
                    self.resolve_session(&id, &Err(e));
                    break;
                }
            }
        }
        driver.acks.send_replace(u64::MAX);
    }

    /// Runs the activity the session's next input opens, under the concurrency limit and
    /// the driver's cancellation, and settles it whatever happens. False when the inbox was
    /// empty; an error only when the store fails.
    async fn run_next(&self, id: &str, driver: &Driver) -> Result<bool, AgentError> {
        let token = driver.token();
        let consumed: Consumed = Arc::default();
        let in_flight: InFlight = Arc::default();
        let work = async {
            let Some(_slot) = self.acquire_slot(id).await? else { return Ok(None) };
            let env = Env {
                host: &self.host,
                store: &self.store,
                broker: &self.broker,
                agents: self.agents(),
                overrides: self.provider_overrides(id),
                wakeups: &driver.wakeups,
                settings: &self.settings,
                in_flight: in_flight.clone(),
                snapshots: self.snapshots.clone(),
            };
            let Some(activity) = Activity::begin(env, id, &consumed).await? else { return Ok(None) };
            match self.settings.timeout_seconds {
                Some(limit) => tokio::time::timeout(std::time::Duration::from_secs(limit), activity.run())
                    .await
                    .unwrap_or(Err(AgentError::TimedOut(limit))),
                None => activity.run().await,
            }
            .map(Some)
        };
        let result = tokio::select! {
            biased;
            _ = token.cancelled() => Err(AgentError::Cancelled),
            result = AssertUnwindSafe(work).catch_unwind() => result.unwrap_or_else(|panic| {
                let what = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                Err(AgentError::Internal(format!("the activity panicked: {}", what.unwrap_or_default())))
            }),
        };
        let consumed = std::mem::take(&mut *consumed.lock().expect("not poisoned"));
        let spent = in_flight.lock().expect("not poisoned").take().map(|turn| turn.spent());
        let result = match result {
            Ok(None) => return Ok(false),
            Ok(Some(outcome)) => Ok(outcome),
            Err(AgentError::Cancelled) if self.closing.load(Ordering::SeqCst) => {
                self.abort(id, &consumed, Stop::Shutdown, spent).await;
                self.resolve(&consumed, &Err(AgentError::ShuttingDown));
                return Ok(true);
            }
            Err(AgentError::Cancelled) => {
                let handled = driver.take_cancel().unwrap_or(0);
                let mut dropped = self.abort(id, &consumed, Stop::Cancelled, spent).await;
                dropped.extend(consumed);
                self.resolve(&dropped, &Err(AgentError::Cancelled));
                driver.acks.send_replace(handled);
                return Ok(true);
            }
            Err(AgentError::TimedOut(limit)) => {
                self.abort(id, &consumed, Stop::TimedOut(limit), spent).await;
                Err(AgentError::TimedOut(limit))
            }
            Err(e @ (AgentError::Store(_) | AgentError::NotFound(_))) if consumed.is_empty() => return Err(e),
            Err(e @ AgentError::HeldElsewhere { .. }) => {
                // Its input failed; the next one (if any) fails the same way.
                let failed = !consumed.is_empty();
                self.resolve(&consumed, &Err(e));
                return Ok(failed);
            }
            Err(e) => {
                let key = id.to_string();
                let (internal, error) = (matches!(e, AgentError::Internal(_)), e.to_string());
                let ended = json!({ "finish": Finish::Error, "error": error, "input_ids": consumed });
                let settled = self
                    .store
                    .write(move |tx| {
                        if internal {
                            tx.close_unfinished(&key, MessageStatus::Interrupted, &format!("interrupted: {error}"), spent.as_ref())?;
                        }
                        tx.session_error(&key, &error)?;
                        tx.emit(Some(&key), "activity.completed", ended)?;
                        tx.set_status(&key, SessionStatus::Idle, json!({}))
                    })
                    .await;
                if let Err(store) = settled {
                    tracing::error!(session = %id, error = %store, "cannot record the end of an activity");
                }
                Err(e)
            }
        };
        self.resolve(&consumed, &result);
        Ok(true)
    }

    /// Waits for a free slot under `[sessions] max_concurrent`; the session is `queued`
    /// meanwhile. `None` when the inbox turns out to be empty.
    async fn acquire_slot(&self, id: &str) -> Result<Option<OwnedSemaphorePermit>, AgentError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Some(permit));
        }
        let key = id.to_string();
        let waiting = self
            .store
            .write(move |tx| {
                if tx.next_input(&key)?.is_none() {
                    tx.release_session(&key, OwnerId::current())?;
                    return Ok(false);
                }
                tx.set_status(
                    &key,
                    SessionStatus::Queued,
                    json!({ "reason": "the most sessions allowed at once ([sessions] max_concurrent) are running" }),
                )?;
                Ok(true)
            })
            .await?;
        if !waiting {
            return Ok(None);
        }
        let permit = self.slots.clone().acquire_owned().await.map_err(|_| AgentError::Internal("the session limit was closed".into()))?;
        Ok(Some(permit))
    }

    /// Records a stopped activity (one that answered `inputs`, when it had begun):
    /// unfinished messages and tool calls are aborted, questions it left are answered
    /// `reject`, and the session is idle. A cancel also drops pending inputs; a timeout
    /// leaves them to run; a shutdown records the activity as interrupted and leaves them
    /// for the next process. `spent` is what the turn in flight had used. Returns the
    /// dropped inputs.
    async fn abort(&self, id: &str, inputs: &[String], stop: Stop, spent: Option<(String, Tokens, f64)>) -> Vec<String> {
        let abandoned = self.broker.take_abandoned(id);
        let key = id.to_string();
        let (finish, status, reason) = match stop {
            Stop::Cancelled => (Finish::Cancelled, MessageStatus::Aborted, "aborted: the activity was cancelled".to_string()),
            Stop::TimedOut(limit) => {
                (Finish::Timeout, MessageStatus::Aborted, format!("aborted: the activity ran longer than the session timeout of {limit} s"))
            }
            Stop::Shutdown => {
                (Finish::Interrupted, MessageStatus::Interrupted, "interrupted: Plugboard shut down before the turn finished".to_string())
            }
        };
        let ended = (!inputs.is_empty()).then(|| json!({ "finish": finish, "input_ids": inputs }));
        let result = self
            .store
            .write(move |tx| {
                tx.close_unfinished(&key, status, &reason, spent.as_ref())?;
                let reply = serde_json::to_value(Reply::Reject(Some(reason.clone()))).unwrap_or_default();
                for ask in &abandoned {
                    tx.emit(Some(&key), "permission.replied", json!({ "id": ask, "reply": reply }))?;
                }
                let dropped = if stop == Stop::Cancelled { tx.cancel_pending_inputs(&key)? } else { Vec::new() };
                if let Some(ended) = ended {
                    tx.emit(Some(&key), "activity.completed", ended)?;
                }
                tx.set_status(&key, SessionStatus::Idle, json!({ finish.as_str(): true }))?;
                Ok(dropped)
            })
            .await;
        result.unwrap_or_else(|e| {
            tracing::error!(session = %id, error = %e, "cannot record a cancellation");
            Vec::new()
        })
    }

    /// Answers whoever waits for `inputs`.
    fn resolve(&self, inputs: &[String], result: &Result<Outcome, AgentError>) {
        self.answer(|input, _| inputs.iter().any(|i| i == input), result);
    }

    /// Answers whoever waits for an input of session `id`.
    fn resolve_session(&self, id: &str, result: &Result<Outcome, AgentError>) {
        self.answer(|_, session| session == id, result);
    }

    /// Answers the waiters whose (input, session) `which` picks. A waiter that stopped
    /// waiting (its caller went away) is simply dropped.
    fn answer(&self, which: impl Fn(&str, &str) -> bool, result: &Result<Outcome, AgentError>) {
        let mut waiters = self.waiters.lock().expect("not poisoned");
        let picked: Vec<String> = waiters.iter().filter(|(input, (session, _))| which(input, session)).map(|(i, _)| i.clone()).collect();
        for input in picked {
            if let Some((_, waiter)) = waiters.remove(&input) {
                drop(waiter.send(result.clone()));
            }
        }
    }
}

/// Checks a session id chosen by the caller.
fn check_session_id(id: &str) -> Result<(), AgentError> {
    if crate::store::sessions::valid_session_id(id) {
        return Ok(());
    }
    Err(AgentError::InvalidField { field: "session_id".into(), reason: "use 1 to 128 letters, digits, `_`, `-` or `.`".into() })
}

/// Takes the lease of session `key` for `me` (what a dead holder left is closed first), or
/// says why not: no such session, or a live process holds it.
fn claim(tx: &mut Tx, key: &str, me: &OwnerId) -> rusqlite::Result<Result<Option<(usize, usize)>, AgentError>> {
    Ok(match tx.claim_session(key, me)? {
        None => Err(AgentError::NotFound(key.to_string())),
        Some(Claim::HeldBy(owner)) => Err(AgentError::HeldElsewhere { session: key.to_string(), owner }),
        Some(Claim::Taken { recovered }) => Ok(recovered),
    })
}

/// Renews the leases of the sessions this runtime drives, until the runtime is dropped.
async fn renew_leases(runtime: Weak<AgentRuntime>) {
    let mut every = tokio::time::interval(LEASE_RENEWAL);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(runtime) = runtime.upgrade() else { return };
        let sessions: Vec<String> = runtime.drivers.lock().expect("not poisoned").keys().cloned().collect();
        if sessions.is_empty() {
            continue;
        }
        let me = OwnerId::current();
        if let Err(e) = runtime.store.write(move |tx| sessions.iter().try_for_each(|s| tx.renew_lease(s, me).map(|_| ()))).await {
            tracing::warn!(error = %e, "cannot renew session leases");
        }
    }
}
