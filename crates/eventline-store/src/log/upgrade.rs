//! The upgrade from the SQLite store to the log store: every event read in commit order
//! into a new log beside the database, keeping ids, times, `received_at` and stream
//! positions, and the suppressed contacts; then the log put in place and the database
//! renamed `eventline.sqlite3.migrated`. A run cut short leaves the SQLite store as it
//! was, and the next start does it again.

use std::path::{Path, PathBuf};

use eventline_core::cursor::StreamCursor;
use eventline_core::query::Filter;
use uuid::Uuid;

use super::disk::{Disk, RealDisk};
use super::{LOG_DIR, LogOptions, LogStore, SUPPRESSED_FILE, io_error};
use crate::sqlite::{DATABASE_FILE, SqliteOptions, SqliteStore};
use crate::{Error, Store};

/// Where the new log is written before it is put in place.
const STAGING_DIR: &str = "log-upgrade";
/// Events read and written at a time.
const CHUNK_LEN: u32 = 10_000;
/// What the database files are renamed to once the log holds their events.
const MIGRATED_SUFFIX: &str = ".migrated";

/// What [`from_sqlite`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// No SQLite store in the directory.
    Nothing,
    /// The events of the SQLite store are now in the log.
    Done { events: u64 },
    /// A log was already in place from an upgrade cut short after it: the database was
    /// renamed.
    Finished,
}

fn database_files(data_dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            (
                data_dir.join(format!("{DATABASE_FILE}{suffix}")),
                data_dir.join(format!("{DATABASE_FILE}{MIGRATED_SUFFIX}{suffix}")),
            )
        })
        .collect()
}

/// Renames the database files aside, then makes the renames durable.
fn set_database_aside(data_dir: &Path) -> Result<(), Error> {
    for (from, to) in database_files(data_dir) {
        if from.exists() {
            std::fs::rename(&from, &to).map_err(io_error(&from))?;
        }
    }
    sync_dir(data_dir)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    RealDisk::default().sync_dir(dir).map_err(io_error(dir))
}

/// Moves the SQLite store in `data_dir`, if there is one, into the log store. Blocks on
/// the SQLite store's reads through `runtime`'s async `Store` methods: call it from a
/// blocking thread at start-up, before [`LogStore::open`].
pub fn from_sqlite(
    data_dir: &Path,
    options: &LogOptions,
    runtime: &tokio::runtime::Handle,
) -> Result<Upgrade, Error> {
    let database = data_dir.join(DATABASE_FILE);
    if !database.exists() {
        return Ok(Upgrade::Nothing);
    }
    let log_dir = data_dir.join(LOG_DIR);
    if log_dir.is_dir() {
        // The log was put in place by an upgrade that stopped before the rename.
        set_database_aside(data_dir)?;
        return Ok(Upgrade::Finished);
    }
    let staging = data_dir.join(STAGING_DIR);
    match std::fs::remove_dir_all(&staging) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_error(&staging)(error));
        }
        _ => {}
    }
    let events = {
        let sqlite = SqliteStore::open(data_dir, &SqliteOptions::default())?;
        let suppressed = sqlite.suppressed_contacts()?;
        let log = LogStore::open(
            &staging,
            &LogOptions {
                // The store to be opened in its place has the bound; this one only writes.
                memory_bytes_max: usize::MAX,
                ..options.clone()
            },
        )?;
        let events = copy(&sqlite, &log, runtime)?;
        log.suppress_all(suppressed)?;
        events
    };
    // The log and the suppression list in place, then the database aside: a stop
    // between the two leaves a log that the next start finishes with.
    std::fs::rename(
        staging.join(SUPPRESSED_FILE),
        data_dir.join(SUPPRESSED_FILE),
    )
    .map_err(io_error(&staging))?;
    std::fs::rename(staging.join(LOG_DIR), &log_dir).map_err(io_error(&log_dir))?;
    sync_dir(data_dir)?;
    set_database_aside(data_dir)?;
    std::fs::remove_dir_all(&staging).map_err(io_error(&staging))?;
    Ok(Upgrade::Done { events })
}

/// Every event of `sqlite` into `log`, in commit order, at its own position; how many.
fn copy(
    sqlite: &SqliteStore,
    log: &LogStore,
    runtime: &tokio::runtime::Handle,
) -> Result<u64, Error> {
    let head = runtime.block_on(sqlite.stream_head())?;
    let mut after = StreamCursor {
        commit: 0,
        id: Uuid::max(),
    };
    let mut events = 0;
    while after.commit < head.commit {
        let chunk = runtime.block_on(sqlite.stream(&Filter::default(), after, CHUNK_LEN))?;
        events += chunk.events.len() as u64;
        log.append_at(chunk.events, chunk.upto.commit)?;
        after = chunk.upto;
    }
    Ok(events)
}
