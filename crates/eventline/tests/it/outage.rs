//! PostgreSQL stops abruptly (`pg_ctl stop -m immediate`) under load, then comes back:
//! no 2xx is given for an event that is not committed, posts, reads and `/healthz` answer
//! 503 with `Retry-After` meanwhile, and the server serves again without a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventline_testkit::Cluster;
use serde_json::json;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::Server;

const WORKERS: usize = 16;
const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_refuses_honestly_and_recovers_by_itself() {
    // A cluster of this test's own, to stop and start.
    let cluster = Cluster::start();
    let database_url = cluster.create_database().await;
    let server = Server::start_on_database(&database_url).await;
    let client = reqwest::Client::new();
    let url = server.url("/api/events");

    let acknowledged: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let acknowledged_count = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (client, url, acknowledged, acknowledged_count, refused, stop) = (
                client.clone(),
                url.clone(),
                Arc::clone(&acknowledged),
                Arc::clone(&acknowledged_count),
                Arc::clone(&refused),
                Arc::clone(&stop),
            );
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let id = Uuid::new_v4();
                    let event = json!({"id": id, "event_type": "outage", "content": {"worker": worker, "n": n}});
                    let response = client.post(&url).json(&event).send().await.expect("the server answers");
                    match response.status().as_u16() {
                        201 => {
                            acknowledged.lock().await.insert(id);
                            acknowledged_count.fetch_add(1, Ordering::Relaxed);
                        }
                        503 => {
                            assert!(response.headers().contains_key("retry-after"));
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        status => panic!("unexpected answer {status}"),
                    }
                }
            })
        })
        .collect();

    wait_for(
        || acknowledged_count.load(Ordering::Relaxed) >= 500,
        "posts before the outage",
    )
    .await;
    cluster.stop_immediately();
    let acknowledged_at_stop = acknowledged_count.load(Ordering::Relaxed);
    wait_for(
        || refused.load(Ordering::Relaxed) >= 50,
        "refusals during the outage",
    )
    .await;

    // During the outage: reads and the health check say so too.
    let read = client
        .get(server.url("/api/events?limit=5"))
        .send()
        .await
        .expect("get");
    assert_eq!(read.status().as_u16(), 503);
    assert!(read.headers().contains_key("retry-after"));
    let health = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 503);

    cluster.start_server();
    wait_for(
        || acknowledged_count.load(Ordering::Relaxed) >= acknowledged_at_stop + 500,
        "posts after the database returned",
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    let health = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);

    let stored: HashSet<Uuid> = server
        .all_events(&client)
        .await
        .iter()
        .map(|event| event["id"].as_str().expect("id").parse().expect("uuid"))
        .collect();
    let acknowledged = acknowledged.lock().await;
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "acknowledged, then lost in the outage: {lost:?}"
    );
}

/// Waits for `condition`, giving the workers the processor meanwhile.
async fn wait_for(condition: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
    }
}
