//! The log's bytes after a file's header (`header`): commit blocks, each holding the
//! events of one group commit. Pure functions.
//!
//! ```text
//! block  = magic u32 | payload_len u32 | seq_first u64 | seq_len u32
//!          | payload_crc u32 | header_crc u32 | payload
//! magic  = BLOCK_MAGIC (the payload as is) or COMPRESSED_BLOCK_MAGIC (one zstd frame
//!          that holds it, with its length)
//! payload = event*            (seq_len events, seq_first, seq_first + 1, …)
//! event  = seq_offset u32 | id [16] | timestamp_ms i64 | received_at_ms i64 | client_timestamp_ms flag u8, i64
//!        | scope u8 | event_type len u16, bytes | contact_id flag u8, len u16, bytes
//!        | content len u32, bytes
//! ```
//!
//! Numbers are little-endian. `payload_crc` is the CRC-32 of the payload as written
//! (compressed or not: damage is found before anything is decompressed), `header_crc`
//! that of the header's other fields: with the header checked on its own, a block that
//! the file ends inside of is known to be a write cut short, not a damaged length. A block keeps its `seq_first` and `seq_len` even when an erasure removes
//! events from it, so that the highest position ever given is never given again.

use std::cell::RefCell;

use eventline_core::event::{Event, Scope};
use serde_json::value::RawValue;
use uuid::Uuid;

const BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"EVLB");
const COMPRESSED_BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"EVLZ");
/// Payloads shorter than this are written as they are: a lone event gains little from
/// compression.
const COMPRESS_FROM_BYTES: usize = 1_024;
/// zstd's level for log blocks: the fastest, since the writer compresses while posts
/// wait for their commit.
pub(crate) const ZSTD_LEVEL: i32 = 1;
pub(crate) const BLOCK_HEADER_LEN: usize = 4 + 4 + 8 + 4 + 4 + 4;
/// No group commit writes more: the ingest's commits are bounded far below it, and a
/// damaged length field must not make recovery read gigabytes.
pub(crate) const BLOCK_PAYLOAD_LEN_MAX: usize = 256 << 20;

/// (timestamp, id): the page order.
pub(crate) type TimeKey = (i64, Uuid);

/// One stored event and its position in commit order.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub seq: u64,
    pub event: Event,
}

/// A commit block as read back.
#[derive(Debug)]
pub(crate) struct Block {
    pub seq_first: u64,
    pub seq_len: u32,
    /// Events still in the block; fewer than `seq_len` after an erasure or retention.
    pub events: Vec<Stored>,
}

impl Block {
    /// The position after this block's last.
    pub fn seq_end(&self) -> u64 {
        self.seq_first + u64::from(self.seq_len)
    }
}

/// Appends one block holding `events` to `out`. `seq_len` may exceed the events' count
/// (a rewritten block keeps its positions); each event's seq lies in the block's range.
///
/// With a `compressor`, a payload of [`COMPRESS_FROM_BYTES`] or more is written as one
/// zstd frame when that is shorter.
pub(crate) fn encode_block(
    out: &mut Vec<u8>,
    seq_first: u64,
    seq_len: u32,
    events: &[Stored],
    compressor: Option<&mut zstd::bulk::Compressor<'static>>,
) {
    let mut payload = Vec::new();
    for stored in events {
        encode_event(&mut payload, stored.seq - seq_first, &stored.event);
    }
    let compressed = compressor
        .filter(|_| payload.len() >= COMPRESS_FROM_BYTES)
        .and_then(|compressor| compressor.compress(&payload).ok())
        .filter(|compressed| compressed.len() < payload.len());
    let (magic, payload) = match &compressed {
        Some(compressed) => (COMPRESSED_BLOCK_MAGIC, compressed),
        None => (BLOCK_MAGIC, &payload),
    };
    let start = out.len();
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // payload length, set below
    out.extend_from_slice(&seq_first.to_le_bytes());
    out.extend_from_slice(&seq_len.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // payload and header crc, set below
    out.extend_from_slice(payload);
    let payload_len = out.len() - start - BLOCK_HEADER_LEN;
    // A commit block holds whole submissions of about 1 MiB, one submission at most a
    // batch body (10 MiB by default): far below what a reader accepts.
    assert!(
        payload_len <= BLOCK_PAYLOAD_LEN_MAX,
        "a block's payload of {payload_len} bytes is over its bound"
    );
    let payload_len = payload_len as u32;
    out[start + 4..start + 8].copy_from_slice(&payload_len.to_le_bytes());
    let payload_crc = crc32fast::hash(&out[start + BLOCK_HEADER_LEN..]);
    out[start + 20..start + 24].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&out[start..start + 24]);
    out[start + 24..start + 28].copy_from_slice(&header_crc.to_le_bytes());
}

