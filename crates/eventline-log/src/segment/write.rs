//! Writing a segment: events in (timestamp, id) order in, the file and its footer out.

use std::path::Path;
use std::sync::Arc;

use eventline_core::event::Event;
use uuid::Uuid;

use super::*;
use crate::bloom::Bloom;
use crate::columns::{self, KindTable, NumbersBuilder};
use crate::content_index::{Columns, ContentIndexBuilder, PostingsRef};
use crate::counts::Counts;
use crate::disk::Disk;
use crate::error::Error;
use crate::framed;
use crate::record::{self};

/// Writes a segment from its events in (timestamp, id) order, each once: the blocks as
/// the events come, the indexes and the footer at the end, to a file (`file`). The
/// bytes go to the file every `TAKE_BYTES`, so that a segment of millions of events
/// is written holding a megabyte of it, indexes included.
pub(super) struct SegmentWriter<'a> {
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
    content: ContentIndexBuilder,
    /// The columns (`columns`) of the blocks since the last group was written.
    columns: Vec<u8>,
    columns_groups: Vec<u64>,
    columns_lens: Vec<u32>,
    kinds: KindTable,
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
    pub(super) fn new(
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
            content: ContentIndexBuilder::default(),
            columns: Vec::new(),
            columns_groups: Vec::new(),
            columns_lens: Vec::new(),
            kinds: KindTable::default(),
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
        let block = u32::try_from(self.blocks.len())
            .map_err(|_| Error::Corrupt("a segment would hold more than 2^32 blocks".to_owned()))?;
        let mut numbers = NumbersBuilder::default();
        for (at, (_, event)) in self.pending.iter().enumerate() {
            let kind = self.kinds.code(&event.event_type, event.scope);
            self.content
                .add(block, at as u32, kind, event.content.get(), &mut numbers);
        }
        let columns_start = self.columns.len();
        columns::encode(&mut self.columns, &self.pending, &mut self.kinds, numbers);
        self.columns_lens
            .push((self.columns.len() - columns_start) as u32);
        self.blocks.push(BlockRef {
            offset,
            len,
            first,
            last,
        });
        if self
            .blocks
            .len()
            .is_multiple_of(COLUMNS_GROUP_BLOCKS as usize)
        {
            self.write_columns_group();
        }
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

    /// Writes the columns of the blocks since the last group, after the last of them.
    fn write_columns_group(&mut self) {
        if self.columns.is_empty() {
            return;
        }
        self.columns_groups.push(self.output.position());
        self.output.bytes.append(&mut self.columns);
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
    pub(super) fn finish_with(
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
        // Id chunks are compressed: an id's first 6 bytes are a time, shared with its
        // neighbours in id order, and so are a timestamp's high bytes.
        let mut ids_compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL)
            .map_err(|error| Error::Corrupt(error.to_string()))?;
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
                let compressed = ids_compressor
                    .compress(&payload)
                    .map_err(|error| Error::Corrupt(error.to_string()))?;
                let (offset, len) = self.push_chunk(&compressed)?;
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
        let blocks_len = self.blocks.len() as u32;
        self.write_columns_group();
        self.output.spill()?;
        let columns = Columns {
            group_blocks: COLUMNS_GROUP_BLOCKS,
            groups: std::mem::take(&mut self.columns_groups),
            lens: std::mem::take(&mut self.columns_lens),
            kinds: std::mem::take(&mut self.kinds).into_list(),
        };
        let output = &mut self.output;
        let content =
            std::mem::take(&mut self.content).finish(blocks_len, columns, |postings| {
                let offset = output.position();
                output.bytes.extend_from_slice(postings);
                output.spill()?;
                Ok::<_, Error>(PostingsRef {
                    offset,
                    len: postings.len() as u32,
                })
            })?;
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
            content,
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
        let format = Format::Framed {
            dictionary: Arc::new(dictionary),
            id_chunks_compressed: true,
        };
        Ok((footer, format))
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
        let encoded_len = postcard::serialize_with_flavor(
            &(footer, &footer.content),
            postcard::ser_flavors::Size::default(),
        )
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
            let buffered = postcard::to_io(&(footer, &footer.content), buffered)
                .map_err(std::io::Error::other)?;
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
pub(super) struct Written<'a> {
    disk: &'a dyn Disk,
    path: &'a Path,
}

impl<'a> Written<'a> {
    pub(super) fn begin(disk: &'a dyn Disk, path: &'a Path) -> Result<Written<'a>, Error> {
        crate::disk::remove_if_present(disk, path).map_err(io_error(path))?;
        Ok(Written { disk, path })
    }

    fn sync(&self) -> Result<(), Error> {
        self.disk.sync(self.path).map_err(io_error(self.path))
    }
}
