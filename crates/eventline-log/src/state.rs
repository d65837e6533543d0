//! What reads see, and every read over it: the memtable, the frozen memtable of a flush
//! in flight, the segments, and the segments' counts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use eventline_core::cursor::StreamCursor;
use eventline_core::event::Event;
use eventline_core::properties::{Properties, PropertiesTally, PropertyValues, ValuesTally};
use eventline_core::query::{Filter, Order, Page, PageQuery, Start};
use eventline_core::stats::{StatsPart, StatsQuery, StatsRow, stats_parts};
use eventline_core::stream::StreamChunk;
use uuid::Uuid;

use crate::counts::{Counts, Tally};
use crate::disk::Disk;
use crate::error::Error;
use crate::memtable::Memtable;
use crate::record::Stored;
use crate::segment::Segment;

/// What reads see: the memtable, the segments, and the segments' counts.
pub(crate) struct State {
    pub(crate) memtable: Memtable,
    /// The memtable being written as a segment, read until the segment is in place.
    pub(crate) frozen: Option<Arc<Memtable>>,
    /// By number, which is also the order of their positions.
    pub(crate) segments: Vec<Segment>,
    pub(crate) segment_counts: Counts,
}

/// A segment's events in commit order, kept for a stream that reads through it a chunk
/// at a time: (the segment's generation, its events).
pub(crate) type StreamCache = Mutex<Option<(u64, Arc<Vec<Stored>>)>>;

/// A read in commit order looks at no more positions in segments than this, as in the
/// memtable: a filter that matches nothing answers how far it got.
const STREAM_SCAN_LEN_MAX: usize = 100_000;

impl State {
    /// The memtable and the frozen one, newest first.
    pub(crate) fn memtables(&self) -> impl Iterator<Item = &Memtable> {
        std::iter::once(&self.memtable).chain(self.frozen.as_deref())
    }

    pub(crate) fn in_memory(&self, id: &Uuid) -> Option<&Event> {
        self.memtables().find_map(|memtable| memtable.get(id))
    }

