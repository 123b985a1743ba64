//! Durable storage: one SQLite database (WAL) in the data directory. Sessions, messages,
//! parts, the inbox and events are written before they are announced: a change and its
//! event commit in one transaction, and only then go out on the [`EventBus`].
//!
//! One thread owns the connection; async code sends it closures ([`SessionStore::write`],
//! [`SessionStore::read`]) and awaits the answer, so no tokio worker blocks on SQLite. It
//! keeps each session's last event number (`SessionSeqs`) for as long as no other
//! connection commits.
//!
//! The write-ahead log is copied into the database by a checkpoint thread of its own, so
//! commits do not wait for the disk. It stays bounded under writes that never pause: past
//! [`WAL_LIMIT_FRAMES`] a commit wakes the checkpointer, which copies the log without
//! blocking writers and then restarts it, holding the write lock only for the frames
//! committed meanwhile and one sync. Should the disk fall behind even so, the storage
//! thread restarts the log itself once it is three times that long, and writes wait for
//! the disk.
//! [`SessionStore::close`] leaves the log checkpointed and removed.

pub mod events;
pub mod inbox;
pub mod lease;
pub mod lifecycle;
pub mod model;
mod schema;
pub mod session_rules;
pub mod sessions;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::events::{Event, EventBus, now_ms};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No data directory was given and the system has none for this user.
    #[error("no data directory on this system; pass --data-dir (or set PLUGBOARD_DATA_DIR)")]
    NoDataDir,
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
    /// A transaction could not commit; its writes were not stored.
    #[error("database commit failed: {0}")]
    Commit(String),
    /// A session id that does not exist.
    #[error("no session `{0}`")]
    NotFound(String),
    /// A session id that is taken.
    #[error("a session `{0}` already exists")]
    Exists(String),
    /// A request the store cannot carry out, and why (an export that cannot be imported, a
    /// message that is not in the session).
    #[error("{0}")]
    Invalid(String),
}

/// Delivers a write's answer once its batch committed (`Ok`) or failed (`Err`).
type Deliver = Box<dyn FnOnce(Result<(), &str>) + Send>;

/// A write as the storage thread runs it: in a savepoint of the current batch's
/// transaction; true when it succeeded.
type WriteFn = Box<dyn FnOnce(&mut Tx) -> (bool, Deliver) + Send>;

/// Work for the storage thread.
enum Job {
    /// A write.
    Write(WriteFn),
    /// Runs on its own, after the writes queued before it committed.
    Read(Box<dyn FnOnce(&Connection) + Send>),
    /// Stops the storage thread after the jobs queued before it; answered once the log is
    /// checkpointed and the database closed.
    Close(tokio::sync::oneshot::Sender<Result<(), StoreError>>),
}

/// Writes queued together commit together, at most this many per transaction.
const MAX_BATCH: usize = 512;

/// The database and the bus its events go out on.
#[derive(Clone)]
pub struct SessionStore {
    jobs: std::sync::mpsc::Sender<Job>,
    bus: EventBus,
    path: PathBuf,
}

/// A write in progress: queued when it was made, awaited when its answer is needed. The
/// storage thread runs writes in order, so one that is awaited has every earlier one
/// behind it.
#[must_use = "a write's error is only seen by awaiting it"]
pub struct PendingWrite<T> {
    answer: Option<tokio::sync::oneshot::Receiver<Result<T, StoreError>>>,
}

impl<T> std::future::Future for PendingWrite<T> {
    type Output = Result<T, StoreError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match self.answer.as_mut() {
            None => std::task::Poll::Ready(Err(StoreError::Closed)),
            Some(answer) => std::pin::Pin::new(answer).poll(cx).map(|r| r.unwrap_or(Err(StoreError::Closed))),
        }
    }
}

