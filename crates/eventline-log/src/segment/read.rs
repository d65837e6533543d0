//! Reading a segment: its footer and dictionary at open, then blocks and chunks, each
//! checked against its CRC-32 before use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eventline_core::event::Event;
use uuid::Uuid;

use super::*;
use crate::counts::Minutes;
use crate::disk::Disk;
use crate::error::Error;
use crate::framed;
use crate::record::{self, Reader, Stored, TimeKey};

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
        magic if magic == SEGMENT_MAGIC => 4,
        magic if magic == SEGMENT_MAGIC_V3 => 3,
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
    let footer_end = footer_offset.checked_add(footer_len as u64);
    if footer_len > FOOTER_LEN_MAX || footer_end.is_none_or(|end| end > trailer_at) {
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
    let unreadable = || damaged(path, footer_offset, "the footer cannot be read");
    let (mut footer, rest) =
        postcard::take_from_bytes::<Footer>(&encoded).map_err(|_| unreadable())?;
    if version >= 4 {
        footer.content = postcard::from_bytes(rest).map_err(|_| unreadable())?;
    } else if !rest.is_empty() {
        return Err(unreadable());
    }
    // Every place the footer names lies between the magic and the footer: a read of a
    // block or chunk never runs past the file, nor allocates more than it holds.
    let places = footer
        .blocks
        .iter()
        .map(|block| (block.offset, block.len))
        .chain(
            footer
                .id_chunks
                .iter()
                .map(|chunk| (chunk.offset, chunk.len)),
        )
        .chain(
            footer
                .contact_chunks
                .iter()
                .map(|chunk| (chunk.offset, chunk.len)),
        )
        .chain(
            footer
                .content
                .postings()
                .map(|postings| (postings.offset, postings.len)),
        )
        .chain(columns_places(&footer));
    for (offset, len) in places {
        let end = offset.checked_add(u64::from(len));
        if offset < SEGMENT_MAGIC.len() as u64 || end.is_none_or(|end| end > footer_offset) {
            return Err(damaged(
                path,
                footer_offset,
                format!(
                    "the footer names bytes {offset} to {offset} + {len}, outside the segment's data"
                ),
            ));
        }
    }
    // The columns name each block's events, and paths by their ids.
    let content = &footer.content;
    let mut ids: Vec<u32> = content.paths.iter().map(|path| path.id).collect();
    ids.sort_unstable();
    let groups_len = match content.columns_group_blocks {
        0 => usize::MAX,
        group => footer.blocks.len().div_ceil(group as usize),
    };
    if (version >= 4
        && (content.columns_lens.len() != footer.blocks.len()
            || content.columns_groups.len() != groups_len))
        || ids.iter().enumerate().any(|(at, id)| *id as usize != at)
    {
        return Err(damaged(
            path,
            footer_offset,
            "the content index does not match the segment's blocks",
        ));
    }
    Ok((footer, version))
}

