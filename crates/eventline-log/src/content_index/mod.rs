//! A segment's content index: for every path its events' `content` has a value at, how
//! many values of each JSON type it holds and which data blocks hold one; for a path of
//! few distinct values (a store, a plan, a country), which blocks hold each value. A
//! filtered read looks up the blocks that may match and decodes only those. No IO: the
//! block lists (*postings*) are written and read by the segment, checked here.
//!
//! ```text
//! postings = kind u8 | body | crc32 u32 of kind and body
//!   kind 0: block numbers, increasing, as LEB128 varints: the first, then each less
//!           the one before
//!   kind 1: a bitmap, bit b of byte b / 8 set for block b, over every block
//! ```
//!
//! A writer picks the shorter kind. The paths and their values, with each postings'
//! place, are in the segment's footer (`ContentIndex`), which a store keeps in memory:
//! about 60 bytes per distinct value of an indexed path, a few kilobytes per segment.

use hashbrown::HashMap;
use hashbrown::hash_map::EntryRef;

use eventline_core::content_filter::ContentFilter;
use eventline_core::content_leaves::{self, JsonType, Leaf, Need};
use eventline_core::event::Scope;
use serde::{Deserialize, Serialize};

use eventline_core::properties::{PropertiesTally, ValuesTally};

use crate::columns::NumbersBuilder;

/// Paths a segment lists at most: events with more distinct paths than this leave the
/// rest unlisted, and a filter on one of those reads every block.
pub(crate) const PATHS_MAX: usize = 512;
/// Distinct values a path may have in a segment and still be indexed by value: past
/// this it is a path of ids or amounts, whose values an index would hold once per
/// event, and only its blocks are listed.
pub(crate) const VALUES_MAX: usize = 1_024;
/// The longest value key indexed: a path with a longer value is not indexed by value.
pub(crate) const VALUE_KEY_BYTES_MAX: usize = 64;

const KIND_NUMBERS: u8 = 0;
const KIND_BITMAP: u8 = 1;