/// A write, in its own savepoint of a batch's transaction, that collects the events it
/// records.
pub struct Tx<'a> {
    tx: &'a Connection,
    events: Vec<Event>,
    /// The last part number used per message in this write.
    pub(crate) part_seqs: HashMap<String, i64>,
    /// Each session's last number as this connection knew it before this write.
    session_seqs: &'a SessionSeqs,
    /// What this write changed of them: a number, or `None` (not known: ask the log).
    session_seqs_now: HashMap<String, Option<i64>>,
}

/// The last per-session sequence number of each session this connection wrote an event
/// for, so that a new event's number is not looked up in the log. They are right while no
/// other connection commits (a CLI command in another process): `PRAGMA data_version`
/// changes when one did, and then they are forgotten, as they are when a batch fails.
#[derive(Default)]
struct SessionSeqs {
    /// `PRAGMA data_version` when `committed` was last known right.
    data_version: i64,
    committed: HashMap<String, i64>,
    /// What the writes of the batch in progress changed, applied when it commits.
    batch: HashMap<String, Option<i64>>,
}

/// Past this many sessions, the numbers known are forgotten and looked up again.
const MAX_SESSION_SEQS: usize = 65_536;

impl SessionSeqs {
    /// The last number of session `id`, when known.
    fn last(&self, id: &str) -> Option<i64> {
        match self.batch.get(id) {
            Some(known) => *known,
            None => self.committed.get(id).copied(),
        }
    }

    /// Called in a transaction that holds the write lock, before its first write: forgets
    /// every number when another connection committed since the last check.
    fn check(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let version = conn.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))?;
        if version != self.data_version || self.committed.len() > MAX_SESSION_SEQS {
            self.committed.clear();
            self.data_version = version;
        }
        Ok(())
    }

    /// Ends a batch: what it changed is applied when it committed. When it failed, every
    /// number is forgotten and read from the log again: failures are rare, and the log is
    /// then the one account that is sure to be right.
    fn settle(&mut self, committed: bool) {
        if !committed {
            self.committed.clear();
            self.batch.clear();
            return;
        }
        for (id, last) in self.batch.drain() {
            match last {
                Some(last) => self.committed.insert(id, last),
                None => self.committed.remove(&id),
            };
        }
    }
}

impl Tx<'_> {
    /// The transaction, for queries.
    pub fn conn(&self) -> &Connection {
        self.tx
    }

    /// Records an event in this transaction, with the next global and per-session
    /// sequence numbers.
    pub fn emit(&mut self, session_id: Option<&str>, kind: &str, data: serde_json::Value) -> rusqlite::Result<()> {
        let timestamp = now_ms();
        let session_seq = match session_id {
            Some(id) => self.last_session_seq(id)? + 1,
            None => 0,
        };
        self.tx
            .prepare_cached("INSERT INTO events (session_id, session_seq, type, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![session_id, session_seq, kind, serde_json::to_string(&data).expect("JSON values serialize"), timestamp])?;
        if let Some(id) = session_id {
            self.session_seqs_now.insert(id.to_string(), Some(session_seq));
        }
        let seq = self.tx.last_insert_rowid();
        self.events.push(Event { seq, session_id: session_id.map(str::to_string), session_seq, kind: kind.to_string(), timestamp, data });
        Ok(())
    }

    /// The number of session `id`'s last event (0 when it has none).
    fn last_session_seq(&mut self, id: &str) -> rusqlite::Result<i64> {
        let known = match self.session_seqs_now.get(id) {
            Some(known) => *known,
            None => self.session_seqs.last(id),
        };
        if let Some(last) = known {
            return Ok(last);
        }
        let last = self
            .tx
            .prepare_cached("SELECT session_seq FROM events WHERE session_id = ?1 ORDER BY seq DESC LIMIT 1")?
            .query_row(params![id], |r| r.get::<_, i64>(0))
            .optional()?
            .unwrap_or(0);
        self.session_seqs_now.insert(id.to_string(), Some(last));
        Ok(last)
    }

    /// Says that session `id`'s events were written other than by [`Tx::emit`] (an
    /// import): its last number is looked up in the log again.
    pub(crate) fn forget_session_seq(&mut self, id: &str) {
        self.session_seqs_now.insert(id.to_string(), None);
    }
}

