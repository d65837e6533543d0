//! Test 2: the power is cut at random moments under 16 writers, on a simulated disk that
//! loses every write not yet synced. Under the default durability nothing acknowledged
//! is lost. The control run, under `Durability::Normal` (acknowledged once the operating
//! system has the write), must lose some: it shows that the harness sees a loss when
//! there is one.
//!
//! Test 3, first half: the same with torn tails, the power going while the unsynced
//! writes are part way to the disk, in no order (`PowerCut::Scattered`: any subset of
//! the sectors or pages written, as disks and LazyFS leave them); the control run is cut
//! that way too. The second half, damage to what was synced, is in `corruption.rs`.

use std::time::Duration;

use eventline_faults::Scale;
use eventline_faults::inproc::InProcess;
use eventline_faults::load::{Options, Writers};
use eventline_faults::node::stored;
use eventline_faults::sim_disk::PowerCut;
use eventline_store::Durability;

/// Cuts the power `cuts` times; returns the events acknowledged before a cut and gone
/// after it, over all cuts, and the test's report.
async fn power_loss(
    durability: Durability,
    cut_kind: PowerCut,
    cuts: usize,
) -> (usize, eventline_faults::Report) {
    let _disk = eventline_faults::sim_disk::exclusive().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let client = eventline_faults::node::client();
    let mut server = InProcess::start(dir.path(), durability).await;
    let writers = Writers::start(&server.url, Options::default());
    let mut lost = 0;
    for cut in 0..cuts {
        let target = writers.ledger.acknowledged_len() + fastrand::usize(20..400);
        writers
            .wait_for_acknowledged(target, Duration::from_secs(120))
            .await;
        tokio::time::sleep(Duration::from_micros(fastrand::u64(..1_000))).await;
        server.power_cut(cut_kind).await;
        let acknowledged_before = writers.ledger.acknowledged();
        server.restart().await;
        let check = writers.ledger.check(
            &stored(&client, &server.url).await,
            Some(&acknowledged_before),
        );
        assert!(
            check.duplicated.is_empty() && check.altered.is_empty() && check.unexpected.is_empty(),
            "after cut {cut}: {check}"
        );
        if durability == Durability::Full {
            check.assert_clean(&format!("after cut {cut}"));
        }
        lost = check.lost.len();
    }
    let ledger = writers.stop().await;
    let stored = stored(&client, &server.url).await;
    server.halt().await;
    let check = ledger.check(&stored, None);
    let test = match cut_kind {
        PowerCut::Clean => format!("2 power loss ({durability:?})"),
        PowerCut::Scattered => format!("3 scattered tail ({durability:?})"),
    };
    let notes = format!("{cuts} power cuts");
    let report = eventline_faults::Report {
        // A commit whose sync the power cut failed answers 503 if the server is still
        // up to answer: honest, as nothing of it is stored.
        server_errors: ledger.server_errors_except(&[503]),
        ..eventline_faults::Report::new(
            &test,
            "embedded log",
            &ledger,
            &check,
            stored.len(),
            0,
            &notes,
        )
    };
    (lost.max(check.lost.len()), report)
}

async fn loses_nothing(cut_kind: PowerCut) {
    let cuts = Scale::from_env().pick(8, 50);
    let (_, report) = power_loss(Durability::Full, cut_kind, cuts).await;
    crate::conclude(&report);
}

/// The control: the same cuts with commits that wait for no sync lose acknowledged
/// events, so a clean run of the others is not the harness failing to look.
async fn loses_without_sync(cut_kind: PowerCut) {
    let (lost, report) = power_loss(Durability::Normal, cut_kind, 3).await;
    eprintln!("{report}");
    assert!(lost > 0, "the control run lost nothing: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_loses_nothing_acknowledged() {
    loses_nothing(PowerCut::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scattered_tails_lose_nothing_acknowledged() {
    loses_nothing(PowerCut::Scattered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_without_sync_is_seen_losing() {
    loses_without_sync(PowerCut::Scattered).await;
}
