use eventline_core::content_filter::from_json;
use proptest::prelude::*;
use serde_json::json;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::*;

fn event(n: u64, minute: i64, event_type: &str) -> (u64, Event) {
    let event = Event {
        id: Uuid::from_u128(u128::from(n) + 1),
        event_type: event_type.to_owned(),
        content: RawValue::from_string("{}".to_owned()).expect("json"),
        contact_id: None,
        scope: Scope::App,
        timestamp_ms: minute * 60_000 + (n as i64 % 60) * 1_000,
        received_at_ms: 0,
        client_timestamp_ms: None,
    };
    (n, event)
}

proptest! {
    #[test]
    fn columns_read_back(
        drawn in prop::collection::vec(
            (0..3_i64, 0..3_usize, prop::option::of(prop_oneof![
                (-1_000_000..1_000_000_i64).prop_map(|n| n as f64 / 100.0),
                any::<i32>().prop_map(f64::from),
                any::<f64>().prop_filter("finite", |n| n.is_finite()),
            ])),
            1..300,
        ),
    ) {
        let mut minute = 28_000_000;
        let mut events = Vec::new();
        let mut numbers = NumbersBuilder::default();
        for (n, (step, kind, number)) in drawn.iter().enumerate() {
            minute += step;
            events.push(event(n as u64, minute, ["a", "b", "c"][*kind]));
            if let Some(number) = number {
                numbers.add(4, n as u32, *number, true);
            }
        }
        let mut kinds = KindTable::default();
        let mut bytes = Vec::new();
        encode(&mut bytes, &events, &mut kinds, numbers);
        let first = events[0].1.timestamp_ms.div_euclid(60_000);
        let columns = decode(&bytes, first, minute, kinds.len(), 5).expect("columns");
        prop_assert!(columns.complete);
        let mut read_minutes = Vec::new();
        for (start_ms, len) in &columns.minutes {
            read_minutes.extend(std::iter::repeat_n(*start_ms, *len as usize));
        }
        let minutes: Vec<i64> = events
            .iter()
            .map(|(_, event)| event.timestamp_ms.div_euclid(60_000) * 60_000)
            .collect();
        prop_assert_eq!(read_minutes, minutes);
        let list = kinds.into_list();
        let types: Vec<&str> = columns.kinds.iter().map(|code| list[*code as usize].0.as_str()).collect();
        let expected: Vec<&str> = events.iter().map(|(_, event)| event.event_type.as_str()).collect();
        prop_assert_eq!(types, expected);
        let values: Vec<Option<f64>> = drawn.iter().map(|(_, _, number)| *number).collect();
        let read = columns.numbers.first().map(|(_, values)| values.clone());
        if values.iter().any(Option::is_some) {
            // Equal as numbers compare (-0.0 reads back as 0.0).
            prop_assert_eq!(read, Some(values));
        }
    }
}

#[test]
fn damage_is_refused() {
    let events: Vec<(u64, Event)> = (0..40).map(|n| event(n, 100 + n as i64 / 7, "a")).collect();
    let mut numbers = NumbersBuilder::default();
    for n in 0..40 {
        numbers.add(0, n, f64::from(n) * 1.5, true);
    }
    let mut kinds = KindTable::default();
    let mut bytes = Vec::new();
    encode(&mut bytes, &events, &mut kinds, numbers);
    assert!(decode(&bytes, 100, 105, 1, 1).is_some());
    assert!(
        decode(&bytes, 100, 104, 1, 1).is_none(),
        "a minute past the block"
    );
    assert!(
        decode(&bytes, 100, 105, 1, 0).is_none(),
        "a path the segment lacks"
    );
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(decode(&damaged, 100, 105, 1, 1).is_none(), "bit {bit}");
    }
    for len in 0..bytes.len() {
        assert!(
            decode(&bytes[..len], 100, 105, 1, 1).is_none(),
            "cut at {len}"
        );
    }
}

#[test]
fn number_comparisons_are_answered_and_others_are_not() {
    let events: Vec<(u64, Event)> = (0..4).map(|n| event(n, 100, "a")).collect();
    let mut numbers = NumbersBuilder::default();
    numbers.add(0, 0, 499.99, true);
    numbers.add(0, 1, 500.0, true);
    numbers.add(0, 3, 1e3, true);
    let mut kinds = KindTable::default();
    let mut bytes = Vec::new();
    encode(&mut bytes, &events, &mut kinds, numbers);
    let columns = decode(&bytes, 100, 100, 1, 2).expect("columns");
    let path_id = |keys: &[String]| match keys.first().map(String::as_str) {
        Some("amount") => Some(0),
        Some("other") => Some(1),
        _ => None,
    };
    let matches =
        |node: serde_json::Value| columns.matches(&from_json(&node).expect("filter"), &path_id);
    assert_eq!(
        matches(json!({"path": "amount", "op": "gte", "value": 500})),
        Some(vec![false, true, false, true])
    );
    assert_eq!(
        matches(json!({"not": {"path": "amount", "op": "lt", "value": 500}})),
        Some(vec![false, true, true, true])
    );
    assert_eq!(
        matches(json!({"path": "other", "op": "gt", "value": 0})),
        Some(vec![false; 4]),
        "no column: no number there"
    );
    assert_eq!(matches(json!({"path": "amount", "value": 500})), None);
    assert_eq!(
        matches(json!({"path": "amount", "op": "gt", "value": 9_007_199_254_740_993_u64})),
        None,
        "a bound an f64 cannot hold"
    );
}
