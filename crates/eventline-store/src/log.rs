//! The log store: the embedded store of `docs/storage-design.md`, step 1. Every group
//! commit is one checksummed block appended to a log file and synced before the answer;
//! the events are also held in memory ([`memtable`]), indexed for every read. On start
//! the log is read back whole.
//!
//! Step 1 has no segments: the store holds at most `memory_bytes_max` of events and
//! refuses writes past it. It is chosen with `--embedded-format log` for a new data
//! directory, and a directory that holds a log is always opened as one.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use async_trait::async_trait;
use eventline_core::cursor::StreamCursor;
use eventline_core::error_chain::ErrorChain;
use eventline_core::event::Event;
use eventline_core::query::{Filter, Page, PageQuery};
use eventline_core::stats::{StatsQuery, StatsRow};
use uuid::Uuid;

use crate::{Durability, Error, Outcome, Store, StreamChunk, Submission};

pub mod disk;
mod memtable;
mod record;
pub mod upgrade;

use disk::{Disk, RealDisk};
use memtable::Memtable;
use record::{BadBlock, FILE_MAGIC};

/// The log's directory inside the data directory; its presence marks the format.
pub const LOG_DIR: &str = "log";
const LOCK_FILE: &str = "eventline.lock";
/// Contacts erased with suppression, one JSON array, replaced whole on each change.
const SUPPRESSED_FILE: &str = "suppressed.json";

#[derive(Clone)]
pub struct LogOptions {
    pub durability: Durability,
    /// Events held in memory, in bytes as estimated by the store; writes past it are
    /// refused until retention or erasure makes room (step 1 has no segments).
    pub memory_bytes_max: usize,
    /// A log file is closed and the next one begun past this length.
    pub file_len_max: u64,
    pub disk: Arc<dyn Disk>,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            durability: Durability::Full,
            memory_bytes_max: 1 << 30,
            file_len_max: 64 << 20,
            disk: Arc::new(RealDisk::default()),
        }
    }
}

pub struct LogStore {
    table: Arc<RwLock<Memtable>>,
    writer: Arc<Mutex<Writer>>,
    /// Set when an fsync failed: the kernel may have dropped the pages it could not
    /// write, and a second fsync would then report success for data that is not on
    /// disk, so the store refuses every write until a restart reads back what the disk
    /// holds.
    sync_failed: Arc<AtomicBool>,
    /// Held for the life of the store: a second process on the same directory refuses
    /// to start instead of interleaving writes.
    _lock: File,
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
    suppressed: BTreeSet<String>,
    /// A write failed and may have left part of a block after `active_len`.
    tail_dirty: bool,
    /// Compresses blocks; kept, since a context costs more to make than a small block
    /// to compress. `None` if zstd could not make one: blocks are then written as is.
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// Reused for each block.
    buffer: Vec<u8>,
}

fn file_name(number: u32) -> String {
    format!("{number:08}.log")
}

