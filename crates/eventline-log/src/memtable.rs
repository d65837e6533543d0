//! The log's events held in memory, indexed for every read the server makes. No IO.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

// hashbrown's `entry_ref` looks a key up by `&str` and copies it only to insert it: the
// standard map's `entry` takes a `String`, one allocation per event and map.
use hashbrown::HashMap;
use std::ops::Bound;

use eventline_core::cursor::StreamCursor;
use eventline_core::event::Event;
use eventline_core::properties::{PropertiesTally, ValuesTally};
use eventline_core::query::{Filter, Order, PageQuery, Start};
use uuid::Uuid;

use crate::counts::{Counts, Tally};
use crate::memtable_index::{Candidates, MemtableIndex};
use crate::record::TimeKey;
use eventline_core::stream::StreamChunk;

/// A filtered read looks at the events the content index names only when they are at
/// most this share (1 in N) of the memtable's: past it, a walk in order that stops at
/// the page's end looks at fewer.
const CANDIDATES_SHARE_MAX: usize = 8;
/// A read in commit order looks at no more positions than this: a filter that matches
/// nothing answers how far it got instead of walking every event.
const STREAM_SCAN_LEN_MAX: usize = 100_000;
/// What an event costs in memory beyond its text: the struct, four index entries, the
/// maps' spare room and the allocator's rounding. Measured: 741 MB of peak RSS for
/// 1,000,000 events of 207 bytes of text each (`bench/perf`, the import's buffers
/// included), so that the bound in bytes is near what the process holds.
const EVENT_OVERHEAD_BYTES: usize = 540;

struct Entry {
    seq: u64,
    /// The log file holding the event.
    file: u32,
    event: Event,
}

/// What a log file holds, for retention.
#[derive(Default, Clone, Copy)]
struct FileEvents {
    len: usize,
    /// The newest timestamp the file ever held: never less than what it holds now.
    timestamp_max: i64,
}

/// A contact's events in the memtable. Most contacts of a memtable have one event (a
/// memtable of 85,000 events of the bench's 100,000 contacts) or a few, and a set
/// would take a tree node of 300 bytes for each.
enum ContactKeys {
    One(TimeKey),
    /// Sorted, at most `CONTACT_FEW_MAX`.
    Few(Vec<TimeKey>),
    Many(BTreeSet<TimeKey>),
}

/// A contact's events held in a sorted list: an insert moves at most this many keys.
const CONTACT_FEW_MAX: usize = 8;

impl ContactKeys {
    fn insert(&mut self, key: TimeKey) {
        match self {
            ContactKeys::One(one) if *one == key => {}
            ContactKeys::One(one) => {
                let mut few = vec![*one, key];
                few.sort_unstable();
                *self = ContactKeys::Few(few);
            }
            ContactKeys::Few(few) => match few.binary_search(&key) {
                Ok(_) => {}
                Err(at) if few.len() < CONTACT_FEW_MAX => few.insert(at, key),
                Err(_) => {
                    let mut many: BTreeSet<TimeKey> = few.drain(..).collect();
                    many.insert(key);
                    *self = ContactKeys::Many(many);
                }
            },
            ContactKeys::Many(keys) => {
                keys.insert(key);
            }
        }
    }

    /// Removes `key`; whether none are left.
    fn remove(&mut self, key: &TimeKey) -> bool {
        match self {
            ContactKeys::One(one) => one == key,
            ContactKeys::Few(few) => {
                if let Ok(at) = few.binary_search(key) {
                    few.remove(at);
                }
                few.is_empty()
            }
            ContactKeys::Many(keys) => {
                keys.remove(key);
                keys.is_empty()
            }
        }
    }

    fn range(
        &self,
        range: (Bound<TimeKey>, Bound<TimeKey>),
    ) -> Box<dyn DoubleEndedIterator<Item = &TimeKey> + '_> {
        match self {
            ContactKeys::One(one) => Box::new(
                std::iter::once(one)
                    .filter(move |key| std::ops::RangeBounds::contains(&range, *key)),
            ),
            ContactKeys::Few(few) => Box::new(
                few.iter()
                    .filter(move |key| std::ops::RangeBounds::contains(&range, *key)),
            ),
            ContactKeys::Many(keys) => Box::new(keys.range(range)),
        }
    }
}

