//! A data block's columns: for each of its events, in the block's order, the minute,
//! the event type and scope, and the numbers at each content path that holds numbers,
//! packed apart from the events, so that a filtered count reads a few bytes per event
//! instead of decompressing and parsing each one. No IO.
//!
//! ```text
//! columns = flags u8 | events_len varint | minute_runs | kinds | numbers | crc32 u32
//! minute_runs = runs_len varint | (minute less the previous run's varint | events varint)*
//!               the first run's minute less the block's first key's minute
//! kinds   = width u8 | events_len codes of `width` bits: each event's type and scope,
//!           an index into the segment's list of them
//! numbers = columns_len varint | column*
//! column  = path varint (the path's id in the segment's content index) | scale u8
//!           | present: a bit per event | low zigzag varint | width u8
//!           | a value of `width` bits for each event present: its number less `low`
//! ```
//!
//! Bits are packed from the low bit of each byte up. A column's numbers are integers
//! scaled by 10^scale (scale 0 to 6) when every one of them is exactly such an integer
//! divided so (`12.34` is 1,234 at scale 2), or `f64` bits (scale `RAW_SCALE`, low 0).
//! Flag bit 0 says every number of every event of the block is in a column: a path of
//! the segment with no column in the block then has no number in it. A column holds no
//! integer beyond ±2^53, which an `f64` cannot compare exactly: such a number leaves
//! its path without a column and the block without flag bit 0.

use hashbrown::{HashMap, HashSet};

use eventline_core::content_filter::{ContentFilter, Test};
use eventline_core::event::{Event, Scope};

/// The columns of a block of events as its writer gathers them: each number by path id,
/// event and value.
#[derive(Default)]
pub(crate) struct NumbersBuilder {
    columns: HashMap<u32, Column>,
    /// Whether a number could not be kept (an integer beyond ±2^53, or a path given
    /// twice in one event, where the last occurrence counts and a column would hold
    /// both).
    incomplete: bool,
    /// The paths that have no column in the block, for that reason.
    dropped: HashSet<u32>,
}

#[derive(Default)]
struct Column {
    /// (the event's index in the block, the value)
    values: Vec<(u32, f64)>,
}

const FLAG_COMPLETE: u8 = 1;
pub(crate) const RAW_SCALE: u8 = 255;
const SCALE_MAX: u8 = 6;
/// Integers an `f64` holds exactly.
const EXACT_MAX: f64 = 9_007_199_254_740_992.0;

impl NumbersBuilder {
    /// Adds event `event`'s number at path `path`: `exact` unless it is an integer
    /// beyond ±2^53, which leaves the path without a column in the block.
    pub fn add(&mut self, path: u32, event: u32, value: f64, exact: bool) {
        if !exact {
            self.drop_path(path);
        }
        if let Some(column) = self.columns.get_mut(&path) {
            column.values.push((event, value));
        } else if !self.dropped.contains(&path) {
            self.columns.insert(
                path,
                Column {
                    values: vec![(event, value)],
                },
            );
        }
    }

    /// A path met twice in one event, or holding a number a column cannot: it has no
    /// column in the block.
    pub fn drop_path(&mut self, path: u32) {
        self.incomplete = true;
        self.columns.remove(&path);
        self.dropped.insert(path);
    }
}

