//! The client commands: `post`, `get`, `tail`, `import`, `export`, on the Rust client.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use eventline_client::{Client, ContentCondition, Error as ClientError, Query};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};

/// Where the server is, and the key to use.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// The Eventline server.
    #[arg(long, env = "EVENTLINE_URL", default_value = "http://127.0.0.1:7070")]
    server: String,
    /// A write key, secret key or contact token.
    #[arg(long, env = "EVENTLINE_KEY", hide_env_values = true)]
    key: Option<String>,
}

impl ServerArgs {
    fn client(&self) -> anyhow::Result<Client> {
        let client = Client::new(&self.server)?;
        Ok(match &self.key {
            Some(key) => client.with_key(key),
            None => client,
        })
    }
}

/// The filters of a read or an export. Times are `2h`, `7d` (that long ago), RFC 3339,
/// or Unix seconds or milliseconds.
#[derive(clap::Args)]
pub struct FilterArgs {
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    /// One contact's events.
    #[arg(long)]
    contact: Option<String>,
    /// `app` or `site`.
    #[arg(long)]
    scope: Option<String>,
    /// Event types (repeatable, or comma-separated).
    #[arg(long = "type", value_delimiter = ',')]
    event_types: Vec<String>,
    /// A condition on the events' content (repeatable; all hold): `store_id=appmachine`,
    /// `total>=100`, `plan!=free`, `tags[contains]=vip`, `store_id[in]=["a","b"]`.
    #[arg(long = "where", value_name = "CONDITION")]
    conditions: Vec<String>,
    /// Newest first.
    #[arg(long)]
    desc: bool,
}

impl FilterArgs {
    fn query(&self) -> anyhow::Result<Query> {
        Ok(Query {
            since: self.since.as_deref().map(time_argument).transpose()?,
            until: self.until.as_deref().map(time_argument).transpose()?,
            contact_id: self.contact.clone(),
            scope: self.scope.clone(),
            event_types: self.event_types.clone(),
            order: self.desc.then(|| "desc".to_owned()),
            content: self
                .conditions
                .iter()
                .map(|condition| ContentCondition::parse(condition).map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?,
            ..Query::default()
        })
    }
}

/// `2h`, `30m`, `7d`, `90s` become that long before now (Unix milliseconds); anything
/// else (RFC 3339, Unix seconds or milliseconds) goes to the server as written.
fn time_argument(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    // A duration (the same syntax as `--ttl` and `--retention`) means that long ago.
    let Ok(ago_s) = crate::parse_duration_s(text) else {
        return Ok(text.to_owned());
    };
    let ago = Duration::from_secs(ago_s.unsigned_abs());
    let at = std::time::SystemTime::now()
        .checked_sub(ago)
        .context("that is before 1970")?;
    let ms = at.duration_since(std::time::UNIX_EPOCH)?.as_millis();
    Ok(ms.to_string())
}

#[derive(clap::Args)]
pub struct PostArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The event as JSON; `-` reads it from standard input.
    event: String,
}

pub async fn post(args: PostArgs) -> anyhow::Result<()> {
    let text = if args.event == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        args.event
    };
    let event: serde_json::Value = serde_json::from_str(&text).context("the event is not JSON")?;
    let stored = args.server.client()?.post(&event).await.map_err(explain)?;
    println!("{}", serde_json::to_string(&stored)?);
    Ok(())
}

#[derive(clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// Events per page (1–1,000).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// A count to skip, or the `next_offset` of a previous page.
    #[arg(long)]
    offset: Option<String>,
    /// The page as JSON rather than a table.
    #[arg(long)]
    json: bool,
}

pub async fn get(args: GetArgs) -> anyhow::Result<()> {
    let mut query = args.filter.query()?;
    query.limit = Some(args.limit);
    query.offset = args.offset;
    let page = args.server.client()?.page(&query).await.map_err(explain)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&page)?)?;
        return Ok(());
    }
    writeln!(out, "{}", table_header())?;
    for event in &page.events {
        writeln!(out, "{}", table_row(event))?;
    }
    match page.next_offset {
        Some(next) => writeln!(
            out,
            "{} events; more with --offset {next}",
            page.events.len()
        )?,
        None => writeln!(out, "{} events; no more", page.events.len())?,
    }
    Ok(())
}

