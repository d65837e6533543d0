//! The log store's segments: what is flushed reads back as it was, across a restart and
//! a flush cut short; damage is refused; erasure and retention rewrite or remove them.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use eventline_core::event::Event;
use eventline_core::query::{Filter, Order, PageQuery, Start};
use eventline_core::stats::{Bucket, StatsQuery};
use eventline_store::Store;
use eventline_store::log::{Error, LogOptions, LogStore};

use crate::conformance::{append_all, corpus, walk_events};
use crate::log_files::{ids, log_files, stream_all};

/// A memtable of about a dozen events, and merges of at most 50: the corpus ends in
/// a dozen segments or more.
fn small_memtable() -> LogOptions {
    LogOptions {
        memtable_bytes_max: 8 << 10,
        merged_events_max: 50,
        ..LogOptions::default()
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    log_files(dir)
        .into_iter()
        .filter(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .collect()
}

/// The corpus out of time order, so that the segments' time ranges overlap, in commits
/// of seven.
async fn fill(store: &dyn Store) {
    let corpus = corpus();
    let shuffled: Vec<Event> = (0..corpus.len())
        .map(|n| corpus[n * 379 % corpus.len()].clone())
        .collect();
    for chunk in shuffled.chunks(7) {
        append_all(store, chunk.to_vec()).await;
    }
}

/// How many events the store counts, over every type.
async fn counted(store: &dyn Store) -> u64 {
    let types = store.event_types().await.expect("types");
    types.iter().map(|(_, count)| count).sum()
}

/// A filter of these content conditions (URL form).
fn content(conditions: &[(&str, &str)]) -> Filter {
    Filter {
        content: Some(crate::content::url(conditions)),
        ..Filter::default()
    }
}

/// Everything a reader can see of a store, in one value to compare.
async fn everything(store: &dyn Store) -> Vec<String> {
    let mut seen = Vec::new();
    let filters = [
        Filter::default(),
        Filter {
            contact_id: Some("contact-3".to_owned()),
            ..Filter::default()
        },
        Filter {
            since_ms: Some(1_050_000),
            until_ms: Some(1_120_500),
            event_types: vec!["page_view".to_owned(), "new_order".to_owned()],
            ..Filter::default()
        },
        Filter {
            contact_id: Some("contact-5".to_owned()),
            since_ms: Some(1_010_000),
            until_ms: Some(1_150_000),
            scope: Some(eventline_core::event::Scope::App),
            ..Filter::default()
        },
        content(&[("content.n", "77")]),
        content(&[("content.n[gte]", "300"), ("content.n[lt]", "320")]),
        content(&[("content.missing", "1")]),
    ];
    for filter in &filters {
        for order in [Order::Asc, Order::Desc] {
            let walked = walk_events(store, filter, order, 17).await;
            seen.extend(walked.iter().map(|event| event.id.to_string()));
            let skipped = store
                .page(PageQuery {
                    filter: filter.clone(),
                    order,
                    start: Start::Skip(23),
                    limit: 5,
                })
                .await
                .expect("page");
            seen.extend(skipped.events.iter().map(|event| event.id.to_string()));
        }
        for bucket in [Bucket::Minute, Bucket::Hour] {
            let query = StatsQuery {
                filter: Filter {
                    since_ms: Some(filter.since_ms.unwrap_or(1_000_500)),
                    until_ms: Some(filter.until_ms.unwrap_or(1_199_500)),
                    ..filter.clone()
                },
                bucket,
            };
            let rows = store.stats(query).await.expect("stats");
            seen.push(format!("{rows:?}"));
        }
    }
    seen.push(format!("{:?}", store.event_types().await.expect("types")));
    for (position, event) in stream_all(store).await {
        seen.push(format!("{position} {}", event.id));
    }
    seen.push(format!("{:?}", store.stream_head().await.expect("head")));
    seen
}

#[tokio::test]
async fn flushed_events_read_as_the_memtable_reads_them_across_a_restart() {
    let (memory, flushed) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let reference = LogStore::open(memory.path(), &LogOptions::default()).expect("open");
    let store = LogStore::open(flushed.path(), &small_memtable()).expect("open");
    fill(&reference).await;
    fill(&store).await;
    // Dozens of flushes, merged four at a time.
    assert!(
        (3..20).contains(&segment_files(flushed.path()).len()),
        "{:?}",
        segment_files(flushed.path())
    );
    assert!(segment_files(memory.path()).is_empty());
    let expected = everything(&reference).await;
    assert_eq!(everything(&store).await, expected);
    // The log files the segments hold are gone.
    assert!(log_files(flushed.path()).len() < segment_files(flushed.path()).len() + 3);
    drop(store);
    let store = LogStore::open(flushed.path(), &small_memtable()).expect("reopen");
    assert_eq!(everything(&store).await, expected);
    assert!(store.verify().expect("verify").problems.is_empty());
    // A replay of an id held by a segment answers the stored copy; a changed one
    // conflicts.
    let first = corpus()[0].clone();
    let outcomes = store
        .append(vec![eventline_store::Submission {
            events: vec![first.clone()],
        }])
        .await
        .expect("append");
    assert!(
        matches!(&outcomes[0], eventline_store::Outcome::Stored(stored) if stored[0].replayed())
    );
    let mut changed = first;
    changed.event_type = "other".to_owned();
    let outcomes = store
        .append(vec![eventline_store::Submission {
            events: vec![changed],
        }])
        .await
        .expect("append");
    assert!(matches!(
        outcomes[0],
        eventline_store::Outcome::Conflict { .. }
    ));
}

#[tokio::test]
async fn a_flush_cut_short_loses_nothing_and_stores_nothing_twice() {
    let dir = tempfile::tempdir().expect("dir");
    let store = LogStore::open(dir.path(), &small_memtable()).expect("open");
    fill(&store).await;
    let expected = everything(&store).await;
    // What a flush cut short leaves: the log files of the newest segment, not yet
    // removed, and a segment not yet renamed into place.
    let newest = segment_files(dir.path()).pop().expect("a segment");
    let number: u32 = newest
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse().ok())
        .expect("number");
    drop(store);
    let log_dir = dir.path().join("log");
    // A log file the segment holds: a copy of the next one's first bytes is a file of
    // the right shape, and its events are in the segment.
    let next = log_dir.join(format!("{:08}.log", number + 1));
    std::fs::copy(&next, log_dir.join(format!("{number:08}.log"))).expect("copy");
    std::fs::write(log_dir.join("99999999.seg.tmp"), b"half a segment").expect("write");
    let store = LogStore::open(dir.path(), &small_memtable()).expect("reopen");
    assert_eq!(everything(&store).await, expected);
    assert!(!log_dir.join(format!("{number:08}.log")).exists());
    assert!(!log_dir.join("99999999.seg.tmp").exists());
}

/// Every byte of the file and of each zstd frame in it: what is in a file, compressed
/// or not.
fn plain_bytes(path: &Path) -> Vec<u8> {
    // A file a merge removed since it was listed holds nothing.
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut plain = bytes.clone();
    let magic = [0x28, 0xb5, 0x2f, 0xfd];
    for at in 0..bytes.len().saturating_sub(4) {
        if bytes[at..at + 4] == magic {
            let mut decoder = zstd::stream::read::Decoder::new(&bytes[at..])
                .expect("decoder")
                .single_frame();
            let mut frame = Vec::new();
            // A frame cut by the next structure reads up to the cut; enough here.
            let _ = decoder.read_to_end(&mut frame);
            plain.extend_from_slice(&frame);
        }
    }
    plain
}

#[tokio::test]
async fn an_erased_contact_leaves_no_byte_in_any_segment() {
    let dir = tempfile::tempdir().expect("dir");
    let store = LogStore::open(dir.path(), &small_memtable()).expect("open");
    fill(&store).await;
    let marker = b"\"n\":"; // every corpus event's content holds it
    let holds = |name: &[u8]| {
        log_files(dir.path())
            .iter()
            .filter(|path| {
                let plain = plain_bytes(path);
                plain.windows(name.len()).any(|window| window == name)
            })
            .count()
    };
    assert!(holds(b"contact-3") > 5);
    assert!(holds(marker) > 5, "the check sees inside compressed blocks");
    let erased = store
        .erase_contact("contact-3", false)
        .await
        .expect("erase");
    assert_eq!(
        erased,
        corpus()
            .iter()
            .filter(|event| event.contact_id.as_deref() == Some("contact-3"))
            .count() as u64
    );
    assert_eq!(
        holds(b"contact-3"),
        0,
        "an erased contact is still in a file"
    );
    drop(store);
    let store = LogStore::open(dir.path(), &small_memtable()).expect("reopen");
    assert_eq!(counted(&store).await, corpus().len() as u64 - erased);
}

#[tokio::test]
async fn retention_removes_and_rewrites_segments_and_the_head_stays() {
    let dir = tempfile::tempdir().expect("dir");
    let store = LogStore::open(dir.path(), &small_memtable()).expect("open");
    fill(&store).await;
    let head = store.stream_head().await.expect("head");
    let segments_before = segment_files(dir.path()).len();
    let cutoff_ms = 1_100_000;
    while store.delete_before(cutoff_ms, 10).await.expect("retention") > 0 {}
    let kept: Vec<Event> = corpus()
        .into_iter()
        .filter(|event| event.timestamp_ms >= cutoff_ms)
        .collect();
    assert_eq!(
        ids(&store).await,
        kept.iter()
            .map(|event| event.id.as_u128())
            .collect::<Vec<_>>()
    );
    // One more at most: a flush in flight when they were counted.
    assert!(segment_files(dir.path()).len() <= segments_before + 1);
    assert_eq!(counted(&store).await, kept.len() as u64);
    // Every event gone, the store reopened: the head does not go back.
    while store.delete_before(i64::MAX, 10).await.expect("retention") > 0 {}
    drop(store);
    let store = LogStore::open(dir.path(), &small_memtable()).expect("reopen");
    assert_eq!(store.stream_head().await.expect("head"), head);
}

#[tokio::test]
async fn a_flipped_bit_in_a_segment_is_refused_never_served() {
    let dir = tempfile::tempdir().expect("dir");
    let store = LogStore::open(dir.path(), &small_memtable()).expect("open");
    fill(&store).await;
    drop(store);
    let path = segment_files(dir.path())[3].clone();
    let whole = std::fs::read(&path).expect("read");
    // About 200 flips over the whole file: blocks, chunks, footer and trailer.
    for at in (0..whole.len()).step_by(whole.len().div_ceil(200)) {
        let mut damaged = whole.clone();
        damaged[at] ^= 1 << (at % 8);
        std::fs::write(&path, &damaged).expect("write");
        // Damage to the footer refuses the start; damage to a block or an index chunk
        // fails the reads that meet it, and `check` names it.
        match LogStore::open(dir.path(), &small_memtable()) {
            Err(Error::LogDamaged { path: named, .. }) => assert_eq!(named, path),
            Err(other) => panic!("byte {at}: {other}"),
            Ok(store) => {
                let verified = store.verify().expect("verify");
                assert_eq!(verified.problems.len(), 1, "byte {at}: {verified:?}");
                // Every block, then each contact's chunks, every postings list, then
                // every id's chunk (a replay of the whole corpus looks each id up, and
                // writes nothing).
                let contacts: BTreeSet<Option<String>> =
                    corpus().into_iter().map(|event| event.contact_id).collect();
                let mut failed = false;
                // Every postings list of the content index too: the path's and each
                // value's.
                let every_n =
                    serde_json::to_string(&(0..corpus().len()).collect::<Vec<_>>()).expect("json");
                let filters = std::iter::once(None)
                    .chain(contacts)
                    .map(|contact_id| Filter {
                        contact_id,
                        ..Filter::default()
                    })
                    .chain([
                        content(&[("content.n[exists]", "true")]),
                        content(&[("content.n[in]", &every_n)]),
                    ]);
                for filter in filters {
                    let page = store
                        .page(PageQuery {
                            filter,
                            order: Order::Asc,
                            start: Start::First,
                            limit: 1_000,
                        })
                        .await;
                    match page {
                        Err(Error::LogDamaged { .. }) => failed = true,
                        Err(other) => panic!("byte {at}: {other}"),
                        Ok(page) => assert!(page.events.len() <= corpus().len()),
                    }
                }
                // Every block's columns: a count of a number comparison.
                let stats = store
                    .stats(StatsQuery {
                        filter: Filter {
                            since_ms: Some(0),
                            until_ms: Some(10_000_000),
                            ..content(&[("content.n[gte]", "0")])
                        },
                        bucket: Bucket::Hour,
                    })
                    .await;
                match stats {
                    Err(Error::LogDamaged { .. }) => failed = true,
                    Err(other) => panic!("byte {at}: {other}"),
                    Ok(_) => {}
                }
                let replay = store
                    .append(vec![eventline_store::Submission { events: corpus() }])
                    .await;
                match replay {
                    Err(Error::LogDamaged { .. }) => failed = true,
                    Err(other) => panic!("byte {at}: {other}"),
                    Ok(_) => {}
                }
                assert!(failed, "byte {at} flipped, every read succeeded");
            }
        }
    }
    std::fs::write(&path, &whole).expect("write");
    let store = LogStore::open(dir.path(), &small_memtable()).expect("open");
    assert!(store.verify().expect("verify").problems.is_empty());
}

#[tokio::test]
async fn a_merge_cut_short_after_its_rename_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().expect("dir");
    let log_dir = dir.path().join("log");
    // No merges while the first segments are written: the later ones merge them away.
    let unmerged = LogOptions {
        merged_events_max: 0,
        ..small_memtable()
    };
    let store = LogStore::open(dir.path(), &unmerged).expect("open");
    let corpus = corpus();
    let (early, late) = corpus.split_at(150);
    for chunk in early.chunks(7) {
        append_all(&store, chunk.to_vec()).await;
    }
    drop(store);
    // The segments as they were, before later merges took their place.
    let before: Vec<(PathBuf, Vec<u8>)> = segment_files(dir.path())
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("read");
            (path, bytes)
        })
        .collect();
    let store = LogStore::open(dir.path(), &small_memtable()).expect("reopen");
    for chunk in late.chunks(7) {
        append_all(&store, chunk.to_vec()).await;
    }
    let expected = everything(&store).await;
    drop(store);
    // Put back the ones merged since: what a merge stopped between its rename and the
    // removal of its other inputs leaves.
    let mut put_back = 0;
    for (path, bytes) in before {
        if !path.exists() {
            std::fs::write(&path, bytes).expect("write");
            put_back += 1;
        }
    }
    assert!(put_back > 0, "no segment was merged away");
    let store = LogStore::open(dir.path(), &small_memtable()).expect("reopen");
    assert_eq!(everything(&store).await, expected);
    assert!(store.verify().expect("verify").problems.is_empty());
    drop(store);
    let names: Vec<PathBuf> = segment_files(dir.path());
    assert!(names.iter().all(|path| path.starts_with(&log_dir)));
}

