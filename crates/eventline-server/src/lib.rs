//! The Eventline server: configuration, the ingest pipeline with group commit, and the
//! HTTP API over a [`Store`](eventline_store::Store).
//!
//! [`App::open`] opens the store and starts the ingest writer; [`App::serve`] answers on a
//! listener the caller bound, until `shutdown` resolves, then drains the ingest queue.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use eventline_core::limits::Limits;
use eventline_store::postgres::{PostgresOptions, PostgresStore};
use eventline_store::sqlite::{SqliteOptions, SqliteStore};
use eventline_store::{Durability, Store};
use tokio::net::TcpListener;

pub mod http;
pub mod ingest;

#[derive(Debug, Clone)]
pub struct Config {
    /// The embedded store's directory; unused with `database_url`.
    pub data_dir: PathBuf,
    /// A `postgres://` URL: the events live in PostgreSQL and this server keeps no state.
    pub database_url: Option<String>,
    pub durability: Durability,
    pub limits: Limits,
    /// Events accepted but not yet committed; past it, posts answer 429.
    pub ingest_queue_events_max: usize,
    /// Events in one group commit (a single larger batch is committed whole).
    pub commit_events_max: usize,
    /// A request body that has not fully arrived by then is refused (slow clients).
    pub request_body_timeout: Duration,
    /// Web origins whose pages may use the API.
    pub allowed_origins: AllowedOrigins,
}

/// The web origins (`scheme://host[:port]`) whose pages may call the API from a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Any page may post and read (the open default, like every analytics endpoint).
    Any,
    /// Only these; a request from another origin is refused with 403.
    List(Vec<String>),
}

impl AllowedOrigins {
    /// `*` for any origin, else a comma-separated list such as
    /// `https://shop.example,http://localhost:3000`.
    pub fn parse(text: &str) -> Result<AllowedOrigins, Error> {
        let text = text.trim();
        if text == "*" {
            return Ok(AllowedOrigins::Any);
        }
        let mut origins = Vec::new();
        for origin in text
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
        {
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
            origins.push(origin.to_ascii_lowercase());
        }
        if origins.is_empty() {
            return Err(Error::Config(
                "no allowed origin given; use * to allow every origin".to_owned(),
            ));
        }
        Ok(AllowedOrigins::List(origins))
    }
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            database_url: None,
            durability: Durability::Full,
            limits: Limits::default(),
            ingest_queue_events_max: 200_000,
            commit_events_max: 20_000,
            request_body_timeout: Duration::from_secs(30),
            allowed_origins: AllowedOrigins::Any,
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

/// An open store with its ingest writer running, ready to serve.
pub struct App {
    state: http::AppState,
    writer: ingest::Writer,
}

impl App {
    pub async fn open(config: Config) -> Result<App, Error> {
        if config.limits.batch_len_max > config.ingest_queue_events_max {
            return Err(Error::Config(format!(
                "the ingest queue ({} events) must hold the largest batch ({} events)",
                config.ingest_queue_events_max, config.limits.batch_len_max
            )));
        }
        let store: Arc<dyn Store> = match &config.database_url {
            Some(url) => {
                let options = PostgresOptions {
                    durability: config.durability,
                    ..PostgresOptions::default()
                };
                Arc::new(PostgresStore::connect(url, &options).await?)
            }
            None => {
                let options = SqliteOptions {
                    durability: config.durability,
                    ..SqliteOptions::default()
                };
                let data_dir = config.data_dir.clone();
                Arc::new(
                    tokio::task::spawn_blocking(move || SqliteStore::open(&data_dir, &options))
                        .await??,
                )
            }
        };
        let (ingest, writer) = ingest::start(
            Arc::clone(&store),
            ingest::Options {
                queue_events_max: config.ingest_queue_events_max,
                commit_events_max: config.commit_events_max,
            },
        );
        let state = http::AppState {
            store,
            ingest,
            config: Arc::new(config),
        };
        Ok(App { state, writer })
    }

    /// Serves until `shutdown` resolves and every open request is answered, then commits
    /// what is still queued. Nothing acknowledged or accepted is lost.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let App { state, writer } = self;
        let router = http::router(state);
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
        writer.drain().await;
        Ok(())
    }
}
