//! The log's events held in memory, indexed for every read the server makes. No IO.

use std::collections::{BTreeMap, BTreeSet};

// hashbrown's `entry_ref` looks a key up by `&str` and copies it only to insert it: the
// standard map's `entry` takes a `String`, one allocation per event and map.
use hashbrown::HashMap;
use serde::ser::{Serialize, SerializeSeq, Serializer};
use std::ops::Bound;

use eventline_core::cursor::StreamCursor;
use eventline_core::event::{Event, Scope};
use eventline_core::query::{Filter, Order, PageQuery, Start};
use eventline_core::stats::StatsRow;
use uuid::Uuid;

use super::segment::Minutes;
use crate::StreamChunk;
use eventline_core::stats::StatsPart;

/// A read in commit order looks at no more positions than this: a filter that matches
/// nothing answers how far it got instead of walking every event.
const STREAM_SCAN_LEN_MAX: usize = 100_000;
/// What an event costs in memory beyond its text: the struct, four index entries, the
/// maps' spare room and the allocator's rounding. Measured: 741 MB of peak RSS for
/// 1,000,000 events of 207 bytes of text each (`bench/perf`, the import's buffers
/// included), so that the bound in bytes is near what the process holds.
const EVENT_OVERHEAD_BYTES: usize = 540;

/// (timestamp, id): the page order.
type TimeKey = (i64, Uuid);

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

/// Events per type, and per type, scope and minute or hour: what stats and the event
/// types are answered from, for the memtable and for the segments.
#[derive(Default)]
pub(crate) struct Counts {
    types: HashMap<String, u64>,
    per_minute: Rollup,
    per_hour: Rollup,
}

impl Counts {
    /// Adds `delta` to the event's counts.
    pub fn add(&mut self, event: &Event, delta: i64) {
        self.add_minute(
            &event.event_type,
            floor_to(event.timestamp_ms, MINUTE_MS),
            event.scope,
            delta,
        );
    }

    fn add_minute(&mut self, event_type: &str, minute_ms: i64, scope: Scope, delta: i64) {
        let mut counts = [0; 2];
        counts[scope_index(scope)] = delta;
        units_of(&mut self.per_minute, MINUTE_MS, event_type).add(minute_ms, counts);
        units_of(&mut self.per_hour, HOUR_MS, event_type).add(minute_ms, counts);
        self.add_type(event_type, delta);
    }

    fn add_type(&mut self, event_type: &str, delta: i64) {
        let types = self.types.entry_ref(event_type).or_default();
        *types = types.saturating_add_signed(delta);
        if *types == 0 {
            self.types.remove(event_type);
        }
    }

    /// Adds counts per minute, as a segment's footer keeps them. Each type is looked up
    /// once, and each count is an index into its hour: a store of 10,000,000 events
    /// opens millions of them.
    pub fn add_minutes(&mut self, minutes: &Minutes) {
        for (event_type, units) in minutes {
            self.add_type_minutes(event_type, units);
        }
    }

    /// Adds another's counts: a flushed memtable's, as its segment's writer counted them.
    pub fn add_counts(&mut self, other: &Counts) {
        for (event_type, units) in &other.per_minute {
            self.add_type_minutes(event_type, &units.counts(i64::MIN, i64::MAX));
        }
    }

    /// Adds the counts per minute of one event type.
    fn add_type_minutes(&mut self, event_type: &str, units: &[(i64, [u64; 2])]) {
        let per_minute = units_of(&mut self.per_minute, MINUTE_MS, event_type);
        let mut total = 0u64;
        for (minute_ms, counts) in units {
            per_minute.add(*minute_ms, counts.map(|count| count as i64));
            total += counts[0] + counts[1];
        }
        let per_hour = units_of(&mut self.per_hour, HOUR_MS, event_type);
        for (minute_ms, counts) in units {
            per_hour.add(*minute_ms, counts.map(|count| count as i64));
        }
        self.add_type(event_type, total as i64);
    }

    /// The counts of stats part `part` matching the filter's scope and types.
    pub fn tally(&self, part: StatsPart, filter: &Filter, tally: &mut Tally) {
        match part {
            StatsPart::Minutes { from_ms, to_ms } => {
                tally.add_rollup(&self.per_minute, filter, from_ms, to_ms);
            }
            StatsPart::Hours { from_ms, to_ms } => {
                tally.add_rollup(&self.per_hour, filter, from_ms, to_ms);
            }
            StatsPart::Events { .. } => {}
        }
    }

