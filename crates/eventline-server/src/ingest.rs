//! The ingest pipeline: handlers submit validated events to a bounded queue; one writer
//! commits whatever has gathered in a single durable transaction (group commit) and only
//! then answers each waiting request.

pub use eventline_core::error_chain::ErrorChain;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use eventline_core::event::Event;
use eventline_store::{Outcome, Store, Submission};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub queue_events_max: usize,
    pub commit_events_max: usize,
    /// How long the oldest queued request may wait for its commit before new posts are
    /// refused: the queue's bound in time, which keeps an admitted post's latency bounded
    /// when more arrives than the store can commit.
    pub queue_delay_max: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("the ingest queue is full, or its posts wait too long for their commit")]
    Overloaded,
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The commit failed; the cause was logged by the writer.
    #[error("the store could not commit")]
    Store,
}

/// The handlers' side of the queue. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    sender: mpsc::Sender<Job>,
    /// One permit per queued event: the queue is bounded in events, not requests, since
    /// one request may carry ten thousand.
    permits: Arc<Semaphore>,
    depth: QueueDepth,
}

struct Job {
    submission: Submission,
    queued_at: Instant,
    reply: oneshot::Sender<Result<Outcome, IngestError>>,
    /// Released when the job is answered, freeing its place in the queue.
    permit: OwnedSemaphorePermit,
}

/// The writer task and the means to stop it.
pub struct Writer {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

/// Starts the writer; `committed` is notified after each commit that stored events.
pub fn start(
    store: Arc<dyn Store>,
    options: Options,
    committed: Arc<tokio::sync::Notify>,
) -> (Ingest, Writer) {
    let (sender, receiver) = mpsc::channel(options.queue_events_max);
    let (stop, stopped) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(options.queue_events_max));
    let depth = QueueDepth {
        permits: Arc::clone(&permits),
        queue_events_max: options.queue_events_max,
        delay: Arc::new(QueueDelay::new(options.queue_delay_max)),
    };
    let task = tokio::spawn(write_loop(
        store,
        receiver,
        stopped,
        options.commit_events_max,
        depth.clone(),
        committed,
    ));
    (
        Ingest {
            sender,
            permits,
            depth,
        },
        Writer { task, stop },
    )
}

impl Ingest {
    /// Queues one request's events and waits until they are durable (or refused).
    pub async fn submit(&self, events: Vec<Event>) -> Result<Outcome, IngestError> {
        let len = u32::try_from(events.len()).map_err(|_| IngestError::Overloaded)?;
        let queued = self.depth.queued();
        if queued == 0 {
            self.depth.delay.idle();
        } else if self.depth.delay.exceeded(queued) {
            return Err(IngestError::Overloaded);
        }
        let permit = Arc::clone(&self.permits)
            .try_acquire_many_owned(len)
            .map_err(|error| match error {
                tokio::sync::TryAcquireError::Closed => IngestError::ShuttingDown,
                tokio::sync::TryAcquireError::NoPermits => IngestError::Overloaded,
            })?;
        self.depth.record();
        let (reply, answer) = oneshot::channel();
        let job = Job {
            submission: Submission { events },
            queued_at: Instant::now(),
            reply,
            permit,
        };
        self.sender.try_send(job).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => IngestError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => IngestError::ShuttingDown,
        })?;
        // The writer answers every job it takes; a dropped reply means it is gone.
        answer.await.unwrap_or(Err(IngestError::ShuttingDown))
    }
}

/// Publishes how many events wait in the queue (taken permits).
#[derive(Clone)]
struct QueueDepth {
    permits: Arc<Semaphore>,
    queue_events_max: usize,
    delay: Arc<QueueDelay>,
}

impl QueueDepth {
    /// Events accepted and not answered yet.
    fn queued(&self) -> usize {
        self.queue_events_max - self.permits.available_permits()
    }

