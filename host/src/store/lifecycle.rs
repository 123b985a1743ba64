//! The session life cycle beyond its activities: delete (with everything it recorded),
//! export to one JSON document and import it (into another data dir, for another process
//! to resume), and fork (a new session from any message of an old one). Each runs in one
//! transaction.
//!
//! An export holds the stored rows as they are: the session, its messages and parts with
//! their ids and numbers, its inbox, its rules and its events (their per-session numbers;
//! the global ones are given anew on import). Importing it reproduces the session exactly.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::events::now_ms;
use super::model::{Action, Delivery, InputKind, InputStatus, MessageRole, MessageStatus, PartKind, SessionStatus};
use super::sessions::{SessionOptions, SessionRecord, Tokens, new_id, tokens_at, valid_session_id};
use super::{SessionStore, StoreError, Tx};

/// The format an export declares, and the only one import reads.
pub const EXPORT_FORMAT: &str = "plugboard.session.v1";

/// One session as a document: what `plugboard session export` writes and `import` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionExport {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// When it was exported (ms since the epoch).
    pub exported_at: i64,
    /// The session.
    pub session: SessionRow,
    /// Its messages, in order.
    pub messages: Vec<MessageRow>,
    /// Their parts, in order.
    pub parts: Vec<PartRow>,
    /// Its inbox.
    #[serde(default)]
    pub inputs: Vec<InputRow>,
    /// The rules its `always` answers added.
    #[serde(default)]
    pub rules: Vec<RuleRow>,
    /// Its events, in order.
    #[serde(default)]
    pub events: Vec<EventRow>,
}

/// A session as stored, without its status and lease (an imported session is idle).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRow {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its agent.
    pub agent: String,
    /// Its model, as `provider/model`.
    pub model: String,
    /// Its workspace directory.
    pub workspace: String,
    /// Tokens used by all its messages.
    pub tokens: Tokens,
    /// What they cost, in US dollars.
    pub cost: f64,
    /// Creation time (ms since the epoch).
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// Its model options.
    #[serde(default)]
    pub options: SessionOptions,
}

/// A message as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRow {
    /// Its id.
    pub id: String,
    /// Its number in the session.
    pub seq: i64,
    /// Who wrote it.
    pub role: MessageRole,
    /// Where it stands.
    pub status: MessageStatus,
    /// The model that wrote it.
    pub model: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The input it came from (user messages).
    pub input_id: Option<String>,
    /// Tokens it used.
    pub tokens: Tokens,
    /// What they cost.
    pub cost: f64,
    /// Creation time.
    pub created_at: i64,
    /// When it ended.
    pub completed_at: Option<i64>,
    /// When a revert undid it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_at: Option<i64>,
}

/// A part as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartRow {
    /// Its id.
    pub id: String,
    /// Its message.
    pub message_id: String,
    /// Its number in the message.
    pub seq: i64,
    /// What it holds.
    pub kind: PartKind,
    /// Its content.
    pub data: Value,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// An inbox input as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputRow {
    /// Its id.
    pub id: String,
    /// How it is delivered.
    pub delivery: Delivery,
    /// What it asks for.
    pub kind: InputKind,
    /// The prompt.
    pub prompt: String,
    /// Where it stands.
    pub status: InputStatus,
    /// When it arrived.
    pub created_at: i64,
    /// When it was taken.
    pub consumed_at: Option<i64>,
}

/// A rule an `always` answer added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleRow {
    /// Tool name glob.
    pub tool: String,
    /// Glob on the call's main argument.
    pub pattern: String,
    /// The decision.
    pub action: Action,
    /// When it was added.
    pub created_at: i64,
}

/// An event as stored (its global number is given anew on import).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRow {
    /// Its number within the session.
    pub session_seq: i64,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its data.
    pub data: Value,
    /// When (ms since the epoch).
    pub created_at: i64,
}

/// What a delete removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Removed {
    /// Messages.
    pub messages: u64,
    /// Parts of messages.
    pub parts: u64,
    /// Events.
    pub events: u64,
    /// Inbox inputs.
    pub inputs: u64,
    /// Rules its `always` answers added.
    pub rules: u64,
}

impl SessionStore {
    /// Session `id` as one document.
    pub async fn export_session(&self, id: &str) -> Result<SessionExport, StoreError> {
        let key = id.to_string();
        self.read(move |conn| export(conn, &key)).await?.ok_or_else(|| StoreError::NotFound(id.to_string()))
    }
}

