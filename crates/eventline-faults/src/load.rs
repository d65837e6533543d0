//! Concurrent writers that post single events and batches, resend some events that were
//! already sent (as a client retrying would), retry what got no answer with the same
//! ids, and record every request in the ledger.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::ledger::{Fate, Ledger};

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub writers: usize,
    /// One request in this many is a batch (of 2 up to `batch_len_max` events).
    pub batch_every: u32,
    pub batch_len_max: usize,
    /// One request in this many resends an event sent before.
    pub resend_every: u32,
    /// How long one request may take before it counts as unanswered.
    pub request_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            writers: 16,
            batch_every: 4,
            batch_len_max: 20,
            resend_every: 8,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The event the harness sends for `n`; every copy of it is the same.
pub fn event(run: u64, n: u64) -> (Uuid, Value) {
    let id = Uuid::from_u64_pair(run, n);
    let body = json!({
        "id": id,
        "event_type": "fault",
        "content": {"n": n},
        "contact_id": format!("c{}", n % 97),
        // Fixed by n: a resent event is the same event.
        "timestamp": 1_700_000_000_000_u64 + n,
    });
    (id, body)
}

/// Running writers. Stop them with [`Writers::stop`].
pub struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    pub ledger: Arc<Ledger>,
}

impl Writers {
    /// Starts `options.writers` writers against `url`.
    pub fn start(url: &str, options: Options) -> Writers {
        let ledger = Arc::new(Ledger::default());
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(0));
        let run = fastrand::u64(..);
        let client = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .pool_max_idle_per_host(options.writers)
            .build()
            .expect("client");
        let tasks = (0..options.writers)
            .map(|_| {
                let writer = Writer {
                    client: client.clone(),
                    url: url.to_owned(),
                    run,
                    next: Arc::clone(&next),
                    ledger: Arc::clone(&ledger),
                    stop: Arc::clone(&stop),
                    options,
                    rng: fastrand::Rng::new(),
                };
                tokio::spawn(writer.run())
            })
            .collect();
        Writers {
            stop,
            tasks,
            ledger,
        }
    }

    /// Waits until at least `count` events are acknowledged in all.
    pub async fn wait_for_acknowledged(&self, count: usize, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        while self.ledger.acknowledged_len() < count {
            assert!(
                tokio::time::Instant::now() < until,
                "only {} of {count} events were acknowledged in {deadline:?}",
                self.ledger.acknowledged_len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops every writer after its current request (and its retries) and returns the
    /// ledger.
    pub async fn stop(self) -> Arc<Ledger> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("writer");
        }
        self.ledger
    }
}

struct Writer {
    client: reqwest::Client,
    url: String,
    run: u64,
    next: Arc<AtomicU64>,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    options: Options,
    rng: fastrand::Rng,
}

impl Writer {
    async fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            let sent = self.next.load(Ordering::Relaxed);
            let ns: Vec<u64> = if sent > 0 && self.rng.u32(..self.options.resend_every) == 0 {
                vec![self.rng.u64(..sent)]
            } else if self.rng.u32(..self.options.batch_every) == 0 {
                let len = self.rng.usize(2..=self.options.batch_len_max.max(2)) as u64;
                let first = self.next.fetch_add(len, Ordering::Relaxed);
                (first..first + len).collect()
            } else {
                vec![self.next.fetch_add(1, Ordering::Relaxed)]
            };
            self.send_until_answered(&ns).await;
        }
    }

    async fn send_until_answered(&mut self, ns: &[u64]) {
        send_until_answered(
            &self.client,
            &self.url,
            self.run,
            ns,
            &self.ledger,
            &self.stop,
        )
        .await;
    }
}

/// Sends `ns` as one request (a batch for several), again with the same events while it
/// gets no answer or a "not now" (429, 503), as a client with retries would; records
/// each attempt and returns the last fate. Gives up retrying once `stop` is set.
pub async fn send_until_answered(
    client: &reqwest::Client,
    url: &str,
    run: u64,
    ns: &[u64],
    ledger: &Ledger,
    stop: &AtomicBool,
) -> Fate {
    let mut attempt = 0;
    loop {
        let fate = send_once(client, url, run, ns, ledger).await.fate;
        let retry = matches!(fate, Fate::Indeterminate | Fate::Rejected(429 | 503));
        if !retry || attempt >= 50 || (stop.load(Ordering::Relaxed) && attempt > 0) {
            return fate;
        }
        attempt += 1;
        // Backing off while the server is down or busy.
        tokio::time::sleep(Duration::from_millis(20 + 10 * attempt)).await;
    }
}

/// How one request went.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub fate: Fate,
    /// Whether the answer said when to retry (`Retry-After`).
    pub retry_after: bool,
    pub elapsed: Duration,
}

/// Sends `ns` as one request (a batch for several), once, and records how it ended.
pub async fn send_once(
    client: &reqwest::Client,
    url: &str,
    run: u64,
    ns: &[u64],
    ledger: &Ledger,
) -> Answer {
    let events: Vec<(Uuid, Value)> = ns.iter().map(|n| event(run, *n)).collect();
    let keys: Vec<(Uuid, u64)> = events
        .iter()
        .zip(ns)
        .map(|((id, _), n)| (*id, *n))
        .collect();
    let (path, body) = match events.as_slice() {
        [(_, single)] => ("/api/events", single.clone()),
        _ => (
            "/api/events/batch",
            Value::Array(events.into_iter().map(|(_, body)| body).collect()),
        ),
    };
    // Known as sent before the server can store it: a check that reads the store while
    // this request is in flight must not take its events for ones never sent.
    ledger.sending(&keys);
    let started = std::time::Instant::now();
    let (fate, retry_after) = match client.post(format!("{url}{path}")).json(&body).send().await {
        Ok(response) if response.status().is_success() => (Fate::Acknowledged, false),
        Ok(response) => (
            Fate::Rejected(response.status().as_u16()),
            response
                .headers()
                .contains_key(reqwest::header::RETRY_AFTER),
        ),
        Err(_) => (Fate::Indeterminate, false),
    };
    ledger.record(&keys, fate);
    Answer {
        fate,
        retry_after,
        elapsed: started.elapsed(),
    }
}
