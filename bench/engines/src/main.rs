//! The storage design's comparison (`docs/storage-design.md`, "Why an engine of our
//! own"): the bench's events in three embedded engines, each used as Eventline would use
//! it, on the same disk and the same draws.
//!
//! - **eventline**: `eventline-log` itself, one submission per commit.
//! - **fjall** (an LSM tree) and **redb** (a copy-on-write B-tree): two tables, the
//!   events keyed by (contact, timestamp, id), which is what a timeline reads, and their
//!   ids keyed by id, which is what idempotency looks up; each commit one batch or
//!   write transaction, synced.
//!
//! For each: durable commits of `--group` events (events/s), bytes on disk once closed,
//! and contact timelines (a random contact, a 7-day window, 50 events) one after the
//! other (queries/s). Usage: `cargo run --release -- EVENTS.ndjson [GROUP_LEN]`, with the
//! file `bench/perf` writes (`bench/out/perf-1000000.ndjson`).

use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use eventline_core::commit::Submission;
use eventline_core::event::{Event, Scope};
use eventline_core::query::{Filter, Order, PageQuery, Start};
use redb::{ReadableDatabase, ReadableTable};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

const DAY_MS: i64 = 86_400_000;
const TIMELINES: usize = 20_000;
const TIMELINE_LIMIT: usize = 50;

#[derive(Deserialize)]
struct Line<'a> {
    event_type: String,
    #[serde(borrow)]
    content: &'a RawValue,
    contact_id: Option<String>,
    scope: Scope,
    timestamp: i64,
}

struct Timeline {
    contact_id: String,
    since_ms: i64,
    until_ms: i64,
}

struct Figures {
    events_per_s: f64,
    bytes_per_event: f64,
    timelines_per_s: f64,
    events_read: usize,
}

