//! What the benchmarks measure of a server beside its answers: its data directory's
//! bytes, its peak memory, and when its merges have settled.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

/// Every file's length under `dir`.
pub fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(total)
}

/// The process's peak resident set (`VmHWM`), in MB.
pub fn rss_peak_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .context("no VmHWM")?;
    Ok(kb / 1024.0)
}

/// Waits until the log store in `data_dir` writes no segment (no temporary file in
/// `log/` for ten polls a second apart), at most five minutes: how long that took, and
/// the segments left. A store with no `log/` is settled at once. A merge that
/// ends usually begins the next within a second, but three quiet polls once ended the
/// wait with 52 segments left, which the same import by hand merged into 8 within a
/// minute.
pub fn settle_merges(data_dir: &Path) -> anyhow::Result<(Duration, usize)> {
    const QUIET_POLLS: u32 = 10;
    let log_dir = data_dir.join("log");
    let started = Instant::now();
    let mut quiet = 0;
    while log_dir.is_dir() && quiet < QUIET_POLLS {
        ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the log store was still merging after five minutes"
        );
        std::thread::sleep(Duration::from_secs(1));
        let writing = std::fs::read_dir(&log_dir)?
            .filter_map(Result::ok)
            .any(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"));
        quiet = if writing { 0 } else { quiet + 1 };
    }
    let segments = match std::fs::read_dir(&log_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".seg"))
            .count(),
        Err(_) => 0,
    };
    Ok((started.elapsed(), segments))
}