/// Reads session `id` as an export; `None` when there is no such session.
fn export(conn: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<SessionExport>> {
    let session = conn
        .prepare_cached(
            "SELECT id, title, agent, model, workspace, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost,
             created_at, updated_at, options FROM sessions WHERE id = ?1",
        )?
        .query_row(params![id], |r| {
            Ok(SessionRow {
                id: r.get(0)?,
                title: r.get(1)?,
                agent: r.get(2)?,
                model: r.get(3)?,
                workspace: r.get(4)?,
                tokens: tokens_at(r, 5)?,
                cost: r.get(9)?,
                created_at: r.get(10)?,
                updated_at: r.get(11)?,
                options: serde_json::from_str(&r.get::<_, String>(12)?).unwrap_or_default(),
            })
        })
        .optional()?;
    let Some(session) = session else { return Ok(None) };
    let messages = conn
        .prepare_cached(
            "SELECT id, seq, role, status, model, error, input_id, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
             cost, created_at, completed_at, reverted_at FROM messages WHERE session_id = ?1 ORDER BY seq",
        )?
        .query_map(params![id], |r| {
            Ok(MessageRow {
                id: r.get(0)?,
                seq: r.get(1)?,
                role: r.get(2)?,
                status: r.get(3)?,
                model: r.get(4)?,
                error: r.get(5)?,
                input_id: r.get(6)?,
                tokens: tokens_at(r, 7)?,
                cost: r.get(11)?,
                created_at: r.get(12)?,
                completed_at: r.get(13)?,
                reverted_at: r.get(14)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let parts = conn
        .prepare_cached(
            "SELECT p.id, p.message_id, p.seq, p.kind, p.data, p.created_at, p.updated_at FROM parts p
             JOIN messages m ON m.id = p.message_id WHERE p.session_id = ?1 ORDER BY m.seq, p.seq",
        )?
        .query_map(params![id], |r| {
            Ok(PartRow {
                id: r.get(0)?,
                message_id: r.get(1)?,
                seq: r.get(2)?,
                kind: r.get(3)?,
                data: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or(Value::Null),
                created_at: r.get(5)?,
                updated_at: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let inputs = conn
        .prepare_cached(
            "SELECT id, delivery, kind, prompt, status, created_at, consumed_at FROM inbox WHERE session_id = ?1 ORDER BY rowid",
        )?
        .query_map(params![id], |r| {
            Ok(InputRow {
                id: r.get(0)?,
                delivery: r.get(1)?,
                kind: r.get(2)?,
                prompt: r.get(3)?,
                status: r.get(4)?,
                created_at: r.get(5)?,
                consumed_at: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let rules = conn
        .prepare_cached("SELECT tool, pattern, action, created_at FROM session_rules WHERE session_id = ?1 ORDER BY id")?
        .query_map(params![id], |r| Ok(RuleRow { tool: r.get(0)?, pattern: r.get(1)?, action: r.get(2)?, created_at: r.get(3)? }))?
        .collect::<rusqlite::Result<_>>()?;
    let events = conn
        .prepare_cached("SELECT session_seq, type, data, created_at FROM events WHERE session_id = ?1 ORDER BY seq")?
        .query_map(params![id], |r| {
            Ok(EventRow {
                session_seq: r.get(0)?,
                kind: r.get(1)?,
                data: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or(Value::Null),
                created_at: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(SessionExport { format: EXPORT_FORMAT.into(), exported_at: now_ms(), session, messages, parts, inputs, rules, events }))
}

/// Why an export cannot be imported; `None` when it can.
pub fn check_export(doc: &SessionExport) -> Option<String> {
    if doc.format != EXPORT_FORMAT {
        return Some(format!("its format is `{}`, and this Plugboard reads `{EXPORT_FORMAT}`", doc.format));
    }
    let id = &doc.session.id;
    if !valid_session_id(id) {
        return Some(format!("its session id `{id}` is not 1 to 128 letters, digits, `_`, `-` or `.`"));
    }
    let mut messages = HashSet::new();
    for message in &doc.messages {
        if !messages.insert(message.id.as_str()) {
            return Some(format!("message `{}` appears twice", message.id));
        }
    }
    let mut parts = HashSet::new();
    for part in &doc.parts {
        if !messages.contains(part.message_id.as_str()) {
            return Some(format!("part `{}` belongs to message `{}`, which is not in the export", part.id, part.message_id));
        }
        if !parts.insert(part.id.as_str()) {
            return Some(format!("part `{}` appears twice", part.id));
        }
    }
    let mut inputs = HashSet::new();
    if let Some(input) = doc.inputs.iter().find(|i| !inputs.insert(i.id.as_str())) {
        return Some(format!("input `{}` appears twice", input.id));
    }
    None
}

impl Tx<'_> {
    /// Stores an exported session as it was: its rows with their ids, its events with new
    /// global numbers, idle and held by no one; then `session.imported`. A turn that was
    /// running when it was exported is recorded as interrupted. Fails, storing nothing, when
    /// the session or one of its messages, parts or inputs exists already.
    pub fn import_session(&mut self, doc: &SessionExport) -> rusqlite::Result<Result<SessionRecord, StoreError>> {
        let s = &doc.session;
        if self.conn().prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?.exists(params![s.id])? {
            return Ok(Err(StoreError::Exists(s.id.clone())));
        }
        for (table, id) in doc
            .messages
            .iter()
            .map(|m| ("messages", &m.id))
            .chain(doc.parts.iter().map(|p| ("parts", &p.id)))
            .chain(doc.inputs.iter().map(|i| ("inbox", &i.id)))
        {
            if self.conn().prepare_cached(&format!("SELECT 1 FROM {table} WHERE id = ?1"))?.exists(params![id])? {
                let what = format!("`{id}` of the export is stored here already (in another session): was it imported before?");
                return Ok(Err(StoreError::Invalid(what)));
            }
        }
        self.insert_session_row(s)?;
        self.insert_message_rows(&s.id, &doc.messages)?;
        self.insert_part_rows(&s.id, &doc.parts)?;
        for input in &doc.inputs {
            self.conn()
                .prepare_cached(
                    "INSERT INTO inbox (id, session_id, delivery, kind, prompt, status, created_at, consumed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![input.id, s.id, input.delivery, input.kind, input.prompt, input.status, input.created_at, input.consumed_at])?;
        }
        self.insert_rule_rows(&s.id, &doc.rules)?;
        for event in &doc.events {
            self.conn()
                .prepare_cached("INSERT INTO events (session_id, session_seq, type, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![s.id, event.session_seq, event.kind, event.data.to_string(), event.created_at])?;
        }
        self.forget_session_seq(&s.id);
        self.close_unfinished(&s.id, MessageStatus::Interrupted, "interrupted: the session was exported while this turn ran", None)?;
        let imported = json!({ "exported_at": doc.exported_at, "messages": doc.messages.len(), "events": doc.events.len() });
        self.emit(Some(&s.id), "session.imported", imported)?;
        Ok(self.session(&s.id)?.ok_or(StoreError::NotFound(s.id.clone())))
    }

    /// Removes session `id` with its messages, parts, inbox, rules and events, and says how
    /// many of each. `session.deleted` is recorded first and kept (the session's only event
    /// left): the log's numbers never go back, so a stream resumed from an event of the
    /// deleted session misses nothing that follows. `None` when there is no such session.
    pub fn delete_session(&mut self, id: &str) -> rusqlite::Result<Option<Removed>> {
        if self.session(id)?.is_none() {
            return Ok(None);
        }
        let count = |tx: &Tx, table: &str| -> rusqlite::Result<u64> {
            tx.conn()
                .query_row(&format!("SELECT COUNT(*) FROM {table} WHERE session_id = ?1"), params![id], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        };
        let removed = Removed {
            messages: count(self, "messages")?,
            parts: count(self, "parts")?,
            events: count(self, "events")?,
            inputs: count(self, "inbox")?,
            rules: count(self, "session_rules")?,
        };
        self.emit(Some(id), "session.deleted", json!({ "session_id": id, "removed": removed }))?;
        let tombstone = self.conn().last_insert_rowid();
        for table in ["parts", "messages", "inbox", "session_rules"] {
            self.conn().execute(&format!("DELETE FROM {table} WHERE session_id = ?1"), params![id])?;
        }
        self.conn().execute("DELETE FROM events WHERE session_id = ?1 AND seq < ?2", params![id, tombstone])?;
        self.conn().execute("DELETE FROM sessions WHERE id = ?1", params![id])?;
        Ok(Some(removed))
    }

    /// A new session `new` made from session `source` up to and including its message
    /// `through` (all of it when `None`): same agent, model, workspace and options; copies
    /// of the messages that ended (new ids, each compaction pointing at its copy); no usage
    /// of its own yet. `session.created` names where it came from.
    pub fn fork_session(
        &mut self,
        source: &str,
        through: Option<&str>,
        new: &str,
        title: Option<&str>,
    ) -> rusqlite::Result<Result<SessionRecord, StoreError>> {
        let Some(doc) = export(self.conn(), source)? else { return Ok(Err(StoreError::NotFound(source.to_string()))) };
        if self.conn().prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?.exists(params![new])? {
            return Ok(Err(StoreError::Exists(new.to_string())));
        }
        let last = match through {
            None => i64::MAX,
            Some(message) => match doc.messages.iter().find(|m| m.id == message) {
                Some(m) => m.seq,
                None => return Ok(Err(StoreError::Invalid(format!("session `{source}` has no message `{message}`")))),
            },
        };
        let ended = |m: &&MessageRow| m.seq <= last && m.status != MessageStatus::Running && m.reverted_at.is_none();
        let ids: HashMap<&str, String> = doc.messages.iter().filter(ended).map(|m| (m.id.as_str(), new_id("msg"))).collect();
        let now = now_ms();
        let session = SessionRow {
            id: new.to_string(),
            title: title.map_or_else(|| format!("{} (fork)", doc.session.title), str::to_string),
            tokens: Tokens::default(),
            cost: 0.0,
            created_at: now,
            updated_at: now,
            ..doc.session.clone()
        };
        let messages: Vec<MessageRow> =
            doc.messages.iter().filter(ended).map(|m| MessageRow { id: ids[m.id.as_str()].clone(), input_id: None, ..m.clone() }).collect();
        let parts: Vec<PartRow> = doc
            .parts
            .iter()
            .filter(|p| ids.contains_key(p.message_id.as_str()))
            .map(|p| {
                let mut data = p.data.clone();
                if p.kind == PartKind::Compaction
                    && let Some(copy) = data["through"].as_str().and_then(|t| ids.get(t))
                {
                    data["through"] = json!(copy);
                }
                PartRow { id: new_id("prt"), message_id: ids[p.message_id.as_str()].clone(), data, ..p.clone() }
            })
            .collect();
        self.insert_session_row(&session)?;
        self.insert_message_rows(new, &messages)?;
        self.insert_part_rows(new, &parts)?;
        self.insert_rule_rows(new, &doc.rules)?;
        let Some(record) = self.session(new)? else { return Ok(Err(StoreError::NotFound(new.to_string()))) };
        let mut created = serde_json::to_value(&record).unwrap_or(Value::Null);
        let from_message = doc.messages.iter().rfind(|m| ids.contains_key(m.id.as_str())).map(|m| m.id.clone());
        created["forked_from"] = json!({ "session_id": source, "message_id": from_message, "messages": ids.len() });
        self.emit(Some(new), "session.created", created)?;
        Ok(Ok(record))
    }

    /// Stores a session row, idle and held by no one.
    fn insert_session_row(&mut self, s: &SessionRow) -> rusqlite::Result<()> {
        let [i, o, r, w] = token_columns(s.tokens);
        let options = serde_json::to_string(&s.options).unwrap_or_else(|_| "{}".into());
        self.conn()
            .prepare_cached(
                "INSERT INTO sessions (id, title, agent, model, workspace, status, input_tokens, output_tokens, cache_read_tokens,
                 cache_write_tokens, cost, created_at, updated_at, options) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                s.id,
                s.title,
                s.agent,
                s.model,
                s.workspace,
                SessionStatus::Idle,
                i,
                o,
                r,
                w,
                s.cost,
                s.created_at,
                s.updated_at,
                options
            ])?;
        Ok(())
    }

    /// Stores message rows of `session` as they are.
    fn insert_message_rows(&mut self, session: &str, messages: &[MessageRow]) -> rusqlite::Result<()> {
        for m in messages {
            let [i, o, r, w] = token_columns(m.tokens);
            self.conn()
                .prepare_cached(
                    "INSERT INTO messages (id, session_id, seq, role, status, model, error, input_id, input_tokens, output_tokens,
                     cache_read_tokens, cache_write_tokens, cost, created_at, completed_at, reverted_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                )?
                .execute(params![
                    m.id,
                    session,
                    m.seq,
                    m.role,
                    m.status,
                    m.model,
                    m.error,
                    m.input_id,
                    i,
                    o,
                    r,
                    w,
                    m.cost,
                    m.created_at,
                    m.completed_at,
                    m.reverted_at
                ])?;
        }
        Ok(())
    }

    /// Stores part rows of `session` as they are.
    fn insert_part_rows(&mut self, session: &str, parts: &[PartRow]) -> rusqlite::Result<()> {
        for p in parts {
            self.conn()
                .prepare_cached(
                    "INSERT INTO parts (id, message_id, session_id, seq, kind, data, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![p.id, p.message_id, session, p.seq, p.kind, p.data.to_string(), p.created_at, p.updated_at])?;
        }
        Ok(())
    }

    /// Stores the rules of `session`.
    fn insert_rule_rows(&mut self, session: &str, rules: &[RuleRow]) -> rusqlite::Result<()> {
        for rule in rules {
            self.conn()
                .prepare_cached("INSERT INTO session_rules (session_id, tool, pattern, action, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![session, rule.tool, rule.pattern, rule.action, rule.created_at])?;
        }
        Ok(())
    }
}

/// The four token columns of `tokens`: input, output, cache read, cache write.
fn token_columns(t: Tokens) -> [i64; 4] {
    [t.input as i64, t.output as i64, t.cache_read as i64, t.cache_write as i64]
}
