//! Where events live. [`Store`] is what the server needs from a store; [`log`] is the
//! embedded store (the `eventline-log` engine, `docs/format.md`), [`postgres`] the shared
//! one. This is the only crate that knows SQL.

use async_trait::async_trait;
use eventline_core::cursor::{StreamCursor, StreamStart};
use eventline_core::properties::{Properties, PropertyValues};
use eventline_core::query::{Filter, Page, PageQuery};
use eventline_core::stats::{StatsQuery, StatsRow};

pub use eventline_core::commit::{Appended, Durability, Outcome, Submission};
pub use eventline_core::stream::StreamChunk;

/// The embedded store: the engine, served by this crate's `Store` (`embedded`).
pub use eventline_log as log;

mod content_sql;
mod embedded;
mod page_sql;
pub mod postgres;
mod sql;

/// Which store to open, and how.
#[derive(Clone)]
pub enum StoreConfig {
    /// The embedded store in `data_dir`.
    Embedded {
        data_dir: std::path::PathBuf,
        options: log::LogOptions,
    },
    /// PostgreSQL at a `postgres://` URL.
    Postgres {
        url: String,
        options: postgres::PostgresOptions,
    },
}

/// Opens the store `config` names: the one way every caller (the server, the fault
/// harness) opens one. The embedded store is read back off the async threads.
pub async fn open(config: StoreConfig) -> Result<std::sync::Arc<dyn Store>, Error> {
    Ok(match config {
        StoreConfig::Embedded { data_dir, options } => {
            tracing::info!(data_dir = %data_dir.display(), "opening the embedded store");
            let store =
                tokio::task::spawn_blocking(move || log::LogStore::open(&data_dir, &options))
                    .await??;
            std::sync::Arc::new(store)
        }
        StoreConfig::Postgres { url, options } => {
            // The URL is not logged: it may hold a password.
            tracing::info!("opening the PostgreSQL store");
            std::sync::Arc::new(postgres::PostgresStore::connect(&url, &options).await?)
        }
    })
}

/// Whether `data_dir` holds an embedded store (a log store, or a retired SQLite one).
pub fn holds_store(data_dir: &std::path::Path) -> bool {
    data_dir.join(log::LOG_DIR).is_dir() || data_dir.join(log::SQLITE_DATABASE_FILE).exists()
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("postgres")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("invalid database URL: {0}")]
    DatabaseUrl(String),
    #[error("other servers kept storing the same ids; the group was not committed")]
    Contended,
    #[error(
        "the data was written by a newer eventline (schema version {found}; this one knows up to {known})"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error(transparent)]
    Log(#[from] eventline_log::Error),
    #[error("stored event is unreadable: {0}")]
    Corrupt(String),
    #[error("the store is closed")]
    Closed,
    #[error("store task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// A place to append and read events.
///
/// Implementations must make `append` durable under the configured [`Durability`] before
/// they return, keep each [`Submission`] atomic, and record an event and its id in the
/// same transaction. Reads never wait for the writer.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends many submissions in one commit (the ingest's group commit).
    async fn append(&self, submissions: Vec<Submission>) -> Result<Vec<Outcome>, Error>;

    /// One page of events in (timestamp, id) order.
    async fn page(&self, query: PageQuery) -> Result<Page, Error>;

    /// The events matching `filter` committed after `after`, in commit order, at most
    /// `limit`. Only committed events are read, and an event committed later never has a
    /// position at or before one read earlier: a reader that continues from `upto` misses
    /// nothing and sees nothing twice.
    async fn stream(
        &self,
        filter: &Filter,
        after: StreamCursor,
        limit: u32,
    ) -> Result<StreamChunk, Error>;

    /// The position of the last committed event: a stream that starts there sends the
    /// events committed from now on.
    async fn stream_head(&self) -> Result<StreamCursor, Error>;

    /// Where a stream that sends the events committed from now on starts.
    async fn stream_start(&self) -> Result<StreamStart, Error> {
        Ok(StreamStart::at(self.stream_head().await?))
    }

    /// Whether the store can serve right now.
    async fn check(&self) -> Result<(), Error>;

    /// Deletes every event of `contact_id` so that no trace of them stays in the store's
    /// files (as far as the store can promise; see docs/access.md), and, with `suppress`,
    /// refuses the contact's new events from then on. Returns how many were deleted.
    async fn erase_contact(&self, contact_id: &str, suppress: bool) -> Result<u64, Error>;

    /// Accepts the contact's events again; whether it was suppressed.
    async fn unsuppress_contact(&self, contact_id: &str) -> Result<bool, Error>;

    /// Deletes at most `limit` events whose `timestamp` is before `cutoff_ms`; how many.
    /// Retention calls it in small steps so that ingest never waits long. A store that
    /// keeps events in files may remove a whole file of expired events in one step,
    /// however many it holds, when that costs no more than one event.
    async fn delete_before(&self, cutoff_ms: i64, limit: u32) -> Result<u64, Error>;

    /// Counts per time bucket and event type over a window (see `page_sql::stats_sql`).
    async fn stats(&self, query: StatsQuery) -> Result<Vec<StatsRow>, Error>;

    /// Every event type with events stored, and how many, by name.
    async fn event_types(&self) -> Result<Vec<(String, u64)>, Error>;

    /// The content paths events have (of type `event_type`, if given), with how many
    /// values of each JSON type.
    async fn properties(&self, event_type: Option<&str>) -> Result<Properties, Error>;

    /// The `limit` most common values of the content path `keys`.
    async fn property_values(&self, keys: &[String], limit: usize)
    -> Result<PropertyValues, Error>;

    /// Periodic upkeep (the server calls it every `maintain_interval`); nothing by
    /// default.
    async fn maintain(&self) -> Result<(), Error> {
        Ok(())
    }

    /// How often the server calls `maintain`.
    fn maintain_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }

    /// How many `append`s may run at once. One for a store with a single writer; more
    /// for a database that commits concurrent transactions in parallel.
    fn appends_in_flight_max(&self) -> usize {
        1
    }
}