/// Appends the columns of `events` (a block, in order) to `out`: kinds indexes each
/// event's type and scope in `kinds`.
pub(crate) fn encode(
    out: &mut Vec<u8>,
    events: &[(u64, Event)],
    kinds: &mut KindTable,
    numbers: NumbersBuilder,
) {
    let start = out.len();
    let mut flags = 0;
    if !numbers.incomplete {
        flags |= FLAG_COMPLETE;
    }
    out.push(flags);
    push_varint(out, events.len() as u64);
    let minute = |event: &Event| event.timestamp_ms.div_euclid(60_000);
    let mut runs: Vec<(i64, u64)> = Vec::new();
    for (_, event) in events {
        match runs.last_mut() {
            Some((last, len)) if *last == minute(event) => *len += 1,
            _ => runs.push((minute(event), 1)),
        }
    }
    push_varint(out, runs.len() as u64);
    let mut previous = events.first().map_or(0, |(_, event)| minute(event));
    for (minute, len) in runs {
        push_varint(out, (minute - previous) as u64);
        push_varint(out, len);
        previous = minute;
    }
    let codes: Vec<u64> = events
        .iter()
        .map(|(_, event)| u64::from(kinds.code(&event.event_type, event.scope)))
        .collect();
    let width = width_of(kinds.len().saturating_sub(1) as u64);
    out.push(width);
    pack(out, &codes, width);
    let mut columns: Vec<(u32, Column)> = numbers.columns.into_iter().collect();
    columns.sort_unstable_by_key(|(path, _)| *path);
    push_varint(out, columns.len() as u64);
    for (path, column) in columns {
        push_varint(out, u64::from(path));
        let (scale, integers) = scaled(&column.values);
        out.push(scale);
        let mut present = vec![0_u8; events.len().div_ceil(8)];
        for (event, _) in &column.values {
            present[*event as usize / 8] |= 1 << (event % 8);
        }
        out.extend_from_slice(&present);
        let low = integers.iter().copied().min().unwrap_or(0);
        push_varint(out, zigzag(low));
        let offsets: Vec<u64> = integers
            .iter()
            .map(|value| value.wrapping_sub(low) as u64)
            .collect();
        let width = width_of(offsets.iter().copied().max().unwrap_or(0));
        out.push(width);
        pack(out, &offsets, width);
    }
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The values as integers at the smallest scale that holds each exactly, or their
/// `f64` bits.
fn scaled(values: &[(u32, f64)]) -> (u8, Vec<i64>) {
    for scale in 0..=SCALE_MAX {
        let power = 10_f64.powi(i32::from(scale));
        let integers: Option<Vec<i64>> = values
            .iter()
            .map(|(_, value)| {
                let integer = (value * power).round();
                (integer.abs() < EXACT_MAX && integer / power == *value).then_some(integer as i64)
            })
            .collect();
        if let Some(integers) = integers {
            return (scale, integers);
        }
    }
    let bits = values
        .iter()
        .map(|(_, value)| value.to_bits() as i64)
        .collect();
    (RAW_SCALE, bits)
}

fn value_of(scale: u8, integer: i64) -> f64 {
    match scale {
        RAW_SCALE => f64::from_bits(integer as u64),
        scale => integer as f64 / 10_f64.powi(i32::from(scale)),
    }
}

/// The event types and scopes of a segment's events, each given a code in the order
/// first met.
#[derive(Default)]
pub(crate) struct KindTable {
    kinds: Vec<(String, Scope)>,
    /// By event type: the code of each scope (app, site).
    codes: hashbrown::HashMap<String, [Option<u32>; 2]>,
}

impl KindTable {
    pub fn code(&mut self, event_type: &str, scope: Scope) -> u32 {
        let at = match scope {
            Scope::App => 0,
            Scope::Site => 1,
        };
        let codes = self.codes.entry_ref(event_type).or_default();
        if let Some(code) = codes[at] {
            return code;
        }
        let code = self.kinds.len() as u32;
        codes[at] = Some(code);
        self.kinds.push((event_type.to_owned(), scope));
        code
    }

    fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn into_list(self) -> Vec<(String, Scope)> {
        self.kinds
    }
}

/// A block's columns as read.
#[derive(Debug)]
pub(crate) struct Columns {
    complete: bool,
    /// (the minute's start in ms, how many events in a row are in it)
    pub minutes: Vec<(i64, u32)>,
    /// Each event's index into the segment's kinds.
    pub kinds: Vec<u32>,
    /// By path id: each event's number, if it has one there.
    numbers: Vec<(u32, Vec<Option<f64>>)>,
}

/// Decodes a block's columns (its CRC included), of a block whose first key is in
/// `first_minute`, whose last is in `last_minute`, in a segment of `kinds_len` kinds and
/// `paths_len` paths: `None` if the bytes do not hold.
pub(crate) fn decode(
    bytes: &[u8],
    first_minute: i64,
    last_minute: i64,
    kinds_len: usize,
    paths_len: usize,
) -> Option<Columns> {
    let (body, crc) = bytes.split_last_chunk::<4>()?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return None;
    }
    let mut reader = Bits::new(body);
    let flags = reader.byte()?;
    let events_len = usize::try_from(reader.varint()?).ok()?;
    // A block holds at most its bytes' worth of events; a bound before any allocation.
    if events_len > body.len() * 8 + 8 || flags & !FLAG_COMPLETE != 0 {
        return None;
    }
    let runs_len = reader.varint()? as usize;
    if runs_len > events_len {
        return None;
    }
    let mut minutes = Vec::with_capacity(runs_len);
    let mut minute = first_minute;
    let mut counted = 0_usize;
    for _ in 0..runs_len {
        minute = minute.checked_add(i64::try_from(reader.varint()?).ok()?)?;
        let len = u32::try_from(reader.varint()?).ok()?;
        counted = counted.checked_add(len as usize)?;
        if minute > last_minute || len == 0 {
            return None;
        }
        minutes.push((minute * 60_000, len));
    }
    if counted != events_len {
        return None;
    }
    let width = reader.byte()?;
    let kinds = reader.unpack(events_len, width)?;
    if kinds.iter().any(|code| *code as usize >= kinds_len) {
        return None;
    }
    let kinds = kinds.into_iter().map(|code| code as u32).collect();
    let columns_len = reader.varint()? as usize;
    if columns_len > paths_len {
        return None;
    }
    let mut numbers = Vec::with_capacity(columns_len);
    for _ in 0..columns_len {
        let path = u32::try_from(reader.varint()?).ok()?;
        if path as usize >= paths_len || numbers.last().is_some_and(|(last, _)| *last >= path) {
            return None;
        }
        let scale = reader.byte()?;
        if scale > SCALE_MAX && scale != RAW_SCALE {
            return None;
        }
        let present = reader.bytes(events_len.div_ceil(8))?;
        let present_len: usize = present.iter().map(|byte| byte.count_ones() as usize).sum();
        let low = unzigzag(reader.varint()?);
        let width = reader.byte()?;
        let offsets = reader.unpack(present_len, width)?;
        let mut values = vec![None; events_len];
        let mut offsets = offsets.into_iter();
        for (event, value) in values.iter_mut().enumerate() {
            if present[event / 8] & (1 << (event % 8)) != 0 {
                let integer = low.wrapping_add(offsets.next()? as i64);
                *value = Some(value_of(scale, integer));
            }
        }
        if present.len() * 8 > events_len && present[present.len() - 1] >> (events_len % 8) != 0 {
            return None;
        }
        numbers.push((path, values));
    }
    if !reader.is_empty() {
        return None;
    }
    Some(Columns {
        complete: flags & FLAG_COMPLETE != 0,
        minutes,
        kinds,
        numbers,
    })
}

