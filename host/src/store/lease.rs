//! The session lease: at most one process runs a session's activities at a time.
//!
//! A process that starts work on a session takes its lease (`owner`, `lease_expires_at`)
//! and renews it while it works. Another process may take it over when the holder is gone:
//! its lease expired, or it ran on this machine and its process no longer exists (a
//! `kill -9`, a crash, a restart). Taking over a session that was left mid-activity first
//! closes what was unfinished, as `interrupted`, so the history is whole and the session
//! usable again.

use std::sync::OnceLock;
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::model::{InputStatus, MessageStatus, SessionStatus};
use super::{SessionStore, StoreError, Tx};
use crate::store::events::now_ms;

/// How long a lease lasts without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(30);
/// How often a process renews the leases it holds.
pub const LEASE_RENEWAL: Duration = Duration::from_secs(10);

/// This process as a lease holder: `host:pid:nonce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerId {
    token: String,
    host: String,
    pid: u32,
}

impl OwnerId {
    /// The id of this process (the same for every runtime in it).
    pub fn current() -> &'static OwnerId {
        static CURRENT: OnceLock<OwnerId> = OnceLock::new();
        CURRENT.get_or_init(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into());
            let pid = std::process::id();
            let token = format!("{host}:{pid}:{}", uuid::Uuid::now_v7().simple());
            OwnerId { token, host, pid }
        })
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// Whether the holder `owner` may still be working, seen from this process.
    pub fn holder_is_alive(&self, owner: &str, lease_expires_at: Option<i64>) -> bool {
        if owner == self.token {
            return true;
        }
        if lease_expires_at.is_none_or(|t| t <= now_ms()) {
            return false;
        }
        let mut fields = owner.rsplitn(3, ':');
        let (_nonce, pid, host) = (fields.next(), fields.next(), fields.next());
        match (host, pid.and_then(|p| p.parse::<u32>().ok())) {
            // An earlier process with this pid (a restart in a container reuses pid 1).
            (Some(host), Some(pid)) if host == self.host && pid == self.pid => false,
            (Some(host), Some(pid)) if host == self.host => process_exists(pid),
            _ => true,
        }
    }
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This process holds the lease now.
    Taken {
        /// Messages and tool calls left unfinished by a previous holder and now closed as
        /// interrupted.
        recovered: Option<(usize, usize)>,
    },
    /// A live process holds it.
    HeldBy(String),
}

/// Why a turn is marked interrupted on recovery.
pub const INTERRUPTED: &str = "interrupted: the process running this turn stopped before it finished";

