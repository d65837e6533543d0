//! The log store: the embedded store of `docs/storage-design.md`, the default. Every
//! group commit is one checksummed block appended to a log file and synced before the
//! answer; the events are also held in memory ([`memtable`]), indexed for every read.
//! When the memtable reaches `memtable_bytes_max`, its events are written as one
//! immutable [`segment`], sorted and compressed, and the log files they came from are
//! removed. On start the segments' footers are read, and the log after them.
//!
//! The files' bytes are described in `docs/format.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use async_trait::async_trait;
use eventline_core::cursor::StreamCursor;
use eventline_core::error_chain::ErrorChain;
use eventline_core::event::Event;
use eventline_core::query::{Filter, Order, Page, PageQuery, Start};
use eventline_core::stats::{StatsQuery, StatsRow};
use uuid::Uuid;

use crate::{Durability, Error, Outcome, Store, StreamChunk, Submission};
use eventline_core::stats::{StatsPart, stats_parts};

mod bloom;
pub mod disk;
mod framed;
mod header;
mod marker;
mod memtable;
mod record;
mod recovery;
mod segment;

use disk::{Disk, RealDisk};
pub use header::HEADER_LEN as FILE_HEADER_LEN;
use header::Mark;
use memtable::{Counts, Memtable, Tally};
use record::Stored;
pub use recovery::{Cut, Recovery};
use recovery::{read_blocks, recover};
use segment::{Segment, segment_name};

/// The log's directory inside the data directory; its presence marks the format.
pub const LOG_DIR: &str = "log";
const LOCK_FILE: &str = "eventline.lock";
/// Contacts erased with suppression, one JSON array, replaced whole on each change.
const SUPPRESSED_FILE: &str = "suppressed.json";

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
}

/// What reads see: the memtable, the segments, and the segments' counts.
pub(crate) struct State {
    memtable: Memtable,
    /// The memtable being written as a segment, read until the segment is in place.
    frozen: Option<Arc<Memtable>>,
    /// By number, which is also the order of their positions.
    segments: Vec<Segment>,
    segment_counts: Counts,
}

/// A segment's events in commit order, kept for a stream that reads through it a chunk
/// at a time: (the segment's generation, its events).
type StreamCache = Mutex<Option<(u64, Arc<Vec<Stored>>)>>;

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
    marker: Option<marker::Marker>,
    /// Held for the life of the store: a second process on the same directory refuses
    /// to start instead of interleaving writes. None when inspecting a directory that
    /// has no lock file, which no server has then run in.
    _lock: Option<File>,
}

/// Work on a thread of its own beside the writer: what the writer needs to finish it
/// (`about`), and the thread, which answers what it made.
struct Job<A, T> {
    about: A,
    thread: std::thread::JoinHandle<Result<T, Error>>,
}

impl<A, T: Send + 'static> Job<A, T> {
    fn spawn(
        name: &str,
        about: A,
        work: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> std::io::Result<Job<A, T>> {
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(work)?;
        Ok(Job { about, thread })
    }

    /// The job in `slot` and its answer once its thread is done (with `wait`, once it
    /// is); `None` while it runs, or if there is none.
    fn done(slot: &mut Option<Job<A, T>>, wait: bool) -> Option<(A, Result<T, Error>)> {
        let job = slot.take()?;
        if !wait && !job.thread.is_finished() {
            *slot = Some(job);
            return None;
        }
        let answer = job
            .thread
            .join()
            .unwrap_or_else(|_| Err(Error::Corrupt("a store thread panicked".to_owned())));
        Some((job.about, answer))
    }
}

/// A frozen memtable being written as a segment, about the last log file it holds; it
/// answers the segment and its counts per minute.
type FlushJob = Job<u32, (Segment, Counts)>;

/// Segments being merged into one, about their numbers and the temporary file the
/// merged one is written to; it answers the merged segment.
type MergeJob = Job<(Vec<u32>, PathBuf), Segment>;

/// A commit's events are written in blocks of whole submissions of about this many
/// bytes (as the memtable counts them), each encoded and compressed on its own.
const COMMIT_BLOCK_BYTES: usize = 1 << 20;

/// Segments merge at most this many at a time: the newest adjacent ones of a size that
/// fit under `merged_events_max` together (`merge_run`).
const MERGE_LEN: usize = 4;

/// Which of the segments of these sizes (in events, oldest first) to merge: the newest
/// run of adjacent ones, of as many as `MERGE_LEN` and at least two, that together hold
/// at most `events_max` and are of a size: none more than twice another, or the largest
/// no more than the others together. Either way the merged segment is at least half
/// again as large as the largest it replaces, so an event is written again a few times
/// at most, never once per flush. The second form also merges the uneven segments a
/// fast import leaves while merges lag behind it: the first alone left 16 segments of
/// 10,000,000 events with a 32 MiB memtable.
fn merge_run(sizes: &[u64], events_max: u64) -> Option<std::ops::Range<usize>> {
    let mergeable = |run: &[u64]| {
        let sizes = run.iter().map(|size| (*size).max(1));
        let (smallest, largest) = (sizes.clone().min(), sizes.clone().max());
        let total = sizes.sum::<u64>();
        smallest.zip(largest).is_some_and(|(smallest, largest)| {
            (largest <= smallest * 2 || largest <= total - largest) && total <= events_max
        })
    };
    (2..=MERGE_LEN.min(sizes.len())).rev().find_map(|len| {
        (0..=sizes.len() - len)
            .rev()
            .map(|start| start..start + len)
            .find(|run| mergeable(&sizes[run.clone()]))
    })
}

