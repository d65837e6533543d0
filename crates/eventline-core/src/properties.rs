//! Discovery: the content paths events have, with their JSON types and how many values
//! of each, and the most common values of a path (`GET /api/properties`,
//! `GET /api/properties/values`). Stores gather them from their indexes; this module
//! merges their parts and reads the queries. No IO.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::content_filter::PATH_KEYS_MAX;
use crate::content_leaves::JsonType;
use crate::param::ParamError;

/// Paths answered at most, the most common first.
pub const PROPERTIES_MAX: usize = 1_000;
/// Values answered at most.
pub const VALUES_LIMIT_MAX: usize = 100;
const VALUES_LIMIT_DEFAULT: usize = 20;

/// A content path and how many values of each JSON type it holds
/// (`JsonType::ALL` order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub keys: Vec<String>,
    pub types: [u64; 6],
}

impl Property {
    /// Values at the path, of every type.
    pub fn events(&self) -> u64 {
        self.types.iter().sum()
    }

    /// Each JSON type the path holds, with its count.
    pub fn type_counts(&self) -> impl Iterator<Item = (JsonType, u64)> + '_ {
        JsonType::ALL
            .into_iter()
            .zip(self.types)
            .filter(|(_, count)| *count > 0)
    }
}

/// A value of a path and how many events hold it there.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyValue {
    pub value: Value,
    pub events: u64,
}

/// The most common values of a path.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PropertyValues {
    pub values: Vec<PropertyValue>,
    /// False when some of the store's events hold values at the path that it does not
    /// count by value: more than a thousand distinct ones, or long ones (a path of ids
    /// or free text). The values answered are then those it counts.
    pub complete: bool,
}

/// The content paths of a store's events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// The most common first, at most `PROPERTIES_MAX`.
    pub properties: Vec<Property>,
    /// False when some events were not counted: a store of more paths than it lists, or
    /// one that reads a sample (PostgreSQL reads the newest `SAMPLE_EVENTS`).
    pub complete: bool,
}

/// The events a store that has no index of its content reads, the newest first, to
/// answer discovery.
pub const SAMPLE_EVENTS: usize = 100_000;

/// Paths gathered from a store's parts (segments, memtables): added up by path.
#[derive(Debug)]
pub struct PropertiesTally {
    paths: BTreeMap<Vec<String>, [u64; 6]>,
    complete: bool,
}

impl Default for PropertiesTally {
    fn default() -> PropertiesTally {
        PropertiesTally {
            paths: BTreeMap::new(),
            complete: true,
        }
    }
}

impl PropertiesTally {
    /// A part holds paths it does not list.
    pub fn mark_incomplete(&mut self) {
        self.complete = false;
    }

    pub fn add(&mut self, keys: &[String], types: &[u64; 6]) {
        let counts = self.paths.entry(keys.to_vec()).or_insert([0; 6]);
        for (count, more) in counts.iter_mut().zip(types) {
            *count += more;
        }
    }

    /// The paths, the most common first (then by path), at most `PROPERTIES_MAX`.
    pub fn properties(self) -> Properties {
        let complete = self.complete;
        let mut properties: Vec<Property> = self
            .paths
            .into_iter()
            .filter(|(_, types)| types.iter().any(|count| *count > 0))
            .map(|(keys, types)| Property { keys, types })
            .collect();
        properties.sort_by(|one, other| {
            other
                .events()
                .cmp(&one.events())
                .then_with(|| one.keys.cmp(&other.keys))
        });
        properties.truncate(PROPERTIES_MAX);
        Properties {
            properties,
            complete,
        }
    }
}

/// Values gathered from a store's parts, added up by value key
/// (`content_leaves::Leaf::write_key`).
#[derive(Debug)]
pub struct ValuesTally {
    values: BTreeMap<Vec<u8>, u64>,
    complete: bool,
}

impl Default for ValuesTally {
    fn default() -> ValuesTally {
        ValuesTally {
            values: BTreeMap::new(),
            complete: true,
        }
    }
}

impl ValuesTally {
    pub fn add(&mut self, key: &[u8], events: u64) {
        *self.values.entry(key.to_vec()).or_insert(0) += events;
    }

    /// A part holds values at the path it does not count by value.
    pub fn mark_incomplete(&mut self) {
        self.complete = false;
    }

    /// The `limit` most common values (then in key order).
    pub fn values(self, limit: usize) -> PropertyValues {
        let mut values: Vec<(Vec<u8>, u64)> = self.values.into_iter().collect();
        values.sort_by(|one, other| other.1.cmp(&one.1).then_with(|| one.0.cmp(&other.0)));
        PropertyValues {
            values: values
                .into_iter()
                .filter_map(|(key, events)| {
                    Some(PropertyValue {
                        value: key_value(&key)?,
                        events,
                    })
                })
                .take(limit)
                .collect(),
            complete: self.complete,
        }
    }
}