impl Tx<'_> {
    /// Takes the lease of `session` for `me`, unless a live process holds it. Taking it from
    /// a dead holder, or finding a session that was left busy, first closes the unfinished
    /// turn as `interrupted` and sets the session idle. `None` when there is no such session.
    pub fn claim_session(&mut self, session: &str, me: &OwnerId) -> rusqlite::Result<Option<Claim>> {
        let row: Option<(SessionStatus, Option<String>, Option<i64>)> = self
            .conn()
            .prepare_cached("SELECT status, owner, lease_expires_at FROM sessions WHERE id = ?1")?
            .query_row(params![session], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((status, owner, expires)) = row else { return Ok(None) };
        let mine = owner.as_deref() == Some(me.as_str());
        if let Some(owner) = owner.as_deref().filter(|o| !mine && me.holder_is_alive(o, expires)) {
            return Ok(Some(Claim::HeldBy(owner.to_string())));
        }
        let recovered = if mine { None } else { self.recover_session(session, status, owner.as_deref())? };
        self.conn().prepare_cached("UPDATE sessions SET owner = ?2, lease_expires_at = ?3 WHERE id = ?1")?.execute(params![
            session,
            me.as_str(),
            now_ms() + LEASE_DURATION.as_millis() as i64
        ])?;
        Ok(Some(Claim::Taken { recovered }))
    }

    /// Closes what a stopped holder left unfinished; `None` when nothing was.
    fn recover_session(
        &mut self,
        session: &str,
        status: SessionStatus,
        previous: Option<&str>,
    ) -> rusqlite::Result<Option<(usize, usize)>> {
        let (messages, calls) = self.close_unfinished(session, MessageStatus::Interrupted, INTERRUPTED, None)?;
        if messages == 0 && calls == 0 && status == SessionStatus::Idle {
            return Ok(None);
        }
        self.set_status(
            session,
            SessionStatus::Idle,
            json!({ "recovered": { "previous_owner": previous, "interrupted_messages": messages, "interrupted_calls": calls } }),
        )?;
        Ok(Some((messages, calls)))
    }

    /// Gives up the lease of `session` when it is idle and has no pending input; true when
    /// released.
    pub fn release_session(&mut self, session: &str, me: &OwnerId) -> rusqlite::Result<bool> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE sessions SET owner = NULL, lease_expires_at = NULL
                 WHERE id = ?1 AND owner = ?2 AND status = ?3
                 AND NOT EXISTS (SELECT 1 FROM inbox WHERE session_id = ?1 AND status = ?4)",
            )?
            .execute(params![session, me.as_str(), SessionStatus::Idle, InputStatus::Pending])?;
        Ok(changed > 0)
    }

    /// Gives up the lease of `session` even with input pending (at shutdown: the next
    /// process to start, or any other, picks the session up at once).
    pub fn hand_over_session(&mut self, session: &str, me: &OwnerId) -> rusqlite::Result<bool> {
        let changed = self
            .conn()
            .prepare_cached("UPDATE sessions SET owner = NULL, lease_expires_at = NULL WHERE id = ?1 AND owner = ?2")?
            .execute(params![session, me.as_str()])?;
        Ok(changed > 0)
    }

    /// Extends the lease of `session` when `me` holds it; true when it did.
    pub fn renew_lease(&mut self, session: &str, me: &OwnerId) -> rusqlite::Result<bool> {
        let changed = self
            .conn()
            .prepare_cached("UPDATE sessions SET lease_expires_at = ?3 WHERE id = ?1 AND owner = ?2")?
            .execute(params![session, me.as_str(), now_ms() + LEASE_DURATION.as_millis() as i64])?;
        Ok(changed > 0)
    }

    /// Sessions that another process left behind (a holder that is gone, or a session left
    /// busy) or that have pending input, and that no live process holds.
    pub fn orphaned_sessions(&self, me: &OwnerId) -> rusqlite::Result<Vec<String>> {
        let rows: Vec<(String, Option<String>, Option<i64>)> = self
            .conn()
            .prepare_cached(
                "SELECT id, owner, lease_expires_at FROM sessions WHERE owner IS NOT NULL OR status != ?1
                 UNION SELECT s.id, s.owner, s.lease_expires_at FROM sessions s
                 WHERE EXISTS (SELECT 1 FROM inbox i WHERE i.session_id = s.id AND i.status = ?2)",
            )?
            .query_map(params![SessionStatus::Idle, InputStatus::Pending], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows
            .into_iter()
            .filter(|(_, owner, expires)| owner.as_deref().is_none_or(|o| o != me.as_str() && !me.holder_is_alive(o, *expires)))
            .map(|(id, _, _)| id)
            .collect())
    }
}

impl SessionStore {
    /// Takes over every session a stopped process left behind, closing its unfinished turn
    /// as interrupted. Returns the sessions recovered, and those with pending input (whose
    /// lease this process keeps, to run them); the others are released.
    pub async fn recover_orphans(&self) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let me = OwnerId::current();
        self.write(move |tx| {
            let (mut recovered, mut pending) = (Vec::new(), Vec::new());
            for id in tx.orphaned_sessions(me)? {
                if let Some(Claim::Taken { recovered: Some(_) }) = tx.claim_session(&id, me)? {
                    recovered.push(id.clone());
                }
                if tx.next_input(&id)?.is_some() {
                    pending.push(id);
                } else {
                    tx.release_session(&id, me)?;
                }
            }
            Ok((recovered, pending))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_judged_by_lease_pid_and_nonce() {
        let me = OwnerId::current();
        let later = Some(now_ms() + 60_000);
        assert!(me.holder_is_alive(me.as_str(), None), "this process is alive");
        let host = &me.host;
        // This pid with another nonce: an earlier process that had our pid.
        assert!(!me.holder_is_alive(&format!("{host}:{}:feed", me.pid), later));
        // A process of this machine that does not exist.
        assert!(!me.holder_is_alive(&format!("{host}:{}:feed", i32::MAX - 1), later));
        // One that does (pid 1 always exists), until its lease expires.
        assert!(me.holder_is_alive(&format!("{host}:1:feed"), later));
        assert!(!me.holder_is_alive(&format!("{host}:1:feed"), Some(now_ms() - 1)));
        // Another machine: only the lease tells.
        assert!(me.holder_is_alive("elsewhere:42:feed", later));
        assert!(!me.holder_is_alive("elsewhere:42:feed", Some(now_ms() - 1)));
    }
}
