//! Segments: the memtable's events once flushed, in an immutable file sorted by
//! (timestamp, id), with the indexes that find an id or a contact's events in it.
//!
//! ```text
//! segment = SEGMENT_MAGIC (8 bytes) dictionary data_block* id_chunk* contact_chunk*
//!           footer trailer
//! dictionary    = len u32 | zstd dictionary (len bytes, maybe none) | crc32 u32
//! data_block    = a framed block (`framed`): its events in (timestamp, id) order, of
//!                 about BLOCK_PAYLOAD_BYTES before compression, in frames compressed
//!                 with the dictionary
//! id_chunk      = (id [16] | timestamp i64)*, sorted by id                  | crc32 u32
//! contact_chunk = (contact len u16, bytes | entries_len u16 | (timestamp i64 | id [16])*)*
//!                 sorted by (contact, timestamp, id), each contact's entries under
//!                 it once                                                   | crc32 u32
//! footer        = zstd(postcard(Footer))
//! trailer       = footer_offset u64 | footer_len u32 | footer_crc u32 | TRAILER_MAGIC
//! ```
//!
//! The dictionary is trained on the segment's first events when it is written
//! (`DICTIONARY_SAMPLE_BYTES` of them), so that a frame of a few events compresses as
//! well as a whole block would without it.
//!
//! The footer and the dictionary are all a store keeps in memory of a segment: where
//! each block and chunk is, the first key of each, and the Bloom filters of its ids and
//! contacts. The index entries name an event by its (timestamp, id), not by its block:
//! the block is found among the footer's first keys, so that a merge writes its indexes
//! by merging its inputs' chunks as they come, holding nothing per event. Every byte
//! read is checked against a CRC-32 before it is used: a damaged index must not hide
//! events (`docs/reliability.md`).
//!
//! Contact chunks are not compressed: a timeline reads one in each segment, and their
//! decompression was a tenth of its time; the contact written once per run of its
//! entries keeps them within 9 bytes per event of what zstd made of them.
//!
//! Earlier formats: format 2's data blocks are log blocks (`record`), one zstd frame
//! each, and no dictionary; its contact chunks are zstd frames of (contact len u16,
//! bytes | timestamp i64 | id [16])*; its id chunks are as now. It is read as it is
//! until a merge writes its events again. Format 1 (step 2) also named blocks in its index
//! entries: a store rewrites such a segment when it opens it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eventline_core::event::Event;
use eventline_core::query::{Filter, Order};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bloom::Bloom;
use crate::counts::{Counts, Minutes};
use crate::disk::Disk;
use crate::error::Error;
use crate::framed;
use crate::record::{self, Reader, Stored, TimeKey};

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"EVSEG\x00\x00\x03";
/// Format 2: log blocks, no dictionary.
const SEGMENT_MAGIC_V2: &[u8; 8] = b"EVSEG\x00\x00\x02";
/// The first format (step 2), whose index entries named blocks: its blocks read as
/// format 2's, and the store rewrites such a segment in this format when it opens it.
const SEGMENT_MAGIC_V1: &[u8; 8] = b"EVSEG\x00\x00\x01";
const TRAILER_MAGIC: &[u8; 8] = b"EVSEGEND";
const TRAILER_LEN: usize = 8 + 4 + 4 + 8;
/// A data block holds events up to about this many bytes before compression: small
/// enough that a read of one event decompresses little, large enough to compress well.
const BLOCK_PAYLOAD_BYTES: usize = 16 << 10;
/// Entries per id or contact chunk.
const CHUNK_ENTRIES: usize = 64;
const ID_ENTRY_LEN: usize = 16 + 8;
/// Bytes a segment's writer makes before they are handed to the disk.
const TAKE_BYTES: usize = 1 << 20;
/// Segments are written once and read many times: a slower, tighter level than the
/// log's.
const ZSTD_LEVEL: i32 = 3;
/// The footer can never be longer; a damaged length must not make a read allocate more.
const FOOTER_LEN_MAX: usize = 256 << 20;
/// A segment's dictionary is at most this long: measured on the bench's events, a
/// longer one compresses no better (`docs/storage-design.md`).
const DICTIONARY_BYTES_MAX: usize = 16 << 10;
/// The dictionary is trained on the segment's first events, this many bytes of them:
/// about 25 ms of training, and within 1 % of the compression a sample four times as
/// long gives.
const DICTIONARY_SAMPLE_BYTES: usize = 256 << 10;
/// A segment whose events are fewer bytes than this has no dictionary: it would
/// take milliseconds to train and be about as long as the events it saves on.
const DICTIONARY_SAMPLE_BYTES_MIN: usize = 64 << 10;

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

/// A segment's footer. Its counts per minute (`minutes`) are read as `Minutes`, and
/// written straight from the writer's `Counts`, which serialize the same way: the
/// counts of a segment of millions of events, gathered in a list, took 20 MB.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Footer<M = Minutes> {
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
    minutes: M,
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
    /// Shared by the copies of the segment that reads and merges take: a few bytes per
    /// event, tens of megabytes for a large store.
    index: Arc<Index>,
    pub replaces: Vec<u32>,
    pub format: Format,
}

/// Where a segment's blocks and chunks are, and the filters of its ids and contacts.
struct Index {
    blocks: Vec<BlockRef>,
    /// Each block's first timestamp, in a list of its own: finding an event's block
    /// searches 8 bytes a block instead of 48, which stay in the processor's cache
    /// (a timeline looks up the block of each of its events in every segment).
    block_firsts_ms: Vec<i64>,
    id_chunks: Vec<ChunkRef<Uuid>>,
    id_last: Uuid,
    contact_chunks: ContactChunks,
    ids: Bloom,
    contacts: Bloom,
}

