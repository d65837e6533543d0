//! The simulated disk of [`crate::vfs`], seen by the log store: the same unsynced writes,
//! faults and power cuts, through the store's `Disk` trait instead of a SQLite VFS.
//!
//! Appends wait in the file's unsynced list until a sync copies them to the real file;
//! reads see them. Creating, renaming and removing files reach the real directory at
//! once, as truncations do in the VFS: the log store syncs the directory after each, so
//! a power cut between the two is a case the model leaves out.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use eventline_store::log::disk::{Disk, RealDisk};

use crate::vfs;

/// The log store's face of the simulated disk (`LogOptions::disk`).
#[derive(Debug, Default)]
pub struct LogDisk;

fn key(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

fn failed(what: &str) -> io::Error {
    io::Error::other(format!("simulated disk: the {what} failed"))
}

fn powered_off() -> io::Error {
    io::Error::other("simulated disk: the power is off")
}

impl Disk for LogDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        if vfs::disk().is_powered_off() {
            return Err(powered_off());
        }
        RealDisk::default().list(dir)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = vfs::disk();
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
        let mut disk = vfs::disk();
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
        let mut disk = vfs::disk();
        if disk.write_fails() {
            return Err(failed("write"));
        }
        disk.keep(key(path), offset as i64, bytes.to_vec());
        Ok(())
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        // Held while the writes are copied: a power cut comes before or after a whole
        // sync, never in its middle.
        let mut disk = vfs::disk();
        let fails = disk.sync_fails();
        let dirty: vfs::Dirty = disk.dirty.remove(key(path)).unwrap_or_default();
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
        let mut disk = vfs::disk();
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
        let mut disk = vfs::disk();
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
        let mut disk = vfs::disk();
        if disk.change_fails() {
            return Err(failed("removal"));
        }
        disk.dirty.remove(key(path));
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        if vfs::disk().is_powered_off() {
            return Err(powered_off());
        }
        Ok(())
    }
}