/// The segments under `dir` whose magic ends in `version`.
fn segments_of_format(dir: &Path, version: u8) -> usize {
    segment_files(dir)
        .iter()
        .filter(|path| {
            let mut magic = [0; 8];
            std::fs::File::open(path)
                .and_then(|mut file| file.read_exact(&mut magic))
                .expect("read");
            magic == [b'E', b'V', b'S', b'E', b'G', 0, 0, version]
        })
        .count()
}

/// A copy of the fixture data directory `name`, for a store to open and change.
fn fixture_copy(name: &str) -> tempfile::TempDir {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let copy = tempfile::tempdir().expect("dir");
    std::fs::create_dir(copy.path().join("log")).expect("log dir");
    for entry in std::fs::read_dir(fixture.join("log")).expect("fixture") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name");
        std::fs::copy(&path, copy.path().join("log").join(name)).expect("copy");
    }
    copy
}

/// Segments of an earlier format, as that store wrote them from `fill` with
/// `small_memtable`, read as they are; merges write their events in the current format,
/// and they read the same after, content filters included.
async fn earlier_segments_are_read_as_they_are_and_merged_into_the_current_format(
    fixture: &str,
    version: u8,
) {
    let upgraded = fixture_copy(fixture);
    let memory = tempfile::tempdir().expect("dir");
    assert_eq!(segments_of_format(upgraded.path(), version), 14);
    let reference = LogStore::open(memory.path(), &LogOptions::default()).expect("open");
    fill(&reference).await;
    let expected = everything(&reference).await;
    let merging = LogOptions {
        merged_events_max: 1_000,
        ..small_memtable()
    };
    let store = LogStore::open(upgraded.path(), &merging).expect("open");
    assert_eq!(segments_of_format(upgraded.path(), version), 14);
    assert_eq!(everything(&store).await, expected);
    // Each upkeep begins a merge, and each verification waits for it.
    for _ in 0..8 {
        store.maintain().await.expect("maintain");
        assert!(store.verify().expect("verify").problems.is_empty());
    }
    assert!(segments_of_format(upgraded.path(), SEGMENT_FORMAT) >= 1);
    assert!(segments_of_format(upgraded.path(), version) < 14);
    assert_eq!(everything(&store).await, expected);
    drop(store);
    let store = LogStore::open(upgraded.path(), &merging).expect("reopen");
    assert_eq!(everything(&store).await, expected);
    assert!(store.verify().expect("verify").problems.is_empty());
}

