//! The log store's files: recovery after a write cut short, damage refused, erasure and
//! retention that leave no trace in the files.

use std::path::{Path, PathBuf};

use eventline_core::event::{Event, Scope};
use eventline_core::query::{Filter, Order, PageQuery, Start};
use eventline_store::log::{Error, FILE_HEADER_LEN, LogOptions, LogStore, Recovery};
use eventline_store::{Outcome, Store, Submission};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::conformance::append_all;

fn event(n: u128, contact_id: &str, timestamp_ms: i64) -> Event {
    Event {
        id: Uuid::from_u128(n),
        event_type: "new_order".to_owned(),
        content: RawValue::from_string(format!(r#"{{"marker":"{contact_id}-{n}"}}"#))
            .expect("json"),
        contact_id: Some(contact_id.to_owned()),
        scope: Scope::App,
        timestamp_ms,
        received_at_ms: 1_700_000_000_000,
        client_timestamp_ms: None,
    }
}

fn open(dir: &Path) -> Result<LogStore, Error> {
    LogStore::open(dir, &LogOptions::default())
}

fn small_files() -> LogOptions {
    LogOptions {
        file_len_max: 2_000,
        ..LogOptions::default()
    }
}

pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .expect("log directory")
        .map(|entry| entry.expect("entry").path())
        .collect();
    files.sort();
    files
}

pub async fn ids(store: &dyn Store) -> Vec<u128> {
    let page = store
        .page(PageQuery {
            filter: Filter::default(),
            order: Order::Asc,
            start: Start::First,
            limit: 1_000,
        })
        .await
        .expect("page");
    page.events.iter().map(|event| event.id.as_u128()).collect()
}

/// Three commits of two events each, in a fresh store that is then closed.
async fn three_commits(dir: &Path) -> Vec<usize> {
    commits(dir, 3).await
}

/// `len` commits of two events each, in a fresh store that is then closed; the log
/// file's length after each.
async fn commits(dir: &Path, len: u128) -> Vec<usize> {
    let store = open(dir).expect("open");
    let path = &log_files(dir)[0];
    let mut ends = Vec::new();
    for commit in 0..len {
        let events = (1..=2)
            .map(|n| event(commit * 2 + n, "c", (commit * 2 + n) as i64))
            .collect();
        append_all(&store, events).await;
        ends.push(std::fs::metadata(path).expect("log file").len() as usize);
    }
    ends
}

fn rewrite(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("read");
    change(&mut bytes);
    std::fs::write(path, bytes).expect("write");
}

/// A shape a torn write or damage leaves a file in: its name, and what it does to the bytes.
type Shape<'a> = (&'static str, Box<dyn Fn(&mut Vec<u8>) + 'a>);

/// The header of the log file at `path`: its mark slots.
fn header_of(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read")[..FILE_HEADER_LEN].to_vec()
}

/// The log file's header set back to `header`: as a power cut leaves the file when the
/// last commit's bytes were written but no mark of them reached the disk.
fn set_header(path: &Path, header: &[u8]) {
    rewrite(path, |bytes| {
        bytes[..FILE_HEADER_LEN].copy_from_slice(header)
    });
}

/// Content that does not compress, so that a commit's bytes on disk are as long as its
/// events.
fn noise(n: u128) -> String {
    let mut state = n as u64 | 1;
    (0..40)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format!("{:02x}", state & 0xff)
        })
        .collect()
}