/// Where a segment's contact chunks are, and the contact and time each begins with: the
/// footer's list, with the contact ids in one buffer rather than a heap string each.
/// A timeline searches it in every segment, and a large store holds hundreds of
/// thousands of chunks: with a string each, an entry took 64 bytes and an allocation
/// (32 bytes here), and every step of the search followed a pointer.
struct ContactChunks {
    chunks: Vec<ContactChunk>,
    /// Every chunk's first contact id, one after the other.
    contacts: String,
}

struct ContactChunk {
    offset: u64,
    len: u32,
    first_ms: i64,
    /// Where the first contact id is in `ContactChunks::contacts`. In 32 bits: the ids
    /// came from a footer, whose encoding is at most `FOOTER_LEN_MAX` long.
    contact_start: u32,
    contact_end: u32,
}

impl ContactChunks {
    fn new(chunks: Vec<ChunkRef<(String, i64, Uuid)>>) -> ContactChunks {
        let mut contacts =
            String::with_capacity(chunks.iter().map(|chunk| chunk.first.0.len()).sum());
        // The ids come from a footer, whose encoding is capped at `FOOTER_LEN_MAX`.
        let at = |contacts: &String| {
            u32::try_from(contacts.len()).expect("a footer's contact ids fit in 4 GiB")
        };
        let chunks = chunks
            .into_iter()
            .map(|chunk| {
                let contact_start = at(&contacts);
                contacts.push_str(&chunk.first.0);
                ContactChunk {
                    offset: chunk.offset,
                    len: chunk.len,
                    first_ms: chunk.first.1,
                    contact_start,
                    contact_end: at(&contacts),
                }
            })
            .collect();
        ContactChunks { chunks, contacts }
    }

    fn len(&self) -> usize {
        self.chunks.len()
    }

    /// The chunk's first contact id and time.
    fn first(&self, chunk: &ContactChunk) -> (&str, i64) {
        let contact = self
            .contacts
            .get(chunk.contact_start as usize..chunk.contact_end as usize)
            .expect("a chunk's range was cut from `contacts` by `ContactChunks::new`");
        (contact, chunk.first_ms)
    }
}