impl SessionStore {
    /// Opens (creating when needed) the database at `path`, migrates it, and starts its
    /// thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_wal_limit(path, WAL_LIMIT_FRAMES)
    }

    fn open_with_wal_limit(path: &Path, wal_limit_frames: i32) -> Result<Self, StoreError> {
        let open_error = |message: String| StoreError::Open { path: path.to_path_buf(), message };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
        }
        let mut conn = Connection::open(path).map_err(|e| open_error(e.to_string()))?;
        conn.busy_handler(Some(poll_for(BUSY_TIMEOUT))).map_err(|e| open_error(e.to_string()))?;
        use_wal(&conn).map_err(|e| open_error(format!("switching to WAL: {e}")))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| open_error(e.to_string()))?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(|e| open_error(e.to_string()))?;
        schema::migrate(&mut conn).map_err(|e| open_error(format!("migrating: {e}")))?;
        // Every statement the store runs stays prepared (the default keeps 16).
        conn.set_prepared_statement_cache_capacity(256);
        // Plans that do not depend on bound values: otherwise SQLite prepares a statement
        // again whenever a new value is bound where the planner looked at the old one (a
        // LIMIT, an equality it weighs), which was most of the executions of some queries.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(|e| open_error(e.to_string()))?;
        // The savepoint of each write journals the pages it changes; past 64 KiB in one
        // transaction (a group commit) SQLite spills that journal to a temporary file, and
        // every later page costs a `pwrite`. In memory it stays small: writes are small.
        conn.pragma_update(None, "temp_store", "MEMORY").map_err(|e| open_error(e.to_string()))?;
        let checkpointer = Checkpointer::start(&mut conn, path, wal_limit_frames).map_err(open_error)?;
        let (jobs, receiver) = std::sync::mpsc::channel::<Job>();
        let bus = EventBus::new(4096);
        let publisher = bus.clone();
        std::thread::Builder::new()
            .name("plugboard-store".into())
            .spawn(move || {
                let close = serve(&mut conn, &receiver, &publisher, &checkpointer);
                drop(receiver);
                let closed = checkpointer.close(conn);
                match (close, closed) {
                    (Some(reply), closed) => drop(reply.send(closed)),
                    (None, Err(e)) => tracing::warn!(error = %e, "{}", CLOSE_FAILED),
                    (None, Ok(())) => {}
                }
            })
            .map_err(|e| open_error(format!("cannot start the storage thread: {e}")))?;
        Ok(SessionStore { jobs, bus, path: path.to_path_buf() })
    }

    /// The default database: `<data dir>/plugboard.db`.
    pub fn default_path() -> Option<PathBuf> {
        crate::trust::default_data_dir().map(|d| d.join("plugboard.db"))
    }

    /// Opens `<data_dir>/plugboard.db`, or the default database when no directory is given.
    pub fn open_in(data_dir: Option<&Path>) -> Result<Self, StoreError> {
        let path = match data_dir {
            Some(dir) => dir.join("plugboard.db"),
            None => Self::default_path().ok_or(StoreError::NoDataDir)?,
        };
        Self::open(&path)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bus committed events go out on.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Queues `f` as a write and returns its answer to await. `f` runs in its own savepoint
    /// of a transaction shared with the writes queued alongside it (group commit); an
    /// error in `f` rolls back only its own changes. The answer comes, and the events it
    /// recorded go out on the bus, once the transaction committed: nothing is announced
    /// before it is stored. Publishing happens on the storage thread, so the bus carries
    /// events in sequence order even when the writer stopped waiting (a cancelled activity).
    pub fn write<T: Send + 'static>(&self, f: impl FnOnce(&mut Tx) -> rusqlite::Result<T> + Send + 'static) -> PendingWrite<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let write: WriteFn = Box::new(move |tx| {
            let result = f(tx);
            let ok = result.is_ok();
            let deliver: Deliver = Box::new(move |committed| {
                let answer = match (result, committed) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Err(e), _) => Err(StoreError::Sqlite(e)),
                    (Ok(_), Err(message)) => Err(StoreError::Commit(message.to_string())),
                };
                let _ = reply.send(answer);
            });
            (ok, deliver)
        });
        PendingWrite { answer: self.jobs.send(Job::Write(write)).is_ok().then_some(answer) }
    }

    /// Runs a read `f` on the storage thread.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job::Read(Box::new(move |conn| {
            let _ = reply.send(f(conn));
        }));
        self.jobs.send(job).map_err(|_| StoreError::Closed)?;
        Ok(answer.await.map_err(|_| StoreError::Closed)??)
    }

    /// Commits the writes queued before this call, checkpoints and removes the write-ahead
    /// log, and stops the storage thread; later calls on any handle fail with
    /// [`StoreError::Closed`]. For a clean shutdown: without it the log is recovered at the
    /// next open, and nothing committed is lost either way.
    pub async fn close(&self) -> Result<(), StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs.send(Job::Close(reply)).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// The sequence number of the newest event (0 when there is none).
    pub async fn last_seq(&self) -> Result<i64, StoreError> {
        self.read(|conn| conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))).await
    }

    /// Every event after `after` (`None`: from now on), in order and without gaps, for as
    /// long as the store lives: live from the bus, and replayed from the log whenever this
    /// follower falls behind the bus's buffer. It subscribes at once, so with `None` no
    /// event committed after this call is missed. For observers of the whole log (metrics,
    /// `event` hooks).
    pub fn tail(&self, after: Option<i64>) -> impl futures::Stream<Item = std::sync::Arc<Event>> + Send + 'static {
        use tokio::sync::broadcast::error::RecvError;
        let store = self.clone();
        let mut live = store.bus().subscribe();
        async_stream::stream! {
            let mut last = after;
            // Events the bus dropped before this follower knew where it stood.
            let mut missed_at_start = 0u64;
            loop {
                if let Some(after) = last {
                    let mut cursor = after;
                    loop {
                        match store.events_after(cursor, None, 1000).await {
                            Ok(page) if page.is_empty() => break,
                            Ok(page) => {
                                for event in page {
                                    cursor = event.seq;
                                    yield std::sync::Arc::new(event);
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, after = cursor, "cannot replay the event log; following live events only");
                                break;
                            }
                        }
                    }
                    last = Some(cursor);
                }
                loop {
                    match live.recv().await {
                        Ok(event) if last.is_none() && missed_at_start > 0 => {
                            // The bus numbers events without gaps: replay from the first one missed.
                            last = Some(event.seq - missed_at_start as i64 - 1);
                            missed_at_start = 0;
                            break;
                        }
                        Ok(event) if last.is_some_and(|l| event.seq <= l) => {}
                        Ok(event) => {
                            last = Some(event.seq);
                            yield event;
                        }
                        Err(RecvError::Lagged(n)) if last.is_none() => missed_at_start += n,
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return,
                    }
                }
            }
        }
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

