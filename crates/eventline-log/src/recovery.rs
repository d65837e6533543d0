//! Opening a log store's files: the segments' footers, then the log after them, read
//! back into memory. What is at the end of the last log file decides whether the store
//! starts (`docs/format.md`, "Torn writes and damage"):
//!
//! - bytes past the file's mark that are not whole blocks are a write cut short: no
//!   answer was given for them, since the mark is written only after what it covers was
//!   synced, and they are cut off, whatever their shape (a prefix, a hole, zeros);
//! - bytes the mark covers that are not whole blocks, or a file shorter than its mark,
//!   are damage to acknowledged data: the store refuses to start and changes nothing.
//!
//! Every log file but the last is whole by the time the next one begins, so a bad block
//! in one of them is damage wherever it is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::counts::Counts;
use crate::disk::Disk;
use crate::error::Error;
use crate::files::{
    Stop, begin_file, file_name, io_error, log_files, mark_head, numbers_in, put_in_place,
    walk_blocks, write_mark, write_segment,
};
use crate::header::{self, BadHeader, Header, Mark};
use crate::memtable::Memtable;
use crate::segment::{self, Segment, segment_name};
use crate::state::State;

/// What opening does with the files it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recovery {
    /// Cuts a torn, never-acknowledged tail off the last log file; refuses damage.
    #[default]
    Start,
    /// Changes nothing: reads the files as they are and reports what [`Recovery::Start`]
    /// would cut (`eventline check`). The store refuses every write.
    Inspect,
    /// As [`Recovery::Start`], and damage inside the last log file's acknowledged part is
    /// cut off too, with every event after it: the operator's choice
    /// (`eventline check --cut-damaged-tail`), never made by itself.
    CutDamagedTail,
}

/// Bytes cut (or, inspecting, to be cut) off the end of the last log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
    /// Whether the bytes were acknowledged: damage cut off by the operator's choice,
    /// not a torn write.
    pub acknowledged: bool,
    /// The positions the acknowledged bytes held, `first..end` (empty for a torn write).
    pub positions: std::ops::Range<u64>,
}

/// The store as its files left it.
pub(crate) struct Recovered {
    pub state: State,
    /// The log file the writer goes on with, its length, and its newest mark.
    pub active: u32,
    pub active_len: u64,
    pub mark: Mark,
    pub cut: Option<Cut>,
}

/// Removes the temporary files of rewrites, flushes and merges that did not finish: the
/// files they were to replace are whole. Only at the start: while the store runs, a
/// flush or a merge may be writing one.
fn remove_temporaries(disk: &dyn Disk, log_dir: &Path) -> Result<(), Error> {
    for name in disk.list(log_dir).map_err(io_error(log_dir))? {
        if name.ends_with(".log.tmp") || name.ends_with(".seg.tmp") {
            let path = log_dir.join(&name);
            disk.remove(&path).map_err(io_error(&path))?;
        }
    }
    Ok(())
}

/// The segments in `log_dir`, by number, their counts per minute added to `counts` one
/// segment at a time (a store of 10,000,000 events holds about 9 million of them: all
/// at once took 200 MB of memory at every start). Segments a merge wrote another in
/// place of, left by a merge cut short after its rename, are removed: their events are
/// in the merged one, which took the number of the newest it replaced, so that a walk
/// from the newest meets every replacing segment before the segments it replaces.
/// Inspecting, they are skipped, and a segment of the first format is read as it is.
fn open_segments(
    disk: &dyn Disk,
    log_dir: &Path,
    counts: &mut Counts,
    changes: bool,
) -> Result<Vec<Segment>, Error> {
    let mut replaced = BTreeSet::new();
    let mut segments = Vec::new();
    let mut removed = false;
    for number in numbers_in(disk, log_dir, ".seg")?.into_iter().rev() {
        let path = log_dir.join(segment_name(number));
        if replaced.contains(&number) {
            if changes {
                disk.remove(&path).map_err(io_error(&path))?;
                removed = true;
            }
            continue;
        }
        let generation = segments.len() as u64 + 1;
        let (mut segment, minutes) = Segment::open(disk, number, path, generation)?;
        if changes && matches!(segment.format, segment::Format::V1) {
            // The first format's indexes name blocks; its blocks read as now. Its
            // events are written again, once, in the current format.
            let events = segment.events(disk)?;
            let (upgraded, temporary) = write_segment(disk, &segment, &events, generation)?;
            put_in_place(disk, &temporary, &segment.path)?;
            tracing::info!(segment = %segment.path.display(), events = events.len(), "segment rewritten in the current format");
            segment = upgraded;
        }
        counts.add_minutes(&minutes);
        replaced.extend(segment.replaces.iter().copied());
        segments.push(segment);
    }
    if removed {
        disk.sync_dir(log_dir).map_err(io_error(log_dir))?;
    }
    segments.reverse();
    Ok(segments)
}

