//! Filtered reads of a segment: pages and counts, through the content index's postings
//! and the blocks' columns, each checked before use.

use eventline_core::content_filter::ContentFilter;
use eventline_core::event::Event;
use eventline_core::query::{Filter, Order};

use super::*;
use crate::columns;
use crate::content_index::{BlockSet, PostingsRef, decode_postings};
use crate::counts::Tally;
use crate::disk::Disk;
use crate::error::Error;
use crate::record::{Stored, TimeKey};

impl Segment {
    /// The blocks holding a time in [`since`, `until`), in order: found by a search,
    /// since blocks are in time order and a large segment has tens of thousands.
    fn blocks_overlapping(&self, since: i64, until: i64) -> std::ops::Range<usize> {
        let index = self.index.as_ref();
        let start = index.blocks.partition_point(|block| block.last.0 < since);
        let end = index
            .block_firsts_ms
            .partition_point(|first_ms| *first_ms < until);
        start..end.max(start)
    }

    /// The blocks where `content` may hold, by the segment's content index: `None` for
    /// every block.
    pub(crate) fn content_blocks(
        &self,
        disk: &dyn Disk,
        content: &ContentFilter,
    ) -> Result<Option<BlockSet>, Error> {
        let blocks_len = self.index.blocks.len() as u32;
        self.index
            .content
            .blocks(content, blocks_len, &mut |postings: &PostingsRef| {
                self.read_postings(disk, postings)
            })
    }

    pub(super) fn read_postings(
        &self,
        disk: &dyn Disk,
        postings: &PostingsRef,
    ) -> Result<BlockSet, Error> {
        let bytes = disk
            .read_at(&self.path, postings.offset, postings.len as usize)
            .map_err(io_error(&self.path))?;
        decode_postings(&bytes, self.index.blocks.len() as u32).ok_or_else(|| {
            damaged(
                &self.path,
                postings.offset,
                "a postings list cannot be read",
            )
        })
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
        if fetch > 0 {
            self.for_each(disk, filter, order, after, |event| {
                events.push(event);
                events.len() < fetch
            })?;
        }
        Ok(events)
    }

