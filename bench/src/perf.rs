//! `eventline-bench perf`: each target of the performance issues (P1–P9) measured for
//! Eventline and, where the target is a ratio, for its reference in the same run on the
//! same events: a bare axum handler, ClickHouse, PostgreSQL with `pgbench`.
//!
//! The data set is written once per size into the output directory as three files of the
//! same events: NDJSON for Eventline, `JSONEachRow` rows for ClickHouse, CSV for
//! PostgreSQL's `COPY`. Later runs reuse them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use crate::PerfArgs;
use crate::dataset::{self, CONTACTS, TIME_SPAN_MS, TIME_START_MS};
use crate::load::{self, Server, WRK_DONE};
use crate::measure::{Goal, Row, latencies, percentile};
use crate::peers::{ClickHouse, Postgres};

const WEEK_MS: i64 = 7 * 24 * 3_600_000;
/// The contact-timeline query's window starts anywhere in the data set's 30 days that
/// leaves a whole week after it.
const TIMELINE_SINCE_SPAN_S: i64 = (TIME_SPAN_MS - WEEK_MS) / 1000;
const TIMELINE_LIMIT: u32 = 50;
/// Sequential timeline queries for the one-connection latency.
const TIMELINE_QUERIES: usize = 2_000;
/// Runs of the stats query; the median is the figure.
const STATS_RUNS: usize = 21;

const WRK_TIMELINE: &str = r#"
local since_min, since_span_s, contacts
init = function(args)
  since_min = tonumber(args[1]); since_span_s = tonumber(args[2]); contacts = tonumber(args[3])
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 1000)
end
request = function()
  local since = since_min + math.random(0, since_span_s) * 1000
  return wrk.format("GET", string.format(
    "/api/events?contact_id=contact-%d&since=%.0f&until=%.0f&limit=50",
    math.random(0, contacts - 1), since, since + 604800000))
end
"#;

/// The three files of one data set size.
struct DataFiles {
    eventline: PathBuf,
    clickhouse: PathBuf,
    postgres: PathBuf,
}

impl DataFiles {
    fn ensure(out_dir: &Path, events: usize) -> anyhow::Result<DataFiles> {
        let files = DataFiles {
            eventline: out_dir.join(format!("perf-v{}-{events}.ndjson", dataset::VERSION)),
            clickhouse: out_dir.join(format!(
                "perf-v{}-{events}.clickhouse.ndjson",
                dataset::VERSION
            )),
            postgres: out_dir.join(format!("perf-v{}-{events}.postgres.csv", dataset::VERSION)),
        };
        let all = [&files.eventline, &files.clickhouse, &files.postgres];
        if all.iter().all(|path| path.exists()) {
            return Ok(files);
        }
        eprintln!("writing the data set: {events} events, three formats");
        let partial = |path: &Path| path.with_extension("partial");
        let create = |path: &Path| -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
            Ok(std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(partial(path))?,
            ))
        };
        let (mut eventline, mut clickhouse, mut postgres) = (
            create(&files.eventline)?,
            create(&files.clickhouse)?,
            create(&files.postgres)?,
        );
        let mut ids = StdRng::seed_from_u64(0x1d5);
        for event in dataset::events(events) {
            writeln!(eventline, "{event}")?;
            let id = uuid::Builder::from_random_bytes(ids.random()).into_uuid();
            let contact_id = event["contact_id"].as_str();
            let content = event["content"].to_string();
            let timestamp_ms = event["timestamp"].as_i64().context("timestamp")?;
            let row = json!({
                "id": id,
                "event_type": event["event_type"],
                "contact_id": contact_id.unwrap_or(""),
                "scope": event["scope"],
                "timestamp_ms": timestamp_ms,
                "received_at_ms": timestamp_ms,
                "content": content,
            });
            writeln!(clickhouse, "{row}")?;
            writeln!(
                postgres,
                "{id},{},{},{},{timestamp_ms},{}",
                csv_field(event["event_type"].as_str().unwrap_or_default()),
                contact_id.map(csv_field).unwrap_or_default(),
                csv_field(event["scope"].as_str().unwrap_or_default()),
                csv_field(&content),
            )?;
        }
        for (writer, path) in [
            (eventline, &files.eventline),
            (clickhouse, &files.clickhouse),
            (postgres, &files.postgres),
        ] {
            writer.into_inner()?.sync_all()?;
            std::fs::rename(partial(path), path)?;
        }
        Ok(files)
    }
}

