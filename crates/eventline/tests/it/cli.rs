//! The client commands against the real server: import → export round trip, bad lines
//! reported by number, `get` as a table and as JSON, `post`, `tail`; and `dump`, which
//! reads the store's files with no server.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{Value, json};
use tokio::process::Command;

use crate::Server;

const EVENTS: usize = 20_000;

async fn eventline(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args(args)
        .args(["--server", &server.address])
        .output()
        .await
        .expect("run eventline")
}

/// A server that answers most batches "overloaded, retry" (a 1 ms bound on the wait for
/// a commit): the import sends them again until each is stored, and stores each once.
#[tokio::test]
async fn import_waits_out_overload_answers() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--ingest-queue-delay-max-ms", "1"],
    )
    .await;
    let input = dir.path().join("events.ndjson");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&input).expect("create"));
        for n in 0..EVENTS {
            writeln!(
                file,
                "{}",
                json!({"event_type": "bulk", "content": {"n": n}})
            )
            .expect("write");
        }
    }
    let import = eventline(
        &server,
        &[
            "import",
            "--batch-len",
            "500",
            "--parallel",
            "8",
            input.to_str().expect("path"),
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&import.stderr);
    assert!(import.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("imported {EVENTS} events ({EVENTS} new")),
        "{stderr}"
    );
    let stats = eventline(&server, &["get", "--json", "--limit", "1"]).await;
    assert!(stats.status.success());
}

#[tokio::test]
async fn import_then_export_gives_back_the_same_events() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(&dir.path().join("data")).await;
    let input = dir.path().join("events.ndjson");
    let mut expected = BTreeMap::new();
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&input).expect("create"));
        for n in 0..EVENTS {
            let id = uuid::Uuid::new_v4().to_string();
            let event = json!({
                "id": id,
                "event_type": format!("type_{}", n % 5),
                "content": {"n": n, "note": "imported"},
                "contact_id": format!("c{}", n % 97),
                "timestamp": 1_700_000_000_000_i64 + n as i64,
            });
            writeln!(file, "{event}").expect("write");
            expected.insert(id, event);
            // Three bad lines among the good ones, at known line numbers.
            match n {
                100 => writeln!(file, "{{not json").expect("write"),
                5_000 => writeln!(file, "[1, 2]").expect("write"),
                9_000 => {
                    writeln!(file, r#"{{"event_type": "x", "content": "text"}}"#).expect("write")
                }
                _ => {}
            }
        }
    }
    let import = eventline(&server, &["import", input.to_str().expect("path")]).await;
    let stderr = String::from_utf8_lossy(&import.stderr);
    assert!(
        !import.status.success(),
        "bad lines make the import fail:\n{stderr}"
    );
    for line in ["line 102:", "line 5003:", "line 9004:"] {
        assert!(stderr.contains(line), "{line} not reported:\n{stderr}");
    }
    assert!(
        stderr.contains(&format!("imported {EVENTS} events ({EVENTS} new")),
        "{stderr}"
    );
    assert!(stderr.contains("events/s"), "{stderr}");

    let output = dir.path().join("export.ndjson");
    let export = eventline(
        &server,
        &["export", "--out", output.to_str().expect("path")],
    )
    .await;
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert!(export.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("exported {EVENTS} events")),
        "{stderr}"
    );
    let exported: BTreeMap<String, Value> = std::fs::read_to_string(&output)
        .expect("read export")
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("JSON line");
            (event["id"].as_str().expect("id").to_owned(), event)
        })
        .collect();
    assert_eq!(exported.len(), EVENTS);
    for (id, sent) in &expected {
        let got = &exported[id];
        for field in ["event_type", "content", "contact_id", "timestamp"] {
            assert_eq!(got[field], sent[field], "{id} {field}");
        }
    }

    // Importing again stores nothing new: every line has an id.
    let again = eventline(&server, &["import", input.to_str().expect("path")]).await;
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains(&format!("(0 new, {EVENTS} already stored)")),
        "{stderr}"
    );

    // The same events read from the files with no server: `dump`, as `export` wrote them.
    let mut server = server;
    server.kill().await;
    let dump = Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args(["dump", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .await
        .expect("run eventline dump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dumped: BTreeMap<String, Value> = String::from_utf8(dump.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("JSON line");
            (event["id"].as_str().expect("id").to_owned(), event)
        })
        .collect();
    assert_eq!(dumped, exported);
}

