//! The file work the store shares: names, durable replacement (a temporary file, synced,
//! renamed, the directory synced), a log file's header and marks, a segment written
//! again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::disk::Disk;
use crate::error::Error;
use crate::header::{self, Header, Mark};
use crate::record::{self, BadBlock, Stored};
use crate::segment::{self, Segment};

/// Contacts erased with suppression, one JSON array, replaced whole on each change.
pub(crate) const SUPPRESSED_FILE: &str = "suppressed.json";

pub(crate) fn file_name(number: u32) -> String {
    format!("{number:08}.log")
}

/// The number of a file named eight digits and `suffix` (`.log`, `.seg`).
pub(crate) fn numbered(name: &str, suffix: &str) -> Option<u32> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The numbers of the files named eight digits and `suffix` in `log_dir`, in order.
pub(crate) fn numbers_in(disk: &dyn Disk, log_dir: &Path, suffix: &str) -> Result<Vec<u32>, Error> {
    let mut numbers: Vec<u32> = disk
        .list(log_dir)
        .map_err(io_error(log_dir))?
        .iter()
        .filter_map(|name| numbered(name, suffix))
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::DataDir {
        path: path.to_owned(),
        source,
    }
}

/// The numbers of the log files in `log_dir`, in order.
pub(crate) fn log_files(disk: &dyn Disk, log_dir: &Path) -> Result<Vec<u32>, Error> {
    numbers_in(disk, log_dir, ".log")
}

/// Appends a block holding no events at the mark's position to a new log file, durably,
/// and marks it acknowledged: the highest position given survives even when every
/// segment is removed. The file's mark after it.
pub(crate) fn mark_head(
    disk: &dyn Disk,
    path: &Path,
    mark: &Mark,
    sync_failed: Option<&AtomicBool>,
) -> Result<Mark, Error> {
    let mut marker = Vec::new();
    record::encode_block(&mut marker, mark.seq_end, 0, &[], None);
    disk.append(path, &marker).map_err(io_error(path))?;
    sync_file(disk, path, sync_failed)?;
    let head = Mark {
        counter: mark.counter + 1,
        acked_len: mark.acked_len + marker.len() as u64,
        seq_end: mark.seq_end,
    };
    write_mark(disk, path, &head, sync_failed)?;
    Ok(head)
}

/// Syncs the file at `path`; a failure, with `sync_failed`, refuses every write from
/// then on (see `LogStore::sync_failed`).
pub(crate) fn sync_file(
    disk: &dyn Disk,
    path: &Path,
    sync_failed: Option<&AtomicBool>,
) -> Result<(), Error> {
    disk.sync(path).map_err(|error| {
        if let Some(sync_failed) = sync_failed {
            sync_failed.store(true, Ordering::Relaxed);
        }
        io_error(path)(error)
    })
}

/// Writes `mark` into its slot of the log file at `path` and syncs it: only ever after
/// the bytes it covers were synced.
pub(crate) fn write_mark(
    disk: &dyn Disk,
    path: &Path,
    mark: &Mark,
    sync_failed: Option<&AtomicBool>,
) -> Result<(), Error> {
    let (offset, slot) = header::encode_slot(mark);
    disk.write_at(path, offset as u64, &slot)
        .map_err(io_error(path))?;
    sync_file(disk, path, sync_failed)
}

/// Writes `segment` again, holding only `events` (of its own, in (timestamp, id) order)
/// and in the current format, beside it: the new segment and the file to rename over
/// it.
pub(crate) fn write_segment(
    disk: &dyn Disk,
    segment: &Segment,
    events: &[Stored],
    generation: u64,
) -> Result<(Segment, PathBuf), Error> {
    let temporary = temporary_path(&segment.path);
    let (footer, format) = segment::write(
        disk,
        &temporary,
        events.iter().map(|stored| (stored.seq, &stored.event)),
        segment.seq_first,
        segment.seq_end,
        segment.replaces.clone(),
    )?;
    let (written, _) = Segment::from_footer(
        segment.number,
        segment.path.clone(),
        generation,
        footer,
        format,
    );
    Ok((written, temporary))
}