/// Two acknowledged commits of two events, then a third of 60 events (a few KB,
/// across several sectors) as a power cut during its sync leaves it: written, no mark
/// of it. The file's ends after each commit, and the file's bytes.
async fn a_commit_in_flight(dir: &Path) -> (Vec<usize>, Vec<u8>) {
    let mut ends = commits(dir, 2).await;
    let path = log_files(dir)[0].clone();
    let marked = header_of(&path);
    let store = open(dir).expect("reopen");
    let events = (0..60)
        .map(|n| {
            let mut event = event(100 + n, "c", 100 + n as i64);
            event.content =
                RawValue::from_string(format!(r#"{{"noise":"{}"}}"#, noise(n))).expect("json");
            event
        })
        .collect();
    append_all(&store, events).await;
    drop(store);
    set_header(&path, &marked);
    let bytes = std::fs::read(&path).expect("read");
    ends.push(bytes.len());
    assert!(
        ends[1].next_multiple_of(512) + 1_024 < ends[2],
        "the third commit crosses sectors"
    );
    (ends, bytes)
}

#[tokio::test]
async fn a_write_never_acknowledged_is_cut_off_whatever_its_shape() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (ends, in_flight) = a_commit_in_flight(dir.path()).await;
    let path = log_files(dir.path())[0].clone();
    let first_boundary = ends[1].next_multiple_of(512);
    let shapes: [Shape<'_>; 6] = [
        (
            "prefix, cut in the block",
            Box::new(|bytes| bytes.truncate(ends[2] - 10)),
        ),
        (
            "prefix, cut in the header",
            Box::new(|bytes| bytes.truncate(ends[1] + 5)),
        ),
        (
            "hole from the block's start to a sector boundary",
            Box::new(|bytes| bytes[ends[1]..first_boundary].fill(0)),
        ),
        (
            "a middle sector zeroed",
            Box::new(|bytes| bytes[first_boundary + 512..first_boundary + 1_024].fill(0)),
        ),
        (
            "zeros to the end from a sector boundary",
            Box::new(|bytes| bytes[first_boundary..].fill(0)),
        ),
        (
            "zeroed sectors past the end",
            Box::new(|bytes| {
                bytes.truncate(ends[1]);
                bytes.resize(ends[1].next_multiple_of(512) + 512, 0);
            }),
        ),
    ];
    for (shape, tear) in shapes {
        let mut torn = in_flight.clone();
        tear(&mut torn);
        std::fs::write(&path, &torn).expect("write");
        let inspected = LogStore::open(
            dir.path(),
            &LogOptions {
                recovery: Recovery::Inspect,
                ..LogOptions::default()
            },
        )
        .expect(shape);
        let cut = inspected.cut().expect(shape).clone();
        assert_eq!(
            (cut.offset as usize, cut.acknowledged),
            (ends[1], false),
            "{shape}"
        );
        assert_eq!(
            inspected.verify().expect("verify").problems,
            Vec::<String>::new()
        );
        drop(inspected);
        assert_eq!(
            std::fs::read(&path).expect("read"),
            torn,
            "{shape}: inspecting changed the file"
        );
        let store = open(dir.path()).expect(shape);
        assert_eq!(ids(&store).await, [1, 2, 3, 4], "{shape}");
        assert_eq!(
            std::fs::metadata(&path).expect("log").len() as usize,
            ends[1],
            "{shape}"
        );
        append_all(&store, vec![event(9, "c", 5)]).await;
        drop(store);
        let store = open(dir.path()).expect("reopen after a new commit");
        assert_eq!(ids(&store).await, [1, 2, 3, 4, 9], "{shape}");
    }
}

#[tokio::test]
async fn damage_to_an_acknowledged_commit_is_refused_whatever_its_shape() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ends = three_commits(dir.path()).await;
    let path = log_files(dir.path())[0].clone();
    let whole = std::fs::read(&path).expect("read");
    // The store was closed: its mark covers all three commits, the last one too.
    let shapes: [Shape<'_>; 4] = [
        (
            "cut in the last block",
            Box::new(|bytes| bytes.truncate(ends[2] - 10)),
        ),
        (
            "the last block zeroed",
            Box::new(|bytes| bytes[ends[1]..].fill(0)),
        ),
        (
            "the last block's header zeroed",
            Box::new(|bytes| bytes[ends[1]..ends[1] + 28].fill(0)),
        ),
        (
            "the file cut to its header",
            Box::new(|bytes| bytes.truncate(FILE_HEADER_LEN)),
        ),
    ];
    for (shape, damage) in shapes {
        let mut damaged = whole.clone();
        damage(&mut damaged);
        std::fs::write(&path, &damaged).expect("write");
        match open(dir.path()) {
            Err(error @ Error::LogTailDamaged { .. }) => {
                let said = error.to_string();
                assert!(
                    said.contains("is damaged at byte") && said.contains("--cut-damaged-tail"),
                    "{shape}: {said}"
                );
            }
            Err(other) => panic!("{shape}: {other}"),
            Ok(_) => panic!("{shape}: the store opened"),
        }
        assert_eq!(
            std::fs::read(&path).expect("read"),
            damaged,
            "{shape}: refusing changed the file"
        );
    }
    // The operator's choice: cut at the damage, giving up the last commit's positions.
    let mut damaged = whole.clone();
    damaged[ends[1] + 40] ^= 1;
    std::fs::write(&path, &damaged).expect("write");
    let repaired = LogStore::open(
        dir.path(),
        &LogOptions {
            recovery: Recovery::CutDamagedTail,
            ..LogOptions::default()
        },
    )
    .expect("cut the damaged tail");
    let cut = repaired.cut().expect("a cut").clone();
    assert_eq!(
        (cut.offset as usize, cut.acknowledged, cut.positions),
        (ends[1], true, 5..7)
    );
    drop(repaired);
    let store = open(dir.path()).expect("open after the cut");
    assert_eq!(ids(&store).await, [1, 2, 3, 4]);
}

