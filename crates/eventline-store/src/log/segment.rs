//! Segments: the memtable's events once flushed, in an immutable file sorted by
//! (timestamp, id), with the indexes that find an id or a contact's events in it.
//!
//! ```text
//! segment = SEGMENT_MAGIC (8 bytes) data_block* id_chunk* contact_chunk* footer trailer
//! data_block    = a log block (`record`), its events in (timestamp, id) order, of about
//!                 BLOCK_PAYLOAD_BYTES before compression
//! id_chunk      = (id [16] | block u32)*, sorted by id                     | crc32 u32
//! contact_chunk = zstd((contact len u16, bytes | timestamp i64 | id [16] | block u32)*),
//!                 sorted by (contact, timestamp, id)                        | crc32 u32
//! footer        = zstd(postcard(Footer))
//! trailer       = footer_offset u64 | footer_len u32 | footer_crc u32 | TRAILER_MAGIC
//! ```
//!
//! The footer is all a store keeps in memory of a segment: where each block and chunk
//! is, the first key of each, and the Bloom filters of its ids and contacts. Every byte
//! read is checked against a CRC-32 before it is used: a damaged index must not hide
//! events (`docs/reliability.md`).

use std::path::{Path, PathBuf};

use eventline_core::event::Event;
use eventline_core::query::{Filter, Order};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::bloom::Bloom;
use super::disk::Disk;
use super::memtable::Counts;
use super::record::{self, Stored};
use crate::Error;

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"EVSEG\x00\x00\x01";
const TRAILER_MAGIC: &[u8; 8] = b"EVSEGEND";
const TRAILER_LEN: usize = 8 + 4 + 4 + 8;
/// A data block holds events up to about this many bytes before compression: small
/// enough that a read of one event decompresses little, large enough to compress well.
const BLOCK_PAYLOAD_BYTES: usize = 16 << 10;
/// Entries per id or contact chunk.
const CHUNK_ENTRIES: usize = 64;
/// Segments are written once and read many times: a slower, tighter level than the
/// log's.
const ZSTD_LEVEL: i32 = 3;
/// The footer can never be longer; a damaged length must not make a read allocate more.
const FOOTER_LEN_MAX: usize = 256 << 20;

/// (timestamp, id): the page order.
pub(crate) type TimeKey = (i64, Uuid);

/// Events per event type and start of a minute, by scope: a segment's share of the
/// store's counts, as its footer keeps them.
pub(crate) type Minutes = Vec<(String, Vec<(i64, [u64; 2])>)>;

