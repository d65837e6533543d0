//! The measurements: wrk for single-event posts, a Rust client for batches; each against
//! the baseline and against Eventline, one after the other in the same run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;

use crate::RunArgs;
use crate::dataset;

/// wrk posting a random body of the file named by its first argument.
pub const WRK_POST: &str = r#"
local bodies = {}
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000)
end
request = function()
  return wrk.format("POST", "/api/events/post", {["Content-Type"] = "application/json"}, bodies[math.random(#bodies)])
end
"#;

/// wrk's summary as one line of JSON, which [`wrk`] reads.
pub const WRK_DONE: &str = r#"
done = function(summary, latency, requests)
  io.write(string.format(
    "WRK_JSON {\"requests\":%d,\"duration_us\":%d,\"non_2xx\":%d,\"socket_errors\":%d,\"p50_us\":%d,\"p99_us\":%d}\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// A server process that is killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    pub fn start(command: &mut Command) -> anyhow::Result<Server> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("read the listening line")?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .context("no listening line")?
            .to_owned();
        Ok(Server { child, url })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server as an operator would (SIGTERM) and waits for it to exit.
    pub fn terminate(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let exit = self.child.wait()?;
        anyhow::ensure!(exit.success(), "the server exited with {exit}");
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    pub per_second: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed; `bench/run` installs it (apt-get install -y wrk)");
    }
    std::fs::create_dir_all(&args.out_dir)?;
    eprintln!("generating {} events", args.events);
    let lines = dataset::generate(args.events);
    let bytes_mean = lines.iter().map(String::len).sum::<usize>() as f64 / lines.len() as f64;
    let bodies_path = args.out_dir.join("bodies.ndjson");
    write_lines(&bodies_path, &lines[..lines.len().min(20_000)])?;
    let script_path = args.out_dir.join("post.lua");
    std::fs::write(&script_path, [WRK_POST, WRK_DONE].concat())?;
    let batches: Vec<Bytes> = lines
        .chunks(args.batch_len)
        .map(|chunk| Bytes::from(format!("[{}]", chunk.join(","))))
        .collect();

    let myself = std::env::current_exe()?;
    let baseline =
        Server::start(Command::new(&myself).args(["baseline", "--listen", "127.0.0.1:0"]))?;
    eprintln!("baseline: single-event posts");
    let baseline_single = post_load(args, &baseline.url, &script_path, &bodies_path)?;
    eprintln!("baseline: batches");
    let baseline_batch = batch_load(args, &baseline.url, &batches)?;
    drop(baseline);

    let data_dir = tempfile::tempdir()?;
    let eventline = Server::start(
        Command::new(&args.eventline)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path()),
    )?;
    eprintln!("eventline: single-event posts");
    let eventline_single = post_load(args, &eventline.url, &script_path, &bodies_path)?;
    eprintln!("eventline: batches");
    let eventline_batch = batch_load(args, &eventline.url, &batches)?;
    drop(eventline);
    let bytes_on_disk = crate::disk::dir_bytes(data_dir.path())?;
    let postgres = if args.postgres {
        Some(postgres_figures(
            args,
            &script_path,
            &bodies_path,
            &batches,
        )?)
    } else {
        None
    };

    let row = |name: &str, baseline: f64, eventline: f64, decimals: usize| {
        format!(
            "{name:<34} {baseline:>14.decimals$} {eventline:>14.decimals$} {:>8.3}\n",
            eventline / baseline
        )
    };
    let table = [
        format!(
            "\nEventline benchmark: {} events of {bytes_mean:.0} B on average; single posts at {} connections \
             for {:?}; batches of {} at {} connections\n",
            args.events, args.connections, args.duration, args.batch_len, args.batch_connections
        ),
        format!("{:<34} {:>14} {:>14} {:>8}\n", "figure", "bare axum", "eventline", "ratio"),
        row("single POST requests/s", baseline_single.per_second, eventline_single.per_second, 0),
        row("single POST p99 ms", baseline_single.p99_ms, eventline_single.p99_ms, 2),
        row("batch ingest events/s", baseline_batch.per_second, eventline_batch.per_second, 0),
        row("batch request p99 ms", baseline_batch.p99_ms, eventline_batch.p99_ms, 2),
        format!(
            "errors (non-2xx or socket): baseline {} + {}, eventline {} + {}\n",
            baseline_single.errors, baseline_batch.errors, eventline_single.errors, eventline_batch.errors
        ),
        format!("eventline data directory after the run: {bytes_on_disk} bytes\n"),
        postgres.map_or_else(String::new, |postgres| {
            [
                format!(
                    "\nOn PostgreSQL (a durable cluster on this machine), next to the embedded store\n{:<34} {:>14} {:>14} {:>8}\n",
                    "figure", "embedded", "postgresql", "ratio"
                ),
                row("single POST requests/s", eventline_single.per_second, postgres.single.per_second, 0),
                row("single POST p99 ms", eventline_single.p99_ms, postgres.single.p99_ms, 2),
                row("batch ingest events/s", eventline_batch.per_second, postgres.batch.per_second, 0),
                format!(
                    "{:<34} {:>14} {:>14.0} {:>8.3}\n",
                    "pgbench 1-row INSERTs/s, 16 clients",
                    "",
                    postgres.pgbench_per_second,
                    postgres.single.per_second / postgres.pgbench_per_second
                ),
                "(the last ratio: Eventline's single POSTs/s on PostgreSQL over pgbench's durable INSERTs/s)\n".to_owned(),
                format!(
                    "errors (non-2xx or socket) on postgresql: {} + {}\n",
                    postgres.single.errors, postgres.batch.errors
                ),
            ]
            .concat()
        }),
    ]
    .concat();
    print!("{table}");
    std::fs::write(args.out_dir.join("results.txt"), &table)?;
    Ok(())
}

struct PostgresFigures {
    single: Figures,
    batch: Figures,
    pgbench_per_second: f64,
}

/// Eventline on a throwaway PostgreSQL cluster with fsync on, under the same loads, then
/// `pgbench` doing durable one-row INSERTs with 16 clients on the same cluster.
fn postgres_figures(
    args: &RunArgs,
    script_path: &Path,
    bodies_path: &Path,
    batches: &[Bytes],
) -> anyhow::Result<PostgresFigures> {
    eprintln!("postgresql: starting a durable cluster");
    let cluster = eventline_testkit::Cluster::start_durable();
    let runtime = tokio::runtime::Runtime::new()?;
    let url = runtime.block_on(cluster.create_database());
    let eventline = Server::start(Command::new(&args.eventline).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        &url,
    ]))?;
    eprintln!("eventline on postgresql: single-event posts");
    let single = post_load(args, &eventline.url, script_path, bodies_path)?;
    eprintln!("eventline on postgresql: batches");
    let batch = batch_load(args, &eventline.url, batches)?;
    drop(eventline);

    eprintln!("pgbench: durable one-row INSERTs, 16 clients");
    let status = Command::new(cluster.program("psql"))
        .args([&url, "-q", "-c"])
        .arg("CREATE TABLE pgbench_events (id uuid PRIMARY KEY, content jsonb NOT NULL)")
        .status()?;
    anyhow::ensure!(status.success(), "psql could not create the pgbench table");
    let script = args.out_dir.join("pgbench-insert.sql");
    std::fs::write(
        &script,
        "INSERT INTO pgbench_events VALUES (gen_random_uuid(), '{\"store_id\": \"appmachine\", \"order_number\": \"61017114657\"}');\n",
    )?;
    let pgbench_per_second = crate::peers::pgbench_tps(
        Command::new(cluster.program("pgbench"))
            .args(["-n", "-c", "16", "-j", "2", "-T"])
            .arg(args.duration.as_secs().to_string())
            .arg("-f")
            .arg(&script)
            .arg(&url),
    )?;
    Ok(PostgresFigures {
        single,
        batch,
        pgbench_per_second,
    })
}

fn write_lines(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for line in lines {
        writeln!(file, "{line}")?;
    }
    Ok(file.flush()?)
}

fn post_load(args: &RunArgs, url: &str, script: &Path, bodies: &Path) -> anyhow::Result<Figures> {
    wrk(
        &format!("{url}/api/events/post"),
        script,
        &[bodies.display().to_string()],
        args.connections,
        args.duration,
    )
}

/// wrk against `url` with `script` (ending in [`WRK_DONE`]) and its arguments.
pub fn wrk(
    url: &str,
    script: &Path,
    script_args: &[String],
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Figures> {
    let output = Command::new("wrk")
        .arg(format!("-t{}", connections.min(2)))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs()))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(script)
        .arg(url)
        .arg("--")
        .args(script_args)
        .output()
        .context("run wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = stdout
        .lines()
        .find_map(|line| line.strip_prefix("WRK_JSON "))
        .with_context(|| {
            format!(
                "wrk printed no result: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let value: serde_json::Value = serde_json::from_str(json)?;
    let number = |key: &str| value[key].as_f64().unwrap_or_default();
    Ok(Figures {
        per_second: number("requests") / (number("duration_us") / 1e6),
        p99_ms: number("p99_us") / 1e3,
        errors: (number("non_2xx") + number("socket_errors")) as u64,
    })
}

fn batch_load(args: &RunArgs, url: &str, batches: &[Bytes]) -> anyhow::Result<Figures> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("{url}/api/events/batch");
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let deadline = started + args.duration;
        let batch_len = args.batch_len;
        let tasks: Vec<_> = (0..args.batch_connections)
            .map(|_| {
                let (client, url, next, batches) = (
                    client.clone(),
                    url.clone(),
                    Arc::clone(&next),
                    batches.to_vec(),
                );
                tokio::spawn(async move {
                    let (mut events, mut errors, mut latencies) = (0usize, 0u64, Vec::new());
                    while Instant::now() < deadline {
                        let batch =
                            batches[next.fetch_add(1, Ordering::Relaxed) % batches.len()].clone();
                        let sent = Instant::now();
                        let response = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(batch)
                            .send()
                            .await;
                        match response {
                            Ok(response) if response.status().is_success() => {
                                let _ = response.bytes().await;
                                latencies.push(sent.elapsed());
                                events += batch_len;
                            }
                            _ => errors += 1,
                        }
                    }
                    (events, errors, latencies)
                })
            })
            .collect();
        let mut figures = Figures::default();
        let mut events = 0;
        let mut latencies: Vec<Duration> = Vec::new();
        for task in tasks {
            let (task_events, task_errors, task_latencies) = task.await?;
            events += task_events;
            figures.errors += task_errors;
            latencies.extend(task_latencies);
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        figures.per_second = events as f64 / elapsed.as_secs_f64();
        figures.p99_ms = latencies
            .get(latencies.len() * 99 / 100)
            .map_or(0.0, |latency| latency.as_secs_f64() * 1e3);
        Ok(figures)
    })
}
