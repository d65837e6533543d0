//! The store's operations, as the `Store` trait of `eventline-store` asks for them: a
//! group commit, the reads, erasure, retention and upkeep. Each runs the engine's
//! blocking work off the caller's async threads.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

use eventline_core::commit::{Outcome, Submission};
use eventline_core::cursor::StreamCursor;
use eventline_core::properties::{Properties, PropertyValues};
use eventline_core::query::{Filter, Page, PageQuery};
use eventline_core::stats::{StatsQuery, StatsRow};
use eventline_core::stream::StreamChunk;

use crate::LogStore;
use crate::error::Error;
use crate::memtable::Memtable;
use crate::record::{self};
use crate::writer::COMMIT_BLOCK_BYTES;

impl LogStore {
    pub async fn append(&self, submissions: Vec<Submission>) -> Result<Vec<Outcome>, Error> {
        self.write(move |writer, table, sync_failed| {
            let (new_events, outcomes) = {
                let table = table.read().unwrap_or_else(PoisonError::into_inner);
                // The ids the segments hold, looked up before deciding: reading them
                // may fail, and deciding does not.
                let mut in_segments = HashMap::new();
                if !table.segments.is_empty() {
                    for event in submissions.iter().flat_map(|submission| &submission.events) {
                        if table.in_memory(&event.id).is_none()
                            && let Some(stored) = table.get(writer.disk.as_ref(), &event.id)?
                        {
                            in_segments.insert(event.id, stored);
                        }
                    }
                }
                let (outcomes, new_events) = eventline_core::commit::decide(
                    &submissions,
                    |id| table.in_memory(id).or_else(|| in_segments.get(id)),
                    |contact_id| writer.suppressed.contains(contact_id),
                );
                // Decided: the events to store and the answers are copies. The submitted
                // ones would be a third copy of the commit held through its write and
                // sync, tens of megabytes under an import.
                drop(submissions);
                let bytes: usize = new_events.iter().map(Memtable::event_bytes).sum();
                if !new_events.is_empty() && table.memory_bytes() + bytes > writer.memory_bytes_max
                {
                    return Err(Error::Full {
                        bytes_max: writer.memory_bytes_max,
                    });
                }
                let seq_first = table.memtable.seq_end();
                let stored: Vec<record::Stored> = new_events
                    .into_iter()
                    .zip(seq_first..)
                    .map(|(event, seq)| record::Stored { seq, event })
                    .collect();
                (stored, outcomes)
            };
            if new_events.is_empty() {
                return Ok(outcomes);
            }
            // Each submission's events in one block, so that a crash keeps a submission
            // whole or not at all; a block holds whole submissions up to
            // `COMMIT_BLOCK_BYTES`.
            let mut submission_lens = outcomes.iter().filter_map(|outcome| match outcome {
                Outcome::Stored(appended) => Some(
                    appended
                        .iter()
                        .filter(|appended| !appended.replayed())
                        .count(),
                ),
                _ => None,
            });
            let mut rest = new_events.as_slice();
            let seq_end = new_events.last().map_or(0, |stored| stored.seq + 1);
            writer.append_blocks(table, sync_failed, seq_end, |buffer, compressor| {
                let (mut len, mut bytes) = (0, 0);
                while bytes < COMMIT_BLOCK_BYTES
                    && let Some(submission_len) = submission_lens.next()
                {
                    let submission = &rest[len..(len + submission_len).min(rest.len())];
                    bytes += submission
                        .iter()
                        .map(|stored| Memtable::event_bytes(&stored.event))
                        .sum::<usize>();
                    len += submission.len();
                }
                if len == 0 {
                    // What the outcomes do not account for (none, if `decide` is right).
                    len = rest.len();
                }
                let (block, after) = rest.split_at(len);
                if let Some(first) = block.first() {
                    let seq_len = u32::try_from(block.len())
                        .expect("a block holds at most a group commit's events");
                    record::encode_block(buffer, first.seq, seq_len, block, compressor);
                }
                rest = after;
                !rest.is_empty()
            })?;
            {
                let mut table = table.write().unwrap_or_else(PoisonError::into_inner);
                for stored in new_events {
                    table
                        .memtable
                        .insert(stored.seq, writer.active, stored.event);
                }
            }
            writer.flush_if_full(table, sync_failed);
            Ok(outcomes)
        })
        .await
    }

    pub async fn page(&self, query: PageQuery) -> Result<Page, Error> {
        let small = query.filter.contact_id.is_some();
        self.reading(small, move |state, disk, _| state.page(disk, &query))
            .await
    }

    pub async fn stream(
        &self,
        filter: &Filter,
        after: StreamCursor,
        limit: u32,
    ) -> Result<StreamChunk, Error> {
        let filter = filter.clone();
        self.reading(false, move |state, disk, cache| {
            state.stream(disk, cache, &filter, after, limit)
        })
        .await
    }

