//! Test 3, second half: damage to what was synced, the newest data first. The torn
//! tails of the first half are in `power_loss.rs`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;

use eventline_faults::Scale;
use eventline_faults::ledger::Ledger;
use eventline_faults::load::{Options, Writers};
use eventline_faults::node::{Node, Storage, eventline_bin, try_stored};

fn flip_bit(path: &Path, at: usize, bit: u8) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at] ^= 1 << bit;
    std::fs::write(path, bytes).expect("write");
}

/// `eventline <args>` to its end: whether it succeeded, and what it printed. A command
/// still running after 20 s (a server that started) is killed and counts as success.
async fn run_eventline(args: &[&str], dir: &Path) -> (bool, String) {
    let run = Command::new(eventline_bin())
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "off")
        .kill_on_drop(true)
        .output();
    let Ok(output) = tokio::time::timeout(Duration::from_secs(20), run).await else {
        return (
            true,
            format!("eventline {args:?} was still running after 20 s"),
        );
    };
    let output = output.expect("run eventline");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// A node that 16 writers got 3,000 events acknowledged by, then killed (`kill -9`),
/// and the writers' ledger.
async fn written_then_killed(storage: &Storage) -> (Node, Arc<Ledger>) {
    let mut node = Node::start(storage, &[]).await;
    let writers = Writers::start(&node.url, Options::default());
    writers
        .wait_for_acknowledged(3_000, Duration::from_secs(120))
        .await;
    let ledger = writers.stop().await;
    node.kill().await;
    (node, ledger)
}

/// The log store: a bit flipped in the newest 64 KB of its log, the last commit
/// included (a whole commit was synced and acknowledged, so damage to it is no torn
/// write). The server refuses to start, naming the file and byte, or serves every
/// acknowledged event as it was sent. The node is started once more after the kill and
/// stopped, which marks all it holds acknowledged: in the moment between a commit's
/// answer and its mark (a few milliseconds, `docs/format.md`), damage to that commit
/// cannot be told from a torn write, and is cut as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_the_synced_log_is_refused_never_served() {
    let trials = Scale::from_env().pick(12, 100);
    let storage = Storage::log_dir();
    let Storage::LogDir(dir) = &storage else {
        unreachable!()
    };
    let client = eventline_faults::node::client();
    let (mut node, ledger) = written_then_killed(&storage).await;
    node.restart().await;
    node.stop().await;

    let log_dir = dir.path().join("log");
    let mut files: Vec<_> = std::fs::read_dir(&log_dir)
        .expect("the log")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    files.sort();
    let newest = files.last().expect("a log file").clone();
    let len = std::fs::metadata(log_dir.join(&newest))
        .expect("log file")
        .len() as usize;
    let (mut served_whole, mut refused) = (0, 0);
    for _ in 0..trials {
        let damaged = Storage::log_dir();
        let Storage::LogDir(damaged_dir) = &damaged else {
            unreachable!()
        };
        let damaged_log = damaged_dir.path().join("log");
        std::fs::create_dir_all(&damaged_log).expect("log directory");
        for name in &files {
            std::fs::copy(log_dir.join(name), damaged_log.join(name)).expect("copy");
        }
        flip_bit(
            &damaged_log.join(&newest),
            fastrand::usize(len.saturating_sub(64 * 1024).max(8)..len),
            fastrand::u8(..8),
        );
        let (sound, report) = run_eventline(&["check"], damaged_dir.path()).await;
        match Node::try_start(&damaged, &[]).await {
            Ok(node) => {
                let events = try_stored(&client, &node.url).await.expect("served");
                node.stop().await;
                ledger.check(&events, None).assert_clean(&format!(
                    "damaged log served with a 200 (eventline check said: {report})"
                ));
                served_whole += 1;
            }
            Err(error) => {
                assert!(
                    !sound && report.contains("is damaged at byte"),
                    "the server did not start ({error}) but check said: {report}"
                );
                refused += 1;
            }
        }
    }
    eprintln!(
        "| 3 damaged data | embedded log | {} | 0 | 0 | 0 | - | log: {trials} flips in its newest 64 KB, {refused} refused at start, {served_whole} served whole |",
        ledger.acknowledged_len()
    );
}
