//! Sessions, messages and parts: each change with its event, in one transaction.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::{Value, json};

use super::model::{MessageRole, MessageStatus, PartKind, SessionStatus, ToolPart, ToolState};
use super::{SessionStore, StoreError, Tx};
use crate::store::events::now_ms;

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Tokens {
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the provider's cache.
    pub cache_read: u64,
    /// Input tokens written to the provider's cache.
    pub cache_write: u64,
}

impl std::ops::AddAssign for Tokens {
    fn add_assign(&mut self, more: Tokens) {
        self.input += more.input;
        self.output += more.output;
        self.cache_read += more.cache_read;
        self.cache_write += more.cache_write;
    }
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SessionRecord {
    /// Its id.
    pub id: String,
    /// A title (the start of the first prompt).
    pub title: String,
    /// The agent it runs.
    pub agent: String,
    /// The model, as `provider/model`.
    pub model: String,
    /// The workspace directory.
    pub workspace: String,
    /// What it is doing.
    pub status: SessionStatus,
    /// Tokens used by all its messages.
    pub tokens: Tokens,
    /// Cost of all its messages, in US dollars.
    pub cost: f64,
    /// Creation time (ms since the epoch).
    pub created_at: i64,
    /// Last change (ms since the epoch).
    pub updated_at: i64,
    /// Its model options.
    pub options: SessionOptions,
}

/// A session's model options, chosen when it is created (`model_config` over HTTP); they
/// apply to each of its provider turns. Secrets are not among them: a per-session API key
/// or endpoint lives in memory only (see [`crate::agent::ProviderOverrides`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SessionOptions {
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Most tokens per answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The tools offered (within the agent's rules); all of them when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled_tools: Option<Vec<String>>,
    /// Text added to the agent's system prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
}

/// One part of a message.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PartRecord {
    /// Its id.
    pub id: String,
    /// What it holds.
    pub kind: PartKind,
    /// Its content (for `tool`: call id, tool, state, input, output, title, timing).
    pub data: Value,
}

/// A message with its parts.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MessageRecord {
    /// Its id.
    pub id: String,
    /// Who wrote it.
    pub role: MessageRole,
    /// Where it stands.
    pub status: MessageStatus,
    /// The model that wrote it (assistant messages).
    pub model: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Tokens it used.
    pub tokens: Tokens,
    /// What it cost, in US dollars.
    pub cost: f64,
    /// Creation time (ms since the epoch).
    pub created_at: i64,
    /// When a revert undid it (the model no longer sees it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverted_at: Option<i64>,
    /// Its parts, in order.
    pub parts: Vec<PartRecord>,
}

#[cfg(test)]
impl MessageRecord {
    /// A stored message for tests: `id`, of `role`, ended with `status`, holding `parts`
    /// (each part's id is `prt_<id>_<n>`).
    pub fn of(id: &str, role: MessageRole, status: MessageStatus, parts: Vec<(PartKind, Value)>) -> Self {
        MessageRecord {
            id: id.into(),
            role,
            status,
            model: None,
            error: None,
            tokens: Tokens::default(),
            cost: 0.0,
            created_at: 0,
            reverted_at: None,
            parts: parts.into_iter().enumerate().map(|(n, (kind, data))| PartRecord { id: format!("prt_{id}_{n}"), kind, data }).collect(),
        }
    }
}

/// Whether `id` may name a session: 1 to 128 letters, digits, `_`, `-` or `.`.
pub fn valid_session_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A new time-ordered id with a type prefix (`ses_`, `msg_`, `prt_`, `inp_`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Four token columns (input, output, cache read, cache write) starting at `first`.
pub(super) fn tokens_at(r: &rusqlite::Row, first: usize) -> rusqlite::Result<Tokens> {
    let n = |i: usize| r.get::<_, i64>(first + i).map(|v| v as u64);
    Ok(Tokens { input: n(0)?, output: n(1)?, cache_read: n(2)?, cache_write: n(3)? })
}

fn session_from_row(r: &rusqlite::Row) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: r.get(0)?,
        title: r.get(1)?,
        agent: r.get(2)?,
        model: r.get(3)?,
        workspace: r.get(4)?,
        status: r.get(5)?,
        tokens: tokens_at(r, 6)?,
        cost: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
        options: serde_json::from_str(&r.get::<_, String>(13)?).unwrap_or_default(),
    })
}

const SESSION_COLUMNS: &str = "id, title, agent, model, workspace, status, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost, created_at, updated_at, options";