/// A CSV field, always quoted: an empty unquoted field is `NULL` to PostgreSQL.
fn csv_field(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

pub fn run(args: &PerfArgs) -> anyhow::Result<()> {
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed; `bench/perf` installs it (apt-get install -y wrk)");
    }
    std::fs::create_dir_all(&args.out_dir)?;
    // The servers' data directories (gigabytes) go here, not in /tmp: a run that is
    // interrupted cannot remove them, and the next run does.
    let scratch = args.out_dir.join("scratch");
    match std::fs::remove_dir_all(&scratch) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).context("remove the last run's scratch directory");
        }
        _ => std::fs::create_dir_all(&scratch)?,
    }
    let files = DataFiles::ensure(&args.out_dir, args.events)?;
    let post_script = args.out_dir.join("post.lua");
    std::fs::write(&post_script, [load::WRK_POST, WRK_DONE].concat())?;
    let bodies = args.out_dir.join("bodies.ndjson");
    crate::dataset::write_first_lines(&files.eventline, &bodies, 20_000)?;
    let timeline_script = args.out_dir.join("timeline.lua");
    std::fs::write(&timeline_script, [WRK_TIMELINE, WRK_DONE].concat())?;
    let timeline_args = [
        TIME_START_MS.to_string(),
        TIMELINE_SINCE_SPAN_S.to_string(),
        CONTACTS.to_string(),
    ];
    let mut rows = Vec::new();

    eprintln!(
        "bare axum: single posts at {} connections",
        args.connections
    );
    let baseline = Server::start(Command::new(std::env::current_exe()?).args([
        "baseline",
        "--listen",
        "127.0.0.1:0",
    ]))?;
    let posts = |url: &str| {
        load::wrk(
            &format!("{url}/api/events/post"),
            &post_script,
            &[bodies.display().to_string()],
            args.connections,
            args.duration,
        )
    };
    let baseline_post = posts(&baseline.url)?;
    drop(baseline);

    eprintln!("clickhouse: import");
    let clickhouse = ClickHouse::start(&scratch)?;
    let clickhouse_import = import(
        &clickhouse.insert_url(),
        &files.clickhouse,
        args.batch_len,
        args.parallel,
    )?;
    eprintln!("clickhouse: merge, bytes, timeline and stats queries");
    let (clickhouse_bytes, clickhouse_rows) = clickhouse.bytes_and_rows()?;
    ensure!(
        clickhouse_rows == args.events as u64,
        "clickhouse holds {clickhouse_rows} rows of {}",
        args.events
    );
    let clickhouse_timeline = latencies(TIMELINE_QUERIES, |rng| {
        let (contact, since) = timeline_draw(rng);
        let sql = format!(
            "SELECT * FROM events WHERE scope IN ('app', 'site') AND contact_id = 'contact-{contact}' \
             AND timestamp_ms >= {since} AND timestamp_ms < {} ORDER BY timestamp_ms, id \
             LIMIT {TIMELINE_LIMIT} FORMAT JSON",
            since + WEEK_MS
        );
        clickhouse.query_url(&sql)
    })?;
    let clickhouse_stats = latencies(STATS_RUNS, |_| {
        let sql = format!(
            "SELECT toStartOfHour(toDateTime(intDiv(timestamp_ms, 1000))) AS hour, event_type, \
             count() FROM events WHERE timestamp_ms >= {TIME_START_MS} AND timestamp_ms < {} \
             GROUP BY hour, event_type FORMAT JSON",
            TIME_START_MS + TIME_SPAN_MS
        );
        clickhouse.query_url(&sql)
    })?;
    eprintln!("clickhouse: content filters");
    let clickhouse_content = crate::content_queries::clickhouse(&clickhouse)?;
    drop(clickhouse);

    eprintln!("eventline: import");
    let data_dir = tempfile::Builder::new()
        .prefix("eventline-perf-")
        .tempdir_in(&scratch)?;
    let serve = || {
        let mut command = Command::new(&args.eventline);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .args(&args.serve_arg);
        command
    };
    let eventline = Server::start(&mut serve())?;
    let eventline_import = import(
        &format!("{}/api/events/batch", eventline.url),
        &files.eventline,
        args.batch_len,
        args.parallel,
    )?;
    // ClickHouse's parts are merged before its queries (`OPTIMIZE`); the log store's
    // segments get the same: its background merges are let finish.
    let (settled_in, segments) = crate::disk::settle_merges(data_dir.path())?;
    eprintln!(
        "eventline: merges settled in {:.0} s, {segments} segments",
        settled_in.as_secs_f64()
    );
    let rss_import_mb = crate::disk::rss_peak_mb(eventline.pid())?;
    eventline.terminate()?;
    let eventline_bytes = crate::disk::dir_bytes(data_dir.path())?;

    eprintln!("eventline: timeline and stats queries, single posts");
    let eventline = Server::start(&mut serve())?;
    let timeline_url = |url: &str, rng: &mut StdRng| {
        let (contact, since) = timeline_draw(rng);
        format!(
            "{url}/api/events?contact_id=contact-{contact}&since={since}&until={}&limit={TIMELINE_LIMIT}",
            since + WEEK_MS
        )
    };
    let eventline_timeline = latencies(TIMELINE_QUERIES, |rng| timeline_url(&eventline.url, rng))?;
    let eventline_timeline_16 = load::wrk(
        &format!("{}/api/events", eventline.url),
        &timeline_script,
        &timeline_args,
        args.query_connections,
        args.duration,
    )?;
    let eventline_stats = latencies(STATS_RUNS, |_| {
        format!(
            "{}/api/stats?since={TIME_START_MS}&until={}&bucket=hour",
            eventline.url,
            TIME_START_MS + TIME_SPAN_MS
        )
    })?;
    eprintln!(
        "eventline: content filters (the needle: {}, {} events)",
        clickhouse_content.needle, clickhouse_content.needle_events
    );
    let eventline_content = crate::content_queries::eventline(&eventline.url, &clickhouse_content)?;
    let eventline_post = posts(&eventline.url)?;
    let rss_serve_mb = crate::disk::rss_peak_mb(eventline.pid())?;
    drop(eventline);

    eprintln!("eventline: start after kill -9");
    let started = Instant::now();
    let eventline = Server::start(&mut serve())?;
    let probe = timeline_url(&eventline.url, &mut StdRng::seed_from_u64(1));
    let client = reqwest::blocking::Client::new();
    while !client
        .get(&probe)
        .send()
        .is_ok_and(|response| response.status().is_success())
    {
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "eventline did not serve within 120 s of a restart"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let ready_ms = started.elapsed().as_secs_f64() * 1e3;
    drop(eventline);

    eprintln!("postgresql: COPY, index, pgbench");
    let postgres = Postgres::start_with(&files.postgres)?;
    let pgbench_script = args.out_dir.join("pgbench-timeline.sql");
    std::fs::write(
        &pgbench_script,
        format!(
            "\\set contact random(0, {})\n\\set since random(0, {TIMELINE_SINCE_SPAN_S}) * 1000 + {TIME_START_MS}\n\
             \\set until :since + {WEEK_MS}\n\
             SELECT id, event_type, contact_id, scope, timestamp_ms, content FROM events \
             WHERE contact_id = 'contact-' || :contact AND timestamp_ms >= :since \
             AND timestamp_ms < :until ORDER BY timestamp_ms, id LIMIT {TIMELINE_LIMIT};\n",
            CONTACTS - 1
        ),
    )?;
    let pgbench_timeline =
        postgres.pgbench(&pgbench_script, args.query_connections, args.duration)?;
    drop(postgres);

    rows.extend([
        Row {
            target: "P1",
            figure: format!("durable single POSTs/s, {} connections", args.connections),
            eventline: eventline_post.per_second,
            reference: Some(("bare axum".to_owned(), baseline_post.per_second)),
            goal: Goal::RatioAtLeast(0.6),
        },
        Row {
            target: "P2",
            figure: format!(
                "durable bulk import events/s, batches of {}",
                args.batch_len
            ),
            eventline: eventline_import,
            reference: Some(("ClickHouse".to_owned(), clickhouse_import)),
            goal: Goal::RatioAtLeast(1.0),
        },
        Row {
            target: "P3",
            figure: "contact timeline p99 ms, 1 connection".to_owned(),
            eventline: percentile(&eventline_timeline, 99),
            reference: Some((
                "ClickHouse".to_owned(),
                percentile(&clickhouse_timeline, 99),
            )),
            goal: Goal::AtMost(1.0),
        },
        Row {
            target: "P3",
            figure: format!(
                "contact timeline queries/s, {} conns",
                args.query_connections
            ),
            eventline: eventline_timeline_16.per_second,
            reference: Some(("pgbench".to_owned(), pgbench_timeline)),
            goal: Goal::RatioAtLeast(1.0),
        },
        Row {
            target: "P4",
            figure: "bytes on disk per event".to_owned(),
            eventline: eventline_bytes as f64 / args.events as f64,
            reference: Some((
                "ClickHouse".to_owned(),
                clickhouse_bytes as f64 / clickhouse_rows as f64,
            )),
            goal: Goal::RatioAtMost(1.5),
        },
        Row {
            target: "P5",
            figure: "stats, 30 days by hour and type, median ms".to_owned(),
            eventline: percentile(&eventline_stats, 50),
            reference: Some(("ClickHouse".to_owned(), percentile(&clickhouse_stats, 50))),
            goal: Goal::AtMost(50.0),
        },
        Row {
            target: "P6",
            figure: "server RSS peak MB (import, queries, posts)".to_owned(),
            eventline: rss_import_mb.max(rss_serve_mb),
            reference: None,
            goal: Goal::AtMost(200.0),
        },
        Row {
            target: "P6",
            figure: "ms from start after kill -9 to a served read".to_owned(),
            eventline: ready_ms,
            reference: None,
            goal: Goal::AtMost(1_000.0),
        },
    ]);
    rows.extend(crate::content_queries::rows(
        &clickhouse_content,
        &eventline_content,
    ));
    let table = [
        format!(
            "\nEventline performance: {} events; {} s per load; {} parallel import requests; eventline serve {}\n",
            args.events,
            args.duration.as_secs(),
            args.parallel,
            if args.serve_arg.is_empty() {
                "(defaults)".to_owned()
            } else {
                args.serve_arg.join(" ")
            }
        ),
        format!(
            "{:<4} {:<44} {:>12} {:>28} {:>7} {:>12} {:>4}\n",
            "", "figure", "eventline", "reference", "ratio", "goal", "met"
        ),
        rows.iter().map(Row::render).collect(),
        format!(
            "timeline p50 ms: eventline {:.2}, ClickHouse {:.2}; RSS peak MB: import {rss_import_mb:.0}, \
             queries and posts {rss_serve_mb:.0}; non-2xx or socket errors under load: bare axum \
             posts {}, eventline posts {}, eventline timelines {}\n",
            percentile(&eventline_timeline, 50),
            percentile(&clickhouse_timeline, 50),
            baseline_post.errors,
            eventline_post.errors,
            eventline_timeline_16.errors,
        ),
    ]
    .concat();
    print!("{table}");
    std::fs::write(args.out_dir.join("perf-results.txt"), &table)?;
    Ok(())
}

