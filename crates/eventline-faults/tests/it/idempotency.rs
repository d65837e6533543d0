//! Test 7: every id posted by up to 5 concurrent requests at once, with `kill -9`s in
//! between rounds: each id is stored exactly once, every acknowledged one among them.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use eventline_faults::Scale;
use eventline_faults::ledger::Ledger;
use eventline_faults::load::send_until_answered;
use eventline_faults::node::{Node, Storage};
use futures::future::join_all;

async fn idempotency(storage: Storage) {
    let scale = Scale::from_env();
    let ids: u64 = scale.pick(20_000, 1_000_000);
    let kills: u64 = scale.pick(4, 20);
    let run = fastrand::u64(..);
    let mut node = Node::start(&storage, &[]).await;
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let per_round = ids / (kills + 1);
    let mut requests = 0;
    for round in 0..=kills {
        let first = round * per_round;
        let last = if round == kills {
            ids
        } else {
            first + per_round
        };
        // 64 ids at a time, each sent 1 to 5 times at once; the node is killed part way
        // through each round but the last.
        let kill_at = first + fastrand::u64(..(last - first).max(1));
        let mut n = first;
        while n < last {
            let chunk: Vec<u64> = (n..(n + 64).min(last)).collect();
            n += chunk.len() as u64;
            let sends = chunk.iter().flat_map(|id| {
                let copies = fastrand::usize(1..=5);
                std::iter::repeat_n(*id, copies)
            });
            let sends: Vec<_> = sends
                .map(|id| {
                    let (client, url, ledger, stop) = (
                        client.clone(),
                        node.url.clone(),
                        Arc::clone(&ledger),
                        Arc::clone(&stop),
                    );
                    tokio::spawn(async move {
                        send_until_answered(&client, &url, run, &[id], &ledger, &stop).await
                    })
                })
                .collect();
            requests += sends.len();
            if round < kills && n >= kill_at && n < kill_at + 64 {
                node.kill().await;
                node.restart().await;
            }
            for send in join_all(sends).await {
                send.expect("sender");
            }
        }
    }
    let report = eventline_faults::Report::final_check(
        "7 idempotency",
        &storage,
        &ledger,
        node,
        &format!("{ids} ids, {requests} concurrent posts (1 to 5 per id), {kills} kills"),
    )
    .await;
    assert_eq!(
        report.acknowledged as u64, ids,
        "every id was acknowledged in the end"
    );
    crate::conclude(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_log() {
    idempotency(Storage::log_dir()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_postgres() {
    idempotency(Storage::database().await).await;
}
