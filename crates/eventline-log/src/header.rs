//! A log file's header: its magic, then two slots for the mark of how much of the file
//! is acknowledged. Pure functions; `docs/format.md` has the layout and the reasoning.
//!
//! ```text
//! file   = magic (8 bytes) | zeros to byte 512 | slot 0 (32) | zeros to 1024
//!          | slot 1 (32) | zeros to 1536 | block*            (version 2)
//! file   = magic (8 bytes) | block*                           (version 1, read only)
//! slot   = MARK_MAGIC u32 | counter u64 | acked_len u64 | seq_end u64 | crc u32
//! ```
//!
//! A mark says: the first `acked_len` bytes of this file were synced before any answer
//! was given for them, and they end at position `seq_end`. It is written only after
//! those bytes were synced, in place, in the slot the newest mark is not in, so that a
//! mark torn by a power cut leaves the one before it whole. Each slot has a 512-byte
//! sector of its own and the blocks never touch those sectors: no append can damage a
//! mark. The valid slot with the higher counter is the file's mark.

/// The first bytes of a version 2 log file.
pub(crate) const FILE_MAGIC: &[u8; 8] = b"EVLOG\x00\x00\x02";
/// The first bytes of a version 1 log file: no mark slots, blocks after the magic.
pub(crate) const FILE_MAGIC_V1: &[u8; 8] = b"EVLOG\x00\x00\x01";
/// Where the blocks of a version 2 file begin.
pub const HEADER_LEN: usize = 1536;
/// Where each slot is.
const SLOT_OFFSETS: [usize; 2] = [512, 1024];
const SLOT_LEN: usize = 4 + 8 + 8 + 8 + 4;
const MARK_MAGIC: u32 = u32::from_le_bytes(*b"EVAK");

/// How much of a file is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Mark {
    /// Orders the marks of one file: the higher is the newer.
    pub counter: u64,
    /// The file's first `acked_len` bytes were synced before their answers.
    pub acked_len: u64,
    /// The position after the last one those bytes hold.
    pub seq_end: u64,
}

/// A version 2 file's header holding `mark` in the slot its counter picks, and nothing
/// in the other.
pub(crate) fn encode_header(mark: &Mark) -> Vec<u8> {
    let mut header = vec![0; HEADER_LEN];
    header[..FILE_MAGIC.len()].copy_from_slice(FILE_MAGIC);
    let (offset, slot) = encode_slot(mark);
    header[offset..offset + SLOT_LEN].copy_from_slice(&slot);
    header
}

/// The bytes of `mark` and the offset they are written at: the slot its counter picks,
/// so that marks written one after another alternate between the slots.
pub(crate) fn encode_slot(mark: &Mark) -> (usize, [u8; SLOT_LEN]) {
    assert!(
        mark.acked_len >= HEADER_LEN as u64,
        "a mark covers at least the header"
    );
    let mut slot = [0; SLOT_LEN];
    slot[..4].copy_from_slice(&MARK_MAGIC.to_le_bytes());
    slot[4..12].copy_from_slice(&mark.counter.to_le_bytes());
    slot[12..20].copy_from_slice(&mark.acked_len.to_le_bytes());
    slot[20..28].copy_from_slice(&mark.seq_end.to_le_bytes());
    let crc = crc32fast::hash(&slot[..28]);
    slot[28..].copy_from_slice(&crc.to_le_bytes());
    (SLOT_OFFSETS[(mark.counter % 2) as usize], slot)
}

/// What a file's first bytes say it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Header {
    /// Version 2: the blocks begin at [`HEADER_LEN`]; the newest whole mark, if any
    /// slot holds one.
    V2(Option<Mark>),
    /// Version 1: the blocks begin after the magic, and nothing marks what was
    /// acknowledged.
    V1,
}

impl Header {
    /// Where the file's blocks begin.
    pub fn blocks_from(&self) -> usize {
        match self {
            Header::V2(_) => HEADER_LEN,
            Header::V1 => FILE_MAGIC_V1.len(),
        }
    }
}

/// Why a file's first bytes are not a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadHeader {
    /// Shorter than a header: in the last file, one begun and cut before its header was
    /// synced (no block is written before that).
    Short,
    /// Not an eventline log file, or one of a version this build does not know.
    Foreign,
}

/// Reads a log file's header from its first bytes (the whole file may be passed).
pub(crate) fn decode_header(bytes: &[u8]) -> Result<Header, BadHeader> {
    if bytes.starts_with(FILE_MAGIC_V1) {
        return Ok(Header::V1);
    }
    if bytes.len() < HEADER_LEN {
        return Err(BadHeader::Short);
    }
    if !bytes.starts_with(FILE_MAGIC) {
        return Err(BadHeader::Foreign);
    }
    let mark = SLOT_OFFSETS
        .iter()
        .filter_map(|offset| decode_slot(&bytes[*offset..*offset + SLOT_LEN]))
        .max_by_key(|mark| mark.counter);
    Ok(Header::V2(mark))
}

