//! A look at the WAL before SQLite opens it, to tell a torn tail from a damaged commit.
//!
//! SQLite checksums each WAL frame, chained over the frames before it, and at start-up
//! replays the frames up to the first one that fails. That is right for a torn tail: the
//! frames a crash cut short belong to a commit that never finished its fsync, so it was
//! never acknowledged. It is wrong when the bad frame belongs to a commit followed by
//! later ones: with synchronous = FULL a commit is written only after the one before it
//! was synced and acknowledged, so its loss would be silent loss of acknowledged events.
//! [`check`] finds that case and the store refuses to start, saying so.
//!
//! A damaged frame in the last commit cannot be told from a torn one, by SQLite or by
//! this check: that commit is dropped, as PostgreSQL drops a WAL record that fails its
//! CRC at the end of its WAL.

use std::io::Read;
use std::path::Path;

use crate::Error;

const HEADER_LEN: usize = 32;
const FRAME_HEADER_LEN: usize = 24;

/// Checks the WAL at `path`, if there is one; `Err(Error::WalDamaged)` when a commit
/// followed by other commits fails its checksum.
pub(crate) fn check(path: &Path) -> Result<(), Error> {
    let io_error = |source| Error::DataDir {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(io_error(source)),
    };
    // A frame at a time: a WAL left by a crash can be large.
    match damaged_commit(std::io::BufReader::new(file)).map_err(io_error)? {
        None => Ok(()),
        Some(frame) => Err(Error::WalDamaged {
            path: path.to_owned(),
            frame,
        }),
    }
}

/// Fills `buffer` from `wal`; false when the WAL ends first (a torn or empty tail).
fn read_whole(wal: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<bool> {
    match wal.read_exact(buffer) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(error),
    }
}

/// The number of the first bad frame when it belongs to a commit that later valid
/// commits follow; None when the WAL is whole or only its last commit is cut short.
fn damaged_commit(mut wal: impl Read) -> std::io::Result<Option<u64>> {
    let mut header = [0_u8; HEADER_LEN];
    if !read_whole(&mut wal, &mut header)? {
        return Ok(None);
    }
    let word = |bytes: &[u8], at: usize| {
        u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
    };
    let magic = word(&header, 0);
    if magic & !1 != 0x377f_0682 {
        return Ok(None);
    }
    // The low bit of the magic number says in which byte order the checksums read words.
    let big_endian = magic & 1 == 1;
    let page_len = word(&header, 8) as usize;
    let salts = &header[16..24];
    let mut sum = checksum(big_endian, (0, 0), &header[..24]);
    if sum != (word(&header, 24), word(&header, 28)) {
        // SQLite ignores a WAL whose header is bad: it was never used since its reset.
        return Ok(None);
    }
    let mut frame = vec![0_u8; FRAME_HEADER_LEN + page_len];
    let mut first_bad = None;
    let mut bad_commit_ended = false;
    let mut number = 0;
    while read_whole(&mut wal, &mut frame)? {
        if &frame[8..16] != salts {
            // A frame of an earlier generation of the WAL: the end.
            break;
        }
        let stored = (word(&frame, 16), word(&frame, 20));
        let computed = checksum(
            big_endian,
            checksum(big_endian, sum, &frame[..8]),
            &frame[FRAME_HEADER_LEN..],
        );
        let is_commit = word(&frame, 4) != 0;
        match first_bad {
            None if computed == stored => {}
            None => first_bad = Some(number),
            // Past the bad frame: a frame that checks out against the chain of stored
            // checksums was written after it. Once the bad frame's commit has ended, a
            // valid frame of a later commit proves that commit was synced.
            Some(_) if computed != stored => break,
            Some(bad) if bad_commit_ended => return Ok(Some(bad)),
            Some(_) => {}
        }
        if first_bad.is_some() && is_commit {
            bad_commit_ended = true;
        }
        // The chain goes on from the stored checksum, good or bad.
        sum = stored;
        number += 1;
    }
    Ok(None)
}

/// SQLite's WAL checksum: two running sums over the data as 32-bit words.
fn checksum(big_endian: bool, (mut s1, mut s2): (u32, u32), data: &[u8]) -> (u32, u32) {
    for pair in data.chunks_exact(8) {
        let read = |bytes: &[u8]| {
            let bytes: [u8; 4] = bytes.try_into().expect("four bytes");
            if big_endian {
                u32::from_be_bytes(bytes)
            } else {
                u32::from_le_bytes(bytes)
            }
        };
        s1 = s1.wrapping_add(read(&pair[..4])).wrapping_add(s2);
        s2 = s2.wrapping_add(read(&pair[4..])).wrapping_add(s1);
    }
    (s1, s2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL of `commits` one-frame commits with valid checksums.
    fn wal(commits: u32) -> Vec<u8> {
        let page_len = 512;
        let mut wal = Vec::new();
        wal.extend_from_slice(&0x377f_0682_u32.to_be_bytes());
        wal.extend_from_slice(&3_007_000_u32.to_be_bytes());
        wal.extend_from_slice(&(page_len as u32).to_be_bytes());
        wal.extend_from_slice(&0_u32.to_be_bytes());
        wal.extend_from_slice(&[7, 7, 7, 7, 9, 9, 9, 9]);
        let mut sum = checksum(false, (0, 0), &wal[..24]);
        wal.extend_from_slice(&sum.0.to_be_bytes());
        wal.extend_from_slice(&sum.1.to_be_bytes());
        for page in 0..commits {
            let mut frame = Vec::new();
            frame.extend_from_slice(&(page + 1).to_be_bytes());
            frame.extend_from_slice(&(page + 1).to_be_bytes());
            frame.extend_from_slice(&[7, 7, 7, 7, 9, 9, 9, 9]);
            let data: Vec<u8> = (0..page_len).map(|at| (at as u32 ^ page) as u8).collect();
            sum = checksum(false, checksum(false, sum, &frame[..8]), &data);
            frame.extend_from_slice(&sum.0.to_be_bytes());
            frame.extend_from_slice(&sum.1.to_be_bytes());
            frame.extend_from_slice(&data);
            wal.extend_from_slice(&frame);
        }
        wal
    }

    fn frame_at(number: usize) -> usize {
        HEADER_LEN + number * (FRAME_HEADER_LEN + 512)
    }

    #[test]
    fn a_damaged_commit_is_found_only_when_later_commits_follow() {
        let whole = wal(5);
        assert_eq!(damaged_commit(&whole[..]).expect("in memory"), None);
        // A torn tail: the last frame cut short, or its data damaged.
        assert_eq!(
            damaged_commit(&whole[..whole.len() - 100]).expect("in memory"),
            None
        );
        let mut last_damaged = whole.clone();
        last_damaged[frame_at(4) + 100] ^= 1;
        assert_eq!(damaged_commit(&last_damaged[..]).expect("in memory"), None);
        // The third of five commits damaged: two synced commits came after it.
        let mut middle_damaged = whole.clone();
        middle_damaged[frame_at(2) + 100] ^= 0x10;
        assert_eq!(
            damaged_commit(&middle_damaged[..]).expect("in memory"),
            Some(2)
        );
        // Frames of an older generation after the end are not part of the WAL.
        let mut old_tail = wal(2);
        let mut stale = whole[frame_at(2)..].to_vec();
        stale[8] ^= 1;
        old_tail.extend_from_slice(&stale);
        assert_eq!(damaged_commit(&old_tail[..]).expect("in memory"), None);
    }
}