/// Why the bytes at some offset are not a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadBlock {
    /// Fewer bytes than a header, or than a header whose checksum matches says the
    /// block has: the end of what was written.
    Short,
    /// The bytes are there but are not a whole block.
    Damaged(&'static str),
}

impl BadBlock {
    /// Why, in words.
    pub fn detail(&self) -> &'static str {
        match self {
            BadBlock::Short => "the file ends inside a block",
            BadBlock::Damaged(detail) => detail,
        }
    }
}

/// Reads the block at the start of `bytes`: the block and its length in bytes.
pub(crate) fn decode_block(bytes: &[u8]) -> Result<(Block, usize), BadBlock> {
    decode_block_where(bytes, |_| true)
}

/// [`decode_block`], keeping only the events whose id `keep` picks: the others are
/// checked and skipped without being built.
pub(crate) fn decode_block_where(
    bytes: &[u8],
    keep: impl Fn(&Uuid) -> bool,
) -> Result<(Block, usize), BadBlock> {
    let header = bytes.get(..BLOCK_HEADER_LEN).ok_or(BadBlock::Short)?;
    let u32_at = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let compressed = match u32_at(0) {
        BLOCK_MAGIC => false,
        COMPRESSED_BLOCK_MAGIC => true,
        _ => return Err(BadBlock::Damaged("no block starts here")),
    };
    if crc32fast::hash(&header[..24]) != u32_at(24) {
        return Err(BadBlock::Damaged(
            "the block's header does not match its checksum",
        ));
    }
    let payload_len = u32_at(4) as usize;
    if payload_len > BLOCK_PAYLOAD_LEN_MAX {
        return Err(BadBlock::Damaged("the block's length is out of range"));
    }
    let mut seq_first = [0; 8];
    seq_first.copy_from_slice(&header[8..16]);
    let seq_first = u64::from_le_bytes(seq_first);
    let seq_len = u32_at(16);
    let len = BLOCK_HEADER_LEN + payload_len;
    let payload = bytes.get(BLOCK_HEADER_LEN..len).ok_or(BadBlock::Short)?;
    if crc32fast::hash(payload) != u32_at(20) {
        return Err(BadBlock::Damaged("the block does not match its checksum"));
    }
    let decompressed;
    let payload = if compressed {
        decompressed = decompress(payload).ok_or(BadBlock::Damaged(
            "the block cannot be decompressed although the checksum matches",
        ))?;
        &decompressed
    } else {
        payload
    };
    let mut events = Vec::new();
    decode_events(payload, seq_first, seq_len, &keep, &mut events)?;
    let block = Block {
        seq_first,
        seq_len,
        events,
    };
    Ok((block, len))
}

/// Appends the events encoded in `payload` whose id `keep` picks to `events`: events
/// of the positions [`seq_first`, `seq_first + seq_len`), each encoded with its offset
/// from `seq_first`. The others are checked and skipped without being built.
pub(crate) fn decode_events(
    payload: &[u8],
    seq_first: u64,
    seq_len: u32,
    keep: &impl Fn(&Uuid) -> bool,
    events: &mut Vec<Stored>,
) -> Result<(), BadBlock> {
    let mut reader = Reader { bytes: payload };
    while !reader.bytes.is_empty() {
        let unreadable =
            BadBlock::Damaged("an event in the block cannot be read although the checksum matches");
        let Some((offset, event)) = decode_event(&mut reader, keep).ok_or(unreadable)? else {
            continue;
        };
        if offset >= u64::from(seq_len) {
            return Err(BadBlock::Damaged(
                "an event lies outside its block's positions",
            ));
        }
        events.push(Stored {
            seq: seq_first + offset,
            event,
        });
    }
    Ok(())
}

