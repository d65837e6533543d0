//! The memtable's content index: for each value of a path of few distinct values, the
//! positions of the events holding it, so that a filtered read of the memtable looks at
//! those events instead of every one. Built lazily: a filtered read first indexes the
//! events committed since the last one, so that commits pay nothing for it. No IO.

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;

use eventline_core::content_filter::ContentFilter;
use eventline_core::content_leaves::{self, JsonType, Need};
use eventline_core::properties::{PropertiesTally, ValuesTally};

use crate::bloom::Bloom;
use crate::content_index::{PATHS_MAX, VALUE_KEY_BYTES_MAX, VALUES_MAX};

/// Where the index says a filter may hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Candidates {
    /// Any event may.
    Anywhere,
    /// These positions, in order, may; no other.
    Positions(Vec<u64>),
}

#[derive(Default)]
pub(crate) struct MemtableIndex {
    /// Events at positions below this are indexed.
    indexed_end: u64,
    /// By hash of (path, value key): the positions holding the value, in order.
    values: HashMap<u64, Vec<u64>>,
    /// By hash of path: what the indexed events hold there.
    paths: HashMap<u64, PathStats>,
    /// Whether some path of an indexed event is not in `paths` (more than `PATHS_MAX`).
    incomplete: bool,
}

struct PathStats {
    keys: Vec<String>,
    /// By event type: values of each JSON type (`JsonType::ALL` order).
    types: HashMap<String, [u64; 6]>,
    /// Events by value key, until the path has more than `VALUES_MAX` values or one
    /// longer than `VALUE_KEY_BYTES_MAX` (it is then no longer indexed by value).
    values: Option<HashMap<Vec<u8>, u64>>,
}

/// A path's keys, each preceded by its length.
fn path_code(out: &mut Vec<u8>, keys: impl IntoIterator<Item = impl AsRef<str>>) {
    out.clear();
    for key in keys {
        let key = key.as_ref();
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
    }
}

/// The hash of a path's code and a value's key.
fn value_hash(code: &mut Vec<u8>, key: &[u8]) -> u64 {
    let path_len = code.len();
    code.push(0xff);
    code.extend_from_slice(key);
    let hash = Bloom::hash(code);
    code.truncate(path_len);
    hash
}

impl MemtableIndex {
    /// Events from this position on are not indexed yet.
    pub fn indexed_end(&self) -> u64 {
        self.indexed_end
    }

    /// Indexes the event at `seq` (above every position indexed before), of type
    /// `event_type`.
    pub fn add(&mut self, seq: u64, event_type: &str, content: &str) {
        let MemtableIndex {
            values,
            paths,
            incomplete,
            ..
        } = self;
        let mut code = Vec::new();
        let mut key = Vec::new();
        // Stored content was validated when it was posted.
        let _ = content_leaves::visit(content, &mut |path, leaf| {
            path_code(&mut code, path);
            let paths_len = paths.len();
            let stats = match paths.entry(Bloom::hash(&code)) {
                Entry::Occupied(occupied) => occupied.into_mut(),
                Entry::Vacant(_) if paths_len == PATHS_MAX => {
                    *incomplete = true;
                    return;
                }
                Entry::Vacant(vacant) => vacant.insert(PathStats {
                    keys: path.iter().map(|key| key.to_string()).collect(),
                    types: HashMap::new(),
                    values: Some(HashMap::new()),
                }),
            };
            let json_type = leaf.json_type();
            let at = JsonType::ALL
                .iter()
                .position(|listed| *listed == json_type)
                .unwrap_or(0);
            stats.types.entry_ref(event_type).or_insert([0; 6])[at] += 1;
            let Some(counts) = &mut stats.values else {
                return;
            };
            key.clear();
            if !leaf.write_key(&mut key) {
                return;
            }
            if key.len() > VALUE_KEY_BYTES_MAX {
                stats.values = None;
                return;
            }
            *counts.entry_ref(key.as_slice()).or_insert(0) += 1;
            if counts.len() > VALUES_MAX {
                stats.values = None;
                return;
            }
            let positions = values.entry(value_hash(&mut code, &key)).or_default();
            if positions.last() != Some(&seq) {
                positions.push(seq);
            }
        });
        self.indexed_end = seq + 1;
    }

    /// Adds the paths' counts of values by JSON type to `tally`: of events of type
    /// `event_type` only, if given.
    pub fn properties(&self, event_type: Option<&str>, tally: &mut PropertiesTally) {
        if self.incomplete {
            tally.mark_incomplete();
        }
        for stats in self.paths.values() {
            let mut types = [0; 6];
            for (listed, counts) in &stats.types {
                if event_type.is_none_or(|wanted| wanted == listed) {
                    for (count, more) in types.iter_mut().zip(counts) {
                        *count += more;
                    }
                }
            }
            tally.add(&stats.keys, &types);
        }
    }

    /// Adds the path's values and their events to `tally`.
    pub fn values(&self, keys: &[String], tally: &mut ValuesTally) {
        let mut code = Vec::new();
        path_code(&mut code, keys.iter());
        match self.paths.get(&Bloom::hash(&code)) {
            Some(PathStats {
                values: Some(values),
                ..
            }) => {
                for (key, events) in values {
                    tally.add(key, *events);
                }
            }
            Some(stats) => {
                let scalars =
                    (stats.types.values()).any(|counts| counts[..4].iter().any(|count| *count > 0));
                if scalars {
                    tally.mark_incomplete();
                }
            }
            None if self.incomplete => tally.mark_incomplete(),
            None => {}
        }
    }

