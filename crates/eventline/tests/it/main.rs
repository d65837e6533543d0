//! Tests of the `eventline` binary as a process: start-up, `kill -9` under load, several
//! nodes on one PostgreSQL, and a PostgreSQL outage.

mod cli;
mod crash;
mod multinode;
mod outage;
mod privacy;
mod shutdown;
mod torn;

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The real binary serving on 127.0.0.1:0, and the address it printed.
pub struct Server {
    pub child: Child,
    pub address: String,
}

impl Server {
    pub async fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[]).await
    }

    /// A node of the PostgreSQL store: no state of its own.
    pub async fn start_on_database(database_url: &str) -> Server {
        let unused = tempfile::tempdir().expect("temporary directory");
        Server::start_with(unused.path(), &["--database", database_url]).await
    }

    pub async fn start_with(data_dir: &Path, args: &[&str]) -> Server {
        Server::spawn(Server::command(data_dir, args)).await
    }

    fn command(data_dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_eventline"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env(
                "RUST_LOG",
                if std::env::var_os("TEST_LOG").is_some() {
                    "debug"
                } else {
                    "warn"
                },
            )
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn spawn(mut command: Command) -> Server {
        let mut child = command.spawn().expect("spawn eventline");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("the server said where it listens within a minute")
            .expect("read stdout")
            .expect("a first line");
        let address = line
            .strip_prefix("listening on ")
            .expect("the listening line")
            .to_owned();
        assert!(!address.ends_with(":0"), "the real port is printed: {line}");
        Server { child, address }
    }

    /// `kill -9`, then the process's end. Bounded: should the runtime miss the child's
    /// exit, its status is asked for directly, and a process that outlives a minute
    /// fails the test instead of hanging it (a CI run once stalled after a kill with no
    /// process left and nothing more said).
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("kill -9");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let waited =
                tokio::time::timeout(std::time::Duration::from_secs(2), self.child.wait()).await;
            if let Ok(status) = waited {
                status.expect("wait for the killed server");
                return;
            }
            if self
                .child
                .try_wait()
                .expect("the killed server's status")
                .is_some()
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server was still running a minute after kill -9"
            );
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// One JSON answer to a GET.
    pub async fn get_json(&self, client: &reqwest::Client, path: &str) -> serde_json::Value {
        client
            .get(self.url(path))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("JSON")
    }

    /// Every stored event, oldest first, read page by page through the API.
    pub async fn all_events(&self, client: &reqwest::Client) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        let mut offset = String::new();
        loop {
            let page = self
                .get_json(client, &format!("/api/events?limit=1000&offset={offset}"))
                .await;
            events.extend(page["events"].as_array().expect("events").iter().cloned());
            match page["next_offset"].as_str() {
                Some(next) => offset = next.to_owned(),
                None => return events,
            }
        }
    }
}

/// Runs `eventline serve` with `args`, expects it to exit with failure, and returns what
/// it printed on stderr.
pub async fn serve_refused(data_dir: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args(["serve", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_remove("EVENTLINE_SECRET_KEYS")
        .output()
        .await
        .expect("run eventline");
    assert!(!output.status.success(), "it started");
    assert!(output.stdout.is_empty(), "it never said it was listening");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn prints_the_real_address_and_serves() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(dir.path()).await;
    let health = reqwest::get(server.url("/healthz")).await.expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let _first = Server::start(dir.path()).await;
    let stderr = serve_refused(dir.path(), &["--listen", "127.0.0.1:0"]).await;
    assert!(
        stderr.contains("used by another eventline process"),
        "{stderr}"
    );
}

/// A new data directory gets the log store; one that holds a SQLite store (the store
/// before it, retired before any release) is refused with a message that says so, and
/// left as it is.
#[tokio::test]
async fn a_sqlite_directory_is_refused_and_left_as_it_is() {
    let fresh = tempfile::tempdir().expect("temporary directory");
    let mut server = Server::start(fresh.path()).await;
    server.kill().await;
    assert!(
        fresh.path().join("log").is_dir(),
        "a new directory holds a log"
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("eventline.sqlite3"), b"SQLite format 3\0").expect("write");
    let stderr = serve_refused(dir.path(), &["--listen", "127.0.0.1:0"]).await;
    assert!(
        stderr.contains("holds a SQLite store") && stderr.contains("no longer reads"),
        "{stderr}"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read the directory")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["eventline.sqlite3"]);
}

/// `check` and `dump` read a store; where there is none they say so and create nothing.
#[tokio::test]
async fn check_and_dump_refuse_a_directory_without_a_store() {
    let empty = tempfile::tempdir().expect("temporary directory");
    for command in ["check", "dump"] {
        let output = Command::new(env!("CARGO_BIN_EXE_eventline"))
            .args([command, "--data-dir"])
            .arg(empty.path())
            .output()
            .await
            .expect("run eventline");
        assert!(!output.status.success(), "{command} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("holds no store"), "{command}: {stderr}");
    }
    let created: Vec<_> = std::fs::read_dir(empty.path())
        .expect("read the directory")
        .collect();
    assert!(created.is_empty(), "{created:?}");
}