/// How a segment's data blocks are to be read.
#[derive(Clone)]
pub(crate) enum Format {
    /// The first format: to be rewritten before it is read by its indexes.
    V1,
    /// Log blocks (`record`).
    V2,
    /// Framed blocks (`framed`), with the segment's dictionary.
    V3(Arc<zstd::dict::DecoderDictionary<'static>>),
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
/// the events come, the indexes and the footer at the end, to a file (`file`). The
/// bytes go to the file every `TAKE_BYTES`, so that a segment of millions of events
/// is written holding a megabyte of it, indexes included.
struct SegmentWriter<'a> {
    /// For the data blocks' frames, with the dictionary: there once it is trained, on
    /// the first events (held in `pending` until then).
    frames: Option<(zstd::bulk::Compressor<'static>, Vec<u8>)>,
    output: Output<'a>,
    /// The events of the block being filled, and their bytes, roughly.
    pending: Vec<(u64, Event)>,
    pending_bytes: usize,
    blocks: Vec<BlockRef>,
    events_len: usize,
    /// The index entries, if the writer collects them from the events (a merge takes
    /// them from its inputs' chunks instead).
    by_id: Vec<(Uuid, i64)>,
    by_contact: Vec<(String, i64, Uuid)>,
    collects_indexes: bool,
    counts: Counts,
    seq_first: u64,
    seq_end: u64,
    replaces: Vec<u32>,
}

impl<'a> SegmentWriter<'a> {
    /// A segment of the positions [`seq_first`, `seq_end`) that takes the place of the
    /// segments numbered `replaces` (a merge), if any of them is still there. With
    /// `collected_len`, the writer collects the index entries of about that many events
    /// (sized at once: a vector that doubles as it grows holds up to twice what it
    /// needs); without, they are given to `finish_with`.
    fn new(
        file: Written<'a>,
        seq_first: u64,
        seq_end: u64,
        replaces: Vec<u32>,
        collected_len: Option<usize>,
    ) -> Result<SegmentWriter<'a>, Error> {
        let capacity = collected_len.unwrap_or(0);
        Ok(SegmentWriter {
            frames: None,
            output: Output {
                file,
                bytes: SEGMENT_MAGIC.to_vec(),
                taken: 0,
                failed: None,
            },
            pending: Vec::new(),
            pending_bytes: 0,
            blocks: Vec::new(),
            events_len: 0,
            by_id: Vec::with_capacity(capacity),
            by_contact: Vec::with_capacity(capacity),
            collects_indexes: collected_len.is_some(),
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
        match self.frames {
            None if self.pending_bytes >= DICTIONARY_SAMPLE_BYTES => self.train(),
            Some(_) if self.pending_bytes >= BLOCK_PAYLOAD_BYTES => self.cut_block(),
            _ => Ok(()),
        }
    }

    /// Trains the dictionary on the events held so far (one sample each), writes it,
    /// and puts those events in blocks. Too few events to train on
    /// (`DICTIONARY_SAMPLE_BYTES_MIN`) leave the dictionary empty: the frames are then
    /// compressed on their own.
    fn train(&mut self) -> Result<(), Error> {
        let held = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let mut samples = Vec::new();
        let mut sample_lens = Vec::with_capacity(held.len());
        for (_, event) in &held {
            let before = samples.len();
            record::encode_event(&mut samples, 0, event);
            sample_lens.push(samples.len() - before);
        }
        let dictionary = if samples.len() >= DICTIONARY_SAMPLE_BYTES_MIN {
            zstd::dict::from_continuous(&samples, &sample_lens, DICTIONARY_BYTES_MAX)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let zstd_error = |error: std::io::Error| Error::Corrupt(error.to_string());
        let mut compressor =
            zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, &dictionary).map_err(zstd_error)?;
        // The reader knows the dictionary: its id in every frame would be 4 bytes wasted.
        compressor
            .set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))
            .map_err(zstd_error)?;
        let bytes = &mut self.output.bytes;
        bytes.extend_from_slice(&(dictionary.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&dictionary);
        bytes.extend_from_slice(&crc32fast::hash(&dictionary).to_le_bytes());
        self.frames = Some((compressor, dictionary));
        for (seq, event) in held {
            self.push(seq, event)?;
        }
        Ok(())
    }

    fn cut_block(&mut self) -> Result<(), Error> {
        if self.frames.is_none() {
            self.train()?;
        }
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
        let offset = self.output.position();
        let Some((compressor, _)) = &mut self.frames else {
            return Err(Error::Corrupt(
                "a segment block before its dictionary".to_owned(),
            ));
        };
        framed::encode_block(
            &mut self.output.bytes,
            seq_min,
            seq_len,
            &self.pending,
            compressor,
        )
        .map_err(|error| Error::Corrupt(error.to_string()))?;
        let len = (self.output.position() - offset) as u32;
        self.blocks.push(BlockRef {
            offset,
            len,
            first,
            last,
        });
        self.events_len += self.pending.len();
        for (_, event) in self.pending.drain(..) {
            self.counts.add(&event, 1);
            if self.collects_indexes {
                self.by_id.push((event.id, event.timestamp_ms));
                if let Some(contact_id) = event.contact_id {
                    self.by_contact
                        .push((contact_id, event.timestamp_ms, event.id));
                }
            }
        }
        self.pending_bytes = 0;
        self.output.spill()
    }

    fn push_chunk(&mut self, payload: &[u8]) -> Result<(u64, u32), Error> {
        let offset = self.output.position();
        self.output.bytes.extend_from_slice(payload);
        self.output
            .bytes
            .extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        self.output.spill()?;
        Ok((offset, (payload.len() + 4) as u32))
    }

    /// Writes the collected indexes and the footer: the file's last bytes (after those
    /// taken), and the footer and format to read the segment by.
    fn finish(mut self) -> Result<(Footer<Counts>, Format), Error> {
        self.cut_block()?;
        let mut by_id = std::mem::take(&mut self.by_id).into_iter();
        by_id.as_mut_slice().sort_unstable();
        let mut by_contact = std::mem::take(&mut self.by_contact).into_iter();
        by_contact.as_mut_slice().sort_unstable();
        self.finish_with(|| Ok(by_id.next()), || Ok(by_contact.next()))
    }

    /// Writes the indexes from their entries, each once, in order (`next_id` by id,
    /// `next_contact` by (contact, timestamp, id)), and the footer: the file's last
    /// bytes (after those taken), and the footer and format to read the segment by.
    fn finish_with(
        mut self,
        mut next_id: impl FnMut() -> Result<Option<(Uuid, i64)>, Error>,
        mut next_contact: impl FnMut() -> Result<Option<(String, i64, Uuid)>, Error>,
    ) -> Result<(Footer<Counts>, Format), Error> {
        self.cut_block()?;
        let dictionary = match &self.frames {
            Some((_, dictionary)) => zstd::dict::DecoderDictionary::copy(dictionary),
            None => {
                return Err(Error::Corrupt(
                    "a segment without its dictionary".to_owned(),
                ));
            }
        };
        let mut ids = Bloom::with_keys(self.events_len);
        let mut id_chunks = Vec::with_capacity(self.events_len.div_ceil(CHUNK_ENTRIES));
        let mut ids_len = 0;
        let mut id_last: Option<Uuid> = None;
        let mut payload = Vec::with_capacity(CHUNK_ENTRIES * ID_ENTRY_LEN);
        let mut first = Uuid::nil();
        loop {
            let entry = next_id()?;
            if let Some((id, timestamp_ms)) = entry {
                if id_last.is_some_and(|last| last >= id) {
                    return Err(Error::Corrupt(format!(
                        "a segment's ids are not in order at {id}"
                    )));
                }
                if payload.is_empty() {
                    first = id;
                }
                ids.insert(id.as_bytes());
                payload.extend_from_slice(id.as_bytes());
                payload.extend_from_slice(&timestamp_ms.to_le_bytes());
                id_last = Some(id);
                ids_len += 1;
            }
            if !payload.is_empty()
                && (entry.is_none() || payload.len() == CHUNK_ENTRIES * ID_ENTRY_LEN)
            {
                let (offset, len) = self.push_chunk(&payload)?;
                id_chunks.push(ChunkRef { first, offset, len });
                payload.clear();
            }
            if entry.is_none() {
                break;
            }
        }
        if ids_len != self.events_len {
            return Err(Error::Corrupt(format!(
                "a segment of {} events would index {ids_len} ids",
                self.events_len
            )));
        }
        let mut contact_hashes = Vec::new();
        let mut contact_chunks = Vec::new();
        let mut chunk: Vec<(String, i64, Uuid)> = Vec::with_capacity(CHUNK_ENTRIES);
        loop {
            let entry = next_contact()?;
            let done = entry.is_none();
            if let Some(entry) = entry {
                if chunk.last().is_none_or(|last| last.0 != entry.0) {
                    let hash = Bloom::hash(entry.0.as_bytes());
                    if contact_hashes.last() != Some(&hash) {
                        contact_hashes.push(hash);
                    }
                }
                chunk.push(entry);
            }
            if !chunk.is_empty() && (chunk.len() == CHUNK_ENTRIES || done) {
                let mut payload = Vec::new();
                for run in chunk.chunk_by(|one, other| one.0 == other.0) {
                    let contact = &run[0].0;
                    payload.extend_from_slice(&(contact.len() as u16).to_le_bytes());
                    payload.extend_from_slice(contact.as_bytes());
                    payload.extend_from_slice(&(run.len() as u16).to_le_bytes());
                    for (_, timestamp_ms, id) in run {
                        payload.extend_from_slice(&timestamp_ms.to_le_bytes());
                        payload.extend_from_slice(id.as_bytes());
                    }
                }
                let (offset, len) = self.push_chunk(&payload)?;
                let (contact, timestamp_ms, id) = chunk.swap_remove(0);
                chunk.clear();
                contact_chunks.push(ChunkRef {
                    first: (contact, timestamp_ms, id),
                    offset,
                    len,
                });
            }
            if done {
                break;
            }
        }
        contact_hashes.sort_unstable();
        contact_hashes.dedup();
        let contacts = Bloom::from_hashes(&contact_hashes);
        let footer = Footer {
            seq_first: self.seq_first,
            seq_end: self.seq_end,
            events_len: self.events_len as u64,
            timestamp_min: self.blocks.first().map_or(0, |block| block.first.0),
            timestamp_max: self.blocks.last().map_or(0, |block| block.last.0),
            blocks: std::mem::take(&mut self.blocks),
            id_chunks,
            id_last: id_last.unwrap_or(Uuid::nil()),
            contact_chunks,
            ids,
            contacts,
            minutes: std::mem::take(&mut self.counts),
            replaces: std::mem::take(&mut self.replaces),
        };
        let footer_offset = self.output.position();
        let (footer_len, footer_crc) = self.output.append_footer(&footer)?;
        let mut trailer = Vec::with_capacity(TRAILER_LEN);
        trailer.extend_from_slice(&footer_offset.to_le_bytes());
        trailer.extend_from_slice(&footer_len.to_le_bytes());
        trailer.extend_from_slice(&footer_crc.to_le_bytes());
        trailer.extend_from_slice(TRAILER_MAGIC);
        self.output.bytes.extend_from_slice(&trailer);
        self.output.finish()?;
        Ok((footer, Format::V3(Arc::new(dictionary))))
    }
}

/// A segment's bytes on their way to its file: handed to the disk `TAKE_BYTES` at a
/// time.
struct Output<'a> {
    file: Written<'a>,
    /// Made and not yet handed over.
    bytes: Vec<u8>,
    /// How many were handed over before them.
    taken: u64,
    /// The disk's error, when a write through `io::Write` failed: the serializer that
    /// wrote keeps only its own.
    failed: Option<std::io::Error>,
}

impl Output<'_> {
    /// The offset in the file of the next byte made.
    fn position(&self) -> u64 {
        self.taken + self.bytes.len() as u64
    }

