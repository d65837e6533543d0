//! A disk under test, behind the log store's `Disk` trait: every write waits in memory
//! until its file is synced, as in an operating system's page cache, and the disk can
//! fail the k-th write or sync, turn read-only, or lose power.
//!
//! Writes wait in a per-file list ("dirty" writes) that reads see; a sync copies them to
//! the real file. [`power_off`] drops every write not synced yet, or writes back a
//! random part of them ([`PowerCut::Scattered`]), and fails all I/O from then on: the
//! real files hold what a disk would after the power cut. Creating, renaming and
//! removing files reach the real directory at once, as truncations do: the log store
//! syncs the directory after each, so a power cut between the two is a case the model
//! leaves out. SQLite's own crash and I/O-error tests work the same way (`test6.c`,
//! `test_vfs.c`).

use std::collections::HashMap;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use eventline_store::log::disk::{Disk, RealDisk};

/// What the disk does to the next writes and syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// The k-th write from now (counting from 1) fails with an I/O error.
    FailWrite(u64),
    /// The k-th sync from now fails, and the writes it should have made durable are
    /// dropped, as a kernel that marks pages clean after a failed writeback does.
    FailSync(u64),
    /// Every write fails, as on a filesystem remounted read-only after errors.
    ReadOnly,
    /// The power is off: every write and sync fails, and nothing unsynced survives.
    PoweredOff,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    fault: Fault,
    /// Writes and syncs of durable files since the fault was set.
    writes: u64,
    syncs: u64,
    /// Faults that fired since the fault was set.
    fired: u64,
    /// Unsynced writes per file path, shared by every handle of the file.
    dirty: HashMap<Vec<u8>, Dirty>,
}

/// One file's writes not yet synced, in the order they were made.
#[derive(Debug, Default)]
struct Dirty {
    writes: Vec<(i64, Vec<u8>)>,
    /// The end of the furthest write.
    end: i64,
}

impl State {
    /// Counts a write; whether the fault makes it fail.
    fn write_fails(&mut self) -> bool {
        self.writes += 1;
        let fails = match self.fault {
            Fault::FailWrite(k) => self.writes == k,
            Fault::ReadOnly | Fault::PoweredOff => true,
            Fault::None | Fault::FailSync(_) => false,
        };
        self.fired += u64::from(fails);
        fails
    }

    /// Counts a sync; whether the fault makes it fail (its writes are then dropped).
    fn sync_fails(&mut self) -> bool {
        self.syncs += 1;
        let fails = match self.fault {
            Fault::FailSync(k) => self.syncs == k,
            Fault::PoweredOff => true,
            Fault::None | Fault::FailWrite(_) | Fault::ReadOnly => false,
        };
        self.fired += u64::from(fails);
        fails
    }

    /// Whether a change that is no write (a truncation, a rename) fails.
    fn change_fails(&mut self) -> bool {
        let fails = matches!(self.fault, Fault::ReadOnly | Fault::PoweredOff);
        self.fired += u64::from(fails);
        fails
    }

    fn is_powered_off(&self) -> bool {
        self.fault == Fault::PoweredOff
    }

    /// Cuts the file's unsynced writes at `len`.
    fn truncate(&mut self, path: &[u8], len: i64) {
        if let Some(dirty) = self.dirty.get_mut(path) {
            dirty.writes.retain_mut(|(at, data)| {
                data.truncate((len - *at).clamp(0, data.len() as i64) as usize);
                !data.is_empty()
            });
            dirty.end = dirty.end.min(len);
        }
    }

    /// Keeps a write in the file's unsynced list.
    fn keep(&mut self, path: &[u8], offset: i64, data: Vec<u8>) {
        let dirty = self.dirty.entry(path.to_vec()).or_default();
        dirty.end = dirty.end.max(offset + data.len() as i64);
        dirty.writes.push((offset, data));
    }
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(Mutex::default);

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The disk is one per process: a test that uses it holds this for its whole run, so
/// that no other test's fault reaches it.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let guard = EXCLUSIVE.lock().await;
    power_on();
    guard
}

/// Sets what the disk does from now on and restarts the counts.
pub fn set_fault(fault: Fault) {
    let mut disk = state();
    disk.fault = fault;
    disk.writes = 0;
    disk.syncs = 0;
    disk.fired = 0;
}

/// How the power goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerCut {
    /// Before any unsynced write reached the disk: all of them are gone.
    Clean,
    /// In the middle of writing them back, in no order, as disks and LazyFS do: each
    /// 512-byte sector (in half the cuts, each 4 KiB page) that unsynced writes touched
    /// reaches the disk or not, by chance, holding what the writes left in it; a
    /// file's length is the old one, the new one (sectors that did not arrive read as
    /// zeros), or the end of the last sector that did.
    Scattered,
}

