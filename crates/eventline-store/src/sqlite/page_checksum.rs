//! Page checksums: a SQLite VFS layered on another that keeps a checksum in the last
//! 8 bytes of every page of the database file, and refuses a page that does not match
//! it when it is read back.
//!
//! Row checksums (`checksum.sql`) catch a damaged event, but not a damaged index: a bit
//! flipped in an index page can hide rows from a query, and nothing in the rows tells.
//! With every page checked as it comes off the disk, a read returns what was written or
//! fails with `SQLITE_IOERR_DATA`; PostgreSQL's data checksums do the same for its
//! pages.
//!
//! The store reserves the 8 bytes when it creates a database (SQLite's "reserved bytes
//! per page", which no B-tree cell uses) and turns the checksums on per connection with
//! `PRAGMA eventline_page_checksums = on` ([`set_mode`]), which only this VFS answers.
//! The last 8 bytes of a page hold the CRC-32 of the rest of the page and of the page
//! number, then the page number: a page written to the wrong place fails too, and the
//! error can say which page it holds.
//!
//! Only the database file is checksummed. The WAL's frames have SQLite's own checksums,
//! which `wal.rs` verifies at start, and SQLite computes them over the exact bytes it
//! writes: changing a byte of a WAL frame here would make SQLite drop the commit.
//! Pages reach the database file from the WAL at checkpoints, and get their checksum
//! then.

#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, ffi};

use super::layered_vfs;

/// The pragma that turns the checksums on for a connection's database file.
pub const PRAGMA: &str = "eventline_page_checksums";
/// Bytes at the end of each page that hold the checksum.
pub const RESERVED_LEN: usize = 8;

thread_local! {
    /// The page number of the last page refused on this thread, for the error message:
    /// SQLite reports only "disk I/O error".
    static LAST_REFUSED: Cell<Option<u32>> = const { Cell::new(None) };
    /// A page-sized buffer for writes: SQLite's buffer is borrowed, so the checksum is
    /// written into a copy.
    static WRITE_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The number of the last page refused on this thread, if any since the last call.
pub fn take_refused_page() -> Option<u32> {
    LAST_REFUSED.with(Cell::take)
}

/// Registers the VFS layered on `lower` (SQLite's default VFS when `None`), once per
/// lower VFS, and returns its name.
pub fn register(lower: Option<&str>) -> Result<String, String> {
    static REGISTERED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut registered = REGISTERED.lock().unwrap_or_else(PoisonError::into_inner);
    let name = format!("eventline-page-checksums/{}", lower.unwrap_or("default"));
    if !registered.contains(&name) {
        layered_vfs::register(lower, &name, HEADER_LEN, open, None)?;
        registered.push(name.clone());
    }
    Ok(name)
}

/// What the checksums do for one connection's database file, set with the pragma.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing: the file has no reserved bytes (a store made before page checksums).
    Off,
    /// Writes get checksums, reads are not checked: while a store made before page
    /// checksums is rewritten with them.
    Seal,
    /// Writes get checksums and every page read is checked.
    On,
}

impl Mode {
    fn as_pragma_value(self) -> &'static CStr {
        match self {
            Mode::Off => c"off",
            Mode::Seal => c"seal",
            Mode::On => c"on",
        }
    }

    fn from_pragma_value(value: &[u8]) -> Option<Mode> {
        [Mode::Off, Mode::Seal, Mode::On].into_iter().find(|mode| {
            mode.as_pragma_value()
                .to_bytes()
                .eq_ignore_ascii_case(value)
        })
    }
}

/// Sets the checksums' mode for `connection`'s database file, which must have been
/// opened through this VFS.
pub fn set_mode(connection: &Connection, mode: Mode) -> Result<(), String> {
    let value = mode.as_pragma_value().to_str().unwrap_or_default();
    let answer: Option<String> = connection
        .query_row(&format!("PRAGMA {PRAGMA} = {value}"), [], |row| row.get(0))
        .optional()
        .map_err(|error| error.to_string())?;
    match answer {
        Some(answer) if answer == value => Ok(()),
        // SQLite ignores a pragma that no VFS knows.
        _ => Err("the database file was not opened through the page checksum VFS".to_owned()),
    }
}

