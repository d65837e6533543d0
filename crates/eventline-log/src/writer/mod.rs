//! The writer: the one thread of work that appends to the log (group commits, marks),
//! begins new files, and erases.

mod compaction;
pub(crate) mod marker;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use eventline_core::commit::Durability;
use eventline_core::error_chain::ErrorChain;
use eventline_core::event::Event;
use uuid::Uuid;

use crate::disk::Disk;
use crate::error::Error;
use crate::files::{
    SUPPRESSED_FILE, begin_file, file_name, io_error, log_files, mark_head, put_in_place,
    read_blocks, remove_if_present, replace, sync_file, write_mark, write_segment,
};
use crate::header::{self, Mark};
use crate::record::{self, Stored};
use crate::segment::Segment;
use crate::state::State;
use compaction::{FlushJob, MergeJob};

/// A commit's events are written in blocks of whole submissions of about this many
/// bytes (as the memtable counts them), each encoded and compressed on its own.
pub(crate) const COMMIT_BLOCK_BYTES: usize = 1 << 20;

/// What only the writer touches: the active file and the suppression list.
pub(crate) struct Writer {
    pub(crate) disk: Arc<dyn Disk>,
    pub(crate) data_dir: PathBuf,
    pub(crate) log_dir: PathBuf,
    pub(crate) active: u32,
    pub(crate) active_len: u64,
    pub(crate) file_len_max: u64,
    pub(crate) durability: Durability,
    pub(crate) memory_bytes_max: usize,
    pub(crate) memtable_bytes_max: usize,
    pub(crate) merged_events_max: u64,
    /// The memtable's size at which the next flush is tried: `memtable_bytes_max`, or
    /// more after a flush failed, so that a full disk is not retried at every commit.
    pub(crate) flush_at_bytes: usize,
    /// The generation the next segment written or rewritten gets.
    pub(crate) next_generation: u64,
    pub(crate) flush_job: Option<FlushJob>,
    pub(crate) merge_job: Option<MergeJob>,
    pub(crate) suppressed: BTreeSet<String>,
    /// A write failed and may have left part of a block after `active_len`.
    pub(crate) tail_dirty: bool,
    /// The position after the last event appended to the log.
    pub(crate) seq_end: u64,
    /// The active file's newest mark, on disk once the sync after it returned.
    pub(crate) mark: Mark,
    /// Told of every durable commit, to mark it acknowledged once commits pause.
    pub(crate) marker_signal: Option<Arc<marker::Signal>>,
    /// Compresses blocks; kept, since a context costs more to make than a small block
    /// to compress. `None` if zstd could not make one: blocks are then written as is.
    pub(crate) compressor: Option<zstd::bulk::Compressor<'static>>,
    /// Reused for each block.
    pub(crate) buffer: Vec<u8>,
}

pub(crate) fn refusal(sync_failed: &AtomicBool) -> Result<(), Error> {
    if sync_failed.load(Ordering::Relaxed) {
        return Err(Error::SyncFailed);
    }
    Ok(())
}

impl Writer {
    pub(crate) fn active_path(&self) -> PathBuf {
        self.log_dir.join(file_name(self.active))
    }

    pub(crate) fn replace(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        replace(self.disk.as_ref(), path, bytes)
    }

    pub(crate) fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation - 1
    }

    pub(crate) fn remove_logs_upto(&self, covered: u32) -> Result<(), Error> {
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
    pub(crate) fn rotate(
        &mut self,
        table: &RwLock<State>,
        sync_failed: &AtomicBool,
    ) -> Result<(), Error> {
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
    pub(crate) fn segment_events(
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
    pub(crate) fn rewrite_segment(
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
    pub(crate) fn remove_segment(
        &mut self,
        table: &RwLock<State>,
        number: u32,
    ) -> Result<u64, Error> {
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

    pub(crate) fn write_suppressed(&self) -> Result<(), Error> {
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
    pub(crate) fn append_blocks(
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
    pub(crate) fn next_mark(&self) -> Mark {
        Mark {
            counter: self.mark.counter + 1,
            acked_len: self.active_len,
            seq_end: self.seq_end,
        }
    }

    /// Marks everything the active file holds as acknowledged, if its mark is behind:
    /// when commits pause, so that no commit answered stays unmarked for long, and at
    /// `closing`, when the file is synced first under any durability.
    pub(crate) fn mark_acknowledged(
        &mut self,
        sync_failed: &AtomicBool,
        closing: bool,
    ) -> Result<(), Error> {
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
    pub(crate) fn cut_tail(&mut self) -> Result<(), Error> {
        let path = self.active_path();
        self.disk
            .truncate(&path, self.active_len)
            .map_err(io_error(&path))?;
        self.tail_dirty = false;
        Ok(())
    }

    /// Rewrites log file `number` without the events in `drop`, keeping every block's
    /// positions. The old bytes are gone once the new file is renamed over them.
    pub(crate) fn rewrite(&mut self, number: u32, drop: &HashSet<Uuid>) -> Result<(), Error> {
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
    pub(crate) fn delete(
        &mut self,
        table: &RwLock<State>,
        events: Vec<(u32, Uuid)>,
    ) -> Result<u64, Error> {
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
