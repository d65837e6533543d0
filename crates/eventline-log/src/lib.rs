//! Eventline's embedded storage engine: one data directory of an append-only log and
//! sorted, compressed segments (`docs/format.md` has every byte). It knows no HTTP and
//! no SQL; `eventline-store` serves it behind its `Store` trait.
//!
//! The public surface:
//!
//! - [`LogStore::open`] with [`LogOptions`] (durability, memory bounds, the [`Recovery`]
//!   to run, the [`disk::Disk`] to work through), which reads the store back;
//! - a group commit, [`LogStore::append`], durable before it returns;
//! - the reads: [`LogStore::page`], [`LogStore::stream`] and [`LogStore::stream_head`]
//!   in commit order, [`LogStore::stats`], [`LogStore::event_types`];
//! - erasure and retention: [`LogStore::erase_contact`], [`LogStore::unsuppress_contact`],
//!   [`LogStore::delete_before`];
//! - upkeep, [`LogStore::maintain`], and [`LogStore::verify`], which reads every byte back
//!   (`eventline check`); dropping the store closes it, marking all it holds as
//!   acknowledged.
//!
//! Inside, one module per part, importing downwards (`ARCHITECTURE.md` has the map):
//! the store (`lib.rs`, `operations`) over the writer (`writer`: group commits and marks,
//! with `writer::compaction` for flushes and merges and `writer::marker` for the marks
//! after a pause), the reads (`state`) and recovery (`recovery`); those over the file work
//! (`files`), the in-memory indexes (`memtable`) and counts (`counts`); those over the
//! codecs of each file part (`header`, `record`, `segment`, `framed`, `bloom`) and the
//! file system seam (`disk`). Every group commit is one or more checksummed blocks
//! appended to a log file and synced before the answer; the events are also held in
//! memory, indexed for every read. When the memtable is full its events are written as
//! one immutable segment, and the log files they came from are removed.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use eventline_core::commit::Durability;
use eventline_core::error_chain::ErrorChain;

mod bloom;
mod columns;
mod content_index;
#[cfg(test)]
mod content_properties;
mod counts;
pub mod disk;
mod error;
mod files;
mod framed;
#[doc(hidden)]
pub mod fuzzing;
mod header;
mod memtable;
mod memtable_index;
mod operations;
#[cfg(test)]
mod properties;
mod record;
mod recovery;
mod segment;
mod state;
mod writer;

use disk::{Disk, RealDisk};
pub use error::Error;
use files::{file_name, io_error, log_files, read_blocks, read_suppressed};
pub use header::HEADER_LEN as FILE_HEADER_LEN;
use recovery::recover;
pub use recovery::{Cut, Recovery};
use state::{State, StreamCache};
use writer::{Writer, refusal};

/// The file a data directory of the SQLite store held: the store before the log store,
/// retired. A directory holding it is refused rather than opened as an empty log store.
pub const SQLITE_DATABASE_FILE: &str = "eventline.sqlite3";

/// The log's directory inside the data directory; its presence marks the format.
pub const LOG_DIR: &str = "log";
const LOCK_FILE: &str = "eventline.lock";

#[derive(Clone)]
pub struct LogOptions {
    pub durability: Durability,
    /// The memtable is written as a segment once it holds this much, in bytes as
    /// estimated by the store.
    pub memtable_bytes_max: usize,
    /// Events held in memory, in bytes as estimated by the store; writes past it are
    /// refused until retention or erasure makes room. Reached only while segments
    /// cannot be written (a full disk).
    pub memory_bytes_max: usize,
    /// A log file is closed and the next one begun past this length.
    pub file_len_max: u64,
    /// No merge makes a segment of more events. A merge holds nothing per event but
    /// its footer (about 5 bytes per event: first keys and Bloom filters) and its
    /// counts per minute, and a bigger cap means longer merges; a timeline reads a
    /// contact chunk in every segment, and at 3,000,000 the bench's 10,000,000 events
    /// settle in 9 segments, not 17 (`docs/performance.md`, "The log store, format 3").
    pub merged_events_max: u64,
    pub disk: Arc<dyn Disk>,
    /// What opening does with a torn or damaged end of the log.
    pub recovery: Recovery,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            durability: Durability::Full,
            memtable_bytes_max: 32 << 20,
            memory_bytes_max: 1 << 30,
            file_len_max: 64 << 20,
            merged_events_max: 3_000_000,
            disk: Arc::new(RealDisk::default()),
            recovery: Recovery::Start,
        }
    }
}