/// The storage thread: runs reads alone, and each write together with the writes queued
/// behind it (group commit: under load, many writes share one commit; when idle, a write
/// commits at once), until every handle to the store is dropped or it is asked to close
/// (then it returns where to answer).
fn serve(
    conn: &mut Connection,
    jobs: &std::sync::mpsc::Receiver<Job>,
    bus: &EventBus,
    checkpointer: &Checkpointer,
) -> Option<tokio::sync::oneshot::Sender<Result<(), StoreError>>> {
    let mut session_seqs = SessionSeqs::default();
    let mut next = jobs.recv().ok();
    while let Some(job) = next.take() {
        match job {
            Job::Read(read) => read(conn),
            Job::Close(reply) => return Some(reply),
            Job::Write(first) => {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match jobs.try_recv() {
                        Ok(Job::Write(write)) => batch.push(write),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                checkpointer.hold_back(conn);
                commit_batch(conn, batch, bus, &mut session_seqs);
            }
        }
        if next.is_none() {
            next = jobs.recv().ok();
        }
    }
    None
}

/// Runs writes in one transaction, each in its own savepoint; after the commit, publishes
/// their events and delivers their answers.
fn commit_batch(conn: &mut Connection, batch: Vec<WriteFn>, bus: &EventBus, session_seqs: &mut SessionSeqs) {
    let mut delivers = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    let conn: &Connection = conn;
    // The statements that open and close transactions and savepoints stay prepared, like
    // every other (rusqlite's `Transaction` and `Savepoint` parse theirs on every use).
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut statement| statement.execute([])).map(drop);
    let committed = (|| -> rusqlite::Result<()> {
        run("BEGIN IMMEDIATE")?;
        session_seqs.check(conn)?;
        for write in batch {
            run("SAVEPOINT write")?;
            let mut tx =
                Tx { tx: conn, events: Vec::new(), part_seqs: Default::default(), session_seqs, session_seqs_now: Default::default() };
            let (ok, deliver) = write(&mut tx);
            delivers.push(deliver);
            let (mut written, changed) = (tx.events, tx.session_seqs_now);
            if ok {
                events.append(&mut written);
                session_seqs.batch.extend(changed);
            } else {
                run("ROLLBACK TO write")?;
            }
            run("RELEASE write")?;
        }
        run("COMMIT")
    })();
    if committed.is_err() && !conn.is_autocommit() {
        let _ = run("ROLLBACK");
    }
    session_seqs.settle(committed.is_ok());
    match committed {
        Ok(()) => {
            bus.publish(events);
            for deliver in delivers {
                deliver(Ok(()));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for deliver in delivers {
                deliver(Err(&message));
            }
        }
    }
}

/// The checkpoint thread, what wakes it early, and the log's hard limit.
struct Checkpointer {
    thread: std::thread::JoinHandle<()>,
    /// The frames in the log after the writer's last commit.
    frames: std::sync::Arc<std::sync::atomic::AtomicI32>,
    /// The writer restarts the log itself once it holds this many frames.
    hard_limit: std::sync::atomic::AtomicI32,
    limit_frames: i32,
    /// Held while a checkpoint runs: SQLite runs one at a time and refuses a second at once.
    running: std::sync::Arc<std::sync::Mutex<()>>,
}

impl Checkpointer {
    /// Turns off SQLite's checkpoints in the commits of `writer` and starts the thread that
    /// does them instead, woken by `writer`'s commits once the log holds `limit_frames`.
    fn start(writer: &mut Connection, path: &Path, limit_frames: i32) -> Result<Self, String> {
        // Automatic checkpoints would run in the writer's commits and wait for the disk
        // there. (Setting this replaces any WAL hook, so it comes first.)
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(|e| e.to_string())?;
        // A log that was reset is cut back to this size instead of keeping its largest.
        let page_size: i64 = writer.pragma_query_value(None, "page_size", |r| r.get(0)).map_err(|e| e.to_string())?;
        writer.pragma_update(None, "journal_size_limit", i64::from(limit_frames) * (page_size + 24)).map_err(|e| e.to_string())?;
        let mut conn = Connection::open(path).map_err(|e| e.to_string())?;
        conn.busy_handler(Some(poll_for(RESTART_WAIT))).map_err(|e| e.to_string())?;
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let frames = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
        let seen = frames.clone();
        writer
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, in_log: std::ffi::c_int| {
                seen.store(in_log, std::sync::atomic::Ordering::Relaxed);
                if in_log >= limit_frames {
                    let _ = wake.try_send(());
                }
                Ok(())
            }))
            .map_err(|e| e.to_string())?;
        let running = std::sync::Arc::new(std::sync::Mutex::new(()));
        let gate = running.clone();
        let thread = std::thread::Builder::new()
            .name("plugboard-checkpoint".into())
            .spawn(move || checkpoint_until_closed(&conn, &woken, &gate, limit_frames))
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
        Ok(Checkpointer { thread, frames, hard_limit: (3 * limit_frames).into(), limit_frames, running })
    }

    /// Before a batch: a log past the hard limit (the checkpointer fell behind the disk) is
    /// restarted here, so writes wait for the disk instead of the log growing on. When
    /// readers in other processes keep it from being restarted, the next try waits until
    /// the log is one limit longer, so a stuck reader cannot stall every batch.
    fn hold_back(&self, writer: &mut Connection) {
        use std::sync::atomic::Ordering::Relaxed;
        let frames = self.frames.load(Relaxed);
        if frames < self.hard_limit.load(Relaxed) {
            return;
        }
        // Waits for the checkpointer's copy, which leaves little to restart.
        let _running = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let restarted = (|| {
            writer.busy_handler(Some(poll_for(RESTART_WAIT)))?;
            let busy = writer.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
            writer.busy_handler(Some(poll_for(BUSY_TIMEOUT)))?;
            busy
        })();
        match restarted {
            Ok(0) => {
                self.frames.store(0, Relaxed);
                self.hard_limit.store(3 * self.limit_frames, Relaxed);
            }
            outcome => {
                tracing::warn!(frames, ?outcome, "the write-ahead log cannot be restarted (a reader holds it); it is tried again later");
                self.hard_limit.store(frames.saturating_add(self.limit_frames), Relaxed);
            }
        }
    }

    /// Stops the thread (removing the hook drops what wakes it), then checkpoints and
    /// truncates the log from `writer` and closes it; as the last connection of this
    /// process, closing also removes the log file.
    fn close(self, mut writer: Connection) -> Result<(), StoreError> {
        writer.wal_hook(None::<fn(&mut rusqlite::hooks::Wal, std::ffi::c_int) -> rusqlite::Result<()>>)?;
        let _ = self.thread.join();
        writer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        writer.close().map_err(|(_, e)| StoreError::Sqlite(e))
    }
}