/// Where each group of the blocks' columns is, and how long (`u32::MAX` if its length
/// overflows that, which the check of places then refuses).
fn columns_places(footer: &Footer) -> impl Iterator<Item = (u64, u32)> + '_ {
    let content = &footer.content;
    let group = (content.columns_group_blocks as usize).max(1);
    content
        .columns_groups
        .iter()
        .zip(content.columns_lens.chunks(group))
        .map(|(offset, lens)| {
            let len: u64 = lens.iter().map(|len| u64::from(*len)).sum();
            (*offset, u32::try_from(len).unwrap_or(u32::MAX))
        })
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
            content,
            ..
        } = footer;
        // A writer's lists grew by doubling: what they do not use would be held for as
        // long as the segment is.
        blocks.shrink_to_fit();
        id_chunks.shrink_to_fit();
        let contact_chunks = ContactChunks::new(contact_chunks);
        // Each block's columns: its group's place, then the lengths of those before it.
        let group = (content.columns_group_blocks as usize).max(1);
        let mut columns = Vec::with_capacity(content.columns_lens.len());
        for (offset, lens) in content
            .columns_groups
            .iter()
            .zip(content.columns_lens.chunks(group))
        {
            let mut at = *offset;
            for len in lens {
                columns.push((at, *len));
                at += u64::from(*len);
            }
        }
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
                content,
                columns,
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
            // 3 and 4.
            version => Format::Framed {
                dictionary: Arc::new(read_dictionary(&path, read_at)?),
                id_chunks_compressed: version >= 4,
            },
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

    #[cfg(test)]
    pub fn blocks_len(&self) -> usize {
        self.index.blocks.len()
    }

    /// The events of data block `index`, in (timestamp, id) order.
    pub fn read_block(&self, disk: &dyn Disk, index: usize) -> Result<Vec<Stored>, Error> {
        self.read_block_where(disk, index, None)
    }

    /// The events of data block `index` whose keys `wanted` holds, or all of them
    /// without `wanted`, in (timestamp, id) order.
    pub(super) fn read_block_where(
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
            Format::Framed { dictionary, .. } => framed::decode_block(&bytes, dictionary, wanted),
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

    /// What the segment's bytes hold, from its footer and its file's length.
    pub fn bytes(&self, disk: &dyn Disk) -> Result<crate::SegmentBytes, Error> {
        let file_len = disk.len(&self.path).map_err(io_error(&self.path))?;
        let index = self.index.as_ref();
        let data = index
            .blocks
            .iter()
            .map(|block| u64::from(block.len))
            .sum::<u64>();
        let id_chunks = index
            .id_chunks
            .iter()
            .map(|chunk| u64::from(chunk.len))
            .sum();
        let contact_chunks = (index.contact_chunks.chunks.iter())
            .map(|chunk| u64::from(chunk.len))
            .sum();
        let postings = (index.content.postings())
            .map(|postings| u64::from(postings.len))
            .sum();
        let columns = (index.columns.iter()).map(|(_, len)| u64::from(*len)).sum();
        // The dictionary is between the magic and the first block; the columns are
        // among the blocks, after them in the parts.
        let dictionary = index
            .blocks
            .first()
            .map_or(0, |block| block.offset - SEGMENT_MAGIC.len() as u64);
        let parts = data + dictionary + id_chunks + contact_chunks + postings + columns;
        Ok(crate::SegmentBytes {
            events: self.events_len,
            data: data + dictionary,
            id_chunks,
            contact_chunks,
            postings,
            columns,
            footer: file_len.saturating_sub(parts),
        })
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
        for postings in self.index.content.postings() {
            self.read_postings(disk, postings)?;
        }
        self.verify_columns(disk)?;
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
        let bytes = self.read_id_chunk(disk, chunk)?;
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
    pub(super) fn id_chunk(
        &self,
        disk: &dyn Disk,
        index: usize,
    ) -> Result<Vec<(Uuid, i64)>, Error> {
        let chunk = &self.index.id_chunks[index];
        let bytes = self.read_id_chunk(disk, chunk)?;
        let entries = self.id_entries(&bytes, chunk.offset)?;
        Ok(entries.iter().map(id_entry).collect())
    }

    /// An id chunk's entries' bytes, checked, decompressed in format 4.
    fn read_id_chunk(&self, disk: &dyn Disk, chunk: &ChunkRef<Uuid>) -> Result<Vec<u8>, Error> {
        let bytes = self.read_chunk(disk, chunk.offset, chunk.len)?;
        match self.format {
            Format::Framed {
                id_chunks_compressed: true,
                ..
            } => record::decompress(&bytes)
                .filter(|entries| entries.len() <= CHUNK_ENTRIES * ID_ENTRY_LEN)
                .ok_or_else(|| damaged(&self.path, chunk.offset, "an id chunk cannot be read")),
            _ => Ok(bytes),
        }
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
        if let Format::Framed { .. } = self.format {
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
    pub(super) fn contact_chunk(
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
}