/// The value a key (`content_leaves::Leaf::write_key`) was made from.
pub fn key_value(key: &[u8]) -> Option<Value> {
    let (tag, rest) = key.split_first()?;
    match (tag, rest) {
        (b's', text) => std::str::from_utf8(text)
            .ok()
            .map(|text| Value::String(text.to_owned())),
        (b'n', bytes) => {
            let number = f64::from_le_bytes(bytes.try_into().ok()?);
            // Integers read as integers: `42`, not `42.0`.
            if number.fract() == 0.0 && number.abs() < 9_007_199_254_740_992.0 {
                Some(Value::from(number as i64))
            } else {
                serde_json::Number::from_f64(number).map(Value::Number)
            }
        }
        (b't', []) => Some(Value::Bool(true)),
        (b'f', []) => Some(Value::Bool(false)),
        (b'z', []) => Some(Value::Null),
        _ => None,
    }
}

/// `GET /api/properties`: `event_type` (optional, once).
pub fn properties_query<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Option<String>, ParamError> {
    let mut event_type = None;
    for (name, value) in pairs {
        match name {
            "event_type" if event_type.is_some() => {
                return Err(ParamError::new(name, "is given more than once"));
            }
            "event_type" if value.is_empty() => {
                return Err(ParamError::new(name, "is empty"));
            }
            "event_type" => event_type = Some(value.to_owned()),
            // The credential, when it travels in the query (`docs/access.md`).
            "key" => continue,
            _ => return Err(ParamError::new(name, "is not a parameter of properties")),
        }
    }
    Ok(event_type)
}

/// `GET /api/properties/values`: `path` (a dot path, required) and `limit` (1 to
/// `VALUES_LIMIT_MAX`, 20 by default).
pub fn values_query<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(Vec<String>, usize), ParamError> {
    let mut path = None;
    let mut limit = None;
    for (name, value) in pairs {
        match name {
            "path" | "limit"
                if (name == "path" && path.is_some()) || (name == "limit" && limit.is_some()) =>
            {
                return Err(ParamError::new(name, "is given more than once"));
            }
            "path" => {
                let keys: Vec<String> = value.split('.').map(str::to_owned).collect();
                if keys.iter().any(String::is_empty) {
                    return Err(ParamError::new(name, "has an empty key"));
                }
                if keys.len() > PATH_KEYS_MAX {
                    return Err(ParamError::new(
                        name,
                        format!("has more than {PATH_KEYS_MAX} keys"),
                    ));
                }
                path = Some(keys);
            }
            "key" => continue,
            "limit" => {
                limit = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|limit| (1..=VALUES_LIMIT_MAX).contains(limit))
                        .ok_or_else(|| {
                            ParamError::new(
                                name,
                                format!("must be a whole number from 1 to {VALUES_LIMIT_MAX}"),
                            )
                        })?,
                );
            }
            _ => {
                return Err(ParamError::new(
                    name,
                    "is not a parameter of property values",
                ));
            }
        }
    }
    let path = path.ok_or_else(|| ParamError::new("path", "is required"))?;
    Ok((path, limit.unwrap_or(VALUES_LIMIT_DEFAULT)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::content_leaves::value_key;

    #[test]
    fn keys_read_back_as_their_values() {
        for value in [
            json!("Paris"),
            json!(42),
            json!(-0.5),
            json!(true),
            json!(false),
            json!(null),
            json!(1e300),
        ] {
            let key = value_key(&value).expect("a scalar");
            assert_eq!(key_value(&key), Some(value));
        }
        assert_eq!(key_value(b""), None);
        assert_eq!(key_value(b"n12"), None);
        assert_eq!(key_value(b"x"), None);
    }

    #[test]
    fn parts_add_up_and_the_most_common_come_first() {
        let mut tally = PropertiesTally::default();
        let path = |keys: &[&str]| keys.iter().map(|key| (*key).to_owned()).collect::<Vec<_>>();
        tally.add(&path(&["store"]), &[3, 0, 0, 0, 0, 0]);
        tally.add(&path(&["amount"]), &[0, 2, 0, 0, 0, 0]);
        tally.add(&path(&["amount"]), &[1, 2, 0, 0, 0, 0]);
        let properties = tally.properties().properties;
        assert_eq!(properties[0].keys, path(&["amount"]));
        assert_eq!(properties[0].events(), 5);
        assert_eq!(
            properties[0].type_counts().collect::<Vec<_>>(),
            vec![(JsonType::String, 1), (JsonType::Number, 4)]
        );
        let mut values = ValuesTally::default();
        values.add(b"sParis", 2);
        values.add(b"sLyon", 3);
        values.add(b"sParis", 2);
        let answer = values.values(1);
        assert_eq!(
            answer.values,
            vec![PropertyValue {
                value: json!("Paris"),
                events: 4
            }]
        );
        assert!(answer.complete);
    }

    #[test]
    fn queries_are_read_and_bad_ones_named() {
        assert_eq!(
            properties_query([("event_type", "order")]),
            Ok(Some("order".to_owned()))
        );
        assert_eq!(properties_query([]), Ok(None));
        assert_eq!(properties_query([("key", "secret")]), Ok(None));
        assert_eq!(
            properties_query([("limit", "3")]).map_err(|error| error.parameter),
            Err("limit".to_owned())
        );
        assert_eq!(
            values_query([("path", "address.city"), ("limit", "5")]),
            Ok((vec!["address".to_owned(), "city".to_owned()], 5))
        );
        for pairs in [
            vec![],
            vec![("path", "a..b")],
            vec![("path", "a"), ("limit", "0")],
            vec![("path", "a"), ("limit", "101")],
        ] {
            assert!(values_query(pairs.clone()).is_err(), "{pairs:?}");
        }
    }
}