/// Cuts the power; all I/O fails until [`power_on`].
pub fn power_off(cut: PowerCut) {
    let mut disk = state();
    for (path, dirty) in disk.dirty.drain() {
        match cut {
            PowerCut::Clean => {}
            PowerCut::Scattered => write_scattered(&path, &dirty.writes),
        }
    }
    disk.fault = Fault::PoweredOff;
}

/// How much of a file's new length reaches the disk with a scattered write-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenReached {
    Old,
    New,
    /// The end of the last unit that arrived (or the old length, if longer).
    LastArrived,
}

/// What a file holds after a power cut in the middle of a write-back in no order:
/// `old`, the file as synced, with the units (of `unit` bytes, counted from the file's
/// start) that `writes` touched and `arrives` picks holding what the writes left in
/// them, and the length `len` says. Pure, for the tests of each shape.
pub fn scatter(
    old: &[u8],
    writes: &[(i64, Vec<u8>)],
    unit: usize,
    mut arrives: impl FnMut(usize) -> bool,
    len: LenReached,
) -> Vec<u8> {
    let mut new = old.to_vec();
    for (at, data) in writes {
        let at = *at as usize;
        if new.len() < at + data.len() {
            new.resize(at + data.len(), 0);
        }
        new[at..at + data.len()].copy_from_slice(data);
    }
    let mut touched: Vec<usize> = writes
        .iter()
        .filter(|(_, data)| !data.is_empty())
        .flat_map(|(at, data)| {
            let at = *at as usize;
            at / unit..(at + data.len()).div_ceil(unit)
        })
        .collect();
    touched.sort_unstable();
    touched.dedup();
    let mut out = old.to_vec();
    out.resize(new.len(), 0);
    let mut last_arrived_end = 0;
    for index in touched {
        if arrives(index) {
            let range = index * unit..((index + 1) * unit).min(new.len());
            last_arrived_end = range.end;
            out[range.clone()].copy_from_slice(&new[range]);
        }
    }
    let len = match len {
        LenReached::Old => old.len(),
        LenReached::New => new.len(),
        LenReached::LastArrived => last_arrived_end.max(old.len()),
    };
    out.truncate(len);
    out
}

fn write_scattered(path: &[u8], writes: &[(i64, Vec<u8>)]) {
    let path = Path::new(std::ffi::OsStr::from_bytes(path));
    // A file deleted meanwhile has nothing to write back.
    let Ok(old) = std::fs::read(path) else {
        return;
    };
    let unit = if fastrand::bool() { 512 } else { 4096 };
    let len = match fastrand::u8(..3) {
        0 => LenReached::Old,
        1 => LenReached::New,
        _ => LenReached::LastArrived,
    };
    let bytes = scatter(&old, writes, unit, |_| fastrand::bool(), len);
    std::fs::write(path, bytes).expect("write back");
}

/// A healthy disk again (after the store that saw the fault was closed).
pub fn power_on() {
    set_fault(Fault::None);
}

/// Writes and syncs since the fault was set, and how many faults fired.
pub fn counts() -> (u64, u64, u64) {
    let disk = state();
    (disk.writes, disk.syncs, disk.fired)
}

/// The simulated disk, as the log store sees it (`LogOptions::disk`).
#[derive(Debug, Default)]
pub struct SimDisk;

