//! The embedded store: one SQLite database in WAL mode inside the data directory.
//!
//! One writer connection appends the ingest's groups; a small pool of read-only
//! connections serves queries. WAL lets readers see the last commit without waiting for
//! the writer, and the writer never waits for readers.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use eventline_core::cursor::StreamCursor;
use eventline_core::error_chain::ErrorChain;
use eventline_core::event::{Event, Scope};
use eventline_core::query::{Filter, Page, PageQuery};
use eventline_core::stats::{StatsQuery, StatsRow};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::page_sql::{self, Dialect};
use crate::{Appended, Durability, Error, Outcome, Store, StreamChunk, Submission};

pub mod layered_vfs;
mod page_checksum;
mod query;
mod wal;

pub const DATABASE_FILE: &str = "eventline.sqlite3";
const LOCK_FILE: &str = "eventline.lock";
/// Migrations in order; `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    include_str!("sqlite/schema.sql"),
    include_str!("sqlite/suppression.sql"),
    include_str!("sqlite/counts.sql"),
    include_str!("sqlite/stream.sql"),
    include_str!("sqlite/checksum.sql"),
    include_str!("sqlite/hourly.sql"),
    include_str!("sqlite/page_checksums.sql"),
];
/// The first schema version whose stores have page checksums.
const PAGE_CHECKSUMS_VERSION: i64 = 7;

/// The count tables of stats queries.
const ROLLUPS: page_sql::Rollups<'static> = page_sql::Rollups {
    minute: "event_counts",
    hour: Some("event_counts_hourly"),
};

/// The highest `seq` given out: every event with a smaller one is committed or deleted.
const SEQ_HEAD_SQL: &str =
    "SELECT max(coalesce((SELECT max(seq) FROM events), 0), (SELECT seq_max FROM stream_state))";

/// Columns of `events` in the order [`event_from_row`] reads them.
pub(crate) const EVENT_COLUMNS: &str = "id, timestamp_ms, received_at_ms, client_timestamp_ms, event_type, contact_id, scope, content, checksum";

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub durability: Durability,
    /// Read connections open at once; more readers wait.
    pub readers_max: usize,
    /// A registered SQLite VFS to open the files with instead of the default one: the
    /// fault harness plays a failing or powered-off disk through it.
    pub vfs: Option<String>,
}

impl Default for SqliteOptions {
    fn default() -> SqliteOptions {
        SqliteOptions {
            durability: Durability::Full,
            readers_max: 8,
            vfs: None,
        }
    }
}

pub struct SqliteStore {
    /// Dropped before the writer (fields drop in order): the last connection to close
    /// moves the WAL into the database file and removes it, and a read-only one cannot.
    readers: Arc<Readers>,
    writer: Arc<Mutex<Connection>>,
    /// Set when an fsync failed. The kernel may have dropped the pages it could not
    /// write and a second fsync would then report success for data that is not on disk,
    /// so the store refuses every write until a restart reads back what the disk holds.
    sync_failed: Arc<AtomicBool>,
    /// Held for the life of the store: a second process on the same directory refuses
    /// to start instead of interleaving writes.
    _lock: File,
}

impl SqliteStore {
    /// Runs `work` on the writer connection, off the async threads.
    async fn write<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    {
        if self.sync_failed.load(Ordering::Relaxed) {
            return Err(Error::SyncFailed);
        }
        let writer = Arc::clone(&self.writer);
        let sync_failed = Arc::clone(&self.sync_failed);
        tokio::task::spawn_blocking(move || {
            let mut connection = writer.lock().unwrap_or_else(PoisonError::into_inner);
            if sync_failed.load(Ordering::Relaxed) {
                return Err(Error::SyncFailed);
            }
            let result = work(&mut connection).map_err(name_damage);
            if let Err(Error::Sqlite(error)) = &result
                && is_sync_failure(error)
            {
                sync_failed.store(true, Ordering::Relaxed);
            }
            result
        })
        .await?
    }

