//! The live stream's fan-out. One follower per server reads the store in commit order,
//! woken by each local commit and once a second for other servers' commits, and
//! broadcasts each read to every subscriber, which keeps what its filters match.
//!
//! A subscriber that starts from a position (`Last-Event-ID`), or finds that a read
//! begins after its position, catches up from the store with its own filtered reads, then
//! follows the broadcast again: reads are ranges of commit order, so nothing is missed
//! and nothing is sent twice. The broadcast keeps the last `buffer_reads_max` reads; a
//! subscriber that falls further behind while following is dropped with a final
//! message, and its memory with it. It can reconnect and catch up from where it was.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use eventline_core::cursor::{StreamCursor, StreamStart};
use eventline_core::event::Event;
use eventline_core::query::Filter;
use eventline_core::stream::StreamQuery;
use eventline_store::{Store, StreamChunk};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, watch};

use crate::ingest::ErrorChain;

/// Events per store read, for the follower and for a subscriber catching up.
const READ_EVENTS_MAX: u32 = 1_000;
/// How often the follower looks for commits made by other servers.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// How long a subscriber stays silent before it sends its position again (and proxies
/// see the connection is alive).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Subscribers open at once; more are refused (503).
    pub subscribers_max: usize,
    /// Reads the broadcast keeps for subscribers that are behind.
    pub buffer_reads_max: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            subscribers_max: 256,
            buffer_reads_max: 256,
        }
    }
}

/// One read of the follower: every event committed in (`after`, `upto`].
struct Read {
    after: StreamCursor,
    upto: StreamCursor,
    events: Vec<(StreamCursor, Event)>,
}

/// The server's side of the live stream. Cheap to clone.
#[derive(Clone)]
pub struct Live {
    store: Arc<dyn Store>,
    reads: broadcast::Sender<Arc<Read>>,
    committed: Arc<Notify>,
    places: Arc<Semaphore>,
    closing: watch::Receiver<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("every stream place is taken")]
    Full,
    #[error("the store failed")]
    Store(#[from] eventline_store::Error),
}

/// The means to stop the follower task and every subscriber.
pub struct Follower {
    close: watch::Sender<bool>,
}

impl Follower {
    /// Ends every subscription (each with its final message) and the follower.
    pub fn close(self) {
        let _ = self.close.send(true);
    }
}

pub fn start(store: Arc<dyn Store>, committed: Arc<Notify>, options: Options) -> (Live, Follower) {
    let (reads, _) = broadcast::channel(options.buffer_reads_max.max(1));
    let (close, closing) = watch::channel(false);
    let live = Live {
        store,
        reads,
        committed,
        places: Arc::new(Semaphore::new(options.subscribers_max)),
        closing,
    };
    tokio::spawn(follow(live.clone()));
    (live, Follower { close })
}

async fn follow(live: Live) {
    let mut closing = live.closing.clone();
    let mut every = tokio::time::interval(FOLLOW_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `None` while nobody listens: nothing is read then, and the first subscriber's
    // catch-up covers whatever the follower starts after.
    let mut position: Option<StreamCursor> = None;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = live.committed.notified() => {}
            _ = every.tick() => {}
            _ = closing.wait_for(|closing| *closing) => return,
        }
        if live.reads.receiver_count() == 0 {
            position = None;
            continue;
        }
        let result = follow_once(&live, &mut position).await;
        match result {
            Ok(()) => failing = false,
            Err(error) => {
                // Once per outage; the follower retries each second.
                if !failing {
                    tracing::warn!(error = %ErrorChain(&error), "live stream cannot read the store; retrying");
                }
                failing = true;
            }
        }
    }
}

/// Reads and broadcasts everything committed after `position`.
async fn follow_once(
    live: &Live,
    position: &mut Option<StreamCursor>,
) -> Result<(), eventline_store::Error> {
    let mut after = match *position {
        Some(after) => after,
        None => {
            // Starting: an empty read says where from, so that a subscriber whose
            // position is older (it subscribed before the commit that woke the follower)
            // sees the gap and catches up from the store, even if nothing else is read.
            let head = live.store.stream_head().await?;
            let _ = live.reads.send(Arc::new(Read {
                after: head,
                upto: head,
                events: Vec::new(),
            }));
            head
        }
    };
    loop {
        let StreamChunk { events, upto } = live
            .store
            .stream(&Filter::default(), after, READ_EVENTS_MAX)
            .await?;
        let full = events.len() >= READ_EVENTS_MAX as usize;
        if upto > after {
            // No receiver left is fine: the next subscriber catches up from the store.
            let _ = live.reads.send(Arc::new(Read {
                after,
                upto,
                events,
            }));
            after = upto;
        }
        *position = Some(after);
        if !full {
            return Ok(());
        }
    }
}

impl Live {
    pub async fn subscribe(&self, query: StreamQuery) -> Result<Subscription, SubscribeError> {
        let place = Arc::clone(&self.places)
            .try_acquire_owned()
            .map_err(|_| SubscribeError::Full)?;
        // Subscribed before the start is known: every read after it is received.
        let reads = self.reads.subscribe();
        let (start, catching_up) = match query.after {
            Some(after) => (StreamStart::at(after), true),
            None => (self.store.stream_start().await?, false),
        };
        metrics::gauge!(crate::telemetry::STREAM_SUBSCRIBERS).increment(1.0);
        Ok(Subscription {
            store: Arc::clone(&self.store),
            filter: query.filter,
            position: start.position,
            start: (start.ended_below > start.position.commit).then_some(start),
            reads,
            pending: VecDeque::new(),
            catching_up,
            following: false,
            closing: self.closing.clone(),
            done: false,
            _place: place,
        })
    }
}