/// Where a file is written before it is renamed over `path`.
pub(crate) fn temporary_path(path: &Path) -> PathBuf {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    PathBuf::from(temporary)
}

/// Replaces `path` with `bytes` durably: a temporary file, synced, renamed over it.
pub(crate) fn replace(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let temporary = write_temporary(disk, path, bytes)?;
    put_in_place(disk, &temporary, path)
}

/// Writes `bytes` durably beside `path`, to be put in place by `put_in_place`.
pub(crate) fn write_temporary(
    disk: &dyn Disk,
    path: &Path,
    bytes: &[u8],
) -> Result<PathBuf, Error> {
    let temporary = temporary_path(path);
    remove_if_present(disk, &temporary)?;
    disk.append(&temporary, bytes)
        .map_err(io_error(&temporary))?;
    disk.sync(&temporary).map_err(io_error(&temporary))?;
    Ok(temporary)
}

/// Renames a temporary file over `path` and makes the rename durable.
pub(crate) fn put_in_place(disk: &dyn Disk, temporary: &Path, path: &Path) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    disk.rename(temporary, path).map_err(io_error(path))?;
    disk.sync_dir(dir).map_err(io_error(dir))
}

pub(crate) fn remove_if_present(disk: &dyn Disk, path: &Path) -> Result<(), Error> {
    crate::disk::remove_if_present(disk, path).map_err(io_error(path))
}

/// Creates a log file holding only its header, durably, marked as acknowledged up to
/// its end, at position `seq_end`.
pub(crate) fn begin_file(
    disk: &dyn Disk,
    log_dir: &Path,
    path: &Path,
    seq_end: u64,
    sync_failed: Option<&AtomicBool>,
) -> Result<(), Error> {
    let header = header::encode_header(&Mark {
        counter: 1,
        acked_len: header::HEADER_LEN as u64,
        seq_end,
    });
    disk.append(path, &header).map_err(io_error(path))?;
    sync_file(disk, path, sync_failed)?;
    disk.sync_dir(log_dir).map_err(io_error(log_dir))
}

pub(crate) fn read_suppressed(disk: &dyn Disk, data_dir: &Path) -> Result<BTreeSet<String>, Error> {
    let path = data_dir.join(SUPPRESSED_FILE);
    match disk.read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|error| Error::Corrupt(format!("{} cannot be read: {error}", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(error) => Err(io_error(&path)(error)),
    }
}

/// Where a walk through a log file stopped before its end, and why.
pub(crate) type Stop = Option<(usize, BadBlock)>;

/// The blocks of a log file from `from` on, each with its offset, up to the end or the
/// first bad one; and where and why the walk stopped, if it stopped before the end.
pub(crate) fn walk_blocks(bytes: &[u8], from: usize) -> (Vec<(usize, record::Block)>, Stop) {
    let mut blocks = Vec::new();
    let mut offset = from;
    while offset < bytes.len() {
        match record::decode_block(&bytes[offset..]) {
            Ok((block, len)) => {
                blocks.push((offset, block));
                offset += len;
            }
            Err(bad) => return (blocks, Some((offset, bad))),
        }
    }
    (blocks, None)
}

/// Every block of a whole log file and its header, or where and why it is not whole.
pub(crate) fn read_blocks(
    path: &Path,
    bytes: &[u8],
) -> Result<(Header, Vec<record::Block>), (usize, String)> {
    let header = header::decode_header(bytes).map_err(|_| {
        (
            0,
            format!("{} is not an eventline log file", path.display()),
        )
    })?;
    match walk_blocks(bytes, header.blocks_from()) {
        (blocks, None) => Ok((header, blocks.into_iter().map(|(_, block)| block).collect())),
        (_, Some((offset, bad))) => Err((offset, bad.detail().to_owned())),
    }
}
