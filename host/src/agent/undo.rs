//! Undo: what reverting a session to one of its messages puts back. Every turn whose tool
//! calls changed files carries a `patch` part (see [`crate::snapshot`]); reverting to a
//! message undoes the turns after it, so each file they changed goes back to what it was
//! before the first of them that changed it, and files they did not change are left alone.
//! Pure functions: the activity restores the files and marks the messages.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::snapshot::{FileChange, FileState};
use crate::store::model::PartKind;
use crate::store::sessions::MessageRecord;

/// What a revert does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevertPlan {
    /// The messages it marks reverted, in order.
    pub messages: Vec<String>,
    /// Each file to put back as it was, or none to remove it.
    pub files: BTreeMap<String, Option<FileState>>,
}

/// What a revert did, as its event and answers report it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Reverted {
    /// The message the session was reverted to.
    pub to: String,
    /// The messages marked reverted.
    pub messages: Vec<String>,
    /// The files put back as they were (`restored`) or removed (`removed`, they did not exist).
    pub files: Vec<RestoredFile>,
}

/// One file a revert put back.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RestoredFile {
    /// The file, relative to the workspace.
    pub path: String,
    /// `restored` or `removed`.
    pub action: String,
}

/// What reverting `history` to its message `to` does; why not, when `to` is not one of its
/// messages (or was reverted already).
pub fn plan(history: &[MessageRecord], to: &str) -> Result<RevertPlan, String> {
    let at = history.iter().position(|m| m.id == to).ok_or_else(|| format!("the session has no message `{to}`"))?;
    if history[at].reverted_at.is_some() {
        return Err(format!("message `{to}` was reverted itself; revert to an earlier one"));
    }
    let later: Vec<&MessageRecord> = history[at + 1..].iter().filter(|m| m.reverted_at.is_none()).collect();
    let mut files = BTreeMap::new();
    for part in later.iter().flat_map(|m| &m.parts).filter(|p| p.kind == PartKind::Patch) {
        let changes: Vec<FileChange> = serde_json::from_value(part.data["files"].clone()).unwrap_or_default();
        for change in changes {
            let before = change.before.map(|hash| FileState { hash, executable: change.executable_before });
            files.entry(change.path).or_insert(before);
        }
    }
    Ok(RevertPlan { messages: later.iter().map(|m| m.id.clone()).collect(), files })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{MessageRole, MessageStatus};

    use serde_json::json;

    fn message(id: &str, changes: &[(&str, Option<&str>, Option<&str>)]) -> MessageRecord {
        let files: Vec<serde_json::Value> = changes
            .iter()
            .map(|(path, before, after)| json!({ "path": path, "change": "modified", "before": before, "after": after, "diff": "" }))
            .collect();
        let parts = if files.is_empty() { vec![] } else { vec![(PartKind::Patch, json!({ "files": files }))] };
        MessageRecord::of(id, MessageRole::Assistant, MessageStatus::Completed, parts)
    }

    #[test]
    fn each_file_goes_back_to_before_the_first_later_change_and_others_are_left_alone() {
        let history = vec![
            message("m1", &[("kept.txt", Some("k0"), Some("k1"))]),
            message("m2", &[]),
            message("m3", &[("a.txt", Some("a0"), Some("a1")), ("new.txt", None, Some("n1"))]),
            message("m4", &[("a.txt", Some("a1"), Some("a2")), ("b.txt", Some("b0"), None)]),
        ];
        let plan = plan(&history, "m2").unwrap();
        assert_eq!(plan.messages, ["m3", "m4"]);
        let files: Vec<(&str, Option<&str>)> = plan.files.iter().map(|(p, s)| (p.as_str(), s.as_ref().map(|s| s.hash.as_str()))).collect();
        assert_eq!(files, [("a.txt", Some("a0")), ("b.txt", Some("b0")), ("new.txt", None)], "kept.txt changed before m2: left alone");
        assert!(super::plan(&history, "m9").unwrap_err().contains("no message `m9`"));
        let mut reverted = history.clone();
        reverted[3].reverted_at = Some(1);
        assert_eq!(super::plan(&reverted, "m2").unwrap().messages, ["m3"], "what was undone is not undone twice");
        assert!(super::plan(&reverted, "m4").unwrap_err().contains("was reverted itself"));
    }
}
