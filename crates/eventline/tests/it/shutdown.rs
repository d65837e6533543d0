//! SIGTERM under load: the process answers what it accepted, commits it, and exits 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_queue_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut server = Server::start(dir.path()).await;
    let client = reqwest::Client::new();
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let batch: Value = (0..500)
        .map(|n| json!({"event_type": "t", "content": {"n": n}}))
        .collect();
    let posters: Vec<_> = (0..16)
        .map(|_| {
            let (client, url, batch, acknowledged) = (
                client.clone(),
                server.url("/api/events/batch"),
                batch.clone(),
                Arc::clone(&acknowledged),
            );
            tokio::spawn(async move {
                // Post until the server stops answering.
                while let Ok(response) = client.post(&url).json(&batch).send().await {
                    match response.status().as_u16() {
                        201 => acknowledged.fetch_add(500, Ordering::Relaxed),
                        // Admission control: nothing of the batch was stored; a client
                        // posts it again.
                        429 => 0,
                        503 => break,
                        status => panic!("unexpected answer {status}"),
                    };
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acknowledged.load(Ordering::Relaxed) < 5_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "too few batches were acknowledged"
        );
        tokio::task::yield_now().await;
    }
    let pid = server.child.id().expect("pid").to_string();
    let kill = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(kill.success());
    let status = server.child.wait().await.expect("wait");
    assert!(status.success(), "exit status {status}");
    for poster in posters {
        poster.await.expect("poster");
    }

    let server = Server::start(dir.path()).await;
    let stored = server.all_events(&client).await.len();
    assert_eq!(
        stored,
        acknowledged.load(Ordering::Relaxed),
        "every acknowledged batch, and nothing else"
    );
}