/// How many events the store counts, over every type.
async fn counted(store: &dyn Store) -> u64 {
    let types = store.event_types().await.expect("types");
    types.iter().map(|(_, count)| count).sum()
}

#[tokio::test]
async fn a_large_commit_is_written_in_blocks_of_whole_submissions() {
    let dir = tempfile::tempdir().expect("temporary directory");
    drop(open(dir.path()).expect("open"));
    let before = header_of(&log_files(dir.path())[0]);
    let store = open(dir.path()).expect("open");
    // Three submissions of 2,000 events, each more than a block's megabyte as the
    // memtable counts them, in one commit.
    let submissions: Vec<Submission> = (0..3u128)
        .map(|submission| Submission {
            events: (1..=2_000)
                .map(|n| event(submission * 10_000 + n, "c", n as i64))
                .collect(),
        })
        .collect();
    let outcomes = store.append(submissions).await.expect("append");
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, Outcome::Stored(_)))
    );
    drop(store);
    let store = open(dir.path()).expect("reopen");
    assert_eq!(counted(&store).await, 6_000);
    drop(store);

    // The write cut short inside the last block, before its mark reached the disk: the
    // first two submissions are whole, and nothing of the third is left.
    let path = log_files(dir.path())[0].clone();
    set_header(&path, &before);
    rewrite(&path, |bytes| bytes.truncate(bytes.len() - 10));
    let store = open(dir.path()).expect("reopen after a cut");
    assert_eq!(counted(&store).await, 4_000);
    let first = ids(&store).await;
    assert_eq!(first.len(), 1_000);
    assert!(first.iter().all(|id| *id < 20_000));
}

#[tokio::test]
async fn a_flipped_bit_in_any_commit_is_refused_never_dropped() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ends = three_commits(dir.path()).await;
    let path = log_files(dir.path())[0].clone();
    let whole = std::fs::read(&path).expect("read");
    // Every byte of the first and of the last commit: the last one too, although
    // nothing follows it, since a whole commit was synced and acknowledged.
    for at in (FILE_HEADER_LEN..ends[0]).chain(ends[1]..ends[2]) {
        let mut damaged = whole.clone();
        damaged[at] ^= 1 << (at % 8);
        std::fs::write(&path, &damaged).expect("write");
        match open(dir.path()) {
            Err(Error::LogTailDamaged { offset, .. }) => {
                assert!(
                    offset as usize == FILE_HEADER_LEN || offset as usize == ends[1],
                    "byte {at}: offset {offset}"
                )
            }
            Err(other) => panic!("byte {at}: {other}"),
            Ok(_) => panic!("byte {at} flipped, the store opened"),
        }
    }
    std::fs::write(&path, &whole).expect("write");
    assert_eq!(ids(&open(dir.path()).expect("open")).await.len(), 6);
}

