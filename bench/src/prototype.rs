//! `eventline-bench prototype`: what the storage design note decides by. It measures,
//! on the data set's events and with no server, the two halves of a log-structured
//! store on this machine's disk:
//!
//! - the log: each event framed with its length and a CRC-32, appended, and made
//!   durable with one `fdatasync` per group, as group commit would;
//! - the segments: the events sorted by (scope, contact, time) and cut into blocks of
//!   [`BLOCK_EVENTS`], each column compressed with zstd, plus a sparse index of one key per
//!   block.
//!
//! It prints events per second for each and bytes per event of the segments.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde_json::Value;

const BLOCK_EVENTS: usize = 8_192;
const ZSTD_LEVEL: i32 = 3;

struct Row {
    scope: String,
    contact_id: String,
    timestamp_ms: i64,
    id: [u8; 16],
    event_type: String,
    content: String,
}

pub fn run(input: &Path, group_len: usize) -> anyhow::Result<()> {
    let lines: Vec<String> = std::io::BufReader::new(
        std::fs::File::open(input).with_context(|| input.display().to_string())?,
    )
    .lines()
    .collect::<Result<_, _>>()?;
    let events = lines.len();
    eprintln!("{events} events read");

    // The log, in a directory on the same disk as the data set.
    let dir = tempfile::Builder::new()
        .prefix("eventline-prototype-")
        .tempdir_in(input.parent().unwrap_or(Path::new(".")))?;
    let started = Instant::now();
    let mut log = std::fs::File::create(dir.path().join("log"))?;
    let mut group = Vec::with_capacity(group_len * 300);
    for chunk in lines.chunks(group_len) {
        group.clear();
        for line in chunk {
            group.extend_from_slice(&(line.len() as u32).to_le_bytes());
            group.extend_from_slice(&crc32fast::hash(line.as_bytes()).to_le_bytes());
            group.extend_from_slice(line.as_bytes());
        }
        log.write_all(&group)?;
        log.sync_data()?;
    }
    let log_seconds = started.elapsed().as_secs_f64();
    let log_bytes = log.metadata()?.len();

    // The segments.
    let started = Instant::now();
    let mut rows = Vec::with_capacity(events);
    for line in &lines {
        let value: Value = serde_json::from_str(line)?;
        // Ids as the server gives them: UUID v7, the time of arrival and random bits.
        let id = *uuid::Uuid::now_v7().as_bytes();
        rows.push(Row {
            scope: value["scope"].as_str().unwrap_or_default().to_owned(),
            contact_id: value["contact_id"].as_str().unwrap_or_default().to_owned(),
            timestamp_ms: value["timestamp"].as_i64().unwrap_or_default(),
            id,
            event_type: value["event_type"].as_str().unwrap_or_default().to_owned(),
            content: value["content"].to_string(),
        });
    }
    rows.sort_unstable_by(|a, b| {
        (&a.scope, &a.contact_id, a.timestamp_ms).cmp(&(&b.scope, &b.contact_id, b.timestamp_ms))
    });
    let mut segment_bytes = 0usize;
    let mut index_bytes = 0usize;
    for block in rows.chunks(BLOCK_EVENTS) {
        let mut columns: [Vec<u8>; 6] = Default::default();
        let mut previous_ms = 0i64;
        for row in block {
            columns[0].extend_from_slice(&row.id);
            // Times ascend within a contact: deltas have few significant bytes, which
            // zstd packs; no integer coding of its own.
            columns[1].extend_from_slice(&(row.timestamp_ms - previous_ms).to_le_bytes());
            previous_ms = row.timestamp_ms;
            for (column, text) in [
                (2, &row.event_type),
                (3, &row.contact_id),
                (4, &row.scope),
                (5, &row.content),
            ] {
                columns[column].extend_from_slice(text.as_bytes());
                columns[column].push(b'\n');
            }
        }
        for column in &columns {
            segment_bytes += zstd::bulk::compress(column, ZSTD_LEVEL)?.len();
        }
        // The sparse index: the block's first key and its offset.
        index_bytes += block[0].scope.len() + block[0].contact_id.len() + 8 + 8;
    }
    let segment_seconds = started.elapsed().as_secs_f64();

    println!(
        "log: {events} events in groups of {group_len}, fdatasync per group: {:.0} events/s, {:.0} MB/s, {:.1} B/event",
        events as f64 / log_seconds,
        log_bytes as f64 / log_seconds / 1e6,
        log_bytes as f64 / events as f64
    );
    println!(
        "segments: parse, sort and compress {:.0} events/s on one core; {:.1} B/event \
         ({:.1} B/event of sparse index), blocks of {BLOCK_EVENTS}, zstd level {ZSTD_LEVEL}",
        events as f64 / segment_seconds,
        (segment_bytes + index_bytes) as f64 / events as f64,
        index_bytes as f64 / events as f64
    );
    Ok(())
}