/// A slot's mark, or None if the slot was never written or its write was torn (its
/// checksum fails) or it holds no sensible mark.
fn decode_slot(slot: &[u8]) -> Option<Mark> {
    let u64_at = |at: usize| {
        let mut word = [0; 8];
        word.copy_from_slice(&slot[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let mut word = [0; 4];
    word.copy_from_slice(&slot[..4]);
    if u32::from_le_bytes(word) != MARK_MAGIC {
        return None;
    }
    word.copy_from_slice(&slot[28..32]);
    if crc32fast::hash(&slot[..28]) != u32::from_le_bytes(word) {
        return None;
    }
    let mark = Mark {
        counter: u64_at(4),
        acked_len: u64_at(12),
        seq_end: u64_at(20),
    };
    // Written by `encode_slot`, which never writes a mark inside the header.
    (mark.acked_len >= HEADER_LEN as u64).then_some(mark)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(counter: u64) -> Mark {
        Mark {
            counter,
            acked_len: HEADER_LEN as u64 + 100 * counter,
            seq_end: 7 * counter,
        }
    }

    fn with_slot(header: &mut [u8], mark: &Mark) {
        let (offset, slot) = encode_slot(mark);
        header[offset..offset + slot.len()].copy_from_slice(&slot);
    }

    #[test]
    fn the_newest_whole_mark_is_the_files() {
        let mut header = encode_header(&mark(2));
        assert_eq!(decode_header(&header), Ok(Header::V2(Some(mark(2)))));
        with_slot(&mut header, &mark(3));
        assert_eq!(decode_header(&header), Ok(Header::V2(Some(mark(3)))));
        with_slot(&mut header, &mark(4));
        assert_eq!(decode_header(&header), Ok(Header::V2(Some(mark(4)))));
        // Marks alternate: the newest never overwrites the one before it.
        let (slot_4, _) = encode_slot(&mark(4));
        let (slot_5, _) = encode_slot(&mark(5));
        assert_ne!(slot_4, slot_5);
    }

    #[test]
    fn a_torn_mark_leaves_the_one_before() {
        let mut header = encode_header(&mark(2));
        with_slot(&mut header, &mark(3));
        let (offset, _) = encode_slot(&mark(3));
        for at in offset..offset + SLOT_LEN {
            for bit in 0..8 {
                let mut torn = header.clone();
                torn[at] ^= 1 << bit;
                assert_eq!(
                    decode_header(&torn),
                    Ok(Header::V2(Some(mark(2)))),
                    "byte {at} bit {bit}"
                );
            }
        }
        // Zeroed, as a sector that never reached the disk.
        header[offset..offset + SLOT_LEN].fill(0);
        assert_eq!(decode_header(&header), Ok(Header::V2(Some(mark(2)))));
        let (other, _) = encode_slot(&mark(2));
        header[other..other + SLOT_LEN].fill(0);
        assert_eq!(decode_header(&header), Ok(Header::V2(None)));
    }

    #[test]
    fn a_header_cut_short_or_foreign_is_named() {
        let header = encode_header(&mark(1));
        for len in 0..HEADER_LEN {
            assert_eq!(
                decode_header(&header[..len]),
                Err(BadHeader::Short),
                "len {len}"
            );
        }
        let mut foreign = header.clone();
        foreign[7] = 9;
        assert_eq!(decode_header(&foreign), Err(BadHeader::Foreign));
        assert_eq!(decode_header(b"EVLOG\x00\x00\x01rest"), Ok(Header::V1));
        assert_eq!(Header::V1.blocks_from(), 8);
    }

    #[test]
    fn a_mark_inside_the_header_is_no_mark() {
        let mut header = encode_header(&mark(1));
        let mut slot = [0; SLOT_LEN];
        slot[..4].copy_from_slice(&MARK_MAGIC.to_le_bytes());
        slot[4..12].copy_from_slice(&3_u64.to_le_bytes());
        slot[12..20].copy_from_slice(&10_u64.to_le_bytes());
        let crc = crc32fast::hash(&slot[..28]);
        slot[28..].copy_from_slice(&crc.to_le_bytes());
        header[SLOT_OFFSETS[0]..SLOT_OFFSETS[0] + SLOT_LEN].copy_from_slice(&slot);
        assert_eq!(decode_header(&header), Ok(Header::V2(Some(mark(1)))));
    }
}