    /// Hands the bytes made to the file once there are `TAKE_BYTES` of them.
    fn spill(&mut self) -> Result<(), Error> {
        self.hand_over(TAKE_BYTES).map_err(io_error(self.file.path))
    }

    /// Hands the bytes made to the file if there are at least `at_least` of them.
    fn hand_over(&mut self, at_least: usize) -> std::io::Result<()> {
        if self.bytes.len() >= at_least {
            self.file.disk.append(self.file.path, &self.bytes)?;
            self.taken += self.bytes.len() as u64;
            self.bytes.clear();
        }
        Ok(())
    }

    /// Writes the footer compressed, as it is serialized, so that neither its encoding
    /// nor its compressed form is ever whole in memory (they took 17 and 10 MB for a
    /// segment of 3,000,000 events): its length and checksum.
    fn append_footer<M: Serialize>(&mut self, footer: &Footer<M>) -> Result<(u32, u32), Error> {
        let corrupt = |error: &dyn std::fmt::Display| Error::Corrupt(error.to_string());
        // The reader takes the footer's length from its frame: pledged before it is written.
        let encoded_len =
            postcard::serialize_with_flavor(footer, postcard::ser_flavors::Size::default())
                .map_err(|error| corrupt(&error))?;
        let mut checksummed = Checksummed {
            output: &mut *self,
            hasher: crc32fast::Hasher::new(),
            len: 0,
        };
        let written = (|| {
            let mut encoder = zstd::stream::write::Encoder::new(&mut checksummed, ZSTD_LEVEL)?;
            encoder.set_pledged_src_size(Some(encoded_len as u64))?;
            // postcard writes a field at a time: a zstd stream is fed in larger pieces.
            let buffered = std::io::BufWriter::with_capacity(64 << 10, encoder);
            let buffered = postcard::to_io(footer, buffered).map_err(std::io::Error::other)?;
            buffered
                .into_inner()
                .map_err(|error| error.into_error())?
                .finish()?;
            std::io::Result::Ok(())
        })();
        let (hasher, len) = (checksummed.hasher, checksummed.len);
        if let Err(error) = written {
            return Err(match self.failed.take() {
                Some(failed) => io_error(self.file.path)(failed),
                None => corrupt(&error),
            });
        }
        match u32::try_from(len) {
            Ok(len) if len as usize <= FOOTER_LEN_MAX => Ok((len, hasher.finalize())),
            _ => Err(Error::Corrupt(format!(
                "a segment's footer would take {len} bytes"
            ))),
        }
    }

