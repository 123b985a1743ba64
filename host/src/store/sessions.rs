//! Sessions, messages and parts: each change with its event, in one transaction.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::{Value, json};

use super::{SessionStore, StoreError};
use crate::events::now_ms;

/// Token counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// `idle`, `busy` or `retry`.
    pub status: String,
    /// Tokens used by all its messages.
    pub tokens: Tokens,
    /// Cost of all its messages, in US dollars.
    pub cost: f64,
    /// Creation time (ms since the epoch).
    pub created_at: i64,
    /// Last change (ms since the epoch).
    pub updated_at: i64,
}

/// One part of a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartRecord {
    /// Its id.
    pub id: String,
    /// `text`, `reasoning`, `tool`, `step-start` or `step-finish`.
    pub kind: String,
    /// Its content (for `tool`: call id, tool, state, input, output, title, timing).
    pub data: Value,
}

/// A message with its parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageRecord {
    /// Its id.
    pub id: String,
    /// `user` or `assistant`.
    pub role: String,
    /// `running`, `completed`, `error`, `aborted` or `interrupted`.
    pub status: String,
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
    /// Its parts, in order.
    pub parts: Vec<PartRecord>,
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Four token columns (input, output, cache read, cache write) starting at `first`.
fn tokens_at(r: &rusqlite::Row, first: usize) -> rusqlite::Result<Tokens> {
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
    })
}

const SESSION_COLUMNS: &str = "id, title, agent, model, workspace, status, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost, created_at, updated_at";

