//! The engine's one error type.

/// What can go wrong in the engine: the data directory's files, damage found in them, a
/// bound reached, or a write refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("data directory {path}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {0} is used by another eventline process")]
    DataDirLocked(std::path::PathBuf),
    #[error(
        "{path} is damaged at byte {offset} ({detail}): every byte of it was acknowledged, so starting would silently drop acknowledged events. Nothing was changed. Copy the data directory aside before anything else, then restore it from a backup"
    )]
    LogDamaged {
        path: std::path::PathBuf,
        offset: u64,
        detail: String,
    },
    /// Damage inside the acknowledged part of the newest log file: the one place where
    /// cutting it off loses only the events after it.
    #[error(
        "{path} is damaged at byte {offset} ({detail}), inside its first {acked_len} bytes, which were acknowledged: starting would drop up to {} acknowledged events (positions {} to {}; fewer if some were erased). Nothing was changed. Copy the data directory aside before anything else; then restore it from a backup, or give up those events: `eventline check --cut-damaged-tail` cuts the file at the damage, and the server starts with every event before it",
        positions.end - positions.start,
        positions.start,
        positions.end.saturating_sub(1)
    )]
    LogTailDamaged {
        path: std::path::PathBuf,
        offset: u64,
        detail: String,
        acked_len: u64,
        positions: std::ops::Range<u64>,
    },
    #[error("the store was opened to be inspected: it takes no writes")]
    Inspecting,
    #[error(
        "the log store holds its memory bound ({bytes_max} bytes of events); writes are refused until retention or erasure makes room"
    )]
    Full { bytes_max: usize },
    #[error(
        "data directory {0} holds a SQLite store (eventline.sqlite3), which this eventline no longer reads: the SQLite store was retired before any release, so there is nothing to upgrade from; move the directory aside and start with an empty one"
    )]
    SqliteRetired(std::path::PathBuf),
    #[error("stored event is unreadable: {0}")]
    Corrupt(String),
    #[error(
        "an fsync failed earlier: writes are refused until a restart reads back what is on disk"
    )]
    SyncFailed,
    #[error("store task failed")]
    Task(#[from] tokio::task::JoinError),
}
