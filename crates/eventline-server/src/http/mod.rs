//! The HTTP API: a thin layer that reads requests, validates them with the core, and
//! hands them to the ingest (writes) or the store (reads).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
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

mod body;
mod cors;
mod error;
mod events;
mod sdk;

pub use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ingest: Ingest,
    pub config: Arc<Config>,
}

pub fn router(state: AppState) -> Router {
    let body_timeout = state.config.request_body_timeout;
    let origins = Arc::new(state.config.allowed_origins.clone());
    let cors = cors::layer(&origins);
    Router::new()
        .merge(events::router())
        .merge(sdk::router())
        .route("/healthz", get(healthz))
        .with_state(state)
        // Layers run from the last added (outermost) to the first.
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(middleware::from_fn_with_state(origins, cors::guard))
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
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
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