#[tokio::test]
async fn an_erased_contact_leaves_no_byte_in_the_log_and_stays_suppressed() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path(), &small_files()).expect("open");
    for n in 0..60u128 {
        let contact = if n % 3 == 0 { "gone" } else { "kept" };
        append_all(&store, vec![event(n + 1, contact, n as i64)]).await;
    }
    assert!(log_files(dir.path()).len() > 2, "the log rotated");
    assert_eq!(store.erase_contact("gone", true).await.expect("erase"), 20);
    let found = log_files(dir.path())
        .iter()
        .filter(|path| {
            let bytes = std::fs::read(path).expect("read");
            bytes.windows(5).any(|window| window == b"gone-")
        })
        .count();
    assert_eq!(found, 0, "an erased event's bytes are still in a log file");
    drop(store);
    let store = LogStore::open(dir.path(), &small_files()).expect("reopen");
    assert_eq!(ids(&store).await.len(), 40);
    let refused = store
        .append(vec![eventline_store::Submission {
            events: vec![event(100, "gone", 1)],
        }])
        .await
        .expect("append");
    assert!(matches!(
        refused[0],
        eventline_store::Outcome::Suppressed { .. }
    ));
    assert!(store.unsuppress_contact("gone").await.expect("unsuppress"));
    append_all(&store, vec![event(100, "gone", 1)]).await;
}

#[tokio::test]
async fn retention_removes_whole_old_files_and_positions_are_never_reused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path(), &small_files()).expect("open");
    for n in 0..60u128 {
        append_all(&store, vec![event(n + 1, "c", n as i64)]).await;
    }
    let files_before = log_files(dir.path()).len();
    let head = store.stream_head().await.expect("head");
    // Whole files of expired events go in one step, past the step's bound.
    let deleted = store.delete_before(40, 5).await.expect("retention");
    assert!(deleted > 5, "deleted {deleted}");
    assert!(log_files(dir.path()).len() < files_before);
    while store.delete_before(40, 5).await.expect("retention") > 0 {}
    assert_eq!(ids(&store).await, (41..=60).collect::<Vec<u128>>());
    // The newest events erased, the store reopened: the head does not go back.
    store.erase_contact("c", false).await.expect("erase");
    drop(store);
    let store = LogStore::open(dir.path(), &small_files()).expect("reopen");
    assert_eq!(store.stream_head().await.expect("head"), head);
    append_all(&store, vec![event(99, "d", 1)]).await;
    assert!(store.stream_head().await.expect("head") > head);
}

/// Every event of a store, in commit order, at its position: what a reader of the
/// stream sees.
pub async fn stream_all(store: &dyn Store) -> Vec<(u64, Event)> {
    let head = store.stream_head().await.expect("head");
    let mut after = eventline_core::cursor::StreamCursor {
        commit: 0,
        id: Uuid::max(),
    };
    let mut events = Vec::new();
    while after < head {
        let chunk = store
            .stream(&Filter::default(), after, 100)
            .await
            .expect("stream");
        events.extend(
            chunk
                .events
                .into_iter()
                .map(|(at, event)| (at.commit, event)),
        );
        after = chunk.upto;
    }
    events
}

#[tokio::test]
async fn a_sqlite_directory_is_refused_with_a_message_that_says_so() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("eventline.sqlite3"), b"SQLite format 3\0").expect("write");
    match open(dir.path()) {
        Err(error @ Error::SqliteRetired(_)) => {
            assert!(error.to_string().contains("SQLite store"), "{error}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a SQLite directory was opened as a log store"),
    }
    assert!(!dir.path().join("log").exists(), "nothing was created");
}
