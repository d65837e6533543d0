//! Privacy guarantees of the binary: an erased contact's data leaves the data files, and
//! a server reachable from other machines does not start without a secret key.

use serde_json::json;
use tokio::process::Command;

use crate::{Server, serve_refused};

/// Whether `needle` occurs in any file under `dir`.
fn found_in_files(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(found_in_files(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|window| window == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test]
async fn an_erased_contacts_marker_is_nowhere_in_the_data_files() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(dir.path()).await;
    let client = reqwest::Client::new();
    let marker = format!("erase-me-{}", uuid::Uuid::new_v4().simple());
    for n in 0..200 {
        let contact = if n % 2 == 0 { "to-erase" } else { "to-keep" };
        let content = if contact == "to-erase" {
            json!({"note": marker, "n": n})
        } else {
            json!({"note": "kept", "n": n})
        };
        let response = client
            .post(server.url("/api/events"))
            .json(&json!({"event_type": "privacy", "content": content, "contact_id": contact}))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status().as_u16(), 201);
    }
    assert!(
        !found_in_files(dir.path(), marker.as_bytes()).is_empty(),
        "the marker is on disk before the erasure (else this test proves nothing)"
    );
    let answer: serde_json::Value = client
        .delete(server.url("/api/contacts/to-erase/events"))
        .send()
        .await
        .expect("delete")
        .json()
        .await
        .expect("answer");
    assert_eq!(answer["erased"], 100);
    let page = server
        .get_json(&client, "/api/events?contact_id=to-erase")
        .await;
    assert_eq!(page["events"], json!([]));
    assert_eq!(server.all_events(&client).await.len(), 100);
    let found = found_in_files(dir.path(), marker.as_bytes());
    assert!(found.is_empty(), "the marker survives in {found:?}");
}

#[tokio::test]
async fn listening_beyond_loopback_without_a_secret_key_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let stderr = serve_refused(dir.path(), &["--listen", "0.0.0.0:0"]).await;
    assert!(
        stderr.contains("without a secret key") && stderr.contains("--secret-key"),
        "{stderr}"
    );
    for (secret, reason) in [
        ("short", "shorter than 16"),
        ("change-me-to-a-long-random-string", "example"),
    ] {
        let stderr = serve_refused(
            dir.path(),
            &["--listen", "0.0.0.0:0", "--secret-key", secret],
        )
        .await;
        assert!(stderr.contains(reason), "{stderr}");
    }

    let output = Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args([
            "token",
            "--contact",
            "c-1",
            "--ttl",
            "1h",
            "--token-secret",
            "a-long-token-secret-for-tests",
        ])
        .output()
        .await
        .expect("run eventline token");
    assert!(output.status.success());
    let token = String::from_utf8_lossy(&output.stdout);
    assert!(token.trim().starts_with("elt1."), "{token}");
}
