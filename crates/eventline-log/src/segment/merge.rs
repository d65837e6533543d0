//! Merging segments: a k-way merge of their events and of their index chunks, a part of
//! each at a time, into one segment that replaces them.

use std::path::Path;

use super::write::{SegmentWriter, Written};
use super::*;
use crate::counts::Counts;
use crate::disk::Disk;
use crate::error::Error;

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