/// The format segments are written in now.
const SEGMENT_FORMAT: u8 = 4;

/// Format 2: log blocks, no dictionary.
#[tokio::test]
async fn segments_of_the_second_format_are_read_as_they_are_and_merged_into_the_current_one() {
    earlier_segments_are_read_as_they_are_and_merged_into_the_current_format("log-segments-v2", 2)
        .await;
}

/// Format 3: no content index, so that a filtered read reads every block.
#[tokio::test]
async fn segments_of_the_third_format_are_read_as_they_are_and_merged_into_the_current_one() {
    earlier_segments_are_read_as_they_are_and_merged_into_the_current_format("log-segments-v3", 3)
        .await;
}

/// Segments of the first format (step 2: index entries named blocks), as that store
/// wrote them from `fill` with `small_memtable`, are rewritten in the current format
/// when the store opens and read as the events always read.
#[tokio::test]
async fn segments_of_the_first_format_are_rewritten_and_read_the_same() {
    let upgraded = fixture_copy("log-segments-v1");
    let memory = tempfile::tempdir().expect("dir");
    let first_format = |dir: &Path| segments_of_format(dir, 1);
    assert!(first_format(upgraded.path()) >= 10);
    let reference = LogStore::open(memory.path(), &LogOptions::default()).expect("open");
    fill(&reference).await;
    let store = LogStore::open(upgraded.path(), &small_memtable()).expect("open");
    assert_eq!(first_format(upgraded.path()), 0);
    assert_eq!(everything(&store).await, everything(&reference).await);
    store.check().await.expect("check");
    drop(store);
    let store = LogStore::open(upgraded.path(), &small_memtable()).expect("reopen");
    assert_eq!(everything(&store).await, everything(&reference).await);
}

