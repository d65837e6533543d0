//! Content filters (SPEC §8) on every store: every operator over every JSON type (string,
//! integer, float, bool, null, array, nested object, missing), in the URL form and the
//! JSON form, for pages in both orders, stats and the stream, against the reference
//! (`Filter::matches`), which a few counts written by hand check in turn.

use eventline_core::content_filter::{self, ContentFilter};
use eventline_core::event::{Event, Scope};
use eventline_core::query::{Filter, Order, PageQuery, Start};
use eventline_core::stats::{Bucket, StatsQuery};
use eventline_store::Store;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::conformance::{append_all, expected, expected_stats, stream_walk_len, walk};

/// Twelve shapes of content, each repeated 20 times.
fn shapes() -> Vec<Value> {
    vec![
        json!({"store": "appmachine", "total": 42, "plan": "pro", "tags": ["vip", "new"], "address": {"city": "Paris", "zip": "75001"}}),
        json!({"store": "other", "total": 42.0, "plan": "free", "tags": [], "address": {"city": "Lyon"}}),
        json!({"store": "appmachine", "total": "42", "paid": true}),
        json!({"total": 500.5, "paid": false, "note": null}),
        json!({"total": -3, "name": "La Grande École", "tags": ["VIP"]}),
        json!({"total": 9_007_199_254_740_993_u64, "nested": {"a": {"b": {"c": 1}}}}),
        json!({"store": 7, "total": [42], "name": "ΣΊΣΥΦΟΣ"}),
        json!({}),
        json!({"store": "appmachine", "total": 1e3, "dotted.key": "x", "br[a]": "y"}),
        json!({"total": 0, "paid": "true", "tags": ["vip", 1, null]}),
        json!({"plan": null, "total": 499.99, "name": "école"}),
        json!({"store": "b", "total": "600", "address": "Paris"}),
    ]
}

fn corpus() -> Vec<Event> {
    let shapes = shapes();
    (0..240u128)
        .map(|n| {
            let mut content = shapes[n as usize % shapes.len()].clone();
            content["n"] = json!(n);
            Event {
                id: Uuid::from_u128(n + 1),
                event_type: if n % 2 == 0 { "new_order" } else { "page_view" }.to_owned(),
                content: RawValue::from_string(content.to_string()).expect("json"),
                contact_id: Some(format!("contact-{}", n % 5)),
                scope: Scope::App,
                timestamp_ms: 1_000_000 + (n as i64 / 3) * 61_000,
                received_at_ms: 1_700_000_000_000,
                client_timestamp_ms: None,
            }
        })
        .collect()
}

/// The conditions of these URL parameters (`content.PATH[op]`, value), holding together.
pub fn url(filters: &[(&str, &str)]) -> ContentFilter {
    ContentFilter::And(
        filters
            .iter()
            .map(|(name, value)| {
                let condition = content_filter::from_url_param(name, value)
                    .expect("a content parameter")
                    .expect("a valid filter");
                ContentFilter::Condition(condition)
            })
            .collect(),
    )
}

fn typed(node: Value) -> ContentFilter {
    content_filter::from_json(&node).expect("a valid filter")
}