impl SessionStore {
    /// Creates a session (with `id`, or a new one); fails when `id` exists.
    pub async fn create_session(
        &self,
        id: Option<String>,
        agent: &str,
        model: &str,
        workspace: &str,
        title: &str,
        options: &SessionOptions,
    ) -> Result<SessionRecord, StoreError> {
        let id = id.unwrap_or_else(|| new_id("ses"));
        let (agent, model, workspace, title) = (agent.to_string(), model.to_string(), workspace.to_string(), title.to_string());
        let options = serde_json::to_string(options).unwrap_or_else(|_| "{}".into());
        self.write(move |tx| {
            let taken = tx.conn().prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?.exists(params![id])?;
            if taken {
                return Ok(Err(StoreError::Exists(id)));
            }
            let now = now_ms();
            tx.conn()
                .prepare_cached(
                    "INSERT INTO sessions (id, title, agent, model, workspace, created_at, updated_at, options) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
                )?
                .execute(params![id, title, agent, model, workspace, now, options])?;
            let record =
                tx.conn().query_row(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"), params![id], session_from_row)?;
            tx.emit(Some(&id), "session.created", serde_json::to_value(&record).unwrap_or(Value::Null))?;
            Ok(Ok(record))
        })
        .await?
    }

    /// Switches session `id` to `model` (`provider/model`) and records `session.model` with
    /// the previous one; nothing changes, and no event is recorded, when it already uses it.
    /// Returns the session as it is then.
    pub async fn set_model(&self, id: &str, model: &str) -> Result<SessionRecord, StoreError> {
        let (key, model) = (id.to_string(), model.to_string());
        self.write(move |tx| {
            let Some(record) = tx.session(&key)? else { return Ok(None) };
            if record.model == model {
                return Ok(Some(record));
            }
            tx.conn().prepare_cached("UPDATE sessions SET model = ?2, updated_at = ?3 WHERE id = ?1")?.execute(params![
                key,
                model,
                now_ms()
            ])?;
            tx.emit(Some(&key), "session.model", json!({ "model": model, "previous": record.model }))?;
            tx.session(&key)
        })
        .await?
        .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    /// How many sessions have each status.
    pub async fn count_by_status(&self) -> Result<Vec<(SessionStatus, u64)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT status, COUNT(*) FROM sessions GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, SessionStatus>(0)?, r.get::<_, i64>(1)? as u64)))?;
            rows.collect()
        })
        .await
    }

    /// The session `id`.
    pub async fn session(&self, id: &str) -> Result<SessionRecord, StoreError> {
        let key = id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"))?
                .query_row(params![key], session_from_row)
                .optional()
        })
        .await?
        .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    /// Sessions, newest first.
    pub async fn list_sessions(&self, limit: usize, offset: usize) -> Result<Vec<SessionRecord>, StoreError> {
        self.list_sessions_in(None, limit, offset).await
    }

    /// Sessions of `workspace` (all when `None`), newest first.
    pub async fn list_sessions_in(&self, workspace: Option<String>, limit: usize, offset: usize) -> Result<Vec<SessionRecord>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE ?1 IS NULL OR workspace = ?1
                 ORDER BY created_at DESC, id DESC LIMIT ?2 OFFSET ?3"
            ))?;
            let rows = stmt.query_map(params![workspace, limit as i64, offset as i64], session_from_row)?;
            rows.collect()
        })
        .await
    }

    /// The messages of a session with their parts, in order.
    pub async fn history(&self, session: &str) -> Result<Vec<MessageRecord>, StoreError> {
        let session = session.to_string();
        self.read(move |conn| load_history(conn, &session)).await
    }
}

