//! Entry points for the fuzz targets (`fuzz/`) and their corpus replay in CI: each
//! decoder of bytes read back from disk, given arbitrary bytes. None may panic, loop or
//! allocate without bound; whatever it answers must have passed its checks. Each says
//! whether the bytes were read whole, so that a replay can tell its seeds are real. Not
//! part of the engine's API.

use std::path::Path;

use eventline_core::content_filter::ContentFilter;
use eventline_core::query::{Filter, Order};

use crate::disk::RealDisk;
use crate::segment::Segment;
use crate::{LogOptions, LogStore, Recovery, header, record};

/// A log file's header and its blocks after it, as recovery walks them.
pub fn log_header_and_blocks(bytes: &[u8]) -> bool {
    let Ok(header) = header::decode_header(bytes) else {
        return false;
    };
    let mut offset = header.blocks_from().min(bytes.len());
    while offset < bytes.len() {
        match record::decode_block(&bytes[offset..]) {
            Ok((block, len)) => {
                assert!(
                    len > 0 && offset + len <= bytes.len(),
                    "a block has a length"
                );
                assert!(
                    block.events.len() <= block.seq_len as usize,
                    "a block's events fit its positions"
                );
                offset += len;
            }
            Err(_) => return false,
        }
    }
    true
}

/// One commit block.
pub fn log_block(bytes: &[u8]) -> bool {
    let Ok((block, len)) = record::decode_block(bytes) else {
        return false;
    };
    assert!(len <= bytes.len());
    for stored in &block.events {
        assert!(stored.seq >= block.seq_first && stored.seq < block.seq_end());
    }
    true
}

/// A data directory whose last log file is `bytes`: opened to inspect, as
/// `eventline check` does, then read whole.
pub fn log_file(dir: &Path, bytes: &[u8]) -> bool {
    write_store_file(dir, "00000001.log", bytes).is_ok() && inspect(dir)
}

/// A data directory holding one segment file of `bytes`: its footer opened, every block
/// verified, its events read, and read again through its content index.
pub fn segment_file(dir: &Path, bytes: &[u8]) -> bool {
    let Ok(path) = write_store_file(dir, "00000001.seg", bytes) else {
        return false;
    };
    let disk = RealDisk::default();
    let whole = match Segment::open(&disk, 1, path, 1) {
        Ok((segment, _)) => {
            segment.verify(&disk).is_ok()
                && segment.events(&disk).is_ok()
                && filtered_reads(&segment, &disk)
        }
        Err(_) => false,
    };
    inspect(dir) && whole
}

/// Reads through the content index with a lookup of a value, of a path, and of both:
/// whether every postings list read was whole.
fn filtered_reads(segment: &Segment, disk: &RealDisk) -> bool {
    let condition = |name: &str, value: &str| {
        eventline_core::content_filter::from_url_param(name, value)
            .and_then(Result::ok)
            .map(ContentFilter::Condition)
    };
    let filters = [
        condition("content.n", "7"),
        condition("content.total[gte]", "100"),
        condition("content.n[in]", "[1,2,3]")
            .zip(condition("content.total[exists]", "true"))
            .map(|(one, other)| ContentFilter::And(vec![one, other])),
    ];
    filters.into_iter().all(|filter| {
        let content = match filter {
            Some(filter) => filter,
            None => return false,
        };
        let filter = Filter {
            content: Some(content),
            ..Filter::default()
        };
        segment.page(disk, &filter, Order::Asc, None, 100).is_ok()
    })
}

fn write_store_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<std::path::PathBuf> {
    let log_dir = dir.join(crate::LOG_DIR);
    if log_dir.exists() {
        std::fs::remove_dir_all(&log_dir)?;
    }
    std::fs::create_dir_all(&log_dir)?;
    let path = log_dir.join(name);
    std::fs::write(&path, bytes)?;
    Ok(path)
}

/// Opens the store to inspect it and reads it whole: whether it found nothing wrong.
fn inspect(dir: &Path) -> bool {
    let options = LogOptions {
        recovery: Recovery::Inspect,
        ..LogOptions::default()
    };
    match LogStore::open(dir, &options) {
        Ok(store) => store
            .verify()
            .is_ok_and(|verified| verified.problems.is_empty() && verified.events > 0),
        Err(_) => false,
    }
}