/// Where a postings list is in the segment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PostingsRef {
    pub offset: u64,
    pub len: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ContentIndex {
    /// Whether every path of every event is listed. A segment of an earlier format lists
    /// none and is not complete: its filters read every block.
    pub complete: bool,
    /// Sorted by keys.
    pub paths: Vec<PathEntry>,
    /// The event types and scopes the blocks' columns (`columns`) name, by code.
    pub kinds: Vec<(String, Scope)>,
    /// The blocks' columns are written in groups of this many blocks' (the last group
    /// may have fewer), each group after its last block, so that a writer holds one
    /// group at a time.
    pub columns_group_blocks: u32,
    /// Where each group's columns are.
    pub columns_groups: Vec<u64>,
    /// Each block's columns' length, in block order: a group's follow one another.
    pub columns_lens: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PathEntry {
    pub keys: Vec<String>,
    /// The path's number in the blocks' columns: `0..paths.len()`, in the order the
    /// writer met them.
    pub id: u32,
    /// For each event type and scope (a code into `ContentIndex::kinds`) with values at
    /// the path, how many of each JSON type, in `JsonType::ALL` order.
    pub types: Vec<(u32, [u64; 6])>,
    /// The blocks holding a value at the path.
    pub blocks: PostingsRef,
    /// Each value's key (`content_leaves`), events and blocks, sorted by key, when the
    /// path has at most `VALUES_MAX` distinct scalar values, none longer than
    /// `VALUE_KEY_BYTES_MAX`.
    pub values: Option<Vec<ValueEntry>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ValueEntry {
    pub key: Vec<u8>,
    pub events_len: u64,
    pub blocks: PostingsRef,
}

/// Where an index says a filter may hold.
pub(crate) enum Lookup<'i> {
    /// Every block may.
    Anywhere,
    /// The blocks of any of these postings.
    Postings(Vec<&'i PostingsRef>),
}

impl ContentIndex {
    /// Every postings list the index names.
    pub fn postings(&self) -> impl Iterator<Item = &PostingsRef> {
        self.paths.iter().flat_map(|path| {
            std::iter::once(&path.blocks)
                .chain(path.values.iter().flatten().map(|value| &value.blocks))
        })
    }

    /// Adds the paths' counts of values by JSON type to `tally`: of events of type
    /// `event_type` only, if given.
    pub fn properties(&self, event_type: Option<&str>, tally: &mut PropertiesTally) {
        if !self.complete {
            tally.mark_incomplete();
        }
        for path in &self.paths {
            let mut types = [0; 6];
            for (kind, counts) in &path.types {
                let wanted = event_type.is_none_or(|wanted| {
                    self.kinds
                        .get(*kind as usize)
                        .is_some_and(|(event_type, _)| event_type == wanted)
                });
                if wanted {
                    for (count, more) in types.iter_mut().zip(counts) {
                        *count += more;
                    }
                }
            }
            tally.add(&path.keys, &types);
        }
    }

    /// Adds the path's values and their events to `tally`.
    pub fn values(&self, keys: &[String], tally: &mut ValuesTally) {
        match self.path(keys) {
            Some(PathEntry {
                values: Some(values),
                ..
            }) => {
                for value in values {
                    tally.add(&value.key, value.events_len);
                }
            }
            Some(path) => {
                // Scalars the index does not count by value.
                let scalars = path
                    .types
                    .iter()
                    .any(|(_, counts)| counts[..4].iter().any(|count| *count > 0));
                if scalars {
                    tally.mark_incomplete();
                }
            }
            None if self.complete => {}
            None => tally.mark_incomplete(),
        }
    }

    pub fn path(&self, keys: &[String]) -> Option<&PathEntry> {
        self.paths
            .binary_search_by(|entry| entry.keys.as_slice().cmp(keys))
            .ok()
            .map(|at| &self.paths[at])
    }

    /// The postings whose union holds every block where `need` may hold.
    fn lookup(&self, need: &Need<'_>) -> Lookup<'_> {
        let keys = match need {
            Need::Anywhere => return Lookup::Anywhere,
            Need::Path(keys) | Need::Values(keys, _) => keys,
        };
        let Some(entry) = self.path(keys) else {
            return match self.complete {
                true => Lookup::Postings(Vec::new()),
                false => Lookup::Anywhere,
            };
        };
        match (need, &entry.values) {
            (Need::Values(_, wanted), Some(values)) => Lookup::Postings(
                wanted
                    .iter()
                    .filter_map(|key| {
                        values
                            .binary_search_by(|value| value.key.as_slice().cmp(key))
                            .ok()
                            .map(|at| &values[at].blocks)
                    })
                    .collect(),
            ),
            _ => Lookup::Postings(vec![&entry.blocks]),
        }
    }

    /// The blocks (of `blocks_len`) where `filter` may hold, `None` for every block;
    /// each postings list read by `read`.
    pub fn blocks<E>(
        &self,
        filter: &ContentFilter,
        blocks_len: u32,
        read: &mut impl FnMut(&PostingsRef) -> Result<BlockSet, E>,
    ) -> Result<Option<BlockSet>, E> {
        Ok(match filter {
            ContentFilter::Condition(condition) => match self.lookup(&condition.need()) {
                Lookup::Anywhere => None,
                Lookup::Postings(postings) => {
                    let mut set = BlockSet::empty(blocks_len);
                    for postings in postings {
                        set.union(&read(postings)?);
                    }
                    Some(set)
                }
            },
            ContentFilter::And(all) => {
                let mut set: Option<BlockSet> = None;
                for filter in all {
                    if let Some(narrowed) = self.blocks(filter, blocks_len, read)? {
                        match &mut set {
                            Some(set) => set.intersect(&narrowed),
                            None => set = Some(narrowed),
                        }
                    }
                }
                set
            }
            ContentFilter::Or(any) => {
                let mut set = BlockSet::empty(blocks_len);
                for filter in any {
                    match self.blocks(filter, blocks_len, read)? {
                        Some(narrowed) => set.union(&narrowed),
                        None => return Ok(None),
                    }
                }
                Some(set)
            }
            // Where a filter may hold says nothing of where it may fail.
            ContentFilter::Not(_) => None,
        })
    }
}

/// A set of a segment's blocks, as a bitmap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockSet {
    words: Vec<u64>,
}

impl BlockSet {
    pub fn empty(blocks_len: u32) -> BlockSet {
        BlockSet {
            words: vec![0; (blocks_len as usize).div_ceil(64)],
        }
    }

    pub fn contains(&self, block: usize) -> bool {
        self.words
            .get(block / 64)
            .is_some_and(|word| word & (1 << (block % 64)) != 0)
    }

    fn insert(&mut self, block: usize) {
        self.words[block / 64] |= 1 << (block % 64);
    }

    fn union(&mut self, other: &BlockSet) {
        for (word, other) in self.words.iter_mut().zip(&other.words) {
            *word |= other;
        }
    }

    fn intersect(&mut self, other: &BlockSet) {
        for (word, other) in self.words.iter_mut().zip(&other.words) {
            *word &= other;
        }
    }

    pub fn len(&self) -> usize {
        self.words
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum()
    }
}

/// Decodes a postings list (every byte of it, its CRC included) of a segment of
/// `blocks_len` blocks; `None` if its bytes do not hold.
pub(crate) fn decode_postings(bytes: &[u8], blocks_len: u32) -> Option<BlockSet> {
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return None;
    }
    let (kind, body) = body.split_first()?;
    let mut set = BlockSet::empty(blocks_len);
    match *kind {
        KIND_NUMBERS => {
            let mut at = 0;
            let mut block: Option<u64> = None;
            while at < body.len() {
                let (delta, len) = varint(&body[at..])?;
                at += len;
                let next = match block {
                    None => delta,
                    Some(block) if delta > 0 => block.checked_add(delta)?,
                    Some(_) => return None,
                };
                if next >= u64::from(blocks_len) {
                    return None;
                }
                set.insert(next as usize);
                block = Some(next);
            }
        }
        KIND_BITMAP => {
            if body.len() != (blocks_len as usize).div_ceil(8) {
                return None;
            }
            // A word at a time: a large segment's bitmap covers tens of thousands of blocks.
            for (word, bytes) in set.words.iter_mut().zip(body.chunks(8)) {
                let mut eight = [0; 8];
                eight[..bytes.len()].copy_from_slice(bytes);
                *word = u64::from_le_bytes(eight);
            }
            // No bit past the last block.
            let used = blocks_len as usize % 64;
            if used != 0 && set.words.last().is_some_and(|last| last >> used != 0) {
                return None;
            }
        }
        _ => return None,
    }
    Some(set)
}

fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0_u64;
    for (at, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f).checked_shl(7 * at as u32)?;
        if byte & 0x80 == 0 {
            return Some((value, at + 1));
        }
    }
    None
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A list of blocks as it grows: each block once, in order, as varint deltas.
#[derive(Default)]
struct BlockList {
    last: Option<u32>,
    deltas: Vec<u8>,
    len: u32,
}

