use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::TestApp;

/// 10,000 events paged 100 at a time by cursor, in both orders, while another client
/// keeps posting: every one of them is seen exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pages_yield_each_event_once_in_order_while_events_arrive() {
    let app = Arc::new(TestApp::spawn().await);
    // Many events share a timestamp, so the id decides their order.
    let base_ms = 1_600_000_000_000_i64;
    for chunk in 0..2 {
        let events: Vec<Value> = (0..5_000)
            .map(|n| {
                let n = chunk * 5_000 + n;
                json!({"event_type": "new_order", "content": {"n": n}, "timestamp": base_ms + n / 7})
            })
            .collect();
        let (status, answer) = app.post("/api/events/batch", &json!(events)).await;
        assert_eq!(status, 201, "{answer}");
    }

    let posting = Arc::new(AtomicBool::new(true));
    let poster = {
        let (app, posting) = (Arc::clone(&app), Arc::clone(&posting));
        tokio::spawn(async move {
            let mut posted = 0;
            // New events land inside the window, before and after the walks' positions.
            while posting.load(Ordering::Relaxed) && posted < 5_000 {
                let event = json!({"event_type": "new_order", "content": {"late": posted}, "timestamp": base_ms + (posted * 13) % 1_500});
                let (status, _) = app.post("/api/events", &event).await;
                assert_eq!(status, 201);
                posted += 1;
            }
            posted
        })
    };

    for order in ["asc", "desc"] {
        let mut seen: Vec<(i64, String, Option<i64>)> = Vec::new();
        let mut offset = String::new();
        let mut pages = 0;
        loop {
            let (status, page) = app
                .get(&format!(
                    "/api/events/get?since={base_ms}&limit=100&order={order}&offset={offset}"
                ))
                .await;
            assert_eq!(status, 200, "{page}");
            let events = page["events"].as_array().expect("events");
            assert!(events.len() <= 100);
            seen.extend(events.iter().map(|event| {
                (
                    event["timestamp"].as_i64().expect("timestamp"),
                    event["id"].as_str().expect("id").to_owned(),
                    event["content"]["n"].as_i64(),
                )
            }));
            pages += 1;
            assert!(pages < 1_000, "the walk does not end");
            match page["next_offset"].as_str() {
                Some(next) => offset = next.to_owned(),
                None => break,
            }
        }
        let keys: Vec<(i64, &str)> = seen
            .iter()
            .map(|(timestamp, id, _)| (*timestamp, id.as_str()))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        if order == "desc" {
            sorted.reverse();
        }
        assert_eq!(keys, sorted, "{order}: in (timestamp, id) order");
        let unique: HashSet<&(i64, &str)> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{order}: no event twice");
        let originals: Vec<i64> = seen.iter().filter_map(|(_, _, n)| *n).collect();
        let mut expected: Vec<i64> = (0..10_000).collect();
        if order == "desc" {
            expected.reverse();
        }
        assert_eq!(
            originals, expected,
            "{order}: each of the 10,000 events once"
        );
    }
    posting.store(false, Ordering::Relaxed);
    let posted = poster.await.expect("poster");
    assert!(posted > 0, "events arrived during the walks");
}
