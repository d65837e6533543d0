//! The counts the store keeps at ingest: events per type, and per type, scope and
//! minute or hour, for the memtable and for the segments (a segment's footer keeps its
//! counts per minute); and the tally a stats query adds them up in. No IO.

use std::collections::BTreeMap;

use hashbrown::HashMap;
use serde::ser::{Serialize, SerializeSeq, Serializer};

use eventline_core::event::{Event, Scope};
use eventline_core::query::Filter;
use eventline_core::stats::{StatsPart, StatsRow};

/// Events per event type and start of a minute, by scope: a segment's share of the
/// store's counts, as its footer keeps them.
pub(crate) type Minutes = Vec<(String, Vec<(i64, [u64; 2])>)>;

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
    use super::{CHUNK_UNITS, Chunk, Counts, MINUTE_MS, Minutes, SPARSE_UNITS_MAX};
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
}