    fn record(&self) {
        metrics::gauge!(crate::telemetry::INGEST_QUEUE_EVENTS).set(self.queued() as f64);
    }
}

/// How long posts wait for their answer (queue and commit): the ingest's own measure of
/// whether it keeps up.
struct QueueDelay {
    start: Instant,
    delay_max: std::time::Duration,
    /// How long the oldest post of the last answered group waited, in microseconds.
    last_latency_us: AtomicU64,
    /// The last sign of progress, in microseconds since `start`: an answered group, or
    /// the queue found empty.
    last_progress_us: AtomicU64,
    /// Events committed per second while busy, a moving average (`f64` bits; 0: not
    /// measured yet).
    events_per_s: AtomicU64,
}

impl QueueDelay {
    fn new(delay_max: std::time::Duration) -> QueueDelay {
        QueueDelay {
            start: Instant::now(),
            delay_max,
            last_latency_us: AtomicU64::new(0),
            last_progress_us: AtomicU64::new(0),
            events_per_s: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        micros(self.start.elapsed())
    }

    /// Nothing is waiting: whatever comes next starts a fresh measure.
    fn idle(&self) {
        self.last_progress_us
            .store(self.now_us(), Ordering::Relaxed);
    }

    /// A group of `events` was answered; the oldest of its posts was queued at `oldest`.
    fn answered(&self, oldest: Instant, events: usize) {
        self.last_latency_us
            .store(micros(oldest.elapsed()), Ordering::Relaxed);
        let now_us = self.now_us();
        let since_us = now_us.saturating_sub(self.last_progress_us.swap(now_us, Ordering::Relaxed));
        if since_us > 0 {
            let rate = events as f64 * 1e6 / since_us as f64;
            let average = f64::from_bits(self.events_per_s.load(Ordering::Relaxed));
            let average = if average > 0.0 {
                0.8 * average + 0.2 * rate
            } else {
                rate
            };
            self.events_per_s
                .store(average.to_bits(), Ordering::Relaxed);
        }
    }

    /// Whether posts wait too long: the last group's oldest waited past the bound,
    /// nothing was answered for that long while posts wait (a slow commit), or the
    /// `queued` events would take longer than that to commit at the measured rate.
    fn exceeded(&self, queued: usize) -> bool {
        let max_us = micros(self.delay_max);
        let stalled_us = self
            .now_us()
            .saturating_sub(self.last_progress_us.load(Ordering::Relaxed));
        let events_per_s = f64::from_bits(self.events_per_s.load(Ordering::Relaxed));
        let drain_s = if events_per_s > 0.0 {
            queued as f64 / events_per_s
        } else {
            0.0
        };
        self.last_latency_us.load(Ordering::Relaxed) > max_us
            || stalled_us > max_us
            || drain_s > self.delay_max.as_secs_f64()
    }
}

fn micros(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Writer {
    /// Stops taking new submissions, commits everything already queued, and returns when
    /// the last commit is answered.
    pub async fn drain(self) {
        // The receiver may already be gone if the writer ended; nothing is left then.
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "ingest writer failed");
        }
    }
}