    /// Adds the event types and their counts to `types`.
    pub fn add_types(&self, types: &mut BTreeMap<String, u64>) {
        for (name, count) in &self.types {
            *types.entry(name.clone()).or_default() += count;
        }
    }
}

/// Serialized as a segment's footer keeps the counts (`Minutes`): for each event type,
/// its minutes with events, with their counts. Written from the counts as they are,
/// since a list of them took 20 MB for a segment of 3,000,000 events.
impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.per_minute
                .iter()
                .map(|(event_type, units)| (event_type, SerializedUnits(units))),
        )
    }
}

/// A type's units with events, serialized as a list of (start, counts).
struct SerializedUnits<'u>(&'u Units);

impl Serialize for SerializedUnits<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut len = 0;
        self.0.each(i64::MIN, i64::MAX, |_, _| len += 1);
        let mut units = serializer.serialize_seq(Some(len))?;
        let mut serialized = Ok(());
        self.0.each(i64::MIN, i64::MAX, |start_ms, counts| {
            if serialized.is_ok() {
                serialized = units.serialize_element(&(start_ms, counts));
            }
        });
        serialized?;
        units.end()
    }
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

    fn matching<'s: 'f, 'f>(
        &'s self,
        filter: &'f Filter,
        keys: impl Iterator<Item = &'s TimeKey> + 'f,
    ) -> impl Iterator<Item = &'s Event> + 'f {
        keys.filter_map(|(_, id)| self.get(id))
            .filter(move |event| filter.matches(event))
    }

    /// The first `fetch` events matching the query's filter in its order, after its
    /// cursor if it has one: a skip is the caller's, over every source merged.
    pub fn page(&self, query: &PageQuery, fetch: usize) -> Vec<Event> {
        let filter = &query.filter;
        let keys = self.window(filter);
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
        for event in self.matching(&window, self.window(&window)) {
            tally.add(event.timestamp_ms, &event.event_type, 1);
        }
    }
}

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

fn floor_to(ms: i64, unit_ms: i64) -> i64 {
    ms.div_euclid(unit_ms) * unit_ms
}

/// Events per event type and start of a minute or hour, by scope (app, site). Keyed by
/// type first, so that counting an event looks its type up without copying it.
type Rollup = HashMap<String, Units>;

/// Units (minutes or hours) in a chunk of `Units`: an hour of minutes.
const CHUNK_UNITS: i64 = 60;
/// Units with events a chunk holds as a list before it becomes an array: an array takes
/// 480 bytes, a list 12 bytes per unit. A memtable's events are spread over time (an
/// import of a month of events), most of its chunks hold one or two units, and arrays
/// for them took a kilobyte per event.
const SPARSE_UNITS_MAX: usize = 8;

/// The counts of one event type per unit of time, by scope: chunks of `CHUNK_UNITS`
/// units, one per chunk of time that has events, so that a count is found by an index
/// (or a short list) rather than a search of every unit.
struct Units {
    unit_ms: i64,
    chunks: BTreeMap<i64, Chunk>,
}

/// The counts of a chunk's units: a list sorted by unit while few have events, then an
/// array indexed by unit. Counts take 32 bits, half the memory of 64 (the counts per
/// minute of 10,000,000 events took about 40 MB at the import's peak); a chunk with a
/// count past `u32::MAX` becomes `Wide` and stays exact.
enum Chunk {
    Sparse(Vec<(u8, [u32; 2])>),
    Dense(Box<[[u32; 2]]>),
    Wide(Box<[[u64; 2]]>),
}

impl Chunk {
    fn get(&self, at: u8) -> [u64; 2] {
        match self {
            Chunk::Sparse(slots) => slots
                .binary_search_by_key(&at, |(unit, _)| *unit)
                .map_or([0; 2], |index| slots[index].1.map(u64::from)),
            Chunk::Dense(slots) => slots[usize::from(at)].map(u64::from),
            Chunk::Wide(slots) => slots[usize::from(at)],
        }
    }

    /// Adds `delta` (by scope) to unit `at`'s counts, which never go below zero.
    fn add(&mut self, at: u8, delta: [i64; 2]) {
        let current = self.get(at);
        let counts = [
            current[0].saturating_add_signed(delta[0]),
            current[1].saturating_add_signed(delta[1]),
        ];
        if let Chunk::Wide(slots) = self {
            slots[usize::from(at)] = counts;
            return;
        }
        match (u32::try_from(counts[0]), u32::try_from(counts[1])) {
            (Ok(app), Ok(site)) => self.set_narrow(at, [app, site]),
            _ => {
                let mut wide: Box<[[u64; 2]]> =
                    (0..CHUNK_UNITS as u8).map(|unit| self.get(unit)).collect();
                wide[usize::from(at)] = counts;
                *self = Chunk::Wide(wide);
            }
        }
    }