    /// Hands the last bytes to the file and syncs it.
    fn finish(mut self) -> Result<(), Error> {
        self.hand_over(0).map_err(io_error(self.file.path))?;
        self.file.sync()
    }
}

/// Bytes on their way to an `Output`, counted and checksummed.
struct Checksummed<'o, 'a> {
    output: &'o mut Output<'a>,
    hasher: crc32fast::Hasher,
    len: u64,
}

impl std::io::Write for Checksummed<'_, '_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let output = &mut *self.output;
        output.bytes.extend_from_slice(bytes);
        if let Err(error) = output.hand_over(TAKE_BYTES) {
            let kind = error.kind();
            output.failed = Some(error);
            return Err(kind.into());
        }
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes a segment holding `events` (each with its position, in (timestamp, id) order,
/// each once), which took the positions [`seq_first`, `seq_end`) and takes the place of
/// the segments numbered `replaces`, to `temporary`, synced: its footer and format.
pub(crate) fn write<'a>(
    disk: &dyn Disk,
    temporary: &Path,
    events: impl ExactSizeIterator<Item = (u64, &'a Event)>,
    seq_first: u64,
    seq_end: u64,
    replaces: Vec<u32>,
) -> Result<(Footer<Counts>, Format), Error> {
    let file = Written::begin(disk, temporary)?;
    let collected_len = Some(events.len());
    let mut writer = SegmentWriter::new(file, seq_first, seq_end, replaces, collected_len)?;
    for (seq, event) in events {
        // One block's events at a time are copies: the block is encoded from them.
        writer.push(seq, event.clone())?;
    }
    writer.finish()
}

/// The file a segment is written to before it is renamed into place.
struct Written<'a> {
    disk: &'a dyn Disk,
    path: &'a Path,
}

impl<'a> Written<'a> {
    fn begin(disk: &'a dyn Disk, path: &'a Path) -> Result<Written<'a>, Error> {
        crate::disk::remove_if_present(disk, path).map_err(io_error(path))?;
        Ok(Written { disk, path })
    }

    fn sync(&self) -> Result<(), Error> {
        self.disk.sync(self.path).map_err(io_error(self.path))
    }
}

/// An id chunk's entry: (id, timestamp).
fn id_entry(entry: &[u8; ID_ENTRY_LEN]) -> (Uuid, i64) {
    let (id, timestamp) = entry.split_at(16);
    let mut id_bytes = [0; 16];
    id_bytes.copy_from_slice(id);
    let mut timestamp_bytes = [0; 8];
    timestamp_bytes.copy_from_slice(timestamp);
    (
        Uuid::from_bytes(id_bytes),
        i64::from_le_bytes(timestamp_bytes),
    )
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// The footer a segment's last bytes point to, given a read of `len` bytes at `offset`,
/// and the format's number.
fn read_footer(
    path: &Path,
    file_len: u64,
    read_at: impl Fn(u64, usize) -> Result<Vec<u8>, Error>,
) -> Result<(Footer, u8), Error> {
    if file_len < (SEGMENT_MAGIC.len() + TRAILER_LEN) as u64 {
        return Err(damaged(path, 0, "too short for a segment"));
    }
    let magic = read_at(0, SEGMENT_MAGIC.len())?;
    let version = match magic.as_slice() {
        magic if magic == SEGMENT_MAGIC => 3,
        magic if magic == SEGMENT_MAGIC_V2 => 2,
        magic if magic == SEGMENT_MAGIC_V1 => 1,
        _ => return Err(damaged(path, 0, "not an eventline segment")),
    };
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
    // The frame says its length: a buffer of `FOOTER_LEN_MAX` for each footer would be
    // allocated (if not touched) for every segment a store opens.
    let encoded_len = match zstd::zstd_safe::get_frame_content_size(&compressed) {
        Ok(Some(len)) if len <= FOOTER_LEN_MAX as u64 => len as usize,
        _ => {
            return Err(damaged(
                path,
                footer_offset,
                "the footer's length is missing or out of range",
            ));
        }
    };
    let encoded = zstd::bulk::decompress(&compressed, encoded_len)
        .map_err(|_| damaged(path, footer_offset, "the footer cannot be decompressed"))?;
    let footer = postcard::from_bytes(&encoded)
        .map_err(|_| damaged(path, footer_offset, "the footer cannot be read"))?;
    Ok((footer, version))
}

/// A format-3 segment's dictionary, which follows its magic.
fn read_dictionary(
    path: &Path,
    read_at: impl Fn(u64, usize) -> Result<Vec<u8>, Error>,
) -> Result<zstd::dict::DecoderDictionary<'static>, Error> {
    let at = SEGMENT_MAGIC.len() as u64;
    let len = u32_at(&read_at(at, 4)?, 0) as usize;
    if len > DICTIONARY_BYTES_MAX {
        return Err(damaged(path, at, "the dictionary's length is out of range"));
    }
    let mut bytes = read_at(at + 4, len + 4)?;
    let crc = u32_at(&bytes, len);
    bytes.truncate(len);
    if crc32fast::hash(&bytes) != crc {
        return Err(damaged(
            path,
            at,
            "the dictionary does not match its checksum",
        ));
    }
    Ok(zstd::dict::DecoderDictionary::copy(&bytes))
}

