//! Property tests of filtered reads through a segment's content index: whatever events
//! a segment holds and whatever filter is asked, a read that skips blocks finds what a
//! read of every event filtered one by one finds, on a segment as flushed and merged.

use eventline_core::content_filter::{ContentFilter, from_json};
use eventline_core::event::{Event, Scope};
use eventline_core::query::{Filter, Order};
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::counts::Tally;
use crate::disk::RealDisk;
use crate::segment::{self, Segment};

/// Content from a small vocabulary, so that values repeat across blocks and filters
/// match some, with a filler that makes a few thousand events take dozens of blocks.
/// Content texts: mostly from the vocabulary, some with a key given twice (the last
/// counts) or an integer wider than an `f64` holds.
fn content_text() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => content().prop_map(|content| content.to_string()),
        1 => Just(r#"{"total": 700, "total": 5, "store": "a"}"#.to_owned()),
        1 => Just(r#"{"total": 5, "total": 700, "address": {"city": "Paris"}, "address": {"zip": 1}}"#.to_owned()),
        1 => Just(r#"{"total": 9007199254740993, "store": "b"}"#.to_owned()),
        1 => Just(r#"{"total": -9007199254740993}"#.to_owned()),
    ]
}

fn content() -> impl Strategy<Value = Value> {
    let store = prop_oneof![
        Just(json!("a")),
        Just(json!("b")),
        Just(json!("rare")),
        Just(json!(7)),
        Just(json!(null)),
        Just(json!(["a"])),
    ];
    let total = prop_oneof![
        Just(json!(42)),
        Just(json!(42.0)),
        Just(json!("42")),
        (0..1_000_i64).prop_map(|n| json!(n)),
        (0..1_000_i64).prop_map(|n| json!(n as f64 / 10.0)),
    ];
    (
        prop::option::weighted(0.7, store),
        prop::option::weighted(0.8, total),
        prop::option::weighted(0.3, prop_oneof![Just("Paris"), Just("Lyon")]),
        "[a-z]{20,200}",
    )
        .prop_map(|(store, total, city, filler)| {
            let mut content = json!({ "filler": filler });
            if let Some(store) = store {
                content["store"] = store;
            }
            if let Some(total) = total {
                content["total"] = total;
            }
            if let Some(city) = city {
                content["address"] = json!({ "city": city });
            }
            content
        })
}

fn filters() -> Vec<ContentFilter> {
    [
        json!({"path": "store", "value": "a"}),
        json!({"path": "store", "value": "rare"}),
        json!({"path": "store", "value": 7}),
        json!({"path": "store", "value": null}),
        json!({"path": "store", "op": "in", "value": ["b", 7, "none"]}),
        json!({"path": "store", "op": "ne", "value": "a"}),
        json!({"path": "store", "op": "contains", "value": "a"}),
        json!({"path": "store", "op": "exists", "value": false}),
        json!({"path": "total", "value": 42}),
        json!({"path": "total", "value": "42"}),
        json!({"path": "total", "op": "gte", "value": 500}),
        json!({"path": "address.city", "value": "Paris"}),
        json!({"path": "address", "op": "exists", "value": true}),
        json!({"path": "missing", "value": 1}),
        json!([{"path": "store", "value": "b"}, {"path": "address.city", "value": "Lyon"}]),
        json!({"or": [{"path": "store", "value": "rare"}, {"path": "total", "value": 42}]}),
        json!({"not": {"path": "store", "value": "a"}}),
        json!({"path": "total", "op": "lt", "value": 42}),
        json!({"path": "total", "op": "gt", "value": 9_007_199_254_740_992_u64}),
        json!({"path": "address.zip", "op": "exists", "value": true}),
        json!({"path": "total", "op": "gte", "value": 42.0}),
        json!({"not": {"path": "total", "op": "gt", "value": 10.5}}),
        json!([{"path": "total", "op": "gt", "value": 5}, {"path": "total", "op": "lte", "value": 60}]),
        json!({"or": [{"path": "total", "op": "gt", "value": 900}, {"path": "address.zip", "op": "lt", "value": 3}]}),
    ]
    .iter()
    .map(|node| from_json(node).expect("a filter"))
    .collect()
}

fn events(contents: Vec<String>) -> Vec<(u64, Event)> {
    contents
        .into_iter()
        .enumerate()
        .map(|(n, content)| {
            let event = Event {
                id: Uuid::from_u128(n as u128 + 1),
                event_type: ["order", "view", "refund"][n % 3].to_owned(),
                content: RawValue::from_string(content).expect("json"),
                contact_id: Some(format!("contact-{}", n % 3)),
                scope: Scope::App,
                timestamp_ms: 1_700_000_000_000 + n as i64 * 10,
                received_at_ms: 1_700_000_000_000,
                client_timestamp_ms: None,
            };
            (n as u64, event)
        })
        .collect()
}

/// Every filter read through the index equals the scan, in both orders, with and
/// without a contact.
fn check(segment: &Segment, disk: &RealDisk, all: &[Event]) -> Result<(), TestCaseError> {
    for content in filters() {
        for contact_id in [None, Some("contact-1".to_owned())] {
            let filter = Filter {
                content: Some(content.clone()),
                contact_id,
                ..Filter::default()
            };
            let mut expected: Vec<Uuid> = all
                .iter()
                .filter(|event| filter.matches(event))
                .map(|event| event.id)
                .collect();
            for order in [Order::Asc, Order::Desc] {
                let found: Vec<Uuid> = segment
                    .page(disk, &filter, order, None, usize::MAX)
                    .expect("page")
                    .iter()
                    .map(|event| event.id)
                    .collect();
                prop_assert_eq!(&found, &expected, "{:?} {:?}", filter, order);
                expected.reverse();
            }
        }
    }
    // Counts by minute, from the columns where they tell, over the whole segment and a
    // window that cuts blocks.
    let first = all.first().map_or(0, |event| event.timestamp_ms);
    let last = all.last().map_or(0, |event| event.timestamp_ms);
    for content in filters() {
        for (since_ms, until_ms) in [(first, last + 1), (first + 1_234, last - 987)] {
            let filter = Filter {
                content: Some(content.clone()),
                since_ms: Some(since_ms),
                until_ms: Some(until_ms),
                ..Filter::default()
            };
            let mut expected = Tally::new(60_000);
            for event in all.iter().filter(|event| filter.matches(event)) {
                expected.add(event.timestamp_ms, &event.event_type, 1);
            }
            let mut counted = Tally::new(60_000);
            segment.count(disk, &filter, &mut counted).expect("count");
            prop_assert_eq!(counted.rows(), expected.rows(), "{:?}", filter);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn reads_through_the_content_index_find_what_a_scan_finds(
        contents in prop::collection::vec(content_text(), 1..1_500),
        cut in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let disk = RealDisk::default();
        let events = events(contents);
        let all: Vec<Event> = events.iter().map(|(_, event)| event.clone()).collect();
        let cut = cut.index(events.len());
        let mut inputs = Vec::new();
        for (number, part) in [&events[..cut], &events[cut..]].into_iter().enumerate() {
            if part.is_empty() {
                continue;
            }
            let path = dir.path().join(segment::segment_name(number as u32 + 1));
            let seq_first = part[0].0;
            let seq_end = part[part.len() - 1].0 + 1;
            segment::write(
                &disk,
                &path,
                part.iter().map(|(seq, event)| (*seq, event)),
                seq_first,
                seq_end,
                Vec::new(),
            )
            .expect("write");
            let (input, _) = Segment::open(&disk, number as u32 + 1, path, 0).expect("open");
            let held: Vec<Event> = part.iter().map(|(_, event)| event.clone()).collect();
            check(&input, &disk, &held)?;
            inputs.push(input);
        }
        let merged_path = dir.path().join("merged.seg");
        segment::merge(&disk, &inputs, &merged_path).expect("merge");
        let (merged, _) = Segment::open(&disk, 99, merged_path, 1).expect("open");
        check(&merged, &disk, &all)?;
    }
}

#[test]
fn a_needle_reads_only_the_blocks_that_hold_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let disk = RealDisk::default();
    let contents: Vec<String> = (0..20_000)
        .map(|n| {
            let store = if n == 7_777 {
                "needle".to_owned()
            } else {
                format!("s{}", n % 5)
            };
            json!({ "store": store, "n": n, "filler": "x".repeat(100 + n % 50) }).to_string()
        })
        .collect();
    let events = events(contents);
    let path = dir.path().join(segment::segment_name(1));
    segment::write(
        &disk,
        &path,
        events.iter().map(|(seq, event)| (*seq, event)),
        0,
        events.len() as u64,
        Vec::new(),
    )
    .expect("write");
    let (segment, _) = Segment::open(&disk, 1, path, 0).expect("open");
    let blocks = |node: Value| {
        segment
            .content_blocks(&disk, &from_json(&node).expect("a filter"))
            .expect("postings")
            .map(|set| set.len())
    };
    assert!(
        segment.blocks_len() > 100,
        "{} blocks",
        segment.blocks_len()
    );
    assert_eq!(blocks(json!({"path": "store", "value": "needle"})), Some(1));
    assert_eq!(
        blocks(json!({"path": "store", "value": "nowhere"})),
        Some(0)
    );
    assert_eq!(blocks(json!({"path": "other", "value": 1})), Some(0));
    // A count from the columns of every group of blocks, the last one short.
    assert!(segment.blocks_len() % 64 != 0);
    let mut counted = Tally::new(86_400_000);
    let filter = Filter {
        content: Some(
            from_json(&json!({"path": "n", "op": "gte", "value": 10_000})).expect("a filter"),
        ),
        ..Filter::default()
    };
    segment.count(&disk, &filter, &mut counted).expect("count");
    let total: u64 = counted.rows().iter().map(|row| row.count).sum();
    assert_eq!(total, 10_000);
    // Every block but perhaps the last, which may be short.
    let common = blocks(json!({"path": "store", "value": "s1"})).expect("indexed");
    assert!(common + 1 >= segment.blocks_len(), "{common} blocks");
}