/// Events of a few hundred bytes, of some variety: enough per segment for its
/// dictionary to be trained.
fn wordy_events(len: u64) -> Vec<Event> {
    let types = ["new_order", "page_view", "store_purchase"];
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
    ];
    (0..len)
        .map(|n| {
            let mixed = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
            let content = format!(
                r#"{{"order_number":"ord-{mixed:08x}","amount":{}.{:02},"note":"{} {} {}","page":"/shop/{}","quantity":{}}}"#,
                mixed % 900,
                mixed % 100,
                words[(mixed % 7) as usize],
                words[(mixed / 7 % 7) as usize],
                "x".repeat((mixed % 60) as usize),
                words[(mixed / 49 % 7) as usize],
                mixed % 9,
            );
            Event {
                id: uuid::Uuid::from_u128(u128::from(n) + 1),
                event_type: types[(n % 3) as usize].to_owned(),
                content: serde_json::value::RawValue::from_string(content).expect("json"),
                contact_id: Some(format!("contact-{}", mixed % 40)),
                scope: eventline_core::event::Scope::App,
                timestamp_ms: 1_000_000 + (mixed % 100_000) as i64 * 10,
                received_at_ms: 1_700_000_000_000,
                client_timestamp_ms: None,
            }
        })
        .collect()
}

