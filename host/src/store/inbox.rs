//! The inbox: prompts that arrive for a session, stored before anything else happens to
//! them. `steer` inputs join the running activity at its next provider-turn boundary;
//! `queue` inputs wait, in arrival order, for an activity of their own.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::json;

use super::Tx;
use crate::store::events::now_ms;

use super::model::InputStatus;
pub use super::model::{Delivery, InputKind};

/// An input as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputRecord {
    /// Its id.
    pub id: String,
    /// The session.
    pub session_id: String,
    /// How it is delivered.
    pub delivery: Delivery,
    /// What it asks for.
    pub kind: InputKind,
    /// The prompt (empty for a compaction).
    pub prompt: String,
    /// When it arrived (ms since the epoch).
    pub created_at: i64,
}

fn input_from_row(r: &rusqlite::Row) -> rusqlite::Result<InputRecord> {
    Ok(InputRecord { id: r.get(0)?, session_id: r.get(1)?, delivery: r.get(2)?, prompt: r.get(3)?, created_at: r.get(4)?, kind: r.get(5)? })
}

impl Tx<'_> {
    /// Stores prompt `id` (`input.admitted`).
    pub fn admit_input(&mut self, session: &str, id: &str, delivery: Delivery, prompt: &str) -> rusqlite::Result<InputRecord> {
        self.admit(session, id, InputKind::Prompt, delivery, prompt)
    }

    /// Stores input `id` of `kind` (`input.admitted`).
    pub fn admit(&mut self, session: &str, id: &str, kind: InputKind, delivery: Delivery, prompt: &str) -> rusqlite::Result<InputRecord> {
        let input = InputRecord { id: id.into(), session_id: session.into(), delivery, kind, prompt: prompt.into(), created_at: now_ms() };
        self.conn()
            .prepare_cached(
                "INSERT INTO inbox (id, session_id, delivery, prompt, created_at, status, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![input.id, session, delivery, prompt, input.created_at, InputStatus::Pending, kind])?;
        let mut admitted = json!({ "input_id": input.id, "delivery": delivery, "prompt": prompt });
        if kind != InputKind::Prompt {
            admitted["kind"] = json!(kind);
        }
        self.emit(Some(session), "input.admitted", admitted)?;
        Ok(input)
    }

    /// The oldest pending input of `session`, steer or queue.
    pub fn next_input(&self, session: &str) -> rusqlite::Result<Option<InputRecord>> {
        self.conn()
            .prepare_cached(
                "SELECT id, session_id, delivery, prompt, created_at, kind FROM inbox
                 WHERE session_id = ?1 AND status = ?2 ORDER BY rowid LIMIT 1",
            )?
            .query_row(params![session, InputStatus::Pending], input_from_row)
            .optional()
    }

    /// The pending `steer` inputs of `session`, oldest first.
    pub fn pending_steers(&self, session: &str) -> rusqlite::Result<Vec<InputRecord>> {
        self.conn()
            .prepare_cached(
                "SELECT id, session_id, delivery, prompt, created_at, kind FROM inbox
                 WHERE session_id = ?1 AND status = ?2 AND delivery = ?3 ORDER BY rowid",
            )?
            .query_map(params![session, InputStatus::Pending, Delivery::Steer], input_from_row)?
            .collect()
    }

    /// Marks an input consumed: it became a user message.
    pub fn consume_input(&mut self, input: &str) -> rusqlite::Result<()> {
        self.conn().prepare_cached("UPDATE inbox SET status = ?3, consumed_at = ?2 WHERE id = ?1")?.execute(params![
            input,
            now_ms(),
            InputStatus::Consumed
        ])?;
        Ok(())
    }

    /// Marks an input that could not start an activity as failed (`input.failed`).
    pub fn fail_input(&mut self, session: &str, input: &str, error: &str) -> rusqlite::Result<()> {
        self.conn().prepare_cached("UPDATE inbox SET status = ?3, consumed_at = ?2 WHERE id = ?1 AND status = ?4")?.execute(params![
            input,
            now_ms(),
            InputStatus::Failed,
            InputStatus::Pending
        ])?;
        self.emit(Some(session), "input.failed", json!({ "input_id": input, "error": error }))
    }

    /// Drops every pending input of `session` (`input.cancelled` each); returns their ids.
    pub fn cancel_pending_inputs(&mut self, session: &str) -> rusqlite::Result<Vec<String>> {
        let ids: Vec<String> = self
            .conn()
            .prepare_cached("SELECT id FROM inbox WHERE session_id = ?1 AND status = ?2 ORDER BY rowid")?
            .query_map(params![session, InputStatus::Pending], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let now = now_ms();
        for id in &ids {
            self.conn().prepare_cached("UPDATE inbox SET status = ?3, consumed_at = ?2 WHERE id = ?1")?.execute(params![
                id,
                now,
                InputStatus::Cancelled
            ])?;
            self.emit(Some(session), "input.cancelled", json!({ "input_id": id }))?;
        }
        Ok(ids)
    }
}