/// What the end of the last log file is, by its mark.
#[derive(Debug, PartialEq, Eq)]
enum Tail {
    /// Every byte is a whole block.
    Whole,
    /// Bytes from `offset` on, past the mark, are a write cut short.
    Torn { offset: usize },
    /// The mark covers bytes that are not whole blocks.
    Damaged { offset: usize, detail: String },
}

/// Judges the end of the last log file: `len` bytes, of which the mark says the first
/// `acked_len` were acknowledged; the walk through its blocks stopped at `stop`, having
/// passed a block boundary at each of `boundaries`.
fn judge_tail(len: usize, acked_len: usize, stop: &Stop, boundaries: &[usize]) -> Tail {
    if len < acked_len {
        return Tail::Damaged {
            offset: len,
            detail: format!(
                "the file ends before byte {acked_len}, the end of what was acknowledged"
            ),
        };
    }
    if let Some((offset, bad)) = stop
        && *offset < acked_len
    {
        return Tail::Damaged {
            offset: *offset,
            detail: bad.detail().to_owned(),
        };
    }
    // A mark is written at a block boundary only; one elsewhere means the bytes before
    // it are not the blocks that were acknowledged.
    if !boundaries.contains(&acked_len) {
        return Tail::Damaged {
            offset: acked_len,
            detail: "no block ends where the acknowledged part ends".to_owned(),
        };
    }
    match stop {
        Some((offset, _)) => Tail::Torn { offset: *offset },
        None => Tail::Whole,
    }
}