impl SessionStore {
    /// Creates a session (with `id`, or a new one); fails when `id` exists.
    pub async fn create_session(
        &self,
        id: Option<String>,
        agent: &str,
        model: &str,
        workspace: &str,
        title: &str,
    ) -> Result<SessionRecord, StoreError> {
        let id = id.unwrap_or_else(|| new_id("ses"));
        let (agent, model, workspace, title) = (agent.to_string(), model.to_string(), workspace.to_string(), title.to_string());
        self.write(move |tx| {
            let now = now_ms();
            tx.conn()
                .prepare_cached(
                    "INSERT INTO sessions (id, title, agent, model, workspace, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                )?
                .execute(params![id, title, agent, model, workspace, now])?;
            let record =
                tx.conn().query_row(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"), params![id], session_from_row)?;
            tx.emit(Some(&id), "session.created", serde_json::to_value(&record).unwrap_or(Value::Null))?;
            Ok(record)
        })
        .await
    }

    /// The session `id`.
    pub async fn session(&self, id: &str) -> Result<SessionRecord, StoreError> {
        let key = id.to_string();
        self.read(move |conn| {
            conn.query_row(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"), params![key], session_from_row).optional()
        })
        .await?
        .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    /// Sessions, newest first.
    pub async fn list_sessions(&self, limit: usize, offset: usize) -> Result<Vec<SessionRecord>, StoreError> {
        self.read(move |conn| {
            let mut stmt =
                conn.prepare(&format!("SELECT {SESSION_COLUMNS} FROM sessions ORDER BY created_at DESC, id DESC LIMIT ?1 OFFSET ?2"))?;
            let rows = stmt.query_map(params![limit as i64, offset as i64], session_from_row)?;
            rows.collect()
        })
        .await
    }

    /// Sets a session's status (`idle`, `busy`, `retry`), with details for the event.
    pub async fn set_status(&self, id: &str, status: &str, detail: Value) -> Result<(), StoreError> {
        let (id, status) = (id.to_string(), status.to_string());
        self.write(move |tx| {
            tx.conn().prepare_cached("UPDATE sessions SET status = ?2, updated_at = ?3 WHERE id = ?1")?.execute(params![
                id,
                status,
                now_ms()
            ])?;
            tx.emit(Some(&id), "session.status", json!({ "status": status, "detail": detail }))
        })
        .await
    }

    /// Starts a message.
    pub async fn add_message(&self, session: &str, role: &str, model: Option<&str>, status: &str) -> Result<String, StoreError> {
        let (session, role, model, status) = (session.to_string(), role.to_string(), model.map(str::to_string), status.to_string());
        self.write(move |tx| {
            let id = new_id("msg");
            let seq: i64 =
                tx.conn()
                    .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE session_id = ?1", params![session], |r| r.get(0))?;
            tx.conn()
                .prepare_cached(
                    "INSERT INTO messages (id, session_id, seq, role, status, model, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![id, session, seq, role, status, model, now_ms()])?;
            tx.emit(Some(&session), "message.created", json!({ "message_id": id, "role": role, "model": model }))?;
            Ok(id)
        })
        .await
    }

    /// Adds a part to a message.
    pub async fn add_part(&self, session: &str, message: &str, kind: &str, data: Value) -> Result<String, StoreError> {
        let (session, message, kind) = (session.to_string(), message.to_string(), kind.to_string());
        self.write(move |tx| {
            let id = new_id("prt");
            let seq: i64 = tx.conn().prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM parts WHERE message_id = ?1")?.query_row(params![message], |r| r.get(0))?;
            let now = now_ms();
            tx.conn().prepare_cached("INSERT INTO parts (id, message_id, session_id, seq, kind, data, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)")?.execute(params![id, message, session, seq, kind, data.to_string(), now])?;
            tx.emit(Some(&session), "part.created", json!({ "message_id": message, "part_id": id, "kind": kind, "data": data }))?;
            Ok(id)
        })
        .await
    }

    /// Replaces a part's content.
    pub async fn update_part(&self, session: &str, part: &str, data: Value, event: &str) -> Result<(), StoreError> {
        let (session, part, event) = (session.to_string(), part.to_string(), event.to_string());
        self.write(move |tx| {
            tx.conn().prepare_cached("UPDATE parts SET data = ?2, updated_at = ?3 WHERE id = ?1")?.execute(params![
                part,
                data.to_string(),
                now_ms()
            ])?;
            tx.emit(Some(&session), &event, json!({ "part_id": part, "data": data }))
        })
        .await
    }

    /// Appends streamed text to a `text` or `reasoning` part.
    pub async fn append_text(&self, session: &str, part: &str, delta: &str) -> Result<(), StoreError> {
        let (session, part, delta) = (session.to_string(), part.to_string(), delta.to_string());
        self.write(move |tx| {
            tx.conn().prepare_cached("UPDATE parts SET data = json_set(data, '$.text', COALESCE(json_extract(data, '$.text'), '') || ?2), updated_at = ?3 WHERE id = ?1")?.execute(params![part, delta, now_ms()])?;
            tx.emit(Some(&session), "part.delta", json!({ "part_id": part, "delta": delta }))
        })
        .await
    }

    /// Ends a message with its status, tokens and cost (added to the session's totals).
    pub async fn finish_message(
        &self,
        session: &str,
        message: &str,
        status: &str,
        tokens: Tokens,
        cost: f64,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        let (session, message, status) = (session.to_string(), message.to_string(), status.to_string());
        self.write(move |tx| {
            let now = now_ms();
            tx.conn().prepare_cached("UPDATE messages SET status = ?2, error = ?3, input_tokens = ?4, output_tokens = ?5, cache_read_tokens = ?6, cache_write_tokens = ?7, cost = ?8, completed_at = ?9 WHERE id = ?1")?.execute(params![message, status, error, tokens.input as i64, tokens.output as i64, tokens.cache_read as i64, tokens.cache_write as i64, cost, now])?;
            tx.conn().prepare_cached("UPDATE sessions SET input_tokens = input_tokens + ?2, output_tokens = output_tokens + ?3, cache_read_tokens = cache_read_tokens + ?4,
                 cache_write_tokens = cache_write_tokens + ?5, cost = cost + ?6, updated_at = ?7 WHERE id = ?1")?.execute(params![session, tokens.input as i64, tokens.output as i64, tokens.cache_read as i64, tokens.cache_write as i64, cost, now])?;
            tx.emit(Some(&session), "message.completed", json!({ "message_id": message, "status": status, "error": error, "tokens": tokens, "cost": cost }))?;
            if tokens != Tokens::default() {
                tx.emit(Some(&session), "usage", json!({ "message_id": message, "tokens": tokens, "cost": cost }))?;
            }
            Ok(())
        })
        .await
    }

    /// Records an error of the session (e.g. a provider failure after retries).
    pub async fn session_error(&self, session: &str, message: &str) -> Result<(), StoreError> {
        let (session, message) = (session.to_string(), message.to_string());
        self.write(move |tx| tx.emit(Some(&session), "session.error", json!({ "error": message }))).await
    }

    /// The messages of a session with their parts, in order.
    pub async fn history(&self, session: &str) -> Result<Vec<MessageRecord>, StoreError> {
        let session = session.to_string();
        self.read(move |conn| {
            let mut messages = conn.prepare(
                "SELECT id, role, status, model, error, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost, created_at
                 FROM messages WHERE session_id = ?1 ORDER BY seq",
            )?;
            let mut parts = conn.prepare("SELECT id, kind, data FROM parts WHERE message_id = ?1 ORDER BY seq")?;
            let mut out = Vec::new();
            let rows: Vec<MessageRecord> = messages
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
                        parts: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            for mut message in rows {
                message.parts = parts
                    .query_map(params![message.id], |r| {
                        let data: String = r.get(2)?;
                        Ok(PartRecord { id: r.get(0)?, kind: r.get(1)?, data: serde_json::from_str(&data).unwrap_or(Value::Null) })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                out.push(message);
            }
            Ok(out)
        })
        .await
    }
}
