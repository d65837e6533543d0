//! Property tests of everything the core parses from the internet: event bodies, batches
//! (JSON and NDJSON), query strings, cursors, tokens. Whatever the input, parsing returns
//! a value or an error that names what is wrong; it never panics. Valid input generated
//! at random is accepted and keeps its fields.

#![allow(clippy::unwrap_used)]

use eventline_core::access::{TokenClaims, mint_token, verify_token};
use eventline_core::batch::{BatchFormat, parse_batch};
use eventline_core::cursor::{Cursor, StreamCursor};
use eventline_core::event::parse_event;
use eventline_core::limits::Limits;
use eventline_core::query::PageQuery;
use eventline_core::stats::StatsQuery;
use eventline_core::stream::StreamQuery;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |number| number.is_finite())
            .prop_map(Value::from),
        "[^\\x00]{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map("[^\\x00]{0,12}", inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// An event object whose fields are drawn from the real names with values of any type,
/// and sometimes a field that does not exist.
fn event_like() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("id"),
        Just("event_type"),
        Just("content"),
        Just("contact_id"),
        Just("scope"),
        Just("timestamp"),
        Just("sent_at"),
        Just("unknown"),
    ];
    prop::collection::btree_map(field, any_json(), 0..8).prop_map(|map| {
        Value::Object(
            map.into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        )
    })
}

/// A valid event: every field within its rules.
fn valid_event() -> impl Strategy<Value = Value> {
    (
        any::<u128>(),
        "[a-z][a-z0-9_]{0,30}",
        prop::collection::btree_map("[a-z]{1,8}", any_json(), 0..6),
        prop::option::of("[a-zA-Z0-9_-]{1,40}"),
        prop_oneof![Just("app"), Just("site")],
        0_i64..4_000_000_000_000,
    )
        .prop_map(|(id, event_type, content, contact_id, scope, timestamp)| {
            let mut event = json!({
                "id": uuid::Uuid::from_u128(id),
                "event_type": event_type,
                "content": Value::Object(content.into_iter().collect()),
                "scope": scope,
                "timestamp": timestamp,
            });
            if let Some(contact_id) = contact_id {
                event["contact_id"] = Value::from(contact_id);
            }
            event
        })
}

/// Query pairs drawn from the real parameter names with any values.
fn query_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        Just("since".to_owned()),
        Just("until".to_owned()),
        Just("event_types".to_owned()),
        Just("contact_id".to_owned()),
        Just("scope".to_owned()),
        Just("limit".to_owned()),
        Just("offset".to_owned()),
        Just("order".to_owned()),
        Just("after".to_owned()),
        Just("bucket".to_owned()),
        ".{0,10}",
    ];
    let value = prop_oneof![
        ".{0,30}",
        any::<i64>().prop_map(|number| number.to_string()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z",
    ];
    prop::collection::vec((name, value), 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn event_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_event(&bytes, &Limits::default());
    }

    #[test]
    fn event_objects_parse_or_say_why(event in event_like()) {
        let body = serde_json::to_vec(&event).unwrap();
        if let Err(error) = parse_event(&body, &Limits::default()) {
            prop_assert!(!error.detail().is_empty());
        }
    }

    #[test]
    fn valid_events_are_accepted_as_sent(event in valid_event()) {
        let body = serde_json::to_vec(&event).unwrap();
        let parsed = parse_event(&body, &Limits::default());
        prop_assert!(parsed.is_ok(), "{event} refused: {:?}", parsed.err().map(|error| error.detail()));
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.event_type.as_str(), event["event_type"].as_str().unwrap());
        prop_assert_eq!(parsed.contact_id.as_deref(), event["contact_id"].as_str());
        prop_assert_eq!(parsed.scope.as_str(), event["scope"].as_str().unwrap());
        // Content is kept as sent, byte for byte.
        prop_assert_eq!(parsed.content.get(), event["content"].to_string());
    }

    #[test]
    fn batch_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = parse_batch(&bytes, BatchFormat::Json, &Limits::default());
        let _ = parse_batch(&bytes, BatchFormat::Ndjson, &Limits::default());
    }

    #[test]
    fn batches_of_valid_events_keep_every_event_and_a_bad_line_is_named(
        events in prop::collection::vec(valid_event(), 1..20),
        bad in any::<prop::sample::Index>(),
    ) {
        let json = serde_json::to_vec(&events).unwrap();
        prop_assert_eq!(parse_batch(&json, BatchFormat::Json, &Limits::default()).unwrap().len(), events.len());
        let mut lines: Vec<String> = events.iter().map(Value::to_string).collect();
        prop_assert_eq!(
            parse_batch(lines.join("\n").as_bytes(), BatchFormat::Ndjson, &Limits::default()).unwrap().len(),
            events.len()
        );
        let bad = bad.index(lines.len());
        lines[bad] = "{\"event_type\": 7}".to_owned();
        let error = parse_batch(lines.join("\n").as_bytes(), BatchFormat::Ndjson, &Limits::default())
            .err()
            .unwrap();
        prop_assert!(format!("{error:?}").contains(&format!("index: {bad}")), "{error:?}");
    }

    #[test]
    fn query_strings_never_panic(pairs in query_pairs(), header in prop::option::of(".{0,40}")) {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
        let limits = Limits::default();
        let _ = PageQuery::from_pairs(pairs.iter().copied(), &limits);
        let _ = StreamQuery::from_pairs(pairs.iter().copied(), header.as_deref(), &limits);
        let _ = StatsQuery::from_pairs(pairs.iter().copied(), &limits, 1_700_000_000_000);
    }

    #[test]
    fn cursors_and_tokens_never_panic(text in ".{0,80}") {
        let _ = Cursor::decode(&text);
        let _ = StreamCursor::decode(&text);
        let _ = verify_token(b"a secret of thirty-two bytes....", &text);
    }

    #[test]
    fn tokens_round_trip(contact_id in "[a-zA-Z0-9_-]{1,40}", exp in 0_i64..10_000_000_000) {
        let secret = b"a secret of thirty-two bytes....";
        let claims = TokenClaims { contact_id: contact_id.clone(), exp };
        let verified = verify_token(secret, &mint_token(secret, &claims)).unwrap();
        prop_assert_eq!(verified.contact_id, contact_id);
        prop_assert_eq!(verified.exp, exp);
    }
}
