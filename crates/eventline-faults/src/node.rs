//! The `eventline` binary as a process: started, killed with SIGKILL, restarted on the
//! same address and storage, its memory sampled.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use eventline_core::error_chain::ErrorChain;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// Where a node keeps events.
pub enum Storage {
    /// The embedded log store in a temporary directory.
    LogDir(tempfile::TempDir),
    /// A PostgreSQL database.
    Database(String),
}

impl Storage {
    /// A fresh database in this process's throwaway cluster.
    pub async fn database() -> Storage {
        Storage::Database(eventline_testkit::database().await)
    }

    /// The embedded log store in a fresh temporary directory.
    pub fn log_dir() -> Storage {
        Storage::LogDir(tempfile::tempdir().expect("temporary directory"))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Storage::LogDir(_) => "embedded log",
            Storage::Database(_) => "postgres",
        }
    }

    fn args(&self) -> Vec<String> {
        match self {
            Storage::LogDir(dir) => vec!["--data-dir".to_owned(), path_text(dir.path())],
            Storage::Database(url) => vec!["--database".to_owned(), url.clone()],
        }
    }
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// The `eventline` binary beside this test's: `EVENTLINE_BIN`, else `target/<profile>/
/// eventline` (a test binary lives in `target/<profile>/deps`).
pub fn eventline_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("EVENTLINE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("this test's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let binary = profile_dir.join("eventline");
    assert!(
        binary.exists(),
        "no {}: build it first (cargo build -p eventline, with --release for a release run), or set EVENTLINE_BIN",
        binary.display()
    );
    binary
}

/// One running `eventline serve`.
pub struct Node {
    child: Child,
    /// `http://127.0.0.1:PORT`, the same across restarts.
    pub url: String,
    listen: String,
    args: Vec<String>,
    peak_rss_kb: u64,
}

impl Node {
    /// Starts a node on a free loopback port with `storage` and `extra` flags.
    pub async fn start(storage: &Storage, extra: &[&str]) -> Node {
        Node::try_start(storage, extra)
            .await
            .expect("start eventline")
    }

    /// [`Node::start`], or why the node did not start.
    pub async fn try_start(storage: &Storage, extra: &[&str]) -> Result<Node, String> {
        let mut args = storage.args();
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let (child, url) = try_spawn("127.0.0.1:0", &args).await?;
        let listen = url.trim_start_matches("http://").to_owned();
        Ok(Node {
            child,
            url,
            listen,
            args,
            peak_rss_kb: 0,
        })
    }

    /// SIGKILL, then waits until the process is gone.
    pub async fn kill(&mut self) {
        self.sample_rss();
        self.child.start_kill().expect("kill -9");
        self.child.wait().await.expect("wait for the killed node");
    }

    /// Starts the node again on the same address and storage; the port is retried for a
    /// while in case the old socket lingers.
    pub async fn restart(&mut self) {
        let mut attempts = 0;
        loop {
            match try_spawn(&self.listen, &self.args).await {
                Ok((child, _)) => {
                    self.child = child;
                    return;
                }
                Err(error) if attempts >= 50 => panic!("the node did not start again: {error}"),
                Err(_) => attempts += 1,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then waits for the graceful exit.
    pub async fn stop(mut self) {
        self.sample_rss();
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
    }

    /// Keeps every thread of the node on CPU `cpu` (`taskset`), so that a load
    /// generator with the other CPU to itself can offer more than the node can take.
    pub fn pin_to_cpu(&self, cpu: usize) {
        let pid = self.child.id().expect("a running node");
        let status = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("taskset (util-linux)");
        assert!(status.success(), "taskset -a -p -c {cpu} {pid}: {status}");
    }

    /// Reads the resident memory now, and keeps the peak.
    pub fn sample_rss(&mut self) -> u64 {
        let rss = self
            .child
            .id()
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmRSS:"))
                    .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0);
        self.peak_rss_kb = self.peak_rss_kb.max(rss);
        rss
    }

    pub fn peak_rss_kb(&self) -> u64 {
        self.peak_rss_kb
    }

    /// Every stored event as (id, content `n`), read with the export.
    pub async fn stored(&self, client: &reqwest::Client) -> Vec<(Uuid, u64)> {
        stored(client, &self.url).await
    }
}

/// A client for a server that the test stops and starts again on the same address: it
/// keeps no idle connection, since one kept from before a stop is dead, and a request
/// sent on it fails whenever the client has not yet seen the close (a power-loss test
/// failed so in CI, on a loaded machine, with the restart taking milliseconds).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// Every event stored by the server at `url` as (id, content `n`), read with the export.
pub async fn stored(client: &reqwest::Client, url: &str) -> Vec<(Uuid, u64)> {
    try_stored(client, url).await.expect("export")
}

/// [`stored`], or why the export failed: an error answer, a body cut short, a line that
/// is not an event of the harness.
pub async fn try_stored(client: &reqwest::Client, url: &str) -> Result<Vec<(Uuid, u64)>, String> {
    let response = client
        .get(format!("{url}/api/events/export"))
        .send()
        .await
        .map_err(|error| ErrorChain(&error).to_string())?;
    if response.status() != 200 {
        return Err(format!("export answered {}", response.status()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|error| format!("export body: {}", ErrorChain(&error)))?;
    body.split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let event: serde_json::Value =
                serde_json::from_slice(line).map_err(|error| format!("export line: {error}"))?;
            let id = event["id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .ok_or("export line without an id")?;
            Ok((id, event["content"]["n"].as_u64().unwrap_or(u64::MAX)))
        })
        .collect()
}

/// Starts `eventline serve` and waits for its listening line; an error when it exits
/// first (the port is taken, the store is locked).
async fn try_spawn(listen: &str, args: &[String]) -> Result<(Child, String), String> {
    let mut child = Command::new(eventline_bin())
        .args(["serve", "--listen", listen])
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "error".to_owned()),
        )
        // A log store's memtable of about 1,300 events: crashes strike flushes, and
        // reads cross segments. A test may ask for more with the flag, which wins.
        .env("EVENTLINE_LOG_MEMTABLE_MB", "1")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| error.to_string())?;
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    match lines.next_line().await {
        Ok(Some(line)) => match line.strip_prefix("listening on ") {
            Some(url) => Ok((child, url.to_owned())),
            None => Err(format!("unexpected first line {line:?}")),
        },
        _ => {
            let status = child.wait().await.map_err(|error| error.to_string())?;
            Err(format!("eventline exited before listening: {status}"))
        }
    }
}
