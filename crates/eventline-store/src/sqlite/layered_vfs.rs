//! What every SQLite VFS layered on another shares: registering it, finding the lower
//! VFS and the lower file, and passing on every call a layer does not change.
//!
//! A layered VFS is a copy of the lower one with its own `xOpen` (and maybe `xDelete`),
//! so that paths, randomness and time are the lower one's and see the same application
//! data. Each open file is one allocation of `szOsFile` bytes: the layer's header
//! (`HEADER_LEN` bytes, starting with `sqlite3_file`), then the lower VFS's file. Two
//! layers use this: the page checksums (`page_checksum.rs`) and the fault suite's
//! simulated disk (`eventline-faults`, `vfs.rs`), which the checksums sit on in tests.

#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_int, c_void};

use rusqlite::ffi;

pub type Open = unsafe extern "C" fn(
    *mut ffi::sqlite3_vfs,
    ffi::sqlite3_filename,
    *mut ffi::sqlite3_file,
    c_int,
    *mut c_int,
) -> c_int;

pub type Delete = unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *const c_char, c_int) -> c_int;

/// The registered VFS: SQLite sees `vfs`, the first field, and passes it back to the
/// layer's `open` and `delete`.
#[repr(C)]
struct LayeredVfs {
    vfs: ffi::sqlite3_vfs,
    lower: *mut ffi::sqlite3_vfs,
}

/// Registers `name`: the VFS `lower` (SQLite's default when `None`) with the layer's
/// `open` and, if given, `delete`, and files `header_len` bytes larger. Call it once per
/// name: a registered VFS lives as long as the process.
pub fn register(
    lower: Option<&str>,
    name: &str,
    header_len: usize,
    open: Open,
    delete: Option<Delete>,
) -> Result<(), String> {
    let lower_name = lower
        .map(CString::new)
        .transpose()
        .map_err(|_| format!("a VFS name with a NUL byte: {lower:?}"))?;
    let name_c = CString::new(name).map_err(|_| format!("a VFS name with a NUL byte: {name}"))?;
    // SAFETY: sqlite3_vfs_find returns a registered VFS, which stays registered for the
    // life of the process (Eventline never unregisters one). The VFS made here and its
    // name are leaked, as SQLite requires of a registered VFS.
    unsafe {
        if ffi::sqlite3_initialize() != ffi::SQLITE_OK {
            return Err("SQLite did not initialize".to_owned());
        }
        let lower_vfs = ffi::sqlite3_vfs_find(
            lower_name
                .as_ref()
                .map_or(std::ptr::null(), |name| name.as_ptr()),
        );
        if lower_vfs.is_null() {
            return Err(format!("no SQLite VFS named {lower:?}"));
        }
        let mut vfs = *lower_vfs;
        vfs.szOsFile = (header_len + (*lower_vfs).szOsFile as usize) as c_int;
        vfs.zName = name_c.into_raw();
        vfs.pNext = std::ptr::null_mut();
        vfs.xOpen = Some(open);
        if delete.is_some() {
            vfs.xDelete = delete;
        }
        let layered = Box::into_raw(Box::new(LayeredVfs {
            vfs,
            lower: lower_vfs,
        }));
        if ffi::sqlite3_vfs_register(layered.cast(), 0) != ffi::SQLITE_OK {
            return Err(format!("cannot register the VFS {name}"));
        }
    }
    Ok(())
}

/// The VFS a layered one sits on.
///
/// # Safety
/// `vfs` is a VFS made by [`register`] (SQLite passes it to the layer's callbacks).
pub unsafe fn lower_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: `register` made `vfs` the first field of a LayeredVfs.
    unsafe { (*vfs.cast::<LayeredVfs>()).lower }
}

/// The lower VFS's part of an open file.
///
/// # Safety
/// `file` is an allocation of the layered VFS's `szOsFile` bytes.
pub unsafe fn lower_file<const HEADER_LEN: usize>(
    file: *mut ffi::sqlite3_file,
) -> *mut ffi::sqlite3_file {
    // SAFETY: the lower file starts at HEADER_LEN, as `register` sized it.
    unsafe { file.cast::<u8>().add(HEADER_LEN).cast() }
}

/// The lower file's methods.
///
/// # Safety
/// `file` is open: the lower file's methods are set, and static in its VFS.
pub unsafe fn lower_methods<const HEADER_LEN: usize>(
    file: *mut ffi::sqlite3_file,
) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: as the function's contract says.
    unsafe { &*(*lower_file::<HEADER_LEN>(file)).pMethods }
}

/// Methods that pass every call to the lower file; a layer replaces the ones it changes
/// (`..pass_through::<HEADER_LEN>()`). Version 2: shared memory for the WAL index, no
/// memory-mapped reads, which would bypass a layer's reads.
pub const fn pass_through<const HEADER_LEN: usize>() -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        iVersion: 2,
        xClose: Some(close::<HEADER_LEN>),
        xRead: Some(read::<HEADER_LEN>),
        xWrite: Some(write::<HEADER_LEN>),
        xTruncate: Some(truncate::<HEADER_LEN>),
        xSync: Some(sync::<HEADER_LEN>),
        xFileSize: Some(file_size::<HEADER_LEN>),
        xLock: Some(lock::<HEADER_LEN>),
        xUnlock: Some(unlock::<HEADER_LEN>),
        xCheckReservedLock: Some(check_reserved_lock::<HEADER_LEN>),
        xFileControl: Some(file_control::<HEADER_LEN>),
        xSectorSize: Some(sector_size::<HEADER_LEN>),
        xDeviceCharacteristics: Some(device_characteristics::<HEADER_LEN>),
        xShmMap: Some(shm_map::<HEADER_LEN>),
        xShmLock: Some(shm_lock::<HEADER_LEN>),
        xShmBarrier: Some(shm_barrier::<HEADER_LEN>),
        xShmUnmap: Some(shm_unmap::<HEADER_LEN>),
        xFetch: None,
        xUnfetch: None,
    }
}