impl Columns {
    /// Whether each event matches `filter`, if the columns can tell: a tree of number
    /// comparisons (`gt`, `gte`, `lt`, `lte`) whose bounds an `f64` holds exactly. `path_id`
    /// gives a path's id in the segment, if the segment lists it.
    pub fn matches(
        &self,
        filter: &ContentFilter,
        path_id: &impl Fn(&[String]) -> Option<u32>,
    ) -> Option<Vec<bool>> {
        let events_len = self.kinds.len();
        match filter {
            ContentFilter::Condition(condition) => {
                let Test::Number(op, bound) = &condition.test else {
                    return None;
                };
                let bound = exact_bound(bound)?;
                let column = path_id(&condition.path).and_then(|id| {
                    self.numbers
                        .binary_search_by_key(&id, |(path, _)| *path)
                        .ok()
                        .map(|at| &self.numbers[at].1)
                });
                match column {
                    Some(values) => Some(
                        values
                            .iter()
                            .map(|value| {
                                value.is_some_and(|value| {
                                    value.partial_cmp(&bound).is_some_and(|ordering| {
                                        eventline_core::content_filter::op_holds(*op, ordering)
                                    })
                                })
                            })
                            .collect(),
                    ),
                    // No event of the block has a number there.
                    None if self.complete => Some(vec![false; events_len]),
                    None => None,
                }
            }
            ContentFilter::And(all) => {
                let mut matched = vec![true; events_len];
                for filter in all {
                    for (matched, holds) in matched.iter_mut().zip(self.matches(filter, path_id)?) {
                        *matched &= holds;
                    }
                }
                Some(matched)
            }
            ContentFilter::Or(any) => {
                let mut matched = vec![false; events_len];
                for filter in any {
                    for (matched, holds) in matched.iter_mut().zip(self.matches(filter, path_id)?) {
                        *matched |= holds;
                    }
                }
                Some(matched)
            }
            ContentFilter::Not(filter) => Some(
                self.matches(filter, path_id)?
                    .into_iter()
                    .map(|holds| !holds)
                    .collect(),
            ),
        }
    }
}