    /// Opens (creating if needed) the store in `data_dir`. Blocks: call it at start-up.
    pub fn open(data_dir: &Path, options: &SqliteOptions) -> Result<SqliteStore, Error> {
        let dir_error = |source| Error::DataDir {
            path: data_dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(dir_error)?;
        let lock = File::create(data_dir.join(LOCK_FILE)).map_err(dir_error)?;
        if lock.try_lock().is_err() {
            return Err(Error::DataDirLocked(data_dir.to_owned()));
        }
        let path = data_dir.join(DATABASE_FILE);
        wal::check(&data_dir.join(format!("{DATABASE_FILE}-wal")))?;
        let vfs = page_checksum::register(options.vfs.as_deref()).map_err(Error::PageChecksums)?;
        let mut writer = open_connection(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            &vfs,
        )?;
        turn_on_page_checksums(&writer)?;
        let synchronous = match options.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        writer.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = {synchronous};
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -65536;
             -- Savepoints journal the pages they change: in memory, not in a temporary
             -- file (they are undone within the transaction, never recovered from).
             PRAGMA temp_store = MEMORY;
             -- Deleted rows are overwritten with zeros: an erased contact's events do
             -- not linger in free space.
             PRAGMA secure_delete = ON;"
        ))?;
        migrate(&mut writer)?;
        let readers = Readers {
            path,
            vfs,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(options.readers_max.max(1)),
        };
        Ok(SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(readers),
            sync_failed: Arc::new(AtomicBool::new(false)),
            _lock: lock,
        })
    }
}

/// What [`SqliteStore::verify`] found.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// Events read back whole and matching their checksum.
    pub events: u64,
    /// Events stored before checksums (schema version 5): read back whole, unchecked.
    pub unchecked: u64,
    /// Every problem found, in words; empty when the store is sound.
    pub problems: Vec<String>,
}