/// What `LogStore::verify` found.
#[derive(Debug, Default)]
pub struct Verified {
    /// Events read back whole and matching their checksums.
    pub events: u64,
    /// Every problem found, in words; empty when the store is sound.
    pub problems: Vec<String>,
    /// What the segments' bytes hold.
    pub segment_bytes: SegmentBytes,
}

/// The bytes of segments, by what they hold (`docs/format.md`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SegmentBytes {
    pub events: u64,
    /// The data blocks and the dictionary.
    pub data: u64,
    pub id_chunks: u64,
    pub contact_chunks: u64,
    /// The content index's postings.
    pub postings: u64,
    /// The blocks' columns.
    pub columns: u64,
    /// The footer, the magic and the trailer.
    pub footer: u64,
}

impl SegmentBytes {
    pub fn add(&mut self, other: &SegmentBytes) {
        self.events += other.events;
        self.data += other.data;
        self.id_chunks += other.id_chunks;
        self.contact_chunks += other.contact_chunks;
        self.postings += other.postings;
        self.columns += other.columns;
        self.footer += other.footer;
    }
}

pub struct LogStore {
    table: Arc<RwLock<State>>,
    writer: Arc<Mutex<Writer>>,
    disk: Arc<dyn Disk>,
    stream_cache: Arc<StreamCache>,
    /// Set when an fsync failed: the kernel may have dropped the pages it could not
    /// write, and a second fsync would then report success for data that is not on
    /// disk, so the store refuses every write until a restart reads back what the disk
    /// holds.
    sync_failed: Arc<AtomicBool>,
    /// Opened to be inspected (`Recovery::Inspect`): every write is refused.
    inspecting: bool,
    /// What opening cut off the end of the log (or, inspecting, would cut).
    cut: Option<Cut>,
    /// Marks the log acknowledged once commits pause; `None` when inspecting.
    marker: Option<writer::marker::Marker>,
    /// Held for the life of the store: a second process on the same directory refuses
    /// to start instead of interleaving writes. None when inspecting a directory that
    /// has no lock file, which no server has then run in.
    _lock: Option<File>,
}

impl LogStore {
    /// Opens (creating if needed) the log store in `data_dir`, reading the whole log
    /// back. Blocks: call it at start-up.
    pub fn open(data_dir: &Path, options: &LogOptions) -> Result<LogStore, Error> {
        if data_dir.join(SQLITE_DATABASE_FILE).exists() && !data_dir.join(LOG_DIR).is_dir() {
            return Err(Error::SqliteRetired(data_dir.to_owned()));
        }
        let inspecting = options.recovery == Recovery::Inspect;
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = if inspecting {
            match File::open(&lock_path) {
                Ok(lock) => Some(lock),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => return Err(io_error(&lock_path)(error)),
            }
        } else {
            std::fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
            Some(File::create(&lock_path).map_err(io_error(&lock_path))?)
        };
        if lock.as_ref().is_some_and(|lock| lock.try_lock().is_err()) {
            return Err(Error::DataDirLocked(data_dir.to_owned()));
        }
        let disk = Arc::clone(&options.disk);
        let log_dir = data_dir.join(LOG_DIR);
        if !inspecting {
            disk.create_dir_all(&log_dir).map_err(io_error(&log_dir))?;
        }
        let recovered = recover(disk.as_ref(), &log_dir, options.recovery)?;
        let table = recovered.state;
        let suppressed = read_suppressed(disk.as_ref(), data_dir)?;
        let next_generation = table.segments.len() as u64 + 1;
        let sync_failed = Arc::new(AtomicBool::new(false));
        let marker_signal = (!inspecting && options.durability == Durability::Full)
            .then(|| Arc::new(writer::marker::Signal::default()));
        let writer = Writer {
            disk: Arc::clone(&disk),
            data_dir: data_dir.to_owned(),
            log_dir,
            active: recovered.active,
            active_len: recovered.active_len,
            file_len_max: options.file_len_max,
            durability: options.durability,
            memory_bytes_max: options.memory_bytes_max,
            memtable_bytes_max: options.memtable_bytes_max,
            merged_events_max: options.merged_events_max,
            flush_at_bytes: options.memtable_bytes_max,
            next_generation,
            flush_job: None,
            merge_job: None,
            suppressed,
            tail_dirty: false,
            seq_end: table.memtable.seq_end(),
            mark: recovered.mark,
            marker_signal: marker_signal.clone(),
            compressor: zstd::bulk::Compressor::new(record::ZSTD_LEVEL).ok(),
            buffer: Vec::new(),
        };
        let writer = Arc::new(Mutex::new(writer));
        let marker = marker_signal.map(|signal| {
            writer::marker::Marker::start(signal, Arc::downgrade(&writer), Arc::clone(&sync_failed))
        });
        Ok(LogStore {
            table: Arc::new(RwLock::new(table)),
            writer,
            disk,
            stream_cache: Arc::new(Mutex::new(None)),
            sync_failed,
            inspecting,
            cut: recovered.cut,
            marker,
            _lock: lock,
        })
    }

