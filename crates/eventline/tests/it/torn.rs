//! A power cut in the middle of a write, on the real binary: the shapes a disk leaves
//! when the sectors or pages of one write reach it in no order (a hole at the write's
//! start, a middle sector missing, a prefix, zeros to the end). A write no answer was
//! given for is cut off at start, whatever its shape, and every acknowledged event is
//! served; the same shapes in an acknowledged write are refused, reported by `check`,
//! and cut only when the operator asks.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{Server, serve_refused};

/// The length of a log file's header (`docs/format.md`): its magic and mark slots.
const HEADER_LEN: usize = 1536;

/// Stops the server with SIGTERM, as an operator does, and waits for its end.
async fn stop(mut server: Server) {
    let pid = server.child.id().expect("pid").to_string();
    let kill = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(kill.success());
    let status = server.child.wait().await.expect("wait");
    assert!(status.success(), "exit status {status}");
}

async fn post_batch(server: &Server, client: &reqwest::Client, batch: &Value) {
    let answer = client
        .post(server.url("/api/events/batch"))
        .json(batch)
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status().as_u16(), 201);
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|event| event["id"].as_str().expect("id").to_owned())
        .collect()
}

/// The newest log file of a data directory.
fn newest_log(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("log"))
        .expect("log directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    files.sort();
    files.pop().expect("a log file")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// `eventline <command> --data-dir <dir> <args>`: whether it succeeded, and what it said.
async fn eventline(command: &str, dir: &Path, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args([command, "--data-dir"])
        .arg(dir)
        .args(args)
        .output()
        .await
        .expect("run eventline");
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

/// A stopped data directory with 3 acknowledged events; the same directory after a
/// second batch of 60 was acknowledged and the server stopped; and, for the newest log
/// file, its header after the first stop and where the second batch begins and ends.
struct Written {
    dir: tempfile::TempDir,
    first: Vec<String>,
    header_before: Vec<u8>,
    batch: std::ops::Range<usize>,
}

async fn written() -> Written {
    let client = reqwest::Client::new();
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(dir.path()).await;
    let first: Value = (0..3)
        .map(|n| json!({"event_type": "kept", "content": {"n": n}}))
        .collect();
    post_batch(&server, &client, &first).await;
    let first = ids(&server.all_events(&client).await);
    stop(server).await;
    let log = newest_log(dir.path());
    let before = std::fs::read(&log).expect("read");

    let server = Server::start(dir.path()).await;
    // Content that does not compress, so that the batch's block crosses sectors.
    let second: Value = (0..60)
        .map(|n: u64| {
            let noise: String = (0..8)
                .map(|k| {
                    format!(
                        "{:016x}",
                        (n * 8 + k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    )
                })
                .collect();
            json!({"event_type": "torn", "content": {"noise": noise}})
        })
        .collect();
    post_batch(&server, &client, &second).await;
    assert_eq!(server.all_events(&client).await.len(), 63);
    stop(server).await;
    assert_eq!(
        newest_log(dir.path()),
        log,
        "both batches are in one log file"
    );
    let after = std::fs::read(&log).expect("read");
    assert_eq!(
        &after[HEADER_LEN..before.len()],
        &before[HEADER_LEN..],
        "appended after"
    );
    let batch = before.len()..after.len();
    assert!(
        batch.start.next_multiple_of(512) + 1_024 < batch.end,
        "the batch crosses sectors: {batch:?}"
    );
    Written {
        dir,
        first,
        header_before: before[..HEADER_LEN].to_vec(),
        batch,
    }
}

/// A shape a torn write or damage leaves a file in: its name, and what it does to the bytes.
type Shape = (&'static str, Box<dyn Fn(&mut Vec<u8>)>);

/// The shapes a write of `batch` can leave after a power cut, by what reached the disk.
fn shapes(batch: &std::ops::Range<usize>) -> Vec<Shape> {
    let (start, end) = (batch.start, batch.end);
    let boundary = start.next_multiple_of(512);
    vec![
        (
            "a hole from the write's start to a sector boundary",
            Box::new(move |bytes: &mut Vec<u8>| bytes[start..boundary].fill(0)),
        ),
        (
            "a middle sector missing",
            Box::new(move |bytes: &mut Vec<u8>| bytes[boundary + 512..boundary + 1_024].fill(0)),
        ),
        (
            "a prefix",
            Box::new(move |bytes: &mut Vec<u8>| bytes.truncate(boundary + 512)),
        ),
        (
            "zeros to the end",
            Box::new(move |bytes: &mut Vec<u8>| bytes[boundary..end].fill(0)),
        ),
    ]
}

#[tokio::test]
async fn a_write_never_acknowledged_is_cut_off_whatever_its_shape() {
    let client = reqwest::Client::new();
    let written = written().await;
    for (shape, tear) in shapes(&written.batch) {
        let dir = tempfile::tempdir().expect("temporary directory");
        copy_dir(written.dir.path(), dir.path());
        let log = newest_log(dir.path());
        let mut bytes = std::fs::read(&log).expect("read");
        // The power went while the batch was being synced: its bytes were written, its
        // mark, which only the next write or a pause would have carried, was not.
        bytes[..HEADER_LEN].copy_from_slice(&written.header_before);
        tear(&mut bytes);
        std::fs::write(&log, &bytes).expect("write");

        let (sound, said) = eventline("check", dir.path(), &[]).await;
        assert!(sound, "{shape}: {said}");
        assert!(
            said.contains("a torn, never-acknowledged tail of")
                && said.contains(&format!("at byte {}", written.batch.start))
                && said.contains("3 events checked, 0 problems"),
            "{shape}: {said}"
        );
        assert_eq!(
            std::fs::read(&log).expect("read"),
            bytes,
            "{shape}: check changed the file"
        );

        let server = Server::start(dir.path()).await;
        assert_eq!(
            ids(&server.all_events(&client).await),
            written.first,
            "{shape}"
        );
        stop(server).await;
        assert_eq!(
            std::fs::metadata(&log).expect("log").len() as usize,
            written.batch.start,
            "{shape}"
        );
    }
}

#[tokio::test]
async fn damage_to_an_acknowledged_write_is_refused_and_cut_only_when_asked() {
    let client = reqwest::Client::new();
    let written = written().await;
    for (shape, damage) in shapes(&written.batch) {
        let dir = tempfile::tempdir().expect("temporary directory");
        copy_dir(written.dir.path(), dir.path());
        let log = newest_log(dir.path());
        let mut bytes = std::fs::read(&log).expect("read");
        damage(&mut bytes);
        std::fs::write(&log, &bytes).expect("write");

        let refusal = serve_refused(dir.path(), &["--listen", "127.0.0.1:0"]).await;
        for words in [
            "is damaged at byte",
            "which were acknowledged",
            "up to 60 acknowledged events",
            "Nothing was changed",
            "Copy the data directory aside",
            "--cut-damaged-tail",
        ] {
            assert!(
                refusal.contains(words),
                "{shape}: {words:?} not in {refusal}"
            );
        }
        let (sound, said) = eventline("check", dir.path(), &[]).await;
        assert!(
            !sound && said.contains("is damaged at byte"),
            "{shape}: {said}"
        );
        assert_eq!(
            std::fs::read(&log).expect("read"),
            bytes,
            "{shape}: the file changed"
        );

        let (cut, said) = eventline("check", dir.path(), &["--cut-damaged-tail"]).await;
        assert!(cut && said.contains("given up"), "{shape}: {said}");
        let server = Server::start(dir.path()).await;
        assert_eq!(
            ids(&server.all_events(&client).await),
            written.first,
            "{shape}"
        );
        stop(server).await;
    }
}
