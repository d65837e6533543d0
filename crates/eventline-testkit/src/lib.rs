//! Test support: throwaway PostgreSQL clusters started from the system's PostgreSQL
//! binaries (Debian's `postgresql` package), on a free loopback port.
//!
//! [`database`] gives each test a fresh database in one cluster per test process, or
//! in the server `EVENTLINE_TEST_DATABASE_URL` names. [`Cluster::start`] gives a test a
//! cluster of its own, to stop and start (outage tests). A missing PostgreSQL is a
//! failure with the reason, never a skip.

// Test support: a failure to set up is a failed test, said as plainly as possible.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// One PostgreSQL server in a temporary directory, stopped and removed when this
/// process ends (even when it panics or is killed).
pub struct Cluster {
    pub port: u16,
    data_dir: PathBuf,
    bin_dir: PathBuf,
    as_postgres: bool,
    /// Held open: when this process ends the pipe closes and the guardian shell stops
    /// the server and removes its directory.
    _guardian: Mutex<(Child, ChildStdin)>,
}

impl Cluster {
    /// Creates and starts a cluster for tests: fsync off, since the test cluster's own
    /// durability is not under test. Panics, saying what is missing, when PostgreSQL is
    /// not installed.
    pub fn start() -> Cluster {
        Cluster::start_with(false)
    }

    /// A cluster that flushes its WAL to disk at every commit, as in production: for
    /// benchmarks of durable writes.
    pub fn start_durable() -> Cluster {
        Cluster::start_with(true)
    }

    fn start_with(durable: bool) -> Cluster {
        let bin_dir = postgres_bin_dir();
        let root = tempfile::Builder::new()
            .prefix("eventline-pg-")
            .tempdir()
            .unwrap()
            .keep();
        // initdb refuses to run as root: the cluster belongs to the `postgres` user then.
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&root)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "cannot give {} to postgres",
                root.display()
            );
        }
        let data_dir = root.join("data");
        let output = cluster_program(&bin_dir, as_postgres, "initdb")
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data_dir)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );

        let port = free_port();
        let durability = if durable {
            ""
        } else {
            "fsync = off\nfull_page_writes = off\n"
        };
        let settings = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             max_connections = 300\n{durability}",
            root.display()
        );
        std::fs::write(data_dir.join("postgresql.auto.conf"), settings).unwrap();
        if as_postgres {
            let _ = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(data_dir.join("postgresql.auto.conf"))
                .status();
        }

        let guardian_script = format!(
            "cat >/dev/null; {stop} -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{root}'",
            stop = if as_postgres {
                format!(
                    "runuser -u postgres -- '{}'",
                    bin_dir.join("pg_ctl").display()
                )
            } else {
                format!("'{}'", bin_dir.join("pg_ctl").display())
            },
            data = data_dir.display(),
            root = root.display(),
        );
        let mut guardian = Command::new("sh")
            .args(["-c", &guardian_script])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let guardian_stdin = guardian.stdin.take().unwrap();
        let cluster = Cluster {
            port,
            data_dir,
            bin_dir,
            as_postgres,
            _guardian: Mutex::new((guardian, guardian_stdin)),
        };
        cluster.start_server();
        cluster
    }

    fn pg_ctl(&self) -> Command {
        let mut command = cluster_program(&self.bin_dir, self.as_postgres, "pg_ctl");
        command.arg("-D").arg(&self.data_dir);
        command
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start_server(&self) {
        let log = self
            .data_dir
            .parent()
            .unwrap_or(Path::new("/tmp"))
            .join("postgres.log");
        let status = self
            .pg_ctl()
            .arg("-l")
            .arg(&log)
            .args(["-w", "start"])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "pg_ctl start failed; see {}",
            log.display()
        );
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop_immediately(&self) {
        let status = self
            .pg_ctl()
            .args(["-m", "immediate", "-w", "stop"])
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl stop failed");
    }

    /// A program of this cluster's PostgreSQL installation (`pgbench`, `psql`…).
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database in this cluster; its URL.
    pub async fn create_database(&self) -> String {
        create_database(&self.url("postgres")).await
    }
}

/// A fresh database for one test: in `EVENTLINE_TEST_DATABASE_URL`'s server when that is
/// set, else in a cluster this process starts once and shares between its tests.
pub async fn database() -> String {
    static SHARED: OnceLock<String> = OnceLock::new();
    let admin_url = SHARED
        .get_or_init(|| match std::env::var("EVENTLINE_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                static CLUSTER: OnceLock<Cluster> = OnceLock::new();
                CLUSTER.get_or_init(Cluster::start).url("postgres")
            }
        })
        .clone();
    create_database(&admin_url).await
}

async fn create_database(admin_url: &str) -> String {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "eventline_test_{}_{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {admin_url}: {error}"));
    let connection = tokio::spawn(connection);
    // Two statements: neither may run inside the implicit transaction of a batch.
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        client.batch_execute(&statement).await.unwrap();
    }
    drop(client);
    let _ = connection.await;
    // The same server, another database: the URL's last segment is its database.
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url, |(base, _)| base);
    format!("{base}/{name}")
}

/// Debian installs each major version under /usr/lib/postgresql/<major>/bin;
/// `EVENTLINE_POSTGRES_BIN` overrides.
fn postgres_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("EVENTLINE_POSTGRES_BIN") {
        return PathBuf::from(dir);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((major, bin))
        })
        .max();
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed: the PostgreSQL tests need its server binaries \
             (Debian: apt-get install postgresql), or EVENTLINE_TEST_DATABASE_URL"
        ),
    }
}

/// A PostgreSQL program of `bin_dir`, run as the `postgres` user when the cluster is
/// theirs (the tests run as root); its standard output discarded.
fn cluster_program(bin_dir: &Path, as_postgres: bool, program: &str) -> Command {
    let mut command = if as_postgres {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(bin_dir.join(program));
        command
    } else {
        Command::new(bin_dir.join(program))
    };
    command.stdout(Stdio::null());
    command
}

/// A loopback port that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether this process runs as root (as CI does).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| output.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}