/// The bound as an `f64`, if comparing with it as one is exact: a float, or an integer
/// within ±2^53 (the integers of a column are within it too, and two such integers
/// compare as their `f64`s do).
fn exact_bound(bound: &serde_json::Number) -> Option<f64> {
    let integer = bound
        .as_i64()
        .map(i128::from)
        .or_else(|| bound.as_u64().map(i128::from));
    match integer {
        Some(integer) => (integer.abs() <= EXACT_MAX as i128).then_some(integer as f64),
        None => bound.as_f64(),
    }
}

fn width_of(max: u64) -> u8 {
    (64 - max.leading_zeros()) as u8
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `values`, `width` bits each, from the low bit of each byte up.
fn pack(out: &mut Vec<u8>, values: &[u64], width: u8) {
    let mut buffer: u128 = 0;
    let mut filled = 0_u32;
    for value in values {
        buffer |= u128::from(*value) << filled;
        filled += u32::from(width);
        while filled >= 8 {
            out.push(buffer as u8);
            buffer >>= 8;
            filled -= 8;
        }
    }
    if filled > 0 {
        out.push(buffer as u8);
    }
}

/// A reader of a columns' bytes.
struct Bits<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Bits<'b> {
    fn new(bytes: &'b [u8]) -> Bits<'b> {
        Bits { bytes, at: 0 }
    }

    fn is_empty(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn bytes(&mut self, len: usize) -> Option<&'b [u8]> {
        let bytes = self.bytes.get(self.at..self.at.checked_add(len)?)?;
        self.at += len;
        Some(bytes)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0_u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// `len` values of `width` bits, as `pack` wrote them.
    fn unpack(&mut self, len: usize, width: u8) -> Option<Vec<u64>> {
        if width > 64 {
            return None;
        }
        let bytes = self.bytes((len * usize::from(width)).div_ceil(8))?;
        let mut values = Vec::with_capacity(len);
        let mut buffer: u128 = 0;
        let mut filled = 0_u32;
        let mut next = bytes.iter();
        let mask = if width == 64 {
            u64::MAX
        } else {
            (1_u64 << width) - 1
        };
        for _ in 0..len {
            while filled < u32::from(width) {
                buffer |= u128::from(*next.next()?) << filled;
                filled += 8;
            }
            values.push(buffer as u64 & mask);
            buffer >>= width;
            filled -= u32::from(width);
        }
        // The padding of the last byte is zeros.
        (buffer == 0).then_some(values)
    }
}

#[cfg(test)]
mod tests;
