//! Flushes and merges: the memtable written as a segment, and runs of segments merged,
//! each on a thread of its own beside the writer (`Job`), put in place by the writer.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError, RwLock};

use eventline_core::error_chain::ErrorChain;

use super::Writer;
use crate::counts::Counts;
use crate::error::Error;
use crate::files::{io_error, put_in_place, remove_if_present, temporary_path};
use crate::memtable::Memtable;
use crate::segment::{self, Segment, segment_name};
use crate::state::State;

/// Work on a thread of its own beside the writer: what the writer needs to finish it
/// (`about`), and the thread, which answers what it made.
pub(crate) struct Job<A, T> {
    about: A,
    thread: std::thread::JoinHandle<Result<T, Error>>,
}

impl<A, T: Send + 'static> Job<A, T> {
    pub(crate) fn spawn(
        name: &str,
        about: A,
        work: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> std::io::Result<Job<A, T>> {
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(work)?;
        Ok(Job { about, thread })
    }

    /// The job in `slot` and its answer once its thread is done (with `wait`, once it
    /// is); `None` while it runs, or if there is none.
    pub(crate) fn done(slot: &mut Option<Job<A, T>>, wait: bool) -> Option<(A, Result<T, Error>)> {
        let job = slot.take()?;
        if !wait && !job.thread.is_finished() {
            *slot = Some(job);
            return None;
        }
        let answer = job
            .thread
            .join()
            .unwrap_or_else(|_| Err(Error::Corrupt("a store thread panicked".to_owned())));
        Some((job.about, answer))
    }
}

/// A frozen memtable being written as a segment, about the last log file it holds; it
/// answers the segment and its counts per minute.
pub(crate) type FlushJob = Job<u32, (Segment, Counts)>;

/// Segments being merged into one, about their numbers and the temporary file the
/// merged one is written to; it answers the merged segment.
pub(crate) type MergeJob = Job<(Vec<u32>, PathBuf), Segment>;

/// Segments merge at most this many at a time: the newest adjacent ones of a size that
/// fit under `merged_events_max` together (`merge_run`).
const MERGE_LEN: usize = 4;

/// Which of the segments of these sizes (in events, oldest first) to merge: the newest
/// run of adjacent ones, of as many as `MERGE_LEN` and at least two, that together hold
/// at most `events_max` and are of a size: none more than twice another, or the largest
/// no more than the others together. Either way the merged segment is at least half
/// again as large as the largest it replaces, so an event is written again a few times
/// at most, never once per flush. The second form also merges the uneven segments a
/// fast import leaves while merges lag behind it: the first alone left 16 segments of
/// 10,000,000 events with a 32 MiB memtable.
pub(crate) fn merge_run(sizes: &[u64], events_max: u64) -> Option<std::ops::Range<usize>> {
    let mergeable = |run: &[u64]| {
        let sizes = run.iter().map(|size| (*size).max(1));
        let (smallest, largest) = (sizes.clone().min(), sizes.clone().max());
        let total = sizes.sum::<u64>();
        smallest.zip(largest).is_some_and(|(smallest, largest)| {
            (largest <= smallest * 2 || largest <= total - largest) && total <= events_max
        })
    };
    (2..=MERGE_LEN.min(sizes.len())).rev().find_map(|len| {
        (0..=sizes.len() - len)
            .rev()
            .map(|start| start..start + len)
            .find(|run| mergeable(&sizes[run.clone()]))
    })
}

impl Writer {
    /// Begins writing the memtable as a segment if it holds `flush_at_bytes`, and puts
    /// in place a segment written since the last call. A failure is logged, not
    /// returned: the commit that filled the memtable is durable in the log, and the
    /// flush is tried again once the memtable has grown by a quarter more.
    pub(crate) fn flush_if_full(&mut self, table: &RwLock<State>, sync_failed: &AtomicBool) {
        self.finish_flush(table, false);
        self.finish_merge(table, false);
        let bytes = table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .memtable
            .bytes();
        if bytes < self.flush_at_bytes {
            return;
        }
        // One memtable is written at a time: a writer faster than the flush waits here,
        // which bounds the memory to two memtables.
        self.finish_flush(table, true);
        if let Err(error) = self.begin_flush(table, sync_failed) {
            self.flush_at_bytes = bytes + self.memtable_bytes_max / 4;
            tracing::warn!(error = %ErrorChain(&error), "the memtable could not be written as a segment; it stays in memory and in the log");
        }
    }