impl Figures {
    fn new(
        events_per_s: f64,
        bytes: u64,
        events: usize,
        (timelines_per_s, events_read): (f64, usize),
    ) -> Figures {
        Figures {
            events_per_s,
            bytes_per_event: bytes as f64 / events as f64,
            timelines_per_s,
            events_read,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let input = args
        .next()
        .context("usage: eventline-engines EVENTS.ndjson [GROUP_LEN]")?;
    let group_len: usize = args.next().map_or(Ok(10_000), |arg| arg.parse())?;
    let lines: Vec<String> =
        std::io::BufReader::new(std::fs::File::open(&input).with_context(|| input.clone())?)
            .lines()
            .collect::<Result<_, _>>()?;
    let mut rng = fastrand::Rng::with_seed(7);
    let events: Vec<Event> = lines
        .iter()
        .map(|line| {
            let line: Line = serde_json::from_str(line)?;
            Ok(Event {
                id: Uuid::from_u128(rng.u128(..)),
                event_type: line.event_type,
                content: line.content.to_owned(),
                contact_id: line.contact_id,
                scope: line.scope,
                timestamp_ms: line.timestamp,
                received_at_ms: line.timestamp,
                client_timestamp_ms: None,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    drop(lines);
    let first_ms = events
        .iter()
        .map(|event| event.timestamp_ms)
        .min()
        .unwrap_or(0);
    let timelines: Vec<Timeline> = (0..TIMELINES)
        .map(|_| {
            let since_ms = first_ms + rng.i64(0..23 * DAY_MS);
            Timeline {
                contact_id: format!("contact-{}", rng.u32(0..100_000)),
                since_ms,
                until_ms: since_ms + 7 * DAY_MS,
            }
        })
        .collect();
    let scratch = Path::new(&input).parent().unwrap_or(Path::new("."));
    println!(
        "{} events, commits of {group_len}, {TIMELINES} timelines of at most {TIMELINE_LIMIT}",
        events.len()
    );
    println!("engine     durable events/s   bytes/event   timelines/s   events read");
    for engine in ["eventline", "fjall", "redb"] {
        let dir = tempfile::Builder::new()
            .prefix("engines-")
            .tempdir_in(scratch)?;
        let figures = match engine {
            "eventline" => eventline(dir.path(), &events, group_len, &timelines)?,
            "fjall" => fjall(dir.path(), &events, group_len, &timelines)?,
            _ => redb(dir.path(), &events, group_len, &timelines)?,
        };
        println!(
            "{engine:<10} {:>16.0} {:>13.1} {:>13.0} {:>13}",
            figures.events_per_s,
            figures.bytes_per_event,
            figures.timelines_per_s,
            figures.events_read
        );
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        bytes += if metadata.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(bytes)
}

/// The key a timeline reads in order: contact, a zero byte, timestamp, id.
fn contact_key(contact_id: &str, timestamp_ms: i64, id: &Uuid) -> Vec<u8> {
    let mut key = Vec::with_capacity(contact_id.len() + 25);
    key.extend_from_slice(contact_id.as_bytes());
    key.push(0);
    // Offset so that byte order is numeric order for the data set's (positive) times.
    key.extend_from_slice(&(timestamp_ms as u64).to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// The value the key-value engines store: the event as the log store holds its fields,
/// as JSON (`content` as sent).
fn value(event: &Event) -> Vec<u8> {
    serde_json::to_vec(event).expect("an event serializes")
}

fn eventline(
    dir: &Path,
    events: &[Event],
    group_len: usize,
    timelines: &[Timeline],
) -> anyhow::Result<Figures> {
    let runtime = tokio::runtime::Runtime::new()?;
    let store = eventline_log::LogStore::open(dir, &eventline_log::LogOptions::default())?;
    let started = Instant::now();
    for group in events.chunks(group_len) {
        runtime.block_on(store.append(vec![Submission {
            events: group.to_vec(),
        }]))?;
    }
    let events_per_s = events.len() as f64 / started.elapsed().as_secs_f64();
    // Merges settle as they would on a server, then the store closes.
    let settle = Instant::now();
    while settle.elapsed().as_secs() < 60 {
        runtime.block_on(store.maintain())?;
        std::thread::sleep(store.maintain_interval());
        let segments = std::fs::read_dir(dir.join(eventline_log::LOG_DIR))?
            .filter(|entry| {
                entry
                    .as_ref()
                    .is_ok_and(|entry| entry.path().extension().is_some_and(|e| e == "seg"))
            })
            .count();
        if segments <= 12 && settle.elapsed().as_secs() >= 5 {
            break;
        }
    }
    drop(store);
    let bytes = dir_bytes(dir)?;
    let store = eventline_log::LogStore::open(dir, &eventline_log::LogOptions::default())?;
    let started = Instant::now();
    let mut events_read = 0;
    for timeline in timelines {
        let page = runtime.block_on(store.page(PageQuery {
            filter: Filter {
                since_ms: Some(timeline.since_ms),
                until_ms: Some(timeline.until_ms),
                contact_id: Some(timeline.contact_id.clone()),
                ..Filter::default()
            },
            order: Order::Asc,
            start: Start::First,
            limit: TIMELINE_LIMIT as u32,
        }))?;
        events_read += page.events.len();
    }
    let timelines_per_s = timelines.len() as f64 / started.elapsed().as_secs_f64();
    Ok(Figures::new(
        events_per_s,
        bytes,
        events.len(),
        (timelines_per_s, events_read),
    ))
}

fn fjall(
    dir: &Path,
    events: &[Event],
    group_len: usize,
    timelines: &[Timeline],
) -> anyhow::Result<Figures> {
    let started = Instant::now();
    {
        let db = fjall::Database::builder(dir).open()?;
        let by_contact = db.keyspace("events", fjall::KeyspaceCreateOptions::default)?;
        let by_id = db.keyspace("ids", fjall::KeyspaceCreateOptions::default)?;
        for group in events.chunks(group_len) {
            let mut batch = db.batch();
            for event in group {
                let key = contact_key(
                    event.contact_id.as_deref().unwrap_or(""),
                    event.timestamp_ms,
                    &event.id,
                );
                batch.insert(&by_id, event.id.as_bytes(), key.as_slice());
                batch.insert(&by_contact, key, value(event));
            }
            batch.commit()?;
            db.persist(fjall::PersistMode::SyncData)?;
        }
    }
    let events_per_s = events.len() as f64 / started.elapsed().as_secs_f64();
    let bytes = dir_bytes(dir)?;
    let db = fjall::Database::builder(dir).open()?;
    let by_contact = db.keyspace("events", fjall::KeyspaceCreateOptions::default)?;
    let (timelines_per_s, events_read) = key_range_timelines(timelines, |since, until| {
        let mut read = Vec::new();
        for item in by_contact
            .range(since.to_vec()..until.to_vec())
            .take(TIMELINE_LIMIT)
        {
            let (_, value) = item.into_inner()?;
            read.push(serde_json::from_slice(&value)?);
        }
        Ok(read)
    })?;
    Ok(Figures::new(
        events_per_s,
        bytes,
        events.len(),
        (timelines_per_s, events_read),
    ))
}

const REDB_EVENTS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("events");
const REDB_IDS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("ids");

fn redb(
    dir: &Path,
    events: &[Event],
    group_len: usize,
    timelines: &[Timeline],
) -> anyhow::Result<Figures> {
    let path = dir.join("events.redb");
    let started = Instant::now();
    {
        let db = redb::Database::create(&path)?;
        for group in events.chunks(group_len) {
            let transaction = db.begin_write()?;
            {
                let mut by_contact = transaction.open_table(REDB_EVENTS)?;
                let mut by_id = transaction.open_table(REDB_IDS)?;
                for event in group {
                    let key = contact_key(
                        event.contact_id.as_deref().unwrap_or(""),
                        event.timestamp_ms,
                        &event.id,
                    );
                    by_id.insert(event.id.as_bytes().as_slice(), key.as_slice())?;
                    by_contact.insert(key.as_slice(), value(event).as_slice())?;
                }
            }
            transaction.commit()?;
        }
    }
    let events_per_s = events.len() as f64 / started.elapsed().as_secs_f64();
    let bytes = dir_bytes(dir)?;
    let db = redb::Database::open(&path)?;
    let transaction = db.begin_read()?;
    let by_contact = transaction.open_table(REDB_EVENTS)?;
    let (timelines_per_s, events_read) = key_range_timelines(timelines, |since, until| {
        let mut read = Vec::new();
        for item in by_contact.range(since..until)?.take(TIMELINE_LIMIT) {
            let (_, value) = item?;
            read.push(serde_json::from_slice(value.value())?);
        }
        Ok(read)
    })?;
    Ok(Figures::new(
        events_per_s,
        bytes,
        events.len(),
        (timelines_per_s, events_read),
    ))
}

/// Runs the timelines through `read`, which answers the events of a key range (the
/// first [`TIMELINE_LIMIT`], each decoded): timelines per second, and events read.
fn key_range_timelines(
    timelines: &[Timeline],
    mut read: impl FnMut(&[u8], &[u8]) -> anyhow::Result<Vec<Event>>,
) -> anyhow::Result<(f64, usize)> {
    let started = Instant::now();
    let mut events_read = 0;
    for timeline in timelines {
        let since = contact_key(&timeline.contact_id, timeline.since_ms, &Uuid::nil());
        let until = contact_key(&timeline.contact_id, timeline.until_ms, &Uuid::nil());
        events_read += read(&since, &until)?.len();
    }
    let per_s = timelines.len() as f64 / started.elapsed().as_secs_f64();
    Ok((per_s, events_read))
}
