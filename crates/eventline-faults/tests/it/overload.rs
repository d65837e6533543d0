//! Test 6: overload at twice the measured capacity. The capacity is measured first
//! (closed loop: 256 clients posting as fast as they are answered), then an open loop
//! sends twice that rate whatever the answers. The only answers other than 2xx are 429
//! and 503, every 2xx is stored, the server's memory stays under a stated bound, and the
//! latency of admitted requests stays bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventline_faults::Scale;
use eventline_faults::ledger::{Fate, Ledger};
use eventline_faults::load::send_once;
use eventline_faults::node::{Node, Storage};

/// The server's resident memory must stay under this (MB) while overloaded.
const RSS_MAX_MB: u64 = 400;
/// Admitted requests must be answered within this at the 99th percentile, in a release
/// build (the long mode): the server's own bound is a wait for a commit
/// (`QUEUE_DELAY_MAX_MS`) plus the commit, with room for a load generator that
/// shares the two cores. Without the bound the wait grew as long as the overload lasted
/// (p99 7 s after 5 s, in release, when it was found). A debug build spends its time
/// parsing on a CPU the load saturates, so its bound is looser.
const ADMITTED_P99_MAX: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(15)
} else {
    Duration::from_secs(4)
};
/// Requests in flight at once, at most: past it the client counts a request as shed by
/// the server being too slow to answer (none are, when the server sheds load itself).
const IN_FLIGHT_MAX: usize = 8_192;
/// How long the server lets a post wait for its commit before it refuses posts (429).
/// A quarter of the default second: every store takes in more than the capacity
/// measured with 256 clients once its group commits grow with the load, 7,000 to
/// 9,000 posts/s, and so clears the client's `IN_FLIGHT_MAX` requests in about a
/// second. With the default bound, whether posts waited past it was the machine's
/// noise: a long run on every store refused 2 to 6 % of them (under the 10 % asked
/// below) with 0 unanswered and p99 1.1 to 1.8 s. A quarter second is a bound the
/// client's requests in flight always exceed, so the refusals are the ingest's own.
const QUEUE_DELAY_MAX_MS: u64 = 250;

const BATCH_LEN: u64 = 50;

/// The events of a request that starts at `n`: one request in four is a batch.
fn request(n: u64) -> Vec<u64> {
    if fastrand::u8(..4) == 0 {
        (n..n + BATCH_LEN).collect()
    } else {
        vec![n]
    }
}

/// Clients of the capacity measure: enough that group commit, not the clients' own
/// round trips, sets the rate.
const CAPACITY_CLIENTS: usize = 256;

/// Requests per second (a mix of single posts and batches, see [`request`]) that
/// [`CAPACITY_CLIENTS`] clients get answered, over `window`.
async fn capacity(
    client: &reqwest::Client,
    url: &str,
    ledger: &Arc<Ledger>,
    next: &AtomicU64,
    window: Duration,
) -> f64 {
    let until = Instant::now() + window;
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CAPACITY_CLIENTS)
        .map(|_| {
            let (client, url, ledger, answered) = (
                client.clone(),
                url.to_owned(),
                Arc::clone(ledger),
                Arc::clone(&answered),
            );
            let first = next.fetch_add(1_000_000, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut n = first;
                while Instant::now() < until {
                    let ns = request(n);
                    n += ns.len() as u64;
                    if send_once(&client, &url, 2, &ns, &ledger).await.fate == Fate::Acknowledged {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    answered.load(Ordering::Relaxed) as f64 / window.as_secs_f64()
}

async fn overload(storage: Storage) {
    let seconds = Scale::from_env().pick(5, 30);
    // No rate limit: the test is of the ingest's own admission. Posts may wait
    // `QUEUE_DELAY_MAX_MS` for their commit (the default is 1 s): see there.
    // The log store flushes its memtable every 8 MiB, so that the long run's millions
    // of events are flushed and merged under the same memory bound as the other stores.
    let memtable_args = match storage {
        Storage::LogDir(_) => vec!["--log-memtable-mb", "8"],
        _ => Vec::new(),
    };
    let rss_max_mb = RSS_MAX_MB;
    let queue_delay_max_ms = QUEUE_DELAY_MAX_MS.to_string();
    let mut args = vec![
        "--ip-rate-limit",
        "0",
        "--key-rate-limit",
        "0",
        "--ingest-queue-delay-max-ms",
        &queue_delay_max_ms,
    ];
    args.extend(memtable_args);
    let mut node = Node::start(&storage, &args).await;
    // The node on one CPU, this load generator on both: with the node on both too,
    // the generator was what ran out first against a fast node (the log store's:
    // 300,000 requests not sent, 2 % refused), and the test measured the generator.
    node.pin_to_cpu(0);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(IN_FLIGHT_MAX)
        .build()
        .expect("client");
    let next = AtomicU64::new(0);
    let ledger = Arc::new(Ledger::default());
    let capacity = capacity(&client, &node.url, &ledger, &next, Duration::from_secs(2)).await;
    let rate = 2.0 * capacity;
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (mut sent, mut shed_by_client) = (0_u64, 0_u64);
    let started = Instant::now();
    let mut sends = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let per_tick = rate / 100.0;
    let mut owed = 0.0;
    while started.elapsed() < Duration::from_secs(seconds) {
        ticker.tick().await;
        node.sample_rss();
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            if in_flight.load(Ordering::Relaxed) >= IN_FLIGHT_MAX {
                shed_by_client += 1;
                continue;
            }
            let n = next.fetch_add(BATCH_LEN, Ordering::Relaxed) + 1_000_000_000;
            sent += 1;
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (client, url, ledger, latencies, in_flight) = (
                client.clone(),
                node.url.clone(),
                Arc::clone(&ledger),
                Arc::clone(&latencies),
                Arc::clone(&in_flight),
            );
            sends.push(tokio::spawn(async move {
                let answer = send_once(&client, &url, 2, &request(n), &ledger).await;
                if answer.fate == Fate::Acknowledged {
                    latencies.lock().expect("latencies").push(answer.elapsed);
                }
                in_flight.fetch_sub(1, Ordering::Relaxed);
            }));
        }
    }
    for send in sends {
        send.await.expect("send");
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
    latencies.sort();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let (p50, p99) = (percentile(0.5), percentile(0.99));
    let (statuses, unanswered, _) = ledger.statuses();
    let report = eventline_faults::Report::final_check(
        "6 overload",
        &storage,
        &ledger,
        node,
        &format!(
            "capacity {capacity:.0} posts/s, offered {rate:.0}/s for {seconds} s: {sent} sent, {shed_by_client} not sent (client at {IN_FLIGHT_MAX} in flight); admitted p50 {p50:?}, p99 {p99:?}"
        ),
    )
    .await;
    crate::conclude(&report);
    assert!(
        statuses
            .keys()
            .all(|status| matches!(status, 200 | 429 | 503)),
        "answers other than 2xx, 429, 503: {statuses:?}"
    );
    assert_eq!(unanswered, 0, "requests without an answer: {report}");
    assert!(report.rss_peak_kb / 1024 < rss_max_mb, "{report}");
    assert!(p99 < ADMITTED_P99_MAX, "admitted p99 {p99:?}: {report}");
    // Twice what it can take: the server must turn some away rather than queue it all.
    let refused = statuses.get(&429).copied().unwrap_or(0);
    assert!(
        refused * 10 >= sent as usize,
        "only {refused} of {sent} refused: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_log() {
    overload(Storage::log_dir()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_postgres() {
    overload(Storage::database().await).await;
}