/// The messages of `session` with their parts, in order: two queries, whatever the length.
pub fn load_history(conn: &rusqlite::Connection, session: &str) -> rusqlite::Result<Vec<MessageRecord>> {
    let mut messages: Vec<MessageRecord> = conn
        .prepare_cached(
            "SELECT id, role, status, model, error, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost, created_at,
             reverted_at FROM messages WHERE session_id = ?1 ORDER BY seq",
        )?
        .query_map(params![session], |r| {
            Ok(MessageRecord {
                id: r.get(0)?,
                role: r.get(1)?,
                status: r.get(2)?,
                model: r.get(3)?,
                error: r.get(4)?,
                tokens: tokens_at(r, 5)?,
                cost: r.get(9)?,
                created_at: r.get(10)?,
                reverted_at: r.get(11)?,
                parts: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let index: std::collections::HashMap<String, usize> = messages.iter().enumerate().map(|(i, m)| (m.id.clone(), i)).collect();
    let mut parts = conn.prepare_cached("SELECT message_id, id, kind, data FROM parts WHERE session_id = ?1 ORDER BY message_id, seq")?;
    let rows = parts.query_map(params![session], |r| {
        let data: String = r.get(3)?;
        Ok((
            r.get::<_, String>(0)?,
            PartRecord { id: r.get(1)?, kind: r.get(2)?, data: serde_json::from_str(&data).unwrap_or(Value::Null) },
        ))
    })?;
    for row in rows {
        let (message, part) = row?;
        if let Some(&i) = index.get(&message) {
            messages[i].parts.push(part);
        }
    }
    Ok(messages)
}

/// Writes inside a transaction: each change records its event (see [`Tx::emit`]). The agent
/// loop groups several of them into one transaction per step.
impl Tx<'_> {
    /// The session `id` as it is in this transaction.
    pub fn session(&self, id: &str) -> rusqlite::Result<Option<SessionRecord>> {
        self.conn()
            .prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"))?
            .query_row(params![id], session_from_row)
            .optional()
    }

    /// Sets a session's status, with details for the event.
    pub fn set_status(&mut self, session: &str, status: SessionStatus, detail: Value) -> rusqlite::Result<()> {
        self.conn().prepare_cached("UPDATE sessions SET status = ?2, updated_at = ?3 WHERE id = ?1")?.execute(params![
            session,
            status,
            now_ms()
        ])?;
        self.emit(Some(session), "session.status", json!({ "status": status, "detail": detail }))
    }

    /// Starts message `id` (from [`new_id`]`("msg")`); `input` is the inbox input a user
    /// message came from.
    pub fn insert_message(
        &mut self,
        id: &str,
        session: &str,
        role: MessageRole,
        model: Option<&str>,
        status: MessageStatus,
        input: Option<&str>,
    ) -> rusqlite::Result<()> {
        let seq: i64 = self
            .conn()
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE session_id = ?1")?
            .query_row(params![session], |r| r.get(0))?;
        self.conn()
            .prepare_cached(
                "INSERT INTO messages (id, session_id, seq, role, status, model, input_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![id, session, seq, role, status, model, input, now_ms()])?;
        let mut data = json!({ "message_id": id, "role": role, "model": model });
        if let Some(input) = input {
            data["input_id"] = json!(input);
        }
        self.emit(Some(session), "message.created", data)
    }

    /// Adds part `id` (from [`new_id`]`("prt")`) to a message.
    pub fn insert_part(&mut self, id: &str, session: &str, message: &str, kind: PartKind, data: &Value) -> rusqlite::Result<()> {
        let seq: i64 = match self.part_seqs.get(message) {
            Some(last) => last + 1,
            None => self
                .conn()
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM parts WHERE message_id = ?1")?
                .query_row(params![message], |r| r.get(0))?,
        };
        self.part_seqs.insert(message.to_string(), seq);
        self.conn()
            .prepare_cached(
                "INSERT INTO parts (id, message_id, session_id, seq, kind, data, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            )?
            .execute(params![id, message, session, seq, kind, data.to_string(), now_ms()])?;
        self.emit(Some(session), "part.created", json!({ "message_id": message, "part_id": id, "kind": kind, "data": data }))
    }

    /// Replaces a part's content (`part.updated`).
    pub fn update_part(&mut self, session: &str, part: &str, data: &Value) -> rusqlite::Result<()> {
        self.replace_part(session, part, data, "part.updated")
    }

    /// Records a tool call's new state (`tool.state`).
    pub fn update_tool(&mut self, session: &str, part: &str, tool: &ToolPart) -> rusqlite::Result<()> {
        self.replace_part(session, part, &tool.to_value(), "tool.state")
    }

    fn replace_part(&mut self, session: &str, part: &str, data: &Value, event: &str) -> rusqlite::Result<()> {
        self.conn().prepare_cached("UPDATE parts SET data = ?2, updated_at = ?3 WHERE id = ?1")?.execute(params![
            part,
            data.to_string(),
            now_ms()
        ])?;
        self.emit(Some(session), event, json!({ "part_id": part, "data": data }))
    }

    /// Appends streamed text to a `text` or `reasoning` part.
    pub fn append_text(&mut self, session: &str, part: &str, delta: &str) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached(
                "UPDATE parts SET data = json_set(data, '$.text', COALESCE(json_extract(data, '$.text'), '') || ?2), updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![part, delta, now_ms()])?;
        self.emit(Some(session), "part.delta", json!({ "part_id": part, "delta": delta }))
    }

    /// Ends a message with its status, tokens and cost; the tokens and cost are added to the
    /// session's totals (`session.updated`).
    pub fn finish_message(
        &mut self,
        session: &str,
        message: &str,
        status: MessageStatus,
        tokens: Tokens,
        cost: f64,
        error: Option<&str>,
    ) -> rusqlite::Result<()> {
        let now = now_ms();
        let t = [tokens.input as i64, tokens.output as i64, tokens.cache_read as i64, tokens.cache_write as i64];
        self.conn()
            .prepare_cached(
                "UPDATE messages SET status = ?2, error = ?3, input_tokens = ?4, output_tokens = ?5, cache_read_tokens = ?6,
                 cache_write_tokens = ?7, cost = ?8, completed_at = ?9 WHERE id = ?1",
            )?
            .execute(params![message, status, error, t[0], t[1], t[2], t[3], cost, now])?;
        self.emit(
            Some(session),
            "message.completed",
            json!({ "message_id": message, "status": status, "error": error, "tokens": tokens, "cost": cost }),
        )?;
        if tokens != Tokens::default() || cost != 0.0 {
            self.conn()
                .prepare_cached(
                    "UPDATE sessions SET input_tokens = input_tokens + ?2, output_tokens = output_tokens + ?3, cache_read_tokens = cache_read_tokens + ?4,
                     cache_write_tokens = cache_write_tokens + ?5, cost = cost + ?6, updated_at = ?7 WHERE id = ?1",
                )?
                .execute(params![session, t[0], t[1], t[2], t[3], cost, now])?;
            let model: Option<String> = self
                .conn()
                .prepare_cached("SELECT model FROM messages WHERE id = ?1")?
                .query_row(params![message], |r| r.get(0))
                .optional()?
                .flatten();
            self.emit(Some(session), "usage", json!({ "message_id": message, "model": model, "tokens": tokens, "cost": cost }))?;
            let totals = self.session(session)?.map(|s| json!({ "tokens": s.tokens, "cost": s.cost })).unwrap_or(Value::Null);
            self.emit(Some(session), "session.updated", totals)?;
        }
        Ok(())
    }

    /// Marks `messages` of `session` reverted (`session.reverted`, with `detail`).
    pub fn revert_messages(&mut self, session: &str, messages: &[String], detail: Value) -> rusqlite::Result<()> {
        let now = now_ms();
        for message in messages {
            self.conn()
                .prepare_cached("UPDATE messages SET reverted_at = ?3 WHERE id = ?1 AND session_id = ?2")?
                .execute(params![message, session, now])?;
        }
        self.emit(Some(session), "session.reverted", detail)
    }

    /// Records an error of the session (e.g. a provider failure after retries).
    pub fn session_error(&mut self, session: &str, message: &str) -> rusqlite::Result<()> {
        self.emit(Some(session), "session.error", json!({ "error": message }))
    }

    /// Closes what an activity left unfinished: running messages get `status` (aborted or
    /// interrupted) and tool calls still pending or running become errors saying `reason`.
    /// `spent` is what the running turn had already used (its message, tokens and cost):
    /// billed all the same, so counted. Returns how many messages and tool calls were closed.
    pub fn close_unfinished(
        &mut self,
        session: &str,
        status: MessageStatus,
        reason: &str,
        spent: Option<&(String, Tokens, f64)>,
    ) -> rusqlite::Result<(usize, usize)> {
        let messages: Vec<String> = self
            .conn()
            .prepare_cached("SELECT id FROM messages WHERE session_id = ?1 AND status = ?2 ORDER BY seq")?
            .query_map(params![session, MessageStatus::Running], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let tools: Vec<(String, String)> = self
            .conn()
            .prepare_cached(
                "SELECT id, data FROM parts WHERE session_id = ?1 AND kind = ?2
                 AND json_extract(data, '$.state') IN (?3, ?4) ORDER BY created_at, seq",
            )?
            .query_map(params![session, PartKind::Tool, ToolState::Pending, ToolState::Running], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let now = now_ms();
        for (part, data) in &tools {
            let Some(tool) = serde_json::from_str::<Value>(data).ok().as_ref().and_then(ToolPart::from_value) else {
                tracing::warn!(session, part, "a stored tool part is not one; it is left as it is");
                continue;
            };
            self.update_tool(session, part, &tool.failed(now, reason.to_string(), None))?;
        }
        for message in &messages {
            let (tokens, cost) = spent.filter(|(m, _, _)| m == message).map_or((Tokens::default(), 0.0), |(_, t, c)| (*t, *c));
            self.finish_message(session, message, status, tokens, cost, Some(reason))?;
        }
        Ok((messages.len(), tools.len()))
    }
}