/// What only the writer touches: the active file and the suppression list.
struct Writer {
    disk: Arc<dyn Disk>,
    data_dir: PathBuf,
    log_dir: PathBuf,
    active: u32,
    active_len: u64,
    file_len_max: u64,
    durability: Durability,
    memory_bytes_max: usize,
    memtable_bytes_max: usize,
    merged_events_max: u64,
    /// The memtable's size at which the next flush is tried: `memtable_bytes_max`, or
    /// more after a flush failed, so that a full disk is not retried at every commit.
    flush_at_bytes: usize,
    /// The generation the next segment written or rewritten gets.
    next_generation: u64,
    flush_job: Option<FlushJob>,
    merge_job: Option<MergeJob>,
    suppressed: BTreeSet<String>,
    /// A write failed and may have left part of a block after `active_len`.
    tail_dirty: bool,
    /// The position after the last event appended to the log.
    seq_end: u64,
    /// The active file's newest mark, on disk once the sync after it returned.
    mark: Mark,
    /// Told of every durable commit, to mark it acknowledged once commits pause.
    marker_signal: Option<Arc<marker::Signal>>,
    /// Compresses blocks; kept, since a context costs more to make than a small block
    /// to compress. `None` if zstd could not make one: blocks are then written as is.
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// Reused for each block.
    buffer: Vec<u8>,
}

fn file_name(number: u32) -> String {
    format!("{number:08}.log")
}

/// The number of a file named eight digits and `suffix` (`.log`, `.seg`).
fn numbered(name: &str, suffix: &str) -> Option<u32> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The numbers of the files named eight digits and `suffix` in `log_dir`, in order.
fn numbers_in(disk: &dyn Disk, log_dir: &Path, suffix: &str) -> Result<Vec<u32>, Error> {
    let mut numbers: Vec<u32> = disk
        .list(log_dir)
        .map_err(io_error(log_dir))?
        .iter()
        .filter_map(|name| numbered(name, suffix))
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::DataDir {
        path: path.to_owned(),
        source,
    }
}

