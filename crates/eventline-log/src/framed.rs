//! The data blocks of format-3 segments: a block's events in frames of about
//! [`FRAME_BYTES`], each compressed on its own with the segment's zstd dictionary, so
//! that reading one event decompresses one frame of about 1 KiB, not a block of 16 KiB.
//! With the dictionary, small frames compress nearly as well as whole blocks did without
//! one (`docs/storage-design.md`, "Segment format 3"). The frame size is the writer's
//! choice: a reader follows the block's frame list, whatever size its frames are.
//!
//! ```text
//! block     = seq_first u64 | seq_len u32 | frames_len u16 | frame_ref* | frame* | crc32 u32
//! frame_ref = first timestamp i64 | frame_len u32
//! frame     = zstd, with the segment's dictionary, of event* (as in `record`, each
//!             event's position an offset from the block's seq_first)
//! ```
//!
//! Events are in (timestamp, id) order across the frames. The CRC-32 covers every byte
//! before it: damage is found before anything is decompressed. A frame names only its
//! first timestamp (not the id): a key whose timestamp equals a frame's first may also
//! be in the frame before, and a reader looks in both.

use eventline_core::event::Event;
use uuid::Uuid;
use zstd::dict::DecoderDictionary;

use crate::record::{self, BadBlock, Reader, Stored, TimeKey};

/// Bytes of encoded events a frame holds, about. Measured on the bench's events
/// (`docs/storage-design.md`): with a dictionary, 1 KiB frames take 3 % more room than
/// 2 KiB frames and decompress in half the time, and a timeline decompresses one frame
/// per event it returns: at 10,000,000 events, 16 connections' timelines went from
/// about 7,750 to 8,850 queries/s, and the store from 144 to 147 bytes per event.
const FRAME_BYTES: usize = 1 << 10;
const HEADER_LEN: usize = 8 + 4 + 2;
const FRAME_REF_LEN: usize = 8 + 4;

