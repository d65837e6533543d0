//! Finds the value at a path of object keys in JSON text without parsing the rest: a
//! content filter looks at one or two values of an event's `content`, and building the
//! whole document as a `serde_json::Value` cost most of a filtered read.
//!
//! The text is trusted to be JSON (stored content was validated when it was posted); on
//! text that is not, the answer is `None`, never a panic. A key given twice in one object
//! counts at its last occurrence, as `serde_json` and PostgreSQL's `jsonb` take it.

/// The JSON text of the value at `path` inside the object `json`, if there is one.
pub fn value_at<'j>(json: &'j str, path: &[String]) -> Option<&'j str> {
    let bytes = json.as_bytes();
    let mut span = (skip_whitespace(bytes, 0), bytes.len());
    for key in path {
        span = member(bytes, span.0, key)?;
    }
    json.get(span.0..span.1)
}

/// The span of the last member `key` of the object starting at `at`.
fn member(bytes: &[u8], at: usize, key: &str) -> Option<(usize, usize)> {
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    let mut at = skip_whitespace(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return None;
    }
    let mut found = None;
    loop {
        let key_end = skip_string(bytes, at)?;
        let name = &bytes[at + 1..key_end - 1];
        at = skip_whitespace(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_whitespace(bytes, at + 1);
        let end = skip_value(bytes, start)?;
        if key_equals(name, key) {
            found = Some((start, end));
        }
        at = skip_whitespace(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_whitespace(bytes, at + 1),
            Some(b'}') => return found,
            _ => return None,
        }
    }
}

/// Whether a key's raw text (between its quotes) is `key`.
fn key_equals(raw: &[u8], key: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == key.as_bytes();
    }
    // Escaped: decoded as the string it is.
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).is_ok_and(|decoded| decoded == key)
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The end (exclusive) of the string starting at `at`.
fn skip_string(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut at = at + 1;
    loop {
        match bytes.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
}

/// The end (exclusive) of the value starting at `at`.
fn skip_value(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => skip_string(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0_usize;
            let mut at = at;
            loop {
                match bytes.get(at)? {
                    b'"' => {
                        at = skip_string(bytes, at)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        _ => {
            // A number, true, false or null: up to the next delimiter.
            let end = bytes[at..]
                .iter()
                .position(|byte| matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .map_or(bytes.len(), |len| at + len);
            (end > at).then_some(end)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::value_at;

    fn path(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|key| (*key).to_owned()).collect()
    }

    #[test]
    fn finds_values_at_every_depth_and_of_every_type() {
        let text = r#" { "a" : 1, "s": "x,}]\"{", "o": {"b": {"c": [1, {"d": 2}]}, "e": null},
            "t": true, "n": -1.5e3, "arr": [ "q" , [] ], "empty": {} } "#;
        let cases = [
            (vec!["a"], Some("1")),
            (vec!["s"], Some(r#""x,}]\"{""#)),
            (vec!["o", "b", "c"], Some(r#"[1, {"d": 2}]"#)),
            (vec!["o", "e"], Some("null")),
            (vec!["t"], Some("true")),
            (vec!["n"], Some("-1.5e3")),
            (vec!["arr"], Some(r#"[ "q" , [] ]"#)),
            (vec!["empty"], Some("{}")),
            (vec!["empty", "x"], None),
            (vec!["a", "b"], None),
            (vec!["arr", "0"], None),
            (vec!["missing"], None),
        ];
        for (keys, expected) in cases {
            assert_eq!(value_at(text, &path(&keys)), expected, "{keys:?}");
        }
    }

    #[test]
    fn the_last_of_a_repeated_key_and_escaped_keys() {
        assert_eq!(value_at(r#"{"a":1,"a":2}"#, &path(&["a"])), Some("2"));
        assert_eq!(
            value_at(r#"{"a\u0062":3,"a\"":4}"#, &path(&["ab"])),
            Some("3")
        );
        assert_eq!(
            value_at(r#"{"a\u0062":3,"a\"":4}"#, &path(&["a\""])),
            Some("4")
        );
        assert_eq!(value_at(r#"{"a.b":5}"#, &path(&["a.b"])), Some("5"));
    }

    #[test]
    fn text_that_is_not_json_finds_nothing() {
        for text in [
            "",
            "{",
            r#"{"a""#,
            r#"{"a":}"#,
            r#"{"a":1"#,
            r#"{"a":"1}"#,
            "[1]",
            "1",
            r#"{"a" 1}"#,
            r#"{"a":[1}"#,
        ] {
            assert_eq!(value_at(text, &path(&["a"])), None, "{text}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e6..1e6_f64).prop_map(|n| json!(n)),
            "[a-c\"\\\\ ,:{}\\[\\]é]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c\"\\\\.]{0,3}", inner, 0..5)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The text found parses to the value a full parse finds, pretty or compact.
        #[test]
        fn agrees_with_a_full_parse(
            members in prop::collection::btree_map("[a-c\"\\\\.]{0,3}", json_value(), 0..6),
            keys in prop::collection::vec("[a-c\"\\\\.]{0,3}", 1..4),
            pretty in any::<bool>(),
        ) {
            let document = Value::Object(members.into_iter().collect());
            let text = if pretty {
                serde_json::to_string_pretty(&document).expect("json")
            } else {
                document.to_string()
            };
            // Compared as parsed from text on both sides: serde_json's float parsing is
            // not exact, so a float parsed from its printed text may differ in the last
            // digit from the one printed.
            let reparse = |text: &str| serde_json::from_str::<Value>(text).expect("JSON text");
            let expected = keys
                .iter()
                .try_fold(&document, |value, key| value.as_object()?.get(key))
                .map(|value| reparse(&value.to_string()));
            let found = value_at(&text, &keys).map(reparse);
            prop_assert_eq!(found, expected);
        }
    }
}