    /// What the memtables take, as estimated for the store's bound.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.memtables().map(Memtable::bytes).sum()
    }

    /// The stored event with this id: the memtable's, or the newest segment's that
    /// holds it.
    pub(crate) fn get(&self, disk: &dyn Disk, id: &Uuid) -> Result<Option<Event>, Error> {
        if let Some(event) = self.in_memory(id) {
            return Ok(Some(event.clone()));
        }
        for segment in self.segments.iter().rev() {
            if let Some(event) = segment.get(disk, id)? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    pub(crate) fn page(&self, disk: &dyn Disk, query: &PageQuery) -> Result<Page, Error> {
        let skip = match query.start {
            Start::Skip(skip) => usize::try_from(skip).unwrap_or(usize::MAX),
            Start::First | Start::After(_) => 0,
        };
        let fetch = skip.saturating_add(query.limit as usize + 1);
        let mut events = Vec::new();
        for memtable in self.memtables() {
            events.extend(memtable.page(query, fetch));
        }
        let after = match query.start {
            Start::After(cursor) => Some((cursor.timestamp_ms, cursor.id)),
            Start::First | Start::Skip(_) => None,
        };
        let filter = &query.filter;
        for segment in &self.segments {
            events.extend(segment.page(disk, filter, query.order, after, fetch)?);
        }
        // Each source gave its first `fetch`; the first `fetch` of all are among them.
        events.sort_unstable_by_key(|event| (event.timestamp_ms, event.id));
        if query.order == Order::Desc {
            events.reverse();
        }
        let events: Vec<Event> = events.into_iter().skip(skip).take(fetch - skip).collect();
        Ok(Page::from_rows(events, query.limit))
    }

    /// A segment's events in commit order, from the cache if it holds them.
    pub(crate) fn in_commit_order(
        disk: &dyn Disk,
        segment: &Segment,
        cache: &StreamCache,
    ) -> Result<Arc<Vec<Stored>>, Error> {
        let mut cached = cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((generation, events)) = cached.as_ref()
            && *generation == segment.generation
        {
            return Ok(Arc::clone(events));
        }
        let mut events = segment.events(disk)?;
        events.sort_unstable_by_key(|stored| stored.seq);
        let events = Arc::new(events);
        *cached = Some((segment.generation, Arc::clone(&events)));
        Ok(events)
    }

    pub(crate) fn stream(
        &self,
        disk: &dyn Disk,
        cache: &StreamCache,
        filter: &Filter,
        after: StreamCursor,
        limit: u32,
    ) -> Result<StreamChunk, Error> {
        let limit = limit as usize;
        let mut events = Vec::new();
        let mut upto = after;
        let mut scanned = 0;
        for segment in &self.segments {
            if segment.seq_end <= upto.commit + 1 || segment.events_len == 0 {
                continue;
            }
            let stored = State::in_commit_order(disk, segment, cache)?;
            let start = stored.partition_point(|stored| stored.seq <= upto.commit);
            for stored in &stored[start..] {
                if events.len() == limit {
                    return Ok(StreamChunk { events, upto });
                }
                let position = StreamCursor::at_seq(stored.seq);
                if filter.matches(&stored.event) {
                    events.push((position, stored.event.clone()));
                }
                upto = position;
                scanned += 1;
                if scanned == STREAM_SCAN_LEN_MAX {
                    // Only what was looked at is answered for.
                    return Ok(StreamChunk { events, upto });
                }
            }
            upto = upto.max(StreamCursor::at_seq(segment.seq_end - 1));
        }
        // The frozen memtable's positions come before the memtable's.
        for memtable in self.frozen.as_deref().into_iter().chain([&self.memtable]) {
            if events.len() == limit {
                return Ok(StreamChunk::from_rows(events, limit as u32, after, upto));
            }
            let rest = memtable.stream(filter, upto, (limit - events.len()) as u32);
            events.extend(rest.events);
            upto = rest.upto;
        }
        Ok(StreamChunk { events, upto })
    }

    pub(crate) fn stats(
        &self,
        disk: &dyn Disk,
        query: &StatsQuery,
    ) -> Result<Vec<StatsRow>, Error> {
        let filter = &query.filter;
        let mut tally = Tally::new(query.bucket.ms());
        for part in stats_parts(query, true) {
            let StatsPart::Events { from_ms, to_ms } = part else {
                for memtable in self.memtables() {
                    memtable.counts().tally(part, filter, &mut tally);
                }
                self.segment_counts.tally(part, filter, &mut tally);
                continue;
            };
            for memtable in self.memtables() {
                memtable.count_events(filter, from_ms, to_ms, &mut tally);
            }
            let window = Filter {
                since_ms: Some(from_ms),
                until_ms: Some(to_ms),
                ..filter.clone()
            };
            for segment in &self.segments {
                segment.count(disk, &window, &mut tally)?;
            }
        }
        Ok(tally.rows())
    }

    pub(crate) fn event_types(&self) -> Vec<(String, u64)> {
        let mut types = BTreeMap::new();
        for memtable in self.memtables() {
            memtable.counts().add_types(&mut types);
        }
        self.segment_counts.add_types(&mut types);
        types.into_iter().collect()
    }

    pub(crate) fn properties(&self, event_type: Option<&str>) -> Properties {
        let mut tally = PropertiesTally::default();
        for memtable in self.memtables() {
            memtable.properties(event_type, &mut tally);
        }
        for segment in &self.segments {
            segment.properties(event_type, &mut tally);
        }
        tally.properties()
    }

    pub(crate) fn property_values(&self, keys: &[String], limit: usize) -> PropertyValues {
        let mut tally = ValuesTally::default();
        for memtable in self.memtables() {
            memtable.property_values(keys, &mut tally);
        }
        for segment in &self.segments {
            segment.property_values(keys, &mut tally);
        }
        tally.values(limit)
    }

    pub(crate) fn head(&self) -> StreamCursor {
        self.memtable.head()
    }
}