    /// Hands `visit` each event matching `filter` in `order`, after `after` (exclusive,
    /// in that order), until it answers `false`; a block at a time, so that a count over
    /// millions of events holds one block.
    pub fn for_each(
        &self,
        disk: &dyn Disk,
        filter: &Filter,
        order: Order,
        after: Option<TimeKey>,
        mut visit: impl FnMut(Event) -> bool,
    ) -> Result<(), Error> {
        let mut more = true;
        // A segment whose time range misses the window has nothing to read.
        if filter
            .until_ms
            .is_some_and(|until| self.timestamp_min >= until)
            || filter
                .since_ms
                .is_some_and(|since| self.timestamp_max < since)
        {
            return Ok(());
        }
        // The blocks the content index says may match: `None` for every one.
        let candidates = match &filter.content {
            Some(content) => self.content_blocks(disk, content)?,
            None => None,
        };
        if candidates.as_ref().is_some_and(|set| set.len() == 0) {
            return Ok(());
        }
        let candidate = |block: usize| candidates.as_ref().is_none_or(|set| set.contains(block));
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
            let keys: Vec<(TimeKey, u32)> = keys
                .into_iter()
                .filter(|(key, block)| beyond(*key) && candidate(*block as usize))
                .collect();
            // The contact's events block by block, each block read once and only its
            // events of the contact built; then in the page's order.
            let mut at = 0;
            while at < keys.len() && more {
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
                    if more && filter.matches(&stored.event) {
                        more = visit(stored.event);
                    }
                }
                at += run;
            }
            return Ok(());
        }
        let since = filter.since_ms.unwrap_or(i64::MIN);
        let until = filter.until_ms.unwrap_or(i64::MAX);
        let overlapping: Vec<usize> = self
            .blocks_overlapping(since, until)
            .filter(|index| candidate(*index))
            .collect();
        let ordered: Box<dyn Iterator<Item = usize>> = match order {
            Order::Asc => Box::new(overlapping.into_iter()),
            Order::Desc => Box::new(overlapping.into_iter().rev()),
        };
        for index in ordered {
            if !more {
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
            let mut offer = |stored: Stored| {
                let key = (stored.event.timestamp_ms, stored.event.id);
                if more && beyond(key) && filter.matches(&stored.event) {
                    more = visit(stored.event);
                }
            };
            match order {
                Order::Asc => stored.into_iter().for_each(&mut offer),
                Order::Desc => stored.into_iter().rev().for_each(&mut offer),
            }
        }
        Ok(())
    }

    /// Adds the events matching `filter` to `tally`, by minute and type: from the
    /// blocks' columns where they can tell (a block wholly inside the window, a content
    /// filter of number comparisons), from the events elsewhere.
    pub fn count(&self, disk: &dyn Disk, filter: &Filter, tally: &mut Tally) -> Result<(), Error> {
        let index = self.index.as_ref();
        let content = match &filter.content {
            Some(content) if filter.contact_id.is_none() && !index.columns.is_empty() => content,
            _ => {
                return self.for_each(disk, filter, Order::Asc, None, |event| {
                    tally.add(event.timestamp_ms, &event.event_type, 1);
                    true
                });
            }
        };
        let since = filter.since_ms.unwrap_or(i64::MIN);
        let until = filter.until_ms.unwrap_or(i64::MAX);
        if self.timestamp_min >= until || self.timestamp_max < since {
            return Ok(());
        }
        let candidates = self.content_blocks(disk, content)?;
        let blocks: Vec<usize> = self
            .blocks_overlapping(since, until)
            .filter(|at| candidates.as_ref().is_none_or(|set| set.contains(*at)))
            .collect();
        let kinds = &index.content.kinds;
        let kind_counts = kinds
            .iter()
            .map(|(event_type, scope)| {
                filter.scope.is_none_or(|wanted| wanted == *scope)
                    && (filter.event_types.is_empty() || filter.event_types.contains(event_type))
            })
            .collect::<Vec<bool>>();
        let path_id = |keys: &[String]| index.content.path(keys).map(|path| path.id);
        let mut per_kind = vec![0_u64; kinds.len()];
        let mut at = 0;
        while at < blocks.len() {
            // A run of blocks whose columns follow one another, read at once.
            let first = blocks[at];
            let mut last = first;
            let start = index.columns[first].0;
            let end_of = |block: usize| index.columns[block].0 + u64::from(index.columns[block].1);
            while at + 1 < blocks.len()
                && blocks[at + 1] == last + 1
                && index.columns[last + 1].0 == end_of(last)
                && end_of(last + 1) - start <= COLUMNS_READ_BYTES_MAX
            {
                at += 1;
                last += 1;
            }
            at += 1;
            let bytes = disk
                .read_at(&self.path, start, (end_of(last) - start) as usize)
                .map_err(io_error(&self.path))?;
            for block in first..=last {
                let place = &index.blocks[block];
                let matched = if place.first.0 >= since && place.last.0 < until {
                    let from = (index.columns[block].0 - start) as usize;
                    let to = from + index.columns[block].1 as usize;
                    let columns = self.decode_columns(block, &bytes[from..to])?;
                    let matched = columns.matches(content, &path_id);
                    matched.map(|matched| (columns, matched))
                } else {
                    None
                };
                let Some((columns, matched)) = matched else {
                    for stored in self.read_block(disk, block)? {
                        if filter.matches(&stored.event) {
                            tally.add(stored.event.timestamp_ms, &stored.event.event_type, 1);
                        }
                    }
                    continue;
                };
                let mut event = 0;
                for (minute_ms, len) in &columns.minutes {
                    for _ in 0..*len {
                        let kind = columns.kinds[event] as usize;
                        if matched[event] && kind_counts[kind] {
                            per_kind[kind] += 1;
                        }
                        event += 1;
                    }
                    for (kind, count) in per_kind.iter_mut().enumerate() {
                        if *count > 0 {
                            tally.add(*minute_ms, &kinds[kind].0, *count);
                            *count = 0;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Segment {
    /// Reads every block's columns, as `eventline check` does.
    pub(super) fn verify_columns(&self, disk: &dyn Disk) -> Result<(), Error> {
        let index = self.index.as_ref();
        for (block, (offset, len)) in index.columns.iter().enumerate() {
            let bytes = disk
                .read_at(&self.path, *offset, *len as usize)
                .map_err(io_error(&self.path))?;
            self.decode_columns(block, &bytes)?;
        }
        Ok(())
    }

    /// Block `block`'s columns from their bytes, checked.
    fn decode_columns(&self, block: usize, bytes: &[u8]) -> Result<columns::Columns, Error> {
        let index = self.index.as_ref();
        let place = &index.blocks[block];
        columns::decode(
            bytes,
            place.first.0.div_euclid(60_000),
            place.last.0.div_euclid(60_000),
            index.content.kinds.len(),
            index.content.paths.len(),
        )
        .ok_or_else(|| {
            damaged(
                &self.path,
                index.columns[block].0,
                "a block's columns cannot be read",
            )
        })
    }
}

/// The columns of consecutive blocks are read at once up to this many bytes.
const COLUMNS_READ_BYTES_MAX: u64 = 1 << 20;