/// A zstd frame's content, no longer than a block's payload may be, decompressed with
/// the thread's context.
pub(crate) fn decompress(frame: &[u8]) -> Option<Vec<u8>> {
    let mut content = Vec::new();
    decompress_into(frame, None, &mut content)?;
    Some(content)
}

/// Decompresses `frame` (with `dictionary`, if it was compressed with one) into
/// `content`, replacing what it held, with the thread's context, if its content is no
/// longer than a block's payload may be.
pub(crate) fn decompress_into(
    frame: &[u8],
    dictionary: Option<&zstd::dict::DecoderDictionary<'_>>,
    content: &mut Vec<u8>,
) -> Option<()> {
    thread_local! {
        // One context per thread, not one per block: making one costs more than
        // decompressing a small block, and recovery and reads decompress thousands.
        static CONTEXT: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
            const { RefCell::new(None) };
    }
    let len = zstd::zstd_safe::get_frame_content_size(frame).ok()??;
    let len = usize::try_from(len)
        .ok()
        .filter(|len| *len <= BLOCK_PAYLOAD_LEN_MAX)?;
    content.clear();
    content.reserve(len);
    CONTEXT.with_borrow_mut(|context| {
        if context.is_none() {
            *context = zstd::zstd_safe::DCtx::try_create();
        }
        let context = context.as_mut()?;
        match dictionary {
            Some(dictionary) => {
                context.decompress_using_ddict(content, frame, dictionary.as_ddict())
            }
            None => context.decompress(content, frame),
        }
        .ok()
    })?;
    (content.len() == len).then_some(())
}

/// Appends one event, with its position as an offset from its block's first.
pub(crate) fn encode_event(out: &mut Vec<u8>, seq_offset: u64, event: &Event) {
    let seq_offset = u32::try_from(seq_offset).expect("an event's position lies in its block's");
    out.extend_from_slice(&seq_offset.to_le_bytes());
    out.extend_from_slice(event.id.as_bytes());
    out.extend_from_slice(&event.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&event.received_at_ms.to_le_bytes());
    match event.client_timestamp_ms {
        Some(ms) => {
            out.push(1);
            out.extend_from_slice(&ms.to_le_bytes());
        }
        None => out.push(0),
    }
    out.push(match event.scope {
        Scope::App => 0,
        Scope::Site => 1,
    });
    // Lengths fit: event types and contact ids are bounded in characters by validation
    // (`EVENT_TYPE_CHARS_MAX`, `CONTACT_ID_CHARS_MAX`), content by the body limit.
    out.extend_from_slice(&(event.event_type.len() as u16).to_le_bytes());
    out.extend_from_slice(event.event_type.as_bytes());
    match &event.contact_id {
        Some(contact_id) => {
            out.push(1);
            out.extend_from_slice(&(contact_id.len() as u16).to_le_bytes());
            out.extend_from_slice(contact_id.as_bytes());
        }
        None => out.push(0),
    }
    let content = event.content.get();
    out.extend_from_slice(&(content.len() as u32).to_le_bytes());
    out.extend_from_slice(content.as_bytes());
}

/// Reads fixed-size fields and runs of bytes off the front of a slice.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// How many bytes are left to read.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < len {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Some(taken)
    }

    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    pub fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.array()?))
    }
}