#[tokio::test]
async fn post_and_get_as_table_and_json() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(dir.path()).await;
    let posted = eventline(
        &server,
        &[
            "post",
            r#"{"event_type":"cli_order","content":{"total":9},"contact_id":"c-cli"}"#,
        ],
    )
    .await;
    assert!(
        posted.status.success(),
        "{}",
        String::from_utf8_lossy(&posted.stderr)
    );
    let stored: Value = serde_json::from_slice(&posted.stdout).expect("the stored event");
    assert_eq!(stored["event_type"], "cli_order");

    let table = eventline(&server, &["get", "--type", "cli_order", "--since", "2h"]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success());
    assert!(
        text.contains("cli_order") && text.contains("c-cli") && text.contains("1 events; no more"),
        "{text}"
    );

    let json = eventline(
        &server,
        &["get", "--json", "--contact", "c-cli", "--limit", "5"],
    )
    .await;
    let page: Value = serde_json::from_slice(&json.stdout).expect("JSON page");
    assert_eq!(page["events"][0]["id"], stored["id"]);

    // Content filters: the shorthand comparisons and the bracketed operators.
    for total in [50, 150, 250] {
        let body = json!({"event_type": "cli_order", "content": {"total": total, "tags": ["t"]}});
        let posted = eventline(&server, &["post", &body.to_string()]).await;
        assert!(posted.status.success());
    }
    let totals = |output: std::process::Output| -> Vec<i64> {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let page: Value = serde_json::from_slice(&output.stdout).expect("JSON page");
        page["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|event| event["content"]["total"].as_i64().expect("total"))
            .collect()
    };
    let filtered = eventline(
        &server,
        &[
            "get",
            "--json",
            "--where",
            "total>=50",
            "--where",
            "total!=150",
            "--where",
            "tags[contains]=t",
        ],
    )
    .await;
    assert_eq!(totals(filtered), [50, 250]);
    let below = eventline(&server, &["get", "--json", "--where", "total<10"]).await;
    assert_eq!(totals(below), [9]);
    let unknown = eventline(&server, &["get", "--where", "total[between]=1"]).await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("content.total[between]"),
        "the server names the filter"
    );
    let malformed = eventline(&server, &["get", "--where", "total"]).await;
    assert!(!malformed.status.success());

    let refused = eventline(&server, &["post", r#"{"event_typ":"x","content":{}}"#]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("event_typ"),
        "the server's detail is shown: {stderr}"
    );
}

#[tokio::test]
async fn tail_follows_new_events_of_its_filter() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(dir.path()).await;
    let client = reqwest::Client::new();
    // Where the stream stands now: its first message's id.
    let mut stream = client
        .get(server.url("/api/events/stream"))
        .send()
        .await
        .expect("stream");
    let first = String::from_utf8(
        stream
            .chunk()
            .await
            .expect("chunk")
            .expect("a message")
            .to_vec(),
    )
    .expect("text");
    let start = first
        .lines()
        .find_map(|line| line.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("an id: {first}"))
        .to_owned();
    drop(stream);
    let mut posted = Vec::new();
    for (n, event_type) in ["cli_tail", "other", "cli_tail", "cli_tail"]
        .iter()
        .enumerate()
    {
        let event = json!({"event_type": event_type, "content": {"n": n}});
        let stored: Value = client
            .post(server.url("/api/events"))
            .json(&event)
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("stored");
        if *event_type == "cli_tail" {
            posted.push(stored["id"].clone());
        }
    }
    let mut tail = Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args(["tail", "--json", "--type", "cli_tail", "--after", &start])
        .args(["--server", &server.address])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tail");
    let stdout = tail.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut received = Vec::new();
    while received.len() < posted.len() {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("a line in time")
            .expect("read")
            .expect("a line");
        let message: Value = serde_json::from_str(&line).expect("JSON line");
        assert!(message["stream_id"].is_string(), "{message}");
        received.push(message["event"]["id"].clone());
    }
    assert_eq!(received, posted);
    tail.kill().await.expect("stop tail");
}
