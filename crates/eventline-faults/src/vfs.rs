//! A disk under test: a SQLite VFS layered on the default one that keeps every write in
//! memory until the file is synced, as an operating system's page cache does, and can
//! fail the k-th write or sync, turn read-only, or lose power.
//!
//! The embedded store opens its files through it by name ([`register`] returns it).
//! Writes to the database, its WAL and its journal wait in a per-file list ("dirty
//! pages") that every handle of the file reads through; a sync copies them to the real
//! file. [`power_off`] drops every write not synced yet and fails all I/O from then on:
//! the real files hold exactly what a disk would after a power cut that wrote back none
//! of the dirty pages. A truncation reaches the real file at once (SQLite truncates only
//! after the syncs that make it safe). Temporary files pass straight through.
//!
//! SQLite's own crash and I/O-error tests work the same way (`test6.c`, `test_vfs.c`).
//! With the store's layered VFS modules (`layered_vfs`, which this one is built on, and
//! the page checksums, which sit on this one in the fault tests), this is the only
//! unsafe code in Eventline: a VFS is a table of C callbacks.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::{LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};

use eventline_store::sqlite::layered_vfs;
use rusqlite::ffi;

/// The name to open a store's files with (`SqliteOptions::vfs`).
pub const NAME: &str = "eventline-faults";

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
pub(crate) struct Disk {
    fault: Fault,
    /// Writes and syncs of durable files since the fault was set.
    writes: u64,
    syncs: u64,
    /// Faults that fired since the fault was set.
    fired: u64,
    /// Unsynced writes per file path, shared by every handle of the file.
    pub(crate) dirty: HashMap<Vec<u8>, Dirty>,
}

/// One file's writes not yet synced, in the order they were made.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    pub(crate) writes: Vec<(i64, Vec<u8>)>,
    /// The end of the furthest write.
    pub(crate) end: i64,
}

impl Disk {
    /// Counts a write; whether the fault makes it fail.
    pub(crate) fn write_fails(&mut self) -> bool {
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
    pub(crate) fn sync_fails(&mut self) -> bool {
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
    pub(crate) fn change_fails(&mut self) -> bool {
        let fails = matches!(self.fault, Fault::ReadOnly | Fault::PoweredOff);
        self.fired += u64::from(fails);
        fails
    }

    pub(crate) fn is_powered_off(&self) -> bool {
        self.fault == Fault::PoweredOff
    }

    /// Cuts the file's unsynced writes at `len`.
    pub(crate) fn truncate(&mut self, path: &[u8], len: i64) {
        if let Some(dirty) = self.dirty.get_mut(path) {
            dirty.writes.retain_mut(|(at, data)| {
                data.truncate((len - *at).clamp(0, data.len() as i64) as usize);
                !data.is_empty()
            });
            dirty.end = dirty.end.min(len);
        }
    }

    /// Keeps a write in the file's unsynced list.
    pub(crate) fn keep(&mut self, path: &[u8], offset: i64, data: Vec<u8>) {
        let dirty = self.dirty.entry(path.to_vec()).or_default();
        dirty.end = dirty.end.max(offset + data.len() as i64);
        dirty.writes.push((offset, data));
    }
}

static DISK: LazyLock<Mutex<Disk>> = LazyLock::new(Mutex::default);

pub(crate) fn disk() -> MutexGuard<'static, Disk> {
    DISK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The disk is one per process: a test that uses it holds this for its whole run, so
/// that no other test's fault reaches it.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let guard = EXCLUSIVE.lock().await;
    power_on();
    guard
}

/// Registers the VFS (once per process) and returns its name.
pub fn register() -> &'static str {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        layered_vfs::register(None, NAME, HEADER_LEN, open, Some(delete))
            .expect("register the simulated disk");
    });
    NAME
}

/// Sets what the disk does from now on and restarts the counts.
pub fn set_fault(fault: Fault) {
    let mut disk = disk();
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
    /// In the middle of writing them back: each file keeps its unsynced writes in order
    /// up to a random one, that one only in part (a torn run of 512-byte sectors), and
    /// none after it.
    Torn,
    /// In the middle of writing them back, in no order, as disks and LazyFS do: each
    /// 512-byte sector (in half the cuts, each 4 KiB page) that unsynced writes touched
    /// reaches the disk or not, by chance, holding what the writes left in it; a
    /// file's length is the old one, the new one (sectors that did not arrive read as
    /// zeros), or the end of the last sector that did.
    Scattered,
}