/// Copies the write-ahead log into the database every [`CHECKPOINT_EVERY`], or at once when
/// a commit finds it past `limit_frames`, without blocking writers. A log found past the
/// limit is then restarted (the next commit writes it from its start, and cuts the file
/// back to the limit): that takes the write lock, but only to copy the frames committed
/// while the first copy ran and sync the database. Stops when the storage thread drops its
/// side of `woken`.
fn checkpoint_until_closed(conn: &Connection, woken: &std::sync::mpsc::Receiver<()>, running: &std::sync::Mutex<()>, limit_frames: i32) {
    use std::sync::mpsc::RecvTimeoutError;
    let checkpoint = |mode| {
        let _running = running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get::<_, i64>(1))
    };
    while let Ok(()) | Err(RecvTimeoutError::Timeout) = woken.recv_timeout(CHECKPOINT_EVERY) {
        match checkpoint("PASSIVE") {
            Ok(log_frames) if log_frames >= i64::from(limit_frames) => {
                if let Err(e) = checkpoint("RESTART") {
                    tracing::warn!(error = %e, "WAL restart failed; it is retried");
                }
                // Commits that found the log long while it was restarted asked for nothing new.
                while woken.try_recv().is_ok() {}
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; it is retried"),
        }
    }
}

/// What a failed close means for the user.
pub const CLOSE_FAILED: &str =
    "the database was not closed cleanly; what was committed is kept, and SQLite recovers its log at the next open";