    pub async fn stream_head(&self) -> Result<StreamCursor, Error> {
        Ok(self.read().head())
    }

    pub async fn check(&self) -> Result<(), Error> {
        // Not ready while writes are refused: a restart is what brings them back.
        self.refusal()
    }

    pub async fn erase_contact(&self, contact_id: &str, suppress: bool) -> Result<u64, Error> {
        let contact_id = contact_id.to_owned();
        self.write(move |writer, table, _| {
            // The frozen memtable's events are erased from its segment, once written,
            // and no merge rewrites a segment from before the erasure.
            writer.settle(table);
            if suppress && writer.suppressed.insert(contact_id.clone()) {
                writer.write_suppressed()?;
            }
            let (events, segments) = {
                let state = table.read().unwrap_or_else(PoisonError::into_inner);
                let segments: Vec<u32> = state
                    .segments
                    .iter()
                    .filter(|segment| segment.may_hold_contact(&contact_id))
                    .map(|segment| segment.number)
                    .collect();
                (state.memtable.contact_events(&contact_id), segments)
            };
            let mut erased = writer.delete(table, events)?;
            for number in segments {
                erased += writer.rewrite_segment(table, number, |event| {
                    event.contact_id.as_deref() == Some(contact_id.as_str())
                })?;
            }
            Ok(erased)
        })
        .await
    }

    pub async fn unsuppress_contact(&self, contact_id: &str) -> Result<bool, Error> {
        let contact_id = contact_id.to_owned();
        self.write(move |writer, _, _| {
            let was = writer.suppressed.remove(&contact_id);
            if was {
                writer.write_suppressed()?;
            }
            Ok(was)
        })
        .await
    }

    pub async fn delete_before(&self, cutoff_ms: i64, limit: u32) -> Result<u64, Error> {
        self.write(move |writer, table, _| {
            writer.settle(table);
            // Whole files of expired events go at once, however many they hold: removing
            // a file costs no more than removing one event, and rewriting it a thousand
            // events at a time would cost its length each time.
            let (events, oldest_segment) = {
                let state = table.read().unwrap_or_else(PoisonError::into_inner);
                let whole = state.memtable.expired_files(cutoff_ms, writer.active);
                let events = if whole.is_empty() {
                    state.memtable.events_before(cutoff_ms, limit as usize)
                } else {
                    whole
                };
                let oldest_segment = state
                    .segments
                    .iter()
                    .filter(|segment| segment.events_len > 0 && segment.timestamp_min < cutoff_ms)
                    .min_by_key(|segment| segment.timestamp_min)
                    .map(|segment| (segment.number, segment.timestamp_max < cutoff_ms));
                (events, oldest_segment)
            };
            if !events.is_empty() {
                return writer.delete(table, events);
            }
            // A segment goes whole, or is rewritten once without every expired event:
            // either costs its length, whatever the limit.
            match oldest_segment {
                Some((number, true)) => writer.remove_segment(table, number),
                Some((number, false)) => {
                    writer.rewrite_segment(table, number, |event| event.timestamp_ms < cutoff_ms)
                }
                None => Ok(0),
            }
        })
        .await
    }

    pub async fn stats(&self, query: StatsQuery) -> Result<Vec<StatsRow>, Error> {
        // A window may hold many events: always counted off the async threads.
        let (table, disk) = (Arc::clone(&self.table), Arc::clone(&self.disk));
        tokio::task::spawn_blocking(move || {
            table
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .stats(disk.as_ref(), &query)
        })
        .await?
    }

    pub async fn event_types(&self) -> Result<Vec<(String, u64)>, Error> {
        Ok(self.read().event_types())
    }

    /// The content paths of the events (of type `event_type`, if given), from the
    /// segments' content indexes and the memtables': no event is read.
    pub async fn properties(&self, event_type: Option<&str>) -> Result<Properties, Error> {
        Ok(self.read().properties(event_type))
    }

    /// The `limit` most common values of the path `keys`, from the same indexes.
    pub async fn property_values(
        &self,
        keys: &[String],
        limit: usize,
    ) -> Result<PropertyValues, Error> {
        Ok(self.read().property_values(keys, limit))
    }

    /// Puts a segment written since the last commit in place, and begins the next
    /// merge: a store that stopped receiving events would otherwise keep its frozen
    /// memtable, the log files, and as many segments as the last flush left. A store
    /// that refuses writes (a failed fsync, logged then) has nothing to do.
    pub async fn maintain(&self) -> Result<(), Error> {
        if self.refusal().is_err() {
            return Ok(());
        }
        self.write(|writer, table, _| {
            writer.finish_flush(table, false);
            writer.finish_merge(table, false);
            writer.begin_merge(table);
            Ok(())
        })
        .await
    }

    /// Every second: a merge finished while no events come is put in place, and the
    /// next one begun, within a second, so segments left by an import are merged soon
    /// after it (one merge a minute took a quarter of an hour).
    pub fn maintain_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
}
