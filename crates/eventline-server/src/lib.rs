//! The Eventline server: configuration, the ingest pipeline with group commit, and the
//! HTTP API over a [`Store`](eventline_store::Store).
//!
//! [`App::open`] opens the store and starts the ingest writer; [`App::serve`] answers on a
//! listener the caller bound, until `shutdown` resolves, then drains the ingest queue.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eventline_core::access::Keys;
use eventline_core::limits::Limits;
use eventline_store::StoreConfig;
use eventline_store::log::LogOptions;
use eventline_store::postgres::PostgresOptions;
use eventline_store::{Durability, Store};
use tokio::net::TcpListener;

pub mod connections;
pub mod http;

/// The server's clock, Unix milliseconds: events' `received_at`, token expiry, the
/// retention cutoff and the default end of a stats window all read it.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

pub mod ingest;
pub mod live;
pub mod retention;
pub mod telemetry;

#[derive(Debug, Clone)]
pub struct Config {
    /// The embedded store's directory; unused with `database_url`.
    pub data_dir: PathBuf,
    /// A `postgres://` URL: the events live in PostgreSQL and this server keeps no state.
    pub database_url: Option<String>,
    /// The log store's bound on events held in memory, in bytes.
    pub log_memory_bytes_max: usize,
    /// The log store's memtable size at which it is written as a segment, in bytes.
    pub log_memtable_bytes_max: usize,
    pub durability: Durability,
    pub limits: Limits,
    /// Events accepted but not yet committed; past it, posts answer 429.
    pub ingest_queue_events_max: usize,
    /// Events in one group commit (a single larger batch is committed whole).
    pub commit_events_max: usize,
    /// Past this wait in the ingest queue, posts answer 429 (see `ingest::Options`).
    pub ingest_queue_delay_max: Duration,
    /// API requests being answered at once; past it, more answer 429 at once instead of
    /// waiting for a turn, so that overload never grows a backlog of open requests.
    pub requests_in_flight_max: usize,
    /// A request body that has not fully arrived by then is refused (slow clients).
    pub request_body_timeout: Duration,
    /// Web origins configured for pages that use the API.
    pub cors_origins: CorsOrigins,
    /// Write keys, secret keys and the contact-token secret. No secret key: open mode.
    pub keys: Keys,
    pub rate_limits: RateLimits,
    /// Events whose `timestamp` is older than this are deleted; None keeps them all.
    pub retention: Option<Duration>,
    /// Bounds of the live stream.
    pub live: live::Options,
    /// Bounds of the connections.
    pub connections: connections::Options,
}

/// Token buckets: a rate per second and a burst; a rate of 0 turns a limit off.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Every `/api` request, per client IP address.
    pub per_ip_per_second: u32,
    pub per_ip_burst: u32,
    /// Posts, per write key (or secret key).
    pub per_write_key_per_second: u32,
    pub per_write_key_burst: u32,
    /// Take the client address from `X-Forwarded-For` (the last entry), as set by a
    /// proxy in front; otherwise the socket's peer address.
    pub trust_proxy: bool,
}

impl Default for RateLimits {
    /// Generous for one client or app, tight enough that one cannot take the server.
    fn default() -> RateLimits {
        RateLimits {
            per_ip_per_second: 1_000,
            per_ip_burst: 2_000,
            per_write_key_per_second: 10_000,
            per_write_key_burst: 20_000,
            trust_proxy: false,
        }
    }
}

/// The web origins (`scheme://host[:port]`) configured for pages that call the API from
/// a browser. None configured: any page may post; reading is open to pages only in open
/// mode (no secret key, loopback only). Some configured: only they may post, and read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsOrigins(Vec<String>);