fn table_header() -> String {
    format!(
        "{:<24} {:<20} {:<16} {:<5} {:<36} content",
        "time", "type", "contact", "scope", "id"
    )
}

fn table_row(event: &eventline_client::Event) -> String {
    let mut content = event.content.to_string();
    if content.chars().count() > 60 {
        content = content.chars().take(59).collect::<String>() + "…";
    }
    format!(
        "{:<24} {:<20} {:<16} {:<5} {:<36} {content}",
        format_ms(event.timestamp),
        event.event_type,
        event.contact_id.as_deref().unwrap_or("-"),
        event.scope,
        event.id,
    )
}

#[derive(clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// Start after this stream id (one `--json` printed); without it, from now on.
    #[arg(long)]
    after: Option<String>,
    /// One JSON object per line, `{"stream_id", "event"}`, rather than a table.
    #[arg(long)]
    json: bool,
}

/// Follows new events until interrupted, reconnecting by itself without gap or repeat.
pub async fn tail(args: TailArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.filter.desc,
        "tail follows events in the order they are stored; --desc does not apply"
    );
    let query = args.filter.query()?;
    let client = args.server.client()?;
    let mut events = std::pin::pin!(client.tail(&query, args.after));
    if !args.json {
        println!("{}", table_header());
    }
    while let Some(next) = events.next().await {
        let (stream_id, event) = next.map_err(explain)?;
        let mut out = std::io::stdout().lock();
        if args.json {
            let line = serde_json::json!({"stream_id": stream_id, "event": event});
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}", table_row(&event))?;
        }
        out.flush()?;
    }
    Ok(())
}

fn format_ms(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(format).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[derive(clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// NDJSON, one event per line; `-` reads standard input.
    file: PathBuf,
    /// Events per batch request.
    #[arg(long, default_value_t = 1_000)]
    batch_len: usize,
    /// Batch requests in flight at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
}

/// One batch of lines, with the line number of each.
struct Batch {
    lines: Vec<(usize, String)>,
}

#[derive(Default)]
struct ImportTally {
    stored: usize,
    replayed: usize,
    bad: usize,
}

/// Imports NDJSON in batches. A line that is not a JSON object is reported by its number
/// and skipped; an event the server refuses is reported by its line number, and the rest
/// of its batch is sent again. Exits with failure when any line was not imported.
pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let client = args.server.client()?;
    let (reader, size): (Box<dyn BufRead>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(BufReader::new(std::io::stdin())), None)
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let size = file.metadata().ok().map(|metadata| metadata.len());
        (Box::new(BufReader::with_capacity(1 << 20, file)), size)
    };
    let progress = progress_bar(size, "importing", "lines");
    let started = Instant::now();
    let mut tally = ImportTally::default();
    let mut in_flight = FuturesUnordered::new();
    let mut batch = Batch { lines: Vec::new() };
    for (index, line) in reader.lines().enumerate() {
        let line = line.context("cannot read the input")?;
        let number = index + 1;
        // Bytes of a file (its size is known); lines of standard input.
        progress.inc(if size.is_some() {
            line.len() as u64 + 1
        } else {
            1
        });
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(value) if value.is_object() => batch.lines.push((number, line)),
            Ok(_) => report(&progress, &mut tally, number, "not a JSON object"),
            Err(error) => report(&progress, &mut tally, number, &format!("not JSON: {error}")),
        }
        if batch.lines.len() >= args.batch_len.max(1) {
            let full = std::mem::replace(&mut batch, Batch { lines: Vec::new() });
            in_flight.push(send_batch(&client, full));
            if in_flight.len() >= args.parallel.max(1)
                && let Some(result) = in_flight.next().await
            {
                count(&progress, &mut tally, result?);
            }
        }
    }
    if !batch.lines.is_empty() {
        in_flight.push(send_batch(&client, batch));
    }
    while let Some(result) = in_flight.next().await {
        count(&progress, &mut tally, result?);
    }
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let events = tally.stored + tally.replayed;
    eprintln!(
        "imported {events} events ({} new, {} already stored) in {seconds:.1} s: {:.0} events/s; {} lines not imported",
        tally.stored,
        tally.replayed,
        events as f64 / seconds.max(1e-9),
        tally.bad,
    );
    anyhow::ensure!(
        tally.bad == 0,
        "{} lines were not imported (see above)",
        tally.bad
    );
    Ok(())
}