/// Opens the segments and reads the log after them back into memory, as `recovery`
/// says.
pub(crate) fn recover(
    disk: &dyn Disk,
    log_dir: &Path,
    recovery: Recovery,
) -> Result<Recovered, Error> {
    let changes = recovery != Recovery::Inspect;
    let mut state = State {
        memtable: Memtable::new(),
        frozen: None,
        segments: Vec::new(),
        segment_counts: Counts::default(),
    };
    // A segment cut short before its rename is not one.
    if changes {
        remove_temporaries(disk, log_dir)?;
    }
    let mut numbers = log_files(disk, log_dir)?;
    for segment in open_segments(disk, log_dir, &mut state.segment_counts, changes)? {
        state.memtable.reserve(segment.seq_end);
        state.segments.push(segment);
    }
    // A log file a segment holds the events of is left over from a flush cut short
    // after the segment was in place.
    let covered = state.segments.last().map_or(0, |segment| segment.number);
    let left_over: Vec<u32> = numbers
        .iter()
        .copied()
        .filter(|number| *number <= covered)
        .collect();
    numbers.retain(|number| *number > covered);
    if changes && !left_over.is_empty() {
        for number in &left_over {
            let path = log_dir.join(file_name(*number));
            disk.remove(&path).map_err(io_error(&path))?;
        }
        disk.sync_dir(log_dir).map_err(io_error(log_dir))?;
    }
    let Some(&last) = numbers.last() else {
        return begin_active(disk, log_dir, state, covered + 1, changes, None);
    };
    let mut cut = None;
    for number in numbers {
        let path = log_dir.join(file_name(number));
        let is_last = number == last;
        let bytes = disk.read(&path).map_err(io_error(&path))?;
        let damaged = |offset: usize, detail: &str| Error::LogDamaged {
            path: path.clone(),
            offset: offset as u64,
            detail: detail.to_owned(),
        };
        let header = match header::decode_header(&bytes) {
            Ok(header) => header,
            // A file begun by the last run, cut before its header was synced.
            Err(BadHeader::Short) if is_last => {
                if changes {
                    disk.truncate(&path, 0).map_err(io_error(&path))?;
                }
                if !bytes.is_empty() {
                    cut = Some(Cut {
                        path: path.clone(),
                        offset: 0,
                        len: bytes.len() as u64,
                        acknowledged: false,
                        positions: state.memtable.seq_end()..state.memtable.seq_end(),
                    });
                }
                return resume(
                    disk,
                    log_dir,
                    state,
                    last,
                    Header::V2(None),
                    0,
                    changes,
                    cut,
                );
            }
            Err(_) => return Err(damaged(0, "not an eventline log file")),
        };
        let table = &mut state.memtable;
        let (blocks, stop) = walk_blocks(&bytes, header.blocks_from());
        // Where blocks begin, and where the last whole one ends.
        let mut boundaries = vec![header.blocks_from()];
        for (offset, block) in blocks {
            if block.seq_first < table.seq_end() {
                return Err(damaged(
                    offset,
                    "the block's positions are not after the previous block's",
                ));
            }
            table.reserve(block.seq_end());
            for stored in block.events {
                table.insert(stored.seq, number, stored.event);
            }
            boundaries.push(offset);
        }
        if !is_last {
            if let Header::V2(Some(mark)) = &header {
                // A file begun whose head block was lost keeps the head's position here.
                table.reserve(mark.seq_end);
            }
            if let Some((offset, bad)) = stop {
                return Err(damaged(offset, bad.detail()));
            }
            continue;
        }
        let end = match &stop {
            Some((offset, _)) => *offset,
            None => bytes.len(),
        };
        boundaries.push(end);
        // A version 1 file has no mark: nothing tells a torn write from damage, so
        // every byte counts as acknowledged.
        let mark = match &header {
            Header::V2(Some(mark)) => *mark,
            Header::V2(None) => {
                return Err(damaged(
                    0,
                    "neither of the file's marks is whole, though blocks were written after them",
                ));
            }
            Header::V1 => Mark {
                counter: 0,
                acked_len: bytes.len() as u64,
                seq_end: table.seq_end(),
            },
        };
        let acked_len = usize::try_from(mark.acked_len).unwrap_or(usize::MAX);
        let offset = match judge_tail(bytes.len(), acked_len, &stop, &boundaries) {
            Tail::Whole => bytes.len(),
            Tail::Torn { offset } => {
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    bytes = bytes.len() - offset,
                    acknowledged_bytes = mark.acked_len,
                    "the log ends with a write cut short, past what was acknowledged; cutting it off"
                );
                cut = Some(Cut {
                    path: path.clone(),
                    offset: offset as u64,
                    len: (bytes.len() - offset) as u64,
                    acknowledged: false,
                    positions: table.seq_end()..table.seq_end(),
                });
                offset
            }
            Tail::Damaged { offset, detail } if recovery == Recovery::CutDamagedTail => {
                // What stands after the damage is dropped with it, whole or not.
                let offset = boundaries
                    .iter()
                    .copied()
                    .filter(|boundary| *boundary <= offset)
                    .max()
                    .unwrap_or(header.blocks_from());
                tracing::warn!(file = %path.display(), offset, detail, "cutting off a damaged, acknowledged tail, as asked");
                cut = Some(Cut {
                    path: path.clone(),
                    offset: offset as u64,
                    len: (bytes.len() - offset) as u64,
                    acknowledged: true,
                    positions: table.seq_end()..mark.seq_end.max(table.seq_end()),
                });
                offset
            }
            Tail::Damaged { offset, detail } => {
                return Err(Error::LogTailDamaged {
                    path: path.clone(),
                    offset: offset as u64,
                    detail,
                    acked_len: mark.acked_len,
                    positions: table.seq_end()..mark.seq_end.max(table.seq_end()),
                });
            }
        };
        // Positions the mark names are never given again, cut off or not.
        table.reserve(mark.seq_end);
        if changes && offset < bytes.len() {
            disk.truncate(&path, offset as u64)
                .map_err(io_error(&path))?;
        }
        return resume(
            disk,
            log_dir,
            state,
            last,
            header,
            offset as u64,
            changes,
            cut,
        );
    }
    unreachable!("the last log file ends the walk")
}

