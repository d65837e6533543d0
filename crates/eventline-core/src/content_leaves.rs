//! Every value inside an event's `content`, by path, in one pass over its text: what a
//! store indexes so that a content filter skips what cannot match, and what discovery
//! (`/api/properties`) counts. No IO.
//!
//! A scalar value's *key* is the bytes an index keeps for it: equal keys for every two
//! values a filter's `eq` may find equal ([`crate::content_filter::json_equal`]), so that
//! a lookup by key never misses a match. Numbers are keyed by their `f64` value (`42`,
//! `42.0` and `4.2e1` share a key; two integers above 2^53 that round to one `f64` share
//! one too, which only costs a block read for nothing).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::content_filter::{Condition, PATH_KEYS_MAX, Test};

/// What is found at a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf<'a> {
    String(Cow<'a, str>),
    /// A number an `f64` holds exactly: a float, or an integer within ±2^53.
    Number(f64),
    /// An integer beyond ±2^53, as the nearest `f64`: it compares exactly only as an
    /// integer.
    WideInteger(f64),
    Bool(bool),
    Null,
    Array,
    Object,
}

/// The JSON types, in the order an index counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsonType {
    String,
    Number,
    Bool,
    Null,
    Array,
    Object,
}

impl JsonType {
    pub const ALL: [JsonType; 6] = [
        JsonType::String,
        JsonType::Number,
        JsonType::Bool,
        JsonType::Null,
        JsonType::Array,
        JsonType::Object,
    ];

    pub fn name(self) -> &'static str {
        match self {
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Bool => "boolean",
            JsonType::Null => "null",
            JsonType::Array => "array",
            JsonType::Object => "object",
        }
    }
}

impl Leaf<'_> {
    pub fn json_type(&self) -> JsonType {
        match self {
            Leaf::String(_) => JsonType::String,
            Leaf::Number(_) | Leaf::WideInteger(_) => JsonType::Number,
            Leaf::Bool(_) => JsonType::Bool,
            Leaf::Null => JsonType::Null,
            Leaf::Array => JsonType::Array,
            Leaf::Object => JsonType::Object,
        }
    }

    /// Appends the value's key to `out`: scalars only (`false` for an array or object).
    pub fn write_key(&self, out: &mut Vec<u8>) -> bool {
        match self {
            Leaf::String(text) => {
                out.push(b's');
                out.extend_from_slice(text.as_bytes());
            }
            Leaf::Number(number) | Leaf::WideInteger(number) => {
                // -0.0 equals 0.0.
                let number = if *number == 0.0 { 0.0 } else { *number };
                out.push(b'n');
                out.extend_from_slice(&number.to_le_bytes());
            }
            Leaf::Bool(true) => out.push(b't'),
            Leaf::Bool(false) => out.push(b'f'),
            Leaf::Null => out.push(b'z'),
            Leaf::Array | Leaf::Object => return false,
        }
        true
    }

    /// The leaf a parsed value is, without its members.
    pub fn of(value: &Value) -> Leaf<'_> {
        match value {
            Value::String(text) => Leaf::String(Cow::Borrowed(text)),
            Value::Number(number) => match (number.as_i64(), number.as_u64()) {
                (Some(integer), _) => integer_leaf(i128::from(integer)),
                (None, Some(integer)) => integer_leaf(i128::from(integer)),
                (None, None) => Leaf::Number(number.as_f64().unwrap_or(f64::NAN)),
            },
            Value::Bool(bool) => Leaf::Bool(*bool),
            Value::Null => Leaf::Null,
            Value::Array(_) => Leaf::Array,
            Value::Object(_) => Leaf::Object,
        }
    }
}

/// Integers an `f64` holds exactly, and those it does not.
fn integer_leaf(integer: i128) -> Leaf<'static> {
    const EXACT_MAX: i128 = 1 << 53;
    if integer.abs() <= EXACT_MAX {
        Leaf::Number(integer as f64)
    } else {
        Leaf::WideInteger(integer as f64)
    }
}

/// The key of a scalar value, as [`Leaf::write_key`] writes it.
pub fn value_key(value: &Value) -> Option<Vec<u8>> {
    let mut key = Vec::new();
    Leaf::of(value).write_key(&mut key).then_some(key)
}