/// How often the write-ahead log is checkpointed.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The log length (about 16 MiB with 4 KiB pages) past which it is checkpointed at once
/// and restarted.
const WAL_LIMIT_FRAMES: i32 = 4096;

/// How long a restart waits for the writer's transaction and for readers of the log (other
/// processes) before it gives up until the next time; writers wait for it meanwhile.
const RESTART_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// A busy handler that tries again every [`BUSY_POLL`] for up to `limit`. (SQLite's own
/// sleeps 1, 2, 5, 10, … ms in turn: a writer that waits 4 ms for a restart resumes at 8.)
fn poll_for(limit: std::time::Duration) -> impl FnMut(i32) -> bool + Send + 'static {
    let mut since = std::time::Instant::now();
    move |attempt| {
        if attempt == 0 {
            since = std::time::Instant::now();
        }
        std::thread::sleep(BUSY_POLL);
        since.elapsed() < limit
    }
}

/// How often a connection waiting for a lock tries again.
const BUSY_POLL: std::time::Duration = std::time::Duration::from_micros(100);

/// How long opening (and a write) waits for another connection holding the write lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Switches the database to WAL. When another process switches the same new database at
/// the same moment, SQLite answers "database is locked" at once, without the busy handler,
/// so the switch is tried again until the busy timeout.
fn use_wal(conn: &Connection) -> rusqlite::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn a_failing_write_rolls_back_alone_and_the_rest_of_its_batch_commits_in_order() {
        let dir = std::env::temp_dir().join(format!("plugboard-store-batch-{}", std::process::id()));
        let store = SessionStore::open(&dir.join("plugboard.db")).unwrap();
        let mut bus = store.bus().subscribe();
        // Queued back to back, the three writes share one commit.
        let first = store.write(|tx| tx.emit(None, "first", json!({})));
        let failing = store.write(|tx| {
            tx.emit(None, "lost", json!({}))?;
            tx.conn().execute("INSERT INTO no_such_table VALUES (1)", []).map(|_| ())
        });
        let last = store.write(|tx| tx.emit(None, "last", json!({})));
        first.await.unwrap();
        assert!(matches!(failing.await, Err(StoreError::Sqlite(_))));
        last.await.unwrap();
        let stored = store.events_after(0, None, 10).await.unwrap();
        assert_eq!(stored.iter().map(|e| (e.seq, e.kind.as_str())).collect::<Vec<_>>(), [(1, "first"), (2, "last")]);
        let published: Vec<Event> = std::iter::from_fn(|| bus.try_recv().ok()).map(std::sync::Arc::unwrap_or_clone).collect();
        assert_eq!(published, stored, "only what was stored is announced, in order");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The per-session numbers of session `id`'s events, in order.
    async fn session_seqs(store: &SessionStore, id: &str) -> Vec<i64> {
        let events = store.events_after(0, Some(id.to_string()), 100).await.unwrap();
        events.iter().map(|e| e.session_seq).collect()
    }

    #[tokio::test]
    async fn a_sessions_event_numbers_go_on_without_gaps_past_a_write_that_failed() {
        let dir = std::env::temp_dir().join(format!("plugboard-store-seq-failed-{}", std::process::id()));
        let store = SessionStore::open(&dir.join("plugboard.db")).unwrap();
        store.write(|tx| tx.emit(Some("s"), "first", json!({}))).await.unwrap();
        // Queued together: the failing write's number is taken by the one after it.
        let failing = store.write(|tx| {
            tx.emit(Some("s"), "lost", json!({}))?;
            tx.conn().execute("INSERT INTO no_such_table VALUES (1)", []).map(|_| ())
        });
        let next = store.write(|tx| tx.emit(Some("s"), "second", json!({})));
        assert!(failing.await.is_err());
        next.await.unwrap();
        // And in a commit of its own.
        let alone = store.write(|tx| {
            tx.emit(Some("s"), "lost", json!({}))?;
            tx.conn().execute("INSERT INTO no_such_table VALUES (1)", []).map(|_| ())
        });
        assert!(alone.await.is_err());
        store.write(|tx| tx.emit(Some("s"), "third", json!({}))).await.unwrap();
        assert_eq!(session_seqs(&store, "s").await, [1, 2, 3]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_sessions_event_numbers_follow_events_another_process_wrote_meanwhile() {
        let dir = std::env::temp_dir().join(format!("plugboard-store-seq-other-{}", std::process::id()));
        let path = dir.join("plugboard.db");
        let store = SessionStore::open(&path).unwrap();
        store.write(|tx| tx.emit(Some("s"), "first", json!({}))).await.unwrap();
        store.write(|tx| tx.emit(Some("s"), "second", json!({}))).await.unwrap();
        // A CLI command in another process, with a connection of its own.
        let other = Connection::open(&path).unwrap();
        other
            .execute("INSERT INTO events (session_id, session_seq, type, data, created_at) VALUES ('s', 3, 'other', '{}', 0)", [])
            .unwrap();
        drop(other);
        store.write(|tx| tx.emit(Some("s"), "fourth", json!({}))).await.unwrap();
        assert_eq!(session_seqs(&store, "s").await, [1, 2, 3, 4]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The size of the write-ahead log of the database at `path` (0 when there is none).
    fn wal_bytes(path: &Path) -> u64 {
        std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len())
    }

    #[tokio::test]
    async fn a_write_ahead_log_under_writes_that_never_pause_stays_near_its_limit() {
        let dir = std::env::temp_dir().join(format!("plugboard-store-wal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("plugboard.db");
        // 256 frames: about 1 MiB; the writer holds back at 3 MiB.
        let store = SessionStore::open_with_wal_limit(&path, 256).unwrap();
        let pad = "x".repeat(8000);
        let mut peak = 0;
        // About 30 MiB of log in all, one commit after another.
        for _ in 0..3000 {
            let pad = pad.clone();
            store.write(move |tx| tx.emit(None, "fill", json!({ "pad": pad }))).await.unwrap();
            peak = peak.max(wal_bytes(&path));
        }
        // At most the hard limit and one commit (here at most 8 pages of 4 KiB, each with its
        // frame header), after the log's own header.
        assert!(peak <= 32 + (768 + 8) * 4120, "the log reached {peak} bytes");
        assert_eq!(store.last_seq().await.unwrap(), 3000);
        store.close().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn closing_the_store_commits_what_was_queued_and_removes_its_write_ahead_log() {
        let dir = std::env::temp_dir().join(format!("plugboard-store-close-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("plugboard.db");
        let store = SessionStore::open(&path).unwrap();
        let other = store.clone();
        let queued: Vec<_> = (0..100).map(|i| store.write(move |tx| tx.emit(None, "queued", json!({ "i": i })))).collect();
        store.close().await.unwrap();
        for write in queued {
            write.await.unwrap();
        }
        assert_eq!(wal_bytes(&path), 0, "no log is left behind");
        assert!(matches!(other.write(|_| Ok(())).await, Err(StoreError::Closed)), "every handle is closed");
        assert!(matches!(other.close().await, Err(StoreError::Closed)));
        let reopened = SessionStore::open(&path).unwrap();
        assert_eq!(reopened.last_seq().await.unwrap(), 100, "everything queued before the close was stored");
        reopened.close().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn processes_opening_one_new_database_at_once_all_open_it_and_migrate_it_once() {
        for round in 0..5 {
            let dir = std::env::temp_dir().join(format!("plugboard-store-race-{}-{round}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let path = dir.join("plugboard.db");
            // Each opener has its own connections, as another process has.
            let start = std::sync::Arc::new(std::sync::Barrier::new(6));
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        SessionStore::open(&path).map(drop)
                    })
                })
                .collect();
            for opener in openers {
                opener.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
            let conn = Connection::open(&path).unwrap();
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            assert_eq!(version as usize, schema::MIGRATIONS.len());
            drop(conn);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