fn file_number(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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
        std::fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = File::create(&lock_path).map_err(io_error(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(Error::DataDirLocked(data_dir.to_owned()));
        }
        let disk = Arc::clone(&options.disk);
        let log_dir = data_dir.join(LOG_DIR);
        disk.create_dir_all(&log_dir).map_err(io_error(&log_dir))?;
        let (table, active, active_len) = recover(disk.as_ref(), &log_dir)?;
        let suppressed = read_suppressed(disk.as_ref(), data_dir)?;
        let writer = Writer {
            disk,
            data_dir: data_dir.to_owned(),
            log_dir,
            active,
            active_len,
            file_len_max: options.file_len_max,
            durability: options.durability,
            memory_bytes_max: options.memory_bytes_max,
            suppressed,
            tail_dirty: false,
            compressor: zstd::bulk::Compressor::new(record::ZSTD_LEVEL).ok(),
            buffer: Vec::new(),
        };
        Ok(LogStore {
            table: Arc::new(RwLock::new(table)),
            writer: Arc::new(Mutex::new(writer)),
            sync_failed: Arc::new(AtomicBool::new(false)),
            _lock: lock,
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Memtable> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn refusal(&self) -> Result<(), Error> {
        refusal(&self.sync_failed)
    }

    /// Runs `work` with the writer, off the async threads.
    async fn write<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer, &RwLock<Memtable>, &AtomicBool) -> Result<T, Error> + Send + 'static,
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

    /// Appends events that already have their positions (the upgrade from SQLite), in
    /// one block that also takes every position up to `seq_upto`, stored or not.
    /// Blocks.
    fn append_at(&self, events: Vec<(StreamCursor, Event)>, seq_upto: u64) -> Result<(), Error> {
        let mut guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let writer = &mut *guard;
        let seq_first = self.read().seq_end();
        if seq_upto < seq_first {
            return Ok(());
        }
        let seq_len = u32::try_from(seq_upto - seq_first + 1).map_err(|_| {
            Error::Corrupt(format!(
                "positions {seq_first} to {seq_upto} hold too few events for one block"
            ))
        })?;
        let stored: Vec<record::Stored> = events
            .into_iter()
            .map(|(position, event)| record::Stored {
                seq: position.commit,
                event,
            })
            .collect();
        if stored
            .iter()
            .any(|stored| stored.seq < seq_first || stored.seq > seq_upto)
        {
            return Err(Error::Corrupt(
                "an event of the SQLite store lies outside its commit range".to_owned(),
            ));
        }
        writer.buffer.clear();
        record::encode_block(
            &mut writer.buffer,
            seq_first,
            seq_len,
            &stored,
            writer.compressor.as_mut(),
        );
        writer.append_buffer(&self.sync_failed)?;
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        table.reserve(seq_upto + 1);
        for stored in stored {
            table.insert(stored.seq, writer.active, stored.event);
        }
        Ok(())
    }

    /// Adds these contacts to the suppressed ones (the upgrade from SQLite). Blocks.
    fn suppress_all(&self, contacts: Vec<String>) -> Result<(), Error> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.suppressed.extend(contacts);
        writer.write_suppressed()
    }

    /// Reads every log file back and checks every block: what `eventline check` runs.
    /// Blocks, and reads every byte.
    pub fn verify(&self) -> Result<crate::sqlite::Verified, Error> {
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut verified = crate::sqlite::Verified::default();
        for number in log_files(writer.disk.as_ref(), &writer.log_dir)? {
            let path = writer.log_dir.join(file_name(number));
            let bytes = writer.disk.read(&path).map_err(io_error(&path))?;
            match read_blocks(&path, &bytes) {
                Ok(blocks) => {
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

fn refusal(sync_failed: &AtomicBool) -> Result<(), Error> {
    if sync_failed.load(Ordering::Relaxed) {
        return Err(Error::SyncFailed);
    }
    Ok(())
}

/// The numbers of the log files in `log_dir`, in order. Left-over temporary files of a
/// rewrite that did not finish are removed: the file they were to replace is whole.
fn log_files(disk: &dyn Disk, log_dir: &Path) -> Result<Vec<u32>, Error> {
    let mut numbers = Vec::new();
    for name in disk.list(log_dir).map_err(io_error(log_dir))? {
        if let Some(number) = file_number(&name) {
            numbers.push(number);
        } else if name.ends_with(".log.tmp") {
            let path = log_dir.join(&name);
            disk.remove(&path).map_err(io_error(&path))?;
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Where a walk through a log file stopped before its end, and why.
type Stop = Option<(usize, BadBlock)>;

/// The blocks of a log file after its header, each with its offset, up to the end or
/// the first bad one; and where and why the walk stopped, if it stopped before the end.
fn walk_blocks(bytes: &[u8]) -> (Vec<(usize, record::Block)>, Stop) {
    let mut blocks = Vec::new();
    let mut offset = FILE_MAGIC.len();
    while offset < bytes.len() {
        match record::decode_block(&bytes[offset..]) {
            Ok((block, len)) => {
                blocks.push((offset, block));
                offset += len;
            }
            Err(bad) => return (blocks, Some((offset, bad))),
        }
    }
    (blocks, None)
}

/// Every block of a whole log file, or where and why it is not whole.
fn read_blocks(path: &Path, bytes: &[u8]) -> Result<Vec<record::Block>, (usize, String)> {
    if !bytes.starts_with(FILE_MAGIC) {
        return Err((
            0,
            format!("{} is not an eventline log file", path.display()),
        ));
    }
    match walk_blocks(bytes) {
        (blocks, None) => Ok(blocks.into_iter().map(|(_, block)| block).collect()),
        (_, Some((offset, bad))) => Err((offset, bad.detail().to_owned())),
    }
}

/// Whether a whole block with positions from `seq_end` on starts anywhere after `offset`:
/// then the bad bytes at `offset` are damage, not the torn end of the last write.
fn block_after(bytes: &[u8], offset: usize, seq_end: u64) -> bool {
    let magic = &bytes[offset..];
    (1..magic.len()).any(|at| {
        record::BLOCK_MAGICS
            .iter()
            .any(|block_magic| magic[at..].starts_with(*block_magic))
            && record::decode_block(&magic[at..]).is_ok_and(|(block, _)| block.seq_first >= seq_end)
    })
}

/// Whether the bytes from `offset` on end in zeros from a sector boundary: what a write
/// cut short can leave when the file's length reached the disk before its data. Damage
/// to a whole block (a flipped bit) never looks like this: an event ends with the last
/// byte of its JSON content, never zero.
fn zero_filled_tail(bytes: &[u8], offset: usize) -> bool {
    const SECTOR_BYTES: usize = 512;
    let zeros = bytes[offset..]
        .iter()
        .rev()
        .take_while(|byte| **byte == 0)
        .count();
    let zeros_from = bytes.len() - zeros;
    zeros > 0 && (zeros_from.is_multiple_of(SECTOR_BYTES) || zeros >= SECTOR_BYTES)
}

/// Reads the log back into memory. A torn block at the end of the last file (a write
/// cut by a crash, never acknowledged: the file ends inside it, or it ends in zeroed
/// sectors) is cut off; anything else that is not whole is damage, and the store refuses
/// to start rather than silently drop acknowledged events.
fn recover(disk: &dyn Disk, log_dir: &Path) -> Result<(Memtable, u32, u64), Error> {
    let numbers = log_files(disk, log_dir)?;
    let mut table = Memtable::new();
    let Some(&last) = numbers.last() else {
        let path = log_dir.join(file_name(1));
        begin_file(disk, log_dir, &path)?;
        return Ok((table, 1, FILE_MAGIC.len() as u64));
    };
    let mut active_len = 0;
    for number in numbers {
        let path = log_dir.join(file_name(number));
        let is_last = number == last;
        let damaged = |offset: usize, detail: &str| Error::LogDamaged {
            path: path.clone(),
            offset: offset as u64,
            detail: detail.to_owned(),
        };
        let bytes = disk.read(&path).map_err(io_error(&path))?;
        if !bytes.starts_with(FILE_MAGIC) {
            // A file begun by the last run, cut before its first bytes were synced.
            if is_last && FILE_MAGIC.starts_with(&bytes) {
                disk.truncate(&path, 0).map_err(io_error(&path))?;
                begin_file(disk, log_dir, &path)?;
                active_len = FILE_MAGIC.len() as u64;
                continue;
            }
            return Err(damaged(0, "not an eventline log file"));
        }
        let (blocks, stop) = walk_blocks(&bytes);
        for (offset, block) in blocks {
            if block.seq_first < table.seq_end() {
                return Err(damaged(
                    offset,
                    "the block's positions are not after the previous block's",
                ));
            }
            table.reserve(block.seq_end());
            for stored in block.events {
                table.insert(stored.seq, number, stored.event);
            }
        }
        let offset = match stop {
            None => bytes.len(),
            Some((offset, bad)) => {
                let torn = match bad {
                    BadBlock::Short => true,
                    BadBlock::Damaged(_) => zero_filled_tail(&bytes, offset),
                };
                if !is_last || !torn || block_after(&bytes, offset, table.seq_end()) {
                    return Err(damaged(offset, bad.detail()));
                }
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    bytes = bytes.len() - offset,
                    "the log ends with a write cut short (never acknowledged); cutting it off"
                );
                disk.truncate(&path, offset as u64)
                    .map_err(io_error(&path))?;
                offset
            }
        };
        active_len = offset as u64;
    }
    Ok((table, last, active_len))
}

fn remove_if_present(disk: &dyn Disk, path: &Path) -> Result<(), Error> {
    match disk.remove(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(io_error(path)(error)),
        _ => Ok(()),
    }
}

/// Creates a log file holding only its header, durably.
fn begin_file(disk: &dyn Disk, log_dir: &Path, path: &Path) -> Result<(), Error> {
    disk.append(path, FILE_MAGIC).map_err(io_error(path))?;
    disk.sync(path).map_err(io_error(path))?;
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

    /// Replaces `path` with `bytes` durably: a temporary file, synced, renamed over it.
    fn replace(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let dir = path.parent().unwrap_or(&self.data_dir);
        remove_if_present(self.disk.as_ref(), &temporary)?;
        self.disk
            .append(&temporary, bytes)
            .map_err(io_error(&temporary))?;
        self.disk.sync(&temporary).map_err(io_error(&temporary))?;
        self.disk.rename(&temporary, path).map_err(io_error(path))?;
        self.disk.sync_dir(dir).map_err(io_error(dir))
    }

    fn write_suppressed(&self) -> Result<(), Error> {
        let bytes = serde_json::to_vec(&self.suppressed)
            .map_err(|error| Error::Corrupt(format!("suppression list: {error}")))?;
        self.replace(&self.data_dir.join(SUPPRESSED_FILE), &bytes)
    }

    /// Appends `self.buffer` to the active file, durably under `Durability::Full`,
    /// beginning a new file first when the active one is full.
    fn append_buffer(&mut self, sync_failed: &AtomicBool) -> Result<(), Error> {
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
            let path = self.active_path();
            // The file is whole on disk before the next begins: recovery takes a bad
            // block anywhere but at the end of the last file for damage.
            sync(self.disk.as_ref(), &path)?;
            let next = self.log_dir.join(file_name(self.active + 1));
            // What an earlier attempt that failed may have left.
            remove_if_present(self.disk.as_ref(), &next)?;
            begin_file(self.disk.as_ref(), &self.log_dir, &next)?;
            self.active += 1;
            self.active_len = FILE_MAGIC.len() as u64;
        }
        let path = self.active_path();
        if let Err(error) = self.disk.append(&path, &self.buffer) {
            // Part of the block may be in the file: it is cut off before the next
            // commit, now if the disk lets us.
            self.tail_dirty = true;
            if let Err(cut) = self.cut_tail() {
                tracing::warn!(error = %ErrorChain(&cut), "a failed write is cut off the log at the next commit");
            }
            return Err(io_error(&path)(error));
        }
        if self.durability == Durability::Full {
            sync(self.disk.as_ref(), &path)?;
        }
        self.active_len += self.buffer.len() as u64;
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
        let blocks = read_blocks(&path, &bytes).map_err(|(offset, detail)| {
            Error::Corrupt(format!("{} at byte {offset}: {detail}", path.display()))
        })?;
        let mut out = Vec::with_capacity(bytes.len());
        out.extend_from_slice(FILE_MAGIC);
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
        self.replace(&path, &out)?;
        if number == self.active {
            self.active_len = out.len() as u64;
        }
        Ok(())
    }

    /// Removes these events from their files, then from memory.
    fn delete(&mut self, table: &RwLock<Memtable>, events: Vec<(u32, Uuid)>) -> Result<u64, Error> {
        let mut per_file: BTreeMap<u32, HashSet<Uuid>> = BTreeMap::new();
        for (file, id) in &events {
            per_file.entry(*file).or_default().insert(*id);
        }
        for (file, ids) in &per_file {
            let emptied = {
                let table = table.read().unwrap_or_else(PoisonError::into_inner);
                table.file_len(*file) == ids.len()
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
            .remove(&ids))
    }
}

#[async_trait]
impl Store for LogStore {
    async fn append(&self, submissions: Vec<Submission>) -> Result<Vec<Outcome>, Error> {
        self.write(move |writer, table, sync_failed| {
            let (new_events, outcomes) = {
                let table = table.read().unwrap_or_else(PoisonError::into_inner);
                let (outcomes, new_events) = crate::decide::decide(
                    &submissions,
                    |id| table.get(id),
                    |contact_id| writer.suppressed.contains(contact_id),
                );
                let bytes: usize = new_events.iter().map(Memtable::event_bytes).sum();
                if !new_events.is_empty() && table.bytes() + bytes > writer.memory_bytes_max {
                    return Err(Error::Full {
                        bytes_max: writer.memory_bytes_max,
                    });
                }
                let seq_first = table.seq_end();
                let stored: Vec<record::Stored> = new_events
                    .into_iter()
                    .zip(seq_first..)
                    .map(|(event, seq)| record::Stored { seq, event })
                    .collect();
                (stored, outcomes)
            };
            let Some(first) = new_events.first() else {
                return Ok(outcomes);
            };
            let seq_first = first.seq;
            writer.buffer.clear();
            let seq_len = u32::try_from(new_events.len()).unwrap_or(u32::MAX);
            record::encode_block(
                &mut writer.buffer,
                seq_first,
                seq_len,
                &new_events,
                writer.compressor.as_mut(),
            );
            writer.append_buffer(sync_failed)?;
            let mut table = table.write().unwrap_or_else(PoisonError::into_inner);
            for stored in new_events {
                table.insert(stored.seq, writer.active, stored.event);
            }
            Ok(outcomes)
        })
        .await
    }

    async fn page(&self, query: PageQuery) -> Result<Page, Error> {
        Ok(self.read().page(&query))
    }

    async fn stream(
        &self,
        filter: &Filter,
        after: StreamCursor,
        limit: u32,
    ) -> Result<StreamChunk, Error> {
        Ok(self.read().stream(filter, after, limit))
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
            if suppress && writer.suppressed.insert(contact_id.clone()) {
                writer.write_suppressed()?;
            }
            let events = table
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contact_events(&contact_id);
            writer.delete(table, events)
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
            // Whole files of expired events go at once, however many they hold: removing
            // a file costs no more than removing one event, and rewriting it a thousand
            // events at a time would cost its length each time.
            let events = {
                let table = table.read().unwrap_or_else(PoisonError::into_inner);
                let whole = table.expired_files(cutoff_ms, writer.active);
                if whole.is_empty() {
                    table.events_before(cutoff_ms, limit as usize)
                } else {
                    whole
                }
            };
            writer.delete(table, events)
        })
        .await
    }

    async fn stats(&self, query: StatsQuery) -> Result<Vec<StatsRow>, Error> {
        let table = Arc::clone(&self.table);
        // A window may hold many events: counted off the async threads.
        tokio::task::spawn_blocking(move || {
            Ok(table
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .stats(&query))
        })
        .await?
    }

    async fn event_types(&self) -> Result<Vec<(String, u64)>, Error> {
        Ok(self.read().event_types())
    }
}
