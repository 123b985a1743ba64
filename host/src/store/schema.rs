//! The schema, as versioned migrations applied in order (`PRAGMA user_version`).

use rusqlite::Connection;

/// Each entry migrates from version `i` to `i + 1`. Never edit a released entry: append.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: sessions, messages, parts, inbox, events.
    "CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        agent TEXT NOT NULL,
        model TEXT NOT NULL,
        workspace TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'idle',
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        cost REAL NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        seq INTEGER NOT NULL,
        role TEXT NOT NULL,
        status TEXT NOT NULL,
        model TEXT,
        error TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        cost REAL NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        completed_at INTEGER
    );
    CREATE INDEX messages_by_session ON messages(session_id, seq);
    CREATE TABLE parts (
        id TEXT PRIMARY KEY,
        message_id TEXT NOT NULL REFERENCES messages(id),
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX parts_by_message ON parts(message_id, seq);
    CREATE TABLE inbox (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        delivery TEXT NOT NULL,
        prompt TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        consumed_at INTEGER
    );
    CREATE INDEX inbox_pending ON inbox(session_id, consumed_at, created_at);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT,
        session_seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX events_by_session ON events(session_id, session_seq);",
    // 2: the session lease, the inbox's state, durable session rules, the input a user
    // message came from, and unfinished tool parts by session.
    "ALTER TABLE sessions ADD COLUMN owner TEXT;
    ALTER TABLE sessions ADD COLUMN lease_expires_at INTEGER;
    ALTER TABLE inbox ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
    CREATE INDEX inbox_by_status ON inbox(session_id, status);
    ALTER TABLE messages ADD COLUMN input_id TEXT;
    CREATE INDEX parts_by_session ON parts(session_id, kind);
    CREATE TABLE session_rules (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        tool TEXT NOT NULL,
        pattern TEXT NOT NULL,
        action TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX session_rules_by_session ON session_rules(session_id, id);",
    // 3: fewer pages per commit: event numbers without AUTOINCREMENT (events are never
    // deleted, so the next number is still the largest plus one), and no duplicate inbox
    // index.
    "CREATE TABLE events_v3 (
        seq INTEGER PRIMARY KEY,
        session_id TEXT,
        session_seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    INSERT INTO events_v3 SELECT seq, session_id, session_seq, type, data, created_at FROM events;
    DROP TABLE events;
    ALTER TABLE events_v3 RENAME TO events;
    CREATE INDEX events_by_session ON events(session_id, session_seq);
    DROP INDEX inbox_pending;",
    // 4: per-session model options (temperature, max tokens, tools, system prompt), and
    // events by session in sequence order (the replay of one session's stream, paged).
    "ALTER TABLE sessions ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX events_by_session_seq ON events(session_id, seq);
    DROP INDEX events_by_session;",
    // 5: what an input asks for (a prompt, or a compaction on request).
    "ALTER TABLE inbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'prompt';",
    // 6: messages undone by a revert (the model no longer sees them).
    "ALTER TABLE messages ADD COLUMN reverted_at INTEGER;",
];

/// Brings the database to the newest schema. Processes that open one database at once
/// migrate it once: the version is read again and the migrations applied inside one
/// immediate transaction, so the others wait for its write lock (the busy timeout) and then
/// find the schema up to date.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    if check_version(conn)? == MIGRATIONS.len() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version = check_version(&tx)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
    }
    tx.commit()
}

/// The schema version of the database, refused when it is newer than this Plugboard knows.
fn check_version(conn: &Connection) -> rusqlite::Result<usize> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version as usize > MIGRATIONS.len() {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database has schema version {version}, newer than this Plugboard knows ({}); upgrade Plugboard",
            MIGRATIONS.len()
        )));
    }
    Ok(version as usize)
}
