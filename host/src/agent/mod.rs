//! The agent: named profiles (permission rules, model, step limit) and the loop that runs a
//! prompt through provider turns and tool calls, recording everything durably.

mod activity;
pub mod compaction;
pub mod context;
pub mod conversation;
pub mod error;
pub mod event_hooks;
pub mod instructions;
pub mod permission;
pub mod runtime;
pub mod tool_hooks;
pub mod undo;

pub use crate::capability::ProviderOverrides;
pub use crate::store::inbox::Delivery;
pub use crate::store::sessions::SessionOptions;
pub use activity::Outcome;
pub use conversation::provider_messages;
pub use error::AgentError;
pub use runtime::{Admission, AgentRuntime, Cancellation, SessionSettings, SessionSpec};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use permission::{Action, Rule, RuleSpec};

/// The default step limit of an activity.
pub const DEFAULT_MAX_STEPS: u32 = 25;

/// An agent as written in `plugboard.toml` (`[agents.<name>]`). Its rules come after the
/// built-in ones of an agent of the same name, so they can refine them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The model, as `provider/model`.
    pub model: Option<String>,
    /// Provider turns per activity.
    pub max_steps: Option<u32>,
    /// Replaces Plugboard's default base prompt ([`instructions::DEFAULT_BASE_PROMPT`]).
    pub base_prompt: Option<String>,
    /// Text added to the base prompt.
    pub system_prompt: Option<String>,
    /// Permission rules, the last matching one wins.
    #[serde(default)]
    pub permissions: Vec<RuleSpec>,
}

/// A resolved agent.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Its name.
    pub name: String,
    /// Its model, when it names one.
    pub model: Option<String>,
    /// Provider turns per activity.
    pub max_steps: u32,
    /// Its system prompt: the base prompt and its additions (the environment and the
    /// project's instructions are added per activity, see [`instructions`]).
    pub system_prompt: String,
    /// Its permission rules.
    pub rules: Vec<Rule>,
}

/// The built-in agents: `build` (every tool; commands and fetches ask) and `plan`
/// (read-only: `edit`, `write` and `shell` are denied).
fn builtin(name: &str) -> Option<Vec<Rule>> {
    use crate::first_party::{Effect, tools_that};
    let mut rules = vec![Rule::of("*", "*", Action::Ask)];
    match name {
        "build" => {
            rules.extend(tools_that(Effect::Reads).chain(tools_that(Effect::Writes)).map(|t| Rule::of(t, "*", Action::Allow)));
        }
        "plan" => {
            rules.extend(tools_that(Effect::Reads).map(|t| Rule::of(t, "*", Action::Allow)));
            rules.extend(tools_that(Effect::Writes).chain(tools_that(Effect::Runs)).map(|t| Rule::of(t, "*", Action::Deny)));
        }
        _ => return None,
    }
    Some(rules)
}

/// Resolves every agent: the built-in ones, refined or added to by `configs`.
fn resolve_agents(configs: &BTreeMap<String, AgentConfig>) -> Result<BTreeMap<String, Agent>, String> {
    let mut names: Vec<String> = vec!["build".into(), "plan".into()];
    names.extend(configs.keys().filter(|k| !names.contains(k)).cloned().collect::<Vec<_>>());
    let mut agents = BTreeMap::new();
    for name in names {
        let config = configs.get(&name).cloned().unwrap_or_default();
        let mut rules = builtin(&name).unwrap_or_else(|| vec![Rule::of("*", "*", Action::Ask)]);
        for spec in config.permissions {
            rules.push(Rule::new(spec).map_err(|e| format!("[agents.{name}] permissions: {e}"))?);
        }
        let max_steps = config.max_steps.unwrap_or(DEFAULT_MAX_STEPS);
        if max_steps == 0 {
            return Err(format!("[agents.{name}] max_steps must be at least 1"));
        }
        let base = config.base_prompt.unwrap_or_else(|| instructions::DEFAULT_BASE_PROMPT.to_string());
        let system_prompt = match config.system_prompt {
            Some(extra) => format!("{base}\n\n{extra}"),
            None => base,
        };
        agents.insert(name.clone(), Agent { name, model: config.model, max_steps, system_prompt, rules });
    }
    Ok(agents)
}

/// The agent layer's part of the configuration: `[agents.<name>]`, `default_model` and
/// `[sessions]` (see [`crate::config::Config::agent_settings`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentSettings {
    /// `[agents.<name>]`.
    pub agents: BTreeMap<String, AgentConfig>,
    /// The model of sessions that name none, as `provider/model`.
    pub default_model: Option<String>,
    /// `[sessions]` (read when the runtime starts).
    pub sessions: SessionSettings,
}

/// The agents in force and the default model: what [`AgentSettings::resolve`] makes of the
/// configuration, and what a configuration reload replaces whole.
#[derive(Debug, Clone, Default)]
pub struct Agents {
    /// Every agent by name: the built-in ones, refined or added to by the configuration.
    pub profiles: BTreeMap<String, Agent>,
    /// The model of sessions that name none.
    pub default_model: Option<String>,
}

impl AgentSettings {
    /// The agents these settings define, or what is wrong with them.
    pub fn resolve(&self) -> Result<Agents, String> {
        Ok(Agents { profiles: resolve_agents(&self.agents)?, default_model: self.default_model.clone() })
    }
}

/// How the agent runtime learns of the agents in force: the application layer sends each
/// configuration that passed its checks.
pub type AgentsFeed = tokio::sync::watch::Receiver<std::sync::Arc<Agents>>;

/// The agent `name` among `agents`, or an error listing those there are.
pub(crate) fn agent_named(agents: &BTreeMap<String, Agent>, name: &str) -> Result<Agent, AgentError> {
    agents.get(name).cloned().ok_or_else(|| AgentError::UnknownAgent { name: name.into(), available: agents.keys().cloned().collect() })
}

/// A prompt must say something; the reason otherwise (`is empty`), for the caller to name
/// its field with.
pub fn check_prompt(text: &str) -> Result<(), &'static str> {
    if text.trim().is_empty() { Err("is empty") } else { Ok(()) }
}