    /// Freezes the memtable and writes it as a segment named after the last log file
    /// that holds its events, on a thread of its own. The commits after go to a new log
    /// file, so that a file is either wholly in segments or wholly not; the frozen
    /// memtable is read until the segment is in place.
    pub(crate) fn begin_flush(
        &mut self,
        table: &RwLock<State>,
        sync_failed: &AtomicBool,
    ) -> Result<(), Error> {
        let covered = self.active;
        self.rotate(table, sync_failed)?;
        let frozen = {
            let mut state = table.write().unwrap_or_else(PoisonError::into_inner);
            let mut fresh = Memtable::new();
            fresh.reserve(state.memtable.seq_end());
            let frozen = Arc::new(std::mem::replace(&mut state.memtable, fresh));
            state.frozen = Some(Arc::clone(&frozen));
            frozen
        };
        let path = self.log_dir.join(segment_name(covered));
        let generation = self.generation();
        let disk = Arc::clone(&self.disk);
        let job = Job::spawn("eventline-flush", covered, move || {
            let seq_end = frozen.seq_end();
            let seq_first = frozen.seq_first().unwrap_or(seq_end);
            let events = frozen.events_by_time().into_iter();
            let temporary = temporary_path(&path);
            let (footer, format) = segment::write(
                disk.as_ref(),
                &temporary,
                events,
                seq_first,
                seq_end,
                Vec::new(),
            )?;
            put_in_place(disk.as_ref(), &temporary, &path)?;
            Ok(Segment::from_footer(
                covered, path, generation, footer, format,
            ))
        })
        .map_err(|error| Error::DataDir {
            path: self.log_dir.clone(),
            source: error,
        })?;
        self.flush_job = Some(job);
        Ok(())
    }