/// The reserved bytes per page of `connection`'s database (read from its header, so
/// after the first read), and with `set`, asks for that many from now on: a new database
/// gets them at once, an existing one at its next VACUUM.
pub fn reserved_bytes(connection: &Connection, set: Option<u8>) -> Result<u8, String> {
    let mut value: c_int = set.map_or(-1, c_int::from);
    // SAFETY: the handle is open for the borrow of `connection`; this file control
    // reads and writes one int.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            connection.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_RESERVE_BYTES,
            (&raw mut value).cast(),
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(format!("SQLITE_FCNTL_RESERVE_BYTES failed with code {rc}"));
    }
    u8::try_from(value).map_err(|_| format!("reserved bytes {value}"))
}

/// Our part of an open database file; the lower VFS's part follows it in the same
/// allocation (SQLite allocates `szOsFile` bytes).
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    mode: Mode,
}

const HEADER_LEN: usize = std::mem::size_of::<File>().next_multiple_of(16);

unsafe fn lower_file(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: as `layered_vfs::lower_file` requires.
    unsafe { layered_vfs::lower_file::<HEADER_LEN>(file) }
}

unsafe fn lower_methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: as `layered_vfs::lower_methods` requires.
    unsafe { layered_vfs::lower_methods::<HEADER_LEN>(file) }
}

unsafe fn mode(file: *mut ffi::sqlite3_file) -> Mode {
    // SAFETY: `file` was set up by `open`.
    unsafe { (*file.cast::<File>()).mode }
}

/// The page number of a page-sized access at `offset`, or None for any other access
/// (the 100-byte header read at open, WAL-index probes).
fn page_number(len: c_int, offset: i64) -> Option<u32> {
    let len = i64::from(len);
    let is_page = (512..=65_536).contains(&len) && len.count_ones() == 1 && offset % len == 0;
    is_page
        .then(|| u32::try_from(offset / len + 1).ok())
        .flatten()
}

/// The checksum of a page's content: its bytes before the reserved ones, then its number.
fn checksum(content: &[u8], page_number: u32) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(content);
    hasher.update(&page_number.to_le_bytes());
    hasher.finalize()
}

/// Writes the checksum of `page` into its reserved bytes.
fn seal(page: &mut [u8], page_number: u32) {
    let (content, reserved) = page.split_at_mut(page.len() - RESERVED_LEN);
    reserved[..4].copy_from_slice(&checksum(content, page_number).to_le_bytes());
    reserved[4..].copy_from_slice(&page_number.to_le_bytes());
}