/// What a subscription sends next.
#[derive(Debug)]
pub enum Message {
    Event(StreamCursor, Event),
    /// Nothing new: where the subscription stands, so that a client that reconnects
    /// does not scan again what was already found empty.
    Position(StreamCursor),
    /// The last message.
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// More than the broadcast's buffer behind while following.
    TooSlow,
    ShuttingDown,
    StoreFailed,
}

impl CloseReason {
    pub fn code(self) -> &'static str {
        match self {
            CloseReason::TooSlow => "subscriber-too-slow",
            CloseReason::ShuttingDown => "shutting-down",
            CloseReason::StoreFailed => "storage-unavailable",
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            CloseReason::TooSlow => {
                "this stream fell too far behind the events being stored and was closed; reconnect with the last event id received (Last-Event-ID) to continue without a gap"
            }
            CloseReason::ShuttingDown => {
                "the server is shutting down; reconnect with the last event id received (Last-Event-ID) to continue without a gap"
            }
            CloseReason::StoreFailed => {
                "the store cannot be read right now; reconnect with the last event id received (Last-Event-ID) to continue without a gap"
            }
        }
    }
}

/// One subscriber's place in commit order.
pub struct Subscription {
    store: Arc<dyn Store>,
    filter: Filter,
    /// Every matching event up to here is sent or in `pending`.
    position: StreamCursor,
    /// Until the position passes it: the start, to leave out the events after `position`
    /// that were committed before the stream started.
    start: Option<StreamStart>,
    reads: broadcast::Receiver<Arc<Read>>,
    pending: VecDeque<(StreamCursor, Event)>,
    /// Reading from the store (at the start, or after a gap) instead of the broadcast.
    catching_up: bool,
    /// A broadcast read was used since the last catch-up: falling behind now is being slow.
    following: bool,
    closing: watch::Receiver<bool>,
    done: bool,
    _place: OwnedSemaphorePermit,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        metrics::gauge!(crate::telemetry::STREAM_SUBSCRIBERS).decrement(1.0);
    }
}

impl Subscription {
    /// Where the subscription starts: the position sent first.
    pub fn position(&self) -> StreamCursor {
        self.position
    }

    /// The next message; `None` after the last.
    pub async fn next(&mut self) -> Option<Message> {
        if self.done {
            return None;
        }
        loop {
            if let Some((position, event)) = self.pending.pop_front() {
                return Some(Message::Event(position, event));
            }
            if *self.closing.borrow() {
                return Some(self.close(CloseReason::ShuttingDown));
            }
            if self.catching_up {
                match self
                    .store
                    .stream(&self.filter, self.position, READ_EVENTS_MAX)
                    .await
                {
                    Ok(chunk) => {
                        self.catching_up = chunk.events.len() >= READ_EVENTS_MAX as usize;
                        self.position = chunk.upto;
                        let start = &self.start;
                        self.pending.extend(
                            chunk
                                .events
                                .into_iter()
                                .filter(|(position, _)| is_new(start, *position)),
                        );
                        self.forget_start();
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(error = %ErrorChain(&error), "live stream closed: the store failed");
                        return Some(self.close(CloseReason::StoreFailed));
                    }
                }
            }
            let received = tokio::select! {
                biased;
                _ = self.closing.wait_for(|closing| *closing) => None,
                received = tokio::time::timeout(KEEPALIVE_INTERVAL, self.reads.recv()) => Some(received),
            };
            let Some(received) = received else {
                return Some(self.close(CloseReason::ShuttingDown));
            };
            match received {
                Err(_silent) => return Some(Message::Position(self.position)),
                Ok(Ok(read)) => self.take(&read),
                Ok(Err(broadcast::error::RecvError::Lagged(_))) if !self.following => {
                    // Behind because it was catching up, not because it reads slowly:
                    // catch up again from where it is.
                    self.reads = self.reads.resubscribe();
                    self.catching_up = true;
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    metrics::counter!(crate::telemetry::STREAM_DROPPED).increment(1);
                    return Some(self.close(CloseReason::TooSlow));
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Some(self.close(CloseReason::ShuttingDown));
                }
            }
        }
    }

    fn take(&mut self, read: &Read) {
        if read.upto <= self.position {
            return;
        }
        if read.after > self.position {
            // Events between the two were read before this subscriber listened.
            self.catching_up = true;
            self.following = false;
            return;
        }
        self.following = true;
        self.pending.extend(
            read.events
                .iter()
                .filter(|(position, event)| {
                    *position > self.position
                        && self.filter.matches(event)
                        && is_new(&self.start, *position)
                })
                .cloned(),
        );
        self.position = read.upto;
        self.forget_start();
    }

    fn forget_start(&mut self) {
        if self
            .start
            .as_ref()
            .is_some_and(|start| start.is_behind(self.position))
        {
            self.start = None;
        }
    }

    fn close(&mut self, reason: CloseReason) -> Message {
        self.done = true;
        Message::Closed(reason)
    }
}

/// Whether an event at `position` was committed after the subscription's start.
fn is_new(start: &Option<StreamStart>, position: StreamCursor) -> bool {
    start
        .as_ref()
        .is_none_or(|start| !start.committed_before(position))
}