/// Goes on with log file `number`, `len` bytes long once recovered (0 for a file to
/// begin again): a version 2 file gets a mark of everything it holds; after a version 1
/// file, the next file is begun.
#[allow(clippy::too_many_arguments)]
fn resume(
    disk: &dyn Disk,
    log_dir: &Path,
    state: State,
    number: u32,
    header: Header,
    len: u64,
    changes: bool,
    cut: Option<Cut>,
) -> Result<Recovered, Error> {
    match header {
        Header::V1 => begin_active(disk, log_dir, state, number + 1, changes, cut),
        Header::V2(_) if len == 0 => begin_active(disk, log_dir, state, number, changes, cut),
        Header::V2(mark) => {
            let seq_end = state.memtable.seq_end();
            let mut mark = mark.unwrap_or_default();
            let path = log_dir.join(file_name(number));
            // What recovery keeps is served from now on, so it is marked as
            // acknowledged: a later torn write is judged against it.
            if changes && (mark.acked_len, mark.seq_end) != (len, seq_end) {
                mark = Mark {
                    counter: mark.counter + 1,
                    acked_len: len,
                    seq_end,
                };
                write_mark(disk, &path, &mark, None)?;
            }
            Ok(Recovered {
                state,
                active: number,
                active_len: len,
                mark,
                cut,
            })
        }
    }
}

/// Begins log file `number` for the writer, its first block marking the head once
/// positions were given out.
fn begin_active(
    disk: &dyn Disk,
    log_dir: &Path,
    state: State,
    number: u32,
    changes: bool,
    cut: Option<Cut>,
) -> Result<Recovered, Error> {
    let seq_end = state.memtable.seq_end();
    let mut mark = Mark {
        counter: 1,
        acked_len: header::HEADER_LEN as u64,
        seq_end,
    };
    if changes {
        let path = log_dir.join(file_name(number));
        begin_file(disk, log_dir, &path, seq_end, None)?;
        // Positions begin at 1: past it, earlier files or segments gave some out.
        if seq_end > 1 {
            mark = mark_head(disk, &path, &mark, None)?;
        }
    }
    Ok(Recovered {
        state,
        active: number,
        active_len: mark.acked_len,
        mark,
        cut,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::BadBlock;

    const FROM: usize = header::HEADER_LEN;

    #[test]
    fn bad_bytes_past_the_mark_are_torn_whatever_their_shape() {
        for bad in [BadBlock::Short, BadBlock::Damaged("no block starts here")] {
            let stop = Some((FROM + 300, bad));
            assert_eq!(
                judge_tail(
                    FROM + 900,
                    FROM + 300,
                    &stop,
                    &[FROM, FROM + 100, FROM + 300]
                ),
                Tail::Torn { offset: FROM + 300 }
            );
            // Whole blocks after the mark (acknowledged, the mark not yet written) are
            // kept; the bad bytes after them cut.
            let stop = Some((FROM + 500, BadBlock::Short));
            assert_eq!(
                judge_tail(
                    FROM + 900,
                    FROM + 100,
                    &stop,
                    &[FROM, FROM + 100, FROM + 300, FROM + 500]
                ),
                Tail::Torn { offset: FROM + 500 }
            );
        }
    }

    #[test]
    fn bad_bytes_the_mark_covers_are_damage() {
        let stop = Some((
            FROM + 100,
            BadBlock::Damaged("the block does not match its checksum"),
        ));
        assert_eq!(
            judge_tail(FROM + 300, FROM + 300, &stop, &[FROM, FROM + 100]),
            Tail::Damaged {
                offset: FROM + 100,
                detail: "the block does not match its checksum".to_owned()
            }
        );
        let stop = Some((FROM + 100, BadBlock::Short));
        assert!(matches!(
            judge_tail(FROM + 150, FROM + 300, &stop, &[FROM, FROM + 100]),
            Tail::Damaged { offset, .. } if offset == FROM + 150
        ));
    }

    #[test]
    fn a_mark_between_blocks_is_damage() {
        assert!(matches!(
            judge_tail(FROM + 300, FROM + 150, &None, &[FROM, FROM + 100, FROM + 300]),
            Tail::Damaged { offset, .. } if offset == FROM + 150
        ));
        assert_eq!(
            judge_tail(
                FROM + 300,
                FROM + 300,
                &None,
                &[FROM, FROM + 100, FROM + 300]
            ),
            Tail::Whole
        );
        assert_eq!(judge_tail(FROM, FROM, &None, &[FROM, FROM]), Tail::Whole);
    }
}