impl BlockList {
    fn add(&mut self, block: u32) {
        if self.last == Some(block) {
            return;
        }
        let delta = block - self.last.map_or(0, |last| last);
        push_varint(&mut self.deltas, u64::from(delta));
        self.last = Some(block);
        self.len += 1;
    }

    /// The list's postings (its CRC included) in a segment of `blocks_len` blocks: the
    /// shorter of the two kinds.
    fn encode(&self, blocks_len: u32) -> Vec<u8> {
        let bitmap_len = (blocks_len as usize).div_ceil(8);
        let mut out = Vec::with_capacity(self.deltas.len().min(bitmap_len) + 5);
        if self.deltas.len() <= bitmap_len {
            out.push(KIND_NUMBERS);
            out.extend_from_slice(&self.deltas);
        } else {
            out.push(KIND_BITMAP);
            let start = out.len();
            out.resize(start + bitmap_len, 0);
            let mut block = 0_u64;
            let mut at = 0;
            let mut first = true;
            while at < self.deltas.len() {
                let (delta, len) = varint(&self.deltas[at..]).expect("written by push_varint");
                at += len;
                block = if first { delta } else { block + delta };
                first = false;
                out[start + block as usize / 8] |= 1 << (block % 8);
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

struct PathBuilder {
    keys: Vec<String>,
    id: u32,
    /// The (block, event) where the path was last met: met again in the same event, a
    /// key was given twice.
    last_met: Option<(u32, u32)>,
    /// By event kind code: values of each JSON type.
    types: Vec<[u64; 6]>,
    blocks: BlockList,
    /// Each value's events and blocks, until the path proves to have too many or too
    /// long values.
    values: Option<HashMap<Vec<u8>, (u64, BlockList)>>,
}

/// Where a segment's writer put the blocks' columns, and the kinds they name.
pub(crate) struct Columns {
    pub group_blocks: u32,
    pub groups: Vec<u64>,
    pub lens: Vec<u32>,
    pub kinds: Vec<(String, Scope)>,
}

/// A segment's content index as its writer builds it, block by block. Holds each
/// listed path's and value's blocks: at most `PATHS_MAX` paths of `VALUES_MAX` values,
/// a byte or two per block each.
pub(crate) struct ContentIndexBuilder {
    /// By the path's keys, each preceded by its length.
    paths: HashMap<Vec<u8>, PathBuilder>,
    complete: bool,
    path_code: Vec<u8>,
    value_key: Vec<u8>,
}

impl Default for ContentIndexBuilder {
    fn default() -> ContentIndexBuilder {
        ContentIndexBuilder {
            paths: HashMap::new(),
            complete: true,
            path_code: Vec::new(),
            value_key: Vec::new(),
        }
    }
}

impl ContentIndexBuilder {
    /// Adds the values of an event's `content`, event `event` of block `block` (blocks
    /// and events in order) of kind `kind` (its type and scope's code), and its numbers
    /// to the block's `numbers`.
    pub fn add(
        &mut self,
        block: u32,
        event: u32,
        kind: u32,
        content: &str,
        numbers: &mut NumbersBuilder,
    ) {
        let ContentIndexBuilder {
            paths,
            complete,
            path_code,
            value_key,
        } = self;
        let paths_len = &mut paths.len();
        // Stored content was validated when it was posted; were it not JSON, the values
        // read before the error are listed, and a filter matches no such event anyway.
        let _ = content_leaves::visit(content, &mut |path, leaf| {
            path_code.clear();
            for key in path {
                path_code.extend_from_slice(&(key.len() as u32).to_le_bytes());
                path_code.extend_from_slice(key.as_bytes());
            }
            let entry = match paths.entry_ref(path_code.as_slice()) {
                EntryRef::Occupied(occupied) => occupied.into_mut(),
                EntryRef::Vacant(_) if *paths_len == PATHS_MAX => {
                    *complete = false;
                    return;
                }
                EntryRef::Vacant(vacant) => {
                    *paths_len += 1;
                    vacant.insert(PathBuilder {
                        keys: path.iter().map(|key| key.to_string()).collect(),
                        id: *paths_len as u32 - 1,
                        last_met: None,
                        types: Vec::new(),
                        blocks: BlockList::default(),
                        values: Some(HashMap::new()),
                    })
                }
            };
            if entry.last_met == Some((block, event)) {
                numbers.drop_path(entry.id);
            }
            entry.last_met = Some((block, event));
            match leaf {
                Leaf::Number(number) => numbers.add(entry.id, event, number, true),
                Leaf::WideInteger(number) => numbers.add(entry.id, event, number, false),
                _ => {}
            }
            let json_type = leaf.json_type();
            let at = JsonType::ALL
                .iter()
                .position(|listed| *listed == json_type)
                .unwrap_or(0);
            let kind = kind as usize;
            if entry.types.len() <= kind {
                entry.types.resize(kind + 1, [0; 6]);
            }
            entry.types[kind][at] += 1;
            entry.blocks.add(block);
            // A path of too many values is no longer indexed by value: its values are
            // not even copied.
            if entry.values.is_none() {
                return;
            }
            value_key.clear();
            if !leaf.write_key(value_key) {
                return;
            }
            let too_many = match &mut entry.values {
                None => return,
                Some(_) if value_key.len() > VALUE_KEY_BYTES_MAX => true,
                Some(values) => {
                    let (events_len, blocks) = values.entry_ref(value_key.as_slice()).or_default();
                    *events_len += 1;
                    blocks.add(block);
                    values.len() > VALUES_MAX
                }
            };
            if too_many {
                entry.values = None;
            }
        });
    }

    /// The index of a segment of `blocks_len` blocks, each postings list handed to
    /// `write`, which answers where it put it; `columns` says where the blocks' columns
    /// are and what they name.
    pub fn finish<E>(
        self,
        blocks_len: u32,
        columns: Columns,
        mut write: impl FnMut(&[u8]) -> Result<PostingsRef, E>,
    ) -> Result<ContentIndex, E> {
        let mut built: Vec<PathBuilder> = self.paths.into_values().collect();
        built.sort_unstable_by(|one, other| one.keys.cmp(&other.keys));
        let mut paths = Vec::with_capacity(built.len());
        for path in built {
            let blocks = write(&path.blocks.encode(blocks_len))?;
            let values = match path.values {
                None => None,
                Some(values) => {
                    let mut values: Vec<_> = values.into_iter().collect();
                    values.sort_unstable_by(|one, other| one.0.cmp(&other.0));
                    let mut entries = Vec::with_capacity(values.len());
                    for (key, (events_len, list)) in values {
                        entries.push(ValueEntry {
                            key,
                            events_len,
                            blocks: write(&list.encode(blocks_len))?,
                        });
                    }
                    Some(entries)
                }
            };
            paths.push(PathEntry {
                keys: path.keys,
                id: path.id,
                types: (path.types.iter().enumerate())
                    .filter(|(_, types)| types.iter().any(|count| *count > 0))
                    .map(|(kind, types)| (kind as u32, *types))
                    .collect(),
                blocks,
                values,
            });
        }
        let Columns {
            group_blocks: columns_group_blocks,
            groups: columns_groups,
            lens: columns_lens,
            kinds,
        } = columns;
        Ok(ContentIndex {
            complete: self.complete,
            paths,
            kinds,
            columns_group_blocks,
            columns_groups,
            columns_lens,
        })
    }
}

#[cfg(test)]
mod tests;