impl Segment {
    /// The segment a footer describes, and the footer's counts.
    pub fn from_footer<M>(
        number: u32,
        path: PathBuf,
        generation: u64,
        footer: Footer<M>,
        format: Format,
    ) -> (Segment, M) {
        let Footer {
            mut blocks,
            mut id_chunks,
            contact_chunks,
            ..
        } = footer;
        // A writer's lists grew by doubling: what they do not use would be held for as
        // long as the segment is.
        blocks.shrink_to_fit();
        id_chunks.shrink_to_fit();
        let contact_chunks = ContactChunks::new(contact_chunks);
        let block_firsts_ms = blocks.iter().map(|block| block.first.0).collect();
        let segment = Segment {
            number,
            path,
            generation,
            seq_first: footer.seq_first,
            seq_end: footer.seq_end,
            events_len: footer.events_len,
            timestamp_min: footer.timestamp_min,
            timestamp_max: footer.timestamp_max,
            index: Arc::new(Index {
                blocks,
                block_firsts_ms,
                id_chunks,
                id_last: footer.id_last,
                contact_chunks,
                ids: footer.ids,
                contacts: footer.contacts,
            }),
            replaces: footer.replaces,
            format,
        };
        (segment, footer.minutes)
    }

    pub fn open(
        disk: &dyn Disk,
        number: u32,
        path: PathBuf,
        generation: u64,
    ) -> Result<(Segment, Minutes), Error> {
        let file_len = disk.len(&path).map_err(io_error(&path))?;
        let read_at = |offset, len| disk.read_at(&path, offset, len).map_err(io_error(&path));
        let (footer, version) = read_footer(&path, file_len, read_at)?;
        let format = match version {
            1 => Format::V1,
            2 => Format::V2,
            _ => Format::V3(Arc::new(read_dictionary(&path, read_at)?)),
        };
        Ok(Segment::from_footer(
            number, path, generation, footer, format,
        ))
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
        self.read_block_where(disk, index, None)
    }

    /// The events of data block `index` whose keys `wanted` holds, or all of them
    /// without `wanted`, in (timestamp, id) order.
    fn read_block_where(
        &self,
        disk: &dyn Disk,
        index: usize,
        wanted: Option<&[TimeKey]>,
    ) -> Result<Vec<Stored>, Error> {
        let block = &self.index.blocks[index];
        let bytes = disk
            .read_at(&self.path, block.offset, block.len as usize)
            .map_err(io_error(&self.path))?;
        let read = match &self.format {
            Format::V3(dictionary) => framed::decode_block(&bytes, dictionary, wanted),
            Format::V1 | Format::V2 => {
                let keep =
                    |id: &Uuid| wanted.is_none_or(|keys| keys.iter().any(|key| key.1 == *id));
                match record::decode_block_where(&bytes, keep) {
                    Ok((read, len)) if len == bytes.len() => Ok(read.events),
                    Ok(_) => Err(record::BadBlock::Damaged(
                        "a block's length differs from the index's",
                    )),
                    Err(bad) => Err(bad),
                }
            }
        };
        read.map_err(|bad| damaged(&self.path, block.offset, bad.detail()))
    }

    /// Every event, in (timestamp, id) order.
    pub fn events(&self, disk: &dyn Disk) -> Result<Vec<Stored>, Error> {
        let mut events = Vec::with_capacity(self.events_len as usize);
        for index in 0..self.index.blocks.len() {
            events.extend(self.read_block(disk, index)?);
        }
        Ok(events)
    }

    /// Reads every chunk as well as every block: what `eventline check` runs. How many
    /// events the blocks hold.
    pub fn verify(&self, disk: &dyn Disk) -> Result<u64, Error> {
        let mut ids_len = 0;
        for index in 0..self.index.id_chunks.len() {
            for (id, timestamp_ms) in self.id_chunk(disk, index)? {
                if self.block_of((timestamp_ms, id)).is_none() {
                    let offset = self.index.id_chunks[index].offset;
                    return Err(damaged(&self.path, offset, "an id's time is in no block"));
                }
                ids_len += 1;
            }
        }
        for index in 0..self.index.contact_chunks.len() {
            self.contact_chunk(disk, index)?;
        }
        let events_len = self.events(disk)?.len() as u64;
        if ids_len != events_len {
            return Err(damaged(
                &self.path,
                0,
                format!("the id index holds {ids_len} ids for {events_len} events"),
            ));
        }
        Ok(events_len)
    }

    /// The block that holds the event of this key, if any block's range holds it.
    fn block_of(&self, key: TimeKey) -> Option<usize> {
        let Index {
            blocks,
            block_firsts_ms,
            ..
        } = self.index.as_ref();
        // The blocks that begin before the key's millisecond, then those that begin in
        // it (rarely more than one), compared by their whole first key.
        let before = block_firsts_ms.partition_point(|first_ms| *first_ms < key.0);
        let within = block_firsts_ms[before..]
            .iter()
            .take_while(|first_ms| **first_ms == key.0)
            .count();
        let at =
            before + blocks[before..before + within].partition_point(|block| block.first <= key);
        at.checked_sub(1).filter(|at| key <= blocks[*at].last)
    }