    /// Sets unit `at`'s counts; a list that would outgrow `SPARSE_UNITS_MAX` becomes an
    /// array first.
    fn set_narrow(&mut self, at: u8, counts: [u32; 2]) {
        if let Chunk::Sparse(slots) = self
            && slots.len() >= SPARSE_UNITS_MAX
            && slots.binary_search_by_key(&at, |(unit, _)| *unit).is_err()
        {
            let mut dense = vec![[0; 2]; CHUNK_UNITS as usize].into_boxed_slice();
            for (unit, counts) in slots.drain(..) {
                dense[usize::from(unit)] = counts;
            }
            *self = Chunk::Dense(dense);
        }
        match self {
            Chunk::Sparse(slots) => match slots.binary_search_by_key(&at, |(unit, _)| *unit) {
                Ok(index) => slots[index].1 = counts,
                Err(index) => slots.insert(index, (at, counts)),
            },
            Chunk::Dense(slots) => slots[usize::from(at)] = counts,
            Chunk::Wide(slots) => slots[usize::from(at)] = counts.map(u64::from),
        }
    }
}

impl Units {
    /// Adds `delta` (by scope) to the count of the unit holding `timestamp_ms`.
    fn add(&mut self, timestamp_ms: i64, delta: [i64; 2]) {
        let unit = timestamp_ms.div_euclid(self.unit_ms);
        let chunk = self
            .chunks
            .entry(unit.div_euclid(CHUNK_UNITS))
            .or_insert_with(|| Chunk::Sparse(Vec::with_capacity(1)));
        chunk.add(unit.rem_euclid(CHUNK_UNITS) as u8, delta);
    }

    /// The units in [`from_ms`, `to_ms`) with events: their starts and counts.
    fn counts(&self, from_ms: i64, to_ms: i64) -> Vec<(i64, [u64; 2])> {
        let mut counts = Vec::new();
        self.each(from_ms, to_ms, |start_ms, slot| {
            counts.push((start_ms, slot))
        });
        counts
    }

    /// Visits the units in [`from_ms`, `to_ms`) with events, in order: their starts and
    /// counts.
    fn each(&self, from_ms: i64, to_ms: i64, mut visit: impl FnMut(i64, [u64; 2])) {
        let (from, to) = (
            from_ms.div_euclid(self.unit_ms),
            to_ms.div_euclid(self.unit_ms),
        );
        let first_chunk = from.div_euclid(CHUNK_UNITS);
        let last_chunk = to.div_euclid(CHUNK_UNITS);
        for (chunk, slots) in self.chunks.range(first_chunk..=last_chunk) {
            let mut add = |at: usize, slot: [u64; 2]| {
                let unit = chunk * CHUNK_UNITS + at as i64;
                if (from..to).contains(&unit) && slot != [0, 0] {
                    visit(unit * self.unit_ms, slot);
                }
            };
            match slots {
                Chunk::Sparse(slots) => {
                    for (at, slot) in slots {
                        add(usize::from(*at), slot.map(u64::from));
                    }
                }
                Chunk::Dense(slots) => {
                    for (at, slot) in slots.iter().enumerate() {
                        add(at, slot.map(u64::from));
                    }
                }
                Chunk::Wide(slots) => {
                    for (at, slot) in slots.iter().enumerate() {
                        add(at, *slot);
                    }
                }
            }
        }
    }
}

/// The counts of `event_type` in `rollup`, made empty if the type has none yet.
fn units_of<'a>(rollup: &'a mut Rollup, unit_ms: i64, event_type: &str) -> &'a mut Units {
    // `entry_ref` copies the type's name only for a type not seen yet.
    rollup.entry_ref(event_type).or_insert_with(|| Units {
        unit_ms,
        chunks: BTreeMap::new(),
    })
}

fn scope_index(scope: Scope) -> usize {
    match scope {
        Scope::App => 0,
        Scope::Site => 1,
    }
}

/// Stats counts being added up, per bucket and type.
pub(crate) struct Tally {
    bucket_ms: i64,
    /// By bucket, then type: a type's name is copied once per bucket, not per event.
    counts: BTreeMap<i64, HashMap<String, u64>>,
}

