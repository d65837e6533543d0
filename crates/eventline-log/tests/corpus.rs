//! The fuzz targets' corpora (`fuzz/corpus/log_*`, `fuzz/corpus/segment_file`) replayed on
//! stable Rust, each seed as it is and with random mutations (100 each; 2,000 with
//! `EVENTLINE_FAULTS=long`), through the same entry points the targets call: no decoder
//! of bytes read back from disk may panic. Seeds are also made afresh from a real store
//! each run. `EVENTLINE_FUZZ_SEEDS_OUT=fuzz/corpus` writes those fresh seeds there.

use std::path::{Path, PathBuf};

use eventline_core::commit::Submission;
use eventline_core::event::{Event, Scope};
use eventline_log::fuzzing;
use eventline_log::{LogOptions, LogStore};
use serde_json::value::RawValue;
use uuid::Uuid;

/// A target's entry point: whether the input was read whole.
type Target = fn(&Path, &[u8]) -> bool;

const TARGETS: [(&str, Target); 4] = [
    ("log_header_and_blocks", |_, bytes| {
        fuzzing::log_header_and_blocks(bytes)
    }),
    ("log_block", |_, bytes| fuzzing::log_block(bytes)),
    ("log_file", fuzzing::log_file),
    ("segment_file", fuzzing::segment_file),
];

fn event(n: u32) -> Event {
    Event {
        id: Uuid::from_u128(u128::from(n) + 1),
        event_type: ["new_order", "store_purchase", "new_contact"][n as usize % 3].to_owned(),
        content: RawValue::from_string(format!(r#"{{"n":{n},"total":{}}}"#, n * 7)).expect("json"),
        contact_id: (!n.is_multiple_of(4)).then(|| format!("contact-{}", n % 11)),
        scope: if n.is_multiple_of(2) {
            Scope::App
        } else {
            Scope::Site
        },
        timestamp_ms: 1_700_000_000_000 + i64::from(n) * 1_000,
        received_at_ms: 1_700_000_000_000,
        client_timestamp_ms: n.is_multiple_of(5).then_some(1_699_999_999_000),
    }
}

fn files_of(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .expect("log directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|found| found == extension))
        .collect();
    files.sort();
    files
}

/// Real files: a log file of a few commits (one large enough to be compressed), one of
/// its blocks, and a segment written by a flush.
async fn fresh_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = LogStore::open(dir.path(), &LogOptions::default()).expect("open");
    for commit in 0..4u32 {
        let len = if commit == 2 { 40 } else { 2 };
        let events = (0..len).map(|n| event(commit * 100 + n)).collect();
        store
            .append(vec![Submission { events }])
            .await
            .expect("append");
    }
    drop(store);
    let log = std::fs::read(&files_of(dir.path(), "log")[0]).expect("log file");
    let block = log[eventline_log::FILE_HEADER_LEN..].to_vec();

    let flushed = tempfile::tempdir().expect("temporary directory");
    let options = LogOptions {
        memtable_bytes_max: 8 << 10,
        ..LogOptions::default()
    };
    let store = LogStore::open(flushed.path(), &options).expect("open");
    for commit in 0..8u32 {
        let events = (0..20).map(|n| event(commit * 100 + n)).collect();
        store
            .append(vec![Submission { events }])
            .await
            .expect("append");
    }
    drop(store);
    let segment = std::fs::read(files_of(flushed.path(), "seg").first().expect("a segment"))
        .expect("segment file");
    vec![
        ("log_header_and_blocks", log.clone()),
        ("log_block", block),
        ("log_file", log),
        ("segment_file", segment),
    ]
}

fn mutate(rng: &mut fastrand::Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..rng.usize(1..=4) {
        match rng.u8(..4) {
            0 if !bytes.is_empty() => {
                let at = rng.usize(..bytes.len());
                bytes[at] ^= 1 << rng.u8(..8);
            }
            1 if !bytes.is_empty() => bytes.truncate(rng.usize(..bytes.len())),
            2 if !bytes.is_empty() => {
                let at = rng.usize(..bytes.len());
                bytes[at] = rng.u8(..);
            }
            _ => {
                let at = rng.usize(..=bytes.len());
                bytes.insert(at, rng.u8(..));
            }
        }
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decoder_survives_its_corpus_and_mutations_of_it() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let fresh = fresh_seeds().await;
    if let Some(out) = std::env::var_os("EVENTLINE_FUZZ_SEEDS_OUT") {
        for (target, bytes) in &fresh {
            let dir = Path::new(&out).join(target);
            std::fs::create_dir_all(&dir).expect("seed directory");
            std::fs::write(dir.join("real"), bytes).expect("seed");
        }
    }
    let mutations = match std::env::var("EVENTLINE_FAULTS").as_deref() {
        Ok("long") => 2_000,
        _ => 100,
    };
    let mut rng = fastrand::Rng::with_seed(27);
    let work = tempfile::tempdir().expect("temporary directory");
    let mut inputs = 0;
    for (target, run) in TARGETS {
        // (bytes, whether they are a real file, which must be read whole); the others
        // are inputs a fuzzer found, kept so that what they broke stays mended.
        let mut seeds: Vec<(Vec<u8>, bool)> = fresh
            .iter()
            .filter(|(name, _)| *name == target)
            .map(|(_, bytes)| (bytes.clone(), true))
            .collect();
        let dir = corpus.join(target);
        let committed =
            std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
        for entry in committed {
            let path = entry.expect("entry").path();
            let real = path.file_name().is_some_and(|name| name == "real");
            seeds.push((std::fs::read(&path).expect("seed"), real));
        }
        assert!(
            seeds.len() >= 2,
            "{target}: a committed seed and a fresh one"
        );
        let mut refused = 0;
        for (seed, real) in &seeds {
            let whole = run(work.path(), seed);
            assert!(
                whole || !real,
                "{target}: a seed of real bytes is read whole"
            );
            inputs += 1;
            for _ in 0..mutations {
                refused += usize::from(!run(work.path(), &mutate(&mut rng, seed)));
                inputs += 1;
            }
        }
        assert!(refused > 0, "{target}: no mutation was ever refused");
    }
    eprintln!(
        "| 8 decoder corpus replay | engine | - | - | - | - | - | {inputs} inputs, no panic |"
    );
}
