//! Test 1: `kill -9` at random moments under 16 concurrent writers (single posts,
//! batches, resent events, retries of unanswered requests). After each restart every
//! event acknowledged before the kill is stored; at the end the store holds exactly the
//! acknowledged events, once each, plus perhaps some unanswered ones, and nothing else.

use std::time::Duration;

use eventline_faults::Scale;
use eventline_faults::load::{Options, Writers};
use eventline_faults::node::{Node, Storage};

async fn crash_loop(storage: Storage) {
    let scale = Scale::from_env();
    let kills = scale.pick(8, 50);
    let client = eventline_faults::node::client();
    let mut node = Node::start(&storage, &[]).await;
    let writers = Writers::start(&node.url, Options::default());
    for kill in 0..kills {
        // A random moment: after a random number of new acknowledgements, then a random
        // fraction of a millisecond more.
        let target = writers.ledger.acknowledged_len() + fastrand::usize(20..400);
        writers
            .wait_for_acknowledged(target, Duration::from_secs(120))
            .await;
        tokio::time::sleep(Duration::from_micros(fastrand::u64(..1_000))).await;
        node.kill().await;
        let acknowledged_before = writers.ledger.acknowledged();
        node.restart().await;
        let stored = node.stored(&client).await;
        let check = writers.ledger.check(&stored, Some(&acknowledged_before));
        assert!(
            check.lost.is_empty() && check.duplicated.is_empty() && check.altered.is_empty(),
            "after kill {kill}: {} lost, {} duplicated, {} altered of {} acknowledged",
            check.lost.len(),
            check.duplicated.len(),
            check.altered.len(),
            check.acknowledged
        );
    }
    let ledger = writers.stop().await;
    let report = eventline_faults::Report::final_check(
        "1 crash loop",
        &storage,
        &ledger,
        node,
        &format!("{kills} kills"),
    )
    .await;
    crate::conclude(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_log() {
    crash_loop(Storage::log_dir()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_postgres() {
    crash_loop(Storage::database().await).await;
}
