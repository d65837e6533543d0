//! Three Eventline nodes on one PostgreSQL, posted to concurrently, with retried
//! duplicates, and one of them `kill -9`ed in the middle: every acknowledged event is
//! stored exactly once, and the survivors serve the same pages and cursors.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::Server;

const WORKERS: usize = 48;
const POSTS: usize = 3_000;
/// Node 0 is killed once this many posts are acknowledged.
const KILL_AFTER_ACKNOWLEDGED: usize = 1_000;
/// Every this many posts, the acknowledged event is posted again through another node.
const DUPLICATE_EVERY: usize = 5;
/// Every this many posts, the event has no id and the node assigns one.
const SERVER_ID_EVERY: usize = 7;

fn event(id: Option<Uuid>, n: usize) -> Value {
    let mut event = json!({"event_type": "multinode", "content": {"n": n}, "contact_id": format!("c{}", n % 20)});
    if let Some(id) = id {
        event["id"] = json!(id);
    }
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_one_killed_store_each_acknowledged_event_once() {
    let database_url = eventline_testkit::database().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start_on_database(&database_url).await);
    }
    let urls: Arc<Vec<String>> =
        Arc::new(nodes.iter().map(|node| node.url("/api/events")).collect());
    let client = reqwest::Client::new();

    replay_and_conflict_across_nodes(&client, &urls).await;

    // The ledger: every id a node acknowledged, and what became of the posts.
    let acknowledged: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let unanswered: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let acknowledged_count = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (client, urls, acknowledged, unanswered, acknowledged_count, next, killed) = (
                client.clone(),
                Arc::clone(&urls),
                Arc::clone(&acknowledged),
                Arc::clone(&unanswered),
                Arc::clone(&acknowledged_count),
                Arc::clone(&next),
                Arc::clone(&killed),
            );
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= POSTS {
                        return;
                    }
                    let id = (n % SERVER_ID_EVERY != 0).then(Uuid::new_v4);
                    let body = event(id, n);
                    // Like a client SDK: a post without an answer is retried through the
                    // next node with the same id. One without an id is not retried.
                    let mut stored = None;
                    for attempt in 0..urls.len() {
                        let node = (n + attempt) % urls.len();
                        if node == 0 && killed.load(Ordering::Relaxed) {
                            continue;
                        }
                        match client.post(&urls[node]).json(&body).send().await {
                            Ok(response) if response.status().is_success() => {
                                let answer: Value = response.json().await.expect("event");
                                stored = Some((node, answer));
                                break;
                            }
                            Ok(response) => {
                                let status = response.status().as_u16();
                                assert_eq!(status, 503, "only an unavailable answer is expected");
                            }
                            Err(_) if id.is_none() => break,
                            Err(_) => {}
                        }
                    }
                    let Some((node, answer)) = stored else {
                        unanswered.lock().await.insert(n);
                        continue;
                    };
                    let stored_id: Uuid = answer["id"].as_str().expect("id").parse().expect("uuid");
                    if let Some(id) = id {
                        assert_eq!(stored_id, id);
                    }
                    assert!(
                        acknowledged.lock().await.insert(stored_id),
                        "an id was given twice"
                    );
                    acknowledged_count.fetch_add(1, Ordering::Relaxed);
                    if id.is_some() && n % DUPLICATE_EVERY == 0 {
                        // The retried duplicate, through a surviving node.
                        let other = if node == 1 { 2 } else { 1 };
                        let response = client
                            .post(&urls[other])
                            .json(&body)
                            .send()
                            .await
                            .expect("duplicate");
                        assert_eq!(response.status().as_u16(), 200, "a duplicate is a replay");
                        let replayed: Value = response.json().await.expect("event");
                        assert_eq!(replayed, answer, "a replay answers the stored event");
                    }
                }
            })
        })
        .collect();

    while acknowledged_count.load(Ordering::Relaxed) < KILL_AFTER_ACKNOWLEDGED {
        tokio::task::yield_now().await;
    }
    killed.store(true, Ordering::Relaxed);
    nodes[0].kill().await;
    for worker in workers {
        worker.await.expect("worker");
    }

    let acknowledged = acknowledged.lock().await;
    assert!(
        acknowledged.len() > KILL_AFTER_ACKNOWLEDGED,
        "posts went on after the kill"
    );
    // Both survivors serve the same pages, cursor by cursor.
    let mut events = Vec::new();
    let mut offset = String::new();
    loop {
        let path = format!("/api/events?event_types=multinode&limit=250&offset={offset}");
        let page = nodes[1].get_json(&client, &path).await;
        let same = nodes[2].get_json(&client, &path).await;
        assert_eq!(page, same, "the survivors differ at offset {offset:?}");
        events.extend(page["events"].as_array().expect("events").iter().cloned());
        match page["next_offset"].as_str() {
            Some(next) => offset = next.to_owned(),
            None => break,
        }
    }
    let mut stored: HashMap<Uuid, usize> = HashMap::new();
    for event in &events {
        let id: Uuid = event["id"].as_str().expect("id").parse().expect("uuid");
        *stored.entry(id).or_default() += 1;
    }
    assert!(
        stored.values().all(|copies| *copies == 1),
        "an event is stored twice"
    );
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|id| !stored.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
    // Anything else stored is an unanswered post's event: stored, but nobody was told.
    let unknown = stored.len() - acknowledged.len();
    assert!(
        unknown <= unanswered.lock().await.len(),
        "{unknown} events nobody posted"
    );
}

/// The same id through different nodes: a replay answers the stored event, a different
/// event under that id is refused, on every node.
async fn replay_and_conflict_across_nodes(client: &reqwest::Client, urls: &[String]) {
    let id = Uuid::new_v4();
    let original = json!({"id": id, "event_type": "across", "content": {"v": 1}, "timestamp": 1_700_000_000_000_i64});
    let first = client
        .post(&urls[0])
        .json(&original)
        .send()
        .await
        .expect("post");
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.expect("event");
    for url in &urls[1..] {
        let again = client.post(url).json(&original).send().await.expect("post");
        assert_eq!(again.status().as_u16(), 200);
        assert_eq!(again.json::<Value>().await.expect("event"), first);
        let mut changed = original.clone();
        changed["content"] = json!({"v": 2});
        let conflict = client.post(url).json(&changed).send().await.expect("post");
        assert_eq!(conflict.status().as_u16(), 409);
    }
}