/// A contact and a window start for one timeline query, the same draw for every system.
fn timeline_draw(rng: &mut StdRng) -> (u32, i64) {
    (
        rng.random_range(0..CONTACTS),
        TIME_START_MS + rng.random_range(0..=TIMELINE_SINCE_SPAN_S) * 1000,
    )
}

/// Posts every line of `path` to `url` as NDJSON batches of `batch_len`, `parallel` at
/// a time; events per second. A batch refused with 429 or 503 (nothing of it stored) is
/// sent again after 100 ms, as `eventline import` does; the wait counts.
fn import(url: &str, path: &Path, batch_len: usize, parallel: usize) -> anyhow::Result<f64> {
    let batches = Arc::new(crate::dataset::ndjson_batches(path, batch_len)?);
    let events: usize = batches.iter().map(|(_, len)| len).sum();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let next = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..parallel)
            .map(|_| {
                let (client, url, next, batches) = (
                    client.clone(),
                    url.to_owned(),
                    Arc::clone(&next),
                    Arc::clone(&batches),
                );
                tokio::spawn(async move {
                    while let Some((batch, _)) = batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                        loop {
                            let response = client
                                .post(&url)
                                .header("content-type", "application/x-ndjson")
                                .body(batch.clone())
                                .send()
                                .await?;
                            let status = response.status();
                            let body = response.bytes().await?;
                            if status.is_success() {
                                break;
                            }
                            ensure!(
                                status.as_u16() == 429 || status.as_u16() == 503,
                                "{url} answered {status}: {}",
                                String::from_utf8_lossy(&body)
                            );
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        anyhow::Ok(())
    })?;
    Ok(events as f64 / started.elapsed().as_secs_f64())
}