/// Cuts the power; all I/O fails until [`power_on`].
pub fn power_off(cut: PowerCut) {
    let mut disk = disk();
    for (path, dirty) in disk.dirty.drain() {
        match cut {
            PowerCut::Clean => {}
            PowerCut::Torn => write_torn_prefix(&path, &dirty.writes),
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
    use std::os::unix::ffi::OsStrExt;
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
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

fn write_torn_prefix(path: &[u8], writes: &[(i64, Vec<u8>)]) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileExt;
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    // A file deleted meanwhile has nothing to tear.
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(path) else {
        return;
    };
    let torn = fastrand::usize(..=writes.len());
    for (at, data) in &writes[..torn] {
        file.write_all_at(data, *at as u64).expect("write back");
    }
    if let Some((at, data)) = writes.get(torn) {
        let sectors = fastrand::usize(..=data.len() / 512);
        file.write_all_at(&data[..(sectors * 512).min(data.len())], *at as u64)
            .expect("write back");
    }
}

/// A healthy disk again (after the store that saw the fault was closed).
pub fn power_on() {
    set_fault(Fault::None);
}

/// Writes and syncs since the fault was set, and how many faults fired.
pub fn counts() -> (u64, u64, u64) {
    let disk = disk();
    (disk.writes, disk.syncs, disk.fired)
}

/// Our part of an open file; the default VFS's part follows it in the same allocation
/// (SQLite allocates `szOsFile` bytes).
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    /// The file's path for a durable file (database, WAL, journal); null for a temporary
    /// one, whose I/O passes straight through.
    path: *mut c_char,
}

const HEADER_LEN: usize = std::mem::size_of::<File>().next_multiple_of(16);

unsafe fn real_file(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: as `layered_vfs::lower_file` requires.
    unsafe { layered_vfs::lower_file::<HEADER_LEN>(file) }
}

unsafe fn real_methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: as `layered_vfs::lower_methods` requires.
    unsafe { layered_vfs::lower_methods::<HEADER_LEN>(file) }
}

/// The durable file's path, or None for a pass-through one. Borrowed, not copied: it is
/// looked up on every read and write.
unsafe fn durable_path<'a>(file: *mut ffi::sqlite3_file) -> Option<&'a [u8]> {
    // SAFETY: `file` was set up by `open`, which leaves `path` null or a CString that
    // lives until `close`, after the last call that borrows it.
    unsafe {
        let path = (*file.cast::<File>()).path;
        (!path.is_null()).then(|| CStr::from_ptr(path).to_bytes())
    }
}

