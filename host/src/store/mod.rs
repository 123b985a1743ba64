//! Durable storage: one SQLite database (WAL) in the data directory. Sessions, messages,
//! parts, the inbox and events are written before they are announced: a change and its
//! event commit in one transaction, and only then go out on the [`EventBus`].
//!
//! One thread owns the connection; async code sends it closures ([`SessionStore::write`],
//! [`SessionStore::read`]) and awaits the answer, so no tokio worker blocks on SQLite.

mod schema;
pub mod sessions;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use crate::events::{Event, EventBus, now_ms};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("cannot open the database {path}: {message}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A query failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The storage thread is gone.
    #[error("the storage thread has stopped")]
    Closed,
    /// A session id that does not exist.
    #[error("no session `{0}`")]
    NotFound(String),
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The database and the bus its events go out on.
#[derive(Clone)]
pub struct SessionStore {
    jobs: std::sync::mpsc::Sender<Job>,
    bus: EventBus,
    path: PathBuf,
}

/// A write transaction that collects the events it records.
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
    events: Vec<Event>,
}

impl Tx<'_> {
    /// The transaction, for queries.
    pub fn conn(&self) -> &Connection {
        &self.tx
    }

    /// Records an event in this transaction, with the next global and per-session
    /// sequence numbers.
    pub fn emit(&mut self, session_id: Option<&str>, kind: &str, data: serde_json::Value) -> rusqlite::Result<()> {
        let timestamp = now_ms();
        let session_seq: i64 = match session_id {
            Some(id) => {
                self.tx
                    .query_row("SELECT COALESCE(MAX(session_seq), 0) + 1 FROM events WHERE session_id = ?1", params![id], |r| r.get(0))?
            }
            None => 0,
        };
        self.tx
            .prepare_cached("INSERT INTO events (session_id, session_seq, type, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![session_id, session_seq, kind, data.to_string(), timestamp])?;
        let seq = self.tx.last_insert_rowid();
        self.events.push(Event { seq, session_id: session_id.map(str::to_string), session_seq, kind: kind.to_string(), timestamp, data });
        Ok(())
    }
}

impl SessionStore {
    /// Opens (creating when needed) the database at `path`, migrates it, and starts its
    /// thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |message: String| StoreError::Open { path: path.to_path_buf(), message };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        }
        let mut conn = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| open_error(e.to_string()))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| open_error(e.to_string()))?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(|e| open_error(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| open_error(e.to_string()))?;
        schema::migrate(&mut conn).map_err(|e| open_error(format!("migrating: {e}")))?;
        let (jobs, receiver) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("plugboard-store".into())
            .spawn(move || {
                while let Ok(job) = receiver.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| open_error(format!("cannot start the storage thread: {e}")))?;
        Ok(SessionStore { jobs, bus: EventBus::new(4096), path: path.to_path_buf() })
    }

    /// The default database: `<data dir>/plugboard.db`.
    pub fn default_path() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "plugboard").map(|d| d.data_dir().join("plugboard.db"))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bus committed events go out on.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Runs `f` in a write transaction; on success commits, then publishes the events it
    /// recorded.
    pub async fn write<T: Send + 'static>(&self, f: impl FnOnce(&mut Tx) -> rusqlite::Result<T> + Send + 'static) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = (|| -> rusqlite::Result<(T, Vec<Event>)> {
                let mut tx = Tx { tx: conn.transaction()?, events: Vec::new() };
                let value = f(&mut tx)?;
                let events = std::mem::take(&mut tx.events);
                tx.tx.commit()?;
                Ok((value, events))
            })();
            let _ = reply.send(result);
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        let (value, events) = answer.await.map_err(|_| StoreError::Closed)??;
        self.bus.publish(events);
        Ok(value)
    }

    /// Runs a read `f` on the storage thread.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        Ok(answer.await.map_err(|_| StoreError::Closed)??)
    }

    /// Events with a global sequence number above `after`, oldest first, at most `limit`,
    /// of one session or of all.
    pub async fn events_after(&self, after: i64, session_id: Option<String>, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT seq, session_id, session_seq, type, data, created_at FROM events
                 WHERE seq > ?1 AND (?2 IS NULL OR session_id = ?2) ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![after, session_id, limit as i64], |r| {
                let data: String = r.get(4)?;
                Ok(Event {
                    seq: r.get(0)?,
                    session_id: r.get(1)?,
                    session_seq: r.get(2)?,
                    kind: r.get(3)?,
                    data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                    timestamp: r.get(5)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}