    /// What opening cut off the end of the log, or, opened to inspect, would cut.
    pub fn cut(&self) -> Option<&Cut> {
        self.cut.as_ref()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn refusal(&self) -> Result<(), Error> {
        if self.inspecting {
            return Err(Error::Inspecting);
        }
        refusal(&self.sync_failed)
    }

    /// Runs a read: at once when it is `small` (one contact's events: a few blocks, each
    /// most likely in the page cache) or every event is in memory, off the async threads
    /// otherwise. Measured on one contact's timeline: handing it to another thread cost
    /// more than the read.
    async fn reading<T, F>(&self, small: bool, read: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&State, &dyn Disk, &StreamCache) -> Result<T, Error> + Send + 'static,
    {
        {
            let state = self.read();
            if small || state.segments.is_empty() {
                return read(&state, self.disk.as_ref(), &self.stream_cache);
            }
        }
        let (table, disk, cache) = (
            Arc::clone(&self.table),
            Arc::clone(&self.disk),
            Arc::clone(&self.stream_cache),
        );
        tokio::task::spawn_blocking(move || {
            let state = table.read().unwrap_or_else(PoisonError::into_inner);
            read(&state, disk.as_ref(), &cache)
        })
        .await?
    }

    /// Runs `work` with the writer, off the async threads.
    async fn write<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer, &RwLock<State>, &AtomicBool) -> Result<T, Error> + Send + 'static,
    {
        self.refusal()?;
        let writer = Arc::clone(&self.writer);
        let table = Arc::clone(&self.table);
        let sync_failed = Arc::clone(&self.sync_failed);
        tokio::task::spawn_blocking(move || {
            let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
            refusal(&sync_failed)?;
            work(&mut writer, &table, &sync_failed)
        })
        .await?
    }

    /// Reads every log file back and checks every block: what `eventline check` runs.
    /// Blocks, and reads every byte.
    pub fn verify(&self) -> Result<Verified, Error> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.settle(&self.table);
        let mut verified = Verified::default();
        for segment in &self.read().segments {
            match segment.verify(writer.disk.as_ref()) {
                Ok(events) => verified.events += events,
                Err(error) => verified.problems.push(ErrorChain(&error).to_string()),
            }
            match segment.bytes(writer.disk.as_ref()) {
                Ok(bytes) => verified.segment_bytes.add(&bytes),
                Err(error) => verified.problems.push(ErrorChain(&error).to_string()),
            }
        }
        let covered = self
            .read()
            .segments
            .last()
            .map_or(0, |segment| segment.number);
        for number in log_files(writer.disk.as_ref(), &writer.log_dir)? {
            if number <= covered {
                // Left over from a flush cut short; removed at the next start.
                continue;
            }
            let path = writer.log_dir.join(file_name(number));
            let mut bytes = writer.disk.read(&path).map_err(io_error(&path))?;
            if let Some(cut) = self.cut.as_ref().filter(|cut| cut.path == path) {
                // Inspecting: what the server would cut, reported, not counted damage.
                bytes.truncate(usize::try_from(cut.offset).unwrap_or(usize::MAX));
                if bytes.is_empty() {
                    // A file begun and cut before its header was synced.
                    continue;
                }
            }
            match read_blocks(&path, &bytes) {
                Ok((_, blocks)) => {
                    verified.events += blocks
                        .iter()
                        .map(|block| block.events.len() as u64)
                        .sum::<u64>();
                }
                Err((offset, detail)) => verified
                    .problems
                    .push(format!("{} at byte {offset}: {detail}", path.display())),
            }
        }
        Ok(verified)
    }
}

impl Drop for LogStore {
    /// Waits for a flush in flight: a store opened on the same directory next must not
    /// find a segment appear under it.
    fn drop(&mut self) {
        if let Some(marker) = self.marker.take() {
            marker.stop();
        }
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.settle(&self.table);
        // A store closed whole leaves every byte of its log marked acknowledged.
        if !self.inspecting
            && let Err(error) = writer.mark_acknowledged(&self.sync_failed, true)
        {
            tracing::warn!(error = %ErrorChain(&error), "the log's end could not be marked acknowledged at close");
        }
    }
}
