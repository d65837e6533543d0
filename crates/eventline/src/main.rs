//! The `eventline` command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use eventline_core::event::Scope;
use eventline_core::limits::Limits;
use eventline_server::{AllowedOrigins, App, Config};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "eventline", version, about = "A self-hostable events service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the events API.
    Serve(ServeArgs),
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
    /// Web origins whose pages may use the API: `*` (any) or a comma-separated list such
    /// as `https://shop.example,http://localhost:3000`; other origins get 403.
    #[arg(long, env = "EVENTLINE_ALLOWED_ORIGINS", default_value = "*")]
    allowed_origins: String,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
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
        println!("listening on http://{address}");
        app.serve(listener, shutdown_signal())
            .await
            .context("the server failed")?;
        tracing::info!("stopped; every accepted event is committed");
        Ok(())
    })
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
    config.allowed_origins = AllowedOrigins::parse(&args.allowed_origins)?;
    if let Some(url) = args.database.as_deref().filter(|url| !url.is_empty()) {
        anyhow::ensure!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "--database takes a postgres:// URL"
        );
        config.database_url = Some(url.to_owned());
    }
    config.durability = match args.durability {
        Durability::Full => eventline_store::Durability::Full,
        Durability::Normal => eventline_store::Durability::Normal,
    };
    Ok(config)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: answering open requests, then committing the queue");
}