impl SqliteStore {
    /// Reads the whole store back: SQLite's `integrity_check` (every page, every index
    /// against its table) and every event against its checksum. Blocks, and reads every
    /// byte: an operator's command (`eventline check`), not a start-up step.
    pub fn verify(&self) -> Result<Verified, Error> {
        let connection = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut verified = Verified::default();
        // A read that fails (a page refused by its checksum) ends that pass, not the check.
        let stopped = |pass: &str, error: rusqlite::Error| {
            format!("{pass} stopped: {}", ErrorChain(&name_damage(error.into())))
        };
        let mut integrity = connection.prepare("PRAGMA integrity_check")?;
        let mut lines = integrity.query([])?;
        loop {
            match lines.next() {
                Ok(Some(line)) => {
                    let line: String = line.get(0)?;
                    if line != "ok" {
                        verified.problems.push(format!("integrity_check: {line}"));
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    verified.problems.push(stopped("integrity_check", error));
                    break;
                }
            }
        }
        let mut events = connection.prepare(&format!("SELECT {EVENT_COLUMNS} FROM events"))?;
        let mut rows = events.query([])?;
        loop {
            let row = match rows.next() {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(error) => {
                    verified.problems.push(stopped("reading the events", error));
                    break;
                }
            };
            let values = row_values(row)?;
            let has_checksum = values.checksum.is_some();
            match event_from_row(values) {
                Ok(_) if has_checksum => verified.events += 1,
                Ok(_) => verified.unchecked += 1,
                Err(error) => verified.problems.push(error.to_string()),
            }
        }
        Ok(verified)
    }
}

impl SqliteStore {
    /// The contacts erased with suppression, for the upgrade to the log store. Blocks.
    pub fn suppressed_contacts(&self) -> Result<Vec<String>, Error> {
        let connection = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut statement =
            connection.prepare("SELECT contact_id FROM suppressed_contacts ORDER BY contact_id")?;
        let contacts = statement
            .query_map([], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(contacts)
    }
}

/// A page its checksum refused, said so: SQLite reports it as a plain I/O error.
fn name_damage(error: Error) -> Error {
    match &error {
        Error::Sqlite(sqlite)
            if sqlite.sqlite_error().map(|error| error.extended_code)
                == Some(rusqlite::ffi::SQLITE_IOERR_DATA) =>
        {
            match page_checksum::take_refused_page() {
                Some(page) => Error::Corrupt(format!(
                    "page {page} of {DATABASE_FILE} does not match its checksum"
                )),
                None => error,
            }
        }
        _ => error,
    }
}

/// Whether an error is a failed fsync (of a file or of its directory).
fn is_sync_failure(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error().map(|error| error.extended_code),
        Some(rusqlite::ffi::SQLITE_IOERR_FSYNC | rusqlite::ffi::SQLITE_IOERR_DIR_FSYNC)
    )
}

fn open_connection(path: &Path, flags: OpenFlags, vfs: &str) -> Result<Connection, Error> {
    let flags = flags | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    Ok(Connection::open_with_flags_and_vfs(path, flags, vfs)?)
}

/// Turns page checksums on for the writer's database: a new database reserves their
/// bytes before its first page is written; a database made before them (no reserved
/// bytes) is rewritten with them once, by a VACUUM.
fn turn_on_page_checksums(connection: &Connection) -> Result<(), Error> {
    let page_checksums = Error::PageChecksums;
    let pages: i64 = connection.pragma_query_value(None, "page_count", |row| row.get(0))?;
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let reserved = page_checksum::reserved_bytes(connection, None).map_err(page_checksums)?;
    if pages == 0 {
        page_checksum::reserved_bytes(connection, Some(page_checksum::RESERVED_LEN as u8))
            .map_err(page_checksums)?;
    } else if reserved != page_checksum::RESERVED_LEN as u8 && version >= PAGE_CHECKSUMS_VERSION {
        // The header was read before any page could be checked: one flipped bit in it
        // (8 reserved bytes become 0) must not pass for a store made before checksums,
        // which would be rewritten with the damage.
        return Err(Error::PageChecksums(format!(
            "the first page of {DATABASE_FILE} is damaged: it reserves {reserved} bytes per page for checksums where a store of schema version {version} reserves {}; restore it from a backup",
            page_checksum::RESERVED_LEN
        )));
    } else if reserved != page_checksum::RESERVED_LEN as u8 {
        tracing::info!(
            pages,
            "adding page checksums to a store made before them: the database file is rewritten once"
        );
        // The old pages leave the WAL first, unsealed; from then on every page written
        // to the database file is sealed, and only the VACUUM's pages are.
        let (busy, _, _): (i64, i64, i64) =
            connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        if busy != 0 {
            return Err(Error::PageChecksums(
                "the WAL could not be emptied before adding page checksums".to_owned(),
            ));
        }
        page_checksum::reserved_bytes(connection, Some(page_checksum::RESERVED_LEN as u8))
            .map_err(page_checksums)?;
        page_checksum::set_mode(connection, page_checksum::Mode::Seal).map_err(page_checksums)?;
        // The copy VACUUM builds goes to a temporary file, not to memory: it is as large
        // as the store.
        connection
            .execute_batch("PRAGMA temp_store = FILE; VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
        let reserved = page_checksum::reserved_bytes(connection, None).map_err(page_checksums)?;
        if reserved != page_checksum::RESERVED_LEN as u8 {
            return Err(Error::PageChecksums(format!(
                "VACUUM left {reserved} reserved bytes per page"
            )));
        }
    }
    page_checksum::set_mode(connection, page_checksum::Mode::On).map_err(page_checksums)
}

fn migrate(connection: &mut Connection) -> Result<(), Error> {
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > known {
        return Err(Error::SchemaTooNew {
            found: version,
            known,
        });
    }
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for (number, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", number as i64 + 1)?;
    }
    transaction.commit()?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(&self, submissions: Vec<Submission>) -> Result<Vec<Outcome>, Error> {
        self.write(move |connection| append_blocking(connection, submissions))
            .await
    }

    async fn page(&self, query: PageQuery) -> Result<Page, Error> {
        self.readers
            .run(move |connection| query::page(connection, &query))
            .await
    }

    async fn stream(
        &self,
        filter: &Filter,
        after: StreamCursor,
        limit: u32,
    ) -> Result<StreamChunk, Error> {
        let filter = filter.clone();
        self.readers
            .run(move |connection| query::stream(connection, &filter, after, limit))
            .await
    }

    async fn stream_head(&self) -> Result<StreamCursor, Error> {
        self.readers
            .run(|connection| {
                let head: i64 = connection.query_row(SEQ_HEAD_SQL, [], |row| row.get(0))?;
                Ok(query::seq_position(head))
            })
            .await
    }

    async fn check(&self) -> Result<(), Error> {
        // Not ready while writes are refused: a restart is what brings them back.
        if self.sync_failed.load(Ordering::Relaxed) {
            return Err(Error::SyncFailed);
        }
        self.readers
            .run(|connection| Ok(connection.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn erase_contact(&self, contact_id: &str, suppress: bool) -> Result<u64, Error> {
        let contact_id = contact_id.to_owned();
        self.write(move |connection| {
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let erased = transaction.execute("DELETE FROM events WHERE contact_id = ?1", [&contact_id])?;
            if suppress {
                transaction.execute(
                    "INSERT INTO suppressed_contacts (contact_id) VALUES (?1) ON CONFLICT DO NOTHING",
                    [&contact_id],
                )?;
            }
            transaction.commit()?;
            // The deleted rows are zeroed in the new page images (secure_delete); moving
            // them into the database file and emptying the WAL removes the old images too.
            let (busy, _, _): (i64, i64, i64) = connection.query_row(
                "PRAGMA wal_checkpoint(TRUNCATE)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )?;
            if busy != 0 {
                tracing::warn!("the WAL could not be emptied after an erasure (readers busy); the next checkpoint will");
            }
            Ok(erased as u64)
        })
        .await
    }

    async fn stats(&self, query: StatsQuery) -> Result<Vec<StatsRow>, Error> {
        self.readers
            .run(move |connection| {
                let mut rows = Vec::new();
                for (sql, params) in page_sql::stats_sql(&query, Dialect::Sqlite, &ROLLUPS) {
                    let mut statement = connection.prepare_cached(&sql)?;
                    let values = params.into_iter().map(query::sql_value);
                    let found = statement.query_map(rusqlite::params_from_iter(values), |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    })?;
                    for row in found {
                        rows.push(row?);
                    }
                }
                Ok(page_sql::sum_stats(rows))
            })
            .await
    }

    async fn event_types(&self) -> Result<Vec<(String, u64)>, Error> {
        self.readers
            .run(|connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT event_type, SUM(count) FROM event_counts GROUP BY 1 HAVING SUM(count) > 0 ORDER BY 1",
                )?;
                let rows = statement.query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?.unsigned_abs()))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn unsuppress_contact(&self, contact_id: &str) -> Result<bool, Error> {
        let contact_id = contact_id.to_owned();
        self.write(move |connection| {
            let removed = connection.execute(
                "DELETE FROM suppressed_contacts WHERE contact_id = ?1",
                [&contact_id],
            )?;
            Ok(removed > 0)
        })
        .await
    }

    async fn delete_before(&self, cutoff_ms: i64, limit: u32) -> Result<u64, Error> {
        self.write(move |connection| {
            let deleted = connection.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE timestamp_ms < ?1 ORDER BY timestamp_ms LIMIT ?2)",
                params![cutoff_ms, limit],
            )?;
            Ok(deleted as u64)
        })
        .await
    }
}

/// One transaction for the whole group. A multi-event submission that may conflict gets
/// a savepoint, so that a conflict undoes just that submission.
fn append_blocking(
    connection: &mut Connection,
    submissions: Vec<Submission>,
) -> Result<Vec<Outcome>, Error> {
    let mut transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut seq: i64 = transaction.query_row(SEQ_HEAD_SQL, [], |row| row.get(0))?;
    let mut outcomes = Vec::with_capacity(submissions.len());
    // The events stored now, for the counts.
    let mut new_events = Vec::new();
    for submission in submissions {
        let outcome = if submission.events.len() == 1 || !may_conflict(&transaction, &submission)? {
            append_submission(&transaction, submission, &mut seq, &mut new_events)?
        } else {
            let savepoint = transaction.savepoint()?;
            let stored_before = new_events.len();
            let outcome = append_submission(&savepoint, submission, &mut seq, &mut new_events)?;
            match outcome {
                Outcome::Stored(_) => savepoint.commit()?,
                Outcome::Conflict { .. } | Outcome::Suppressed { .. } => {
                    savepoint.finish()?;
                    new_events.truncate(stored_before);
                }
            }
            outcome
        };
        outcomes.push(outcome);
    }
    count_new_events(&transaction, &new_events)?;
    transaction.commit()?;
    Ok(outcomes)
}

/// Whether a submission may end in a conflict: an id given twice in it, or an id already
/// stored. When neither holds, every insert is new, a conflict cannot happen (this
/// connection is the only writer and holds the transaction), and the submission needs no
/// savepoint. A savepoint copies each page it changes into a statement journal first,
/// which cost a fifth of a bulk import's time.
fn may_conflict(connection: &Connection, submission: &Submission) -> Result<bool, Error> {
    let mut stored = connection.prepare_cached("SELECT 1 FROM events WHERE id = ?1")?;
    let mut seen = HashSet::with_capacity(submission.events.len());
    for event in &submission.events {
        if !seen.insert(event.id) || stored.exists([event.id.as_bytes()])? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Adds the group's newly stored events to `event_counts` and `event_counts_hourly`: one
/// upsert per minute (and hour), type and scope, in the group's transaction.
fn count_new_events(connection: &Connection, new_events: &[Event]) -> Result<(), Error> {
    let counts = page_sql::counts_per_minute(new_events.iter());
    let mut upsert = connection.prepare_cached(
        "INSERT INTO event_counts (minute, event_type, scope, count) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (minute, event_type, scope) DO UPDATE SET count = count + excluded.count",
    )?;
    let mut upsert_hourly = connection.prepare_cached(
        "INSERT INTO event_counts_hourly (hour, event_type, scope, count) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (hour, event_type, scope) DO UPDATE SET count = count + excluded.count",
    )?;
    let mut hourly = std::collections::BTreeMap::new();
    for ((minute, event_type, scope), count) in counts {
        upsert.execute(params![minute, event_type, scope, count])?;
        *hourly
            .entry((minute.div_euclid(60), event_type, scope))
            .or_insert(0) += count;
    }
    for ((hour, event_type, scope), count) in hourly {
        upsert_hourly.execute(params![hour, event_type, scope, count])?;
    }
    Ok(())
}

/// Stores one submission's events; `seq` is the last `seq` given out, advanced for each
/// event stored, and each event stored now is added to `new_events`. A submission
/// refused may have added some: the caller, which rolls it back, takes them off.
fn append_submission(
    connection: &Connection,
    submission: Submission,
    seq: &mut i64,
    new_events: &mut Vec<Event>,
) -> Result<Outcome, Error> {
    let mut insert = connection.prepare_cached(
        "INSERT INTO events (seq, id, timestamp_ms, received_at_ms, client_timestamp_ms, event_type, contact_id, scope, content, checksum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO NOTHING",
    )?;
    let mut suppressed =
        connection.prepare_cached("SELECT 1 FROM suppressed_contacts WHERE contact_id = ?1")?;
    for (index, event) in submission.events.iter().enumerate() {
        if let Some(contact_id) = &event.contact_id
            && suppressed.exists([contact_id])?
        {
            return Ok(Outcome::Suppressed {
                index,
                contact_id: contact_id.clone(),
            });
        }
    }
    let mut appended = Vec::with_capacity(submission.events.len());
    for (index, event) in submission.events.into_iter().enumerate() {
        let inserted = insert.execute(params![
            *seq + 1,
            event.id.as_bytes(),
            event.timestamp_ms,
            event.received_at_ms,
            event.client_timestamp_ms,
            event.event_type,
            event.contact_id,
            event.scope.as_str(),
            event.content.get(),
            checksum(&event),
        ])?;
        if inserted == 1 {
            *seq += 1;
            appended.push(Appended::new(event.id));
            new_events.push(event);
            continue;
        }
        let stored = event_by_id(connection, event.id)?.ok_or_else(|| {
            Error::Corrupt(format!(
                "event {} conflicts on insert but cannot be found",
                event.id
            ))
        })?;
        if !stored.is_same_submission(&event) {
            return Ok(Outcome::Conflict {
                index,
                id: event.id,
            });
        }
        appended.push(Appended::replay(stored));
    }
    Ok(Outcome::Stored(appended))
}

fn event_by_id(connection: &Connection, id: Uuid) -> Result<Option<Event>, Error> {
    let mut select =
        connection.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"))?;
    let row = select.query_row([id.as_bytes()], row_values).optional()?;
    row.map(event_from_row).transpose()
}

/// The raw columns of one event; decoded outside rusqlite's row callback so that a
/// corrupt row is reported as such instead of as an SQL error.
pub(crate) struct EventRow {
    id: Vec<u8>,
    timestamp_ms: i64,
    received_at_ms: i64,
    client_timestamp_ms: Option<i64>,
    event_type: String,
    contact_id: Option<String>,
    scope: String,
    content: String,
    checksum: Option<i64>,
}

pub(crate) fn row_values(row: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: row.get(0)?,
        timestamp_ms: row.get(1)?,
        received_at_ms: row.get(2)?,
        client_timestamp_ms: row.get(3)?,
        event_type: row.get(4)?,
        contact_id: row.get(5)?,
        scope: row.get(6)?,
        content: row.get(7)?,
        checksum: row.get(8)?,
    })
}

pub(crate) fn event_from_row(row: EventRow) -> Result<Event, Error> {
    let id = Uuid::from_slice(&row.id)
        .map_err(|_| Error::Corrupt(format!("id of {} bytes", row.id.len())))?;
    let scope = Scope::parse(&row.scope)
        .ok_or_else(|| Error::Corrupt(format!("event {id}: scope {:?}", row.scope)))?;
    let content = RawValue::from_string(row.content)
        .map_err(|error| Error::Corrupt(format!("event {id}: content: {error}")))?;
    let event = Event {
        id,
        event_type: row.event_type,
        content,
        contact_id: row.contact_id,
        scope,
        timestamp_ms: row.timestamp_ms,
        received_at_ms: row.received_at_ms,
        client_timestamp_ms: row.client_timestamp_ms,
    };
    match row.checksum {
        Some(stored) if stored != checksum(&event) => Err(Error::Corrupt(format!(
            "event {id} does not match its checksum: the database file is damaged"
        ))),
        _ => Ok(event),
    }
}

/// The CRC-32 of an event's stored fields, each framed by its length (and an optional
/// one by whether it is there) so that no two different events share an input.
fn checksum(event: &Event) -> i64 {
    let mut hasher = crc32fast::Hasher::new();
    let mut field = |bytes: Option<&[u8]>| {
        let len = bytes.map_or(u64::MAX, |bytes| bytes.len() as u64);
        hasher.update(&len.to_le_bytes());
        hasher.update(bytes.unwrap_or_default());
    };
    let client_timestamp_ms = event.client_timestamp_ms.map(i64::to_le_bytes);
    field(Some(event.id.as_bytes()));
    field(Some(&event.timestamp_ms.to_le_bytes()));
    field(Some(&event.received_at_ms.to_le_bytes()));
    field(client_timestamp_ms.as_ref().map(|bytes| &bytes[..]));
    field(Some(event.event_type.as_bytes()));
    field(event.contact_id.as_deref().map(str::as_bytes));
    field(Some(event.scope.as_str().as_bytes()));
    field(Some(event.content.get().as_bytes()));
    i64::from(hasher.finalize())
}

/// Read-only connections, opened on demand up to the permit count and kept for reuse.
///
/// A dozen lines instead of a pool crate: deadpool-sqlite runs a query on every checkout
/// to recycle a connection, which doubles the statements of a one-page read.
struct Readers {
    path: PathBuf,
    /// The page checksum VFS the writer opened the database with.
    vfs: String,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    async fn run<T, F>(self: &Arc<Self>, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| Error::Closed)?;
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let idle = readers
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let connection = match idle {
                Some(connection) => connection,
                None => open_reader(&readers.path, &readers.vfs)?,
            };
            let result = work(&connection).map_err(name_damage);
            readers
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
            result
        })
        .await?
    }
}