    /// The stored event with this id, if the segment holds it.
    pub fn get(&self, disk: &dyn Disk, id: &Uuid) -> Result<Option<Event>, Error> {
        if *id > self.index.id_last || !self.index.ids.may_hold(id.as_bytes()) {
            return Ok(None);
        }
        let at = self
            .index
            .id_chunks
            .partition_point(|chunk| chunk.first <= *id);
        let Some(chunk) = at.checked_sub(1).map(|at| &self.index.id_chunks[at]) else {
            return Ok(None);
        };
        let bytes = self.read_chunk(disk, chunk.offset, chunk.len)?;
        let entries = self.id_entries(&bytes, chunk.offset)?;
        let Ok(found) = entries.binary_search_by(|entry| entry[..16].cmp(id.as_bytes())) else {
            return Ok(None);
        };
        let (_, timestamp_ms) = id_entry(&entries[found]);
        let block = self
            .block_of((timestamp_ms, *id))
            .ok_or_else(|| damaged(&self.path, chunk.offset, "an id's time is in no block"))?;
        Ok(self
            .read_block_where(disk, block, Some(&[(timestamp_ms, *id)]))?
            .into_iter()
            .next()
            .map(|stored| stored.event))
    }

    /// The entries of id chunk `index`, in id order.
    fn id_chunk(&self, disk: &dyn Disk, index: usize) -> Result<Vec<(Uuid, i64)>, Error> {
        let chunk = &self.index.id_chunks[index];
        let bytes = self.read_chunk(disk, chunk.offset, chunk.len)?;
        let entries = self.id_entries(&bytes, chunk.offset)?;
        Ok(entries.iter().map(id_entry).collect())
    }

