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
    let refused = Arc::new(AtomicUsize::new(0));
    let unanswered = Arc::new(AtomicUsize::new(0));

    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (client, ids, ledger, next, acknowledged) = (
                client.clone(),
                Arc::clone(&ids),
                Arc::clone(&ledger),
                Arc::clone(&next),
                Arc::clone(&acknowledged),
            );
            let (refused, unanswered) = (Arc::clone(&refused), Arc::clone(&unanswered));
            let url = server.url("/api/events/post");
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= POSTS {
                        return;
                    }
                    let id = ids[n];
                    // Overload answers 429 (the admission bound); a client retries those,
                    // as the SDKs do.
                    let mut result = client.post(&url).json(&event(id, n)).send().await;
                    let mut attempt = 0;
                    while let Ok(response) = &result
                        && response.status() == 429
                    {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(retry_wait(response, attempt)).await;
                        attempt += 1;
                        result = client.post(&url).json(&event(id, n)).send().await;
                    }
                    let fate = match result {
                        Ok(response) if response.status().as_u16() == 201 => {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                            Fate::Acknowledged
                        }
                        Ok(response) => panic!("unexpected answer {}", response.status()),
                        Err(_) => {
                            unanswered.fetch_add(1, Ordering::Relaxed);
                            Fate::Indeterminate
                        }
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
            "too few posts were acknowledged: {} acknowledged, {} refused (429), {} unanswered, {} posts started",
            acknowledged.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            unanswered.load(Ordering::Relaxed),
            next.load(Ordering::Relaxed)
        );
        tokio::task::yield_now().await;
    }
    server.kill().await;
    let in_flight_at_kill = next.load(Ordering::Relaxed).min(POSTS) - ledger.lock().await.len();
    // The workers' posts to the dead server fail at once; a stall here is a failure
    // with its place named, not a CI run that hangs.
    let ended = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        futures::future::join_all(workers),
    )
    .await
    .expect("the workers ended within two minutes of the kill");
    for worker in ended {
        worker.expect("worker");
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
        "crash test: {} acknowledged before kill -9 ({} refusals, {} posts unanswered), {} in flight, {} stored after restart, 0 lost",
        acknowledged_ids.len(),
        refused.load(Ordering::Relaxed),
        unanswered.load(Ordering::Relaxed),
        in_flight_at_kill,
        stored_set.len()
    );
}

/// How long a client waits before it retries a 429: `Retry-After` plus a random part of
/// an exponential backoff (the SDKs wait the longer of the two; the sum also spreads the
/// first retries of 2,000 clients refused at once). Two thousand clients retrying every 50 ms
/// once kept the server busy answering refusals until the test gave up; see "Clients
/// that ignore Retry-After" in docs/reliability.md.
fn retry_wait(response: &reqwest::Response, attempt: u32) -> std::time::Duration {
    let retry_after_s = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(1);
    let backoff_ms_max = 100_u64 << attempt.min(6);
    let jitter_ms = Uuid::new_v4().as_u128() % u128::from(backoff_ms_max);
    std::time::Duration::from_millis(retry_after_s * 1_000 + jitter_ms as u64)
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
