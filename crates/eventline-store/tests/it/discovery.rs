//! Discovery on every store: the content paths with their JSON types and counts, by
//! event type, and a path's most common values, against counts made from the events
//! themselves.

use std::collections::BTreeMap;

use eventline_core::event::{Event, Scope};
use eventline_store::Store;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::conformance::append_all;

/// 300 events of two types: a store of three values, a city under `address` (missing
/// from some), a total that is a number or a string, and an id unique to each.
fn corpus() -> Vec<Event> {
    (0..300u128)
        .map(|n| {
            let store = ["a", "b", "c"][(n % 3) as usize];
            let mut content = json!({
                "store": store,
                "order_number": format!("order-{n}"),
                "total": if n % 10 == 0 { json!("free") } else { json!(n % 7) },
            });
            if n % 4 != 0 {
                content["address"] = json!({ "city": if n % 2 == 0 { "Paris" } else { "Lyon" } });
            }
            Event {
                id: Uuid::from_u128(n + 1),
                event_type: if n % 5 == 0 { "refund" } else { "order" }.to_owned(),
                content: RawValue::from_string(content.to_string()).expect("json"),
                contact_id: None,
                scope: Scope::App,
                timestamp_ms: 1_000_000 + n as i64 * 1_000,
                received_at_ms: 1_700_000_000_000,
                client_timestamp_ms: None,
            }
        })
        .collect()
}

/// What each path holds, counted from the events: (path, type) -> values.
fn expected(events: &[Event], event_type: Option<&str>) -> BTreeMap<(String, &'static str), u64> {
    fn walk(value: &Value, prefix: &str, counts: &mut BTreeMap<(String, &'static str), u64>) {
        let Value::Object(members) = value else {
            return;
        };
        for (key, inner) in members {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            let json_type = match inner {
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "boolean",
                Value::Null => "null",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            *counts.entry((path.clone(), json_type)).or_default() += 1;
            walk(inner, &path, counts);
        }
    }
    let mut counts = BTreeMap::new();
    for event in events {
        if event_type.is_none_or(|wanted| wanted == event.event_type) {
            let content: Value = serde_json::from_str(event.content.get()).expect("json");
            walk(&content, "", &mut counts);
        }
    }
    counts
}

pub async fn properties_and_values_are_counted(store: &dyn Store) {
    let events = corpus();
    for chunk in events.chunks(50) {
        append_all(store, chunk.to_vec()).await;
    }
    for event_type in [None, Some("refund"), Some("nothing")] {
        let found = store.properties(event_type).await.expect("properties");
        assert!(found.complete, "{event_type:?}");
        let mut counted = BTreeMap::new();
        for property in &found.properties {
            for (json_type, count) in property.type_counts() {
                counted.insert((property.keys.join("."), json_type.name()), count);
            }
        }
        assert_eq!(counted, expected(&events, event_type), "{event_type:?}");
        // The most common first.
        let events_by_path: Vec<u64> = found
            .properties
            .iter()
            .map(|property| property.events())
            .collect();
        assert!(events_by_path.windows(2).all(|pair| pair[0] >= pair[1]));
    }

    let path = |dotted: &str| dotted.split('.').map(str::to_owned).collect::<Vec<_>>();
    let stores = store
        .property_values(&path("store"), 2)
        .await
        .expect("values");
    assert_eq!(
        stores
            .values
            .iter()
            .map(|value| (value.value.clone(), value.events))
            .collect::<Vec<_>>(),
        vec![(json!("a"), 100), (json!("b"), 100)]
    );
    assert!(stores.complete);
    let totals = store
        .property_values(&path("total"), 20)
        .await
        .expect("values");
    let total_counts: BTreeMap<String, u64> = totals
        .values
        .iter()
        .map(|value| (value.value.to_string(), value.events))
        .collect();
    assert_eq!(total_counts.get("\"free\""), Some(&30));
    assert_eq!(total_counts.values().sum::<u64>(), 300);
    let cities = store
        .property_values(&path("address.city"), 20)
        .await
        .expect("values");
    assert_eq!(
        cities
            .values
            .iter()
            .map(|value| (value.value.clone(), value.events))
            .collect::<Vec<_>>(),
        vec![(json!("Lyon"), 150), (json!("Paris"), 75)]
    );
    // 300 distinct order numbers: counted by value, since a segment holds at most
    // 1,024; a path no event has has no values.
    let numbers = store
        .property_values(&path("order_number"), 100)
        .await
        .expect("values");
    assert_eq!(numbers.values.len(), 100);
    assert!(
        store
            .property_values(&path("missing"), 5)
            .await
            .expect("values")
            .values
            .is_empty()
    );
    assert!(
        store
            .property_values(&path("address"), 5)
            .await
            .expect("values")
            .values
            .is_empty()
    );
}
