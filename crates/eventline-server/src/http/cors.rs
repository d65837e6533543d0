//! Cross-origin use: pages on other origins post events with the JavaScript SDK and,
//! with a contact token, read a contact's events.
//!
//! The policy, per request (for a preflight, per the method it announces):
//! - `/sdk/…` and `/healthz`: any origin.
//! - Posting: any origin while no `--cors-origin` is configured, else only those.
//! - Reading and erasing: the configured origins; with none configured, any origin only
//!   in open mode (no secret key, which the server allows on loopback only).
//!
//! The origin guard refuses the requests themselves from origins outside a configured
//! list, since a CORS-simple `text/plain` post is carried out by the server whatever the
//! browser later shows the page.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_REQUEST_METHOD, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, ETAG, ORIGIN,
    RETRY_AFTER,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use eventline_core::problem::ErrorCode;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::{ApiError, rate_limit};
use crate::CorsOrigins;

/// Browsers cap it lower (Chromium at two hours); a day lets each use its own cap.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// What the CORS policy needs to know of the server.
#[derive(Debug, Clone)]
pub(super) struct Policy {
    pub origins: CorsOrigins,
    /// No secret key: reading needs no credential (loopback only).
    pub open_mode: bool,
}

impl Policy {
    fn allows(&self, origin: &HeaderValue, parts: &Parts) -> bool {
        let path = parts.uri.path();
        if path.starts_with("/sdk/") || path == "/healthz" {
            return true;
        }
        let method = if parts.method == Method::OPTIONS {
            parts
                .headers
                .get(ACCESS_CONTROL_REQUEST_METHOD)
                .and_then(|method| Method::from_bytes(method.as_bytes()).ok())
                .unwrap_or(Method::OPTIONS)
        } else {
            parts.method.clone()
        };
        if !self.origins.is_empty() {
            return self.origins.contains(origin.as_bytes());
        }
        method == Method::POST || self.open_mode
    }
}

pub(super) fn layer(policy: Policy) -> CorsLayer {
    let policy = Arc::new(policy);
    let exposed = [
        RETRY_AFTER,
        ETAG,
        rate_limit::RATELIMIT_LIMIT,
        rate_limit::RATELIMIT_REMAINING,
        rate_limit::RATELIMIT_RESET,
    ];
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, parts| {
            policy.allows(origin, parts)
        }))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([CONTENT_TYPE, CONTENT_ENCODING, AUTHORIZATION])
        // The SDK honours Retry-After, which browsers hide from scripts unless exposed.
        .expose_headers(exposed)
        .max_age(PREFLIGHT_MAX_AGE)
}

/// Refuses a request that names an origin outside the configured list. Requests without
/// an `Origin` header (servers, the CLI, curl) are not from a page and pass.
pub(super) async fn guard(
    State(origins): State<Arc<CorsOrigins>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(origin) = request.headers().get(ORIGIN) {
        let public = request.uri().path().starts_with("/sdk/");
        if !origins.is_empty() && !public && !origins.contains(origin.as_bytes()) {
            let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            return ApiError::new(
                ErrorCode::OriginNotAllowed,
                format!("origin {origin:?} is not one of this server's --cors-origin"),
            )
            .into_response();
        }
    }
    next.run(request).await
}