fn open_reader(path: &Path, vfs: &str) -> Result<Connection, Error> {
    let connection = open_connection(path, OpenFlags::SQLITE_OPEN_READ_ONLY, vfs)?;
    page_checksum::set_mode(&connection, page_checksum::Mode::On).map_err(Error::PageChecksums)?;
    // 4 MB of page cache per reader: the operating system caches the file for all of
    // them, and eight readers of 16 MB each put the server past its memory bound (P6).
    connection.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -4096;")?;
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each query shape reads its own index in page order: no full scan, no sort.
    #[test]
    fn every_query_shape_uses_an_index_in_page_order() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(dir.path(), &SqliteOptions::default()).expect("open");
        let connection = store.writer.lock().expect("writer");
        for (query, index) in crate::page_sql::query_shapes() {
            let plan = query::plan(&connection, &query);
            assert!(
                plan.contains(index),
                "{query:?} should use {index}:\n{plan}"
            );
            assert!(
                !plan.contains("SCAN events"),
                "{query:?} scans the table:\n{plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "{query:?} sorts:\n{plan}");
        }
        // The stream reads a `seq` range, or a contact's events (few) and sorts them.
        for (query, _) in crate::page_sql::query_shapes() {
            let after = eventline_core::cursor::StreamCursor {
                commit: 3,
                id: Uuid::nil(),
            };
            let (sql, params) =
                page_sql::stream_sql(&query.filter, after, 9, 100, EVENT_COLUMNS, Dialect::Sqlite);
            let plan = query::explain(&connection, &sql, params);
            let expected = if query.filter.contact_id.is_some() {
                "USING INDEX events_by_contact"
            } else {
                "USING INTEGER PRIMARY KEY"
            };
            assert!(plan.contains(expected), "{query:?}:\n{plan}");
        }
    }

    /// A store made before page checksums (no reserved bytes, pages in its WAL) is
    /// rewritten with them when opened, keeps every event, and is checked from then on.
    #[test]
    fn a_store_made_before_page_checksums_gets_them_when_opened() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database = dir.path().join(DATABASE_FILE);
        {
            let connection = Connection::open(&database).expect("open an old store");
            connection
                .execute_batch("PRAGMA journal_mode = WAL;")
                .expect("WAL");
            for migration in &MIGRATIONS[..6] {
                connection.execute_batch(migration).expect("migration");
            }
            connection
                .pragma_update(None, "user_version", 6)
                .expect("version");
            for seq in 1..=300_i64 {
                connection
                    .execute(
                        "INSERT INTO events (seq, id, timestamp_ms, received_at_ms, event_type, scope, content)
                         VALUES (?1, ?2, ?1, ?1, 'new_order', 'app', '{}')",
                        params![seq, Uuid::from_u128(seq as u128).as_bytes()],
                    )
                    .expect("event");
            }
            assert_eq!(page_checksum::reserved_bytes(&connection, None), Ok(0));
        }
        let store = SqliteStore::open(dir.path(), &SqliteOptions::default()).expect("upgrade");
        let verified = store.verify().expect("verify");
        assert_eq!(verified.problems, Vec::<String>::new());
        assert_eq!(verified.unchecked, 300, "every event kept");
        {
            let writer = store.writer.lock().expect("writer");
            let version: i64 = writer
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .expect("version");
            assert_eq!(version, PAGE_CHECKSUMS_VERSION);
            assert_eq!(
                page_checksum::reserved_bytes(&writer, None),
                Ok(page_checksum::RESERVED_LEN as u8)
            );
        }
        drop(store);
        let header = std::fs::read(&database).expect("read");
        assert_eq!(header[20], page_checksum::RESERVED_LEN as u8);
        // Checked from then on: the last page, damaged, is refused.
        let mut bytes = header;
        let last = bytes.len() - 200;
        bytes[last] ^= 1;
        std::fs::write(&database, bytes).expect("write");
        let store = SqliteStore::open(dir.path(), &SqliteOptions::default()).expect("reopen");
        let verified = store.verify().expect("verify");
        assert!(
            verified
                .problems
                .iter()
                .any(|problem| problem.contains("does not match its checksum")),
            "{:?}",
            verified.problems
        );
    }

    /// A flipped bit in the header that turns the 8 reserved bytes into 0 is damage, not a
    /// store made before page checksums: refused, not rewritten.
    #[test]
    fn a_header_that_lost_its_reserved_bytes_is_refused_not_rewritten() {
        let dir = tempfile::tempdir().expect("temporary directory");
        drop(SqliteStore::open(dir.path(), &SqliteOptions::default()).expect("create"));
        let database = dir.path().join(DATABASE_FILE);
        let mut bytes = std::fs::read(&database).expect("read");
        assert_eq!(bytes[20], 8);
        bytes[20] ^= 8;
        std::fs::write(&database, &bytes).expect("write");
        match SqliteStore::open(dir.path(), &SqliteOptions::default()) {
            Err(Error::PageChecksums(message)) => {
                assert!(message.contains("is damaged"), "{message}")
            }
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("a store with a damaged header was opened"),
        }
        assert_eq!(
            std::fs::read(&database).expect("read"),
            bytes,
            "left as it was"
        );
    }

    /// A store of schema version 5 (counts per minute only) gets its hourly counts from
    /// the counts per minute when it is opened by a newer binary.
    #[tokio::test]
    async fn opening_a_version_5_store_fills_the_hourly_counts() {
        use eventline_core::stats::{Bucket, StatsQuery};
        let dir = tempfile::tempdir().expect("temporary directory");
        {
            let connection =
                Connection::open(dir.path().join(DATABASE_FILE)).expect("open version 5");
            for migration in &MIGRATIONS[..5] {
                connection.execute_batch(migration).expect("migration");
            }
            connection
                .pragma_update(None, "user_version", 5)
                .expect("version");
            // Two events an hour apart, as the version 5 writer counted them.
            for (seq, timestamp_ms) in [(1, 3_600_000_i64), (2, 7_260_000)] {
                connection
                    .execute(
                        "INSERT INTO events (seq, id, timestamp_ms, received_at_ms, event_type, scope, content)
                         VALUES (?1, ?2, ?3, ?3, 'new_order', 'app', '{}')",
                        params![seq, Uuid::from_u128(seq as u128).as_bytes(), timestamp_ms],
                    )
                    .expect("event");
                connection
                    .execute(
                        "INSERT INTO event_counts VALUES (?1, 'new_order', 'app', 1)",
                        [timestamp_ms / 60_000],
                    )
                    .expect("count");
            }
        }
        let store = SqliteStore::open(dir.path(), &SqliteOptions::default()).expect("migrate");
        let rows = store
            .stats(StatsQuery {
                filter: Filter {
                    since_ms: Some(0),
                    until_ms: Some(36_000_000),
                    ..Filter::default()
                },
                bucket: Bucket::Hour,
            })
            .await
            .expect("stats");
        let found: Vec<(i64, u64)> = rows.iter().map(|row| (row.start_ms, row.count)).collect();
        assert_eq!(found, vec![(3_600_000, 1), (7_200_000, 1)]);
    }
}