// Every callback below: SAFETY: `file` is open (SQLite calls a file's methods only
// between its open and its close), and pointers are as SQLite promises.

unsafe extern "C" fn close<const H: usize>(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: see above.
    unsafe { (lower_methods::<H>(file).xClose.expect("xClose"))(lower_file::<H>(file)) }
}

unsafe extern "C" fn read<const H: usize>(
    file: *mut ffi::sqlite3_file,
    buffer: *mut c_void,
    len: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: see above.
    unsafe {
        (lower_methods::<H>(file).xRead.expect("xRead"))(lower_file::<H>(file), buffer, len, offset)
    }
}

unsafe extern "C" fn write<const H: usize>(
    file: *mut ffi::sqlite3_file,
    buffer: *const c_void,
    len: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: see above.
    unsafe {
        (lower_methods::<H>(file).xWrite.expect("xWrite"))(
            lower_file::<H>(file),
            buffer,
            len,
            offset,
        )
    }
}

unsafe extern "C" fn truncate<const H: usize>(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: see above.
    unsafe { (lower_methods::<H>(file).xTruncate.expect("xTruncate"))(lower_file::<H>(file), size) }
}

unsafe extern "C" fn sync<const H: usize>(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: see above.
    unsafe { (lower_methods::<H>(file).xSync.expect("xSync"))(lower_file::<H>(file), flags) }
}

unsafe extern "C" fn file_size<const H: usize>(
    file: *mut ffi::sqlite3_file,
    size: *mut i64,
) -> c_int {
    // SAFETY: see above.
    unsafe { (lower_methods::<H>(file).xFileSize.expect("xFileSize"))(lower_file::<H>(file), size) }
}

unsafe extern "C" fn lock<const H: usize>(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: see above.
    unsafe { (lower_methods::<H>(file).xLock.expect("xLock"))(lower_file::<H>(file), level) }
}

unsafe extern "C" fn unlock<const H: usize>(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: see above.
    unsafe { (lower_methods::<H>(file).xUnlock.expect("xUnlock"))(lower_file::<H>(file), level) }
}

unsafe extern "C" fn check_reserved_lock<const H: usize>(
    file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    // SAFETY: see above.
    unsafe {
        (lower_methods::<H>(file)
            .xCheckReservedLock
            .expect("xCheckReservedLock"))(lower_file::<H>(file), out)
    }
}

/// Passes a file control to the lower file: for a layer that handles some itself.
///
/// # Safety
/// As for any file method: `file` is open, `argument` as SQLite passes it for `op`.
pub unsafe extern "C" fn file_control<const H: usize>(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    argument: *mut c_void,
) -> c_int {
    // SAFETY: see above.
    unsafe {
        (lower_methods::<H>(file).xFileControl.expect("xFileControl"))(
            lower_file::<H>(file),
            op,
            argument,
        )
    }
}

unsafe extern "C" fn sector_size<const H: usize>(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: see above.
    unsafe { (lower_methods::<H>(file).xSectorSize.expect("xSectorSize"))(lower_file::<H>(file)) }
}

/// The lower file's device characteristics: for a layer that changes some.
///
/// # Safety
/// As for any file method: `file` is open.
pub unsafe extern "C" fn device_characteristics<const H: usize>(
    file: *mut ffi::sqlite3_file,
) -> c_int {
    // SAFETY: see above.
    unsafe {
        (lower_methods::<H>(file)
            .xDeviceCharacteristics
            .expect("xDeviceCharacteristics"))(lower_file::<H>(file))
    }
}

unsafe extern "C" fn shm_map<const H: usize>(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: see above.
    unsafe {
        (lower_methods::<H>(file).xShmMap.expect("xShmMap"))(
            lower_file::<H>(file),
            region,
            size,
            extend,
            out,
        )
    }
}

unsafe extern "C" fn shm_lock<const H: usize>(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: see above.
    unsafe {
        (lower_methods::<H>(file).xShmLock.expect("xShmLock"))(
            lower_file::<H>(file),
            offset,
            n,
            flags,
        )
    }
}

unsafe extern "C" fn shm_barrier<const H: usize>(file: *mut ffi::sqlite3_file) {
    // SAFETY: see above.
    unsafe { (lower_methods::<H>(file).xShmBarrier.expect("xShmBarrier"))(lower_file::<H>(file)) }
}

unsafe extern "C" fn shm_unmap<const H: usize>(
    file: *mut ffi::sqlite3_file,
    delete: c_int,
) -> c_int {
    // SAFETY: see above.
    unsafe {
        (lower_methods::<H>(file).xShmUnmap.expect("xShmUnmap"))(lower_file::<H>(file), delete)
    }
}
