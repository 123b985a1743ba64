//! Permission rules a session gained from `always` answers, kept with the session so that
//! they hold in whichever process continues it.

use rusqlite::params;

use super::Tx;
use super::model::RuleSpec;
use crate::store::events::now_ms;

impl Tx<'_> {
    /// Adds a rule to `session`.
    pub fn add_session_rule(&mut self, session: &str, rule: &RuleSpec) -> rusqlite::Result<()> {
        self.conn()
            .prepare_cached("INSERT INTO session_rules (session_id, tool, pattern, action, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![session, rule.tool, rule.pattern, rule.action, now_ms()])?;
        Ok(())
    }

    /// The rules of `session`, oldest first.
    pub fn session_rules(&self, session: &str) -> rusqlite::Result<Vec<RuleSpec>> {
        self.conn()
            .prepare_cached("SELECT tool, pattern, action FROM session_rules WHERE session_id = ?1 ORDER BY id")?
            .query_map(params![session], |r| Ok(RuleSpec { tool: r.get(0)?, pattern: r.get(1)?, action: r.get(2)? }))?
            .collect()
    }
}