impl Tally {
    pub fn new(bucket_ms: i64) -> Tally {
        Tally {
            bucket_ms,
            counts: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, timestamp_ms: i64, event_type: &str, count: u64) {
        let bucket = floor_to(timestamp_ms, self.bucket_ms);
        *self
            .counts
            .entry(bucket)
            .or_default()
            .entry_ref(event_type)
            .or_default() += count;
    }

    /// The rollup's counts of the units in [`from_ms`, `to_ms`) that match the filter's
    /// scope and types.
    fn add_rollup(&mut self, rollup: &Rollup, filter: &Filter, from_ms: i64, to_ms: i64) {
        for (event_type, units) in rollup {
            if !filter.event_types.is_empty() && !filter.event_types.contains(event_type) {
                continue;
            }
            for (unit_ms, counts) in units.counts(from_ms, to_ms) {
                let count = match filter.scope {
                    Some(scope) => counts[scope_index(scope)],
                    None => counts[0] + counts[1],
                };
                if count > 0 {
                    self.add(unit_ms, event_type, count);
                }
            }
        }
    }

    pub fn rows(self) -> Vec<StatsRow> {
        let mut rows = Vec::new();
        for (start_ms, types) in self.counts {
            let mut types: Vec<(String, u64)> = types.into_iter().collect();
            types.sort_unstable();
            rows.extend(types.into_iter().map(|(event_type, count)| StatsRow {
                start_ms,
                event_type,
                count,
            }));
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::{CHUNK_UNITS, Chunk, Counts, MINUTE_MS, SPARSE_UNITS_MAX};
    use crate::log::segment::Minutes;
    use eventline_core::event::Scope;

    fn counts(chunk: &Chunk) -> Vec<(u8, [u64; 2])> {
        (0..CHUNK_UNITS as u8)
            .map(|at| (at, chunk.get(at)))
            .filter(|(_, counts)| *counts != [0, 0])
            .collect()
    }

    #[test]
    fn a_chunk_keeps_its_counts_from_list_to_array_to_wide() {
        let mut chunk = Chunk::Sparse(Vec::new());
        for at in 0..=SPARSE_UNITS_MAX as u8 {
            chunk.add(at * 2, [1, i64::from(at)]);
        }
        assert!(matches!(chunk, Chunk::Dense(_)));
        let before = counts(&chunk);
        assert_eq!(before.len(), SPARSE_UNITS_MAX + 1);

        // Past 32 bits: the chunk widens and every count stays.
        chunk.add(4, [i64::from(u32::MAX), 0]);
        assert!(matches!(chunk, Chunk::Wide(_)));
        assert_eq!(chunk.get(4), [u64::from(u32::MAX) + 1, 2]);
        chunk.add(4, [-i64::from(u32::MAX), 0]);
        assert_eq!(counts(&chunk), before);

        // Counts never go below zero.
        chunk.add(0, [-5, -5]);
        assert_eq!(chunk.get(0), [0, 0]);
    }

    #[test]
    fn counts_serialize_as_the_minutes_a_footer_reads() {
        let mut counts = Counts::default();
        counts.add_minute("purchase", 3 * MINUTE_MS, Scope::App, 2);
        counts.add_minute("purchase", MINUTE_MS, Scope::Site, 1);
        counts.add_minute("purchase", 3 * MINUTE_MS, Scope::Site, 4);
        counts.add_minute("login", -MINUTE_MS, Scope::App, 1);
        // Counted and taken back: the type is listed with no minutes.
        counts.add_minute("logout", 0, Scope::App, 1);
        counts.add_minute("logout", 0, Scope::App, -1);

        let encoded = postcard::to_stdvec(&counts).expect("counts serialize");
        let mut minutes: Minutes = postcard::from_bytes(&encoded).expect("minutes deserialize");
        minutes.sort();
        assert_eq!(
            minutes,
            vec![
                ("login".to_owned(), vec![(-MINUTE_MS, [1, 0])]),
                ("logout".to_owned(), vec![]),
                (
                    "purchase".to_owned(),
                    vec![(MINUTE_MS, [0, 1]), (3 * MINUTE_MS, [2, 4])]
                ),
            ]
        );

        let mut added = Counts::default();
        added.add_counts(&counts);
        added.add_minutes(&minutes);
        let encoded = postcard::to_stdvec(&added).expect("counts serialize");
        let mut doubled: Minutes = postcard::from_bytes(&encoded).expect("minutes deserialize");
        doubled.sort();
        assert_eq!(
            doubled[2].1,
            vec![(MINUTE_MS, [0, 2]), (3 * MINUTE_MS, [4, 8])]
        );
    }

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
