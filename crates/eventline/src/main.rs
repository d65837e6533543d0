//! The `eventline` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

mod cli;

/// jemalloc, built with one arena (`JEMALLOC_SYS_WITH_MALLOC_CONF` in
/// `.cargo/config.toml`; `_RJEM_MALLOC_CONF` in the environment adds to it at run time).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use clap::{Parser, Subcommand, ValueEnum};
use eventline_core::access;
use eventline_core::event::Scope;
use eventline_core::limits::Limits;
use eventline_server::{App, Config, CorsOrigins, RateLimits};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "eventline", version, about = "A self-hostable events service")]
struct Cli {
    /// Logs on stderr as readable text, or as one JSON object per line.
    #[arg(long, global = true, env = "EVENTLINE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the events API.
    Serve(ServeArgs),
    /// Print a contact token: it lets a browser read one contact's events until it expires.
    Token(TokenArgs),
    /// Post one event.
    Post(cli::PostArgs),
    /// Read a page of events, as a table or JSON.
    Get(cli::GetArgs),
    /// Follow new events as they are stored (live), as a table or JSON lines.
    Tail(cli::TailArgs),
    /// Import events from NDJSON, in batches, with progress.
    Import(cli::ImportArgs),
    /// Export matching events as NDJSON, to a file or standard output.
    Export(cli::ExportArgs),
    /// Print the OpenAPI document of the API (also served at /openapi.json).
    Openapi,
    /// Read the whole embedded store back and check it: every page, every index, every
    /// event's checksum. Changes nothing (but with --cut-damaged-tail); says what the
    /// server would cut at start. Exits non-zero when anything is damaged. The server
    /// must be stopped.
    Check(RepairArgs),
    /// Write every event of the embedded store as NDJSON to standard output, in
    /// (timestamp, id) order, read from the files with no server (which must be stopped):
    /// the raw store, inspected. The lines are what `export` writes and `import` reads.
    Dump(CheckArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Directory of the embedded store.
    #[arg(long, env = "EVENTLINE_DATA_DIR", default_value = "./eventline-data")]
    data_dir: PathBuf,
}

#[derive(clap::Args)]
struct RepairArgs {
    #[command(flatten)]
    check: CheckArgs,
    /// Cut the newest log file at damage inside what was acknowledged, giving up the
    /// events from there on, so that the server starts with every event before it.
    /// Copy the data directory aside first. Only the log store's newest file can be cut.
    #[arg(long)]
    cut_damaged_tail: bool,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The contact whose events the token may read.
    #[arg(long)]
    contact: String,
    /// How long the token is valid: 90s, 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_duration_s)]
    ttl: i64,
    /// The server's token secret (the same as its `--token-secret`).
    #[arg(long, env = "EVENTLINE_TOKEN_SECRET", hide_env_values = true)]
    token_secret: String,
}

/// `90s`, `30m`, `1h`, `7d` in seconds.
fn parse_duration_s(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: write 90s, 30m, 1h or 7d"))?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let unit_s = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    number
        .checked_mul(unit_s)
        .filter(|seconds| *seconds > 0)
        .ok_or_else(|| format!("{text:?} is not a positive duration"))
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "EVENTLINE_LISTEN", default_value = "127.0.0.1:7070")]
    listen: String,
    /// Directory of the embedded store; created if missing.
    #[arg(long, env = "EVENTLINE_DATA_DIR", default_value = "./eventline-data")]
    data_dir: PathBuf,
    /// A `postgres://` URL: store events in PostgreSQL, keeping no state in this server,
    /// so that any number of servers can share the database. Default: the embedded store.
    #[arg(long, env = "EVENTLINE_DATABASE_URL")]
    database: Option<String>,
    /// The log store's bound on the events it holds in memory, in MiB, reached only when
    /// segments cannot be written (a full disk); writes past it answer 503.
    #[arg(long, env = "EVENTLINE_LOG_MEMORY_MAX_MB", default_value_t = 1024)]
    log_memory_max_mb: usize,
    /// Log store: the events of the log are written as a sorted, compressed segment once
    /// they take this many MiB in memory. Larger means fewer segments and more memory.
    #[arg(long, env = "EVENTLINE_LOG_MEMTABLE_MB", default_value_t = 32)]
    log_memtable_mb: usize,
    /// `full`: an answered post is on disk (fsync per group commit). `normal`: it survives
    /// a crash of the process but not of the machine; faster.
    #[arg(long, env = "EVENTLINE_DURABILITY", value_enum, default_value_t = Durability::Full)]
    durability: Durability,
    /// Scope of events posted without one.
    #[arg(long, env = "EVENTLINE_DEFAULT_SCOPE", value_enum, default_value_t = ScopeArg::App)]
    default_scope: ScopeArg,
    /// Largest `content` object, in bytes of JSON.
    #[arg(long, env = "EVENTLINE_CONTENT_BYTES_MAX", default_value_t = 64 * 1024)]
    content_bytes_max: usize,
    /// Most events in one batch request.
    #[arg(long, env = "EVENTLINE_BATCH_LEN_MAX", default_value_t = 10_000)]
    batch_len_max: usize,
    /// Largest batch request body, in bytes after gzip decoding.
    #[arg(long, env = "EVENTLINE_BATCH_BYTES_MAX", default_value_t = 10 * 1024 * 1024)]
    batch_bytes_max: usize,
    /// Largest `limit` of a page.
    #[arg(long, env = "EVENTLINE_PAGE_LEN_MAX", default_value_t = 1_000)]
    page_len_max: u32,
    /// Events accepted but not yet committed; past it, posts answer 429 with Retry-After.
    #[arg(
        long,
        env = "EVENTLINE_INGEST_QUEUE_EVENTS_MAX",
        default_value_t = 200_000
    )]
    ingest_queue_events_max: usize,
    /// Longest wait for a commit, in milliseconds, before posts answer 429: admitted
    /// posts stay fast when more arrives than the store can take.
    #[arg(
        long,
        env = "EVENTLINE_INGEST_QUEUE_DELAY_MAX_MS",
        default_value_t = 1_000
    )]
    ingest_queue_delay_max_ms: u64,
    /// API requests answered at once; past it, more answer 429 at once.
    #[arg(
        long,
        env = "EVENTLINE_REQUESTS_IN_FLIGHT_MAX",
        default_value_t = 4_096
    )]
    requests_in_flight_max: usize,
    /// Open connections, at most; past it a new connection is closed at once.
    #[arg(long, env = "EVENTLINE_CONNECTIONS_MAX", default_value_t = 10_000)]
    connections_max: usize,
    /// Seconds a connection may take to send a request's headers, and stay idle between
    /// requests; then it is closed (slow clients cannot hold connections).
    #[arg(long, env = "EVENTLINE_HEADER_TIMEOUT_S", default_value_t = 30)]
    header_timeout_s: u64,
    /// A key that may post (repeatable). With any, posting needs one of them.
    #[arg(
        long = "write-key",
        env = "EVENTLINE_WRITE_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    write_keys: Vec<String>,
    /// A key that may do everything: read, export, stream, stats, erase (repeatable).
    /// Required unless the server listens on loopback only.
    #[arg(
        long = "secret-key",
        env = "EVENTLINE_SECRET_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    secret_keys: Vec<String>,
    /// The secret that signs contact tokens (`eventline token`); without it, none is accepted.
    #[arg(long, env = "EVENTLINE_TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<String>,
    /// Delete events whose time is older than this, continuously: 90d, 12h. Default: keep all.
    #[arg(long, env = "EVENTLINE_RETENTION", value_parser = parse_duration_s)]
    retention: Option<i64>,
    /// Live streams (`/api/events/stream`, the dashboard's live view) open at once; more
    /// are answered 503.
    #[arg(long, env = "EVENTLINE_STREAMS_MAX", default_value_t = 256)]
    streams_max: usize,
    /// Requests per second from one client address (bursts up to twice that); 0: no
    /// limit. Loopback peers are not limited by address.
    #[arg(long, env = "EVENTLINE_IP_RATE_LIMIT", default_value_t = 1_000)]
    ip_rate_limit: u32,
    /// Posts per second with one write key (bursts up to twice that); 0: no limit.
    #[arg(long, env = "EVENTLINE_KEY_RATE_LIMIT", default_value_t = 10_000)]
    key_rate_limit: u32,
    /// Behind a proxy: the client address is the last `X-Forwarded-For` entry.
    #[arg(long, env = "EVENTLINE_TRUST_PROXY")]
    trust_proxy: bool,
    /// A web origin whose pages may use the API (repeatable), such as
    /// `https://shop.example`. None: any page may post, and pages may read only in open
    /// mode. Some: only they may post and read; other origins get 403.
    #[arg(
        long = "cors-origin",
        env = "EVENTLINE_CORS_ORIGINS",
        value_delimiter = ','
    )]
    cors_origins: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Durability {
    Full,
    Normal,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScopeArg {
    App,
    Site,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Token(args) => token(&args),
        Command::Post(args) => client_command(cli::post(args)),
        Command::Get(args) => client_command(cli::get(args)),
        Command::Tail(args) => client_command(cli::tail(args)),
        Command::Import(args) => client_command(cli::import(args)),
        Command::Export(args) => client_command(cli::export(args)),
        Command::Openapi => openapi(),
        Command::Check(args) => check(&args),
        Command::Dump(args) => dump(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("eventline: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let config = config(&args)?;
        let app = App::open(config)
            .await
            .with_context(|| match &args.database {
                Some(_) => "cannot open the database".to_owned(),
                None => format!("cannot open the data directory {}", args.data_dir.display()),
            })?;
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener
            .local_addr()
            .context("cannot read the listening address")?;
        // Safe by default: without a secret key anyone who reaches the server could read
        // every contact's events, which only a loopback address keeps to this machine.
        anyhow::ensure!(
            address.ip().is_loopback() || !args.secret_keys.is_empty(),
            "refusing to listen on {address} without a secret key: anyone who can reach it \
             could read every event. Set --secret-key (or EVENTLINE_SECRET_KEYS), or listen \
             on a loopback address such as 127.0.0.1"
        );
        let shutdown = shutdown_signal();
        println!("listening on http://{address}");
        app.serve(listener, shutdown)
            .await
            .context("the server failed")?;
        tracing::info!("stopped; every accepted event is committed");
        Ok(())
    })
}

fn check(repair: &RepairArgs) -> anyhow::Result<()> {
    use eventline_store::log::{LogOptions, LogStore, Recovery};
    let args = &repair.check;
    let open_error = || format!("cannot open the data directory {}", args.data_dir.display());
    // Opening would create a store where there is none to check.
    anyhow::ensure!(
        eventline_store::holds_store(&args.data_dir),
        "{} holds no store",
        args.data_dir.display()
    );
    let recovery = if repair.cut_damaged_tail {
        Recovery::CutDamagedTail
    } else {
        Recovery::Inspect
    };
    let options = LogOptions {
        recovery,
        ..LogOptions::default()
    };
    let store = LogStore::open(&args.data_dir, &options).with_context(open_error)?;
    match store.cut() {
        Some(cut) if cut.acknowledged => println!(
            "cut: {} at byte {}: {} damaged or later bytes, positions {} to {} given up",
            cut.path.display(),
            cut.offset,
            cut.len,
            cut.positions.start,
            cut.positions.end.saturating_sub(1)
        ),
        Some(cut) => println!(
            "{}: a torn, never-acknowledged tail of {} bytes at byte {}{}",
            cut.path.display(),
            cut.len,
            cut.offset,
            match recovery {
                Recovery::Inspect => " (the server cuts it at start; no event is lost)",
                _ => " was cut (no event was lost)",
            }
        ),
        None if repair.cut_damaged_tail => println!("nothing to cut"),
        None => {}
    }
    let verified = store.verify().context("cannot read the store")?;
    for problem in &verified.problems {
        println!("damaged: {problem}");
    }
    println!(
        "{} events checked, {} problems",
        verified.events,
        verified.problems.len()
    );
    let bytes = verified.segment_bytes;
    if bytes.events > 0 {
        let per_event = |part: u64| part as f64 / bytes.events as f64;
        println!(
            "segments: {} events; bytes per event: {:.1} events, {:.1} id index, {:.1} contact index, {:.1} content index, {:.1} columns, {:.1} footers",
            bytes.events,
            per_event(bytes.data),
            per_event(bytes.id_chunks),
            per_event(bytes.contact_chunks),
            per_event(bytes.postings),
            per_event(bytes.columns),
            per_event(bytes.footer),
        );
    }
    anyhow::ensure!(
        verified.problems.is_empty(),
        "the store in {} is damaged: restore it from a backup",
        args.data_dir.display()
    );
    Ok(())
}

fn dump(args: &CheckArgs) -> anyhow::Result<()> {
    use eventline_core::query::{Order, PageQuery, Start};
    use std::io::Write;
    let open_error = || format!("cannot open the data directory {}", args.data_dir.display());
    // Opening would create a store where there is none to read.
    anyhow::ensure!(
        eventline_store::holds_store(&args.data_dir),
        "{} holds no store",
        args.data_dir.display()
    );
    let store = eventline_store::log::LogStore::open(
        &args.data_dir,
        &eventline_store::log::LogOptions {
            recovery: eventline_store::log::Recovery::Inspect,
            ..Default::default()
        },
    )
    .with_context(open_error)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    client_command(async {
        let mut start = Start::First;
        loop {
            let page = store
                .page(PageQuery {
                    start,
                    order: Order::Asc,
                    limit: 1_000,
                    filter: Default::default(),
                })
                .await
                .context("cannot read the store")?;
            for event in &page.events {
                serde_json::to_writer(&mut out, event)?;
                out.write_all(b"\n")?;
            }
            match page.next {
                Some(cursor) => start = Start::After(cursor),
                None => break,
            }
        }
        out.flush()?;
        Ok(())
    })
}

/// Runs a client command on a small runtime of its own.
fn client_command(
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(command)
}

fn openapi() -> anyhow::Result<()> {
    use utoipa::OpenApi;
    let document = eventline_server::http::openapi::ApiDoc::openapi();
    println!("{}", document.to_pretty_json()?);
    Ok(())
}

fn token(args: &TokenArgs) -> anyhow::Result<()> {
    if let Some(reason) = access::weak_secret(&args.token_secret) {
        anyhow::bail!("--token-secret is refused: {reason}; use the server's own secret");
    }
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let claims = access::TokenClaims {
        contact_id: args.contact.clone(),
        exp: i64::try_from(now_s)?.saturating_add(args.ttl),
    };
    println!(
        "{}",
        access::mint_token(args.token_secret.as_bytes(), &claims)
    );
    Ok(())
}

fn config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut limits = Limits::default().with_content_bytes_max(args.content_bytes_max);
    limits.batch_len_max = args.batch_len_max;
    limits.batch_body_bytes_max = args.batch_bytes_max;
    anyhow::ensure!(args.page_len_max >= 1, "--page-len-max must be at least 1");
    limits.page_len_max = args.page_len_max;
    limits.page_len_default = limits.page_len_default.min(args.page_len_max);
    limits.scope_default = match args.default_scope {
        ScopeArg::App => Scope::App,
        ScopeArg::Site => Scope::Site,
    };
    let mut config = Config::new(args.data_dir.clone());
    config.limits = limits;
    config.ingest_queue_events_max = args.ingest_queue_events_max;
    config.ingest_queue_delay_max =
        std::time::Duration::from_millis(args.ingest_queue_delay_max_ms);
    anyhow::ensure!(
        args.requests_in_flight_max >= 1,
        "--requests-in-flight-max must be at least 1"
    );
    config.requests_in_flight_max = args.requests_in_flight_max;
    anyhow::ensure!(
        args.connections_max >= 1,
        "--connections-max must be at least 1"
    );
    config.connections.connections_max = args.connections_max;
    anyhow::ensure!(
        args.header_timeout_s >= 1,
        "--header-timeout-s must be at least 1"
    );
    config.connections.header_read_timeout = std::time::Duration::from_secs(args.header_timeout_s);
    config.cors_origins = CorsOrigins::parse(&args.cors_origins)?;
    config.live.subscribers_max = args.streams_max;
    config.retention = args
        .retention
        .map(|seconds| std::time::Duration::from_secs(seconds.unsigned_abs()));
    config.rate_limits = RateLimits {
        per_ip_per_second: args.ip_rate_limit,
        per_ip_burst: args.ip_rate_limit.saturating_mul(2),
        per_write_key_per_second: args.key_rate_limit,
        per_write_key_burst: args.key_rate_limit.saturating_mul(2),
        trust_proxy: args.trust_proxy,
    };
    for (flag, secret) in args
        .secret_keys
        .iter()
        .map(|key| ("--secret-key", key.as_str()))
        .chain(
            args.token_secret
                .as_deref()
                .map(|secret| ("--token-secret", secret)),
        )
    {
        if let Some(reason) = access::weak_secret(secret) {
            anyhow::bail!("{flag} is refused: {reason}; use a long random string");
        }
    }
    anyhow::ensure!(
        args.write_keys.iter().all(|key| !key.trim().is_empty()),
        "--write-key is empty"
    );
    config.keys = access::Keys::new(
        &args.write_keys,
        &args.secret_keys,
        args.token_secret.as_deref(),
    );
    if let Some(url) = args.database.as_deref().filter(|url| !url.is_empty()) {
        anyhow::ensure!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "--database takes a postgres:// URL"
        );
        config.database_url = Some(url.to_owned());
    }
    anyhow::ensure!(
        args.log_memory_max_mb >= 1,
        "--log-memory-max-mb must be at least 1"
    );
    config.log_memory_bytes_max = args.log_memory_max_mb.saturating_mul(1 << 20);
    anyhow::ensure!(
        args.log_memtable_mb >= 1,
        "--log-memtable-mb must be at least 1"
    );
    config.log_memtable_bytes_max = args.log_memtable_mb.saturating_mul(1 << 20);
    config.durability = match args.durability {
        Durability::Full => eventline_store::Durability::Full,
        Durability::Normal => eventline_store::Durability::Normal,
    };
    Ok(config)
}

/// Resolves on SIGINT or SIGTERM.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    // Registered now, not when first polled: a signal sent as soon as the listening line
    // is out must find the handler, not the default action that ends the process.
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    async move {
        #[cfg(unix)]
        match signals {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (interrupt, terminate) => {
                let error = interrupt.err().or(terminate.err());
                tracing::warn!(error = ?error, "cannot listen for SIGINT and SIGTERM; Ctrl-C still stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: answering open requests, then committing the queue");
    }
}