    /// Puts the segment of the flush in flight in place once it is written (with
    /// `wait`, waits for it), then removes the log files it holds. If the flush failed,
    /// its events go back into the memtable. With `wait`, no memtable is frozen after.
    pub(crate) fn finish_flush(&mut self, table: &RwLock<State>, wait: bool) {
        let Some((covered, written)) = Job::done(&mut self.flush_job, wait) else {
            return;
        };
        let frozen = {
            let mut state = table.write().unwrap_or_else(PoisonError::into_inner);
            let frozen = state.frozen.take();
            match &written {
                Ok((segment, counts)) => {
                    // The segment's index is shared: this copy costs a few fields.
                    state.segments.push(segment.clone());
                    state.segment_counts.add_counts(counts);
                    frozen
                }
                Err(_) => {
                    if let Some(frozen) = frozen {
                        state.memtable.absorb(&frozen);
                    }
                    None
                }
            }
        };
        // Freed outside the lock: tens of thousands of events take a while.
        drop(frozen);
        match written {
            Ok(_) => {
                self.flush_at_bytes = self.memtable_bytes_max;
                if let Err(error) = self.remove_logs_upto(covered) {
                    // Removed at the next start, which finds the segment that holds them.
                    tracing::warn!(error = %ErrorChain(&error), "log files a segment holds could not be removed");
                }
                self.begin_merge(table);
            }
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "the memtable could not be written as a segment; it stays in memory and in the log");
            }
        }
    }

    /// Waits for the flush and the merge in flight and puts their segments in place:
    /// what erasure, retention and `check` need, since they rewrite or read segments.
    pub(crate) fn settle(&mut self, table: &RwLock<State>) {
        self.finish_flush(table, true);
        // After the flush: putting its segment in place may begin a merge.
        self.finish_merge(table, true);
    }

    /// Begins merging the newest segments on a thread of its own, if some are of a
    /// size (`merge_run`) and no merge is in flight.
    pub(crate) fn begin_merge(&mut self, table: &RwLock<State>) {
        if self.merge_job.is_some() {
            return;
        }
        let inputs: Vec<Segment> = {
            let state = table.read().unwrap_or_else(PoisonError::into_inner);
            let segments = &state.segments;
            let sizes: Vec<u64> = segments.iter().map(|segment| segment.events_len).collect();
            let Some(run) = merge_run(&sizes, self.merged_events_max) else {
                return;
            };
            segments[run].to_vec()
        };
        let Some(newest) = inputs.last() else {
            return;
        };
        let (number, path) = (newest.number, newest.path.clone());
        let temporary = temporary_path(&path);
        let generation = self.generation();
        let disk = Arc::clone(&self.disk);
        let numbers = inputs.iter().map(|segment| segment.number).collect();
        let written_to = temporary.clone();
        let about = (numbers, temporary);
        let spawned = Job::spawn("eventline-merge", about, move || {
            let (footer, format) = segment::merge(disk.as_ref(), &inputs, &written_to)?;
            Ok(Segment::from_footer(number, path, generation, footer, format).0)
        });
        match spawned {
            Ok(job) => self.merge_job = Some(job),
            Err(error) => {
                tracing::warn!(error = %error, "a merge of segments could not begin");
            }
        }
    }

    /// Puts the merged segment in place once it is written (with `wait`, waits for
    /// it): renamed over the newest of its inputs under the write lock, then the other
    /// inputs removed. A merge that failed leaves its inputs as they were.
    pub(crate) fn finish_merge(&mut self, table: &RwLock<State>, wait: bool) {
        let Some(((inputs, temporary), merged)) = Job::done(&mut self.merge_job, wait) else {
            return;
        };
        let installed = merged.and_then(|merged| {
            let mut state = table.write().unwrap_or_else(PoisonError::into_inner);
            put_in_place(self.disk.as_ref(), &temporary, &merged.path)?;
            let first = state
                .segments
                .iter()
                .position(|segment| inputs.contains(&segment.number));
            state
                .segments
                .retain(|segment| !inputs.contains(&segment.number));
            state.segments.insert(first.unwrap_or(0), merged);
            Ok(())
        });
        if let Err(error) = installed {
            let _ = remove_if_present(self.disk.as_ref(), &temporary);
            tracing::warn!(error = %ErrorChain(&error), "segments could not be merged; they stay as they are");
            return;
        }
        let newest = inputs.last().copied();
        let removed = inputs
            .iter()
            .filter(|number| Some(**number) != newest)
            .try_for_each(|number| {
                let path = self.log_dir.join(segment_name(*number));
                remove_if_present(self.disk.as_ref(), &path)
            })
            .and_then(|()| {
                self.disk
                    .sync_dir(&self.log_dir)
                    .map_err(io_error(&self.log_dir))
            });
        if let Err(error) = removed {
            // Removed at the next start: the merged segment names them.
            tracing::warn!(error = %ErrorChain(&error), "merged segments could not be removed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::merge_run;

    const MAX: u64 = 3_000_000;

    #[test]
    fn merges_the_newest_longest_run_of_a_size() {
        assert_eq!(merge_run(&[100, 100, 100, 100, 100], MAX), Some(1..5));
        assert_eq!(merge_run(&[1_000, 100, 100], MAX), Some(1..3));
        assert_eq!(merge_run(&[100], MAX), None);
        assert_eq!(merge_run(&[], MAX), None);
    }

    #[test]
    fn merges_uneven_segments_whose_largest_the_others_outweigh() {
        // 1,400,000 is more than twice 400,000, but no more than the others together.
        assert_eq!(
            merge_run(&[1_400_000, 400_000, 500_000, 600_000], MAX),
            Some(0..4)
        );
        // Neither form: a merge that would barely grow the largest segment.
        assert_eq!(merge_run(&[1_400_000, 300_000], MAX), None);
        assert_eq!(merge_run(&[1_000_000, 200_000, 500_000], MAX), None);
    }

    #[test]
    fn never_merges_past_the_bound() {
        assert_eq!(merge_run(&[1_600_000, 1_600_000], MAX), None);
        assert_eq!(
            merge_run(&[2_000_000, 1_000_000, 1_000_000], MAX),
            Some(1..3)
        );
    }
}