/// The next event, if `keep` picks its id; `None` if it cannot be read.
fn decode_event(
    reader: &mut Reader<'_>,
    keep: &impl Fn(&Uuid) -> bool,
) -> Option<Option<(u64, Event)>> {
    let seq_offset = u64::from(u32::from_le_bytes(reader.array()?));
    let id = Uuid::from_bytes(reader.array()?);
    let timestamp_ms = reader.i64()?;
    let received_at_ms = reader.i64()?;
    let client_timestamp_ms = match reader.u8()? {
        0 => None,
        1 => Some(reader.i64()?),
        _ => return None,
    };
    let scope = match reader.u8()? {
        0 => Scope::App,
        1 => Scope::Site,
        _ => return None,
    };
    let kept = keep(&id);
    let event_type_len = u16::from_le_bytes(reader.array()?) as usize;
    let event_type = reader.take(event_type_len)?;
    let contact_id = match reader.u8()? {
        0 => None,
        1 => {
            let len = u16::from_le_bytes(reader.array()?) as usize;
            Some(reader.take(len)?)
        }
        _ => return None,
    };
    let content_len = u32::from_le_bytes(reader.array()?) as usize;
    let content = reader.take(content_len)?;
    if !kept {
        // The checksum vouches for the bytes: skipped events are not parsed.
        return Some(None);
    }
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).ok();
    let event_type = text(event_type)?;
    let contact_id = match contact_id {
        Some(bytes) => Some(text(bytes)?),
        None => None,
    };
    let content = RawValue::from_string(text(content)?).ok()?;
    let event = Event {
        id,
        event_type,
        content,
        contact_id,
        scope,
        timestamp_ms,
        received_at_ms,
        client_timestamp_ms,
    };
    Some(Some((seq_offset, event)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u128, contact: Option<&str>) -> Stored {
        Stored {
            seq: 10 + n as u64,
            event: Event {
                id: Uuid::from_u128(n),
                event_type: "new_order".to_owned(),
                content: RawValue::from_string(format!("{{\"n\":{n}}}")).expect("json"),
                contact_id: contact.map(str::to_owned),
                scope: if n.is_multiple_of(2) {
                    Scope::App
                } else {
                    Scope::Site
                },
                timestamp_ms: 1_700_000_000_000 + n as i64,
                received_at_ms: 1_700_000_000_500,
                client_timestamp_ms: n.is_multiple_of(3).then_some(5),
            },
        }
    }

    #[test]
    fn a_block_reads_back_as_written() {
        let events = vec![event(0, Some("c-1")), event(1, None), event(2, Some(""))];
        let mut bytes = Vec::new();
        encode_block(&mut bytes, 10, 4, &events, None);
        let (block, len) = decode_block(&bytes).expect("block");
        assert_eq!(len, bytes.len());
        assert_eq!(
            (block.seq_first, block.seq_len, block.seq_end()),
            (10, 4, 14)
        );
        assert_eq!(block.events.len(), 3);
        for (read, written) in block.events.iter().zip(&events) {
            assert_eq!(read.seq, written.seq);
            let (read, written) = (&read.event, &written.event);
            assert_eq!(read.id, written.id);
            assert_eq!(read.content.get(), written.content.get());
            assert_eq!(read.contact_id, written.contact_id);
            assert_eq!(read.scope, written.scope);
            assert_eq!(read.client_timestamp_ms, written.client_timestamp_ms);
            assert_eq!(
                (read.timestamp_ms, read.received_at_ms),
                (written.timestamp_ms, written.received_at_ms)
            );
        }
    }

    #[test]
    fn a_compressed_block_reads_back_as_written_and_is_shorter() {
        let events: Vec<Stored> = (0..50).map(|n| event(n, Some("contact-1"))).collect();
        let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd");
        let (mut raw, mut compressed) = (Vec::new(), Vec::new());
        encode_block(&mut raw, 10, 60, &events, None);
        encode_block(&mut compressed, 10, 60, &events, Some(&mut compressor));
        assert!(
            compressed.len() * 2 < raw.len(),
            "{} of {}",
            compressed.len(),
            raw.len()
        );
        assert!(compressed.starts_with(b"EVLZ") && raw.starts_with(b"EVLB"));
        let (block, len) = decode_block(&compressed).expect("block");
        assert_eq!(len, compressed.len());
        let ids: Vec<Uuid> = block.events.iter().map(|stored| stored.event.id).collect();
        let sent: Vec<Uuid> = events.iter().map(|stored| stored.event.id).collect();
        assert_eq!(ids, sent);
        for bit in (0..compressed.len() * 8).step_by(7) {
            let mut damaged = compressed.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_block(&damaged).is_err(), "bit {bit} flipped unseen");
        }
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_found() {
        let mut bytes = Vec::new();
        encode_block(
            &mut bytes,
            10,
            2,
            &[event(0, Some("c")), event(1, None)],
            None,
        );
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_block(&damaged).is_err(), "bit {bit} flipped unseen");
        }
        for len in 0..bytes.len() {
            assert!(decode_block(&bytes[..len]).is_err(), "cut at {len} unseen");
        }
    }
}