#[derive(Default)]
pub(crate) struct Memtable {
    /// Boxed: when the map grows it moves its slots, and a 24-byte slot moves six times
    /// faster than a whole event. With millions of events that move stalls the writer,
    /// and every post waiting on it.
    by_id: HashMap<Uuid, Box<Entry>>,
    by_time: BTreeSet<TimeKey>,
    by_contact: HashMap<String, ContactKeys>,
    by_seq: BTreeMap<u64, Uuid>,
    files: BTreeMap<u32, FileEvents>,
    counts: Counts,
    /// The position after the last one given: positions are never given twice, even
    /// when the newest events are deleted.
    seq_end: u64,
    bytes: usize,
    /// Built by the filtered reads, for the events committed before them.
    content_index: Mutex<MemtableIndex>,
}

impl Memtable {
    pub fn new() -> Memtable {
        Memtable {
            seq_end: 1,
            ..Memtable::default()
        }
    }

    pub fn get(&self, id: &Uuid) -> Option<&Event> {
        self.by_id.get(id).map(|entry| &entry.event)
    }

    pub fn seq_end(&self) -> u64 {
        self.seq_end
    }

    /// The memory the events take, as estimated for the store's bound.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn event_bytes(event: &Event) -> usize {
        EVENT_OVERHEAD_BYTES
            + event.event_type.len()
            + event.content.get().len()
            + event.contact_id.as_ref().map_or(0, String::len)
    }

    /// Positions up to `seq_end` are taken, stored or not.
    pub fn reserve(&mut self, seq_end: u64) {
        self.seq_end = self.seq_end.max(seq_end);
    }

    pub fn insert(&mut self, seq: u64, file: u32, event: Event) {
        let content_index = self
            .content_index
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if seq < content_index.indexed_end() {
            // Events below the positions indexed (a failed flush's, absorbed): the index
            // is built again by the next filtered read.
            *content_index = MemtableIndex::default();
        }
        let key = (event.timestamp_ms, event.id);
        self.bytes += Memtable::event_bytes(&event);
        self.by_time.insert(key);
        if let Some(contact_id) = &event.contact_id {
            match self.by_contact.entry_ref(contact_id.as_str()) {
                hashbrown::hash_map::EntryRef::Occupied(mut keys) => keys.get_mut().insert(key),
                hashbrown::hash_map::EntryRef::Vacant(vacant) => {
                    vacant.insert(ContactKeys::One(key));
                }
            }
        }
        self.by_seq.insert(seq, event.id);
        self.counts.add(&event, 1);
        let file_events = self.files.entry(file).or_default();
        file_events.len += 1;
        file_events.timestamp_max = file_events.timestamp_max.max(event.timestamp_ms);
        self.reserve(seq + 1);
        if let Some(replaced) = self
            .by_id
            .insert(event.id, Box::new(Entry { seq, file, event }))
        {
            // Ids are unique in the log; a second copy would be a bug upstream. Keep the
            // indexes true to `by_id` whatever happened.
            self.forget_indexes(&replaced);
        }
    }

    /// Inserts every event of `other` (a frozen memtable whose flush failed).
    pub fn absorb(&mut self, other: &Memtable) {
        for entry in other.by_id.values() {
            self.insert(entry.seq, entry.file, entry.event.clone());
        }
    }

    /// Removes the events with these ids; how many there were.
    pub fn remove(&mut self, ids: &[Uuid]) -> u64 {
        // The index counts values: built again by the next read that needs it.
        *self
            .content_index
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = MemtableIndex::default();
        let mut removed = 0;
        for id in ids {
            if let Some(entry) = self.by_id.remove(id) {
                self.forget_indexes(&entry);
                removed += 1;
            }
        }
        removed
    }

    fn forget_indexes(&mut self, entry: &Entry) {
        let event = &entry.event;
        let key = (event.timestamp_ms, event.id);
        self.bytes = self.bytes.saturating_sub(Memtable::event_bytes(event));
        self.by_time.remove(&key);
        if let Some(contact_id) = &event.contact_id
            && let Some(keys) = self.by_contact.get_mut(contact_id)
            && keys.remove(&key)
        {
            self.by_contact.remove(contact_id);
        }
        if self.by_seq.get(&entry.seq) == Some(&event.id) {
            self.by_seq.remove(&entry.seq);
        }
        self.counts.add(event, -1);
        if let Some(file_events) = self.files.get_mut(&entry.file) {
            file_events.len -= 1;
        }
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Every event with its position, in (timestamp, id) order: a segment's contents.
    pub fn events_by_time(&self) -> Vec<(u64, &Event)> {
        self.by_time
            .iter()
            .filter_map(|(_, id)| {
                let entry = self.by_id.get(id)?;
                Some((entry.seq, &entry.event))
            })
            .collect()
    }

    /// The lowest position an event held here has.
    pub fn seq_first(&self) -> Option<u64> {
        self.by_seq.keys().next().copied()
    }

    /// The contact's events: (file, id) of each.
    pub fn contact_events(&self, contact_id: &str) -> Vec<(u32, Uuid)> {
        self.by_contact
            .get(contact_id)
            .into_iter()
            .flat_map(|keys| keys.range((Bound::Unbounded, Bound::Unbounded)))
            .filter_map(|(_, id)| Some((self.by_id.get(id)?.file, *id)))
            .collect()
    }

    /// At most `limit` events with a timestamp before `cutoff_ms`, oldest first: (file, id).
    pub fn events_before(&self, cutoff_ms: i64, limit: usize) -> Vec<(u32, Uuid)> {
        self.by_time
            .range(..(cutoff_ms, Uuid::nil()))
            .take(limit)
            .filter_map(|(_, id)| Some((self.by_id.get(id)?.file, *id)))
            .collect()
    }

    /// How many events file `file` holds.
    pub fn file_len(&self, file: u32) -> usize {
        self.files
            .get(&file)
            .map_or(0, |file_events| file_events.len)
    }

    /// The events of the files other than `active` that hold nothing from `cutoff_ms`
    /// on: (file, id) of each. Retention removes such files whole.
    pub fn expired_files(&self, cutoff_ms: i64, active: u32) -> Vec<(u32, Uuid)> {
        let files: Vec<u32> = self
            .files
            .iter()
            .filter(|(file, file_events)| **file != active && file_events.timestamp_max < cutoff_ms)
            .map(|(file, _)| *file)
            .collect();
        if files.is_empty() {
            return Vec::new();
        }
        self.by_id
            .iter()
            .filter(|(_, entry)| files.contains(&entry.file))
            .map(|(id, entry)| (entry.file, *id))
            .collect()
    }

    /// The keys matching the filter's contact and time window, in page order.
    fn window(&self, filter: &Filter) -> Box<dyn DoubleEndedIterator<Item = &TimeKey> + '_> {
        let low = match filter.since_ms {
            Some(since_ms) => Bound::Included((since_ms, Uuid::nil())),
            None => Bound::Unbounded,
        };
        let high = match filter.until_ms {
            Some(until_ms) => Bound::Excluded((until_ms, Uuid::nil())),
            None => Bound::Unbounded,
        };
        match &filter.contact_id {
            Some(contact_id) => match self.by_contact.get(contact_id) {
                Some(keys) => keys.range((low, high)),
                None => Box::new(std::iter::empty()),
            },
            None => Box::new(self.by_time.range((low, high))),
        }
    }

    fn matching<'s: 'f, 'k: 'f, 'f>(
        &'s self,
        filter: &'f Filter,
        keys: impl Iterator<Item = &'k TimeKey> + 'f,
    ) -> impl Iterator<Item = &'s Event> + 'f {
        keys.filter_map(|(_, id)| self.get(id))
            .filter(move |event| filter.matches(event))
    }

    /// The keys of the events the content index says may match `filter`'s content, in
    /// (timestamp, id) order, when they are few enough that looking at them beats a walk
    /// in order that stops at the page's end: `None` otherwise.
    fn content_keys(&self, filter: &Filter) -> Option<Vec<TimeKey>> {
        let content = filter.content.as_ref()?;
        let index = self.content_index();
        let Candidates::Positions(positions) = index.candidates(content) else {
            return None;
        };
        drop(index);
        if positions.len() > self.by_id.len() / CANDIDATES_SHARE_MAX {
            return None;
        }
        let mut keys: Vec<TimeKey> = positions
            .iter()
            .filter_map(|seq| {
                let id = self.by_seq.get(seq)?;
                let entry = self.by_id.get(id)?;
                Some((entry.event.timestamp_ms, *id))
            })
            .collect();
        keys.sort_unstable();
        Some(keys)
    }

    /// The content index, with every event committed so far in it.
    fn content_index(&self) -> std::sync::MutexGuard<'_, MemtableIndex> {
        let mut index = self
            .content_index
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (seq, id) in self.by_seq.range(index.indexed_end()..) {
            if let Some(entry) = self.by_id.get(id) {
                index.add(*seq, &entry.event.event_type, entry.event.content.get());
            }
        }
        index
    }

    /// Adds the content paths of the events (of type `event_type`, if given) to `tally`.
    pub fn properties(&self, event_type: Option<&str>, tally: &mut PropertiesTally) {
        self.content_index().properties(event_type, tally);
    }

    /// Adds the values of the path `keys` to `tally`.
    pub fn property_values(&self, keys: &[String], tally: &mut ValuesTally) {
        self.content_index().values(keys, tally);
    }

    /// The first `fetch` events matching the query's filter in its order, after its
    /// cursor if it has one: a skip is the caller's, over every source merged.
    pub fn page(&self, query: &PageQuery, fetch: usize) -> Vec<Event> {
        let filter = &query.filter;
        match self.content_keys(filter) {
            Some(keys) => self.page_of(query, Box::new(keys.iter()), fetch),
            None => self.page_of(query, self.window(filter), fetch),
        }
    }

    fn page_of<'k>(
        &self,
        query: &PageQuery,
        keys: Box<dyn DoubleEndedIterator<Item = &'k TimeKey> + 'k>,
        fetch: usize,
    ) -> Vec<Event> {
        let filter = &query.filter;
        let after = match query.start {
            Start::After(cursor) => Some((cursor.timestamp_ms, cursor.id)),
            Start::First | Start::Skip(_) => None,
        };
        match query.order {
            Order::Asc => {
                let keys = keys.skip_while(move |key| after.is_some_and(|after| **key <= after));
                self.matching(filter, keys).take(fetch).cloned().collect()
            }
            Order::Desc => {
                let keys = keys
                    .rev()
                    .skip_while(move |key| after.is_some_and(|after| **key >= after));
                self.matching(filter, keys).take(fetch).cloned().collect()
            }
        }
    }

    /// The position of the last event ever committed.
    pub fn head(&self) -> StreamCursor {
        StreamCursor::at_seq(self.seq_end - 1)
    }

    pub fn stream(&self, filter: &Filter, after: StreamCursor, limit: u32) -> StreamChunk {
        let mut events = Vec::new();
        let mut positions = self
            .by_seq
            .range((Bound::Excluded(after.commit), Bound::Unbounded));
        let mut scanned = 0;
        while events.len() < limit as usize {
            let Some((seq, id)) = positions.next() else {
                break;
            };
            if let Some(event) = self.get(id)
                && filter.matches(event)
            {
                events.push((StreamCursor::at_seq(*seq), event.clone()));
            }
            scanned += 1;
            if scanned == STREAM_SCAN_LEN_MAX && events.len() < limit as usize {
                // Only what was looked at is answered for.
                return StreamChunk {
                    events,
                    upto: StreamCursor::at_seq(*seq),
                };
            }
        }
        StreamChunk::from_rows(events, limit, after, self.head())
    }

    /// Adds the events in [`from_ms`, `to_ms`) matching the filter to `tally`.
    pub fn count_events(&self, filter: &Filter, from_ms: i64, to_ms: i64, tally: &mut Tally) {
        let window = Filter {
            since_ms: Some(from_ms),
            until_ms: Some(to_ms),
            ..filter.clone()
        };
        let indexed = self.content_keys(&window);
        let keys = match &indexed {
            Some(keys) => Box::new(keys.iter()),
            None => self.window(&window),
        };
        for event in self.matching(&window, keys) {
            tally.add(event.timestamp_ms, &event.event_type, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_contact_keeps_its_keys_in_order_from_one_to_few_to_many() {
        use super::{CONTACT_FEW_MAX, ContactKeys};
        use std::ops::Bound;
        use uuid::Uuid;

        let key = |n: u32| (i64::from(n % 5), Uuid::from_u128(u128::from(n)));
        let all = || (Bound::Unbounded, Bound::Unbounded);
        let mut keys = ContactKeys::One(key(0));
        let mut expected = vec![key(0)];
        for n in (1..=CONTACT_FEW_MAX as u32 + 3).rev() {
            keys.insert(key(n));
            keys.insert(key(n));
            expected.push(key(n));
            expected.sort_unstable();
            let seen: Vec<_> = keys.range(all()).copied().collect();
            assert_eq!(seen, expected);
            let backwards: Vec<_> = keys.range(all()).rev().copied().collect();
            assert!(backwards.iter().eq(expected.iter().rev()));
        }
        assert!(matches!(keys, ContactKeys::Many(_)));
        let window: Vec<_> = keys
            .range((Bound::Included(key(1)), Bound::Excluded((3, Uuid::nil()))))
            .copied()
            .collect();
        let wanted: Vec<_> = expected
            .iter()
            .copied()
            .filter(|item| *item >= key(1) && item.0 < 3)
            .collect();
        assert_eq!(window, wanted);

        let mut few = ContactKeys::One(key(1));
        few.insert(key(2));
        assert!(matches!(few, ContactKeys::Few(_)));
        assert!(!few.remove(&key(1)));
        assert!(!few.remove(&key(7)));
        assert!(few.remove(&key(2)));
    }
}