    /// An id chunk's bytes (read at `offset`) as its entries.
    fn id_entries<'b>(
        &self,
        bytes: &'b [u8],
        offset: u64,
    ) -> Result<&'b [[u8; ID_ENTRY_LEN]], Error> {
        match bytes.as_chunks() {
            (entries, []) => Ok(entries),
            _ => Err(damaged(&self.path, offset, "an id chunk is cut short")),
        }
    }

    /// Visits each entry of a contact chunk: (contact, timestamp, id). Every entry is
    /// checked; the contact is given as bytes, so that a reader builds only the
    /// entries it wants.
    fn visit_contact_chunk(
        &self,
        disk: &dyn Disk,
        chunk: &ContactChunk,
        mut visit: impl FnMut(&[u8], i64, Uuid),
    ) -> Result<(), Error> {
        let bytes = self.read_chunk(disk, chunk.offset, chunk.len)?;
        let bad = || damaged(&self.path, chunk.offset, "a contact chunk cannot be read");
        // Given as bytes: the checksum vouches for them, and a contact id is UTF-8 when
        // written.
        let mut entry = |contact: &[u8], fields: &mut Reader<'_>| -> Result<(), Error> {
            let timestamp_ms = fields.i64().ok_or_else(bad)?;
            let id = Uuid::from_bytes(fields.array().ok_or_else(bad)?);
            visit(contact, timestamp_ms, id);
            Ok(())
        };
        if let Format::V3(_) = self.format {
            let mut fields = Reader::new(&bytes);
            while !fields.is_empty() {
                let contact_len = u16::from_le_bytes(fields.array().ok_or_else(bad)?);
                let contact = fields.take(contact_len as usize).ok_or_else(bad)?;
                let entries_len = u16::from_le_bytes(fields.array().ok_or_else(bad)?);
                for _ in 0..entries_len {
                    entry(contact, &mut fields)?;
                }
            }
            return Ok(());
        }
        let bytes = record::decompress(&bytes).ok_or_else(bad)?;
        let mut fields = Reader::new(&bytes);
        while !fields.is_empty() {
            let contact_len = u16::from_le_bytes(fields.array().ok_or_else(bad)?);
            let contact = fields.take(contact_len as usize).ok_or_else(bad)?;
            entry(contact, &mut fields)?;
        }
        Ok(())
    }

    /// The entries of contact chunk `index`, in (contact, timestamp, id) order.
    fn contact_chunk(
        &self,
        disk: &dyn Disk,
        index: usize,
    ) -> Result<Vec<(String, i64, Uuid)>, Error> {
        let chunk = &self.index.contact_chunks.chunks[index];
        let mut entries = Vec::with_capacity(CHUNK_ENTRIES);
        let mut utf8 = true;
        self.visit_contact_chunk(
            disk,
            chunk,
            |contact, timestamp_ms, id| match std::str::from_utf8(contact) {
                Ok(contact) => entries.push((contact.to_owned(), timestamp_ms, id)),
                Err(_) => utf8 = false,
            },
        )?;
        if !utf8 {
            return Err(damaged(
                &self.path,
                chunk.offset,
                "a contact chunk holds a contact that is not UTF-8",
            ));
        }
        Ok(entries)
    }

    /// Whether the segment may hold events of `contact_id`.
    pub fn may_hold_contact(&self, contact_id: &str) -> bool {
        self.index.contacts.may_hold(contact_id.as_bytes())
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
        let contact_chunks = &self.index.contact_chunks;
        let start = contact_chunks
            .chunks
            .partition_point(|chunk| contact_chunks.first(chunk) < (contact_id, since_ms))
            .saturating_sub(1);
        let mut keys = Vec::new();
        for chunk in &contact_chunks.chunks[start..] {
            if contact_chunks.first(chunk) >= (contact_id, until_ms) {
                break;
            }
            let mut outside = false;
            self.visit_contact_chunk(disk, chunk, |contact, timestamp_ms, id| {
                if contact == contact_id.as_bytes() && (since_ms..until_ms).contains(&timestamp_ms)
                {
                    match self.block_of((timestamp_ms, id)) {
                        Some(block) => keys.push(((timestamp_ms, id), block as u32)),
                        None => outside = true,
                    }
                }
            })?;
            if outside {
                return Err(damaged(
                    &self.path,
                    chunk.offset,
                    "a contact entry's time is in no block",
                ));
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
                let wanted: Vec<TimeKey> = keys[at..at + run].iter().map(|(key, _)| *key).collect();
                let mut found = self.read_block_where(disk, index as usize, Some(&wanted))?;
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
        let overlapping: Vec<usize> = (0..self.index.blocks.len())
            .filter(|index| {
                let block = &self.index.blocks[*index];
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
            let block = &self.index.blocks[index];
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
/// events, written to `temporary` and synced: its footer and format. Reads one block and one
/// chunk of each input at a time, and hands the writer's bytes to the disk every
/// megabyte, so that memory holds neither the merged events nor their indexes.
pub(crate) fn merge(
    disk: &dyn Disk,
    inputs: &[Segment],
    temporary: &Path,
) -> Result<(Footer<Counts>, Format), Error> {
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
    let file = Written::begin(disk, temporary)?;
    let mut writer = SegmentWriter::new(file, first.seq_first, last.seq_end, replaces, None)?;
    let mut events = Merged::new(
        inputs
            .iter()
            .map(|input| input.index.blocks.len())
            .collect(),
        |input, block| {
            Ok(inputs[input]
                .read_block(disk, block)?
                .into_iter()
                .map(|stored| ((stored.event.timestamp_ms, stored.event.id), stored))
                .collect())
        },
    )?;
    while let Some((_, stored)) = events.next()? {
        writer.push(stored.seq, stored.event)?;
    }
    let ids = merged_entries(
        inputs,
        |input| input.index.id_chunks.len(),
        |input, chunk| input.id_chunk(disk, chunk),
    )?;
    let contacts = merged_entries(
        inputs,
        |input| input.index.contact_chunks.len(),
        |input, chunk| input.contact_chunk(disk, chunk),
    )?;
    writer.finish_with(ids, contacts)
}

/// The index entries of `inputs`, in order, one at a time: each input's chunks
/// (`chunks_len` of them) loaded one at a time by `load`.
fn merged_entries<'s, K: Ord + Clone + 's>(
    inputs: &'s [Segment],
    chunks_len: impl Fn(&Segment) -> usize,
    load: impl Fn(&Segment, usize) -> Result<Vec<K>, Error> + 's,
) -> Result<impl FnMut() -> Result<Option<K>, Error> + 's, Error> {
    let mut merged = Merged::new(
        inputs.iter().map(chunks_len).collect(),
        move |input, chunk| {
            Ok(load(&inputs[input], chunk)?
                .into_iter()
                .map(|entry| (entry, ()))
                .collect())
        },
    )?;
    Ok(move || Ok(merged.next()?.map(|(entry, ())| entry)))
}

/// A k-way merge of sorted runs read a part at a time: each input's parts (blocks or
/// chunks) in order, each part's items in key order, every key of a part before every
/// key of the next.
struct Merged<K, V, F> {
    load: F,
    /// Each input's parts, and the next to load.
    parts: Vec<(usize, usize)>,
    /// Each input's items loaded and not yet given.
    loaded: Vec<std::collections::VecDeque<(K, V)>>,
    /// The first key left of each input, with the input.
    heads: std::collections::BinaryHeap<std::cmp::Reverse<(K, usize)>>,
}

impl<K: Ord + Clone, V, F> Merged<K, V, F>
where
    F: FnMut(usize, usize) -> Result<Vec<(K, V)>, Error>,
{
    fn new(parts_len: Vec<usize>, load: F) -> Result<Merged<K, V, F>, Error> {
        let inputs_len = parts_len.len();
        let mut merged = Merged {
            load,
            parts: parts_len.into_iter().map(|len| (len, 0)).collect(),
            loaded: (0..inputs_len).map(|_| Default::default()).collect(),
            heads: std::collections::BinaryHeap::with_capacity(inputs_len),
        };
        for input in 0..inputs_len {
            merged.refill(input)?;
        }
        Ok(merged)
    }

    /// Loads input `input`'s next part if none of its items are left, and puts its
    /// first key among the heads.
    fn refill(&mut self, input: usize) -> Result<(), Error> {
        let (parts_len, next) = &mut self.parts[input];
        while self.loaded[input].is_empty() && *next < *parts_len {
            let part = *next;
            *next += 1;
            self.loaded[input].extend((self.load)(input, part)?);
        }
        if let Some((key, _)) = self.loaded[input].front() {
            self.heads.push(std::cmp::Reverse((key.clone(), input)));
        }
        Ok(())
    }

    fn next(&mut self) -> Result<Option<(K, V)>, Error> {
        let Some(std::cmp::Reverse((_, input))) = self.heads.pop() else {
            return Ok(None);
        };
        let item = self.loaded[input].pop_front();
        self.refill(input)?;
        Ok(item)
    }
}
