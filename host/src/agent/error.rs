//! Why an activity could not run or stopped, typed at the agent's border.

use std::sync::Arc;

use crate::runtime::provider::CompletionError;
use crate::store::StoreError;

/// Why an activity could not run or stopped.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The input is not acceptable.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A field of a new session is not acceptable.
    #[error("invalid `{field}`: {reason}")]
    InvalidField {
        /// The field, e.g. `model_config.temperature`.
        field: String,
        /// Why.
        reason: String,
    },
    /// A request that cannot be carried out, and why (an export that cannot be imported, a
    /// message that is not in the session).
    #[error("{0}")]
    Invalid(String),
    /// A session with this id exists already.
    #[error("a session `{0}` already exists")]
    Exists(String),
    /// A `prompt.before` hook rejected the prompt; nothing was queued.
    #[error(transparent)]
    PromptRejected(#[from] crate::hooks::PromptRejected),
    /// The runtime is shutting down and takes no new input.
    #[error("Plugboard is shutting down and takes no new input")]
    ShuttingDown,
    /// Another live process runs this session.
    #[error("session `{session}` is running in another Plugboard process ({owner}); try again when it is idle")]
    HeldElsewhere {
        /// The session.
        session: String,
        /// The process holding it (`host:pid:nonce`).
        owner: String,
    },
    /// A request would not fit the model's context even after compaction; it was not sent.
    #[error(
        "the request to `{model}` would hold about {estimated} tokens, more than the {budget} that its context of {context} tokens \
         leaves beside the answer; it was not sent. Shorten the prompt, start a new session, or switch to a model with a larger context"
    )]
    ContextOverflow {
        /// The model.
        model: String,
        /// The request's estimated tokens.
        estimated: u64,
        /// What the request may hold: the context less the room kept for the answer.
        budget: u64,
        /// The model's context, in tokens.
        context: u64,
    },
    /// A compaction was asked for, and what the model sees already fits in what is kept.
    #[error("session `{0}` has nothing to compact: its recent messages are kept as they are, and there is nothing older")]
    NothingToCompact(String),
    /// The activity was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The activity ran longer than `[sessions] timeout_seconds` and was stopped.
    #[error("the activity ran longer than the session timeout of {0} s and was stopped")]
    TimedOut(u64),
    /// The agents in the configuration are invalid.
    #[error("invalid agents in the configuration: {0}")]
    Config(String),
    /// The provider failed with an error that trying again will not fix.
    #[error(transparent)]
    Provider(#[from] CompletionError),
    /// The provider kept failing with an error worth retrying, and the retries ran out.
    #[error("{}; gave up after {attempts} attempts", error.without_retry_note())]
    GaveUp {
        /// The last attempt's error.
        error: CompletionError,
        /// Attempts made.
        attempts: u32,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(Arc<StoreError>),
    /// A fault in Plugboard itself (a panic in an activity); the turn is marked interrupted.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => AgentError::NotFound(id),
            StoreError::Exists(id) => AgentError::Exists(id),
            StoreError::Invalid(why) => AgentError::Invalid(why),
            other => AgentError::Store(Arc::new(other)),
        }
    }
}