    /// Where `filter` may hold among the events indexed.
    pub fn candidates(&self, filter: &ContentFilter) -> Candidates {
        match filter {
            ContentFilter::Condition(condition) => self.lookup(&condition.need()),
            ContentFilter::And(all) => {
                let mut narrowed: Option<Vec<u64>> = None;
                for filter in all {
                    if let Candidates::Positions(positions) = self.candidates(filter) {
                        narrowed = Some(match narrowed {
                            None => positions,
                            Some(before) => intersect(&before, &positions),
                        });
                    }
                }
                narrowed.map_or(Candidates::Anywhere, Candidates::Positions)
            }
            ContentFilter::Or(any) => {
                let mut united = Vec::new();
                for filter in any {
                    match self.candidates(filter) {
                        Candidates::Positions(positions) => united.extend(positions),
                        Candidates::Anywhere => return Candidates::Anywhere,
                    }
                }
                united.sort_unstable();
                united.dedup();
                Candidates::Positions(united)
            }
            ContentFilter::Not(_) => Candidates::Anywhere,
        }
    }

    fn lookup(&self, need: &Need<'_>) -> Candidates {
        let (keys, wanted) = match need {
            Need::Anywhere => return Candidates::Anywhere,
            Need::Path(keys) => (keys, None),
            Need::Values(keys, wanted) => (keys, Some(wanted)),
        };
        let mut code = Vec::new();
        path_code(&mut code, keys.iter());
        let indexed_by_value = |stats: &PathStats| stats.values.is_some();
        match (self.paths.get(&Bloom::hash(&code)), wanted) {
            // No event indexed has the path.
            (None, _) if !self.incomplete => Candidates::Positions(Vec::new()),
            (Some(stats), Some(wanted)) if indexed_by_value(stats) => {
                let mut positions: Vec<u64> = wanted
                    .iter()
                    .filter_map(|key| self.values.get(&value_hash(&mut code, key)))
                    .flatten()
                    .copied()
                    .collect();
                positions.sort_unstable();
                positions.dedup();
                Candidates::Positions(positions)
            }
            _ => Candidates::Anywhere,
        }
    }
}

fn intersect(one: &[u64], other: &[u64]) -> Vec<u64> {
    let (mut at, mut other_at) = (0, 0);
    let mut both = Vec::new();
    while at < one.len() && other_at < other.len() {
        match one[at].cmp(&other[other_at]) {
            std::cmp::Ordering::Less => at += 1,
            std::cmp::Ordering::Greater => other_at += 1,
            std::cmp::Ordering::Equal => {
                both.push(one[at]);
                at += 1;
                other_at += 1;
            }
        }
    }
    both
}

#[cfg(test)]
mod tests {
    use eventline_core::content_filter::from_json;
    use serde_json::json;

    use super::*;

    #[test]
    fn lookups_find_the_positions_that_may_match() {
        let mut index = MemtableIndex::default();
        let contents = [
            json!({"store": "a", "n": 1}),
            json!({"store": "b", "o": {"k": true}}),
            json!({"store": "a", "n": 1.0}),
            json!({"list": [1], "store": 7}),
        ];
        for (seq, content) in contents.iter().enumerate() {
            index.add(seq as u64 + 10, "order", &content.to_string());
        }
        assert_eq!(index.indexed_end(), 14);
        let candidates =
            |node: serde_json::Value| index.candidates(&from_json(&node).expect("filter"));
        let positions = |list: &[u64]| Candidates::Positions(list.to_vec());
        assert_eq!(
            candidates(json!({"path": "store", "value": "a"})),
            positions(&[10, 12])
        );
        assert_eq!(
            candidates(json!({"path": "n", "value": 1})),
            positions(&[10, 12])
        );
        assert_eq!(
            candidates(json!({"path": "store", "op": "in", "value": ["b", 7]})),
            positions(&[11, 13])
        );
        assert_eq!(
            candidates(json!({"path": "o.k", "value": true})),
            positions(&[11])
        );
        assert_eq!(
            candidates(json!({"path": "missing", "value": 1})),
            positions(&[])
        );
        assert_eq!(
            candidates(json!({"path": "missing", "op": "gt", "value": 1})),
            positions(&[])
        );
        assert_eq!(
            candidates(json!({"path": "n", "op": "gt", "value": 0})),
            Candidates::Anywhere
        );
        assert_eq!(
            candidates(
                json!([{"path": "store", "value": "a"}, {"path": "n", "op": "gt", "value": 0}])
            ),
            positions(&[10, 12])
        );
        assert_eq!(
            candidates(json!({"or": [{"path": "store", "value": "b"}, {"path": "n", "value": 1}]})),
            positions(&[10, 11, 12])
        );
        assert_eq!(
            candidates(json!({"not": {"path": "store", "value": "a"}})),
            Candidates::Anywhere
        );
    }

    #[test]
    fn a_path_of_too_many_values_is_no_longer_looked_up() {
        let mut index = MemtableIndex::default();
        for seq in 0..=VALUES_MAX as u64 {
            index.add(seq, "order", &json!({ "id": seq, "kind": "x" }).to_string());
        }
        let candidates =
            |node: serde_json::Value| index.candidates(&from_json(&node).expect("filter"));
        assert_eq!(
            candidates(json!({"path": "id", "value": 3})),
            Candidates::Anywhere
        );
        let Candidates::Positions(kinds) = candidates(json!({"path": "kind", "value": "x"})) else {
            panic!("kind is indexed");
        };
        assert_eq!(kinds.len(), VALUES_MAX + 1);
    }
}
