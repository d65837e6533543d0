//! Segments: the memtable's events once flushed, in an immutable file sorted by
//! (timestamp, id), with the indexes that find an id or a contact's events in it.
//!
//! ```text
//! segment = SEGMENT_MAGIC (8 bytes) dictionary (data_block* columns)* id_chunk*
//!           contact_chunk* postings* footer trailer
//! dictionary    = len u32 | zstd dictionary (len bytes, maybe none) | crc32 u32
//! data_block    = a framed block (`framed`): its events in (timestamp, id) order, of
//!                 about BLOCK_PAYLOAD_BYTES before compression, in frames compressed
//!                 with the dictionary
//! id_chunk      = zstd((id [16] | timestamp i64)*, sorted by id)            | crc32 u32
//! contact_chunk = (contact len u16, bytes | entries_len u16 | (timestamp i64 | id [16])*)*
//!                 sorted by (contact, timestamp, id), each contact's entries under
//!                 it once                                                   | crc32 u32
//! columns       = each block's minutes, types and numbers (`columns`), in groups of
//!                 COLUMNS_GROUP_BLOCKS blocks', each group after its last data block
//! postings      = the blocks holding a content path or value (`content_index`)
//! footer        = zstd(postcard(Footer) postcard(ContentIndex))
//! trailer       = footer_offset u64 | footer_len u32 | footer_crc u32 | TRAILER_MAGIC
//! ```
//!
//! The dictionary is trained on the segment's first events when it is written
//! (`DICTIONARY_SAMPLE_BYTES` of them), so that a frame of a few events compresses as
//! well as a whole block would without it.
//!
//! The footer and the dictionary are all a store keeps in memory of a segment: where
//! each block and chunk is, the first key of each, the Bloom filters of its ids and
//! contacts, and the content paths and values with where their postings are. The index entries name an event by its (timestamp, id), not by its block:
//! the block is found among the footer's first keys, so that a merge writes its indexes
//! by merging its inputs' chunks as they come, holding nothing per event. Every byte
//! read is checked against a CRC-32 before it is used: a damaged index must not hide
//! events (`docs/reliability.md`).
//!
//! Contact chunks are not compressed: a timeline reads one in each segment, and their
//! decompression was a tenth of its time; the contact written once per run of its
//! entries keeps them within 9 bytes per event of what zstd made of them.
//!
//! Earlier formats: format 3 is format 4 without columns, postings or a content index
//! (its filtered reads read every block), its id chunks not compressed. Format 2's data blocks are log blocks (`record`), one zstd frame
//! each, and no dictionary; its contact chunks are zstd frames of (contact len u16,
//! bytes | timestamp i64 | id [16])*; its id chunks are as now. It is read as it is
//! until a merge writes its events again. Format 1 (step 2) also named blocks in its index
//! entries: a store rewrites such a segment when it opens it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bloom::Bloom;
use crate::content_index::ContentIndex;
use crate::counts::Minutes;
use crate::error::Error;
use crate::record::TimeKey;

mod merge;
mod read;
mod scan;
mod write;

pub(crate) use merge::merge;
pub(crate) use write::write;

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"EVSEG\x00\x00\x04";
/// Format 3: as now, without the content index.
const SEGMENT_MAGIC_V3: &[u8; 8] = b"EVSEG\x00\x00\x03";
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
/// The blocks' columns are written in groups of this many blocks': a writer holds one
/// group's (about 10 KiB), and a count reads a group at a time.
const COLUMNS_GROUP_BLOCKS: u32 = 64;
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
    /// Written after the fields above (format 4), so that a format-3 footer, which ends
    /// before it, is read by the same code.
    #[serde(skip)]
    content: ContentIndex,
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
    content: ContentIndex,
    /// Where each block's columns are (offset, length): empty for a segment of an
    /// earlier format, which has none.
    columns: Vec<(u64, u32)>,
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
    /// Framed blocks (`framed`), with the segment's dictionary: formats 3 and 4;
    /// format 4's id chunks are compressed.
    Framed {
        dictionary: Arc<zstd::dict::DecoderDictionary<'static>>,
        id_chunks_compressed: bool,
    },
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

impl Segment {
    /// Adds the content paths of the segment's events (of type `event_type`, if given)
    /// to `tally`, from its content index. A segment of an earlier format has none.
    pub fn properties(
        &self,
        event_type: Option<&str>,
        tally: &mut eventline_core::properties::PropertiesTally,
    ) {
        self.index.content.properties(event_type, tally);
    }

    /// Adds the values of the path `keys` to `tally`, from the content index.
    pub fn property_values(
        &self,
        keys: &[String],
        tally: &mut eventline_core::properties::ValuesTally,
    ) {
        self.index.content.values(keys, tally);
    }
}