fn key(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

fn failed(what: &str) -> io::Error {
    io::Error::other(format!("simulated disk: the {what} failed"))
}

fn powered_off() -> io::Error {
    io::Error::other("simulated disk: the power is off")
}

impl Disk for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        if state().is_powered_off() {
            return Err(powered_off());
        }
        RealDisk::default().list(dir)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = state();
        if disk.is_powered_off() {
            return Err(powered_off());
        }
        let mut bytes = std::fs::read(path)?;
        if let Some(dirty) = disk.dirty.get(key(path)) {
            bytes.resize(bytes.len().max(dirty.end as usize), 0);
            for (at, data) in &dirty.writes {
                bytes[*at as usize..*at as usize + data.len()].copy_from_slice(data);
            }
        }
        Ok(bytes)
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut disk = state();
        if disk.write_fails() {
            return Err(failed("write"));
        }
        let real_len = match std::fs::metadata(path) {
            Ok(metadata) => metadata.len() as i64,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                std::fs::File::create(path)?;
                0
            }
            Err(error) => return Err(error),
        };
        let end = disk
            .dirty
            .get(key(path))
            .map_or(real_len, |dirty| dirty.end.max(real_len));
        disk.keep(key(path), end, bytes.to_vec());
        Ok(())
    }

    fn write_at(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut disk = state();
        if disk.write_fails() {
            return Err(failed("write"));
        }
        disk.keep(key(path), offset as i64, bytes.to_vec());
        Ok(())
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        // Held while the writes are copied: a power cut comes before or after a whole
        // sync, never in its middle.
        let mut disk = state();
        let fails = disk.sync_fails();
        let dirty: Dirty = disk.dirty.remove(key(path)).unwrap_or_default();
        if fails {
            return Err(failed("sync"));
        }
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        for (at, data) in dirty.writes {
            file.write_all_at(&data, at as u64)?;
        }
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut disk = state();
        if disk.change_fails() {
            return Err(failed("truncation"));
        }
        disk.truncate(key(path), len as i64);
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        // Only shortens: bytes past the real file's end are unsynced writes, cut above.
        if file.metadata()?.len() > len {
            file.set_len(len)?;
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = state();
        if disk.change_fails() {
            return Err(failed("rename"));
        }
        disk.dirty.remove(key(to));
        if let Some(dirty) = disk.dirty.remove(key(from)) {
            disk.dirty.insert(key(to).to_vec(), dirty);
        }
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut disk = state();
        if disk.change_fails() {
            return Err(failed("removal"));
        }
        disk.dirty.remove(key(path));
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        if state().is_powered_off() {
            return Err(powered_off());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{LenReached, scatter};

    /// A synced file of 1,000 bytes and one unsynced write of 1,500 after it, which
    /// crosses the sector boundaries at 1,024, 1,536, 2,048 and ends at 2,500.
    fn file() -> (Vec<u8>, Vec<(i64, Vec<u8>)>) {
        (vec![0xAA; 1_000], vec![(1_000, vec![0xBB; 1_500])])
    }

    fn expected(parts: &[(u8, usize)]) -> Vec<u8> {
        parts
            .iter()
            .flat_map(|(byte, len)| std::iter::repeat_n(*byte, *len))
            .collect()
    }

    #[test]
    fn a_hole_from_the_writes_start_to_the_next_boundary() {
        let (old, writes) = file();
        let torn = scatter(&old, &writes, 512, |sector| sector != 1, LenReached::New);
        assert_eq!(torn, expected(&[(0xAA, 1_000), (0, 24), (0xBB, 1_476)]));
    }

    #[test]
    fn a_middle_sector_missing() {
        let (old, writes) = file();
        let torn = scatter(&old, &writes, 512, |sector| sector != 3, LenReached::New);
        assert_eq!(
            torn,
            expected(&[(0xAA, 1_000), (0xBB, 536), (0, 512), (0xBB, 452)])
        );
    }

    #[test]
    fn a_prefix_of_sectors() {
        let (old, writes) = file();
        let torn = scatter(
            &old,
            &writes,
            512,
            |sector| sector <= 2,
            LenReached::LastArrived,
        );
        assert_eq!(torn, expected(&[(0xAA, 1_000), (0xBB, 536)]));
    }

    #[test]
    fn zeros_to_the_end() {
        let (old, writes) = file();
        let torn = scatter(&old, &writes, 512, |sector| sector <= 2, LenReached::New);
        assert_eq!(torn, expected(&[(0xAA, 1_000), (0xBB, 536), (0, 964)]));
    }

    #[test]
    fn pages_arrive_whole_and_a_lost_length_hides_what_arrived() {
        let (old, writes) = file();
        // The first page holds the synced bytes too: they are there whichever way.
        let torn = scatter(&old, &writes, 4096, |_| false, LenReached::New);
        assert_eq!(torn, expected(&[(0xAA, 1_000), (0, 1_500)]));
        let torn = scatter(&old, &writes, 4096, |_| true, LenReached::New);
        assert_eq!(torn, expected(&[(0xAA, 1_000), (0xBB, 1_500)]));
        let torn = scatter(&old, &writes, 512, |_| true, LenReached::Old);
        assert_eq!(torn, old);
    }

    #[test]
    fn an_overwrite_in_place_arrives_with_its_sector_or_not() {
        let old = vec![0xAA; 2_048];
        let writes = vec![(600, vec![0xCC; 10]), (2_048, vec![0xBB; 100])];
        let torn = scatter(&old, &writes, 512, |sector| sector == 4, LenReached::New);
        assert_eq!(torn, expected(&[(0xAA, 2_048), (0xBB, 100)]));
        let torn = scatter(&old, &writes, 512, |sector| sector == 1, LenReached::Old);
        assert_eq!(torn, expected(&[(0xAA, 600), (0xCC, 10), (0xAA, 1_438)]));
    }
}