/// Each filter, and how many of the 240 events it matches where that was counted by
/// hand (`None`: the reference alone).
fn cases() -> Vec<(ContentFilter, Option<usize>)> {
    vec![
        (url(&[("content.store", "appmachine")]), Some(60)),
        (url(&[("content.total", "42")]), Some(60)),
        (url(&[("content.total[gt]", "42")]), Some(80)),
        (url(&[("content.total[gte]", "42")]), Some(120)),
        (url(&[("content.total[lt]", "0")]), Some(20)),
        (url(&[("content.total[lte]", "499.99")]), None),
        (url(&[("content.total[gt]", "9007199254740992")]), Some(20)),
        (url(&[("content.name[gt]", "M")]), None),
        (
            url(&[("content.store[in]", r#"["appmachine","b",7]"#)]),
            Some(100),
        ),
        (url(&[("content.note[exists]", "true")]), Some(20)),
        (url(&[("content.plan[exists]", "false")]), Some(180)),
        (url(&[("content.tags[contains]", "vip")]), Some(40)),
        (url(&[("content.name[icontains]", "école")]), Some(40)),
        (url(&[("content.name[icontains]", "σίσυφος")]), Some(20)),
        (url(&[("content.address.city", "Paris")]), Some(20)),
        (url(&[("content.nested.a.b.c", "1")]), Some(20)),
        (url(&[("content.plan[ne]", "free")]), Some(40)),
        (url(&[("content.paid", "true")]), Some(40)),
        (url(&[("content.note", "null")]), Some(20)),
        (url(&[("content.missing", "x")]), Some(0)),
        (url(&[("content.store[in]", "[]")]), Some(0)),
        (
            typed(json!({"not": {"path": "store", "op": "in", "value": []}})),
            Some(240),
        ),
        // More members than PostgreSQL's SQL spells out as containments: 42, 42.0 and 0.
        (
            typed(json!([{"path": "total", "op": "in", "value": (0..100).collect::<Vec<i32>>()}])),
            Some(60),
        ),
        (
            url(&[
                ("content.store", "appmachine"),
                ("content.total[gte]", "42"),
            ]),
            Some(40),
        ),
        (typed(json!([{"path": "total", "value": 42}])), Some(40)),
        (
            typed(json!([{"path": ["dotted.key"], "value": "x"}])),
            Some(20),
        ),
        (
            typed(json!([{"path": ["br[a]"], "op": "exists", "value": true}])),
            Some(20),
        ),
        (
            typed(json!({"or": [
                {"path": "plan", "value": "pro"},
                {"not": {"path": "total", "op": "lt", "value": 100}},
            ]})),
            None,
        ),
        (
            typed(json!({"not": {"path": "store", "op": "exists", "value": true}})),
            Some(120),
        ),
        (
            typed(json!([{"path": "tags", "op": "contains", "value": 1}])),
            Some(20),
        ),
        (
            typed(json!([{"path": "tags", "value": ["vip", "new"]}])),
            Some(20),
        ),
        (
            typed(json!([{"path": "address", "value": {"zip": "75001", "city": "Paris"}}])),
            Some(20),
        ),
        (
            typed(json!([{"path": "total", "op": "in", "value": [42, "600"]}])),
            Some(60),
        ),
        (
            typed(json!([{"path": "total", "op": "gt", "value": "5"}])),
            Some(20),
        ),
    ]
}

pub async fn content_filters_match_the_reference(store: &dyn Store) {
    let before = store.stream_head().await.expect("head");
    let events = corpus();
    for chunk in events.chunks(40) {
        append_all(store, chunk.to_vec()).await;
    }
    for (content, by_hand) in cases() {
        let filter = Filter {
            content: Some(content),
            ..Filter::default()
        };
        let reference = expected(&events, &filter, Order::Asc);
        if let Some(count) = by_hand {
            assert_eq!(reference.len(), count, "the reference, by hand: {filter:?}");
        }
        for order in [Order::Asc, Order::Desc] {
            let got = walk(store, &filter, order, 7).await;
            assert_eq!(
                got,
                expected(&events, &filter, order),
                "{filter:?} {order:?}"
            );
        }
        // With the other filters too: a contact, a window, a type.
        let narrowed = Filter {
            contact_id: Some("contact-2".to_owned()),
            since_ms: Some(1_500_000),
            until_ms: Some(4_000_000),
            event_types: vec!["new_order".to_owned()],
            ..filter.clone()
        };
        let got = walk(store, &narrowed, Order::Asc, 3).await;
        assert_eq!(
            got,
            expected(&events, &narrowed, Order::Asc),
            "{narrowed:?}"
        );
        let query = StatsQuery {
            filter: Filter {
                since_ms: Some(0),
                until_ms: Some(10_000_000),
                ..filter.clone()
            },
            bucket: Bucket::Minute,
        };
        let stats = store.stats(query.clone()).await.expect("stats");
        assert_eq!(stats, expected_stats(&events, &query), "{query:?}");
        let (ids, _) = stream_walk_len(store, &filter, before, 50, reference.len()).await;
        let mut ids = ids;
        ids.sort();
        let mut reference = reference;
        reference.sort();
        assert_eq!(ids, reference, "stream {filter:?}");
    }
}

/// A filtered walk while matching and other events arrive, before and after its cursor:
/// each event that matched before the walk is seen once, nothing is seen twice, and the
/// pages stay in order.
pub async fn content_cursors_hold_while_events_arrive(store: &dyn Store) {
    let events = corpus();
    append_all(store, events.clone()).await;
    let filter = Filter {
        content: Some(url(&[("content.store", "appmachine")])),
        ..Filter::default()
    };
    let before = expected(&events, &filter, Order::Asc);
    let mut seen: Vec<(i64, Uuid)> = Vec::new();
    let mut start = Start::First;
    let mut next_id = 10_000u128;
    for _ in 0..1_000 {
        let page = store
            .page(PageQuery {
                filter: filter.clone(),
                order: Order::Asc,
                start,
                limit: 5,
            })
            .await
            .expect("page");
        for event in &page.events {
            assert!(filter.matches(event), "{event:?}");
            seen.push((event.timestamp_ms, event.id));
        }
        // Three more: one matching before the walk's position, one after, one not.
        let at_ms = seen
            .last()
            .map_or(1_000_000, |(timestamp_ms, _)| *timestamp_ms);
        let arriving: Vec<Event> = [
            (at_ms - 5_000, "appmachine"),
            (at_ms + 5_000, "appmachine"),
            (at_ms + 5_000, "other"),
        ]
        .into_iter()
        .map(|(timestamp_ms, store_name)| {
            next_id += 1;
            Event {
                id: Uuid::from_u128(next_id),
                event_type: "new_order".to_owned(),
                content: RawValue::from_string(json!({"store": store_name}).to_string())
                    .expect("json"),
                contact_id: None,
                scope: Scope::App,
                timestamp_ms,
                received_at_ms: 1_700_000_000_000,
                client_timestamp_ms: None,
            }
        })
        .collect();
        append_all(store, arriving).await;
        match page.next {
            Some(cursor) => start = Start::After(cursor),
            None => break,
        }
    }
    assert!(
        seen.windows(2).all(|pair| pair[0] < pair[1]),
        "in order, once each"
    );
    let seen_ids: std::collections::HashSet<Uuid> = seen.iter().map(|(_, id)| *id).collect();
    for id in before {
        assert!(
            seen_ids.contains(&id),
            "{id} matched before the walk and was not seen"
        );
    }
}