/// Every event matching `filter`, page after page, with its content.
async fn contents(store: &dyn Store, filter: &Filter, order: Order) -> Vec<String> {
    let walked = walk_events(store, filter, order, 50).await;
    walked
        .iter()
        .map(|event| format!("{} {} {}", event.id, event.timestamp_ms, event.content))
        .collect()
}

/// Segments big enough for a trained dictionary read back every event, content and
/// all, as the memtable does, by time and by contact, after merges and a restart.
#[tokio::test]
async fn segments_with_trained_dictionaries_read_back_every_event() {
    let (memory, flushed) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let options = LogOptions {
        memtable_bytes_max: 1 << 20,
        ..LogOptions::default()
    };
    let reference = LogStore::open(memory.path(), &LogOptions::default()).expect("open");
    let store = LogStore::open(flushed.path(), &options).expect("open");
    for chunk in wordy_events(12_000).chunks(500) {
        append_all(&reference, chunk.to_vec()).await;
        append_all(&store, chunk.to_vec()).await;
    }
    assert!(store.verify().expect("verify").problems.is_empty());
    let dictionaries: Vec<u32> = segment_files(flushed.path())
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).expect("read");
            u32::from_le_bytes(bytes[8..12].try_into().expect("length"))
        })
        .collect();
    assert!(
        !dictionaries.is_empty() && dictionaries.iter().all(|len| *len > 1_000),
        "{dictionaries:?}"
    );
    let filters = [
        Filter::default(),
        Filter {
            contact_id: Some("contact-7".to_owned()),
            ..Filter::default()
        },
        Filter {
            contact_id: Some("contact-31".to_owned()),
            since_ms: Some(1_200_000),
            until_ms: Some(1_600_000),
            ..Filter::default()
        },
    ];
    let expected = {
        let mut expected = Vec::new();
        for filter in &filters {
            for order in [Order::Asc, Order::Desc] {
                expected.push(contents(&reference, filter, order).await);
            }
        }
        expected
    };
    let read = |store: LogStore| {
        let filters = filters.clone();
        async move {
            let mut read = Vec::new();
            for filter in &filters {
                for order in [Order::Asc, Order::Desc] {
                    read.push(contents(&store, filter, order).await);
                }
            }
            read
        }
    };
    assert!(expected.iter().all(|events| !events.is_empty()));
    assert!(read(store).await == expected);
    let store = LogStore::open(flushed.path(), &options).expect("reopen");
    assert!(read(store).await == expected);
}