/// Hands `visit` every value inside the object `json` whose path has at most
/// `PATH_KEYS_MAX` keys (a filter cannot name a deeper one): its path and what it is,
/// parents before their members. Array members are not visited: a path names object
/// keys only. A key given twice is visited twice; what an index builds from this is a
/// superset of what a filter finds, which is all a skip needs.
pub fn visit(
    json: &str,
    visit: &mut dyn FnMut(&[Cow<'_, str>], Leaf<'_>),
) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let mut path = Vec::new();
    Walk {
        path: &mut path,
        visit,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()
}

/// What an index can answer of a condition: where it may hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Need<'f> {
    /// Anywhere: the index cannot narrow it (`exists=false` holds where a path is not).
    Anywhere,
    /// Where the path has a value.
    Path(&'f [String]),
    /// Where the path has a scalar value of one of these keys (none: nowhere).
    Values(&'f [String], Vec<Vec<u8>>),
}

impl Condition {
    /// Where the condition may hold, in an index's terms.
    pub fn need(&self) -> Need<'_> {
        match &self.test {
            Test::Exists(false) => Need::Anywhere,
            Test::OneOf(values) => match values.iter().map(value_key).collect() {
                Some(keys) => Need::Values(&self.path, keys),
                None => Need::Path(&self.path),
            },
            Test::Exists(true)
            | Test::NoneOf(_)
            | Test::Number(..)
            | Test::Text(..)
            | Test::Contains { .. }
            | Test::ContainsFolded(_) => Need::Path(&self.path),
        }
    }
}

struct Walk<'p, 'v, 'de> {
    path: &'p mut Vec<Cow<'de, str>>,
    visit: &'v mut dyn FnMut(&[Cow<'_, str>], Leaf<'_>),
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Walk<'_, '_, 'de> {
    fn leaf(self, leaf: Leaf<'_>) {
        // The document itself (an empty path) is no path's value.
        if !self.path.is_empty() {
            (self.visit)(self.path, leaf);
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.leaf(Leaf::Bool(value));
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.leaf(integer_leaf(i128::from(value)));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.leaf(integer_leaf(i128::from(value)));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.leaf(Leaf::Number(value));
        Ok(())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.leaf(Leaf::String(Cow::Borrowed(value)));
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf(Leaf::Null);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        self.leaf(Leaf::Array);
        while items.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<(), A::Error> {
        let Walk { path, visit } = self;
        if !path.is_empty() {
            visit(path, Leaf::Object);
        }
        if path.len() == PATH_KEYS_MAX {
            while members.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        while let Some(Key(key)) = members.next_key::<Key<'de>>()? {
            path.push(key);
            members.next_value_seed(Walk {
                path: &mut *path,
                visit: &mut *visit,
            })?;
            path.pop();
        }
        Ok(())
    }
}

/// An object key, borrowed from the text when it holds no escape.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an object key")
            }

            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::content_filter::{ContentFilter, from_url_param, json_equal};

    type Seen = Vec<(Vec<String>, Leaf<'static>)>;

    fn seen(json: &str) -> Seen {
        let mut seen = Vec::new();
        visit(json, &mut |path, leaf| {
            let leaf = match leaf {
                Leaf::String(text) => Leaf::String(Cow::Owned(text.into_owned())),
                Leaf::Number(n) => Leaf::Number(n),
                Leaf::WideInteger(n) => Leaf::WideInteger(n),
                Leaf::Bool(b) => Leaf::Bool(b),
                Leaf::Null => Leaf::Null,
                Leaf::Array => Leaf::Array,
                Leaf::Object => Leaf::Object,
            };
            seen.push((path.iter().map(|key| key.to_string()).collect(), leaf));
        })
        .expect("json");
        seen
    }

    fn path(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|key| (*key).to_owned()).collect()
    }

    #[test]
    fn every_value_by_path_parents_first_and_no_array_members() {
        let found =
            seen(r#"{"a":1,"o":{"s":"x\"y","n":null,"t":true},"l":[1,{"b":2}],"e\u0041":{}}"#);
        assert_eq!(
            found,
            vec![
                (path(&["a"]), Leaf::Number(1.0)),
                (path(&["o"]), Leaf::Object),
                (path(&["o", "s"]), Leaf::String(Cow::Borrowed("x\"y"))),
                (path(&["o", "n"]), Leaf::Null),
                (path(&["o", "t"]), Leaf::Bool(true)),
                (path(&["l"]), Leaf::Array),
                (path(&["eA"]), Leaf::Object),
            ]
        );
    }

    #[test]
    fn paths_deeper_than_a_filter_can_name_are_not_visited() {
        let mut deep = json!(1);
        for _ in 0..PATH_KEYS_MAX + 3 {
            deep = json!({ "k": deep });
        }
        let found = seen(&deep.to_string());
        assert_eq!(found.len(), PATH_KEYS_MAX);
        assert!(found.iter().all(|(path, _)| path.len() <= PATH_KEYS_MAX));
    }

    #[test]
    fn text_that_is_not_json_is_an_error() {
        for text in ["", "{", r#"{"a":}"#, r#"{"a":1} x"#, "[1,"] {
            assert!(visit(text, &mut |_, _| {}).is_err(), "{text}");
        }
    }

    #[test]
    fn equal_numbers_share_a_key_and_types_do_not() {
        let key = |text: &str| value_key(&serde_json::from_str::<Value>(text).expect("json"));
        assert_eq!(key("42"), key("42.0"));
        assert_eq!(key("4.2e1"), key("42"));
        assert_eq!(key("0"), key("-0.0"));
        assert_ne!(key("42"), key("\"42\""));
        assert_ne!(key("true"), key("\"true\""));
        assert_ne!(key("null"), key("\"\""));
        assert_eq!(key("[1]"), None);
        assert_eq!(key("{}"), None);
    }

    #[test]
    fn what_a_condition_needs_of_an_index() {
        let condition = |name: &str, value: &str| {
            from_url_param(name, value)
                .expect("a content filter")
                .expect("valid")
        };
        let store = path(&["store"]);
        let eq = condition("content.store", "x");
        assert_eq!(
            eq.need(),
            Need::Values(&store, vec![b"sx".to_vec()]),
            "a text value stands for the string only"
        );
        let number = condition("content.store", "7");
        let Need::Values(_, keys) = number.need() else {
            panic!("eq is a lookup of values");
        };
        assert_eq!(keys.len(), 2, "the string \"7\" and the number 7");
        assert_eq!(
            condition("content.store[exists]", "false").need(),
            Need::Anywhere
        );
        for (name, value) in [
            ("content.store[ne]", "x"),
            ("content.store[gt]", "3"),
            ("content.store[exists]", "true"),
            ("content.store[contains]", "x"),
            ("content.store[icontains]", "x"),
        ] {
            assert_eq!(condition(name, value).need(), Need::Path(&store), "{name}");
        }
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3..3_i64).prop_map(|n| json!(n)),
            (-3..3_i64).prop_map(|n| json!(n as f64)),
            prop::sample::select(vec![0.5, -0.0, 1e300, 2.5e-3]).prop_map(|n| json!(n)),
            "[ab1]{0,2}".prop_map(Value::String),
        ]
    }

    proptest! {
        /// Whenever a filter's `eq` finds a value equal, the two share a key: an index
        /// looked up by key never misses a match.
        #[test]
        fn values_eq_finds_equal_share_keys(a in scalar(), b in scalar()) {
            if json_equal(&a, &b) {
                prop_assert_eq!(value_key(&a), value_key(&b));
            }
        }

        /// What `visit` finds at a path is what a filter finds there, for documents
        /// without repeated keys.
        #[test]
        fn agrees_with_a_filter(
            members in prop::collection::btree_map("[ab]", prop_oneof![
                scalar(),
                prop::collection::btree_map("[ab]", scalar(), 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ], 0..3),
        ) {
            let document = Value::Object(members.into_iter().collect());
            let text = document.to_string();
            for (keys, leaf) in seen(&text) {
                let found = keys
                    .iter()
                    .try_fold(&document, |value, key| value.as_object()?.get(key))
                    .expect("a visited path is in the document");
                prop_assert_eq!(leaf.json_type(), Leaf::of(found).json_type());
                let mut key = Vec::new();
                if leaf.write_key(&mut key) {
                    prop_assert_eq!(Some(key), value_key(found));
                    let filter = ContentFilter::Condition(Condition {
                        path: keys.clone(),
                        op: crate::content_filter::Op::Eq,
                        test: Test::OneOf(vec![found.clone()]),
                    });
                    prop_assert!(filter.matches_json(&text));
                }
            }
        }
    }
}