/// Appends a block of `events` (each with its position, in (timestamp, id) order, at
/// least one), whose positions lie in [`seq_first`, `seq_first + seq_len`), to `out`.
pub(crate) fn encode_block(
    out: &mut Vec<u8>,
    seq_first: u64,
    seq_len: u32,
    events: &[(u64, Event)],
    compressor: &mut zstd::bulk::Compressor<'_>,
) -> std::io::Result<()> {
    let mut frames: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut raw = Vec::with_capacity(FRAME_BYTES * 2);
    let mut first_ms = None;
    for (at, (seq, event)) in events.iter().enumerate() {
        first_ms.get_or_insert(event.timestamp_ms);
        record::encode_event(&mut raw, seq - seq_first, event);
        if raw.len() >= FRAME_BYTES || at + 1 == events.len() {
            let first_ms = first_ms.take().unwrap_or(event.timestamp_ms);
            frames.push((first_ms, compressor.compress(&raw)?));
            raw.clear();
        }
    }
    let frames_len = u16::try_from(frames.len())
        .map_err(|_| std::io::Error::other("a block would hold more than 65,535 frames"))?;
    let start = out.len();
    out.extend_from_slice(&seq_first.to_le_bytes());
    out.extend_from_slice(&seq_len.to_le_bytes());
    out.extend_from_slice(&frames_len.to_le_bytes());
    for (first_ms, frame) in &frames {
        out.extend_from_slice(&first_ms.to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    }
    for (_, frame) in &frames {
        out.extend_from_slice(frame);
    }
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The events of the block `bytes` (all of it), in (timestamp, id) order: those whose
/// key `wanted` holds (sorted), or every one without `wanted`. Only the frames that may
/// hold a wanted key are decompressed.
pub(crate) fn decode_block(
    bytes: &[u8],
    dictionary: &DecoderDictionary<'_>,
    wanted: Option<&[TimeKey]>,
) -> Result<Vec<Stored>, BadBlock> {
    let (body, crc) = bytes
        .split_last_chunk::<4>()
        .filter(|(body, _)| body.len() >= HEADER_LEN)
        .ok_or(BadBlock::Damaged("a segment block is cut short"))?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err(BadBlock::Damaged(
            "a segment block does not match its checksum",
        ));
    }
    let mut reader = Reader::new(body);
    let unreadable = BadBlock::Damaged("a segment block's frames cannot be read");
    let seq_first = u64::from_le_bytes(reader.array().ok_or(unreadable.clone())?);
    let seq_len = u32::from_le_bytes(reader.array().ok_or(unreadable.clone())?);
    let frames_len = u16::from_le_bytes(reader.array().ok_or(unreadable.clone())?) as usize;
    if reader.len() < frames_len * FRAME_REF_LEN {
        return Err(unreadable);
    }
    let mut refs = Vec::with_capacity(frames_len);
    for _ in 0..frames_len {
        let first_ms = i64::from_le_bytes(reader.array().ok_or(unreadable.clone())?);
        let frame_len = u32::from_le_bytes(reader.array().ok_or(unreadable.clone())?);
        refs.push((first_ms, frame_len as usize));
    }
    // Each frame's first timestamp and bytes.
    let mut frames = Vec::with_capacity(frames_len);
    for (first_ms, frame_len) in refs {
        frames.push((first_ms, reader.take(frame_len).ok_or(unreadable.clone())?));
    }
    if !reader.is_empty() {
        return Err(unreadable);
    }
    let mut read = vec![wanted.is_none(); frames_len];
    for (timestamp_ms, _) in wanted.unwrap_or_default() {
        // The frames whose first timestamp is at most the key's, from the last one that
        // begins before it: a run of equal timestamps may span frames.
        let before = frames.partition_point(|(first_ms, _)| first_ms < timestamp_ms);
        let through = frames.partition_point(|(first_ms, _)| first_ms <= timestamp_ms);
        read[before.saturating_sub(1)..through].fill(true);
    }
    let keep = |id: &Uuid| wanted.is_none_or(|wanted| wanted.iter().any(|key| key.1 == *id));
    let mut events = Vec::new();
    let mut content = Vec::new();
    for ((_, frame), _) in frames.iter().zip(&read).filter(|(_, read)| **read) {
        record::decompress_into(frame, Some(dictionary), &mut content).ok_or(BadBlock::Damaged(
            "a segment frame cannot be decompressed although the checksum matches",
        ))?;
        record::decode_events(&content, seq_first, seq_len, &keep, &mut events)?;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use eventline_core::event::Scope;
    use serde_json::value::RawValue;

    use super::*;

    fn event(n: u64, timestamp_ms: i64) -> (u64, Event) {
        let event = Event {
            id: Uuid::from_u128(u128::from(n)),
            event_type: "page_view".to_owned(),
            content: RawValue::from_string(format!(
                "{{\"n\":{n},\"note\":\"{}\"}}",
                "x".repeat(90)
            ))
            .expect("json"),
            contact_id: Some(format!("contact-{}", n % 7)),
            scope: Scope::App,
            timestamp_ms,
            received_at_ms: 5,
            client_timestamp_ms: None,
        };
        (100 + n, event)
    }

    /// 120 events over about 8 frames, with runs of equal timestamps across frame
    /// boundaries.
    fn block() -> (Vec<(u64, Event)>, Vec<u8>) {
        let events: Vec<(u64, Event)> = (0..120).map(|n| event(n, n as i64 / 9)).collect();
        let mut compressor = zstd::bulk::Compressor::new(3).expect("zstd");
        let mut bytes = Vec::new();
        encode_block(&mut bytes, 100, 120, &events, &mut compressor).expect("encode");
        (events, bytes)
    }

    #[test]
    fn every_event_and_every_chosen_key_reads_back() {
        let dictionary = DecoderDictionary::copy(&[]);
        let (events, bytes) = block();
        let all = decode_block(&bytes, &dictionary, None).expect("block");
        let seqs: Vec<u64> = all.iter().map(|stored| stored.seq).collect();
        assert_eq!(seqs, (100..220).collect::<Vec<u64>>());
        for (seq, event) in &events {
            let key = [(event.timestamp_ms, event.id)];
            let read = decode_block(&bytes, &dictionary, Some(&key)).expect("block");
            assert_eq!(read.len(), 1, "event {seq}");
            assert_eq!(read[0].seq, *seq);
            assert_eq!(read[0].event.content.get(), event.content.get());
        }
        let missing = [(3, Uuid::from_u128(7_000))];
        assert!(
            decode_block(&bytes, &dictionary, Some(&missing))
                .expect("block")
                .is_empty()
        );
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_found() {
        let dictionary = DecoderDictionary::copy(&[]);
        let (_, bytes) = block();
        for bit in (0..bytes.len() * 8).step_by(5) {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_block(&damaged, &dictionary, None).is_err(),
                "bit {bit} flipped unseen"
            );
        }
        for len in 0..bytes.len() {
            assert!(
                decode_block(&bytes[..len], &dictionary, None).is_err(),
                "cut at {len} unseen"
            );
        }
    }
}