impl CorsOrigins {
    /// Checks each origin: `https://shop.example`, `http://localhost:3000`.
    pub fn parse(origins: &[String]) -> Result<CorsOrigins, Error> {
        let mut parsed = Vec::new();
        for origin in origins
            .iter()
            .map(|origin| origin.trim())
            .filter(|origin| !origin.is_empty())
        {
            if origin == "*" {
                return Err(Error::Config(
                    "--cors-origin takes origins; leave it unset to let any page post".to_owned(),
                ));
            }
            let (scheme, host) = origin.split_once("://").ok_or_else(|| {
                Error::Config(format!(
                    "origin {origin:?} has no scheme; write https://{origin}"
                ))
            })?;
            let valid = matches!(scheme, "http" | "https")
                && !host.is_empty()
                && !host.contains(['/', '?', '#', ' '])
                && origin.is_ascii();
            if !valid {
                return Err(Error::Config(format!(
                    "origin {origin:?} is not of the form scheme://host[:port] \
                     (no path, no trailing slash)"
                )));
            }
            // Browsers send origins in lower case.
            parsed.push(origin.to_ascii_lowercase());
        }
        Ok(CorsOrigins(parsed))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, origin: &[u8]) -> bool {
        self.0.iter().any(|allowed| allowed.as_bytes() == origin)
    }
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            database_url: None,
            log_memory_bytes_max: LogOptions::default().memory_bytes_max,
            log_memtable_bytes_max: LogOptions::default().memtable_bytes_max,
            durability: Durability::Full,
            limits: Limits::default(),
            ingest_queue_events_max: 200_000,
            commit_events_max: 20_000,
            ingest_queue_delay_max: Duration::from_secs(1),
            requests_in_flight_max: 4_096,
            request_body_timeout: Duration::from_secs(30),
            cors_origins: CorsOrigins::default(),
            keys: Keys::default(),
            rate_limits: RateLimits::default(),
            retention: None,
            live: live::Options::default(),
            connections: connections::Options::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the store")]
    Store(#[from] eventline_store::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("server failed")]
    Io(#[from] std::io::Error),
    #[error("store task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// Refuses a configuration that cannot work, before anything is opened.
fn check(config: &Config) -> Result<(), Error> {
    // The recorder before the first metric, so that none is lost.
    telemetry::handle();
    if config.limits.batch_len_max > config.ingest_queue_events_max {
        return Err(Error::Config(format!(
            "the ingest queue ({} events) must hold the largest batch ({} events)",
            config.ingest_queue_events_max, config.limits.batch_len_max
        )));
    }
    Ok(())
}

/// An open store with its ingest writer running, ready to serve.
pub struct App {
    state: http::AppState,
    writer: ingest::Writer,
    follower: live::Follower,
}

impl App {
    /// Opens the store the configuration names (PostgreSQL or the embedded store).
    pub async fn open(config: Config) -> Result<App, Error> {
        check(&config)?;
        let store_config = match &config.database_url {
            Some(url) => StoreConfig::Postgres {
                url: url.clone(),
                options: PostgresOptions {
                    durability: config.durability,
                    ..PostgresOptions::default()
                },
            },
            None => StoreConfig::Embedded {
                data_dir: config.data_dir.clone(),
                options: LogOptions {
                    durability: config.durability,
                    memory_bytes_max: config.log_memory_bytes_max,
                    memtable_bytes_max: config.log_memtable_bytes_max,
                    ..LogOptions::default()
                },
            },
        };
        let store = eventline_store::open(store_config).await?;
        App::with_store(config, store)
    }

    /// Serves `store`, opened by the caller (the fault harness opens the embedded store
    /// on a disk it simulates); `config`'s store settings are not used.
    pub fn with_store(config: Config, store: Arc<dyn Store>) -> Result<App, Error> {
        check(&config)?;
        let committed = Arc::new(tokio::sync::Notify::new());
        let (ingest, writer) = ingest::start(
            Arc::clone(&store),
            ingest::Options {
                queue_events_max: config.ingest_queue_events_max,
                commit_events_max: config.commit_events_max,
                queue_delay_max: config.ingest_queue_delay_max,
            },
            Arc::clone(&committed),
        );
        let (live, follower) = live::start(Arc::clone(&store), committed, config.live);
        let state = http::AppState::new(http::Shared {
            store,
            ingest,
            live,
            limiters: Arc::new(http::rate_limit::Limiters::new(&config.rate_limits)),
            config: Arc::new(config),
        });
        Ok(App {
            state,
            writer,
            follower,
        })
    }

    /// The HTTP API as a service, for driving it without a socket (the fuzz targets).
    /// The app must stay alive while it is used: its ingest writer commits the posts.
    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// Serves until `shutdown` resolves and every open request is answered, then commits
    /// what is still queued. Nothing acknowledged or accepted is lost.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let App {
            state,
            writer,
            follower,
        } = self;
        let retention = state
            .config
            .retention
            .map(|max_age| tokio::spawn(retention::run(Arc::clone(&state.store), max_age)));
        // Once a minute, idle clients' rate-limit buckets are dropped (memory follows the
        // clients of the last minute, not every address ever seen); as often as the
        // store asks, it does its upkeep (PostgreSQL folds its count deltas once a
        // minute, the log store puts finished merges in place every second).
        let (limiters, store) = (Arc::clone(&state.limiters), Arc::clone(&state.store));
        let housekeeping = tokio::spawn(async move {
            const FORGET_EVERY: Duration = Duration::from_secs(60);
            let maintain_every = store.maintain_interval().min(FORGET_EVERY);
            let mut every = tokio::time::interval(maintain_every);
            let mut forgotten_at = tokio::time::Instant::now();
            loop {
                every.tick().await;
                if forgotten_at.elapsed() >= FORGET_EVERY {
                    limiters.forget_idle();
                    forgotten_at = tokio::time::Instant::now();
                }
                if let Err(error) = store.maintain().await {
                    tracing::warn!(error = %ingest::ErrorChain(&error), "store upkeep failed; retrying at the next");
                }
            }
        });
        let connection_options = state.config.connections;
        let router = http::router(state);
        connections::serve(listener, router, connection_options, async move {
            shutdown.await;
            // Live streams never end by themselves: end them, each with its final
            // message, or the graceful shutdown would wait for them forever.
            follower.close();
        })
        .await;
        housekeeping.abort();
        if let Some(retention) = retention {
            retention.abort();
        }
        writer.drain().await;
        Ok(())
    }
}
