//! Permission rules: per tool, a glob on the call's main argument (the path of file tools,
//! the command line of `shell`, the URL of `fetch`), allow / ask / deny; the last matching
//! rule wins. Checked in the host before the capability layer: a call the rules allow
//! still cannot exceed its plugin's grants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::store::SessionStore;

pub use crate::store::model::{Action, RuleSpec};

/// A compiled rule. Its matchers are shared by every clone: each activity starts from a
/// clone of its agent's rules, and a clone of a matcher would start without the match
/// caches the first one built (a regex's caches belong to the value, not its program).
#[derive(Debug, Clone)]
pub struct Rule {
    spec: RuleSpec,
    tool: Arc<GlobMatcher>,
    pattern: Arc<GlobMatcher>,
}

impl Rule {
    /// Compiles a rule; the error names the bad glob.
    pub fn new(spec: RuleSpec) -> Result<Self, String> {
        let glob = |g: &str| {
            GlobBuilder::new(g)
                .literal_separator(false)
                .build()
                .map(|g| Arc::new(g.compile_matcher()))
                .map_err(|e| format!("rule glob `{g}`: {e}"))
        };
        Ok(Rule { tool: glob(&spec.tool)?, pattern: glob(&spec.pattern)?, spec })
    }

    /// Shorthand for built-in rules.
    pub fn of(tool: &str, pattern: &str, action: Action) -> Self {
        Rule::new(RuleSpec { tool: tool.into(), pattern: pattern.into(), action }).expect("built-in rules are valid")
    }

    /// The rule as written.
    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }
}

/// The decision of `rules` (in order, later ones on top) for `tool` on `subject`; `Ask`
/// when no rule matches.
pub fn evaluate<'a>(rules: impl IntoIterator<Item = &'a Rule>, tool: &str, subject: &str) -> Action {
    rules.into_iter().filter(|r| r.tool.is_match(tool) && r.pattern.is_match(subject)).last().map(|r| r.spec.action).unwrap_or(Action::Ask)
}

/// True when `rules` deny `tool` whatever its arguments: then it is not offered to the model.
pub fn denied_outright<'a>(rules: impl IntoIterator<Item = &'a Rule> + Clone, tool: &str) -> bool {
    let last_blanket = rules.clone().into_iter().enumerate().filter(|(_, r)| r.tool.is_match(tool) && r.spec.pattern == "*").last();
    match last_blanket {
        Some((index, rule)) if rule.spec.action == Action::Deny => {
            !rules.into_iter().skip(index + 1).any(|r| r.tool.is_match(tool) && r.spec.action != Action::Deny)
        }
        _ => false,
    }
}

/// The main argument of a call, which rules match on.
pub fn main_argument(tool: &str, arguments: &Value) -> String {
    crate::first_party::main_arguments(tool).iter().find_map(|k| arguments[k].as_str()).unwrap_or("").to_string()
}

/// An answer to a permission question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    /// Allow this call.
    Once,
    /// Allow this call and add an allow rule for the session.
    Always,
    /// Refuse; the model sees the reason.
    Reject(Option<String>),
}

/// How questions are answered when nobody is there to answer them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskMode {
    /// Questions wait for [`PermissionBroker::reply`].
    Prompt,
    /// Every question is answered `once` (`plugboard run --yes`).
    AllowAll,
    /// Every question is answered `reject` (non-interactive runs).
    DenyAll,
}

/// A question waiting for its answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PendingAsk {
    /// The question's id.
    pub id: String,
    /// The session.
    pub session_id: String,
    /// The tool.
    pub tool: String,
    /// The call's main argument.
    pub subject: String,
    /// Why it is asked (`rule` or `doom-loop`).
    pub reason: String,
}

/// Asks and their answers. An `always` answer is stored with the session as an allow rule
/// (see [`crate::store::session_rules`]); the activity that asked applies it at once.
pub struct PermissionBroker {
    store: SessionStore,
    mode: AskMode,
    pending: Mutex<HashMap<String, (PendingAsk, oneshot::Sender<Reply>)>>,
    /// Questions whose activity stopped before an answer came, by session.
    abandoned: Mutex<HashMap<String, Vec<String>>>,
}

/// Removes a question when its asker stops waiting (the activity was cancelled).
struct PendingGuard<'a> {
    broker: &'a PermissionBroker,
    id: String,
    session: String,
    answered: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.broker.pending.lock().expect("not poisoned").remove(&self.id).is_some() && !self.answered {
            self.broker.abandoned.lock().expect("not poisoned").entry(self.session.clone()).or_default().push(self.id.clone());
        }
    }
}

impl PermissionBroker {
    /// A broker that records its questions and answers in `store`.
    pub fn new(store: SessionStore, mode: AskMode) -> Self {
        PermissionBroker { store, mode, pending: Mutex::new(HashMap::new()), abandoned: Mutex::new(HashMap::new()) }
    }

    /// How questions are answered.
    pub fn mode(&self) -> AskMode {
        self.mode
    }

