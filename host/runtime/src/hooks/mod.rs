//! Lifecycle hooks: plugins of the `hook-plugin` world that take part in the agent's life
//! without being trusted. A hook declares the points it handles ([`HookInfo`]); the host
//! calls it there, in order (`[hooks.<id>] priority`, then id), each call in a fresh
//! sandboxed instance under the plugin's own limits and grants. What a hook returns is a
//! draft that [`HookChain`] validates; a hook that traps, times out or returns something
//! invalid has its change thrown away and a `hook.failed` event emitted, and the chain goes
//! on. A hook marked `fail_closed` refuses the prompt or tool call it failed on.
//!
//! - [`chain`]: the ordered hooks of one moment, and the validation of their drafts. The
//!   agent layer feeds the `event` point from the event log (`agent::event_hooks`).

pub mod chain;

use serde::{Deserialize, Serialize};

pub use crate::runtime::bindings::compaction_types::CompactionReason;
pub use chain::{ChatParams, CompactionDraft, CompactionInfo, HookChain, HookContext, HookSummary, PromptRejected, ToolDecision};

use crate::runtime::bindings::hook_types as wit;

/// A point of the agent's life a hook can handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HookPoint {
    /// A session was created (observe).
    #[serde(rename = "session.created")]
    SessionCreated,
    /// A prompt arrived (rewrite or reject it).
    #[serde(rename = "prompt.before")]
    PromptBefore,
    /// A tool call is about to run (allow, deny, rewrite its arguments).
    #[serde(rename = "tool.before")]
    ToolBefore,
    /// A tool call ended (rewrite its output or title).
    #[serde(rename = "tool.after")]
    ToolAfter,
    /// A provider turn is about to start (adjust temperature, max tokens, system prompt).
    #[serde(rename = "chat.params")]
    ChatParams,
    /// A session's older messages are about to be summarized (add to the summarizer's
    /// instructions, replace them, or write the summary). Declared by exporting the
    /// `compaction` interface (since WIT 0.1.1).
    #[serde(rename = "session.compacting")]
    Compacting,
    /// An event was logged (observe, asynchronously).
    #[serde(rename = "event")]
    Event,
}

impl HookPoint {
    /// Its name in events and documents, e.g. `tool.before`.
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::SessionCreated => "session.created",
            HookPoint::PromptBefore => "prompt.before",
            HookPoint::ToolBefore => "tool.before",
            HookPoint::ToolAfter => "tool.after",
            HookPoint::ChatParams => "chat.params",
            HookPoint::Compacting => "session.compacting",
            HookPoint::Event => "event",
        }
    }
}

impl From<wit::HookPoint> for HookPoint {
    fn from(p: wit::HookPoint) -> Self {
        match p {
            wit::HookPoint::SessionCreated => HookPoint::SessionCreated,
            wit::HookPoint::PromptBefore => HookPoint::PromptBefore,
            wit::HookPoint::ToolBefore => HookPoint::ToolBefore,
            wit::HookPoint::ToolAfter => HookPoint::ToolAfter,
            wit::HookPoint::ChatParams => HookPoint::ChatParams,
            wit::HookPoint::Event => HookPoint::Event,
        }
    }
}

/// What a hook plugin handles, as it said when it loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookInfo {
    /// The points it handles, without repeats, in the order above.
    pub points: Vec<HookPoint>,
    /// For `event`: the types it wants (exact, or a prefix ending in `.*`); empty: all.
    pub event_types: Vec<String>,
}

impl HookInfo {
    /// Whether it handles `point`.
    pub fn handles(&self, point: HookPoint) -> bool {
        self.points.contains(&point)
    }

    /// Whether its `event` hook wants events of type `kind`.
    pub fn wants_event(&self, kind: &str) -> bool {
        self.handles(HookPoint::Event)
            && (self.event_types.is_empty()
                || self.event_types.iter().any(|t| match t.strip_suffix('*') {
                    Some(prefix) => kind.starts_with(prefix),
                    None => t == kind,
                }))
    }
}

impl HookInfo {
    /// What a plugin said in `describe`, with `extra`, a point it declared by an export of
    /// its own (`session.compacting`).
    pub fn described(info: wit::HookInfo, extra: Option<HookPoint>) -> Result<Self, String> {
        let mut points: Vec<HookPoint> = info.points.into_iter().map(HookPoint::from).chain(extra).collect();
        points.sort();
        points.dedup();
        if points.is_empty() {
            return Err("it declares no hook points".into());
        }
        for t in &info.event_types {
            let pattern = t.strip_suffix(".*").unwrap_or(t);
            if pattern.is_empty() || t.contains(char::is_whitespace) || pattern.contains('*') {
                return Err(format!("event type pattern `{t}` is not a type (`tool.state`) or a prefix (`plugin.*`)"));
            }
        }
        if !info.event_types.is_empty() && !points.contains(&HookPoint::Event) {
            return Err("it lists event types but does not handle the `event` point".into());
        }
        Ok(HookInfo { points, event_types: info.event_types })
    }
}

/// `[hooks.<id>]` of `plugboard.toml`: how the hook plugin `id` takes part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HookSettings {
    /// Whether it runs. Default: yes for a hook plugin file the operator installed, no for a
    /// bundled first-party hook (turn those on here).
    pub enabled: Option<bool>,
    /// Hooks run in ascending priority, then by id. Default 0.
    pub priority: i32,
    /// When true, a failure of this hook at `prompt.before` or `tool.before` (a trap, a
    /// timeout, an invalid draft) refuses the prompt or the call instead of being ignored.
    pub fail_closed: bool,
}
