//! The web dashboard: `/` and its files under `/dashboard/`, from `dashboard/public`,
//! compiled into the binary (rust-embed, also in debug builds) so the server needs no
//! files beside it. No build step: what is in the folder is what browsers get.

use axum::Router;
use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eventline_core::problem::ErrorCode;

use super::{ApiError, AppState};

#[derive(rust_embed::Embed)]
#[folder = "../../dashboard/public"]
struct Files;

/// Everything from this server; the styles uPlot sets on its elements are allowed.
const POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'";

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { file("index.html", &headers) }),
        )
        .route(
            "/dashboard/{*path}",
            get(
                |Path(path): Path<String>, headers: HeaderMap| async move { file(&path, &headers) },
            ),
        )
}

fn file(path: &str, request_headers: &HeaderMap) -> Response {
    let Some(file) = Files::get(path) else {
        return ApiError::new(ErrorCode::NotFound, format!("no dashboard file {path:?}"))
            .into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..12]));
    let fresh = request_headers
        .get(IF_NONE_MATCH)
        .is_some_and(|value| value.as_bytes() == etag.as_bytes());
    let content_type = match path.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("md") | None => "text/plain; charset=utf-8",
        Some(_) => "application/octet-stream",
    };
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(content_type)),
        // Revalidated each time (a 304 when unchanged): an upgraded server's dashboard
        // is never mixed with an old cached script.
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            ETAG,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\"")),
        ),
        (CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY)),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, file.data.into_owned()).into_response()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