    /// Questions waiting for an answer.
    pub fn pending(&self) -> Vec<PendingAsk> {
        self.pending.lock().expect("not poisoned").values().map(|(a, _)| a.clone()).collect()
    }

    /// Takes the ids of questions of `session` that were abandoned by a cancelled activity.
    pub fn take_abandoned(&self, session: &str) -> Vec<String> {
        self.abandoned.lock().expect("not poisoned").remove(session).unwrap_or_default()
    }

    /// Asks about a call and waits for the answer (emits `permission.asked`, then
    /// `permission.replied`). An `always` answer stores an allow rule for `tool` on
    /// `subject` with the session, in the same transaction as the reply.
    pub async fn ask(&self, session: &str, call_id: &str, tool: &str, subject: &str, reason: &str) -> Reply {
        let id = format!("per_{}", uuid::Uuid::now_v7().simple());
        let ask =
            PendingAsk { id: id.clone(), session_id: session.into(), tool: tool.into(), subject: subject.into(), reason: reason.into() };
        let (sender, answer) = oneshot::channel();
        self.pending.lock().expect("not poisoned").insert(id.clone(), (ask.clone(), sender));
        let mut guard = PendingGuard { broker: self, id: id.clone(), session: session.into(), answered: false };
        let data = json!({ "id": id, "call_id": call_id, "tool": tool, "subject": subject, "reason": reason });
        let session_key = session.to_string();
        if let Err(e) = self.store.write(move |tx| tx.emit(Some(&session_key), "permission.asked", data)).await {
            // Nobody can see a question that is not in the log: the call is refused.
            tracing::error!(session, tool, error = %e, "a permission question could not be recorded; the call is refused");
            // Answered here: it must not be reported later as an abandoned question.
            guard.answered = true;
            return Reply::Reject(Some(format!("the permission question could not be recorded ({e}), so the call is refused")));
        }
        let reply = match self.mode {
            AskMode::AllowAll => Reply::Once,
            AskMode::DenyAll => Reply::Reject(Some("permission questions are refused in non-interactive mode".into())),
            AskMode::Prompt => answer.await.unwrap_or(Reply::Reject(Some("the question was abandoned".into()))),
        };
        guard.answered = true;
        drop(guard);
        let data = json!({ "id": id, "reply": reply });
        let session_key = session.to_string();
        let rule = (reply == Reply::Always).then(|| session_rule(tool, subject));
        let recorded = self
            .store
            .write(move |tx| {
                if let Some(rule) = &rule {
                    tx.add_session_rule(&session_key, rule)?;
                }
                tx.emit(Some(&session_key), "permission.replied", data)
            })
            .await;
        if let Err(e) = recorded {
            // The answer holds for this call (and an `always` for this activity); another
            // process continuing the session will ask again.
            tracing::error!(session, tool, error = %e, "a permission answer could not be recorded");
        }
        reply
    }

    /// Answers question `id`; false when no such question is waiting.
    pub fn reply(&self, id: &str, reply: Reply) -> bool {
        match self.pending.lock().expect("not poisoned").remove(id) {
            Some((_, sender)) => sender.send(reply).is_ok(),
            None => false,
        }
    }
}

/// The rule an `always` answer adds: allow `tool` on exactly `subject` (any subject when
/// the call has none).
pub fn session_rule(tool: &str, subject: &str) -> RuleSpec {
    RuleSpec {
        tool: globset::escape(tool),
        pattern: if subject.is_empty() { "*".into() } else { globset::escape(subject) },
        action: Action::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_matching_rule_wins() {
        let rules = vec![Rule::of("*", "*", Action::Ask), Rule::of("shell", "*", Action::Deny), Rule::of("shell", "git *", Action::Allow)];
        assert_eq!(evaluate(&rules, "shell", "git status"), Action::Allow);
        assert_eq!(evaluate(&rules, "shell", "rm -rf /"), Action::Deny);
        assert_eq!(evaluate(&rules, "read", "x"), Action::Ask);
        assert_eq!(evaluate(&[], "read", "x"), Action::Ask);
    }

    #[test]
    fn a_tool_is_denied_outright_only_without_later_exceptions() {
        let rules = vec![
            Rule::of("*", "*", Action::Allow),
            Rule::of("edit", "*", Action::Deny),
            Rule::of("shell", "*", Action::Deny),
            Rule::of("shell", "ls*", Action::Allow),
        ];
        assert!(denied_outright(&rules, "edit"));
        assert!(!denied_outright(&rules, "shell"), "ls is still allowed");
        assert!(!denied_outright(&rules, "read"));
    }

    #[test]
    fn main_arguments_per_tool() {
        assert_eq!(main_argument("shell", &json!({"command": "ls -la"})), "ls -la");
        assert_eq!(main_argument("read", &json!({"path": "src/a.rs"})), "src/a.rs");
        assert_eq!(main_argument("fetch", &json!({"url": "https://x"})), "https://x");
        assert_eq!(main_argument("custom", &json!({"n": 1})), "");
    }
}