/// What one batch came to: stored, replayed, and the refused lines with reasons.
struct BatchResult {
    stored: usize,
    replayed: usize,
    refused: Vec<(usize, String)>,
}

/// How many times a batch is sent again after an overload answer before the import
/// gives up: with the pauses below, about five minutes.
const OVERLOADED_RETRIES_MAX: u32 = 600;

async fn send_batch(client: &Client, mut batch: Batch) -> anyhow::Result<BatchResult> {
    let mut refused = Vec::new();
    let mut overloaded = 0;
    loop {
        let body: Vec<u8> = batch
            .lines
            .iter()
            .flat_map(|(_, line)| line.bytes().chain(std::iter::once(b'\n')))
            .collect();
        match client.post_ndjson(Bytes::from(body)).await {
            Ok(answer) => {
                return Ok(BatchResult {
                    stored: answer.stored,
                    replayed: answer.replayed,
                    refused,
                });
            }
            Err(ClientError::Problem { problem }) if !problem.errors.is_empty() => {
                // The server names the refused events; send the others again.
                let named: std::collections::HashSet<usize> =
                    problem.errors.iter().map(|item| item.index).collect();
                for item in &problem.errors {
                    if let Some((number, _)) = batch.lines.get(item.index) {
                        refused.push((*number, item.detail.clone()));
                    }
                }
                batch.lines = batch
                    .lines
                    .into_iter()
                    .enumerate()
                    .filter(|(index, _)| !named.contains(index))
                    .map(|(_, line)| line)
                    .collect();
                if batch.lines.is_empty() {
                    return Ok(BatchResult {
                        stored: 0,
                        replayed: 0,
                        refused,
                    });
                }
            }
            // "Not now" (429 overloaded, 503 unavailable): nothing of the batch was
            // stored, so sending it again is safe even for events without an id. A
            // transport error is not retried: the batch may have been stored.
            Err(error)
                if matches!(error.status(), Some(429 | 503))
                    && overloaded < OVERLOADED_RETRIES_MAX =>
            {
                overloaded += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(explain(error)),
        }
    }
}

fn report(progress: &ProgressBar, tally: &mut ImportTally, line: usize, reason: &str) {
    tally.bad += 1;
    progress.suspend(|| eprintln!("line {line}: {reason}"));
}

fn count(progress: &ProgressBar, tally: &mut ImportTally, result: BatchResult) {
    tally.stored += result.stored;
    tally.replayed += result.replayed;
    for (line, reason) in result.refused {
        report(progress, tally, line, &reason);
    }
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// Write to this file rather than standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Streams an export to a file or standard output; progress and throughput on stderr.
pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let query = args.filter.query()?;
    let client = args.server.client()?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let progress = progress_bar(None, "exporting", "events");
    let started = Instant::now();
    let mut events = 0_u64;
    let mut chunks = client.export(&query).await.map_err(explain)?;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(explain).context("the export was cut short")?;
        let lines = chunk.iter().filter(|byte| **byte == b'\n').count() as u64;
        events += lines;
        progress.inc(lines);
        out.write_all(&chunk)?;
    }
    out.flush()?;
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "exported {events} events in {seconds:.1} s: {:.0} events/s",
        events as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// A bar over `size` bytes when known, else a counter; both on stderr, hidden when stderr
/// is not a terminal.
fn progress_bar(size: Option<u64>, what: &'static str, unit: &'static str) -> ProgressBar {
    match size {
        Some(size) => {
            let bar = ProgressBar::new(size);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what);
            bar
        }
        None => {
            let bar = ProgressBar::new_spinner();
            let template = format!("{{spinner}} {{msg}} {{pos}} {unit} {{per_sec}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar.set_message(what);
            bar
        }
    }
}

/// A client error, with the server's problem details when it sent them.
fn explain(error: ClientError) -> anyhow::Error {
    match error {
        ClientError::Problem { problem } => {
            let mut message = format!("{} ({}): {}", problem.title, problem.status, problem.detail);
            for item in problem.errors.iter().take(10) {
                message.push_str(&format!("\n  event {}: {}", item.index, item.detail));
            }
            anyhow::anyhow!(message)
        }
        other => anyhow::Error::new(other),
    }
}