/// Thousands of events in one millisecond fill many blocks that all begin in it: each
/// event is still found by its contact and by its id (a replay finds the stored copy).
#[tokio::test]
async fn events_of_one_millisecond_across_many_blocks_are_each_found() {
    let dir = tempfile::tempdir().expect("dir");
    let options = LogOptions {
        memtable_bytes_max: 1 << 20,
        ..LogOptions::default()
    };
    let store = LogStore::open(dir.path(), &options).expect("open");
    let events: Vec<Event> = wordy_events(6_000)
        .into_iter()
        .enumerate()
        .map(|(n, event)| Event {
            timestamp_ms: 1_000_000 + (n / 2_500) as i64,
            ..event
        })
        .collect();
    for chunk in events.chunks(500) {
        append_all(&store, chunk.to_vec()).await;
    }
    assert!(!segment_files(dir.path()).is_empty(), "nothing was flushed");
    for contact in ["contact-3", "contact-29"] {
        let filter = Filter {
            contact_id: Some(contact.to_owned()),
            ..Filter::default()
        };
        let mut expected: Vec<(i64, uuid::Uuid)> = events
            .iter()
            .filter(|event| event.contact_id.as_deref() == Some(contact))
            .map(|event| (event.timestamp_ms, event.id))
            .collect();
        expected.sort_unstable();
        let walked = walk_events(&store, &filter, Order::Asc, 50).await;
        let keys: Vec<(i64, uuid::Uuid)> = walked
            .iter()
            .map(|event| (event.timestamp_ms, event.id))
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(keys, expected, "{contact}");
    }
    let outcomes = store
        .append(vec![eventline_store::Submission {
            events: events.clone(),
        }])
        .await
        .expect("append again");
    let [eventline_store::Outcome::Stored(stored)] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(stored.len(), events.len());
    assert!(stored.iter().all(|appended| appended.replayed()));
}
