//! Test 4: the k-th write, or the k-th sync, of the store's files fails, for each k over
//! a run (every k in the long mode, a spread of them in the short one). Never a 2xx for
//! an event that is not on disk; after a failed sync every write is refused (503) until
//! a restart, since a second sync could report success for pages the kernel dropped;
//! after a failed write the next writes go through. After each run the power is cut,
//! the server restarted, and the store checked against the ledger.

use eventline_faults::Scale;
use eventline_faults::inproc::InProcess;
use eventline_faults::ledger::{Fate, Ledger};
use eventline_faults::load::send_once;
use eventline_faults::node::stored;
use eventline_faults::sim_disk::{self, Fault, PowerCut};
use eventline_store::Durability;

/// The same requests every run: singles and batches, one at a time so that each run
/// makes the same writes and syncs.
fn workload() -> Vec<Vec<u64>> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut next = 0;
    (0..30)
        .map(|_| {
            let len = if rng.bool() { 1 } else { rng.u64(2..40) };
            next += len;
            (next - len..next).collect()
        })
        .collect()
}

struct Run {
    fates: Vec<Fate>,
    fired: u64,
    writes: u64,
    syncs: u64,
    ledger: Ledger,
    stored: usize,
}

/// One run of the workload under `fault`, then a power cut, a restart and the check.
async fn run(fault: Fault) -> Run {
    let dir = tempfile::tempdir().expect("temporary directory");
    let client = eventline_faults::node::client();
    let mut server = InProcess::start(dir.path(), Durability::Full).await;
    sim_disk::set_fault(fault);
    let ledger = Ledger::default();
    let mut fates = Vec::new();
    for ns in workload() {
        fates.push(send_once(&client, &server.url, 1, &ns, &ledger).await.fate);
    }
    let (writes, syncs, fired) = sim_disk::counts();
    server.power_cut(PowerCut::Clean).await;
    server.restart().await;
    let stored = stored(&client, &server.url).await;
    server.halt().await;
    ledger
        .check(&stored, None)
        .assert_clean(&format!("{fault:?}"));
    Run {
        fates,
        fired,
        writes,
        syncs,
        ledger,
        stored: stored.len(),
    }
}

/// `k` from 1 to `count`: all of them, or about `spread` evenly apart.
fn ks(count: u64, spread: Option<u64>) -> Vec<u64> {
    let step = spread.map_or(1, |spread| (count / spread).max(1));
    (1..=count).step_by(step as usize).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_and_syncs_never_acknowledge_lost_events() {
    io_errors("embedded log").await;
}

async fn io_errors(store: &str) {
    let _disk = sim_disk::exclusive().await;
    let spread = Scale::from_env().pick(Some(12), None);
    let clean = run(Fault::None).await;
    assert!(clean.fates.iter().all(|fate| *fate == Fate::Acknowledged));
    let mut faults: Vec<Fault> = ks(clean.writes, spread)
        .into_iter()
        .map(Fault::FailWrite)
        .collect();
    faults.extend(ks(clean.syncs, spread).into_iter().map(Fault::FailSync));
    let (mut acknowledged, mut refused, mut runs) = (0, 0, 0);
    let mut server_errors = 0;
    for fault in faults {
        let run = run(fault).await;
        runs += 1;
        if run.fired == 0 {
            continue;
        }
        let first_refused = run
            .fates
            .iter()
            .position(|fate| *fate != Fate::Acknowledged);
        match (fault, first_refused) {
            // A failed sync that fails a commit stops the writes for good; one under a
            // checkpoint fails nothing (the WAL still holds every page).
            (Fault::FailSync(_), Some(first)) => assert!(
                run.fates[first..]
                    .iter()
                    .all(|fate| *fate == Fate::Rejected(503)),
                "{fault:?}: a write went through after a failed sync: {:?}",
                run.fates
            ),
            // A failed write fails its commit only; the next ones go through.
            (Fault::FailWrite(_), Some(first)) => assert!(
                run.fates[first + 1..]
                    .iter()
                    .all(|fate| *fate == Fate::Acknowledged),
                "{fault:?}: writes did not resume after a failed write: {:?}",
                run.fates
            ),
            _ => {}
        }
        acknowledged += run.ledger.acknowledged_len();
        refused += run
            .fates
            .iter()
            .filter(|fate| **fate == Fate::Rejected(503))
            .count();
        server_errors += run.ledger.server_errors_except(&[503]);
        assert!(run.stored >= run.ledger.acknowledged_len());
    }
    let report = eventline_faults::Report {
        test: "4 I/O errors".to_owned(),
        store: store.to_owned(),
        acknowledged,
        lost: 0,
        duplicated: 0,
        server_errors,
        rss_peak_kb: 0,
        notes: format!(
            "{runs} runs, each failing one of {} writes or {} syncs; {refused} requests refused with 503",
            clean.writes, clean.syncs
        ),
    };
    crate::conclude(&report);
}