/// Whether `page` is the page `page_number` as it was sealed.
fn is_sound(page: &[u8], page_number: u32) -> bool {
    let (content, reserved) = page.split_at(page.len() - RESERVED_LEN);
    reserved[..4] == checksum(content, page_number).to_le_bytes()
        && reserved[4..] == page_number.to_le_bytes()
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    xRead: Some(read),
    xWrite: Some(write),
    xFileControl: Some(file_control),
    xDeviceCharacteristics: Some(device_characteristics),
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
    // szOsFile bytes for the file.
    unsafe {
        let lower_vfs = layered_vfs::lower_vfs(vfs);
        let lower_open = (*lower_vfs).xOpen.expect("xOpen");
        // Every other file (WAL, journals, temporary files) is the lower VFS's alone.
        if flags & ffi::SQLITE_OPEN_MAIN_DB == 0 {
            return lower_open(lower_vfs, name, file, flags, out_flags);
        }
        let ours = file.cast::<File>();
        (*ours).base.pMethods = std::ptr::null();
        (*ours).mode = Mode::Off;
        let rc = lower_open(lower_vfs, name, lower_file(file), flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        (*ours).base.pMethods = &METHODS;
        ffi::SQLITE_OK
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
        let rc = (lower_methods(file).xRead.expect("xRead"))(lower_file(file), buffer, len, offset);
        // A short read (past the end of the file) is SQLite's to handle: it reads the
        // missing part as zeros, which is how a new page starts.
        if rc != ffi::SQLITE_OK || mode(file) != Mode::On {
            return rc;
        }
        let Some(page_number) = page_number(len, offset) else {
            return rc;
        };
        let page = std::slice::from_raw_parts(buffer.cast::<u8>(), len as usize);
        if is_sound(page, page_number) {
            rc
        } else {
            LAST_REFUSED.with(|refused| refused.set(Some(page_number)));
            ffi::SQLITE_IOERR_DATA
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
        let lower_write = lower_methods(file).xWrite.expect("xWrite");
        let page_number = page_number(len, offset).filter(|_| mode(file) != Mode::Off);
        let Some(page_number) = page_number else {
            return lower_write(lower_file(file), buffer, len, offset);
        };
        let page = std::slice::from_raw_parts(buffer.cast::<u8>(), len as usize);
        WRITE_BUFFER.with_borrow_mut(|sealed| {
            sealed.clear();
            sealed.extend_from_slice(page);
            seal(sealed, page_number);
            lower_write(lower_file(file), sealed.as_ptr().cast(), len, offset)
        })
    }
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    argument: *mut c_void,
) -> c_int {
    // SAFETY: `file` is open; for SQLITE_FCNTL_PRAGMA, `argument` is SQLite's array of
    // three strings (result, name, value or null), and a result must come from
    // sqlite3_malloc, since SQLite frees it.
    unsafe {
        if op == ffi::SQLITE_FCNTL_PRAGMA {
            let words = argument.cast::<*mut c_char>();
            let name = CStr::from_ptr(*words.add(1));
            if name.to_bytes().eq_ignore_ascii_case(PRAGMA.as_bytes()) {
                let value = *words.add(2);
                let ours = file.cast::<File>();
                if !value.is_null() {
                    let Some(mode) = Mode::from_pragma_value(CStr::from_ptr(value).to_bytes())
                    else {
                        return ffi::SQLITE_ERROR;
                    };
                    (*ours).mode = mode;
                }
                let answer = (*ours).mode.as_pragma_value().to_bytes_with_nul();
                let result = ffi::sqlite3_malloc(answer.len() as c_int).cast::<u8>();
                if result.is_null() {
                    return ffi::SQLITE_NOMEM;
                }
                std::ptr::copy_nonoverlapping(answer.as_ptr(), result, answer.len());
                *words = result.cast();
                return ffi::SQLITE_OK;
            }
        }
        layered_vfs::file_control::<HEADER_LEN>(file, op, argument)
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is open. Reads of part of a page would skip the check: SQLite reads
    // whole pages when the file does not claim it can read less.
    unsafe {
        layered_vfs::device_characteristics::<HEADER_LEN>(file) & !ffi::SQLITE_IOCAP_SUBPAGE_READ
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_page_is_sound_and_any_flipped_bit_or_other_place_is_not() {
        let mut page: Vec<u8> = (0..4096_u32).map(|i| (i * 7) as u8).collect();
        seal(&mut page, 42);
        assert!(is_sound(&page, 42));
        assert!(!is_sound(&page, 43), "a page read from another place");
        for at in [0, 100, 2048, 4087, 4088, 4095] {
            for bit in 0..8 {
                let mut damaged = page.clone();
                damaged[at] ^= 1 << bit;
                assert!(!is_sound(&damaged, 42), "byte {at} bit {bit}");
            }
        }
    }

    #[test]
    fn only_page_sized_aligned_accesses_are_pages() {
        assert_eq!(page_number(4096, 0), Some(1));
        assert_eq!(page_number(4096, 8192), Some(3));
        assert_eq!(page_number(100, 0), None);
        assert_eq!(page_number(4096, 24), None);
        assert_eq!(page_number(4000, 0), None);
    }
}
