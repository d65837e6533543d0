//! Cross-origin use: web pages on other origins post events with the JavaScript SDK and
//! read them back. The CORS headers tell browsers which origins may read answers; the
//! origin guard refuses the requests themselves from other origins, since a CORS-simple
//! `text/plain` post is carried out by the server whatever the browser later shows.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, ETAG, ORIGIN, RETRY_AFTER,
};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use eventline_core::problem::ErrorCode;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::ApiError;
use crate::AllowedOrigins;

/// Browsers cap it lower (Chromium at two hours); a day lets each use its own cap.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

pub(super) fn layer(origins: &AllowedOrigins) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([CONTENT_TYPE, CONTENT_ENCODING, AUTHORIZATION])
        // The SDK honours Retry-After, which browsers hide from scripts unless exposed.
        .expose_headers([RETRY_AFTER, ETAG])
        .max_age(PREFLIGHT_MAX_AGE);
    match origins {
        AllowedOrigins::Any => layer.allow_origin(AllowOrigin::any()),
        AllowedOrigins::List(list) => layer.allow_origin(AllowOrigin::list(
            list.iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )),
    }
}

/// Refuses a request that names an origin outside the allowed list. Requests without an
/// `Origin` header (servers, the CLI, curl) are not cross-origin and pass.
pub(super) async fn guard(
    State(origins): State<std::sync::Arc<AllowedOrigins>>,
    request: Request,
    next: Next,
) -> Response {
    if let (AllowedOrigins::List(list), Some(origin)) =
        (origins.as_ref(), request.headers().get(ORIGIN))
    {
        let allowed = list
            .iter()
            .any(|allowed| allowed.as_bytes() == origin.as_bytes());
        if !allowed {
            let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            return ApiError::new(
                ErrorCode::OriginNotAllowed,
                format!("origin {origin:?} is not in this server's allowed origins"),
            )
            .into_response();
        }
    }
    next.run(request).await
}
