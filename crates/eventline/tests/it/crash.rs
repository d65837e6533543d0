//! `kill -9` in the middle of thousands of concurrent posts: after a restart, every
//! acknowledged event is there, exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::Server;

const WORKERS: usize = 2_000;
const POSTS: usize = 6_000;
/// The server is killed once this many posts are acknowledged.
const KILL_AFTER_ACKNOWLEDGED: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Acknowledged,
    /// No answer: the event may or may not be stored.
    Indeterminate,
}

fn event(id: Uuid, n: usize) -> Value {
    json!({"id": id, "event_type": "crash_test", "content": {"n": n}, "contact_id": format!("c{}", n % 50)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_concurrent_posts_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut server = Server::start(dir.path()).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(WORKERS)
        .build()
        .expect("client");
    let ids: Arc<Vec<Uuid>> = Arc::new((0..POSTS).map(|_| Uuid::new_v4()).collect());
    let ledger: Arc<Mutex<HashMap<Uuid, Fate>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(AtomicUsize::new(0));

    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (client, ids, ledger, next, acknowledged) = (
                client.clone(),
                Arc::clone(&ids),
                Arc::clone(&ledger),
                Arc::clone(&next),
                Arc::clone(&acknowledged),
            );
            let url = server.url("/api/events/post");
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= POSTS {
                        return;
                    }
                    let id = ids[n];
                    // Overload answers 429 (the admission bound); a client retries those.
                    let mut result = client.post(&url).json(&event(id, n)).send().await;
                    while matches!(&result, Ok(response) if response.status() == 429) {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        result = client.post(&url).json(&event(id, n)).send().await;
                    }
                    let fate = match result {
                        Ok(response) if response.status().as_u16() == 201 => {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                            Fate::Acknowledged
                        }
                        Ok(response) => panic!("unexpected answer {}", response.status()),
                        Err(_) => Fate::Indeterminate,
                    };
                    ledger.lock().await.insert(id, fate);
                }
            })
        })
        .collect();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while acknowledged.load(Ordering::Relaxed) < KILL_AFTER_ACKNOWLEDGED {
        assert!(
            std::time::Instant::now() < deadline,
            "too few posts were acknowledged"
        );
        tokio::task::yield_now().await;
    }
    server.child.start_kill().expect("kill -9");
    server.child.wait().await.expect("wait");
    let in_flight_at_kill = next.load(Ordering::Relaxed).min(POSTS) - ledger.lock().await.len();
    for worker in workers {
        worker.await.expect("worker");
    }
    let ledger = Arc::try_unwrap(ledger).expect("ledger").into_inner();
    let acknowledged_ids: HashSet<Uuid> = ledger
        .iter()
        .filter(|(_, fate)| **fate == Fate::Acknowledged)
        .map(|(id, _)| *id)
        .collect();
    let attempted: HashSet<Uuid> = ledger.keys().copied().collect();
    assert!(acknowledged_ids.len() >= KILL_AFTER_ACKNOWLEDGED);
    assert!(
        in_flight_at_kill > 0,
        "the kill came while posts were in flight"
    );

    let server = Server::start(dir.path()).await;
    let stored = all_ids(&client, &server).await;
    let stored_set: HashSet<Uuid> = stored.iter().copied().collect();
    assert_eq!(stored_set.len(), stored.len(), "no event is stored twice");
    let lost: Vec<&Uuid> = acknowledged_ids.difference(&stored_set).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events were lost",
        lost.len()
    );
    assert!(
        stored_set.is_subset(&attempted),
        "only posted events are stored"
    );

    // Retrying every unanswered post with its id stores each exactly once.
    let positions: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(n, id)| (*id, n)).collect();
    for (id, fate) in &ledger {
        if *fate == Fate::Indeterminate {
            let response = client
                .post(server.url("/api/events"))
                .json(&event(*id, positions[id]))
                .send()
                .await
                .expect("retry");
            let status = response.status().as_u16();
            assert!(status == 200 || status == 201, "retry answered {status}");
        }
    }
    let stored = all_ids(&client, &server).await;
    let stored_set: HashSet<Uuid> = stored.iter().copied().collect();
    assert_eq!(stored.len(), stored_set.len());
    assert_eq!(stored_set, attempted);
    eprintln!(
        "crash test: {} acknowledged before kill -9, {} in flight, {} stored after restart, 0 lost",
        acknowledged_ids.len(),
        in_flight_at_kill,
        stored_set.len()
    );
}

async fn all_ids(client: &reqwest::Client, server: &Server) -> Vec<Uuid> {
    let events = server.all_events(client).await;
    let id = |event: &Value| {
        event["id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .expect("id")
    };
    events.iter().map(id).collect()
}
