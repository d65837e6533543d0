//! The HTTP API: a thin layer that reads requests, validates them with the core, and
//! hands them to the ingest (writes) or the store (reads).

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eventline_store::Store;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::Config;
use crate::ingest::Ingest;

mod auth;
mod body;
mod contacts;
mod cors;
mod dashboard;
mod error;
mod events;
mod export;
pub mod openapi;
mod properties;
pub mod rate_limit;
mod sdk;
mod stats;
mod stream;

pub use error::ApiError;

/// What every handler shares. Axum clones the state for each request and each
/// middleware that takes it: one reference count here, not one per field (the channels'
/// senders among them). Measured under single posts at 64 connections: 8 to 13 % less
/// server CPU per request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Arc<dyn Store>,
    pub ingest: Ingest,
    pub live: crate::live::Live,
    pub limiters: Arc<rate_limit::Limiters>,
    pub config: Arc<Config>,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub fn router(state: AppState) -> Router {
    let body_timeout = state.config.request_body_timeout;
    let origins = Arc::new(state.config.cors_origins.clone());
    let limiters = Arc::clone(&state.limiters);
    let cors = cors::layer(cors::Policy {
        origins: state.config.cors_origins.clone(),
        open_mode: !state.config.keys.has_secret_keys(),
    });
    // Past the bound, a request is refused at once rather than queued: under overload
    // the server answers everything quickly, most of it 429, instead of everything late.
    let api = Router::new()
        .merge(events::router(&state))
        .merge(contacts::router(&state))
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async {
                        ApiError::new(
                            eventline_core::problem::ErrorCode::ServerBusy,
                            "the server is answering as many requests as it can; retry later",
                        )
                    },
                ))
                .layer(tower::load_shed::LoadShedLayer::new())
                // Global: `Router::layer` gives each route its own copy of a layer, and
                // the bound is for all of them together.
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    state.config.requests_in_flight_max,
                )),
        );
    Router::new()
        .merge(api)
        .merge(sdk::router())
        .merge(dashboard::router())
        .merge(openapi::router())
        .route("/healthz", get(healthz))
        .route(
            "/metrics",
            get(metrics).route_layer(middleware::from_fn_with_state(state.clone(), auth::admin)),
        )
        // Applied to each route after routing, so the matched route names the series.
        .layer(middleware::from_fn(track))
        .with_state(state)
        // Layers run from the last added (outermost) to the first.
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(middleware::from_fn_with_state(origins, cors::guard))
        .layer(middleware::from_fn_with_state(limiters, rate_limit::per_ip))
        // Decoding happens before the handlers' size limits, so those limits bound the
        // decoded size: a gzip bomb is cut off at the limit.
        .layer(RequestDecompressionLayer::new())
        .layer(middleware::map_response(error::problem_for_bare_errors))
        .layer(CompressionLayer::new())
        // Outside the guard and the error mapping: a preflight is answered here, and
        // every answer, errors included, carries the headers a page needs to read it.
        .layer(cors)
        // A failed answer's cause is logged once where it happens (`ApiError`); an error
        // line per refused request on top would flood the log during an outage.
        .layer(
            TraceLayer::new_for_http()
                // The path only: a query string can hold a key (`?key=`), which is
                // never logged.
                .make_span_with(|request: &axum::http::Request<_>| {
                    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
                })
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
}

/// A request's query parameters, in order, or a 400 saying why they cannot be read.
pub(super) fn query_pairs(
    pairs: Result<
        axum::extract::Query<Vec<(String, String)>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Vec<(String, String)>, ApiError> {
    pairs
        .map(|axum::extract::Query(pairs)| pairs)
        .map_err(|rejection| {
            ApiError::new(
                eventline_core::problem::ErrorCode::InvalidParameter,
                rejection.body_text(),
            )
        })
}

/// Counts and times every request by its route pattern (never the raw path, which would
/// make a series per contact id).
async fn track(request: axum::extract::Request, next: middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(crate::telemetry::HTTP_REQUEST_DURATION, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(crate::telemetry::HTTP_REQUESTS, "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// Prometheus text format.
async fn metrics() -> Response {
    match crate::telemetry::handle() {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            eventline_core::problem::ErrorCode::Internal,
            "metrics are off in this process",
        )
        .into_response(),
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.check().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        )
            .into_response(),
        Err(error) => ApiError::storage(&error).into_response(),
    }
}
