//! The file work of the log store, behind a trait: the real file system here, and in
//! tests a simulated disk that loses what was not synced when the power goes.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// What the log store asks of a disk. Paths are whole paths; only the files of one
/// directory are used.
pub trait Disk: Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// `len` bytes from `offset`; an error if the file is shorter.
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let bytes = self.read(path)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        bytes
            .get(start..start.saturating_add(len))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
    }
    /// The file's length in bytes.
    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(self.read(path)?.len() as u64)
    }
    /// Appends to the file, creating it if it does not exist.
    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Writes over bytes of the file that are already there (a mark slot).
    fn write_at(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Makes what was appended to the file durable (`fdatasync`).
    fn sync(&self, path: &Path) -> io::Result<()>;
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable: files created, renamed or removed in it.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// Removes the file at `path`; a file that is not there is no error.
pub(crate) fn remove_if_present(disk: &dyn Disk, path: &Path) -> io::Result<()> {
    match disk.remove(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// The real file system. Keeps the file last written to open, since the writer appends
/// to one file for a long time, and the files read from (segments), since an `open` per
/// read cost as much as the read. The written file is not opened to append: Linux's
/// `pwrite` on such a file appends wherever it is asked to write.
#[derive(Default)]
pub struct RealDisk {
    open: Mutex<Option<(PathBuf, File)>>,
    readers: RwLock<HashMap<PathBuf, Arc<File>>>,
}

impl RealDisk {
    fn with_file<T>(
        &self,
        path: &Path,
        work: impl FnOnce(&mut File) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.as_ref().is_none_or(|(open_path, _)| open_path != path) {
            let file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(path)?;
            *open = Some((path.to_owned(), file));
        }
        match open.as_mut() {
            Some((_, file)) => work(file),
            None => Err(io::Error::other("no open file")),
        }
    }

    fn reader(&self, path: &Path) -> io::Result<Arc<File>> {
        if let Some(file) = self
            .readers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
        {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(File::open(path)?);
        self.readers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_owned(), Arc::clone(&file));
        Ok(file)
    }

    /// Closes the kept files if they are `path`, which is about to be replaced or removed.
    fn forget(&self, path: &Path) {
        self.readers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(path);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open
            .as_ref()
            .is_some_and(|(open_path, _)| open_path == path)
        {
            *open = None;
        }
    }
}

impl Disk for RealDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0; len];
        self.reader(path)?.read_exact_at(&mut bytes, offset)?;
        Ok(bytes)
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.with_file(path, |file| {
            file.seek(SeekFrom::End(0))?;
            file.write_all(bytes)
        })
    }

    fn write_at(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.with_file(path, |file| file.write_all_at(bytes, offset))
    }

    fn sync(&self, path: &Path) -> io::Result<()> {
        self.with_file(path, |file| file.sync_data())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.forget(path);
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.forget(from);
        self.forget(to);
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.forget(path);
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