impl LogStore {
    /// Opens (creating if needed) the log store in `data_dir`, reading the whole log
    /// back. Blocks: call it at start-up.
    pub fn open(data_dir: &Path, options: &LogOptions) -> Result<LogStore, Error> {
        if data_dir.join(crate::SQLITE_DATABASE_FILE).exists() && !data_dir.join(LOG_DIR).is_dir() {
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
            .then(|| Arc::new(marker::Signal::default()));
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
            marker::Marker::start(signal, Arc::downgrade(&writer), Arc::clone(&sync_failed))
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

/// A read in commit order looks at no more positions in segments than this, as in the
/// memtable: a filter that matches nothing answers how far it got.
const STREAM_SCAN_LEN_MAX: usize = 100_000;

impl State {
    /// The memtable and the frozen one, newest first.
    fn memtables(&self) -> impl Iterator<Item = &Memtable> {
        std::iter::once(&self.memtable).chain(self.frozen.as_deref())
    }

    fn in_memory(&self, id: &Uuid) -> Option<&Event> {
        self.memtables().find_map(|memtable| memtable.get(id))
    }

    /// What the memtables take, as estimated for the store's bound.
    fn memory_bytes(&self) -> usize {
        self.memtables().map(Memtable::bytes).sum()
    }

    /// The stored event with this id: the memtable's, or the newest segment's that
    /// holds it.
    fn get(&self, disk: &dyn Disk, id: &Uuid) -> Result<Option<Event>, Error> {
        if let Some(event) = self.in_memory(id) {
            return Ok(Some(event.clone()));
        }
        for segment in self.segments.iter().rev() {
            if let Some(event) = segment.get(disk, id)? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    fn page(&self, disk: &dyn Disk, query: &PageQuery) -> Result<Page, Error> {
        let skip = match query.start {
            Start::Skip(skip) => usize::try_from(skip).unwrap_or(usize::MAX),
            Start::First | Start::After(_) => 0,
        };
        let fetch = skip.saturating_add(query.limit as usize + 1);
        let mut events = Vec::new();
        for memtable in self.memtables() {
            events.extend(memtable.page(query, fetch));
        }
        let after = match query.start {
            Start::After(cursor) => Some((cursor.timestamp_ms, cursor.id)),
            Start::First | Start::Skip(_) => None,
        };
        let filter = &query.filter;
        for segment in &self.segments {
            events.extend(segment.page(disk, filter, query.order, after, fetch)?);
        }
        // Each source gave its first `fetch`; the first `fetch` of all are among them.
        events.sort_unstable_by_key(|event| (event.timestamp_ms, event.id));
        if query.order == Order::Desc {
            events.reverse();
        }
        let events: Vec<Event> = events.into_iter().skip(skip).take(fetch - skip).collect();
        Ok(Page::from_rows(events, query.limit))
    }

    /// A segment's events in commit order, from the cache if it holds them.
    fn in_commit_order(
        disk: &dyn Disk,
        segment: &Segment,
        cache: &StreamCache,
    ) -> Result<Arc<Vec<Stored>>, Error> {
        let mut cached = cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((generation, events)) = cached.as_ref()
            && *generation == segment.generation
        {
            return Ok(Arc::clone(events));
        }
        let mut events = segment.events(disk)?;
        events.sort_unstable_by_key(|stored| stored.seq);
        let events = Arc::new(events);
        *cached = Some((segment.generation, Arc::clone(&events)));
        Ok(events)
    }

    fn stream(
        &self,
        disk: &dyn Disk,
        cache: &StreamCache,
        filter: &Filter,
        after: StreamCursor,
        limit: u32,
    ) -> Result<StreamChunk, Error> {
        let limit = limit as usize;
        let mut events = Vec::new();
        let mut upto = after;
        let mut scanned = 0;
        for segment in &self.segments {
            if segment.seq_end <= upto.commit + 1 || segment.events_len == 0 {
                continue;
            }
            let stored = State::in_commit_order(disk, segment, cache)?;
            let start = stored.partition_point(|stored| stored.seq <= upto.commit);
            for stored in &stored[start..] {
                if events.len() == limit {
                    return Ok(StreamChunk { events, upto });
                }
                let position = StreamCursor::at_seq(stored.seq);
                if filter.matches(&stored.event) {
                    events.push((position, stored.event.clone()));
                }
                upto = position;
                scanned += 1;
                if scanned == STREAM_SCAN_LEN_MAX {
                    // Only what was looked at is answered for.
                    return Ok(StreamChunk { events, upto });
                }
            }
            upto = upto.max(StreamCursor::at_seq(segment.seq_end - 1));
        }
        // The frozen memtable's positions come before the memtable's.
        for memtable in self.frozen.as_deref().into_iter().chain([&self.memtable]) {
            if events.len() == limit {
                return Ok(StreamChunk::from_rows(events, limit as u32, after, upto));
            }
            let rest = memtable.stream(filter, upto, (limit - events.len()) as u32);
            events.extend(rest.events);
            upto = rest.upto;
        }
        Ok(StreamChunk { events, upto })
    }

    fn stats(&self, disk: &dyn Disk, query: &StatsQuery) -> Result<Vec<StatsRow>, Error> {
        let filter = &query.filter;
        let mut tally = Tally::new(query.bucket.ms());
        for part in stats_parts(query, true) {
            let StatsPart::Events { from_ms, to_ms } = part else {
                for memtable in self.memtables() {
                    memtable.counts().tally(part, filter, &mut tally);
                }
                self.segment_counts.tally(part, filter, &mut tally);
                continue;
            };
            for memtable in self.memtables() {
                memtable.count_events(filter, from_ms, to_ms, &mut tally);
            }
            let window = Filter {
                since_ms: Some(from_ms),
                until_ms: Some(to_ms),
                ..filter.clone()
            };
            for segment in &self.segments {
                for event in segment.page(disk, &window, Order::Asc, None, usize::MAX)? {
                    tally.add(event.timestamp_ms, &event.event_type, 1);
                }
            }
        }
        Ok(tally.rows())
    }

    fn event_types(&self) -> Vec<(String, u64)> {
        let mut types = BTreeMap::new();
        for memtable in self.memtables() {
            memtable.counts().add_types(&mut types);
        }
        self.segment_counts.add_types(&mut types);
        types.into_iter().collect()
    }

    fn head(&self) -> StreamCursor {
        self.memtable.head()
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

fn refusal(sync_failed: &AtomicBool) -> Result<(), Error> {
    if sync_failed.load(Ordering::Relaxed) {
        return Err(Error::SyncFailed);
    }
    Ok(())
}

/// The numbers of the log files in `log_dir`, in order.
fn log_files(disk: &dyn Disk, log_dir: &Path) -> Result<Vec<u32>, Error> {
    numbers_in(disk, log_dir, ".log")
}

/// Appends a block holding no events at the mark's position to a new log file, durably,
/// and marks it acknowledged: the highest position given survives even when every
/// segment is removed. The file's mark after it.
fn mark_head(
    disk: &dyn Disk,
    path: &Path,
    mark: &Mark,
    sync_failed: Option<&AtomicBool>,
) -> Result<Mark, Error> {
    let mut marker = Vec::new();
    record::encode_block(&mut marker, mark.seq_end, 0, &[], None);
    disk.append(path, &marker).map_err(io_error(path))?;
    sync_file(disk, path, sync_failed)?;
    let head = Mark {
        counter: mark.counter + 1,
        acked_len: mark.acked_len + marker.len() as u64,
        seq_end: mark.seq_end,
    };
    write_mark(disk, path, &head, sync_failed)?;
    Ok(head)
}

/// Syncs the file at `path`; a failure, with `sync_failed`, refuses every write from
/// then on (see `LogStore::sync_failed`).
fn sync_file(disk: &dyn Disk, path: &Path, sync_failed: Option<&AtomicBool>) -> Result<(), Error> {
    disk.sync(path).map_err(|error| {
        if let Some(sync_failed) = sync_failed {
            sync_failed.store(true, Ordering::Relaxed);
        }
        io_error(path)(error)
    })
}

/// Writes `mark` into its slot of the log file at `path` and syncs it: only ever after
/// the bytes it covers were synced.
fn write_mark(
    disk: &dyn Disk,
    path: &Path,
    mark: &Mark,
    sync_failed: Option<&AtomicBool>,
) -> Result<(), Error> {
    let (offset, slot) = header::encode_slot(mark);
    disk.write_at(path, offset as u64, &slot)
        .map_err(io_error(path))?;
    sync_file(disk, path, sync_failed)
}

/// Writes `segment` again, holding only `events` (of its own, in (timestamp, id) order)
/// and in the current format, beside it: the new segment and the file to rename over
/// it.
fn write_segment(
    disk: &dyn Disk,
    segment: &Segment,
    events: &[Stored],
    generation: u64,
) -> Result<(Segment, PathBuf), Error> {
    let temporary = temporary_path(&segment.path);
    let (footer, format) = segment::write(
        disk,
        &temporary,
        events.iter().map(|stored| (stored.seq, &stored.event)),
        segment.seq_first,
        segment.seq_end,
        segment.replaces.clone(),
    )?;
    let (written, _) = Segment::from_footer(
        segment.number,
        segment.path.clone(),
        generation,
        footer,
        format,
    );
    Ok((written, temporary))
}

/// Where a file is written before it is renamed over `path`.
fn temporary_path(path: &Path) -> PathBuf {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    PathBuf::from(temporary)
}

/// Replaces `path` with `bytes` durably: a temporary file, synced, renamed over it.
fn replace(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let temporary = write_temporary(disk, path, bytes)?;
    put_in_place(disk, &temporary, path)
}

/// Writes `bytes` durably beside `path`, to be put in place by `put_in_place`.
fn write_temporary(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> Result<PathBuf, Error> {
    let temporary = temporary_path(path);
    remove_if_present(disk, &temporary)?;
    disk.append(&temporary, bytes)
        .map_err(io_error(&temporary))?;
    disk.sync(&temporary).map_err(io_error(&temporary))?;
    Ok(temporary)
}

/// Renames a temporary file over `path` and makes the rename durable.
fn put_in_place(disk: &dyn Disk, temporary: &Path, path: &Path) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    disk.rename(temporary, path).map_err(io_error(path))?;
    disk.sync_dir(dir).map_err(io_error(dir))
}

fn remove_if_present(disk: &dyn Disk, path: &Path) -> Result<(), Error> {
    match disk.remove(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(io_error(path)(error)),
        _ => Ok(()),
    }
}

/// Creates a log file holding only its header, durably, marked as acknowledged up to
/// its end, at position `seq_end`.
fn begin_file(
    disk: &dyn Disk,
    log_dir: &Path,
    path: &Path,
    seq_end: u64,
    sync_failed: Option<&AtomicBool>,
) -> Result<(), Error> {
    let header = header::encode_header(&Mark {
        counter: 1,
        acked_len: header::HEADER_LEN as u64,
        seq_end,
    });
    disk.append(path, &header).map_err(io_error(path))?;
    sync_file(disk, path, sync_failed)?;
    disk.sync_dir(log_dir).map_err(io_error(log_dir))
}

fn read_suppressed(disk: &dyn Disk, data_dir: &Path) -> Result<BTreeSet<String>, Error> {
    let path = data_dir.join(SUPPRESSED_FILE);
    match disk.read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|error| Error::Corrupt(format!("{} cannot be read: {error}", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(error) => Err(io_error(&path)(error)),
    }
}

impl Writer {
    fn active_path(&self) -> PathBuf {
        self.log_dir.join(file_name(self.active))
    }

    fn replace(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        replace(self.disk.as_ref(), path, bytes)
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation - 1
    }

    /// Begins writing the memtable as a segment if it holds `flush_at_bytes`, and puts
    /// in place a segment written since the last call. A failure is logged, not
    /// returned: the commit that filled the memtable is durable in the log, and the
    /// flush is tried again once the memtable has grown by a quarter more.
    fn flush_if_full(&mut self, table: &RwLock<State>, sync_failed: &AtomicBool) {
        self.finish_flush(table, false);
        self.finish_merge(table, false);
        let bytes = table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .memtable
            .bytes();
        if bytes < self.flush_at_bytes {
            return;
        }
        // One memtable is written at a time: a writer faster than the flush waits here,
        // which bounds the memory to two memtables.
        self.finish_flush(table, true);
        if let Err(error) = self.begin_flush(table, sync_failed) {
            self.flush_at_bytes = bytes + self.memtable_bytes_max / 4;
            tracing::warn!(error = %ErrorChain(&error), "the memtable could not be written as a segment; it stays in memory and in the log");
        }
    }

    /// Freezes the memtable and writes it as a segment named after the last log file
    /// that holds its events, on a thread of its own. The commits after go to a new log
    /// file, so that a file is either wholly in segments or wholly not; the frozen
    /// memtable is read until the segment is in place.
    fn begin_flush(
        &mut self,
        table: &RwLock<State>,
        sync_failed: &AtomicBool,
    ) -> Result<(), Error> {
        let covered = self.active;
        self.rotate(table, sync_failed)?;
        let frozen = {
            let mut state = table.write().unwrap_or_else(PoisonError::into_inner);
            let mut fresh = Memtable::new();
            fresh.reserve(state.memtable.seq_end());
            let frozen = Arc::new(std::mem::replace(&mut state.memtable, fresh));
            state.frozen = Some(Arc::clone(&frozen));
            frozen
        };
        let path = self.log_dir.join(segment_name(covered));
        let generation = self.generation();
        let disk = Arc::clone(&self.disk);
        let job = Job::spawn("eventline-flush", covered, move || {
            let seq_end = frozen.seq_end();
            let seq_first = frozen.seq_first().unwrap_or(seq_end);
            let events = frozen.events_by_time().into_iter();
            let temporary = temporary_path(&path);
            let (footer, format) = segment::write(
                disk.as_ref(),
                &temporary,
                events,
                seq_first,
                seq_end,
                Vec::new(),
            )?;
            put_in_place(disk.as_ref(), &temporary, &path)?;
            Ok(Segment::from_footer(
                covered, path, generation, footer, format,
            ))
        })
        .map_err(|error| Error::DataDir {
            path: self.log_dir.clone(),
            source: error,
        })?;
        self.flush_job = Some(job);
        Ok(())
    }

    /// Puts the segment of the flush in flight in place once it is written (with
    /// `wait`, waits for it), then removes the log files it holds. If the flush failed,
    /// its events go back into the memtable. With `wait`, no memtable is frozen after.
    fn finish_flush(&mut self, table: &RwLock<State>, wait: bool) {
        let Some((covered, written)) = Job::done(&mut self.flush_job, wait) else {
            return;
        };
        let frozen = {
            let mut state = table.write().unwrap_or_else(PoisonError::into_inner);
            let frozen = state.frozen.take();
            match &written {
                Ok((segment, counts)) => {
                    // The segment's index is shared: this copy costs a few fields.
                    state.segments.push(segment.clone());
                    state.segment_counts.add_counts(counts);
                    frozen
                }
                Err(_) => {
                    if let Some(frozen) = frozen {
                        state.memtable.absorb(&frozen);
                    }
                    None
                }
            }
        };
        // Freed outside the lock: tens of thousands of events take a while.
        drop(frozen);
        match written {
            Ok(_) => {
                self.flush_at_bytes = self.memtable_bytes_max;
                if let Err(error) = self.remove_logs_upto(covered) {
                    // Removed at the next start, which finds the segment that holds them.
                    tracing::warn!(error = %ErrorChain(&error), "log files a segment holds could not be removed");
                }
                self.begin_merge(table);
            }
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "the memtable could not be written as a segment; it stays in memory and in the log");
            }
        }
    }

    /// Waits for the flush and the merge in flight and puts their segments in place:
    /// what erasure, retention and `check` need, since they rewrite or read segments.
    fn settle(&mut self, table: &RwLock<State>) {
        self.finish_flush(table, true);
        // After the flush: putting its segment in place may begin a merge.
        self.finish_merge(table, true);
    }

    /// Begins merging the newest segments on a thread of its own, if some are of a
    /// size (`merge_run`) and no merge is in flight.
    fn begin_merge(&mut self, table: &RwLock<State>) {
        if self.merge_job.is_some() {
            return;
        }
        let inputs: Vec<Segment> = {
            let state = table.read().unwrap_or_else(PoisonError::into_inner);
            let segments = &state.segments;
            let sizes: Vec<u64> = segments.iter().map(|segment| segment.events_len).collect();
            let Some(run) = merge_run(&sizes, self.merged_events_max) else {
                return;
            };
            segments[run].to_vec()
        };
        let Some(newest) = inputs.last() else {
            return;
        };
        let (number, path) = (newest.number, newest.path.clone());
        let temporary = temporary_path(&path);
        let generation = self.generation();
        let disk = Arc::clone(&self.disk);
        let numbers = inputs.iter().map(|segment| segment.number).collect();
        let written_to = temporary.clone();
        let about = (numbers, temporary);
        let spawned = Job::spawn("eventline-merge", about, move || {
            let (footer, format) = segment::merge(disk.as_ref(), &inputs, &written_to)?;
            Ok(Segment::from_footer(number, path, generation, footer, format).0)
        });
        match spawned {
            Ok(job) => self.merge_job = Some(job),
            Err(error) => {
                tracing::warn!(error = %error, "a merge of segments could not begin");
            }
        }
    }

    /// Puts the merged segment in place once it is written (with `wait`, waits for
    /// it): renamed over the newest of its inputs under the write lock, then the other
    /// inputs removed. A merge that failed leaves its inputs as they were.
    fn finish_merge(&mut self, table: &RwLock<State>, wait: bool) {
        let Some(((inputs, temporary), merged)) = Job::done(&mut self.merge_job, wait) else {
            return;
        };
        let installed = merged.and_then(|merged| {
            let mut state = table.write().unwrap_or_else(PoisonError::into_inner);
            put_in_place(self.disk.as_ref(), &temporary, &merged.path)?;
            let first = state
                .segments
                .iter()
                .position(|segment| inputs.contains(&segment.number));
            state
                .segments
                .retain(|segment| !inputs.contains(&segment.number));
            state.segments.insert(first.unwrap_or(0), merged);
            Ok(())
        });
        if let Err(error) = installed {
            let _ = remove_if_present(self.disk.as_ref(), &temporary);
            tracing::warn!(error = %ErrorChain(&error), "segments could not be merged; they stay as they are");
            return;
        }
        let newest = inputs.last().copied();
        let removed = inputs
            .iter()
            .filter(|number| Some(**number) != newest)
            .try_for_each(|number| {
                let path = self.log_dir.join(segment_name(*number));
                remove_if_present(self.disk.as_ref(), &path)
            })
            .and_then(|()| {
                self.disk
                    .sync_dir(&self.log_dir)
                    .map_err(io_error(&self.log_dir))
            });
        if let Err(error) = removed {
            // Removed at the next start: the merged segment names them.
            tracing::warn!(error = %ErrorChain(&error), "merged segments could not be removed");
        }
    }

    fn remove_logs_upto(&self, covered: u32) -> Result<(), Error> {
        for number in log_files(self.disk.as_ref(), &self.log_dir)? {
            if number <= covered {
                let path = self.log_dir.join(file_name(number));
                self.disk.remove(&path).map_err(io_error(&path))?;
            }
        }
        self.disk
            .sync_dir(&self.log_dir)
            .map_err(io_error(&self.log_dir))
    }

    /// Closes the active log file and begins the next, whose first block marks the head.
    fn rotate(&mut self, table: &RwLock<State>, sync_failed: &AtomicBool) -> Result<(), Error> {
        if self.tail_dirty {
            self.cut_tail()?;
        }
        let path = self.active_path();
        // The file is whole on disk before the next begins: recovery takes a bad block
        // anywhere but at the end of the last file for damage.
        self.disk.sync(&path).map_err(|error| {
            sync_failed.store(true, Ordering::Relaxed);
            io_error(&path)(error)
        })?;
        let next = self.log_dir.join(file_name(self.active + 1));
        // What an earlier attempt that failed may have left.
        remove_if_present(self.disk.as_ref(), &next)?;
        let seq_end = table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .memtable
            .seq_end();
        begin_file(
            self.disk.as_ref(),
            &self.log_dir,
            &next,
            seq_end,
            Some(sync_failed),
        )?;
        // From here the writer is on the new file: appending to the old one after a
        // newer file exists would put positions out of order across files.
        self.active += 1;
        self.mark = Mark {
            counter: 1,
            acked_len: header::HEADER_LEN as u64,
            seq_end,
        };
        self.active_len = self.mark.acked_len;
        match mark_head(self.disk.as_ref(), &next, &self.mark, Some(sync_failed)) {
            Ok(mark) => {
                self.mark = mark;
                self.active_len = mark.acked_len;
                Ok(())
            }
            Err(error) => {
                // The begun mark keeps the head's position.
                self.tail_dirty = true;
                Err(error)
            }
        }
    }

    /// Segment `number` and its events, if the store holds it.
    fn segment_events(
        &self,
        table: &RwLock<State>,
        number: u32,
    ) -> Result<Option<(Segment, Vec<Stored>)>, Error> {
        let state = table.read().unwrap_or_else(PoisonError::into_inner);
        let Some(segment) = state
            .segments
            .iter()
            .find(|segment| segment.number == number)
        else {
            return Ok(None);
        };
        Ok(Some((segment.clone(), segment.events(self.disk.as_ref())?)))
    }

    /// Rewrites segment `number` without the events `drop` picks, keeping its
    /// positions; how many it dropped. The old bytes are gone once the new file is
    /// renamed over them.
    fn rewrite_segment(
        &mut self,
        table: &RwLock<State>,
        number: u32,
        drop: impl Fn(&Event) -> bool,
    ) -> Result<u64, Error> {
        let Some((segment, events)) = self.segment_events(table, number)? else {
            return Ok(0);
        };
        let (dropped, kept): (Vec<Stored>, Vec<Stored>) =
            events.into_iter().partition(|stored| drop(&stored.event));
        if dropped.is_empty() {
            return Ok(0);
        }
        let generation = self.generation();
        let (rewritten, temporary) =
            write_segment(self.disk.as_ref(), &segment, &kept, generation)?;
        let path = segment.path;
        // Renamed under the lock: a read never finds a file its footer does not describe.
        let mut state = table.write().unwrap_or_else(PoisonError::into_inner);
        put_in_place(self.disk.as_ref(), &temporary, &path)?;
        for stored in &dropped {
            state.segment_counts.add(&stored.event, -1);
        }
        if let Some(slot) = state
            .segments
            .iter_mut()
            .find(|segment| segment.number == number)
        {
            *slot = rewritten;
        }
        Ok(dropped.len() as u64)
    }

    /// Removes segment `number`, every event of which has expired; how many it held.
    fn remove_segment(&mut self, table: &RwLock<State>, number: u32) -> Result<u64, Error> {
        let Some((segment, events)) = self.segment_events(table, number)? else {
            return Ok(0);
        };
        let path = segment.path;
        let mut state = table.write().unwrap_or_else(PoisonError::into_inner);
        self.disk.remove(&path).map_err(io_error(&path))?;
        self.disk
            .sync_dir(&self.log_dir)
            .map_err(io_error(&self.log_dir))?;
        for stored in &events {
            state.segment_counts.add(&stored.event, -1);
        }
        state.segments.retain(|segment| segment.number != number);
        Ok(events.len() as u64)
    }

    fn write_suppressed(&self) -> Result<(), Error> {
        let bytes = serde_json::to_vec(&self.suppressed)
            .map_err(|error| Error::Corrupt(format!("suppression list: {error}")))?;
        self.replace(&self.data_dir.join(SUPPRESSED_FILE), &bytes)
    }

    /// Appends the blocks `fill` encodes, which end at position `seq_end`, to the active
    /// file, durably under `Durability::Full`, beginning a new file first when the
    /// active one is full. `fill` puts the next blocks in the buffer it is given, which
    /// is written before it is called again, until it answers that none are left: a
    /// commit of many events is encoded a block at a time (it took 16 MB encoded at
    /// once). A commit whose write fails is cut off whole.
    ///
    /// Under `Durability::Full` the commit also carries the mark of every commit before
    /// it, which were synced: the one sync makes both durable, and a torn write of this
    /// commit cannot touch the mark's sector.
    fn append_blocks(
        &mut self,
        table: &RwLock<State>,
        sync_failed: &AtomicBool,
        seq_end: u64,
        mut fill: impl FnMut(&mut Vec<u8>, Option<&mut zstd::bulk::Compressor<'static>>) -> bool,
    ) -> Result<(), Error> {
        let sync = |disk: &dyn Disk, path: &Path| {
            disk.sync(path).map_err(|error| {
                sync_failed.store(true, Ordering::Relaxed);
                io_error(path)(error)
            })
        };
        if self.tail_dirty {
            self.cut_tail()?;
        }
        if self.active_len >= self.file_len_max {
            self.rotate(table, sync_failed)?;
        }
        let path = self.active_path();
        let mark = (self.durability == Durability::Full && self.mark.acked_len < self.active_len)
            .then(|| self.next_mark());
        if let Some(mark) = &mark {
            let (offset, slot) = header::encode_slot(mark);
            self.disk
                .write_at(&path, offset as u64, &slot)
                .map_err(io_error(&path))?;
        }
        let mut written = 0;
        loop {
            self.buffer.clear();
            let more = fill(&mut self.buffer, self.compressor.as_mut());
            if let Err(error) = self.disk.append(&path, &self.buffer) {
                // Part of the commit may be in the file: it is cut off before the next
                // commit, now if the disk lets us (`active_len` is still where it began).
                self.tail_dirty = true;
                if let Err(cut) = self.cut_tail() {
                    tracing::warn!(error = %ErrorChain(&cut), "a failed write is cut off the log at the next commit");
                }
                return Err(io_error(&path)(error));
            }
            written += self.buffer.len() as u64;
            if !more {
                break;
            }
        }
        if self.durability == Durability::Full {
            sync(self.disk.as_ref(), &path)?;
            if let Some(mark) = mark {
                self.mark = mark;
            }
            if let Some(signal) = &self.marker_signal {
                signal.committed();
            }
        }
        self.active_len += written;
        self.seq_end = seq_end;
        Ok(())
    }

    /// The mark of everything the active file holds now.
    fn next_mark(&self) -> Mark {
        Mark {
            counter: self.mark.counter + 1,
            acked_len: self.active_len,
            seq_end: self.seq_end,
        }
    }

    /// Marks everything the active file holds as acknowledged, if its mark is behind:
    /// when commits pause, so that no commit answered stays unmarked for long, and at
    /// `closing`, when the file is synced first under any durability.
    fn mark_acknowledged(&mut self, sync_failed: &AtomicBool, closing: bool) -> Result<(), Error> {
        let durable = self.durability == Durability::Full || closing;
        if self.tail_dirty || !durable || self.mark.acked_len >= self.active_len {
            return Ok(());
        }
        refusal(sync_failed)?;
        let path = self.active_path();
        // A failed sync refuses writes from then on (see `sync_failed`); a failed write
        // leaves the mark as it was, for the next commit to carry.
        if self.durability != Durability::Full {
            sync_file(self.disk.as_ref(), &path, Some(sync_failed))?;
        }
        let mark = self.next_mark();
        write_mark(self.disk.as_ref(), &path, &mark, Some(sync_failed))?;
        self.mark = mark;
        Ok(())
    }

    /// Cuts the active file back to its last whole block.
    fn cut_tail(&mut self) -> Result<(), Error> {
        let path = self.active_path();
        self.disk
            .truncate(&path, self.active_len)
            .map_err(io_error(&path))?;
        self.tail_dirty = false;
        Ok(())
    }

    /// Rewrites log file `number` without the events in `drop`, keeping every block's
    /// positions. The old bytes are gone once the new file is renamed over them.
    fn rewrite(&mut self, number: u32, drop: &HashSet<Uuid>) -> Result<(), Error> {
        if number == self.active && self.tail_dirty {
            self.cut_tail()?;
        }
        let path = self.log_dir.join(file_name(number));
        let bytes = self.disk.read(&path).map_err(io_error(&path))?;
        let (_, blocks) = read_blocks(&path, &bytes).map_err(|(offset, detail)| {
            Error::Corrupt(format!("{} at byte {offset}: {detail}", path.display()))
        })?;
        let seq_end = blocks.last().map_or(self.seq_end, record::Block::seq_end);
        // A fresh header: the whole file is synced before it is renamed into place,
        // so all of it is marked acknowledged.
        let mut mark = Mark {
            counter: 1,
            acked_len: header::HEADER_LEN as u64,
            seq_end,
        };
        let mut out = Vec::with_capacity(bytes.len());
        out.resize(header::HEADER_LEN, 0);
        for block in blocks {
            let kept: Vec<_> = block
                .events
                .into_iter()
                .filter(|stored| !drop.contains(&stored.event.id))
                .collect();
            record::encode_block(
                &mut out,
                block.seq_first,
                block.seq_len,
                &kept,
                self.compressor.as_mut(),
            );
        }
        mark.acked_len = out.len() as u64;
        out[..header::HEADER_LEN].copy_from_slice(&header::encode_header(&mark));
        self.replace(&path, &out)?;
        if number == self.active {
            self.active_len = mark.acked_len;
            self.mark = mark;
        }
        Ok(())
    }

    /// Removes these events from their files, then from memory.
    fn delete(&mut self, table: &RwLock<State>, events: Vec<(u32, Uuid)>) -> Result<u64, Error> {
        let mut per_file: BTreeMap<u32, HashSet<Uuid>> = BTreeMap::new();
        for (file, id) in &events {
            per_file.entry(*file).or_default().insert(*id);
        }
        for (file, ids) in &per_file {
            let emptied = {
                let table = table.read().unwrap_or_else(PoisonError::into_inner);
                table.memtable.file_len(*file) == ids.len()
            };
            if emptied && *file != self.active {
                let path = self.log_dir.join(file_name(*file));
                self.disk.remove(&path).map_err(io_error(&path))?;
                self.disk
                    .sync_dir(&self.log_dir)
                    .map_err(io_error(&self.log_dir))?;
            } else {
                self.rewrite(*file, ids)?;
            }
        }
        let ids: Vec<Uuid> = events.into_iter().map(|(_, id)| id).collect();
        Ok(table
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .memtable
            .remove(&ids))
    }
}

#[async_trait]
impl Store for LogStore {
    async fn append(&self, submissions: Vec<Submission>) -> Result<Vec<Outcome>, Error> {
        self.write(move |writer, table, sync_failed| {
            let (new_events, outcomes) = {
                let table = table.read().unwrap_or_else(PoisonError::into_inner);
                // The ids the segments hold, looked up before deciding: reading them
                // may fail, and deciding does not.
                let mut in_segments = HashMap::new();
                if !table.segments.is_empty() {
                    for event in submissions.iter().flat_map(|submission| &submission.events) {
                        if table.in_memory(&event.id).is_none()
                            && let Some(stored) = table.get(writer.disk.as_ref(), &event.id)?
                        {
                            in_segments.insert(event.id, stored);
                        }
                    }
                }
                let (outcomes, new_events) = eventline_core::commit::decide(
                    &submissions,
                    |id| table.in_memory(id).or_else(|| in_segments.get(id)),
                    |contact_id| writer.suppressed.contains(contact_id),
                );
                // Decided: the events to store and the answers are copies. The submitted
                // ones would be a third copy of the commit held through its write and
                // sync, tens of megabytes under an import.
                drop(submissions);
                let bytes: usize = new_events.iter().map(Memtable::event_bytes).sum();
                if !new_events.is_empty() && table.memory_bytes() + bytes > writer.memory_bytes_max
                {
                    return Err(Error::Full {
                        bytes_max: writer.memory_bytes_max,
                    });
                }
                let seq_first = table.memtable.seq_end();
                let stored: Vec<record::Stored> = new_events
                    .into_iter()
                    .zip(seq_first..)
                    .map(|(event, seq)| record::Stored { seq, event })
                    .collect();
                (stored, outcomes)
            };
            if new_events.is_empty() {
                return Ok(outcomes);
            }
            // Each submission's events in one block, so that a crash keeps a submission
            // whole or not at all; a block holds whole submissions up to
            // `COMMIT_BLOCK_BYTES`.
            let mut submission_lens = outcomes.iter().filter_map(|outcome| match outcome {
                Outcome::Stored(appended) => Some(
                    appended
                        .iter()
                        .filter(|appended| !appended.replayed())
                        .count(),
                ),
                _ => None,
            });
            let mut rest = new_events.as_slice();
            let seq_end = new_events.last().map_or(0, |stored| stored.seq + 1);
            writer.append_blocks(table, sync_failed, seq_end, |buffer, compressor| {
                let (mut len, mut bytes) = (0, 0);
                while bytes < COMMIT_BLOCK_BYTES
                    && let Some(submission_len) = submission_lens.next()
                {
                    let submission = &rest[len..(len + submission_len).min(rest.len())];
                    bytes += submission
                        .iter()
                        .map(|stored| Memtable::event_bytes(&stored.event))
                        .sum::<usize>();
                    len += submission.len();
                }
                if len == 0 {
                    // What the outcomes do not account for (none, if `decide` is right).
                    len = rest.len();
                }
                let (block, after) = rest.split_at(len);
                if let Some(first) = block.first() {
                    let seq_len = u32::try_from(block.len())
                        .expect("a block holds at most a group commit's events");
                    record::encode_block(buffer, first.seq, seq_len, block, compressor);
                }
                rest = after;
                !rest.is_empty()
            })?;
            {
                let mut table = table.write().unwrap_or_else(PoisonError::into_inner);
                for stored in new_events {
                    table
                        .memtable
                        .insert(stored.seq, writer.active, stored.event);
                }
            }
            writer.flush_if_full(table, sync_failed);
            Ok(outcomes)
        })
        .await
    }

    async fn page(&self, query: PageQuery) -> Result<Page, Error> {
        let small = query.filter.contact_id.is_some();
        self.reading(small, move |state, disk, _| state.page(disk, &query))
            .await
    }

    async fn stream(
        &self,
        filter: &Filter,
        after: StreamCursor,
        limit: u32,
    ) -> Result<StreamChunk, Error> {
        let filter = filter.clone();
        self.reading(false, move |state, disk, cache| {
            state.stream(disk, cache, &filter, after, limit)
        })
        .await
    }

    async fn stream_head(&self) -> Result<StreamCursor, Error> {
        Ok(self.read().head())
    }

    async fn check(&self) -> Result<(), Error> {
        // Not ready while writes are refused: a restart is what brings them back.
        self.refusal()
    }

    async fn erase_contact(&self, contact_id: &str, suppress: bool) -> Result<u64, Error> {
        let contact_id = contact_id.to_owned();
        self.write(move |writer, table, _| {
            // The frozen memtable's events are erased from its segment, once written,
            // and no merge rewrites a segment from before the erasure.
            writer.settle(table);
            if suppress && writer.suppressed.insert(contact_id.clone()) {
                writer.write_suppressed()?;
            }
            let (events, segments) = {
                let state = table.read().unwrap_or_else(PoisonError::into_inner);
                let segments: Vec<u32> = state
                    .segments
                    .iter()
                    .filter(|segment| segment.may_hold_contact(&contact_id))
                    .map(|segment| segment.number)
                    .collect();
                (state.memtable.contact_events(&contact_id), segments)
            };
            let mut erased = writer.delete(table, events)?;
            for number in segments {
                erased += writer.rewrite_segment(table, number, |event| {
                    event.contact_id.as_deref() == Some(contact_id.as_str())
                })?;
            }
            Ok(erased)
        })
        .await
    }

    async fn unsuppress_contact(&self, contact_id: &str) -> Result<bool, Error> {
        let contact_id = contact_id.to_owned();
        self.write(move |writer, _, _| {
            let was = writer.suppressed.remove(&contact_id);
            if was {
                writer.write_suppressed()?;
            }
            Ok(was)
        })
        .await
    }

    async fn delete_before(&self, cutoff_ms: i64, limit: u32) -> Result<u64, Error> {
        self.write(move |writer, table, _| {
            writer.settle(table);
            // Whole files of expired events go at once, however many they hold: removing
            // a file costs no more than removing one event, and rewriting it a thousand
            // events at a time would cost its length each time.
            let (events, oldest_segment) = {
                let state = table.read().unwrap_or_else(PoisonError::into_inner);
                let whole = state.memtable.expired_files(cutoff_ms, writer.active);
                let events = if whole.is_empty() {
                    state.memtable.events_before(cutoff_ms, limit as usize)
                } else {
                    whole
                };
                let oldest_segment = state
                    .segments
                    .iter()
                    .filter(|segment| segment.events_len > 0 && segment.timestamp_min < cutoff_ms)
                    .min_by_key(|segment| segment.timestamp_min)
                    .map(|segment| (segment.number, segment.timestamp_max < cutoff_ms));
                (events, oldest_segment)
            };
            if !events.is_empty() {
                return writer.delete(table, events);
            }
            // A segment goes whole, or is rewritten once without every expired event:
            // either costs its length, whatever the limit.
            match oldest_segment {
                Some((number, true)) => writer.remove_segment(table, number),
                Some((number, false)) => {
                    writer.rewrite_segment(table, number, |event| event.timestamp_ms < cutoff_ms)
                }
                None => Ok(0),
            }
        })
        .await
    }

    async fn stats(&self, query: StatsQuery) -> Result<Vec<StatsRow>, Error> {
        // A window may hold many events: always counted off the async threads.
        let (table, disk) = (Arc::clone(&self.table), Arc::clone(&self.disk));
        tokio::task::spawn_blocking(move || {
            table
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .stats(disk.as_ref(), &query)
        })
        .await?
    }

    async fn event_types(&self) -> Result<Vec<(String, u64)>, Error> {
        Ok(self.read().event_types())
    }

    /// Puts a segment written since the last commit in place, and begins the next
    /// merge: a store that stopped receiving events would otherwise keep its frozen
    /// memtable, the log files, and as many segments as the last flush left. A store
    /// that refuses writes (a failed fsync, logged then) has nothing to do.
    async fn maintain(&self) -> Result<(), Error> {
        if self.refusal().is_err() {
            return Ok(());
        }
        self.write(|writer, table, _| {
            writer.finish_flush(table, false);
            writer.finish_merge(table, false);
            writer.begin_merge(table);
            Ok(())
        })
        .await
    }

    /// Every second: a merge finished while no events come is put in place, and the
    /// next one begun, within a second, so segments left by an import are merged soon
    /// after it (one merge a minute took a quarter of an hour).
    fn maintain_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::merge_run;

    const MAX: u64 = 3_000_000;

    #[test]
    fn merges_the_newest_longest_run_of_a_size() {
        assert_eq!(merge_run(&[100, 100, 100, 100, 100], MAX), Some(1..5));
        assert_eq!(merge_run(&[1_000, 100, 100], MAX), Some(1..3));
        assert_eq!(merge_run(&[100], MAX), None);
        assert_eq!(merge_run(&[], MAX), None);
    }

    #[test]
    fn merges_uneven_segments_whose_largest_the_others_outweigh() {
        // 1,400,000 is more than twice 400,000, but no more than the others together.
        assert_eq!(
            merge_run(&[1_400_000, 400_000, 500_000, 600_000], MAX),
            Some(0..4)
        );
        // Neither form: a merge that would barely grow the largest segment.
        assert_eq!(merge_run(&[1_400_000, 300_000], MAX), None);
        assert_eq!(merge_run(&[1_000_000, 200_000, 500_000], MAX), None);
    }

    #[test]
    fn never_merges_past_the_bound() {
        assert_eq!(merge_run(&[1_600_000, 1_600_000], MAX), None);
        assert_eq!(
            merge_run(&[2_000_000, 1_000_000, 1_000_000], MAX),
            Some(1..3)
        );
    }
}
