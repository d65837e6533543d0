//! The peers of the performance suite, each started on loopback for one run: ClickHouse
//! from Debian's `clickhouse-server` package and a durable PostgreSQL cluster, both fed
//! the same events as Eventline.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

pub const CLICKHOUSE_SERVER: &str = "/usr/sbin/clickhouse-server";

/// The columns of Eventline's event, as ClickHouse 18.16 can take them from
/// `JSONEachRow`: it reads no nested object into a column, so `content` is the JSON text,
/// and it has no nullable strings in a sorting key, so a missing contact is "".
const CLICKHOUSE_TABLE: &str = "CREATE TABLE events (\
     id UUID, event_type String, contact_id String, scope String, \
     timestamp_ms UInt64, received_at_ms UInt64, content String) \
     ENGINE = MergeTree ORDER BY (scope, contact_id, timestamp_ms)";

/// A ClickHouse server in a temporary directory under `scratch`, on 127.0.0.1 only,
/// killed when dropped.
pub struct ClickHouse {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl ClickHouse {
    pub fn start(scratch: &Path) -> anyhow::Result<ClickHouse> {
        ensure!(
            Path::new(CLICKHOUSE_SERVER).exists(),
            "{CLICKHOUSE_SERVER} is missing; `bench/perf` installs it (apt-get install -y clickhouse-server)"
        );
        let dir = tempfile::Builder::new()
            .prefix("eventline-clickhouse-")
            .tempdir_in(scratch)?;
        let root = dir.path().to_owned();
        let root = root.as_path();
        let (http_port, tcp_port) = (
            eventline_testkit::free_port(),
            eventline_testkit::free_port(),
        );
        std::fs::write(
            root.join("config.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{root}/server.log</log><errorlog>{root}/error.log</errorlog></logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <users_config>{root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>536870912</mark_cache_size>
</yandex>
"#,
                root = root.display()
            ),
        )?;
        std::fs::write(
            root.join("users.xml"),
            r#"<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
"#,
        )?;
        let mut command = Command::new(CLICKHOUSE_SERVER);
        command
            .arg(format!(
                "--config-file={}",
                root.join("config.xml").display()
            ))
            .current_dir(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Debian's server refuses to run as root; it runs as its own user, straight from
        // here, so that dropping this kills the server itself.
        if let Some((uid, gid)) = user_ids("clickhouse")? {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(root)
                .status()?;
            ensure!(
                status.success(),
                "cannot give {} to clickhouse",
                root.display()
            );
            command.uid(uid).gid(gid);
        }
        let child = command.spawn().context("start clickhouse-server")?;
        let server = ClickHouse {
            child,
            url: format!("http://127.0.0.1:{http_port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.query("SELECT 1").map(|answer| answer.trim() == "1") != Ok(true) {
            ensure!(
                Instant::now() < deadline,
                "clickhouse-server did not answer within 60 s; see {}/error.log",
                root.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server.query(CLICKHOUSE_TABLE).map_err(anyhow::Error::msg)?;
        Ok(server)
    }

    /// The address that inserts a body of `JSONEachRow` rows.
    pub fn insert_url(&self) -> String {
        format!(
            "{}/?query=INSERT%20INTO%20events%20FORMAT%20JSONEachRow",
            self.url
        )
    }

    /// The address that answers a read-only `sql` to a GET.
    pub fn query_url(&self, sql: &str) -> String {
        reqwest::Url::parse_with_params(&self.url, [("query", sql)])
            .map_or_else(|_| self.url.clone(), String::from)
    }

    /// Runs one statement over HTTP; its answer, or ClickHouse's error text.
    pub fn query(&self, sql: &str) -> Result<String, String> {
        let response = reqwest::blocking::Client::new()
            .post(&self.url)
            .body(sql.to_owned())
            .send()
            .map_err(|error| error.to_string())?;
        let ok = response.status().is_success();
        let text = response.text().map_err(|error| error.to_string())?;
        if ok { Ok(text) } else { Err(text) }
    }

    /// Merges every part (`OPTIMIZE FINAL`), then the compressed bytes on disk and the rows.
    pub fn bytes_and_rows(&self) -> anyhow::Result<(u64, u64)> {
        self.query("OPTIMIZE TABLE events FINAL")
            .map_err(anyhow::Error::msg)?;
        let answer = self
            .query(
                "SELECT sum(bytes_on_disk), sum(rows) FROM system.parts \
                 WHERE table = 'events' AND active",
            )
            .map_err(anyhow::Error::msg)?;
        let mut numbers = answer.split_whitespace().map(str::parse::<u64>);
        match (numbers.next(), numbers.next()) {
            (Some(Ok(bytes)), Some(Ok(rows))) => Ok((bytes, rows)),
            _ => bail!("unexpected answer from system.parts: {answer}"),
        }
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A user's uid and gid when this process runs as root, else `None` (run as oneself).
fn user_ids(user: &str) -> anyhow::Result<Option<(u32, u32)>> {
    if !eventline_testkit::is_root() {
        return Ok(None);
    }
    let id = |flag: &str| -> anyhow::Result<u32> {
        let output = Command::new("id").args([flag, user]).output()?;
        ensure!(output.status.success(), "no user {user}");
        Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

/// A durable PostgreSQL cluster holding the same events in the table and index that the
/// contact-timeline query needs, for `pgbench`.
pub struct Postgres {
    cluster: eventline_testkit::Cluster,
    pub url: String,
}

impl Postgres {
    /// Starts the cluster and loads `csv` (see [`crate::perf`]'s data files) with `COPY`,
    /// then builds the primary key and the (contact, time) index.
    pub fn start_with(csv: &Path) -> anyhow::Result<Postgres> {
        let cluster = eventline_testkit::Cluster::start_durable();
        let url = tokio::runtime::Runtime::new()?.block_on(cluster.create_database());
        let postgres = Postgres { cluster, url };
        postgres.psql(
            "CREATE TABLE events (id uuid NOT NULL, event_type text NOT NULL, contact_id text, \
             scope text NOT NULL, timestamp_ms bigint NOT NULL, content jsonb NOT NULL)",
        )?;
        postgres.psql(&format!(
            "\\copy events FROM '{}' WITH (FORMAT csv)",
            csv.display()
        ))?;
        postgres.psql("ALTER TABLE events ADD PRIMARY KEY (id)")?;
        postgres
            .psql("CREATE INDEX events_contact_time ON events (contact_id, timestamp_ms, id)")?;
        postgres.psql("VACUUM ANALYZE events")?;
        Ok(postgres)
    }

    pub fn program(&self, name: &str) -> PathBuf {
        self.cluster.program(name)
    }

    fn psql(&self, command: &str) -> anyhow::Result<()> {
        let output = Command::new(self.cluster.program("psql"))
            .args([&self.url, "-q", "-v", "ON_ERROR_STOP=1", "-c", command])
            .output()?;
        ensure!(
            output.status.success(),
            "psql failed on {command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// `pgbench` running `script` (prepared statements) with `clients` connections for
    /// `duration`; its transactions per second.
    pub fn pgbench(
        &self,
        script: &Path,
        clients: usize,
        duration: Duration,
    ) -> anyhow::Result<f64> {
        pgbench_tps(
            Command::new(self.program("pgbench"))
                .args(["-n", "-M", "prepared", "-j", "2", "-c"])
                .arg(clients.to_string())
                .arg("-T")
                .arg(duration.as_secs().to_string())
                .arg("-f")
                .arg(script)
                .arg(&self.url),
        )
    }
}

/// Runs a `pgbench` command; the transactions per second it reports.
pub fn pgbench_tps(command: &mut Command) -> anyhow::Result<f64> {
    let output = command.output().context("run pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // "tps = 1234.567890 (without initial connection time)"
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench's output:\n{stdout}"))
}