enum Wake {
    Job(Option<Job>),
    Stop,
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut receiver: mpsc::Receiver<Job>,
    mut stopped: watch::Receiver<bool>,
    commit_events_max: usize,
    depth: QueueDepth,
    committed: Arc<tokio::sync::Notify>,
) {
    let in_flight_max = store.appends_in_flight_max().max(1);
    // The events of all commits in flight together stay within one group's worth: a
    // post's wait is then bounded by what one commit takes, however many run at once.
    let group_events_max = (commit_events_max / in_flight_max).max(1);
    let mut in_flight = JoinSet::new();
    loop {
        // A free commit slot first: while every slot is busy, jobs gather in the queue
        // and go together in the next group.
        while in_flight.len() >= in_flight_max {
            in_flight.join_next().await;
        }
        let wake = tokio::select! {
            biased;
            job = receiver.recv() => Wake::Job(job),
            _ = stopped.wait_for(|stop| *stop) => Wake::Stop,
        };
        let first = match wake {
            Wake::Job(job) => job,
            Wake::Stop => {
                // Refuse new jobs; what is buffered is still received.
                receiver.close();
                receiver.recv().await
            }
        };
        let Some(first) = first else { break };
        let mut events = first.submission.events.len();
        let mut jobs = vec![first];
        while events < group_events_max {
            match receiver.try_recv() {
                Ok(job) => {
                    events += job.submission.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let store = Arc::clone(&store);
        let depth = depth.clone();
        let committed = Arc::clone(&committed);
        in_flight.spawn(async move {
            let oldest = jobs.iter().map(|job| job.queued_at).min();
            let stored = commit(store.as_ref(), jobs).await;
            if let Some(oldest) = oldest {
                depth.delay.answered(oldest, events);
            }
            if stored > 0 {
                committed.notify_one();
            }
            // The answered jobs' permits are released: the queue is shorter now.
            depth.record();
        });
    }
    // Every accepted job is answered before the writer ends.
    while in_flight.join_next().await.is_some() {}
}

/// Commits one group and answers its jobs; how many events were newly stored.
async fn commit(store: &dyn Store, jobs: Vec<Job>) -> u64 {
    let (submissions, replies): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .map(|job| (job.submission, (job.reply, job.permit)))
        .unzip();
    let events: usize = submissions
        .iter()
        .map(|submission| submission.events.len())
        .sum();
    let started = std::time::Instant::now();
    let result = store.append(submissions).await;
    metrics::histogram!(crate::telemetry::COMMIT_DURATION).record(started.elapsed().as_secs_f64());
    metrics::histogram!(crate::telemetry::COMMIT_EVENTS).record(events as f64);
    match result {
        Ok(outcomes) => {
            debug_assert_eq!(outcomes.len(), replies.len());
            let (stored, replayed) = outcomes
                .iter()
                .filter_map(|outcome| match outcome {
                    Outcome::Stored(appended) => Some(appended),
                    _ => None,
                })
                .flatten()
                .fold((0_u64, 0_u64), |(stored, replayed), appended| {
                    if appended.replayed() {
                        (stored, replayed + 1)
                    } else {
                        (stored + 1, replayed)
                    }
                });
            metrics::counter!(crate::telemetry::EVENTS_STORED).increment(stored);
            metrics::counter!(crate::telemetry::EVENTS_REPLAYED).increment(replayed);
            for ((reply, _permit), outcome) in replies.into_iter().zip(outcomes) {
                // The requester may have gone; its events are stored all the same.
                let _ = reply.send(Ok(outcome));
            }
            stored
        }
        Err(error) => {
            tracing::error!(error = %ErrorChain(&error), events, "group commit failed");
            metrics::counter!(crate::telemetry::STORE_ERRORS, "operation" => "append").increment(1);
            for (reply, _permit) in replies {
                let _ = reply.send(Err(IngestError::Store));
            }
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use eventline_core::event::Scope;
    use eventline_core::query::{Page, PageQuery};
    use eventline_store::{Appended, Error};
    use serde_json::value::RawValue;
    use uuid::Uuid;

    use super::*;

    /// A store whose commits wait for a permit, to hold the writer mid-commit.
    struct GatedStore {
        gate: Semaphore,
        appends_in_flight_max: usize,
        /// Appends that have started, finished or not.
        appends_started: std::sync::atomic::AtomicUsize,
    }

    impl GatedStore {
        fn new(appends_in_flight_max: usize) -> Arc<GatedStore> {
            Arc::new(GatedStore {
                gate: Semaphore::new(0),
                appends_in_flight_max,
                appends_started: std::sync::atomic::AtomicUsize::new(0),
            })
        }
    }

    #[async_trait]
    impl Store for GatedStore {
        async fn append(&self, submissions: Vec<Submission>) -> Result<Vec<Outcome>, Error> {
            self.appends_started
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.gate
                .acquire()
                .await
                .map_err(|_| Error::Closed)?
                .forget();
            let outcomes = submissions.into_iter().map(|submission| {
                Outcome::Stored(
                    submission
                        .events
                        .into_iter()
                        .map(|event| Appended::new(event.id))
                        .collect(),
                )
            });
            Ok(outcomes.collect())
        }
        async fn page(&self, _: PageQuery) -> Result<Page, Error> {
            Ok(Page {
                events: Vec::new(),
                next: None,
            })
        }
        async fn check(&self) -> Result<(), Error> {
            Ok(())
        }
        fn appends_in_flight_max(&self) -> usize {
            self.appends_in_flight_max
        }
        async fn erase_contact(&self, _: &str, _: bool) -> Result<u64, Error> {
            Ok(0)
        }
        async fn unsuppress_contact(&self, _: &str) -> Result<bool, Error> {
            Ok(false)
        }
        async fn delete_before(&self, _: i64, _: u32) -> Result<u64, Error> {
            Ok(0)
        }
        async fn stats(
            &self,
            _: eventline_core::stats::StatsQuery,
        ) -> Result<Vec<eventline_core::stats::StatsRow>, Error> {
            Ok(Vec::new())
        }
        async fn event_types(&self) -> Result<Vec<(String, u64)>, Error> {
            Ok(Vec::new())
        }
        async fn properties(
            &self,
            _: Option<&str>,
        ) -> Result<eventline_core::properties::Properties, Error> {
            Ok(Default::default())
        }
        async fn property_values(
            &self,
            _: &[String],
            _: usize,
        ) -> Result<eventline_core::properties::PropertyValues, Error> {
            Ok(Default::default())
        }
        async fn stream(
            &self,
            _: &eventline_core::query::Filter,
            after: eventline_core::cursor::StreamCursor,
            _: u32,
        ) -> Result<eventline_store::StreamChunk, Error> {
            Ok(eventline_store::StreamChunk {
                events: Vec::new(),
                upto: after,
            })
        }
        async fn stream_head(&self) -> Result<eventline_core::cursor::StreamCursor, Error> {
            Ok(eventline_core::cursor::StreamCursor {
                commit: 0,
                id: uuid::Uuid::nil(),
            })
        }
    }

    fn events(len: usize) -> Vec<Event> {
        (0..len)
            .map(|_| Event {
                id: Uuid::now_v7(),
                event_type: "t".to_owned(),
                content: RawValue::from_string("{}".to_owned()).expect("json"),
                contact_id: None,
                scope: Scope::App,
                timestamp_ms: 0,
                received_at_ms: 0,
                client_timestamp_ms: None,
            })
            .collect()
    }

    /// Submits `len` events from a task of their own, to wait for the answer later.
    fn submit_in_background(
        ingest: &Ingest,
        len: usize,
    ) -> tokio::task::JoinHandle<Result<Outcome, IngestError>> {
        let ingest = ingest.clone();
        tokio::spawn(async move { ingest.submit(events(len)).await })
    }

    async fn wait_until(condition: impl Fn() -> bool) {
        while !condition() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_frees_its_places_after_the_commit() {
        let store = GatedStore::new(1);
        let (ingest, writer) = start(
            store.clone(),
            Options {
                queue_events_max: 4,
                commit_events_max: 100,
                queue_delay_max: std::time::Duration::from_secs(60),
            },
            Arc::default(),
        );
        let first = submit_in_background(&ingest, 1);
        let second = submit_in_background(&ingest, 3);
        wait_until(|| ingest.permits.available_permits() == 0).await;
        assert_eq!(
            ingest.submit(events(1)).await.err(),
            Some(IngestError::Overloaded)
        );
        assert_eq!(
            ingest.submit(events(5)).await.err(),
            Some(IngestError::Overloaded)
        );

        store.gate.add_permits(2);
        assert!(matches!(first.await.expect("task"), Ok(Outcome::Stored(_))));
        assert!(matches!(
            second.await.expect("task"),
            Ok(Outcome::Stored(_))
        ));
        wait_until(|| ingest.permits.available_permits() == 4).await;
        store.gate.add_permits(1);
        assert!(ingest.submit(events(4)).await.is_ok());
        writer.drain().await;
    }

    /// A commit stuck past the delay bound: posts are refused although the queue has
    /// room, and admitted again once the commit is answered.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_commit_refuses_posts_after_the_delay_bound() {
        let store = GatedStore::new(1);
        let (ingest, writer) = start(
            store.clone(),
            Options {
                queue_events_max: 1_000,
                commit_events_max: 100,
                queue_delay_max: std::time::Duration::from_secs(1),
            },
            Arc::default(),
        );
        let first = submit_in_background(&ingest, 1);
        wait_until(|| {
            store
                .appends_started
                .load(std::sync::atomic::Ordering::SeqCst)
                == 1
        })
        .await;
        let second = submit_in_background(&ingest, 1);
        wait_until(|| ingest.depth.queued() == 2).await;
        tokio::time::advance(std::time::Duration::from_millis(1_100)).await;
        assert_eq!(
            ingest.submit(events(1)).await.err(),
            Some(IngestError::Overloaded)
        );
        store.gate.add_permits(2);
        assert!(first.await.expect("task").is_ok());
        assert!(second.await.expect("task").is_ok());
        wait_until(|| ingest.depth.queued() == 0).await;
        store.gate.add_permits(1);
        assert!(ingest.submit(events(1)).await.is_ok());
        writer.drain().await;
    }

    #[tokio::test]
    async fn drain_answers_everything_queued_then_refuses() {
        let store = GatedStore::new(1);
        let (ingest, writer) = start(
            store.clone(),
            Options {
                queue_events_max: 1_000,
                commit_events_max: 10,
                queue_delay_max: std::time::Duration::from_secs(60),
            },
            Arc::default(),
        );
        let waiting: Vec<_> = (0..50)
            .map(|_| {
                let ingest = ingest.clone();
                tokio::spawn(async move { ingest.submit(events(2)).await })
            })
            .collect();
        wait_until(|| ingest.permits.available_permits() == 900).await;
        store.gate.add_permits(1_000);
        writer.drain().await;
        for task in waiting {
            assert!(matches!(task.await.expect("task"), Ok(Outcome::Stored(_))));
        }
        assert_eq!(
            ingest.submit(events(1)).await.err(),
            Some(IngestError::ShuttingDown)
        );
    }

    #[tokio::test]
    async fn commits_run_side_by_side_when_the_store_allows() {
        let store = GatedStore::new(2);
        let (ingest, writer) = start(
            store.clone(),
            Options {
                queue_events_max: 100,
                commit_events_max: 100,
                queue_delay_max: std::time::Duration::from_secs(60),
            },
            Arc::default(),
        );
        let first = submit_in_background(&ingest, 1);
        // The first commit holds its slot until the gate opens.
        wait_until(|| {
            store
                .appends_started
                .load(std::sync::atomic::Ordering::SeqCst)
                == 1
        })
        .await;
        let second = submit_in_background(&ingest, 1);
        // The second goes into the other slot: both appends are under way at once.
        let started = || {
            store
                .appends_started
                .load(std::sync::atomic::Ordering::SeqCst)
        };
        wait_until(|| started() == 2).await;
        store.gate.add_permits(2);
        assert!(matches!(first.await.expect("task"), Ok(Outcome::Stored(_))));
        assert!(matches!(
            second.await.expect("task"),
            Ok(Outcome::Stored(_))
        ));
        writer.drain().await;
    }
}