/// Locks, file controls and the shared memory of the WAL index (rebuilt from the WAL
/// when the first connection opens after a crash) pass straight to the real file.
static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    ..layered_vfs::pass_through::<HEADER_LEN>()
};

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: `vfs` was made by `layered_vfs::register`; SQLite passes an allocation of
    // szOsFile bytes; the real VFS opens its part.
    unsafe {
        let ours = file.cast::<File>();
        (*ours).base.pMethods = std::ptr::null();
        (*ours).path = std::ptr::null_mut();
        let real = real_file(file);
        let real_vfs = layered_vfs::lower_vfs(vfs);
        let rc = ((*real_vfs).xOpen.expect("xOpen"))(real_vfs, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let durable =
            ffi::SQLITE_OPEN_MAIN_DB | ffi::SQLITE_OPEN_WAL | ffi::SQLITE_OPEN_MAIN_JOURNAL;
        if flags & durable != 0 && !name.is_null() {
            (*ours).path = CString::from(CStr::from_ptr(name)).into_raw();
        }
        (*ours).base.pMethods = &METHODS;
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    // SAFETY: `vfs` was made by `layered_vfs::register`; `name` is a NUL-terminated path
    // from SQLite.
    unsafe {
        if !name.is_null() {
            disk().dirty.remove(CStr::from_ptr(name).to_bytes());
        }
        let real_vfs = layered_vfs::lower_vfs(vfs);
        ((*real_vfs).xDelete.expect("xDelete"))(real_vfs, name, sync_dir)
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is open; its path, if any, is a CString made by `open`. Dirty pages
    // stay in `DISK` after a close, as they stay in a page cache.
    unsafe {
        let ours = file.cast::<File>();
        if !(*ours).path.is_null() {
            drop(CString::from_raw((*ours).path));
            (*ours).path = std::ptr::null_mut();
        }
        (real_methods(file).xClose.expect("xClose"))(real_file(file))
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buffer: *mut c_void,
    len: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: `buffer` holds `len` bytes, as SQLite promises.
    unsafe {
        let real = real_file(file);
        let real_read = real_methods(file).xRead.expect("xRead");
        let Some(path) = durable_path(file) else {
            return real_read(real, buffer, len, offset);
        };
        let disk = disk();
        let rc = real_read(real, buffer, len, offset);
        let Some(dirty) = disk
            .dirty
            .get(path)
            .filter(|dirty| !dirty.writes.is_empty())
        else {
            return rc;
        };
        if rc != ffi::SQLITE_OK && rc != ffi::SQLITE_IOERR_SHORT_READ {
            return rc;
        }
        let out = std::slice::from_raw_parts_mut(buffer.cast::<u8>(), len as usize);
        let end = offset + i64::from(len);
        for (at, data) in &dirty.writes {
            let (from, to) = ((*at).max(offset), (at + data.len() as i64).min(end));
            if from < to {
                out[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&data[(from - at) as usize..(to - at) as usize]);
            }
        }
        let mut real_size = 0;
        let size_rc = (real_methods(file).xFileSize.expect("xFileSize"))(real, &mut real_size);
        if size_rc != ffi::SQLITE_OK {
            return size_rc;
        }
        // Bytes past both ends were zeroed by the real read, as SQLite expects of a
        // short read.
        if end > real_size.max(dirty.end) {
            ffi::SQLITE_IOERR_SHORT_READ
        } else {
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buffer: *const c_void,
    len: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: `buffer` holds `len` bytes, as SQLite promises.
    unsafe {
        let Some(path) = durable_path(file) else {
            return (real_methods(file).xWrite.expect("xWrite"))(
                real_file(file),
                buffer,
                len,
                offset,
            );
        };
        let mut disk = disk();
        if disk.write_fails() {
            return ffi::SQLITE_IOERR_WRITE;
        }
        let data = std::slice::from_raw_parts(buffer.cast::<u8>(), len as usize).to_vec();
        disk.keep(path, offset, data);
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: `file` is open.
    unsafe {
        let real_truncate = real_methods(file).xTruncate.expect("xTruncate");
        let Some(path) = durable_path(file) else {
            return real_truncate(real_file(file), size);
        };
        let mut disk = disk();
        if disk.change_fails() {
            return ffi::SQLITE_IOERR_TRUNCATE;
        }
        disk.truncate(path, size);
        real_truncate(real_file(file), size)
    }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: `file` is open.
    unsafe {
        let Some(path) = durable_path(file) else {
            return (real_methods(file).xSync.expect("xSync"))(real_file(file), flags);
        };
        // The lock is held while the dirty pages are copied: a power cut comes before
        // or after a whole sync, never in its middle.
        let mut disk = disk();
        let fails = disk.sync_fails();
        let dirty = disk.dirty.remove(path).unwrap_or_default();
        if fails {
            return ffi::SQLITE_IOERR_FSYNC;
        }
        // The real file's own fsync is left out: the simulated power cut never reaches
        // the real disk, so what the real file holds counts as durable.
        let real_write = real_methods(file).xWrite.expect("xWrite");
        for (at, data) in dirty.writes {
            let rc = real_write(
                real_file(file),
                data.as_ptr().cast(),
                data.len() as c_int,
                at,
            );
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: `size` points to an i64, as SQLite promises.
    unsafe {
        let rc = (real_methods(file).xFileSize.expect("xFileSize"))(real_file(file), size);
        if rc == ffi::SQLITE_OK
            && let Some(path) = durable_path(file)
            && let Some(dirty) = disk().dirty.get(path)
        {
            *size = (*size).max(dirty.end);
        }
        rc
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
