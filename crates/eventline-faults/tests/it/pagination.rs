//! Test 9: a full cursor walk, in both orders, while events arrive at 1,000 per second
//! with times spread over the walked window (before and after the cursor): every event
//! stored before the walk appears exactly once, no event appears twice, and the order
//! never goes back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventline_faults::Scale;
use eventline_faults::node::{Node, Storage};
use serde_json::{Value, json};

const WINDOW_START_MS: u64 = 1_700_000_000_000;
const WINDOW_MS: u64 = 86_400_000;

fn event(n: u64) -> Value {
    json!({
        "event_type": "paged",
        "content": {"n": n},
        // Scattered over the window: a new event may land before or after the cursor.
        "timestamp": WINDOW_START_MS + fastrand::u64(..WINDOW_MS),
    })
}

async fn post_batch(client: &reqwest::Client, url: &str, events: &[Value]) -> Vec<String> {
    let answer: Value = client
        .post(format!("{url}/api/events/batch"))
        .json(events)
        .send()
        .await
        .expect("batch")
        .json()
        .await
        .expect("answer");
    answer["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_str().expect("id").to_owned())
        .collect()
}

/// Walks every page of the window in `order`; the ids in walk order.
async fn walk(client: &reqwest::Client, url: &str, order: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut offset = String::new();
    let mut last: Option<(i64, String)> = None;
    loop {
        let page: Value = client
            .get(format!(
                "{url}/api/events?since={WINDOW_START_MS}&until={}&order={order}&limit=100&offset={offset}",
                WINDOW_START_MS + WINDOW_MS
            ))
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("page body");
        for event in page["events"].as_array().expect("events") {
            let key = (
                event["timestamp"].as_i64().expect("timestamp"),
                event["id"].as_str().expect("id").to_owned(),
            );
            if let Some(previous) = &last {
                let forward = if order == "asc" {
                    key > *previous
                } else {
                    key < *previous
                };
                assert!(forward, "the walk went back: {previous:?} then {key:?}");
            }
            ids.push(key.1.clone());
            last = Some(key);
        }
        match page["next_offset"].as_str() {
            Some(next) => offset = next.to_owned(),
            None => return ids,
        }
    }
}

async fn pagination(storage: Storage) {
    let scale = Scale::from_env();
    let before_len: u64 = scale.pick(5_000, 200_000);
    let node = Node::start(&storage, &[]).await;
    let client = eventline_faults::node::client();
    let mut before = HashSet::new();
    for first in (0..before_len).step_by(1_000) {
        let events: Vec<Value> = (first..first + 1_000).map(event).collect();
        before.extend(post_batch(&client, &node.url, &events).await);
    }
    // 1,000 events per second: a batch of 10 every 10 ms, until the walks end.
    let done = Arc::new(AtomicBool::new(false));
    let inserter = tokio::spawn({
        let (client, url, done) = (client.clone(), node.url.clone(), Arc::clone(&done));
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(10));
            let mut n = 1_000_000_000;
            let mut inserted = 0;
            while !done.load(Ordering::Relaxed) {
                every.tick().await;
                let events: Vec<Value> = (n..n + 10).map(event).collect();
                n += 10;
                inserted += post_batch(&client, &url, &events).await.len();
            }
            inserted
        }
    });
    let mut walked = 0;
    for order in ["asc", "desc"] {
        let ids = walk(&client, &node.url, order).await;
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{order}: an event came twice");
        let missing = before.iter().filter(|id| !unique.contains(id)).count();
        assert_eq!(
            missing, 0,
            "{order}: {missing} events stored before the walk are missing"
        );
        walked += ids.len();
    }
    done.store(true, Ordering::Relaxed);
    let inserted = inserter.await.expect("inserter");
    let report = eventline_faults::Report {
        test: "9 pagination under inserts".to_owned(),
        store: storage.name().to_owned(),
        acknowledged: before.len() + inserted,
        notes: format!(
            "2 walks of {} events stored before, {walked} rows walked, {inserted} inserted meanwhile, 0 missing, 0 repeated",
            before.len()
        ),
        ..eventline_faults::Report::default()
    };
    node.stop().await;
    crate::conclude(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_log() {
    pagination(Storage::log_dir()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_postgres() {
    pagination(Storage::database().await).await;
}