pub(crate) fn segment_name(number: u32) -> String {
    format!("{number:08}.seg")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BlockRef {
    offset: u64,
    len: u32,
    first: TimeKey,
    last: TimeKey,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChunkRef<K> {
    first: K,
    offset: u64,
    len: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Footer {
    seq_first: u64,
    seq_end: u64,
    events_len: u64,
    timestamp_min: i64,
    timestamp_max: i64,
    blocks: Vec<BlockRef>,
    id_chunks: Vec<ChunkRef<Uuid>>,
    /// The highest id: ids a server makes (UUID v7) grow with time, so a new one is
    /// above every segment's and needs no look at the filters.
    id_last: Uuid,
    contact_chunks: Vec<ChunkRef<(String, i64, Uuid)>>,
    ids: Bloom,
    contacts: Bloom,
    minutes: Minutes,
    /// The segments a merge wrote this one in place of: any of them still there when
    /// the store opens is removed (a merge cut short after its rename).
    replaces: Vec<u32>,
}

/// A segment as held in memory: its footer, less the counts (which the store adds to
/// its own).
#[derive(Clone)]
pub(crate) struct Segment {
    pub number: u32,
    pub path: PathBuf,
    /// Different for every segment a store opens or writes, a rewrite of the same file
    /// included: what a cache of a segment's contents is keyed by.
    pub generation: u64,
    pub seq_first: u64,
    pub seq_end: u64,
    pub events_len: u64,
    pub timestamp_min: i64,
    pub timestamp_max: i64,
    blocks: Vec<BlockRef>,
    id_chunks: Vec<ChunkRef<Uuid>>,
    id_last: Uuid,
    contact_chunks: Vec<ChunkRef<(String, i64, Uuid)>>,
    ids: Bloom,
    contacts: Bloom,
    pub replaces: Vec<u32>,
}

fn damaged(path: &Path, offset: u64, detail: impl Into<String>) -> Error {
    Error::LogDamaged {
        path: path.to_owned(),
        offset,
        detail: detail.into(),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::DataDir {
        path: path.to_owned(),
        source,
    }
}

/// Writes a segment from its events in (timestamp, id) order, each once: the blocks as
/// the events come, the indexes and the footer at the end. The bytes are taken as they
/// are made (`take_bytes`), so a merge of large segments holds one block, not the file.
pub(crate) struct SegmentWriter {
    compressor: zstd::bulk::Compressor<'static>,
    /// Bytes made and not yet taken, and how many were taken before them.
    out: Vec<u8>,
    taken: u64,
    /// The events of the block being filled, and their bytes, roughly.
    pending: Vec<(u64, Event)>,
    pending_bytes: usize,
    blocks: Vec<BlockRef>,
    by_id: Vec<(Uuid, u32)>,
    by_contact: Vec<(String, i64, Uuid, u32)>,
    counts: Counts,
    seq_first: u64,
    seq_end: u64,
    replaces: Vec<u32>,
}

impl SegmentWriter {
    /// A segment of the positions [`seq_first`, `seq_end`) that takes the place of the
    /// segments numbered `replaces` (a merge), if any of them is still there, and will
    /// hold about `events_len` events: the indexes are sized for them at once, since a
    /// vector that doubles as it grows holds up to twice what it needs.
    pub fn new(
        seq_first: u64,
        seq_end: u64,
        replaces: Vec<u32>,
        events_len: usize,
    ) -> Result<SegmentWriter, Error> {
        let compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL)
            .map_err(|error| Error::Corrupt(error.to_string()))?;
        Ok(SegmentWriter {
            compressor,
            out: SEGMENT_MAGIC.to_vec(),
            taken: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            blocks: Vec::new(),
            by_id: Vec::with_capacity(events_len),
            by_contact: Vec::with_capacity(events_len),
            counts: Counts::default(),
            seq_first,
            seq_end,
            replaces,
        })
    }

    /// Adds the next event in (timestamp, id) order.
    pub fn push(&mut self, seq: u64, event: Event) -> Result<(), Error> {
        self.pending_bytes += 64 + event.content.get().len();
        self.pending.push((seq, event));
        if self.pending_bytes >= BLOCK_PAYLOAD_BYTES {
            self.cut_block()?;
        }
        Ok(())
    }

    fn cut_block(&mut self) -> Result<(), Error> {
        let (Some(first), Some(last)) = (self.pending.first(), self.pending.last()) else {
            return Ok(());
        };
        let key = |(_, event): &(u64, Event)| (event.timestamp_ms, event.id);
        let (first, last) = (key(first), key(last));
        let seq_min = self.pending.iter().map(|(seq, _)| *seq).min().unwrap_or(0);
        let seq_max = self.pending.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
        let seq_len = u32::try_from(seq_max - seq_min + 1).map_err(|_| {
            Error::Corrupt("a segment block would span more than 2^32 positions".to_owned())
        })?;
        let offset = self.taken + self.out.len() as u64;
        record::encode_events(
            &mut self.out,
            seq_min,
            seq_len,
            self.pending.iter().map(|(seq, event)| (*seq, event)),
            Some(&mut self.compressor),
        );
        let len = (self.taken + self.out.len() as u64 - offset) as u32;
        let block = self.blocks.len() as u32;
        self.blocks.push(BlockRef {
            offset,
            len,
            first,
            last,
        });
        for (_, event) in self.pending.drain(..) {
            self.counts.add(&event, 1);
            self.by_id.push((event.id, block));
            if let Some(contact_id) = event.contact_id {
                self.by_contact
                    .push((contact_id, event.timestamp_ms, event.id, block));
            }
        }
        self.pending_bytes = 0;
        Ok(())
    }

    /// The bytes made since the last call: the file's next bytes.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        self.taken += self.out.len() as u64;
        std::mem::take(&mut self.out)
    }

    fn push_chunk(&mut self, payload: &[u8]) -> (u64, u32) {
        let offset = self.taken + self.out.len() as u64;
        self.out.extend_from_slice(payload);
        self.out
            .extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        (offset, (payload.len() + 4) as u32)
    }

    /// Writes the indexes and the footer: the file's last bytes (after those taken),
    /// the footer, and the counts per minute of the events.
    pub fn finish(mut self) -> Result<(Vec<u8>, Footer), Error> {
        self.cut_block()?;
        let mut by_id = std::mem::take(&mut self.by_id);
        by_id.sort_unstable();
        let mut ids = Bloom::with_keys(by_id.len());
        let mut id_chunks = Vec::new();
        for chunk in by_id.chunks(CHUNK_ENTRIES) {
            let mut payload = Vec::with_capacity(chunk.len() * 20);
            for (id, block) in chunk {
                ids.insert(id.as_bytes());
                payload.extend_from_slice(id.as_bytes());
                payload.extend_from_slice(&block.to_le_bytes());
            }
            let (offset, len) = self.push_chunk(&payload);
            id_chunks.push(ChunkRef {
                first: chunk[0].0,
                offset,
                len,
            });
        }
        let mut by_contact = std::mem::take(&mut self.by_contact);
        by_contact.sort_unstable();
        let mut contacts = Bloom::with_keys(by_contact.len());
        let mut contact_chunks = Vec::new();
        for chunk in by_contact.chunks(CHUNK_ENTRIES) {
            let mut payload = Vec::new();
            for (contact, timestamp_ms, id, block) in chunk {
                contacts.insert(contact.as_bytes());
                payload.extend_from_slice(&(contact.len() as u16).to_le_bytes());
                payload.extend_from_slice(contact.as_bytes());
                payload.extend_from_slice(&timestamp_ms.to_le_bytes());
                payload.extend_from_slice(id.as_bytes());
                payload.extend_from_slice(&block.to_le_bytes());
            }
            let compressed = self
                .compressor
                .compress(&payload)
                .map_err(|error| Error::Corrupt(error.to_string()))?;
            let (offset, len) = self.push_chunk(&compressed);
            let (contact, timestamp_ms, id, _) = &chunk[0];
            contact_chunks.push(ChunkRef {
                first: (contact.clone(), *timestamp_ms, *id),
                offset,
                len,
            });
        }
        let footer = Footer {
            seq_first: self.seq_first,
            seq_end: self.seq_end,
            events_len: by_id.len() as u64,
            timestamp_min: self.blocks.first().map_or(0, |block| block.first.0),
            timestamp_max: self.blocks.last().map_or(0, |block| block.last.0),
            blocks: std::mem::take(&mut self.blocks),
            id_chunks,
            id_last: by_id.last().map_or(Uuid::nil(), |(id, _)| *id),
            contact_chunks,
            ids,
            contacts,
            minutes: self.counts.minutes(),
            replaces: std::mem::take(&mut self.replaces),
        };
        let encoded =
            postcard::to_stdvec(&footer).map_err(|error| Error::Corrupt(error.to_string()))?;
        let compressed = self
            .compressor
            .compress(&encoded)
            .map_err(|error| Error::Corrupt(error.to_string()))?;
        let footer_offset = self.taken + self.out.len() as u64;
        self.out.extend_from_slice(&compressed);
        self.out.extend_from_slice(&footer_offset.to_le_bytes());
        self.out
            .extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        self.out
            .extend_from_slice(&crc32fast::hash(&compressed).to_le_bytes());
        self.out.extend_from_slice(TRAILER_MAGIC);
        Ok((self.out, footer))
    }
}

/// The bytes of a segment holding `events` (each with its position, in (timestamp, id)
/// order, each once), which took the positions [`seq_first`, `seq_end`), and
/// `replaces` the segments of those numbers (a rewrite keeps a merge's).
pub(crate) fn build<'a>(
    events: impl ExactSizeIterator<Item = (u64, &'a Event)>,
    seq_first: u64,
    seq_end: u64,
    replaces: Vec<u32>,
) -> Result<Vec<u8>, Error> {
    let mut writer = SegmentWriter::new(seq_first, seq_end, replaces, events.len())?;
    for (seq, event) in events {
        // One block's events at a time are copies: the block is encoded from them.
        writer.push(seq, event.clone())?;
    }
    Ok(writer.finish()?.0)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// The footer a segment's last bytes point to, given a read of `len` bytes at `offset`.
fn read_footer(
    path: &Path,
    file_len: u64,
    read_at: impl Fn(u64, usize) -> Result<Vec<u8>, Error>,
) -> Result<Footer, Error> {
    if file_len < (SEGMENT_MAGIC.len() + TRAILER_LEN) as u64 {
        return Err(damaged(path, 0, "too short for a segment"));
    }
    if read_at(0, SEGMENT_MAGIC.len())? != SEGMENT_MAGIC {
        return Err(damaged(path, 0, "not an eventline segment"));
    }
    let trailer_at = file_len - TRAILER_LEN as u64;
    let trailer = read_at(trailer_at, TRAILER_LEN)?;
    if &trailer[16..] != TRAILER_MAGIC {
        return Err(damaged(
            path,
            trailer_at,
            "the segment's trailer is missing",
        ));
    }
    let mut offset = [0; 8];
    offset.copy_from_slice(&trailer[..8]);
    let footer_offset = u64::from_le_bytes(offset);
    let footer_len = u32_at(&trailer, 8) as usize;
    if footer_len > FOOTER_LEN_MAX || footer_offset + footer_len as u64 > trailer_at {
        return Err(damaged(
            path,
            trailer_at,
            "the footer's place is out of range",
        ));
    }
    let compressed = read_at(footer_offset, footer_len)?;
    if crc32fast::hash(&compressed) != u32_at(&trailer, 12) {
        return Err(damaged(
            path,
            footer_offset,
            "the footer does not match its checksum",
        ));
    }
    let encoded = zstd::bulk::decompress(&compressed, FOOTER_LEN_MAX)
        .map_err(|_| damaged(path, footer_offset, "the footer cannot be decompressed"))?;
    postcard::from_bytes(&encoded)
        .map_err(|_| damaged(path, footer_offset, "the footer cannot be read"))
}

impl Segment {
    pub fn from_footer(
        number: u32,
        path: PathBuf,
        generation: u64,
        footer: Footer,
    ) -> (Segment, Minutes) {
        let segment = Segment {
            number,
            path,
            generation,
            seq_first: footer.seq_first,
            seq_end: footer.seq_end,
            events_len: footer.events_len,
            timestamp_min: footer.timestamp_min,
            timestamp_max: footer.timestamp_max,
            blocks: footer.blocks,
            id_chunks: footer.id_chunks,
            id_last: footer.id_last,
            contact_chunks: footer.contact_chunks,
            ids: footer.ids,
            contacts: footer.contacts,
            replaces: footer.replaces,
        };
        (segment, footer.minutes)
    }

    /// The segment whose bytes were just written (`build`): read from them, not the disk.
    pub fn from_bytes(
        number: u32,
        path: PathBuf,
        generation: u64,
        bytes: &[u8],
    ) -> Result<(Segment, Minutes), Error> {
        let footer = read_footer(&path, bytes.len() as u64, |offset, len| {
            let start = offset as usize;
            bytes
                .get(start..start + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| damaged(&path, offset, "a read past the end"))
        })?;
        Ok(Segment::from_footer(number, path, generation, footer))
    }

    pub fn open(
        disk: &dyn Disk,
        number: u32,
        path: PathBuf,
        generation: u64,
    ) -> Result<(Segment, Minutes), Error> {
        let file_len = disk.len(&path).map_err(io_error(&path))?;
        let footer = read_footer(&path, file_len, |offset, len| {
            disk.read_at(&path, offset, len).map_err(io_error(&path))
        })?;
        Ok(Segment::from_footer(number, path, generation, footer))
    }

    fn read_chunk(&self, disk: &dyn Disk, offset: u64, len: u32) -> Result<Vec<u8>, Error> {
        let mut bytes = disk
            .read_at(&self.path, offset, len as usize)
            .map_err(io_error(&self.path))?;
        if bytes.len() < 4 {
            return Err(damaged(&self.path, offset, "a chunk is cut short"));
        }
        let crc = u32_at(&bytes, bytes.len() - 4);
        bytes.truncate(bytes.len() - 4);
        if crc32fast::hash(&bytes) != crc {
            return Err(damaged(
                &self.path,
                offset,
                "an index chunk does not match its checksum",
            ));
        }
        Ok(bytes)
    }

    /// The events of data block `index`, in (timestamp, id) order.
    pub fn read_block(&self, disk: &dyn Disk, index: usize) -> Result<Vec<Stored>, Error> {
        self.read_block_where(disk, index, |_| true)
    }

    /// The events of data block `index` whose id `keep` picks, in (timestamp, id) order.
    fn read_block_where(
        &self,
        disk: &dyn Disk,
        index: usize,
        keep: impl Fn(&Uuid) -> bool,
    ) -> Result<Vec<Stored>, Error> {
        let block = &self.blocks[index];
        let bytes = disk
            .read_at(&self.path, block.offset, block.len as usize)
            .map_err(io_error(&self.path))?;
        match record::decode_block_where(&bytes, keep) {
            Ok((read, len)) if len == bytes.len() => Ok(read.events),
            Ok(_) => Err(damaged(
                &self.path,
                block.offset,
                "a block's length differs from the index's",
            )),
            Err(bad) => Err(damaged(&self.path, block.offset, bad.detail())),
        }
    }

    /// Every event, in (timestamp, id) order.
    pub fn events(&self, disk: &dyn Disk) -> Result<Vec<Stored>, Error> {
        let mut events = Vec::with_capacity(self.events_len as usize);
        for index in 0..self.blocks.len() {
            events.extend(self.read_block(disk, index)?);
        }
        Ok(events)
    }

    /// Reads every chunk as well as every block: what `eventline check` runs. How many
    /// events the blocks hold.
    pub fn verify(&self, disk: &dyn Disk) -> Result<u64, Error> {
        for chunk in &self.id_chunks {
            self.read_chunk(disk, chunk.offset, chunk.len)?;
        }
        for chunk in &self.contact_chunks {
            self.contact_chunk(disk, chunk, |_| false)?;
        }
        Ok(self.events(disk)?.len() as u64)
    }

    /// The stored event with this id, if the segment holds it.
    pub fn get(&self, disk: &dyn Disk, id: &Uuid) -> Result<Option<Event>, Error> {
        if *id > self.id_last || !self.ids.may_hold(id.as_bytes()) {
            return Ok(None);
        }
        let at = self.id_chunks.partition_point(|chunk| chunk.first <= *id);
        let Some(chunk) = at.checked_sub(1).map(|at| &self.id_chunks[at]) else {
            return Ok(None);
        };
        let bytes = self.read_chunk(disk, chunk.offset, chunk.len)?;
        let entry_at = |index: usize| &bytes[index * 20..index * 20 + 20];
        let (mut low, mut high) = (0, bytes.len() / 20);
        while low < high {
            let middle = low + (high - low) / 2;
            if entry_at(middle)[..16] < id.as_bytes()[..] {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        if low == bytes.len() / 20 || entry_at(low)[..16] != id.as_bytes()[..] {
            return Ok(None);
        }
        let entry = entry_at(low);
        let block = u32_at(entry, 16) as usize;
        if block >= self.blocks.len() {
            return Err(damaged(
                &self.path,
                chunk.offset,
                "an id points past the blocks",
            ));
        }
        Ok(self
            .read_block_where(disk, block, |read| read == id)?
            .into_iter()
            .next()
            .map(|stored| stored.event))
    }

    /// The entries of a contact chunk that `keep` picks by contact: (timestamp, id,
    /// block). Every entry is checked; only those picked are built.
    fn contact_chunk(
        &self,
        disk: &dyn Disk,
        chunk: &ChunkRef<(String, i64, Uuid)>,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<(i64, Uuid, u32)>, Error> {
        let compressed = self.read_chunk(disk, chunk.offset, chunk.len)?;
        let bad = || damaged(&self.path, chunk.offset, "a contact chunk cannot be read");
        let bytes = record::decompress(&compressed).ok_or_else(bad)?;
        let mut entries = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let contact_len = bytes
                .get(at..at + 2)
                .map(|len| u16::from_le_bytes([len[0], len[1]]) as usize)
                .ok_or_else(bad)?;
            let entry = bytes
                .get(at + 2..at + 2 + contact_len + 28)
                .ok_or_else(bad)?;
            // Compared as bytes: the checksum vouches for them, and a contact id is
            // UTF-8 when written.
            if keep(&entry[..contact_len]) {
                let rest = &entry[contact_len..];
                let mut timestamp = [0; 8];
                timestamp.copy_from_slice(&rest[..8]);
                let id = Uuid::from_slice(&rest[8..24]).map_err(|_| bad())?;
                entries.push((i64::from_le_bytes(timestamp), id, u32_at(rest, 24)));
            }
            at += 2 + contact_len + 28;
        }
        Ok(entries)
    }

    /// Whether the segment may hold events of `contact_id`.
    pub fn may_hold_contact(&self, contact_id: &str) -> bool {
        self.contacts.may_hold(contact_id.as_bytes())
    }

    /// The contact's events in [`since_ms`, `until_ms`): their keys and blocks, in
    /// (timestamp, id) order.
    pub fn contact_keys(
        &self,
        disk: &dyn Disk,
        contact_id: &str,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Vec<(TimeKey, u32)>, Error> {
        if !self.may_hold_contact(contact_id) {
            return Ok(Vec::new());
        }
        let since_ms = since_ms.unwrap_or(i64::MIN);
        let until_ms = until_ms.unwrap_or(i64::MAX);
        let start = self
            .contact_chunks
            .partition_point(|chunk| {
                (chunk.first.0.as_str(), chunk.first.1) < (contact_id, since_ms)
            })
            .saturating_sub(1);
        let mut keys = Vec::new();
        for chunk in &self.contact_chunks[start..] {
            if (chunk.first.0.as_str(), chunk.first.1) >= (contact_id, until_ms) {
                break;
            }
            for (timestamp_ms, id, block) in
                self.contact_chunk(disk, chunk, |contact| contact == contact_id.as_bytes())?
            {
                if (since_ms..until_ms).contains(&timestamp_ms) {
                    if block as usize >= self.blocks.len() {
                        return Err(damaged(
                            &self.path,
                            chunk.offset,
                            "a contact entry points past the blocks",
                        ));
                    }
                    keys.push(((timestamp_ms, id), block));
                }
            }
        }
        Ok(keys)
    }

    /// At most `fetch` events matching `filter` in `order`, after `after` (exclusive,
    /// in that order), in that order.
    pub fn page(
        &self,
        disk: &dyn Disk,
        filter: &Filter,
        order: Order,
        after: Option<TimeKey>,
        fetch: usize,
    ) -> Result<Vec<Event>, Error> {
        let mut events = Vec::new();
        // A segment whose time range misses the window has nothing to read.
        if filter
            .until_ms
            .is_some_and(|until| self.timestamp_min >= until)
            || filter
                .since_ms
                .is_some_and(|since| self.timestamp_max < since)
        {
            return Ok(events);
        }
        let beyond = |key: TimeKey| match (after, order) {
            (None, _) => true,
            (Some(after), Order::Asc) => key > after,
            (Some(after), Order::Desc) => key < after,
        };
        if let Some(contact_id) = &filter.contact_id {
            let mut keys = self.contact_keys(disk, contact_id, filter.since_ms, filter.until_ms)?;
            if order == Order::Desc {
                keys.reverse();
            }
            let keys: Vec<(TimeKey, u32)> =
                keys.into_iter().filter(|(key, _)| beyond(*key)).collect();
            // The contact's events block by block, each block read once and only its
            // events of the contact built; then in the page's order.
            let mut at = 0;
            while at < keys.len() && events.len() < fetch {
                let index = keys[at].1;
                let run = keys[at..]
                    .iter()
                    .take_while(|(_, block)| *block == index)
                    .count();
                let wanted: Vec<Uuid> = keys[at..at + run].iter().map(|(key, _)| key.1).collect();
                let mut found =
                    self.read_block_where(disk, index as usize, |id| wanted.contains(id))?;
                if order == Order::Desc {
                    found.reverse();
                }
                for stored in found {
                    if events.len() < fetch && filter.matches(&stored.event) {
                        events.push(stored.event);
                    }
                }
                at += run;
            }
            return Ok(events);
        }
        let since = filter.since_ms.unwrap_or(i64::MIN);
        let until = filter.until_ms.unwrap_or(i64::MAX);
        let overlapping: Vec<usize> = (0..self.blocks.len())
            .filter(|index| {
                let block = &self.blocks[*index];
                block.last.0 >= since && block.first.0 < until
            })
            .collect();
        let ordered: Box<dyn Iterator<Item = usize>> = match order {
            Order::Asc => Box::new(overlapping.into_iter()),
            Order::Desc => Box::new(overlapping.into_iter().rev()),
        };
        for index in ordered {
            if events.len() >= fetch {
                break;
            }
            let block = &self.blocks[index];
            // The block's key nearest the end of the order: if even it is not beyond
            // the cursor, nothing in the block is.
            let nearest = match order {
                Order::Asc => block.last,
                Order::Desc => block.first,
            };
            if !beyond(nearest) {
                continue;
            }
            let stored = self.read_block(disk, index)?;
            let mut visit = |stored: Stored| {
                let key = (stored.event.timestamp_ms, stored.event.id);
                if events.len() < fetch && beyond(key) && filter.matches(&stored.event) {
                    events.push(stored.event);
                }
            };
            match order {
                Order::Asc => stored.into_iter().for_each(&mut visit),
                Order::Desc => stored.into_iter().rev().for_each(&mut visit),
            }
        }
        Ok(events)
    }
}

/// Merges `inputs` (adjacent segments, in number order) into one segment of all their
/// events, appended to `temporary` and synced: its footer. Reads one block of each input
/// at a time, and hands the writer's bytes to the disk every megabyte, so that memory
/// holds the merged indexes but not the merged events.
pub(crate) fn merge(
    disk: &dyn Disk,
    inputs: &[Segment],
    temporary: &Path,
) -> Result<Footer, Error> {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, VecDeque};
    const TAKE_BYTES: usize = 1 << 20;
    let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
        return Err(Error::Corrupt("a merge of no segments".to_owned()));
    };
    let mut replaces: Vec<u32> = inputs[..inputs.len() - 1]
        .iter()
        .map(|segment| segment.number)
        .collect();
    for input in inputs {
        replaces.extend(&input.replaces);
    }
    let events_len = inputs.iter().map(|input| input.events_len as usize).sum();
    let mut writer = SegmentWriter::new(first.seq_first, last.seq_end, replaces, events_len)?;
    match disk.remove(temporary) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_error(temporary)(error));
        }
        _ => {}
    }
    // Each input's next block to read and the events left of the one read.
    let mut cursors: Vec<(usize, VecDeque<Stored>)> = vec![(0, VecDeque::new()); inputs.len()];
    let mut heap = BinaryHeap::new();
    let refill = |index: usize,
                  cursors: &mut Vec<(usize, VecDeque<Stored>)>|
     -> Result<Option<TimeKey>, Error> {
        let (next_block, events) = &mut cursors[index];
        while events.is_empty() && *next_block < inputs[index].blocks.len() {
            events.extend(inputs[index].read_block(disk, *next_block)?);
            *next_block += 1;
        }
        Ok(events
            .front()
            .map(|stored| (stored.event.timestamp_ms, stored.event.id)))
    };
    for index in 0..inputs.len() {
        if let Some(key) = refill(index, &mut cursors)? {
            heap.push(Reverse((key, index)));
        }
    }
    while let Some(Reverse((_, index))) = heap.pop() {
        let Some(stored) = cursors[index].1.pop_front() else {
            continue;
        };
        writer.push(stored.seq, stored.event)?;
        if let Some(key) = refill(index, &mut cursors)? {
            heap.push(Reverse((key, index)));
        }
        if writer.out.len() >= TAKE_BYTES {
            let bytes = writer.take_bytes();
            disk.append(temporary, &bytes)
                .map_err(io_error(temporary))?;
        }
    }
    let (bytes, footer) = writer.finish()?;
    disk.append(temporary, &bytes)
        .map_err(io_error(temporary))?;
    disk.sync(temporary).map_err(io_error(temporary))?;
    Ok(footer)
}
